// The "sim" subsystem: emulated devices created by RPC or JSON config when the process runs on
// the sim env backend (strata-tgt --env sim, bdevperf, the Python World), so a whole stack
// (an emulated NVMe SSD, bdev_nvme on it, targets above) starts from one config file.
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::hwemu {
void register_sim_rpc_module(rpc::App& app);
}
