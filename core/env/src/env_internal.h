// Private to core/env/src: the running backend and the env state of one Host.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>

#include <strata/base/log.h>
#include <strata/env/backend.h>
#include <strata/env/iova_map.h>
#include <strata/runtime/host.h>

namespace strata::env {
STRATA_LOG_COMPONENT(env);  // log_env, shared by env's sources
}  // namespace strata::env

namespace strata::env::detail {

// The running backend; starts the default ("sim") on first use. Never null.
backend::Backend& backend();

// DMA regions and claimed PCI functions over every Host of the process: the backend is one per
// process, and env::fini() must not stop it under any Host's memory or functions.
void count_regions(int64_t delta) noexcept;
void count_abandoned(int64_t delta) noexcept;  // abandoned regions over every Host
void count_claims(int64_t delta) noexcept;

}  // namespace strata::env::detail

namespace strata::env::backend {

// The env state of one runtime::Host (an App, a Python World): the DMA regions its code
// allocated or registered (its IOVA map), the PCI functions claimed in it and its emulated PCI
// bus (sim backend). Nothing here is shared between Hosts: an IOVA of one Host is not mapped in
// another, and two Hosts' buses may each have a function at the same address, claimed
// independently. Destroyed with its Host, when every region must be freed, every function
// detached and the bus detached (asserted, as env::fini() asserts for the process).
struct HostEnv {
    explicit HostEnv(runtime::Host& host) noexcept : host(host) {}
    ~HostEnv();
    HostEnv(const HostEnv&) = delete;
    HostEnv& operator=(const HostEnv&) = delete;

    runtime::Host& host;
    IovaMap map;
    // Serialises dma_alloc/free/register/unregister (the map has its own writer mutex; this
    // keeps a backend call and its map update together).
    std::mutex mem_mu;
    std::mutex claim_mu;
    std::set<PciAddress> claimed;  // under claim_mu
    std::atomic<SimPciProvider*> provider{nullptr};
    std::set<uintptr_t> abandoned;  // dma_abandon'ed allocations (under mem_mu)
};

// The current Host's env state (runtime::current_host()).
HostEnv& host_env() noexcept;
inline HostEnv& host_env(runtime::Host& host) noexcept { return host.get<HostEnv>(); }

}  // namespace strata::env::backend
