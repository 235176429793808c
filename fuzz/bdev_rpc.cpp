// Fuzz target: arbitrary params to every bdev RPC (bdev_* methods of the registry, chosen by the
// first byte; the rest is the params JSON, or a string when it does not parse). The App runs on
// the simulator; after each input every bdev is unregistered so inputs stay independent.
// Invariants: no crash, no hang, every request gets a response.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_target.h"

namespace {

struct World {
    World() {
        strata::fuzz::quiet_logs();
        if (!strata::fuzz::env_ready()) std::abort();
        sim = std::make_unique<strata::runtime::SimScheduler>(1, 2);
        app = std::make_unique<strata::rpc::App>(*sim);
        strata::stack::register_all_modules(*app);
        bool done = false;
        app->start([&](strata::Result<void>) { done = true; });
        sim->run_until([&] { return done; });
        for (const auto& n : app->registry().names())
            if (n.rfind("bdev_", 0) == 0) methods.push_back(n);
    }
    void remove_all_bdevs() {
        strata::runtime::HostScope scope(app->host());  // bdev::list() below is the App's
        // Raids are module state that outlives their bdevs (configuring/offline): delete them
        // too, or each input would leave one behind.
        auto raids = app->call_method("bdev_raid_get_bdevs", {{"category", "all"}}, 10'000'000'000ull);
        if (auto it = raids.find("result"); it != raids.end() && it->is_array())
            for (const auto& r : *it)
                (void)app->call_method("bdev_raid_delete", {{"name", r["name"]}}, 10'000'000'000ull);
        for (int round = 0; round < 8; ++round) {
            auto bdevs = strata::bdev::list();
            if (bdevs.empty()) return;
            size_t pending = bdevs.size();
            (void)app->thread().post([&pending, bdevs] {
                for (auto* b : bdevs)
                    strata::bdev::unregister_bdev(b->name(), [&pending](strata::Result<void>) { --pending; });
            });
            sim->run_until([&] { return pending == 0; }, sim->now_ns() + 10'000'000'000ull);
        }
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    std::unique_ptr<strata::rpc::App> app;
    std::vector<std::string> methods;
};

// Sizes a fuzzer would otherwise turn into multi-GiB allocations of the sim backend.
bool too_big(const nlohmann::json& p) {
    if (!p.is_object()) return false;
    auto n = p.find("num_blocks");
    auto b = p.find("block_size");
    if (n != p.end() && n->is_number_unsigned() && n->get<uint64_t>() > (uint64_t{1} << 17)) return true;
    if (b != p.end() && b->is_number_unsigned() && b->get<uint64_t>() > 65536) return true;
    return false;
}

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size == 0 || w->methods.empty()) return 0;
    const std::string& method = w->methods[data[0] % w->methods.size()];
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    nlohmann::json params = nlohmann::json::parse(text, nullptr, false);
    if (params.is_discarded()) params = text;
    if (too_big(params)) return 0;
    nlohmann::json response = w->app->call_method(method, params, 10'000'000'000ull);
    if (!response.is_object() || (!response.contains("result") && !response.contains("error")))
        std::abort();  // every request is answered
    w->remove_all_bdevs();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
