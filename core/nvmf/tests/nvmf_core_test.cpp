// The transport-independent NVMe-oF core, driven without sockets: a fake transport registers
// with the Target, fake qpairs on a worker Thread hand Requests to nvmf::exec(), and the test
// reads the CQEs (and data) the core completes them with. Setup goes through the nvmf_* RPCs,
// so they are tested on the way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/bdev/bdev.h>
#include <strata/nvme/spec/log_pages.h>
#include <strata/nvme/spec/spec.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/transport.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/stack/sim_apps.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "nvmf_fakes.h"

namespace strata::nvmf {
namespace {

using Json = nlohmann::json;
using namespace test;  // NOLINT(google-build-using-namespace)

// The App on a simulator (stack::testing::SimAppsTest) with a worker Thread for the fake qpairs
// and the fake transport; built in the constructor, so a derived fixture's members can use it.
class World : public stack::testing::SimAppsTest {
protected:
    World() {
        start_sim(1);
        open();
    }
    void TearDown() override {
        close_qpairs();
        SimAppsTest::TearDown();
    }
    // A new App in place of the current one (a restart: module state starts empty).
    void reopen() {
        close_qpairs();
        stop(apps.size() - 1);
        open();
    }

public:
    void open() {
        const size_t i = add_app("app");
        app = apps[i].get();
        worker = sim->create_thread("worker", 1, &app->host());
        auto t = std::make_unique<FakeTransport>();
        transport = t.get();
        runtime::HostScope scope(app->host());
        EXPECT_TRUE(add_transport(std::move(t)).ok());
    }
    void close_qpairs() {
        for (auto& q : qpairs)
            if (!q->is_closed()) on(q->thread(), [&] { q->closed(); });
        run_until([&] {
            return std::all_of(qpairs.begin(), qpairs.end(),
                               [](auto& q) { return q->is_released; });
        });
        on_worker([&] { qpairs.clear(); });
    }

    bool run_until(const std::function<bool()>& pred, uint64_t ns = 30'000'000'000ull) {
        return sim->run_until(pred, sim->now_ns() + ns);
    }
    void settle(uint64_t ns = 10'000'000) { sim->run_until([] { return false; }, sim->now_ns() + ns); }
    template <class F>
    void on(runtime::Thread& thread, F&& fn) {
        bool done = false;
        ASSERT_TRUE(thread.post([&] {
                         fn();
                         done = true;
                     }).ok());
        ASSERT_TRUE(run_until([&] { return done; }));
    }
    template <class F>
    void on_worker(F&& fn) {
        on(*worker, std::forward<F>(fn));
    }

    Json call(const std::string& method, Json params = Json::object()) {
        return SimAppsTest::call(apps.size() - 1, method, std::move(params));
    }
    Json call_error(const std::string& method, Json params) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("error")) << method << ": " << r.dump();
        return r.contains("error") ? r["error"] : Json();
    }

    FakeQpair& new_qpair(runtime::Thread* thread = nullptr) {
        qpairs.push_back(std::make_unique<FakeQpair>(*transport, thread ? *thread : *worker));
        return *qpairs.back();
    }

    // Runs one command to completion.
    void run(FakeQpair& q, Cmd& c) {
        forget(q, c);
        c.req.qpair = &q;
        on(q.thread(), [&] {
            exec(c.req);
            EXPECT_FALSE(q.done(c.req)) << "completed inside exec()";
        });
        ASSERT_TRUE(run_until([&] { return q.done(c.req); })) << "command never completed";
    }
    // A Cmd may live where an earlier, completed one lived.
    static void forget(FakeQpair& q, Cmd& c) {
        q.completed.erase(std::remove(q.completed.begin(), q.completed.end(), &c.req),
                          q.completed.end());
    }
    void start(FakeQpair& q, Cmd& c) {
        forget(q, c);
        c.req.qpair = &q;
        on(q.thread(), [&] { exec(c.req); });
    }

    static Cmd connect_cmd(uint16_t qid, uint16_t cntlid = spec::cntlid_dynamic,
                           const std::string& subnqn = kNqn, const std::string& hostnqn = kHost,
                           uint32_t kato = 0, uint16_t sqsize = 31, uint16_t recfmt = 0) {
        Cmd c(connect_sqe(qid, sqsize, kato, recfmt), spec::connect_data_bytes,
              XferDir::host_to_controller);
        spec::ConnectData d{};
        d.cntlid = cntlid;
        d.hostid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        spec::set_padded(d.subnqn, subnqn, '\0');
        spec::set_padded(d.hostnqn, hostnqn, '\0');
        std::memcpy(c.data.data(), &d, sizeof(d));
        return c;
    }
    Cmd connect(FakeQpair& q, uint16_t qid, uint16_t cntlid = spec::cntlid_dynamic,
                const std::string& subnqn = kNqn, const std::string& hostnqn = kHost,
                uint32_t kato = 0, uint16_t sqsize = 31, uint16_t recfmt = 0) {
        Cmd c = connect_cmd(qid, cntlid, subnqn, hostnqn, kato, sqsize, recfmt);
        run(q, c);
        return c;
    }
    // Connect + CC.EN = 1; returns the controller id.
    uint16_t connect_admin(FakeQpair& q, uint32_t kato = 0, const std::string& subnqn = kNqn) {
        Cmd c = connect(q, 0, spec::cntlid_dynamic, subnqn, kHost, kato);
        EXPECT_TRUE(c.sf().ok()) << int(c.sc());
        Cmd en(property_sqe(true, spec::reg::cc, 0x00460001, false));
        run(q, en);
        EXPECT_TRUE(en.sf().ok());
        return static_cast<uint16_t>(c.req.rsp.dw0 & 0xFFFF);
    }

    void setup_subsystem(uint64_t blocks = 1024) {
        call("bdev_malloc_create",
             {{"name", "Malloc0"}, {"num_blocks", blocks}, {"block_size", 512},
              {"uuid", "5a5a5a5a-0000-4000-8000-123456789abc"}});
        call("nvmf_create_subsystem", {{"nqn", kNqn}, {"serial_number", "SN0001"},
                                       {"allow_any_host", false}});
        call("nvmf_subsystem_add_host", {{"nqn", kNqn}, {"host", kHost}});
        EXPECT_EQ(call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc0"}}}}),
                  1);
    }

    strata::rpc::App* app = nullptr;
    runtime::Thread* worker = nullptr;
    FakeTransport* transport = nullptr;
    std::vector<std::unique_ptr<FakeQpair>> qpairs;
};

using NvmfRpc = World;
using NvmfFabrics = World;
using NvmfAdmin = World;

// ---- spec helpers ----------------------------------------------------------------------------

TEST(NvmfSpec, NqnValidation) {
    using spec::NqnError;
    EXPECT_EQ(spec::validate_nqn("nqn.2014-08.org.nvmexpress.discovery"), NqnError::ok);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk:cnode1"), NqnError::ok);
    EXPECT_EQ(spec::validate_nqn(kHost), NqnError::ok);
    EXPECT_EQ(spec::validate_nqn("nqn.2014-08.org.nvmexpress:uuid:1111111-2222-3333-4444-555555555555"),
              NqnError::bad_uuid);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06"), NqnError::bad_date);
    EXPECT_EQ(spec::validate_nqn("nqn.16-06.io.spdk:x"), NqnError::bad_date);
    EXPECT_EQ(spec::validate_nqn("iqn.2016-06.io.spdk:x"), NqnError::no_prefix);
    EXPECT_EQ(spec::validate_nqn("nqn.20"), NqnError::too_short);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk"), NqnError::no_user_string);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk:"), NqnError::no_user_string);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.1o.spdk:x"), NqnError::bad_domain);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io-.spdk:x"), NqnError::bad_domain);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io..spdk:x"), NqnError::bad_domain);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk-:x"), NqnError::bad_domain);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.sp-dk:x"), NqnError::ok);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06." + std::string(64, 'a') + ":x"),
              NqnError::label_too_long);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk:\xff"), NqnError::bad_utf8);
    EXPECT_EQ(spec::validate_nqn("nqn.2016-06.io.spdk:caf\xc3\xa9"), NqnError::ok);
    const std::string base = "nqn.2016-06.io.spdk:";
    EXPECT_EQ(spec::validate_nqn(base + std::string(223 - base.size(), 'x')), NqnError::ok);
    EXPECT_EQ(spec::validate_nqn(base + std::string(224 - base.size(), 'x')), NqnError::too_long);
}

TEST(NvmfSpec, FabricsLayouts) {
    spec::Sqe s = fabrics_sqe(spec::FabricsCommandType::property_get);
    EXPECT_EQ(spec::fabrics_type(s), 0x04);
    const auto bytes = std::bit_cast<std::array<uint8_t, 64>>(connect_sqe(3, 127, 5000));
    EXPECT_EQ(bytes[0], 0x7F);
    EXPECT_EQ(bytes[4], 0x01);
    EXPECT_EQ(bytes[42], 3);    // QID
    EXPECT_EQ(bytes[44], 127);  // SQSIZE
    EXPECT_EQ(bytes[48] | (bytes[49] << 8), 5000);  // KATO
    EXPECT_EQ(xfer_direction(connect_sqe(0, 31)), XferDir::host_to_controller);
    EXPECT_EQ(xfer_direction(fabrics_sqe(spec::FabricsCommandType::property_get)), XferDir::none);
    EXPECT_EQ(xfer_direction(admin_sqe(spec::AdminOpcode::identify)), XferDir::controller_to_host);
    EXPECT_EQ(xfer_direction(io_sqe(spec::NvmOpcode::write, 1, 0, 1)), XferDir::host_to_controller);
    EXPECT_EQ(spec::fabrics_status_name(0x84), "CONNECT INVALID HOST");
}

// ---- RPCs ------------------------------------------------------------------------------------

TEST_F(NvmfRpc, SubsystemLifecycleAndShapes) {
    auto& w = *this;
    w.setup_subsystem();
    Json subs = w.call("nvmf_get_subsystems");
    ASSERT_EQ(subs.size(), 2u);
    EXPECT_EQ(subs[0]["nqn"], "nqn.2014-08.org.nvmexpress.discovery");
    EXPECT_EQ(subs[0]["subtype"], "Discovery");
    const Json& s = subs[1];
    EXPECT_EQ(s["nqn"], kNqn);
    EXPECT_EQ(s["subtype"], "NVMe");
    EXPECT_EQ(s["serial_number"], "SN0001");
    EXPECT_EQ(s["allow_any_host"], false);
    EXPECT_EQ(s["hosts"][0]["nqn"], kHost);
    EXPECT_EQ(s["max_namespaces"], 32);
    EXPECT_EQ(s["min_cntlid"], 1);
    EXPECT_EQ(s["max_cntlid"], 0xFFEF);
    ASSERT_EQ(s["namespaces"].size(), 1u);
    EXPECT_EQ(s["namespaces"][0]["nsid"], 1);
    EXPECT_EQ(s["namespaces"][0]["bdev_name"], "Malloc0");
    EXPECT_EQ(s["namespaces"][0]["uuid"], "5a5a5a5a-0000-4000-8000-123456789abc");

    // The bdev is claimed: another writer cannot open it.
    {
        runtime::HostScope scope(w.app->host());
        bool refused = false;
        w.on_worker([&] { refused = !bdev::open("Malloc0", true).ok(); });
        EXPECT_TRUE(refused);
    }
    // Errors.
    w.call_error("nvmf_create_subsystem", {{"nqn", kNqn}});                         // exists
    w.call_error("nvmf_create_subsystem", {{"nqn", "nqn.2016-06.io.spdk"}});         // invalid
    w.call_error("nvmf_create_subsystem", {{"nqn", "nqn.2016-06.io.spdk:x"}, {"ana_reporting", true}});
    w.call_error("nvmf_create_subsystem", {{"nqn", "nqn.2016-06.io.spdk:x"}, {"tgt_name", "t"}});
    w.call_error("nvmf_create_subsystem",
                 {{"nqn", "nqn.2016-06.io.spdk:x"}, {"serial_number", std::string(21, '1')}});
    w.call_error("nvmf_create_subsystem",
                 {{"nqn", "nqn.2016-06.io.spdk:x"}, {"min_cntlid", 10}, {"max_cntlid", 5}});
    w.call("nvmf_create_subsystem", {{"nqn", "nqn.2016-06.io.spdk:x"}, {"ana_reporting", false}});
    w.call_error("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Nope"}}}});
    w.call_error("nvmf_subsystem_add_ns",
                 {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc0"}, {"ptpl_file", "/x"}}}});
    w.call_error("nvmf_subsystem_add_ns",
                 {{"nqn", "nqn.2016-06.io.spdk:x"}, {"namespace", {{"bdev_name", "Malloc0"}}}});
    w.call_error("nvmf_subsystem_add_host", {{"nqn", kNqn}, {"host", kHost}});
    w.call_error("nvmf_subsystem_add_host", {{"nqn", kNqn}, {"host", "bogus"}});
    w.call_error("nvmf_subsystem_remove_ns", {{"nqn", kNqn}, {"nsid", 7}});
    w.call("nvmf_subsystem_remove_host", {{"nqn", kNqn}, {"host", kHost}});
    w.call("nvmf_subsystem_allow_any_host", {{"nqn", kNqn}, {"allow_any_host", true}});
    EXPECT_EQ(w.call("nvmf_get_subsystems", {{"nqn", kNqn}})[0]["allow_any_host"], true);
    w.call("nvmf_delete_subsystem", {{"nqn", "nqn.2016-06.io.spdk:x"}});
    w.call_error("nvmf_delete_subsystem", {{"nqn", "nqn.2016-06.io.spdk:x"}});
    w.call("nvmf_subsystem_remove_ns", {{"nqn", kNqn}, {"nsid", 1}});
    EXPECT_TRUE(w.call("nvmf_get_subsystems", {{"nqn", kNqn}})[0]["namespaces"].empty());
    w.call("nvmf_delete_subsystem", {{"nqn", kNqn}});
    EXPECT_EQ(w.call("nvmf_get_subsystems").size(), 1u);
    w.call("bdev_malloc_delete", {{"name", "Malloc0"}});
}

TEST_F(NvmfRpc, ListenersCallTheTransportAndFeedDiscovery) {
    auto& w = *this;
    w.setup_subsystem();
    const Json addr = {{"trtype", "tcp"}, {"adrfam", "ipv4"}, {"traddr", "127.0.0.1"}, {"trsvcid", "4420"}};
    Json e = w.call_error("nvmf_subsystem_add_listener",
                          {{"nqn", kNqn}, {"listen_address", {{"trtype", "RDMA"}, {"traddr", "1.2.3.4"}, {"trsvcid", "1"}}}});
    EXPECT_NE(e["message"].get<std::string>().find("RDMA transport"), std::string::npos);
    w.call_error("nvmf_subsystem_add_listener",
                 {{"nqn", kNqn}, {"listen_address", {{"trtype", "tcp"}, {"traddr", "1.2.3.4"}, {"trsvcid", "1"}}}});
    w.call_error("nvmf_subsystem_add_listener", {{"nqn", kNqn}, {"listen_address", {{"traddr", "x"}}}});
    w.call_error("nvmf_subsystem_add_listener",
                 {{"nqn", kNqn}, {"listen_address", addr}, {"secure_channel", true}});
    runtime::HostScope scope(w.app->host());
    const uint64_t g0 = discovery_genctr();
    w.call("nvmf_subsystem_add_listener", {{"nqn", kNqn}, {"listen_address", addr}});
    EXPECT_GT(discovery_genctr(), g0);
    ASSERT_EQ(w.transport->listening.size(), 1u);
    EXPECT_EQ(w.transport->listening[0].traddr, "127.0.0.1");
    Json ls = w.call("nvmf_subsystem_get_listeners", {{"nqn", kNqn}});
    ASSERT_EQ(ls.size(), 1u);
    EXPECT_EQ(ls[0]["address"]["trtype"], "TCP");
    EXPECT_EQ(ls[0]["address"]["adrfam"], "IPv4");
    EXPECT_EQ(ls[0]["address"]["trsvcid"], "4420");
    Json subs = w.call("nvmf_get_subsystems", {{"nqn", kNqn}});
    EXPECT_EQ(subs[0]["listen_addresses"][0]["traddr"], "127.0.0.1");

    // Discovery log: one entry for an allowed host, none for another.
    auto page = discovery_log(kHost);
    ASSERT_EQ(page.size(), 2048u);
    spec::DiscoveryLogHeader h;
    std::memcpy(&h, page.data(), sizeof(h));
    EXPECT_EQ(h.numrec, 1u);
    EXPECT_EQ(h.genctr, discovery_genctr());
    spec::DiscoveryLogEntry ent;
    std::memcpy(&ent, page.data() + 1024, sizeof(ent));
    EXPECT_EQ(ent.trtype, 3);
    EXPECT_EQ(ent.adrfam, 1);
    EXPECT_EQ(ent.subtype, 2);
    EXPECT_EQ(ent.cntlid, 0xFFFF);
    EXPECT_EQ(spec::nqn_field(ent.subnqn), kNqn);
    EXPECT_EQ(spec::trimmed(ent.traddr), "127.0.0.1");
    EXPECT_EQ(spec::trimmed(ent.trsvcid), "4420");
    std::memcpy(&h, discovery_log(kOtherHost).data(), sizeof(h));
    EXPECT_EQ(h.numrec, 0u);

    // Save config carries the transport, subsystem, namespace, host and listener.
    Json cfg = w.app->save_config();
    std::string text = cfg.dump();
    for (const char* m : {"nvmf_create_transport", "nvmf_create_subsystem", "nvmf_subsystem_add_ns",
                          "nvmf_subsystem_add_host", "nvmf_subsystem_add_listener"})
        EXPECT_NE(text.find(m), std::string::npos) << m;

    w.call("nvmf_subsystem_remove_listener", {{"nqn", kNqn}, {"listen_address", addr}});
    EXPECT_TRUE(w.transport->listening.empty());
    w.call_error("nvmf_subsystem_remove_listener", {{"nqn", kNqn}, {"listen_address", addr}});
}

TEST_F(NvmfRpc, SavedConfigReplays) {
    Json entries;
    {
        auto& w = *this;
        w.setup_subsystem();
        w.call_error("nvmf_subsystem_add_ns",
                     {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc1x"}}}});  // no such bdev
        w.call("bdev_malloc_create", {{"name", "Malloc1"}, {"num_blocks", 64}, {"block_size", 512}});
        w.call("nvmf_subsystem_add_ns",
               {{"nqn", kNqn},
                {"namespace", {{"bdev_name", "Malloc1"}, {"nsid", 5}, {"nguid", "000102030405060708090A0B0C0D0E0F"},
                               {"eui64", "0011223344556677"}, {"uuid", "12345678-1234-4234-8234-123456789abc"}}}});
        runtime::HostScope scope(w.app->host());  // save_config outside any Thread
        const Json saved = w.app->save_config();
        for (const auto& sub : saved["subsystems"])
            if (sub["subsystem"] == "nvmf") entries = sub["config"];
    }
    ASSERT_TRUE(entries.is_array());
    reopen();
    auto& w2 = *this;
    w2.call("bdev_malloc_create", {{"name", "Malloc0"}, {"num_blocks", 1024}, {"block_size", 512}});
    w2.call("bdev_malloc_create", {{"name", "Malloc1"}, {"num_blocks", 64}, {"block_size", 512}});
    size_t n = 0;
    for (const auto& e : entries) {
        if (e["method"] == "nvmf_create_transport") continue;  // the fake transport is there
        w2.call(e["method"].get<std::string>(), e["params"]);
        ++n;
    }
    EXPECT_EQ(n, 4u);  // create_subsystem, 2 x add_ns, add_host
    Json s = w2.call("nvmf_get_subsystems", {{"nqn", kNqn}})[0];
    EXPECT_EQ(s["serial_number"], "SN0001");
    EXPECT_EQ(s["hosts"][0]["nqn"], kHost);
    ASSERT_EQ(s["namespaces"].size(), 2u);
    EXPECT_EQ(s["namespaces"][1]["nsid"], 5);
    EXPECT_EQ(s["namespaces"][1]["nguid"], "000102030405060708090A0B0C0D0E0F");
    EXPECT_EQ(s["namespaces"][1]["eui64"], "0011223344556677");
    EXPECT_EQ(s["namespaces"][1]["uuid"], "12345678-1234-4234-8234-123456789abc");
}

// ---- Fabrics -----------------------------------------------------------------------------------

TEST_F(NvmfFabrics, ConnectChecks) {
    auto& w = *this;
    w.setup_subsystem();
    FakeQpair& q = w.new_qpair();
    // Before Connect only Connect works.
    Cmd id(admin_sqe(spec::AdminOpcode::identify, 0, 1), 4096);
    w.run(q, id);
    EXPECT_EQ(id.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));

    Cmd bad_fmt = w.connect(q, 0, 0xFFFF, kNqn, kHost, 0, 31, 1);
    EXPECT_EQ(bad_fmt.sct(), 1);
    EXPECT_EQ(bad_fmt.sc(), 0x80);
    Cmd no_sub = w.connect(q, 0, 0xFFFF, "nqn.2016-06.io.spdk:nope");
    EXPECT_EQ(no_sub.sc(), 0x82);
    spec::ConnectResponseDw0 dw0{no_sub.req.rsp.dw0};
    EXPECT_EQ(dw0.iattr(), 1);
    EXPECT_EQ(dw0.ipo(), 256);
    Cmd bad_host = w.connect(q, 0, 0xFFFF, kNqn, kOtherHost);
    EXPECT_EQ(bad_host.sc(), 0x84);
    // A host without a name (SPDK's perf sends an empty host NQN unless told one) is not on
    // the allow-list; a host NQN that does not fit its field is an invalid parameter.
    Cmd nameless = w.connect(q, 0, 0xFFFF, kNqn, "");
    EXPECT_EQ(nameless.sc(), 0x84);
    Cmd overlong = w.connect(q, 0, 0xFFFF, kNqn, "nqn.2014-08.org.example:" + std::string(232, 'h'));
    EXPECT_EQ(overlong.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{overlong.req.rsp.dw0}.ipo(), 512);
    Cmd sq0 = w.connect(q, 0, 0xFFFF, kNqn, kHost, 0, 0);
    EXPECT_EQ(sq0.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{sq0.req.rsp.dw0}.ipo(), 44);
    Cmd bigsq = w.connect(q, 0, 0xFFFF, kNqn, kHost, 0, 1000);
    EXPECT_EQ(bigsq.sc(), 0x82);
    Cmd static_id = w.connect(q, 0, 5);
    EXPECT_EQ(static_id.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{static_id.req.rsp.dw0}.ipo(), 16);
    // A short data buffer.
    Cmd short_data(connect_sqe(0, 31), 100, XferDir::host_to_controller);
    w.run(q, short_data);
    EXPECT_EQ(short_data.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));

    Cmd ok = w.connect(q, 0);
    ASSERT_TRUE(ok.sf().ok());
    const uint16_t cntlid = ok.req.rsp.dw0 & 0xFFFF;
    EXPECT_EQ(cntlid, 1);
    EXPECT_EQ(q.qid(), 0);
    EXPECT_EQ(q.sq_size(), 32);
    EXPECT_TRUE(q.connected());
    Cmd again = w.connect(q, 0);
    EXPECT_EQ(again.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));

    // Admin commands need CC.EN first.
    Cmd id2(admin_sqe(spec::AdminOpcode::identify, 0, 1), 4096);
    w.run(q, id2);
    EXPECT_EQ(id2.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));

    // I/O queue checks: before enable, wrong cntlid, wrong host, qid range.
    FakeQpair& io = w.new_qpair();
    Cmd early = w.connect(io, 1, cntlid);
    EXPECT_EQ(early.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));
    Cmd en(property_sqe(true, spec::reg::cc, 0x00460001, false));
    w.run(q, en);
    ASSERT_TRUE(en.sf().ok());
    Cmd wrong_id = w.connect(io, 1, static_cast<uint16_t>(cntlid + 1));
    EXPECT_EQ(wrong_id.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{wrong_id.req.rsp.dw0}.ipo(), 16);
    w.call("nvmf_subsystem_add_host", {{"nqn", kNqn}, {"host", kOtherHost}});
    Cmd wrong_host = w.connect(io, 1, cntlid, kNqn, kOtherHost);
    EXPECT_EQ(wrong_host.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{wrong_host.req.rsp.dw0}.ipo(), 512);
    Cmd big_qid = w.connect(io, 500, cntlid);
    EXPECT_EQ(big_qid.sc(), 0x82);
    EXPECT_EQ(spec::ConnectResponseDw0{big_qid.req.rsp.dw0}.ipo(), 42);
    Cmd io_ok = w.connect(io, 1, cntlid);
    ASSERT_TRUE(io_ok.sf().ok());
    EXPECT_EQ(io.qid(), 1);
    FakeQpair& dup = w.new_qpair();
    Cmd dup_qid = w.connect(dup, 1, cntlid);
    EXPECT_EQ(dup_qid.sc(), 0x82);

    Json ctrlrs = w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}});
    ASSERT_EQ(ctrlrs.size(), 1u);
    EXPECT_EQ(ctrlrs[0]["cntlid"], cntlid);
    EXPECT_EQ(ctrlrs[0]["hostnqn"], kHost);
    EXPECT_EQ(ctrlrs[0]["hostid"], "01020304-0506-0708-090a-0b0c0d0e0f10");
    EXPECT_EQ(ctrlrs[0]["num_io_qpairs"], 1);
    EXPECT_EQ(w.call("nvmf_subsystem_get_qpairs", {{"nqn", kNqn}}).size(), 2u);
    Json st = w.call("nvmf_get_stats");
    EXPECT_EQ(st["poll_groups"][0]["current_admin_qpairs"], 1);
    EXPECT_EQ(st["poll_groups"][0]["current_io_qpairs"], 1);

    // A second controller gets another id.
    FakeQpair& q2 = w.new_qpair();
    EXPECT_EQ(w.connect_admin(q2), cntlid + 1);

    // Disconnect on the I/O queue: completed, then the transport is asked to disconnect.
    Cmd disc(fabrics_sqe(spec::FabricsCommandType::disconnect));
    w.run(io, disc);
    EXPECT_TRUE(disc.sf().ok());
    EXPECT_TRUE(w.run_until([&] { return io.disconnects == 1 && io.is_released; }));
    EXPECT_TRUE(w.run_until([&] {
        return w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}})[0]["num_io_qpairs"] == 0;
    }));

    // Where any host may connect, so may one without a name (as SPDK's target allows).
    w.call("nvmf_subsystem_allow_any_host", {{"nqn", kNqn}, {"allow_any_host", true}});
    FakeQpair& q3 = w.new_qpair();
    Cmd nameless_any = w.connect(q3, 0, 0xFFFF, kNqn, "");
    EXPECT_TRUE(nameless_any.sf().ok()) << int(nameless_any.sc());
}

TEST_F(NvmfFabrics, DiscoveryController) {
    auto& w = *this;
    w.setup_subsystem();
    const Json addr = {{"trtype", "TCP"}, {"adrfam", "IPv4"}, {"traddr", "10.0.0.1"}, {"trsvcid", "4420"}};
    w.call("nvmf_subsystem_add_listener", {{"nqn", kNqn}, {"listen_address", addr}});
    w.call("nvmf_subsystem_add_listener",
           {{"nqn", "nqn.2014-08.org.nvmexpress.discovery"}, {"listen_address", addr}});
    FakeQpair& q = w.new_qpair();
    w.connect_admin(q, 0, std::string(spec::discovery_nqn));
    Cmd id(admin_sqe(spec::AdminOpcode::identify, 0, 1), 4096);
    w.run(q, id);
    spec::IdentifyController ic;
    std::memcpy(&ic, id.data.data(), sizeof(ic));
    EXPECT_EQ(ic.cntrltype, 2u);
    EXPECT_EQ(ic.nn, 0u);
    EXPECT_EQ(spec::nqn_field(ic.subnqn), spec::discovery_nqn);
    // The header first (as hosts do), then the entries from offset 1024.
    Cmd hdr(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x70 | (255u << 16)), 1024);
    w.run(q, hdr);
    ASSERT_TRUE(hdr.sf().ok());
    spec::DiscoveryLogHeader h;
    std::memcpy(&h, hdr.data.data(), sizeof(h));
    EXPECT_EQ(h.numrec, 2u);
    Cmd ents(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x70 | (511u << 16)), 2048);
    ents.req.cmd.cdw12 = 1024;
    w.run(q, ents);
    ASSERT_TRUE(ents.sf().ok());
    spec::DiscoveryLogEntry e0, e1;
    std::memcpy(&e0, ents.data.data(), sizeof(e0));
    std::memcpy(&e1, ents.data.data() + 1024, sizeof(e1));
    EXPECT_EQ(e0.subtype, 3);  // the discovery subsystem itself
    EXPECT_EQ(e1.subtype, 2);
    EXPECT_EQ(spec::nqn_field(e1.subnqn), kNqn);
    EXPECT_EQ(spec::trimmed(e1.traddr), "10.0.0.1");
    // Other log pages and I/O queues are refused on a discovery controller.
    Cmd smart(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x02 | (127u << 16)), 512);
    w.run(q, smart);
    EXPECT_FALSE(smart.sf().ok());
    Cmd unaligned(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x70 | (255u << 16)), 1024);
    unaligned.req.cmd.cdw12 = 2;
    w.run(q, unaligned);
    EXPECT_EQ(unaligned.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));
    FakeQpair& io = w.new_qpair();
    EXPECT_EQ(w.connect(io, 1, 1, std::string(spec::discovery_nqn)).sc(), 0x82);
}

TEST_F(NvmfFabrics, PropertiesAndControllerState) {
    auto& w = *this;
    w.setup_subsystem();
    FakeQpair& q = w.new_qpair();
    ASSERT_TRUE(w.connect(q, 0).sf().ok());
    Cmd cap(property_sqe(false, spec::reg::cap, 0, true));
    w.run(q, cap);
    ASSERT_TRUE(cap.sf().ok());
    spec::Cap c{uint64_t{cap.req.rsp.dw0} | (uint64_t{cap.req.rsp.dw1} << 32)};
    EXPECT_EQ(c.mqes(), 127u);
    EXPECT_EQ(c.css() & 1, 1u);
    Cmd cap4(property_sqe(false, spec::reg::cap, 0, false));
    w.run(q, cap4);
    EXPECT_EQ(cap4.sc(), 0x82);
    Cmd vs(property_sqe(false, spec::reg::vs, 0, false));
    w.run(q, vs);
    EXPECT_EQ(vs.req.rsp.dw0, 0x00010400u);
    Cmd bad(property_sqe(false, 0x999, 0, false));
    w.run(q, bad);
    EXPECT_EQ(bad.sc(), 0x82);
    Cmd setvs(property_sqe(true, spec::reg::vs, 1, false));
    w.run(q, setvs);
    EXPECT_EQ(setvs.sc(), 0x82);

    auto csts = [&] {
        Cmd g(property_sqe(false, spec::reg::csts, 0, false));
        w.run(q, g);
        return spec::Csts{g.req.rsp.dw0};
    };
    EXPECT_EQ(csts().rdy(), 0u);
    Cmd en(property_sqe(true, spec::reg::cc, 0x00460001, false));
    w.run(q, en);
    EXPECT_EQ(csts().rdy(), 1u);
    Cmd cc(property_sqe(false, spec::reg::cc, 0, false));
    w.run(q, cc);
    EXPECT_EQ(cc.req.rsp.dw0, 0x00460001u);
    Cmd shn(property_sqe(true, spec::reg::cc, 0x00464001, false));  // SHN = 01b
    w.run(q, shn);
    EXPECT_EQ(csts().shst(), 2u);
    Cmd off(property_sqe(true, spec::reg::cc, 0x00460000, false));
    w.run(q, off);
    EXPECT_EQ(csts().rdy(), 0u);
    // Invalid CC values fail the controller.
    Cmd badcc(property_sqe(true, spec::reg::cc, 0x00000001, false));
    w.run(q, badcc);
    EXPECT_EQ(csts().cfs(), 1u);
    // Authentication commands are not supported.
    Cmd auth(fabrics_sqe(spec::FabricsCommandType::auth_send));
    w.run(q, auth);
    EXPECT_EQ(auth.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));
}

// ---- Admin -------------------------------------------------------------------------------------

TEST_F(NvmfAdmin, IdentifyLogPagesFeatures) {
    auto& w = *this;
    w.setup_subsystem(2048);
    FakeQpair& q = w.new_qpair();
    const uint16_t cntlid = w.connect_admin(q, 10000);

    Cmd idc(admin_sqe(spec::AdminOpcode::identify, 0, 1), 4096);
    w.run(q, idc);
    ASSERT_TRUE(idc.sf().ok());
    spec::IdentifyController ic;
    std::memcpy(&ic, idc.data.data(), sizeof(ic));
    EXPECT_EQ(ic.cntlid, cntlid);
    EXPECT_EQ(spec::trimmed(ic.sn), "SN0001");
    EXPECT_EQ(spec::trimmed(ic.mn), "Strata bdev Controller");
    EXPECT_EQ(spec::nqn_field(ic.subnqn), kNqn);
    EXPECT_EQ(ic.ioccsz, (64u + 4096u) / 16u);
    EXPECT_EQ(ic.iorcsz, 1u);
    EXPECT_EQ(ic.icdoff, 0u);
    EXPECT_EQ(ic.msdbd, 1u);
    EXPECT_EQ(ic.kas, 10u);
    EXPECT_EQ(ic.nn, 32u);
    EXPECT_EQ(ic.cntrltype, 1u);
    EXPECT_EQ(ic.fuses, 1u);
    EXPECT_EQ(ic.oncs & 0xD, 0xDu);
    EXPECT_EQ(ic.sgls & 0x3, 1u);
    EXPECT_EQ(ic.mdts, 5u);  // 128 KiB = 4 KiB << 5

    Cmd idn(admin_sqe(spec::AdminOpcode::identify, 1, 0), 4096);
    w.run(q, idn);
    spec::IdentifyNamespace in;
    std::memcpy(&in, idn.data.data(), sizeof(in));
    EXPECT_EQ(in.nsze, 2048u);
    EXPECT_EQ(in.lbaf[0].lbads, 9u);
    Cmd idn_inactive(admin_sqe(spec::AdminOpcode::identify, 5, 0), 4096);
    w.run(q, idn_inactive);
    EXPECT_TRUE(idn_inactive.sf().ok());
    EXPECT_TRUE(std::all_of(idn_inactive.data.begin(), idn_inactive.data.end(), [](uint8_t b) { return b == 0; }));
    Cmd idn_bad(admin_sqe(spec::AdminOpcode::identify, 33, 0), 4096);
    w.run(q, idn_bad);
    EXPECT_EQ(idn_bad.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));

    Cmd list(admin_sqe(spec::AdminOpcode::identify, 0, 2), 4096);
    w.run(q, list);
    spec::NsList nl;
    std::memcpy(&nl, list.data.data(), sizeof(nl));
    EXPECT_EQ(nl.nsid[0], 1u);
    EXPECT_EQ(nl.nsid[1], 0u);

    Cmd desc(admin_sqe(spec::AdminOpcode::identify, 1, 3), 4096);
    w.run(q, desc);
    ASSERT_TRUE(desc.sf().ok());
    EXPECT_EQ(desc.data[0], static_cast<uint8_t>(spec::NidType::uuid));
    EXPECT_EQ(desc.data[1], 16);
    const std::array<uint8_t, 4> uuid_head{0x5a, 0x5a, 0x5a, 0x5a};
    EXPECT_TRUE(std::equal(uuid_head.begin(), uuid_head.end(), desc.data.begin() + 4));
    EXPECT_EQ(desc.data[15 + 4], 0xbc);

    Cmd badcns(admin_sqe(spec::AdminOpcode::identify, 0, 0x13), 4096);
    w.run(q, badcns);
    EXPECT_EQ(badcns.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));

    // Log pages.
    Cmd smart(admin_sqe(spec::AdminOpcode::get_log_page, spec::nsid_all, 0x02 | (127u << 16)), 512);
    w.run(q, smart);
    EXPECT_TRUE(smart.sf().ok());
    Cmd err(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x01 | (15u << 16)), 64);
    w.run(q, err);
    EXPECT_TRUE(err.sf().ok());
    Cmd nolog(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x70 | (255u << 16)), 1024);
    w.run(q, nolog);
    EXPECT_EQ(nolog.sct(), 1);
    EXPECT_EQ(nolog.sc(), 0x09);
    Cmd toolong(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x02 | (1023u << 16)), 512);
    w.run(q, toolong);
    EXPECT_FALSE(toolong.sf().ok());

    // Features.
    Cmd nq(admin_sqe(spec::AdminOpcode::set_features, 0, 0x07, (3u << 16) | 3u));
    w.run(q, nq);
    EXPECT_TRUE(nq.sf().ok());
    Cmd gnq(admin_sqe(spec::AdminOpcode::get_features, 0, 0x07));
    w.run(q, gnq);
    EXPECT_EQ(gnq.req.rsp.dw0 & 0xFFFF, 3u);  // 4 queues granted, 0's based
    Cmd ka(admin_sqe(spec::AdminOpcode::get_features, 0, 0x0F));
    w.run(q, ka);
    EXPECT_EQ(ka.req.rsp.dw0, 10000u);
    Cmd vwc(admin_sqe(spec::AdminOpcode::set_features, 0, 0x06, 1));
    w.run(q, vwc);
    Cmd gvwc(admin_sqe(spec::AdminOpcode::get_features, 0, 0x06));
    w.run(q, gvwc);
    EXPECT_EQ(gvwc.req.rsp.dw0, 1u);
    Cmd badf(admin_sqe(spec::AdminOpcode::get_features, 0, 0x55));
    w.run(q, badf);
    EXPECT_EQ(badf.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));
    Cmd badop(admin_sqe(spec::AdminOpcode::format_nvm));
    w.run(q, badop);
    EXPECT_EQ(badop.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_opcode));

    // The I/O queue count granted limits I/O connects.
    FakeQpair& io = w.new_qpair();
    EXPECT_EQ(w.connect(io, 5, cntlid).sc(), 0x82);
    EXPECT_TRUE(w.connect(io, 4, cntlid).sf().ok());
    Cmd nq2(admin_sqe(spec::AdminOpcode::set_features, 0, 0x07, 0));
    w.run(q, nq2);
    EXPECT_EQ(nq2.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));
}

TEST_F(NvmfAdmin, AsyncEventsOnNamespaceChanges) {
    auto& w = *this;
    w.setup_subsystem();
    w.call("bdev_malloc_create", {{"name", "Malloc1"}, {"num_blocks", 64}, {"block_size", 4096}});
    FakeQpair& q = w.new_qpair();
    w.connect_admin(q);
    Cmd aec(admin_sqe(spec::AdminOpcode::set_features, 0, 0x0B, 1u << 8));
    w.run(q, aec);
    std::vector<std::unique_ptr<Cmd>> aers;
    for (int i = 0; i < 5; ++i) {
        aers.push_back(std::make_unique<Cmd>(admin_sqe(spec::AdminOpcode::async_event_request)));
        aers.back()->req.cmd.cid = static_cast<uint16_t>(100 + i);
        w.start(q, *aers.back());
    }
    w.settle();
    // The fifth exceeds the limit (AERL + 1 = 4).
    ASSERT_TRUE(q.done(aers[4]->req));
    EXPECT_EQ(aers[4]->sct(), 1);
    EXPECT_EQ(aers[4]->sc(), 0x05);
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(q.done(aers[i]->req));

    EXPECT_EQ(w.call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc1"}, {"nsid", 7}}}}), 7);
    ASSERT_TRUE(w.run_until([&] { return q.done(aers[0]->req); }));
    EXPECT_TRUE(aers[0]->sf().ok());
    EXPECT_EQ(aers[0]->req.rsp.dw0, 0x00040002u);  // notice, ns attribute changed, log 04h
    // Masked until the log is read: a removal sends nothing yet.
    w.call("nvmf_subsystem_remove_ns", {{"nqn", kNqn}, {"nsid", 7}});
    w.settle();
    EXPECT_FALSE(q.done(aers[1]->req));
    Cmd log(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x04 | (1023u << 16)), 4096);
    w.run(q, log);
    uint32_t ids[2];
    std::memcpy(ids, log.data.data(), 8);
    EXPECT_EQ(ids[0], 7u);
    EXPECT_EQ(ids[1], 0u);
    // Unmasked: the next change is reported.
    w.call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc1"}}}});
    ASSERT_TRUE(w.run_until([&] { return q.done(aers[1]->req); }));

    // Abort an outstanding AER by its CID.
    Cmd ab(admin_sqe(spec::AdminOpcode::abort, 0, (102u << 16) | 0u));
    w.run(q, ab);
    EXPECT_EQ(ab.req.rsp.dw0, 0u);
    ASSERT_TRUE(q.done(aers[2]->req));
    EXPECT_EQ(aers[2]->sc(), static_cast<uint8_t>(spec::GenericStatus::abort_requested));
    Cmd ab2(admin_sqe(spec::AdminOpcode::abort, 0, (999u << 16) | 0u));
    w.run(q, ab2);
    EXPECT_EQ(ab2.req.rsp.dw0, 1u);

    // Closing the admin queue completes the last AER.
    w.on_worker([&] { q.closed(); });
    ASSERT_TRUE(w.run_until([&] { return q.done(aers[3]->req) && q.is_released; }));
    EXPECT_EQ(aers[3]->sc(), static_cast<uint8_t>(spec::GenericStatus::aborted_sq_deletion));
    EXPECT_TRUE(w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}}).empty());
}

TEST_F(NvmfAdmin, ResizedNamespaceRaisesAnEventAndGrows) {
    auto& w = *this;
    w.call("bdev_malloc_create", {{"name", "Base"}, {"num_blocks", 32768}, {"block_size", 512}});
    w.call("bdev_lvol_create_lvstore", {{"bdev_name", "Base"}, {"lvs_name", "lvs"}, {"cluster_sz", 1048576}});
    w.call("bdev_lvol_create", {{"lvol_name", "vol"}, {"size_in_mib", 2}, {"lvs_name", "lvs"}});
    w.call("nvmf_create_subsystem", {{"nqn", kNqn}, {"allow_any_host", true}});
    EXPECT_EQ(w.call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "lvs/vol"}}}}), 1);
    FakeQpair& q = w.new_qpair();
    const uint16_t cntlid = w.connect_admin(q);
    FakeQpair& io = w.new_qpair();
    ASSERT_TRUE(w.connect(io, 1, cntlid).sf().ok());
    Cmd aec(admin_sqe(spec::AdminOpcode::set_features, 0, 0x0B, 1u << 8));
    w.run(q, aec);
    Cmd aer(admin_sqe(spec::AdminOpcode::async_event_request));
    w.start(q, aer);
    Cmd beyond(io_sqe(spec::NvmOpcode::write, 1, 4096, 1), 512);
    w.run(io, beyond);
    EXPECT_EQ(beyond.sc(), static_cast<uint8_t>(spec::GenericStatus::lba_out_of_range));

    w.call("bdev_lvol_resize", {{"name", "lvs/vol"}, {"size_in_mib", 4}});
    ASSERT_TRUE(w.run_until([&] { return q.done(aer.req); }));
    EXPECT_EQ(aer.req.rsp.dw0, 0x00040002u);
    Cmd idn(admin_sqe(spec::AdminOpcode::identify, 1, 0), 4096);
    w.run(q, idn);
    spec::IdentifyNamespace in;
    std::memcpy(&in, idn.data.data(), sizeof(in));
    EXPECT_EQ(in.nsze, 8192u);
    w.settle();
    Cmd now_in(io_sqe(spec::NvmOpcode::write, 1, 4096, 1), 512);
    w.run(io, now_in);
    EXPECT_TRUE(now_in.sf().ok());
}

TEST_F(NvmfAdmin, KeepAliveTimeoutTearsTheControllerDown) {
    auto& w = *this;
    w.setup_subsystem();
    FakeQpair& q = w.new_qpair();
    const uint16_t cntlid = w.connect_admin(q, 2000);
    FakeQpair& io = w.new_qpair();
    ASSERT_TRUE(w.connect(io, 1, cntlid).sf().ok());
    // Keep-alives every second keep it alive.
    for (int i = 0; i < 6; ++i) {
        w.settle(1'000'000'000);
        Cmd ka(admin_sqe(spec::AdminOpcode::keep_alive));
        w.run(q, ka);
        ASSERT_TRUE(ka.sf().ok());
    }
    EXPECT_EQ(q.disconnects, 0);
    EXPECT_EQ(io.disconnects, 0);
    // Silence for longer than KATO: both queues are disconnected.
    w.settle(3'500'000'000ull);
    EXPECT_EQ(q.disconnects, 1);
    EXPECT_EQ(io.disconnects, 1);
    EXPECT_TRUE(w.run_until([&] { return q.is_released && io.is_released; }));
    EXPECT_TRUE(w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}}).empty());
}

// ---- I/O ---------------------------------------------------------------------------------------

class NvmfIo : public World {
protected:
    void SetUp() override {
        w.setup_subsystem(1024);
        cntlid = w.connect_admin(admin);
        ASSERT_TRUE(w.connect(io, 1, cntlid).sf().ok());
    }
    Cmd write(uint64_t slba, uint32_t nlb, uint8_t fill, uint32_t nsid = 1) {
        Cmd c(io_sqe(spec::NvmOpcode::write, nsid, slba, nlb), nlb * 512u);
        std::fill(c.data.begin(), c.data.end(), fill);
        w.run(io, c);
        return c;
    }
    Cmd read(uint64_t slba, uint32_t nlb, uint32_t nsid = 1) {
        Cmd c(io_sqe(spec::NvmOpcode::read, nsid, slba, nlb), nlb * 512u);
        w.run(io, c);
        return c;
    }
    NvmfIo& w = *this;
    FakeQpair& admin = w.new_qpair();
    FakeQpair& io = w.new_qpair();
    uint16_t cntlid = 0;
};

TEST_F(NvmfIo, ReadWriteAndStatuses) {
    ASSERT_TRUE(write(10, 4, 0xAB).sf().ok());
    Cmd r = read(10, 4);
    ASSERT_TRUE(r.sf().ok());
    EXPECT_TRUE(std::all_of(r.data.begin(), r.data.end(), [](uint8_t b) { return b == 0xAB; }));
    EXPECT_EQ(r.req.rsp.sqid, 1);

    // Scattered buffers: the Request's iovecs go to the bdev as they are.
    Cmd sg(io_sqe(spec::NvmOpcode::read, 1, 10, 2), 1024);
    sg.req.iov[0] = {sg.data.data(), 100};
    sg.req.iov[1] = {sg.data.data() + 100, 924};
    sg.req.iovcnt = 2;
    w.run(io, sg);
    EXPECT_TRUE(sg.sf().ok());
    EXPECT_EQ(sg.data[500], 0xAB);

    EXPECT_EQ(read(1020, 8).sc(), static_cast<uint8_t>(spec::GenericStatus::lba_out_of_range));
    EXPECT_EQ(read(~0ull - 1, 4).sc(), static_cast<uint8_t>(spec::GenericStatus::lba_out_of_range));
    EXPECT_EQ(read(0, 1, 2).sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    EXPECT_EQ(read(0, 1, 0).sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    EXPECT_TRUE(read(0, 1).req.rsp.sf().dnr() == 0);
    Cmd shortbuf(io_sqe(spec::NvmOpcode::read, 1, 0, 4), 512);
    w.run(io, shortbuf);
    EXPECT_EQ(shortbuf.sc(), static_cast<uint8_t>(spec::GenericStatus::data_sgl_length_invalid));
    Cmd bad(io_sqe(spec::NvmOpcode::verify, 1, 0, 1));
    w.run(io, bad);
    EXPECT_EQ(bad.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_opcode));
    EXPECT_TRUE(bad.sf().dnr());

    Cmd fl(io_sqe(spec::NvmOpcode::flush, 1, 0, 1));
    w.run(io, fl);
    EXPECT_TRUE(fl.sf().ok());

    Cmd wz(io_sqe(spec::NvmOpcode::write_zeroes, 1, 11, 2));
    w.run(io, wz);
    EXPECT_TRUE(wz.sf().ok());
    Cmd r2 = read(10, 4);
    EXPECT_EQ(r2.data[0], 0xAB);
    EXPECT_EQ(r2.data[512], 0);
    EXPECT_EQ(r2.data[1024 + 511], 0);
    EXPECT_EQ(r2.data[1536], 0xAB);

    // Dataset Management: deallocate two ranges (malloc unmaps to zeroes).
    ASSERT_TRUE(write(100, 8, 0x11).sf().ok());
    Cmd dsm(io_sqe(spec::NvmOpcode::dataset_management, 1, 0, 1), 2 * 16);
    dsm.req.cmd.cdw10 = 1;        // 2 ranges
    dsm.req.cmd.cdw11 = 1u << 2;  // AD
    const spec::DsmRange ranges[2] = {{0, 2, 100}, {0, 1, 105}};
    std::memcpy(dsm.data.data(), ranges, sizeof(ranges));
    w.run(io, dsm);
    EXPECT_TRUE(dsm.sf().ok());
    Cmd r3 = read(100, 8);
    EXPECT_EQ(r3.data[0], 0);
    EXPECT_EQ(r3.data[2 * 512], 0x11);
    EXPECT_EQ(r3.data[5 * 512], 0);
    EXPECT_EQ(r3.data[6 * 512], 0x11);
    const spec::DsmRange out_of_range{0, 10, 1020};
    Cmd dsm_bad(io_sqe(spec::NvmOpcode::dataset_management, 1, 0, 1), 16);
    dsm_bad.req.cmd.cdw11 = 1u << 2;
    std::memcpy(dsm_bad.data.data(), &out_of_range, 16);
    w.run(io, dsm_bad);
    EXPECT_EQ(dsm_bad.sc(), static_cast<uint8_t>(spec::GenericStatus::lba_out_of_range));

    EXPECT_EQ(io.stats().io_commands + io.stats().admin_commands, io.stats().commands);
    EXPECT_EQ(io.stats().admin_commands, 1u);  // the Connect
    EXPECT_GT(io.stats().bytes_read, 0u);
    EXPECT_GT(io.stats().errors, 0u);
}

TEST_F(NvmfIo, CompareAndFusedCompareAndWrite) {
    ASSERT_TRUE(write(0, 2, 0x5A).sf().ok());
    Cmd cmp(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024);
    std::fill(cmp.data.begin(), cmp.data.end(), 0x5A);
    w.run(io, cmp);
    EXPECT_TRUE(cmp.sf().ok());
    Cmd miss(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024);
    w.run(io, miss);
    EXPECT_EQ(miss.sct(), 2);
    EXPECT_EQ(miss.sc(), 0x85);

    auto fused = [&](uint8_t expect, uint8_t value, Cmd& first, Cmd& second) {
        first.req.cmd.set_fuse(spec::Fuse::first);
        std::fill(first.data.begin(), first.data.end(), expect);
        second.req.cmd.set_fuse(spec::Fuse::second);
        std::fill(second.data.begin(), second.data.end(), value);
        w.start(io, first);
        w.start(io, second);
        ASSERT_TRUE(w.run_until([&] { return io.done(first.req) && io.done(second.req); }));
    };
    Cmd f1(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024), s1(io_sqe(spec::NvmOpcode::write, 1, 0, 2), 1024);
    fused(0x5A, 0x77, f1, s1);
    EXPECT_TRUE(f1.sf().ok());
    EXPECT_TRUE(s1.sf().ok());
    EXPECT_EQ(read(0, 2).data[0], 0x77);
    Cmd f2(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024), s2(io_sqe(spec::NvmOpcode::write, 1, 0, 2), 1024);
    fused(0x5A, 0x99, f2, s2);  // miscompare: nothing written
    EXPECT_EQ(f2.sct(), 2);
    EXPECT_EQ(f2.sc(), 0x85);
    EXPECT_EQ(s2.sc(), static_cast<uint8_t>(spec::GenericStatus::aborted_failed_fused));
    EXPECT_EQ(read(0, 2).data[0], 0x77);

    // A first half followed by an unfused command: aborted (missing fused).
    Cmd lone(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024);
    lone.req.cmd.set_fuse(spec::Fuse::first);
    w.start(io, lone);
    Cmd after = read(0, 1);
    EXPECT_TRUE(after.sf().ok());
    ASSERT_TRUE(io.done(lone.req));
    EXPECT_EQ(lone.sc(), static_cast<uint8_t>(spec::GenericStatus::aborted_missing_fused));
    // A second half alone.
    Cmd orphan(io_sqe(spec::NvmOpcode::write, 1, 0, 1), 512);
    orphan.req.cmd.set_fuse(spec::Fuse::second);
    w.run(io, orphan);
    EXPECT_EQ(orphan.sc(), static_cast<uint8_t>(spec::GenericStatus::aborted_missing_fused));
    // Mismatched ranges.
    Cmd f3(io_sqe(spec::NvmOpcode::compare, 1, 0, 2), 1024), s3(io_sqe(spec::NvmOpcode::write, 1, 2, 2), 1024);
    fused(0x77, 0x01, f3, s3);
    EXPECT_EQ(f3.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));
    EXPECT_EQ(s3.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_field));
}

TEST_F(NvmfIo, NamespaceHotRemoveAndSubsystemDelete) {
    ASSERT_TRUE(write(0, 1, 1).sf().ok());
    // I/O in flight while the namespace goes: it completes, then the namespace is gone.
    Cmd inflight(io_sqe(spec::NvmOpcode::read, 1, 0, 1), 512);
    w.start(io, inflight);
    bool removed = false;
    ASSERT_TRUE(w.app->thread()
                    .post([&] {
                        remove_namespace(kNqn, 1, [&](Result<void> r) {
                            EXPECT_TRUE(r.ok());
                            removed = true;
                        });
                    })
                    .ok());
    ASSERT_TRUE(w.run_until([&] { return removed && io.done(inflight.req); }));
    EXPECT_EQ(read(0, 1).sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    // Re-added: visible to the connected queue at once.
    w.call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc0"}, {"nsid", 1}}}});
    w.settle();
    EXPECT_TRUE(read(0, 1).sf().ok());
    // Hot-removing the bdev itself removes the namespace.
    w.call("bdev_malloc_delete", {{"name", "Malloc0"}});
    w.settle();
    EXPECT_TRUE(w.call("nvmf_get_subsystems", {{"nqn", kNqn}})[0]["namespaces"].empty());
    EXPECT_EQ(read(0, 1).sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    // Deleting the subsystem disconnects its queues.
    w.call("nvmf_delete_subsystem", {{"nqn", kNqn}});
    EXPECT_EQ(admin.disconnects, 1);
    EXPECT_EQ(io.disconnects, 1);
    EXPECT_TRUE(admin.is_released && io.is_released);
}

TEST_F(NvmfIo, IoQueueOutlivingItsAdminQueueStillFollowsTheSubsystem) {
    io.slow_disconnect = true;
    w.on_worker([&] { admin.closed(); });
    ASSERT_TRUE(w.run_until([&] { return io.disconnects == 1; }));
    EXPECT_TRUE(w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}}).empty());
    // The I/O queue is still there: a namespace removal reaches it.
    w.call("nvmf_subsystem_remove_ns", {{"nqn", kNqn}, {"nsid", 1}});
    EXPECT_EQ(read(0, 1).sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    // Deleting the subsystem waits for it.
    bool deleted = false;
    ASSERT_TRUE(w.app->thread()
                    .post([&] { delete_subsystem(kNqn, [&](Result<void>) { deleted = true; }); })
                    .ok());
    w.settle(50'000'000);
    EXPECT_FALSE(deleted);
    w.on_worker([&] { io.closed(); });
    ASSERT_TRUE(w.run_until([&] { return deleted && io.is_released; }));
}

TEST_F(NvmfIo, ClosedQpairFailsNewCommandsAndDrainsInFlight) {
    Cmd inflight(io_sqe(spec::NvmOpcode::write, 1, 0, 1), 512);
    w.start(io, inflight);
    w.on_worker([&] { io.closed(); });
    EXPECT_FALSE(io.is_released);
    ASSERT_TRUE(w.run_until([&] { return io.done(inflight.req) && io.is_released; }));
    EXPECT_TRUE(inflight.sf().ok());
    Cmd late = read(0, 1);
    EXPECT_EQ(late.sc(), static_cast<uint8_t>(spec::GenericStatus::aborted_sq_deletion));
}


// ---- Connect handover, error log, SMART, statistics ------------------------------------------

// The Target's Thread hands the queue id and namespace view to the qpair's Thread with the
// Connect completion: a command the host sends before that completion is not mistaken for an
// admin command (a Read's opcode is Get Log Page's), and a queue closed while its Connect is
// still on the Target's Thread leaves nothing behind.
TEST_F(NvmfFabrics, IoQueueCommandsBeforeItsConnectCompletes) {
    auto& w = *this;
    w.setup_subsystem();
    FakeQpair& admin = w.new_qpair();
    const uint16_t cntlid = w.connect_admin(admin);
    FakeQpair& io = w.new_qpair();
    Cmd c = World::connect_cmd(1, cntlid);
    Cmd early(io_sqe(spec::NvmOpcode::read, 1, 0, 1), 512);
    w.on_worker([&] {
        c.req.qpair = &io;
        exec(c.req);
        early.req.qpair = &io;
        exec(early.req);
    });
    ASSERT_TRUE(w.run_until([&] { return io.done(c.req) && io.done(early.req); }));
    EXPECT_TRUE(c.sf().ok());
    EXPECT_EQ(early.sct(), 0);
    EXPECT_EQ(early.sc(), static_cast<uint8_t>(spec::GenericStatus::command_sequence_error));
    EXPECT_EQ(io.qid(), 1);
    Cmd r(io_sqe(spec::NvmOpcode::read, 1, 0, 1), 512);
    w.run(io, r);
    EXPECT_TRUE(r.sf().ok());

    FakeQpair& gone = w.new_qpair();
    Cmd c2 = World::connect_cmd(2, cntlid);
    w.on_worker([&] {
        c2.req.qpair = &gone;
        exec(c2.req);
        gone.closed();
    });
    ASSERT_TRUE(w.run_until([&] { return gone.done(c2.req) && gone.is_released; }));
    EXPECT_EQ(w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}})[0]["num_io_qpairs"], 1);
    EXPECT_EQ(w.call("nvmf_subsystem_get_qpairs", {{"nqn", kNqn}}).size(), 2u);
}

spec::Sqe with_cid(spec::Sqe s, uint16_t cid) {
    s.cid = cid;
    return s;
}

// Get Log Page 01h: up to ELPE + 1 = 128 entries, newest first.
std::vector<spec::ErrorInfoEntry> error_log(World& w, FakeQpair& admin, uint32_t entries = 128) {
    Cmd c(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x01 | ((entries * 16 - 1) << 16)),
          entries * 64);
    w.run(admin, c);
    EXPECT_TRUE(c.sf().ok());
    std::vector<spec::ErrorInfoEntry> v(entries);
    std::memcpy(v.data(), c.data.data(), entries * 64);
    return v;
}

spec::SmartHealthLog smart(World& w, FakeQpair& admin) {
    Cmd c(admin_sqe(spec::AdminOpcode::get_log_page, spec::nsid_all, 0x02 | (127u << 16)), 512);
    w.run(admin, c);
    EXPECT_TRUE(c.sf().ok());
    spec::SmartHealthLog log;
    std::memcpy(&log, c.data.data(), sizeof(log));
    return log;
}

TEST_F(NvmfIo, ErrorLogEntriesNewestFirstAndCountedInSmart) {
    Cmd idc(admin_sqe(spec::AdminOpcode::identify, 0, 1), 4096);
    w.run(admin, idc);
    spec::IdentifyController ic;
    std::memcpy(&ic, idc.data.data(), sizeof(ic));
    EXPECT_EQ(ic.elpe, 127u);
    auto log = error_log(w, admin, 4);
    EXPECT_EQ(log[0].error_count, 0u);  // empty

    Cmd range(with_cid(io_sqe(spec::NvmOpcode::read, 1, 1020, 8), 10), 8 * 512);
    w.run(io, range);
    Cmd nons(with_cid(io_sqe(spec::NvmOpcode::write, 2, 7, 1), 20), 512);
    w.run(io, nons);
    Cmd badcns(with_cid(admin_sqe(spec::AdminOpcode::identify, 0, 0x13), 30), 4096);
    w.run(admin, badcns);
    ASSERT_FALSE(range.sf().ok());
    ASSERT_FALSE(nons.sf().ok());
    ASSERT_FALSE(badcns.sf().ok());
    ASSERT_TRUE(write(0, 1, 1).sf().ok());  // successes are not logged

    log = error_log(w, admin, 4);
    EXPECT_EQ(log[0].error_count, 3u);
    EXPECT_EQ(log[0].sqid, 0);
    EXPECT_EQ(log[0].cid, 30);
    EXPECT_EQ(log[0].status, badcns.req.rsp.status & ~1u);
    EXPECT_EQ(log[0].parameter_location, 0xFFFF);
    EXPECT_EQ(log[0].trtype, 3);  // TCP (the fake transport's type)
    EXPECT_EQ(log[1].error_count, 2u);
    EXPECT_EQ(log[1].sqid, 1);
    EXPECT_EQ(log[1].cid, 20);
    EXPECT_EQ(log[1].nsid, 2u);
    EXPECT_EQ(log[1].lba, 7u);
    EXPECT_EQ(log[1].parameter_location, 4);  // NSID
    EXPECT_EQ(log[1].status, nons.req.rsp.status & ~1u);
    EXPECT_EQ(nons.sc(), static_cast<uint8_t>(spec::GenericStatus::invalid_ns_or_format));
    EXPECT_EQ(log[2].error_count, 1u);
    EXPECT_EQ(log[2].cid, 10);
    EXPECT_EQ(log[2].lba, 1020u);
    EXPECT_EQ(log[2].nsid, 1u);
    EXPECT_EQ(log[2].parameter_location, 40);  // SLBA
    EXPECT_EQ(log[3].error_count, 0u);
    EXPECT_EQ(smart(w, admin).num_err_log_entries.lo(), 3u);

    // A burst that completes in one go finds the qpair's few message slots busy: the overflow is
    // counted (and reported with the next entry), not logged.
    std::vector<std::unique_ptr<Cmd>> burst;
    for (int i = 0; i < 10; ++i)
        burst.push_back(std::make_unique<Cmd>(
            with_cid(io_sqe(spec::NvmOpcode::read, 3, 0, 1), static_cast<uint16_t>(100 + i)), 512));
    w.on_worker([&] {
        for (auto& c : burst) {
            c->req.qpair = &io;
            exec(c->req);
        }
    });
    ASSERT_TRUE(w.run_until([&] {
        return std::all_of(burst.begin(), burst.end(), [&](auto& c) { return io.done(c->req); });
    }));
    w.settle();
    Cmd next(with_cid(io_sqe(spec::NvmOpcode::read, 3, 0, 1), 200), 512);
    w.run(io, next);
    log = error_log(w, admin);
    EXPECT_EQ(log[0].error_count, 3u + 10u + 1u);
    EXPECT_EQ(log[0].cid, 200);
    EXPECT_EQ(smart(w, admin).num_err_log_entries.lo(), 14u);
    // Error counts only grow, newest first.
    for (size_t i = 1; i < log.size() && log[i].error_count != 0; ++i)
        EXPECT_LT(log[i].error_count, log[i - 1].error_count);

    // The ring keeps the newest 128 (each error's slot back before the next: none lost).
    for (int i = 0; i < 130; ++i) {
        Cmd bad(with_cid(io_sqe(spec::NvmOpcode::read, 3, 0, 1), static_cast<uint16_t>(1000 + i)), 512);
        w.run(io, bad);
        w.settle(100'000);
    }
    log = error_log(w, admin);
    EXPECT_EQ(log[0].error_count, 144u);
    EXPECT_EQ(log[0].cid, 1129);
    EXPECT_EQ(log[127].error_count, 144u - 127u);
    EXPECT_EQ(log[127].cid, 1002);
    // An offset into the page.
    Cmd part(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x01 | (15u << 16)), 64);
    part.req.cmd.cdw12 = 64 * 5;
    w.run(admin, part);
    spec::ErrorInfoEntry e5;
    std::memcpy(&e5, part.data.data(), sizeof(e5));
    EXPECT_EQ(e5.error_count, 144u - 5u);
}

TEST_F(NvmfIo, SmartGathersQpairCountersAndKeepsThoseOfClosedQueues) {
    ASSERT_TRUE(write(0, 4, 1).sf().ok());
    ASSERT_TRUE(read(0, 4).sf().ok());
    ASSERT_TRUE(read(0, 2).sf().ok());
    Cmd wz(io_sqe(spec::NvmOpcode::write_zeroes, 1, 8, 2));
    w.run(io, wz);
    auto log = smart(w, admin);
    EXPECT_EQ(log.host_read_commands.lo(), 2u);
    EXPECT_EQ(log.host_write_commands.lo(), 2u);
    EXPECT_EQ(log.data_units_read.lo(), 1u);     // 3 KiB: one unit of 1000 x 512 bytes, rounded up
    EXPECT_EQ(log.data_units_written.lo(), 1u);
    EXPECT_EQ(log.composite_temperature.get(), 298);
    // The I/O queue goes; its counts stay with the controller.
    w.on_worker([&] { io.closed(); });
    ASSERT_TRUE(w.run_until([&] { return io.is_released; }));
    log = smart(w, admin);
    EXPECT_EQ(log.host_read_commands.lo(), 2u);
    EXPECT_EQ(log.host_write_commands.lo(), 2u);
}

Json group_named(const Json& stats, const std::string& name) {
    for (const auto& g : stats["poll_groups"])
        if (g["name"] == name) return g;
    return Json();
}

using NvmfStats = World;

TEST_F(NvmfStats, OnePollGroupPerThreadGatheredThere) {
    auto& w = *this;
    w.setup_subsystem();
    runtime::Thread* w2 = w.sim->create_thread("worker2", 0, &w.app->host());
    runtime::Thread* idle = w.sim->create_thread("pg_idle", 0, &w.app->host());
    w.on(w.app->thread(), [&] { add_poll_group(*idle); });
    FakeQpair& admin = w.new_qpair();
    const uint16_t cntlid = w.connect_admin(admin);
    FakeQpair& io1 = w.new_qpair(w2);
    FakeQpair& io2 = w.new_qpair(w2);
    ASSERT_TRUE(w.connect(io1, 1, cntlid).sf().ok());
    ASSERT_TRUE(w.connect(io2, 2, cntlid).sf().ok());
    Cmd a(io_sqe(spec::NvmOpcode::write, 1, 0, 1), 512), b(io_sqe(spec::NvmOpcode::read, 1, 0, 1), 512),
        c(io_sqe(spec::NvmOpcode::read, 9, 0, 1), 512);
    w.run(io1, a);
    w.run(io1, b);
    w.run(io2, c);
    Json st = w.call("nvmf_get_stats");
    EXPECT_EQ(st["tick_rate"], 1'000'000'000);
    Json g1 = group_named(st, "worker");
    ASSERT_TRUE(g1.is_object()) << st.dump();
    EXPECT_EQ(g1["admin_qpairs"], 1);
    EXPECT_EQ(g1["current_admin_qpairs"], 1);
    EXPECT_EQ(g1["io_qpairs"], 0);
    EXPECT_EQ(g1["completed_nvme_io"], 0);
    EXPECT_EQ(g1["transports"], Json::array({{{"trtype", "TCP"}}}));
    Json g2 = group_named(st, "worker2");
    ASSERT_TRUE(g2.is_object()) << st.dump();
    EXPECT_EQ(g2["io_qpairs"], 2);
    EXPECT_EQ(g2["current_io_qpairs"], 2);
    EXPECT_EQ(g2["completed_nvme_io"], 3);  // errors included, Connects not
    EXPECT_EQ(g2["pending_bdev_io"], 0);
    Json gi = group_named(st, "pg_idle");
    ASSERT_TRUE(gi.is_object()) << st.dump();
    EXPECT_EQ(gi["io_qpairs"], 0);
    EXPECT_EQ(st["poll_groups"].size(), 3u);

    w.on(*w2, [&] { io2.closed(); });
    ASSERT_TRUE(w.run_until([&] { return io2.is_released; }));
    g2 = group_named(w.call("nvmf_get_stats"), "worker2");
    EXPECT_EQ(g2["io_qpairs"], 2);
    EXPECT_EQ(g2["current_io_qpairs"], 1);
}

}  // namespace
}  // namespace strata::nvmf
