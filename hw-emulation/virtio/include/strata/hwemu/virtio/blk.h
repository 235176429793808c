// A virtio-blk PCI function (modern interface only, device 1af4:1042) on the sim backend's
// emulated bus, so core/virtio's virtio-pci driver runs under the simulator too.
//
// BAR0 (16 KiB, memory): common configuration at 0x0000, ISR at 0x1000, device configuration
// (struct virtio_blk_config) at 0x2000, notify at 0x3000 (notify_off_multiplier 4, queue i's
// notify_off = i), each announced by a vendor capability as VIRTIO 1.2 section 4.1.4 lays out.
// Registers are accessed at their natural width; 64-bit queue addresses as two 32-bit halves.
// Offered: VERSION_1, RING_INDIRECT_DESC, BLK_SIZE, FLUSH, SEG_MAX. Requests IN, OUT, FLUSH;
// anything else completes with VIRTIO_BLK_S_UNSUPP.
//
// Queues are processed on the model's poller (its Thread), as hardware does after a notify: the
// avail ring, descriptors (direct and indirect) and data reach host memory only through the
// function's DmaPort, so a bad IOVA is a counted DMA fault. Device input from the driver is
// validated like hardware would (an index out of range, a chain that loops, a bad indirect
// table): the device sets DEVICE_NEEDS_RESET and stops processing. Writing 0 to device_status
// resets everything.
//
// Fault hooks (set on the model's Thread): `corrupt_used_id` completes the next request with a
// used-ring id out of range; `hold_requests` leaves requests unprocessed (in flight).
//
// Not in this walker: core/vhost's device-side walker (vhost/virtqueue.h) reads guest memory
// through host pointers (gpa_to_hva), while a model may only copy through its DmaPort (faults
// counted), and hw-emulation depends on base, runtime and env only; see the module README.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/runtime/thread.h>

namespace strata::hwemu {
class PciBus;
class EmulatedFunction;
}  // namespace strata::hwemu

namespace strata::hwemu::virtio {

struct BlkConfig {
    uint64_t capacity_bytes = 1 << 20;
    uint32_t block_size = 512;
    uint16_t num_queues = 1;
    uint16_t queue_size_max = 256;
    uint32_t seg_max = 64;
};

class BlkModel {
public:
    // Adds the function at `address` on `bus`; its poller runs on `thread` (create it there).
    static Result<std::unique_ptr<BlkModel>> create(PciBus& bus, const env::PciAddress& address,
                                                    const BlkConfig& config,
                                                    runtime::Thread& thread);
    virtual ~BlkModel() = default;

    virtual std::vector<uint8_t>& storage() noexcept = 0;
    virtual uint8_t device_status() const noexcept = 0;
    virtual uint64_t requests_done() const noexcept = 0;
    virtual uint64_t resets() const noexcept = 0;
    virtual EmulatedFunction& function() noexcept = 0;

    // Fault hooks.
    bool corrupt_used_id = false;
    bool hold_requests = false;
};

}  // namespace strata::hwemu::virtio
