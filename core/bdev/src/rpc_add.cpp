// add_rpc in a library of its own that every module's library links: a module's rpc.cpp calls
// it, and an archive member pulled in for any reason (GNU ld may take it to satisfy a weak
// std:: symbol another archive wants) must then link even where the bdev RPC table is absent.
#include <strata/base/assert.h>
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

void add_rpc(rpc::App& app, rpc::MethodSpec spec) {
    spec.subsystem = "bdev";
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "bdev RPC registration failed: %s", r.error().message().c_str());
}

}  // namespace strata::bdev
