// The explicit module table: every subsystem and RPC method of the stack is registered from
// here (no static constructors, which vanish from static libraries).
//
// A new module adds one line to core/rpc/src/modules.cpp's table (its register function) and
// links its library into strata_rpc_modules; strata-tgt, the Python World, the fuzzers and
// strata-rpc-doc all call register_all_modules, so the docs and rpc_get_methods stay complete.
#pragma once

#include <string_view>
#include <vector>

#include <strata/rpc/app.h>

namespace strata::rpc {

struct ModuleEntry {
    const char* name;
    void (*register_fn)(App& app);  // adds the module's subsystems and RPC methods
};

// The table, in registration order.
const std::vector<ModuleEntry>& module_table();

// Registers the framework built-ins (rpc_get_methods, framework_*, log_*, thread_*, save/load
// config, versions; subsystems "log" and "framework") and every module in the table.
void register_all_modules(App& app);

// Only the built-ins (used by register_all_modules and by tests wanting a minimal App).
void register_builtins(App& app);

// Version string reported by strata_get_version ("Strata v0.1.0").
std::string_view version_string() noexcept;

}  // namespace strata::rpc
