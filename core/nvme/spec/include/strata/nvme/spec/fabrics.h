// NVMe over Fabrics (NVMe Base Specification 2.0, 3.3 and 6; NVMe over Fabrics 1.1): the
// Fabrics command (opcode 7Fh) and its command types, Connect (command, 1024-byte data, response,
// status codes), Property Get/Set, Disconnect, the Discovery log page (LID 70h) and NVMe
// Qualified Name validation. Offsets agree with SPDK's include/spdk/nvmf_spec.h.
//
// Fabrics commands are 64-byte SQEs too: read a received Sqe as one of the structs below with
// std::bit_cast (all are trivially copyable, 64 bytes). Nothing here allocates.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <strata/nvme/spec/bits.h>
#include <strata/nvme/spec/queue.h>

namespace strata::nvme::spec {

inline constexpr uint8_t fabrics_opcode = 0x7F;

// Fabrics Command Type (FCTYPE, SQE byte 4).
enum class FabricsCommandType : uint8_t {
    property_set = 0x00,
    connect = 0x01,
    property_get = 0x04,
    auth_send = 0x05,
    auth_recv = 0x06,
    disconnect = 0x08,
};

// Common layout of every Fabrics command: byte 4 is FCTYPE, bytes 40..63 are type specific.
struct FabricsCommand {
    uint8_t opcode;  // 7Fh
    uint8_t reserved1;
    uint16_t cid;
    uint8_t fctype;
    std::array<uint8_t, 19> reserved2;
    SglDescriptor sgl1;  // 24: data (Connect data)
    std::array<uint8_t, 24> fabric_specific;
};
static_assert(sizeof(FabricsCommand) == 64);
static_assert(offsetof(FabricsCommand, cid) == 2 && offsetof(FabricsCommand, fctype) == 4);
static_assert(offsetof(FabricsCommand, sgl1) == 24 &&
              offsetof(FabricsCommand, fabric_specific) == 40);

// FCTYPE of an SQE known to carry opcode 7Fh.
constexpr uint8_t fabrics_type(const Sqe& sqe) noexcept {
    return static_cast<uint8_t>(sqe.nsid & 0xFF);  // byte 4 (CDW1 7:0)
}

// ---- Connect (FCTYPE 01h) ---------------------------------------------------------------------

inline constexpr uint16_t connect_recfmt = 0;     // the only record format defined
inline constexpr uint16_t admin_qid = 0;
inline constexpr uint16_t cntlid_dynamic = 0xFFFF;  // Connect data CNTLID: "any controller"
inline constexpr uint16_t cntlid_static_any = 0xFFFE;
inline constexpr uint16_t cntlid_min = 0x0001;
inline constexpr uint16_t cntlid_max = 0xFFEF;  // FFF0h..FFFFh are reserved

struct ConnectCommand {
    uint8_t opcode;  // 7Fh
    uint8_t reserved1;
    uint16_t cid;
    uint8_t fctype;  // 01h
    std::array<uint8_t, 19> reserved2;
    SglDescriptor sgl1;  // 24: the 1024-byte ConnectData
    uint16_t recfmt;     // 40: Record Format, 0
    uint16_t qid;        // 42: Queue ID (0 = admin)
    uint16_t sqsize;     // 44: Submission Queue Size, 0's based
    uint8_t cattr;       // 46: Connect Attributes (bit 2: disable SQ flow control)
    uint8_t reserved3;
    uint32_t kato;  // 48: Keep Alive Timeout in ms (admin queue only; 0 = disabled)
    std::array<uint8_t, 12> reserved4;

    constexpr bool disable_sq_flow_control() const noexcept { return (cattr & 0x4) != 0; }
};
static_assert(sizeof(ConnectCommand) == 64);
static_assert(offsetof(ConnectCommand, sgl1) == 24 && offsetof(ConnectCommand, recfmt) == 40);
static_assert(offsetof(ConnectCommand, qid) == 42 && offsetof(ConnectCommand, sqsize) == 44);
static_assert(offsetof(ConnectCommand, cattr) == 46 && offsetof(ConnectCommand, kato) == 48);

inline constexpr uint32_t nqn_field_bytes = 256;  // SUBNQN/HOSTNQN fields (NUL terminated)

// Connect command data, 1024 bytes.
struct ConnectData {
    std::array<uint8_t, 16> hostid;  // 0: Host Identifier (a UUID)
    uint16_t cntlid;                 // 16: FFFFh dynamic; else the admin queue's controller
    std::array<uint8_t, 238> reserved1;
    std::array<char, nqn_field_bytes> subnqn;   // 256
    std::array<char, nqn_field_bytes> hostnqn;  // 512
    std::array<uint8_t, 256> reserved2;         // 768
};
static_assert(sizeof(ConnectData) == 1024);
static_assert(offsetof(ConnectData, cntlid) == 16 && offsetof(ConnectData, subnqn) == 256);
static_assert(offsetof(ConnectData, hostnqn) == 512 && offsetof(ConnectData, reserved2) == 768);
inline constexpr uint32_t connect_data_bytes = 1024;

// An NQN field's text: up to the first NUL, never past the field (a field without NUL yields
// all 256 bytes, which no valid NQN has, so validation rejects it).
template <size_t N>
constexpr std::string_view nqn_field(const std::array<char, N>& field) noexcept {
    size_t len = 0;
    while (len < N && field[len] != '\0') ++len;
    return {field.data(), len};
}

// Connect response DW0: on success CNTLID (15:0) and AUTHREQ (31:16); on "invalid parameters"
// (SC 82h) IPO (15:0, byte offset of the bad field) and IATTR (23:16: 0 command, 1 data).
struct ConnectResponseDw0 {
    using value_type = uint32_t;
    value_type raw = 0;
    STRATA_NVME_FIELD(cntlid, 0, 16)
    STRATA_NVME_FIELD(authreq, 16, 16)
    STRATA_NVME_FIELD(ipo, 0, 16)
    STRATA_NVME_FIELD(iattr, 16, 8)
};
static_assert(sizeof(ConnectResponseDw0) == 4);
enum class ConnectInvalidAttr : uint8_t { command = 0, data = 1 };

// Command-specific status codes of Connect (SCT 1).
enum class FabricsStatus : uint8_t {
    incompatible_format = 0x80,
    controller_busy = 0x81,
    invalid_param = 0x82,
    restart_discovery = 0x83,
    invalid_host = 0x84,
    invalid_queue_type = 0x85,  // NVMe 2.0
    log_page_discovery_restart = 0x90,
    auth_required = 0x91,
};
constexpr std::string_view fabrics_status_name(uint8_t sc) noexcept {
    switch (sc) {
        case 0x80: return "CONNECT INCOMPATIBLE FORMAT";
        case 0x81: return "CONNECT CONTROLLER BUSY";
        case 0x82: return "CONNECT INVALID PARAMETERS";
        case 0x83: return "CONNECT RESTART DISCOVERY";
        case 0x84: return "CONNECT INVALID HOST";
        case 0x85: return "INVALID QUEUE TYPE";
        case 0x90: return "DISCOVERY RESTART";
        case 0x91: return "AUTHENTICATION REQUIRED";
        default: return "UNKNOWN";
    }
}

// ---- Property Get (04h) / Property Set (00h) --------------------------------------------------

// ATTRIB bits 2:0: property size.
enum class PropertySize : uint8_t { four_bytes = 0, eight_bytes = 1 };

struct PropertySetCommand {
    uint8_t opcode;
    uint8_t reserved1;
    uint16_t cid;
    uint8_t fctype;  // 00h
    std::array<uint8_t, 35> reserved2;
    uint8_t attrib;  // 40: bits 2:0 size
    std::array<uint8_t, 3> reserved3;
    uint32_t ofst;   // 44: property offset (the controller register offset)
    uint64_t value;  // 48
    std::array<uint8_t, 8> reserved4;

    constexpr PropertySize size() const noexcept { return static_cast<PropertySize>(attrib & 7); }
};
static_assert(sizeof(PropertySetCommand) == 64);
static_assert(offsetof(PropertySetCommand, attrib) == 40 &&
              offsetof(PropertySetCommand, ofst) == 44 &&
              offsetof(PropertySetCommand, value) == 48);

struct PropertyGetCommand {
    uint8_t opcode;
    uint8_t reserved1;
    uint16_t cid;
    uint8_t fctype;  // 04h
    std::array<uint8_t, 35> reserved2;
    uint8_t attrib;  // 40
    std::array<uint8_t, 3> reserved3;
    uint32_t ofst;  // 44
    std::array<uint8_t, 16> reserved4;

    constexpr PropertySize size() const noexcept { return static_cast<PropertySize>(attrib & 7); }
};
static_assert(sizeof(PropertyGetCommand) == 64);
static_assert(offsetof(PropertyGetCommand, attrib) == 40 &&
              offsetof(PropertyGetCommand, ofst) == 44);
// Property Get response: the value in CQE DW0 (and DW1 for 8-byte properties).

// ---- Disconnect (08h) -------------------------------------------------------------------------

struct DisconnectCommand {
    uint8_t opcode;
    uint8_t reserved1;
    uint16_t cid;
    uint8_t fctype;  // 08h
    std::array<uint8_t, 35> reserved2;
    uint16_t recfmt;  // 40
    std::array<uint8_t, 22> reserved3;
};
static_assert(sizeof(DisconnectCommand) == 64);
static_assert(offsetof(DisconnectCommand, recfmt) == 40);

// ---- Discovery log page (LID 70h) -------------------------------------------------------------

inline constexpr uint8_t log_page_discovery = 0x70;

enum class TransportType : uint8_t {
    rdma = 1,
    fc = 2,
    tcp = 3,
    intra_host = 0xFE,
};
enum class AddressFamily : uint8_t {
    ipv4 = 1,
    ipv6 = 2,
    ib = 3,
    fc = 4,
    intra_host = 0xFE,
};
enum class SubsystemType : uint8_t {
    discovery_referral = 1,  // a (referral to another) discovery subsystem
    nvme = 2,
    discovery_current = 3,  // the discovery subsystem answering
};
// TREQ bits 1:0 secure channel; bit 2 "SQ flow control disable supported".
enum class SecureChannel : uint8_t { not_specified = 0, required = 1, not_required = 2 };
inline constexpr uint8_t treq_disable_sq_flow = 0x4;
// TSAS for TCP: SECTYPE (byte 0).
enum class TcpSecurityType : uint8_t { none = 0, tls12 = 1, tls13 = 2 };

inline constexpr uint32_t discovery_trsvcid_bytes = 32;
inline constexpr uint32_t discovery_traddr_bytes = 256;

// One Discovery Log Page Entry, 1024 bytes. Text fields are space padded (TRSVCID, TRADDR) or
// NUL terminated (SUBNQN).
struct DiscoveryLogEntry {
    uint8_t trtype;  // 0
    uint8_t adrfam;  // 1
    uint8_t subtype;
    uint8_t treq;
    uint16_t portid;  // 4
    uint16_t cntlid;  // 6: FFFFh (dynamic controllers)
    uint16_t asqsz;   // 8: admin max SQ size
    uint16_t eflags;  // 10
    std::array<uint8_t, 20> reserved1;
    std::array<char, discovery_trsvcid_bytes> trsvcid;  // 32
    std::array<uint8_t, 192> reserved2;
    std::array<char, nqn_field_bytes> subnqn;         // 256
    std::array<char, discovery_traddr_bytes> traddr;  // 512
    std::array<uint8_t, 256> tsas;                    // 768
};
static_assert(sizeof(DiscoveryLogEntry) == 1024);
static_assert(offsetof(DiscoveryLogEntry, portid) == 4 &&
              offsetof(DiscoveryLogEntry, cntlid) == 6 && offsetof(DiscoveryLogEntry, asqsz) == 8);
static_assert(offsetof(DiscoveryLogEntry, trsvcid) == 32 &&
              offsetof(DiscoveryLogEntry, subnqn) == 256);
static_assert(offsetof(DiscoveryLogEntry, traddr) == 512 &&
              offsetof(DiscoveryLogEntry, tsas) == 768);

// Discovery Log Page header, 1024 bytes; NUMREC entries follow at byte 1024.
struct DiscoveryLogHeader {
    uint64_t genctr;  // 0: Generation Counter, bumped on every change
    uint64_t numrec;  // 8
    uint16_t recfmt;  // 16
    std::array<uint8_t, 1006> reserved;
};
static_assert(sizeof(DiscoveryLogHeader) == 1024);
static_assert(offsetof(DiscoveryLogHeader, numrec) == 8 &&
              offsetof(DiscoveryLogHeader, recfmt) == 16);

// Copies `text` into a fixed field padded with `pad` (truncating if longer).
template <size_t N>
constexpr void set_padded(std::array<char, N>& field, std::string_view text,
                          char pad = ' ') noexcept {
    for (size_t i = 0; i < N; ++i) field[i] = i < text.size() ? text[i] : pad;
}

// ---- NVMe Qualified Names (Base Specification 2.0, 4.5) ---------------------------------------

inline constexpr std::string_view discovery_nqn = "nqn.2014-08.org.nvmexpress.discovery";
inline constexpr std::string_view nqn_uuid_prefix = "nqn.2014-08.org.nvmexpress:uuid:";
inline constexpr size_t nqn_max_bytes = 223;  // not counting the NUL
inline constexpr size_t nqn_min_bytes = 11;   // "nqn.yyyy-mm"
inline constexpr size_t domain_label_max_bytes = 63;

enum class NqnError : uint8_t {
    ok = 0,
    too_long,
    too_short,
    no_prefix,          // does not start with "nqn."
    bad_date,           // not nqn.yyyy-mm.
    bad_uuid,           // the uuid form with a malformed UUID
    no_user_string,     // no ':' followed by a name
    bad_domain,         // reverse domain labels: letter first, letters/digits/'-', no '-' last
    label_too_long,     // a domain label over 63 bytes
    bad_utf8,           // the user string is not UTF-8
};
constexpr std::string_view nqn_error_text(NqnError e) noexcept {
    switch (e) {
        case NqnError::ok: return "valid";
        case NqnError::too_long: return "longer than 223 bytes";
        case NqnError::too_short: return "shorter than 11 bytes";
        case NqnError::no_prefix: return "does not start with \"nqn.\"";
        case NqnError::bad_date: return "invalid date code (nqn.yyyy-mm.)";
        case NqnError::bad_uuid: return "invalid UUID in a uuid-form NQN";
        case NqnError::no_user_string: return "no ':' followed by a user specified name";
        case NqnError::bad_domain: return "invalid reverse domain name";
        case NqnError::label_too_long: return "a domain label is longer than 63 bytes";
        case NqnError::bad_utf8: return "the user specified name is not UTF-8";
    }
    return "invalid";
}

namespace detail {
constexpr bool nqn_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool nqn_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool nqn_hex(char c) noexcept {
    return nqn_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
constexpr bool valid_uuid_text(std::string_view s) noexcept {
    if (s.size() != 36) return false;
    for (size_t i = 0; i < 36; ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !nqn_hex(s[i])) return false;
    }
    return true;
}
constexpr bool valid_utf8(std::string_view s) noexcept {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<uint8_t>(s[i]);
        size_t n = 0;
        uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size()) return false;
            const auto cc = static_cast<uint8_t>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}
}  // namespace detail

// Validates an NQN the way SPDK's nvmf_nqn_is_valid does: the discovery NQN; the uuid form
// (nqn.2014-08.org.nvmexpress:uuid:<36-char UUID>); or nqn.yyyy-mm.<reverse domain>:<UTF-8
// name>. At most 223 bytes.
constexpr NqnError validate_nqn(std::string_view nqn) noexcept {
    if (nqn.size() > nqn_max_bytes) return NqnError::too_long;
    if (nqn.size() < nqn_min_bytes) return NqnError::too_short;
    if (nqn.substr(0, 4) != "nqn.") return NqnError::no_prefix;
    if (nqn == discovery_nqn) return NqnError::ok;
    if (nqn.substr(0, nqn_uuid_prefix.size()) == nqn_uuid_prefix)
        return detail::valid_uuid_text(nqn.substr(nqn_uuid_prefix.size())) ? NqnError::ok
                                                                            : NqnError::bad_uuid;
    if (nqn.size() < 12 ||
        !(detail::nqn_digit(nqn[4]) && detail::nqn_digit(nqn[5]) && detail::nqn_digit(nqn[6]) &&
          detail::nqn_digit(nqn[7]) && nqn[8] == '-' && detail::nqn_digit(nqn[9]) &&
          detail::nqn_digit(nqn[10]) && nqn[11] == '.'))
        return NqnError::bad_date;
    const size_t colon = nqn.find(':');
    if (colon == std::string_view::npos || colon + 1 >= nqn.size())
        return NqnError::no_user_string;
    // Reverse domain in [12, colon): labels separated by '.', each starting with a letter,
    // continuing with letters, digits or '-', not ending with '-'.
    enum { want_letter, any, after_hyphen } state = want_letter;
    size_t label = 0;
    for (size_t i = 12; i < colon; ++i) {
        const char c = nqn[i];
        if (label > domain_label_max_bytes) return NqnError::label_too_long;
        switch (state) {
            case want_letter:
                if (!detail::nqn_alpha(c)) return NqnError::bad_domain;
                state = any;
                ++label;
                break;
            case after_hyphen:
            case any:
                if (detail::nqn_alpha(c) || detail::nqn_digit(c)) {
                    state = any;
                    ++label;
                } else if (c == '-') {
                    if (i == colon - 1) return NqnError::bad_domain;
                    state = after_hyphen;
                    ++label;
                } else if (c == '.' && state == any) {
                    state = want_letter;
                    label = 0;
                } else {
                    return NqnError::bad_domain;
                }
                break;
        }
    }
    if (label > domain_label_max_bytes) return NqnError::label_too_long;
    if (state != any) return NqnError::bad_domain;  // empty domain, or ends with '.' or '-'
    if (!detail::valid_utf8(nqn.substr(colon + 1))) return NqnError::bad_utf8;
    return NqnError::ok;
}
constexpr bool nqn_is_valid(std::string_view nqn) noexcept {
    return validate_nqn(nqn) == NqnError::ok;
}

static_assert(nqn_is_valid(discovery_nqn));
static_assert(nqn_is_valid("nqn.2016-06.io.spdk:cnode1"));
static_assert(nqn_is_valid("nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"));
static_assert(!nqn_is_valid("nqn.2016-06.io.spdk"));
static_assert(!nqn_is_valid("iqn.2016-06.io.spdk:x"));

}  // namespace strata::nvme::spec
