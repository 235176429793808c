// The explicit module table. A module adds its entry here and links its library into
// strata_stack (core/stack/CMakeLists.txt).
#include <strata/stack/modules.h>

#include <strata/accel/rpc.h>
#include <strata/bdev/rpc.h>
#include <strata/hwemu/sim_rpc.h>
#include <strata/iscsi/rpc.h>
#include <strata/lvol/rpc.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/tcp.h>
#include <strata/runtime/host.h>
#include <strata/scsi/rpc.h>
#include <strata/sock/rpc.h>
#include <strata/vhost/vhost.h>

namespace strata::stack {

const std::vector<ModuleEntry>& module_table() {
    static const std::vector<ModuleEntry> table = {
        {"sim", &hwemu::register_sim_rpc_module},  // emulated devices first: bdevs sit on them
        {"sock", &sock::register_rpc_module},
        {"accel", &accel::register_rpc_module},  // before bdev: bdev modules use accel
        {"bdev", &bdev::register_rpc_module},
        {"lvol", &lvol::register_rpc_module},    // after bdev: its methods join the bdev group
        {"scsi", &scsi::register_rpc_module},    // after bdev: LUNs are bdevs
        {"iscsi", &iscsi::register_rpc_module},  // after scsi: target nodes are SCSI devices
        {"nvmf", &nvmf::register_rpc_module},    // after bdev: namespaces are bdevs
        {"nvmf_tcp", &nvmf::register_tcp_rpc_module},  // the TCP transport, after the core
        {"vhost", &vhost::register_rpc_module},        // after bdev: controllers serve bdevs
    };
    return table;
}

void register_all_modules(rpc::App& app) {
    // Modules keep their tables in the current Host: make it the App's whatever the caller's is.
    runtime::HostScope scope(app.host());
    rpc::register_builtins(app);
    for (const auto& m : module_table()) m.register_fn(app);
}

}  // namespace strata::stack
