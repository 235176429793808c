#include <strata/base/assert.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace strata::detail {

void assert_fail(const char* expr, const char* file, int line, const char* fmt, ...) {
    std::fprintf(stderr, "%s:%d: assertion failed: %s", file, line, expr);
    if (fmt != nullptr && fmt[0] != '\0') {
        std::va_list ap;
        va_start(ap, fmt);
        char buf[512];
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (buf[0] != '\0') std::fprintf(stderr, ": %s", buf);
    }
    std::fputc('\n', stderr);
    std::fflush(stderr);
    std::abort();
}

}  // namespace strata::detail
