// Fuzz target: sequences of lvol RPCs on a live lvstore. Each input is lines of
// "<method> <params JSON>"; a method name that is not an lvol method picks one by its bytes, and
// params that do not parse are sent as a string. Every input starts from a malloc base holding
// lvstore "lvs0" with a thin lvol "v"; afterwards every store is deleted and every bdev removed.
// Invariants: no crash or hang, every request answered, every lvol that bdev_lvol_get_lvols
// lists has its bdev registered under its UUID and "lvs/lvol" alias.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
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

using nlohmann::json;
constexpr uint64_t kTimeout = 30'000'000'000ull;

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
            if (n.rfind("bdev_lvol_", 0) == 0) methods.push_back(n);
        methods.push_back("bdev_get_bdevs");
    }
    json call(const std::string& m, json p) {
        json r = app->call_method(m, std::move(p), kTimeout);
        if (!r.is_object() || (!r.contains("result") && !r.contains("error"))) std::abort();
        return r;
    }
    void setup() {
        call("bdev_malloc_create", {{"name", "Malloc0"}, {"num_blocks", 32768}, {"block_size", 512}});
        call("bdev_lvol_create_lvstore",
             {{"bdev_name", "Malloc0"}, {"lvs_name", "lvs0"}, {"cluster_sz", 1 << 20}});
        call("bdev_lvol_create",
             {{"lvol_name", "v"}, {"size_in_mib", 4}, {"thin_provision", true}, {"lvs_name", "lvs0"}});
    }
    void check() {
        json lvols = call("bdev_lvol_get_lvols", json::object());
        if (!lvols.contains("result")) std::abort();
        for (const auto& l : lvols["result"]) {
            auto* b = strata::bdev::find(l["uuid"].get<std::string>());
            if (b == nullptr || strata::bdev::find(l["alias"].get<std::string>()) != b) std::abort();
        }
    }
    void teardown() {
        json stores = call("bdev_lvol_get_lvstores", json::object());
        if (stores.contains("result"))
            for (const auto& s : stores["result"]) call("bdev_lvol_delete_lvstore", {{"uuid", s["uuid"]}});
        for (int round = 0; round < 8; ++round) {
            auto bdevs = strata::bdev::list();
            if (bdevs.empty()) return;
            size_t pending = bdevs.size();
            (void)app->thread().post([&pending, bdevs] {
                for (auto* b : bdevs)
                    strata::bdev::unregister_bdev(b->name(), [&pending](strata::Result<void>) { --pending; });
            });
            sim->run_until([&] { return pending == 0; }, sim->now_ns() + kTimeout);
        }
    }
    const std::string& pick(const std::string& name) const {
        for (const auto& m : methods)
            if (m == name) return m;
        size_t h = 0;
        for (unsigned char c : name) h = h * 31 + c;
        return methods[h % methods.size()];
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    std::unique_ptr<strata::rpc::App> app;
    std::vector<std::string> methods;
};

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size > 4096) return 0;
    // bdev::find/list below reach the App's bdevs only inside its Host.
    strata::runtime::HostScope scope(w->app->host());
    w->setup();
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    std::string line;
    for (int n = 0; n < 16 && std::getline(in, line); ++n) {
        const size_t sp = line.find(' ');
        const std::string& method = w->pick(line.substr(0, sp));
        const std::string text = sp == std::string::npos ? "" : line.substr(sp + 1);
        json params = json::parse(text, nullptr, false);
        if (params.is_discarded()) params = text.empty() ? json::object() : json(text);
        w->call(method, std::move(params));
        w->check();
    }
    w->teardown();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
