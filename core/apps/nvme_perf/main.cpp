// strata-nvme-perf: queue-depth I/O load straight on the NVMe driver, like SPDK's perf. One
// I/O qpair per core of the mask (-c), each driven by a Thread on that core's reactor (real
// time, RealScheduler); every completion callback submits the next I/O at once. Progress each
// second, then per-core and total IOPS, MiB/s and latency (average, min, max, percentiles).
//
// Data path discipline as in the driver: buffers come from env::dma_alloc up front, latencies go
// into a preallocated histogram, nothing is allocated or locked per I/O.
//
// --env sim (default): an emulated controller (--emulate) in zero-latency mode unless
// --latency is given; its poller runs on its own Thread (on the first core of the mask).
// --env dpdk: a real controller through VFIO (-r / -A).
#include <time.h>

#include <algorithm>
#include <array>
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
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/transport_id.h>
#include <strata/nvme/qpair.h>
#include <strata/runtime/scheduler.h>

#include "../common/env_cli.h"
#include "../common/nvme_tool.h"

namespace {

using namespace strata;

enum class Pattern { read, write, randread, randwrite, rw, randrw };

std::optional<Pattern> parse_pattern(const std::string& w) {
    static const std::pair<const char*, Pattern> names[] = {
        {"read", Pattern::read}, {"write", Pattern::write}, {"randread", Pattern::randread},
        {"randwrite", Pattern::randwrite}, {"rw", Pattern::rw}, {"randrw", Pattern::randrw}};
    for (const auto& [n, v] : names)
        if (w == n) return v;
    return std::nullopt;
}

// Latency histogram: 16 sub-buckets per power of two of nanoseconds (about 6% resolution),
// fixed size, filled without allocation.
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
    // The upper edge of a bucket (a percentile is never under-reported).
    static uint64_t upper(size_t idx) {
        if (idx < kSub) return idx;
        const int top = static_cast<int>(idx / kSub) + 3;
        return ((uint64_t{kSub} + idx % kSub + 1) << (top - 4)) - 1;
    }
    void add(uint64_t ns) noexcept {
        ++buckets[std::min(index(ns), buckets.size() - 1)];
        ++count;
        sum_ns += ns;
        min_ns = std::min(min_ns, ns);
        max_ns = std::max(max_ns, ns);
    }
    void merge(const Histogram& o) {
        for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
        count += o.count;
        sum_ns += o.sum_ns;
        min_ns = std::min(min_ns, o.min_ns);
        max_ns = std::max(max_ns, o.max_ns);
    }
    uint64_t percentile(double p) const {
        if (count == 0) return 0;
        const auto want = static_cast<uint64_t>(p / 100.0 * static_cast<double>(count));
        uint64_t seen = 0;
        for (size_t i = 0; i < buckets.size(); ++i) {
            seen += buckets[i];
            if (seen > want) return std::min(upper(i), max_ns);
        }
        return max_ns;
    }
};

struct Options {
    uint32_t qd = 1;
    uint64_t io_size = 4096;
    Pattern pattern = Pattern::randread;
    uint32_t read_pct = 100;
    double seconds = 1;
};

struct Worker;

struct Slot {
    Worker* w = nullptr;
    void* buf = nullptr;
    uint64_t start_ns = 0;
};

// One per core: a Thread, its qpair, its slots. Counters are written by the worker's Thread
// only (relaxed stores, no locked read-modify-write) and read by the main thread for progress.
struct Worker {
    int core = 0;
    runtime::Thread* thread = nullptr;
    const Options* opt = nullptr;
    const nvme::Namespace* ns = nullptr;
    std::unique_ptr<nvme::QPair> qp;
    std::vector<Slot> slots;
    uint32_t io_blocks = 0;
    uint64_t span_ios = 0, next_io = 0;
    Prng rng{1};
    bool stopping = false;
    uint32_t outstanding = 0;
    std::atomic<uint64_t> ios{0}, bytes{0}, errors{0};
    std::atomic<bool> drained{false};
    Histogram hist;
    uint64_t started_ns = 0, ended_ns = 0;
    std::string failure;

    void bump(std::atomic<uint64_t>& c, uint64_t n) noexcept {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void finish_if_idle() noexcept {
        if (outstanding == 0 && !drained.load(std::memory_order_relaxed)) {
            ended_ns = runtime::now_ns();
            drained.store(true, std::memory_order_release);
        }
    }
};

void submit(Slot& s) noexcept;

void on_done(void* ctx, const nvme::Completion& cpl) {
    auto* s = static_cast<Slot*>(ctx);
    Worker& w = *s->w;
    const uint64_t now = runtime::now_ns();
    --w.outstanding;
    if (cpl.ok()) {
        w.bump(w.ios, 1);
        w.bump(w.bytes, uint64_t{w.io_blocks} * w.ns->block_size_bytes);
        w.hist.add(now - s->start_ns);
    } else {
        if (w.errors.load(std::memory_order_relaxed) == 0)
            // The driver's own statuses (controller gone, reset, timeout) borrow spec codes
            // whose names would mislead: the error class says what happened.
            std::fprintf(stderr, "strata-nvme-perf: core %d: I/O failed: %s (%s)\n", w.core,
                         std::string(errc_name(cpl.errc())).c_str(), cpl.name().c_str());
        w.bump(w.errors, 1);
        if (cpl.errc() == Errc::device_removed) w.stopping = true;
    }
    submit(*s);
}

void submit(Slot& s) noexcept {
    Worker& w = *s.w;
    if (w.stopping) {
        w.finish_if_idle();
        return;
    }
    const Pattern p = w.opt->pattern;
    const bool random = p == Pattern::randread || p == Pattern::randwrite || p == Pattern::randrw;
    uint64_t io;
    if (random) {
        io = w.rng.next() % w.span_ios;
    } else {
        io = w.next_io;
        w.next_io = w.next_io + 1 == w.span_ios ? 0 : w.next_io + 1;
    }
    bool is_read = p == Pattern::read || p == Pattern::randread;
    if (p == Pattern::rw || p == Pattern::randrw) is_read = w.rng.next() % 100 < w.opt->read_pct;
    const uint64_t lba = io * w.io_blocks;
    s.start_ns = runtime::now_ns();
    Status st = is_read ? w.qp->read(*w.ns, s.buf, lba, w.io_blocks, on_done, &s)
                        : w.qp->write(*w.ns, s.buf, lba, w.io_blocks, on_done, &s);
    if (st.ok()) {
        ++w.outstanding;
        return;
    }
    // The pool holds one request per slot, so busy cannot happen; anything else ends the slot.
    if (w.failure.empty()) w.failure = st.to_string();
    w.bump(w.errors, 1);
    w.finish_if_idle();
}

void start_worker(Worker& w) {
    const size_t len = size_t{w.io_blocks} * w.ns->block_size_bytes;
    w.slots.resize(w.opt->qd);
    for (auto& s : w.slots) {
        s.w = &w;
        auto p = env::dma_alloc(len, 4096, true);
        if (!p) {
            w.failure = fmt::format("dma_alloc of {} bytes: {}", len, p.error().message());
            w.drained.store(true);
            return;
        }
        s.buf = *p;
        std::memset(s.buf, 0xA5, len);
    }
    w.started_ns = runtime::now_ns();
    for (auto& s : w.slots) submit(s);
    if (w.outstanding == 0) w.finish_if_idle();
}

void sleep_ms(long ms) {
    struct timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
    nanosleep(&ts, nullptr);
}

std::string mask_of(int core) { return fmt::format("0x{:x}", uint64_t{1} << (core & 63)); }

int fail(const std::string& msg) {
    std::fprintf(stderr, "strata-nvme-perf: %s\n", msg.c_str());
    return 1;
}

void print_latency(const char* label, const Histogram& h) {
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
    std::printf("%-40s  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  p99.99 %.2f (us)\n", label,
                us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)), us(h.percentile(99.9)),
                us(h.percentile(99.99)));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"strata-nvme-perf: I/O load on the Strata NVMe driver (SPDK perf options)"};
    Options opt;
    std::string pattern, cpumask = "0x1", trid, emulate, latency, log_level;
    uint32_t nsid = 0;
    bool no_pin = false;
    apps::EnvCli env_cli;
    cli.add_option("-q,--io-depth", opt.qd, "Queue depth per core")->required()->check(CLI::Range(1u, 4095u));
    cli.add_option("-o,--io-size", opt.io_size, "I/O size in bytes (a multiple of the block size)")
        ->required()->check(CLI::Range(uint64_t{512}, uint64_t{64} << 20));
    cli.add_option("-w,--io-pattern", pattern, "read, write, randread, randwrite, rw, randrw")->required();
    cli.add_option("-M,--rwmixread", opt.read_pct, "Read percentage of rw/randrw")->check(CLI::Range(0u, 100u));
    cli.add_option("-t,--time", opt.seconds, "Run time in seconds")->required()->check(CLI::PositiveNumber);
    cli.add_option("-c,--core-mask", cpumask, "Core mask: one qpair per core (0x3, [0,2-3])")->capture_default_str();
    cli.add_option("-r,--transport-id", trid,
                   "Controller: 'trtype:PCIe traddr:0000:01:00.0', a BDF (default: the first NVMe function), or "
                   "'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:...' (NVMe/TCP)");
    cli.add_option("-n,--namespace-id", nsid, "Namespace to use (default: the first active one)");
    cli.add_option("--emulate", emulate,
                   "sim: namespaces of the emulated controller, e.g. 'ns=1:size=1G:bs=512' (default 1 GiB, 512 B)");
    cli.add_option("--latency", latency,
                   "sim: device latency instead of zero-latency mode: 'fixed:10us', 'uniform:5us:20us', "
                   "'exp:80us', or per opcode 'read=fixed:80us,write=fixed:20us'");
    cli.add_flag("--no-pin", no_pin, "Do not pin reactor threads to their cores");
    bool hdgst = false, ddgst = false;
    cli.add_flag("-H,--enable-tcp-hdgst", hdgst, "NVMe/TCP: ask for header digests (spdk_nvme_perf -H)");
    cli.add_flag("-I,--enable-tcp-ddgst", ddgst, "NVMe/TCP: ask for data digests (spdk_nvme_perf -I)");
    cli.add_option("--log-level", log_level, "Global log level: ERROR WARN NOTICE INFO DEBUG");
    apps::add_env_options(cli, env_cli);
    CLI11_PARSE(cli, argc, argv);

    auto pat = parse_pattern(pattern);
    if (!pat) return fail(fmt::format("-w '{}': unknown pattern (read, write, randread, randwrite, rw, randrw)", pattern));
    opt.pattern = *pat;
    if (opt.pattern == Pattern::write || opt.pattern == Pattern::randwrite) opt.read_pct = 0;
    else if (opt.pattern == Pattern::read || opt.pattern == Pattern::randread) opt.read_pct = 100;
    else if (cli.count("-M") == 0) opt.read_pct = 50;
    if (!log_level.empty()) {
        auto l = log_level_parse(log_level);
        if (!l) return fail(fmt::format("--log-level '{}': expected ERROR, WARN, NOTICE, INFO or DEBUG", log_level));
        log_set_global_level(*l);
    } else {
        log_set_global_level(LogLevel::warn);
    }
    auto cores = runtime::parse_core_mask(cpumask);
    if (!cores) return fail(fmt::format("-c '{}': {}", cpumask, cores.error().message()));
    if (cores->empty()) return fail(fmt::format("-c '{}': the core mask selects no core", cpumask));
    std::optional<env::PciAddress> only;
    // NVMe-oF: a TCP transport id connects through the NVMe/TCP initiator (no emulation).
    std::optional<nvme::TransportId> fabrics;
    if (auto t = nvme::parse_transport_id(trid); !trid.empty() && t && t->trtype == nvme::TrType::tcp)
        fabrics = *t;
    if (!trid.empty() && !fabrics) {
        auto a = apps::parse_transport_id(trid);
        if (!a) return fail(fmt::format("-r: {}", a.error().message()));
        only = *a;
    }
    auto controllers = apps::parse_emulate(emulate);
    if (!controllers) return fail(controllers.error().message());
    if (controllers->size() != 1) return fail("--emulate: strata-nvme-perf drives one controller");
    auto lat = apps::parse_latency(latency);
    if (!lat) return fail(lat.error().message());
    if ((!emulate.empty() || !latency.empty()) && env_cli.env != "sim")
        return fail("--emulate and --latency need --env sim");
    if (auto r = apps::init_env(env_cli, *cores); !r) return fail(r.error().message());
    const bool sim = env::backend_name() == "sim" && !fabrics;

    runtime::RealSchedulerOptions so;
    so.cores = *cores;
    so.pin = !no_pin;
    runtime::RealScheduler sched(so);
    runtime::Thread* admin = sched.create_thread("nvme_admin", 0);
    runtime::Thread* model_thread = sim ? sched.create_thread("nvme_model", 0) : nullptr;
    std::vector<std::unique_ptr<Worker>> workers;
    for (size_t c = 0; c < cores->size(); ++c) {
        auto w = std::make_unique<Worker>();
        w->core = (*cores)[c];
        w->opt = &opt;
        w->thread = sched.create_thread(fmt::format("perf_{}", w->core), static_cast<int>(c));
        w->rng.reseed(0x5eed + c * 7919);
        workers.push_back(std::move(w));
    }
    sched.start();
    apps::Harness h(sched);

    int rc = 0;
    std::unique_ptr<apps::EmulatedControllers> emulated;
    std::unique_ptr<nvme::Controller> ctrl;
    auto cleanup = [&] {
        for (auto& w : workers) {
            if (!w->qp) continue;
            Worker* wp = w.get();
            std::atomic<bool> freed{false};
            h.on(*w->thread, [&] {
                ctrl->free_io_qpair(std::move(wp->qp), [](void* p) { static_cast<std::atomic<bool>*>(p)->store(true); },
                                    &freed);
            });
            h.wait([&] { return freed.load(); }, 30 * runtime::kNsPerSec);
            h.on(*w->thread, [wp] {
                for (auto& s : wp->slots)
                    if (s.buf) env::dma_free(s.buf);
                wp->slots.clear();
            });
        }
        if (ctrl) {
            auto d = h.run(*admin, ctrl->detach());
            if (!d || !*d) {
                std::fprintf(stderr, "strata-nvme-perf: detach failed: %s\n",
                             d ? (*d).error().message().c_str() : "timed out");
                rc = 1;
            }
            h.on(*admin, [&] { ctrl.reset(); });
        }
        emulated.reset();
        sched.stop();
    };

    if (sim) {
        emulated = std::make_unique<apps::EmulatedControllers>(h, *model_thread);
        hwemu::nvme::ControllerConfig c;
        c.namespaces = controllers->front();
        c.io_latency = *lat;
        if (auto r = emulated->create({c}); !r) {
            emulated.reset();
            sched.stop();
            return fail(r.error().message());
        }
        emulated->set_zero_latency(latency.empty());
    }
    auto addrs = fabrics ? Result<std::vector<env::PciAddress>>(std::vector<env::PciAddress>{env::PciAddress{}})
                         : apps::nvme_functions(only);
    if (!addrs) {
        cleanup();
        return fail(addrs.error().message());
    }
    const env::PciAddress addr = addrs->front();
    const std::string where = fabrics ? fmt::format("TCP {}:{} {}", fabrics->traddr, fabrics->trsvcid, fabrics->subnqn)
                                      : addr.to_string();
    {
        nvme::ControllerOptions co;
        co.header_digest = hdgst;
        co.data_digest = ddgst;
        auto attached = fabrics ? h.run(*admin, nvme::Controller::connect(*fabrics, co))
                                : h.run(*admin, nvme::Controller::attach(addr));
        if (!attached || !*attached) {
            cleanup();
            return fail(fmt::format("{}: attach failed: {}", where,
                                    attached ? (*attached).error().message() : "timed out"));
        }
        ctrl = std::move(**attached);
    }
    const nvme::Namespace* ns = nullptr;
    h.on(*admin, [&] {
        if (nsid != 0) {
            ns = ctrl->find_namespace(nsid);
        } else if (auto list = ctrl->namespaces(); !list.empty()) {
            ns = list.front();
        }
    });
    if (ns == nullptr) {
        cleanup();
        return fail(nsid ? fmt::format("{}: namespace {} is not active", where, nsid)
                         : fmt::format("{}: no active namespace", where));
    }
    if (opt.io_size % ns->block_size_bytes != 0 ||
        opt.io_size / ns->block_size_bytes > ns->max_io_blocks || opt.io_size > ns->size_bytes()) {
        const std::string msg = fmt::format(
            "-o {}: must be a multiple of the block size {} and at most {} bytes (MDTS) and the namespace size",
            opt.io_size, ns->block_size_bytes, uint64_t{ns->max_io_blocks} * ns->block_size_bytes);
        cleanup();
        return fail(msg);
    }
    // One qpair per core, deep enough for -q (the SQ keeps one slot empty).
    nvme::QPairOptions qo;
    qo.queue_entries = std::max<uint32_t>(opt.qd + 1, 128);
    qo.requests = opt.qd;
    for (auto& w : workers) {
        std::optional<Result<std::unique_ptr<nvme::QPair>>> r;
        h.on(*admin, [&] { r = ctrl->alloc_io_qpair(*w->thread, qo); });
        if (!r || !*r) {
            const std::string msg = fmt::format("core {}: qpair: {}", w->core, r ? (*r).error().message() : "timed out");
            cleanup();
            return fail(msg);
        }
        w->qp = std::move(**r);
        w->ns = ns;
        w->io_blocks = static_cast<uint32_t>(opt.io_size / ns->block_size_bytes);
        w->span_ios = ns->num_blocks / w->io_blocks;
        // connected() belongs to the qpair's owner Thread: ask there (reading it from main
        // raced with the owner marking it connected; TSan).
        nvme::QPair* q = w->qp.get();
        bool connected = false;
        for (int ms = 0; ms < 30'000 && !connected; ++ms) {
            if (!h.on(*w->thread, [&connected, q] { connected = q->connected(); })) break;
            if (!connected) (void)h.wait([] { return false; }, runtime::kNsPerSec / 1000);
        }
        if (!connected) {
            cleanup();
            return fail(fmt::format("core {}: the qpair did not connect", w->core));
        }
    }
    if (opt.qd + 1 > workers.front()->qp->queue_entries())
        std::fprintf(stderr, "strata-nvme-perf: note: -q %u exceeds the queue size %u; the rest wait in software\n",
                     opt.qd, workers.front()->qp->queue_entries() - 1);

    std::printf("Attached to NVMe controller at %s (%s), namespace %u: %llu blocks of %u bytes\n",
                where.c_str(), fabrics ? "nvme-tcp" : sim ? (latency.empty() ? "emulated, zero latency" : "emulated") : "dpdk",
                ns->id, static_cast<unsigned long long>(ns->num_blocks), ns->block_size_bytes);
    std::printf("Running %s, %llu-byte I/O, queue depth %u on %zu core(s) for %g seconds...\n", pattern.c_str(),
                static_cast<unsigned long long>(opt.io_size), opt.qd, workers.size(), opt.seconds);
    std::fflush(stdout);
    for (auto& w : workers) {
        Worker* wp = w.get();
        (void)w->thread->post([wp] { start_worker(*wp); });
    }
    // Progress each second from this OS thread (the reactors never wait for it).
    const uint64_t t0 = sched.now_ns();
    uint64_t last_ios = 0, last_bytes = 0, last_ns = t0;
    for (uint64_t tick = 1;; ++tick) {
        const uint64_t target = t0 + static_cast<uint64_t>(std::min<double>(opt.seconds, static_cast<double>(tick)) * 1e9);
        while (sched.now_ns() < target) sleep_ms(std::max<long>(1, std::min<long>(50, static_cast<long>((target - sched.now_ns()) / 1'000'000))));
        uint64_t ios = 0, bytes = 0;
        for (auto& w : workers) {
            ios += w->ios.load(std::memory_order_relaxed);
            bytes += w->bytes.load(std::memory_order_relaxed);
        }
        const uint64_t now = sched.now_ns();
        const double secs = static_cast<double>(now - last_ns) / 1e9;
        std::printf("[%3llus] %12.2f IOPS %10.2f MiB/s\n", static_cast<unsigned long long>(tick),
                    static_cast<double>(ios - last_ios) / secs,
                    static_cast<double>(bytes - last_bytes) / secs / 1048576.0);
        std::fflush(stdout);
        last_ios = ios;
        last_bytes = bytes;
        last_ns = now;
        if (static_cast<double>(tick) >= opt.seconds) break;
        bool all_done = std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->drained.load(); });
        if (all_done) break;
    }
    for (auto& w : workers) {
        Worker* wp = w.get();
        (void)w->thread->post([wp] {
            wp->stopping = true;
            wp->finish_if_idle();
        });
    }
    if (!h.wait([&] { return std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->drained.load(std::memory_order_acquire); }); },
                60 * runtime::kNsPerSec)) {
        std::fprintf(stderr, "strata-nvme-perf: outstanding I/O did not complete within 60 s\n");
        rc = 1;
    }

    std::printf("\n%-40s: %12s %10s %10s %10s %10s\n", "Device Information", "IOPS", "MiB/s", "Average", "min", "max");
    double total_iops = 0, total_mib = 0;
    Histogram all;
    for (auto& w : workers) {
        const double secs = w->ended_ns > w->started_ns ? static_cast<double>(w->ended_ns - w->started_ns) / 1e9 : opt.seconds;
        const double iops = static_cast<double>(w->ios.load()) / secs;
        const double mib = static_cast<double>(w->bytes.load()) / secs / 1048576.0;
        const Histogram& hst = w->hist;
        const std::string label = fmt::format("{} ({}) NSID {} from core {:2}", fabrics ? "TCP" : "PCIE", where, ns->id, w->core);
        std::printf("%-40s: %12.2f %10.2f %10.2f %10.2f %10.2f\n", label.c_str(), iops, mib,
                    hst.count ? static_cast<double>(hst.sum_ns) / static_cast<double>(hst.count) / 1e3 : 0.0,
                    hst.count ? static_cast<double>(hst.min_ns) / 1e3 : 0.0, static_cast<double>(hst.max_ns) / 1e3);
        print_latency("", hst);
        if (w->errors.load() != 0) {
            std::printf("%-40s  %llu I/O errors\n", "", static_cast<unsigned long long>(w->errors.load()));
            rc = 1;
        }
        if (!w->failure.empty()) {
            std::printf("%-40s  core %d (mask %s) failed: %s\n", "", w->core, mask_of(w->core).c_str(), w->failure.c_str());
            rc = 1;
        }
        total_iops += iops;
        total_mib += mib;
        all.merge(hst);
    }
    std::printf("%s\n%-40s: %12.2f %10.2f %10.2f %10.2f %10.2f\n", std::string(106, '=').c_str(), "Total", total_iops,
                total_mib, all.count ? static_cast<double>(all.sum_ns) / static_cast<double>(all.count) / 1e3 : 0.0,
                all.count ? static_cast<double>(all.min_ns) / 1e3 : 0.0, static_cast<double>(all.max_ns) / 1e3);
    print_latency("", all);
    if (sim) {
        auto st = emulated->stats().front();
        std::printf("Emulated controller: %llu commands, %llu completions, %llu doorbell writes, %llu DMA faults\n",
                    static_cast<unsigned long long>(st.commands), static_cast<unsigned long long>(st.completions),
                    static_cast<unsigned long long>(st.doorbell_writes), static_cast<unsigned long long>(st.dma_faults));
        if (st.dma_faults != 0) rc = 1;
    }
    nvme::QPairStats qs;
    h.on(*workers.front()->thread, [&] { qs = workers.front()->qp->stats(); });
    std::printf("Driver (core %d): %llu submitted, %llu completed, %llu doorbells, %llu waited for room, %llu bad completions\n",
                workers.front()->core, static_cast<unsigned long long>(qs.submitted),
                static_cast<unsigned long long>(qs.completed), static_cast<unsigned long long>(qs.doorbells),
                static_cast<unsigned long long>(qs.waited_for_room), static_cast<unsigned long long>(qs.bad_completions));
    std::fflush(stdout);
    cleanup();
    env::fini();
    return rc;
}
