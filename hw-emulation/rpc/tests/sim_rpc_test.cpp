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
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/stack/sim_apps.h>

namespace strata::hwemu {
namespace {

using Json = nlohmann::json;

constexpr const char* kAddr = "0000:05:00.0";

// Apps on one simulator (as two Python Worlds, or simulated hosts of one cluster).
class SimRpcTest : public stack::testing::SimAppsTest {
protected:
    void SetUp() override { start_sim(3); }
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

// Each App puts a device at the same address on its own bus (the sim PCI provider is per Host:
// with one process-wide provider the second App's bus would be refused); deleting one leaves
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
