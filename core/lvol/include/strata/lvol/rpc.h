// Registers the lvol bdev module (examine), the "lvol" subsystem (clean unload at shutdown)
// and the bdev_lvol_* RPC methods with an App; called from the explicit module table
// (core/rpc/src/modules.cpp), after the bdev entry.
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::lvol {
void register_rpc_module(rpc::App& app);
}
