#include <strata/runtime/scheduler.h>

#include <algorithm>
#include <atomic>

#include <strata/base/log.h>

#include "poller.h"

namespace strata::runtime {

STRATA_LOG_COMPONENT(sim);

namespace {
enum StepKind : uint64_t { kMessage = 1, kPoller = 2, kTimer = 3, kTimeJump = 4 };
}

namespace {
std::atomic<int> g_live_simulators{0};  // a diagnostic count, not module state
}  // namespace

namespace detail {
int live_simulators() noexcept { return g_live_simulators.load(std::memory_order_relaxed); }
}  // namespace detail

SimScheduler::SimScheduler(uint64_t seed, uint32_t reactors)
    : Scheduler(reactors), seed_(seed), prng_(seed) {
    event_trace_ = &events_;
    g_live_simulators.fetch_add(1, std::memory_order_relaxed);
}

SimScheduler::~SimScheduler() {
    release_all_threads();
    g_live_simulators.fetch_sub(1, std::memory_order_relaxed);
}

uint64_t SimScheduler::trace_hash() const noexcept {
    TraceHash h;
    h.add(trace_.value());
    h.add(events_.hash.value());
    return h.value();
}

void SimScheduler::on_thread_created(Thread&) {}

std::vector<int> SimScheduler::reactor_cores() const {
    return std::vector<int>(reactor_count(), -1);
}

void SimScheduler::collect_candidates() {
    candidates_.clear();
    const uint64_t now = clock_.now_ns();
    // Creation order, never pointer order: the candidate list must not depend on addresses.
    for (auto& owned : threads_locked()) {
        Thread* t = owned.get();
        if (t->exited()) continue;
        if (t->has_message()) candidates_.push_back({t, nullptr, false});
        for (Poller* p : t->active_)
            if (p->state == Poller::State::active && p->idle_epoch != epoch_)
                candidates_.push_back({t, p, false});
        if (!t->timed_.empty()) {
            const Poller* top = t->timed_.front();
            if (top->next_run_ns <= now || top->state == Poller::State::unregistered)
                candidates_.push_back({t, nullptr, true});
        }
    }
}

uint64_t SimScheduler::next_timer_ns() const {
    uint64_t next = UINT64_MAX;
    for (auto& owned : const_cast<SimScheduler*>(this)->threads_locked()) {
        const Thread* t = owned.get();
        if (t->exited()) continue;
        for (const Poller* p : t->timed_)  // heap front is the earliest live-or-dead entry
            if (p->state == Poller::State::active) next = std::min(next, p->next_run_ns);
    }
    return next;
}

void SimScheduler::run_candidate(const Candidate& c) {
    Thread* t = c.thread;
    set_current_thread(t);
    const uint64_t now = clock_.now_ns();
    bool busy = false;
    uint64_t kind = 0, detail = 0;
    if (c.poller != nullptr) {
        kind = kPoller;
        detail = c.poller->seq;
        busy = t->run_poller(c.poller);
        if (!busy) c.poller->idle_epoch = epoch_;
        ++stats_.poller_runs;
    } else if (c.timer) {
        kind = kTimer;
        if (Poller* p = t->next_due_timer(now)) {
            detail = p->seq;
            busy = t->run_poller(p);
            ++stats_.timer_runs;
        }
    } else {
        kind = kMessage;
        busy = t->run_one_message();
        ++stats_.messages;
    }
    if (busy) ++epoch_;
    (busy ? t->stats_.busy_iterations : t->stats_.idle_iterations)++;
    t->reap_unregistered();
    t->maybe_finish_exit();
    set_current_thread(nullptr);
    trace_.add((uint64_t{t->id()} << 32) | (kind << 24) | (busy ? 1 : 0));
    trace_.add(detail);
    trace_.add(now);
}

SimScheduler::StepResult SimScheduler::step_bounded(uint64_t deadline_ns) {
    collect_candidates();
    if (!candidates_.empty()) {
        size_t pick = prng_.uniform(candidates_.size());
        if (perturb_pending_ && candidates_.size() > 1) {
            pick = (pick + 1) % candidates_.size();
            perturb_pending_ = false;
        }
        const Candidate c = candidates_[pick];
        run_candidate(c);
        ++stats_.steps;
        if (step_cost_ns != 0) clock_.advance_to(clock_.now_ns() + step_cost_ns);
        return StepResult::ran;
    }
    uint64_t next = next_timer_ns();
    if (next == UINT64_MAX || next > deadline_ns) return StepResult::idle;
    clock_.advance_to(next);
    ++epoch_;  // time moved: pollers that look at the clock may have work now
    ++stats_.time_jumps;
    trace_.add(kTimeJump << 24);
    trace_.add(next);
    return StepResult::time_advanced;
}

SimScheduler::StepResult SimScheduler::step() { return step_bounded(UINT64_MAX); }

bool SimScheduler::run_until(const std::function<bool()>& pred, uint64_t deadline_ns,
                             uint64_t max_steps) {
    for (uint64_t n = 0;; ++n) {
        if (pred && pred()) return true;
        if (n >= max_steps) {
            STRATA_WARNLOG(log_sim, "run_until: step limit {} reached at t={} ns (seed {})",
                           max_steps, clock_.now_ns(), seed_);
            return false;
        }
        if (step_bounded(deadline_ns) == StepResult::idle) {
            if (deadline_ns != UINT64_MAX) clock_.advance_to(deadline_ns);
            return pred && pred();
        }
    }
}

void SimScheduler::advance(uint64_t delta_ns) {
    run_until(nullptr, clock_.now_ns() + delta_ns);
}

bool SimScheduler::run_until_idle(uint64_t max_steps) {
    for (uint64_t n = 0; n < max_steps; ++n)
        if (step() == StepResult::idle) return true;
    STRATA_WARNLOG(log_sim, "run_until_idle: step limit {} reached (seed {})", max_steps, seed_);
    return false;
}

}  // namespace strata::runtime
