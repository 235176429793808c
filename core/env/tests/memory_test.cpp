// The memory API, per backend: every test body runs for each backend name in kBackends ("sim"
// here; the dpdk backend adds its name where EAL can run in the test process).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/iova_map.h>
#include <strata/env/memory.h>
#include <strata/env/translation_cache.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::env {
namespace {

// EAL initialises once per process, so the dpdk backend runs this file as its own executable
// (env_memory_dpdk_test, built with STRATA_ENV_MEMORY_TEST_DPDK: EAL --no-huge --no-pci; and
// env_memory_dpdk_hugepages_test, also with STRATA_ENV_MEMORY_TEST_DPDK_HUGEPAGES: real hugepages).
#ifdef STRATA_ENV_MEMORY_TEST_DPDK
std::vector<std::string> backends_under_test() { return {"dpdk"}; }
#else
std::vector<std::string> backends_under_test() { return {"sim"}; }
#endif

#ifdef STRATA_ENV_MEMORY_TEST_DPDK_HUGEPAGES
bool hugepages_usable() {
    FILE* m = fopen("/proc/mounts", "r");
    bool mounted = false;
    char line[512];
    while (m != nullptr && fgets(line, sizeof(line), m) != nullptr) {
        if (strstr(line, " hugetlbfs ") != nullptr) mounted = true;
    }
    if (m != nullptr) fclose(m);
    FILE* mi = fopen("/proc/meminfo", "r");
    long free_pages = 0;
    while (mi != nullptr && fgets(line, sizeof(line), mi) != nullptr) {
        sscanf(line, "HugePages_Free: %ld", &free_pages);
    }
    if (mi != nullptr) fclose(mi);
    return mounted && free_pages >= 8;
}
#endif

class MemoryTest : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        EnvOptions o;
        o.backend = GetParam();
        if (o.backend == "dpdk") {
            o.dpdk.no_pci = true;
#ifdef STRATA_ENV_MEMORY_TEST_DPDK_HUGEPAGES  // env_memory_dpdk_hugepages_test
            if (!hugepages_usable()) {
                if (const char* req = getenv("STRATA_REQUIRE_HUGEPAGES"); req && req[0] == '1') {
                    FAIL() << "STRATA_REQUIRE_HUGEPAGES=1 but no free hugepages (ci/hugepages)";
                }
                GTEST_SKIP() << "no free hugepages on a hugetlbfs mount (as root: ci/hugepages)";
            }
            // Hugepages with IOVA mode VA: production's mode behind an IOMMU. (Without an IOMMU
            // DPDK would pick PA, where user memory cannot be registered; dpdk_hugepages_test
            // covers that mode.)
            o.dpdk.iova_mode = IovaMode::va;
#else
            o.dpdk.no_huge = true;
            o.dpdk.memory_mb = 64;
#endif
        }
        auto r = init(o);
        ASSERT_TRUE(r.ok()) << r.error().message();
        regions_before_ = dma_region_count();
    }
    void TearDown() override {
        EXPECT_EQ(dma_region_count(), regions_before_) << "DMA regions leaked";
        if (GetParam() == "sim") fini();  // EAL cannot start twice: dpdk stays up
    }
    bool sim() const { return GetParam() == "sim"; }
    size_t regions_before_ = 0;
};

TEST_P(MemoryTest, AllocIsAlignedAndHasIova) {
    for (size_t align : {size_t{1}, size_t{64}, size_t{512}, size_t{4096}, size_t{65536},
                         size_t{2} << 20}) {
        auto b = dma_alloc(1000, align);
        ASSERT_TRUE(b.ok()) << b.error().message();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(*b) % align, 0u) << "align " << align;
        uint64_t iova = iova_of(*b);
        ASSERT_NE(iova, kInvalidIova);
        if (align <= 4096) {
            EXPECT_EQ(iova % align, 0u) << "IOVA keeps the alignment";
        }
        EXPECT_EQ(iova_of(static_cast<char*>(*b) + 999), iova + 999);
        dma_free(*b);
    }
}

TEST_P(MemoryTest, BadArgumentsAreClearErrors) {
    auto z = dma_alloc(0, 64);
    EXPECT_EQ(z.code(), Errc::invalid_argument);
    auto a = dma_alloc(64, 48);
    ASSERT_EQ(a.code(), Errc::invalid_argument);
    EXPECT_NE(a.error().message().find("power of two"), std::string::npos);
    int x = 0;
    EXPECT_EQ(register_memory(&x, 0).code(), Errc::invalid_argument);
    EXPECT_EQ(unregister_memory(&x, sizeof x).code(), Errc::not_found);
    dma_free(nullptr);  // ignored
}

TEST_P(MemoryTest, ZeroedAllocIsZero) {
    // Dirty some memory first so a recycled block would show.
    for (int round = 0; round < 4; ++round) {
        auto d = dma_alloc(64 * 1024, 4096, false);
        ASSERT_TRUE(d.ok());
        std::memset(*d, 0xa5, 64 * 1024);
        dma_free(*d);
        auto z = dma_alloc(64 * 1024, 4096, true);
        ASSERT_TRUE(z.ok());
        const auto* p = static_cast<const unsigned char*>(*z);
        size_t nonzero = 0;
        for (size_t i = 0; i < 64 * 1024; ++i) nonzero += p[i] != 0;
        EXPECT_EQ(nonzero, 0u);
        dma_free(*z);
    }
}

TEST_P(MemoryTest, TranslateAcrossRegistrations) {
    constexpr size_t kLen = 3 * 4096;
    alignas(4096) static unsigned char host[kLen];
    // Two adjacent registrations: [0, 4096 + 100) and [4096 + 100, kLen).
    ASSERT_TRUE(register_memory(host, 4096 + 100).ok());
    ASSERT_TRUE(register_memory(host + 4096 + 100, kLen - 4096 - 100).ok());

    auto segs = translate(host + 50, kLen - 100);
    ASSERT_TRUE(segs.ok()) << segs.error().message();
    size_t total = 0;
    const unsigned char* v = host + 50;
    for (const auto& s : *segs) {
        EXPECT_EQ(s.iova, iova_of(v)) << "segment starts where the pointer maps";
        total += s.len;
        v += s.len;
    }
    EXPECT_EQ(total, kLen - 100);
    if (sim()) {
        ASSERT_EQ(segs->size(), 2u) << "sim IOVA ranges of two registrations are never adjacent";
        EXPECT_EQ((*segs)[0].len, 4096u + 100 - 50);
    }
    // Inside one registration: one segment.
    auto one = translate(host + 10, 100);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->size(), 1u);

    // Data-path form with a too-small array.
    IovaSegment out[1];
    size_t n = 0;
    Status st = translate(host + 50, kLen - 100, out, &n);
    if (sim()) {
        EXPECT_EQ(st.code(), Errc::no_space);
        EXPECT_EQ(n, 1u);
    }
    EXPECT_EQ(register_memory(host + 100, 10).code(), Errc::already_exists);
    ASSERT_TRUE(unregister_memory(host, 4096 + 100).ok());
    // Now the first part is unmapped: a clear error, never a guess.
    auto gone = translate(host + 50, kLen - 100);
    ASSERT_EQ(gone.code(), Errc::not_found);
    EXPECT_NE(gone.error().message().find("not DMA memory"), std::string::npos);
    ASSERT_TRUE(unregister_memory(host + 4096 + 100, kLen - 4096 - 100).ok());
}

// The data path's last-translation cache gives what translate() gives, and a registration
// change anywhere in the Host (here: the cached region unregistered and its range registered
// again, at another IOVA) is never answered from the cache.
TEST_P(MemoryTest, TranslationCacheFollowsTheMap) {
    constexpr size_t kLen = 2 * 4096;
    alignas(4096) static unsigned char host[kLen];
    ASSERT_TRUE(register_memory(host, kLen).ok());
    TranslationCache cache;
    IovaSegment out[4];
    size_t n = 0;
    for (int round = 0; round < 2; ++round) {  // a miss that fills the cache, then a hit
        ASSERT_TRUE(translate(host + 100, 4096, out, &n, cache).ok());
        ASSERT_EQ(n, 1u);
        EXPECT_EQ(out[0].iova, iova_of(host + 100));
        EXPECT_EQ(out[0].len, 4096u);
    }
    // Past the region's end: not found, as without the cache.
    EXPECT_EQ(translate(host + 100, kLen, out, &n, cache).code(), Errc::not_found);
    TranslationCache dma;
    EXPECT_TRUE(is_dma_memory(host + 100, 4096, dma));
    EXPECT_TRUE(is_dma_memory(host + 100, 4096, dma));  // from the cache
    EXPECT_FALSE(is_dma_memory(host + 100, kLen, dma)) << "the last byte is past the region";
    const uint64_t before = iova_of(host);
    ASSERT_TRUE(unregister_memory(host, kLen).ok());
    EXPECT_EQ(translate(host + 100, 4096, out, &n, cache).code(), Errc::not_found)
        << "an unregistered region answered from the cache";
    EXPECT_FALSE(is_dma_memory(host + 100, 4096, dma)) << "answered from the cache";
    auto other = dma_alloc(4096, 4096);  // moves the sim's IOVA allocator on
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(register_memory(host, kLen).ok());
    ASSERT_TRUE(translate(host + 100, 4096, out, &n, cache).ok());
    EXPECT_EQ(out[0].iova, iova_of(host + 100));
    if (sim()) {
        EXPECT_NE(iova_of(host), before) << "the re-registration kept its IOVA: weak test";
    }
    ASSERT_TRUE(unregister_memory(host, kLen).ok());
    dma_free(*other);
}

TEST_P(MemoryTest, UnregisteredPointerIsNotFound) {
    int on_stack[16] = {};
    EXPECT_EQ(iova_of(on_stack), kInvalidIova);
    auto r = translate(on_stack, sizeof on_stack);
    ASSERT_EQ(r.code(), Errc::not_found);
    EXPECT_NE(r.error().message().find("offset 0x0"), std::string::npos) << r.error().message();
    // A range running past the end of a buffer fails too.
    auto b = dma_alloc(4096, 4096);
    ASSERT_TRUE(b.ok());
    auto past = translate(*b, 4097);
    ASSERT_EQ(past.code(), Errc::not_found);
    EXPECT_NE(past.error().message().find("offset 0x1000"), std::string::npos)
        << past.error().message();
    dma_free(*b);
    EXPECT_EQ(iova_of(*b), kInvalidIova) << "freed memory is no longer mapped";
}

TEST_P(MemoryTest, SimIovaDiffersFromVirtualAddress) {
    if (!sim()) GTEST_SKIP() << "only the sim backend guarantees IOVA != VA";
    auto b = dma_alloc(8192, 4096);
    ASSERT_TRUE(b.ok());
    uint64_t iova = iova_of(*b);
    EXPECT_NE(iova, reinterpret_cast<uintptr_t>(*b));
    EXPECT_GE(iova, 0x10'0000'0000ULL);
    // The IOVA is not itself a mapped virtual address, and the pointer is no mapped IOVA.
    backend::Region r;
    EXPECT_FALSE(backend::iova_map().find_iova(reinterpret_cast<uintptr_t>(*b), &r));
    ASSERT_TRUE(backend::iova_map().find_iova(iova + 100, &r));
    EXPECT_EQ(r.vaddr, reinterpret_cast<uintptr_t>(*b));
    dma_free(*b);
}

TEST_P(MemoryTest, ManyRegionsLookup) {
    std::vector<void*> bufs;
    for (int i = 0; i < 200; ++i) {
        auto b = dma_alloc(512 + i, 64);
        ASSERT_TRUE(b.ok());
        bufs.push_back(*b);
    }
    std::vector<uint64_t> iovas;
    for (void* b : bufs) iovas.push_back(iova_of(b));
    for (size_t i = 0; i < bufs.size(); ++i) {
        EXPECT_EQ(iova_of(static_cast<char*>(bufs[i]) + 511), iovas[i] + 511);
        backend::Region r;
        ASSERT_TRUE(backend::iova_map().find_iova(iovas[i] + 3, &r));
        EXPECT_EQ(r.vaddr, reinterpret_cast<uintptr_t>(bufs[i]));
    }
    for (size_t i = 0; i < bufs.size(); i += 2) dma_free(bufs[i]);
    for (size_t i = 1; i < bufs.size(); i += 2) EXPECT_EQ(iova_of(bufs[i]), iovas[i]);
    for (size_t i = 1; i < bufs.size(); i += 2) dma_free(bufs[i]);
}

using MemoryDeathTest = MemoryTest;

TEST_P(MemoryDeathTest, DoubleFreeIsDetected) {
    // Always-on assertion (a programmer error), so this also runs in release builds.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto b = dma_alloc(256, 64);
    ASSERT_TRUE(b.ok());
    void* p = *b;
    dma_free(p);
    EXPECT_DEATH(dma_free(p), "not a live dma_alloc buffer");
    int x;
    EXPECT_DEATH(dma_free(&x), "not a live dma_alloc buffer");
}

INSTANTIATE_TEST_SUITE_P(Backends, MemoryTest, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Backends, MemoryDeathTest, ::testing::ValuesIn(backends_under_test()),
                         [](const auto& info) { return info.param; });

#ifndef STRATA_ENV_MEMORY_TEST_DPDK  // the cache tests run on sim only
// --- the per-Thread buffer cache ---

class DmaCacheTest : public runtime::testing::SimFixture {
protected:
    void TearDown() override {
        SimFixture::TearDown();
        EXPECT_EQ(dma_region_count(), 0u);
        fini();
    }
};

TEST_F(DmaCacheTest, GetPutStaysOnOwningThread) {
    start_sim(7, 2);
    std::unique_ptr<DmaBufferCache> cache;
    on(threads[0], [&] { cache = std::make_unique<DmaBufferCache>(4096, 4, 4096, 2); });
    EXPECT_EQ(cache->owner(), threads[0]);
    EXPECT_EQ(cache->cached(), 2u);
    std::vector<void*> out;
    on(threads[0], [&] {
        for (int i = 0; i < 6; ++i) out.push_back(cache->get());  // 2 cached + 4 allocated
    });
    EXPECT_EQ(cache->cached(), 0u);
    for (void* b : out) {
        ASSERT_NE(b, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 4096, 0u);
        EXPECT_NE(iova_of(b), kInvalidIova);
    }
    EXPECT_EQ(dma_region_count(), 6u);
    on(threads[0], [&] {
        for (void* b : out) cache->put(b);  // 4 kept, 2 freed
    });
    EXPECT_EQ(cache->cached(), 4u);
    EXPECT_EQ(dma_region_count(), 4u);
    // Reuse: the next get returns a cached buffer, no new region.
    void* again = nullptr;
    on(threads[0], [&] { again = cache->get(); });
    EXPECT_EQ(dma_region_count(), 4u);
    on(threads[0], [&] { cache->put(again); });
    on(threads[0], [&] { cache.reset(); });
}

TEST_F(DmaCacheTest, UseFromAnotherThreadIsCaught) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    start_sim(7, 2);
    std::unique_ptr<DmaBufferCache> cache;
    on(threads[0], [&] { cache = std::make_unique<DmaBufferCache>(512, 2); });
    EXPECT_DEATH(on(threads[1], [&] { (void)cache->get(); }), "does not own it");
    on(threads[0], [&] { cache.reset(); });
}

#endif  // STRATA_ENV_MEMORY_TEST_DPDK

}  // namespace
}  // namespace strata::env
