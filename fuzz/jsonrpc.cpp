// Fuzz target: arbitrary bytes into the JSON-RPC stream framer, request parser and dispatcher,
// in process, with the registry of every built-in method (and every module of the table).
// The first byte chooses where the stream is split, so partial reads are exercised too.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <strata/base/log.h>
#include <strata/rpc/app.h>
#include <strata/rpc/internal/framer.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_target.h"

namespace {

struct World {
    World() {
        strata::fuzz::quiet_logs();  // keep the fuzzer quiet
        sim = std::make_unique<strata::runtime::SimScheduler>(1, 2);
        app = std::make_unique<strata::rpc::App>(*sim);
        strata::stack::register_all_modules(*app);
        bool done = false;
        app->start([&](strata::Result<void>) { done = true; });
        sim->run_until([&] { return done; });
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    std::unique_ptr<strata::rpc::App> app;
};

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size == 0) return 0;
    size_t split = data[0] % (size);
    std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
    split = std::min(split, all.size());
    strata::rpc::StreamFramer framer;
    std::string value;
    auto drain = [&] {
        for (;;) {
            auto k = framer.next(value);
            if (k == strata::rpc::StreamFramer::Kind::value) {
                auto req = strata::rpc::Json::parse(value, nullptr, false);
                if (!req.is_discarded()) {
                    auto resp = w->app->call(req, 1'000'000'000);
                    if (!resp.is_discarded()) (void)resp.dump(-1, ' ', false,
                                                             strata::rpc::Json::error_handler_t::replace);
                }
                continue;
            }
            return k != strata::rpc::StreamFramer::Kind::garbage;
        }
    };
    framer.feed(all.substr(0, split));
    if (drain()) {
        framer.feed(all.substr(split));
        drain();
    }
    // The whole input as one raw stream too (handle_raw is what Python's World.request uses).
    (void)w->app->handle_raw(all, 1'000'000'000);
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
