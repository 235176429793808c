// Registers the bdev subsystem (save_config section) and its RPC methods with an App; called
// from the explicit module table (core/stack/src/modules.cpp).
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::bdev {
void register_rpc_module(rpc::App& app);
}
