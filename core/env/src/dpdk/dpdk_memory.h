// DMA memory on DPDK for the dpdk env backend (private to core/env).
//
// Buffers come from DPDK's heap (rte_malloc on hugepages, or anonymous memory with no_huge) and
// are IOVA-contiguous: in IOVA mode VA every buffer is (IOVA == VA); in mode PA rte_malloc may
// hand out a buffer that straddles two hugepages at unrelated physical addresses, so such a buffer
// is returned and the allocation retried as an IOVA-contiguous memzone. DPDK maps all of its own
// memory into the vfio container itself.
//
// User memory (the env's register-memory call) is mapped for device DMA with IOVA == VA, which is
// only meaningful in IOVA mode VA (an IOMMU translates it). In mode PA there is no IOMMU, so user
// memory is accepted only if it already lies inside DPDK's memory (its IOVAs are then DPDK's).
//
// Thread-safety: alloc/free may be called from any OS thread (DPDK's heap has its own lock);
// register/unregister are control path and serialised internally.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <strata/base/status.h>

namespace strata::env::dpdk {

struct DmaBuffer {
    void* addr = nullptr;
    uint64_t iova = 0;
    size_t size_bytes = 0;
};

// size > 0; align a power of two (0 or 1: DPDK's cache-line default). socket -1: any NUMA node.
// Errc::no_memory when DPDK's heap (or the hugepage pool) is exhausted, or when `contiguous` is
// asked in IOVA mode PA for a buffer larger than a hugepage and no physically contiguous run of
// hugepages exists (the message says so). contiguous == false accepts a buffer whose IOVA is
// contiguous only per hugepage: dpdk_iova_segments() then returns several pieces and `iova` is
// the first one's.
Result<DmaBuffer> dma_alloc(size_t size_bytes, size_t align, bool zero, int socket = -1,
                            bool contiguous = true) noexcept;
void dma_free(void* addr) noexcept;

// IOVA of one byte of DPDK memory, or UINT64_MAX if the address is not DPDK memory.
uint64_t dpdk_virt2iova(const void* addr) noexcept;

struct IovaSegment {
    uintptr_t vaddr;
    uint64_t iova;
    size_t len;
};

// Maximal IOVA-contiguous pieces of [addr, addr + len). Errc::not_found if any byte of the range
// is not DPDK memory.
Result<std::vector<IovaSegment>> dpdk_iova_segments(const void* addr, size_t len);

// User memory for DMA. Returns the IOVA pieces to record in the env's IOVA map (one piece with
// IOVA == VA in IOVA mode VA). With vfio functions present, the pages are mapped into the vfio
// container (partial first/last pages are shared with neighbouring registrations and
// reference-counted). Errc::not_supported in IOVA mode PA for memory outside DPDK's heap.
Result<std::vector<IovaSegment>> register_user_memory(void* addr, size_t len);
Result<void> unregister_user_memory(void* addr, size_t len);

// How a user registration is cut for the vfio container (pure; exposed for tests): the whole
// pages inside [va, va + len) as one mapping, plus the partial first/last pages, which may be
// shared with a neighbouring registration and are mapped once, reference-counted.
struct VfioPagePlan {
    uintptr_t interior_begin = 0, interior_end = 0;  // empty when equal
    uintptr_t boundary[2] = {0, 0};
    int n_boundary = 0;
};
VfioPagePlan plan_vfio_pages(uintptr_t va, size_t len, uintptr_t page) noexcept;

}  // namespace strata::env::dpdk
