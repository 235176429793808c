// scsi_get_devices with SPDK's result shape: [{"id": 0, "device_name": "iqn...:disk1"}].
#include <memory>

#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/rpc/app.h>
#include <strata/scsi/rpc.h>
#include <strata/scsi/scsi.h>

namespace strata::scsi {

namespace {

// At App stop, before the bdev layer's: destroys the devices a transport left (each on its own
// Thread), then done on the app Thread.
void fini(rpc::App& app, std::function<void()> done) {
    std::vector<std::string> names;
    for (const DeviceInfo& d : list_devices()) names.push_back(d.name);
    auto left = std::make_shared<size_t>(names.size() + 1);
    runtime::Thread* home = &app.thread();
    auto one = [left, home, done]() {
        if (--*left == 0) (void)home->post([done] { done(); });
    };
    for (const std::string& n : names) {
        Device* dev = find_device(n);
        if (dev == nullptr) {
            one();
            continue;
        }
        (void)device_thread(*dev).post([dev, one] { destroy_device(*dev, one); });
    }
    one();
}

}  // namespace

void register_rpc_module(rpc::App& app) {
    (void)app.add_subsystem(
        rpc::Subsystem{"scsi", {"bdev"}, {}, &fini, [](rpc::App&, rpc::Json&) {}});
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
