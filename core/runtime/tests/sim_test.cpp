// SimScheduler and Thread behaviour under virtual time, and determinism by seed.
#include <strata/runtime/sim_fixture.h>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace strata::runtime {
namespace {

using testing::SimFixture;

class SimTest : public SimFixture {};

TEST_F(SimTest, MessagesFromOneSenderRunInOrder) {
    start_sim(7, 3);
    std::vector<std::pair<int, int>> seen;  // (sender, seq) as received on t2
    struct Ctx {
        std::vector<std::pair<int, int>>* seen;
        int sender, seq;
    };
    // Two Threads each send 200 numbered messages to t2; the sim interleaves the senders.
    for (int sender = 0; sender < 2; ++sender) {
        on(threads[sender], [&, sender] {
            for (int i = 0; i < 200; ++i) {
                auto* c = new Ctx{&seen, sender, i};
                ASSERT_TRUE(threads[2]
                                ->send(
                                    [](void* p) {
                                        std::unique_ptr<Ctx> c(static_cast<Ctx*>(p));
                                        c->seen->emplace_back(c->sender, c->seq);
                                    },
                                    c)
                                .ok());
            }
        });
    }
    ASSERT_TRUE(poll_until([&] { return seen.size() == 400; }));
    int next[2] = {0, 0};
    for (auto [sender, seq] : seen) EXPECT_EQ(seq, next[sender]++);
}

TEST_F(SimTest, SendFromOutsideAnyThreadAndRingFull) {
    sim = std::make_unique<SimScheduler>(1);
    sim->message_ring_capacity = 4;
    Thread* t = sim->create_thread("small");
    int ran = 0;
    auto bump = [](void* p) { ++*static_cast<int*>(p); };
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(t->send(bump, &ran).ok());
    Status full = t->send(bump, &ran);
    EXPECT_EQ(full, Errc::busy);
    EXPECT_TRUE(sim->run_until_idle());
    EXPECT_EQ(ran, 4);
    EXPECT_TRUE(t->send(bump, &ran).ok());
    sim->run_until_idle();
    EXPECT_EQ(ran, 5);
}

TEST_F(SimTest, PostRunsLambdaOnTargetThread) {
    start_sim(3, 2);
    Thread* where = nullptr;
    ASSERT_TRUE(threads[1]->post([&] { where = current_thread(); }).ok());
    ASSERT_TRUE(poll_until([&] { return where != nullptr; }));
    EXPECT_EQ(where, threads[1]);
    EXPECT_EQ(current_thread(), nullptr);
}

struct Counter {
    int runs = 0;
    int busy_until = 0;  // report busy for this many runs
    Poller* self = nullptr;
    bool unregister_at_3 = false;
};

PollStatus count_poll(void* p) {
    auto* c = static_cast<Counter*>(p);
    ++c->runs;
    if (c->unregister_at_3 && c->runs == 3) current_thread()->unregister_poller(c->self);
    return c->runs <= c->busy_until ? PollStatus::busy : PollStatus::idle;
}

TEST_F(SimTest, ActivePollerRunsUntilIdleThenSimQuiesces) {
    start_sim(5, 1);
    Counter c;
    c.busy_until = 10;
    on(threads[0], [&] { c.self = threads[0]->register_poller(count_poll, &c, "counter"); });
    EXPECT_TRUE(run_until_idle());
    // Busy ten times, then one idle report makes the world quiescent.
    EXPECT_EQ(c.runs, 11);
    on(threads[0], [&] { threads[0]->unregister_poller(c.self); });
    EXPECT_EQ(c.self, nullptr);
}

TEST_F(SimTest, PollerCanUnregisterItselfFromItsCallback) {
    start_sim(5, 1);
    Counter c;
    c.busy_until = 100;
    c.unregister_at_3 = true;
    on(threads[0], [&] { c.self = threads[0]->register_poller(count_poll, &c, "self-removing"); });
    EXPECT_TRUE(run_until_idle());
    EXPECT_EQ(c.runs, 3);
    EXPECT_EQ(c.self, nullptr);
    EXPECT_TRUE(threads[0]->pollers().empty());
}

TEST_F(SimTest, PausedPollerDoesNotRun) {
    start_sim(5, 1);
    Counter c;
    c.busy_until = 1000000;
    on(threads[0], [&] {
        c.self = threads[0]->register_poller(count_poll, &c, "paused");
        threads[0]->pause_poller(c.self);
    });
    int before = c.runs;
    EXPECT_TRUE(run_until_idle());
    EXPECT_EQ(c.runs, before);
    ASSERT_EQ(threads[0]->pollers().size(), 1u);
    EXPECT_TRUE(threads[0]->pollers()[0].paused);
    c.busy_until = c.runs + 5;
    on(threads[0], [&] { threads[0]->resume_poller(c.self); });
    EXPECT_TRUE(run_until_idle());
    EXPECT_EQ(c.runs, before + 6);
    on(threads[0], [&] { threads[0]->unregister_poller(c.self); });
}

TEST_F(SimTest, TimedPollerFiresAtExactVirtualTimes) {
    start_sim(9, 1);
    std::vector<uint64_t> fired;
    Poller* p = nullptr;
    struct Ctx {
        std::vector<uint64_t>* fired;
    } ctx{&fired};
    on(threads[0], [&] {
        p = threads[0]->register_poller(
            [](void* c) {
                static_cast<Ctx*>(c)->fired->push_back(now_ns());
                return PollStatus::busy;
            },
            &ctx, "tick", 10 * kNsPerMs);
    });
    uint64_t t0 = sim->now_ns();
    advance(35 * kNsPerMs);
    ASSERT_EQ(fired.size(), 3u);
    EXPECT_EQ(fired[0], t0 + 10 * kNsPerMs);
    EXPECT_EQ(fired[1], t0 + 20 * kNsPerMs);
    EXPECT_EQ(fired[2], t0 + 30 * kNsPerMs);
    EXPECT_EQ(sim->now_ns(), t0 + 35 * kNsPerMs);  // advance leaves the clock at the target
    EXPECT_GE(sim->sim_stats().time_jumps, 3u);
    on(threads[0], [&] { threads[0]->unregister_poller(p); });
    EXPECT_TRUE(run_until_idle());  // no timers left: the world is idle, time stays put
    EXPECT_EQ(fired.size(), 3u);
}

TEST_F(SimTest, RunUntilStopsAtPredicateOrDeadline) {
    start_sim(2, 1);
    int ticks = 0;
    Poller* p = nullptr;
    on(threads[0], [&] {
        p = threads[0]->register_poller(
            [](void* c) {
                ++*static_cast<int*>(c);
                return PollStatus::busy;
            },
            &ticks, "ms", kNsPerMs);
    });
    EXPECT_TRUE(sim->run_until([&] { return ticks == 5; }));
    EXPECT_EQ(ticks, 5);
    uint64_t now = sim->now_ns();
    EXPECT_FALSE(sim->run_until([] { return false; }, now + 3 * kNsPerMs + 1));
    EXPECT_EQ(ticks, 8);
    EXPECT_EQ(sim->now_ns(), now + 3 * kNsPerMs + 1);
    EXPECT_FALSE(sim->run_until([] { return false; }, UINT64_MAX, 10));  // step limit
    on(threads[0], [&] { threads[0]->unregister_poller(p); });
}

TEST_F(SimTest, ThreadExitsAfterReleasingPollers) {
    start_sim(4, 2);
    Counter c;
    on(threads[1], [&] {
        c.self = threads[1]->register_poller(count_poll, &c, "keeps-alive");
        threads[1]->request_exit();
    });
    EXPECT_TRUE(threads[1]->exiting());
    EXPECT_FALSE(threads[1]->exited());
    on(threads[1], [&] { threads[1]->unregister_poller(c.self); });
    EXPECT_TRUE(poll_until([&] { return threads[1]->exited(); }));
    EXPECT_EQ(threads[1]->send([](void*) {}, nullptr), Errc::shutdown);
}

TEST_F(SimTest, ForEachThreadVisitsAllThenCompletesOnOrigin) {
    start_sim(11, 4);
    std::vector<Thread*> visited;
    Thread* done_on = nullptr;
    struct Ctx {
        std::vector<Thread*>* visited;
        Thread** done_on;
    } ctx{&visited, &done_on};
    on(threads[2], [&] {
        for_each_thread([](void* p) { static_cast<Ctx*>(p)->visited->push_back(current_thread()); },
                        &ctx,
                        [](void* p) { *static_cast<Ctx*>(p)->done_on = current_thread(); });
    });
    ASSERT_TRUE(poll_until([&] { return done_on != nullptr; }));
    EXPECT_EQ(done_on, threads[2]);
    EXPECT_EQ(visited, threads);  // creation order, one after another
}

// ---- determinism ----------------------------------------------------------------------------

// A randomized workload: messages hopping between Threads (spawning more), pollers doing work
// on random runs, timed pollers, and channel churn. All randomness comes from the sim's PRNG.
class ChurnDevice : public IoDevice {
public:
    ChurnDevice() : IoDevice("churn") {}
    int created = 0, destroyed = 0;

protected:
    std::unique_ptr<IoChannel> create_channel(Thread&) override {
        ++created;
        struct Ch : IoChannel {
            ChurnDevice* dev;
            explicit Ch(ChurnDevice* d) : dev(d) {}
            ~Ch() override { ++dev->destroyed; }
        };
        return std::make_unique<Ch>(this);
    }
};

struct Workload {
    SimScheduler* sim;
    std::vector<Thread*> threads;
    ChurnDevice device;
    std::vector<std::string> log;
    int hops_left = 2000;
    int poller_budget = 3000;
};

struct Hop {
    Workload* w;
    uint64_t id;  // grows by x3 per generation: wraps (defined for unsigned) in long chains
};

void hop(void* p) {
    std::unique_ptr<Hop> h(static_cast<Hop*>(p));
    Workload& w = *h->w;
    Thread* self = current_thread();
    w.log.push_back("hop " + std::to_string(h->id) + " on " + self->name() + " at " +
                    std::to_string(now_ns()));
    // Channel churn: take and drop a channel on this Thread.
    if (w.sim->prng().chance(0.3)) {
        IoChannel* ch = get_io_channel(w.device);
        if (ch != nullptr) put_io_channel(ch);
    }
    int fanout = static_cast<int>(w.sim->prng().uniform(3));
    for (int i = 0; i < fanout && w.hops_left > 0; ++i) {
        --w.hops_left;
        Thread* to = w.threads[w.sim->prng().uniform(w.threads.size())];
        (void)to->send(hop, new Hop{&w, h->id * 3 + static_cast<uint64_t>(i)});
    }
}

PollStatus random_poller(void* p) {
    auto* w = static_cast<Workload*>(p);
    if (w->poller_budget <= 0) return PollStatus::idle;
    if (!w->sim->prng().chance(0.2)) return PollStatus::idle;
    --w->poller_budget;
    w->log.push_back("poll on " + current_thread()->name() + " at " + std::to_string(now_ns()));
    return PollStatus::busy;
}

PollStatus timed_poller(void* p) {
    auto* w = static_cast<Workload*>(p);
    w->log.push_back("timer on " + current_thread()->name() + " at " + std::to_string(now_ns()));
    if (w->hops_left > 0) {
        --w->hops_left;
        (void)w->threads[0]->send(hop, new Hop{w, 1000000});
    }
    return PollStatus::busy;
}

struct RunResult {
    uint64_t trace_hash;
    std::vector<std::string> log;
    uint64_t end_ns;
};

RunResult run_workload(uint64_t seed, bool perturb = false) {
    SimScheduler sim(seed, 2);
    auto w = std::make_unique<Workload>();
    w->sim = &sim;
    register_io_device(w->device);
    for (int i = 0; i < 4; ++i) w->threads.push_back(sim.create_thread("w" + std::to_string(i)));
    for (size_t i = 0; i < w->threads.size(); ++i) {
        Workload* wp = w.get();
        Thread* t = w->threads[i];
        (void)t->post([wp, t, i] {
            t->register_poller(random_poller, wp, "random");
            t->register_poller(timed_poller, wp, "timed", (i + 1) * 3 * kNsPerMs);
        });
    }
    for (int i = 0; i < 8; ++i) (void)w->threads[i % 4]->send(hop, new Hop{w.get(), static_cast<uint64_t>(i)});
    if (perturb) {
        sim.run_until([] { return false; }, 5 * kNsPerMs);
        sim.perturb_next_choice();
    }
    sim.run_until([] { return false; }, 50 * kNsPerMs);
    // Unregister the device once every channel is gone; pollers go with the scheduler.
    bool unregistered = false;
    (void)w->threads[0]->post([&] {
        unregister_io_device(w->device, [](void* p) { *static_cast<bool*>(p) = true; },
                             &unregistered);
    });
    sim.run_until([&] { return unregistered; }, sim.now_ns() + kNsPerSec);
    EXPECT_TRUE(unregistered);
    EXPECT_EQ(w->device.created, w->device.destroyed);
    return {sim.trace_hash(), w->log, sim.now_ns()};
}

TEST(SimDeterminism, SameSeedSameRunDifferentSeedsDiffer) {
    RunResult a = run_workload(42);
    RunResult b = run_workload(42);
    EXPECT_EQ(a.trace_hash, b.trace_hash);
    EXPECT_EQ(a.log, b.log);
    EXPECT_EQ(a.end_ns, b.end_ns);
    EXPECT_GT(a.log.size(), 100u);

    int distinct = 0;
    for (uint64_t seed = 1; seed <= 8; ++seed) {
        RunResult r = run_workload(seed);
        if (r.trace_hash != a.trace_hash && r.log != a.log) ++distinct;
    }
    EXPECT_GE(distinct, 7) << "different seeds should interleave differently";
}

TEST(SimDeterminism, OnePerturbedSchedulingDecisionChangesTheHash) {
    RunResult a = run_workload(42);
    RunResult p = run_workload(42, /*perturb=*/true);
    EXPECT_NE(a.trace_hash, p.trace_hash);
    EXPECT_EQ(run_workload(42, true).trace_hash, p.trace_hash) << "a perturbation replays too";
}

// One Thread, one chain of messages: every step has one candidate, so the seed decides nothing
// and the hash must not differ by seed (it used to start from the seed).
uint64_t single_chain_hash(uint64_t seed, uint64_t event_value) {
    SimScheduler sim(seed, 1);
    Thread* t = sim.create_thread("only");
    int left = 5;
    std::function<void()> next = [&] {
        trace_event(TraceKind::user, event_value, static_cast<uint64_t>(left));
        if (--left > 0) (void)t->post(next);
    };
    (void)t->post(next);
    sim.run_until_idle();
    EXPECT_EQ(left, 0);
    EXPECT_EQ(sim.event_count(), 5u);
    return sim.trace_hash();
}

TEST(SimDeterminism, HashCoversWhatRanNotTheSeed) {
    EXPECT_EQ(single_chain_hash(1, 7), single_chain_hash(2, 7));
    EXPECT_NE(single_chain_hash(1, 7), single_chain_hash(1, 8)) << "events must count";
}

TEST(SimDeterminism, TraceEventOutsideTheSimulatorIsFree) {
    trace_event(TraceKind::user, 1);  // no Thread: nothing recorded, nothing asserted
    RealScheduler real({.cores = {0}, .pin = false});
    EXPECT_EQ(real.event_trace(), nullptr);
}

TEST(SimDeathTest, ReadingTheClockOutsideAThreadUnderTheSimulatorIsAnError) {
    EXPECT_DEATH(
        {
            SimScheduler sim(1, 1);
            (void)now_ns();
        },
        "outside any Thread while a simulator runs");
}

}  // namespace
}  // namespace strata::runtime
