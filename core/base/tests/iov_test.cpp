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

}  // namespace
}  // namespace strata
