// The accel subsystem's RPC methods (SPDK names and shapes) and its save_config section.
#include <fmt/format.h>

#include <strata/accel/accel.h>
#include <strata/accel/rpc.h>
#include <strata/rpc/app.h>

#include "internal.h"

namespace strata::accel {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

void add_rpc(rpc::App& app, rpc::MethodSpec spec) {
    spec.subsystem = "accel";
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "accel RPC registration failed: %s", r.error().message().c_str());
}

Json ops_json(const std::vector<Opcode>& ops) {
    Json out = Json::array();
    for (Opcode op : ops) out.push_back(std::string(opcode_name(op)));
    return out;
}

void write_config(rpc::App&, Json& cfg) {
    const FrameworkOptions o = options();
    const FrameworkOptions d{};
    if (o.task_count != d.task_count || o.batch_count != d.batch_count) {
        // batch_count is Strata's own: written only when set, so SPDK's decoder (which
        // refuses unknown parameters) reads a config that does not use it.
        Json params = {{"task_count", o.task_count}};
        if (o.batch_count != d.batch_count) params["batch_count"] = o.batch_count;
        cfg.push_back({{"method", "accel_set_options"}, {"params", std::move(params)}});
    }
    if (ioat_module_enabled()) cfg.push_back({{"method", "ioat_scan_accel_module"}});
    for (const auto& [op, module] : assignment_overrides())
        cfg.push_back({{"method", "accel_assign_opc"},
                       {"params", {{"opname", std::string(opcode_name(op))}, {"module", module}}}});
}

void subsystem_init(rpc::App&, std::function<void(Result<void>)> done) {
    done(accel::init());
}

void subsystem_fini(rpc::App&, std::function<void()> done) {
    auto* d = new std::function<void()>(std::move(done));
    accel::fini(
        [](void* ctx) {
            auto* f = static_cast<std::function<void()>*>(ctx);
            reset_config();
            (*f)();
            delete f;
        },
        d);
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    (void)app.add_subsystem(
        rpc::Subsystem{"accel", {}, &subsystem_init, &subsystem_fini, &write_config});

    add_rpc(app, {"accel_get_opc_assignments",
                  "Map of every accel operation name to the module it is routed to now.",
                  {},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json&, Responder r) {
                      Json out = Json::object();
                      for (size_t i = 0; i < kOpcodeCount; ++i) {
                          const auto op = static_cast<Opcode>(i);
                          out[std::string(opcode_name(op))] = assigned_module(op);
                      }
                      r.result(std::move(out));
                  }});
    add_rpc(app, {"accel_get_module_info",
                  "Accel modules with the operations each supports (\"supported ops\"), and "
                  "whether the module is started.",
                  {},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json&, Responder r) {
                      Json out = Json::array();
                      for (const auto& name : module_names()) {
                          auto ops = module_opcodes(name);
                          out.push_back({{"module", name},
                                         {"supported ops", ops_json(*ops)},
                                         {"started", module_started(name)}});
                      }
                      r.result(std::move(out));
                  }});
    add_rpc(app, {"accel_assign_opc",
                  "Route an operation to a module (copy, fill, compare, crc32c, copy_crc32c, "
                  "xor). Takes effect at once for ops submitted afterwards; an assigned module "
                  "that is not started (or has no channel on a Thread) leaves the op on the "
                  "default module.",
                  {{"opname", PT::string, true, "Operation name", nullptr},
                   {"module", PT::string, true, "Module name (software, ioat)", nullptr}},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      const auto opname = p.at("opname").get<std::string>();
                      auto op = opcode_from_name(opname);
                      if (!op) {
                          r.error(rpc::error_code::invalid_params,
                                  fmt::format("unknown opname '{}' (copy, fill, compare, crc32c, "
                                              "copy_crc32c, xor)",
                                              opname));
                          return;
                      }
                      auto res = assign_opc(*op, p.at("module").get<std::string>());
                      r.reply(res);
                  }});
    add_rpc(
        app,
        {"accel_set_options",
         "Set accel framework options (before framework_start_init).",
         {{"task_count", PT::uint, false,
           "Tasks per channel (ops outstanding per "
           "Thread before submits get busy), 1..1048576",
           2048},
          {"batch_count", PT::uint, false, "Batches outstanding per channel, 1..65536", 256},
          // SPDK's save_config always writes these: accepted so its configs load.
          {"small_cache_size", PT::uint, false, "SPDK iobuf cache option: accepted, no effect",
           nullptr},
          {"large_cache_size", PT::uint, false, "SPDK iobuf cache option: accepted, no effect",
           nullptr},
          {"sequence_count", PT::uint, false, "SPDK sequence option: accepted, no effect", nullptr},
          {"buf_count", PT::uint, false, "SPDK buffer option: accepted, no effect", nullptr}},
         rpc::Allowed::startup,
         "",
         true,
         [](const Json& p, Responder r) {
             FrameworkOptions o = options();
             const uint64_t tc = rpc::param_or<uint64_t>(p, "task_count", o.task_count);
             const uint64_t bc = rpc::param_or<uint64_t>(p, "batch_count", o.batch_count);
             if (tc > UINT32_MAX || bc > UINT32_MAX) {
                 r.error(rpc::error_code::invalid_params, "count out of range");
                 return;
             }
             o.task_count = static_cast<uint32_t>(tc);
             o.batch_count = static_cast<uint32_t>(bc);
             auto res = set_options(o);
             r.reply(res);
         }});
    add_rpc(
        app,
        {"accel_get_stats",
         "Accel statistics over every channel (live and gone): per operation executed, "
         "failed and bytes; per module ops; submits refused busy (\"retry\".\"task\"), "
         "hardware-to-software fallbacks and batches.",
         {},
         rpc::Allowed::runtime,
         "",
         true,
         [](const Json&, Responder r) {
             auto holder = std::make_shared<Responder>(std::move(r));
             get_stats([holder](const Stats& s) {
                 Json ops = Json::array();
                 for (size_t i = 0; i < kOpcodeCount; ++i)
                     ops.push_back({{"opcode", std::string(opcode_name(static_cast<Opcode>(i)))},
                                    {"executed", s.ops[i].executed},
                                    {"failed", s.ops[i].failed},
                                    {"num_bytes", s.ops[i].num_bytes}});
                 Json mods = Json::array();
                 const auto names = module_names();
                 for (size_t i = 0; i < names.size(); ++i)
                     mods.push_back({{"module", names[i]},
                                     {"executed", i < s.module_ops.size() ? s.module_ops[i] : 0}});
                 holder->result({{"sequence_executed", 0},
                                 {"sequence_failed", 0},
                                 {"operations", std::move(ops)},
                                 {"modules", std::move(mods)},
                                 {"retry", {{"task", s.busy}}},
                                 {"fallbacks", s.fallbacks},
                                 {"batches", s.batches}});
             });
         }});
    add_rpc(app, {"ioat_scan_accel_module",
                  "Enable the I/OAT accel module (copy and fill on I/OAT DMA channels, one per "
                  "Thread). Before init it starts with the framework; at run time it starts at "
                  "once and serves channels created afterwards.",
                  {},
                  rpc::Allowed::both,
                  "",
                  true,
                  [](const Json&, Responder r) {
                      auto res = enable_ioat_module();
                      r.reply(res);
                  }});
}

}  // namespace strata::accel
