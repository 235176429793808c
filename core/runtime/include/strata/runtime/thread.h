// Thread: a lightweight scheduling context (not an OS thread).
//
// A Thread owns a lock-free MPSC message ring, its pollers and its io channels. Every I/O
// object belongs to exactly one Thread; other Threads reach it only by message. A scheduler
// (RealScheduler: reactors on pinned OS threads; SimScheduler: one OS thread, seeded order)
// runs the Thread; the Thread itself never starts OS threads, sleeps or allocates per message.
//
// Lifecycle: created by Scheduler::create_thread, runs until the scheduler stops or the
// Thread calls request_exit() and has released its pollers and channels.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <strata/base/mpsc_ring.h>
#include <strata/base/random.h>
#include <strata/base/status.h>

namespace strata::runtime {

class Host;
class Scheduler;
class Thread;
class IoDevice;
class IoChannel;

using MsgFn = void (*)(void* ctx);

enum class PollStatus : int { idle = 0, busy = 1 };
using PollFn = PollStatus (*)(void* ctx);

// The Thread whose code is running on this OS thread now, or nullptr outside any Thread.
Thread* current_thread() noexcept;

// Time from the current Thread's scheduler (virtual under the simulator). Outside any Thread
// it is CLOCK_MONOTONIC, except while a simulator exists in the process: there a clock read
// from outside its Threads is a programming error (asserted), never a silent real-time value.
uint64_t now_ns() noexcept;

// Data-path time: the current Thread's cached "now" while the real scheduler's reactor polls it
// (the time the reactor read for this poll, refreshed before each message after the first and
// before the pollers when a message ran), so a batch of I/O costs one clock read, not two per
// I/O. Elsewhere (under the simulator, or outside a reactor's poll) it is now_ns(): virtual
// time stays exact and deterministic. Never ahead of now_ns(); use it for stamps and latencies,
// not to wait for time to pass within one callback.
uint64_t poll_now_ns() noexcept;

// What the stack did, for the simulator's trace hash (SimScheduler::trace_hash): the kind of
// event and up to three words (a completed bdev I/O's type, range and status; an RPC reply's
// digest; a device command). Under the simulator each event is folded into the run's hash, so
// two runs of one seed agree on what happened, not only on which Thread ran; in real mode it
// costs one predictable branch.
enum class TraceKind : uint64_t {
    bdev_io = 1,      // a: type << 56 | status, b: offset_blocks, c: num_blocks ^ data checksum
    rpc_reply = 2,    // a: digest of the reply text
    device_cmd = 3,   // a: opcode/queue, b, c: command words (device models)
    user = 4,         // tests and harness probes
};
void trace_event(TraceKind kind, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0) noexcept;
struct EventTrace {
    TraceHash hash;
    uint64_t count = 0;
    uint64_t by_kind[8] = {};  // indexed by TraceKind
};

struct ThreadStats {
    uint64_t messages = 0;          // messages executed
    uint64_t poller_runs = 0;       // active and timed poller invocations
    uint64_t busy_iterations = 0;   // poll() iterations that did work
    uint64_t idle_iterations = 0;
    uint64_t busy_ns = 0;           // time spent in busy iterations (real mode)
    uint64_t idle_ns = 0;
};

struct PollerInfo {
    std::string name;
    uint64_t period_ns;  // 0: active poller
    uint64_t run_count;
    uint64_t busy_count;
    bool paused;
};

class Poller;

class Thread {
public:
    Thread(const Thread&) = delete;
    Thread& operator=(const Thread&) = delete;
    ~Thread();

    const std::string& name() const noexcept { return name_; }
    uint32_t id() const noexcept { return id_; }
    uint32_t reactor() const noexcept { return reactor_; }
    Scheduler& scheduler() const noexcept { return *scheduler_; }
    // The Host (App) this Thread works for: its modules' state (host.h).
    Host& host() const noexcept { return *host_; }

    // --- messages (any OS thread) ---
    // Runs fn(ctx) on this Thread. Messages from one sender run in the order sent.
    // Errc::busy when the ring is full; Errc::shutdown once the Thread has exited.
    Status send(MsgFn fn, void* ctx) noexcept;

    // Control-path convenience: the callable is moved to the heap (one allocation).
    template <class F>
    Status post(F&& fn) {
        using Fn = std::decay_t<F>;
        auto* boxed = new Fn(std::forward<F>(fn));
        Status s = send(
            [](void* p) {
                std::unique_ptr<Fn> f(static_cast<Fn*>(p));
                (*f)();
            },
            boxed);
        if (!s.ok()) delete boxed;
        return s;
    }

    // --- pollers (this Thread only) ---
    // period_ns == 0: an active poller run every iteration; otherwise run once per period
    // on the scheduler's clock. `name` must outlive the poller (a literal).
    Poller* register_poller(PollFn fn, void* ctx, const char* name, uint64_t period_ns = 0);
    // Safe from inside the poller's own callback. Sets *poller to nullptr.
    void unregister_poller(Poller*& poller) noexcept;
    void pause_poller(Poller* poller) noexcept;
    void resume_poller(Poller* poller) noexcept;
    std::vector<PollerInfo> pollers() const;

    // --- lifecycle ---
    // This Thread only. The Thread exits once it has no pollers and no io channels left;
    // messages keep being delivered until then.
    void request_exit() noexcept;
    bool exiting() const noexcept { return exit_requested_; }
    bool exited() const noexcept { return exited_.load(std::memory_order_acquire); }

    // One iteration: up to max_messages messages, every active poller, every due timed poller.
    // Called by the real scheduler's reactor loop (and usable by a test driving a Thread by
    // hand). Returns whether anything did work. `now_ns`: the scheduler's time, read by the
    // caller just before (the reactor loop reads the clock once per Thread polled and passes
    // it on); timed pollers due by then run. kReadClock: poll() reads it when a timer exists.
    static constexpr uint64_t kReadClock = UINT64_MAX;
    PollStatus poll(uint32_t max_messages = 64, uint64_t now_ns = kReadClock);

    const ThreadStats& stats() const noexcept { return stats_; }
    size_t io_channel_count() const noexcept { return channels_.size(); }
    // (device, channel) pairs held by this Thread; read on this Thread only.
    const std::vector<std::pair<IoDevice*, IoChannel*>>& channels_ref() const noexcept {
        return channels_;
    }
    size_t pending_messages() const noexcept { return ring_.size_approx(); }

private:
    friend class Scheduler;
    friend class SimScheduler;
    friend class RealScheduler;
    friend class IoChannel;
    friend IoChannel* get_io_channel(IoDevice& device) noexcept;
    friend void put_io_channel(IoChannel* channel) noexcept;
    friend class ThreadTestPeer;
    friend struct IoChannelAccess;
    friend void deliver(Thread&, MsgFn, void*);
    friend void trace_event(TraceKind, uint64_t, uint64_t, uint64_t) noexcept;
    friend uint64_t poll_now_ns() noexcept;

    struct Message {
        MsgFn fn;
        void* ctx;
    };

    Thread(Scheduler& scheduler, Host& host, uint32_t id, uint32_t reactor, std::string name,
           size_t ring_capacity);

    bool has_message() const noexcept { return !deferred_.empty() || ring_.ready(); }
    // Own Thread only: queued behind nothing, cannot fail (used for channel teardown).
    void defer(MsgFn fn, void* ctx) { deferred_.push_back({fn, ctx}); }
    bool run_one_message() noexcept;
    bool run_poller(Poller* p) noexcept;
    Poller* next_due_timer(uint64_t now) noexcept;  // pops it from the heap
    void reap_unregistered() noexcept;
    void maybe_finish_exit() noexcept;
    void release_everything() noexcept;  // scheduler shutdown

    Scheduler* scheduler_;
    Host* host_;
    EventTrace* event_trace_;  // the simulator's event hash; nullptr in real mode
    uint32_t id_;
    uint32_t reactor_;
    std::string name_;
    MpscRing<Message> ring_;
    std::vector<Poller*> active_;
    std::vector<Poller*> timed_;  // min-heap on (next_run_ns, seq)
    std::vector<Poller*> graveyard_;
    uint64_t poller_seq_ = 0;
    std::vector<std::pair<IoDevice*, IoChannel*>> channels_;
    ThreadStats stats_;
    bool exit_requested_ = false;
    std::atomic<bool> exited_{false};
    uint32_t live_pollers_ = 0;
    std::vector<Message> deferred_;  // self-addressed control messages; never refused
    bool in_poll_ = false;
    bool now_cached_ = false;  // poll_now_ns() answers cached_now_ (real reactor's poll)
    uint64_t cached_now_ = 0;
};

// Control path: like Thread::send, but a full ring is retried from the calling Thread's
// message turn until it succeeds, so a completion is never lost (must run on a Thread).
void deliver(Thread& target, MsgFn fn, void* ctx);

// Runs fn(ctx) on every Thread of the current Thread's Host (its App; other Hosts sharing the
// scheduler, as in a simulated cluster, are not visited), one after another, then done(ctx)
// back on the calling Thread. Control path.
void for_each_thread(MsgFn fn, void* ctx, MsgFn done);

}  // namespace strata::runtime
