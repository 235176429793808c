// Shared GoogleTest fixture: a SimScheduler with N Threads and helpers to drive it.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/runtime/io_device.h>
#include <strata/runtime/scheduler.h>

namespace strata::runtime::testing {

class SimFixture : public ::testing::Test {
protected:
    // Call from the test (or SetUp) to build the world.
    void start_sim(uint64_t seed = 1, size_t thread_count = 2, uint32_t reactors = 1) {
        sim = std::make_unique<SimScheduler>(seed, reactors);
        threads.clear();
        for (size_t i = 0; i < thread_count; ++i)
            threads.push_back(sim->create_thread("t" + std::to_string(i)));
    }

    void TearDown() override {
        threads.clear();
        sim.reset();
    }

    // Runs steps until pred() holds or `timeout_ns` of virtual time passes.
    bool poll_until(const std::function<bool()>& pred, uint64_t timeout_ns = 10 * kNsPerSec) {
        return sim->run_until(pred, sim->now_ns() + timeout_ns);
    }

    void advance(uint64_t delta_ns) { sim->advance(delta_ns); }
    bool run_until_idle() { return sim->run_until_idle(); }

    // Runs fn on `thread` and drives the sim until it has run.
    template <class F>
    void on(Thread* thread, F&& fn) {
        bool done = false;
        auto wrapped = [&done, f = std::forward<F>(fn)]() mutable {
            f();
            done = true;
        };
        ASSERT_TRUE(thread->post(std::move(wrapped)).ok());
        ASSERT_TRUE(poll_until([&] { return done; })) << "message never ran";
    }

    std::unique_ptr<SimScheduler> sim;
    std::vector<Thread*> threads;
};

}  // namespace strata::runtime::testing
