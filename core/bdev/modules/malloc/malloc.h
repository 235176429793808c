// bdev_malloc: a RAM bdev (DMA memory, so NVMe-oF and vhost can hand its buffers to devices).
#pragma once

#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct MallocOptions {
    std::string name;
    uint64_t num_blocks = 0;
    uint32_t block_size = 512;
    std::string uuid;  // empty: generated
    uint32_t optimal_io_boundary = 0;
};

extern const Module kMallocModule;
Result<Bdev*> malloc_create(const MallocOptions& options);
// Unregisters; done runs on the calling Thread.
void malloc_delete(const std::string& name, std::function<void(Result<void>)> done);

}  // namespace strata::bdev
