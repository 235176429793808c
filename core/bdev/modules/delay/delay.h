// bdev_delay: SPDK's latency-injecting virtual bdev. Every read (write) completes no sooner than
// its average latency after submission, or 1 in 100 of them (drawn from a seeded PRNG per
// channel) no sooner than the p99 latency; other I/O types pass through undelayed. Latencies
// are in runtime time — virtual under the simulator — and change at run time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

extern const Module kDelayModule;

struct DelayOptions {
    std::string base_bdev_name;
    std::string name;
    std::string uuid;  // empty: generated
    uint64_t avg_read_latency_us = 0;
    uint64_t p99_read_latency_us = 0;
    uint64_t avg_write_latency_us = 0;
    uint64_t p99_write_latency_us = 0;
};

inline constexpr uint64_t kMaxDelayLatencyUs = 3'600'000'000;  // an hour

// Control path, on a Thread. Creates the bdev now if the base exists, else when it appears.
Result<void> delay_create(const DelayOptions& options);
void delay_delete(const std::string& name, std::function<void(Result<void>)> done);
// latency_type: avg_read, p99_read, avg_write or p99_write. Applies to I/O submitted after.
Result<void> delay_update_latency(const std::string& name, const std::string& latency_type,
                                  uint64_t latency_us);

}  // namespace strata::bdev
