// NVMe/TCP PDU layouts (NVM Express TCP Transport Specification 1.0, section 3.6; also NVMe-oF
// TP 8000). Shared by the target (core/nvmf) and the initiator (core/nvme TCP transport).
//
// Every PDU starts with the 8-byte common header (CH); the PDU-specific header (PSH) follows, then
// the optional header digest (HDGST, crc32c of CH+PSH), padding up to PDO, data, and the optional
// data digest (DDGST, crc32c of the data). All multi-byte fields are little-endian.
//
//   PDU type      hlen  plen
//   ICReq/ICResp   128  128
//   H2C/C2HTermReq  24  24 + offending header (at most 128 bytes)
//   CapsuleCmd      72  72 [+ hdgst] [+ pad + in-capsule data [+ ddgst]]
//   CapsuleResp     24  24 [+ hdgst]
//   H2C/C2HData     24  24 [+ hdgst] + pad + data [+ ddgst]
//   R2T             24  24 [+ hdgst]
//
// Checked against Linux include/linux/nvme-tcp.h and SPDK include/spdk/nvmf_spec.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <strata/nvme/spec/bits.h>
#include <strata/nvme/spec/queue.h>

namespace strata::nvme::spec::tcp {

inline constexpr uint16_t default_port = 4420;
inline constexpr uint16_t discovery_port = 8009;
inline constexpr uint16_t pfv_1_0 = 0;  // PDU Format Version in ICReq/ICResp

inline constexpr uint32_t digest_size = 4;           // HDGST and DDGST are one crc32c each
inline constexpr uint32_t common_header_size = 8;    // CH
inline constexpr uint32_t ic_pdu_size = 128;         // ICReq / ICResp hlen == plen
inline constexpr uint32_t term_req_hlen = 24;        // H2C/C2HTermReq hlen
inline constexpr uint32_t term_req_max_data = 128;   // offending PDU header bytes carried at most
inline constexpr uint32_t term_req_max_plen = term_req_hlen + term_req_max_data;  // 152
inline constexpr uint32_t capsule_cmd_hlen = 72;     // CH + SQE
inline constexpr uint32_t capsule_resp_hlen = 24;    // CH + CQE
inline constexpr uint32_t data_pdu_hlen = 24;        // H2CData / C2HData
inline constexpr uint32_t r2t_hlen = 24;
inline constexpr uint32_t max_pda = 31;               // HPDA / CPDA are 0..31 (0's based dwords)
inline constexpr uint32_t min_maxh2cdata = 4096;      // ICResp.MAXH2CDATA lower bound
inline constexpr uint32_t admin_in_capsule_size = 8192;  // admin queue in-capsule data (8 KiB)

enum class PduType : uint8_t {
    ic_req = 0x0,
    ic_resp = 0x1,
    h2c_term_req = 0x2,
    c2h_term_req = 0x3,
    capsule_cmd = 0x4,
    capsule_resp = 0x5,
    h2c_data = 0x6,
    c2h_data = 0x7,
    r2t = 0x9,
};

constexpr const char* pdu_type_name(PduType t) noexcept {
    switch (t) {
    case PduType::ic_req: return "ICReq";
    case PduType::ic_resp: return "ICResp";
    case PduType::h2c_term_req: return "H2CTermReq";
    case PduType::c2h_term_req: return "C2HTermReq";
    case PduType::capsule_cmd: return "CapsuleCmd";
    case PduType::capsule_resp: return "CapsuleResp";
    case PduType::h2c_data: return "H2CData";
    case PduType::c2h_data: return "C2HData";
    case PduType::r2t: return "R2T";
    }
    return "unknown";
}

constexpr bool pdu_type_known(uint8_t t) noexcept { return t <= 0x7 || t == 0x9; }

// The header length (CH + PSH) each PDU type must carry; 0 for an unknown type.
constexpr uint32_t expected_hlen(PduType t) noexcept {
    switch (t) {
    case PduType::ic_req:
    case PduType::ic_resp: return ic_pdu_size;
    case PduType::h2c_term_req:
    case PduType::c2h_term_req: return term_req_hlen;
    case PduType::capsule_cmd: return capsule_cmd_hlen;
    case PduType::capsule_resp: return capsule_resp_hlen;
    case PduType::h2c_data:
    case PduType::c2h_data: return data_pdu_hlen;
    case PduType::r2t: return r2t_hlen;
    }
    return 0;
}

// CH.FLAGS.
namespace flags {
inline constexpr uint8_t hdgstf = 1u << 0;    // header digest present
inline constexpr uint8_t ddgstf = 1u << 1;    // data digest present
inline constexpr uint8_t last_pdu = 1u << 2;  // H2CData/C2HData: last PDU of the transfer
inline constexpr uint8_t success = 1u << 3;   // C2HData: command succeeded, no CapsuleResp follows
}  // namespace flags

// ICReq/ICResp DGST field bits.
namespace dgst {
inline constexpr uint8_t hdgst_enable = 1u << 0;
inline constexpr uint8_t ddgst_enable = 1u << 1;
}  // namespace dgst

// Fatal Error Status of a termination request (H2CTermReq / C2HTermReq).
enum class Fes : uint16_t {
    invalid_header_field = 0x1,     // FEI: byte offset of the offending field in the header
    pdu_sequence_error = 0x2,       // FEI reserved
    header_digest_error = 0x3,      // FEI reserved
    data_out_of_range = 0x4,        // H2CData/C2HData outside the command's data (FEI reserved)
    data_limit_exceeded = 0x5,      // also "R2T limit exceeded" (FEI reserved)
    unsupported_parameter = 0x6,    // FEI: byte offset of the unsupported ICReq/ICResp field
};

constexpr const char* fes_name(Fes f) noexcept {
    switch (f) {
    case Fes::invalid_header_field: return "invalid PDU header field";
    case Fes::pdu_sequence_error: return "PDU sequence error";
    case Fes::header_digest_error: return "header digest error";
    case Fes::data_out_of_range: return "data transfer out of range";
    case Fes::data_limit_exceeded: return "data transfer limit exceeded";
    case Fes::unsupported_parameter: return "unsupported parameter";
    }
    return "unknown";
}

// The 8-byte common header.
struct CommonHeader {
    uint8_t pdu_type;
    uint8_t flags;
    uint8_t hlen;  // CH + PSH length in bytes (no digest)
    uint8_t pdo;   // PDU Data Offset: start of data from the PDU start (0 without data)
    uint32_t plen; // total PDU length including digests and padding

    constexpr PduType type() const noexcept { return static_cast<PduType>(pdu_type); }
    constexpr bool has_hdgst() const noexcept { return (flags & flags::hdgstf) != 0; }
    constexpr bool has_ddgst() const noexcept { return (flags & flags::ddgstf) != 0; }
};
static_assert(sizeof(CommonHeader) == 8);
static_assert(offsetof(CommonHeader, pdu_type) == 0 && offsetof(CommonHeader, flags) == 1);
static_assert(offsetof(CommonHeader, hlen) == 2 && offsetof(CommonHeader, pdo) == 3);
static_assert(offsetof(CommonHeader, plen) == 4);

// Initialize Connection Request (host -> controller, first PDU on a connection).
struct IcReq {
    CommonHeader ch;
    uint16_t pfv;     // PDU Format Version, 0
    uint8_t hpda;     // host PDU data alignment, 0's based dwords (0..31)
    uint8_t dgst;     // dgst::hdgst_enable | dgst::ddgst_enable
    uint32_t maxr2t;  // maximum outstanding R2Ts per command, 0's based
    std::array<uint8_t, 112> reserved;
};
static_assert(sizeof(IcReq) == 128);
static_assert(offsetof(IcReq, pfv) == 8 && offsetof(IcReq, hpda) == 10);
static_assert(offsetof(IcReq, dgst) == 11 && offsetof(IcReq, maxr2t) == 12);

// Initialize Connection Response (controller -> host).
struct IcResp {
    CommonHeader ch;
    uint16_t pfv;
    uint8_t cpda;         // controller PDU data alignment, 0's based dwords (0..31)
    uint8_t dgst;
    uint32_t maxh2cdata;  // maximum data bytes per H2CData PDU (>= 4096, dword multiple)
    std::array<uint8_t, 112> reserved;
};
static_assert(sizeof(IcResp) == 128);
static_assert(offsetof(IcResp, pfv) == 8 && offsetof(IcResp, cpda) == 10);
static_assert(offsetof(IcResp, dgst) == 11 && offsetof(IcResp, maxh2cdata) == 12);

// H2CTermReq / C2HTermReq header; up to 128 bytes of the offending PDU header follow it.
struct TermReq {
    CommonHeader ch;
    uint16_t fes;                // Fes
    UnalignedLe<uint32_t> fei;   // Fatal Error Information (bytes 10..13, unaligned)
    std::array<uint8_t, 10> reserved;

    constexpr Fes status() const noexcept { return static_cast<Fes>(fes); }
};
static_assert(sizeof(TermReq) == 24);
static_assert(offsetof(TermReq, fes) == 8 && offsetof(TermReq, fei) == 10);
static_assert(offsetof(TermReq, reserved) == 14);

// Command capsule: the SQE; in-capsule data (if any) at PDO.
struct CapsuleCmd {
    CommonHeader ch;
    Sqe sqe;
};
static_assert(sizeof(CapsuleCmd) == 72);
static_assert(offsetof(CapsuleCmd, sqe) == 8);

// Response capsule: the CQE.
struct CapsuleResp {
    CommonHeader ch;
    Cqe cqe;
};
static_assert(sizeof(CapsuleResp) == 24);
static_assert(offsetof(CapsuleResp, cqe) == 8);

// H2CData and C2HData headers (same layout).
struct DataPdu {
    CommonHeader ch;
    uint16_t cccid;  // command capsule CID
    uint16_t ttag;   // transfer tag (H2CData: the R2T's TTAG; C2HData: reserved)
    uint32_t datao;  // offset of this PDU's data within the command's data
    uint32_t datal;  // data length in this PDU
    std::array<uint8_t, 4> reserved;
};
static_assert(sizeof(DataPdu) == 24);
static_assert(offsetof(DataPdu, cccid) == 8 && offsetof(DataPdu, ttag) == 10);
static_assert(offsetof(DataPdu, datao) == 12 && offsetof(DataPdu, datal) == 16);
using H2CData = DataPdu;
using C2HData = DataPdu;

// Ready to Transfer (controller -> host): send r2tl bytes from offset r2to with TTAG ttag.
struct R2T {
    CommonHeader ch;
    uint16_t cccid;
    uint16_t ttag;
    uint32_t r2to;
    uint32_t r2tl;
    std::array<uint8_t, 4> reserved;
};
static_assert(sizeof(R2T) == 24);
static_assert(offsetof(R2T, cccid) == 8 && offsetof(R2T, ttag) == 10);
static_assert(offsetof(R2T, r2to) == 12 && offsetof(R2T, r2tl) == 16);

// Byte offsets of header fields, for the FEI of invalid_header_field / unsupported_parameter.
namespace fei {
inline constexpr uint32_t pdu_type = 0;
inline constexpr uint32_t flags = 1;
inline constexpr uint32_t hlen = 2;
inline constexpr uint32_t pdo = 3;
inline constexpr uint32_t plen = 4;
inline constexpr uint32_t pfv = 8;
inline constexpr uint32_t hpda = 10;
inline constexpr uint32_t dgst = 11;
inline constexpr uint32_t maxr2t = 12;
inline constexpr uint32_t cccid = 8;
inline constexpr uint32_t ttag = 10;
inline constexpr uint32_t datao = 12;
inline constexpr uint32_t datal = 16;
inline constexpr uint32_t sgl = 8 + 24;  // CapsuleCmd: SQE DPTR (SGL1) at SQE byte 24
}  // namespace fei

// PDU data alignment in bytes for an HPDA/CPDA value.
constexpr uint32_t pda_alignment(uint32_t pda) noexcept { return (pda + 1) * 4; }

// The PDO a sender uses for a PDU carrying data: header + header digest, rounded up to the
// receiver's alignment. Fits in 8 bits for every hlen and pda <= 31 (at most 128).
constexpr uint32_t data_offset(uint32_t hlen, bool hdgst, uint32_t pda) noexcept {
    const uint32_t a = pda_alignment(pda);
    const uint32_t end = hlen + (hdgst ? digest_size : 0);
    return (end + a - 1) / a * a;
}
static_assert(data_offset(capsule_cmd_hlen, true, 0) == 76);
static_assert(data_offset(data_pdu_hlen, false, 31) == 128);

// SGL descriptor identifiers the TCP transport uses in SQE.DPTR (SGL1).
// In-capsule data: Data Block descriptor, Offset subtype; address = offset into the in-capsule
// data (normally 0), length = data length.
inline constexpr uint8_t sgl_id_in_capsule =
    (static_cast<uint8_t>(SglType::data_block) << 4) | static_cast<uint8_t>(SglSubtype::offset);
// Data transferred by C2HData / R2T+H2CData: Transport SGL Data Block, Transport Specific
// subtype; address ignored, length = data length.
inline constexpr uint8_t sgl_id_transport =
    (static_cast<uint8_t>(SglType::transport_data_block) << 4) |
    static_cast<uint8_t>(SglSubtype::transport_specific);
static_assert(sgl_id_in_capsule == 0x01 && sgl_id_transport == 0x5A);

constexpr SglDescriptor make_in_capsule_sgl(uint32_t length, uint64_t offset = 0) noexcept {
    SglDescriptor d{offset, length, {}, 0};
    d.set_type(SglType::data_block, SglSubtype::offset);
    return d;
}
constexpr SglDescriptor make_transport_sgl(uint32_t length) noexcept {
    SglDescriptor d{0, length, {}, 0};
    d.set_type(SglType::transport_data_block, SglSubtype::transport_specific);
    return d;
}

}  // namespace strata::nvme::spec::tcp
