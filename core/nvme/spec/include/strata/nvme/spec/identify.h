// Identify data structures (NVMe Base Specification 2.0, 5.17.2; NVM Command Set Specification
// 1.0, 4.1.5): Identify Controller (CNS 01h), Identify Namespace for the NVM command set
// (CNS 00h), the Namespace Identification Descriptor list (CNS 03h) and the active namespace
// list (CNS 02h). All 4096 bytes, little-endian, every offset checked below.
//
// These arrive from a device: a driver validates what it uses (lbads range, nlbaf bound, mdts)
// and never indexes with a raw device value. The helpers below clamp or report 0 for nonsense.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <strata/nvme/spec/bits.h>

namespace strata::nvme::spec {

// Power State Descriptor, 32 bytes (Identify Controller bytes 2048 + 32 * n).
struct PowerStateDescriptor {
    uint16_t mp;  // Maximum Power (0.01 W, or 0.0001 W when MXPS)
    uint8_t reserved2;
    uint8_t flags;   // bit 0 MXPS (max power scale), bit 1 NOPS (non-operational state)
    uint32_t enlat;  // Entry Latency, microseconds
    uint32_t exlat;  // Exit Latency, microseconds
    uint8_t rrt;     // Relative Read Throughput (4:0)
    uint8_t rrl;     // Relative Read Latency (4:0)
    uint8_t rwt;     // Relative Write Throughput (4:0)
    uint8_t rwl;     // Relative Write Latency (4:0)
    uint16_t idlp;   // Idle Power
    uint8_t ips;     // Idle Power Scale (7:6)
    uint8_t reserved19;
    uint16_t actp;    // Active Power
    uint8_t apw_aps;  // Active Power Workload (2:0), Active Power Scale (7:6)
    std::array<uint8_t, 9> reserved23;

    constexpr bool mxps() const noexcept { return (flags & 0x1) != 0; }
    constexpr bool nops() const noexcept { return (flags & 0x2) != 0; }
};
static_assert(sizeof(PowerStateDescriptor) == 32);
static_assert(offsetof(PowerStateDescriptor, enlat) == 4 &&
              offsetof(PowerStateDescriptor, idlp) == 16);
static_assert(offsetof(PowerStateDescriptor, actp) == 20 &&
              offsetof(PowerStateDescriptor, apw_aps) == 22);

// Identify Controller data structure (CNS 01h), 4096 bytes.
struct IdentifyController {
    // Controller capabilities and features.
    uint16_t vid;                 // 0    PCI Vendor ID
    uint16_t ssvid;               // 2    PCI Subsystem Vendor ID
    std::array<char, 20> sn;      // 4    Serial Number (ASCII, space padded)
    std::array<char, 40> mn;      // 24   Model Number
    std::array<char, 8> fr;       // 64   Firmware Revision
    uint8_t rab;                  // 72   Recommended Arbitration Burst
    std::array<uint8_t, 3> ieee;  // 73   IEEE OUI Identifier
    uint8_t cmic;                 // 76   Multi-Path I/O and Namespace Sharing Capabilities
    uint8_t mdts;                 // 77   Maximum Data Transfer Size: 2^n * CAP.MPSMIN, 0 = none
    uint16_t cntlid;              // 78   Controller ID
    uint32_t ver;                 // 80   Version (VS register format)
    uint32_t rtd3r;               // 84   RTD3 Resume Latency, us
    uint32_t rtd3e;               // 88   RTD3 Entry Latency, us
    uint32_t oaes;                // 92   Optional Asynchronous Events Supported
    uint32_t ctratt;              // 96   Controller Attributes
    uint16_t rrls;                // 100  Read Recovery Levels Supported
    std::array<uint8_t, 9> reserved102;
    uint8_t cntrltype;              // 111  Controller Type (1 I/O, 2 discovery, 3 admin)
    std::array<uint8_t, 16> fguid;  // 112  FRU Globally Unique Identifier
    uint16_t crdt1;                 // 128  Command Retry Delay Time 1, 100 ms units
    uint16_t crdt2;                 // 130
    uint16_t crdt3;                 // 132
    std::array<uint8_t, 119> reserved134;
    uint8_t nvmsr;  // 253  NVM Subsystem Report (NVMe-MI)
    uint8_t vwci;   // 254  VPD Write Cycle Information
    uint8_t mec;    // 255  Management Endpoint Capabilities
    // Admin command set attributes and optional controller capabilities.
    uint16_t oacs;       // 256  Optional Admin Command Support
    uint8_t acl;         // 258  Abort Command Limit (0's based)
    uint8_t aerl;        // 259  Asynchronous Event Request Limit (0's based)
    uint8_t frmw;        // 260  Firmware Updates
    uint8_t lpa;         // 261  Log Page Attributes
    uint8_t elpe;        // 262  Error Log Page Entries (0's based)
    uint8_t npss;        // 263  Number of Power States Support (0's based)
    uint8_t avscc;       // 264  Admin Vendor Specific Command Configuration
    uint8_t apsta;       // 265  Autonomous Power State Transition Attributes
    uint16_t wctemp;     // 266  Warning Composite Temperature Threshold, K
    uint16_t cctemp;     // 268  Critical Composite Temperature Threshold, K
    uint16_t mtfa;       // 270  Maximum Time for Firmware Activation
    uint32_t hmpre;      // 272  Host Memory Buffer Preferred Size
    uint32_t hmmin;      // 276  Host Memory Buffer Minimum Size
    Uint128Le tnvmcap;   // 280  Total NVM Capacity, bytes
    Uint128Le unvmcap;   // 296  Unallocated NVM Capacity, bytes
    uint32_t rpmbs;      // 312  Replay Protected Memory Block Support
    uint16_t edstt;      // 316  Extended Device Self-test Time
    uint8_t dsto;        // 318  Device Self-test Options
    uint8_t fwug;        // 319  Firmware Update Granularity
    uint16_t kas;        // 320  Keep Alive Support, 100 ms units
    uint16_t hctma;      // 322  Host Controlled Thermal Management Attributes
    uint16_t mntmt;      // 324  Minimum Thermal Management Temperature
    uint16_t mxtmt;      // 326  Maximum Thermal Management Temperature
    uint32_t sanicap;    // 328  Sanitize Capabilities
    uint32_t hmminds;    // 332  Host Memory Buffer Minimum Descriptor Entry Size
    uint16_t hmmaxd;     // 336  Host Memory Maximum Descriptors Entries
    uint16_t nsetidmax;  // 338  NVM Set Identifier Maximum
    uint16_t endgidmax;  // 340  Endurance Group Identifier Maximum
    uint8_t anatt;       // 342  ANA Transition Time
    uint8_t anacap;      // 343  ANA Capabilities
    uint32_t anagrpmax;  // 344  ANA Group Identifier Maximum
    uint32_t nanagrpid;  // 348  Number of ANA Group Identifiers
    uint32_t pels;       // 352  Persistent Event Log Size
    uint16_t domainid;   // 356  Domain Identifier
    std::array<uint8_t, 10> reserved358;
    Uint128Le megcap;  // 368  Max Endurance Group Capacity
    std::array<uint8_t, 128> reserved384;
    // NVM command set attributes.
    uint8_t sqes;      // 512  SQ Entry Size: required (3:0), maximum (7:4), log2
    uint8_t cqes;      // 513  CQ Entry Size: required (3:0), maximum (7:4), log2
    uint16_t maxcmd;   // 514  Maximum Outstanding Commands (fabrics)
    uint32_t nn;       // 516  Number of Namespaces (maximum NSID)
    uint16_t oncs;     // 520  Optional NVM Command Support
    uint16_t fuses;    // 522  Fused Operation Support
    uint8_t fna;       // 524  Format NVM Attributes
    uint8_t vwc;       // 525  Volatile Write Cache
    uint16_t awun;     // 526  Atomic Write Unit Normal (0's based, blocks)
    uint16_t awupf;    // 528  Atomic Write Unit Power Fail (0's based, blocks)
    uint8_t icsvscc;   // 530  I/O Command Set Vendor Specific Command Config
    uint8_t nwpc;      // 531  Namespace Write Protection Capabilities
    uint16_t acwu;     // 532  Atomic Compare & Write Unit
    uint16_t ocfs;     // 534  Copy Formats Supported
    uint32_t sgls;     // 536  SGL Support
    uint32_t mnan;     // 540  Maximum Number of Allowed Namespaces
    Uint128Le maxdna;  // 544  Maximum Domain Namespace Attachments
    uint32_t maxcna;   // 560  Maximum I/O Controller Namespace Attachments
    std::array<uint8_t, 204> reserved564;
    std::array<char, 256> subnqn;  // 768  NVM Subsystem NVMe Qualified Name (NUL terminated)
    std::array<uint8_t, 768> reserved1024;
    // NVMe over Fabrics attributes.
    uint32_t ioccsz;  // 1792 I/O Queue Command Capsule Supported Size, 16 B units
    uint32_t iorcsz;  // 1796 I/O Queue Response Capsule Supported Size
    uint16_t icdoff;  // 1800 In Capsule Data Offset
    uint8_t fcatt;    // 1802 Fabrics Controller Attributes
    uint8_t msdbd;    // 1803 Maximum SGL Data Block Descriptors
    uint16_t ofcs;    // 1804 Optional Fabric Commands Support
    uint8_t dctype;   // 1806 Discovery Controller Type
    std::array<uint8_t, 241> reserved1807;
    std::array<PowerStateDescriptor, 32> psd;  // 2048 Power State 0..31 Descriptors
    std::array<uint8_t, 1024> vs;              // 3072 Vendor Specific

    // Maximum data transfer size in bytes given CAP.MPSMIN's page size; 0 means no limit.
    // Saturates instead of overflowing on hostile values.
    constexpr uint64_t mdts_bytes(uint64_t min_page_size_bytes) const noexcept {
        if (mdts == 0) return 0;
        if (mdts >= 40) return uint64_t{1} << 62;
        return (uint64_t{1} << mdts) * min_page_size_bytes;
    }
    constexpr uint8_t sqes_min() const noexcept { return sqes & 0xF; }
    constexpr uint8_t sqes_max() const noexcept { return sqes >> 4; }
    constexpr uint8_t cqes_min() const noexcept { return cqes & 0xF; }
    constexpr uint8_t cqes_max() const noexcept { return cqes >> 4; }
    constexpr bool vwc_present() const noexcept { return (vwc & 0x1) != 0; }
    // SGLS bits 1:0 non-zero: SGLs supported for NVM commands (2 means dword-aligned only).
    constexpr bool sgl_supported() const noexcept { return (sgls & 0x3) != 0; }
};
static_assert(sizeof(IdentifyController) == 4096);
static_assert(offsetof(IdentifyController, sn) == 4 && offsetof(IdentifyController, mn) == 24);
static_assert(offsetof(IdentifyController, fr) == 64 && offsetof(IdentifyController, rab) == 72);
static_assert(offsetof(IdentifyController, ieee) == 73 && offsetof(IdentifyController, cmic) == 76);
static_assert(offsetof(IdentifyController, mdts) == 77 &&
              offsetof(IdentifyController, cntlid) == 78);
static_assert(offsetof(IdentifyController, ver) == 80 && offsetof(IdentifyController, oaes) == 92);
static_assert(offsetof(IdentifyController, ctratt) == 96 &&
              offsetof(IdentifyController, cntrltype) == 111);
static_assert(offsetof(IdentifyController, fguid) == 112 &&
              offsetof(IdentifyController, crdt1) == 128);
static_assert(offsetof(IdentifyController, nvmsr) == 253 &&
              offsetof(IdentifyController, oacs) == 256);
static_assert(offsetof(IdentifyController, acl) == 258 &&
              offsetof(IdentifyController, npss) == 263);
static_assert(offsetof(IdentifyController, wctemp) == 266 &&
              offsetof(IdentifyController, hmpre) == 272);
static_assert(offsetof(IdentifyController, tnvmcap) == 280 &&
              offsetof(IdentifyController, unvmcap) == 296);
static_assert(offsetof(IdentifyController, rpmbs) == 312 &&
              offsetof(IdentifyController, kas) == 320);
static_assert(offsetof(IdentifyController, sanicap) == 328 &&
              offsetof(IdentifyController, anatt) == 342);
static_assert(offsetof(IdentifyController, anagrpmax) == 344 &&
              offsetof(IdentifyController, pels) == 352);
static_assert(offsetof(IdentifyController, domainid) == 356 &&
              offsetof(IdentifyController, megcap) == 368);
static_assert(offsetof(IdentifyController, sqes) == 512 &&
              offsetof(IdentifyController, cqes) == 513);
static_assert(offsetof(IdentifyController, maxcmd) == 514 &&
              offsetof(IdentifyController, nn) == 516);
static_assert(offsetof(IdentifyController, oncs) == 520 &&
              offsetof(IdentifyController, fuses) == 522);
static_assert(offsetof(IdentifyController, fna) == 524 && offsetof(IdentifyController, vwc) == 525);
static_assert(offsetof(IdentifyController, awun) == 526 &&
              offsetof(IdentifyController, awupf) == 528);
static_assert(offsetof(IdentifyController, acwu) == 532 &&
              offsetof(IdentifyController, sgls) == 536);
static_assert(offsetof(IdentifyController, mnan) == 540 &&
              offsetof(IdentifyController, maxcna) == 560);
static_assert(offsetof(IdentifyController, subnqn) == 768 &&
              offsetof(IdentifyController, ioccsz) == 1792);
static_assert(offsetof(IdentifyController, msdbd) == 1803 &&
              offsetof(IdentifyController, dctype) == 1806);
static_assert(offsetof(IdentifyController, psd) == 2048 &&
              offsetof(IdentifyController, vs) == 3072);

// Identify Controller bit masks.
namespace oacs {  // Optional Admin Command Support
inline constexpr uint16_t security = 1u << 0;
inline constexpr uint16_t format_nvm = 1u << 1;
inline constexpr uint16_t firmware = 1u << 2;
inline constexpr uint16_t ns_management = 1u << 3;
inline constexpr uint16_t device_self_test = 1u << 4;
inline constexpr uint16_t directives = 1u << 5;
inline constexpr uint16_t nvme_mi = 1u << 6;
inline constexpr uint16_t virtualization_management = 1u << 7;
inline constexpr uint16_t doorbell_buffer_config = 1u << 8;
inline constexpr uint16_t get_lba_status = 1u << 9;
inline constexpr uint16_t command_feature_lockdown = 1u << 10;
}  // namespace oacs
namespace oncs {  // Optional NVM Command Support
inline constexpr uint16_t compare = 1u << 0;
inline constexpr uint16_t write_uncorrectable = 1u << 1;
inline constexpr uint16_t dataset_management = 1u << 2;
inline constexpr uint16_t write_zeroes = 1u << 3;
inline constexpr uint16_t save_select_features = 1u << 4;
inline constexpr uint16_t reservations = 1u << 5;
inline constexpr uint16_t timestamp = 1u << 6;
inline constexpr uint16_t verify = 1u << 7;
inline constexpr uint16_t copy = 1u << 8;
}  // namespace oncs
namespace oaes {  // Optional Asynchronous Events Supported
inline constexpr uint32_t ns_attribute_notices = 1u << 8;
inline constexpr uint32_t firmware_activation_notices = 1u << 9;
inline constexpr uint32_t ana_change_notices = 1u << 11;
inline constexpr uint32_t predictable_latency_aggregate_change = 1u << 12;
inline constexpr uint32_t lba_status_notices = 1u << 13;
inline constexpr uint32_t endurance_group_aggregate_change = 1u << 14;
inline constexpr uint32_t normal_subsystem_shutdown = 1u << 15;
inline constexpr uint32_t discovery_log_change = 1u << 31;
}  // namespace oaes
namespace lpa {  // Log Page Attributes
inline constexpr uint8_t smart_per_ns = 1u << 0;
inline constexpr uint8_t commands_effects = 1u << 1;
inline constexpr uint8_t extended_data = 1u << 2;
inline constexpr uint8_t telemetry = 1u << 3;
inline constexpr uint8_t persistent_event = 1u << 4;
}  // namespace lpa
namespace sgls {                                 // SGL Support
inline constexpr uint32_t supported_mask = 0x3;  // 1: no alignment, 2: dword alignment required
inline constexpr uint32_t keyed = 1u << 2;
inline constexpr uint32_t bit_bucket = 1u << 16;
inline constexpr uint32_t byte_aligned_metadata = 1u << 17;
inline constexpr uint32_t length_larger_than_data = 1u << 18;
inline constexpr uint32_t mptr_sgl = 1u << 19;
inline constexpr uint32_t address_as_offset = 1u << 20;
inline constexpr uint32_t transport_data_block = 1u << 21;
}  // namespace sgls
namespace cmic {  // Multi-Path I/O and Namespace Sharing Capabilities
inline constexpr uint8_t multi_port = 1u << 0;
inline constexpr uint8_t multi_controller = 1u << 1;
inline constexpr uint8_t sriov = 1u << 2;
inline constexpr uint8_t ana_reporting = 1u << 3;
}  // namespace cmic

// LBA Format, 4 bytes.
struct LbaFormat {
    uint16_t ms;    // Metadata Size, bytes per LBA
    uint8_t lbads;  // LBA Data Size, 2^n bytes (n >= 9 when the format is valid)
    uint8_t rp;     // Relative Performance (1:0): 0 best, 1 better, 2 good, 3 degraded

    constexpr uint8_t relative_performance() const noexcept { return rp & 0x3; }
    // Data size in bytes, or 0 when LBADS is not a usable value (below 512 B or above 2 GiB).
    constexpr uint32_t data_size_bytes() const noexcept {
        return lbads >= 9 && lbads <= 31 ? uint32_t{1} << lbads : 0;
    }
    friend constexpr bool operator==(const LbaFormat&, const LbaFormat&) noexcept = default;
};
static_assert(sizeof(LbaFormat) == 4);
inline constexpr uint32_t max_lba_formats = 64;

// Identify Namespace data structure for the NVM command set (CNS 00h), 4096 bytes.
struct IdentifyNamespace {
    uint64_t nsze;     // 0   Namespace Size, blocks
    uint64_t ncap;     // 8   Namespace Capacity, blocks
    uint64_t nuse;     // 16  Namespace Utilization, blocks
    uint8_t nsfeat;    // 24  Namespace Features
    uint8_t nlbaf;     // 25  Number of LBA Formats (0's based)
    uint8_t flbas;     // 26  Formatted LBA Size
    uint8_t mc;        // 27  Metadata Capabilities
    uint8_t dpc;       // 28  End-to-end Data Protection Capabilities
    uint8_t dps;       // 29  End-to-end Data Protection Type Settings
    uint8_t nmic;      // 30  Namespace Multi-path I/O and Sharing Capabilities
    uint8_t rescap;    // 31  Reservation Capabilities
    uint8_t fpi;       // 32  Format Progress Indicator
    uint8_t dlfeat;    // 33  Deallocate Logical Block Features
    uint16_t nawun;    // 34  Namespace Atomic Write Unit Normal
    uint16_t nawupf;   // 36  Namespace Atomic Write Unit Power Fail
    uint16_t nacwu;    // 38  Namespace Atomic Compare & Write Unit
    uint16_t nabsn;    // 40  Namespace Atomic Boundary Size Normal
    uint16_t nabo;     // 42  Namespace Atomic Boundary Offset
    uint16_t nabspf;   // 44  Namespace Atomic Boundary Size Power Fail
    uint16_t noiob;    // 46  Namespace Optimal I/O Boundary, blocks
    Uint128Le nvmcap;  // 48  NVM Capacity, bytes
    uint16_t npwg;     // 64  Namespace Preferred Write Granularity
    uint16_t npwa;     // 66  Namespace Preferred Write Alignment
    uint16_t npdg;     // 68  Namespace Preferred Deallocate Granularity
    uint16_t npda;     // 70  Namespace Preferred Deallocate Alignment
    uint16_t nows;     // 72  Namespace Optimal Write Size
    uint16_t mssrl;    // 74  Maximum Single Source Range Length (Copy)
    uint32_t mcl;      // 76  Maximum Copy Length
    uint8_t msrc;      // 80  Maximum Source Range Count
    uint8_t kpios;     // 81  Key Per I/O Status
    uint8_t nulbaf;    // 82  Number of Unique Capability LBA Formats
    uint8_t reserved83;
    uint32_t kpiodaag;  // 84  Key Per I/O Data Access Alignment and Granularity
    uint32_t reserved88;
    uint32_t anagrpid;  // 92  ANA Group Identifier
    std::array<uint8_t, 3> reserved96;
    uint8_t nsattr;                  // 99  Namespace Attributes (bit 0 write protected)
    uint16_t nvmsetid;               // 100 NVM Set Identifier
    uint16_t endgid;                 // 102 Endurance Group Identifier
    std::array<uint8_t, 16> nguid;   // 104 Namespace Globally Unique Identifier
    std::array<uint8_t, 8> eui64;    // 120 IEEE Extended Unique Identifier
    std::array<LbaFormat, 64> lbaf;  // 128 LBA Format 0..63 Support
    std::array<uint8_t, 3328> reserved384;
    std::array<uint8_t, 384> vs;  // 3712 Vendor Specific

    // FLBAS: format index bits 3:0 plus, with more than 16 formats, bits 6:5 as bits 5:4.
    constexpr uint8_t flbas_index() const noexcept {
        return static_cast<uint8_t>((flbas & 0xF) | (((flbas >> 5) & 0x3) << 4));
    }
    // FLBAS bit 4: metadata transferred at the end of each LBA (extended LBA).
    constexpr bool extended_lba() const noexcept { return (flbas & 0x10) != 0; }
    // Number of valid entries in lbaf (NLBAF + 1, clamped to the array).
    constexpr uint32_t lba_format_count() const noexcept {
        return nlbaf + 1u <= max_lba_formats ? nlbaf + 1u : max_lba_formats;
    }
    // The format in use; false when FLBAS names an entry beyond NLBAF (hostile or corrupt data).
    constexpr bool current_lba_format(LbaFormat& out) const noexcept {
        const uint8_t idx = flbas_index();
        if (idx >= lba_format_count()) return false;
        out = lbaf[idx];
        return true;
    }
    constexpr bool thin_provisioned() const noexcept { return (nsfeat & 0x1) != 0; }
    constexpr bool write_protected() const noexcept { return (nsattr & 0x1) != 0; }
    // DLFEAT 2:0 — value read from a deallocated block: 0 not reported, 1 zeroes, 2 ones.
    constexpr uint8_t dlfeat_read_value() const noexcept { return dlfeat & 0x7; }
    // DPS 2:0 — protection information type (0: none).
    constexpr uint8_t pi_type() const noexcept { return dps & 0x7; }
};
static_assert(sizeof(IdentifyNamespace) == 4096);
static_assert(offsetof(IdentifyNamespace, ncap) == 8 && offsetof(IdentifyNamespace, nuse) == 16);
static_assert(offsetof(IdentifyNamespace, nsfeat) == 24 &&
              offsetof(IdentifyNamespace, nlbaf) == 25);
static_assert(offsetof(IdentifyNamespace, flbas) == 26 && offsetof(IdentifyNamespace, mc) == 27);
static_assert(offsetof(IdentifyNamespace, dps) == 29 && offsetof(IdentifyNamespace, rescap) == 31);
static_assert(offsetof(IdentifyNamespace, dlfeat) == 33 &&
              offsetof(IdentifyNamespace, nawun) == 34);
static_assert(offsetof(IdentifyNamespace, nabspf) == 44 &&
              offsetof(IdentifyNamespace, noiob) == 46);
static_assert(offsetof(IdentifyNamespace, nvmcap) == 48 && offsetof(IdentifyNamespace, npwg) == 64);
static_assert(offsetof(IdentifyNamespace, nows) == 72 && offsetof(IdentifyNamespace, mcl) == 76);
static_assert(offsetof(IdentifyNamespace, msrc) == 80 && offsetof(IdentifyNamespace, nulbaf) == 82);
static_assert(offsetof(IdentifyNamespace, kpiodaag) == 84 &&
              offsetof(IdentifyNamespace, anagrpid) == 92);
static_assert(offsetof(IdentifyNamespace, nsattr) == 99 &&
              offsetof(IdentifyNamespace, nvmsetid) == 100);
static_assert(offsetof(IdentifyNamespace, endgid) == 102 &&
              offsetof(IdentifyNamespace, nguid) == 104);
static_assert(offsetof(IdentifyNamespace, eui64) == 120 &&
              offsetof(IdentifyNamespace, lbaf) == 128);
static_assert(offsetof(IdentifyNamespace, vs) == 3712);

// Active Namespace ID list (CNS 02h): up to 1024 NSIDs in increasing order, zero terminated.
struct NsList {
    std::array<uint32_t, 1024> nsid;
};
static_assert(sizeof(NsList) == 4096);

// Namespace Identification Descriptor (CNS 03h): a 4-byte header followed by NIDL bytes; the
// list is 4096 bytes and ends at the first descriptor with NIDL 0 (or NIDT 0).
enum class NidType : uint8_t {
    eui64 = 0x1,  // NIDL 8
    nguid = 0x2,  // NIDL 16
    uuid = 0x3,   // NIDL 16
    csi = 0x4,    // NIDL 1
};
struct NsIdDescriptorHeader {
    uint8_t nidt;  // Namespace Identifier Type
    uint8_t nidl;  // Namespace Identifier Length
    std::array<uint8_t, 2> reserved;
};
static_assert(sizeof(NsIdDescriptorHeader) == 4);
// The length the spec fixes for a descriptor type, or 0 for an unknown type.
constexpr uint8_t nid_length(NidType type) noexcept {
    switch (type) {
        case NidType::eui64: return 8;
        case NidType::nguid: return 16;
        case NidType::uuid: return 16;
        case NidType::csi: return 1;
    }
    return 0;
}

}  // namespace strata::nvme::spec
