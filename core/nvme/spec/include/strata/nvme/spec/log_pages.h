// Log pages (NVMe Base Specification 2.0, 5.16.1): Error Information (01h), SMART / Health
// Information (02h), Firmware Slot Information (03h), Changed Namespace List (04h) and Commands
// Supported and Effects (05h). Little-endian; sizes and key offsets checked below.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <strata/nvme/spec/bits.h>

namespace strata::nvme::spec {

// Error Information log entry, 64 bytes; the log is an array of ELPE + 1 entries, newest first.
struct ErrorInfoEntry {
    uint64_t error_count;         // 0  unique, incrementing; 0 marks an empty entry
    uint16_t sqid;                // 8  Submission Queue ID
    uint16_t cid;                 // 10 Command ID
    uint16_t status;              // 12 Status Field (15:1) and Phase Tag (0), as in the CQE
    uint16_t parameter_location;  // 14 byte (7:0) and bit (10:8) of the failing field
    uint64_t lba;                 // 16 first LBA that saw the error
    uint32_t nsid;                // 24 Namespace
    uint8_t vendor_log_page;      // 28 Vendor Specific Information Available (log page id)
    uint8_t trtype;               // 29 Transport Type
    std::array<uint8_t, 2> reserved30;
    uint64_t command_specific;           // 32 Command Specific Information
    uint16_t transport_specific;         // 40 Transport Type Specific Information
    std::array<uint8_t, 22> reserved42;  // 42..63 (later revisions put a log page version at 63)

    constexpr uint8_t parameter_byte() const noexcept {
        return static_cast<uint8_t>(parameter_location & 0xFF);
    }
    constexpr uint8_t parameter_bit() const noexcept {
        return static_cast<uint8_t>((parameter_location >> 8) & 0x7);
    }
};
static_assert(sizeof(ErrorInfoEntry) == 64);
static_assert(offsetof(ErrorInfoEntry, sqid) == 8 && offsetof(ErrorInfoEntry, status) == 12);
static_assert(offsetof(ErrorInfoEntry, lba) == 16 && offsetof(ErrorInfoEntry, nsid) == 24);
static_assert(offsetof(ErrorInfoEntry, trtype) == 29 &&
              offsetof(ErrorInfoEntry, command_specific) == 32);
static_assert(offsetof(ErrorInfoEntry, transport_specific) == 40);

// SMART / Health Information log, 512 bytes. Temperatures are kelvin.
struct SmartHealthLog {
    uint8_t critical_warning;                     // 0   see smart_warning below
    UnalignedLe<uint16_t> composite_temperature;  // 1 (unaligned in the spec)
    uint8_t available_spare;                      // 3   percent
    uint8_t available_spare_threshold;            // 4   percent
    uint8_t percentage_used;                      // 5   may exceed 100
    uint8_t endurance_group_critical_warning;     // 6
    std::array<uint8_t, 25> reserved7;
    Uint128Le data_units_read;                   // 32  thousands of 512-byte units
    Uint128Le data_units_written;                // 48
    Uint128Le host_read_commands;                // 64
    Uint128Le host_write_commands;               // 80
    Uint128Le controller_busy_time;              // 96  minutes
    Uint128Le power_cycles;                      // 112
    Uint128Le power_on_hours;                    // 128
    Uint128Le unsafe_shutdowns;                  // 144
    Uint128Le media_errors;                      // 160 Media and Data Integrity Errors
    Uint128Le num_err_log_entries;               // 176 Number of Error Information Log Entries
    uint32_t warning_temp_time;                  // 192 minutes above WCTEMP
    uint32_t critical_temp_time;                 // 196 minutes above CCTEMP
    std::array<uint16_t, 8> temperature_sensor;  // 200 sensors 1..8 (0: not implemented)
    uint32_t thm_temp1_trans_count;  // 216 Thermal Management Temperature 1 Transition Count
    uint32_t thm_temp2_trans_count;  // 220
    uint32_t thm_temp1_total_time;   // 224 seconds
    uint32_t thm_temp2_total_time;   // 228
    std::array<uint8_t, 280> reserved232;
};
static_assert(sizeof(SmartHealthLog) == 512);
static_assert(offsetof(SmartHealthLog, composite_temperature) == 1);
static_assert(offsetof(SmartHealthLog, available_spare) == 3 &&
              offsetof(SmartHealthLog, percentage_used) == 5);
static_assert(offsetof(SmartHealthLog, data_units_read) == 32 &&
              offsetof(SmartHealthLog, data_units_written) == 48);
static_assert(offsetof(SmartHealthLog, power_on_hours) == 128 &&
              offsetof(SmartHealthLog, unsafe_shutdowns) == 144);
static_assert(offsetof(SmartHealthLog, media_errors) == 160 &&
              offsetof(SmartHealthLog, num_err_log_entries) == 176);
static_assert(offsetof(SmartHealthLog, warning_temp_time) == 192 &&
              offsetof(SmartHealthLog, temperature_sensor) == 200);
static_assert(offsetof(SmartHealthLog, thm_temp1_trans_count) == 216 &&
              offsetof(SmartHealthLog, thm_temp2_total_time) == 228);

namespace smart_warning {  // SmartHealthLog::critical_warning bits (also AEN config bits 7:0)
inline constexpr uint8_t spare_below_threshold = 1u << 0;
inline constexpr uint8_t temperature = 1u << 1;
inline constexpr uint8_t reliability_degraded = 1u << 2;
inline constexpr uint8_t read_only = 1u << 3;
inline constexpr uint8_t volatile_backup_failed = 1u << 4;
inline constexpr uint8_t pmr_read_only = 1u << 5;
}  // namespace smart_warning

// Firmware Slot Information log, 512 bytes.
struct FirmwareSlotLog {
    uint8_t afi;  // Active Firmware Info: active slot (2:0), next slot at reset (6:4)
    std::array<uint8_t, 7> reserved1;
    std::array<std::array<char, 8>, 7> frs;  // 8 Firmware Revision for Slot 1..7
    std::array<uint8_t, 448> reserved64;
};
static_assert(sizeof(FirmwareSlotLog) == 512);
static_assert(offsetof(FirmwareSlotLog, frs) == 8 && offsetof(FirmwareSlotLog, reserved64) == 64);

// Changed Namespace List log, 4096 bytes: up to 1024 NSIDs, zero terminated; more than 1024
// changes are reported as a single entry of 0xFFFFFFFF.
struct ChangedNsList {
    std::array<uint32_t, 1024> nsid;

    static constexpr uint32_t overflow = 0xFFFFFFFFu;
    constexpr bool overflowed() const noexcept { return nsid[0] == overflow; }
};
static_assert(sizeof(ChangedNsList) == 4096);

// Commands Supported and Effects data structure (one per opcode).
struct CommandEffects {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(csupp, 0, 1)  // Command Supported
    STRATA_NVME_FIELD(lbcc, 1, 1)   // Logical Block Content Change
    STRATA_NVME_FIELD(ncc, 2, 1)    // Namespace Capability Change
    STRATA_NVME_FIELD(nic, 3, 1)    // Namespace Inventory Change
    STRATA_NVME_FIELD(ccc, 4, 1)    // Controller Capability Change
    STRATA_NVME_FIELD(cse, 16, 3)   // Command Submission and Execution
    STRATA_NVME_FIELD(uss, 19, 1)   // UUID Selection Supported
    STRATA_NVME_FIELD(csp, 20, 12)  // Command Scope

    friend constexpr bool operator==(CommandEffects, CommandEffects) noexcept = default;
};
static_assert(sizeof(CommandEffects) == 4);

// Commands Supported and Effects log, 4096 bytes, indexed by opcode.
struct CommandsEffectsLog {
    std::array<CommandEffects, 256> acs;   // 0    Admin Command Supported
    std::array<CommandEffects, 256> iocs;  // 1024 I/O Command Supported
    std::array<uint8_t, 2048> reserved2048;
};
static_assert(sizeof(CommandsEffectsLog) == 4096);
static_assert(offsetof(CommandsEffectsLog, iocs) == 1024);

}  // namespace strata::nvme::spec
