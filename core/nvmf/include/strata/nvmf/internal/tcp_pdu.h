// The NVMe/TCP target's PDU receiver: a pure state machine from bytes to PDUs (no I/O, no
// allocation, no logging, no clock), so the fuzz target and the unit tests drive it directly.
//
// The connection feeds it whatever the socket gave; feed() consumes bytes and stops at each
// event:
//   header  a complete, validated header (CH + PSH, header digest checked) of a PDU that carries
//           data. The caller reads header()/data_length() and says where the data goes:
//           set_data_destination(iov) (bytes are copied there, the data digest computed on the
//           way) or discard_data(). feed() returns header again until one of the two is called.
//   pdu     a whole PDU was received: header() (and the data, at its destination). For a PDU
//           without data this is the only event. data_digest_ok() says whether DDGST matched.
//   error   a fatal transport error: fes()/fei() for the C2HTermReq. The receiver is dead from
//           then on (every later feed() reports the same error and consumes nothing).
//
// What it checks (the target side: PDUs a host may send):
//   - sequence: the first PDU is an ICReq, nothing before it; a second ICReq is a sequence error
//     (FES 2); an H2CTermReq is accepted at any time (the caller closes)
//   - type: ICReq, H2CTermReq, CapsuleCmd, H2CData; anything else, including controller-to-host
//     types and unknown values, is an invalid header field at offset 0 (FES 1, FEI 0)
//   - hlen matches the type (FEI 2); HDGSTF/DDGSTF set exactly when negotiated and meaningful
//     (FEI 1); PDO at or after the header digest, aligned to the CPDA we announced, and inside
//     the PDU (FEI 3); PLEN consistent with hlen, digests and data limits (FEI 4)
//   - ICReq: PFV 0 (FES 6, FEI 8), HPDA <= 31 (FES 6, FEI 10); H2CTermReq length 24..152
//   - CapsuleCmd: in-capsule data at most max_in_capsule bytes (FES 5)
//   - H2CData: DATAL equals the PDU's data length (FEI 16), DATAL > 0, at most MAXH2CDATA (FES 5)
//   - header digest (FES 3)
// What it leaves to the connection: whether a CCCID/TTAG names a live transfer and whether
// DATAO/DATAL fall inside it (FES 1 / 4), command semantics, and what to do with a data digest
// error (the command completes with Transient Transport Error; not a fatal error).
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include <strata/base/iov.h>
#include <strata/nvme/spec/tcp.h>

namespace strata::nvmf::tcp {

namespace pdu = nvme::spec::tcp;

// The negotiated and configured limits the receiver checks against. The connection updates it
// between events (digests after the ICReq, max_in_capsule after Connect).
struct RecvConfig {
    bool hdgst = false;              // header digests negotiated
    bool ddgst = false;              // data digests negotiated
    uint32_t cpda = 0;               // the CPDA we announce in ICResp (0..31)
    uint32_t max_in_capsule = 8192;  // in-capsule data limit for CapsuleCmd
    uint32_t maxh2cdata = 131072;    // MAXH2CDATA we announce
    // Data digests of PDUs carrying at least this many data bytes are not computed here but
    // left to the caller (the transport verifies them through the accel framework):
    // data_digest_deferred() and data_digest() at the pdu event. 0: every digest is checked
    // here, as the bytes arrive.
    uint32_t ddgst_defer_min = 0;
};

enum class RecvEvent : uint8_t { none, header, pdu, error };

class PduReceiver {
public:
    using Event = RecvEvent;  // for sock::receive_pdus
    // The longest header kept: ICReq (128) + nothing, or 72 + header digest. Padding before
    // data is skipped, not stored.
    static constexpr uint32_t kMaxHeader = 136;

    explicit PduReceiver(const RecvConfig& config = {}) noexcept : cfg_(config) {}

    RecvConfig& config() noexcept { return cfg_; }
    const RecvConfig& config() const noexcept { return cfg_; }

    // Consumes up to len bytes; stops after the first event (see the file comment). Returns
    // the bytes consumed; *event says what happened (none: all bytes consumed, no event).
    size_t feed(const uint8_t* data, size_t len, RecvEvent* event) noexcept;

    // After a header event: where the data_length() bytes go (the iovecs must hold them and
    // stay valid until the pdu event), or to drop them.
    void set_data_destination(const iovec* iov, uint32_t iovcnt) noexcept;
    void discard_data() noexcept;

    // Direct placement: while in_data(), the connection may read from the socket straight into
    // the destination: data_iov_remaining() gives the unfilled part (up to max iovecs), then
    // data_received(n) accounts for n bytes placed there.
    bool in_data() const noexcept { return phase_ == Phase::data && dest_.placing(); }
    uint32_t data_iov_remaining(iovec* out, uint32_t max) const noexcept;
    void data_received(size_t n) noexcept;

    // The current PDU's header (CH + PSH, hlen bytes; valid from the header event to the next
    // feed() after the pdu event).
    const uint8_t* header() const noexcept { return hdr_.data(); }
    const pdu::CommonHeader& ch() const noexcept {
        return *reinterpret_cast<const pdu::CommonHeader*>(hdr_.data());
    }
    template <class T>
    T header_as() const noexcept {  // a copy, so alignment never matters
        T t;
        static_assert(sizeof(T) <= kMaxHeader);
        __builtin_memcpy(&t, hdr_.data(), sizeof(T));
        return t;
    }
    uint32_t header_length() const noexcept { return hlen_; }  // without the digest
    uint32_t data_length() const noexcept { return data_len_; }
    // Whether DDGST matched; true for a PDU whose check was deferred (see below).
    bool data_digest_ok() const noexcept { return ddgst_ok_; }
    // At the pdu event: the data digest was not checked (ddgst_defer_min): the caller computes
    // the crc32c of the data it placed and compares it with data_digest(), the DDGST received.
    bool data_digest_deferred() const noexcept { return ddgst_deferred_; }
    uint32_t data_digest() const noexcept {
        return uint32_t{ddgst_[0]} | uint32_t{ddgst_[1]} << 8 | uint32_t{ddgst_[2]} << 16 |
               uint32_t{ddgst_[3]} << 24;
    }

    bool ic_received() const noexcept { return ic_done_; }
    bool failed() const noexcept { return phase_ == Phase::failed; }
    pdu::Fes fes() const noexcept { return fes_; }
    uint32_t fei() const noexcept { return fei_; }
    // The offending header bytes (up to 128) for the C2HTermReq's data.
    uint32_t error_header_length() const noexcept { return err_hdr_len_; }

    uint64_t pdus_received() const noexcept { return pdus_; }
    // True between PDUs (no partial PDU pending): a connection that ends here ended cleanly.
    bool at_pdu_boundary() const noexcept { return phase_ == Phase::ch && got_ == 0; }

private:
    enum class Phase : uint8_t { ch, header, pad, data, ddgst, failed };

    void fail(pdu::Fes fes, uint32_t fei) noexcept;
    bool check_ch() noexcept;      // after 8 bytes
    bool check_header() noexcept;  // after hlen + hdgst bytes
    void finish_pdu(RecvEvent* event) noexcept;

    RecvConfig cfg_;
    Phase phase_ = Phase::ch;
    bool ic_done_ = false;
    bool ddgst_ok_ = true;
    bool pdu_hdgst_ = false;
    bool pdu_ddgst_ = false;
    bool ddgst_deferred_ = false;
    pdu::Fes fes_{};
    uint32_t fei_ = 0;
    uint32_t err_hdr_len_ = 0;
    uint32_t got_ = 0;       // bytes of the current phase received
    uint32_t hlen_ = 0;
    uint32_t hdr_total_ = 0; // hlen + header digest
    uint32_t pad_len_ = 0;
    uint32_t data_len_ = 0;
    uint64_t pdus_ = 0;
    DataDestination dest_;  // the data's destination and digest so far
    std::array<uint8_t, 4> ddgst_{};
    alignas(8) std::array<uint8_t, kMaxHeader> hdr_{};
};

}  // namespace strata::nvmf::tcp
