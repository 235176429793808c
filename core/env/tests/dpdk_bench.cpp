// strata-env-dpdk-bench: cost of the dpdk backend's memory primitives, printed as figures.
//
//   strata-env-dpdk-bench [--no-huge] [--iterations N]
//
// Without --no-huge EAL runs on hugepages (reserve them first: ci/hugepages). Prints ns per
// DMA buffer alloc+free (4 KiB and 64 KiB, plain and zeroed) and ns per IOVA lookup in DPDK's
// memory (the memseg lookup the backend uses when it enters a buffer in the env's IOVA map).
// Translation on the data path is the env's shared IOVA map, measured by the env's own bench.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <strata/runtime/clock.h>

#include "dpdk/dpdk_memory.h"
#include "dpdk/eal.h"

using namespace strata::env::dpdk;

namespace {

template <class F>
double ns_per_op(uint64_t n, F&& f) {
    strata::runtime::RealClock clock;
    uint64_t t0 = clock.now_ns();
    for (uint64_t i = 0; i < n; ++i) f(i);
    return static_cast<double>(clock.now_ns() - t0) / static_cast<double>(n);
}

int usage(const char* msg) {
    std::fprintf(stderr,
                 "strata-env-dpdk-bench: %s\nusage: strata-env-dpdk-bench [--no-huge] "
                 "[--iterations N]\n",
                 msg);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    EalOptions options;
    options.no_pci = true;
    uint64_t iterations = 200000;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--no-huge") {
            options.no_huge = true;
            options.memory_mb = 256;
        } else if (a == "--iterations" && i + 1 < argc) {
            char* end = nullptr;
            iterations = std::strtoull(argv[++i], &end, 10);
            if (end == nullptr || *end != '\0' || iterations == 0) return usage("bad --iterations");
        } else {
            return usage(("unknown argument '" + a + "'").c_str());
        }
    }
    auto info = eal_init(options);
    if (!info.ok()) {
        std::fprintf(stderr, "strata-env-dpdk-bench: %s\n", info.error().message().c_str());
        return 1;
    }
    std::printf("dpdk env: %s, IOVA mode %s, %llu iterations\n",
                info->hugepages ? "2 MiB hugepages" : "--no-huge (anonymous memory)",
                iova_mode_name(info->iova_mode), static_cast<unsigned long long>(iterations));

    bool failed = false;
    for (size_t size : {size_t{4096}, size_t{65536}}) {
        for (bool zero : {false, true}) {
            uint64_t n = zero ? iterations / 10 : iterations;
            double ns = ns_per_op(n, [&](uint64_t) {
                auto b = dma_alloc(size, 4096, zero);
                if (!b.ok()) {
                    failed = true;
                    return;
                }
                dma_free(b->addr);
            });
            std::printf("  dma alloc+free %6zu B%s: %8.1f ns\n", size, zero ? " zeroed" : "       ",
                        ns);
        }
    }

    auto buf = dma_alloc(size_t{1} << 20, 4096, false);
    if (!buf.ok()) {
        std::fprintf(stderr, "strata-env-dpdk-bench: %s\n", buf.error().message().c_str());
        return 1;
    }
    volatile uint64_t sink = 0;
    double lookup = ns_per_op(iterations, [&](uint64_t i) {
        sink = sink + dpdk_virt2iova(static_cast<char*>(buf->addr) + (i * 4160) % (1 << 20));
    });
    std::printf("  IOVA lookup in DPDK memory (memseg): %8.1f ns\n", lookup);
    double segs = ns_per_op(iterations / 10, [&](uint64_t) {
        auto s = dpdk_iova_segments(buf->addr, 65536);
        if (!s.ok()) failed = true;
    });
    std::printf("  IOVA segments of a 64 KiB range:     %8.1f ns\n", segs);
    dma_free(buf->addr);
    if (failed) {
        std::fprintf(stderr, "strata-env-dpdk-bench: an operation failed during the run\n");
        return 1;
    }
    return 0;
}
