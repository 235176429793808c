// The I/OAT channel model, driven only through its PCI surface: env::claim, BAR0 registers,
// descriptors and data in dma_alloc'd memory, on the sim backend.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/ioat/spec/spec.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::hwemu::ioat {
namespace {

namespace spec = strata::ioat::spec;
using env::PciAddress;
using spec::ChanState;

constexpr PciAddress kAddr{0, 0x00, 0x04, 0};
uint32_t creg(uint32_t off) {
    return spec::channel_reg(0, off);
}

class IoatModelTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus = std::make_unique<PciBus>();
        start_sim(11, 2);
    }
    void TearDown() override {
        if (fn) (void)fn->detach();
        fn.reset();
        if (model) on(threads[1], [&] { model.reset(); });
        for (void* p : allocations) env::dma_free(p);
        allocations.clear();
        SimFixture::TearDown();
        bus.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }

    void make(ModelConfig cfg = {}) {
        on(threads[1], [&] {
            auto m = ChannelModel::create(*bus, kAddr, cfg, *threads[1]);
            ASSERT_TRUE(m.ok()) << m.error().message();
            model = std::move(*m);
        });
        auto c = env::claim(kAddr);
        ASSERT_TRUE(c.ok()) << c.error().message();
        fn = std::move(*c);
        auto b = fn->map_bar(0);
        ASSERT_TRUE(b.ok());
        bar = *b;
        ring = static_cast<spec::GenericDescriptor*>(alloc(kRing * 64, 64));
        comp = static_cast<uint64_t*>(alloc(64, 64));
        for (uint32_t i = 0; i < kRing; ++i) ring[i].next = slot_iova(i + 1);
    }

    // Register writes go through a message on the driver-side Thread, as a driver's would: the
    // simulator re-polls idle pollers only after something did work.
    void wr32(uint32_t off, uint32_t v) {
        on(threads[0], [&] { bar.write32(off, v); });
    }
    void wr64(uint32_t off, uint64_t v) {
        on(threads[0], [&] { bar.write64(off, v); });
    }

    void* alloc(size_t bytes, size_t align = 4096) {
        auto p = env::dma_alloc(bytes, align, true);
        EXPECT_TRUE(p.ok());
        allocations.push_back(*p);
        return *p;
    }
    uint64_t iova(const void* p) { return env::iova_of(p); }
    uint64_t slot_iova(uint32_t i) { return iova(ring) + (i % kRing) * 64; }

    // Reset the channel and program it to start at slot `first`.
    void start(uint32_t first = 0, bool err_completion = true) {
        wr32(creg(spec::chan_reg::chancmd), spec::chancmd::reset);
        ASSERT_TRUE(poll_until([&] {
            return (bar.read32(creg(spec::chan_reg::chancmd)) & spec::chancmd::reset) == 0;
        }));
        spec::ChanCtrl ctrl{};
        ctrl.set_err_completion_en(err_completion ? 1 : 0);
        wr32(creg(spec::chan_reg::chanctrl), ctrl.raw);
        wr64(creg(spec::chan_reg::chancmp), iova(comp));
        wr64(creg(spec::chan_reg::chainaddr), slot_iova(first));
        count = 0;
        *comp = 0;
    }
    void put_copy(uint32_t slot, const void* dst, const void* src, uint32_t size, bool cu) {
        spec::DescControl c{};
        c.set_completion_update(cu ? 1 : 0);
        auto d = spec::make_copy(iova(src), iova(dst), size, c, slot_iova(slot + 1));
        std::memcpy(&ring[slot % kRing], &d, 64);
    }
    void put_fill(uint32_t slot, const void* dst, uint64_t pattern, uint32_t size, bool cu) {
        spec::DescControl c{};
        c.set_completion_update(cu ? 1 : 0);
        auto d = spec::make_fill(pattern, iova(dst), size, c, slot_iova(slot + 1));
        std::memcpy(&ring[slot % kRing], &d, 64);
    }
    void doorbell(uint16_t n) {
        count = static_cast<uint16_t>(count + n);
        wr32(creg(spec::chan_reg::chancmd), uint32_t{count} << 16);
    }
    spec::ChanSts chansts() { return spec::ChanSts{bar.read64(creg(spec::chan_reg::chansts))}; }
    uint32_t chanerr() { return bar.read32(creg(spec::chan_reg::chanerr)); }
    spec::ChanSts completion() {
        return spec::ChanSts{std::atomic_ref<uint64_t>(*comp).load(std::memory_order_acquire)};
    }
    bool wait_state(ChanState s) {
        return poll_until([&] { return chansts().state() == s; });
    }
    // Fills a buffer with a byte pattern derived from seed.
    static void pattern(void* p, size_t n, uint32_t seed) {
        auto* b = static_cast<uint8_t*>(p);
        for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + seed * 7 + (i >> 8));
    }

    static constexpr uint32_t kRing = 64;
    std::unique_ptr<PciBus> bus;
    std::unique_ptr<ChannelModel> model;
    std::unique_ptr<env::PciFunction> fn;
    env::Bar bar;
    spec::GenericDescriptor* ring = nullptr;
    uint64_t* comp = nullptr;
    uint16_t count = 0;
    std::vector<void*> allocations;
};

TEST_F(IoatModelTest, IdentityAndCapabilities) {
    make();
    EXPECT_EQ(fn->info().vendor_id, 0x8086);
    EXPECT_EQ(fn->info().device_id, spec::pci_device::skx);
    EXPECT_TRUE(spec::is_ioat_device(fn->info().vendor_id, fn->info().device_id));
    const uint32_t dw0 = bar.read32(spec::reg::chancnt);
    EXPECT_EQ(dw0 & 0x1F, 1u);                                    // CHANCNT
    EXPECT_EQ(spec::xfercap_bytes(uint8_t(dw0 >> 8)), 1u << 20);  // XFERCAP
    EXPECT_EQ(bar.read32(spec::reg::cbver) & 0xFF, spec::ver_3_3);
    EXPECT_TRUE(bar.read32(spec::reg::dmacapability) & spec::dmacap::fill);
    EXPECT_EQ(chansts().state(), ChanState::idle);
}

TEST_F(IoatModelTest, BadConfigIsRefused) {
    on(threads[1], [&] {
        ModelConfig cfg;
        cfg.xfercap_log2 = 5;
        auto m = ChannelModel::create(*bus, kAddr, cfg, *threads[1]);
        ASSERT_FALSE(m.ok());
        EXPECT_EQ(m.code(), Errc::invalid_argument);
        cfg = {};
        cfg.version = 0x20;
        EXPECT_EQ(ChannelModel::create(*bus, kAddr, cfg, *threads[1]).code(),
                  Errc::invalid_argument);
    });
}

TEST_F(IoatModelTest, ResetIsAppliedByThePoller) {
    make();
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::reset);
    // The write only records: the command reads back until the channel has applied it.
    EXPECT_TRUE(bar.read32(creg(spec::chan_reg::chancmd)) & spec::chancmd::reset);
    ASSERT_TRUE(poll_until(
        [&] { return (bar.read32(creg(spec::chan_reg::chancmd)) & spec::chancmd::reset) == 0; }));
    EXPECT_EQ(model->stats().resets, 1u);
    EXPECT_EQ(chansts().state(), ChanState::idle);
}

TEST_F(IoatModelTest, SlowResetShowsInChancmdUntilDone) {
    ModelConfig cfg;
    cfg.reset_delay_ns = 300'000;
    make(cfg);
    const uint64_t t0 = sim->now_ns();
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::reset);
    ASSERT_TRUE(poll_until(
        [&] { return (bar.read32(creg(spec::chan_reg::chancmd)) & spec::chancmd::reset) == 0; }));
    EXPECT_GE(sim->now_ns() - t0, 300'000u);
    EXPECT_EQ(model->stats().resets, 1u);
}

// A stuck channel: the reset is never applied, however long we wait, until the delay changes.
TEST_F(IoatModelTest, StuckResetIsNeverAppliedUntilTheDelayChanges) {
    ModelConfig cfg;
    cfg.reset_delay_ns = kResetNever;
    make(cfg);
    advance(1000);  // "never" must not wrap around from a non-zero time
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::reset);
    auto reset_shown = [&] {
        return (bar.read32(creg(spec::chan_reg::chancmd)) & spec::chancmd::reset) != 0;
    };
    EXPECT_FALSE(poll_until([&] { return !reset_shown(); }, 5 * runtime::kNsPerSec));
    EXPECT_TRUE(reset_shown());
    EXPECT_EQ(model->stats().resets, 0u);
    const uint64_t t0 = sim->now_ns();
    on(threads[1], [&] { model->set_reset_delay_ns(50'000); });
    ASSERT_TRUE(poll_until([&] { return !reset_shown(); }));
    EXPECT_LE(sim->now_ns() - t0, 100'000u);
    EXPECT_EQ(model->stats().resets, 1u);
}

TEST_F(IoatModelTest, CopyChainWritesCompletionAfterMarkedDescriptor) {
    make();
    start();
    constexpr uint32_t kN = 4, kLen = 3000;
    std::vector<uint8_t*> src, dst;
    for (uint32_t i = 0; i < kN; ++i) {
        src.push_back(static_cast<uint8_t*>(alloc(kLen)));
        dst.push_back(static_cast<uint8_t*>(alloc(kLen)));
        pattern(src[i], kLen, i);
        put_copy(i, dst[i], src[i], kLen, i == kN - 1);
    }
    doorbell(kN);
    // Doorbell only records: nothing has moved yet.
    EXPECT_EQ(dst[0][1], 0);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_EQ(completion().state(), ChanState::idle);
    EXPECT_EQ(completion().completed_descriptor(), slot_iova(kN - 1));
    for (uint32_t i = 0; i < kN; ++i) EXPECT_EQ(std::memcmp(src[i], dst[i], kLen), 0) << i;
    EXPECT_EQ(model->stats().descriptors, kN);
    EXPECT_EQ(model->stats().completion_writes, 1u);
    EXPECT_EQ(chansts().completed_descriptor(), slot_iova(kN - 1));
    EXPECT_EQ(fn->info().vendor_id, 0x8086);
    EXPECT_EQ(bus->dma_fault_count(), 0u);
}

TEST_F(IoatModelTest, FillWritesPatternLittleEndian) {
    make();
    start();
    auto* dst = static_cast<uint8_t*>(alloc(100000));
    put_fill(0, dst + 3, 0x0102030405060708ull, 99989, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_EQ(dst[0], 0);
    for (size_t i = 0; i < 99989; ++i) ASSERT_EQ(dst[3 + i], uint8_t(8 - i % 8)) << i;
    EXPECT_EQ(dst[3 + 99989], 0);
}

TEST_F(IoatModelTest, RingWrapsAcrossDoorbells) {
    make();
    start();
    auto* src = static_cast<uint8_t*>(alloc(256));
    auto* dst = static_cast<uint8_t*>(alloc(256 * 1000));
    pattern(src, 256, 1);
    uint32_t slot = 0;
    for (int batch = 0; batch < 50; ++batch) {  // 50 * 20 = 1000 descriptors, ring of 64
        for (int i = 0; i < 20; ++i, ++slot) put_copy(slot, dst + slot * 256, src, 256, i == 19);
        doorbell(20);
        ASSERT_TRUE(
            poll_until([&] { return completion().completed_descriptor() == slot_iova(slot - 1); }));
    }
    for (uint32_t i = 0; i < slot; ++i) ASSERT_EQ(std::memcmp(dst + i * 256, src, 256), 0) << i;
    EXPECT_EQ(model->stats().descriptors, 1000u);
}

TEST_F(IoatModelTest, NullDescriptorMovesNothing) {
    make();
    start();
    spec::DescControl c{};
    c.set_completion_update(1).set_null(1);
    auto d = spec::make_copy(0, 0, 0, c, slot_iova(1));
    std::memcpy(&ring[0], &d, 64);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_EQ(completion().state(), ChanState::idle);
    EXPECT_EQ(model->stats().bytes, 0u);
}

struct BadCase {
    const char* name;
    uint32_t expect;
};

TEST_F(IoatModelTest, BadDescriptorsHaltWithTheRightChanerr) {
    make();
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    auto run_case = [&](const char* name, uint32_t expect, auto&& setup) {
        SCOPED_TRACE(name);
        start();
        put_copy(0, buf, buf + 4096, 64, false);  // one good descriptor first
        setup();
        doorbell(2);
        ASSERT_TRUE(wait_state(ChanState::halted));
        EXPECT_EQ(chanerr(), expect) << spec::describe_chanerr(chanerr());
        // Halted: CHANSTS names the last good descriptor; with err_completion_en the halted
        // status is written to the completion address.
        EXPECT_EQ(chansts().completed_descriptor(), slot_iova(0));
        EXPECT_EQ(completion().state(), ChanState::halted);
        EXPECT_EQ(completion().completed_descriptor(), slot_iova(0));
        // RW1C
        wr32(creg(spec::chan_reg::chanerr), expect);
        EXPECT_EQ(chanerr(), 0u);
    };
    run_case("bad opcode", spec::chanerr::control_err, [&] {
        put_copy(1, buf, buf + 4096, 64, true);
        ring[1].control.set_op(0x42);
    });
    run_case("size 0", spec::chanerr::length_err, [&] { put_copy(1, buf, buf + 4096, 0, true); });
    run_case("size above XFERCAP", spec::chanerr::length_err,
             [&] { put_copy(1, buf, buf + 4096, (1u << 20) + 1, true); });
    run_case("misaligned next", spec::chanerr::next_desc_align_err,
             [&] { ring[0].next = slot_iova(1) + 8; });
    run_case("unmapped next", spec::chanerr::next_desc_addr_err,
             [&] { ring[0].next = 0x7000'0000'0000ull; });
    run_case("unmapped source", spec::chanerr::src_addr_err, [&] {
        put_copy(1, buf, buf, 64, true);
        ring[1].src_addr = 0x7000'0000'0000ull;
    });
    run_case("unmapped destination", spec::chanerr::dest_addr_err, [&] {
        put_copy(1, buf, buf, 64, true);
        ring[1].dest_addr = 0x7000'0000'0000ull;
    });
    EXPECT_EQ(model->stats().halts, 7u);
}

TEST_F(IoatModelTest, BadChainAddressAndCompletionAddress) {
    make();
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    start();
    wr64(creg(spec::chan_reg::chainaddr), 0x7000'0000'0000ull);
    put_copy(0, buf, buf + 4096, 64, true);
    doorbell(1);
    ASSERT_TRUE(wait_state(ChanState::halted));
    EXPECT_EQ(chanerr(), spec::chanerr::chain_addr_value_err);

    start();
    wr64(creg(spec::chan_reg::chancmp), 0x7000'0000'0000ull);
    put_copy(0, buf, buf + 4096, 64, true);
    doorbell(1);
    ASSERT_TRUE(wait_state(ChanState::halted));
    EXPECT_EQ(chanerr(), spec::chanerr::completion_addr_err);
    // Reset clears the halt; the channel works again.
    start();
    pattern(buf + 4096, 64, 3);
    put_copy(0, buf, buf + 4096, 64, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_EQ(std::memcmp(buf, buf + 4096, 64), 0);
}

TEST_F(IoatModelTest, HaltedChannelIgnoresDoorbellsUntilReset) {
    make();
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    start();
    put_copy(0, buf, buf + 4096, 0, true);
    doorbell(1);
    ASSERT_TRUE(wait_state(ChanState::halted));
    put_copy(1, buf, buf + 4096, 64, true);
    doorbell(1);
    run_until_idle();
    EXPECT_EQ(chansts().state(), ChanState::halted);
    EXPECT_EQ(model->stats().descriptors, 0u);
}

TEST_F(IoatModelTest, SuspendResumeAndAbort) {
    make();
    start();
    auto* src = static_cast<uint8_t*>(alloc(4096));
    auto* dst = static_cast<uint8_t*>(alloc(4096 * 8));
    pattern(src, 4096, 5);
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::suspend);
    ASSERT_TRUE(wait_state(ChanState::suspended));
    for (uint32_t i = 0; i < 4; ++i) put_copy(i, dst + i * 4096, src, 4096, i == 3);
    doorbell(4);
    run_until_idle();
    EXPECT_EQ(model->stats().descriptors, 0u);  // suspended: nothing runs
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::resume | uint32_t{count} << 16);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_EQ(std::memcmp(dst + 3 * 4096, src, 4096), 0);

    // Abort drops the rest of the chain.
    wr32(creg(spec::chan_reg::chancmd), spec::chancmd::suspend | uint32_t{count} << 16);
    ASSERT_TRUE(wait_state(ChanState::suspended));
    for (uint32_t i = 4; i < 8; ++i) put_copy(i, dst + i * 4096, src, 4096, i == 7);
    doorbell(4);
    wr32(creg(spec::chan_reg::chancmd),
         spec::chancmd::abort | spec::chancmd::resume | uint32_t{count} << 16);
    run_until_idle();
    EXPECT_EQ(model->stats().descriptors, 4u);
    EXPECT_EQ(chansts().state(), ChanState::idle);
}

TEST_F(IoatModelTest, LatencyModelUsesVirtualTime) {
    ModelConfig cfg;
    cfg.per_descriptor_ns = 50'000;     // 50 us per descriptor
    cfg.bandwidth_bytes_per_us = 1000;  // 1 GB/s
    make(cfg);
    start();
    auto* src = static_cast<uint8_t*>(alloc(100000));
    auto* dst = static_cast<uint8_t*>(alloc(100000));
    put_copy(0, dst, src, 100000, false);  // 50 us + 100 us
    put_copy(1, dst, src, 1000, true);     // 50 us + 1 us
    const uint64_t t0 = sim->now_ns();
    doorbell(2);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    const uint64_t took = sim->now_ns() - t0;
    EXPECT_GE(took, 201'000u);
    EXPECT_LT(took, 260'000u);
}

TEST_F(IoatModelTest, InjectedErrorHaltsWithChosenChanerr) {
    make();
    start();
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    on(threads[1], [&] {
        FaultRule r;
        r.name = "third copy fails";
        r.match.opcode = 0;
        r.match.nth = 3;
        r.action = FaultAction::error_status;
        r.status = static_cast<uint16_t>(spec::chanerr::write_data_err);
        model->faults().add(r);
    });
    for (uint32_t i = 0; i < 4; ++i) put_copy(i, buf, buf + 4096, 128, i == 3);
    doorbell(4);
    ASSERT_TRUE(wait_state(ChanState::halted));
    EXPECT_EQ(chanerr(), spec::chanerr::write_data_err);
    EXPECT_EQ(completion().completed_descriptor(), slot_iova(1));
    EXPECT_EQ(model->stats().injected_faults, 1u);
}

TEST_F(IoatModelTest, InjectedDropCorruptDelayAndRemoval) {
    make();
    auto* src = static_cast<uint8_t*>(alloc(4096));
    auto* dst = static_cast<uint8_t*>(alloc(4096));
    pattern(src, 4096, 9);
    // drop_completion: the data moves and CHANSTS advances, but no completion write.
    start();
    uint32_t id = 0;
    on(threads[1], [&] {
        FaultRule r;
        r.action = FaultAction::drop_completion;
        r.match.max_hits = 1;
        id = model->faults().add(r);
    });
    put_copy(0, dst, src, 4096, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return model->stats().descriptors == 1; }));
    EXPECT_EQ(completion().raw, 0u);
    EXPECT_EQ(chansts().completed_descriptor(), slot_iova(0));
    EXPECT_EQ(model->stats().dropped_completions, 1u);
    EXPECT_EQ(std::memcmp(dst, src, 4096), 0);
    on(threads[1], [&] { model->faults().clear(); });

    // corrupt_read: one byte of the destination differs.
    on(threads[1], [&] {
        FaultRule r;
        r.action = FaultAction::corrupt_read;
        r.match.max_hits = 1;
        model->faults().add(r);
    });
    std::memset(dst, 0, 4096);
    put_copy(1, dst, src, 4096, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_NE(std::memcmp(dst, src, 4096), 0);
    EXPECT_EQ(std::memcmp(dst + 1, src + 1, 4095), 0);
    on(threads[1], [&] { model->faults().clear(); });

    // delay: the completion waits for virtual time.
    on(threads[1], [&] {
        FaultRule r;
        r.action = FaultAction::delay;
        r.delay_ns = 300'000;
        model->faults().add(r);
    });
    *comp = 0;
    const uint64_t t0 = sim->now_ns();
    put_copy(2, dst, src, 4096, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return completion().raw != 0; }));
    EXPECT_GE(sim->now_ns() - t0, 300'000u);
    on(threads[1], [&] { model->faults().clear(); });

    // surprise_remove: the function leaves the bus; registers read all-ones.
    on(threads[1], [&] {
        FaultRule r;
        r.action = FaultAction::surprise_remove;
        model->faults().add(r);
    });
    put_copy(3, dst, src, 4096, true);
    doorbell(1);
    ASSERT_TRUE(poll_until([&] { return bus->find(kAddr) == nullptr; }));
    EXPECT_EQ(bar.read32(creg(spec::chan_reg::chanerr)), 0xFFFFFFFFu);
    (void)id;
}

TEST_F(IoatModelTest, RemovalStopsTheChannel) {
    make();
    start();
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    on(threads[1], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    put_copy(0, buf, buf + 4096, 64, true);
    doorbell(1);
    run_until_idle();
    EXPECT_EQ(model->stats().descriptors, 0u);
}

}  // namespace
}  // namespace strata::hwemu::ioat
