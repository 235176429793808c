// bdev_nvme_attach_controller / _detach_controller / _get_controllers / _reset_controller.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/runtime/task.h>

#include "nvme/nvme.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

Json trid_json(const NvmeControllerInfo& c) {
    if (c.trid.trtype != nvme::TrType::tcp) return {{"trtype", "PCIe"}, {"traddr", c.traddr}};
    return {{"trtype", "TCP"},
            {"adrfam", nvme::adrfam_name(c.trid.adrfam)},
            {"traddr", c.trid.traddr},
            {"trsvcid", c.trid.trsvcid},
            {"subnqn", c.trid.subnqn}};
}

}  // namespace

void register_nvme_module(rpc::App& app) {
    register_module(kNvmeModule);
    add_rpc(app, {"bdev_nvme_attach_controller",
                  "Attach an NVMe controller (PCIe, or NVMe/TCP through the NVMe-oF initiator) and "
                  "create a bdev per active namespace (<name>n<nsid>). Returns the bdev names.",
                  {{"name", PT::string, true, "Controller name (-b)", nullptr},
                   {"trtype", PT::string, true, "Transport: PCIe or TCP (-t)", nullptr},
                   {"traddr", PT::string, true, "PCI address, or the target's IP address (-a)", nullptr},
                   {"adrfam", PT::string, false, "Address family: IPv4 or IPv6 (-f)", nullptr},
                   {"trsvcid", PT::string, false, "Target port (-s), default 4420", nullptr},
                   {"subnqn", PT::string, false, "Subsystem NQN (-n), required for TCP", nullptr},
                   {"hostnqn", PT::string, false, "Host NQN (-q); default nqn.2014-08.org.nvmexpress:uuid:<uuid>", nullptr},
                   {"hostaddr", PT::string, false, "Accepted; the local address is the system's choice", nullptr},
                   {"hostsvcid", PT::string, false, "Accepted; the local port is the system's choice", nullptr},
                   {"hdgst", PT::bool_, false, "TCP header digest (-e)", false},
                   {"ddgst", PT::bool_, false, "TCP data digest (-d)", false},
                   {"io_queue_size", PT::uint, false, "Entries per I/O queue", 256},
                   {"num_io_queues", PT::uint, false, "I/O queues to ask for", 64},
                   {"ctrlr_loss_timeout_sec", PT::int_, false, "Fabrics: give up reconnecting after this (-1: never, 0: one attempt)", 0},
                   {"reconnect_delay_sec", PT::uint, false, "Fabrics: delay between reconnect attempts", 0},
                   {"fast_io_fail_timeout_sec", PT::uint, false, "Fabrics: fail I/O after this while reconnecting (0: off)", 0},
                   {"keep_alive_timeout_ms", PT::uint, false, "Fabrics: KATO (SPDK sets it in bdev_nvme_set_options)", 10000},
                   {"fabrics_connect_timeout_us", PT::uint, false, "Fabrics: per-queue connect timeout", 10000000},
                   {"timeout_us", PT::uint, false, "Command timeout (abort, then reset); 0: none", 0}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      const std::string trtype = p.at("trtype").get<std::string>();
                      const nvme::TrType tt = nvme::parse_trtype(trtype);
                      NvmeAttachOptions o;
                      o.name = p.at("name").get<std::string>();
                      o.io_queue_entries = rpc::param_or<uint32_t>(p, "io_queue_size", 256);
                      o.controller.timeout_us = rpc::param_or<uint64_t>(p, "timeout_us", 0);
                      o.controller.io_queues_requested = rpc::param_or<uint32_t>(p, "num_io_queues", 64);
                      if (tt == nvme::TrType::pcie) {
                          auto addr = env::PciAddress::parse(p.at("traddr").get<std::string>());
                          if (!addr) {
                              r.error(addr.error());
                              return;
                          }
                          o.address = *addr;
                      } else if (tt == nvme::TrType::tcp) {
                          o.trid.trtype = tt;
                          o.trid.trstring = "TCP";
                          o.trid.traddr = p.at("traddr").get<std::string>();
                          o.trid.trsvcid = rpc::param_or<std::string>(p, "trsvcid", "4420");
                          o.trid.subnqn = rpc::param_or<std::string>(p, "subnqn", "");
                          if (o.trid.subnqn.empty()) {
                              r.error(Error(Errc::invalid_argument, "subnqn is required for trtype TCP"));
                              return;
                          }
                          const std::string af = rpc::param_or<std::string>(p, "adrfam", "");
                          if (!af.empty()) {
                              auto a = nvme::parse_adrfam(af);
                              if (!a || (*a != nvme::AdrFam::ipv4 && *a != nvme::AdrFam::ipv6)) {
                                  r.error(Error(Errc::invalid_argument,
                                                fmt::format("adrfam {} is not IPv4 or IPv6", af)));
                                  return;
                              }
                              o.trid.adrfam = *a;
                          }
                          auto& c = o.controller;
                          c.hostnqn = rpc::param_or<std::string>(p, "hostnqn", "");
                          c.header_digest = rpc::param_or<bool>(p, "hdgst", false);
                          c.data_digest = rpc::param_or<bool>(p, "ddgst", false);
                          c.ctrlr_loss_timeout_sec = rpc::param_or<int32_t>(p, "ctrlr_loss_timeout_sec", 0);
                          c.reconnect_delay_sec = rpc::param_or<uint32_t>(p, "reconnect_delay_sec", 0);
                          c.fast_io_fail_timeout_sec = rpc::param_or<uint32_t>(p, "fast_io_fail_timeout_sec", 0);
                          c.keep_alive_timeout_ms = rpc::param_or<uint32_t>(p, "keep_alive_timeout_ms", 10000);
                          c.connect_timeout_ms = static_cast<uint32_t>(
                              rpc::param_or<uint64_t>(p, "fabrics_connect_timeout_us", 10'000'000) / 1000);
                          // SPDK's rules for the three limits.
                          if (c.ctrlr_loss_timeout_sec < -1) {
                              r.error(Error(Errc::invalid_argument, "ctrlr_loss_timeout_sec must be -1 or more"));
                              return;
                          }
                          if (c.ctrlr_loss_timeout_sec != 0 && c.reconnect_delay_sec == 0) {
                              r.error(Error(Errc::invalid_argument,
                                            "reconnect_delay_sec must be non-zero when ctrlr_loss_timeout_sec is not 0"));
                              return;
                          }
                          if (c.ctrlr_loss_timeout_sec > 0 &&
                              (c.reconnect_delay_sec > static_cast<uint32_t>(c.ctrlr_loss_timeout_sec) ||
                               c.fast_io_fail_timeout_sec > static_cast<uint32_t>(c.ctrlr_loss_timeout_sec))) {
                              r.error(Error(Errc::invalid_argument,
                                            "reconnect_delay_sec and fast_io_fail_timeout_sec must not exceed "
                                            "ctrlr_loss_timeout_sec"));
                              return;
                          }
                      } else {
                          r.error(Error(Errc::not_supported,
                                        fmt::format("trtype {} is not supported (PCIe and TCP are)", trtype)));
                          return;
                      }
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_attach(o, [rp](Result<std::vector<std::string>> res) {
                          if (!res) {
                              rp->error(res.error());
                              return;
                          }
                          Json names = Json::array();
                          for (const auto& n : *res) names.push_back(n);
                          rp->result(std::move(names));
                      });
                  }});
    add_rpc(app, {"bdev_nvme_discover",
                  "Read the discovery log page of an NVMe-oF discovery controller and return its "
                  "entries (trtype, adrfam, traddr, trsvcid, subnqn, subtype, portid).",
                  {{"trtype", PT::string, true, "TCP", nullptr},
                   {"traddr", PT::string, true, "Discovery controller address", nullptr},
                   {"adrfam", PT::string, false, "IPv4 or IPv6", nullptr},
                   {"trsvcid", PT::string, false, "Port, default 8009", nullptr},
                   {"hostnqn", PT::string, false, "Host NQN", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      nvme::TransportId t;
                      t.trtype = nvme::parse_trtype(p.at("trtype").get<std::string>());
                      t.traddr = p.at("traddr").get<std::string>();
                      t.trsvcid = rpc::param_or<std::string>(p, "trsvcid", "8009");
                      nvme::ControllerOptions o;
                      o.hostnqn = rpc::param_or<std::string>(p, "hostnqn", "");
                      auto rp = std::make_shared<Responder>(std::move(r));
                      runtime::spawn(*runtime::current_thread(), nvme::Controller::discover(t, o),
                                     [rp](Result<std::vector<nvme::DiscoveryEntry>> res) {
                                         if (!res) {
                                             rp->error(res.error());
                                             return;
                                         }
                                         Json out = Json::array();
                                         for (const auto& e : *res)
                                             out.push_back({{"trtype", e.trid.trstring},
                                                            {"adrfam", nvme::adrfam_name(e.trid.adrfam)},
                                                            {"traddr", e.trid.traddr},
                                                            {"trsvcid", e.trid.trsvcid},
                                                            {"subnqn", e.trid.subnqn},
                                                            {"subtype", e.subtype},
                                                            {"portid", e.portid}});
                                         rp->result(std::move(out));
                                     });
                  }});
    add_rpc(app, {"bdev_nvme_detach_controller",
                  "Remove a controller's bdevs (after their openers close) and detach it.",
                  {{"name", PT::string, true, "Controller name", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_detach(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_nvme_reset_controller", "Reset a controller (its qpairs reconnect).",
                  {{"name", PT::string, true, "Controller name", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      nvme_reset(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res) rp->error(res.error());
                          else rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_nvme_get_controllers", "List attached NVMe controllers.",
                  {{"name", PT::string, false, "Only this controller", nullptr}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      const std::string only = rpc::param_or<std::string>(p, "name", "");
                      Json out = Json::array();
                      for (const auto& c : nvme_controllers()) {
                          if (!only.empty() && c.name != only) continue;
                          out.push_back({{"name", c.name},
                                         {"state", c.state},
                                         {"ctrlrs", Json::array({{{"state", c.state},
                                                                  {"trid", trid_json(c)}}})},
                                         {"bdevs", c.bdevs}});
                      }
                      if (!only.empty() && out.empty()) {
                          r.error(Error(Errc::not_found, fmt::format("NVMe controller {} not found", only)));
                          return;
                      }
                      r.result(std::move(out));
                  }});
}

}  // namespace strata::bdev
