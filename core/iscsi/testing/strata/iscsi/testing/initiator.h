// A small iSCSI initiator for tests and scenarios (library strata_iscsi_testing): one connection
// to a portal over core/sock (posix, uring or the simulator's network), RFC 7143 login
// (discovery with SendTargets, or a normal session; no auth, CHAP one-way or mutual; header and
// data digests; the operational keys settable), then SCSI commands with several outstanding,
// Data-In, immediate data, unsolicited Data-Out and R2T-driven Data-Out, NOP-Out/NOP-In, task
// management, logout. Hooks corrupt outgoing or incoming bytes and send raw PDUs, for negative
// tests.
//
// Threads. An Initiator belongs to the Thread that created it: every call is made there, every
// callback runs there (from its poller, never inside the call that submitted the work). It
// starts no OS thread, reads no clock (the NOP timer is a runtime timed poller) and its
// randomness (ISID, CHAP challenges) comes from InitiatorOptions::seed.
//
// Errors. A connection that fails (socket error, reset, end of stream, a PDU the initiator
// cannot accept, a header or data digest mismatch, a NOP-Out unanswered within nop_timeout)
// is closed: every outstanding command completes once with `transport` set to Errc::io_error
// ("connection lost: <why>"), and the Initiator is then `failed` (make a new one to log in
// again; the target sees a new connection and, with the same ISID, reinstates the session).
// Data that arrived with a bad digest is never delivered as good: the command fails.
//
// Control-path code: it allocates (one task's callback, the send buffer's growth); it is a
// test tool, not a data path.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/iscsi/internal/pdu.h>
#include <strata/iscsi/internal/text.h>
#include <strata/runtime/thread.h>
#include <strata/sock/sock.h>

namespace strata::iscsi::testing {

struct InitiatorOptions {
    sock::Endpoint portal;  // the target's address and port (3260)
    std::string sock_impl;  // "", "posix", "uring", "sim"
    std::string initiator_name = "iqn.2016-06.io.strata:initiator";
    std::string initiator_alias;
    std::string target_name;        // empty: a discovery session
    uint64_t seed = 1;              // ISID qualifier, CHAP identifiers and challenges
    std::array<uint8_t, 6> isid{};  // all zero: 0x80 (random format) + bytes from seed
    uint16_t cid = 0;
    // CHAP: chap_user non-empty offers only CHAP (AuthMethod=CHAP) and answers the target's
    // challenge; chap_muser non-empty also challenges the target (mutual CHAP) and accepts
    // only chap_muser / chap_msecret in its answer. Empty chap_user offers AuthMethod=None.
    std::string chap_user, chap_secret;
    std::string chap_muser, chap_msecret;
    bool header_digest = false;  // offer CRC32C only (true) or None only (false)
    bool data_digest = false;
    bool immediate_data = true;
    bool initial_r2t = true;
    uint32_t first_burst_length = 65536;
    uint32_t max_burst_length = 262144;
    uint32_t max_recv_data_segment_length = 262144;  // declared: the target's send limit
    uint32_t queue_depth = 32;                       // commands outstanding at once (task slots)
    // Keep-alive: a NOP-Out ping every nop_interval_ms of idle connection; unanswered after
    // nop_timeout_ms the connection is declared lost. 0: off.
    uint32_t nop_interval_ms = 0;
    uint32_t nop_timeout_ms = 5000;
};

// What a login established (from the target's answers).
struct SessionInfo {
    bool discovery = false;
    uint16_t tsih = 0;
    bool header_digest = false;
    bool data_digest = false;
    bool immediate_data = true;
    bool initial_r2t = true;
    uint32_t first_burst_length = 65536;
    uint32_t max_burst_length = 262144;
    uint32_t max_send_data_segment_length = 8192;  // the target's MaxRecvDataSegmentLength
    uint32_t max_outstanding_r2t = 1;
    std::string target_alias;
    uint16_t target_portal_group_tag = 0;
    uint8_t status_class = 0;  // the last Login Response's status
    uint8_t status_detail = 0;
    std::vector<std::pair<std::string, std::string>> keys;  // every key the target answered
};

enum class DataDir : uint8_t { none, read, write };

// One SCSI command. The buffer (read: filled; write: sent) must live until the callback.
struct ScsiCommand {
    uint64_t lun = 0;
    std::array<uint8_t, 16> cdb{};
    uint8_t cdb_length = 0;  // bytes of cdb used (6..16)
    DataDir dir = DataDir::none;
    uint8_t* buf = nullptr;
    uint32_t length = 0;    // Expected Data Transfer Length
    uint8_t task_attr = 1;  // SIMPLE
};

struct ScsiResult {
    Status transport;      // not ok: the command never completed at the target (lost, aborted)
    uint8_t response = 0;  // iSCSI response (0: command completed at target)
    uint8_t status = 0;    // SCSI status (0 GOOD, 2 CHECK CONDITION, ...)
    uint8_t flags = 0;     // O/U bits (rsp_flags)
    uint32_t residual = 0;
    uint32_t data_in = 0;        // Data-In bytes received
    std::vector<uint8_t> sense;  // sense data (without the 2-byte SenseLength)
    uint32_t itt = 0;
    bool ok() const noexcept { return transport.ok() && response == 0 && status == 0; }
    uint8_t sense_key() const noexcept;  // 0 when no sense (fixed or descriptor format)
    uint8_t asc() const noexcept;
    uint8_t ascq() const noexcept;
};
using ScsiDone = std::function<void(const ScsiResult&)>;

namespace tmf {
inline constexpr uint8_t abort_task = 1, abort_task_set = 2, clear_aca = 3, clear_task_set = 4,
                         lun_reset = 5, target_warm_reset = 6, target_cold_reset = 7;
}
// Task Management response: 0 complete, 1 task does not exist, 2 LUN does not exist, ...
using TmfDone = std::function<void(Status transport, uint8_t response)>;

using iscsi::SendTargetsEntry;  // name, addresses ("address:port,tag")

struct InitiatorStats {
    uint64_t pdus_sent = 0, pdus_received = 0;
    uint64_t bytes_sent = 0, bytes_received = 0;
    uint64_t r2ts = 0, data_out_pdus = 0, data_in_pdus = 0;
    uint64_t nop_in_answered = 0;  // target pings answered
    uint64_t nop_out_pings = 0;
    uint64_t async_messages = 0, rejects = 0;
    uint64_t commands = 0, completed = 0, failed = 0;
};

class Initiator {
public:
    enum class State : uint8_t {
        idle,
        connecting,
        login,
        full_feature,
        logging_out,
        closed,
        failed
    };

    // On the Thread that will own it (registers its pollers there).
    explicit Initiator(InitiatorOptions options);
    ~Initiator();  // closes the connection (abortively); outstanding callbacks are dropped
    Initiator(const Initiator&) = delete;
    Initiator& operator=(const Initiator&) = delete;

    // Connects and logs in; done() once in full feature phase (ok) or failed (the status says
    // why: connect error, "login rejected 02/01" with status_class/detail in session(), ...).
    void login(std::function<void(Status)> done);
    // Discovery sessions: SendTargets=<what> ("All" by default).
    void send_targets(std::function<void(Status, std::vector<SendTargetsEntry>)> done,
                      std::string what = "All");
    // Logout (reason 0: close the session); done() after the Logout Response, then closes.
    void logout(std::function<void(Status)> done);
    // Drops the connection now (abort: the peer sees a reset); outstanding commands fail.
    void drop(bool abort = true);

    // SCSI. submit() returns the task's ITT, or an error at once (not in full feature phase,
    // no free slot, bad arguments); the callback then never runs. Commands beyond the target's
    // CmdSN window wait in order and are sent as MaxCmdSN opens.
    Result<uint32_t> submit(const ScsiCommand& cmd, ScsiDone done);
    Result<uint32_t> read(uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
                          uint8_t* buf, ScsiDone done, bool use16 = false);
    Result<uint32_t> write(uint64_t lun, uint64_t lba, uint32_t blocks, uint32_t block_size,
                           const uint8_t* buf, ScsiDone done, bool use16 = false, bool fua = false);
    Result<uint32_t> test_unit_ready(uint64_t lun, ScsiDone done);
    Result<uint32_t> inquiry(uint64_t lun, bool evpd, uint8_t page, uint8_t* buf, uint16_t len,
                             ScsiDone done);
    Result<uint32_t> read_capacity16(uint64_t lun, uint8_t* buf32, ScsiDone done);
    Result<uint32_t> report_luns(uint8_t* buf, uint32_t len, ScsiDone done);
    Result<uint32_t> synchronize_cache(uint64_t lun, ScsiDone done);

    // Task management (sent as immediate). abort_task: `ref_itt` names the task.
    Result<uint32_t> task_management(uint8_t function, uint64_t lun, uint32_t ref_itt,
                                     TmfDone done);
    // A NOP-Out ping with `data` (ITT assigned); done() when its NOP-In echo arrives.
    Result<uint32_t> ping(std::vector<uint8_t> data, std::function<void(Status)> done);

    // Negative tests. tx_hook sees every outgoing PDU (its whole bytes, digests included,
    // before it is queued) and may change them; rx_hook sees received bytes before parsing.
    // send_raw queues bytes as they are (no digests added, no sequence numbers taken).
    using TxHook = std::function<void(std::vector<uint8_t>& pdu)>;
    using RxHook = std::function<void(uint8_t* data, size_t len)>;
    void set_tx_hook(TxHook hook) { tx_hook_ = std::move(hook); }
    void set_rx_hook(RxHook hook) { rx_hook_ = std::move(hook); }
    void send_raw(std::vector<uint8_t> bytes);

    State state() const noexcept { return state_; }
    const char* state_name() const noexcept;
    const std::string& error() const noexcept { return error_; }  // why it failed or closed
    const SessionInfo& session() const noexcept { return session_; }
    const InitiatorStats& stats() const noexcept { return stats_; }
    uint32_t outstanding() const noexcept { return outstanding_; }
    uint32_t cmd_sn() const noexcept { return cmd_sn_; }
    uint32_t max_cmd_sn() const noexcept { return max_cmd_sn_; }
    const InitiatorOptions& options() const noexcept { return opt_; }

private:
    struct Task;
    struct LoginState;
    static runtime::PollStatus poll_fn(void* ctx);
    static runtime::PollStatus nop_fn(void* ctx);
    static void sock_event(void* ctx, sock::Socket& s);
    bool poll();
    bool flush();
    bool receive();
    void on_pdu();
    void on_header();
    void lost(const std::string& why);
    void finish_closed(const std::string& why, bool failed, bool abort);
    void queue_pdu(const void* bhs, const uint8_t* data, uint32_t len, bool digests = true);
    void queue_pdu_iov(const void* bhs, const uint8_t* ahs, uint32_t ahs_len, const iovec* iov,
                       int iovcnt, uint32_t len, bool digests);
    void update_sn(uint32_t exp_cmd_sn, uint32_t max_cmd_sn);
    void take_stat_sn(uint32_t stat_sn);
    Task* task_by_itt(uint32_t itt);
    Task* alloc_task();
    void free_task(Task& t);
    void send_waiting();
    void send_command(Task& t);
    void send_data_out(Task& t, uint32_t ttt, uint32_t offset, uint32_t len, bool unsolicited);
    void complete(Task& t, ScsiResult& r);
    void fail_all(const std::string& why);
    // login
    void send_login();
    void on_login_rsp();
    void on_text_rsp();
    void start_logout();

    InitiatorOptions opt_;
    runtime::Thread* thread_ = nullptr;
    runtime::Poller* poller_ = nullptr;
    runtime::Poller* nop_poller_ = nullptr;
    std::unique_ptr<sock::SocketGroup> group_;
    std::unique_ptr<sock::Socket> sock_;
    State state_ = State::idle;
    std::string error_;
    SessionInfo session_;
    InitiatorStats stats_;
    std::unique_ptr<LoginState> login_;
    std::function<void(Status)> login_done_;
    std::function<void(Status)> logout_done_;
    std::function<void(Status, std::vector<SendTargetsEntry>)> text_done_;
    std::string text_what_;
    std::string text_in_;
    uint32_t text_itt_ = 0;

    PduReceiver rx_;
    std::vector<uint8_t> rbuf_;
    std::vector<uint8_t> scratch_;  // data of non-Data-In PDUs
    iovec rx_iov_{};                // the receiver's data destination (it keeps a pointer)
    std::vector<uint8_t> out_;      // bytes queued for the socket
    size_t out_off_ = 0;
    bool tx_digests_header_ = false, tx_digests_data_ = false;
    TxHook tx_hook_;
    RxHook rx_hook_;

    std::vector<std::unique_ptr<Task>> tasks_;
    std::vector<uint32_t> free_;     // free slots
    std::vector<uint32_t> waiting_;  // slots waiting for the CmdSN window, in order
    uint32_t outstanding_ = 0;
    uint32_t cmd_sn_ = 1;  // next CmdSN
    uint32_t exp_cmd_sn_ = 1, max_cmd_sn_ = 1;
    uint32_t exp_stat_sn_ = 0;
    uint32_t next_itt_gen_ = 1;
    bool activity_ = false;            // something arrived since the NOP timer last ran
    uint32_t nop_itt_ = kReservedTag;  // the keep-alive ping outstanding
    uint64_t nop_sent_ticks_ = 0;
    uint64_t nop_idle_ticks_ = 0;
};

// CDB builders (SBC/SPC), for submit() and for tests of the target.
std::array<uint8_t, 16> cdb_read10(uint32_t lba, uint16_t blocks);
std::array<uint8_t, 16> cdb_read16(uint64_t lba, uint32_t blocks);
std::array<uint8_t, 16> cdb_write10(uint32_t lba, uint16_t blocks, bool fua = false);
std::array<uint8_t, 16> cdb_write16(uint64_t lba, uint32_t blocks, bool fua = false);

// SPDK/Linux LUN encoding (SAM single level, peripheral addressing for LUN < 256, flat above).
uint64_t encode_lun(uint32_t lun) noexcept;

}  // namespace strata::iscsi::testing
