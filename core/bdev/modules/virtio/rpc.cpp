// bdev_virtio_attach_controller / bdev_virtio_detach_controller / bdev_virtio_scsi_get_devices /
// bdev_virtio_blk_set_hotplug (SPDK's names and parameters).
#include <fmt/format.h>

#include <strata/bdev/rpc_internal.h>
#include <strata/runtime/host.h>

#include "virtio/virtio.h"

namespace strata::bdev {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

// bdev_virtio_blk_set_hotplug's setting of one Host. PCI hotplug monitoring needs the virtio-pci
// transport (planned), so only "off" is accepted today; kept to answer and save it.
struct VirtioHotplug {
    bool enable = false;
    uint64_t period_us = 0;
};

}  // namespace

void register_virtio_module(rpc::App& app) {
    register_module(kVirtioBlkModule);
    register_module(kVirtioScsiModule);
    add_rpc(
        app,
        {"bdev_virtio_attach_controller",
         "Attach a virtio device and create bdevs on it: virtio_blk gives one bdev named as "
         "the controller; virtio_scsi scans LUN 0 of every target and gives one bdev per disk, "
         "named <name>t<target> (non-disk devices are skipped). trtype user connects to a "
         "vhost-user back end's socket (traddr), trtype pci drives a virtio PCI function "
         "(traddr: its address, e.g. 0000:00:04.0; modern interface). Returns the bdev names.",
         {{"name", PT::string, true,
           "Controller name (the virtio_blk bdev's; the virtio_scsi bdevs' prefix)", nullptr},
          {"trtype", PT::string, true, "user (vhost-user socket) or pci (PCI function)", nullptr},
          {"traddr", PT::string, true, "Socket path (user) or PCI address (pci)", nullptr},
          {"dev_type", PT::string, true, "blk or scsi", nullptr},
          {"vq_count", PT::uint, false,
           "Virtqueues (scsi: request queues, besides control and event); each I/O Thread "
           "takes one",
           1},
          {"vq_size", PT::uint, false,
           "Entries per virtqueue, a power of two (pci: lowered to the device's maximum)", 512},
          {"packed_ring", PT::bool_, false,
           "Strata-specific: negotiate packed virtqueues (VIRTIO_F_RING_PACKED) when the device "
           "offers them; else split",
           false}},
         rpc::Allowed::runtime,
         "",
         true,
         [](const Json& p, Responder r) {
             VirtioAttachOptions o;
             o.name = p.at("name").get<std::string>();
             o.trtype = p.at("trtype").get<std::string>();
             for (char& c : o.trtype) c = static_cast<char>(std::tolower(c));
             o.traddr = p.at("traddr").get<std::string>();
             o.dev_type = p.at("dev_type").get<std::string>();
             // SPDK: 0 means the default.
             o.vq_count = rpc::param_or<uint32_t>(p, "vq_count", 0);
             o.vq_size = rpc::param_or<uint32_t>(p, "vq_size", 0);
             if (o.vq_count == 0) o.vq_count = 1;
             if (o.vq_size == 0) o.vq_size = 512;
             o.packed_ring = rpc::param_or<bool>(p, "packed_ring", false);
             auto names = virtio_attach(o);
             if (!names)
                 r.error(names.error());
             else
                 r.result(Json(*names));
         }});
    add_rpc(app, {"bdev_virtio_detach_controller",
                  "Remove a virtio controller's bdevs (virtio_scsi: every target's; after their "
                  "openers close) and detach it.",
                  {{"name", PT::string, true, "Controller name", nullptr}},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json& p, Responder r) {
                      auto rp = std::make_shared<Responder>(std::move(r));
                      virtio_detach(p.at("name").get<std::string>(), [rp](Result<void> res) {
                          if (!res)
                              rp->error(res.error());
                          else
                              rp->result(true);
                      });
                  }});
    add_rpc(app, {"bdev_virtio_scsi_get_devices",
                  "List the virtio-scsi controllers: name and virtio {vq_count (all queues, "
                  "control and event included), vq_size, type (user or pci), socket or "
                  "pci_address}, as SPDK.",
                  {},
                  rpc::Allowed::runtime,
                  "",
                  true,
                  [](const Json&, Responder r) { r.result(virtio_scsi_devices()); }});
    add_rpc(app,
            {"bdev_virtio_blk_set_hotplug",
             "Set virtio-pci hotplug monitoring. The virtio-pci transport is planned, so enable "
             "true is refused; enable false is accepted.",
             {{"enable", PT::bool_, true, "Monitor PCI hotplug", nullptr},
              {"period_us", PT::uint, false, "Poll period in microseconds", 0}},
             rpc::Allowed::both,
             "",
             true,
             [](const Json& p, Responder r) {
                 const bool enable = p.at("enable").get<bool>();
                 if (enable) {
                     r.error(Error(Errc::not_supported,
                                   "virtio-pci hotplug needs the virtio-pci transport, which is "
                                   "planned"));
                     return;
                 }
                 auto& h = runtime::current_host().get<VirtioHotplug>();
                 h.enable = false;
                 h.period_us = rpc::param_or<uint64_t>(p, "period_us", 0);
                 r.result(true);
             }});
}

}  // namespace strata::bdev
