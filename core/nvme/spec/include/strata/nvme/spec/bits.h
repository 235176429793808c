// Bit-field helpers shared by the NVMe spec headers.
//
// Spec registers and command dwords are modelled as small structs wrapping one unsigned integer
// (`raw`) with constexpr get/set methods per field, never as C++ bitfields (whose layout is
// implementation-defined). STRATA_NVME_FIELD(name, lsb, width) declares `name()` and a chainable
// `set_name(v)`; a setter masks `v` to the field's width, exactly as hardware ignores the bits
// that do not fit, and never touches neighbouring bits.
//
// Endianness: every NVMe structure is little-endian on the wire and in memory shared with the
// device. Strata targets x86_64 (and other little-endian hosts), so multi-byte fields are plain
// fixed-width integers; the static_assert below makes a big-endian port fail loudly instead of
// silently byte-swapping nothing. Fields the spec places at unaligned offsets use UnalignedLe<T>
// and 128-bit counters use Uint128Le: byte arrays decoded with shifts, correct on any host.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include <strata/base/bitfield.h>
#include <string_view>

namespace strata::nvme::spec {

static_assert(std::endian::native == std::endian::little,
              "strata NVMe spec structs assume a little-endian host (x86_64); a big-endian port "
              "needs byte-swapping accessors for every multi-byte field");

// The field helpers are shared with every spec header in the tree (strata/base/bitfield.h).
#define STRATA_NVME_FIELD(name, lsb, width) STRATA_BITFIELD(name, lsb, width)

// A little-endian integer stored as bytes, for fields at offsets not aligned to their size
// (e.g. the SMART log's composite temperature at byte 1). Alignment 1, no padding.
template <typename T>
struct UnalignedLe {
    std::array<uint8_t, sizeof(T)> bytes{};

    constexpr T get() const noexcept {
        T v = 0;
        for (size_t i = 0; i < sizeof(T); ++i)
            v = static_cast<T>(v | (static_cast<T>(bytes[i]) << (8 * i)));
        return v;
    }
    constexpr void set(T v) noexcept {
        for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<uint8_t>(v >> (8 * i));
    }
};
static_assert(sizeof(UnalignedLe<uint16_t>) == 2 && alignof(UnalignedLe<uint16_t>) == 1);
static_assert(sizeof(UnalignedLe<uint32_t>) == 4 && alignof(UnalignedLe<uint32_t>) == 1);

// A 128-bit little-endian counter (SMART log data units, TNVMCAP, NVMCAP ...).
struct Uint128Le {
    std::array<uint8_t, 16> bytes{};

    constexpr uint64_t lo() const noexcept { return word(0); }
    constexpr uint64_t hi() const noexcept { return word(8); }
    // The value, or UINT64_MAX when it does not fit in 64 bits.
    constexpr uint64_t saturated() const noexcept { return hi() != 0 ? ~uint64_t{0} : lo(); }
    constexpr void set(uint64_t lo_value, uint64_t hi_value = 0) noexcept {
        for (size_t i = 0; i < 8; ++i) {
            bytes[i] = static_cast<uint8_t>(lo_value >> (8 * i));
            bytes[8 + i] = static_cast<uint8_t>(hi_value >> (8 * i));
        }
    }

private:
    constexpr uint64_t word(size_t at) const noexcept {
        uint64_t v = 0;
        for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(bytes[at + i]) << (8 * i);
        return v;
    }
};
static_assert(sizeof(Uint128Le) == 16 && alignof(Uint128Le) == 1);

// ASCII string fields (SN, MN, FR, SUBNQN) are space- or NUL-padded on the right: the text
// without the padding. Never reads past N.
template <size_t N>
constexpr std::string_view trimmed(const std::array<char, N>& field) noexcept {
    size_t len = 0;
    while (len < N && field[len] != '\0') ++len;
    while (len > 0 && field[len - 1] == ' ') --len;
    return {field.data(), len};
}

}  // namespace strata::nvme::spec
