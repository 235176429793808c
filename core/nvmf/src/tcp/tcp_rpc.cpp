// nvmf_create_transport and nvmf_get_transports with SPDK's names and parameters
// (python/spdk/rpc/nvmf.py, lib/nvmf/nvmf_rpc.c, lib/nvmf/tcp.c). Parameters that only other
// transports use (RDMA, vfio-user) are accepted and ignored, so SPDK's own configs load.
#include <strings.h>

#include <fmt/format.h>

#include <functional>
#include <memory>

#include <strata/nvmf/tcp.h>
#include <strata/rpc/app.h>

namespace strata::nvmf {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

template <class T>
void take(const Json& p, const char* name, T& field) {
    auto it = p.find(name);
    if (it != p.end() && !it->is_null()) field = it->get<T>();
}

}  // namespace

void register_tcp_rpc_methods(rpc::App& app) {
    const TcpOptions d{};
    std::vector<rpc::ParamSpec> params = {
        {"trtype", PT::string, true, "Transport type: TCP (case-insensitive)", nullptr},
        {"tgt_name", PT::string, false, "Target name (only the default target exists)", nullptr},
        {"max_queue_depth", PT::uint, false, "Max I/O queue depth", d.max_queue_depth},
        {"max_qpairs_per_ctrlr", PT::uint, false,
         "Deprecated: max qpairs per controller, admin included", nullptr},
        {"max_io_qpairs_per_ctrlr", PT::uint, false, "Max I/O qpairs per controller",
         d.max_io_qpairs_per_ctrlr},
        {"in_capsule_data_size", PT::uint, false, "In-capsule data size (bytes)",
         d.in_capsule_data_size},
        {"max_io_size", PT::uint, false, "Max I/O size (bytes)", d.max_io_size},
        {"io_unit_size", PT::uint, false, "I/O unit (buffer) size (bytes)", d.io_unit_size},
        {"max_aq_depth", PT::uint, false, "Max admin queue depth", d.max_aq_depth},
        {"num_shared_buffers", PT::uint, false, "Data buffers, split over the poll groups",
         d.num_shared_buffers},
        {"buf_cache_size", PT::uint, false, "Per poll group buffer cache (accepted)", nullptr},
        {"dif_insert_or_strip", PT::bool_, false, "DIF insert/strip (not supported)", false},
        {"c2h_success", PT::bool_, false,
         "C2HData SUCCESS flag (skips CapsuleResp; only where SQ flow control is disabled)",
         d.c2h_success},
        {"sock_priority", PT::int_, false, "SO_PRIORITY of the transport's sockets", 0},
        {"abort_timeout_sec", PT::uint, false, "Abort execution timeout (s)", d.abort_timeout_sec},
        {"acceptor_poll_rate", PT::uint, false, "Acceptor poll period (us)", d.acceptor_poll_rate},
        {"zcopy", PT::bool_, false, "Zero-copy send (accepted, no effect)", false},
        {"control_msg_num", PT::uint, false, "Control messages (accepted, no effect)", nullptr},
        {"ack_timeout", PT::uint, false, "Accepted, no effect (RDMA)", nullptr},
        {"data_wr_pool_size", PT::uint, false, "Accepted, no effect (RDMA)", nullptr},
        {"num_cqe", PT::uint, false, "Accepted, no effect (RDMA)", nullptr},
        {"max_srq_depth", PT::uint, false, "Accepted, no effect (RDMA)", nullptr},
        {"no_srq", PT::bool_, false, "Accepted, no effect (RDMA)", nullptr},
        {"acceptor_backlog", PT::int_, false, "Accepted, no effect (RDMA)", nullptr},
        {"no_wr_batching", PT::bool_, false, "Accepted, no effect (RDMA)", nullptr},
        {"disable_mappable_bar0", PT::bool_, false, "Accepted, no effect (vfio-user)", nullptr},
        {"disable_adaptive_irq", PT::bool_, false, "Accepted, no effect (vfio-user)", nullptr},
        {"disable_shadow_doorbells", PT::bool_, false, "Accepted, no effect (vfio-user)",
         nullptr},
        {"disable_command_passthru", PT::bool_, false, "Accepted, no effect", nullptr},
        {"poll_groups", PT::uint, false,
         "Strata: poll group Threads (0: one per reactor)", 0},
        {"ddgst_accel_threshold", PT::uint, false,
         "Strata: data digests of PDUs with at least this many bytes go through accel "
         "(0: always inline)",
         0},
    };
    auto r = app.registry().add(rpc::MethodSpec{
        "nvmf_create_transport",
        "Create the NVMe-oF TCP transport (SPDK's parameters; RDMA-only ones accepted).",
        std::move(params), rpc::Allowed::both, "nvmf", true, [](const Json& p, Responder resp) {
            const auto trtype = p.at("trtype").get<std::string>();
            if (strcasecmp(trtype.c_str(), "TCP") != 0) {
                resp.error(rpc::error_code::invalid_params,
                           fmt::format("transport type '{}' is not supported (TCP)", trtype));
                return;
            }
            TcpOptions o;
            take(p, "max_queue_depth", o.max_queue_depth);
            if (auto it = p.find("max_qpairs_per_ctrlr"); it != p.end() && it->is_number()) {
                const auto v = it->get<uint32_t>();
                o.max_io_qpairs_per_ctrlr = v > 1 ? v - 1 : 1;
            }
            take(p, "max_io_qpairs_per_ctrlr", o.max_io_qpairs_per_ctrlr);
            take(p, "in_capsule_data_size", o.in_capsule_data_size);
            take(p, "max_io_size", o.max_io_size);
            take(p, "io_unit_size", o.io_unit_size);
            take(p, "max_aq_depth", o.max_aq_depth);
            take(p, "num_shared_buffers", o.num_shared_buffers);
            take(p, "buf_cache_size", o.buf_cache_size);
            take(p, "dif_insert_or_strip", o.dif_insert_or_strip);
            take(p, "c2h_success", o.c2h_success);
            take(p, "sock_priority", o.sock_priority);
            take(p, "abort_timeout_sec", o.abort_timeout_sec);
            take(p, "acceptor_poll_rate", o.acceptor_poll_rate);
            take(p, "zcopy", o.zcopy);
            take(p, "control_msg_num", o.control_msg_num);
            take(p, "poll_groups", o.poll_groups);
            take(p, "ddgst_accel_threshold", o.ddgst_accel_threshold);
            // SPDK clamps io_unit_size so that max_io_size fits in 16 units.
            if (uint64_t{o.io_unit_size} * kMaxRequestIov < o.max_io_size)
                o.io_unit_size = (o.max_io_size + kMaxRequestIov - 1) / kMaxRequestIov;
            Status s = create_tcp_transport(o);
            if (!s.ok()) {
                resp.error(rpc::errc_error_code(s.code()),
                           fmt::format("nvmf_create_transport: {}",
                                       s.context() ? s.context() : std::string(s.name())));
                return;
            }
            resp.result(true);
        }});
    // Idempotent: the nvmf RPC module and a test may both register these.
    STRATA_ASSERT(r.ok() || r.error().code() == Errc::already_exists);
    r = app.registry().add(rpc::MethodSpec{
        "nvmf_get_transports",
        "The target's transports with their options.",
        {{"trtype", PT::string, false, "Only this transport type", nullptr},
         {"tgt_name", PT::string, false, "Target name", nullptr}},
        rpc::Allowed::runtime,
        "nvmf",
        true,
        [](const Json& p, Responder resp) {
            Json out = Json::array();
            const std::string want = rpc::param_or<std::string>(p, "trtype", "");
            for (Transport* t : transports()) {
                if (!want.empty() && strcasecmp(want.c_str(), std::string(t->name()).c_str()) != 0)
                    continue;
                out.push_back(Json::parse(t->options_json()));
            }
            if (!want.empty() && out.empty()) {
                resp.error(rpc::errc_error_code(Errc::not_found),
                           fmt::format("transport '{}' not found", want));
                return;
            }
            resp.result(std::move(out));
        }});
    // Idempotent: the nvmf RPC module and a test may both register these.
    STRATA_ASSERT(r.ok() || r.error().code() == Errc::already_exists);
}

void register_tcp_rpc_module(rpc::App& app) {
    // An App subsystem of its own only for its fini: it depends on "nvmf", so it stops first
    // (connections closed, poll group Threads stopped once their bdev I/O completed) before
    // the core deletes the subsystems. Its config is empty: the nvmf subsystem's save_config
    // writes nvmf_create_transport from Transport::options_json().
    (void)app.add_subsystem(rpc::Subsystem{
        "nvmf_tcp",
        {"nvmf"},
        {},
        [](rpc::App&, std::function<void()> done) {
            auto* d = new std::function<void()>(std::move(done));
            tcp_transport_shutdown(
                [](void* p) {
                    std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(p));
                    (*f)();
                },
                d);
        },
        {}});
    register_tcp_rpc_methods(app);
}

}  // namespace strata::nvmf
