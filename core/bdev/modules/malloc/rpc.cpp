// bdev_malloc_create / bdev_malloc_delete.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/rpc/params.h>

#include "malloc/malloc.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

std::string next_malloc_name() {
    for (int i = 0;; ++i) {
        std::string n = fmt::format("Malloc{}", i);
        if (find(n) == nullptr) return n;
    }
}

// SPDK's bdev_malloc_create parameters for features Strata's malloc bdev lacks.
const std::vector<rpc::DefaultOnlyParam>& default_only() {
    static const std::vector<rpc::DefaultOnlyParam> v = {
        {"md_size", PT::uint, 0, "per-block metadata"},
        {"md_interleave", PT::bool_, false, "per-block metadata"},
        {"dif_type", PT::int_, 0, "DIF/DIX protection information"},
        {"dif_is_head_of_md", PT::bool_, false, "DIF/DIX protection information"},
        {"dif_pi_format", PT::uint, 0, "DIF/DIX protection information"},
    };
    return v;
}

}  // namespace

void register_malloc_module(rpc::App& app) {
    register_module(kMallocModule);
    rpc::MethodSpec create{
        "bdev_malloc_create",
        "Create a RAM bdev. Returns its name.",
        {{"name", PT::string, false, "Bdev name (default MallocN)", nullptr},
         {"num_blocks", PT::uint, true, "Number of blocks", nullptr},
         {"block_size", PT::uint, true, "Block size in bytes (512..65536, power of two)", nullptr},
         {"uuid", PT::string, false, "UUID (default: generated)", nullptr},
         {"optimal_io_boundary", PT::uint, false, "Split I/O at this many blocks", 0}},
        rpc::Allowed::runtime,
        "",
        true,
        [](const Json& p, Responder r) {
            MallocOptions o;
            if (auto d = rpc::check_default_only("bdev_malloc_create", p, default_only()); !d) {
                r.error(d.error());
                return;
            }
            if (auto d = check_physical_block_size("bdev_malloc_create", p); !d) {
                r.error(d.error());
                return;
            }
            o.name = rpc::param_or<std::string>(p, "name", next_malloc_name());
            o.num_blocks = p.at("num_blocks").get<uint64_t>();
            o.block_size = p.at("block_size").get<uint32_t>();
            o.uuid = rpc::param_or<std::string>(p, "uuid", "");
            o.optimal_io_boundary = rpc::param_or<uint32_t>(p, "optimal_io_boundary", 0);
            auto b = malloc_create(o);
            if (!b)
                r.error(b.error());
            else
                r.result((*b)->name());
        }};
    create.params.push_back({"physical_block_size", PT::uint, false,
                             "Accepted when 0 or equal to block_size (SPDK's save_config writes "
                             "it so); a separate physical block size is not supported",
                             nullptr});
    rpc::append_default_only(create.params, default_only());
    add_rpc(app, std::move(create));
    add_rpc(app, {"bdev_malloc_delete", "Delete a malloc bdev.",
              {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "", true,
              [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  malloc_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
}

}  // namespace strata::bdev
