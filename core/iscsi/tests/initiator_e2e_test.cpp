// End to end on the simulated network: the test initiator (core/iscsi/testing) against the
// real target — its configuration (portal group, initiator group, auth group, target node on a
// malloc bdev, through the control API the RPCs call) and its network layer (installed by the
// iscsi subsystem's init). Discovery,
// logins with and without CHAP and digests, reads and writes of many sizes with many
// outstanding, each write data path, task management, logout, a connection reset mid-write
// and a corrupted Data-Out.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <strata/base/random.h>
#include <strata/env/env.h>
#include <strata/iscsi/internal/network.h>
#include <strata/iscsi/internal/target.h>
#include <strata/iscsi/target.h>
#include <strata/iscsi/testing/initiator.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

#include "initiator_harness.h"

namespace strata::iscsi::testing {
namespace {

constexpr uint32_t kBs = 512;
constexpr uint32_t kBlocks = 16384;
constexpr const char* kTarget = "iqn.2016-06.io.spdk:disk1";

class IscsiE2eTest : public ::testing::Test, protected InitiatorHarness {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(42, 2);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        client_host = std::make_unique<runtime::Host>("client", 44);
        net = std::make_unique<sock::SimNetwork>(*sim, 43);
        ASSERT_TRUE(net->attach(app->host(), "10.0.0.1").ok());
        ASSERT_TRUE(net->attach(*client_host, "10.0.0.2").ok());
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(run([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok());
        {
            runtime::HostScope scope(app->host());
            ASSERT_TRUE(sock::set_default_impl("sim").ok());
        }
        {
            runtime::HostScope scope(*client_host);
            ASSERT_TRUE(sock::set_default_impl("sim").ok());
        }
        ini_thread = sim->create_thread("ini", -1, client_host.get());
        auto r =
            app->call_method("bdev_malloc_create",
                             {{"name", "Malloc0"}, {"num_blocks", kBlocks}, {"block_size", kBs}});
        ASSERT_TRUE(r.contains("result")) << r.dump();
    }
    // Portal group 1 at 10.0.0.1:3260, initiator group 2 (ANY), node disk1 with Malloc0.
    void configure(const std::function<void(TargetNodeConfig&)>& tweak = {}) {
        std::optional<Result<void>> r;
        on(app->thread(), [&] {
            auto a = create_portal_group({1, {{"10.0.0.1", "3260"}}});
            ASSERT_TRUE(a.ok()) << a.error().message();
            auto b = create_initiator_group({2, {"ANY"}, {"ANY"}});
            ASSERT_TRUE(b.ok()) << b.error().message();
            TargetNodeConfig n;
            n.name = "disk1";
            n.alias_name = "Disk1";
            n.pg_ig_maps = {{1, 2}};
            n.luns = {{"Malloc0", 0}};
            if (tweak) tweak(n);
            create_target_node(n, [&](Result<void> x) { r = std::move(x); });
        });
        ASSERT_TRUE(run([&] { return r.has_value(); }));
        ASSERT_TRUE(r->ok()) << r->error().message();
    }
    void TearDown() override {
        if (ini) on(ini_thread, [&] { ini.reset(); });
        bool down = false;
        on(app->thread(), [&] { shutdown([&] { down = true; }); });
        EXPECT_TRUE(run([&] { return down; }));
        app->request_stop();
        run([&] { return app->stopped(); });
        app.reset();
        net.reset();
        client_host.reset();
        sim.reset();
        env::fini();
    }
    InitiatorOptions opts(bool discovery = false) {
        InitiatorOptions o;
        o.portal = {"10.0.0.1", 3260};
        o.target_name = discovery ? "" : kTarget;
        o.seed = 5;
        return o;
    }
    Status login(InitiatorOptions o) { return InitiatorHarness::login(std::move(o), true); }
    // Writes `count` extents of the given sizes (all outstanding), then reads them back (all
    // outstanding) and compares.
    void write_read_verify(const std::vector<uint32_t>& blocks, uint64_t seed, uint64_t base = 0) {
        const size_t n = blocks.size();
        std::vector<std::vector<uint8_t>> data(n), back(n);
        std::vector<std::optional<ScsiResult>> res(n);
        uint64_t lba = base;
        std::vector<uint64_t> lbas(n);
        for (size_t i = 0; i < n; ++i) {
            lbas[i] = lba;
            lba += blocks[i];
            data[i] = pattern(size_t(blocks[i]) * kBs, seed + i);
            back[i].assign(data[i].size(), 0);
        }
        on(ini_thread, [&] {
            for (size_t i = 0; i < n; ++i)
                ASSERT_TRUE(ini->write(
                                   0, lbas[i], blocks[i], kBs, data[i].data(),
                                   [&res, i](const ScsiResult& r) { res[i] = r; }, i % 2)
                                .ok());
        });
        ASSERT_TRUE(run([&] {
            for (auto& r : res)
                if (!r) return false;
            return true;
        }));
        for (size_t i = 0; i < n; ++i)
            ASSERT_TRUE(res[i]->ok()) << i << ": " << res[i]->transport.to_string() << " status "
                                      << int(res[i]->status) << " " << ini->error();
        res.assign(n, std::nullopt);
        on(ini_thread, [&] {
            for (size_t i = 0; i < n; ++i)
                ASSERT_TRUE(ini->read(
                                   0, lbas[i], blocks[i], kBs, back[i].data(),
                                   [&res, i](const ScsiResult& r) { res[i] = r; }, i % 3 == 0)
                                .ok());
        });
        ASSERT_TRUE(run([&] {
            for (auto& r : res)
                if (!r) return false;
            return true;
        }));
        for (size_t i = 0; i < n; ++i) {
            ASSERT_TRUE(res[i]->ok()) << i << ": " << res[i]->transport.to_string();
            EXPECT_EQ(back[i], data[i]) << "extent " << i;
        }
    }

    std::unique_ptr<rpc::App> app;
    std::unique_ptr<runtime::Host> client_host;
    std::unique_ptr<sock::SimNetwork> net;
};

const std::vector<uint32_t> kSizes = {1, 8, 16, 64, 128, 256, 3, 17, 1, 512, 8, 8};

TEST_F(IscsiE2eTest, DiscoveryThenLoginWriteReadVerify) {
    ASSERT_NO_FATAL_FAILURE(configure());
    ASSERT_TRUE(login(opts(true)).ok()) << ini->error();
    std::optional<std::vector<SendTargetsEntry>> got;
    on(ini_thread, [&] {
        ini->send_targets([&](Status s, std::vector<SendTargetsEntry> v) {
            EXPECT_TRUE(s.ok());
            got = std::move(v);
        });
    });
    ASSERT_TRUE(run([&] { return got.has_value(); }));
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].name, kTarget);
    on(ini_thread, [&] { ini.reset(); });

    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    EXPECT_NE(ini->session().tsih, 0);
    std::optional<ScsiResult> r;
    std::vector<uint8_t> cap(32);
    on(ini_thread, [&] {
        ASSERT_TRUE(ini->read_capacity16(0, cap.data(), [&](const ScsiResult& x) { r = x; }).ok());
    });
    ASSERT_TRUE(run([&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok());
    uint64_t last = 0;
    for (int i = 0; i < 8; ++i) last = last << 8 | cap[i];
    EXPECT_EQ(last, kBlocks - 1);
    write_read_verify(kSizes, 1);
    std::optional<Status> lo;
    on(ini_thread, [&] { ini->logout([&](Status s) { lo = s; }); });
    ASSERT_TRUE(run([&] { return lo.has_value(); }));
    EXPECT_TRUE(lo->ok()) << ini->error();
}

TEST_F(IscsiE2eTest, EveryWritePathWithAndWithoutDigests) {
    ASSERT_NO_FATAL_FAILURE(configure());
    int k = 0;
    for (bool digests : {false, true})
        for (bool immediate : {false, true})
            for (bool initial_r2t : {false, true}) {
                SCOPED_TRACE(::testing::Message() << "digests " << digests << " ImmediateData "
                                                  << immediate << " InitialR2T " << initial_r2t);
                auto o = opts();
                o.header_digest = o.data_digest = digests;
                o.immediate_data = immediate;
                o.initial_r2t = initial_r2t;
                ASSERT_TRUE(login(o).ok()) << ini->error();
                EXPECT_EQ(ini->session().data_digest, digests);
                write_read_verify(kSizes, 100 + k, uint64_t(k) * 1024);
                on(ini_thread, [&] { ini.reset(); });
                ++k;
            }
}

TEST_F(IscsiE2eTest, ChapOneWayAndMutual) {
    on(app->thread(), [&] {
        auto a = create_auth_group({1, {{"user1", "secret1secret1", "tgt1", "tsecret1tsecret1"}}});
        ASSERT_TRUE(a.ok()) << a.error().message();
    });
    ASSERT_NO_FATAL_FAILURE(configure([](TargetNodeConfig& n) {
        n.require_chap = true;
        n.chap_group = 1;
    }));
    auto o = opts();
    EXPECT_EQ(login(o).code(), Errc::permission_denied);
    on(ini_thread, [&] { ini.reset(); });
    o.chap_user = "user1";
    o.chap_secret = "secret1secret1";
    ASSERT_TRUE(login(o).ok()) << ini->error();
    write_read_verify({8, 64}, 7);
    on(ini_thread, [&] { ini.reset(); });
    o.chap_muser = "tgt1";
    o.chap_msecret = "tsecret1tsecret1";
    ASSERT_TRUE(login(o).ok()) << ini->error();
    write_read_verify({8}, 8);
    on(ini_thread, [&] { ini.reset(); });
    o.chap_secret = "wrongwrongwrong";
    EXPECT_EQ(login(o).code(), Errc::permission_denied);
}

TEST_F(IscsiE2eTest, ResetMidWriteThenLoginAgain) {
    ASSERT_NO_FATAL_FAILURE(configure());
    auto o = opts();
    o.immediate_data = false;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    constexpr int kN = 16;
    std::vector<std::vector<uint8_t>> data(kN);
    std::vector<int> calls(kN);
    std::vector<Status> st(kN);
    on(ini_thread, [&] {
        for (int i = 0; i < kN; ++i) {
            data[i] = pattern(64 * kBs, 50 + i);
            ASSERT_TRUE(ini->write(0, uint64_t(i) * 64, 64, kBs, data[i].data(),
                                   [&, i](const ScsiResult& r) {
                                       ++calls[i];
                                       st[i] = r.ok() ? Status{} : Status(Errc::io_error);
                                   })
                            .ok());
        }
    });
    sim->advance(30'000);
    net->reset("10.0.0.1", "10.0.0.2");
    ASSERT_TRUE(run([&] {
        for (int c : calls)
            if (c == 0) return false;
        return true;
    }));
    sim->advance(100'000'000);
    for (int i = 0; i < kN; ++i) EXPECT_EQ(calls[i], 1) << i;
    on(ini_thread, [&] { ini.reset(); });
    ASSERT_TRUE(login(o).ok()) << ini->error();  // same ISID: the session is reinstated
    // Acknowledged writes are there; the others hold old (zero) or new blocks.
    std::vector<std::vector<uint8_t>> back(kN, std::vector<uint8_t>(64 * kBs));
    int done = 0;
    on(ini_thread, [&] {
        for (int i = 0; i < kN; ++i)
            ASSERT_TRUE(ini->read(0, uint64_t(i) * 64, 64, kBs, back[i].data(),
                                  [&](const ScsiResult& r) {
                                      EXPECT_TRUE(r.ok());
                                      ++done;
                                  })
                            .ok());
    });
    ASSERT_TRUE(run([&] { return done == kN; }));
    for (int i = 0; i < kN; ++i) {
        if (st[i].ok()) {
            EXPECT_EQ(back[i], data[i]) << i;
            continue;
        }
        for (uint32_t b = 0; b < 64; ++b) {
            const uint8_t* got = back[i].data() + b * kBs;
            const bool zero = std::all_of(got, got + kBs, [](uint8_t x) { return x == 0; });
            EXPECT_TRUE(zero || std::memcmp(got, data[i].data() + b * kBs, kBs) == 0)
                << "extent " << i << " block " << b;
        }
    }
    write_read_verify({8, 64, 1}, 9, 4096);
}

TEST_F(IscsiE2eTest, CorruptDataOutNeverLands) {
    ASSERT_NO_FATAL_FAILURE(configure());
    auto o = opts();
    o.header_digest = o.data_digest = true;
    o.immediate_data = false;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    on(ini_thread, [&] {
        ini->set_tx_hook([](std::vector<uint8_t>& pdu) {
            if ((pdu[0] & kOpcodeMask) == uint8_t(Opcode::data_out)) pdu[kBhsSize + 4 + 7] ^= 0x10;
        });
    });
    auto data = pattern(16 * kBs, 3);
    std::optional<ScsiResult> r;
    on(ini_thread, [&] {
        ASSERT_TRUE(
            ini->write(0, 0, 16, kBs, data.data(), [&](const ScsiResult& x) { r = x; }).ok());
    });
    ASSERT_TRUE(run([&] { return r.has_value(); }));
    EXPECT_FALSE(r->ok());
    on(ini_thread, [&] { ini.reset(); });
    o.immediate_data = true;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    std::vector<uint8_t> back(16 * kBs);
    r.reset();
    on(ini_thread, [&] {
        ASSERT_TRUE(
            ini->read(0, 0, 16, kBs, back.data(), [&](const ScsiResult& x) { r = x; }).ok());
    });
    ASSERT_TRUE(run([&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok());
    EXPECT_EQ(back, std::vector<uint8_t>(16 * kBs, 0));  // nothing of the corrupted write landed
}

TEST_F(IscsiE2eTest, TaskManagementAndPing) {
    ASSERT_NO_FATAL_FAILURE(configure());
    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    std::optional<uint8_t> resp;
    std::optional<Status> pong;
    on(ini_thread, [&] {
        ASSERT_TRUE(ini->task_management(tmf::lun_reset, 0, kReservedTag,
                                         [&](Status s, uint8_t r) {
                                             EXPECT_TRUE(s.ok());
                                             resp = r;
                                         })
                        .ok());
        ASSERT_TRUE(ini->ping({9, 8, 7}, [&](Status s) { pong = s; }).ok());
    });
    ASSERT_TRUE(run([&] { return resp.has_value() && pong.has_value(); }));
    EXPECT_EQ(*resp, 0);
    EXPECT_TRUE(pong->ok());
    // After a LUN reset the first command may see a unit attention; then the LUN works.
    std::optional<ScsiResult> r;
    on(ini_thread,
       [&] { ASSERT_TRUE(ini->test_unit_ready(0, [&](const ScsiResult& x) { r = x; }).ok()); });
    ASSERT_TRUE(run([&] { return r.has_value(); }));
    EXPECT_TRUE(r->ok() || r->sense_key() == 6) << int(r->status) << " " << int(r->sense_key());
    write_read_verify({8}, 11);
}

}  // namespace
}  // namespace strata::iscsi::testing
