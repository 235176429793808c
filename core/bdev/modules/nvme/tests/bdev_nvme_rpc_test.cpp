// bdev_nvme_set_options through the RPCs of a simulated App (every module registered): the
// round trip, SPDK's validation rules, SPDK's parameters Strata does not implement (accepted at
// their defaults only), refusal once a controller is attached, the options as the defaults of
// bdev_nvme_attach_controller (a PCIe controller of the NVMe model), and save_config /
// load_config.
#include <gtest/gtest.h>

#include <cerrno>

#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>

#include "nvme/nvme.h"
#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

const env::PciAddress kAddr{0, 2, 0, 0};

// The bdev_nvme_set_options entry of SPDK's save_config with every default (SPDK v25.x).
Json spdk_default_params() {
    return Json::parse(R"({
      "action_on_timeout": "none", "timeout_us": 0, "timeout_admin_us": 0,
      "keep_alive_timeout_ms": 10000, "arbitration_burst": 0, "low_priority_weight": 0,
      "medium_priority_weight": 0, "high_priority_weight": 0,
      "nvme_adminq_poll_period_us": 10000, "nvme_ioq_poll_period_us": 0,
      "io_queue_requests": 0, "delay_cmd_submit": true, "transport_retry_count": 4,
      "bdev_retry_count": 3, "transport_ack_timeout": 0, "ctrlr_loss_timeout_sec": 0,
      "reconnect_delay_sec": 0, "fast_io_fail_timeout_sec": 0, "disable_auto_failback": false,
      "generate_uuids": false, "transport_tos": 0, "nvme_error_stat": false,
      "rdma_srq_size": 0, "io_path_stat": false, "allow_accel_sequence": false,
      "rdma_max_cq_size": 0, "rdma_cm_event_timeout_ms": 0,
      "dhchap_digests": ["sha256", "sha384", "sha512"],
      "dhchap_dhgroups": ["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"],
      "rdma_umr_per_io": false, "tcp_connect_timeout_ms": 0, "enable_flush": false,
      "multipath_opts": {"policy": "active_passive"}})");
}

class NvmeOptionsTest : public VbdevTest {
protected:
    void TearDown() override { stop_nvme_world(); }

    // A world whose Host has an NVMe model on its PCI bus before the App starts (so a config
    // that attaches it loads).
    void start_nvme_world(std::optional<Json> config = std::nullopt) {
        stop_nvme_world();
        start_world(1, std::move(config), [this] {
            bus = std::make_unique<hwemu::PciBus>(app->host());
            hwemu::nvme::ControllerConfig cfg;
            cfg.namespaces = {{1, 1 << 12, 512, {}}};
            on(worker, [&] {
                auto m = hwemu::nvme::Controller::create(*bus, kAddr, cfg, *worker);
                ASSERT_TRUE(m.ok()) << m.error().message();
                model = std::move(*m);
            });
        });
    }
    void stop_nvme_world() {
        if (app) {
            app->request_stop();  // detaches the controllers
            EXPECT_TRUE(poll_until([&] { return app->stopped(); }));
            if (model) on(worker, [&] { model.reset(); });
            bus.reset();
        }
        stop_world();
    }
    Json attach(Json extra = Json::object()) {
        Json p = {{"name", "Nvme0"}, {"trtype", "PCIe"}, {"traddr", "0000:02:00.0"}};
        for (auto& [k, v] : extra.items()) p[k] = v;
        return app->call_method("bdev_nvme_attach_controller", p);
    }
    NvmeModuleOptions options() {
        NvmeModuleOptions o;
        on(&app->thread(), [&] { o = nvme_options(); });
        return o;
    }

    std::unique_ptr<hwemu::PciBus> bus;
    std::unique_ptr<hwemu::nvme::Controller> model;
};

TEST_F(NvmeOptionsTest, SetOptionsKeepsWhatIsNotGiven) {
    const NvmeModuleOptions d;
    EXPECT_EQ(d.bdev_retry_count, 3);
    EXPECT_EQ(d.keep_alive_timeout_ms, 10000u);
    EXPECT_EQ(
        call("bdev_nvme_set_options", {{"bdev_retry_count", -1}, {"keep_alive_timeout_ms", 2500}}),
        true);
    EXPECT_EQ(call("bdev_nvme_set_options", {{"ctrlr_loss_timeout_sec", 30},
                                             {"reconnect_delay_sec", 5},
                                             {"fast_io_fail_timeout_sec", 10}}),
              true);
    EXPECT_EQ(call("bdev_nvme_set_options", {{"timeout_us", 2'000'000},
                                             {"timeout_admin_us", 3'000'000},
                                             {"action_on_timeout", "abort"},
                                             {"io_queue_requests", 512}}),
              true);
    const NvmeModuleOptions o = options();
    EXPECT_EQ(o.bdev_retry_count, -1);
    EXPECT_EQ(o.keep_alive_timeout_ms, 2500u);
    EXPECT_EQ(o.ctrlr_loss_timeout_sec, 30);
    EXPECT_EQ(o.reconnect_delay_sec, 5u);
    EXPECT_EQ(o.fast_io_fail_timeout_sec, 10u);
    EXPECT_EQ(o.timeout_us, 2'000'000u);
    EXPECT_EQ(o.timeout_admin_us, 3'000'000u);
    EXPECT_EQ(o.action_on_timeout, NvmeTimeoutAction::abort);
    EXPECT_EQ(o.io_queue_requests, 512u);
    // No parameters: nothing changes.
    EXPECT_EQ(call("bdev_nvme_set_options"), true);
    EXPECT_EQ(options().bdev_retry_count, -1);
}

TEST_F(NvmeOptionsTest, SpdkDefaultsOfEveryParameterAreAccepted) {
    EXPECT_EQ(call("bdev_nvme_set_options", spdk_default_params()), true);
    // The DH-HMAC-CHAP lists in another order are still the defaults; so is SPDK's old name.
    Json p = {{"dhchap_digests", {"sha512", "sha256", "sha384"}},
              {"retry_count", 4},
              {"enable_flush", true}};
    EXPECT_EQ(call("bdev_nvme_set_options", p), true);
}

TEST_F(NvmeOptionsTest, ValidationErrors) {
    auto code = [&](Json p) { return call_error("bdev_nvme_set_options", std::move(p))["code"]; };
    auto message = [&](Json p) {
        return call_error("bdev_nvme_set_options", std::move(p))["message"].get<std::string>();
    };
    // SPDK's rules.
    EXPECT_EQ(code({{"bdev_retry_count", -2}}), -EINVAL);
    EXPECT_EQ(code({{"timeout_admin_us", 1000}}), -EINVAL);  // needs timeout_us
    EXPECT_EQ(code({{"ctrlr_loss_timeout_sec", -2}, {"reconnect_delay_sec", 1}}), -EINVAL);
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", 10}}),
              "reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0");
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", -1}}),
              "reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0");
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", 10}, {"reconnect_delay_sec", 11}}),
              "reconnect_delay_sec can't be more than ctrlr_loss_timeout_sec");
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", 10},
                       {"reconnect_delay_sec", 5},
                       {"fast_io_fail_timeout_sec", 4}}),
              "reconnect_delay_sec can't be more than fast_io_fail_timeout_sec");
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", -1},
                       {"reconnect_delay_sec", 5},
                       {"fast_io_fail_timeout_sec", 4}}),
              "reconnect_delay_sec can't be more than fast_io_fail_timeout_sec");
    EXPECT_EQ(message({{"ctrlr_loss_timeout_sec", 10},
                       {"reconnect_delay_sec", 5},
                       {"fast_io_fail_timeout_sec", 11}}),
              "fast_io_fail_timeout_sec can't be more than ctrlr_loss_timeout_sec");
    EXPECT_EQ(code({{"reconnect_delay_sec", 1}}), -EINVAL);  // ctrlr_loss_timeout_sec 0
    EXPECT_EQ(code({{"fast_io_fail_timeout_sec", 1}}), -EINVAL);
    // Ranges and types.
    EXPECT_EQ(code({{"keep_alive_timeout_ms", 1ull << 32}}), -EINVAL);
    EXPECT_EQ(code({{"ctrlr_loss_timeout_sec", 1ull << 31}, {"reconnect_delay_sec", 1}}), -EINVAL);
    EXPECT_EQ(code({{"bdev_retry_count", "3"}}), -32602);
    EXPECT_EQ(code({{"timeout_us", -1}}), -32602);
    EXPECT_EQ(code({{"action_on_timeout", "bogus"}}), -EINVAL);
    EXPECT_EQ(code({{"no_such_option", 1}}), -32602);
    // What Strata's driver does not do.
    EXPECT_EQ(code({{"action_on_timeout", "reset"}}), -ENOTSUP);
    EXPECT_EQ(code({{"timeout_us", 1000}}), -ENOTSUP);  // action_on_timeout none
    EXPECT_EQ(message({{"transport_retry_count", 8}}),
              "bdev_nvme_set_options: parameter 'transport_retry_count' is not supported by Strata "
              "(only its default 4 is accepted)");
    EXPECT_EQ(code({{"delay_cmd_submit", false}}), -ENOTSUP);
    EXPECT_EQ(code({{"generate_uuids", true}}), -ENOTSUP);
    EXPECT_EQ(code({{"dhchap_digests", {"sha512"}}}), -ENOTSUP);
    EXPECT_EQ(code({{"multipath_opts", {{"policy", "active_active"}}}}), -ENOTSUP);
    // A failed call changes nothing, not even the parameters it got right.
    EXPECT_EQ(code({{"bdev_retry_count", 7}, {"transport_retry_count", 8}}), -ENOTSUP);
    EXPECT_EQ(code({{"bdev_retry_count", 7}, {"reconnect_delay_sec", 1}}), -EINVAL);
    EXPECT_EQ(options().bdev_retry_count, kDefaultBdevRetryCount);
    EXPECT_EQ(options().reconnect_delay_sec, 0u);
}

TEST_F(NvmeOptionsTest, AttachTakesTheOptionsAndRefusesChangesWhileAttached) {
    start_nvme_world();
    EXPECT_EQ(call("bdev_nvme_set_options", {{"bdev_retry_count", 5},
                                             {"timeout_us", 4'000'000},
                                             {"action_on_timeout", "abort"},
                                             {"io_queue_requests", 100},
                                             {"keep_alive_timeout_ms", 3000},
                                             {"ctrlr_loss_timeout_sec", -1},
                                             {"reconnect_delay_sec", 2},
                                             {"fast_io_fail_timeout_sec", 4}}),
              true);
    Json r = attach();
    ASSERT_TRUE(r.contains("result")) << r.dump();
    EXPECT_EQ(r["result"], Json({"Nvme0n1"}));
    std::vector<NvmeControllerInfo> c;
    on(&app->thread(), [&] { c = nvme_controllers(); });
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].bdev_retry_count, 5);
    EXPECT_EQ(c[0].io_queue_requests, 100u);
    EXPECT_EQ(c[0].options.timeout_us, 4'000'000u);
    EXPECT_EQ(c[0].options.admin_timeout_us, 4'000'000u);  // timeout_admin_us 0: timeout_us
    EXPECT_EQ(c[0].options.keep_alive_timeout_ms, 3000u);
    EXPECT_EQ(c[0].options.ctrlr_loss_timeout_sec, -1);
    EXPECT_EQ(c[0].options.reconnect_delay_sec, 2u);
    EXPECT_EQ(c[0].options.fast_io_fail_timeout_sec, 4u);
    // I/O goes through qpairs made with the options.
    Handle& h = open("Nvme0n1");
    auto w = pattern(8 * 512, 3);
    std::vector<uint8_t> back(w.size());
    EXPECT_TRUE(write_blocks(h, 16, w).ok());
    EXPECT_TRUE(read_blocks(h, 16, back).ok());
    EXPECT_EQ(back, w);
    close(h);

    // SPDK's answer once a controller is attached, even for valid values; nothing changes.
    Json e = call_error("bdev_nvme_set_options", {{"bdev_retry_count", 1}});
    EXPECT_EQ(e["code"], -EPERM);
    EXPECT_EQ(e["message"], "RPC not permitted with nvme controllers already attached");
    EXPECT_EQ(options().bdev_retry_count, 5);
    // Detached: allowed again.
    EXPECT_EQ(call("bdev_nvme_detach_controller", {{"name", "Nvme0"}}), true);
    EXPECT_EQ(call("bdev_nvme_set_options", {{"bdev_retry_count", 1}}), true);
    EXPECT_EQ(options().bdev_retry_count, 1);
}

TEST_F(NvmeOptionsTest, AttachParametersOverrideTheOptions) {
    start_nvme_world();
    EXPECT_EQ(call("bdev_nvme_set_options", {{"timeout_us", 4'000'000},
                                             {"timeout_admin_us", 6'000'000},
                                             {"action_on_timeout", "abort"}}),
              true);
    Json r = attach({{"timeout_us", 1'000'000}});
    ASSERT_TRUE(r.contains("result")) << r.dump();
    std::vector<NvmeControllerInfo> c;
    on(&app->thread(), [&] { c = nvme_controllers(); });
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].options.timeout_us, 1'000'000u);
    EXPECT_EQ(c[0].options.admin_timeout_us, 6'000'000u);
}

TEST_F(NvmeOptionsTest, DefaultsWithoutSetOptionsAreTheDriversAsBefore) {
    start_nvme_world();
    ASSERT_TRUE(attach().contains("result"));
    std::vector<NvmeControllerInfo> c;
    on(&app->thread(), [&] { c = nvme_controllers(); });
    ASSERT_EQ(c.size(), 1u);
    const nvme::ControllerOptions driver;
    EXPECT_EQ(c[0].options.timeout_us, 0u);
    EXPECT_EQ(c[0].options.admin_timeout_us, driver.admin_timeout_us);
    EXPECT_EQ(c[0].options.keep_alive_timeout_ms, driver.keep_alive_timeout_ms);
    EXPECT_EQ(c[0].bdev_retry_count, kDefaultBdevRetryCount);
    EXPECT_EQ(c[0].io_queue_requests, 0u);
}

// The TCP attach validates SPDK's rules on the values in effect: the options' reconnect delay
// with the attach's own ctrlr_loss_timeout_sec 0 is refused before any connection is tried.
TEST_F(NvmeOptionsTest, TcpAttachChecksTheLimitsInEffect) {
    EXPECT_EQ(
        call("bdev_nvme_set_options", {{"ctrlr_loss_timeout_sec", -1}, {"reconnect_delay_sec", 1}}),
        true);
    Json tcp = {{"name", "T0"},        {"trtype", "TCP"},  {"traddr", "192.0.2.1"},
                {"subnqn", "nqn.x:y"}, {"adrfam", "IPv4"}, {"ctrlr_loss_timeout_sec", 0}};
    Json e = call_error("bdev_nvme_attach_controller", tcp);
    EXPECT_EQ(e["code"], -EINVAL);
    EXPECT_EQ(e["message"],
              "Both reconnect_delay_sec and fast_io_fail_timeout_sec must be 0 if "
              "ctrlr_loss_timeout_sec is 0");
    on(&app->thread(), [&] {
        const NvmeAttachOptions a = nvme_default_attach_options();
        EXPECT_EQ(a.controller.ctrlr_loss_timeout_sec, -1);
        EXPECT_EQ(a.controller.reconnect_delay_sec, 1u);
    });
}

TEST_F(NvmeOptionsTest, SaveConfigWritesThemFirstAndLoadConfigRestoresThem) {
    start_nvme_world();
    EXPECT_EQ(call("bdev_nvme_set_options", {{"bdev_retry_count", 0},
                                             {"keep_alive_timeout_ms", 7000},
                                             {"timeout_us", 9'000'000},
                                             {"action_on_timeout", "abort"},
                                             {"ctrlr_loss_timeout_sec", 20},
                                             {"reconnect_delay_sec", 2},
                                             {"io_queue_requests", 64}}),
              true);
    ASSERT_TRUE(attach().contains("result"));
    malloc("M0");
    Json cfg = bdev_config();
    ASSERT_GE(cfg.size(), 4u);
    // SPDK's order: bdev_set_options, then the nvme module's options, its controllers.
    EXPECT_EQ(cfg[0]["method"], "bdev_set_options");
    EXPECT_EQ(cfg[1]["method"], "bdev_nvme_set_options");
    EXPECT_EQ(cfg[1]["params"], Json::parse(R"({"action_on_timeout": "abort", "timeout_us": 9000000,
        "timeout_admin_us": 0, "keep_alive_timeout_ms": 7000, "io_queue_requests": 64,
        "bdev_retry_count": 0, "ctrlr_loss_timeout_sec": 20, "reconnect_delay_sec": 2,
        "fast_io_fail_timeout_sec": 0})"));
    EXPECT_EQ(cfg[2]["method"], "bdev_nvme_attach_controller");

    start_nvme_world(Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", cfg}}}}});
    const NvmeModuleOptions o = options();
    EXPECT_EQ(o.bdev_retry_count, 0);
    EXPECT_EQ(o.keep_alive_timeout_ms, 7000u);
    EXPECT_EQ(o.timeout_us, 9'000'000u);
    EXPECT_EQ(o.action_on_timeout, NvmeTimeoutAction::abort);
    EXPECT_EQ(o.ctrlr_loss_timeout_sec, 20);
    EXPECT_EQ(o.reconnect_delay_sec, 2u);
    EXPECT_EQ(o.io_queue_requests, 64u);
    std::vector<NvmeControllerInfo> c;
    on(&app->thread(), [&] { c = nvme_controllers(); });
    ASSERT_EQ(c.size(), 1u);  // attached after the options were set
    EXPECT_EQ(c[0].bdev_retry_count, 0);
    EXPECT_EQ(c[0].options.timeout_us, 9'000'000u);
    EXPECT_EQ(bdev_config(), cfg);
}

// An SPDK config (every parameter at SPDK's default) loads.
TEST_F(NvmeOptionsTest, SpdkConfigLoads) {
    Json cfg =
        Json::array({{{"method", "bdev_nvme_set_options"}, {"params", spdk_default_params()}}});
    start_nvme_world(Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", cfg}}}}});
    EXPECT_EQ(options().bdev_retry_count, kDefaultBdevRetryCount);
}

}  // namespace
}  // namespace strata::bdev::testing
