// The NVMe/TCP target's PDU receiver (see <strata/nvmf/internal/tcp_pdu.h>).
//
// Digests use base's crc32c (ISA-L) inline, not an accel channel: a header digest covers 24 or
// 72 bytes and must be checked before the header can be acted on, and the data digest is
// computed on the bytes as they are copied out of the receive buffer, while they are in cache;
// an accel submission would cost more than the CRC itself and make the parser asynchronous
// (it could no longer be a pure function for the fuzzer). The accel software module runs the
// same ISA-L routine.
#include <algorithm>
#include <cstring>

#include <strata/base/crc.h>
#include <strata/nvmf/internal/tcp_pdu.h>

namespace strata::nvmf::tcp {

namespace {
uint32_t le32(const uint8_t* p) noexcept {
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
}  // namespace

void PduReceiver::fail(pdu::Fes fes, uint32_t fei) noexcept {
    // Called only while the header is being received: got_ header bytes are in hdr_.
    fes_ = fes;
    fei_ = fei;
    uint32_t n = got_;
    if (phase_ == Phase::header && n > hlen_) n = hlen_;  // not the header digest
    err_hdr_len_ = std::min<uint32_t>(n, pdu::term_req_max_data);
    phase_ = Phase::failed;
}

// The common header (8 bytes in hdr_): type, sequence, hlen, flags, plen bounds.
bool PduReceiver::check_ch() noexcept {
    const auto& c = ch();
    const uint8_t t = c.pdu_type;
    const bool known = pdu::pdu_type_known(t);
    const auto type = static_cast<pdu::PduType>(t);
    const bool from_host = known && (type == pdu::PduType::ic_req ||
                                     type == pdu::PduType::h2c_term_req ||
                                     type == pdu::PduType::capsule_cmd ||
                                     type == pdu::PduType::h2c_data);
    hlen_ = c.hlen;
    if (!from_host) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::pdu_type);
        return false;
    }
    if (!ic_done_ && type != pdu::PduType::ic_req && type != pdu::PduType::h2c_term_req) {
        fail(pdu::Fes::pdu_sequence_error, 0);
        return false;
    }
    if (ic_done_ && type == pdu::PduType::ic_req) {
        fail(pdu::Fes::pdu_sequence_error, 0);
        return false;
    }
    if (c.hlen != pdu::expected_hlen(type)) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::hlen);
        return false;
    }
    // Digests: only CapsuleCmd and H2CData carry them, and exactly when negotiated (a data
    // digest only when there is data; checked against plen below).
    const bool digestible = type == pdu::PduType::capsule_cmd || type == pdu::PduType::h2c_data;
    pdu_hdgst_ = c.has_hdgst();
    pdu_ddgst_ = c.has_ddgst();
    const uint8_t allowed = type == pdu::PduType::h2c_data
                                ? (pdu::flags::hdgstf | pdu::flags::ddgstf | pdu::flags::last_pdu)
                                : (pdu::flags::hdgstf | pdu::flags::ddgstf);
    if ((c.flags & ~allowed) != 0 || (digestible && pdu_hdgst_ != cfg_.hdgst) ||
        (!digestible && (pdu_hdgst_ || pdu_ddgst_)) || (pdu_ddgst_ && !cfg_.ddgst)) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::flags);
        return false;
    }
    hdr_total_ = c.hlen + (pdu_hdgst_ ? pdu::digest_size : 0);
    // PLEN: at least the header; fixed for ICReq; bounded for TermReq; data checked in
    // check_header once PDO is known.
    const uint32_t plen = c.plen;
    bool plen_ok = plen >= hdr_total_;
    if (type == pdu::PduType::ic_req) plen_ok = plen == pdu::ic_pdu_size;
    if (type == pdu::PduType::h2c_term_req)
        plen_ok = plen >= pdu::term_req_hlen && plen <= pdu::term_req_max_plen;
    if (!plen_ok) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::plen);
        return false;
    }
    return true;
}

// The whole header (and its digest): digest, PDO, data length, type-specific fields.
bool PduReceiver::check_header() noexcept {
    const auto& c = ch();
    const auto type = c.type();
    if (pdu_hdgst_ && crc32c(0, hdr_.data(), hlen_) != le32(hdr_.data() + hlen_)) {
        fail(pdu::Fes::header_digest_error, 0);
        return false;
    }
    const uint32_t plen = c.plen;
    data_len_ = 0;
    pad_len_ = 0;
    if (type == pdu::PduType::h2c_term_req) {
        // Its "data" is the host's copy of our offending header: taken as data, never digested.
        if (pdu_ddgst_) {
            fail(pdu::Fes::invalid_header_field, pdu::fei::flags);
            return false;
        }
        data_len_ = plen - hlen_;
        return true;
    }
    if (type == pdu::PduType::ic_req) {
        const auto req = header_as<pdu::IcReq>();
        if (req.pfv != pdu::pfv_1_0) {
            fail(pdu::Fes::unsupported_parameter, pdu::fei::pfv);
            return false;
        }
        if (req.hpda > pdu::max_pda) {
            fail(pdu::Fes::unsupported_parameter, pdu::fei::hpda);
            return false;
        }
        if ((req.dgst & ~(pdu::dgst::hdgst_enable | pdu::dgst::ddgst_enable)) != 0) {
            fail(pdu::Fes::unsupported_parameter, pdu::fei::dgst);
            return false;
        }
        return true;
    }
    // CapsuleCmd, H2CData.
    const uint32_t after_data = pdu_ddgst_ ? pdu::digest_size : 0;
    if (plen == hdr_total_) {
        // No data: a data digest flag without data is invalid.
        if (pdu_ddgst_) {
            fail(pdu::Fes::invalid_header_field, pdu::fei::flags);
            return false;
        }
        if (type == pdu::PduType::h2c_data) {
            fail(pdu::Fes::invalid_header_field, pdu::fei::datal);
            return false;
        }
        return true;
    }
    // Data present: PDO inside [header end, plen - ddgst), aligned to our CPDA.
    const uint32_t pdo = c.pdo;
    const uint32_t align = pdu::pda_alignment(cfg_.cpda);
    if (pdo < hdr_total_ || pdo % align != 0 || pdo >= plen ||
        plen - pdo <= after_data) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::pdo);
        return false;
    }
    if (cfg_.ddgst != pdu_ddgst_) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::flags);
        return false;
    }
    pad_len_ = pdo - hdr_total_;
    data_len_ = plen - pdo - after_data;
    if (type == pdu::PduType::capsule_cmd) {
        if (data_len_ > cfg_.max_in_capsule) {
            fail(pdu::Fes::data_limit_exceeded, 0);
            return false;
        }
        return true;
    }
    const auto d = header_as<pdu::DataPdu>();
    if (d.datal != data_len_) {
        fail(pdu::Fes::invalid_header_field, pdu::fei::datal);
        return false;
    }
    if (d.datal > cfg_.maxh2cdata) {
        fail(pdu::Fes::data_limit_exceeded, 0);
        return false;
    }
    return true;
}

void PduReceiver::finish_pdu(RecvEvent* event) noexcept {
    if (ch().type() == pdu::PduType::ic_req) ic_done_ = true;
    ++pdus_;
    phase_ = Phase::ch;
    got_ = 0;
    dest_.clear();
    *event = RecvEvent::pdu;
}

void PduReceiver::set_data_destination(const iovec* iov, uint32_t iovcnt) noexcept {
    dest_.set(iov, iovcnt);
}

void PduReceiver::discard_data() noexcept { dest_.discard(); }

uint32_t PduReceiver::data_iov_remaining(iovec* out, uint32_t max) const noexcept {
    if (!in_data()) return 0;
    return dest_.remaining(out, max, data_len_ - got_);
}

void PduReceiver::data_received(size_t n) noexcept {
    dest_.placed(n);  // bytes already in the destination: advanced over and digested there
    got_ += static_cast<uint32_t>(n);  // feed() moves on once got_ reaches data_len_
}

size_t PduReceiver::feed(const uint8_t* data, size_t len, RecvEvent* event) noexcept {
    *event = RecvEvent::none;
    size_t used = 0;
    while (true) {
        switch (phase_) {
        case Phase::failed: *event = RecvEvent::error; return used;
        case Phase::ch: {
            if (used == len) return used;
            const size_t k = std::min<size_t>(pdu::common_header_size - got_, len - used);
            std::memcpy(hdr_.data() + got_, data + used, k);
            got_ += static_cast<uint32_t>(k);
            used += k;
            if (got_ < pdu::common_header_size) return used;
            if (!check_ch()) {
                *event = RecvEvent::error;
                return used;
            }
            phase_ = Phase::header;
            break;
        }
        case Phase::header: {
            if (got_ < hdr_total_) {
                if (used == len) return used;
                const size_t k = std::min<size_t>(hdr_total_ - got_, len - used);
                std::memcpy(hdr_.data() + got_, data + used, k);
                got_ += static_cast<uint32_t>(k);
                used += k;
                if (got_ < hdr_total_) return used;
            }
            if (!check_header()) {
                *event = RecvEvent::error;
                return used;
            }
            got_ = 0;
            ddgst_ok_ = true;
            ddgst_deferred_ = pdu_ddgst_ && cfg_.ddgst_defer_min != 0 &&
                              data_len_ >= cfg_.ddgst_defer_min;
            dest_.start(pdu_ddgst_ && !ddgst_deferred_);
            if (data_len_ == 0) {
                finish_pdu(event);
                return used;
            }
            if (ch().type() == pdu::PduType::h2c_term_req) {
                // Its data is read into the header tail area's sibling: discarded here, the
                // caller closes the connection anyway.
                discard_data();
            }
            phase_ = pad_len_ > 0 ? Phase::pad : Phase::data;
            if (!dest_.chosen()) {
                *event = RecvEvent::header;
                return used;
            }
            break;
        }
        case Phase::pad: {
            if (used == len) return used;
            const size_t k = std::min<size_t>(pad_len_ - got_, len - used);
            got_ += static_cast<uint32_t>(k);
            used += k;
            if (got_ < pad_len_) return used;
            got_ = 0;
            phase_ = Phase::data;
            break;
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
                got_ += static_cast<uint32_t>(k);
                used += k;
                if (got_ < data_len_) return used;
            }
            got_ = 0;
            if (pdu_ddgst_) {
                phase_ = Phase::ddgst;
                break;
            }
            finish_pdu(event);
            return used;
        }
        case Phase::ddgst: {
            if (!dest_.chosen()) {
                *event = RecvEvent::header;
                return used;
            }
            if (used == len && got_ < pdu::digest_size) return used;
            const size_t k = std::min<size_t>(pdu::digest_size - got_, len - used);
            std::memcpy(ddgst_.data() + got_, data + used, k);
            got_ += static_cast<uint32_t>(k);
            used += k;
            if (got_ < pdu::digest_size) return used;
            ddgst_ok_ = ddgst_deferred_ || le32(ddgst_.data()) == dest_.crc();
            finish_pdu(event);
            return used;
        }
        }
    }
}

}  // namespace strata::nvmf::tcp
