// DMA memory on DPDK (see dpdk_memory.h).
#include "dpdk_memory.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_set>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_memzone.h>
#include <rte_vfio.h>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/base/log.h>

#include "dpdk_pci.h"

namespace strata::env::dpdk {

STRATA_LOG_COMPONENT(dpdk_mem);

namespace {

bool iova_is_va() noexcept {
    return rte_eal_iova_mode() == RTE_IOVA_VA;
}

// Memzone fallback for PA-mode buffers that rte_malloc could not give IOVA-contiguously.
struct Memzones {
    std::mutex mu;
    std::atomic<size_t> count{0};
    uint64_t next_id = 0;
    std::map<uintptr_t, const rte_memzone*> by_addr;
};

Memzones& memzones() {
    static Memzones m;
    return m;
}

// The smallest page size among DPDK's memory (hugepage size, or 4 KiB with no_huge), read once.
uint64_t min_page_size() noexcept {
    static const uint64_t size = [] {
        uint64_t min = 0;
        rte_memseg_list_walk(
            [](const rte_memseg_list* msl, void* arg) -> int {
                auto* m = static_cast<uint64_t*>(arg);
                if (msl->page_sz != 0 && (*m == 0 || msl->page_sz < *m)) *m = msl->page_sz;
                return 0;
            },
            &min);
        return min != 0 ? min : uint64_t{4096};
    }();
    return size;
}

bool iova_contiguous(const void* addr, size_t len, uint64_t iova) noexcept {
    auto first = reinterpret_cast<uintptr_t>(addr);
    uint64_t small = min_page_size();
    if (first / small == (first + len - 1) / small) return true;  // inside one page
    const rte_memseg* ms = rte_mem_virt2memseg(addr, nullptr);
    if (ms == nullptr) return false;
    uint64_t page = ms->hugepage_sz != 0 ? ms->hugepage_sz : ms->len;
    if (page == 0) return false;
    auto base = reinterpret_cast<uintptr_t>(addr);
    // Check the first byte of every page the buffer touches after the first.
    for (uintptr_t p = (base / page + 1) * page; p < base + len; p += page) {
        if (dpdk_virt2iova(reinterpret_cast<const void*>(p)) != iova + (p - base)) return false;
    }
    return true;
}

Result<DmaBuffer> memzone_alloc(size_t size, size_t align, bool zero, int socket) {
    Memzones& mz = memzones();
    std::lock_guard lock(mz.mu);
    char name[RTE_MEMZONE_NAMESIZE];
    snprintf(name, sizeof(name), "strata_dma_%llu", static_cast<unsigned long long>(mz.next_id++));
    unsigned a = static_cast<unsigned>(align < RTE_CACHE_LINE_SIZE ? RTE_CACHE_LINE_SIZE : align);
    const rte_memzone* z =
        rte_memzone_reserve_aligned(name, size, socket, RTE_MEMZONE_IOVA_CONTIG, a);
    if (z == nullptr) {
        return Error(Errc::no_memory,
                     fmt::format("dpdk: no IOVA-contiguous memory for a {}-byte DMA buffer: {}",
                                 size, rte_strerror(rte_errno)));
    }
    if (zero) memset(z->addr, 0, size);
    mz.by_addr.emplace(reinterpret_cast<uintptr_t>(z->addr), z);
    mz.count.fetch_add(1, std::memory_order_release);
    return DmaBuffer{z->addr, z->iova, size};
}

#ifndef NDEBUG
// Debug builds: every live buffer, so a double free or a free of a foreign pointer is caught at
// the call instead of being a log line from DPDK's heap (rte_free cannot report it).
struct LiveBuffers {
    std::mutex mu;
    std::unordered_set<uintptr_t> live;
};
LiveBuffers& live_buffers() {
    static LiveBuffers l;
    return l;
}
void track_alloc(const void* p) {
    LiveBuffers& l = live_buffers();
    std::lock_guard lock(l.mu);
    l.live.insert(reinterpret_cast<uintptr_t>(p));
}
void track_free(const void* p) {
    LiveBuffers& l = live_buffers();
    std::lock_guard lock(l.mu);
    STRATA_ASSERT_MSG(l.live.erase(reinterpret_cast<uintptr_t>(p)) == 1,
                      "dpdk dma_free(%p): double free, or not a buffer from dma_alloc", p);
}
#else
void track_alloc(const void*) {}
void track_free(const void*) {}
#endif

// Boundary pages of user registrations that are shared with a neighbour: mapped into the vfio
// container while any registration touching them exists.
struct UserMaps {
    std::mutex mu;
    std::map<uintptr_t, uint32_t> boundary_refs;
};

UserMaps& user_maps() {
    static UserMaps u;
    return u;
}

bool vfio_in_use() noexcept {
    return rte_vfio_is_enabled("vfio_pci") != 0;
}

}  // namespace

VfioPagePlan plan_vfio_pages(uintptr_t va, size_t len, uintptr_t page) noexcept {
    VfioPagePlan p;
    if (len == 0 || page == 0) return p;
    uintptr_t end = va + len;
    uintptr_t up = (va + page - 1) / page * page;
    uintptr_t down = end / page * page;
    if (up < down) {
        p.interior_begin = up;
        p.interior_end = down;
    }
    if (va % page != 0) p.boundary[p.n_boundary++] = va / page * page;
    if (end % page != 0) {
        uintptr_t last = (end - 1) / page * page;
        if (p.n_boundary == 0 || p.boundary[0] != last) p.boundary[p.n_boundary++] = last;
    }
    return p;
}

namespace {

Result<DmaBuffer> dma_alloc_untracked(size_t size, size_t align, bool zero, int socket,
                                      bool contiguous) noexcept {
    if (size == 0) return Error(Errc::invalid_argument, "dpdk: DMA buffer of size 0");
    if (align > 1 && (align & (align - 1)) != 0) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: DMA alignment {} is not a power of two", align));
    }
    if (align > (size_t{1} << 30) || size > (size_t{1} << 40)) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: implausible DMA buffer (size {}, align {})", size, align));
    }
    unsigned a = align <= 1 ? 0 : static_cast<unsigned>(align);
    int sock = socket < 0 ? SOCKET_ID_ANY : socket;
    void* p = zero ? rte_zmalloc_socket("strata_dma", size, a, sock)
                   : rte_malloc_socket("strata_dma", size, a, sock);
    if (p == nullptr) {
        return Error(Errc::no_memory,
                     fmt::format("dpdk: DPDK heap exhausted allocating a {}-byte DMA buffer (raise "
                                 "the env's memory_mb or reserve more hugepages)",
                                 size));
    }
    uint64_t iova = rte_malloc_virt2iova(p);
    if (iova_is_va() || !contiguous || iova_contiguous(p, size, iova)) {
        return DmaBuffer{p, iova, size};
    }
    rte_free(p);
    if (size <= min_page_size()) {
        // Aligned to the next power of two >= size, a buffer cannot cross a page boundary.
        size_t pow2 = 1;
        while (pow2 < size) pow2 <<= 1;
        unsigned a2 = static_cast<unsigned>(pow2 > align ? pow2 : align);
        p = zero ? rte_zmalloc_socket("strata_dma", size, a2, sock)
                 : rte_malloc_socket("strata_dma", size, a2, sock);
        if (p != nullptr) return DmaBuffer{p, rte_malloc_virt2iova(p), size};
    }
    auto mz = memzone_alloc(size, align, zero, sock);
    if (!mz && size > min_page_size()) {
        return Error(Errc::no_memory,
                     fmt::format("dpdk: no IOVA-contiguous {}-byte DMA buffer: in IOVA mode PA (no "
                                 "IOMMU) a buffer larger than a hugepage ({} bytes) needs "
                                 "physically adjacent hugepages and none are free; use smaller "
                                 "buffers, 1 GiB hugepages, or an IOMMU (IOVA mode va)",
                                 size, min_page_size()));
    }
    return mz;
}

}  // namespace

Result<DmaBuffer> dma_alloc(size_t size, size_t align, bool zero, int socket,
                            bool contiguous) noexcept {
    auto b = dma_alloc_untracked(size, align, zero, socket, contiguous);
    if (b.ok()) track_alloc(b->addr);
    return b;
}

void dma_free(void* addr) noexcept {
    if (addr == nullptr) return;
    track_free(addr);
    Memzones& mz = memzones();
    if (mz.count.load(std::memory_order_acquire) != 0) {
        std::lock_guard lock(mz.mu);
        auto it = mz.by_addr.find(reinterpret_cast<uintptr_t>(addr));
        if (it != mz.by_addr.end()) {
            rte_memzone_free(it->second);
            mz.by_addr.erase(it);
            mz.count.fetch_sub(1, std::memory_order_release);
            return;
        }
    }
    rte_free(addr);
}

uint64_t dpdk_virt2iova(const void* addr) noexcept {
    // Through the memseg (an index into its list) rather than rte_mem_virt2iova, which in IOVA
    // mode PA walks every memseg (microseconds) and in mode VA answers for any pointer at all.
    const rte_memseg* ms = rte_mem_virt2memseg(addr, nullptr);
    if (ms == nullptr || ms->iova == RTE_BAD_IOVA) return UINT64_MAX;
    return ms->iova + (reinterpret_cast<uintptr_t>(addr) - reinterpret_cast<uintptr_t>(ms->addr));
}

Result<std::vector<IovaSegment>> dpdk_iova_segments(const void* addr, size_t len) {
    std::vector<IovaSegment> out;
    auto p = reinterpret_cast<uintptr_t>(addr);
    uintptr_t end = p + len;
    while (p < end) {
        const rte_memseg* ms = rte_mem_virt2memseg(reinterpret_cast<const void*>(p), nullptr);
        if (ms == nullptr || ms->iova == RTE_BAD_IOVA) {
            return Error(Errc::not_found,
                         fmt::format("dpdk: address {:#x} is not in DPDK's memory", p));
        }
        uintptr_t seg_end = reinterpret_cast<uintptr_t>(ms->addr) + ms->len;
        uintptr_t piece_end = seg_end < end ? seg_end : end;
        uint64_t iova = ms->iova + (p - reinterpret_cast<uintptr_t>(ms->addr));
        if (!out.empty() && out.back().vaddr + out.back().len == p &&
            out.back().iova + out.back().len == iova) {
            out.back().len += piece_end - p;
        } else {
            out.push_back(IovaSegment{p, iova, piece_end - p});
        }
        p = piece_end;
    }
    return out;
}

Result<std::vector<IovaSegment>> register_user_memory(void* addr, size_t len) {
    if (addr == nullptr || len == 0) {
        return Error(Errc::invalid_argument, "dpdk: register of an empty memory range");
    }
    auto va = reinterpret_cast<uintptr_t>(addr);
    if (!iova_is_va()) {
        // No IOMMU: the device sees physical addresses. Only DPDK's own (pinned) memory has them.
        auto segs = dpdk_iova_segments(addr, len);
        if (!segs) {
            return Error(Errc::not_supported,
                         fmt::format("dpdk: cannot register [{}, +{}) for DMA in IOVA mode PA (no "
                                     "IOMMU): only memory from the env's DMA allocator has a "
                                     "stable physical address; allocate the buffer with the env "
                                     "or run with an IOMMU (IOVA mode va)",
                                     addr, len));
        }
        return segs;
    }
    if (vfio_in_use()) {
        auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
        VfioPagePlan plan = plan_vfio_pages(va, len, page);
        UserMaps& um = user_maps();
        std::lock_guard lock(um.mu);
        if (plan.interior_end > plan.interior_begin) {
            auto r =
                vfio_register_region(reinterpret_cast<void*>(plan.interior_begin),
                                     plan.interior_begin, plan.interior_end - plan.interior_begin);
            if (!r) return r.error();
        }
        for (int i = 0; i < plan.n_boundary; ++i) {
            uintptr_t pg = plan.boundary[i];
            if (um.boundary_refs[pg]++ == 0) {
                auto r = vfio_register_region(reinterpret_cast<void*>(pg), pg, page);
                if (!r) {
                    // Roll back what this call did.
                    if (--um.boundary_refs[pg] == 0) um.boundary_refs.erase(pg);
                    for (int j = 0; j < i; ++j) {
                        uintptr_t q = plan.boundary[j];
                        if (--um.boundary_refs[q] == 0) {
                            um.boundary_refs.erase(q);
                            (void)vfio_unregister_region(reinterpret_cast<void*>(q));
                        }
                    }
                    if (plan.interior_end > plan.interior_begin) {
                        (void)vfio_unregister_region(reinterpret_cast<void*>(plan.interior_begin));
                    }
                    return r.error();
                }
            }
        }
    }
    return std::vector<IovaSegment>{IovaSegment{va, static_cast<uint64_t>(va), len}};
}

Result<void> unregister_user_memory(void* addr, size_t len) {
    if (!iova_is_va() || !vfio_in_use()) return {};
    auto va = reinterpret_cast<uintptr_t>(addr);
    auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    VfioPagePlan plan = plan_vfio_pages(va, len, page);
    UserMaps& um = user_maps();
    std::lock_guard lock(um.mu);
    Result<void> result;
    if (plan.interior_end > plan.interior_begin) {
        if (auto r = vfio_unregister_region(reinterpret_cast<void*>(plan.interior_begin)); !r) {
            result = r;
        }
    }
    for (int i = 0; i < plan.n_boundary; ++i) {
        uintptr_t pg = plan.boundary[i];
        auto it = um.boundary_refs.find(pg);
        if (it == um.boundary_refs.end()) continue;
        if (--it->second == 0) {
            um.boundary_refs.erase(it);
            if (auto r = vfio_unregister_region(reinterpret_cast<void*>(pg)); !r && result.ok()) {
                result = r;
            }
        }
    }
    return result;
}

}  // namespace strata::env::dpdk
