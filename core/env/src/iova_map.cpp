// The IOVA map (see <strata/env/iova_map.h>).
#include <strata/env/iova_map.h>

#include <algorithm>

#include <fmt/format.h>

#include <strata/base/assert.h>

namespace strata::env::backend {

struct IovaMap::Snapshot {
    std::vector<Region> by_vaddr;        // sorted by vaddr
    std::vector<uint32_t> by_iova;       // indexes into by_vaddr, sorted by iova
};

namespace {
// Per OS thread: last snapshot looked up and the index that hit in it.
struct LastHit {
    const void* snapshot = nullptr;
    uint32_t index = 0;
};
thread_local LastHit t_last_vaddr;
thread_local LastHit t_last_iova;
}  // namespace

class IovaMap::ReadGuard {
public:
    explicit ReadGuard(const IovaMap& map) noexcept : map_(map) {
        map_.readers_.fetch_add(1, std::memory_order_seq_cst);
        snap_ = map_.current_.load(std::memory_order_seq_cst);
    }
    ~ReadGuard() { map_.readers_.fetch_sub(1, std::memory_order_release); }
    const Snapshot* snap() const noexcept { return snap_; }

private:
    const IovaMap& map_;
    const Snapshot* snap_;
};

IovaMap::IovaMap() : current_(new Snapshot) {}

IovaMap::~IovaMap() {
    delete current_.load();
    for (const Snapshot* s : retired_) delete s;
}

void IovaMap::publish(Snapshot* next) {
    const Snapshot* prev = current_.exchange(next, std::memory_order_seq_cst);
    generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    retired_.push_back(prev);
    // A reader that entered after the exchange sees `next`; one inside now may hold any retired.
    if (readers_.load(std::memory_order_seq_cst) == 0) {
        for (const Snapshot* s : retired_) delete s;
        retired_.clear();
    }
}

Result<void> IovaMap::insert(const Region& region) {
    if (region.len == 0) return Error(Errc::invalid_argument, "empty DMA region");
    std::lock_guard lock(mu_);
    const Snapshot* cur = current_.load();
    for (const Region& r : cur->by_vaddr) {
        if (region.vaddr < r.vaddr + r.len && r.vaddr < region.vaddr + region.len)
            return Error(Errc::already_exists,
                         fmt::format("range {:#x}+{:#x} overlaps DMA region {:#x}+{:#x}",
                                     region.vaddr, region.len, r.vaddr, r.len));
        if (region.iova < r.iova + r.len && r.iova < region.iova + region.len)
            return Error(Errc::already_exists,
                         fmt::format("IOVA range {:#x}+{:#x} overlaps region at IOVA {:#x}",
                                     region.iova, region.len, r.iova));
    }
    auto* next = new Snapshot;
    next->by_vaddr = cur->by_vaddr;
    auto pos = std::upper_bound(next->by_vaddr.begin(), next->by_vaddr.end(), region.vaddr,
                                [](uintptr_t v, const Region& r) { return v < r.vaddr; });
    next->by_vaddr.insert(pos, region);
    next->by_iova.resize(next->by_vaddr.size());
    for (uint32_t i = 0; i < next->by_iova.size(); ++i) next->by_iova[i] = i;
    std::sort(next->by_iova.begin(), next->by_iova.end(), [&](uint32_t a, uint32_t b) {
        return next->by_vaddr[a].iova < next->by_vaddr[b].iova;
    });
    publish(next);
    return {};
}

Result<Region> IovaMap::erase(uintptr_t vaddr) {
    std::lock_guard lock(mu_);
    const Snapshot* cur = current_.load();
    auto it = std::lower_bound(cur->by_vaddr.begin(), cur->by_vaddr.end(), vaddr,
                               [](const Region& r, uintptr_t v) { return r.vaddr < v; });
    if (it == cur->by_vaddr.end() || it->vaddr != vaddr)
        return Error(Errc::not_found, fmt::format("no DMA region starts at {:#x}", vaddr));
    Region removed = *it;
    auto* next = new Snapshot;
    next->by_vaddr = cur->by_vaddr;
    next->by_vaddr.erase(next->by_vaddr.begin() + (it - cur->by_vaddr.begin()));
    next->by_iova.resize(next->by_vaddr.size());
    for (uint32_t i = 0; i < next->by_iova.size(); ++i) next->by_iova[i] = i;
    std::sort(next->by_iova.begin(), next->by_iova.end(), [&](uint32_t a, uint32_t b) {
        return next->by_vaddr[a].iova < next->by_vaddr[b].iova;
    });
    publish(next);
    return removed;
}

namespace {
// Index of the region holding v in the sorted vector, or -1.
inline int64_t search_vaddr(const std::vector<Region>& regions, uintptr_t v) noexcept {
    size_t lo = 0, hi = regions.size();
    while (lo < hi) {  // first region with vaddr > v
        size_t mid = (lo + hi) / 2;
        if (regions[mid].vaddr <= v) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return -1;
    return regions[lo - 1].contains_vaddr(v) ? static_cast<int64_t>(lo - 1) : -1;
}
}  // namespace

bool IovaMap::find_vaddr(uintptr_t vaddr, Region* out) const noexcept {
    ReadGuard g(*this);
    const Snapshot* s = g.snap();
    LastHit& hit = t_last_vaddr;
    if (hit.snapshot == s && hit.index < s->by_vaddr.size() &&
        s->by_vaddr[hit.index].contains_vaddr(vaddr)) {
        *out = s->by_vaddr[hit.index];
        return true;
    }
    int64_t i = search_vaddr(s->by_vaddr, vaddr);
    if (i < 0) return false;
    hit = {s, static_cast<uint32_t>(i)};
    *out = s->by_vaddr[i];
    return true;
}

uint64_t IovaMap::iova_of(uintptr_t vaddr) const noexcept {
    Region r;
    if (!find_vaddr(vaddr, &r)) return kInvalidIova;
    return r.iova + (vaddr - r.vaddr);
}

bool IovaMap::find_iova(uint64_t iova, Region* out) const noexcept {
    ReadGuard g(*this);
    const Snapshot* s = g.snap();
    LastHit& hit = t_last_iova;
    if (hit.snapshot == s && hit.index < s->by_vaddr.size() &&
        s->by_vaddr[hit.index].contains_iova(iova)) {
        *out = s->by_vaddr[hit.index];
        return true;
    }
    size_t lo = 0, hi = s->by_iova.size();
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->by_vaddr[s->by_iova[mid]].iova <= iova) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return false;
    uint32_t idx = s->by_iova[lo - 1];
    if (!s->by_vaddr[idx].contains_iova(iova)) return false;
    hit = {s, idx};
    *out = s->by_vaddr[idx];
    return true;
}

Status IovaMap::translate(uintptr_t vaddr, size_t len, std::span<IovaSegment> out, size_t* count,
                          uintptr_t* fault_vaddr) const noexcept {
    *count = 0;
    if (len == 0) return Status(Errc::invalid_argument, "empty range");
    ReadGuard g(*this);
    const Snapshot* s = g.snap();
    uintptr_t v = vaddr;
    uintptr_t end = vaddr + len;
    int64_t i = search_vaddr(s->by_vaddr, v);
    while (v < end) {
        if (i < 0 || static_cast<size_t>(i) >= s->by_vaddr.size() ||
            !s->by_vaddr[i].contains_vaddr(v)) {
            if (fault_vaddr) *fault_vaddr = v;
            return Status(Errc::not_found, "unmapped");
        }
        const Region& r = s->by_vaddr[i];
        size_t piece = std::min<uintptr_t>(end, r.vaddr + r.len) - v;
        uint64_t iova = r.iova + (v - r.vaddr);
        if (*count > 0 && out[*count - 1].iova + out[*count - 1].len == iova) {
            out[*count - 1].len += piece;
        } else {
            if (*count == out.size()) return Status(Errc::no_space, "segment array too small");
            out[(*count)++] = {iova, piece};
        }
        v += piece;
        ++i;  // the next region, if contiguous in virtual space, is the next one in order
    }
    return Status::success();
}

size_t IovaMap::size() const noexcept {
    ReadGuard g(*this);
    return g.snap()->by_vaddr.size();
}

std::vector<Region> IovaMap::regions() const {
    ReadGuard g(*this);
    return g.snap()->by_vaddr;
}

}  // namespace strata::env::backend
