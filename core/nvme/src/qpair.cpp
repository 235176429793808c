// I/O (and admin) queue pairs: the data path of the driver.
#include <algorithm>
#include <cstring>

#include <strata/base/assert.h>
#include <strata/env/memory.h>
#include <strata/runtime/scheduler.h>

#include "internal.h"
#include "tcp.h"

namespace strata::nvme {

namespace {

constexpr uint64_t kBadCompletionLogLimit = 16;

uint32_t cqe_dword3(const spec::Cqe* cqe) noexcept {
    // Dword 3 (status + phase) is written last by the device; acquire pairs with its release.
    return __atomic_load_n(reinterpret_cast<const uint32_t*>(cqe) + 3, __ATOMIC_ACQUIRE);
}

}  // namespace

QPairImpl::QPairImpl(ControllerImpl& c, runtime::Thread& o, uint16_t id, uint32_t n_entries,
                     uint32_t n_requests, uint32_t max_cpl, uint64_t timeout_us)
    : ctrl(c),
      owner(o),
      qid(id),
      entries(n_entries),
      max_completions(max_cpl == 0 ? n_entries - 1 : max_cpl),
      timeout_ns(timeout_us * 1000),
      requests_(n_requests) {}

QPairImpl::~QPairImpl() {
    STRATA_ASSERT_MSG(poller_ == nullptr && timeout_poller_ == nullptr,
                      "qpair destroyed with its pollers registered");
    env::dma_free(sq);
    env::dma_free(cq);
    env::dma_free(slots);
}

Status QPairImpl::allocate() {
    if (tcp) return tcp_allocate();
    auto sq_mem = env::dma_alloc(size_t{entries} * spec::sqe_size_bytes, kPageBytes, true);
    auto cq_mem = env::dma_alloc(size_t{entries} * spec::cqe_size_bytes, kPageBytes, true);
    auto slot_mem = env::dma_alloc(requests_.size() * size_t{kListSlotBytes}, kPageBytes, false);
    if (sq_mem) sq = static_cast<spec::Sqe*>(*sq_mem);
    if (cq_mem) cq = static_cast<spec::Cqe*>(*cq_mem);
    if (slot_mem) slots = static_cast<uint8_t*>(*slot_mem);
    if (!sq || !cq || !slots) return Status(Errc::no_memory, "nvme qpair memory");
    sq_iova = env::iova_of(sq);
    cq_iova = env::iova_of(cq);
    for (size_t i = 0; i < requests_.size(); ++i) {
        Request& r = requests_[i];
        r.cid = static_cast<uint16_t>(i);
        r.list = reinterpret_cast<uint64_t*>(slots + i * kListSlotBytes);
        r.list_iova = env::iova_of(r.list);
        free_.push_back(r);
    }
    return {};
}

void QPairImpl::start_pollers(bool own_poller) {
    if (own_poller) poller_ = owner.register_poller(&QPairImpl::poll, this, "nvme_qpair");
    if (timeout_ns != 0) {
        const uint64_t period = std::clamp<uint64_t>(timeout_ns / 4, 10'000, 10'000'000);
        timeout_poller_ =
            owner.register_poller(&QPairImpl::poll_timeouts, this, "nvme_timeouts", period);
    }
}

void QPairImpl::stop_pollers() {
    if (poller_) owner.unregister_poller(poller_);
    if (timeout_poller_) owner.unregister_poller(timeout_poller_);
}

// ---- submission ---------------------------------------------------------------------------

Request* QPairImpl::take_request() noexcept { return free_.pop_front(); }

Status QPairImpl::build_data(Request& r, const iovec* iov, int iovcnt, size_t len) noexcept {
    // No data: DPTR stays as the caller built it (Create I/O SQ/CQ carry the queue base there).
    if (len == 0) return {};
    // Left uninitialised on purpose: IovaSegment's member initialisers would zero 1 KiB per
    // I/O (a third of the driver's per-I/O instructions); translate() fills what it reports.
    union SegmentStorage {
        SegmentStorage() noexcept {}
        env::IovaSegment segs[kMaxIovaSegments];
    } storage;
    env::IovaSegment* const segs = storage.segs;
    size_t nseg = 0;
    size_t remaining = len;
    for (int i = 0; i < iovcnt && remaining > 0; ++i) {
        const size_t take = std::min(remaining, iov[i].iov_len);
        if (take == 0) continue;
        size_t got = 0;
        Status s = env::translate(iov[i].iov_base, take,
                                  std::span<env::IovaSegment>(segs + nseg, kMaxIovaSegments - nseg),
                                  &got, xlate_);
        if (!s.ok()) {
            return Status(Errc::invalid_argument,
                          s.code() == Errc::no_space ? "buffer has too many segments"
                                                     : "buffer is not DMA memory");
        }
        // Merge IOVA-adjacent pieces across iovecs.
        for (size_t k = 0; k < got; ++k) {
            env::IovaSegment seg = segs[nseg + k];
            if (nseg > 0 && segs[nseg - 1].iova + segs[nseg - 1].len == seg.iova) {
                segs[nseg - 1].len += seg.len;
            } else {
                segs[nseg] = seg;
                ++nseg;
            }
        }
        remaining -= take;
    }
    if (remaining != 0) return Status(Errc::invalid_argument, "iovecs shorter than the transfer");

    bool prp_ok = (segs[0].iova & 0x3) == 0;
    for (size_t i = 0; i < nseg && prp_ok; ++i) {
        if (i > 0 && spec::prp_page_offset(segs[i].iova, kPageBytes) != 0) prp_ok = false;
        if (i + 1 < nseg && spec::prp_page_offset(segs[i].iova + segs[i].len, kPageBytes) != 0)
            prp_ok = false;
    }
    if (prp_ok) {
        uint32_t n = 0;  // entries written to the list (those after PRP1)
        uint64_t first = segs[0].iova;
        bool have_first = false;
        uint64_t second = 0;
        for (size_t i = 0; i < nseg; ++i) {
            uint64_t addr = segs[i].iova;
            const uint64_t end = segs[i].iova + segs[i].len;
            while (addr < end) {
                if (!have_first) {
                    have_first = true;
                } else {
                    if (n == kMaxPrpEntries)
                        return Status(Errc::invalid_argument, "transfer exceeds the PRP list");
                    if (n == 0) second = addr;
                    r.list[n++] = addr;
                }
                addr = (addr & ~uint64_t{kPageBytes - 1}) + kPageBytes;
            }
        }
        r.sqe.set_psdt(spec::Psdt::prp);
        r.sqe.prp1 = first;
        r.sqe.prp2 = n == 0 ? 0 : n == 1 ? second : r.list_iova;
        return {};
    }
    if (!sgl) {
        return Status(Errc::invalid_argument,
                      "buffer cannot be described by PRPs and the controller has no SGL support");
    }
    r.sqe.set_psdt(spec::Psdt::sgl_mptr_contig);
    if (nseg == 1) {
        r.sqe.set_dptr_sgl(
            spec::SglDescriptor::data_block(segs[0].iova, static_cast<uint32_t>(segs[0].len)));
        return {};
    }
    if (nseg > kMaxSglDescriptors) return Status(Errc::invalid_argument, "too many SGL segments");
    auto* desc = reinterpret_cast<spec::SglDescriptor*>(r.list);
    for (size_t i = 0; i < nseg; ++i)
        desc[i] = spec::SglDescriptor::data_block(segs[i].iova, static_cast<uint32_t>(segs[i].len));
    r.sqe.set_dptr_sgl(spec::SglDescriptor::segment(
        r.list_iova, static_cast<uint32_t>(nseg * sizeof(spec::SglDescriptor)), true));
    return {};
}

Status QPairImpl::submit(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len,
                         IoDoneFn done, void* ctx, bool no_timeout) noexcept {
    if (inject_ != nullptr) [[unlikely]] {  // the one error-injection test on this path
        Status held;
        if (hold_injected(sqe, done, ctx, held)) return held;
    }
    return submit_plain(sqe, iov, iovcnt, len, done, ctx, no_timeout);
}

Status QPairImpl::submit_plain(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len,
                               IoDoneFn done, void* ctx, bool no_timeout) noexcept {
    // The one transport test on the PCIe submission path (see docs/design/nvme-tcp.md).
    if (tcp) [[unlikely]] return tcp_submit(sqe, iov, iovcnt, len, done, ctx, no_timeout);
    if (link == Link::failed || link == Link::freeing)
        return Status(Errc::device_removed, "nvme controller failed or removed");
    Request* r = take_request();
    if (r == nullptr) return Status(Errc::busy, "nvme request pool empty");
    r->sqe = sqe;
    r->sqe.cid = r->cid;
    Status s = build_data(*r, iov, iovcnt, len);
    if (!s.ok()) {
        free_.push_front(*r);
        return s;
    }
    r->done = done;
    r->ctx = ctx;
    r->no_timeout = no_timeout;
    r->abort_sent = false;
    r->timed_out = false;
    enqueue(*r);
    return {};
}

Status QPairImpl::submit_with_list(const spec::Sqe& sqe, const void* list, size_t list_bytes,
                                   IoDoneFn done, void* ctx) noexcept {
    if (list_bytes == 0 || list_bytes > kListSlotBytes)
        return Status(Errc::invalid_argument, "list too large");
    if (inject_ != nullptr) [[unlikely]] {
        Status held;
        if (hold_injected(sqe, done, ctx, held)) return held;
    }
    if (tcp) [[unlikely]] {
        // The list travels as the command's data: copy it into the request's slot first.
        Request* slot = free_.empty() ? nullptr : &free_.front();
        if (slot == nullptr) return Status(Errc::busy, "nvme request pool empty");
        std::memcpy(slot->list, list, list_bytes);
        iovec v{slot->list, list_bytes};
        return tcp_submit(sqe, &v, 1, list_bytes, done, ctx, false);  // takes that same request
    }
    if (link == Link::failed || link == Link::freeing)
        return Status(Errc::device_removed, "nvme controller failed or removed");
    Request* r = take_request();
    if (r == nullptr) return Status(Errc::busy, "nvme request pool empty");
    std::memcpy(r->list, list, list_bytes);
    r->sqe = sqe;
    r->sqe.cid = r->cid;
    r->sqe.set_psdt(spec::Psdt::prp);
    r->sqe.prp1 = r->list_iova;  // page aligned, so one PRP entry covers it
    r->sqe.prp2 = 0;
    r->done = done;
    r->ctx = ctx;
    r->no_timeout = false;
    r->abort_sent = false;
    r->timed_out = false;
    enqueue(*r);
    return {};
}

void QPairImpl::enqueue(Request& r) noexcept {
    ++stats.submitted;
    // FIFO: once anything waits, later commands wait behind it.
    if (!waiting_.empty() || !try_send(r)) {
        r.state = Request::State::waiting;
        waiting_.push_back(r);
    }
}

bool QPairImpl::try_send(Request& r) noexcept {
    if (link != Link::connected) return false;
    const uint32_t next = sq_tail_ + 1 == entries ? 0 : sq_tail_ + 1;
    if (next == sq_head_) {
        ++stats.waited_for_room;
        return false;
    }
    std::memcpy(&sq[sq_tail_], &r.sqe, sizeof(spec::Sqe));
    sq_tail_ = next;
    ++unrung_;
    r.state = Request::State::outstanding;
    // The poll's time (a cached load on a reactor, virtual time under the simulator): no clock
    // read per command when timeouts are on.
    r.submit_ns = timeout_ns != 0 ? runtime::poll_now_ns() : 0;
    outstanding_.push_back(r);
    return true;
}

void QPairImpl::send_waiting() noexcept {
    if (tcp) [[unlikely]] {
        tcp_send_waiting();
        return;
    }
    while (!waiting_.empty()) {
        Request& r = waiting_.front();
        waiting_.remove(r);
        if (!try_send(r)) {
            waiting_.push_front(r);
            break;
        }
    }
}

void QPairImpl::ring_sq_doorbell() noexcept {
    if (tcp) [[unlikely]] {
        tcp_flush();
        return;
    }
    if (unrung_ == 0 || link != Link::connected) return;
    unrung_ = 0;
    ++stats.doorbells;
    // The SQ entries must be visible before the device sees the new tail.
    std::atomic_thread_fence(std::memory_order_release);
    bar.write32(sq_doorbell, sq_tail_);
}

// ---- completion ---------------------------------------------------------------------------

void QPairImpl::complete(Request& r, const Completion& cpl) noexcept {
    if (inject_ != nullptr) [[unlikely]] {
        if (ErrorInjection* e = find_injection(r.sqe.opc, false)) {
            --e->count;
            Completion injected = cpl;
            injected.status = spec::StatusField::make(e->sct, e->sc);
            finish(r, injected);
            return;
        }
    }
    finish(r, cpl);
}

void QPairImpl::finish(Request& r, const Completion& cpl) noexcept {
    IoDoneFn done = r.done;
    void* ctx = r.ctx;
    r.state = Request::State::free;
    r.done = nullptr;
    free_.push_front(r);  // free before the callback: it may submit again
    ++stats.completed;
    if (!cpl.ok()) ++stats.errors;
    if (done) done(ctx, cpl);
}

// Entries from `from` forward to `to` on a ring of `entries` (both below it).
uint32_t QPairImpl::ring_distance(uint32_t to, uint32_t from) const noexcept {
    return to >= from ? to - from : to + entries - from;
}

uint32_t QPairImpl::reap(uint32_t max) noexcept {
    if (link != Link::connected) return 0;
    if (max == 0) max = max_completions;
    uint32_t reaped = 0;
    bool consumed = false;
    while (reaped < max) {
        spec::Cqe* slot = &cq[cq_head_];
        const uint32_t dw3 = cqe_dword3(slot);
        if (((dw3 >> 16) & 1u) != phase_) break;
        spec::Cqe cqe;
        std::memcpy(&cqe, slot, sizeof(cqe));
        cqe.status = static_cast<uint16_t>(dw3 >> 16);
        cqe.cid = static_cast<uint16_t>(dw3);
        if (++cq_head_ == entries) {
            cq_head_ = 0;
            phase_ ^= 1;
        }
        consumed = true;

        // Validate before trusting anything: SQ id, SQ head within [head, tail], live cid.
        // Ring distances by a compare, not `% entries` (two divisions per completion).
        const char* bad = nullptr;
        if (cqe.sqid != qid) bad = "wrong SQ id";
        else if (cqe.sqhd >= entries ||
                 ring_distance(cqe.sqhd, sq_head_) > ring_distance(sq_tail_, sq_head_))
            bad = "impossible SQ head";
        else if (cqe.cid >= requests_.size() ||
                 (requests_[cqe.cid].state != Request::State::outstanding &&
                  requests_[cqe.cid].state != Request::State::zombie))
            bad = "unknown or idle command id";
        if (bad != nullptr) {
            ++stats.bad_completions;
            ++ctrl.stats.bad_completions;
            if (bad_logged_++ < kBadCompletionLogLimit) {
                STRATA_ERRLOG(log_nvme,
                              "{} qpair {}: rejected completion ({}): cid {} sqid {} sqhd {} status {:#x}",
                              ctrl.label(), qid, bad, cqe.cid, cqe.sqid, cqe.sqhd,
                              cqe.status);
            }
            continue;
        }
        sq_head_ = cqe.sqhd;
        Request& r = requests_[cqe.cid];
        outstanding_.remove(r);
        ++reaped;
        if (r.state == Request::State::zombie) {  // already completed by a timeout
            r.state = Request::State::free;
            free_.push_front(r);
            continue;
        }
        Completion cpl;
        cpl.status = spec::StatusField{static_cast<uint16_t>(cqe.status & ~1u)};
        cpl.dw0 = cqe.dw0;
        cpl.dw1 = cqe.dw1;
        complete(r, cpl);
        if (link != Link::connected) return reaped;  // a callback reset or freed us
    }
    if (consumed) bar.write32(cq_doorbell, cq_head_);
    return reaped;
}

uint32_t QPairImpl::process(uint32_t max) noexcept {
    uint32_t released = 0;
    if (inject_ != nullptr) [[unlikely]]
        released = release_held(false, {});
    if (tcp) [[unlikely]]
        return tcp_process(max) + released;
    ring_sq_doorbell();
    const uint32_t n = reap(max) + released;
    if (n != 0 && !waiting_.empty()) send_waiting();
    // What the completion callbacks submitted goes out now, in one doorbell for the batch, not
    // one poll later (at queue depth 1 that was a whole reactor round per I/O).
    if (n != 0) ring_sq_doorbell();
    return n;
}

runtime::PollStatus QPairImpl::poll(void* ctx) {
    auto* q = static_cast<QPairImpl*>(ctx);
    if (q->tcp) [[unlikely]] {
        const uint64_t bytes = q->tcp->bytes_in + q->tcp->bytes_out;
        const uint32_t n = q->process(0);
        return n != 0 || q->tcp->bytes_in + q->tcp->bytes_out != bytes ? runtime::PollStatus::busy
                                                                        : runtime::PollStatus::idle;
    }
    return q->process(0) != 0 ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

// ---- failure paths (control path: messages from the admin Thread) -------------------------

void QPairImpl::fail_list(IntrusiveList<Request>& list, spec::StatusField status) noexcept {
    while (Request* r = list.pop_front()) {
        if (r->state == Request::State::zombie) {
            r->state = Request::State::free;
            free_.push_front(*r);
            continue;
        }
        Completion cpl;
        cpl.status = r->timed_out ? kStatusTimedOut : status;
        complete(*r, cpl);
    }
}

void QPairImpl::disconnect(spec::StatusField status) {
    const Link before = link;
    if (link == Link::connected || link == Link::connecting) link = Link::disconnected;
    // Callbacks may submit again: those wait for the reconnect (or fail if we are failing).
    IntrusiveList<Request> out;
    out.splice_back(outstanding_);
    fail_list(out, status);
    sq_tail_ = sq_head_ = cq_head_ = 0;
    phase_ = 1;
    unrung_ = 0;
    reset_requested = false;
    if (cq) std::memset(static_cast<void*>(cq), 0, size_t{entries} * spec::cqe_size_bytes);
    (void)before;
}

void QPairImpl::mark_connected() {
    if (link == Link::failed || link == Link::freeing) return;
    if (link == Link::disconnected) ++stats.reconnects;
    link = Link::connected;
    send_waiting();
    ring_sq_doorbell();
}

void QPairImpl::fail(spec::StatusField status) {
    if (link == Link::freeing) return;
    link = Link::failed;
    if (inject_ != nullptr) release_held(true, status);
    if (tcp) {
        if (tcp->socket) {
            tcp->socket->close();
            tcp->socket.reset();
        }
        tcp->phase = TcpConn::Phase::closed;
        while (SendPdu* p = tcp->send_list.pop_front()) p->queued = false;
        tcp->reset_stream();
        if (auto cb = std::move(tcp->on_connected)) {
            tcp->on_connected = nullptr;
            cb(Status(Errc::device_removed, "nvme-tcp: qpair failed"));
        }
    }
    IntrusiveList<Request> out;
    out.splice_back(outstanding_);
    fail_list(out, status);
    IntrusiveList<Request> wait;
    wait.splice_back(waiting_);
    fail_list(wait, status);
}

// ---- error injection (control path, and the data path only while one is armed) ----------

void QPairImpl::add_injection(const ErrorInjection& e) {
    if (inject_ == nullptr) inject_ = std::make_unique<Injections>();
    for (ErrorInjection& x : inject_->list) {
        if (x.opc == e.opc) {
            x = e;
            return;
        }
    }
    inject_->list.push_back(e);
}

void QPairImpl::remove_injection(uint8_t opc) {
    if (inject_ == nullptr) return;
    std::erase_if(inject_->list, [opc](const ErrorInjection& x) { return x.opc == opc; });
    drop_injections_if_idle();
}

void QPairImpl::drop_injections_if_idle() noexcept {
    if (inject_ != nullptr && inject_->list.empty() && inject_->held.empty()) inject_.reset();
}

ErrorInjection* QPairImpl::find_injection(uint8_t opc, bool do_not_submit) noexcept {
    for (ErrorInjection& x : inject_->list)
        if (x.opc == opc && x.count != 0 && x.do_not_submit == do_not_submit) return &x;
    return nullptr;
}

bool QPairImpl::hold_injected(const spec::Sqe& sqe, IoDoneFn done, void* ctx,
                              Status& out) noexcept {
    ErrorInjection* e = find_injection(sqe.opc, true);
    if (e == nullptr) return false;
    if (link == Link::failed || link == Link::freeing) {
        out = Status(Errc::device_removed, "nvme controller failed or removed");
        return true;
    }
    Request* r = take_request();
    if (r == nullptr) {
        out = Status(Errc::busy, "nvme request pool empty");
        return true;
    }
    --e->count;
    r->sqe = sqe;
    r->sqe.cid = r->cid;
    r->done = done;
    r->ctx = ctx;
    r->no_timeout = true;
    r->abort_sent = false;
    r->timed_out = false;
    r->held_status = spec::StatusField::make(e->sct, e->sc);
    r->submit_ns = runtime::now_ns() + e->timeout_us * 1000;
    r->state = Request::State::waiting;
    ++stats.submitted;
    inject_->held.push_back(*r);
    out = {};
    return true;
}

uint32_t QPairImpl::release_held(bool all, spec::StatusField status) noexcept {
    if (inject_->held.empty()) return 0;
    const uint64_t now = runtime::now_ns();
    IntrusiveList<Request> keep, due;
    while (Request* r = inject_->held.pop_front()) {
        if (all || r->submit_ns <= now)
            due.push_back(*r);
        else
            keep.push_back(*r);
    }
    inject_->held.splice_back(keep);
    uint32_t n = 0;
    while (Request* r = due.pop_front()) {  // callbacks may submit (and be held) again
        Completion cpl;
        cpl.status = all ? status : r->held_status;
        finish(*r, cpl);
        ++n;
    }
    drop_injections_if_idle();
    return n;
}

// ---- timeouts -----------------------------------------------------------------------------

void QPairImpl::check_timeouts() noexcept {
    if (link != Link::connected || timeout_ns == 0) return;
    const uint64_t now = runtime::now_ns();
    for (Request& r : outstanding_) {
        if (r.submit_ns + timeout_ns > now) break;  // in submission order: the rest are younger
        if (r.no_timeout || r.state != Request::State::outstanding) continue;
        if (!r.timed_out) {
            r.timed_out = true;
            ++stats.timeouts;
            ++ctrl.stats.timeouts;
            STRATA_WARNLOG(log_nvme, "{} qpair {}: command cid {} opc {:#x} timed out",
                           ctrl.label(), qid, r.cid, r.sqe.opc);
        }
        const bool admin_queue = qid == 0;
        if (!admin_queue && !r.abort_sent) {
            r.abort_sent = true;
            r.submit_ns = now;  // one more timeout for the abort to work
            ControllerImpl* c = &ctrl;
            const uint16_t q = qid, cid = r.cid;
            (void)ctrl.admin_thread->post([c, q, cid] { c->abort_command(q, cid); });
            continue;
        }
        if (admin_queue && ctrl.state == ControllerState::initializing) {
            // No reset during attach: the command ends now and its slot waits for the teardown.
            Completion cpl;
            cpl.status = kStatusTimedOut;
            IoDoneFn done = r.done;
            void* ctx = r.ctx;
            r.state = Request::State::zombie;
            r.done = nullptr;
            if (done) done(ctx, cpl);
            return;  // the list changed under us
        }
        if (!reset_requested) {
            reset_requested = true;
            ControllerImpl* c = &ctrl;
            (void)ctrl.admin_thread->post([c] { c->request_reset("command timeout"); });
        }
        return;
    }
}

runtime::PollStatus QPairImpl::poll_timeouts(void* ctx) {
    static_cast<QPairImpl*>(ctx)->check_timeouts();
    return runtime::PollStatus::idle;
}

// ---- public QPair -------------------------------------------------------------------------

void QPair::add_error_injection(const ErrorInjection& e) {
    impl_->add_injection(e);
}
void QPair::remove_error_injection(uint8_t opc) {
    impl_->remove_injection(opc);
}

QPair::QPair(std::shared_ptr<QPairImpl> impl) : impl_(std::move(impl)) {}
QPair::~QPair() = default;

uint16_t QPair::id() const noexcept { return impl_->qid; }
runtime::Thread& QPair::owner() const noexcept { return impl_->owner; }
bool QPair::connected() const noexcept { return impl_->link == Link::connected; }
Errc QPair::submit_state() const noexcept {
    if (impl_->link == Link::failed || impl_->link == Link::freeing) return Errc::device_removed;
    if (impl_->tcp && impl_->tcp->fast_fail) return Errc::io_error;
    return Errc::ok;
}
uint32_t QPair::queue_entries() const noexcept { return impl_->entries; }
uint32_t QPair::outstanding() const noexcept {
    return static_cast<uint32_t>(impl_->stats.submitted - impl_->stats.completed);
}
const QPairStats& QPair::stats() const noexcept { return impl_->stats; }

namespace {

Status check_blocks(const Namespace& ns, uint32_t blocks) noexcept {
    if (!ns.active) return Status(Errc::not_found, "namespace is not active");
    if (blocks == 0 || blocks > ns.max_io_blocks)
        return Status(Errc::invalid_argument, "block count is 0 or above the max transfer");
    return {};
}

}  // namespace

Status QPair::read(const Namespace& ns, void* buf, uint64_t lba, uint32_t blocks, IoDoneFn done,
                   void* ctx, uint32_t flags) noexcept {
    iovec iov{buf, size_t{blocks} * ns.block_size_bytes};
    return readv(ns, &iov, 1, lba, blocks, done, ctx, flags);
}

Status QPair::write(const Namespace& ns, const void* buf, uint64_t lba, uint32_t blocks,
                    IoDoneFn done, void* ctx, uint32_t flags) noexcept {
    iovec iov{const_cast<void*>(buf), size_t{blocks} * ns.block_size_bytes};
    return writev(ns, &iov, 1, lba, blocks, done, ctx, flags);
}

Status QPair::readv(const Namespace& ns, const iovec* iov, int iovcnt, uint64_t lba,
                    uint32_t blocks, IoDoneFn done, void* ctx, uint32_t flags) noexcept {
    STRATA_TRY(check_blocks(ns, blocks));
    const spec::Sqe sqe = spec::make_rw(spec::NvmOpcode::read, 0, ns.id, lba, blocks,
                                        (flags & kIoFua) != 0);
    return impl_->submit(sqe, iov, iovcnt, size_t{blocks} * ns.block_size_bytes, done, ctx);
}

Status QPair::writev(const Namespace& ns, const iovec* iov, int iovcnt, uint64_t lba,
                     uint32_t blocks, IoDoneFn done, void* ctx, uint32_t flags) noexcept {
    STRATA_TRY(check_blocks(ns, blocks));
    const spec::Sqe sqe = spec::make_write(0, ns.id, lba, blocks, (flags & kIoFua) != 0);
    return impl_->submit(sqe, iov, iovcnt, size_t{blocks} * ns.block_size_bytes, done, ctx);
}

Status QPair::compare(const Namespace& ns, const void* buf, uint64_t lba, uint32_t blocks,
                      IoDoneFn done, void* ctx) noexcept {
    STRATA_TRY(check_blocks(ns, blocks));
    iovec iov{const_cast<void*>(buf), size_t{blocks} * ns.block_size_bytes};
    const spec::Sqe sqe = spec::make_rw(spec::NvmOpcode::compare, 0, ns.id, lba, blocks);
    return impl_->submit(sqe, &iov, 1, iov.iov_len, done, ctx);
}

Status QPair::flush(const Namespace& ns, IoDoneFn done, void* ctx) noexcept {
    if (!ns.active) return Status(Errc::not_found, "namespace is not active");
    return impl_->submit(spec::make_flush(0, ns.id), nullptr, 0, 0, done, ctx);
}

Status QPair::write_zeroes(const Namespace& ns, uint64_t lba, uint32_t blocks, IoDoneFn done,
                           void* ctx, uint32_t flags) noexcept {
    if (!ns.active) return Status(Errc::not_found, "namespace is not active");
    if (blocks == 0 || blocks > 65536) return Status(Errc::invalid_argument, "block count");
    const spec::Sqe sqe =
        spec::make_write_zeroes(0, ns.id, lba, blocks, (flags & kIoDeallocate) != 0);
    return impl_->submit(sqe, nullptr, 0, 0, done, ctx);
}

Status QPair::deallocate(const Namespace& ns, std::span<const spec::DsmRange> ranges,
                         IoDoneFn done, void* ctx) noexcept {
    if (!ns.active) return Status(Errc::not_found, "namespace is not active");
    if (ranges.empty() || ranges.size() > spec::dsm_max_ranges)
        return Status(Errc::invalid_argument, "1..256 DSM ranges");
    const spec::Sqe sqe = spec::make_dsm(0, ns.id, static_cast<uint32_t>(ranges.size()), true);
    return impl_->submit_with_list(sqe, ranges.data(), ranges.size_bytes(), done, ctx);
}

Status QPair::raw(const spec::Sqe& sqe, void* buf, size_t len, IoDoneFn done, void* ctx) noexcept {
    iovec iov{buf, len};
    return impl_->submit(sqe, &iov, 1, buf ? len : 0, done, ctx);
}

void QPair::flush_submissions() noexcept { impl_->ring_sq_doorbell(); }

uint32_t QPair::process_completions(uint32_t max) noexcept {
    return impl_->process(max);
}

}  // namespace strata::nvme
