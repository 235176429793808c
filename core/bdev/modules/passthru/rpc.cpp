// bdev_passthru_create / bdev_passthru_delete (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "passthru/passthru.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_passthru_module(rpc::App& app) {
    register_module(kPassthruModule);
    add_rpc(app, {"bdev_passthru_create",
              "Create a passthru bdev on a base bdev (claimed). Created when the base appears if "
              "it does not exist yet. Returns the name.",
              {{"base_bdev_name", PT::string, true, "Base bdev name", nullptr},
               {"name", PT::string, true, "Passthru bdev name", nullptr},
               {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  PassthruOptions o;
                  o.base_bdev_name = p.at("base_bdev_name").get<std::string>();
                  o.name = p.at("name").get<std::string>();
                  o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                  auto res = passthru_create(o);
                  if (!res) r.error(res.error());
                  else r.result(o.name);
              }});
    add_rpc(app, {"bdev_passthru_delete", "Delete a passthru bdev (its base is released).",
              {{"name", PT::string, true, "Passthru bdev name", nullptr}}, rpc::Allowed::runtime,
              "", true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  passthru_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
}

}  // namespace strata::bdev
