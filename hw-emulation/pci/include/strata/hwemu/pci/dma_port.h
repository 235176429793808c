// DmaPort: the only way a device model touches host memory.
//
// Every access translates its IOVA range through the IOVA map of the runtime::Host its bus
// belongs to (possibly across several regions): a device reaches the DMA memory of its own
// machine only, whichever OS thread runs its poller. An unmapped IOVA, or a range running past the end of a region into unmapped space, is
// a DMA fault: nothing is copied, the function's fault counter is incremented, the address is
// logged (component hwemu_pci) and remembered, and Errc::dma_fault is returned so the model fails
// the command as hardware does (an error completion or a fatal status). A removed function's
// DMA returns Errc::device_removed.
//
// Thread-safety: called from the model's poller; counters are atomics so tests and Python can
// read them from anywhere.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <strata/base/status.h>

namespace strata::env::backend {
class IovaMap;
}

namespace strata::hwemu {

class EmulatedFunction;

class DmaPort {
public:
    // map: the IOVA map of the bus's Host (it outlives the bus).
    DmaPort(EmulatedFunction& fn, const env::backend::IovaMap& map) noexcept
        : fn_(fn), map_(map) {}

    Status read(uint64_t iova, void* dst, size_t len) noexcept;
    Status write(uint64_t iova, const void* src, size_t len) noexcept;
    // One naturally aligned 32-bit store with release ordering (a CQE's dword 3, after the rest
    // of the entry was written with write()): a driver on another OS thread that acquire-loads
    // the dword sees everything written before it. iova must be 4-byte aligned
    // (Errc::invalid_argument otherwise, counted as a DMA fault).
    Status store32_release(uint64_t iova, uint32_t value) noexcept;
    // The same for one naturally aligned 64-bit store (an I/OAT completion write-back); iova
    // must be 8-byte aligned.
    Status store64_release(uint64_t iova, uint64_t value) noexcept;

    uint64_t fault_count() const noexcept { return faults_.load(std::memory_order_relaxed); }
    uint64_t last_fault_iova() const noexcept {
        return last_fault_iova_.load(std::memory_order_relaxed);
    }
    uint64_t bytes_read() const noexcept { return bytes_read_.load(std::memory_order_relaxed); }
    uint64_t bytes_written() const noexcept {
        return bytes_written_.load(std::memory_order_relaxed);
    }

private:
    template <class Copy>
    Status access(uint64_t iova, size_t len, bool is_write, Copy&& copy) noexcept;

    EmulatedFunction& fn_;
    const env::backend::IovaMap& map_;
    std::atomic<uint64_t> faults_{0};
    std::atomic<uint64_t> last_fault_iova_{0};
    std::atomic<uint64_t> bytes_read_{0};
    std::atomic<uint64_t> bytes_written_{0};
};

}  // namespace strata::hwemu
