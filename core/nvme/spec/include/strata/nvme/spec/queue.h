// Submission and completion queue entries (NVMe Base Specification 2.0, 4.2 and 4.6), the SGL
// descriptor (4.3.2) and the Dataset Management range (NVM Command Set 3.2.3).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include <strata/nvme/spec/bits.h>

namespace strata::nvme::spec {

inline constexpr uint32_t sqe_size_bytes = 64;
inline constexpr uint32_t cqe_size_bytes = 16;
inline constexpr uint32_t sqe_size_log2 = 6;  // CC.IOSQES
inline constexpr uint32_t cqe_size_log2 = 4;  // CC.IOCQES

// Broadcast namespace id ("all namespaces") and the id meaning "no namespace".
inline constexpr uint32_t nsid_all = 0xFFFFFFFFu;
inline constexpr uint32_t nsid_none = 0;

// CDW0.FUSE.
enum class Fuse : uint8_t { normal = 0, first = 1, second = 2 };
// CDW0.PSDT: how DPTR (and MPTR) describe data.
enum class Psdt : uint8_t {
    prp = 0,              // PRP1/PRP2
    sgl_mptr_contig = 1,  // SGL for data, MPTR is a contiguous metadata buffer address
    sgl_mptr_sgl = 2,     // SGL for data, MPTR points to an SGL segment
};

// SGL descriptor types (SGL Identifier bits 7:4) and subtypes (bits 3:0).
enum class SglType : uint8_t {
    data_block = 0x0,
    bit_bucket = 0x1,
    segment = 0x2,
    last_segment = 0x3,
    keyed_data_block = 0x4,
    transport_data_block = 0x5,
    vendor_specific = 0xF,
};
enum class SglSubtype : uint8_t {
    address = 0x0,
    offset = 0x1,
    transport_specific = 0xA,
};

// SGL descriptor, 16 bytes. For every type but keyed data block: address, 32-bit length.
// Keyed data block (NVMe-oF RDMA): 24-bit length and 32-bit key in bytes 8..14.
struct SglDescriptor {
    uint64_t address;
    uint32_t length;
    std::array<uint8_t, 3> reserved;
    uint8_t sgl_id;  // type << 4 | subtype

    constexpr SglType type() const noexcept { return static_cast<SglType>(sgl_id >> 4); }
    constexpr SglSubtype subtype() const noexcept { return static_cast<SglSubtype>(sgl_id & 0xF); }
    constexpr SglDescriptor& set_type(SglType t, SglSubtype s = SglSubtype::address) noexcept {
        sgl_id =
            static_cast<uint8_t>((static_cast<uint8_t>(t) << 4) | (static_cast<uint8_t>(s) & 0xF));
        return *this;
    }
    constexpr uint32_t keyed_length() const noexcept { return length & 0xFFFFFFu; }
    constexpr uint32_t key() const noexcept {
        return (length >> 24) | (uint32_t{reserved[0]} << 8) | (uint32_t{reserved[1]} << 16) |
               (uint32_t{reserved[2]} << 24);
    }
    constexpr SglDescriptor& set_keyed(uint32_t len, uint32_t k) noexcept {
        length = (len & 0xFFFFFFu) | (k << 24);
        reserved = {static_cast<uint8_t>(k >> 8), static_cast<uint8_t>(k >> 16),
                    static_cast<uint8_t>(k >> 24)};
        return *this;
    }

    static constexpr SglDescriptor data_block(uint64_t addr, uint32_t len) noexcept {
        SglDescriptor d{addr, len, {}, 0};
        d.set_type(SglType::data_block);
        return d;
    }
    static constexpr SglDescriptor segment(uint64_t addr, uint32_t len, bool last) noexcept {
        SglDescriptor d{addr, len, {}, 0};
        d.set_type(last ? SglType::last_segment : SglType::segment);
        return d;
    }
    static constexpr SglDescriptor bit_bucket(uint32_t len) noexcept {
        SglDescriptor d{0, len, {}, 0};
        d.set_type(SglType::bit_bucket);
        return d;
    }
};
static_assert(sizeof(SglDescriptor) == 16);
static_assert(offsetof(SglDescriptor, length) == 8 && offsetof(SglDescriptor, sgl_id) == 15);

// Submission Queue Entry, 64 bytes (value-initialize, `Sqe sqe{}`, to start from zero). DPTR is
// kept as two 64-bit words (prp1, prp2): PRP entry 1 and 2 with PSDT = prp, or one SglDescriptor
// (read/write it with dptr_sgl()/set_dptr_sgl()).
struct Sqe {
    uint8_t opc;    // CDW0 7:0   opcode
    uint8_t flags;  // CDW0 15:8  FUSE (9:8), PSDT (15:14)
    uint16_t cid;   // CDW0 31:16 command identifier
    uint32_t nsid;  // CDW1
    uint32_t cdw2;
    uint32_t cdw3;
    uint64_t mptr;  // CDW4-5 metadata pointer
    uint64_t prp1;  // CDW6-7 DPTR
    uint64_t prp2;  // CDW8-9 DPTR
    uint32_t cdw10;
    uint32_t cdw11;
    uint32_t cdw12;
    uint32_t cdw13;
    uint32_t cdw14;
    uint32_t cdw15;

    constexpr uint32_t cdw0() const noexcept {
        return uint32_t{opc} | (uint32_t{flags} << 8) | (uint32_t{cid} << 16);
    }
    constexpr Fuse fuse() const noexcept { return static_cast<Fuse>(flags & 0x3); }
    constexpr Sqe& set_fuse(Fuse f) noexcept {
        flags = static_cast<uint8_t>((flags & ~0x3u) | (static_cast<uint8_t>(f) & 0x3u));
        return *this;
    }
    constexpr Psdt psdt() const noexcept { return static_cast<Psdt>((flags >> 6) & 0x3); }
    constexpr Sqe& set_psdt(Psdt p) noexcept {
        flags = static_cast<uint8_t>((flags & 0x3Fu) | ((static_cast<uint8_t>(p) & 0x3u) << 6));
        return *this;
    }
    constexpr SglDescriptor dptr_sgl() const noexcept {
        return std::bit_cast<SglDescriptor>(std::array<uint64_t, 2>{prp1, prp2});
    }
    constexpr Sqe& set_dptr_sgl(const SglDescriptor& d) noexcept {
        const auto words = std::bit_cast<std::array<uint64_t, 2>>(d);
        prp1 = words[0];
        prp2 = words[1];
        return *this;
    }
    // CDW10-11 as one 64-bit value: the starting LBA of NVM I/O commands.
    constexpr uint64_t slba() const noexcept { return uint64_t{cdw10} | (uint64_t{cdw11} << 32); }
    constexpr Sqe& set_slba(uint64_t lba) noexcept {
        cdw10 = static_cast<uint32_t>(lba);
        cdw11 = static_cast<uint32_t>(lba >> 32);
        return *this;
    }
};
static_assert(sizeof(Sqe) == 64);
static_assert(offsetof(Sqe, opc) == 0 && offsetof(Sqe, flags) == 1 && offsetof(Sqe, cid) == 2);
static_assert(offsetof(Sqe, nsid) == 4 && offsetof(Sqe, cdw2) == 8 && offsetof(Sqe, cdw3) == 12);
static_assert(offsetof(Sqe, mptr) == 16 && offsetof(Sqe, prp1) == 24 && offsetof(Sqe, prp2) == 32);
static_assert(offsetof(Sqe, cdw10) == 40 && offsetof(Sqe, cdw11) == 44);
static_assert(offsetof(Sqe, cdw12) == 48 && offsetof(Sqe, cdw13) == 52);
static_assert(offsetof(Sqe, cdw14) == 56 && offsetof(Sqe, cdw15) == 60);

// The 16-bit status word of a completion (CQE DW3 31:16): phase tag in bit 0, Status Field above.
struct StatusField {
    using value_type = uint16_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(p, 0, 1)     // Phase Tag
    STRATA_NVME_FIELD(sc, 1, 8)    // Status Code
    STRATA_NVME_FIELD(sct, 9, 3)   // Status Code Type
    STRATA_NVME_FIELD(crd, 12, 2)  // Command Retry Delay (index into CRDT1..3)
    STRATA_NVME_FIELD(m, 14, 1)    // More (information in the Error Information log)
    STRATA_NVME_FIELD(dnr, 15, 1)  // Do Not Retry

    // Success is SCT 0, SC 0, whatever P, CRD, M and DNR say.
    constexpr bool ok() const noexcept { return sc() == 0 && sct() == 0; }
    constexpr bool is_error() const noexcept { return !ok(); }

    static constexpr StatusField make(uint8_t sct_value, uint8_t sc_value, bool dnr_value = false,
                                      bool more = false) noexcept {
        StatusField s{};
        s.set_sct(sct_value).set_sc(sc_value).set_dnr(dnr_value ? 1 : 0).set_m(more ? 1 : 0);
        return s;
    }
    friend constexpr bool operator==(StatusField, StatusField) noexcept = default;
};
static_assert(sizeof(StatusField) == 2);

// Completion Queue Entry, 16 bytes.
struct Cqe {
    uint32_t dw0;     // command specific
    uint32_t dw1;     // command specific
    uint16_t sqhd;    // SQ Head Pointer
    uint16_t sqid;    // SQ Identifier
    uint16_t cid;     // Command Identifier
    uint16_t status;  // Phase Tag (bit 0) and Status Field (15:1); see StatusField

    constexpr StatusField sf() const noexcept { return StatusField{status}; }
    constexpr uint16_t p() const noexcept { return sf().p(); }
    constexpr uint16_t sc() const noexcept { return sf().sc(); }
    constexpr uint16_t sct() const noexcept { return sf().sct(); }
    constexpr uint16_t crd() const noexcept { return sf().crd(); }
    constexpr uint16_t m() const noexcept { return sf().m(); }
    constexpr uint16_t dnr() const noexcept { return sf().dnr(); }
    constexpr bool ok() const noexcept { return sf().ok(); }
};
static_assert(sizeof(Cqe) == 16);
static_assert(offsetof(Cqe, dw0) == 0 && offsetof(Cqe, dw1) == 4 && offsetof(Cqe, sqhd) == 8);
static_assert(offsetof(Cqe, sqid) == 10 && offsetof(Cqe, cid) == 12 && offsetof(Cqe, status) == 14);

// Dataset Management range, 16 bytes (up to 256 per command, CDW10.NR 0's based).
struct DsmRange {
    uint32_t cattr;  // Context Attributes
    uint32_t nlb;    // Length in logical blocks (1's based here, unlike command NLB fields)
    uint64_t slba;   // Starting LBA
};
static_assert(sizeof(DsmRange) == 16);
static_assert(offsetof(DsmRange, cattr) == 0 && offsetof(DsmRange, nlb) == 4 &&
              offsetof(DsmRange, slba) == 8);
inline constexpr uint32_t dsm_max_ranges = 256;

}  // namespace strata::nvme::spec
