// Strata's NVMe/TCP initiator against Strata's NVMe-oF target (core/nvmf): one App serving a
// malloc bdev, the initiator on a Thread of a second simulated Host, over sim sockets (virtual
// time, deterministic) and posix loopback (kernel TCP). Connect, Identify, in-capsule and R2T
// writes, C2HData reads, with and without digests, then a clean disconnect.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <strata/env/env.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/qpair.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/tcp.h>
#include <strata/rpc/app.h>
#include <strata/rpc/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

namespace strata::nvme {
namespace {

using Json = nlohmann::json;
constexpr const char* kNqn = "nqn.2016-06.io.strata:cnode1";

struct Params {
    std::string impl;
    bool digests;
};

class NvmeTcpE2e : public ::testing::TestWithParam<Params> {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        impl_ = GetParam().impl;
        sim_ = std::make_unique<runtime::SimScheduler>(42, 2);
        app_ = std::make_unique<rpc::App>(*sim_);
        rpc::register_all_modules(*app_);
        nvmf::register_tcp_rpc_methods(*app_);
        client_host_ = std::make_unique<runtime::Host>("initiator", 44);
        if (impl_ == "sim") {
            net_ = std::make_unique<sock::SimNetwork>(*sim_, 43);
            ASSERT_TRUE(net_->attach(app_->host(), "10.0.0.1").ok());
            ASSERT_TRUE(net_->attach(*client_host_, "10.0.0.2").ok());
            addr_ = "10.0.0.1";
        } else {
            addr_ = "127.0.0.1";
        }
        std::optional<Result<void>> started;
        app_->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(pump([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok());
        {
            runtime::HostScope scope(app_->host());
            ASSERT_TRUE(sock::set_default_impl(impl_).ok());
        }
        call("bdev_malloc_create", {{"name", "Malloc0"}, {"num_blocks", 8192}, {"block_size", 512}});
        call("nvmf_create_transport", {{"trtype", "tcp"}, {"in_capsule_data_size", 4096}});
        port_ = impl_ == "sim" ? 4420 : static_cast<uint16_t>(21000 + (::getpid() % 20000));
        call("nvmf_create_subsystem", {{"nqn", kNqn}, {"allow_any_host", true}});
        call("nvmf_subsystem_add_ns", {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc0"}}}});
        call("nvmf_subsystem_add_listener",
             {{"nqn", kNqn},
              {"listen_address",
               {{"trtype", "tcp"}, {"adrfam", "ipv4"}, {"traddr", addr_}, {"trsvcid", std::to_string(port_)}}}});
        thread_ = sim_->create_thread("initiator", 0, client_host_.get());
    }

    void TearDown() override {
        if (app_) {
            bool down = false;
            ASSERT_TRUE(app_->thread().post([&] {
                nvmf::tcp_transport_shutdown([](void* p) { *static_cast<bool*>(p) = true; }, &down);
            }).ok());
            pump([&] { return down; });
            app_->request_stop();
            pump([&] { return app_->stopped(); });
        }
        app_.reset();
        net_.reset();
        client_host_.reset();
        sim_.reset();
    }

    bool pump(const std::function<bool()>& pred, double seconds = 30) {
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(static_cast<int>(seconds * 1000));
        const uint64_t vdeadline = sim_->now_ns() + static_cast<uint64_t>(seconds * 1e9);
        while (!pred()) {
            const auto r = sim_->step();
            if (impl_ == "sim" && r == runtime::SimScheduler::StepResult::idle) return pred();
            if (impl_ == "sim" && sim_->now_ns() > vdeadline) return false;
            if (std::chrono::steady_clock::now() > deadline) return false;
        }
        return true;
    }

    Json call(const std::string& method, Json params) {
        Json r = app_->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }

    template <class T>
    T run(runtime::Task<T> task) {
        std::optional<T> out;
        runtime::spawn(*thread_, std::move(task), [&](T v) { out.emplace(std::move(v)); });
        EXPECT_TRUE(pump([&] { return out.has_value(); })) << "task never ended";
        if (!out) std::abort();
        return std::move(*out);
    }

    template <class F>
    void on(F&& fn) {
        bool done = false;
        ASSERT_TRUE(thread_->post([&] {
            fn();
            done = true;
        }).ok());
        ASSERT_TRUE(pump([&] { return done; }));
    }

    std::string impl_, addr_;
    uint16_t port_ = 0;
    std::unique_ptr<runtime::SimScheduler> sim_;
    std::unique_ptr<rpc::App> app_;
    std::unique_ptr<sock::SimNetwork> net_;
    std::unique_ptr<runtime::Host> client_host_;
    runtime::Thread* thread_ = nullptr;

    std::string fmt_trid() const {
        return "trtype:TCP adrfam:IPv4 traddr:" + addr_ + " trsvcid:" + std::to_string(port_) +
               " subnqn:" + kNqn;
    }
};

struct Io {
    int calls = 0;
    Completion cpl;
    static void cb(void* ctx, const Completion& c) {
        auto* io = static_cast<Io*>(ctx);
        ++io->calls;
        io->cpl = c;
    }
};

TEST_P(NvmeTcpE2e, ConnectIdentifyWriteReadDisconnect) {
    auto trid = parse_transport_id(fmt_trid());
    ASSERT_TRUE(trid.ok());
    ControllerOptions o;
    o.sock_impl = impl_;
    o.header_digest = GetParam().digests;
    o.data_digest = GetParam().digests;
    if (impl_ == "posix") {
        // Kernel sockets move in real time while the simulator's clock jumps whenever every
        // poller is idle: no virtual-time timers that real latency could trip.
        o.keep_alive_timeout_ms = 0;
        o.admin_timeout_us = 3'600'000'000;
        o.connect_timeout_ms = 3'600'000;
    }
    auto r = run(Controller::connect(*trid, o));
    ASSERT_TRUE(r.ok()) << r.error().message();
    std::unique_ptr<Controller> ctrl = std::move(*r);
    EXPECT_EQ(ctrl->state(), ControllerState::ready);
    const Namespace* ns = nullptr;
    on([&] {
        ns = ctrl->find_namespace(1);
    });
    ASSERT_NE(ns, nullptr);
    EXPECT_EQ(ns->num_blocks, 8192u);
    EXPECT_EQ(ns->block_size_bytes, 512u);
    std::unique_ptr<QPair> qp;
    on([&] {
        auto q = ctrl->alloc_io_qpair(*thread_, {});
        ASSERT_TRUE(q.ok()) << q.error().message();
        qp = std::move(*q);
    });
    ASSERT_TRUE(pump([&] { return qp->connected(); }));
    for (uint32_t blocks : {1u, 8u, 128u}) {  // in-capsule, in-capsule, R2T (64 KiB)
        SCOPED_TRACE(blocks);
        std::vector<uint8_t> out(blocks * 512), in(out.size(), 0);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 13 + blocks);
        Io w, rd;
        on([&] { ASSERT_TRUE(qp->write(*ns, out.data(), 100, blocks, Io::cb, &w).ok()); });
        ASSERT_TRUE(pump([&] { return w.calls > 0; }));
        ASSERT_TRUE(w.cpl.ok()) << w.cpl.name().view();
        on([&] { ASSERT_TRUE(qp->read(*ns, in.data(), 100, blocks, Io::cb, &rd).ok()); });
        ASSERT_TRUE(pump([&] { return rd.calls > 0; }));
        ASSERT_TRUE(rd.cpl.ok()) << rd.cpl.name().view();
        EXPECT_EQ(in, out);
    }
    EXPECT_EQ(qp->stats().bad_completions, 0u);
    bool freed = false;
    on([&] {
        ctrl->free_io_qpair(std::move(qp), [](void* p) { *static_cast<bool*>(p) = true; }, &freed);
    });
    ASSERT_TRUE(pump([&] { return freed; }));
    auto d = run(ctrl->detach());
    EXPECT_TRUE(d.ok()) << d.error().message();
    on([&] { ctrl.reset(); });
}

INSTANTIATE_TEST_SUITE_P(Impl, NvmeTcpE2e,
                         ::testing::Values(Params{"sim", false}, Params{"sim", true},
                                           Params{"posix", false}, Params{"posix", true}),
                         [](const auto& info) {
                             return info.param.impl + (info.param.digests ? "_digests" : "_plain");
                         });

}  // namespace
}  // namespace strata::nvme
