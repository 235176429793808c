// One iSCSI connection (private to the network layer): the receive loop, the login, the full
// feature phase on core/scsi, the send queue. Owned by one poll group (one Thread) at a time.
#pragma once

#include <sys/uio.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <strata/accel/accel.h>
#include <strata/base/intrusive_list.h>
#include <strata/base/random.h>
#include <strata/iscsi/internal/login.h>
#include <strata/iscsi/internal/pdu.h>
#include <strata/scsi/scsi.h>
#include <strata/sock/pdu_receive.h>
#include <strata/sock/sock.h>

#include "net.h"

namespace strata::iscsi::internal {

struct TxTag;
struct R2tTag;
struct ConnTag;

// Something on the send queue: its current gather list. `sent_fn` runs once every byte of it
// was accepted by the socket; it may refill the list (returns true: stays queued).
struct Tx : ListHook<TxTag> {
    static constexpr int kIovs = 24;
    iovec iov[kIovs];
    int cnt = 0;
    size_t total = 0;
    size_t sent = 0;
    bool (*sent_fn)(Conn& c, Tx& t) noexcept = nullptr;
    void clear() noexcept { cnt = 0, total = 0, sent = 0; }
    void add(const void* p, size_t n) noexcept {
        if (n == 0) return;
        iov[cnt++] = {const_cast<void*>(p), n};
        total += n;
    }
};

struct CtrlTx : Tx {
    std::vector<uint8_t> bytes;
};

// digest: all data received, a data digest still being verified through accel; held: released
// (connection closed, task aborted) while an accel op still reads its buffers, freed by the
// op's completion.
enum class CmdState : uint8_t { free, rx_imm, rx_data, wait_r2t, digest, exec, tx, held };

struct Cmd : Tx, ListHook<R2tTag> {
    static constexpr int kBatch = 4;  // PDUs prepared per refill
    Conn* conn = nullptr;
    uint16_t index = 0;
    uint16_t gen = 0;
    CmdState state = CmdState::free;
    scsi::Task task;
    uint32_t itt = 0;
    uint32_t cmd_sn = 0;
    bool immediate = false;
    bool read = false;
    bool write = false;
    bool digest_error = false;
    bool failed = false;         // answered without running (status + sense set in task)
    uint8_t lun_field[8] = {};
    uint32_t edtl = 0;
    // buffers
    uint32_t nbufs = 0;
    bool small_buf = false;  // bufs[0] is the poll group's small buffer
    void* bufs[kMaxChunks] = {};
    iovec iovs[kMaxChunks] = {};
    iovec slice[kMaxChunks] = {};  // the receive destination of one Data-Out
    // data-out
    uint32_t received = 0;   // bytes in order so far
    uint32_t burst_end = 0;  // end of the current sequence (unsolicited or R2T)
    bool unsolicited = false;  // the current sequence is the unsolicited one
    uint32_t data_sn = 0;    // expected DataSN in the current sequence
    uint32_t ttt = kReservedTag;
    uint32_t r2t_sn = 0;
    bool r2t_held = false;   // counts against the connection's R2T cap
    // data-in / response
    uint32_t din_off = 0;
    uint32_t din_len = 0;
    uint32_t din_sn = 0;
    bool rsp_pending = false;
    bool rsp_sent = false;
    uint8_t phase = 0;  // what the next refill sends: 0 r2t, 1 data-in/response
    uint8_t hdr[kBatch][kBhsSize + kDigestSize] = {};
    uint8_t ddgst[kBatch][4] = {};
    uint8_t sense_seg[2 + scsi::kMaxSenseBytes + 4] = {};
    // Data digests through accel (data_digest_accel_threshold). At most one op (or batch) of
    // a command is in flight (dg_pending); the command is held until it completes.
    // Received (Data-Out): the PDU's data and padding (dg_iov, dg_pad), the crc32c to match
    // (dg_expect) and the PDU's header for the Reject a mismatch sends (dg_bhs); a later
    // Data-Out arriving meanwhile is checked inline.
    bool dg_pending = false;
    uint32_t dg_crc = 0;
    uint32_t dg_expect = 0;
    uint8_t dg_pad[4] = {};
    iovec dg_iov[kMaxChunks + 1] = {};
    uint8_t dg_bhs[kBhsSize] = {};
    // Sent (Data-In): one batch per refill, op i computing ddgst[din_k[i]] over din_iov[..];
    // the refill is queued by its completion. din_off0/din_sn0: where the batch began.
    uint32_t din_nops = 0;
    uint32_t din_off0 = 0;
    uint32_t din_sn0 = 0;
    uint8_t din_k[kBatch] = {};
    uint32_t din_crc[kBatch] = {};
    iovec din_iov[kBatch][3] = {};
    accel::Op din_ops[kBatch];
};

struct Mgmt {
    scsi::MgmtTask m;
    Conn* conn = nullptr;
    uint32_t itt = 0;
    bool busy = false;
    bool ref_to_come = false;  // ABORT TASK: RefCmdSN not received yet (RFC 7143 11.5.1)
};

class Conn final : public LoginHost, public ListHook<ConnTag> {
public:
    Conn(PollGroup& g, std::unique_ptr<sock::Socket> s, int32_t pg_tag);
    ~Conn() override;

    // ---- poll group side ----
    Status attach_group(PollGroup& g);  // on g's Thread
    void detach_group() noexcept;
    void process_rx() noexcept;
    bool flush() noexcept;
    bool check_timers(uint64_t now) noexcept;
    void close(const char* why) noexcept;
    bool reapable() const noexcept;
    bool closed() const noexcept { return state_ == State::closed; }
    bool tx_pending() const noexcept { return !txq_.empty(); }
    sock::Socket& socket() noexcept { return *sock_; }
    int32_t pg_tag() const noexcept { return pg_tag_; }

    // ---- LoginHost ----
    LoginStatus find_target(std::string_view name, std::string_view initiator,
                            TargetInfo* out) override;
    AuthPolicy discovery_auth() override;
    LoginStatus join_session(const Isid& isid, uint16_t tsih, std::string_view initiator,
                             std::string_view target, SessionParams* params) override;
    uint16_t new_session(const Isid& isid, std::string_view initiator, std::string_view target,
                         SessionType type) override;
    std::vector<SendTargetsEntry> send_targets(std::string_view initiator) override;
    bool lookup(int32_t group, std::string_view user, ChapSecret* out) const override;

    // ---- used by the Cmd / Mgmt callbacks ----
    void task_done(Cmd& c) noexcept;
    void mgmt_done(Mgmt& m) noexcept;
    bool cmd_sent(Cmd& c) noexcept;
    void release(Cmd& c) noexcept;
    static void rx_digest_done(void* ctx, Status s) noexcept;
    static void din_digest_done(void* ctx, Status s) noexcept;

    uint16_t cid() const noexcept { return neg_.cid; }
    const TargetLookup& lookup_result() const noexcept { return lookup_; }
    const Negotiated& negotiated() const noexcept { return neg_; }
    const TargetOptions& options() const noexcept { return opts_; }
    uint16_t tsih() const noexcept { return neg_.tsih; }

private:
    void nexus_ended(const Session& s) noexcept;
    enum class State : uint8_t { login, ffp, logout, closing, closed };

    bool handle_event(RecvEvent ev) noexcept;
    bool on_header() noexcept;
    bool on_pdu() noexcept;
    bool login_pdu() noexcept;
    void enter_ffp() noexcept;
    bool ffp_header() noexcept;
    bool ffp_pdu() noexcept;
    bool scsi_cmd_header() noexcept;
    void scsi_cmd_received(Cmd& c) noexcept;
    bool data_out_header() noexcept;
    void data_out_received() noexcept;
    void data_out_complete(Cmd& c) noexcept;  // every byte in and verified: execute or fail
    // Data digests through accel (data_digest_accel_threshold).
    void defer_digests() noexcept;
    bool digest_by_accel(uint32_t len) const noexcept;
    bool submit_rx_digest(Cmd& c, uint32_t off, uint32_t len) noexcept;
    bool rx_digest_inline(const Cmd& c, uint32_t off, uint32_t len) const noexcept;
    uint32_t faulted_crc(Status& s, uint32_t crc) noexcept;
    void free_cmd(Cmd& c) noexcept;
    void nop_out() noexcept;
    void logout() noexcept;
    void task_mgmt() noexcept;
    void text() noexcept;
    bool check_cmd_sn(const Bhs& b) noexcept;  // false: outside the window, dropped
    void violation(RejectReason reason, const char* why) noexcept;
    void reject(RejectReason reason) noexcept;
    void reject(RejectReason reason, const uint8_t* rejected_bhs) noexcept;
    void stop_reading() noexcept;

    Cmd* alloc_cmd() noexcept;
    bool get_buffers(Cmd& c, uint32_t len) noexcept;
    void put_buffers(Cmd& c) noexcept;
    void start_data(Cmd& c) noexcept;   // after the command PDU: R2T, wait, or execute
    void next_r2t() noexcept;           // start R2Ts as the cap allows
    void queue_r2t(Cmd& c) noexcept;
    void execute(Cmd& c) noexcept;
    void fail_cmd(Cmd& c, uint8_t status, uint8_t key, uint8_t asc, uint8_t ascq) noexcept;
    void respond(Cmd& c) noexcept;
    bool refill(Cmd& c) noexcept;  // false: Data-In digests in accel, din_digest_done queues c
    void complete_cmd_sn(Cmd& c) noexcept;
    Cmd* find_itt(uint32_t itt) noexcept;

    CtrlTx* ctrl() noexcept;       // a new control PDU buffer
    void queue_ctrl(CtrlTx* t) noexcept;
    void queue(Tx& t) noexcept;
    PduDigests dg() const noexcept { return {neg_.header_digest && state_ != State::login,
                                             neg_.data_digest && state_ != State::login}; }
    SnState& sn() noexcept;         // StatSN (this connection), ExpCmdSN/MaxCmdSN (session)
    void set_sn(Be32& stat, Be32& exp, Be32& max, bool advance) noexcept;

    PollGroup* group_;
    NetworkImpl& net_;
    std::unique_ptr<sock::Socket> sock_;
    int32_t pg_tag_;
    std::string peer_ip_;
    std::string local_ip_;
    State state_ = State::login;
    bool registered_ = false;
    TargetOptions opts_;
    Prng prng_;
    std::unique_ptr<LoginConnection> login_;
    std::unique_ptr<TextNegotiator> text_neg_;
    Negotiated neg_;
    TargetLookup lookup_;
    std::shared_ptr<Session> session_;
    PduReceiver rx_;
    // One read takes many PDUs: at 16 KiB a stream of 4 KiB writes cost a read per 4 commands.
    sock::RxStaging rx_staging_{128 * 1024};
    std::vector<uint8_t> pdu_data_;  // control PDUs' data (login, text, NOP-Out ping data)
    iovec pdu_iov_{};
    IntrusiveList<Tx, TxTag> txq_;
    uint32_t depth_ = 0;
    std::unique_ptr<Cmd[]> cmds_;
    std::vector<uint16_t> free_;
    uint32_t in_use_ = 0;
    Cmd* cur_ = nullptr;  // the command whose immediate data / Data-Out is arriving
    IntrusiveList<Cmd, R2tTag> r2t_wait_;
    uint32_t r2t_out_ = 0;
    std::array<Mgmt, 4> mgmt_{};
    SnState sn_;
    bool discard_ = false;   // the PDU being received is dropped
    // NOP-In pings
    uint64_t last_rx_ns_ = 0;
    bool ping_out_ = false;
    uint64_t ping_ns_ = 0;
    uint32_t ping_ttt_ = 1;
    uint64_t accepted_ns_ = 0;
    bool close_after_flush_ = false;
    uint64_t drain_ns_ = 0;
    bool logout_session_ = false;
};

}  // namespace strata::iscsi::internal
