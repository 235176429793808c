// Decoding a completion word (CHANSTS layout) against the driver's ring: the one place where
// device-provided values enter the driver's accounting. Pure and allocation-free, so the fuzz
// target (fuzz/ioat_completion.cpp) can feed it hostile values directly.
#pragma once

#include <cstdint>

#include <strata/ioat/spec/registers.h>

namespace strata::ioat::internal {

struct RingView {
    uint64_t ring_iova = 0;       // IOVA of slot 0 (64-byte aligned)
    uint32_t ring_size = 0;       // slots, a power of two
    uint32_t last_completed = 0;  // slot index of the last descriptor known complete
    uint64_t in_flight = 0;       // descriptors handed to the device and not yet complete
    // Descriptors retired on CHANSTS (read by MMIO) beyond the last completion word: a word
    // pointing up to this many descriptors back is an older write, not an error.
    uint64_t stale_window = 0;
};

enum class CompletionKind : uint8_t {
    progress,  // `count` more descriptors complete; channel active or idle (or armed)
    halted,    // `count` more descriptors complete, then the channel halted on the next one
    stale,     // an older completion than already known (see RingView::stale_window): ignore
    bad,       // impossible value: address outside the ring, count above in_flight, bad state
};

struct CompletionDecode {
    CompletionKind kind = CompletionKind::bad;
    uint32_t count = 0;    // newly completed descriptors (0 for bad)
    const char* why = "";  // for bad: a static reason for logs
};

constexpr CompletionDecode decode_completion(uint64_t raw, const RingView& ring) noexcept {
    CompletionDecode d{};
    const spec::ChanSts sts{raw};
    const uint64_t addr = sts.completed_descriptor();
    const uint64_t ring_bytes = uint64_t{ring.ring_size} * 64;
    if (ring.ring_size == 0 || (ring.ring_size & (ring.ring_size - 1)) != 0) {
        d.why = "ring size";
        return d;
    }
    if (addr < ring.ring_iova || addr - ring.ring_iova >= ring_bytes) {
        if (sts.state() == spec::ChanState::halted) {
            // Halted before completing anything since the (re)start: CHANSTS still holds the
            // reset value. Nothing is known complete; the halt stands.
            d.kind = CompletionKind::halted;
            return d;
        }
        d.why = "completed descriptor address outside the ring";
        return d;
    }
    const uint32_t mask = ring.ring_size - 1;
    const auto idx = static_cast<uint32_t>((addr - ring.ring_iova) / 64);
    const uint32_t count = (idx - ring.last_completed) & mask;
    if (count > ring.in_flight) {
        const uint32_t behind = (ring.last_completed - idx) & mask;
        if (behind < ring.stale_window) {
            d.kind = CompletionKind::stale;
            return d;
        }
        d.why = "completion beyond the descriptors in flight";
        return d;
    }
    switch (sts.state()) {
        case spec::ChanState::active:
        case spec::ChanState::idle:
        case spec::ChanState::armed:
            d.kind = CompletionKind::progress;
            break;
        case spec::ChanState::halted:
            d.kind = CompletionKind::halted;
            break;
        default:  // suspended (the driver never suspends) or an undefined state
            d.why = "unexpected channel state";
            return d;
    }
    d.count = count;
    return d;
}

}  // namespace strata::ioat::internal
