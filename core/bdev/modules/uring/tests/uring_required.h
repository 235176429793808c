// Why the uring tests cannot run here, for their GTEST_SKIP. With STRATA_REQUIRE_URING=1 (ci/test
// sets it where its probe finds io_uring working) the reason is also recorded as a test failure:
// CI must not pass with the module untested because a later kernel or container policy turned
// io_uring off. Same rule as STRATA_REQUIRE_HUGEPAGES for the dpdk tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "uring/uring.h"

namespace strata::bdev::testing {

inline bool uring_required() {
    const char* v = std::getenv("STRATA_REQUIRE_URING");
    return v != nullptr && v[0] == '1';
}

// A fatal failure (FAIL() returns from this helper only): after it gtest runs neither the rest of
// SetUp nor the test body, which a non-fatal one would let run on a fixture never set up.
inline void fail_required(const std::string& why) {
    FAIL() << "STRATA_REQUIRE_URING=1 but " << why;
}

// "" when io_uring works. Otherwise the reason; under STRATA_REQUIRE_URING=1 a fatal failure is
// recorded first, so the caller's GTEST_SKIP leaves the test failed (gtest: a failed test is not
// skipped, and ctest sees no "[  SKIPPED ]" line for it).
inline std::string uring_skip_reason() {
    std::string why = uring_unavailable_reason();
    if (!why.empty() && uring_required()) fail_required(why);
    return why;
}

}  // namespace strata::bdev::testing
