// vhost-scsi: a virtio-scsi Device whose targets 0-7 are core/scsi devices (LUN 0 over a bdev),
// executing commands exactly as the iSCSI target does (scsi::submit / scsi::manage).
//
// Queues: 0 control (TMF: ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET,
// I_T NEXUS RESET; AN query/subscribe answered with no events), 1 event (hot-plug and
// hot-remove of targets: TRANSPORT_RESET RESCAN/REMOVED, EVENTS_MISSED when the driver gave no
// buffer in time), 2.. requests (ReqCmd + data-out, RespCmd + data-in; the data iovecs point
// into guest memory: no copy). Each started queue gets a preallocated request pool, one slot
// per descriptor head.
//
// Owning Thread: the controller's; the scsi::Devices are created there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/vhost/session.h>

namespace strata::vhost {

inline constexpr uint32_t kScsiMaxTargets = 8;
inline constexpr uint32_t kScsiMaxSegments = 126;  // seg_max

struct ScsiTargetInfo {
    uint32_t num;
    std::string device_name;  // the scsi::Device's (unique per Host)
    std::string bdev_name;    // LUN 0's ("" once removed)
};

// `name` prefixes the scsi::Devices' names ("<name>.Target<N>").
std::unique_ptr<Device> create_scsi_device(std::string name);
// Adds target `num` (0-7; -1: the first free one) with LUN 0 over bdev; returns its number.
// A connected driver that negotiated VIRTIO_SCSI_F_HOTPLUG gets a rescan event.
Result<uint32_t> scsi_add_target(Device& d, int32_t num, const std::string& bdev_name);
// Removes target `num`: new requests to it get BAD_TARGET at once, outstanding ones finish,
// the scsi::Device is destroyed, then done(); the driver gets a removed event.
void scsi_remove_target(Device& d, uint32_t num, std::function<void(Result<void>)> done);
// Removes every target (controller teardown), then done().
void scsi_remove_all(Device& d, std::function<void()> done);
std::vector<ScsiTargetInfo> scsi_targets(Device& d);
// fn() runs (on the controller's Thread) after a target went away by itself: its LUN 0 bdev was
// hot-removed, so the target was removed as by scsi_remove_target (SPDK does the same).
void scsi_on_target_removed(Device& d, std::function<void()> fn);

}  // namespace strata::vhost
