// Command dword layouts of the commands Strata issues and models, and the values of the
// features it sets (NVMe Base Specification 2.0, 5; NVM Command Set Specification 1.0, 3).
// Each struct wraps one dword; build with `RwCdw12{}.set_nlb(n - 1).set_fua(1).raw`.
#pragma once

#include <cstdint>

#include <strata/nvme/spec/bits.h>

namespace strata::nvme::spec {

#define STRATA_NVME_DWORD(Name)  \
    using value_type = uint32_t; \
    value_type raw = 0;          \
    friend constexpr bool operator==(Name, Name) noexcept = default;

// ---- NVM I/O commands ----

// Read / Write / Compare / Write Zeroes / Write Uncorrectable / Verify CDW12.
struct RwCdw12 {
    STRATA_NVME_DWORD(RwCdw12)
    STRATA_NVME_FIELD(nlb, 0, 16)     // Number of Logical Blocks, 0's based
    STRATA_NVME_FIELD(dtype, 20, 4)   // Directive Type (write)
    STRATA_NVME_FIELD(stc, 24, 1)     // Storage Tag Check
    STRATA_NVME_FIELD(deac, 25, 1)    // Deallocate (Write Zeroes)
    STRATA_NVME_FIELD(prinfo, 26, 4)  // Protection Information Field
    STRATA_NVME_FIELD(fua, 30, 1)     // Force Unit Access
    STRATA_NVME_FIELD(lr, 31, 1)      // Limited Retry
};
inline constexpr uint32_t max_blocks_per_io = 65536;  // NLB is 16 bits, 0's based

// Read / Write CDW13: Dataset Management hints.
struct RwCdw13 {
    STRATA_NVME_DWORD(RwCdw13)
    STRATA_NVME_FIELD(dsm, 0, 8)      // access frequency/latency, sequential, incompressible
    STRATA_NVME_FIELD(dspec, 16, 16)  // Directive Specific
};

// Dataset Management CDW10 / CDW11.
struct DsmCdw10 {
    STRATA_NVME_DWORD(DsmCdw10)
    STRATA_NVME_FIELD(nr, 0, 8)  // Number of Ranges, 0's based
};
struct DsmCdw11 {
    STRATA_NVME_DWORD(DsmCdw11)
    STRATA_NVME_FIELD(idr, 0, 1)  // Integral Dataset for Read
    STRATA_NVME_FIELD(idw, 1, 1)  // Integral Dataset for Write
    STRATA_NVME_FIELD(ad, 2, 1)   // Deallocate
};

// ---- Admin commands ----

// Create I/O Completion Queue / Create I/O Submission Queue / Delete I/O SQ/CQ CDW10.
struct QueueCdw10 {
    STRATA_NVME_DWORD(QueueCdw10)
    STRATA_NVME_FIELD(qid, 0, 16)     // Queue Identifier
    STRATA_NVME_FIELD(qsize, 16, 16)  // Queue Size, 0's based
};
// Create I/O Completion Queue CDW11.
struct CreateIoCqCdw11 {
    STRATA_NVME_DWORD(CreateIoCqCdw11)
    STRATA_NVME_FIELD(pc, 0, 1)    // Physically Contiguous
    STRATA_NVME_FIELD(ien, 1, 1)   // Interrupts Enabled
    STRATA_NVME_FIELD(iv, 16, 16)  // Interrupt Vector
};
// Create I/O Submission Queue CDW11.
struct CreateIoSqCdw11 {
    STRATA_NVME_DWORD(CreateIoSqCdw11)
    STRATA_NVME_FIELD(pc, 0, 1)      // Physically Contiguous
    STRATA_NVME_FIELD(qprio, 1, 2)   // Queue Priority (0 urgent, 1 high, 2 medium, 3 low)
    STRATA_NVME_FIELD(cqid, 16, 16)  // Completion Queue Identifier
};

// Identify CDW10 / CDW11.
struct IdentifyCdw10 {
    STRATA_NVME_DWORD(IdentifyCdw10)
    STRATA_NVME_FIELD(cns, 0, 8)      // Controller or Namespace Structure (Cns)
    STRATA_NVME_FIELD(cntid, 16, 16)  // Controller Identifier
};
struct IdentifyCdw11 {
    STRATA_NVME_DWORD(IdentifyCdw11)
    STRATA_NVME_FIELD(cnssid, 0, 16)  // CNS Specific Identifier
    STRATA_NVME_FIELD(csi, 24, 8)     // Command Set Identifier (Csi)
};

// Get Log Page CDW10 / CDW11 / CDW14 (CDW12-13: 64-bit byte offset LPOL/LPOU).
struct GetLogPageCdw10 {
    STRATA_NVME_DWORD(GetLogPageCdw10)
    STRATA_NVME_FIELD(lid, 0, 8)      // Log Page Identifier (LogPage)
    STRATA_NVME_FIELD(lsp, 8, 7)      // Log Specific Field
    STRATA_NVME_FIELD(rae, 15, 1)     // Retain Asynchronous Event
    STRATA_NVME_FIELD(numdl, 16, 16)  // Number of Dwords Lower (NUMD is 0's based)
};
struct GetLogPageCdw11 {
    STRATA_NVME_DWORD(GetLogPageCdw11)
    STRATA_NVME_FIELD(numdu, 0, 16)  // Number of Dwords Upper
    STRATA_NVME_FIELD(lsi, 16, 16)   // Log Specific Identifier
};
struct GetLogPageCdw14 {
    STRATA_NVME_DWORD(GetLogPageCdw14)
    STRATA_NVME_FIELD(uuid_index, 0, 7)
    STRATA_NVME_FIELD(ot, 23, 1)   // Offset Type (index instead of byte offset)
    STRATA_NVME_FIELD(csi, 24, 8)  // Command Set Identifier
};
// NUMD (0's based dword count) for a transfer of `bytes` (a multiple of 4, at least 4).
constexpr uint32_t log_page_numd(uint32_t bytes) noexcept { return bytes / 4 - 1; }

// Set Features / Get Features CDW10.
struct FeaturesCdw10 {
    STRATA_NVME_DWORD(FeaturesCdw10)
    STRATA_NVME_FIELD(fid, 0, 8)  // Feature Identifier (FeatureId)
    STRATA_NVME_FIELD(sel, 8, 3)  // Select (Get Features; FeatureSelect)
    STRATA_NVME_FIELD(sv, 31, 1)  // Save (Set Features)
};

// Abort CDW10.
struct AbortCdw10 {
    STRATA_NVME_DWORD(AbortCdw10)
    STRATA_NVME_FIELD(sqid, 0, 16)  // Submission Queue Identifier
    STRATA_NVME_FIELD(cid, 16, 16)  // Command Identifier
};

// Format NVM CDW10.
struct FormatCdw10 {
    STRATA_NVME_DWORD(FormatCdw10)
    STRATA_NVME_FIELD(lbafl, 0, 4)   // LBA Format index, low bits
    STRATA_NVME_FIELD(mset, 4, 1)    // Metadata Settings (1: extended LBA)
    STRATA_NVME_FIELD(pi, 5, 3)      // Protection Information type
    STRATA_NVME_FIELD(pil, 8, 1)     // Protection Information Location
    STRATA_NVME_FIELD(ses, 9, 3)     // Secure Erase Settings
    STRATA_NVME_FIELD(lbafu, 12, 2)  // LBA Format index, high bits
};

// ---- Feature values (Set Features CDW11 / Get Features completion DW0) ----

struct ArbitrationFeature {  // FID 01h
    STRATA_NVME_DWORD(ArbitrationFeature)
    STRATA_NVME_FIELD(ab, 0, 3)    // Arbitration Burst (2^AB; 7 = no limit)
    STRATA_NVME_FIELD(lpw, 8, 8)   // Low Priority Weight
    STRATA_NVME_FIELD(mpw, 16, 8)  // Medium Priority Weight
    STRATA_NVME_FIELD(hpw, 24, 8)  // High Priority Weight
};
struct PowerManagementFeature {  // FID 02h
    STRATA_NVME_DWORD(PowerManagementFeature)
    STRATA_NVME_FIELD(ps, 0, 5)  // Power State
    STRATA_NVME_FIELD(wh, 5, 3)  // Workload Hint
};
struct TemperatureThresholdFeature {  // FID 04h
    STRATA_NVME_DWORD(TemperatureThresholdFeature)
    STRATA_NVME_FIELD(tmpth, 0, 16)   // Temperature Threshold, kelvin
    STRATA_NVME_FIELD(tmpsel, 16, 4)  // Threshold Temperature Select (0 composite, 1-8 sensors)
    STRATA_NVME_FIELD(thsel, 20, 2)   // Threshold Type Select (0 over, 1 under)
};
struct ErrorRecoveryFeature {  // FID 05h
    STRATA_NVME_DWORD(ErrorRecoveryFeature)
    STRATA_NVME_FIELD(tler, 0, 16)   // Time Limited Error Recovery, 100 ms units
    STRATA_NVME_FIELD(dulbe, 16, 1)  // Deallocated or Unwritten Logical Block Error Enable
};
struct VolatileWriteCacheFeature {  // FID 06h
    STRATA_NVME_DWORD(VolatileWriteCacheFeature)
    STRATA_NVME_FIELD(wce, 0, 1)  // Volatile Write Cache Enable
};
// FID 07h. Requested (CDW11) and allocated (DW0) counts are 0's based; 0xFFFF is invalid.
struct NumberOfQueuesFeature {
    STRATA_NVME_DWORD(NumberOfQueuesFeature)
    STRATA_NVME_FIELD(nsq, 0, 16)   // NSQR (request) / NSQA (allocated)
    STRATA_NVME_FIELD(ncq, 16, 16)  // NCQR (request) / NCQA (allocated)
};
struct InterruptCoalescingFeature {  // FID 08h
    STRATA_NVME_DWORD(InterruptCoalescingFeature)
    STRATA_NVME_FIELD(thr, 0, 8)   // Aggregation Threshold, 0's based
    STRATA_NVME_FIELD(time, 8, 8)  // Aggregation Time, 100 us units
};
struct InterruptVectorConfigFeature {  // FID 09h
    STRATA_NVME_DWORD(InterruptVectorConfigFeature)
    STRATA_NVME_FIELD(iv, 0, 16)  // Interrupt Vector
    STRATA_NVME_FIELD(cd, 16, 1)  // Coalescing Disable
};
struct AsyncEventConfigFeature {  // FID 0Bh
    STRATA_NVME_DWORD(AsyncEventConfigFeature)
    STRATA_NVME_FIELD(smart, 0, 8)     // SMART / Health critical warnings (bit per warning)
    STRATA_NVME_FIELD(nan, 8, 1)       // Namespace Attribute Notices
    STRATA_NVME_FIELD(fan, 9, 1)       // Firmware Activation Notices
    STRATA_NVME_FIELD(tln, 10, 1)      // Telemetry Log Notices
    STRATA_NVME_FIELD(anacn, 11, 1)    // ANA Change Notices
    STRATA_NVME_FIELD(plealcn, 12, 1)  // Predictable Latency Event Aggregate Log Change
    STRATA_NVME_FIELD(lsian, 13, 1)    // LBA Status Information Notices
    STRATA_NVME_FIELD(egealcn, 14, 1)  // Endurance Group Event Aggregate Log Change
    STRATA_NVME_FIELD(nnsshdn, 15, 1)  // Normal NVM Subsystem Shutdown Notices
    STRATA_NVME_FIELD(dlpcn, 31, 1)    // Discovery Log Page Change Notices (fabrics)
};
struct KeepAliveTimerFeature {  // FID 0Fh
    STRATA_NVME_DWORD(KeepAliveTimerFeature)
    STRATA_NVME_FIELD(kato, 0, 32)  // Keep Alive Timeout, milliseconds
};

#undef STRATA_NVME_DWORD

}  // namespace strata::nvme::spec
