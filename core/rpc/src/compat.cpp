// SPDK subsystems without a Strata module: iobuf, keyring, vmd, scheduler.
//
// A config saved by SPDK's spdk_tgt names them with their option setters; Strata accepts
// them so such a config loads. What has a Strata meaning is applied; the rest is recorded
// (and written back by save_config) with a notice, or refused when it asks for a feature
// Strata lacks (VMD, a dynamic scheduler).
#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/rpc/app.h>
#include <strata/rpc/params.h>
#include <strata/runtime/host.h>

#include "compat.h"

namespace strata::rpc {

namespace {

STRATA_LOG_COMPONENT(spdk_compat);

using PT = ParamType;

// iobuf_set_options values (SPDK's defaults) and the scheduler period, per App (Host slot).
struct CompatSettings {
    uint64_t small_pool_count = 8192;
    uint64_t large_pool_count = 1024;
    uint64_t small_bufsize = 8 * 1024;
    uint64_t large_bufsize = 132 * 1024;
    uint64_t scheduler_period_us = 1'000'000;  // SPDK's saved configs carry 1 s
};

CompatSettings& settings(App& app) {
    return app.host().get<CompatSettings>();
}

void reg(App& app, MethodSpec spec) {
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "compat registration failed: %s", r.error().message().c_str());
}

}  // namespace

void register_spdk_compat(App& app) {
    App* a = &app;
    (void)app.add_subsystem(Subsystem{"keyring", {}, nullptr, nullptr, nullptr});
    (void)app.add_subsystem(Subsystem{"iobuf", {}, nullptr, nullptr, [](App& app, Json& cfg) {
                                          const CompatSettings& s = settings(app);
                                          cfg.push_back({{"method", "iobuf_set_options"},
                                                         {"params",
                                                          {{"small_pool_count", s.small_pool_count},
                                                           {"large_pool_count", s.large_pool_count},
                                                           {"small_bufsize", s.small_bufsize},
                                                           {"large_bufsize", s.large_bufsize}}}});
                                      }});
    (void)app.add_subsystem(Subsystem{"vmd", {}, nullptr, nullptr, nullptr});
    (void)app.add_subsystem(Subsystem{
        "scheduler", {}, nullptr, nullptr, [](App& app, Json& cfg) {
            Json params = {{"name", "static"}, {"period", settings(app).scheduler_period_us}};
            cfg.push_back({{"method", "framework_set_scheduler"}, {"params", std::move(params)}});
        }});

    reg(app, {"iobuf_set_options",
              "SPDK's shared data-buffer pools. Accepted and recorded (save_config writes them "
              "back); Strata's modules keep their own DMA buffer caches, so the values change "
              "nothing (a notice is logged).",
              {{"small_pool_count", PT::uint, false, "Small buffers (recorded only)", 8192},
               {"large_pool_count", PT::uint, false, "Large buffers (recorded only)", 1024},
               {"small_bufsize", PT::uint, false, "Small buffer size (recorded only)", 8192},
               {"large_bufsize", PT::uint, false, "Large buffer size (recorded only)", 135168}},
              Allowed::startup,
              "iobuf",
              true,
              [a](const Json& p, Responder r) {
                  CompatSettings next = settings(*a);
                  for (auto [key, field] :
                       {std::pair{"small_pool_count", &CompatSettings::small_pool_count},
                        std::pair{"large_pool_count", &CompatSettings::large_pool_count}}) {
                      next.*field = param_or<uint64_t>(p, key, next.*field);
                  }
                  for (auto [key, field] :
                       {std::pair{"small_bufsize", &CompatSettings::small_bufsize},
                        std::pair{"large_bufsize", &CompatSettings::large_bufsize}}) {
                      auto v = int_param<uint32_t>(p, key, uint32_t(next.*field));
                      if (!v) {
                          r.error(v.error());
                          return;
                      }
                      next.*field = *v;
                  }
                  settings(*a) = next;
                  STRATA_NOTICELOG(log_spdk_compat,
                                   "iobuf_set_options: recorded, not applied (Strata has no "
                                   "shared iobuf pool)");
                  r.result(true);
              }});
    reg(app, {"iobuf_get_stats",
              "Per-module statistics of SPDK's shared buffer pools: Strata has none, so the "
              "list is empty.",
              {},
              Allowed::runtime,
              "iobuf",
              true,
              [](const Json&, Responder r) { r.result(Json::array()); }});
    reg(app, {"framework_set_scheduler",
              "Select the thread scheduler. Strata places Threads on reactors statically: "
              "\"static\" is accepted (its period recorded), any other is refused.",
              {{"name", PT::string, true, "Scheduler name: static", nullptr},
               {"period", PT::uint, false, "Scheduling period in us (recorded)", nullptr}},
              Allowed::both,
              "scheduler",
              true,
              [a](const Json& p, Responder r) {
                  const auto name = p.at("name").get<std::string>();
                  if (name != "static") {
                      r.error(Error(Errc::not_supported,
                                    fmt::format("framework_set_scheduler: scheduler '{}' needs "
                                                "moving Threads between reactors, which Strata "
                                                "does not support (only \"static\")",
                                                name)));
                      return;
                  }
                  // SPDK: a period of 0 or none keeps the current one.
                  auto period = int_param<uint64_t>(p, "period", 0);
                  if (*period != 0) settings(*a).scheduler_period_us = *period;
                  r.result(true);
              }});
    reg(app, {"framework_get_scheduler",
              "The thread scheduler in use (always static).",
              {},
              Allowed::both,
              "scheduler",
              true,
              [a](const Json&, Responder r) {
                  r.result({{"scheduler_name", "static"},
                            {"scheduler_period", settings(*a).scheduler_period_us},
                            {"isolated_core_mask", ""},
                            {"scheduling_core", 0}});
              }});
    reg(app, {"vmd_enable",
              "Intel VMD: not supported by Strata (refused with an error).",
              {},
              Allowed::startup,
              "vmd",
              true,
              [](const Json&, Responder r) {
                  r.error(Error(Errc::not_supported,
                                "vmd_enable: Intel Volume Management Device (VMD) support is "
                                "not part of Strata"));
              }});
}

}  // namespace strata::rpc
