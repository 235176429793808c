// The env layer: Strata's one seam to hardware (DMA memory, IOVA map, PCI functions).
//
// A backend is chosen at run time by name from an explicit table (<strata/env/backend.h>):
//   "sim"  - DMA memory from host memory with a private IOVA space, PCI functions from an
//            emulated bus (hw-emulation/pci). The default.
//   "dpdk" - DPDK 22.11's EAL: hugepage (or --no-huge) memory with real IOVAs, vfio-pci
//            functions through DPDK's PCI bus. Present when built with STRATA_WITH_DPDK.
// env::init() selects and starts the backend once per process. Every other env call made before
// init() starts the default ("sim") backend, so tests and tools need no set-up.
//
// Per process, per Host: the backend and its selection are process-wide (DPDK's EAL exists once
// per process and owns its hugepages and PCI bus). What code does with it belongs to the
// runtime::Host it runs in (runtime::current_host(): an App's, a Python World's): its DMA regions
// and IOVA map, its claimed PCI functions and, under the sim backend, its emulated PCI bus and
// IOVA space. Two Hosts in one process share none of these, as two machines would not.
//
// Thread-safety: init()/fini() are control path, from any OS thread, serialised internally.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>

namespace strata::env {

enum class IovaMode { automatic, va, pa };

// Options of the dpdk backend (EAL). The one definition: the dpdk backend's EalOptions
// (src/dpdk/eal.h) is to become an alias of this struct.
struct DpdkOptions {
    // CPU cores Strata runs on; EAL's main lcore goes on the first one. Empty: core 0.
    std::vector<uint32_t> cores;
    // -m: memory to reserve up front in MiB; 0 leaves it to DPDK.
    uint64_t memory_mb = 0;
    // --no-huge: memory from anonymous pages (hosts without hugepages; forces IOVA mode VA).
    bool no_huge = false;
    // --no-pci: do not scan the PCI bus (memory-only use, tests).
    bool no_pci = false;
    IovaMode iova_mode = IovaMode::automatic;
    // -a: PCI functions ("0000:01:00.0" or "01:00.0") EAL may touch; empty: every vfio function.
    std::vector<std::string> allowed_pci;
    std::string huge_dir;     // --huge-dir; empty: DPDK finds one
    std::string file_prefix;  // --file-prefix; empty: "strata_<pid>"
    std::string log_level;    // DPDK's --log-level; empty: follow Strata's "dpdk" component
    std::vector<std::string> extra_args;  // appended verbatim

    friend bool operator==(const DpdkOptions&, const DpdkOptions&) = default;
};

struct EnvOptions {
    std::string backend = "sim";  // "sim" | "dpdk"
    DpdkOptions dpdk;
};

// Starts the named backend. Errors: invalid_argument (unknown backend: the message lists the
// compiled-in ones), already_exists (another backend, or other options, already running), or the
// backend's own failure. Calling it again with the same options is a no-op.
Result<void> init(const EnvOptions& options = {});

// Stops the backend: every DMA allocation and registration must be gone and every PCI function
// detached, in every Host (asserted; a Host also asserts it for itself when destroyed). The sim backend can be started again afterwards; DPDK's EAL cannot
// (a later init("dpdk") in the same process reports that).
void fini();

bool initialized() noexcept;
// Name of the running backend ("sim", "dpdk"), or "" before init.
std::string_view backend_name() noexcept;
// Backends compiled into this binary, in table order.
std::vector<std::string> backend_names();

}  // namespace strata::env
