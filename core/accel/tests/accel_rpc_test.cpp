// The accel RPCs on an App under the simulator with every module registered: a JSON config
// that creates an emulated I/OAT channel (sim_ioat_create), enables the ioat module and assigns
// an opcode; accel_get_opc_assignments / accel_get_module_info / accel_get_stats;
// accel_assign_opc at run time; save_config round trip; bad params.
#include <gtest/gtest.h>

#include <strata/accel/accel.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

namespace strata::accel {
namespace {

using rpc::Json;

class AccelRpcTest : public ::testing::Test {
protected:
    Result<void> start(Json config) {
        // The sim env backend, as strata-tgt --env sim would start it before the App.
        if (!env::initialized()) EXPECT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(11, 2);
        rpc::AppOptions o;
        if (!config.is_null()) o.config = std::move(config);
        app = std::make_unique<rpc::App>(*sim, std::move(o));
        stack::register_all_modules(*app);
        std::optional<Result<void>> res;
        app->start([&](Result<void> r) { res = std::move(r); });
        EXPECT_TRUE(
            sim->run_until([&] { return res.has_value(); }, sim->now_ns() + 10'000'000'000));
        return res ? *res : Result<void>(Error(Errc::timeout, "start did not finish"));
    }
    void TearDown() override {
        if (app) {
            app->request_stop();
            EXPECT_TRUE(
                sim->run_until([&] { return app->stopped(); }, sim->now_ns() + 10'000'000'000));
            app.reset();
        }
        sim.reset();
        EXPECT_FALSE(running());
        if (env::initialized()) env::fini();
    }
    Json rpc(const char* m, Json params = nullptr) { return app->call_method(m, params); }
    static Json subsystem(const Json& cfg, const std::string& name) {
        for (const auto& s : cfg["subsystems"])
            if (s["subsystem"] == name) return s["config"];
        return nullptr;
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
};

Json ioat_config() {
    return Json::parse(R"({"subsystems": [
        {"subsystem": "sim", "config": [
            {"method": "sim_ioat_create", "params": {"traddr": "0000:00:04.0", "xfercap_log2": 16}}]},
        {"subsystem": "accel", "config": [
            {"method": "accel_set_options", "params": {"task_count": 512}},
            {"method": "ioat_scan_accel_module"},
            {"method": "accel_assign_opc", "params": {"opname": "fill", "module": "software"}}]}]})");
}

TEST_F(AccelRpcTest, DefaultsWithoutConfig) {
    ASSERT_TRUE(start(nullptr).ok());
    auto a = rpc("accel_get_opc_assignments");
    ASSERT_TRUE(a.contains("result")) << a.dump();
    EXPECT_EQ(a["result"], Json::parse(R"({"copy": "software", "fill": "software",
        "compare": "software", "crc32c": "software", "copy_crc32c": "software",
        "xor": "software"})"));
    auto m = rpc("accel_get_module_info")["result"];
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["module"], "software");
    EXPECT_EQ(m[0]["supported ops"].size(), 6u);
    EXPECT_EQ(m[1]["module"], "ioat");
    EXPECT_EQ(m[1]["supported ops"], Json::parse(R"(["copy", "fill"])"));
    EXPECT_EQ(m[1]["started"], false);
    // Nothing but defaults: the accel section of save_config is empty.
    auto cfg = rpc("save_config")["result"];
    EXPECT_EQ(subsystem(cfg, "accel"), Json::array());
}

TEST_F(AccelRpcTest, ConfigStartsIoatAndRoundTrips) {
    ASSERT_TRUE(start(ioat_config()).ok());
    auto a = rpc("accel_get_opc_assignments")["result"];
    EXPECT_EQ(a["copy"], "ioat");
    EXPECT_EQ(a["fill"], "software");  // the config's override
    EXPECT_EQ(a["crc32c"], "software");
    EXPECT_EQ(rpc("accel_get_module_info")["result"][1]["started"], true);

    // Run-time override and back.
    auto r = rpc("accel_assign_opc", {{"opname", "copy"}, {"module", "software"}});
    EXPECT_EQ(r["result"], true) << r.dump();
    EXPECT_EQ(rpc("accel_get_opc_assignments")["result"]["copy"], "software");
    r = rpc("accel_assign_opc", {{"opname", "copy"}, {"module", "ioat"}});
    EXPECT_EQ(r["result"], true) << r.dump();

    auto s = rpc("accel_get_stats");
    ASSERT_TRUE(s.contains("result")) << s.dump();
    EXPECT_EQ(s["result"]["operations"].size(), kOpcodeCount);
    EXPECT_EQ(s["result"]["operations"][0]["opcode"], "copy");
    EXPECT_EQ(s["result"]["operations"][0]["executed"], 0);
    EXPECT_EQ(s["result"]["retry"]["task"], 0);
    EXPECT_EQ(s["result"]["modules"][1]["module"], "ioat");

    auto cfg = rpc("save_config")["result"];
    auto accel = subsystem(cfg, "accel");
    EXPECT_EQ(accel, Json::parse(R"([
        {"method": "accel_set_options", "params": {"task_count": 512}},
        {"method": "ioat_scan_accel_module"},
        {"method": "accel_assign_opc", "params": {"opname": "copy", "module": "ioat"}},
        {"method": "accel_assign_opc", "params": {"opname": "fill", "module": "software"}}])"));
    auto simcfg = subsystem(cfg, "sim");
    ASSERT_EQ(simcfg.size(), 1u);
    EXPECT_EQ(simcfg[0]["method"], "sim_ioat_create");
    EXPECT_EQ(simcfg[0]["params"]["xfercap_log2"], 16);
    // The sim section comes before accel, so a replay finds the channel before the scan.
    size_t sim_at = 0, accel_at = 0;
    for (size_t i = 0; i < cfg["subsystems"].size(); ++i) {
        if (cfg["subsystems"][i]["subsystem"] == "sim") sim_at = i;
        if (cfg["subsystems"][i]["subsystem"] == "accel") accel_at = i;
    }
    EXPECT_LT(sim_at, accel_at);

    auto devs = rpc("sim_get_devices")["result"];
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0]["type"], "ioat");

    // Replaying the saved config in a new App gives the same state.
    TearDown();
    ASSERT_TRUE(start(cfg).ok());
    EXPECT_EQ(subsystem(rpc("save_config")["result"], "accel"), accel);
    EXPECT_EQ(rpc("accel_get_opc_assignments")["result"]["copy"], "ioat");
}

TEST_F(AccelRpcTest, BadParamsAreRejected) {
    ASSERT_TRUE(start(nullptr).ok());
    auto err = [&](const char* m, Json p) {
        auto r = rpc(m, std::move(p));
        EXPECT_TRUE(r.contains("error")) << m << ": " << r.dump();
        return r.contains("error") ? r["error"] : Json();
    };
    auto e = err("accel_assign_opc", {{"opname", "dualcast"}, {"module", "software"}});
    EXPECT_EQ(e["code"], -32602);
    EXPECT_NE(e["message"].get<std::string>().find("dualcast"), std::string::npos);
    e = err("accel_assign_opc", {{"opname", "copy"}, {"module", "gpu"}});
    EXPECT_NE(e["message"].get<std::string>().find("gpu"), std::string::npos);
    e = err("accel_assign_opc", {{"opname", "crc32c"}, {"module", "ioat"}});
    EXPECT_NE(e["message"].get<std::string>().find("does not support"), std::string::npos);
    err("accel_assign_opc", {{"opname", "copy"}});                     // missing module
    err("accel_assign_opc", {{"opname", 3}, {"module", "software"}});  // wrong type
    err("accel_assign_opc", {{"opname", "copy"}, {"module", "software"}, {"x", 1}});  // unknown
    err("ioat_scan_accel_module", {{"x", 1}});
    err("accel_get_stats", {{"x", 1}});
    // Startup-only, and we are at run time.
    err("accel_set_options", {{"task_count", 16}});
    // Nothing changed.
    EXPECT_EQ(rpc("accel_get_opc_assignments")["result"]["copy"], "software");
}

TEST_F(AccelRpcTest, EmulatedIoatChannelsByRpc) {
    ASSERT_TRUE(start(nullptr).ok());
    auto r = rpc("sim_ioat_create", {{"traddr", "0000:00:04.1"}, {"fill", false}});
    ASSERT_EQ(r["result"], "0000:00:04.1") << r.dump();
    EXPECT_TRUE(rpc("sim_ioat_create", {{"traddr", "0000:00:04.1"}}).contains("error"));  // taken
    EXPECT_TRUE(rpc("sim_ioat_create", {{"traddr", "0000:00:04.2"}, {"xfercap_log2", 5}})
                    .contains("error"));  // XFERCAP below 4 KiB
    EXPECT_TRUE(rpc("sim_ioat_create", {{"traddr", "bogus"}}).contains("error"));
    r = rpc(
        "sim_ioat_inject_fault",
        {{"traddr", "0000:00:04.1"},
         {"rule", {{"action", "error_status"}, {"status", 0x100}, {"nth", 2}}}});  // read_data_err
    ASSERT_TRUE(r.contains("result")) << r.dump();
    EXPECT_TRUE(r["result"].is_number_unsigned());
    auto devs = rpc("sim_get_devices")["result"];
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0]["faults"], 1);
    EXPECT_EQ(devs[0]["removed"], false);
    EXPECT_EQ(rpc("sim_ioat_clear_faults", {{"traddr", "0000:00:04.1"}})["result"], true);
    EXPECT_EQ(rpc("sim_get_devices")["result"][0]["faults"], 0);
    EXPECT_TRUE(
        rpc("sim_ioat_inject_fault", {{"traddr", "0000:00:04.1"}, {"rule", {{"action", "nope"}}}})
            .contains("error"));
    // ioat_scan_accel_module at run time finds it.
    EXPECT_EQ(rpc("ioat_scan_accel_module")["result"], true);
    EXPECT_EQ(rpc("accel_get_opc_assignments")["result"]["copy"], "ioat");
    // A Thread's accel channel holds the function: the model cannot go from under it.
    Channel* ch = nullptr;
    bool got = false;
    (void)app->thread().post([&] {
        ch = get_channel();
        got = true;
    });
    ASSERT_TRUE(sim->run_until([&] { return got; }, sim->now_ns() + 1'000'000'000));
    ASSERT_NE(ch, nullptr);
    EXPECT_STREQ(ch->module_for(Opcode::copy), "ioat");
    auto busy = rpc("sim_ioat_delete", {{"traddr", "0000:00:04.1"}});
    ASSERT_TRUE(busy.contains("error")) << busy.dump();
    EXPECT_NE(busy["error"]["message"].get<std::string>().find("in use"), std::string::npos);
    (void)app->thread().post([ch] { put_channel(ch); });
    sim->run_until([] { return false; }, sim->now_ns() + 1'000'000);
    EXPECT_EQ(rpc("sim_ioat_delete", {{"traddr", "0000:00:04.1"}})["result"], true);
    EXPECT_TRUE(rpc("sim_ioat_delete", {{"traddr", "0000:00:04.1"}}).contains("error"));
    EXPECT_TRUE(rpc("sim_ioat_clear_faults", {{"traddr", "0000:00:04.1"}}).contains("error"));
    EXPECT_EQ(rpc("sim_get_devices")["result"].size(), 0u);
    // The deleted channel left the bus: its address takes a new one.
    EXPECT_EQ(rpc("sim_ioat_create", {{"traddr", "0000:00:04.1"}})["result"], "0000:00:04.1");
}

TEST_F(AccelRpcTest, BadOptionsInConfigFailStartWithAClearMessage) {
    auto r = start(Json::parse(R"({"subsystems": [{"subsystem": "accel", "config": [
        {"method": "accel_set_options", "params": {"task_count": 0}}]}]})"));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("task_count"), std::string::npos) << r.error().message();
}

TEST_F(AccelRpcTest, SpdkSavedAccelSectionLoads) {
    // What SPDK's save_config writes for accel by default.
    ASSERT_TRUE(start(Json::parse(R"({"subsystems": [{"subsystem": "accel", "config": [
        {"method": "accel_set_options", "params": {"small_cache_size": 128,
            "large_cache_size": 16, "task_count": 2048, "sequence_count": 2048,
            "buf_count": 2048}}]}]})"))
                    .ok());
    EXPECT_EQ(options().task_count, 2048u);
}

TEST_F(AccelRpcTest, HugeBatchCountIsRefusedNotAllocated) {
    auto r = start(Json::parse(R"({"subsystems": [{"subsystem": "accel", "config": [
        {"method": "accel_set_options", "params": {"batch_count": 4000000000}}]}]})"));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("batch_count"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace strata::accel
