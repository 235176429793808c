// Test harness: the driver against the NVMe controller model on the sim backend.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/qpair.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::nvme::testing {

inline const env::PciAddress kAddr{0, 0x01, 0x00, 0};

struct Io {
    bool done = false;
    int calls = 0;
    Completion cpl;
    static void cb(void* ctx, const Completion& c) {
        auto* io = static_cast<Io*>(ctx);
        io->done = true;
        ++io->calls;
        io->cpl = c;
    }
};

class NvmeFixture : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus = std::make_unique<hwemu::PciBus>();
    }

    void TearDown() override {
        for (auto& [t, qp] : qpairs) free_qpair(t, qp);
        qpairs.clear();
        if (ctrl) {
            auto r = run(admin(), ctrl->detach());
            EXPECT_TRUE(r.ok()) << r.error().message();
            on(admin(), [&] { ctrl.reset(); });
        }
        if (model) on(model_thread(), [&] { model.reset(); });
        SimFixture::TearDown();
        bus.reset();
        EXPECT_EQ(env::dma_region_count(), 0u) << "DMA memory leaked";
        env::fini();
    }

    runtime::Thread* admin() { return threads[0]; }
    runtime::Thread* model_thread() { return threads.back(); }

    // Threads: [0] admin + first I/O thread, ..., [n] the model.
    void start(hwemu::nvme::ControllerConfig cfg = {}, ControllerOptions opts = {},
               size_t io_threads = 1, uint64_t seed = 7) {
        start_sim(seed, io_threads + 1);
        on(model_thread(), [&] {
            auto m = hwemu::nvme::Controller::create(*bus, kAddr, cfg, *model_thread());
            ASSERT_TRUE(m.ok()) << m.error().message();
            model = std::move(*m);
        });
        auto r = run(admin(), Controller::attach(kAddr, opts));
        ASSERT_TRUE(r.ok()) << r.error().message();
        ctrl = std::move(*r);
    }

    template <class T>
    T run(runtime::Thread* t, runtime::Task<T> task, uint64_t timeout_ns = 60 * runtime::kNsPerSec) {
        std::optional<T> out;
        runtime::spawn(*t, std::move(task), [&](T v) { out.emplace(std::move(v)); });
        EXPECT_TRUE(poll_until([&] { return out.has_value(); }, timeout_ns)) << "task never ended";
        if (!out) std::abort();
        return std::move(*out);
    }

    QPair& qpair(runtime::Thread* t, QPairOptions o = {}) {
        std::unique_ptr<QPair> qp;
        on(admin(), [&] {
            auto r = ctrl->alloc_io_qpair(*t, o);
            ASSERT_TRUE(r.ok()) << r.error().message();
            qp = std::move(*r);
        });
        EXPECT_TRUE(poll_until([&] { return qp && qp->connected(); }));
        qpairs.emplace_back(t, std::move(qp));
        return *qpairs.back().second;
    }

    void free_qpair(runtime::Thread* t, std::unique_ptr<QPair>& qp) {
        if (!qp) return;
        bool freed = false;
        on(t, [&] {
            ctrl->free_io_qpair(std::move(qp), [](void* p) { *static_cast<bool*>(p) = true; },
                                &freed);
        });
        EXPECT_TRUE(poll_until([&] { return freed; }));
    }

    // Submits on `t` and waits for the completion.
    template <class Submit>
    Completion io(runtime::Thread* t, Submit submit, uint64_t timeout_ns = 10 * runtime::kNsPerSec) {
        Io done;
        Status s;
        on(t, [&] { s = submit(&Io::cb, static_cast<void*>(&done)); });
        EXPECT_TRUE(s.ok()) << s.to_string();
        if (!s.ok()) return Completion{spec::make_status(spec::GenericStatus::internal_error)};
        EXPECT_TRUE(poll_until([&] { return done.done; }, timeout_ns)) << "no completion";
        EXPECT_EQ(done.calls, 1);
        return done.cpl;
    }

    const Namespace& ns(uint32_t id = 1) {
        const Namespace* n = ctrl->find_namespace(id);
        EXPECT_NE(n, nullptr);
        return *n;
    }

    struct DmaBuf {
        void* p = nullptr;
        size_t len = 0;
        DmaBuf(size_t n, size_t align = 4096) : len(n) { p = *env::dma_alloc(n, align, true); }
        ~DmaBuf() { env::dma_free(p); }
        uint8_t* bytes() { return static_cast<uint8_t*>(p); }
    };

    static void fill_pattern(uint8_t* p, size_t n, uint32_t seed) {
        for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 9)) & 0xFF);
    }

    std::unique_ptr<hwemu::PciBus> bus;
    std::unique_ptr<hwemu::nvme::Controller> model;
    std::unique_ptr<Controller> ctrl;
    std::vector<std::pair<runtime::Thread*, std::unique_ptr<QPair>>> qpairs;
};

}  // namespace strata::nvme::testing
