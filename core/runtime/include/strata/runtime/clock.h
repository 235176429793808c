// Time source of a scheduler: the steady clock in real mode, virtual time under the simulator.
// Nothing in core/ reads time any other way.
#pragma once

#include <cstdint>

namespace strata::runtime {

inline constexpr uint64_t kNsPerUs = 1000;
inline constexpr uint64_t kNsPerMs = 1000 * 1000;
inline constexpr uint64_t kNsPerSec = 1000 * 1000 * 1000;

class Clock {
public:
    virtual ~Clock() = default;
    virtual uint64_t now_ns() const noexcept = 0;
};

// CLOCK_MONOTONIC through the vDSO: no syscall, ~20 ns, comparable across cores.
class RealClock final : public Clock {
public:
    uint64_t now_ns() const noexcept override;
};

// Advanced only by its owner (the sim scheduler or a test); never goes backwards.
class VirtualClock final : public Clock {
public:
    uint64_t now_ns() const noexcept override { return now_ns_; }
    void advance_to(uint64_t t_ns) noexcept {
        if (t_ns > now_ns_) now_ns_ = t_ns;
    }
    void advance_by(uint64_t delta_ns) noexcept { now_ns_ += delta_ns; }

private:
    uint64_t now_ns_ = 0;
};

}  // namespace strata::runtime
