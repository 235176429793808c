// DPDK EAL bring-up: argument vector, once-per-process guard, log redirection.
#include "eal.h"

#include "dpdk_pci.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_log.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <strata/base/log.h>

namespace strata::env::dpdk {

STRATA_LOG_COMPONENT(dpdk);

const char* iova_mode_name(IovaMode mode) noexcept {
    switch (mode) {
        case IovaMode::automatic:
            return "auto";
        case IovaMode::va:
            return "va";
        case IovaMode::pa:
            return "pa";
    }
    return "?";
}

namespace {

const char* dpdk_log_level_for(const LogComponent& comp) {
    // The component's own level, or the global level it follows.
    LogLevel level = comp.level().value_or(log_global_level());
    switch (level) {
        case LogLevel::error:
            return "error";
        case LogLevel::warn:
            return "warning";
        case LogLevel::notice:
            return "notice";
        case LogLevel::info:
            return "info";
        case LogLevel::debug:
            return "debug";
    }
    return "notice";
}

bool valid_dpdk_log_level(const std::string& s) {
    for (const char* name :
         {"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"}) {
        if (s == name) return true;
    }
    // DPDK also takes a number 1..8.
    return s.size() == 1 && s[0] >= '1' && s[0] <= '8';
}

bool safe_file_prefix(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok) return false;
    }
    return s != "." && s != "..";
}

// --- DPDK log lines into Strata's logger -------------------------------------------------
//
// rte_log writes one formatted message (possibly several lines) to the stream and flushes it;
// the cookie writer splits it into lines and logs each at the message's DPDK level. The last
// error-level line is kept so that an EAL failure can quote it.

std::mutex g_last_error_mu;
std::string g_last_error;  // guarded by g_last_error_mu
// Every error line since the last eal_take_error_lines(), "; "-joined and bounded: a PCI attach
// fails with a bare -1 and its first line, not its last, names the cause.
std::string g_error_lines;  // guarded by g_last_error_mu
constexpr size_t kErrorLinesMax = 1024;

ssize_t log_cookie_write(void*, const char* buf, size_t size) {
    int rte_level = rte_log_cur_msg_loglevel();
    std::string_view text(buf, size);
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty()) continue;
        if (rte_level <= static_cast<int>(RTE_LOG_ERR)) {
            STRATA_ERRLOG(log_dpdk, "{}", line);
            std::lock_guard lock(g_last_error_mu);
            g_last_error.assign(line);
            if (g_error_lines.size() < kErrorLinesMax) {
                if (!g_error_lines.empty()) g_error_lines.append("; ");
                g_error_lines.append(line.substr(0, kErrorLinesMax));
            }
        } else if (rte_level == static_cast<int>(RTE_LOG_WARNING)) {
            STRATA_WARNLOG(log_dpdk, "{}", line);
        } else if (rte_level == static_cast<int>(RTE_LOG_NOTICE)) {
            STRATA_NOTICELOG(log_dpdk, "{}", line);
        } else if (rte_level == static_cast<int>(RTE_LOG_INFO)) {
            STRATA_INFOLOG(log_dpdk, "{}", line);
        } else {
            STRATA_DEBUGLOG(log_dpdk, "{}", line);
        }
    }
    return static_cast<ssize_t>(size);
}

void redirect_dpdk_log() {
    static FILE* stream = [] {
        cookie_io_functions_t io{};
        io.write = log_cookie_write;
        FILE* f = fopencookie(nullptr, "w", io);
        if (f != nullptr) setvbuf(f, nullptr, _IOLBF, 0);
        return f;
    }();
    if (stream != nullptr) rte_openlog_stream(stream);
}

std::string take_last_error() {
    std::lock_guard lock(g_last_error_mu);
    std::string s = std::move(g_last_error);
    g_last_error.clear();
    return s;
}

Errc errc_from_rte_errno(int e) {
    switch (e) {
        case EACCES:
        case EPERM:
            return Errc::permission_denied;
        case EINVAL:
            return Errc::invalid_argument;
        case ENOMEM:
            return Errc::no_memory;
        case EALREADY:
            return Errc::already_exists;
        case ENOTSUP:
        case ENODEV:
        case EFAULT:
            return Errc::not_supported;
        default:
            return Errc::io_error;
    }
}

// Once-per-process state.
struct EalState {
    std::mutex mu;
    std::optional<EalOptions> options;  // set by the first call that got as far as rte_eal_init
    std::optional<EalInfo> info;        // set on success
    std::optional<Error> failure;       // set on failure
};

EalState& state() {
    static EalState s;
    return s;
}

}  // namespace

std::string eal_take_error_lines() {
    std::lock_guard lock(g_last_error_mu);
    std::string s = std::move(g_error_lines);
    g_error_lines.clear();
    return s;
}

void eal_log_for_testing(bool error, const std::string& line) {
    rte_log(error ? RTE_LOG_ERR : RTE_LOG_NOTICE, RTE_LOGTYPE_EAL, "EAL: %s\n", line.c_str());
}

Result<std::vector<std::string>> build_eal_args(const EalOptions& o) {
    std::vector<std::string> args;
    args.emplace_back("strata");

    // One lcore only: Strata's reactors are its own threads, not EAL lcores.
    uint32_t main_core = o.cores.empty() ? 0 : o.cores.front();
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    if (ncpu > 0 && main_core >= static_cast<uint64_t>(ncpu)) {
        return Error(
            Errc::invalid_argument,
            fmt::format("dpdk: core {} does not exist (this host has {} CPUs)", main_core, ncpu));
    }
    if (main_core >= RTE_MAX_LCORE) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: core {} is beyond DPDK's RTE_MAX_LCORE ({})", main_core,
                                 RTE_MAX_LCORE));
    }
    args.emplace_back(fmt::format("-l{}", main_core));

    if (o.memory_mb > 0) {
        if (o.memory_mb > (uint64_t{1} << 24)) {
            return Error(Errc::invalid_argument,
                         fmt::format("dpdk: memory_mb {} is not a plausible size", o.memory_mb));
        }
        args.emplace_back(fmt::format("-m{}", o.memory_mb));
    }

    if (o.no_huge) {
        if (o.iova_mode == IovaMode::pa) {
            return Error(Errc::invalid_argument,
                         "dpdk: iova_mode 'pa' needs hugepages (with no_huge the memory is "
                         "anonymous and has no stable physical address); use 'va' or 'auto'");
        }
        if (!o.huge_dir.empty()) {
            return Error(Errc::invalid_argument, "dpdk: huge_dir given together with no_huge");
        }
        // --in-memory is not allowed with --no-huge (it implies legacy memory); --no-shconf keeps
        // the process from creating shared config files.
        args.emplace_back("--no-huge");
        args.emplace_back("--no-shconf");
    } else {
        // No shared config, hugepage files unlinked at once: processes never collide and a crash
        // leaves nothing behind in hugetlbfs.
        args.emplace_back("--in-memory");
        if (!o.huge_dir.empty()) {
            if (o.huge_dir.front() != '/') {
                return Error(
                    Errc::invalid_argument,
                    fmt::format("dpdk: huge_dir '{}' must be an absolute path", o.huge_dir));
            }
            args.emplace_back("--huge-dir=" + o.huge_dir);
        }
    }

    if (o.no_pci) {
        if (!o.allowed_pci.empty()) {
            return Error(Errc::invalid_argument,
                         "dpdk: allowed_pci given together with no_pci (no PCI bus to allow on)");
        }
        args.emplace_back("--no-pci");
    }
    for (const std::string& bdf : o.allowed_pci) {
        auto canonical = canonical_bdf(bdf);
        if (!canonical)
            return Error(Errc::invalid_argument, "dpdk: " + canonical.error().message());
        args.emplace_back("-a" + *canonical);
    }

    switch (o.iova_mode) {
        case IovaMode::automatic:
            break;
        case IovaMode::va:
            args.emplace_back("--iova-mode=va");
            break;
        case IovaMode::pa:
            args.emplace_back("--iova-mode=pa");
            break;
    }

    std::string prefix = o.file_prefix.empty() ? fmt::format("strata_{}", getpid()) : o.file_prefix;
    if (!safe_file_prefix(prefix)) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: file_prefix '{}' must be 1-64 characters of [A-Za-z0-9_.-]",
                                 prefix));
    }
    args.emplace_back("--file-prefix=" + prefix);

    std::string level = o.log_level.empty() ? dpdk_log_level_for(log_dpdk) : o.log_level;
    if (!valid_dpdk_log_level(level)) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: log_level '{}' is not one of error, warning, notice, info, "
                                 "debug",
                                 level));
    }
    args.emplace_back("--log-level=" + level);

    args.emplace_back("--no-telemetry");  // no telemetry socket / thread in a storage daemon
    for (const std::string& extra : o.extra_args) args.push_back(extra);
    return args;
}

Result<EalInfo> eal_init(const EalOptions& options) {
    EalState& st = state();
    std::lock_guard lock(st.mu);

    if (st.options) {
        std::vector<std::string> mine;
        if (auto a = build_eal_args(options); a) mine = *a;
        if (st.failure) {
            return Error(st.failure->code(),
                         fmt::format("{} (DPDK cannot retry EAL initialisation in the same "
                                     "process; fix the cause and restart)",
                                     st.failure->message()));
        }
        if (*st.options == options) return *st.info;
        return Error(Errc::already_exists,
                     fmt::format("dpdk: EAL is already initialised in this process with [{}]; DPDK "
                                 "cannot re-initialise, so a second env init with different "
                                 "options [{}] is refused (restart the process to change them)",
                                 fmt::join(st.info->args, " "), fmt::join(mine, " ")));
    }

    auto args = build_eal_args(options);
    if (!args) return args.error();

    redirect_dpdk_log();
    take_last_error();

    std::vector<std::string> argv_store = *args;  // rte_eal_init permutes argv
    std::vector<char*> argv;
    argv.reserve(argv_store.size() + 1);
    for (std::string& a : argv_store) argv.push_back(a.data());
    argv.push_back(nullptr);

    cpu_set_t saved_affinity;
    bool have_affinity =
        pthread_getaffinity_np(pthread_self(), sizeof(saved_affinity), &saved_affinity) == 0;

    STRATA_INFOLOG(log_dpdk, "initialising DPDK EAL: {}", fmt::join(*args, " "));
    st.options = options;
    int rc = rte_eal_init(static_cast<int>(argv.size() - 1), argv.data());
    int err = rte_errno;
    if (have_affinity) {
        // rte_eal_init pinned this thread to the main lcore; Strata pins its own reactors.
        pthread_setaffinity_np(pthread_self(), sizeof(saved_affinity), &saved_affinity);
    }
    if (rc < 0) {
        std::string detail = take_last_error();
        std::string hint;
        if (!options.no_huge && (err == ENOMEM || detail.find("huge") != std::string::npos ||
                                 detail.find("memory") != std::string::npos)) {
            hint =
                "; no usable hugepages? reserve them (as root: ci/hugepages, or "
                "echo 512 > /proc/sys/vm/nr_hugepages and mount -t hugetlbfs nodev "
                "/dev/hugepages) or set no_huge";
        }
        Error e(errc_from_rte_errno(err),
                fmt::format("dpdk: EAL initialisation failed: {} (rte_errno {}){}{}; args: [{}]{}",
                            rte_strerror(err), err, detail.empty() ? "" : "; last EAL error: ",
                            detail, fmt::join(*args, " "), hint));
        st.failure = e;
        STRATA_ERRLOG(log_dpdk, "{}", e.message());
        return e;
    }

    EalInfo info;
    switch (rte_eal_iova_mode()) {
        case RTE_IOVA_PA:
            info.iova_mode = IovaMode::pa;
            break;
        case RTE_IOVA_VA:
            info.iova_mode = IovaMode::va;
            break;
        default:
            info.iova_mode = IovaMode::automatic;
            break;
    }
    info.hugepages = rte_eal_has_hugepages() != 0;
    info.pci = rte_eal_has_pci() != 0;
    info.main_lcore = rte_get_main_lcore();
    info.main_core = options.cores.empty() ? 0 : options.cores.front();
    info.args = *args;
    st.info = info;
    STRATA_NOTICELOG(log_dpdk, "DPDK EAL up: IOVA mode {}, hugepages {}, PCI bus {}",
                     iova_mode_name(info.iova_mode),
                     info.hugepages ? "yes" : "no (anonymous memory)",
                     info.pci ? "scanned" : "disabled");
    return info;
}

bool eal_initialized() noexcept {
    EalState& st = state();
    std::lock_guard lock(st.mu);
    return st.info.has_value();
}

const EalInfo* eal_info() noexcept {
    EalState& st = state();
    std::lock_guard lock(st.mu);
    return st.info ? &*st.info : nullptr;
}

}  // namespace strata::env::dpdk
