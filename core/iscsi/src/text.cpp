// iSCSI text keys (see <strata/iscsi/internal/text.h>).
#include <array>

#include <strata/iscsi/internal/text.h>

namespace strata::iscsi {

namespace {
using namespace key_flags;
constexpr uint8_t I = from_initiator, T = from_target, IT = from_initiator | from_target;
constexpr uint32_t kMax24 = 0xffffff;

// RFC 7143 §13 (and §12 for AuthMethod/CHAP); min/max/default as there.
constexpr std::array<KeyDef, size_t(KeyId::count_)> kKeys{{
    {"HeaderDigest", KeyId::header_digest, KeyKind::list, 0, 0, 0, IT | login_only},
    {"DataDigest", KeyId::data_digest, KeyKind::list, 0, 0, 0, IT | login_only},
    {"MaxConnections", KeyId::max_connections, KeyKind::number_min, 1, 65535, 1,
     IT | leading_only | not_discovery | login_only},
    {"SendTargets", KeyId::send_targets, KeyKind::text_only, 0, 0, 0, I},
    {"TargetName", KeyId::target_name, KeyKind::declarative, 0, 0, 0, IT | login_only},
    {"InitiatorName", KeyId::initiator_name, KeyKind::declarative, 0, 0, 0, I | login_only},
    {"TargetAlias", KeyId::target_alias, KeyKind::declarative, 0, 0, 0, T},
    {"InitiatorAlias", KeyId::initiator_alias, KeyKind::declarative, 0, 0, 0, I},
    {"TargetAddress", KeyId::target_address, KeyKind::declarative, 0, 0, 0, T},
    {"TargetPortalGroupTag", KeyId::target_portal_group_tag, KeyKind::declarative, 0, 65535, 0,
     T | login_only},
    {"InitialR2T", KeyId::initial_r2t, KeyKind::boolean_or, 0, 1, 1,
     IT | leading_only | not_discovery | login_only},
    {"ImmediateData", KeyId::immediate_data, KeyKind::boolean_and, 0, 1, 1,
     IT | leading_only | not_discovery | login_only},
    {"MaxRecvDataSegmentLength", KeyId::max_recv_data_segment_length, KeyKind::declarative, 512,
     kMax24, 8192, IT},
    {"MaxBurstLength", KeyId::max_burst_length, KeyKind::number_min, 512, kMax24, 262144,
     IT | leading_only | not_discovery | login_only},
    {"FirstBurstLength", KeyId::first_burst_length, KeyKind::number_min, 512, kMax24, 65536,
     IT | leading_only | not_discovery | login_only},
    {"DefaultTime2Wait", KeyId::default_time2wait, KeyKind::number_max, 0, 3600, 2,
     IT | leading_only | login_only},
    {"DefaultTime2Retain", KeyId::default_time2retain, KeyKind::number_min, 0, 3600, 20,
     IT | leading_only | login_only},
    {"MaxOutstandingR2T", KeyId::max_outstanding_r2t, KeyKind::number_min, 1, 65535, 1,
     IT | leading_only | not_discovery | login_only},
    {"DataPDUInOrder", KeyId::data_pdu_in_order, KeyKind::boolean_or, 0, 1, 1,
     IT | leading_only | not_discovery | login_only},
    {"DataSequenceInOrder", KeyId::data_sequence_in_order, KeyKind::boolean_or, 0, 1, 1,
     IT | leading_only | not_discovery | login_only},
    {"ErrorRecoveryLevel", KeyId::error_recovery_level, KeyKind::number_min, 0, 2, 0,
     IT | leading_only | login_only},
    {"SessionType", KeyId::session_type, KeyKind::declarative, 0, 0, 0, I | leading_only | login_only},
    {"AuthMethod", KeyId::auth_method, KeyKind::list, 0, 0, 0, IT | security | login_only},
    {"CHAP_A", KeyId::chap_a, KeyKind::auth, 0, 0, 0, IT | security | login_only},
    {"CHAP_I", KeyId::chap_i, KeyKind::auth, 0, 255, 0, IT | security | login_only},
    {"CHAP_C", KeyId::chap_c, KeyKind::auth, 0, 0, 0, IT | security | login_only},
    {"CHAP_N", KeyId::chap_n, KeyKind::auth, 0, 0, 0, IT | security | login_only},
    {"CHAP_R", KeyId::chap_r, KeyKind::auth, 0, 0, 0, IT | security | login_only},
    {"OFMarker", KeyId::of_marker, KeyKind::obsolete, 0, 1, 0, IT | login_only},
    {"IFMarker", KeyId::if_marker, KeyKind::obsolete, 0, 1, 0, IT | login_only},
    {"OFMarkInt", KeyId::of_mark_int, KeyKind::obsolete, 1, 65535, 2048, IT | login_only},
    {"IFMarkInt", KeyId::if_mark_int, KeyKind::obsolete, 1, 65535, 2048, IT | login_only},
}};

constexpr bool table_in_order() {
    for (size_t i = 0; i < kKeys.size(); ++i)
        if (size_t(kKeys[i].id) != i) return false;
    return true;
}
static_assert(table_in_order(), "kKeys must be indexed by KeyId");

bool key_char_ok(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '+' || c == '@' || c == '_';
}
}  // namespace

const char* text_error_name(TextError e) noexcept {
    switch (e) {
    case TextError::none: return "none";
    case TextError::not_terminated: return "text not NUL-terminated";
    case TextError::no_equals: return "key without '='";
    case TextError::empty_key: return "empty key";
    case TextError::key_too_long: return "key longer than 63 bytes";
    case TextError::bad_key_char: return "invalid character in key";
    case TextError::duplicate_key: return "key given twice";
    }
    return "?";
}

TextError parse_text(std::span<const uint8_t> data, std::vector<KeyValue>& out,
                     bool allow_duplicates) {
    out.clear();
    const char* p = reinterpret_cast<const char*>(data.data());
    size_t n = data.size();
    // Trailing NULs beyond the last pair's terminator (some initiators pad).
    while (n >= 2 && p[n - 1] == '\0' && p[n - 2] == '\0') --n;
    if (n == 1 && p[0] == '\0') n = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && p[end] != '\0') ++end;
        if (end == n) return TextError::not_terminated;
        const std::string_view pair(p + i, end - i);
        const size_t eq = pair.find('=');
        if (eq == std::string_view::npos) return TextError::no_equals;
        if (eq == 0) return TextError::empty_key;
        if (eq > kMaxKeyNameLength) return TextError::key_too_long;
        const std::string_view key = pair.substr(0, eq);
        for (char c : key)
            if (!key_char_ok(c)) return TextError::bad_key_char;
        if (!allow_duplicates)
            for (const auto& kv : out)
                if (kv.key == key) return TextError::duplicate_key;
        out.push_back({key, pair.substr(eq + 1)});
        i = end + 1;
    }
    return TextError::none;
}

void append_key(std::string& out, std::string_view key, std::string_view value) {
    out.append(key);
    out.push_back('=');
    out.append(value);
    out.push_back('\0');
}

const KeyDef* find_key(std::string_view name) noexcept {
    for (const auto& k : kKeys)
        if (k.name == name) return &k;
    return nullptr;
}

const KeyDef& key_def(KeyId id) noexcept { return kKeys[size_t(id)]; }
std::span<const KeyDef> all_keys() noexcept { return kKeys; }

bool parse_bool(std::string_view v, bool* out) noexcept {
    if (v == "Yes") return *out = true, true;
    if (v == "No") return *out = false, true;
    return false;
}

bool valid_iscsi_name(std::string_view v) noexcept {
    if (v.empty() || v.size() > kMaxNameLength) return false;
    if (!(v.starts_with("iqn.") || v.starts_with("eui.") || v.starts_with("naa."))) return false;
    for (unsigned char c : v)
        if (c < 0x21 || c == 0x7f || c == ',') return false;  // no spaces, controls, commas
    return true;
}

std::string build_send_targets(std::span<const SendTargetsEntry> targets, std::string_view value,
                               bool discovery_session, std::string_view session_target) {
    std::string out;
    for (const auto& t : targets) {
        bool want;
        if (discovery_session && value == "All")
            want = true;
        else if (!value.empty() && value != "All")
            want = t.name == value;
        else
            want = t.name == session_target;
        if (!want) continue;
        append_key(out, "TargetName", t.name);
        for (const auto& a : t.addresses) append_key(out, "TargetAddress", a);
    }
    return out;
}

}  // namespace strata::iscsi
