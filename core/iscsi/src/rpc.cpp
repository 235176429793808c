// SPDK's iscsi_* RPCs (method names, parameter names and types, defaults and result shapes of
// SPDK v24.09's lib/iscsi/iscsi_rpc.c and python/spdk/rpc/iscsi.py) over the control API of
// target.h, and the "iscsi" subsystem of save_config/load_config. Nested objects (portals,
// pg_ig_maps, luns, secrets) are checked member by member with messages naming the element.
//
// Errors: a bad or conflicting parameter (invalid, unknown, duplicate, claimed bdev) answers
// -32602 with the control API's message; a state problem (busy: a mapped group, options after
// the first portal group; shutdown) -32603.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/iscsi/internal/network.h>
#include <strata/iscsi/rpc.h>
#include <strata/iscsi/target.h>
#include <strata/rpc/app.h>

namespace strata::iscsi {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

// STRATA_TRY for a function returning Result<T> (T non-void): passes the Error on.
#define TRY_OR_ERROR(expr)                      \
    do {                                        \
        auto try_r_ = (expr);                   \
        if (!try_r_.ok()) return try_r_.error(); \
    } while (0)

void add(rpc::App& app, std::string name, std::string description,
         std::vector<rpc::ParamSpec> params, rpc::Handler handler,
         rpc::Allowed allowed = rpc::Allowed::runtime) {
    rpc::MethodSpec spec;
    spec.name = std::move(name);
    spec.description = std::move(description);
    spec.params = std::move(params);
    spec.allowed = allowed;
    spec.subsystem = "iscsi";
    spec.handler = std::move(handler);
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "iscsi RPC registration failed: %s", r.error().message().c_str());
}

int error_code_of(Errc c) {
    return c == Errc::busy || c == Errc::shutdown || c == Errc::internal || c == Errc::no_memory
               ? rpc::error_code::internal_error
               : rpc::error_code::invalid_params;
}
void fail(Responder& r, const Error& e) { r.error(error_code_of(e.code()), e.message()); }
void reply(Responder& r, const Result<void>& res) {
    if (!res.ok()) return fail(r, res.error());
    r.result(true);
}
std::shared_ptr<Responder> share(Responder r) { return std::make_shared<Responder>(std::move(r)); }

// An element of an array parameter, checked like a method's params: `where` prefixes the
// message ("pg_ig_maps[1]: missing parameter 'ig_tag'").
Result<void> check_members(const Json& v, const std::string& where,
                           std::vector<rpc::ParamSpec> members) {
    rpc::MethodSpec spec;
    spec.params = std::move(members);
    if (!v.is_object()) return Error(Errc::invalid_argument, where + " must be an object");
    if (auto msg = rpc::Registry::validate(spec, v))
        return Error(Errc::invalid_argument, where + ": " + *msg);
    return {};
}

Result<int32_t> int32_of(const Json& v, const std::string& what) {
    const int64_t x = v.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX)
        return Error(Errc::invalid_argument, fmt::format("'{}' is out of range", what));
    return int32_t(x);
}
Result<uint32_t> uint32_of(const Json& v, const std::string& what) {
    const int64_t x = v.get<int64_t>();
    if (x < 0 || x > int64_t(UINT32_MAX))
        return Error(Errc::invalid_argument, fmt::format("'{}' is out of range", what));
    return uint32_t(x);
}

Result<std::vector<std::string>> strings_of(const Json& p, const char* key) {
    std::vector<std::string> out;
    auto it = p.find(key);
    if (it == p.end()) return out;
    for (size_t i = 0; i < it->size(); ++i) {
        if (!(*it)[i].is_string())
            return Error(Errc::invalid_argument, fmt::format("{}[{}] must be a string", key, i));
        out.push_back((*it)[i].get<std::string>());
    }
    return out;
}

Result<std::vector<Portal>> portals_of(const Json& a) {
    std::vector<Portal> out;
    for (size_t i = 0; i < a.size(); ++i) {
        const std::string where = fmt::format("portals[{}]", i);
        TRY_OR_ERROR(check_members(a[i], where,
                                 {{"host", PT::string, true, "", nullptr},
                                  {"port", PT::any, true, "", nullptr}}));
        const Json& port = a[i]["port"];
        Portal p{a[i]["host"].get<std::string>(), ""};
        if (port.is_string())
            p.port = port.get<std::string>();
        else if (port.is_number_unsigned())
            p.port = std::to_string(port.get<uint64_t>());
        else
            return Error(Errc::invalid_argument, where + ".port must be a string");
        out.push_back(std::move(p));
    }
    return out;
}

Result<std::vector<PgIgMap>> maps_of(const Json& a) {
    std::vector<PgIgMap> out;
    for (size_t i = 0; i < a.size(); ++i) {
        const std::string where = fmt::format("pg_ig_maps[{}]", i);
        TRY_OR_ERROR(check_members(a[i], where,
                                 {{"pg_tag", PT::int_, true, "", nullptr},
                                  {"ig_tag", PT::int_, true, "", nullptr}}));
        auto pg = int32_of(a[i]["pg_tag"], where + ".pg_tag");
        if (!pg.ok()) return pg.error();
        auto ig = int32_of(a[i]["ig_tag"], where + ".ig_tag");
        if (!ig.ok()) return ig.error();
        out.push_back({*pg, *ig});
    }
    return out;
}

Result<std::vector<TargetLun>> luns_of(const Json& a) {
    if (a.size() > 64)  // SPDK's RPC_ISCSI_CREATE_TARGET_NODE_MAX_LUN
        return Error(Errc::invalid_argument, "more than 64 luns");
    std::vector<TargetLun> out;
    for (size_t i = 0; i < a.size(); ++i) {
        const std::string where = fmt::format("luns[{}]", i);
        TRY_OR_ERROR(check_members(a[i], where,
                                 {{"bdev_name", PT::string, true, "", nullptr},
                                  {"lun_id", PT::int_, true, "", nullptr}}));
        auto id = int32_of(a[i]["lun_id"], where + ".lun_id");
        if (!id.ok()) return id.error();
        out.push_back({a[i]["bdev_name"].get<std::string>(), *id});
    }
    return out;
}

std::vector<rpc::ParamSpec> secret_members() {
    return {{"user", PT::string, true, "User name for one-way CHAP", nullptr},
            {"secret", PT::string, true, "Secret for one-way CHAP", nullptr},
            {"muser", PT::string, false, "User name for mutual CHAP", nullptr},
            {"msecret", PT::string, false, "Secret for mutual CHAP", nullptr}};
}
ChapSecretConfig secret_of(const Json& o) {
    return {o.at("user").get<std::string>(), o.at("secret").get<std::string>(),
            rpc::param_or<std::string>(o, "muser", ""),
            rpc::param_or<std::string>(o, "msecret", "")};
}

// The four CHAP parameters of iscsi_set_discovery_auth, iscsi_target_node_set_auth and
// iscsi_create_target_node (absent: false / 0).
std::vector<rpc::ParamSpec> chap_params(const char* whose) {
    return {{"disable_chap", PT::bool_, false,
             fmt::format("CHAP disabled for {}", whose), false},
            {"require_chap", PT::bool_, false,
             fmt::format("CHAP required for {}", whose), false},
            {"mutual_chap", PT::bool_, false,
             fmt::format("Mutual CHAP for {} (with require_chap)", whose), false},
            {"chap_group", PT::int_, false,
             fmt::format("Auth group tag for {} (0: none)", whose), 0}};
}
Result<DiscoveryAuth> chap_of(const Json& p) {
    DiscoveryAuth a;
    a.disable_chap = rpc::param_or<bool>(p, "disable_chap", false);
    a.require_chap = rpc::param_or<bool>(p, "require_chap", false);
    a.mutual_chap = rpc::param_or<bool>(p, "mutual_chap", false);
    if (auto it = p.find("chap_group"); it != p.end()) {
        auto g = int32_of(*it, "chap_group");
        if (!g.ok()) return g.error();
        a.chap_group = *g;
    }
    return a;
}

rpc::ParamSpec tag_param(const char* what) {
    return {"tag", PT::int_, true, fmt::format("{} tag (unique, integer > 0)", what), nullptr};
}
Result<int32_t> tag_of(const Json& p) { return int32_of(p.at("tag"), "tag"); }

// A method whose only parameter is a group's tag.
void add_tag_method(rpc::App& app, std::string name, std::string description, const char* what,
                    Result<void> (*fn)(int32_t)) {
    add(app, std::move(name), std::move(description), {tag_param(what)},
        [fn](const Json& p, Responder r) {
            auto tag = tag_of(p);
            if (!tag.ok()) return fail(r, tag.error());
            reply(r, fn(*tag));
        });
}

// ---- JSON shapes (SPDK's *_info_json) -------------------------------------------------------------

Json options_json(const TargetOptions& o, bool extensions_always) {
    Json j = Json::object();
    if (!o.auth_file.empty()) j["auth_file"] = o.auth_file;
    j["node_base"] = o.node_base;
    j["max_sessions"] = o.max_sessions;
    j["max_connections_per_session"] = o.max_connections_per_session;
    j["max_queue_depth"] = o.max_queue_depth;
    j["default_time2wait"] = o.default_time2wait;
    j["default_time2retain"] = o.default_time2retain;
    j["first_burst_length"] = o.first_burst_length;
    j["immediate_data"] = o.immediate_data;
    j["allow_duplicated_isid"] = o.allow_duplicated_isid;
    j["error_recovery_level"] = o.error_recovery_level;
    j["nop_timeout"] = o.nop_timeout;
    j["nop_in_interval"] = o.nop_in_interval;
    j["disable_chap"] = o.disable_chap;
    j["require_chap"] = o.require_chap;
    j["mutual_chap"] = o.mutual_chap;
    j["chap_group"] = o.chap_group;
    j["max_large_datain_per_connection"] = o.max_large_datain_per_connection;
    j["max_r2t_per_connection"] = o.max_r2t_per_connection;
    j["pdu_pool_size"] = o.pdu_pool_size;
    j["immediate_data_pool_size"] = o.immediate_data_pool_size;
    j["data_out_pool_size"] = o.data_out_pool_size;
    // Strata's extensions (SPDK fixes them at build time): in save_config only when changed,
    // so a saved config stays loadable by SPDK.
    const TargetOptions d;
    if (extensions_always || o.max_recv_data_segment_length != d.max_recv_data_segment_length)
        j["max_recv_data_segment_length"] = o.max_recv_data_segment_length;
    if (extensions_always || o.max_burst_length != d.max_burst_length)
        j["max_burst_length"] = o.max_burst_length;
    if (extensions_always || o.initial_r2t != d.initial_r2t) j["initial_r2t"] = o.initial_r2t;
    if (extensions_always || o.chap_challenge_length != d.chap_challenge_length)
        j["chap_challenge_length"] = o.chap_challenge_length;
    if (extensions_always || o.data_digest_accel_threshold != d.data_digest_accel_threshold)
        j["data_digest_accel_threshold"] = o.data_digest_accel_threshold;
    return j;
}

Json portal_group_json(const PortalGroupConfig& pg) {
    Json portals = Json::array();
    for (const auto& p : pg.portals) portals.push_back({{"host", p.host}, {"port", p.port}});
    return {{"tag", pg.tag}, {"portals", std::move(portals)}, {"private", pg.is_private}};
}

Json initiator_group_json(const InitiatorGroupConfig& ig) {
    return {{"tag", ig.tag}, {"initiators", ig.initiators}, {"netmasks", ig.netmasks}};
}

Json auth_group_json(const AuthGroupConfig& ag) {
    Json secrets = Json::array();
    for (const auto& s : ag.secrets) {
        Json e = {{"user", s.user}, {"secret", s.secret}};
        if (!s.muser.empty()) {
            e["muser"] = s.muser;
            e["msecret"] = s.msecret;
        }
        secrets.push_back(std::move(e));
    }
    return {{"tag", ag.tag}, {"secrets", std::move(secrets)}};
}

Json target_node_json(const TargetNodeConfig& n) {
    Json maps = Json::array();
    for (const auto& m : n.pg_ig_maps) maps.push_back({{"pg_tag", m.pg_tag}, {"ig_tag", m.ig_tag}});
    Json luns = Json::array();
    for (const auto& l : n.luns) luns.push_back({{"bdev_name", l.bdev_name}, {"lun_id", l.lun_id}});
    Json j = {{"name", n.name},         {"pg_ig_maps", std::move(maps)},
              {"luns", std::move(luns)}, {"queue_depth", n.queue_depth},
              {"disable_chap", n.disable_chap}, {"require_chap", n.require_chap},
              {"mutual_chap", n.mutual_chap},   {"chap_group", n.chap_group},
              {"header_digest", n.header_digest}, {"data_digest", n.data_digest}};
    if (!n.alias_name.empty()) j["alias_name"] = n.alias_name;
    return j;
}

// Options first (discovery CHAP with them), then auth groups (the nodes' and discovery's CHAP
// groups), portal groups, initiator groups, and the target nodes that map them. A `wait`
// portal group that was started is saved as started.
void write_config(rpc::App&, Json& cfg) {
    cfg.push_back({{"method", "iscsi_set_options"}, {"params", options_json(options(), false)}});
    for (const auto& ag : auth_groups())
        cfg.push_back({{"method", "iscsi_create_auth_group"}, {"params", auth_group_json(ag)}});
    for (const auto& pg : portal_groups()) {
        Json p = portal_group_json(pg);
        if (pg.wait) p["wait"] = true;
        cfg.push_back({{"method", "iscsi_create_portal_group"}, {"params", std::move(p)}});
    }
    for (const auto& ig : initiator_groups())
        cfg.push_back(
            {{"method", "iscsi_create_initiator_group"}, {"params", initiator_group_json(ig)}});
    // A node whose every LUN was hot-removed cannot be created again (a node needs a LUN):
    // left out, so the saved config still loads.
    for (const auto& n : target_nodes())
        if (!n.luns.empty())
            cfg.push_back(
                {{"method", "iscsi_create_target_node"}, {"params", target_node_json(n)}});
}

// init: the network layer over the configuration, so portal groups listen.
void init(rpc::App&, std::function<void(Result<void>)> done) {
    internal::set_network(internal::make_network(internal::config_directory()));
    done({});
}

void fini(rpc::App&, std::function<void()> done) { shutdown(std::move(done)); }

// ---- iscsi_set_options ----------------------------------------------------------------------------

std::vector<rpc::ParamSpec> option_params() {
    const TargetOptions d;
    return {
        {"auth_file", PT::string, false, "Path to CHAP shared secret file (accepted, unused)",
         nullptr},
        {"node_base", PT::string, false, "Prefix of the name of iSCSI target nodes", d.node_base},
        {"nop_timeout", PT::int_, false, "Timeout in seconds of a NOP-In to the initiator",
         d.nop_timeout},
        {"nop_in_interval", PT::int_, false, "Seconds between NOP-Ins (0-60)", d.nop_in_interval},
        {"no_discovery_auth", PT::bool_, false, "Deprecated name of disable_chap", false},
        {"req_discovery_auth", PT::bool_, false, "Deprecated name of require_chap", false},
        {"req_discovery_auth_mutual", PT::bool_, false, "Deprecated name of mutual_chap", false},
        {"discovery_auth_group", PT::int_, false, "Deprecated name of chap_group", 0},
        {"disable_chap", PT::bool_, false, "CHAP disabled for discovery sessions", false},
        {"require_chap", PT::bool_, false, "CHAP required for discovery sessions", false},
        {"mutual_chap", PT::bool_, false, "Mutual CHAP for discovery sessions", false},
        {"chap_group", PT::int_, false, "Auth group tag for discovery sessions (0: none)", 0},
        {"max_sessions", PT::uint, false, "Maximum number of sessions (1-65535)", d.max_sessions},
        {"max_queue_depth", PT::uint, false, "Maximum queue depth of a target node (1-256)",
         d.max_queue_depth},
        {"max_connections_per_session", PT::uint, false, "Offered MaxConnections (1-65535)",
         d.max_connections_per_session},
        {"default_time2wait", PT::uint, false, "Offered DefaultTime2Wait (0-3600)",
         d.default_time2wait},
        {"default_time2retain", PT::uint, false, "Offered DefaultTime2Retain (0-3600)",
         d.default_time2retain},
        {"first_burst_length", PT::uint, false, "Offered FirstBurstLength (512-max_burst_length)",
         d.first_burst_length},
        {"immediate_data", PT::bool_, false, "Offered ImmediateData", d.immediate_data},
        {"error_recovery_level", PT::uint, false, "ErrorRecoveryLevel (0-2; only 0 is built)",
         d.error_recovery_level},
        {"allow_duplicated_isid", PT::bool_, false, "Allow duplicated initiator session IDs",
         d.allow_duplicated_isid},
        {"max_large_datain_per_connection", PT::uint, false,
         "Max outstanding split read I/Os per connection", d.max_large_datain_per_connection},
        {"max_r2t_per_connection", PT::uint, false, "Offered MaxOutstandingR2T",
         d.max_r2t_per_connection},
        {"pdu_pool_size", PT::uint, false, "PDUs in the pool (0: computed)", nullptr},
        {"immediate_data_pool_size", PT::uint, false, "Immediate data buffers (0: computed)",
         nullptr},
        {"data_out_pool_size", PT::uint, false, "Data-out buffers (0: computed)", nullptr},
        {"max_recv_data_segment_length", PT::uint, false,
         "Strata: declared MaxRecvDataSegmentLength", d.max_recv_data_segment_length},
        {"max_burst_length", PT::uint, false, "Strata: offered MaxBurstLength", d.max_burst_length},
        {"initial_r2t", PT::bool_, false, "Strata: offered InitialR2T", d.initial_r2t},
        {"chap_challenge_length", PT::uint, false, "Strata: bytes of CHAP_C we send (1-1024)",
         d.chap_challenge_length},
        {"data_digest_accel_threshold", PT::uint, false,
         "Strata: data digests of PDUs with at least this many bytes through accel (0: inline; "
         "0-16777215)",
         d.data_digest_accel_threshold},
    };
}

Result<TargetOptions> options_of(const Json& p) {
    TargetOptions o = options();
    auto u32 = [&](const char* key, uint32_t& field) -> Result<void> {
        auto it = p.find(key);
        if (it == p.end()) return {};
        auto v = uint32_of(*it, key);
        if (!v.ok()) return v.error();
        field = *v;
        return {};
    };
    auto boolean = [&](const char* key, bool& field) {
        if (auto it = p.find(key); it != p.end()) field = it->get<bool>();
    };
    if (auto it = p.find("auth_file"); it != p.end()) o.auth_file = it->get<std::string>();
    if (auto it = p.find("node_base"); it != p.end()) o.node_base = it->get<std::string>();
    TRY_OR_ERROR(u32("nop_timeout", o.nop_timeout));
    TRY_OR_ERROR(u32("nop_in_interval", o.nop_in_interval));
    boolean("no_discovery_auth", o.disable_chap);
    boolean("req_discovery_auth", o.require_chap);
    boolean("req_discovery_auth_mutual", o.mutual_chap);
    boolean("disable_chap", o.disable_chap);
    boolean("require_chap", o.require_chap);
    boolean("mutual_chap", o.mutual_chap);
    for (const char* key : {"discovery_auth_group", "chap_group"}) {
        if (auto it = p.find(key); it != p.end()) {
            auto g = int32_of(*it, key);
            if (!g.ok()) return g.error();
            o.chap_group = *g;
        }
    }
    TRY_OR_ERROR(u32("max_sessions", o.max_sessions));
    TRY_OR_ERROR(u32("max_queue_depth", o.max_queue_depth));
    TRY_OR_ERROR(u32("max_connections_per_session", o.max_connections_per_session));
    TRY_OR_ERROR(u32("default_time2wait", o.default_time2wait));
    TRY_OR_ERROR(u32("default_time2retain", o.default_time2retain));
    TRY_OR_ERROR(u32("first_burst_length", o.first_burst_length));
    boolean("immediate_data", o.immediate_data);
    TRY_OR_ERROR(u32("error_recovery_level", o.error_recovery_level));
    boolean("allow_duplicated_isid", o.allow_duplicated_isid);
    TRY_OR_ERROR(u32("max_large_datain_per_connection", o.max_large_datain_per_connection));
    TRY_OR_ERROR(u32("max_r2t_per_connection", o.max_r2t_per_connection));
    // Pool sizes follow the other options unless given.
    o.pdu_pool_size = o.immediate_data_pool_size = o.data_out_pool_size = 0;
    TRY_OR_ERROR(u32("pdu_pool_size", o.pdu_pool_size));
    TRY_OR_ERROR(u32("immediate_data_pool_size", o.immediate_data_pool_size));
    TRY_OR_ERROR(u32("data_out_pool_size", o.data_out_pool_size));
    TRY_OR_ERROR(u32("max_recv_data_segment_length", o.max_recv_data_segment_length));
    TRY_OR_ERROR(u32("max_burst_length", o.max_burst_length));
    boolean("initial_r2t", o.initial_r2t);
    TRY_OR_ERROR(u32("chap_challenge_length", o.chap_challenge_length));
    TRY_OR_ERROR(u32("data_digest_accel_threshold", o.data_digest_accel_threshold));
    return o;
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    // init: the network layer installed; fini: every connection closed, portal stopped and
    // node destroyed before the scsi and bdev layers go (shutdown() frees the network layer).
    (void)app.add_subsystem(
        rpc::Subsystem{"iscsi", {"scsi", "bdev", "sock"}, &init, &fini, &write_config});

    add(app, "iscsi_set_options",
        "Set the iSCSI target's global options (only while no portal group and no target node "
        "exist).",
        option_params(),
        [](const Json& p, Responder r) {
            auto o = options_of(p);
            if (!o.ok()) return fail(r, o.error());
            reply(r, set_options(*o));
        },
        rpc::Allowed::both);
    add(app, "iscsi_get_options", "The iSCSI target's global options.", {},
        [](const Json&, Responder r) { r.result(options_json(options(), true)); });

    // ---- portal groups ----
    add(app, "iscsi_create_portal_group",
        "Create a portal group and listen on its portals (unless wait).",
        {tag_param("Portal group"),
         {"portals", PT::array, true, "List of portals: [{\"host\": ip, \"port\": port}]",
          nullptr},
         {"private", PT::bool_, false, "Private: not reported by SendTargets", false},
         {"wait", PT::bool_, false, "Listen only after iscsi_start_portal_group", false}},
        [](const Json& p, Responder r) {
            auto tag = tag_of(p);
            if (!tag.ok()) return fail(r, tag.error());
            auto portals = portals_of(p.at("portals"));
            if (!portals.ok()) return fail(r, portals.error());
            PortalGroupConfig pg;
            pg.tag = *tag;
            pg.portals = std::move(*portals);
            pg.is_private = rpc::param_or<bool>(p, "private", false);
            pg.wait = rpc::param_or<bool>(p, "wait", false);
            reply(r, create_portal_group(pg));
        });
    add_tag_method(app, "iscsi_start_portal_group",
                   "Start listening on a portal group created with wait.", "Portal group",
                   &start_portal_group);
    add_tag_method(app, "iscsi_delete_portal_group",
                   "Delete a portal group (stops listening, closes its connections); not while "
                   "a target node maps it.",
                   "Portal group", &delete_portal_group);
    add(app, "iscsi_get_portal_groups", "List the portal groups.", {},
        [](const Json&, Responder r) {
            Json out = Json::array();
            for (const auto& pg : portal_groups()) out.push_back(portal_group_json(pg));
            r.result(std::move(out));
        });

    // ---- initiator groups ----
    const std::vector<rpc::ParamSpec> ig_params = {
        tag_param("Initiator group"),
        {"initiators", PT::array, true,
         "Initiator names: \"ANY\", an iSCSI name, or \"!\" + either to deny", nullptr},
        {"netmasks", PT::array, true,
         "Netmasks: \"ANY\", \"192.168.1.0/24\", \"[2001:db8::]/32\"", nullptr}};
    auto ig_of = [](const Json& p) -> Result<InitiatorGroupConfig> {
        auto tag = tag_of(p);
        if (!tag.ok()) return tag.error();
        auto inis = strings_of(p, "initiators");
        if (!inis.ok()) return inis.error();
        auto masks = strings_of(p, "netmasks");
        if (!masks.ok()) return masks.error();
        return InitiatorGroupConfig{*tag, std::move(*inis), std::move(*masks)};
    };
    add(app, "iscsi_create_initiator_group",
        "Create an initiator group (initiator names and netmasks: the ACL of the target nodes "
        "that map it).",
        ig_params, [ig_of](const Json& p, Responder r) {
            auto ig = ig_of(p);
            if (!ig.ok()) return fail(r, ig.error());
            reply(r, create_initiator_group(*ig));
        });
    std::vector<rpc::ParamSpec> ig_change = ig_params;
    ig_change[1].required = ig_change[2].required = false;
    add(app, "iscsi_initiator_group_add_initiators",
        "Add initiator names and/or netmasks to an initiator group (all or nothing).", ig_change,
        [ig_of](const Json& p, Responder r) {
            auto ig = ig_of(p);
            if (!ig.ok()) return fail(r, ig.error());
            reply(r, initiator_group_add_initiators(*ig));
        });
    add(app, "iscsi_initiator_group_remove_initiators",
        "Remove initiator names and/or netmasks from an initiator group (all or nothing).",
        ig_change, [ig_of](const Json& p, Responder r) {
            auto ig = ig_of(p);
            if (!ig.ok()) return fail(r, ig.error());
            reply(r, initiator_group_remove_initiators(*ig));
        });
    add_tag_method(app, "iscsi_delete_initiator_group",
                   "Delete an initiator group; not while a target node maps it.",
                   "Initiator group", &delete_initiator_group);
    add(app, "iscsi_get_initiator_groups", "List the initiator groups.", {},
        [](const Json&, Responder r) {
            Json out = Json::array();
            for (const auto& ig : initiator_groups()) out.push_back(initiator_group_json(ig));
            r.result(std::move(out));
        });

    // ---- auth groups ----
    add(app, "iscsi_create_auth_group", "Create a CHAP authentication group.",
        {tag_param("Auth group"),
         {"secrets", PT::array, false,
          "[{\"user\", \"secret\", \"muser\", \"msecret\"}] (muser/msecret: mutual CHAP)",
          nullptr}},
        [](const Json& p, Responder r) {
            auto tag = tag_of(p);
            if (!tag.ok()) return fail(r, tag.error());
            AuthGroupConfig ag{*tag, {}};
            if (auto it = p.find("secrets"); it != p.end()) {
                if (it->size() > 64)  // SPDK's MAX_AUTH_SECRETS
                    return fail(r, Error(Errc::invalid_argument, "more than 64 secrets"));
                for (size_t i = 0; i < it->size(); ++i) {
                    auto c = check_members((*it)[i], fmt::format("secrets[{}]", i),
                                           secret_members());
                    if (!c.ok()) return fail(r, c.error());
                    ag.secrets.push_back(secret_of((*it)[i]));
                }
            }
            reply(r, create_auth_group(ag));
        });
    std::vector<rpc::ParamSpec> add_secret = secret_members();
    add_secret.insert(add_secret.begin(), tag_param("Auth group"));
    add(app, "iscsi_auth_group_add_secret", "Add a CHAP secret to an auth group.", add_secret,
        [](const Json& p, Responder r) {
            auto tag = tag_of(p);
            if (!tag.ok()) return fail(r, tag.error());
            reply(r, auth_group_add_secret(*tag, secret_of(p)));
        });
    add(app, "iscsi_auth_group_remove_secret", "Remove a CHAP secret (by user) from an auth group.",
        {tag_param("Auth group"), {"user", PT::string, true, "User name", nullptr}},
        [](const Json& p, Responder r) {
            auto tag = tag_of(p);
            if (!tag.ok()) return fail(r, tag.error());
            reply(r, auth_group_remove_secret(*tag, p.at("user").get<std::string>()));
        });
    add_tag_method(app, "iscsi_delete_auth_group",
                   "Delete an auth group; not while a target node or discovery uses it.",
                   "Auth group", &delete_auth_group);
    add(app, "iscsi_get_auth_groups", "List the auth groups with their secrets.", {},
        [](const Json&, Responder r) {
            Json out = Json::array();
            for (const auto& ag : auth_groups()) out.push_back(auth_group_json(ag));
            r.result(std::move(out));
        });
    add(app, "iscsi_set_discovery_auth", "Set CHAP for discovery sessions.",
        chap_params("discovery sessions"), [](const Json& p, Responder r) {
            auto a = chap_of(p);
            if (!a.ok()) return fail(r, a.error());
            reply(r, set_discovery_auth(*a));
        });

    // ---- target nodes ----
    std::vector<rpc::ParamSpec> node_params = {
        {"name", PT::string, true,
         "Target node name: an iqn./eui./naa. name, or short (prefixed with node_base + \":\")",
         nullptr},
        {"alias_name", PT::string, false, "Target node alias (TargetAlias)", ""},
        {"pg_ig_maps", PT::array, true, "[{\"pg_tag\": pg, \"ig_tag\": ig}]", nullptr},
        {"luns", PT::array, true, "[{\"bdev_name\": name, \"lun_id\": id}] (at most 64)", nullptr},
        {"queue_depth", PT::int_, true, "Commands per session (1-max_queue_depth)", nullptr}};
    for (auto& c : chap_params("this target node")) node_params.push_back(std::move(c));
    node_params.push_back(
        {"header_digest", PT::bool_, false, "Require CRC32C header digests", false});
    node_params.push_back({"data_digest", PT::bool_, false, "Require CRC32C data digests", false});
    add(app, "iscsi_create_target_node",
        "Create a target node: its SCSI device with LUNs over bdevs (claimed), reachable through "
        "the mapped portal and initiator groups.",
        node_params, [](const Json& p, Responder r) {
            TargetNodeConfig n;
            n.name = p.at("name").get<std::string>();
            n.alias_name = rpc::param_or<std::string>(p, "alias_name", "");
            auto maps = maps_of(p.at("pg_ig_maps"));
            if (!maps.ok()) return fail(r, maps.error());
            n.pg_ig_maps = std::move(*maps);
            auto luns = luns_of(p.at("luns"));
            if (!luns.ok()) return fail(r, luns.error());
            n.luns = std::move(*luns);
            auto qd = int32_of(p.at("queue_depth"), "queue_depth");
            if (!qd.ok()) return fail(r, qd.error());
            n.queue_depth = *qd;
            auto a = chap_of(p);
            if (!a.ok()) return fail(r, a.error());
            n.disable_chap = a->disable_chap;
            n.require_chap = a->require_chap;
            n.mutual_chap = a->mutual_chap;
            n.chap_group = a->chap_group;
            n.header_digest = rpc::param_or<bool>(p, "header_digest", false);
            n.data_digest = rpc::param_or<bool>(p, "data_digest", false);
            create_target_node(n, [r = share(std::move(r))](Result<void> res) { reply(*r, res); });
        });
    const rpc::ParamSpec name_param = {"name", PT::string, true, "Target node name", nullptr};
    add(app, "iscsi_delete_target_node",
        "Delete a target node: its sessions end, its SCSI device and LUNs go (bdevs released).",
        {name_param}, [](const Json& p, Responder r) {
            delete_target_node(p.at("name").get<std::string>(),
                               [r = share(std::move(r))](Result<void> res) { reply(*r, res); });
        });
    add(app, "iscsi_get_target_nodes", "List the target nodes.", {},
        [](const Json&, Responder r) {
            Json out = Json::array();
            for (const auto& n : target_nodes()) out.push_back(target_node_json(n));
            r.result(std::move(out));
        });
    add(app, "iscsi_target_node_add_lun", "Add a LUN backed by a bdev to a target node.",
        {name_param, {"bdev_name", PT::string, true, "bdev name", nullptr},
         {"lun_id", PT::int_, false, "LUN id (-1 or absent: the lowest free one)", -1}},
        [](const Json& p, Responder r) {
            TargetLun l{p.at("bdev_name").get<std::string>(), -1};
            if (auto it = p.find("lun_id"); it != p.end()) {
                auto id = int32_of(*it, "lun_id");
                if (!id.ok()) return fail(r, id.error());
                l.lun_id = *id;
            }
            target_node_add_lun(p.at("name").get<std::string>(), l,
                                [r = share(std::move(r))](Result<void> res) { reply(*r, res); });
        });
    const std::vector<rpc::ParamSpec> map_params = {
        name_param,
        {"pg_ig_maps", PT::array, true, "[{\"pg_tag\": pg, \"ig_tag\": ig}]", nullptr}};
    add(app, "iscsi_target_node_add_pg_ig_maps",
        "Map portal groups to initiator groups on a target node (all or nothing).", map_params,
        [](const Json& p, Responder r) {
            auto maps = maps_of(p.at("pg_ig_maps"));
            if (!maps.ok()) return fail(r, maps.error());
            reply(r, target_node_add_pg_ig_maps(p.at("name").get<std::string>(), *maps));
        });
    add(app, "iscsi_target_node_remove_pg_ig_maps",
        "Remove portal group to initiator group maps from a target node (all or nothing).",
        map_params, [](const Json& p, Responder r) {
            auto maps = maps_of(p.at("pg_ig_maps"));
            if (!maps.ok()) return fail(r, maps.error());
            reply(r, target_node_remove_pg_ig_maps(p.at("name").get<std::string>(), *maps));
        });
    std::vector<rpc::ParamSpec> auth_params = {name_param};
    for (auto& c : chap_params("this target node")) auth_params.push_back(std::move(c));
    add(app, "iscsi_target_node_set_auth", "Set a target node's CHAP policy.", auth_params,
        [](const Json& p, Responder r) {
            auto a = chap_of(p);
            if (!a.ok()) return fail(r, a.error());
            reply(r, target_node_set_auth(p.at("name").get<std::string>(), *a));
        });

    add(app, "iscsi_get_connections", "List the iSCSI connections.", {},
        [](const Json&, Responder r) {
            get_connections([r = share(std::move(r))](std::vector<ConnectionInfo> conns) {
                Json out = Json::array();
                for (const auto& c : conns)
                    out.push_back({{"id", c.id},
                                   {"cid", c.cid},
                                   {"tsih", c.tsih},
                                   {"lcore_id", c.lcore_id},
                                   {"initiator_addr", c.initiator_addr},
                                   {"target_addr", c.target_addr},
                                   {"target_node_name", c.target_node_name}});
                r->result(std::move(out));
            });
        });
}

}  // namespace strata::iscsi
