// The NVMe/TCP initiator's queue pair: PDUs out (ICReq, command capsules with in-capsule data,
// H2CData answering R2Ts), PDUs in (ICResp, CapsuleResp, C2HData, R2T, C2HTermReq), every
// received header checked before anything is trusted. A PDU the host cannot accept ends the
// connection: its commands complete once with kStatusResetAborted and the controller
// reconnects (fabrics.cpp) or fails.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/base/crc.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/runtime/scheduler.h>

#include "internal.h"
#include "tcp.h"

namespace strata::nvme {

namespace stcp = spec::tcp;

namespace {

constexpr uint32_t kDataDigestBytes = stcp::digest_size;

Error proto(const char* what) { return Error(Errc::protocol_error, what); }

void put_crc(uint8_t* at, uint32_t crc) noexcept { std::memcpy(at, &crc, 4); }  // little endian

}  // namespace

Result<RxHeader> check_c2h_header(const stcp::CommonHeader& ch, bool hdgst, bool ddgst,
                                  bool ic_done) noexcept {
    using stcp::PduType;
    if (!stcp::pdu_type_known(ch.pdu_type)) return proto("unknown PDU type");
    const PduType t = ch.type();
    if (t == PduType::ic_req || t == PduType::h2c_term_req || t == PduType::capsule_cmd ||
        t == PduType::h2c_data)
        return proto("a PDU type only hosts send");
    if (!ic_done && t != PduType::ic_resp && t != PduType::c2h_term_req)
        return proto("PDU before ICResp");
    if (ic_done && t == PduType::ic_resp) return proto("a second ICResp");
    if (ch.hlen != stcp::expected_hlen(t)) return proto("header length wrong for the PDU type");
    const bool digest_type =
        t == PduType::capsule_resp || t == PduType::c2h_data || t == PduType::r2t;
    if (digest_type ? ch.has_hdgst() != hdgst : ch.has_hdgst())
        return proto("header digest flag differs from the negotiated digests");
    if (t == PduType::c2h_data ? ch.has_ddgst() != ddgst : ch.has_ddgst())
        return proto("data digest flag differs from the negotiated digests");
    RxHeader h;
    h.type = t;
    h.hlen = ch.hlen;
    h.hdr_total = ch.hlen + (ch.has_hdgst() ? stcp::digest_size : 0);
    h.plen = ch.plen;
    switch (t) {
        case PduType::ic_resp:
            if (ch.plen != stcp::ic_pdu_size) return proto("ICResp length is not 128");
            break;
        case PduType::c2h_term_req:
            if (ch.plen < stcp::term_req_hlen || ch.plen > stcp::term_req_max_plen)
                return proto("C2HTermReq length out of range");
            break;
        case PduType::capsule_resp:
        case PduType::r2t:
            if (ch.plen != h.hdr_total) return proto("PDU length differs from its header length");
            break;
        case PduType::c2h_data:
            if (ch.pdo < h.hdr_total || ch.pdo >= ch.plen)
                return proto("C2HData data offset out of range");
            break;
        default: break;
    }
    return h;
}

int slice_iov(const iovec* iov, int cnt, size_t off, size_t len, iovec* out, int max) noexcept {
    int i = 0;
    while (i < cnt && off >= iov[i].iov_len) {
        off -= iov[i].iov_len;
        ++i;
    }
    int n = 0;
    while (len > 0) {
        if (i >= cnt || n >= max) return -1;
        const size_t take = std::min(len, iov[i].iov_len - off);
        if (take != 0) out[n++] = {static_cast<uint8_t*>(iov[i].iov_base) + off, take};
        len -= take;
        off = 0;
        ++i;
    }
    return n;
}

// ---- setup ---------------------------------------------------------------------------------

Status QPairImpl::tcp_allocate() {
    TcpConn& c = *tcp;
    c.reqs = std::make_unique<TcpReq[]>(requests_.size());
    c.lists.assign(requests_.size() * size_t{kListSlotBytes}, 0);
    c.rbuf = std::make_unique_for_overwrite<uint8_t[]>(kTcpRecvBufBytes);
    c.rpos = c.rend = 0;
    for (size_t i = 0; i < requests_.size(); ++i) {
        Request& r = requests_[i];
        r.cid = static_cast<uint16_t>(i);
        r.list = reinterpret_cast<uint64_t*>(c.lists.data() + i * kListSlotBytes);
        r.list_iova = 0;
        c.reqs[i].pdu.req = static_cast<int32_t>(i);
        free_.push_back(r);
    }
    return {};
}

void QPairImpl::tcp_start_connect(std::function<void(Status)> done) {
    TcpConn& c = *tcp;
    if (c.socket) tcp_close(kStatusResetAborted);
    if (link == Link::failed || link == Link::freeing) {
        done(Status(Errc::device_removed, "nvme-tcp: qpair failed or freed"));
        return;
    }
    uint16_t port = stcp::default_port;
    if (!ctrl.trid.trsvcid.empty()) port = static_cast<uint16_t>(std::stoul(ctrl.trid.trsvcid));
    const sock::Endpoint ep{ctrl.trid.traddr, port};
    Result<std::unique_ptr<sock::Socket>> s = Error(Errc::not_supported, "no socket layer");
    if (ctrl.options.connect_socket) {
        s = ctrl.options.connect_socket(ep);
    } else {
#ifdef STRATA_NVME_HAVE_SOCK
        sock::SocketOptions so;
        so.impl = ctrl.options.sock_impl;
        s = sock::connect(ep, so);
#endif
    }
    if (!s) {
        STRATA_ERRLOG(log_nvme, "{} qpair {}: connect to {}:{}: {}", ctrl.label(), qid,
                      ep.address, ep.port, s.error().message());
        done(Status(s.code(), "nvme-tcp: socket connect failed"));
        return;
    }
    c.socket = std::move(*s);
    c.on_connected = std::move(done);
    c.phase = TcpConn::Phase::ic_req;
    c.hdgst = c.ddgst = false;
    c.lost_reason = nullptr;
    c.reset_stream();
    c.connect_deadline_ns =
        runtime::now_ns() + uint64_t{std::max<uint32_t>(ctrl.options.connect_timeout_ms, 1)} * 1'000'000;
    link = Link::connecting;

    stcp::IcReq ic{};
    ic.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::ic_req);
    ic.ch.hlen = stcp::ic_pdu_size;
    ic.ch.plen = stcp::ic_pdu_size;
    ic.pfv = stcp::pfv_1_0;
    ic.hpda = 0;
    ic.dgst = static_cast<uint8_t>((c.want_hdgst ? stcp::dgst::hdgst_enable : 0) |
                                   (c.want_ddgst ? stcp::dgst::ddgst_enable : 0));
    ic.maxr2t = 0;  // one outstanding R2T per command
    SendPdu& p = c.ic_pdu;
    std::memcpy(p.hdr.data(), &ic, sizeof(ic));
    p.hdr_len = sizeof(ic);
    p.data_len = 0;
    p.has_ddgst = false;
    p.sent = 0;
    p.kind = SendPdu::Kind::ic_req;
    p.req = -1;
    p.queued = true;
    c.send_list.push_back(p);
    tcp_flush();
}

void QPairImpl::tcp_send_connect() noexcept {
    TcpConn& c = *tcp;
    Request* r = take_request();
    if (r == nullptr) {
        tcp_lost("no free request for Fabrics Connect");
        return;
    }
    spec::ConnectData data{};
    std::memcpy(data.hostid.data(), ctrl.hostid.data(), 16);
    data.cntlid = qid == 0 ? spec::cntlid_dynamic : ctrl.cntlid;
    spec::set_padded(data.subnqn, ctrl.trid.subnqn, '\0');
    spec::set_padded(data.hostnqn, ctrl.hostnqn, '\0');
    static_assert(sizeof(data) == 1024);
    std::memcpy(c.connect_data.data(), &data, sizeof(data));

    spec::Sqe sqe{};
    sqe.opc = spec::fabrics_opcode;
    sqe.nsid = static_cast<uint8_t>(spec::FabricsCommandType::connect);  // FCTYPE, byte 4
    sqe.cdw10 = uint32_t{qid} << 16;                                     // RECFMT 0, QID
    sqe.cdw11 = entries - 1;                                             // SQSIZE, CATTR 0
    sqe.cdw12 = qid == 0 ? ctrl.options.keep_alive_timeout_ms : 0;       // KATO
    r->sqe = sqe;
    r->sqe.cid = r->cid;
    TcpReq& t = c.reqs[r->cid];
    t.iov[0] = {c.connect_data.data(), c.connect_data.size()};
    t.iovcnt = 1;
    t.len = c.connect_data.size();
    t.to_ctrl = true;
    t.in_capsule = true;  // fabrics commands carry up to 8 KiB in the capsule
    t.c2h_next = t.h2c_next = t.r2t_end = 0;
    t.r2t_active = false;
    r->sqe.set_psdt(spec::Psdt::sgl_mptr_contig);
    r->sqe.set_dptr_sgl(stcp::make_in_capsule_sgl(static_cast<uint32_t>(t.len)));
    r->done = &QPairImpl::tcp_connect_done;
    r->ctx = this;
    r->no_timeout = true;
    r->abort_sent = r->timed_out = false;
    c.connect_cid = r->cid;
    ++stats.submitted;
    const Link saved = link;
    link = Link::connected;  // tcp_try_send sends only on a connected link
    (void)tcp_try_send(*r);
    link = saved;
}

void QPairImpl::tcp_connect_done(void* ctx, const Completion& cpl) {
    auto* q = static_cast<QPairImpl*>(ctx);
    TcpConn& c = *q->tcp;
    auto cb = std::move(c.on_connected);
    c.on_connected = nullptr;
    if (cpl.ok() && c.socket) {
        if (q->qid == 0) q->ctrl.cntlid = spec::ConnectResponseDw0{cpl.dw0}.cntlid();
        c.phase = TcpConn::Phase::live;
        c.fast_fail = false;
        q->mark_connected();
        if (cb) cb(Status{});
        return;
    }
    const bool ours = cpl.status == kStatusResetAborted || cpl.status == kStatusControllerGone;
    if (!ours)
        STRATA_ERRLOG(log_nvme, "{} qpair {}: Fabrics Connect rejected: {} (dw0 {:#x})",
                      q->ctrl.label(), q->qid, cpl.name().view(), cpl.dw0);
    if (cb)
        cb(Status(ours ? Errc::io_error : cpl.errc(),
                  ours ? (c.lost_reason ? c.lost_reason : "connection closed during Connect")
                       : "Fabrics Connect rejected by the controller"));
    if (!ours && c.socket) q->tcp_close(kStatusResetAborted);
}

// ---- closing -------------------------------------------------------------------------------

void QPairImpl::tcp_close(spec::StatusField status) {
    TcpConn& c = *tcp;
    if (c.socket) {
        c.socket->close();
        c.socket.reset();
    }
    c.phase = TcpConn::Phase::closed;
    while (SendPdu* p = c.send_list.pop_front()) p->queued = false;
    c.reset_stream();
    auto cb = std::move(c.on_connected);
    c.on_connected = nullptr;
    if (link == Link::connected || link == Link::connecting) disconnect(status);
    if (cb) cb(Status(Errc::aborted, "nvme-tcp: connection closed"));
}

void QPairImpl::tcp_lost(const char* why) noexcept {
    TcpConn& c = *tcp;
    if (!c.socket) return;
    const bool was_live = c.phase == TcpConn::Phase::live;
    STRATA_WARNLOG(log_nvme, "{} qpair {}: connection lost: {}", ctrl.label(), qid, why);
    c.lost_reason = why;
    c.socket->abort();
    c.socket.reset();
    c.phase = TcpConn::Phase::closed;
    while (SendPdu* p = c.send_list.pop_front()) p->queued = false;
    c.reset_stream();
    // Outstanding commands end now, once; waiting ones stay for the reconnect. A Connect in
    // flight ends here too and reports through on_connected.
    if (link == Link::connected || link == Link::connecting) disconnect(kStatusResetAborted);
    if (auto cb = std::move(c.on_connected)) {
        c.on_connected = nullptr;
        cb(Status(Errc::io_error, why));
    }
    if (was_live && link != Link::failed && link != Link::freeing) {
        ControllerImpl* ci = &ctrl;
        std::shared_ptr<bool> alive = ctrl.alive;
        (void)ctrl.admin_thread->post([ci, alive, why] {
            if (*alive) ci->fabrics_connection_lost(why);
        });
    }
}

void QPairImpl::tcp_protocol_error(const char* what) noexcept {
    ++tcp->protocol_errors;
    ++stats.bad_completions;
    ++ctrl.stats.bad_completions;
    STRATA_ERRLOG(log_nvme, "{} qpair {}: protocol violation by the target: {}", ctrl.label(), qid,
                  what);
    tcp_lost(what);
}

void QPairImpl::tcp_fast_fail(bool on) {
    tcp->fast_fail = on;
    if (!on) return;
    IntrusiveList<Request> wait;
    wait.splice_back(waiting_);
    fail_list(wait, kStatusResetAborted);
}

// ---- submission ----------------------------------------------------------------------------

Status QPairImpl::tcp_submit(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len,
                             IoDoneFn done, void* ctx, bool no_timeout) noexcept {
    if (link == Link::failed || link == Link::freeing)
        return Status(Errc::device_removed, "nvme controller failed or removed");
    if (tcp->fast_fail)
        return Status(Errc::io_error, "nvme-tcp: reconnecting past fast_io_fail_timeout_sec");
    if (len > UINT32_MAX) return Status(Errc::invalid_argument, "transfer too large");
    Request* r = take_request();
    if (r == nullptr) return Status(Errc::busy, "nvme request pool empty");
    TcpReq& t = tcp->reqs[r->cid];
    t.iovcnt = 0;
    t.len = len;
    if (len != 0) {
        const int n = slice_iov(iov, iovcnt, 0, len, t.iov.data(), kTcpMaxIov);
        if (n < 0) {
            free_.push_front(*r);
            return Status(Errc::invalid_argument,
                          "buffer shorter than the transfer or more than 32 segments");
        }
        t.iovcnt = n;
    }
    t.to_ctrl = spec::opcode_direction(sqe.opc) == spec::DataDirection::host_to_controller;
    t.in_capsule = t.to_ctrl && len != 0 && len <= tcp->in_capsule_max;
    t.c2h_next = t.h2c_next = t.r2t_end = 0;
    t.r2t_active = false;
    r->sqe = sqe;
    r->sqe.cid = r->cid;
    r->sqe.set_psdt(spec::Psdt::sgl_mptr_contig);
    r->sqe.set_dptr_sgl(t.in_capsule ? stcp::make_in_capsule_sgl(static_cast<uint32_t>(len))
                                     : stcp::make_transport_sgl(static_cast<uint32_t>(len)));
    r->done = done;
    r->ctx = ctx;
    r->no_timeout = no_timeout;
    r->abort_sent = false;
    r->timed_out = false;
    ++stats.submitted;
    if (!waiting_.empty() || !tcp_try_send(*r)) {
        r->state = Request::State::waiting;
        waiting_.push_back(*r);
    }
    return {};
}

bool QPairImpl::tcp_try_send(Request& r) noexcept {
    if (link != Link::connected) return false;
    TcpConn& c = *tcp;
    TcpReq& t = c.reqs[r.cid];
    SendPdu& p = t.pdu;
    const uint32_t data = t.in_capsule ? static_cast<uint32_t>(t.len) : 0;
    const uint32_t hdr_end = stcp::capsule_cmd_hlen + (c.hdgst ? stcp::digest_size : 0);
    const uint32_t pdo = data != 0 ? stcp::data_offset(stcp::capsule_cmd_hlen, c.hdgst, c.cpda) : 0;
    const bool dd = data != 0 && c.ddgst;
    stcp::CapsuleCmd cmd{};
    cmd.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_cmd);
    cmd.ch.flags = static_cast<uint8_t>((c.hdgst ? stcp::flags::hdgstf : 0) |
                                        (dd ? stcp::flags::ddgstf : 0));
    cmd.ch.hlen = stcp::capsule_cmd_hlen;
    cmd.ch.pdo = static_cast<uint8_t>(pdo);
    cmd.ch.plen = data != 0 ? pdo + data + (dd ? kDataDigestBytes : 0) : hdr_end;
    cmd.sqe = r.sqe;
    std::memcpy(p.hdr.data(), &cmd, sizeof(cmd));
    if (c.hdgst) put_crc(p.hdr.data() + stcp::capsule_cmd_hlen, crc32c(0, p.hdr.data(), sizeof(cmd)));
    p.hdr_len = data != 0 ? pdo : hdr_end;
    if (p.hdr_len > hdr_end) std::memset(p.hdr.data() + hdr_end, 0, p.hdr_len - hdr_end);
    p.data_off = 0;
    p.data_len = data;
    p.has_ddgst = dd;
    if (dd) put_crc(p.ddgst.data(), crc32c_iov(0, t.iov.data(), static_cast<size_t>(t.iovcnt)));
    p.sent = 0;
    p.kind = SendPdu::Kind::capsule;
    p.queued = true;
    c.send_list.push_back(p);
    r.state = Request::State::outstanding;
    r.submit_ns = timeout_ns != 0 ? runtime::now_ns() : 0;
    outstanding_.push_back(r);
    return true;
}

void QPairImpl::tcp_send_waiting() noexcept {
    while (!waiting_.empty()) {
        Request& r = waiting_.front();
        waiting_.remove(r);
        if (!tcp_try_send(r)) {
            waiting_.push_front(r);
            break;
        }
    }
}

namespace {

// Builds the next H2CData PDU of the R2T `t` is serving.
void build_h2c(TcpConn& c, TcpReq& t, uint16_t cid) noexcept {
    SendPdu& p = t.pdu;
    const uint32_t chunk =
        static_cast<uint32_t>(std::min<size_t>(t.r2t_end - t.h2c_next, c.maxh2cdata));
    const uint32_t hdr_end = stcp::data_pdu_hlen + (c.hdgst ? stcp::digest_size : 0);
    const uint32_t pdo = stcp::data_offset(stcp::data_pdu_hlen, c.hdgst, c.cpda);
    stcp::DataPdu d{};
    d.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::h2c_data);
    d.ch.flags = static_cast<uint8_t>((c.hdgst ? stcp::flags::hdgstf : 0) |
                                      (c.ddgst ? stcp::flags::ddgstf : 0) |
                                      (t.h2c_next + chunk == t.r2t_end ? stcp::flags::last_pdu : 0));
    d.ch.hlen = stcp::data_pdu_hlen;
    d.ch.pdo = static_cast<uint8_t>(pdo);
    d.ch.plen = pdo + chunk + (c.ddgst ? kDataDigestBytes : 0);
    d.cccid = cid;
    d.ttag = t.ttag;
    d.datao = static_cast<uint32_t>(t.h2c_next);
    d.datal = chunk;
    std::memcpy(p.hdr.data(), &d, sizeof(d));
    if (c.hdgst) put_crc(p.hdr.data() + stcp::data_pdu_hlen, crc32c(0, p.hdr.data(), sizeof(d)));
    if (pdo > hdr_end) std::memset(p.hdr.data() + hdr_end, 0, pdo - hdr_end);
    p.hdr_len = pdo;
    p.data_off = t.h2c_next;
    p.data_len = chunk;
    p.has_ddgst = c.ddgst;
    if (c.ddgst) {
        iovec v[kTcpMaxIov];
        const int n = slice_iov(t.iov.data(), t.iovcnt, p.data_off, chunk, v, kTcpMaxIov);
        put_crc(p.ddgst.data(), crc32c_iov(0, v, static_cast<size_t>(std::max(n, 0))));
    }
    p.sent = 0;
    p.kind = SendPdu::Kind::h2c_data;
    p.queued = true;
    c.send_list.push_back(p);
}

}  // namespace

void QPairImpl::tcp_pdu_sent(void* pdu) noexcept {
    TcpConn& c = *tcp;
    auto& p = *static_cast<SendPdu*>(pdu);
    switch (p.kind) {
        case SendPdu::Kind::ic_req:
            if (c.phase == TcpConn::Phase::ic_req) c.phase = TcpConn::Phase::ic_resp_wait;
            break;
        case SendPdu::Kind::h2c_data: {
            TcpReq& t = c.reqs[p.req];
            t.h2c_next += p.data_len;
            if (t.h2c_next < t.r2t_end) build_h2c(c, t, static_cast<uint16_t>(p.req));
            else t.r2t_active = false;
            break;
        }
        default: break;
    }
}

void QPairImpl::tcp_flush() noexcept {
    TcpConn& c = *tcp;
    for (int round = 0; round < 16 && c.socket && !c.send_list.empty(); ++round) {
        iovec v[64];
        int n = 0;
        for (SendPdu& p : c.send_list) {
            if (n >= 56) break;
            size_t skip = p.sent;
            if (skip < p.hdr_len) {
                v[n++] = {p.hdr.data() + skip, p.hdr_len - skip};
                skip = 0;
            } else {
                skip -= p.hdr_len;
            }
            if (p.data_len != 0) {
                if (skip < p.data_len) {
                    const TcpReq& t = c.reqs[p.req];
                    const int k = slice_iov(t.iov.data(), t.iovcnt, p.data_off + skip,
                                            p.data_len - skip, v + n, 62 - n);
                    if (k < 0) break;  // the rest of this PDU goes in the next writev
                    n += k;
                    skip = 0;
                } else {
                    skip -= p.data_len;
                }
            }
            if (p.has_ddgst) v[n++] = {p.ddgst.data() + skip, 4 - skip};
        }
        if (n == 0) break;
        auto w = c.socket->writev(v, n);
        if (!w) {
            if (w.code() != Errc::busy) tcp_lost("send failed (connection reset or closed)");
            return;
        }
        size_t moved = *w;
        c.bytes_out += moved;
        while (moved > 0 && !c.send_list.empty()) {
            SendPdu& p = c.send_list.front();
            const size_t left = p.total() - p.sent;
            if (moved < left) {
                p.sent += moved;
                break;
            }
            moved -= left;
            p.sent = p.total();
            c.send_list.remove(p);
            p.queued = false;
            tcp_pdu_sent(&p);
        }
    }
}

// ---- receive -------------------------------------------------------------------------------

bool QPairImpl::tcp_handle_header() noexcept {
    using stcp::PduType;
    TcpConn& c = *tcp;
    const RxHeader& h = c.rx_info;
    const uint8_t* b = c.rx_hdr.data();
    if (h.hdr_total > h.hlen) {
        uint32_t got;
        std::memcpy(&got, b + h.hlen, 4);
        if (crc32c(0, b, h.hlen) != got) {
            tcp_protocol_error("header digest mismatch");
            return false;
        }
    }
    auto live_request = [&](uint16_t cid, bool allow_zombie) -> Request* {
        if (cid >= requests_.size()) return nullptr;
        Request& r = requests_[cid];
        if (r.state == Request::State::outstanding) return &r;
        if (allow_zombie && r.state == Request::State::zombie) return &r;
        return nullptr;
    };
    switch (h.type) {
        case PduType::ic_resp: {
            stcp::IcResp ic;
            std::memcpy(&ic, b, sizeof(ic));
            if (c.phase != TcpConn::Phase::ic_resp_wait) {
                tcp_protocol_error("ICResp before the ICReq was sent");
                return false;
            }
            if (ic.pfv != stcp::pfv_1_0) {
                tcp_protocol_error("ICResp: unsupported PDU format version");
                return false;
            }
            if (ic.cpda > stcp::max_pda) {
                tcp_protocol_error("ICResp: CPDA above 31");
                return false;
            }
            if (ic.maxh2cdata < stcp::min_maxh2cdata || ic.maxh2cdata % 4 != 0) {
                tcp_protocol_error("ICResp: MAXH2CDATA below 4096 or not a dword multiple");
                return false;
            }
            const bool hd = (ic.dgst & stcp::dgst::hdgst_enable) != 0;
            const bool dd = (ic.dgst & stcp::dgst::ddgst_enable) != 0;
            if ((hd && !c.want_hdgst) || (dd && !c.want_ddgst)) {
                tcp_protocol_error("ICResp enables a digest the host did not ask for");
                return false;
            }
            c.hdgst = hd;
            c.ddgst = dd;
            c.cpda = ic.cpda;
            c.maxh2cdata = ic.maxh2cdata;
            c.phase = TcpConn::Phase::connect_wait;
            c.reset_rx();
            tcp_send_connect();
            return c.socket != nullptr;
        }
        case PduType::c2h_term_req: {
            stcp::TermReq tr;
            std::memcpy(&tr, b, sizeof(tr));
            STRATA_ERRLOG(log_nvme, "{} qpair {}: target terminated the connection: {} (fei {:#x})",
                          ctrl.label(), qid, stcp::fes_name(tr.status()),
                          tr.fei.get());
            tcp_lost("C2HTermReq from the target");
            return false;
        }
        case PduType::capsule_resp: {
            stcp::CapsuleResp cr;
            std::memcpy(&cr, b, sizeof(cr));
            Request* r = live_request(cr.cqe.cid, true);
            if (r == nullptr) {
                tcp_protocol_error("CapsuleResp for an unknown or idle command id");
                return false;
            }
            const TcpReq& t = tcp->reqs[r->cid];
            if (t.pdu.queued || t.r2t_active) {
                tcp_protocol_error("CapsuleResp while the command's data is still being sent");
                return false;
            }
            c.reset_rx();
            outstanding_.remove(*r);
            if (r->state == Request::State::zombie) {
                r->state = Request::State::free;
                free_.push_front(*r);
                return true;
            }
            Completion cpl;
            cpl.status = spec::StatusField{static_cast<uint16_t>(cr.cqe.status & ~1u)};
            cpl.dw0 = cr.cqe.dw0;
            cpl.dw1 = cr.cqe.dw1;
            complete(*r, cpl);
            return tcp->socket != nullptr;
        }
        case PduType::r2t: {
            stcp::R2T rt;
            std::memcpy(&rt, b, sizeof(rt));
            Request* r = live_request(rt.cccid, false);
            if (r == nullptr) {
                tcp_protocol_error("R2T for an unknown or idle command id");
                return false;
            }
            TcpReq& t = c.reqs[r->cid];
            if (!t.to_ctrl || t.in_capsule || t.len == 0) {
                tcp_protocol_error("R2T for a command with no data to send");
                return false;
            }
            if (t.r2t_active || t.pdu.queued) {
                tcp_protocol_error("R2T while another is being served (MAXR2T is 1)");
                return false;
            }
            if (rt.r2tl == 0 || rt.r2to != t.h2c_next || uint64_t{rt.r2to} + rt.r2tl > t.len) {
                tcp_protocol_error("R2T offset or length out of range");
                return false;
            }
            t.r2t_active = true;
            t.ttag = rt.ttag;
            t.r2t_end = size_t{rt.r2to} + rt.r2tl;
            build_h2c(c, t, r->cid);
            c.reset_rx();
            return true;
        }
        case PduType::c2h_data: {
            stcp::DataPdu d;
            std::memcpy(&d, b, sizeof(d));
            Request* r = live_request(d.cccid, false);
            if (r == nullptr) {
                tcp_protocol_error("C2HData for an unknown or idle command id");
                return false;
            }
            const TcpReq& t = c.reqs[r->cid];
            if (t.to_ctrl || t.len == 0) {
                tcp_protocol_error("C2HData for a command that reads no data");
                return false;
            }
            const uint8_t fl = d.ch.flags;
            const uint32_t pdo = d.ch.pdo;
            if (d.datal == 0 || d.datao != t.c2h_next || uint64_t{d.datao} + d.datal > t.len) {
                tcp_protocol_error("C2HData offset or length out of range");
                return false;
            }
            if (uint64_t{pdo} + d.datal + (c.ddgst ? kDataDigestBytes : 0) != h.plen) {
                tcp_protocol_error("C2HData length does not match its data length");
                return false;
            }
            const bool last = (fl & stcp::flags::last_pdu) != 0;
            if ((fl & stcp::flags::success) != 0 && !last) {
                tcp_protocol_error("C2HData SUCCESS without LAST_PDU");
                return false;
            }
            if (last && uint64_t{d.datao} + d.datal != t.len) {
                tcp_protocol_error("C2HData LAST_PDU before all the data");
                return false;
            }
            c.rx_flags = fl;
            c.rx_req = r->cid;
            c.rx_off = d.datao;
            c.rx_left = d.datal;
            c.rx_crc = 0;
            c.rx_ddgst_have = 0;
            c.rx_skip = pdo - h.hdr_total;
            c.rx = c.rx_skip != 0 ? TcpConn::Rx::pad : TcpConn::Rx::data;
            c.rx_have = 0;
            return true;
        }
        default:
            tcp_protocol_error("unexpected PDU type");
            return false;
    }
}

// The receive path reads big chunks: one readv takes whatever the socket holds, up to the
// receive buffer, and every PDU in it is parsed before the next read. A C2HData payload found
// in the buffer is copied to the command's buffer; one that is still to come when the buffer
// runs dry is read straight into the command's buffer, with the receive buffer behind it in the
// same readv for what follows. A read that returns less than it asked for drained the socket,
// so no second read is made just to see Errc::busy.

// The command the C2HData being received belongs to, or nullptr (connection ended) if it ended
// meanwhile (a timeout).
TcpReq* QPairImpl::tcp_rx_target() noexcept {
    TcpConn& c = *tcp;
    if (requests_[static_cast<size_t>(c.rx_req)].state != Request::State::outstanding) {
        tcp_lost("data for a command that already ended");
        return nullptr;
    }
    return &c.reqs[static_cast<size_t>(c.rx_req)];
}

// Bytes [rx_off, rx_off + n) of the C2HData payload are in the command's buffer: digest them,
// advance, and at the end of the payload wait for the data digest or finish the PDU. False once
// the connection is gone.
bool QPairImpl::tcp_rx_placed(size_t n) noexcept {
    TcpConn& c = *tcp;
    TcpReq& t = c.reqs[static_cast<size_t>(c.rx_req)];
    if (c.ddgst) {
        iovec d[kTcpMaxIov];
        const int m = slice_iov(t.iov.data(), t.iovcnt, c.rx_off, n, d, kTcpMaxIov);
        c.rx_crc = crc32c_iov(c.rx_crc, d, static_cast<size_t>(std::max(m, 0)));
    }
    c.rx_off += n;
    c.rx_left -= n;
    t.c2h_next = c.rx_off;
    if (c.rx_left != 0) return true;
    if (c.ddgst) {
        c.rx = TcpConn::Rx::ddgst;
        return true;
    }
    return tcp_rx_c2h_done();
}

// A C2HData PDU is complete; with SUCCESS it completes its command too.
bool QPairImpl::tcp_rx_c2h_done() noexcept {
    TcpConn& c = *tcp;
    const size_t cid = static_cast<size_t>(c.rx_req);
    const bool success = (c.rx_flags & stcp::flags::success) != 0;
    c.reset_rx();
    if (success) {
        Request& req = requests_[cid];
        outstanding_.remove(req);
        complete(req, Completion{});
    }
    return tcp->socket != nullptr;
}

bool QPairImpl::tcp_rx_parse(uint64_t until_completed) noexcept {
    TcpConn& c = *tcp;
    while (c.rpos < c.rend) {
        if (stats.completed >= until_completed) return true;
        const uint8_t* p = c.rbuf.get() + c.rpos;
        const size_t avail = c.rend - c.rpos;
        switch (c.rx) {
            case TcpConn::Rx::header: {
                const size_t take = std::min(avail, c.rx_need - c.rx_have);
                std::memcpy(c.rx_hdr.data() + c.rx_have, p, take);
                c.rpos += static_cast<uint32_t>(take);
                c.rx_have += take;
                if (c.rx_have < c.rx_need) break;
                if (c.rx_need == stcp::common_header_size) {
                    stcp::CommonHeader ch;
                    std::memcpy(&ch, c.rx_hdr.data(), sizeof(ch));
                    const bool ic_done = c.phase == TcpConn::Phase::connect_wait ||
                                         c.phase == TcpConn::Phase::live;
                    auto h = check_c2h_header(ch, c.hdgst, c.ddgst, ic_done);
                    if (!h) {
                        STRATA_ERRLOG(log_nvme, "{} qpair {}: {} (type {:#x} hlen {} plen {})",
                                      ctrl.label(), qid, h.error().message(), ch.pdu_type,
                                      ch.hlen, ch.plen);
                        tcp_protocol_error("malformed PDU header");
                        return false;
                    }
                    c.rx_info = *h;
                    c.rx_need = h->hdr_total;
                    if (c.rx_need > c.rx_have) break;
                }
                if (!tcp_handle_header()) return false;
                break;
            }
            case TcpConn::Rx::pad: {
                const size_t take = std::min(avail, c.rx_skip);
                c.rpos += static_cast<uint32_t>(take);
                c.rx_skip -= take;
                if (c.rx_skip == 0) c.rx = TcpConn::Rx::data;
                break;
            }
            case TcpConn::Rx::data: {
                TcpReq* t = tcp_rx_target();
                if (t == nullptr) return false;
                const size_t take = std::min(avail, c.rx_left);
                iovec v[kTcpMaxIov];
                const int k = slice_iov(t->iov.data(), t->iovcnt, c.rx_off, take, v, kTcpMaxIov);
                STRATA_ASSERT(k > 0);
                const uint8_t* from = p;
                for (int i = 0; i < k; ++i) {
                    std::memcpy(v[i].iov_base, from, v[i].iov_len);
                    from += v[i].iov_len;
                }
                c.rpos += static_cast<uint32_t>(take);
                if (!tcp_rx_placed(take)) return false;
                break;
            }
            case TcpConn::Rx::ddgst: {
                const size_t take = std::min(avail, 4 - c.rx_ddgst_have);
                std::memcpy(c.rx_ddgst.data() + c.rx_ddgst_have, p, take);
                c.rpos += static_cast<uint32_t>(take);
                c.rx_ddgst_have += take;
                if (c.rx_ddgst_have < 4) break;
                uint32_t want;
                std::memcpy(&want, c.rx_ddgst.data(), 4);
                if (want != c.rx_crc) {
                    tcp_protocol_error("data digest mismatch");
                    return false;
                }
                if (!tcp_rx_c2h_done()) return false;
                break;
            }
        }
    }
    return c.socket != nullptr;
}

uint32_t QPairImpl::tcp_recv(uint32_t max) noexcept {
    TcpConn& c = *tcp;
    const uint64_t before = stats.completed;
    const uint64_t until = before + max;
    auto done = [&] { return static_cast<uint32_t>(stats.completed - before); };
    // What an earlier poll left in the buffer (it stopped at `max` completions) comes first.
    if (!tcp_rx_parse(until)) return done();
    for (int reads = 0; reads < 4 && c.socket && c.rpos == c.rend && stats.completed < until;
         ++reads) {
        iovec v[kTcpMaxIov + 1];
        int n = 0;
        size_t direct = 0;  // payload bytes asked for straight into the command's buffer
        if (c.rx == TcpConn::Rx::data) {
            TcpReq* t = tcp_rx_target();
            if (t == nullptr) return done();
            n = slice_iov(t->iov.data(), t->iovcnt, c.rx_off, c.rx_left, v, kTcpMaxIov);
            STRATA_ASSERT(n > 0);
            direct = c.rx_left;
        }
        v[n++] = {c.rbuf.get(), kTcpRecvBufBytes};
        auto r = c.socket->readv(v, n);
        if (!r) {
            if (r.code() != Errc::busy)
                tcp_lost(r.code() == Errc::shutdown ? "connection closed by the target"
                                                    : "connection reset or failed");
            return done();
        }
        const size_t got = *r;
        ++c.reads;
        c.bytes_in += got;
        const size_t placed = std::min(got, direct);
        c.rpos = 0;
        c.rend = static_cast<uint32_t>(got - placed);
        if (placed != 0 && !tcp_rx_placed(placed)) return done();
        if (!tcp_rx_parse(until)) return done();
        if (got < direct + kTcpRecvBufBytes) break;  // drained: no read just to see busy
    }
    return done();
}

uint32_t QPairImpl::tcp_process(uint32_t max) noexcept {
    TcpConn& c = *tcp;
    if (!c.socket) return 0;
    if (c.phase != TcpConn::Phase::live && runtime::now_ns() > c.connect_deadline_ns) {
        tcp_lost("connect timed out (ICResp or Connect response)");
        return 0;
    }
    tcp_flush();
    if (!c.socket) return 0;
    const uint32_t n = tcp_recv(max == 0 ? max_completions : max);
    if (c.socket) {
        if (!waiting_.empty()) tcp_send_waiting();
        tcp_flush();
    }
    return n;
}

}  // namespace strata::nvme
