// The bdev subsystem's RPC methods (SPDK names and shapes) and its save_config section.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/bdev/rpc.h>
#include <strata/rpc/app.h>
#include <strata/rpc/params.h>
#include <strata/runtime/host.h>

#include "internal.h"
#include <strata/bdev/rpc_internal.h>

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::ParamType;
using rpc::Responder;
using PT = rpc::ParamType;
using rpc::MethodSpec;

// bdev_set_qd_sampling_period on one bdev (SPDK's qd poller): every period_us, on the Thread
// that set it, the I/O outstanding over every channel is summed (queue_depth); a sample that
// finds I/O adds the period to io_time and period x depth to weighted_io_time (us, as SPDK).
// A read-only desc keeps the bdev while sampling; its removal stops the sampler.
struct QdSampler : std::enable_shared_from_this<QdSampler> {
    std::unique_ptr<Desc> desc;
    runtime::Thread* thread = nullptr;
    runtime::Poller* poller = nullptr;
    uint64_t period_us = 0, queue_depth = 0, io_time = 0, weighted_io_time = 0;
    bool gathering = false, stopping = false;
};

// What the bdev RPCs set that the layer itself does not keep (a slot of the App's Host):
// bdev_set_options' values (accepted for SPDK configs; Strata's bdev_io pools are per Thread
// and sized at build time), queue-depth samplers, histogram switches.
struct BdevRpcSettings {
    uint64_t bdev_io_pool_size = 65535;
    uint64_t bdev_io_cache_size = 256;
    uint64_t iobuf_small_cache_size = 128;
    uint64_t iobuf_large_cache_size = 16;
    bool options_set = false;  // bdev_set_options called: still allowed only before init
    std::map<std::string, std::shared_ptr<QdSampler>> qd;  // bdev name -> sampler
    std::map<std::string, std::string> histogram;  // bdevs with histogram on -> opc ("": all)
};

BdevRpcSettings& settings() {
    return runtime::current_host().get<BdevRpcSettings>();
}

runtime::PollStatus qd_poll(void* p) {
    auto* s = static_cast<QdSampler*>(p);
    if (s->gathering || s->stopping) return runtime::PollStatus::idle;
    s->gathering = true;
    get_queue_depth(s->desc->bdev(), [s = s->shared_from_this()](uint64_t qd) {
        s->gathering = false;
        if (s->stopping) {
            s->desc.reset();  // stopped meanwhile: the desc waited for this sample
            return;
        }
        s->queue_depth = qd;
        if (qd != 0) {
            s->io_time += s->period_us;
            s->weighted_io_time += s->period_us * qd;
        }
    });
    return runtime::PollStatus::busy;
}

// On the sampler's Thread.
void qd_stop(QdSampler& s) {
    if (s.poller != nullptr) s.thread->unregister_poller(s.poller);
    s.stopping = true;
    if (!s.gathering) s.desc.reset();
}

// SPDK's spdk_bdev_set_qd_sampling_period: 0 stops (and forgets the counters); another period
// restarts the poller keeping them. On the app Thread.
Result<void> set_qd_sampling(const std::string& name, uint64_t period_us) {
    auto& qd = settings().qd;
    auto it = qd.find(name);
    if (period_us == 0) {
        if (it != qd.end()) {
            qd_stop(*it->second);
            qd.erase(it);
        }
        return {};
    }
    if (period_us > UINT64_MAX / 1000)
        return Error(Errc::invalid_argument, fmt::format("period {} us is too long", period_us));
    std::shared_ptr<QdSampler> s;
    if (it != qd.end()) {
        s = it->second;
        s->thread->unregister_poller(s->poller);
    } else {
        s = std::make_shared<QdSampler>();
        std::weak_ptr<QdSampler> weak = s;
        auto d = bdev::open(name, false, [weak, name](Event e, Bdev&) {
            if (e != Event::remove) return;
            // Not from inside the desc's own callback: the desc closes in qd_stop.
            (void)runtime::current_thread()->post([weak, name] {
                auto sp = weak.lock();
                if (!sp || sp->stopping) return;
                qd_stop(*sp);
                auto& m = settings().qd;
                if (auto f = m.find(name); f != m.end() && f->second == sp) m.erase(f);
            });
        });
        if (!d.ok()) return d.error();
        s->desc = std::move(*d);
        s->thread = runtime::current_thread();
        qd.emplace(name, s);
    }
    s->period_us = period_us;
    s->poller = s->thread->register_poller(&qd_poll, s.get(), "bdev_qd_sampling", period_us * 1000);
    return {};
}

// bdev_enable_histogram's opc: an I/O type by SPDK's name.
Result<IoType> histogram_type(const std::string& opc) {
    std::string names;
    for (size_t i = 0; i < kIoTypeCount; ++i) {
        const auto t = static_cast<IoType>(i);
        if (opc == io_type_name(t)) return t;
        names += names.empty() ? "" : ", ";
        names += io_type_name(t);
    }
    return Error(Errc::invalid_argument,
                 fmt::format("bdev_enable_histogram: opc '{}' is not an I/O type Strata has ({})",
                             opc, names));
}

Bdev* find_or_fail(const std::string& name, Responder& r) {
    Bdev* b = find(name);
    if (b == nullptr) r.error(Error(Errc::not_found, fmt::format("bdev {} not found", name)));
    return b;
}

// SPDK's histogram layout (include/spdk/histogram_data.h, bucket_shift 7): 58 ranges of 128
// buckets of uint64 counts, base64-encoded. Strata keeps log2 buckets (latency in
// [2^i, 2^(i+1)) ns); each goes to the SPDK bucket holding 2^i ticks at tsc_rate 1e9.
constexpr uint32_t kHistShift = 7;
Json spdk_histogram(const IoStats& s) {
    constexpr uint32_t lsb = 64 - kHistShift;
    std::vector<uint64_t> buckets(size_t(lsb + 1) << kHistShift, 0);
    for (size_t i = 0; i < s.latency_histogram.size(); ++i) {
        if (s.enabled_histogram[i] == 0) continue;
        const uint64_t v = uint64_t{1} << i;
        const uint32_t clz = uint32_t(__builtin_clzll(v));
        const uint32_t range = clz <= lsb ? lsb - clz : 0;
        const uint32_t shift = range == 0 ? 0 : range - 1;
        const uint32_t index = uint32_t((v >> shift) & ((uint64_t{1} << kHistShift) - 1));
        buckets[(size_t(range) << kHistShift) + index] += s.enabled_histogram[i];
    }
    return {{"histogram", rpc::base64_encode(buckets.data(), buckets.size() * sizeof(uint64_t))},
            {"bucket_shift", kHistShift},
            {"tsc_rate", 1'000'000'000}};
}

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
    Json out = {{"name", b.name()},
                {"aliases", aliases},
                {"product_name", b.properties().product_name},
                {"block_size", b.block_size()},
                {"num_blocks", b.num_blocks()},
                // SPDK's preferred-geometry hints; Strata's modules set none (SPDK's default 0).
                {"preferred_write_alignment", 0},
                {"preferred_write_granularity", 0},
                {"optimal_write_size", 0},
                {"preferred_unmap_alignment", 0},
                {"preferred_unmap_granularity", 0},
                {"uuid", b.uuid()},
                {"assigned_rate_limits",
                 {{"rw_ios_per_sec", q.rw_ios_per_sec},
                  {"rw_mbytes_per_sec", q.rw_mbytes_per_sec},
                  {"r_mbytes_per_sec", q.r_mbytes_per_sec},
                  {"w_mbytes_per_sec", q.w_mbytes_per_sec}}},
                {"claimed", std::string(b.claimed_by()).size() != 0},
                {"zoned", false},
                {"optimal_io_boundary", b.properties().optimal_io_boundary},
                {"write_cache", b.properties().write_cache},
                {"supported_io_types", types},
                {"driver_specific", driver}};
    // As SPDK: claim_type only for a claimed bdev (Strata's claims are exclusive_write).
    if (!std::string(b.claimed_by()).empty()) out["claim_type"] = "exclusive_write";
    return out;
}

Json iostat_json(const Bdev& b, const IoStats& s) {
    auto min0 = [](uint64_t v) { return v == UINT64_MAX ? 0 : v; };
    Json j = {{"name", b.name()},
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
    // As SPDK: only while queue depth is sampled.
    if (auto it = settings().qd.find(b.name()); it != settings().qd.end()) {
        const QdSampler& q = *it->second;
        j["queue_depth_polling_period"] = q.period_us;
        j["queue_depth"] = q.queue_depth;
        j["io_time"] = q.io_time;
        j["weighted_io_time"] = q.weighted_io_time;
    }
    return j;
}

void write_config(rpc::App&, Json& cfg) {
    const BdevRpcSettings& st = settings();
    cfg.push_back({{"method", "bdev_set_options"},
                   {"params",
                    {{"bdev_io_pool_size", st.bdev_io_pool_size},
                     {"bdev_io_cache_size", st.bdev_io_cache_size},
                     {"bdev_auto_examine", true},
                     {"iobuf_small_cache_size", st.iobuf_small_cache_size},
                     {"iobuf_large_cache_size", st.iobuf_large_cache_size}}}});
    // Modules may put their options first in what they write (nvme does): still after
    // bdev_set_options, as SPDK writes them.
    for (const Module* m : modules()) {
        if (!m->write_config) continue;
        Json part = Json::array();
        m->write_config(part);
        for (auto& e : part) cfg.push_back(std::move(e));
    }
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
        if (auto it = st.qd.find(b->name()); it != st.qd.end())
            cfg.push_back({{"method", "bdev_set_qd_sampling_period"},
                           {"params", {{"name", b->name()}, {"period", it->second->period_us}}}});
        if (auto it = st.histogram.find(b->name()); it != st.histogram.end()) {
            Json params = {{"name", b->name()}, {"enable", true}};
            if (!it->second.empty()) params["opc"] = it->second;
            cfg.push_back({{"method", "bdev_enable_histogram"}, {"params", std::move(params)}});
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

// Methods SPDK scripts and saved configs use (issue 17): options, examine, statistics.
void register_compat_methods(rpc::App& app) {
    add_rpc(
        app,
        {"bdev_set_options",
         "Set bdev layer options (SPDK's; before framework init). Accepted and recorded "
         "for save_config; Strata's bdev_io pools are per Thread and fixed in size, so the "
         "sizes do not change them (a notice is logged). bdev_auto_examine must be true.",
         {{"bdev_io_pool_size", PT::uint, false, "bdev_io pool size (recorded only)", 65535},
          {"bdev_io_cache_size", PT::uint, false, "Per-thread cache (recorded only)", 256},
          {"bdev_auto_examine", PT::bool_, false,
           "Examine new bdevs automatically (Strata always does: false is refused)", true},
          {"iobuf_small_cache_size", PT::uint, false, "Recorded only", 128},
          {"iobuf_large_cache_size", PT::uint, false, "Recorded only", 16}},
         rpc::Allowed::startup,
         "",
         true,
         [](const Json& p, Responder r) {
             if (!rpc::param_or(p, "bdev_auto_examine", true)) {
                 r.error(Error(Errc::not_supported,
                               "bdev_set_options: 'bdev_auto_examine' = false needs manual "
                               "examine, which Strata does not support (bdevs are always "
                               "examined when registered)"));
                 return;
             }
             BdevRpcSettings& st = settings();
             BdevRpcSettings next = st;
             for (auto [key, field] :
                  {std::pair{"bdev_io_pool_size", &BdevRpcSettings::bdev_io_pool_size},
                   std::pair{"bdev_io_cache_size", &BdevRpcSettings::bdev_io_cache_size},
                   std::pair{"iobuf_small_cache_size", &BdevRpcSettings::iobuf_small_cache_size},
                   std::pair{"iobuf_large_cache_size", &BdevRpcSettings::iobuf_large_cache_size}}) {
                 auto v = rpc::int_param<uint32_t>(p, key, uint32_t(next.*field));
                 if (!v) {
                     r.error(v.error());
                     return;
                 }
                 next.*field = *v;
             }
             next.options_set = true;
             st = next;
             STRATA_NOTICELOG(log_bdev,
                              "bdev_set_options: pool and cache sizes recorded, not applied "
                              "(Strata sizes its per-Thread bdev_io pools at build time)");
             r.result(true);
         }});
    add_rpc(app, {"bdev_examine",
                  "Examine a bdev by hand (SPDK: only with bdev_auto_examine false). Strata always "
                  "examines automatically, so this fails as SPDK does then.",
                  {{"name", PT::string, true, "Bdev name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json&, Responder r) {
                      r.error(Error(Errc::invalid_argument,
                                    "Manual examine is not allowed if auto examine is enabled"));
                  }});
    add_rpc(app, {"bdev_reset_iostat",
                  "Reset I/O statistics of one bdev or all: mode all (default) or maxmin (only the "
                  "max/min latencies).",
                  {{"name", PT::string, false, "Only this bdev", nullptr},
                   {"mode", PT::string, false, "all or maxmin", "all"}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      const auto mode = rpc::param_or<std::string>(p, "mode", "all");
                      if (mode != "all" && mode != "maxmin") {
                          r.error(Error(Errc::invalid_argument,
                                        fmt::format("mode '{}' is not all or maxmin", mode)));
                          return;
                      }
                      std::vector<Bdev*> targets;
                      if (auto it = p.find("name"); it != p.end() && !it->is_null()) {
                          Bdev* b = find_or_fail(it->get<std::string>(), r);
                          if (b == nullptr) return;
                          targets.push_back(b);
                      } else {
                          targets = list();
                      }
                      struct Acc {
                          Responder r;
                          std::vector<Bdev*> targets;
                          size_t next = 0;
                          bool maxmin = false;
                          static void step(std::shared_ptr<Acc> a) {
                              if (a->next == a->targets.size()) {
                                  a->r.result(true);
                                  return;
                              }
                              reset_iostat(*a->targets[a->next++], a->maxmin, [a] { step(a); });
                          }
                      };
                      auto acc = std::make_shared<Acc>();
                      acc->r = std::move(r);
                      acc->targets = std::move(targets);
                      acc->maxmin = mode == "maxmin";
                      Acc::step(acc);
                  }});
    add_rpc(app,
            {"bdev_enable_histogram",
             "Enable (from zero) or disable the latency histogram bdev_get_histogram reports: of "
             "every I/O type, or of one (opc). Strata's own log2 histogram in bdev_get_iostat "
             "counts every I/O always.",
             {{"name", PT::string, true, "Bdev name", nullptr},
              {"enable", PT::bool_, true, "true: enable, false: disable", nullptr},
              {"opc", PT::string, false,
               "Only this I/O type: read, write, write_zeroes, unmap, flush, reset, compare, "
               "compare_and_write or abort",
               nullptr}},
             rpc::Allowed::runtime,
             "",
             true,
             [](const Json& p, Responder r) {
                 Bdev* b = find_or_fail(p.at("name").get<std::string>(), r);
                 if (b == nullptr) return;
                 const std::string opc = rpc::param_or<std::string>(p, "opc", "");
                 std::optional<IoType> type;
                 if (!opc.empty()) {
                     auto t = histogram_type(opc);
                     if (!t.ok()) {
                         r.error(t.error());
                         return;
                     }
                     type = *t;
                 }
                 const bool enable = p.at("enable").get<bool>();
                 if (enable)
                     settings().histogram[b->name()] = opc;
                 else
                     settings().histogram.erase(b->name());
                 auto rp = std::make_shared<Responder>(std::move(r));
                 enable_histogram(*b, enable, type, [rp] { rp->result(true); });
             }});
    add_rpc(app, {"bdev_get_histogram",
                  "The latency histogram of a bdev in SPDK's encoding (base64 of 58 ranges x 128 "
                  "uint64 buckets, bucket_shift 7, tsc_rate 1e9: ticks are ns).",
                  {{"name", PT::string, true, "Bdev name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      Bdev* b = find_or_fail(p.at("name").get<std::string>(), r);
                      if (b == nullptr) return;
                      if (settings().histogram.count(b->name()) == 0) {
                          r.error(Error(Errc::invalid_argument,
                                        fmt::format("histogram of bdev {} is not enabled "
                                                    "(bdev_enable_histogram)",
                                                    b->name())));
                          return;
                      }
                      auto rp = std::make_shared<Responder>(std::move(r));
                      get_iostat(*b, [rp](const IoStats& s) { rp->result(spdk_histogram(s)); });
                  }});
    add_rpc(app,
            {"bdev_set_qd_sampling_period",
             "Sample a bdev's queue depth every period us (0: stop). While sampled, "
             "bdev_get_iostat reports queue_depth_polling_period, queue_depth (the last sample), "
             "io_time (us of samples that found I/O) and weighted_io_time (period x depth, "
             "summed), as SPDK.",
             {{"name", PT::string, true, "Bdev name", nullptr},
              {"period", PT::uint, true, "Period in microseconds; 0 disables", nullptr}},
             rpc::Allowed::runtime,
             "",
             true,
             [](const Json& p, Responder r) {
                 Bdev* b = find_or_fail(p.at("name").get<std::string>(), r);
                 if (b == nullptr) return;
                 auto res = set_qd_sampling(b->name(), p.at("period").get<uint64_t>());
                 if (!res.ok())
                     r.error(res.error());
                 else
                     r.result(true);
             }});
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
    register_rbd_module(app);
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
    add_rpc(
        app, {"bdev_get_iostat",
              "I/O statistics per bdev (all channels, live and gone); latencies in ns "
              "(tick_rate 1e9).",
              {{"name", PT::string, false, "Only this bdev", nullptr},
               {"per_channel", PT::bool_, false,
                "Statistics of each channel (thread_id and figures; needs name)", false}},
              rpc::Allowed::runtime,
              "",
              true,
              [](const Json& p, Responder r) {
                  if (rpc::param_or(p, "per_channel", false)) {
                      auto n = p.find("name");
                      if (n == p.end() || n->is_null()) {
                          r.error(Error(Errc::invalid_argument,
                                        "bdev name is required for per-channel statistics"));
                          return;
                      }
                      Bdev* b = find_or_fail(n->get<std::string>(), r);
                      if (b == nullptr) return;
                      auto rp = std::make_shared<Responder>(std::move(r));
                      get_channel_iostats(*b, [rp, b](const std::vector<ChannelIoStats>& chs) {
                          Json channels = Json::array();
                          for (const auto& c : chs) {
                              Json j = iostat_json(*b, c.stats);
                              j.erase("name");
                              j["thread_id"] = c.thread_id;
                              channels.push_back(std::move(j));
                          }
                          rp->result({{"tick_rate", 1'000'000'000},
                                      {"ticks", runtime::now_ns()},
                                      {"name", b->name()},
                                      {"channels", std::move(channels)}});
                      });
                      return;
                  }
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
                  static constexpr const char* kKeys[] = {"rw_ios_per_sec", "rw_mbytes_per_sec",
                                                          "r_mbytes_per_sec", "w_mbytes_per_sec"};
                  bool any = false;
                  for (const char* k : kKeys)
                      if (auto it = p.find(k); it != p.end() && !it->is_null()) any = true;
                  if (!any) {
                      r.error(Error(Errc::invalid_argument, "No rate limits specified"));
                      return;
                  }
                  QosLimits q = qos_limits(*b);
                  // SPDK rounds an IOPS limit up to a multiple of 1000 and caps MiB/s limits
                  // where bytes/s would overflow (spdk_bdev_set_qos_rate_limits).
                  auto ios = rpc::param_or<uint64_t>(p, "rw_ios_per_sec", q.rw_ios_per_sec);
                  if (ios % 1000 != 0) {
                      const uint64_t up =
                          ios > UINT64_MAX - 1000 ? ios - ios % 1000 : ios + 1000 - ios % 1000;
                      STRATA_NOTICELOG(log_bdev, "{}: rw_ios_per_sec {} rounded up to {}",
                                       b->name(), ios, up);
                      ios = up;
                  }
                  q.rw_ios_per_sec = ios;
                  constexpr uint64_t kMaxMib = UINT64_MAX / (1024 * 1024);
                  auto mib = [&](const char* k, uint64_t cur) {
                      return std::min(rpc::param_or<uint64_t>(p, k, cur), kMaxMib);
                  };
                  q.rw_mbytes_per_sec = mib("rw_mbytes_per_sec", q.rw_mbytes_per_sec);
                  q.r_mbytes_per_sec = mib("r_mbytes_per_sec", q.r_mbytes_per_sec);
                  q.w_mbytes_per_sec = mib("w_mbytes_per_sec", q.w_mbytes_per_sec);
                  auto res = set_qos_limits(*b, q);
                  r.reply(res);
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
    register_compat_methods(app);
}

}  // namespace strata::bdev
