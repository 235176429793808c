// NVMe/TCP transport state of a queue pair (the initiator side), and the pure PDU-header check
// the receive path (and a fuzz target) uses.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/status.h>
#include <strata/nvme/spec/tcp.h>
#include <strata/sock/sock.h>

namespace strata::nvme {

inline constexpr int kTcpMaxIov = 32;           // iovecs a command's buffer may have
inline constexpr uint32_t kTcpHdrBytes = 256;   // header + digest + padding of a PDU we send
// The receive buffer of a connection: one read takes up to this many bytes, and every PDU in
// them is parsed before the next read (see docs/design/nvme-tcp.md, "Receive path").
inline constexpr uint32_t kTcpRecvBufBytes = 128 * 1024;

// One PDU on its way out: header bytes (with header digest and padding), then a slice of the
// command's data, then the data digest.
struct SendPdu : ListHook<> {
    enum class Kind : uint8_t { none, ic_req, capsule, h2c_data };
    std::array<uint8_t, kTcpHdrBytes> hdr{};
    uint32_t hdr_len = 0;
    size_t data_off = 0;   // into the owning command's data
    uint32_t data_len = 0;
    std::array<uint8_t, 4> ddgst{};
    bool has_ddgst = false;
    size_t sent = 0;       // bytes of this PDU already accepted by the socket
    bool queued = false;
    Kind kind = Kind::none;
    int32_t req = -1;      // the command (cid), -1 for connection-level PDUs
    size_t total() const noexcept { return hdr_len + data_len + (has_ddgst ? 4 : 0); }
};

// Per-command transport state, indexed by cid (same index as QPairImpl's requests).
struct TcpReq {
    std::array<iovec, kTcpMaxIov> iov{};
    int iovcnt = 0;
    size_t len = 0;
    bool to_ctrl = false;      // data flows host -> controller
    bool in_capsule = false;
    size_t c2h_next = 0;       // next C2HData offset expected
    size_t h2c_next = 0;       // next H2CData offset to send
    size_t r2t_end = 0;        // end of the R2T being served
    uint16_t ttag = 0;
    bool r2t_active = false;
    SendPdu pdu;
};

// What a received common header says, once checked (check_c2h_header).
struct RxHeader {
    spec::tcp::PduType type{};
    uint32_t hlen = 0;
    uint32_t hdr_total = 0;  // hlen + header digest
    uint32_t plen = 0;
};

// Checks a common header received by the host: a known controller-to-host type, the hlen the
// type requires, digest flags as negotiated, a plausible plen. Pure function (fuzz target).
// `ic_done` false: only ICResp (or C2HTermReq) may come.
Result<RxHeader> check_c2h_header(const spec::tcp::CommonHeader& ch, bool hdgst, bool ddgst,
                                  bool ic_done) noexcept;

// Copies up to `max` iovecs describing bytes [off, off + len) of iov[0..cnt) into out; returns
// the count, or -1 if the range runs past the iovecs or needs more than `max` entries.
int slice_iov(const iovec* iov, int cnt, size_t off, size_t len, iovec* out, int max) noexcept;

struct TcpConn {
    enum class Phase : uint8_t { closed, ic_req, ic_resp_wait, connect_wait, live };
    enum class Rx : uint8_t { header, pad, data, ddgst };

    std::unique_ptr<sock::Socket> socket;
    Phase phase = Phase::closed;
    bool want_hdgst = false, want_ddgst = false;
    bool hdgst = false, ddgst = false;  // negotiated
    uint32_t cpda = 0;
    uint32_t maxh2cdata = 0;
    uint32_t in_capsule_max = 0;        // data bytes a command capsule may carry
    bool fast_fail = false;
    uint64_t connect_deadline_ns = 0;
    std::function<void(Status)> on_connected;
    uint16_t connect_cid = 0;
    alignas(8) std::array<uint8_t, 1024> connect_data{};

    std::unique_ptr<TcpReq[]> reqs;
    std::vector<uint8_t> lists;         // per-request 4 KiB (DSM ranges)
    IntrusiveList<SendPdu> send_list;
    SendPdu ic_pdu;

    // Receive state. Bytes read but not yet parsed sit in rbuf[rpos, rend).
    std::unique_ptr<uint8_t[]> rbuf;
    uint32_t rpos = 0, rend = 0;
    uint64_t reads = 0;                 // readv calls that returned bytes
    Rx rx = Rx::header;
    alignas(8) std::array<uint8_t, 8 + 128 + 4> rx_hdr{};
    size_t rx_have = 0;
    size_t rx_need = 8;
    RxHeader rx_info{};
    size_t rx_skip = 0;                 // padding bytes still to skip
    int32_t rx_req = -1;                // C2HData target
    size_t rx_off = 0, rx_left = 0;     // data still to place
    uint32_t rx_crc = 0;
    std::array<uint8_t, 4> rx_ddgst{};
    size_t rx_ddgst_have = 0;
    uint8_t rx_flags = 0;
    uint64_t bytes_in = 0, bytes_out = 0;
    uint64_t protocol_errors = 0;
    const char* lost_reason = nullptr;  // why the last connection ended (for Connect's error)

    void reset_rx() noexcept {
        rx = Rx::header;
        rx_have = 0;
        rx_need = 8;
        rx_skip = 0;
        rx_req = -1;
        rx_off = rx_left = 0;
        rx_crc = 0;
        rx_ddgst_have = 0;
    }
    // A new (or no) connection: the parser state and the unparsed bytes of the last one go.
    void reset_stream() noexcept {
        reset_rx();
        rpos = rend = 0;
    }
};

}  // namespace strata::nvme
