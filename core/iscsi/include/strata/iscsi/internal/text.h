// iSCSI text: key=value pairs (RFC 7143 §6.1), the key table (§13, §12 for the security
// keys) and the SendTargets response builder (Appendix C).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::iscsi {

inline constexpr size_t kMaxKeyNameLength = 63;    // §6.1
inline constexpr size_t kMaxValueLength = 255;     // §6.1, unless the key says otherwise
inline constexpr size_t kMaxBinaryValueLength = 8192;  // large binary values (CHAP_C, CHAP_R)
inline constexpr size_t kMaxNameLength = 223;      // iSCSI names (§4.2.7.1)

struct KeyValue {
    std::string_view key;
    std::string_view value;
};

enum class TextError : uint8_t {
    none,
    not_terminated,  // the last pair lacks its NUL
    no_equals,       // a pair without '='
    empty_key,
    key_too_long,
    bad_key_char,    // key characters: letters, digits, '.', '-', '+', '@', '_'
    duplicate_key,   // the same key twice in one text
};
const char* text_error_name(TextError e) noexcept;

// Splits a data segment (or the concatenation of a C-bit sequence) into pairs. Empty data is
// an empty list; trailing NUL padding after the last pair is accepted. Value length limits
// are the caller's (they depend on the key). Views point into `data`. A request repeating a
// key is an error; responses such as SendTargets' repeat TargetAddress (allow_duplicates).
TextError parse_text(std::span<const uint8_t> data, std::vector<KeyValue>& out,
                     bool allow_duplicates = false);

// Appends "key=value\0".
void append_key(std::string& out, std::string_view key, std::string_view value);

// ---- the key table -----------------------------------------------------------------------
enum class KeyId : uint8_t {
    header_digest, data_digest, max_connections, send_targets, target_name, initiator_name,
    target_alias, initiator_alias, target_address, target_portal_group_tag, initial_r2t,
    immediate_data, max_recv_data_segment_length, max_burst_length, first_burst_length,
    default_time2wait, default_time2retain, max_outstanding_r2t, data_pdu_in_order,
    data_sequence_in_order, error_recovery_level, session_type, auth_method,
    chap_a, chap_i, chap_c, chap_n, chap_r,
    // RFC 3720 keys obsoleted by RFC 7143 (§13.26 asks responders to answer them).
    of_marker, if_marker, of_mark_int, if_mark_int,
    count_
};

enum class KeyKind : uint8_t {
    boolean_and,    // result: Yes only if both say Yes
    boolean_or,     // result: Yes if either says Yes
    number_min,     // result: the smaller
    number_max,     // result: the larger
    declarative,    // each side states its own value; no negotiation
    list,           // the responder picks the first value of the offer it supports
    auth,           // CHAP exchange values, handled by the authenticator
    text_only,      // SendTargets: a request, answered by the Text Response
    obsolete,
};

namespace key_flags {
inline constexpr uint8_t leading_only = 1;      // LO: only on the leading connection
inline constexpr uint8_t from_initiator = 2;    // the initiator may send it
inline constexpr uint8_t from_target = 4;       // the target may send it
inline constexpr uint8_t security = 8;          // security stage only
inline constexpr uint8_t not_discovery = 16;    // Irrelevant in a discovery session
inline constexpr uint8_t login_only = 32;       // IO/LO keys: no renegotiation in FFP
}  // namespace key_flags

struct KeyDef {
    std::string_view name;
    KeyId id;
    KeyKind kind;
    uint32_t min;      // numbers: range (inclusive)
    uint32_t max;
    uint32_t dflt;     // numbers and booleans (1 = Yes): the RFC default
    uint8_t flags;
};
// The definition of `name` (exact, case-sensitive match), nullptr if unknown.
const KeyDef* find_key(std::string_view name) noexcept;
const KeyDef& key_def(KeyId id) noexcept;
std::span<const KeyDef> all_keys() noexcept;

// Value syntax helpers.
bool parse_bool(std::string_view v, bool* out) noexcept;  // "Yes" / "No"
bool valid_iscsi_name(std::string_view v) noexcept;        // iqn./eui./naa. form, <= 223 bytes

// ---- SendTargets (Appendix C) ----------------------------------------------------------------
struct SendTargetsEntry {
    std::string name;
    // Each "address:port,portal-group-tag" (an IPv6 address in brackets).
    std::vector<std::string> addresses;
};
// The text for SendTargets=<value>: "All" lists every entry, a name lists that target only,
// and an empty value (or a normal session) lists `session_target` only. The caller passes the
// entries this initiator may see (the ACL is applied by the target configuration).
std::string build_send_targets(std::span<const SendTargetsEntry> targets, std::string_view value,
                               bool discovery_session, std::string_view session_target);

}  // namespace strata::iscsi
