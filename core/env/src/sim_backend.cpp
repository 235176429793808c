// The sim backend: DMA memory from host memory with a private IOVA space; PCI from an emulated
// bus plugged in by hw-emulation/pci (set_sim_pci_provider).
//
// IOVAs start at 0x10'0000'0000 and are bump-allocated, never reused while the backend runs; each
// range keeps its buffer's offset within a 4 KiB page (NVMe PRPs rely on it) and is followed by
// an unmapped 4 KiB guard, so a device reading past a buffer's end faults instead of reaching the
// next buffer. A virtual address is never a valid IOVA.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include <strata/env/internal/backend.h>

namespace strata::env::internal {

namespace {

constexpr uint64_t kSimIovaBase = 0x10'0000'0000ULL;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kGuard = kPage;

std::atomic<SimPciProvider*> g_provider{nullptr};

class SimBackend final : public Backend {
public:
    const char* name() const noexcept override { return "sim"; }
    Result<void> start(const EnvOptions&) override { return {}; }
    bool same_options(const EnvOptions&) const override { return true; }
    void stop() override {}

    Result<BackendAllocation> dma_alloc(size_t size_bytes, size_t align, bool zeroed) override {
        size_t a = std::max<size_t>(align, sizeof(void*));
        size_t rounded = (size_bytes + a - 1) / a * a;
        void* p = std::aligned_alloc(a, rounded);
        if (!p)
            return Error(Errc::no_memory,
                         fmt::format("sim dma_alloc of {} bytes (align {}) failed", size_bytes, a));
        if (zeroed) std::memset(p, 0, size_bytes);
        uint64_t iova = next_iova(reinterpret_cast<uintptr_t>(p), size_bytes, a);
        return BackendAllocation{p, iova, 0};
    }

    void dma_free(void* vaddr, size_t, uint64_t) noexcept override { std::free(vaddr); }

    Result<std::vector<BackendPiece>> register_memory(void* addr, size_t len) override {
        uintptr_t va = reinterpret_cast<uintptr_t>(addr);
        return std::vector<BackendPiece>{{va, next_iova(va, len, 1), len}};
    }
    Result<void> unregister_memory(void*, size_t) override { return {}; }

    Result<std::vector<PciDeviceInfo>> pci_enumerate() override {
        SimPciProvider* p = g_provider.load(std::memory_order_acquire);
        if (!p) return std::vector<PciDeviceInfo>{};
        return p->list();
    }

    Result<std::unique_ptr<PciFunctionImpl>> pci_claim(const PciAddress& address) override {
        SimPciProvider* p = g_provider.load(std::memory_order_acquire);
        if (!p)
            return Error(Errc::not_found,
                         fmt::format("PCI function {} not found: no emulated PCI bus attached",
                                     address.to_string()));
        return p->claim(address);
    }

private:
    // An IOVA range for [va, va+len) with the same offset in its page as va (and aligned to
    // `align` when that is a page multiple), plus a guard gap.
    uint64_t next_iova(uintptr_t va, size_t len, size_t align) {
        std::lock_guard lock(mu_);
        uint64_t step = std::max<uint64_t>(kPage, align);
        uint64_t base = (next_ + step - 1) / step * step;
        uint64_t iova = base + (va % kPage);
        next_ = (iova + len + kPage - 1) / kPage * kPage + kGuard;
        return iova;
    }

    std::mutex mu_;
    uint64_t next_ = kSimIovaBase;
};

}  // namespace

std::unique_ptr<Backend> make_sim_backend() { return std::make_unique<SimBackend>(); }

void set_sim_pci_provider(SimPciProvider* provider) noexcept {
    g_provider.store(provider, std::memory_order_release);
}

SimPciProvider* sim_pci_provider() noexcept { return g_provider.load(std::memory_order_acquire); }

}  // namespace strata::env::internal
