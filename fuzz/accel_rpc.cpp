// Fuzz target: arbitrary params to the accel RPCs and the emulated I/OAT ones (accel_*,
// ioat_scan_accel_module, sim_ioat_*; chosen by the first byte, the rest is the params JSON, or a
// string when it does not parse). The App runs on the simulator; after each input the opcode
// assignments are cleared and every emulated I/OAT channel is deleted, so inputs stay
// independent. Invariants: no crash, no hang, every request gets a response.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/accel/accel.h>
#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
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
            if (n.rfind("accel_", 0) == 0 || n.rfind("sim_ioat_", 0) == 0 ||
                n == "ioat_scan_accel_module")
                methods.push_back(n);
    }
    void reset() {
        strata::accel::clear_assignments();
        auto devs = app->call_method("sim_get_devices", nullptr, 10'000'000'000ull);
        if (!devs.contains("result") || !devs["result"].is_array()) return;
        for (const auto& d : devs["result"])
            if (d.value("type", "") == "ioat")
                (void)app->call_method("sim_ioat_delete", {{"traddr", d["traddr"]}},
                                       10'000'000'000ull);
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    std::unique_ptr<strata::rpc::App> app;
    std::vector<std::string> methods;
};

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size == 0 || w->methods.empty()) return 0;
    const std::string& method = w->methods[data[0] % w->methods.size()];
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    nlohmann::json params = nlohmann::json::parse(text, nullptr, false);
    if (params.is_discarded()) params = text;
    nlohmann::json response = w->app->call_method(method, params, 10'000'000'000ull);
    if (!response.is_object() || (!response.contains("result") && !response.contains("error")))
        std::abort();  // every request is answered
    w->reset();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
