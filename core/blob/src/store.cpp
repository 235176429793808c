// Metadata side of the blobstore: format, load (clean and dirty), unload, and every blob
// operation, as coroutines on the md Thread. Write ordering is described in
// docs/design/blobstore.md ("Ordering rules"); the comments here name the rule they follow.
#include <algorithm>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include <strata/base/crc.h>
#include <strata/bdev/module.h>

#include "internal.h"

namespace strata::blob {

using format::BlobMd;
using format::kUnallocated;
using runtime::AsyncResult;

namespace {

Error errorf(Errc c, std::string m) { return Error(c, std::move(m)); }

struct IoWait {
    AsyncResult<bdev::IoStatus> r;
    static void cb(void* ctx, const bdev::IoStatus& s) { static_cast<IoWait*>(ctx)->r.set(s); }
};

std::string id_str(BlobId id) { return fmt::format("0x{:x}", id); }

}  // namespace

// ---- small pieces -----------------------------------------------------------------------------

BlobImpl::BlobImpl(StoreImpl& s, BlobMd m, uint32_t slot_index)
    : bs(s), id(m.id), slot(slot_index), md(std::move(m)) {
    refresh_atomics();
}

StoreImpl::StoreImpl() : runtime::IoDevice("blobstore") {}
StoreImpl::~StoreImpl() { close_bdev(); }

void StoreImpl::close_bdev() noexcept {
    if (md_ch) bdev::put_channel(md_ch);
    md_ch = nullptr;
    desc.reset();
}

Task<StoreImpl::MdLock> StoreImpl::md_lock() {
    if (!md_busy) {
        md_busy = true;
        co_return MdLock(this);
    }
    AsyncResult<bool> w;
    md_waiters.push_back(&w);
    co_await w;  // md_unlock handed the lock over
    co_return MdLock(this);
}

void StoreImpl::md_unlock() {
    if (md_waiters.empty()) {
        md_busy = false;
        return;
    }
    auto* w = md_waiters.front();
    md_waiters.erase(md_waiters.begin());
    w->set(true);
}

bool StoreImpl::check_cache_loss() noexcept {
    if (stopped.load(std::memory_order_acquire)) return true;
    const uint64_t now = desc->bdev().write_cache_losses();
    if (now == cache_losses_at_open) return false;
    if (!stopped.exchange(true, std::memory_order_acq_rel))
        STRATA_ERRLOG(log_blob,
                      "bdev '{}' lost its volatile write cache (power loss): the blobstore "
                      "stops; load it again to recover",
                      desc->bdev().name());
    return true;
}

Error StoreImpl::stopped_error() const {
    return errorf(Errc::io_error,
                  fmt::format("blobstore: bdev '{}' lost its volatile write cache (power loss): "
                              "writes not flushed before it may be gone; the store has stopped and "
                              "must be loaded again",
                              desc ? desc->bdev().name() : std::string("?")));
}

Task<Result<void>> StoreImpl::bdev_io(bdev::IoType type, void* buf, uint64_t off, uint64_t bytes) {
    const uint64_t unit = desc->bdev().block_size();  // g is not known yet while loading
    STRATA_ASSERT(off % unit == 0 && bytes % unit == 0);
    // Rule 8: a stopped store changes nothing on the bdev any more (reads still work).
    if (type != bdev::IoType::read && check_cache_loss()) co_return stopped_error();
    for (;;) {
        IoWait w;
        Status s;
        switch (type) {
        case bdev::IoType::read:
            s = bdev::read(*desc, *md_ch, buf, off / unit, bytes / unit, IoWait::cb, &w);
            break;
        case bdev::IoType::write:
            s = bdev::write(*desc, *md_ch, buf, off / unit, bytes / unit, IoWait::cb, &w);
            break;
        case bdev::IoType::write_zeroes:
            s = bdev::write_zeroes(*desc, *md_ch, off / unit, bytes / unit, IoWait::cb, &w);
            break;
        case bdev::IoType::unmap:
            s = bdev::unmap(*desc, *md_ch, off / unit, bytes / unit, IoWait::cb, &w);
            break;
        case bdev::IoType::flush:
            s = bdev::flush(*desc, *md_ch, 0, bdev_bytes / unit, IoWait::cb, &w);
            break;
        default:
            STRATA_PANIC("bdev_io type");
        }
        if (s.code() == Errc::busy) {
            co_await runtime::sleep_for(1000);
            continue;
        }
        if (!s.ok()) co_return Error(s);
        bdev::IoStatus st = co_await w.r;
        if (!st.ok())
            co_return errorf(st.code, fmt::format("blobstore: bdev {} failed at byte {}: {}",
                                                  bdev::io_type_name(type), off, errc_name(st.code)));
        // Rule 8: a flush vouches for the writes before it only if the cache was not lost since
        // the store opened the bdev (a loss makes the device forget them, and it answers the
        // flush after it with success).
        if (type == bdev::IoType::flush && check_cache_loss()) co_return stopped_error();
        co_return Result<void>{};
    }
}

Task<Result<void>> StoreImpl::flush() {
    if (!has_flush) co_return Result<void>{};
    co_return co_await bdev_io(bdev::IoType::flush, nullptr, 0, 0);
}

Task<Result<void>> StoreImpl::write_page(uint64_t page, const void* data) {
    co_return co_await bdev_io(bdev::IoType::write, const_cast<void*>(data), page * kMdPageSize,
                               kMdPageSize);
}

uint64_t StoreImpl::alloc_cluster() noexcept {
    const uint64_t c = used_clusters.find_clear(g.first_data_cluster, g.total_clusters);
    if (c != UINT64_MAX) used_clusters.set(c);
    return c;
}

Result<void> StoreImpl::check_xattrs(const std::vector<Xattr>& xs) const {
    std::set<std::string_view> names;
    for (const Xattr& x : xs) {
        if (x.name.empty() || 4 + x.name.size() + x.value.size() > format::kMaxXattrPayload)
            return errorf(Errc::invalid_argument,
                          fmt::format("xattr '{}': empty name or too long", x.name));
        if (!names.insert(x.name).second)
            return errorf(Errc::invalid_argument, fmt::format("xattr '{}' given twice", x.name));
    }
    return {};
}

// ---- md pages -----------------------------------------------------------------------------------

Task<Result<StoreImpl::SlotState>> StoreImpl::read_slot(uint32_t slot, bool strict) {
    SlotState out;
    std::vector<uint8_t> roots(2 * kMdPageSize);
    auto r = co_await bdev_io(bdev::IoType::read, roots.data(), root_page(slot, 0) * kMdPageSize,
                              2 * kMdPageSize);
    if (!r.ok()) co_return r.error();
    const BlobId id = format::make_blob_id(slot);
    struct Cand {
        uint32_t which;
        uint64_t gen;
    };
    std::vector<Cand> cands;
    bool any_nonzero = false;
    for (uint32_t w = 0; w < 2; ++w) {
        const uint8_t* p = roots.data() + w * kMdPageSize;
        if (!format::page_is_zero(p)) any_nonzero = true;
        format::MdPage hdr;
        std::memcpy(&hdr, p, format::kMdHeaderSize);
        if (!format::check_page(p, id, hdr.generation, 0).ok() || hdr.generation == 0) continue;
        cands.push_back({w, hdr.generation});
        out.max_generation = std::max(out.max_generation, hdr.generation);
    }
    std::sort(cands.begin(), cands.end(), [](Cand a, Cand b) { return a.gen > b.gen; });
    std::string first_error;
    for (const Cand& c : cands) {
        // Follow the chain; every page must carry this blob's id, generation and sequence.
        std::vector<std::vector<uint8_t>> pages;
        std::vector<uint32_t> ext;
        pages.emplace_back(roots.begin() + c.which * kMdPageSize,
                           roots.begin() + (c.which + 1) * kMdPageSize);
        std::string err;
        std::set<uint32_t> seen;
        for (;;) {
            format::MdPage hdr;
            std::memcpy(&hdr, pages.back().data(), format::kMdHeaderSize);
            if (hdr.next == format::kNoPage) break;
            if (hdr.next < g.root_pages() || hdr.next >= g.md_len) {
                err = fmt::format("blob {}: metadata chain points outside the extension pages ({})",
                                  id_str(id), hdr.next);
                break;
            }
            if (!seen.insert(hdr.next).second) {
                err = fmt::format("blob {}: metadata chain loop at page {}", id_str(id), hdr.next);
                break;
            }
            std::vector<uint8_t> pg(kMdPageSize);
            auto rr = co_await bdev_io(bdev::IoType::read, pg.data(),
                                       (g.md_start + hdr.next) * kMdPageSize, kMdPageSize);
            if (!rr.ok()) co_return rr.error();
            Status cs = format::check_page(pg.data(), id, c.gen, static_cast<uint32_t>(pages.size()));
            if (!cs.ok()) {
                // A page of this chain was never written or was reused: the chain was torn.
                // A loop shows up here too when the next page is an earlier one of the chain.
                format::MdPage h2;
                std::memcpy(&h2, pg.data(), format::kMdHeaderSize);
                const bool loops = h2.blob_id == id && h2.generation == c.gen &&
                                   h2.sequence < pages.size();
                err = loops ? fmt::format("blob {}: metadata chain loop at page {}", id_str(id), hdr.next)
                            : fmt::format("blob {}: metadata page {}: {}", id_str(id), hdr.next,
                                          cs.context());
                break;
            }
            ext.push_back(hdr.next);
            pages.push_back(std::move(pg));
        }
        if (err.empty()) {
            std::vector<const uint8_t*> ptrs;
            for (auto& p : pages) ptrs.push_back(p.data());
            auto md = format::decode(ptrs, g);
            if (md.ok()) {
                out.cur_slot = c.which;
                if (!(md->flags & format::kFlagDeleted)) {
                    out.md = std::move(*md);
                    out.ext_pages = std::move(ext);
                }
                co_return out;
            }
            err = fmt::format("blob {}: {}", id_str(id), md.error().message());
        }
        if (first_error.empty()) first_error = err;
        STRATA_WARNLOG(log_blob, "{} (generation {}); trying the other slot", err, c.gen);
    }
    if (cands.empty()) {
        // Nothing valid: never written, or a first write torn by a crash (its creation was never
        // acknowledged). A slot pair with only unreadable pages where a blob is expected is damage.
        if (strict && any_nonzero)
            co_return errorf(Errc::corrupt,
                             fmt::format("blob {}: no valid metadata page (bad crc)", id_str(id)));
        co_return out;
    }
    // Valid roots, no complete chain. Generation 1 only: a torn creation, never acknowledged.
    if (!strict && out.max_generation <= 1) co_return out;
    co_return errorf(Errc::corrupt, first_error);
}

Task<Result<void>> StoreImpl::write_md(BlobImpl& b) {
    BlobMd m = b.md;
    m.generation = b.md.generation + 1;
    for (PendingAlloc* pa : b.pending)
        if (pa->cluster != kUnallocated) m.clusters[pa->index] = pa->cluster;
    const size_t n = format::encoded_pages(m);
    std::vector<uint32_t> pages{static_cast<uint32_t>(2 * b.slot + (1 - b.cur_slot))};
    for (size_t i = 1; i < n; ++i) {
        const uint64_t p = used_pages.find_clear(g.root_pages(), g.md_len);
        if (p == UINT64_MAX) {
            for (size_t j = 1; j < pages.size(); ++j) used_pages.clear(pages[j]);
            co_return errorf(Errc::no_space, "blobstore: no free metadata pages");
        }
        used_pages.set(p);
        pages.push_back(static_cast<uint32_t>(p));
    }
    std::vector<uint8_t> buf(n * kMdPageSize);
    format::encode(m, pages, buf.data());
    // Rule 2: every page of the new generation, then one flush; the previous generation stays
    // intact in the other slot until the flush completes.
    Result<void> r;
    for (size_t i = 0; i < n && r.ok(); ++i)
        r = co_await write_page(g.md_start + pages[i], buf.data() + i * kMdPageSize);
    if (r.ok()) r = co_await flush();
    if (!r.ok()) {
        for (size_t j = 1; j < pages.size(); ++j) used_pages.clear(pages[j]);
        co_return r;
    }
    for (uint32_t p : b.ext_pages) used_pages.clear(p);
    b.ext_pages.assign(pages.begin() + 1, pages.end());
    b.cur_slot = 1 - b.cur_slot;
    b.md.generation = m.generation;
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::persist(BlobImpl& b) {
    const uint64_t want = ++b.persist_wanted;
    while (b.persist_done < want) {
        if (b.persisting) {
            AsyncResult<bool> w;
            b.persist_waiters.push_back(&w);
            co_await w;
            continue;
        }
        b.persisting = true;
        const uint64_t target = b.persist_wanted;
        auto r = co_await write_md(b);
        b.persisting = false;
        if (r.ok()) b.persist_done = target;
        auto waiters = std::move(b.persist_waiters);
        b.persist_waiters.clear();
        for (auto* w : waiters) w->set(true);
        if (!r.ok()) co_return r;
    }
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::tombstone(uint32_t slot, uint32_t cur_slot, uint64_t generation) {
    // Rule 4: a deleted blob gets a newer generation marked deleted in its other slot, so
    // neither slot can bring it back.
    BlobMd m;
    m.id = format::make_blob_id(slot);
    m.generation = generation + 1;
    m.flags = format::kFlagDeleted;
    std::vector<uint8_t> page(kMdPageSize);
    const uint32_t p = 2 * slot + (1 - cur_slot);
    format::encode(m, std::span<const uint32_t>(&p, 1), page.data());
    auto r = co_await write_page(g.md_start + p, page.data());
    if (r.ok()) r = co_await flush();
    co_return r;
}

Task<Result<void>> StoreImpl::fill_cluster(const BlobImpl* src, uint64_t index, uint32_t dst) {
    const uint64_t cs = g.cluster_size;
    if (src == nullptr)
        co_return co_await bdev_io(bdev::IoType::write_zeroes, nullptr, uint64_t{dst} * cs, cs);
    std::vector<uint8_t> buf(cs);
    auto r = co_await bdev_io(bdev::IoType::read, buf.data(), uint64_t{src->cluster(index)} * cs, cs);
    if (!r.ok()) co_return r;
    co_return co_await bdev_io(bdev::IoType::write, buf.data(), uint64_t{dst} * cs, cs);
}

Task<Result<void>> StoreImpl::zero_clusters(const std::vector<uint32_t>& clusters) {
    for (uint32_t c : clusters) {
        auto r = co_await fill_cluster(nullptr, 0, c);
        if (!r.ok()) co_return r;
    }
    co_return Result<void>{};
}

Task<void> StoreImpl::freeze(BlobImpl& b) {
    b.frozen.fetch_add(1, std::memory_order_seq_cst);
    while (b.inflight.load(std::memory_order_seq_cst) != 0) co_await runtime::sleep_for(1000);
}

namespace {
struct UnfreezeCtx {
    BlobImpl* blob;
    AsyncResult<bool> done;
};
}  // namespace

Task<void> StoreImpl::unfreeze(BlobImpl& b) {
    b.frozen.fetch_sub(1, std::memory_order_seq_cst);
    if (b.frozen.load() != 0) co_return;
    UnfreezeCtx u{&b, {}};
    runtime::for_each_channel(
        *this,
        [](runtime::IoChannel& ioch, void* ctx) {
            auto* uc = static_cast<UnfreezeCtx*>(ctx);
            auto& ch = static_cast<Channel&>(ioch);
            IntrusiveList<Request> keep, go;
            while (Request* r = ch.parked.pop_front())
                (r->blob == uc->blob ? go : keep).push_back(*r);
            ch.parked.splice_back(keep);
            while (Request* r = go.pop_front()) resubmit_parked(r);
        },
        &u, [](void* ctx) { static_cast<UnfreezeCtx*>(ctx)->done.set(true); });
    co_await u.done;
}


// ---- external snapshots (md Thread) ---------------------------------------------------------

Task<Result<void>> StoreImpl::open_esnap(BlobImpl& b) {
    // Removal of the bdev (deleted, hot-removed) degrades the blobs reading it rather than
    // holding the removal up until they close.
    auto d = bdev::open(b.md.external, false, [this](bdev::Event e, bdev::Bdev& bd) {
        if (e == bdev::Event::remove)
            runtime::spawn(*md_thread, esnap_removed(bd.name()), [] {});
    });
    if (!d.ok())
        co_return errorf(d.code(), fmt::format("blob {}: external snapshot bdev '{}': {}", id_str(b.id),
                                               b.md.external, d.error().message()));
    if ((*d)->bdev().block_size() != g.io_unit_size)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("external snapshot '{}': block size {} is not the store's {}",
                                     b.md.external, (*d)->bdev().block_size(), g.io_unit_size));
    bdev::Channel* ch = (*d)->get_channel();
    if (ch == nullptr)
        co_return errorf(Errc::shutdown, fmt::format("external snapshot '{}' refused a channel", b.md.external));
    b.esnap_units = (*d)->bdev().num_blocks();
    b.esnap = std::move(*d);
    b.esnap_md_ch = ch;
    co_return Result<void>{};
}

namespace {
struct EsnapPurge {
    bdev::Desc* desc;
    AsyncResult<bool> done;
};
}  // namespace

Task<void> StoreImpl::close_esnap(BlobImpl& b) {
    if (!b.esnap) co_return;
    // Every Thread's channel of it goes first (the descriptor must outlive its channels).
    EsnapPurge p{b.esnap.get(), {}};
    runtime::for_each_channel(
        *this,
        [](runtime::IoChannel& ioch, void* ctx) {
            auto* pc = static_cast<EsnapPurge*>(ctx);
            auto& v = static_cast<Channel&>(ioch).esnap_chs;
            for (auto it = v.begin(); it != v.end();) {
                if (it->first == pc->desc) {
                    bdev::put_channel(it->second);
                    it = v.erase(it);
                } else {
                    ++it;
                }
            }
        },
        &p, [](void* ctx) { static_cast<EsnapPurge*>(ctx)->done.set(true); });
    co_await p.done;
    bdev::put_channel(b.esnap_md_ch);
    b.esnap_md_ch = nullptr;
    co_await runtime::sleep_for(1000);  // the channel is released by message
    b.esnap.reset();
}

Task<Result<void>> StoreImpl::copy_from_esnap(const BlobImpl& root, uint64_t index, uint32_t dst) {
    const uint64_t cs = g.cluster_size;
    std::vector<uint8_t> buf(cs, 0);
    const uint64_t first = index * units_per_cluster;
    const uint64_t n = std::min<uint64_t>(units_per_cluster, root.esnap_units - first);
    for (;;) {
        IoWait w;
        Status s = bdev::read(*root.esnap, *root.esnap_md_ch, buf.data(), first, n, IoWait::cb, &w);
        if (s.code() == Errc::busy) {
            co_await runtime::sleep_for(1000);
            continue;
        }
        if (!s.ok()) co_return Error(s);
        bdev::IoStatus st = co_await w.r;
        if (!st.ok())
            co_return errorf(st.code, fmt::format("external snapshot '{}': read failed", root.md.external));
        break;
    }
    co_return co_await bdev_io(bdev::IoType::write, buf.data(), uint64_t{dst} * cs, cs);
}

Task<Result<BlobId>> StoreImpl::create_esnap_clone(std::string name, uint64_t n, std::vector<Xattr> xattrs) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (name.empty() || name.size() > format::kMaxExternalName)
        co_return errorf(Errc::invalid_argument, "external snapshot bdev name empty or too long");
    if (auto x = check_xattrs(xattrs); !x.ok()) co_return x.error();
    {
        auto d = bdev::open(name, false);
        if (!d.ok()) co_return d.error();
        if ((*d)->bdev().block_size() != g.io_unit_size)
            co_return errorf(Errc::invalid_argument,
                             fmt::format("external snapshot '{}': block size {} is not the store's {}",
                                         name, (*d)->bdev().block_size(), g.io_unit_size));
        if (n == 0) n = ((*d)->bdev().num_blocks() + units_per_cluster - 1) / units_per_cluster;
    }
    if (n > g.max_clusters_per_blob)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("{} clusters exceed the limit {}", n, g.max_clusters_per_blob));
    auto nb = co_await take_slot();
    if (!nb.ok()) co_return nb.error();
    BlobMd& m = nb->md;
    m.flags = format::kFlagThin | format::kFlagExternal;
    m.external = std::move(name);
    m.clusters.assign(n, kUnallocated);
    m.xattrs = std::move(xattrs);
    co_return co_await persist_new(std::move(*nb), kInvalidBlobId);
}

// ---- thin allocation (md Thread) ---------------------------------------------------------------

void StoreImpl::alloc_msg(void* p) {
    auto* r = static_cast<Request*>(p);
    r->blob->bs.handle_alloc(r);
}

void StoreImpl::handle_alloc(Request* r) {
    BlobImpl* b = r->blob;
    r->next_waiter = nullptr;
    if (b->cluster(r->alloc_index) != kUnallocated) {  // a racing write allocated it
        r->alloc_status = {};
        runtime::deliver(r->ch->thread(), alloc_done_msg, r);
        return;
    }
    for (PendingAlloc* pa : b->pending) {
        if (pa->index == r->alloc_index) {
            r->next_waiter = pa->waiters;
            pa->waiters = r;
            return;
        }
    }
    auto* pa = new PendingAlloc{b, r->alloc_index, kUnallocated, r};
    b->pending.push_back(pa);
    runtime::spawn(*md_thread, run_alloc(pa), [](Result<void>) {});
}

Task<Result<void>> StoreImpl::run_alloc(PendingAlloc* pa) {
    BlobImpl& b = *pa->blob;
    Status st;
    const uint64_t k = alloc_cluster();
    if (k == UINT64_MAX) {
        st = Status(Errc::no_space, "no free cluster for a thin blob");
    } else {
        // Rule 1: the cluster's contents (zeroes or the ancestor's data) are durable before the
        // metadata that maps it; the write that asked waits until the metadata is durable too.
        const BlobImpl* src = b.backing_ancestor(pa->index);
        const BlobImpl* esnap = src ? nullptr : b.esnap_for(pa->index);
        // (No co_await inside ?: — GCC 12 miscompiles it.)
        Result<void> r;
        if (!src && b.esnap_missing_for(pa->index))  // zeroes would hide the snapshot's data
            r = errorf(Errc::io_error, "external snapshot bdev missing (degraded blob)");
        else if (esnap)
            r = co_await copy_from_esnap(*esnap, pa->index, static_cast<uint32_t>(k));
        else
            r = co_await fill_cluster(src, pa->index, static_cast<uint32_t>(k));
        if (r.ok()) r = co_await flush();
        if (r.ok()) {
            pa->cluster = static_cast<uint32_t>(k);
            r = co_await persist(b);
        }
        if (r.ok()) {
            b.publish_cluster(pa->index, static_cast<uint32_t>(k));
        } else {
            used_clusters.clear(k);
            st = Status(r.code(), "cluster allocation failed");
            STRATA_ERRLOG(log_blob, "blob {}: allocating cluster {}: {}", id_str(b.id), pa->index,
                          r.error().message());
        }
    }
    b.pending.erase(std::find(b.pending.begin(), b.pending.end(), pa));
    for (Request* w = pa->waiters; w != nullptr;) {
        Request* next = w->next_waiter;
        w->alloc_status = st;
        runtime::deliver(w->ch->thread(), alloc_done_msg, w);
        w = next;
    }
    delete pa;
    co_return Result<void>{};
}

Task<void> StoreImpl::esnap_removed(std::string name) {
    auto lock = co_await md_lock();
    std::vector<BlobImpl*> tops;
    for (auto& [id, bp] : open_blobs)
        if (bp->esnap && bp->esnap->bdev().name() == name) tops.push_back(bp.get());
    for (BlobImpl* t : tops) {
        STRATA_WARNLOG(log_blob, "blob {}: external snapshot '{}' removed: degraded", id_str(t->id), name);
        // New I/O sees the flag and fails before touching the bdev; the freeze waits out I/O
        // that may still use its channels, which close_esnap then puts.
        t->esnap_missing.store(true, std::memory_order_release);
        std::vector<BlobImpl*> chain;
        for (auto& [id, bp] : open_blobs)
            if (bp->chain_top() == t) chain.push_back(bp.get());
        for (BlobImpl* b : chain) co_await freeze(*b);
        co_await close_esnap(*t);
        for (BlobImpl* b : chain) co_await unfreeze(*b);
    }
}

Task<Result<void>> StoreImpl::attach_esnap(BlobImpl& b) {
    BlobImpl* top = b.chain_top();
    if (!top->esnap_missing.load(std::memory_order_acquire)) co_return Result<void>{};
    auto r = co_await open_esnap(*top);
    if (!r.ok()) co_return r;
    // After esnap is set: a data path that sees the flag clear may use it.
    top->esnap_missing.store(false, std::memory_order_release);
    STRATA_NOTICELOG(log_blob, "blob {}: external snapshot '{}' attached", id_str(top->id),
                     top->md.external);
    co_return Result<void>{};
}

// ---- releasing unmapped clusters (md Thread) ---------------------------------------------------

void StoreImpl::release_msg(void* p) {
    auto* r = static_cast<Request*>(p);
    StoreImpl& s = r->blob->bs;
    runtime::spawn(*s.md_thread, s.run_release(r), [](Result<void>) {});
}

Task<Result<void>> StoreImpl::run_release(Request* r) {
    BlobImpl& b = *r->blob;
    Status st;
    {
        // The lock orders the release with snapshot, resize, inflate and delete; the freeze
        // waits out every I/O that may still address the clusters (a first-write allocation on
        // another Thread is such an I/O), so no cluster index is reused while a request holds it.
        auto lock = co_await md_lock();
        co_await freeze(b);
        std::vector<std::pair<uint64_t, uint32_t>> freed;
        if ((b.md.flags & format::kFlagThin) && !(b.md.flags & format::kFlagReadOnly)) {
            const uint64_t upc = units_per_cluster;
            const uint64_t first = (r->start + upc - 1) / upc;
            const uint64_t last = std::min<uint64_t>(r->end / upc, b.md.clusters.size());
            for (uint64_t i = first; i < last; ++i) {
                const uint32_t k = b.md.clusters[i];
                if (k == kUnallocated) continue;
                freed.emplace_back(i, k);
                b.publish_cluster(i, kUnallocated);
            }
        }
        if (!freed.empty()) {
            auto res = co_await persist(b);
            if (res.ok()) {
                for (auto [i, k] : freed) used_clusters.clear(k);  // rule 3
            } else {
                for (auto [i, k] : freed) b.publish_cluster(i, k);
                st = Status(res.code(), "releasing unmapped clusters failed");
                STRATA_ERRLOG(log_blob, "blob {}: releasing {} unmapped clusters: {}", id_str(b.id),
                              freed.size(), res.error().message());
            }
        }
        co_await unfreeze(b);
    }
    r->alloc_status = st;
    runtime::deliver(r->ch->thread(), release_done_msg, r);
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::clear_clusters(const std::vector<uint32_t>& clusters, ClearMethod how) {
    if (how == ClearMethod::none || clusters.empty()) co_return Result<void>{};
    bdev::IoType t = bdev::IoType::write_zeroes;
    if (how == ClearMethod::unmap) {
        if (!desc->bdev().supports(bdev::IoType::unmap)) co_return Result<void>{};
        t = bdev::IoType::unmap;
    }
    const uint64_t cs = g.cluster_size;
    std::vector<uint32_t> ks;
    for (uint32_t k : clusters)
        if (k != kUnallocated) ks.push_back(k);
    std::sort(ks.begin(), ks.end());
    // Runs of adjacent clusters in one I/O each (bounded, so no single I/O is huge).
    const size_t max_run = std::max<uint64_t>(1, (64ull << 20) / cs);
    for (size_t i = 0; i < ks.size();) {
        size_t j = i + 1;
        while (j < ks.size() && ks[j] == ks[j - 1] + 1 && j - i < max_run) ++j;
        auto r = co_await bdev_io(t, nullptr, uint64_t{ks[i]} * cs, (j - i) * cs);
        if (!r.ok()) co_return r;
        i = j;
    }
    co_return co_await flush();
}

// ---- format / load / unload -----------------------------------------------------------------

Task<Result<void>> StoreImpl::open_bdev(const std::string& name, std::function<void()> on_remove) {
    md_thread = runtime::current_thread();
    STRATA_ASSERT_MSG(md_thread != nullptr, "blobstore init/load outside a Thread");
    auto d = bdev::open(name, true, [name, cb = std::move(on_remove)](bdev::Event e, bdev::Bdev&) {
        if (e != bdev::Event::remove) return;
        STRATA_WARNLOG(log_blob, "bdev '{}' under a blobstore is being removed", name);
        if (cb) cb();
    });
    if (!d.ok()) co_return d.error();
    desc = std::move(*d);
    const bdev::Bdev& bd = desc->bdev();
    if (bd.block_size() == 0 || kMdPageSize % bd.block_size() != 0) {
        close_bdev();
        co_return errorf(Errc::invalid_argument,
                         fmt::format("bdev '{}': block size {} does not divide {}", name,
                                     bd.block_size(), kMdPageSize));
    }
    md_ch = desc->get_channel();
    if (md_ch == nullptr) {
        close_bdev();
        co_return errorf(Errc::shutdown, fmt::format("bdev '{}' refused a channel", name));
    }
    bdev_bytes = bd.num_blocks() * bd.block_size();
    has_flush = bd.supports(bdev::IoType::flush);
    cache_losses_at_open = bd.write_cache_losses();
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::format(const BsOptions& o) {
    auto geo = format::compute_geometry(bdev_bytes, desc->bdev().block_size(), o);
    if (!geo.ok()) co_return geo.error();
    g = *geo;
    bstype = o.bstype;
    units_per_cluster = g.cluster_size / g.io_unit_size;
    units_per_page = kMdPageSize / g.io_unit_size;
    used_clusters = format::Bitmap(g.total_clusters);
    for (uint64_t c = 0; c < g.first_data_cluster; ++c) used_clusters.set(c);
    used_pages = format::Bitmap(g.md_len);
    used_ids = format::Bitmap(g.max_blobs);
    // Old metadata left on the bdev must never be mistaken for this store's.
    auto r = co_await bdev_io(bdev::IoType::write_zeroes, nullptr, g.md_start * kMdPageSize,
                              g.md_len * kMdPageSize);
    if (r.ok()) r = co_await flush();
    // Rule 5: on disk the new store is dirty (an empty walk) until unload writes the masks.
    if (r.ok()) r = co_await write_super(g, false, 0, 0, 0);
    co_return r;
}

Task<Result<void>> StoreImpl::write_super(const format::Geometry& geometry, bool clean,
                                           uint32_t ccrc, uint32_t pcrc, uint32_t icrc) {
    format::SuperBlock sb = format::make_super(geometry, bstype);
    sb.clean = clean ? 1 : 0;
    sb.cluster_mask_crc = ccrc;
    sb.page_mask_crc = pcrc;
    sb.blobid_mask_crc = icrc;
    format::seal_super(sb);
    auto r = co_await write_page(0, &sb);
    if (r.ok()) r = co_await flush();
    co_return r;
}

Task<Result<void>> StoreImpl::write_masks_and_super(bool clean) {
    struct M {
        const format::Bitmap* bm;
        uint64_t start, len;
    };
    const M ms[3] = {{&used_clusters, g.cluster_mask_start, g.cluster_mask_len},
                     {&used_pages, g.page_mask_start, g.page_mask_len},
                     {&used_ids, g.blobid_mask_start, g.blobid_mask_len}};
    uint32_t crcs[3];
    for (int i = 0; i < 3; ++i) {
        std::vector<uint8_t> buf(ms[i].len * kMdPageSize, 0);
        const auto& bytes = ms[i].bm->bytes();
        std::memcpy(buf.data(), bytes.data(), bytes.size());
        crcs[i] = crc32c(0, bytes.data(), bytes.size());
        auto r = co_await bdev_io(bdev::IoType::write, buf.data(), ms[i].start * kMdPageSize, buf.size());
        if (!r.ok()) co_return r;
    }
    // Rule 5: the masks are durable before the super block calls them exact.
    auto r = co_await flush();
    if (!r.ok()) co_return r;
    co_return co_await write_super(g, clean, crcs[0], crcs[1], crcs[2]);
}

namespace {

// Rule 5 rewrites the super block in place. A device that tears a lost write at sector
// granularity (the NVMe model's power_cut(torn); real SSDs guarantee one block) can leave the
// first sector (clean flag, mask crcs) new and the last one (crc) old. Both such mixes are
// recognisable, because the version they replaced is known: a clean super block torn over a
// dirty one (unload) replaced clean = 0 with zero mask crcs; a dirty one torn over a clean one
// (load) replaced clean = 1 with the crcs of the masks on disk, which nothing has written
// since. Either way the store is dirty: `page` becomes that dirty super block, sealed. Only a
// crc-verified reconstruction is accepted, so damage is still refused. Super blocks with a
// head_crc (format.h) never get here when torn: their first sector alone decides.
Task<bool> untear_super(StoreImpl& s, std::vector<uint8_t>& page) {
    format::SuperBlock sb;
    std::memcpy(&sb, page.data(), sizeof sb);
    const uint32_t stored = sb.crc;
    auto crc_of = [](const format::SuperBlock& x) { return crc32c(0, &x, offsetof(format::SuperBlock, crc)); };
    format::SuperBlock dirty = sb;
    dirty.clean = 0;
    dirty.cluster_mask_crc = dirty.page_mask_crc = dirty.blobid_mask_crc = 0;
    format::seal_page(&dirty);
    auto geo = format::parse_super(&dirty, s.bdev_bytes, s.desc->bdev().block_size());
    if (!geo.ok()) co_return false;
    bool torn = crc_of(dirty) == stored;  // a torn unload
    if (!torn && sb.clean == 0) {         // a torn load: recompute the clean version
        format::SuperBlock clean = sb;
        clean.clean = 1;
        const uint64_t bits[3] = {geo->total_clusters, geo->md_len, geo->max_blobs};
        const uint64_t starts[3] = {geo->cluster_mask_start, geo->page_mask_start, geo->blobid_mask_start};
        uint32_t crcs[3];
        for (int i = 0; i < 3; ++i) {
            const uint64_t bytes = (bits[i] + 7) / 8;
            std::vector<uint8_t> buf((bytes + kMdPageSize - 1) / kMdPageSize * kMdPageSize);
            auto r = co_await s.bdev_io(bdev::IoType::read, buf.data(), starts[i] * kMdPageSize, buf.size());
            if (!r.ok()) co_return false;
            crcs[i] = crc32c(0, buf.data(), bytes);
        }
        clean.cluster_mask_crc = crcs[0];
        clean.page_mask_crc = crcs[1];
        clean.blobid_mask_crc = crcs[2];
        torn = crc_of(clean) == stored;
    }
    if (!torn) co_return false;
    STRATA_NOTICELOG(log_blob, "super block torn by a power cut: loading dirty");
    std::memcpy(page.data(), &dirty, sizeof dirty);
    co_return true;
}

}  // namespace

Task<Result<void>> StoreImpl::load(const LoadOptions& o) {
    std::vector<uint8_t> page(kMdPageSize);
    auto r = co_await bdev_io(bdev::IoType::read, page.data(), 0, kMdPageSize);
    if (!r.ok()) co_return r;
    auto geo = format::parse_super(page.data(), bdev_bytes, desc->bdev().block_size());
    if (!geo.ok() && co_await untear_super(*this, page))
        geo = format::parse_super(page.data(), bdev_bytes, desc->bdev().block_size());
    if (!geo.ok()) co_return geo.error();
    g = *geo;
    format::SuperBlock sb;
    std::memcpy(&sb, page.data(), sizeof sb);
    bstype.assign(sb.bstype, strnlen(sb.bstype, kBsTypeLen));
    if (!o.bstype.empty() && o.bstype != bstype)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("bstype '{}' does not match the store's '{}'", o.bstype, bstype));
    units_per_cluster = g.cluster_size / g.io_unit_size;
    units_per_page = kMdPageSize / g.io_unit_size;
    used_clusters = format::Bitmap(g.total_clusters);
    used_pages = format::Bitmap(g.md_len);
    used_ids = format::Bitmap(g.max_blobs);
    const bool clean = sb.clean == 1;
    loaded_dirty = !clean;
    if (clean) {
        struct M {
            format::Bitmap* bm;
            uint64_t start, len;
            uint32_t crc;
            const char* name;
        };
        M ms[3] = {{&used_clusters, g.cluster_mask_start, g.cluster_mask_len, sb.cluster_mask_crc, "cluster"},
                   {&used_pages, g.page_mask_start, g.page_mask_len, sb.page_mask_crc, "md page"},
                   {&used_ids, g.blobid_mask_start, g.blobid_mask_len, sb.blobid_mask_crc, "blob id"}};
        for (M& m : ms) {
            std::vector<uint8_t> buf(m.len * kMdPageSize);
            r = co_await bdev_io(bdev::IoType::read, buf.data(), m.start * kMdPageSize, buf.size());
            if (!r.ok()) co_return r;
            auto& bytes = m.bm->bytes();
            std::memcpy(bytes.data(), buf.data(), bytes.size());
            if (crc32c(0, bytes.data(), bytes.size()) != m.crc || !m.bm->tail_clear())
                co_return errorf(Errc::corrupt, fmt::format("{} mask: bad crc", m.name));
        }
        for (uint64_t c = 0; c < g.first_data_cluster; ++c)
            if (!used_clusters.test(c))
                co_return errorf(Errc::corrupt, "cluster mask: metadata clusters marked free");
    }

    // Walk every blob (clean: those the id mask names; dirty: every slot).
    struct Found {
        BlobMd md;
        uint32_t cur_slot;
        std::vector<uint32_t> ext;
    };
    std::map<BlobId, Found> found;
    for (uint32_t slot = 0; slot < g.max_blobs; ++slot) {
        if (clean && !used_ids.test(slot)) continue;
        auto st = co_await read_slot(slot, clean);
        if (!st.ok()) co_return st.error();
        if (!st->md) {
            if (clean)
                co_return errorf(Errc::corrupt,
                                 fmt::format("blob {}: in the id mask but has no metadata",
                                             id_str(format::make_blob_id(slot))));
            continue;
        }
        const BlobId id = st->md->id;
        found[id] = Found{std::move(*st->md), st->cur_slot, std::move(st->ext_pages)};
    }

    // Two-blob operations a crash interrupted (design doc, "Snapshots and merges").
    std::vector<BlobId> drop, clear_flag;
    std::set<BlobId> parents;
    for (auto& [id, f] : found) parents.insert(f.md.parent_id);
    for (auto& [id, f] : found) {
        const auto peer = found.find(f.md.pending_peer);
        const bool peer_points_here = peer != found.end() && peer->second.md.parent_id == id;
        // A snapshot whose mark could not be cleared (written before create_snapshot retried
        // or undid a failed clear, or whose undo failed too) got as far as its blob pointing
        // at it: later operations may have moved the blob on (snapshotted again, ...), but
        // whatever has it as parent proves that. Nothing can reference a snapshot whose
        // creation never got that far.
        if (f.md.pending_op == format::kPendingSnapshotOf)
            (peer_points_here || parents.count(id) ? clear_flag : drop).push_back(id);
        else if (f.md.pending_op == format::kPendingMergeInto)
            (peer_points_here ? clear_flag : drop).push_back(id);
    }
    std::vector<std::pair<uint32_t, std::pair<uint32_t, uint64_t>>> tombstones;
    for (BlobId id : drop) {
        auto& f = found[id];
        tombstones.push_back({format::blob_slot(id, g.max_blobs), {f.cur_slot, f.md.generation}});
        found.erase(id);
    }

    // Masks: rebuilt (dirty) or checked against what the metadata says (clean).
    format::Bitmap owned(g.total_clusters), pages(g.md_len), ids(g.max_blobs);
    std::map<uint32_t, BlobId> owner;
    for (auto& [id, f] : found) {
        const uint32_t slot = format::blob_slot(id, g.max_blobs);
        ids.set(slot);
        pages.set(2 * slot);
        pages.set(2 * slot + 1);
        for (uint32_t p : f.ext) {
            if (pages.test(p))
                co_return errorf(Errc::corrupt,
                                 fmt::format("md page {} used by two blobs (one is {})", p, id_str(id)));
            pages.set(p);
        }
        for (uint32_t c : f.md.clusters) {
            if (c == kUnallocated) continue;
            if (owned.test(c))
                co_return errorf(Errc::corrupt,
                                 fmt::format("cluster {} owned by blobs {} and {}", c,
                                             id_str(owner[c]), id_str(id)));
            owned.set(c);
            owner[c] = id;
        }
        if (f.md.parent_id != kInvalidBlobId && !found.count(f.md.parent_id))
            co_return errorf(Errc::corrupt, fmt::format("blob {}: parent {} does not exist",
                                                        id_str(id), id_str(f.md.parent_id)));
    }
    for (auto& [id, f] : found) {  // parent chains end
        BlobId p = f.md.parent_id;
        for (size_t n = 0; p != kInvalidBlobId; ++n) {
            if (n > found.size())
                co_return errorf(Errc::corrupt, fmt::format("blob {}: parent loop", id_str(id)));
            p = found[p].md.parent_id;
        }
    }
    if (clean) {
        for (uint64_t c = g.first_data_cluster; c < g.total_clusters; ++c)
            if (owned.test(c) && !used_clusters.test(c))
                co_return errorf(Errc::corrupt,
                                 fmt::format("cluster {} in use by {} but free in the mask", c,
                                             id_str(owner[static_cast<uint32_t>(c)])));
        for (uint64_t p = 0; p < g.md_len; ++p)
            if (pages.test(p) && !used_pages.test(p))
                co_return errorf(Errc::corrupt, fmt::format("md page {} in use but free in the mask", p));
    }
    // Either way the masks become exactly what the metadata says: a clean mask could only
    // differ by leaking, and leaks are not worth keeping.
    for (uint64_t c = 0; c < g.first_data_cluster; ++c) owned.set(c);
    used_clusters = std::move(owned);
    used_pages = std::move(pages);
    used_ids = std::move(ids);
    for (auto& [id, f] : found) entries[id] = Entry{f.md.parent_id};

    // Rule 5: dirty on disk before the first change.
    r = co_await write_super(g, false, 0, 0, 0);
    if (!r.ok()) co_return r;
    for (auto& [slot, t] : tombstones) {
        r = co_await tombstone(slot, t.first, t.second);
        if (!r.ok()) co_return r;
    }
    for (BlobId id : clear_flag) {
        auto& f = found[id];
        BlobImpl tmp(*this, std::move(f.md), format::blob_slot(id, g.max_blobs));
        tmp.cur_slot = f.cur_slot;
        tmp.ext_pages = std::move(f.ext);
        tmp.md.pending_op = format::kPendingNone;
        tmp.md.pending_peer = kInvalidBlobId;
        r = co_await persist(tmp);
        if (!r.ok()) co_return r;
    }
    if (!clean || !drop.empty())
        STRATA_NOTICELOG(log_blob, "blobstore loaded dirty: {} blobs, {} interrupted operations undone",
                         found.size(), drop.size());
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::unload() {
    for (auto& [id, b] : open_blobs)
        if (b->user_refs > 0)
            co_return errorf(Errc::busy, fmt::format("blob {} is still open", id_str(id)));
    if (channel_count() > 0) co_return errorf(Errc::busy, "blob channels are still held");
    unloading = true;
    auto r = co_await write_masks_and_super(true);
    if (!r.ok()) {
        unloading = false;
        co_return r;
    }
    AsyncResult<bool> gone;
    runtime::unregister_io_device(
        *this, [](void* ctx) { static_cast<AsyncResult<bool>*>(ctx)->set(true); }, &gone);
    co_await gone;
    close_bdev();
    co_return Result<void>{};
}

// ---- grow (docs/design/blobstore.md, "Growing") ------------------------------------------------

Task<Result<void>> StoreImpl::grow() {
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    const bdev::Bdev& bd = desc->bdev();
    const uint64_t bytes = bd.num_blocks() * uint64_t{bd.block_size()};
    const uint64_t want = bytes / g.cluster_size;
    if (want <= g.total_clusters) {
        // SPDK's bs_grow_live answers success when there is nothing to grow; a bdev that shrank
        // under the store is not the grow's to repair.
        if (want < g.total_clusters)
            STRATA_WARNLOG(log_blob, "bdev '{}' ({} clusters) is smaller than its blobstore ({} "
                                     "clusters): not shrinking", bd.name(), want, g.total_clusters);
        co_return Result<void>{};
    }
    const uint64_t limit = format::max_total_clusters(g);
    if (want > limit)
        co_return errorf(Errc::no_space,
                         fmt::format("blobstore cannot grow to {} clusters: its cluster mask ({} md "
                                     "pages, sized at format) holds at most {} clusters ({} bytes)",
                                     want, g.cluster_mask_len, limit, limit * g.cluster_size));
    format::Geometry ng = g;
    ng.total_clusters = want;
    // A per-blob limit equal to the store's size is the default (clamped at format): it follows.
    if (g.max_clusters_per_blob == g.total_clusters) ng.max_clusters_per_blob = want;
    bdev_bytes = bytes;  // flushes from now on cover the new clusters
    // Rule 7: loaded means dirty on disk (rule 5), so the masks need no write; the new size is
    // one super block, and the clusters become allocatable only once it is durable.
    auto r = co_await write_super(ng, false, 0, 0, 0);
    if (!r.ok()) co_return r;
    STRATA_NOTICELOG(log_blob, "blobstore on '{}' grew from {} to {} clusters", bd.name(),
                     g.total_clusters, want);
    used_clusters.grow(want);
    g = ng;
    co_return Result<void>{};
}

// ---- slots --------------------------------------------------------------------------------------

Task<Result<StoreImpl::NewBlob>> StoreImpl::take_slot() {
    const uint64_t free_slot = used_ids.find_clear(0, g.max_blobs);
    if (free_slot == UINT64_MAX) co_return errorf(Errc::no_space, "no free blob id");
    const auto slot = static_cast<uint32_t>(free_slot);
    used_ids.set(slot);
    used_pages.set(2 * slot);
    used_pages.set(2 * slot + 1);
    std::vector<uint8_t> roots(2 * kMdPageSize);
    auto r = co_await bdev_io(bdev::IoType::read, roots.data(), root_page(slot, 0) * kMdPageSize,
                              2 * kMdPageSize);
    if (!r.ok()) {
        release_slot(slot);
        co_return r.error();
    }
    NewBlob nb;
    nb.slot = slot;
    nb.md.id = format::make_blob_id(slot);
    nb.cur_slot = 1;  // the first write goes to root copy 0
    for (uint32_t w = 0; w < 2; ++w) {
        const uint8_t* p = roots.data() + w * kMdPageSize;
        format::MdPage hdr;
        std::memcpy(&hdr, p, format::kMdHeaderSize);
        if (format::check_page(p, nb.md.id, hdr.generation, 0).ok() &&
            hdr.generation >= nb.md.generation) {
            nb.md.generation = hdr.generation;
            nb.cur_slot = w;
        }
    }
    co_return nb;
}

void StoreImpl::release_slot(uint32_t slot) {
    used_ids.clear(slot);
    used_pages.clear(2 * slot);
    used_pages.clear(2 * slot + 1);
}

Task<Result<BlobId>> StoreImpl::persist_new(NewBlob nb, BlobId parent) {
    BlobImpl tmp(*this, std::move(nb.md), nb.slot);
    tmp.cur_slot = nb.cur_slot;
    auto r = co_await persist(tmp);
    if (!r.ok()) {
        release_slot(nb.slot);
        co_return r.error();
    }
    entries[tmp.id] = Entry{parent};
    co_return tmp.id;
}

// ---- operations -------------------------------------------------------------------------------

Task<Result<BlobId>> StoreImpl::create_blob(BlobOptions o) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (o.num_clusters > g.max_clusters_per_blob)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("{} clusters exceed the limit {}", o.num_clusters, g.max_clusters_per_blob));
    if (auto x = check_xattrs(o.xattrs); !x.ok()) co_return x.error();
    auto nb = co_await take_slot();
    if (!nb.ok()) co_return nb.error();
    BlobMd& m = nb->md;
    m.flags = o.thin_provision ? uint32_t{format::kFlagThin} : 0u;
    m.xattrs = std::move(o.xattrs);
    m.clusters.assign(o.num_clusters, kUnallocated);
    std::vector<uint32_t> fresh;
    auto undo = [&] {
        for (uint32_t c : fresh) used_clusters.clear(c);
    };
    if (!o.thin_provision) {
        for (auto& c : m.clusters) {
            const uint64_t k = alloc_cluster();
            if (k == UINT64_MAX) {
                undo();
                release_slot(nb->slot);
                co_return errorf(Errc::no_space, fmt::format("no space for {} clusters", o.num_clusters));
            }
            c = static_cast<uint32_t>(k);
            fresh.push_back(c);
        }
    }
    // Rule 1: zeroed clusters are durable before the metadata mapping them.
    auto r = co_await zero_clusters(fresh);
    if (r.ok() && !fresh.empty()) r = co_await flush();
    if (!r.ok()) {
        undo();
        release_slot(nb->slot);
        co_return r.error();
    }
    auto id = co_await persist_new(std::move(*nb), kInvalidBlobId);
    if (!id.ok()) undo();
    co_return id;
}

Task<Result<BlobImpl*>> StoreImpl::open_blob(BlobId id, bool user, bool need_esnap) {
    auto it = open_blobs.find(id);
    if (it != open_blobs.end()) {
        BlobImpl* b = it->second.get();
        if (need_esnap && b->degraded())
            co_return errorf(Errc::not_found,
                             fmt::format("blob {}: external snapshot bdev missing (open degraded)",
                                         id_str(id)));
        (user ? b->user_refs : b->internal_refs)++;
        co_return b;
    }
    const uint32_t slot = format::blob_slot(id, g.max_blobs);
    if (slot == UINT32_MAX || !entries.count(id))
        co_return errorf(Errc::not_found, fmt::format("blob {} not found", id_str(id)));
    auto st = co_await read_slot(slot, true);
    if (!st.ok()) co_return st.error();
    if (!st->md)
        co_return errorf(Errc::corrupt, fmt::format("blob {}: metadata vanished", id_str(id)));
    auto b = std::make_unique<BlobImpl>(*this, std::move(*st->md), slot);
    b->cur_slot = st->cur_slot;
    b->ext_pages = std::move(st->ext_pages);
    b->persist_wanted = b->persist_done = 0;
    if (b->md.flags & format::kFlagExternal) {
        auto e = co_await open_esnap(*b);
        if (!e.ok() && need_esnap) co_return e.error();
        if (!e.ok()) {
            STRATA_NOTICELOG(log_blob, "blob {} opens degraded: {}", id_str(id), e.error().message());
            b->esnap_missing.store(true, std::memory_order_release);
        }
    }
    if (b->md.parent_id != kInvalidBlobId) {
        // Another open of this id may have finished while we read: take that one instead.
        auto p = co_await open_blob(b->md.parent_id, false, need_esnap);
        if (!p.ok()) {
            co_await close_esnap(*b);
            co_return p.error();
        }
        b->parent = *p;
    }
    it = open_blobs.find(id);
    if (it != open_blobs.end()) {
        if (b->parent) (void)co_await close_blob(b->parent, false);
        co_await close_esnap(*b);
        (user ? it->second->user_refs : it->second->internal_refs)++;
        co_return it->second.get();
    }
    BlobImpl* raw = b.get();
    (user ? raw->user_refs : raw->internal_refs)++;
    open_blobs.emplace(id, std::move(b));
    co_return raw;
}

Task<Result<void>> StoreImpl::close_blob(BlobImpl* b, bool user) {
    uint32_t& refs = user ? b->user_refs : b->internal_refs;
    STRATA_ASSERT_MSG(refs > 0, "blob closed more often than opened");
    --refs;
    Result<void> r;
    if (b->dirty && !b->deleted && user) {
        b->dirty = false;
        r = co_await persist(*b);
        if (!r.ok()) b->dirty = true;
    }
    if (b->user_refs + b->internal_refs > 0) co_return r;
    while (b->persisting || !b->pending.empty()) co_await runtime::sleep_for(1000);
    if (b->dirty && !b->deleted) {
        b->dirty = false;
        auto r2 = co_await persist(*b);
        if (r.ok()) r = r2;
    }
    co_await close_esnap(*b);
    BlobImpl* parent = b->parent;
    auto it = open_blobs.find(b->id);
    STRATA_ASSERT(it != open_blobs.end() && it->second.get() == b);
    open_blobs.erase(it);
    if (parent) (void)co_await close_blob(parent, false);
    co_return r;
}

namespace {

// A blob bigger than its parent `p` reads zeroes beyond p's size. Whether p's ancestors (or the
// external snapshot at the chain's top) would give cluster `i` data were they its parent, as
// after a decouple or a merge of p into it: then the blob needs zeroes of its own there.
bool backed_beyond_parent(const BlobImpl& p, uint64_t i) {
    const BlobImpl* top = &p;
    for (const BlobImpl* a = p.parent; a != nullptr; top = a, a = a->parent) {
        if (i >= a->md.clusters.size()) return false;
        if (a->md.clusters[i] != kUnallocated) return true;
    }
    return (top->md.flags & format::kFlagExternal) != 0;
}

}  // namespace

Task<Result<void>> StoreImpl::delete_blob(BlobId id, ClearMethod clear) {
    auto lock = co_await md_lock();
    if (!entries.count(id)) co_return errorf(Errc::not_found, fmt::format("blob {} not found", id_str(id)));
    if (auto it = open_blobs.find(id); it != open_blobs.end() && it->second->user_refs > 0)
        co_return errorf(Errc::busy, fmt::format("blob {} is open", id_str(id)));
    std::vector<BlobId> clones;
    for (auto& [cid, e] : entries)
        if (e.parent == id) clones.push_back(cid);
    if (clones.size() > 1)
        co_return errorf(Errc::busy, fmt::format("snapshot {} has {} clones: delete or inflate all "
                                                 "but one first", id_str(id), clones.size()));
    // A blob going away does not need its external snapshot (which may be gone already); a
    // snapshot merging into its clone hands it over, degraded or not.
    auto sr = co_await open_blob(id, false, false);
    if (!sr.ok()) co_return sr.error();
    BlobImpl* s = *sr;
    BlobImpl* c = nullptr;
    if (!clones.empty()) {
        auto cr = co_await open_blob(clones[0], false, false);
        if (!cr.ok()) {
            (void)co_await close_blob(s, false);
            co_return cr.error();
        }
        c = *cr;
        co_await freeze(*c);
        // Beyond the snapshot's size the clone reads zeroes, and must go on doing so once the
        // snapshot's parent is its parent (as decouple does): zeroed clusters of its own there.
        std::vector<std::pair<size_t, uint32_t>> zeroed;
        Result<void> zr;
        for (size_t i = s->md.clusters.size(); i < c->md.clusters.size() && zr.ok(); ++i) {
            if (c->md.clusters[i] != kUnallocated || !backed_beyond_parent(*s, i)) continue;
            const uint64_t k = alloc_cluster();
            if (k == UINT64_MAX) {
                zr = errorf(Errc::no_space, fmt::format("no space to merge blob {}", id_str(id)));
                break;
            }
            zeroed.emplace_back(i, static_cast<uint32_t>(k));
            zr = co_await fill_cluster(nullptr, i, static_cast<uint32_t>(k));
        }
        if (zr.ok() && !zeroed.empty()) zr = co_await flush();  // rule 1
        if (!zr.ok()) {
            for (auto [i, k] : zeroed) used_clusters.clear(k);
            co_await unfreeze(*c);
            (void)co_await close_blob(c, false);
            (void)co_await close_blob(s, false);
            co_return zr;
        }
        // Rule 6: the snapshot records the merge before the clone takes its clusters.
        s->md.pending_op = format::kPendingMergeInto;
        s->md.pending_peer = c->id;
        auto r = co_await persist(*s);
        if (!r.ok()) {
            s->md.pending_op = format::kPendingNone;
            for (auto [i, k] : zeroed) used_clusters.clear(k);
            co_await unfreeze(*c);
            (void)co_await close_blob(c, false);
            (void)co_await close_blob(s, false);
            co_return r;
        }
        const BlobMd saved = c->md;
        std::vector<uint32_t> left;  // the snapshot's clusters the clone does not take
        for (size_t i = 0; i < s->md.clusters.size(); ++i) {
            if (i < c->md.clusters.size() && c->md.clusters[i] == kUnallocated)
                c->md.clusters[i] = s->md.clusters[i];
            else if (s->md.clusters[i] != kUnallocated)
                left.push_back(s->md.clusters[i]);
        }
        for (auto [i, k] : zeroed) c->md.clusters[i] = k;
        c->md.parent_id = s->md.parent_id;
        if (s->md.flags & format::kFlagExternal) {  // the external snapshot moves down too
            c->md.flags |= format::kFlagExternal;
            c->md.external = s->md.external;
        }
        r = co_await persist(*c);
        if (!r.ok()) {
            c->md = saved;
            for (auto [i, k] : zeroed) used_clusters.clear(k);
            co_await unfreeze(*c);
            (void)co_await close_blob(c, false);
            (void)co_await close_blob(s, false);
            co_return r;
        }
        // The clone now reads through the snapshot's parent (or its external snapshot).
        if (s->parent) s->parent->internal_refs++;
        c->parent = s->parent;
        if (s->esnap) {
            c->esnap = std::move(s->esnap);
            c->esnap_md_ch = std::exchange(s->esnap_md_ch, nullptr);
            c->esnap_units = s->esnap_units;
        }
        if (s->md.flags & format::kFlagExternal)  // the clone is the chain's top now
            c->esnap_missing.store(s->esnap_missing.load(std::memory_order_acquire),
                                   std::memory_order_release);
        s->internal_refs--;  // the clone's reference
        c->refresh_atomics();
        entries[c->id].parent = s->md.parent_id;
        s->md.clusters = std::move(left);  // moved ones are the clone's now; these get freed
    }
    auto r = co_await tombstone(s->slot, s->cur_slot, s->md.generation);
    if (!r.ok() && c == nullptr) {
        (void)co_await close_blob(s, false);
        co_return r;
    }
    // After a failed tombstone of a merged snapshot the next load finishes the delete (the
    // clone no longer points at it): carry on.
    if (r.ok()) {
        // Cleared once no metadata maps them and before anything can allocate them.
        if (auto cr = co_await clear_clusters(s->md.clusters, clear); !cr.ok())
            STRATA_WARNLOG(log_blob, "blob {}: clearing its clusters: {}", id_str(id),
                           cr.error().message());
    }
    for (uint32_t k : s->md.clusters)
        if (k != kUnallocated) used_clusters.clear(k);
    for (uint32_t p : s->ext_pages) used_pages.clear(p);
    s->ext_pages.clear();
    release_slot(s->slot);
    entries.erase(id);
    s->deleted = true;
    if (c) {
        co_await unfreeze(*c);
        (void)co_await close_blob(c, false);
    }
    (void)co_await close_blob(s, false);
    co_return Result<void>{};
}

Task<Result<BlobId>> StoreImpl::create_snapshot(BlobId id, std::vector<Xattr> xattrs) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (auto x = check_xattrs(xattrs); !x.ok()) co_return x.error();
    auto br = co_await open_blob(id, false);
    if (!br.ok()) co_return br.error();
    BlobImpl* b = *br;
    if (b->md.flags & format::kFlagReadOnly) {
        (void)co_await close_blob(b, false);
        co_return errorf(Errc::invalid_argument,
                         fmt::format("blob {} is read-only: clone it instead", id_str(id)));
    }
    auto nb = co_await take_slot();
    if (!nb.ok()) {
        (void)co_await close_blob(b, false);
        co_return nb.error();
    }
    const uint32_t slot = nb->slot;
    co_await freeze(*b);
    BlobMd& sm = nb->md;
    sm.parent_id = b->md.parent_id;
    sm.flags = format::kFlagReadOnly | format::kFlagSnapshot;
    sm.pending_op = format::kPendingSnapshotOf;
    sm.pending_peer = b->id;
    sm.clusters = b->md.clusters;
    sm.xattrs = std::move(xattrs);
    sm.flags |= b->md.flags & format::kFlagExternal;  // the external snapshot moves up
    sm.external = b->md.external;
    auto snap = std::make_unique<BlobImpl>(*this, std::move(sm), slot);
    snap->cur_slot = nb->cur_slot;
    BlobImpl* s = snap.get();
    // Rule 6: the snapshot (marked pending) is durable before the blob gives up its clusters.
    auto r = co_await persist(*s);
    if (!r.ok()) {
        release_slot(slot);
        co_await unfreeze(*b);
        (void)co_await close_blob(b, false);
        co_return r.error();
    }
    const BlobMd saved = b->md;
    std::fill(b->md.clusters.begin(), b->md.clusters.end(), kUnallocated);
    b->md.parent_id = s->id;
    b->md.flags |= format::kFlagThin;
    b->md.flags &= ~uint32_t{format::kFlagExternal};
    b->md.external.clear();
    r = co_await persist(*b);
    if (!r.ok()) {
        b->md = saved;
        (void)co_await tombstone(s->slot, s->cur_slot, s->md.generation);
        for (uint32_t p : s->ext_pages) used_pages.clear(p);
        release_slot(slot);
        co_await unfreeze(*b);
        (void)co_await close_blob(b, false);
        co_return r.error();
    }
    // The snapshot is acknowledged only once its mark is cleared on disk: with the mark left,
    // load drops it as unfinished as soon as nothing references it any more (its blob
    // inflated, decoupled or deleted before anything rewrote the snapshot). One retry for a
    // transient error; else the snapshot is undone and fails.
    s->md.pending_op = format::kPendingNone;
    s->md.pending_peer = kInvalidBlobId;
    r = co_await persist(*s);
    if (!r.ok()) r = co_await persist(*s);
    if (!r.ok()) {
        STRATA_WARNLOG(log_blob, "snapshot {}: clearing the pending mark: {}; undoing it", id_str(s->id),
                       r.error().message());
        const uint64_t generation = b->md.generation;  // the next write must outrank b -> s
        b->md = saved;
        b->md.generation = generation;
        auto undo = co_await persist(*b);
        if (undo.ok()) {
            // The blob owns its clusters again: a marked snapshot nothing points at is dropped
            // by load, so the tombstone only saves that work.
            (void)co_await tombstone(s->slot, s->cur_slot, s->md.generation);
            for (uint32_t p : s->ext_pages) used_pages.clear(p);
            release_slot(slot);
        } else {
            // On disk the blob may still point at the snapshot: its slot and pages stay
            // reserved until a load decides, and the blob is rewritten when it is closed.
            b->dirty = true;
        }
        co_await unfreeze(*b);
        (void)co_await close_blob(b, false);
        co_return r.error();
    }
    s->parent = b->parent;  // the blob's reference on its old parent moves to the snapshot
    b->parent = s;
    b->refresh_atomics();  // thin now
    s->esnap = std::move(b->esnap);  // same descriptor: per-Thread channels stay valid
    s->esnap_md_ch = std::exchange(b->esnap_md_ch, nullptr);
    s->esnap_units = b->esnap_units;
    s->internal_refs = 1;   // held by b
    open_blobs.emplace(s->id, std::move(snap));
    entries[s->id] = Entry{s->md.parent_id};
    entries[b->id].parent = s->id;
    co_await unfreeze(*b);
    const BlobId sid = s->id;
    (void)co_await close_blob(b, false);
    co_return sid;
}

Task<Result<BlobId>> StoreImpl::create_clone(BlobId snapshot_id, std::vector<Xattr> xattrs) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (auto x = check_xattrs(xattrs); !x.ok()) co_return x.error();
    auto sr = co_await open_blob(snapshot_id, false);
    if (!sr.ok()) co_return sr.error();
    BlobImpl* s = *sr;
    const bool ro = s->md.flags & format::kFlagReadOnly;
    const uint64_t n = s->md.clusters.size();
    (void)co_await close_blob(s, false);
    if (!ro)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("blob {} is not read-only: snapshot it first", id_str(snapshot_id)));
    auto nb = co_await take_slot();
    if (!nb.ok()) co_return nb.error();
    BlobMd& m = nb->md;
    m.parent_id = snapshot_id;
    m.flags = format::kFlagThin;
    m.clusters.assign(n, kUnallocated);
    m.xattrs = std::move(xattrs);
    co_return co_await persist_new(std::move(*nb), snapshot_id);
}

Task<Result<void>> StoreImpl::inflate(BlobId id, bool only_parent) {
    auto lock = co_await md_lock();
    auto br = co_await open_blob(id, false);
    if (!br.ok()) co_return br.error();
    BlobImpl* b = *br;
    if (b->md.flags & format::kFlagReadOnly) {
        (void)co_await close_blob(b, false);
        co_return errorf(Errc::permission_denied, fmt::format("blob {} is read-only", id_str(id)));
    }
    const bool esnap_only = only_parent && b->parent == nullptr && b->esnap;  // decouple from the bdev
    if (only_parent && b->parent == nullptr && !esnap_only) {
        (void)co_await close_blob(b, false);
        co_return errorf(Errc::invalid_argument, fmt::format("blob {} has no parent", id_str(id)));
    }
    co_await freeze(*b);
    BlobImpl* p = b->parent;
    std::vector<uint32_t> next = b->md.clusters;
    std::vector<uint32_t> fresh;
    Result<void> r;
    for (uint64_t i = 0; i < next.size() && r.ok(); ++i) {
        if (next[i] != kUnallocated) continue;
        const BlobImpl* src = nullptr;
        const BlobImpl* esrc = nullptr;
        if (esnap_only) {
            esrc = b->esnap_for(i);
            if (esrc == nullptr) continue;
        } else if (only_parent) {
            if (i >= p->md.clusters.size()) {
                // Zeroes until now; what p's parent has there once it is b's parent.
                if (!backed_beyond_parent(*p, i)) continue;  // else src stays null: zeroes
            } else {
                src = p->md.clusters[i] != kUnallocated ? p : nullptr;
                if (src == nullptr) continue;
            }
        } else {
            src = b->backing_ancestor(i);
            if (src == nullptr) esrc = b->esnap_for(i);
        }
        const uint64_t k = alloc_cluster();
        if (k == UINT64_MAX) {
            r = errorf(Errc::no_space, fmt::format("no space to inflate blob {}", id_str(id)));
            break;
        }
        fresh.push_back(static_cast<uint32_t>(k));
        next[i] = static_cast<uint32_t>(k);
        if (esrc)
            r = co_await copy_from_esnap(*esrc, i, static_cast<uint32_t>(k));
        else
            r = co_await fill_cluster(src, i, static_cast<uint32_t>(k));
    }
    if (r.ok()) r = co_await flush();  // rule 1
    const BlobMd saved = b->md;
    if (r.ok()) {
        b->md.clusters = std::move(next);
        b->md.parent_id = only_parent && !esnap_only ? p->md.parent_id : kInvalidBlobId;
        if (!only_parent) b->md.flags &= ~uint32_t{format::kFlagThin};
        if (esnap_only || !only_parent) {
            b->md.flags &= ~uint32_t{format::kFlagExternal};
            b->md.external.clear();
        }
        if (only_parent && !esnap_only && p->md.flags & format::kFlagExternal) {
            b->md.flags |= format::kFlagExternal;  // the parent's external snapshot moves down
            b->md.external = p->md.external;
        }
        r = co_await persist(*b);
        if (!r.ok()) b->md = saved;
    }
    if (!r.ok()) {
        for (uint32_t k : fresh) used_clusters.clear(k);
        co_await unfreeze(*b);
        (void)co_await close_blob(b, false);
        co_return r;
    }
    BlobImpl* np = only_parent && !esnap_only ? p->parent : nullptr;
    if (np) np->internal_refs++;
    b->parent = np;
    if (b->md.flags & format::kFlagExternal) {
        if (!b->esnap) {
            auto e = co_await open_esnap(*b);  // decoupled from a parent reading an external bdev
            if (!e.ok())
                STRATA_ERRLOG(log_blob, "blob {}: {}", id_str(id), e.error().message());
        }
    } else {
        co_await close_esnap(*b);
    }
    entries[id].parent = b->md.parent_id;
    b->refresh_atomics();  // thick after inflate
    co_await unfreeze(*b);
    if (p) (void)co_await close_blob(p, false);  // b's reference
    (void)co_await close_blob(b, false);
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::set_parent(BlobId id, BlobId snapshot_id) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (snapshot_id == kInvalidBlobId)
        co_return errorf(Errc::invalid_argument, "snapshot id not valid");
    if (id == snapshot_id)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("blob {} cannot be its own parent", id_str(id)));
    if (auto it = entries.find(id); it != entries.end() && it->second.parent == snapshot_id)
        co_return errorf(Errc::already_exists,
                         fmt::format("blob {} is already the parent of blob {}",
                                     id_str(snapshot_id), id_str(id)));
    // A parent chain that reached the blob itself would be a loop.
    for (BlobId a = snapshot_id; a != kInvalidBlobId;) {
        auto it = entries.find(a);
        if (it == entries.end()) break;
        if (it->second.parent == id)
            co_return errorf(Errc::invalid_argument,
                             fmt::format("blob {} descends from blob {}: a parent loop",
                                         id_str(snapshot_id), id_str(id)));
        a = it->second.parent;
    }
    auto br = co_await open_blob(id, false);
    if (!br.ok()) co_return br.error();
    BlobImpl* b = *br;
    if (!(b->md.flags & format::kFlagThin)) {
        (void)co_await close_blob(b, false);
        co_return errorf(Errc::invalid_argument,
                         fmt::format("blob {} is not thin-provisioned", id_str(id)));
    }
    auto sr = co_await open_blob(snapshot_id, false);
    if (!sr.ok()) {
        (void)co_await close_blob(b, false);
        co_return sr.error();
    }
    BlobImpl* s = *sr;
    Result<void> r;
    if (!s->handle.is_snapshot())
        r = errorf(Errc::invalid_argument,
                   fmt::format("blob {} is not a snapshot", id_str(snapshot_id)));
    else if (s->md.clusters.size() != b->md.clusters.size())
        r = errorf(Errc::invalid_argument,
                   fmt::format("snapshot {} has {} clusters, blob {} has {}: sizes must match",
                               id_str(snapshot_id), s->md.clusters.size(), id_str(id),
                               b->md.clusters.size()));
    if (!r.ok()) {
        (void)co_await close_blob(s, false);
        (void)co_await close_blob(b, false);
        co_return r;
    }
    co_await freeze(*b);
    const BlobMd saved = b->md;
    b->md.parent_id = snapshot_id;  // the clusters the blob owns stay; the rest read s
    b->md.flags &= ~uint32_t{format::kFlagExternal};
    b->md.external.clear();
    r = co_await persist(*b);
    if (!r.ok()) {
        b->md = saved;
        co_await unfreeze(*b);
        (void)co_await close_blob(s, false);
        (void)co_await close_blob(b, false);
        co_return r;
    }
    BlobImpl* old = b->parent;
    b->parent = s;  // the open reference on s is b's from now on
    co_await close_esnap(*b);
    entries[id].parent = snapshot_id;
    b->refresh_atomics();
    co_await unfreeze(*b);
    if (old) (void)co_await close_blob(old, false);
    (void)co_await close_blob(b, false);
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::set_external_parent(BlobId id, std::string name) {
    auto lock = co_await md_lock();
    if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
    if (name.empty() || name.size() > format::kMaxExternalName)
        co_return errorf(Errc::invalid_argument, "external snapshot bdev name empty or too long");
    {
        auto d = bdev::open(name, false);
        if (!d.ok()) co_return d.error();
        const bdev::Bdev& eb = (*d)->bdev();
        if (eb.block_size() != g.io_unit_size)
            co_return errorf(
                Errc::invalid_argument,
                fmt::format("external snapshot '{}': block size {} is not the store's {}", name,
                            eb.block_size(), g.io_unit_size));
        if (eb.num_blocks() * eb.block_size() % g.cluster_size != 0)
            co_return errorf(Errc::invalid_argument,
                             fmt::format("external snapshot '{}': size {} is not a multiple of the "
                                         "cluster size {}",
                                         name, eb.num_blocks() * eb.block_size(), g.cluster_size));
    }
    auto br = co_await open_blob(id, false);
    if (!br.ok()) co_return br.error();
    BlobImpl* b = *br;
    Result<void> r;
    if (b->parent == nullptr && b->md.external == name)
        r = errorf(
            Errc::already_exists,
            fmt::format("'{}' is already the external snapshot of blob {}", name, id_str(id)));
    else if (!(b->md.flags & format::kFlagThin))
        r = errorf(Errc::invalid_argument,
                   fmt::format("blob {} is not thin-provisioned", id_str(id)));
    if (!r.ok()) {
        (void)co_await close_blob(b, false);
        co_return r;
    }
    co_await freeze(*b);
    const BlobMd saved = b->md;
    co_await close_esnap(*b);  // the one it had, if any
    b->md.parent_id = kInvalidBlobId;
    b->md.flags |= format::kFlagExternal;
    b->md.external = name;
    r = co_await open_esnap(*b);
    if (r.ok()) {
        r = co_await persist(*b);
        if (!r.ok()) co_await close_esnap(*b);
    }
    if (!r.ok()) {
        b->md = saved;
        if ((b->md.flags & format::kFlagExternal) != 0 && b->parent == nullptr) {
            if (auto e = co_await open_esnap(*b); !e.ok())
                STRATA_ERRLOG(log_blob, "blob {}: {}", id_str(id), e.error().message());
        }
        co_await unfreeze(*b);
        (void)co_await close_blob(b, false);
        co_return r;
    }
    BlobImpl* old = b->parent;
    b->parent = nullptr;
    entries[id].parent = kInvalidBlobId;
    b->refresh_atomics();
    co_await unfreeze(*b);
    if (old) (void)co_await close_blob(old, false);
    (void)co_await close_blob(b, false);
    co_return Result<void>{};
}

Task<Result<void>> StoreImpl::shallow_copy(BlobId id, bdev::Desc& dst,
                                           std::function<void(uint64_t)> progress) {
    BlobImpl* b = nullptr;
    {
        auto lock = co_await md_lock();
        if (unloading) co_return errorf(Errc::shutdown, "blobstore is unloading");
        auto br = co_await open_blob(id, false);
        if (!br.ok()) co_return br.error();
        b = *br;
    }
    const bdev::Bdev& db = dst.bdev();
    const uint64_t cs = g.cluster_size;
    Result<void> r;
    if (!(b->md.flags & format::kFlagReadOnly))
        r = errorf(Errc::permission_denied,
                   fmt::format("blob {} is not read-only: shallow copy needs a read-only lvol",
                               id_str(id)));
    else if (b->md.clusters.size() * cs > db.num_blocks() * db.block_size())
        r = errorf(
            Errc::invalid_argument,
            fmt::format("bdev {} ({} bytes) is smaller than blob {} ({} bytes)", db.name(),
                        db.num_blocks() * db.block_size(), id_str(id), b->md.clusters.size() * cs));
    else if (g.io_unit_size % db.block_size() != 0)
        r = errorf(Errc::invalid_argument,
                   fmt::format("bdev {}: block size {} does not divide the store's {}", db.name(),
                               db.block_size(), g.io_unit_size));
    bdev::Channel* ch = nullptr;
    if (r.ok()) {
        ch = dst.get_channel();
        if (ch == nullptr)
            r = errorf(Errc::shutdown, fmt::format("bdev {} refused a channel", db.name()));
    }
    // One cluster buffer for the whole copy (this is no data path).
    std::vector<uint8_t> buf(r.ok() ? cs : 0);
    uint64_t copied = 0;
    for (uint64_t i = 0; r.ok() && i < b->md.clusters.size(); ++i) {
        const uint32_t c = b->md.clusters[i];
        if (c == kUnallocated) continue;
        r = co_await bdev_io(bdev::IoType::read, buf.data(), uint64_t{c} * cs, cs);
        if (!r.ok()) break;
        const uint64_t per = cs / db.block_size();
        for (;;) {
            IoWait w;
            Status s = bdev::write(dst, *ch, buf.data(), i * per, per, IoWait::cb, &w);
            if (s.code() == Errc::busy) {
                co_await runtime::sleep_for(1000);
                continue;
            }
            if (!s.ok()) {
                r = Error(s);
                break;
            }
            bdev::IoStatus st = co_await w.r;
            if (!st.ok())
                r = errorf(st.code,
                           fmt::format("bdev {}: write of cluster {} failed", db.name(), i));
            break;
        }
        if (!r.ok()) break;
        if (progress) progress(++copied);
    }
    if (ch != nullptr) bdev::put_channel(ch);
    auto lock = co_await md_lock();
    (void)co_await close_blob(b, false);
    co_return r;
}

Task<Result<void>> StoreImpl::resize(BlobImpl& b, uint64_t n) {
    auto lock = co_await md_lock();
    if (b.md.flags & format::kFlagReadOnly)
        co_return errorf(Errc::permission_denied, fmt::format("blob {} is read-only", id_str(b.id)));
    if (n > g.max_clusters_per_blob)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("{} clusters exceed the limit {}", n, g.max_clusters_per_blob));
    co_await freeze(b);
    const BlobMd saved = b.md;
    std::vector<uint32_t> fresh, freed;
    Result<void> r;
    if (n > b.md.clusters.size()) {
        const uint64_t add = n - b.md.clusters.size();
        for (uint64_t i = 0; i < add && !(b.md.flags & format::kFlagThin); ++i) {
            const uint64_t k = alloc_cluster();
            if (k == UINT64_MAX) {
                r = errorf(Errc::no_space, fmt::format("no space to grow blob {}", id_str(b.id)));
                break;
            }
            fresh.push_back(static_cast<uint32_t>(k));
        }
        if (r.ok()) r = co_await zero_clusters(fresh);
        if (r.ok() && !fresh.empty()) r = co_await flush();  // rule 1
        if (r.ok()) {
            b.md.clusters.resize(n, kUnallocated);
            std::copy(fresh.begin(), fresh.end(), b.md.clusters.end() - static_cast<ptrdiff_t>(fresh.size()));
        }
    } else {
        for (uint64_t i = n; i < b.md.clusters.size(); ++i)
            if (b.md.clusters[i] != kUnallocated) freed.push_back(b.md.clusters[i]);
        b.md.clusters.resize(n);
    }
    if (r.ok()) r = co_await persist(b);
    if (!r.ok()) {
        b.md = saved;
        for (uint32_t k : fresh) used_clusters.clear(k);
    } else {
        if (auto cr = co_await clear_clusters(freed, b.clear_method); !cr.ok())
            STRATA_WARNLOG(log_blob, "blob {}: clearing released clusters: {}", id_str(b.id),
                           cr.error().message());
        for (uint32_t k : freed) used_clusters.clear(k);  // rule 3: after the md no longer maps them
    }
    b.refresh_atomics();
    co_await unfreeze(b);
    co_return r;
}

Task<Result<void>> StoreImpl::sync_md(BlobImpl& b) {
    auto lock = co_await md_lock();
    if (!b.dirty) co_return Result<void>{};
    b.dirty = false;
    auto r = co_await persist(b);
    if (!r.ok()) b.dirty = true;
    co_return r;
}

// ---- Blob --------------------------------------------------------------------------------------

BlobId Blob::id() const noexcept { return impl_->id; }
uint64_t Blob::num_clusters() const noexcept { return impl_->clusters_atomic(); }
uint64_t Blob::num_io_units() const noexcept {
    return impl_->clusters_atomic() * impl_->bs.units_per_cluster;
}
uint64_t Blob::num_allocated_clusters() const noexcept {
    uint64_t n = 0;
    for (uint32_t c : impl_->md.clusters) n += c != kUnallocated;
    return n;
}
bool Blob::is_thin() const noexcept { return impl_->md.flags & format::kFlagThin; }
bool Blob::is_read_only() const noexcept { return impl_->read_only_.load(std::memory_order_acquire); }
bool Blob::is_snapshot() const noexcept {
    if (impl_->md.flags & format::kFlagSnapshot) return true;
    for (auto& [id, e] : impl_->bs.entries)
        if (e.parent == impl_->id) return true;
    return false;
}
bool Blob::is_clone() const noexcept {
    return impl_->md.parent_id != kInvalidBlobId || (impl_->md.flags & format::kFlagExternal);
}
BlobId Blob::parent_id() const noexcept { return impl_->md.parent_id; }
bool Blob::is_cluster_allocated(uint64_t i) const noexcept {
    return i < impl_->md.clusters.size() && impl_->cluster(i) != kUnallocated;
}

Result<void> Blob::set_xattr(std::string_view name, std::span<const uint8_t> value) {
    if (name.empty() || 4 + name.size() + value.size() > format::kMaxXattrPayload)
        return errorf(Errc::invalid_argument,
                      fmt::format("xattr '{}': empty name or too long", name));
    for (Xattr& x : impl_->md.xattrs) {
        if (x.name == name) {
            x.value.assign(value.begin(), value.end());
            impl_->dirty = true;
            return {};
        }
    }
    impl_->md.xattrs.push_back({std::string(name), {value.begin(), value.end()}});
    impl_->dirty = true;
    return {};
}
Result<void> Blob::set_xattr(std::string_view name, std::string_view value) {
    return set_xattr(name, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value.data()),
                                                    value.size()));
}
Result<std::span<const uint8_t>> Blob::get_xattr(std::string_view name) const {
    for (const Xattr& x : impl_->md.xattrs)
        if (x.name == name) return std::span<const uint8_t>(x.value);
    return errorf(Errc::not_found, fmt::format("xattr '{}' not found", name));
}
Result<void> Blob::remove_xattr(std::string_view name) {
    auto& xs = impl_->md.xattrs;
    for (auto it = xs.begin(); it != xs.end(); ++it) {
        if (it->name == name) {
            xs.erase(it);
            impl_->dirty = true;
            return {};
        }
    }
    return errorf(Errc::not_found, fmt::format("xattr '{}' not found", name));
}
std::vector<std::string> Blob::xattr_names() const {
    std::vector<std::string> out;
    for (const Xattr& x : impl_->md.xattrs) out.push_back(x.name);
    return out;
}
void Blob::set_clear_method(ClearMethod how) noexcept { impl_->clear_method = how; }

void Blob::set_read_only() {
    impl_->md.flags |= format::kFlagReadOnly;
    impl_->dirty = true;
    impl_->refresh_atomics();
}

// Runs a StoreImpl operation on the md Thread and comes back to the caller's Thread.
#define STRATA_BLOB_HOP(md_thread, expr)                                         \
    runtime::Thread* caller_ = runtime::current_thread();                        \
    co_await runtime::resume_on(*(md_thread));                                   \
    auto result_ = co_await (expr);                                              \
    if (caller_ != nullptr) co_await runtime::resume_on(*caller_);               \
    co_return result_

Task<Result<void>> Blob::resize(uint64_t num_clusters) {
    STRATA_BLOB_HOP(impl_->bs.md_thread, impl_->bs.resize(*impl_, num_clusters));
}
Task<Result<void>> Blob::sync_md() { STRATA_BLOB_HOP(impl_->bs.md_thread, impl_->bs.sync_md(*impl_)); }

// ---- BlobStore ---------------------------------------------------------------------------------

BlobStore::BlobStore(std::unique_ptr<StoreImpl> impl) : impl_(std::move(impl)) {}
BlobStore::~BlobStore() = default;

Task<Result<std::unique_ptr<BlobStore>>> BlobStore::init(std::string bdev_name, BsOptions options) {
    auto impl = std::make_unique<StoreImpl>();
    auto r = co_await impl->open_bdev(bdev_name, options.on_bdev_remove);
    if (r.ok() && options.claim_module != nullptr) r = bdev::claim(*impl->desc, *options.claim_module);
    if (r.ok()) r = co_await impl->format(options);
    if (!r.ok()) {
        impl->close_bdev();
        co_return r.error();
    }
    runtime::register_io_device(*impl);
    co_return std::unique_ptr<BlobStore>(new BlobStore(std::move(impl)));
}

Task<Result<std::unique_ptr<BlobStore>>> BlobStore::load(std::string bdev_name, LoadOptions options) {
    auto impl = std::make_unique<StoreImpl>();
    auto r = co_await impl->open_bdev(bdev_name, options.on_bdev_remove);
    if (r.ok()) r = co_await impl->load(options);
    // Claimed only once it proved to be a store, so probing a bdev that is not one (lvol
    // examine) never claims it.
    if (r.ok() && options.claim_module != nullptr) r = bdev::claim(*impl->desc, *options.claim_module);
    if (!r.ok()) {
        impl->close_bdev();
        co_return r.error();
    }
    runtime::register_io_device(*impl);
    co_return std::unique_ptr<BlobStore>(new BlobStore(std::move(impl)));
}

namespace {
Task<Result<void>> locked_unload(StoreImpl& s) {
    auto lock = co_await s.md_lock();
    co_return co_await s.unload();
}
Task<Result<void>> locked_grow(StoreImpl& s) {
    auto lock = co_await s.md_lock();
    co_return co_await s.grow();
}
Task<Result<Blob*>> locked_open(StoreImpl& s, BlobId id, bool need_esnap) {
    auto lock = co_await s.md_lock();
    if (s.unloading) co_return Error(Errc::shutdown, "blobstore is unloading");
    auto r = co_await s.open_blob(id, true, need_esnap);
    if (!r.ok()) co_return r.error();
    co_return &(*r)->handle;
}
Task<Result<void>> locked_close(StoreImpl& s, BlobImpl* b) {
    auto lock = co_await s.md_lock();
    co_return co_await s.close_blob(b, true);
}
}  // namespace

Task<Result<void>> BlobStore::unload() { STRATA_BLOB_HOP(impl_->md_thread, locked_unload(*impl_)); }
Task<Result<void>> BlobStore::grow() { STRATA_BLOB_HOP(impl_->md_thread, locked_grow(*impl_)); }

runtime::Thread& BlobStore::md_thread() const noexcept { return *impl_->md_thread; }

BsInfo BlobStore::info() const {
    const StoreImpl& s = *impl_;
    BsInfo i;
    i.cluster_sz = s.g.cluster_size;
    i.io_unit_size = s.g.io_unit_size;
    i.total_clusters = s.g.total_clusters;
    i.free_clusters = s.g.total_clusters - s.used_clusters.count();
    i.num_md_pages = s.g.num_md_pages;
    i.used_md_pages = static_cast<uint32_t>(s.used_pages.count());
    i.max_blobs = s.g.max_blobs;
    i.bstype = s.bstype;
    i.loaded_dirty = s.loaded_dirty;
    return i;
}

Task<Result<BlobId>> BlobStore::create_blob(BlobOptions options) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->create_blob(std::move(options)));
}
Task<Result<Blob*>> BlobStore::open_blob(BlobId id) {
    STRATA_BLOB_HOP(impl_->md_thread, locked_open(*impl_, id, true));
}
Task<Result<void>> BlobStore::close_blob(Blob* blob) {
    STRATA_BLOB_HOP(impl_->md_thread, locked_close(*impl_, &blob->impl()));
}
Task<Result<void>> BlobStore::delete_blob(BlobId id, ClearMethod clear) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->delete_blob(id, clear));
}
Task<Result<BlobId>> BlobStore::create_snapshot(BlobId id, std::vector<Xattr> xattrs) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->create_snapshot(id, std::move(xattrs)));
}
Task<Result<BlobId>> BlobStore::create_clone(BlobId snapshot_id, std::vector<Xattr> xattrs) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->create_clone(snapshot_id, std::move(xattrs)));
}
Task<Result<BlobId>> BlobStore::create_esnap_clone(std::string bdev_name, uint64_t num_clusters,
                                                  std::vector<Xattr> xattrs) {
    STRATA_BLOB_HOP(impl_->md_thread,
                    impl_->create_esnap_clone(std::move(bdev_name), num_clusters, std::move(xattrs)));
}
std::string_view Blob::external_snapshot() const noexcept { return impl_->md.external; }
bool Blob::is_degraded() const noexcept { return impl_->degraded(); }

namespace {
Task<Result<void>> locked_attach(StoreImpl& s, BlobImpl* b) {
    auto lock = co_await s.md_lock();
    co_return co_await s.attach_esnap(*b);
}
}  // namespace

Task<Result<Blob*>> BlobStore::open_blob_degraded(BlobId id) {
    STRATA_BLOB_HOP(impl_->md_thread, locked_open(*impl_, id, false));
}
Task<Result<void>> BlobStore::attach_external_snapshot(Blob* blob) {
    STRATA_BLOB_HOP(impl_->md_thread, locked_attach(*impl_, &blob->impl()));
}
Task<Result<void>> BlobStore::inflate(BlobId id) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->inflate(id, false));
}
Task<Result<void>> BlobStore::decouple_parent(BlobId id) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->inflate(id, true));
}
Task<Result<void>> BlobStore::set_parent(BlobId id, BlobId snapshot_id) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->set_parent(id, snapshot_id));
}
Task<Result<void>> BlobStore::set_external_parent(BlobId id, std::string bdev_name) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->set_external_parent(id, std::move(bdev_name)));
}
Task<Result<void>> BlobStore::shallow_copy(BlobId id, bdev::Desc& dst,
                                           std::function<void(uint64_t)> progress) {
    STRATA_BLOB_HOP(impl_->md_thread, impl_->shallow_copy(id, dst, std::move(progress)));
}

BlobId BlobStore::first_blob_id() const noexcept {
    return impl_->entries.empty() ? kInvalidBlobId : impl_->entries.begin()->first;
}
BlobId BlobStore::next_blob_id(BlobId prev) const noexcept {
    auto it = impl_->entries.upper_bound(prev);
    return it == impl_->entries.end() ? kInvalidBlobId : it->first;
}
std::vector<BlobId> BlobStore::clones(BlobId snapshot_id) const {
    std::vector<BlobId> out;
    for (auto& [id, e] : impl_->entries)
        if (e.parent == snapshot_id) out.push_back(id);
    return out;
}

}  // namespace strata::blob
