// scsi_get_devices with SPDK's result shape: [{"id": 0, "device_name": "iqn...:disk1"}].
#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/rpc/app.h>
#include <strata/scsi/rpc.h>
#include <strata/scsi/scsi.h>

namespace strata::scsi {

void register_rpc_module(rpc::App& app) {
    (void)app.add_subsystem(rpc::Subsystem{"scsi", {"bdev"}, {}, {}, {}});
    rpc::MethodSpec spec;
    spec.name = "scsi_get_devices";
    spec.description = "List the SCSI devices (one per iSCSI target node or vhost-scsi target).";
    spec.allowed = rpc::Allowed::runtime;
    spec.subsystem = "scsi";
    spec.handler = [](const rpc::Json&, rpc::Responder r) {
        rpc::Json out = rpc::Json::array();
        for (const DeviceInfo& d : list_devices())
            out.push_back({{"id", d.id}, {"device_name", d.name}});
        r.result(std::move(out));
    };
    auto added = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(added.ok(), "scsi RPC registration failed");
}

}  // namespace strata::scsi
