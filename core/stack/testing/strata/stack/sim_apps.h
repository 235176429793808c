// Test helper: several Apps with every module on one simulator, each with its own Host, as
// several Python Worlds in one process or the hosts of one simulated cluster. Shared by the
// tests that check module state stays per App (lvol, sim RPCs, ...).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::stack::testing {

class SimAppsTest : public ::testing::Test {
protected:
    using Json = nlohmann::json;

    // Call from SetUp (or the test): the simulator the Apps share.
    void start_sim(uint64_t seed, uint32_t reactors = 2) {
        ASSERT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(seed, reactors);
    }
    void TearDown() override {
        for (size_t i = 0; i < apps.size(); ++i) stop(i);
        sim.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }

    // A started App with every module; its Host is named `host_name` (distinct names give
    // distinct PRNG streams, hence distinct UUIDs, under one seed), `config` loaded at start
    // (as strata-tgt -c would). Returns its index.
    size_t add_app(const std::string& host_name, std::optional<Json> config = std::nullopt) {
        rpc::AppOptions o;
        o.host_name = host_name;
        o.config = std::move(config);
        auto& app = apps.emplace_back(std::make_unique<rpc::App>(*sim, std::move(o)));
        {
            runtime::HostScope scope(app->host());
            stack::register_all_modules(*app);
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
    // The whole response, and the result of a call expected to succeed.
    Json rpc(size_t i, const std::string& method, Json params = Json::object()) {
        return apps[i]->call_method(method, std::move(params));
    }
    Json call(size_t i, const std::string& method, Json params = Json::object()) {
        Json r = rpc(i, method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << "app " << i << ": " << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::vector<std::unique_ptr<rpc::App>> apps;
};

}  // namespace strata::stack::testing
