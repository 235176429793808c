// NVMe controller registers (NVMe Base Specification 2.0, section 3.1 "Register Definition"),
// as shared by the driver and the hw-emulation controller model.
//
// Each register is a struct wrapping its raw value with accessors named after the spec's
// mnemonics: `Cap cap{bar.read64(reg::cap)}; cap.mqes()`, `Cc cc{}; cc.set_en(1).set_iosqes(6)`.
// All registers are little-endian; 64-bit registers (CAP, ASQ, ACQ, CMBMSC) may be accessed as
// two 32-bit halves, low first.
#pragma once

#include <cstdint>

#include <strata/nvme/spec/bits.h>

namespace strata::nvme::spec {

// Register offsets in BAR0 (MLBAR/MUBAR).
namespace reg {
inline constexpr uint32_t cap = 0x00;      // Controller Capabilities (64)
inline constexpr uint32_t vs = 0x08;       // Version
inline constexpr uint32_t intms = 0x0C;    // Interrupt Mask Set
inline constexpr uint32_t intmc = 0x10;    // Interrupt Mask Clear
inline constexpr uint32_t cc = 0x14;       // Controller Configuration
inline constexpr uint32_t csts = 0x1C;     // Controller Status
inline constexpr uint32_t nssr = 0x20;     // NVM Subsystem Reset
inline constexpr uint32_t aqa = 0x24;      // Admin Queue Attributes
inline constexpr uint32_t asq = 0x28;      // Admin Submission Queue Base Address (64)
inline constexpr uint32_t acq = 0x30;      // Admin Completion Queue Base Address (64)
inline constexpr uint32_t cmbloc = 0x38;   // Controller Memory Buffer Location
inline constexpr uint32_t cmbsz = 0x3C;    // Controller Memory Buffer Size
inline constexpr uint32_t bpinfo = 0x40;   // Boot Partition Information
inline constexpr uint32_t bprsel = 0x44;   // Boot Partition Read Select
inline constexpr uint32_t bpmbl = 0x48;    // Boot Partition Memory Buffer Location (64)
inline constexpr uint32_t cmbmsc = 0x50;   // CMB Memory Space Control (64)
inline constexpr uint32_t cmbsts = 0x58;   // CMB Status
inline constexpr uint32_t cmbebs = 0x5C;   // CMB Elasticity Buffer Size
inline constexpr uint32_t cmbswtp = 0x60;  // CMB Sustained Write Throughput
inline constexpr uint32_t nssd = 0x64;     // NVM Subsystem Shutdown
inline constexpr uint32_t crto = 0x68;     // Controller Ready Timeouts
inline constexpr uint32_t pmrcap = 0xE00;  // Persistent Memory Region Capabilities
inline constexpr uint32_t pmrctl = 0xE04;
inline constexpr uint32_t pmrsts = 0xE08;
inline constexpr uint32_t pmrebs = 0xE0C;
inline constexpr uint32_t pmrswtp = 0xE10;
inline constexpr uint32_t pmrmscl = 0xE14;
inline constexpr uint32_t pmrmscu = 0xE18;
inline constexpr uint32_t doorbell_base = 0x1000;  // SQ0TDBL
}  // namespace reg

// Value written to NSSR to start an NVM subsystem reset ("NVMe" in ASCII).
inline constexpr uint32_t nssr_reset_value = 0x4E564D65;

// Doorbell stride in bytes: 4 << CAP.DSTRD.
constexpr uint64_t doorbell_stride_bytes(uint32_t dstrd) noexcept { return uint64_t{4} << dstrd; }
// Submission Queue y Tail Doorbell: 0x1000 + (2y) * (4 << CAP.DSTRD).
constexpr uint64_t sq_tail_doorbell(uint16_t qid, uint32_t dstrd) noexcept {
    return reg::doorbell_base + (2 * uint64_t{qid}) * doorbell_stride_bytes(dstrd);
}
// Completion Queue y Head Doorbell: 0x1000 + (2y + 1) * (4 << CAP.DSTRD).
constexpr uint64_t cq_head_doorbell(uint16_t qid, uint32_t dstrd) noexcept {
    return reg::doorbell_base + (2 * uint64_t{qid} + 1) * doorbell_stride_bytes(dstrd);
}

// CAP — Controller Capabilities (offset 0x00, 64 bits, read-only).
struct Cap {
    using value_type = uint64_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(mqes, 0, 16)    // Maximum Queue Entries Supported (0's based)
    STRATA_NVME_FIELD(cqr, 16, 1)     // Contiguous Queues Required
    STRATA_NVME_FIELD(ams, 17, 2)     // Arbitration Mechanism Supported (bit0 WRR, bit1 vendor)
    STRATA_NVME_FIELD(to, 24, 8)      // Timeout, in 500 ms units
    STRATA_NVME_FIELD(dstrd, 32, 4)   // Doorbell Stride: 4 << DSTRD bytes
    STRATA_NVME_FIELD(nssrs, 36, 1)   // NVM Subsystem Reset Supported
    STRATA_NVME_FIELD(css, 37, 8)     // Command Sets Supported (see css_* below)
    STRATA_NVME_FIELD(bps, 45, 1)     // Boot Partition Support
    STRATA_NVME_FIELD(cps, 46, 2)     // Controller Power Scope
    STRATA_NVME_FIELD(mpsmin, 48, 4)  // Memory Page Size Minimum: 4096 << MPSMIN
    STRATA_NVME_FIELD(mpsmax, 52, 4)  // Memory Page Size Maximum: 4096 << MPSMAX
    STRATA_NVME_FIELD(pmrs, 56, 1)    // Persistent Memory Region Supported
    STRATA_NVME_FIELD(cmbs, 57, 1)    // Controller Memory Buffer Supported
    STRATA_NVME_FIELD(nsss, 58, 1)    // NVM Subsystem Shutdown Supported
    STRATA_NVME_FIELD(crms, 59, 2)    // Controller Ready Modes Supported (bit0 CRWMS, bit1 CRIMS)

    // CAP.CSS bits.
    static constexpr value_type css_nvm = 1u << 0;         // NVM Command Set
    static constexpr value_type css_io_sets = 1u << 6;     // one or more I/O Command Sets (CSI)
    static constexpr value_type css_admin_only = 1u << 7;  // no I/O Command Set
    // CAP.AMS bits.
    static constexpr value_type ams_wrr = 1u << 0;     // weighted round robin with urgent class
    static constexpr value_type ams_vendor = 1u << 1;  // vendor specific

    constexpr uint32_t max_queue_entries() const noexcept {
        return static_cast<uint32_t>(mqes()) + 1;
    }
    constexpr uint64_t timeout_ms() const noexcept { return to() * 500; }
    constexpr uint64_t doorbell_stride_bytes() const noexcept { return uint64_t{4} << dstrd(); }
    constexpr uint64_t min_page_size_bytes() const noexcept { return uint64_t{4096} << mpsmin(); }
    constexpr uint64_t max_page_size_bytes() const noexcept { return uint64_t{4096} << mpsmax(); }

    friend constexpr bool operator==(Cap, Cap) noexcept = default;
};
static_assert(sizeof(Cap) == 8);

// VS — Version (offset 0x08). 1.4.0 is 0x00010400, 2.0.0 is 0x00020000.
struct Vs {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(ter, 0, 8)    // Tertiary Version
    STRATA_NVME_FIELD(mnr, 8, 8)    // Minor Version
    STRATA_NVME_FIELD(mjr, 16, 16)  // Major Version

    static constexpr Vs make(uint32_t mjr, uint32_t mnr, uint32_t ter = 0) noexcept {
        return Vs{(mjr << 16) | ((mnr & 0xFF) << 8) | (ter & 0xFF)};
    }
    friend constexpr bool operator==(Vs, Vs) noexcept = default;
    friend constexpr auto operator<=>(Vs a, Vs b) noexcept { return a.raw <=> b.raw; }
};
static_assert(sizeof(Vs) == 4);
inline constexpr Vs vs_1_0 = Vs::make(1, 0);
inline constexpr Vs vs_1_2 = Vs::make(1, 2);
inline constexpr Vs vs_1_3 = Vs::make(1, 3);
inline constexpr Vs vs_1_4 = Vs::make(1, 4);
inline constexpr Vs vs_2_0 = Vs::make(2, 0);

// CC — Controller Configuration (offset 0x14).
struct Cc {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(en, 0, 1)       // Enable
    STRATA_NVME_FIELD(css, 4, 3)      // I/O Command Set Selected (css_* below)
    STRATA_NVME_FIELD(mps, 7, 4)      // Memory Page Size: 4096 << MPS
    STRATA_NVME_FIELD(ams, 11, 3)     // Arbitration Mechanism Selected (ams_* below)
    STRATA_NVME_FIELD(shn, 14, 2)     // Shutdown Notification (shn_* below)
    STRATA_NVME_FIELD(iosqes, 16, 4)  // I/O Submission Queue Entry Size: 2^n (6 for 64 bytes)
    STRATA_NVME_FIELD(iocqes, 20, 4)  // I/O Completion Queue Entry Size: 2^n (4 for 16 bytes)
    STRATA_NVME_FIELD(crime, 24, 1)   // Controller Ready Independent of Media Enable

    static constexpr value_type css_nvm = 0;
    static constexpr value_type css_all_io_sets = 6;
    static constexpr value_type css_admin_only = 7;
    static constexpr value_type ams_round_robin = 0;
    static constexpr value_type ams_wrr = 1;
    static constexpr value_type ams_vendor = 7;
    static constexpr value_type shn_none = 0;
    static constexpr value_type shn_normal = 1;
    static constexpr value_type shn_abrupt = 2;

    constexpr uint64_t page_size_bytes() const noexcept { return uint64_t{4096} << mps(); }

    friend constexpr bool operator==(Cc, Cc) noexcept = default;
};
static_assert(sizeof(Cc) == 4);

// CSTS — Controller Status (offset 0x1C).
struct Csts {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(rdy, 0, 1)    // Ready
    STRATA_NVME_FIELD(cfs, 1, 1)    // Controller Fatal Status
    STRATA_NVME_FIELD(shst, 2, 2)   // Shutdown Status (shst_* below)
    STRATA_NVME_FIELD(nssro, 4, 1)  // NVM Subsystem Reset Occurred (RW1C)
    STRATA_NVME_FIELD(pp, 5, 1)     // Processing Paused
    STRATA_NVME_FIELD(st, 6, 1)     // Shutdown Type (1: NVM subsystem shutdown)

    static constexpr value_type shst_normal = 0;  // normal operation, no shutdown requested
    static constexpr value_type shst_occurring = 1;
    static constexpr value_type shst_complete = 2;

    // A read of all ones means the device is gone (surprise removal, PCIe error).
    constexpr bool all_ones() const noexcept { return raw == 0xFFFFFFFFu; }

    friend constexpr bool operator==(Csts, Csts) noexcept = default;
};
static_assert(sizeof(Csts) == 4);

// AQA — Admin Queue Attributes (offset 0x24). Sizes are 0's based.
struct Aqa {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(asqs, 0, 12)   // Admin Submission Queue Size
    STRATA_NVME_FIELD(acqs, 16, 12)  // Admin Completion Queue Size

    friend constexpr bool operator==(Aqa, Aqa) noexcept = default;
};
static_assert(sizeof(Aqa) == 4);
// The admin queues hold at most 4096 entries (AQA fields are 12 bits, 0's based).
inline constexpr uint32_t max_admin_queue_entries = 4096;

// CMBLOC — Controller Memory Buffer Location (offset 0x38).
struct Cmbloc {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(bir, 0, 3)      // Base Indicator Register (BAR index)
    STRATA_NVME_FIELD(cqmms, 3, 1)    // CMB Queue Mixed Memory Support
    STRATA_NVME_FIELD(cqpds, 4, 1)    // CMB Queue Physically Discontiguous Support
    STRATA_NVME_FIELD(cdpmls, 5, 1)   // CMB Data Pointer Mixed Locations Support
    STRATA_NVME_FIELD(cdpcils, 6, 1)  // CMB Data Pointer and Command Independent Locations
    STRATA_NVME_FIELD(cdmmms, 7, 1)   // CMB Data Metadata Mixed Memory Support
    STRATA_NVME_FIELD(cqda, 8, 1)     // CMB Queue Dword Alignment
    STRATA_NVME_FIELD(ofst, 12, 20)   // Offset, in CMBSZ.SZU units

    friend constexpr bool operator==(Cmbloc, Cmbloc) noexcept = default;
};
static_assert(sizeof(Cmbloc) == 4);

// CMBSZ — Controller Memory Buffer Size (offset 0x3C).
struct Cmbsz {
    using value_type = uint32_t;
    value_type raw = 0;

    STRATA_NVME_FIELD(sqs, 0, 1)    // Submission Queue Support
    STRATA_NVME_FIELD(cqs, 1, 1)    // Completion Queue Support
    STRATA_NVME_FIELD(lists, 2, 1)  // PRP SGL List Support
    STRATA_NVME_FIELD(rds, 3, 1)    // Read Data Support
    STRATA_NVME_FIELD(wds, 4, 1)    // Write Data Support
    STRATA_NVME_FIELD(szu, 8, 4)    // Size Units: 4 KiB << (4 * SZU)
    STRATA_NVME_FIELD(sz, 12, 20)   // Size, in SZU units

    constexpr uint64_t unit_bytes() const noexcept {
        return szu() <= 6 ? uint64_t{4096} << (4 * szu()) : 0;  // 7..15 reserved
    }
    constexpr uint64_t size_bytes() const noexcept { return sz() * unit_bytes(); }
    constexpr uint64_t offset_bytes(Cmbloc loc) const noexcept { return loc.ofst() * unit_bytes(); }

    friend constexpr bool operator==(Cmbsz, Cmbsz) noexcept = default;
};
static_assert(sizeof(Cmbsz) == 4);

// Queue base addresses (ASQ, ACQ) must be 4 KiB aligned: bits 11:0 are reserved.
inline constexpr uint64_t queue_base_align_bytes = 4096;

}  // namespace strata::nvme::spec
