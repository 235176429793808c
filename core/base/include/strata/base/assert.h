// Always-on assertions for programmer invariants. Device, network and RPC input is never
// asserted on: it gets an error status, a counter and a log line instead.
#pragma once

namespace strata::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
}  // namespace strata::detail

#define STRATA_LIKELY(x) __builtin_expect(!!(x), 1)
#define STRATA_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define STRATA_ASSERT(cond)                                                        \
    do {                                                                           \
        if (STRATA_UNLIKELY(!(cond)))                                              \
            ::strata::detail::assert_fail(#cond, __FILE__, __LINE__, "%s", "");    \
    } while (0)

#define STRATA_ASSERT_MSG(cond, ...)                                               \
    do {                                                                           \
        if (STRATA_UNLIKELY(!(cond)))                                              \
            ::strata::detail::assert_fail(#cond, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define STRATA_PANIC(...) ::strata::detail::assert_fail("panic", __FILE__, __LINE__, __VA_ARGS__)

#ifndef NDEBUG
#define STRATA_DEBUG_ASSERT(cond) STRATA_ASSERT(cond)
#else
#define STRATA_DEBUG_ASSERT(cond) ((void)0)
#endif
