// NVM I/O commands on the qpair's Thread: Read, Write, Flush, Write Zeroes, Dataset Management,
// Compare and fused Compare-and-Write, straight onto the bdev with the Request's iovecs.
#include <algorithm>
#include <cstring>

#include "core.h"

namespace strata::nvmf {

namespace {

using spec::GenericStatus;

// Request::Core.state for I/O.
enum : uint32_t { kIoPlain = 0, kIoDsm = 1, kIoFusedFirst = 2, kIoFusedSecond = 3 };

NsChannel* channel_of(Qpair& q, uint32_t nsid) {
    auto& v = q.core().ns;
    if (nsid == 0 || nsid > v.size()) return nullptr;
    NsChannel& e = v[nsid - 1];
    if (!e.active || e.desc == nullptr) return nullptr;
    if (e.ch == nullptr) e.ch = e.desc->get_channel();
    return e.ch != nullptr ? &e : nullptr;
}

void io_done_release(Qpair& q, uint32_t nsid) {
    auto& v = q.core().ns;
    if (nsid == 0 || nsid > v.size()) return;
    NsChannel& e = v[nsid - 1];
    if (--e.inflight == 0 && (!e.active || q.is_closed())) {
        if (e.ch) bdev::put_channel(e.ch);
        e.ch = nullptr;
        e.desc = nullptr;
        if (e.on_drained) {
            auto f = std::move(e.on_drained);
            e.on_drained = nullptr;
            f();
        }
    }
}

void map_status(Request& req, const bdev::IoStatus& st, bool compare) {
    if (st.ok()) return;
    if (st.nvme_status != 0) {
        set_status(req, static_cast<uint8_t>((st.nvme_status >> 8) & 0x7),
                   static_cast<uint8_t>(st.nvme_status & 0xFF));
    } else if (st.code == Errc::corrupt && compare) {
        set_status(req, static_cast<uint8_t>(spec::Sct::media_error), 0x85, true);  // Compare Failure
    } else if (st.code == Errc::aborted) {
        set_generic(req, GenericStatus::abort_requested, false);
    } else {
        set_generic(req, GenericStatus::internal_error, false);
    }
}

// Successful data commands (errors are counted for every command as it completes).
void account(Request& req) {
    if (!req.rsp.sf().ok()) return;
    auto& st = QpairAccess::stats(*req.qpair);
    switch (static_cast<spec::NvmOpcode>(req.cmd.opc)) {
        case spec::NvmOpcode::read:
            st.bytes_read += req.length;
            ++st.read_commands;
            break;
        case spec::NvmOpcode::compare: ++st.read_commands; break;
        case spec::NvmOpcode::write:
            st.bytes_written += req.length;
            ++st.write_commands;
            break;
        case spec::NvmOpcode::write_zeroes: ++st.write_commands; break;
        default: break;
    }
}

void io_complete(void* ctx, const bdev::IoStatus& st) {
    auto& req = *static_cast<Request*>(ctx);
    const uint32_t nsid = req.core.nsid;
    Qpair& q = *req.qpair;
    if (req.core.state == kIoDsm) {
        if (!st.ok() && req.rsp.sf().ok()) map_status(req, st, false);
        if (--req.core.nlb != 0) return;  // ranges still running
    } else {
        map_status(req, st, static_cast<spec::NvmOpcode>(req.cmd.opc) == spec::NvmOpcode::compare);
    }
    account(req);
    take_ref(q);
    if (q.core().in_exec) finish_deferred(req);
    else finish_local(req);
    io_done_release(q, nsid);
    drop_ref(q);
}

void caw_complete(void* ctx, const bdev::IoStatus& st) {
    auto& second = *static_cast<Request*>(ctx);
    Request& first = *static_cast<Request*>(second.core.aux);
    Qpair& q = *second.qpair;
    const uint32_t nsid = second.core.nsid;
    if (!st.ok()) {
        if (st.code == Errc::corrupt) {
            set_status(first, static_cast<uint8_t>(spec::Sct::media_error), 0x85, true);
            set_generic(second, GenericStatus::aborted_failed_fused);
        } else {
            map_status(first, st, true);
            map_status(second, st, false);
        }
    }
    account(first);
    account(second);
    take_ref(q);
    if (q.core().in_exec) {
        finish_deferred(first);
        finish_deferred(second);
    } else {
        finish_local(first);
        finish_local(second);
    }
    io_done_release(q, nsid);
    drop_ref(q);
}

void retry(void* ctx);

// Submits (or resubmits after Errc::busy) the bdev operation of a validated request.
void submit(Request& req) {
    Qpair& q = *req.qpair;
    NsChannel& e = q.core().ns[req.core.nsid - 1];
    bdev::Desc& d = *e.desc;
    bdev::Channel& ch = *e.ch;
    const auto op = static_cast<spec::NvmOpcode>(req.cmd.opc);
    const auto* iov = req.iov.data();
    const int iovcnt = static_cast<int>(req.iovcnt);
    Status s;
    switch (op) {
        case spec::NvmOpcode::read:
            s = bdev::readv(d, ch, iov, iovcnt, req.core.slba, req.core.nlb, &io_complete, &req);
            break;
        case spec::NvmOpcode::write:
            if (req.core.state == kIoFusedSecond) {
                Request& first = *static_cast<Request*>(req.core.aux);
                s = bdev::compare_and_writev(d, ch, first.iov.data(), static_cast<int>(first.iovcnt),
                                             iov, iovcnt, req.core.slba, req.core.nlb, &caw_complete,
                                             &req);
            } else {
                s = bdev::writev(d, ch, iov, iovcnt, req.core.slba, req.core.nlb, &io_complete, &req);
            }
            break;
        case spec::NvmOpcode::compare:
            s = bdev::comparev(d, ch, iov, iovcnt, req.core.slba, req.core.nlb, &io_complete, &req);
            break;
        case spec::NvmOpcode::write_zeroes:
            s = bdev::write_zeroes(d, ch, req.core.slba, req.core.nlb, &io_complete, &req);
            break;
        case spec::NvmOpcode::flush:
            s = bdev::flush(d, ch, 0, e.num_blocks, &io_complete, &req);
            if (s.code() == Errc::invalid_argument) {  // no flush in this bdev: nothing to do
                ++e.inflight;
                io_complete(&req, bdev::IoStatus{});
                return;
            }
            break;
        default: break;
    }
    if (s.ok()) {
        ++e.inflight;
        return;
    }
    if (s.code() == Errc::busy) {
        req.core.wait.fn = &retry;
        req.core.wait.ctx = &req;
        bdev::queue_io_wait(ch, req.core.wait);
        if (PollGroup* g = q.core().group) ++g->stats.pending_bdev_io;
        ++e.inflight;  // keeps the channel until the retry
        return;
    }
    ++e.inflight;
    bdev::IoStatus st;
    st.code = s.code();
    if (s.code() == Errc::invalid_argument) {
        set_generic(req, GenericStatus::lba_out_of_range);  // range checks raced a shrink
        st.code = Errc::ok;
    }
    if (req.core.state == kIoFusedSecond) caw_complete(&req, st);
    else io_complete(&req, st);
}

void retry(void* ctx) {
    auto& req = *static_cast<Request*>(ctx);
    NsChannel& e = req.qpair->core().ns[req.core.nsid - 1];
    --e.inflight;
    submit(req);
}

void fail(Request& req, GenericStatus sc) {
    set_generic(req, sc);
    finish_deferred(req);
}

// Range and length checks for commands with SLBA/NLB; false after failing the request.
bool check_range(Request& req, const NsChannel& e, bool with_data) {
    const uint64_t slba = req.cmd.slba();
    const uint64_t nlb = uint64_t{req.cmd.cdw12 & 0xFFFF} + 1;
    if (slba >= e.num_blocks || nlb > e.num_blocks - slba) {
        fail(req, GenericStatus::lba_out_of_range);
        return false;
    }
    if (with_data && nlb * e.block_size != req.length) {
        fail(req, GenericStatus::data_sgl_length_invalid);
        return false;
    }
    req.core.slba = slba;
    req.core.nlb = static_cast<uint32_t>(nlb);
    return true;
}

void dsm(Request& req, NsChannel& e) {
    const uint32_t nr = (req.cmd.cdw10 & 0xFF) + 1;
    const bool deallocate = (req.cmd.cdw11 >> 2) & 1;
    if (req.length < nr * sizeof(spec::DsmRange)) return fail(req, GenericStatus::data_sgl_length_invalid);
    if (!deallocate) {  // integral read/write hints only: nothing to do
        finish_deferred(req);
        return;
    }
    std::array<spec::DsmRange, spec::dsm_max_ranges> ranges;
    copy_from_iov(req, ranges.data(), nr * sizeof(spec::DsmRange));
    for (uint32_t i = 0; i < nr; ++i) {
        const auto& r = ranges[i];
        if (r.slba >= e.num_blocks || r.nlb > e.num_blocks - r.slba)
            return fail(req, GenericStatus::lba_out_of_range);
    }
    req.core.state = kIoDsm;
    req.core.nlb = 1;  // a guard until every range is submitted
    ++e.inflight;      // one for the whole command
    for (uint32_t i = 0; i < nr; ++i) {
        if (ranges[i].nlb == 0) continue;
        ++req.core.nlb;
        Status s = bdev::unmap(*e.desc, *e.ch, ranges[i].slba, ranges[i].nlb, &io_complete, &req);
        if (!s.ok()) {
            bdev::IoStatus st;
            st.code = s.code() == Errc::invalid_argument ? Errc::ok : s.code();  // no unmap: a hint
            io_complete(&req, st);
        }
    }
    io_complete(&req, bdev::IoStatus{});  // drops the guard (and completes if all are done)
}

}  // namespace

namespace {
void exec_io_inner(Request& req) noexcept;
}

void exec_io(Request& req) noexcept {
    auto& core = req.qpair->core();
    core.in_exec = true;
    exec_io_inner(req);
    core.in_exec = false;
}

namespace {
void exec_io_inner(Request& req) noexcept {
    Qpair& q = *req.qpair;
    auto& core = q.core();
    const auto fuse = req.cmd.fuse();
    // A held Compare (FUSE first) must be followed at once by its Write (FUSE second).
    if (core.fused_first != nullptr && fuse != spec::Fuse::second) {
        Request* first = core.fused_first;
        core.fused_first = nullptr;
        set_generic(*first, GenericStatus::aborted_missing_fused);
        finish_deferred(*first);
    }
    const uint32_t nsid = req.cmd.nsid;
    req.core.nsid = nsid;
    const auto op = static_cast<spec::NvmOpcode>(req.cmd.opc);
    switch (op) {
        case spec::NvmOpcode::read:
        case spec::NvmOpcode::write:
        case spec::NvmOpcode::compare:
        case spec::NvmOpcode::write_zeroes:
        case spec::NvmOpcode::flush:
        case spec::NvmOpcode::dataset_management: break;
        default: return fail(req, GenericStatus::invalid_opcode);
    }
    NsChannel* e = channel_of(q, nsid);
    if (e == nullptr) return fail(req, GenericStatus::invalid_ns_or_format);
    if (fuse == spec::Fuse::first) {
        if (op != spec::NvmOpcode::compare) return fail(req, GenericStatus::invalid_field);
        if (!check_range(req, *e, true)) return;
        req.core.state = kIoFusedFirst;
        core.fused_first = &req;
        return;
    }
    if (fuse == spec::Fuse::second) {
        Request* first = core.fused_first;
        core.fused_first = nullptr;
        if (first == nullptr || op != spec::NvmOpcode::write || first->cmd.nsid != nsid) {
            if (first != nullptr) {
                set_generic(*first, GenericStatus::aborted_missing_fused);
                finish_deferred(*first);
            }
            return fail(req, GenericStatus::aborted_missing_fused);
        }
        if (!check_range(req, *e, true)) {
            set_generic(*first, GenericStatus::aborted_failed_fused);
            finish_deferred(*first);
            return;
        }
        if (req.core.slba != first->core.slba || req.core.nlb != first->core.nlb) {
            set_generic(*first, GenericStatus::invalid_field);
            finish_deferred(*first);
            return fail(req, GenericStatus::invalid_field);
        }
        req.core.state = kIoFusedSecond;
        req.core.aux = first;
        submit(req);
        return;
    }
    if (req.cmd.fuse() != spec::Fuse::normal) return fail(req, GenericStatus::invalid_field);
    switch (op) {
        case spec::NvmOpcode::read:
        case spec::NvmOpcode::write:
        case spec::NvmOpcode::compare:
            if (!check_range(req, *e, true)) return;
            break;
        case spec::NvmOpcode::write_zeroes:
            if (!check_range(req, *e, false)) return;
            break;
        case spec::NvmOpcode::dataset_management: return dsm(req, *e);
        default: break;
    }
    submit(req);
}
}  // namespace

void io_qpair_closed(Qpair& q) noexcept {
    auto& core = q.core();
    if (core.fused_first != nullptr) {
        set_generic(*core.fused_first, GenericStatus::aborted_sq_deletion);
        finish_deferred(*core.fused_first);
        core.fused_first = nullptr;
    }
    for (NsChannel& e : core.ns) {
        if (e.inflight != 0) continue;  // released when the last I/O completes
        if (e.ch) bdev::put_channel(e.ch);
        e.ch = nullptr;
        e.desc = nullptr;
        if (e.on_drained) {
            auto f = std::move(e.on_drained);
            e.on_drained = nullptr;
            f();
        }
    }
}

}  // namespace strata::nvmf
