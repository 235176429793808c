// dpdk backend with EAL on real hugepages and the PCI bus scanned.
//
// Needs a hugetlbfs mount with free 2 MiB pages (as root: ci/hugepages). Without them every test
// skips with a message, unless STRATA_REQUIRE_HUGEPAGES=1 (set by CI after ci/hugepages), which
// turns the skip into a failure so CI cannot silently stop testing hugepages.
//
// On the CI host (root, no IOMMU) DPDK picks IOVA mode PA: IOVAs are physical addresses and
// differ from virtual ones; with an IOMMU it would pick VA. The PCI bus is scanned, but no
// function is bound to vfio-pci here, so the PCI tests cover the error paths.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpdk/dpdk_memory.h"
#include "dpdk/dpdk_pci.h"
#include "dpdk/eal.h"

namespace strata::env::dpdk {
namespace {

long meminfo(const char* key) {
    std::ifstream f("/proc/meminfo");
    std::string k;
    long v = 0;
    std::string unit;
    while (f >> k >> v) {
        if (k == std::string(key) + ":") return v;
        std::getline(f, unit);
    }
    return -1;
}

bool hugetlbfs_mounted() {
    std::ifstream f("/proc/mounts");
    std::string dev, dir, type, rest;
    while (f >> dev >> dir >> type) {
        std::getline(f, rest);
        if (type == "hugetlbfs") return true;
    }
    return false;
}

// Empty when hugepages are usable, else why not.
std::string hugepages_missing() {
    if (!hugetlbfs_mounted()) return "no hugetlbfs mount";
    long free_pages = meminfo("HugePages_Free");
    if (free_pages < 8)
        return "fewer than 8 free hugepages (HugePages_Free=" + std::to_string(free_pages) + ")";
    return {};
}

class DpdkHugepages : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why = hugepages_missing();
        if (!why.empty()) {
            const char* req = getenv("STRATA_REQUIRE_HUGEPAGES");
            if (req != nullptr && std::string(req) == "1") {
                FAIL() << "STRATA_REQUIRE_HUGEPAGES=1 but " << why << " (run ci/hugepages as root)";
            }
            GTEST_SKIP() << "hugepages unavailable: " << why
                         << " (as root: ci/hugepages reserves them)";
        }
        EalOptions o;  // dynamic hugepage memory, PCI bus scanned, IOVA mode chosen by DPDK
        auto r = eal_init(o);
        ASSERT_TRUE(r.ok()) << r.error().message();
        info_ = *r;
    }

    EalInfo info_;
};

TEST_F(DpdkHugepages, EalRunsOnHugepagesWithThePciBus) {
    EXPECT_TRUE(info_.hugepages);
    EXPECT_TRUE(info_.pci);
    EXPECT_TRUE(info_.iova_mode == IovaMode::pa || info_.iova_mode == IovaMode::va);
    std::printf("EAL chose IOVA mode %s\n", iova_mode_name(info_.iova_mode));
}

TEST_F(DpdkHugepages, BuffersUpToAHugepageAreAlignedZeroedAndIovaContiguous) {
    std::vector<void*> live;
    // A buffer below 2 MiB may still straddle two hugepages; rte_malloc does not promise IOVA
    // contiguity in PA mode, so the backend checks and retries as a contiguous memzone.
    for (size_t size :
         {size_t{64}, size_t{4096}, size_t{100000}, size_t{1} << 20, size_t{2} << 20}) {
        for (size_t align : {size_t{64}, size_t{4096}, size_t{2} << 20}) {
            for (int rep = 0; rep < 3; ++rep) {
                auto b = dma_alloc(size, align, true);
                ASSERT_TRUE(b.ok()) << b.error().message();
                EXPECT_EQ(reinterpret_cast<uintptr_t>(b->addr) % align, 0u);
                auto* bytes = static_cast<uint8_t*>(b->addr);
                for (size_t i = 0; i < size; i += 511) ASSERT_EQ(bytes[i], 0) << i;
                auto segs = dpdk_iova_segments(b->addr, size);
                ASSERT_TRUE(segs.ok()) << segs.error().message();
                ASSERT_EQ(segs->size(), 1u) << "size " << size << " not IOVA-contiguous";
                EXPECT_EQ((*segs)[0].iova, b->iova);
                if (info_.iova_mode == IovaMode::pa) {
                    EXPECT_NE(b->iova, reinterpret_cast<uint64_t>(b->addr));
                } else {
                    EXPECT_EQ(b->iova, reinterpret_cast<uint64_t>(b->addr));
                }
                memset(b->addr, 0x5a, size);
                live.push_back(b->addr);
            }
        }
    }
    for (void* p : live) dma_free(p);
}

TEST_F(DpdkHugepages, BuffersBeyondAHugepageAreContiguousOrRefusedClearly) {
    for (size_t size : {size_t{3} << 20, size_t{5} << 20}) {
        auto b = dma_alloc(size, 4096, false);
        if (b.ok()) {
            auto segs = dpdk_iova_segments(b->addr, size);
            ASSERT_TRUE(segs.ok());
            EXPECT_EQ(segs->size(), 1u);
            dma_free(b->addr);
        } else {
            ASSERT_EQ(info_.iova_mode, IovaMode::pa) << b.error().message();
            EXPECT_EQ(b.code(), Errc::no_memory);
            EXPECT_NE(b.error().message().find("physically adjacent hugepages"), std::string::npos)
                << b.error().message();
        }
        // Without the contiguity demand the buffer always comes, in per-page IOVA pieces.
        auto loose = dma_alloc(size, 4096, true, -1, /*contiguous=*/false);
        ASSERT_TRUE(loose.ok()) << loose.error().message();
        auto segs = dpdk_iova_segments(loose->addr, size);
        ASSERT_TRUE(segs.ok());
        ASSERT_GE(segs->size(), 1u);
        EXPECT_EQ((*segs)[0].iova, loose->iova);
        size_t total = 0;
        for (const IovaSegment& s : *segs) {
            EXPECT_EQ(dpdk_virt2iova(reinterpret_cast<void*>(s.vaddr)), s.iova);
            total += s.len;
        }
        EXPECT_EQ(total, size);
        dma_free(loose->addr);
    }
}

TEST_F(DpdkHugepages, UserMemoryRegistrationFollowsTheIovaMode) {
    std::vector<uint8_t> user(64 * 1024);
    auto reg = register_user_memory(user.data(), user.size());
    if (info_.iova_mode == IovaMode::pa) {
        // No IOMMU: malloc'd pages have no stable physical address.
        ASSERT_FALSE(reg.ok());
        EXPECT_EQ(reg.code(), Errc::not_supported);
        EXPECT_NE(reg.error().message().find("IOVA mode PA"), std::string::npos);

        // DPDK memory can be registered; its IOVAs are DPDK's.
        auto b = dma_alloc(8192, 4096, false);
        ASSERT_TRUE(b.ok());
        auto r2 = register_user_memory(b->addr, 8192);
        ASSERT_TRUE(r2.ok()) << r2.error().message();
        ASSERT_EQ(r2->size(), 1u);
        EXPECT_EQ((*r2)[0].iova, b->iova);
        EXPECT_TRUE(unregister_user_memory(b->addr, 8192).ok());
        dma_free(b->addr);
    } else {
        ASSERT_TRUE(reg.ok()) << reg.error().message();
        EXPECT_EQ((*reg)[0].iova, reinterpret_cast<uint64_t>(user.data()));
        EXPECT_TRUE(unregister_user_memory(user.data(), user.size()).ok());
    }
}

TEST_F(DpdkHugepages, EnumerationListsOnlyVfioFunctionsCleanly) {
    auto all = pci_list(false);
    ASSERT_TRUE(all.ok()) << all.error().message();  // also checks the rte_pci_device layout
    for (const PciFunctionDesc& d : *all) {
        EXPECT_TRUE(canonical_bdf(d.bdf).ok()) << d.bdf;
        EXPECT_NE(d.vendor_id, 0u) << d.bdf;
    }
    auto vfio = pci_list(true);
    ASSERT_TRUE(vfio.ok()) << vfio.error().message();
    for (const PciFunctionDesc& d : *vfio) {
        EXPECT_TRUE(d.vfio) << d.bdf;
        EXPECT_EQ(d.kernel_driver, "vfio-pci") << d.bdf;
    }
    std::printf("%zu PCI functions, %zu bound to vfio-pci\n", all->size(), vfio->size());
}

TEST_F(DpdkHugepages, ClaimErrorsAreClear) {
    auto missing = DpdkPciDevice::claim("0000:7f:1f.7");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.code(), Errc::not_found);
    EXPECT_NE(missing.error().message().find("does not exist"), std::string::npos)
        << missing.error().message();

    auto junk = DpdkPciDevice::claim("nvme0");
    ASSERT_FALSE(junk.ok());
    EXPECT_EQ(junk.code(), Errc::invalid_argument);

    // A function that exists but is not bound to vfio-pci (if this host has one).
    auto all = pci_list(false);
    ASSERT_TRUE(all.ok());
    for (const PciFunctionDesc& d : *all) {
        if (d.vfio) continue;
        auto c = DpdkPciDevice::claim(d.bdf);
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.code(), Errc::not_supported);
        EXPECT_NE(c.error().message().find("not vfio-pci"), std::string::npos)
            << c.error().message();
        EXPECT_NE(c.error().message().find("dpdk-devbind.py --bind=vfio-pci " + d.bdf),
                  std::string::npos);
        break;
    }
    EXPECT_EQ(claimed_count(), 0u);
}

}  // namespace
}  // namespace strata::env::dpdk
