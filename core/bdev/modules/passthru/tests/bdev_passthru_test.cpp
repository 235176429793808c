// bdev_passthru through its RPCs on a simulated App: the data path, claims, examine (a passthru
// configured before its base), hot removal of the base (idle and under load), RPC errors and
// the save_config round trip in reverse order.
#include <gtest/gtest.h>

#include "passthru/passthru.h"
#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

class PassthruTest : public VbdevTest {};

TEST_F(PassthruTest, DataPathThroughTheVbdev) {
    malloc("Malloc0");
    EXPECT_EQ(call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}}), "PT0");
    Json info = call("bdev_get_bdevs", {{"name", "PT0"}})[0];
    EXPECT_EQ(info["num_blocks"], 4096);
    EXPECT_EQ(info["product_name"], "passthru");
    EXPECT_EQ(info["driver_specific"]["passthru"]["base_bdev_name"], "Malloc0");
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "Malloc0"}})[0]["claimed"], true);

    Handle& h = open("PT0");
    verify_workload(h, 64);
    // What went through the passthru is on the base.
    auto w = pattern(4096, 9);
    ASSERT_TRUE(write_blocks(h, 100, w).ok());
    Handle& base = open("Malloc0", /*write=*/false);
    std::vector<uint8_t> r(4096);
    ASSERT_TRUE(read_blocks(base, 100, r).ok());
    EXPECT_EQ(r, w);
    // The claim keeps writers off the base.
    on(worker, [&] { EXPECT_EQ(bdev::open("Malloc0", true).code(), Errc::permission_denied); });
    // Every other type passes through.
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return write_zeroes(*h.desc, *h.ch, 100, 4, f, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 104, 4, f, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return flush(*h.desc, *h.ch, 0, 8, f, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());
    ASSERT_TRUE(read_blocks(base, 100, r).ok());
    EXPECT_EQ(r, std::vector<uint8_t>(4096, 0));
    iovec iov{r.data(), r.size()};
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return comparev(*h.desc, *h.ch, &iov, 1, 100, 8, f, c); }).ok());
    r[7] = 1;
    EXPECT_EQ(io([&](IoDoneFn f, void* c) { return comparev(*h.desc, *h.ch, &iov, 1, 100, 8, f, c); }).code,
              Errc::corrupt);
}

TEST_F(PassthruTest, ManyIoInFlight) {
    malloc("Malloc0");
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    Handle& h = open("PT0");
    constexpr int kIos = 256;
    std::vector<std::vector<uint8_t>> bufs;
    for (int i = 0; i < kIos; ++i) bufs.push_back(pattern(2048, i));
    std::vector<Done> done(kIos);
    on(worker, [&] {
        for (int i = 0; i < kIos; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, bufs[i].data(), uint64_t(i) * 4, 4, &Done::cb, &done[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (int i = 0; i < kIos; ++i) {
        EXPECT_EQ(done[i].calls, 1);
        std::vector<uint8_t> r(2048);
        ASSERT_TRUE(read_blocks(h, uint64_t(i) * 4, r).ok());
        ASSERT_EQ(r, bufs[i]) << i;
    }
}

TEST_F(PassthruTest, ExamineAttachesWhenTheBaseAppears) {
    EXPECT_EQ(call("bdev_passthru_create", {{"base_bdev_name", "Later0"}, {"name", "PT1"}}), "PT1");
    EXPECT_FALSE(exists("PT1"));
    malloc("Later0");
    ASSERT_TRUE(exists("PT1"));
    EXPECT_STREQ(find("Later0")->claimed_by(), "passthru");
    // Deleting a passthru that waits for its base only drops the configuration.
    call("bdev_passthru_create", {{"base_bdev_name", "Never"}, {"name", "PT2"}});
    EXPECT_EQ(call("bdev_passthru_delete", {{"name", "PT2"}}), true);
    malloc("Never");
    EXPECT_FALSE(exists("PT2"));
}

TEST_F(PassthruTest, HotRemovalOfTheBaseRemovesTheVbdev) {
    malloc("Malloc0");
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    Handle& h = open("PT0");
    bool gone = false;
    on(&app->thread(), [&] { unregister_bdev("Malloc0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return !h.events.empty(); }));
    EXPECT_EQ(h.events[0], Event::remove);
    EXPECT_FALSE(exists("PT0"));
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_TRUE(list().empty());
    // The configuration stays: the base coming back brings the passthru back (as SPDK).
    malloc("Malloc0");
    EXPECT_TRUE(exists("PT0"));
}

TEST_F(PassthruTest, HotRemovalUnderLoadCompletesEveryIoOnce) {
    malloc("Malloc0");
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    Handle& h = open("PT0");
    auto buf = pattern(64 * 4096, 1);
    std::vector<Done> done(64);
    bool gone = false;
    on(worker, [&] {
        for (int i = 0; i < 64; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, buf.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &done[i]).ok());
    });
    on(&app->thread(), [&] { unregister_bdev("Malloc0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return !h.events.empty();
    }));
    for (auto& d : done) EXPECT_EQ(d.calls, 1);
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
}

TEST_F(PassthruTest, RpcErrors) {
    malloc("Malloc0");
    EXPECT_EQ(call_error("bdev_passthru_create", {{"name", "PT0"}})["code"], -32602);
    EXPECT_EQ(call_error("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}})["code"], -32602);
    EXPECT_EQ(call_error("bdev_passthru_create",
                         {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}, {"bogus", 1}})["code"], -32602);
    EXPECT_EQ(call_error("bdev_passthru_create",
                         {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}, {"uuid", "nope"}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "Malloc0"}})["code"],
              -EINVAL);
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    Json dup = call_error("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}});
    EXPECT_EQ(dup["code"], -EEXIST);
    // A second vbdev on a claimed base is refused and leaves nothing behind.
    Json claimed = call_error("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT1"}});
    EXPECT_EQ(claimed["code"], -EPERM) << claimed.dump();
    EXPECT_EQ(passthru_configs().size(), 1u);
    EXPECT_EQ(call_error("bdev_passthru_delete", {{"name", "Malloc0"}})["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_passthru_delete", {{"name", "NoSuch"}})["code"], -ENOENT);
    EXPECT_EQ(call("bdev_passthru_delete", {{"name", "PT0"}}), true);
    EXPECT_FALSE(exists("PT0"));
    EXPECT_STREQ(find("Malloc0")->claimed_by(), "");
}

TEST_F(PassthruTest, ConfigRoundTripInAnyOrder) {
    malloc("Malloc0");
    const std::string uuid = "4f9a6c2e-1b3d-4e5f-8a7b-9c0d1e2f3a4b";
    call("bdev_passthru_create", {{"base_bdev_name", "Malloc0"}, {"name", "PT0"}, {"uuid", uuid}});
    Json cfg = bdev_config();
    bool found = false;
    for (auto& e : cfg)
        if (e["method"] == "bdev_passthru_create") {
            found = true;
            EXPECT_EQ(e["params"]["base_bdev_name"], "Malloc0");
            EXPECT_EQ(e["params"]["uuid"], uuid);
        }
    ASSERT_TRUE(found) << cfg.dump();
    // Replay with the passthru before its base: examine attaches it.
    Json reversed = Json::array();
    for (auto it = cfg.rbegin(); it != cfg.rend(); ++it)
        if ((*it)["method"] != "bdev_wait_for_examine") reversed.push_back(*it);
    stop_world();
    start_world(1, Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", reversed}}}}});
    ASSERT_TRUE(exists("PT0"));
    EXPECT_EQ(find("PT0")->uuid(), uuid);
    EXPECT_STREQ(find("Malloc0")->claimed_by(), "passthru");
}

}  // namespace
}  // namespace strata::bdev::testing

namespace strata::bdev::testing {
namespace {

// A three-deep stack at a queue depth beyond the Thread's bdev_io pool (each level takes one
// bdev_io per I/O): submitters that get busy wait with queue_io_wait, forwards that get busy wait
// for a free bdev_io, and everything completes.
TEST_F(PassthruTest, DeepStackBeyondThePool) {
    malloc("M0", 1 << 14);
    call("bdev_passthru_create", {{"base_bdev_name", "M0"}, {"name", "PT0"}});
    call("bdev_passthru_create", {{"base_bdev_name", "PT0"}, {"name", "PT1"}});
    call("bdev_passthru_create", {{"base_bdev_name", "PT1"}, {"name", "PT2"}});
    Handle& h = open("PT2");
    constexpr int kIos = 2000;
    struct Job {
        Handle* h;
        int i;
        std::vector<uint8_t>* buf;
        Done done;
        IoWaitEntry wait;
        int busy = 0;
        static void submit(void* p) {
            auto* j = static_cast<Job*>(p);
            Status s = write(*j->h->desc, *j->h->ch, j->buf->data(), uint64_t(j->i) * 8, 8, &Done::cb, &j->done);
            if (s.code() == Errc::busy) {
                ++j->busy;
                j->wait.fn = &Job::submit;
                j->wait.ctx = j;
                queue_io_wait(*j->h->ch, j->wait);
            } else {
                ASSERT_TRUE(s.ok());
            }
        }
    };
    std::vector<uint8_t> buf = pattern(4096, 1);
    std::vector<Job> jobs(kIos);
    on(worker, [&] {
        for (int i = 0; i < kIos; ++i) {
            jobs[i].h = &h;
            jobs[i].i = i;
            jobs[i].buf = &buf;
            Job::submit(&jobs[i]);
        }
    });
    ASSERT_TRUE(poll_until([&] {
        for (auto& j : jobs)
            if (j.done.calls == 0) return false;
        return true;
    })) << "stuck: a stack of virtual bdevs ran out of bdev_io";
    int busy = 0;
    for (auto& j : jobs) {
        EXPECT_EQ(j.done.calls, 1);
        EXPECT_TRUE(j.done.status.ok());
        busy += j.busy;
    }
    EXPECT_GT(busy, 0) << "the pool was never exhausted: the test proves nothing";
}

}  // namespace
}  // namespace strata::bdev::testing
