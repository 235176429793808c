// Framework built-in RPC methods and the "log" subsystem.
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <set>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/rpc/app.h>
#include <strata/rpc/builtins.h>
#include <strata/rpc/params.h>
#include <strata/runtime/host.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/scheduler.h>

#include "compat.h"

#ifndef STRATA_VERSION_STRING
#define STRATA_VERSION_STRING "0.0.0"
#endif

namespace strata::rpc {

namespace {

using PT = ParamType;

// What this App's log RPCs set (a slot of its Host). The levels themselves are process-wide
// (base/log.h: one sink, the process's stderr, and a threshold per log component), so two Apps
// in one process share what is printed; each App's save_config writes what IT set, so a saved
// config replays what that App asked for whatever another App set since
// (docs/design/runtime.md, "What is process-wide").
struct LogSettings {
    std::optional<LogLevel> level;  // log_set_level; unset: save the process's level
    // Strata has one log sink, so SPDK's "print level" (stderr threshold, separate from the
    // syslog level) is the same threshold: kept as its own value so scripts that set and read
    // it back see what they set.
    LogLevel print_level = LogLevel::notice;
    std::set<std::string> flags;  // components log_set_flag turned to debug, not cleared since
    std::optional<bool> timestamps;  // log_enable_timestamps, if this App called it
};

LogSettings& log_settings(App& app) { return app.host().get<LogSettings>(); }

Json level_json(LogLevel l) { return Json(std::string(log_level_name(l))); }

// Per-Thread figures gathered on each Thread (stats and pollers are read on their owner).
struct ThreadSnap {
    std::string name;
    uint32_t id;
    uint32_t reactor;
    runtime::ThreadStats stats;
    std::vector<runtime::PollerInfo> pollers;
    std::vector<std::pair<std::string, uint32_t>> channels;  // io device name, references
};

struct Gather {
    std::vector<ThreadSnap> snaps;
    std::function<void(std::vector<ThreadSnap>&)> finish;
};

void gather_threads(std::function<void(std::vector<ThreadSnap>&)> finish) {
    auto* g = new Gather{{}, std::move(finish)};
    runtime::for_each_thread(
        [](void* ctx) {
            auto* g = static_cast<Gather*>(ctx);
            runtime::Thread* t = runtime::current_thread();
            std::vector<std::pair<std::string, uint32_t>> channels;
            for (const auto& [dev, ch] : t->channels_ref())
                channels.emplace_back(dev->io_device_name(), ch->ref_count());
            g->snaps.push_back(
                {t->name(), t->id(), t->reactor(), t->stats(), t->pollers(), std::move(channels)});
        },
        g,
        [](void* ctx) {
            std::unique_ptr<Gather> g(static_cast<Gather*>(ctx));
            std::sort(g->snaps.begin(), g->snaps.end(),
                      [](const ThreadSnap& a, const ThreadSnap& b) { return a.id < b.id; });
            g->finish(g->snaps);
        });
}

std::string cpumask_of(const runtime::Scheduler& s, uint32_t reactor) {
    auto rs = s.reactors();
    if (reactor < rs.size() && rs[reactor].core >= 0) {
        return fmt::format("{:x}", uint64_t{1} << (rs[reactor].core & 63));
    }
    return fmt::format("{:x}", uint64_t{1} << (reactor & 63));
}

constexpr uint64_t kTickRate = 1'000'000'000;  // figures are in nanoseconds

void reg(App& app, MethodSpec spec) {
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "built-in registration failed: %s", r.error().message().c_str());
}

void log_write_config(App& app, Json& cfg) {
    const LogSettings& ls = log_settings(app);
    cfg.push_back({{"method", "log_set_level"},
                   {"params", {{"level", level_json(ls.level.value_or(log_global_level()))}}}});
    cfg.push_back({{"method", "log_set_print_level"},
                   {"params", {{"level", level_json(ls.print_level)}}}});
    for (const std::string& flag : ls.flags)
        cfg.push_back({{"method", "log_set_flag"}, {"params", {{"flag", flag}}}});
    if (ls.timestamps)
        cfg.push_back(
            {{"method", "log_enable_timestamps"}, {"params", {{"enabled", *ls.timestamps}}}});
}

Result<void> set_flag(LogSettings& ls, std::string_view flag, bool on) {
    std::vector<LogComponent*> targets;
    if (flag == "all") {
        targets = log_components();
    } else if (LogComponent* c = log_find_component(flag)) {
        targets.push_back(c);
    } else {
        return Error(Errc::not_found, fmt::format("unknown log flag '{}'", flag));
    }
    for (LogComponent* c : targets) {
        if (on) {
            c->set_level(LogLevel::debug);
            ls.flags.insert(c->name());
        } else {
            c->set_level(std::nullopt);
            ls.flags.erase(c->name());
        }
    }
    return {};
}

}  // namespace

std::string_view version_string() noexcept { return "Strata v" STRATA_VERSION_STRING; }

void register_builtins(App& app) {
    App* a = &app;

    // --- subsystems ---
    (void)app.add_subsystem(Subsystem{"log", {}, nullptr, nullptr, &log_write_config});

    // --- rpc / framework ---
    reg(app, {"rpc_get_methods",
              "List the RPC methods, optionally only those callable in the current state.",
              {{"current", PT::bool_, false, "Only methods allowed in the current state",
                false},
               {"include_aliases", PT::bool_, false, "Also list alias names", false}},
              Allowed::both, "", true, [a](const Json& p, Responder r) {
                  bool current = param_or(p, "current", false);
                  bool aliases = param_or(p, "include_aliases", false);
                  Json out = Json::array();
                  for (const auto& name : a->registry().names(aliases)) {
                      const MethodSpec* m = a->registry().find(name);
                      if (current && !allowed_in(m->allowed, a->registry().state())) continue;
                      out.push_back(name);
                  }
                  r.result(std::move(out));
              }});
    reg(app, {"strata_get_version",
              "Version of the running Strata (same shape as SPDK's spdk_get_version).",
              {},
              Allowed::both, "", true, [](const Json&, Responder r) {
                  int major = 0, minor = 0, patch = 0;
                  std::sscanf(STRATA_VERSION_STRING, "%d.%d.%d", &major, &minor, &patch);
                  r.result({{"version", version_string()},
                            {"fields",
                             {{"major", major}, {"minor", minor}, {"patch", patch},
                              {"suffix", ""}}}});
              }});
    (void)app.registry().add_alias("spdk_get_version", "strata_get_version");
    reg(app, {"framework_start_init",
              "Initialize the subsystems (only with --wait-for-rpc, before anything needing "
              "them).",
              {},
              Allowed::startup, "", true, [a](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  a->start_init([rp](Result<void> res) {
                      if (res) {
                          rp->result(true);
                      } else {
                          rp->error(res.error());
                      }
                  });
              }});
    reg(app, {"framework_wait_init", "Reply once the framework is initialized.", {},
              Allowed::both, "", true, [a](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  a->wait_init([rp] { rp->result(true); });
              }});
    reg(app, {"framework_get_subsystems",
              "Subsystems in initialization order with their dependencies.",
              {},
              Allowed::both, "", true, [a](const Json&, Responder r) {
                  auto order = a->init_order();
                  if (!order) {
                      r.error(order.error());
                      return;
                  }
                  Json out = Json::array();
                  for (const Subsystem* s : *order) {
                      out.push_back({{"subsystem", s->name}, {"depends_on", s->depends_on}});
                  }
                  r.result(std::move(out));
              }});
    reg(app, {"save_config",
              "The whole configuration in the {\"subsystems\":[...]} layout load_config and "
              "--json accept.",
              {},
              Allowed::both, "", true,
              [a](const Json&, Responder r) { r.result(a->save_config()); }});
    reg(app, {"save_subsystem_config", "One subsystem's configuration.",
              {{"name", PT::string, true, "Subsystem name", nullptr}},
              Allowed::both, "", true, [a](const Json& p, Responder r) {
                  auto res = a->save_subsystem_config(p["name"].get<std::string>());
                  if (res) {
                      r.result(std::move(*res));
                  } else {
                      r.error(error_code::invalid_params, res.error().message());
                  }
              }});
    reg(app, {"load_config",
              "Apply a configuration: params is the config object itself "
              "({\"subsystems\":[...]}). Entries allowed in the current state are applied in "
              "subsystem dependency order; in the startup state framework_start_init follows "
              "and then the remaining entries.",
              {{"subsystems", PT::array, true,
                "Array of {\"subsystem\": name, \"config\": [{\"method\", \"params\"}]}",
                nullptr}},
              Allowed::both, "", true, [a](const Json& p, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  a->load_config(p, true, [rp](Result<void> res) {
                      if (res) {
                          rp->result(true);
                      } else {
                          rp->error(error_code::invalid_params, res.error().message());
                      }
                  });
              }});

    // --- log ---
    const ParamSpec level_param{"level", PT::string, true,
                                "ERROR, WARN, NOTICE, INFO or DEBUG (case-insensitive)",
                                nullptr};
    reg(app, {"log_set_level", "Set the global log level.", {level_param}, Allowed::both, "log",
              true, [a](const Json& p, Responder r) {
                  auto l = log_level_parse(p["level"].get<std::string>());
                  if (!l) {
                      r.error(error_code::invalid_params,
                              "Invalid parameters: 'level' must be one of ERROR, WARN, NOTICE, "
                              "INFO, DEBUG");
                      return;
                  }
                  log_set_global_level(*l);
                  log_settings(*a).level = *l;
                  r.result(true);
              }});
    reg(app, {"log_get_level", "The global log level.", {}, Allowed::both, "log", true,
              [](const Json&, Responder r) { r.result(level_json(log_global_level())); }});
    reg(app, {"log_set_print_level",
              "Set the print level (Strata has a single log sink: recorded and reported, and "
              "the global level decides what is printed).",
              {level_param}, Allowed::both, "log", true, [a](const Json& p, Responder r) {
                  auto l = log_level_parse(p["level"].get<std::string>());
                  if (!l) {
                      r.error(error_code::invalid_params,
                              "Invalid parameters: 'level' must be one of ERROR, WARN, NOTICE, "
                              "INFO, DEBUG");
                      return;
                  }
                  log_settings(*a).print_level = *l;
                  r.result(true);
              }});
    reg(app, {"log_get_print_level", "The print level.", {}, Allowed::both, "log", true,
              [a](const Json&, Responder r) {
                  r.result(level_json(log_settings(*a).print_level));
              }});
    const ParamSpec flag_param{"flag", PT::string, true,
                               "Log component name (see log_get_flags) or \"all\"", nullptr};
    reg(app, {"log_set_flag", "Enable debug logging for a component.", {flag_param},
              Allowed::both, "log", true, [a](const Json& p, Responder r) {
                  auto res = set_flag(log_settings(*a), p["flag"].get<std::string>(), true);
                  if (res) {
                      r.result(true);
                  } else {
                      r.error(error_code::invalid_params, res.error().message());
                  }
              }});
    reg(app, {"log_clear_flag",
              "Disable debug logging for a component (it follows the global level again).",
              {flag_param}, Allowed::both, "log", true, [a](const Json& p, Responder r) {
                  auto res = set_flag(log_settings(*a), p["flag"].get<std::string>(), false);
                  if (res) {
                      r.result(true);
                  } else {
                      r.error(error_code::invalid_params, res.error().message());
                  }
              }});
    reg(app, {"log_get_flags", "Every log component and whether its debug flag is set.", {},
              Allowed::both, "log", true, [](const Json&, Responder r) {
                  Json out = Json::object();
                  for (LogComponent* c : log_components()) {
                      auto l = c->level();
                      out[c->name()] = l.has_value() && *l == LogLevel::debug;
                  }
                  r.result(std::move(out));
              }});

    // --- threads and reactors ---
    reg(app, {"thread_get_stats",
              "Per-Thread busy/idle time (ticks are nanoseconds, tick_rate 1e9) and poller "
              "counts.",
              {},
              Allowed::runtime, "", true, [a](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  gather_threads([a, rp](std::vector<ThreadSnap>& snaps) {
                      Json threads = Json::array();
                      for (const auto& s : snaps) {
                          size_t active = 0, timed = 0, paused = 0;
                          for (const auto& p : s.pollers) {
                              if (p.paused) {
                                  paused++;
                              } else if (p.period_ns == 0) {
                                  active++;
                              } else {
                                  timed++;
                              }
                          }
                          threads.push_back({{"name", s.name},
                                             {"id", s.id},
                                             {"cpumask", cpumask_of(a->scheduler(), s.reactor)},
                                             {"busy", s.stats.busy_ns},
                                             {"idle", s.stats.idle_ns},
                                             {"active_pollers_count", active},
                                             {"timed_pollers_count", timed},
                                             {"paused_pollers_count", paused}});
                      }
                      rp->result({{"tick_rate", kTickRate}, {"threads", std::move(threads)}});
                  });
              }});
    reg(app, {"thread_get_pollers", "Pollers of every Thread with their run counts.", {},
              Allowed::runtime, "", true, [](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  gather_threads([rp](std::vector<ThreadSnap>& snaps) {
                      Json threads = Json::array();
                      for (const auto& s : snaps) {
                          Json active = Json::array(), timed = Json::array(),
                               paused = Json::array();
                          for (const auto& p : s.pollers) {
                              Json j = {{"name", p.name},
                                        {"state", p.paused ? "paused" : "waiting"},
                                        {"run_count", p.run_count},
                                        {"busy_count", p.busy_count}};
                              if (p.period_ns != 0) j["period_ticks"] = p.period_ns;
                              (p.paused ? paused : p.period_ns ? timed : active)
                                  .push_back(std::move(j));
                          }
                          threads.push_back({{"name", s.name},
                                             {"id", s.id},
                                             {"active_pollers", std::move(active)},
                                             {"timed_pollers", std::move(timed)},
                                             {"paused_pollers", std::move(paused)}});
                      }
                      rp->result({{"tick_rate", kTickRate}, {"threads", std::move(threads)}});
                  });
              }});
    reg(app, {"framework_get_reactors",
              "Reactors (one per core in the mask; one OS thread each in real mode) and the "
              "Threads placed on them.",
              {},
              Allowed::runtime, "", true, [a](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  gather_threads([a, rp](std::vector<ThreadSnap>& snaps) {
                      Json reactors = Json::array();
                      for (const auto& ri : a->scheduler().reactors()) {
                          uint64_t busy = 0, idle = 0;
                          Json lw = Json::array();
                          for (const auto& s : snaps) {
                              if (s.reactor != ri.index) continue;
                              busy += s.stats.busy_ns;
                              idle += s.stats.idle_ns;
                              lw.push_back({{"name", s.name},
                                            {"id", s.id},
                                            {"cpumask", cpumask_of(a->scheduler(), s.reactor)},
                                            {"elapsed", s.stats.busy_ns + s.stats.idle_ns}});
                          }
                          reactors.push_back({{"lcore", ri.core >= 0 ? ri.core : int(ri.index)},
                                              {"busy", busy},
                                              {"idle", idle},
                                              {"in_interrupt", false},
                                              {"irq_count", 0},
                                              {"sys", 0},
                                              {"usr", 0},
                                              {"lw_threads", std::move(lw)}});
                      }
                      rp->result({{"tick_rate", kTickRate},
                                  {"pid", static_cast<int64_t>(::getpid())},
                                  {"simulated", a->scheduler().simulated()},
                                  {"reactors", std::move(reactors)}});
                  });
              }});

    reg(app, {"thread_get_io_channels",
              "The io channels of every Thread: io device name and reference count.",
              {},
              Allowed::runtime,
              "",
              true,
              [](const Json&, Responder r) {
                  auto rp = std::make_shared<Responder>(std::move(r));
                  gather_threads([rp](std::vector<ThreadSnap>& snaps) {
                      Json threads = Json::array();
                      for (const auto& s : snaps) {
                          Json chs = Json::array();
                          for (const auto& [name, refs] : s.channels)
                              chs.push_back({{"name", name}, {"ref", refs}});
                          threads.push_back({{"name", s.name}, {"io_channels", std::move(chs)}});
                      }
                      rp->result({{"tick_rate", kTickRate}, {"threads", std::move(threads)}});
                  });
              }});
    reg(app, {"log_enable_timestamps",
              "Prefix log lines on stderr with [seconds.microseconds] (on by default). The "
              "sink is the process's: two Apps in one process share it.",
              {{"enabled", PT::bool_, true, "true: print timestamps", nullptr}},
              Allowed::both,
              "log",
              true,
              [a](const Json& p, Responder r) {
                  const bool on = p.at("enabled").get<bool>();
                  log_set_timestamps(on);
                  log_settings(*a).timestamps = on;
                  r.result(true);
              }});
    reg(app, {"framework_get_config",
              "The config entries of one subsystem (an array).",
              {{"name", PT::string, true, "Subsystem name", nullptr}},
              Allowed::runtime,
              "",
              true,
              [a](const Json& p, Responder r) {
                  const auto name = p.at("name").get<std::string>();
                  auto res = a->save_subsystem_config(name);
                  if (!res) {
                      r.error(error_code::invalid_params,
                              fmt::format("Subsystem '{}' not found", name));
                      return;
                  }
                  r.result(std::move((*res)["config"]));
              }});
    reg(app, {"spdk_kill_instance",
              "Stop the application as the signal would: SIGINT, SIGTERM, SIGQUIT, SIGHUP, "
              "SIGKILL or SIGUSR1 (name or number). Strata stops cleanly for each of them (a "
              "real SIGKILL would not let it); the reply is sent first.",
              {{"sig_name", PT::string, true, "Signal name or number", nullptr}},
              Allowed::runtime,
              "",
              true,
              [a](const Json& p, Responder r) {
                  static constexpr std::pair<const char*, int> kSignals[] = {
                      {"SIGINT", SIGINT}, {"SIGTERM", SIGTERM}, {"SIGQUIT", SIGQUIT},
                      {"SIGHUP", SIGHUP}, {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}};
                  const auto name = p.at("sig_name").get<std::string>();
                  char* end = nullptr;
                  const long num = std::strtol(name.c_str(), &end, 10);
                  const bool numeric = !name.empty() && end != nullptr && *end == '\0';
                  bool ok = false;
                  for (const auto& [sname, sig] : kSignals)
                      if (name == sname || (numeric && num == sig)) ok = true;
                  if (!ok) {
                      r.error(error_code::invalid_params, "Invalid parameters");
                      return;
                  }
                  r.result(true);
                  a->request_stop();
              }});
    register_spdk_compat(app);
}

}  // namespace strata::rpc
