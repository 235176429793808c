// The iSCSI target's configuration on the simulator: options, portal/initiator/auth groups and
// target nodes (their SCSI devices over malloc bdevs, spread over the node Threads), SPDK's
// validation rules, and the answers logins get (ACL with names, "!name" denials and netmasks,
// CHAP secrets, discovery policy, SendTargets), with and without a (fake) network layer.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/env/env.h>
#include <strata/iscsi/internal/target.h>
#include <strata/iscsi/target.h>
#include <strata/runtime/sim_fixture.h>
#include <strata/scsi/scsi.h>

#include "malloc/malloc.h"

namespace strata::iscsi {
namespace {

using internal::lookup_target;
using internal::send_targets;

constexpr const char* kIni = "iqn.1994-05.com.redhat:client1";

// Records what the configuration asks of the network layer.
struct FakeNetwork : internal::Network {
    std::vector<int32_t>* started;
    std::vector<int32_t>* stopped;
    std::vector<std::string>* ended;
    bool fail_start = false;
    FakeNetwork(std::vector<int32_t>* s, std::vector<int32_t>* st, std::vector<std::string>* e)
        : started(s), stopped(st), ended(e) {}
    Status start_portals(const PortalGroupConfig& pg) override {
        if (fail_start) return {Errc::already_exists, "address in use"};
        started->push_back(pg.tag);
        return {};
    }
    void stop_portals(int32_t tag) override { stopped->push_back(tag); }
    void end_target_sessions(const std::string& name, std::function<void()> done) override {
        ended->push_back(name);
        done();
    }
    void get_connections(std::function<void(std::vector<ConnectionInfo>)> done) override {
        done({ConnectionInfo{7, 1, 2, 0, "127.0.0.1", "127.0.0.1", "iqn.x"}});
    }
    void shutdown(std::function<void()> done) override { done(); }
};

class ConfigTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        start_sim(11, 1, /*reactors=*/2);
        on(t0(), [] {
            for (const char* n : {"M0", "M1", "M2", "M3"})
                ASSERT_TRUE(bdev::malloc_create({n, 256, 512, {}, 0}).ok());
            ASSERT_TRUE(set_options(TargetOptions{}).ok());
        });
    }
    void TearDown() override {
        bool down = false;
        on(t0(), [&] { shutdown([&] { down = true; }); });
        EXPECT_TRUE(poll_until([&] { return down; }));
        on(t0(), [] {
            internal::set_network(nullptr);
            EXPECT_TRUE(target_nodes().empty());
            EXPECT_TRUE(scsi::list_devices().empty());
            ASSERT_TRUE(set_options(TargetOptions{}).ok());
        });
        // Every LUN released its claim: the malloc bdevs delete cleanly.
        size_t deleted = 0;
        on(t0(), [&] {
            for (const char* n : {"M0", "M1", "M2", "M3"})
                bdev::malloc_delete(n, [&, n](Result<void> r) {
                    // not_found: the test deleted it (hot-removal).
                    EXPECT_TRUE(r.ok() || r.code() == Errc::not_found) << n;
                    ++deleted;
                });
        });
        EXPECT_TRUE(poll_until([&] { return deleted == 4; }));
        SimFixture::TearDown();
        env::fini();
    }
    runtime::Thread* t0() { return threads[0]; }

    // Runs fn on the app Thread (t0) and returns its result.
    template <class F>
    auto app(F fn) {
        std::optional<decltype(fn())> out;
        on(t0(), [&] { out.emplace(fn()); });
        return std::move(*out);
    }
    Result<void> create_node(const TargetNodeConfig& n) {
        std::optional<Result<void>> r;
        on(t0(), [&] { create_target_node(n, [&](Result<void> x) { r = std::move(x); }); });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r ? *r : Result<void>(Error(Errc::timeout, "no reply"));
    }
    Result<void> delete_node(const std::string& name) {
        std::optional<Result<void>> r;
        on(t0(), [&] { delete_target_node(name, [&](Result<void> x) { r = std::move(x); }); });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r ? *r : Result<void>(Error(Errc::timeout, "no reply"));
    }
    Result<void> add_lun(const std::string& name, TargetLun l) {
        std::optional<Result<void>> r;
        on(t0(), [&] { target_node_add_lun(name, l, [&](Result<void> x) { r = std::move(x); }); });
        EXPECT_TRUE(poll_until([&] { return r.has_value(); }));
        return r ? *r : Result<void>(Error(Errc::timeout, "no reply"));
    }
    // Portal group 1 on 127.0.0.1:3260, initiator group 1 (kIni from 127.0.0.0/8), node "disk1"
    // with M0 as LUN 0, mapped (1, 1).
    void basic() {
        ASSERT_TRUE(app([] { return create_portal_group({1, {{"127.0.0.1", "3260"}}}); }).ok());
        ASSERT_TRUE(app([] { return create_initiator_group({1, {kIni}, {"127.0.0.0/8"}}); }).ok());
        TargetNodeConfig n;
        n.name = "disk1";
        n.alias_name = "Disk 1";
        n.pg_ig_maps = {{1, 1}};
        n.luns = {{"M0", 0}};
        auto r = create_node(n);
        ASSERT_TRUE(r.ok()) << r.error().message();
    }
    static std::string msg(const Result<void>& r) { return r.ok() ? "" : r.error().message(); }
};

TEST_F(ConfigTest, OptionsDefaultsAndValidation) {
    app([] {
        const TargetOptions& o = options();
        EXPECT_EQ(o.node_base, "iqn.2016-06.io.spdk");
        EXPECT_EQ(o.max_queue_depth, 64u);
        // SPDK's computed pool sizes: 128 sessions * 2 * (64 + 64 + 2*4 + 8).
        EXPECT_EQ(o.pdu_pool_size, 128u * 2 * (64 + 64 + 8 + 8));
        EXPECT_EQ(o.immediate_data_pool_size, 128u * 128);
        EXPECT_EQ(o.data_out_pool_size, 128u * 16);
        return 0;
    });
    auto set = [&](auto edit) {
        return app([&] {
            TargetOptions o;
            edit(o);
            return set_options(o);
        });
    };
    EXPECT_EQ(set([](TargetOptions& o) { o.max_sessions = 0; }).code(), Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.max_queue_depth = 257; }).code(), Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.first_burst_length = 511; }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.first_burst_length = 2 << 20; }).code(),
              Errc::invalid_argument);  // above max_burst_length
    EXPECT_EQ(set([](TargetOptions& o) { o.nop_in_interval = 61; }).code(), Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.default_time2wait = 3601; }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.max_r2t_per_connection = 0; }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.data_digest_accel_threshold = 1u << 24; }).code(),
              Errc::invalid_argument);  // above any data segment
    auto r = set([](TargetOptions& o) {
        o.disable_chap = true;
        o.require_chap = true;
    });
    EXPECT_EQ(r.code(), Errc::invalid_argument);
    EXPECT_NE(msg(r).find("disable_chap"), std::string::npos) << msg(r);
    EXPECT_EQ(set([](TargetOptions& o) { o.mutual_chap = true; }).code(), Errc::invalid_argument);
    EXPECT_EQ(set([](TargetOptions& o) { o.chap_group = -1; }).code(), Errc::invalid_argument);
    ASSERT_TRUE(set([](TargetOptions& o) {
                    o.node_base = "iqn.2001-04.com.example";
                    o.max_sessions = 4;
                    o.require_chap = true;
                    o.mutual_chap = true;
                    o.chap_group = 3;
                }).ok());
    app([] {
        EXPECT_EQ(options().node_base, "iqn.2001-04.com.example");
        EXPECT_EQ(options().immediate_data_pool_size, 4u * 128);
        AuthPolicy p = internal::discovery_policy();
        EXPECT_TRUE(p.require_chap && p.mutual_chap && !p.disable_chap);
        EXPECT_EQ(p.chap_group, 3);
        return 0;
    });
    // Busy once a portal group exists.
    ASSERT_TRUE(app([] { return create_portal_group({1, {{"127.0.0.1", "3260"}}}); }).ok());
    EXPECT_EQ(set([](TargetOptions&) {}).code(), Errc::busy);
}

TEST_F(ConfigTest, PortalGroups) {
    auto create = [&](PortalGroupConfig pg) { return app([&] { return create_portal_group(pg); }); };
    EXPECT_EQ(create({0, {{"127.0.0.1", "3260"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"127.0.0.1", "0"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"127.0.0.1", "65536"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"127.0.0.1", "99999999999999999999999"}}}).code(),
              Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"127.0.0.1", "abc"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"[::1", "3260"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"1:2:zz::", "3260"}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"bad host", "3260"}}}).code(), Errc::invalid_argument);
    ASSERT_TRUE(create({1, {{"127.0.0.1", "3260"}, {"[::1]", "3260"}}}).ok());
    EXPECT_EQ(create({1, {{"127.0.0.2", "3260"}}}).code(), Errc::already_exists);
    auto dup = create({2, {{"127.0.0.1", "3260"}}});
    EXPECT_EQ(dup.code(), Errc::already_exists);
    EXPECT_NE(msg(dup).find("portal group 1"), std::string::npos) << msg(dup);
    ASSERT_TRUE(create({2, {{"*", "3261"}, {"localhost", "3262"}}, true, true}).ok());
    auto pgs = app([] { return portal_groups(); });
    ASSERT_EQ(pgs.size(), 2u);
    EXPECT_EQ(pgs[1].portals[0].host, "0.0.0.0");  // SPDK's wildcard conversion
    EXPECT_TRUE(pgs[1].is_private);
    EXPECT_TRUE(pgs[1].wait);
    EXPECT_TRUE(app([] { return start_portal_group(2); }).ok());
    EXPECT_EQ(app([] { return start_portal_group(9); }).code(), Errc::not_found);
    EXPECT_EQ(app([] { return delete_portal_group(9); }).code(), Errc::not_found);
    EXPECT_TRUE(app([] { return delete_portal_group(2); }).ok());
    EXPECT_EQ(app([] { return portal_groups(); }).size(), 1u);
}

TEST_F(ConfigTest, PortalGroupsWithNetwork) {
    std::vector<int32_t> started, stopped;
    std::vector<std::string> ended;
    auto* net = new FakeNetwork(&started, &stopped, &ended);
    app([&] {
        internal::set_network(std::unique_ptr<internal::Network>(net));
        return 0;
    });
    ASSERT_TRUE(app([] { return create_portal_group({1, {{"127.0.0.1", "3260"}}}); }).ok());
    ASSERT_TRUE(
        app([] { return create_portal_group({2, {{"127.0.0.1", "3261"}}, false, true}); }).ok());
    EXPECT_EQ(started, std::vector<int32_t>{1});  // group 2 waits
    ASSERT_TRUE(app([] { return start_portal_group(2); }).ok());
    ASSERT_TRUE(app([] { return start_portal_group(2); }).ok());  // idempotent
    EXPECT_EQ(started, (std::vector<int32_t>{1, 2}));
    net->fail_start = true;
    auto r = app([] { return create_portal_group({3, {{"127.0.0.1", "3262"}}}); });
    EXPECT_EQ(r.code(), Errc::already_exists);
    EXPECT_NE(msg(r).find("address in use"), std::string::npos) << msg(r);
    EXPECT_EQ(app([] { return portal_groups(); }).size(), 2u);  // nothing kept
    ASSERT_TRUE(app([] { return delete_portal_group(1); }).ok());
    EXPECT_EQ(stopped, std::vector<int32_t>{1});
    std::vector<ConnectionInfo> conns;
    app([&] {
        get_connections([&](std::vector<ConnectionInfo> c) { conns = std::move(c); });
        return 0;
    });
    ASSERT_EQ(conns.size(), 1u);
    EXPECT_EQ(conns[0].id, 7);
}

TEST_F(ConfigTest, InitiatorGroups) {
    auto create = [&](InitiatorGroupConfig ig) {
        return app([&] { return create_initiator_group(ig); });
    };
    EXPECT_EQ(create({0, {"ANY"}, {"ANY"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {}, {"ANY"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {"ANY"}, {}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {"iqn.2016-6.x"}, {"ANY"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {"eui.12345"}, {"ANY"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {"iqn.2016-06.io spdk"}, {"ANY"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {"host1"}, {"ANY"}}).code(), Errc::invalid_argument);
    for (const char* bad : {"192.168.2.0/0", "192.168.2.0/33", "192.168.2.0/-1", "[2001:db8::]/0",
                            "[2001:db8::]/129", "300.1.1.1", "[::1", "1.2.3.4/", "abc"}) {
        auto r = create({1, {"ANY"}, {bad}});
        EXPECT_EQ(r.code(), Errc::invalid_argument) << bad;
        EXPECT_NE(msg(r).find(bad), std::string::npos) << msg(r);
    }
    ASSERT_TRUE(create({1, {"ALL", "!iqn.2016-06.io.spdk:bad", "eui.0123456789ABCDEF",
                            "naa.52004567BA64678D"},
                        {"ALL", "192.168.2.0/24", "[2001:db8::]/32", "::1"}})
                    .ok());
    auto igs = app([] { return initiator_groups(); });
    ASSERT_EQ(igs.size(), 1u);
    EXPECT_EQ(igs[0].initiators[0], "ANY");
    EXPECT_EQ(igs[0].netmasks[0], "ANY");
    EXPECT_EQ(create({1, {"ANY"}, {"ANY"}}).code(), Errc::already_exists);

    // add/remove are all-or-nothing.
    auto add = [&](InitiatorGroupConfig ig) {
        return app([&] { return initiator_group_add_initiators(ig); });
    };
    auto rm = [&](InitiatorGroupConfig ig) {
        return app([&] { return initiator_group_remove_initiators(ig); });
    };
    EXPECT_EQ(add({2, {kIni}, {}}).code(), Errc::not_found);
    EXPECT_EQ(add({1, {kIni, "ANY"}, {}}).code(), Errc::already_exists);
    EXPECT_EQ(add({1, {kIni}, {"10.0.0.0/8", "bad"}}).code(), Errc::invalid_argument);
    EXPECT_EQ(app([] { return initiator_groups(); })[0].initiators.size(), 4u);
    ASSERT_TRUE(add({1, {kIni}, {"10.0.0.0/8"}}).ok());
    EXPECT_EQ(app([] { return initiator_groups(); })[0].initiators.size(), 5u);
    EXPECT_EQ(rm({1, {kIni, "iqn.2016-06.io.spdk:nobody"}, {}}).code(), Errc::not_found);
    EXPECT_EQ(app([] { return initiator_groups(); })[0].initiators.size(), 5u);
    ASSERT_TRUE(rm({1, {kIni}, {"10.0.0.0/8"}}).ok());
    igs = app([] { return initiator_groups(); });
    EXPECT_EQ(igs[0].initiators.size(), 4u);
    EXPECT_EQ(igs[0].netmasks.size(), 4u);
    EXPECT_EQ(app([] { return delete_initiator_group(5); }).code(), Errc::not_found);
    EXPECT_TRUE(app([] { return delete_initiator_group(1); }).ok());
}

TEST_F(ConfigTest, AuthGroupsAndSecrets) {
    auto create = [&](AuthGroupConfig ag) { return app([&] { return create_auth_group(ag); }); };
    EXPECT_EQ(create({0, {}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"u", "", "", ""}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"u", "s", "mu", ""}}}).code(), Errc::invalid_argument);
    EXPECT_EQ(create({1, {{"u", "s", "", ""}, {"u", "t", "", ""}}}).code(), Errc::already_exists);
    EXPECT_EQ(create({1, {{std::string(256, 'u'), "s", "", ""}}}).code(), Errc::invalid_argument);
    ASSERT_TRUE(create({1, {{"alice", "secret-a", "tgt", "msecret-a"}}}).ok());
    EXPECT_EQ(create({1, {}}).code(), Errc::already_exists);
    ASSERT_TRUE(app([] { return auth_group_add_secret(1, {"bob", "secret-b", "", ""}); }).ok());
    EXPECT_EQ(app([] { return auth_group_add_secret(1, {"bob", "x", "", ""}); }).code(),
              Errc::already_exists);
    EXPECT_EQ(app([] { return auth_group_add_secret(2, {"bob", "x", "", ""}); }).code(),
              Errc::not_found);
    app([] {
        ChapSecret s;
        const ChapSecrets& cs = internal::chap_secrets();
        EXPECT_TRUE(cs.lookup(1, "alice", &s));
        EXPECT_EQ(s.secret, "secret-a");
        EXPECT_EQ(s.muser, "tgt");
        EXPECT_EQ(s.msecret, "msecret-a");
        EXPECT_TRUE(cs.lookup(1, "bob", &s));
        EXPECT_TRUE(s.muser.empty());
        EXPECT_FALSE(cs.lookup(1, "carol", &s));
        EXPECT_FALSE(cs.lookup(2, "alice", &s));
        return 0;
    });
    EXPECT_EQ(app([] { return auth_group_remove_secret(1, "carol"); }).code(), Errc::not_found);
    ASSERT_TRUE(app([] { return auth_group_remove_secret(1, "bob"); }).ok());
    EXPECT_EQ(app([] { return auth_groups(); })[0].secrets.size(), 1u);

    // Busy while discovery uses it.
    ASSERT_TRUE(app([] { return set_discovery_auth({false, true, false, 1}); }).ok());
    EXPECT_EQ(app([] { return delete_auth_group(1); }).code(), Errc::busy);
    EXPECT_EQ(app([] { return set_discovery_auth({true, false, true, 0}); }).code(),
              Errc::invalid_argument);
    ASSERT_TRUE(app([] { return set_discovery_auth({true, false, false, 0}); }).ok());
    EXPECT_TRUE(app([] { return discovery_auth(); }).disable_chap);
    EXPECT_TRUE(app([] { return delete_auth_group(1); }).ok());
    EXPECT_EQ(app([] { return delete_auth_group(1); }).code(), Errc::not_found);
}

TEST_F(ConfigTest, TargetNodeValidation) {
    ASSERT_TRUE(app([] { return create_portal_group({1, {{"127.0.0.1", "3260"}}}); }).ok());
    ASSERT_TRUE(app([] { return create_initiator_group({1, {"ANY"}, {"ANY"}}); }).ok());
    TargetNodeConfig good;
    good.name = "disk1";
    good.pg_ig_maps = {{1, 1}};
    good.luns = {{"M0", 0}};
    auto with = [&](auto edit) {
        TargetNodeConfig n = good;
        edit(n);
        return create_node(n);
    };
    EXPECT_EQ(with([](auto& n) { n.name = ""; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.name = "disk/1"; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.name = "iqn.16-06.x"; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.name = "eui.0123"; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.name = std::string(230, 'a'); }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.pg_ig_maps.clear(); }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.pg_ig_maps = {{2, 1}}; }).code(), Errc::not_found);
    EXPECT_EQ(with([](auto& n) { n.pg_ig_maps = {{1, 2}}; }).code(), Errc::not_found);
    EXPECT_EQ(with([](auto& n) { n.pg_ig_maps = {{1, 1}, {1, 1}}; }).code(),
              Errc::already_exists);
    EXPECT_EQ(with([](auto& n) { n.luns.clear(); }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.luns = {{"M0", 0}, {"M1", 0}}; }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.luns = {{"M0", -1}}; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.queue_depth = 0; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.queue_depth = 65; }).code(), Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) {
                  n.disable_chap = true;
                  n.require_chap = true;
              }).code(),
              Errc::invalid_argument);
    EXPECT_EQ(with([](auto& n) { n.mutual_chap = true; }).code(), Errc::invalid_argument);
    auto nob = with([](auto& n) { n.luns = {{"NoSuchBdev", 0}}; });
    EXPECT_EQ(nob.code(), Errc::not_found);
    EXPECT_NE(msg(nob).find("NoSuchBdev"), std::string::npos) << msg(nob);
    EXPECT_TRUE(app([] { return target_nodes(); }).empty());
    EXPECT_TRUE(app([] { return scsi::list_devices(); }).empty());

    ASSERT_TRUE(create_node(good).ok());
    EXPECT_EQ(create_node(good).code(), Errc::already_exists);
    // Case-insensitive, full or short.
    EXPECT_EQ(with([](auto& n) {
                  n.name = "IQN.2016-06.io.spdk:DISK1";
                  n.luns = {{"M1", 0}};
              }).code(),
              Errc::already_exists);
    // The bdev is claimed by the first node's LUN.
    EXPECT_EQ(with([](auto& n) { n.name = "disk2"; }).code(), Errc::permission_denied);
    auto nodes = app([] { return target_nodes(); });
    ASSERT_EQ(nodes.size(), 1u);
    EXPECT_EQ(nodes[0].name, "iqn.2016-06.io.spdk:disk1");
    // Mapped groups are busy.
    EXPECT_EQ(app([] { return delete_portal_group(1); }).code(), Errc::busy);
    EXPECT_EQ(app([] { return delete_initiator_group(1); }).code(), Errc::busy);
}

TEST_F(ConfigTest, TargetNodesDevicesAndThreads) {
    basic();
    TargetNodeConfig n2;
    n2.name = "eui.0123456789abcdef";
    n2.pg_ig_maps = {{1, 1}};
    n2.luns = {{"M1", 3}};
    n2.queue_depth = 32;
    ASSERT_TRUE(create_node(n2).ok());
    auto devs = app([] { return scsi::list_devices(); });
    ASSERT_EQ(devs.size(), 2u);
    std::set<int32_t> ids;
    for (const auto& d : devs) ids.insert(d.id);
    EXPECT_EQ(ids, (std::set<int32_t>{0, 1}));
    // Two reactors: two node Threads, the nodes on different ones.
    auto th = app([] { return internal::node_threads(); });
    ASSERT_EQ(th.size(), 2u);
    scsi::Device* d1 = scsi::find_device("iqn.2016-06.io.spdk:disk1");
    scsi::Device* d2 = scsi::find_device("eui.0123456789abcdef");
    ASSERT_TRUE(d1 && d2);
    EXPECT_NE(&scsi::device_thread(*d1), &scsi::device_thread(*d2));
    for (scsi::Device* d : {d1, d2})
        EXPECT_TRUE(&scsi::device_thread(*d) == th[0] || &scsi::device_thread(*d) == th[1]);

    // add_lun: -1 takes the lowest free id; a used id or bdev fails.
    ASSERT_TRUE(add_lun("disk1", {"M2", -1}).ok());
    EXPECT_EQ(add_lun("disk1", {"M3", 1}).code(), Errc::already_exists);
    EXPECT_EQ(add_lun("disk1", {"M1", 5}).code(), Errc::permission_denied);
    EXPECT_EQ(add_lun("nope", {"M3", 5}).code(), Errc::not_found);
    EXPECT_EQ(add_lun("disk1", {"M3", -2}).code(), Errc::invalid_argument);
    auto nodes = app([] { return target_nodes(); });
    ASSERT_EQ(nodes[0].luns.size(), 2u);
    EXPECT_EQ(nodes[0].luns[1].bdev_name, "M2");
    EXPECT_EQ(nodes[0].luns[1].lun_id, 1);
    EXPECT_EQ(nodes[1].queue_depth, 32);

    // Maps and auth.
    ASSERT_TRUE(app([] { return create_portal_group({2, {{"127.0.0.1", "3261"}}}); }).ok());
    ASSERT_TRUE(app([] { return create_initiator_group({2, {"ANY"}, {"ANY"}}); }).ok());
    EXPECT_EQ(app([] { return target_node_add_pg_ig_maps("disk1", {{2, 2}, {1, 1}}); }).code(),
              Errc::already_exists);
    EXPECT_EQ(app([] { return target_nodes(); })[0].pg_ig_maps.size(), 1u);
    EXPECT_EQ(app([] { return target_node_add_pg_ig_maps("disk1", {{3, 2}}); }).code(),
              Errc::not_found);
    ASSERT_TRUE(app([] { return target_node_add_pg_ig_maps("disk1", {{2, 2}, {1, 2}}); }).ok());
    EXPECT_EQ(app([] { return target_nodes(); })[0].pg_ig_maps.size(), 3u);
    EXPECT_EQ(app([] { return target_node_remove_pg_ig_maps("disk1", {{2, 2}, {2, 1}}); }).code(),
              Errc::not_found);
    EXPECT_EQ(app([] { return target_nodes(); })[0].pg_ig_maps.size(), 3u);
    ASSERT_TRUE(app([] { return target_node_remove_pg_ig_maps("disk1", {{2, 2}}); }).ok());
    EXPECT_TRUE(app([] { return delete_portal_group(2); }).ok());
    ASSERT_TRUE(app([] { return create_auth_group({4, {}}); }).ok());
    EXPECT_EQ(app([] { return target_node_set_auth("disk1", {false, false, true, 4}); }).code(),
              Errc::invalid_argument);
    ASSERT_TRUE(app([] { return target_node_set_auth("disk1", {false, true, true, 4}); }).ok());
    EXPECT_EQ(app([] { return delete_auth_group(4); }).code(), Errc::busy);
    auto lk = app([] { return lookup_target("iqn.2016-06.io.spdk:disk1", kIni, "127.0.0.1", 1); });
    EXPECT_TRUE(lk.info.auth.require_chap && lk.info.auth.mutual_chap);
    EXPECT_EQ(lk.info.auth.chap_group, 4);
    EXPECT_EQ(lk.info.alias, "Disk 1");
    EXPECT_EQ(lk.device, d1);

    // Delete: the device goes, the bdevs are free again.
    EXPECT_EQ(delete_node("nope").code(), Errc::not_found);
    ASSERT_TRUE(delete_node("iqn.2016-06.io.spdk:disk1").ok());
    EXPECT_EQ(scsi::find_device("iqn.2016-06.io.spdk:disk1"), nullptr);
    EXPECT_EQ(app([] { return target_nodes(); }).size(), 1u);
    EXPECT_TRUE(app([] { return delete_auth_group(4); }).ok());
    TargetNodeConfig again;
    again.name = "disk3";
    again.pg_ig_maps = {{1, 1}};
    again.luns = {{"M0", 0}, {"M2", 1}};
    ASSERT_TRUE(create_node(again).ok());
    EXPECT_EQ(scsi::device_id(*scsi::find_device("iqn.2016-06.io.spdk:disk3")), 0);
}

TEST_F(ConfigTest, HotRemovedLunLeavesTheListing) {
    basic();
    ASSERT_TRUE(add_lun("disk1", {"M1", 1}).ok());
    ASSERT_EQ(app([] { return target_nodes(); })[0].luns.size(), 2u);
    std::optional<Result<void>> gone;
    on(t0(), [&] { bdev::malloc_delete("M1", [&](Result<void> r) { gone = r; }); });
    ASSERT_TRUE(poll_until([&] { return gone.has_value(); }));
    ASSERT_TRUE(gone->ok()) << gone->error().message();
    auto luns = app([] { return target_nodes(); })[0].luns;
    ASSERT_EQ(luns.size(), 1u);
    EXPECT_EQ(luns[0].bdev_name, "M0");
}

TEST_F(ConfigTest, DeleteEndsSessionsThroughTheNetwork) {
    std::vector<int32_t> started, stopped;
    std::vector<std::string> ended;
    app([&] {
        internal::set_network(std::make_unique<FakeNetwork>(&started, &stopped, &ended));
        return 0;
    });
    basic();
    ASSERT_TRUE(delete_node("disk1").ok());
    EXPECT_EQ(ended, std::vector<std::string>{"iqn.2016-06.io.spdk:disk1"});
    EXPECT_EQ(scsi::find_device("iqn.2016-06.io.spdk:disk1"), nullptr);
}

TEST_F(ConfigTest, LookupAcl) {
    basic();
    auto look = [&](std::string name, std::string ini, std::string addr, int32_t pg) {
        return app([&] { return lookup_target(name, ini, addr, pg).status; });
    };
    const std::string t = "iqn.2016-06.io.spdk:disk1";
    EXPECT_EQ(look(t, kIni, "127.0.0.1", 1), login_status::success);
    EXPECT_EQ(look("IQN.2016-06.IO.SPDK:DISK1", kIni, "127.0.0.1", 1), login_status::success);
    EXPECT_EQ(look(t, "iqn.1994-05.com.redhat:CLIENT1", "127.0.0.1", 1), login_status::success);
    EXPECT_EQ(look("iqn.2016-06.io.spdk:disk9", kIni, "127.0.0.1", 1), login_status::not_found);
    EXPECT_EQ(look(t, kIni, "10.0.0.1", 1), login_status::authorization_failure);  // netmask
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:other", "127.0.0.1", 1),
              login_status::authorization_failure);  // name
    EXPECT_EQ(look(t, kIni, "127.0.0.1", 2), login_status::authorization_failure);  // pg not mapped
    EXPECT_EQ(look(t, kIni, "::ffff:127.0.0.5", 1), login_status::success);  // v4-mapped
    EXPECT_EQ(look(t, kIni, "::1", 1), login_status::authorization_failure);
    auto lk = app([&] { return lookup_target(t, kIni, "127.0.0.1", 1); });
    EXPECT_EQ(lk.info.name, t);
    EXPECT_EQ(lk.queue_depth, 64);
    ASSERT_NE(lk.device, nullptr);
    EXPECT_EQ(scsi::device_name(*lk.device), t);

    // A second group on the same portal group: "!name" in it denies before a later group can
    // allow; an allowing name with no matching netmask passes on to the next group.
    ASSERT_TRUE(app([] {
                    return create_initiator_group(
                        {2, {"!iqn.2016-06.io.spdk:evil", "ANY"}, {"[2001:db8::]/32", "::1"}});
                }).ok());
    ASSERT_TRUE(app([] { return create_initiator_group({3, {"ANY"}, {"10.0.0.0/8"}}); }).ok());
    ASSERT_TRUE(app([&] { return target_node_add_pg_ig_maps(t, {{1, 2}, {1, 3}}); }).ok());
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:evil", "10.1.2.3", 1),
              login_status::authorization_failure);
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:good", "10.1.2.3", 1), login_status::success);
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:good", "2001:db8:1::7", 1), login_status::success);
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:good", "[::1]", 1), login_status::success);
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:good", "2001:db9::7", 1),
              login_status::authorization_failure);
    EXPECT_EQ(look(t, kIni, "10.1.2.3", 1), login_status::success);  // group 1's netmask fails,
                                                                     // group 3 admits
    // Initiator group 1 allows kIni by name first: for a v6 address group 1 has no netmask,
    // group 2 allows ANY from ::1.
    EXPECT_EQ(look(t, kIni, "::1", 1), login_status::success);
    // "!ANY" denies everyone reaching it first.
    ASSERT_TRUE(app([] { return initiator_group_add_initiators({1, {"!ANY"}, {}}); }).ok());
    EXPECT_EQ(look(t, "iqn.2016-06.io.spdk:good", "10.1.2.3", 1),
              login_status::authorization_failure);
    EXPECT_EQ(look(t, kIni, "127.0.0.1", 1), login_status::success);  // named before "!ANY"
}

TEST_F(ConfigTest, SendTargets) {
    basic();
    ASSERT_TRUE(app([] {
                    return create_portal_group(
                        {2, {{"0.0.0.0", "3261"}, {"[::]", "3261"}, {"::1", "3262"}}});
                }).ok());
    ASSERT_TRUE(app([] { return create_portal_group({3, {{"127.0.0.1", "3263"}}, true}); }).ok());
    ASSERT_TRUE(app([] {
                    return target_node_add_pg_ig_maps("disk1", {{2, 1}, {3, 1}});
                }).ok());
    TargetNodeConfig n2;
    n2.name = "disk2";
    n2.pg_ig_maps = {{1, 1}};
    n2.luns = {{"M1", 0}};
    ASSERT_TRUE(create_node(n2).ok());
    ASSERT_TRUE(app([] { return create_initiator_group({2, {"iqn.2016-06.io.spdk:x"}, {"ANY"}}); })
                    .ok());
    TargetNodeConfig n3;
    n3.name = "disk3";
    n3.pg_ig_maps = {{1, 2}};  // not for kIni
    n3.luns = {{"M2", 0}};
    ASSERT_TRUE(create_node(n3).ok());

    auto st = app([] { return send_targets(kIni, "127.0.0.1", "192.0.2.1"); });
    ASSERT_EQ(st.size(), 2u);
    EXPECT_EQ(st[0].name, "iqn.2016-06.io.spdk:disk1");
    EXPECT_EQ(st[0].addresses,
              (std::vector<std::string>{"127.0.0.1:3260,1", "192.0.2.1:3261,2", "192.0.2.1:3261,2",
                                        "[::1]:3262,2"}));  // private group 3 left out
    EXPECT_EQ(st[1].name, "iqn.2016-06.io.spdk:disk2");
    EXPECT_EQ(st[1].addresses, std::vector<std::string>{"127.0.0.1:3260,1"});
    // Without the local address the wildcard stays.
    st = app([] { return send_targets(kIni, "127.0.0.1"); });
    EXPECT_EQ(st[0].addresses[1], "0.0.0.0:3261,2");
    EXPECT_EQ(st[0].addresses[2], "[::]:3261,2");
    // The ACL applies: another address sees nothing; another name sees disk3 only.
    EXPECT_TRUE(app([] { return send_targets(kIni, "10.0.0.1"); }).empty());
    st = app([] { return send_targets("iqn.2016-06.io.spdk:x", "10.0.0.1"); });
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0].name, "iqn.2016-06.io.spdk:disk3");
}

}  // namespace
}  // namespace strata::iscsi
