// The emulated PCI bus, reached the way drivers reach it: env::enumerate/claim, Bar, config space.
// A tiny test device ("copy engine") exercises BAR handlers, the DMA port and DMA faults.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/pci/copy_engine.h>
#include <strata/env/iova_map.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/runtime/host.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::hwemu {
namespace {

using env::PciAddress;

using CopyDevice = CopyEngine;
constexpr uint64_t kRegId = CopyEngine::kRegId;
constexpr uint64_t kRegDoorbell = CopyEngine::kRegDoorbell;
constexpr uint64_t kRegSrc = CopyEngine::kRegSrc;
constexpr uint64_t kRegDst = CopyEngine::kRegDst;
constexpr uint64_t kRegLen = CopyEngine::kRegLen;
constexpr uint64_t kRegStatus = CopyEngine::kRegStatus;
constexpr uint32_t kDeviceId = CopyEngine::kDeviceId;
PciFunctionConfig copy_config() { return copy_engine_config(); }

class PciBusTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus = std::make_unique<PciBus>();
        auto f = bus->add_function(kAddr, copy_config(), &dev);
        ASSERT_TRUE(f.ok()) << f.error().message();
        dev.fn = *f;
        PciFunctionConfig nvme;
        nvme.vendor_id = 0x1b36;
        nvme.device_id = 0x0010;
        nvme.class_code = 0x010802;
        nvme.bars[0] = {16384, true, false};
        ASSERT_TRUE(bus->add_function(kNvmeAddr, nvme, &other).ok());
    }
    void TearDown() override {
        fn.reset();
        if (dev.poller) dev.stop();
        SimFixture::TearDown();
        bus.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
    void claim_and_start() {
        start_sim(11, 2);
        auto c = env::claim(kAddr);
        ASSERT_TRUE(c.ok()) << c.error().message();
        fn = std::move(*c);
        on(threads[1], [&] { dev.start(threads[1]); });
        auto b = fn->map_bar(0);
        ASSERT_TRUE(b.ok());
        bar0 = *b;
    }
    // Programs one copy from the driver Thread and waits for the device to finish.
    uint32_t run_copy(uint64_t src, uint64_t dst, uint32_t len) {
        on(threads[0], [&] {
            bar0.write64(kRegSrc, src);
            bar0.write64(kRegDst, dst);
            bar0.write32(kRegLen, len);
            bar0.write32(kRegDoorbell, 1);
        });
        uint32_t st = 0;
        EXPECT_TRUE(poll_until([&] {
            st = bar0.read32(kRegStatus);
            return st >= 2;
        }));
        return st;
    }

    static constexpr PciAddress kAddr{0, 0x01, 0x00, 0};
    static constexpr PciAddress kNvmeAddr{0, 0x02, 0x00, 0};
    CopyDevice dev;
    CopyDevice other;
    std::unique_ptr<PciBus> bus;
    std::unique_ptr<env::PciFunction> fn;
    env::Bar bar0;
};

TEST_F(PciBusTest, EnumerateAndFilter) {
    auto all = env::enumerate();
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), 2u);
    EXPECT_EQ((*all)[0].address, kAddr);
    EXPECT_EQ((*all)[0].vendor_id, 0x1af4);
    EXPECT_EQ((*all)[1].class_code, 0x010802u);
    env::PciFilter nvme_class;
    nvme_class.class_code = 0x010800;
    nvme_class.class_mask = 0xffff00;
    auto nv = env::enumerate(nvme_class);
    ASSERT_TRUE(nv.ok());
    ASSERT_EQ(nv->size(), 1u);
    EXPECT_EQ((*nv)[0].address, kNvmeAddr);
    env::PciFilter by_id;
    by_id.vendor_id = 0x1af4;
    by_id.device_id = 0x10f0;
    EXPECT_EQ(env::enumerate(by_id)->size(), 1u);
    by_id.device_id = 0x1234;
    EXPECT_TRUE(env::enumerate(by_id)->empty());
    EXPECT_EQ(bus->add_function(kAddr, copy_config(), &dev).code(), Errc::already_exists);
    PciFunctionConfig bad = copy_config();
    bad.bars[0].size_bytes = 1000;
    auto r = bus->add_function(PciAddress{0, 3, 0, 0}, bad, &dev);
    ASSERT_EQ(r.code(), Errc::invalid_argument);
    EXPECT_NE(r.error().message().find("BAR0"), std::string::npos);
}

TEST_F(PciBusTest, ClaimIsExclusiveInProcess) {
    auto a = env::claim(kAddr);
    ASSERT_TRUE(a.ok()) << a.error().message();
    auto b = env::claim(kAddr);
    ASSERT_EQ(b.code(), Errc::busy);
    EXPECT_NE(b.error().message().find("already claimed"), std::string::npos);
    EXPECT_EQ(env::claim(PciAddress{0, 9, 0, 0}).code(), Errc::not_found);
    ASSERT_TRUE((*a)->detach().ok());
    EXPECT_EQ((*a)->config_read16(0).code(), Errc::device_removed);
    auto c = env::claim(kAddr);
    EXPECT_TRUE(c.ok()) << "free again after detach";
}

TEST_F(PciBusTest, ClaimIsExclusiveAcrossProcesses) {
    int to_child[2], to_parent[2];
    ASSERT_EQ(pipe(to_child), 0);
    ASSERT_EQ(pipe(to_parent), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        char c;
        if (read(to_child[0], &c, 1) != 1) _exit(10);
        auto r = env::claim(kAddr);  // the forked child has the bus but not the parent's claim
        int code = r.ok() ? 1
                   : r.code() != Errc::busy ? 2
                   : r.error().message().find("another process") == std::string::npos ? 3
                                                                                        : 0;
        if (write(to_parent[1], "x", 1) != 1) _exit(11);
        _exit(code);
    }
    auto a = env::claim(kAddr);
    ASSERT_TRUE(a.ok()) << a.error().message();
    ASSERT_EQ(write(to_child[1], "x", 1), 1);
    char c;
    ASSERT_EQ(read(to_parent[0], &c, 1), 1);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: claimed, 2: wrong code, 3: message";
    for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
    (*a).reset();
    EXPECT_NE(access(bus->lock_path(kAddr).c_str(), F_OK), 0) << "lock file removed on release";
}

TEST_F(PciBusTest, ConfigSpace) {
    auto c = env::claim(kAddr);
    ASSERT_TRUE(c.ok());
    env::PciFunction& f = **c;
    EXPECT_EQ(*f.config_read16(0x00), 0x1af4);
    EXPECT_EQ(*f.config_read16(0x02), 0x10f0);
    EXPECT_EQ(*f.config_read32(0x08), 0x08800002u);  // class << 8 | revision
    EXPECT_EQ(*f.config_read16(0x2c), 0x1af4);
    EXPECT_EQ(*f.config_read8(0x3d), 1);
    // Read-only ids.
    ASSERT_TRUE(f.config_write16(0x00, 0xdead).ok());
    EXPECT_EQ(*f.config_read16(0x00), 0x1af4);
    // Command register: memory space + bus master.
    ASSERT_TRUE(f.config_write16(0x04, 0x0006).ok());
    EXPECT_EQ(*f.config_read16(0x04), 0x0006);
    // BAR sizing: write all-ones, read the size mask; flags stay.
    ASSERT_TRUE(f.config_write32(0x10, 0xffffffff).ok());
    EXPECT_EQ(*f.config_read32(0x10), 0xfffff000u);
    ASSERT_TRUE(f.config_write32(0x18, 0xffffffff).ok());
    ASSERT_TRUE(f.config_write32(0x1c, 0xffffffff).ok());
    EXPECT_EQ(*f.config_read32(0x18), 0xfff0000cu);  // 1 MiB, 64-bit, prefetchable
    EXPECT_EQ(*f.config_read32(0x1c), 0xffffffffu);
    ASSERT_TRUE(f.config_write32(0x18, 0xfe000000).ok());
    ASSERT_TRUE(f.config_write32(0x1c, 0x00000001).ok());
    EXPECT_EQ(bus->find(kAddr)->bar_address(2), 0x1fe000000ull);
    // Capability list: status bit 4, pointer at 0x34, chain MSI-X -> MSI -> end.
    EXPECT_TRUE(*f.config_read16(0x06) & (1u << 4));
    uint8_t p = *f.config_read8(0x34);
    EXPECT_EQ(p, 0x40);
    EXPECT_EQ(*f.config_read8(p), 0x11);
    uint8_t next = *f.config_read8(p + 1);
    EXPECT_EQ(next, 0x4c);
    EXPECT_EQ(*f.config_read8(next), 0x05);
    EXPECT_EQ(*f.config_read8(next + 1), 0);
    // Capability bodies are writable (e.g. MSI-X enable), headers are not.
    ASSERT_TRUE(f.config_write16(p + 2, 0x8003).ok());
    EXPECT_EQ(*f.config_read16(p + 2), 0x8003);
    ASSERT_TRUE(f.config_write8(p, 0x99).ok());
    EXPECT_EQ(*f.config_read8(p), 0x11);
    // Bad offsets are errors, not crashes.
    EXPECT_EQ(f.config_read32(4096).code(), Errc::out_of_range);
    EXPECT_EQ(f.config_read32(2).code(), Errc::invalid_argument);
    // BARs: 1 is absent, 3 is BAR2's upper half, 6 does not exist.
    EXPECT_EQ(f.map_bar(1).code(), Errc::not_found);
    EXPECT_EQ(f.map_bar(3).code(), Errc::not_found);
    EXPECT_EQ(f.map_bar(6).code(), Errc::invalid_argument);
    auto b2 = f.map_bar(2);
    ASSERT_TRUE(b2.ok());
    EXPECT_EQ(b2->size_bytes(), 1u << 20);
    EXPECT_FALSE(b2->is_mmio());
}

TEST_F(PciBusTest, BarHandlersAndCopyEngine) {
    claim_and_start();
    EXPECT_EQ(bar0.read32(kRegId), kDeviceId);
    auto src = env::dma_alloc(8192, 4096);
    auto dst = env::dma_alloc(8192, 4096, true);
    ASSERT_TRUE(src.ok() && dst.ok());
    auto* s = static_cast<uint8_t*>(*src);
    for (int i = 0; i < 8192; ++i) s[i] = uint8_t(i * 7);
    // The doorbell only records; nothing is copied until the device's poller runs.
    on(threads[0], [&] {
        bar0.write64(kRegSrc, env::iova_of(s));
        bar0.write64(kRegDst, env::iova_of(*dst));
        bar0.write32(kRegLen, 8192);
        bar0.write32(kRegDoorbell, 1);
        EXPECT_EQ(bar0.read32(kRegStatus), 1u) << "busy right after the doorbell";
        EXPECT_EQ(dev.fn->dma().bytes_written(), 0u);
    });
    ASSERT_TRUE(poll_until([&] { return bar0.read32(kRegStatus) == 2; }));
    EXPECT_EQ(std::memcmp(s, *dst, 8192), 0);
    EXPECT_EQ(dev.doorbells, 1u);
    EXPECT_EQ(bar0.read64(kRegSrc), env::iova_of(s));
    EXPECT_EQ(dev.fn->dma().bytes_read(), 8192u);
    EXPECT_EQ(dev.fn->dma_fault_count(), 0u);

    // Across two registrations (two IOVA regions): the port walks both.
    alignas(4096) static uint8_t host[2 * 4096];
    ASSERT_TRUE(env::register_memory(host, 4096).ok());
    ASSERT_TRUE(env::register_memory(host + 4096, 4096).ok());
    auto segs = env::translate(host, sizeof host);
    ASSERT_TRUE(segs.ok());
    ASSERT_EQ(segs->size(), 2u);
    for (const auto& seg : *segs)  // the driver programs one copy per segment
        EXPECT_EQ(run_copy(env::iova_of(s), seg.iova, uint32_t(seg.len)), 2u);
    EXPECT_EQ(std::memcmp(host, s, 4096), 0);
    EXPECT_EQ(std::memcmp(host + 4096, s, 4096), 0);
    ASSERT_TRUE(env::unregister_memory(host, 4096).ok());
    ASSERT_TRUE(env::unregister_memory(host + 4096, 4096).ok());
    env::dma_free(*src);
    env::dma_free(*dst);
}

TEST_F(PciBusTest, DmaFaultsAreCountedAndReported) {
    claim_and_start();
    auto src = env::dma_alloc(4096, 4096);
    auto dst = env::dma_alloc(4096, 4096, true);
    ASSERT_TRUE(src.ok() && dst.ok());
    std::memset(*src, 0x5a, 4096);
    // 1. A virtual address where an IOVA belongs: unmapped in the sim's IOVA space.
    EXPECT_EQ(run_copy(reinterpret_cast<uintptr_t>(*src), env::iova_of(*dst), 4096), 3u);
    EXPECT_EQ(dev.fn->dma_fault_count(), 1u);
    EXPECT_EQ(dev.fn->dma().last_fault_iova(), reinterpret_cast<uintptr_t>(*src));
    // 2. Past the end of the buffer: the first byte after it faults, nothing is written.
    EXPECT_EQ(run_copy(env::iova_of(*src), env::iova_of(*dst), 4097), 3u);
    EXPECT_EQ(dev.fn->dma_fault_count(), 2u);
    EXPECT_EQ(dev.fn->dma().last_fault_iova(), env::iova_of(*src) + 4096);
    // 3. The write side: destination runs past its end.
    EXPECT_EQ(run_copy(env::iova_of(*src), env::iova_of(*dst) + 100, 4096), 3u);
    EXPECT_EQ(dev.fn->dma_fault_count(), 3u);
    EXPECT_EQ(dev.fn->dma().last_fault_iova(), env::iova_of(*dst) + 4096);
    auto* d = static_cast<uint8_t*>(*dst);
    EXPECT_EQ(d[100], 0) << "a faulting DMA has no partial effect";
    // 4. A freed buffer's IOVA faults.
    uint64_t old = env::iova_of(*dst);
    env::dma_free(*dst);
    EXPECT_EQ(run_copy(env::iova_of(*src), old, 16), 3u);
    EXPECT_EQ(dev.fn->dma_fault_count(), 4u);
    EXPECT_EQ(bus->dma_fault_count(), 4u);
    // The direct port API returns the code (called on the device's Thread, as its poller would:
    // the fault's log line reads the simulated clock).
    on(threads[1], [&] {
        uint8_t tmp[8];
        EXPECT_EQ(dev.fn->dma().read(0, tmp, 8).code(), Errc::dma_fault);
        EXPECT_EQ(dev.fn->dma().read(UINT64_MAX - 2, tmp, 8).code(), Errc::dma_fault);
    });
    EXPECT_EQ(dev.fn->dma_fault_count(), 6u);
    env::dma_free(*src);
}

struct RemoveProbe {
    runtime::Thread* ran_on = nullptr;
    int count = 0;
    static void on_remove(void* ctx) {
        auto* p = static_cast<RemoveProbe*>(ctx);
        p->ran_on = runtime::current_thread();
        ++p->count;
    }
};

TEST_F(PciBusTest, SurpriseRemovalNotifiesOwnerThread) {
    claim_and_start();
    RemoveProbe probe;
    on(threads[0], [&] { fn->set_hot_remove_target(threads[0], &RemoveProbe::on_remove, &probe); });
    // The removal's log line reads the simulated clock: pull the function from a Thread (the
    // device's side).
    on(threads[1], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    ASSERT_TRUE(poll_until([&] { return probe.count > 0; }));
    run_until_idle();
    EXPECT_EQ(probe.count, 1) << "delivered once";
    EXPECT_EQ(probe.ran_on, threads[0]);
    EXPECT_TRUE(dev.removal_seen);
    EXPECT_TRUE(fn->removed());
    // Removed hardware reads all-ones; writes vanish; DMA fails.
    EXPECT_EQ(bar0.read32(kRegId), 0xffffffffu);
    EXPECT_EQ(bar0.read64(kRegSrc), ~uint64_t{0});
    bar0.write32(kRegDoorbell, 1);
    EXPECT_EQ(dev.doorbells, 0u);
    EXPECT_EQ(*fn->config_read16(0), 0xffff);
    uint8_t tmp[4];
    EXPECT_EQ(dev.fn->dma().read(0, tmp, 4).code(), Errc::device_removed);
    EXPECT_TRUE(env::enumerate()->size() == 1) << "gone from the bus";
    EXPECT_EQ(bus->surprise_remove(kAddr).code(), Errc::not_found);
    on(threads[0], [&] { ASSERT_TRUE(fn->detach().ok()); });
    EXPECT_EQ(env::claim(kAddr).code(), Errc::not_found);
}

// A model going away (remove_function, its destructor's path) takes the function off the bus as
// surprise_remove does; a driver still holding it is told, as for a hot removal.
TEST_F(PciBusTest, RemoveFunctionTakesItOffTheBusAndTellsAClaimant) {
    const size_t before = env::enumerate()->size();
    claim_and_start();
    RemoveProbe probe;
    on(threads[0], [&] { fn->set_hot_remove_target(threads[0], &RemoveProbe::on_remove, &probe); });
    on(threads[1], [&] { ASSERT_TRUE(bus->remove_function(kAddr).ok()); });
    ASSERT_TRUE(poll_until([&] { return probe.count > 0; }));
    EXPECT_TRUE(fn->removed());
    EXPECT_EQ(bar0.read32(kRegId), 0xffffffffu);
    EXPECT_EQ(env::enumerate()->size(), before - 1);
    EXPECT_EQ(bus->remove_function(kAddr).code(), Errc::not_found);
    on(threads[0], [&] { ASSERT_TRUE(fn->detach().ok()); });
}

// What the log says: a model going away with no driver on it is routine (info), a function
// pulled from under a driver is a surprise removal (notice), whichever call did it.
TEST_F(PciBusTest, RemovalIsLoggedAsWhatItIs) {
    auto* pci = log_find_component("hwemu_pci");
    ASSERT_NE(pci, nullptr);
    pci->set_level(LogLevel::info);
    std::vector<std::pair<LogLevel, std::string>> lines;
    log_set_sink([&](const LogRecord& r) {
        if (r.component == pci) lines.emplace_back(r.level, std::string(r.message));
    });
    ASSERT_TRUE(bus->remove_function(kNvmeAddr).ok());  // never claimed
    claim_and_start();
    on(threads[1], [&] { ASSERT_TRUE(bus->remove_function(kAddr).ok()); });  // claimed
    log_set_sink({});
    pci->set_level(std::nullopt);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].first, LogLevel::info);
    EXPECT_NE(lines[0].second.find(": removed"), std::string::npos) << lines[0].second;
    EXPECT_EQ(lines[1].first, LogLevel::notice);
    EXPECT_NE(lines[1].second.find("surprise removal"), std::string::npos) << lines[1].second;
    run_until_idle();
    on(threads[0], [&] { ASSERT_TRUE(fn->detach().ok()); });
}

TEST_F(PciBusTest, RemovalBeforeTargetIsDeliveredWhenSet) {
    start_sim(3, 2);
    auto c = env::claim(kAddr);
    ASSERT_TRUE(c.ok());
    fn = std::move(*c);
    on(threads[1], [&] { ASSERT_TRUE(bus->surprise_remove(kAddr).ok()); });
    RemoveProbe probe;
    fn->set_hot_remove_target(threads[1], &RemoveProbe::on_remove, &probe);
    ASSERT_TRUE(poll_until([&] { return probe.count > 0; }));
    EXPECT_EQ(probe.ran_on, threads[1]);
}


// Two Hosts are two machines: each has its own emulated bus, with a copy engine at the SAME
// address, claimed independently; each device reaches only its own Host's DMA memory (its IOVA
// map), so an IOVA mapped only in Host A is a DMA fault for B's device.
class PciTwoHostsTest : public runtime::testing::SimFixture {
protected:
    struct Machine {
        explicit Machine(std::string name, uint64_t seed) : host(std::move(name), seed) {}
        runtime::Host host;
        std::unique_ptr<PciBus> bus;
        CopyDevice dev;
        std::unique_ptr<env::PciFunction> fn;
        env::Bar bar0;
        runtime::Thread* thread = nullptr;
    };

    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        start_sim(5, 0);
        for (Machine* m : {&a, &b}) {
            runtime::HostScope scope(m->host);
            m->bus = std::make_unique<PciBus>();  // the current Host's
            ASSERT_EQ(&m->bus->host(), &m->host);
            auto f = m->bus->add_function(kAddr, copy_config(), &m->dev);
            ASSERT_TRUE(f.ok()) << f.error().message();
            m->dev.fn = *f;
            auto c = env::claim(kAddr);
            ASSERT_TRUE(c.ok()) << m->host.name() << ": " << c.error().message();
            m->fn = std::move(*c);
            auto bar = m->fn->map_bar(0);
            ASSERT_TRUE(bar.ok());
            m->bar0 = *bar;
            m->thread = sim->create_thread(m->host.name());  // belongs to the Host in scope
        }
        for (Machine* m : {&a, &b}) on(m->thread, [m] { m->dev.start(m->thread); });
    }
    void TearDown() override {
        for (Machine* m : {&a, &b}) {
            if (m->dev.poller) on(m->thread, [m] { m->dev.stop(); });
            m->fn.reset();
        }
        SimFixture::TearDown();
        for (Machine* m : {&a, &b}) m->bus.reset();
        EXPECT_EQ(env::backend::iova_map(a.host).size(), 0u);
        EXPECT_EQ(env::backend::iova_map(b.host).size(), 0u);
        env::fini();
    }
    // Allocates in m's Host (on its Thread, as a driver would).
    void* alloc(Machine& m, size_t len, uint8_t fill) {
        void* p = nullptr;
        on(m.thread, [&] {
            p = *env::dma_alloc(len, 4096);
            std::memset(p, fill, len);
        });
        return p;
    }
    uint64_t iova(Machine& m, void* p) {
        uint64_t i = env::kInvalidIova;
        on(m.thread, [&] { i = env::iova_of(p); });
        return i;
    }
    void release(Machine& m, void* p) {
        on(m.thread, [&] { env::dma_free(p); });
    }
    uint32_t run_copy(Machine& m, uint64_t src, uint64_t dst, uint32_t len) {
        on(m.thread, [&] {
            m.bar0.write64(kRegSrc, src);
            m.bar0.write64(kRegDst, dst);
            m.bar0.write32(kRegLen, len);
            m.bar0.write32(kRegDoorbell, 1);
        });
        uint32_t st = 0;
        EXPECT_TRUE(poll_until([&] {
            st = m.bar0.read32(kRegStatus);
            return st >= 2;
        }));
        return st;
    }

    static constexpr PciAddress kAddr{0, 0x01, 0x00, 0};
    Machine a{"host_a", 1};
    Machine b{"host_b", 2};
};

TEST_F(PciTwoHostsTest, EachHostHasItsOwnBusAndClaims) {
    for (Machine* m : {&a, &b}) {
        runtime::HostScope scope(m->host);
        auto list = env::enumerate();
        ASSERT_TRUE(list.ok());
        ASSERT_EQ(list->size(), 1u) << "only its own bus";
        EXPECT_EQ(env::claim(kAddr).code(), Errc::busy) << "claimed in this Host";
        EXPECT_TRUE(m->dev.fn->claimed());
    }
    EXPECT_NE(a.bus->lock_path(kAddr), b.bus->lock_path(kAddr));
    // Released in A only: B's function at the same address stays claimed.
    ASSERT_TRUE(a.fn->detach().ok());
    EXPECT_FALSE(a.dev.fn->claimed());
    EXPECT_TRUE(b.dev.fn->claimed());
    runtime::HostScope scope(a.host);
    auto again = env::claim(kAddr);
    ASSERT_TRUE(again.ok()) << again.error().message();
    a.fn = std::move(*again);
}

TEST_F(PciTwoHostsTest, ADeviceReachesOnlyItsHostsMemory) {
    void* a_src = alloc(a, 4096, 0xaa);
    void* a_dst = alloc(a, 4096, 0);
    void* b_src = alloc(b, 4096, 0xbb);
    void* b_dst = alloc(b, 4096, 0);
    // Each Host numbers its own IOVAs: the same IOVAs name different memory in A and B.
    ASSERT_EQ(iova(a, a_src), iova(b, b_src));
    EXPECT_EQ(iova(b, a_src), env::kInvalidIova) << "A's buffer is not DMA memory in B";
    EXPECT_EQ(run_copy(a, iova(a, a_src), iova(a, a_dst), 4096), 2u);
    EXPECT_EQ(run_copy(b, iova(b, b_src), iova(b, b_dst), 4096), 2u);
    EXPECT_EQ(static_cast<uint8_t*>(a_dst)[4095], 0xaa);
    EXPECT_EQ(static_cast<uint8_t*>(b_dst)[4095], 0xbb) << "B's device copied B's memory";
    // An IOVA only A has mapped: B's device faults, nothing is written, A's device is unharmed.
    void* a_big = alloc(a, 1 << 20, 0xcc);
    uint64_t only_in_a = iova(a, a_big) + (1 << 19);
    std::memset(b_dst, 0, 4096);
    EXPECT_EQ(run_copy(b, only_in_a, iova(b, b_dst), 64), 3u);
    EXPECT_EQ(b.dev.fn->dma_fault_count(), 1u);
    EXPECT_EQ(b.dev.fn->dma().last_fault_iova(), only_in_a);
    EXPECT_EQ(static_cast<uint8_t*>(b_dst)[0], 0);
    EXPECT_EQ(run_copy(a, only_in_a, iova(a, a_dst), 64), 2u);
    EXPECT_EQ(static_cast<uint8_t*>(a_dst)[0], 0xcc);
    EXPECT_EQ(a.bus->dma_fault_count(), 0u);
    for (void* p : {a_src, a_dst, a_big}) release(a, p);
    for (void* p : {b_src, b_dst}) release(b, p);
}

}  // namespace
}  // namespace strata::hwemu
