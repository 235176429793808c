#include <strata/base/log.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <mutex>

namespace strata {
namespace {

struct LogState {
    std::mutex mutex;  // guards the registry and the sink; logging is not on the per-I/O path
    std::vector<LogComponent*> components;
    LogSink sink;
    std::atomic<int> global_level{static_cast<int>(LogLevel::notice)};
    std::atomic<uint64_t (*)()> time_hook{nullptr};
    std::atomic<bool> timestamps{true};
    std::atomic<std::string_view (*)()> thread_hook{nullptr};
};

LogState& state() {
    static LogState s;  // function-local: safe to use from other static initializers
    return s;
}

constexpr std::string_view kLevelNames[] = {"ERROR", "WARN", "NOTICE", "INFO", "DEBUG"};

void write_stderr(const LogRecord& r) {
    uint64_t sec = r.time_ns / 1000000000ULL;
    uint64_t usec = (r.time_ns % 1000000000ULL) / 1000;
    const char* base = r.file;
    for (const char* p = r.file; *p; ++p)
        if (*p == '/') base = p + 1;
    if (state().timestamps.load(std::memory_order_relaxed))
        fmt::print(stderr, "[{}.{:06}] ", sec, usec);
    fmt::print(stderr, "{:<6} {}{}{}: {}:{}: {}\n", log_level_name(r.level), r.component->name(),
               r.thread.empty() ? "" : "@", r.thread, base, r.line, r.message);
}

}  // namespace

std::string_view log_level_name(LogLevel level) noexcept {
    auto idx = static_cast<size_t>(level);
    return idx < std::size(kLevelNames) ? kLevelNames[idx] : "?";
}

std::optional<LogLevel> log_level_parse(std::string_view name) noexcept {
    for (size_t i = 0; i < std::size(kLevelNames); ++i) {
        const auto& n = kLevelNames[i];
        if (n.size() == name.size() &&
            std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
                return a == std::toupper(static_cast<unsigned char>(b));
            }))
            return static_cast<LogLevel>(i);
    }
    if (name == "warning" || name == "WARNING") return LogLevel::warn;
    return std::nullopt;
}

LogComponent::LogComponent(const char* name)
    : name_(name), threshold_(state().global_level.load()) {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    s.components.push_back(this);
}

void LogComponent::set_level(std::optional<LogLevel> level) noexcept {
    if (level) {
        own_level_.store(static_cast<int>(*level));
        threshold_.store(static_cast<int>(*level));
    } else {
        own_level_.store(-1);
        threshold_.store(state().global_level.load());
    }
}

std::optional<LogLevel> LogComponent::level() const noexcept {
    int own = own_level_.load();
    if (own < 0) return std::nullopt;
    return static_cast<LogLevel>(own);
}

void log_set_global_level(LogLevel level) noexcept {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    s.global_level.store(static_cast<int>(level));
    for (auto* c : s.components)
        if (c->own_level_.load() < 0) c->threshold_.store(static_cast<int>(level));
}

LogLevel log_global_level() noexcept { return static_cast<LogLevel>(state().global_level.load()); }

std::vector<LogComponent*> log_components() {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    return s.components;
}

LogComponent* log_find_component(std::string_view name) {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    for (auto* c : s.components)
        if (name == c->name()) return c;
    return nullptr;
}

void log_set_sink(LogSink sink) {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    s.sink = std::move(sink);
}

void log_set_time_hook(uint64_t (*now_ns)()) { state().time_hook.store(now_ns); }
void log_set_timestamps(bool on) noexcept {
    state().timestamps.store(on);
}
bool log_timestamps() noexcept {
    return state().timestamps.load();
}
void log_set_thread_name_hook(std::string_view (*thread_name)()) {
    state().thread_hook.store(thread_name);
}

namespace detail {

void log_write(const LogComponent& comp, LogLevel level, const char* file, int line,
               fmt::string_view format, fmt::format_args args) {
    fmt::memory_buffer buf;  // inline storage for typical lines: no heap allocation
    fmt::vformat_to(std::back_inserter(buf), format, args);
    auto& s = state();
    auto time_hook = s.time_hook.load();
    auto thread_hook = s.thread_hook.load();
    LogRecord record{level,
                     &comp,
                     file,
                     line,
                     time_hook ? time_hook() : 0,
                     thread_hook ? thread_hook() : std::string_view{},
                     std::string_view(buf.data(), buf.size())};
    std::lock_guard lock(s.mutex);
    if (s.sink)
        s.sink(record);
    else
        write_stderr(record);
}

}  // namespace detail
}  // namespace strata
