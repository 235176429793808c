// vhost-blk: a virtio-blk Device over a bdev. IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES
// go to the bdev with iovecs pointing into guest memory (no copy); the config space comes from
// the bdev (capacity, blk_size, seg_max, discard and write-zeroes limits, num_queues, RO).
// Each started queue gets a preallocated request pool, one slot per descriptor head: nothing
// is allocated, locked or called into the kernel per request. A hot-removed bdev fails new
// requests with IOERR and is closed once its requests completed.
//
// Owning Thread: the controller's (the bdev is opened there; events arrive there).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <strata/base/status.h>
#include <strata/vhost/session.h>

namespace strata::vhost {

inline constexpr uint32_t kBlkMaxSegments = 126;  // seg_max: data segments per request

struct BlkOptions {
    std::string bdev_name;
    bool readonly = false;
    bool packed_ring = false;  // offer VIRTIO_F_RING_PACKED (SPDK's packed_ring)
    uint16_t num_queues = kMaxQueues;
    // Runs (on the controller's Thread) when the bdev is hot-removed.
    std::function<void()> on_removed;
};

class BlkDevice;
// Opens the bdev on the calling Thread.
Result<std::unique_ptr<Device>> create_blk_device(const BlkOptions& options);
// The bdev's name, or "" once it was hot-removed; readonly as created.
std::string blk_bdev_name(Device& d);
bool blk_readonly(Device& d);

}  // namespace strata::vhost
