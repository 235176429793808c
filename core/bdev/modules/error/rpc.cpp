// bdev_error_create / bdev_error_delete / bdev_error_inject_error (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "error/error.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_error_module(rpc::App& app) {
    register_module(kErrorModule);
    add_rpc(app, {"bdev_error_create",
                  "Create an error-injection bdev EE_<base_name> on a base bdev (claimed); created "
                  "when the base appears if it does not exist yet. Returns true (as SPDK).",
                  {{"base_name", PT::string, true, "Base bdev name", nullptr},
                   {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      const auto base = p.at("base_name").get<std::string>();
                      auto res = error_create(base, rpc::param_or<std::string>(p, "uuid", ""));
                      r.reply(res);
                  }});
    add_rpc(app, {"bdev_error_delete",
              "Delete an error-injection bdev; I/O it holds (pending) fails with aborted.",
              {{"name", PT::string, true, "Error bdev name (EE_<base>)", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  error_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
    add_rpc(app, {"bdev_error_inject_error",
              "Arm an error for the next `num` I/O of a type on an error bdev (replaces what was "
              "armed for that type). failure: completes with an I/O error; pending: held until a "
              "reset of the bdev (which fails them) or its deletion; corrupt_data: reads return "
              "and writes store the data with byte corrupt_offset XORed with corrupt_value (the "
              "caller's write buffer is restored); nomem: refused for lack of resources and "
              "retried shortly after.",
              {{"name", PT::string, true, "Error bdev name", nullptr},
               {"io_type", PT::string, true,
                "read, write, write_zeroes, unmap, flush, reset, compare, compare_and_write, all "
                "(every type but reset), or clear (disarm all)",
                nullptr},
               {"error_type", PT::string, true, "failure, pending, corrupt_data or nomem", nullptr},
               {"num", PT::uint, false, "How many I/O get the error", 1},
               {"queue_depth", PT::uint, false,
                "Inject only while at least this many I/O of the channel are at the base (0: "
                "always)",
                0},
               {"corrupt_offset", PT::uint, false, "corrupt_data: byte offset in the I/O's data", 0},
               {"corrupt_value", PT::uint, false, "corrupt_data: XOR value, 1..255", 0}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  ErrorInjection inj;
                  if (auto res = error_parse_types(p.at("io_type").get<std::string>(),
                                                   p.at("error_type").get<std::string>(), inj);
                      !res) {
                      r.error(res.error());
                      return;
                  }
                  const uint64_t num = rpc::param_or<uint64_t>(p, "num", 1);
                  const uint64_t value = rpc::param_or<uint64_t>(p, "corrupt_value", 0);
                  if (num > UINT32_MAX) {
                      r.error(Error(Errc::invalid_argument, "num must fit in 32 bits"));
                      return;
                  }
                  if (value > 255) {
                      r.error(Error(Errc::invalid_argument, "corrupt_value must be 1..255"));
                      return;
                  }
                  inj.num = static_cast<uint32_t>(num);
                  inj.queue_depth = rpc::param_or<uint64_t>(p, "queue_depth", 0);
                  inj.corrupt_offset = rpc::param_or<uint64_t>(p, "corrupt_offset", 0);
                  inj.corrupt_value = static_cast<uint8_t>(value);
                  auto res = error_inject(p.at("name").get<std::string>(), inj);
                  r.reply(res);
              }});
}

}  // namespace strata::bdev
