// RealScheduler: reactors on OS threads. Labelled tsan: CI runs these under ThreadSanitizer.
// No timing assertions beyond lower bounds: CI hosts are small and shared.
#include <strata/base/mpsc_ring.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/scheduler.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace strata::runtime {
namespace {

using namespace std::chrono_literals;

template <class Pred>
bool wait_for(Pred pred, std::chrono::seconds limit = 30s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

RealSchedulerOptions two_reactors() {
    RealSchedulerOptions o;
    o.cores = {0, 1};
    o.pin = false;  // tests share the host; pinning is exercised by the demo and bench
    return o;
}

struct PingPong {
    Thread* a;
    Thread* b;
    std::atomic<int> count{0};
    int limit;
};

void ping(void* p) {
    auto* pp = static_cast<PingPong*>(p);
    int n = pp->count.fetch_add(1) + 1;
    if (n >= pp->limit) return;
    Thread* next = current_thread() == pp->a ? pp->b : pp->a;
    deliver(*next, ping, pp);
}

TEST(RealScheduler, PingPongAcrossReactors) {
    RealScheduler sched(two_reactors());
    PingPong pp;
    pp.a = sched.create_thread("a", 0);
    pp.b = sched.create_thread("b", 1);
    pp.limit = 10000;
    sched.start();
    ASSERT_TRUE(pp.a->send(ping, &pp).ok());
    EXPECT_TRUE(wait_for([&] { return pp.count.load() >= pp.limit; }));
    sched.stop();
    EXPECT_EQ(pp.count.load(), pp.limit);
    auto reactors = sched.reactors();
    ASSERT_EQ(reactors.size(), 2u);
}

struct Cascade {
    std::vector<Thread*> threads;
    std::atomic<int> delivered{0};
};

struct CascadeMsg {
    Cascade* c;
    int depth;
};

void cascade(void* p) {
    std::unique_ptr<CascadeMsg> m(static_cast<CascadeMsg*>(p));
    m->c->delivered.fetch_add(1);
    if (m->depth == 0) return;
    for (int i = 0; i < 2; ++i) {
        Thread* to = m->c->threads[(m->depth + i) % m->c->threads.size()];
        deliver(*to, cascade, new CascadeMsg{m->c, m->depth - 1});
    }
}

TEST(RealScheduler, StopDrainsMessagesThatSpawnMessages) {
    RealScheduler sched(two_reactors());
    Cascade c;
    for (int i = 0; i < 4; ++i) c.threads.push_back(sched.create_thread("c" + std::to_string(i)));
    sched.start();
    const int depth = 10;  // 2^11 - 1 messages in all
    ASSERT_TRUE(c.threads[0]->send(cascade, new CascadeMsg{&c, depth}).ok());
    sched.stop();  // immediately: the cascade is still in flight
    EXPECT_EQ(c.delivered.load(), (1 << (depth + 1)) - 1);
    EXPECT_FALSE(sched.running());
}

class OwnerCheckingDevice : public IoDevice {
public:
    OwnerCheckingDevice() : IoDevice("owner-check") {}
    std::atomic<int> destroyed{0};
    std::atomic<int> wrong_thread{0};
    struct Channel : IoChannel {
        OwnerCheckingDevice* dev;
        std::thread::id os_thread = std::this_thread::get_id();
        explicit Channel(OwnerCheckingDevice* d) : dev(d) {}
        ~Channel() override {
            if (std::this_thread::get_id() != os_thread) dev->wrong_thread.fetch_add(1);
            dev->destroyed.fetch_add(1);
        }
    };

protected:
    std::unique_ptr<IoChannel> create_channel(Thread&) override {
        return std::make_unique<Channel>(this);
    }
};

TEST(RealScheduler, ChannelsHeldAtStopAreReleasedOnTheirReactor) {
    OwnerCheckingDevice dev;
    register_io_device(dev);
    RealScheduler sched(two_reactors());
    Thread* t0 = sched.create_thread("h0", 0);
    Thread* t1 = sched.create_thread("h1", 1);
    sched.start();
    std::atomic<int> got{0};
    for (Thread* t : {t0, t1})
        ASSERT_TRUE(t->post([&] {
                         if (get_io_channel(dev) != nullptr) got.fetch_add(1);
                     }).ok());
    ASSERT_TRUE(wait_for([&] { return got.load() == 2; }));
    sched.stop();
    EXPECT_EQ(dev.destroyed.load(), 2);
    EXPECT_EQ(dev.wrong_thread.load(), 0);
    EXPECT_EQ(dev.channel_count(), 0u);
}

TEST(RealScheduler, TimedPollerFiresOnRealClock) {
    RealScheduler sched(two_reactors());
    Thread* t = sched.create_thread("timer");
    std::atomic<int> fired{0};
    std::atomic<uint64_t> first_ns{0};
    struct Ctx {
        std::atomic<int>* fired;
        std::atomic<uint64_t>* first;
    } ctx{&fired, &first_ns};
    uint64_t start_ns = sched.now_ns();
    ASSERT_TRUE(t->post([&] {
                     t->register_poller(
                         [](void* p) {
                             auto* c = static_cast<Ctx*>(p);
                             if (c->fired->fetch_add(1) == 0) c->first->store(now_ns());
                             return PollStatus::busy;
                         },
                         &ctx, "2ms", 2 * kNsPerMs);
                 }).ok());
    sched.start();
    ASSERT_TRUE(wait_for([&] { return fired.load() >= 5; }));
    sched.stop();
    EXPECT_GE(first_ns.load() - start_ns, 2 * kNsPerMs);  // never early
}

TEST(RealScheduler, ThreadCreatedWhileRunningIsPolled) {
    RealScheduler sched(two_reactors());
    sched.start();
    Thread* late = sched.create_thread("late");
    std::atomic<bool> ran{false};
    ASSERT_TRUE(late->post([&] { ran = current_thread() != nullptr; }).ok());
    EXPECT_TRUE(wait_for([&] { return ran.load(); }));
    sched.stop();
}

TEST(RealScheduler, PinnedReactorsRun) {
    RealSchedulerOptions o;
    o.cores = {0};
    o.pin = true;  // pinning failure only warns; the reactor still runs
    RealScheduler sched(o);
    Thread* t = sched.create_thread("pinned");
    std::atomic<bool> ran{false};
    ASSERT_TRUE(t->post([&] { ran = true; }).ok());
    sched.start();
    EXPECT_TRUE(wait_for([&] { return ran.load(); }));
}  // destructor stops

TEST(CoreMask, Parses) {
    EXPECT_EQ(*parse_core_mask("0x3"), (std::vector<int>{0, 1}));
    EXPECT_EQ(*parse_core_mask("5"), (std::vector<int>{0, 2}));
    EXPECT_EQ(*parse_core_mask("[0,2-4]"), (std::vector<int>{0, 2, 3, 4}));
    EXPECT_EQ(parse_core_mask("").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_core_mask("0x0").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_core_mask("zz").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_core_mask("[3-1]").code(), Errc::invalid_argument);
    EXPECT_EQ(parse_core_mask("[0,2").code(), Errc::invalid_argument);
    auto bad = parse_core_mask("0xg");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message().find("0xg"), std::string::npos);
}

TEST(MpscRingThreads, ManyProducersKeepPerProducerOrder) {
    struct Entry {
        uint32_t first, second;
    };
    MpscRing<Entry> ring(1024);
    constexpr uint32_t kProducers = 3, kEach = 20000;
    std::vector<std::thread> producers;
    for (uint32_t p = 0; p < kProducers; ++p)
        producers.emplace_back([&, p] {
            for (uint32_t i = 0; i < kEach;)
                if (ring.push({p, i})) ++i;
                else std::this_thread::yield();
        });
    uint32_t next[kProducers] = {};
    uint32_t total = 0;
    Entry item{};
    while (total < kProducers * kEach) {
        if (!ring.pop(item)) {
            std::this_thread::yield();
            continue;
        }
        ASSERT_EQ(item.second, next[item.first]) << "producer " << item.first;
        ++next[item.first];
        ++total;
    }
    for (auto& t : producers) t.join();
    EXPECT_FALSE(ring.pop(item));
}

}  // namespace
}  // namespace strata::runtime
