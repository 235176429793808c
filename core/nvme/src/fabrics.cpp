// The NVMe-oF side of the controller: Controller::connect (TCP), registers as properties,
// keep-alive, reconnect after a connection loss with SPDK's limits, discovery.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "internal.h"
#include "tcp.h"

namespace strata::nvme {

namespace {

#define FAB_CO_TRY STRATA_NVME_CO_TRY

constexpr uint64_t kReadyPollNs = 1'000'000;

// The Host's default identity, as SPDK makes one per process: a random UUID, the host NQN
// "nqn.2014-08.org.nvmexpress:uuid:<uuid>" and the host id holding the same UUID.
struct HostIdentity {
    std::string nqn;
    std::array<uint8_t, 16> id{};
};

bool parse_uuid(std::string_view text, std::array<uint8_t, 16>& out) {
    size_t n = 0;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '-') continue;
        if (i + 1 >= text.size() || n == 16) return false;
        const int hi = hex(text[i]), lo = hex(text[i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[n++] = static_cast<uint8_t>(hi << 4 | lo);
        ++i;
    }
    return n == 16;
}

const HostIdentity& host_identity() {
    auto& id = runtime::current_host().get<HostIdentity>();
    if (id.nqn.empty()) {
        const std::string uuid = runtime::current_host().new_uuid();
        id.nqn = fmt::format("{}{}", spec::nqn_uuid_prefix, uuid);
        (void)parse_uuid(uuid, id.id);
    }
    return id;
}

spec::Sqe make_property_get(uint32_t ofst, bool eight) {
    spec::Sqe s{};
    s.opc = spec::fabrics_opcode;
    s.nsid = static_cast<uint8_t>(spec::FabricsCommandType::property_get);
    s.cdw10 = eight ? 1 : 0;  // ATTRIB.SIZE
    s.cdw11 = ofst;
    return s;
}

spec::Sqe make_property_set(uint32_t ofst, uint64_t value, bool eight) {
    spec::Sqe s{};
    s.opc = spec::fabrics_opcode;
    s.nsid = static_cast<uint8_t>(spec::FabricsCommandType::property_set);
    s.cdw10 = eight ? 1 : 0;
    s.cdw11 = ofst;
    s.cdw12 = static_cast<uint32_t>(value);
    s.cdw13 = static_cast<uint32_t>(value >> 32);
    return s;
}

void keep_alive_done(void* ctx, const Completion& cpl) {
    auto* c = static_cast<ControllerImpl*>(ctx);
    c->keep_alive_outstanding = false;
    if (cpl.ok() || cpl.status == kStatusResetAborted || cpl.status == kStatusControllerGone) return;
    STRATA_WARNLOG(log_nvme, "nvme {}: Keep Alive failed: {}", c->label(), cpl.name().view());
    c->fabrics_connection_lost("keep alive failed");
}

std::string trim_field(const char* p, size_t n) {
    size_t len = 0;
    while (len < n && p[len] != '\0') ++len;
    while (len > 0 && p[len - 1] == ' ') --len;
    return std::string(p, len);
}

Result<uint16_t> parse_port(const std::string& s, uint16_t dflt) {
    if (s.empty()) return dflt;
    uint32_t v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') return Error(Errc::invalid_argument, fmt::format("trsvcid '{}' is not a port", s));
        v = v * 10 + static_cast<uint32_t>(ch - '0');
        if (v > 65535) return Error(Errc::invalid_argument, fmt::format("trsvcid '{}' is not a port", s));
    }
    if (v == 0) return Error(Errc::invalid_argument, "trsvcid 0 is not a port");
    return static_cast<uint16_t>(v);
}

Result<std::unique_ptr<ControllerImpl>> make_fabrics_impl(const TransportId& trid,
                                                          const ControllerOptions& options,
                                                          uint16_t default_port) {
    if (trid.trtype != TrType::tcp)
        return Error(Errc::not_supported,
                     fmt::format("nvme: transport {} is not supported (PCIe and TCP are)",
                                 trid.trstring.empty() ? trtype_name(trid.trtype) : trid.trstring));
    if (trid.traddr.empty()) return Error(Errc::invalid_argument, "nvme-tcp: traddr is required");
    auto port = parse_port(trid.trsvcid, default_port);
    if (!port) return port.error();
    auto impl = std::make_unique<ControllerImpl>();
    impl->fabrics = true;
    impl->trid = trid;
    impl->trid.trsvcid = std::to_string(*port);
    if (impl->trid.adrfam == AdrFam::none)
        impl->trid.adrfam = trid.traddr.find(':') != std::string::npos ? AdrFam::ipv6 : AdrFam::ipv4;
    impl->options = options;
    impl->admin_thread = runtime::current_thread();
    impl->name = fmt::format("{}:{} {}", trid.traddr, *port, impl->trid.subnqn);
    const HostIdentity& me = host_identity();
    impl->hostnqn = !options.hostnqn.empty() ? options.hostnqn
                    : !trid.hostnqn.empty()  ? trid.hostnqn
                                             : me.nqn;
    if (impl->hostnqn.size() > spec::nqn_max_bytes)
        return Error(Errc::invalid_argument, "nvme-tcp: host NQN longer than 223 bytes");
    const bool zero_id = std::all_of(options.hostid.begin(), options.hostid.end(),
                                     [](uint8_t b) { return b == 0; });
    impl->hostid = zero_id ? me.id : options.hostid;
    if (zero_id && impl->hostnqn.starts_with(spec::nqn_uuid_prefix)) {
        std::array<uint8_t, 16> u{};
        if (parse_uuid(std::string_view(impl->hostnqn).substr(spec::nqn_uuid_prefix.size()), u))
            impl->hostid = u;
    }
    return impl;
}

}  // namespace

// ---- properties and enable -----------------------------------------------------------------

runtime::Task<Result<uint64_t>> ControllerImpl::prop_get(uint32_t ofst, bool eight_bytes) {
    auto r = co_await admin(make_property_get(ofst, eight_bytes));
    FAB_CO_TRY(r);
    if (!r->ok())
        co_return Error(r->errc(), fmt::format("nvme {}: Property Get {:#x} failed: {}", label(),
                                               ofst, r->name().view()));
    co_return uint64_t{r->dw0} | (eight_bytes ? uint64_t{r->dw1} << 32 : 0);
}

runtime::Task<Result<void>> ControllerImpl::prop_set(uint32_t ofst, uint64_t value, bool eight_bytes) {
    auto r = co_await admin(make_property_set(ofst, value, eight_bytes));
    FAB_CO_TRY(r);
    if (!r->ok())
        co_return Error(r->errc(), fmt::format("nvme {}: Property Set {:#x} failed: {}", label(),
                                               ofst, r->name().view()));
    co_return Result<void>{};
}

runtime::Task<Result<void>> ControllerImpl::fabrics_enable() {
    auto capr = co_await prop_get(spec::reg::cap, true);
    FAB_CO_TRY(capr);
    cap = spec::Cap{*capr};
    auto vsr = co_await prop_get(spec::reg::vs, false);
    FAB_CO_TRY(vsr);
    vs = static_cast<uint32_t>(*vsr);
    auto ccr = co_await prop_get(spec::reg::cc, false);
    FAB_CO_TRY(ccr);
    spec::Cc cc{static_cast<uint32_t>(*ccr)};
    if (cc.en() != 0) {
        cc.set_en(0);
        FAB_CO_TRY(co_await prop_set(spec::reg::cc, cc.raw, false));
        FAB_CO_TRY(co_await wait_ready(false));
    }
    FAB_CO_TRY(co_await prop_set(spec::reg::cc, enabling_cc().raw, false));
    co_return co_await wait_ready(true);
}

// ---- queues --------------------------------------------------------------------------------

runtime::Task<Result<void>> ControllerImpl::fabrics_connect_queue(std::shared_ptr<QPairImpl> qp) {
    runtime::AsyncResult<Status> done;
    runtime::AsyncResult<Status>* d = &done;
    runtime::Thread* admin = admin_thread;
    if (&qp->owner == admin_thread) {
        qp->tcp_start_connect([d](Status s) { d->set(s); });
    } else {
        std::shared_ptr<bool> live = alive;
        (void)qp->owner.post([qp, admin, d] {
            qp->tcp_start_connect([admin, d](Status s) { (void)admin->post([d, s] { d->set(s); }); });
        });
    }
    Status s = co_await done;
    if (!s.ok())
        co_return Error(s.code(), fmt::format("nvme {}: qpair {}: connect failed: {}", label(),
                                              qp->qid, s.to_string()));
    co_return Result<void>{};
}

runtime::Task<Result<void>> ControllerImpl::fabrics_init(bool discovery) {
    const uint32_t entries = std::clamp<uint32_t>(options.admin_queue_entries, 2, 4096);
    admin_qp = std::make_shared<QPairImpl>(*this, *admin_thread, 0, entries, entries - 1, 0,
                                           options.admin_timeout_us);
    admin_qp->tcp = std::make_unique<TcpConn>();
    admin_qp->tcp->want_hdgst = options.header_digest;
    admin_qp->tcp->want_ddgst = options.data_digest;
    admin_qp->tcp->in_capsule_max = spec::tcp::admin_in_capsule_size;
    FAB_CO_TRY(admin_qp->allocate());
    admin_qp->start_pollers(true);
    FAB_CO_TRY(co_await fabrics_connect_queue(admin_qp));
    FAB_CO_TRY(co_await fabrics_enable());
    FAB_CO_TRY(co_await identify_controller());
    admin_qp->sgl = false;
    ioccsz_bytes = ident.ioccsz >= 4 ? std::min<uint32_t>(ident.ioccsz * 16 - 64, 1u << 20) : 0;
    if (discovery) {
        state = ControllerState::ready;
        co_return Result<void>{};
    }
    FAB_CO_TRY(co_await init_queues_and_events());
    start_keep_alive();
    STRATA_INFOLOG(log_nvme, "nvme {}: connected (cntlid {}): {} namespace(s), {} I/O queues, "
                   "in-capsule data {} bytes, digests {}/{}", label(), cntlid, namespaces.size(),
                   io_queues_granted, ioccsz_bytes, admin_qp->tcp->hdgst ? "header" : "-",
                   admin_qp->tcp->ddgst ? "data" : "-");
    co_return Result<void>{};
}

// ---- keep-alive ----------------------------------------------------------------------------

void ControllerImpl::start_keep_alive() {
    if (options.keep_alive_timeout_ms == 0 || keep_alive_poller) return;
    const uint64_t period = uint64_t{options.keep_alive_timeout_ms} * 1'000'000 / 2;
    keep_alive_poller = admin_thread->register_poller(
        [](void* p) { return static_cast<ControllerImpl*>(p)->keep_alive_tick(); }, this,
        "nvme_keep_alive", std::max<uint64_t>(period, 1'000'000));
}

runtime::PollStatus ControllerImpl::keep_alive_tick() {
    if (state != ControllerState::ready) return runtime::PollStatus::idle;
    const uint64_t now = runtime::now_ns();
    if (keep_alive_outstanding) {
        if (now - keep_alive_sent_ns > uint64_t{options.keep_alive_timeout_ms} * 1'000'000)
            fabrics_connection_lost("keep alive timed out");
        return runtime::PollStatus::idle;
    }
    Status s = admin_qp->submit(spec::make_keep_alive(0), nullptr, 0, 0, keep_alive_done, this,
                                /*no_timeout=*/true);
    if (s.ok()) {
        keep_alive_outstanding = true;
        keep_alive_sent_ns = now;
    }
    return runtime::PollStatus::busy;
}

// ---- connection loss and reconnect ---------------------------------------------------------

void ControllerImpl::fabrics_connection_lost(const char* why) {
    if (gone() || resetting || state == ControllerState::initializing) return;
    runtime::spawn(*admin_thread, fabrics_reset(why), [](Result<void>) {});
}

runtime::Task<Result<void>> ControllerImpl::fabrics_reconnect_once() {
    FAB_CO_TRY(co_await fabrics_connect_queue(admin_qp));
    FAB_CO_TRY(co_await fabrics_enable());
    FAB_CO_TRY(co_await set_queue_count());
    FAB_CO_TRY(co_await scan_namespaces());
    const std::vector<std::shared_ptr<QPairImpl>> qps = io_qps;
    for (const auto& qp : qps) {
        if (std::find(io_qps.begin(), io_qps.end(), qp) == io_qps.end()) continue;  // freed
        if (qp->qid > io_queues_granted) {
            std::shared_ptr<QPairImpl> keep = qp;
            (void)qp->owner.post([keep] { keep->fail(kStatusControllerGone); });
            continue;
        }
        FAB_CO_TRY(co_await fabrics_connect_queue(qp));
    }
    co_return Result<void>{};
}

runtime::Task<Result<void>> ControllerImpl::fabrics_reset(const char* why) {
    resetting = true;
    ++reset_epoch;
    state = ControllerState::resetting;
    ++stats.resets;
    loss_started_ns = runtime::now_ns();
    STRATA_WARNLOG(log_nvme, "nvme {}: reconnecting: {}", label(), why);
    std::shared_ptr<bool> live = alive;

    // Every I/O qpair closes on its owner (outstanding commands end once with
    // kStatusResetAborted; waiting ones stay), then the admin queue.
    auto close_all = [](ControllerImpl* c) -> runtime::Task<void> {
        struct Barrier {
            uint32_t remaining = 1;
            runtime::AsyncResult<int> done;
            void arrive() {
                if (--remaining == 0) done.set(0);
            }
        } barrier;
        for (auto& qp : c->io_qps) {
            ++barrier.remaining;
            std::shared_ptr<QPairImpl> keep = qp;
            runtime::Thread* admin = c->admin_thread;
            Barrier* b = &barrier;
            (void)qp->owner.post([keep, admin, b] {
                keep->tcp_close(kStatusResetAborted);
                (void)admin->post([b] { b->arrive(); });
            });
        }
        barrier.arrive();
        co_await barrier.done;
        c->aers_outstanding = 0;
        c->keep_alive_outstanding = false;
        c->admin_qp->tcp_close(kStatusResetAborted);
    };
    co_await close_all(this);

    bool fast_failed = false;
    Result<void> result;
    for (;;) {
        result = co_await fabrics_reconnect_once();
        if (result || !*live || state == ControllerState::detached) break;
        const uint64_t elapsed = runtime::now_ns() - loss_started_ns;
        STRATA_WARNLOG(log_nvme, "nvme {}: reconnect failed after {} ms: {}", label(),
                       elapsed / 1'000'000, result.error().message());
        const int32_t loss = options.ctrlr_loss_timeout_sec;
        if (loss == 0 || (loss > 0 && elapsed >= uint64_t(loss) * 1'000'000'000ull)) break;
        if (!fast_failed && options.fast_io_fail_timeout_sec != 0 &&
            elapsed >= uint64_t{options.fast_io_fail_timeout_sec} * 1'000'000'000ull) {
            fast_failed = true;
            STRATA_WARNLOG(log_nvme, "nvme {}: fast_io_fail_timeout_sec passed: failing I/O "
                                     "until reconnected", label());
            for (auto& qp : io_qps) {
                std::shared_ptr<QPairImpl> keep = qp;
                (void)qp->owner.post([keep] { keep->tcp_fast_fail(true); });
            }
        }
        co_await close_all(this);
        const uint64_t delay = options.reconnect_delay_sec != 0
                                   ? uint64_t{options.reconnect_delay_sec} * 1'000'000'000ull
                                   : 100'000'000ull;
        co_await runtime::sleep_for(delay);
        if (!*live || state == ControllerState::detached) break;
    }
    if (!*live) co_return Error(Errc::aborted, "controller destroyed during reconnect");
    resetting = false;
    if (!result) {
        ++stats.failed_resets;
        fail_controller(Errc::io_error,
                        fmt::format("reconnect failed: {}", result.error().message()).c_str());
    } else {
        state = ControllerState::ready;
        (void)co_await admin(spec::make_set_features(
            0, spec::FeatureId::async_event_config,
            spec::AsyncEventConfigFeature{}.set_smart(0xFF).set_nan(1).raw));
        submit_aers();
        STRATA_NOTICELOG(log_nvme, "nvme {}: reconnected (cntlid {}), {} qpair(s)", label(),
                         cntlid, io_qps.size());
        if (ns_change_fn) ns_change_fn(*self);
    }
    auto waiters = std::move(reset_waiters);
    reset_waiters.clear();
    for (auto* w : waiters) w->set(result);
    co_return result;
}

runtime::Task<void> ControllerImpl::fabrics_shutdown() {
    auto ccr = co_await prop_get(spec::reg::cc, false);
    if (!ccr) co_return;
    spec::Cc cc{static_cast<uint32_t>(*ccr)};
    cc.set_shn(spec::Cc::shn_normal);
    if (!co_await prop_set(spec::reg::cc, cc.raw, false)) co_return;
    const uint64_t deadline = runtime::now_ns() + std::max<uint64_t>(cap.to(), 1) * 500'000'000ull;
    for (;;) {
        auto cs = co_await prop_get(spec::reg::csts, false);
        if (!cs) co_return;
        if (spec::Csts{static_cast<uint32_t>(*cs)}.shst() == spec::Csts::shst_complete) co_return;
        if (runtime::now_ns() >= deadline) {
            STRATA_WARNLOG(log_nvme, "nvme {}: shutdown did not complete within CAP.TO", label());
            co_return;
        }
        co_await runtime::sleep_for(kReadyPollNs);
    }
}

// ---- Controller ----------------------------------------------------------------------------

runtime::Task<Result<std::unique_ptr<Controller>>> Controller::connect(const TransportId& trid,
                                                                      ControllerOptions options) {
    STRATA_ASSERT_MSG(runtime::current_thread() != nullptr, "Controller::connect outside a Thread");
    if (trid.trtype == TrType::pcie) {
        auto a = env::PciAddress::parse(trid.traddr);
        if (!a) co_return a.error();
        co_return co_await attach(*a, std::move(options));
    }
    if (trid.subnqn.empty())
        co_return Error(Errc::invalid_argument, "nvme-tcp: subnqn is required");
    auto impl = make_fabrics_impl(trid, options, spec::tcp::default_port);
    if (!impl) co_return impl.error();
    std::unique_ptr<Controller> ctrl(new Controller(std::move(*impl)));
    ControllerImpl* c = ctrl->impl_.get();
    c->self = ctrl.get();
    auto r = co_await c->fabrics_init(false);
    if (!r) {
        STRATA_ERRLOG(log_nvme, "nvme {}: connect failed: {}", c->label(), r.error().message());
        co_return r.error();
    }
    co_return ctrl;
}

runtime::Task<Result<std::vector<DiscoveryEntry>>> Controller::discover(const TransportId& trid,
                                                                       ControllerOptions options) {
    STRATA_ASSERT_MSG(runtime::current_thread() != nullptr, "Controller::discover outside a Thread");
    TransportId t = trid;
    if (t.subnqn.empty()) t.subnqn = std::string(spec::discovery_nqn);
    options.keep_alive_timeout_ms = 0;  // a short-lived association: no keep-alive
    auto impl = make_fabrics_impl(t, options, spec::tcp::discovery_port);
    if (!impl) co_return impl.error();
    std::unique_ptr<Controller> ctrl(new Controller(std::move(*impl)));
    ControllerImpl* c = ctrl->impl_.get();
    c->self = ctrl.get();
    auto r = co_await c->fabrics_init(true);
    if (!r) co_return r.error();

    constexpr uint32_t kMaxRecords = 1024;
    std::vector<uint8_t> page(sizeof(spec::DiscoveryLogHeader));
    auto lp = co_await c->admin(spec::make_get_log_page(0, static_cast<spec::LogPage>(
                                                               spec::log_page_discovery),
                                                        0, static_cast<uint32_t>(page.size())),
                                page.data(), page.size());
    FAB_CO_TRY(lp);
    if (!lp->ok())
        co_return Error(lp->errc(), fmt::format("nvme {}: discovery log page: {}", c->label(),
                                                lp->name().view()));
    spec::DiscoveryLogHeader hdr;
    std::memcpy(&hdr, page.data(), sizeof(hdr));
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(hdr.numrec, kMaxRecords));
    std::vector<DiscoveryEntry> out;
    if (n != 0) {
        std::vector<uint8_t> recs(size_t{n} * sizeof(spec::DiscoveryLogEntry));
        const size_t chunk = std::max<size_t>(
            std::min<uint64_t>(c->max_transfer, 64 * 1024) / sizeof(spec::DiscoveryLogEntry), 1) *
            sizeof(spec::DiscoveryLogEntry);
        for (size_t off = 0; off < recs.size(); off += chunk) {
            const size_t len = std::min(chunk, recs.size() - off);
            auto e = co_await c->admin(
                spec::make_get_log_page(0, static_cast<spec::LogPage>(spec::log_page_discovery), 0,
                                        static_cast<uint32_t>(len), sizeof(hdr) + off),
                recs.data() + off, len);
            FAB_CO_TRY(e);
            if (!e->ok())
                co_return Error(e->errc(), fmt::format("nvme {}: discovery log page: {}",
                                                       c->label(), e->name().view()));
        }
        for (uint32_t i = 0; i < n; ++i) {
            spec::DiscoveryLogEntry e;
            std::memcpy(&e, recs.data() + size_t{i} * sizeof(e), sizeof(e));
            DiscoveryEntry d;
            switch (e.trtype) {
                case 1: d.trid.trtype = TrType::rdma; break;
                case 2: d.trid.trtype = TrType::fc; break;
                case 3: d.trid.trtype = TrType::tcp; break;
                default: d.trid.trtype = TrType::custom; break;
            }
            d.trid.trstring = trtype_name(d.trid.trtype);
            for (char& ch : d.trid.trstring) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            switch (e.adrfam) {
                case 1: d.trid.adrfam = AdrFam::ipv4; break;
                case 2: d.trid.adrfam = AdrFam::ipv6; break;
                case 3: d.trid.adrfam = AdrFam::ib; break;
                case 4: d.trid.adrfam = AdrFam::fc; break;
                case 0xFE: d.trid.adrfam = AdrFam::intra_host; break;
                default: d.trid.adrfam = AdrFam::none; break;
            }
            d.trid.traddr = trim_field(e.traddr.data(), e.traddr.size());
            d.trid.trsvcid = trim_field(e.trsvcid.data(), e.trsvcid.size());
            d.trid.subnqn = trim_field(e.subnqn.data(), e.subnqn.size());
            d.subtype = e.subtype;
            d.portid = e.portid;
            d.cntlid = e.cntlid;
            d.asqsz = e.asqsz;
            d.treq = e.treq;
            out.push_back(std::move(d));
        }
    }
    (void)co_await ctrl->detach();
    co_return out;
}

}  // namespace strata::nvme
