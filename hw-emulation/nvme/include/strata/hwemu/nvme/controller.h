// Controller: a register-accurate NVMe controller model on the emulated PCI bus.
//
// BAR0 holds the NVMe register file (CAP, VS, INTMS/INTMC, CC, CSTS, AQA, ASQ, ACQ) and the
// doorbells at 0x1000 + (2y [+1]) * (4 << CAP.DSTRD). As on hardware, a BAR write only records
// (doorbells are atomics) and arms the model; the model's pollers on its Thread do all the work:
// the enable/disable/shutdown handshakes (in virtual time under the sim), command fetch with
// round-robin arbitration, admin and NVM command execution, and completion posting. Every host
// memory access goes through the function's DmaPort, so a bad IOVA is a counted DMA fault and an
// error completion, never a crash. Device input (register values, SQEs, PRP lists, SGLs) is
// never asserted on: it gets the status the NVMe specification names and a counter.
//
// Namespaces sit on hw-emulation/media's CachedMedia (RAM or a sparse file) behind a volatile
// write cache honoured by Flush, FUA and the Volatile Write Cache feature. Completions are due at
// now + a per-opcode latency and are delivered by a timed poller; a FaultPlan (hw-emulation/faults)
// can fail, delay, drop or corrupt matched commands, raise controller fatal status, surprise-remove
// the function or cut power. See docs/design/nvme-model.md.
//
// Threads: create(), destruction and every method below run on `thread` (the model's Thread;
// tests: SimFixture::on). bar_read/bar_write may run on any Thread on any OS thread (the
// driver's): doorbells and registers are atomics; a CQE is written with its first 12 bytes first
// and then dword 3 (status + phase) as one 32-bit release store, so a driver that acquire-loads
// dword 3 sees a complete entry. stats() may be read from anywhere.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/thread.h>

namespace strata::hwemu {
class FaultPlan;
}

namespace strata::hwemu::nvme {

struct NamespaceConfig {
    uint32_t nsid = 1;                // 1..ControllerConfig::max_namespaces
    uint64_t num_blocks = 0;          // 0: 1 GiB worth of blocks
    uint32_t block_size_bytes = 512;  // 512 or 4096
    std::string backing_file;         // empty: RAM (sparse); else a sparse file (created)
    // Identifiers the namespace reports (Identify Namespace EUI64 and NGUID, the CNS 03h
    // descriptor list), stable ones derived from the serial number and nsid. One turned off
    // reads as zero and is left out of the descriptor list, like a device without it.
    bool report_eui64 = true;
    bool report_nguid = true;
    bool report_uuid = true;
};

// Latency of one command: fixed a_ns; uniform in [a_ns, b_ns]; exponential with mean a_ns.
struct LatencySpec {
    enum class Kind { fixed, uniform, exponential } kind = Kind::fixed;
    uint64_t a_ns = 0, b_ns = 0;
};

struct ControllerConfig {
    std::string serial = "STRATA00000001", model = "Strata Emulated NVMe Controller",
                firmware = "1.0";
    uint16_t vendor_id = 0x1b36, device_id = 0x0010;  // QEMU's NVMe ids, class 0x010802
    uint32_t max_queue_entries = 1024;                // CAP.MQES + 1 (2..65536)
    uint16_t max_io_queues = 64;                      // 1..1024
    uint8_t mdts = 5;                                 // max transfer 2^mdts * 4 KiB; 0: no limit
    uint8_t doorbell_stride = 0;                      // CAP.DSTRD (0..15)
    uint8_t timeout_500ms = 20;                       // CAP.TO
    uint64_t enable_delay_ns = 0;               // virtual time from CC.EN=1 to CSTS.RDY=1 (and for
                                                // disable and shutdown)
    bool sgl = false;                           // advertise and accept SGLs for NVM commands
    bool volatile_write_cache = true;           // a volatile write cache is present (VWC)
    std::vector<NamespaceConfig> namespaces;    // default: one 1 GiB 512-byte namespace
    std::map<uint8_t, LatencySpec> io_latency;  // per NVM opcode; absent: zero latency
    uint64_t seed = 1;                          // latency draws, torn writes, fault plan
    uint32_t max_namespaces = 256;              // Identify Controller NN
};

// The PCI function the controller registers (ids, class 0x010802, BAR0 sized for the doorbells).
PciFunctionConfig pci_function_config(const ControllerConfig& config);

class ControllerImpl;

class Controller final : public PciModel {
public:
    // Registers the function on `bus` at `address` and the model's pollers on `thread`. Call on
    // `thread`. Errors: invalid_argument for a bad config (the message names the field),
    // already_exists for a taken address, the media's own errors for a backing file.
    static Result<std::unique_ptr<Controller>> create(PciBus& bus, const env::PciAddress& address,
                                                      ControllerConfig config,
                                                      runtime::Thread& thread);
    // On `thread`, after the driver detached: unregisters the pollers and takes the function off
    // the bus (it then reads as removed).
    ~Controller() override;
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    FaultPlan& faults();  // from `thread` only

    // Namespace management from the side (as another controller of the subsystem would): raises
    // a namespace-attribute-changed AEN and records the NSID in the Changed Namespace List log.
    Result<void> add_namespace(NamespaceConfig config);
    Result<void> remove_namespace(uint32_t nsid);

    // Power loss: every namespace's write cache is lost (torn: lost writes keep a random prefix
    // of their sectors), in-flight commands vanish without completion, and the controller is back
    // in its reset state (CC = 0, CSTS.RDY = 0, no queues), as after power comes back.
    void power_cut(bool torn);

    // Ignore io_latency (the driver-only benchmark mode); fault delays still apply.
    void set_zero_latency(bool on);

    struct Stats {
        uint64_t commands = 0;  // every command fetched (admin + I/O)
        uint64_t admin_commands = 0;
        uint64_t completions = 0;  // CQEs posted
        uint64_t doorbell_writes = 0;
        uint64_t dropped_completions = 0;  // drop_completion faults
        uint64_t injected_errors = 0;      // error_status faults
        uint64_t invalid_doorbells = 0;    // nonexistent queue or value beyond the queue size
        uint64_t dma_faults = 0;           // the function's DMA fault counter
        uint64_t held_completions = 0;     // completions that waited for CQ room
    };
    Stats stats() const;

    EmulatedFunction& function();
    const env::PciAddress& address() const;
    const ControllerConfig& config() const;

    // PciModel (called by the bus on the accessing Thread).
    uint64_t bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) override;
    void bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes, uint64_t value) override;
    void on_surprise_removal() override;

private:
    Controller();
    std::unique_ptr<ControllerImpl> impl_;
};

}  // namespace strata::hwemu::nvme
