#include <strata/runtime/scheduler.h>

#include <charconv>
#include <mutex>

#include <strata/base/log.h>
#include <strata/runtime/host.h>

#include "poller.h"

namespace strata::runtime {

namespace {
// A log record outside any Thread under the simulator has no meaningful time: it shows 0
// rather than tripping now_ns()'s check (logging must never assert).
uint64_t log_time_now() {
    if (current_thread() == nullptr && detail::live_simulators() != 0) return 0;
    return now_ns();
}
std::string_view log_thread_name() {
    Thread* t = current_thread();
    return t != nullptr ? std::string_view(t->name()) : std::string_view{};
}
}  // namespace

void install_log_hooks() {
    static std::once_flag once;
    std::call_once(once, [] {
        log_set_time_hook(log_time_now);
        log_set_thread_name_hook(log_thread_name);
    });
}

Scheduler::Scheduler(uint32_t reactor_count) : reactor_count_(reactor_count) {
    STRATA_ASSERT_MSG(reactor_count > 0, "a scheduler needs at least one reactor");
    install_log_hooks();
}

Scheduler::~Scheduler() = default;

Thread* Scheduler::create_thread(std::string name, int reactor, Host* host) {
    if (host == nullptr) host = &current_host();
    Thread* t;
    {
        std::lock_guard lock(threads_mutex_);
        uint32_t r = reactor >= 0 ? static_cast<uint32_t>(reactor) % reactor_count_
                                  : next_reactor_++ % reactor_count_;
        threads_.push_back(std::unique_ptr<Thread>(
            new Thread(*this, *host, next_thread_id_++, r, std::move(name), message_ring_capacity)));
        t = threads_.back().get();
    }
    on_thread_created(*t);
    return t;
}

std::vector<Thread*> Scheduler::threads() const {
    std::lock_guard lock(threads_mutex_);
    std::vector<Thread*> out;
    out.reserve(threads_.size());
    for (auto& t : threads_) out.push_back(t.get());
    return out;
}

Thread* Scheduler::find_thread(std::string_view name) const {
    std::lock_guard lock(threads_mutex_);
    for (auto& t : threads_)
        if (t->name() == name) return t.get();
    return nullptr;
}

Thread* Scheduler::thread_by_id(uint32_t id) const {
    std::lock_guard lock(threads_mutex_);
    return id < threads_.size() ? threads_[id].get() : nullptr;
}

std::vector<ReactorInfo> Scheduler::reactors() const {
    std::vector<int> cores = reactor_cores();
    std::vector<ReactorInfo> out;
    for (uint32_t i = 0; i < reactor_count_; ++i)
        out.push_back({i, i < cores.size() ? cores[i] : -1, {}});
    std::lock_guard lock(threads_mutex_);
    for (auto& t : threads_)
        if (!t->exited()) out[t->reactor()].threads.push_back(t->name());
    return out;
}

size_t Scheduler::release_threads_of(const Host& host) noexcept {
    size_t n = 0;
    for (Thread* t : threads()) {
        if (t->exited() || &t->host() != &host) continue;
        t->release_everything();
        ++n;
    }
    return n;
}

void Scheduler::release_all_threads() noexcept {
    for (Thread* t : threads())
        if (!t->exited()) t->release_everything();
}

Result<std::vector<int>> parse_core_mask(std::string_view mask) {
    std::vector<int> cores;
    auto bad = [&](const char* why) {
        return Error(Errc::invalid_argument,
                     std::string("invalid core mask '") + std::string(mask) + "': " + why);
    };
    if (mask.empty()) return bad("empty");
    if (mask.front() == '[') {
        if (mask.back() != ']') return bad("missing ']'");
        std::string_view body = mask.substr(1, mask.size() - 2);
        while (!body.empty()) {
            size_t comma = body.find(',');
            std::string_view item = body.substr(0, comma);
            size_t dash = item.find('-');
            int lo = 0, hi = 0;
            auto parse = [](std::string_view s, int& v) {
                auto r = std::from_chars(s.data(), s.data() + s.size(), v);
                return r.ec == std::errc() && r.ptr == s.data() + s.size() && v >= 0 && v < 1024;
            };
            if (dash == std::string_view::npos) {
                if (!parse(item, lo)) return bad("bad core number");
                hi = lo;
            } else if (!parse(item.substr(0, dash), lo) || !parse(item.substr(dash + 1), hi) ||
                       hi < lo) {
                return bad("bad core range");
            }
            for (int c = lo; c <= hi; ++c) cores.push_back(c);
            if (comma == std::string_view::npos) break;
            body.remove_prefix(comma + 1);
        }
    } else {
        std::string_view digits = mask;
        if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
            digits.remove_prefix(2);
        unsigned long long bits = 0;
        auto r = std::from_chars(digits.data(), digits.data() + digits.size(), bits, 16);
        if (r.ec != std::errc() || r.ptr != digits.data() + digits.size())
            return bad("not a hexadecimal mask");
        for (int c = 0; c < 64; ++c)
            if (bits & (1ULL << c)) cores.push_back(c);
    }
    if (cores.empty()) return bad("selects no core");
    return cores;
}

}  // namespace strata::runtime
