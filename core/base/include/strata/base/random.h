// Deterministic PRNG (xoshiro256**), seeded through splitmix64. Its output is fixed by this
// code alone, not by a standard library's distributions, so a seed replays on any machine.
#pragma once

#include <cstdint>

namespace strata {

class Prng {
public:
    explicit Prng(uint64_t seed = 0) noexcept { reseed(seed); }

    void reseed(uint64_t seed) noexcept {
        for (auto& word : s_) word = splitmix64(seed);
    }

    uint64_t next() noexcept {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, bound); bound > 0. Lemire's multiply-shift (bias < 2^-64 * bound).
    uint64_t uniform(uint64_t bound) noexcept {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
    }
    // Uniform in [lo, hi].
    uint64_t range(uint64_t lo, uint64_t hi) noexcept { return lo + uniform(hi - lo + 1); }
    // Uniform in [0, 1).
    double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    bool chance(double probability) noexcept { return unit() < probability; }

    static uint64_t splitmix64(uint64_t& state) noexcept {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

// Order-dependent 64-bit hash accumulator for traces (FNV-1a over 64-bit words, then mixed).
class TraceHash {
public:
    void add(uint64_t word) noexcept {
        for (int i = 0; i < 8; ++i) {
            h_ ^= (word >> (i * 8)) & 0xff;
            h_ *= 0x100000001b3ULL;
        }
    }
    uint64_t value() const noexcept {
        uint64_t s = h_;
        return Prng::splitmix64(s);
    }

private:
    uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace strata
