// The framework's own methods, which every App has whatever modules sit above it:
// rpc_get_methods, framework_*, log_*, thread_*, save/load config, versions; subsystems "log"
// and "framework". The modules' methods are registered from the top floor (core/stack).
#pragma once

#include <string_view>

#include <strata/rpc/app.h>

namespace strata::rpc {

// Registers the built-ins (called by stack::register_all_modules, and by tests wanting a
// minimal App).
void register_builtins(App& app);

// Version string reported by strata_get_version ("Strata v0.1.0").
std::string_view version_string() noexcept;

}  // namespace strata::rpc
