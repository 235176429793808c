// Logging with levels and per-component switches.
//
// A component (STRATA_LOG_COMPONENT) has its own level threshold; until set it follows the
// global level. A disabled message costs one relaxed load and a compare: its arguments are
// not formatted. Time stamps and thread names come from hooks the runtime installs, so under
// the simulator a log line carries virtual time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace strata {

enum class LogLevel : int { error = 0, warn = 1, notice = 2, info = 3, debug = 4 };

std::string_view log_level_name(LogLevel level) noexcept;   // "ERROR", "WARN", ...
std::optional<LogLevel> log_level_parse(std::string_view name) noexcept;  // case-insensitive

class LogComponent {
public:
    explicit LogComponent(const char* name);  // registers itself; name must be static
    LogComponent(const LogComponent&) = delete;
    LogComponent& operator=(const LogComponent&) = delete;

    const char* name() const noexcept { return name_; }
    bool enabled(LogLevel level) const noexcept {
        return static_cast<int>(level) <= threshold_.load(std::memory_order_relaxed);
    }
    // Explicit level for this component, or follow the global level again.
    void set_level(std::optional<LogLevel> level) noexcept;
    std::optional<LogLevel> level() const noexcept;

private:
    friend void log_set_global_level(LogLevel) noexcept;
    const char* name_;
    std::atomic<int> threshold_;
    std::atomic<int> own_level_{-1};  // -1: follow the global level
};

void log_set_global_level(LogLevel level) noexcept;
LogLevel log_global_level() noexcept;

// Components known to this process, in registration order.
std::vector<LogComponent*> log_components();
LogComponent* log_find_component(std::string_view name);

struct LogRecord {
    LogLevel level;
    const LogComponent* component;
    const char* file;
    int line;
    uint64_t time_ns;          // from the time hook (virtual under the simulator)
    std::string_view thread;   // from the thread-name hook, may be empty
    std::string_view message;
};

// Where records go: stderr by default. The sink may be called from any OS thread; it is
// serialized by the logger.
using LogSink = std::function<void(const LogRecord&)>;
void log_set_sink(LogSink sink);  // empty sink restores stderr
void log_set_time_hook(uint64_t (*now_ns)());
// Whether the stderr sink prefixes records with "[sec.usec]" (on by default; SPDK's
// log_enable_timestamps). Process-wide like the sink itself.
void log_set_timestamps(bool on) noexcept;
bool log_timestamps() noexcept;
void log_set_thread_name_hook(std::string_view (*thread_name)());

namespace detail {
void log_write(const LogComponent& comp, LogLevel level, const char* file, int line,
               fmt::string_view format, fmt::format_args args);
}  // namespace detail

}  // namespace strata

// Defines a component in the current namespace: STRATA_LOG_COMPONENT(nvme) -> log_nvme.
#define STRATA_LOG_COMPONENT(id) inline ::strata::LogComponent log_##id{#id}

#define STRATA_LOG(comp, lvl, fmtstr, ...)                                                    \
    do {                                                                                      \
        if ((comp).enabled(::strata::LogLevel::lvl))                                          \
            ::strata::detail::log_write((comp), ::strata::LogLevel::lvl, __FILE__, __LINE__,  \
                                        fmtstr, fmt::make_format_args(__VA_ARGS__));          \
    } while (0)

#define STRATA_ERRLOG(comp, ...) STRATA_LOG(comp, error, __VA_ARGS__)
#define STRATA_WARNLOG(comp, ...) STRATA_LOG(comp, warn, __VA_ARGS__)
#define STRATA_NOTICELOG(comp, ...) STRATA_LOG(comp, notice, __VA_ARGS__)
#define STRATA_INFOLOG(comp, ...) STRATA_LOG(comp, info, __VA_ARGS__)
#define STRATA_DEBUGLOG(comp, ...) STRATA_LOG(comp, debug, __VA_ARGS__)
