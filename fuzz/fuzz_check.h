// CHECK(c) for fuzz targets: an invariant whose violation aborts (the fuzzer's crash) and names
// the line. Always on, unlike assert().
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHECK(c)                                                                       \
    do {                                                                               \
        if (!(c)) {                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); \
            std::abort();                                                              \
        }                                                                              \
    } while (0)
