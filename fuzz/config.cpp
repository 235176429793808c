// Fuzz target: arbitrary bytes as a JSON config file into the config parser and loader
// (a fresh App per input, so every input starts from the startup state like strata-tgt).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <strata/base/log.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_target.h"

namespace {

// Nothing is shared between inputs; the State only silences logging in a fuzzer process.
struct State {
    State() { strata::fuzz::quiet_logs(); }
};

int run_input(State&, const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto parsed = strata::rpc::App::parse_config_text(text);
    if (!parsed) return 0;
    const auto level = strata::log_global_level();
    {
        strata::runtime::SimScheduler sim(1, 1);
        strata::rpc::AppOptions opts;
        opts.config = std::move(*parsed);
        strata::rpc::App app(sim, opts);
        strata::stack::register_all_modules(app);
        bool done = false;
        app.start([&](strata::Result<void>) { done = true; });
        sim.run_until([&] { return done; }, 10'000'000'000);
        (void)app.save_config().dump();
    }
    strata::log_set_global_level(level);
    for (auto* c : strata::log_components()) c->set_level(std::nullopt);
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(State, run_input)
