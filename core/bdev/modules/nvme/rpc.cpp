// bdev_nvme_attach_controller / _detach_controller / _get_controllers / _reset_controller.
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>

#include "nvme/nvme.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

}  // namespace

void register_nvme_module(rpc::App& app) {
    register_module(kNvmeModule);
    add_rpc(app, {"bdev_nvme_attach_controller",
                  "Attach an NVMe controller (PCIe) and create a bdev per active namespace "
                  "(<name>n<nsid>). Returns the bdev names.",
                  {{"name", PT::string, true, "Controller name", nullptr},
                   {"trtype", PT::string, true, "Transport: PCIe (TCP: the NVMe-oF initiator, not yet)", nullptr},
                   {"traddr", PT::string, true, "PCI address, e.g. 0000:01:00.0", nullptr},
                   {"adrfam", PT::string, false, "Accepted for SPDK compatibility (fabrics only)", nullptr},
                   {"trsvcid", PT::string, false, "Accepted for SPDK compatibility (fabrics only)", nullptr},
                   {"subnqn", PT::string, false, "Accepted for SPDK compatibility (fabrics only)", nullptr},
                   {"hostnqn", PT::string, false, "Accepted for SPDK compatibility (fabrics only)", nullptr},
                   {"io_queue_size", PT::uint, false, "Entries per I/O queue", 256},
                   {"ctrlr_loss_timeout_sec", PT::int_, false, "Accepted; reconnect policy is reset-on-failure", nullptr},
                   {"timeout_us", PT::uint, false, "Command timeout (abort, then reset); 0: none", 0}},
                  rpc::Allowed::runtime, "", true, [](const Json& p, Responder r) {
                      const std::string trtype = p.at("trtype").get<std::string>();
                      if (trtype != "PCIe" && trtype != "pcie") {
                          r.error(Error(Errc::not_supported,
                                        fmt::format("trtype {} is not supported yet (PCIe only)", trtype)));
                          return;
                      }
                      auto addr = env::PciAddress::parse(p.at("traddr").get<std::string>());
                      if (!addr) {
                          r.error(addr.error());
                          return;
                      }
                      NvmeAttachOptions o;
                      o.name = p.at("name").get<std::string>();
                      o.address = *addr;
                      o.io_queue_entries = rpc::param_or<uint32_t>(p, "io_queue_size", 256);
                      o.controller.timeout_us = rpc::param_or<uint64_t>(p, "timeout_us", 0);
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
                                                                  {"trid", {{"trtype", "PCIe"}, {"traddr", c.traddr}}}}})},
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
