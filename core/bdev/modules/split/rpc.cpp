// bdev_split_create / bdev_split_delete (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "split/split.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_split_module(rpc::App& app) {
    register_module(kSplitModule);
    add_rpc(
        app, {"bdev_split_create",
              "Split a base bdev (claimed) into split_count bdevs <base>p0..; created when the "
              "base appears if it does not exist yet. Returns the names created now.",
              {{"base_bdev", PT::string, true, "Base bdev name", nullptr},
               {"split_count", PT::uint, true,
                "Number of parts (1..2^32-1; lowered to what fits the base, as SPDK)", nullptr},
               {"split_size_mb", PT::uint, false,
                "Size of each part in MiB (0: the base divided evenly; parts that do not fit are "
                "dropped)",
                0}},
              rpc::Allowed::runtime,
              "",
              true,
              [](const Json& p, Responder r) {
                  auto res = split_create(p.at("base_bdev").get<std::string>(),
                                          p.at("split_count").get<uint64_t>(),
                                          rpc::param_or<uint64_t>(p, "split_size_mb", 0));
                  if (!res)
                      r.error(res.error());
                  else
                      r.result(*res);
              }});
    add_rpc(app, {"bdev_split_delete",
              "Delete every part of a split base bdev and forget its configuration.",
              {{"base_bdev", PT::string, true, "Base bdev name", nullptr}}, rpc::Allowed::runtime,
              "", true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  split_delete(p.at("base_bdev").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
}

}  // namespace strata::bdev
