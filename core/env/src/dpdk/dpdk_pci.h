// PCI functions through DPDK's PCI bus, for the dpdk env backend (private to core/env).
//
// Strata registers one rte_pci_driver ("strata") with RTE_PCI_DRV_NEED_MAPPING after EAL is up,
// so EAL's start-up probe never touches a device. claim() then attaches exactly one function:
//   1. the BDF must be in EalOptions::allowed_pci when that list is not empty;
//   2. a per-function lock file /var/tmp/strata_pci_lock_<BDF> (fcntl write lock, released when
//      the process exits, however it exits) keeps a second process out, and names the holder;
//   3. rte_dev_probe(BDF) rescans the bus and probes the function with the strata driver, which
//      accepts only the function being claimed; DPDK's vfio code then opens the IOMMU group, adds
//      it to the default container (all DPDK memory is DMA-mapped there) and mmaps the BARs
//      (rte_pci_device::mem_resource[i].addr).
// Config space goes through rte_pci_read_config / rte_pci_write_config (pread/pwrite on the
// vfio region). detach() is rte_dev_remove(). Hot removal: vfio's request notifier makes DPDK run
// the device-event callbacks (RTE_DEV_EVENT_REMOVE) on its interrupt thread; the handler set with
// set_remove_handler() is called there and must only post a message to the owning Thread.
//
// Ownership: a DpdkPciDevice is owned by one Thread (the env's PciFunction); claim/detach are
// control-path calls. Only functions bound to vfio-pci are supported (uio has no IOMMU and no
// request notifier).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/runtime/thread.h>

struct rte_pci_device;

namespace strata::env::dpdk {

struct PciFunctionDesc {
    std::string bdf;  // canonical "0000:01:00.0"
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_device_id = 0;
    uint32_t class_code = 0;  // base class << 16 | subclass << 8 | prog-if
    int numa_node = -1;
    std::string kernel_driver;  // from sysfs: "vfio-pci", "nvme", "" when unbound
    bool vfio = false;          // DPDK sees it bound to vfio-pci: claimable
};

// Canonical "DDDD:BB:DD.F" form of a PCI address ("01:00.0" is accepted too), or
// Errc::invalid_argument.
Result<std::string> canonical_bdf(std::string_view bdf);

// Functions on DPDK's PCI bus (after a rescan). vfio_only: just the claimable ones.
// Errc::not_supported when EAL is not up or runs with no_pci.
Result<std::vector<PciFunctionDesc>> pci_list(bool vfio_only);

// User memory for device DMA. Every vfio function shares DPDK's default container, so a region
// is mapped there once: at registration when a function is attached, else at the next claim.
// DPDK's own memory (rte_malloc) is mapped by DPDK itself. Control path.
Result<void> vfio_register_region(void* vaddr, uint64_t iova, size_t len);
Result<void> vfio_unregister_region(void* vaddr);

// The per-function lock: an fcntl write lock on <dir>/strata_pci_lock_<bdf> (the file holds the
// owner's pid). Returns the fd that holds the lock (closing it releases it), or Errc::busy naming
// the process that holds it. claim() uses dir "/var/tmp".
Result<int> lock_pci_function(const std::string& bdf, const char* dir);

// The claim's error for rte_dev_probe's return code rc (< 0) and DPDK's error log lines of the
// probe (eal_take_error_lines): Errc::not_found for -ENODEV, busy for -EEXIST, io_error
// otherwise, quoting DPDK, with a hint. DPDK's PCI bus fails with a bare -1: not reported as EPERM.
Error attach_error(const std::string& bdf, int rc, std::string_view eal_errors);

// Functions claimed by this process.
size_t claimed_count();

using RemoveHandler = void (*)(void* ctx);

class DpdkPciDevice {
public:
    struct BarInfo {
        volatile uint8_t* addr = nullptr;  // MMIO mapping, nullptr if the BAR is not memory
        uint64_t size_bytes = 0;
        uint64_t phys_addr = 0;
    };

    // Attach one function (see the header comment). Errors name the function and the fix:
    // not_found (no such function), busy (claimed by this or another process, with its pid),
    // permission_denied (not in allowed_pci), not_supported (not bound to vfio-pci, no_pci,
    // EAL not up), io_error (DPDK's probe failed; its last error line is quoted).
    static Result<std::unique_ptr<DpdkPciDevice>> claim(std::string_view bdf);

    ~DpdkPciDevice();  // detaches if still attached
    DpdkPciDevice(const DpdkPciDevice&) = delete;
    DpdkPciDevice& operator=(const DpdkPciDevice&) = delete;

    const PciFunctionDesc& desc() const noexcept { return desc_; }
    const std::string& bdf() const noexcept { return desc_.bdf; }
    bool attached() const noexcept { return dev_ != nullptr; }
    bool removed() const noexcept;  // a hot-remove notification arrived

    // index 0..5; BARs of size 0 (absent) or I/O-port BARs report addr == nullptr.
    Result<BarInfo> bar(uint32_t index) const;

    // Config space (offset + len <= 4096). Errc::device_removed once detached.
    Status read_config(void* buf, size_t len, uint32_t offset) const noexcept;
    Status write_config(const void* buf, size_t len, uint32_t offset) noexcept;

    // Hot-remove notification, delivered once: as a message fn(ctx) to `owner` (the Thread that
    // owns the function; Thread::send from DPDK's interrupt thread). The driver then fails its
    // outstanding I/O and calls detach() on that Thread.
    void set_remove_target(runtime::Thread* owner, runtime::MsgFn fn, void* ctx) noexcept;
    // Lower level: called directly on DPDK's interrupt thread (must only hand off).
    void set_remove_handler(RemoveHandler fn, void* ctx) noexcept;

    // Testing only: an unattached device whose hot-remove callback is registered with DPDK under
    // `name`, and a way to make DPDK raise RTE_DEV_EVENT_REMOVE for a name (as vfio's request
    // notifier does), so the delivery path runs without hardware.
    static std::unique_ptr<DpdkPciDevice> unattached_for_testing(const std::string& name);
    static void raise_remove_for_testing(const std::string& name);

    // rte_dev_remove: unmaps the BARs and releases the vfio device and the lock file.
    Result<void> detach();

private:
    struct Impl;
    explicit DpdkPciDevice(std::unique_ptr<Impl> impl);

    std::unique_ptr<Impl> impl_;
    rte_pci_device* dev_ = nullptr;
    PciFunctionDesc desc_;
};

}  // namespace strata::env::dpdk
