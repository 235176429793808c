// A virtio device as the driver sees it, whatever the transport: negotiated features, config
// space, queues and their notification, and the memory the device can reach.
//
// Transports: virtio-user (user.h: Strata as the vhost-user front end of another process's
// socket). virtio-pci (modern capabilities through env's PciFunction) is planned.
//
// Lifecycle: a transport's open function negotiates features, builds every queue and returns the
// device with DRIVER_OK set; destroying it resets the device. Control calls (config reads) are
// control path; notify() is the data path's one transport call, once per batch. Each queue is
// used by one runtime::Thread at a time (the caller hands them out); the device object is not
// thread-safe otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <strata/base/status.h>
#include <strata/virtio/virtqueue.h>

namespace strata::virtio {

class Device {
public:
    virtual ~Device() = default;

    // "user" or "pci".
    virtual const char* transport_name() const noexcept = 0;
    // The socket path (virtio-user) or PCI address.
    virtual const std::string& address() const noexcept = 0;
    virtual uint32_t device_type() const noexcept = 0;
    virtual uint64_t features() const noexcept = 0;  // negotiated
    // Reads len bytes of the device-specific configuration at offset.
    virtual Result<void> read_config(uint32_t offset, void* out, uint32_t len) = 0;

    virtual uint16_t num_queues() const noexcept = 0;
    virtual Virtqueue& queue(uint16_t index) noexcept = 0;
    // Tells the device queue `index` has new available entries (after Virtqueue::flush
    // returned true). Data path: an eventfd write (virtio-user), an MMIO write (virtio-pci).
    virtual void notify(uint16_t index) noexcept = 0;

    // Per-queue driver memory that the device can reach, queue_extra_bytes() long (what the
    // open options asked for): request headers, status bytes, bounce buffers.
    virtual void* queue_extra(uint16_t index) noexcept = 0;
    virtual size_t queue_extra_bytes() const noexcept = 0;
    // The address the device knows [p, p + len) by, or UINT64_MAX when that range is not all
    // in memory the device can reach (such a buffer must be bounced, never sent).
    virtual uint64_t device_address(const void* p, size_t len) const noexcept = 0;

    // Whether the device is known to be gone (virtio-user: the back end closed its socket or
    // died). Control cadence, never per I/O: it may make a system call. Any OS thread. Once true,
    // stays true; nothing in flight will complete, so the caller stops its queues
    // (Virtqueue::stop) and fails what they held.
    virtual bool gone() noexcept { return false; }

    bool has_feature(unsigned bit) const noexcept { return spec::has_feature(features(), bit); }
};

inline constexpr uint64_t kNoDeviceAddress = UINT64_MAX;

}  // namespace strata::virtio
