// strata-tgt: the Strata target daemon. A thin main over rpc::App: parses the command line,
// starts the reactors, serves JSON-RPC on a Unix socket, loads the JSON config, and stops
// gracefully on SIGINT/SIGTERM (stop accepting RPC, drain, fini subsystems, stop reactors,
// remove the socket).
#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <fmt/format.h>
#include "../common/env_cli.h"
#include "../common/stop_signals.h"

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/vhost/vhost.h>

namespace {

void on_signal(int) {
    strata::rpc::App::request_stop_from_signal();
}

void sleep_ms(int ms) {
    struct timespec ts {
        ms / 1000, (ms % 1000) * 1'000'000L
    };
    nanosleep(&ts, nullptr);
}

int fail(const std::string& msg) {
    std::fprintf(stderr, "strata-tgt: %s\n", msg.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"strata-tgt: Strata storage target daemon (JSON-RPC on a Unix socket)"};
    std::string cpumask = "0x1";
    std::string config_file;
    std::string rpc_socket = "/var/tmp/strata.sock";
    std::vector<std::string> log_flags;
    std::string log_level;
    bool wait_for_rpc = false;
    bool no_pin = false;
    std::string vhost_socket_dir;
    strata::apps::EnvCli env_cli;
    cli.add_option("-m,--cpumask", cpumask, "Core mask of the reactors (0x3, [0,2-3])")
        ->capture_default_str();
    cli.add_option("-c,--json", config_file, "JSON config to load at start ({\"subsystems\":...})");
    cli.add_option("-r,--rpc-socket", rpc_socket, "JSON-RPC Unix socket path")
        ->capture_default_str();
    cli.add_option("-L,--logflag", log_flags, "Enable debug logs of a component (repeatable)");
    cli.add_option("--log-level", log_level, "Global log level: ERROR WARN NOTICE INFO DEBUG");
    cli.add_option("-S,--vhost-socket-dir", vhost_socket_dir,
                   "Directory of the vhost-user controllers' sockets (SPDK's -S); default: the "
                   "current directory");
    cli.add_flag("--wait-for-rpc", wait_for_rpc,
                 "Wait for framework_start_init before initializing subsystems");
    strata::apps::add_env_options(cli, env_cli);
    cli.add_flag("--no-pin", no_pin, "Do not pin reactor threads to their cores");
    CLI11_PARSE(cli, argc, argv);

    auto cores = strata::runtime::parse_core_mask(cpumask);
    if (!cores) return fail(fmt::format("-m '{}': {}", cpumask, cores.error().message()));
    if (cores->empty()) return fail(fmt::format("-m '{}': the core mask selects no core", cpumask));
    // The hardware environment first: the dpdk backend's EAL must own its memory and devices
    // before any module allocates DMA memory or claims a function.
    if (auto r = strata::apps::init_env(env_cli, *cores); !r) return fail(r.error().message());
    std::fprintf(stderr, "strata-tgt: environment %.*s\n",
                 static_cast<int>(strata::env::backend_name().size()),
                 strata::env::backend_name().data());
    if (!log_level.empty()) {
        auto l = strata::log_level_parse(log_level);
        if (!l) {
            return fail(
                fmt::format("--log-level '{}': expected ERROR, WARN, NOTICE, INFO or "
                            "DEBUG",
                            log_level));
        }
        strata::log_set_global_level(*l);
    }
    for (const auto& f : log_flags) {
        if (f == "all") {
            for (auto* c : strata::log_components()) c->set_level(strata::LogLevel::debug);
            continue;
        }
        auto* c = strata::log_find_component(f);
        if (c == nullptr) {
            std::string known;
            for (auto* k : strata::log_components()) known += std::string(" ") + k->name();
            return fail(fmt::format("-L '{}': unknown log component (known:{} all)", f, known));
        }
        c->set_level(strata::LogLevel::debug);
    }
    // Read and parse the config before starting anything: a bad file fails fast and clearly.
    std::optional<strata::rpc::Json> config;
    if (!config_file.empty()) {
        auto r = strata::rpc::App::read_config_file(config_file);
        if (!r) return fail(r.error().message());
        config = std::move(*r);
    }

    strata::apps::install_stop_signals(on_signal);

    strata::runtime::RealSchedulerOptions sopts;
    sopts.cores = *cores;
    sopts.pin = !no_pin;
    strata::runtime::RealScheduler sched(sopts);
    strata::rpc::AppOptions aopts;
    aopts.rpc_socket = rpc_socket;
    aopts.wait_for_rpc = wait_for_rpc;
    aopts.config = config;
    int rc = 0;
    {
        strata::rpc::App app(sched, aopts);
        {
            // Modules register their state (the bdev layer's module table: examine,
            // save_config, fini) in the App's Host: outside any Thread, name it. Without this
            // they went to the process's fallback Host, and strata-tgt neither examined new
            // bdevs (deferred splits, raids), wrote module config nor detached NVMe
            // controllers at exit.
            strata::runtime::HostScope scope(app.host());
            strata::stack::register_all_modules(app);
        }
        strata::vhost::set_socket_dir(app.host(), vhost_socket_dir);
        if (auto order = app.init_order(); !order) return fail(order.error().message());
        sched.start();

        std::mutex m;
        std::optional<strata::Result<void>> started;
        std::atomic<bool> have{false};
        app.start([&](strata::Result<void> r) {
            std::lock_guard<std::mutex> lk(m);
            started = std::move(r);
            have = true;
        });
        while (!have.load() && !app.stop_requested()) {
            sleep_ms(5);
            // A signal during start also ends the wait: the stop poller notices it.
            if (app.stopped()) break;
        }
        if (have.load()) {
            std::lock_guard<std::mutex> lk(m);
            if (!started->ok()) {
                std::fprintf(stderr, "strata-tgt: %s\n", started->error().message().c_str());
                rc = 1;
                app.request_stop();
            } else {
                std::printf("strata-tgt: listening on %s\n", rpc_socket.c_str());
                std::printf("strata-tgt: %s\n", wait_for_rpc
                                                    ? "waiting for framework_start_init RPC"
                                                    : "framework initialized");
                std::fflush(stdout);
            }
        }
        while (!app.stopped()) sleep_ms(10);
        sched.stop();
    }
    if (rc == 0) {
        std::printf("strata-tgt: stopped\n");
        std::fflush(stdout);
    }
    return rc;
}
