#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <strata/hwemu/media/block_store.h>
#include <strata/hwemu/media/write_cache.h>

namespace strata::hwemu {
namespace {

std::vector<uint8_t> bytes(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }

void exercise_store(BlockStore& s) {
    std::vector<uint8_t> buf(8192, 0xEE);
    ASSERT_TRUE(s.read(4096, buf.data(), buf.size()).ok());
    EXPECT_EQ(buf, bytes(8192, 0)) << "never-written ranges read as zeroes";
    auto w = bytes(100000, 0x5A);
    ASSERT_TRUE(s.write(1000, w.data(), w.size()).ok());
    std::vector<uint8_t> r(100000);
    ASSERT_TRUE(s.read(1000, r.data(), r.size()).ok());
    EXPECT_EQ(r, w);
    ASSERT_TRUE(s.deallocate(65536, 65536).ok());
    std::vector<uint8_t> z(65536);
    ASSERT_TRUE(s.read(65536, z.data(), z.size()).ok());
    EXPECT_EQ(z, bytes(65536, 0));
    ASSERT_TRUE(s.read(1000, r.data(), 1000).ok());
    EXPECT_EQ(r[999], 0x5A);
    EXPECT_EQ(s.read(s.size_bytes() - 10, buf.data(), 11).code(), Errc::out_of_range);
    EXPECT_EQ(s.write(UINT64_MAX - 5, buf.data(), 10).code(), Errc::out_of_range);
    EXPECT_EQ(s.deallocate(s.size_bytes(), 1).code(), Errc::out_of_range);
}

TEST(BlockStore, RamIsSparse) {
    auto s = make_ram_store(uint64_t{1} << 30);
    EXPECT_EQ(s->allocated_bytes(), 0u);
    exercise_store(*s);
    EXPECT_LT(s->allocated_bytes(), 1u << 20);
}

TEST(BlockStore, SparseFile) {
    char path[] = "/tmp/strata_media_XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    {
        auto s = open_file_store(path, uint64_t{1} << 30, true);
        ASSERT_TRUE(s.ok()) << s.error().message();
        exercise_store(**s);
        EXPECT_LT((*s)->allocated_bytes(), 4u << 20);
        EXPECT_TRUE((*s)->sync().ok());
    }
    auto reopened = open_file_store(path, uint64_t{1} << 30, false);
    ASSERT_TRUE(reopened.ok());
    std::vector<uint8_t> r(10);
    ASSERT_TRUE((*reopened)->read(1000, r.data(), r.size()).ok());
    EXPECT_EQ(r, bytes(10, 0x5A)) << "data persists in the file";
    unlink(path);
    EXPECT_FALSE(open_file_store("/nonexistent/dir/file", 4096, true).ok());
}

class CacheTest : public ::testing::Test {
protected:
    CachedMedia m{make_ram_store(1 << 20), 512};
    Prng prng{7};
    std::vector<uint8_t> read(uint64_t off, size_t len) {
        std::vector<uint8_t> r(len);
        EXPECT_TRUE(m.read(off, r.data(), len).ok());
        return r;
    }
    std::vector<uint8_t> durable(uint64_t off, size_t len) {
        std::vector<uint8_t> r(len);
        EXPECT_TRUE(m.store().read(off, r.data(), len).ok());
        return r;
    }
};

TEST_F(CacheTest, ReadYourWritesFlushAndFua) {
    auto a = bytes(1024, 1);
    ASSERT_TRUE(m.write(0, a.data(), a.size(), false).ok());
    EXPECT_EQ(read(0, 1024), a);
    EXPECT_EQ(durable(0, 1024), bytes(1024, 0));
    EXPECT_EQ(m.dirty_bytes(), 1024u);
    ASSERT_TRUE(m.flush().ok());
    EXPECT_EQ(durable(0, 1024), a);
    EXPECT_EQ(m.dirty_bytes(), 0u);
    auto b = bytes(512, 2);
    ASSERT_TRUE(m.write(512, b.data(), b.size(), false).ok());
    auto c = bytes(512, 3);
    ASSERT_TRUE(m.write(512, c.data(), c.size(), true).ok());  // FUA supersedes the cached copy
    EXPECT_EQ(durable(512, 512), c);
    EXPECT_EQ(read(512, 512), c);
    m.power_cut(false, prng);
    EXPECT_EQ(read(512, 512), c);
    EXPECT_EQ(m.write(1, a.data(), 512, false).code(), Errc::invalid_argument);
    EXPECT_EQ(m.write(1 << 20, a.data(), 512, false).code(), Errc::out_of_range);
}

TEST_F(CacheTest, PowerCutLosesUnflushed) {
    auto a = bytes(4096, 9);
    ASSERT_TRUE(m.write(8192, a.data(), a.size(), false).ok());
    m.power_cut(false, prng);
    EXPECT_EQ(read(8192, 4096), bytes(4096, 0));
    EXPECT_EQ(m.stats().lost_writes, 1u);
    EXPECT_EQ(m.dirty_bytes(), 0u);
}

TEST_F(CacheTest, TornWritesKeepWholeSectorPrefixes) {
    int torn = 0;
    for (int round = 0; round < 50; ++round) {
        CachedMedia media(make_ram_store(1 << 20), 512);
        auto a = bytes(8 * 512, static_cast<uint8_t>(round + 1));
        ASSERT_TRUE(media.write(0, a.data(), a.size(), false).ok());
        media.power_cut(true, prng);
        std::vector<uint8_t> r(8 * 512);
        ASSERT_TRUE(media.read(0, r.data(), r.size()).ok());
        // A prefix of whole sectors has the new data, the rest is old (zeroes).
        size_t kept = 0;
        while (kept < 8 && r[kept * 512] == a[0]) ++kept;
        for (size_t i = 0; i < r.size(); ++i)
            ASSERT_EQ(r[i], i < kept * 512 ? a[0] : 0) << "round " << round << " byte " << i;
        if (kept > 0 && kept < 8) ++torn;
    }
    EXPECT_GT(torn, 10);
}

TEST_F(CacheTest, CacheDisabledWritesThroughAndDirtyCapFlushes) {
    m.set_cache_enabled(false);
    auto a = bytes(512, 4);
    ASSERT_TRUE(m.write(0, a.data(), a.size(), false).ok());
    EXPECT_EQ(durable(0, 512), a);
    CachedMedia capped(make_ram_store(1 << 20), 512, true, 2048);
    auto big = bytes(4096, 5);
    ASSERT_TRUE(capped.write(0, big.data(), big.size(), false).ok());
    EXPECT_EQ(capped.stats().forced_flushes, 1u);
    EXPECT_EQ(capped.dirty_bytes(), 0u);
    // Enabling again then disabling flushes what is cached.
    m.set_cache_enabled(true);
    auto b = bytes(512, 6);
    ASSERT_TRUE(m.write(512, b.data(), b.size(), false).ok());
    m.set_cache_enabled(false);
    EXPECT_EQ(durable(512, 512), b);
}

TEST_F(CacheTest, DeallocateDropsCachedCopies) {
    auto a = bytes(1024, 7);
    ASSERT_TRUE(m.write(0, a.data(), a.size(), false).ok());
    ASSERT_TRUE(m.deallocate(0, 512).ok());
    auto r = read(0, 1024);
    EXPECT_EQ(r[0], 0);
    EXPECT_EQ(r[512], 7);
}

}  // namespace
}  // namespace strata::hwemu
