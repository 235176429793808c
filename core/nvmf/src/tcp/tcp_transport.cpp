// The NVMe-oF target's TCP transport (see <strata/nvmf/tcp.h>): listeners and the acceptor,
// poll groups, connections, the per-command state machine (in-capsule data, R2T/H2CData,
// C2HData, CapsuleResp) and fatal errors (C2HTermReq, then the connection alone is closed).
//
// A request's life on a connection:
//   CapsuleCmd header  -> a free TcpReq; in-capsule data placed in its buffer (or pool buffers)
//   CapsuleCmd done    -> SGL checked; transport SGL: pool buffers (or wait for them), then
//                         host-to-controller: R2T for the whole transfer, H2CData PDUs (each
//                         checked against the R2T's TTAG, CCCID and expected DATAO), then exec
//                         controller-to-host / no data: exec
//   Qpair::complete    -> C2HData (+ CapsuleResp unless SUCCESS), or CapsuleResp
//   last PDU written   -> buffers back to the pool, the TcpReq back to the free list
// Data digests through accel (ddgst_accel_threshold): a received PDU's digest is verified by a
// crc32c op on the poll group's accel channel once its data is placed (dg_pending); the
// command starts (CapsuleCmd) or executes (last H2CData) only when every such op of it has
// completed, a mismatch or failed op failing it with Transient Transport Error. A C2HData's
// digest is computed the same way before its PDUs are queued; a failed op fails the command
// (CapsuleResp with Transient Transport Error, no data). While an op is in flight the request
// stays held, like one the core is executing.
// A closed connection releases what the transport holds at once and waits (in its poll group)
// for the core's outstanding requests to complete before it is freed with their buffers.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/accel/accel.h>
#include <strata/base/crc.h>
#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/env/memory.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvme/spec/status.h>
#include <strata/nvmf/internal/tcp_pdu.h>
#include <strata/nvmf/tcp.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/sock/pdu_receive.h>
#include <strata/sock/sock.h>

namespace strata::nvmf {

STRATA_LOG_COMPONENT(nvmf_tcp);

namespace {

namespace pdu = nvme::spec::tcp;
namespace spec = nvme::spec;
using tcp::PduReceiver;
using tcp::RecvEvent;

constexpr uint32_t kRxStaging = 16384;
constexpr int kTxIov = 64;
constexpr uint32_t kAdminInCapsule = pdu::admin_in_capsule_size;
const uint8_t kZeros[128] = {};
constexpr uint64_t kTermReqTimeoutNs = 1'000'000'000;
// Transfers up to kSmallBuf bytes take one buffer from a pool of small ones (SPDK's iobuf does
// the same): buffers io_unit_size (128 KiB) apart put every 4 KiB request's data in the same
// cache sets, which tripled the cost of copying C2HData into the socket.
constexpr uint32_t kSmallBuf = 8192;
constexpr uint32_t kSmallBufsPerGroup = 1024;
// A connection that has not sent its ICReq this long after accept is closed (SPDK has no such
// option; hosts send the ICReq at once, so a fixed bound only stops idle sockets piling up).
constexpr uint64_t kIcReqTimeoutNs = 10'000'000'000;

class TcpConn;
class TcpPollGroup;
class TcpTransportImpl;

void put_le32(uint8_t* p, uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

struct TxTag;
struct WaitTag;
struct ConnTag;
struct StarveTag;
struct TcpReq;

// One PDU queued for sending: header bytes (with header digest, or a TermReq with its data),
// padding up to PDO, data iovecs, data digest.
struct TxPdu : ListHook<TxTag> {
    alignas(8) uint8_t hdr[pdu::term_req_max_plen + pdu::digest_size]{};
    uint32_t hdr_len = 0;
    uint32_t pad_len = 0;
    const iovec* data = nullptr;
    uint32_t data_cnt = 0;
    uint32_t data_len = 0;
    uint8_t ddgst[4]{};
    bool has_ddgst = false;
    uint32_t total = 0;
    uint32_t sent = 0;
    TcpReq* req = nullptr;  // released once this PDU is written, when `last`
    bool last = false;
};

// digest: all data received, its digest being verified through accel; tx_digest: the C2HData's
// digest being computed through accel.
enum class ReqState : uint8_t { free, rx_data, wait_buffer, wait_h2c, digest, executing, tx_digest, tx };

struct TcpReq : Request, ListHook<WaitTag> {
    TcpConn* conn = nullptr;
    uint16_t index = 0;  // also the R2T's TTAG
    ReqState state = ReqState::free;
    uint8_t* icd = nullptr;  // in-capsule data buffer (in_capsule_data_size bytes)
    uint32_t nbufs = 0;
    bool small_buf = false;  // bufs[0] is from the small pool
    std::array<void*, kMaxRequestIov> bufs{};
    uint32_t h2c_next = 0;  // the DATAO the next H2CData must carry
    bool digest_error = false;
    // Data digest through accel: an op in flight (the request is held until it completes),
    // its result and the DDGST it must match; the data it covers (an H2CData's slice, or the
    // in-capsule data) and, for a CapsuleCmd, its in-capsule length.
    bool dg_pending = false;
    bool dg_capsule = false;  // the op covers in-capsule data (start_request follows)
    bool tx_has_data = false;  // a C2HData is built in tx_data
    bool tx_success = false;   // it carries SUCCESS: no CapsuleResp
    uint32_t dg_crc = 0;
    uint32_t dg_expect = 0;
    uint32_t dg_icd_len = 0;
    uint32_t dg_iovcnt = 0;
    std::array<iovec, kMaxRequestIov> dg_iov{};
    TxPdu tx_data;
    TxPdu tx_resp;
};

// ---- poll group ------------------------------------------------------------------------------

class TcpPollGroup {
public:
    TcpPollGroup(TcpTransportImpl& t, runtime::Thread& thread, uint32_t index, uint32_t nbufs)
        : transport_(t), thread_(&thread), host_(&thread.host()), index_(index), nbufs_(nbufs) {}
    ~TcpPollGroup();

    void init();  // on its Thread
    void add_connection(std::unique_ptr<sock::Socket> s);
    void shutdown(void (*done)(void*), void* ctx);

    bool get_buffers(TcpReq& req, uint32_t len) noexcept;
    void put_buffers(TcpReq& req) noexcept;
    void wait_for_buffers(TcpReq& req) noexcept { waiting_.push_back(req); }
    void cancel_wait(TcpReq& req) noexcept {
        if (static_cast<ListHook<WaitTag>&>(req).linked()) waiting_.remove(req);
    }
    void starve(TcpConn& c) noexcept;
    void unstarve(TcpConn& c) noexcept;

    runtime::Thread& thread() const noexcept { return *thread_; }
    runtime::Host& host() const noexcept { return *host_; }
    sock::SocketGroup& sockets() noexcept { return *sockets_; }
    TcpTransportImpl& transport() noexcept { return transport_; }
    size_t connections() const noexcept { return conns_.size(); }
    bool buffers_available() const noexcept { return !free_.empty() || !free_small_.empty(); }
    // The accel channel for data digests (ddgst_accel_threshold), nullptr when unused.
    accel::Channel* accel() const noexcept { return accel_; }
    TcpDigestFaults& digest_faults() const noexcept { return *faults_; }

private:
    static runtime::PollStatus poll_fn(void* ctx) noexcept;
    runtime::PollStatus poll() noexcept;
    void reap(TcpConn& c) noexcept;
    void free_memory() noexcept;

    TcpTransportImpl& transport_;
    runtime::Thread* thread_;
    runtime::Host* host_;  // DMA memory is the Host's: freed under its scope
    uint32_t index_;
    uint32_t nbufs_;
    uint32_t buf_size_ = 0;
    runtime::Poller* poller_ = nullptr;
    accel::Channel* accel_ = nullptr;
    TcpDigestFaults* faults_ = nullptr;
    std::unique_ptr<sock::SocketGroup> sockets_;
    void* mem_ = nullptr;
    bool mem_dma_ = false;
    std::vector<void*> free_;
    std::vector<void*> free_small_;
    IntrusiveList<TcpConn, ConnTag> conns_;
    IntrusiveList<TcpReq, WaitTag> waiting_;
    IntrusiveList<TcpConn, StarveTag> starved_;
    bool shutting_down_ = false;
    void (*shutdown_done_)(void*) = nullptr;
    void* shutdown_ctx_ = nullptr;
};

// ---- transport -------------------------------------------------------------------------------

struct TcpListenerEntry {
    TransportAddress addr;
    std::unique_ptr<sock::Listener> listener;
    uint32_t refs = 0;
    runtime::Poller* poller = nullptr;
    TcpTransportImpl* transport = nullptr;
};

}  // namespace

class TcpTransport : public Transport {
public:
    virtual ~TcpTransport() = default;
};

namespace {

class TcpTransportImpl final : public TcpTransport {
public:
    explicit TcpTransportImpl(const TcpOptions& o) : opts_(o) {
        limits_.max_queue_depth = o.max_queue_depth;
        limits_.max_qpairs_per_ctrlr = o.max_io_qpairs_per_ctrlr + 1;
        limits_.in_capsule_data_size = o.in_capsule_data_size;
        limits_.max_io_size = o.max_io_size;
        limits_.io_unit_size = o.io_unit_size;
        limits_.max_aq_depth = o.max_aq_depth;
        limits_.msdbd = 1;
    }
    ~TcpTransportImpl() override = default;

    std::string_view name() const noexcept override { return "TCP"; }
    spec::TransportType trtype() const noexcept override { return spec::TransportType::tcp; }
    const TransportLimits& limits() const noexcept override { return limits_; }
    Status listen(const TransportAddress& addr) override;
    void stop_listening(const TransportAddress& addr) override;
    std::string options_json() const override;

    Status start();  // creates the poll groups; on the Target's Thread
    void shutdown(void (*done)(void*), void* ctx);

    const TcpOptions& options() const noexcept { return opts_; }
    struct Counters {
        std::atomic<uint64_t> connections_accepted{0};
        std::atomic<uint64_t> connections_closed{0};
        std::atomic<uint64_t> connections_freed{0};
        std::atomic<uint64_t> protocol_errors{0};
        std::atomic<uint64_t> term_reqs_received{0};
        std::atomic<uint64_t> data_digest_errors{0};
        std::atomic<uint64_t> header_digest_errors{0};
        std::atomic<uint64_t> data_digests_accel{0};
    };
    // Bumped from every poll group's Thread (relaxed atomics: statistics only).
    Counters& stats() noexcept { return stats_; }
    void accepted(std::unique_ptr<sock::Socket> s);

private:
    static runtime::PollStatus accept_fn(void* ctx) noexcept;

    TcpOptions opts_;
    TransportLimits limits_;
    Counters stats_;
    runtime::Thread* thread_ = nullptr;  // the Target's
    std::vector<std::unique_ptr<TcpPollGroup>> groups_;
    std::vector<std::unique_ptr<TcpListenerEntry>> listeners_;
    uint32_t next_group_ = 0;
    uint32_t groups_left_ = 0;
    bool shut_down_ = false;
    void (*shutdown_done_)(void*) = nullptr;
    void* shutdown_ctx_ = nullptr;
};

// ---- connection ------------------------------------------------------------------------------

class TcpConn final : public Qpair, public ListHook<ConnTag>, public ListHook<StarveTag> {
public:
    TcpConn(TcpTransportImpl& t, TcpPollGroup& g, std::unique_ptr<sock::Socket> s);
    ~TcpConn() override;

    Status init();
    void complete(Request& req) noexcept override;
    void disconnect() noexcept override { close_conn("disconnected by the target"); }
    // The core holds nothing of this qpair any more: the poll group frees it on its next poll
    // (once the transport's own requests are back too).
    void released() noexcept override { core_released_ = true; }
    TransportAddress listen_address() const override { return address(sock_local_); }
    TransportAddress peer_address() const override { return address(sock_peer_); }

    static void on_socket(void* ctx, sock::Socket&) noexcept {
        static_cast<TcpConn*>(ctx)->process_rx();
    }
    void process_rx() noexcept;
    // Sends what the queue holds, as far as the socket takes it; whether any byte went.
    bool flush() noexcept;
    void buffers_ready(TcpReq& req) noexcept;
    void close_conn(const char* why) noexcept;

    bool conn_closed() const noexcept { return state_ == State::closed; }
    bool terminating() const noexcept { return state_ == State::terminating; }
    bool icreq_overdue() const noexcept {
        return state_ == State::ic_wait && runtime::now_ns() - accepted_ns_ > kIcReqTimeoutNs;
    }
    uint64_t terminating_since_ns() const noexcept { return term_ns_; }
    bool tx_pending() const noexcept { return !txq_.empty(); }
    uint32_t in_use() const noexcept { return in_use_; }
    bool reapable() const noexcept { return state_ == State::closed && core_released_ && in_use_ == 0; }

private:
    enum class State : uint8_t { ic_wait, running, terminating, closed };

    static TransportAddress address(const sock::Endpoint& e) {
        TransportAddress a;
        a.trtype = "TCP";
        a.adrfam = e.address.find(':') != std::string::npos ? "IPv6" : "IPv4";
        a.traddr = e.address;
        a.trsvcid = std::to_string(e.port);
        return a;
    }

    bool handle_event(RecvEvent ev) noexcept;  // false: stop processing
    bool on_header() noexcept;
    bool on_pdu() noexcept;
    void on_icreq() noexcept;
    void start_request(TcpReq& req, uint32_t icd_len, bool digest_ok) noexcept;
    // Data digests through accel.
    bool digest_by_accel(uint32_t len) const noexcept {
        const uint32_t t = transport_.options().ddgst_accel_threshold;
        return group_.accel() && t != 0 && len >= t;
    }
    bool submit_digest(TcpReq& req, const iovec* iov, uint32_t iovcnt, accel::DoneFn done) noexcept;
    uint32_t faulted_crc(Status& s, uint32_t crc) noexcept;
    static void rx_digest_done(void* ctx, Status s) noexcept;
    static void tx_digest_done(void* ctx, Status s) noexcept;
    void h2c_complete(TcpReq& req) noexcept;
    void queue_response(TcpReq& req) noexcept;
    void execute(TcpReq& req) noexcept;
    void fail_request(TcpReq& req, uint8_t sc) noexcept;
    void send_response(TcpReq& req) noexcept;
    void send_r2t(TcpReq& req) noexcept;
    void queue(TxPdu& p) noexcept;
    void terminate(pdu::Fes fes, uint32_t fei, const uint8_t* hdr, uint32_t hdr_len) noexcept;
    void release(TcpReq& req) noexcept;
    TcpReq* alloc_req() noexcept;
    uint32_t header_digest_len() const noexcept { return hdgst_ ? pdu::digest_size : 0; }
    void seal_header(TxPdu& p, uint32_t hlen) noexcept;

    TcpTransportImpl& transport_;
    TcpPollGroup& group_;
    std::unique_ptr<sock::Socket> sock_;
    sock::Endpoint sock_local_;
    sock::Endpoint sock_peer_;
    State state_ = State::ic_wait;
    PduReceiver rx_;
    sock::RxStaging rx_staging_{kRxStaging};
    uint32_t depth_ = 0;
    std::unique_ptr<TcpReq[]> reqs_;
    void* icd_mem_ = nullptr;
    bool icd_dma_ = false;
    std::vector<uint16_t> free_;
    uint32_t in_use_ = 0;
    IntrusiveList<TxPdu, TxTag> txq_;
    TxPdu ic_pdu_;
    TxPdu term_pdu_;
    TcpReq* cur_ = nullptr;  // the request whose CapsuleCmd / H2CData is being received
    std::array<iovec, kMaxRequestIov> h2c_iov_{};
    uint32_t h2c_iovcnt_ = 0;
    uint32_t hpda_ = 0;
    bool hdgst_ = false;
    bool ddgst_ = false;
    bool sq_flow_off_ = false;
    uint32_t sqhd_ = 0;
    bool closed_reported_ = false;
    bool registered_ = false;  // in the SocketGroup
    bool core_released_ = false;
    uint64_t term_ns_ = 0;  // when the C2HTermReq was queued
    uint64_t accepted_ns_ = 0;  // when the poll group took the connection (ICReq timeout)
};

// ---- TcpConn ---------------------------------------------------------------------------------

TcpConn::TcpConn(TcpTransportImpl& t, TcpPollGroup& g, std::unique_ptr<sock::Socket> s)
    : Qpair(t, g.thread()), transport_(t), group_(g), sock_(std::move(s)) {
    sock_local_ = sock_->local();
    sock_peer_ = sock_->peer();
}

Status TcpConn::init() {
    const auto& o = transport_.options();
    depth_ = std::max(o.max_queue_depth, o.max_aq_depth);
    reqs_ = std::make_unique<TcpReq[]>(depth_);
    const size_t icd_bytes = size_t{depth_} * o.in_capsule_data_size;
    if (icd_bytes > 0) {
        auto m = env::dma_alloc(icd_bytes, 4096);
        if (m) {
            icd_mem_ = *m;
            icd_dma_ = true;
        } else {
            icd_mem_ = ::operator new(icd_bytes, std::align_val_t{4096});
        }
    }
    free_.reserve(depth_);
    for (uint32_t i = depth_; i > 0; --i) {
        TcpReq& r = reqs_[i - 1];
        r.conn = this;
        r.qpair = this;
        r.index = static_cast<uint16_t>(i - 1);
        r.icd = icd_mem_ ? static_cast<uint8_t*>(icd_mem_) + size_t{i - 1} * o.in_capsule_data_size
                         : nullptr;
        free_.push_back(static_cast<uint16_t>(i - 1));
    }
    tcp::RecvConfig cfg;
    cfg.cpda = 0;
    cfg.max_in_capsule = std::max(o.in_capsule_data_size, kAdminInCapsule);
    cfg.maxh2cdata = o.maxh2cdata;
    rx_.config() = cfg;
    Status s = group_.sockets().add(*sock_, &TcpConn::on_socket, this);
    registered_ = s.ok();
    accepted_ns_ = runtime::now_ns();
    return s;
}

TcpConn::~TcpConn() {
    runtime::HostScope scope(group_.host());
    if (icd_mem_) {
        if (icd_dma_)
            env::dma_free(icd_mem_);
        else
            ::operator delete(icd_mem_, std::align_val_t{4096});
    }
}

TcpReq* TcpConn::alloc_req() noexcept {
    if (free_.empty()) return nullptr;
    TcpReq& r = reqs_[free_.back()];
    free_.pop_back();
    ++in_use_;
    r.reset_core();
    r.cmd = {};
    r.iovcnt = 0;
    r.length = 0;
    r.xfer = XferDir::none;
    r.nbufs = 0;
    r.h2c_next = 0;
    r.digest_error = false;
    r.dg_pending = false;
    r.dg_capsule = false;
    r.tx_has_data = false;
    r.tx_success = false;
    r.state = ReqState::rx_data;
    return &r;
}

void TcpConn::release(TcpReq& req) noexcept {
    if (req.state == ReqState::free) return;
    group_.cancel_wait(req);
    group_.put_buffers(req);
    req.state = ReqState::free;
    req.iovcnt = 0;
    free_.push_back(req.index);
    --in_use_;
}

void TcpConn::process_rx() noexcept {
    group_.unstarve(*this);
    const auto live = [this] { return state_ == State::ic_wait || state_ == State::running; };
    if (!live()) return;
    const auto on_event = [&](RecvEvent ev) { return handle_event(ev) && live(); };
    switch (sock::receive_pdus<kMaxRequestIov>(*sock_, rx_staging_, rx_, on_event)) {
        case sock::RxEnd::yielded:
        case sock::RxEnd::stopped:
            return;
        case sock::RxEnd::closed:
            return close_conn("closed by the host");
        case sock::RxEnd::lost:
            return close_conn("connection lost mid-PDU or reset");
    }
}

bool TcpConn::handle_event(RecvEvent ev) noexcept {
    switch (ev) {
    case RecvEvent::none: return true;
    case RecvEvent::error: {
        if (rx_.fes() == pdu::Fes::header_digest_error) ++transport_.stats().header_digest_errors;
        terminate(rx_.fes(), rx_.fei(), rx_.header(), rx_.error_header_length());
        return false;
    }
    case RecvEvent::header: return on_header();
    case RecvEvent::pdu: return on_pdu();
    }
    return false;
}

bool TcpConn::on_header() noexcept {
    const auto type = rx_.ch().type();
    if (type == pdu::PduType::capsule_cmd) {
        if (!cur_) {
            cur_ = alloc_req();
            if (!cur_) {
                // More commands outstanding than the queue holds: the host broke flow control.
                terminate(pdu::Fes::pdu_sequence_error, 0, rx_.header(), rx_.header_length());
                return false;
            }
        }
        TcpReq& req = *cur_;
        const uint32_t len = rx_.data_length();
        if (len <= transport_.options().in_capsule_data_size && req.icd) {
            req.iov[0] = {req.icd, len};
            req.iovcnt = 1;
        } else if (req.nbufs == 0 && !group_.get_buffers(req, len)) {
            group_.starve(*this);  // resumed when buffers return
            return false;
        }
        rx_.set_data_destination(req.iov.data(), req.iovcnt);
        return true;
    }
    if (type == pdu::PduType::h2c_data) {
        const auto h = rx_.header_as<pdu::DataPdu>();
        TcpReq* req = h.ttag < depth_ ? &reqs_[h.ttag] : nullptr;
        if (!req || req->state != ReqState::wait_h2c) {
            terminate(pdu::Fes::invalid_header_field, pdu::fei::ttag, rx_.header(),
                      rx_.header_length());
            return false;
        }
        if (req->cmd.cid != h.cccid) {
            terminate(pdu::Fes::invalid_header_field, pdu::fei::cccid, rx_.header(),
                      rx_.header_length());
            return false;
        }
        if (h.datao != req->h2c_next || uint64_t{h.datao} + h.datal > req->length) {
            terminate(pdu::Fes::data_out_of_range, 0, rx_.header(), rx_.header_length());
            return false;
        }
        // The slice [datao, datao + datal) of the request's buffers.
        uint32_t skip = h.datao;
        uint32_t left = h.datal;
        uint32_t k = 0;
        for (uint32_t i = 0; i < req->iovcnt && left > 0; ++i) {
            const auto len = static_cast<uint32_t>(req->iov[i].iov_len);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            const uint32_t take = std::min(len - skip, left);
            h2c_iov_[k++] = {static_cast<uint8_t*>(req->iov[i].iov_base) + skip, take};
            left -= take;
            skip = 0;
        }
        cur_ = req;
        h2c_iovcnt_ = k;
        rx_.set_data_destination(h2c_iov_.data(), k);
        return true;
    }
    rx_.discard_data();
    return true;
}

bool TcpConn::on_pdu() noexcept {
    switch (rx_.ch().type()) {
    case pdu::PduType::ic_req: on_icreq(); return true;
    case pdu::PduType::h2c_term_req: {
        ++transport_.stats().term_reqs_received;
        const auto t = rx_.header_as<pdu::TermReq>();
        const uint16_t fes = t.fes;
        const uint32_t fei = t.fei.get();
        STRATA_NOTICELOG(log_nvmf_tcp, "{}: H2CTermReq from the host (FES {}, FEI {})",
                         sock::to_string(sock_peer_), fes, fei);
        close_conn("H2CTermReq");
        return false;
    }
    case pdu::PduType::capsule_cmd: {
        if (!cur_) {
            cur_ = alloc_req();
            if (!cur_) {
                terminate(pdu::Fes::pdu_sequence_error, 0, rx_.header(), rx_.header_length());
                return false;
            }
        }
        TcpReq& req = *cur_;
        cur_ = nullptr;
        req.cmd = rx_.header_as<pdu::CapsuleCmd>().sqe;
        if (rx_.data_digest_deferred()) {
            // In-capsule data: the destination iovecs (not yet trimmed to the SGL) hold
            // exactly data_length() bytes.
            req.dg_expect = rx_.data_digest();
            req.dg_icd_len = rx_.data_length();
            req.state = ReqState::digest;
            req.dg_capsule = true;
            if (submit_digest(req, req.iov.data(), req.iovcnt, &TcpConn::rx_digest_done))
                return true;
            req.dg_capsule = false;
            const bool ok = crc32c_iov(0, req.iov.data(), req.iovcnt) == req.dg_expect;
            if (!ok) ++transport_.stats().data_digest_errors;
            req.state = ReqState::rx_data;
            start_request(req, rx_.data_length(), ok);
            return true;
        }
        const bool ok = rx_.data_digest_ok();
        if (!ok) ++transport_.stats().data_digest_errors;
        start_request(req, rx_.data_length(), ok);
        return true;
    }
    case pdu::PduType::h2c_data: {
        TcpReq& req = *cur_;
        cur_ = nullptr;
        const auto h = rx_.header_as<pdu::DataPdu>();
        req.h2c_next += h.datal;
        bool ok = rx_.data_digest_ok();
        if (rx_.data_digest_deferred()) {
            // One op per request in flight: a later PDU whose predecessor's op has not
            // completed yet is verified inline (h2c_iov_ is this PDU's slice).
            const uint32_t expect = rx_.data_digest();
            if (!req.dg_pending) req.dg_expect = expect;
            if (req.dg_pending ||
                !submit_digest(req, h2c_iov_.data(), h2c_iovcnt_, &TcpConn::rx_digest_done))
                ok = crc32c_iov(0, h2c_iov_.data(), h2c_iovcnt_) == expect;
        }
        if (!ok) {
            req.digest_error = true;
            ++transport_.stats().data_digest_errors;
        }
        if (req.h2c_next == req.length) {
            if (req.dg_pending)
                req.state = ReqState::digest;  // rx_digest_done goes on
            else
                h2c_complete(req);
        }
        return true;
    }
    default: return true;  // the receiver lets nothing else through
    }
}

void TcpConn::h2c_complete(TcpReq& req) noexcept {
    if (req.digest_error)
        fail_request(req, static_cast<uint8_t>(spec::GenericStatus::transient_transport_error));
    else
        execute(req);
}

// Submits crc32c(iov) to the poll group's accel channel; false if accel refused it (the caller
// computes it inline). The iovecs are copied: the op outlives the receiver's slice.
bool TcpConn::submit_digest(TcpReq& req, const iovec* iov, uint32_t iovcnt,
                            accel::DoneFn done) noexcept {
    req.dg_iovcnt = iovcnt;
    std::copy(iov, iov + iovcnt, req.dg_iov.begin());
    req.dg_crc = 0;
    if (!group_.accel()->submit_crc32cv(&req.dg_crc, req.dg_iov.data(), iovcnt, 0, done, &req).ok())
        return false;
    req.dg_pending = true;
    ++transport_.stats().data_digests_accel;
    return true;
}

// The test hook (TcpDigestFaults): an op made to fail, or a CRC made wrong.
uint32_t TcpConn::faulted_crc(Status& s, uint32_t crc) noexcept {
    auto take = [](std::atomic<uint32_t>& n) {
        uint32_t v = n.load(std::memory_order_relaxed);
        while (v > 0 && !n.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {}
        return v > 0;
    };
    TcpDigestFaults& f = group_.digest_faults();
    if (take(f.fail)) s = Status(Errc::io_error, "injected accel failure");
    if (take(f.corrupt)) crc ^= 0x1;
    return crc;
}

void TcpConn::rx_digest_done(void* ctx, Status s) noexcept {
    auto& req = *static_cast<TcpReq*>(ctx);
    TcpConn& c = *req.conn;
    req.dg_pending = false;
    const uint32_t crc = c.faulted_crc(s, req.dg_crc);
    if (c.state_ != State::running) {  // closed meanwhile: the request was held for this op
        c.release(req);
        return;
    }
    // A failed op counts as a digest error: the data was not verified.
    const bool ok = s.ok() && crc == req.dg_expect;
    if (!ok) {
        ++c.transport_.stats().data_digest_errors;
        if (!s.ok())
            STRATA_WARNLOG(log_nvmf_tcp, "{}: accel crc32c failed ({}): data digest not verified",
                           sock::to_string(c.sock_peer_), s.name());
    }
    if (req.dg_capsule) {  // a CapsuleCmd's in-capsule data
        req.dg_capsule = false;
        req.state = ReqState::rx_data;
        c.start_request(req, req.dg_icd_len, ok);
        return;
    }
    if (!ok) req.digest_error = true;
    if (req.state == ReqState::digest) c.h2c_complete(req);  // the last H2CData is in
}

void TcpConn::tx_digest_done(void* ctx, Status s) noexcept {
    auto& req = *static_cast<TcpReq*>(ctx);
    TcpConn& c = *req.conn;
    req.dg_pending = false;
    const uint32_t crc = c.faulted_crc(s, req.dg_crc);
    if (c.state_ != State::running) {
        c.release(req);
        return;
    }
    if (!s.ok()) {
        // No digest, no data: the command fails (the host may retry it).
        STRATA_WARNLOG(log_nvmf_tcp, "{}: accel crc32c failed ({}): C2HData not sent",
                       sock::to_string(c.sock_peer_), s.name());
        c.fail_request(req, static_cast<uint8_t>(spec::GenericStatus::transient_transport_error));
        return;
    }
    put_le32(req.tx_data.ddgst, crc);
    c.queue_response(req);
}

void TcpConn::on_icreq() noexcept {
    const auto ic = rx_.header_as<pdu::IcReq>();
    hpda_ = ic.hpda;
    hdgst_ = (ic.dgst & pdu::dgst::hdgst_enable) != 0;
    ddgst_ = (ic.dgst & pdu::dgst::ddgst_enable) != 0;
    rx_.config().hdgst = hdgst_;
    rx_.config().ddgst = ddgst_;
    // Received data digests from this size on are verified through accel (on_pdu).
    const uint32_t t = transport_.options().ddgst_accel_threshold;
    rx_.config().ddgst_defer_min = ddgst_ && group_.accel() ? t : 0;
    pdu::IcResp resp{};
    resp.ch = {static_cast<uint8_t>(pdu::PduType::ic_resp), 0, pdu::ic_pdu_size, 0,
               pdu::ic_pdu_size};
    resp.pfv = pdu::pfv_1_0;
    resp.cpda = static_cast<uint8_t>(rx_.config().cpda);
    resp.dgst = ic.dgst;
    resp.maxh2cdata = transport_.options().maxh2cdata;
    std::memcpy(ic_pdu_.hdr, &resp, sizeof resp);
    ic_pdu_.hdr_len = sizeof resp;
    ic_pdu_.total = sizeof resp;
    ic_pdu_.sent = 0;
    state_ = State::running;
    queue(ic_pdu_);
}

void TcpConn::start_request(TcpReq& req, uint32_t icd_len, bool digest_ok) noexcept {
    ++sqhd_;
    req.xfer = xfer_direction(req.cmd);
    if (req.cmd.opc == spec::fabrics_opcode && spec::fabrics_type(req.cmd) == 0x01) {
        spec::ConnectCommand cc;
        std::memcpy(&cc, &req.cmd, sizeof cc);
        sq_flow_off_ = cc.disable_sq_flow_control();
    }
    if (!digest_ok) {
        fail_request(req, static_cast<uint8_t>(spec::GenericStatus::transient_transport_error));
        return;
    }
    if (req.xfer == XferDir::none) {
        group_.put_buffers(req);
        req.iovcnt = 0;
        req.length = 0;
        execute(req);
        return;
    }
    const spec::SglDescriptor sgl = req.cmd.dptr_sgl();
    const uint32_t len = sgl.length;
    if (sgl.sgl_id == pdu::sgl_id_in_capsule) {
        if (req.xfer != XferDir::host_to_controller) {
            fail_request(req, static_cast<uint8_t>(spec::GenericStatus::sgl_descriptor_type_invalid));
            return;
        }
        if (sgl.address != 0) {
            fail_request(req, static_cast<uint8_t>(spec::GenericStatus::invalid_sgl_offset));
            return;
        }
        if (len > icd_len || len == 0) {
            fail_request(req, static_cast<uint8_t>(spec::GenericStatus::data_sgl_length_invalid));
            return;
        }
        // Trim the iovecs to the SGL's length.
        uint32_t left = len;
        uint32_t k = 0;
        for (; k < req.iovcnt && left > 0; ++k) {
            const auto l = static_cast<uint32_t>(std::min<size_t>(req.iov[k].iov_len, left));
            req.iov[k].iov_len = l;
            left -= l;
        }
        req.iovcnt = k;
        req.length = len;
        execute(req);
        return;
    }
    if (sgl.sgl_id != pdu::sgl_id_transport) {
        fail_request(req, static_cast<uint8_t>(spec::GenericStatus::sgl_descriptor_type_invalid));
        return;
    }
    if (icd_len != 0 || len > transport_.options().max_io_size || len == 0) {
        fail_request(req, static_cast<uint8_t>(spec::GenericStatus::data_sgl_length_invalid));
        return;
    }
    group_.put_buffers(req);  // in-capsule data the host sent anyway
    req.length = len;
    req.iovcnt = 0;
    if (!group_.get_buffers(req, len)) {
        req.state = ReqState::wait_buffer;
        group_.wait_for_buffers(req);
        return;
    }
    buffers_ready(req);
}

void TcpConn::buffers_ready(TcpReq& req) noexcept {
    if (req.xfer == XferDir::host_to_controller)
        send_r2t(req);
    else
        execute(req);
}

void TcpConn::execute(TcpReq& req) noexcept {
    req.state = ReqState::executing;
    exec(req);
}

void TcpConn::fail_request(TcpReq& req, uint8_t sc) noexcept {
    req.rsp = {};
    req.rsp.cid = req.cmd.cid;
    req.rsp.status = spec::StatusField::make(0, sc, sc != static_cast<uint8_t>(
                                                          spec::GenericStatus::transient_transport_error))
                         .raw;
    req.length = 0;
    send_response(req);
}

void TcpConn::seal_header(TxPdu& p, uint32_t hlen) noexcept {
    p.hdr_len = hlen;
    if (hdgst_) {
        auto* ch = reinterpret_cast<pdu::CommonHeader*>(p.hdr);
        ch->flags |= pdu::flags::hdgstf;
        put_le32(p.hdr + hlen, crc32c(0, p.hdr, hlen));
        p.hdr_len += pdu::digest_size;
    }
}

void TcpConn::send_r2t(TcpReq& req) noexcept {
    req.state = ReqState::wait_h2c;
    req.h2c_next = 0;
    TxPdu& p = req.tx_data;
    p = TxPdu{};
    pdu::R2T r{};
    r.ch = {static_cast<uint8_t>(pdu::PduType::r2t), 0, pdu::r2t_hlen, 0,
            pdu::r2t_hlen + header_digest_len()};
    r.cccid = req.cmd.cid;
    r.ttag = req.index;
    r.r2to = 0;
    r.r2tl = req.length;
    std::memcpy(p.hdr, &r, sizeof r);
    seal_header(p, sizeof r);
    p.total = p.hdr_len;
    p.req = &req;
    queue(p);
}

void TcpConn::complete(Request& r) noexcept {
    auto& req = static_cast<TcpReq&>(r);
    if (state_ != State::running) {
        release(req);
        return;
    }
    // An I/O queue's in-capsule limit is the transport's once Connect names the queue.
    if (req.cmd.opc == spec::fabrics_opcode && spec::fabrics_type(req.cmd) == 0x01 && qid() != 0)
        rx_.config().max_in_capsule = transport_.options().in_capsule_data_size;
    send_response(req);
}

void TcpConn::send_response(TcpReq& req) noexcept {
    req.state = ReqState::tx;
    const uint32_t sqsize = sq_size();
    req.rsp.sqhd = static_cast<uint16_t>(sqsize ? sqhd_ % sqsize : sqhd_);
    const bool data = req.xfer == XferDir::controller_to_host && req.rsp.ok() && req.length > 0;
    bool success_flag = false;
    req.tx_has_data = data;
    if (data) {
        TxPdu& p = req.tx_data;
        p = TxPdu{};
        const uint32_t hd = header_digest_len();
        const uint32_t pdo = pdu::data_offset(pdu::data_pdu_hlen, hdgst_, hpda_);
        const uint32_t dd = ddgst_ ? pdu::digest_size : 0;
        success_flag = transport_.options().c2h_success && sq_flow_off_;
        pdu::DataPdu d{};
        d.ch = {static_cast<uint8_t>(pdu::PduType::c2h_data),
                static_cast<uint8_t>(pdu::flags::last_pdu | (success_flag ? pdu::flags::success : 0) |
                                     (ddgst_ ? pdu::flags::ddgstf : 0)),
                pdu::data_pdu_hlen, static_cast<uint8_t>(pdo), pdo + req.length + dd};
        d.cccid = req.cmd.cid;
        d.datao = 0;
        d.datal = req.length;
        std::memcpy(p.hdr, &d, sizeof d);
        seal_header(p, sizeof d);
        p.pad_len = pdo - pdu::data_pdu_hlen - hd;
        // The data: the request's iovecs, cut at length.
        uint32_t left = req.length;
        uint32_t k = 0;
        for (; k < req.iovcnt && left > 0; ++k) {
            const auto l = static_cast<uint32_t>(std::min<size_t>(req.iov[k].iov_len, left));
            req.iov[k].iov_len = l;
            left -= l;
        }
        req.iovcnt = k;
        p.data = req.iov.data();
        p.data_cnt = k;
        p.data_len = req.length;
        p.total = p.hdr_len + p.pad_len + p.data_len + dd;
        p.req = &req;
        p.last = success_flag;
        req.tx_success = success_flag;  // for tx_digest_done
        if (ddgst_) {
            p.has_ddgst = true;
            if (digest_by_accel(req.length)) {
                req.state = ReqState::tx_digest;
                if (submit_digest(req, req.iov.data(), k, &TcpConn::tx_digest_done))
                    return;  // queued by tx_digest_done
                req.state = ReqState::tx;
            }
            put_le32(p.ddgst, crc32c_iov(0, req.iov.data(), k));
        }
    }
    req.tx_success = success_flag;
    queue_response(req);
}

// Queues what send_response built: the C2HData (if any), then the CapsuleResp unless the
// C2HData carries SUCCESS.
void TcpConn::queue_response(TcpReq& req) noexcept {
    req.state = ReqState::tx;
    if (req.tx_has_data) queue(req.tx_data);
    if (!req.tx_success) {
        TxPdu& p = req.tx_resp;
        p = TxPdu{};
        pdu::CapsuleResp c{};
        c.ch = {static_cast<uint8_t>(pdu::PduType::capsule_resp), 0, pdu::capsule_resp_hlen, 0,
                pdu::capsule_resp_hlen + header_digest_len()};
        c.cqe = req.rsp;
        std::memcpy(p.hdr, &c, sizeof c);
        seal_header(p, sizeof c);
        p.total = p.hdr_len;
        p.req = &req;
        p.last = true;
        queue(p);
    }
}

// Queued PDUs go out on the poll group's next run, one writev for everything the completions
// since the last run queued (not a system call per response).
void TcpConn::queue(TxPdu& p) noexcept {
    p.sent = 0;
    txq_.push_back(p);
}

bool TcpConn::flush() noexcept {
    bool moved = false;
    while (!txq_.empty() && sock_ && state_ != State::closed) {
        iovec iov[kTxIov];
        int cnt = 0;
        size_t offered = 0;
        for (auto it = txq_.begin(); it != txq_.end(); ++it) {
            TxPdu& p = *it;
            // Whole PDUs only (a PDU's segments never split across calls but at the front).
            if (cnt + 3 + static_cast<int>(p.data_cnt) > kTxIov) break;
            size_t skip = p.sent;
            auto add = [&](const void* base, size_t len) {
                if (len == 0) return;
                if (skip >= len) {
                    skip -= len;
                    return;
                }
                iov[cnt++] = {const_cast<uint8_t*>(static_cast<const uint8_t*>(base)) + skip,
                              len - skip};
                offered += len - skip;
                skip = 0;
            };
            add(p.hdr, p.hdr_len);
            add(kZeros, p.pad_len);
            for (uint32_t i = 0; i < p.data_cnt; ++i) add(p.data[i].iov_base, p.data[i].iov_len);
            if (p.has_ddgst) add(p.ddgst, pdu::digest_size);
        }
        auto r = sock_->writev(iov, cnt);
        if (!r) {
            if (r.error().code() == Errc::busy) return moved;
            close_conn("send failed");
            return true;
        }
        moved = true;
        size_t n = *r;
        while (n > 0 && !txq_.empty()) {
            TxPdu& p = txq_.front();
            const size_t take = std::min<size_t>(n, p.total - p.sent);
            p.sent += static_cast<uint32_t>(take);
            n -= take;
            if (p.sent == p.total) {
                txq_.pop_front();
                if (p.req && p.last) release(*p.req);
            }
        }
        if (*r < offered) return moved;
    }
    if (txq_.empty() && state_ == State::terminating) {
        close_conn("terminated");
        moved = true;
    }
    return moved;
}

void TcpConn::terminate(pdu::Fes fes, uint32_t fei, const uint8_t* hdr, uint32_t hdr_len) noexcept {
    if (state_ == State::terminating || state_ == State::closed) return;
    ++transport_.stats().protocol_errors;
    const auto fes_code = static_cast<uint16_t>(fes);
    const char* what = pdu::fes_name(fes);
    STRATA_WARNLOG(log_nvmf_tcp, "{}: protocol error ({}, FES {}, FEI {}): terminating the connection",
                   sock::to_string(sock_peer_), what, fes_code, fei);
    hdr_len = std::min(hdr_len, pdu::term_req_max_data);
    pdu::TermReq t{};
    t.ch = {static_cast<uint8_t>(pdu::PduType::c2h_term_req), 0, pdu::term_req_hlen, 0,
            pdu::term_req_hlen + hdr_len};
    t.fes = fes_code;
    t.fei.set(fei);
    term_pdu_ = TxPdu{};
    std::memcpy(term_pdu_.hdr, &t, sizeof t);
    if (hdr_len) std::memcpy(term_pdu_.hdr + sizeof t, hdr, hdr_len);
    term_pdu_.hdr_len = pdu::term_req_hlen + hdr_len;
    term_pdu_.total = term_pdu_.hdr_len;
    state_ = State::terminating;
    term_ns_ = runtime::now_ns();
    // Nothing more is read; what is queued (responses already owed, then the TermReq) goes
    // out, then the socket closes (flush() closes once the queue is empty).
    if (registered_) group_.sockets().remove(*sock_);
    registered_ = false;
    term_pdu_.sent = 0;
    txq_.push_back(term_pdu_);
    flush();
}

void TcpConn::close_conn(const char* why) noexcept {
    if (state_ == State::closed) return;
    const bool was_terminating = state_ == State::terminating;
    state_ = State::closed;
    group_.unstarve(*this);
    STRATA_INFOLOG(log_nvmf_tcp, "{}: connection closed ({})", sock::to_string(sock_peer_), why);
    if (sock_) {
        if (!was_terminating && registered_) group_.sockets().remove(*sock_);
        registered_ = false;
        sock_->close();
    }
    // Drop what is queued for sending; release every request the transport holds. Those the
    // core is executing come back through complete() and are released there.
    while (TxPdu* p = txq_.pop_front()) (void)p;
    cur_ = nullptr;
    for (uint32_t i = 0; i < depth_; ++i) {
        TcpReq& r = reqs_[i];
        // Held: what the core executes (back through complete()) and what accel is digesting
        // (back through rx/tx_digest_done).
        if (r.state != ReqState::free && r.state != ReqState::executing && !r.dg_pending)
            release(r);
    }
    ++transport_.stats().connections_closed;
    if (!closed_reported_) {
        closed_reported_ = true;
        Qpair::closed();
    }
}

// ---- TcpPollGroup ----------------------------------------------------------------------------

void TcpPollGroup::init() {
    sockets_ = sock::SocketGroup::create();
    const auto& o = transport_.options();
    buf_size_ = o.io_unit_size;
    const uint32_t nsmall = buf_size_ > kSmallBuf ? kSmallBufsPerGroup : 0;
    const size_t large_bytes = size_t{nbufs_} * buf_size_;
    const size_t bytes = large_bytes + size_t{nsmall} * kSmallBuf;
    if (bytes > 0) {
        auto m = env::dma_alloc(bytes, 4096);
        if (m) {
            mem_ = *m;
            mem_dma_ = true;
        } else {
            mem_ = ::operator new(bytes, std::align_val_t{4096});
        }
        free_.reserve(nbufs_);
        for (uint32_t i = 0; i < nbufs_; ++i)
            free_.push_back(static_cast<uint8_t*>(mem_) + size_t{i} * buf_size_);
        free_small_.reserve(nsmall);
        for (uint32_t i = nsmall; i > 0; --i)
            free_small_.push_back(static_cast<uint8_t*>(mem_) + large_bytes + size_t{i - 1} * kSmallBuf);
    }
    poller_ = thread_->register_poller(&TcpPollGroup::poll_fn, this, "nvmf_tcp_poll_group");
    faults_ = &host_->get<TcpDigestFaults>();
    // Without a running accel framework, digests stay inline.
    if (o.ddgst_accel_threshold != 0) accel_ = accel::get_channel();
}

TcpPollGroup::~TcpPollGroup() {
    // Normally empty after shutdown(); at Host teardown without one, the sockets go with it.
    runtime::HostScope scope(*host_);
    while (TcpConn* c = conns_.pop_front()) delete c;
    free_memory();
}

void TcpPollGroup::free_memory() noexcept {
    if (!mem_) return;
    free_.clear();
    free_small_.clear();
    if (mem_dma_)
        env::dma_free(mem_);
    else
        ::operator delete(mem_, std::align_val_t{4096});
    mem_ = nullptr;
}

bool TcpPollGroup::get_buffers(TcpReq& req, uint32_t len) noexcept {
    if (len == 0) return true;
    if (len <= kSmallBuf && !free_small_.empty()) {
        void* b = free_small_.back();
        free_small_.pop_back();
        req.bufs[0] = b;
        req.iov[0] = {b, len};
        req.nbufs = 1;
        req.iovcnt = 1;
        req.small_buf = true;
        return true;
    }
    const uint32_t n = (len + buf_size_ - 1) / buf_size_;
    if (n > kMaxRequestIov || n > free_.size()) return false;
    uint32_t left = len;
    for (uint32_t i = 0; i < n; ++i) {
        void* b = free_.back();
        free_.pop_back();
        req.bufs[i] = b;
        const uint32_t l = std::min(left, buf_size_);
        req.iov[i] = {b, l};
        left -= l;
    }
    req.nbufs = n;
    req.iovcnt = n;
    req.small_buf = false;
    return true;
}

void TcpPollGroup::put_buffers(TcpReq& req) noexcept {
    if (req.small_buf) {
        if (req.nbufs) free_small_.push_back(req.bufs[0]);
        req.small_buf = false;
    } else {
        for (uint32_t i = 0; i < req.nbufs; ++i) free_.push_back(req.bufs[i]);
    }
    req.nbufs = 0;
}

void TcpPollGroup::starve(TcpConn& c) noexcept {
    if (!static_cast<ListHook<StarveTag>&>(c).linked()) starved_.push_back(c);
}
void TcpPollGroup::unstarve(TcpConn& c) noexcept {
    if (static_cast<ListHook<StarveTag>&>(c).linked()) starved_.remove(c);
}

void TcpPollGroup::add_connection(std::unique_ptr<sock::Socket> s) {
    auto* c = new TcpConn(transport_, *this, std::move(s));
    if (shutting_down_ || !c->init().ok()) {
        STRATA_WARNLOG(log_nvmf_tcp, "poll group {}: connection refused", index_);
        c->close_conn("refused");
        delete c;
        return;
    }
    conns_.push_back(*c);
}

runtime::PollStatus TcpPollGroup::poll_fn(void* ctx) noexcept {
    return static_cast<TcpPollGroup*>(ctx)->poll();
}

runtime::PollStatus TcpPollGroup::poll() noexcept {
    bool busy = sockets_->poll() > 0;
    // Requests waiting for buffers, in arrival order.
    while (!waiting_.empty()) {
        TcpReq& req = waiting_.front();
        if (!get_buffers(req, req.length)) break;
        waiting_.pop_front();
        busy = true;
        req.conn->buffers_ready(req);
    }
    // Connections stalled on buffers for in-capsule data.
    if (!starved_.empty() && buffers_available()) {
        TcpConn* c = starved_.pop_front();
        c->process_rx();
        busy = true;
    }
    for (auto it = conns_.begin(); it != conns_.end();) {
        TcpConn& c = *it;
        ++it;
        // Busy only when bytes moved: a peer that does not read must not keep the poller busy
        // (the simulator advances time only when every poller is idle).
        if (c.tx_pending() && c.flush()) busy = true;
        // A peer that stops reading cannot hold a terminated connection open: the C2HTermReq
        // gets one second to be accepted by the socket.
        if (c.terminating() && runtime::now_ns() - c.terminating_since_ns() > kTermReqTimeoutNs)
            c.close_conn("C2HTermReq not accepted in time");
        if (c.icreq_overdue()) c.close_conn("no ICReq within 10 s");
        if (c.reapable()) {
            reap(c);
            busy = true;
        }
    }
    if (shutting_down_ && conns_.empty() && poller_) {
        thread_->unregister_poller(poller_);
        if (accel_) accel::put_channel(accel_);
        accel_ = nullptr;
        sockets_.reset();
        free_memory();
        thread_->request_exit();
        auto* done = shutdown_done_;
        auto* ctx = shutdown_ctx_;
        if (done) done(ctx);
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

void TcpPollGroup::reap(TcpConn& c) noexcept {
    ++transport_.stats().connections_freed;
    conns_.remove(c);
    delete &c;
}

void TcpPollGroup::shutdown(void (*done)(void*), void* ctx) {
    shutting_down_ = true;
    shutdown_done_ = done;
    shutdown_ctx_ = ctx;
    for (auto& c : conns_) c.close_conn("target shutting down");
}

// ---- TcpTransportImpl ------------------------------------------------------------------------

Status TcpTransportImpl::start() {
    thread_ = runtime::current_thread();
    if (!thread_) return {Errc::invalid_argument, "nvmf TCP transport: not on a Thread"};
    auto& sched = thread_->scheduler();
    const uint32_t n = opts_.poll_groups ? opts_.poll_groups : std::max(1u, sched.reactor_count());
    const uint32_t bufs_per_group = std::max(1u, (opts_.num_shared_buffers + n - 1) / n);
    for (uint32_t i = 0; i < n; ++i) {
        const int reactor = static_cast<int>(i % std::max(1u, sched.reactor_count()));
        runtime::Thread* t = sched.create_thread(fmt::format("nvmf_tcp_pg{}", i), reactor);
        if (!t) return {Errc::no_memory, "nvmf TCP transport: no poll group Thread"};
        auto g = std::make_unique<TcpPollGroup>(*this, *t, i, bufs_per_group);
        TcpPollGroup* gp = g.get();
        groups_.push_back(std::move(g));
        Status s = t->post([gp] { gp->init(); });
        if (!s.ok()) return s;
        add_poll_group(*t);  // listed by nvmf_get_stats before a qpair connects there
    }
    return {};
}

runtime::PollStatus TcpTransportImpl::accept_fn(void* ctx) noexcept {
    auto* l = static_cast<TcpListenerEntry*>(ctx);
    bool busy = false;
    for (int i = 0; i < 16; ++i) {
        auto r = l->listener->accept();
        if (!r) break;
        busy = true;
        l->transport->accepted(std::move(*r));
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

void TcpTransportImpl::accepted(std::unique_ptr<sock::Socket> s) {
    ++stats_.connections_accepted;
    if (groups_.empty()) return;
    TcpPollGroup* g = groups_[next_group_++ % groups_.size()].get();
    sock::Socket* raw = s.release();
    Status st = g->thread().post([g, raw] { g->add_connection(std::unique_ptr<sock::Socket>(raw)); });
    if (!st.ok()) delete raw;
}

Status TcpTransportImpl::listen(const TransportAddress& addr) {
    for (auto& l : listeners_) {
        if (l->addr.traddr == addr.traddr && l->addr.trsvcid == addr.trsvcid) {
            ++l->refs;
            return {};
        }
    }
    char* end = nullptr;
    const unsigned long port = std::strtoul(addr.trsvcid.c_str(), &end, 10);
    if (addr.trsvcid.empty() || *end != '\0' || port > 65535)
        return {Errc::invalid_argument, "trsvcid is not a port number"};
    sock::SocketOptions so;
    so.priority = opts_.sock_priority;
    auto l = sock::listen(sock::Endpoint{addr.traddr, static_cast<uint16_t>(port)}, so);
    if (!l) return l.error().code();
    auto e = std::make_unique<TcpListenerEntry>();
    e->addr = addr;
    e->listener = std::move(*l);
    e->refs = 1;
    e->transport = this;
    e->poller = runtime::current_thread()->register_poller(
        &TcpTransportImpl::accept_fn, e.get(), "nvmf_tcp_accept",
        uint64_t{opts_.acceptor_poll_rate} * 1000);
    STRATA_NOTICELOG(log_nvmf_tcp, "NVMe/TCP target listening on {} port {}", addr.traddr,
                     addr.trsvcid);
    listeners_.push_back(std::move(e));
    return {};
}

void TcpTransportImpl::stop_listening(const TransportAddress& addr) {
    for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
        auto& l = **it;
        if (l.addr.traddr == addr.traddr && l.addr.trsvcid == addr.trsvcid) {
            if (--l.refs > 0) return;
            if (l.poller) runtime::current_thread()->unregister_poller(l.poller);
            listeners_.erase(it);
            return;
        }
    }
}

std::string TcpTransportImpl::options_json() const {
    nlohmann::json j = {{"trtype", "TCP"},
                        {"max_queue_depth", opts_.max_queue_depth},
                        {"max_io_qpairs_per_ctrlr", opts_.max_io_qpairs_per_ctrlr},
                        {"in_capsule_data_size", opts_.in_capsule_data_size},
                        {"max_io_size", opts_.max_io_size},
                        {"io_unit_size", opts_.io_unit_size},
                        {"max_aq_depth", opts_.max_aq_depth},
                        {"num_shared_buffers", opts_.num_shared_buffers},
                        {"buf_cache_size", opts_.buf_cache_size},
                        {"dif_insert_or_strip", opts_.dif_insert_or_strip},
                        {"zcopy", opts_.zcopy},
                        {"c2h_success", opts_.c2h_success},
                        {"sock_priority", opts_.sock_priority},
                        {"abort_timeout_sec", opts_.abort_timeout_sec},
                        {"acceptor_poll_rate", opts_.acceptor_poll_rate},
                        {"control_msg_num", opts_.control_msg_num}};
    if (opts_.poll_groups != 0) j["poll_groups"] = opts_.poll_groups;  // Strata extensions
    if (opts_.ddgst_accel_threshold != 0) j["ddgst_accel_threshold"] = opts_.ddgst_accel_threshold;
    return j.dump();
}

void TcpTransportImpl::shutdown(void (*done)(void*), void* ctx) {
    if (shut_down_) {  // idempotent: the groups' Threads are gone
        if (done) done(ctx);
        return;
    }
    shut_down_ = true;
    for (auto& l : listeners_)
        if (l->poller) runtime::current_thread()->unregister_poller(l->poller);
    listeners_.clear();
    shutdown_done_ = done;
    shutdown_ctx_ = ctx;
    groups_left_ = static_cast<uint32_t>(groups_.size());
    if (groups_left_ == 0) {
        if (done) done(ctx);
        return;
    }
    for (auto& g : groups_) {
        TcpPollGroup* gp = g.get();
        (void)gp->thread().post([this, gp] {
            gp->shutdown(
                [](void* p) {
                    auto* self = static_cast<TcpTransportImpl*>(p);
                    (void)self->thread_->post([self] {
                        if (--self->groups_left_ == 0 && self->shutdown_done_)
                            self->shutdown_done_(self->shutdown_ctx_);
                    });
                },
                this);
        });
    }
}

}  // namespace

// ---- public functions ------------------------------------------------------------------------

Status TcpOptions::validate() const {
    if (max_queue_depth < 2 || max_queue_depth > 65535)
        return {Errc::invalid_argument, "max_queue_depth must be 2..65535"};
    if (max_aq_depth < 2 || max_aq_depth > 4096)
        return {Errc::invalid_argument, "max_aq_depth must be 2..4096"};
    if (io_unit_size < 512 || io_unit_size % 512 != 0)
        return {Errc::invalid_argument, "io_unit_size must be a multiple of 512"};
    if (max_io_size < io_unit_size || max_io_size % 512 != 0)
        return {Errc::invalid_argument, "max_io_size must be a multiple of 512, >= io_unit_size"};
    if (uint64_t{io_unit_size} * kMaxRequestIov < max_io_size)
        return {Errc::invalid_argument, "max_io_size needs more than 16 io units"};
    if (in_capsule_data_size > 131072 || in_capsule_data_size % 16 != 0)
        return {Errc::invalid_argument, "in_capsule_data_size must be a multiple of 16, <= 128 KiB"};
    if (num_shared_buffers == 0) return {Errc::invalid_argument, "num_shared_buffers must be > 0"};
    if (maxh2cdata < pdu::min_maxh2cdata || maxh2cdata % 4 != 0)
        return {Errc::invalid_argument, "maxh2cdata must be >= 4096 and a dword multiple"};
    if (dif_insert_or_strip) return {Errc::not_supported, "dif_insert_or_strip is not supported"};
    return {};
}

Status create_tcp_transport(const TcpOptions& options) {
    if (Status s = options.validate(); !s.ok()) return s;
    if (find_transport("TCP")) return {Errc::already_exists, "a TCP transport exists"};
    auto t = std::make_unique<TcpTransportImpl>(options);
    if (Status s = t->start(); !s.ok()) return s;
    return add_transport(std::move(t));
}

TcpDigestFaults& tcp_digest_faults() noexcept {
    return runtime::current_host().get<TcpDigestFaults>();
}

TcpTransport* tcp_transport() noexcept {
    return dynamic_cast<TcpTransport*>(find_transport("TCP"));
}

TcpStats tcp_stats() {
    auto* t = static_cast<TcpTransportImpl*>(tcp_transport());
    TcpStats out;
    if (!t) return out;
    auto& c = t->stats();
    out.connections_accepted = c.connections_accepted.load(std::memory_order_relaxed);
    out.connections_closed = c.connections_closed.load(std::memory_order_relaxed);
    out.connections_freed = c.connections_freed.load(std::memory_order_relaxed);
    out.protocol_errors = c.protocol_errors.load(std::memory_order_relaxed);
    out.term_reqs_received = c.term_reqs_received.load(std::memory_order_relaxed);
    out.data_digest_errors = c.data_digest_errors.load(std::memory_order_relaxed);
    out.header_digest_errors = c.header_digest_errors.load(std::memory_order_relaxed);
    out.data_digests_accel = c.data_digests_accel.load(std::memory_order_relaxed);
    return out;
}

void tcp_transport_shutdown(void (*done)(void* ctx), void* ctx) {
    auto* t = static_cast<TcpTransportImpl*>(tcp_transport());
    if (!t) {
        if (done) done(ctx);
        return;
    }
    t->shutdown(done, ctx);
}

}  // namespace strata::nvmf
