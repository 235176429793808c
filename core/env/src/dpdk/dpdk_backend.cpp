// The dpdk backend: the env's Backend interface (<strata/env/backend.h>) on top of the
// dpdk layer (eal.h, dpdk_memory.h, dpdk_pci.h). The env core owns the IOVA map and the
// in-process claim bookkeeping; this adapter provides memory with real IOVAs and vfio functions.
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/env/backend.h>

#include "dpdk/dpdk_memory.h"
#include "dpdk/dpdk_pci.h"
#include "dpdk/eal.h"

namespace strata::env::backend {

namespace {

class DpdkFunction final : public PciFunctionImpl {
public:
    explicit DpdkFunction(std::unique_ptr<dpdk::DpdkPciDevice> dev) : dev_(std::move(dev)) {}

    bool removed() const noexcept override { return dev_->removed(); }

    Status config_read(uint32_t offset, void* buf, uint32_t len) const noexcept override {
        if (dev_->removed()) {  // as hardware: a removed function reads all-ones
            memset(buf, 0xff, len);
            return {};
        }
        return dev_->read_config(buf, len, offset);
    }

    Status config_write(uint32_t offset, const void* buf, uint32_t len) noexcept override {
        if (dev_->removed()) return {};  // dropped, as on a removed function
        return dev_->write_config(buf, len, offset);
    }

    Result<Bar> map_bar(uint32_t index) override {
        auto b = dev_->bar(index);
        if (!b.ok()) return b.error();
        if (b->addr == nullptr || b->size_bytes == 0) {
            return Error(Errc::not_found,
                         fmt::format("dpdk: BAR {} of {} is absent or an I/O-port BAR (not "
                                     "memory-mapped)",
                                     index, dev_->bdf()));
        }
        return Bar(b->addr, nullptr, index, b->size_bytes);
    }

    void set_hot_remove_target(runtime::Thread* thread, runtime::MsgFn fn,
                               void* ctx) noexcept override {
        dev_->set_remove_target(thread, fn, ctx);
    }

    Result<void> detach() override { return dev_->detach(); }

private:
    std::unique_ptr<dpdk::DpdkPciDevice> dev_;
};

class DpdkBackend final : public Backend {
public:
    const char* name() const noexcept override { return "dpdk"; }

    Result<void> start(const EnvOptions& options) override {
        auto info = dpdk::eal_init(options.dpdk);
        if (!info.ok()) return info.error();
        options_ = options.dpdk;
        info_ = *info;
        return {};
    }

    bool same_options(const EnvOptions& options) const override { return options.dpdk == options_; }

    // EAL stays up: DPDK cannot initialise it again in this process. A later env::init with the
    // same options reuses it; with other options it reports that (eal_init's error).
    void stop() override {}

    Result<BackendAllocation> dma_alloc(size_t size_bytes, size_t align, bool zeroed) override {
        auto b = dpdk::dma_alloc(size_bytes, align, zeroed);
        if (!b.ok()) return b.error();
        return BackendAllocation{b->addr, b->iova, 0};
    }

    void dma_free(void* vaddr, size_t, uint64_t) noexcept override { dpdk::dma_free(vaddr); }

    Result<std::vector<BackendPiece>> register_memory(void* addr, size_t len) override {
        auto segs = dpdk::register_user_memory(addr, len);
        if (!segs.ok()) return segs.error();
        std::vector<BackendPiece> out;
        out.reserve(segs->size());
        for (const dpdk::IovaSegment& s : *segs) out.push_back({s.vaddr, s.iova, s.len});
        return out;
    }

    Result<void> unregister_memory(void* addr, size_t len) override {
        return dpdk::unregister_user_memory(addr, len);
    }

    Result<std::vector<PciDeviceInfo>> pci_enumerate() override {
        auto list = dpdk::pci_list(/*vfio_only=*/false);
        if (!list.ok()) return list.error();
        std::vector<PciDeviceInfo> out;
        out.reserve(list->size());
        for (const dpdk::PciFunctionDesc& d : *list) {
            auto addr = PciAddress::parse(d.bdf);
            if (!addr.ok()) continue;  // DPDK names every function canonically
            PciDeviceInfo info;
            info.address = *addr;
            info.vendor_id = d.vendor_id;
            info.device_id = d.device_id;
            info.subsystem_vendor_id = d.subsystem_vendor_id;
            info.subsystem_device_id = d.subsystem_device_id;
            info.class_code = d.class_code;
            info.numa_node = d.numa_node;
            info.claimable = d.vfio;
            out.push_back(info);
        }
        return out;
    }

    Result<std::unique_ptr<PciFunctionImpl>> pci_claim(const PciAddress& address) override {
        auto dev = dpdk::DpdkPciDevice::claim(address.to_string());
        if (!dev.ok()) return dev.error();
        return std::unique_ptr<PciFunctionImpl>(new DpdkFunction(std::move(*dev)));
    }

private:
    DpdkOptions options_;
    dpdk::EalInfo info_;
};

}  // namespace

std::unique_ptr<Backend> make_dpdk_backend() {
    return std::make_unique<DpdkBackend>();
}

}  // namespace strata::env::backend
