// bdev_error through its RPCs on a simulated App: every error_type on every I/O type it applies
// to, the counts, queue_depth, clear, pending I/O released by a reset or failed by removal,
// RPC errors, the config round trip, and the same seed giving the same outcome.
#include <gtest/gtest.h>

#include "error/error.h"
#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

class ErrorTest : public VbdevTest {
protected:
    Handle& setup() {
        malloc("M0");
        EXPECT_EQ(call("bdev_error_create", {{"base_name", "M0"}}), true);
        settle();  // other modules' examine of EE_M0 must not take an armed error
        return open("EE_M0");
    }
    void inject(const std::string& io_type, const std::string& error_type, Json extra = Json::object()) {
        Json p = {{"name", "EE_M0"}, {"io_type", io_type}, {"error_type", error_type}};
        for (auto& [k, v] : extra.items()) p[k] = v;
        EXPECT_EQ(call("bdev_error_inject_error", p), true);
    }
    ErrorCounts counts() {
        auto c = error_counts("EE_M0");
        EXPECT_TRUE(c.ok());
        return c.ok() ? *c : ErrorCounts{};
    }
    static size_t idx(IoType t) { return static_cast<size_t>(t); }
};

TEST_F(ErrorTest, PassesThroughUntilArmed) {
    Handle& h = setup();
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "EE_M0"}})[0]["product_name"], "Error Injection Disk");
    verify_workload(h, 32);
}

TEST_F(ErrorTest, FailureCountsPerIoType) {
    Handle& h = setup();
    auto w = pattern(4096, 1);
    std::vector<uint8_t> r(4096);
    inject("write", "failure", {{"num", 2}});
    EXPECT_EQ(write_blocks(h, 0, w).code, Errc::io_error);
    EXPECT_TRUE(read_blocks(h, 0, r).ok());  // reads are not armed
    EXPECT_EQ(write_blocks(h, 0, w).code, Errc::io_error);
    EXPECT_TRUE(write_blocks(h, 0, w).ok());
    EXPECT_EQ(counts().injected[idx(IoType::write)], 2u);
    EXPECT_EQ(counts().remaining[idx(IoType::write)], 0u);

    inject("read", "failure");
    EXPECT_EQ(read_blocks(h, 0, r).code, Errc::io_error);
    EXPECT_TRUE(read_blocks(h, 0, r).ok());
    EXPECT_EQ(r, w);
    for (const char* t : {"unmap", "flush", "write_zeroes"}) inject(t, "failure");
    EXPECT_EQ(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 0, 8, f, c); }).code, Errc::io_error);
    EXPECT_EQ(io([&](IoDoneFn f, void* c) { return flush(*h.desc, *h.ch, 0, 8, f, c); }).code, Errc::io_error);
    EXPECT_EQ(io([&](IoDoneFn f, void* c) { return write_zeroes(*h.desc, *h.ch, 0, 8, f, c); }).code,
              Errc::io_error);
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 0, 8, f, c); }).ok());
    for (IoType t : {IoType::unmap, IoType::flush, IoType::write_zeroes})
        EXPECT_EQ(counts().injected[idx(t)], 1u) << io_type_name(t);

    // "all": each type gets its own count.
    inject("all", "failure", {{"num", 1}});
    EXPECT_EQ(write_blocks(h, 0, w).code, Errc::io_error);
    EXPECT_EQ(read_blocks(h, 0, r).code, Errc::io_error);
    EXPECT_TRUE(write_blocks(h, 0, w).ok());
    EXPECT_TRUE(read_blocks(h, 0, r).ok());
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());  // never by "all"

    // "clear" disarms everything.
    inject("all", "failure", {{"num", 100}});
    inject("clear", "failure");
    EXPECT_TRUE(write_blocks(h, 0, w).ok());
    EXPECT_TRUE(read_blocks(h, 0, r).ok());
    Json info = call("bdev_get_bdevs", {{"name", "EE_M0"}})[0]["driver_specific"]["error_disk"];
    EXPECT_EQ(info["base_bdev"], "M0");
    EXPECT_EQ(info["injections"]["write"]["injected"], 3);
}

TEST_F(ErrorTest, CorruptDataOnReadAndWrite) {
    Handle& h = setup();
    const auto w = pattern(4096, 2);
    std::vector<uint8_t> r(4096);
    ASSERT_TRUE(write_blocks(h, 8, w).ok());
    inject("read", "corrupt_data", {{"corrupt_offset", 5}, {"corrupt_value", 0xFF}});
    ASSERT_TRUE(read_blocks(h, 8, r).ok());
    auto expect = w;
    expect[5] ^= 0xFF;
    EXPECT_EQ(r, expect);
    ASSERT_TRUE(read_blocks(h, 8, r).ok());
    EXPECT_EQ(r, w) << "one corruption armed, one applied";

    // A corrupted write stores the flipped byte and hands the caller's buffer back intact.
    inject("write", "corrupt_data", {{"corrupt_offset", 513}, {"corrupt_value", 0x01}});
    auto w2 = pattern(4096, 3);
    const auto w2_copy = w2;
    ASSERT_TRUE(write_blocks(h, 16, w2).ok());
    EXPECT_EQ(w2, w2_copy);
    ASSERT_TRUE(read_blocks(h, 16, r).ok());
    expect = w2;
    expect[513] ^= 0x01;
    EXPECT_EQ(r, expect);
    // An offset beyond the I/O changes nothing but still counts.
    inject("write", "corrupt_data", {{"corrupt_offset", 1 << 20}, {"corrupt_value", 7}});
    ASSERT_TRUE(write_blocks(h, 16, w2).ok());
    ASSERT_TRUE(read_blocks(h, 16, r).ok());
    EXPECT_EQ(r, w2);
    EXPECT_EQ(counts().injected[idx(IoType::write)], 2u);
}

TEST_F(ErrorTest, PendingIsHeldUntilReset) {
    Handle& h = setup();
    std::vector<uint8_t> r(4096);
    inject("read", "pending", {{"num", 2}});
    Done d1, d2;
    on(worker, [&] {
        ASSERT_TRUE(read(*h.desc, *h.ch, r.data(), 0, 8, &Done::cb, &d1).ok());
        ASSERT_TRUE(read(*h.desc, *h.ch, r.data(), 8, 8, &Done::cb, &d2).ok());
    });
    poll_until([] { return false; }, 1'000'000'000);  // a virtual second
    EXPECT_EQ(d1.calls + d2.calls, 0);
    EXPECT_TRUE(read_blocks(h, 0, r).ok()) << "only two armed";
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());
    EXPECT_EQ(d1.calls, 1);
    EXPECT_EQ(d2.calls, 1);
    EXPECT_EQ(d1.status.code, Errc::io_error);
}

TEST_F(ErrorTest, NomemIsRetried) {
    Handle& h = setup();
    inject("write", "nomem", {{"num", 3}});
    for (int i = 0; i < 4; ++i) {
        auto w = pattern(4096, 10 + i);
        std::vector<uint8_t> r(4096);
        ASSERT_TRUE(write_blocks(h, uint64_t(i) * 8, w).ok());
        ASSERT_TRUE(read_blocks(h, uint64_t(i) * 8, r).ok());
        EXPECT_EQ(r, w);
    }
    EXPECT_EQ(counts().injected[idx(IoType::write)], 3u);
}

TEST_F(ErrorTest, QueueDepthInjectsOnlyUnderLoad) {
    Handle& h = setup();
    inject("write", "failure", {{"num", 1}, {"queue_depth", 4}});
    auto w = pattern(4096, 4);
    EXPECT_TRUE(write_blocks(h, 0, w).ok()) << "queue depth 1 < 4";
    std::vector<Done> done(8);
    on(worker, [&] {
        for (int i = 0; i < 8; ++i)
            ASSERT_TRUE(write(*h.desc, *h.ch, w.data(), uint64_t(i) * 8, 8, &Done::cb, &done[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    int failed = 0;
    for (int i = 0; i < 8; ++i) failed += done[i].status.ok() ? 0 : 1;
    EXPECT_EQ(failed, 1);
    EXPECT_FALSE(done[4].status.ok()) << "the fifth write finds four at the base";
}

TEST_F(ErrorTest, RemovalFailsHeldIo) {
    Handle& h = setup();
    std::vector<uint8_t> r(4096);
    inject("read", "pending");
    Done d;
    on(worker, [&] { ASSERT_TRUE(read(*h.desc, *h.ch, r.data(), 0, 8, &Done::cb, &d).ok()); });
    bool gone = false;
    on(&app->thread(), [&] { unregister_bdev("M0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1 && !h.events.empty(); }));
    EXPECT_EQ(d.status.code, Errc::aborted);
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_TRUE(list().empty());

    // bdev_error_delete fails held I/O too.
    malloc("M0");  // the configuration is still there: EE_M0 comes back
    ASSERT_TRUE(exists("EE_M0"));
    Handle& h2 = open("EE_M0");
    inject("write", "pending");
    Done d2;
    on(worker, [&] { ASSERT_TRUE(write(*h2.desc, *h2.ch, r.data(), 0, 8, &Done::cb, &d2).ok()); });
    Json reply;
    bool replied = false;
    on(&app->thread(), [&] {
        app->call_async(rpc::Registry::make_request("bdev_error_delete", {{"name", "EE_M0"}}),
                        [&](Json j) {
                            reply = std::move(j);
                            replied = true;
                        });
    });
    ASSERT_TRUE(poll_until([&] { return d2.calls == 1 && !h2.events.empty(); }));
    EXPECT_EQ(d2.status.code, Errc::aborted);
    close(h2);
    ASSERT_TRUE(poll_until([&] { return replied; }));
    EXPECT_EQ(reply["result"], true) << reply.dump();
    EXPECT_FALSE(exists("EE_M0"));
}

TEST_F(ErrorTest, RpcErrors) {
    malloc("M0");
    EXPECT_EQ(call_error("bdev_error_create", Json::object())["code"], -32602);
    EXPECT_EQ(call_error("bdev_error_create", {{"base_name", "M0"}, {"uuid", "x"}})["code"], -EINVAL);
    call("bdev_error_create", {{"base_name", "M0"}});
    EXPECT_EQ(call_error("bdev_error_create", {{"base_name", "M0"}})["code"], -EEXIST);
    auto inj = [](Json extra) {
        Json p = {{"name", "EE_M0"}, {"io_type", "read"}, {"error_type", "failure"}};
        for (auto& [k, v] : extra.items()) p[k] = v;
        return p;
    };
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"io_type", "bogus"}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"error_type", "bogus"}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"name", "M0"}}))["code"], -ENOENT);
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"error_type", "corrupt_data"}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_error_inject_error",
                         inj({{"error_type", "corrupt_data"}, {"corrupt_value", 256}}))["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"num", -1}}))["code"], -32602);
    EXPECT_EQ(call_error("bdev_error_inject_error", inj({{"io_type", "reset"}, {"error_type", "pending"}}))["code"],
              -EINVAL);
    EXPECT_EQ(call_error("bdev_error_delete", {{"name", "M0"}})["code"], -ENOENT);
    // Missing base: deferred until it appears.
    EXPECT_EQ(call("bdev_error_create", {{"base_name", "Later"}}), true);
    EXPECT_FALSE(exists("EE_Later"));
    malloc("Later");
    EXPECT_TRUE(exists("EE_Later"));
}

TEST_F(ErrorTest, ConfigRoundTripInAnyOrder) {
    malloc("M0");
    const std::string uuid = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
    call("bdev_error_create", {{"base_name", "M0"}, {"uuid", uuid}});
    Json cfg = bdev_config();
    Json reversed = Json::array();
    for (auto it = cfg.rbegin(); it != cfg.rend(); ++it) reversed.push_back(*it);
    stop_world();
    start_world(1, Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", reversed}}}}});
    ASSERT_TRUE(exists("EE_M0"));
    EXPECT_EQ(find("EE_M0")->uuid(), uuid);
}

// The same seed gives the same outcome: a concurrent workload with failures armed at a queue
// depth, from two Threads.
TEST_F(ErrorTest, SameSeedSameOutcome) {
    auto run = [&](uint64_t seed) {
        stop_world();
        start_world(seed);
        malloc("M0");
        call("bdev_error_create", {{"base_name", "M0"}});
        Handle& h = open("EE_M0");
        inject("write", "failure", {{"num", 5}, {"queue_depth", 3}});
        inject("read", "corrupt_data", {{"num", 5}, {"corrupt_offset", 7}, {"corrupt_value", 1}});
        auto w = pattern(64 * 4096, 5);
        std::vector<uint8_t> r(64 * 4096);
        std::vector<Done> done(128);
        on(worker, [&] {
            for (int i = 0; i < 64; ++i) {
                ASSERT_TRUE(write(*h.desc, *h.ch, w.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &done[i]).ok());
                ASSERT_TRUE(read(*h.desc, *h.ch, r.data() + i * 4096, uint64_t(i) * 8, 8, &Done::cb, &done[64 + i]).ok());
            }
        });
        EXPECT_TRUE(poll_until([&] {
            for (auto& d : done)
                if (d.calls == 0) return false;
            return true;
        }));
        std::vector<int> outcome;
        for (auto& d : done) outcome.push_back(static_cast<int>(d.status.code));
        outcome.push_back(static_cast<int>(std::hash<std::string>{}(std::string(r.begin(), r.end()))));
        return std::make_pair(outcome, sim->trace_hash());
    };
    auto a = run(42), b = run(42);
    EXPECT_EQ(a.first, b.first);
    EXPECT_EQ(a.second, b.second);
}

}  // namespace
}  // namespace strata::bdev::testing
