#include <strata/runtime/host.h>

#include <cstring>
#include <random>

#include <fmt/format.h>

namespace strata::runtime {

namespace detail {

size_t next_host_slot_index() noexcept {
    // The only process-wide counter here: it names slot types, it holds no module's state.
    static std::atomic<size_t> next{0};
    return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

namespace {
thread_local Host* tls_host = nullptr;
}  // namespace

Host::Host(std::string name, uint64_t seed) : name_(std::move(name)), prng_(seed) {}

Host::~Host() {
    while (count_ > 0) {
        Created c = order_[--count_];
        void* p = slots_[c.index].exchange(nullptr, std::memory_order_acq_rel);
        if (p != nullptr) c.destroy(p);
    }
}

uint64_t Host::random_u64() {
    std::lock_guard lock(mu_);
    return prng_.next();
}

std::string Host::new_uuid() {
    uint8_t b[16];
    for (int i = 0; i < 16; i += 8) {
        const uint64_t v = random_u64();
        std::memcpy(b + i, &v, 8);
    }
    b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);  // version 4
    b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
    return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
                       "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                       b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                       b[12], b[13], b[14], b[15]);
}

uint64_t Host::seed_for(uint64_t sim_seed, std::string_view name) noexcept {
    TraceHash h;
    h.add(sim_seed);
    for (char c : name) h.add(static_cast<unsigned char>(c));
    return h.value();
}

uint64_t Host::entropy_seed() {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

Host& fallback_host() noexcept {
    // Never destroyed: module state in it may be reached from other static destructors. A fixed
    // seed: bare simulator tests draw the same identifiers on every run.
    static Host* host = new Host("process", 0);
    return *host;
}


HostScope::HostScope(Host& host) noexcept : prev_(detail::exchange_current_host(&host)) {}
HostScope::~HostScope() { detail::exchange_current_host(prev_); }

namespace detail {
Host& scoped_host() noexcept { return tls_host != nullptr ? *tls_host : fallback_host(); }

Host* exchange_current_host(Host* host) noexcept {
    Host* prev = tls_host;
    tls_host = host;
    return prev;
}
}  // namespace detail

}  // namespace strata::runtime
