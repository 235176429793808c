// strata-lvol-bench: lvol metadata operations per second through the RPC methods (create thin
// and thick, snapshot, clone, delete of a clone, of a snapshot merging into its one clone, of
// thick and thin lvols) on an lvstore over a malloc bdev, under the simulator: the CPU cost of
// each operation as a user pays it — JSON-RPC dispatch, the lvol layer, the blobstore's metadata
// writes and flushes, and the bdev registration or removal of the lvol.
#include <time.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

namespace {

using namespace strata;
using nlohmann::json;

// CPU time of this (the only) OS thread: the machine is shared, wall time would measure the
// neighbours.
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

json call(rpc::App& app, const std::string& m, json p) {
    json r = app.call_method(m, std::move(p));
    if (!r.contains("result")) {
        std::fprintf(stderr, "%s: %s\n", m.c_str(), r.dump().c_str());
        std::exit(1);
    }
    return r["result"];
}

void phase(const char* what, uint32_t n, const std::function<void(uint32_t)>& op) {
    const double t0 = cpu_seconds();
    for (uint32_t i = 0; i < n; ++i) op(i);
    const double dt = cpu_seconds() - t0;
    std::printf("%-44s %8.1f k ops/s %8.1f us/op\n", what, n / dt / 1e3, dt / n * 1e6);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"lvol metadata operations per second"};
    uint32_t count = 200, size_mib = 1, cluster_kib = 64, base_mib = 512;
    cli.add_option("-n,--count", count, "lvols per phase");
    cli.add_option("--size-mib", size_mib, "lvol size in MiB");
    cli.add_option("--cluster-kib", cluster_kib, "cluster size in KiB");
    cli.add_option("--base-mib", base_mib, "malloc bdev size in MiB");
    CLI11_PARSE(cli, argc, argv);

    log_set_sink([](const LogRecord&) {});
    if (!env::init().ok()) return 1;
    runtime::SimScheduler sim(1, 1);
    rpc::App app(sim);
    stack::register_all_modules(app);
    bool started = false;
    app.start([&](Result<void>) { started = true; });
    sim.run_until([&] { return started; });

    call(app, "bdev_malloc_create",
         {{"name", "Malloc0"}, {"num_blocks", uint64_t{base_mib} << 8}, {"block_size", 4096}});
    call(app, "bdev_lvol_create_lvstore",
         {{"bdev_name", "Malloc0"}, {"lvs_name", "lvs0"}, {"cluster_sz", cluster_kib * 1024},
          {"clear_method", "none"}});
    auto name = [](const char* p, uint32_t i) { return fmt::format("{}{}", p, i); };
    auto create = [&](const char* p, bool thin) {
        return [&, p, thin](uint32_t i) {
            call(app, "bdev_lvol_create", {{"lvol_name", name(p, i)}, {"size_in_mib", size_mib},
                                           {"thin_provision", thin}, {"lvs_name", "lvs0"}});
        };
    };
    auto del = [&](const char* p) {
        return [&, p](uint32_t i) { call(app, "bdev_lvol_delete", {{"name", "lvs0/" + name(p, i)}}); };
    };
    std::printf("%u lvols of %u MiB per phase, clusters of %u KiB, %u MiB malloc\n", count,
                size_mib, cluster_kib, base_mib);
    phase("create, thin", count, create("thin", true));
    phase("create, thick", count, create("thick", false));
    phase("snapshot of a thick lvol", count, [&](uint32_t i) {
        call(app, "bdev_lvol_snapshot",
             {{"lvol_name", "lvs0/" + name("thick", i)}, {"snapshot_name", name("snap", i)}});
    });
    phase("clone of a snapshot", count, [&](uint32_t i) {
        call(app, "bdev_lvol_clone",
             {{"snapshot_name", "lvs0/" + name("snap", i)}, {"clone_name", name("clone", i)}});
    });
    phase("delete of a clone", count, del("clone"));
    phase("delete of a snapshot (merge into its clone)", count, del("snap"));
    phase("delete, thick", count, del("thick"));
    phase("delete, thin", count, del("thin"));

    app.request_stop();
    sim.run_until([&] { return app.stopped(); });
    return 0;
}
