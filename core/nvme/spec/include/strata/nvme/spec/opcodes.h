// Command opcodes, Identify CNS values, log page and feature identifiers, asynchronous event
// types and information (NVMe Base Specification 2.0, 5 and NVM Command Set Specification 1.0, 3).
#pragma once

#include <cstdint>
#include <string_view>

namespace strata::nvme::spec {

// Admin command opcodes.
enum class AdminOpcode : uint8_t {
    delete_io_sq = 0x00,
    create_io_sq = 0x01,
    get_log_page = 0x02,
    delete_io_cq = 0x04,
    create_io_cq = 0x05,
    identify = 0x06,
    abort = 0x08,
    set_features = 0x09,
    get_features = 0x0A,
    async_event_request = 0x0C,
    ns_management = 0x0D,
    firmware_commit = 0x10,
    firmware_image_download = 0x11,
    device_self_test = 0x14,
    ns_attachment = 0x15,
    keep_alive = 0x18,
    directive_send = 0x19,
    directive_receive = 0x1A,
    virtualization_management = 0x1C,
    nvme_mi_send = 0x1D,
    nvme_mi_receive = 0x1E,
    capacity_management = 0x20,
    lockdown = 0x24,
    doorbell_buffer_config = 0x7C,
    fabrics = 0x7F,
    format_nvm = 0x80,
    security_send = 0x81,
    security_receive = 0x82,
    sanitize = 0x84,
    get_lba_status = 0x86,
};

// NVM Command Set I/O opcodes.
enum class NvmOpcode : uint8_t {
    flush = 0x00,
    write = 0x01,
    read = 0x02,
    write_uncorrectable = 0x04,
    compare = 0x05,
    write_zeroes = 0x08,
    dataset_management = 0x09,
    verify = 0x0C,
    reservation_register = 0x0D,
    reservation_report = 0x0E,
    reservation_acquire = 0x11,
    reservation_release = 0x15,
    copy = 0x19,
};

// Opcode bits 1:0 give the data direction: 00 none, 01 host to controller, 10 controller to
// host, 11 bidirectional (both spec command sets follow this convention).
enum class DataDirection : uint8_t {
    none = 0,
    host_to_controller = 1,
    controller_to_host = 2,
    bidirectional = 3
};
constexpr DataDirection opcode_direction(uint8_t opc) noexcept {
    return static_cast<DataDirection>(opc & 0x3);
}

constexpr std::string_view admin_opcode_name(uint8_t opc) noexcept {
    switch (static_cast<AdminOpcode>(opc)) {
        case AdminOpcode::delete_io_sq: return "DELETE IO SQ";
        case AdminOpcode::create_io_sq: return "CREATE IO SQ";
        case AdminOpcode::get_log_page: return "GET LOG PAGE";
        case AdminOpcode::delete_io_cq: return "DELETE IO CQ";
        case AdminOpcode::create_io_cq: return "CREATE IO CQ";
        case AdminOpcode::identify: return "IDENTIFY";
        case AdminOpcode::abort: return "ABORT";
        case AdminOpcode::set_features: return "SET FEATURES";
        case AdminOpcode::get_features: return "GET FEATURES";
        case AdminOpcode::async_event_request: return "ASYNC EVENT REQUEST";
        case AdminOpcode::ns_management: return "NAMESPACE MANAGEMENT";
        case AdminOpcode::firmware_commit: return "FIRMWARE COMMIT";
        case AdminOpcode::firmware_image_download: return "FIRMWARE IMAGE DOWNLOAD";
        case AdminOpcode::device_self_test: return "DEVICE SELF-TEST";
        case AdminOpcode::ns_attachment: return "NAMESPACE ATTACHMENT";
        case AdminOpcode::keep_alive: return "KEEP ALIVE";
        case AdminOpcode::directive_send: return "DIRECTIVE SEND";
        case AdminOpcode::directive_receive: return "DIRECTIVE RECEIVE";
        case AdminOpcode::virtualization_management: return "VIRTUALIZATION MANAGEMENT";
        case AdminOpcode::nvme_mi_send: return "NVME-MI SEND";
        case AdminOpcode::nvme_mi_receive: return "NVME-MI RECEIVE";
        case AdminOpcode::capacity_management: return "CAPACITY MANAGEMENT";
        case AdminOpcode::lockdown: return "LOCKDOWN";
        case AdminOpcode::doorbell_buffer_config: return "DOORBELL BUFFER CONFIG";
        case AdminOpcode::fabrics: return "FABRICS COMMAND";
        case AdminOpcode::format_nvm: return "FORMAT NVM";
        case AdminOpcode::security_send: return "SECURITY SEND";
        case AdminOpcode::security_receive: return "SECURITY RECEIVE";
        case AdminOpcode::sanitize: return "SANITIZE";
        case AdminOpcode::get_lba_status: return "GET LBA STATUS";
    }
    return opc >= 0xC0 ? "VENDOR SPECIFIC" : "UNKNOWN";
}

constexpr std::string_view nvm_opcode_name(uint8_t opc) noexcept {
    switch (static_cast<NvmOpcode>(opc)) {
        case NvmOpcode::flush: return "FLUSH";
        case NvmOpcode::write: return "WRITE";
        case NvmOpcode::read: return "READ";
        case NvmOpcode::write_uncorrectable: return "WRITE UNCORRECTABLE";
        case NvmOpcode::compare: return "COMPARE";
        case NvmOpcode::write_zeroes: return "WRITE ZEROES";
        case NvmOpcode::dataset_management: return "DATASET MANAGEMENT";
        case NvmOpcode::verify: return "VERIFY";
        case NvmOpcode::reservation_register: return "RESERVATION REGISTER";
        case NvmOpcode::reservation_report: return "RESERVATION REPORT";
        case NvmOpcode::reservation_acquire: return "RESERVATION ACQUIRE";
        case NvmOpcode::reservation_release: return "RESERVATION RELEASE";
        case NvmOpcode::copy: return "COPY";
    }
    return opc >= 0x80 ? "VENDOR SPECIFIC" : "UNKNOWN";
}

// Command Set Identifier (CSI), used by Identify and Get Log Page.
enum class Csi : uint8_t { nvm = 0x00, key_value = 0x01, zoned = 0x02 };

// Identify CDW10.CNS.
enum class Cns : uint8_t {
    ns = 0x00,               // Identify Namespace (NVM)
    ctrlr = 0x01,            // Identify Controller
    active_ns_list = 0x02,   // active NSIDs greater than CDW1.NSID, up to 1024
    ns_id_desc_list = 0x03,  // Namespace Identification Descriptor list
    nvm_set_list = 0x04,
    cs_ns = 0x05,     // I/O Command Set specific Identify Namespace
    cs_ctrlr = 0x06,  // I/O Command Set specific Identify Controller
    cs_active_ns_list = 0x07,
    cs_independent_ns = 0x08,  // I/O Command Set Independent Identify Namespace
    allocated_ns_list = 0x10,
    allocated_ns = 0x11,
    ns_ctrlr_list = 0x12,  // controllers attached to NSID
    ctrlr_list = 0x13,     // controllers in the NVM subsystem
    primary_ctrlr_caps = 0x14,
    secondary_ctrlr_list = 0x15,
    ns_granularity_list = 0x16,
    uuid_list = 0x17,
    domain_list = 0x18,
    endurance_group_list = 0x19,
    cs_allocated_ns_list = 0x1A,
    cs_allocated_ns = 0x1B,
    io_command_set = 0x1C,
};
inline constexpr uint32_t identify_data_bytes = 4096;
inline constexpr uint32_t ns_list_max_entries = 1024;  // CNS 02h/10h: 1024 NSIDs per page

// Log page identifiers (Get Log Page CDW10.LID).
enum class LogPage : uint8_t {
    supported_log_pages = 0x00,
    error_info = 0x01,
    smart_health = 0x02,
    firmware_slot = 0x03,
    changed_ns_list = 0x04,
    commands_supported_effects = 0x05,
    device_self_test = 0x06,
    telemetry_host = 0x07,
    telemetry_ctrlr = 0x08,
    endurance_group_info = 0x09,
    predictable_latency_per_set = 0x0A,
    predictable_latency_aggregate = 0x0B,
    ana = 0x0C,  // Asymmetric Namespace Access
    persistent_event = 0x0D,
    lba_status_info = 0x0E,
    endurance_group_event_aggregate = 0x0F,
    media_unit_status = 0x10,
    supported_capacity_config = 0x11,
    feature_ids_supported_effects = 0x12,
    nvme_mi_commands_supported_effects = 0x13,
    command_feature_lockdown = 0x14,
    boot_partition = 0x15,
    rotational_media_info = 0x16,
    discovery = 0x70,
    reservation_notification = 0x80,
    sanitize_status = 0x81,
};

constexpr std::string_view log_page_name(uint8_t lid) noexcept {
    switch (static_cast<LogPage>(lid)) {
        case LogPage::supported_log_pages: return "Supported Log Pages";
        case LogPage::error_info: return "Error Information";
        case LogPage::smart_health: return "SMART / Health Information";
        case LogPage::firmware_slot: return "Firmware Slot Information";
        case LogPage::changed_ns_list: return "Changed Namespace List";
        case LogPage::commands_supported_effects: return "Commands Supported and Effects";
        case LogPage::device_self_test: return "Device Self-test";
        case LogPage::telemetry_host: return "Telemetry Host-Initiated";
        case LogPage::telemetry_ctrlr: return "Telemetry Controller-Initiated";
        case LogPage::endurance_group_info: return "Endurance Group Information";
        case LogPage::predictable_latency_per_set: return "Predictable Latency Per NVM Set";
        case LogPage::predictable_latency_aggregate: return "Predictable Latency Event Aggregate";
        case LogPage::ana: return "Asymmetric Namespace Access";
        case LogPage::persistent_event: return "Persistent Event Log";
        case LogPage::lba_status_info: return "LBA Status Information";
        case LogPage::endurance_group_event_aggregate: return "Endurance Group Event Aggregate";
        case LogPage::media_unit_status: return "Media Unit Status";
        case LogPage::supported_capacity_config: return "Supported Capacity Configuration List";
        case LogPage::feature_ids_supported_effects:
            return "Feature Identifiers Supported and Effects";
        case LogPage::nvme_mi_commands_supported_effects:
            return "NVMe-MI Commands Supported and Effects";
        case LogPage::command_feature_lockdown: return "Command and Feature Lockdown";
        case LogPage::boot_partition: return "Boot Partition";
        case LogPage::rotational_media_info: return "Rotational Media Information";
        case LogPage::discovery: return "Discovery";
        case LogPage::reservation_notification: return "Reservation Notification";
        case LogPage::sanitize_status: return "Sanitize Status";
    }
    return lid >= 0xC0 ? "Vendor Specific" : "Unknown";
}

// Feature identifiers (Set/Get Features CDW10.FID).
enum class FeatureId : uint8_t {
    arbitration = 0x01,
    power_management = 0x02,
    lba_range_type = 0x03,
    temperature_threshold = 0x04,
    error_recovery = 0x05,
    volatile_write_cache = 0x06,
    number_of_queues = 0x07,
    interrupt_coalescing = 0x08,
    interrupt_vector_config = 0x09,
    write_atomicity_normal = 0x0A,
    async_event_config = 0x0B,
    autonomous_power_state_transition = 0x0C,
    host_memory_buffer = 0x0D,
    timestamp = 0x0E,
    keep_alive_timer = 0x0F,
    host_controlled_thermal_mgmt = 0x10,
    non_operational_power_state_config = 0x11,
    read_recovery_level_config = 0x12,
    predictable_latency_mode_config = 0x13,
    predictable_latency_mode_window = 0x14,
    lba_status_info_attributes = 0x15,
    host_behavior_support = 0x16,
    sanitize_config = 0x17,
    endurance_group_event_config = 0x18,
    io_command_set_profile = 0x19,
    spinup_control = 0x1A,
    enhanced_ctrlr_metadata = 0x7D,
    ctrlr_metadata = 0x7E,
    ns_metadata = 0x7F,
    software_progress_marker = 0x80,
    host_identifier = 0x81,
    reservation_notification_mask = 0x82,
    reservation_persistence = 0x83,
    ns_write_protection_config = 0x84,
};

constexpr std::string_view feature_name(uint8_t fid) noexcept {
    switch (static_cast<FeatureId>(fid)) {
        case FeatureId::arbitration: return "Arbitration";
        case FeatureId::power_management: return "Power Management";
        case FeatureId::lba_range_type: return "LBA Range Type";
        case FeatureId::temperature_threshold: return "Temperature Threshold";
        case FeatureId::error_recovery: return "Error Recovery";
        case FeatureId::volatile_write_cache: return "Volatile Write Cache";
        case FeatureId::number_of_queues: return "Number of Queues";
        case FeatureId::interrupt_coalescing: return "Interrupt Coalescing";
        case FeatureId::interrupt_vector_config: return "Interrupt Vector Configuration";
        case FeatureId::write_atomicity_normal: return "Write Atomicity Normal";
        case FeatureId::async_event_config: return "Asynchronous Event Configuration";
        case FeatureId::autonomous_power_state_transition:
            return "Autonomous Power State Transition";
        case FeatureId::host_memory_buffer: return "Host Memory Buffer";
        case FeatureId::timestamp: return "Timestamp";
        case FeatureId::keep_alive_timer: return "Keep Alive Timer";
        case FeatureId::host_controlled_thermal_mgmt: return "Host Controlled Thermal Management";
        case FeatureId::non_operational_power_state_config:
            return "Non-Operational Power State Config";
        case FeatureId::read_recovery_level_config: return "Read Recovery Level Config";
        case FeatureId::predictable_latency_mode_config: return "Predictable Latency Mode Config";
        case FeatureId::predictable_latency_mode_window: return "Predictable Latency Mode Window";
        case FeatureId::lba_status_info_attributes: return "LBA Status Information Attributes";
        case FeatureId::host_behavior_support: return "Host Behavior Support";
        case FeatureId::sanitize_config: return "Sanitize Config";
        case FeatureId::endurance_group_event_config: return "Endurance Group Event Configuration";
        case FeatureId::io_command_set_profile: return "I/O Command Set Profile";
        case FeatureId::spinup_control: return "Spinup Control";
        case FeatureId::enhanced_ctrlr_metadata: return "Enhanced Controller Metadata";
        case FeatureId::ctrlr_metadata: return "Controller Metadata";
        case FeatureId::ns_metadata: return "Namespace Metadata";
        case FeatureId::software_progress_marker: return "Software Progress Marker";
        case FeatureId::host_identifier: return "Host Identifier";
        case FeatureId::reservation_notification_mask: return "Reservation Notification Mask";
        case FeatureId::reservation_persistence: return "Reservation Persistence";
        case FeatureId::ns_write_protection_config: return "Namespace Write Protection Config";
    }
    return fid >= 0xC0 ? "Vendor Specific" : "Unknown";
}

// Get Features CDW10.SEL.
enum class FeatureSelect : uint8_t {
    current = 0,
    default_value = 1,
    saved = 2,
    supported_capabilities = 3
};

// Asynchronous Event Request completion DW0: type (2:0), information (15:8), log page (23:16).
enum class AsyncEventType : uint8_t {
    error = 0x0,
    smart_health = 0x1,
    notice = 0x2,
    immediate = 0x3,  // NVMe 2.0
    one_shot = 0x4,   // NVMe 2.0
    io_command_specific = 0x6,
    vendor_specific = 0x7,
};
// Information values for AsyncEventType::error.
enum class AsyncErrorInfo : uint8_t {
    write_to_invalid_doorbell = 0x00,
    invalid_doorbell_write_value = 0x01,
    diagnostic_failure = 0x02,
    persistent_internal_error = 0x03,
    transient_internal_error = 0x04,
    firmware_image_load_error = 0x05,
};
// Information values for AsyncEventType::smart_health.
enum class AsyncSmartInfo : uint8_t {
    subsystem_reliability = 0x00,
    temperature_threshold = 0x01,
    spare_below_threshold = 0x02,
};
// Information values for AsyncEventType::notice.
enum class AsyncNoticeInfo : uint8_t {
    ns_attribute_changed = 0x00,
    firmware_activation_starting = 0x01,
    telemetry_log_changed = 0x02,
    ana_change = 0x03,
    predictable_latency_aggregate_changed = 0x04,
    lba_status_alert = 0x05,
    endurance_group_aggregate_changed = 0x06,
    normal_subsystem_shutdown = 0x07,
    discovery_log_changed = 0xF0,
};
// Information values for AsyncEventType::io_command_specific.
enum class AsyncIoInfo : uint8_t {
    reservation_log_available = 0x00,
    sanitize_completed = 0x01,
    sanitize_completed_with_unexpected_deallocation = 0x02,
};

struct AsyncEventCompletion {
    using value_type = uint32_t;
    value_type raw = 0;  // CQE DW0

    constexpr AsyncEventType type() const noexcept {
        return static_cast<AsyncEventType>(raw & 0x7);
    }
    constexpr uint8_t info() const noexcept { return static_cast<uint8_t>(raw >> 8); }
    constexpr uint8_t log_page() const noexcept { return static_cast<uint8_t>(raw >> 16); }

    static constexpr AsyncEventCompletion make(AsyncEventType t, uint8_t info_value,
                                               LogPage lid) noexcept {
        return AsyncEventCompletion{static_cast<uint32_t>(t) | (uint32_t{info_value} << 8) |
                                    (uint32_t{static_cast<uint8_t>(lid)} << 16)};
    }
    friend constexpr bool operator==(AsyncEventCompletion, AsyncEventCompletion) noexcept = default;
};
static_assert(sizeof(AsyncEventCompletion) == 4);

}  // namespace strata::nvme::spec
