// virtio-pci: a virtio PCI function (modern interface, VIRTIO 1.2 section 4.1) driven through
// env's PciFunction, on either env backend (dpdk: a function bound to vfio-pci; sim: a function
// on the Host's emulated bus), giving a virtio Device.
//
// open_pci() claims the function, enables memory space and bus mastering, walks the vendor
// capabilities for the common, notify, ISR and device configuration windows (the first of each
// type, inside its BAR), resets the device, negotiates features (VERSION_1 required; legacy-only
// devices are refused), and sets up each queue in env DMA memory (dma_alloc): rings, indirect
// tables and the caller's per-queue extra bytes, the device given their IOVAs. Data buffers in
// env DMA memory reach the device as they are (device_address() is env::translate, one
// contiguous IOVA segment); anything else gets kNoDeviceAddress. Notification is one 16-bit MMIO
// write per batch to the queue's notify address. The driver polls: no MSI-X vector is set up.
//
// Closing resets the device (confirmed by reading the status back as 0) before the queue memory
// is freed; memory of a device that never confirmed is abandoned (env::dma_abandon), never
// freed under it.
//
// Packed rings: with packed_ring set and VIRTIO_F_RING_PACKED offered, every queue is packed
// (queue_driver / queue_device then point at the event suppression structures).
//
// Planned: hot removal (the function's hot-remove message failing I/O in flight),
// VIRTIO_F_NOTIFICATION_DATA.
#pragma once

#include <cstdint>
#include <memory>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/virtio/device.h>

namespace strata::virtio {

struct PciOptions {
    env::PciAddress address;
    uint32_t device_type = spec::kDeviceTypeBlock;  // refused if the function is another type
    uint16_t num_queues = 1;                        // the device must offer at least this many
    uint16_t queue_size = 256;                      // power of two; lowered to the device's maximum
    uint16_t max_indirect = 64;                     // descriptors per indirect table
    uint64_t device_features = 0;  // device-specific feature bits the driver can use
    size_t queue_extra_bytes = 0;  // per-queue DMA memory for the caller
    bool packed_ring = false;      // negotiate VIRTIO_F_RING_PACKED when the device offers it
};

// Control path, on a runtime::Thread of the Host whose env sees the function. Errors name the
// function and the step: env::claim's (not_found, busy, not_supported), Errc::not_supported for a
// function that is not a virtio device of the expected type, lacks a modern capability or
// VIRTIO_F_VERSION_1, or offers too few queues; Errc::io_error when the device refuses
// FEATURES_OK or does not reset; Errc::no_memory from DMA allocation.
Result<std::unique_ptr<Device>> open_pci(const PciOptions& options);

}  // namespace strata::virtio
