// Registers the "scsi" subsystem (an empty save_config section, as SPDK's) and scsi_get_devices
// with an App; called from the explicit module table (core/rpc/src/modules.cpp).
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::scsi {
void register_rpc_module(rpc::App& app);
}
