// CopyEngine: the smallest useful DMA device model, for tests and scenarios of the PCI layer.
//
// BAR0 (4 KiB): ID (RO), DOORBELL, SRC and DST (64-bit IOVAs), LEN, STATUS (0 idle, 1 busy,
// 2 done, 3 DMA error). Writing 1 to DOORBELL starts a copy of LEN bytes (at most 64 KiB) from
// SRC to DST. As on hardware, the doorbell only records and arms; the copy runs from the
// model's poller on its Thread, through the function's DmaPort, so a bad IOVA is a counted
// DMA fault and STATUS 3, never a crash.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/thread.h>

namespace strata::hwemu {

class CopyEngine final : public PciModel {
public:
    static constexpr uint64_t kRegId = 0x00;
    static constexpr uint64_t kRegDoorbell = 0x04;
    static constexpr uint64_t kRegSrc = 0x08;
    static constexpr uint64_t kRegDst = 0x10;
    static constexpr uint64_t kRegLen = 0x18;
    static constexpr uint64_t kRegStatus = 0x1c;
    static constexpr uint32_t kDeviceId = 0x53540001;
    enum StatusValue : uint32_t { kIdle = 0, kBusy = 1, kDone = 2, kDmaError = 3 };

    EmulatedFunction* fn = nullptr;  // set after PciBus::add_function
    runtime::Thread* thread = nullptr;
    uint32_t doorbells = 0;
    uint32_t last_doorbell = 0;
    uint64_t src = 0, dst = 0;
    uint32_t len = 0;
    uint32_t status = kIdle;
    bool pending = false;
    bool removal_seen = false;
    runtime::Poller* poller = nullptr;
    std::vector<uint8_t> scratch = std::vector<uint8_t>(64 * 1024);

    // On `t`: the model's poller runs there.
    void start(runtime::Thread* t) {
        thread = t;
        poller = t->register_poller(&CopyEngine::poll, this, "copy_engine");
    }
    void stop() { thread->unregister_poller(poller); }

    uint64_t bar_read(uint32_t, uint64_t off, uint32_t width) override {
        switch (off) {
            case kRegId: return kDeviceId;
            case kRegDoorbell: return last_doorbell;
            case kRegSrc: return width == 8 ? src : uint32_t(src);
            case kRegDst: return width == 8 ? dst : uint32_t(dst);
            case kRegLen: return len;
            case kRegStatus: return status;
            default: return 0;
        }
    }
    void bar_write(uint32_t, uint64_t off, uint32_t width, uint64_t v) override {
        switch (off) {
            case kRegDoorbell:
                ++doorbells;
                last_doorbell = uint32_t(v);
                if (v == 1 && status != kBusy) {
                    status = kBusy;
                    pending = true;
                }
                break;
            case kRegSrc: src = v; break;
            case kRegDst: dst = v; break;
            case kRegLen: len = uint32_t(v); break;
            default: break;  // RO or reserved: ignored
        }
    }
    void on_surprise_removal() override { removal_seen = true; }

    static runtime::PollStatus poll(void* ctx) {
        auto* d = static_cast<CopyEngine*>(ctx);
        if (!d->pending) return runtime::PollStatus::idle;
        d->pending = false;
        size_t n = std::min<size_t>(d->len, d->scratch.size());
        Status s = d->fn->dma().read(d->src, d->scratch.data(), n);
        if (s.ok()) s = d->fn->dma().write(d->dst, d->scratch.data(), n);
        d->status = s.ok() ? kDone : kDmaError;
        return runtime::PollStatus::busy;
    }
};

inline PciFunctionConfig copy_engine_config() {
    PciFunctionConfig c;
    c.vendor_id = 0x1af4;
    c.device_id = 0x10f0;
    c.subsystem_vendor_id = 0x1af4;
    c.subsystem_device_id = 0x0001;
    c.class_code = 0x088000;  // system peripheral, other
    c.revision_id = 2;
    c.interrupt_pin = 1;
    c.bars[0] = {4096, false, false};
    c.bars[2] = {1 << 20, true, true};  // 64-bit, prefetchable; BAR3 is its upper half
    c.capabilities = {{0x11, {0x03, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00}},
                      {0x05, {0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}};
    c.name = "copy-engine";
    return c;
}

}  // namespace strata::hwemu
