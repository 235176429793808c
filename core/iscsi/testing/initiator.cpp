// The test initiator (see strata/iscsi/testing/initiator.h). One connection, one session; the
// PDU receiver and builders of the protocol core (internal/pdu.h) in the initiator's direction.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/base/random.h>
#include <strata/iscsi/internal/chap.h>
#include <strata/iscsi/testing/initiator.h>
#include <strata/runtime/thread.h>

namespace strata::iscsi::testing {

STRATA_LOG_COMPONENT(iscsi_ini);

namespace {

constexpr uint32_t kRecvBuf = 64 * 1024;
constexpr uint32_t kLoginItt = 0x4c000000;   // Login Requests
constexpr uint32_t kLogoutItt = 0x4f000000;  // the Logout Request
constexpr uint32_t kTextItt = 0x54000000;    // Text Requests (SendTargets)
constexpr uint32_t kMaxLoginRounds = 32;

// Serial number arithmetic (RFC 1982, 32 bits).
bool sn_lt(uint32_t a, uint32_t b) noexcept {
    return int32_t(a - b) < 0;
}
bool sn_le(uint32_t a, uint32_t b) noexcept {
    return int32_t(a - b) <= 0;
}

uint32_t be32(const uint8_t* p) noexcept {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

std::string key_text(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string s;
    for (auto& [k, v] : kv) append_key(s, k, v);
    return s;
}

}  // namespace

uint8_t ScsiResult::sense_key() const noexcept {
    if (sense.size() < 3) return 0;
    const uint8_t code = sense[0] & 0x7f;
    if (code == 0x72 || code == 0x73) return sense[1] & 0x0f;
    return sense[2] & 0x0f;
}
uint8_t ScsiResult::asc() const noexcept {
    if (sense.empty()) return 0;
    const uint8_t code = sense[0] & 0x7f;
    if (code == 0x72 || code == 0x73) return sense.size() > 2 ? sense[2] : 0;
    return sense.size() > 12 ? sense[12] : 0;
}
uint8_t ScsiResult::ascq() const noexcept {
    if (sense.empty()) return 0;
    const uint8_t code = sense[0] & 0x7f;
    if (code == 0x72 || code == 0x73) return sense.size() > 3 ? sense[3] : 0;
    return sense.size() > 13 ? sense[13] : 0;
}

std::array<uint8_t, 16> cdb_read10(uint32_t lba, uint16_t blocks) {
    std::array<uint8_t, 16> c{};
    c[0] = 0x28;
    Be32 l;
    l.set(lba);
    std::memcpy(&c[2], l.b, 4);
    c[7] = uint8_t(blocks >> 8), c[8] = uint8_t(blocks);
    return c;
}
std::array<uint8_t, 16> cdb_read16(uint64_t lba, uint32_t blocks) {
    std::array<uint8_t, 16> c{};
    c[0] = 0x88;
    Be64 l;
    l.set(lba);
    std::memcpy(&c[2], l.b, 8);
    Be32 n;
    n.set(blocks);
    std::memcpy(&c[10], n.b, 4);
    return c;
}
std::array<uint8_t, 16> cdb_write10(uint32_t lba, uint16_t blocks, bool fua) {
    auto c = cdb_read10(lba, blocks);
    c[0] = 0x2a;
    if (fua) c[1] |= 0x08;
    return c;
}
std::array<uint8_t, 16> cdb_write16(uint64_t lba, uint32_t blocks, bool fua) {
    auto c = cdb_read16(lba, blocks);
    c[0] = 0x8a;
    if (fua) c[1] |= 0x08;
    return c;
}

uint64_t encode_lun(uint32_t lun) noexcept {
    if (lun < 256) return uint64_t(lun) << 48;
    return (uint64_t(0x40 | ((lun >> 8) & 0x3f)) << 56) | (uint64_t(lun & 0xff) << 48);
}

// ---- tasks ------------------------------------------------------------------------------------

struct Initiator::Task {
    enum class Kind : uint8_t { scsi, tmf, nop };
    uint32_t slot = 0;
    uint32_t itt = kReservedTag;
    bool busy = false;
    bool sent = false;
    Kind kind = Kind::scsi;
    ScsiCommand cmd;
    ScsiDone done;
    TmfDone tmf_done;
    std::function<void(Status)> nop_done;
    std::vector<uint8_t> nop_data;
    uint8_t tmf_function = 0;
    uint64_t tmf_lun = 0;
    uint32_t ref_itt = kReservedTag;
    uint32_t cmd_sn = 0;
    uint32_t data_in = 0;
};

// The login's progress (one connection's; dropped in full feature phase).
struct Initiator::LoginState {
    enum class Step : uint8_t { first, chap_a, chap_r, chap_done, operational };
    Step step = Step::first;
    uint8_t csg = 0;  // the stage we are in
    bool op_keys_sent = false;
    uint32_t rounds = 0;
    std::string in_text;  // response text gathered across C-bit PDUs
    std::vector<std::pair<std::string, std::string>> pending;  // answers to target offers
    std::vector<std::string> sent_keys;                        // operational keys we offered
    uint8_t mutual_id = 0;
    std::vector<uint8_t> mutual_challenge;
    bool awaiting_continue = false;  // we sent an empty request to get the rest (C bit)
};

Initiator::Initiator(InitiatorOptions options) : opt_(std::move(options)) {
    thread_ = runtime::current_thread();
    STRATA_ASSERT_MSG(thread_ != nullptr, "an iSCSI Initiator is made on a Thread");
    if (opt_.queue_depth == 0) opt_.queue_depth = 1;
    if (opt_.isid == std::array<uint8_t, 6>{}) {
        Prng p(opt_.seed ^ 0x15c5115c5115c51ull);
        const uint64_t v = p.next();
        opt_.isid = {0x80,
                     uint8_t(v),
                     uint8_t(v >> 8),
                     uint8_t(v >> 16),
                     uint8_t(v >> 24),
                     uint8_t(v >> 32)};
    }
    // Task slots: the queue depth, plus room for task management and pings.
    const uint32_t slots = opt_.queue_depth + 8;
    for (uint32_t i = 0; i < slots; ++i) {
        auto t = std::make_unique<Task>();
        t->slot = i;
        tasks_.push_back(std::move(t));
        free_.push_back(slots - 1 - i);
    }
    rbuf_.resize(kRecvBuf);
    group_ = sock::SocketGroup::create();
    poller_ = thread_->register_poller(&Initiator::poll_fn, this, "iscsi_initiator");
    if (opt_.nop_interval_ms != 0)
        nop_poller_ = thread_->register_poller(&Initiator::nop_fn, this, "iscsi_initiator_nop",
                                               uint64_t{opt_.nop_interval_ms} * 1'000'000);
}

Initiator::~Initiator() {
    if (sock_) {
        group_->remove(*sock_);
        sock_->abort();
        sock_.reset();
    }
    group_.reset();
    if (poller_) thread_->unregister_poller(poller_);
    if (nop_poller_) thread_->unregister_poller(nop_poller_);
}

const char* Initiator::state_name() const noexcept {
    switch (state_) {
        case State::idle:
            return "idle";
        case State::connecting:
            return "connecting";
        case State::login:
            return "login";
        case State::full_feature:
            return "full_feature";
        case State::logging_out:
            return "logging_out";
        case State::closed:
            return "closed";
        case State::failed:
            return "failed";
    }
    return "?";
}

Initiator::Task* Initiator::alloc_task() {
    if (free_.empty()) return nullptr;
    Task& t = *tasks_[free_.back()];
    free_.pop_back();
    t.busy = true;
    t.sent = false;
    t.data_in = 0;
    next_itt_gen_ = (next_itt_gen_ + 1) & 0x7fff;
    if (next_itt_gen_ == 0) next_itt_gen_ = 1;
    t.itt = next_itt_gen_ << 16 | t.slot;
    ++outstanding_;
    return &t;
}

void Initiator::free_task(Task& t) {
    t.busy = false;
    t.itt = kReservedTag;
    t.done = nullptr;
    t.tmf_done = nullptr;
    t.nop_done = nullptr;
    t.nop_data.clear();
    free_.push_back(t.slot);
    --outstanding_;
}

Initiator::Task* Initiator::task_by_itt(uint32_t itt) {
    const uint32_t slot = itt & 0xffff;
    if (itt == kReservedTag || slot >= tasks_.size()) return nullptr;
    Task& t = *tasks_[slot];
    return t.busy && t.itt == itt ? &t : nullptr;
}

// ---- sending ----------------------------------------------------------------------------------

void Initiator::queue_pdu(const void* bhs, const uint8_t* data, uint32_t len, bool digests) {
    std::vector<uint8_t> pdu;
    pdu.reserve(kBhsSize + 8 + len + 4);
    PduDigests dg{digests && tx_digests_header_, digests && tx_digests_data_};
    append_pdu(pdu, bhs, std::span<const uint8_t>(data, len), dg);
    if (tx_hook_) tx_hook_(pdu);
    out_.insert(out_.end(), pdu.begin(), pdu.end());
    ++stats_.pdus_sent;
}

void Initiator::send_raw(std::vector<uint8_t> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    (void)flush();
}

bool Initiator::flush() {
    if (!sock_ || out_off_ >= out_.size()) return false;
    bool moved = false;
    while (out_off_ < out_.size()) {
        auto w = sock_->write(out_.data() + out_off_, out_.size() - out_off_);
        if (!w.ok()) {
            if (w.code() == Errc::busy) break;
            lost("send failed: " + w.error().message());
            return true;
        }
        moved = true;
        out_off_ += *w;
        stats_.bytes_sent += *w;
    }
    if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
    } else if (out_off_ > (1u << 20)) {
        out_.erase(out_.begin(), out_.begin() + ptrdiff_t(out_off_));
        out_off_ = 0;
    }
    return moved;
}

// ---- polling and receiving ---------------------------------------------------------------------

runtime::PollStatus Initiator::poll_fn(void* ctx) {
    return static_cast<Initiator*>(ctx)->poll() ? runtime::PollStatus::busy
                                                : runtime::PollStatus::idle;
}

bool Initiator::poll() {
    if (!sock_) return false;
    bool busy = group_->poll() > 0;
    if (sock_ && state_ == State::connecting && sock_->connected()) {
        state_ = State::login;
        send_login();
        busy = true;
    }
    if (flush()) busy = true;
    return busy;
}

void Initiator::sock_event(void* ctx, sock::Socket&) {
    auto* self = static_cast<Initiator*>(ctx);
    if (self->state_ == State::connecting && self->sock_->connected()) {
        self->state_ = State::login;
        self->send_login();
    }
    (void)self->receive();
}

bool Initiator::receive() {
    bool moved = false;
    while (sock_) {
        auto r = sock_->read(rbuf_.data(), rbuf_.size());
        if (!r.ok()) {
            if (r.code() == Errc::busy) break;
            if (r.code() == Errc::shutdown) {
                lost("the target closed the connection");
            } else {
                lost((state_ == State::connecting ? "connect failed: " : "connection lost: ") +
                     r.error().message());
            }
            return true;
        }
        moved = true;
        activity_ = true;
        const size_t n = *r;
        stats_.bytes_received += n;
        if (rx_hook_) rx_hook_(rbuf_.data(), n);
        size_t used = 0;
        while (sock_ && (used < n)) {
            RecvEvent ev;
            used += rx_.feed(rbuf_.data() + used, n - used, &ev);
            if (ev == RecvEvent::error) {
                lost(std::string("bad PDU from the target: ") + recv_error_name(rx_.error()));
                return true;
            }
            if (ev == RecvEvent::header) {
                on_header();
            } else if (ev == RecvEvent::pdu) {
                ++stats_.pdus_received;
                on_pdu();
            }
        }
    }
    return moved;
}

void Initiator::on_header() {
    const Bhs& b = rx_.bhs();
    const uint32_t len = rx_.data_length();
    if (b.op() == Opcode::data_in) {
        const auto d = bhs_as<DataIn>(rx_.header());
        Task* t = task_by_itt(d.itt.get());
        const uint32_t off = d.buffer_offset.get();
        if (t == nullptr || t->kind != Task::Kind::scsi || t->cmd.dir != DataDir::read ||
            off > t->cmd.length || len > t->cmd.length - off) {
            lost(fmt::format("Data-In for ITT {:#x} at offset {} (+{}) fits no read", d.itt.get(),
                             off, len));
            return;
        }
        rx_iov_ = {t->cmd.buf + off, len};  // the receiver keeps a pointer to it
        rx_.set_data_destination(&rx_iov_, 1);
        return;
    }
    scratch_.resize(len);
    rx_iov_ = {scratch_.data(), len};
    rx_.set_data_destination(&rx_iov_, 1);
}

void Initiator::update_sn(uint32_t exp_cmd_sn, uint32_t max_cmd_sn) {
    // RFC 7143 §4.2.2.1: ignored when MaxCmdSN < ExpCmdSN - 1; only newer values move.
    if (sn_lt(max_cmd_sn, exp_cmd_sn - 1)) return;
    if (sn_lt(exp_cmd_sn_, exp_cmd_sn) || exp_cmd_sn_ == exp_cmd_sn) exp_cmd_sn_ = exp_cmd_sn;
    if (sn_lt(max_cmd_sn_, max_cmd_sn)) max_cmd_sn_ = max_cmd_sn;
}

void Initiator::take_stat_sn(uint32_t stat_sn) {
    if (sn_le(exp_stat_sn_, stat_sn)) exp_stat_sn_ = stat_sn + 1;
}

void Initiator::on_pdu() {
    const uint8_t* h = rx_.header();
    const Bhs& b = rx_.bhs();
    const uint32_t len = rx_.data_length();
    if (!rx_.data_digest_ok()) {
        // Never hand corrupt data on: the connection goes, its commands fail (ERL 0).
        lost(fmt::format("data digest error on a {}", opcode_name(b.opcode)));
        return;
    }
    switch (b.op()) {
        case Opcode::login_rsp:
            on_login_rsp();
            return;
        case Opcode::text_rsp:
            on_text_rsp();
            return;
        case Opcode::scsi_rsp: {
            const auto r = bhs_as<ScsiRsp>(h);
            take_stat_sn(r.stat_sn.get());
            update_sn(r.exp_cmd_sn.get(), r.max_cmd_sn.get());
            Task* t = task_by_itt(r.itt.get());
            if (t == nullptr || t->kind != Task::Kind::scsi) {
                lost(fmt::format("SCSI Response for unknown ITT {:#x}", r.itt.get()));
                return;
            }
            ScsiResult res;
            res.response = r.response;
            res.status = r.status;
            res.flags = r.flags & (rsp_flags::overflow | rsp_flags::underflow);
            res.residual = r.residual_count.get();
            res.data_in = t->data_in;
            if (len >= 2) {
                const uint32_t sl = uint32_t(scratch_[0]) << 8 | scratch_[1];
                res.sense.assign(scratch_.begin() + 2,
                                 scratch_.begin() + 2 + std::min(sl, len - 2));
            }
            complete(*t, res);
            break;
        }
        case Opcode::data_in: {
            const auto d = bhs_as<DataIn>(h);
            ++stats_.data_in_pdus;
            update_sn(d.exp_cmd_sn.get(), d.max_cmd_sn.get());
            Task* t = task_by_itt(d.itt.get());
            if (t == nullptr) {  // cannot happen: on_header checked it
                lost("Data-In for a task that went");
                return;
            }
            t->data_in += len;
            if (d.flags & data_in_flags::status) {
                take_stat_sn(d.stat_sn.get());
                ScsiResult res;
                res.status = d.status;
                res.flags = d.flags & (data_in_flags::overflow | data_in_flags::underflow);
                res.residual = d.residual_count.get();
                res.data_in = t->data_in;
                complete(*t, res);
            }
            break;
        }
        case Opcode::r2t: {
            const auto r = bhs_as<R2t>(h);
            ++stats_.r2ts;
            update_sn(r.exp_cmd_sn.get(), r.max_cmd_sn.get());
            Task* t = task_by_itt(r.itt.get());
            const uint32_t off = r.buffer_offset.get(), want = r.desired_data_transfer_length.get();
            if (t == nullptr || t->kind != Task::Kind::scsi || t->cmd.dir != DataDir::write ||
                off > t->cmd.length || want > t->cmd.length - off || want == 0 ||
                r.ttt.get() == kReservedTag) {
                lost(fmt::format("R2T for ITT {:#x} offset {} length {} fits no write", r.itt.get(),
                                 off, want));
                return;
            }
            send_data_out(*t, r.ttt.get(), off, want, false);
            break;
        }
        case Opcode::nop_in: {
            const auto n = bhs_as<NopIn>(h);
            update_sn(n.exp_cmd_sn.get(), n.max_cmd_sn.get());
            if (n.itt.get() != kReservedTag) {
                take_stat_sn(n.stat_sn.get());
                if (n.itt.get() == nop_itt_) {  // the keep-alive's answer
                    nop_itt_ = kReservedTag;
                    nop_sent_ticks_ = 0;
                    Task* t = task_by_itt(n.itt.get());
                    if (t) free_task(*t);
                    break;
                }
                Task* t = task_by_itt(n.itt.get());
                if (t == nullptr || t->kind != Task::Kind::nop) {
                    lost(fmt::format("NOP-In for unknown ITT {:#x}", n.itt.get()));
                    return;
                }
                const bool same =
                    len == t->nop_data.size() &&
                    std::equal(scratch_.begin(), scratch_.begin() + len, t->nop_data.begin());
                auto cb = std::move(t->nop_done);
                free_task(*t);
                if (cb) cb(same ? Status{} : Status(Errc::corrupt, "NOP-In echoed other data"));
                break;
            }
            if (n.ttt.get() != kReservedTag) {  // the target pings: answer with its TTT
                NopOut o{};
                o.opcode = uint8_t(Opcode::nop_out) | kImmediateBit;
                o.flags = kFinalBit;
                o.lun = n.lun;
                o.itt.set(kReservedTag);
                o.ttt = n.ttt;
                o.cmd_sn.set(cmd_sn_);
                o.exp_stat_sn.set(exp_stat_sn_);
                queue_pdu(&o, scratch_.data(), len);
                ++stats_.nop_in_answered;
            }
            break;
        }
        case Opcode::task_mgmt_rsp: {
            const auto r = bhs_as<TaskMgmtRsp>(h);
            take_stat_sn(r.stat_sn.get());
            update_sn(r.exp_cmd_sn.get(), r.max_cmd_sn.get());
            Task* t = task_by_itt(r.itt.get());
            if (t == nullptr || t->kind != Task::Kind::tmf) {
                lost(fmt::format("Task Management Response for unknown ITT {:#x}", r.itt.get()));
                return;
            }
            // Function complete: the tasks it ended get no SCSI Response (RFC 7143 §11.6.1);
            // they complete here, aborted.
            if (r.response == 0) {
                const uint8_t f = t->tmf_function;
                const uint64_t lun = t->tmf_lun;
                const uint32_t ref = t->ref_itt;
                for (auto& tp : tasks_) {
                    Task& x = *tp;
                    if (!x.busy || x.kind != Task::Kind::scsi || !x.sent) continue;
                    const bool hit =
                        f == tmf::abort_task ? x.itt == ref
                        : f == tmf::lun_reset || f == tmf::abort_task_set ||
                                f == tmf::clear_task_set
                            ? x.cmd.lun == lun
                            : f == tmf::target_warm_reset || f == tmf::target_cold_reset;
                    if (!hit) continue;
                    ScsiResult res;
                    res.transport = Status(Errc::aborted, "aborted by task management");
                    res.data_in = x.data_in;
                    ++stats_.failed;
                    complete(x, res);
                }
            }
            auto cb = std::move(t->tmf_done);
            free_task(*t);
            if (cb) cb(Status{}, r.response);
            break;
        }
        case Opcode::logout_rsp: {
            const auto r = bhs_as<LogoutRsp>(h);
            take_stat_sn(r.stat_sn.get());
            auto cb = std::move(logout_done_);
            logout_done_ = nullptr;
            const uint8_t resp = r.response;
            finish_closed(resp == 0 ? "logged out" : fmt::format("logout response {}", resp), false,
                          false);
            if (cb) cb(resp == 0 ? Status{} : Status(Errc::io_error, "logout refused"));
            return;
        }
        case Opcode::async_msg: {
            const auto a = bhs_as<AsyncMsg>(h);
            ++stats_.async_messages;
            update_sn(a.exp_cmd_sn.get(), a.max_cmd_sn.get());
            STRATA_INFOLOG(log_iscsi_ini, "async message event {} from the target", a.async_event);
            break;
        }
        case Opcode::reject: {
            const auto r = bhs_as<Reject>(h);
            ++stats_.rejects;
            take_stat_sn(r.stat_sn.get());
            update_sn(r.exp_cmd_sn.get(), r.max_cmd_sn.get());
            const uint32_t itt = len >= kBhsSize ? be32(scratch_.data() + 16) : kReservedTag;
            STRATA_WARNLOG(log_iscsi_ini, "the target rejected a PDU (reason {:#x}, ITT {:#x})",
                           r.reason, itt);
            // A rejected command or data PDU of a live task: at ERL 0 its outcome is unknown, so
            // the connection goes (its tasks fail) rather than leave it hanging.
            if (task_by_itt(itt) != nullptr) {
                lost(fmt::format("the target rejected a PDU of task {:#x} (reason {:#x})", itt,
                                 r.reason));
                return;
            }
            break;
        }
        default:
            lost(fmt::format("unexpected {} from the target", opcode_name(b.opcode)));
            return;
    }
    send_waiting();
}

// ---- connection loss
// ------------------------------------------------------------------------------

void Initiator::lost(const std::string& why) {
    if (!sock_) return;
    STRATA_WARNLOG(log_iscsi_ini, "{}: {}",
                   opt_.target_name.empty() ? "discovery" : opt_.target_name, why);
    finish_closed(why, true, true);
}

void Initiator::drop(bool abort) {
    if (!sock_) return;
    finish_closed("dropped by the test", true, abort);
}

void Initiator::finish_closed(const std::string& why, bool failed, bool abort) {
    if (sock_) {
        group_->remove(*sock_);
        if (abort)
            sock_->abort();
        else
            sock_->close();
        sock_.reset();
    }
    const State was = state_;
    state_ = failed ? State::failed : State::closed;
    error_ = why;
    out_.clear();
    out_off_ = 0;
    rx_ = PduReceiver();
    nop_itt_ = kReservedTag;
    fail_all(why);
    if (auto cb = std::move(login_done_)) {
        login_done_ = nullptr;
        cb(Status(Errc::io_error, was == State::connecting ? "connect failed (see error())"
                                                           : "login failed (see error())"));
    }
    if (auto cb = std::move(text_done_)) {
        text_done_ = nullptr;
        cb(Status(Errc::io_error, "connection lost"), {});
    }
    if (auto cb = std::move(logout_done_)) {
        logout_done_ = nullptr;
        cb(Status(Errc::io_error, "connection lost"));
    }
}

void Initiator::fail_all(const std::string& why) {
    waiting_.clear();
    for (auto& tp : tasks_) {
        Task& t = *tp;
        if (!t.busy) continue;
        const Status lost_status(Errc::io_error, "connection lost");
        if (t.kind == Task::Kind::scsi) {
            ScsiResult r;
            r.transport = lost_status;
            r.data_in = t.data_in;
            ++stats_.failed;
            complete(t, r);
        } else if (t.kind == Task::Kind::tmf) {
            auto cb = std::move(t.tmf_done);
            free_task(t);
            if (cb) cb(lost_status, 0xff);
        } else {
            auto cb = std::move(t.nop_done);
            free_task(t);
            if (cb) cb(lost_status);
        }
    }
    (void)why;
}

void Initiator::complete(Task& t, ScsiResult& r) {
    r.itt = t.itt;
    auto cb = std::move(t.done);
    if (r.transport.ok()) ++stats_.completed;
    free_task(t);
    if (cb) cb(r);
}

// ---- login
// ------------------------------------------------------------------------------------------

void Initiator::login(std::function<void(Status)> done) {
    if (state_ != State::idle) {
        done(Status(Errc::busy, "an Initiator logs in once; make another"));
        return;
    }
    sock::SocketOptions so;
    so.impl = opt_.sock_impl;
    auto s = sock::connect(opt_.portal, so);
    if (!s.ok()) {
        state_ = State::failed;
        error_ = "connect: " + s.error().message();
        done(Status(s.code(), "connect failed"));
        return;
    }
    sock_ = std::move(*s);
    if (Status st = group_->add(*sock_, &Initiator::sock_event, this); !st.ok()) {
        sock_.reset();
        state_ = State::failed;
        error_ = "socket group: " + st.to_string();
        done(st);
        return;
    }
    login_done_ = std::move(done);
    login_ = std::make_unique<LoginState>();
    session_ = {};
    session_.discovery = opt_.target_name.empty();
    rx_ = PduReceiver(RecvConfig{.header_digest = false,
                                 .data_digest = false,
                                 .max_recv_data_segment_length = 8192,
                                 .from_target = true});
    state_ = State::connecting;
    if (sock_->connected()) {
        state_ = State::login;
        send_login();
    }
}

void Initiator::send_login() {
    LoginState& L = *login_;
    if (++L.rounds > kMaxLoginRounds) {
        lost("login did not finish within 32 round trips");
        return;
    }
    std::vector<std::pair<std::string, std::string>> kv;
    bool transit = false;
    uint8_t nsg = 0;
    const bool chap = !opt_.chap_user.empty();
    if (L.awaiting_continue) {
        // Empty request to fetch the rest of a C-bit response: same stage, no transit.
        nsg = 0;
    } else if (L.csg == 0) {
        switch (L.step) {
            case LoginState::Step::first:
                kv.emplace_back("InitiatorName", opt_.initiator_name);
                if (!opt_.initiator_alias.empty())
                    kv.emplace_back("InitiatorAlias", opt_.initiator_alias);
                kv.emplace_back("SessionType", session_.discovery ? "Discovery" : "Normal");
                if (!session_.discovery) kv.emplace_back("TargetName", opt_.target_name);
                kv.emplace_back("AuthMethod", chap ? "CHAP" : "None");
                transit = !chap;
                break;
            case LoginState::Step::chap_a:
                kv.emplace_back("CHAP_A", "5");
                break;
            case LoginState::Step::chap_r:
                break;  // filled in on_login_rsp (needs the challenge)
            case LoginState::Step::chap_done:
                transit = true;
                break;
            case LoginState::Step::operational:
                break;
        }
        for (auto& p : L.pending) kv.push_back(p);
        L.pending.clear();
        if (L.step == LoginState::Step::chap_done || L.step == LoginState::Step::first) nsg = 1;
        if (transit) nsg = 1;
    } else {  // operational
        if (!L.op_keys_sent) {
            L.op_keys_sent = true;
            auto add = [&](const char* k, std::string v) {
                kv.emplace_back(k, std::move(v));
                L.sent_keys.emplace_back(k);
            };
            add("HeaderDigest", opt_.header_digest ? "CRC32C" : "None");
            add("DataDigest", opt_.data_digest ? "CRC32C" : "None");
            add("MaxRecvDataSegmentLength", std::to_string(opt_.max_recv_data_segment_length));
            if (!session_.discovery) {
                add("ErrorRecoveryLevel", "0");
                add("InitialR2T", opt_.initial_r2t ? "Yes" : "No");
                add("ImmediateData", opt_.immediate_data ? "Yes" : "No");
                add("MaxBurstLength", std::to_string(opt_.max_burst_length));
                add("FirstBurstLength", std::to_string(opt_.first_burst_length));
                add("MaxConnections", "1");
                add("MaxOutstandingR2T", "1");
                add("DataPDUInOrder", "Yes");
                add("DataSequenceInOrder", "Yes");
                add("DefaultTime2Wait", "2");
                add("DefaultTime2Retain", "20");
            }
        }
        for (auto& p : L.pending) kv.push_back(p);
        L.pending.clear();
        transit = true;
        nsg = 3;
    }
    LoginReq r{};
    r.opcode = uint8_t(Opcode::login_req) | kImmediateBit;
    r.flags = uint8_t((transit ? login_flags::transit : 0) | (L.csg << 2) | (transit ? nsg : 0));
    r.version_max = 0;
    r.version_min = 0;
    std::memcpy(r.isid, opt_.isid.data(), 6);
    r.tsih.set(0);
    r.itt.set(kLoginItt);
    r.cid.set(opt_.cid);
    r.cmd_sn.set(cmd_sn_);
    r.exp_stat_sn.set(exp_stat_sn_);
    const std::string text = key_text(kv);
    queue_pdu(&r, reinterpret_cast<const uint8_t*>(text.data()), uint32_t(text.size()), false);
    (void)flush();
}

void Initiator::on_login_rsp() {
    if (state_ != State::login || !login_) {
        lost("Login Response outside login");
        return;
    }
    LoginState& L = *login_;
    const auto r = bhs_as<LoginRsp>(rx_.header());
    session_.status_class = r.status_class;
    session_.status_detail = r.status_detail;
    exp_stat_sn_ = r.stat_sn.get() + 1;  // the target picks its first StatSN
    exp_cmd_sn_ = r.exp_cmd_sn.get();
    max_cmd_sn_ = r.max_cmd_sn.get();
    if (r.status_class != 0) {
        const uint8_t c = r.status_class, d = r.status_detail;
        auto cb = std::move(login_done_);
        login_done_ = nullptr;
        finish_closed(fmt::format("login rejected: status {:02x}/{:02x}", c, d), true, false);
        if (cb) {
            Errc e = Errc::io_error;
            if (c == 2 && (d == 1 || d == 2)) e = Errc::permission_denied;
            if (c == 2 && (d == 3 || d == 4)) e = Errc::not_found;
            cb(Status(e, "login rejected (status in session())"));
        }
        return;
    }
    L.in_text.append(reinterpret_cast<const char*>(scratch_.data()), scratch_.size());
    if (r.flags & login_flags::cont) {  // more text follows: ask for it
        L.awaiting_continue = true;
        send_login();
        return;
    }
    L.awaiting_continue = false;
    std::vector<KeyValue> kvs;
    const std::string text = std::move(L.in_text);
    L.in_text.clear();
    if (TextError e = parse_text(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
            kvs);
        e != TextError::none) {
        lost(std::string("login response text: ") + text_error_name(e));
        return;
    }
    std::string chap_a, chap_i, chap_c, chap_n, chap_r;
    for (const KeyValue& kv : kvs) {
        const std::string k(kv.key), v(kv.value);
        session_.keys.emplace_back(k, v);
        if (k == "CHAP_A")
            chap_a = v;
        else if (k == "CHAP_I")
            chap_i = v;
        else if (k == "CHAP_C")
            chap_c = v;
        else if (k == "CHAP_N")
            chap_n = v;
        else if (k == "CHAP_R")
            chap_r = v;
        else if (k == "AuthMethod") {
            if (v != (opt_.chap_user.empty() ? "None" : "CHAP")) {
                lost("AuthMethod answered " + v);
                return;
            }
        } else if (k == "TargetAlias")
            session_.target_alias = v;
        else if (k == "TargetPortalGroupTag")
            session_.target_portal_group_tag = uint16_t(std::atoi(v.c_str()));
        else if (k == "MaxRecvDataSegmentLength") {
            auto n = decode_number(v);
            if (!n || *n < 512 || *n > kMaxDataSegmentLength) {
                lost("bad MaxRecvDataSegmentLength " + v);
                return;
            }
            session_.max_send_data_segment_length = uint32_t(*n);
        } else if (k == "HeaderDigest")
            session_.header_digest = v == "CRC32C";
        else if (k == "DataDigest")
            session_.data_digest = v == "CRC32C";
        else if (k == "TargetAddress" || k == "TargetName") {
        } else if (const KeyDef* d = find_key(k)) {
            const bool ours =
                std::find(L.sent_keys.begin(), L.sent_keys.end(), k) != L.sent_keys.end();
            uint32_t num = 0;
            bool yes = false;
            const bool is_bool = d->kind == KeyKind::boolean_and || d->kind == KeyKind::boolean_or;
            const bool is_num = d->kind == KeyKind::number_min || d->kind == KeyKind::number_max;
            bool valid = false;
            if (is_bool) valid = parse_bool(v, &yes);
            if (is_num) {
                auto n = decode_number(v);
                valid = n && *n <= UINT32_MAX;
                if (valid) num = uint32_t(*n);
            }
            if (!ours && valid) {  // a target offer: answer with the result
                auto mine = [&](std::string_view key) -> uint32_t {
                    if (key == "FirstBurstLength") return opt_.first_burst_length;
                    if (key == "MaxBurstLength") return opt_.max_burst_length;
                    if (key == "MaxOutstandingR2T") return 1;
                    if (key == "MaxConnections") return 1;
                    if (key == "ErrorRecoveryLevel") return 0;
                    if (key == "DefaultTime2Wait") return 2;
                    if (key == "DefaultTime2Retain") return 20;
                    if (key == "InitialR2T") return opt_.initial_r2t;
                    if (key == "ImmediateData") return opt_.immediate_data;
                    return d->dflt;
                };
                const uint32_t m = mine(k);
                if (is_num)
                    num = d->kind == KeyKind::number_min ? std::min(num, m) : std::max(num, m);
                if (d->kind == KeyKind::boolean_and) yes = yes && m;
                if (d->kind == KeyKind::boolean_or) yes = yes || m;
                L.pending.emplace_back(k, is_num ? std::to_string(num) : (yes ? "Yes" : "No"));
            }
            if (valid) {
                if (k == "ImmediateData")
                    session_.immediate_data = yes;
                else if (k == "InitialR2T")
                    session_.initial_r2t = yes;
                else if (k == "FirstBurstLength")
                    session_.first_burst_length = num;
                else if (k == "MaxBurstLength")
                    session_.max_burst_length = num;
                else if (k == "MaxOutstandingR2T")
                    session_.max_outstanding_r2t = num;
            }
        }
    }
    // CHAP.
    if (L.csg == 0 && !opt_.chap_user.empty()) {
        if (L.step == LoginState::Step::first) {
            L.step = LoginState::Step::chap_a;
            send_login();
            return;
        }
        if (L.step == LoginState::Step::chap_a) {
            auto id = decode_number(chap_i);
            auto challenge = decode_binary(chap_c);
            if (chap_a != "5" || !id || *id > 255 || !challenge) {
                lost("CHAP: the target sent no usable CHAP_A=5, CHAP_I, CHAP_C");
                return;
            }
            const Md5Digest resp = chap_md5_response(uint8_t(*id), opt_.chap_secret, *challenge);
            L.pending.emplace_back("CHAP_N", opt_.chap_user);
            L.pending.emplace_back("CHAP_R", encode_hex(resp));
            if (!opt_.chap_muser.empty()) {
                Prng p(opt_.seed * 0x9e3779b97f4a7c15ull + 7);
                L.mutual_id = uint8_t(p.next());
                L.mutual_challenge.resize(16);
                for (auto& x : L.mutual_challenge) x = uint8_t(p.next());
                L.pending.emplace_back("CHAP_I", std::to_string(L.mutual_id));
                L.pending.emplace_back("CHAP_C", encode_hex(L.mutual_challenge));
            }
            L.step = LoginState::Step::chap_done;
            send_login();
            return;
        }
        if (L.step == LoginState::Step::chap_done && !opt_.chap_muser.empty()) {
            auto got = decode_binary(chap_r);
            const Md5Digest want =
                chap_md5_response(L.mutual_id, opt_.chap_msecret, L.mutual_challenge);
            if (chap_n != opt_.chap_muser || !got ||
                !std::equal(got->begin(), got->end(), want.begin(), want.end())) {
                lost("mutual CHAP: the target's answer is wrong");
                return;
            }
            L.step = LoginState::Step::operational;  // checked once
        }
    }
    // Without CHAP the security stage has nothing more to say: only the transit is left.
    if (L.csg == 0 && opt_.chap_user.empty()) L.step = LoginState::Step::chap_done;
    const bool transit = r.flags & login_flags::transit;
    if (transit) {
        const uint8_t nsg = login_flags::nsg(r.flags);
        if (nsg == 3) {
            // Full feature phase: digests start with the next PDU.
            session_.tsih = r.tsih.get();
            tx_digests_header_ = session_.header_digest;
            tx_digests_data_ = session_.data_digest;
            rx_.config().header_digest = session_.header_digest;
            rx_.config().data_digest = session_.data_digest;
            rx_.config().max_recv_data_segment_length = opt_.max_recv_data_segment_length;
            cmd_sn_ = exp_cmd_sn_;
            login_.reset();
            state_ = State::full_feature;
            auto cb = std::move(login_done_);
            login_done_ = nullptr;
            if (cb) cb(Status{});
            send_waiting();
            return;
        }
        L.csg = nsg;
    }
    send_login();
}

// ---- discovery
// --------------------------------------------------------------------------------------

void Initiator::send_targets(std::function<void(Status, std::vector<SendTargetsEntry>)> done,
                             std::string what) {
    if (state_ != State::full_feature || text_done_) {
        done(Status(Errc::busy, "not in full feature phase, or a text exchange is running"), {});
        return;
    }
    text_done_ = std::move(done);
    text_in_.clear();
    ++text_itt_;
    TextReq t{};
    t.opcode = uint8_t(Opcode::text_req);
    t.flags = text_flags::final;
    t.itt.set(kTextItt | (text_itt_ & 0xffff));
    t.ttt.set(kReservedTag);
    t.cmd_sn.set(cmd_sn_++);
    t.exp_stat_sn.set(exp_stat_sn_);
    std::string body;
    append_key(body, "SendTargets", what);
    queue_pdu(&t, reinterpret_cast<const uint8_t*>(body.data()), uint32_t(body.size()));
    (void)flush();
}

void Initiator::on_text_rsp() {
    const auto r = bhs_as<TextRsp>(rx_.header());
    take_stat_sn(r.stat_sn.get());
    update_sn(r.exp_cmd_sn.get(), r.max_cmd_sn.get());
    if (!text_done_ || r.itt.get() != (kTextItt | (text_itt_ & 0xffff))) {
        lost("Text Response nobody asked for");
        return;
    }
    text_in_.append(reinterpret_cast<const char*>(scratch_.data()), scratch_.size());
    if (r.flags & text_flags::cont || !(r.flags & text_flags::final)) {
        TextReq t{};
        t.opcode = uint8_t(Opcode::text_req);
        t.flags = text_flags::final;
        t.itt = r.itt;
        t.ttt = r.ttt;
        t.cmd_sn.set(cmd_sn_++);
        t.exp_stat_sn.set(exp_stat_sn_);
        queue_pdu(&t, nullptr, 0);
        return;
    }
    std::vector<KeyValue> kvs;
    std::vector<SendTargetsEntry> out;
    const TextError e =
        parse_text(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text_in_.data()),
                                            text_in_.size()),
                   kvs, true);
    Status st;
    if (e != TextError::none) {
        st = Status(Errc::protocol_error, "SendTargets response does not parse");
    } else {
        for (const KeyValue& kv : kvs) {
            if (kv.key == "TargetName") {
                out.push_back({std::string(kv.value), {}});
            } else if (kv.key == "TargetAddress" && !out.empty()) {
                out.back().addresses.emplace_back(kv.value);
            }
        }
    }
    auto cb = std::move(text_done_);
    text_done_ = nullptr;
    cb(st, std::move(out));
}

// ---- logout -------------------------------------------------------------------------------------

void Initiator::logout(std::function<void(Status)> done) {
    if (state_ != State::full_feature) {
        done(Status(Errc::busy, "not in full feature phase"));
        return;
    }
    logout_done_ = std::move(done);
    state_ = State::logging_out;
    LogoutReq l{};
    l.opcode = uint8_t(Opcode::logout_req) | kImmediateBit;
    l.reason_code = 0x80;  // F bit + reason 0: close the session
    l.itt.set(kLogoutItt);
    l.cid.set(opt_.cid);
    l.cmd_sn.set(cmd_sn_);
    l.exp_stat_sn.set(exp_stat_sn_);
    queue_pdu(&l, nullptr, 0);
    (void)flush();
}

// ---- SCSI
// ----------------------------------------------------------------------------------------

Result<uint32_t> Initiator::submit(const ScsiCommand& cmd, ScsiDone done) {
    if (state_ != State::full_feature)
        return Error(Errc::shutdown, std::string("iSCSI initiator is ") + state_name());
    if (session_.discovery)
        return Error(Errc::not_supported, "a discovery session carries no SCSI");
    if (cmd.cdb_length == 0 || cmd.cdb_length > 16)
        return Error(Errc::invalid_argument, "CDB length");
    if (cmd.dir != DataDir::none && cmd.length != 0 && cmd.buf == nullptr)
        return Error(Errc::invalid_argument, "no buffer");
    if (outstanding_ >= opt_.queue_depth) return Error(Errc::busy, "queue depth reached");
    Task* t = alloc_task();
    if (t == nullptr) return Error(Errc::busy, "no task slot");
    t->kind = Task::Kind::scsi;
    t->cmd = cmd;
    if (t->cmd.dir == DataDir::none) t->cmd.length = 0;
    t->done = std::move(done);
    ++stats_.commands;
    waiting_.push_back(t->slot);
    send_waiting();
    (void)flush();
    return t->itt;
}

void Initiator::send_waiting() {
    if (state_ != State::full_feature) return;
    size_t i = 0;
    for (; i < waiting_.size(); ++i) {
        if (!sn_le(cmd_sn_, max_cmd_sn_)) break;  // the window is closed
        send_command(*tasks_[waiting_[i]]);
    }
    waiting_.erase(waiting_.begin(), waiting_.begin() + ptrdiff_t(i));
}

void Initiator::send_command(Task& t) {
    const ScsiCommand& c = t.cmd;
    const SessionInfo& s = session_;
    const uint32_t mds = s.max_send_data_segment_length;
    uint32_t immediate = 0, unsolicited = 0;
    if (c.dir == DataDir::write && c.length > 0) {
        const uint32_t burst = std::min(c.length, s.first_burst_length);
        if (s.immediate_data) immediate = std::min(burst, mds);
        if (!s.initial_r2t)
            unsolicited = burst;
        else
            unsolicited = immediate;
    }
    ScsiCmd cmd{};
    cmd.opcode = uint8_t(Opcode::scsi_cmd);
    cmd.flags = uint8_t((unsolicited > immediate ? 0 : scsi_flags::final) |
                        (c.dir == DataDir::read ? scsi_flags::read : 0) |
                        (c.dir == DataDir::write ? scsi_flags::write : 0) |
                        (c.task_attr & scsi_flags::attr_mask));
    cmd.lun.set(c.lun);
    cmd.itt.set(t.itt);
    cmd.expected_data_transfer_length.set(c.length);
    t.cmd_sn = cmd_sn_++;
    cmd.cmd_sn.set(t.cmd_sn);
    cmd.exp_stat_sn.set(exp_stat_sn_);
    std::memcpy(cmd.cdb, c.cdb.data(), 16);
    queue_pdu(&cmd, c.buf, immediate);
    t.sent = true;
    if (unsolicited > immediate)
        send_data_out(t, kReservedTag, immediate, unsolicited - immediate, true);
}

void Initiator::send_data_out(Task& t, uint32_t ttt, uint32_t offset, uint32_t len, bool) {
    const uint32_t mds = session_.max_send_data_segment_length;
    uint32_t data_sn = 0;
    for (uint32_t done = 0; done < len;) {
        const uint32_t n = std::min(mds, len - done);
        DataOut d{};
        d.opcode = uint8_t(Opcode::data_out);
        d.flags = done + n == len ? kFinalBit : 0;
        d.lun.set(t.cmd.lun);
        d.itt.set(t.itt);
        d.ttt.set(ttt);
        d.exp_stat_sn.set(exp_stat_sn_);
        d.data_sn.set(data_sn++);
        d.buffer_offset.set(offset + done);
        queue_pdu(&d, t.cmd.buf + offset + done, n);
        ++stats_.data_out_pdus;
        done += n;
    }
}

Result<uint32_t> Initiator::read(uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
                                 uint8_t* buf, ScsiDone done, bool use16) {
    ScsiCommand c;
    c.lun = lun;
    if (!use16 && (lba > UINT32_MAX || blocks > UINT16_MAX)) use16 = true;
    c.cdb = use16 ? cdb_read16(lba, blocks) : cdb_read10(uint32_t(lba), uint16_t(blocks));
    c.cdb_length = use16 ? 16 : 10;
    c.dir = DataDir::read;
    c.buf = buf;
    c.length = blocks * block_size;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::write(uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
                                  const uint8_t* buf, ScsiDone done, bool use16, bool fua) {
    ScsiCommand c;
    c.lun = lun;
    if (!use16 && (lba > UINT32_MAX || blocks > UINT16_MAX)) use16 = true;
    c.cdb =
        use16 ? cdb_write16(lba, blocks, fua) : cdb_write10(uint32_t(lba), uint16_t(blocks), fua);
    c.cdb_length = use16 ? 16 : 10;
    c.dir = DataDir::write;
    c.buf = const_cast<uint8_t*>(buf);
    c.length = blocks * block_size;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::test_unit_ready(uint64_t lun, ScsiDone done) {
    ScsiCommand c;
    c.lun = lun;
    c.cdb_length = 6;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::inquiry(uint64_t lun, bool evpd, uint8_t page, uint8_t* buf,
                                    uint16_t len, ScsiDone done) {
    ScsiCommand c;
    c.lun = lun;
    c.cdb[0] = 0x12;
    c.cdb[1] = evpd ? 1 : 0;
    c.cdb[2] = page;
    c.cdb[3] = uint8_t(len >> 8), c.cdb[4] = uint8_t(len);
    c.cdb_length = 6;
    c.dir = DataDir::read;
    c.buf = buf;
    c.length = len;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::read_capacity16(uint64_t lun, uint8_t* buf32, ScsiDone done) {
    ScsiCommand c;
    c.lun = lun;
    c.cdb[0] = 0x9e;
    c.cdb[1] = 0x10;  // SERVICE ACTION IN(16): READ CAPACITY(16)
    c.cdb[13] = 32;
    c.cdb_length = 16;
    c.dir = DataDir::read;
    c.buf = buf32;
    c.length = 32;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::report_luns(uint8_t* buf, uint32_t len, ScsiDone done) {
    ScsiCommand c;
    c.cdb[0] = 0xa0;
    Be32 l;
    l.set(len);
    std::memcpy(&c.cdb[6], l.b, 4);
    c.cdb_length = 12;
    c.dir = DataDir::read;
    c.buf = buf;
    c.length = len;
    return submit(c, std::move(done));
}

Result<uint32_t> Initiator::synchronize_cache(uint64_t lun, ScsiDone done) {
    ScsiCommand c;
    c.lun = lun;
    c.cdb[0] = 0x35;
    c.cdb_length = 10;
    return submit(c, std::move(done));
}

// ---- task management and pings ------------------------------------------------------------------

Result<uint32_t> Initiator::task_management(uint8_t function, uint64_t lun, uint32_t ref_itt,
                                            TmfDone done) {
    if (state_ != State::full_feature) return Error(Errc::shutdown, "not in full feature phase");
    Task* t = alloc_task();
    if (t == nullptr) return Error(Errc::busy, "no task slot");
    t->kind = Task::Kind::tmf;
    t->tmf_function = function;
    t->tmf_lun = lun;
    t->ref_itt = ref_itt;
    t->tmf_done = std::move(done);
    TaskMgmtReq m{};
    m.opcode = uint8_t(Opcode::task_mgmt_req) | kImmediateBit;
    m.function = uint8_t(0x80 | (function & 0x7f));
    m.lun.set(lun);
    m.itt.set(t->itt);
    m.referenced_task_tag.set(function == tmf::abort_task ? ref_itt : kReservedTag);
    m.cmd_sn.set(cmd_sn_);
    m.exp_stat_sn.set(exp_stat_sn_);
    if (const Task* ref = task_by_itt(ref_itt); ref && function == tmf::abort_task)
        m.ref_cmd_sn.set(ref->cmd_sn);
    else
        m.ref_cmd_sn.set(cmd_sn_);
    queue_pdu(&m, nullptr, 0);
    (void)flush();
    return t->itt;
}

Result<uint32_t> Initiator::ping(std::vector<uint8_t> data, std::function<void(Status)> done) {
    if (state_ != State::full_feature) return Error(Errc::shutdown, "not in full feature phase");
    if (data.size() > session_.max_send_data_segment_length)
        return Error(Errc::invalid_argument, "ping data longer than the target accepts");
    Task* t = alloc_task();
    if (t == nullptr) return Error(Errc::busy, "no task slot");
    t->kind = Task::Kind::nop;
    t->nop_data = std::move(data);
    t->nop_done = std::move(done);
    NopOut o{};
    o.opcode = uint8_t(Opcode::nop_out) | kImmediateBit;
    o.flags = kFinalBit;
    o.itt.set(t->itt);
    o.ttt.set(kReservedTag);
    o.cmd_sn.set(cmd_sn_);
    o.exp_stat_sn.set(exp_stat_sn_);
    queue_pdu(&o, t->nop_data.data(), uint32_t(t->nop_data.size()));
    ++stats_.nop_out_pings;
    (void)flush();
    return t->itt;
}

runtime::PollStatus Initiator::nop_fn(void* ctx) {
    auto* self = static_cast<Initiator*>(ctx);
    if (self->state_ != State::full_feature || !self->sock_) return runtime::PollStatus::idle;
    const uint64_t period = self->opt_.nop_interval_ms;
    if (self->nop_itt_ != kReservedTag) {
        if (++self->nop_sent_ticks_ * period >= self->opt_.nop_timeout_ms) {
            self->lost("NOP-Out ping unanswered (nop_timeout)");
            return runtime::PollStatus::busy;
        }
        return runtime::PollStatus::idle;
    }
    if (self->activity_) {
        self->activity_ = false;
        return runtime::PollStatus::idle;
    }
    auto r = self->ping({}, nullptr);
    if (r.ok()) {
        self->nop_itt_ = *r;
        self->nop_sent_ticks_ = 0;
    }
    return runtime::PollStatus::busy;
}

}  // namespace strata::iscsi::testing
