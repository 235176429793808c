// The block-device layer, as its users see it: open a bdev by name, get the calling Thread's
// channel, submit I/O with a plain completion callback.
//
//   auto desc = bdev::open("Nvme0n1", /*write=*/true, on_event);   // control path, a Thread
//   bdev::Channel* ch = desc->get_channel();                       // this Thread's channel
//   bdev::read(*desc, *ch, buf, offset_blocks, num_blocks, done, ctx);
//   bdev::put_channel(ch); desc.reset();
//
// Data path rules: submission and completion run on the channel's Thread; no lock, no syscall
// and no allocation per I/O (bdev_io objects come from a per-Thread pool; Errc::busy when it is
// empty — wait with queue_io_wait()). The callback runs exactly once, never inside the
// submitting call. Buffers need not be DMA memory or aligned: the core bounces what the module
// cannot take, splits what crosses the module's boundaries, and emulates write zeroes and compare
// where a module lacks them.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/runtime/thread.h>

namespace strata::bdev {

class Bdev;
class Channel;
class DescImpl;

enum class IoType : uint8_t {
    read,
    write,
    write_zeroes,
    unmap,
    flush,
    reset,
    compare,
    compare_and_write,
    abort,
    count_
};
inline constexpr size_t kIoTypeCount = static_cast<size_t>(IoType::count_);
const char* io_type_name(IoType type) noexcept;  // "read", "write_zeroes", ... (SPDK's names)

// What a completion callback receives.
struct IoStatus {
    Errc code = Errc::ok;      // ok, or the failure class (io_error, corrupt for a miscompare, ...)
    uint16_t nvme_status = 0;  // NVMe-backed modules: the Status Field (SCT << 8 | SC), else 0
    bool ok() const noexcept { return code == Errc::ok; }
};
using IoDoneFn = void (*)(void* ctx, const IoStatus& status);

enum class Event { remove, resize };

// An open descriptor. Close by destroying it on the Thread that opened it.
class Desc {
public:
    ~Desc();
    Desc(const Desc&) = delete;
    Desc& operator=(const Desc&) = delete;

    Bdev& bdev() const noexcept;
    bool writable() const noexcept;
    runtime::Thread& thread() const noexcept;  // the opener (events are delivered there)
    // The calling Thread's channel of this bdev (shared by every desc of the bdev on this
    // Thread) with a reference the caller gives back with put_channel() on the same Thread
    // before the desc closes. nullptr while the bdev is being removed or the module refused.
    Channel* get_channel();
    // Every I/O outstanding longer than timeout_us calls fn(ctx, type, offset_blocks) once, on
    // the I/O's Thread (0 disables). Like spdk_bdev_set_timeout.
    using TimeoutFn = void (*)(void* ctx, IoType type, uint64_t offset_blocks);
    void set_timeout(uint64_t timeout_us, TimeoutFn fn, void* ctx);

    DescImpl& impl() noexcept { return *impl_; }

private:
    friend Result<std::unique_ptr<Desc>> open(std::string_view, bool,
                                               std::function<void(Event, Bdev&)>);
    explicit Desc(std::unique_ptr<DescImpl> impl);
    std::unique_ptr<DescImpl> impl_;
};

// Opens a bdev by name or alias on the calling Thread. Errc::not_found; Errc::permission_denied
// when `write` and a module has claimed the bdev; Errc::shutdown while it is being removed.
// on_event runs on this Thread (remove: close the desc soon; resize: num_blocks changed).
Result<std::unique_ptr<Desc>> open(std::string_view name, bool write,
                                   std::function<void(Event, Bdev&)> on_event = {});

void put_channel(Channel* ch) noexcept;

// ---- data path (the channel's Thread) ------------------------------------------------------
// iovec arrays passed to the *v functions must stay valid until the callback runs (as in SPDK);
// the single-buffer forms copy their one iovec.
// Errc::invalid_argument for a range beyond the bdev or an unsupported, unemulatable type;
// Errc::permission_denied for a write through a read-only desc; Errc::busy when the pool is
// empty; Errc::shutdown while the bdev is being removed.
Status read(Desc& desc, Channel& ch, void* buf, uint64_t offset_blocks, uint64_t num_blocks,
            IoDoneFn done, void* ctx) noexcept;
Status readv(Desc& desc, Channel& ch, const iovec* iov, int iovcnt, uint64_t offset_blocks,
             uint64_t num_blocks, IoDoneFn done, void* ctx) noexcept;
Status write(Desc& desc, Channel& ch, const void* buf, uint64_t offset_blocks,
             uint64_t num_blocks, IoDoneFn done, void* ctx) noexcept;
Status writev(Desc& desc, Channel& ch, const iovec* iov, int iovcnt, uint64_t offset_blocks,
              uint64_t num_blocks, IoDoneFn done, void* ctx) noexcept;
Status write_zeroes(Desc& desc, Channel& ch, uint64_t offset_blocks, uint64_t num_blocks,
                    IoDoneFn done, void* ctx) noexcept;
Status unmap(Desc& desc, Channel& ch, uint64_t offset_blocks, uint64_t num_blocks, IoDoneFn done,
             void* ctx) noexcept;
Status flush(Desc& desc, Channel& ch, uint64_t offset_blocks, uint64_t num_blocks, IoDoneFn done,
             void* ctx) noexcept;
// Compare: IoStatus::code is Errc::corrupt on a miscompare.
Status comparev(Desc& desc, Channel& ch, const iovec* iov, int iovcnt, uint64_t offset_blocks,
                uint64_t num_blocks, IoDoneFn done, void* ctx) noexcept;
// Compare with `compare` and, only if equal, write `write`; Errc::corrupt on a miscompare
// (nothing written). Atomic against writes to the same blocks from any channel: unless the
// module does it natively (none does today), the layer takes an LBA range lock on the blocks
// (below), compares, writes and unlocks before completing.
Status compare_and_writev(Desc& desc, Channel& ch, const iovec* compare, int compare_iovcnt,
                          const iovec* write, int write_iovcnt, uint64_t offset_blocks,
                          uint64_t num_blocks, IoDoneFn done, void* ctx) noexcept;
// Resets the bdev (the module's reset, e.g. an NVMe controller reset). I/O submitted on any
// channel while it runs waits and is sent afterwards.
Status reset(Desc& desc, Channel& ch, IoDoneFn done, void* ctx) noexcept;
// Aborts outstanding I/O on this channel whose callback context is `victim_ctx`.
Status abort(Desc& desc, Channel& ch, void* victim_ctx, IoDoneFn done, void* ctx) noexcept;

// ---- LBA range locks ----------------------------------------------------------------------
// lock_lba_range announces [offset, offset + num) to every channel of the bdev, waits until
// writes (write, write_zeroes, unmap, compare-and-write) overlapping it that were in flight
// then have completed, then calls done(ctx, status) on this channel's Thread. While it is held,
// overlapping writes submitted on other channels, or on `ch` with a callback ctx other than
// `ctx`, are parked and sent in submission order at unlock; reads are never held. A lock
// overlapping a held one waits for it. unlock_lba_range takes the same (ch, range, ctx) and
// calls done once every channel has let its parked writes go. Control path: each lock or
// unlock allocates and visits every channel; the data path pays one branch on an empty
// container per I/O. Known limit: a channel created while a lock is held does not see it.
using RangeLockFn = void (*)(void* ctx, Status status);
Status lock_lba_range(Desc& desc, Channel& ch, uint64_t offset_blocks, uint64_t num_blocks,
                      RangeLockFn done, void* ctx);
Status unlock_lba_range(Desc& desc, Channel& ch, uint64_t offset_blocks, uint64_t num_blocks,
                        RangeLockFn done, void* ctx);

// When a submit returned Errc::busy: fn(ctx) runs on this Thread once a bdev_io is free again.
struct IoWaitEntry {
    void (*fn)(void* ctx) = nullptr;
    void* ctx = nullptr;
    IoWaitEntry* next = nullptr;  // owned by the layer while queued
};
void queue_io_wait(Channel& ch, IoWaitEntry& entry) noexcept;

// ---- QoS and statistics (control path) -----------------------------------------------------
struct QosLimits {
    uint64_t rw_ios_per_sec = 0;       // 0: unlimited
    uint64_t rw_mbytes_per_sec = 0;
    uint64_t r_mbytes_per_sec = 0;
    uint64_t w_mbytes_per_sec = 0;
};

struct IoStats {
    uint64_t bytes_read = 0, num_read_ops = 0;
    uint64_t bytes_written = 0, num_write_ops = 0;
    uint64_t bytes_unmapped = 0, num_unmap_ops = 0;
    uint64_t num_write_zeroes_ops = 0, num_flush_ops = 0, num_reset_ops = 0;
    uint64_t num_compare_ops = 0, num_compare_and_write_ops = 0, num_abort_ops = 0;
    uint64_t read_latency_ticks = 0, write_latency_ticks = 0;  // sums, in ns
    uint64_t max_read_latency_ticks = 0, min_read_latency_ticks = UINT64_MAX;
    uint64_t max_write_latency_ticks = 0, min_write_latency_ticks = UINT64_MAX;
    uint64_t io_errors = 0;
    uint64_t bounced = 0, split = 0, queued_nomem = 0, qos_queued = 0, timed_out = 0;
    // Completion latency histogram (all types): bucket i holds latencies in [2^i, 2^(i+1)) ns.
    std::array<uint64_t, 40> latency_histogram{};
    // The same buckets, counted only while bdev_enable_histogram is on and only for its I/O
    // type (every type without one): what bdev_get_histogram reports. Zeroed when enabled.
    std::array<uint64_t, 40> enabled_histogram{};
    void add(const IoStats& other) noexcept;
    // bdev_reset_iostat: everything, or (maxmin_only) the max/min latencies alone.
    void reset(bool maxmin_only) noexcept;
};

}  // namespace strata::bdev
