// The vhost target's control API (the App's vhost controllers, in a Host slot) and its RPC
// module: SPDK's vhost_* RPCs and the "vhost_blk" subsystem of save_config.
#pragma once

#include <string>

namespace strata::rpc {
class App;
}
namespace strata::runtime {
class Host;
}

namespace strata::vhost {

// The directory new controllers' sockets are created in (SPDK's -S): "<dir>/<ctrlr>". Empty:
// the current directory. Control path, before controllers are created.
void set_socket_dir(runtime::Host& host, std::string dir);
std::string socket_dir(runtime::Host& host);

void register_rpc_module(rpc::App& app);

}  // namespace strata::vhost
