// Bit-field helpers for the IOAT spec headers (kept separate from the NVMe spec's so the two
// header-only targets stay independent).
//
// Registers and descriptor control words are small structs wrapping one unsigned integer (`raw`)
// with constexpr get/set methods per field, never C++ bitfields (implementation-defined layout).
// STRATA_IOAT_FIELD(name, lsb, width) declares `name()` and a chainable `set_name(v)`; the setter
// masks `v` to the field width and leaves every other bit alone.
//
// Endianness: IOAT registers and descriptors are little-endian. Strata targets little-endian
// hosts (x86_64, where I/OAT exists at all); the static_assert makes a big-endian port fail.
#pragma once

#include <bit>
#include <cstdint>

namespace strata::ioat::spec {

static_assert(std::endian::native == std::endian::little,
              "strata IOAT spec structs assume a little-endian host (x86_64)");

namespace detail {

template <typename T>
constexpr T bit_mask(unsigned width) noexcept {
    return width >= sizeof(T) * 8 ? static_cast<T>(~T{0})
                                  : static_cast<T>((static_cast<T>(1) << width) - 1u);
}
template <typename T>
constexpr T get_bits(T raw, unsigned lsb, unsigned width) noexcept {
    return static_cast<T>((raw >> lsb) & bit_mask<T>(width));
}
template <typename T>
constexpr T set_bits(T raw, unsigned lsb, unsigned width, T value) noexcept {
    const T mask = static_cast<T>(bit_mask<T>(width) << lsb);
    return static_cast<T>((raw & static_cast<T>(~mask)) | (static_cast<T>(value << lsb) & mask));
}

}  // namespace detail

#define STRATA_IOAT_FIELD(name, lsb, width)                                                   \
    constexpr value_type name() const noexcept {                                              \
        return ::strata::ioat::spec::detail::get_bits<value_type>(raw, (lsb), (width));       \
    }                                                                                         \
    constexpr auto& set_##name(value_type value) noexcept {                                   \
        raw = ::strata::ioat::spec::detail::set_bits<value_type>(raw, (lsb), (width), value); \
        return *this;                                                                         \
    }

}  // namespace strata::ioat::spec
