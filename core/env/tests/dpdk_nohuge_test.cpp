// dpdk backend with EAL in --no-huge --no-pci mode: memory from anonymous pages, IOVA mode VA.
// EAL initialises once per process; every test calls up() which initialises it on first use
// with the same options (ctest runs each test in its own process anyway).
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <strata/base/assert.h>
#include <strata/runtime/sim_fixture.h>

#include "dpdk/dpdk_memory.h"
#include "dpdk/dpdk_pci.h"
#include "dpdk/eal.h"

namespace strata::env::dpdk {
namespace {

EalOptions nohuge_options() {
    EalOptions o;
    o.no_huge = true;
    o.no_pci = true;
    o.memory_mb = 64;
    return o;
}

const EalInfo& up() {
    auto r = eal_init(nohuge_options());
    EXPECT_TRUE(r.ok()) << r.error().message();
    STRATA_ASSERT(r.ok());
    return *eal_info();
}

TEST(DpdkNoHuge, EalReportsVaModeWithoutHugepagesOrPci) {
    const EalInfo& info = up();
    EXPECT_EQ(info.iova_mode, IovaMode::va);  // DPDK forces VA with --no-huge
    EXPECT_FALSE(info.hugepages);
    EXPECT_FALSE(info.pci);
    EXPECT_TRUE(eal_initialized());
}

TEST(DpdkNoHuge, SecondInitSameOptionsIsANoOpDifferentOptionsIsAnError) {
    up();
    auto same = eal_init(nohuge_options());
    ASSERT_TRUE(same.ok()) << same.error().message();

    EalOptions other = nohuge_options();
    other.memory_mb = 128;
    auto diff = eal_init(other);
    ASSERT_FALSE(diff.ok());
    EXPECT_EQ(diff.code(), Errc::already_exists);
    EXPECT_NE(diff.error().message().find("cannot re-initialise"), std::string::npos)
        << diff.error().message();
    EXPECT_NE(diff.error().message().find("-m128"), std::string::npos);
}

TEST(DpdkNoHuge, AllocIsAlignedAndIovaIsTheVirtualAddress) {
    up();
    for (size_t align :
         {size_t{0}, size_t{64}, size_t{512}, size_t{4096}, size_t{65536}, size_t{2} << 20}) {
        for (size_t size : {size_t{1}, size_t{100}, size_t{4096}, size_t{3} << 20}) {
            auto b = dma_alloc(size, align, false);
            ASSERT_TRUE(b.ok()) << b.error().message();
            auto addr = reinterpret_cast<uintptr_t>(b->addr);
            if (align > 1) {
                EXPECT_EQ(addr % align, 0u) << "align " << align;
            }
            EXPECT_EQ(b->iova, addr);
            EXPECT_EQ(b->size_bytes, size);
            memset(b->addr, 0xa5, size);  // writable over its whole length
            auto segs = dpdk_iova_segments(b->addr, size);
            ASSERT_TRUE(segs.ok()) << segs.error().message();
            ASSERT_EQ(segs->size(), 1u);
            EXPECT_EQ((*segs)[0].iova, b->iova);
            EXPECT_EQ((*segs)[0].len, size);
            EXPECT_EQ(dpdk_virt2iova(static_cast<char*>(b->addr) + size - 1), b->iova + size - 1);
            dma_free(b->addr);
        }
    }
}

TEST(DpdkNoHuge, ZeroedAllocIsZeroEvenOverReusedMemory) {
    up();
    std::vector<void*> dirty;
    for (int i = 0; i < 16; ++i) {
        auto b = dma_alloc(8192, 4096, false);
        ASSERT_TRUE(b.ok());
        memset(b->addr, 0xff, 8192);
        dirty.push_back(b->addr);
    }
    for (void* p : dirty) dma_free(p);
    for (int i = 0; i < 16; ++i) {
        auto b = dma_alloc(8192, 4096, true);
        ASSERT_TRUE(b.ok());
        auto* bytes = static_cast<const uint8_t*>(b->addr);
        for (size_t j = 0; j < 8192; ++j) ASSERT_EQ(bytes[j], 0) << "byte " << j;
        dma_free(b->addr);
    }
}

TEST(DpdkNoHuge, BadArgumentsAndExhaustionAreClearErrors) {
    up();
    auto zero = dma_alloc(0, 64, false);
    ASSERT_FALSE(zero.ok());
    EXPECT_EQ(zero.code(), Errc::invalid_argument);

    auto odd = dma_alloc(64, 48, false);
    ASSERT_FALSE(odd.ok());
    EXPECT_EQ(odd.code(), Errc::invalid_argument);
    EXPECT_NE(odd.error().message().find("power of two"), std::string::npos);

    auto huge = dma_alloc(size_t{1} << 30, 4096, false);  // the heap is 64 MiB
    ASSERT_FALSE(huge.ok());
    EXPECT_EQ(huge.code(), Errc::no_memory);
    EXPECT_NE(huge.error().message().find("memory_mb"), std::string::npos);

    dma_free(nullptr);  // no-op
}

TEST(DpdkNoHuge, MemoryOutsideDpdkIsNotTranslatedButCanBeRegistered) {
    up();
    std::vector<uint8_t> user(3 * 4096 + 100);
    EXPECT_EQ(dpdk_virt2iova(user.data()), UINT64_MAX);
    auto segs = dpdk_iova_segments(user.data(), user.size());
    ASSERT_FALSE(segs.ok());
    EXPECT_EQ(segs.code(), Errc::not_found);

    // IOVA mode VA: user memory's IOVA is its address (an IOMMU would translate it).
    auto reg = register_user_memory(user.data() + 10, 5000);
    ASSERT_TRUE(reg.ok()) << reg.error().message();
    ASSERT_EQ(reg->size(), 1u);
    EXPECT_EQ((*reg)[0].iova, reinterpret_cast<uint64_t>(user.data() + 10));
    EXPECT_EQ((*reg)[0].len, 5000u);
    EXPECT_TRUE(unregister_user_memory(user.data() + 10, 5000).ok());

    auto empty = register_user_memory(user.data(), 0);
    ASSERT_FALSE(empty.ok());
    EXPECT_EQ(empty.code(), Errc::invalid_argument);
}

TEST(DpdkNoHugeDeathTest, DoubleFreeIsCaughtInDebugBuilds) {
#ifdef NDEBUG
    GTEST_SKIP() << "double-free detection is a debug-build check (NDEBUG is defined)";
#else
    GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child re-runs EAL init itself
    EXPECT_DEATH(
        {
            up();
            auto b = dma_alloc(4096, 4096, false);
            dma_free(b->addr);
            dma_free(b->addr);
        },
        "double free");
    EXPECT_DEATH(
        {
            up();
            static char not_dma[64];
            dma_free(not_dma);
        },
        "not a buffer from dma_alloc");
#endif
}

TEST(DpdkNoHuge, PciIsUnavailableWithNoPci) {
    up();
    auto list = pci_list(true);
    ASSERT_FALSE(list.ok());
    EXPECT_EQ(list.code(), Errc::not_supported);
    EXPECT_NE(list.error().message().find("no_pci"), std::string::npos);

    auto c = DpdkPciDevice::claim("0000:01:00.0");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::not_supported);
    EXPECT_EQ(claimed_count(), 0u);
}

// A failed PCI attach logs its cause first and consequences after it ("failed to select IOMMU
// type", then "Failed to attach device"): the claim error quotes every line of the probe.
TEST(DpdkNoHuge, ErrorLinesAreCollectedInOrderAndTakenOnce) {
    up();
    eal_take_error_lines();
    eal_log_for_testing(true, "0000:00:02.0 failed to select IOMMU type");
    eal_log_for_testing(false, "not an error");
    eal_log_for_testing(true, "Failed to attach device on primary process");
    EXPECT_EQ(eal_take_error_lines(),
              "EAL: 0000:00:02.0 failed to select IOMMU type; "
              "EAL: Failed to attach device on primary process");
    EXPECT_EQ(eal_take_error_lines(), "");

    // Bounded however long nobody takes them.
    for (int i = 0; i < 1000; ++i) eal_log_for_testing(true, "line of a flood");
    EXPECT_LE(eal_take_error_lines().size(), 2048u);
}

// Hot removal: DPDK raises RTE_DEV_EVENT_REMOVE on its interrupt thread (vfio's request notifier);
// the backend must turn it into one message on the Thread that owns the function.
class DpdkHotRemove : public runtime::testing::SimFixture {};

TEST_F(DpdkHotRemove, RemovalIsDeliveredOnceAsAMessageToTheOwningThread) {
    up();
    start_sim(7, 2);
    runtime::Thread* owner = threads[1];
    struct Seen {
        int count = 0;
        runtime::Thread* ran_on = nullptr;
    } seen;

    auto dev = DpdkPciDevice::unattached_for_testing("0000:7e:00.0");
    dev->set_remove_target(
        owner,
        [](void* ctx) {
            auto* s = static_cast<Seen*>(ctx);
            ++s->count;
            s->ran_on = runtime::current_thread();
        },
        &seen);
    EXPECT_FALSE(dev->removed());

    // Raised from another OS thread, as DPDK's interrupt thread would.
    std::thread irq([] {
        DpdkPciDevice::raise_remove_for_testing("0000:7e:00.0");
        DpdkPciDevice::raise_remove_for_testing("0000:7e:00.0");  // repeated request: once only
    });
    irq.join();
    EXPECT_TRUE(dev->removed());
    EXPECT_EQ(seen.count, 0);  // nothing runs inline: it is a message
    ASSERT_TRUE(poll_until([&] { return seen.count > 0; }));
    run_until_idle();
    EXPECT_EQ(seen.count, 1);
    EXPECT_EQ(seen.ran_on, owner);

    // Another name is not this device's event.
    DpdkPciDevice::raise_remove_for_testing("0000:7e:00.1");
    run_until_idle();
    EXPECT_EQ(seen.count, 1);

    // After destruction the callback is gone: raising again touches nothing.
    dev.reset();
    DpdkPciDevice::raise_remove_for_testing("0000:7e:00.0");
    run_until_idle();
    EXPECT_EQ(seen.count, 1);
}

TEST_F(DpdkHotRemove, DetachedDeviceRejectsConfigAndBarAccess) {
    up();
    auto dev = DpdkPciDevice::unattached_for_testing("0000:7e:00.2");
    uint32_t v = 0;
    EXPECT_EQ(dev->read_config(&v, 4, 0), Errc::device_removed);
    EXPECT_EQ(dev->write_config(&v, 4, 0), Errc::device_removed);
    auto bar = dev->bar(0);
    ASSERT_FALSE(bar.ok());
    EXPECT_EQ(bar.code(), Errc::device_removed);
    EXPECT_TRUE(dev->detach().ok());  // detaching twice is harmless
}

}  // namespace
}  // namespace strata::env::dpdk
