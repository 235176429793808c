// The IOVA map on its own: lookups by address and IOVA, overlap refusal, and lock-free readers
// on several OS threads while a writer inserts and erases (label tsan).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include <strata/env/iova_map.h>

namespace strata::env::backend {
namespace {

TEST(IovaMap, InsertFindEraseAndOverlaps) {
    IovaMap map;
    ASSERT_TRUE(map.insert({0x10000, 0x900000, 0x1000}).ok());
    ASSERT_TRUE(map.insert({0x20000, 0x800000, 0x2000}).ok());
    EXPECT_EQ(map.iova_of(0x10010), 0x900010u);
    EXPECT_EQ(map.iova_of(0x21fff), 0x801fffu);
    EXPECT_EQ(map.iova_of(0x22000), kInvalidIova);
    EXPECT_EQ(map.iova_of(0xffff), kInvalidIova);
    Region r;
    ASSERT_TRUE(map.find_iova(0x800100, &r));
    EXPECT_EQ(r.vaddr, 0x20000u);
    EXPECT_FALSE(map.find_iova(0x802000, &r));
    EXPECT_EQ(map.insert({0x10800, 0x700000, 0x1000}).code(), Errc::already_exists);
    EXPECT_EQ(map.insert({0x30000, 0x900800, 0x1000}).code(), Errc::already_exists);
    EXPECT_EQ(map.insert({0x30000, 0x100000, 0}).code(), Errc::invalid_argument);
    EXPECT_EQ(map.erase(0x10001).code(), Errc::not_found);
    ASSERT_TRUE(map.erase(0x10000).ok());
    EXPECT_EQ(map.iova_of(0x10010), kInvalidIova);
    EXPECT_EQ(map.size(), 1u);
}

TEST(IovaMap, TranslateMergesAdjacentIovas) {
    IovaMap map;
    // Virtually and IOVA-adjacent (as dpdk in IOVA mode va): one segment.
    ASSERT_TRUE(map.insert({0x10000, 0x10000, 0x1000}).ok());
    ASSERT_TRUE(map.insert({0x11000, 0x11000, 0x1000}).ok());
    // Virtually adjacent only: a second segment.
    ASSERT_TRUE(map.insert({0x12000, 0x50000, 0x1000}).ok());
    IovaSegment segs[4];
    size_t n = 0;
    uintptr_t fault = 0;
    ASSERT_TRUE(map.translate(0x10800, 0x2000, segs, &n, &fault).ok());
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(segs[0], (IovaSegment{0x10800, 0x1800}));
    EXPECT_EQ(segs[1], (IovaSegment{0x50000, 0x800}));
    Status s = map.translate(0x12800, 0x1000, segs, &n, &fault);
    EXPECT_EQ(s.code(), Errc::not_found);
    EXPECT_EQ(fault, 0x13000u);
}

TEST(IovaMap, ConcurrentReadersDuringUpdates) {
    IovaMap map;
    // Stable regions the readers check; churn regions the writer adds and removes.
    for (uintptr_t i = 0; i < 32; ++i)
        ASSERT_TRUE(map.insert({0x100000 + i * 0x10000, 0x40000000 + i * 0x10000, 0x8000}).ok());
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> errors{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
        readers.emplace_back([&, t] {
            uint64_t k = t;
            while (!stop.load(std::memory_order_relaxed)) {
                uintptr_t i = (k * 7) % 32;
                uintptr_t v = 0x100000 + i * 0x10000 + (k % 0x8000);
                if (map.iova_of(v) != 0x40000000 + i * 0x10000 + (k % 0x8000)) ++errors;
                Region r;
                if (!map.find_iova(0x40000000 + i * 0x10000 + 5, &r) ||
                    r.vaddr != 0x100000 + i * 0x10000)
                    ++errors;
                ++k;
            }
        });
    }
    for (int round = 0; round < 2000; ++round) {
        uintptr_t v = 0x100000 + (round % 32) * 0x10000 + 0x8000;  // the gaps between stable ones
        ASSERT_TRUE(map.insert({v, 0x80000000 + round * 0x10000ull, 0x4000}).ok());
        ASSERT_TRUE(map.erase(v).ok());
    }
    stop = true;
    for (auto& th : readers) th.join();
    EXPECT_EQ(errors.load(), 0u);
    EXPECT_EQ(map.size(), 32u);
}

}  // namespace
}  // namespace strata::env::backend
