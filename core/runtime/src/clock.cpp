#include <strata/runtime/clock.h>

#include <time.h>

namespace strata::runtime {

uint64_t RealClock::now_ns() const noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * kNsPerSec + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace strata::runtime
