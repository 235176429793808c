// Private state of the SCSI layer: Device, Lun, per-nexus unit attentions, reservations, the
// command table, and the helpers the command files share. Everything here lives on the
// Device's Thread.
#pragma once

#include <array>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/runtime/host.h>
#include <strata/runtime/thread.h>
#include <strata/scsi/scsi.h>

namespace strata::scsi {

// Additional sense codes (ASC << 8 | ASCQ).
namespace asc {
inline constexpr uint16_t no_additional_sense = 0x0000;
inline constexpr uint16_t invalid_field_in_information_unit = 0x0E03;
inline constexpr uint16_t write_error = 0x0C00;
inline constexpr uint16_t unrecovered_read_error = 0x1100;
inline constexpr uint16_t parameter_list_length_error = 0x1A00;
inline constexpr uint16_t miscompare_during_verify = 0x1D00;
inline constexpr uint16_t invalid_command_opcode = 0x2000;
inline constexpr uint16_t lba_out_of_range = 0x2100;
inline constexpr uint16_t invalid_field_in_cdb = 0x2400;
inline constexpr uint16_t lun_not_supported = 0x2500;
inline constexpr uint16_t invalid_field_in_parameter_list = 0x2600;
inline constexpr uint16_t power_on_reset = 0x2900;
inline constexpr uint16_t bus_device_reset = 0x2903;
inline constexpr uint16_t mode_parameters_changed = 0x2A01;
inline constexpr uint16_t reservations_preempted = 0x2A03;
inline constexpr uint16_t reservations_released = 0x2A04;
inline constexpr uint16_t registrations_preempted = 0x2A05;
inline constexpr uint16_t capacity_data_changed = 0x2A09;
inline constexpr uint16_t saving_parameters_not_supported = 0x3900;
inline constexpr uint16_t reported_luns_data_changed = 0x3F0E;
inline constexpr uint16_t internal_target_failure = 0x4400;
inline constexpr uint16_t insufficient_registration_resources = 0x5504;
}  // namespace asc

// Task::Private::op: what a task's bdev I/O is doing (error mapping, COMPARE AND WRITE lock).
enum Op : uint8_t { op_none, op_read, op_write, op_verify, op_flush, op_write_same, op_unmap,
                    op_cw, op_cw_queued };

// Pending unit attentions of one nexus on one LUN, reported lowest bit first.
enum UaBit : uint32_t {
    ua_power_on = 1u << 0,
    ua_lun_reset = 1u << 1,
    ua_capacity_changed = 1u << 2,
    ua_mode_changed = 1u << 3,
    ua_reservations_preempted = 1u << 4,
    ua_reservations_released = 1u << 5,
    ua_registrations_preempted = 1u << 6,
    ua_luns_changed = 1u << 7,
};
uint16_t ua_asc(uint32_t bit) noexcept;

// Mode parameters (current values; shared by every nexus).
struct ModeState {
    bool wce = false;     // caching page: write cache enable
    bool rcd = false;     // caching page: read cache disable
    bool d_sense = false; // control page: descriptor-format sense
    bool dexcpt = true;   // informational exceptions page: exceptions disabled
};

struct PrRegistration {
    uint32_t nexus = 0;
    uint64_t key = 0;
};

struct Lun {
    uint64_t id = 0;
    std::string bdev_name;
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
    uint32_t block_size = 512;
    uint64_t num_blocks = 0;
    std::string uuid;  // the bdev's
    std::string product;
    bool unmap_supported = false;
    bool flush_supported = false;
    bool removing = false;
    uint32_t inflight = 0;  // tasks on this LUN between submit and completion
    std::vector<std::function<void(Result<void>)>> removal_waiters;
    std::vector<uint32_t> ua;  // per nexus index
    ModeState mode;
    // Persistent reservations (SPC-4 5.12).
    std::vector<PrRegistration> regs;
    uint32_t pr_generation = 0;
    bool reserved = false;
    uint32_t holder = 0;     // nexus index (not for all-registrants types)
    uint8_t res_type = 0;    // 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR
    uint64_t res_key = 0;
    // SPC-2 reservation (RESERVE(6)/(10)): the whole LUN, held by one I_T nexus until its
    // RELEASE, a LUN or target reset, or the nexus' loss.
    bool spc2_reserved = false;
    uint32_t spc2_holder = 0;
    // COMPARE AND WRITE runs one at a time per LUN, with this scratch for the read-back. The
    // running one holds a bdev LBA range lock on its blocks from before its read until it is
    // delivered (cw_range_locked), so plain writes cannot slip in between its read and write.
    IntrusiveList<Task, TaskQueueTag> cw_queue;
    bool cw_busy = false;
    bool cw_range_locked = false;
    std::vector<uint8_t> scratch;
};

class Device {
public:
    std::string name;
    int32_t id = 0;
    runtime::Thread* thread = nullptr;
    std::vector<std::unique_ptr<Lun>> luns;  // by id
    std::vector<std::string> nexuses;        // index: nexus id
    IntrusiveList<Task> outstanding;
    IntrusiveList<Task> deferred;            // completed inside submit(): delivered by message
    std::vector<MgmtTask*> deferred_mgmt;    // capacity reserved: no allocation per TMF
    bool flush_scheduled = false;
    uint32_t in_submit = 0;
    bool destroying = false;
    uint64_t claim_token = 0;

    Lun* find_lun(uint64_t lun_id) const noexcept;
    uint32_t nexus_index(std::string_view port);
};

// The Host slot: every device of the Host, for scsi_get_devices and find_device.
struct Registry {
    std::mutex mu;
    std::vector<Device*> devices;
};
Registry& registry();

extern const bdev::Module kScsiModule;  // the claim's owner

// ---- task helpers (command files) -----------------------------------------------------------
void complete(Task& t) noexcept;  // deferred when inside submit()
// Sense data into out (kMaxSenseBytes): fixed (0x70) or descriptor (0x72) format; length.
size_t build_sense(uint8_t* out, bool descriptor, SenseKey key, uint16_t asc_ascq) noexcept;
// COMPARE AND WRITE finished on `lun`: start the next queued one (commands.cpp).
void cw_release(Lun& lun) noexcept;
void set_sense(Task& t, SenseKey key, uint16_t asc_ascq) noexcept;
// With a sense-key-specific field pointer into the CDB (bit < 0: no bit pointer).
void invalid_cdb_field(Task& t, uint16_t byte, int bit = -1) noexcept;
void invalid_param_field(Task& t, uint16_t byte, int bit = -1) noexcept;
void set_sense_info(Task& t, SenseKey key, uint16_t asc_ascq, uint64_t information) noexcept;
// Copies response data into the data-in buffer (bounded by transfer_length and iovs), sets
// data_transferred and the residual.
void data_in(Task& t, const void* data, size_t len) noexcept;
// Gathers data-out bytes [offset, offset + len) into out; returns bytes copied.
size_t data_out(const Task& t, void* out, size_t len, size_t offset = 0) noexcept;
// Scatter list of data-out bytes [offset, offset + len) into iov (max n); -1 when too many.
int slice_iovs(const Task& t, size_t offset, size_t len, iovec* iov, int n) noexcept;

// Command execution (commands.cpp): runs every CDB that passed the LUN, UA and reservation
// checks. Completes the task (possibly later).
void execute(Task& t) noexcept;
void execute_inquiry_no_lun(Task& t) noexcept;
void execute_report_luns(Task& t) noexcept;
void execute_request_sense(Task& t, uint32_t* ua) noexcept;
// Reservations (pr.cpp).
bool reservation_conflict(const Lun& lun, uint32_t nexus, uint8_t opcode) noexcept;
void execute_pr_in(Task& t) noexcept;
void execute_pr_out(Task& t) noexcept;
void execute_reserve(Task& t) noexcept;  // RESERVE(6) and (10)
void execute_release(Task& t) noexcept;  // RELEASE(6) and (10)

// ---- byte helpers ----
inline void put_be16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void put_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (24 - 8 * i));
}
inline void put_be64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (56 - 8 * i));
}
inline uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t be24(const uint8_t* p) { return uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]; }
inline uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t be64(const uint8_t* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }

}  // namespace strata::scsi
