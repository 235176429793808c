// Fuzz target: the iSCSI target's PDU receiver (iscsi::PduReceiver) over arbitrary
// initiator-to-target bytes, fed twice: in chunks at fuzzer-chosen split points and as one
// buffer. Invariants:
//   - feed() consumes at most what it was given; after an error every feed() reports it again
//     and consumes nothing
//   - a header event repeats until set_data_destination()/discard_data()
//   - data lands only inside the destination (guard bytes around it stay intact); the split run
//     also places data directly (in_data, data_iov_remaining, data_received), as the
//     connection's readv does
//   - the split run and the whole run give the same PDUs, data, digest verdicts and error
//   - with data digests, deferring them (data_digest_defer_min, a threshold from byte 1) gives
//     the same verdicts when the caller computes crc32c(data || padding()) against
//     data_digest(), as the target's accel path does (every PDU placed, none discarded)
//
// Input: byte 0 = config: bit 0 header digest, bit 1 data digest, bits 2..3
// MaxRecvDataSegmentLength (512, 8192, 65536, 262144), bits 4..7 split mode (0: one buffer;
// else chunks of at most 1 << mode bytes from a PRNG seeded with byte 1); byte 1 = split seed;
// byte 2 = placement seed (per PDU: discard or one destination); the rest is the stream.
// Seeds: fuzz/corpus/gen_iscsi.py.
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <strata/base/crc.h>
#include <strata/iscsi/internal/pdu.h>

#include "fuzz_check.h"
#include "split_feed.h"

namespace {

using namespace strata::iscsi;

constexpr size_t kGuard = 32;
constexpr uint8_t kGuardByte = 0xA5;

struct Outcome {
    std::vector<uint8_t> trace;  // headers, data and verdicts of every PDU
    int error = 0;
    uint64_t pdus = 0;
};

Outcome run(const RecvConfig& cfg, const uint8_t* data, size_t size, uint32_t mode, uint32_t seed,
            uint32_t place_seed, bool place_all = false) {
    Outcome o;
    PduReceiver rx(cfg);
    strata::fuzz::Rng place{place_seed * 2246822519u + 7};
    std::vector<uint8_t> arena;
    iovec iov{};
    bool discard = false;
    strata::fuzz::feed_split(data, size, mode, seed, [&](const uint8_t* p, size_t chunk) {
        size_t used = 0;
        while (true) {
            // Direct placement (split runs only): what the connection would readv straight
            // into the destination; the whole-buffer run feeds it, and both must agree.
            if (mode != 0 && rx.in_data() && used < chunk) {
                iovec v[4];
                const uint32_t k = rx.data_iov_remaining(v, 4);
                CHECK(k == 1);
                const auto* b = static_cast<const uint8_t*>(v[0].iov_base);
                const auto* d = static_cast<const uint8_t*>(iov.iov_base);
                CHECK(b >= d && b + v[0].iov_len <= d + iov.iov_len);
                const size_t n = std::min(v[0].iov_len, chunk - used);
                std::memcpy(v[0].iov_base, p + used, n);
                used += n;
                rx.data_received(n);
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
                RecvEvent again;
                CHECK(rx.feed(data, size, &again) == 0 && again == RecvEvent::error);
                o.error = int(rx.error());
                return false;
            }
            if (ev == RecvEvent::header) {
                const uint32_t len = rx.data_length();
                CHECK(len > 0 && len <= cfg.max_recv_data_segment_length);
                RecvEvent again;
                CHECK(rx.feed(p + used, chunk - used, &again) == 0);
                CHECK(again == RecvEvent::header);
                discard = place.next() % 4 == 0 && !place_all;
                if (discard) {
                    rx.discard_data();
                } else {
                    arena.assign(len + 2 * kGuard, kGuardByte);
                    iov = {arena.data() + kGuard, len};
                    rx.set_data_destination(&iov, 1);
                }
                continue;
            }
            // pdu
            const uint32_t hl = kBhsSize + rx.ahs_length();
            o.trace.insert(o.trace.end(), rx.header(), rx.header() + hl);
            if (rx.data_digest_deferred()) {
                CHECK(rx.data_digest_ok() && !discard);
                const uint32_t crc =
                    strata::crc32c(strata::crc32c(0, arena.data() + kGuard, rx.data_length()),
                                   rx.padding().data(), rx.padding().size());
                o.trace.push_back(crc == rx.data_digest());
            } else {
                o.trace.push_back(rx.data_digest_ok());
            }
            if (rx.data_length() && !discard) {
                for (size_t i = 0; i < kGuard; ++i) {
                    CHECK(arena[i] == kGuardByte);
                    CHECK(arena[kGuard + rx.data_length() + i] == kGuardByte);
                }
                o.trace.insert(o.trace.end(), arena.begin() + kGuard,
                               arena.begin() + kGuard + rx.data_length());
            }
            CHECK(rx.at_pdu_boundary());
        }
    });
    o.pdus = rx.pdus_received();
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 3) return 0;
    static const uint32_t kMrdsl[4] = {512, 8192, 65536, 262144};
    RecvConfig cfg;
    cfg.header_digest = data[0] & 1;
    cfg.data_digest = data[0] & 2;
    cfg.max_recv_data_segment_length = kMrdsl[(data[0] >> 2) & 3];
    const uint32_t mode = std::min<uint32_t>(data[0] >> 4, 12);
    cfg.from_target = (data[0] >> 4) > 12;  // 13..15: an initiator's receiver (target opcodes)
    const Outcome a = run(cfg, data + 3, size - 3, mode, data[1], data[2]);
    const Outcome b = run(cfg, data + 3, size - 3, 0, 0, data[2]);
    CHECK(a.trace == b.trace);
    CHECK(a.error == b.error);
    CHECK(a.pdus == b.pdus);
    if (cfg.data_digest) {
        RecvConfig deferred = cfg;
        deferred.data_digest_defer_min = 1 + uint32_t{data[1]} * 16;
        const Outcome c = run(cfg, data + 3, size - 3, 0, 0, data[2], true);
        const Outcome d = run(deferred, data + 3, size - 3, mode, data[1], data[2], true);
        CHECK(c.trace == d.trace);
        CHECK(c.error == d.error);
    }
    return 0;
}
