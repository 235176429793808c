// The SCSI layer shared by the iSCSI and vhost-scsi targets: devices, LUNs backed by bdevs,
// tasks executing SPC-4/SBC-3 commands, task management. README.md has the walkthrough.
//
//   // On the Thread that will run the device (every call below runs there):
//   auto dev = scsi::create_device({.name = "iqn...:disk1", .id = 0,
//                                   .luns = {{0, "Malloc0"}}});
//   scsi::Task& t = my_pdu.task;          // owned by the transport, reused
//   t.reset();                             // clears the results of the previous command
//   t.lun = 0; std::memcpy(t.cdb, cdb, 16); t.dir = scsi::DataDir::from_dev;
//   t.transfer_length = edtl; t.iovs = iov; t.iovcnt = n; t.initiator_port = "iqn...,i,0x1";
//   t.done = &on_done; t.done_ctx = &my_pdu;
//   scsi::submit(*dev, t);                 // on_done(t) later: status, sense, residual
//
// Threads: a Device and its LUNs belong to the Thread that created it (its bdev descriptors,
// bdev channels, unit attentions and reservations live there). Every function taking a Device
// runs on that Thread (asserted); a transport with connections on other Threads sends messages
// (SPDK's iSCSI puts every connection of a target node on one poll group for the same reason).
//
// Data path: submit() never allocates (a nexus seen for the first time is the exception, once),
// never completes inline (the callback runs from a later message or bdev completion) and never
// blocks. Task memory belongs to the transport and must stay put until its callback ran.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/status.h>
#include <strata/bdev/bdev.h>
#include <strata/runtime/thread.h>

namespace strata::scsi {

class Device;
struct Lun;
struct Task;

// SAM status codes.
namespace status {
inline constexpr uint8_t good = 0x00;
inline constexpr uint8_t check_condition = 0x02;
inline constexpr uint8_t condition_met = 0x04;
inline constexpr uint8_t busy = 0x08;
inline constexpr uint8_t reservation_conflict = 0x18;
inline constexpr uint8_t task_set_full = 0x28;
inline constexpr uint8_t aca_active = 0x30;
inline constexpr uint8_t task_aborted = 0x40;
}  // namespace status

enum class SenseKey : uint8_t {
    no_sense = 0x0,
    recovered_error = 0x1,
    not_ready = 0x2,
    medium_error = 0x3,
    hardware_error = 0x4,
    illegal_request = 0x5,
    unit_attention = 0x6,
    data_protect = 0x7,
    aborted_command = 0xB,
    miscompare = 0xE,
};

enum class DataDir : uint8_t { none, from_dev /* data-in (READ) */, to_dev /* data-out */ };

inline constexpr size_t kMaxCdbBytes = 32;
inline constexpr size_t kMaxSenseBytes = 32;  // fixed: 18, descriptor: up to 28
inline constexpr size_t kTaskScratchIovs = 16;

using TaskDoneFn = void (*)(Task& task, void* ctx);
struct TaskQueueTag;  // the layer's second list hook (per-LUN queues)

// One SCSI command. Owned by the transport, reused from command to command (reset() between).
struct Task : ListHook<>, ListHook<TaskQueueTag> {
    // ---- filled by the transport before submit() ----
    uint64_t lun = 0;                // LUN id (decode_lun() of the 8-byte LUN field)
    uint8_t cdb[kMaxCdbBytes] = {};  // bytes past cdb_len must be zero
    uint8_t cdb_len = 16;
    DataDir dir = DataDir::none;
    uint32_t transfer_length = 0;  // expected data transfer length (bytes)
    // Data-in: the layer writes up to transfer_length bytes here. Data-out: the whole data-out
    // buffer (the transport gathers all of it, e.g. after its R2Ts, before submit()).
    const iovec* iovs = nullptr;
    int iovcnt = 0;
    // The I_T nexus: the initiator port's identifier (iSCSI: "<initiator name>,i,0x<ISID>").
    // Reservations and unit attentions are kept per nexus. Must outlive the task.
    std::string_view initiator_port;
    uint64_t tag = 0;  // the transport's tag (ITT); ABORT TASK names it
    TaskDoneFn done = nullptr;
    void* done_ctx = nullptr;

    // ---- results, valid in the callback ----
    uint8_t status = status::good;
    uint8_t sense_len = 0;  // 0: no sense data
    uint8_t sense[kMaxSenseBytes] = {};
    uint32_t data_transferred = 0;  // data-in bytes written to iovs / data-out bytes used
    // Residual (SAM): underflow when the command moved fewer bytes than transfer_length,
    // overflow when it wanted more.
    uint32_t residual = 0;
    bool residual_overflow = false;
    bool aborted = false;  // ended by task management (status task_aborted)

    // Clears the results and the layer's state (call before filling a reused Task).
    void reset() noexcept;

    // ---- the layer's, while outstanding (do not touch) ----
    struct Private {
        Device* dev = nullptr;
        Lun* lun = nullptr;
        uint32_t nexus = 0;
        uint32_t iov_bytes = 0;  // capacity of iovs
        uint8_t op = 0;
        uint8_t stage = 0;
        bool fua = false;
        bool abort_requested = false;
        uint64_t lba = 0;
        uint64_t num_blocks = 0;
        uint64_t done_blocks = 0;
        uint32_t index = 0;  // UNMAP descriptor, WRITE SAME piece count
        Status (*issue)(Task&) noexcept = nullptr;
        void (*next)(Task&) noexcept = nullptr;
        void* mgmt = nullptr;  // a MgmtTask waiting for this one
        bdev::IoWaitEntry wait;
        const iovec* data_iovs = nullptr;  // what READ/WRITE/VERIFY hand to the bdev
        int data_cnt = 0;
        iovec iov_a[kTaskScratchIovs];
        iovec iov_b[kTaskScratchIovs];
        int cnt_a = 0;
        int cnt_b = 0;
    } priv;
};

// Task management functions (SAM-5).
enum class TmfFunction : uint8_t { abort_task, abort_task_set, lun_reset, target_reset };
enum class TmfResponse : uint8_t {
    complete,              // function complete
    task_does_not_exist,   // ABORT TASK: no outstanding task with that tag (and nexus)
    lun_does_not_exist,
    function_rejected,
};

struct MgmtTask;
using MgmtDoneFn = void (*)(MgmtTask& task, void* ctx);

struct MgmtTask {
    TmfFunction function = TmfFunction::abort_task;
    uint64_t lun = 0;
    uint64_t victim_tag = 0;  // ABORT TASK: the Task::tag to abort (same nexus)
    std::string_view initiator_port;
    MgmtDoneFn done = nullptr;
    void* done_ctx = nullptr;
    // result
    TmfResponse response = TmfResponse::complete;
    uint32_t aborted_count = 0;  // tasks this function ended
    // the layer's
    uint32_t pending_ = 0;
    bool in_exec_ = false;
    bool reset_pending_ = false;
};

struct LunOptions {
    uint64_t id = 0;  // 0..16383 (flat addressing above 255)
    std::string bdev_name;
};

struct DeviceOptions {
    std::string name;  // unique per Host (the iSCSI target node name)
    int32_t id = 0;
    std::vector<LunOptions> luns;
};

struct LunInfo {
    uint64_t id;
    std::string bdev_name;
};

struct DeviceInfo {
    int32_t id;
    std::string name;
};

inline constexpr uint64_t kMaxLunId = 16383;

// ---- control path: on the Thread the device runs on ----------------------------------------
// Opens and claims every LUN's bdev. Errc::already_exists (name), not_found (bdev),
// permission_denied (bdev claimed elsewhere), invalid_argument (LUN id).
Result<Device*> create_device(const DeviceOptions& options);
// Fails the tasks that have not started, waits for the outstanding bdev I/O, closes every LUN,
// then done() on this Thread. The Device pointer is dangling from then on.
void destroy_device(Device& dev, std::function<void()> done);
// LUN hot-add: the other LUNs report REPORTED LUNS DATA HAS CHANGED to every nexus.
Result<void> add_lun(Device& dev, const LunOptions& lun);
// LUN removal (also what a bdev hot-remove does by itself): new commands to it fail with
// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED at once, outstanding ones finish, then the bdev
// is released and done() runs; the other LUNs report REPORTED LUNS DATA HAS CHANGED.
void remove_lun(Device& dev, uint64_t lun_id, std::function<void(Result<void>)> done);

const std::string& device_name(const Device& dev) noexcept;
int32_t device_id(const Device& dev) noexcept;
runtime::Thread& device_thread(const Device& dev) noexcept;  // any Thread
std::vector<LunInfo> list_luns(const Device& dev);
uint32_t outstanding_tasks(const Device& dev) noexcept;

// The current Host's devices (any Thread: the registry has its own lock).
Device* find_device(std::string_view name);
std::vector<DeviceInfo> list_devices();

// ---- data path: on the device's Thread ------------------------------------------------------
// Executes the command; task.done runs exactly once, later, on this Thread.
void submit(Device& dev, Task& task) noexcept;
// Task management; mgmt.done runs exactly once, later, after every task it ends has completed
// (with status task_aborted, aborted = true).
void manage(Device& dev, MgmtTask& mgmt) noexcept;
// The I_T nexus `initiator_port` ended (iSCSI: its session's last connection closed): its SPC-2
// reservations are released (persistent reservations and registrations stay, SPC-4 5.12).
void nexus_lost(Device& dev, std::string_view initiator_port) noexcept;

// ---- helpers for transports -----------------------------------------------------------------
// SAM-5 single-level LUN: peripheral addressing below 256, flat space up to 16383.
void encode_lun(uint64_t lun_id, uint8_t out[8]) noexcept;
uint64_t decode_lun(const uint8_t in[8]) noexcept;  // UINT64_MAX when not single-level
// Whether a CDB moves data-in / data-out (for the transport's sanity checks). Unknown: none.
DataDir cdb_data_dir(const uint8_t* cdb) noexcept;
// The SAM-5 CDB length of an opcode's group (6, 10, 12, 16; 0 for variable/vendor).
size_t cdb_length(uint8_t opcode) noexcept;

}  // namespace strata::scsi
