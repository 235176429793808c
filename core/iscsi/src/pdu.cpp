// iSCSI PDU receiver and builder (see <strata/iscsi/internal/pdu.h>).
//
// Digests use base's crc32c (ISA-L) inline, as core/nvmf's TCP receiver does: a header digest
// must be checked before the header is acted on, and the data digest is computed as the bytes
// are copied out of the receive buffer, so the receiver stays a pure function for the fuzzer.
#include <algorithm>
#include <cstring>

#include <strata/base/crc.h>
#include <strata/iscsi/internal/pdu.h>

namespace strata::iscsi {

namespace {
// iSCSI digests are CRC32C sent least-significant byte first (RFC 7143 §11.1, as in the
// examples of RFC 3720 appendix B.4): the 32-bit value in little-endian byte order.
uint32_t le32(const uint8_t* p) noexcept {
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
void put_le32(uint8_t* p, uint32_t v) noexcept {
    p[0] = uint8_t(v), p[1] = uint8_t(v >> 8), p[2] = uint8_t(v >> 16), p[3] = uint8_t(v >> 24);
}
const uint8_t kZeros[4] = {};
}  // namespace

bool opcode_from_initiator(uint8_t op) noexcept {
    switch (Opcode(op & kOpcodeMask)) {
    case Opcode::nop_out:
    case Opcode::scsi_cmd:
    case Opcode::task_mgmt_req:
    case Opcode::login_req:
    case Opcode::text_req:
    case Opcode::data_out:
    case Opcode::logout_req:
    case Opcode::snack: return true;
    default: return false;
    }
}

bool opcode_from_target(uint8_t op) noexcept {
    switch (Opcode(op & kOpcodeMask)) {
    case Opcode::nop_in:
    case Opcode::scsi_rsp:
    case Opcode::task_mgmt_rsp:
    case Opcode::login_rsp:
    case Opcode::text_rsp:
    case Opcode::data_in:
    case Opcode::logout_rsp:
    case Opcode::r2t:
    case Opcode::async_msg:
    case Opcode::reject: return true;
    default: return false;
    }
}

const char* opcode_name(uint8_t op) noexcept {
    switch (Opcode(op & kOpcodeMask)) {
    case Opcode::nop_out: return "NOP-Out";
    case Opcode::scsi_cmd: return "SCSI Command";
    case Opcode::task_mgmt_req: return "Task Management Request";
    case Opcode::login_req: return "Login Request";
    case Opcode::text_req: return "Text Request";
    case Opcode::data_out: return "SCSI Data-Out";
    case Opcode::logout_req: return "Logout Request";
    case Opcode::snack: return "SNACK Request";
    case Opcode::nop_in: return "NOP-In";
    case Opcode::scsi_rsp: return "SCSI Response";
    case Opcode::task_mgmt_rsp: return "Task Management Response";
    case Opcode::login_rsp: return "Login Response";
    case Opcode::text_rsp: return "Text Response";
    case Opcode::data_in: return "SCSI Data-In";
    case Opcode::logout_rsp: return "Logout Response";
    case Opcode::r2t: return "R2T";
    case Opcode::async_msg: return "Asynchronous Message";
    case Opcode::reject: return "Reject";
    }
    return "?";
}

const char* recv_error_name(RecvError e) noexcept {
    switch (e) {
    case RecvError::none: return "none";
    case RecvError::bad_opcode: return "opcode not valid from the sending side";
    case RecvError::bad_ahs: return "malformed additional header segment";
    case RecvError::data_too_long: return "DataSegmentLength exceeds MaxRecvDataSegmentLength";
    case RecvError::header_digest: return "header digest error";
    case RecvError::unexpected_data: return "data segment on an opcode that carries none";
    }
    return "?";
}

bool parse_ahs(const uint8_t* ahs, uint32_t len, ParsedAhs* out) noexcept {
    *out = {};
    bool have_cdb = false;
    uint32_t off = 0;
    while (off < len) {
        if (len - off < 4) return false;
        const uint32_t ahs_length = uint32_t(ahs[off]) << 8 | ahs[off + 1];
        const uint8_t type = ahs[off + 2];
        if (ahs_length == 0) return false;
        const uint32_t seg = 3 + ahs_length;
        const uint32_t padded = seg + pad4(seg);
        if (padded > len - off) return false;
        const uint8_t* body = ahs + off + 4;  // after the AHS-Specific byte
        switch (AhsType(type)) {
        case AhsType::extended_cdb:
            if (have_cdb || ahs_length < 2) return false;
            have_cdb = true;
            out->extended_cdb = body;
            out->extended_cdb_length = ahs_length - 1;
            break;
        case AhsType::bidi_read_length:
            if (out->has_bidi_read_length || ahs_length != 5) return false;
            out->has_bidi_read_length = true;
            out->bidi_read_length = uint32_t(body[0]) << 24 | uint32_t(body[1]) << 16 |
                                    uint32_t(body[2]) << 8 | body[3];
            break;
        default: return false;
        }
        off += padded;
    }
    return true;
}

bool PduReceiver::fail(RecvError e, RecvEvent* ev) noexcept {
    err_ = e;
    *ev = RecvEvent::error;
    return false;
}

bool PduReceiver::check_bhs() noexcept {
    const Bhs& b = bhs();
    if (cfg_.from_target ? !opcode_from_target(b.opcode) : !opcode_from_initiator(b.opcode)) {
        err_ = RecvError::bad_opcode;
        return false;
    }
    ahs_len_ = uint32_t(b.total_ahs_length) * 4;
    if (ahs_len_ > cfg_.max_ahs_bytes) {
        err_ = RecvError::bad_ahs;
        return false;
    }
    data_len_ = b.data_segment_length.get();
    switch (b.op()) {
    case Opcode::task_mgmt_req:
    case Opcode::logout_req:
    case Opcode::snack:
    case Opcode::task_mgmt_rsp:
    case Opcode::logout_rsp:
    case Opcode::r2t:
        if (data_len_ != 0) {
            err_ = RecvError::unexpected_data;
            return false;
        }
        break;
    default: break;
    }
    if (data_len_ > cfg_.max_recv_data_segment_length) {
        err_ = RecvError::data_too_long;
        return false;
    }
    pdu_hdgst_ = cfg_.header_digest;
    pdu_ddgst_ = cfg_.data_digest && data_len_ > 0;
    hdr_total_ = kBhsSize + ahs_len_ + (pdu_hdgst_ ? kDigestSize : 0);
    return true;
}

bool PduReceiver::check_header() noexcept {
    const uint32_t hlen = kBhsSize + ahs_len_;
    if (pdu_hdgst_ && crc32c(0, hdr_.data(), hlen) != le32(hdr_.data() + hlen)) {
        err_ = RecvError::header_digest;
        return false;
    }
    if (!parse_ahs(hdr_.data() + kBhsSize, ahs_len_, &ahs_parsed_)) {
        err_ = RecvError::bad_ahs;
        return false;
    }
    return true;
}

void PduReceiver::finish(RecvEvent* ev) noexcept {
    ++pdus_;
    phase_ = Phase::bhs;
    got_ = 0;
    *ev = RecvEvent::pdu;
}

void PduReceiver::set_data_destination(const iovec* iov, uint32_t iovcnt) noexcept {
    dest_.set(iov, iovcnt);
}

void PduReceiver::discard_data() noexcept { dest_.discard(); }

void PduReceiver::check_data_digest_inline() noexcept {
    if (!ddgst_deferred_ || dest_.chosen()) return;
    ddgst_deferred_ = false;
    dest_.start(pdu_ddgst_);
}

size_t PduReceiver::feed(const uint8_t* data, size_t len, RecvEvent* event) noexcept {
    *event = RecvEvent::none;
    size_t used = 0;
    if (failed()) {
        *event = RecvEvent::error;
        return 0;
    }
    while (true) {
        switch (phase_) {
        case Phase::bhs: {
            if (used == len) return used;
            const size_t k = std::min<size_t>(kBhsSize - got_, len - used);
            std::memcpy(hdr_.data() + got_, data + used, k);
            got_ += uint32_t(k);
            used += k;
            if (got_ < kBhsSize) return used;
            if (!check_bhs()) {
                *event = RecvEvent::error;
                return used;
            }
            phase_ = Phase::ahs;
            break;
        }
        case Phase::ahs: {
            if (got_ < hdr_total_) {
                if (used == len) return used;
                const size_t k = std::min<size_t>(hdr_total_ - got_, len - used);
                std::memcpy(hdr_.data() + got_, data + used, k);
                got_ += uint32_t(k);
                used += k;
                if (got_ < hdr_total_) return used;
            }
            if (!check_header()) {
                *event = RecvEvent::error;
                return used;
            }
            got_ = 0;
            ddgst_ok_ = true;
            ddgst_deferred_ = pdu_ddgst_ && cfg_.data_digest_defer_min != 0 &&
                              data_len_ >= cfg_.data_digest_defer_min;
            dest_.start(pdu_ddgst_ && !ddgst_deferred_);
            if (data_len_ == 0) {
                finish(event);
                return used;
            }
            phase_ = Phase::data;
            *event = RecvEvent::header;
            return used;
        }
        case Phase::data: {
            if (!dest_.chosen()) {
                *event = RecvEvent::header;
                return used;
            }
            if (got_ < data_len_) {
                if (used == len) return used;
                const size_t k = std::min<size_t>(data_len_ - got_, len - used);
                dest_.copy_in(data + used, k);
                got_ += uint32_t(k);
                used += k;
                if (got_ < data_len_) return used;
            }
            got_ = 0;
            phase_ = Phase::pad;
            break;
        }
        case Phase::pad: {
            // Padding (digested with the data, kept in pad_) then the data digest, into tail_.
            const uint32_t pad = pad4(data_len_);
            const uint32_t want = pad + (pdu_ddgst_ ? kDigestSize : 0);
            if (got_ < want) {
                if (used == len) return used;
                const size_t k = std::min<size_t>(want - got_, len - used);
                for (size_t i = 0; i < k; ++i) {
                    const uint32_t pos = got_ + uint32_t(i);
                    if (pos < pad) {
                        pad_[pos] = data[used + i];
                        dest_.digest_only(data + used + i, 1);
                    } else {
                        tail_[pos - pad] = data[used + i];
                    }
                }
                got_ += uint32_t(k);
                used += k;
                if (got_ < want) return used;
            }
            if (pdu_ddgst_ && !ddgst_deferred_) ddgst_ok_ = dest_.crc() == le32(tail_.data());
            finish(event);
            return used;
        }
        }
    }
}

uint32_t build_header(uint8_t* out, const void* bhs, const uint8_t* ahs, uint32_t ahs_len,
                      uint32_t data_len, PduDigests dg) noexcept {
    std::memcpy(out, bhs, kBhsSize);
    Bhs& b = *reinterpret_cast<Bhs*>(out);
    b.total_ahs_length = uint8_t(ahs_len / 4);
    b.data_segment_length.set(data_len);
    if (ahs_len) std::memcpy(out + kBhsSize, ahs, ahs_len);
    uint32_t n = kBhsSize + ahs_len;
    if (dg.header) {
        put_le32(out + n, crc32c(0, out, n));
        n += kDigestSize;
    }
    return n;
}

uint32_t data_digest(const struct iovec* iov, uint32_t iovcnt, uint32_t data_len) noexcept {
    uint32_t crc = crc32c_iov(0, iov, iovcnt);
    return crc32c(crc, kZeros, pad4(data_len));
}

void append_pdu(std::vector<uint8_t>& out, const void* bhs, std::span<const uint8_t> data,
                PduDigests dg) {
    uint8_t hdr[kBhsSize + kDigestSize];
    const uint32_t dl = uint32_t(data.size());
    const uint32_t hn = build_header(hdr, bhs, nullptr, 0, dl, dg);
    out.insert(out.end(), hdr, hdr + hn);
    if (dl == 0) return;
    out.insert(out.end(), data.begin(), data.end());
    out.insert(out.end(), kZeros, kZeros + pad4(dl));
    if (dg.data) {
        const iovec v{const_cast<uint8_t*>(data.data()), data.size()};
        uint8_t d[4];
        put_le32(d, data_digest(&v, 1, dl));
        out.insert(out.end(), d, d + 4);
    }
}

}  // namespace strata::iscsi

namespace strata::iscsi {
void append_reject(std::vector<uint8_t>& out, RejectReason reason, const uint8_t* rejected_bhs,
                   SnState& sn, PduDigests dg) {
    Reject r{};
    r.opcode = uint8_t(Opcode::reject);
    r.flags = kFinalBit;
    r.reason = uint8_t(reason);
    r.itt.set(kReservedTag);
    r.stat_sn.set(sn.stat_sn++);
    r.exp_cmd_sn.set(sn.exp_cmd_sn);
    r.max_cmd_sn.set(sn.max_cmd_sn);
    append_pdu(out, &r, std::span<const uint8_t>(rejected_bhs, kBhsSize), dg);
}
}  // namespace strata::iscsi
