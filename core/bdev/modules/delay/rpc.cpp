// The delay module's RPC methods (not written yet: registers nothing).
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

void register_delay_module(rpc::App&) {}

}  // namespace strata::bdev
