// bdev_null_create / bdev_null_delete.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "null/null.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_null_module(rpc::App& app) {
    register_module(kNullModule);
    add_rpc(app, {"bdev_null_create", "Create a null bdev (writes discarded, reads untouched). "
                                  "Returns its name.",
              {{"name", PT::string, true, "Bdev name", nullptr},
               {"num_blocks", PT::uint, true, "Number of blocks", nullptr},
               {"block_size", PT::uint, true, "Block size in bytes", nullptr},
               {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  NullOptions o;
                  o.name = p.at("name").get<std::string>();
                  o.num_blocks = p.at("num_blocks").get<uint64_t>();
                  o.block_size = p.at("block_size").get<uint32_t>();
                  o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                  auto b = null_create(o);
                  if (!b) r.error(b.error());
                  else r.result((*b)->name());
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
