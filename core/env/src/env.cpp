// Backend table and selection.
#include <mutex>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/env/env.h>

#include "env_internal.h"

namespace strata::env {


namespace backend {

namespace {
constexpr BackendEntry kBackends[] = {
    {"sim", &make_sim_backend},
#ifdef STRATA_ENV_HAVE_DPDK
    {"dpdk", &make_dpdk_backend},
#endif
};
}  // namespace

std::span<const BackendEntry> backend_table() noexcept { return kBackends; }

}  // namespace backend

// The backend is process-wide state on purpose: DPDK's EAL initialises once per process and
// owns the process's hugepages and PCI bus, so the backend (and its selection) cannot belong to
// one Host. Everything a Host does with it - its DMA regions, IOVA map, claims and emulated bus -
// is kept in that Host (backend::HostEnv); the counters below only let fini() check all Hosts.
namespace {
std::mutex g_mu;
std::unique_ptr<backend::Backend> g_backend;  // under g_mu for changes
std::atomic<backend::Backend*> g_running{nullptr};
std::atomic<int64_t> g_regions{0};  // DMA regions over every Host
std::atomic<int64_t> g_claims{0};   // claimed PCI functions over every Host
std::atomic<int64_t> g_abandoned{0};  // of g_regions, those given up to a device (dma_abandon)
}  // namespace

void detail::count_abandoned(int64_t delta) noexcept {
    g_abandoned.fetch_add(delta, std::memory_order_relaxed);
}

void detail::count_regions(int64_t delta) noexcept {
    g_regions.fetch_add(delta, std::memory_order_relaxed);
}
void detail::count_claims(int64_t delta) noexcept {
    g_claims.fetch_add(delta, std::memory_order_relaxed);
}

Result<void> init(const EnvOptions& options) {
    std::lock_guard lock(g_mu);
    if (g_backend) {
        if (options.backend == g_backend->name() && g_backend->same_options(options)) return {};
        return Error(Errc::already_exists,
                     fmt::format("env already initialised with backend '{}'{}", g_backend->name(),
                                 options.backend == g_backend->name() ? " and other options"
                                                                      : ""));
    }
    const backend::BackendEntry* entry = nullptr;
    std::string known;
    for (const auto& e : backend::backend_table()) {
        if (options.backend == e.name) entry = &e;
        known += known.empty() ? "" : ", ";
        known += e.name;
    }
    if (!entry) {
        return Error(Errc::invalid_argument,
                     fmt::format("unknown env backend '{}' (built with: {}{})", options.backend,
                                 known,
                                 options.backend == "dpdk"
                                     ? "; rebuild with libdpdk-dev and STRATA_WITH_DPDK=ON"
                                     : ""));
    }
    auto backend = entry->create();
    STRATA_TRY(backend->start(options));
    STRATA_INFOLOG(log_env, "env backend '{}' started", backend->name());
    g_backend = std::move(backend);
    g_running.store(g_backend.get(), std::memory_order_release);
    return {};
}

void fini() {
    std::lock_guard lock(g_mu);
    if (!g_backend) return;
    // Every Host's, not only the caller's: the backend under them all stops.
    const int64_t abandoned = g_abandoned.load(std::memory_order_relaxed);
    int64_t left = g_regions.load(std::memory_order_relaxed) - abandoned;
    STRATA_ASSERT_MSG(left == 0, "env::fini with %lld DMA regions still allocated/registered",
                      static_cast<long long>(left));
    if (abandoned != 0)
        STRATA_ERRLOG(log_env, "env::fini: {} DMA region(s) abandoned to devices stay allocated",
                      abandoned);
    int64_t claimed = g_claims.load(std::memory_order_relaxed);
    STRATA_ASSERT_MSG(claimed == 0, "env::fini with %lld PCI functions still claimed",
                      static_cast<long long>(claimed));
    g_backend->stop();
    g_running.store(nullptr, std::memory_order_release);
    g_backend.reset();
}

bool initialized() noexcept { return g_running.load(std::memory_order_acquire) != nullptr; }

std::string_view backend_name() noexcept {
    backend::Backend* b = g_running.load(std::memory_order_acquire);
    return b ? std::string_view(b->name()) : std::string_view();
}

std::vector<std::string> backend_names() {
    std::vector<std::string> names;
    for (const auto& e : backend::backend_table()) names.emplace_back(e.name);
    return names;
}

namespace detail {
backend::Backend& backend() {
    backend::Backend* b = g_running.load(std::memory_order_acquire);
    if (STRATA_LIKELY(b != nullptr)) return *b;
    auto r = init(EnvOptions{});
    STRATA_ASSERT_MSG(r.ok(), "starting the default env backend failed: %s",
                      r.error().message().c_str());
    return *g_running.load(std::memory_order_acquire);
}
}  // namespace detail

}  // namespace strata::env
