// bdev_nvme: NVMe controllers attached through the driver (core/nvme), one bdev per active
// namespace ("<name>n<nsid>"), a qpair per Thread that does I/O, controller reset and hot
// removal wired through (a removed controller unregisters its bdevs; a namespace change adds or
// removes bdevs).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/bdev/module.h>
#include <strata/env/pci.h>
#include <strata/nvme/controller.h>

namespace strata::bdev {

extern const Module kNvmeModule;

// SPDK's default bdev_retry_count.
inline constexpr int32_t kDefaultBdevRetryCount = 3;

// Module options of one Host (SPDK's bdev_nvme_set_options; only what Strata implements).
struct NvmeModuleOptions {
    // Retries of an I/O failed with a retryable status (no Do Not Retry, not aborted on
    // request), counted per I/O; -1: unlimited, 0: none (I/O a reset or connection loss ends
    // fails right away, as before). I/O ended by a reset/connection loss ("aborted: SQ
    // deletion") or with a path status waits for the reconnect without counting. Read when a
    // controller is attached.
    int32_t bdev_retry_count = kDefaultBdevRetryCount;
};
NvmeModuleOptions& nvme_options();  // this Host's

struct NvmeAttachOptions {
    std::string name;  // controller name; bdevs are <name>n<nsid>
    env::PciAddress address;  // PCIe (trid.trtype pcie)
    // NVMe-oF: trid.trtype tcp with traddr, trsvcid, subnqn (Controller::connect); the fabrics
    // options (hostnqn, digests, keep-alive, reconnect limits) are in `controller`.
    nvme::TransportId trid;
    nvme::ControllerOptions controller;
    uint32_t io_queue_entries = 256;
};

// On the calling Thread (which becomes the controller's admin Thread). done receives the names
// of the bdevs created, or the error (already_exists for a taken name, the driver's errors).
void nvme_attach(const NvmeAttachOptions& options,
                 std::function<void(Result<std::vector<std::string>>)> done);
// Unregisters the controller's bdevs (waiting for their openers to close), frees the qpairs and
// detaches the controller. On the controller's admin Thread.
void nvme_detach(const std::string& name, std::function<void(Result<void>)> done);
void nvme_reset(const std::string& name, std::function<void(Result<void>)> done);
// Controller names and their PCI addresses, for bdev_nvme_get_controllers.
struct NvmeControllerInfo {
    std::string name;
    nvme::TransportId trid;  // trtype, traddr (PCI address or IP), adrfam, trsvcid, subnqn
    std::string traddr;
    std::string state;
    std::vector<std::string> bdevs;
};
std::vector<NvmeControllerInfo> nvme_controllers();

}  // namespace strata::bdev
