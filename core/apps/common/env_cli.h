// Command-line options for the hardware environment (--env sim|dpdk and the EAL options),
// shared by strata-tgt, bdevperf and the NVMe tools so every app spells them the same way.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <strata/base/status.h>
#include <strata/env/env.h>

namespace strata::apps {

struct EnvCli {
    std::string env = "sim";
    std::string iova_mode = "auto";
    env::DpdkOptions dpdk;
};

void add_env_options(CLI::App& cli, EnvCli& opts);
// Validates the options and calls env::init for `cores` (from the core mask). The message of
// an error names the option.
Result<void> init_env(EnvCli& opts, const std::vector<int>& cores);

}  // namespace strata::apps
