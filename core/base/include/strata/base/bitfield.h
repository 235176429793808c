// Bit fields of spec registers and descriptors, without C++ bitfields (whose layout is
// implementation-defined). A register is a small struct wrapping one unsigned `raw` of type
// `value_type`; STRATA_BITFIELD(name, lsb, width) declares `name()` and a chainable
// `set_name(v)` for bits [lsb, lsb + width). A setter masks `v` to the field's width, as
// hardware ignores bits that do not fit, and never touches neighbouring bits.
#pragma once

namespace strata::bits {

template <typename T>
constexpr T mask(unsigned width) noexcept {
    return width >= sizeof(T) * 8 ? static_cast<T>(~T{0})
                                  : static_cast<T>((static_cast<T>(1) << width) - 1u);
}

template <typename T>
constexpr T get(T raw, unsigned lsb, unsigned width) noexcept {
    return static_cast<T>((raw >> lsb) & mask<T>(width));
}

template <typename T>
constexpr T set(T raw, unsigned lsb, unsigned width, T value) noexcept {
    const T m = static_cast<T>(mask<T>(width) << lsb);
    return static_cast<T>((raw & static_cast<T>(~m)) | (static_cast<T>(value << lsb) & m));
}

}  // namespace strata::bits

#define STRATA_BITFIELD(name, lsb, width)                                              \
    constexpr value_type name() const noexcept {                                       \
        return ::strata::bits::get<value_type>(raw, (lsb), (width));                   \
    }                                                                                  \
    constexpr auto& set_##name(value_type value) noexcept {                            \
        raw = ::strata::bits::set<value_type>(raw, (lsb), (width), value);             \
        return *this;                                                                  \
    }
