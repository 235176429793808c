// The accel framework on two reactor OS threads of the RealScheduler: each reactor has a worker
// Thread with its own accel channel and an emulated I/OAT channel whose model runs on the other
// reactor, so driver and model always meet across OS threads. Both workers stream copies (ioat),
// fills (ioat), crc32c and xor (software) at once while the control path changes an opcode's
// assignment and collects stats. Labelled tsan: CI runs it under ThreadSanitizer, which checks the
// routes (relaxed atomics), the control-path mutex and the cross-thread channel lifecycle.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <strata/accel/accel.h>
#include <strata/accel/rpc.h>
#include <strata/base/crc.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/real_wait.h>
#include <strata/runtime/scheduler.h>

namespace strata::accel {
namespace {

using runtime::testing::run_on;
using runtime::testing::wait_for;

constexpr size_t kLen = 20'000;  // several descriptors at a 4 KiB XFERCAP
constexpr int kRounds = 400;

// One worker: cycles copy, fill, crc32c, xor on its own buffers, checking each result, one op
// at a time per slot, from its completion callback.
struct Worker {
    runtime::Thread* thread = nullptr;
    Channel* ch = nullptr;
    uint8_t* src = nullptr;
    uint8_t* dst = nullptr;
    uint8_t* x2 = nullptr;
    const void* xs[2] = {};
    uint32_t crc = 0;
    uint32_t want_crc = 0;
    int step = 0;
    std::atomic<int> errors{0};
    std::atomic<bool> finished{false};

    static void done(void* ctx, Status s) {
        auto* w = static_cast<Worker*>(ctx);
        if (!s.ok() || !w->check()) w->errors.fetch_add(1, std::memory_order_relaxed);
        ++w->step;
        w->next();
    }
    bool check() const {
        switch (step % 4) {
            case 0:
                return std::memcmp(dst, src, kLen) == 0;
            case 1: {
                for (size_t i = 0; i < kLen; ++i)
                    if (dst[i] != static_cast<uint8_t>(step)) return false;
                return true;
            }
            case 2:
                return crc == want_crc;
            default: {
                for (size_t i = 0; i < kLen; ++i)
                    if (dst[i] != (src[i] ^ x2[i])) return false;
                return true;
            }
        }
    }
    void next() {
        if (step == kRounds * 4) {
            finished.store(true, std::memory_order_release);
            return;
        }
        Status s;
        switch (step % 4) {
            case 0:
                s = ch->submit_copy(dst, src, kLen, &done, this);
                break;
            case 1:
                s = ch->submit_fill(dst, static_cast<uint8_t>(step), kLen, &done, this);
                break;
            case 2:
                s = ch->submit_crc32c(&crc, src, kLen, 0, &done, this);
                break;
            default:
                s = ch->submit_xor(dst, xs, 2, kLen, &done, this);
                break;
        }
        if (!s.ok()) {
            errors.fetch_add(1, std::memory_order_relaxed);
            finished.store(true, std::memory_order_release);
        }
    }
};

TEST(AccelRealScheduler, TwoReactorsCopyFillCrcXorWithIoatModelsAcrossOsThreads) {
    ASSERT_TRUE(env::init().ok());
    reset_config();
    {
        hwemu::PciBus bus;
        runtime::RealSchedulerOptions opts;
        opts.cores = {0, 1};
        opts.pin = false;
        runtime::RealScheduler sched(opts);
        runtime::Thread* work[2] = {sched.create_thread("accel0", 0),
                                    sched.create_thread("accel1", 1)};
        runtime::Thread* dev[2] = {sched.create_thread("ioat_model0", 1),
                                   sched.create_thread("ioat_model1", 0)};
        sched.start();

        std::unique_ptr<hwemu::ioat::ChannelModel> models[2];
        for (int i = 0; i < 2; ++i) {
            run_on(dev[i], [&, i] {
                hwemu::ioat::ModelConfig cfg;
                cfg.xfercap_log2 = 12;
                auto m = hwemu::ioat::ChannelModel::create(
                    bus, env::PciAddress{0, 0, 4, static_cast<uint8_t>(i)}, cfg, *dev[i]);
                ASSERT_TRUE(m.ok()) << m.error().message();
                models[i] = std::move(*m);
            });
        }
        ASSERT_TRUE(enable_ioat_module().ok());
        run_on(work[0], [] { ASSERT_TRUE(init().ok()); });

        std::vector<void*> bufs;
        auto alloc = [&](size_t n) {
            auto p = env::dma_alloc(n, 4096, true);
            EXPECT_TRUE(p.ok());
            bufs.push_back(*p);
            return static_cast<uint8_t*>(*p);
        };
        Worker w[2];
        for (int i = 0; i < 2; ++i) {
            w[i].thread = work[i];
            w[i].src = alloc(kLen);
            w[i].dst = alloc(kLen);
            w[i].x2 = alloc(kLen);
            for (size_t b = 0; b < kLen; ++b) {
                w[i].src[b] = static_cast<uint8_t>(b * 13 + i);
                w[i].x2[b] = static_cast<uint8_t>(b * 7 + 1);
            }
            w[i].xs[0] = w[i].src;
            w[i].xs[1] = w[i].x2;
            w[i].want_crc = crc32c(0, w[i].src, kLen);
            Worker* wp = &w[i];
            run_on(work[i], [wp] { wp->ch = get_channel(); });
            ASSERT_NE(w[i].ch, nullptr);
        }
        std::string m0, m1;
        run_on(work[0], [&] { m0 = w[0].ch->module_for(Opcode::copy); });
        run_on(work[1], [&] { m1 = w[1].ch->module_for(Opcode::copy); });
        EXPECT_EQ(m0, "ioat");
        EXPECT_EQ(m1, "ioat");

        for (auto& x : w) {
            Worker* wp = &x;
            (void)x.thread->post([wp] { wp->next(); });
        }
        // Meanwhile the control path flips fill between the modules and reads stats.
        for (int i = 0; i < 20; ++i) {
            ASSERT_TRUE(assign_opc(Opcode::fill, i % 2 ? "ioat" : "software").ok());
            std::atomic<bool> got{false};
            run_on(work[0], [&] { get_stats([&](const Stats&) { got.store(true); }); });
            ASSERT_TRUE(wait_for([&] { return got.load(); }));
        }
        ASSERT_TRUE(wait_for([&] { return w[0].finished.load() && w[1].finished.load(); }));
        EXPECT_EQ(w[0].errors.load(), 0);
        EXPECT_EQ(w[1].errors.load(), 0);

        std::atomic<bool> got{false};
        Stats total;
        run_on(work[0], [&] {
            get_stats([&](const Stats& s) {
                total = s;
                got.store(true, std::memory_order_release);
            });
        });
        ASSERT_TRUE(wait_for([&] { return got.load(std::memory_order_acquire); }));
        EXPECT_EQ(total.ops[static_cast<size_t>(Opcode::copy)].executed, 2u * kRounds);
        EXPECT_EQ(total.ops[static_cast<size_t>(Opcode::xor_)].executed, 2u * kRounds);
        EXPECT_EQ(total.fallbacks, 0u);

        for (auto& x : w) {
            Worker* wp = &x;
            run_on(x.thread, [wp] { put_channel(wp->ch); });
        }
        std::atomic<bool> finished{false};
        run_on(work[0], [&] {
            fini([](void* c) { static_cast<std::atomic<bool>*>(c)->store(true); }, &finished);
        });
        ASSERT_TRUE(wait_for([&] { return finished.load(); }));
        for (int i = 0; i < 2; ++i) run_on(dev[i], [&, i] { models[i].reset(); });
        for (void* p : bufs) env::dma_free(p);
        sched.stop();
    }
    reset_config();
    env::fini();
}

}  // namespace
}  // namespace strata::accel
