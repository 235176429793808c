// Internal: a registered poller.
#pragma once

#include <cstdint>

#include <strata/runtime/thread.h>

namespace strata::runtime {

class Poller {
public:
    enum class State : uint8_t { active, paused, unregistered };

    PollFn fn;
    void* ctx;
    const char* name;
    uint64_t period_ns;
    uint64_t next_run_ns = 0;
    uint64_t seq;  // per-Thread registration order: deterministic tie-break and trace id
    State state = State::active;
    uint64_t run_count = 0;
    uint64_t busy_count = 0;
    uint64_t idle_epoch = 0;  // simulator: epoch in which it last reported idle

    Poller(PollFn f, void* c, const char* n, uint64_t period, uint64_t s)
        : fn(f), ctx(c), name(n), period_ns(period), seq(s) {}
};

// Min-heap order for timed pollers: earliest deadline first, then registration order.
struct TimerLater {
    bool operator()(const Poller* a, const Poller* b) const noexcept {
        if (a->next_run_ns != b->next_run_ns) return a->next_run_ns > b->next_run_ns;
        return a->seq > b->seq;
    }
};

// Set while a Thread's code runs on this OS thread.
void set_current_thread(Thread* thread) noexcept;

}  // namespace strata::runtime
