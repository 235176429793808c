// The NVMe-oF core on reactor OS threads (RealScheduler, two reactors): the Target's Thread (the
// app Thread) on one, the qpairs' worker Thread on the other, so every crossing between a qpair
// and the Target is a crossing between OS threads. Labelled tsan: CI runs it under
// ThreadSanitizer, which checks that the two meet only by message:
//   - an I/O queue's Connect still in flight on the Target's Thread while the connection closes
//     on its own Thread (the qpair's namespace view and queue id are the qpair Thread's; the
//     Target's Thread hands them over with the Connect completion);
//   - the SMART / Health and error log pages, nvmf_get_stats and nvmf_subsystem_get_qpairs
//     read while I/O (and I/O errors) run on the qpair's Thread: per-qpair and per-poll-group
//     counters are gathered by messaging their Threads, never read across.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/nvme/spec/log_pages.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/transport.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/real_wait.h>
#include <strata/runtime/scheduler.h>

#include "nvmf_fakes.h"

namespace strata::nvmf {
namespace {

using Json = nlohmann::json;
using namespace test;  // NOLINT(google-build-using-namespace)

// Keeps its I/O requests going: each completion re-executes the request by message (never from
// inside complete()) while `running`; other completions are recorded like FakeQpair's.
class LoopQpair final : public Qpair {
public:
    using Qpair::Qpair;
    void complete(Request& req) noexcept override {
        if (req.cmd.opc != spec::fabrics_opcode && looping) {
            ++io_completions;
            if (!req.rsp.sf().ok()) ++io_errors;
            if (running) {
                (void)thread().send([](void* p) { exec(*static_cast<Request*>(p)); }, &req);
                return;
            }
            --in_flight;
            return;
        }
        completed.push_back(&req);
    }
    void disconnect() noexcept override { closed(); }
    void released() noexcept override { is_released = true; }
    bool done(const Request& r) const {
        return std::find(completed.begin(), completed.end(), &r) != completed.end();
    }

    // The qpair's Thread only (the test reads them there).
    std::vector<Request*> completed;
    bool looping = false;
    bool running = false;
    uint32_t in_flight = 0;
    uint64_t io_completions = 0;
    uint64_t io_errors = 0;
    bool is_released = false;
};

class RealWorld {
public:
    RealWorld() {
        runtime::RealSchedulerOptions so;
        so.cores = {0, 1};
        so.pin = false;
        sched = std::make_unique<runtime::RealScheduler>(so);
        app = std::make_unique<rpc::App>(*sched);  // the app Thread on reactor 0
        stack::register_all_modules(*app);
        worker = sched->create_thread("worker", 1, &app->host());
        sched->start();
        std::atomic<int> started{0};
        app->start([&](Result<void> r) { started.store(r.ok() ? 1 : 2); });
        EXPECT_TRUE(wait_for([&] { return started.load() != 0; }));
        EXPECT_EQ(started.load(), 1);
        on(&app->thread(), [&] {
            auto t = std::make_unique<FakeTransport>();
            transport = t.get();
            EXPECT_TRUE(add_transport(std::move(t)).ok());
        });
        call("bdev_malloc_create", {{"name", "Malloc0"}, {"num_blocks", 1024}, {"block_size", 512}});
        call("nvmf_create_subsystem", {{"nqn", kNqn}, {"allow_any_host", true}});
        EXPECT_EQ(call("nvmf_subsystem_add_ns",
                       {{"nqn", kNqn}, {"namespace", {{"bdev_name", "Malloc0"}}}}),
                  1);
    }
    ~RealWorld() {
        on(worker, [&] {
            for (auto& q : fakes)
                if (!q->is_closed()) q->closed();
            for (auto& q : loops)
                if (!q->is_closed()) q->closed();
        });
        EXPECT_TRUE(wait_for([&] {
            bool all = true;
            on(worker, [&] {
                for (auto& q : fakes) all = all && q->is_released;
                for (auto& q : loops) all = all && q->is_released;
            });
            return all;
        }));
        on(worker, [&] {
            fakes.clear();
            loops.clear();
        });
        app->request_stop();
        EXPECT_TRUE(wait_for([&] { return app->stopped(); }));
        sched->stop();
        app.reset();
        sched.reset();
    }

    template <class P>
    static bool wait_for(P pred) {
        return runtime::testing::wait_for(pred);
    }
    template <class F>
    static void on(runtime::Thread* thread, F&& fn) {
        runtime::testing::run_on(thread, std::forward<F>(fn));
    }

    Json call(const std::string& method, Json params = Json::object()) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }

    FakeQpair& new_fake() {
        fakes.push_back(std::make_unique<FakeQpair>(*transport, *worker));
        return *fakes.back();
    }
    LoopQpair& new_loop() {
        loops.push_back(std::make_unique<LoopQpair>(*transport, *worker));
        return *loops.back();
    }

    // Runs one command to completion (exec on the worker, completion seen there).
    template <class Q>
    void run(Q& q, Cmd& c) {
        on(worker, [&] {
            q.completed.erase(std::remove(q.completed.begin(), q.completed.end(), &c.req),
                              q.completed.end());
            c.req.qpair = &q;
            exec(c.req);
        });
        ASSERT_TRUE(wait_for([&] {
            bool d = false;
            on(worker, [&] { d = q.done(c.req); });
            return d;
        })) << "command never completed";
    }
    static Cmd connect_cmd(uint16_t qid, uint16_t cntlid) {
        Cmd c(connect_sqe(qid, 31), spec::connect_data_bytes, XferDir::host_to_controller);
        spec::ConnectData d{};
        d.cntlid = cntlid;
        spec::set_padded(d.subnqn, kNqn, '\0');
        spec::set_padded(d.hostnqn, kHost, '\0');
        std::memcpy(c.data.data(), &d, sizeof(d));
        return c;
    }
    template <class Q>
    uint16_t connect_admin(Q& q) {
        Cmd c = connect_cmd(0, spec::cntlid_dynamic);
        run(q, c);
        EXPECT_TRUE(c.sf().ok()) << int(c.sc());
        Cmd en(property_sqe(true, spec::reg::cc, 0x00460001, false));
        run(q, en);
        EXPECT_TRUE(en.sf().ok());
        return static_cast<uint16_t>(c.req.rsp.dw0 & 0xFFFF);
    }

    std::unique_ptr<runtime::RealScheduler> sched;
    std::unique_ptr<rpc::App> app;
    runtime::Thread* worker = nullptr;
    FakeTransport* transport = nullptr;
    std::vector<std::unique_ptr<FakeQpair>> fakes;
    std::vector<std::unique_ptr<LoopQpair>> loops;
};

// A connection that closes while its I/O queue Connect is still being handled on the Target's
// Thread: the Target must not write the qpair's namespace view or queue id while the qpair's
// Thread tears it down (and reads them).
TEST(NvmfRealThreads, IoConnectRacingTheConnectionsClose) {
    RealWorld w;
    FakeQpair& admin = w.new_fake();
    const uint16_t cntlid = w.connect_admin(admin);
    for (int i = 0; i < 64; ++i) {
        FakeQpair& io = w.new_fake();
        Cmd c = RealWorld::connect_cmd(1, cntlid);
        Cmd early(io_sqe(spec::NvmOpcode::read, 1, 0, 1), 512);
        RealWorld::on(w.worker, [&] {
            c.req.qpair = &io;
            exec(c.req);
            // A host that does not wait for the Connect response: the next capsule at once.
            early.req.qpair = &io;
            exec(early.req);
            if (i % 2 == 0) io.closed();
        });
        ASSERT_TRUE(RealWorld::wait_for([&] {
            bool d = false;
            RealWorld::on(w.worker, [&] { d = io.done(c.req) && io.done(early.req); });
            return d;
        }));
        if (i % 2 == 1) RealWorld::on(w.worker, [&] { io.closed(); });
        ASSERT_TRUE(RealWorld::wait_for([&] {
            bool d = false;
            RealWorld::on(w.worker, [&] { d = io.is_released; });
            return d;
        }));
    }
    Json ctrlrs = w.call("nvmf_subsystem_get_controllers", {{"nqn", kNqn}});
    ASSERT_EQ(ctrlrs.size(), 1u);
    EXPECT_EQ(ctrlrs[0]["num_io_qpairs"], 0);
}

// Log pages and statistics read on the Target's Thread while the qpair's Thread runs I/O (and
// I/O errors) flat out.
TEST(NvmfRealThreads, LogPagesAndStatsWhileIoRuns) {
    RealWorld w;
    LoopQpair& admin = w.new_loop();
    const uint16_t cntlid = w.connect_admin(admin);
    LoopQpair& io = w.new_loop();
    Cmd ioc = RealWorld::connect_cmd(1, cntlid);
    w.run(io, ioc);
    ASSERT_TRUE(ioc.sf().ok());

    // Eight reads in flight, every other one beyond the namespace (LBA Out of Range).
    std::vector<std::unique_ptr<Cmd>> loop;
    for (int i = 0; i < 8; ++i)
        loop.push_back(std::make_unique<Cmd>(
            io_sqe(spec::NvmOpcode::read, 1, i % 2 == 0 ? uint64_t(i) : 5000u + i, 1), 512));
    RealWorld::on(w.worker, [&] {
        io.looping = io.running = true;
        for (auto& c : loop) {
            c->req.qpair = &io;
            c->req.cmd.cid = static_cast<uint16_t>(100 + (&c - &loop[0]));
            ++io.in_flight;
            exec(c->req);
        }
    });

    uint64_t last_reads = 0;
    for (int round = 0; round < 30; ++round) {
        Cmd smart(admin_sqe(spec::AdminOpcode::get_log_page, spec::nsid_all, 0x02 | (127u << 16)),
                  512);
        w.run(admin, smart);
        ASSERT_TRUE(smart.sf().ok());
        spec::SmartHealthLog log;
        std::memcpy(&log, smart.data.data(), sizeof(log));
        const uint64_t reads = log.host_read_commands.lo();
        EXPECT_GE(reads, last_reads);
        last_reads = reads;
        Cmd err(admin_sqe(spec::AdminOpcode::get_log_page, 0, 0x01 | (255u << 16)), 1024);
        w.run(admin, err);
        ASSERT_TRUE(err.sf().ok());
        Json st = w.call("nvmf_get_stats");
        ASSERT_TRUE(st.contains("poll_groups"));
        Json qp = w.call("nvmf_subsystem_get_qpairs", {{"nqn", kNqn}});
        EXPECT_EQ(qp.size(), 2u);
    }
    RealWorld::on(w.worker, [&] { io.running = false; });
    ASSERT_TRUE(RealWorld::wait_for([&] {
        bool d = false;
        RealWorld::on(w.worker, [&] { d = io.in_flight == 0; });
        return d;
    }));
    uint64_t completions = 0, errors = 0;
    RealWorld::on(w.worker, [&] {
        completions = io.io_completions;
        errors = io.io_errors;
    });
    EXPECT_GT(completions, 8u);
    EXPECT_GT(errors, 0u);
    EXPECT_GT(last_reads, 0u);
}

}  // namespace
}  // namespace strata::nvmf
