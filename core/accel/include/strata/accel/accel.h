// The accel framework: copy, fill, compare, crc32c, copy+crc32c and xor offloaded to the best
// available module (software on ISA-L, or an I/OAT DMA channel), with batching.
//
// Lifecycle (control path):
//   accel::init();                        // starts the enabled modules (software always; ioat
//                                         // after enable_ioat_module()) and the IoDevice
//   auto* ch = accel::get_channel();      // on a Thread: that Thread's channel (refcounted)
//   ch->submit_copy(dst, src, len, done, ctx);
//   ... done(ctx, Status) runs later from the channel's poller on the same Thread ...
//   accel::put_channel(ch);               // once every op of this Thread has completed
//   accel::fini(done, ctx);               // done runs once every channel is gone
//
// Data path. A Channel belongs to one Thread; every submit_* call is made on that Thread. A
// submit either refuses at once (returns an error Status; the callback will never run) or
// accepts (returns ok; the callback runs exactly once, later, from the channel's poller, never
// inside submit). Refusals: Errc::invalid_argument for bad arguments (null buffer with a
// non-zero length, iovec totals that do not match, too many xor sources); Errc::busy when the
// channel's preallocated task pool (FrameworkOptions::task_count) is exhausted -- the op is NOT
// queued, retry after some completions (this is the documented pool-exhausted behaviour);
// Errc::shutdown after fini() started. No lock, syscall or heap allocation per op.
//
// Buffers (and the iovec arrays and xor source array) must stay valid until the callback.
// Copies must not overlap. Results: compare completes with ok when equal and with Errc::corrupt
// (context "miscompare") when not, writing the first differing byte offset to
// *miscompare_offset if given (SPDK reports -EILSEQ there); crc32c writes *crc_dst before the
// callback. crc32c seeds follow SPDK: seed 0 gives the standard CRC-32C; seeding with a
// previous result continues it (see <strata/base/crc.h>).
//
// Batching: submit_batch(ops, n) takes n Op descriptors at once (all accepted or all refused),
// runs them (possibly on different modules, in any order) and calls done once when all have
// finished, with ok if all succeeded, else the first failure in array order; ops[i].status
// holds each op's own status. No per-op callbacks run for batched ops.
//
// Routing: each opcode goes to one module: an explicit assignment (assign_opc(), the
// accel_assign_opc RPC or config) if that module is started, supports the opcode and has a
// channel on this Thread; otherwise the highest-priority started module that supports it
// (ioat > software for copy/fill). A module may still hand a single op to software when it
// cannot do it (IOAT: buffer outside DMA memory, too many IOVA segments, zero length); such
// ops are counted as fallbacks. Changing an assignment at run time affects ops submitted
// afterwards.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/runtime/io_device.h>

namespace strata::accel {

enum class Opcode : uint8_t { copy, fill, compare, crc32c, copy_crc32c, xor_, count_ };
inline constexpr size_t kOpcodeCount = static_cast<size_t>(Opcode::count_);
inline constexpr uint32_t kMaxXorSources = 32;

// SPDK's names: "copy", "fill", "compare", "crc32c", "copy_crc32c", "xor".
std::string_view opcode_name(Opcode op) noexcept;
std::optional<Opcode> opcode_from_name(std::string_view name) noexcept;

using DoneFn = void (*)(void* ctx, Status s);

// One operation, for submit() and submit_batch(). Unused fields stay at their defaults.
//   copy:        dst <- src (len bytes), or dst_iov <- src_iov (equal totals)
//   fill:        dst (or dst_iov) <- fill_byte
//   compare:     src vs dst (or src_iov vs dst_iov, equal totals); miscompare_offset optional
//   crc32c:      *crc_dst = crc32c(seed, src or src_iov)
//   copy_crc32c: copy as above, and *crc_dst = crc32c(seed, source data)
//   xor:         dst = xor of xor_srcs[0..xor_nsrcs) (each len bytes); 1..kMaxXorSources
// With an iovec form, the flat pointer of that side is ignored and len is derived.
struct Op {
    Opcode opcode = Opcode::copy;
    void* dst = nullptr;
    const void* src = nullptr;
    uint64_t len = 0;
    const struct iovec* dst_iov = nullptr;
    uint32_t dst_iovcnt = 0;
    const struct iovec* src_iov = nullptr;
    uint32_t src_iovcnt = 0;
    const void* const* xor_srcs = nullptr;
    uint32_t xor_nsrcs = 0;
    uint8_t fill_byte = 0;
    uint32_t seed = 0;
    uint32_t* crc_dst = nullptr;
    uint64_t* miscompare_offset = nullptr;
    Status status;  // output: the op's own status (batches)
};

struct OpStats {
    uint64_t executed = 0;   // completed (success or failure)
    uint64_t failed = 0;     // completed with an error (a miscompare counts as failed, as in SPDK)
    uint64_t num_bytes = 0;  // source bytes of executed ops
};

struct Stats {
    std::array<OpStats, kOpcodeCount> ops{};
    // Per module (index as in module_names()), ops executed there.
    std::vector<uint64_t> module_ops;
    uint64_t busy = 0;       // submits refused with Errc::busy (task pool exhausted)
    uint64_t fallbacks = 0;  // ops a hardware module handed to software
    uint64_t batches = 0;    // batches completed
    Stats& operator+=(const Stats& o);
};

class Module;
class ModuleChannel;
struct Task;
struct Batch;
class ChannelImpl;

// A Thread's accel channel. Get it with accel::get_channel() (or
// runtime::get_channel<accel::Channel>(*accel::io_device())), use it on that Thread only.
class Channel final : public runtime::IoChannel {
public:
    ~Channel() override;

    Status submit(const Op& op, DoneFn done, void* ctx) noexcept;
    // count in [1, task_count]; ops[i].status is written before done runs.
    Status submit_batch(Op* ops, uint32_t count, DoneFn done, void* ctx) noexcept;

    // Convenience forms of submit().
    Status submit_copy(void* dst, const void* src, uint64_t len, DoneFn done, void* ctx) noexcept;
    Status submit_copyv(const struct iovec* dst_iov, uint32_t dst_iovcnt,
                        const struct iovec* src_iov, uint32_t src_iovcnt, DoneFn done,
                        void* ctx) noexcept;
    Status submit_fill(void* dst, uint8_t fill_byte, uint64_t len, DoneFn done, void* ctx) noexcept;
    Status submit_compare(const void* a, const void* b, uint64_t len, uint64_t* miscompare_offset,
                          DoneFn done, void* ctx) noexcept;
    Status submit_crc32c(uint32_t* crc_dst, const void* src, uint64_t len, uint32_t seed,
                         DoneFn done, void* ctx) noexcept;
    Status submit_crc32cv(uint32_t* crc_dst, const struct iovec* iov, uint32_t iovcnt,
                          uint32_t seed, DoneFn done, void* ctx) noexcept;
    Status submit_copy_crc32c(void* dst, const void* src, uint64_t len, uint32_t* crc_dst,
                              uint32_t seed, DoneFn done, void* ctx) noexcept;
    Status submit_copy_crc32cv(void* dst, const struct iovec* src_iov, uint32_t src_iovcnt,
                               uint32_t* crc_dst, uint32_t seed, DoneFn done, void* ctx) noexcept;
    Status submit_xor(void* dst, const void* const* srcs, uint32_t nsrcs, uint64_t len, DoneFn done,
                      void* ctx) noexcept;

    // Module this Thread routes `op` to right now ("software", "ioat").
    const char* module_for(Opcode op) const noexcept;
    uint32_t tasks_available() const noexcept;
    uint32_t outstanding() const noexcept;  // accepted, not yet completed
    const Stats& stats() const noexcept;

    ChannelImpl& impl() noexcept { return *impl_; }

private:
    friend class ChannelImpl;
    friend class ChannelFactory;
    explicit Channel(std::unique_ptr<ChannelImpl> impl) noexcept;
    std::unique_ptr<ChannelImpl> impl_;
};

// --- framework control path (any Thread unless noted; not concurrently with each other) ---

struct FrameworkOptions {
    uint32_t task_count = 2048;  // per-channel task pool (ops outstanding per Thread)
    uint32_t batch_count = 256;  // per-channel batch records
};

// Errc::already_exists if running; invalid_argument for zero counts, task_count above 2^20 or
// batch_count above 2^16 (both pools are allocated per channel up front).
Result<void> set_options(const FrameworkOptions& options);  // before init()
FrameworkOptions options();

// Starts the enabled modules and registers the IoDevice. Errc::already_exists if running.
Result<void> init();
// Refuses new channels; done(ctx) runs on the calling Thread (which must be a runtime Thread)
// once every channel is gone; then modules stop. Safe when not running (done runs by message).
void fini(runtime::MsgFn done, void* ctx);
bool running() noexcept;
runtime::IoDevice* io_device() noexcept;  // nullptr when not running

// On the current Thread; nullptr when not running. Pair with put_channel().
Channel* get_channel() noexcept;
void put_channel(Channel* channel) noexcept;

// Modules, in the explicit table's order ("software", "ioat").
std::vector<std::string> module_names();
// Supported opcodes of a module (by static capability), or not_found.
Result<std::vector<Opcode>> module_opcodes(std::string_view module);
bool module_started(std::string_view module);

// ioat_scan_accel_module: enables the I/OAT module. Before init() it starts with init(); while
// running it starts at once (probing the functions env sees) and serves channels created
// afterwards. Idempotent.
Result<void> enable_ioat_module();
bool ioat_module_enabled() noexcept;

// accel_assign_opc: route `op` to `module`. Errc::not_found for an unknown module,
// not_supported if it cannot do that opcode. Kept across init/fini (config).
Result<void> assign_opc(Opcode op, std::string_view module);
void clear_assignments();
// Explicit overrides only (what save_config writes).
std::vector<std::pair<Opcode, std::string>> assignment_overrides();
// Effective module per opcode now ("software" when nothing better is started).
std::string assigned_module(Opcode op);

// Totals: channels alive (collected on their Threads by message) plus channels already gone.
// done runs on the calling Thread. Control path. A channel destroyed while the collection runs
// may be missed by it (counts are exact when no channel comes or goes meanwhile).
void get_stats(std::function<void(const Stats&)> done);

}  // namespace strata::accel
