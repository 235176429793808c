// Fuzz target: sequences of raid control operations (the raid module's state machine) on a
// simulated App: base bdevs created and deleted under raids, raids of every level created over
// present and missing members, members added and removed, raids deleted, save_config, in the
// order the input gives. Each input byte pair is one operation. Invariants: no crash, no hang,
// every request answered, and after cleanup no raid or bdev is left behind.
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

using nlohmann::json;

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
    }
    json call(const char* method, json params) {
        json r = app->call_method(method, std::move(params), 10'000'000'000ull);
        if (!r.is_object() || (!r.contains("result") && !r.contains("error"))) std::abort();
        return r;
    }
    void settle() { sim->run_until([] { return false; }, sim->now_ns() + 5'000'000); }
    void cleanup() {
        strata::runtime::HostScope scope(app->host());  // bdev::list() below is the App's
        json raids = call("bdev_raid_get_bdevs", {{"category", "all"}});
        for (const auto& r : raids["result"]) call("bdev_raid_delete", {{"name", r["name"]}});
        for (int round = 0; round < 8 && !strata::bdev::list().empty(); ++round) {
            auto bdevs = strata::bdev::list();
            size_t pending = bdevs.size();
            (void)app->thread().post([&pending, bdevs] {
                for (auto* b : bdevs)
                    strata::bdev::unregister_bdev(b->name(), [&pending](strata::Result<void>) { --pending; });
            });
            sim->run_until([&] { return pending == 0; }, sim->now_ns() + 10'000'000'000ull);
        }
        if (!strata::bdev::list().empty()) std::abort();
        if (!call("bdev_raid_get_bdevs", {{"category", "all"}})["result"].empty()) std::abort();
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    std::unique_ptr<strata::rpc::App> app;
};

std::string base(unsigned i) { return "B" + std::to_string(i % 6); }
std::string raid(unsigned i) { return "R" + std::to_string(i % 3); }

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    for (size_t i = 0; i + 1 < size && i < 128; i += 2) {
        const unsigned op = data[i] % 10, arg = data[i + 1];
        switch (op) {
            case 0:
            case 1:  // a base bdev of 64..(64 + 7*32) blocks
                w->call("bdev_malloc_create",
                        {{"name", base(arg)}, {"num_blocks", 64 + (arg >> 5) * 32}, {"block_size", 512}});
                break;
            case 2: w->call("bdev_malloc_delete", {{"name", base(arg)}}); break;
            case 3: {  // a raid over the members of a bit mask, level and strip from the arg
                json members = json::array();
                for (unsigned b = 0; b < 4; ++b)
                    if ((arg >> (b + 2)) & 1) members.push_back(base(b + (arg & 1) * 2));
                static const char* levels[] = {"raid0", "raid1", "concat", "1"};
                json p = {{"name", raid(arg >> 6)}, {"raid_level", levels[arg & 3]}, {"base_bdevs", members}};
                if ((arg & 3) != 1 && (arg & 3) != 3) p["strip_size_kb"] = 1u << (arg % 5);
                w->call("bdev_raid_create", p);
                break;
            }
            case 4: w->call("bdev_raid_delete", {{"name", raid(arg)}}); break;
            case 5: w->call("bdev_raid_add_base_bdev", {{"raid_bdev", raid(arg)}, {"base_bdev", base(arg >> 2)}}); break;
            case 6: w->call("bdev_raid_remove_base_bdev", {{"name", base(arg)}}); break;
            case 7: w->call("bdev_raid_get_bdevs", {{"category", "all"}}); break;
            case 8: (void)w->app->call_method("save_config", nullptr); break;
            case 9: w->settle(); break;
        }
    }
    w->settle();
    w->cleanup();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
