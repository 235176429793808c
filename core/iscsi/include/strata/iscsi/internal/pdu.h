// iSCSI PDU formats (RFC 7143 §11): the 48-byte Basic Header Segment of every opcode, the
// Additional Header Segments, padding and digests; the target's PDU receiver and builder.
//
// Every multi-byte field is big-endian on the wire. The structs below are byte images (only
// uint8_t members, alignment 1), so a header is read by memcpy or reinterpret over any buffer
// and every field goes through the Be16/Be24/Be32/Be64 accessors; offsets are static_asserted
// against the RFC's figures.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include <strata/base/iov.h>

namespace strata::iscsi {

// ---- big-endian field types ---------------------------------------------------------------
struct Be16 {
    uint8_t b[2];
    constexpr uint16_t get() const noexcept { return uint16_t(b[0] << 8 | b[1]); }
    constexpr void set(uint16_t v) noexcept { b[0] = uint8_t(v >> 8), b[1] = uint8_t(v); }
};
struct Be24 {
    uint8_t b[3];
    constexpr uint32_t get() const noexcept { return uint32_t(b[0]) << 16 | uint32_t(b[1]) << 8 | b[2]; }
    constexpr void set(uint32_t v) noexcept {
        b[0] = uint8_t(v >> 16), b[1] = uint8_t(v >> 8), b[2] = uint8_t(v);
    }
};
struct Be32 {
    uint8_t b[4];
    constexpr uint32_t get() const noexcept {
        return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
    }
    constexpr void set(uint32_t v) noexcept {
        b[0] = uint8_t(v >> 24), b[1] = uint8_t(v >> 16), b[2] = uint8_t(v >> 8), b[3] = uint8_t(v);
    }
};
struct Be64 {
    uint8_t b[8];
    constexpr uint64_t get() const noexcept {
        uint64_t v = 0;
        for (uint8_t x : b) v = v << 8 | x;
        return v;
    }
    constexpr void set(uint64_t v) noexcept {
        for (int i = 7; i >= 0; --i, v >>= 8) b[i] = uint8_t(v);
    }
};

// ---- opcodes (§11.1.1) ----------------------------------------------------------------------
enum class Opcode : uint8_t {
    // initiator
    nop_out = 0x00,
    scsi_cmd = 0x01,
    task_mgmt_req = 0x02,
    login_req = 0x03,
    text_req = 0x04,
    data_out = 0x05,
    logout_req = 0x06,
    snack = 0x10,
    // target
    nop_in = 0x20,
    scsi_rsp = 0x21,
    task_mgmt_rsp = 0x22,
    login_rsp = 0x23,
    text_rsp = 0x24,
    data_in = 0x25,
    logout_rsp = 0x26,
    r2t = 0x31,
    async_msg = 0x32,
    reject = 0x3f,
};
bool opcode_from_initiator(uint8_t op) noexcept;  // one of the eight initiator opcodes
bool opcode_from_target(uint8_t op) noexcept;     // one of the ten target opcodes
const char* opcode_name(uint8_t op) noexcept;     // "SCSI Command", "?" if unknown

inline constexpr uint8_t kOpcodeMask = 0x3f;
inline constexpr uint8_t kImmediateBit = 0x40;  // byte 0: I
inline constexpr uint8_t kFinalBit = 0x80;      // byte 1: F
inline constexpr uint32_t kBhsSize = 48;
inline constexpr uint32_t kDigestSize = 4;
inline constexpr uint32_t kMaxDataSegmentLength = 0xffffff;  // 24 bits
inline constexpr uint32_t kReservedTag = 0xffffffff;

constexpr uint32_t pad4(uint32_t n) noexcept { return (4 - (n & 3)) & 3; }

// ---- the BHS layouts (§11.2 .. §11.20) -------------------------------------------------------
// Bytes 0..19 are common: opcode, opcode-specific flags, TotalAHSLength (in 4-byte words),
// DataSegmentLength (24 bits), LUN or opcode-specific, Initiator Task Tag.
struct Bhs {
    uint8_t opcode;  // .I opcode
    uint8_t flags;
    uint8_t rsvd2[2];
    uint8_t total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt;
    uint8_t specific[28];
    Opcode op() const noexcept { return Opcode(opcode & kOpcodeMask); }
    bool immediate() const noexcept { return opcode & kImmediateBit; }
};

struct NopOut {  // §11.18
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, cmd_sn, exp_stat_sn;
    uint8_t rsvd32[16];
};
struct NopIn {  // §11.19
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn;
    uint8_t rsvd36[12];
};
namespace scsi_flags {  // SCSI Command byte 1
inline constexpr uint8_t final = 0x80, read = 0x40, write = 0x20, attr_mask = 0x07;
}
struct ScsiCmd {  // §11.3
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, expected_data_transfer_length, cmd_sn, exp_stat_sn;
    uint8_t cdb[16];
};
namespace rsp_flags {  // SCSI Response byte 1 (and Data-In's O/U)
inline constexpr uint8_t bidi_overflow = 0x10, bidi_underflow = 0x08, overflow = 0x04,
                         underflow = 0x02;
}
struct ScsiRsp {  // §11.4
    uint8_t opcode, flags, response, status, total_ahs_length;
    Be24 data_segment_length;
    uint8_t rsvd8[8];
    Be32 itt, snack_tag, stat_sn, exp_cmd_sn, max_cmd_sn, exp_data_sn,
        bidi_read_residual_count, residual_count;
};
struct TaskMgmtReq {  // §11.5
    uint8_t opcode, function, rsvd2[2], total_ahs_length;  // function: byte 1 & 0x7f
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, referenced_task_tag, cmd_sn, exp_stat_sn, ref_cmd_sn, exp_data_sn;
    uint8_t rsvd40[8];
};
struct TaskMgmtRsp {  // §11.6
    uint8_t opcode, flags, response, rsvd3, total_ahs_length;
    Be24 data_segment_length;
    uint8_t rsvd8[8];
    Be32 itt, rsvd20, stat_sn, exp_cmd_sn, max_cmd_sn;
    uint8_t rsvd36[12];
};
struct DataOut {  // §11.7
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, rsvd24, exp_stat_sn, rsvd32, data_sn, buffer_offset, rsvd44;
};
namespace data_in_flags {
inline constexpr uint8_t final = 0x80, ack = 0x40, overflow = 0x04, underflow = 0x02,
                         status = 0x01;
}
struct DataIn {  // §11.7
    uint8_t opcode, flags, rsvd2, status, total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, data_sn, buffer_offset, residual_count;
};
struct R2t {  // §11.8
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, r2t_sn, buffer_offset,
        desired_data_transfer_length;
};
struct AsyncMsg {  // §11.9
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt /* 0xffffffff */, rsvd20, stat_sn, exp_cmd_sn, max_cmd_sn;
    uint8_t async_event, async_vcode;
    Be16 parameter1, parameter2, parameter3;
    uint8_t rsvd44[4];
};
namespace text_flags {  // Text and Login byte 1
inline constexpr uint8_t final = 0x80, cont = 0x40;
}
struct TextReq {  // §11.10
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, cmd_sn, exp_stat_sn;
    uint8_t rsvd32[16];
};
struct TextRsp {  // §11.11
    uint8_t opcode, flags, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn;
    uint8_t rsvd36[12];
};
namespace login_flags {  // Login byte 1: T C . . CSG(2) NSG(2)
inline constexpr uint8_t transit = 0x80, cont = 0x40;
constexpr uint8_t csg(uint8_t f) noexcept { return (f >> 2) & 3; }
constexpr uint8_t nsg(uint8_t f) noexcept { return f & 3; }
}  // namespace login_flags
struct LoginReq {  // §11.12
    uint8_t opcode, flags, version_max, version_min, total_ahs_length;
    Be24 data_segment_length;
    uint8_t isid[6];
    Be16 tsih;
    Be32 itt;
    Be16 cid;
    uint8_t rsvd22[2];
    Be32 cmd_sn, exp_stat_sn;
    uint8_t rsvd32[16];
};
struct LoginRsp {  // §11.13
    uint8_t opcode, flags, version_max, version_active, total_ahs_length;
    Be24 data_segment_length;
    uint8_t isid[6];
    Be16 tsih;
    Be32 itt, rsvd20, stat_sn, exp_cmd_sn, max_cmd_sn;
    uint8_t status_class, status_detail;
    uint8_t rsvd38[10];
};
struct LogoutReq {  // §11.14
    uint8_t opcode, reason_code, rsvd2[2], total_ahs_length;  // reason: byte 1 & 0x7f
    Be24 data_segment_length;
    uint8_t rsvd8[8];
    Be32 itt;
    Be16 cid;
    uint8_t rsvd22[2];
    Be32 cmd_sn, exp_stat_sn;
    uint8_t rsvd32[16];
};
struct LogoutRsp {  // §11.15
    uint8_t opcode, flags, response, rsvd3, total_ahs_length;
    Be24 data_segment_length;
    uint8_t rsvd8[8];
    Be32 itt, rsvd20, stat_sn, exp_cmd_sn, max_cmd_sn, rsvd36;
    Be16 time2wait, time2retain;
    uint8_t rsvd44[4];
};
struct Snack {  // §11.16
    uint8_t opcode, flags /* F + type(4) */, rsvd2[2], total_ahs_length;
    Be24 data_segment_length;
    Be64 lun;
    Be32 itt, ttt, rsvd24, exp_stat_sn, rsvd32, beg_run, run_length, rsvd44;
};
enum class RejectReason : uint8_t {
    data_digest_error = 0x02,
    snack_reject = 0x03,
    protocol_error = 0x04,
    command_not_supported = 0x05,
    immediate_command_reject = 0x06,
    task_in_progress = 0x07,
    invalid_data_ack = 0x08,
    invalid_pdu_field = 0x09,
    long_op_reject = 0x0a,
    deprecated = 0x0b,
    waiting_for_logout = 0x0c,
};
struct Reject {  // §11.17; the data segment is the rejected PDU's header
    uint8_t opcode, flags, reason, rsvd3, total_ahs_length;
    Be24 data_segment_length;
    uint8_t rsvd8[8];
    Be32 itt /* 0xffffffff */, rsvd20, stat_sn, exp_cmd_sn, max_cmd_sn, data_sn_or_r2t_sn;
    uint8_t rsvd40[8];
};

#define STRATA_ISCSI_BHS(T)                                                              \
    static_assert(sizeof(T) == kBhsSize && alignof(T) == 1);                             \
    static_assert(offsetof(T, opcode) == 0 && offsetof(T, total_ahs_length) == 4 &&      \
                  offsetof(T, data_segment_length) == 5 && offsetof(T, itt) == 16)
STRATA_ISCSI_BHS(Bhs);
STRATA_ISCSI_BHS(NopOut);
STRATA_ISCSI_BHS(NopIn);
STRATA_ISCSI_BHS(ScsiCmd);
STRATA_ISCSI_BHS(ScsiRsp);
STRATA_ISCSI_BHS(TaskMgmtReq);
STRATA_ISCSI_BHS(TaskMgmtRsp);
STRATA_ISCSI_BHS(DataOut);
STRATA_ISCSI_BHS(DataIn);
STRATA_ISCSI_BHS(R2t);
STRATA_ISCSI_BHS(AsyncMsg);
STRATA_ISCSI_BHS(TextReq);
STRATA_ISCSI_BHS(TextRsp);
STRATA_ISCSI_BHS(LoginReq);
STRATA_ISCSI_BHS(LoginRsp);
STRATA_ISCSI_BHS(LogoutReq);
STRATA_ISCSI_BHS(LogoutRsp);
STRATA_ISCSI_BHS(Snack);
STRATA_ISCSI_BHS(Reject);
#undef STRATA_ISCSI_BHS
static_assert(offsetof(NopOut, lun) == 8 && offsetof(NopOut, ttt) == 20 &&
              offsetof(NopOut, cmd_sn) == 24 && offsetof(NopOut, exp_stat_sn) == 28);
static_assert(offsetof(NopIn, ttt) == 20 && offsetof(NopIn, stat_sn) == 24 &&
              offsetof(NopIn, exp_cmd_sn) == 28 && offsetof(NopIn, max_cmd_sn) == 32);
static_assert(offsetof(ScsiCmd, lun) == 8 && offsetof(ScsiCmd, expected_data_transfer_length) == 20 &&
              offsetof(ScsiCmd, cmd_sn) == 24 && offsetof(ScsiCmd, exp_stat_sn) == 28 &&
              offsetof(ScsiCmd, cdb) == 32);
static_assert(offsetof(ScsiRsp, response) == 2 && offsetof(ScsiRsp, status) == 3 &&
              offsetof(ScsiRsp, snack_tag) == 20 && offsetof(ScsiRsp, stat_sn) == 24 &&
              offsetof(ScsiRsp, exp_cmd_sn) == 28 && offsetof(ScsiRsp, max_cmd_sn) == 32 &&
              offsetof(ScsiRsp, exp_data_sn) == 36 &&
              offsetof(ScsiRsp, bidi_read_residual_count) == 40 &&
              offsetof(ScsiRsp, residual_count) == 44);
static_assert(offsetof(TaskMgmtReq, function) == 1 && offsetof(TaskMgmtReq, lun) == 8 &&
              offsetof(TaskMgmtReq, referenced_task_tag) == 20 &&
              offsetof(TaskMgmtReq, cmd_sn) == 24 && offsetof(TaskMgmtReq, exp_stat_sn) == 28 &&
              offsetof(TaskMgmtReq, ref_cmd_sn) == 32 && offsetof(TaskMgmtReq, exp_data_sn) == 36);
static_assert(offsetof(TaskMgmtRsp, response) == 2 && offsetof(TaskMgmtRsp, stat_sn) == 24 &&
              offsetof(TaskMgmtRsp, exp_cmd_sn) == 28 && offsetof(TaskMgmtRsp, max_cmd_sn) == 32);
static_assert(offsetof(DataOut, lun) == 8 && offsetof(DataOut, ttt) == 20 &&
              offsetof(DataOut, exp_stat_sn) == 28 && offsetof(DataOut, data_sn) == 36 &&
              offsetof(DataOut, buffer_offset) == 40);
static_assert(offsetof(DataIn, status) == 3 && offsetof(DataIn, lun) == 8 &&
              offsetof(DataIn, ttt) == 20 && offsetof(DataIn, stat_sn) == 24 &&
              offsetof(DataIn, exp_cmd_sn) == 28 && offsetof(DataIn, max_cmd_sn) == 32 &&
              offsetof(DataIn, data_sn) == 36 && offsetof(DataIn, buffer_offset) == 40 &&
              offsetof(DataIn, residual_count) == 44);
static_assert(offsetof(R2t, ttt) == 20 && offsetof(R2t, stat_sn) == 24 &&
              offsetof(R2t, r2t_sn) == 36 && offsetof(R2t, buffer_offset) == 40 &&
              offsetof(R2t, desired_data_transfer_length) == 44);
static_assert(offsetof(AsyncMsg, stat_sn) == 24 && offsetof(AsyncMsg, async_event) == 36 &&
              offsetof(AsyncMsg, async_vcode) == 37 && offsetof(AsyncMsg, parameter1) == 38 &&
              offsetof(AsyncMsg, parameter2) == 40 && offsetof(AsyncMsg, parameter3) == 42);
static_assert(offsetof(TextReq, ttt) == 20 && offsetof(TextReq, cmd_sn) == 24 &&
              offsetof(TextReq, exp_stat_sn) == 28);
static_assert(offsetof(TextRsp, ttt) == 20 && offsetof(TextRsp, stat_sn) == 24 &&
              offsetof(TextRsp, exp_cmd_sn) == 28 && offsetof(TextRsp, max_cmd_sn) == 32);
static_assert(offsetof(LoginReq, version_max) == 2 && offsetof(LoginReq, version_min) == 3 &&
              offsetof(LoginReq, isid) == 8 && offsetof(LoginReq, tsih) == 14 &&
              offsetof(LoginReq, cid) == 20 && offsetof(LoginReq, cmd_sn) == 24 &&
              offsetof(LoginReq, exp_stat_sn) == 28);
static_assert(offsetof(LoginRsp, version_active) == 3 && offsetof(LoginRsp, isid) == 8 &&
              offsetof(LoginRsp, tsih) == 14 && offsetof(LoginRsp, stat_sn) == 24 &&
              offsetof(LoginRsp, exp_cmd_sn) == 28 && offsetof(LoginRsp, max_cmd_sn) == 32 &&
              offsetof(LoginRsp, status_class) == 36 && offsetof(LoginRsp, status_detail) == 37);
static_assert(offsetof(LogoutReq, reason_code) == 1 && offsetof(LogoutReq, cid) == 20 &&
              offsetof(LogoutReq, cmd_sn) == 24 && offsetof(LogoutReq, exp_stat_sn) == 28);
static_assert(offsetof(LogoutRsp, response) == 2 && offsetof(LogoutRsp, stat_sn) == 24 &&
              offsetof(LogoutRsp, time2wait) == 40 && offsetof(LogoutRsp, time2retain) == 42);
static_assert(offsetof(Snack, ttt) == 20 && offsetof(Snack, exp_stat_sn) == 28 &&
              offsetof(Snack, beg_run) == 36 && offsetof(Snack, run_length) == 40);
static_assert(offsetof(Reject, reason) == 2 && offsetof(Reject, stat_sn) == 24 &&
              offsetof(Reject, exp_cmd_sn) == 28 && offsetof(Reject, max_cmd_sn) == 32 &&
              offsetof(Reject, data_sn_or_r2t_sn) == 36);

template <class T>
T bhs_as(const uint8_t* bhs) noexcept {  // a copy: alignment never matters
    static_assert(sizeof(T) == kBhsSize);
    T t;
    std::memcpy(&t, bhs, sizeof(T));
    return t;
}

// ---- AHS (§11.2.2) ----------------------------------------------------------------------------
// Each AHS: AHSLength (2 bytes: the length excluding AHSLength and AHSType, so it counts the
// AHS-Specific byte and what follows), AHSType (1), AHS-Specific (1), data; padded to 4 bytes.
// Extended CDB: AHSLength = CDB length - 15 (one reserved byte, then CDB bytes 16..).
// Expected Bidirectional Read Data Length: AHSLength = 5 (reserved byte, 4-byte length).
enum class AhsType : uint8_t { extended_cdb = 1, bidi_read_length = 2 };
inline constexpr uint32_t kMaxCdbLength = 16 + 255 * 4;  // BHS CDB + largest extended CDB

struct ParsedAhs {
    // Extended CDB: the bytes beyond the BHS's 16 (cdb = BHS cdb || extended_cdb).
    const uint8_t* extended_cdb = nullptr;
    uint32_t extended_cdb_length = 0;
    bool has_bidi_read_length = false;
    uint32_t bidi_read_length = 0;
};
// Walks the AHS area (total_ahs_length * 4 bytes). False for a malformed area: a segment
// running past the end, AHSLength 0, an unknown type, or an AHS type given twice.
bool parse_ahs(const uint8_t* ahs, uint32_t len, ParsedAhs* out) noexcept;

// ---- receiver ---------------------------------------------------------------------------------
// Limits the receiver checks. The connection updates them between events (digests and
// MaxRecvDataSegmentLength take effect on the first PDU after the Login Final-Response).
struct RecvConfig {
    bool header_digest = false;
    bool data_digest = false;
    // Our declared MaxRecvDataSegmentLength (8192 during login, RFC 7143 §13.12).
    uint32_t max_recv_data_segment_length = 8192;
    uint32_t max_ahs_bytes = 255 * 4;  // TotalAHSLength limit, in bytes
    // Which side's PDUs are accepted: false (the target's receiver) the initiator opcodes,
    // true (an initiator's receiver, core/iscsi/testing) the target opcodes.
    bool from_target = false;
    // Data digests of PDUs carrying at least this many data bytes are not computed here but
    // left to the caller (the target verifies them through the accel framework): at the pdu
    // event data_digest_deferred(), padding() and data_digest(). 0: every data digest is
    // checked here, as the bytes arrive.
    uint32_t data_digest_defer_min = 0;
};

enum class RecvEvent : uint8_t { none, header, pdu, error };

// Why the receiver failed. All are fatal for the connection (RFC 7143 §7.2: a format error
// or a header digest error at ERL 0 ends the connection); a data digest error is NOT here:
// the PDU is delivered with data_digest_ok() false and the connection sends a Reject (§7.8).
enum class RecvError : uint8_t {
    none,
    bad_opcode,           // not an opcode of the sending side (RecvConfig::from_target)
    bad_ahs,              // TotalAHSLength over the limit or AHS malformed
    data_too_long,        // DataSegmentLength > MaxRecvDataSegmentLength
    header_digest,        // header digest mismatch
    unexpected_data,      // data on an opcode that carries none (SNACK, Logout, TMF, ...)
};
const char* recv_error_name(RecvError e) noexcept;

// The incremental PDU receiver (the target's; an initiator's with RecvConfig::from_target): a pure state machine from bytes to PDUs (no I/O, no
// allocation, no clock). feed() consumes bytes and stops at each event:
//   header  a whole, checked header (BHS + AHS, header digest verified) of a PDU with data.
//           The caller says where the data goes: set_data_destination(iov) or discard_data();
//           feed() reports header again until it does.
//   pdu     a whole PDU: header(), the data at its destination, data_digest_ok().
//   error   fatal (error()); every later feed() reports it again and consumes nothing.
// Padding after the data is consumed and never stored.
class PduReceiver {
public:
    using Event = RecvEvent;  // for sock::receive_pdus
    static constexpr uint32_t kMaxHeader = kBhsSize + 255 * 4 + kDigestSize;

    explicit PduReceiver(const RecvConfig& config = {}) noexcept : cfg_(config) {}
    RecvConfig& config() noexcept { return cfg_; }
    const RecvConfig& config() const noexcept { return cfg_; }

    size_t feed(const uint8_t* data, size_t len, RecvEvent* event) noexcept;
    void set_data_destination(const iovec* iov, uint32_t iovcnt) noexcept;
    void discard_data() noexcept;

    // Direct placement (as core/nvmf's receiver): while in_data(), the connection may read from
    // the socket straight into the destination: data_iov_remaining() gives the unfilled part of
    // this PDU's data (up to max iovecs), then data_received(n) accounts for n bytes placed
    // there (digested in place); the next feed(), even of 0 bytes, moves on.
    bool in_data() const noexcept {
        return phase_ == Phase::data && dest_.placing() && got_ < data_len_;
    }
    uint32_t data_iov_remaining(iovec* out, uint32_t max) const noexcept {
        return in_data() ? dest_.remaining(out, max, data_len_ - got_) : 0;
    }
    void data_received(size_t n) noexcept {
        dest_.placed(n);
        got_ += uint32_t(n);
    }

    const uint8_t* header() const noexcept { return hdr_.data(); }  // BHS then AHS
    const Bhs& bhs() const noexcept { return *reinterpret_cast<const Bhs*>(hdr_.data()); }
    const uint8_t* ahs() const noexcept { return hdr_.data() + kBhsSize; }
    uint32_t ahs_length() const noexcept { return ahs_len_; }
    const ParsedAhs& parsed_ahs() const noexcept { return ahs_parsed_; }
    uint32_t data_length() const noexcept { return data_len_; }
    // Whether the data digest matched; true for a PDU whose check was deferred (see below).
    bool data_digest_ok() const noexcept { return ddgst_ok_; }
    // At the pdu event: the data digest was not checked (data_digest_defer_min). The caller
    // computes the crc32c of the data it placed followed by padding() (the pad bytes as
    // received: the digest covers them) and compares it with data_digest(), the one received.
    bool data_digest_deferred() const noexcept { return ddgst_deferred_; }
    // At the header event, before the destination is chosen: this PDU's data digest is checked
    // here after all, whatever data_digest_defer_min says.
    void check_data_digest_inline() noexcept;
    std::span<const uint8_t> padding() const noexcept { return {pad_.data(), pad4(data_len_)}; }
    uint32_t data_digest() const noexcept {
        return uint32_t{tail_[0]} | uint32_t{tail_[1]} << 8 | uint32_t{tail_[2]} << 16 |
               uint32_t{tail_[3]} << 24;
    }

    bool failed() const noexcept { return err_ != RecvError::none; }
    RecvError error() const noexcept { return err_; }
    uint64_t pdus_received() const noexcept { return pdus_; }
    bool at_pdu_boundary() const noexcept { return phase_ == Phase::bhs && got_ == 0; }

private:
    enum class Phase : uint8_t { bhs, ahs, data, pad };
    bool fail(RecvError e, RecvEvent* ev) noexcept;
    bool check_bhs() noexcept;
    bool check_header() noexcept;
    void finish(RecvEvent* ev) noexcept;

    RecvConfig cfg_;
    Phase phase_ = Phase::bhs;
    RecvError err_ = RecvError::none;
    bool ddgst_ok_ = true;
    bool pdu_hdgst_ = false;
    bool pdu_ddgst_ = false;
    bool ddgst_deferred_ = false;
    uint32_t got_ = 0;
    uint32_t ahs_len_ = 0;
    uint32_t hdr_total_ = 0;  // BHS + AHS + header digest
    uint32_t data_len_ = 0;
    uint64_t pdus_ = 0;
    DataDestination dest_;  // the data segment's destination and digest
    ParsedAhs ahs_parsed_{};
    std::array<uint8_t, 4> tail_{};  // the data digest received
    std::array<uint8_t, 3> pad_{};   // the padding received
    std::array<uint8_t, kMaxHeader> hdr_{};
};

// ---- builder ----------------------------------------------------------------------------------
// Lays out one outgoing PDU: [BHS][AHS][HDGST][data][pad][DDGST]. The BHS must already carry
// its opcode-specific fields; build sets TotalAHSLength and DataSegmentLength and computes
// the digests. The header part (with its digest) goes to `header_out` (kBhsSize + ahs + 4 at
// most), the data is left where it is (a gather list for the socket) and its digest to
// *data_digest_out. Returns the header bytes written.
struct PduDigests {
    bool header = false;
    bool data = false;
};
uint32_t build_header(uint8_t* header_out, const void* bhs, const uint8_t* ahs, uint32_t ahs_len,
                      uint32_t data_len, PduDigests dg) noexcept;
uint32_t data_digest(const struct iovec* iov, uint32_t iovcnt, uint32_t data_len) noexcept;
// Control path convenience: the whole PDU appended to `out` (header, data, pad, digests).
void append_pdu(std::vector<uint8_t>& out, const void* bhs, std::span<const uint8_t> data,
                PduDigests dg);

}  // namespace strata::iscsi

namespace strata::iscsi {
// The sequence numbers a target response carries (StatSN is consumed by status responses).
struct SnState {
    uint32_t stat_sn = 0;
    uint32_t exp_cmd_sn = 0;
    uint32_t max_cmd_sn = 0;
};
// Appends a Reject PDU (§11.17) whose data is the rejected PDU's header (BHS, 48 bytes).
// A Reject is a status-bearing response: it takes sn.stat_sn and advances it.
void append_reject(std::vector<uint8_t>& out, RejectReason reason, const uint8_t* rejected_bhs,
                   SnState& sn, PduDigests dg);
}  // namespace strata::iscsi
