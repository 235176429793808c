// The sim backend: DMA memory from host memory with a private IOVA space; PCI from an emulated
// bus plugged in by hw-emulation/pci (set_sim_pci_provider).
//
// The backend object is one per process (like DPDK's EAL); what a simulated machine has of its
// own lives in its runtime::Host: the IOVA space (SimIovaSpace) and the emulated bus (HostEnv's
// provider). Two Hosts are two machines: each numbers its IOVAs from the same base, so the same
// IOVA may name memory in both, and each reaches only its own bus.
//
// IOVAs start at 0x10'0000'0000 and are bump-allocated, never reused while the Host lives; each
// range keeps its buffer's offset within a 4 KiB page (NVMe PRPs rely on it) and is followed by
// an unmapped 4 KiB guard, so a device reading past a buffer's end faults instead of reaching the
// next buffer. A virtual address is never a valid IOVA.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include <strata/env/backend.h>
#include <strata/runtime/host.h>

namespace strata::env::backend {

namespace {

constexpr uint64_t kSimIovaBase = 0x10'0000'0000ULL;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kGuard = kPage;

// One Host's IOVA space. Per Host rather than per process so that a simulated Host's IOVAs do
// not depend on what other Hosts in the process allocated (a seed replays the same addresses).
struct SimIovaSpace {
    std::mutex mu;
    uint64_t next = kSimIovaBase;
};

class SimBackend final : public Backend {
public:
    const char* name() const noexcept override { return "sim"; }
    Result<void> start(const EnvOptions&) override { return {}; }
    bool same_options(const EnvOptions&) const override { return true; }
    // env::fini() has checked that no Host has DMA memory left, so the caller's Host may number
    // its IOVAs from the base again, as a freshly started backend did before IOVA spaces were
    // per Host (a test that restarts the env sees the same IOVAs each time).
    void stop() override {
        if (SimIovaSpace* space = runtime::current_host().find<SimIovaSpace>()) {
            std::lock_guard lock(space->mu);
            space->next = kSimIovaBase;
        }
    }

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
        SimPciProvider* p = sim_pci_provider();
        if (!p) return std::vector<PciDeviceInfo>{};
        return p->list();
    }

    Result<std::unique_ptr<PciFunctionImpl>> pci_claim(const PciAddress& address) override {
        SimPciProvider* p = sim_pci_provider();
        if (!p)
            return Error(Errc::not_found,
                         fmt::format("PCI function {} not found: no emulated PCI bus attached "
                                     "in this Host",
                                     address.to_string()));
        return p->claim(address);
    }

private:
    // An IOVA range in the current Host's space for [va, va+len) with the same offset in its
    // page as va (and aligned to `align` when that is a page multiple), plus a guard gap.
    static uint64_t next_iova(uintptr_t va, size_t len, size_t align) {
        SimIovaSpace& space = runtime::current_host().get<SimIovaSpace>();
        std::lock_guard lock(space.mu);
        uint64_t step = std::max<uint64_t>(kPage, align);
        uint64_t base = (space.next + step - 1) / step * step;
        uint64_t iova = base + (va % kPage);
        space.next = (iova + len + kPage - 1) / kPage * kPage + kGuard;
        return iova;
    }
};

}  // namespace

std::unique_ptr<Backend> make_sim_backend() { return std::make_unique<SimBackend>(); }

}  // namespace strata::env::backend
