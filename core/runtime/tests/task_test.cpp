#include <strata/runtime/task.h>

#include <strata/runtime/sim_fixture.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace strata::runtime {
namespace {

class TaskTest : public testing::SimFixture {};

Task<int> add(int a, int b) { co_return a + b; }

Task<int> nested() {
    int x = co_await add(1, 2);
    int y = co_await add(x, 10);
    co_return y;
}

TEST_F(TaskTest, LazyAndComposable) {
    start_sim(1, 1);
    bool started = false;
    auto lazy = [&]() -> Task<void> {
        started = true;
        co_return;
    };
    Task<void> t = lazy();
    EXPECT_FALSE(started);  // lazy: nothing runs before it is awaited or spawned
    int result = 0;
    spawn(*threads[0], nested(), [&](int r) { result = r; });
    EXPECT_EQ(result, 0);  // starts by message, not inline
    ASSERT_TRUE(poll_until([&] { return result != 0; }));
    EXPECT_EQ(result, 13);
}

// An async operation completing by timer on the same Thread, as a driver would.
struct Timer {
    AsyncResult<uint64_t>* result;
    Poller* poller;
};

PollStatus fire(void* p) {
    auto* t = static_cast<Timer*>(p);
    current_thread()->unregister_poller(t->poller);
    t->result->set(now_ns());
    delete t;
    return PollStatus::busy;
}

Task<uint64_t> sleep_ns(uint64_t ns) {
    AsyncResult<uint64_t> done;
    auto* t = new Timer{&done, nullptr};
    t->poller = current_thread()->register_poller(fire, t, "sleep", ns);
    uint64_t woke = co_await done;
    co_return woke;
}

Task<std::vector<std::string>> hop_between(Thread* a, Thread* b) {
    std::vector<std::string> where;
    co_await resume_on(*a);
    where.push_back(current_thread()->name());
    co_await sleep_ns(5 * kNsPerMs);
    where.push_back(current_thread()->name() + "@" + std::to_string(now_ns() / kNsPerMs));
    co_await resume_on(*b);
    where.push_back(current_thread()->name());
    co_return where;
}

TEST_F(TaskTest, AwaitsCallbacksAndMovesBetweenThreads) {
    start_sim(3, 2);
    std::vector<std::string> where;
    bool done = false;
    Thread* done_on = nullptr;
    spawn(*threads[0], hop_between(threads[1], threads[0]), [&](std::vector<std::string> w) {
        where = std::move(w);
        done = true;
        done_on = current_thread();
    });
    ASSERT_TRUE(poll_until([&] { return done; }));
    EXPECT_EQ(where, (std::vector<std::string>{"t1", "t1@5", "t0"}));
    EXPECT_EQ(done_on, threads[0]);
}

TEST_F(TaskTest, ReadyResultDoesNotSuspend) {
    start_sim(5, 1);
    int got = 0;
    auto ready = []() -> Task<int> {
        AsyncResult<int> r;
        r.set(7);  // completed before the await
        co_return co_await r;
    };
    spawn(*threads[0], ready(), [&](int v) { got = v; });
    ASSERT_TRUE(poll_until([&] { return got != 0; }));
    EXPECT_EQ(got, 7);
}

TEST_F(TaskTest, SleepForWaitsVirtualTime) {
    start_sim(9, 1);
    std::vector<uint64_t> woke;
    auto sleeper = [&woke]() -> Task<void> {
        const uint64_t start = now_ns();
        co_await sleep_for(3 * kNsPerMs);
        woke.push_back(now_ns() - start);
        co_await sleep_for(0);  // still yields once, never inline
        woke.push_back(now_ns() - start);
    };
    bool done = false;
    spawn(*threads[0], sleeper(), [&] { done = true; });
    ASSERT_TRUE(poll_until([&] { return done; }));
    ASSERT_EQ(woke.size(), 2u);
    EXPECT_GE(woke[0], 3 * kNsPerMs);
    EXPECT_LT(woke[0], 4 * kNsPerMs);
    EXPECT_GT(woke[1], woke[0]);
    EXPECT_TRUE(threads[0]->pollers().empty());  // the one-shot poller is gone
}

TEST_F(TaskTest, DeterministicAcrossRuns) {
    auto run = [this](uint64_t seed) {
        start_sim(seed, 3);
        std::vector<std::string> log;
        int finished = 0;
        for (int i = 0; i < 3; ++i)
            spawn(*threads[i], hop_between(threads[(i + 1) % 3], threads[i]),
                  [&, i](std::vector<std::string> w) {
                      log.push_back(std::to_string(i) + ":" + w.back());
                      ++finished;
                  });
        poll_until([&] { return finished == 3; });
        return std::make_pair(log, sim->trace_hash());
    };
    auto a = run(99);
    auto b = run(99);
    EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace strata::runtime
