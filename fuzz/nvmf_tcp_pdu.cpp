// Fuzz target: the NVMe/TCP target's PDU receiver (nvmf::tcp::PduReceiver) over arbitrary
// host-to-controller bytes, fed twice: once in chunks at fuzzer-chosen split points (with
// direct placement through data_iov_remaining/data_received where the chunk allows) and once
// as one buffer. Invariants:
//   - feed() consumes at most what it was given; an event other than `none` stops it
//   - after an error: failed(), and every later feed() reports the error and consumes nothing
//   - a header event repeats until set_data_destination()/discard_data()
//   - data lands only inside the destination iovecs (guard bytes around them stay intact) and
//     data_iov_remaining() never describes more than the PDU's remaining data
//   - the split run and the whole-buffer run give the same events, FES/FEI and placed data
//
// Input: byte 0 = config: bit 0 hdgst, bit 1 ddgst (before the ICReq), bit 2 negotiate the
// digests from the ICReq like the connection does, bits 3..7 cpda (0..31);
// byte 1 = limits: bits 0..1 max_in_capsule (0, 4096, 8192, 131072), bits 2..3 maxh2cdata
// (4096, 8192, 65536, 131072), bits 4..7 split mode (0: one buffer; else chunk sizes from a
// PRNG seeded with byte 2, at most 1 << mode bytes); byte 2 = split seed; byte 3 = placement
// seed (per PDU: discard, one iovec, or several; bit 7 also defers the data digests of PDUs
// with 512 data bytes or more to the caller, ddgst_defer_min); the rest is the byte stream.
// Seeds: fuzz/corpus/gen_nvmf_tcp.py (see fuzz/corpus/README.md).
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <vector>

#include <strata/nvmf/internal/tcp_pdu.h>

#include "fuzz_check.h"
#include "split_feed.h"

namespace {

using strata::nvmf::tcp::PduReceiver;
using strata::nvmf::tcp::RecvConfig;
using strata::nvmf::tcp::RecvEvent;
namespace pdu = strata::nvme::spec::tcp;

constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xE7;

struct Outcome {
    std::vector<uint8_t> events;  // event kinds, with the data length for headers
    std::vector<uint8_t> placed;  // every placed PDU's data
    bool failed = false;
    uint32_t fes = 0, fei = 0;
    uint64_t pdus = 0;
};

// One placement per PDU: the destination is the data length split into up to 4 iovecs, each
// inside a guarded arena; or the data is discarded.
struct Placement {
    std::vector<uint8_t> arena;
    iovec iov[4]{};
    uint32_t cnt = 0;
    uint32_t len = 0;
    void set(uint32_t data_len, uint8_t mode) {
        len = data_len;
        cnt = mode % 4 == 0 ? 0 : mode % 4;  // 0: discard
        if (cnt == 0) return;
        arena.assign(data_len + kGuard * (cnt + 1), kGuardByte);
        uint32_t left = data_len;
        size_t off = kGuard;
        for (uint32_t i = 0; i < cnt; ++i) {
            const uint32_t take = i + 1 == cnt ? left : left / (cnt - i);
            iov[i] = {arena.data() + off, take};
            off += take + kGuard;
            left -= take;
        }
    }
    void check_guards() const {
        if (cnt == 0) return;
        size_t off = 0;
        for (uint32_t i = 0; i <= cnt; ++i) {
            for (size_t k = 0; k < kGuard; ++k) CHECK(arena[off + k] == kGuardByte);
            if (i < cnt) off += kGuard + iov[i].iov_len;
        }
    }
    void collect(std::vector<uint8_t>& out) const {
        for (uint32_t i = 0; i < cnt; ++i) {
            const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
            out.insert(out.end(), p, p + iov[i].iov_len);
        }
    }
};

Outcome run(const RecvConfig& cfg, bool negotiate, const uint8_t* data, size_t size,
            uint32_t split_mode, uint32_t split_seed, uint32_t place_seed) {
    Outcome o;
    PduReceiver rx(cfg);
    strata::fuzz::Rng place{place_seed * 2246822519u + 7};
    Placement cur;
    bool placing = false;
    strata::fuzz::feed_split(data, size, split_mode, split_seed, [&](const uint8_t* p,
                                                                     size_t chunk) {
        size_t used = 0;
        while (true) {
            // Direct placement: what the socket would readv straight into the destination.
            if (split_mode != 0 && rx.in_data() && used < chunk) {
                iovec v[4];
                const uint32_t k = rx.data_iov_remaining(v, 4);
                size_t room = 0;
                for (uint32_t i = 0; i < k; ++i) {
                    const auto* b = static_cast<const uint8_t*>(v[i].iov_base);
                    bool inside = false;
                    for (uint32_t j = 0; j < cur.cnt; ++j) {
                        const auto* d = static_cast<const uint8_t*>(cur.iov[j].iov_base);
                        if (b >= d && b + v[i].iov_len <= d + cur.iov[j].iov_len) inside = true;
                    }
                    CHECK(inside);
                    room += v[i].iov_len;
                }
                CHECK(room <= rx.data_length());
                size_t n = std::min(room, chunk - used);
                size_t left = n;
                for (uint32_t i = 0; i < k && left > 0; ++i) {
                    const size_t t = std::min(left, v[i].iov_len);
                    std::memcpy(v[i].iov_base, p + used + (n - left), t);
                    left -= t;
                }
                used += n;
                if (n) rx.data_received(n);
            }
            RecvEvent ev;
            const size_t n = rx.feed(p + used, chunk - used, &ev);
            CHECK(n <= chunk - used);
            used += n;
            if (ev == RecvEvent::none) {
                CHECK(used == chunk);
                return true;
            }
            if (ev == RecvEvent::error) {
                CHECK(rx.failed());
                CHECK(rx.error_header_length() <= pdu::term_req_max_data);
                o.failed = true;
                o.fes = static_cast<uint32_t>(rx.fes());
                o.fei = rx.fei();
                for (int i = 0; i < 2; ++i) {  // dead from now on
                    RecvEvent again;
                    CHECK(rx.feed(data, size, &again) == 0);
                    CHECK(again == RecvEvent::error);
                }
                o.events.push_back(3);
                return false;
            }
            if (ev == RecvEvent::header) {
                CHECK(!placing);
                const uint32_t len = rx.data_length();
                CHECK(len > 0);
                // Asking again without a decision gives the header again, consuming at most
                // the padding before the data (CPDA: up to 31 dwords past the header); if the
                // bytes end inside the padding, it reports nothing (all consumed).
                RecvEvent again;
                const size_t pad = rx.feed(p + used, chunk - used, &again);
                CHECK(again == RecvEvent::header ||
                      (again == RecvEvent::none && used + pad == chunk));
                CHECK(pad <= 4 * 32);
                used += pad;
                o.events.push_back(1);
                o.events.push_back(static_cast<uint8_t>(len));
                cur.set(len, static_cast<uint8_t>(place.next()));
                if (cur.cnt == 0)
                    rx.discard_data();
                else
                    rx.set_data_destination(cur.iov, cur.cnt);
                placing = true;
                continue;
            }
            // pdu
            o.events.push_back(2);
            o.events.push_back(rx.ch().pdu_type);
            o.events.push_back(rx.data_digest_ok());
            o.events.push_back(rx.data_digest_deferred());
            if (rx.data_digest_deferred()) {
                CHECK(rx.data_digest_ok());
                CHECK(rx.config().ddgst_defer_min != 0 &&
                      rx.data_length() >= rx.config().ddgst_defer_min);
            }
            if (placing) {
                cur.check_guards();
                cur.collect(o.placed);
                placing = false;
            }
            if (negotiate && rx.ch().type() == pdu::PduType::ic_req) {
                const auto ic = rx.header_as<pdu::IcReq>();
                rx.config().hdgst = (ic.dgst & pdu::dgst::hdgst_enable) != 0;
                rx.config().ddgst = (ic.dgst & pdu::dgst::ddgst_enable) != 0;
            }
        }
    });
    if (placing) cur.check_guards();
    o.pdus = rx.pdus_received();
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    static const uint32_t kInCapsule[4] = {0, 4096, 8192, 131072};
    static const uint32_t kMaxH2c[4] = {4096, 8192, 65536, 131072};
    RecvConfig cfg;
    cfg.hdgst = data[0] & 1;
    cfg.ddgst = data[0] & 2;
    const bool negotiate = data[0] & 4;
    cfg.cpda = data[0] >> 3;
    cfg.max_in_capsule = kInCapsule[data[1] & 3];
    cfg.maxh2cdata = kMaxH2c[(data[1] >> 2) & 3];
    cfg.ddgst_defer_min = (data[3] & 0x80) ? 512 : 0;
    const uint32_t split_mode = std::min<uint32_t>(data[1] >> 4, 12);
    const uint8_t* stream = data + 4;
    const size_t len = size - 4;
    const Outcome split = run(cfg, negotiate, stream, len, split_mode, data[2], data[3]);
    const Outcome whole = run(cfg, negotiate, stream, len, 0, 0, data[3]);
    CHECK(split.events == whole.events);
    CHECK(split.placed == whole.placed);
    CHECK(split.failed == whole.failed && split.fes == whole.fes && split.fei == whole.fei);
    CHECK(split.pdus == whole.pdus);
    return 0;
}
