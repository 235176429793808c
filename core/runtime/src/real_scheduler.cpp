#include <strata/runtime/scheduler.h>

#include <pthread.h>
#include <sched.h>

#include <chrono>

#include <strata/base/log.h>

#include "poller.h"

namespace strata::runtime {

STRATA_LOG_COMPONENT(reactor);

struct RealScheduler::Reactor {
    uint32_t index;
    int core;
    std::thread os_thread;
    std::mutex incoming_mutex;  // control path: Threads created while running
    std::vector<Thread*> incoming;
    std::atomic<bool> has_incoming{false};
    std::vector<Thread*> threads;
    std::atomic<uint64_t> messages_run{0};  // published only while draining for stop()
    std::atomic<bool> released{false};
};

RealScheduler::RealScheduler(RealSchedulerOptions options)
    : Scheduler(static_cast<uint32_t>(options.cores.size())), options_(std::move(options)) {
    for (uint32_t i = 0; i < options_.cores.size(); ++i) {
        auto r = std::make_unique<Reactor>();
        r->index = i;
        r->core = options_.cores[i];
        reactors_.push_back(std::move(r));
    }
}

RealScheduler::~RealScheduler() { stop(); }

void RealScheduler::on_thread_created(Thread& thread) {
    Reactor& r = *reactors_[thread.reactor()];
    std::lock_guard lock(r.incoming_mutex);
    r.incoming.push_back(&thread);
    r.has_incoming.store(true, std::memory_order_release);
}

void RealScheduler::start() {
    STRATA_ASSERT_MSG(!running_.load(), "scheduler already started");
    phase_.store(0);
    running_.store(true);
    for (auto& r : reactors_) r->os_thread = std::thread([this, &r] { reactor_main(*r); });
}

void RealScheduler::reactor_main(Reactor& r) {
    if (options_.pin && r.core >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(r.core, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
            STRATA_WARNLOG(log_reactor, "reactor {}: cannot pin to core {}; running unpinned",
                           r.index, r.core);
    }
    std::string os_name = "reactor_" + std::to_string(r.index);
    pthread_setname_np(pthread_self(), os_name.c_str());
    STRATA_INFOLOG(log_reactor, "reactor {} running on core {}", r.index, r.core);

    uint32_t idle_run = 0;
    // One clock read per Thread polled: each poll's end is the next one's start (across loop
    // iterations too) and the time its timers are checked against (a clock read costs as much
    // as an idle Thread's whole poll, and at queue depth 1 a busy iteration carries one I/O).
    uint64_t t0 = clock_.now_ns();
    for (;;) {
        if (r.has_incoming.load(std::memory_order_acquire)) {
            std::lock_guard lock(r.incoming_mutex);
            r.threads.insert(r.threads.end(), r.incoming.begin(), r.incoming.end());
            r.incoming.clear();
            r.has_incoming.store(false, std::memory_order_relaxed);
            t0 = clock_.now_ns();
        }
        int phase = phase_.load(std::memory_order_acquire);
        if (phase >= 2) break;
        bool busy = false;
        uint64_t messages = 0;
        for (Thread* t : r.threads) {
            if (t->exited()) continue;
            bool b = t->poll(64, t0) == PollStatus::busy;
            const uint64_t t1 = clock_.now_ns();
            (b ? t->stats_.busy_ns : t->stats_.idle_ns) += t1 - t0;
            t0 = t1;
            busy |= b;
            messages += t->stats_.messages;
        }
        if (phase == 1) r.messages_run.store(messages, std::memory_order_release);
        if (busy) {
            idle_run = 0;
        } else if (options_.yield_when_idle && ++idle_run >= 1024) {
            idle_run = 0;
            sched_yield();  // only when idle: lets reactors share cores on small hosts
            t0 = clock_.now_ns();
        }
    }
    // Release phase: channels and pollers are torn down on the OS thread that owns them.
    for (Thread* t : r.threads)
        if (!t->exited()) t->release_everything();
    r.released.store(true, std::memory_order_release);
}

bool RealScheduler::all_quiet() const {
    // Reads only what other OS threads may read: the incoming flag and each ring's atomic
    // indices. A reactor's own Thread list is private to it.
    for (auto& r : reactors_)
        if (r->has_incoming.load()) return false;
    for (Thread* t : threads())
        if (!t->exited() && t->pending_messages() != 0) return false;
    return true;
}

void RealScheduler::stop() {
    if (!running_.load()) return;
    phase_.store(1, std::memory_order_release);
    // Drain: messages may beget messages on any reactor. Quiet means no ring holds a message
    // and no reactor ran one over a window (pollers may keep working: a periodic poller does
    // not hold up the stop). A message storm that never ends is bounded by the deadline.
    auto busy_total = [this] {
        uint64_t n = 0;
        for (auto& r : reactors_) n += r->messages_run.load(std::memory_order_acquire);
        return n;
    };
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int quiet_windows = 0;
    while (quiet_windows < 3) {
        uint64_t before = busy_total();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        bool quiet = all_quiet() && busy_total() == before;
        quiet_windows = quiet ? quiet_windows + 1 : 0;
        if (std::chrono::steady_clock::now() > deadline) {
            STRATA_WARNLOG(log_reactor, "stop: still busy after 5 s; releasing anyway");
            break;
        }
    }
    phase_.store(2, std::memory_order_release);
    for (auto& r : reactors_)
        if (r->os_thread.joinable()) r->os_thread.join();
    // Threads created after the reactors left were never picked up: release them here.
    for (auto& r : reactors_)
        for (Thread* t : r->incoming)
            if (!t->exited()) t->release_everything();
    running_.store(false);
}

}  // namespace strata::runtime
