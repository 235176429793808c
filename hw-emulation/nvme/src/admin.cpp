// Admin command set of the NVMe controller model: Identify, Get/Set Features, Create/Delete
// I/O SQ and CQ, Get Log Page, Abort and Asynchronous Event Request.
#include <algorithm>
#include <cstring>

#include <strata/base/log.h>

#include "model.h"

namespace strata::hwemu::nvme {

namespace {

using spec::AdminOpcode;
using spec::CommandSpecificStatus;
using spec::GenericStatus;

constexpr uint16_t st(GenericStatus s, bool dnr = true) {
    return spec::make_status(s, dnr).raw;
}
constexpr uint16_t st(CommandSpecificStatus s, bool dnr = true) {
    return spec::make_status(s, dnr).raw;
}

template <size_t N>
void put_ascii(std::array<char, N>& field, const std::string& text) {
    field.fill(' ');
    std::memcpy(field.data(), text.data(), std::min(N, text.size()));
}

constexpr uint16_t kCompositeTempK = 313;  // 40 C

}  // namespace

uint16_t ControllerImpl::exec_admin(Command& c, uint32_t& dw0, bool& parked) {
    const spec::Sqe& sqe = c.sqe;
    if (sqe.fuse() != spec::Fuse::normal) return st(GenericStatus::invalid_field);
    switch (static_cast<AdminOpcode>(sqe.opc)) {
        case AdminOpcode::identify:
            return admin_identify(sqe);
        case AdminOpcode::get_log_page:
            return admin_get_log_page(sqe);
        case AdminOpcode::set_features:
            return admin_features(sqe, true, dw0);
        case AdminOpcode::get_features:
            return admin_features(sqe, false, dw0);
        case AdminOpcode::create_io_cq:
            return admin_create_cq(sqe);
        case AdminOpcode::create_io_sq:
            return admin_create_sq(sqe);
        case AdminOpcode::delete_io_sq:
            return admin_delete_sq(sqe);
        case AdminOpcode::delete_io_cq:
            return admin_delete_cq(sqe);
        case AdminOpcode::abort:
            return admin_abort(sqe, dw0);
        case AdminOpcode::async_event_request:
            if (aer_count_ >= kMaxAer) return st(CommandSpecificStatus::async_event_limit_exceeded);
            c.parked_aer = true;
            aers_[aer_count_++] = &c;
            parked = true;
            deliver_events();
            return 0;
        case AdminOpcode::keep_alive:
            return 0;
        default:
            return st(GenericStatus::invalid_opcode);
    }
}

// Admin data goes through PRPs (SGLs are for NVM commands here).
uint16_t ControllerImpl::send_to_host(const void* data, size_t len) {
    Cursor cur;
    Status s = copy_to_host(cur, static_cast<const uint8_t*>(data), len);
    return s.ok() ? 0 : st(GenericStatus::data_transfer_error, false);
}

// ---- Identify ------------------------------------------------------------------------------

void ControllerImpl::fill_identify_ctrl(spec::IdentifyController& id) const {
    id.vid = cfg_.vendor_id;
    id.ssvid = cfg_.vendor_id;
    put_ascii(id.sn, cfg_.serial);
    put_ascii(id.mn, cfg_.model);
    put_ascii(id.fr, cfg_.firmware);
    id.rab = 3;
    id.ieee = {0x00, 0x54, 0x52};
    id.cmic = 0;
    id.mdts = cfg_.mdts;
    id.cntlid = 1;
    id.ver = spec::vs_1_4.raw;
    id.oaes = spec::oaes::ns_attribute_notices;
    id.cntrltype = 1;  // I/O controller
    id.oacs = 0;
    id.acl = 3;
    id.aerl = kMaxAer - 1;
    id.frmw = 0x03;  // one slot, read-only
    id.lpa = spec::lpa::extended_data;
    id.elpe = kErrorLogEntries - 1;
    id.npss = 0;
    id.wctemp = 343;
    id.cctemp = 373;
    uint64_t total = 0;
    for (const auto& ns : namespaces_)
        if (ns) total += ns->blocks * ns->block_size;
    id.tnvmcap.set(total);
    id.unvmcap.set(0);
    id.sqes = static_cast<uint8_t>((spec::sqe_size_log2 << 4) | spec::sqe_size_log2);
    id.cqes = static_cast<uint8_t>((spec::cqe_size_log2 << 4) | spec::cqe_size_log2);
    id.maxcmd = 0;
    id.nn = cfg_.max_namespaces;
    id.oncs = spec::oncs::compare | spec::oncs::dataset_management | spec::oncs::write_zeroes;
    id.fuses = 0;
    // VWC present; bits 2:1 = 11b: Flush with NSID FFFFFFFFh applies to all namespaces.
    id.vwc = cfg_.volatile_write_cache ? 0x07 : 0x00;
    id.awun = 0;
    id.awupf = 0;
    id.sgls = cfg_.sgl ? 0x1u : 0u;
    const std::string nqn = "nqn.2024-01.io.strata:nvme:" + cfg_.serial;
    std::memcpy(id.subnqn.data(), nqn.data(), std::min(nqn.size(), id.subnqn.size() - 1));
    id.psd[0].mp = 2500;  // 25 W
    id.psd[0].enlat = 16;
    id.psd[0].exlat = 4;
}

void ControllerImpl::fill_identify_ns(const Namespace& ns, spec::IdentifyNamespace& id) const {
    id.nsze = ns.blocks;
    id.ncap = ns.blocks;
    id.nuse = ns.blocks;
    id.nsfeat = 0;
    id.nlbaf = 1;  // two formats: 512 and 4096 bytes, no metadata
    id.flbas = ns.block_size == 4096 ? 1 : 0;
    id.dlfeat = 0x09;  // deallocated blocks read zeroes; Write Zeroes may deallocate
    id.nvmcap.set(ns.blocks * ns.block_size);
    id.nguid = ns.nguid;
    id.eui64 = ns.eui64;
    id.lbaf[0] = spec::LbaFormat{0, 9, 0};
    id.lbaf[1] = spec::LbaFormat{0, 12, 0};
}

uint16_t ControllerImpl::admin_identify(const spec::Sqe& sqe) {
    if (sqe.psdt() != spec::Psdt::prp) return st(GenericStatus::invalid_field);
    const spec::IdentifyCdw10 cdw10{sqe.cdw10};
    const auto cns = static_cast<spec::Cns>(cdw10.cns());
    std::memset(bounce_.data(), 0, spec::identify_data_bytes);
    uint8_t* out = bounce_.data();
    const uint32_t nsid = sqe.nsid;
    switch (cns) {
        case spec::Cns::ns: {
            if (nsid == 0 || (nsid > cfg_.max_namespaces && nsid != spec::nsid_all))
                return st(GenericStatus::invalid_ns_or_format);
            if (nsid == spec::nsid_all) {
                // Capabilities common to all namespaces: the formats, no size.
                spec::IdentifyNamespace id{};
                id.nlbaf = 1;
                id.dlfeat = 0x09;
                id.lbaf[0] = spec::LbaFormat{0, 9, 0};
                id.lbaf[1] = spec::LbaFormat{0, 12, 0};
                std::memcpy(out, &id, sizeof(id));
            } else if (const Namespace* ns = active_ns(nsid)) {
                spec::IdentifyNamespace id{};
                fill_identify_ns(*ns, id);
                std::memcpy(out, &id, sizeof(id));
            }  // an inactive NSID reads as zeroes
            break;
        }
        case spec::Cns::ctrlr: {
            spec::IdentifyController id{};
            fill_identify_ctrl(id);
            std::memcpy(out, &id, sizeof(id));
            break;
        }
        case spec::Cns::active_ns_list: {
            if (nsid >= 0xFFFFFFFEu) return st(GenericStatus::invalid_ns_or_format);
            uint32_t n = 0;
            for (uint32_t i = nsid + 1; i < namespaces_.size() && n < spec::ns_list_max_entries;
                 ++i) {
                if (!namespaces_[i]) continue;
                std::memcpy(out + 4 * n, &i, 4);
                ++n;
            }
            break;
        }
        case spec::Cns::ns_id_desc_list: {
            const Namespace* ns = active_ns(nsid);
            if (ns == nullptr) return st(GenericStatus::invalid_ns_or_format);
            size_t at = 0;
            auto put = [&](spec::NidType type, const uint8_t* data, uint8_t len) {
                if (type != spec::NidType::csi &&
                    std::all_of(data, data + len, [](uint8_t b) { return b == 0; }))
                    return;  // an identifier the namespace does not have is not listed
                spec::NsIdDescriptorHeader h{static_cast<uint8_t>(type), len, {}};
                std::memcpy(out + at, &h, sizeof(h));
                std::memcpy(out + at + sizeof(h), data, len);
                at += sizeof(h) + len;
            };
            put(spec::NidType::eui64, ns->eui64.data(), 8);
            put(spec::NidType::nguid, ns->nguid.data(), 16);
            put(spec::NidType::uuid, ns->uuid.data(), 16);
            const uint8_t csi = 0;  // NVM command set
            put(spec::NidType::csi, &csi, 1);
            break;
        }
        default:
            return st(GenericStatus::invalid_field);
    }
    if (uint16_t s = map_data(sqe, spec::identify_data_bytes, true); s != 0) return s;
    return send_to_host(out, spec::identify_data_bytes);
}

// ---- Get Log Page --------------------------------------------------------------------------

uint16_t ControllerImpl::admin_get_log_page(const spec::Sqe& sqe) {
    if (sqe.psdt() != spec::Psdt::prp) return st(GenericStatus::invalid_field);
    const spec::GetLogPageCdw10 cdw10{sqe.cdw10};
    const spec::GetLogPageCdw11 cdw11{sqe.cdw11};
    const uint64_t numd = ((uint64_t{cdw11.numdu()} << 16) | cdw10.numdl()) + 1;
    const uint64_t len = numd * 4;
    const uint64_t offset = uint64_t{sqe.cdw12} | (uint64_t{sqe.cdw13} << 32);
    if ((offset & 3) != 0) return st(GenericStatus::invalid_field);
    if (len > bounce_.size() || (max_transfer_bytes() != 0 && len > max_transfer_bytes()))
        return st(GenericStatus::invalid_field);
    const bool rae = cdw10.rae() != 0;
    uint8_t* page = bounce2_.data();
    size_t page_len = 0;
    uint8_t unmask_type = 0xFF;
    switch (static_cast<spec::LogPage>(cdw10.lid())) {
        case spec::LogPage::error_info: {
            page_len = kErrorLogEntries * sizeof(spec::ErrorInfoEntry);
            std::memset(page, 0, page_len);
            // Newest first.
            for (uint32_t i = 0; i < kErrorLogEntries; ++i) {
                const uint32_t at = (error_log_next_ + kErrorLogEntries - 1 - i) % kErrorLogEntries;
                std::memcpy(page + i * sizeof(spec::ErrorInfoEntry), &error_log_[at],
                            sizeof(spec::ErrorInfoEntry));
            }
            unmask_type = static_cast<uint8_t>(spec::AsyncEventType::error);
            break;
        }
        case spec::LogPage::smart_health: {
            if (sqe.nsid != 0 && sqe.nsid != spec::nsid_all && active_ns(sqe.nsid) == nullptr)
                return st(GenericStatus::invalid_ns_or_format);
            spec::SmartHealthLog log{};
            log.critical_warning = 0;
            log.composite_temperature.set(kCompositeTempK);
            log.available_spare = 100;
            log.available_spare_threshold = 10;
            log.percentage_used = 0;
            // Data units: thousands of 512-byte units, rounded up.
            log.data_units_read.set((health_.units_read_512 + 999) / 1000);
            log.data_units_written.set((health_.units_written_512 + 999) / 1000);
            log.host_read_commands.set(health_.host_read_commands);
            log.host_write_commands.set(health_.host_write_commands);
            log.power_cycles.set(health_.power_cycles);
            log.unsafe_shutdowns.set(health_.unsafe_shutdowns);
            log.media_errors.set(health_.media_errors);
            log.num_err_log_entries.set(error_count_);
            log.temperature_sensor[0] = kCompositeTempK;
            page_len = sizeof(log);
            std::memcpy(page, &log, page_len);
            unmask_type = static_cast<uint8_t>(spec::AsyncEventType::smart_health);
            break;
        }
        case spec::LogPage::changed_ns_list: {
            page_len = sizeof(spec::ChangedNsList);
            std::memset(page, 0, page_len);
            if (changed_ns_overflow_) {
                const uint32_t all = spec::ChangedNsList::overflow;
                std::memcpy(page, &all, 4);
            } else {
                std::vector<uint32_t> sorted = changed_ns_;  // control path
                std::sort(sorted.begin(), sorted.end());
                if (!sorted.empty()) std::memcpy(page, sorted.data(), sorted.size() * 4);
            }
            if (!rae) {
                changed_ns_.clear();
                changed_ns_overflow_ = false;
            }
            unmask_type = static_cast<uint8_t>(spec::AsyncEventType::notice);
            break;
        }
        default:
            return st(CommandSpecificStatus::invalid_log_page);
    }
    if (offset >= page_len) return st(GenericStatus::invalid_field);
    // Bytes past the end of the log read as zeroes.
    uint8_t* out = bounce_.data();
    std::memset(out, 0, len);
    std::memcpy(out, page + offset, std::min<uint64_t>(len, page_len - offset));
    if (uint16_t s = map_data(sqe, len, true); s != 0) return s;
    uint16_t s = send_to_host(out, len);
    if (s == 0 && !rae && unmask_type != 0xFF) {
        masked_types_ = static_cast<uint8_t>(masked_types_ & ~(1u << unmask_type));
        deliver_events();
    }
    return s;
}

// ---- Features ------------------------------------------------------------------------------

uint16_t ControllerImpl::admin_features(const spec::Sqe& sqe, bool set, uint32_t& dw0) {
    const spec::FeaturesCdw10 cdw10{sqe.cdw10};
    const auto fid = static_cast<spec::FeatureId>(cdw10.fid());
    const uint32_t v = sqe.cdw11;
    if (set && cdw10.sv() != 0) return st(CommandSpecificStatus::feature_not_saveable);
    const auto sel = static_cast<spec::FeatureSelect>(set ? 0 : cdw10.sel());
    if (!set && cdw10.sel() > 3) return st(GenericStatus::invalid_field);
    const bool want_default =
        sel == spec::FeatureSelect::default_value || sel == spec::FeatureSelect::saved;
    const bool want_caps = sel == spec::FeatureSelect::supported_capabilities;
    auto get = [&](uint32_t current, uint32_t def) -> uint16_t {
        dw0 = want_caps ? 0x4u /* changeable */ : (want_default ? def : current);
        return 0;
    };
    switch (fid) {
        case spec::FeatureId::arbitration:
            if (!set) return get(arbitration_, 0);
            arbitration_ = v;
            return 0;
        case spec::FeatureId::power_management:
            if (!set) return get(power_mgmt_, 0);
            if (spec::PowerManagementFeature{v}.ps() != 0) return st(GenericStatus::invalid_field);
            power_mgmt_ = v;
            return 0;
        case spec::FeatureId::temperature_threshold: {
            const spec::TemperatureThresholdFeature t{v};
            if (t.tmpsel() != 0 || t.thsel() > 1) return st(GenericStatus::invalid_field);
            const bool over = t.thsel() == 0;
            if (!set) {
                const uint16_t cur = over ? temp_over_k_ : temp_under_k_;
                const uint16_t def = over ? 343 : 0;
                uint32_t base = v & 0x3F0000u;
                get(base | cur, base | def);
                return 0;
            }
            (over ? temp_over_k_ : temp_under_k_) = static_cast<uint16_t>(t.tmpth());
            return 0;
        }
        case spec::FeatureId::volatile_write_cache: {
            if (!cfg_.volatile_write_cache) return st(GenericStatus::invalid_field);
            if (!set) return get(vwc_enabled_ ? 1u : 0u, 1u);
            const bool on = spec::VolatileWriteCacheFeature{v}.wce() != 0;
            for (auto& ns : namespaces_) {
                if (!ns) continue;
                if (!on) (void)ns->media->flush();
                ns->media->set_cache_enabled(on);
            }
            vwc_enabled_ = on;
            return 0;
        }
        case spec::FeatureId::number_of_queues: {
            const uint32_t max = cfg_.max_io_queues;
            const auto value = [&](uint32_t nsq, uint32_t ncq) {
                return spec::NumberOfQueuesFeature{}.set_nsq(nsq - 1).set_ncq(ncq - 1).raw;
            };
            if (!set) return get(value(nsqa_, ncqa_), value(max, max));
            const spec::NumberOfQueuesFeature req{v};
            if (req.nsq() == 0xFFFF || req.ncq() == 0xFFFF) return st(GenericStatus::invalid_field);
            if (active_sqids_.size() > 1) return st(GenericStatus::command_sequence_error);
            for (size_t q = 1; q < cqs_.size(); ++q)
                if (cqs_[q].valid) return st(GenericStatus::command_sequence_error);
            nsqa_ = std::min<uint32_t>(req.nsq() + 1u, max);
            ncqa_ = std::min<uint32_t>(req.ncq() + 1u, max);
            dw0 = value(nsqa_, ncqa_);
            return 0;
        }
        case spec::FeatureId::async_event_config: {
            const uint32_t supported = 0xFFu | spec::AsyncEventConfigFeature{}.set_nan(1).raw;
            const uint32_t def = spec::AsyncEventConfigFeature{}.set_nan(1).raw;
            if (!set) return get(async_config_, def);
            if ((v & ~supported) != 0) return st(GenericStatus::invalid_field);
            async_config_ = v;
            return 0;
        }
        default:
            return st(GenericStatus::invalid_field);
    }
}

// ---- Queues --------------------------------------------------------------------------------

uint16_t ControllerImpl::admin_create_cq(const spec::Sqe& sqe) {
    const spec::QueueCdw10 cdw10{sqe.cdw10};
    const spec::CreateIoCqCdw11 cdw11{sqe.cdw11};
    const uint32_t qid = cdw10.qid();
    if (qid == 0 || qid > ncqa_ || cqs_[qid].valid)
        return st(CommandSpecificStatus::invalid_queue_id);
    const uint32_t entries = cdw10.qsize() + 1u;
    if (cdw10.qsize() == 0 || entries > cfg_.max_queue_entries)
        return st(CommandSpecificStatus::invalid_queue_size);
    if (cdw11.pc() == 0) return st(GenericStatus::invalid_field);  // CAP.CQR = 1
    if (cdw11.ien() != 0 && cdw11.iv() > cfg_.max_io_queues)
        return st(CommandSpecificStatus::invalid_interrupt_vector);
    if (sqe.prp1 == 0 || (sqe.prp1 & (page_size_ - 1)) != 0)
        return st(GenericStatus::invalid_prp_offset);
    create_cq(static_cast<uint16_t>(qid), sqe.prp1, entries);
    return 0;
}

uint16_t ControllerImpl::admin_create_sq(const spec::Sqe& sqe) {
    const spec::QueueCdw10 cdw10{sqe.cdw10};
    const spec::CreateIoSqCdw11 cdw11{sqe.cdw11};
    const uint32_t qid = cdw10.qid();
    if (qid == 0 || qid > nsqa_ || sqs_[qid].valid)
        return st(CommandSpecificStatus::invalid_queue_id);
    const uint32_t cqid = cdw11.cqid();
    if (cqid == 0 || cqid >= cqs_.size() || !cqs_[cqid].valid)
        return st(CommandSpecificStatus::completion_queue_invalid);
    const uint32_t entries = cdw10.qsize() + 1u;
    if (cdw10.qsize() == 0 || entries > cfg_.max_queue_entries)
        return st(CommandSpecificStatus::invalid_queue_size);
    if (cdw11.pc() == 0) return st(GenericStatus::invalid_field);
    if (sqe.prp1 == 0 || (sqe.prp1 & (page_size_ - 1)) != 0)
        return st(GenericStatus::invalid_prp_offset);
    create_sq(static_cast<uint16_t>(qid), sqe.prp1, entries, static_cast<uint16_t>(cqid));
    return 0;
}

uint16_t ControllerImpl::admin_delete_sq(const spec::Sqe& sqe) {
    const uint32_t qid = spec::QueueCdw10{sqe.cdw10}.qid();
    if (qid == 0 || qid >= sqs_.size() || !sqs_[qid].valid)
        return st(CommandSpecificStatus::invalid_queue_id);
    delete_sq(static_cast<uint16_t>(qid));
    return 0;
}

uint16_t ControllerImpl::admin_delete_cq(const spec::Sqe& sqe) {
    const uint32_t qid = spec::QueueCdw10{sqe.cdw10}.qid();
    if (qid == 0 || qid >= cqs_.size() || !cqs_[qid].valid)
        return st(CommandSpecificStatus::invalid_queue_id);
    if (cqs_[qid].sq_refs != 0) return st(CommandSpecificStatus::invalid_queue_deletion);
    cqs_[qid] = CompQueue{};
    return 0;
}

// ---- Abort ---------------------------------------------------------------------------------

// Aborts a command the model still holds (fetched, waiting for its latency to pass). DW0 bit 0
// is 0 when the command was aborted, 1 when it was not (already completed, unknown or an AER).
uint16_t ControllerImpl::admin_abort(const spec::Sqe& sqe, uint32_t& dw0) {
    const spec::AbortCdw10 cdw10{sqe.cdw10};
    const uint32_t sqid = cdw10.sqid();
    dw0 = 1;
    if (sqid >= sqs_.size() || !sqs_[sqid].valid) return 0;
    for (Command* c : heap_) {
        if (c->sqid == sqid && c->sqe.cid == cdw10.cid()) {
            heap_remove(c);
            complete(*c, st(GenericStatus::abort_requested, false), 0);
            dw0 = 0;
            return 0;
        }
    }
    return 0;
}

}  // namespace strata::hwemu::nvme
