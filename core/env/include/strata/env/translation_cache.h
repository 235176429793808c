// A last-translation cache in front of env::translate (memory.h) for one queue's data path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <strata/base/status.h>
#include <strata/env/memory.h>

namespace strata::env {

// Owned and used by one Thread: the DMA regions recently found through it, direct-mapped by
// 4 KiB page of the address (kEntries slots, 8 KiB). I/O mostly reuses the same buffers (a
// queue's worth of them, one region each under the sim env), so a hit is a few compares and a
// plain load of the IOVA map's generation, where a lookup in the map costs a search and two
// locked read-modify-writes (its reader count). Any dma_alloc / dma_free / registration change
// in the Host invalidates every entry. The map is the current Host's at the first call.
struct TranslationCache {
    static constexpr size_t kEntries = 256;
    struct Entry {
        uint64_t generation = 0;
        uintptr_t vaddr = 0;
        size_t len = 0;  // 0: empty
        uint64_t iova = 0;
    };
    const void* map = nullptr;
    Entry entries[kEntries];
    Entry& slot(uintptr_t v) noexcept { return entries[(v >> 12) % kEntries]; }
};

// Whether the first and the last byte of [addr, addr + len) are DMA memory (iova_of != kInvalidIova
// for both; len 0: addr alone), through `cache`: a range inside the cached region answers at once.
bool is_dma_memory(const void* addr, size_t len, TranslationCache& cache) noexcept;

// translate() (memory.h) through `cache`: the same results and errors; a range inside the cached
// region gives one segment.
Status translate(const void* addr, size_t len, std::span<IovaSegment> out, size_t* count,
                 TranslationCache& cache) noexcept;

}  // namespace strata::env
