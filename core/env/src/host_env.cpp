// The env state of one Host (see env_internal.h): its IOVA map, claims and emulated bus.
#include <strata/base/assert.h>

#include "env_internal.h"

namespace strata::env::backend {

HostEnv::~HostEnv() {
    // The checks env::fini() makes for the process, made for this Host as it goes: memory or a
    // function left behind by an App's modules (or a test) is a leak and a device that could
    // still DMA into freed memory.
    size_t left = map.size() - abandoned.size();
    STRATA_ASSERT_MSG(left == 0, "Host '%s' destroyed with %zu DMA regions still "
                      "allocated/registered in it", host.name().c_str(), left);
    if (!abandoned.empty()) {
        // Given up to a device that never confirmed it stopped: the memory stays allocated for
        // the life of the process (never reused), only this Host's bookkeeping goes.
        STRATA_ERRLOG(log_env, "Host '{}': {} DMA region(s) abandoned to devices stay allocated",
                      host.name(), abandoned.size());
        detail::count_regions(-static_cast<int64_t>(abandoned.size()));
        detail::count_abandoned(-static_cast<int64_t>(abandoned.size()));
    }
    std::lock_guard lock(claim_mu);
    STRATA_ASSERT_MSG(claimed.empty(), "Host '%s' destroyed with %zu PCI functions still "
                      "claimed in it (first %s)", host.name().c_str(), claimed.size(),
                      claimed.empty() ? "" : claimed.begin()->to_string().c_str());
    STRATA_ASSERT_MSG(provider.load(std::memory_order_acquire) == nullptr,
                      "Host '%s' destroyed while an emulated PCI bus is attached to it (destroy "
                      "the bus first)", host.name().c_str());
}

HostEnv& host_env() noexcept { return host_env(runtime::current_host()); }

IovaMap& iova_map() noexcept { return host_env().map; }
IovaMap& iova_map(runtime::Host& host) noexcept { return host_env(host).map; }

void set_sim_pci_provider(SimPciProvider* provider) noexcept {
    set_sim_pci_provider(runtime::current_host(), provider);
}
void set_sim_pci_provider(runtime::Host& host, SimPciProvider* provider) noexcept {
    host_env(host).provider.store(provider, std::memory_order_release);
}

SimPciProvider* sim_pci_provider() noexcept { return sim_pci_provider(runtime::current_host()); }
SimPciProvider* sim_pci_provider(runtime::Host& host) noexcept {
    return host_env(host).provider.load(std::memory_order_acquire);
}

}  // namespace strata::env::backend
