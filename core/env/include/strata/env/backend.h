// The backend interface: published for the code that implements a backend, and for nothing else
// (drivers use env.h, memory.h and pci.h). env's own sim and dpdk backends implement it, and
// hw-emulation/pci's emulated bus implements its SimPciProvider part.
//
// Backends are listed in one explicit table (src/env.cpp: {"sim", make_sim_backend},
// {"dpdk", make_dpdk_backend} when STRATA_ENV_HAVE_DPDK), never registered from static
// constructors. One backend runs per process (DPDK's EAL exists once per process); the env core
// owns the IOVA maps and the claim bookkeeping, one of each per runtime::Host; a backend only
// provides memory with IOVAs and PCI access, and is called in the Host of its caller
// (runtime::current_host(): the sim backend keeps its per-Host parts, the IOVA space and the
// emulated bus, there):
//   - dma_alloc returns host memory plus its IOVA (contiguous); the core records the region.
//   - register_memory returns the IOVA pieces of a user range (one piece per contiguous run).
//   - pci_claim returns a PciFunctionImpl that holds the backend's own exclusivity (lock file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/env.h>
#include <strata/env/pci.h>
#include <strata/runtime/host.h>
#include <strata/runtime/thread.h>

namespace strata::env::backend {

struct BackendAllocation {
    void* vaddr = nullptr;
    uint64_t iova = 0;
    uint64_t cookie = 0;  // handed back to dma_free
};

struct BackendPiece {
    uintptr_t vaddr = 0;
    uint64_t iova = 0;
    size_t len = 0;
};

class PciFunctionImpl {
public:
    virtual ~PciFunctionImpl() = default;
    virtual bool removed() const noexcept = 0;
    // offset/len already validated by the core (naturally aligned, inside 4096 bytes).
    virtual Status config_read(uint32_t offset, void* buf, uint32_t len) const noexcept = 0;
    virtual Status config_write(uint32_t offset, const void* buf, uint32_t len) noexcept = 0;
    virtual Result<Bar> map_bar(uint32_t index) = 0;
    virtual void set_hot_remove_target(runtime::Thread* thread, runtime::MsgFn fn,
                                       void* ctx) noexcept = 0;
    // Releases the function and its lock; called once, before destruction.
    virtual Result<void> detach() = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const noexcept = 0;
    virtual Result<void> start(const EnvOptions& options) = 0;
    // Whether a later start() with these options would be a no-op (same configuration).
    virtual bool same_options(const EnvOptions& options) const = 0;
    virtual void stop() = 0;

    virtual Result<BackendAllocation> dma_alloc(size_t size_bytes, size_t align, bool zeroed) = 0;
    virtual void dma_free(void* vaddr, size_t size_bytes, uint64_t cookie) noexcept = 0;
    virtual Result<std::vector<BackendPiece>> register_memory(void* addr, size_t len) = 0;
    virtual Result<void> unregister_memory(void* addr, size_t len) = 0;

    virtual Result<std::vector<PciDeviceInfo>> pci_enumerate() = 0;
    virtual Result<std::unique_ptr<PciFunctionImpl>> pci_claim(const PciAddress& address) = 0;
};

struct BackendEntry {
    const char* name;
    std::unique_ptr<Backend> (*create)();
};

// The explicit table, in order ("sim" first: the default).
std::span<const BackendEntry> backend_table() noexcept;

std::unique_ptr<Backend> make_sim_backend();
#ifdef STRATA_ENV_HAVE_DPDK
// Defined by the dpdk engineer's adapter, src/dpdk/dpdk_backend.cpp (compiled into strata_env by
// dpdk.cmake when present). Until it exists the table has no "dpdk" entry.
std::unique_ptr<Backend> make_dpdk_backend();
#endif

// The sim backend's PCI side: an emulated bus (hw-emulation/pci's PciBus) plugs in here, so env
// never links device models. One provider per runtime::Host (each App or World has its own bus;
// enumerate/claim in a Host see only that Host's); nullptr detaches. The forms without a Host
// act on runtime::current_host().
class SimPciProvider {
public:
    virtual Result<std::vector<PciDeviceInfo>> list() = 0;
    virtual Result<std::unique_ptr<PciFunctionImpl>> claim(const PciAddress& address) = 0;

protected:
    ~SimPciProvider() = default;
};
void set_sim_pci_provider(SimPciProvider* provider) noexcept;
SimPciProvider* sim_pci_provider() noexcept;
void set_sim_pci_provider(runtime::Host& host, SimPciProvider* provider) noexcept;
SimPciProvider* sim_pci_provider(runtime::Host& host) noexcept;

// Cross-process exclusivity for a claimed function: an fcntl write lock on `path` (the file
// holds the owner's pid). Returns the fd holding the lock (release_lock_file closes it and, with
// unlink, removes the file), or Errc::busy naming the holder's pid. Shared by the backends.
Result<int> acquire_lock_file(const std::string& path);
void release_lock_file(int fd, const std::string& path, bool unlink) noexcept;

// The lock file of a real function: /var/tmp/strata_pci_lock_<BDF> (the dpdk backend's name).
// Note for the dpdk backend: dpdk::lock_pci_function() and dpdk::canonical_bdf() predate these
// and PciAddress::parse/to_string; they are the same concepts and are meant to become calls to
// acquire_lock_file(pci_lock_path(addr)) and PciAddress (one concept, one place).
std::string pci_lock_path(const PciAddress& address);

}  // namespace strata::env::backend
