// Constexpr builders for the submission queue entries Strata issues (and its model tests send):
// the wire format only, no policy. Counts passed in are natural (1-based) and converted to the
// spec's 0's based fields here; callers keep them within the field widths (checked by the
// driver before building: 1..65536 blocks, 1..65536 queue entries, 1..256 DSM ranges).
// The data pointer (PRP1/PRP2 or an SGL) is filled by the caller.
#pragma once

#include <cstdint>

#include <strata/nvme/spec/cdw.h>
#include <strata/nvme/spec/opcodes.h>
#include <strata/nvme/spec/queue.h>

namespace strata::nvme::spec {

namespace detail {
constexpr Sqe make_sqe(uint8_t opc, uint16_t cid, uint32_t nsid) noexcept {
    Sqe sqe{};
    sqe.opc = opc;
    sqe.cid = cid;
    sqe.nsid = nsid;
    return sqe;
}
}  // namespace detail

// ---- NVM I/O ----

// Read, Write, Compare, Write Zeroes, Write Uncorrectable, Verify: SLBA in CDW10-11, NLB
// (0's based) in CDW12. `block_count` is 1..65536.
constexpr Sqe make_rw(NvmOpcode opc, uint16_t cid, uint32_t nsid, uint64_t slba,
                      uint32_t block_count, bool fua = false) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(opc), cid, nsid);
    sqe.set_slba(slba);
    sqe.cdw12 = RwCdw12{}.set_nlb(block_count - 1).set_fua(fua ? 1 : 0).raw;
    return sqe;
}
constexpr Sqe make_read(uint16_t cid, uint32_t nsid, uint64_t slba, uint32_t block_count) noexcept {
    return make_rw(NvmOpcode::read, cid, nsid, slba, block_count);
}
constexpr Sqe make_write(uint16_t cid, uint32_t nsid, uint64_t slba, uint32_t block_count,
                         bool fua = false) noexcept {
    return make_rw(NvmOpcode::write, cid, nsid, slba, block_count, fua);
}
constexpr Sqe make_write_zeroes(uint16_t cid, uint32_t nsid, uint64_t slba, uint32_t block_count,
                                bool deallocate = false) noexcept {
    Sqe sqe = make_rw(NvmOpcode::write_zeroes, cid, nsid, slba, block_count);
    sqe.cdw12 = RwCdw12{sqe.cdw12}.set_deac(deallocate ? 1 : 0).raw;
    return sqe;
}
constexpr Sqe make_flush(uint16_t cid, uint32_t nsid) noexcept {
    return detail::make_sqe(static_cast<uint8_t>(NvmOpcode::flush), cid, nsid);
}
// Dataset Management with `range_count` (1..256) DsmRange entries at the data pointer.
constexpr Sqe make_dsm(uint16_t cid, uint32_t nsid, uint32_t range_count,
                       bool deallocate = true) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(NvmOpcode::dataset_management), cid, nsid);
    sqe.cdw10 = DsmCdw10{}.set_nr(range_count - 1).raw;
    sqe.cdw11 = DsmCdw11{}.set_ad(deallocate ? 1 : 0).raw;
    return sqe;
}

// ---- Admin ----

constexpr Sqe make_identify(uint16_t cid, Cns cns, uint32_t nsid = 0, uint16_t cntid = 0,
                            Csi csi = Csi::nvm) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::identify), cid, nsid);
    sqe.cdw10 = IdentifyCdw10{}.set_cns(static_cast<uint32_t>(cns)).set_cntid(cntid).raw;
    sqe.cdw11 = IdentifyCdw11{}.set_csi(static_cast<uint32_t>(csi)).raw;
    return sqe;
}

// Create I/O Completion Queue: `entries` 2..65536, physically contiguous, interrupts optional.
constexpr Sqe make_create_io_cq(uint16_t cid, uint16_t qid, uint32_t entries, uint64_t base_iova,
                                bool interrupts = false, uint16_t vector = 0) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::create_io_cq), cid, 0);
    sqe.prp1 = base_iova;
    sqe.cdw10 = QueueCdw10{}.set_qid(qid).set_qsize(entries - 1).raw;
    sqe.cdw11 = CreateIoCqCdw11{}.set_pc(1).set_ien(interrupts ? 1 : 0).set_iv(vector).raw;
    return sqe;
}
// Create I/O Submission Queue bound to completion queue `cqid`.
constexpr Sqe make_create_io_sq(uint16_t cid, uint16_t qid, uint32_t entries, uint64_t base_iova,
                                uint16_t cqid, uint32_t qprio = 0) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::create_io_sq), cid, 0);
    sqe.prp1 = base_iova;
    sqe.cdw10 = QueueCdw10{}.set_qid(qid).set_qsize(entries - 1).raw;
    sqe.cdw11 = CreateIoSqCdw11{}.set_pc(1).set_qprio(qprio).set_cqid(cqid).raw;
    return sqe;
}
constexpr Sqe make_delete_io_sq(uint16_t cid, uint16_t qid) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::delete_io_sq), cid, 0);
    sqe.cdw10 = QueueCdw10{}.set_qid(qid).raw;
    return sqe;
}
constexpr Sqe make_delete_io_cq(uint16_t cid, uint16_t qid) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::delete_io_cq), cid, 0);
    sqe.cdw10 = QueueCdw10{}.set_qid(qid).raw;
    return sqe;
}

// Get Log Page of `bytes` (a multiple of 4, at least 4) from byte `offset`.
constexpr Sqe make_get_log_page(uint16_t cid, LogPage lid, uint32_t nsid, uint32_t bytes,
                                uint64_t offset = 0, bool retain_async_event = false) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::get_log_page), cid, nsid);
    const uint32_t numd = log_page_numd(bytes);
    sqe.cdw10 = GetLogPageCdw10{}
                    .set_lid(static_cast<uint32_t>(lid))
                    .set_rae(retain_async_event ? 1 : 0)
                    .set_numdl(numd & 0xFFFF)
                    .raw;
    sqe.cdw11 = GetLogPageCdw11{}.set_numdu(numd >> 16).raw;
    sqe.cdw12 = static_cast<uint32_t>(offset);
    sqe.cdw13 = static_cast<uint32_t>(offset >> 32);
    return sqe;
}

constexpr Sqe make_set_features(uint16_t cid, FeatureId fid, uint32_t value, uint32_t nsid = 0,
                                bool save = false) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::set_features), cid, nsid);
    sqe.cdw10 = FeaturesCdw10{}.set_fid(static_cast<uint32_t>(fid)).set_sv(save ? 1 : 0).raw;
    sqe.cdw11 = value;
    return sqe;
}
constexpr Sqe make_get_features(uint16_t cid, FeatureId fid, uint32_t nsid = 0,
                                FeatureSelect sel = FeatureSelect::current) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::get_features), cid, nsid);
    sqe.cdw10 =
        FeaturesCdw10{}.set_fid(static_cast<uint32_t>(fid)).set_sel(static_cast<uint32_t>(sel)).raw;
    return sqe;
}
// Set Features / Number of Queues: request `sq_count` and `cq_count` I/O queues (1..65535).
constexpr Sqe make_set_number_of_queues(uint16_t cid, uint32_t sq_count,
                                        uint32_t cq_count) noexcept {
    return make_set_features(
        cid, FeatureId::number_of_queues,
        NumberOfQueuesFeature{}.set_nsq(sq_count - 1).set_ncq(cq_count - 1).raw);
}

constexpr Sqe make_abort(uint16_t cid, uint16_t sqid, uint16_t victim_cid) noexcept {
    Sqe sqe = detail::make_sqe(static_cast<uint8_t>(AdminOpcode::abort), cid, 0);
    sqe.cdw10 = AbortCdw10{}.set_sqid(sqid).set_cid(victim_cid).raw;
    return sqe;
}
constexpr Sqe make_async_event_request(uint16_t cid) noexcept {
    return detail::make_sqe(static_cast<uint8_t>(AdminOpcode::async_event_request), cid, 0);
}
constexpr Sqe make_keep_alive(uint16_t cid) noexcept {
    return detail::make_sqe(static_cast<uint8_t>(AdminOpcode::keep_alive), cid, 0);
}

}  // namespace strata::nvme::spec
