// bdevperf: I/O load on bdevs through the bdev layer, like SPDK's bdevperf. The bdevs come from
// a JSON config (-c); one job per bdev per core of the mask drives queue-depth I/O and prints
// progress each second, then IOPS, MiB/s, failures, timeouts and latency (average, min, max,
// percentiles) per job. --sim runs everything under the seeded simulator in virtual time.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/base/random.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/rpc/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "../common/env_cli.h"

namespace {

using namespace strata;

enum class Workload { read, write, randread, randwrite, rw, randrw, verify, reset, unmap, flush };

std::optional<Workload> parse_workload(const std::string& w) {
    static const std::pair<const char*, Workload> names[] = {
        {"read", Workload::read},       {"write", Workload::write},   {"randread", Workload::randread},
        {"randwrite", Workload::randwrite}, {"rw", Workload::rw},     {"randrw", Workload::randrw},
        {"verify", Workload::verify},   {"reset", Workload::reset},   {"unmap", Workload::unmap},
        {"flush", Workload::flush}};
    for (const auto& [n, v] : names)
        if (w == n) return v;
    return std::nullopt;
}

// Latency histogram: 16 sub-buckets per power of two of nanoseconds (about 6% resolution).
struct Histogram {
    static constexpr int kSub = 16;
    std::array<uint64_t, 64 * kSub> buckets{};
    uint64_t count = 0, sum_ns = 0, min_ns = UINT64_MAX, max_ns = 0;
    static size_t index(uint64_t ns) {
        if (ns < kSub) return ns;
        const int top = 63 - std::countl_zero(ns);
        const uint64_t sub = (ns >> (top - 4)) & (kSub - 1);
        return static_cast<size_t>(top - 3) * kSub + sub;
    }
    static uint64_t value(size_t idx) {
        if (idx < kSub) return idx;
        const int top = static_cast<int>(idx / kSub) + 3;
        return (uint64_t{kSub} + idx % kSub) << (top - 4);
    }
    void add(uint64_t ns) {
        ++buckets[std::min(index(ns), buckets.size() - 1)];
        ++count;
        sum_ns += ns;
        min_ns = std::min(min_ns, ns);
        max_ns = std::max(max_ns, ns);
    }
    uint64_t percentile(double p) const {
        if (count == 0) return 0;
        const auto want = static_cast<uint64_t>(p / 100.0 * static_cast<double>(count));
        uint64_t seen = 0;
        for (size_t i = 0; i < buckets.size(); ++i) {
            seen += buckets[i];
            if (seen > want) return value(i);
        }
        return max_ns;
    }
};

struct Options {
    uint32_t qd = 1;
    uint64_t io_size = 4096;
    Workload workload = Workload::randread;
    std::string workload_name;
    uint32_t rw_read_pct = 50;
    double seconds = 5;
    std::vector<std::string> targets;
};

struct Job;

struct Slot {
    Job* job = nullptr;
    void* wbuf = nullptr;
    void* rbuf = nullptr;
    uint64_t offset_blocks = 0;
    uint64_t start_ns = 0;
    uint64_t seq = 0;
    bool verify_reading = false;
    bdev::IoWaitEntry wait{};
};

struct Job {
    std::string bdev_name;
    runtime::Thread* thread = nullptr;
    int core = 0;
    const Options* opt = nullptr;
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
    uint64_t io_blocks = 0, span_blocks = 0, next_offset = 0;
    uint32_t block_size = 0;
    std::vector<Slot> slots;
    Prng rng{1};
    bool stopping = false;
    uint32_t outstanding = 0;
    std::atomic<uint64_t> ios{0}, bytes{0}, errors{0}, miscompares{0}, timeouts{0};
    Histogram hist;
    std::atomic<bool> drained{false};
    uint64_t started_ns = 0, ended_ns = 0;
    std::string failure;
};

void submit(Slot& s);

void on_done(void* ctx, const bdev::IoStatus& st) {
    auto* s = static_cast<Slot*>(ctx);
    Job& j = *s->job;
    const uint64_t now = runtime::now_ns();
    if (!st.ok()) {
        j.errors.fetch_add(1, std::memory_order_relaxed);
    } else if (j.opt->workload == Workload::verify && !s->verify_reading) {
        // Written: read it back into the other buffer and compare.
        s->verify_reading = true;
        Status r = bdev::read(*j.desc, *j.ch, s->rbuf, s->offset_blocks, j.io_blocks, on_done, s);
        if (r.ok()) return;
        j.errors.fetch_add(1, std::memory_order_relaxed);
    } else if (j.opt->workload == Workload::verify) {
        if (std::memcmp(s->wbuf, s->rbuf, j.io_blocks * j.block_size) != 0) {
            if (j.miscompares.fetch_add(1) == 0)
                std::fprintf(stderr, "bdevperf: %s: miscompare at block %llu\n", j.bdev_name.c_str(),
                             static_cast<unsigned long long>(s->offset_blocks));
        }
    }
    if (st.ok()) {
        j.ios.fetch_add(1, std::memory_order_relaxed);
        j.bytes.fetch_add(j.io_blocks * j.block_size, std::memory_order_relaxed);
    }
    j.hist.add(now - s->start_ns);
    --j.outstanding;
    submit(*s);
}

void submit(Slot& s) {
    Job& j = *s.job;
    if (j.stopping) {
        if (j.outstanding == 0 && !j.drained.load()) {
            j.ended_ns = runtime::now_ns();
            j.drained.store(true);
        }
        return;
    }
    const Workload w = j.opt->workload;
    const bool random = w == Workload::randread || w == Workload::randwrite || w == Workload::randrw ||
                        w == Workload::verify || w == Workload::reset || w == Workload::unmap;
    const uint64_t slots_span = j.span_blocks / j.io_blocks;
    if (w == Workload::verify && slots_span >= j.slots.size()) {
        // Each slot owns a lane of the span, so no two slots have the same blocks in flight: a
        // device with real queues may reorder overlapping writes, and the read-back would see
        // the other slot's data.
        const uint64_t lanes = slots_span / j.slots.size();
        const auto lane = static_cast<uint64_t>(&s - j.slots.data());
        s.offset_blocks = ((j.rng.next() % lanes) * j.slots.size() + lane) * j.io_blocks;
    } else if (random) {
        s.offset_blocks = (j.rng.next() % slots_span) * j.io_blocks;
    } else {
        s.offset_blocks = j.next_offset;
        j.next_offset = (j.next_offset + j.io_blocks) % (slots_span * j.io_blocks);
    }
    bool is_read = w == Workload::read || w == Workload::randread || w == Workload::reset;
    if (w == Workload::rw || w == Workload::randrw) is_read = j.rng.next() % 100 < j.opt->rw_read_pct;
    s.start_ns = runtime::now_ns();
    s.verify_reading = false;
    Status st;
    if (w == Workload::verify) {
        ++s.seq;
        auto* p = static_cast<uint64_t*>(s.wbuf);
        const size_t words = j.io_blocks * j.block_size / 8;
        for (size_t i = 0; i < words; ++i) p[i] = (s.offset_blocks << 20) ^ (s.seq << 8) ^ i ^ 0x5A5A5A5A;
        st = bdev::write(*j.desc, *j.ch, s.wbuf, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (w == Workload::unmap) {
        st = bdev::unmap(*j.desc, *j.ch, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (w == Workload::flush) {
        st = (s.seq++ % 2 == 0) ? bdev::write(*j.desc, *j.ch, s.wbuf, s.offset_blocks, j.io_blocks, on_done, &s)
                                : bdev::flush(*j.desc, *j.ch, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (is_read) {
        st = bdev::read(*j.desc, *j.ch, s.rbuf, s.offset_blocks, j.io_blocks, on_done, &s);
    } else {
        st = bdev::write(*j.desc, *j.ch, s.wbuf, s.offset_blocks, j.io_blocks, on_done, &s);
    }
    if (st.ok()) {
        ++j.outstanding;
        return;
    }
    if (st.code() == Errc::busy) {  // no bdev_io free: try again when one is
        s.wait.fn = [](void* c) { submit(*static_cast<Slot*>(c)); };
        s.wait.ctx = &s;
        bdev::queue_io_wait(*j.ch, s.wait);
        return;
    }
    j.errors.fetch_add(1);
    if (j.failure.empty()) j.failure = st.to_string();
    if (j.outstanding == 0) {
        j.ended_ns = runtime::now_ns();
        j.drained.store(true);
    }
}

// ---- job lifecycle (on the job's Thread) ---------------------------------------------------

void start_job(Job& j) {
    auto d = bdev::open(j.bdev_name, true);
    if (!d) {
        j.failure = d.error().message();
        j.drained.store(true);
        return;
    }
    j.desc = std::move(*d);
    j.ch = j.desc->get_channel();
    bdev::Bdev& b = j.desc->bdev();
    j.block_size = b.block_size();
    j.io_blocks = std::max<uint64_t>(1, j.opt->io_size / j.block_size);
    j.span_blocks = b.num_blocks();
    if (j.ch == nullptr || j.io_blocks > j.span_blocks || j.opt->io_size % j.block_size != 0) {
        j.failure = j.ch == nullptr ? "no I/O channel"
                                    : fmt::format("I/O size {} does not fit bdev {} (block size {})",
                                                  j.opt->io_size, j.bdev_name, j.block_size);
        j.drained.store(true);
        return;
    }
    j.slots.resize(j.opt->qd);
    const size_t len = j.io_blocks * j.block_size;
    for (auto& s : j.slots) {
        s.job = &j;
        s.wbuf = *env::dma_alloc(len, 4096, true);
        s.rbuf = *env::dma_alloc(len, 4096, true);
        std::memset(s.wbuf, 0xA5, len);
    }
    j.started_ns = runtime::now_ns();
    for (auto& s : j.slots) submit(s);
}

void finish_job(Job& j) {
    for (auto& s : j.slots) {
        env::dma_free(s.wbuf);
        env::dma_free(s.rbuf);
    }
    j.slots.clear();
    if (j.ch) bdev::put_channel(j.ch);
    j.ch = nullptr;
    j.desc.reset();
}

void sleep_ms(int ms) {
    struct timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
    nanosleep(&ts, nullptr);
}

std::string mask_of(int core) { return fmt::format("0x{:x}", uint64_t{1} << (core & 63)); }

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"bdevperf: I/O load on Strata bdevs (SPDK bdevperf options)"};
    Options opt;
    std::string config_file, cpumask = "0x1", workload = "randread";
    bool sim = false;
    uint64_t seed = 1;
    strata::apps::EnvCli env_cli;
    cli.add_option("-q,--queue-depth", opt.qd, "I/O queue depth per job")->required()->check(CLI::Range(1u, 65536u));
    cli.add_option("-o,--io-size", opt.io_size, "I/O size in bytes")->required()->check(CLI::Range(uint64_t{512}, uint64_t{1} << 30));
    cli.add_option("-w,--workload", workload,
                   "read, write, randread, randwrite, rw, randrw, verify, reset, unmap, flush")->required();
    cli.add_option("-M,--rwmixread", opt.rw_read_pct, "Read percentage of rw/randrw")->check(CLI::Range(0u, 100u));
    cli.add_option("-t,--time", opt.seconds, "Run time in seconds")->required()->check(CLI::PositiveNumber);
    cli.add_option("-c,--json", config_file, "JSON config creating the bdevs")->required();
    cli.add_option("-m,--cpumask", cpumask, "Core mask: one job per bdev per core")->capture_default_str();
    cli.add_option("-T,--target", opt.targets, "Only this bdev (repeatable; default: every bdev that is not claimed)");
    cli.add_flag("--sim", sim, "Run under the seeded simulator (virtual time)");
    cli.add_option("--seed", seed, "Simulator seed")->capture_default_str();
    uint64_t sim_step_ns = 100;
    cli.add_option("--sim-step-ns", sim_step_ns,
                   "Simulator: virtual CPU time each scheduler step costs")->capture_default_str();
    strata::apps::add_env_options(cli, env_cli);
    CLI11_PARSE(cli, argc, argv);

    auto w = parse_workload(workload);
    if (!w) {
        std::fprintf(stderr, "bdevperf: -w '%s': unknown workload\n", workload.c_str());
        return 1;
    }
    opt.workload = *w;
    opt.workload_name = workload;
    auto cores = runtime::parse_core_mask(cpumask);
    if (!cores || cores->empty()) {
        std::fprintf(stderr, "bdevperf: -m '%s': bad core mask\n", cpumask.c_str());
        return 1;
    }
    if (auto r = strata::apps::init_env(env_cli, *cores); !r) {
        std::fprintf(stderr, "bdevperf: %s\n", r.error().message().c_str());
        return 1;
    }
    auto config = rpc::App::read_config_file(config_file);
    if (!config) {
        std::fprintf(stderr, "bdevperf: %s\n", config.error().message().c_str());
        return 1;
    }

    std::unique_ptr<runtime::Scheduler> sched;
    runtime::SimScheduler* simsched = nullptr;
    runtime::RealScheduler* real = nullptr;
    if (sim) {
        auto s = std::make_unique<runtime::SimScheduler>(seed, static_cast<uint32_t>(cores->size()));
        simsched = s.get();
        simsched->step_cost_ns = sim_step_ns;
        sched = std::move(s);
    } else {
        runtime::RealSchedulerOptions so;
        so.cores = *cores;
        so.pin = true;
        auto s = std::make_unique<runtime::RealScheduler>(so);
        real = s.get();
        sched = std::move(s);
    }
    // Drive either scheduler until pred() holds.
    auto wait_for = [&](const std::function<bool()>& pred) {
        if (simsched) {
            simsched->run_until(pred, UINT64_MAX);
        } else {
            while (!pred()) sleep_ms(1);
        }
    };

    rpc::AppOptions aopts;
    aopts.config = std::move(*config);
    int rc = 0;
    {
        rpc::App app(*sched, aopts);
        // This main lists the App's bdevs and makes the job Threads: in the App's Host.
        runtime::HostScope host_scope(app.host());
        rpc::register_all_modules(app);
        if (real) real->start();
        std::atomic<bool> started{false};
        std::optional<Result<void>> start_result;
        app.start([&](Result<void> r) {
            start_result = std::move(r);
            started.store(true);
        });
        wait_for([&] { return started.load(); });
        if (!start_result->ok()) {
            std::fprintf(stderr, "bdevperf: %s\n", start_result->error().message().c_str());
            rc = 1;
        }

        std::vector<std::unique_ptr<Job>> jobs;
        if (rc == 0) {
            std::vector<std::string> names = opt.targets;
            if (names.empty())
                for (bdev::Bdev* b : bdev::list())
                    if (std::string(b->claimed_by()).empty()) names.push_back(b->name());
            if (names.empty()) {
                std::fprintf(stderr, "bdevperf: the config creates no bdev to test\n");
                rc = 1;
            }
            for (size_t c = 0; c < cores->size() && rc == 0; ++c) {
                runtime::Thread* t = sched->create_thread(fmt::format("bdevperf_{}", (*cores)[c]),
                                                          static_cast<int>(c));
                for (const auto& n : names) {
                    auto j = std::make_unique<Job>();
                    j->bdev_name = n;
                    j->thread = t;
                    j->core = (*cores)[c];
                    j->opt = &opt;
                    j->rng.reseed(seed * 1000 + c * 31 + jobs.size());
                    jobs.push_back(std::move(j));
                }
            }
        }
        if (rc == 0) {
            std::printf("Running I/O for %g seconds%s...\n", opt.seconds, sim ? " (simulated)" : "");
            std::fflush(stdout);
            for (auto& j : jobs) {
                Job* jp = j.get();
                (void)jp->thread->post([jp] { start_job(*jp); });
            }
            // Progress each second, from the app Thread's clock (virtual under --sim).
            struct Progress {
                std::vector<std::unique_ptr<Job>>* jobs;
                uint64_t last_ios = 0, start = 0, ticks = 0;
                double seconds;
                std::atomic<bool> done{false};
                runtime::Poller* poller = nullptr;
            } prog{&jobs, 0, 0, 0, opt.seconds};
            (void)app.thread().post([&prog, &app] {
                prog.start = runtime::now_ns();
                prog.poller = app.thread().register_poller(
                    [](void* p) {
                        auto* pr = static_cast<Progress*>(p);
                        uint64_t ios = 0, bytes = 0;
                        for (auto& j : *pr->jobs) {
                            ios += j->ios.load(std::memory_order_relaxed);
                            bytes += j->bytes.load(std::memory_order_relaxed);
                        }
                        ++pr->ticks;
                        std::printf("[%3llus] %12.2f IOPS %10.2f MiB/s\n",
                                    static_cast<unsigned long long>(pr->ticks),
                                    static_cast<double>(ios - pr->last_ios),
                                    static_cast<double>(bytes) / static_cast<double>(pr->ticks) / 1048576.0);
                        std::fflush(stdout);
                        pr->last_ios = ios;
                        if (static_cast<double>(pr->ticks) >= pr->seconds) {
                            runtime::current_thread()->unregister_poller(pr->poller);
                            pr->done.store(true);
                        }
                        return runtime::PollStatus::idle;
                    },
                    &prog, "bdevperf_progress", 1'000'000'000);
            });
            wait_for([&] { return prog.done.load(); });
            for (auto& j : jobs) {
                Job* jp = j.get();
                (void)jp->thread->post([jp] {
                    jp->stopping = true;
                    if (jp->outstanding == 0 && !jp->drained.load()) {
                        jp->ended_ns = runtime::now_ns();
                        jp->drained.store(true);
                    }
                });
            }
            wait_for([&] {
                return std::all_of(jobs.begin(), jobs.end(), [](auto& j) { return j->drained.load(); });
            });
            std::atomic<size_t> finished{0};
            for (auto& j : jobs) {
                Job* jp = j.get();
                (void)jp->thread->post([jp, &finished] {
                    finish_job(*jp);
                    finished.fetch_add(1);
                });
            }
            wait_for([&] { return finished.load() == jobs.size(); });

            std::printf("\n%-28s: %10s %12s %10s %10s %8s %10s %10s %10s\n", "Latency(us) Device",
                        "runtime(s)", "IOPS", "MiB/s", "Fail/s", "TO/s", "Average", "min", "max");
            double total_iops = 0, total_mib = 0, total_fail = 0;
            Histogram all;
            for (auto& j : jobs) {
                if (!j->failure.empty()) {
                    std::printf("Job: %s (Core Mask %s): failed: %s\n", j->bdev_name.c_str(),
                                mask_of(j->core).c_str(), j->failure.c_str());
                    rc = 1;
                }
                const double secs = j->ended_ns > j->started_ns
                                        ? static_cast<double>(j->ended_ns - j->started_ns) / 1e9
                                        : opt.seconds;
                const double iops = static_cast<double>(j->ios.load()) / secs;
                const double mib = static_cast<double>(j->bytes.load()) / secs / 1048576.0;
                const double fail = static_cast<double>(j->errors.load()) / secs;
                const Histogram& h = j->hist;
                std::printf("Job: %s (Core Mask %s, workload %s, depth %u, IO size %llu)\n",
                            j->bdev_name.c_str(), mask_of(j->core).c_str(), opt.workload_name.c_str(),
                            opt.qd, static_cast<unsigned long long>(opt.io_size));
                std::printf("%-28s: %10.2f %12.2f %10.2f %10.2f %8.2f %10.2f %10.2f %10.2f\n",
                            ("  " + j->bdev_name).c_str(), secs, iops, mib, fail, 0.0,
                            h.count ? static_cast<double>(h.sum_ns) / static_cast<double>(h.count) / 1e3 : 0.0,
                            h.count ? static_cast<double>(h.min_ns) / 1e3 : 0.0,
                            static_cast<double>(h.max_ns) / 1e3);
                std::printf("%-28s  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  p99.99 %.2f (us)\n", "",
                            static_cast<double>(h.percentile(50)) / 1e3, static_cast<double>(h.percentile(90)) / 1e3,
                            static_cast<double>(h.percentile(99)) / 1e3, static_cast<double>(h.percentile(99.9)) / 1e3,
                            static_cast<double>(h.percentile(99.99)) / 1e3);
                if (j->miscompares.load() != 0) {
                    std::printf("%-28s  %llu miscompares\n", "",
                                static_cast<unsigned long long>(j->miscompares.load()));
                    rc = 1;
                }
                total_iops += iops;
                total_mib += mib;
                total_fail += fail;
            }
            std::printf("%s\n%-28s: %10s %12.2f %10.2f %10.2f %8.2f\n", std::string(110, '=').c_str(), "Total", "",
                        total_iops, total_mib, total_fail, 0.0);
            std::fflush(stdout);
        }
        jobs.clear();
        app.request_stop();
        wait_for([&] { return app.stopped(); });
        if (real) real->stop();
    }
    return rc;
}
