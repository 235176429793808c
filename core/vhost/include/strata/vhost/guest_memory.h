// GuestMemory: the front end's memory as the back end sees it. A table of regions (guest
// physical range, front-end virtual range, host virtual address) with translations that check
// every byte of a range lies inside one region: gpa_to_hva() and uva_to_hva() for ring parts,
// gpa_to_iov() for buffers (split over adjacent regions). Nothing outside the regions is ever
// returned. Regions are added already mapped; owned mappings (vhost-user SET_MEM_TABLE) are
// unmapped by clear() and by the destructor.
//
// Owning Thread: the controller's. Lookups are linear over at most kMaxRegions regions and
// allocate nothing (data path).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include <strata/base/status.h>
#include <strata/virtio/spec/vhost_user.h>

namespace strata::vhost {

class GuestMemory {
public:
    static constexpr size_t kMaxRegions = virtio::spec::vhost_user::kMaxMemRegions;

    struct Region {
        uint64_t gpa = 0;
        uint64_t size = 0;
        uint64_t uva = 0;
        uint8_t* hva = nullptr;
        void* mmap_base = nullptr;  // non-null: owned mapping, munmap'd by clear()
        size_t mmap_len = 0;
    };

    GuestMemory() = default;
    ~GuestMemory() { clear(); }
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    // Adds a region. invalid_argument: empty, wrapping, or overlapping an existing region in
    // guest-physical or front-end-virtual space; out_of_range: more than kMaxRegions. On
    // failure an owned mapping passed in is NOT unmapped (the caller still owns it).
    Result<void> add(uint64_t gpa, uint64_t size, uint64_t uva, void* hva,
                     void* mmap_base = nullptr, size_t mmap_len = 0);
    void clear() noexcept;  // unmaps owned mappings
    // Removes the region with exactly this gpa, size and uva (unmapping an owned mapping);
    // not_found when there is none.
    Result<void> remove(uint64_t gpa, uint64_t size, uint64_t uva) noexcept;
    size_t size() const noexcept { return count_; }
    const Region& region(size_t i) const noexcept { return regions_[i]; }

    // Host address of [gpa, gpa + len) when it lies inside one region, else nullptr.
    void* gpa_to_hva(uint64_t gpa, uint64_t len) const noexcept;
    // Same for an address in the front end's virtual address space (SET_VRING_ADDR).
    void* uva_to_hva(uint64_t uva, uint64_t len) const noexcept;
    // Splits [gpa, gpa + len) into host iovecs (one per region crossed). Returns the count,
    // kBadAddress when a byte lies outside every region, kNoRoom when more than `max` are needed.
    static constexpr int kBadAddress = -1;
    static constexpr int kNoRoom = -2;
    int gpa_to_iov(uint64_t gpa, uint64_t len, iovec* iov, int max) const noexcept;

private:
    Region regions_[kMaxRegions];
    size_t count_ = 0;
};

}  // namespace strata::vhost
