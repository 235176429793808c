// bdev_delay_create / bdev_delay_delete / bdev_delay_update_latency (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "delay/delay.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_delay_module(rpc::App& app) {
    register_module(kDelayModule);
    add_rpc(app, {"bdev_delay_create",
              "Create a delay bdev on a base bdev (claimed): reads and writes complete no sooner "
              "than their average latency after submission (1 in 100: the p99 latency), in "
              "runtime time (virtual under the simulator). Created when the base appears if it "
              "does not exist yet. Returns the name.",
              {{"base_bdev_name", PT::string, true, "Base bdev name", nullptr},
               {"name", PT::string, true, "Delay bdev name", nullptr},
               {"avg_read_latency", PT::uint, true, "Average read latency (us)", nullptr},
               {"p99_read_latency", PT::uint, true, "p99 read latency (us)", nullptr},
               {"avg_write_latency", PT::uint, true, "Average write latency (us)", nullptr},
               {"p99_write_latency", PT::uint, true, "p99 write latency (us)", nullptr},
               {"uuid", PT::string, false, "UUID (default: generated)", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  DelayOptions o;
                  o.base_bdev_name = p.at("base_bdev_name").get<std::string>();
                  o.name = p.at("name").get<std::string>();
                  o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                  o.avg_read_latency_us = p.at("avg_read_latency").get<uint64_t>();
                  o.p99_read_latency_us = p.at("p99_read_latency").get<uint64_t>();
                  o.avg_write_latency_us = p.at("avg_write_latency").get<uint64_t>();
                  o.p99_write_latency_us = p.at("p99_write_latency").get<uint64_t>();
                  auto res = delay_create(o);
                  if (!res) r.error(res.error());
                  else r.result(o.name);
              }});
    add_rpc(app, {"bdev_delay_delete", "Delete a delay bdev (its base is released).",
              {{"name", PT::string, true, "Delay bdev name", nullptr}}, rpc::Allowed::runtime, "",
              true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  delay_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                      if (!res) rp->error(res.error());
                      else rp->result(true);
                  });
              }});
    add_rpc(app, {"bdev_delay_update_latency",
              "Change one latency of a delay bdev; I/O submitted afterwards use it.",
              {{"delay_bdev_name", PT::string, true, "Delay bdev name", nullptr},
               {"latency_type", PT::string, true, "avg_read, p99_read, avg_write or p99_write",
                nullptr},
               {"latency_us", PT::uint, true, "New latency (us)", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  auto res = delay_update_latency(p.at("delay_bdev_name").get<std::string>(),
                                                  p.at("latency_type").get<std::string>(),
                                                  p.at("latency_us").get<uint64_t>());
                  r.reply(res);
              }});
}

}  // namespace strata::bdev
