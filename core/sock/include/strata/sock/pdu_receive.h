#pragma once
// The receive loop of a PDU-framed protocol on a Socket (NVMe/TCP, iSCSI): bytes are read into a
// staging buffer and fed to the protocol's receiver PDU by PDU, except the data still to come of
// the PDU being received, which is read straight into its destination (a command's buffer) with
// no copy through staging.
//
// A Receiver provides: size_t feed(const uint8_t*, size_t, Event*) (consumes bytes, reports an
// event or Event::none), bool in_data(), uint32_t data_iov_remaining(iovec*, uint32_t),
// void data_received(size_t), bool at_pdu_boundary().

#include <strata/base/status.h>
#include <strata/sock/sock.h>

#include <sys/uio.h>
#include <cstdint>
#include <memory>

namespace strata::sock {

// The staging buffer and its unread window [head, tail).
struct RxStaging {
    explicit RxStaging(uint32_t bytes) : buf(std::make_unique<uint8_t[]>(bytes)), size(bytes) {}
    std::unique_ptr<uint8_t[]> buf;
    uint32_t size;
    uint32_t head = 0;
    uint32_t tail = 0;
};

enum class RxEnd {
    yielded,  // the socket is drained (or the round limit was reached): called again when ready
    stopped,  // on_event returned false: the connection stopped reading or closed
    closed,   // the peer closed the connection at a PDU boundary
    lost,     // the connection failed, or the peer closed it in the middle of a PDU
};

// Feeds what staging holds, then reads more, until the socket is drained, on_event(event)
// returns false, or kMaxRounds reads were made (so that one busy connection cannot hold its poll
// group). A read shorter than asked ends the loop: every Socket implementation is
// level-triggered, so the group reports the socket again when more arrives, and no read is
// spent on EAGAIN.
template <uint32_t kMaxDirectIovs, int kMaxRounds = 16, class Receiver, class OnEvent>
RxEnd receive_pdus(Socket& sock, RxStaging& st, Receiver& rx, OnEvent&& on_event) noexcept {
    bool drained = false;
    for (int round = 0;; ++round) {
        // A zero-length feed also delivers an event pending after direct placement.
        while (true) {
            typename Receiver::Event ev{};
            const size_t n = rx.feed(st.buf.get() + st.head, st.tail - st.head, &ev);
            st.head += static_cast<uint32_t>(n);
            if (ev == Receiver::Event::none) break;
            if (!on_event(ev)) return RxEnd::stopped;
        }
        if (drained || round == kMaxRounds) return RxEnd::yielded;
        st.head = st.tail = 0;
        const bool direct = rx.in_data();
        size_t asked = st.size;
        Result<size_t> r = [&] {
            if (direct) {
                iovec v[kMaxDirectIovs];
                const uint32_t k = rx.data_iov_remaining(v, kMaxDirectIovs);
                asked = 0;
                for (uint32_t i = 0; i < k; ++i) asked += v[i].iov_len;
                return sock.readv(v, static_cast<int>(k));
            }
            return sock.read(st.buf.get(), st.size);
        }();
        if (!r) {
            if (r.error().code() == Errc::busy) return RxEnd::yielded;
            return r.error().code() == Errc::shutdown && rx.at_pdu_boundary() ? RxEnd::closed
                                                                              : RxEnd::lost;
        }
        if (direct)
            rx.data_received(*r);
        else
            st.tail = static_cast<uint32_t>(*r);
        drained = *r < asked;
    }
}

}  // namespace strata::sock
