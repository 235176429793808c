// The sock subsystem's RPC methods (SPDK names and shapes), its save_config section, and the
// simulated network's fault methods (sim_network_*).
#include <fmt/format.h>

#include <strata/base/log.h>

#include <strata/rpc/app.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/sock/rpc.h>
#include <strata/sock/sim.h>

#include "internal.h"

namespace strata::sock {

namespace {

STRATA_LOG_COMPONENT(sock_rpc);

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

void add_rpc(rpc::App& app, rpc::MethodSpec spec) {
    spec.subsystem = "sock";
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "sock RPC registration failed: %s", r.error().message().c_str());
}

Json options_json(const ImplOptions& o) {
    return {{"recv_buf_size", o.recv_buf_size},
            {"send_buf_size", o.send_buf_size},
            {"enable_recv_pipe", o.enable_recv_pipe},
            {"enable_quickack", o.enable_quickack},
            {"enable_placement_id", o.enable_placement_id},
            {"enable_zerocopy_send_server", o.enable_zerocopy_send_server},
            {"enable_zerocopy_send_client", o.enable_zerocopy_send_client},
            {"zerocopy_threshold", o.zerocopy_threshold},
            {"tls_version", o.tls_version},
            {"enable_ktls", o.enable_ktls},
            {"enable_registered_recv_buffers", o.enable_registered_recv_buffers}};
}

bool options_equal(const ImplOptions& a, const ImplOptions& b) {
    return options_json(a) == options_json(b);
}

void write_config(rpc::App& app, Json& cfg) {
    HostState& hs = host_state(app.host());
    std::lock_guard lock(hs.mu);
    if (hs.default_set)
        cfg.push_back(
            {{"method", "sock_set_default_impl"}, {"params", {{"impl_name", hs.default_impl}}}});
    for (const auto& [name, o] : hs.options) {
        if (options_equal(o, ImplOptions{})) continue;
        Json p = options_json(o);
        p["impl_name"] = name;
        cfg.push_back({{"method", "sock_impl_set_options"}, {"params", std::move(p)}});
    }
}

const std::vector<rpc::ParamSpec>& option_params() {
    static const std::vector<rpc::ParamSpec> params = {
        {"impl_name", PT::string, true, "Socket implementation: posix, uring, sim", nullptr},
        {"recv_buf_size", PT::uint, false, "Receive buffer size (SO_RCVBUF), bytes", nullptr},
        {"send_buf_size", PT::uint, false,
         "Send buffer size (SO_SNDBUF; sim: the send window), bytes", nullptr},
        {"enable_recv_pipe", PT::bool_, false, "SPDK's receive pipe: accepted and saved", nullptr},
        {"enable_quickack", PT::bool_, false, "TCP_QUICKACK on new sockets (posix, uring)",
         nullptr},
        {"enable_placement_id", PT::uint, false, "SPDK placement id mode: accepted and saved",
         nullptr},
        {"enable_zerocopy_send_server", PT::bool_, false,
         "Zero-copy send on server sockets: accepted and saved (not used yet)", nullptr},
        {"enable_zerocopy_send_client", PT::bool_, false,
         "Zero-copy send on client sockets: accepted and saved (not used yet)", nullptr},
        {"zerocopy_threshold", PT::uint, false, "Zero-copy threshold: accepted and saved", nullptr},
        {"tls_version", PT::uint, false, "TLS version: accepted and saved (no TLS yet)", nullptr},
        {"enable_ktls", PT::bool_, false, "kTLS: accepted and saved (no TLS yet)", nullptr},
        {"enable_registered_recv_buffers", PT::bool_, false,
         "Strata extension: uring receives into registered buffers (IORING_OP_READ_FIXED)",
         nullptr},
        {"psk_key", PT::string, false, "SPDK's TLS PSK: accepted, not used (no TLS yet)", nullptr},
        {"psk_identity", PT::string, false, "SPDK's TLS PSK identity: accepted, not used", nullptr},
    };
    return params;
}

template <class T>
bool take_u32(const Json& p, const char* name, T& out, Responder& r) {
    auto it = p.find(name);
    if (it == p.end() || it->is_null()) return true;
    uint64_t v = it->get<uint64_t>();
    if (v > UINT32_MAX) {
        r.error(rpc::error_code::invalid_params, fmt::format("'{}' out of range", name));
        return false;
    }
    out = static_cast<T>(v);
    return true;
}

// The network this App's sim sockets use, or an error reply.
SimNetwork* network_or_error(Responder& r) {
    runtime::Thread* t = runtime::current_thread();
    if (t == nullptr || !t->scheduler().simulated()) {
        r.error(rpc::error_code::invalid_state,
                "the simulated network exists only when the App runs under the simulator");
        return nullptr;
    }
    auto net = current_network();
    if (!net) {
        r.error(net.error());
        return nullptr;
    }
    return *net;
}

std::string addr(const Json& p, const char* name) {
    return p.at(name).get<std::string>();
}

const rpc::ParamSpec kAddrA{"addr_a", PT::string, true, "One end's address on the network",
                            nullptr};
const rpc::ParamSpec kAddrB{"addr_b", PT::string, true, "The other end's address", nullptr};

Json endpoint_json(const Endpoint& e) {
    return {{"address", e.address}, {"port", e.port}};
}

// A sim_network_* method: the sock subsystem's, allowed at start-up and at run time, its
// handler called with this App's simulated network (or the method answers an error).
using NetHandler = void (*)(SimNetwork* net, const Json& params, Responder& r);
void add_net_rpc(rpc::App& app, const char* name, const char* description,
                 std::vector<rpc::ParamSpec> params, NetHandler fn) {
    add_rpc(app, {name, description, std::move(params), rpc::Allowed::both, "", true,
                  [fn](const Json& p, Responder r) {
                      SimNetwork* net = network_or_error(r);
                      if (net != nullptr) fn(net, p, r);
                  }});
}

void register_sim_network_rpcs(rpc::App& app) {
    add_net_rpc(app, "sim_network_get_info",
                "The simulated network of this App: its address on it, seed, default link, "
                "counters and the hash of every delivery so far.",
                {}, [](SimNetwork* net, const Json&, Responder& r) {
                    const auto& st = net->stats();
                    const auto& l = net->default_link();
                    r.result({{"address", host_state().address},
                              {"seed", net->seed()},
                              {"default_link",
                               {{"latency_ns", l.latency_ns},
                                {"bytes_per_sec", l.bytes_per_sec},
                                {"max_segment_bytes", l.max_segment_bytes}}},
                              {"segments", st.segments},
                              {"bytes", st.bytes},
                              {"connects", st.connects},
                              {"refused", st.refused},
                              {"resets", st.resets},
                              {"delivery_hash", net->delivery_hash()}});
                });
    add_net_rpc(
        app, "sim_network_set_link",
        "Set a link's parameters (both directions); without addr_a/addr_b, the default for "
        "every link without its own. Applies to bytes sent afterwards.",
        {{"addr_a", PT::string, false, "One end's address (omit for the default link)", nullptr},
         {"addr_b", PT::string, false, "The other end's address", nullptr},
         {"latency_ns", PT::uint, false, "One-way latency, ns", nullptr},
         {"bytes_per_sec", PT::uint, false, "Bandwidth, bytes/s (0: unlimited)", nullptr},
         {"max_segment_bytes", PT::uint, false,
          "Largest segment; boundaries are drawn in 1..max from the seed", nullptr}},
        [](SimNetwork* net, const Json& p, Responder& r) {
            const bool pair = p.contains("addr_a") || p.contains("addr_b");
            if (pair && !(p.contains("addr_a") && p.contains("addr_b"))) {
                r.error(rpc::error_code::invalid_params, "give both addr_a and addr_b");
                return;
            }
            LinkParams l =
                pair ? net->link(addr(p, "addr_a"), addr(p, "addr_b")) : net->default_link();
            l.latency_ns = rpc::param_or<uint64_t>(p, "latency_ns", l.latency_ns);
            l.bytes_per_sec = rpc::param_or<uint64_t>(p, "bytes_per_sec", l.bytes_per_sec);
            uint64_t seg = rpc::param_or<uint64_t>(p, "max_segment_bytes", l.max_segment_bytes);
            if (seg == 0 || seg > UINT32_MAX) {
                r.error(rpc::error_code::invalid_params,
                        "'max_segment_bytes' must be 1..4294967295");
                return;
            }
            l.max_segment_bytes = static_cast<uint32_t>(seg);
            if (pair)
                net->set_link(addr(p, "addr_a"), addr(p, "addr_b"), l);
            else
                net->set_default_link(l);
            r.result(true);
        });
    add_net_rpc(app, "sim_network_partition",
                "Partition two addresses: nothing is delivered between them until "
                "sim_network_heal; new connects time out (mode \"timeout\") or are refused "
                "(\"refuse\").",
                {kAddrA, kAddrB, {"mode", PT::string, false, "timeout or refuse", "timeout"}},
                [](SimNetwork* net, const Json& p, Responder& r) {
                    auto mode = rpc::param_or<std::string>(p, "mode", "timeout");
                    if (mode != "timeout" && mode != "refuse") {
                        r.error(rpc::error_code::invalid_params,
                                "'mode' must be \"timeout\" or \"refuse\"");
                        return;
                    }
                    net->partition(
                        addr(p, "addr_a"), addr(p, "addr_b"),
                        mode == "refuse" ? PartitionMode::refuse : PartitionMode::timeout);
                    r.result(true);
                });
    add_net_rpc(
        app, "sim_network_heal",
        "Lift a partition: the bytes queued between the two addresses flow again, in order.",
        {kAddrA, kAddrB}, [](SimNetwork* net, const Json& p, Responder& r) {
            net->heal(addr(p, "addr_a"), addr(p, "addr_b"));
            r.result(true);
        });
    add_net_rpc(
        app, "sim_network_reset",
        "Reset connections: one by id, or every connection between two addresses. Both "
        "ends see \"connection reset\". Returns how many were reset.",
        {{"addr_a", PT::string, false, "One end's address", nullptr},
         {"addr_b", PT::string, false, "The other end's address", nullptr},
         {"connection_id", PT::uint, false, "A connection (sim_network_get_connections)", nullptr}},
        [](SimNetwork* net, const Json& p, Responder& r) {
            if (p.contains("connection_id")) {
                auto s = net->reset(p.at("connection_id").get<uint64_t>());
                if (!s.ok())
                    r.error(Error(s.code(), "no such connection"));
                else
                    r.result(1);
                return;
            }
            if (!p.contains("addr_a") || !p.contains("addr_b")) {
                r.error(rpc::error_code::invalid_params,
                        "give connection_id, or addr_a and addr_b");
                return;
            }
            r.result(net->reset(addr(p, "addr_a"), addr(p, "addr_b")));
        });
    add_net_rpc(app, "sim_network_stall",
                "Stall a link: nothing is delivered between the two addresses for duration_ns of "
                "virtual time, then everything flows in order.",
                {kAddrA, kAddrB, {"duration_ns", PT::uint, true, "How long, ns", nullptr}},
                [](SimNetwork* net, const Json& p, Responder& r) {
                    net->stall(addr(p, "addr_a"), addr(p, "addr_b"),
                               p.at("duration_ns").get<uint64_t>());
                    r.result(true);
                });
    add_net_rpc(app, "sim_network_delay",
                "Add extra one-way latency to a link for the segments sent within duration_ns.",
                {kAddrA,
                 kAddrB,
                 {"extra_ns", PT::uint, true, "Extra latency, ns", nullptr},
                 {"duration_ns", PT::uint, true, "For how long, ns", nullptr}},
                [](SimNetwork* net, const Json& p, Responder& r) {
                    net->delay(addr(p, "addr_a"), addr(p, "addr_b"),
                               p.at("extra_ns").get<uint64_t>(),
                               p.at("duration_ns").get<uint64_t>());
                    r.result(true);
                });
    add_net_rpc(app, "sim_network_slow_reader",
                "Limit the rate at which bytes reach an address (0 lifts the limit).",
                {{"address", PT::string, true, "The receiving address", nullptr},
                 {"bytes_per_sec", PT::uint, true, "Rate, bytes/s; 0: unlimited", nullptr}},
                [](SimNetwork* net, const Json& p, Responder& r) {
                    net->slow_reader(p.at("address").get<std::string>(),
                                     p.at("bytes_per_sec").get<uint64_t>());
                    r.result(true);
                });
    add_net_rpc(app, "sim_network_get_connections",
                "Connections on the simulated network: id, endpoints, bytes delivered and queued "
                "each way, state (connecting, established, closing, closed, reset, failed).",
                {}, [](SimNetwork* net, const Json&, Responder& r) {
                    Json out = Json::array();
                    for (const auto& c : net->connections())
                        out.push_back({{"id", c.id},
                                       {"client", endpoint_json(c.client)},
                                       {"server", endpoint_json(c.server)},
                                       {"bytes_to_server", c.bytes_to_server},
                                       {"bytes_to_client", c.bytes_to_client},
                                       {"queued_to_server", c.queued_to_server},
                                       {"queued_to_client", c.queued_to_client},
                                       {"state", c.state}});
                    r.result(std::move(out));
                });
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    (void)app.add_subsystem(rpc::Subsystem{"sock", {}, {}, {}, &write_config});

    add_rpc(app, {"sock_impl_get_options",
                  "Options of a socket implementation (posix, uring, sim).",
                  {{"impl_name", PT::string, true, "Socket implementation name", nullptr}},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto o = get_impl_options(p.at("impl_name").get<std::string>());
                      if (!o)
                          r.error(rpc::error_code::invalid_params, o.error().message());
                      else
                          r.result(options_json(*o));
                  }});
    add_rpc(app, {"sock_impl_set_options",
                  "Set options of a socket implementation; fields not given keep their value. "
                  "Used by sockets created afterwards.",
                  option_params(), rpc::Allowed::both, "", true, [](const Json& p, Responder r) {
                      const auto name = p.at("impl_name").get<std::string>();
                      auto cur = get_impl_options(name);
                      if (!cur && name == "ssl") {
                          // SPDK's TLS implementation: every spdk_tgt saved config sets its
                          // options. Strata has no TLS sockets; the options change nothing.
                          STRATA_NOTICELOG(log_sock_rpc,
                                           "sock_impl_set_options: implementation 'ssl' (TLS) "
                                           "is not part of Strata; its options are ignored");
                          r.result(true);
                          return;
                      }
                      if (!cur) {
                          r.error(rpc::error_code::invalid_params, cur.error().message());
                          return;
                      }
                      ImplOptions o = *cur;
                      if (!take_u32(p, "recv_buf_size", o.recv_buf_size, r) ||
                          !take_u32(p, "send_buf_size", o.send_buf_size, r) ||
                          !take_u32(p, "enable_placement_id", o.enable_placement_id, r) ||
                          !take_u32(p, "zerocopy_threshold", o.zerocopy_threshold, r) ||
                          !take_u32(p, "tls_version", o.tls_version, r))
                          return;
                      o.enable_recv_pipe = rpc::param_or(p, "enable_recv_pipe", o.enable_recv_pipe);
                      o.enable_quickack = rpc::param_or(p, "enable_quickack", o.enable_quickack);
                      o.enable_zerocopy_send_server = rpc::param_or(
                          p, "enable_zerocopy_send_server", o.enable_zerocopy_send_server);
                      o.enable_zerocopy_send_client = rpc::param_or(
                          p, "enable_zerocopy_send_client", o.enable_zerocopy_send_client);
                      o.enable_ktls = rpc::param_or(p, "enable_ktls", o.enable_ktls);
                      o.enable_registered_recv_buffers = rpc::param_or(
                          p, "enable_registered_recv_buffers", o.enable_registered_recv_buffers);
                      Status s = set_impl_options(name, o);
                      if (!s.ok())
                          r.error(rpc::error_code::invalid_params, s.to_string());
                      else
                          r.result(true);
                  }});
    add_rpc(app, {"sock_set_default_impl",
                  "Set the socket implementation used when a caller names none (posix, uring, "
                  "sim). Without it: sim under the simulator, else posix.",
                  {{"impl_name", PT::string, true, "Socket implementation name", nullptr}},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      const auto name = p.at("impl_name").get<std::string>();
                      Status s = set_default_impl(name);
                      if (!s.ok())
                          r.error(rpc::error_code::invalid_params,
                                  fmt::format("unknown socket implementation '{}'", name));
                      else
                          r.result(true);
                  }});
    register_sim_network_rpcs(app);
}

}  // namespace strata::sock
