#include <strata/base/object_pool.h>

#include <gtest/gtest.h>

#include <set>

namespace strata {
namespace {

struct Request {
    int tag = 0;
};

TEST(ObjectPool, HandsOutEveryObjectOnceThenRefuses) {
    ObjectPool<Request> pool(8);
    std::set<Request*> seen;
    for (int i = 0; i < 8; ++i) {
        Request* r = pool.get();
        ASSERT_NE(r, nullptr);
        EXPECT_TRUE(seen.insert(r).second);
    }
    EXPECT_EQ(pool.get(), nullptr);
    EXPECT_EQ(pool.outstanding(), 8u);
    for (auto* r : seen) pool.put(r);
    EXPECT_EQ(pool.available(), 8u);
}

TEST(ObjectPool, IndexRoundTrip) {
    ObjectPool<Request> pool(4);
    Request* r = pool.get();
    size_t idx = pool.index_of(r);
    EXPECT_EQ(&pool.at(idx), r);
    EXPECT_TRUE(pool.in_use(idx));
    pool.put(r);
    EXPECT_FALSE(pool.in_use(idx));
}

TEST(ObjectPoolDeathTest, DoublePutAborts) {
    ObjectPool<Request> pool(2);
    Request* r = pool.get();
    pool.put(r);
    EXPECT_DEATH(pool.put(r), "twice");
}

TEST(ObjectPoolDeathTest, ForeignObjectAborts) {
    ObjectPool<Request> pool(2);
    Request other;
    EXPECT_DEATH(pool.put(&other), "does not belong");
}

}  // namespace
}  // namespace strata
