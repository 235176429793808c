// The bdev_lvol_* RPCs (SPDK's names, parameters and result shapes) and the "lvol" subsystem,
// whose fini unloads every lvstore cleanly before the bdev subsystem removes their bases.
#include <strata/lvol/rpc.h>

#include <fmt/format.h>

#include <strata/bdev/module.h>
#include <strata/bdev/rpc_internal.h>
#include <strata/lvol/lvol.h>
#include <strata/rpc/app.h>
#include <strata/rpc/params.h>

namespace strata::lvol {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

constexpr uint64_t kMiB = 1ull << 20;

void reply_void(rpc::App& app, Task<Result<void>> task, Responder r) {
    runtime::spawn(app.thread(), std::move(task), [r = std::move(r)](Result<void> res) mutable {
        r.reply(res);
    });
}

void reply_string(rpc::App& app, Task<Result<std::string>> task, Responder r) {
    runtime::spawn(app.thread(), std::move(task),
                   [r = std::move(r)](Result<std::string> res) mutable {
                       if (!res.ok()) r.error(res.error());
                       else r.result(*res);
                   });
}

LvsRef lvs_ref(const Json& p, const char* uuid_key, const char* name_key) {
    return {rpc::param_or<std::string>(p, uuid_key, ""), rpc::param_or<std::string>(p, name_key, "")};
}

bool one_of(const LvsRef& ref, Responder& r) {
    if (ref.uuid.empty() == ref.name.empty()) {
        r.error(rpc::error_code::invalid_params, "give exactly one of uuid and lvs_name");
        return false;
    }
    return true;
}

Result<uint64_t> mib(const Json& p, const char* key) {
    const uint64_t v = p.at(key).get<uint64_t>();
    if (v == 0) return Error(Errc::invalid_argument, fmt::format("{} must be positive", key));
    if (v > (UINT64_MAX >> 20))
        return Error(Errc::invalid_argument, fmt::format("{} {} is too large", key, v));
    return v * kMiB;
}

Result<ClearMethod> clear_method(const Json& p) {
    auto it = p.find("clear_method");
    if (it == p.end() || it->is_null()) return ClearMethod::unmap;
    return parse_clear_method(it->get<std::string>());
}

Json lvs_json(const LvsInfo& i) {
    return {{"uuid", i.uuid},
            {"name", i.name},
            {"base_bdev", i.base_bdev},
            {"total_data_clusters", i.total_data_clusters},
            {"free_clusters", i.free_clusters},
            {"block_size", i.block_size},
            {"cluster_size", i.cluster_size}};
}

Json lvol_json(const LvolInfo& i) {
    Json j = {{"alias", i.alias},
              {"uuid", i.uuid},
              {"name", i.name},
              {"is_thin_provisioned", i.thin_provision},
              {"is_snapshot", i.snapshot},
              {"is_clone", i.clone},
              {"is_esnap_clone", i.esnap_clone},
              {"is_degraded", i.degraded},
              {"num_allocated_clusters", i.num_allocated_clusters},
              {"lvs", {{"name", i.lvs_name}, {"uuid", i.lvs_uuid}}}};
    if (i.esnap_clone) j["external_snapshot_name"] = i.external_snapshot_name;
    if (i.clone) j["base_snapshot"] = i.base_snapshot;
    if (i.snapshot) j["clones"] = i.clones;
    return j;
}

void subsystem_fini(rpc::App& app, std::function<void()> done) {
    runtime::spawn(app.thread(), unload_all(), [done = std::move(done)] { done(); });
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    set_control_thread(app.thread());
    bdev::register_module(kLvolModule);
    // Depends on bdev: fini runs first, so stores unload while their bases still take I/O.
    (void)app.add_subsystem(rpc::Subsystem{"lvol", {"bdev"}, nullptr, &subsystem_fini, nullptr});
    rpc::App* a = &app;

    bdev::add_rpc(app, {"bdev_lvol_create_lvstore",
                        "Create a logical volume store on a bdev (formatted and claimed). Returns "
                        "its UUID.",
                        {{"bdev_name", PT::string, true, "Base bdev name", nullptr},
                         {"lvs_name", PT::string, true, "Name of the lvstore", nullptr},
                         {"cluster_sz", PT::uint, false, "Cluster size in bytes", kDefaultClusterSize},
                         {"clear_method", PT::string, false,
                          "What the base gets before formatting: none, unmap or write_zeroes",
                          "unmap"},
                         {"num_md_pages_per_cluster_ratio", PT::uint, false,
                          "Metadata pages reserved per 100 clusters", 100}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            LvsOptions o;
                            o.bdev_name = p.at("bdev_name").get<std::string>();
                            o.lvs_name = p.at("lvs_name").get<std::string>();
                            const uint64_t cs = rpc::param_or<uint64_t>(p, "cluster_sz", kDefaultClusterSize);
                            const uint64_t ratio =
                                rpc::param_or<uint64_t>(p, "num_md_pages_per_cluster_ratio", 100);
                            if (cs > UINT32_MAX || ratio > UINT32_MAX) {
                                r.error(Error(Errc::invalid_argument, "cluster_sz or ratio too large"));
                                return;
                            }
                            o.cluster_sz = static_cast<uint32_t>(cs);
                            o.num_md_pages_per_cluster_ratio = static_cast<uint32_t>(ratio);
                            auto cm = clear_method(p);
                            if (!cm.ok()) {
                                r.error(cm.error());
                                return;
                            }
                            o.clear_method = *cm;
                            reply_string(*a, create_lvstore(std::move(o)), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_delete_lvstore",
                        "Delete a logical volume store and every lvol in it; the base bdev is "
                        "released.",
                        {{"uuid", PT::string, false, "UUID of the lvstore", nullptr},
                         {"lvs_name", PT::string, false, "Name of the lvstore", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            LvsRef ref = lvs_ref(p, "uuid", "lvs_name");
                            if (!one_of(ref, r)) return;
                            reply_void(*a, delete_lvstore(std::move(ref)), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_get_lvstores",
                        "List logical volume stores (or one by uuid or lvs_name).",
                        {{"uuid", PT::string, false, "UUID of the lvstore", nullptr},
                         {"lvs_name", PT::string, false, "Name of the lvstore", nullptr}},
                        rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                            LvsRef ref = lvs_ref(p, "uuid", "lvs_name");
                            if (!ref.uuid.empty() && !ref.name.empty()) {
                                r.error(rpc::error_code::invalid_params,
                                        "give at most one of uuid and lvs_name");
                                return;
                            }
                            auto v = get_lvstores(ref);
                            if (!v.ok()) {
                                r.error(v.error());
                                return;
                            }
                            Json out = Json::array();
                            for (const auto& i : *v) out.push_back(lvs_json(i));
                            r.result(std::move(out));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_rename_lvstore", "Rename a logical volume store.",
                        {{"old_name", PT::string, true, "Current name", nullptr},
                         {"new_name", PT::string, true, "New name", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a,
                                       rename_lvstore(p.at("old_name").get<std::string>(),
                                                      p.at("new_name").get<std::string>()),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_grow_lvstore",
                        "Grow a logical volume store onto its base bdev after the base grew "
                        "(e.g. bdev_aio_rescan): the new clusters become free. Nothing to do if "
                        "the base did not grow; -ENOSPC beyond what the store's cluster mask, "
                        "sized at creation, can hold.",
                        {{"uuid", PT::string, false, "UUID of the lvstore", nullptr},
                         {"lvs_name", PT::string, false, "Name of the lvstore", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            LvsRef ref = lvs_ref(p, "uuid", "lvs_name");
                            if (!one_of(ref, r)) return;
                            reply_void(*a, grow_lvstore(std::move(ref)), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_create",
                        "Create a logical volume (thick or thin) in an lvstore. Returns its UUID, "
                        "which is the bdev name; the alias is lvs_name/lvol_name.",
                        {{"lvol_name", PT::string, true, "Name of the lvol", nullptr},
                         {"size_in_mib", PT::uint, true, "Size in MiB (rounded up to clusters)", nullptr},
                         {"thin_provision", PT::bool_, false, "Allocate clusters on first write", false},
                         {"uuid", PT::string, false, "UUID of the lvstore", nullptr},
                         {"lvs_name", PT::string, false, "Name of the lvstore", nullptr},
                         {"clear_method", PT::string, false,
                          "How deleting (or shrinking) the lvol clears the clusters it frees: "
                          "none, unmap or write_zeroes", "unmap"}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            LvolOptions o;
                            o.lvol_name = p.at("lvol_name").get<std::string>();
                            o.lvs = lvs_ref(p, "uuid", "lvs_name");
                            if (!one_of(o.lvs, r)) return;
                            auto size = mib(p, "size_in_mib");
                            if (!size.ok()) {
                                r.error(size.error());
                                return;
                            }
                            o.size_bytes = *size;
                            o.thin_provision = rpc::param_or<bool>(p, "thin_provision", false);
                            auto cm = clear_method(p);
                            if (!cm.ok()) {
                                r.error(cm.error());
                                return;
                            }
                            o.clear_method = *cm;
                            reply_string(*a, create_lvol(std::move(o)), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_snapshot",
                        "Snapshot an lvol: its data moves to a new read-only lvol and it becomes "
                        "a clone of it. Returns the snapshot's UUID.",
                        {{"lvol_name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"snapshot_name", PT::string, true, "Name of the snapshot", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_string(*a,
                                         create_snapshot(p.at("lvol_name").get<std::string>(),
                                                         p.at("snapshot_name").get<std::string>()),
                                         std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_clone",
                        "Create a thin clone of a snapshot (or read-only lvol). Returns its UUID.",
                        {{"snapshot_name", PT::string, true, "Snapshot bdev name or alias", nullptr},
                         {"clone_name", PT::string, true, "Name of the clone", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_string(*a,
                                         create_clone(p.at("snapshot_name").get<std::string>(),
                                                      p.at("clone_name").get<std::string>()),
                                         std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_clone_bdev",
                        "Create a thin lvol whose unwritten blocks read an external bdev (an "
                        "external snapshot clone, of the bdev's size). Returns its UUID. After a "
                        "restart without that bdev the lvol is degraded until it appears.",
                        {{"bdev", PT::string, true, "Name, alias or UUID of the external bdev", nullptr},
                         {"lvs_name", PT::string, true, "Name of the lvstore", nullptr},
                         {"clone_name", PT::string, true, "Name of the clone", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_string(*a,
                                         create_esnap_clone(p.at("bdev").get<std::string>(),
                                                            LvsRef{"", p.at("lvs_name").get<std::string>()},
                                                            p.at("clone_name").get<std::string>()),
                                         std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_rename", "Rename an lvol (within its lvstore).",
                        {{"old_name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"new_name", PT::string, true, "New lvol name", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a,
                                       rename_lvol(p.at("old_name").get<std::string>(),
                                                   p.at("new_name").get<std::string>()),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_resize", "Resize an lvol (rounded up to clusters).",
                        {{"name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"size_in_mib", PT::uint, true, "New size in MiB", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            auto size = mib(p, "size_in_mib");
                            if (!size.ok()) {
                                r.error(size.error());
                                return;
                            }
                            reply_void(*a, resize_lvol(p.at("name").get<std::string>(), *size),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_set_read_only", "Mark an lvol read-only (durably).",
                        {{"name", PT::string, true, "Lvol bdev name or alias", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a, set_read_only(p.at("name").get<std::string>()), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_inflate",
                        "Allocate every cluster of a clone, copying its ancestors' data; it then "
                        "has no parent.",
                        {{"name", PT::string, true, "Lvol bdev name or alias", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a, inflate(p.at("name").get<std::string>()), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_decouple_parent",
                        "Copy the clusters a clone reads from its parent; its parent becomes the "
                        "parent's parent.",
                        {{"name", PT::string, true, "Lvol bdev name or alias", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a, decouple_parent(p.at("name").get<std::string>()),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_delete",
                        "Delete an lvol (its bdev is removed). A snapshot with one clone merges "
                        "into it; with more clones it is refused (-EPERM).",
                        {{"name", PT::string, true, "Lvol bdev name or alias", nullptr}},
                        rpc::Allowed::runtime, "", true, [a](const Json& p, Responder r) {
                            reply_void(*a, delete_lvol(p.at("name").get<std::string>()), std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_set_parent",
                        "Make a thin lvol a clone of a snapshot of the same size in the same "
                        "lvstore: the clusters it holds stay, the others read the snapshot.",
                        {{"lvol_name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"parent_name", PT::string, true, "Snapshot bdev name or alias", nullptr}},
                        rpc::Allowed::runtime,
                        "",
                        true,
                        [a](const Json& p, Responder r) {
                            reply_void(*a,
                                       set_parent(p.at("lvol_name").get<std::string>(),
                                                  p.at("parent_name").get<std::string>()),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_set_parent_bdev",
                        "Make a thin lvol an external snapshot clone of a bdev (whose size is a "
                        "multiple of the cluster size): the clusters it holds stay, the others "
                        "read the bdev.",
                        {{"lvol_name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"parent_name", PT::string, true,
                          "Name, alias or UUID of the external snapshot bdev", nullptr}},
                        rpc::Allowed::runtime,
                        "",
                        true,
                        [a](const Json& p, Responder r) {
                            reply_void(*a,
                                       set_parent_bdev(p.at("lvol_name").get<std::string>(),
                                                       p.at("parent_name").get<std::string>()),
                                       std::move(r));
                        }});
    bdev::add_rpc(app, {"bdev_lvol_start_shallow_copy",
                        "Start copying the clusters a read-only lvol holds itself (not its "
                        "parents') to the same offsets of a bdev, claimed meanwhile. Returns "
                        "{operation_id}; bdev_lvol_check_shallow_copy reports progress. Other lvol "
                        "operations wait for the copy.",
                        {{"src_lvol_name", PT::string, true, "Lvol bdev name or alias", nullptr},
                         {"dst_bdev_name", PT::string, true, "Destination bdev", nullptr}},
                        rpc::Allowed::runtime,
                        "",
                        true,
                        [a](const Json& p, Responder r) {
                            runtime::spawn(
                                a->thread(),
                                start_shallow_copy(p.at("src_lvol_name").get<std::string>(),
                                                   p.at("dst_bdev_name").get<std::string>()),
                                [r = std::move(r)](Result<uint32_t> res) mutable {
                                    if (!res.ok())
                                        r.error(res.error());
                                    else
                                        r.result(Json{{"operation_id", *res}});
                                });
                        }});
    bdev::add_rpc(app,
                  {"bdev_lvol_check_shallow_copy",
                   "State of a shallow copy: state (\"in progress\", \"complete\" or "
                   "\"error\", with error), copied_clusters and total_clusters. A finished "
                   "copy is forgotten once reported.",
                   {{"operation_id", PT::uint, true, "From bdev_lvol_start_shallow_copy", nullptr}},
                   rpc::Allowed::runtime,
                   "",
                   true,
                   [](const Json& p, Responder r) {
                       auto id = rpc::int_param<uint32_t>(p, "operation_id", 0);
                       if (!id.ok()) {
                           r.error(id.error());
                           return;
                       }
                       auto s = check_shallow_copy(*id);
                       if (!s.ok()) {
                           r.error(s.error());
                           return;
                       }
                       Json out = {{"copied_clusters", s->copied_clusters},
                                   {"total_clusters", s->total_clusters}};
                       if (!s->error.empty()) {
                           out["state"] = "error";
                           out["error"] = s->error;
                       } else {
                           out["state"] = s->done ? "complete" : "in progress";
                       }
                       r.result(std::move(out));
                   }});
    bdev::add_rpc(app, {"bdev_lvol_get_lvols", "List lvols (of every lvstore, or of one).",
                        {{"lvs_uuid", PT::string, false, "UUID of the lvstore", nullptr},
                         {"lvs_name", PT::string, false, "Name of the lvstore", nullptr}},
                        rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                            LvsRef ref = lvs_ref(p, "lvs_uuid", "lvs_name");
                            if (!ref.uuid.empty() && !ref.name.empty()) {
                                r.error(rpc::error_code::invalid_params,
                                        "give at most one of lvs_uuid and lvs_name");
                                return;
                            }
                            auto v = get_lvols(ref);
                            if (!v.ok()) {
                                r.error(v.error());
                                return;
                            }
                            Json out = Json::array();
                            for (const auto& i : *v) out.push_back(lvol_json(i));
                            r.result(std::move(out));
                        }});
}

}  // namespace strata::lvol
