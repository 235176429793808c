// strata-accel-perf: queue-depth load on the accel framework, like SPDK's accel_perf. One
// Thread per core of the mask (-m), each on that core's reactor (real time, RealScheduler) with
// its own accel channel; every completion submits the next op of its slot at once. Progress
// each second, then per-core and total ops/s and GB/s, and memcpy bandwidth on this machine
// over the same buffers for comparison.
//
// --module software|ioat pins the op to a module (accel_assign_opc); without it the framework
// routes as usual. With --env sim (default) the ioat module drives emulated I/OAT channels (one
// per core, each model polled on its core's reactor beside the worker): those are figures of
// the model and the driver, not of hardware.
//
// Data path discipline as in the framework: buffers come from env::dma_alloc up front, nothing
// is allocated or locked per op; counters are single-writer relaxed atomics.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <strata/accel/accel.h>
#include <strata/base/crc.h>
#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/scheduler.h>

#include "../../apps/common/env_cli.h"

namespace {

using namespace strata;

struct Options {
    accel::Opcode op = accel::Opcode::copy;
    uint64_t size = 4096;
    uint32_t qd = 32;
    double seconds = 1;
    uint32_t xor_srcs = 2;
    uint8_t fill = 0xA5;
    uint32_t seed = 0;
    bool verify = false;
};

struct Worker;

// One outstanding op: its buffers and descriptor, reused for every resubmission.
struct Slot {
    Worker* w = nullptr;
    accel::Op op;
    uint8_t* src = nullptr;
    uint8_t* dst = nullptr;
    std::vector<uint8_t*> xsrc;
    std::vector<const void*> xptr;
    uint32_t crc = 0;
    uint64_t miscompare = 0;
};

struct Worker {
    int core = 0;
    runtime::Thread* thread = nullptr;
    const Options* opt = nullptr;
    accel::Channel* ch = nullptr;
    std::vector<Slot> slots;
    std::vector<void*> buffers;  // every dma_alloc of this worker
    uint32_t expected_crc = 0;
    uint32_t outstanding = 0;
    bool stopping = false;
    std::atomic<uint64_t> ops{0}, failed{0}, miscompares{0};
    std::atomic<bool> drained{false};
    uint64_t started_ns = 0, ended_ns = 0;
    std::string failure;
    std::string module;

    void bump(std::atomic<uint64_t>& c) noexcept {
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    void finish_if_idle() noexcept {
        if (outstanding == 0 && !drained.load(std::memory_order_relaxed)) {
            ended_ns = runtime::now_ns();
            drained.store(true, std::memory_order_release);
        }
    }
};

void submit(Slot& s) noexcept;

bool verify(const Slot& s) noexcept {
    const Options& o = *s.w->opt;
    switch (o.op) {
        case accel::Opcode::copy:
            return std::memcmp(s.dst, s.src, o.size) == 0;
        case accel::Opcode::fill:
            for (uint64_t i = 0; i < o.size; ++i)
                if (s.dst[i] != o.fill) return false;
            return true;
        case accel::Opcode::crc32c:
            return s.crc == s.w->expected_crc;
        case accel::Opcode::copy_crc32c:
            return s.crc == s.w->expected_crc && std::memcmp(s.dst, s.src, o.size) == 0;
        case accel::Opcode::xor_:
            for (uint64_t i = 0; i < o.size; ++i) {
                uint8_t x = 0;
                for (uint8_t* p : s.xsrc) x ^= p[i];
                if (s.dst[i] != x) return false;
            }
            return true;
        default:
            return true;  // compare verifies itself
    }
}

void on_done(void* ctx, Status st) {
    auto* s = static_cast<Slot*>(ctx);
    Worker& w = *s->w;
    --w.outstanding;
    if (!st) {
        if (st == Errc::corrupt) {
            w.bump(w.miscompares);
        } else {
            if (w.failed.load(std::memory_order_relaxed) == 0)
                std::fprintf(stderr, "strata-accel-perf: core %d: op failed: %s\n", w.core,
                             st.to_string().c_str());
        }
        w.bump(w.failed);
    } else if (w.opt->verify && !verify(*s)) {
        w.bump(w.miscompares);
        w.bump(w.failed);
    } else {
        w.bump(w.ops);
    }
    submit(*s);
}

void submit(Slot& s) noexcept {
    Worker& w = *s.w;
    if (w.stopping) {
        w.finish_if_idle();
        return;
    }
    if (w.opt->verify) {
        // Poison the destination so that an op that writes nothing cannot verify.
        const accel::Opcode op = w.opt->op;
        if (op == accel::Opcode::fill)
            std::memset(s.dst, static_cast<uint8_t>(~w.opt->fill), w.opt->size);
        else if (op == accel::Opcode::copy || op == accel::Opcode::copy_crc32c ||
                 op == accel::Opcode::xor_)
            std::memset(s.dst, 0, w.opt->size);
        s.crc = ~w.expected_crc;
    }
    Status st = w.ch->submit(s.op, &on_done, &s);
    if (st.ok()) {
        ++w.outstanding;
        return;
    }
    // The task pool is sized above the queue depth, so busy cannot happen; anything else ends
    // the slot.
    if (w.failure.empty()) w.failure = st.to_string();
    w.bump(w.failed);
    w.finish_if_idle();
}

uint8_t* buffer(Worker& w, uint64_t size) {
    auto p = env::dma_alloc(size, 4096, true);
    if (!p) {
        if (w.failure.empty())
            w.failure = fmt::format("dma_alloc of {} bytes: {}", size, p.error().message());
        return nullptr;
    }
    w.buffers.push_back(*p);
    return static_cast<uint8_t*>(*p);
}

// On the worker's Thread: channel, buffers, first submissions.
void start_worker(Worker& w) {
    const Options& o = *w.opt;
    w.ch = accel::get_channel();
    if (w.ch == nullptr) {
        w.failure = "no accel channel";
        w.drained.store(true, std::memory_order_release);
        return;
    }
    w.module = w.ch->module_for(o.op);
    w.slots.resize(o.qd);
    for (auto& s : w.slots) {
        s.w = &w;
        s.src = buffer(w, o.size);
        s.dst = buffer(w, o.size);
        if (s.src == nullptr || s.dst == nullptr) break;
        for (uint64_t i = 0; i < o.size; ++i) s.src[i] = static_cast<uint8_t>(i * 31 + 7);
        accel::Op& op = s.op;
        op.opcode = o.op;
        op.src = s.src;
        op.dst = s.dst;
        op.len = o.size;
        op.fill_byte = o.fill;
        op.seed = o.seed;
        op.crc_dst = &s.crc;
        op.miscompare_offset = &s.miscompare;
        if (o.op == accel::Opcode::compare) std::memcpy(s.dst, s.src, o.size);
        if (o.op == accel::Opcode::xor_) {
            for (uint32_t k = 0; k < o.xor_srcs; ++k) {
                uint8_t* p = buffer(w, o.size);
                if (p == nullptr) break;
                for (uint64_t i = 0; i < o.size; ++i) p[i] = static_cast<uint8_t>(i * (k + 3));
                s.xsrc.push_back(p);
                s.xptr.push_back(p);
            }
            op.src = nullptr;
            op.xor_srcs = s.xptr.data();
            op.xor_nsrcs = static_cast<uint32_t>(s.xptr.size());
        }
    }
    if (!w.failure.empty()) {
        w.drained.store(true, std::memory_order_release);
        return;
    }
    w.expected_crc = crc32c(o.seed, w.slots.front().src, o.size);
    w.started_ns = runtime::now_ns();
    for (auto& s : w.slots) submit(s);
    if (w.outstanding == 0) w.finish_if_idle();
}

void sleep_ms(long ms) {
    struct timespec ts {
        ms / 1000, (ms % 1000) * 1'000'000L
    };
    nanosleep(&ts, nullptr);
}

int fail(const std::string& msg) {
    std::fprintf(stderr, "strata-accel-perf: %s\n", msg.c_str());
    return 1;
}

// Runs fn on `t` and waits (real time) for it.
template <class F>
bool on(runtime::Thread& t, F&& fn, double timeout_s = 30) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    if (!t.post([done, f = std::forward<F>(fn)]() mutable {
              f();
              done->store(true, std::memory_order_release);
          }).ok())
        return false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!done->load(std::memory_order_acquire)) {
        if (std::chrono::steady_clock::now() > until) return false;
        sleep_ms(1);
    }
    return true;
}

template <class P>
bool wait_for(P&& pred, double timeout_s) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) return false;
        sleep_ms(1);
    }
    return true;
}

double gbps(double bytes, double seconds) {
    return seconds > 0 ? bytes / seconds / 1e9 : 0;
}

// memcpy over the same working set (qd buffers of -o bytes), on this OS thread, for about
// `seconds`: the baseline a copy offload competes with.
double memcpy_gbps(uint64_t size, uint32_t qd, double seconds) {
    // Page-aligned like the accel buffers: glibc's memcpy has a slow path for some relative
    // misalignments of source and destination (adjacent malloc blocks hit it: ~1 GB/s here).
    struct Free {
        void operator()(uint8_t* p) const noexcept { std::free(p); }
    };
    const size_t n = std::max<uint32_t>(qd, 1);
    const size_t alloc_size = (size + 4095) & ~size_t{4095};
    std::vector<std::unique_ptr<uint8_t, Free>> src(n), dst(n);
    for (size_t i = 0; i < n; ++i) {
        src[i].reset(static_cast<uint8_t*>(std::aligned_alloc(4096, alloc_size)));
        dst[i].reset(static_cast<uint8_t*>(std::aligned_alloc(4096, alloc_size)));
        if (!src[i] || !dst[i]) return 0;
        std::memset(src[i].get(), static_cast<int>(i), size);
        std::memset(dst[i].get(), 0, size);
    }
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t bytes = 0, iters = 0;
    double elapsed = 0;
    do {
        for (size_t k = 0; k < 64; ++k) {
            const size_t i = (iters + k) % n;
            std::memcpy(dst[i].get(), src[i].get(), size);
        }
        iters += 64;
        bytes += 64 * size;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < seconds);
    volatile uint8_t sink = dst[iters % n].get()[size / 2];  // keep the copies observable
    (void)sink;
    return gbps(static_cast<double>(bytes), elapsed);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"strata-accel-perf: load on the Strata accel framework (SPDK accel_perf options)"};
    Options opt;
    std::string workload = "copy", cpumask = "0x1", module, log_level, size_str;
    bool no_pin = false, no_memcpy = false;
    uint32_t xfercap_log2 = 20;
    uint64_t per_descriptor_ns = 0, bandwidth_mb_per_s = 0;
    apps::EnvCli env_cli;
    cli.add_option("-w,--workload", workload, "copy, fill, compare, crc32c, copy_crc32c, xor")
        ->capture_default_str();
    cli.add_option("-o,--transfer-size", opt.size, "Bytes per op")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
    cli.add_option("-q,--queue-depth", opt.qd, "Ops outstanding per core")
        ->capture_default_str()
        ->check(CLI::Range(1u, 65536u));
    cli.add_option("-t,--time", opt.seconds, "Run time in seconds")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cli.add_option("-m,--cpumask", cpumask, "Core mask: one worker per core (0x3, [0,2-3])")
        ->capture_default_str();
    cli.add_option("--module", module,
                   "Run the op on this module: software or ioat "
                   "(default: the framework's routing)");
    cli.add_option("-x,--xor-srcs", opt.xor_srcs, "Sources of an xor op")
        ->capture_default_str()
        ->check(CLI::Range(1u, accel::kMaxXorSources));
    cli.add_option("-f,--fill", opt.fill, "Fill byte")->capture_default_str();
    cli.add_option("--seed", opt.seed, "crc32c seed (SPDK accel_perf: -s)")->capture_default_str();
    cli.add_flag("-y,--verify", opt.verify, "Check every result");
    cli.add_flag("--no-memcpy", no_memcpy, "Skip the memcpy baseline");
    cli.add_option("--ioat-xfercap-log2", xfercap_log2,
                   "sim: emulated I/OAT bytes per descriptor 2^n")
        ->capture_default_str()
        ->check(CLI::Range(12u, 31u));
    cli.add_option("--ioat-latency-ns", per_descriptor_ns,
                   "sim: emulated I/OAT fixed time per descriptor (0: none)");
    cli.add_option("--ioat-bandwidth-mbps", bandwidth_mb_per_s,
                   "sim: emulated I/OAT bandwidth in MB/s (0: unlimited)");
    cli.add_flag("--no-pin", no_pin, "Do not pin reactor threads to their cores");
    cli.add_option("--log-level", log_level, "Global log level: ERROR WARN NOTICE INFO DEBUG");
    apps::add_env_options(cli, env_cli);
    CLI11_PARSE(cli, argc, argv);

    auto opc = accel::opcode_from_name(workload);
    if (!opc)
        return fail(fmt::format(
            "-w '{}': unknown workload (copy, fill, compare, crc32c, copy_crc32c, xor)", workload));
    opt.op = *opc;
    if (!module.empty() && module != "software" && module != "ioat")
        return fail(fmt::format("--module '{}': expected software or ioat", module));
    if (!log_level.empty()) {
        auto l = log_level_parse(log_level);
        if (!l)
            return fail(fmt::format("--log-level '{}': expected ERROR, WARN, NOTICE, INFO or DEBUG",
                                    log_level));
        log_set_global_level(*l);
    } else {
        log_set_global_level(LogLevel::warn);
    }
    auto cores = runtime::parse_core_mask(cpumask);
    if (!cores) return fail(fmt::format("-m '{}': {}", cpumask, cores.error().message()));
    if (cores->empty()) return fail(fmt::format("-m '{}': the core mask selects no core", cpumask));
    const bool want_ioat = module == "ioat";
    if (want_ioat) {
        auto ops = accel::module_opcodes("ioat");
        if (std::find(ops->begin(), ops->end(), opt.op) == ops->end())
            return fail(fmt::format("--module ioat: the ioat module does not do {} (copy, fill)",
                                    workload));
    }
    if (auto r = apps::init_env(env_cli, *cores); !r) return fail(r.error().message());
    const bool sim = env::backend_name() == "sim";

    accel::FrameworkOptions fo;
    fo.task_count = std::max<uint32_t>(opt.qd, 64);
    if (auto r = accel::set_options(fo); !r) return fail(r.error().message());

    runtime::RealSchedulerOptions so;
    so.cores = *cores;
    so.pin = !no_pin;
    runtime::RealScheduler sched(so);
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<runtime::Thread*> model_threads;
    for (size_t c = 0; c < cores->size(); ++c) {
        auto w = std::make_unique<Worker>();
        w->core = (*cores)[c];
        w->opt = &opt;
        w->thread = sched.create_thread(fmt::format("accel_perf_{}", w->core), static_cast<int>(c));
        if (want_ioat && sim)
            model_threads.push_back(
                sched.create_thread(fmt::format("ioat_model_{}", w->core), static_cast<int>(c)));
        workers.push_back(std::move(w));
    }
    runtime::Thread* ctl = workers.front()->thread;
    sched.start();

    // Emulated I/OAT channels, one per core, each polled on its core's reactor.
    std::unique_ptr<hwemu::PciBus> bus;
    std::vector<std::unique_ptr<hwemu::ioat::ChannelModel>> models(model_threads.size());
    auto cleanup_models = [&] {
        for (size_t i = 0; i < models.size(); ++i)
            if (models[i]) (void)on(*model_threads[i], [&, i] { models[i].reset(); });
        bus.reset();
    };
    if (!model_threads.empty()) {
        bus = std::make_unique<hwemu::PciBus>();
        std::string err;
        for (size_t i = 0; i < model_threads.size(); ++i) {
            hwemu::ioat::ModelConfig mc;
            mc.xfercap_log2 = static_cast<uint8_t>(xfercap_log2);
            mc.per_descriptor_ns = per_descriptor_ns;
            mc.bandwidth_bytes_per_us = bandwidth_mb_per_s;
            const env::PciAddress addr{0, 0x00, static_cast<uint8_t>(4 + i / 8),
                                       static_cast<uint8_t>(i % 8)};
            (void)on(*model_threads[i], [&, i, addr] {
                auto m = hwemu::ioat::ChannelModel::create(*bus, addr, mc, *model_threads[i]);
                if (m)
                    models[i] = std::move(*m);
                else
                    err = m.error().message();
            });
            if (!err.empty()) {
                cleanup_models();
                sched.stop();
                return fail("emulated I/OAT channel: " + err);
            }
        }
    }

    std::string err;
    (void)on(*ctl, [&] {
        if (want_ioat) {
            if (auto r = accel::enable_ioat_module(); !r) err = r.error().message();
        }
        if (auto r = accel::init(); !r) {
            err = r.error().message();
            return;
        }
        if (!module.empty()) {
            if (auto r = accel::assign_opc(opt.op, module); !r) err = r.error().message();
        }
    });
    auto shutdown = [&] {
        for (auto& w : workers) {
            Worker* wp = w.get();
            (void)on(*w->thread, [wp] {
                if (wp->ch != nullptr) accel::put_channel(wp->ch);
                wp->ch = nullptr;
            });
        }
        std::atomic<bool> finished{false};
        (void)on(*ctl, [&] {
            accel::fini([](void* c) { static_cast<std::atomic<bool>*>(c)->store(true); },
                        &finished);
        });
        (void)wait_for([&] { return finished.load(); }, 30);
        for (auto& w : workers) {
            Worker* wp = w.get();
            (void)on(*w->thread, [wp] {
                for (void* p : wp->buffers) env::dma_free(p);
                wp->buffers.clear();
            });
        }
        cleanup_models();
        sched.stop();
    };
    if (!err.empty()) {
        shutdown();
        return fail(err);
    }
    if (want_ioat && !accel::module_started("ioat")) {
        shutdown();
        return fail("--module ioat: no I/OAT channel found");
    }

    std::printf("Running %s, %llu-byte ops, queue depth %u, on %zu core(s) for %g seconds%s...\n",
                workload.c_str(), static_cast<unsigned long long>(opt.size), opt.qd, workers.size(),
                opt.seconds, opt.verify ? ", verifying" : "");
    std::fflush(stdout);
    for (auto& w : workers) {
        Worker* wp = w.get();
        (void)w->thread->post([wp] { start_worker(*wp); });
    }

    // Progress each second from this OS thread (the reactors never wait for it).
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t last_ops = 0;
    double last_s = 0;
    for (;;) {
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (elapsed >= opt.seconds) break;
        sleep_ms(static_cast<long>(std::min(1.0, opt.seconds - elapsed) * 1000) + 1);
        const double now_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        uint64_t total = 0, failed = 0;
        for (auto& w : workers) {
            total += w->ops.load(std::memory_order_relaxed);
            failed += w->failed.load(std::memory_order_relaxed);
        }
        const double dt = now_s - last_s;
        const double rate = dt > 0 ? static_cast<double>(total - last_ops) / dt : 0;
        std::printf("[%5.1f s] %12.0f ops/s %8.2f GB/s  failed %llu\n", now_s, rate,
                    gbps(rate * static_cast<double>(opt.size), 1),
                    static_cast<unsigned long long>(failed));
        std::fflush(stdout);
        last_ops = total;
        last_s = now_s;
    }
    for (auto& w : workers) {
        Worker* wp = w.get();
        (void)w->thread->post([wp] {
            wp->stopping = true;
            wp->finish_if_idle();
        });
    }
    int rc = 0;
    if (!wait_for(
            [&] {
                for (auto& w : workers)
                    if (!w->drained.load(std::memory_order_acquire)) return false;
                return true;
            },
            60)) {
        std::fprintf(stderr, "strata-accel-perf: ops did not drain\n");
        rc = 1;
    }

    std::printf("\n%-6s %-10s %14s %10s %10s %8s %12s\n", "Core", "Module", "ops/s", "GB/s",
                "MiB/s", "Failed", "Miscompares");
    double total_rate = 0, total_bytes_rate = 0;
    uint64_t total_failed = 0, total_mis = 0;
    for (auto& w : workers) {
        if (!w->failure.empty()) {
            std::fprintf(stderr, "strata-accel-perf: core %d: %s\n", w->core, w->failure.c_str());
            rc = 1;
        }
        const double secs = static_cast<double>(w->ended_ns - w->started_ns) / 1e9;
        const double rate = secs > 0 ? static_cast<double>(w->ops.load()) / secs : 0;
        const double brate = rate * static_cast<double>(opt.size);
        total_rate += rate;
        total_bytes_rate += brate;
        total_failed += w->failed.load();
        total_mis += w->miscompares.load();
        std::printf("%-6d %-10s %14.0f %10.2f %10.1f %8llu %12llu\n", w->core, w->module.c_str(),
                    rate, brate / 1e9, brate / (1 << 20),
                    static_cast<unsigned long long>(w->failed.load()),
                    static_cast<unsigned long long>(w->miscompares.load()));
    }
    std::printf("%-6s %-10s %14.0f %10.2f %10.1f %8llu %12llu\n", "Total", "", total_rate,
                total_bytes_rate / 1e9, total_bytes_rate / (1 << 20),
                static_cast<unsigned long long>(total_failed),
                static_cast<unsigned long long>(total_mis));
    if (sim && want_ioat)
        std::printf(
            "(ioat figures are of the emulated I/OAT model on the sim env, not hardware)\n");
    std::fflush(stdout);
    shutdown();
    if (!no_memcpy) {
        const double m = memcpy_gbps(opt.size, opt.qd, std::min(opt.seconds, 1.0));
        std::printf("memcpy (one core, %llu-byte copies over %u buffers): %.2f GB/s\n",
                    static_cast<unsigned long long>(opt.size), opt.qd, m);
    }
    if (total_failed != 0) rc = 1;
    return rc;
}
