// The iSCSI login state machine of one connection (RFC 7143 §6, §11.12, §11.13) and the
// full-feature text negotiation (§11.10, SendTargets), as pure state machines: a whole
// request PDU in (its BHS and data segment, as PduReceiver delivers it), response PDU bytes
// out. Session-wide facts (target nodes, ACLs, sessions, CHAP secrets) come through LoginHost,
// which the target configuration implements (planned; the tests use a fake). Randomness for
// CHAP challenges comes from a caller-supplied Prng, so the simulator stays deterministic.
//
// Lifecycle: one LoginConnection per TCP connection, created on accept, fed every PDU until
// on_pdu() returns full_feature (then negotiated() holds the result and digests apply from the
// next PDU on) or failed (send the bytes, then close). Control path: it allocates.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/random.h>
#include <strata/iscsi/internal/chap.h>
#include <strata/iscsi/internal/pdu.h>
#include <strata/iscsi/internal/text.h>
#include <strata/iscsi/iscsi.h>

namespace strata::iscsi {

// Login status (§11.13.5): class and detail.
struct LoginStatus {
    uint8_t status_class = 0;
    uint8_t status_detail = 0;
    constexpr bool ok() const noexcept { return status_class == 0; }
    constexpr uint16_t code() const noexcept { return uint16_t(status_class << 8 | status_detail); }
    friend constexpr bool operator==(LoginStatus, LoginStatus) = default;
};
namespace login_status {
inline constexpr LoginStatus success{0x00, 0x00};
inline constexpr LoginStatus target_moved_temporarily{0x01, 0x01};
inline constexpr LoginStatus target_moved_permanently{0x01, 0x02};
inline constexpr LoginStatus initiator_error{0x02, 0x00};
inline constexpr LoginStatus authentication_failure{0x02, 0x01};
inline constexpr LoginStatus authorization_failure{0x02, 0x02};
inline constexpr LoginStatus not_found{0x02, 0x03};
inline constexpr LoginStatus target_removed{0x02, 0x04};
inline constexpr LoginStatus unsupported_version{0x02, 0x05};
inline constexpr LoginStatus too_many_connections{0x02, 0x06};
inline constexpr LoginStatus missing_parameter{0x02, 0x07};
inline constexpr LoginStatus cant_include_in_session{0x02, 0x08};
inline constexpr LoginStatus session_type_not_supported{0x02, 0x09};
inline constexpr LoginStatus session_does_not_exist{0x02, 0x0a};
inline constexpr LoginStatus invalid_during_login{0x02, 0x0b};
inline constexpr LoginStatus target_error{0x03, 0x00};
inline constexpr LoginStatus service_unavailable{0x03, 0x01};
inline constexpr LoginStatus out_of_resources{0x03, 0x02};
}  // namespace login_status

enum class Stage : uint8_t { security = 0, operational = 1, full_feature = 3 };
enum class SessionType : uint8_t { normal, discovery };

// Session-wide operational parameters (the LO keys), RFC defaults.
struct SessionParams {
    uint32_t max_connections = 1;
    bool initial_r2t = true;
    bool immediate_data = true;
    uint32_t max_burst_length = 262144;
    uint32_t first_burst_length = 65536;
    uint32_t default_time2wait = 2;
    uint32_t default_time2retain = 20;
    uint32_t max_outstanding_r2t = 1;
    bool data_pdu_in_order = true;
    bool data_sequence_in_order = true;
    uint32_t error_recovery_level = 0;
};

// Which CHAP a target (or discovery) requires; SPDK's disable_chap/require_chap/mutual_chap/
// chap_group. Neither disable nor require: whatever the initiator offers first (CHAP or None).
struct AuthPolicy {
    bool disable_chap = false;
    bool require_chap = false;
    bool mutual_chap = false;
    int32_t chap_group = 0;
};

struct TargetInfo {
    std::string name;
    std::string alias;  // sent as TargetAlias if not empty
    AuthPolicy auth;
    // The node requires CRC32C digests: a list without CRC32C is answered Reject and the
    // digest stays off, which ends the login (see LoginConnection).
    bool header_digest = false;
    bool data_digest = false;
    uint32_t queue_depth = 0;  // the session's command window; 0: options.max_queue_depth
};

using Isid = std::array<uint8_t, 6>;

class LoginHost : public ChapSecrets {
public:
    // A normal session's target `name` as `initiator` may reach it through this portal group.
    // Returns success and fills *out, or not_found (02/03), target_removed (02/04),
    // authorization_failure (02/02: the initiator group ACL), service_unavailable...
    virtual LoginStatus find_target(std::string_view name, std::string_view initiator,
                                    TargetInfo* out) = 0;
    virtual AuthPolicy discovery_auth() = 0;
    // A connection joining an existing session (TSIH != 0): success and the session's
    // parameters, or session_does_not_exist (02/0a), too_many_connections (02/06),
    // cant_include_in_session (02/08).
    virtual LoginStatus join_session(const Isid& isid, uint16_t tsih, std::string_view initiator,
                                     std::string_view target, SessionParams* params) = 0;
    // A new session at its Login Final-Response: a non-zero TSIH, or 0 when out of sessions
    // (the login then fails with out_of_resources, 03/02).
    virtual uint16_t new_session(const Isid& isid, std::string_view initiator,
                                 std::string_view target, SessionType type) = 0;
    // SendTargets: the targets `initiator` may see, with their portals.
    virtual std::vector<SendTargetsEntry> send_targets(std::string_view initiator) = 0;
};

struct LoginConfig {
    const TargetOptions* options = nullptr;
    LoginHost* host = nullptr;
    Prng* rng = nullptr;              // CHAP identifiers and challenges
    uint16_t portal_group_tag = 1;    // of the portal the connection came in on
};

// What the login established.
struct Negotiated {
    SessionType session_type = SessionType::normal;
    std::string initiator_name;
    std::string initiator_alias;
    std::string target_name;  // empty for discovery
    Isid isid{};
    uint16_t tsih = 0;
    uint16_t cid = 0;
    bool leading = true;                   // TSIH was 0: a new session
    bool header_digest = false;
    bool data_digest = false;
    uint32_t initiator_mrdsl = 8192;       // the initiator's MaxRecvDataSegmentLength: our send limit
    uint32_t target_mrdsl = 8192;          // ours: the receiver's limit
    SessionParams session;
    std::string chap_user;                 // the authenticated CHAP name, if any
    SnState sn;                            // next StatSN, ExpCmdSN, MaxCmdSN
};

class LoginConnection {
public:
    enum class Outcome : uint8_t { in_progress, full_feature, failed };

    explicit LoginConnection(const LoginConfig& config);

    // One PDU received during login: `bhs` is its 48-byte BHS, `data` its data segment. The
    // response PDU is appended to `out` (no digests: they start after login).
    Outcome on_pdu(const uint8_t* bhs, std::span<const uint8_t> data, std::vector<uint8_t>& out);

    Stage stage() const noexcept { return stage_; }
    LoginStatus status() const noexcept { return status_; }     // the failure's status
    const char* failure_reason() const noexcept { return reason_; }
    const Negotiated& negotiated() const noexcept { return neg_; }

    static constexpr uint32_t kLoginMaxDataSegment = 8192;  // §13.12: during login
    static constexpr size_t kMaxLoginText = 64 * 1024;      // C-bit accumulation bound

private:
    enum class Auth : uint8_t { none_yet, await_chap_a, await_chap_r, done };
    Outcome fail(LoginStatus s, const char* why, std::vector<uint8_t>& out);
    bool first_request(const LoginReq& req, std::vector<uint8_t>& out, Outcome* o);
    bool identity(const std::vector<KeyValue>& kvs);
    bool negotiate(const KeyDef& d, std::string_view value, std::string& rsp);
    bool auth_key(const KeyDef& d, std::string_view value, const std::vector<KeyValue>& kvs,
                  std::string& rsp);
    bool finish_chap(const std::vector<KeyValue>& kvs, std::string& rsp);
    void add_offers(std::string& rsp);
    void send_response(const LoginReq& req, bool transit, uint8_t nsg, std::vector<uint8_t>& out);

    LoginConfig cfg_;
    Stage stage_ = Stage::security;
    bool started_ = false;
    bool identified_ = false;
    LoginStatus status_{};
    const char* reason_ = "";
    Negotiated neg_;
    TargetInfo target_;
    AuthPolicy policy_;
    Auth auth_ = Auth::none_yet;
    bool authenticated_ = false;
    bool tpgt_sent_ = false;
    bool mrdsl_sent_ = false;
    bool chap_finished_now_ = false;  // finish_chap ran for the current text
    uint8_t chap_id_ = 0;
    std::vector<uint8_t> challenge_;
    std::bitset<size_t(KeyId::count_)> seen_;
    std::bitset<size_t(KeyId::count_)> offered_;
    std::string in_text_;       // C-bit accumulation
    std::string out_text_;      // response text not yet sent (C-bit continuation)
    size_t out_off_ = 0;
    bool out_transit_ = false;  // the T/NSG the last piece carries
    uint8_t out_nsg_ = 0;
    uint32_t cmd_sn_ = 0;
    uint32_t itt_ = 0;
};

// Full-feature-phase Text Requests (SendTargets, MaxRecvDataSegmentLength declarations) of
// one connection, with C-bit continuation both ways (a long response is sent in pieces of the
// initiator's MaxRecvDataSegmentLength, each answered by an empty Text Request echoing our TTT).
class TextNegotiator {
public:
    TextNegotiator(LoginHost* host, Negotiated* neg) noexcept : host_(host), neg_(neg) {}
    // One Text Request: appends the Text Response (or a Reject) to `out`, with the given digests.
    // False when the PDU is a protocol error that should end the connection.
    bool on_pdu(const uint8_t* bhs, std::span<const uint8_t> data, std::vector<uint8_t>& out,
                PduDigests dg);

private:
    void respond(const TextReq& req, std::vector<uint8_t>& out, PduDigests dg,
                 bool ack_only = false);
    LoginHost* host_;
    Negotiated* neg_;
    std::string in_text_;
    std::string out_text_;
    size_t out_off_ = 0;
    uint32_t ttt_ = kReservedTag;
    uint32_t next_ttt_ = 1;
};

}  // namespace strata::iscsi
