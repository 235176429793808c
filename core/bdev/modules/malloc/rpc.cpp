// bdev_malloc_create / bdev_malloc_delete.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

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

}  // namespace

void register_malloc_module(rpc::App& app) {
    register_module(kMallocModule);
    add_rpc(app, {"bdev_malloc_create", "Create a RAM bdev. Returns its name.",
              {{"name", PT::string, false, "Bdev name (default MallocN)", nullptr},
               {"num_blocks", PT::uint, true, "Number of blocks", nullptr},
               {"block_size", PT::uint, true, "Block size in bytes (512..65536, power of two)",
                nullptr},
               {"uuid", PT::string, false, "UUID (default: generated)", nullptr},
               {"optimal_io_boundary", PT::uint, false, "Split I/O at this many blocks", 0}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  MallocOptions o;
                  o.name = rpc::param_or<std::string>(p, "name", next_malloc_name());
                  o.num_blocks = p.at("num_blocks").get<uint64_t>();
                  o.block_size = p.at("block_size").get<uint32_t>();
                  o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                  o.optimal_io_boundary = rpc::param_or<uint32_t>(p, "optimal_io_boundary", 0);
                  auto b = malloc_create(o);
                  if (!b) r.error(b.error());
                  else r.result((*b)->name());
              }});
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
