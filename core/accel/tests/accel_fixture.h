// Shared fixture of the accel tests: a sim world (env sim backend, an emulated PCI bus with
// I/OAT channel models on their own Thread), the accel framework started on it, and helpers that
// submit on a Thread and drive the simulator until the callbacks have run.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <strata/accel/accel.h>
#include <strata/accel/rpc.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::accel::testing {

inline constexpr env::PciAddress kIoat0{0, 0x00, 0x04, 0};
inline constexpr env::PciAddress kIoat1{0, 0x00, 0x04, 1};

// One op's completion record.
struct Done {
    int calls = 0;
    Status status;
    static void fn(void* ctx, Status s) {
        auto* d = static_cast<Done*>(ctx);
        ++d->calls;
        d->status = s;
    }
};

inline uint64_t sim_seed(uint64_t fallback) {
    const char* s = std::getenv("STRATA_SIM_SEED");
    return s != nullptr ? std::strtoull(s, nullptr, 0) : fallback;
}

// Threads: [0] and [1] use accel, [2] runs the device models.
class AccelFixture : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus = std::make_unique<hwemu::PciBus>();
        start_sim(sim_seed(41), 3);
        reset_config();
    }

    void TearDown() override {
        stop();
        if (!models.empty()) on(threads[2], [&] { models.clear(); });
        for (void* p : allocations) env::dma_free(p);
        allocations.clear();
        SimFixture::TearDown();
        bus.reset();
        reset_config();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }

    hwemu::ioat::ChannelModel& add_model(env::PciAddress addr = kIoat0,
                                         hwemu::ioat::ModelConfig cfg = {}) {
        on(threads[2], [&] {
            auto m = hwemu::ioat::ChannelModel::create(*bus, addr, cfg, *threads[2]);
            ASSERT_TRUE(m.ok()) << m.error().message();
            models.push_back(std::move(*m));
        });
        return *models.back();
    }

    // Starts the framework (with the ioat module if asked) and gets a channel on threads 0..n-1.
    void start(bool ioat, size_t channels = 1) {
        if (ioat) {
            ASSERT_TRUE(enable_ioat_module().ok());
        }
        on(threads[0], [&] { ASSERT_TRUE(init().ok()); });
        ch.assign(channels, nullptr);
        for (size_t i = 0; i < channels; ++i) on(threads[i], [&, i] { ch[i] = get_channel(); });
        for (size_t i = 0; i < channels; ++i) ASSERT_NE(ch[i], nullptr) << i;
        started = true;
        // Let the I/OAT channels finish their attach-time reset.
        run_for(100'000);
    }

    void stop() {
        if (!started) return;
        for (size_t i = 0; i < ch.size(); ++i) {
            if (ch[i] == nullptr) continue;
            ASSERT_TRUE(poll_until([&] { return ch[i]->outstanding() == 0; }));
            on(threads[i], [&, i] { put_channel(ch[i]); });
            ch[i] = nullptr;
        }
        bool done = false;
        on(threads[0], [&] { fini([](void* c) { *static_cast<bool*>(c) = true; }, &done); });
        ASSERT_TRUE(poll_until([&] { return done; }));
        started = false;
    }

    void run_for(uint64_t ns) {
        const uint64_t until = sim->now_ns() + ns;
        (void)sim->run_until([] { return false; }, until);
    }

    template <class T = uint8_t>
    T* alloc(size_t bytes, size_t align = 4096) {
        auto p = env::dma_alloc(bytes == 0 ? 1 : bytes, align, true);
        EXPECT_TRUE(p.ok());
        allocations.push_back(*p);
        return static_cast<T*>(*p);
    }

    static void pattern(void* p, size_t n, uint32_t seed) {
        auto* b = static_cast<uint8_t*>(p);
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < n; ++i) {
            x = x * 1664525u + 1013904223u;
            b[i] = static_cast<uint8_t>(x >> 24);
        }
    }

    // Submits `op` on thread i's channel and waits for its callback. Returns the submit status
    // when refused, else the completion status.
    Status run(const Op& op, size_t i = 0) {
        Done d;
        Status submitted;
        on(threads[i], [&] { submitted = ch[i]->submit(op, &Done::fn, &d); });
        if (!submitted) {
            EXPECT_EQ(d.calls, 0);
            return submitted;
        }
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        EXPECT_EQ(d.calls, 1);
        return d.status;
    }

    Stats stats_now() {
        Stats out;
        bool done = false;
        on(threads[0], [&] {
            get_stats([&](const Stats& s) {
                out = s;
                done = true;
            });
        });
        EXPECT_TRUE(poll_until([&] { return done; }));
        return out;
    }

    std::unique_ptr<hwemu::PciBus> bus;
    std::vector<std::unique_ptr<hwemu::ioat::ChannelModel>> models;
    std::vector<Channel*> ch;
    std::vector<void*> allocations;
    bool started = false;
};

}  // namespace strata::accel::testing
