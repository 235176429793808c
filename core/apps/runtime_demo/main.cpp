// strata-runtime-demo: the same message workload on the real scheduler (reactors pinned to
// cores) and under the seeded simulator, with the figures of each and a replay by seed.
#include <strata/base/random.h>
#include <strata/runtime/scheduler.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

using namespace strata;
using namespace strata::runtime;

// Tokens hop from Thread to Thread; each hop picks the next Thread from the sender's PRNG.
// One hop in eight parks the token until its Thread's 20 us release timer fires (think of a
// device round trip), so timers and virtual time take part; a 1 ms heartbeat counts time.
struct Workload {
    std::vector<Thread*> threads;
    std::vector<std::vector<void*>> parked;  // per Thread, touched only by that Thread
    std::vector<Prng> prngs;  // one per Thread: no shared state between reactors
    std::atomic<uint64_t> hops{0};
    uint64_t hop_limit = 0;
    std::atomic<uint64_t> heartbeats{0};
    std::atomic<uint32_t> tokens_done{0};
};

struct Token {
    Workload* w;
};

void hop(void* p) {
    Workload& w = *static_cast<Token*>(p)->w;
    Thread* self = current_thread();
    if (w.hops.fetch_add(1, std::memory_order_relaxed) >= w.hop_limit) {
        delete static_cast<Token*>(p);
        w.tokens_done.fetch_add(1, std::memory_order_release);
        return;
    }
    Prng& prng = w.prngs[self->id()];
    if (prng.uniform(8) == 0) {
        w.parked[self->id()].push_back(p);
        return;
    }
    Thread* next = w.threads[prng.uniform(w.threads.size())];
    deliver(*next, hop, p);
}

PollStatus release_parked(void* p) {
    Workload& w = *static_cast<Workload*>(p);
    auto& parked = w.parked[current_thread()->id()];
    if (parked.empty()) return PollStatus::idle;
    std::vector<void*> tokens;
    tokens.swap(parked);
    Prng& prng = w.prngs[current_thread()->id()];
    for (void* token : tokens) deliver(*w.threads[prng.uniform(w.threads.size())], hop, token);
    return PollStatus::busy;
}

PollStatus heartbeat(void* p) {
    static_cast<Workload*>(p)->heartbeats.fetch_add(1, std::memory_order_relaxed);
    return PollStatus::busy;
}

void setup(Scheduler& sched, Workload& w, int thread_count, uint64_t seed) {
    for (int i = 0; i < thread_count; ++i) {
        Thread* t = sched.create_thread(fmt::format("app{}", i));
        w.threads.push_back(t);
        w.prngs.emplace_back(seed + static_cast<uint64_t>(i));
        w.parked.emplace_back();
        (void)t->post([t, &w] {
            t->register_poller(heartbeat, &w, "heartbeat", kNsPerMs);
            t->register_poller(release_parked, &w, "release", 20 * kNsPerUs);
        });
    }
}

void launch(Workload& w, int tokens) {
    for (int i = 0; i < tokens; ++i)
        (void)w.threads[static_cast<size_t>(i) % w.threads.size()]->send(hop, new Token{&w});
}

struct SimFigures {
    uint64_t steps, messages, virtual_ns, trace_hash, heartbeats;
    double wall_s;
};

SimFigures run_sim(uint64_t seed, int threads, int tokens, uint64_t hops) {
    SimScheduler sim(seed, 2);
    Workload w;
    w.hop_limit = hops;
    setup(sim, w, threads, seed);
    auto t0 = std::chrono::steady_clock::now();
    launch(w, tokens);
    sim.run_until([&] { return w.tokens_done.load() == static_cast<uint32_t>(tokens); });
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {sim.sim_stats().steps, sim.sim_stats().messages, sim.now_ns(), sim.trace_hash(),
            w.heartbeats.load(), wall};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Strata runtime demo: reactors exchanging messages, real and simulated"};
    std::string mask = "0x3";
    int threads = 4;
    int tokens = 64;
    uint64_t hops = 20'000'000;
    uint64_t sim_hops = 1'000'000;
    uint64_t seed = 42;
    app.add_option("-m,--cpumask", mask, "cores for the real scheduler's reactors");
    app.add_option("-t,--threads", threads, "lightweight Threads")->check(CLI::Range(1, 256));
    app.add_option("--tokens", tokens, "messages circulating at once")->check(CLI::Range(1, 100000));
    app.add_option("--hops", hops, "message hops on the real scheduler");
    app.add_option("--sim-hops", sim_hops, "message hops under the simulator");
    app.add_option("-s,--seed", seed, "simulator seed");
    CLI11_PARSE(app, argc, argv);

    auto cores = parse_core_mask(mask);
    if (!cores.ok()) {
        fmt::print(stderr, "strata-runtime-demo: {}\n", cores.error().message());
        return 1;
    }
    unsigned online = std::thread::hardware_concurrency();
    std::vector<int> usable;
    for (int c : *cores)
        if (online == 0 || static_cast<unsigned>(c) < online) usable.push_back(c);
    if (usable.empty()) usable.push_back(0);

    fmt::print("== Strata runtime demo ==\n");
    fmt::print("[real] {} reactor(s) on cores {}, {} Threads, {} tokens, {} hops\n", usable.size(),
               fmt::join(usable, ","), threads, tokens, hops);
    {
        RealSchedulerOptions opts;
        opts.cores = usable;
        RealScheduler sched(opts);
        Workload w;
        w.hop_limit = hops;
        setup(sched, w, threads, seed);
        sched.start();
        auto t0 = std::chrono::steady_clock::now();
        launch(w, tokens);
        uint64_t last = 0;
        auto next_report = t0 + std::chrono::seconds(1);
        while (w.tokens_done.load(std::memory_order_acquire) != static_cast<uint32_t>(tokens)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            if (std::chrono::steady_clock::now() >= next_report) {
                uint64_t now_hops = std::min<uint64_t>(w.hops.load(), hops);
                fmt::print("[real]   {:>10} hops ({:.2f} M msgs/s)\n", now_hops,
                           static_cast<double>(now_hops - last) / 1e6);
                last = now_hops;
                next_report += std::chrono::seconds(1);
            }
        }
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        auto reactors = sched.reactors();
        sched.stop();
        fmt::print("[real] {} messages in {:.3f} s: {:.2f} M msgs/s, {:.0f} ns per message; "
                   "{} heartbeats\n",
                   hops, secs, static_cast<double>(hops) / secs / 1e6,
                   secs * 1e9 / static_cast<double>(hops), w.heartbeats.load());
        for (const auto& r : reactors)
            fmt::print("[real]   reactor {} (core {}): {}\n", r.index, r.core,
                       fmt::join(r.threads, " "));
    }

    fmt::print("[sim] same workload under the simulator: seed {}, {} hops\n", seed, sim_hops);
    SimFigures a = run_sim(seed, threads, tokens, sim_hops);
    fmt::print("[sim] {} steps ({} messages) in {:.3f} s wall, {:.2f} M steps/s\n", a.steps,
               a.messages, a.wall_s, static_cast<double>(a.steps) / a.wall_s / 1e6);
    fmt::print("[sim] virtual time {} ns, {} heartbeats, trace hash {:016x}\n", a.virtual_ns,
               a.heartbeats, a.trace_hash);
    SimFigures b = run_sim(seed, threads, tokens, sim_hops);
    fmt::print("[sim] replay of seed {}: trace hash {:016x} -> {}\n", seed, b.trace_hash,
               b.trace_hash == a.trace_hash ? "identical run" : "DIFFERENT (bug!)");
    SimFigures c = run_sim(seed + 1, threads, tokens, sim_hops);
    fmt::print("[sim] seed {}: trace hash {:016x} -> {}\n", seed + 1, c.trace_hash,
               c.trace_hash != a.trace_hash ? "a different interleaving" : "same (unexpected)");
    bool ok = a.trace_hash == b.trace_hash && a.trace_hash != c.trace_hash;
    fmt::print("[demo] {}\n", ok ? "done: same seed, same run" : "FAILED: determinism broken");
    return ok ? 0 : 1;
}
