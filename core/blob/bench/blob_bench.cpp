// strata-blob-bench: blobstore metadata operations per second (create thin/thick, snapshot,
// clone, delete of a clone, delete of a snapshot merging into its clone, delete) on a malloc bdev
// under the simulator: the CPU cost of the metadata path, every update written and flushed.
#include <time.h>

#include <cstdio>
#include <optional>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/blob/blobstore.h>
#include <strata/env/env.h>
#include <strata/runtime/scheduler.h>

#include "malloc/malloc.h"

namespace {

using namespace strata;
// CPU time of this (the only) OS thread: the machine is shared, wall time would measure the
// neighbours.
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Bench {
    std::unique_ptr<runtime::SimScheduler> sim;
    runtime::Thread* t = nullptr;

    template <class T>
    T run(runtime::Task<T> task) {
        std::optional<T> out;
        runtime::spawn(*t, std::move(task), [&](T v) { out.emplace(std::move(v)); });
        sim->run_until([&] { return out.has_value(); });
        if (!out) {
            std::fprintf(stderr, "task did not finish\n");
            std::exit(1);
        }
        return std::move(*out);
    }
};

template <class T>
T check(Result<T> r, const char* what) {
    if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
        std::exit(1);
    }
    return std::move(*r);
}
void check(Result<void> r, const char* what) {
    if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
        std::exit(1);
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"blobstore metadata operations per second"};
    uint32_t count = 200, clusters = 16, cluster_kib = 64, size_mib = 512;
    app.add_option("-n,--count", count, "blobs per phase");
    app.add_option("-c,--clusters", clusters, "clusters per blob");
    app.add_option("--cluster-kib", cluster_kib, "cluster size in KiB");
    app.add_option("--size-mib", size_mib, "malloc bdev size in MiB");
    CLI11_PARSE(app, argc, argv);

    log_set_sink([](const LogRecord&) {});
    if (!env::init().ok()) return 1;
    Bench b;
    b.sim = std::make_unique<runtime::SimScheduler>(1, 1);
    b.t = b.sim->create_thread("bench");
    bool made = false;
    (void)b.t->post([&] {
        made = bdev::malloc_create({"Malloc0", uint64_t{size_mib} << 11, 512, {}, 0}).ok();
    });
    b.sim->run_until_idle();
    if (!made) return 1;
    blob::BsOptions o;
    o.cluster_sz = cluster_kib << 10;
    o.num_md_pages = count * 16;
    auto bs = check(b.run(blob::BlobStore::init("Malloc0", o)), "init");

    std::vector<blob::BlobId> thin, thick, snaps, clones;
    auto phase = [&](const char* name, auto&& body) {
        const double t0 = cpu_seconds();
        for (uint32_t i = 0; i < count; ++i) body(i);
        const double s = cpu_seconds() - t0;
        fmt::print("{:<36} {:>6} ops {:>10.0f} ops/s (CPU) {:>8.1f} us/op\n", name, count, count / s,
                   s * 1e6 / count);
    };
    fmt::print("blobstore metadata: {} MiB malloc, {} KiB clusters, {} clusters per blob\n", size_mib,
               cluster_kib, clusters);
    phase("create (thin)", [&](uint32_t) {
        thin.push_back(check(b.run(bs->create_blob({clusters, true, {}})), "create thin"));
    });
    phase("create (thick, zeroed clusters)", [&](uint32_t) {
        thick.push_back(check(b.run(bs->create_blob({clusters, false, {}})), "create thick"));
    });
    phase("snapshot (of a thick blob)", [&](uint32_t i) {
        snaps.push_back(check(b.run(bs->create_snapshot(thick[i])), "snapshot"));
    });
    phase("clone (of a snapshot)", [&](uint32_t i) {
        clones.push_back(check(b.run(bs->create_clone(snaps[i])), "clone"));
    });
    phase("delete (clone)", [&](uint32_t i) { check(b.run(bs->delete_blob(clones[i])), "delete clone"); });
    phase("delete (snapshot, merge into clone)", [&](uint32_t i) {
        check(b.run(bs->delete_blob(snaps[i])), "delete snapshot");
    });
    phase("delete (thick)", [&](uint32_t i) { check(b.run(bs->delete_blob(thick[i])), "delete"); });
    phase("delete (thin)", [&](uint32_t i) { check(b.run(bs->delete_blob(thin[i])), "delete"); });
    check(b.run(bs->unload()), "unload");
    (void)b.t->post([&] { bs.reset(); });
    b.sim->run_until_idle();
    return 0;
}
