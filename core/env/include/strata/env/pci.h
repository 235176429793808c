// PCI functions: enumerate, claim exclusively, config space, BARs, hot removal.
//
// A claimed function is a PciFunction owned by one runtime::Thread (the driver's). Claims are
// exclusive within the runtime::Host that made them and across processes (a lock file per
// function, held while claimed; the dpdk backend's /var/tmp/strata_pci_lock_<BDF>, the sim
// backend's is per emulated bus, and each Host has its own bus). A Bar is a concrete class: volatile MMIO on a mapped (VFIO) BAR, else a call to the
// emulated function's handler - one predictable branch, no virtual call on the MMIO path.
//
// Hot removal: the backend (vfio request notifier, or the emulated bus's surprise removal) sends
// a message to the Thread chosen with set_hot_remove_target(); the driver fails its outstanding
// I/O there and calls detach(). After removal BAR and config reads return all-ones, as on
// hardware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/assert.h>
#include <strata/base/status.h>
#include <strata/runtime/thread.h>

namespace strata::env {

namespace backend {
class PciFunctionImpl;
struct HostEnv;
}

struct PciAddress {
    uint32_t domain = 0;
    uint8_t bus = 0;
    uint8_t device = 0;    // 0..31
    uint8_t function = 0;  // 0..7

    // "0000:01:00.0" or "01:00.0" (hex), else Errc::invalid_argument naming the text.
    static Result<PciAddress> parse(std::string_view text);
    std::string to_string() const;  // "0000:01:00.0"

    friend bool operator==(const PciAddress&, const PciAddress&) = default;
    friend auto operator<=>(const PciAddress&, const PciAddress&) = default;
};

struct PciDeviceInfo {
    PciAddress address;
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_device_id = 0;
    uint32_t class_code = 0;  // base class << 16 | subclass << 8 | prog-if
    int numa_node = -1;
    bool claimable = true;    // dpdk: bound to vfio-pci; sim: always
};

// Empty fields match anything; class_code is compared under class_mask.
struct PciFilter {
    std::optional<uint16_t> vendor_id;
    std::optional<uint16_t> device_id;
    std::optional<uint32_t> class_code;
    uint32_t class_mask = 0xffffff;
    std::optional<PciAddress> address;

    bool matches(const PciDeviceInfo& info) const noexcept;
};

// Functions the running backend sees from the current Host (sim: that Host's emulated bus),
// sorted by address. Control path.
Result<std::vector<PciDeviceInfo>> enumerate(const PciFilter& filter = {});

// Emulated BARs: the handler of a function on the sim bus (implemented in hw-emulation/pci).
// width_bytes is 1, 2, 4 or 8 (1 and 2 only from drivers of narrow registers); offsets are
// BAR-relative. Called on the Thread that accesses the BAR.
class BarHandler {
public:
    virtual uint64_t bar_read(uint32_t bar, uint64_t offset, uint32_t width_bytes) noexcept = 0;
    virtual void bar_write(uint32_t bar, uint64_t offset, uint32_t width_bytes,
                           uint64_t value) noexcept = 0;

protected:
    ~BarHandler() = default;
};

class Bar {
public:
    Bar() = default;
    // Backends build Bars: exactly one of mmio/handler is non-null for a valid Bar.
    Bar(volatile uint8_t* mmio, BarHandler* handler, uint32_t index, uint64_t size_bytes) noexcept
        : mmio_(mmio), handler_(handler), size_(size_bytes), index_(index) {}

    bool valid() const noexcept { return mmio_ != nullptr || handler_ != nullptr; }
    bool is_mmio() const noexcept { return mmio_ != nullptr; }
    uint32_t index() const noexcept { return index_; }
    uint64_t size_bytes() const noexcept { return size_; }

    // Offsets must be naturally aligned and inside the BAR (programmer invariant, debug-checked).
    // 8- and 16-bit accesses are for registers defined that narrow (virtio-pci's common
    // configuration); a handler then sees width_bytes 1 or 2.
    uint8_t read8(uint64_t offset) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset + 1 <= size_);
        if (mmio_) return *reinterpret_cast<volatile const uint8_t*>(mmio_ + offset);
        return static_cast<uint8_t>(handler_->bar_read(index_, offset, 1));
    }
    uint16_t read16(uint64_t offset) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 2 == 0 && offset + 2 <= size_);
        if (mmio_) return *reinterpret_cast<volatile const uint16_t*>(mmio_ + offset);
        return static_cast<uint16_t>(handler_->bar_read(index_, offset, 2));
    }
    void write8(uint64_t offset, uint8_t value) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset + 1 <= size_);
        if (mmio_) {
            *reinterpret_cast<volatile uint8_t*>(mmio_ + offset) = value;
            return;
        }
        handler_->bar_write(index_, offset, 1, value);
    }
    void write16(uint64_t offset, uint16_t value) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 2 == 0 && offset + 2 <= size_);
        if (mmio_) {
            *reinterpret_cast<volatile uint16_t*>(mmio_ + offset) = value;
            return;
        }
        handler_->bar_write(index_, offset, 2, value);
    }
    uint32_t read32(uint64_t offset) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 4 == 0 && offset + 4 <= size_);
        if (mmio_) return *reinterpret_cast<volatile const uint32_t*>(mmio_ + offset);
        return static_cast<uint32_t>(handler_->bar_read(index_, offset, 4));
    }
    uint64_t read64(uint64_t offset) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 8 == 0 && offset + 8 <= size_);
        if (mmio_) return *reinterpret_cast<volatile const uint64_t*>(mmio_ + offset);
        return handler_->bar_read(index_, offset, 8);
    }
    void write32(uint64_t offset, uint32_t value) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 4 == 0 && offset + 4 <= size_);
        if (mmio_) {
            *reinterpret_cast<volatile uint32_t*>(mmio_ + offset) = value;
            return;
        }
        handler_->bar_write(index_, offset, 4, value);
    }
    void write64(uint64_t offset, uint64_t value) const noexcept {
        STRATA_DEBUG_ASSERT(valid() && offset % 8 == 0 && offset + 8 <= size_);
        if (mmio_) {
            *reinterpret_cast<volatile uint64_t*>(mmio_ + offset) = value;
            return;
        }
        handler_->bar_write(index_, offset, 8, value);
    }

private:
    volatile uint8_t* mmio_ = nullptr;
    BarHandler* handler_ = nullptr;
    uint64_t size_ = 0;
    uint32_t index_ = 0;
};

class PciFunction {
public:
    ~PciFunction();  // detaches if still attached
    PciFunction(const PciFunction&) = delete;
    PciFunction& operator=(const PciFunction&) = delete;

    const PciDeviceInfo& info() const noexcept { return info_; }
    const PciAddress& address() const noexcept { return info_.address; }
    bool attached() const noexcept { return impl_ != nullptr; }
    // A hot-remove notification has arrived (or the backend knows the function is gone).
    bool removed() const noexcept;

    // Config space (offset + width <= 4096, naturally aligned): Errc::out_of_range /
    // invalid_argument for bad offsets, Errc::device_removed once detached. A removed but not yet
    // detached function reads all-ones.
    Result<uint8_t> config_read8(uint32_t offset) const;
    Result<uint16_t> config_read16(uint32_t offset) const;
    Result<uint32_t> config_read32(uint32_t offset) const;
    Status config_write8(uint32_t offset, uint8_t value);
    Status config_write16(uint32_t offset, uint16_t value);
    Status config_write32(uint32_t offset, uint32_t value);

    // BAR 0..5. Errc::not_found for an absent or I/O-port BAR, Errc::device_removed once detached.
    // The Bar stays usable until detach().
    Result<Bar> map_bar(uint32_t index);

    // Hot removal is delivered once, as the message fn(ctx) on `thread` (the owner).
    void set_hot_remove_target(runtime::Thread* thread, runtime::MsgFn fn, void* ctx) noexcept;

    // Releases the function (BARs unmapped, claim and lock file released). Idempotent.
    Result<void> detach();

private:
    friend Result<std::unique_ptr<PciFunction>> claim(const PciAddress& address);
    PciFunction(PciDeviceInfo info, std::unique_ptr<backend::PciFunctionImpl> impl,
                backend::HostEnv* host_env);
    Status config_read(uint32_t offset, void* buf, uint32_t len) const;
    Status config_write(uint32_t offset, const void* buf, uint32_t len);

    PciDeviceInfo info_;
    std::unique_ptr<backend::PciFunctionImpl> impl_;
    backend::HostEnv* host_env_;  // the Host it was claimed in (its claim bookkeeping)
};

// Claims one function exclusively, in the current runtime::Host: the functions a Host sees are
// its own (under the sim backend, its emulated bus), and a claim is exclusive within that Host
// and, through the backend's lock file, across processes (real functions: also across Hosts).
// Errors: not_found (no such function), busy (claimed in this Host or by another process: the
// message says which), and the backend's own (not_supported for a function not bound to vfio-pci,
// permission_denied, io_error). The function must be detached before its Host is destroyed.
Result<std::unique_ptr<PciFunction>> claim(const PciAddress& address);

}  // namespace strata::env
