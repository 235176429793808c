// bdev_uring_create / bdev_uring_delete / bdev_uring_rescan (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "uring/uring.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_uring_module(rpc::App& app) {
    register_module(kUringModule);
    add_rpc(app, {"bdev_uring_create",
                  "Create a bdev on a file or block device through io_uring (O_DIRECT when the "
                  "file system allows it). Returns its name; fails with a reason where io_uring "
                  "is disabled.",
                  {{"filename", PT::string, true, "Path of an existing file or block device", nullptr},
                   {"name", PT::string, true, "Bdev name", nullptr},
                   {"block_size", PT::uint, false,
                    "Block size in bytes (512..65536, power of two; default: detected)", nullptr},
                   {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      const uint64_t bs = rpc::param_or<uint64_t>(p, "block_size", 0);
                      if (bs > UINT32_MAX) {
                          r.error(Error(Errc::invalid_argument,
                                        fmt::format("block_size {} is out of range", bs)));
                          return;
                      }
                      UringOptions o;
                      o.filename = p.at("filename").get<std::string>();
                      o.name = p.at("name").get<std::string>();
                      o.block_size = static_cast<uint32_t>(bs);
                      o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                      auto b = uring_create(o);
                      if (!b) r.error(b.error());
                      else r.result((*b)->name());
                  }});
    add_rpc(app, {"bdev_uring_delete", "Delete a uring bdev (the file stays).",
                  {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "",
                  true, [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      uring_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_uring_rescan",
                  "Re-read the size of a uring bdev's file or device; openers get a resize event.",
                  {{"name", PT::string, true, "Bdev name", nullptr}}, rpc::Allowed::runtime, "",
                  true, [](const Json& p, Responder r) {
                      auto res = uring_rescan(p.at("name").get<std::string>());
                      if (!res) r.error(res.error());
                      else r.result(true);
                  }});
}

}  // namespace strata::bdev
