// The bdev subsystem's RPC methods (SPDK names and shapes) and its save_config section.
#include <fmt/format.h>

#include <strata/bdev/rpc.h>
#include <strata/rpc/app.h>

#include "internal.h"
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::ParamType;
using rpc::Responder;
using PT = rpc::ParamType;
using rpc::MethodSpec;


Json bdev_json(Bdev& b) {
    const QosLimits q = qos_limits(b);
    Json types = Json::object();
    for (size_t i = 0; i < kIoTypeCount; ++i) {
        const auto t = static_cast<IoType>(i);
        // What callers can use: the layer emulates write zeroes, compare, flush and reset.
        const bool emulated = t == IoType::write_zeroes || t == IoType::compare ||
                              t == IoType::compare_and_write || t == IoType::flush ||
                              t == IoType::reset || t == IoType::abort;
        types[io_type_name(t)] = b.supports(t) || emulated;
    }
    types["nvme_admin"] = false;
    types["nvme_io"] = false;
    Json driver = Json::object();
    b.info_json(driver);
    Json aliases = Json::array();
    for (const auto& a : b.properties().aliases) aliases.push_back(a);
    return {{"name", b.name()},
            {"aliases", aliases},
            {"product_name", b.properties().product_name},
            {"block_size", b.block_size()},
            {"num_blocks", b.num_blocks()},
            {"uuid", b.uuid()},
            {"assigned_rate_limits",
             {{"rw_ios_per_sec", q.rw_ios_per_sec},
              {"rw_mbytes_per_sec", q.rw_mbytes_per_sec},
              {"r_mbytes_per_sec", q.r_mbytes_per_sec},
              {"w_mbytes_per_sec", q.w_mbytes_per_sec}}},
            {"claimed", std::string(b.claimed_by()).size() != 0},
            {"claim_type", std::string(b.claimed_by()).empty() ? "none" : "exclusive_write"},
            {"zoned", false},
            {"optimal_io_boundary", b.properties().optimal_io_boundary},
            {"write_cache", b.properties().write_cache},
            {"supported_io_types", types},
            {"driver_specific", driver}};
}

Json iostat_json(const Bdev& b, const IoStats& s) {
    auto min0 = [](uint64_t v) { return v == UINT64_MAX ? 0 : v; };
    return {{"name", b.name()},
            {"bytes_read", s.bytes_read},
            {"num_read_ops", s.num_read_ops},
            {"bytes_written", s.bytes_written},
            {"num_write_ops", s.num_write_ops},
            {"bytes_unmapped", s.bytes_unmapped},
            {"num_unmap_ops", s.num_unmap_ops},
            {"num_write_zeroes_ops", s.num_write_zeroes_ops},
            {"num_flush_ops", s.num_flush_ops},
            {"num_reset_ops", s.num_reset_ops},
            {"num_compare_ops", s.num_compare_ops},
            {"num_compare_and_write_ops", s.num_compare_and_write_ops},
            {"read_latency_ticks", s.read_latency_ticks},
            {"max_read_latency_ticks", s.max_read_latency_ticks},
            {"min_read_latency_ticks", min0(s.min_read_latency_ticks)},
            {"write_latency_ticks", s.write_latency_ticks},
            {"max_write_latency_ticks", s.max_write_latency_ticks},
            {"min_write_latency_ticks", min0(s.min_write_latency_ticks)},
            {"io_error", s.io_errors},
            {"bounced", s.bounced},
            {"split", s.split},
            {"queued_nomem", s.queued_nomem},
            {"qos_queued", s.qos_queued},
            {"timed_out", s.timed_out},
            {"latency_histogram_log2_ns", s.latency_histogram}};
}

void write_config(rpc::App&, Json& cfg) {
    for (const Module* m : modules())
        if (m->write_config) m->write_config(cfg);
    for (Bdev* b : list()) {
        Json entry;
        b->config_json(entry);
        if (!entry.is_null()) cfg.push_back(std::move(entry));
        const QosLimits q = qos_limits(*b);
        if (q.rw_ios_per_sec || q.rw_mbytes_per_sec || q.r_mbytes_per_sec || q.w_mbytes_per_sec) {
            cfg.push_back({{"method", "bdev_set_qos_limit"},
                           {"params",
                            {{"name", b->name()},
                             {"rw_ios_per_sec", q.rw_ios_per_sec},
                             {"rw_mbytes_per_sec", q.rw_mbytes_per_sec},
                             {"r_mbytes_per_sec", q.r_mbytes_per_sec},
                             {"w_mbytes_per_sec", q.w_mbytes_per_sec}}}});
        }
    }
    cfg.push_back({{"method", "bdev_wait_for_examine"}});
}

// Subsystem fini: unregister every bdev (openers get Event::remove and close), then let each
// module release its own state, one after the other.
void fini(rpc::App&, std::function<void()> done) {
    struct Fini {
        std::function<void()> done;
        std::vector<const Module*> modules;
        size_t next = 0;
        int rounds = 0;
        static void unregister_round(std::shared_ptr<Fini> f) {
            auto bdevs = list();
            if (bdevs.empty() || ++f->rounds > 16) {
                next_module(f);
                return;
            }
            auto pending = std::make_shared<size_t>(bdevs.size());
            for (Bdev* b : bdevs) {
                unregister_bdev(b->name(), [f, pending](Result<void>) {
                    if (--*pending == 0) unregister_round(f);
                });
            }
        }
        static void next_module(std::shared_ptr<Fini> f) {
            while (f->next < f->modules.size() && f->modules[f->next]->fini == nullptr) ++f->next;
            if (f->next == f->modules.size()) {
                f->done();
                return;
            }
            const Module* m = f->modules[f->next++];
            m->fini([f] { next_module(f); });
        }
    };
    auto f = std::make_shared<Fini>();
    f->done = std::move(done);
    f->modules = modules();
    Fini::unregister_round(f);
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    // The explicit module table: each module registers its bdev::Module and its RPCs.
    register_malloc_module(app);
    register_null_module(app);
    register_nvme_module(app);
    register_aio_module(app);
    register_uring_module(app);
    register_error_module(app);
    register_delay_module(app);
    register_passthru_module(app);
    register_split_module(app);
    register_raid_module(app);
    register_virtio_module(app);
    (void)app.add_subsystem(rpc::Subsystem{"bdev", {}, nullptr, &fini, &write_config});

    add_rpc(app, {"bdev_get_bdevs",
              "List bdevs (or one by name or alias) with geometry, claims, QoS limits and "
              "supported I/O types.",
              {{"name", PT::string, false, "Bdev name or alias", nullptr},
               {"timeout", PT::uint, false, "Wait up to this many ms for the bdev (accepted for "
                                            "SPDK compatibility; examine is synchronous here)",
                0}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  Json out = Json::array();
                  if (auto it = p.find("name"); it != p.end() && !it->is_null()) {
                      Bdev* b = find(it->get<std::string>());
                      if (b == nullptr) {
                          r.error(Error(Errc::not_found,
                                        fmt::format("bdev {} not found", it->get<std::string>())));
                          return;
                      }
                      out.push_back(bdev_json(*b));
                  } else {
                      for (Bdev* b : list()) out.push_back(bdev_json(*b));
                  }
                  r.result(std::move(out));
              }});
    add_rpc(app, {"bdev_get_iostat",
              "I/O statistics per bdev (all channels, live and gone); latencies in ns "
              "(tick_rate 1e9).",
              {{"name", PT::string, false, "Only this bdev", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  std::vector<Bdev*> targets;
                  if (auto it = p.find("name"); it != p.end() && !it->is_null()) {
                      Bdev* b = find(it->get<std::string>());
                      if (b == nullptr) {
                          r.error(Error(Errc::not_found,
                                        fmt::format("bdev {} not found", it->get<std::string>())));
                          return;
                      }
                      targets.push_back(b);
                  } else {
                      targets = list();
                  }
                  struct Acc {
                      Responder r;
                      std::vector<Bdev*> targets;
                      size_t next = 0;
                      Json bdevs = Json::array();
                      static void step(std::shared_ptr<Acc> a) {
                          if (a->next == a->targets.size()) {
                              a->r.result({{"tick_rate", 1'000'000'000},
                                           {"ticks", runtime::now_ns()},
                                           {"bdevs", std::move(a->bdevs)}});
                              return;
                          }
                          Bdev* b = a->targets[a->next++];
                          get_iostat(*b, [a, b](const IoStats& s) {
                              a->bdevs.push_back(iostat_json(*b, s));
                              step(a);
                          });
                      }
                  };
                  auto acc = std::make_shared<Acc>();
                  acc->r = std::move(r);
                  acc->targets = std::move(targets);
                  Acc::step(acc);
              }});
    add_rpc(app, {"bdev_set_qos_limit",
              "Set QoS rate limits of a bdev (0 removes a limit); changeable at run time.",
              {{"name", PT::string, true, "Bdev name", nullptr},
               {"rw_ios_per_sec", PT::uint, false, "Read+write I/O per second", nullptr},
               {"rw_mbytes_per_sec", PT::uint, false, "Read+write MiB per second", nullptr},
               {"r_mbytes_per_sec", PT::uint, false, "Read MiB per second", nullptr},
               {"w_mbytes_per_sec", PT::uint, false, "Write MiB per second", nullptr}},
              rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                  Bdev* b = find(p.at("name").get<std::string>());
                  if (b == nullptr) {
                      r.error(Error(Errc::not_found, fmt::format("bdev {} not found",
                                                                 p.at("name").get<std::string>())));
                      return;
                  }
                  QosLimits q = qos_limits(*b);
                  q.rw_ios_per_sec = rpc::param_or<uint64_t>(p, "rw_ios_per_sec", q.rw_ios_per_sec);
                  q.rw_mbytes_per_sec =
                      rpc::param_or<uint64_t>(p, "rw_mbytes_per_sec", q.rw_mbytes_per_sec);
                  q.r_mbytes_per_sec = rpc::param_or<uint64_t>(p, "r_mbytes_per_sec", q.r_mbytes_per_sec);
                  q.w_mbytes_per_sec = rpc::param_or<uint64_t>(p, "w_mbytes_per_sec", q.w_mbytes_per_sec);
                  if (q.rw_ios_per_sec != 0 && q.rw_ios_per_sec < 1000) {
                      r.error(Error(Errc::invalid_argument,
                                    "rw_ios_per_sec must be 0 or at least 1000 (as in SPDK)"));
                      return;
                  }
                  auto res = set_qos_limits(*b, q);
                  if (!res) r.error(res.error());
                  else r.result(true);
              }});
    add_rpc(app, {"bdev_wait_for_examine",
              "Reply once every bdev has been examined by every module (lvol loads the stores "
              "it finds asynchronously; the other modules examine synchronously).",
              {}, rpc::Allowed::runtime, "", true, [](const Json&, Responder r) {
                  struct Wait {
                      Responder r;
                      std::vector<const Module*> mods;
                      size_t next = 0;
                      static void step(std::shared_ptr<Wait> w) {
                          while (w->next < w->mods.size() && w->mods[w->next]->wait_examine == nullptr)
                              ++w->next;
                          if (w->next == w->mods.size()) {
                              w->r.result(true);
                              return;
                          }
                          w->mods[w->next++]->wait_examine([w] { step(w); });
                      }
                  };
                  auto w = std::make_shared<Wait>();
                  w->r = std::move(r);
                  w->mods = modules();
                  Wait::step(w);
              }});
}

}  // namespace strata::bdev
