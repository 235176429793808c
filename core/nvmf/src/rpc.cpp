// The nvmf_* RPCs with SPDK's names, parameter names and result shapes, and the "nvmf"
// subsystem of save_config/load_config. Parameters SPDK has and Strata does not implement are
// accepted at their default value and refused (with a message naming them) otherwise.
#include <strings.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <strata/nvmf/nvmf.h>
#include <strata/rpc/app.h>

#include "core.h"

namespace strata::nvmf {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

void add(rpc::App& app, std::string name, std::string description,
         std::vector<rpc::ParamSpec> params, rpc::Handler handler) {
    rpc::MethodSpec spec;
    spec.name = std::move(name);
    spec.description = std::move(description);
    spec.params = std::move(params);
    spec.allowed = rpc::Allowed::runtime;
    spec.subsystem = "nvmf";
    spec.handler = std::move(handler);
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "nvmf RPC registration failed: %s", r.error().message().c_str());
}

rpc::ParamSpec tgt_name() {
    return {"tgt_name", PT::string, false,
            "Target name (accepted for SPDK compatibility; one target per App)", nullptr};
}

// An unimplemented parameter: OK when absent or at its default.
bool refuse_non_default(const Json& p, const char* key, const Json& def, Responder& r) {
    auto it = p.find(key);
    if (it == p.end() || it->is_null() || *it == def) return false;
    r.error(rpc::error_code::invalid_params,
            fmt::format("parameter '{}' is not supported by Strata's NVMe-oF target (only {} is)",
                        key, def.dump()));
    return true;
}

bool check_tgt(const Json& p, Responder& r) {
    auto it = p.find("tgt_name");
    if (it == p.end() || it->is_null()) return true;
    r.error(rpc::error_code::invalid_params,
            fmt::format("Unable to find target {}: Strata has one NVMe-oF target per App, use no "
                        "tgt_name",
                        it->get<std::string>()));
    return false;
}

Result<TransportAddress> parse_address(const Json& a) {
    if (!a.is_object()) return Error(Errc::invalid_argument, "listen_address must be an object");
    for (auto it = a.begin(); it != a.end(); ++it) {
        const std::string& k = it.key();
        if (k != "trtype" && k != "transport" && k != "adrfam" && k != "traddr" && k != "trsvcid")
            return Error(Errc::invalid_argument,
                         fmt::format("unknown parameter 'listen_address.{}'", k));
        if (!it->is_string())
            return Error(Errc::invalid_argument,
                         fmt::format("'listen_address.{}' must be a string", k));
    }
    TransportAddress t;
    t.trtype = a.value("trtype", a.value("transport", std::string()));
    if (t.trtype.empty()) return Error(Errc::invalid_argument, "listen_address.trtype is required");
    if (!a.contains("traddr"))
        return Error(Errc::invalid_argument, "listen_address.traddr is required");
    t.traddr = a["traddr"].get<std::string>();
    t.adrfam = a.value("adrfam", std::string("IPv4"));
    if (strcasecmp(t.adrfam.c_str(), "ipv4") == 0) t.adrfam = "IPv4";
    else if (strcasecmp(t.adrfam.c_str(), "ipv6") == 0) t.adrfam = "IPv6";
    else return Error(Errc::invalid_argument, fmt::format("Invalid adrfam {}", t.adrfam));
    t.trsvcid = a.value("trsvcid", std::string());
    if (t.trsvcid.empty()) return Error(Errc::invalid_argument, "listen_address.trsvcid is required");
    return t;
}

Json address_json(const TransportAddress& a) {
    return {{"trtype", a.trtype}, {"adrfam", a.adrfam}, {"traddr", a.traddr},
            {"trsvcid", a.trsvcid}};
}

bool parse_hex(const std::string& s, uint8_t* out, size_t n) {
    std::string h;
    for (char c : s)
        if (c != '-') h += c;
    if (h.size() != 2 * n) return false;
    for (size_t i = 0; i < n; ++i) {
        unsigned v = 0;
        for (size_t k = 0; k < 2; ++k) {
            const char c = h[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else return false;
        }
        out[i] = static_cast<uint8_t>(v);
    }
    return true;
}

Result<NamespaceOptions> parse_namespace(const Json& n) {
    if (!n.is_object()) return Error(Errc::invalid_argument, "namespace must be an object");
    NamespaceOptions o;
    for (auto it = n.begin(); it != n.end(); ++it) {
        const std::string& k = it.key();
        if (k == "bdev_name" && it->is_string()) o.bdev_name = it->get<std::string>();
        else if (k == "nsid" && it->is_number_integer() && *it >= 0 && *it <= 0xFFFFFFFFll)
            o.nsid = it->get<uint32_t>();
        else if (k == "uuid" && it->is_string()) {
            if (!parse_uuid(it->get<std::string>(), o.uuid))
                return Error(Errc::invalid_argument, "Invalid UUID " + it->get<std::string>());
            o.uuid_given = true;
        } else if (k == "nguid" && it->is_string()) {
            if (!parse_hex(it->get<std::string>(), o.nguid.data(), 16))
                return Error(Errc::invalid_argument, "Invalid NGUID " + it->get<std::string>());
        } else if (k == "eui64" && it->is_string()) {
            if (!parse_hex(it->get<std::string>(), o.eui64.data(), 8))
                return Error(Errc::invalid_argument, "Invalid EUI64 " + it->get<std::string>());
        } else if ((k == "ptpl_file" && (it->is_null() || *it == "")) ||
                   (k == "anagrpid" && (*it == 0 || *it == 1)) ||
                   (k == "no_auto_visible" && *it == false) || (k == "hide_metadata" && *it == false)) {
            // SPDK parameters at their default
        } else if (k == "ptpl_file" || k == "anagrpid" || k == "no_auto_visible" ||
                   k == "hide_metadata") {
            return Error(Errc::invalid_argument,
                         fmt::format("namespace.{} is not supported by Strata's NVMe-oF target", k));
        } else {
            return Error(Errc::invalid_argument, fmt::format("invalid parameter 'namespace.{}'", k));
        }
    }
    if (o.bdev_name.empty()) return Error(Errc::invalid_argument, "namespace.bdev_name is required");
    return o;
}

Json subsystem_json(const SubsystemInfo& s) {
    Json j;
    j["nqn"] = s.nqn;
    j["subtype"] = s.discovery ? "Discovery" : "NVMe";
    Json la = Json::array();
    for (const auto& l : s.listeners) {
        Json a = address_json(l);
        a["transport"] = l.trtype;
        la.push_back(std::move(a));
    }
    j["listen_addresses"] = std::move(la);
    j["allow_any_host"] = s.allow_any_host;
    Json hosts = Json::array();
    for (const auto& h : s.hosts) hosts.push_back({{"nqn", h}});
    j["hosts"] = std::move(hosts);
    if (!s.discovery) {
        j["serial_number"] = s.serial_number;
        j["model_number"] = s.model_number;
        j["max_namespaces"] = s.max_namespaces;
        j["min_cntlid"] = s.min_cntlid;
        j["max_cntlid"] = s.max_cntlid;
        Json ns = Json::array();
        for (const auto& n : s.namespaces) {
            Json e = {{"nsid", n.nsid}, {"bdev_name", n.bdev_name}, {"name", n.bdev_name}};
            if (!n.nguid.empty()) e["nguid"] = n.nguid;
            if (!n.eui64.empty()) e["eui64"] = n.eui64;
            if (n.uuid != "00000000-0000-0000-0000-000000000000") e["uuid"] = n.uuid;
            ns.push_back(std::move(e));
        }
        j["namespaces"] = std::move(ns);
    }
    return j;
}

void write_config(rpc::App&, Json& cfg) {
    for (Transport* t : transports()) {
        Json params = Json::parse(t->options_json(), nullptr, false);
        if (params.is_discarded() || !params.is_object()) params = {{"trtype", t->name()}};
        cfg.push_back({{"method", "nvmf_create_transport"}, {"params", std::move(params)}});
    }
    const auto subs = subsystems();
    for (const auto& s : subs) {
        if (s.discovery) continue;
        cfg.push_back({{"method", "nvmf_create_subsystem"},
                       {"params",
                        {{"nqn", s.nqn},
                         {"serial_number", s.serial_number},
                         {"model_number", s.model_number},
                         {"allow_any_host", s.allow_any_host},
                         {"max_namespaces", s.max_namespaces},
                         {"min_cntlid", s.min_cntlid},
                         {"max_cntlid", s.max_cntlid}}}});
        for (const auto& n : s.namespaces) {
            Json ns = {{"bdev_name", n.bdev_name}, {"nsid", n.nsid}};
            if (n.uuid_given) ns["uuid"] = n.uuid;
            if (!n.nguid.empty()) ns["nguid"] = n.nguid;
            if (!n.eui64.empty()) ns["eui64"] = n.eui64;
            cfg.push_back({{"method", "nvmf_subsystem_add_ns"},
                           {"params", {{"nqn", s.nqn}, {"namespace", std::move(ns)}}}});
        }
        for (const auto& h : s.hosts)
            cfg.push_back({{"method", "nvmf_subsystem_add_host"},
                           {"params", {{"nqn", s.nqn}, {"host", h}}}});
    }
    // Listeners last (after every transport exists), the discovery subsystem's too.
    for (const auto& s : subs)
        for (const auto& l : s.listeners)
            cfg.push_back({{"method", "nvmf_subsystem_add_listener"},
                           {"params", {{"nqn", s.nqn}, {"listen_address", address_json(l)}}}});
}

void fini(rpc::App&, std::function<void()> done) { shutdown(std::move(done)); }

}  // namespace

void register_rpc_module(rpc::App& app) {
    // init binds the Target to the app Thread (where RPCs, and so every control call, run).
    (void)app.add_subsystem(rpc::Subsystem{
        "nvmf", {"bdev"},
        [](rpc::App& a, std::function<void(Result<void>)> done) {
            target_impl().thread = &a.thread();
            done({});
        },
        &fini, &write_config});

    add(app, "nvmf_create_subsystem", "Create an NVMe-oF subsystem.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"serial_number", PT::string, false, "Serial number (up to 20 ASCII characters)",
          "00000000000000000000"},
         {"model_number", PT::string, false, "Model number (up to 40 ASCII characters)",
          "Strata bdev Controller"},
         tgt_name(),
         {"max_namespaces", PT::uint, false, "Maximum number of namespaces (0: 32)", 0},
         {"allow_any_host", PT::bool_, false, "Allow any host to connect", false},
         {"ana_reporting", PT::bool_, false, "ANA reporting (not supported: false only)", false},
         {"min_cntlid", PT::uint, false, "Minimum controller ID", 1},
         {"max_cntlid", PT::uint, false, "Maximum controller ID", 0xFFEF},
         {"max_discard_size_kib", PT::uint, false, "Not supported: 0 only", 0},
         {"max_write_zeroes_size_kib", PT::uint, false, "Not supported: 0 only", 0},
         {"passthrough", PT::bool_, false, "Not supported: false only", false},
         {"enable_nssr", PT::bool_, false, "Not supported: false only", false}},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r) || refuse_non_default(p, "ana_reporting", false, r) ||
                refuse_non_default(p, "max_discard_size_kib", 0, r) ||
                refuse_non_default(p, "max_write_zeroes_size_kib", 0, r) ||
                refuse_non_default(p, "passthrough", false, r) ||
                refuse_non_default(p, "enable_nssr", false, r))
                return;
            SubsystemOptions o;
            o.nqn = p.at("nqn").get<std::string>();
            o.serial_number = rpc::param_or<std::string>(p, "serial_number", o.serial_number);
            o.model_number = rpc::param_or<std::string>(p, "model_number", o.model_number);
            o.max_namespaces = rpc::param_or<uint32_t>(p, "max_namespaces", 0);
            o.allow_any_host = rpc::param_or<bool>(p, "allow_any_host", false);
            const uint64_t lo = rpc::param_or<uint64_t>(p, "min_cntlid", 1);
            const uint64_t hi = rpc::param_or<uint64_t>(p, "max_cntlid", 0xFFEF);
            if (lo > 0xFFFF || hi > 0xFFFF)
                return r.error(rpc::error_code::invalid_params,
                               fmt::format("Invalid cntlid range [{}-{}]", lo, hi));
            o.min_cntlid = static_cast<uint16_t>(lo);
            o.max_cntlid = static_cast<uint16_t>(hi);
            auto res = create_subsystem(o);
            if (!res.ok() && res.error().code() == Errc::invalid_argument)
                return r.error(rpc::error_code::invalid_params, res.error().message());
            r.reply(res);
        });

    add(app, "nvmf_delete_subsystem", "Delete an NVMe-oF subsystem (disconnecting its hosts).",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            delete_subsystem(p.at("nqn").get<std::string>(),
                             [r = std::make_shared<Responder>(std::move(r))](Result<void> res) { r->reply(res); });
        });

    add(app, "nvmf_get_subsystems", "List NVMe-oF subsystems (the discovery subsystem first).",
        {tgt_name(), {"nqn", PT::string, false, "Only this subsystem", nullptr}},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            Json out = Json::array();
            if (auto it = p.find("nqn"); it != p.end() && !it->is_null()) {
                auto s = subsystem_info(it->get<std::string>());
                if (!s.ok()) return r.error(s.error());
                out.push_back(subsystem_json(*s));
            } else {
                for (const auto& s : subsystems()) out.push_back(subsystem_json(s));
            }
            r.result(std::move(out));
        });

    const std::vector<rpc::ParamSpec> listener_params = {
        {"nqn", PT::string, true, "Subsystem NQN", nullptr},
        {"listen_address", PT::object, true, "{trtype, adrfam, traddr, trsvcid}", nullptr},
        tgt_name(),
        {"secure_channel", PT::bool_, false, "TLS (not supported: false only)", false},
        {"sock_impl", PT::string, false, "Not supported: absent only", nullptr}};
    add(app, "nvmf_subsystem_add_listener",
        "Listen for a subsystem on a transport address (the transport must exist).",
        listener_params, [](const Json& p, Responder r) {
            if (!check_tgt(p, r) || refuse_non_default(p, "secure_channel", false, r) ||
                refuse_non_default(p, "sock_impl", nullptr, r))
                return;
            auto a = parse_address(p.at("listen_address"));
            if (!a.ok()) return r.error(rpc::error_code::invalid_params, a.error().message());
            r.reply(add_listener(p.at("nqn").get<std::string>(), *a));
        });
    add(app, "nvmf_subsystem_remove_listener", "Stop listening for a subsystem on an address.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"listen_address", PT::object, true, "{trtype, adrfam, traddr, trsvcid}", nullptr},
         tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            auto a = parse_address(p.at("listen_address"));
            if (!a.ok()) return r.error(rpc::error_code::invalid_params, a.error().message());
            r.reply(remove_listener(p.at("nqn").get<std::string>(), *a));
        });

    add(app, "nvmf_subsystem_add_ns", "Add a namespace backed by a bdev; returns its NSID.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"namespace", PT::object, true, "{bdev_name, nsid, uuid, nguid, eui64}", nullptr},
         tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            auto o = parse_namespace(p.at("namespace"));
            if (!o.ok()) return r.error(rpc::error_code::invalid_params, o.error().message());
            auto res = add_namespace(p.at("nqn").get<std::string>(), *o);
            if (!res.ok()) return r.error(res.error());
            r.result(*res);
        });
    add(app, "nvmf_subsystem_remove_ns", "Remove a namespace.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"nsid", PT::uint, true, "Namespace ID", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            remove_namespace(p.at("nqn").get<std::string>(), p.at("nsid").get<uint32_t>(),
                             [r = std::make_shared<Responder>(std::move(r))](Result<void> res) { r->reply(res); });
        });

    add(app, "nvmf_subsystem_add_host", "Allow a host NQN to connect.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"host", PT::string, true, "Host NQN", nullptr}, tgt_name(),
         {"psk", PT::string, false, "Not supported: absent only", nullptr},
         {"dhchap_key", PT::string, false, "Not supported: absent only", nullptr},
         {"dhchap_ctrlr_key", PT::string, false, "Not supported: absent only", nullptr}},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r) || refuse_non_default(p, "psk", nullptr, r) ||
                refuse_non_default(p, "dhchap_key", nullptr, r) ||
                refuse_non_default(p, "dhchap_ctrlr_key", nullptr, r))
                return;
            auto res = add_host(p.at("nqn").get<std::string>(), p.at("host").get<std::string>());
            if (!res.ok() && res.error().code() == Errc::invalid_argument)
                return r.error(rpc::error_code::invalid_params, res.error().message());
            r.reply(res);
        });
    add(app, "nvmf_subsystem_remove_host",
        "Disallow a host NQN (its controllers are disconnected).",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"host", PT::string, true, "Host NQN", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            r.reply(remove_host(p.at("nqn").get<std::string>(), p.at("host").get<std::string>()));
        });
    add(app, "nvmf_subsystem_allow_any_host", "Allow any host (or only the listed ones).",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr},
         {"allow_any_host", PT::bool_, true, "Allow any host", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            r.reply(set_allow_any_host(p.at("nqn").get<std::string>(),
                                        p.at("allow_any_host").get<bool>()));
        });

    add(app, "nvmf_subsystem_get_controllers", "List a subsystem's controllers.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            auto cs = controllers(p.at("nqn").get<std::string>());
            if (!cs.ok()) return r.error(cs.error());
            Json out = Json::array();
            for (const auto& c : *cs)
                out.push_back({{"cntlid", c.cntlid},
                               {"hostnqn", c.hostnqn},
                               {"hostid", c.hostid},
                               {"num_io_qpairs", c.num_io_qpairs}});
            r.result(std::move(out));
        });
    add(app, "nvmf_subsystem_get_qpairs", "List a subsystem's queue pairs.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            auto qs = qpairs(p.at("nqn").get<std::string>());
            if (!qs.ok()) return r.error(qs.error());
            Json out = Json::array();
            for (const auto& q : *qs)
                out.push_back({{"cntlid", q.cntlid},
                               {"qid", q.qid},
                               {"state", q.state},
                               {"listen_address", address_json(q.listen_address)}});
            r.result(std::move(out));
        });
    add(app, "nvmf_subsystem_get_listeners", "List a subsystem's listeners.",
        {{"nqn", PT::string, true, "Subsystem NQN", nullptr}, tgt_name()},
        [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            auto s = subsystem_info(p.at("nqn").get<std::string>());
            if (!s.ok()) return r.error(s.error());
            Json out = Json::array();
            for (const auto& l : s->listeners)
                out.push_back({{"address", address_json(l)}, {"ana_state", "optimized"}});
            r.result(std::move(out));
        });
    add(app, "nvmf_get_stats", "Target statistics: one entry per poll group (gathered on its Thread).",
        {tgt_name()}, [](const Json& p, Responder r) {
            if (!check_tgt(p, r)) return;
            poll_group_stats([r = std::make_shared<Responder>(std::move(r))](
                                 std::vector<PollGroupStats> groups) {
                Json pgs = Json::array();
                for (const auto& g : groups) {
                    Json tr = Json::array();
                    for (const auto& t : g.transports) tr.push_back({{"trtype", t}});
                    pgs.push_back({{"name", g.name},
                                   {"admin_qpairs", g.admin_qpairs},
                                   {"io_qpairs", g.io_qpairs},
                                   {"current_admin_qpairs", g.current_admin_qpairs},
                                   {"current_io_qpairs", g.current_io_qpairs},
                                   {"pending_bdev_io", g.pending_bdev_io},
                                   {"completed_nvme_io", g.completed_nvme_io},
                                   {"transports", std::move(tr)}});
                }
                // SPDK's tick_rate is its TSC rate; Strata's clock counts nanoseconds.
                r->result({{"tick_rate", 1'000'000'000}, {"poll_groups", std::move(pgs)}});
            });
        });
}

}  // namespace strata::nvmf
