// add_rpc in a library of its own that every module's library links: a module's rpc.cpp calls
// it, and an archive member pulled in for any reason (GNU ld may take it to satisfy a weak
// std:: symbol another archive wants) must then link even where the bdev RPC table is absent.
#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

void add_rpc(rpc::App& app, rpc::MethodSpec spec) {
    spec.subsystem = "bdev";
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "bdev RPC registration failed: %s", r.error().message().c_str());
}

Result<void> check_physical_block_size(std::string_view method, const rpc::Json& p) {
    const uint64_t pbs = rpc::param_or<uint64_t>(p, "physical_block_size", 0);
    const uint64_t bs = rpc::param_or<uint64_t>(p, "block_size", 0);
    if (pbs == 0 || pbs == bs) return {};
    return Error(Errc::not_supported,
                 fmt::format("{}: 'physical_block_size' = {} needs a physical block size apart "
                             "from block_size, which Strata does not support (0 or block_size {} "
                             "is accepted)",
                             method, pbs, bs));
}

}  // namespace strata::bdev
