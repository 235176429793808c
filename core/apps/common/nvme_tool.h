// Pieces shared by strata-nvme-identify and strata-nvme-perf: the controller selection
// (-r transport id or BDF), the emulated controllers of the sim environment (--emulate,
// --latency) and a small driver harness that runs control-path work on a Thread of either
// scheduler and waits for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/task.h>

namespace strata::apps {

// NVMe functions carry PCI class 01h/08h/02h (mass storage, NVM, NVMe I/O controller).
inline constexpr uint32_t kNvmeClassCode = 0x010802;
// Where the sim environment puts its first emulated controller (the next ones follow on
// device 1, 2, ... of the same bus).
inline constexpr env::PciAddress kFirstEmulatedAddress{0, 0x01, 0x00, 0};

// "1G", "256M", "4k", "4096", "1GiB" -> bytes (binary units). Errors name the text.
Result<uint64_t> parse_size(std::string_view text);
// A duration: "10us", "1.5ms", "500ns", "2s", or a bare number of microseconds.
Result<uint64_t> parse_duration_ns(std::string_view text);
// "trtype:PCIe traddr:0000:01:00.0" (SPDK's transport id), "traddr=..." or a bare BDF.
Result<env::PciAddress> parse_transport_id(std::string_view text);

// --emulate: controllers separated by ';', each a comma-separated list of namespaces
// "ns=1:size=1G:bs=512,ns=2:size=256M:bs=4096" (bs 512 or 4096; size a multiple of bs;
// file=PATH for a sparse-file backing). Empty: one controller, one 1 GiB 512-byte namespace.
Result<std::vector<std::vector<hwemu::nvme::NamespaceConfig>>> parse_emulate(std::string_view spec);
// --latency: "fixed:10us", "uniform:5us:20us", "exp:80us" or a bare duration (fixed), for
// every NVM opcode, or "read=...,write=..." per opcode (read, write, flush, compare,
// write_zeroes, dsm).
Result<std::map<uint8_t, hwemu::nvme::LatencySpec>> parse_latency(std::string_view spec);

// Runs control-path work on Threads of a SimScheduler (stepping it from the caller) or of a
// started RealScheduler (waiting for the reactors), so the tools share one code path.
class Harness {
public:
    explicit Harness(runtime::Scheduler& sched);
    runtime::Scheduler& scheduler() noexcept { return sched_; }
    runtime::SimScheduler* sim() noexcept { return sim_; }

    // Waits until pred() holds or timeout_ns passes (virtual time under the sim).
    bool wait(const std::function<bool()>& pred, uint64_t timeout_ns);
    // Runs fn on `t` and waits for it.
    bool on(runtime::Thread& t, const std::function<void()>& fn,
            uint64_t timeout_ns = 30 * runtime::kNsPerSec);
    template <class T>
    std::optional<T> run(runtime::Thread& t, runtime::Task<T> task,
                         uint64_t timeout_ns = 60 * runtime::kNsPerSec) {
        // Shared with the callback: a task that outlives the wait must not write to our stack.
        auto out = std::make_shared<std::optional<T>>();
        auto done = std::make_shared<std::atomic<bool>>(false);
        runtime::spawn(t, std::move(task), [out, done](T v) {
            out->emplace(std::move(v));
            done->store(true);
        });
        if (!wait([&] { return done->load(); }, timeout_ns)) return std::nullopt;
        return std::move(*out);
    }

private:
    runtime::Scheduler& sched_;
    runtime::SimScheduler* sim_ = nullptr;
};

// The sim environment's emulated controllers: a PCI bus and one model per --emulate entry,
// created and destroyed on `model_thread`.
class EmulatedControllers {
public:
    EmulatedControllers(Harness& h, runtime::Thread& model_thread) : h_(h), thread_(model_thread) {}
    ~EmulatedControllers();  // destroys the models on their Thread, then the bus
    Result<void> create(const std::vector<hwemu::nvme::ControllerConfig>& configs);
    void set_zero_latency(bool on);
    const std::vector<env::PciAddress>& addresses() const noexcept { return addresses_; }
    std::vector<hwemu::nvme::Controller::Stats> stats() const;
    void destroy();

private:
    Harness& h_;
    runtime::Thread& thread_;
    std::unique_ptr<hwemu::PciBus> bus_;
    std::vector<std::unique_ptr<hwemu::nvme::Controller>> models_;
    std::vector<env::PciAddress> addresses_;
};

// The NVMe functions the running env backend sees (class 0x010802), or just `only`.
Result<std::vector<env::PciAddress>> nvme_functions(const std::optional<env::PciAddress>& only);

}  // namespace strata::apps
