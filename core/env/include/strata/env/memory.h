// DMA memory and IOVA translation.
//
// Every byte a device may reach is in the env's IOVA map: buffers from dma_alloc() and user
// memory added with register_memory(). Each runtime::Host has its own map: every call below acts
// on the current Host's (runtime::current_host()), so a buffer is freed, translated and reached by
// devices in the Host that allocated it; another Host does not know it (iova_of gives
// kInvalidIova, dma_free asserts, a device on that Host's emulated bus faults). Drivers hand devices IOVAs, never pointers; under the sim
// backend IOVAs deliberately differ from virtual addresses (they start at 0x10'0000'0000 and keep
// the page offset), so a pointer passed where an IOVA belongs is a DMA fault at once.
//
// Thread-safety: lookups (iova_of, translate) are lock-free and may run on any OS thread, also
// while another registers or frees (copy-on-write map). dma_alloc/dma_free/register/unregister
// are control path (a mutex, O(regions) copy): allocate up front, or use a DmaBufferCache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <strata/base/status.h>

namespace strata::runtime {
class Thread;
}

namespace strata::env {

inline constexpr uint64_t kInvalidIova = UINT64_MAX;

struct IovaSegment {
    uint64_t iova = 0;
    size_t len = 0;
    friend bool operator==(const IovaSegment&, const IovaSegment&) = default;
};

// size_bytes > 0; align a power of two (0: 64). The buffer's IOVA range is contiguous.
// Errc::invalid_argument for a zero size or a bad alignment, Errc::no_memory when exhausted.
Result<void*> dma_alloc(size_t size_bytes, size_t align = 64, bool zeroed = false);
// Frees a dma_alloc() buffer; nullptr is ignored. Freeing anything else (a pointer never
// allocated, already freed, or interior) is a programmer error: always-on assertion.
void dma_free(void* ptr) noexcept;

// Makes [addr, addr + len) reachable by devices. The range must not overlap a registration or
// an allocation (Errc::already_exists) and len > 0 (Errc::invalid_argument).
Result<void> register_memory(void* addr, size_t len);
// Removes exactly one earlier registration (same addr and len), else Errc::not_found.
Result<void> unregister_memory(void* addr, size_t len);

// IOVA of one byte, or kInvalidIova when it is not DMA memory. The data-path lookup: O(log n)
// with a per-OS-thread last-hit cache, no lock, no allocation.
uint64_t iova_of(const void* ptr) noexcept;

// The IOVA segments of [addr, addr + len), in order; a range spanning several regions yields
// several segments (IOVA-adjacent pieces are merged). Errc::not_found naming the first byte that
// is not DMA memory; Errc::invalid_argument for len == 0.
Result<std::vector<IovaSegment>> translate(const void* addr, size_t len);
// Data-path form: fills `out`, sets *count. Errc::not_found as above; Errc::no_space when `out`
// is too small (*count then holds the segments written).
Status translate(const void* addr, size_t len, std::span<IovaSegment> out, size_t* count) noexcept;

// Number of live DMA regions (allocations + registrations) of the current Host; tests check for
// leaks with it. Abandoned allocations (below) count: they are still mapped.
size_t dma_region_count() noexcept;

// Gives up a dma_alloc buffer that a device may still write (a DMA engine that never confirmed
// its reset): it stays allocated and mapped, and the Host's teardown and env::fini() report it at
// error level instead of asserting on a leak. dma_free may still free it later (once the device
// confirmed after all). Unknown pointers are ignored.
void dma_abandon(void* ptr) noexcept;
size_t dma_abandoned_count() noexcept;  // of the current Host

// A fixed-size DMA buffer cache owned by one runtime::Thread (typically inside an IoChannel):
// get()/put() take no lock and allocate only when the cache is empty. At most `capacity` free
// buffers are kept; put() beyond that frees. Not thread-safe: only the owning Thread may call
// get()/put() (asserted when the owner is known, i.e. created on a Thread).
class DmaBufferCache {
public:
    // Pre-fills `prefill` buffers (<= capacity). buffer_size_bytes > 0, capacity > 0.
    DmaBufferCache(size_t buffer_size_bytes, size_t capacity, size_t align = 4096,
                   size_t prefill = 0);
    ~DmaBufferCache();  // frees the cached buffers; buffers still out are the user's to put/free
    DmaBufferCache(const DmaBufferCache&) = delete;
    DmaBufferCache& operator=(const DmaBufferCache&) = delete;

    // A buffer of buffer_size_bytes, or nullptr if the cache is empty and dma_alloc failed.
    void* get() noexcept;
    void put(void* buf) noexcept;

    size_t buffer_size_bytes() const noexcept { return size_; }
    size_t cached() const noexcept { return free_.size(); }
    size_t capacity() const noexcept { return capacity_; }
    runtime::Thread* owner() const noexcept { return owner_; }

private:
    void check_owner() const noexcept;

    size_t size_;
    size_t align_;
    size_t capacity_;
    std::vector<void*> free_;  // reserved to capacity: push/pop never allocate
    runtime::Thread* owner_;
};

}  // namespace strata::env
