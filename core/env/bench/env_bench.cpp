// strata-env-bench: ns per IOVA translation and per DMA buffer alloc/free on a backend.
//   strata-env-bench [--backend sim|dpdk] [--no-huge]   (dpdk options: --no-huge, --no-pci)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <strata/base/random.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>

using namespace strata;

namespace {

double ns_since(std::chrono::steady_clock::time_point t0, uint64_t n) {
    auto d = std::chrono::steady_clock::now() - t0;
    return std::chrono::duration<double, std::nano>(d).count() / static_cast<double>(n);
}

volatile uint64_t g_sink;

}  // namespace

int main(int argc, char** argv) {
    env::EnvOptions opts;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--backend" && i + 1 < argc) opts.backend = argv[++i];
        else if (a.rfind("--backend=", 0) == 0) opts.backend = a.substr(10);
        else if (a == "--no-huge") opts.dpdk.no_huge = true;
        else if (a == "--no-pci") opts.dpdk.no_pci = true;
        else {
            std::fprintf(stderr, "usage: %s [--backend sim|dpdk] [--no-huge] [--no-pci]\n",
                         argv[0]);
            return 2;
        }
    }
    if (opts.backend == "dpdk") opts.dpdk.no_pci = true;
    auto r = env::init(opts);
    if (!r.ok()) {
        std::fprintf(stderr, "env init failed: %s\n", r.error().message().c_str());
        return 1;
    }
    std::printf("strata-env-bench (backend %s)\n", std::string(env::backend_name()).c_str());

    // One region, repeated hits (the last-hit cache).
    {
        auto b = env::dma_alloc(1 << 20, 4096);
        if (!b.ok()) return 1;
        auto* p = static_cast<char*>(*b);
        constexpr uint64_t kN = 20'000'000;
        uint64_t acc = 0;
        auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < kN; ++i) acc += env::iova_of(p + (i & 0xfffff));
        double ns = ns_since(t0, kN);
        g_sink = acc;
        std::printf("  iova_of, one region            : %8.1f ns  (%llu lookups)\n", ns,
                    static_cast<unsigned long long>(kN));
        env::dma_free(p);
    }
    // 64 regions, random order (binary search every time).
    {
        std::vector<char*> bufs;
        for (int i = 0; i < 64; ++i) bufs.push_back(static_cast<char*>(*env::dma_alloc(65536, 4096)));
        constexpr uint64_t kN = 10'000'000;
        std::vector<uint32_t> order(1 << 16);
        Prng prng(42);
        for (auto& o : order) o = static_cast<uint32_t>(prng.next() % 64);
        uint64_t acc = 0;
        auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < kN; ++i) acc += env::iova_of(bufs[order[i & 0xffff]] + (i & 0xfff));
        double ns = ns_since(t0, kN);
        g_sink = acc;
        std::printf("  iova_of, random over 64 regions: %8.1f ns  (%llu lookups)\n", ns,
                    static_cast<unsigned long long>(kN));
        env::IovaSegment segs[4];
        size_t n;
        t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < kN; ++i)
            (void)env::translate(bufs[order[i & 0xffff]] + 100, 8192, segs, &n);
        std::printf("  translate 8 KiB, 64 regions    : %8.1f ns\n", ns_since(t0, kN));
        for (char* b : bufs) env::dma_free(b);
    }
    // dma_alloc/free pairs (backend + map update) with 64 other live regions.
    {
        std::vector<void*> live;
        for (int i = 0; i < 64; ++i) live.push_back(*env::dma_alloc(4096, 4096));
        constexpr uint64_t kN = 200'000;
        auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < kN; ++i) {
            auto b = env::dma_alloc(4096, 4096);
            env::dma_free(*b);
        }
        std::printf("  dma_alloc+dma_free 4 KiB       : %8.1f ns  (64 live regions)\n",
                    ns_since(t0, kN));
        for (void* b : live) env::dma_free(b);
    }
    // Cached buffers (no owner Thread here: the cache's owner check is skipped).
    {
        env::DmaBufferCache cache(4096, 64, 4096, 64);
        constexpr uint64_t kN = 20'000'000;
        auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < kN; ++i) cache.put(cache.get());
        std::printf("  DmaBufferCache get+put         : %8.1f ns\n", ns_since(t0, kN));
    }
    if (opts.backend == "sim") env::fini();
    return 0;
}
