// Completion status codes (NVMe Base Specification 2.0, 4.6.1.2; NVM Command Set 1.0, 4.1.1;
// Zoned Namespace Command Set 1.1) and a decoder from (SCT, SC) to the spec's name.
//
//   status_name(0x0, 0x02).view()  == "INVALID FIELD IN COMMAND"
//   status_mnemonic(0x0, 0x02)     == "invalid_field"
//   status_name(0x7, 0xff).view()  == "UNKNOWN (sct 0x7, sc 0xff)"
//
// Command-specific codes 0x80..0xBF depend on the command set; the table holds the NVM and
// Zoned Namespace meanings (what the PCIe driver issues). NVMe-oF (Connect, ...) reuses
// 0x80.. with other meanings: its decoder belongs to the fabrics headers.
// Nothing here allocates: StatusName is a fixed buffer, safe to keep and pass by value.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <strata/nvme/spec/queue.h>

namespace strata::nvme::spec {

// Status Code Type.
enum class Sct : uint8_t {
    generic = 0x0,
    command_specific = 0x1,
    media_error = 0x2,  // Media and Data Integrity Errors
    path = 0x3,         // Path Related Status
    vendor_specific = 0x7,
};

// SCT 0: Generic Command Status.
enum class GenericStatus : uint8_t {
    success = 0x00,
    invalid_opcode = 0x01,
    invalid_field = 0x02,
    cid_conflict = 0x03,
    data_transfer_error = 0x04,
    aborted_power_loss = 0x05,
    internal_error = 0x06,
    abort_requested = 0x07,
    aborted_sq_deletion = 0x08,
    aborted_failed_fused = 0x09,
    aborted_missing_fused = 0x0A,
    invalid_ns_or_format = 0x0B,
    command_sequence_error = 0x0C,
    invalid_sgl_segment_descriptor = 0x0D,
    invalid_sgl_descriptor_count = 0x0E,
    data_sgl_length_invalid = 0x0F,
    metadata_sgl_length_invalid = 0x10,
    sgl_descriptor_type_invalid = 0x11,
    invalid_cmb_use = 0x12,
    invalid_prp_offset = 0x13,
    atomic_write_unit_exceeded = 0x14,
    operation_denied = 0x15,
    invalid_sgl_offset = 0x16,
    host_id_inconsistent_format = 0x18,
    keep_alive_expired = 0x19,
    keep_alive_invalid = 0x1A,
    aborted_preempt = 0x1B,
    sanitize_failed = 0x1C,
    sanitize_in_progress = 0x1D,
    sgl_data_block_granularity_invalid = 0x1E,
    command_not_supported_for_cmb_queue = 0x1F,
    ns_write_protected = 0x20,
    command_interrupted = 0x21,
    transient_transport_error = 0x22,
    prohibited_by_lockdown = 0x23,
    admin_media_not_ready = 0x24,
    // NVM Command Set specific generic status values.
    lba_out_of_range = 0x80,
    capacity_exceeded = 0x81,
    ns_not_ready = 0x82,
    reservation_conflict = 0x83,
    format_in_progress = 0x84,
};

// SCT 1: Command Specific Status.
enum class CommandSpecificStatus : uint8_t {
    completion_queue_invalid = 0x00,
    invalid_queue_id = 0x01,
    invalid_queue_size = 0x02,
    abort_limit_exceeded = 0x03,
    async_event_limit_exceeded = 0x05,
    invalid_firmware_slot = 0x06,
    invalid_firmware_image = 0x07,
    invalid_interrupt_vector = 0x08,
    invalid_log_page = 0x09,
    invalid_format = 0x0A,
    firmware_requires_conventional_reset = 0x0B,
    invalid_queue_deletion = 0x0C,
    feature_not_saveable = 0x0D,
    feature_not_changeable = 0x0E,
    feature_not_ns_specific = 0x0F,
    firmware_requires_subsystem_reset = 0x10,
    firmware_requires_controller_reset = 0x11,
    firmware_requires_max_time_violation = 0x12,
    firmware_activation_prohibited = 0x13,
    overlapping_range = 0x14,
    ns_insufficient_capacity = 0x15,
    ns_id_unavailable = 0x16,
    ns_already_attached = 0x18,
    ns_is_private = 0x19,
    ns_not_attached = 0x1A,
    thin_provisioning_not_supported = 0x1B,
    controller_list_invalid = 0x1C,
    self_test_in_progress = 0x1D,
    boot_partition_write_prohibited = 0x1E,
    invalid_controller_id = 0x1F,
    invalid_secondary_controller_state = 0x20,
    invalid_controller_resources = 0x21,
    invalid_resource_id = 0x22,
    sanitize_prohibited_pmr = 0x23,
    ana_group_id_invalid = 0x24,
    ana_attach_failed = 0x25,
    insufficient_capacity = 0x26,
    ns_attachment_limit_exceeded = 0x27,
    prohibition_not_supported = 0x28,
    io_command_set_not_supported = 0x29,
    io_command_set_not_enabled = 0x2A,
    io_command_set_combination_rejected = 0x2B,
    invalid_io_command_set = 0x2C,
    identifier_unavailable = 0x2D,
    // NVM Command Set.
    conflicting_attributes = 0x80,
    invalid_protection_info = 0x81,
    write_to_read_only_range = 0x82,
    command_size_limit_exceeded = 0x83,
    // Zoned Namespace Command Set.
    zoned_boundary_error = 0xB8,
    zone_is_full = 0xB9,
    zone_is_read_only = 0xBA,
    zone_is_offline = 0xBB,
    zone_invalid_write = 0xBC,
    too_many_active_zones = 0xBD,
    too_many_open_zones = 0xBE,
    invalid_zone_state_transition = 0xBF,
};

// SCT 2: Media and Data Integrity Errors.
enum class MediaStatus : uint8_t {
    write_fault = 0x80,
    unrecovered_read_error = 0x81,
    guard_check_error = 0x82,
    application_tag_check_error = 0x83,
    reference_tag_check_error = 0x84,
    compare_failure = 0x85,
    access_denied = 0x86,
    deallocated_or_unwritten_block = 0x87,
    storage_tag_check_error = 0x88,
};

// SCT 3: Path Related Status.
enum class PathStatus : uint8_t {
    internal_path_error = 0x00,
    ana_persistent_loss = 0x01,
    ana_inaccessible = 0x02,
    ana_transition = 0x03,
    controller_pathing_error = 0x60,
    host_pathing_error = 0x70,
    aborted_by_host = 0x71,
};

struct StatusInfo {
    uint8_t sct;
    uint8_t sc;
    std::string_view name;      // the spec's name, upper case
    std::string_view mnemonic;  // snake_case, equal to the enumerator above
};

namespace detail {
#define STRATA_NVME_SC(sct, sc, name, mnemonic) \
    StatusInfo { sct, sc, name, mnemonic }
inline constexpr StatusInfo status_table[] = {
    // Generic Command Status.
    STRATA_NVME_SC(0, 0x00, "SUCCESS", "success"),
    STRATA_NVME_SC(0, 0x01, "INVALID COMMAND OPCODE", "invalid_opcode"),
    STRATA_NVME_SC(0, 0x02, "INVALID FIELD IN COMMAND", "invalid_field"),
    STRATA_NVME_SC(0, 0x03, "COMMAND ID CONFLICT", "cid_conflict"),
    STRATA_NVME_SC(0, 0x04, "DATA TRANSFER ERROR", "data_transfer_error"),
    STRATA_NVME_SC(0, 0x05, "COMMANDS ABORTED DUE TO POWER LOSS NOTIFICATION",
                   "aborted_power_loss"),
    STRATA_NVME_SC(0, 0x06, "INTERNAL ERROR", "internal_error"),
    STRATA_NVME_SC(0, 0x07, "COMMAND ABORT REQUESTED", "abort_requested"),
    STRATA_NVME_SC(0, 0x08, "COMMAND ABORTED DUE TO SQ DELETION", "aborted_sq_deletion"),
    STRATA_NVME_SC(0, 0x09, "COMMAND ABORTED DUE TO FAILED FUSED COMMAND", "aborted_failed_fused"),
    STRATA_NVME_SC(0, 0x0A, "COMMAND ABORTED DUE TO MISSING FUSED COMMAND",
                   "aborted_missing_fused"),
    STRATA_NVME_SC(0, 0x0B, "INVALID NAMESPACE OR FORMAT", "invalid_ns_or_format"),
    STRATA_NVME_SC(0, 0x0C, "COMMAND SEQUENCE ERROR", "command_sequence_error"),
    STRATA_NVME_SC(0, 0x0D, "INVALID SGL SEGMENT DESCRIPTOR", "invalid_sgl_segment_descriptor"),
    STRATA_NVME_SC(0, 0x0E, "INVALID NUMBER OF SGL DESCRIPTORS", "invalid_sgl_descriptor_count"),
    STRATA_NVME_SC(0, 0x0F, "DATA SGL LENGTH INVALID", "data_sgl_length_invalid"),
    STRATA_NVME_SC(0, 0x10, "METADATA SGL LENGTH INVALID", "metadata_sgl_length_invalid"),
    STRATA_NVME_SC(0, 0x11, "SGL DESCRIPTOR TYPE INVALID", "sgl_descriptor_type_invalid"),
    STRATA_NVME_SC(0, 0x12, "INVALID USE OF CONTROLLER MEMORY BUFFER", "invalid_cmb_use"),
    STRATA_NVME_SC(0, 0x13, "PRP OFFSET INVALID", "invalid_prp_offset"),
    STRATA_NVME_SC(0, 0x14, "ATOMIC WRITE UNIT EXCEEDED", "atomic_write_unit_exceeded"),
    STRATA_NVME_SC(0, 0x15, "OPERATION DENIED", "operation_denied"),
    STRATA_NVME_SC(0, 0x16, "SGL OFFSET INVALID", "invalid_sgl_offset"),
    STRATA_NVME_SC(0, 0x18, "HOST IDENTIFIER INCONSISTENT FORMAT", "host_id_inconsistent_format"),
    STRATA_NVME_SC(0, 0x19, "KEEP ALIVE TIMER EXPIRED", "keep_alive_expired"),
    STRATA_NVME_SC(0, 0x1A, "KEEP ALIVE TIMEOUT INVALID", "keep_alive_invalid"),
    STRATA_NVME_SC(0, 0x1B, "COMMAND ABORTED DUE TO PREEMPT AND ABORT", "aborted_preempt"),
    STRATA_NVME_SC(0, 0x1C, "SANITIZE FAILED", "sanitize_failed"),
    STRATA_NVME_SC(0, 0x1D, "SANITIZE IN PROGRESS", "sanitize_in_progress"),
    STRATA_NVME_SC(0, 0x1E, "SGL DATA BLOCK GRANULARITY INVALID",
                   "sgl_data_block_granularity_invalid"),
    STRATA_NVME_SC(0, 0x1F, "COMMAND NOT SUPPORTED FOR QUEUE IN CMB",
                   "command_not_supported_for_cmb_queue"),
    STRATA_NVME_SC(0, 0x20, "NAMESPACE IS WRITE PROTECTED", "ns_write_protected"),
    STRATA_NVME_SC(0, 0x21, "COMMAND INTERRUPTED", "command_interrupted"),
    STRATA_NVME_SC(0, 0x22, "TRANSIENT TRANSPORT ERROR", "transient_transport_error"),
    STRATA_NVME_SC(0, 0x23, "COMMAND PROHIBITED BY COMMAND AND FEATURE LOCKDOWN",
                   "prohibited_by_lockdown"),
    STRATA_NVME_SC(0, 0x24, "ADMIN COMMAND MEDIA NOT READY", "admin_media_not_ready"),
    STRATA_NVME_SC(0, 0x80, "LBA OUT OF RANGE", "lba_out_of_range"),
    STRATA_NVME_SC(0, 0x81, "CAPACITY EXCEEDED", "capacity_exceeded"),
    STRATA_NVME_SC(0, 0x82, "NAMESPACE NOT READY", "ns_not_ready"),
    STRATA_NVME_SC(0, 0x83, "RESERVATION CONFLICT", "reservation_conflict"),
    STRATA_NVME_SC(0, 0x84, "FORMAT IN PROGRESS", "format_in_progress"),
    // Command Specific Status.
    STRATA_NVME_SC(1, 0x00, "COMPLETION QUEUE INVALID", "completion_queue_invalid"),
    STRATA_NVME_SC(1, 0x01, "INVALID QUEUE IDENTIFIER", "invalid_queue_id"),
    STRATA_NVME_SC(1, 0x02, "INVALID QUEUE SIZE", "invalid_queue_size"),
    STRATA_NVME_SC(1, 0x03, "ABORT COMMAND LIMIT EXCEEDED", "abort_limit_exceeded"),
    STRATA_NVME_SC(1, 0x05, "ASYNCHRONOUS EVENT REQUEST LIMIT EXCEEDED",
                   "async_event_limit_exceeded"),
    STRATA_NVME_SC(1, 0x06, "INVALID FIRMWARE SLOT", "invalid_firmware_slot"),
    STRATA_NVME_SC(1, 0x07, "INVALID FIRMWARE IMAGE", "invalid_firmware_image"),
    STRATA_NVME_SC(1, 0x08, "INVALID INTERRUPT VECTOR", "invalid_interrupt_vector"),
    STRATA_NVME_SC(1, 0x09, "INVALID LOG PAGE", "invalid_log_page"),
    STRATA_NVME_SC(1, 0x0A, "INVALID FORMAT", "invalid_format"),
    STRATA_NVME_SC(1, 0x0B, "FIRMWARE ACTIVATION REQUIRES CONVENTIONAL RESET",
                   "firmware_requires_conventional_reset"),
    STRATA_NVME_SC(1, 0x0C, "INVALID QUEUE DELETION", "invalid_queue_deletion"),
    STRATA_NVME_SC(1, 0x0D, "FEATURE IDENTIFIER NOT SAVEABLE", "feature_not_saveable"),
    STRATA_NVME_SC(1, 0x0E, "FEATURE NOT CHANGEABLE", "feature_not_changeable"),
    STRATA_NVME_SC(1, 0x0F, "FEATURE NOT NAMESPACE SPECIFIC", "feature_not_ns_specific"),
    STRATA_NVME_SC(1, 0x10, "FIRMWARE ACTIVATION REQUIRES NVM SUBSYSTEM RESET",
                   "firmware_requires_subsystem_reset"),
    STRATA_NVME_SC(1, 0x11, "FIRMWARE ACTIVATION REQUIRES CONTROLLER LEVEL RESET",
                   "firmware_requires_controller_reset"),
    STRATA_NVME_SC(1, 0x12, "FIRMWARE ACTIVATION REQUIRES MAXIMUM TIME VIOLATION",
                   "firmware_requires_max_time_violation"),
    STRATA_NVME_SC(1, 0x13, "FIRMWARE ACTIVATION PROHIBITED", "firmware_activation_prohibited"),
    STRATA_NVME_SC(1, 0x14, "OVERLAPPING RANGE", "overlapping_range"),
    STRATA_NVME_SC(1, 0x15, "NAMESPACE INSUFFICIENT CAPACITY", "ns_insufficient_capacity"),
    STRATA_NVME_SC(1, 0x16, "NAMESPACE IDENTIFIER UNAVAILABLE", "ns_id_unavailable"),
    STRATA_NVME_SC(1, 0x18, "NAMESPACE ALREADY ATTACHED", "ns_already_attached"),
    STRATA_NVME_SC(1, 0x19, "NAMESPACE IS PRIVATE", "ns_is_private"),
    STRATA_NVME_SC(1, 0x1A, "NAMESPACE NOT ATTACHED", "ns_not_attached"),
    STRATA_NVME_SC(1, 0x1B, "THIN PROVISIONING NOT SUPPORTED", "thin_provisioning_not_supported"),
    STRATA_NVME_SC(1, 0x1C, "CONTROLLER LIST INVALID", "controller_list_invalid"),
    STRATA_NVME_SC(1, 0x1D, "DEVICE SELF-TEST IN PROGRESS", "self_test_in_progress"),
    STRATA_NVME_SC(1, 0x1E, "BOOT PARTITION WRITE PROHIBITED", "boot_partition_write_prohibited"),
    STRATA_NVME_SC(1, 0x1F, "INVALID CONTROLLER IDENTIFIER", "invalid_controller_id"),
    STRATA_NVME_SC(1, 0x20, "INVALID SECONDARY CONTROLLER STATE",
                   "invalid_secondary_controller_state"),
    STRATA_NVME_SC(1, 0x21, "INVALID NUMBER OF CONTROLLER RESOURCES",
                   "invalid_controller_resources"),
    STRATA_NVME_SC(1, 0x22, "INVALID RESOURCE IDENTIFIER", "invalid_resource_id"),
    STRATA_NVME_SC(1, 0x23, "SANITIZE PROHIBITED WHILE PERSISTENT MEMORY REGION IS ENABLED",
                   "sanitize_prohibited_pmr"),
    STRATA_NVME_SC(1, 0x24, "ANA GROUP IDENTIFIER INVALID", "ana_group_id_invalid"),
    STRATA_NVME_SC(1, 0x25, "ANA ATTACH FAILED", "ana_attach_failed"),
    STRATA_NVME_SC(1, 0x26, "INSUFFICIENT CAPACITY", "insufficient_capacity"),
    STRATA_NVME_SC(1, 0x27, "NAMESPACE ATTACHMENT LIMIT EXCEEDED", "ns_attachment_limit_exceeded"),
    STRATA_NVME_SC(1, 0x28, "PROHIBITION OF COMMAND EXECUTION NOT SUPPORTED",
                   "prohibition_not_supported"),
    STRATA_NVME_SC(1, 0x29, "I/O COMMAND SET NOT SUPPORTED", "io_command_set_not_supported"),
    STRATA_NVME_SC(1, 0x2A, "I/O COMMAND SET NOT ENABLED", "io_command_set_not_enabled"),
    STRATA_NVME_SC(1, 0x2B, "I/O COMMAND SET COMBINATION REJECTED",
                   "io_command_set_combination_rejected"),
    STRATA_NVME_SC(1, 0x2C, "INVALID I/O COMMAND SET", "invalid_io_command_set"),
    STRATA_NVME_SC(1, 0x2D, "IDENTIFIER UNAVAILABLE", "identifier_unavailable"),
    STRATA_NVME_SC(1, 0x80, "CONFLICTING ATTRIBUTES", "conflicting_attributes"),
    STRATA_NVME_SC(1, 0x81, "INVALID PROTECTION INFORMATION", "invalid_protection_info"),
    STRATA_NVME_SC(1, 0x82, "ATTEMPTED WRITE TO READ ONLY RANGE", "write_to_read_only_range"),
    STRATA_NVME_SC(1, 0x83, "COMMAND SIZE LIMIT EXCEEDED", "command_size_limit_exceeded"),
    STRATA_NVME_SC(1, 0xB8, "ZONED BOUNDARY ERROR", "zoned_boundary_error"),
    STRATA_NVME_SC(1, 0xB9, "ZONE IS FULL", "zone_is_full"),
    STRATA_NVME_SC(1, 0xBA, "ZONE IS READ ONLY", "zone_is_read_only"),
    STRATA_NVME_SC(1, 0xBB, "ZONE IS OFFLINE", "zone_is_offline"),
    STRATA_NVME_SC(1, 0xBC, "ZONE INVALID WRITE", "zone_invalid_write"),
    STRATA_NVME_SC(1, 0xBD, "TOO MANY ACTIVE ZONES", "too_many_active_zones"),
    STRATA_NVME_SC(1, 0xBE, "TOO MANY OPEN ZONES", "too_many_open_zones"),
    STRATA_NVME_SC(1, 0xBF, "INVALID ZONE STATE TRANSITION", "invalid_zone_state_transition"),
    // Media and Data Integrity Errors.
    STRATA_NVME_SC(2, 0x80, "WRITE FAULT", "write_fault"),
    STRATA_NVME_SC(2, 0x81, "UNRECOVERED READ ERROR", "unrecovered_read_error"),
    STRATA_NVME_SC(2, 0x82, "END-TO-END GUARD CHECK ERROR", "guard_check_error"),
    STRATA_NVME_SC(2, 0x83, "END-TO-END APPLICATION TAG CHECK ERROR",
                   "application_tag_check_error"),
    STRATA_NVME_SC(2, 0x84, "END-TO-END REFERENCE TAG CHECK ERROR", "reference_tag_check_error"),
    STRATA_NVME_SC(2, 0x85, "COMPARE FAILURE", "compare_failure"),
    STRATA_NVME_SC(2, 0x86, "ACCESS DENIED", "access_denied"),
    STRATA_NVME_SC(2, 0x87, "DEALLOCATED OR UNWRITTEN LOGICAL BLOCK",
                   "deallocated_or_unwritten_block"),
    STRATA_NVME_SC(2, 0x88, "END-TO-END STORAGE TAG CHECK ERROR", "storage_tag_check_error"),
    // Path Related Status.
    STRATA_NVME_SC(3, 0x00, "INTERNAL PATH ERROR", "internal_path_error"),
    STRATA_NVME_SC(3, 0x01, "ASYMMETRIC ACCESS PERSISTENT LOSS", "ana_persistent_loss"),
    STRATA_NVME_SC(3, 0x02, "ASYMMETRIC ACCESS INACCESSIBLE", "ana_inaccessible"),
    STRATA_NVME_SC(3, 0x03, "ASYMMETRIC ACCESS TRANSITION", "ana_transition"),
    STRATA_NVME_SC(3, 0x60, "CONTROLLER PATHING ERROR", "controller_pathing_error"),
    STRATA_NVME_SC(3, 0x70, "HOST PATHING ERROR", "host_pathing_error"),
    STRATA_NVME_SC(3, 0x71, "COMMAND ABORTED BY HOST", "aborted_by_host"),
};
#undef STRATA_NVME_SC

constexpr char hex_digit(unsigned v) noexcept { return "0123456789abcdef"[v & 0xF]; }
}  // namespace detail

// Every (SCT, SC) pair this header names, for tests and tools that list them.
constexpr const auto& status_table() noexcept { return detail::status_table; }

// Index of (sct, sc) in status_table(), or -1 for a reserved, vendor-specific or unknown code.
// (Index rather than pointer: GCC's UBSan instrumentation makes pointer null checks
// non-constant, and these decoders must stay usable in constant expressions.)
constexpr int find_status_index(unsigned sct, unsigned sc) noexcept {
    int i = 0;
    for (const StatusInfo& s : detail::status_table) {
        if (s.sct == sct && s.sc == sc) return i;
        ++i;
    }
    return -1;
}

// The table entry for (sct, sc), or nullptr for a code this header does not name.
constexpr const StatusInfo* find_status(unsigned sct, unsigned sc) noexcept {
    const int i = find_status_index(sct, sc);
    return i < 0 ? nullptr : &detail::status_table[i];
}

// "invalid_field"; "unknown" for codes this header does not name.
constexpr std::string_view status_mnemonic(unsigned sct, unsigned sc) noexcept {
    const int i = find_status_index(sct, sc);
    return i >= 0 ? detail::status_table[i].mnemonic : std::string_view{"unknown"};
}
constexpr std::string_view status_mnemonic(StatusField sf) noexcept {
    return status_mnemonic(sf.sct(), sf.sc());
}

// A status name held in a fixed buffer (no allocation); NUL-terminated for C APIs.
class StatusName {
public:
    constexpr std::string_view view() const noexcept { return {buf_.data(), len_}; }
    constexpr const char* c_str() const noexcept { return buf_.data(); }
    std::string str() const { return std::string(view()); }
    constexpr size_t size() const noexcept { return len_; }
    friend constexpr bool operator==(const StatusName& a, std::string_view b) noexcept {
        return a.view() == b;
    }
    template <typename Stream>
    friend Stream& operator<<(Stream& os, const StatusName& n) {
        return os << n.view();
    }

private:
    friend constexpr StatusName status_name(unsigned sct, unsigned sc) noexcept;
    constexpr void append(std::string_view s) noexcept {
        for (char c : s) {
            if (len_ + 1 < buf_.size()) buf_[len_++] = c;
        }
        buf_[len_] = '\0';
    }
    constexpr void append_hex(unsigned v) noexcept {
        append("0x");
        if (v > 0xF) {
            const char hi[1] = {detail::hex_digit(v >> 4)};
            append({hi, 1});
        }
        const char lo[1] = {detail::hex_digit(v)};
        append({lo, 1});
    }

    std::array<char, 72> buf_{};
    size_t len_ = 0;
};

// "INVALID FIELD IN COMMAND"; "UNKNOWN (sct 0x7, sc 0xff)" for codes this header does not name.
// SCT is 3 bits and SC 8 bits in a completion; larger inputs are reported, never indexed with.
constexpr StatusName status_name(unsigned sct, unsigned sc) noexcept {
    StatusName out;
    if (const int i = find_status_index(sct, sc); i >= 0) {
        out.append(detail::status_table[i].name);
        return out;
    }
    out.append("UNKNOWN (sct ");
    out.append_hex(sct & 0xFF);
    out.append(", sc ");
    out.append_hex(sc & 0xFF);
    out.append(")");
    return out;
}
constexpr StatusName status_name(StatusField sf) noexcept { return status_name(sf.sct(), sf.sc()); }
constexpr StatusName status_name(const Cqe& cqe) noexcept { return status_name(cqe.sf()); }

constexpr StatusField make_status(GenericStatus sc, bool dnr = false) noexcept {
    return StatusField::make(static_cast<uint8_t>(Sct::generic), static_cast<uint8_t>(sc), dnr);
}
constexpr StatusField make_status(CommandSpecificStatus sc, bool dnr = false) noexcept {
    return StatusField::make(static_cast<uint8_t>(Sct::command_specific), static_cast<uint8_t>(sc),
                             dnr);
}
constexpr StatusField make_status(MediaStatus sc, bool dnr = false) noexcept {
    return StatusField::make(static_cast<uint8_t>(Sct::media_error), static_cast<uint8_t>(sc), dnr);
}
constexpr StatusField make_status(PathStatus sc, bool dnr = false) noexcept {
    return StatusField::make(static_cast<uint8_t>(Sct::path), static_cast<uint8_t>(sc), dnr);
}

constexpr std::string_view sct_name(unsigned sct) noexcept {
    switch (sct) {
        case 0: return "GENERIC";
        case 1: return "COMMAND SPECIFIC";
        case 2: return "MEDIA AND DATA INTEGRITY";
        case 3: return "PATH RELATED";
        case 7: return "VENDOR SPECIFIC";
        default: return "RESERVED";
    }
}

}  // namespace strata::nvme::spec
