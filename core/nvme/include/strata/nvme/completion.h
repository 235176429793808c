// What an NVMe command's callback receives, and how its status reads.
//
// Device completions carry the controller's Status Field. Commands the driver ends itself (a
// reset, a timeout, a removed or failed controller) carry a status the specification defines
// for that case, so callers handle one vocabulary:
//   aborted_sq_deletion (generic 08h)  the queue pair was torn down by a controller reset;
//                                      retrying on the reconnected qpair is safe
//   aborted_by_host (path 71h)         the command timed out and the driver gave up on it
//   abort_requested (generic 07h, DNR) the controller failed or was removed; no retry helps
#pragma once

#include <cstdint>

#include <strata/base/status.h>
#include <strata/nvme/spec/queue.h>
#include <strata/nvme/spec/status.h>

namespace strata::nvme {

struct Completion {
    spec::StatusField status{};  // phase tag cleared
    uint32_t dw0 = 0;            // command specific (e.g. Get Features value)
    uint32_t dw1 = 0;

    bool ok() const noexcept { return status.ok(); }
    // The nearest Errc: out_of_range for LBA out of range, invalid_argument for invalid
    // opcode/field/namespace, aborted for aborts, corrupt for compare failure and integrity
    // errors, busy for "namespace not ready" without DNR, device_removed when the driver failed
    // the command because the controller is gone, io_error otherwise.
    Errc errc() const noexcept;
    // "LBA Out of Range (sct 0h, sc 80h)"-style name, also for codes the table does not know.
    spec::StatusName name() const noexcept { return spec::status_name(status); }
};

using IoDoneFn = void (*)(void* ctx, const Completion& cpl);

// A command error injected on one queue (SPDK's spdk_nvme_qpair_add_cmd_error_injection): the
// next `count` commands with opcode `opc` complete with status (sct, sc). Without
// do_not_submit the command goes to the device and its completion carries the injected status
// instead of the device's; with do_not_submit it is never sent and completes with that status
// timeout_us after its submission (at the queue's next poll after that). Adding an injection for
// an opcode that has one replaces it. Nothing armed costs the data path one predictable branch
// per submission, completion and poll.
struct ErrorInjection {
    uint8_t opc = 0;
    bool do_not_submit = false;
    uint64_t timeout_us = 0;
    uint32_t count = 1;
    uint8_t sct = 0;
    uint8_t sc = 0;
};

// The statuses the driver itself completes commands with (see the header comment).
inline constexpr spec::StatusField kStatusResetAborted =
    spec::make_status(spec::GenericStatus::aborted_sq_deletion);
inline constexpr spec::StatusField kStatusTimedOut =
    spec::make_status(spec::PathStatus::aborted_by_host);
inline constexpr spec::StatusField kStatusControllerGone =
    spec::make_status(spec::GenericStatus::abort_requested, /*dnr=*/true);

}  // namespace strata::nvme
