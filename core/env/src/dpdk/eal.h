// DPDK EAL bring-up for the dpdk env backend (private to core/env).
//
// DPDK's Environment Abstraction Layer can be initialised once per process and never again
// (rte_eal_cleanup does not make a second rte_eal_init possible). eal_init() therefore keeps the
// argument vector of the first successful call: a later call with the same EalOptions returns the
// same EalInfo, a call with different options is an error that names both argument vectors, and
// after a failed initialisation every later call reports the original failure (DPDK refuses to
// retry in the same process).
//
// Strata runs its own reactors, so EAL gets exactly one lcore (the main lcore, on the first core
// of Strata's core list) and no worker lcores; the calling OS thread's CPU affinity, which
// rte_eal_init changes to the main lcore's core, is restored afterwards. DPDK's log lines go to
// Strata's logger (component "dpdk").
//
// Thread-safety: eal_init() may be called from any OS thread; calls are serialised.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <strata/base/status.h>

namespace strata::env::dpdk {

enum class IovaMode { automatic, va, pa };

const char* iova_mode_name(IovaMode mode) noexcept;  // "auto", "va", "pa"

struct EalOptions {
    // CPU cores Strata runs on; EAL's main lcore goes on the first one. Empty: core 0.
    std::vector<uint32_t> cores;
    // -m: memory to reserve up front in MiB; 0 leaves it to DPDK (dynamic hugepage allocation;
    // with no_huge DPDK's default of 64 MiB applies).
    uint64_t memory_mb = 0;
    // --no-huge: memory from anonymous pages (hosts without hugepages). Forces IOVA mode VA, so
    // it only suits devices behind an IOMMU (or tests without devices).
    bool no_huge = false;
    // --no-pci: do not scan the PCI bus (memory-only use, tests).
    bool no_pci = false;
    IovaMode iova_mode = IovaMode::automatic;
    // -a: PCI functions ("0000:01:00.0" or "01:00.0") EAL may touch; empty: every function
    // bound to vfio-pci (Strata still attaches only the functions it claims).
    std::vector<std::string> allowed_pci;
    // --huge-dir: hugetlbfs mount to use; empty: DPDK finds one.
    std::string huge_dir;
    // --file-prefix: runtime-directory name; empty: "strata_<pid>" so processes never collide.
    std::string file_prefix;
    // --log-level for DPDK's own messages: error, warning, notice, info, debug. Empty: follow the
    // level of Strata's "dpdk" log component.
    std::string log_level;
    // Appended verbatim (escape hatch, e.g. {"--vfio-intr=msix"}).
    std::vector<std::string> extra_args;

    friend bool operator==(const EalOptions&, const EalOptions&) = default;
};

// What EAL ended up with.
struct EalInfo {
    IovaMode iova_mode = IovaMode::automatic;  // va or pa after init
    bool hugepages = false;
    bool pci = false;
    uint32_t main_lcore = 0;
    uint32_t main_core = 0;
    std::vector<std::string> args;  // argv passed to rte_eal_init, argv[0] included
};

// The argv for rte_eal_init (argv[0] included). Pure: validates the options (BDF syntax,
// conflicting flags) and reports the first problem as Errc::invalid_argument.
Result<std::vector<std::string>> build_eal_args(const EalOptions& options);

// Initialise EAL once per process (see the header comment). Errors: invalid_argument for bad
// options, already_exists for a second call with different options, and the EAL's own failure
// (rte_strerror(rte_errno)) as Errc::io_error / not_supported / permission_denied / no_memory.
Result<EalInfo> eal_init(const EalOptions& options);

// Whether eal_init() succeeded in this process, and with what.
bool eal_initialized() noexcept;
const EalInfo* eal_info() noexcept;

}  // namespace strata::env::dpdk
