#include "env_cli.h"

#include <fmt/format.h>

namespace strata::apps {

void add_env_options(CLI::App& cli, EnvCli& o) {
    cli.add_option("--env", o.env,
                   "Hardware environment: sim (emulated devices) or dpdk (VFIO devices, hugepages)")
        ->capture_default_str();
    cli.add_option("-s,--mem-size", o.dpdk.memory_mb, "dpdk: memory to reserve up front, MiB");
    cli.add_flag("--no-huge", o.dpdk.no_huge, "dpdk: anonymous memory instead of hugepages");
    cli.add_flag("--no-pci", o.dpdk.no_pci, "dpdk: do not scan the PCI bus");
    cli.add_option("--iova-mode", o.iova_mode, "dpdk: IOVA mode auto, va or pa")->capture_default_str();
    cli.add_option("-A,--pci-allowed", o.dpdk.allowed_pci,
                   "dpdk: PCI function EAL may use, e.g. 0000:01:00.0 (repeatable)");
    cli.add_option("--huge-dir", o.dpdk.huge_dir, "dpdk: hugetlbfs mount to use");
}

Result<void> init_env(EnvCli& o, const std::vector<int>& cores) {
    if (o.env != "sim" && o.env != "dpdk")
        return Error(Errc::invalid_argument,
                     fmt::format("--env '{}': unknown environment (expected sim or dpdk)", o.env));
    if (o.iova_mode == "va") o.dpdk.iova_mode = env::IovaMode::va;
    else if (o.iova_mode == "pa") o.dpdk.iova_mode = env::IovaMode::pa;
    else if (o.iova_mode != "auto")
        return Error(Errc::invalid_argument,
                     fmt::format("--iova-mode '{}': expected auto, va or pa", o.iova_mode));
    o.dpdk.cores.clear();
    for (int c : cores) o.dpdk.cores.push_back(static_cast<uint32_t>(c));
    if (auto r = env::init({o.env, o.dpdk}); !r.ok())
        return Error(r.code(), fmt::format("--env {}: {}", o.env, r.error().message()));
    return {};
}

}  // namespace strata::apps
