// bdev_null_create / bdev_null_delete.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/rpc/params.h>

#include "null/null.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

// SPDK's bdev_null_create parameters for features Strata's null bdev lacks.
const std::vector<rpc::DefaultOnlyParam>& default_only() {
    static const std::vector<rpc::DefaultOnlyParam> v = {
        {"md_size", PT::uint, 0, "per-block metadata"},
        {"dif_type", PT::int_, 0, "DIF/DIX protection information"},
        {"dif_is_head_of_md", PT::bool_, false, "DIF/DIX protection information"},
        {"dif_pi_format", PT::uint, 0, "DIF/DIX protection information"},
    };
    return v;
}

}  // namespace

void register_null_module(rpc::App& app) {
    register_module(kNullModule);
    rpc::MethodSpec create{
        "bdev_null_create",
        "Create a null bdev (writes discarded, reads untouched). "
        "Returns its name.",
        {{"name", PT::string, true, "Bdev name", nullptr},
         {"num_blocks", PT::uint, true, "Number of blocks", nullptr},
         {"block_size", PT::uint, true, "Block size in bytes", nullptr},
         {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
        rpc::Allowed::runtime,
        "",
        true,
        [](const Json& p, Responder r) {
            if (auto d = rpc::check_default_only("bdev_null_create", p, default_only()); !d) {
                r.error(d.error());
                return;
            }
            if (auto d = check_physical_block_size("bdev_null_create", p); !d) {
                r.error(d.error());
                return;
            }
            NullOptions o;
            o.name = p.at("name").get<std::string>();
            o.num_blocks = p.at("num_blocks").get<uint64_t>();
            o.block_size = p.at("block_size").get<uint32_t>();
            o.uuid = rpc::param_or<std::string>(p, "uuid", "");
            auto b = null_create(o);
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
    add_rpc(app, {"bdev_null_resize",
                  "Grow a null bdev to new_size MiB (never smaller than its current size).",
                  {{"name", PT::string, true, "Bdev name", nullptr},
                   {"new_size", PT::uint, true, "New size in MiB", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto res = null_resize(p.at("name").get<std::string>(),
                                             p.at("new_size").get<uint64_t>());
                      r.reply(res);
                  }});
    add_rpc(app, {"bdev_null_delete", "Delete a null bdev.",
              {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "", true,
              [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  null_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
}

}  // namespace strata::bdev
