// Shared by the bdev modules' tests (virtual bdevs, file, nvme, virtio, rbd, lvol): a simulated App
// with every module registered (so the RPCs, save_config and config loading are the real ones),
// a worker Thread that opens bdevs and does I/O, and helpers to drive the simulator.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::bdev::testing {

using Json = nlohmann::json;

struct Done {
    int calls = 0;
    IoStatus status;
    uint64_t at_ns = 0;
    static void cb(void* c, const IoStatus& s) {
        auto* d = static_cast<Done*>(c);
        ++d->calls;
        d->status = s;
        d->at_ns = runtime::now_ns();
    }
};

// An open bdev on the worker Thread.
struct Handle {
    std::unique_ptr<Desc> desc;
    Channel* ch = nullptr;
    std::vector<Event> events;
};

class VbdevTest : public ::testing::Test {
protected:
    void SetUp() override { start_world(1); }
    void TearDown() override { stop_world(); }

    // before_start runs once the App exists and its worker Thread too, before the App starts
    // (and loads `config`): e.g. to put emulated devices on its Host's PCI bus.
    void start_world(uint64_t seed, std::optional<Json> config = std::nullopt,
                     const std::function<void()>& before_start = {}) {
        ASSERT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(seed, 2);
        rpc::AppOptions o;
        o.config = std::move(config);
        app = std::make_unique<rpc::App>(*sim, std::move(o));
        // The test's main reaches the App's modules (find, list) and makes its worker there.
        host_scope.emplace(app->host());
        stack::register_all_modules(*app);
        worker = sim->create_thread("worker", 1);
        if (before_start) before_start();
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(poll_until([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok()) << started->error().message();
    }
    void stop_world() {
        if (!app) return;
        for (auto& h : handles_) close(h);
        handles_.clear();
        app->request_stop();
        EXPECT_TRUE(poll_until([&] { return app->stopped(); }));
        EXPECT_TRUE(list().empty());
        host_scope.reset();
        app.reset();
        sim.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }

    bool poll_until(const std::function<bool()>& pred, uint64_t timeout_ns = 30'000'000'000ull) {
        return sim->run_until(pred, sim->now_ns() + timeout_ns);
    }
    template <class F>
    void on(runtime::Thread* t, F&& fn) {
        bool done = false;
        ASSERT_TRUE(t->post([&] {
                         fn();
                         done = true;
                     }).ok());
        ASSERT_TRUE(poll_until([&] { return done; }));
    }

    // RPC: the result (the test fails on an error) / the error object (fails on success).
    Json call(const std::string& method, Json params = Json::object()) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("result")) << method << ": " << r.dump();
        return r.contains("result") ? r["result"] : Json();
    }
    Json call_error(const std::string& method, Json params = Json::object()) {
        Json r = app->call_method(method, std::move(params));
        EXPECT_TRUE(r.contains("error")) << method << " succeeded: " << r.dump();
        return r.contains("error") ? r["error"] : Json();
    }
    bool exists(const std::string& name) { return find(name) != nullptr; }
    void malloc(const std::string& name, uint64_t blocks = 4096, uint32_t bs = 512) {
        call("bdev_malloc_create", {{"name", name}, {"num_blocks", blocks}, {"block_size", bs}});
        settle();
    }
    // Lets asynchronous examiners of other modules (which may hold a new bdev open for a while)
    // finish, as a user would with bdev_wait_for_examine.
    void settle() { poll_until([] { return false; }, 10'000'000); }
    void remove(const std::string& name) {
        bool gone = false;
        on(&app->thread(), [&] { unregister_bdev(name, [&](Result<void>) { gone = true; }); });
        ASSERT_TRUE(poll_until([&] { return gone; }));
    }

    // Opens on the worker; the fixture owns the handle and closes it at the end.
    Handle& open(const std::string& name, bool write = true) {
        Handle& h = handles_.emplace_back();
        on(worker, [&] {
            auto d = bdev::open(name, write, [&h](Event e, Bdev&) { h.events.push_back(e); });
            ASSERT_TRUE(d.ok()) << d.error().message();
            h.desc = std::move(*d);
            h.ch = h.desc->get_channel();
            ASSERT_NE(h.ch, nullptr);
        });
        return h;
    }
    void close(Handle& h) {
        if (!h.desc) return;
        on(worker, [&] {
            put_channel(h.ch);
            h.ch = nullptr;
            h.desc.reset();
        });
    }

    // One I/O on the worker, waited for.
    template <class F>
    IoStatus io(F submit) {
        Done d;
        Status s;
        on(worker, [&] { s = submit(&Done::cb, &d); });
        EXPECT_TRUE(s.ok()) << s.to_string();
        if (!s.ok()) return IoStatus{s.code(), 0};
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        EXPECT_EQ(d.calls, 1);
        return d.status;
    }
    IoStatus write_blocks(Handle& h, uint64_t off, const std::vector<uint8_t>& data) {
        const uint64_t n = data.size() / h.desc->bdev().block_size();
        return io([&](IoDoneFn f, void* c) { return write(*h.desc, *h.ch, data.data(), off, n, f, c); });
    }
    IoStatus read_blocks(Handle& h, uint64_t off, std::vector<uint8_t>& data) {
        const uint64_t n = data.size() / h.desc->bdev().block_size();
        return io([&](IoDoneFn f, void* c) { return read(*h.desc, *h.ch, data.data(), off, n, f, c); });
    }
    static std::vector<uint8_t> pattern(size_t n, int seed) {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed + (i >> 9));
        return v;
    }

    // A verify workload: `count` writes of a pattern at spread offsets, each read back.
    void verify_workload(Handle& h, int count, uint32_t blocks_per_io = 8) {
        const uint32_t bs = h.desc->bdev().block_size();
        const uint64_t span = h.desc->bdev().num_blocks() / blocks_per_io;
        for (int i = 0; i < count; ++i) {
            const uint64_t off = (static_cast<uint64_t>(i) * 7919 % span) * blocks_per_io;
            auto w = pattern(size_t{blocks_per_io} * bs, i);
            std::vector<uint8_t> r(w.size());
            ASSERT_TRUE(write_blocks(h, off, w).ok());
            ASSERT_TRUE(read_blocks(h, off, r).ok());
            ASSERT_EQ(std::memcmp(w.data(), r.data(), w.size()), 0) << "I/O " << i;
        }
    }

    // save_config, a fresh world from it, and the bdev section of both.
    Json bdev_config() {
        Json cfg = call("save_config");
        for (auto& s : cfg["subsystems"])
            if (s["subsystem"] == "bdev") return s["config"];
        return Json::array();
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
    std::optional<runtime::HostScope> host_scope;  // app's Host, while it lives
    runtime::Thread* worker = nullptr;

private:
    std::list<Handle> handles_;
};

}  // namespace strata::bdev::testing
