// The bdev data path: per-Thread channels, bdev_io lifecycle, splitting, bounce buffers,
// emulation of write zeroes / compare / compare-and-write, QoS, timeouts and statistics.
#include <algorithm>
#include <bit>
#include <cstring>

#include <strata/base/assert.h>
#include <strata/base/crc.h>
#include <strata/runtime/scheduler.h>

#include "internal.h"

namespace strata::bdev {

namespace {

// BdevIo::state_ values.
enum : uint8_t {
    kPlain = 0,
    kSplitParent = 1,
    kZeroesParent = 2,        // write zeroes emulated with writes of the zero buffer
    kEmulatedCompare = 3,     // read into a bounce buffer, compared on completion
    kCompareAndWriteParent = 4,
    kCompareAndWritePhase2 = 5,
    kCompareAndWriteLocking = 6,  // emulated compare-and-write waiting for its range lock
};

bool is_write_type(IoType t) noexcept {
    return t == IoType::write || t == IoType::write_zeroes || t == IoType::unmap ||
           t == IoType::compare_and_write || t == IoType::flush;
}

// The types an LBA range lock holds back (bdev.h lock_lba_range).
bool is_locked_type(IoType t) noexcept {
    return t == IoType::write || t == IoType::write_zeroes || t == IoType::unmap ||
           t == IoType::compare_and_write;
}

bool has_range(IoType t) noexcept {
    return t != IoType::reset && t != IoType::abort;
}

bool has_data(IoType t) noexcept {
    return t == IoType::read || t == IoType::write || t == IoType::compare ||
           t == IoType::compare_and_write;
}

size_t copy_iovs(const iovec* iov, int cnt, size_t skip, void* dst, size_t len, bool to_iov) noexcept {
    auto* p = static_cast<uint8_t*>(dst);
    size_t done = 0;
    for (int i = 0; i < cnt && done < len; ++i) {
        size_t l = iov[i].iov_len;
        auto* base = static_cast<uint8_t*>(iov[i].iov_base);
        if (skip >= l) {
            skip -= l;
            continue;
        }
        base += skip;
        l -= skip;
        skip = 0;
        const size_t n = std::min(l, len - done);
        if (to_iov) std::memcpy(base, p + done, n);
        else std::memcpy(p + done, base, n);
        done += n;
    }
    return done;
}

bool iovs_equal(const iovec* iov, int cnt, const void* buf, size_t len) noexcept {
    const auto* p = static_cast<const uint8_t*>(buf);
    size_t off = 0;
    for (int i = 0; i < cnt && off < len; ++i) {
        const size_t n = std::min(iov[i].iov_len, len - off);
        if (std::memcmp(iov[i].iov_base, p + off, n) != 0) return false;
        off += n;
    }
    return true;
}

// Slices [skip, skip + len) of iov into out (at most kMaxIoVecs). Returns the bytes covered.
size_t slice_iovs(const iovec* iov, int cnt, size_t skip, size_t len, iovec* out, int* out_cnt,
                  int max_out) noexcept {
    int n = 0;
    size_t covered = 0;
    for (int i = 0; i < cnt && covered < len; ++i) {
        size_t l = iov[i].iov_len;
        auto* base = static_cast<uint8_t*>(iov[i].iov_base);
        if (skip >= l) {
            skip -= l;
            continue;
        }
        base += skip;
        l -= skip;
        skip = 0;
        if (n == max_out) break;
        const size_t take = std::min(l, len - covered);
        out[n++] = iovec{base, take};
        covered += take;
    }
    *out_cnt = n;
    return covered;
}

Errc nvme_errc(uint16_t sct, uint16_t sc) noexcept {
    if (sct == 0 && sc == 0) return Errc::ok;
    if (sct == 0 && sc == 0x80) return Errc::out_of_range;
    if (sct == 0 && (sc == 0x01 || sc == 0x02 || sc == 0x0B)) return Errc::invalid_argument;
    if (sct == 0 && (sc == 0x07 || sc == 0x08)) return Errc::aborted;
    if (sct == 2 && sc == 0x85) return Errc::corrupt;
    return Errc::io_error;
}

}  // namespace

// ---- LBA range locks: the home Thread's side ----------------------------------------------
// A lock goes to the bdev's lock_home Thread, which keeps granted ranges disjoint (an overlapping
// request waits there in arrival order), announces the range to every channel with
// for_each_channel, and grants once each channel that had overlapping writes in flight has
// reported them done. done runs on the owner's Thread. Only messages; no shared mutable state.
namespace {

bool lock_is_owner(const RangeLock& l, const Channel* ch, const BdevIo* io, void* io_ctx) noexcept {
    return l.owner_ch == ch && (l.owner == io_ctx || l.owner == io);
}

void lock_home_request(void* p);

void lock_owner_notify(void* p) {
    auto* l = static_cast<RangeLock*>(p);
    const RangeLockFn fn = l->done;
    void* ctx = l->ctx;
    const Status status = l->status;
    if (l->finished) delete l;
    fn(ctx, status);
}

void lock_maybe_grant(RangeLock* l) {
    if (!l->announced || l->granted || l->cleared != l->waiting) return;
    l->granted = true;
    l->status = {};
    runtime::deliver(*l->owner_thread, &lock_owner_notify, l);
}

void lock_home_cleared(void* p) {  // a channel's overlapping writes have all completed
    auto* l = static_cast<RangeLock*>(p);
    ++l->cleared;
    lock_maybe_grant(l);
}

void lock_home_request(void* p) {
    auto* l = static_cast<RangeLock*>(p);
    BdevImpl& bi = l->bdev->impl();
    if (bi.removing) {
        l->status = Status(Errc::shutdown, "bdev is being removed");
        l->finished = true;
        runtime::deliver(*l->owner_thread, &lock_owner_notify, l);
        return;
    }
    for (RangeLock* g : bi.locks_granted) {
        if (g->overlaps(l->offset, l->len)) {
            bi.locks_waiting.push_back(l);
            return;
        }
    }
    bi.locks_granted.push_back(l);
    runtime::for_each_channel(
        *l->bdev,
        [](runtime::IoChannel& c, void* ctx) {
            static_cast<Channel&>(c).lock_announce(*static_cast<RangeLock*>(ctx));
        },
        l,
        [](void* ctx) {
            auto* lk = static_cast<RangeLock*>(ctx);
            lk->announced = true;
            lock_maybe_grant(lk);
        });
}

void lock_home_unlock(void* p) {
    auto* l = static_cast<RangeLock*>(p);
    BdevImpl& bi = l->bdev->impl();
    std::erase(bi.locks_granted, l);
    runtime::for_each_channel(
        *l->bdev,
        [](runtime::IoChannel& c, void* ctx) {
            static_cast<Channel&>(c).lock_withdraw(*static_cast<RangeLock*>(ctx));
        },
        l,
        [](void* ctx) {
            auto* lk = static_cast<RangeLock*>(ctx);
            BdevImpl& b = lk->bdev->impl();
            lk->status = {};
            lk->finished = true;
            runtime::deliver(*lk->owner_thread, &lock_owner_notify, lk);
            // Requests that waited on it, in their order (still overlapping ones wait again).
            std::vector<RangeLock*> retry;
            retry.swap(b.locks_waiting);
            for (RangeLock* w : retry) lock_home_request(w);
        });
}

// An unlock request: finds the caller's granted lock on the home Thread.
void lock_home_find_unlock(void* p) {
    auto* req = static_cast<RangeLock*>(p);
    BdevImpl& bi = req->bdev->impl();
    for (RangeLock* g : bi.locks_granted) {
        if (g->granted && g->owner_ch == req->owner_ch && g->owner == req->owner &&
            g->offset == req->offset && g->len == req->len) {
            g->done = req->done;
            g->ctx = req->ctx;
            g->owner_thread = req->owner_thread;
            delete req;
            lock_home_unlock(g);
            return;
        }
    }
    req->status = Status(Errc::not_found, "no such LBA range lock held");
    req->finished = true;
    runtime::deliver(*req->owner_thread, &lock_owner_notify, req);
}

void lock_request(RangeLock* l) { runtime::deliver(*l->bdev->impl().lock_home, &lock_home_request, l); }
void unlock_request(RangeLock* l) { runtime::deliver(*l->bdev->impl().lock_home, &lock_home_unlock, l); }

}  // namespace

// ---- LBA range locks: the channels' side ---------------------------------------------------

bool Channel::lock_blocks(const BdevIo& io) const noexcept {
    if (!is_locked_type(io.type_)) return false;  // reads, flush, reset, abort pass
    for (const HeldRange& h : locks_)
        if (h.lock->overlaps(io.offset_blocks_, io.num_blocks_) && !lock_is_owner(*h.lock, this, &io, io.ctx_))
            return true;
    return false;
}

bool Channel::lock_in_flight(const RangeLock& l, const BdevIo* except) noexcept {
    for (BdevIo& io : outstanding_) {
        // Parked writes and compare-and-writes still waiting for their own lock have not
        // touched the blocks (and waiting for the latter could deadlock).
        if (&io == except || io.lock_parked_ || io.state_ == kCompareAndWriteLocking) continue;
        if (is_locked_type(io.type_) && l.overlaps(io.offset_blocks_, io.num_blocks_) &&
            !lock_is_owner(l, this, &io, io.ctx_))
            return true;
    }
    return false;
}

void Channel::lock_announce(RangeLock& l) noexcept {
    const bool busy = lock_in_flight(l, nullptr);
    locks_.push_back(HeldRange{&l, busy});
    if (busy) ++l.waiting;  // for_each_channel visits one channel after another
}

void Channel::lock_io_done(BdevIo& io) noexcept {
    if (!is_locked_type(io.type_)) return;
    for (HeldRange& h : locks_) {
        if (h.pending && h.lock->overlaps(io.offset_blocks_, io.num_blocks_) &&
            !lock_in_flight(*h.lock, &io)) {
            h.pending = false;
            runtime::deliver(*bdev.impl().lock_home, &lock_home_cleared, h.lock);
        }
    }
}

void Channel::lock_withdraw(RangeLock& l) noexcept {
    std::erase_if(locks_, [&](const HeldRange& h) { return h.lock == &l; });
    // Send the parked writes again in their order; those another lock still covers park again.
    IntrusiveList<BdevIo, QueuedTag> parked;
    while (!locked_.empty()) {
        BdevIo& io = locked_.front();
        locked_.remove(io);
        parked.push_back(io);
    }
    while (!parked.empty()) {
        BdevIo& io = parked.front();
        parked.remove(io);
        io.lock_parked_ = false;
        io.in_submit_ = true;  // completions one message later, not inside this visit
        start(io);
        io.in_submit_ = false;
    }
}

void Channel::cw_granted(void* ctx, Status status) {
    auto& io = *static_cast<BdevIo*>(ctx);
    Channel& ch = *io.ch_;
    if (!status.ok()) {
        io.range_lock_ = nullptr;  // freed by lock_owner_notify
        io.status_ = IoStatus{status.code(), 0};
        ch.finish(io);
        return;
    }
    io.state_ = kCompareAndWriteParent;
    ch.issue_children(io);
}

void Channel::cw_unlock(BdevIo& parent) noexcept {
    auto* l = static_cast<RangeLock*>(parent.range_lock_);
    if (l == nullptr) {
        finish(parent);
        return;
    }
    l->done = &Channel::cw_unlocked;
    unlock_request(l);
}

void Channel::cw_unlocked(void* ctx, Status) {
    auto& io = *static_cast<BdevIo*>(ctx);
    io.range_lock_ = nullptr;
    io.ch_->finish(io);
}

// ---- BdevIo -------------------------------------------------------------------------------

uint64_t BdevIo::length_bytes() const noexcept { return num_blocks_ * bdev_->block_size(); }
runtime::Thread& BdevIo::thread() const noexcept { return ch_->thread(); }

void BdevIo::complete(Errc code) noexcept { complete(IoStatus{code, 0}); }

void BdevIo::complete_nvme(uint16_t sct, uint16_t sc) noexcept {
    complete(IoStatus{nvme_errc(sct, sc), static_cast<uint16_t>((sct << 8) | sc)});
}

void BdevIo::complete(const IoStatus& status) noexcept {
    status_ = status;
    if (in_submit_) {
        // Never run the caller's callback inside its own submit: one message later.
        ch_->finish_later(*this);
        return;
    }
    ch_->finish(*this);
}

// ---- management channel -------------------------------------------------------------------

MgmtChannel::MgmtChannel() {
    auto z = env::dma_alloc(kBounceBytes, 4096, true);
    zeroes = z ? *z : nullptr;
}

MgmtChannel::~MgmtChannel() { env::dma_free(zeroes); }

void MgmtChannel::release(BdevIo& io) noexcept {
    io.done_ = nullptr;
    io.parent_ = nullptr;
    io.bounce_ = nullptr;
    pool.put(&io);
    while (wait_head != nullptr && pool.available() != 0) {
        IoWaitEntry* e = wait_head;
        wait_head = e->next;
        if (wait_head == nullptr) wait_tail = nullptr;
        if (wait_prio_tail == e) wait_prio_tail = nullptr;
        e->next = nullptr;
        e->fn(e->ctx);
    }
}

void queue_io_wait(Channel& ch, IoWaitEntry& entry) noexcept {
    MgmtChannel* m = ch.mgmt;
    entry.next = nullptr;
    if (m->wait_tail) m->wait_tail->next = &entry;
    else m->wait_head = &entry;
    m->wait_tail = &entry;
}

void queue_io_wait_front(Channel& ch, IoWaitEntry& entry) noexcept {
    MgmtChannel* m = ch.mgmt;
    IoWaitEntry*& link = m->wait_prio_tail != nullptr ? m->wait_prio_tail->next : m->wait_head;
    entry.next = link;
    link = &entry;
    if (entry.next == nullptr) m->wait_tail = &entry;
    m->wait_prio_tail = &entry;
}

// ---- channel ------------------------------------------------------------------------------

Channel::Channel(Bdev& b, MgmtChannel* m, runtime::IoChannel* module)
    : bdev(b), mgmt(m), module_ch(module) {
    const auto& p = b.properties();
    may_bounce_ = p.required_alignment > 1 || p.needs_dma_memory;
    may_split_ = p.max_io_blocks != 0 || p.optimal_io_boundary != 0 || p.max_unmap_blocks != 0 ||
                 p.max_num_segments != 0 || may_bounce_;
    runtime::Thread* t = runtime::current_thread();  // created on its own Thread
    traced_ = t != nullptr && t->scheduler().event_trace() != nullptr;
}

Channel::~Channel() {
    if (!outstanding_.empty())
        STRATA_ERRLOG(log_bdev, "bdev {}: channel destroyed with {} I/O outstanding", bdev.name(),
                      outstanding_.size());
    if (qos_poller_) thread().unregister_poller(qos_poller_);
    if (timeout_poller_) thread().unregister_poller(timeout_poller_);
    {
        std::lock_guard lock(bdev.impl().mu);
        bdev.impl().gone_stats.add(stats);
    }
    runtime::put_io_channel(module_ch);
    runtime::put_io_channel(mgmt);
}

Status Channel::submit(DescImpl& d, IoType type, const iovec* iov, int iovcnt, const iovec* cmp,
                       int cmp_iovcnt, uint64_t offset_blocks, uint64_t num_blocks, IoDoneFn done,
                       void* ctx, void* victim) noexcept {
    BdevImpl& bi = bdev.impl();
    // iovcnt -1: a single buffer whose iovec lives on the caller's stack; copied in below.
    const bool single = iovcnt == -1;
    if (single) iovcnt = 1;
    if (bi.removing) return Status(Errc::shutdown, "bdev is being removed");
    if (is_write_type(type) && !d.write) return Status(Errc::permission_denied, "desc is read-only");
    if (has_range(type)) {
        if (num_blocks == 0 || offset_blocks >= bdev.num_blocks() ||
            num_blocks > bdev.num_blocks() - offset_blocks)
            return Status(Errc::invalid_argument, "I/O range beyond the bdev");
    }
    if (has_data(type)) {
        if (iovcnt <= 0 || iov == nullptr) return Status(Errc::invalid_argument, "no buffer");
        size_t total = 0;
        for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
        if (total < num_blocks * bdev.block_size())
            return Status(Errc::invalid_argument, "buffers shorter than the I/O");
    }
    if (type == IoType::unmap && !bdev.supports(IoType::unmap))
        return Status(Errc::not_supported, "bdev does not support unmap");
    BdevIo* io = mgmt->pool.get();
    if (io == nullptr) {
        ++stats.queued_nomem;
        return Status(Errc::busy, "bdev_io pool empty");
    }
    io->type_ = type;
    io->state_ = kPlain;
    io->in_submit_ = false;
    io->offset_blocks_ = offset_blocks;
    io->num_blocks_ = num_blocks;
    if (single) {
        io->inline_compare_iovs_[0] = *iov;
        iov = io->inline_compare_iovs_;
    }
    io->iovs_ = iov;
    io->iovcnt_ = iovcnt;
    io->compare_iovs_ = cmp;
    io->compare_iovcnt_ = cmp_iovcnt;
    io->victim_ctx_ = victim;
    io->bdev_ = &bdev;
    io->ch_ = this;
    io->desc_ = &d;
    io->done_ = done;
    io->ctx_ = ctx;
    io->status_ = {};
    io->parent_ = nullptr;
    io->next_child_offset_ = offset_blocks;
    io->children_outstanding_ = 0;
    io->bounce_ = nullptr;
    io->timed_out_reported_ = false;
    io->start_ns_ = runtime::poll_now_ns();  // the poll's time: no clock read per I/O
    outstanding_.push_back(*io);

    // QoS and timeouts: one predictable branch per I/O while both are off (QoS never set on
    // this bdev and no timeout on the desc).
    if ((bi.qos_generation.load(std::memory_order_relaxed) | d.timeout_ns |
         static_cast<uint64_t>(qos_on_)) != 0) [[unlikely]]
        features_on(bi, d);
    io->in_submit_ = true;  // whatever completes from here on is delivered one message later
    start(*io);
    io->in_submit_ = false;
    return {};
}

void Channel::features_on(BdevImpl& bi, const DescImpl& d) noexcept {
    ++feature_path_;
    if (bi.qos_generation.load(std::memory_order_relaxed) != 0 || qos_on_) {
        const bool want = bi.qos_ios.load(std::memory_order_relaxed) != 0 ||
                          bi.qos_rw_bytes.load(std::memory_order_relaxed) != 0 ||
                          bi.qos_r_bytes.load(std::memory_order_relaxed) != 0 ||
                          bi.qos_w_bytes.load(std::memory_order_relaxed) != 0;
        if (want && qos_poller_ == nullptr) {
            qos_poller_ = thread().register_poller(&Channel::qos_poll, this, "bdev_qos", 1'000'000);
            tokens_ios_ = tokens_rw_ = tokens_r_ = tokens_w_ = 0;
        }
        qos_on_ = want;
    }
    if (d.timeout_ns != 0 && timeout_poller_ == nullptr)
        timeout_poller_ =
            thread().register_poller(&Channel::timeout_poll, this, "bdev_timeouts", 10'000'000);
}

uint64_t feature_path_count(const Channel& ch) noexcept {
    return ch.feature_path_;
}

void Channel::start(BdevIo& io) noexcept {
    if (!locks_.empty()) [[unlikely]] {
        if (lock_blocks(io)) {
            io.lock_parked_ = true;
            locked_.push_back(io);
            return;
        }
    }
    if (qos_on_ && (io.type_ == IoType::read || io.type_ == IoType::write) &&
        (!queued_.empty() || !qos_admit(io))) {
        ++stats.qos_queued;
        queued_.push_back(io);  // the outstanding hook is separate: see below
        return;
    }
    dispatch(io);
}

uint64_t max_blocks_for(const Bdev& b, IoType t, bool bounced) noexcept {
    const auto& p = b.properties();
    uint64_t max = UINT64_MAX;
    if (t == IoType::unmap) {
        if (p.max_unmap_blocks) max = p.max_unmap_blocks;
        return max;
    }
    if (t == IoType::write_zeroes) return max;
    if (p.max_io_blocks) max = p.max_io_blocks;
    if (bounced) max = std::min<uint64_t>(max, kBounceBytes / p.block_size);
    return max;
}

bool Channel::needs_bounce(const BdevIo& io) const noexcept {
    if (!may_bounce_ || !has_data(io.type_)) return false;
    const auto& p = bdev.properties();
    const size_t align = p.required_alignment;
    for (int i = 0; i < io.iovcnt_; ++i) {
        const auto base = reinterpret_cast<uintptr_t>(io.iovs_[i].iov_base);
        // Lengths too: O_DIRECT (aio, uring) refuses a segment that ends mid-alignment.
        if (align > 1 && ((base | io.iovs_[i].iov_len) & (align - 1)) != 0) return true;
        if (p.needs_dma_memory && !env::is_dma_memory(io.iovs_[i].iov_base, io.iovs_[i].iov_len, dma_cache_))
            return true;
    }
    return false;
}

bool Channel::needs_split(const BdevIo& io) const noexcept {
    // Emulated compare bounces through a buffer of kBounceBytes, so it may need splitting too.
    if (!may_split_ && io.type_ != IoType::compare) return false;
    const auto& p = bdev.properties();
    const bool emulated_compare = io.type_ == IoType::compare && !bdev.supports(IoType::compare);
    const bool bounced = emulated_compare || needs_bounce(io);
    if (io.num_blocks_ > max_blocks_for(bdev, io.type_, bounced)) return true;
    if (p.optimal_io_boundary != 0 && (io.type_ == IoType::read || io.type_ == IoType::write)) {
        const uint64_t b = p.optimal_io_boundary;
        if (io.offset_blocks_ / b != (io.offset_blocks_ + io.num_blocks_ - 1) / b) return true;
    }
    if (p.max_num_segments != 0 && io.iovcnt_ > int(p.max_num_segments) &&
        (io.type_ == IoType::read || io.type_ == IoType::write))
        return true;
    return io.iovcnt_ > kMaxIoVecs && bounced;
}

void Channel::dispatch(BdevIo& io) noexcept {
    switch (io.type_) {
        case IoType::abort:
            do_abort(io);
            return;
        case IoType::reset:
        case IoType::flush:
            if (!bdev.supports(io.type_)) {
                io.complete(Errc::ok);  // nothing to reset / no volatile cache to flush
                return;
            }
            submit_to_module(io);
            return;
        case IoType::write_zeroes:
            if (!bdev.supports(IoType::write_zeroes)) {
                if (mgmt->zeroes == nullptr) {
                    io.complete(Errc::no_memory);
                    return;
                }
                io.state_ = kZeroesParent;
                issue_children(io);
                return;
            }
            break;
        case IoType::compare_and_write:
            if (!bdev.supports(IoType::compare_and_write)) {
                // Compare, then write, under an LBA range lock on the blocks.
                if (bdev.impl().lock_home == nullptr) {
                    io.complete(Errc::not_supported);  // registered outside a Thread
                    return;
                }
                auto* l = new (std::nothrow) RangeLock;
                if (l == nullptr) {
                    io.complete(Errc::no_memory);
                    return;
                }
                l->bdev = &bdev;
                l->offset = io.offset_blocks_;
                l->len = io.num_blocks_;
                l->owner_ch = this;
                l->owner = &io;
                l->owner_thread = &thread();
                l->done = &Channel::cw_granted;
                l->ctx = &io;
                io.range_lock_ = l;
                io.state_ = kCompareAndWriteLocking;
                lock_request(l);
                return;
            }
            break;
        default:
            break;
    }
    // may_split_ / may_bounce_ inline: a bdev that never splits or bounces pays two
    // predictable branches here, not two calls.
    if ((may_split_ || io.type_ == IoType::compare) && needs_split(io)) {
        io.state_ = kSplitParent;
        ++stats.split;
        issue_children(io);
        return;
    }
    const bool emulated_compare = io.type_ == IoType::compare && !bdev.supports(IoType::compare);
    if (emulated_compare || (may_bounce_ && needs_bounce(io))) {
        void* b = mgmt->bounce.get();
        if (b == nullptr) {
            io.complete(Errc::no_memory);
            return;
        }
        ++stats.bounced;
        const size_t len = io.length_bytes();
        io.bounce_ = b;
        io.orig_iovs_ = io.iovs_;
        io.orig_iovcnt_ = io.iovcnt_;
        if (io.type_ == IoType::write) copy_iovs(io.iovs_, io.iovcnt_, 0, b, len, false);
        io.bounce_iov_ = iovec{b, len};
        io.iovs_ = &io.bounce_iov_;
        io.iovcnt_ = 1;
        if (emulated_compare) {
            io.state_ = kEmulatedCompare;
            io.type_ = IoType::read;
        }
    }
    submit_to_module(io);
}

void Channel::submit_to_module(BdevIo& io) noexcept {
    io.in_submit_ = true;
    bdev.submit(*module_ch, io);
    io.in_submit_ = false;
}

void Channel::issue_children(BdevIo& parent) noexcept {
    const uint32_t bs = bdev.block_size();
    const uint64_t end = parent.offset_blocks_ + parent.num_blocks_;
    if (parent.state_ == kCompareAndWriteParent || parent.state_ == kCompareAndWritePhase2) {
        BdevIo* child = mgmt->pool.get();
        if (child == nullptr) {
            parent.status_ = IoStatus{Errc::busy, 0};
            cw_unlock(parent);
            return;
        }
        const bool compare_phase = parent.state_ == kCompareAndWriteParent;
        *child = BdevIo{};
        child->type_ = compare_phase ? IoType::compare : IoType::write;
        child->iovs_ = compare_phase ? parent.compare_iovs_ : parent.iovs_;
        child->iovcnt_ = compare_phase ? parent.compare_iovcnt_ : parent.iovcnt_;
        child->offset_blocks_ = parent.offset_blocks_;
        child->num_blocks_ = parent.num_blocks_;
        child->bdev_ = &bdev;
        child->ch_ = this;
        child->desc_ = parent.desc_;
        child->parent_ = &parent;
        child->start_ns_ = parent.start_ns_;
        parent.children_outstanding_ = 1;
        parent.next_child_offset_ = end;
        dispatch(*child);
        return;
    }
    const bool zeroes = parent.state_ == kZeroesParent;
    const IoType child_type = zeroes ? IoType::write : parent.type_;
    const bool emulated_compare = child_type == IoType::compare && !bdev.supports(IoType::compare);
    while (parent.next_child_offset_ < end && parent.children_outstanding_ < kMaxChildrenInFlight &&
           parent.status_.ok()) {
        BdevIo* child = mgmt->pool.get();
        if (child == nullptr) {
            if (parent.children_outstanding_ == 0) parent.status_ = IoStatus{Errc::busy, 0};
            break;
        }
        const uint64_t off = parent.next_child_offset_;
        uint64_t n = end - off;
        // Limits: module max, bounce size (for bounced or emulated children), boundary.
        n = std::min(n, max_blocks_for(bdev, child_type, emulated_compare || zeroes));
        if (zeroes) n = std::min<uint64_t>(n, kBounceBytes / bs);
        const uint64_t boundary = bdev.properties().optimal_io_boundary;
        if (boundary != 0 && (child_type == IoType::read || child_type == IoType::write))
            n = std::min(n, boundary - off % boundary);
        // A child that will be bounced must fit the bounce buffer.
        if (parent.state_ == kSplitParent && has_data(child_type))
            n = std::min(n, std::max<uint64_t>(1, max_blocks_for(bdev, child_type, false)));
        BdevIo& c = *child;
        c = BdevIo{};
        c.type_ = child_type;
        c.bdev_ = &bdev;
        c.ch_ = this;
        c.desc_ = parent.desc_;
        c.parent_ = &parent;
        c.start_ns_ = parent.start_ns_;
        c.offset_blocks_ = off;
        if (zeroes) {
            c.inline_iovs_[0] = iovec{mgmt->zeroes, static_cast<size_t>(n) * bs};
            c.iovs_ = c.inline_iovs_;
            c.iovcnt_ = 1;
        } else if (has_data(child_type)) {
            int cnt = 0;
            const uint32_t segs = bdev.properties().max_num_segments;
            const int max_out = segs != 0 ? std::min<int>(int(segs), kMaxIoVecs) : kMaxIoVecs;
            const size_t covered =
                slice_iovs(parent.iovs_, parent.iovcnt_, (off - parent.offset_blocks_) * bs,
                           static_cast<size_t>(n) * bs, c.inline_iovs_, &cnt, max_out);
            if (covered < static_cast<size_t>(n) * bs) {
                n = covered / bs;
                if (n == 0) {
                    mgmt->release(c);
                    parent.status_ = IoStatus{Errc::invalid_argument, 0};
                    break;
                }
                slice_iovs(parent.iovs_, parent.iovcnt_, (off - parent.offset_blocks_) * bs,
                           static_cast<size_t>(n) * bs, c.inline_iovs_, &cnt, max_out);
            }
            c.iovs_ = c.inline_iovs_;
            c.iovcnt_ = cnt;
        }
        c.num_blocks_ = n;
        parent.next_child_offset_ = off + n;
        ++parent.children_outstanding_;
        dispatch(c);
    }
    if (parent.children_outstanding_ == 0) finish(parent);
}

void Channel::child_done(BdevIo& child) noexcept {
    BdevIo& parent = *child.parent_;
    if (!child.status_.ok() && parent.status_.ok()) parent.status_ = child.status_;
    --parent.children_outstanding_;
    mgmt->release(child);
    if (parent.state_ == kCompareAndWriteParent) {
        if (parent.status_.ok()) {
            parent.state_ = kCompareAndWritePhase2;
            issue_children(parent);
        } else {
            cw_unlock(parent);
        }
        return;
    }
    if (parent.state_ == kCompareAndWritePhase2) {
        cw_unlock(parent);
        return;
    }
    const uint64_t end = parent.offset_blocks_ + parent.num_blocks_;
    if (parent.next_child_offset_ < end && parent.status_.ok()) {
        issue_children(parent);
        return;
    }
    if (parent.children_outstanding_ == 0) finish(parent);
}

void Channel::finish(BdevIo& io) noexcept {
    if (io.bounce_ != nullptr) {
        const size_t len = io.length_bytes();
        if (io.state_ == kEmulatedCompare) {
            io.type_ = IoType::compare;
            if (io.status_.ok() && !iovs_equal(io.orig_iovs_, io.orig_iovcnt_, io.bounce_, len))
                io.status_ = IoStatus{Errc::corrupt, 0};
        } else if (io.type_ == IoType::read && io.status_.ok()) {
            copy_iovs(io.orig_iovs_, io.orig_iovcnt_, 0, io.bounce_, len, true);
        }
        mgmt->bounce.put(io.bounce_);
        io.bounce_ = nullptr;
        io.iovs_ = io.orig_iovs_;
        io.iovcnt_ = io.orig_iovcnt_;
    }
    if (io.parent_ != nullptr) {
        child_done(io);
        return;
    }
    if (io.in_submit_) {  // completed inside the caller's submit: never call back from there
        finish_later(io);
        return;
    }
    if (!locks_.empty()) [[unlikely]] lock_io_done(io);
    account(io);
    if (traced_) [[unlikely]] trace(io);
    outstanding_.remove(io);
    IoDoneFn done = io.done_;
    void* ctx = io.ctx_;
    const IoStatus status = io.status_;
    mgmt->release(io);
    if (done) done(ctx, status);
}

void Channel::finish_later(BdevIo& io) noexcept {
    const bool first = deferred_head_ == nullptr;
    io.done_next_ = nullptr;
    *deferred_tail_ = &io;
    deferred_tail_ = &io.done_next_;
    if (first) runtime::deliver(thread(), &Channel::drain_deferred, this);
}

void Channel::drain_deferred(void* p) {
    auto* ch = static_cast<Channel*>(p);
    // Take the batch: what completes while it runs (resubmissions from the callbacks) forms the
    // next batch and message, so a closed loop of submits cannot starve the Thread.
    BdevIo* io = ch->deferred_head_;
    ch->deferred_head_ = nullptr;
    ch->deferred_tail_ = &ch->deferred_head_;
    while (io != nullptr) {
        BdevIo* next = io->done_next_;
        io->done_next_ = nullptr;
        ch->finish(*io);
        io = next;
    }
}

void Channel::trace(const BdevIo& io) noexcept {
    // What the caller got back: type, range, status and, for a read, a checksum of its data
    // (a changed byte on the device changes the simulator's event hash).
    uint64_t sum = 0;
    if (io.type_ == IoType::read && io.status_.ok()) sum = crc32c(0, io.iovs());
    const uint64_t status =
        (static_cast<uint64_t>(io.status_.code) << 16) | io.status_.nvme_status;
    runtime::trace_event(runtime::TraceKind::bdev_io,
                         (static_cast<uint64_t>(io.type_) << 56) | status, io.offset_blocks_,
                         io.num_blocks_ ^ (sum << 32));
}

void Channel::do_abort(BdevIo& io) noexcept {
    uint32_t aborted = 0;
    for (auto it = queued_.begin(); it != queued_.end();) {  // QoS queue
        BdevIo& victim = *it;
        ++it;
        if (victim.ctx_ == io.victim_ctx_) {
            queued_.remove(victim);
            victim.status_ = IoStatus{Errc::aborted, 0};
            finish(victim);
            ++aborted;
        }
    }
    if (bdev.supports(IoType::abort)) {
        submit_to_module(io);  // the module looks for victims it holds
        return;
    }
    io.complete(aborted != 0 ? Errc::ok : Errc::not_found);
}

bool Channel::qos_admit(const BdevIo& io) noexcept {
    BdevImpl& bi = bdev.impl();
    const int64_t bytes = static_cast<int64_t>(io.length_bytes());
    const bool is_read = io.type_ == IoType::read;
    if (bi.qos_ios.load(std::memory_order_relaxed) && tokens_ios_ <= 0) return false;
    if (bi.qos_rw_bytes.load(std::memory_order_relaxed) && tokens_rw_ <= 0) return false;
    if (is_read && bi.qos_r_bytes.load(std::memory_order_relaxed) && tokens_r_ <= 0) return false;
    if (!is_read && bi.qos_w_bytes.load(std::memory_order_relaxed) && tokens_w_ <= 0) return false;
    // Tokens are kept in thousandths so that limits below 1000/s still accrue every tick.
    tokens_ios_ -= 1000;
    tokens_rw_ -= bytes * 1000;
    if (is_read) tokens_r_ -= bytes * 1000;
    else tokens_w_ -= bytes * 1000;
    return true;
}

runtime::PollStatus Channel::qos_poll(void* p) {
    auto* ch = static_cast<Channel*>(p);
    BdevImpl& bi = ch->bdev.impl();
    const uint64_t share = std::max<uint32_t>(1, ch->bdev.channel_count());
    auto refill = [share](int64_t& tokens, uint64_t per_sec) {
        if (per_sec == 0) {
            tokens = 0;
            return;
        }
        const auto add = static_cast<int64_t>(per_sec / share);  // per ms, in thousandths
        tokens = std::min(tokens + add, add);                      // no saving up beyond a slice
    };
    refill(ch->tokens_ios_, bi.qos_ios.load());
    refill(ch->tokens_rw_, bi.qos_rw_bytes.load());
    refill(ch->tokens_r_, bi.qos_r_bytes.load());
    refill(ch->tokens_w_, bi.qos_w_bytes.load());
    bool did = false;
    while (!ch->queued_.empty()) {
        BdevIo& io = ch->queued_.front();
        if (ch->qos_on_ && !ch->qos_admit(io)) break;
        ch->queued_.remove(io);
        ch->dispatch(io);
        did = true;
    }
    const bool on = bi.qos_ios.load() || bi.qos_rw_bytes.load() || bi.qos_r_bytes.load() ||
                    bi.qos_w_bytes.load();
    if (!on && ch->queued_.empty()) {
        ch->qos_on_ = false;
        ch->thread().unregister_poller(ch->qos_poller_);
    }
    return did ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

runtime::PollStatus Channel::timeout_poll(void* p) {
    auto* ch = static_cast<Channel*>(p);
    const uint64_t now = runtime::now_ns();
    for (BdevIo& io : ch->outstanding_) {
        DescImpl* d = io.desc_;
        if (io.timed_out_reported_ || d->timeout_ns == 0 || d->timeout_fn == nullptr) continue;
        if (now - io.start_ns_ < d->timeout_ns) continue;
        io.timed_out_reported_ = true;
        ++ch->stats.timed_out;
        d->timeout_fn(d->timeout_ctx, io.type_, io.offset_blocks_);
    }
    return runtime::PollStatus::idle;
}

void Channel::account(const BdevIo& io) noexcept {
    const uint64_t now = runtime::poll_now_ns();
    const uint64_t lat = now > io.start_ns_ ? now - io.start_ns_ : 0;
    const uint64_t bytes = io.length_bytes();
    IoStats& s = stats;
    if (!io.status_.ok()) ++s.io_errors;
    switch (io.type_) {
        case IoType::read:
            ++s.num_read_ops;
            s.bytes_read += bytes;
            s.read_latency_ticks += lat;
            s.max_read_latency_ticks = std::max(s.max_read_latency_ticks, lat);
            s.min_read_latency_ticks = std::min(s.min_read_latency_ticks, lat);
            break;
        case IoType::write:
            ++s.num_write_ops;
            s.bytes_written += bytes;
            s.write_latency_ticks += lat;
            s.max_write_latency_ticks = std::max(s.max_write_latency_ticks, lat);
            s.min_write_latency_ticks = std::min(s.min_write_latency_ticks, lat);
            break;
        case IoType::unmap:
            ++s.num_unmap_ops;
            s.bytes_unmapped += bytes;
            break;
        case IoType::write_zeroes: ++s.num_write_zeroes_ops; break;
        case IoType::flush: ++s.num_flush_ops; break;
        case IoType::reset: ++s.num_reset_ops; break;
        case IoType::compare: ++s.num_compare_ops; break;
        case IoType::compare_and_write: ++s.num_compare_and_write_ops; break;
        case IoType::abort: ++s.num_abort_ops; break;
        case IoType::count_: break;
    }
    const size_t bucket = lat == 0 ? 0 : std::min<size_t>(63 - std::countl_zero(lat), 39);
    ++s.latency_histogram[bucket];
    const uint8_t h = bdev.impl().histogram_type.load(std::memory_order_relaxed);
    if (h == BdevImpl::kHistogramAll || h == static_cast<uint8_t>(io.type_))
        ++s.enabled_histogram[bucket];
}

// ---- public submission functions ----------------------------------------------------------

// read and write go to Channel::submit directly (not through readv / writev): one call less
// per I/O.
Status read(Desc& d, Channel& ch, void* buf, uint64_t off, uint64_t n, IoDoneFn done, void* ctx) noexcept {
    const iovec iov{buf, static_cast<size_t>(n) * d.bdev().block_size()};
    return ch.submit(d.impl(), IoType::read, &iov, -1, nullptr, 0, off, n, done, ctx);
}

Status readv(Desc& d, Channel& ch, const iovec* iov, int iovcnt, uint64_t off, uint64_t n,
             IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::read, iov, iovcnt, nullptr, 0, off, n, done, ctx);
}

Status write(Desc& d, Channel& ch, const void* buf, uint64_t off, uint64_t n, IoDoneFn done,
             void* ctx) noexcept {
    const iovec iov{const_cast<void*>(buf), static_cast<size_t>(n) * d.bdev().block_size()};
    return ch.submit(d.impl(), IoType::write, &iov, -1, nullptr, 0, off, n, done, ctx);
}

Status writev(Desc& d, Channel& ch, const iovec* iov, int iovcnt, uint64_t off, uint64_t n,
              IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::write, iov, iovcnt, nullptr, 0, off, n, done, ctx);
}

Status write_zeroes(Desc& d, Channel& ch, uint64_t off, uint64_t n, IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::write_zeroes, nullptr, 0, nullptr, 0, off, n, done, ctx);
}

Status unmap(Desc& d, Channel& ch, uint64_t off, uint64_t n, IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::unmap, nullptr, 0, nullptr, 0, off, n, done, ctx);
}

Status flush(Desc& d, Channel& ch, uint64_t off, uint64_t n, IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::flush, nullptr, 0, nullptr, 0, off, n, done, ctx);
}

Status comparev(Desc& d, Channel& ch, const iovec* iov, int iovcnt, uint64_t off, uint64_t n,
                IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::compare, iov, iovcnt, nullptr, 0, off, n, done, ctx);
}

Status compare_and_writev(Desc& d, Channel& ch, const iovec* cmp, int cmp_cnt, const iovec* wr,
                          int wr_cnt, uint64_t off, uint64_t n, IoDoneFn done, void* ctx) noexcept {
    if (cmp == nullptr || cmp_cnt <= 0) return Status(Errc::invalid_argument, "no compare buffer");
    return ch.submit(d.impl(), IoType::compare_and_write, wr, wr_cnt, cmp, cmp_cnt, off, n, done, ctx);
}

namespace {

RangeLock* new_range_lock(Bdev& b, Channel& ch, uint64_t off, uint64_t n, RangeLockFn done, void* ctx) {
    auto* l = new RangeLock;
    l->bdev = &b;
    l->offset = off;
    l->len = n;
    l->owner_ch = &ch;
    l->owner = ctx;
    l->owner_thread = &ch.thread();
    l->done = done;
    l->ctx = ctx;
    return l;
}

}  // namespace

Status lock_lba_range(Desc& d, Channel& ch, uint64_t off, uint64_t n, RangeLockFn done, void* ctx) {
    Bdev& b = d.bdev();
    if (b.impl().removing) return Status(Errc::shutdown, "bdev is being removed");
    if (b.impl().lock_home == nullptr) return Status(Errc::not_supported, "bdev registered outside a Thread");
    if (n == 0 || off >= b.num_blocks() || n > b.num_blocks() - off)
        return Status(Errc::invalid_argument, "range beyond the bdev");
    lock_request(new_range_lock(b, ch, off, n, done, ctx));
    return {};
}

Status unlock_lba_range(Desc& d, Channel& ch, uint64_t off, uint64_t n, RangeLockFn done, void* ctx) {
    Bdev& b = d.bdev();
    if (b.impl().lock_home == nullptr) return Status(Errc::not_supported, "bdev registered outside a Thread");
    runtime::deliver(*b.impl().lock_home, &lock_home_find_unlock, new_range_lock(b, ch, off, n, done, ctx));
    return {};
}

Status reset(Desc& d, Channel& ch, IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::reset, nullptr, 0, nullptr, 0, 0, 0, done, ctx);
}

Status abort(Desc& d, Channel& ch, void* victim_ctx, IoDoneFn done, void* ctx) noexcept {
    return ch.submit(d.impl(), IoType::abort, nullptr, 0, nullptr, 0, 0, 0, done, ctx, victim_ctx);
}

}  // namespace strata::bdev
