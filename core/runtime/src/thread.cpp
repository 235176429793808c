#include <strata/runtime/thread.h>

#include <algorithm>
#include <memory>
#include <vector>

#include <strata/base/log.h>
#include <strata/runtime/host.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/scheduler.h>

#include "poller.h"

namespace strata::runtime {

STRATA_LOG_COMPONENT(thread);

namespace {
thread_local Thread* tls_current = nullptr;
const RealClock kFallbackClock;
}  // namespace

Thread* current_thread() noexcept { return tls_current; }
void set_current_thread(Thread* thread) noexcept { tls_current = thread; }

Host& current_host() noexcept {
    return tls_current != nullptr ? tls_current->host() : detail::scoped_host();
}

uint64_t now_ns() noexcept {
    if (tls_current != nullptr) return tls_current->scheduler().now_ns();
    STRATA_ASSERT_MSG(detail::live_simulators() == 0,
                      "now_ns() read outside any Thread while a simulator runs: time under the "
                      "simulator is virtual; read it on a Thread or from the scheduler's clock()");
    return kFallbackClock.now_ns();
}

uint64_t poll_now_ns() noexcept {
    Thread* t = tls_current;
    if (t != nullptr && t->now_cached_) return t->cached_now_;
    return now_ns();
}

void trace_event(TraceKind kind, uint64_t a, uint64_t b, uint64_t c) noexcept {
    Thread* t = tls_current;
    if (t == nullptr || t->event_trace_ == nullptr) return;
    TraceHash& h = t->event_trace_->hash;
    h.add((static_cast<uint64_t>(kind) << 32) | t->id_);
    h.add(a);
    h.add(b);
    h.add(c);
    ++t->event_trace_->count;
    ++t->event_trace_->by_kind[static_cast<uint64_t>(kind) & 7];
}

Thread::Thread(Scheduler& scheduler, Host& host, uint32_t id, uint32_t reactor, std::string name,
               size_t ring_capacity)
    : scheduler_(&scheduler), host_(&host), event_trace_(scheduler.event_trace()), id_(id), reactor_(reactor), name_(std::move(name)),
      ring_(ring_capacity) {}

Thread::~Thread() {
    for (Poller* p : active_) delete p;
    for (Poller* p : timed_) delete p;
    for (Poller* p : graveyard_) delete p;
    // Messages still queued are dropped; their contexts are the sender's to reclaim.
}

Status Thread::send(MsgFn fn, void* ctx) noexcept {
    if (exited()) return Status(Errc::shutdown, "thread exited");
    if (!ring_.push({fn, ctx})) return Status(Errc::busy, "message ring full");
    return Status::success();
}

Poller* Thread::register_poller(PollFn fn, void* ctx, const char* name, uint64_t period_ns) {
    STRATA_ASSERT_MSG(current_thread() == this || current_thread() == nullptr,
                      "register_poller('%s') from another Thread", name);
    auto* p = new Poller(fn, ctx, name, period_ns, poller_seq_++);
    ++live_pollers_;
    if (period_ns == 0) {
        active_.push_back(p);
    } else {
        p->next_run_ns = scheduler_->now_ns() + period_ns;
        timed_.push_back(p);
        std::push_heap(timed_.begin(), timed_.end(), TimerLater{});
    }
    return p;
}

void Thread::unregister_poller(Poller*& poller) noexcept {
    if (poller == nullptr) return;
    STRATA_ASSERT_MSG(poller->state != Poller::State::unregistered,
                      "poller '%s' unregistered twice", poller->name);
    poller->state = Poller::State::unregistered;
    --live_pollers_;
    poller = nullptr;
    // Reclaimed at a safe point: reap_unregistered() or when a timer pops.
}

void Thread::pause_poller(Poller* poller) noexcept {
    if (poller->state == Poller::State::active) poller->state = Poller::State::paused;
}

void Thread::resume_poller(Poller* poller) noexcept {
    if (poller->state == Poller::State::paused) {
        poller->state = Poller::State::active;
        poller->idle_epoch = 0;
    }
}

std::vector<PollerInfo> Thread::pollers() const {
    std::vector<PollerInfo> out;
    auto add = [&](const Poller* p) {
        if (p->state == Poller::State::unregistered) return;
        out.push_back({p->name, p->period_ns, p->run_count, p->busy_count,
                       p->state == Poller::State::paused});
    };
    for (const Poller* p : active_) add(p);
    std::vector<const Poller*> timed(timed_.begin(), timed_.end());
    std::sort(timed.begin(), timed.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
    for (const Poller* p : timed) add(p);
    return out;
}

void Thread::request_exit() noexcept {
    STRATA_ASSERT_MSG(current_thread() == this, "request_exit() from another Thread");
    exit_requested_ = true;
}

bool Thread::run_one_message() noexcept {
    Message m;
    if (!deferred_.empty()) {
        m = deferred_.front();
        deferred_.erase(deferred_.begin());
    } else if (!ring_.pop(m)) {
        return false;
    }
    m.fn(m.ctx);
    ++stats_.messages;
    return true;
}

bool Thread::run_poller(Poller* p) noexcept {
    ++p->run_count;
    ++stats_.poller_runs;
    bool busy = p->fn(p->ctx) == PollStatus::busy;
    if (busy) ++p->busy_count;
    return busy;
}

Poller* Thread::next_due_timer(uint64_t now) noexcept {
    while (!timed_.empty()) {
        Poller* top = timed_.front();
        if (top->state != Poller::State::unregistered && top->next_run_ns > now) return nullptr;
        std::pop_heap(timed_.begin(), timed_.end(), TimerLater{});
        timed_.pop_back();
        if (top->state == Poller::State::unregistered) {
            delete top;
            continue;
        }
        // Re-arm before running so the poller may unregister itself from the callback. A
        // poller that fell behind runs once, not once per missed period, and never twice in
        // one pass (next_run > now), so a slow timer cannot starve the Thread.
        top->next_run_ns = std::max(top->next_run_ns + top->period_ns, now + 1);
        timed_.push_back(top);
        std::push_heap(timed_.begin(), timed_.end(), TimerLater{});
        if (top->state == Poller::State::paused) continue;
        return top;
    }
    return nullptr;
}

void Thread::reap_unregistered() noexcept {
    auto dead = std::remove_if(active_.begin(), active_.end(), [this](Poller* p) {
        if (p->state != Poller::State::unregistered) return false;
        graveyard_.push_back(p);
        return true;
    });
    active_.erase(dead, active_.end());
    for (Poller* p : graveyard_) delete p;
    graveyard_.clear();
}

void Thread::maybe_finish_exit() noexcept {
    if (exit_requested_ && !exited() && live_pollers_ == 0 && channels_.empty() &&
        deferred_.empty()) {
        exited_.store(true, std::memory_order_release);
        STRATA_DEBUGLOG(log_thread, "thread {} exited", name_);
    }
}

PollStatus Thread::poll(uint32_t max_messages, uint64_t now_ns) {
    Thread* prev = current_thread();
    set_current_thread(this);
    in_poll_ = true;
    // A caller-supplied time (the real reactor) becomes the data path's cached "now".
    const bool cache = now_ns != kReadClock;
    now_cached_ = cache;
    cached_now_ = now_ns;
    bool busy = false;
    for (uint32_t i = 0; i < max_messages; ++i) {
        if (i != 0 && cache) {
            if (!has_message()) break;
            cached_now_ = scheduler_->now_ns();
        }
        if (!run_one_message()) break;
        busy = true;
    }
    if (busy && cache) cached_now_ = scheduler_->now_ns();
    // Index loop: a poller may register another one, which appends.
    for (size_t i = 0; i < active_.size(); ++i) {
        Poller* p = active_[i];
        if (p->state == Poller::State::active) busy |= run_poller(p);
    }
    if (!timed_.empty()) {
        const uint64_t now = cache ? cached_now_ : scheduler_->now_ns();
        while (Poller* p = next_due_timer(now)) busy |= run_poller(p);
    }
    reap_unregistered();
    maybe_finish_exit();
    if (busy)
        ++stats_.busy_iterations;
    else
        ++stats_.idle_iterations;
    in_poll_ = false;
    now_cached_ = false;
    set_current_thread(prev);
    return busy ? PollStatus::busy : PollStatus::idle;
}

void Thread::release_everything() noexcept {
    Thread* prev = current_thread();
    set_current_thread(this);
    size_t dropped = 0;
    Message m;
    while (ring_.pop(m)) ++dropped;
    if (dropped != 0)
        STRATA_WARNLOG(log_thread, "thread {}: dropped {} undelivered messages at shutdown", name_,
                       dropped);
    // Run self-addressed teardown (pending channel destroys) before forcing the rest.
    while (!deferred_.empty()) run_one_message();
    while (!channels_.empty()) {
        auto [device, channel] = channels_.back();
        channels_.pop_back();
        STRATA_WARNLOG(log_thread, "thread {}: releasing channel of '{}' held at shutdown",
                       name_, device->io_device_name());
        delete channel;
        device->channel_gone();
    }
    for (Poller* p : active_)
        if (p->state != Poller::State::unregistered) --live_pollers_;
    for (Poller* p : timed_)
        if (p->state != Poller::State::unregistered) --live_pollers_;
    for (Poller* p : active_) p->state = Poller::State::unregistered;
    for (Poller* p : timed_) p->state = Poller::State::unregistered;
    reap_unregistered();
    exited_.store(true, std::memory_order_release);
    set_current_thread(prev);
}

namespace {

struct ForEachThread {
    std::vector<Thread*> threads;
    size_t next = 0;
    bool arrived = false;  // the message now running is the visit to threads[next - 1]
    Thread* origin;
    MsgFn fn;
    void* ctx;
    MsgFn done;
};

void for_each_thread_step(void* arg) {
    auto* st = static_cast<ForEachThread*>(arg);
    if (st->arrived) {
        st->arrived = false;
        st->fn(st->ctx);
    }
    while (st->next < st->threads.size()) {
        Thread* t = st->threads[st->next];
        // Advance before sending: once sent, the step runs on t and owns st (TSan found the
        // increment after a successful send racing with t's read of next).
        st->arrived = true;
        ++st->next;
        if (t->send(for_each_thread_step, st).ok()) return;
        --st->next;
        st->arrived = false;
        if (t->exited()) {
            ++st->next;
            continue;
        }
        deliver(*current_thread(), for_each_thread_step, st);  // ring full: try again soon
        return;
    }
    std::unique_ptr<ForEachThread> owned(st);
    deliver(*st->origin, st->done, st->ctx);
}

struct Retry {
    Thread* target;
    MsgFn fn;
    void* ctx;
};

void retry_delivery(void* arg) {
    std::unique_ptr<Retry> r(static_cast<Retry*>(arg));
    deliver(*r->target, r->fn, r->ctx);
}

}  // namespace

void deliver(Thread& target, MsgFn fn, void* ctx) {
    Status s = target.send(fn, ctx);
    if (s.ok() || s == Errc::shutdown) {
        if (!s.ok())
            STRATA_WARNLOG(log_thread, "message to exited thread {} dropped", target.name());
        return;
    }
    Thread* self = current_thread();
    STRATA_ASSERT_MSG(self != nullptr, "deliver() to a full ring from outside any Thread");
    self->defer(retry_delivery, new Retry{&target, fn, ctx});
}

void for_each_thread(MsgFn fn, void* ctx, MsgFn done) {
    Thread* origin = current_thread();
    STRATA_ASSERT_MSG(origin != nullptr, "for_each_thread must be called on a Thread");
    std::vector<Thread*> threads = origin->scheduler().threads();
    // Only this Host's: another App on the same (simulated) scheduler is another machine.
    std::erase_if(threads, [origin](Thread* t) { return &t->host() != &origin->host(); });
    auto* st = new ForEachThread{std::move(threads), 0, false, origin, fn, ctx, done};
    for_each_thread_step(st);
}

}  // namespace strata::runtime
