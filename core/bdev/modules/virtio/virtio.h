// bdev modules virtio_blk and virtio_scsi: bdevs on virtio devices driven by
// core/virtio, with SPDK's RPCs bdev_virtio_attach_controller / _detach_controller /
// bdev_virtio_scsi_get_devices / bdev_virtio_blk_set_hotplug.
//
// virtio_blk: one bdev per controller, named as the controller. Each Thread doing I/O takes one
// of the controller's vq_count queues for its channel (a Thread beyond vq_count gets no channel:
// an error naming vq_count); submit() writes the request into the ring, the channel's poller
// publishes each batch with one notify and reaps the used ring. Request headers, status bytes
// and bounce buffers are per-slot in the queue's shared memory (no allocation per I/O). A data
// buffer the device cannot reach (virtio-user: outside the memory shared with the back end) is
// copied through its slot's bounce buffer, never sent as it is. Reads, writes and flush (when
// VIRTIO_BLK_F_FLUSH is offered); write zeroes is emulated by the bdev layer.
//
// Transports: "user" (virtio-user, a vhost-user back end's socket; buffers outside the shared
// memory are bounced) and "pci" (a virtio PCI function through env; data buffers must be env DMA
// memory, sent without a copy: the bdev says needs_dma_memory, so the layer bounces others).
//
// virtio_scsi (virtio_scsi.cpp, as SPDK's bdev_virtio_scsi.c): attach scans LUN 0 of targets
// 0..max_target (INQUIRY, then READ CAPACITY(16) or (10)) synchronously on the first request
// queue (virtio index 2; 0 is control, 1 event); each direct-access disk becomes a bdev
// "<name>t<target>". vq_count counts request queues; each I/O Thread's channel takes one, shared
// by every disk of the controller. READ(16)/WRITE(16), SYNCHRONIZE CACHE(10), UNMAP (when READ
// CAPACITY(16) reports LBPME); reset sends LOGICAL UNIT RESET on the control queue from the
// Thread that attached. Status and sense map to bdev errors (scsi_reply.h). Detach removes every
// disk; the controller (and its device) goes with its last disk.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct VirtioAttachOptions {
    std::string name;
    std::string trtype = "user";   // "user" | "pci"
    std::string traddr;            // socket path (user) or PCI address (pci)
    std::string dev_type = "blk";  // "blk" | "scsi"
    uint32_t vq_count = 1;
    uint32_t vq_size = 512;
    bool packed_ring = false;  // Strata-specific: use packed virtqueues when the device offers them
};

extern const Module kVirtioBlkModule;
extern const Module kVirtioScsiModule;

// Control path, on a Thread (blocking socket handshake for "user"). Returns the bdev names.
Result<std::vector<std::string>> virtio_attach(const VirtioAttachOptions& options);
void virtio_detach(const std::string& name, std::function<void(Result<void>)> done);

// virtio_scsi (virtio_scsi.cpp), reached through virtio_attach / virtio_detach.
Result<std::vector<std::string>> virtio_scsi_attach(const VirtioAttachOptions& options);
bool virtio_scsi_exists(const std::string& name);
// false: no such controller (done not called).
bool virtio_scsi_detach(const std::string& name, std::function<void(Result<void>)> done);
// bdev_virtio_scsi_get_devices: [{"name", "virtio": {vq_count, vq_size, type, socket|pci_address}}]
nlohmann::json virtio_scsi_devices();

}  // namespace strata::bdev
