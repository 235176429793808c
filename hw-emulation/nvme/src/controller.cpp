// The NVMe controller model: registers, the enable/disable/shutdown state machine, doorbells,
// command fetch and arbitration, the completion path, timers and asynchronous events. Admin
// commands are in admin.cpp, NVM commands and data pointers in io.cpp.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/runtime/thread.h>

#include "model.h"

namespace strata::hwemu::nvme {

STRATA_LOG_COMPONENT(hwemu_nvme);

namespace {

// Counters written only by the model's Thread: a relaxed load and store, no locked RMW.
inline void bump(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

constexpr uint16_t st(spec::GenericStatus s, bool dnr = false) {
    return spec::make_status(s, dnr).raw;
}

uint64_t bar0_size(const ControllerConfig& c) {
    const uint64_t end =
        spec::reg::doorbell_base +
        2 * (uint64_t{c.max_io_queues} + 1) * spec::doorbell_stride_bytes(c.doorbell_stride);
    return std::max<uint64_t>(16384, std::bit_ceil(end));
}

}  // namespace

PciFunctionConfig pci_function_config(const ControllerConfig& config) {
    PciFunctionConfig c;
    c.vendor_id = config.vendor_id;
    c.device_id = config.device_id;
    c.subsystem_vendor_id = config.vendor_id;
    c.subsystem_device_id = 0x1100;
    c.class_code = 0x010802;  // mass storage, non-volatile memory, NVM Express
    c.revision_id = 2;
    c.interrupt_pin = 1;
    c.bars[0] = {bar0_size(config), true, false};  // 64-bit memory BAR (BAR1 is its upper half)
    // Power management (PMCSR at body offset 2) and a PCI Express endpoint capability (v2).
    c.capabilities = {{0x01, {0x03, 0x00, 0x08, 0x00, 0x00, 0x00}},
                      {0x10, std::vector<uint8_t>(58, 0)}};
    c.capabilities[1].body[0] = 0x02;  // capability version 2, device/port type 0 (endpoint)
    c.name = "nvme:" + config.serial;
    return c;
}

// ---------------------------------------------------------------------------------------------
// Construction and lifecycle
// ---------------------------------------------------------------------------------------------

ControllerImpl::ControllerImpl(Controller& owner, PciBus& bus, const env::PciAddress& address,
                               ControllerConfig config, runtime::Thread& thread)
    : owner_(owner),
      bus_(bus),
      address_(address),
      cfg_(std::move(config)),
      thread_(thread),
      faults_(cfg_.seed),
      prng_(cfg_.seed ^ 0x6e766d65u) {}

ControllerImpl::~ControllerImpl() = default;

Result<void> ControllerImpl::init() {
    auto bad = [](const std::string& what) { return Error(Errc::invalid_argument, what); };
    if (cfg_.max_queue_entries < 2 || cfg_.max_queue_entries > 65536)
        return bad(fmt::format("max_queue_entries {} is not in 2..65536", cfg_.max_queue_entries));
    if (cfg_.max_io_queues < 1 || cfg_.max_io_queues > 1024)
        return bad(fmt::format("max_io_queues {} is not in 1..1024", cfg_.max_io_queues));
    if (cfg_.mdts > 10) return bad(fmt::format("mdts {} is above 10 (4 MiB)", cfg_.mdts));
    if (cfg_.doorbell_stride > 15)
        return bad(fmt::format("doorbell_stride {} is above 15", cfg_.doorbell_stride));
    if (cfg_.max_namespaces < 1 || cfg_.max_namespaces > 1024)
        return bad(fmt::format("max_namespaces {} is not in 1..1024", cfg_.max_namespaces));
    if (cfg_.serial.size() > 20) return bad("serial is longer than 20 characters");
    if (cfg_.model.size() > 40) return bad("model is longer than 40 characters");
    if (cfg_.firmware.size() > 8) return bad("firmware is longer than 8 characters");
    for (const auto& [opc, l] : cfg_.io_latency) {
        if (l.kind == LatencySpec::Kind::uniform && l.b_ns < l.a_ns)
            return bad(
                fmt::format("io_latency[{:#x}]: uniform b_ns {} < a_ns {}", opc, l.b_ns, l.a_ns));
    }

    spec::Cap cap{};
    cap.set_mqes(cfg_.max_queue_entries - 1)
        .set_cqr(1)
        .set_ams(0)
        .set_to(cfg_.timeout_500ms)
        .set_dstrd(cfg_.doorbell_stride)
        .set_nssrs(0)
        .set_css(spec::Cap::css_nvm)
        .set_mpsmin(0)
        .set_mpsmax(kMaxMpsShift);
    cap_ = cap.raw;
    latency_by_opcode_.fill(nullptr);
    for (const auto& [opc, l] : cfg_.io_latency) latency_by_opcode_[opc] = &l;

    doorbell_count_ = 2 * (uint32_t{cfg_.max_io_queues} + 1);
    doorbells_ = std::make_unique<std::atomic<uint32_t>[]>(doorbell_count_);
    dirty_words_ = (doorbell_count_ + 63) / 64;
    doorbell_dirty_ = std::make_unique<std::atomic<uint64_t>[]>(dirty_words_);
    for (uint32_t i = 0; i < doorbell_count_; ++i) doorbells_[i].store(0);
    for (uint32_t i = 0; i < dirty_words_; ++i) doorbell_dirty_[i].store(0);

    sqs_.resize(cfg_.max_io_queues + 1u);
    cqs_.resize(cfg_.max_io_queues + 1u);
    active_sqids_.reserve(cfg_.max_io_queues + 1u);
    nsqa_ = ncqa_ = cfg_.max_io_queues;
    vwc_enabled_ = cfg_.volatile_write_cache;
    async_config_ = spec::AsyncEventConfigFeature{}.set_nan(1).raw;
    zero_latency_ = false;

    // Scratch: the bounce buffers hold one MDTS transfer (1 MiB chunks without a limit); the
    // segment list covers the largest transfer at 4 KiB pages plus the unaligned first page.
    const uint64_t max_xfer = max_transfer_bytes();
    const uint64_t bounce = max_xfer != 0 ? std::max<uint64_t>(max_xfer, 8192) : (1u << 20);
    bounce_.resize(bounce);
    bounce2_.resize(bounce);
    const uint64_t max_bytes = max_xfer != 0 ? max_xfer : uint64_t{65536} * 4096;
    segs_.resize(max_bytes / 4096 + 2);
    prp_list_.resize((uint64_t{4096} << kMaxMpsShift) / 8);
    sgl_list_.resize(kMaxSglDescriptors);
    dsm_ranges_.resize(spec::dsm_max_ranges);
    changed_ns_.reserve(spec::ns_list_max_entries);
    heap_.reserve(1024);

    namespaces_.resize(cfg_.max_namespaces + 1u);
    std::vector<NamespaceConfig> nss = cfg_.namespaces;
    if (nss.empty()) nss.push_back(NamespaceConfig{});
    for (auto& ns : nss) STRATA_TRY(add_namespace(ns, false));
    return {};
}

void ControllerImpl::start() {
    main_poller_ = thread_.register_poller(&ControllerImpl::poll_main, this, "nvme_model");
}

void ControllerImpl::stop() {
    if (main_poller_) thread_.unregister_poller(main_poller_);
    if (timer_poller_) thread_.unregister_poller(timer_poller_);
    if (control_poller_) thread_.unregister_poller(control_poller_);
    if (fn_ != nullptr && !fn_->removed()) (void)bus_.remove_function(address_);
}

Controller::Stats ControllerImpl::stats() const {
    Controller::Stats s;
    s.commands = counters_.commands.load(std::memory_order_relaxed);
    s.admin_commands = counters_.admin_commands.load(std::memory_order_relaxed);
    s.completions = counters_.completions.load(std::memory_order_relaxed);
    s.doorbell_writes = counters_.doorbell_writes.load(std::memory_order_relaxed);
    s.dropped_completions = counters_.dropped_completions.load(std::memory_order_relaxed);
    s.injected_errors = counters_.injected_errors.load(std::memory_order_relaxed);
    s.invalid_doorbells = counters_.invalid_doorbells.load(std::memory_order_relaxed);
    s.held_completions = counters_.held_completions.load(std::memory_order_relaxed);
    s.dma_faults = fn_ != nullptr ? fn_->dma_fault_count() : 0;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Registers (any thread)
// ---------------------------------------------------------------------------------------------

uint64_t ControllerImpl::bar_read(uint64_t offset, uint32_t width) {
    if (width == 8) {
        return uint64_t{reg_read32(offset)} | (uint64_t{reg_read32(offset + 4)} << 32);
    }
    return reg_read32(offset);
}

void ControllerImpl::bar_write(uint64_t offset, uint32_t width, uint64_t value) {
    if (width == 8) {
        reg_write32(offset, static_cast<uint32_t>(value));
        reg_write32(offset + 4, static_cast<uint32_t>(value >> 32));
        return;
    }
    reg_write32(offset, static_cast<uint32_t>(value));
}

uint32_t ControllerImpl::reg_read32(uint64_t offset) {
    namespace reg = spec::reg;
    switch (offset) {
        case reg::cap:
            return static_cast<uint32_t>(cap_);
        case reg::cap + 4:
            return static_cast<uint32_t>(cap_ >> 32);
        case reg::vs:
            return spec::vs_1_4.raw;
        case reg::intms:
        case reg::intmc:
            return intms_.load(std::memory_order_relaxed);
        case reg::cc:
            return cc_.load(std::memory_order_acquire);
        case reg::csts:
            return csts_.load(std::memory_order_acquire);
        case reg::aqa:
            return aqa_.load(std::memory_order_relaxed);
        case reg::asq:
            return static_cast<uint32_t>(asq_.load(std::memory_order_relaxed));
        case reg::asq + 4:
            return static_cast<uint32_t>(asq_.load(std::memory_order_relaxed) >> 32);
        case reg::acq:
            return static_cast<uint32_t>(acq_.load(std::memory_order_relaxed));
        case reg::acq + 4:
            return static_cast<uint32_t>(acq_.load(std::memory_order_relaxed) >> 32);
        default:
            return 0;  // reserved, unsupported optional registers and doorbells read 0
    }
}

void ControllerImpl::reg_write32(uint64_t offset, uint32_t value) {
    namespace reg = spec::reg;
    if (offset >= reg::doorbell_base) {
        doorbell_write(offset, value);
        return;
    }
    auto set_lo = [](std::atomic<uint64_t>& r, uint32_t v) {
        uint64_t old = r.load(std::memory_order_relaxed);
        r.store((old & ~uint64_t{0xFFFFFFFF}) | v, std::memory_order_release);
    };
    auto set_hi = [](std::atomic<uint64_t>& r, uint32_t v) {
        uint64_t old = r.load(std::memory_order_relaxed);
        r.store((old & 0xFFFFFFFFu) | (uint64_t{v} << 32), std::memory_order_release);
    };
    switch (offset) {
        case reg::intms:
            intms_.fetch_or(value, std::memory_order_relaxed);
            break;
        case reg::intmc:
            intms_.fetch_and(~value, std::memory_order_relaxed);
            break;
        case reg::cc:
            cc_.store(value, std::memory_order_release);
            cc_dirty_.store(true);
            wake();
            break;
        case reg::aqa:
            aqa_.store(value & 0x0FFF0FFFu, std::memory_order_release);
            break;
        case reg::asq:
            set_lo(asq_, value);
            break;
        case reg::asq + 4:
            set_hi(asq_, value);
            break;
        case reg::acq:
            set_lo(acq_, value);
            break;
        case reg::acq + 4:
            set_hi(acq_, value);
            break;
        default:
            break;  // CAP, VS, CSTS (NSSRO is never set), NSSR unsupported: ignored
    }
}

void ControllerImpl::doorbell_write(uint64_t offset, uint32_t value) {
    counters_.doorbell_writes.fetch_add(1, std::memory_order_relaxed);
    const uint64_t stride = spec::doorbell_stride_bytes(cfg_.doorbell_stride);
    const uint64_t rel = offset - spec::reg::doorbell_base;
    const uint64_t index = rel / stride;
    if (rel % stride != 0 || index >= doorbell_count_) {
        // Past the last queue the controller supports (or between strided doorbells).
        stray_doorbells_.fetch_add(1);
        any_doorbell_.store(true);
        wake();
        return;
    }
    doorbells_[index].store(value, std::memory_order_release);
    doorbell_dirty_[index / 64].fetch_or(uint64_t{1} << (index % 64));
    any_doorbell_.store(true);
    wake();
}

// Arms the model after a BAR write: a poller that reported idle gets one no-op message, which
// counts as work, so the simulator polls the model again even when the writer's own step
// reported idle (or came from outside any Thread). A busy model gets nothing.
void ControllerImpl::wake() {
    if (parked_.load(std::memory_order_relaxed) && parked_.exchange(false))
        (void)thread_.send([](void*) {}, nullptr);
}

void ControllerImpl::set_csts_bits(uint32_t set, uint32_t clear) {
    uint32_t v = csts_.load(std::memory_order_relaxed);
    csts_.store((v & ~clear) | set, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Pollers
// ---------------------------------------------------------------------------------------------

runtime::PollStatus ControllerImpl::poll_main(void* ctx) {
    auto* self = static_cast<ControllerImpl*>(ctx);
    if (self->removed_.load(std::memory_order_acquire)) return runtime::PollStatus::idle;
    bool busy = false;
    // exchange before reading: a write racing with this poll sets the flag again.
    if (self->cc_dirty_.load(std::memory_order_acquire) && self->cc_dirty_.exchange(false)) {
        self->handle_cc();
        busy = true;
    }
    if (self->any_doorbell_.load(std::memory_order_acquire) && self->any_doorbell_.exchange(false))
        busy |= self->handle_doorbells();
    if (self->state_ == State::ready && !self->fatal_ && !self->shutdown_)
        busy |= self->process_queues();
    if (!busy) self->parked_.store(true, std::memory_order_seq_cst);
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

bool ControllerImpl::handle_doorbells() {
    const bool live = state_ == State::ready && !fatal_;
    bool busy = false;
    if (uint32_t stray = stray_doorbells_.exchange(0, std::memory_order_acquire); stray != 0) {
        busy = true;
        if (live) {
            counters_.invalid_doorbells.fetch_add(stray, std::memory_order_relaxed);
            invalid_doorbell(spec::AsyncErrorInfo::write_to_invalid_doorbell);
        }
    }
    for (uint32_t w = 0; w < dirty_words_; ++w) {
        uint64_t bits = doorbell_dirty_[w].exchange(0);
        while (bits != 0) {
            const uint32_t bit = static_cast<uint32_t>(std::countr_zero(bits));
            bits &= bits - 1;
            busy = true;
            if (!live) continue;  // doorbells of a disabled controller are ignored
            const uint32_t index = w * 64 + bit;
            const uint16_t qid = static_cast<uint16_t>(index / 2);
            const uint32_t value = doorbells_[index].load(std::memory_order_acquire);
            if (index % 2 == 0) {
                SubQueue& sq = sqs_[qid];
                if (!sq.valid) {
                    counters_.invalid_doorbells.fetch_add(1, std::memory_order_relaxed);
                    invalid_doorbell(spec::AsyncErrorInfo::write_to_invalid_doorbell);
                } else if (value >= sq.size) {
                    counters_.invalid_doorbells.fetch_add(1, std::memory_order_relaxed);
                    invalid_doorbell(spec::AsyncErrorInfo::invalid_doorbell_write_value);
                } else {
                    sq.tail = value;
                }
            } else {
                CompQueue& cq = cqs_[qid];
                if (!cq.valid) {
                    counters_.invalid_doorbells.fetch_add(1, std::memory_order_relaxed);
                    invalid_doorbell(spec::AsyncErrorInfo::write_to_invalid_doorbell);
                    continue;
                }
                // The new head may only move over entries the controller has posted.
                const uint32_t posted = (cq.tail + cq.size - cq.head) % cq.size;
                const uint32_t consumed = (value + cq.size - cq.head) % cq.size;
                if (value >= cq.size || consumed > posted) {
                    counters_.invalid_doorbells.fetch_add(1, std::memory_order_relaxed);
                    invalid_doorbell(spec::AsyncErrorInfo::invalid_doorbell_write_value);
                    continue;
                }
                cq.head = value;
                drain_held(cq);
            }
        }
    }
    return busy;
}

bool ControllerImpl::process_queues() {
    if (active_sqids_.empty()) return false;
    const spec::ArbitrationFeature arb{arbitration_};
    const uint32_t burst = arb.ab() >= 7 ? 64u : (1u << arb.ab());
    uint32_t budget = kFetchBudget;
    bool any = false;
    // Round robin: a burst from the queue at rr_next_, then the next queue; stop after a whole
    // cycle in which no queue had work (or when the budget of this poll is spent).
    size_t idle_in_a_row = 0;
    while (budget > 0 && !active_sqids_.empty() && idle_in_a_row < active_sqids_.size()) {
        if (state_ != State::ready || fatal_ || shutdown_) break;
        if (rr_next_ >= active_sqids_.size()) rr_next_ = 0;
        SubQueue& sq = sqs_[active_sqids_[rr_next_]];
        rr_next_ = (rr_next_ + 1) % active_sqids_.size();
        uint32_t fetched = 0;
        while (fetched < burst && budget > 0 && sq.valid && sq.head != sq.tail &&
               sq.free_list != nullptr && state_ == State::ready && !fatal_ && !shutdown_) {
            fetch(sq);
            ++fetched;
            --budget;
        }
        if (fetched > 0) {
            any = true;
            idle_in_a_row = 0;
        } else {
            ++idle_in_a_row;
        }
    }
    return any;
}

runtime::PollStatus ControllerImpl::poll_timer(void* ctx) {
    auto* self = static_cast<ControllerImpl*>(ctx);
    self->thread_.unregister_poller(self->timer_poller_);
    if (self->removed_.load(std::memory_order_acquire)) return runtime::PollStatus::idle;
    bool busy = false;
    const uint64_t now = runtime::now_ns();
    while (!self->heap_.empty() && !self->fatal_ && self->state_ == State::ready &&
           self->heap_.front()->due_ns <= now) {
        Command* c = self->heap_pop();
        self->run_command(*c);
        busy = true;
    }
    if (!self->heap_.empty() && !self->fatal_ && self->state_ == State::ready)
        self->arm_timer(self->heap_.front()->due_ns);
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

// One-shot: a Poller registration per wake-up. Commands due at the same time or earlier share
// one wake-up; with zero latency no timer is used at all.
void ControllerImpl::arm_timer(uint64_t due_ns) {
    if (timer_poller_ != nullptr && timer_due_ns_ <= due_ns) return;
    if (timer_poller_ != nullptr) thread_.unregister_poller(timer_poller_);
    const uint64_t now = runtime::now_ns();
    const uint64_t period = due_ns > now ? due_ns - now : 1;
    timer_poller_ =
        thread_.register_poller(&ControllerImpl::poll_timer, this, "nvme_model_timer", period);
    timer_due_ns_ = now + period;
}

runtime::PollStatus ControllerImpl::poll_control(void* ctx) {
    auto* self = static_cast<ControllerImpl*>(ctx);
    self->thread_.unregister_poller(self->control_poller_);
    self->finish_control();
    return runtime::PollStatus::busy;
}

void ControllerImpl::arm_control(uint64_t delay_ns) {
    if (control_poller_ != nullptr) thread_.unregister_poller(control_poller_);
    if (delay_ns == 0) {
        finish_control();
        return;
    }
    control_poller_ = thread_.register_poller(&ControllerImpl::poll_control, this,
                                              "nvme_model_control", delay_ns);
}

// ---------------------------------------------------------------------------------------------
// Controller state machine
// ---------------------------------------------------------------------------------------------

void ControllerImpl::handle_cc() {
    const spec::Cc now{cc_.load(std::memory_order_acquire)};
    const spec::Cc old{cc_applied_};
    cc_applied_ = now.raw;
    if (old.en() == 0 && now.en() == 1) {
        start_enable();
    } else if (old.en() == 1 && now.en() == 0) {
        start_disable();
    }
    if (old.shn() == 0 && now.shn() != 0) {
        start_shutdown();
    } else if (old.shn() != 0 && now.shn() == 0) {
        set_csts_bits(0, spec::Csts{}.set_shst(3).raw);
        if (state_ == State::ready) shutdown_ = false;
    }
}

void ControllerImpl::start_enable() {
    const spec::Cc cc{cc_applied_};
    const spec::Aqa aqa{aqa_.load(std::memory_order_acquire)};
    const uint64_t asq = asq_.load(std::memory_order_acquire);
    const uint64_t acq = acq_.load(std::memory_order_acquire);
    const char* why = nullptr;
    if (cc.css() != spec::Cc::css_nvm)
        why = "CC.CSS selects an unsupported command set";
    else if (cc.mps() > kMaxMpsShift)
        why = "CC.MPS above CAP.MPSMAX";
    else if (cc.ams() != spec::Cc::ams_round_robin)
        why = "CC.AMS selects unsupported arbitration";
    else if (cc.iosqes() != spec::sqe_size_log2)
        why = "CC.IOSQES is not 6 (64-byte entries)";
    else if (cc.iocqes() != spec::cqe_size_log2)
        why = "CC.IOCQES is not 4 (16-byte entries)";
    else if (aqa.asqs() == 0 || aqa.acqs() == 0)
        why = "AQA: an admin queue of one entry";
    else if (asq == 0 || acq == 0)
        why = "ASQ/ACQ is zero";
    else if ((asq | acq) & (spec::queue_base_align_bytes - 1))
        why = "ASQ/ACQ not 4 KiB aligned";
    if (why != nullptr) {
        STRATA_WARNLOG(log_hwemu_nvme, "{}: enable refused: {} (CC {:#x}, AQA {:#x})",
                       address_.to_string(), why, cc.raw, aqa.raw);
        set_csts_bits(spec::Csts{}.set_cfs(1).raw, 0);
        fatal_ = true;
        return;
    }
    page_size_ = cc.page_size_bytes();
    reset_queues();
    for (uint32_t i = 0; i < doorbell_count_; ++i) doorbells_[i].store(0);
    create_cq(0, acq, aqa.acqs() + 1u);
    create_sq(0, asq, aqa.asqs() + 1u, 0);
    fatal_ = false;
    shutdown_ = false;
    state_ = State::enabling;
    control_op_ = ControlOp::enable;
    arm_control(cfg_.enable_delay_ns);
}

void ControllerImpl::start_disable() {
    reset_queues();
    fatal_ = false;
    shutdown_ = false;
    state_ = State::disabling;
    control_op_ = ControlOp::disable;
    // CFS is cleared by the reset; RDY drops when the reset completes.
    set_csts_bits(0, spec::Csts{}.set_cfs(1).raw);
    arm_control(cfg_.enable_delay_ns);
}

void ControllerImpl::start_shutdown() {
    set_csts_bits(spec::Csts{}.set_shst(spec::Csts::shst_occurring).raw,
                  spec::Csts{}.set_shst(3).raw);
    shutdown_ = true;
    for (auto& ns : namespaces_)
        if (ns) (void)ns->media->flush();
    if (control_op_ == ControlOp::none || control_op_ == ControlOp::shutdown) {
        control_op_ = ControlOp::shutdown;
        arm_control(cfg_.enable_delay_ns);
    } else {
        // An enable/disable is in flight: finish the shutdown at once.
        set_csts_bits(spec::Csts{}.set_shst(spec::Csts::shst_complete).raw,
                      spec::Csts{}.set_shst(3).raw);
    }
}

void ControllerImpl::finish_control() {
    const ControlOp op = control_op_;
    control_op_ = ControlOp::none;
    switch (op) {
        case ControlOp::enable:
            if (state_ == State::enabling) {
                state_ = State::ready;
                set_csts_bits(spec::Csts{}.set_rdy(1).raw, 0);
            }
            break;
        case ControlOp::disable:
            state_ = State::disabled;
            set_csts_bits(0, spec::Csts{}.set_rdy(1).raw);
            break;
        case ControlOp::shutdown:
            set_csts_bits(spec::Csts{}.set_shst(spec::Csts::shst_complete).raw,
                          spec::Csts{}.set_shst(3).raw);
            break;
        case ControlOp::none:
            break;
    }
    // A shutdown requested while the enable/disable timer ran completes now.
    if (op != ControlOp::shutdown && shutdown_ &&
        spec::Csts{csts_.load(std::memory_order_relaxed)}.shst() == spec::Csts::shst_occurring) {
        set_csts_bits(spec::Csts{}.set_shst(spec::Csts::shst_complete).raw,
                      spec::Csts{}.set_shst(3).raw);
    }
}

void ControllerImpl::set_fatal(const char* why) {
    if (fatal_) return;
    STRATA_WARNLOG(log_hwemu_nvme, "{}: controller fatal status: {}", address_.to_string(), why);
    fatal_ = true;
    set_csts_bits(spec::Csts{}.set_cfs(1).raw, 0);
}

// Drops every queue and command without completions (controller reset, power loss).
void ControllerImpl::reset_queues() {
    heap_.clear();
    if (timer_poller_ != nullptr) thread_.unregister_poller(timer_poller_);
    for (auto& sq : sqs_) {
        sq.valid = false;
        sq.pool.clear();
        sq.pool.shrink_to_fit();
        sq.free_list = nullptr;
        sq.in_flight = 0;
    }
    for (auto& cq : cqs_) {
        cq.valid = false;
        cq.held.clear();
        cq.held.shrink_to_fit();
        cq.held_head = cq.held_count = 0;
        cq.sq_refs = 0;
    }
    active_sqids_.clear();
    rr_next_ = 0;
    total_slots_ = 0;
    aers_.fill(nullptr);
    aer_count_ = 0;
    event_count_ = 0;
    masked_types_ = 0;
    nsqa_ = ncqa_ = cfg_.max_io_queues;
}

void ControllerImpl::reset_registers() {
    cc_.store(0, std::memory_order_release);
    cc_dirty_.store(false, std::memory_order_release);
    cc_applied_ = 0;
    csts_.store(0, std::memory_order_release);
    aqa_.store(0, std::memory_order_release);
    asq_.store(0, std::memory_order_release);
    acq_.store(0, std::memory_order_release);
    intms_.store(0, std::memory_order_release);
    for (uint32_t i = 0; i < doorbell_count_; ++i) doorbells_[i].store(0);
    for (uint32_t i = 0; i < dirty_words_; ++i) doorbell_dirty_[i].store(0);
    stray_doorbells_.store(0);
    any_doorbell_.store(false);
}

void ControllerImpl::power_cut(bool torn) {
    STRATA_NOTICELOG(log_hwemu_nvme, "{}: power cut{}", address_.to_string(),
                     torn ? " (torn writes)" : "");
    for (auto& ns : namespaces_)
        if (ns) ns->media->power_cut(torn, prng_);
    if (control_poller_ != nullptr) thread_.unregister_poller(control_poller_);
    control_op_ = ControlOp::none;
    reset_queues();
    reset_registers();
    state_ = State::disabled;
    fatal_ = false;
    shutdown_ = false;
    // Features return to their defaults after power loss.
    arbitration_ = 0;
    power_mgmt_ = 0;
    temp_over_k_ = 343;
    temp_under_k_ = 0;
    vwc_enabled_ = cfg_.volatile_write_cache;
    for (auto& ns : namespaces_)
        if (ns) ns->media->set_cache_enabled(vwc_enabled_);
    async_config_ = spec::AsyncEventConfigFeature{}.set_nan(1).raw;
    ++health_.power_cycles;
    ++health_.unsafe_shutdowns;
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

void ControllerImpl::create_cq(uint16_t qid, uint64_t base, uint32_t size) {
    CompQueue& cq = cqs_[qid];
    cq = CompQueue{};
    cq.valid = true;
    cq.id = qid;
    cq.base = base;
    cq.size = size;
    cq.phase = true;
}

void ControllerImpl::create_sq(uint16_t qid, uint64_t base, uint32_t size, uint16_t cqid) {
    SubQueue& sq = sqs_[qid];
    sq.valid = true;
    sq.id = qid;
    sq.base = base;
    sq.size = size;
    sq.head = sq.tail = 0;
    sq.cqid = cqid;
    sq.in_flight = 0;
    sq.pool.assign(size, Command{});
    sq.free_list = nullptr;
    for (uint32_t i = size; i-- > 0;) {
        sq.pool[i].next_free = sq.free_list;
        sq.free_list = &sq.pool[i];
    }
    // The CQ can hold back one completion per command of every SQ bound to it.
    CompQueue& cq = cqs_[cqid];
    ++cq.sq_refs;
    std::vector<spec::Cqe> grown(cq.held.size() + size);
    for (size_t i = 0; i < cq.held_count; ++i)
        grown[i] = cq.held[(cq.held_head + i) % cq.held.size()];
    cq.held = std::move(grown);
    cq.held_head = 0;
    total_slots_ += size;
    heap_.reserve(total_slots_);
    active_sqids_.insert(std::lower_bound(active_sqids_.begin(), active_sqids_.end(), qid), qid);
}

// Deletes an I/O SQ: commands it still holds complete with "aborted due to SQ deletion" first.
void ControllerImpl::delete_sq(uint16_t qid) {
    SubQueue& sq = sqs_[qid];
    for (Command& c : sq.pool) {
        if (c.heap_index != kNotInHeap) {
            heap_remove(&c);
            complete(c, st(spec::GenericStatus::aborted_sq_deletion), 0);
        }
    }
    sq.valid = false;
    sq.pool.clear();
    sq.pool.shrink_to_fit();
    sq.free_list = nullptr;
    sq.in_flight = 0;
    if (cqs_[sq.cqid].sq_refs > 0) --cqs_[sq.cqid].sq_refs;
    auto it = std::find(active_sqids_.begin(), active_sqids_.end(), qid);
    if (it != active_sqids_.end()) active_sqids_.erase(it);
    if (rr_next_ >= active_sqids_.size()) rr_next_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

void ControllerImpl::fetch(SubQueue& sq) {
    spec::Sqe sqe;
    Status s =
        fn_->dma().read(sq.base + uint64_t{sq.head} * spec::sqe_size_bytes, &sqe, sizeof(sqe));
    if (!s.ok()) {
        // No command id to report an error against: the controller cannot go on.
        if (s.code() != Errc::device_removed) set_fatal("DMA fault fetching a submission entry");
        return;
    }
    sq.head = (sq.head + 1) % sq.size;
    Command* c = sq.free_list;
    sq.free_list = c->next_free;
    ++sq.in_flight;
    c->next_free = nullptr;
    c->sqe = sqe;
    c->sqid = sq.id;
    c->heap_index = kNotInHeap;
    c->preset_error = c->drop = c->corrupt = c->parked_aer = false;
    c->preset_status = 0;
    c->seq = seq_++;
    bump(counters_.commands);
    if (sq.id == 0) bump(counters_.admin_commands);
    start_command(*c);
}

void ControllerImpl::release(Command& c) {
    SubQueue& sq = sqs_[c.sqid];
    if (!sq.valid || sq.pool.empty()) return;
    c.heap_index = kNotInHeap;
    c.next_free = sq.free_list;
    sq.free_list = &c;
    if (sq.in_flight > 0) --sq.in_flight;
}

uint64_t ControllerImpl::latency_ns(uint8_t opcode) {
    if (zero_latency_ || latency_by_opcode_[opcode] == nullptr) return 0;
    const LatencySpec& l = *latency_by_opcode_[opcode];
    switch (l.kind) {
        case LatencySpec::Kind::fixed:
            return l.a_ns;
        case LatencySpec::Kind::uniform:
            return prng_.range(l.a_ns, std::max(l.a_ns, l.b_ns));
        case LatencySpec::Kind::exponential: {
            const double u = prng_.unit();
            const double v = -std::log1p(-u) * static_cast<double>(l.a_ns);
            return v >= 1e18 ? uint64_t{1'000'000'000'000'000'000} : static_cast<uint64_t>(v);
        }
    }
    return 0;
}

const FaultRule* ControllerImpl::match_fault(const FaultSubject& subject, bool admin) {
    if (!admin) return faults_.match(subject);
    // Admin commands (control path) only meet rules that name queue 0 explicitly.
    bool any = false;
    for (const auto& e : faults_.entries()) any |= e.rule.match.queue_id == uint16_t{0};
    if (!any) return nullptr;
    const FaultRule* rule = faults_.match(subject);
    return rule != nullptr && rule->match.queue_id == uint16_t{0} ? rule : nullptr;
}

void ControllerImpl::start_command(Command& c) {
    const spec::Sqe& sqe = c.sqe;
    const bool admin = c.sqid == 0;
    uint64_t extra_ns = 0;
    if (faults_.size() != 0) {
        FaultSubject subject{};
        subject.opcode = sqe.opc;
        subject.queue_id = c.sqid;
        subject.nsid = sqe.nsid;
        if (!admin) {
            using Op = spec::NvmOpcode;
            const auto op = static_cast<Op>(sqe.opc);
            if (op == Op::read || op == Op::write || op == Op::compare || op == Op::write_zeroes) {
                subject.lba = sqe.slba();
                subject.block_count = spec::RwCdw12{sqe.cdw12}.nlb() + 1u;
            }
        }
        // Admin commands only meet rules that name queue 0 (an opcode alone means NVM I/O:
        // admin and NVM opcodes overlap).
        const FaultRule* rule = match_fault(subject, admin);
        if (rule != nullptr) {
            STRATA_INFOLOG(log_hwemu_nvme, "{}: fault '{}' on sq {} cid {} opc {:#x}",
                           address_.to_string(), rule->name, c.sqid, sqe.cid, sqe.opc);
            switch (rule->action) {
                case FaultAction::error_status:
                    c.preset_error = true;
                    c.preset_status =
                        spec::StatusField::make(static_cast<uint8_t>((rule->status >> 8) & 0x7),
                                                static_cast<uint8_t>(rule->status & 0xFF))
                            .raw;
                    if (c.preset_status == 0)  // "success" is not an error: internal error
                        c.preset_status = st(spec::GenericStatus::internal_error);
                    bump(counters_.injected_errors);
                    break;
                case FaultAction::delay:
                    extra_ns = rule->delay_ns;
                    break;
                case FaultAction::drop_completion:
                    c.drop = true;
                    break;
                case FaultAction::corrupt_read:
                    c.corrupt = true;
                    break;
                case FaultAction::fatal_status:
                    release(c);
                    set_fatal("fault plan: fatal_status");
                    return;
                case FaultAction::surprise_remove:
                    release(c);
                    STRATA_NOTICELOG(log_hwemu_nvme, "{}: fault plan: surprise removal",
                                     address_.to_string());
                    (void)bus_.surprise_remove(address_);
                    return;
                case FaultAction::power_cut:
                    power_cut(rule->torn);  // drops this command with everything else
                    return;
            }
        }
    }
    const uint64_t lat = admin ? 0 : latency_ns(sqe.opc);
    constexpr uint64_t kMaxDelayNs = uint64_t{1} << 62;  // ~146 years: "never", without overflow
    const uint64_t delay =
        std::min(kMaxDelayNs, std::min(kMaxDelayNs, lat) + std::min(kMaxDelayNs, extra_ns));
    if (delay == 0) {
        run_command(c);
        return;
    }
    c.due_ns = runtime::now_ns() + delay;
    heap_push(&c);
    arm_timer(c.due_ns);
}

void ControllerImpl::run_command(Command& c) {
    uint16_t status = 0;
    uint32_t dw0 = 0;
    if (c.preset_error) {
        status = c.preset_status;
    } else if (c.sqid == 0) {
        bool parked = false;
        status = exec_admin(c, dw0, parked);
        if (parked) return;  // an AER: completes when an event arrives
    } else {
        status = exec_io(c);
    }
    // The command as the device saw it, for the simulator's trace hash (free in real mode).
    runtime::trace_event(runtime::TraceKind::device_cmd,
                         uint64_t{c.sqe.opc} | (uint64_t{c.sqid} << 8) | (uint64_t{status} << 24) |
                             (uint64_t{c.drop} << 40),
                         uint64_t{c.sqe.nsid} | (uint64_t{c.sqe.cdw10} << 32),
                         uint64_t{c.sqe.cdw11} | (uint64_t{c.sqe.cdw12} << 32));
    if (removed_.load(std::memory_order_acquire)) return;
    if (c.drop) {
        bump(counters_.dropped_completions);
        release(c);
        return;
    }
    complete(c, status, dw0);
}

void ControllerImpl::complete(Command& c, uint16_t status, uint32_t dw0) {
    const uint16_t sqid = c.sqid;
    const spec::Sqe sqe = c.sqe;
    release(c);
    if (status != 0) record_error(sqid, sqe, status);
    post(sqid, sqe.cid, status, dw0);
}

void ControllerImpl::post(uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0) {
    const SubQueue& sq = sqs_[sqid];
    if (!sq.valid) return;
    CompQueue& cq = cqs_[sq.cqid];
    if (!cq.valid) return;
    spec::Cqe cqe{};
    cqe.dw0 = dw0;
    cqe.dw1 = 0;
    cqe.sqhd = static_cast<uint16_t>(sq.head);
    cqe.sqid = sqid;
    cqe.cid = cid;
    cqe.status = static_cast<uint16_t>(status & ~1u);
    const bool full = (cq.tail + 1) % cq.size == cq.head;
    if (full || cq.held_count > 0) {
        if (cq.held_count < cq.held.size()) {
            cq.held[(cq.held_head + cq.held_count) % cq.held.size()] = cqe;
            ++cq.held_count;
            bump(counters_.held_completions);
        } else {
            set_fatal("completion hold-back overflow");  // unreachable by construction
        }
        return;
    }
    write_cqe(cq, cqe);
}

bool ControllerImpl::write_cqe(CompQueue& cq, const spec::Cqe& entry) {
    spec::Cqe cqe = entry;
    cqe.status = static_cast<uint16_t>((cqe.status & ~1u) | (cq.phase ? 1u : 0u));
    const uint64_t at = cq.base + uint64_t{cq.tail} * spec::cqe_size_bytes;
    // Dwords 0-2 first, then dword 3 (CID, status and phase) as one release store.
    Status s = fn_->dma().write(at, &cqe, 12);
    if (s.ok()) {
        const uint32_t dw3 = uint32_t{cqe.cid} | (uint32_t{cqe.status} << 16);
        s = fn_->dma().store32_release(at + 12, dw3);
    }
    if (!s.ok()) {
        if (s.code() != Errc::device_removed) set_fatal("DMA fault writing a completion entry");
        return false;
    }
    cq.tail = (cq.tail + 1) % cq.size;
    if (cq.tail == 0) cq.phase = !cq.phase;
    bump(counters_.completions);
    return true;
}

void ControllerImpl::drain_held(CompQueue& cq) {
    while (cq.held_count > 0 && (cq.tail + 1) % cq.size != cq.head && !fatal_) {
        if (!write_cqe(cq, cq.held[cq.held_head])) return;
        cq.held_head = (cq.held_head + 1) % cq.held.size();
        --cq.held_count;
    }
}

void ControllerImpl::record_error(uint16_t sqid, const spec::Sqe& sqe, uint16_t status) {
    spec::ErrorInfoEntry e{};
    e.error_count = ++error_count_;
    e.sqid = sqid;
    e.cid = sqe.cid;
    e.status = static_cast<uint16_t>(status & ~1u);
    e.parameter_location = 0xFFFF;
    e.nsid = sqe.nsid;
    if (sqid != 0) e.lba = sqe.slba();
    error_log_[error_log_next_] = e;
    error_log_next_ = (error_log_next_ + 1) % kErrorLogEntries;
    const spec::StatusField sf{status};
    if (sf.sct() == static_cast<uint8_t>(spec::Sct::media_error)) ++health_.media_errors;
}

// ---------------------------------------------------------------------------------------------
// Timer heap (min on due_ns, then fetch order)
// ---------------------------------------------------------------------------------------------

namespace {
bool earlier(const Command* a, const Command* b) {
    return a->due_ns != b->due_ns ? a->due_ns < b->due_ns : a->seq < b->seq;
}
}  // namespace

void ControllerImpl::heap_sift_up(uint32_t i) {
    while (i > 0) {
        const uint32_t parent = (i - 1) / 2;
        if (!earlier(heap_[i], heap_[parent])) break;
        std::swap(heap_[i], heap_[parent]);
        heap_[i]->heap_index = i;
        heap_[parent]->heap_index = parent;
        i = parent;
    }
}

void ControllerImpl::heap_sift_down(uint32_t i) {
    const uint32_t n = static_cast<uint32_t>(heap_.size());
    for (;;) {
        const uint32_t l = 2 * i + 1, r = l + 1;
        uint32_t m = i;
        if (l < n && earlier(heap_[l], heap_[m])) m = l;
        if (r < n && earlier(heap_[r], heap_[m])) m = r;
        if (m == i) break;
        std::swap(heap_[i], heap_[m]);
        heap_[i]->heap_index = i;
        heap_[m]->heap_index = m;
        i = m;
    }
}

void ControllerImpl::heap_push(Command* c) {
    c->heap_index = static_cast<uint32_t>(heap_.size());
    heap_.push_back(c);  // capacity reserved when the SQ was created
    heap_sift_up(c->heap_index);
}

Command* ControllerImpl::heap_pop() {
    Command* top = heap_.front();
    heap_remove(top);
    return top;
}

void ControllerImpl::heap_remove(Command* c) {
    const uint32_t i = c->heap_index;
    const uint32_t last = static_cast<uint32_t>(heap_.size()) - 1;
    if (i != last) {
        heap_[i] = heap_[last];
        heap_[i]->heap_index = i;
    }
    heap_.pop_back();
    c->heap_index = kNotInHeap;
    if (i < heap_.size()) {
        heap_sift_up(i);
        heap_sift_down(heap_[i]->heap_index);
    }
}

// ---------------------------------------------------------------------------------------------
// Asynchronous events
// ---------------------------------------------------------------------------------------------

void ControllerImpl::queue_event(spec::AsyncEventType type, uint8_t info, spec::LogPage lid) {
    const uint32_t dw0 = spec::AsyncEventCompletion::make(type, info, lid).raw;
    for (uint32_t i = 0; i < event_count_; ++i)
        if (events_[i].dw0 == dw0) {
            deliver_events();
            return;  // the same event is already waiting
        }
    if (event_count_ < kMaxEvents) events_[event_count_++] = AsyncEvent{dw0};
    deliver_events();
}

void ControllerImpl::deliver_events() {
    uint32_t i = 0;
    while (i < event_count_ && aer_count_ > 0) {
        const uint32_t dw0 = events_[i].dw0;
        const uint8_t type_bit = static_cast<uint8_t>(1u << (dw0 & 0x7));
        if ((masked_types_ & type_bit) != 0) {
            ++i;
            continue;
        }
        masked_types_ |= type_bit;  // until the host reads the associated log page
        for (uint32_t k = i + 1; k < event_count_; ++k) events_[k - 1] = events_[k];
        --event_count_;
        Command* aer = aers_[0];
        for (uint32_t k = 1; k < aer_count_; ++k) aers_[k - 1] = aers_[k];
        aers_[--aer_count_] = nullptr;
        aer->parked_aer = false;
        complete(*aer, 0, dw0);
    }
}

void ControllerImpl::invalid_doorbell(spec::AsyncErrorInfo info) {
    STRATA_WARNLOG(
        log_hwemu_nvme, "{}: invalid doorbell write ({})", address_.to_string(),
        info == spec::AsyncErrorInfo::write_to_invalid_doorbell ? "no such queue" : "bad value");
    queue_event(spec::AsyncEventType::error, static_cast<uint8_t>(info), spec::LogPage::error_info);
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

Result<void> ControllerImpl::add_namespace(NamespaceConfig cfg, bool notify) {
    if (cfg.nsid == 0 || cfg.nsid > cfg_.max_namespaces)
        return Error(Errc::invalid_argument,
                     fmt::format("namespace id {} is not in 1..{}", cfg.nsid, cfg_.max_namespaces));
    if (namespaces_[cfg.nsid])
        return Error(Errc::already_exists, fmt::format("namespace {} exists", cfg.nsid));
    if (cfg.block_size_bytes != 512 && cfg.block_size_bytes != 4096)
        return Error(Errc::invalid_argument,
                     fmt::format("namespace {}: block_size_bytes {} is not 512 or 4096", cfg.nsid,
                                 cfg.block_size_bytes));
    if (cfg.num_blocks == 0) cfg.num_blocks = (uint64_t{1} << 30) / cfg.block_size_bytes;
    if (cfg.num_blocks > (uint64_t{1} << 48) / cfg.block_size_bytes)
        return Error(Errc::invalid_argument,
                     fmt::format("namespace {}: {} blocks is too large", cfg.nsid, cfg.num_blocks));
    const uint64_t bytes = cfg.num_blocks * cfg.block_size_bytes;
    std::unique_ptr<BlockStore> store;
    if (cfg.backing_file.empty()) {
        store = make_ram_store(bytes);
    } else {
        auto f = open_file_store(cfg.backing_file, bytes, true);
        if (!f.ok())
            return Error(f.error().code(),
                         fmt::format("namespace {}: {}", cfg.nsid, f.error().message()));
        store = std::move(*f);
    }
    auto ns = std::make_unique<Namespace>();
    ns->media = std::make_unique<CachedMedia>(std::move(store), cfg.block_size_bytes,
                                              cfg_.volatile_write_cache && vwc_enabled_);
    ns->blocks = cfg.num_blocks;
    ns->block_size = cfg.block_size_bytes;
    // Stable identifiers from the serial number and NSID.
    uint64_t h = 0xcbf29ce484222325ull;
    for (char ch : cfg_.serial) h = (h ^ static_cast<uint8_t>(ch)) * 0x100000001b3ull;
    h ^= cfg.nsid;
    uint64_t state = h;
    const uint64_t a = Prng::splitmix64(state), b = Prng::splitmix64(state);
    for (int i = 0; i < 8; ++i) {
        ns->eui64[i] = static_cast<uint8_t>(a >> (8 * (7 - i)));
        ns->nguid[i] = static_cast<uint8_t>(a >> (8 * i));
        ns->nguid[8 + i] = static_cast<uint8_t>(b >> (8 * i));
        ns->uuid[i] = static_cast<uint8_t>(b >> (8 * i));
        ns->uuid[8 + i] = static_cast<uint8_t>(a >> (8 * i));
    }
    ns->eui64[0] = 0x52;  // a locally administered-looking OUI prefix, never all zero
    ns->uuid[6] = static_cast<uint8_t>((ns->uuid[6] & 0x0F) | 0x40);  // version 4
    ns->uuid[8] = static_cast<uint8_t>((ns->uuid[8] & 0x3F) | 0x80);  // variant 1
    if (!cfg.report_eui64) ns->eui64 = {};
    if (!cfg.report_nguid) ns->nguid = {};
    if (!cfg.report_uuid) ns->uuid = {};
    ns->cfg = cfg;
    const uint32_t nsid = cfg.nsid;
    namespaces_[nsid] = std::move(ns);
    if (notify) {
        if (changed_ns_.size() < spec::ns_list_max_entries) {
            if (std::find(changed_ns_.begin(), changed_ns_.end(), nsid) == changed_ns_.end())
                changed_ns_.push_back(nsid);
        } else {
            changed_ns_overflow_ = true;
        }
        if (spec::AsyncEventConfigFeature{async_config_}.nan() != 0 && state_ == State::ready)
            queue_event(spec::AsyncEventType::notice,
                        static_cast<uint8_t>(spec::AsyncNoticeInfo::ns_attribute_changed),
                        spec::LogPage::changed_ns_list);
    }
    return {};
}

Result<void> ControllerImpl::remove_namespace(uint32_t nsid) {
    if (active_ns(nsid) == nullptr)
        return Error(Errc::not_found, fmt::format("no namespace {}", nsid));
    namespaces_[nsid].reset();
    if (changed_ns_.size() < spec::ns_list_max_entries) {
        if (std::find(changed_ns_.begin(), changed_ns_.end(), nsid) == changed_ns_.end())
            changed_ns_.push_back(nsid);
    } else {
        changed_ns_overflow_ = true;
    }
    if (spec::AsyncEventConfigFeature{async_config_}.nan() != 0 && state_ == State::ready)
        queue_event(spec::AsyncEventType::notice,
                    static_cast<uint8_t>(spec::AsyncNoticeInfo::ns_attribute_changed),
                    spec::LogPage::changed_ns_list);
    return {};
}

// ---------------------------------------------------------------------------------------------
// Controller (the public face)
// ---------------------------------------------------------------------------------------------

Controller::Controller() = default;

Controller::~Controller() {
    if (impl_) impl_->stop();
}

Result<std::unique_ptr<Controller>> Controller::create(PciBus& bus, const env::PciAddress& address,
                                                       ControllerConfig config,
                                                       runtime::Thread& thread) {
    std::unique_ptr<Controller> c(new Controller());
    c->impl_ = std::make_unique<ControllerImpl>(*c, bus, address, std::move(config), thread);
    if (auto r = c->impl_->init(); !r.ok()) return r.error();
    auto fn = bus.add_function(address, pci_function_config(c->impl_->cfg_), c.get());
    if (!fn.ok()) return fn.error();
    c->impl_->fn_ = *fn;
    c->impl_->start();
    return c;
}

FaultPlan& Controller::faults() {
    return impl_->faults_;
}
Result<void> Controller::add_namespace(NamespaceConfig config) {
    return impl_->add_namespace(std::move(config), true);
}
Result<void> Controller::remove_namespace(uint32_t nsid) {
    return impl_->remove_namespace(nsid);
}
void Controller::power_cut(bool torn) {
    impl_->power_cut(torn);
}
void Controller::set_zero_latency(bool on) {
    impl_->set_zero_latency(on);
}
Controller::Stats Controller::stats() const {
    return impl_->stats();
}
EmulatedFunction& Controller::function() {
    return *impl_->fn_;
}
const env::PciAddress& Controller::address() const {
    return impl_->address_;
}
const ControllerConfig& Controller::config() const {
    return impl_->cfg_;
}

uint64_t Controller::bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) {
    if (bar != 0) return width_bytes == 8 ? ~uint64_t{0} : 0xFFFFFFFFu;
    return impl_->bar_read(offset, width_bytes);
}
void Controller::bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes, uint64_t value) {
    if (bar != 0) return;
    impl_->bar_write(offset, width_bytes, value);
}
void Controller::on_surprise_removal() {
    impl_->mark_removed();
}

}  // namespace strata::hwemu::nvme
