// I/OAT v3 channel model. See channel_model.h for the register and fault semantics.
#include <strata/hwemu/ioat/channel_model.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>

namespace strata::hwemu::ioat {

STRATA_LOG_COMPONENT(hwemu_ioat);

namespace spec = strata::ioat::spec;
using spec::ChanState;

namespace {
constexpr uint64_t kBar0Size = 16 * 1024;
constexpr uint32_t kChan = 0;  // the one channel of the function
constexpr uint64_t kScratchBytes = 64 * 1024;
// Status contexts telling which side of a transfer faulted.
constexpr const char* kSrcFault = "ioat model: source";
constexpr const char* kDstFault = "ioat model: destination";
uint64_t chan_off(uint32_t reg) {
    return spec::channel_reg(kChan, reg);
}
// When a reset started now completes (kResetNever: never).
uint64_t reset_due(uint64_t now, uint64_t delay) noexcept {
    return delay == kResetNever || delay > kResetNever - now ? kResetNever : now + delay;
}
}  // namespace

PciFunctionConfig ChannelModel::pci_config(const ModelConfig& config) {
    PciFunctionConfig c;
    c.vendor_id = spec::pci_vendor_intel;
    c.device_id = config.device_id;
    c.subsystem_vendor_id = spec::pci_vendor_intel;
    c.subsystem_device_id = 0x0000;
    c.class_code = 0x088000;  // system peripheral, other (as CBDMA functions report)
    c.revision_id = 4;
    c.interrupt_pin = 1;
    c.bars[0] = {kBar0Size, true, false};  // 64-bit memory BAR (BAR1 is its upper half)
    // PCI Express and MSI-X capabilities, as a real channel function has.
    c.capabilities = {{0x10, std::vector<uint8_t>(58, 0)},
                      {0x11, {0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00}}};
    c.name = fmt::format("ioat-{:04x}", config.device_id);
    return c;
}

Result<std::unique_ptr<ChannelModel>> ChannelModel::create(PciBus& bus,
                                                           const env::PciAddress& address,
                                                           ModelConfig config,
                                                           runtime::Thread& thread) {
    if ((config.xfercap_log2 >= 1 && config.xfercap_log2 < 12) || config.xfercap_log2 > 31)
        return Error(Errc::invalid_argument,
                     fmt::format("ioat model: xfercap_log2 {} must be 0 or in [12, 31]",
                                 config.xfercap_log2));
    if (spec::ver_major(config.version) != 3)
        return Error(Errc::invalid_argument,
                     fmt::format("ioat model: version {:#x} is not 3.x", config.version));
    if (config.descriptors_per_poll == 0) config.descriptors_per_poll = 1;
    std::unique_ptr<ChannelModel> m(new ChannelModel(bus, address, config, thread));
    auto fn = bus.add_function(address, pci_config(config), m.get());
    if (!fn) return fn.error();
    m->fn_ = fn.value();
    m->poller_ = thread.register_poller(&ChannelModel::poll, m.get(), "ioat_model");
    return m;
}

ChannelModel::ChannelModel(PciBus& bus, env::PciAddress address, ModelConfig config,
                           runtime::Thread& thread)
    : bus_(bus),
      address_(address),
      config_(config),
      thread_(thread),
      faults_(config.seed),
      xfercap_bytes_(spec::xfercap_bytes(config.xfercap_log2)),
      latency_(config.per_descriptor_ns != 0 || config.bandwidth_bytes_per_us != 0),
      reset_delay_ns_(config.reset_delay_ns),
      scratch_(kScratchBytes) {
    chansts_.store(spec::ChanSts::make(ChanState::idle, 0).raw);
}

ChannelModel::~ChannelModel() {
    if (poller_) thread_.unregister_poller(poller_);
    if (timer_) thread_.unregister_poller(timer_);
    // Left on the bus, the function would still be enumerated and claimable, its BAR calling
    // into this freed model, and its address taken for a new one.
    if (fn_ != nullptr && !fn_->removed()) (void)bus_.remove_function(address_);
}

void ChannelModel::set_reset_delay_ns(uint64_t ns) noexcept {
    reset_delay_ns_ = ns;
    // A pending reset's new due time is armed by the next run() (the poller is active).
    if (reset_due_ns_ != 0) reset_due_ns_ = std::min(reset_due_ns_, reset_due(runtime::now_ns(), ns));
}

ChanState ChannelModel::state() const noexcept {
    return spec::ChanSts{chansts_.load(std::memory_order_acquire)}.state();
}

// ---- registers --------------------------------------------------------------------------------

uint64_t ChannelModel::bar_read(uint32_t bar, uint64_t off, uint32_t width) {
    if (bar != 0) return width == 8 ? ~uint64_t{0} : 0xFFFFFFFFu;
    uint64_t v = 0;
    const uint64_t base = spec::channel_base(kChan);
    if (off < base) {
        switch (off) {
            case spec::reg::chancnt:  // CHANCNT | XFERCAP << 8 | GENCTRL << 16 | INTRCTRL << 24
                v = 1u | uint32_t{config_.xfercap_log2} << 8;
                break;
            case spec::reg::cbver:
                v = config_.version;
                break;  // PERPORTOFFSET (0x0A) = 0
            case 0x0C:
                v = 0;
                break;  // INTRDELAY, CS_STATUS
            case spec::reg::dmacapability:
                v = spec::dmacap::page_break | (config_.fill ? spec::dmacap::fill : 0u);
                break;
            default:
                v = 0;
                break;
        }
        return v;
    }
    switch (off - base) {
        case spec::chan_reg::chanctrl:
            v = chanctrl_.load(std::memory_order_relaxed);
            break;
        case spec::chan_reg::chancmd:
            v = uint32_t{pending_cmd_.load(std::memory_order_acquire)} |
                uint32_t{dmacount_.load(std::memory_order_relaxed)} << 16;
            break;
        case spec::chan_reg::chansts:
            v = chansts_.load(std::memory_order_acquire);
            if (width == 4) v &= 0xFFFFFFFFu;
            break;
        case spec::chan_reg::chansts + 4:
            v = chansts_.load(std::memory_order_acquire) >> 32;
            break;
        case spec::chan_reg::chainaddr:
            v = chainaddr_.load(std::memory_order_relaxed);
            break;
        case spec::chan_reg::chainaddr + 4:
            v = chainaddr_.load() >> 32;
            break;
        case spec::chan_reg::chancmp:
            v = chancmp_.load(std::memory_order_relaxed);
            break;
        case spec::chan_reg::chancmp + 4:
            v = chancmp_.load() >> 32;
            break;
        case spec::chan_reg::cdar:
            v = cdar_.load(std::memory_order_relaxed);
            break;
        case spec::chan_reg::cdar + 4:
            v = cdar_.load() >> 32;
            break;
        case spec::chan_reg::chanerr:
            v = chanerr_.load(std::memory_order_acquire);
            if (width == 8) v |= uint64_t{chanerrmask_.load()} << 32;
            break;
        case spec::chan_reg::chanerrmask:
            v = chanerrmask_.load();
            break;
        default:
            v = 0;
            break;
    }
    if (width == 4) v &= 0xFFFFFFFFu;
    return v;
}

namespace {
// Replaces the 32-bit half of a 64-bit register a dword write covers.
uint64_t merge32(uint64_t old, uint64_t rel, uint64_t v) {
    return rel == 0 ? (old & ~uint64_t{0xFFFFFFFF}) | (v & 0xFFFFFFFF)
                    : (old & 0xFFFFFFFF) | (v << 32);
}
}  // namespace

void ChannelModel::bar_write(uint32_t bar, uint64_t off, uint32_t width, uint64_t v) {
    const uint64_t base = spec::channel_base(kChan);
    if (bar != 0 || off < base) return;  // device registers are read-only here
    const uint64_t rel = off - base;
    auto write64 = [&](std::atomic<uint64_t>& reg, uint64_t reg_off) {
        if (width == 8) {
            reg.store(v, std::memory_order_release);
        } else {
            reg.store(merge32(reg.load(), rel - reg_off, v), std::memory_order_release);
        }
    };
    switch (rel) {
        case spec::chan_reg::chanctrl:
            chanctrl_.store(static_cast<uint16_t>(v & 0xFFFF), std::memory_order_release);
            break;
        case spec::chan_reg::chancmd: {
            // Byte 0: CHANCMD; bytes 2..3: DMACOUNT (the doorbell).
            const auto cmd = static_cast<uint8_t>(v & 0xFF);
            if (cmd != 0) pending_cmd_.fetch_or(cmd, std::memory_order_acq_rel);
            // (DMACOUNT store and wake below.)
            const auto count = static_cast<uint16_t>((v >> 16) & 0xFFFF);
            if (cmd == 0 || count != dmacount_.load(std::memory_order_relaxed))
                doorbells_.fetch_add(1, std::memory_order_relaxed);
            dmacount_.store(count, std::memory_order_release);
            wake();
            break;
        }
        case spec::chan_reg::chainaddr:
        case spec::chan_reg::chainaddr + 4:
            write64(chainaddr_, spec::chan_reg::chainaddr);
            break;
        case spec::chan_reg::chancmp:
        case spec::chan_reg::chancmp + 4:
            write64(chancmp_, spec::chan_reg::chancmp);
            break;
        case spec::chan_reg::chanerr: {
            const auto clear = static_cast<uint32_t>(v & 0xFFFFFFFF);
            chanerr_.fetch_and(~clear, std::memory_order_acq_rel);  // RW1C
            if (width == 8) chanerrmask_.store(static_cast<uint32_t>(v >> 32));
            break;
        }
        case spec::chan_reg::chanerrmask:
            chanerrmask_.store(static_cast<uint32_t>(v & 0xFFFFFFFF));
            break;
        default:
            break;  // CHANSTS, CDAR and reserved registers are read-only
    }
}

// The poller is armed by a message to the model's Thread: a doorbell or command written from a
// step the scheduler saw as idle still gets the channel polled. The message carries nothing (a
// model destroyed before it runs leaves no dangling pointer); a full message ring drops it, as the
// poller runs soon anyway.
void ChannelModel::wake() {
    (void)thread_.send(&ChannelModel::on_wake, nullptr);
}

void ChannelModel::on_wake(void*) {}

void ChannelModel::on_surprise_removal() {
    removed_.store(true, std::memory_order_release);
}

// ---- poller -----------------------------------------------------------------------------------

runtime::PollStatus ChannelModel::poll(void* ctx) {
    return static_cast<ChannelModel*>(ctx)->run();
}

runtime::PollStatus ChannelModel::poll_timer(void* ctx) {
    auto* self = static_cast<ChannelModel*>(ctx);
    self->thread_.unregister_poller(self->timer_);  // one shot
    return self->run();
}

void ChannelModel::arm_timer(uint64_t due_ns) {
    if (timer_ != nullptr) return;  // one descriptor at a time: at most one timer
    const uint64_t now = runtime::now_ns();
    const uint64_t period = due_ns > now ? due_ns - now : 1;
    timer_ = thread_.register_poller(&ChannelModel::poll_timer, this, "ioat_model_timer", period);
}

void ChannelModel::set_status(ChanState s) {
    chansts_.store(spec::ChanSts::make(s, last_completed_).raw, std::memory_order_release);
}

bool ChannelModel::write_completion(ChanState s) {
    const uint64_t addr = chancmp_.load(std::memory_order_acquire);
    if (addr == 0 || addr % spec::chancmp_align_bytes != 0) return false;
    const uint64_t raw = spec::ChanSts::make(s, last_completed_).raw;
    // One 64-bit release store: a driver on another OS thread acquire-loads the word and then sees
    // every byte the channel moved before it.
    if (!fn_->dma().store64_release(addr, raw).ok()) return false;
    ++stats_.completion_writes;
    return true;
}

void ChannelModel::halt(uint32_t err) {
    ++stats_.halts;
    chanerr_.fetch_or(err, std::memory_order_acq_rel);
    run_ = Run::halted;
    in_progress_ = false;
    set_status(ChanState::halted);
    STRATA_DEBUGLOG(log_hwemu_ioat, "{}: halted, CHANERR {}", fn_->name(),
                    spec::describe_chanerr(err));
    spec::ChanCtrl ctrl{chanctrl_.load(std::memory_order_acquire)};
    if (ctrl.err_completion_en() && !write_completion(ChanState::halted))
        chanerr_.fetch_or(spec::chanerr::completion_addr_err, std::memory_order_acq_rel);
}

void ChannelModel::do_reset() {
    ++stats_.resets;
    run_ = Run::idle;
    processed_ = 0;
    dmacount_.store(0, std::memory_order_release);  // the count restarts with the chain
    fetch_from_chainaddr_ = true;
    in_progress_ = false;
    cur_next_ = 0;
    last_completed_ = 0;
    busy_until_ns_ = 0;
    chainaddr_.store(0);
    chancmp_.store(0);
    chanctrl_.store(0);
    cdar_.store(0);
    chanerr_.store(0, std::memory_order_release);
    set_status(ChanState::idle);
}

void ChannelModel::apply_command(uint8_t cmd) {
    if (cmd & spec::chancmd::reset) {
        do_reset();
        return;  // a reset supersedes whatever else was written with it
    }
    if (cmd & spec::chancmd::abort) {
        // Drop the rest of the chain: everything up to DMACOUNT counts as processed.
        in_progress_ = false;
        processed_ = dmacount_.load(std::memory_order_acquire);
        if (run_ != Run::halted) {
            run_ = Run::idle;
            set_status(ChanState::idle);
        }
    }
    if ((cmd & spec::chancmd::suspend) && run_ != Run::halted) {
        run_ = Run::suspended;
        set_status(ChanState::suspended);
    }
    if ((cmd & spec::chancmd::resume) && run_ == Run::suspended) {
        run_ = Run::idle;
        set_status(ChanState::idle);
    }
}

runtime::PollStatus ChannelModel::run() {
    if (removed_.load(std::memory_order_acquire)) return runtime::PollStatus::idle;
    bool busy = false;
    if (const uint8_t cmd = pending_cmd_.load(std::memory_order_acquire); cmd != 0) {
        if ((cmd & spec::chancmd::reset) && reset_delay_ns_ != 0) {
            // A reset takes reset_delay_ns: the channel stops and CHANCMD keeps showing the
            // reset bit until then.
            const uint64_t now = runtime::now_ns();
            if (reset_due_ns_ == 0) reset_due_ns_ = reset_due(now, reset_delay_ns_);
            if (now < reset_due_ns_) {
                // A stuck reset arms no timer: nothing happens until the delay changes.
                if (reset_due_ns_ != kResetNever) arm_timer(reset_due_ns_);
                return runtime::PollStatus::idle;
            }
        }
        reset_due_ns_ = 0;
        // Apply first, then clear: a driver that sees the reset bit drop may program CHANCMP and
        // CHAINADDR at once, and the reset must not wipe them afterwards.
        apply_command(cmd);
        pending_cmd_.fetch_and(static_cast<uint8_t>(~cmd), std::memory_order_acq_rel);
        busy = true;
    }
    if (run_ == Run::halted || run_ == Run::suspended) {
        return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }
    for (uint32_t i = 0; i < config_.descriptors_per_poll; ++i) {
        // A command written meanwhile (reset, suspend, abort) stops the channel at once.
        if (pending_cmd_.load(std::memory_order_acquire) != 0) {
            busy = true;
            break;
        }
        const Step s = execute_one();
        if (s == Step::done) {
            busy = true;
            continue;
        }
        if (s == Step::halted) busy = true;
        break;  // idle, waiting, halted or removed
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

ChannelModel::Step ChannelModel::execute_one() {
    if (!in_progress_) {
        if (processed_ == dmacount_.load(std::memory_order_acquire)) {
            if (run_ == Run::active) {
                run_ = Run::idle;
                set_status(ChanState::idle);
            }
            return Step::idle;
        }
        // Fetch and check the next descriptor.
        uint64_t addr;
        if (fetch_from_chainaddr_) {
            addr = chainaddr_.load(std::memory_order_acquire);
            if (addr == 0 || addr % spec::descriptor_size_bytes != 0) {
                halt(spec::chanerr::chain_addr_value_err);
                return Step::halted;
            }
        } else {
            addr = cur_next_;
            if (addr % spec::descriptor_size_bytes != 0) {
                halt(spec::chanerr::next_desc_align_err);
                return Step::halted;
            }
        }
        cdar_.store(addr, std::memory_order_relaxed);
        Status st = fn_->dma().read(addr, &cur_, sizeof(cur_));
        if (st.code() == Errc::device_removed) return Step::removed;
        if (!st.ok()) {
            halt(fetch_from_chainaddr_ ? spec::chanerr::chain_addr_value_err
                                       : spec::chanerr::next_desc_addr_err);
            return Step::halted;
        }
        fetch_from_chainaddr_ = false;
        cur_addr_ = addr;
        const uint8_t op = static_cast<uint8_t>(cur_.control.op());
        const bool is_null = op == static_cast<uint8_t>(spec::Op::copy) && cur_.control.null();
        if (op != static_cast<uint8_t>(spec::Op::copy) &&
            !(op == static_cast<uint8_t>(spec::Op::fill) && config_.fill)) {
            halt(spec::chanerr::control_err);
            return Step::halted;
        }
        if (!is_null && (cur_.size == 0 || cur_.size > xfercap_bytes_)) {
            halt(spec::chanerr::length_err);
            return Step::halted;
        }
        // Fault plan.
        cur_drop_completion_ = false;
        cur_corrupt_ = false;
        uint64_t extra_ns = 0;
        const FaultSubject subject{op, static_cast<uint16_t>(kChan), 0, cur_.dest_addr, cur_.size};
        if (const FaultRule* rule = faults_.match(subject)) {
            ++stats_.injected_faults;
            switch (rule->action) {
                case FaultAction::error_status:
                    halt(rule->status ? rule->status : spec::chanerr::read_data_err);
                    return Step::halted;
                case FaultAction::fatal_status:
                    halt(rule->status ? rule->status
                                      : spec::chanerr::chipset_uncorrectable_data_integrity_err);
                    return Step::halted;
                case FaultAction::delay:
                    extra_ns = rule->delay_ns;
                    break;
                case FaultAction::drop_completion:
                    cur_drop_completion_ = true;
                    break;
                case FaultAction::corrupt_read:
                    cur_corrupt_ = true;
                    break;
                case FaultAction::surprise_remove:
                    STRATA_INFOLOG(log_hwemu_ioat, "{}: injected surprise removal", fn_->name());
                    (void)bus_.surprise_remove(address_);
                    return Step::removed;
                case FaultAction::power_cut:
                    do_reset();
                    return Step::halted;
            }
        }
        in_progress_ = true;
        run_ = Run::active;
        set_status(ChanState::active);
        uint64_t cost_ns = extra_ns;
        if (latency_) {
            cost_ns += config_.per_descriptor_ns;
            if (config_.bandwidth_bytes_per_us != 0 && !is_null)
                cost_ns += uint64_t{cur_.size} * 1000 / config_.bandwidth_bytes_per_us;
        }
        if (cost_ns != 0) {
            const uint64_t now = runtime::now_ns();
            busy_until_ns_ = std::max(now, busy_until_ns_) + cost_ns;
        } else {
            busy_until_ns_ = 0;
        }
    }
    if (busy_until_ns_ != 0) {
        const uint64_t now = runtime::now_ns();
        if (now < busy_until_ns_) {
            arm_timer(busy_until_ns_);
            return Step::wait;
        }
    }
    // Execute.
    in_progress_ = false;
    const uint8_t op = static_cast<uint8_t>(cur_.control.op());
    Status st;
    if (op == static_cast<uint8_t>(spec::Op::fill)) {
        st = transfer_fill(cur_.src_addr, cur_.dest_addr, cur_.size);
    } else if (!cur_.control.null()) {
        st = transfer_copy(cur_.src_addr, cur_.dest_addr, cur_.size);
    }
    if (st.code() == Errc::device_removed) return Step::removed;
    if (!st.ok()) {
        halt(st.context() == kSrcFault ? spec::chanerr::src_addr_err
                                       : spec::chanerr::dest_addr_err);
        return Step::halted;
    }
    if (cur_corrupt_ && cur_.size != 0) {
        uint8_t b = 0;
        if (fn_->dma().read(cur_.dest_addr, &b, 1).ok()) {
            b = static_cast<uint8_t>(b ^ 0xA5);
            (void)fn_->dma().write(cur_.dest_addr, &b, 1);
            ++stats_.corrupted;
        }
    }
    ++stats_.descriptors;
    ++processed_;
    last_completed_ = cur_addr_;
    cur_next_ = cur_.next;
    const bool more = processed_ != dmacount_.load(std::memory_order_acquire);
    const ChanState state = more ? ChanState::active : ChanState::idle;
    if (!more) run_ = Run::idle;
    // The completion write lands before CHANSTS shows the descriptor complete: a driver that
    // reads CHANSTS then the completion word never sees an older word afterwards.
    if (cur_.control.completion_update()) {
        if (cur_drop_completion_) {
            ++stats_.dropped_completions;
        } else if (!write_completion(state)) {
            halt(spec::chanerr::completion_addr_err);
            return Step::halted;
        }
    }
    set_status(state);
    return Step::done;
}

Status ChannelModel::transfer_copy(uint64_t src, uint64_t dst, uint32_t size) {
    uint64_t done = 0;
    while (done < size) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, scratch_.size()));
        Status s = fn_->dma().read(src + done, scratch_.data(), n);
        if (!s.ok()) return s.code() == Errc::device_removed ? s : Status(s.code(), kSrcFault);
        s = fn_->dma().write(dst + done, scratch_.data(), n);
        if (!s.ok()) return s.code() == Errc::device_removed ? s : Status(s.code(), kDstFault);
        done += n;
    }
    stats_.bytes += size;
    return Status::success();
}

Status ChannelModel::transfer_fill(uint64_t pattern, uint64_t dst, uint32_t size) {
    // The scratch buffer holds the pattern repeated (8-byte aligned from the destination start).
    const size_t chunk = std::min<size_t>(scratch_.size(), size);
    for (size_t i = 0; i < chunk; ++i) scratch_[i] = static_cast<uint8_t>(pattern >> (8 * (i % 8)));
    uint64_t done = 0;
    while (done < size) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(size - done, chunk));
        Status s = fn_->dma().write(dst + done, scratch_.data(), n);
        if (!s.ok()) return s.code() == Errc::device_removed ? s : Status(s.code(), kDstFault);
        done += n;
    }
    stats_.bytes += size;
    return Status::success();
}

}  // namespace strata::hwemu::ioat
