// IoDevice / IoChannel lifecycle under the simulator.
#include <strata/runtime/sim_fixture.h>

#include <gtest/gtest.h>

namespace strata::runtime {
namespace {

class CountingDevice : public IoDevice {
public:
    CountingDevice() : IoDevice("counting") {}
    int created = 0;
    int destroyed = 0;
    bool refuse = false;

    struct Channel : IoChannel {
        CountingDevice* dev;
        Thread* created_on;
        explicit Channel(CountingDevice* d) : dev(d), created_on(current_thread()) {}
        ~Channel() override {
            EXPECT_EQ(current_thread(), created_on) << "channel destroyed off its Thread";
            ++dev->destroyed;
        }
    };

protected:
    std::unique_ptr<IoChannel> create_channel(Thread& thread) override {
        EXPECT_EQ(&thread, current_thread());
        if (refuse) return nullptr;
        ++created;
        return std::make_unique<Channel>(this);
    }
};

class IoChannelTest : public testing::SimFixture {
protected:
    void SetUp() override {
        start_sim(21, 3);
        register_io_device(dev);
    }
    void TearDown() override {
        if (dev.registered()) {
            bool done = false;
            on(threads[0], [&] {
                unregister_io_device(dev, [](void* p) { *static_cast<bool*>(p) = true; }, &done);
            });
            poll_until([&] { return done; });
        }
        SimFixture::TearDown();
    }
    CountingDevice dev;
};

TEST_F(IoChannelTest, CreatedOnFirstGetAndReferenceCounted) {
    IoChannel* a = nullptr;
    IoChannel* b = nullptr;
    on(threads[0], [&] {
        a = get_io_channel(dev);
        b = get_io_channel(dev);
    });
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a->ref_count(), 2u);
    EXPECT_EQ(&a->thread(), threads[0]);
    EXPECT_EQ(&a->device(), &dev);
    EXPECT_EQ(dev.created, 1);
    EXPECT_EQ(dev.channel_count(), 1u);
    on(threads[0], [&] { put_io_channel(a); });
    run_until_idle();
    EXPECT_EQ(dev.destroyed, 0);
    on(threads[0], [&] { put_io_channel(b); });
    run_until_idle();
    EXPECT_EQ(dev.destroyed, 1);
    EXPECT_EQ(dev.channel_count(), 0u);
    EXPECT_EQ(threads[0]->io_channel_count(), 0u);
}

TEST_F(IoChannelTest, DestroyIsDeferredAndGetBeforeItKeepsTheChannel) {
    IoChannel* first = nullptr;
    IoChannel* again = nullptr;
    on(threads[1], [&] {
        first = get_io_channel(dev);
        put_io_channel(first);
        EXPECT_EQ(dev.destroyed, 0);  // deferred: still usable up the stack
        again = get_io_channel(dev);  // re-taken before the deferred destroy runs
    });
    run_until_idle();
    EXPECT_EQ(first, again);
    EXPECT_EQ(dev.created, 1);
    EXPECT_EQ(dev.destroyed, 0);
    // put, get, put before the first deferred destroy runs: destroyed exactly once.
    on(threads[1], [&] {
        put_io_channel(again);
        IoChannel* c = get_io_channel(dev);
        put_io_channel(c);
    });
    run_until_idle();
    EXPECT_EQ(dev.destroyed, 1);
}

TEST_F(IoChannelTest, OneChannelPerThread) {
    IoChannel* chans[3] = {};
    for (int i = 0; i < 3; ++i) on(threads[i], [&, i] { chans[i] = get_io_channel(dev); });
    EXPECT_NE(chans[0], chans[1]);
    EXPECT_NE(chans[1], chans[2]);
    EXPECT_EQ(dev.channel_count(), 3u);
    for (int i = 0; i < 3; ++i) on(threads[i], [&, i] { put_io_channel(chans[i]); });
    run_until_idle();
    EXPECT_EQ(dev.destroyed, 3);
}

TEST_F(IoChannelTest, RefusedChannelIsNull) {
    dev.refuse = true;
    IoChannel* ch = reinterpret_cast<IoChannel*>(1);
    on(threads[0], [&] { ch = get_io_channel(dev); });
    EXPECT_EQ(ch, nullptr);
    EXPECT_EQ(dev.channel_count(), 0u);
}

TEST_F(IoChannelTest, UnregisterWaitsForLiveChannels) {
    IoChannel* a = nullptr;
    IoChannel* b = nullptr;
    on(threads[1], [&] { a = get_io_channel(dev); });
    on(threads[2], [&] { b = get_io_channel(dev); });
    bool done = false;
    Thread* done_on = nullptr;
    struct Ctx {
        bool* done;
        Thread** on;
    } ctx{&done, &done_on};
    on(threads[0], [&] {
        unregister_io_device(
            dev,
            [](void* p) {
                *static_cast<Ctx*>(p)->done = true;
                *static_cast<Ctx*>(p)->on = current_thread();
            },
            &ctx);
    });
    run_until_idle();
    EXPECT_FALSE(done);
    IoChannel* refused = reinterpret_cast<IoChannel*>(1);
    on(threads[0], [&] { refused = get_io_channel(dev); });
    EXPECT_EQ(refused, nullptr) << "no new channels once unregistering";
    on(threads[1], [&] { put_io_channel(a); });
    run_until_idle();
    EXPECT_FALSE(done);
    on(threads[2], [&] { put_io_channel(b); });
    ASSERT_TRUE(poll_until([&] { return done; }));
    EXPECT_EQ(done_on, threads[0]);
    EXPECT_EQ(dev.destroyed, 2);
}

TEST_F(IoChannelTest, UnregisterWithoutChannelsCompletesByMessage) {
    bool done = false;
    on(threads[0], [&] {
        unregister_io_device(dev, [](void* p) { *static_cast<bool*>(p) = true; }, &done);
        EXPECT_FALSE(done);  // never inline
    });
    EXPECT_TRUE(poll_until([&] { return done; }));
}

TEST_F(IoChannelTest, ForEachChannelVisitsHolders) {
    IoChannel* a = nullptr;
    IoChannel* c = nullptr;
    on(threads[0], [&] { a = get_io_channel(dev); });
    on(threads[2], [&] { c = get_io_channel(dev); });
    std::vector<IoChannel*> visited;
    bool done = false;
    struct Ctx {
        std::vector<IoChannel*>* visited;
        bool* done;
    } ctx{&visited, &done};
    on(threads[1], [&] {
        for_each_channel(
            dev,
            [](IoChannel& ch, void* p) {
                EXPECT_EQ(&ch.thread(), current_thread());
                static_cast<Ctx*>(p)->visited->push_back(&ch);
            },
            &ctx, [](void* p) { *static_cast<Ctx*>(p)->done = true; });
    });
    ASSERT_TRUE(poll_until([&] { return done; }));
    EXPECT_EQ(visited, (std::vector<IoChannel*>{a, c}));
    on(threads[0], [&] { put_io_channel(a); });
    on(threads[2], [&] { put_io_channel(c); });
}

TEST_F(IoChannelTest, ThreadWithChannelExitsOnlyAfterRelease) {
    IoChannel* a = nullptr;
    on(threads[1], [&] {
        a = get_io_channel(dev);
        threads[1]->request_exit();
    });
    run_until_idle();
    EXPECT_FALSE(threads[1]->exited());
    on(threads[1], [&] { put_io_channel(a); });
    EXPECT_TRUE(poll_until([&] { return threads[1]->exited(); }));
}

TEST_F(IoChannelTest, SchedulerTeardownReleasesHeldChannels) {
    on(threads[0], [&] { (void)get_io_channel(dev); });
    sim.reset();  // held channel destroyed on its Thread, counted as gone
    EXPECT_EQ(dev.destroyed, 1);
    EXPECT_EQ(dev.channel_count(), 0u);
    start_sim(1, 1);  // TearDown expects a scheduler
}

}  // namespace
}  // namespace strata::runtime
