// I/OAT v3 channel driver. See <strata/ioat/ioat.h> for the contract and docs/design/ioat.md for
// the design (ring accounting, completion word, halt recovery).
#include <strata/ioat/ioat.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/env/memory.h>
#include <strata/ioat/internal/completion.h>
#include <strata/ioat/spec/spec.h>
#include <strata/runtime/scheduler.h>

namespace strata::ioat {

STRATA_LOG_COMPONENT(ioat);

namespace {
constexpr uint32_t kAllOnes32 = 0xFFFFFFFFu;
constexpr uint64_t kResetTimeoutNs = 100'000'000;  // 100 ms, then the channel is declared dead
constexpr uint64_t kDetachPollNs = 10'000;          // CHANCMD check period while detach waits

// The Errc a halted channel's failed operation completes with, and a static name for context.
Status status_from_chanerr(uint32_t chanerr) noexcept {
    using namespace spec::chanerr;
    const char* name = "channel halted";
    for (unsigned bit = 0; bit < 32; ++bit) {
        if ((chanerr >> bit) & 1u) {
            const std::string_view n = spec::chanerr_bit_name(bit);
            if (!n.empty()) name = n.data();  // string literals: NUL-terminated
            break;
        }
    }
    const uint32_t dma =
        src_addr_err | dest_addr_err | read_data_err | write_data_err | completion_addr_err;
    return Status((chanerr & dma) ? Errc::dma_fault : Errc::io_error, name);
}
}  // namespace

Result<std::vector<env::PciAddress>> probe() {
    env::PciFilter filter;
    filter.vendor_id = spec::pci_vendor_intel;
    auto infos = env::enumerate(filter);
    if (!infos) return infos.error();
    std::vector<env::PciAddress> out;
    for (const auto& info : infos.value()) {
        if (spec::is_ioat_device(info.vendor_id, info.device_id) && info.claimable)
            out.push_back(info.address);
    }
    return out;
}

class ChannelImpl {
public:
    enum class State : uint8_t { resetting, running, removed, dead, detaching, detached };

    ChannelImpl(runtime::Thread& owner, ChannelOptions options) : owner_(owner), opts_(options) {}
    ~ChannelImpl() { release(); }

    Result<void> init(const env::PciAddress& address);

    Status submit(spec::Op op, uint64_t dst, uint64_t src_or_pattern, uint64_t len,
                  Channel::DoneFn done, void* ctx) noexcept;
    void flush() noexcept;
    int process() noexcept;
    Status reset() noexcept;
    Status detach(Channel::DetachFn done, void* ctx) noexcept;
    // Takes ownership of `self` and detaches it in the background (close(), ~Channel()).
    static void close(std::unique_ptr<ChannelImpl> self, Channel::DetachFn done,
                      void* ctx) noexcept;
    // Nothing left for the device to write into: the Channel may be destroyed at once.
    bool quiescent() const noexcept { return state_ == State::detached && !detach_poller_; }

    uint32_t ring_free() const noexcept {
        return static_cast<uint32_t>(opts_.ring_size - 1 - (head_ - tail_));
    }
    uint32_t outstanding_ops() const noexcept { return outstanding_ops_; }

    // The channel's registers.
    uint32_t creg(uint32_t off) const noexcept { return spec::channel_reg(opts_.channel, off); }

    runtime::Thread& owner_;
    ChannelOptions opts_;
    ChannelInfo info_;
    ChannelStats stats_;
    std::unique_ptr<env::PciFunction> fn_;
    env::Bar bar_;
    State state_ = State::resetting;

    // Ring: descriptors in DMA memory plus per-slot completion context (set on an op's last
    // slot only). Counters are monotonic; slot = counter & mask_.
    spec::GenericDescriptor* ring_ = nullptr;
    uint64_t ring_iova_ = 0;
    uint32_t mask_ = 0;
    std::vector<Channel::DoneFn> done_;
    std::vector<void*> ctx_;
    uint64_t head_ = 0;      // next slot to fill
    uint64_t doorbell_ = 0;  // head_ at the last doorbell
    uint64_t tail_ = 0;      // next slot to complete
    uint64_t base_ = 0;      // counter of the chain's first slot (DMACOUNT counts from here)
    uint32_t outstanding_ops_ = 0;

    uint64_t* comp_ = nullptr;  // completion word (DMA memory)
    uint64_t comp_iova_ = 0;
    uint64_t last_raw_ = 0;  // the completion word's last value seen
    uint64_t mem_pos_ = 0;   // tail_ as far as the completion word confirmed it (a stall
                             // check may retire further by CHANSTS; older words are stale)
    uint64_t last_progress_ns_ = 0;
    uint64_t reset_started_ns_ = 0;
    uint32_t last_chanerr_ = 0;
    bool reset_requested_ = false;
    bool removal_seen_ = false;  // hot-remove message arrived
    bool removal_notified_ = false;
    bool in_process_ = false;
    runtime::Poller* watchdog_ = nullptr;
    bool did_work_ = false;  // register writes in this process() call (reset, start, doorbell)

    // Detach. The ring and completion word are freed only once the channel confirmed the reset
    // (or the function is gone); ring_kept_ when a detach timed out and they were kept instead.
    runtime::Poller* detach_poller_ = nullptr;
    bool detach_started_ = false;  // this detach's reset was written (deferred inside process())
    uint64_t detach_started_ns_ = 0;
    Channel::DetachFn detach_done_ = nullptr;
    void* detach_ctx_ = nullptr;
    bool ring_kept_ = false;
    std::unique_ptr<ChannelImpl> self_;  // close(): owns itself until the detach finished

private:
    // A timed poller on the owner: finishes resets and detects stalls even when the owner polls
    // only while it expects completions (and gives the simulator a deadline to advance to).
    static runtime::PollStatus watchdog(void* ctx) noexcept {
        auto* self = static_cast<ChannelImpl*>(ctx);
        if (self->state_ == State::running && self->doorbell_ == self->tail_ &&
            !self->removal_seen_ && !self->reset_requested_)
            return runtime::PollStatus::idle;
        self->did_work_ = false;
        const int ops = self->process();
        return ops > 0 || self->did_work_ ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }
    static void on_hot_remove(void* ctx) noexcept {
        static_cast<ChannelImpl*>(ctx)->removal_seen_ = true;
    }
    // The detach poller: a timed poller, so the wait is measured on the scheduler's clock and,
    // under the simulator, virtual time advances to the next check while the model's poller
    // (another Thread on the same OS thread) applies the reset.
    static runtime::PollStatus detach_poll(void* ctx) noexcept {
        auto* self = static_cast<ChannelImpl*>(ctx);
        if (!self->detach_started_) {
            if (self->in_process_) return runtime::PollStatus::idle;
            self->start_detach();
        }
        return self->detach_step();
    }
    bool gone() const noexcept {
        return state_ == State::removed || removal_seen_ || (fn_ && fn_->removed());
    }
    void begin_detach() noexcept;
    void start_detach() noexcept;
    runtime::PollStatus detach_step() noexcept;
    void finish_detach(const DetachResult& result) noexcept;
    uint64_t slot_iova(uint64_t counter) const noexcept {
        return ring_iova_ + (counter & mask_) * spec::descriptor_size_bytes;
    }
    uint64_t load_comp() const noexcept {
        return std::atomic_ref<uint64_t>(*comp_).load(std::memory_order_acquire);
    }
    void issue_reset() noexcept;
    void write_command(uint8_t cmd) noexcept;
    void start_channel() noexcept;
    int fail_all(Status first, Status rest) noexcept;
    int complete(uint32_t count) noexcept;
    int handle_halt(uint32_t completed) noexcept;
    int go_removed() noexcept;
    void release() noexcept;
};

Result<void> ChannelImpl::init(const env::PciAddress& address) {
    const uint32_t n = opts_.ring_size;
    if (n < 16 || n > 32768 || (n & (n - 1)) != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("ioat: ring_size {} is not a power of two in [16, 32768]", n));
    auto claimed = env::claim(address);
    if (!claimed) return claimed.error();
    fn_ = std::move(claimed.value());
    info_.address = address;
    info_.device_id = fn_->info().device_id;
    if (!spec::is_ioat_device(fn_->info().vendor_id, fn_->info().device_id))
        return Error(
            Errc::not_supported,
            fmt::format("ioat: {} ({:04x}:{:04x}) is not an I/OAT channel", address.to_string(),
                        fn_->info().vendor_id, fn_->info().device_id));
    auto bar = fn_->map_bar(0);
    if (!bar) return bar.error();
    bar_ = bar.value();
    if (bar_.size_bytes() < spec::channel_base(opts_.channel) + spec::channel_mmio_size)
        return Error(Errc::not_supported,
                     fmt::format("ioat: {}: BAR0 of {} bytes has no channel {}",
                                 address.to_string(), bar_.size_bytes(), opts_.channel));
    const uint32_t dw0 = bar_.read32(spec::reg::chancnt);
    const uint32_t dw8 = bar_.read32(spec::reg::cbver);
    if (dw0 == kAllOnes32) return Error(Errc::device_removed, "ioat: device reads all-ones");
    info_.version = static_cast<uint8_t>(dw8 & 0xFF);
    if (spec::ver_major(info_.version) != 3)
        return Error(Errc::not_supported,
                     fmt::format("ioat: {}: CBVER {:#x}: only I/OAT version 3.x is supported",
                                 address.to_string(), info_.version));
    const uint32_t chancnt = dw0 & 0x1F;
    if (opts_.channel >= chancnt)
        return Error(Errc::invalid_argument,
                     fmt::format("ioat: {}: channel {} requested, CHANCNT is {}",
                                 address.to_string(), opts_.channel, chancnt));
    info_.max_transfer_bytes = spec::xfercap_bytes(static_cast<uint8_t>((dw0 >> 8) & 0xFF));
    if (info_.max_transfer_bytes == 0)
        return Error(Errc::not_supported,
                     fmt::format("ioat: {}: XFERCAP {} is invalid (below 4 KiB)",
                                 address.to_string(), (dw0 >> 8) & 0x1F));
    info_.dma_capability = bar_.read32(spec::reg::dmacapability);
    info_.fill_supported = (info_.dma_capability & spec::dmacap::fill) != 0;
    info_.ring_size = n;

    auto ring = env::dma_alloc(size_t{n} * spec::descriptor_size_bytes, 64, true);
    if (!ring) return Error(Errc::no_memory, "ioat: descriptor ring allocation failed");
    ring_ = static_cast<spec::GenericDescriptor*>(ring.value());
    ring_iova_ = env::iova_of(ring_);
    auto comp = env::dma_alloc(64, 64, true);
    if (!comp) return Error(Errc::no_memory, "ioat: completion word allocation failed");
    comp_ = static_cast<uint64_t*>(comp.value());
    comp_iova_ = env::iova_of(comp_);
    mask_ = n - 1;
    done_.assign(n, nullptr);
    ctx_.assign(n, nullptr);
    for (uint32_t i = 0; i < n; ++i) ring_[i].next = slot_iova(i + 1);

    fn_->set_hot_remove_target(&owner_, &ChannelImpl::on_hot_remove, this);
    uint64_t period_ns = opts_.stall_timeout_us * 1000 / 2;
    if (period_ns < 50'000) period_ns = 50'000;
    watchdog_ = owner_.register_poller(&ChannelImpl::watchdog, this, "ioat_watchdog", period_ns);
    // Clear stale errors (RW1C), in config space (CHANERR_INT, as SPDK does) and in BAR0, then
    // reset; start_channel() follows from process().
    if (auto v = fn_->config_read32(spec::pci_cfg::chanerr_int);
        v.ok() && v.value() != 0 && v.value() != kAllOnes32)
        (void)fn_->config_write32(spec::pci_cfg::chanerr_int, v.value());
    const uint32_t stale = bar_.read32(creg(spec::chan_reg::chanerr));
    if (stale != 0 && stale != kAllOnes32) bar_.write32(creg(spec::chan_reg::chanerr), stale);
    issue_reset();
    STRATA_INFOLOG(log_ioat, "{}: attached, I/OAT {}.{}, XFERCAP {} bytes, ring {}, fill {}",
                   address.to_string(), spec::ver_major(info_.version),
                   spec::ver_minor(info_.version), info_.max_transfer_bytes, n,
                   info_.fill_supported);
    return {};
}

void ChannelImpl::issue_reset() noexcept {
    ++stats_.resets;
    did_work_ = true;
    state_ = State::resetting;
    reset_started_ns_ = runtime::now_ns();
    write_command(spec::chancmd::reset);
}

// CHANCMD is byte 0 of the dword at 0x84 and DMACOUNT bytes 2..3, so a command write carries the
// channel's current DMACOUNT back unchanged: a lower count would tell a running channel to go on
// around the ring (DMACOUNT is compared mod 2^16). The reset itself zeroes DMACOUNT.
void ChannelImpl::write_command(uint8_t cmd) noexcept {
    const uint32_t cur = bar_.read32(creg(spec::chan_reg::chancmd));
    bar_.write32(creg(spec::chan_reg::chancmd), (cur & 0xFFFF0000u) | cmd);
}

void ChannelImpl::start_channel() noexcept {
    // Every op before tail_ has completed; the chain restarts at slot tail_.
    base_ = tail_;
    doorbell_ = tail_;
    mem_pos_ = tail_;
    last_raw_ = spec::ChanSts::make(spec::ChanState::idle, slot_iova(base_ - 1)).raw;
    std::atomic_ref<uint64_t>(*comp_).store(last_raw_, std::memory_order_release);
    spec::ChanCtrl ctrl{};
    ctrl.set_err_completion_en(1).set_any_err_abort_en(1);
    bar_.write32(creg(spec::chan_reg::chanctrl), ctrl.raw);
    bar_.write64(creg(spec::chan_reg::chancmp), comp_iova_);
    bar_.write64(creg(spec::chan_reg::chainaddr), slot_iova(base_));
    state_ = State::running;
    did_work_ = true;
    last_progress_ns_ = runtime::now_ns();
    if (head_ != doorbell_) flush();
}

Status ChannelImpl::submit(spec::Op op, uint64_t dst, uint64_t src, uint64_t len,
                           Channel::DoneFn done, void* ctx) noexcept {
    if (state_ == State::removed || state_ == State::detaching || state_ == State::detached)
        return Status(Errc::device_removed, "ioat: channel removed or detached");
    if (state_ == State::dead) return Status(Errc::io_error, "ioat: channel failed to reset");
    if (len == 0) return Status(Errc::invalid_argument, "ioat: zero length");
    if (done == nullptr) return Status(Errc::invalid_argument, "ioat: no completion callback");
    if (op == spec::Op::fill && !info_.fill_supported)
        return Status(Errc::not_supported, "ioat: device has no block fill");
    const uint64_t cap = info_.max_transfer_bytes;
    const uint64_t pieces = (len + cap - 1) / cap;
    if (pieces > ring_free()) return Status(Errc::busy, "ioat: ring full");
    for (uint64_t i = 0; i < pieces; ++i) {
        const uint64_t off = i * cap;
        const auto size = static_cast<uint32_t>(len - off < cap ? len - off : cap);
        const uint64_t slot = head_ & mask_;
        spec::DescControl control{};
        control.set_op(static_cast<uint32_t>(op));
        auto& d = ring_[slot];
        d.size = size;
        d.control = control;
        d.src_addr = op == spec::Op::fill ? src : src + off;
        d.dest_addr = dst + off;
        d.next = slot_iova(head_ + 1);
        done_[slot] = nullptr;
        ++head_;
    }
    const uint64_t last = (head_ - 1) & mask_;
    done_[last] = done;
    ctx_[last] = ctx;
    ++outstanding_ops_;
    ++stats_.ops_submitted;
    stats_.descriptors += pieces;
    stats_.bytes += len;
    return Status::success();
}

void ChannelImpl::flush() noexcept {
    if (state_ != State::running || head_ == doorbell_) return;
    if (doorbell_ == tail_) last_progress_ns_ = runtime::now_ns();  // stall clock starts
    // One completion write per batch: on its last descriptor. Halts are written regardless
    // (CHANCTRL.err_completion_en).
    ring_[(head_ - 1) & mask_].control.set_completion_update(1);
    std::atomic_thread_fence(std::memory_order_release);  // descriptors before the doorbell
    doorbell_ = head_;
    const auto count = static_cast<uint32_t>((doorbell_ - base_) & 0xFFFF);
    bar_.write32(creg(spec::chan_reg::chancmd), count << 16);  // CHANCMD byte 0: no command
    ++stats_.doorbells;
}

// Completes `count` descriptors from tail_ successfully.
int ChannelImpl::complete(uint32_t count) noexcept {
    int ops = 0;
    for (uint32_t i = 0; i < count; ++i) {
        const uint64_t slot = tail_ & mask_;
        ++tail_;
        if (auto* fn = done_[slot]) {
            void* ctx = ctx_[slot];
            done_[slot] = nullptr;
            --outstanding_ops_;
            ++stats_.ops_completed;
            ++ops;
            fn(ctx, Status::success());
        }
    }
    return ops;
}

// Fails every op in [tail_, head_): the first with `first`, the rest with `rest`. Callbacks may
// submit (head_ moves on): only the ops present on entry are failed.
int ChannelImpl::fail_all(Status first, Status rest) noexcept {
    const uint64_t end = head_;
    int ops = 0;
    // Detach the callbacks first so that a callback which submits cannot be confused with them.
    while (tail_ != end) {
        const uint64_t slot = tail_ & mask_;
        ++tail_;
        if (auto* fn = done_[slot]) {
            void* ctx = ctx_[slot];
            done_[slot] = nullptr;
            --outstanding_ops_;
            ++stats_.ops_failed;
            fn(ctx, ops == 0 ? first : rest);
            ++ops;
        }
    }
    doorbell_ = tail_ > doorbell_ ? tail_ : doorbell_;
    return ops;
}

int ChannelImpl::handle_halt(uint32_t completed) noexcept {
    ++stats_.halts;
    int ops = complete(completed);
    uint32_t chanerr = bar_.read32(creg(spec::chan_reg::chanerr));
    if (chanerr == kAllOnes32) return ops + go_removed();
    last_chanerr_ = chanerr;
    STRATA_ERRLOG(log_ioat, "{}: channel halted, CHANERR {:#x} ({}), {} ops outstanding",
                  info_.address.to_string(), chanerr, spec::describe_chanerr(chanerr),
                  outstanding_ops_);
    if (chanerr != 0) bar_.write32(creg(spec::chan_reg::chanerr), chanerr);  // RW1C
    // New submissions from the callbacks below wait for the restart.
    state_ = State::resetting;
    const uint64_t end = head_;
    // The op owning the faulting descriptor (tail_) gets the decoded error, the rest abort.
    int failed = 0;
    while (tail_ != end) {
        const uint64_t slot = tail_ & mask_;
        ++tail_;
        if (auto* fn = done_[slot]) {
            void* ctx = ctx_[slot];
            done_[slot] = nullptr;
            --outstanding_ops_;
            ++stats_.ops_failed;
            fn(ctx, failed == 0 ? status_from_chanerr(chanerr)
                                : Status(Errc::aborted, "ioat: aborted by channel halt"));
            ++failed;
        }
    }
    // Ops submitted by those callbacks sit at [end, head_); keep them for the restart.
    doorbell_ = tail_;
    issue_reset();
    return ops + failed;
}

int ChannelImpl::go_removed() noexcept {
    state_ = State::removed;
    int ops = fail_all(Status(Errc::device_removed, "ioat: device removed"),
                       Status(Errc::device_removed, "ioat: device removed"));
    if (!removal_notified_) {
        removal_notified_ = true;
        STRATA_WARNLOG(log_ioat, "{}: hot removed, {} ops failed", info_.address.to_string(), ops);
        if (opts_.on_removed) opts_.on_removed(opts_.on_removed_ctx);
    }
    return ops;
}

int ChannelImpl::process() noexcept {
    if (in_process_ || state_ == State::detaching || state_ == State::detached) return 0;
    in_process_ = true;
    struct Guard {
        bool& b;
        ~Guard() { b = false; }
    } guard{in_process_};

    if (state_ == State::removed) return tail_ != head_ ? go_removed() : 0;
    if (removal_seen_ || fn_->removed()) return go_removed();
    if (state_ == State::dead) {
        return fail_all(Status(Errc::io_error, "ioat: channel failed to reset"),
                        Status(Errc::io_error, "ioat: channel failed to reset"));
    }
    int ops = 0;
    if (reset_requested_) {
        reset_requested_ = false;
        state_ = State::resetting;  // callbacks' new submissions wait for the restart
        ops += fail_all(Status(Errc::aborted, "ioat: channel reset"),
                        Status(Errc::aborted, "ioat: channel reset"));
        issue_reset();
    }
    if (state_ == State::resetting) {
        const uint32_t cmd = bar_.read32(creg(spec::chan_reg::chancmd));
        if (cmd == kAllOnes32) return ops + go_removed();
        if ((cmd & spec::chancmd::reset) == 0) {
            start_channel();
        } else if (runtime::now_ns() - reset_started_ns_ > kResetTimeoutNs) {
            STRATA_ERRLOG(log_ioat, "{}: channel reset did not finish, channel failed",
                          info_.address.to_string());
            state_ = State::dead;
            return ops + fail_all(Status(Errc::io_error, "ioat: channel failed to reset"),
                                  Status(Errc::io_error, "ioat: channel failed to reset"));
        }
        return ops;
    }

    const uint64_t in_flight = doorbell_ - tail_;
    if (in_flight == 0) return ops;
    uint64_t raw = load_comp();
    bool from_mmio = false;
    if (raw == last_raw_) {
        const uint64_t now = runtime::now_ns();
        if (now - last_progress_ns_ < opts_.stall_timeout_us * 1000) return ops;
        // No completion write for a while: ask the channel directly (a slow batch, a dropped
        // completion write, or a halt whose status write failed).
        ++stats_.stalls;
        last_progress_ns_ = now;
        raw = bar_.read64(creg(spec::chan_reg::chansts));
        if (raw == ~uint64_t{0}) return ops + go_removed();
        from_mmio = true;
        // Completion writes that landed before this read are covered by CHANSTS: absorb them, so
        // that none is mistaken for new progress later. (One that lands after the read and before
        // this load is absorbed too; its progress is found by the next check.)
        last_raw_ = load_comp();
        STRATA_INFOLOG(log_ioat, "{}: no completion write for {} us, CHANSTS {:#x} ({})",
                       info_.address.to_string(), opts_.stall_timeout_us, raw,
                       spec::chan_state_name(raw));
    } else {
        last_raw_ = raw;
        last_progress_ns_ = runtime::now_ns();
    }
    internal::RingView view{ring_iova_, opts_.ring_size, static_cast<uint32_t>((tail_ - 1) & mask_),
                            in_flight, tail_ - mem_pos_};
    const auto d = internal::decode_completion(raw, view);
    switch (d.kind) {
        case internal::CompletionKind::progress:
            ops += complete(d.count);
            if (!from_mmio) mem_pos_ = tail_;
            return ops;
        case internal::CompletionKind::stale:
            return ops;  // an older completion write than CHANSTS already told us
        case internal::CompletionKind::halted:
            return ops + handle_halt(d.count);
        case internal::CompletionKind::bad:
            break;
    }
    ++stats_.bad_completions;
    STRATA_ERRLOG(log_ioat, "{}: impossible completion status {:#x}: {}; resetting channel",
                  info_.address.to_string(), raw, d.why);
    state_ = State::resetting;
    ops += fail_all(Status(Errc::protocol_error, "ioat: bad completion status"),
                    Status(Errc::aborted, "ioat: aborted by channel reset"));
    issue_reset();
    return ops;
}

Status ChannelImpl::reset() noexcept {
    if (state_ == State::removed || state_ == State::detaching || state_ == State::detached)
        return Status(Errc::device_removed, "ioat: channel removed or detached");
    reset_requested_ = true;
    if (state_ == State::dead) state_ = State::resetting;
    return Status::success();
}

Status ChannelImpl::detach(Channel::DetachFn done, void* ctx) noexcept {
    if (detach_poller_) return Status(Errc::busy, "ioat: detach in progress");
    if (in_process_) return Status(Errc::busy, "ioat: detach from inside a completion callback");
    if (state_ != State::detached && outstanding_ops_ != 0 && state_ != State::removed)
        return Status(Errc::busy, "ioat: operations outstanding");
    if (state_ == State::removed && outstanding_ops_ != 0) go_removed();
    detach_done_ = done;
    detach_ctx_ = ctx;
    begin_detach();
    return Status::success();
}

void ChannelImpl::close(std::unique_ptr<ChannelImpl> self, Channel::DetachFn done,
                        void* ctx) noexcept {
    ChannelImpl& c = *self;
    if (c.outstanding_ops_ != 0) {
        STRATA_WARNLOG(log_ioat, "{}: closed with {} operations outstanding (callbacks dropped)",
                       c.info_.address.to_string(), c.outstanding_ops_);
        std::fill(c.done_.begin(), c.done_.end(), nullptr);
        c.outstanding_ops_ = 0;
    }
    c.opts_.on_removed = nullptr;  // its owner is going away
    c.self_ = std::move(self);
    // A detach in progress goes on; its caller is destroying the Channel, so its `done` is
    // replaced (it must not run on a gone owner).
    c.detach_done_ = done;
    c.detach_ctx_ = ctx;
    if (!c.detach_poller_) c.begin_detach();
}

// The reset is written at once unless we are inside a completion callback (process() still walks
// the ring): then the detach poller's first run writes it.
void ChannelImpl::begin_detach() noexcept {
    detach_started_ = false;
    if (!in_process_) start_detach();
    detach_poller_ = owner_.register_poller(&ChannelImpl::detach_poll, this, "ioat_detach",
                                            kDetachPollNs);
}

void ChannelImpl::start_detach() noexcept {
    detach_started_ = true;
    if (watchdog_) owner_.unregister_poller(watchdog_);
    if (state_ != State::detached) state_ = State::detaching;
    detach_started_ns_ = runtime::now_ns();
    // Quiesce the channel before its ring and completion word are freed. A retry after a timeout
    // writes the reset again (harmless while one is pending).
    if (fn_ && !gone()) {
        ++stats_.resets;
        write_command(spec::chancmd::reset);
    }
}

runtime::PollStatus ChannelImpl::detach_step() noexcept {
    const bool clean = state_ == State::detached && !ring_kept_;  // nothing left to free
    bool confirmed = clean || !fn_ || gone();
    if (!confirmed) {
        const uint32_t cmd = bar_.read32(creg(spec::chan_reg::chancmd));
        confirmed = cmd == kAllOnes32 || (cmd & spec::chancmd::reset) == 0;
    }
    if (confirmed) {
        if (!clean) {
            if (ring_kept_)
                STRATA_NOTICELOG(log_ioat, "{}: channel reset confirmed at last, kept ring freed",
                                 info_.address.to_string());
            ring_kept_ = false;
            state_ = State::detached;
            release();
        }
        finish_detach(DetachResult{Status::success(), false});
        return runtime::PollStatus::busy;
    }
    if (runtime::now_ns() - detach_started_ns_ < opts_.detach_timeout_us * 1000)
        return runtime::PollStatus::idle;
    ++stats_.detach_timeouts;
    STRATA_ERRLOG(log_ioat,
                  "{}: channel did not confirm its reset within {} us; its descriptor ring and "
                  "completion word ({} bytes) are kept, not freed, as the engine may still write "
                  "them (leaked)",
                  info_.address.to_string(), opts_.detach_timeout_us,
                  size_t{opts_.ring_size} * spec::descriptor_size_bytes + 64);
    ring_kept_ = true;
    env::dma_abandon(ring_);  // the App's teardown reports them rather than asserting
    env::dma_abandon(comp_);
    state_ = State::detached;
    finish_detach(DetachResult{
        Status(Errc::timeout, "ioat: channel reset not confirmed, ring kept"), true});
    return runtime::PollStatus::busy;
}

// Last use of `this` when the channel closed itself: the self reference goes last.
void ChannelImpl::finish_detach(const DetachResult& result) noexcept {
    owner_.unregister_poller(detach_poller_);
    const Channel::DetachFn done = detach_done_;
    void* ctx = detach_ctx_;
    detach_done_ = nullptr;
    detach_ctx_ = nullptr;
    std::unique_ptr<ChannelImpl> self = std::move(self_);
    if (done) done(ctx, result);
}

// Frees the ring and the completion word unless a timed-out detach kept them: those stay
// allocated (and mapped) for good, as the engine may still write them.
void ChannelImpl::release() noexcept {
    if (watchdog_) owner_.unregister_poller(watchdog_);
    if (fn_) {
        (void)fn_->detach();
        fn_.reset();
    }
    if (ring_kept_) return;
    env::dma_free(ring_);
    ring_ = nullptr;
    env::dma_free(comp_);
    comp_ = nullptr;
}

// ---- Channel --------------------------------------------------------------------------------

Channel::Channel(std::unique_ptr<ChannelImpl> impl) noexcept : impl_(std::move(impl)) {}
Channel::~Channel() {
    if (impl_ && !impl_->quiescent()) ChannelImpl::close(std::move(impl_), nullptr, nullptr);
}

void Channel::close(std::unique_ptr<Channel> ch, DetachFn done, void* ctx) noexcept {
    if (!ch) return;
    ChannelImpl::close(std::move(ch->impl_), done, ctx);
}

Result<std::unique_ptr<Channel>> Channel::attach(const env::PciAddress& address,
                                                 runtime::Thread& owner, ChannelOptions options) {
    auto impl = std::make_unique<ChannelImpl>(owner, options);
    auto r = impl->init(address);
    if (!r) return r.error();
    return std::unique_ptr<Channel>(new Channel(std::move(impl)));
}

Status Channel::submit_copy(uint64_t dst_iova, uint64_t src_iova, uint64_t len, DoneFn done,
                            void* ctx) noexcept {
    return impl_->submit(spec::Op::copy, dst_iova, src_iova, len, done, ctx);
}
Status Channel::submit_fill(uint64_t dst_iova, uint64_t pattern, uint64_t len, DoneFn done,
                            void* ctx) noexcept {
    return impl_->submit(spec::Op::fill, dst_iova, pattern, len, done, ctx);
}
void Channel::flush() noexcept {
    impl_->flush();
}
int Channel::process_completions() noexcept {
    return impl_->process();
}
uint32_t Channel::ring_free() const noexcept {
    return impl_->ring_free();
}
uint32_t Channel::outstanding() const noexcept {
    return impl_->outstanding_ops();
}
bool Channel::ready() const noexcept {
    return impl_->state_ == ChannelImpl::State::running;
}
bool Channel::removed() const noexcept {
    return impl_->state_ == ChannelImpl::State::removed || impl_->removal_seen_;
}
Status Channel::reset() noexcept {
    return impl_->reset();
}
Status Channel::detach(DetachFn done, void* ctx) {
    return impl_->detach(done, ctx);
}
bool Channel::detached() const noexcept {
    return impl_->state_ == ChannelImpl::State::detached && !impl_->ring_kept_;
}
bool Channel::ring_leaked() const noexcept {
    return impl_->ring_kept_;
}
const ChannelInfo& Channel::info() const noexcept {
    return impl_->info_;
}
ChannelStats Channel::stats() const noexcept {
    return impl_->stats_;
}
uint32_t Channel::last_chanerr() const noexcept {
    return impl_->last_chanerr_;
}
std::string Channel::describe_last_error() const {
    return spec::describe_chanerr(impl_->last_chanerr_);
}

}  // namespace strata::ioat
