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
#include <strata/env/env.h>

namespace strata::env::dpdk {

// The options are the env's DpdkOptions (strata/env/env.h): one definition.
using IovaMode = strata::env::IovaMode;
using EalOptions = strata::env::DpdkOptions;

const char* iova_mode_name(IovaMode mode) noexcept;  // "auto", "va", "pa"

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

// DPDK's error-level log lines since the previous call, "; "-joined (bounded; empty if none), and
// forgets them. DPDK functions often fail with a bare -1, the reason being only in those lines.
std::string eal_take_error_lines();

// Logs one line through DPDK's logger ("EAL: <line>", error or notice level), so tests can drive
// the path DPDK's own messages take.
void eal_log_for_testing(bool error, const std::string& line);

}  // namespace strata::env::dpdk
