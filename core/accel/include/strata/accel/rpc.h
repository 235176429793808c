// Registers the accel subsystem (init/fini, save_config section) and its RPC methods with an
// App; called from the explicit module table (core/rpc/src/modules.cpp).
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::accel {
void register_rpc_module(rpc::App& app);
// Forgets enabled modules, opcode overrides, options and accumulated stats (the accel
// subsystem's fini does this, so the next App starts from defaults). Not while running.
void reset_config();
}  // namespace strata::accel
