// The I/OAT (Intel QuickData / "Crystal Beach" v3) DMA-engine driver: one Channel per PCI
// function, polled, lock-free, owned by one runtime::Thread.
//
// Lifecycle (all on the owner Thread):
//   auto addrs = ioat::probe();                                   // control path
//   auto ch = ioat::Channel::attach(addrs.value()[0], thread, {}); // claims, resets the channel
//   ch->submit_copy(dst_iova, src_iova, len, done, ctx);           // queues descriptors
//   ch->flush();                                                   // one doorbell (DMACOUNT)
//   ... poller: ch->process_completions();                         // callbacks run here
//   ch->detach(done, ctx);        // resets, waits for the channel, then frees; done reports it
//
// Data path. submit_copy / submit_fill write 64-byte descriptors into a ring of dma_alloc'd
// memory (split at the device's XFERCAP) and return at once: Errc::busy when the ring has no
// room (retry after completions), Errc::device_removed after a hot removal, Errc::invalid_argument
// for len 0. Nothing reaches the device until flush() writes DMACOUNT (batching). The channel
// writes its status (CHANSTS layout) to a completion word in host memory after each batch;
// process_completions() reads that word (no MMIO per poll) and runs the callbacks of finished
// operations. Callbacks never run inside submit or flush. No lock, syscall or allocation per op.
// The channel also registers a watchdog timed poller on the owner Thread (period
// stall_timeout_us / 2, at least 50 us) that calls the same completion path while work is
// outstanding or a reset is in progress, so callbacks may also run from it (always on the owner
// Thread, never nested inside another callback).
//
// Errors and recovery. A channel that halts (bad descriptor, DMA fault, device error) reports
// why in CHANERR: the operation that failed completes with an Errc mapped from it (dma_fault for
// address/data errors, io_error for the rest) and the Status context names the lowest CHANERR bit
// ("read_data_err"); every other outstanding operation completes with Errc::aborted; the raw
// CHANERR of the last halt is last_chanerr() (spec::describe_chanerr() decodes it). The channel
// then resets itself and accepts new work; operations submitted meanwhile wait for the restart.
// Every operation completes exactly once. A stalled channel (completion word unchanged for
// stall_timeout_us with work outstanding) is checked through CHANSTS by MMIO (a dropped completion
// write is recovered that way). reset() fails all outstanding operations with Errc::aborted and
// restarts the channel. After a hot removal every outstanding operation fails with
// Errc::device_removed, new ones are refused, and detach() still works.
//
// Detach never frees memory the engine may still write. It resets the channel and waits, without
// blocking the owner (a timed poller on the scheduler's clock, virtual under the simulator where
// the model applies the reset in its own poller), until CHANCMD shows the reset done; only then
// are the ring and the completion word freed. A channel that does not confirm within
// detach_timeout_us keeps them (a deliberate leak, counted and logged at error level) and the
// result says so. Destroying a Channel that was not detached detaches it in the background.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/runtime/thread.h>

namespace strata::ioat {

// IOAT functions the running env backend sees (vendor 0x8086, the I/OAT v3 device ids SPDK and
// Linux bind to, which include the emulated model's), sorted by address. Control path.
Result<std::vector<env::PciAddress>> probe();

struct ChannelOptions {
    uint32_t ring_size = 512;            // descriptors; a power of two in [16, 32768]
    uint32_t channel = 0;                // channel index in the function (v3: one per function)
    uint64_t stall_timeout_us = 10'000;  // no progress with work outstanding: check CHANSTS
    // Called on the owner Thread when the function is hot-removed (after outstanding operations
    // were failed by the next process_completions()). Optional.
    runtime::MsgFn on_removed = nullptr;
    void* on_removed_ctx = nullptr;
    // How long detach waits, on the owner's scheduler clock, for the channel to confirm its
    // reset before it gives up and keeps (leaks) the ring rather than free memory the engine
    // may still write.
    uint64_t detach_timeout_us = 100'000;
};

struct ChannelStats {
    uint64_t ops_submitted = 0;
    uint64_t ops_completed = 0;    // with success
    uint64_t ops_failed = 0;       // with an error (incl. aborted and removed)
    uint64_t descriptors = 0;      // written to the ring
    uint64_t bytes = 0;            // requested by submitted ops
    uint64_t doorbells = 0;        // DMACOUNT writes
    uint64_t halts = 0;            // channel found halted
    uint64_t resets = 0;           // channel resets issued (attach, recovery, reset())
    uint64_t stalls = 0;           // stall checks that read CHANSTS by MMIO
    uint64_t bad_completions = 0;  // completion words rejected as impossible (hostile device)
    uint64_t detach_timeouts = 0;  // detaches whose reset was never confirmed (ring kept)
};

// What a detach did. Errc::timeout when the channel did not confirm its reset within
// detach_timeout_us: the engine may still write the ring and the completion word, so they were
// kept, not freed (ring_leaked), and the function stays claimed while the Channel lives (a
// later detach() retries).
struct DetachResult {
    Status status;
    bool ring_leaked = false;
};

// Capabilities read at attach.
struct ChannelInfo {
    env::PciAddress address;
    uint16_t device_id = 0;
    uint8_t version = 0;              // CBVER, e.g. 0x32
    uint64_t max_transfer_bytes = 0;  // XFERCAP in bytes
    uint32_t dma_capability = 0;      // DMACAPABILITY
    bool fill_supported = false;
    uint32_t ring_size = 0;
};

class ChannelImpl;

// One attached channel. Owned and used by its owner Thread only (not thread-safe by design).
class Channel {
public:
    using DoneFn = void (*)(void* ctx, Status s);
    using DetachFn = void (*)(void* ctx, const DetachResult& result);

    // Claims the function, checks version/XFERCAP, allocates the ring and the completion word,
    // and starts a channel reset (finished from process_completions(); submissions before that
    // are queued). Errors: not_found / busy (claim), not_supported (not an I/OAT v3 function or
    // XFERCAP invalid), invalid_argument (options), no_memory. Control path, on `owner`.
    static Result<std::unique_ptr<Channel>> attach(const env::PciAddress& address,
                                                   runtime::Thread& owner,
                                                   ChannelOptions options = {});
    // Never waits and never frees what the engine may still write: a Channel not detached yet
    // (or still detaching) is detached in the background as close() does; one whose detach timed
    // out releases the function and leaves its ring leaked. On the owner Thread.
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    // Copies len bytes from src_iova to dst_iova (non-overlapping). One ring slot per XFERCAP.
    Status submit_copy(uint64_t dst_iova, uint64_t src_iova, uint64_t len, DoneFn done,
                       void* ctx) noexcept;
    // Writes the 64-bit pattern repeatedly (little-endian) over len bytes at dst_iova.
    // Errc::not_supported if the device lacks block fill.
    Status submit_fill(uint64_t dst_iova, uint64_t pattern, uint64_t len, DoneFn done,
                       void* ctx) noexcept;
    // Rings the doorbell for everything submitted so far (no-op when nothing is new).
    void flush() noexcept;
    // Reaps finished operations and runs their callbacks; handles halts, stalls, reset progress
    // and hot removal. Returns the number of operations completed (successfully or not).
    int process_completions() noexcept;

    uint32_t ring_free() const noexcept;    // free descriptor slots now
    uint32_t outstanding() const noexcept;  // ops submitted and not yet completed
    bool ready() const noexcept;            // channel started (not resetting, not removed)
    bool removed() const noexcept;

    // Fails every outstanding operation with Errc::aborted (from the next process_completions())
    // and resets the channel. Errc::device_removed after removal.
    Status reset() noexcept;
    // Detaches: resets a live channel, waits (see the top of this file) until the channel
    // confirms the reset or the function is gone, then frees the ring and the completion word,
    // releases the function and runs done(ctx, result) on the owner Thread, never inside this
    // call. On timeout result.status is Errc::timeout and result.ring_leaked is set: the memory
    // is kept, stats().detach_timeouts counts it, and detach may be called again to retry (it
    // frees once the channel confirms). Refused at once, and `done` never runs: Errc::busy with
    // operations outstanding (call process_completions() until outstanding() == 0), from inside
    // a completion callback, or while a detach is in progress. On a detached channel `done` runs
    // with success. The Channel must outlive `done` (or use close()). `done` may be null.
    Status detach(DetachFn done, void* ctx);
    bool detached() const noexcept;     // detached, the ring freed
    bool ring_leaked() const noexcept;  // a detach timed out: the ring is kept (not freed)

    // Destroys `ch` without waiting: outstanding operations are dropped (their callbacks never
    // run), then it detaches as above in the background and deletes itself after `done` (may be
    // null) ran on the owner Thread. The owner Thread does not exit before that. For owners that
    // go away first (the accel ioat module's per-Thread channel). On the owner Thread.
    static void close(std::unique_ptr<Channel> ch, DetachFn done = nullptr,
                      void* ctx = nullptr) noexcept;

    const ChannelInfo& info() const noexcept;
    ChannelStats stats() const noexcept;
    uint32_t last_chanerr() const noexcept;   // CHANERR of the most recent halt (0: none)
    std::string describe_last_error() const;  // "read_data_err|length_err" or "none"

private:
    friend class ChannelImpl;
    friend class ChannelTestPeer;
    explicit Channel(std::unique_ptr<ChannelImpl> impl) noexcept;
    std::unique_ptr<ChannelImpl> impl_;
};

}  // namespace strata::ioat
