// The sim subsystem's RPCs on simulated Apps: emulated devices created, listed, saved and
// deleted by RPC, each App's on its own emulated PCI bus.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/rpc/app.h>
#include <strata/rpc/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::hwemu {
namespace {

using Json = nlohmann::json;

constexpr const char* kAddr = "0000:05:00.0";

// Apps on one simulator (as two Python Worlds, or simulated hosts of one cluster).
class SimRpcTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(3, 2);
    }
    void TearDown() override {
        for (size_t i = 0; i < apps.size(); ++i) stop(i);
        sim.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
    size_t add_app(const std::string& name) {
        rpc::AppOptions o;
        o.host_name = name;
        auto& app = apps.emplace_back(std::make_unique<rpc::App>(*sim, std::move(o)));
        {
            runtime::HostScope scope(app->host());
            rpc::register_all_modules(*app);
        }
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        EXPECT_TRUE(poll_until([&] { return started.has_value(); }));
        EXPECT_TRUE(started && started->ok()) << (started ? started->error().message() : "");
        return apps.size() - 1;
    }
    bool poll_until(const std::function<bool()>& pred) {
        return sim->run_until(pred, sim->now_ns() + 30'000'000'000ull);
    }
    void stop(size_t i) {
        if (!apps[i]) return;
        apps[i]->request_stop();
        EXPECT_TRUE(poll_until([&] { return apps[i]->stopped(); }));
        apps[i].reset();
    }
    Json rpc(size_t i, const std::string& method, Json params = Json::object()) {
        return apps[i]->call_method(method, std::move(params));
    }
    Json call(size_t i, const std::string& method, Json params = Json::object()) {
        Json r = rpc(i, method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << "app " << i << ": " << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }
    Json create_nvme(size_t i, const std::string& serial) {
        return call(i, "sim_nvme_create",
                    {{"traddr", kAddr},
                     {"serial", serial},
                     {"namespaces", {{{"nsid", 1}, {"num_blocks", 4096}, {"block_size", 512}}}}});
    }
    // The sim subsystem's section of the App's save_config.
    Json sim_config(size_t i) {
        const Json saved = call(i, "save_config");
        for (const Json& s : saved["subsystems"])
            if (s["subsystem"] == "sim") return s["config"];
        return Json();
    }
    // What env enumerates in the App's Host: the functions of its bus.
    std::vector<std::string> bus_addresses(size_t i) {
        runtime::HostScope scope(apps[i]->host());
        std::vector<std::string> out;
        auto devs = env::enumerate();
        EXPECT_TRUE(devs.ok());
        if (devs.ok())
            for (const auto& d : *devs) out.push_back(d.address.to_string());
        return out;
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::vector<std::unique_ptr<rpc::App>> apps;
};

TEST_F(SimRpcTest, CreateListSaveDelete) {
    const size_t a = add_app("a");
    EXPECT_EQ(create_nvme(a, "SIM-A"), kAddr);
    EXPECT_EQ(rpc(a, "sim_nvme_create", {{"traddr", kAddr}})["error"]["message"],
              std::string("an emulated device already sits at ") + kAddr);
    Json devs = call(a, "sim_get_devices");
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0]["traddr"], kAddr);
    EXPECT_EQ(devs[0]["serial"], "SIM-A");
    EXPECT_EQ(bus_addresses(a), std::vector<std::string>{kAddr});
    Json cfg = sim_config(a);
    ASSERT_EQ(cfg.size(), 1u);
    EXPECT_EQ(cfg[0]["method"], "sim_nvme_create");
    EXPECT_EQ(cfg[0]["params"]["serial"], "SIM-A");
    EXPECT_EQ(call(a, "sim_nvme_delete", {{"traddr", kAddr}}), true);
    EXPECT_EQ(call(a, "sim_get_devices"), Json::array());
    EXPECT_TRUE(sim_config(a).empty());
}

// Needs the sim env backend per Host (the env change of issue 13: set_sim_pci_provider
// registers for runtime::current_host()): with one process-wide provider the second App's bus
// is refused. Each App puts a device at the same address on its own bus; deleting one leaves
// the other's. Param: the first App stops first.
class SimRpcTwoAppsTest : public SimRpcTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SimRpcTwoAppsTest, SameAddressOnEachAppsBus) {
    const size_t a = add_app("a"), b = add_app("b");
    EXPECT_EQ(create_nvme(a, "SIM-A"), kAddr);
    EXPECT_EQ(create_nvme(b, "SIM-B"), kAddr);
    EXPECT_EQ(call(a, "sim_get_devices")[0]["serial"], "SIM-A");
    EXPECT_EQ(call(b, "sim_get_devices")[0]["serial"], "SIM-B");
    EXPECT_EQ(sim_config(a)[0]["params"]["serial"], "SIM-A");
    EXPECT_EQ(sim_config(b)[0]["params"]["serial"], "SIM-B");
    EXPECT_EQ(bus_addresses(a), std::vector<std::string>{kAddr});
    EXPECT_EQ(bus_addresses(b), std::vector<std::string>{kAddr});

    const size_t first = GetParam() ? a : b, other = first == a ? b : a;
    EXPECT_EQ(call(first, "sim_nvme_delete", {{"traddr", kAddr}}), true);
    EXPECT_TRUE(bus_addresses(first).empty());
    EXPECT_EQ(bus_addresses(other), std::vector<std::string>{kAddr});
    stop(first);
    ASSERT_EQ(call(other, "sim_get_devices").size(), 1u);
    EXPECT_EQ(bus_addresses(other), std::vector<std::string>{kAddr});
    EXPECT_EQ(call(other, "sim_nvme_delete", {{"traddr", kAddr}}), true);
}

INSTANTIATE_TEST_SUITE_P(StopOrder, SimRpcTwoAppsTest, ::testing::Bool(),
                         [](const auto& info) {
                             return info.param ? "FirstStopsFirst" : "SecondStopsFirst";
                         });

}  // namespace
}  // namespace strata::hwemu
