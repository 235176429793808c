// World's emulated PCI devices: a bus from hw-emulation, claimed and driven through env exactly
// as a driver does, so scenarios can exercise BAR access, DMA and DMA faults from Python.
#include <cstring>
#include <map>
#include <stdexcept>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/pci/copy_engine.h>
#include <strata/hwemu/pci/pci_bus.h>

#include "world.h"

namespace pyb = pybind11;

namespace strata::py {

namespace {
env::PciAddress parse_address(const std::string& text) {
    auto a = env::PciAddress::parse(text);
    if (!a.ok()) throw pyb::value_error(a.error().message());
    return *a;
}
}  // namespace

struct World::Devices {
    std::unique_ptr<hwemu::PciBus> bus;
    runtime::Thread* thread = nullptr;  // where device models poll
    struct Engine {
        std::unique_ptr<hwemu::CopyEngine> model;
        std::unique_ptr<env::PciFunction> fn;
        env::Bar bar;
    };
    std::map<std::string, Engine> engines;
    std::map<uint64_t, std::pair<void*, size_t>> buffers;  // iova -> (pointer, size)

    Engine& engine(const std::string& address) {
        auto it = engines.find(parse_address(address).to_string());
        if (it == engines.end()) throw pyb::key_error("no copy engine at " + address);
        return it->second;
    }
    uint8_t* host(uint64_t iova, uint64_t len) {
        auto it = buffers.upper_bound(iova);
        if (it == buffers.begin()) throw pyb::value_error("IOVA not in a buffer from dma_alloc");
        --it;
        auto [ptr, size] = it->second;
        if (iova - it->first + len > size)
            throw pyb::value_error("range runs past the end of its dma_alloc buffer");
        return static_cast<uint8_t*>(ptr) + (iova - it->first);
    }
};

void World::DevicesDeleter::operator()(Devices* d) const { delete d; }

World::Devices& World::devices() {
    check_open();
    if (devices_) return *devices_;
    if (!env::initialized()) {
        auto r = env::init();
        if (!r.ok()) throw std::runtime_error(r.error().message());
    }
    // The World's own bus: it attaches to the current Host, the World's (its entry points run
    // in it), so every World has its own devices, DMA memory and IOVA map. A Host with a bus
    // already (only if this World's calls were not in its own Host) is refused, not asserted.
    if (env::backend::sim_pci_provider() != nullptr)
        throw std::runtime_error("this World's Host already has an emulated PCI bus");
    auto d = std::make_unique<Devices>();
    d->bus = std::make_unique<hwemu::PciBus>();
    d->thread = own_thread("devices");
    if (d->thread == nullptr) d->thread = sched_->create_thread("devices");
    devices_.reset(d.release());
    return *devices_;
}

hwemu::PciBus& World::devices_bus() { return devices_ ? *devices_->bus : *devices().bus; }
runtime::Thread* World::devices_thread() { return devices_ ? devices_->thread : devices().thread; }

void World::close_devices() {
    if (!devices_) return;
    close_nvme();  // drivers detach and models go before the bus (nvme_py.cpp)
    Devices& d = *devices_;
    for (auto& [name, e] : d.engines) {
        bool stopped = false;
        hwemu::CopyEngine* m = e.model.get();
        (void)d.thread->post([m, &stopped] {
            m->stop();
            stopped = true;
        });
        sched_->run_until([&] { return stopped; }, sched_->now_ns() + 1'000'000'000ull);
        e.fn.reset();
    }
    d.engines.clear();
    d.bus.reset();
    for (auto& [iova, buf] : d.buffers) env::dma_free(buf.first);
    devices_.reset();
}

void World::add_copy_engine(const std::string& address) {
    Guard g(*this);
    Devices& d = devices();
    env::PciAddress addr = parse_address(address);
    auto model = std::make_unique<hwemu::CopyEngine>();
    auto f = d.bus->add_function(addr, hwemu::copy_engine_config(), model.get());
    if (!f.ok()) throw std::runtime_error(f.error().message());
    model->fn = *f;
    auto claimed = env::claim(addr);
    if (!claimed.ok()) throw std::runtime_error(claimed.error().message());
    auto bar = (*claimed)->map_bar(0);
    if (!bar.ok()) throw std::runtime_error(bar.error().message());
    bool started = false;
    hwemu::CopyEngine* m = model.get();
    Devices::Engine e{std::move(model), std::move(*claimed), *bar};
    d.engines.emplace(addr.to_string(), std::move(e));
    {
        pyb::gil_scoped_release nogil;
        runtime::Thread* t = d.thread;
        (void)t->post([m, t, &started] {
            m->start(t);
            started = true;
        });
        sched_->run_until([&] { return started; });
    }
}

pyb::list World::pci_functions() {
    Guard g(*this);
    Devices& d = devices();
    auto list = env::enumerate();
    if (!list.ok()) throw std::runtime_error(list.error().message());
    pyb::list out;
    for (const auto& info : *list) {
        pyb::dict item;
        item["address"] = info.address.to_string();
        item["vendor_id"] = info.vendor_id;
        item["device_id"] = info.device_id;
        item["class_code"] = info.class_code;
        hwemu::EmulatedFunction* fn = d.bus->find(info.address);
        item["dma_faults"] = fn != nullptr ? fn->dma_fault_count() : 0;
        item["removed"] = fn != nullptr && fn->removed();
        out.append(item);
    }
    return out;
}

uint64_t World::dma_fault_count(std::optional<std::string> address) {
    Guard g(*this);
    Devices& d = devices();
    if (!address) return d.bus->dma_fault_count();
    hwemu::EmulatedFunction* fn = d.bus->find(parse_address(*address));
    if (fn == nullptr) throw pyb::key_error("no function at " + *address);
    return fn->dma_fault_count();
}

uint64_t World::dma_alloc(uint64_t size_bytes) {
    Guard g(*this);
    Devices& d = devices();
    if (size_bytes == 0 || size_bytes > (64u << 20))
        throw pyb::value_error("size must be in [1, 64 MiB]");
    auto p = env::dma_alloc(size_bytes, 4096, true);
    if (!p.ok()) throw std::runtime_error(p.error().message());
    uint64_t iova = env::iova_of(*p);
    d.buffers[iova] = {*p, size_bytes};
    return iova;
}

void World::dma_write(uint64_t iova, const std::string& data) {
    Guard g(*this);
    std::memcpy(devices().host(iova, data.size()), data.data(), data.size());
}

pyb::bytes World::dma_read(uint64_t iova, uint64_t len) {
    Guard g(*this);
    const uint8_t* p = devices().host(iova, len);
    return pyb::bytes(reinterpret_cast<const char*>(p), len);
}

std::string World::copy_engine_run(const std::string& address, uint64_t src_iova,
                                   uint64_t dst_iova, uint64_t len) {
    Guard g(*this);
    Devices::Engine& e = devices().engine(address);
    using CE = hwemu::CopyEngine;
    {
        pyb::gil_scoped_release nogil;
        // Programmed from a message on a Thread, as a driver would: the simulator sees a step
        // that did work and re-polls the model, which the doorbell armed.
        bool rung = false;
        env::Bar bar = e.bar;
        (void)devices_->thread->post([bar, src_iova, dst_iova, len, &rung] {
            bar.write64(CE::kRegSrc, src_iova);
            bar.write64(CE::kRegDst, dst_iova);
            bar.write32(CE::kRegLen, static_cast<uint32_t>(len));
            bar.write32(CE::kRegDoorbell, 1);
            rung = true;
        });
        sched_->run_until([&] { return rung && bar.read32(CE::kRegStatus) != CE::kBusy; },
                          sched_->now_ns() + 1'000'000'000ull);
    }
    switch (e.bar.read32(CE::kRegStatus)) {
        case CE::kDone: return "done";
        case CE::kDmaError: return "dma_error";
        case CE::kBusy: return "busy";
        case 0xffffffffu: return "removed";
        default: return "idle";
    }
}

void World::surprise_remove(const std::string& address) {
    Guard g(*this);
    auto r = devices().bus->surprise_remove(parse_address(address));
    if (!r.ok()) throw std::runtime_error(r.error().message());
}

}  // namespace strata::py
