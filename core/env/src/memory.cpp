// DMA memory: allocation and registration through the backend, recorded in the IOVA map.
#include <mutex>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/env/iova_map.h>
#include <strata/env/memory.h>
#include <strata/env/translation_cache.h>
#include <strata/runtime/thread.h>

#include "env_internal.h"

namespace strata::env {

using backend::HostEnv;
using backend::Region;
using backend::RegionKind;

// Every call acts on the current Host's state (backend::host_env()): its map, its mutex.

Result<void*> dma_alloc(size_t size_bytes, size_t align, bool zeroed) {
    if (align == 0) align = 64;
    if (size_bytes == 0) return Error(Errc::invalid_argument, "dma_alloc: size 0");
    if ((align & (align - 1)) != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("dma_alloc: alignment {} is not a power of two", align));
    backend::Backend& be = detail::backend();
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    auto a = be.dma_alloc(size_bytes, align, zeroed);
    if (!a.ok()) return a.error();
    Region r{reinterpret_cast<uintptr_t>(a->vaddr), a->iova, size_bytes, RegionKind::allocation,
             a->cookie};
    auto ins = he.map.insert(r);
    if (!ins.ok()) {
        be.dma_free(a->vaddr, size_bytes, a->cookie);
        return Error(Errc::internal, "dma_alloc: backend returned overlapping memory: " +
                                         ins.error().message());
    }
    detail::count_regions(1);
    return a->vaddr;
}

void dma_free(void* ptr) noexcept {
    if (!ptr) return;
    backend::Backend& be = detail::backend();
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    Region r;
    bool found = he.map.find_vaddr(reinterpret_cast<uintptr_t>(ptr), &r);
    STRATA_ASSERT_MSG(found && r.vaddr == reinterpret_cast<uintptr_t>(ptr) &&
                          r.kind == RegionKind::allocation,
                      "dma_free(%p) in Host '%s': not a live dma_alloc buffer of this Host "
                      "(double free, interior pointer, registered memory, or allocated in "
                      "another Host)",
                      ptr, he.host.name().c_str());
    (void)he.map.erase(r.vaddr);
    if (he.abandoned.erase(r.vaddr) != 0) detail::count_abandoned(-1);
    detail::count_regions(-1);
    be.dma_free(ptr, r.len, r.backend_cookie);
}

void dma_abandon(void* ptr) noexcept {
    if (!ptr) return;
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    Region r;
    const uintptr_t va = reinterpret_cast<uintptr_t>(ptr);
    if (!he.map.find_vaddr(va, &r) || r.vaddr != va || r.kind != RegionKind::allocation) return;
    if (he.abandoned.insert(va).second) detail::count_abandoned(1);
}

size_t dma_abandoned_count() noexcept {
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    return he.abandoned.size();
}

Result<void> register_memory(void* addr, size_t len) {
    if (!addr || len == 0)
        return Error(Errc::invalid_argument, "register_memory: null address or zero length");
    backend::Backend& be = detail::backend();
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    uintptr_t va = reinterpret_cast<uintptr_t>(addr);
    for (const Region& r : he.map.regions()) {
        if (va < r.vaddr + r.len && r.vaddr < va + len)
            return Error(Errc::already_exists,
                         fmt::format("register_memory {}+{:#x}: overlaps DMA region {:#x}+{:#x}",
                                     addr, len, r.vaddr, r.len));
    }
    auto pieces = be.register_memory(addr, len);
    if (!pieces.ok()) return pieces.error();
    std::vector<uintptr_t> inserted;
    for (const auto& p : *pieces) {
        auto ins = he.map.insert(
            Region{p.vaddr, p.iova, p.len, RegionKind::registration, reinterpret_cast<uintptr_t>(addr)});
        if (!ins.ok()) {
            for (uintptr_t v : inserted) (void)he.map.erase(v);
            (void)be.unregister_memory(addr, len);
            return ins.error();
        }
        inserted.push_back(p.vaddr);
    }
    detail::count_regions(static_cast<int64_t>(inserted.size()));
    return {};
}

Result<void> unregister_memory(void* addr, size_t len) {
    backend::Backend& be = detail::backend();
    HostEnv& he = backend::host_env();
    std::lock_guard lock(he.mem_mu);
    uintptr_t va = reinterpret_cast<uintptr_t>(addr);
    // The pieces of one registration carry its start address as cookie and tile [va, va+len).
    std::vector<Region> pieces;
    size_t total = 0;
    for (const Region& r : he.map.regions()) {
        if (r.kind == RegionKind::registration && r.backend_cookie == va) {
            pieces.push_back(r);
            total += r.len;
        }
    }
    if (pieces.empty() || total != len)
        return Error(Errc::not_found,
                     fmt::format("unregister_memory {}+{:#x}: no such registration", addr, len));
    STRATA_TRY(be.unregister_memory(addr, len));
    for (const Region& r : pieces) (void)he.map.erase(r.vaddr);
    detail::count_regions(-static_cast<int64_t>(pieces.size()));
    return {};
}

uint64_t iova_of(const void* ptr) noexcept {
    return backend::iova_map().iova_of(reinterpret_cast<uintptr_t>(ptr));
}

Status translate(const void* addr, size_t len, std::span<IovaSegment> out, size_t* count) noexcept {
    return backend::iova_map().translate(reinterpret_cast<uintptr_t>(addr), len, out, count,
                                          nullptr);
}

Status translate(const void* addr, size_t len, std::span<IovaSegment> out, size_t* count,
                 TranslationCache& cache) noexcept {
    const auto v = reinterpret_cast<uintptr_t>(addr);
    const auto* map = static_cast<const backend::IovaMap*>(cache.map);
    TranslationCache::Entry& e = cache.slot(v);
    const uintptr_t off = v - e.vaddr;
    if (map != nullptr && off < e.len && len != 0 && len <= e.len - off && !out.empty() &&
        map->generation() == e.generation) [[likely]] {
        out[0] = {e.iova + off, len};
        *count = 1;
        return Status::success();
    }
    if (map == nullptr) {
        map = &backend::iova_map();
        cache.map = map;
    }
    // Read before the lookup: a change racing with it leaves the entry stale, hence unused.
    const uint64_t gen = map->generation();
    Status s = map->translate(v, len, out, count, nullptr);
    Region r;
    if (s.ok() && map->find_vaddr(v, &r)) e = {gen, r.vaddr, r.len, r.iova};
    return s;
}

bool is_dma_memory(const void* addr, size_t len, TranslationCache& cache) noexcept {
    const auto v = reinterpret_cast<uintptr_t>(addr);
    const auto* map = static_cast<const backend::IovaMap*>(cache.map);
    TranslationCache::Entry& e = cache.slot(v);
    const uintptr_t off = v - e.vaddr;
    const size_t need = len == 0 ? 1 : len;
    if (map != nullptr && off < e.len && need <= e.len - off && map->generation() == e.generation)
        [[likely]]
        return true;
    if (map == nullptr) {
        map = &backend::iova_map();
        cache.map = map;
    }
    const uint64_t gen = map->generation();
    Region r;
    if (!map->find_vaddr(v, &r)) return false;
    if (need <= r.len - (v - r.vaddr)) {  // inside one region: remember it
        e = {gen, r.vaddr, r.len, r.iova};
        return true;
    }
    return map->iova_of(v + need - 1) != kInvalidIova;
}

Result<std::vector<IovaSegment>> translate(const void* addr, size_t len) {
    if (len == 0) return Error(Errc::invalid_argument, "translate: empty range");
    const backend::IovaMap& map = backend::iova_map();
    std::vector<IovaSegment> segs(4);
    for (;;) {
        size_t n = 0;
        uintptr_t fault = 0;
        Status s = map.translate(reinterpret_cast<uintptr_t>(addr), len, segs, &n, &fault);
        if (s.ok()) {
            segs.resize(n);
            return segs;
        }
        if (s.code() == Errc::no_space) {
            segs.resize(segs.size() * 4);
            continue;
        }
        if (s.code() == Errc::not_found)
            return Error(Errc::not_found,
                         fmt::format("translate {}+{:#x}: byte {:#x} (offset {:#x}) is not DMA "
                                     "memory (neither dma_alloc'ed nor registered in this Host)",
                                     addr, len, fault, fault - reinterpret_cast<uintptr_t>(addr)));
        return Error(s);
    }
}

size_t dma_region_count() noexcept { return backend::iova_map().size(); }

// --- DmaBufferCache ---

DmaBufferCache::DmaBufferCache(size_t buffer_size_bytes, size_t capacity, size_t align,
                               size_t prefill)
    : size_(buffer_size_bytes), align_(align), capacity_(capacity),
      owner_(runtime::current_thread()) {
    STRATA_ASSERT(buffer_size_bytes > 0 && capacity > 0 && prefill <= capacity);
    free_.reserve(capacity);
    for (size_t i = 0; i < prefill; ++i) {
        auto b = dma_alloc(size_, align_, false);
        if (!b.ok()) break;
        free_.push_back(*b);
    }
}

DmaBufferCache::~DmaBufferCache() {
    for (void* b : free_) dma_free(b);
}

void DmaBufferCache::check_owner() const noexcept {
    STRATA_ASSERT_MSG(owner_ == nullptr || runtime::current_thread() == owner_,
                      "DmaBufferCache used from a Thread that does not own it");
}

void* DmaBufferCache::get() noexcept {
    check_owner();
    if (!free_.empty()) {
        void* b = free_.back();
        free_.pop_back();
        return b;
    }
    auto b = dma_alloc(size_, align_, false);
    return b.ok() ? *b : nullptr;
}

void DmaBufferCache::put(void* buf) noexcept {
    check_owner();
    if (!buf) return;
    if (free_.size() < capacity_) {
        free_.push_back(buf);
        return;
    }
    dma_free(buf);
}

}  // namespace strata::env
