// The target the NVMe-oF fuzz targets (nvmf_admin, nvmf_tcp_conn) run against: one App with
// every module on the simulator (logging silenced in a fuzzer process), a malloc bdev Malloc0 of
// 256 x 512 B, and subsystem `nqn` (any host allowed) with Malloc0 as its namespace. Part of the
// target's State (fuzz/fuzz_target.h): once per fuzzer process, once per strata.fuzz.Target in
// Python. Each target adds its transport (and listener) on the App's Thread with on_app().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/nvmf/nvmf.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_check.h"
#include "fuzz_target.h"

namespace strata::fuzz {

class NvmfFuzzApp {
public:
    NvmfFuzzApp(uint64_t seed, uint32_t reactors, const char* nqn) {
        quiet_logs();
        CHECK(env_ready());
        sim = std::make_unique<runtime::SimScheduler>(seed, reactors);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        bool started = false;
        app->start([&](Result<void> r) {
            CHECK(r.ok());
            started = true;
        });
        CHECK(sim->run_until([&] { return started; }, sim->now_ns() + kSetupNs));
        auto r = app->call_method("bdev_malloc_create",
                                  {{"name", "Malloc0"}, {"num_blocks", 256}, {"block_size", 512}});
        CHECK(r.contains("result"));
        on_app([&] {
            nvmf::SubsystemOptions so;
            so.nqn = nqn;
            so.allow_any_host = true;
            CHECK(nvmf::create_subsystem(so).ok());
            nvmf::NamespaceOptions no;
            no.bdev_name = "Malloc0";
            CHECK(nvmf::add_namespace(nqn, no).ok());
        });
    }

    // Runs fn on the App's Thread (set-up: at most kSetupNs of virtual time).
    template <class F>
    void on_app(F&& fn) {
        on(app->thread(), std::forward<F>(fn));
    }
    template <class F>
    void on(runtime::Thread& thread, F&& fn) {
        bool done = false;
        CHECK(thread
                  .post([&] {
                      fn();
                      done = true;
                  })
                  .ok());
        CHECK(sim->run_until([&] { return done; }, sim->now_ns() + kSetupNs));
    }

    static constexpr uint64_t kSetupNs = 10'000'000'000ull;
    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
};

}  // namespace strata::fuzz
