// Registers the "iscsi" subsystem (save_config/load_config, App-stop shutdown) and SPDK's
// iscsi_* RPCs with an App; called from the explicit module table (core/rpc/src/modules.cpp).
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::iscsi {
void register_rpc_module(rpc::App& app);
}
