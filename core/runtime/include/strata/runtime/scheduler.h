// Schedulers: what runs Threads.
//
// RealScheduler: one Reactor per core in the mask, each an OS thread pinned to its core that
// busy-polls the Threads placed on it. SimScheduler: every reactor and every device model in
// the calling OS thread; the next step (one message, one poller run, one due timer) is chosen
// by a seeded PRNG, and virtual time jumps to the next timer when nothing can make progress.
// Same seed, same run.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <strata/base/random.h>
#include <strata/base/status.h>
#include <strata/runtime/clock.h>
#include <strata/runtime/thread.h>

namespace strata::runtime {

struct ReactorInfo {
    uint32_t index;
    int core;  // -1 under the simulator
    std::vector<std::string> threads;
};

class Scheduler {
public:
    virtual ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    virtual const Clock& clock() const noexcept = 0;
    uint64_t now_ns() const noexcept { return clock().now_ns(); }
    virtual bool simulated() const noexcept = 0;

    // Control path, any OS thread. reactor < 0 places the Thread round-robin. The Thread works
    // for `host`, by default the creator's (current_host(): the running Thread's, or a
    // HostScope's).
    Thread* create_thread(std::string name, int reactor = -1, Host* host = nullptr);
    uint32_t reactor_count() const noexcept { return reactor_count_; }
    std::vector<Thread*> threads() const;  // snapshot, in creation order
    Thread* find_thread(std::string_view name) const;
    Thread* thread_by_id(uint32_t id) const;
    std::vector<ReactorInfo> reactors() const;
    // Control path, where no Thread of `host` can be running (under the simulator: between
    // steps; real mode: once stopped). Releases every Thread of `host` that has not exited (its
    // undelivered messages dropped, pollers unregistered, channels freed) and marks it exited,
    // so the Host can be destroyed while the scheduler runs on for other Hosts (one host of a
    // simulated cluster shutting down). Returns how many Threads it released.
    size_t release_threads_of(const Host& host) noexcept;

    size_t message_ring_capacity = 16384;  // per Thread; set before creating Threads
    EventTrace* event_trace() const noexcept { return event_trace_; }  // nullptr: real mode

protected:
    explicit Scheduler(uint32_t reactor_count);
    virtual void on_thread_created(Thread& thread) = 0;
    virtual std::vector<int> reactor_cores() const = 0;
    void destroy_exited_threads();  // only where no Thread can be running
    void release_all_threads() noexcept;
    std::vector<std::unique_ptr<Thread>>& threads_locked() { return threads_; }

    mutable std::mutex threads_mutex_;  // control path: creation and listing only
    EventTrace* event_trace_ = nullptr;  // trace_event()'s target; set by the simulator

private:
    std::vector<std::unique_ptr<Thread>> threads_;
    uint32_t reactor_count_;
    uint32_t next_thread_id_ = 0;
    uint32_t next_reactor_ = 0;
};

struct RealSchedulerOptions {
    // Cores to run reactors on, one reactor each (from a core mask such as 0x3).
    std::vector<int> cores{0};
    bool pin = true;             // pin reactor OS threads to their cores
    bool yield_when_idle = true; // sched_yield after a run of idle iterations (shared hosts, CI)
};

// Parses "0x3", "3", "[0,2-3]" into core indices.
Result<std::vector<int>> parse_core_mask(std::string_view mask);

class RealScheduler final : public Scheduler {
public:
    explicit RealScheduler(RealSchedulerOptions options = {});
    ~RealScheduler() override;  // stops if running

    const Clock& clock() const noexcept override { return clock_; }
    bool simulated() const noexcept override { return false; }

    void start();
    // Graceful stop: keep polling until every message ring is empty across all reactors
    // (messages may create messages), then release channels and pollers on each Thread's
    // reactor, then join. Safe to call more than once.
    void stop();
    bool running() const noexcept { return running_.load(); }

private:
    struct Reactor;
    void on_thread_created(Thread& thread) override;
    std::vector<int> reactor_cores() const override { return options_.cores; }
    void reactor_main(Reactor& reactor);
    bool all_quiet() const;

    RealSchedulerOptions options_;
    RealClock clock_;
    std::vector<std::unique_ptr<Reactor>> reactors_;
    std::atomic<bool> running_{false};
    std::atomic<int> phase_{0};  // 0 run, 1 drain, 2 release, 3 exit
};

struct SimStats {
    uint64_t steps = 0;
    uint64_t messages = 0;
    uint64_t poller_runs = 0;
    uint64_t timer_runs = 0;
    uint64_t time_jumps = 0;
};

class SimScheduler final : public Scheduler {
public:
    explicit SimScheduler(uint64_t seed, uint32_t reactors = 1);
    ~SimScheduler() override;

    const Clock& clock() const noexcept override { return clock_; }
    bool simulated() const noexcept override { return true; }
    uint64_t seed() const noexcept { return seed_; }

    enum class StepResult { ran, time_advanced, idle };
    // One step. `idle`: nothing runnable and no timer pending: the world is quiescent.
    StepResult step();

    // Runs until pred() holds (checked after every step), the world goes idle, virtual time
    // would pass deadline_ns, or max_steps steps ran. Returns whether pred() held.
    bool run_until(const std::function<bool()>& pred, uint64_t deadline_ns = UINT64_MAX,
                   uint64_t max_steps = UINT64_MAX);
    // Runs everything due up to now + delta_ns and leaves the clock there.
    void advance(uint64_t delta_ns);
    // Runs until nothing is runnable and no timer is pending, or max_steps.
    bool run_until_idle(uint64_t max_steps = 100'000'000);

    // Virtual CPU cost of a step that ran work (0, the default: work is free and time moves
    // only when everything is idle). Load generators set it so a world that is never idle
    // still advances the clock (bdevperf --sim).
    uint64_t step_cost_ns = 0;

    // Hash of the run: every step taken (Thread, kind, poller, time) and every event the stack
    // recorded with trace_event() (completed bdev I/O with a checksum of read data, RPC
    // replies, device commands). It does not start from the seed: two seeds that happen to
    // drive the same work give the same hash, and any difference in what ran or what the
    // stack returned changes it. Equal seeds, equal hash.
    uint64_t trace_hash() const noexcept;
    // Harness knob: the next step that has more than one candidate runs another one than the
    // seed chose (the PRNG draw is unchanged). Tests use it to prove the trace hash notices a
    // different interleaving.
    void perturb_next_choice() noexcept { perturb_pending_ = true; }
    // Only the events part, and how many events were recorded.
    uint64_t event_hash() const noexcept { return events_.hash.value(); }
    uint64_t event_count() const noexcept { return events_.count; }
    uint64_t event_count(TraceKind kind) const noexcept {
        return events_.by_kind[static_cast<uint64_t>(kind) & 7];
    }
    const SimStats& sim_stats() const noexcept { return stats_; }
    Prng& prng() noexcept { return prng_; }  // for simulated models that need randomness

private:
    void on_thread_created(Thread& thread) override;
    std::vector<int> reactor_cores() const override;
    struct Candidate {
        Thread* thread;
        Poller* poller;  // nullptr: one message
        bool timer;
    };
    void collect_candidates();
    uint64_t next_timer_ns() const;
    void run_candidate(const Candidate& c);
    StepResult step_bounded(uint64_t deadline_ns);

    uint64_t seed_;
    Prng prng_;
    VirtualClock clock_;
    TraceHash trace_;
    EventTrace events_;
    bool perturb_pending_ = false;
    SimStats stats_;
    uint64_t epoch_ = 1;  // bumps whenever anything did work
    std::vector<Candidate> candidates_;
};

namespace detail {
// SimSchedulers alive in the process (now_ns() refuses to read real time while any is).
int live_simulators() noexcept;
}  // namespace detail

// Installs the runtime's log hooks (virtual time, Thread name). Called by schedulers.
void install_log_hooks();

}  // namespace strata::runtime
