// Data path: per-Thread channels with a fixed request pool; I/O walks its range a cluster at a
// time, mapping each piece to the blob's cluster, an ancestor's (reads of a clone), zeroes, or a
// first-write allocation on the md Thread.
#include <algorithm>
#include <cstring>

#include <strata/bdev/module.h>

#include "internal.h"

namespace strata::blob {

namespace {

Status submit_request(Channel& ch, Blob& blob, Request::Op op, const iovec* iov, int iovcnt,
                      const void* buf, uint64_t offset, uint64_t num, IoDoneFn done,
                      void* ctx) noexcept;

void finish(Request* r, Status st) noexcept {
    BlobImpl* b = r->blob;
    Channel* ch = r->ch;
    IoDoneFn done = r->done;
    void* ctx = r->ctx;
    b->inflight.fetch_sub(1, std::memory_order_seq_cst);
    ch->free.push_front(*r);  // before the callback, which may submit again
    done(ctx, st);
}

void start(Request* r) noexcept {
    BlobImpl* b = r->blob;
    // Pairs with freeze(): either the freezer sees this I/O in flight, or this I/O sees the
    // freeze and parks until unfreeze.
    b->inflight.fetch_add(1, std::memory_order_seq_cst);
    if (b->frozen.load(std::memory_order_seq_cst) != 0) {
        b->inflight.fetch_sub(1, std::memory_order_seq_cst);
        r->ch->parked.push_back(*r);
        return;
    }
    if (r->op != Request::Op::flush && r->end > b->clusters_atomic() * b->bs.units_per_cluster) {
        finish(r, Status(Errc::invalid_argument, "I/O beyond the blob (resized meanwhile)"));
        return;
    }
    if (r->op != Request::Op::read && r->op != Request::Op::flush &&
        b->read_only_.load(std::memory_order_acquire)) {
        finish(r, Status(Errc::permission_denied, "blob is read-only"));
        return;
    }
    if (r->op != Request::Op::read && b->bs.stopped.load(std::memory_order_acquire)) {  // rule 8
        finish(r, Status(Errc::io_error, "blobstore stopped: its bdev lost its write cache"));
        return;
    }
    process(r);
}

void start_msg(void* p) { start(static_cast<Request*>(p)); }

void bdev_done(void* ctx, const bdev::IoStatus& s) {
    auto* r = static_cast<Request*>(ctx);
    if (!s.ok()) {
        finish(r, Status(s.code, "bdev I/O failed"));
        return;
    }
    // Rule 8: the flush succeeded, but after a loss of the bdev's cache that proves nothing.
    if (r->op == Request::Op::flush && r->blob->bs.check_cache_loss()) {
        finish(r, Status(Errc::io_error, "blobstore stopped: its bdev lost its write cache"));
        return;
    }
    r->pos = r->seg_end;
    process(r);
}

void retry_msg(void* ctx) { process(static_cast<Request*>(ctx)); }


// The request's iovecs covering bytes [off, off + len) of its range, into child_iov.
int slice(Request* r, uint64_t off, uint64_t len) noexcept {
    int n = 0;
    for (int i = 0; i < r->iovcnt && len > 0; ++i) {
        const iovec& v = r->iov[i];
        if (off >= v.iov_len) {
            off -= v.iov_len;
            continue;
        }
        const uint64_t take = std::min<uint64_t>(v.iov_len - off, len);
        r->child_iov[n++] = {static_cast<uint8_t*>(v.iov_base) + off, take};
        len -= take;
        off = 0;
    }
    return n;
}

}  // namespace

void resubmit_parked(Request* r) noexcept { start(r); }

void release_done_msg(void* p) noexcept {
    auto* r = static_cast<Request*>(p);
    // The request left the in-flight count while the md Thread froze the blob; finish() gives
    // back what it takes.
    r->blob->inflight.fetch_add(1, std::memory_order_seq_cst);
    finish(r, r->alloc_status);
}

void alloc_done_msg(void* p) noexcept {
    auto* r = static_cast<Request*>(p);
    if (!r->alloc_status.ok()) {
        finish(r, r->alloc_status);
        return;
    }
    process(r);
}

const BlobImpl* BlobImpl::chain_top() const noexcept {
    const BlobImpl* top = this;
    while (top->parent != nullptr) top = top->parent;
    return top;
}

const BlobImpl* BlobImpl::chain_top_covering(uint64_t i) const noexcept {
    const BlobImpl* top = this;
    for (; top->parent != nullptr; top = top->parent)
        if (i >= top->parent->clusters_atomic()) return nullptr;
    return top;
}

const BlobImpl* BlobImpl::esnap_for(uint64_t i) const noexcept {
    const BlobImpl* top = chain_top_covering(i);
    if (top == nullptr || !top->esnap || i * bs.units_per_cluster >= top->esnap_units) return nullptr;
    return top;
}

bool BlobImpl::backed(uint64_t i) const noexcept {
    if (backing_ancestor(i) != nullptr) return true;
    return esnap_missing_for(i) || esnap_for(i) != nullptr;
}

bool BlobImpl::esnap_missing_for(uint64_t i) const noexcept {
    const BlobImpl* top = chain_top_covering(i);
    return top != nullptr && top->esnap_missing.load(std::memory_order_acquire);
}

bool BlobImpl::degraded() const noexcept {
    return chain_top()->esnap_missing.load(std::memory_order_acquire);
}

bdev::Channel* Channel::esnap_channel(bdev::Desc& d) noexcept {
    for (auto& [desc, ch] : esnap_chs)
        if (desc == &d) return ch;
    bdev::Channel* ch = d.get_channel();
    if (ch != nullptr) esnap_chs.emplace_back(&d, ch);
    return ch;
}

const BlobImpl* BlobImpl::backing_ancestor(uint64_t i) const noexcept {
    for (const BlobImpl* a = parent; a != nullptr; a = a->parent) {
        // A clone may be larger than its parent: beyond the parent's size it reads zeroes.
        if (i >= a->clusters_atomic()) return nullptr;
        if (a->cluster(i) != format::kUnallocated) return a;
    }
    return nullptr;
}

void process(Request* r) noexcept {
    BlobImpl* b = r->blob;
    StoreImpl& s = b->bs;
    const uint64_t upc = s.units_per_cluster;
    const uint64_t unit = s.g.io_unit_size;
    bdev::Desc& desc = *s.desc;
    if (r->op == Request::Op::flush) {
        if (r->pos == r->end) {
            finish(r, {});
            return;
        }
        r->seg_end = r->end;
        if (!s.has_flush) {  // no volatile cache: completed writes are durable
            finish(r, {});
            return;
        }
        Status st = bdev::flush(desc, *r->ch->bch, 0, s.bdev_bytes / unit, bdev_done, r);
        if (st.code() == Errc::busy) {
            r->wait = {retry_msg, r, nullptr};
            bdev::queue_io_wait(*r->ch->bch, r->wait);
        } else if (!st.ok()) {
            finish(r, st);
        }
        return;
    }
    while (r->pos < r->end) {
        const uint64_t ci = r->pos / upc;
        const uint64_t seg_end = std::min(r->end, (ci + 1) * upc);
        uint32_t k = b->cluster(ci);
        if (k == format::kUnallocated) {
            const BlobImpl* a = b->backing_ancestor(ci);
            switch (r->op) {
            case Request::Op::read: {
                if (a != nullptr) {
                    k = a->cluster(ci);
                    break;
                }
                // One walk up the chain for both: the external snapshot at its top, if any.
                const BlobImpl* root = b->chain_top_covering(ci);
                if (root != nullptr && root->esnap_missing.load(std::memory_order_acquire)) {
                    finish(r, Status(Errc::io_error, "external snapshot bdev missing (degraded blob)"));
                    return;
                }
                if (root != nullptr && root->esnap && r->pos < root->esnap_units) {
                    // The external snapshot: same offsets on its own bdev (which may end
                    // inside this cluster: the rest reads zeroes on the next turn).
                    const uint64_t end = std::min(seg_end, root->esnap_units);
                    bdev::Channel* ech = r->ch->esnap_channel(*root->esnap);
                    if (ech == nullptr) {
                        finish(r, Status(Errc::shutdown, "external snapshot bdev refused a channel"));
                        return;
                    }
                    const int n = slice(r, (r->pos - r->start) * unit, (end - r->pos) * unit);
                    r->seg_end = end;
                    Status st = bdev::readv(*root->esnap, *ech, r->child_iov, n, r->pos,
                                            end - r->pos, bdev_done, r);
                    if (st.code() == Errc::busy) {
                        r->wait = {retry_msg, r, nullptr};
                        bdev::queue_io_wait(*ech, r->wait);
                    } else if (!st.ok()) {
                        finish(r, st);
                    }
                    return;
                }
                {
                    const int n = slice(r, (r->pos - r->start) * unit, (seg_end - r->pos) * unit);
                    for (int i = 0; i < n; ++i)
                        std::memset(r->child_iov[i].iov_base, 0, r->child_iov[i].iov_len);
                }
                r->pos = seg_end;
                continue;
            }
            case Request::Op::write_zeroes:
                if (!b->backed(ci)) {  // reads zeroes already
                    r->pos = seg_end;
                    continue;
                }
                [[fallthrough]];
            case Request::Op::write:
                r->alloc_index = ci;
                runtime::deliver(*s.md_thread, &StoreImpl::alloc_msg, r);
                return;
            case Request::Op::unmap:
                r->pos = seg_end;
                continue;
            case Request::Op::flush:
                break;
            }
        }
        if (r->op == Request::Op::unmap && seg_end - r->pos == upc &&
            b->thin_.load(std::memory_order_acquire)) {
            // A whole cluster of a thin blob: released once the bdev has unmapped it.
            r->release = Request::kReleaseWanted;
            if (!desc.bdev().supports(bdev::IoType::unmap)) {
                r->pos = seg_end;
                continue;
            }
        }
        const uint64_t lba = uint64_t{k} * upc + r->pos % upc;
        const uint64_t n_units = seg_end - r->pos;
        r->seg_end = seg_end;
        Status st;
        switch (r->op) {
        case Request::Op::read:
        case Request::Op::write: {
            const int n = slice(r, (r->pos - r->start) * unit, n_units * unit);
            st = r->op == Request::Op::read
                     ? bdev::readv(desc, *r->ch->bch, r->child_iov, n, lba, n_units, bdev_done, r)
                     : bdev::writev(desc, *r->ch->bch, r->child_iov, n, lba, n_units, bdev_done, r);
            break;
        }
        case Request::Op::write_zeroes:
            st = bdev::write_zeroes(desc, *r->ch->bch, lba, n_units, bdev_done, r);
            break;
        case Request::Op::unmap:
            st = bdev::unmap(desc, *r->ch->bch, lba, n_units, bdev_done, r);
            break;
        case Request::Op::flush:
            break;
        }
        if (st.code() == Errc::busy) {
            r->wait = {retry_msg, r, nullptr};
            bdev::queue_io_wait(*r->ch->bch, r->wait);
        } else if (!st.ok()) {
            finish(r, st);
        }
        return;
    }
    if (r->release == Request::kReleaseWanted) {
        // The md Thread freezes the blob to release the clusters, and a freeze waits for every
        // request in flight: this one steps out of the count until release_done_msg.
        r->release = Request::kReleaseSent;
        b->inflight.fetch_sub(1, std::memory_order_seq_cst);
        runtime::deliver(*s.md_thread, &StoreImpl::release_msg, r);
        return;
    }
    finish(r, {});
}

Channel::Channel(StoreImpl& s, bdev::Channel* b) : store(s), bch(b), pool(new Request[kPoolSize]) {
    for (size_t i = 0; i < kPoolSize; ++i) {
        pool[i].ch = this;
        free.push_back(pool[i]);
    }
}

Channel::~Channel() {
    for (auto& [d, ch] : esnap_chs) bdev::put_channel(ch);
    if (bch) bdev::put_channel(bch);
}

std::unique_ptr<runtime::IoChannel> StoreImpl::create_channel(runtime::Thread&) {
    if (unloading || !desc) return nullptr;
    bdev::Channel* bch = desc->get_channel();
    if (bch == nullptr) return nullptr;
    return std::make_unique<Channel>(*this, bch);
}

Channel* BlobStore::get_channel() {
    if (impl_->unloading) return nullptr;
    return runtime::get_channel<Channel>(*impl_);
}

void put_channel(Channel* ch) noexcept { runtime::put_io_channel(ch); }

namespace {

Status submit_request(Channel& ch, Blob& blob, Request::Op op, const iovec* iov, int iovcnt,
                      const void* buf, uint64_t offset, uint64_t num, IoDoneFn done,
                      void* ctx) noexcept {
    BlobImpl& b = blob.impl();
    if (op != Request::Op::flush) {
        const uint64_t size = b.clusters_atomic() * b.bs.units_per_cluster;
        if (num == 0 || offset > size || num > size - offset)
            return Status(Errc::invalid_argument, "range beyond the blob");
    }
    if ((op == Request::Op::read || op == Request::Op::write) && buf == nullptr) {
        if (iovcnt <= 0 || iovcnt > static_cast<int>(kMaxIoVecs) || iov == nullptr)
            return Status(Errc::invalid_argument, "iovec count");
        uint64_t total = 0;
        for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
        if (total < num * b.bs.g.io_unit_size)
            return Status(Errc::invalid_argument, "iovecs shorter than the range");
    }
    if (op != Request::Op::read && op != Request::Op::flush &&
        b.read_only_.load(std::memory_order_acquire))
        return Status(Errc::permission_denied, "blob is read-only");
    Request* r = ch.free.pop_front();
    if (r == nullptr) return Status(Errc::busy, "blob channel request pool empty");
    r->op = op;
    r->blob = &b;
    if (buf != nullptr) {
        r->single = {const_cast<void*>(buf), num * b.bs.g.io_unit_size};
        r->iov = &r->single;
        r->iovcnt = 1;
    } else {
        r->iov = iov;
        r->iovcnt = iovcnt;
    }
    r->start = r->pos = offset;
    r->end = offset + num;
    r->done = done;
    r->ctx = ctx;
    r->release = Request::kReleaseNone;
    // Started by message so the callback never runs inside this call.
    Status s = ch.thread().send(start_msg, r);
    if (!s.ok()) {
        ch.free.push_front(*r);
        return Status(Errc::busy, "thread message ring full");
    }
    return {};
}

}  // namespace

Status read(Channel& ch, Blob& blob, void* buf, uint64_t off, uint64_t num, IoDoneFn done,
            void* ctx) noexcept {
    if (buf == nullptr) return Status(Errc::invalid_argument, "null buffer");
    return submit_request(ch, blob, Request::Op::read, nullptr, 0, buf, off, num, done, ctx);
}
Status write(Channel& ch, Blob& blob, const void* buf, uint64_t off, uint64_t num, IoDoneFn done,
             void* ctx) noexcept {
    if (buf == nullptr) return Status(Errc::invalid_argument, "null buffer");
    return submit_request(ch, blob, Request::Op::write, nullptr, 0, buf, off, num, done, ctx);
}
Status readv(Channel& ch, Blob& blob, const iovec* iov, int iovcnt, uint64_t off, uint64_t num,
             IoDoneFn done, void* ctx) noexcept {
    return submit_request(ch, blob, Request::Op::read, iov, iovcnt, nullptr, off, num, done, ctx);
}
Status writev(Channel& ch, Blob& blob, const iovec* iov, int iovcnt, uint64_t off, uint64_t num,
              IoDoneFn done, void* ctx) noexcept {
    return submit_request(ch, blob, Request::Op::write, iov, iovcnt, nullptr, off, num, done, ctx);
}
Status write_zeroes(Channel& ch, Blob& blob, uint64_t off, uint64_t num, IoDoneFn done,
                    void* ctx) noexcept {
    return submit_request(ch, blob, Request::Op::write_zeroes, nullptr, 0, nullptr, off, num, done,
                          ctx);
}
Status unmap(Channel& ch, Blob& blob, uint64_t off, uint64_t num, IoDoneFn done,
             void* ctx) noexcept {
    return submit_request(ch, blob, Request::Op::unmap, nullptr, 0, nullptr, off, num, done, ctx);
}
Status flush(Channel& ch, Blob& blob, IoDoneFn done, void* ctx) noexcept {
    return submit_request(ch, blob, Request::Op::flush, nullptr, 0, nullptr, 0, 1, done, ctx);
}

}  // namespace strata::blob
