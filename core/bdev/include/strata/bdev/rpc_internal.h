// Shared by the bdev RPC table (src/rpc.cpp) and the modules' RPC files (modules/<m>/rpc.cpp).
#pragma once

#include <strata/rpc/app.h>

namespace strata::bdev {

// Adds a method of the "bdev" subsystem (asserts the name is new).
void add_rpc(rpc::App& app, rpc::MethodSpec spec);

// physical_block_size of bdev_malloc_create / bdev_null_create: SPDK's save_config writes the
// bdev's (equal to block_size unless set); Strata accepts 0 or block_size and refuses others
// (not_supported naming the feature).
Result<void> check_physical_block_size(std::string_view method, const rpc::Json& params);

// One per module, defined in modules/<m>/rpc.cpp: registers the bdev::Module (for examine) and
// the module's RPC methods.
void register_malloc_module(rpc::App& app);
void register_null_module(rpc::App& app);
void register_nvme_module(rpc::App& app);
void register_aio_module(rpc::App& app);
void register_uring_module(rpc::App& app);
void register_error_module(rpc::App& app);
void register_delay_module(rpc::App& app);
void register_passthru_module(rpc::App& app);
void register_split_module(rpc::App& app);
void register_raid_module(rpc::App& app);
void register_virtio_module(rpc::App& app);
void register_rbd_module(rpc::App& app);

}  // namespace strata::bdev
