// Helpers for tests on the RealScheduler (reactor OS threads): wait for a condition with a
// wall-clock bound, and run a callable on a Thread and wait until it ran there.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <strata/runtime/thread.h>

namespace strata::runtime::testing {

// Polls pred() (from the calling OS thread) until it holds or `seconds` pass.
template <class P>
bool wait_for(P pred, int seconds = 60) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// Runs fn() on `thread` by message and waits for it (the message orders what fn touched
// before the caller reads it).
template <class F>
void run_on(Thread* thread, F&& fn) {
    std::atomic<bool> done{false};
    ASSERT_TRUE(thread
                    ->post([&] {
                        fn();
                        done.store(true, std::memory_order_release);
                    })
                    .ok());
    ASSERT_TRUE(wait_for([&] { return done.load(std::memory_order_acquire); }));
}

}  // namespace strata::runtime::testing
