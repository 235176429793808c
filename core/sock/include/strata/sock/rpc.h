// Registers the sock subsystem (save_config section) and its RPC methods with an App: SPDK's
// sock_impl_get_options, sock_impl_set_options, sock_set_default_impl, and the simulated
// network's sim_network_* fault methods. Called from the module table (core/rpc/src/modules.cpp).
#pragma once

namespace strata::rpc {
class App;
}

namespace strata::sock {
void register_rpc_module(rpc::App& app);
}  // namespace strata::sock
