// bdev_raid_create / bdev_raid_delete / bdev_raid_get_bdevs / bdev_raid_add_base_bdev /
// bdev_raid_remove_base_bdev (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/rpc/params.h>

#include "raid/raid.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_raid_module(rpc::App& app) {
    register_module(kRaidModule);
    add_rpc(app, {"bdev_raid_create",
              "Create a raid bdev (raid0, raid1 or concat) over base bdevs. Base bdevs that do "
              "not exist yet are attached when they appear (the raid is 'configuring' until then).",
              {{"name", PT::string, true, "Raid bdev name", nullptr},
               {"raid_level", PT::string, true, "0, raid0, 1, raid1 or concat", nullptr},
               {"base_bdevs", PT::array, true, "Names of the base bdevs (1 to 32; raid1: 2 or more)",
                nullptr},
               {"strip_size_kb", PT::uint, false,
                "Strip size in KiB, a power of two (raid0 and concat; raid1: 0 or absent)", 0},
               {"uuid", PT::string, false, "UUID of the raid bdev (default: generated)", nullptr},
               {"superblock", PT::bool_, false,
                "Write a superblock to the base bdevs (not supported: true is refused)", false}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  RaidCreateOptions o;
                  o.name = p.at("name").get<std::string>();
                  auto level = parse_raid_level(p.at("raid_level").get<std::string>());
                  if (!level) {
                      r.error(level.error());
                      return;
                  }
                  o.level = *level;
                  for (const Json& b : p.at("base_bdevs")) {
                      if (!b.is_string()) {
                          r.error(rpc::error_code::invalid_params,
                                  "'base_bdevs' must be an array of bdev names");
                          return;
                      }
                      o.base_bdevs.push_back(b.get<std::string>());
                  }
                  const uint64_t strip = rpc::param_or<uint64_t>(p, "strip_size_kb", 0);
                  if (strip > (uint64_t{1} << 20)) {
                      r.error(rpc::error_code::invalid_params, "'strip_size_kb' is larger than 1 GiB");
                      return;
                  }
                  o.strip_size_kb = static_cast<uint32_t>(strip);
                  o.uuid = rpc::param_or<std::string>(p, "uuid", "");
                  o.superblock = rpc::param_or<bool>(p, "superblock", false);
                  r.reply(raid_create(o));
              }});
    add_rpc(app,
            {"bdev_raid_set_options",
             "Raid module options: the raid1 rebuild window. A rebuild bandwidth limit is not "
             "supported (only SPDK's default 0, unlimited, is accepted).",
             {{"process_window_size_kb", PT::uint, false, "Rebuild copy window in KiB (1..65536)",
               kRaidDefaultProcessWindowKb},
              {"process_max_bandwidth_mb_sec", PT::uint, false,
               "Rebuild bandwidth limit: not supported, accepted only at SPDK's default 0", 0}},
             rpc::Allowed::both,
             "",
             true,
             [](const Json& p, Responder r) {
                 if (auto d = rpc::check_default_only("bdev_raid_set_options", p,
                                                      {{"process_max_bandwidth_mb_sec", PT::uint, 0,
                                                        "a rebuild bandwidth limit"}});
                     !d) {
                     r.error(d.error());
                     return;
                 }
                 auto w = rpc::int_param<uint32_t>(p, "process_window_size_kb",
                                                   raid_process_window_size_kb());
                 if (!w) {
                     r.error(w.error());
                     return;
                 }
                 r.reply(raid_set_options(*w));
             }});
    add_rpc(app, {"bdev_raid_delete",
              "Delete a raid bdev (its bdev is unregistered and the base bdevs released).",
              {{"name", PT::string, true, "Raid bdev name", nullptr}}, rpc::Allowed::runtime, "",
              true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  raid_delete(p.at("name").get<std::string>(),
                              [rp](Result<void> res) { rp->reply(res); });
              }});
    add_rpc(app, {"bdev_raid_get_bdevs",
              "List raid bdevs of a category with their members, state and a running rebuild's "
              "progress ('process').",
              {{"category", PT::string, false, "all, online, configuring or offline", "all"}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  auto res = raid_get_bdevs(rpc::param_or<std::string>(p, "category", "all"));
                  if (!res) r.error(res.error());
                  else r.result(std::move(*res));
              }});
    add_rpc(app, {"bdev_raid_add_base_bdev",
              "Put a base bdev into an empty slot of a raid: of a configuring raid, or of a "
              "degraded online raid1, which rebuilds onto it.",
              {{"raid_bdev", PT::string, true, "Raid bdev name", nullptr},
               {"base_bdev", PT::string, true, "Base bdev name", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  r.reply(raid_add_base_bdev(p.at("raid_bdev").get<std::string>(),
                                              p.at("base_bdev").get<std::string>()));
              }});
    add_rpc(app, {"bdev_raid_remove_base_bdev",
              "Take a base bdev out of its raid: a raid1 runs on degraded, a raid0 or concat goes "
              "offline.",
              {{"name", PT::string, true, "Base bdev name", nullptr}}, rpc::Allowed::runtime, "",
              true, [](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  raid_remove_base_bdev(p.at("name").get<std::string>(),
                                        [rp](Result<void> res) { rp->reply(res); });
              }});
}

}  // namespace strata::bdev
