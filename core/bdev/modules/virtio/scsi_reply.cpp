#include "virtio/scsi_reply.h"

#include <algorithm>
#include <cstddef>

#include <fmt/format.h>

namespace strata::bdev::vscsi {

namespace vsc = virtio::spec::scsi;

namespace {

uint32_t be32(const uint8_t* p) noexcept {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
uint64_t be64(const uint8_t* p) noexcept {
    return uint64_t{be32(p)} << 32 | be32(p + 4);
}

std::string trimmed(const uint8_t* p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s.push_back(p[i] >= 0x20 && p[i] < 0x7f ? char(p[i]) : '.');
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

const char* response_name(uint8_t r) noexcept {
    switch (r) {
        case vsc::kSOverrun:
            return "OVERRUN";
        case vsc::kSAborted:
            return "ABORTED";
        case vsc::kSBadTarget:
            return "BAD_TARGET";
        case vsc::kSReset:
            return "RESET";
        case vsc::kSBusy:
            return "BUSY";
        case vsc::kSTransportFailure:
            return "TRANSPORT_FAILURE";
        case vsc::kSTargetFailure:
            return "TARGET_FAILURE";
        case vsc::kSNexusFailure:
            return "NEXUS_FAILURE";
        case vsc::kSFailure:
            return "FAILURE";
        case vsc::kSIncorrectLun:
            return "INCORRECT_LUN";
        default:
            return "an unknown response code";
    }
}

Result<Capacity> checked(Capacity c, const char* what) {
    if (c.block_size < 512 || (c.block_size & (c.block_size - 1)) != 0)
        return Error(Errc::not_supported,
                     fmt::format("{}: block size {} is not a power of two of 512 or more", what,
                                 c.block_size));
    if (c.num_blocks == 0)
        return Error(Errc::invalid_argument, fmt::format("{}: capacity of 0 blocks", what));
    return c;
}

}  // namespace

Sense parse_sense(const uint8_t* s, uint32_t len) noexcept {
    Sense out;
    if (len < 1) return out;
    const uint8_t code = s[0] & 0x7f;
    if ((code == 0x70 || code == 0x71) && len >= 3) {
        out.valid = true;
        out.key = s[2] & 0xf;
        if (len >= 14) {
            out.asc = s[12];
            out.ascq = s[13];
        }
    } else if ((code == 0x72 || code == 0x73) && len >= 2) {
        out.valid = true;
        out.key = s[1] & 0xf;
        if (len >= 4) {
            out.asc = s[2];
            out.ascq = s[3];
        }
    }
    return out;
}

Reply read_reply(const vsc::RespCmd& resp, uint32_t used_len, uint32_t data_in_len) {
    Reply r;
    r.response = resp.response;
    r.status = resp.status;
    constexpr uint32_t kHeader = offsetof(vsc::RespCmd, sense);
    if (used_len < kHeader) {
        r.code = Errc::protocol_error;
        r.why =
            fmt::format("response of {} bytes, shorter than its {}-byte header", used_len, kHeader);
        return r;
    }
    if (resp.response != vsc::kSOk) {
        r.code = resp.response == vsc::kSBusy ? Errc::busy : Errc::io_error;
        r.why = fmt::format("virtio-scsi response {} ({})", resp.response,
                            response_name(resp.response));
        return r;
    }
    if (resp.residual > data_in_len && data_in_len != 0) {
        r.code = Errc::protocol_error;
        r.why = fmt::format("residual {} beyond the {}-byte transfer", resp.residual, data_in_len);
        return r;
    }
    if (data_in_len != 0) {
        const uint32_t written =
            used_len > sizeof(vsc::RespCmd) ? used_len - uint32_t(sizeof(vsc::RespCmd)) : 0;
        r.data_in = std::min(data_in_len - resp.residual, written);
    }
    switch (resp.status) {
        case kStatusGood:
            return r;
        case kStatusCheckCondition: {
            const uint32_t slen = std::min<uint32_t>({resp.sense_len, uint32_t(vsc::kSenseSize),
                                                      used_len > kHeader ? used_len - kHeader : 0});
            r.sense = parse_sense(resp.sense, slen);
            if (!r.sense.valid) {
                r.code = Errc::io_error;
                r.why = fmt::format("CHECK CONDITION without valid sense ({} bytes)", slen);
                return r;
            }
            switch (r.sense.key) {
                case kSenseIllegalRequest:
                    r.code = r.sense.asc == 0x20   ? Errc::not_supported      // invalid opcode
                             : r.sense.asc == 0x21 ? Errc::out_of_range       // LBA out of range
                                                   : Errc::invalid_argument;  // invalid field
                    break;
                case kSenseDataProtect:
                    r.code = Errc::permission_denied;
                    break;
                case kSenseMiscompare:
                    r.code = Errc::corrupt;
                    break;
                default:
                    r.code = Errc::io_error;
                    break;
            }
            r.why = fmt::format("CHECK CONDITION, sense key {:#x} ASC {:#04x} ASCQ {:#04x}",
                                r.sense.key, r.sense.asc, r.sense.ascq);
            return r;
        }
        case kStatusBusy:
        case kStatusTaskSetFull:
            r.code = Errc::busy;
            r.why = fmt::format("SCSI status {:#04x} (busy)", resp.status);
            return r;
        case kStatusReservationConflict:
            r.code = Errc::permission_denied;
            r.why = "SCSI status RESERVATION CONFLICT";
            return r;
        default:
            r.code = Errc::io_error;
            r.why = fmt::format("unknown SCSI status {:#04x}", resp.status);
            return r;
    }
}

Result<Inquiry> parse_inquiry(const uint8_t* d, uint32_t len) {
    if (len < 36)
        return Error(Errc::protocol_error,
                     fmt::format("INQUIRY returned {} bytes of data, 36 needed", len));
    Inquiry q;
    q.qualifier = d[0] >> 5;
    q.device_type = d[0] & 0x1f;
    q.vendor = trimmed(d + 8, 8);
    q.product = trimmed(d + 16, 16);
    return q;
}

Result<Capacity> parse_read_capacity10(const uint8_t* d, uint32_t len) {
    if (len < 8)
        return Error(Errc::protocol_error,
                     fmt::format("READ CAPACITY(10) returned {} bytes of data, 8 needed", len));
    Capacity c;
    c.num_blocks = uint64_t{be32(d)} + 1;
    c.block_size = be32(d + 4);
    return checked(c, "READ CAPACITY(10)");
}

Result<Capacity> parse_read_capacity16(const uint8_t* d, uint32_t len) {
    if (len < 16)
        return Error(Errc::protocol_error,
                     fmt::format("READ CAPACITY(16) returned {} bytes of data, 16 needed", len));
    const uint64_t last = be64(d);
    if (last == UINT64_MAX)
        return Error(Errc::protocol_error, "READ CAPACITY(16): last LBA 0xffffffffffffffff");
    Capacity c;
    c.num_blocks = last + 1;
    c.block_size = be32(d + 8);
    c.lbpme = (d[14] & 0x80) != 0;
    return checked(c, "READ CAPACITY(16)");
}

}  // namespace strata::bdev::vscsi
