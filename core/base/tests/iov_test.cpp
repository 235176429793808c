#include <gtest/gtest.h>

#include <strata/base/iov.h>

namespace strata {
namespace {

TEST(IovCursor, CopyAcrossIovecsAndStopWhenFull) {
    uint8_t a[3] = {}, b[0 + 1] = {}, c[4] = {};
    iovec v[3] = {{a, 3}, {b, 0}, {c, 4}};
    IovCursor cur;
    cur.reset(v, 3);
    const uint8_t src[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    EXPECT_EQ(cur.copy_in(src, 2), 2u);
    iovec rem[4];
    ASSERT_EQ(cur.remaining(rem, 4, 100), 3u);  // the empty iovec is listed with length 0
    EXPECT_EQ(rem[0].iov_len, 1u);
    EXPECT_EQ(cur.copy_in(src + 2, 8), 5u);  // only 5 bytes of room left
    EXPECT_EQ(a[2], 3);
    EXPECT_EQ(c[0], 4);
    EXPECT_EQ(c[3], 7);
    EXPECT_EQ(cur.remaining(rem, 4, 100), 0u);
}

TEST(IovCursor, AdvanceVisitsPlacedBytes) {
    uint8_t a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    iovec v[2] = {{a, 4}, {b, 4}};
    IovCursor cur;
    cur.reset(v, 2);
    int sum = 0;
    EXPECT_EQ(cur.advance(6, [&](const uint8_t* p, size_t n) {
        for (size_t i = 0; i < n; ++i) sum += p[i];
    }), 6u);
    EXPECT_EQ(sum, 21);
    iovec rem[2];
    ASSERT_EQ(cur.remaining(rem, 2, 1), 1u);
    EXPECT_EQ(rem[0].iov_base, b + 2);
    EXPECT_EQ(rem[0].iov_len, 1u);
}

TEST(DataDestination, CopiesPlacesAndDigestsEveryByte) {
    const uint8_t src[9] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
    uint8_t a[4] = {}, b[5] = {};
    iovec v[2] = {{a, 4}, {b, 5}};
    DataDestination d;
    d.start(true);
    EXPECT_FALSE(d.chosen());
    d.set(v, 2);
    EXPECT_TRUE(d.placing());
    d.copy_in(src, 3);
    iovec rem[2];
    ASSERT_EQ(d.remaining(rem, 2, 100), 2u);
    std::memcpy(rem[0].iov_base, src + 3, 1);  // the caller reads straight into the destination
    std::memcpy(rem[1].iov_base, src + 4, 2);
    d.placed(3);
    d.copy_in(src + 6, 3);
    EXPECT_EQ(std::memcmp(a, src, 4), 0);
    EXPECT_EQ(std::memcmp(b, src + 4, 5), 0);
    EXPECT_EQ(d.crc(), 0xE3069283u);  // crc32c("123456789")
    d.clear();
    EXPECT_FALSE(d.chosen());
}

TEST(DataDestination, DiscardStillDigestsAndDigestOffLeavesZero) {
    const uint8_t src[9] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
    DataDestination d;
    d.start(true);
    d.discard();
    EXPECT_TRUE(d.chosen());
    EXPECT_FALSE(d.placing());
    d.copy_in(src, 5);
    d.digest_only(src + 5, 4);
    EXPECT_EQ(d.crc(), 0xE3069283u);
    d.start(false);
    uint8_t a[9] = {};
    iovec v{a, 9};
    d.set(&v, 1);
    d.copy_in(src, 9);
    EXPECT_EQ(d.crc(), 0u);
    EXPECT_EQ(a[8], '9');
}

}  // namespace
}  // namespace strata
