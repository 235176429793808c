// bdev_null: a bdev that discards writes and returns reads without touching the buffer; for
// measuring the layers above a device.
#pragma once

#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct NullOptions {
    std::string name;
    uint64_t num_blocks = 0;
    uint32_t block_size = 512;
    std::string uuid;
};

extern const Module kNullModule;
Result<Bdev*> null_create(const NullOptions& options);
// bdev_null_resize: new size in MiB (SPDK's unit), never smaller than the current size.
Result<void> null_resize(const std::string& name, uint64_t new_size_mib);
void null_delete(const std::string& name, std::function<void(Result<void>)> done);

}  // namespace strata::bdev
