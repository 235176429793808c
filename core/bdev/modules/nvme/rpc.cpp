// bdev_nvme_set_options / _attach_controller / _detach_controller / _get_controllers /
// _reset_controller / _discover.
#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/rpc/params.h>
#include <strata/runtime/task.h>

#include "nvme/nvme.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

Json trid_json(const NvmeControllerInfo& c) {
    if (c.trid.trtype != nvme::TrType::tcp) return {{"trtype", "PCIe"}, {"traddr", c.traddr}};
    return {{"trtype", "TCP"},
            {"adrfam", nvme::adrfam_name(c.trid.adrfam)},
            {"traddr", c.trid.traddr},
            {"trsvcid", c.trid.trsvcid},
            {"subnqn", c.trid.subnqn}};
}

// SPDK's bdev_nvme_set_options parameters that Strata does not implement, with SPDK's default:
// accepted at that value (SPDK's scripts and saved configs send them), refused otherwise.
struct Unsupported {
    const char* name;
    PT type;
    Json def;
    const char* what;
};
const std::vector<Unsupported>& unsupported_options() {
    static const std::vector<Unsupported> v = {
        {"transport_retry_count", PT::uint, 4,
         "Driver-level retries (Strata's driver does not retry; bdev_retry_count does)"},
        {"retry_count", PT::uint, 4, "Old name of transport_retry_count"},
        {"arbitration_burst", PT::uint, 0, "Arbitration burst"},
        {"low_priority_weight", PT::uint, 0, "Weighted round robin weight"},
        {"medium_priority_weight", PT::uint, 0, "Weighted round robin weight"},
        {"high_priority_weight", PT::uint, 0, "Weighted round robin weight"},
        {"nvme_adminq_poll_period_us", PT::uint, 10000, "Admin queue poll period"},
        {"nvme_ioq_poll_period_us", PT::uint, 0, "I/O queue poll period (Strata polls every pass)"},
        {"delay_cmd_submit", PT::bool_, true,
         "Doorbell batching (Strata always batches within a poll)"},
        {"transport_ack_timeout", PT::uint, 0, "RDMA/TCP ack timeout"},
        {"disable_auto_failback", PT::bool_, false, "Multipath failback"},
        {"generate_uuids", PT::bool_, false, "UUIDs for namespaces without one"},
        {"transport_tos", PT::uint, 0, "RDMA type of service"},
        {"nvme_error_stat", PT::bool_, false, "NVMe error statistics"},
        {"rdma_srq_size", PT::uint, 0, "RDMA"},
        {"io_path_stat", PT::bool_, false, "Per-path I/O statistics"},
        {"allow_accel_sequence", PT::bool_, false, "Accel sequences"},
        {"rdma_max_cq_size", PT::uint, 0, "RDMA"},
        {"rdma_cm_event_timeout_ms", PT::uint, 0, "RDMA"},
        {"rdma_umr_per_io", PT::bool_, false, "RDMA"},
        {"tcp_connect_timeout_ms", PT::uint, 0,
         "TCP connect timeout (bdev_nvme_attach_controller's fabrics_connect_timeout_us is "
         "Strata's)"},
        {"dhchap_digests", PT::array, Json::array({"sha256", "sha384", "sha512"}),
         "DH-HMAC-CHAP digests (no in-band authentication)"},
        {"dhchap_dhgroups", PT::array,
         Json::array({"null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"}),
         "DH-HMAC-CHAP groups (no in-band authentication)"},
    };
    return v;
}

// bdev_nvme_attach_controller parameters for features Strata lacks (SPDK's rpc.py sends the
// store_true ones as false).
const std::vector<rpc::DefaultOnlyParam>& attach_default_only() {
    static const std::vector<rpc::DefaultOnlyParam> v = {
        {"prchk_reftag", PT::bool_, false, "end-to-end protection (DIF) checks"},
        {"prchk_guard", PT::bool_, false, "end-to-end protection (DIF) checks"},
        {"allow_unrecognized_csi", PT::bool_, false, "namespaces of unrecognized command sets"},
        {"multipath", PT::string, "disable", "multipath (several paths to one controller name)"},
        {"priority", PT::string, nullptr, "multipath path priorities"},
        {"psk", PT::string, nullptr, "NVMe/TCP TLS (pre-shared keys)"},
        {"dhchap_key", PT::string, nullptr, "DH-HMAC-CHAP authentication"},
        {"dhchap_ctrlr_key", PT::string, nullptr, "DH-HMAC-CHAP authentication"},
    };
    return v;
}

// At its default: equal, or for the DH-HMAC-CHAP lists the same names in any order.
bool at_default(const Json& v, const Json& def) {
    if (v == def) return true;
    if (!v.is_array() || !def.is_array() || v.size() != def.size()) return false;
    for (const auto& e : def)
        if (std::find(v.begin(), v.end(), e) == v.end()) return false;
    return true;
}

Error not_supported(const std::string& name, const Json& def) {
    return Error(Errc::not_supported,
                 fmt::format("bdev_nvme_set_options: parameter '{}' is not supported by Strata "
                             "(only its default {} is accepted)",
                             name, def.dump()));
}


// bdev_nvme_set_options: SPDK's semantics (a parameter not given keeps its current value).
Result<void> set_options(const Json& p) {
    for (const auto& u : unsupported_options()) {
        auto it = p.find(u.name);
        if (it != p.end() && !it->is_null() && !at_default(*it, u.def))
            return not_supported(u.name, u.def);
    }
    if (auto it = p.find("multipath_opts"); it != p.end() && !it->is_null()) {
        auto pol = it->find("policy");
        if (pol != it->end() && !pol->is_null() && *pol != "active_passive")
            return not_supported("multipath_opts.policy", "active_passive");
    }
    NvmeModuleOptions o = nvme_options();
    if (auto it = p.find("action_on_timeout"); it != p.end() && !it->is_null()) {
        const std::string a = it->get<std::string>();
        if (a == "none")
            o.action_on_timeout = NvmeTimeoutAction::none;
        else if (a == "abort")
            o.action_on_timeout = NvmeTimeoutAction::abort;
        else if (a == "reset")
            return Error(Errc::not_supported,
                         "action_on_timeout reset is not supported: Strata's driver aborts a "
                         "timed-out command, then resets the controller (abort)");
        else
            return Error(Errc::invalid_argument, fmt::format("Invalid action_on_timeout {}", a));
    }
    auto take = [&p](const char* key, auto& field) -> Result<void> {
        auto v = rpc::int_param(p, key, field);
        if (!v) return v.error();
        field = *v;
        return {};
    };
    STRATA_TRY(take("timeout_us", o.timeout_us));
    STRATA_TRY(take("timeout_admin_us", o.timeout_admin_us));
    STRATA_TRY(take("keep_alive_timeout_ms", o.keep_alive_timeout_ms));
    STRATA_TRY(take("io_queue_requests", o.io_queue_requests));
    STRATA_TRY(take("bdev_retry_count", o.bdev_retry_count));
    STRATA_TRY(take("ctrlr_loss_timeout_sec", o.ctrlr_loss_timeout_sec));
    STRATA_TRY(take("reconnect_delay_sec", o.reconnect_delay_sec));
    STRATA_TRY(take("fast_io_fail_timeout_sec", o.fast_io_fail_timeout_sec));
    return nvme_set_options(o);
}

std::vector<rpc::ParamSpec> set_options_params() {
    const NvmeModuleOptions d;
    std::vector<rpc::ParamSpec> v = {
        {"action_on_timeout", PT::string, false,
         "none (only while timeout_us is 0) or abort: abort a timed-out I/O command, reset the "
         "controller if that fails or a timed-out admin command (reset: not supported)",
         "none"},
        {"timeout_us", PT::uint, false, "Command timeout of every controller attached; 0: none",
         d.timeout_us},
        {"timeout_admin_us", PT::uint, false, "Admin command timeout; 0: timeout_us",
         d.timeout_admin_us},
        {"keep_alive_timeout_ms", PT::uint, false,
         "Fabrics: KATO default of bdev_nvme_attach_controller; 0: no keep-alive",
         d.keep_alive_timeout_ms},
        {"io_queue_requests", PT::uint, false,
         "Driver requests per I/O queue; 0: the queue's entries - 1", d.io_queue_requests},
        {"bdev_retry_count", PT::int_, false,
         "Retries of an I/O failed with a retryable status; -1: unlimited", d.bdev_retry_count},
        {"ctrlr_loss_timeout_sec", PT::int_, false,
         "Fabrics: default of bdev_nvme_attach_controller (-1: reconnect forever, 0: no reconnect)",
         d.ctrlr_loss_timeout_sec},
        {"reconnect_delay_sec", PT::uint, false, "Fabrics: default of bdev_nvme_attach_controller",
         d.reconnect_delay_sec},
        {"fast_io_fail_timeout_sec", PT::uint, false,
         "Fabrics: default of bdev_nvme_attach_controller (0: off)", d.fast_io_fail_timeout_sec},
        {"multipath_opts", PT::object, false,
         "Accepted with policy active_passive only (no multipath)", nullptr},
        {"enable_flush", PT::bool_, false,
         "Accepted at either value: Strata always passes flush to the controller (SPDK's true)",
         false},
    };
    for (const auto& u : unsupported_options())
        v.push_back({u.name, u.type, false,
                     std::string("Not supported: accepted at its default only. ") + u.what, u.def});
    return v;
}

// bdev_nvme_*_error_injection's cmd_type: true for "admin", false for "io".
Result<bool> injection_cmd_type(const Json& p) {
    const std::string t = p.at("cmd_type").get<std::string>();
    if (t == "admin") return true;
    if (t == "io") return false;
    return Error(Errc::invalid_argument,
                 fmt::format("cmd_type '{}' is neither 'admin' nor 'io'", t));
}

Result<NvmeRawCommand> parse_send_cmd(const Json& p) {
    NvmeRawCommand c;
    c.name = p.at("name").get<std::string>();
    auto admin = injection_cmd_type(p);
    if (!admin) return admin.error();
    c.admin = *admin;
    const std::string dir = p.at("data_direction").get<std::string>();
    if (dir != "c2h" && dir != "h2c")
        return Error(Errc::invalid_argument,
                     fmt::format("data_direction '{}' is neither 'c2h' nor 'h2c'", dir));
    c.controller_to_host = dir == "c2h";
    auto raw = rpc::base64_decode(p.at("cmdbuf").get<std::string>());
    if (!raw) return Error(Errc::invalid_argument, "cmdbuf: " + raw.error().message());
    if (raw->size() != sizeof(c.sqe))
        return Error(Errc::invalid_argument,
                     fmt::format("cmdbuf is {} bytes, a command is 64", raw->size()));
    std::memcpy(&c.sqe, raw->data(), sizeof(c.sqe));
    auto md_len = rpc::int_param<uint32_t>(p, "metadata_len", 0);
    if (!md_len) return md_len.error();
    if (*md_len != 0 || !rpc::param_or<std::string>(p, "metadata", "").empty())
        return Error(Errc::not_supported,
                     "bdev_nvme_send_cmd: separate metadata, which Strata does not support");
    auto len = rpc::int_param<uint32_t>(p, "data_len", 0);
    if (!len) return len.error();
    if (auto it = p.find("data"); it != p.end() && !it->is_null()) {
        auto data = rpc::base64_decode(it->get<std::string>());
        if (!data) return Error(Errc::invalid_argument, "data: " + data.error().message());
        if (*len != 0 && *len != data->size())
            return Error(
                Errc::invalid_argument,
                fmt::format("data_len {} differs from the data's {} bytes", *len, data->size()));
        c.data = std::move(*data);
    } else {
        c.data.assign(*len, 0);
    }
    return c;
}

// SPDK's reply: the completion queue entry (dw0, dw1, sqhd, sqid, cid, status; the driver
// reports dw0, dw1 and the status) and, for c2h, the data.
Json send_cmd_reply(const NvmeRawResult& res) {
    uint8_t cpl[16] = {};
    std::memcpy(cpl, &res.cpl.dw0, 4);
    std::memcpy(cpl + 4, &res.cpl.dw1, 4);
    std::memcpy(cpl + 14, &res.cpl.status.raw, 2);
    Json out = {{"cpl", rpc::base64_encode(cpl, sizeof(cpl), true)}};
    if (!res.data.empty()) out["data"] = rpc::base64_encode(res.data.data(), res.data.size(), true);
    return out;
}

}  // namespace

void register_nvme_module(rpc::App& app) {
    register_module(kNvmeModule);
    add_rpc(app,
            {"bdev_nvme_set_options",
             "Set the NVMe bdev module's options (SPDK's names and defaults), only while no "
             "controller is attached. The reconnect limits, keep_alive_timeout_ms and the "
             "command timeouts are the defaults of bdev_nvme_attach_controller. SPDK's other "
             "parameters are accepted at their default values only.",
             set_options_params(), rpc::Allowed::both, "", true, [](const Json& p, Responder r) {
                 r.reply(set_options(p));
             }});
    rpc::MethodSpec attach{
        "bdev_nvme_attach_controller",
        "Attach an NVMe controller (PCIe, or NVMe/TCP through the NVMe-oF initiator) and "
        "create a bdev per active namespace (<name>n<nsid>). Returns the bdev names.",
        {{"name", PT::string, true, "Controller name (-b)", nullptr},
         {"trtype", PT::string, true, "Transport: PCIe or TCP (-t)", nullptr},
         {"traddr", PT::string, true, "PCI address, or the target's IP address (-a)", nullptr},
         {"adrfam", PT::string, false, "Address family: IPv4 or IPv6 (-f)", nullptr},
         {"trsvcid", PT::string, false, "Target port (-s), default 4420", nullptr},
         {"subnqn", PT::string, false, "Subsystem NQN (-n), required for TCP", nullptr},
         {"hostnqn", PT::string, false,
          "Host NQN (-q); default nqn.2014-08.org.nvmexpress:uuid:<uuid>", nullptr},
         {"hostaddr", PT::string, false, "Accepted; the local address is the system's choice",
          nullptr},
         {"hostsvcid", PT::string, false, "Accepted; the local port is the system's choice",
          nullptr},
         {"hdgst", PT::bool_, false, "TCP header digest (-e)", false},
         {"ddgst", PT::bool_, false, "TCP data digest (-d)", false},
         {"io_queue_size", PT::uint, false, "Entries per I/O queue", 256},
         {"num_io_queues", PT::uint, false, "I/O queues to ask for", 64},
         {"ctrlr_loss_timeout_sec", PT::int_, false,
          "Fabrics: give up reconnecting after this (-1: never, 0: one attempt); default: "
          "bdev_nvme_set_options'",
          0},
         {"reconnect_delay_sec", PT::uint, false,
          "Fabrics: delay between reconnect attempts; default: bdev_nvme_set_options'", 0},
         {"fast_io_fail_timeout_sec", PT::uint, false,
          "Fabrics: fail I/O after this while reconnecting (0: off); default: "
          "bdev_nvme_set_options'",
          0},
         {"keep_alive_timeout_ms", PT::uint, false,
          "Fabrics: KATO (a Strata extension: SPDK takes it from bdev_nvme_set_options, whose "
          "value is the default)",
          10000},
         {"fabrics_connect_timeout_us", PT::uint, false, "Fabrics: per-queue connect timeout",
          10000000},
         {"timeout_us", PT::uint, false,
          "Command timeout (abort, then reset); 0: none (a Strata extension; default: "
          "bdev_nvme_set_options')",
          0},
         {"max_bdevs", PT::uint, false, "Accepted; Strata creates a bdev per active namespace",
          128}},
        rpc::Allowed::runtime,
        "",
        true,
        [](const Json& p, Responder r) {
            if (auto d = rpc::check_default_only("bdev_nvme_attach_controller", p,
                                                 attach_default_only());
                !d) {
                r.error(d.error());
                return;
            }
            const std::string trtype = p.at("trtype").get<std::string>();
            const nvme::TrType tt = nvme::parse_trtype(trtype);
            NvmeAttachOptions o = nvme_default_attach_options();
            o.name = p.at("name").get<std::string>();
            o.io_queue_entries = rpc::param_or<uint32_t>(p, "io_queue_size", 256);
            o.controller.timeout_us =
                rpc::param_or<uint64_t>(p, "timeout_us", o.controller.timeout_us);
            o.controller.io_queues_requested = rpc::param_or<uint32_t>(p, "num_io_queues", 64);
            if (tt == nvme::TrType::pcie) {
                auto addr = env::PciAddress::parse(p.at("traddr").get<std::string>());
                if (!addr) {
                    r.error(addr.error());
                    return;
                }
                o.address = *addr;
            } else if (tt == nvme::TrType::tcp) {
                o.trid.trtype = tt;
                o.trid.trstring = "TCP";
                o.trid.traddr = p.at("traddr").get<std::string>();
                o.trid.trsvcid = rpc::param_or<std::string>(p, "trsvcid", "4420");
                o.trid.subnqn = rpc::param_or<std::string>(p, "subnqn", "");
                if (o.trid.subnqn.empty()) {
                    r.error(Error(Errc::invalid_argument, "subnqn is required for trtype TCP"));
                    return;
                }
                const std::string af = rpc::param_or<std::string>(p, "adrfam", "");
                if (!af.empty()) {
                    auto a = nvme::parse_adrfam(af);
                    if (!a || (*a != nvme::AdrFam::ipv4 && *a != nvme::AdrFam::ipv6)) {
                        r.error(Error(Errc::invalid_argument,
                                      fmt::format("adrfam {} is not IPv4 or IPv6", af)));
                        return;
                    }
                    o.trid.adrfam = *a;
                }
                auto& c = o.controller;
                c.hostnqn = rpc::param_or<std::string>(p, "hostnqn", "");
                c.header_digest = rpc::param_or<bool>(p, "hdgst", false);
                c.data_digest = rpc::param_or<bool>(p, "ddgst", false);
                c.ctrlr_loss_timeout_sec =
                    rpc::param_or<int32_t>(p, "ctrlr_loss_timeout_sec", c.ctrlr_loss_timeout_sec);
                c.reconnect_delay_sec =
                    rpc::param_or<uint32_t>(p, "reconnect_delay_sec", c.reconnect_delay_sec);
                c.fast_io_fail_timeout_sec = rpc::param_or<uint32_t>(p, "fast_io_fail_timeout_sec",
                                                                     c.fast_io_fail_timeout_sec);
                c.keep_alive_timeout_ms =
                    rpc::param_or<uint32_t>(p, "keep_alive_timeout_ms", c.keep_alive_timeout_ms);
                c.connect_timeout_ms = static_cast<uint32_t>(
                    rpc::param_or<uint64_t>(p, "fabrics_connect_timeout_us", 10'000'000) / 1000);
                // SPDK's rules for the three limits, on the values in effect.
                if (auto v =
                        nvme_check_reconnect_limits(c.ctrlr_loss_timeout_sec, c.reconnect_delay_sec,
                                                    c.fast_io_fail_timeout_sec);
                    !v) {
                    r.error(v.error());
                    return;
                }
            } else {
                r.error(
                    Error(Errc::not_supported,
                          fmt::format("trtype {} is not supported (PCIe and TCP are)", trtype)));
                return;
            }
            auto rp = std::make_shared<Responder>(std::move(r));
            nvme_attach(o, [rp](Result<std::vector<std::string>> res) {
                if (!res) {
                    rp->error(res.error());
                    return;
                }
                Json names = Json::array();
                for (const auto& n : *res) names.push_back(n);
                rp->result(std::move(names));
            });
        }};
    rpc::append_default_only(attach.params, attach_default_only());
    add_rpc(app, std::move(attach));
    add_rpc(app, {"bdev_nvme_discover",
                  "Read the discovery log page of an NVMe-oF discovery controller and return its "
                  "entries (trtype, adrfam, traddr, trsvcid, subnqn, subtype, portid).",
                  {{"trtype", PT::string, true, "TCP", nullptr},
                   {"traddr", PT::string, true, "Discovery controller address", nullptr},
                   {"adrfam", PT::string, false, "IPv4 or IPv6", nullptr},
                   {"trsvcid", PT::string, false, "Port, default 8009", nullptr},
                   {"hostnqn", PT::string, false, "Host NQN", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      nvme::TransportId t;
                      t.trtype = nvme::parse_trtype(p.at("trtype").get<std::string>());
                      t.traddr = p.at("traddr").get<std::string>();
                      t.trsvcid = rpc::param_or<std::string>(p, "trsvcid", "8009");
                      nvme::ControllerOptions o;
                      o.hostnqn = rpc::param_or<std::string>(p, "hostnqn", "");
                      auto rp = std::make_shared<Responder>(std::move(r));
                      runtime::spawn(*runtime::current_thread(), nvme::Controller::discover(t, o),
                                     [rp](Result<std::vector<nvme::DiscoveryEntry>> res) {
                                         if (!res) {
                                             rp->error(res.error());
                                             return;
                                         }
                                         Json out = Json::array();
                                         for (const auto& e : *res)
                                             out.push_back({{"trtype", e.trid.trstring},
                                                            {"adrfam", nvme::adrfam_name(e.trid.adrfam)},
                                                            {"traddr", e.trid.traddr},
                                                            {"trsvcid", e.trid.trsvcid},
                                                            {"subnqn", e.trid.subnqn},
                                                            {"subtype", e.subtype},
                                                            {"portid", e.portid}});
                                         rp->result(std::move(out));
                                     });
                  }});
    add_rpc(app, {"bdev_nvme_detach_controller",
                  "Remove a controller's bdevs (after their openers close) and detach it.",
                  {{"name", PT::string, true, "Controller name", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_detach(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_nvme_reset_controller", "Reset a controller (its qpairs reconnect).",
                  {{"name", PT::string, true, "Controller name", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_reset(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    for (const bool enable : {false, true}) {
        add_rpc(app,
                {enable ? "bdev_nvme_enable_controller" : "bdev_nvme_disable_controller",
                 enable ? "Enable a disabled controller: it is reset and its channels get I/O "
                          "qpairs again; the I/O held while disabled goes out."
                        : "Disable a controller: the I/O qpairs of its channels are deleted and "
                          "its namespace bdevs hold I/O (outstanding and new) until "
                          "bdev_nvme_enable_controller. Its state reads \"disabled\".",
                 {{"name", PT::string, true, "Controller name", nullptr},
                  {"cntlid", PT::uint, false,
                   "NVMe controller ID (0 or absent: the controller of that name)", nullptr}},
                 rpc::Allowed::runtime,
                 "",
                 true,
                 [enable](const Json& p, Responder r) {
                     auto cntlid = rpc::int_param<uint16_t>(p, "cntlid", 0);
                     if (!cntlid) {
                         r.error(cntlid.error());
                         return;
                     }
                     auto rp = std::make_shared<Responder>(std::move(r));
                     auto done = [rp](Result<void> res) {
                         if (!res)
                             rp->error(res.error());
                         else
                             rp->result(true);
                     };
                     if (enable)
                         nvme_enable(p.at("name").get<std::string>(), *cntlid, std::move(done));
                     else
                         nvme_disable(p.at("name").get<std::string>(), *cntlid, std::move(done));
                 }});
    }
    add_rpc(app, {"bdev_nvme_get_controllers", "List attached NVMe controllers.",
                  {{"name", PT::string, false, "Only this controller", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      const std::string only = rpc::param_or<std::string>(p, "name", "");
                      Json out = Json::array();
                      for (const auto& c : nvme_controllers()) {
                          if (!only.empty() && c.name != only) continue;
                          out.push_back({{"name", c.name},
                                         {"state", c.state},
                                         {"ctrlrs", Json::array({{{"state", c.state},
                                                                  {"trid", trid_json(c)}}})},
                                         {"bdevs", c.bdevs}});
                      }
                      if (!only.empty() && out.empty()) {
                          r.error(Error(Errc::not_found, fmt::format("NVMe controller {} not found", only)));
                          return;
                      }
                      r.result(std::move(out));
                  }});
    add_rpc(app, {"bdev_nvme_set_hotplug",
                  "Enable or disable NVMe hotplug: a poller every period_us scans the PCI bus, "
                  "attaches NVMe functions that appear (as HotInNvme<n>) and detaches PCIe "
                  "controllers whose function left.",
                  {{"enable", PT::bool_, true, "true: start the poller, false: stop it", nullptr},
                   {"period_us", PT::uint, false, "Scan period in us (default 100000)", nullptr}},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto period = rpc::int_param<uint64_t>(p, "period_us", 0);
                      if (!period) {
                          r.error(period.error());
                          return;
                      }
                      auto res = nvme_set_hotplug(p.at("enable").get<bool>(), *period);
                      r.reply(res);
                  }});
    add_rpc(app, {"bdev_nvme_get_controller_health_info",
                  "The SMART / Health Information log page of a controller (SPDK's field names; "
                  "temperatures in Celsius).",
                  {{"name", PT::string, false, "Controller name (default: the first)", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_health_info(rpc::param_or<std::string>(p, "name", ""),
                                       [rp](Result<Json> res) {
                                           if (!res)
                                               rp->error(res.error());
                                           else
                                               rp->result(std::move(*res));
                                       });
                  }});
    add_rpc(app, {"bdev_nvme_add_error_injection",
                  "Inject a status for the next err_count commands of an opcode on a "
                  "controller's admin queue or on the I/O qpair of each of its channels: the "
                  "command goes to the device and completes with sct/sc, or with do_not_submit "
                  "is never sent and completes with sct/sc after timeout_in_us. Replaces the "
                  "opcode's earlier injection.",
                  {{"name", PT::string, true, "Controller name", nullptr},
                   {"cmd_type", PT::string, true, "admin or io", nullptr},
                   {"opc", PT::uint, true, "Opcode (0-255)", nullptr},
                   {"do_not_submit", PT::bool_, false, "Complete without sending", false},
                   {"timeout_in_us", PT::uint, false, "With do_not_submit: complete after this", 0},
                   {"err_count", PT::uint, false, "Commands affected", 1},
                   {"sct", PT::uint, false, "Status Code Type (0-255)", 0},
                   {"sc", PT::uint, false, "Status Code (0-255)", 0}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto admin = injection_cmd_type(p);
                      auto opc = rpc::int_param<uint8_t>(p, "opc", 0);
                      auto timeout = rpc::int_param<uint64_t>(p, "timeout_in_us", 0);
                      auto count = rpc::int_param<uint32_t>(p, "err_count", 1);
                      auto sct = rpc::int_param<uint8_t>(p, "sct", 0);
                      auto sc = rpc::int_param<uint8_t>(p, "sc", 0);
                      const Error* bad = !admin     ? &admin.error()
                                         : !opc     ? &opc.error()
                                         : !timeout ? &timeout.error()
                                         : !count   ? &count.error()
                                         : !sct     ? &sct.error()
                                         : !sc      ? &sc.error()
                                                    : nullptr;
                      if (bad != nullptr) {
                          r.error(*bad);
                          return;
                      }
                      nvme::ErrorInjection e;
                      e.opc = *opc;
                      e.do_not_submit = rpc::param_or<bool>(p, "do_not_submit", false);
                      e.timeout_us = *timeout;
                      e.count = *count;
                      e.sct = *sct;
                      e.sc = *sc;
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_add_error_injection(p.at("name").get<std::string>(), *admin, e,
                                               [rp](Result<void> res) {
                                                   if (!res)
                                                       rp->error(res.error());
                                                   else
                                                       rp->result(true);
                                               });
                  }});
    add_rpc(app, {"bdev_nvme_remove_error_injection",
                  "Remove the error injection of an opcode from a controller's admin queue or "
                  "its channels' I/O qpairs (commands already held still complete).",
                  {{"name", PT::string, true, "Controller name", nullptr},
                   {"cmd_type", PT::string, true, "admin or io", nullptr},
                   {"opc", PT::uint, true, "Opcode (0-255)", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto admin = injection_cmd_type(p);
                      if (!admin) {
                          r.error(admin.error());
                          return;
                      }
                      auto opc = rpc::int_param<uint8_t>(p, "opc", 0);
                      if (!opc) {
                          r.error(opc.error());
                          return;
                      }
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_remove_error_injection(p.at("name").get<std::string>(), *admin, *opc,
                                                  [rp](Result<void> res) {
                                                      if (!res)
                                                          rp->error(res.error());
                                                      else
                                                          rp->result(true);
                                                  });
                  }});
    add_rpc(app,
            {"bdev_nvme_send_cmd",
             "Send a raw NVMe command (admin queue, or an I/O qpair of the controller on the "
             "app Thread) and return its completion: cpl is the 16-byte completion entry, "
             "data what a c2h command read (both base64, URL-safe alphabet, as SPDK). The "
             "driver sets the command id and data pointer. Separate metadata is not "
             "supported.",
             {{"name", PT::string, true, "Controller name", nullptr},
              {"cmd_type", PT::string, true, "admin or io", nullptr},
              {"data_direction", PT::string, true, "c2h (read) or h2c (write)", nullptr},
              {"cmdbuf", PT::string, true, "The 64-byte command, base64", nullptr},
              {"timeout_ms", PT::uint, false,
               "Accepted and ignored, as SPDK does (the controller's timeouts apply)", nullptr},
              {"data_len", PT::uint, false, "Data bytes (c2h: to read)", nullptr},
              {"metadata_len", PT::uint, false, "Only 0 (no separate metadata)", nullptr},
              {"data", PT::string, false, "h2c: the data, base64", nullptr},
              {"metadata", PT::string, false, "Only empty (no separate metadata)", nullptr}},
             rpc::Allowed::runtime,
             "",
             true,
             [](const Json& p, Responder r) {
                 auto cmd = parse_send_cmd(p);
                 if (!cmd) {
                     r.error(cmd.error());
                     return;
                 }
                 auto rp = std::make_shared<Responder>(std::move(r));
                 nvme_send_cmd(std::move(*cmd), [rp](Result<NvmeRawResult> res) {
                     if (!res) {
                         rp->error(res.error());
                         return;
                     }
                     rp->result(send_cmd_reply(*res));
                 });
             }});
    add_rpc(app, {"bdev_nvme_get_io_paths",
                  "I/O paths of NVMe bdevs (one per namespace bdev: Strata has no multipath).",
                  {{"name", PT::string, false, "Only this bdev", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      r.result(nvme_io_paths(rpc::param_or<std::string>(p, "name", "")));
                  }});
}

}  // namespace strata::bdev
