// One iSCSI connection: the receive loop (core/nvmf's shape: a staging buffer, PDU by PDU,
// no read spent on EAGAIN), the login (LoginConnection, with this connection as its
// LoginHost), then the full feature phase on core/scsi, and the send queue.
//
// A SCSI command's life:
//   command PDU      -> a free Cmd (the connection's table of queue_depth + 8), buffers for the
//                       expected length from the poll group's pool; immediate data lands there
//   write            -> unsolicited Data-Out up to FirstBurstLength (InitialR2T=No), then R2Ts
//                       of up to MaxBurstLength each, one per command at a time
//                       (MaxOutstandingR2T=1) and max_r2t_per_connection on the connection;
//                       every Data-Out checked (TTT, offset, DataSN, F bit, length)
//   all data there   -> scsi::submit on the device's Thread (this one)
//   Task done        -> Data-In PDUs cut at the initiator's MaxRecvDataSegmentLength, the
//                       status in the last one (S bit) when there is no sense data, else a
//                       SCSI Response with sense and residuals
//   last PDU sent    -> buffers back to the pool, the Cmd back to the free list
// A protocol violation sends a Reject, then ends this connection alone; a data digest error
// on a Data-Out is answered with a Reject (RFC 7143 §7.8) and the command ends with CHECK
// CONDITION (ABORTED COMMAND, data phase CRC error), so bad data never reaches the disk.
//
// Data digests through accel (TargetOptions::data_digest_accel_threshold): a Data-Out whose
// data reaches the threshold is verified by a crc32c op on the poll group's accel channel
// (the receiver defers its check); the command executes only once the op has completed, a
// mismatch or a failed op being a data digest error as above. The Data-In PDUs of a refill
// that reach it get their digests from one accel batch and are queued by its completion (the
// status then goes in a SCSI Response of its own, so StatSN keeps its order on the wire); a
// failed batch ends the command with a SCSI Response (CHECK CONDITION) instead of the data
// whose digest was not computed. While an op is in flight its command is held (CmdState::held
// once released), so a closed connection is not freed under it. Immediate data stays inline.
#include "conn.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/crc.h>
#include <strata/runtime/host.h>
#include <strata/runtime/thread.h>

namespace strata::iscsi::internal {

namespace {

constexpr uint32_t kDirectIovs = 16;  // a Data-Out's destination: a few chunks at most
constexpr int kFlushIovs = 64;
constexpr uint32_t kExtraCmds = 8;  // immediate commands beyond the CmdSN window
constexpr uint64_t kLoginTimeoutNs = 60'000'000'000;
constexpr uint64_t kDrainTimeoutNs = 1'000'000'000;
const uint8_t kZeros[4] = {};

void put_le32(uint8_t* p, uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

bool sn_lte(uint32_t a, uint32_t b) noexcept { return int32_t(b - a) >= 0; }  // serial a <= b

// The slice [off, off + len) of a buffer's iovecs into `out`; returns the count.
uint32_t slice_iov(const iovec* iov, uint32_t cnt, uint32_t off, uint32_t len, iovec* out,
                   uint32_t max) noexcept {
    uint32_t k = 0;
    for (uint32_t i = 0; i < cnt && len > 0 && k < max; ++i) {
        const auto l = uint32_t(iov[i].iov_len);
        if (off >= l) {
            off -= l;
            continue;
        }
        const uint32_t take = std::min(l - off, len);
        out[k++] = {static_cast<uint8_t*>(iov[i].iov_base) + off, take};
        len -= take;
        off = 0;
    }
    return k;
}

void fixed_sense(scsi::Task& t, uint8_t key, uint8_t asc, uint8_t ascq) noexcept {
    std::memset(t.sense, 0, sizeof t.sense);
    t.sense[0] = 0x70;
    t.sense[2] = key;
    t.sense[7] = 10;
    t.sense[12] = asc;
    t.sense[13] = ascq;
    t.sense_len = 18;
}

void on_socket(void* ctx, sock::Socket&) noexcept { static_cast<Conn*>(ctx)->process_rx(); }

bool ctrl_sent(Conn&, Tx& t) noexcept {
    delete static_cast<CtrlTx*>(&t);
    return false;
}
bool cmd_sent_fn(Conn& c, Tx& t) noexcept { return c.cmd_sent(static_cast<Cmd&>(t)); }

void task_done_fn(scsi::Task&, void* ctx) {
    auto* c = static_cast<Cmd*>(ctx);
    c->conn->task_done(*c);
}
void mgmt_done_fn(scsi::MgmtTask&, void* ctx) {
    auto* m = static_cast<Mgmt*>(ctx);
    m->conn->mgmt_done(*m);
}

}  // namespace

// ---- lifecycle ---------------------------------------------------------------------------------

Conn::Conn(PollGroup& g, std::unique_ptr<sock::Socket> s, int32_t pg_tag)
    : group_(&g), net_(g.net()), sock_(std::move(s)), pg_tag_(pg_tag) {
    peer_ip_ = sock_->peer().address;
    local_ip_ = sock_->local().address;
    opts_ = net_.dir().options();
    accepted_ns_ = runtime::now_ns();
    // CHAP challenges: seeded per connection (virtual time under the simulator: deterministic).
    prng_.reseed(accepted_ns_ ^ (uint64_t(sock_->peer().port) << 32) ^ uint64_t(uintptr_t(this)));
    login_ = std::make_unique<LoginConnection>(
        LoginConfig{&opts_, this, &prng_, uint16_t(std::clamp(pg_tag, 1, 65535))});
    rx_.config() = RecvConfig{};
    net_.register_conn(*this, g.thread(), pg_tag, sock::to_string(sock_->peer()),
                       sock::to_string(sock_->local()));
}

Conn::~Conn() {
    runtime::HostScope scope(net_.host());
    while (Tx* t = txq_.pop_front())
        if (t->sent_fn == &ctrl_sent) delete static_cast<CtrlTx*>(t);
    net_.unregister_conn(*this);
}

Status Conn::attach_group(PollGroup& g) {
    group_ = &g;
    defer_digests();  // this group's accel channel, or none
    if (state_ == State::closed) return {};
    Status s = g.sockets().add(*sock_, &on_socket, this);
    registered_ = s.ok();
    return s;
}

void Conn::detach_group() noexcept {
    if (registered_) group_->sockets().remove(*sock_);
    registered_ = false;
}

bool Conn::reapable() const noexcept {
    if (state_ != State::closed || in_use_ != 0) return false;
    for (const Mgmt& m : mgmt_)
        if (m.busy) return false;
    return true;
}

// The session's I_T nexus is gone (logout, connection loss, reinstatement): the SCSI layer
// drops its SPC-2 reservations. On the device's Thread; a connection closing elsewhere (during
// login) sends a message that finds the device by name, as it may be gone by then.
void Conn::nexus_ended(const Session& s) noexcept {
    if (s.type != SessionType::normal || s.device == nullptr || s.thread == nullptr) return;
    if (runtime::current_thread() == s.thread) return scsi::nexus_lost(*s.device, s.initiator_port);
    (void)s.thread->post([name = s.device_name, port = s.initiator_port] {
        if (scsi::Device* d = scsi::find_device(name)) scsi::nexus_lost(*d, port);
    });
}

void Conn::close(const char* why) noexcept {
    if (state_ == State::closed) return;
    state_ = State::closed;
    STRATA_INFOLOG(log_iscsi, "{}: connection closed ({})", peer_ip_, why);
    detach_group();
    sock_->close();
    while (Tx* t = txq_.pop_front())
        if (t->sent_fn == &ctrl_sent) delete static_cast<CtrlTx*>(t);
    while (r2t_wait_.pop_front()) {
    }
    cur_ = nullptr;
    for (uint32_t i = 0; i < depth_; ++i) {
        Cmd& c = cmds_[i];
        if (c.state != CmdState::free && c.state != CmdState::exec) release(c);
    }
    if (session_ && net_.detach(*this, session_)) nexus_ended(*session_);
    ++net_.stats().closed;
}

// ---- LoginHost ---------------------------------------------------------------------------------

LoginStatus Conn::find_target(std::string_view name, std::string_view initiator, TargetInfo* out) {
    lookup_ = net_.dir().lookup_target(name, initiator, peer_ip_, pg_tag_);
    if (!lookup_.status.ok()) return lookup_.status;
    if (!lookup_.device) return login_status::target_removed;
    *out = lookup_.info;
    out->header_digest = lookup_.header_digest;
    out->data_digest = lookup_.data_digest;
    out->queue_depth = uint32_t(std::max(1, lookup_.queue_depth));
    return login_status::success;
}
AuthPolicy Conn::discovery_auth() { return net_.dir().discovery_policy(); }
LoginStatus Conn::join_session(const Isid& isid, uint16_t tsih, std::string_view initiator,
                               std::string_view target, SessionParams* params) {
    return net_.join_session(*this, isid, tsih, initiator, target, params);
}
uint16_t Conn::new_session(const Isid& isid, std::string_view initiator, std::string_view target,
                           SessionType type) {
    return net_.new_session(*this, isid, initiator, target, type);
}
std::vector<SendTargetsEntry> Conn::send_targets(std::string_view initiator) {
    return net_.dir().send_targets(initiator, peer_ip_, local_ip_);
}
bool Conn::lookup(int32_t group, std::string_view user, ChapSecret* out) const {
    return net_.dir().chap_secrets().lookup(group, user, out);
}

// ---- receive -----------------------------------------------------------------------------------

void Conn::process_rx() noexcept {
    const auto live = [this] { return state_ == State::login || state_ == State::ffp; };
    if (!live()) return;
    const auto on_event = [&](RecvEvent ev) { return handle_event(ev) && live(); };
    switch (sock::receive_pdus<kDirectIovs>(*sock_, rx_staging_, rx_, on_event)) {
        case sock::RxEnd::yielded:
        case sock::RxEnd::stopped:
            return;
        case sock::RxEnd::closed:
            return close("closed by the initiator");
        case sock::RxEnd::lost:
            return close("connection lost mid-PDU or reset");
    }
}

bool Conn::handle_event(RecvEvent ev) noexcept {
    switch (ev) {
    case RecvEvent::none: return true;
    case RecvEvent::error:
        ++net_.stats().protocol_errors;
        STRATA_WARNLOG(log_iscsi, "{}: bad PDU ({}): closing the connection", peer_ip_,
                       recv_error_name(rx_.error()));
        close("bad PDU");
        return false;
    case RecvEvent::header: return on_header();
    case RecvEvent::pdu: return on_pdu();
    }
    return false;
}

bool Conn::on_header() noexcept {
    if (state_ == State::ffp) return ffp_header();
    pdu_data_.resize(rx_.data_length());
    pdu_iov_ = {pdu_data_.data(), pdu_data_.size()};  // the receiver keeps the pointer
    rx_.set_data_destination(&pdu_iov_, 1);
    return true;
}

bool Conn::on_pdu() noexcept {
    if (state_ == State::login) return login_pdu();
    last_rx_ns_ = runtime::now_ns();
    ping_out_ = false;
    return ffp_pdu();
}

// ---- login -------------------------------------------------------------------------------------

bool Conn::login_pdu() noexcept {
    CtrlTx* t = ctrl();
    const auto outcome = login_->on_pdu(
        rx_.header(), std::span<const uint8_t>(pdu_data_.data(), rx_.data_length()), t->bytes);
    queue_ctrl(t);
    if (outcome == LoginConnection::Outcome::failed) {
        STRATA_NOTICELOG(log_iscsi, "{}: login failed ({:02x}/{:02x}: {})", peer_ip_,
                         login_->status().status_class, login_->status().status_detail,
                         login_->failure_reason());
        stop_reading();  // closes once the response is out
        return false;
    }
    if (outcome == LoginConnection::Outcome::full_feature) {
        enter_ffp();
        return state_ == State::ffp && group_ != nullptr;
    }
    return true;
}

void Conn::enter_ffp() noexcept {
    neg_ = login_->negotiated();
    rx_.config() = RecvConfig{neg_.header_digest, neg_.data_digest, neg_.target_mrdsl};
    defer_digests();
    session_ = net_.attach(*this, neg_.tsih);
    if (!session_) {
        close("session gone at the end of the login");
        return;
    }
    state_ = State::ffp;
    ++net_.stats().logins;
    last_rx_ns_ = runtime::now_ns();
    depth_ = session_->queue_depth + kExtraCmds;
    cmds_ = std::make_unique<Cmd[]>(depth_);
    free_.reserve(depth_);
    for (uint32_t i = depth_; i > 0; --i) {
        Cmd& c = cmds_[i - 1];
        c.conn = this;
        c.index = uint16_t(i - 1);
        c.sent_fn = &cmd_sent_fn;
        free_.push_back(uint16_t(i - 1));
    }
    for (Mgmt& m : mgmt_) m.conn = this;
    text_neg_ = std::make_unique<TextNegotiator>(this, &neg_);
    login_.reset();
    runtime::Thread* dest = session_->thread;
    net_.update_conn(*this, dest ? *dest : group_->thread(), neg_.cid, neg_.tsih,
                     neg_.target_name);
    if (dest == nullptr || dest == &group_->thread()) return;
    // Move to the device's Thread: the socket leaves this group, joins that Thread's.
    ++net_.stats().moved;
    PollGroup& from = *group_;
    detach_group();
    from.release_conn(*this);
    group_ = nullptr;
    PollGroup* to = &net_.group_for(*dest);
    Conn* self = this;
    Status s = dest->post([to, self] { to->adopt(self); });
    if (!s.ok()) {
        group_ = &from;
        close("the device's Thread is gone");
        from.adopt(this);
    }
}

// ---- full feature phase: receive -----------------------------------------------------------

bool Conn::ffp_header() noexcept {
    switch (rx_.bhs().op()) {
    case Opcode::scsi_cmd: return scsi_cmd_header();
    case Opcode::data_out: return data_out_header();
    default: break;
    }
    pdu_data_.resize(rx_.data_length());
    pdu_iov_ = {pdu_data_.data(), pdu_data_.size()};  // the receiver keeps the pointer
    rx_.set_data_destination(&pdu_iov_, 1);
    return true;
}

bool Conn::ffp_pdu() noexcept {
    if (discard_) {
        discard_ = false;
        return true;
    }
    switch (rx_.bhs().op()) {
    case Opcode::scsi_cmd:
        if (rx_.data_length() == 0) return scsi_cmd_header();  // no header event came
        if (cur_) {
            Cmd& c = *cur_;
            cur_ = nullptr;
            scsi_cmd_received(c);
        }
        return true;
    case Opcode::data_out:
        if (rx_.data_length() == 0 && !data_out_header()) return false;
        if (discard_) {
            discard_ = false;
            return true;
        }
        data_out_received();
        return true;
    case Opcode::nop_out: nop_out(); return true;
    case Opcode::logout_req: logout(); return state_ == State::ffp;
    case Opcode::task_mgmt_req: task_mgmt(); return true;
    case Opcode::text_req: text(); return state_ == State::ffp;
    case Opcode::snack: reject(RejectReason::snack_reject); return true;  // ERL 0
    default:
        violation(RejectReason::protocol_error, "Login Request in full feature phase");
        return false;
    }
}

SnState& Conn::sn() noexcept {
    neg_.sn.exp_cmd_sn = session_->exp_cmd_sn;
    neg_.sn.max_cmd_sn = session_->max_cmd_sn();
    return neg_.sn;
}

void Conn::set_sn(Be32& stat, Be32& exp, Be32& max, bool advance) noexcept {
    SnState& s = sn();
    stat.set(s.stat_sn);
    if (advance) ++s.stat_sn;
    exp.set(s.exp_cmd_sn);
    max.set(s.max_cmd_sn);
}

bool Conn::check_cmd_sn(const Bhs& b) noexcept {
    if (b.immediate()) return true;
    uint32_t cmd_sn = 0;
    std::memcpy(&cmd_sn, reinterpret_cast<const uint8_t*>(&b) + 24, 4);
    cmd_sn = __builtin_bswap32(cmd_sn);
    Session& s = *session_;
    if (!sn_lte(s.exp_cmd_sn, cmd_sn) || !sn_lte(cmd_sn, s.max_cmd_sn())) {
        STRATA_NOTICELOG(log_iscsi, "{}: CmdSN {} outside [{}, {}]: {} dropped", peer_ip_, cmd_sn,
                         s.exp_cmd_sn, s.max_cmd_sn(), opcode_name(b.opcode & kOpcodeMask));
        return false;
    }
    if (sn_lte(s.exp_cmd_sn, cmd_sn)) s.exp_cmd_sn = cmd_sn + 1;
    return true;
}

CtrlTx* Conn::ctrl() noexcept {
    auto* t = new CtrlTx;
    t->sent_fn = &ctrl_sent;
    return t;
}

void Conn::queue_ctrl(CtrlTx* t) noexcept {
    t->clear();
    t->add(t->bytes.data(), t->bytes.size());
    if (t->total == 0) {
        delete t;
        return;
    }
    queue(*t);
}

void Conn::queue(Tx& t) noexcept {
    t.sent = 0;
    txq_.push_back(t);
}

void Conn::reject(RejectReason reason) noexcept {
    reject(reason, rx_.header());
}

void Conn::reject(RejectReason reason, const uint8_t* rejected_bhs) noexcept {
    CtrlTx* t = ctrl();
    append_reject(t->bytes, reason, rejected_bhs, sn(), dg());
    queue_ctrl(t);
}

void Conn::violation(RejectReason reason, const char* why) noexcept {
    ++net_.stats().protocol_errors;
    STRATA_WARNLOG(log_iscsi, "{}: protocol error ({}): closing the connection", peer_ip_, why);
    reject(reason);
    stop_reading();
    if (cur_) cur_ = nullptr;
}

// Nothing more is read (the socket leaves the group, so a peer that keeps sending cannot keep
// the poll group busy); what is queued goes out, then the connection closes, or after
// kDrainTimeoutNs if the peer does not read.
void Conn::stop_reading() noexcept {
    close_after_flush_ = true;
    if (state_ != State::closed) state_ = State::logout;
    drain_ns_ = runtime::now_ns();
    detach_group();
}

// ---- commands ----------------------------------------------------------------------------------

Cmd* Conn::alloc_cmd() noexcept {
    if (free_.empty()) return nullptr;
    Cmd& c = cmds_[free_.back()];
    free_.pop_back();
    ++in_use_;
    c.task.reset();
    c.digest_error = c.failed = false;
    c.nbufs = 0;
    c.received = c.burst_end = 0;
    c.unsolicited = false;
    c.data_sn = 0;
    c.ttt = kReservedTag;
    c.r2t_sn = 0;
    c.r2t_held = false;
    c.din_off = c.din_len = c.din_sn = 0;
    c.rsp_pending = c.rsp_sent = false;
    c.phase = 0;
    c.immediate = false;
    c.dg_pending = false;
    return &c;
}

void Conn::release(Cmd& c) noexcept {
    if (c.state == CmdState::free || c.state == CmdState::held) return;
    if (ListHook<R2tTag>& h = c; h.linked()) r2t_wait_.remove(c);
    if (ListHook<TxTag>& h = c; h.linked()) txq_.remove(c);
    if (c.r2t_held) {
        c.r2t_held = false;
        --r2t_out_;
    }
    if (cur_ == &c) cur_ = nullptr;
    complete_cmd_sn(c);
    if (c.dg_pending) {  // accel still reads its buffers: freed by the op's completion
        c.state = CmdState::held;
        return;
    }
    free_cmd(c);
}

void Conn::free_cmd(Cmd& c) noexcept {
    put_buffers(c);
    c.state = CmdState::free;
    ++c.gen;
    free_.push_back(c.index);
    --in_use_;
    if (state_ == State::ffp) next_r2t();
}

void Conn::complete_cmd_sn(Cmd& c) noexcept {
    if (!c.immediate && c.cmd_sn != 0xffffffff && session_) {
        c.cmd_sn = 0xffffffff;  // counted once
        if (session_->outstanding > 0) --session_->outstanding;
    }
}

bool Conn::get_buffers(Cmd& c, uint32_t len) noexcept {
    c.small_buf = false;
    if (len <= kSmallChunk) {
        if (void* b = group_->get_small()) {
            c.small_buf = true;
            c.bufs[0] = b;
            c.iovs[0] = {b, kSmallChunk};
            c.nbufs = 1;
            return true;
        }
    }
    uint32_t left = len;
    while (left > 0) {
        void* b = group_->get_chunk();
        if (!b) {
            put_buffers(c);
            return false;
        }
        // Each iovec is the whole chunk: core/scsi may fill a block past `len` (a read whose
        // EDTL ends inside a block) and transfers only `len`.
        const uint32_t l = std::min(left, kChunk);
        c.bufs[c.nbufs] = b;
        c.iovs[c.nbufs] = {b, kChunk};
        ++c.nbufs;
        left -= l;
    }
    return true;
}

void Conn::put_buffers(Cmd& c) noexcept {
    if (c.small_buf && c.nbufs == 1) group_->put_small(c.bufs[0]);
    else
        for (uint32_t i = 0; i < c.nbufs; ++i) group_->put_chunk(c.bufs[i]);
    c.small_buf = false;
    c.nbufs = 0;
}

Cmd* Conn::find_itt(uint32_t itt) noexcept {
    for (uint32_t i = 0; i < depth_; ++i)
        if (cmds_[i].state != CmdState::free && cmds_[i].itt == itt) return &cmds_[i];
    return nullptr;
}

bool Conn::scsi_cmd_header() noexcept {
    const auto h = bhs_as<ScsiCmd>(rx_.header());
    const uint32_t dlen = rx_.data_length();
    auto drop = [&] {
        if (dlen > 0) {
            rx_.discard_data();
            discard_ = true;
        }
        return true;
    };
    if (session_->type == SessionType::discovery || !session_->device) {
        violation(RejectReason::protocol_error, "SCSI Command in a discovery session");
        return false;
    }
    if (!check_cmd_sn(rx_.bhs())) return drop();
    Cmd* cp = alloc_cmd();
    if (!cp) {
        reject(RejectReason::immediate_command_reject);
        return drop();
    }
    Cmd& c = *cp;
    c.itt = h.itt.get();
    c.cmd_sn = h.cmd_sn.get();
    c.immediate = rx_.bhs().immediate();
    if (!c.immediate) ++session_->outstanding;
    else c.cmd_sn = 0xffffffff;
    c.read = h.flags & scsi_flags::read;
    c.write = h.flags & scsi_flags::write;
    c.edtl = h.expected_data_transfer_length.get();
    std::memcpy(c.lun_field, h.lun.b, 8);
    c.state = CmdState::rx_imm;
    // The CDB: the BHS's 16 bytes and an extended CDB AHS.
    const ParsedAhs& ahs = rx_.parsed_ahs();
    std::memcpy(c.task.cdb, h.cdb, 16);
    c.task.cdb_len = 16;
    if (ahs.extended_cdb_length > 0) {
        if (16 + ahs.extended_cdb_length > scsi::kMaxCdbBytes) {
            fail_cmd(c, scsi::status::check_condition, 0x5, 0x24, 0x00);  // invalid field in CDB
            return drop();
        }
        std::memcpy(c.task.cdb + 16, ahs.extended_cdb, ahs.extended_cdb_length);
        c.task.cdb_len = uint8_t(16 + ahs.extended_cdb_length);
    }
    if (c.read && c.write) {  // bidirectional commands are not supported by core/scsi
        fail_cmd(c, scsi::status::check_condition, 0x5, 0x24, 0x00);
        return drop();
    }
    if (dlen > 0) {
        const SessionParams& p = session_->params;
        if (!c.write || !p.immediate_data || dlen > c.edtl || dlen > p.first_burst_length) {
            release(c);
            violation(RejectReason::protocol_error, "immediate data not allowed or too long");
            return false;
        }
    }
    if (c.edtl > kMaxTransfer) {
        fail_cmd(c, scsi::status::check_condition, 0x5, 0x24, 0x00);
        return drop();
    }
    if ((c.read || c.write) && c.edtl > 0 && !get_buffers(c, c.edtl)) {
        fail_cmd(c, scsi::status::busy, 0, 0, 0);
        return drop();
    }
    if (dlen > 0) {
        // Immediate data: its digest is checked inline, as it arrives (docs/design/iscsi.md).
        rx_.check_data_digest_inline();
        c.slice[0] = {};
        const uint32_t k = slice_iov(c.iovs, c.nbufs, 0, dlen, c.slice, kMaxChunks);
        rx_.set_data_destination(c.slice, k);
        cur_ = &c;
        return true;
    }
    scsi_cmd_received(c);
    return true;
}

void Conn::scsi_cmd_received(Cmd& c) noexcept {
    const uint32_t dlen = rx_.data_length();
    if (dlen > 0 && !rx_.data_digest_ok()) {
        ++net_.stats().data_digest_errors;
        reject(RejectReason::data_digest_error);
        release(c);  // the command is not taken (§7.8); its CmdSN was consumed
        return;
    }
    c.received = dlen;
    const auto h = bhs_as<ScsiCmd>(rx_.header());
    if (c.write && c.edtl > 0 && c.received < c.edtl) {
        const SessionParams& p = session_->params;
        const uint32_t first_end = std::min(c.edtl, p.first_burst_length);
        if (!p.initial_r2t && !(h.flags & scsi_flags::final) && c.received < first_end) {
            c.state = CmdState::rx_data;
            c.unsolicited = true;
            c.burst_end = first_end;
            c.data_sn = 0;
            return;
        }
        queue_r2t(c);
        return;
    }
    execute(c);
}

void Conn::queue_r2t(Cmd& c) noexcept {
    c.state = CmdState::wait_r2t;
    r2t_wait_.push_back(c);
    next_r2t();
}

void Conn::next_r2t() noexcept {
    const uint32_t cap = std::max<uint32_t>(1, opts_.max_r2t_per_connection);
    while (r2t_out_ < cap && !r2t_wait_.empty()) {
        Cmd& c = *r2t_wait_.pop_front();
        c.r2t_held = true;
        ++r2t_out_;
        c.state = CmdState::rx_data;
        c.unsolicited = false;
        c.burst_end = std::min(c.edtl, c.received + session_->params.max_burst_length);
        c.data_sn = 0;
        c.ttt = uint32_t(c.gen) << 16 | c.index;
        R2t r{};
        r.opcode = uint8_t(Opcode::r2t);
        r.flags = kFinalBit;
        std::memcpy(r.lun.b, c.lun_field, 8);
        r.itt.set(c.itt);
        r.ttt.set(c.ttt);
        set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, false);
        r.r2t_sn.set(c.r2t_sn++);
        r.buffer_offset.set(c.received);
        r.desired_data_transfer_length.set(c.burst_end - c.received);
        c.phase = 0;
        c.clear();
        c.add(c.hdr[0], build_header(c.hdr[0], &r, nullptr, 0, 0, dg()));
        if (ListHook<TxTag>& hk = c; !hk.linked()) queue(c);
    }
}

bool Conn::data_out_header() noexcept {
    const auto d = bhs_as<DataOut>(rx_.header());
    const uint32_t ttt = d.ttt.get(), itt = d.itt.get(), off = d.buffer_offset.get();
    const uint32_t len = rx_.data_length();
    const bool final = d.flags & kFinalBit;
    Cmd* c = nullptr;
    if (ttt == kReservedTag) {
        c = find_itt(itt);
        if (c && !(c->state == CmdState::rx_data && c->unsolicited)) {
            violation(RejectReason::protocol_error, "unsolicited Data-Out not expected");
            return false;
        }
    } else if ((ttt & 0xffff) < depth_) {
        c = &cmds_[ttt & 0xffff];
        if (c->state != CmdState::rx_data || c->ttt != ttt || c->unsolicited) c = nullptr;
        if (c && c->itt != itt) {
            violation(RejectReason::invalid_pdu_field, "Data-Out ITT does not match its TTT");
            return false;
        }
    }
    if (!c) {  // a command that ended (aborted, failed): its data is dropped
        if (len > 0) rx_.discard_data();
        discard_ = true;
        return true;
    }
    if (off != c->received || uint64_t{off} + len > c->burst_end ||
        final != (off + len == c->burst_end)) {
        violation(RejectReason::protocol_error, "Data-Out offset, length or F bit wrong");
        return false;
    }
    if (d.data_sn.get() != c->data_sn) {
        // A DataSN out of order (ERL 0 cannot recover it): the PDU is rejected and the command
        // fails; the session goes on, and the command's later Data-Outs are dropped.
        STRATA_NOTICELOG(log_iscsi, "{}: ITT {:#x}: DataSN {} where {} was due: command failed",
                         peer_ip_, itt, d.data_sn.get(), c->data_sn);
        reject(RejectReason::protocol_error);
        if (len > 0) rx_.discard_data();
        discard_ = true;
        fail_cmd(*c, scsi::status::check_condition, 0xB, 0x4B, 0x00);  // DATA PHASE ERROR
        next_r2t();
        return true;
    }
    ++c->data_sn;
    cur_ = c;
    if (len > 0) {
        const uint32_t k = slice_iov(c->iovs, c->nbufs, off, len, c->slice, kMaxChunks);
        rx_.set_data_destination(c->slice, k);
    }
    return true;
}

void Conn::data_out_received() noexcept {
    Cmd* cp = cur_;
    cur_ = nullptr;
    if (!cp) return;
    Cmd& c = *cp;
    const auto d = bhs_as<DataOut>(rx_.header());
    const uint32_t off = c.received, len = rx_.data_length();
    c.received += len;
    bool ok = rx_.data_digest_ok();
    // Deferred (data_digest_accel_threshold): to accel, where rx_digest_done judges it; with
    // an op of this command still in flight, or accel refusing, checked here.
    if (len > 0 && rx_.data_digest_deferred() && (c.dg_pending || !submit_rx_digest(c, off, len)))
        ok = rx_digest_inline(c, off, len);
    if (len > 0 && !ok) {
        ++net_.stats().data_digest_errors;
        c.digest_error = true;
        reject(RejectReason::data_digest_error);
    }
    if (!(d.flags & kFinalBit)) return;
    if (c.unsolicited) {
        c.unsolicited = false;
    } else if (c.r2t_held) {
        c.r2t_held = false;
        --r2t_out_;
    }
    if (c.received >= c.edtl) {
        if (c.dg_pending)
            c.state = CmdState::digest;  // rx_digest_done goes on
        else
            data_out_complete(c);
    } else {
        queue_r2t(c);
    }
    next_r2t();
}

void Conn::data_out_complete(Cmd& c) noexcept {
    if (c.digest_error)  // ABORTED COMMAND / DATA PHASE CRC ERROR DETECTED
        fail_cmd(c, scsi::status::check_condition, 0xB, 0x47, 0x01);
    else
        execute(c);
}

// ---- data digests through accel --------------------------------------------------------------

// Received data digests from the threshold on are left by the receiver to accel (Data-Out).
// neg_ is set at the end of the login: 0 before it.
void Conn::defer_digests() noexcept {
    rx_.config().data_digest_defer_min =
        neg_.data_digest && group_ && group_->accel() ? opts_.data_digest_accel_threshold : 0;
}

bool Conn::digest_by_accel(uint32_t len) const noexcept {
    const uint32_t t = opts_.data_digest_accel_threshold;
    return t != 0 && len >= t && group_ && group_->accel();
}

// The Data-Out just received (its data at [off, off + len) of c's buffers): crc32c of the
// data and its padding submitted to accel; false if accel refused it (checked inline then).
// The iovecs, padding, expected digest and header are copied: the op outlives the PDU.
bool Conn::submit_rx_digest(Cmd& c, uint32_t off, uint32_t len) noexcept {
    accel::Channel* ch = group_ ? group_->accel() : nullptr;
    if (!ch) return false;
    uint32_t n = slice_iov(c.iovs, c.nbufs, off, len, c.dg_iov, kMaxChunks);
    const auto pad = rx_.padding();
    if (!pad.empty()) {
        std::memcpy(c.dg_pad, pad.data(), pad.size());
        c.dg_iov[n++] = {c.dg_pad, pad.size()};
    }
    c.dg_expect = rx_.data_digest();
    std::memcpy(c.dg_bhs, rx_.header(), kBhsSize);
    c.dg_crc = 0;
    if (!ch->submit_crc32cv(&c.dg_crc, c.dg_iov, n, 0, &Conn::rx_digest_done, &c).ok())
        return false;
    c.dg_pending = true;
    ++net_.stats().data_digests_accel;
    return true;
}

bool Conn::rx_digest_inline(const Cmd& c, uint32_t off, uint32_t len) const noexcept {
    iovec v[kMaxChunks];
    const uint32_t n = slice_iov(c.iovs, c.nbufs, off, len, v, kMaxChunks);
    const auto pad = rx_.padding();
    return crc32c(crc32c_iov(0, v, n), pad.data(), pad.size()) == rx_.data_digest();
}

// The test hook (DigestFaults): an op made to fail, or its CRC made wrong.
uint32_t Conn::faulted_crc(Status& s, uint32_t crc) noexcept {
    auto take = [](std::atomic<uint32_t>& n) {
        uint32_t v = n.load(std::memory_order_relaxed);
        while (v > 0 && !n.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
        }
        return v > 0;
    };
    DigestFaults& f = group_->digest_faults();
    if (take(f.fail)) s = Status(Errc::io_error, "injected accel failure");
    if (take(f.corrupt)) crc ^= 0x1;
    return crc;
}

void Conn::rx_digest_done(void* ctx, Status s) noexcept {
    Cmd& c = *static_cast<Cmd*>(ctx);
    Conn& conn = *c.conn;
    c.dg_pending = false;
    const uint32_t crc = conn.faulted_crc(s, c.dg_crc);
    if (c.state == CmdState::held) {  // released meanwhile (closed, aborted): only freed now
        ++conn.net_.stats().digests_after_release;
        conn.free_cmd(c);
        return;
    }
    // A failed op is a digest error: the data was not verified, so it is never written.
    if (!s.ok() || crc != c.dg_expect) {
        ++conn.net_.stats().data_digest_errors;
        if (!s.ok())
            STRATA_WARNLOG(log_iscsi, "{}: accel crc32c failed ({}): data digest not verified",
                           conn.peer_ip_, s.name());
        c.digest_error = true;
        conn.reject(RejectReason::data_digest_error, c.dg_bhs);
    }
    if (c.state == CmdState::digest) conn.data_out_complete(c);  // the last Data-Out is in
}

// The Data-In batch of a refill: every digest computed (queued now), or not (the command ends
// with a SCSI Response instead of that data).
void Conn::din_digest_done(void* ctx, Status s) noexcept {
    Cmd& c = *static_cast<Cmd*>(ctx);
    Conn& conn = *c.conn;
    c.dg_pending = false;
    bool ok = s.ok();
    for (uint32_t i = 0; i < c.din_nops; ++i) {
        Status si = c.din_ops[i].status;
        const uint32_t crc = conn.faulted_crc(si, c.din_crc[i]);
        ok = ok && si.ok();
        put_le32(c.ddgst[c.din_k[i]], crc);
    }
    if (c.state == CmdState::held) {
        ++conn.net_.stats().digests_after_release;
        conn.free_cmd(c);
        return;
    }
    if (!ok) {
        // No digest, no data: this batch is not sent; a SCSI Response ends the command
        // (ABORTED COMMAND, the initiator may retry) with what went before as the transfer.
        STRATA_WARNLOG(log_iscsi,
                       "{}: accel crc32c failed: Data-In not sent, command ITT {:#x} "
                       "ends with CHECK CONDITION",
                       conn.peer_ip_, c.itt);
        c.din_off = c.din_len = c.din_off0;
        c.din_sn = c.din_sn0;
        scsi::Task& t = c.task;
        t.status = scsi::status::check_condition;
        fixed_sense(t, 0xB, 0x44, 0x00);  // ABORTED COMMAND / INTERNAL TARGET FAILURE
        t.residual = c.edtl - c.din_off0;
        t.residual_overflow = false;
        c.rsp_pending = true;
        conn.refill(c);  // the SCSI Response: no data, no op
    }
    conn.queue(c);
}

void Conn::execute(Cmd& c) noexcept {
    c.state = CmdState::exec;
    scsi::Task& t = c.task;
    t.lun = scsi::decode_lun(c.lun_field);
    t.dir = c.read ? scsi::DataDir::from_dev : c.write ? scsi::DataDir::to_dev : scsi::DataDir::none;
    t.transfer_length = (c.read || c.write) ? c.edtl : 0;
    t.iovs = c.nbufs ? c.iovs : nullptr;
    t.iovcnt = int(c.nbufs);
    t.initiator_port = session_->initiator_port;
    t.tag = c.itt;
    t.done = &task_done_fn;
    t.done_ctx = &c;
    scsi::submit(*session_->device, t);
}

void Conn::task_done(Cmd& c) noexcept {
    if (state_ == State::closed || c.task.aborted) {
        release(c);  // an aborted task gets no response (the TMF response covers it)
        return;
    }
    respond(c);
}

void Conn::fail_cmd(Cmd& c, uint8_t status, uint8_t key, uint8_t asc, uint8_t ascq) noexcept {
    c.failed = true;
    c.task.status = status;
    c.task.sense_len = 0;
    if (key) fixed_sense(c.task, key, asc, ascq);
    c.task.data_transferred = 0;
    c.task.residual = (c.read || c.write) ? c.edtl : 0;
    c.task.residual_overflow = false;
    if (ListHook<R2tTag>& h = c; h.linked()) r2t_wait_.remove(c);
    if (c.r2t_held) {
        c.r2t_held = false;
        --r2t_out_;
    }
    if (cur_ == &c) cur_ = nullptr;
    respond(c);
}

void Conn::respond(Cmd& c) noexcept {
    c.state = CmdState::tx;
    complete_cmd_sn(c);  // the window opens as the answer goes out
    const scsi::Task& t = c.task;
    c.din_len = c.read ? std::min(t.data_transferred, c.edtl) : 0;
    c.din_off = 0;
    c.din_sn = 0;
    const bool good = t.status == scsi::status::good && t.sense_len == 0;
    c.rsp_pending = !(c.din_len > 0 && good);
    c.phase = 1;
    if (refill(c))
        if (ListHook<TxTag>& h = c; !h.linked()) queue(c);
}

bool Conn::refill(Cmd& c) noexcept {
    c.clear();
    uint32_t nops = 0;
    c.din_off0 = c.din_off;
    c.din_sn0 = c.din_sn;
    const scsi::Task& t = c.task;
    const uint32_t seg_max = std::max<uint32_t>(512, std::min(neg_.initiator_mrdsl, kChunk));
    uint8_t res_flags = 0;
    if (t.residual) res_flags = t.residual_overflow ? rsp_flags::overflow : rsp_flags::underflow;
    for (int k = 0; k < Cmd::kBatch; ++k) {
        if (c.din_off < c.din_len) {
            // A Data-In sequence is at most MaxBurstLength: F ends each one (RFC 7143 §13.13).
            const uint32_t burst = std::max<uint32_t>(512, session_->params.max_burst_length);
            const uint32_t seq_end = std::min(c.din_len, (c.din_off / burst + 1) * burst);
            const uint32_t seg = std::min(seq_end - c.din_off, seg_max);
            const bool last = c.din_off + seg == c.din_len;
            const bool by_accel = dg().data && digest_by_accel(seg);
            // A batch that waits for accel carries no status: its StatSN would be taken now
            // and sent after responses queued meanwhile. The SCSI Response follows it.
            if (last && !c.rsp_pending && (nops > 0 || by_accel)) c.rsp_pending = true;
            const bool status = last && !c.rsp_pending;
            DataIn h{};
            h.opcode = uint8_t(Opcode::data_in);
            h.flags = c.din_off + seg == seq_end ? kFinalBit : 0;
            std::memcpy(h.lun.b, c.lun_field, 8);
            h.itt.set(c.itt);
            h.ttt.set(kReservedTag);
            if (status) {
                h.flags |= data_in_flags::status | res_flags;
                h.status = t.status;
                h.residual_count.set(t.residual);
            }
            set_sn(h.stat_sn, h.exp_cmd_sn, h.max_cmd_sn, status);
            if (!status) h.stat_sn.set(0);
            h.data_sn.set(c.din_sn++);
            h.buffer_offset.set(c.din_off);
            c.add(c.hdr[k], build_header(c.hdr[k], &h, nullptr, 0, seg, dg()));
            iovec v[2];
            const uint32_t n = slice_iov(c.iovs, c.nbufs, c.din_off, seg, v, 2);
            for (uint32_t i = 0; i < n; ++i) c.add(v[i].iov_base, v[i].iov_len);
            c.add(kZeros, pad4(seg));
            if (by_accel) {
                iovec* dv = c.din_iov[k];
                std::copy(v, v + n, dv);
                uint32_t dn = n;
                if (pad4(seg)) dv[dn++] = {const_cast<uint8_t*>(kZeros), pad4(seg)};
                accel::Op& op = c.din_ops[nops];
                op = accel::Op{};
                op.opcode = accel::Opcode::crc32c;
                op.src_iov = dv;
                op.src_iovcnt = dn;
                op.crc_dst = &c.din_crc[nops];
                c.din_k[nops++] = uint8_t(k);
                c.add(c.ddgst[k], 4);
            } else if (dg().data) {
                put_le32(c.ddgst[k], data_digest(v, n, seg));
                c.add(c.ddgst[k], 4);
            }
            c.din_off += seg;
            continue;
        }
        if (c.rsp_pending && nops == 0) {
            ScsiRsp r{};
            r.opcode = uint8_t(Opcode::scsi_rsp);
            r.flags = kFinalBit | res_flags;
            r.response = 0;
            r.status = t.status;
            r.itt.set(c.itt);
            set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true);
            r.exp_data_sn.set(c.read ? c.din_sn : c.r2t_sn);
            r.residual_count.set(t.residual);
            uint32_t dl = 0;
            if (t.sense_len > 0) {
                c.sense_seg[0] = 0;
                c.sense_seg[1] = t.sense_len;
                std::memcpy(c.sense_seg + 2, t.sense, t.sense_len);
                dl = 2u + t.sense_len;
            }
            c.add(c.hdr[k], build_header(c.hdr[k], &r, nullptr, 0, dl, dg()));
            if (dl) {
                c.add(c.sense_seg, dl);
                c.add(kZeros, pad4(dl));
                if (dg().data) {
                    const iovec v{c.sense_seg, dl};
                    put_le32(c.ddgst[k], data_digest(&v, 1, dl));
                    c.add(c.ddgst[k], 4);
                }
            }
            c.rsp_pending = false;
        }
        break;
    }
    if (nops == 0) return true;
    c.din_nops = nops;
    if (group_->accel()->submit_batch(c.din_ops, nops, &Conn::din_digest_done, &c).ok()) {
        c.dg_pending = true;
        net_.stats().data_digests_accel += nops;
        return false;
    }
    for (uint32_t i = 0; i < nops; ++i)  // refused (busy): computed here
        put_le32(c.ddgst[c.din_k[i]], crc32c_iov(0, c.din_ops[i].src_iov, c.din_ops[i].src_iovcnt));
    return true;
}

bool Conn::cmd_sent(Cmd& c) noexcept {
    if (c.phase == 0) return false;  // an R2T: the command waits for its Data-Out
    if (c.din_off < c.din_len || c.rsp_pending) return refill(c);  // false: accel queues it
    release(c);
    return false;
}

// ---- other requests ----------------------------------------------------------------------------

void Conn::nop_out() noexcept {
    const auto h = bhs_as<NopOut>(rx_.header());
    if (!check_cmd_sn(rx_.bhs())) return;
    if (h.itt.get() == kReservedTag) return;  // an answer to our NOP-In, or a bare ping
    NopIn r{};
    r.opcode = uint8_t(Opcode::nop_in);
    r.flags = kFinalBit;
    std::memcpy(r.lun.b, h.lun.b, 8);
    r.itt.set(h.itt.get());
    r.ttt.set(kReservedTag);
    set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true);
    CtrlTx* t = ctrl();
    // The ping data is echoed (and digested anew).
    append_pdu(t->bytes, &r, std::span<const uint8_t>(pdu_data_.data(), rx_.data_length()), dg());
    queue_ctrl(t);
}

void Conn::logout() noexcept {
    const auto h = bhs_as<LogoutReq>(rx_.header());
    if (!check_cmd_sn(rx_.bhs())) return;
    const uint8_t reason = h.reason_code & 0x7f;
    LogoutRsp r{};
    r.opcode = uint8_t(Opcode::logout_rsp);
    r.flags = kFinalBit;
    r.itt.set(h.itt.get());
    bool close_me = false;
    if (reason == 0) {  // close the session
        r.response = 0;
        close_me = true;
    } else if (reason == 1) {  // close the connection CID
        if (h.cid.get() == neg_.cid) {
            r.response = 0;
            close_me = true;
        } else {
            r.response = net_.close_session_conn(session_, h.cid.get()) ? 0 : 1;  // 1: CID not found
        }
    } else {
        r.response = 2;  // connection recovery is not supported (ERL 0)
    }
    r.time2wait.set(uint16_t(session_->params.default_time2wait));
    r.time2retain.set(uint16_t(session_->params.default_time2retain));
    set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true);
    CtrlTx* t = ctrl();
    append_pdu(t->bytes, &r, {}, dg());
    queue_ctrl(t);
    if (close_me) {
        stop_reading();
        if (reason == 0) net_.end_session(session_, this);
    }
}

void Conn::task_mgmt() noexcept {
    const auto h = bhs_as<TaskMgmtReq>(rx_.header());
    // RFC 7143 11.5.1: ABORT TASK of a task the target does not have is "function complete"
    // only when RefCmdSN is still to come (in the window, before this TMF's CmdSN); a task
    // that already ended is "task does not exist".
    const Session& ss = *session_;
    const uint32_t ref_sn = h.ref_cmd_sn.get();
    const bool ref_to_come = sn_lte(ss.exp_cmd_sn, ref_sn) && sn_lte(ref_sn, ss.max_cmd_sn()) &&
                             ref_sn != h.cmd_sn.get() && sn_lte(ref_sn, h.cmd_sn.get());
    check_cmd_sn(rx_.bhs());  // a TMF outside the window is still answered
    const uint8_t fn = h.function & 0x7f;
    const uint32_t ref = h.referenced_task_tag.get();
    auto answer = [&](uint8_t response) {
        TaskMgmtRsp r{};
        r.opcode = uint8_t(Opcode::task_mgmt_rsp);
        r.flags = kFinalBit;
        r.response = response;
        r.itt.set(h.itt.get());
        set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true);
        CtrlTx* t = ctrl();
        append_pdu(t->bytes, &r, {}, dg());
        queue_ctrl(t);
    };
    scsi::TmfFunction f;
    switch (fn) {
    case 1: f = scsi::TmfFunction::abort_task; break;
    case 2: f = scsi::TmfFunction::abort_task_set; break;
    case 5: f = scsi::TmfFunction::lun_reset; break;
    case 6:
    case 7: f = scsi::TmfFunction::target_reset; break;
    default: answer(5); return;  // task management function not supported
    }
    if (!session_->device) {
        answer(5);
        return;
    }
    const uint64_t lun = scsi::decode_lun(h.lun.b);
    // Commands of this connection still receiving data are not in core/scsi yet: they end here.
    for (uint32_t i = 0; i < depth_; ++i) {
        Cmd& c = cmds_[i];
        if (c.state != CmdState::rx_imm && c.state != CmdState::rx_data &&
            c.state != CmdState::wait_r2t && c.state != CmdState::digest)
            continue;
        const bool hit = f == scsi::TmfFunction::abort_task ? c.itt == ref
                         : f == scsi::TmfFunction::target_reset
                             ? true
                             : scsi::decode_lun(c.lun_field) == lun;
        if (!hit || &c == cur_) continue;
        release(c);
        if (f == scsi::TmfFunction::abort_task) {
            answer(0);
            return;
        }
    }
    Mgmt* m = nullptr;
    for (Mgmt& x : mgmt_)
        if (!x.busy) {
            m = &x;
            break;
        }
    if (!m) {
        answer(255);  // function rejected: too many at once
        return;
    }
    m->busy = true;
    m->itt = h.itt.get();
    m->ref_to_come = ref_to_come;
    m->m = scsi::MgmtTask{};
    m->m.function = f;
    m->m.lun = lun;
    m->m.victim_tag = ref;
    m->m.initiator_port = session_->initiator_port;
    m->m.done = &mgmt_done_fn;
    m->m.done_ctx = m;
    scsi::manage(*session_->device, m->m);
}

void Conn::mgmt_done(Mgmt& m) noexcept {
    m.busy = false;
    if (state_ != State::ffp) return;
    uint8_t response = 0;
    switch (m.m.response) {
    case scsi::TmfResponse::complete: response = 0; break;
    case scsi::TmfResponse::task_does_not_exist: response = m.ref_to_come ? 0 : 1; break;
    case scsi::TmfResponse::lun_does_not_exist: response = 2; break;
    case scsi::TmfResponse::function_rejected: response = 255; break;
    }
    TaskMgmtRsp r{};
    r.opcode = uint8_t(Opcode::task_mgmt_rsp);
    r.flags = kFinalBit;
    r.response = response;
    r.itt.set(m.itt);
    set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true);
    CtrlTx* t = ctrl();
    append_pdu(t->bytes, &r, {}, dg());
    queue_ctrl(t);
}

void Conn::text() noexcept {
    if (!check_cmd_sn(rx_.bhs())) return;
    CtrlTx* t = ctrl();
    sn();
    const bool ok = text_neg_->on_pdu(
        rx_.header(), std::span<const uint8_t>(pdu_data_.data(), rx_.data_length()), t->bytes, dg());
    queue_ctrl(t);
    if (!ok) {
        ++net_.stats().protocol_errors;
        stop_reading();
    }
}

// ---- send and timers ---------------------------------------------------------------------------

bool Conn::flush() noexcept {
    bool moved = false;
    while (!txq_.empty() && state_ != State::closed) {
        iovec iov[kFlushIovs];
        int cnt = 0;
        size_t offered = 0;
        for (auto it = txq_.begin(); it != txq_.end(); ++it) {
            Tx& t = *it;
            if (cnt + t.cnt > kFlushIovs) break;
            size_t skip = t.sent;
            for (int i = 0; i < t.cnt; ++i) {
                const size_t len = t.iov[i].iov_len;
                if (skip >= len) {
                    skip -= len;
                    continue;
                }
                iov[cnt++] = {static_cast<uint8_t*>(t.iov[i].iov_base) + skip, len - skip};
                offered += len - skip;
                skip = 0;
            }
        }
        if (cnt == 0) break;
        auto r = sock_->writev(iov, cnt);
        if (!r) {
            if (r.error().code() == Errc::busy) return moved;
            close("send failed");
            return true;
        }
        moved = true;
        size_t n = *r;
        while (n > 0 && !txq_.empty()) {
            Tx& t = txq_.front();
            const size_t take = std::min(n, t.total - t.sent);
            t.sent += take;
            n -= take;
            if (t.sent == t.total) {
                txq_.pop_front();
                if (t.sent_fn && t.sent_fn(*this, t)) queue(t);
            }
        }
        if (*r < offered) return moved;
    }
    if (txq_.empty() && close_after_flush_ && state_ != State::closed) {
        close(state_ == State::logout ? "logged out or ended" : "closing");
        moved = true;
    }
    return moved;
}

bool Conn::check_timers(uint64_t now) noexcept {
    if (state_ == State::logout && now - drain_ns_ > kDrainTimeoutNs) {
        close("the initiator does not read");
        return true;
    }
    if (state_ == State::login && now - accepted_ns_ > kLoginTimeoutNs) {
        close("login not completed in time");
        return true;
    }
    if (state_ != State::ffp || opts_.nop_in_interval == 0) return false;
    if (ping_out_) {
        if (now - ping_ns_ > uint64_t{opts_.nop_timeout} * 1'000'000'000) {
            ++net_.stats().nop_timeouts;
            STRATA_WARNLOG(log_iscsi, "{}: no answer to NOP-In in {} s: closing", peer_ip_,
                           opts_.nop_timeout);
            close("NOP-In timeout");
            return true;
        }
        return false;
    }
    if (now - last_rx_ns_ < uint64_t{opts_.nop_in_interval} * 1'000'000'000) return false;
    NopIn r{};
    r.opcode = uint8_t(Opcode::nop_in);
    r.flags = kFinalBit;
    r.itt.set(kReservedTag);
    if (ping_ttt_ == kReservedTag) ping_ttt_ = 1;
    r.ttt.set(ping_ttt_++);
    set_sn(r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, false);
    CtrlTx* t = ctrl();
    append_pdu(t->bytes, &r, {}, dg());
    queue_ctrl(t);
    ping_out_ = true;
    ping_ns_ = now;
    return true;
}

}  // namespace strata::iscsi::internal
