// The driver and the channel model on two reactor OS threads of the RealScheduler: the driver's
// Thread writes descriptors and DMACOUNT, the model's Thread executes them and release-stores the
// completion word, which the driver acquire-loads. Labelled tsan: CI runs it under
// ThreadSanitizer, which checks the doorbell/command atomics and the completion write-back.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/ioat/ioat.h>
#include <strata/runtime/real_wait.h>
#include <strata/runtime/scheduler.h>

namespace strata::ioat {
namespace {

constexpr env::PciAddress kAddr{0, 0x00, 0x04, 0};

using runtime::testing::run_on;

struct Op {
    std::atomic<int> calls{0};
    std::atomic<bool> ok{false};
    Status status;
    static void done(void* ctx, Status s) {
        auto* op = static_cast<Op*>(ctx);
        op->status = s;
        op->ok.store(s.ok(), std::memory_order_relaxed);
        op->calls.fetch_add(1, std::memory_order_release);
    }
};

TEST(IoatRealScheduler, DriverAndModelOnDifferentOsThreads) {
    ASSERT_TRUE(env::init().ok());
    {
        hwemu::PciBus bus;
        runtime::RealSchedulerOptions opts;
        opts.cores = {0, 1};
        opts.pin = false;
        runtime::RealScheduler sched(opts);
        runtime::Thread* driver = sched.create_thread("driver", 0);
        runtime::Thread* device = sched.create_thread("ioat_model", 1);
        sched.start();

        std::unique_ptr<hwemu::ioat::ChannelModel> model;
        run_on(device, [&] {
            hwemu::ioat::ModelConfig cfg;
            cfg.xfercap_log2 = 16;  // 64 KiB: larger copies take several descriptors
            auto m = hwemu::ioat::ChannelModel::create(bus, kAddr, cfg, *device);
            ASSERT_TRUE(m.ok()) << m.error().message();
            model = std::move(*m);
        });
        ASSERT_TRUE(model);

        std::unique_ptr<Channel> ch;
        runtime::Poller* poller = nullptr;
        run_on(driver, [&] {
            ChannelOptions o;
            o.ring_size = 64;
            auto c = Channel::attach(kAddr, *driver, o);
            ASSERT_TRUE(c.ok()) << c.error().message();
            ch = std::move(*c);
            poller = driver->register_poller(
                [](void* ctx) {
                    return static_cast<Channel*>(ctx)->process_completions() > 0
                               ? runtime::PollStatus::busy
                               : runtime::PollStatus::idle;
                },
                ch.get(), "ioat_real_test");
        });
        ASSERT_TRUE(ch);

        constexpr int kOps = 400;
        constexpr size_t kLen = 100'000;
        auto* src = static_cast<uint8_t*>(*env::dma_alloc(kLen, 4096, true));
        auto* dst = static_cast<uint8_t*>(*env::dma_alloc(kLen * 4, 4096, true));
        for (size_t i = 0; i < kLen; ++i) src[i] = static_cast<uint8_t>(i * 13 + 7);
        std::vector<Op> ops(kOps);
        // Submit in rounds: as many as fit, one flush per round, until all went out.
        int next = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (next < kOps && std::chrono::steady_clock::now() < deadline) {
            run_on(driver, [&] {
                while (next < kOps) {
                    const Status s =
                        ch->submit_copy(env::iova_of(dst + (next % 4) * kLen), env::iova_of(src),
                                        kLen - static_cast<size_t>(next % 7), &Op::done,
                                        &ops[static_cast<size_t>(next)]);
                    if (s == Errc::busy) break;
                    ASSERT_TRUE(s.ok()) << s.to_string();
                    ++next;
                }
                ch->flush();
            });
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        ASSERT_EQ(next, kOps);
        for (auto& op : ops) {
            while (op.calls.load(std::memory_order_acquire) == 0 &&
                   std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            EXPECT_EQ(op.calls.load(), 1);
            EXPECT_TRUE(op.ok.load()) << op.status.to_string();
        }
        // Every destination holds the source (the last copy into each is the longest prefix).
        for (int k = 0; k < 4; ++k) EXPECT_EQ(std::memcmp(dst + k * kLen, src, kLen - 7), 0) << k;

        run_on(driver, [&] {
            const auto st = ch->stats();
            EXPECT_EQ(st.halts, 0u) << ch->describe_last_error();
            EXPECT_EQ(st.bad_completions, 0u);
            EXPECT_EQ(st.ops_failed, 0u);
            driver->unregister_poller(poller);
        });
        // Detach waits for the model (on the other OS thread) to confirm the reset, on the
        // driver's poller; `done` runs there.
        struct Detached {
            std::atomic<int> calls{0};
            DetachResult result;
            static void done(void* ctx, const DetachResult& r) {
                auto* d = static_cast<Detached*>(ctx);
                d->result = r;
                d->calls.fetch_add(1, std::memory_order_release);
            }
        } detached;
        run_on(driver, [&] { EXPECT_TRUE(ch->detach(&Detached::done, &detached).ok()); });
        while (detached.calls.load(std::memory_order_acquire) == 0 &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        ASSERT_EQ(detached.calls.load(std::memory_order_acquire), 1);
        EXPECT_TRUE(detached.result.status.ok()) << detached.result.status.to_string();
        EXPECT_FALSE(detached.result.ring_leaked);
        run_on(driver, [&] {
            EXPECT_TRUE(ch->detached());
            ch.reset();
        });
        run_on(device, [&] { model.reset(); });
        sched.stop();
        env::dma_free(src);
        env::dma_free(dst);
    }
    env::fini();
}

}  // namespace
}  // namespace strata::ioat
