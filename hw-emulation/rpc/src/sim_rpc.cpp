// sim_nvme_create / sim_nvme_delete / sim_nvme_inject_fault / sim_nvme_clear_faults /
// sim_nvme_power_cut / sim_nvme_add_namespace / sim_nvme_remove_namespace /
// sim_pci_surprise_remove / sim_get_devices; sim_ioat_create / sim_ioat_delete /
// sim_ioat_inject_fault / sim_ioat_clear_faults (I/OAT DMA channels for the accel ioat module).
//
// The emulated PCI bus and the device models live on their own Thread ("sim_devices"), created
// by the first device; RPC handlers run on the app Thread and hop there by message. All of it is
// per App (a slot of its runtime::Host): two Apps in one process (two Python Worlds, simulated
// hosts of one cluster) each have their own bus, so each may put a device at the same address.
#include <strata/hwemu/sim_rpc.h>

#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/env/env.h>
#include <strata/env/backend.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/ioat/channel_model.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/rpc/app.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::hwemu {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

// One kind of emulated device: its live models and the configs save_config writes back. The
// delete / inject_fault / clear_faults RPCs of every kind are one template over this.
template <class M, class C>
struct DeviceKind {
    using Model = M;
    using Config = C;
    const char* noun;                                  // in messages: "no emulated <noun> at ..."
    std::map<std::string, std::unique_ptr<M>> models;  // by "dddd:bb:dd.f"
    std::map<std::string, C> configs;

    Result<M*> find(const std::string& traddr) {
        auto it = models.find(traddr);
        if (it == models.end())
            return Error(Errc::not_found, fmt::format("no emulated {} at {}", noun, traddr));
        return it->second.get();
    }
    void erase(const std::string& traddr) {
        models.erase(traddr);
        configs.erase(traddr);
    }
    void clear() {
        models.clear();
        configs.clear();
    }
};

using NvmeKind = DeviceKind<nvme::Controller, nvme::ControllerConfig>;
using IoatKind = DeviceKind<ioat::ChannelModel, ioat::ModelConfig>;

// One App's emulated devices (a slot of its Host). The bus registers itself as the sim env
// backend's PCI provider of the Host it is created in: the devices' Thread works for the App's
// Host, so it is that Host's.
struct SimDevices {
    rpc::App* app = nullptr;
    runtime::Thread* thread = nullptr;
    std::unique_ptr<PciBus> bus;
    NvmeKind nvme{"NVMe controller", {}, {}};
    IoatKind ioat{"I/OAT channel", {}, {}};
};

// The running Thread's Host's: handlers run on the app Thread, models on the devices' Thread,
// both the App's.
SimDevices& devices() {
    return runtime::current_host().get<SimDevices>();
}

Result<void> require_sim() {
    // Like every other env call, the first use starts the default (sim) backend.
    if (!env::initialized()) (void)env::init();
    if (env::backend_name() != "sim")
        return Error(Errc::not_supported,
                     fmt::format("emulated devices need the sim environment (running on '{}')",
                                 env::backend_name()));
    if (devices().thread == nullptr) {  // first device: its Thread
        if (devices().app == nullptr) return Error(Errc::shutdown, "the sim subsystem is not registered");
        rpc::App& app = *devices().app;
        devices().thread = app.scheduler().create_thread("sim_devices", -1, &app.host());
    }
    return {};
}

// Runs fn on the devices' Thread and replies with its result.
void on_devices(Responder r, std::function<Result<Json>()> fn) {
    if (auto ok = require_sim(); !ok) {
        r.error(ok.error());
        return;
    }
    auto rp = std::make_shared<Responder>(std::move(r));
    (void)devices().thread->post([rp, fn = std::move(fn)] {
        auto res = fn();
        if (res) rp->result(std::move(*res));
        else rp->error(res.error());
    });
}

Result<nvme::ControllerConfig> parse_config(const Json& p) {
    nvme::ControllerConfig c;
    c.serial = rpc::param_or<std::string>(p, "serial", c.serial);
    c.model = rpc::param_or<std::string>(p, "model", c.model);
    c.mdts = static_cast<uint8_t>(rpc::param_or<uint32_t>(p, "mdts", c.mdts));
    c.max_queue_entries = rpc::param_or<uint32_t>(p, "max_queue_entries", c.max_queue_entries);
    c.max_io_queues = static_cast<uint16_t>(rpc::param_or<uint32_t>(p, "max_io_queues", c.max_io_queues));
    c.sgl = rpc::param_or<bool>(p, "sgl", false);
    c.volatile_write_cache = rpc::param_or<bool>(p, "volatile_write_cache", true);
    c.seed = rpc::param_or<uint64_t>(p, "seed", 1);
    const uint64_t read_us = rpc::param_or<uint64_t>(p, "read_latency_us", 0);
    const uint64_t write_us = rpc::param_or<uint64_t>(p, "write_latency_us", 0);
    if (read_us) c.io_latency[0x02] = nvme::LatencySpec{nvme::LatencySpec::Kind::fixed, read_us * 1000, 0};
    if (write_us) c.io_latency[0x01] = nvme::LatencySpec{nvme::LatencySpec::Kind::fixed, write_us * 1000, 0};
    if (auto ns = p.find("namespaces"); ns != p.end()) {
        if (!ns->is_array()) return Error(Errc::invalid_argument, "'namespaces' must be an array");
        for (const auto& n : *ns) {
            if (!n.is_object()) return Error(Errc::invalid_argument, "a namespace is an object");
            nvme::NamespaceConfig nc;
            nc.nsid = n.value("nsid", static_cast<uint32_t>(c.namespaces.size() + 1));
            nc.num_blocks = n.value("num_blocks", uint64_t{0});
            nc.block_size_bytes = n.value("block_size", 512u);
            nc.backing_file = n.value("backing_file", std::string());
            c.namespaces.push_back(nc);
        }
    }
    return c;
}

Json config_json(const std::string& traddr, const nvme::ControllerConfig& c) {
    Json ns = Json::array();
    for (const auto& n : c.namespaces)
        ns.push_back({{"nsid", n.nsid}, {"num_blocks", n.num_blocks}, {"block_size", n.block_size_bytes},
                      {"backing_file", n.backing_file}});
    Json p = {{"traddr", traddr}, {"serial", c.serial}, {"model", c.model}, {"mdts", c.mdts},
              {"max_queue_entries", c.max_queue_entries}, {"max_io_queues", c.max_io_queues},
              {"sgl", c.sgl}, {"volatile_write_cache", c.volatile_write_cache}, {"seed", c.seed},
              {"namespaces", ns}};
    if (auto it = c.io_latency.find(0x02); it != c.io_latency.end()) p["read_latency_us"] = it->second.a_ns / 1000;
    if (auto it = c.io_latency.find(0x01); it != c.io_latency.end()) p["write_latency_us"] = it->second.a_ns / 1000;
    return p;
}

Result<std::string> canonical(const Json& p) {
    auto a = env::PciAddress::parse(p.at("traddr").get<std::string>());
    if (!a) return a.error();
    return a->to_string();
}

Result<ioat::ModelConfig> parse_ioat_config(const Json& p) {
    ioat::ModelConfig c;
    const uint64_t xfercap = rpc::param_or<uint64_t>(p, "xfercap_log2", c.xfercap_log2);
    if (xfercap > 31) return Error(Errc::invalid_argument, "'xfercap_log2' must be 0 or 12..31");
    c.xfercap_log2 = static_cast<uint8_t>(xfercap);
    c.fill = rpc::param_or<bool>(p, "fill", c.fill);
    c.per_descriptor_ns = rpc::param_or<uint64_t>(p, "per_descriptor_ns", 0);
    c.bandwidth_bytes_per_us = rpc::param_or<uint64_t>(p, "bandwidth_mb_per_s", 0);  // 1 MB/s == 1 B/us
    c.seed = rpc::param_or<uint64_t>(p, "seed", 1);
    return c;
}

Json ioat_config_json(const std::string& traddr, const ioat::ModelConfig& c) {
    return {{"traddr", traddr}, {"xfercap_log2", c.xfercap_log2}, {"fill", c.fill},
            {"per_descriptor_ns", c.per_descriptor_ns},
            {"bandwidth_mb_per_s", c.bandwidth_bytes_per_us}, {"seed", c.seed}};
}

// The emulated bus, created by the first device of this subsystem (devices' Thread).
Result<PciBus*> ensure_bus() {
    SimDevices& d = devices();
    if (!d.bus) {
        // One emulated bus per Host: the World's own device API (bindings) or a test may already
        // have put one in this App's Host.
        if (env::backend::sim_pci_provider() != nullptr)
            return Error(Errc::busy,
                         "another emulated PCI bus is in use in this App (e.g. devices added "
                         "with the Python World API); use one or the other");
        d.bus = std::make_unique<PciBus>();
    }
    return d.bus.get();
}

void add(rpc::App& app, rpc::MethodSpec spec) {
    spec.subsystem = "sim";
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "sim RPC registration failed: %s", r.error().message().c_str());
}

// A handler whose params carry a "traddr": a bad address is the reply, otherwise fn gets its
// canonical form.
template <class Fn>
rpc::Handler by_address(Fn fn) {
    return [fn = std::move(fn)](const Json& p, Responder r) {
        auto addr = canonical(p);
        if (!addr) {
            r.error(addr.error());
            return;
        }
        fn(p, std::move(*addr), std::move(r));
    };
}

// Runs fn(model) on the devices' Thread for the device of `kind` at addr and replies with its
// result (not_found when there is none).
template <class Kind, class Fn>
void on_device(Responder r, Kind SimDevices::*kind, std::string addr, Fn fn) {
    on_devices(std::move(r), [kind, addr = std::move(addr), fn = std::move(fn)]() -> Result<Json> {
        auto m = (devices().*kind).find(addr);
        if (!m) return m.error();
        return fn(**m);
    });
}

// Devices' Thread: a new model of `kind` at addr (on the bus the first device creates).
template <class Kind>
Result<Json> create_device(Kind SimDevices::*kind, const std::string& addr,
                           const typename Kind::Config& cfg) {
    SimDevices& d = devices();
    if (d.nvme.models.count(addr) != 0 || d.ioat.models.count(addr) != 0)
        return Error(Errc::already_exists,
                     fmt::format("an emulated device already sits at {}", addr));
    auto bus = ensure_bus();
    if (!bus) return bus.error();
    auto m = Kind::Model::create(**bus, *env::PciAddress::parse(addr), cfg, *d.thread);
    if (!m) return m.error();
    (d.*kind).models[addr] = std::move(*m);
    (d.*kind).configs[addr] = cfg;
    return Json(addr);
}

// <prefix>_delete. may_remove (nullptr: always) refuses a model that cannot go away now.
template <class Kind>
void add_delete_rpc(rpc::App& app, const std::string& prefix, std::string description,
                    Kind SimDevices::*kind,
                    Result<void> (*may_remove)(typename Kind::Model&, const std::string&)) {
    add(app, {prefix + "_delete", std::move(description),
              {{"traddr", PT::string, true, "PCI address", nullptr}},
              rpc::Allowed::runtime, "", true,
              by_address([kind, may_remove](const Json&, std::string addr, Responder r) {
                  on_device(std::move(r), kind, addr,
                            [kind, may_remove, addr](typename Kind::Model& m) -> Result<Json> {
                                if (may_remove != nullptr)
                                    if (auto ok = may_remove(m, addr); !ok) return ok.error();
                                (devices().*kind).erase(addr);
                                return Json(true);
                            });
              })});
}

// <prefix>_inject_fault and <prefix>_clear_faults over the model's faults() plan.
template <class Kind>
void add_fault_rpcs(rpc::App& app, const std::string& prefix, std::string inject_description,
                    std::string clear_description, Kind SimDevices::*kind) {
    add(app, {prefix + "_inject_fault", std::move(inject_description),
              {{"traddr", PT::string, true, "PCI address", nullptr},
               {"rule", PT::object, true, "The fault rule", nullptr}},
              rpc::Allowed::runtime, "", true,
              by_address([kind](const Json& p, std::string addr, Responder r) {
                  auto rule = fault_rule_from_json(p.at("rule"));
                  if (!rule) {
                      r.error(rule.error());
                      return;
                  }
                  on_device(std::move(r), kind, std::move(addr),
                            [rule = *rule](typename Kind::Model& m) -> Result<Json> {
                                return Json(m.faults().add(rule));
                            });
              })});
    add(app, {prefix + "_clear_faults", std::move(clear_description),
              {{"traddr", PT::string, true, "PCI address", nullptr}},
              rpc::Allowed::runtime, "", true,
              by_address([kind](const Json&, std::string addr, Responder r) {
                  on_device(std::move(r), kind, std::move(addr),
                            [](typename Kind::Model& m) -> Result<Json> {
                                m.faults().clear();
                                return Json(true);
                            });
              })});
}

// sim_ioat_delete is the orderly removal, so a channel a driver holds is refused; pulling one from
// under a driver is what sim_pci_surprise_remove is for.
Result<void> ioat_may_remove(ioat::ChannelModel& m, const std::string& addr) {
    if (m.function().claimed())
        return Error(Errc::busy, fmt::format("the emulated I/OAT channel at {} is in use by a "
                                             "driver (stop the accel framework first)",
                                             addr));
    return {};
}

}  // namespace

void register_sim_rpc_module(rpc::App& app) {
    app.host().get<SimDevices>().app = &app;
    (void)app.add_subsystem(rpc::Subsystem{
        "sim",
        {},
        nullptr,
        [](rpc::App& a, std::function<void()> done) {
            SimDevices& d = a.host().get<SimDevices>();
            if (d.thread == nullptr) {
                done();
                return;
            }
            // Models go on their own Thread; the bus after them.
            (void)d.thread->post([done = std::move(done)] {
                SimDevices& dv = devices();
                dv.nvme.clear();
                dv.ioat.clear();
                dv.bus.reset();
                dv.thread->request_exit();
                dv.thread = nullptr;
                dv.app = nullptr;
                done();
            });
        },
        [](rpc::App& a, Json& cfg) {
            SimDevices& d = a.host().get<SimDevices>();
            for (const auto& [addr, c] : d.nvme.configs)
                cfg.push_back({{"method", "sim_nvme_create"}, {"params", config_json(addr, c)}});
            for (const auto& [addr, c] : d.ioat.configs)
                cfg.push_back({{"method", "sim_ioat_create"}, {"params", ioat_config_json(addr, c)}});
        }});

    add(app, {"sim_nvme_create",
              "Create an emulated NVMe controller (sim environment only) at a PCI address, ready "
              "for bdev_nvme_attach_controller.",
              {{"traddr", PT::string, true, "PCI address, e.g. 0000:01:00.0", nullptr},
               {"namespaces", PT::array, false, "[{nsid, num_blocks, block_size (512|4096), backing_file}] "
                                                "(default: one 1 GiB 512-byte namespace)", nullptr},
               {"serial", PT::string, false, "Serial number", nullptr},
               {"model", PT::string, false, "Model number", nullptr},
               {"mdts", PT::uint, false, "Max transfer 2^mdts x 4 KiB (0: none)", 5},
               {"max_queue_entries", PT::uint, false, "CAP.MQES + 1", 1024},
               {"max_io_queues", PT::uint, false, "I/O queues offered", 64},
               {"sgl", PT::bool_, false, "Advertise SGLs", false},
               {"volatile_write_cache", PT::bool_, false, "A volatile write cache (lost at power cut)", true},
               {"read_latency_us", PT::uint, false, "Fixed read latency (virtual time under the sim scheduler)", 0},
               {"write_latency_us", PT::uint, false, "Fixed write latency", 0},
               {"seed", PT::uint, false, "Seed of the model's randomness (faults, torn writes)", 1}},
              rpc::Allowed::both, "", true,
              by_address([](const Json& p, std::string addr, Responder r) {
                  auto cfg = parse_config(p);
                  if (!cfg) {
                      r.error(cfg.error());
                      return;
                  }
                  on_devices(std::move(r), [addr = std::move(addr), cfg = *cfg] {
                      return create_device(&SimDevices::nvme, addr, cfg);
                  });
              })});
    // Under load (a driver still attached) this is a hot removal, and logged as one.
    add_delete_rpc(app, "sim_nvme",
                   "Remove an emulated NVMe controller (detach its bdev_nvme first).",
                   &SimDevices::nvme, nullptr);
    add_fault_rpcs(app, "sim_nvme",
                   "Add a fault rule (hw-emulation fault plan, JSON form: action, opcode, "
                   "lba_first, lba_last, nth, probability, max_hits, sct/sc, delay_us, torn) to an "
                   "emulated controller. Returns the rule id.",
                   "Remove every fault rule of an emulated controller.", &SimDevices::nvme);
    add(app, {"sim_nvme_power_cut",
              "Cut an emulated controller's power: un-flushed writes are lost (torn: cut at a "
              "random sector), the controller comes back in its reset state.",
              {{"traddr", PT::string, true, "PCI address", nullptr},
               {"torn", PT::bool_, false, "Tear lost writes at sector granularity", false}},
              rpc::Allowed::runtime, "", true,
              by_address([](const Json& p, std::string addr, Responder r) {
                  const bool torn = rpc::param_or<bool>(p, "torn", false);
                  on_device(std::move(r), &SimDevices::nvme, std::move(addr),
                            [torn](nvme::Controller& m) -> Result<Json> {
                                m.power_cut(torn);
                                return Json(true);
                            });
              })});
    add(app, {"sim_nvme_add_namespace", "Add a namespace to an emulated controller (raises an AEN).",
              {{"traddr", PT::string, true, "PCI address", nullptr},
               {"nsid", PT::uint, true, "Namespace id", nullptr},
               {"num_blocks", PT::uint, true, "Blocks", nullptr},
               {"block_size", PT::uint, false, "512 or 4096", 512}},
              rpc::Allowed::runtime, "", true,
              by_address([](const Json& p, std::string addr, Responder r) {
                  nvme::NamespaceConfig nc;
                  nc.nsid = p.at("nsid").get<uint32_t>();
                  nc.num_blocks = p.at("num_blocks").get<uint64_t>();
                  nc.block_size_bytes = rpc::param_or<uint32_t>(p, "block_size", 512);
                  on_device(std::move(r), &SimDevices::nvme, addr,
                            [addr, nc](nvme::Controller& m) -> Result<Json> {
                                auto res = m.add_namespace(nc);
                                if (!res) return res.error();
                                devices().nvme.configs[addr].namespaces.push_back(nc);
                                return Json(true);
                            });
              })});
    add(app, {"sim_nvme_remove_namespace", "Remove a namespace of an emulated controller (raises an AEN).",
              {{"traddr", PT::string, true, "PCI address", nullptr},
               {"nsid", PT::uint, true, "Namespace id", nullptr}},
              rpc::Allowed::runtime, "", true,
              by_address([](const Json& p, std::string addr, Responder r) {
                  const uint32_t nsid = p.at("nsid").get<uint32_t>();
                  on_device(std::move(r), &SimDevices::nvme, addr,
                            [addr, nsid](nvme::Controller& m) -> Result<Json> {
                                auto res = m.remove_namespace(nsid);
                                if (!res) return res.error();
                                auto& v = devices().nvme.configs[addr].namespaces;
                                std::erase_if(v, [nsid](const auto& n) { return n.nsid == nsid; });
                                return Json(true);
                            });
              })});
    add(app, {"sim_pci_surprise_remove", "Take an emulated function off the bus (hot removal).",
              {{"traddr", PT::string, true, "PCI address", nullptr}},
              rpc::Allowed::runtime, "", true,
              by_address([](const Json&, std::string addr, Responder r) {
                  on_devices(std::move(r), [addr = std::move(addr)]() -> Result<Json> {
                      if (!devices().bus) return Error(Errc::not_found, "no emulated device exists");
                      auto res = devices().bus->surprise_remove(*env::PciAddress::parse(addr));
                      if (!res) return res.error();
                      devices().nvme.configs.erase(addr);  // a removed device is not saved
                      devices().ioat.configs.erase(addr);
                      return Json(true);
                  });
              })});
    add(app, {"sim_get_devices", "Emulated devices with their statistics.", {},
              rpc::Allowed::both, "", true, [](const Json&, Responder r) {
                  if (devices().thread == nullptr) {
                      r.result(Json::array());
                      return;
                  }
                  on_devices(std::move(r), []() -> Result<Json> {
                      Json out = Json::array();
                      for (auto& [addr, m] : devices().nvme.models) {
                          const auto s = m->stats();
                          out.push_back({{"type", "nvme"},
                                         {"traddr", addr},
                                         {"serial", m->config().serial},
                                         {"removed", m->function().removed()},
                                         {"stats",
                                          {{"commands", s.commands},
                                           {"admin_commands", s.admin_commands},
                                           {"completions", s.completions},
                                           {"injected_errors", s.injected_errors},
                                           {"dropped_completions", s.dropped_completions},
                                           {"invalid_doorbells", s.invalid_doorbells},
                                           {"dma_faults", s.dma_faults}}},
                                         {"faults", m->faults().size()}});
                      }
                      for (auto& [addr, m] : devices().ioat.models) {
                          const auto s = m->stats();
                          out.push_back({{"type", "ioat"},
                                         {"traddr", addr},
                                         {"removed", m->function().removed()},
                                         {"chanerr", m->chanerr()},
                                         {"stats",
                                          {{"descriptors", s.descriptors},
                                           {"bytes", s.bytes},
                                           {"doorbells", s.doorbells},
                                           {"completion_writes", s.completion_writes},
                                           {"dropped_completions", s.dropped_completions},
                                           {"halts", s.halts},
                                           {"resets", s.resets},
                                           {"injected_faults", s.injected_faults}}},
                                         {"faults", m->faults().size()}});
                      }
                      return out;
                  });
              }});
    add(app, {"sim_ioat_create",
              "Create an emulated Intel I/OAT v3 DMA channel (sim environment only) at a PCI "
              "address, found by ioat_scan_accel_module.",
              {{"traddr", PT::string, true, "PCI address, e.g. 0000:00:04.0", nullptr},
               {"xfercap_log2", PT::uint, false, "XFERCAP: bytes per descriptor 2^n (0: 4 GiB)", 20},
               {"fill", PT::bool_, false, "Advertise block fill (DMACAPABILITY)", true},
               {"per_descriptor_ns", PT::uint, false, "Latency model: fixed time per descriptor", 0},
               {"bandwidth_mb_per_s", PT::uint, false, "Latency model: bandwidth (0: unlimited)", 0},
               {"seed", PT::uint, false, "Seed of the model's fault plan", 1}},
              rpc::Allowed::both, "", true,
              by_address([](const Json& p, std::string addr, Responder r) {
                  auto cfg = parse_ioat_config(p);
                  if (!cfg) {
                      r.error(cfg.error());
                      return;
                  }
                  on_devices(std::move(r), [addr = std::move(addr), cfg = *cfg] {
                      return create_device(&SimDevices::ioat, addr, cfg);
                  });
              })});
    add_delete_rpc(app, "sim_ioat",
                   "Remove an emulated I/OAT channel (stop the accel framework using it first; to "
                   "pull it from under a running driver use sim_pci_surprise_remove).",
                   &SimDevices::ioat, &ioat_may_remove);
    add_fault_rpcs(app, "sim_ioat",
                   "Add a fault rule (hw-emulation fault plan, JSON form; matched per descriptor: "
                   "opcode = descriptor op, lba = destination IOVA) to an emulated I/OAT channel. "
                   "Returns the rule id.",
                   "Remove every fault rule of an emulated I/OAT channel.", &SimDevices::ioat);
}

}  // namespace strata::hwemu
