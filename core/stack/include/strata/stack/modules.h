// The explicit module table: the one place that knows every module of the stack. Every process
// that assembles the stack (strata-tgt, bdevperf, the Python World, the fuzzers, strata-rpc-doc)
// registers its subsystems and RPC methods from here (no static constructors, which vanish
// from static libraries).
//
// A new module adds one line to core/stack/src/modules.cpp's table (its register function) and
// links its library into strata_stack; then the docs and rpc_get_methods stay complete.
#pragma once

#include <vector>

#include <strata/rpc/app.h>
#include <strata/rpc/builtins.h>

namespace strata::stack {

struct ModuleEntry {
    const char* name;
    void (*register_fn)(rpc::App& app);  // adds the module's subsystems and RPC methods
};

// The table, in registration order.
const std::vector<ModuleEntry>& module_table();

// Registers the framework built-ins (rpc::register_builtins) and every module in the table, in
// the App's Host (modules keep their state per Host), whichever Host the caller is in.
void register_all_modules(rpc::App& app);

}  // namespace strata::stack
