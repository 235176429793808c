// ChannelModel: an Intel I/OAT v3 DMA channel (one PCI function, one channel) on the emulated
// PCI bus, driven through its registers exactly as SPDK's and Linux's drivers drive hardware.
//
// Registers (BAR0, 16 KiB; layout in <strata/ioat/spec/registers.h>): CHANCNT, XFERCAP, CBVER,
// DMACAPABILITY (copy; block fill unless disabled), and for channel 0 at 0x80: CHANCTRL,
// CHANCMD (reset, suspend, resume, abort; reads back a command until the channel applied it),
// DMACOUNT (the doorbell), CHANSTS, CHAINADDR, CHANCMP, CDAR, CHANERR (RW1C) and CHANERRMASK.
// The Bar offers 32- and 64-bit accesses only: CHANCMD is byte 0 and DMACOUNT bytes 2..3 of the
// dword at 0x84, so a 32-bit write there writes both (a zero command byte is no command).
//
// Behaviour. A BAR write only records (DMACOUNT, command) and arms the poller; descriptors are
// fetched from CHAINADDR and followed through their `next` links by the model's poller on its
// Thread, until the number processed since the last reset equals DMACOUNT (mod 2^16). Copy and
// fill descriptors are executed through the function's DmaPort; a null copy descriptor moves no
// data. After a descriptor with completion_update set, CHANSTS (state active or idle, address of
// the completed descriptor) is written to CHANCMP. A bad descriptor (unknown op: control_err;
// size 0 or above XFERCAP: length_err; misaligned next: next_desc_align_err; unreadable
// descriptor: chain_addr_value_err / next_desc_addr_err), a DMA fault (src_addr_err,
// dest_addr_err) or an unwritable completion address (completion_addr_err) halts the channel:
// CHANERR says why, CHANSTS is halted with the last completed descriptor, and the halted status is
// written to CHANCMP when CHANCTRL.err_completion_en is set. Only a reset restarts a halted
// channel.
//
// Timing. With zero latency the poller is an active poller that processes up to
// descriptors_per_poll per run. With a latency model (fixed per-descriptor time plus size over a
// bandwidth) it is a timed poller and a descriptor completes when its virtual (or real) finish
// time has passed, one after another as on a single engine.
//
// Faults (faults(), FaultPlan from hw-emulation/faults): each descriptor is matched with
// FaultSubject{opcode = descriptor op, queue_id = channel, nsid = 0, lba = dest IOVA,
// block_count = size}. error_status / fatal_status halt before the transfer with CHANERR =
// rule.status (0: read_data_err / chipset_uncorrectable_data_integrity_err); delay adds delay_ns to
// the descriptor; drop_completion skips that descriptor's completion write; corrupt_read flips a
// byte of the destination after the transfer (undetectable by the driver, as on hardware);
// surprise_remove takes the function off the bus; power_cut behaves as a channel reset.
//
// Threads: create, use faults() and destroy on `thread` (the model's poller runs there). Register
// state shared with the driver's Thread (DMACOUNT, pending command, CHANSTS, CHANERR) is atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/ioat/spec/spec.h>
#include <strata/runtime/thread.h>

namespace strata::hwemu::ioat {

// A reset_delay_ns that never ends: a stuck channel whose reset is never applied (CHANCMD keeps
// showing it, nothing is processed) until set_reset_delay_ns() sets a finite delay.
inline constexpr uint64_t kResetNever = UINT64_MAX;

struct ModelConfig {
    uint16_t device_id = strata::ioat::spec::pci_device::skx;  // 0x2021, Skylake-SP CBDMA
    uint8_t version = strata::ioat::spec::ver_3_3;
    uint8_t xfercap_log2 = 20;            // XFERCAP register: 1 MiB per descriptor (0: 4 GiB)
    bool fill = true;                     // DMACAPABILITY.fill
    uint64_t per_descriptor_ns = 0;       // latency model: fixed time per descriptor
    uint64_t bandwidth_bytes_per_us = 0;  // and size / bandwidth (0: unlimited)
    uint64_t poll_period_ns = 1000;       // timed poller period when a latency model is set
    uint32_t descriptors_per_poll = 64;
    uint64_t reset_delay_ns = 0;  // time a CHANCMD reset takes (CHANCMD shows it meanwhile);
                                  // kResetNever: it is never applied
    uint64_t seed = 1;            // the fault plan's Prng
};

struct ModelStats {
    uint64_t descriptors = 0;  // executed (incl. null)
    uint64_t bytes = 0;        // moved or filled
    uint64_t doorbells = 0;    // DMACOUNT writes
    uint64_t completion_writes = 0;
    uint64_t dropped_completions = 0;
    uint64_t halts = 0;
    uint64_t resets = 0;
    uint64_t injected_faults = 0;
    uint64_t corrupted = 0;
};

class ChannelModel final : public PciModel {
public:
    // Adds the function to `bus` at `address` and registers the poller on `thread`. Call on
    // `thread`. Errc::invalid_argument for a bad config (xfercap_log2 1..11 or > 31, version not
    // 3.x), or the bus's error.
    static Result<std::unique_ptr<ChannelModel>> create(PciBus& bus, const env::PciAddress& address,
                                                        ModelConfig config,
                                                        runtime::Thread& thread);
    // On `thread`, after the driver detached: takes the function off the bus.
    ~ChannelModel() override;
    ChannelModel(const ChannelModel&) = delete;
    ChannelModel& operator=(const ChannelModel&) = delete;

    FaultPlan& faults() noexcept { return faults_; }
    EmulatedFunction& function() noexcept { return *fn_; }
    // Counters. Read on `thread`, or while the channel is quiescent (doorbells is exact anytime).
    ModelStats stats() const noexcept {
        ModelStats s = stats_;
        s.doorbells = doorbells_.load(std::memory_order_relaxed);
        return s;
    }
    uint32_t chanerr() const noexcept { return chanerr_.load(std::memory_order_acquire); }
    strata::ioat::spec::ChanState state() const noexcept;
    uint64_t xfercap_bytes() const noexcept { return xfercap_bytes_; }
    // From `thread`: how long a CHANCMD reset takes (a slow or stuck channel; kResetNever: never
    // applied). A reset in progress finishes no later than `ns` from now.
    void set_reset_delay_ns(uint64_t ns) noexcept;

    // PciModel
    uint64_t bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) override;
    void bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes, uint64_t value) override;
    void on_surprise_removal() override;

    static PciFunctionConfig pci_config(const ModelConfig& config);

private:
    ChannelModel(PciBus& bus, env::PciAddress address, ModelConfig config, runtime::Thread& thread);
    static runtime::PollStatus poll(void* ctx);
    static runtime::PollStatus poll_timer(void* ctx);
    void arm_timer(uint64_t due_ns);
    void wake();
    static void on_wake(void* ctx);
    runtime::PollStatus run();
    void apply_command(uint8_t cmd);
    void do_reset();
    void halt(uint32_t err);
    void set_status(strata::ioat::spec::ChanState s);
    bool write_completion(strata::ioat::spec::ChanState s);
    enum class Step { done, idle, halted, wait, removed };
    Step execute_one();
    Status transfer_copy(uint64_t src, uint64_t dst, uint32_t size);
    Status transfer_fill(uint64_t pattern, uint64_t dst, uint32_t size);

    PciBus& bus_;
    env::PciAddress address_;
    ModelConfig config_;
    runtime::Thread& thread_;
    EmulatedFunction* fn_ = nullptr;
    runtime::Poller* poller_ = nullptr;
    runtime::Poller* timer_ = nullptr;  // one-shot timed poller of the latency model
    FaultPlan faults_;
    ModelStats stats_;
    uint64_t xfercap_bytes_ = 0;
    bool latency_ = false;
    uint64_t reset_delay_ns_ = 0;
    uint64_t reset_due_ns_ = 0;  // a delayed reset completes at this time (0: none pending)

    // Written by the driver (any Thread), consumed by the poller.
    std::atomic<uint16_t> dmacount_{0};
    std::atomic<uint8_t> pending_cmd_{0};
    std::atomic<uint64_t> chansts_{0};
    std::atomic<uint32_t> chanerr_{0};
    std::atomic<bool> removed_{false};
    std::atomic<uint64_t> doorbells_{0};  // bar_write runs on the driver's Thread
    // Plain registers: written by the driver only while the channel is idle or halted
    // (CHAINADDR, CHANCMP, CHANCTRL, CHANERRMASK), read by the poller.
    std::atomic<uint64_t> chainaddr_{0};
    std::atomic<uint64_t> chancmp_{0};
    std::atomic<uint16_t> chanctrl_{0};
    std::atomic<uint32_t> chanerrmask_{0};

    // Poller state.
    enum class Run : uint8_t { idle, active, suspended, halted } run_ = Run::idle;
    uint16_t processed_ = 0;            // descriptors processed since reset (mod 2^16)
    bool fetch_from_chainaddr_ = true;  // next fetch is from CHAINADDR rather than cur_next_
    uint64_t cur_next_ = 0;             // next descriptor's IOVA
    uint64_t last_completed_ = 0;       // IOVA of the last completed descriptor
    std::atomic<uint64_t> cdar_{0};
    uint64_t busy_until_ns_ = 0;  // latency model: when the current descriptor finishes
    bool in_progress_ = false;    // a descriptor fetched and waiting for its finish time
    strata::ioat::spec::GenericDescriptor cur_{};
    uint64_t cur_addr_ = 0;
    bool cur_drop_completion_ = false;
    bool cur_corrupt_ = false;
    std::vector<uint8_t> scratch_;
};

}  // namespace strata::hwemu::ioat
