// Test helper: the target side of the NVMe/TCP end-to-end tests (core/nvmf's PDU-level
// initiator, core/nvme's initiator). One simulated App with every module and the TCP transport's
// RPCs, a client Host, and either a sim network joining them (App at 10.0.0.1, client at
// 10.0.0.2: virtual time, deterministic) or posix loopback (kernel TCP, real time). pump()
// drives the simulator until a predicate holds; stop() shuts the transport, then the App, down.
//
// Bounds: a sim run is bounded by virtual time and a step budget, never by the wall clock (a
// loaded machine must not fail a deterministic run); a posix run by the wall clock, since the
// kernel's sockets move in real time.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <strata/env/env.h>
#include <strata/nvmf/tcp.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

namespace strata::nvmf::testing {

class TcpTarget {
public:
    using Json = nlohmann::json;

    // Steps one pump() may take in a sim run before it gives up (a livelock guard: pollers that
    // stay busy keep virtual time still). Generous: the e2e tests' longest wait took about
    // 200 thousand steps. The same seed takes the same steps, so a run within it always is.
    static constexpr uint64_t kSimStepBudget = 20'000'000;

    // Builds and starts the App; impl ("sim" or "posix") also becomes its default socket
    // implementation. Call with ASSERT_NO_FATAL_FAILURE.
    void start(const std::string& impl_name, const std::string& client_name) {
        ASSERT_TRUE(env::init().ok());
        impl = impl_name;
        sim = std::make_unique<runtime::SimScheduler>(42, 2);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        register_tcp_rpc_methods(*app);
        client_host = std::make_unique<runtime::Host>(client_name, 44);
        if (simulated()) {
            net = std::make_unique<sock::SimNetwork>(*sim, 43);
            ASSERT_TRUE(net->attach(app->host(), "10.0.0.1").ok());
            ASSERT_TRUE(net->attach(*client_host, "10.0.0.2").ok());
            addr = "10.0.0.1";
        } else {
            addr = "127.0.0.1";
        }
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(pump([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok()) << started->error().message();
        runtime::HostScope scope(app->host());
        ASSERT_TRUE(sock::set_default_impl(impl).ok());
    }

    // The transport shut down (its connections closed), the App stopped, everything gone.
    void stop() {
        if (app) {
            bool down = false;
            if (app->thread()
                    .post([&] {
                        tcp_transport_shutdown([](void* p) { *static_cast<bool*>(p) = true; },
                                               &down);
                    })
                    .ok())
                pump([&] { return down; });
            app->request_stop();
            pump([&] { return app->stopped(); });
        }
        app.reset();
        net.reset();
        client_host.reset();
        sim.reset();
        if (env::initialized()) env::fini();
    }

    bool simulated() const { return impl == "sim"; }

    // A port to listen on: 4420 on the sim network; on loopback one derived from the pid, so
    // test processes running side by side rarely collide (`base` tells test binaries apart).
    uint16_t port(uint16_t base) const {
        return simulated() ? 4420 : static_cast<uint16_t>(base + (::getpid() % 20000));
    }

    // Steps the simulator until pred() holds; `each` runs before every step (a test's own
    // socket group, polled outside the simulator). sim: false once the world is idle with
    // pred() false, after `seconds` of virtual time, or after kSimStepBudget steps. posix:
    // false after `seconds` of wall-clock time.
    bool pump(const std::function<bool()>& pred, double seconds = 20,
              const std::function<void()>& each = {}) {
        const uint64_t vdeadline = sim->now_ns() + static_cast<uint64_t>(seconds * 1e9);
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
        uint64_t steps = 0;
        while (!pred()) {
            if (each) each();
            const auto r = sim->step();
            if (simulated()) {
                if (r == runtime::SimScheduler::StepResult::idle) return pred();
                if (sim->now_ns() > vdeadline || ++steps > kSimStepBudget) return false;
            } else if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
        }
        return true;
    }

    // The result of a call expected to succeed.
    Json call(const std::string& method, Json params) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }

    // Runs fn on `thread` and pumps until it has run.
    template <class F>
    bool on(runtime::Thread& thread, F&& fn) {
        bool done = false;
        if (!thread
                 .post([&] {
                     fn();
                     done = true;
                 })
                 .ok())
            return false;
        return pump([&] { return done; });
    }

    std::string impl;
    std::string addr;
    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
    std::unique_ptr<sock::SimNetwork> net;
    std::unique_ptr<runtime::Host> client_host;
};

}  // namespace strata::nvmf::testing
