// The IOVA map: sorted DMA regions, shared by every backend (env's own and the emulated PCI bus).
// Each runtime::Host has its own (its DMA memory); the sim backend's emulated bus translates its
// devices' DMA through the map of the Host it was created in.
//
// Readers (lookups by virtual address or by IOVA) take no lock: the map is an immutable snapshot
// replaced copy-on-write under a writer mutex; retired snapshots are freed by the next writer
// that sees no reader inside a lookup. Each OS thread keeps a last-hit index per snapshot, so a
// run of lookups in one region costs a compare, the rest a binary search (O(log n)).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/memory.h>

namespace strata::runtime {
class Host;
}

namespace strata::env::backend {

enum class RegionKind : uint8_t { allocation, registration };

struct Region {
    uintptr_t vaddr = 0;
    uint64_t iova = 0;
    size_t len = 0;
    RegionKind kind = RegionKind::allocation;
    uint64_t backend_cookie = 0;  // the backend's (e.g. the host allocation to free)

    bool contains_vaddr(uintptr_t v) const noexcept { return v - vaddr < len; }
    bool contains_iova(uint64_t i) const noexcept { return i - iova < len; }
};

class IovaMap {
public:
    IovaMap();
    ~IovaMap();
    IovaMap(const IovaMap&) = delete;
    IovaMap& operator=(const IovaMap&) = delete;

    // Control path. Errc::already_exists when the virtual or IOVA range overlaps a region.
    Result<void> insert(const Region& region);
    // Removes the region starting at vaddr; returns it, or Errc::not_found.
    Result<Region> erase(uintptr_t vaddr);

    // Lock-free lookups. A copy of the region holding the byte, false when none.
    bool find_vaddr(uintptr_t vaddr, Region* out) const noexcept;
    bool find_iova(uint64_t iova, Region* out) const noexcept;
    uint64_t iova_of(uintptr_t vaddr) const noexcept;

    // Segments of [vaddr, vaddr + len) (IOVA-adjacent pieces merged). Errc::not_found (context
    // "unmapped") with *fault_vaddr set to the first unmapped byte; Errc::no_space when out is
    // too small.
    Status translate(uintptr_t vaddr, size_t len, std::span<IovaSegment> out, size_t* count,
                     uintptr_t* fault_vaddr) const noexcept;

    size_t size() const noexcept;
    std::vector<Region> regions() const;  // snapshot copy, sorted by vaddr

    // Bumped by every insert and erase (after the new snapshot is published): a region copied
    // while it read G is still mapped as copied while it reads G (env::TranslationCache).
    uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

private:
    struct Snapshot;
    class ReadGuard;
    void publish(Snapshot* next);  // under mu_

    std::atomic<const Snapshot*> current_;
    mutable std::atomic<uint64_t> readers_{0};
    std::mutex mu_;
    std::vector<const Snapshot*> retired_;  // under mu_
    std::atomic<uint64_t> generation_{0};    // written under mu_
};

// The current Host's map (runtime::current_host()): every backend records the regions allocated
// or registered in a Host in that Host's map.
IovaMap& iova_map() noexcept;
// A given Host's map (an emulated bus keeps the one of the Host it belongs to).
IovaMap& iova_map(runtime::Host& host) noexcept;

}  // namespace strata::env::backend
