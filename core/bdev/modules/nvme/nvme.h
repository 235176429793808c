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

#include <nlohmann/json.hpp>

namespace strata::bdev {

extern const Module kNvmeModule;

// SPDK's default bdev_retry_count.
inline constexpr int32_t kDefaultBdevRetryCount = 3;

// What happens to a command outstanding longer than timeout_us (SPDK's action_on_timeout).
// Strata's driver has one behaviour, SPDK's "abort": an I/O command is aborted (Abort command)
// and the controller reset if the abort fails or the command is still outstanding one more
// timeout later; a timed-out admin command resets the controller. "none" is accepted only while
// timeout_us is 0 (no timeouts tracked); SPDK's "reset" is not supported.
enum class NvmeTimeoutAction { none, abort };

// Module options of one Host: SPDK's bdev_nvme_set_options, the parameters Strata implements
// (names and defaults are SPDK's). Changed through nvme_set_options (the RPC) only while no
// controller is attached; read when a controller is attached.
struct NvmeModuleOptions {
    // Retries of an I/O failed with a retryable status (no Do Not Retry, not aborted on
    // request), counted per I/O; -1: unlimited, 0: none (I/O a reset or connection loss ends
    // fails right away, as before). I/O ended by a reset/connection loss ("aborted: SQ
    // deletion") or with a path status waits for the reconnect without counting.
    int32_t bdev_retry_count = kDefaultBdevRetryCount;
    // Defaults of bdev_nvme_attach_controller for NVMe-oF controllers (an attach that gives one
    // of these overrides it; nvme::ControllerOptions documents them). KATO 0: no keep-alive.
    uint32_t keep_alive_timeout_ms = 10'000;
    int32_t ctrlr_loss_timeout_sec = 0;
    uint32_t reconnect_delay_sec = 0;
    uint32_t fast_io_fail_timeout_sec = 0;
    // Command timeouts of every controller attached (0: none; see NvmeTimeoutAction). The admin
    // queue's is timeout_admin_us, or timeout_us when that is 0; with timeout_us 0 the driver
    // keeps its own admin-queue timeout (nvme::ControllerOptions::admin_timeout_us).
    uint64_t timeout_us = 0;
    uint64_t timeout_admin_us = 0;
    NvmeTimeoutAction action_on_timeout = NvmeTimeoutAction::none;
    // Driver requests per I/O qpair (commands beyond the queue's entries wait in the driver);
    // 0: the queue's entries - 1.
    uint32_t io_queue_requests = 0;
};
NvmeModuleOptions& nvme_options();  // this Host's (tests may set it directly)

// SPDK's rules linking the three reconnect limits (bdev_nvme_check_io_error_resiliency_params):
// ctrlr_loss_timeout_sec -1 (reconnect forever) or > 0 needs reconnect_delay_sec > 0, not more
// than ctrlr_loss_timeout_sec (when > 0); fast_io_fail_timeout_sec, when not 0, at least
// reconnect_delay_sec and at most ctrlr_loss_timeout_sec (when > 0); ctrlr_loss_timeout_sec 0
// (no reconnect) needs both 0. invalid_argument naming the rule broken.
Result<void> nvme_check_reconnect_limits(int32_t ctrlr_loss_timeout_sec,
                                         uint32_t reconnect_delay_sec,
                                         uint32_t fast_io_fail_timeout_sec);
// Validates `o` (SPDK's bdev_nvme_validate_opts plus what Strata does not support) and makes it
// this Host's options: invalid_argument / not_supported for bad values, permission_denied
// ("RPC not permitted with nvme controllers already attached") once a controller is attached.
Result<void> nvme_set_options(const NvmeModuleOptions& o);

struct NvmeAttachOptions {
    std::string name;  // controller name; bdevs are <name>n<nsid>
    env::PciAddress address;  // PCIe (trid.trtype pcie)
    // NVMe-oF: trid.trtype tcp with traddr, trsvcid, subnqn (Controller::connect); the fabrics
    // options (hostnqn, digests, keep-alive, reconnect limits) are in `controller`.
    nvme::TransportId trid;
    nvme::ControllerOptions controller;
    uint32_t io_queue_entries = 256;
};

// bdev_nvme_attach_controller's starting point: the driver's defaults with this Host's module
// options applied (keep-alive, reconnect limits, command timeouts); the RPC's parameters
// override them.
NvmeAttachOptions nvme_default_attach_options();

// On the calling Thread (which becomes the controller's admin Thread). done receives the names
// of the bdevs created, or the error (already_exists for a taken name, the driver's errors).
void nvme_attach(const NvmeAttachOptions& options,
                 std::function<void(Result<std::vector<std::string>>)> done);
// Unregisters the controller's bdevs (waiting for their openers to close), frees the qpairs and
// detaches the controller. On the controller's admin Thread.
void nvme_detach(const std::string& name, std::function<void(Result<void>)> done);
// Errc::busy while the controller is disabled (SPDK refuses a reset then too).
void nvme_reset(const std::string& name, std::function<void(Result<void>)> done);
// bdev_nvme_disable_controller: every channel's I/O qpair is freed (its queues deleted on the
// device); I/O outstanding then, and I/O submitted while disabled, waits in its channel (not
// counted against bdev_retry_count) until bdev_nvme_enable_controller resets the controller
// and gives every channel a qpair again. cntlid 0: the controller of that name; otherwise it
// must be its controller id. Errc::not_found, Errc::already_exists (already disabled/enabled:
// SPDK's -EALREADY), Errc::busy (resetting, or switching), Errc::shutdown (detaching). A
// failed enable leaves it disabled; detaching a disabled controller fails the I/O it holds
// (Errc::aborted). On the app Thread; done there.
void nvme_disable(const std::string& name, uint16_t cntlid, std::function<void(Result<void>)> done);
void nvme_enable(const std::string& name, uint16_t cntlid, std::function<void(Result<void>)> done);
// Controller names and their PCI addresses, for bdev_nvme_get_controllers.
struct NvmeControllerInfo {
    std::string name;
    nvme::TransportId trid;  // trtype, traddr (PCI address or IP), adrfam, trsvcid, subnqn
    std::string traddr;
    std::string state;
    std::vector<std::string> bdevs;
    // What the controller was attached with (the module options of that moment included).
    nvme::ControllerOptions options;
    int32_t bdev_retry_count = kDefaultBdevRetryCount;
    uint32_t io_queue_requests = 0;
};
std::vector<NvmeControllerInfo> nvme_controllers();

// bdev_nvme_set_hotplug: with enable, a poller every period_us (0: keep the current, 100 ms by
// default) attaches NVMe functions that appear on the PCI bus (as HotInNvme<n>) and detaches
// PCIe controllers whose function is gone; without, stops it. On the app Thread.
Result<void> nvme_set_hotplug(bool enable, uint64_t period_us);
// bdev_nvme_get_controller_health_info: the SMART / Health log page of a controller (the first
// one when name is empty) in SPDK's field names; done on the admin Thread.
void nvme_health_info(const std::string& name, std::function<void(Result<nlohmann::json>)> done);
// bdev_nvme_add_error_injection / bdev_nvme_remove_error_injection: on the controller's admin
// queue (admin) or on the I/O qpair of every channel that has one now (SPDK's rule: channels
// made later start clean). not_found for an unknown controller. On the app Thread; done there.
void nvme_add_error_injection(const std::string& name, bool admin, const nvme::ErrorInjection& e,
                              std::function<void(Result<void>)> done);
void nvme_remove_error_injection(const std::string& name, bool admin, uint8_t opc,
                                 std::function<void(Result<void>)> done);
// bdev_nvme_send_cmd: one raw command on a controller's admin queue, or on the calling
// (app) Thread's I/O qpair of the controller. The driver sets the command id and the data
// pointer; `data` is the buffer (DMA bounced): sent for host_to_controller, filled for
// controller_to_host (data_len bytes). done gets the completion and the data read.
struct NvmeRawCommand {
    std::string name;
    bool admin = true;
    bool controller_to_host = true;
    nvme::spec::Sqe sqe{};
    std::vector<uint8_t> data;  // h2c: what to send; c2h: sized to data_len
};
struct NvmeRawResult {
    nvme::Completion cpl;
    std::vector<uint8_t> data;  // c2h only
};
void nvme_send_cmd(NvmeRawCommand cmd, std::function<void(Result<NvmeRawResult>)> done);
// bdev_nvme_get_io_paths: SPDK's shape, one path per namespace bdev (or only bdev_name's).
nlohmann::json nvme_io_paths(const std::string& bdev_name);

}  // namespace strata::bdev
