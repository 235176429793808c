// The cross-OS-thread contract of the NVMe controller model: the model's Thread runs on a
// reactor OS thread of the RealScheduler while two "drivers" (plain OS threads, one queue pair
// each) write SQEs, ring doorbells concurrently and poll completions with an acquire load of CQE
// dword 3. Labelled tsan: CI
// runs it under ThreadSanitizer, which checks the doorbell atomics and the CQE release store.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/nvme/spec/spec.h>
#include <strata/runtime/real_wait.h>
#include <strata/runtime/scheduler.h>

namespace strata::hwemu::nvme {
namespace {

namespace spec = strata::nvme::spec;
constexpr env::PciAddress kAddr{0, 0x06, 0x00, 0};

using runtime::testing::run_on;

struct HostQueue {
    uint16_t qid = 0;
    uint32_t size = 0;
    spec::Sqe* sq = nullptr;
    spec::Cqe* cq = nullptr;
    uint32_t tail = 0, head = 0;
    bool phase = true;
};

class Host {
public:
    explicit Host(env::Bar bar) : bar_(bar) {}
    void submit(HostQueue& q, const spec::Sqe& sqe) {
        q.sq[q.tail] = sqe;
        q.tail = (q.tail + 1) % q.size;
        bar_.write32(spec::sq_tail_doorbell(q.qid, 0), q.tail);
    }
    // Polls for the next completion (acquire on dword 3), consumes it, rings the head doorbell.
    bool poll(HostQueue& q, spec::Cqe& out) {
        auto* dw3 = reinterpret_cast<uint32_t*>(&q.cq[q.head]) + 3;
        const uint32_t v = std::atomic_ref<uint32_t>(*dw3).load(std::memory_order_acquire);
        if (((v >> 16) & 1) != (q.phase ? 1u : 0u)) return false;
        std::memcpy(&out, &q.cq[q.head], 12);
        out.cid = static_cast<uint16_t>(v);
        out.status = static_cast<uint16_t>(v >> 16);
        q.head = (q.head + 1) % q.size;
        if (q.head == 0) q.phase = !q.phase;
        bar_.write32(spec::cq_head_doorbell(q.qid, 0), q.head);
        return true;
    }
    spec::Cqe wait(HostQueue& q) {
        spec::Cqe c{};
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!poll(q, c)) {
            if (std::chrono::steady_clock::now() > deadline) {
                ADD_FAILURE() << "no completion";
                return c;
            }
            std::this_thread::yield();
        }
        return c;
    }

private:
    env::Bar bar_;
};

TEST(NvmeModelRealScheduler, DriverOnAnotherOsThread) {
    ASSERT_TRUE(env::init().ok());
    {
        PciBus bus;
        runtime::RealSchedulerOptions opts;
        opts.cores = {0, 1};
        opts.pin = false;
        runtime::RealScheduler sched(opts);
        runtime::Thread* model_thread = sched.create_thread("model", 1);
        sched.start();

        std::unique_ptr<Controller> ctrl;
        ControllerConfig cfg;
        cfg.namespaces = {{1, 8192, 512, ""}};
        run_on(model_thread, [&] {
            auto c = Controller::create(bus, kAddr, cfg, *model_thread);
            ASSERT_TRUE(c.ok()) << c.error().message();
            ctrl = std::move(*c);
        });
        ASSERT_TRUE(ctrl);
        auto fn = env::claim(kAddr);
        ASSERT_TRUE(fn.ok());
        auto bar = (*fn)->map_bar(0);
        ASSERT_TRUE(bar.ok());
        Host host(*bar);

        std::vector<void*> allocs;
        auto alloc = [&](size_t n) {
            void* p = *env::dma_alloc(n, 4096, true);
            allocs.push_back(p);
            return p;
        };
        HostQueue admin{0, 16, static_cast<spec::Sqe*>(alloc(4096)),
                        static_cast<spec::Cqe*>(alloc(4096))};
        bar->write32(spec::reg::aqa, spec::Aqa{}.set_asqs(15).set_acqs(15).raw);
        bar->write64(spec::reg::asq, env::iova_of(admin.sq));
        bar->write64(spec::reg::acq, env::iova_of(admin.cq));
        bar->write32(spec::reg::cc, spec::Cc{}.set_en(1).set_iosqes(6).set_iocqes(4).raw);
        for (int i = 0; i < 200000 && (bar->read32(spec::reg::csts) & 1) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::microseconds(10));
        ASSERT_EQ(bar->read32(spec::reg::csts) & 3, 1u);

        // Two "driver" OS threads, each with its own queue pair and LBA half, ring doorbells
        // concurrently: QD 16 of 4 KiB writes then reads, each block tagged with its LBA.
        constexpr int kDepth = 16, kOps = 2000, kDrivers = 2;
        std::vector<HostQueue> ios;
        for (uint16_t q = 1; q <= kDrivers; ++q) {
            HostQueue io{q, 32, static_cast<spec::Sqe*>(alloc(4096)),
                         static_cast<spec::Cqe*>(alloc(4096))};
            host.submit(admin, spec::make_create_io_cq(1, q, 32, env::iova_of(io.cq)));
            ASSERT_TRUE(host.wait(admin).ok());
            host.submit(admin, spec::make_create_io_sq(2, q, 32, env::iova_of(io.sq), q));
            ASSERT_TRUE(host.wait(admin).ok());
            ios.push_back(io);
        }
        std::vector<std::vector<uint8_t*>> bufs(kDrivers);
        for (auto& b : bufs)
            for (int i = 0; i < kDepth; ++i) b.push_back(static_cast<uint8_t*>(alloc(4096)));
        std::atomic<int> errors{0};
        auto driver = [&](int d) {
            Host h(*bar);
            HostQueue& io = ios[d];
            const uint64_t base = uint64_t(d) * 4096;  // LBA half of this driver
            for (int pass = 0; pass < 2; ++pass) {
                const bool write = pass == 0;
                int issued = 0, done = 0, in_flight = 0;
                std::vector<uint64_t> lba_of(kDepth);
                while (done < kOps) {
                    while (in_flight < kDepth && issued < kOps) {
                        const int slot = issued % kDepth;
                        const uint64_t lba = base + (uint64_t(issued) * 8) % 4096;
                        const int tag = static_cast<int>((lba / 8) & 0xFF);
                        if (write) std::memset(bufs[d][slot], tag, 4096);
                        const auto cid = static_cast<uint16_t>(slot);
                        spec::Sqe s = write ? spec::make_write(cid, 1, lba, 8)
                                            : spec::make_read(cid, 1, lba, 8);
                        s.prp1 = env::iova_of(bufs[d][slot]);
                        lba_of[slot] = lba;
                        h.submit(io, s);
                        ++issued;
                        ++in_flight;
                    }
                    spec::Cqe c = h.wait(io);
                    if (!c.ok() || c.cid >= kDepth || c.sqid != io.qid) {
                        ++errors;
                        return;
                    }
                    if (!write) {
                        const auto expect = static_cast<uint8_t>((lba_of[c.cid] / 8) & 0xFF);
                        if (bufs[d][c.cid][0] != expect || bufs[d][c.cid][4095] != expect) ++errors;
                    }
                    ++done;
                    --in_flight;
                }
            }
        };
        std::vector<std::thread> drivers;
        for (int d = 0; d < kDrivers; ++d) drivers.emplace_back(driver, d);
        for (auto& t : drivers) t.join();
        EXPECT_EQ(errors.load(), 0);
        const Controller::Stats st = ctrl->stats();
        EXPECT_EQ(st.completions, uint64_t{2 * kOps * kDrivers + 2 * kDrivers});
        EXPECT_EQ(st.invalid_doorbells, 0u);
        EXPECT_EQ(st.dma_faults, 0u);

        ASSERT_TRUE((*fn)->detach().ok());
        run_on(model_thread, [&] { ctrl.reset(); });
        sched.stop();
        for (void* p : allocs) env::dma_free(p);
    }
    env::fini();
}

}  // namespace
}  // namespace strata::hwemu::nvme
