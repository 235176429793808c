// Subsystems and methods SPDK's saved configs name that Strata has no module for (iobuf,
// keyring, vmd, scheduler): accepted on load with their option setters (see compat.cpp and
// docs/user/rpc.md, "SPDK compatibility").
#pragma once

namespace strata::rpc {
class App;
void register_spdk_compat(App& app);
}  // namespace strata::rpc
