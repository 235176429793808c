#include <strata/base/mpsc_ring.h>

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace strata {
namespace {

struct Item {
    uint32_t producer;
    uint32_t seq;
};

TEST(MpscRing, FifoAndFull) {
    MpscRing<Item> ring(8);
    EXPECT_EQ(ring.capacity(), 8u);
    Item out{};
    EXPECT_FALSE(ring.pop(out));
    for (uint32_t i = 0; i < 8; ++i) EXPECT_TRUE(ring.push({0, i}));
    EXPECT_FALSE(ring.push({0, 99}));
    EXPECT_EQ(ring.size_approx(), 8u);
    for (uint32_t i = 0; i < 8; ++i) {
        ASSERT_TRUE(ring.pop(out));
        EXPECT_EQ(out.seq, i);
    }
    EXPECT_FALSE(ring.ready());
    // Wraps around many times.
    for (uint32_t i = 0; i < 100; ++i) {
        EXPECT_TRUE(ring.push({1, i}));
        ASSERT_TRUE(ring.pop(out));
        EXPECT_EQ(out.seq, i);
    }
}

TEST(MpscRingDeathTest, CapacityMustBePowerOfTwo) {
    EXPECT_DEATH(MpscRing<Item> ring(6), "power of two");
}

}  // namespace
}  // namespace strata
