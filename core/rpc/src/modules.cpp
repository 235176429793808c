// The explicit module table. A module adds its entry here and links its library into
// strata_rpc_modules (core/rpc/CMakeLists.txt).
#include <strata/rpc/modules.h>

#include <strata/bdev/rpc.h>

namespace strata::rpc {

const std::vector<ModuleEntry>& module_table() {
    static const std::vector<ModuleEntry> table = {
        {"bdev", &bdev::register_rpc_module},
    };
    return table;
}

void register_all_modules(App& app) {
    register_builtins(app);
    for (const auto& m : module_table()) m.register_fn(app);
}

}  // namespace strata::rpc
