// World: an App (the daemon's framework and method registry) on a SimScheduler, driven from
// the calling Python thread.
//
// Single-threaded: one Python thread drives a World at a time; a second caller (another
// thread, or a run_until predicate re-entering the World) gets a RuntimeError. The simulation
// runs with the GIL released; predicates and log records re-acquire it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include <strata/rpc/app.h>
#include <strata/runtime/scheduler.h>

namespace strata::py {

class World {
public:
    World(uint64_t seed, uint32_t reactors, bool wait_for_rpc, pybind11::object config);
    ~World();
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    uint64_t seed() const { return sched_->seed(); }
    uint32_t reactors() const { return sched_->reactor_count(); }
    uint64_t now() const { return sched_->now_ns(); }
    uint64_t steps() const { return sched_->sim_stats().steps; }
    uint64_t trace_hash() const { return sched_->trace_hash(); }
    bool closed() const { return app_ == nullptr; }

    // Full JSON-RPC response for one request built from method/params.
    pybind11::object call(const std::string& method, pybind11::object params, uint64_t timeout_ns);
    // Any request value (object or batch list) as the server would dispatch it.
    pybind11::object call_request(pybind11::object request, uint64_t timeout_ns);
    std::optional<std::string> handle_raw(const std::string& text, uint64_t timeout_ns);

    bool run_until(pybind11::object pred, std::optional<uint64_t> timeout_ns,
                   std::optional<uint64_t> max_steps);
    void advance(uint64_t ns);
    std::string step();
    bool run_until_idle(uint64_t max_steps);
    pybind11::dict sim_stats() const;
    pybind11::list threads() const;
    void close();

    // Harness probes: extra Threads and ordered marks, to watch the simulator interleave.
    uint32_t create_thread(const std::string& name, int reactor);
    // Posts `count` messages to each named Thread; each appends (thread, seq, now_ns) to the
    // mark log when it runs.
    void post_marks(const std::vector<std::string>& threads, uint32_t count);
    pybind11::list take_marks();

private:
    class Guard;
    void check_open() const;

    std::unique_ptr<runtime::SimScheduler> sched_;
    std::unique_ptr<rpc::App> app_;
    std::atomic<bool> busy_{false};
    struct Mark {
        std::string thread;
        uint32_t seq;
        uint64_t time_ns;
    };
    std::vector<Mark> marks_;
};

}  // namespace strata::py
