// The receivers' fuzz targets (iscsi_pdu, nvmf_tcp_pdu) feed one byte stream twice, as one
// buffer and in chunks at fuzzer-chosen split points, and check that both runs agree. This is
// the shared half: the PRNG and the chunking.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace strata::fuzz {

struct Rng {  // xorshift32; s must not be 0 (the seeds below never are for the split)
    uint32_t s;
    uint32_t next() noexcept {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        return s;
    }
};

// Calls chunk(p, n) on consecutive pieces of [data, data + size): the whole buffer when mode
// is 0, else pieces of 1 .. (1 << mode) bytes drawn from an Rng seeded from `seed` (the
// seeding the corpora were written for). chunk returns false to stop (the receiver failed);
// returns false if it stopped early.
template <class F>
bool feed_split(const uint8_t* data, size_t size, uint32_t mode, uint32_t seed, F&& chunk) {
    Rng split{seed * 2654435761u + 1};
    size_t off = 0;
    while (off < size) {
        size_t n = size - off;
        if (mode != 0) n = std::min<size_t>(n, 1 + split.next() % (1u << mode));
        if (!chunk(data + off, n)) return false;
        off += n;
    }
    return true;
}

}  // namespace strata::fuzz
