// GuestMemory: region table and bounds-checked translations (guest_memory.h).
#include <sys/mman.h>

#include <strata/vhost/guest_memory.h>

namespace strata::vhost {

namespace {
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) noexcept {
    return a < b + blen && b < a + alen;
}
}  // namespace

Result<void> GuestMemory::add(uint64_t gpa, uint64_t size, uint64_t uva, void* hva, void* mmap_base,
                              size_t mmap_len) {
    if (count_ == kMaxRegions) return Error(Errc::out_of_range, "more than 8 memory regions");
    if (size == 0) return Error(Errc::invalid_argument, "memory region of size 0");
    if (gpa + size < gpa || uva + size < uva ||
        reinterpret_cast<uintptr_t>(hva) + size < reinterpret_cast<uintptr_t>(hva))
        return Error(Errc::invalid_argument, "memory region wraps the address space");
    for (size_t i = 0; i < count_; ++i) {
        const Region& r = regions_[i];
        if (overlaps(gpa, size, r.gpa, r.size))
            return Error(Errc::invalid_argument, "memory regions overlap (guest physical)");
        if (overlaps(uva, size, r.uva, r.size))
            return Error(Errc::invalid_argument, "memory regions overlap (front-end virtual)");
    }
    regions_[count_++] = {gpa, size, uva, static_cast<uint8_t*>(hva), mmap_base, mmap_len};
    return {};
}

Result<void> GuestMemory::remove(uint64_t gpa, uint64_t size, uint64_t uva) noexcept {
    for (size_t i = 0; i < count_; ++i) {
        const Region& r = regions_[i];
        if (r.gpa != gpa || r.size != size || r.uva != uva) continue;
        if (r.mmap_base != nullptr) munmap(r.mmap_base, r.mmap_len);
        for (size_t j = i + 1; j < count_; ++j) regions_[j - 1] = regions_[j];
        regions_[--count_] = Region{};
        return {};
    }
    return Error(Errc::not_found, "no such memory region");
}

void GuestMemory::clear() noexcept {
    for (size_t i = 0; i < count_; ++i)
        if (regions_[i].mmap_base != nullptr) munmap(regions_[i].mmap_base, regions_[i].mmap_len);
    count_ = 0;
}

void* GuestMemory::gpa_to_hva(uint64_t gpa, uint64_t len) const noexcept {
    for (size_t i = 0; i < count_; ++i) {
        const Region& r = regions_[i];
        if (gpa >= r.gpa && gpa - r.gpa < r.size && len <= r.size - (gpa - r.gpa))
            return r.hva + (gpa - r.gpa);
    }
    return nullptr;
}

void* GuestMemory::uva_to_hva(uint64_t uva, uint64_t len) const noexcept {
    for (size_t i = 0; i < count_; ++i) {
        const Region& r = regions_[i];
        if (uva >= r.uva && uva - r.uva < r.size && len <= r.size - (uva - r.uva))
            return r.hva + (uva - r.uva);
    }
    return nullptr;
}

int GuestMemory::gpa_to_iov(uint64_t gpa, uint64_t len, iovec* iov, int max) const noexcept {
    int n = 0;
    while (len > 0) {
        const Region* hit = nullptr;
        for (size_t i = 0; i < count_; ++i) {
            const Region& r = regions_[i];
            if (gpa >= r.gpa && gpa - r.gpa < r.size) {
                hit = &r;
                break;
            }
        }
        if (hit == nullptr) return kBadAddress;
        if (n == max) return kNoRoom;
        const uint64_t off = gpa - hit->gpa;
        const uint64_t k = len < hit->size - off ? len : hit->size - off;
        iov[n].iov_base = hit->hva + off;
        iov[n].iov_len = k;
        ++n;
        gpa += k;
        len -= k;
        if (len > 0 && gpa == 0) return kBadAddress;  // wrapped
    }
    return n;
}

}  // namespace strata::vhost
