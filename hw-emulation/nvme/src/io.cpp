// NVM command set of the NVMe controller model (Read, Write, Compare, Flush, Write Zeroes,
// Dataset Management) and the data pointers: PRP entries, PRP lists (chained), SGL segments.
#include <algorithm>
#include <cstring>

#include <strata/base/log.h>

#include "model.h"

namespace strata::hwemu::nvme {

namespace {

using spec::GenericStatus;
using spec::MediaStatus;
using spec::NvmOpcode;

constexpr uint16_t st(GenericStatus s, bool dnr = true) {
    return spec::make_status(s, dnr).raw;
}
constexpr uint16_t st(MediaStatus s, bool dnr = false) {
    return spec::make_status(s, dnr).raw;
}

constexpr uint32_t kMaxSglSegments = 1024;  // segment descriptors followed per command

}  // namespace

// ---- Data pointers -------------------------------------------------------------------------

bool ControllerImpl::add_segment(uint64_t iova, uint64_t len) {
    if (len == 0) return true;
    if (nsegs_ > 0) {
        Segment& last = segs_[nsegs_ - 1];
        if (last.iova + last.len == iova) {
            last.len += len;
            return true;
        }
    }
    if (nsegs_ >= segs_.size()) return false;
    segs_[nsegs_++] = Segment{iova, len};
    return true;
}

uint16_t ControllerImpl::map_data(const spec::Sqe& sqe, uint64_t len, bool admin) {
    nsegs_ = 0;
    switch (sqe.psdt()) {
        case spec::Psdt::prp:
            return map_prp(sqe.prp1, sqe.prp2, len);
        case spec::Psdt::sgl_mptr_contig:
        case spec::Psdt::sgl_mptr_sgl:
            if (admin || !cfg_.sgl) return st(GenericStatus::invalid_field);
            return map_sgl(sqe.dptr_sgl(), len);
        default:
            return st(GenericStatus::invalid_field);
    }
}

// PRP1 may carry a dword-aligned offset; every later entry must be page aligned. More than two
// pages: PRP2 points to a PRP list; the last entry of a full list page chains to the next page.
uint16_t ControllerImpl::map_prp(uint64_t prp1, uint64_t prp2, uint64_t len) {
    const uint64_t page = page_size_;
    if (len == 0) return 0;
    if ((prp1 & 0x3) != 0) return st(GenericStatus::invalid_prp_offset);
    const uint64_t first = std::min(len, page - (prp1 & (page - 1)));
    if (!add_segment(prp1, first)) return st(GenericStatus::invalid_field);
    uint64_t rem = len - first;
    if (rem == 0) return 0;
    if (rem <= page) {
        if ((prp2 & (page - 1)) != 0) return st(GenericStatus::invalid_prp_offset);
        if (!add_segment(prp2, rem)) return st(GenericStatus::invalid_field);
        return 0;
    }
    uint64_t list = prp2;
    if ((list & 0x7) != 0) return st(GenericStatus::invalid_prp_offset);
    while (rem > 0) {
        const uint64_t slots = (page - (list & (page - 1))) / spec::prp_entry_bytes;
        const uint64_t needed = (rem + page - 1) / page;
        const bool chained = needed > slots;
        if (chained && slots < 2) return st(GenericStatus::invalid_field);  // no data entry
        const uint64_t count = chained ? slots : needed;
        Status s = fn_->dma().read(list, prp_list_.data(), count * spec::prp_entry_bytes);
        if (!s.ok()) return st(GenericStatus::data_transfer_error, false);
        const uint64_t data_entries = chained ? count - 1 : count;
        for (uint64_t i = 0; i < data_entries; ++i) {
            const uint64_t e = prp_list_[i];
            if ((e & (page - 1)) != 0) return st(GenericStatus::invalid_prp_offset);
            const uint64_t n = std::min(rem, page);
            if (!add_segment(e, n)) return st(GenericStatus::invalid_field);
            rem -= n;
        }
        if (chained) {
            list = prp_list_[count - 1];
            if ((list & (page - 1)) != 0) return st(GenericStatus::invalid_prp_offset);
        }
    }
    return 0;
}

// SGL: one descriptor in the SQE; data blocks, segments and a last segment (address subtype
// only; no bit buckets). The data blocks must describe exactly `len` bytes.
uint16_t ControllerImpl::map_sgl(const spec::SglDescriptor& first, uint64_t len) {
    using spec::SglType;
    uint64_t total = 0;
    auto data_block = [&](const spec::SglDescriptor& d) -> uint16_t {
        if (d.subtype() != spec::SglSubtype::address)
            return st(GenericStatus::sgl_descriptor_type_invalid);
        if (total + d.length > len) return st(GenericStatus::data_sgl_length_invalid);
        if (!add_segment(d.address, d.length))
            return st(GenericStatus::invalid_sgl_descriptor_count);
        total += d.length;
        return 0;
    };
    spec::SglDescriptor d = first;
    for (uint32_t hops = 0;; ++hops) {
        const SglType type = d.type();
        if (type == SglType::data_block) {
            if (uint16_t s = data_block(d); s != 0) return s;
            break;
        }
        if (type != SglType::segment && type != SglType::last_segment)
            return st(GenericStatus::sgl_descriptor_type_invalid);
        if (d.subtype() != spec::SglSubtype::address)
            return st(GenericStatus::sgl_descriptor_type_invalid);
        if (hops >= kMaxSglSegments) return st(GenericStatus::invalid_sgl_descriptor_count);
        if (d.length == 0 || d.length % sizeof(spec::SglDescriptor) != 0)
            return st(GenericStatus::invalid_sgl_segment_descriptor);
        const uint32_t count = d.length / sizeof(spec::SglDescriptor);
        if (count > sgl_list_.size()) return st(GenericStatus::invalid_sgl_descriptor_count);
        Status s = fn_->dma().read(d.address, sgl_list_.data(), d.length);
        if (!s.ok()) return st(GenericStatus::data_transfer_error, false);
        const bool last = type == SglType::last_segment;
        bool next = false;
        for (uint32_t i = 0; i < count; ++i) {
            const spec::SglDescriptor& e = sgl_list_[i];
            const SglType et = e.type();
            if (et == SglType::data_block) {
                if (uint16_t r = data_block(e); r != 0) return r;
            } else if (et == SglType::segment || et == SglType::last_segment) {
                // Only the last descriptor of a (non-last) segment may point onwards.
                if (last || i + 1 != count)
                    return st(GenericStatus::invalid_sgl_segment_descriptor);
                d = e;
                next = true;
            } else {
                return st(GenericStatus::sgl_descriptor_type_invalid);
            }
        }
        if (!next) break;
    }
    if (total != len) return st(GenericStatus::data_sgl_length_invalid);
    return 0;
}

Status ControllerImpl::copy_to_host(Cursor& cur, const uint8_t* src, size_t n) {
    while (n > 0) {
        if (cur.idx >= nsegs_) return Status(Errc::internal, "data pointer too short");
        const Segment& s = segs_[cur.idx];
        const uint64_t piece = std::min<uint64_t>(n, s.len - cur.off);
        STRATA_TRY(fn_->dma().write(s.iova + cur.off, src, piece));
        src += piece;
        n -= piece;
        cur.off += piece;
        if (cur.off == s.len) {
            ++cur.idx;
            cur.off = 0;
        }
    }
    return Status::success();
}

Status ControllerImpl::copy_from_host(Cursor& cur, uint8_t* dst, size_t n) {
    while (n > 0) {
        if (cur.idx >= nsegs_) return Status(Errc::internal, "data pointer too short");
        const Segment& s = segs_[cur.idx];
        const uint64_t piece = std::min<uint64_t>(n, s.len - cur.off);
        STRATA_TRY(fn_->dma().read(s.iova + cur.off, dst, piece));
        dst += piece;
        n -= piece;
        cur.off += piece;
        if (cur.off == s.len) {
            ++cur.idx;
            cur.off = 0;
        }
    }
    return Status::success();
}

// ---- Commands ------------------------------------------------------------------------------

uint16_t ControllerImpl::exec_io(Command& c) {
    const spec::Sqe& sqe = c.sqe;
    if (sqe.fuse() != spec::Fuse::normal) return st(GenericStatus::invalid_field);
    const auto op = static_cast<NvmOpcode>(sqe.opc);
    if (op == NvmOpcode::flush) return io_flush(sqe);
    switch (op) {
        case NvmOpcode::read:
        case NvmOpcode::write:
        case NvmOpcode::compare:
        case NvmOpcode::write_zeroes:
        case NvmOpcode::dataset_management:
            break;
        default:
            return st(GenericStatus::invalid_opcode);
    }
    Namespace* ns = active_ns(sqe.nsid);
    if (ns == nullptr) return st(GenericStatus::invalid_ns_or_format);
    switch (op) {
        case NvmOpcode::write_zeroes:
            return io_write_zeroes(sqe, *ns);
        case NvmOpcode::dataset_management:
            return io_dsm(sqe, *ns);
        default:
            return io_rw(c, *ns);
    }
}

uint16_t ControllerImpl::io_flush(const spec::Sqe& sqe) {
    if (sqe.nsid == spec::nsid_all) {
        for (auto& ns : namespaces_)
            if (ns && !ns->media->flush().ok()) return st(GenericStatus::internal_error, false);
        return 0;
    }
    Namespace* ns = active_ns(sqe.nsid);
    if (ns == nullptr) return st(GenericStatus::invalid_ns_or_format);
    return ns->media->flush().ok() ? 0 : st(GenericStatus::internal_error, false);
}

uint16_t ControllerImpl::io_rw(Command& c, Namespace& ns) {
    const spec::Sqe& sqe = c.sqe;
    const auto op = static_cast<NvmOpcode>(sqe.opc);
    const spec::RwCdw12 cdw12{sqe.cdw12};
    const uint64_t slba = sqe.slba();
    const uint64_t nlb = cdw12.nlb() + 1u;
    if (slba >= ns.blocks || nlb > ns.blocks - slba) return st(GenericStatus::lba_out_of_range);
    const uint64_t bytes = nlb * ns.block_size;
    if (max_transfer_bytes() != 0 && bytes > max_transfer_bytes())
        return st(GenericStatus::invalid_field);
    if (uint16_t s = map_data(sqe, bytes, false); s != 0) return s;
    const uint64_t off = slba * ns.block_size;
    const bool fua = cdw12.fua() != 0;
    Cursor cur;
    const size_t chunk = bounce_.size();
    for (uint64_t pos = 0; pos < bytes;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, bytes - pos));
        if (op == NvmOpcode::read) {
            if (!ns.media->read(off + pos, bounce_.data(), n).ok())
                return st(MediaStatus::unrecovered_read_error);
            if (c.corrupt) {
                // Flip the first byte of every block handed to the host.
                for (size_t b = 0; b < n; b += ns.block_size) bounce_[b] ^= 0xFF;
            }
            if (!copy_to_host(cur, bounce_.data(), n).ok())
                return st(GenericStatus::data_transfer_error, false);
        } else if (op == NvmOpcode::write) {
            if (!copy_from_host(cur, bounce_.data(), n).ok())
                return st(GenericStatus::data_transfer_error, false);
            if (!ns.media->write(off + pos, bounce_.data(), n, fua).ok())
                return st(MediaStatus::write_fault);
        } else {  // compare
            if (!copy_from_host(cur, bounce2_.data(), n).ok())
                return st(GenericStatus::data_transfer_error, false);
            if (!ns.media->read(off + pos, bounce_.data(), n).ok())
                return st(MediaStatus::unrecovered_read_error);
            if (std::memcmp(bounce_.data(), bounce2_.data(), n) != 0)
                return st(MediaStatus::compare_failure, true);
        }
        pos += n;
    }
    if (op == NvmOpcode::write) {
        health_.units_written_512 += bytes / 512;
        ++health_.host_write_commands;
    } else {
        health_.units_read_512 += bytes / 512;
        ++health_.host_read_commands;
    }
    return 0;
}

uint16_t ControllerImpl::io_write_zeroes(const spec::Sqe& sqe, Namespace& ns) {
    const spec::RwCdw12 cdw12{sqe.cdw12};
    const uint64_t slba = sqe.slba();
    const uint64_t nlb = cdw12.nlb() + 1u;
    if (slba >= ns.blocks || nlb > ns.blocks - slba) return st(GenericStatus::lba_out_of_range);
    const uint64_t off = slba * ns.block_size;
    const uint64_t bytes = nlb * ns.block_size;
    if (cdw12.deac() != 0) {
        if (!ns.media->deallocate(off, bytes).ok()) return st(MediaStatus::write_fault);
    } else {
        std::memset(bounce_.data(), 0,
                    static_cast<size_t>(std::min<uint64_t>(bounce_.size(), bytes)));
        for (uint64_t pos = 0; pos < bytes;) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(bounce_.size(), bytes - pos));
            if (!ns.media->write(off + pos, bounce_.data(), n, cdw12.fua() != 0).ok())
                return st(MediaStatus::write_fault);
            pos += n;
        }
    }
    ++health_.host_write_commands;
    return 0;
}

uint16_t ControllerImpl::io_dsm(const spec::Sqe& sqe, Namespace& ns) {
    const uint32_t nr = spec::DsmCdw10{sqe.cdw10}.nr() + 1u;
    const uint64_t bytes = uint64_t{nr} * sizeof(spec::DsmRange);
    if (uint16_t s = map_data(sqe, bytes, false); s != 0) return s;
    Cursor cur;
    if (!copy_from_host(cur, reinterpret_cast<uint8_t*>(dsm_ranges_.data()), bytes).ok())
        return st(GenericStatus::data_transfer_error, false);
    if (spec::DsmCdw11{sqe.cdw11}.ad() == 0) return 0;  // hints only
    for (uint32_t i = 0; i < nr; ++i) {
        const spec::DsmRange& r = dsm_ranges_[i];
        if (r.slba >= ns.blocks || r.nlb > ns.blocks - r.slba)
            return st(GenericStatus::lba_out_of_range);
    }
    for (uint32_t i = 0; i < nr; ++i) {
        const spec::DsmRange& r = dsm_ranges_[i];
        if (r.nlb == 0) continue;
        if (!ns.media->deallocate(r.slba * ns.block_size, uint64_t{r.nlb} * ns.block_size).ok())
            return st(GenericStatus::internal_error, false);
    }
    return 0;
}

}  // namespace strata::hwemu::nvme
