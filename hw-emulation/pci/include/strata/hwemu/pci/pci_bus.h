// The emulated PCI bus of the sim backend.
//
// A device model registers a function: its config space (ids, class, BARs, capability list) and a
// PciModel whose bar_read/bar_write implement the registers exactly. Drivers reach the function
// through env::claim() like real hardware: the Bar they map calls the model (no MMIO), config
// space follows PCI rules (read-only ids, BAR sizing by writing all-ones, writable command
// register and capability bodies). Models reach host memory only through their DmaPort.
//
// Surprise removal: surprise_remove() takes a function off the bus; the claimant's hot-remove
// message is sent to the Thread it chose, the model is told, and from then on BAR and config reads
// return all-ones, writes are dropped and the model's DMA fails with Errc::device_removed.
//
// Ownership and threads: a PciBus is created by the test/World (control path) and attaches itself
// for its lifetime to the sim backend of one runtime::Host (the current one unless named; one bus
// per Host): env::enumerate/claim in that Host reach it, and its devices' DMA goes through that
// Host's IOVA map. Two Hosts (two Apps or Worlds) each have their own bus, and may have functions
// at the same address. The bus must go before its Host. Model callbacks run on the Thread that
// touches the BAR; models hand work to their own poller, as hardware would.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/backend.h>
#include <strata/env/iova_map.h>
#include <strata/env/pci.h>
#include <strata/hwemu/pci/dma_port.h>
#include <strata/runtime/host.h>

namespace strata::hwemu {

struct BarConfig {
    uint64_t size_bytes = 0;  // 0: absent; else a power of two >= 16
    bool is_64bit = false;    // takes the next BAR slot as the upper half
    bool prefetchable = false;
};

struct PciCapability {
    uint8_t id = 0;             // e.g. 0x10 PCI Express, 0x11 MSI-X, 0x05 MSI
    std::vector<uint8_t> body;  // bytes after the id/next header (writable by the driver)
};

struct PciFunctionConfig {
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_device_id = 0;
    uint32_t class_code = 0;  // base << 16 | sub << 8 | prog-if
    uint8_t revision_id = 0;
    uint8_t interrupt_pin = 0;
    std::array<BarConfig, 6> bars{};
    std::vector<PciCapability> capabilities;  // laid out from 0x40, dword aligned
    std::string name;                          // for logs; default "vvvv:dddd"
};

// Implemented by device models. BAR offsets are in range and naturally aligned (checked by the
// bus); width_bytes is 1, 2, 4 or 8 (1 and 2: narrow registers such as virtio-pci's).
class PciModel {
public:
    virtual ~PciModel() = default;
    virtual uint64_t bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) = 0;
    virtual void bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes, uint64_t value) = 0;
    virtual void on_surprise_removal() {}
};

class PciBus;

class EmulatedFunction final : public env::BarHandler {
public:
    const env::PciAddress& address() const noexcept { return address_; }
    const PciFunctionConfig& config() const noexcept { return config_; }
    const std::string& name() const noexcept { return name_; }
    DmaPort& dma() noexcept { return dma_; }
    uint64_t dma_fault_count() const noexcept { return dma_.fault_count(); }
    bool removed() const noexcept { return removed_.load(std::memory_order_acquire); }
    bool claimed() const noexcept { return claimed_; }

    // Config space as the driver sees it (all-ones once removed).
    void config_read(uint32_t offset, void* buf, uint32_t len) const noexcept;
    void config_write(uint32_t offset, const void* buf, uint32_t len) noexcept;
    // The model's view: raw bytes, no masking (e.g. to update a status register).
    uint8_t* raw_config() noexcept { return config_space_.data(); }
    uint64_t bar_address(uint32_t index) const noexcept;  // what the driver programmed

    uint64_t bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) noexcept override;
    void bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes,
                   uint64_t value) noexcept override;

    EmulatedFunction(PciBus& bus, env::PciAddress address, PciFunctionConfig config,
                     PciModel* model);

private:
    friend class PciBus;
    friend class SimClaim;
    void remove();

    PciBus& bus_;
    env::PciAddress address_;
    PciFunctionConfig config_;
    std::string name_;
    PciModel* model_;
    DmaPort dma_;
    std::array<uint8_t, 4096> config_space_{};
    std::array<uint8_t, 4096> writable_{};  // per-byte write mask
    std::atomic<bool> removed_{false};  // read on every BAR access, set by surprise_remove
    bool claimed_ = false;
    // Hot-remove delivery (set by the claimant).
    runtime::Thread* remove_thread_ = nullptr;
    runtime::MsgFn remove_fn_ = nullptr;
    void* remove_ctx_ = nullptr;
    bool remove_delivered_ = false;
    void deliver_remove();
};

class PciBus final : private env::backend::SimPciProvider {
public:
    // Attaches to the sim backend of `host` (asserts it has no other bus).
    explicit PciBus(runtime::Host& host = runtime::current_host());
    ~PciBus();  // detaches; every function must be unclaimed (asserted)
    PciBus(const PciBus&) = delete;
    PciBus& operator=(const PciBus&) = delete;

    // Errc::already_exists for a taken address, Errc::invalid_argument for a bad BAR or
    // capability layout (the message says which). The model must outlive the function.
    Result<EmulatedFunction*> add_function(const env::PciAddress& address,
                                           const PciFunctionConfig& config, PciModel* model);
    // Surprise removal (see the header comment). Errc::not_found if not on the bus.
    Result<void> surprise_remove(const env::PciAddress& address);
    // The same for a model that goes away (its destructor): routine, and logged so, when no
    // driver holds the function; a claimant still gets its hot-remove message.
    Result<void> remove_function(const env::PciAddress& address);

    EmulatedFunction* find(const env::PciAddress& address) noexcept;
    runtime::Host& host() const noexcept { return host_; }
    // The IOVA map its devices' DMA goes through (its Host's).
    const env::backend::IovaMap& iova_map() const noexcept { return map_; }
    uint64_t dma_fault_count() const noexcept;  // all functions, removed ones included
    // This bus's cross-process lock file for a function (sim claims are per bus instance).
    std::string lock_path(const env::PciAddress& address) const;

private:
    friend class EmulatedFunction;
    friend class SimClaim;
    Result<std::vector<env::PciDeviceInfo>> list() override;
    Result<std::unique_ptr<env::backend::PciFunctionImpl>> claim(
        const env::PciAddress& address) override;
    Result<void> take_off(const env::PciAddress& address, bool orderly);

    mutable std::mutex mu_;
    std::map<env::PciAddress, std::shared_ptr<EmulatedFunction>> functions_;
    std::vector<std::shared_ptr<EmulatedFunction>> removed_;
    runtime::Host& host_;
    const env::backend::IovaMap& map_;
    std::string id_;  // "<pid>_<n>", fixed at construction (a forked child shares it)
};

}  // namespace strata::hwemu
