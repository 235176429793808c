// The env's public API on the dpdk backend (EAL --no-huge --no-pci): memory, translation across
// registrations, unregistered pointers, PCI errors, and the once-per-process rule seen through
// env::init. One EAL configuration per executable (ctest runs each test in its own process).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>

namespace strata::env {
namespace {

EnvOptions dpdk_options() {
    EnvOptions o;
    o.backend = "dpdk";
    o.dpdk.no_huge = true;
    o.dpdk.no_pci = true;
    o.dpdk.memory_mb = 64;
    return o;
}

class DpdkEnv : public ::testing::Test {
protected:
    void SetUp() override {
        auto r = init(dpdk_options());
        ASSERT_TRUE(r.ok()) << r.error().message();
        ASSERT_EQ(backend_name(), "dpdk");
    }
};

TEST_F(DpdkEnv, TheBackendIsInTheTableAndInitIsOncePerProcess) {
    auto names = backend_names();
    EXPECT_NE(std::find(names.begin(), names.end(), "dpdk"), names.end());
    EXPECT_TRUE(init(dpdk_options()).ok());  // same options: no-op

    EnvOptions other = dpdk_options();
    other.dpdk.memory_mb = 128;
    auto r = init(other);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::already_exists);

    EnvOptions sim;
    auto s = init(sim);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Errc::already_exists);
}

TEST_F(DpdkEnv, AllocIsAlignedZeroedAndTranslatesToItsIova) {
    for (size_t align : {size_t{64}, size_t{4096}, size_t{1} << 21}) {
        auto p = dma_alloc(3 * 4096 + 17, align, /*zeroed=*/true);
        ASSERT_TRUE(p.ok()) << p.error().message();
        auto addr = reinterpret_cast<uintptr_t>(*p);
        EXPECT_EQ(addr % align, 0u);
        auto* bytes = static_cast<const uint8_t*>(*p);
        for (size_t i = 0; i < 3 * 4096 + 17; ++i) ASSERT_EQ(bytes[i], 0);
        uint64_t iova = iova_of(*p);
        ASSERT_NE(iova, kInvalidIova);
        EXPECT_EQ(iova, addr);  // IOVA mode VA (forced by --no-huge)
        EXPECT_EQ(iova_of(static_cast<char*>(*p) + 100), iova + 100);
        auto segs = translate(*p, 3 * 4096 + 17);
        ASSERT_TRUE(segs.ok()) << segs.error().message();
        ASSERT_EQ(segs->size(), 1u);
        EXPECT_EQ((*segs)[0].iova, iova);
        dma_free(*p);
    }
    EXPECT_EQ(dma_region_count(), 0u);
}

TEST_F(DpdkEnv, TranslationAcrossRegistrationsAndUnregisteredPointers) {
    std::vector<uint8_t> a(8192), b(8192);
    ASSERT_TRUE(register_memory(a.data(), a.size()).ok());
    ASSERT_TRUE(register_memory(b.data(), b.size()).ok());
    EXPECT_EQ(iova_of(a.data() + 5), reinterpret_cast<uint64_t>(a.data() + 5));

    auto one = translate(a.data() + 100, 1000);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ((*one)[0].len, 1000u);

    // A DMA buffer and a registration: a range is never translated across the gap between them.
    auto buf = dma_alloc(4096, 4096, false);
    ASSERT_TRUE(buf.ok());
    EXPECT_NE(iova_of(*buf), kInvalidIova);

    std::vector<uint8_t> stray(64);
    EXPECT_EQ(iova_of(stray.data()), kInvalidIova);
    auto bad = translate(stray.data(), 64);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.code(), Errc::not_found);

    // Overlapping registration is refused.
    auto overlap = register_memory(a.data() + 4096, 100);
    ASSERT_FALSE(overlap.ok());
    EXPECT_EQ(overlap.code(), Errc::already_exists);

    ASSERT_TRUE(unregister_memory(a.data(), a.size()).ok());
    ASSERT_TRUE(unregister_memory(b.data(), b.size()).ok());
    EXPECT_EQ(iova_of(a.data()), kInvalidIova);
    dma_free(*buf);
    EXPECT_EQ(dma_region_count(), 0u);
}

TEST_F(DpdkEnv, PciIsAClearErrorWithNoPci) {
    auto list = enumerate();
    ASSERT_FALSE(list.ok());
    EXPECT_EQ(list.code(), Errc::not_supported);
    EXPECT_NE(list.error().message().find("no_pci"), std::string::npos);

    auto addr = PciAddress::parse("0000:01:00.0");
    ASSERT_TRUE(addr.ok());
    auto c = claim(*addr);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::not_supported);
}

TEST_F(DpdkEnv, BufferCacheWorksOnDpdkMemory) {
    DmaBufferCache cache(4096, 8, 4096, 4);
    void* p = cache.get();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(iova_of(p), reinterpret_cast<uint64_t>(p));
    cache.put(p);
}

}  // namespace
}  // namespace strata::env
