// The sock RPCs on a simulated App with every module registered: sock_impl_get_options /
// sock_impl_set_options / sock_set_default_impl with SPDK's field names, the save_config round
// trip, bad params; the sim_network_* fault methods (and their refusal on a real App).
#include <gtest/gtest.h>

#include <optional>

#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/stack/sim_apps.h>
#include <strata/runtime/scheduler.h>

namespace strata::sock {
namespace {

using rpc::Json;

// One App with every module on the simulator (stack::testing::SimAppsTest); start() adds it,
// with a config to load, and rpc() calls the newest one.
class SockRpcTest : public stack::testing::SimAppsTest {
protected:
    void SetUp() override { start_sim(11); }
    void start(std::optional<Json> config = std::nullopt) { add_app("app", std::move(config)); }
    Json rpc(const char* m, Json params = nullptr) {
        return SimAppsTest::rpc(apps.size() - 1, m, std::move(params));
    }
    static Json subsystem(const Json& cfg, const std::string& name) {
        for (const auto& s : cfg["subsystems"])
            if (s["subsystem"] == name) return s["config"];
        return nullptr;
    }
};

TEST_F(SockRpcTest, ImplOptionsRoundTripThroughSaveConfig) {
    ASSERT_NO_FATAL_FAILURE(start());
    auto o = rpc("sock_impl_get_options", {{"impl_name", "posix"}});
    ASSERT_TRUE(o.contains("result")) << o.dump();
    EXPECT_EQ(o["result"], Json::parse(R"({"recv_buf_size": 2097152, "send_buf_size": 2097152,
        "enable_recv_pipe": true, "enable_quickack": false, "enable_placement_id": 0,
        "enable_zerocopy_send_server": false, "enable_zerocopy_send_client": false,
        "zerocopy_threshold": 0, "tls_version": 0, "enable_ktls": false,
        "enable_registered_recv_buffers": false})"));
    // Nothing changed: the sock section is empty.
    EXPECT_EQ(subsystem(rpc("save_config")["result"], "sock"), Json::array());

    auto r = rpc("sock_impl_set_options", {{"impl_name", "posix"},
                                           {"recv_buf_size", 65536},
                                           {"enable_quickack", true},
                                           {"tls_version", 13},
                                           {"enable_registered_recv_buffers", true}});
    EXPECT_EQ(r["result"], true) << r.dump();
    r = rpc("sock_set_default_impl", {{"impl_name", "posix"}});
    EXPECT_EQ(r["result"], true) << r.dump();
    o = rpc("sock_impl_get_options", {{"impl_name", "posix"}})["result"];
    EXPECT_EQ(o["recv_buf_size"], 65536);
    EXPECT_EQ(o["send_buf_size"], 2097152);  // kept
    EXPECT_EQ(o["enable_quickack"], true);
    EXPECT_EQ(o["tls_version"], 13);
    EXPECT_EQ(o["enable_registered_recv_buffers"], true);

    auto cfg = rpc("save_config")["result"];
    auto sock = subsystem(cfg, "sock");
    ASSERT_EQ(sock.size(), 2u) << sock.dump();
    EXPECT_EQ(sock[0], Json::parse(R"({"method": "sock_set_default_impl",
                                       "params": {"impl_name": "posix"}})"));
    EXPECT_EQ(sock[1]["method"], "sock_impl_set_options");
    EXPECT_EQ(sock[1]["params"]["impl_name"], "posix");
    EXPECT_EQ(sock[1]["params"]["recv_buf_size"], 65536);

    stop(0);
    ASSERT_NO_FATAL_FAILURE(start(cfg));
    EXPECT_EQ(subsystem(rpc("save_config")["result"], "sock"), sock);
    EXPECT_EQ(rpc("sock_impl_get_options", {{"impl_name", "posix"}})["result"]["recv_buf_size"],
              65536);
}

TEST_F(SockRpcTest, SpdkSavedSockSectionLoads) {
    // What SPDK's save_config writes (psk fields included on newer versions).
    auto cfg = Json::parse(R"({"subsystems": [{"subsystem": "sock", "config": [
        {"method": "sock_set_default_impl", "params": {"impl_name": "posix"}},
        {"method": "sock_impl_set_options", "params": {"impl_name": "posix",
          "recv_buf_size": 2097152, "send_buf_size": 2097152, "enable_recv_pipe": true,
          "enable_quickack": false, "enable_placement_id": 0,
          "enable_zerocopy_send_server": true, "enable_zerocopy_send_client": false,
          "zerocopy_threshold": 0, "tls_version": 0, "enable_ktls": false,
          "enable_registered_recv_buffers": false}}]}]})");
    ASSERT_NO_FATAL_FAILURE(start(cfg));
    EXPECT_EQ(rpc("sock_impl_get_options",
                  {{"impl_name", "posix"}})["result"]["enable_zerocopy_send_server"],
              true);
}

TEST_F(SockRpcTest, BadParamsAreRejected) {
    ASSERT_NO_FATAL_FAILURE(start());
    EXPECT_TRUE(rpc("sock_impl_get_options", {{"impl_name", "nope"}}).contains("error"));
    EXPECT_TRUE(rpc("sock_impl_get_options", Json::object()).contains("error"));
    EXPECT_TRUE(rpc("sock_impl_set_options", {{"impl_name", "nope"}}).contains("error"));
    EXPECT_TRUE(rpc("sock_impl_set_options", {{"impl_name", "posix"}, {"recv_buf_size", -1}})
                    .contains("error"));
    EXPECT_TRUE(
        rpc("sock_impl_set_options", {{"impl_name", "posix"}, {"bogus", 1}}).contains("error"));
    EXPECT_TRUE(
        rpc("sock_impl_set_options", {{"impl_name", "posix"}, {"recv_buf_size", 1ull << 40}})
            .contains("error"));
    auto e = rpc("sock_set_default_impl", {{"impl_name", "carrier-pigeon"}});
    ASSERT_TRUE(e.contains("error"));
    EXPECT_NE(e["error"]["message"].get<std::string>().find("carrier-pigeon"), std::string::npos);
    EXPECT_TRUE(rpc("sim_network_partition", {{"addr_a", "x"}, {"addr_b", "y"}, {"mode", "z"}})
                    .contains("error"));
    EXPECT_TRUE(rpc("sim_network_reset", Json::object()).contains("error"));
    EXPECT_TRUE(rpc("sim_network_reset", {{"connection_id", 12345}}).contains("error"));
    EXPECT_TRUE(rpc("sim_network_set_link", {{"addr_a", "x"}}).contains("error"));
}

TEST_F(SockRpcTest, SimNetworkMethods) {
    ASSERT_NO_FATAL_FAILURE(start());
    auto info = rpc("sim_network_get_info");
    ASSERT_TRUE(info.contains("result")) << info.dump();
    EXPECT_EQ(info["result"]["address"], "127.0.0.1");
    auto r = rpc("sim_network_set_link", {{"latency_ns", 5000}, {"max_segment_bytes", 512}});
    EXPECT_EQ(r["result"], true) << r.dump();
    EXPECT_EQ(rpc("sim_network_get_info")["result"]["default_link"]["latency_ns"], 5000);
    EXPECT_EQ(
        rpc("sim_network_set_link",
            {{"addr_a", "10.0.0.1"}, {"addr_b", "10.0.0.2"}, {"bytes_per_sec", 1000}})["result"],
        true);
    EXPECT_EQ(rpc("sim_network_partition", {{"addr_a", "a"}, {"addr_b", "b"}})["result"], true);
    EXPECT_EQ(rpc("sim_network_heal", {{"addr_a", "a"}, {"addr_b", "b"}})["result"], true);
    EXPECT_EQ(
        rpc("sim_network_stall", {{"addr_a", "a"}, {"addr_b", "b"}, {"duration_ns", 1}})["result"],
        true);
    EXPECT_EQ(
        rpc("sim_network_delay",
            {{"addr_a", "a"}, {"addr_b", "b"}, {"extra_ns", 1}, {"duration_ns", 1}})["result"],
        true);
    EXPECT_EQ(
        rpc("sim_network_slow_reader", {{"address", "127.0.0.1"}, {"bytes_per_sec", 0}})["result"],
        true);
    EXPECT_EQ(rpc("sim_network_reset", {{"addr_a", "a"}, {"addr_b", "b"}})["result"], 0);
    EXPECT_EQ(rpc("sim_network_get_connections")["result"], Json::array());
}

TEST(SockRpcReal, SimNetworkMethodsRefuseOnARealApp) {
    runtime::RealSchedulerOptions ro;
    ro.pin = false;
    runtime::RealScheduler sched(ro);
    sched.start();
    {
        rpc::App app(sched);
        stack::register_all_modules(app);
        std::atomic<bool> started{false};
        app.start([&](Result<void>) { started = true; });
        while (!started) std::this_thread::yield();
        auto r = app.call_method("sim_network_get_connections", nullptr);
        ASSERT_TRUE(r.contains("error")) << r.dump();
        EXPECT_NE(r["error"]["message"].get<std::string>().find("simulator"), std::string::npos);
        // The SPDK methods work there.
        EXPECT_TRUE(
            app.call_method("sock_impl_get_options", {{"impl_name", "posix"}}).contains("result"));
        app.request_stop();
        while (!app.stopped()) std::this_thread::yield();
    }
    sched.stop();
}

}  // namespace
}  // namespace strata::sock
