// CHANERR — channel error register bits (I/OAT v3), their names and a decoder. A halted channel
// (CHANSTS state halted) reports why here; the register is write-one-to-clear.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace strata::ioat::spec {

namespace chanerr {
inline constexpr uint32_t src_addr_err = 1u << 0;
inline constexpr uint32_t dest_addr_err = 1u << 1;
inline constexpr uint32_t next_desc_addr_err = 1u << 2;
inline constexpr uint32_t next_desc_align_err = 1u << 3;
inline constexpr uint32_t chain_addr_value_err = 1u << 4;
inline constexpr uint32_t chancmd_err = 1u << 5;
inline constexpr uint32_t chipset_uncorrectable_data_integrity_err = 1u << 6;
inline constexpr uint32_t dma_uncorrectable_data_integrity_err = 1u << 7;
inline constexpr uint32_t read_data_err = 1u << 8;
inline constexpr uint32_t write_data_err = 1u << 9;
inline constexpr uint32_t control_err = 1u << 10;  // invalid descriptor control (e.g. bad op)
inline constexpr uint32_t length_err = 1u << 11;   // size 0 or above XFERCAP
inline constexpr uint32_t completion_addr_err = 1u << 12;
inline constexpr uint32_t int_configuration_err = 1u << 13;
inline constexpr uint32_t soft_err = 1u << 14;
inline constexpr uint32_t unaffiliated_err = 1u << 15;
inline constexpr uint32_t xor_p_or_crc_err = 1u << 16;  // validate ops: P / CRC mismatch
inline constexpr uint32_t xor_q_err = 1u << 17;         // validate ops: Q mismatch
inline constexpr uint32_t descriptor_count_err = 1u << 18;

inline constexpr uint32_t all_known = (1u << 19) - 1;
}  // namespace chanerr

// Name of one CHANERR bit (0..31): "src_addr_err", or "" for an undefined bit.
constexpr std::string_view chanerr_bit_name(unsigned bit) noexcept {
    switch (bit) {
        case 0: return "src_addr_err";
        case 1: return "dest_addr_err";
        case 2: return "next_desc_addr_err";
        case 3: return "next_desc_align_err";
        case 4: return "chain_addr_value_err";
        case 5: return "chancmd_err";
        case 6: return "chipset_uncorrectable_data_integrity_err";
        case 7: return "dma_uncorrectable_data_integrity_err";
        case 8: return "read_data_err";
        case 9: return "write_data_err";
        case 10: return "control_err";
        case 11: return "length_err";
        case 12: return "completion_addr_err";
        case 13: return "int_configuration_err";
        case 14: return "soft_err";
        case 15: return "unaffiliated_err";
        case 16: return "xor_p_or_crc_err";
        case 17: return "xor_q_err";
        case 18: return "descriptor_count_err";
        default: return "";
    }
}

// Calls fn(bit, name) for each set bit, lowest first; undefined bits get name "".
template <typename Fn>
constexpr void for_each_chanerr(uint32_t value, Fn&& fn) {
    for (unsigned bit = 0; bit < 32; ++bit) {
        if ((value >> bit) & 1u) fn(bit, chanerr_bit_name(bit));
    }
}

// "src_addr_err|length_err"; undefined bits as "bit21"; "none" for 0. Allocates: for error
// reports and logs, not the data path.
inline std::string describe_chanerr(uint32_t value) {
    if (value == 0) return "none";
    std::string out;
    for_each_chanerr(value, [&out](unsigned bit, std::string_view name) {
        if (!out.empty()) out += '|';
        if (name.empty()) {
            out += "bit";
            out += std::to_string(bit);
        } else {
            out += name;
        }
    });
    return out;
}

}  // namespace strata::ioat::spec
