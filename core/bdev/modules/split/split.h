// bdev_split: SPDK's split virtual bdev. One base bdev (claimed) becomes split_count bdevs
// <base>p0 .. <base>p{N-1} of equal size, each passing its I/O to its own range of the base.
// A split configured before its base exists is created when the base appears (examine); the
// parts go when the base does, and come back with it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

extern const Module kSplitModule;

// SPDK decodes split_count as a uint32 and clamps it to what fits the base; no other cap.
inline constexpr uint64_t kMaxSplitCount = UINT32_MAX;

// Control path, on a Thread. split_size_mb 0: the base divided evenly (remainder unused);
// otherwise parts of that many MiB, as many as fit (split_count is lowered, as in SPDK).
// Returns the names of the parts created now (empty when waiting for the base).
Result<std::vector<std::string>> split_create(const std::string& base_bdev, uint64_t split_count,
                                              uint64_t split_size_mb);
// Forgets the configuration and unregisters every part; done on the calling Thread.
void split_delete(const std::string& base_bdev, std::function<void(Result<void>)> done);

}  // namespace strata::bdev
