// SPDK's latency histogram layout (include/spdk/histogram_data.h, bucket shift 7), counting
// nanoseconds instead of TSC ticks: ranges 0 and 1 hold one value per bucket (0..255), each
// further range covers the next power of two in 128 buckets, so the resolution is under 1%.
// Iteration reports the same [start, end) bounds SPDK's spdk_histogram_data_iterate() does, so
// bdevperf prints SPDK's "-l" summary and "-ll" bucket lines from it.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace strata::apps {

class SpdkHistogram {
public:
    static constexpr uint32_t kShift = 7;
    static constexpr uint32_t kPerRange = 1u << kShift;
    static constexpr uint32_t kLsb = 64 - kShift;
    static constexpr uint32_t kRanges = kLsb + 1;

    SpdkHistogram() : buckets_(size_t{kRanges} * kPerRange, 0) {}

    static uint32_t range_of(uint64_t v) {
        const auto clz = static_cast<uint32_t>(v > 0 ? std::countl_zero(v) : 64);
        return clz <= kLsb ? kLsb - clz : 0;
    }
    static uint32_t index_of(uint64_t v, uint32_t range) {
        const uint32_t shift = range == 0 ? 0 : range - 1;
        return static_cast<uint32_t>((v >> shift) & (kPerRange - 1));
    }
    // Exclusive upper bound of bucket (range, index); the lower bound is the previous one's.
    static uint64_t bucket_end(uint32_t range, uint32_t index) {
        const uint64_t i = uint64_t{index} + 1;
        if (range == 0) return i;
        return (uint64_t{1} << (range + kShift - 1)) + (i << (range - 1));
    }

    void tally(uint64_t v) {
        const uint32_t r = range_of(v);
        ++buckets_[size_t{r} * kPerRange + index_of(v, r)];
    }
    void merge(const SpdkHistogram& o) {
        for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += o.buckets_[i];
    }
    uint64_t total() const {
        uint64_t t = 0;
        for (uint64_t c : buckets_) t += c;
        return t;
    }
    // fn(start, end, count, total, so_far) for every bucket, as SPDK's iterate.
    template <class F>
    void iterate(F&& fn) const {
        const uint64_t all = total();
        uint64_t so_far = 0, end = 0;
        for (uint32_t r = 0; r < kRanges; ++r) {
            for (uint32_t i = 0; i < kPerRange; ++i) {
                const uint64_t c = buckets_[size_t{r} * kPerRange + i];
                so_far += c;
                const uint64_t start = end;
                end = bucket_end(r, i);
                fn(start, end, c, all, so_far);
            }
        }
    }

private:
    std::vector<uint64_t> buckets_;
};

}  // namespace strata::apps
