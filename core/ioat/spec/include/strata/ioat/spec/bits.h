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

#include <strata/base/bitfield.h>

namespace strata::ioat::spec {

static_assert(std::endian::native == std::endian::little,
              "strata IOAT spec structs assume a little-endian host (x86_64)");

// The field helpers are shared with every spec header in the tree (strata/base/bitfield.h).
#define STRATA_IOAT_FIELD(name, lsb, width) STRATA_BITFIELD(name, lsb, width)

}  // namespace strata::ioat::spec
