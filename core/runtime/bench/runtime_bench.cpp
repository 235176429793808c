// strata-runtime-bench: cross-reactor message throughput and round-trip latency on the real
// scheduler, the cost of one idle poll iteration, and the cost of one simulator step.
#include <strata/runtime/scheduler.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

using namespace strata;
using namespace strata::runtime;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Throughput: a producer Thread on reactor 0 keeps the consumer's ring full with batches of
// messages to a Thread on reactor 1.
struct Flood {
    Thread* consumer;
    std::atomic<uint64_t> received{0};
    uint64_t sent = 0;
    uint64_t total;
};

void count_msg(void* p) { static_cast<Flood*>(p)->received.fetch_add(1, std::memory_order_relaxed); }

PollStatus flood_poller(void* p) {
    auto* f = static_cast<Flood*>(p);
    if (f->sent >= f->total) return PollStatus::idle;
    for (int i = 0; i < 64 && f->sent < f->total; ++i) {
        if (!f->consumer->send(count_msg, f).ok()) break;  // ring full: next iteration
        ++f->sent;
    }
    return PollStatus::busy;
}

void bench_throughput(const std::vector<int>& cores, uint64_t total) {
    RealSchedulerOptions o;
    o.cores = cores;
    RealScheduler sched(o);
    Thread* producer = sched.create_thread("producer", 0);
    Flood f;
    f.consumer = sched.create_thread("consumer", 1);
    f.total = total;
    (void)producer->post([&] { producer->register_poller(flood_poller, &f, "flood"); });
    auto t0 = Clock::now();
    sched.start();
    while (f.received.load(std::memory_order_relaxed) < total)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    double secs = seconds_since(t0);
    sched.stop();
    fmt::print("  cross-reactor messages      : {:>8.2f} M msgs/s   ({} msgs in {:.3f} s)\n",
               static_cast<double>(total) / secs / 1e6, total, secs);
}

// Latency: one message bounces between two reactors; each leg is stamped on the real clock.
struct Bounce {
    Thread* a;
    Thread* b;
    uint64_t sent_ns = 0;
    std::vector<uint64_t> rtts;
    size_t rounds;
    std::atomic<bool> done{false};
};

void bounce_b(void* p);
void bounce_a(void* p) {
    auto* bo = static_cast<Bounce*>(p);
    uint64_t now = now_ns();
    if (bo->sent_ns != 0) bo->rtts.push_back(now - bo->sent_ns);
    if (bo->rtts.size() >= bo->rounds) {
        bo->done.store(true, std::memory_order_release);
        return;
    }
    bo->sent_ns = now_ns();
    (void)bo->b->send(bounce_b, bo);
}
void bounce_b(void* p) { (void)static_cast<Bounce*>(p)->a->send(bounce_a, p); }

void bench_latency(const std::vector<int>& cores, size_t rounds) {
    RealSchedulerOptions o;
    o.cores = cores;
    o.yield_when_idle = false;  // latency wants pure busy polling
    RealScheduler sched(o);
    Bounce bo;
    bo.a = sched.create_thread("a", 0);
    bo.b = sched.create_thread("b", 1);
    bo.rounds = rounds;
    bo.rtts.reserve(rounds);
    sched.start();
    (void)bo.a->send(bounce_a, &bo);
    while (!bo.done.load(std::memory_order_acquire))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sched.stop();
    std::sort(bo.rtts.begin(), bo.rtts.end());
    auto pct = [&](double q) { return bo.rtts[static_cast<size_t>(q * (bo.rtts.size() - 1))]; };
    fmt::print("  cross-reactor round trip    : p50 {} ns, p99 {} ns, p99.9 {} ns ({} rounds)\n",
               pct(0.50), pct(0.99), pct(0.999), rounds);
}

PollStatus idle_poll(void*) { return PollStatus::idle; }

void bench_idle_iteration(uint64_t iterations) {
    // Drive one Thread by hand on this OS thread: the cost of a reactor pass with nothing to do.
    SimScheduler owner(1);  // any scheduler can own the Thread; poll() is what is measured
    Thread* t = owner.create_thread("idle");
    t->register_poller(idle_poll, nullptr, "idle");
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < iterations; ++i) (void)t->poll();
    double ns = seconds_since(t0) * 1e9 / static_cast<double>(iterations);
    fmt::print("  idle poll iteration         : {:>8.1f} ns  (1 idle poller, empty ring)\n", ns);
}

void self_message(void* p) {
    auto* left = static_cast<uint64_t*>(p);
    if (--*left > 0) (void)current_thread()->send(self_message, p);
}

void bench_sim_step(uint64_t steps) {
    SimScheduler sim(7);
    std::vector<Thread*> threads;
    for (int i = 0; i < 4; ++i) threads.push_back(sim.create_thread("s" + std::to_string(i)));
    std::vector<uint64_t> left(threads.size(), steps / threads.size());
    for (size_t i = 0; i < threads.size(); ++i) (void)threads[i]->send(self_message, &left[i]);
    auto t0 = Clock::now();
    sim.run_until_idle();
    double secs = seconds_since(t0);
    double ns = secs * 1e9 / static_cast<double>(sim.sim_stats().steps);
    fmt::print("  sim step (4 Threads)        : {:>8.1f} ns  ({} steps)\n", ns,
               sim.sim_stats().steps);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Strata runtime benchmarks"};
    std::string mask = "0x3";
    uint64_t messages = 20'000'000;
    size_t rounds = 200'000;
    app.add_option("-m,--cpumask", mask, "two cores for the cross-reactor figures");
    app.add_option("-n,--messages", messages, "messages for the throughput figure");
    app.add_option("-r,--rounds", rounds, "round trips for the latency figure");
    CLI11_PARSE(app, argc, argv);
    auto cores = parse_core_mask(mask);
    if (!cores.ok() || cores->size() < 2) {
        fmt::print(stderr, "strata-runtime-bench: need a mask with two cores ({})\n",
                   cores.ok() ? "got one" : cores.error().message());
        return 1;
    }
    std::vector<int> two{(*cores)[0], (*cores)[1]};
    fmt::print("strata-runtime-bench (reactors on cores {} and {})\n", two[0], two[1]);
    bench_throughput(two, messages);
    bench_latency(two, rounds);
    bench_idle_iteration(50'000'000);
    bench_sim_step(10'000'000);
    return 0;
}
