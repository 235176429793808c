// bdevperf: I/O load on bdevs through the bdev layer, with SPDK bdevperf's command line
// (examples/bdev/bdevperf in SPDK v24.09). The bdevs come from a JSON config (-c/--json). Without
// -C each bdev gets one job, the jobs spread over the cores of the mask; with -C every core runs
// a job on every bdev. It prints progress each period (-S, -P), then per job IOPS, MiB/s,
// failures, timeouts and latency (average, min, max); -l adds SPDK's percentile summary, -ll
// SPDK's latency histogram buckets. -z waits for `perform_tests` over JSON-RPC (-r socket, as
// SPDK's bdevperf.py sends it) and answers with SPDK's result object; --json-output writes the
// same object to a file. --sim runs everything under the seeded simulator in virtual time.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <strata/base/log.h>
#include <strata/base/random.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "../common/env_cli.h"
#include "../common/stop_signals.h"
#include "histogram.h"

namespace {

using namespace strata;
using apps::SpdkHistogram;

enum class Workload {
    read,
    write,
    randread,
    randwrite,
    rw,
    randrw,
    verify,
    reset,
    unmap,
    flush,
    write_zeroes
};

std::optional<Workload> parse_workload(const std::string& w) {
    static const std::pair<const char*, Workload> names[] = {
        {"read", Workload::read},
        {"write", Workload::write},
        {"randread", Workload::randread},
        {"randwrite", Workload::randwrite},
        {"rw", Workload::rw},
        {"randrw", Workload::randrw},
        {"verify", Workload::verify},
        {"reset", Workload::reset},
        {"unmap", Workload::unmap},
        {"flush", Workload::flush},
        {"write_zeroes", Workload::write_zeroes}};
    for (const auto& [n, v] : names)
        if (w == n) return v;
    return std::nullopt;
}

// SPDK's spdk_parse_capacity: a number with an optional binary suffix (4096, 4k, 4KiB, 1M, 1g).
std::optional<uint64_t> parse_capacity(const std::string& s) {
    size_t pos = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
    if (pos == 0 || pos > 18) return std::nullopt;
    uint64_t v = std::stoull(s.substr(0, pos));
    std::string suf = s.substr(pos);
    for (auto& c : suf) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    static const std::pair<const char*, int> units[] = {
        {"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
        {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}};
    for (const auto& [u, shift] : units)
        if (suf == u) return v << shift;
    return std::nullopt;
}

// What a run does. The command line fills it; perform_tests overrides members for later runs.
struct Options {
    uint32_t qd = 0;
    uint64_t io_size = 0;
    std::string workload_name;
    Workload workload = Workload::randread;
    int rw_read_pct = 50;
    bool mix_specified = false;
    double seconds = 0;
    std::vector<std::string> targets;
    bool multithread = false;          // -C
    bool continue_on_failure = false;  // -f
    uint32_t period_s = 1;             // -S
    bool summarize = true;             // no -S: one total line per second
    uint32_t ema_period = 0;           // -P
    int latency_level = 0;             // -l, -ll
};

// SPDK's verify_test_params: "" when the options describe a run.
std::string check_options(Options& o) {
    if (o.qd == 0) return "-q (queue depth) is required";
    if (o.qd > 65536) return "-q must be at most 65536";
    if (o.io_size == 0) return "-o (I/O size) is required";
    if (o.io_size < 512 || o.io_size > (uint64_t{1} << 30))
        return "-o must be between 512 and 1 GiB";
    if (o.workload_name.empty()) return "-w (workload) is required";
    auto w = parse_workload(o.workload_name);
    if (!w) return fmt::format("-w '{}': unknown workload", o.workload_name);
    o.workload = *w;
    if (o.seconds <= 0) return "-t (time in seconds) is required and must be positive";
    if ((o.workload == Workload::rw || o.workload == Workload::randrw) &&
        (o.rw_read_pct < 0 || o.rw_read_pct > 100))
        return "-M must be from 0 to 100 for rw or randrw";
    if (o.ema_period > 0 && o.summarize) return "-P option must be specified with -S option";
    return "";
}

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
    uint64_t slots_span = 0;  // span_blocks / io_blocks, computed once (no division per I/O)
    uint64_t span_mask = 0;   // slots_span - 1 when slots_span is a power of two, else 0
    uint32_t block_size = 0;
    std::vector<Slot> slots;
    Prng rng{1};
    bool stopping = false;
    uint32_t outstanding = 0;
    std::atomic<uint64_t> ios{0}, bytes{0}, errors{0}, miscompares{0}, timeouts{0};
    SpdkHistogram hist;
    uint64_t lat_sum_ns = 0, lat_min_ns = UINT64_MAX, lat_max_ns = 0, lat_count = 0;
    std::atomic<bool> drained{false};
    uint64_t started_ns = 0, ended_ns = 0;
    std::string failure;
    double ema_iops = 0;
    uint64_t last_ios = 0;
};

void submit(Slot& s);

void fail_job(Job& j) {
    // SPDK without -f: the first failed I/O ends the job (status "failed").
    if (!j.opt->continue_on_failure && j.opt->workload != Workload::reset) j.stopping = true;
}

void on_done(void* ctx, const bdev::IoStatus& st) {
    auto* s = static_cast<Slot*>(ctx);
    Job& j = *s->job;
    const uint64_t now = runtime::poll_now_ns();
    const Workload w = j.opt->workload;
    if (!st.ok()) {
        j.errors.fetch_add(1, std::memory_order_relaxed);
        fail_job(j);
    } else if (w == Workload::verify && !s->verify_reading) {
        // Written: read it back into the other buffer and compare.
        s->verify_reading = true;
        Status r = bdev::read(*j.desc, *j.ch, s->rbuf, s->offset_blocks, j.io_blocks, on_done, s);
        if (r.ok()) return;
        j.errors.fetch_add(1, std::memory_order_relaxed);
        fail_job(j);
    } else if (w == Workload::verify) {
        if (std::memcmp(s->wbuf, s->rbuf, j.io_blocks * j.block_size) != 0) {
            if (j.miscompares.fetch_add(1) == 0)
                std::fprintf(stderr, "bdevperf: %s: miscompare at block %llu\n",
                             j.bdev_name.c_str(),
                             static_cast<unsigned long long>(s->offset_blocks));
            fail_job(j);
        }
    }
    if (st.ok()) {
        // The job's Thread is the only writer (the reporters only read): a plain load and store,
        // no locked read-modify-write per I/O.
        j.ios.store(j.ios.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        j.bytes.store(j.bytes.load(std::memory_order_relaxed) + j.io_blocks * j.block_size,
                      std::memory_order_relaxed);
    }
    const uint64_t lat = now > s->start_ns ? now - s->start_ns : 0;
    j.hist.tally(lat);
    j.lat_sum_ns += lat;
    ++j.lat_count;
    j.lat_min_ns = std::min(j.lat_min_ns, lat);
    j.lat_max_ns = std::max(j.lat_max_ns, lat);
    --j.outstanding;
    submit(*s);
}

void mark_drained(Job& j) {
    if (j.outstanding == 0 && !j.drained.load()) {
        j.ended_ns = runtime::now_ns();
        j.drained.store(true);
    }
}

void submit(Slot& s) {
    Job& j = *s.job;
    if (j.stopping) {
        mark_drained(j);
        return;
    }
    const Workload w = j.opt->workload;
    const bool random = w == Workload::randread || w == Workload::randwrite ||
                        w == Workload::randrw || w == Workload::verify || w == Workload::reset ||
                        w == Workload::unmap;
    const uint64_t slots_span = j.slots_span;
    if (w == Workload::verify && slots_span >= j.slots.size()) {
        // Each slot owns a lane of the span, so no two slots have the same blocks in flight: a
        // device with real queues may reorder overlapping writes, and the read-back would see
        // the other slot's data.
        const uint64_t lanes = slots_span / j.slots.size();
        const auto lane = static_cast<uint64_t>(&s - j.slots.data());
        s.offset_blocks = ((j.rng.next() % lanes) * j.slots.size() + lane) * j.io_blocks;
    } else if (random) {
        // The same offsets either way; the mask spares a 64-bit division per I/O.
        const uint64_t r = j.rng.next();
        s.offset_blocks = (j.span_mask != 0 ? r & j.span_mask : r % slots_span) * j.io_blocks;
    } else {
        s.offset_blocks = j.next_offset;
        j.next_offset = (j.next_offset + j.io_blocks) % (slots_span * j.io_blocks);
    }
    bool is_read = w == Workload::read || w == Workload::randread || w == Workload::reset;
    if (w == Workload::rw || w == Workload::randrw)
        is_read = j.rng.next() % 100 < static_cast<uint64_t>(j.opt->rw_read_pct);
    s.start_ns = runtime::poll_now_ns();
    s.verify_reading = false;
    Status st;
    if (w == Workload::verify) {
        ++s.seq;
        auto* p = static_cast<uint64_t*>(s.wbuf);
        const size_t words = j.io_blocks * j.block_size / 8;
        for (size_t i = 0; i < words; ++i)
            p[i] = (s.offset_blocks << 20) ^ (s.seq << 8) ^ i ^ 0x5A5A5A5A;
        st = bdev::write(*j.desc, *j.ch, s.wbuf, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (w == Workload::unmap) {
        st = bdev::unmap(*j.desc, *j.ch, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (w == Workload::write_zeroes) {
        st = bdev::write_zeroes(*j.desc, *j.ch, s.offset_blocks, j.io_blocks, on_done, &s);
    } else if (w == Workload::flush) {
        st = (s.seq++ % 2 == 0)
                 ? bdev::write(*j.desc, *j.ch, s.wbuf, s.offset_blocks, j.io_blocks, on_done, &s)
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
    j.stopping = true;  // a submission error repeats: never spin on it
    mark_drained(j);
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
    j.slots_span = j.span_blocks / j.io_blocks;
    j.span_mask = std::has_single_bit(j.slots_span) ? j.slots_span - 1 : 0;
    if (j.ch == nullptr || j.io_blocks > j.span_blocks || j.opt->io_size % j.block_size != 0) {
        j.failure = j.ch == nullptr
                        ? "no I/O channel"
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
    struct timespec ts {
        ms / 1000, (ms % 1000) * 1'000'000L
    };
    nanosleep(&ts, nullptr);
}

std::string mask_of(int core) {
    return fmt::format("0x{:x}", uint64_t{1} << (core & 63));
}

void on_signal(int) {
    rpc::App::request_stop_from_signal();
}

// SPDK's g_latency_cutoffs (the -l summary).
constexpr double kCutoffs[] = {0.01, 0.10,  0.25,  0.50,   0.75,    0.90,     0.95,     0.98,
                               0.99, 0.995, 0.999, 0.9999, 0.99999, 0.999999, 0.9999999};

void print_latency_summary(const SpdkHistogram& h) {
    size_t c = 0;
    h.iterate([&](uint64_t, uint64_t end, uint64_t count, uint64_t total, uint64_t so_far) {
        if (count == 0) return;
        const double pct = static_cast<double>(so_far) / static_cast<double>(total);
        while (c < std::size(kCutoffs) && pct >= kCutoffs[c]) {
            std::printf("%9.5f%% : %9.3fus\n", kCutoffs[c] * 100, static_cast<double>(end) / 1e3);
            ++c;
        }
    });
}

void print_latency_buckets(const SpdkHistogram& h) {
    h.iterate([](uint64_t start, uint64_t end, uint64_t count, uint64_t total, uint64_t so_far) {
        if (count == 0) return;
        std::printf("%9.3f - %9.3f: %9.4f%%  (%9llu)\n", static_cast<double>(start) / 1e3,
                    static_cast<double>(end) / 1e3,
                    static_cast<double>(so_far) * 100 / static_cast<double>(total),
                    static_cast<unsigned long long>(count));
    });
}

// The non-empty buckets as [start_us, end_us, count]: what scripts/plot-latency.py draws.
rpc::Json histogram_json(const SpdkHistogram& h) {
    rpc::Json buckets = rpc::Json::array();
    h.iterate([&](uint64_t start, uint64_t end, uint64_t count, uint64_t, uint64_t) {
        if (count != 0)
            buckets.push_back(
                {static_cast<double>(start) / 1e3, static_cast<double>(end) / 1e3, count});
    });
    return {
        {"bucket_shift", SpdkHistogram::kShift}, {"unit", "us"}, {"buckets", std::move(buckets)}};
}

// Everything one run needs that outlives it: the scheduler, the App, the per-core Threads.
struct Runner {
    runtime::Scheduler* sched = nullptr;
    runtime::SimScheduler* sim = nullptr;
    rpc::App* app = nullptr;
    std::vector<int> cores;
    std::vector<runtime::Thread*> threads;
    uint64_t seed = 1;
    uint64_t runs = 0;

    void wait_for(const std::function<bool()>& pred) const {
        if (sim) {
            sim->run_until(pred, UINT64_MAX);
        } else {
            while (!pred()) sleep_ms(1);
        }
    }
};

struct RunResult {
    int rc = 0;
    std::string error;  // set when no job ran at all
    rpc::Json json;     // SPDK's perform_tests result: {"results":[...],"core_count":N}
};

RunResult run_tests(Runner& r, const Options& opt) {
    RunResult res;
    std::vector<std::unique_ptr<Job>> jobs;
    std::vector<std::string> names = opt.targets;
    if (names.empty())
        for (bdev::Bdev* b : bdev::list())
            if (std::string(b->claimed_by()).empty()) names.push_back(b->name());
    if (names.empty()) {
        res.rc = 1;
        res.error = "the config creates no bdev to test";
        return res;
    }
    ++r.runs;
    auto add_job = [&](const std::string& n, size_t c) {
        auto j = std::make_unique<Job>();
        j->bdev_name = n;
        j->thread = r.threads[c];
        j->core = r.cores[c];
        j->opt = &opt;
        j->rng.reseed(r.seed * 1000 + c * 31 + jobs.size() + r.runs * 7919);
        jobs.push_back(std::move(j));
    };
    if (opt.multithread) {  // -C: every core on every bdev
        for (size_t c = 0; c < r.cores.size(); ++c)
            for (const auto& n : names) add_job(n, c);
    } else {  // one job per bdev, round robin over the cores
        for (size_t i = 0; i < names.size(); ++i) add_job(names[i], i % r.cores.size());
    }

    std::printf("Running I/O for %g seconds%s...\n", opt.seconds, r.sim ? " (simulated)" : "");
    std::fflush(stdout);
    for (auto& j : jobs) {
        Job* jp = j.get();
        (void)jp->thread->post([jp] { start_job(*jp); });
    }
    // Progress each period, from the app Thread's clock (virtual under --sim).
    struct Progress {
        std::vector<std::unique_ptr<Job>>* jobs;
        const Options* opt;
        double period = 1;  // seconds between reports: the -S period, or -t when shorter
        uint64_t last_ios = 0, ticks = 0;
        std::atomic<bool> done{false};
        runtime::Poller* poller = nullptr;
    } prog{&jobs, &opt};
    prog.period = std::min<double>(opt.summarize ? 1 : std::max(1u, opt.period_s), opt.seconds);
    const auto period_ns = static_cast<uint64_t>(prog.period * 1e9);
    rpc::App& app = *r.app;
    (void)app.thread().post([&prog, &app, period_ns] {
        prog.poller = app.thread().register_poller(
            [](void* p) {
                auto* pr = static_cast<Progress*>(p);
                const Options& o = *pr->opt;
                const double period = pr->period;
                ++pr->ticks;
                const double elapsed = static_cast<double>(pr->ticks) * period;
                if (o.summarize) {
                    uint64_t ios = 0, bytes = 0;
                    for (auto& j : *pr->jobs) {
                        ios += j->ios.load(std::memory_order_relaxed);
                        bytes += j->bytes.load(std::memory_order_relaxed);
                    }
                    std::printf("[%3llus] %12.2f IOPS %10.2f MiB/s\n",
                                static_cast<unsigned long long>(pr->ticks),
                                static_cast<double>(ios - pr->last_ios) / period,
                                static_cast<double>(bytes) / elapsed / 1048576.0);
                    pr->last_ios = ios;
                } else {
                    // -S: every job each period; -P n: the moving average SPDK shows.
                    std::printf("%-28s: %10s %12s\n",
                                fmt::format("[{:3}s] Device", pr->ticks * period).c_str(), "IOPS",
                                o.ema_period ? "EMA IOPS" : "");
                    for (auto& j : *pr->jobs) {
                        const uint64_t ios = j->ios.load(std::memory_order_relaxed);
                        const double iops = static_cast<double>(ios - j->last_ios) / period;
                        j->last_ios = ios;
                        if (o.ema_period) {
                            const double m = 2.0 / (o.ema_period + 1);
                            j->ema_iops = pr->ticks == 1 ? iops : iops * m + (1 - m) * j->ema_iops;
                        }
                        std::printf("%-28s: %10.2f %12s\n", ("  " + j->bdev_name).c_str(), iops,
                                    o.ema_period ? fmt::format("{:.2f}", j->ema_iops).c_str() : "");
                    }
                }
                std::fflush(stdout);
                if (elapsed >= o.seconds) {
                    runtime::current_thread()->unregister_poller(pr->poller);
                    pr->done.store(true);
                }
                return runtime::PollStatus::idle;
            },
            &prog, "bdevperf_progress", period_ns);
    });
    r.wait_for([&] {
        return prog.done.load() || app.stop_requested() ||
               std::all_of(jobs.begin(), jobs.end(), [](auto& j) { return j->drained.load(); });
    });
    const bool terminated = !prog.done.load() && app.stop_requested();
    if (!prog.done.load()) {
        std::atomic<bool> gone{false};
        (void)app.thread().post([&prog, &gone] {
            if (prog.poller) runtime::current_thread()->unregister_poller(prog.poller);
            gone.store(true);
        });
        r.wait_for([&] { return gone.load(); });
    }
    for (auto& j : jobs) {
        Job* jp = j.get();
        (void)jp->thread->post([jp] {
            jp->stopping = true;
            mark_drained(*jp);
        });
    }
    r.wait_for([&] {
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
    r.wait_for([&] { return finished.load() == jobs.size(); });

    if (terminated) std::printf("Received shutdown signal, test stopped early\n");
    std::printf("\n%*s\n", 107, "Latency(us)");
    std::printf(" %-28s: %10s %10s %10s %10s %8s %10s %10s %10s\n", "Device Information",
                "runtime(s)", "IOPS", "MiB/s", "Fail/s", "TO/s", "Average", "min", "max");
    double total_iops = 0, total_mib = 0, total_fail = 0, total_lat_ns = 0;
    uint64_t total_count = 0, total_min = UINT64_MAX, total_max = 0;
    rpc::Json results = rpc::Json::array();
    uint64_t core_bits = 0;
    for (auto& j : jobs) {
        bool failed = false;
        if (!j->failure.empty()) {
            std::printf(" Job: %s (Core Mask %s): failed: %s\n", j->bdev_name.c_str(),
                        mask_of(j->core).c_str(), j->failure.c_str());
            failed = true;
        }
        if (j->errors.load() != 0 && !opt.continue_on_failure && opt.workload != Workload::reset)
            failed = true;
        if (j->miscompares.load() != 0) failed = true;
        if (failed) res.rc = 1;
        core_bits |= uint64_t{1} << (j->core & 63);
        const double secs = j->ended_ns > j->started_ns
                                ? static_cast<double>(j->ended_ns - j->started_ns) / 1e9
                                : opt.seconds;
        const double iops = static_cast<double>(j->ios.load()) / secs;
        const double mib = static_cast<double>(j->bytes.load()) / secs / 1048576.0;
        const double fail = static_cast<double>(j->errors.load()) / secs;
        const double avg = j->lat_count ? static_cast<double>(j->lat_sum_ns) /
                                              static_cast<double>(j->lat_count) / 1e3
                                        : 0.0;
        const double mn = j->lat_count ? static_cast<double>(j->lat_min_ns) / 1e3 : 0.0;
        const double mx = static_cast<double>(j->lat_max_ns) / 1e3;
        const bool mixed = opt.workload == Workload::rw || opt.workload == Workload::randrw;
        std::printf(" Job: %s (Core Mask %s)\n", j->bdev_name.c_str(), mask_of(j->core).c_str());
        std::printf("\t %s, workload: %s%s, depth: %u, IO size: %llu\n", j->bdev_name.c_str(),
                    opt.workload_name.c_str(),
                    mixed ? fmt::format(", percentage: {}", opt.rw_read_pct).c_str() : "", opt.qd,
                    static_cast<unsigned long long>(opt.io_size));
        std::printf("\t %-20s: %10.2f %10.2f %10.2f %10.2f %8.2f %10.2f %10.2f %10.2f\n",
                    j->bdev_name.c_str(), secs, iops, mib, fail, 0.0, avg, mn, mx);
        if (j->miscompares.load() != 0)
            std::printf("\t %llu miscompares\n",
                        static_cast<unsigned long long>(j->miscompares.load()));
        rpc::Json jj = {{"job", j->bdev_name},
                        {"core_mask", mask_of(j->core)},
                        {"workload", opt.workload_name}};
        if (mixed) jj["percentage"] = opt.rw_read_pct;
        jj["status"] = terminated ? "terminated" : failed ? "failed" : "finished";
        if (opt.workload == Workload::verify)
            jj["verify_range"] = {{"start", 0},
                                  {"length", j->io_blocks ? j->span_blocks / j->io_blocks : 0}};
        jj["queue_depth"] = opt.qd;
        jj["io_size"] = opt.io_size;
        jj["runtime"] = secs;
        jj["iops"] = iops;
        jj["mibps"] = mib;
        jj["io_failed"] = j->errors.load();
        jj["io_timeout"] = j->timeouts.load();
        jj["avg_latency_us"] = avg;
        jj["min_latency_us"] = mn;
        jj["max_latency_us"] = mx;
        jj["latency_histogram"] = histogram_json(j->hist);  // Strata's addition
        results.push_back(std::move(jj));
        total_iops += iops;
        total_mib += mib;
        total_fail += fail;
        total_lat_ns += static_cast<double>(j->lat_sum_ns);
        total_count += j->lat_count;
        if (j->lat_count) total_min = std::min(total_min, j->lat_min_ns);
        total_max = std::max(total_max, j->lat_max_ns);
    }
    std::printf(" %s\n", std::string(115, '=').c_str());
    std::printf(" %-28s: %10s %10.2f %10.2f %10.2f %8.2f %10.2f %10.2f %10.2f\n", "Total", "",
                total_iops, total_mib, total_fail, 0.0,
                total_count ? total_lat_ns / static_cast<double>(total_count) / 1e3 : 0.0,
                total_count ? static_cast<double>(total_min) / 1e3 : 0.0,
                static_cast<double>(total_max) / 1e3);
    if (opt.latency_level >= 1 && total_count != 0) {
        std::printf("\n Latency summary\n");
        for (auto& j : jobs) {
            std::printf(" =============================================\n");
            std::printf(" Job: %s (Core Mask %s)\n", j->bdev_name.c_str(),
                        mask_of(j->core).c_str());
            print_latency_summary(j->hist);
            std::printf("\n");
        }
    }
    if (opt.latency_level >= 2 && total_count != 0) {
        std::printf(" Latency histogram\n");
        for (auto& j : jobs) {
            std::printf(" =============================================\n");
            std::printf(" Job: %s (Core Mask %s)\n", j->bdev_name.c_str(),
                        mask_of(j->core).c_str());
            print_latency_buckets(j->hist);
            std::printf("\n");
        }
    }
    std::fflush(stdout);
    res.json = {{"results", std::move(results)}, {"core_count", std::popcount(core_bits)}};
    return res;
}

// A perform_tests request handed from the app Thread to main, which runs it and replies.
struct PendingRun {
    std::mutex mu;
    std::optional<Options> opt;
    rpc::Responder responder;
    bool busy = false;
};

void add_perform_tests(rpc::App& app, Options& base, PendingRun& pending) {
    using rpc::ParamType;
    rpc::MethodSpec spec;
    spec.name = "perform_tests";
    spec.description =
        "bdevperf -z: run the tests (parameters override the command line's for this and later "
        "runs)";
    spec.params = {{"time_in_sec", ParamType::int_, false, "Run time in seconds"},
                   {"workload_type", ParamType::string, false, "Workload (-w)"},
                   {"queue_depth", ParamType::int_, false, "Queue depth (-q)"},
                   {"io_size", ParamType::string, false, "I/O size (-o, e.g. 4096 or 4k)"},
                   {"rw_percentage", ParamType::int_, false, "Read percentage of rw/randrw (-M)"}};
    spec.strict = false;  // SPDK decodes these relaxed: unknown members are ignored
    spec.handler = [&base, &pending](const rpc::Json& p, rpc::Responder resp) {
        {
            std::lock_guard lk(pending.mu);
            if (pending.busy) {
                resp.error(-32603, "Operation now in progress");
                return;
            }
        }
        Options o = base;
        if (auto v = rpc::param_or<int>(p, "queue_depth", 0); v > 0)
            o.qd = static_cast<uint32_t>(v);
        if (auto v = rpc::param_or<int>(p, "time_in_sec", 0); v > 0) o.seconds = v;
        if (auto v = rpc::param_or<std::string>(p, "workload_type", ""); !v.empty())
            o.workload_name = v;
        if (auto v = rpc::param_or<std::string>(p, "io_size", ""); !v.empty()) {
            auto sz = parse_capacity(v);
            if (!sz) {
                resp.error(-32700, fmt::format("Invalid parameters provided: io_size '{}'", v));
                return;
            }
            o.io_size = *sz;
        }
        if (p.contains("rw_percentage")) {
            o.rw_read_pct = rpc::param_or<int>(p, "rw_percentage", 50);
            o.mix_specified = true;
        }
        if (std::string e = check_options(o); !e.empty()) {
            resp.error(-32700, "Invalid parameters provided: " + e);
            return;
        }
        base = o;
        std::lock_guard lk(pending.mu);
        pending.busy = true;
        pending.opt = o;
        pending.responder = std::move(resp);
    };
    if (auto r = app.registry().add(std::move(spec)); !r)
        std::fprintf(stderr, "bdevperf: perform_tests: %s\n", r.error().message().c_str());
}

bool write_json_output(const std::string& path, const rpc::Json& j) {
    const std::string text = j.dump(2) + "\n";
    if (path == "-") {
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
        return true;
    }
    std::ofstream f(path);
    f << text;
    return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"bdevperf: I/O load on Strata bdevs (SPDK bdevperf's command line)"};
    Options opt;
    std::string config_file, cpumask = "0x1", io_size, rpc_socket, json_output;
    bool sim = false, wait_for_tests = false;
    int latency_level = 0;
    uint64_t seed = 1;
    strata::apps::EnvCli env_cli;
    cli.add_option("-q,--queue-depth", opt.qd, "I/O queue depth per job")
        ->check(CLI::Range(1u, 65536u));
    cli.add_option("-o,--io-size", io_size, "I/O size in bytes (4096, 4k, 1M)");
    cli.add_option(
        "-w,--workload", opt.workload_name,
        "read, write, randread, randwrite, rw, randrw, verify, reset, unmap, flush, write_zeroes");
    cli.add_option("-M,--rwmixread", opt.rw_read_pct, "Read percentage of rw/randrw")
        ->check(CLI::Range(0, 100));
    cli.add_option("-t,--time", opt.seconds, "Run time in seconds")->check(CLI::PositiveNumber);
    cli.add_option("-c,--json", config_file, "JSON config creating the bdevs")->required();
    cli.add_option("-m,--cpumask", cpumask, "Core mask")->capture_default_str();
    cli.add_option("-T,--target", opt.targets,
                   "Only this bdev (repeatable; default: every bdev that is not claimed)");
    cli.add_flag("-C", opt.multithread,
                 "Every core sends I/O to every bdev (default: one job per bdev)");
    cli.add_flag("-f", opt.continue_on_failure, "Continue processing I/O after failures");
    cli.add_option("-S", opt.period_s, "Show each job's performance every <period> seconds")
        ->check(CLI::Range(1u, 3600u));
    cli.add_option("-P", opt.ema_period,
                   "With -S: show the moving average of the previous <n> periods' IOPS");
    cli.add_flag("-l", latency_level,
                 "Latency summary (-l) or summary and histogram buckets (-ll)");
    cli.add_flag("-z", wait_for_tests,
                 "Wait for the perform_tests RPC to start tests (SPDK's bdevperf.py)");
    cli.add_option("-r,--rpc-socket", rpc_socket,
                   "JSON-RPC Unix socket (default with -z: /var/tmp/spdk.sock)");
    std::string job_file;
    cli.add_option("-j", job_file,
                   "SPDK's job config file (not supported yet: refused with a message)");
    cli.add_option("--json-output", json_output,
                   "Write the results as SPDK's perform_tests object to a file (- for stdout)");
    cli.add_flag("--sim", sim, "Run under the seeded simulator (virtual time)");
    cli.add_option("--seed", seed, "Simulator seed")->capture_default_str();
    uint64_t sim_step_ns = 100;
    cli.add_option("--sim-step-ns", sim_step_ns,
                   "Simulator: virtual CPU time each scheduler step costs")
        ->capture_default_str();
    strata::apps::add_env_options(cli, env_cli);
    CLI11_PARSE(cli, argc, argv);

    if (!job_file.empty()) {
        std::fprintf(stderr,
                     "bdevperf: -j %s: job config files are not supported yet; give the job on the "
                     "command line "
                     "(-T BDEV -q -o -w -M, -C for every core)\n",
                     job_file.c_str());
        return 1;
    }
    opt.latency_level = latency_level;
    opt.summarize = cli.count("-S") == 0;
    opt.mix_specified = cli.count("-M") != 0;
    if (!io_size.empty()) {
        auto sz = parse_capacity(io_size);
        if (!sz) {
            std::fprintf(stderr, "bdevperf: Invalid IO size: %s\n", io_size.c_str());
            return 1;
        }
        opt.io_size = *sz;
    }
    if (!wait_for_tests) {
        if (std::string e = check_options(opt); !e.empty()) {
            std::fprintf(stderr, "bdevperf: %s\n", e.c_str());
            return 1;
        }
    } else if (!opt.workload_name.empty() && !parse_workload(opt.workload_name)) {
        std::fprintf(stderr, "bdevperf: -w '%s': unknown workload\n", opt.workload_name.c_str());
        return 1;
    }
    if (wait_for_tests && sim) {
        std::fprintf(stderr, "bdevperf: -z needs the real scheduler (no --sim)\n");
        return 1;
    }
    if (wait_for_tests && rpc_socket.empty()) rpc_socket = "/var/tmp/spdk.sock";
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

    strata::apps::install_stop_signals(on_signal);

    std::unique_ptr<runtime::Scheduler> sched;
    Runner runner;
    runner.seed = seed;
    runner.cores = *cores;
    runtime::RealScheduler* real = nullptr;
    if (sim) {
        auto s =
            std::make_unique<runtime::SimScheduler>(seed, static_cast<uint32_t>(cores->size()));
        runner.sim = s.get();
        runner.sim->step_cost_ns = sim_step_ns;
        sched = std::move(s);
    } else {
        runtime::RealSchedulerOptions so;
        so.cores = *cores;
        so.pin = true;
        auto s = std::make_unique<runtime::RealScheduler>(so);
        real = s.get();
        sched = std::move(s);
    }
    runner.sched = sched.get();

    rpc::AppOptions aopts;
    aopts.config = std::move(*config);
    aopts.rpc_socket = rpc_socket;
    int rc = 0;
    {
        rpc::App app(*sched, aopts);
        runner.app = &app;
        // This main lists the App's bdevs and makes the job Threads: in the App's Host.
        runtime::HostScope host_scope(app.host());
        stack::register_all_modules(app);
        PendingRun pending;
        Options base = opt;  // perform_tests' parameters persist, as in SPDK
        add_perform_tests(app, base, pending);
        if (real) real->start();
        std::atomic<bool> started{false};
        std::optional<Result<void>> start_result;
        app.start([&](Result<void> r) {
            start_result = std::move(r);
            started.store(true);
        });
        runner.wait_for([&] { return started.load() || app.stop_requested(); });
        if (!started.load() || !start_result->ok()) {
            if (started.load())
                std::fprintf(stderr, "bdevperf: %s\n", start_result->error().message().c_str());
            rc = 1;
        }
        if (rc == 0)
            for (size_t c = 0; c < cores->size(); ++c)
                runner.threads.push_back(sched->create_thread(
                    fmt::format("bdevperf_{}", (*cores)[c]), static_cast<int>(c)));
        if (rc == 0 && !wait_for_tests) {
            RunResult res = run_tests(runner, opt);
            if (!res.error.empty()) std::fprintf(stderr, "bdevperf: %s\n", res.error.c_str());
            if (!json_output.empty() && res.error.empty() &&
                !write_json_output(json_output, res.json)) {
                std::fprintf(stderr, "bdevperf: cannot write %s\n", json_output.c_str());
                res.rc = 1;
            }
            rc = res.rc;
        } else if (rc == 0) {
            std::printf("bdevperf: waiting for perform_tests on %s\n", app.listen_path().c_str());
            std::fflush(stdout);
            while (!app.stop_requested()) {
                std::optional<Options> o;
                {
                    std::lock_guard lk(pending.mu);
                    o = std::move(pending.opt);
                    pending.opt.reset();
                }
                if (!o) {
                    sleep_ms(1);
                    continue;
                }
                RunResult res = run_tests(runner, *o);
                if (!json_output.empty() && res.error.empty())
                    (void)write_json_output(json_output, res.json);
                std::lock_guard lk(pending.mu);
                if (!res.error.empty())
                    pending.responder.error(-32603, "bdevperf failed with error " + res.error);
                else if (res.rc != 0 && !app.stop_requested())
                    pending.responder.error(-32603,
                                            "bdevperf failed with error Input/output error");
                else
                    pending.responder.result(std::move(res.json));
                pending.busy = false;
            }
        }
        app.request_stop();
        runner.wait_for([&] { return app.stopped(); });
        if (real) real->stop();
    }
    return rc;
}
