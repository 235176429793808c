// Bounded lock-free multi-producer single-consumer ring of trivially copyable entries.
//
// Producers reserve a slot with one CAS on the tail and publish it through the slot's
// sequence number (Vyukov's bounded queue); the single consumer needs no atomic RMW at all.
// Entries from one producer come out in the order that producer pushed them. A full ring
// refuses the push instead of blocking or allocating.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

#include <strata/base/assert.h>

namespace strata {

template <class T>
class MpscRing {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    explicit MpscRing(size_t capacity) : mask_(capacity - 1), slots_(new Slot[capacity]) {
        STRATA_ASSERT_MSG(capacity >= 2 && (capacity & (capacity - 1)) == 0,
                          "ring capacity must be a power of two");
        for (size_t i = 0; i < capacity; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
    }
    MpscRing(const MpscRing&) = delete;
    MpscRing& operator=(const MpscRing&) = delete;

    // Any OS thread. False when the ring is full.
    bool push(const T& value) noexcept {
        uint64_t pos = tail_.load(std::memory_order_relaxed);
        Slot* slot;
        for (;;) {
            slot = &slots_[pos & mask_];
            uint64_t seq = slot->seq.load(std::memory_order_acquire);
            auto diff = static_cast<int64_t>(seq - pos);
            if (diff == 0) {
                if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
            } else if (diff < 0) {
                return false;
            } else {
                pos = tail_.load(std::memory_order_relaxed);
            }
        }
        slot->value = value;
        slot->seq.store(pos + 1, std::memory_order_release);
        return true;
    }

    // Consumer only. False when empty (or the next producer has not published yet).
    bool pop(T& out) noexcept {
        uint64_t head = head_.load(std::memory_order_relaxed);
        Slot& slot = slots_[head & mask_];
        if (slot.seq.load(std::memory_order_acquire) != head + 1) return false;
        out = slot.value;
        slot.seq.store(head + mask_ + 1, std::memory_order_release);
        head_.store(head + 1, std::memory_order_relaxed);
        return true;
    }

    // Consumer only: whether pop() would return an entry now.
    bool ready() const noexcept {
        uint64_t head = head_.load(std::memory_order_relaxed);
        return slots_[head & mask_].seq.load(std::memory_order_acquire) == head + 1;
    }

    // Approximate from any thread; exact from the consumer when producers are quiet.
    size_t size_approx() const noexcept {
        uint64_t tail = tail_.load(std::memory_order_acquire);
        uint64_t head = head_.load(std::memory_order_relaxed);
        return tail >= head ? static_cast<size_t>(tail - head) : 0;
    }
    size_t capacity() const noexcept { return mask_ + 1; }

private:
    struct Slot {
        std::atomic<uint64_t> seq;
        T value;
    };
    const uint64_t mask_;
    std::unique_ptr<Slot[]> slots_;
    alignas(64) std::atomic<uint64_t> tail_{0};
    alignas(64) std::atomic<uint64_t> head_{0};  // written by the consumer only
};

}  // namespace strata
