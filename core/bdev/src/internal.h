// Internals of the bdev core shared by the registry (bdev.cpp) and the data path (channel.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/base/object_pool.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/memory.h>
#include <strata/env/translation_cache.h>
#include <strata/runtime/io_device.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev);

inline constexpr size_t kIoPoolPerThread = 1024;
inline constexpr size_t kBounceBytes = 128 * 1024;  // bounce / emulation buffer size
inline constexpr uint32_t kMaxChildrenInFlight = 8;

class LayerState;  // bdev.cpp: the layer's state in one Host

class Channel;

// An LBA range lock (bdev.h lock_lba_range). Ordered on the bdev's lock_home Thread: granted
// ranges never overlap; a request overlapping a granted one waits there in arrival order.
struct RangeLock {
    Bdev* bdev = nullptr;
    uint64_t offset = 0, len = 0;
    Channel* owner_ch = nullptr;
    void* owner = nullptr;  // I/O on owner_ch whose caller ctx (or BdevIo) is this passes
    runtime::Thread* owner_thread = nullptr;
    RangeLockFn done = nullptr;  // grant, then unlock: on owner_thread
    void* ctx = nullptr;
    Status status;
    // On lock_home only: channels that had overlapping I/O in flight when the range was
    // announced (counted by the announcing pass), and how many have drained since.
    uint32_t waiting = 0, cleared = 0;
    bool announced = false;
    bool granted = false;
    bool finished = false;  // refused or unlocked: freed after done runs
    bool overlaps(uint64_t off, uint64_t n) const noexcept { return off < offset + len && offset < off + n; }
};

class DescImpl {
public:
    Bdev* bdev = nullptr;
    bool write = false;
    runtime::Thread* thread = nullptr;
    std::function<void(Event, Bdev&)> on_event;
    // Cleared when the desc closes: an event message already posted to the desc's Thread
    // checks it there before touching the (then freed) desc.
    std::shared_ptr<bool> open = std::make_shared<bool>(true);
    const Module* claim = nullptr;
    uint64_t timeout_ns = 0;
    Desc::TimeoutFn timeout_fn = nullptr;
    void* timeout_ctx = nullptr;
};

class BdevImpl {
public:
    LayerState* layer = nullptr;  // the registry (Host) the bdev is registered in
    std::mutex mu;  // control path only: descs, claim, gone_stats
    std::vector<DescImpl*> descs;
    const Module* claimed_by = nullptr;
    bool removing = false;
    runtime::Thread* unregister_thread = nullptr;
    std::function<void(Result<void>)> unregister_done;
    IoStats gone_stats{};
    // QoS limits, read by every channel's QoS poller.
    std::atomic<uint64_t> qos_ios{0}, qos_rw_bytes{0}, qos_r_bytes{0}, qos_w_bytes{0};
    std::atomic<uint32_t> qos_generation{0};
    // bdev_enable_histogram: the I/O type counted into IoStats::enabled_histogram,
    // kHistogramAll for every type, kHistogramOff for none (one relaxed load per completion).
    static constexpr uint8_t kHistogramAll = 0xfe, kHistogramOff = 0xff;
    std::atomic<uint8_t> histogram_type{kHistogramOff};
    // LBA range locks: touched on lock_home only (the Thread that registered the bdev).
    runtime::Thread* lock_home = nullptr;
    std::vector<RangeLock*> locks_granted;  // announced or being announced
    std::vector<RangeLock*> locks_waiting;  // overlapping a granted one, in arrival order
};

// The per-Thread state shared by every bdev channel on that Thread: the bdev_io pool, the
// io_wait queue, bounce buffers and the zero buffer for write-zeroes emulation.
class MgmtChannel final : public runtime::IoChannel {
public:
    MgmtChannel();
    ~MgmtChannel() override;
    ObjectPool<BdevIo> pool{kIoPoolPerThread};
    env::DmaBufferCache bounce{kBounceBytes, 32, 4096, 4};
    void* zeroes = nullptr;  // kBounceBytes of zeroes, DMA memory
    IoWaitEntry* wait_head = nullptr;
    IoWaitEntry* wait_tail = nullptr;
    IoWaitEntry* wait_prio_tail = nullptr;  // last of the queue_io_wait_front entries (at the head)
    void release(BdevIo& io) noexcept;
};

class MgmtDevice final : public runtime::IoDevice {
public:
    MgmtDevice() : IoDevice("bdev_mgmt") {}  // one per Host (LayerState)

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread&) override {
        return std::make_unique<MgmtChannel>();
    }
};

class Channel final : public runtime::IoChannel {
public:
    Channel(Bdev& bdev, MgmtChannel* mgmt, runtime::IoChannel* module_ch);
    ~Channel() override;

    Status submit(DescImpl& desc, IoType type, const iovec* iov, int iovcnt, const iovec* cmp,
                  int cmp_iovcnt, uint64_t offset_blocks, uint64_t num_blocks, IoDoneFn done,
                  void* ctx, void* victim = nullptr) noexcept;
    void finish(BdevIo& io) noexcept;  // a completed io: bounce, split accounting, callback
    // An io completed inside its own submit: finished from a later message, one message per
    // batch (every io deferred before that message runs rides it), not one per io.
    void finish_later(BdevIo& io) noexcept;

    // LBA range locks (channel.cpp): run on this channel's Thread by for_each_channel.
    void lock_announce(RangeLock& l) noexcept;
    void lock_withdraw(RangeLock& l) noexcept;

    Bdev& bdev;
    MgmtChannel* mgmt;
    runtime::IoChannel* module_ch;
    IoStats stats{};
    // Top-level I/O submitted here and not completed (SPDK's io_outstanding).
    size_t queue_depth() const noexcept { return outstanding_.size(); }

private:
    void start(BdevIo& io) noexcept;
    void dispatch(BdevIo& io) noexcept;
    void submit_to_module(BdevIo& io) noexcept;
    // The QoS / timeout set-up a submit runs only when one of them is or was on.
    [[gnu::noinline, gnu::cold]] void features_on(BdevImpl& bi, const DescImpl& d) noexcept;
    friend uint64_t feature_path_count(const Channel& ch) noexcept;
    bool needs_split(const BdevIo& io) const noexcept;
    bool needs_bounce(const BdevIo& io) const noexcept;
    void issue_children(BdevIo& parent) noexcept;
    void child_done(BdevIo& child) noexcept;
    void do_abort(BdevIo& io) noexcept;
    bool qos_admit(const BdevIo& io) noexcept;
    void account(const BdevIo& io) noexcept;
    void trace(const BdevIo& io) noexcept;  // the completion, into the simulator's event hash
    static void drain_deferred(void* ctx);
    static runtime::PollStatus qos_poll(void* ctx);
    static runtime::PollStatus timeout_poll(void* ctx);

    IntrusiveList<BdevIo> outstanding_;  // top-level I/O in submission order
    IntrusiveList<BdevIo, QueuedTag> queued_;  // waiting for QoS tokens
    // LBA range locks known to this channel; empty but for the rare lock (one branch per I/O).
    struct HeldRange {
        RangeLock* lock;
        uint32_t pending;  // overlapping writes in flight here when announced, not yet done
    };
    std::vector<HeldRange> locks_;
    IntrusiveList<BdevIo, QueuedTag> locked_;  // writes parked on a lock, in submission order
    bool lock_blocks(const BdevIo& io) const noexcept;
    bool lock_in_flight(const RangeLock& l, const BdevIo* except) noexcept;
    void lock_io_done(BdevIo& io) noexcept;
    void cw_unlock(BdevIo& parent) noexcept;
    static void cw_granted(void* ctx, Status status);
    static void cw_unlocked(void* ctx, Status status);
    runtime::Poller* qos_poller_ = nullptr;
    runtime::Poller* timeout_poller_ = nullptr;
    int64_t tokens_ios_ = 0, tokens_rw_ = 0, tokens_r_ = 0, tokens_w_ = 0;
    bool qos_on_ = false;
    uint64_t feature_path_ = 0;  // submits that ran features_on (feature_path_count)
    // From the bdev's properties, fixed at creation: most bdevs never split or bounce, and the
    // per-I/O checks are skipped for them.
    bool may_bounce_ = false;
    // needs_bounce()'s DMA check: the last DMA region an I/O buffer was found in.
    mutable env::TranslationCache dma_cache_;
    bool may_split_ = false;
    // Under the simulator only: real mode pays this one branch per I/O and no hashing.
    bool traced_ = false;
    // Completions waiting for drain_deferred (in completion order); one message is in flight
    // while the list is not empty.
    BdevIo* deferred_head_ = nullptr;
    BdevIo** deferred_tail_ = &deferred_head_;
};

}  // namespace strata::bdev
