// bdev_delay through its RPCs on a simulated App: latencies observed in virtual time match the
// configuration (average and the 1-in-100 p99 share over many I/O, at queue depth 1 and 32),
// updates at run time, reset cutting delays short, the data path, hot removal, RPC errors and
// the config round trip.
#include <gtest/gtest.h>

#include <numeric>

#include "delay/delay.h"
#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

class DelayTest : public VbdevTest {
protected:
    Handle& setup(uint64_t avg_r, uint64_t p99_r, uint64_t avg_w, uint64_t p99_w) {
        malloc("M0", 8192);
        EXPECT_EQ(call("bdev_delay_create", {{"base_bdev_name", "M0"},
                                              {"name", "D0"},
                                              {"avg_read_latency", avg_r},
                                              {"p99_read_latency", p99_r},
                                              {"avg_write_latency", avg_w},
                                              {"p99_write_latency", p99_w}}),
                  "D0");
        poll_until([] { return false; }, 50'000'000);  // other modules' examine of D0 first
        return open("D0");
    }
    // Latency (virtual ns) of `count` I/O issued one after another.
    std::vector<uint64_t> latencies_qd1(Handle& h, bool writes, int count) {
        std::vector<uint64_t> out;
        auto buf = pattern(4096, 1);
        for (int i = 0; i < count; ++i) {
            const uint64_t start = sim->now_ns();
            const uint64_t off = uint64_t(i % 1000) * 8;
            IoStatus s = writes ? io([&](IoDoneFn f, void* c) { return write(*h.desc, *h.ch, buf.data(), off, 8, f, c); })
                                : io([&](IoDoneFn f, void* c) { return read(*h.desc, *h.ch, buf.data(), off, 8, f, c); });
            EXPECT_TRUE(s.ok());
            out.push_back(sim->now_ns() - start);
        }
        return out;
    }
    static double mean(const std::vector<uint64_t>& v) {
        return double(std::accumulate(v.begin(), v.end(), uint64_t{0})) / double(v.size());
    }
};

TEST_F(DelayTest, LatencyMatchesTheConfigurationInVirtualTime) {
    Handle& h = setup(100, 1000, 250, 5000);
    constexpr int kIos = 3000;
    for (bool writes : {false, true}) {
        const uint64_t avg = writes ? 250'000 : 100'000, p99 = writes ? 5'000'000 : 1'000'000;
        auto lat = latencies_qd1(h, writes, kIos);
        int slow = 0;
        for (uint64_t l : lat) {
            const bool is_p99 = l >= p99;
            slow += is_p99 ? 1 : 0;
            const uint64_t want = is_p99 ? p99 : avg;
            // Never early; late by at most the poller's granularity (and a message or two).
            ASSERT_GE(l, want);
            ASSERT_LT(l, want + 5'000) << (writes ? "write" : "read");
        }
        // 1 in 100 take the p99 latency: 30 expected of 3000; a seeded draw, so a wide band.
        EXPECT_GE(slow, 12) << (writes ? "write" : "read");
        EXPECT_LE(slow, 55) << (writes ? "write" : "read");
        const double expect_mean = 0.99 * double(avg) + 0.01 * double(p99);
        EXPECT_NEAR(mean(lat), expect_mean, 0.15 * expect_mean) << (writes ? "write" : "read");
    }
    // Other types pass undelayed.
    const uint64_t start = sim->now_ns();
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 0, 8, f, c); }).ok());
    EXPECT_LT(sim->now_ns() - start, 50'000u);
}

TEST_F(DelayTest, ManyInFlightEachDelayedFromItsSubmission) {
    Handle& h = setup(200, 200, 300, 300);
    constexpr int kIos = 32;
    auto buf = pattern(kIos * 4096, 2);
    std::vector<Done> done(kIos);
    const uint64_t start = sim->now_ns();
    on(worker, [&] {
        for (int i = 0; i < kIos; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, buf.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &done[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (auto& d : done) {
        EXPECT_TRUE(d.status.ok());
        EXPECT_GE(d.at_ns - start, 300'000u);
        EXPECT_LT(d.at_ns - start, 310'000u);  // concurrently, not one after another
    }
    std::vector<uint8_t> r(kIos * 4096);
    ASSERT_TRUE(read_blocks(h, 0, r).ok());
    EXPECT_EQ(r, buf);
}

TEST_F(DelayTest, UpdateLatencyAtRunTime) {
    Handle& h = setup(100, 100, 100, 100);
    EXPECT_NEAR(mean(latencies_qd1(h, false, 50)), 100'000, 3'000);
    EXPECT_EQ(call("bdev_delay_update_latency",
                   {{"delay_bdev_name", "D0"}, {"latency_type", "avg_read"}, {"latency_us", 400}}),
              true);
    EXPECT_EQ(call("bdev_delay_update_latency",
                   {{"delay_bdev_name", "D0"}, {"latency_type", "p99_read"}, {"latency_us", 400}}),
              true);
    EXPECT_NEAR(mean(latencies_qd1(h, false, 50)), 400'000, 3'000);
    EXPECT_NEAR(mean(latencies_qd1(h, true, 50)), 100'000, 3'000) << "writes unchanged";
    Json info = call("bdev_get_bdevs", {{"name", "D0"}})[0]["driver_specific"]["delay"];
    EXPECT_EQ(info["avg_read_latency"], 400);
    EXPECT_EQ(info["base_bdev_name"], "M0");
}

TEST_F(DelayTest, ResetReleasesDelayedIo) {
    Handle& h = setup(1'000'000, 1'000'000, 1'000'000, 1'000'000);  // a second
    auto buf = pattern(4096, 3);
    Done d;
    on(worker, [&] { ASSERT_TRUE(write(*h.desc, *h.ch, buf.data(), 0, 8, &Done::cb, &d).ok()); });
    poll_until([] { return false; }, 1'000'000);  // the write is at the base and back by now
    EXPECT_EQ(d.calls, 0);
    const uint64_t start = sim->now_ns();
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());
    EXPECT_EQ(d.calls, 1);
    EXPECT_TRUE(d.status.ok());
    EXPECT_LT(sim->now_ns() - start, 100'000u);
}

TEST_F(DelayTest, DataPathAndHotRemoval) {
    Handle& h = setup(10, 20, 10, 20);
    verify_workload(h, 32);
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return write_zeroes(*h.desc, *h.ch, 0, 16, f, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return flush(*h.desc, *h.ch, 0, 16, f, c); }).ok());
    // Removal under load: every I/O completes once.
    auto buf = pattern(16 * 4096, 4);
    std::vector<Done> done(16);
    bool gone = false;
    on(worker, [&] {
        for (int i = 0; i < 16; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, buf.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &done[i]).ok());
    });
    on(&app->thread(), [&] { unregister_bdev("M0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return !h.events.empty();
    }));
    for (auto& d : done) EXPECT_EQ(d.calls, 1);
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_FALSE(exists("D0"));
}

TEST_F(DelayTest, RpcErrors) {
    malloc("M0");
    Json ok = {{"base_bdev_name", "M0"}, {"name", "D0"}, {"avg_read_latency", 1},
               {"p99_read_latency", 2}, {"avg_write_latency", 1}, {"p99_write_latency", 2}};
    auto with = [&](Json extra) {
        Json p = ok;
        for (auto& [k, v] : extra.items()) p[k] = v;
        return p;
    };
    Json missing = ok;
    missing.erase("p99_write_latency");
    EXPECT_EQ(call_error("bdev_delay_create", missing)["code"], -32602);
    EXPECT_EQ(call_error("bdev_delay_create", with({{"avg_read_latency", -5}}))["code"], -32602);
    EXPECT_EQ(call_error("bdev_delay_create", with({{"avg_read_latency", uint64_t{1} << 62}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_delay_create", with({{"uuid", "zz"}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_delay_create", with({{"name", "M0"}}))["code"], -EINVAL);
    call("bdev_delay_create", ok);
    EXPECT_EQ(call_error("bdev_delay_create", ok)["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_delay_create", with({{"name", "D1"}}))["code"], -EPERM);  // claimed
    EXPECT_EQ(call_error("bdev_delay_update_latency",
                         {{"delay_bdev_name", "D0"}, {"latency_type", "p50_read"}, {"latency_us", 1}})["code"],
              -EINVAL);
    EXPECT_EQ(call_error("bdev_delay_update_latency",
                         {{"delay_bdev_name", "M0"}, {"latency_type", "avg_read"}, {"latency_us", 1}})["code"],
              -ENOENT);
    EXPECT_EQ(call_error("bdev_delay_delete", {{"name", "M0"}})["code"], -ENOENT);
    EXPECT_EQ(call("bdev_delay_delete", {{"name", "D0"}}), true);
    EXPECT_FALSE(exists("D0"));
    // A missing base defers the creation.
    call("bdev_delay_create", with({{"base_bdev_name", "Later"}, {"name", "DL"}}));
    EXPECT_FALSE(exists("DL"));
    malloc("Later");
    EXPECT_TRUE(exists("DL"));
}

TEST_F(DelayTest, ConfigRoundTripKeepsUpdatedLatencies) {
    setup(10, 20, 30, 40);
    call("bdev_delay_update_latency", {{"delay_bdev_name", "D0"}, {"latency_type", "p99_write"}, {"latency_us", 77}});
    Json cfg = bdev_config();
    Json reversed = Json::array();
    for (auto it = cfg.rbegin(); it != cfg.rend(); ++it) reversed.push_back(*it);
    stop_world();
    start_world(1, Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", reversed}}}}});
    ASSERT_TRUE(exists("D0"));
    Json info = call("bdev_get_bdevs", {{"name", "D0"}})[0]["driver_specific"]["delay"];
    EXPECT_EQ(info["avg_read_latency"], 10);
    EXPECT_EQ(info["p99_write_latency"], 77);
}

TEST_F(DelayTest, SameSeedSameLatencies) {
    auto run = [&](uint64_t seed) {
        stop_world();
        start_world(seed);
        Handle& h = setup(50, 500, 50, 500);
        return latencies_qd1(h, false, 400);
    };
    const auto a = run(3), b = run(3), c = run(4);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c) << "the seed picks which I/O take the p99 latency";
}

}  // namespace
}  // namespace strata::bdev::testing
