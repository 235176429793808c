#include <strata/base/status.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

// Counts heap allocations made by this test binary, for the allocation-free Result check.
namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace
void* operator new(size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace strata {
namespace {

Result<int> parse_positive(int v) {
    if (v <= 0) return Error(Errc::invalid_argument, "value must be positive");
    return v;
}

Result<int> doubled(int v) {
    auto r = parse_positive(v);
    STRATA_TRY(r);
    return *r * 2;
}

TEST(Status, DefaultIsOk) {
    Status s;
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(s.name(), "ok");
}

TEST(Status, CarriesNameMessageAndContext) {
    Status s(Errc::io_error, "media");
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s, Errc::io_error);
    EXPECT_EQ(s.to_string(), "io_error: I/O error (media)");
    EXPECT_EQ(errc_to_errno(Errc::not_found), ENOENT);
}

TEST(Status, EveryCodeHasAName) {
    for (int i = 0; i < static_cast<int>(Errc::count_); ++i) {
        EXPECT_NE(errc_name(static_cast<Errc>(i)), "unknown") << i;
        EXPECT_FALSE(errc_message(static_cast<Errc>(i)).empty()) << i;
    }
    EXPECT_EQ(errc_name(static_cast<Errc>(999)), "unknown");
}

TEST(Result, ValueAndErrorPaths) {
    auto ok = doubled(4);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(*ok, 8);
    auto bad = doubled(-1);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.code(), Errc::invalid_argument);
    EXPECT_EQ(bad.error().message(), "value must be positive");
    EXPECT_EQ(bad.error().to_string(), "invalid_argument: value must be positive");
}

TEST(Result, VoidResultFromStatus) {
    Result<void> ok = Status::success();
    EXPECT_TRUE(ok.ok());
    Result<void> bad = Status(Errc::timeout);
    EXPECT_EQ(bad.code(), Errc::timeout);
}

// The data path returns Result<T> built from a Status (a socket read that would block, on every
// poll): that must not allocate, even with a context longer than the small-string buffer.
Result<size_t> would_block() noexcept {
    return Status(Errc::busy, "would block: nothing to read on this socket yet");
}

TEST(Result, FromStatusAllocatesNothingUntilTheMessageIsRead) {
    uint64_t before = g_allocations.load();
    for (int i = 0; i < 100; ++i) {
        auto r = would_block();
        EXPECT_EQ(r.code(), Errc::busy);
    }
    EXPECT_EQ(g_allocations.load(), before);
    auto r = would_block();
    EXPECT_EQ(r.error().message(),
              "busy: resource temporarily unavailable (would block: nothing to read on this socket yet)");
    EXPECT_EQ(r.error().to_string(), "busy: " + r.error().message());
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
    auto bad = parse_positive(0);
    EXPECT_DEATH((void)bad.value(), "value must be positive");
}

}  // namespace
}  // namespace strata
