// Host: per-App module state, which Host a Thread and the code outside Threads see, and the
// Host's identifiers.
#include <strata/runtime/host.h>

#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <strata/runtime/scheduler.h>

namespace strata::runtime {
namespace {

struct Counter {
    int value = 0;
};

std::vector<std::string>* g_destroyed = nullptr;  // test probe only

struct First {
    ~First() { g_destroyed->push_back("first"); }
};
struct Second {
    explicit Second(Host& h) : host(&h) {}
    ~Second() { g_destroyed->push_back("second"); }
    Host* host;
};

TEST(Host, SlotsArePerHostAndCreatedOnFirstUse) {
    Host a("a", 1), b("b", 1);
    EXPECT_EQ(a.find<Counter>(), nullptr);
    a.get<Counter>().value = 5;
    EXPECT_EQ(a.get<Counter>().value, 5);
    EXPECT_EQ(b.get<Counter>().value, 0) << "another Host's state leaked";
    EXPECT_NE(&a.get<Counter>(), &b.get<Counter>());
    EXPECT_EQ(a.find<Counter>(), &a.get<Counter>());
}

TEST(Host, SlotsAreDestroyedNewestFirstAndMayTakeTheirHost) {
    std::vector<std::string> destroyed;
    g_destroyed = &destroyed;
    {
        Host h("h", 1);
        h.get<First>();
        EXPECT_EQ(h.get<Second>().host, &h);
    }
    EXPECT_EQ(destroyed, (std::vector<std::string>{"second", "first"}));
    g_destroyed = nullptr;
}

TEST(Host, ThreadsBelongToTheirCreatorsHostAndScopesNameIt) {
    Host a("a", 1), b("b", 2);
    SimScheduler sim(7, 1);
    Thread* ta = nullptr;
    {
        HostScope scope(a);
        EXPECT_EQ(&current_host(), &a);
        ta = sim.create_thread("ta");
        {
            HostScope inner(b);
            EXPECT_EQ(&current_host(), &b);
        }
        EXPECT_EQ(&current_host(), &a);
    }
    EXPECT_EQ(&current_host(), &fallback_host());
    Thread* tb = sim.create_thread("tb", -1, &b);
    EXPECT_EQ(&ta->host(), &a);
    EXPECT_EQ(&tb->host(), &b);

    // On a Thread, its Host wins over any scope; a Thread it creates inherits it.
    Host* seen = nullptr;
    Thread* child = nullptr;
    HostScope outer(b);
    (void)ta->post([&] {
        seen = &current_host();
        child = sim.create_thread("child");
    });
    sim.run_until_idle();
    EXPECT_EQ(seen, &a);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(&child->host(), &a);
}

TEST(Host, UuidsAreRandomV4AndReplayFromTheSeed) {
    const std::regex v4("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    Host a("world", Host::seed_for(42, "world"));
    Host again("world", Host::seed_for(42, "world"));
    Host other("world", Host::seed_for(43, "world"));
    std::string u1 = a.new_uuid(), u2 = a.new_uuid();
    EXPECT_TRUE(std::regex_match(u1, v4)) << u1;
    EXPECT_NE(u1, u2);
    EXPECT_EQ(again.new_uuid(), u1);
    EXPECT_EQ(again.new_uuid(), u2);
    EXPECT_NE(other.new_uuid(), u1);
    EXPECT_NE(Host::seed_for(42, "world"), Host::seed_for(42, "target"));
}

// Several Hosts on one simulator (a simulated cluster): for_each_thread stays in the caller's
// Host, and one Host's Threads can be released while the other's keep running.
TEST(Host, ForEachThreadVisitsOnlyTheCallersHost) {
    Host a("a", 1), b("b", 2);
    SimScheduler sim(7, 2);
    Thread* a1 = sim.create_thread("a1", -1, &a);
    sim.create_thread("b1", -1, &b);
    sim.create_thread("a2", -1, &a);
    sim.create_thread("b2", -1, &b);
    std::vector<std::string> visited;
    bool done = false;
    struct Ctx {
        std::vector<std::string>* visited;
        bool* done;
    } ctx{&visited, &done};
    (void)a1->post([&ctx] {
        for_each_thread(
            [](void* c) {
                static_cast<Ctx*>(c)->visited->push_back(current_thread()->name());
            },
            &ctx, [](void* c) { *static_cast<Ctx*>(c)->done = true; });
    });
    sim.run_until([&] { return done; });
    EXPECT_EQ(visited, (std::vector<std::string>{"a1", "a2"}));
}

TEST(Host, ReleasingOneHostsThreadsLeavesTheOthersRunning) {
    auto a = std::make_unique<Host>("a", 1);
    Host b("b", 2);
    SimScheduler sim(9, 1);
    Thread* ta = sim.create_thread("ta", -1, a.get());
    Thread* tb = sim.create_thread("tb", -1, &b);
    int a_runs = 0, b_runs = 0;
    (void)ta->post([&] {
        current_thread()->register_poller(
            [](void* c) {
                ++*static_cast<int*>(c);
                return PollStatus::idle;
            },
            &a_runs, "a_timer", 1'000);
    });
    (void)tb->post([&] {
        current_thread()->register_poller(
            [](void* c) {
                ++*static_cast<int*>(c);
                return PollStatus::idle;
            },
            &b_runs, "b_timer", 1'000);
    });
    sim.advance(10'000);
    EXPECT_GT(a_runs, 0);
    EXPECT_GT(b_runs, 0);
    // Undelivered: dropped. A plain message, not post(): a dropped post() leaks its boxed callable.
    (void)ta->send([](void*) {}, nullptr);
    EXPECT_EQ(sim.release_threads_of(*a), 1u);
    EXPECT_TRUE(ta->exited());
    EXPECT_FALSE(tb->exited());
    EXPECT_EQ(sim.release_threads_of(*a), 0u);
    a.reset();  // the Host goes while the simulator runs on
    const int a_before = a_runs, b_before = b_runs;
    sim.advance(10'000);
    EXPECT_EQ(a_runs, a_before);
    EXPECT_GT(b_runs, b_before);
    EXPECT_FALSE(ta->post([] {}).ok());  // an exited Thread refuses messages
}

}  // namespace
}  // namespace strata::runtime
