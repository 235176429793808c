// bdev_rbd_register_cluster / bdev_rbd_unregister_cluster / bdev_rbd_get_clusters_info /
// bdev_rbd_create / bdev_rbd_delete / bdev_rbd_resize (SPDK's names and parameters).
#include <memory>

#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "rbd/rbd.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

// A Ceph option map ({"rbd_cache": "false", ...}): every value a string, as SPDK decodes it.
Result<RbdConfig> config_map(const Json& p, const char* key) {
    RbdConfig out;
    auto it = p.find(key);
    if (it == p.end() || it->is_null()) return out;
    for (const auto& [k, v] : it->items()) {
        if (!v.is_string())
            return Error(
                Errc::invalid_argument,
                fmt::format("{}.{} must be a string (Ceph option values are strings)", key, k));
        out[k] = v.get<std::string>();
    }
    return out;
}

}  // namespace

void register_rbd_module(rpc::App& app) {
    register_module(kRbdModule);
    add_rpc(
        app,
        {"bdev_rbd_register_cluster",
         "Connect to a Ceph cluster once, under a name that bdev_rbd_create's cluster_name "
         "shares among bdevs. Returns the name.",
         {{"name", PT::string, true, "Cluster name (Strata's, not Ceph's)", nullptr},
          {"user_id", PT::string, false, "Ceph user without 'client.' (default: admin)", nullptr},
          {"config_param", PT::object, false,
           "Ceph options as strings, set after the config file (e.g. {\"mon_host\": ...})",
           nullptr},
          {"config_file", PT::string, false,
           "Ceph config file (default: CEPH_CONF or /etc/ceph/ceph.conf when no config_param)",
           nullptr},
          {"key_file", PT::string, false, "Keyring file of the user", nullptr},
          {"core_mask", PT::string, false,
           "CPUs librbd's threads may run on, hex (e.g. 0x2; default: any)", nullptr}},
         rpc::Allowed::runtime,
         "",
         true,
         [](const Json& p, Responder r) {
             RbdClusterOptions o;
             o.name = p.at("name").get<std::string>();
             o.user_id = rpc::param_or<std::string>(p, "user_id", "");
             auto cfg = config_map(p, "config_param");
             if (!cfg) {
                 r.error(cfg.error());
                 return;
             }
             o.config_param = std::move(*cfg);
             o.config_file = rpc::param_or<std::string>(p, "config_file", "");
             o.key_file = rpc::param_or<std::string>(p, "key_file", "");
             o.core_mask = rpc::param_or<std::string>(p, "core_mask", "");
             if (auto res = rbd_register_cluster(o); !res)
                 r.error(res.error());
             else
                 r.result(o.name);
         }});
    add_rpc(app, {"bdev_rbd_unregister_cluster",
                  "Disconnect a registered Ceph cluster (refused while bdevs use it).",
                  {{"name", PT::string, true, "Cluster name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      r.reply(rbd_unregister_cluster(p.at("name").get<std::string>()));
                  }});
    add_rpc(app, {"bdev_rbd_get_clusters_info",
                  "The registered Ceph clusters (or the one named): name, user, config, key "
                  "file, core mask.",
                  {{"name", PT::string, false, "Cluster name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto info = rbd_clusters_info(rpc::param_or<std::string>(p, "name", ""));
                      if (!info)
                          r.error(info.error());
                      else
                          r.result(std::move(*info));
                  }});
    add_rpc(
        app,
        {"bdev_rbd_create",
         "Create a bdev on a Ceph RBD image (which must exist), through a registered cluster "
         "(cluster_name) or a connection of its own (user_id, config). Returns its name.",
         {{"name", PT::string, false, "Bdev name (default: Ceph<N>)", nullptr},
          {"user_id", PT::string, false, "Ceph user without 'client.' (own connection)", nullptr},
          {"pool_name", PT::string, true, "Pool of the image", nullptr},
          {"rbd_name", PT::string, true, "Image name", nullptr},
          {"block_size", PT::uint, true, "Block size in bytes (power of two, 512..65536)", nullptr},
          {"config", PT::object, false,
           "Ceph options as strings for an own connection (then the default config file is not "
           "read)",
           nullptr},
          {"cluster_name", PT::string, false, "A cluster from bdev_rbd_register_cluster", nullptr},
          {"uuid", PT::string, false, "UUID (default: generated)", nullptr},
          {"read_only", PT::bool_, false, "Open the image read-only", false}},
         rpc::Allowed::runtime,
         "",
         true,
         [](const Json& p, Responder r) {
             RbdOptions o;
             o.name = rpc::param_or<std::string>(p, "name", "");
             o.user_id = rpc::param_or<std::string>(p, "user_id", "");
             o.pool_name = p.at("pool_name").get<std::string>();
             o.rbd_name = p.at("rbd_name").get<std::string>();
             const uint64_t bs = p.at("block_size").get<uint64_t>();
             o.block_size = bs > UINT32_MAX ? 0 : static_cast<uint32_t>(bs);
             auto cfg = config_map(p, "config");
             if (!cfg) {
                 r.error(cfg.error());
                 return;
             }
             o.has_config = p.contains("config") && !p.at("config").is_null();
             o.config = std::move(*cfg);
             o.cluster_name = rpc::param_or<std::string>(p, "cluster_name", "");
             o.uuid = rpc::param_or<std::string>(p, "uuid", "");
             o.read_only = rpc::param_or<bool>(p, "read_only", false);
             if (!o.cluster_name.empty() && (!o.user_id.empty() || o.has_config)) {
                 r.error(Error(Errc::invalid_argument,
                               "cluster_name uses the registered cluster's user and config: "
                               "leave user_id and config out"));
                 return;
             }
             auto b = rbd_create(o);
             if (!b)
                 r.error(b.error());
             else
                 r.result((*b)->name());
         }});
    add_rpc(app, {"bdev_rbd_delete",
                  "Delete an rbd bdev (the image stays in the cluster).",
                  {{"name", PT::string, true, "Bdev name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      rbd_delete(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res)
                              rp->error(res.error());
                          else
                              rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_rbd_resize",
                  "Grow an rbd bdev's image to new_size MiB (images never shrink here); openers "
                  "get a resize event.",
                  {{"name", PT::string, true, "Bdev name", nullptr},
                   {"new_size", PT::uint, true, "New size in MiB", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto res = rbd_resize(p.at("name").get<std::string>(),
                                            p.at("new_size").get<uint64_t>());
                      r.reply(res);
                  }});
}

}  // namespace strata::bdev
