#include <strata/hwemu/pci/dma_port.h>

#include <atomic>
#include <cstring>

#include <strata/base/log.h>
#include <strata/env/iova_map.h>
#include <strata/hwemu/pci/pci_bus.h>

namespace strata::hwemu {

STRATA_LOG_COMPONENT(hwemu_pci);

template <class Copy>
Status DmaPort::access(uint64_t iova, size_t len, bool is_write, Copy&& copy) noexcept {
    if (fn_.removed()) return Status(Errc::device_removed, "function removed");
    if (len == 0) return Status::success();
    const env::backend::IovaMap& map = map_;
    // Pass 1: the whole range must be mapped (no partial effects on a fault).
    uint64_t cur = iova;
    const uint64_t end = iova + len;
    bool wrapped = end < iova;
    env::backend::Region r;
    while (!wrapped && cur < end) {
        if (!map.find_iova(cur, &r)) break;
        cur = r.iova + r.len;
    }
    if (wrapped || cur < end) {
        uint64_t fault = wrapped ? iova : cur;
        faults_.fetch_add(1, std::memory_order_relaxed);
        last_fault_iova_.store(fault, std::memory_order_relaxed);
        STRATA_WARNLOG(log_hwemu_pci, "{} ({}): DMA {} fault at IOVA {:#x} (access {:#x}+{:#x})",
                       fn_.address().to_string(), fn_.name(), is_write ? "write" : "read", fault,
                       iova, len);
        return Status(Errc::dma_fault, is_write ? "DMA write to unmapped IOVA"
                                                : "DMA read from unmapped IOVA");
    }
    // Pass 2: copy piece by piece.
    cur = iova;
    size_t done = 0;
    while (cur < end) {
        (void)map.find_iova(cur, &r);
        size_t piece = static_cast<size_t>(std::min<uint64_t>(end, r.iova + r.len) - cur);
        copy(reinterpret_cast<void*>(r.vaddr + (cur - r.iova)), done, piece);
        cur += piece;
        done += piece;
    }
    (is_write ? bytes_written_ : bytes_read_).fetch_add(len, std::memory_order_relaxed);
    return Status::success();
}

Status DmaPort::read(uint64_t iova, void* dst, size_t len) noexcept {
    auto* out = static_cast<unsigned char*>(dst);
    return access(iova, len, false,
                  [out](void* host, size_t off, size_t n) { std::memcpy(out + off, host, n); });
}

Status DmaPort::write(uint64_t iova, const void* src, size_t len) noexcept {
    const auto* in = static_cast<const unsigned char*>(src);
    return access(iova, len, true,
                  [in](void* host, size_t off, size_t n) { std::memcpy(host, in + off, n); });
}

Status DmaPort::store32_release(uint64_t iova, uint32_t value) noexcept {
    if ((iova & 3) != 0) {
        faults_.fetch_add(1, std::memory_order_relaxed);
        last_fault_iova_.store(iova, std::memory_order_relaxed);
        return Status(Errc::invalid_argument, "unaligned 32-bit DMA store");
    }
    // A 4-byte aligned dword lies in one region of the IOVA map unless a region boundary splits
    // it (never for dma_alloc'd memory); then it is copied piecewise like write() would.
    unsigned char bytes[4];
    std::memcpy(bytes, &value, 4);
    return access(iova, 4, true, [value, &bytes](void* host, size_t off, size_t n) {
        if (n == 4 && (reinterpret_cast<uintptr_t>(host) & 3) == 0) {
            std::atomic_ref<uint32_t>(*static_cast<uint32_t*>(host))
                .store(value, std::memory_order_release);
        } else {
            std::atomic_thread_fence(std::memory_order_release);
            std::memcpy(host, bytes + off, n);
        }
    });
}

Status DmaPort::store64_release(uint64_t iova, uint64_t value) noexcept {
    if ((iova & 7) != 0) {
        faults_.fetch_add(1, std::memory_order_relaxed);
        last_fault_iova_.store(iova, std::memory_order_relaxed);
        return Status(Errc::invalid_argument, "unaligned 64-bit DMA store");
    }
    unsigned char bytes[8];
    std::memcpy(bytes, &value, 8);
    return access(iova, 8, true, [value, &bytes](void* host, size_t off, size_t n) {
        if (n == 8 && (reinterpret_cast<uintptr_t>(host) & 7) == 0) {
            std::atomic_ref<uint64_t>(*static_cast<uint64_t*>(host))
                .store(value, std::memory_order_release);
        } else {
            std::atomic_thread_fence(std::memory_order_release);
            std::memcpy(host, bytes + off, n);
        }
    });
}

}  // namespace strata::hwemu
