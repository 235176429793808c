// Lvstores and lvols: the metadata side. Everything here runs on the control Thread, one
// operation at a time (an asynchronous lock, handed from one operation to the next by message).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <vector>

#include <fmt/format.h>

#include <strata/runtime/host.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/task.h>

#include "internal.h"

namespace strata::lvol {

namespace {

using runtime::AsyncResult;

constexpr const char* kSuperXattr = "lvs_super";

void examine(bdev::Bdev& b);

// The module's state in one Host (one App): its control Thread and stores. Two Apps in one
// process (two Python Worlds) each have their own, so their store names never meet.
struct Globals {
    runtime::Thread* ctl = nullptr;
    std::vector<std::unique_ptr<Store>> stores;
    bool busy = false;
    std::vector<AsyncResult<bool>*> lock_waiters;
    std::atomic<uint32_t> examining{0};
    std::vector<AsyncResult<bool>*> examine_waiters;
    // Shallow copies by operation id (SPDK's, counted from 1), forgotten once reported finished.
    uint32_t copy_ids = 0;
    std::map<uint32_t, ShallowCopyStatus> copies;
};

// The running Thread's Host's (or the HostScope's): every entry point runs on a Thread of the
// App whose stores it names.
Globals& g() { return runtime::current_host().get<Globals>(); }

// ---- the operation lock ----

struct Lock {
    bool held = false;
    Lock() = default;
    explicit Lock(bool h) : held(h) {}
    Lock(Lock&& o) noexcept : held(std::exchange(o.held, false)) {}
    Lock& operator=(Lock&&) = delete;
    ~Lock() {
        if (!held) return;
        auto& w = g().lock_waiters;
        if (w.empty()) {
            g().busy = false;
            return;
        }
        AsyncResult<bool>* next = w.front();
        w.erase(w.begin());
        next->set(true);  // ownership passes on; busy stays set
    }
};

Task<Lock> lock() {
    if (!g().busy) {
        g().busy = true;
        co_return Lock(true);
    }
    AsyncResult<bool> w;
    g().lock_waiters.push_back(&w);
    co_await w;
    co_return Lock(true);
}

// ---- helpers ----

Error errorf(Errc c, std::string m) { return Error(c, std::move(m)); }

std::optional<std::string> xattr_string(const blob::Blob& b, std::string_view name) {
    auto v = b.get_xattr(name);
    if (!v.ok()) return std::nullopt;
    std::string s(v->begin(), v->end());
    // SPDK writes names with their terminating NUL.
    while (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
}

blob::Xattr xattr(const char* name, const std::string& value) {
    return {name, std::vector<uint8_t>(value.begin(), value.end())};
}

blob::ClearMethod blob_clear(ClearMethod m) noexcept {
    switch (m) {
    case ClearMethod::none: return blob::ClearMethod::none;
    case ClearMethod::write_zeroes: return blob::ClearMethod::write_zeroes;
    case ClearMethod::unmap: break;
    }
    return blob::ClearMethod::unmap;
}

// The lvol's clear method: its xattr (unmap, SPDK's default, when absent or unreadable), also
// handed to the blob for shrinking resizes.
void apply_clear_method(Lvol& l) {
    ClearMethod m = ClearMethod::unmap;
    if (auto v = xattr_string(*l.blob, "clear_method")) {
        auto p = parse_clear_method(*v);
        if (p.ok()) m = *p;
        else STRATA_WARNLOG(log_lvol, "lvol {}: {}; using unmap", l.name, p.error().message());
    }
    l.clear_method = m;
    l.blob->set_clear_method(blob_clear(m));
}

Result<void> check_name(std::string_view what, const std::string& name) {
    if (name.empty()) return errorf(Errc::invalid_argument, fmt::format("{} name is empty", what));
    if (name.size() > kNameMax)
        return errorf(Errc::invalid_argument,
                      fmt::format("{} name '{}' is longer than {} characters", what, name, kNameMax));
    if (name.find('\0') != std::string::npos)
        return errorf(Errc::invalid_argument, fmt::format("{} name contains a NUL", what));
    return {};
}

Store* find_store(const LvsRef& ref) {
    for (auto& s : g().stores) {
        if (s->removing) continue;
        if (!ref.uuid.empty() && s->uuid == ref.uuid) return s.get();
        if (ref.uuid.empty() && !ref.name.empty() && s->name == ref.name) return s.get();
    }
    return nullptr;
}

Result<Store*> resolve_store(const LvsRef& ref) {
    if (ref.uuid.empty() == ref.name.empty())
        return errorf(Errc::invalid_argument, "give exactly one of uuid and lvs_name");
    Store* s = find_store(ref);
    if (s == nullptr)
        return errorf(Errc::not_found,
                      fmt::format("lvstore {} not found", ref.uuid.empty() ? ref.name : ref.uuid));
    return s;
}

Store* store_on_bdev(const std::string& bdev_name) {
    for (auto& s : g().stores)
        if (s->base_bdev == bdev_name) return s.get();
    return nullptr;
}

Lvol* lvol_by_name(Store& s, const std::string& name) {
    for (auto& [id, l] : s.lvols)
        if (l->name == name) return l.get();
    return nullptr;
}

// By bdev name (UUID) or "lvs/lvol" alias.
Result<Lvol*> resolve_lvol(const std::string& name) {
    for (auto& s : g().stores) {
        if (s->removing) continue;
        for (auto& [id, l] : s->lvols)
            if (l->uuid == name || l->alias() == name) return l.get();
    }
    return errorf(Errc::not_found, fmt::format("lvol {} not found", name));
}

uint64_t clusters_for(const Store& s, uint64_t bytes) {
    const uint64_t c = s.bs->info().cluster_sz;
    return (bytes + c - 1) / c;
}

Task<Result<void>> close_store(Store* s, bool clean);

// Callers hold the operation lock.
Task<Result<void>> unregister_bdev_wait(bdev::Bdev* b) {
    if (b == nullptr) co_return Result<void>{};
    // An lvstore on this bdev (a store on an lvol) is unloaded first, cleanly: left to the
    // removal event, its handler would wait for the operation lock this caller holds, and the
    // unregistration waits for the store to let go of the bdev.
    for (;;) {
        Store* upper = nullptr;
        for (auto& st : g().stores)
            if (!st->removing && bdev::find(st->base_bdev) == b) upper = st.get();
        if (upper == nullptr) break;
        STRATA_NOTICELOG(log_lvol, "lvstore {}: unloading: its base bdev {} is being removed",
                         upper->name, upper->base_bdev);
        (void)co_await close_store(upper, true);
    }
    AsyncResult<Result<void>> done;
    bdev::unregister_bdev(b->name(), [&done](Result<void> r) { done.set(std::move(r)); });
    co_return co_await done;
}

// One base-bdev operation from the control Thread (clear methods, store destruction).
Task<Result<void>> base_io(bdev::Desc& d, bdev::Channel& ch, bdev::IoType t, uint64_t off,
                           uint64_t n) {
    struct W {
        AsyncResult<bdev::IoStatus> r;
        static void cb(void* c, const bdev::IoStatus& s) { static_cast<W*>(c)->r.set(s); }
    } w;
    Status s;
    switch (t) {
    case bdev::IoType::unmap: s = bdev::unmap(d, ch, off, n, &W::cb, &w); break;
    case bdev::IoType::write_zeroes: s = bdev::write_zeroes(d, ch, off, n, &W::cb, &w); break;
    default: s = bdev::flush(d, ch, off, n, &W::cb, &w); break;
    }
    if (!s.ok()) co_return Error(s);
    const bdev::IoStatus st = co_await w.r;
    if (!st.ok()) co_return errorf(st.code, fmt::format("bdev {}: {} failed", d.bdev().name(),
                                                        bdev::io_type_name(t)));
    co_return Result<void>{};
}

// Clears [0, blocks) of a bdev in bounded pieces.
Task<Result<void>> clear_bdev(const std::string& name, bdev::IoType t, uint64_t blocks) {
    auto d = bdev::open(name, true);
    if (!d.ok()) co_return d.error();
    bdev::Channel* ch = (*d)->get_channel();
    if (ch == nullptr) co_return errorf(Errc::shutdown, fmt::format("bdev {} refused a channel", name));
    const uint64_t piece = std::max<uint64_t>(1, (64ull << 20) / (*d)->bdev().block_size());
    Result<void> r;
    for (uint64_t off = 0; off < blocks && r.ok(); off += piece)
        r = co_await base_io(**d, *ch, t, off, std::min(piece, blocks - off));
    if (r.ok() && (*d)->bdev().supports(bdev::IoType::flush))
        r = co_await base_io(**d, *ch, bdev::IoType::flush, 0, blocks);
    bdev::put_channel(ch);
    co_return r;
}

// Whether the bdev starts with a blobstore super block of type LVOLSTORE (signature at byte 0,
// bstype at byte 124: docs/design/blobstore.md). Examine asks this through a read-only desc
// first, so probing a bdev that holds no lvstore never opens it for writing, which would keep
// other modules from claiming it meanwhile. The blobstore's load does the real checks.
Task<bool> looks_like_lvstore(const std::string& name) {
    auto d = bdev::open(name, false);
    if (!d.ok()) co_return false;
    const uint32_t bs = (*d)->bdev().block_size();
    if (bs == 0 || blob::kMdPageSize % bs != 0 || (*d)->bdev().num_blocks() * bs < blob::kMdPageSize)
        co_return false;
    bdev::Channel* ch = (*d)->get_channel();
    if (ch == nullptr) co_return false;
    std::vector<uint8_t> page(blob::kMdPageSize);
    struct W {
        AsyncResult<bdev::IoStatus> r;
        static void cb(void* c, const bdev::IoStatus& s) { static_cast<W*>(c)->r.set(s); }
    } w;
    bool ok = false;
    if (bdev::read(**d, *ch, page.data(), 0, blob::kMdPageSize / bs, &W::cb, &w).ok())
        ok = (co_await w.r).ok();
    bdev::put_channel(ch);
    if (!ok) co_return false;
    char type[blob::kBsTypeLen + 1] = {};
    std::memcpy(type, page.data() + 124, blob::kBsTypeLen);
    co_return std::memcmp(page.data(), "STRATABS", 8) == 0 && std::string_view(type) == kBsType;
}

void on_base_event(std::string uuid, bdev::Event e);

// Finishes building a store around a loaded (or new) blobstore: watch desc, channel device.
Result<void> attach_store(Store& s) {
    auto w = bdev::open(s.base_bdev, false,
                        [uuid = s.uuid](bdev::Event e, bdev::Bdev&) { on_base_event(uuid, e); });
    if (!w.ok()) return w.error();
    s.watch = std::move(*w);
    s.channels = std::make_unique<StoreChannels>(s);
    runtime::register_io_device(*s.channels);
    s.channels_registered = true;
    return {};
}

// Removes the store's bdevs, closes its blobs and channels; then unloads the blobstore (clean)
// or, when the base is gone, drops it (dirty on disk, like a crash). The Store is erased.
Task<Result<void>> close_store(Store* s, bool clean) {
    s->removing = true;
    for (auto& [id, l] : s->lvols) (void)co_await unregister_bdev_wait(l->bdev);
    // Clones before their snapshots, so no close waits on a parent reference.
    std::vector<Lvol*> order;
    for (auto& [id, l] : s->lvols) order.push_back(l.get());
    std::sort(order.begin(), order.end(), [](Lvol* a, Lvol* b) {
        return a->blob->is_clone() && !b->blob->is_clone();
    });
    for (Lvol* l : order) {
        auto r = co_await s->bs->close_blob(l->blob);
        if (!r.ok() && clean)
            STRATA_WARNLOG(log_lvol, "lvstore {}: closing lvol {}: {}", s->name, l->name,
                           r.error().message());
        l->blob = nullptr;
    }
    if (s->super) (void)co_await s->bs->close_blob(s->super);
    s->super = nullptr;
    if (s->channels_registered) {
        AsyncResult<bool> gone;
        runtime::unregister_io_device(
            *s->channels, [](void* c) { static_cast<AsyncResult<bool>*>(c)->set(true); }, &gone);
        co_await gone;
        s->channels_registered = false;
    }
    Result<void> r;
    if (clean) {
        r = co_await s->bs->unload();
        if (!r.ok())
            STRATA_WARNLOG(log_lvol, "lvstore {}: unload failed, left dirty: {}", s->name,
                           r.error().message());
    }
    s->bs.reset();
    s->watch.reset();
    auto& v = g().stores;
    v.erase(std::remove_if(v.begin(), v.end(), [s](auto& p) { return p.get() == s; }), v.end());
    co_return r;
}

Task<void> base_removed(std::string uuid) {
    auto lk = co_await lock();
    Store* s = nullptr;
    for (auto& p : g().stores)
        if (p->uuid == uuid) s = p.get();
    if (s == nullptr) co_return;
    STRATA_NOTICELOG(log_lvol, "lvstore {}: base bdev {} is going away", s->name, s->base_bdev);
    (void)co_await close_store(s, false);
}

void on_base_event(std::string uuid, bdev::Event e) {
    if (e != bdev::Event::remove || g().ctl == nullptr) return;
    runtime::spawn(*g().ctl, base_removed(std::move(uuid)), [] {});
}

// Opens the lvol's blob (already in `l`) as a bdev; on failure the Lvol stays without a bdev.
void add_lvol(Store& s, std::unique_ptr<Lvol> l) {
    Lvol& ref = *l;
    s.lvols[ref.id] = std::move(l);
    if (ref.blob->is_degraded()) {  // SPDK: a degraded lvol's bdev waits for its esnap (examine)
        STRATA_NOTICELOG(log_lvol, "lvol {} is degraded: external snapshot missing, no bdev yet",
                         ref.alias());
        return;
    }
    auto r = register_lvol_bdev(ref);
    if (!r.ok())
        STRATA_ERRLOG(log_lvol, "lvol {}: bdev not registered: {}", ref.alias(), r.error().message());
}

// Opens a just-created blob and gives it a bdev.
Task<Result<std::string>> adopt_blob(Store& s, blob::BlobId id, std::string name, std::string uuid) {
    auto b = co_await s.bs->open_blob(id);
    if (!b.ok()) co_return b.error();
    auto l = std::make_unique<Lvol>();
    l->lvs = &s;
    l->name = std::move(name);
    l->uuid = uuid;
    l->id = id;
    l->blob = *b;
    Lvol& ref = *l;
    s.lvols[id] = std::move(l);
    auto r = register_lvol_bdev(ref);
    if (!r.ok()) co_return r.error();
    co_return uuid;
}

// Random per creation from the Host's PRNG (seeded from the simulator's seed under it, so a
// seed replays the same UUIDs).
std::string fresh_uuid() {
    for (;;) {
        std::string u = runtime::current_host().new_uuid();
        bool taken = bdev::find(u) != nullptr;
        for (auto& s : g().stores) taken = taken || s->uuid == u;
        if (!taken) return u;
    }
}

// ---- the operations, on the control Thread ----

Task<Result<std::string>> do_create_lvstore(LvsOptions o) {
    auto lk = co_await lock();
    if (auto r = check_name("lvstore", o.lvs_name); !r.ok()) co_return r.error();
    for (auto& s : g().stores)
        if (s->name == o.lvs_name)
            co_return errorf(Errc::already_exists, fmt::format("lvstore {} already exists", o.lvs_name));
    if (o.num_md_pages_per_cluster_ratio == 0 || o.num_md_pages_per_cluster_ratio > 1000)
        co_return errorf(Errc::invalid_argument, "num_md_pages_per_cluster_ratio must be 1..1000");
    if (o.cluster_sz < blob::kMdPageSize || o.cluster_sz % blob::kMdPageSize != 0)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("cluster_sz {} is not a multiple of {}", o.cluster_sz,
                                     blob::kMdPageSize));
    bdev::Bdev* b = bdev::find(o.bdev_name);
    if (b == nullptr) co_return errorf(Errc::not_found, fmt::format("bdev {} not found", o.bdev_name));
    if (*b->claimed_by() != '\0')
        co_return errorf(Errc::permission_denied,
                         fmt::format("bdev {} is claimed by {}", o.bdev_name, b->claimed_by()));
    const uint64_t bytes = b->num_blocks() * b->block_size();
    const uint64_t clusters = bytes / o.cluster_sz;
    if (clusters < 2)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("bdev {} ({} bytes) is too small for clusters of {}",
                                     o.bdev_name, bytes, o.cluster_sz));
    if (o.clear_method != ClearMethod::none) {
        const auto t = o.clear_method == ClearMethod::unmap ? bdev::IoType::unmap
                                                            : bdev::IoType::write_zeroes;
        if (t != bdev::IoType::unmap || b->supports(t)) {
            auto r = co_await clear_bdev(o.bdev_name, t, b->num_blocks());
            if (!r.ok()) co_return r.error();
        }
    }
    blob::BsOptions bo;
    bo.cluster_sz = o.cluster_sz;
    bo.num_md_pages = static_cast<uint32_t>(
        std::max<uint64_t>(16, clusters * o.num_md_pages_per_cluster_ratio / 100));
    bo.bstype = kBsType;
    bo.claim_module = &kLvolModule;
    auto bs = co_await blob::BlobStore::init(o.bdev_name, bo);
    if (!bs.ok()) co_return bs.error();
    auto s = std::make_unique<Store>();
    s->uuid = fresh_uuid();
    s->name = o.lvs_name;
    s->base_bdev = o.bdev_name;
    s->bs = std::move(*bs);
    blob::BlobOptions super;
    super.xattrs.push_back(xattr(kSuperXattr, "1"));
    super.xattrs.push_back(xattr("name", s->name));
    super.xattrs.push_back(xattr("uuid", s->uuid));
    auto id = co_await s->bs->create_blob(std::move(super));
    if (!id.ok()) {
        (void)co_await s->bs->unload();
        co_return id.error();
    }
    auto sb = co_await s->bs->open_blob(*id);
    if (!sb.ok()) {
        (void)co_await s->bs->unload();
        co_return sb.error();
    }
    s->super = *sb;
    if (auto r = attach_store(*s); !r.ok()) {
        (void)co_await s->bs->close_blob(s->super);
        (void)co_await s->bs->unload();
        co_return r.error();
    }
    STRATA_NOTICELOG(log_lvol, "lvstore {} ({}) created on {}", s->name, s->uuid, s->base_bdev);
    std::string uuid = s->uuid;
    g().stores.push_back(std::move(s));
    co_return uuid;
}

Task<Result<void>> do_load_lvstore(std::string bdev_name) {
    auto lk = co_await lock();
    if (store_on_bdev(bdev_name) != nullptr) co_return Result<void>{};
    bdev::Bdev* b = bdev::find(bdev_name);
    if (b == nullptr) co_return errorf(Errc::not_found, fmt::format("bdev {} not found", bdev_name));
    if (*b->claimed_by() != '\0')
        co_return errorf(Errc::permission_denied, fmt::format("bdev {} is claimed", bdev_name));
    if (!co_await looks_like_lvstore(bdev_name))
        co_return errorf(Errc::not_found, fmt::format("no lvstore on {}", bdev_name));
    blob::LoadOptions lo;
    lo.bstype = kBsType;
    lo.claim_module = &kLvolModule;
    auto bs = co_await blob::BlobStore::load(bdev_name, lo);
    // It looked like an lvstore: a failed load is damage (corrupt, io_error), not absence, so
    // examine logs it instead of treating the bdev as a plain one.
    if (!bs.ok()) co_return errorf(bs.code(), fmt::format("lvstore on {} does not load: {}", bdev_name,
                                                          bs.error().message()));
    auto s = std::make_unique<Store>();
    s->base_bdev = bdev_name;
    s->bs = std::move(*bs);
    std::vector<std::unique_ptr<Lvol>> found;
    Result<void> r;
    for (blob::BlobId id = s->bs->first_blob_id(); id != blob::kInvalidBlobId;
         id = s->bs->next_blob_id(id)) {
        // Degraded (an external snapshot bdev missing) is not an error: the lvol is listed and
        // its bdev registers when that bdev appears.
        auto ob = co_await s->bs->open_blob_degraded(id);
        if (!ob.ok()) {
            r = errorf(ob.code(), fmt::format("lvstore on {}: blob {:#x}: {}", bdev_name, id,
                                              ob.error().message()));
            break;
        }
        blob::Blob* bl = *ob;
        auto name = xattr_string(*bl, "name");
        auto uuid = xattr_string(*bl, "uuid");
        if (bl->get_xattr(kSuperXattr).ok() && name && uuid && s->super == nullptr) {
            s->super = bl;
            s->name = *name;
            s->uuid = *uuid;
            continue;
        }
        if (!name || !uuid) {
            STRATA_WARNLOG(log_lvol, "lvstore on {}: blob {:#x} has no name/uuid, skipped",
                           bdev_name, id);
            (void)co_await s->bs->close_blob(bl);
            continue;
        }
        auto l = std::make_unique<Lvol>();
        l->name = *name;
        l->uuid = *uuid;
        l->id = id;
        l->blob = bl;
        apply_clear_method(*l);
        found.push_back(std::move(l));
    }
    if (r.ok() && s->super == nullptr)
        r = errorf(Errc::corrupt, fmt::format("blobstore on {} has type {} but no lvstore super blob",
                                              bdev_name, kBsType));
    if (r.ok())
        for (auto& o : g().stores)
            if (o->name == s->name || o->uuid == s->uuid)
                r = errorf(Errc::already_exists,
                           fmt::format("lvstore on {}: name {} or uuid {} already loaded from {}",
                                       bdev_name, s->name, s->uuid, o->base_bdev));
    if (r.ok()) r = attach_store(*s);
    if (!r.ok()) {
        for (auto& l : found) (void)co_await s->bs->close_blob(l->blob);
        if (s->super) (void)co_await s->bs->close_blob(s->super);
        (void)co_await s->bs->unload();
        co_return r;
    }
    Store& ref = *s;
    g().stores.push_back(std::move(s));
    for (auto& l : found) {
        l->lvs = &ref;
        add_lvol(ref, std::move(l));
    }
    STRATA_NOTICELOG(log_lvol, "lvstore {} ({}) loaded from {}{}: {} lvols", ref.name, ref.uuid,
                     bdev_name, ref.bs->info().loaded_dirty ? " (dirty)" : "", ref.lvols.size());
    co_return Result<void>{};
}

Task<Result<void>> do_delete_lvstore(LvsRef ref) {
    auto lk = co_await lock();
    auto s = resolve_store(ref);
    if (!s.ok()) co_return s.error();
    const std::string base = (*s)->base_bdev;
    auto r = co_await close_store(*s, true);
    if (!r.ok()) co_return r;
    // The store stops being one: the blobstore's super block (first page) is zeroed.
    bdev::Bdev* b = bdev::find(base);
    if (b == nullptr) co_return Result<void>{};  // the base went meanwhile: nothing to clear
    co_return co_await clear_bdev(base, bdev::IoType::write_zeroes,
                                  std::max<uint64_t>(1, blob::kMdPageSize / b->block_size()));
}

Task<Result<void>> do_unload_lvstore(LvsRef ref) {
    auto lk = co_await lock();
    auto s = resolve_store(ref);
    if (!s.ok()) co_return s.error();
    co_return co_await close_store(*s, true);
}

Task<void> do_unload_all() {
    auto lk = co_await lock();
    // A store on another store's lvol is unloaded first by unregister_bdev_wait.
    while (!g().stores.empty()) (void)co_await close_store(g().stores.front().get(), true);
}

Task<Result<void>> do_rename_lvstore(std::string old_name, std::string new_name) {
    auto lk = co_await lock();
    auto s = resolve_store({"", old_name});
    if (!s.ok()) co_return s.error();
    if (auto r = check_name("lvstore", new_name); !r.ok()) co_return r.error();
    if (old_name == new_name) co_return Result<void>{};
    if (find_store({"", new_name}) != nullptr)
        co_return errorf(Errc::already_exists, fmt::format("lvstore {} already exists", new_name));
    Store& st = **s;
    for (auto& [id, l] : st.lvols)
        if (bdev::find(new_name + "/" + l->name) != nullptr)
            co_return errorf(Errc::already_exists,
                             fmt::format("bdev name {}/{} is taken", new_name, l->name));
    if (auto r = st.super->set_xattr("name", new_name); !r.ok()) co_return r;
    auto r = co_await st.super->sync_md();
    if (!r.ok()) {
        (void)st.super->set_xattr("name", st.name);
        co_return r;
    }
    st.name = new_name;
    // The lvol bdevs' aliases follow (as SPDK's spdk_bdev_alias_del/add).
    for (auto& [id, l] : st.lvols) {
        if (l->bdev == nullptr) continue;
        auto a = bdev::rename_alias(*l->bdev, old_name + "/" + l->name, l->alias());
        if (!a.ok()) STRATA_WARNLOG(log_lvol, "lvol {}: {}", l->alias(), a.error().message());
    }
    co_return Result<void>{};
}

// SPDK's spdk_lvs_grow_live: the blobstore takes in its base's current size.
Task<Result<void>> do_grow_lvstore(LvsRef ref) {
    auto lk = co_await lock();
    auto s = resolve_store(ref);
    if (!s.ok()) co_return s.error();
    Store& st = **s;
    const uint64_t before = st.bs->info().total_clusters;
    auto r = co_await st.bs->grow();
    if (!r.ok())
        co_return errorf(r.code(), fmt::format("lvstore {}: {}", st.name, r.error().message()));
    if (st.bs->info().total_clusters != before)
        STRATA_NOTICELOG(log_lvol, "lvstore {} grew with bdev {}: {} -> {} clusters", st.name,
                         st.base_bdev, before, st.bs->info().total_clusters);
    co_return Result<void>{};
}

Task<Result<std::string>> do_create_lvol(LvolOptions o) {
    auto lk = co_await lock();
    auto s = resolve_store(o.lvs);
    if (!s.ok()) co_return s.error();
    Store& st = **s;
    if (auto r = check_name("lvol", o.lvol_name); !r.ok()) co_return r.error();
    if (lvol_by_name(st, o.lvol_name) != nullptr)
        co_return errorf(Errc::already_exists,
                         fmt::format("lvol {}/{} already exists", st.name, o.lvol_name));
    if (o.size_bytes == 0) co_return errorf(Errc::invalid_argument, "lvol size must be positive");
    const uint64_t n = clusters_for(st, o.size_bytes);
    const blob::BsInfo info = st.bs->info();
    if (!o.thin_provision && n > info.free_clusters)
        co_return errorf(Errc::no_space,
                         fmt::format("lvstore {}: {} clusters wanted, {} free", st.name, n,
                                     info.free_clusters));
    std::string uuid = fresh_uuid();
    blob::BlobOptions bo;
    bo.num_clusters = n;
    bo.thin_provision = o.thin_provision;
    bo.xattrs.push_back(xattr("name", o.lvol_name));
    bo.xattrs.push_back(xattr("uuid", uuid));
    bo.xattrs.push_back(xattr("clear_method", clear_method_name(o.clear_method)));
    auto id = co_await st.bs->create_blob(std::move(bo));
    if (!id.ok()) co_return id.error();
    auto r = co_await adopt_blob(st, *id, o.lvol_name, uuid);
    if (auto it = st.lvols.find(*id); it != st.lvols.end()) apply_clear_method(*it->second);
    co_return r;
}

Task<Result<std::string>> do_snapshot(std::string lvol_name, std::string snapshot_name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(lvol_name);
    if (!l.ok()) co_return l.error();
    Store& st = *(*l)->lvs;
    if (auto r = check_name("snapshot", snapshot_name); !r.ok()) co_return r.error();
    if (lvol_by_name(st, snapshot_name) != nullptr)
        co_return errorf(Errc::already_exists,
                         fmt::format("lvol {}/{} already exists", st.name, snapshot_name));
    std::string uuid = fresh_uuid();
    std::vector<blob::Xattr> xs;
    xs.push_back(xattr("name", snapshot_name));
    xs.push_back(xattr("uuid", uuid));
    auto id = co_await st.bs->create_snapshot((*l)->id, std::move(xs));
    if (!id.ok()) co_return id.error();
    co_return co_await adopt_blob(st, *id, snapshot_name, uuid);
}

Task<Result<std::string>> do_clone(std::string snapshot_name, std::string clone_name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(snapshot_name);
    if (!l.ok()) co_return l.error();
    Store& st = *(*l)->lvs;
    if (auto r = check_name("clone", clone_name); !r.ok()) co_return r.error();
    if (lvol_by_name(st, clone_name) != nullptr)
        co_return errorf(Errc::already_exists,
                         fmt::format("lvol {}/{} already exists", st.name, clone_name));
    if (!(*l)->blob->is_read_only())
        co_return errorf(Errc::invalid_argument,
                         fmt::format("lvol {} is not read-only: clone a snapshot", snapshot_name));
    std::string uuid = fresh_uuid();
    std::vector<blob::Xattr> xs;
    xs.push_back(xattr("name", clone_name));
    xs.push_back(xattr("uuid", uuid));
    auto id = co_await st.bs->create_clone((*l)->id, std::move(xs));
    if (!id.ok()) co_return id.error();
    co_return co_await adopt_blob(st, *id, clone_name, uuid);
}

// The bdev an external snapshot names: by name or alias, else by UUID (SPDK records the UUID;
// the blob here opens by name). Neither the store's own base nor one of its lvols.
Result<bdev::Bdev*> find_esnap_bdev(const Store& st, const std::string& esnap) {
    bdev::Bdev* b = bdev::find(esnap);
    if (b == nullptr)
        for (bdev::Bdev* c : bdev::list())
            if (c->uuid() == esnap) b = c;
    if (b == nullptr) return errorf(Errc::not_found, fmt::format("bdev {} not found", esnap));
    if (b->name() == st.base_bdev)
        return errorf(Errc::invalid_argument,
                      fmt::format("bdev {} is the lvstore's own base", b->name()));
    // An lvol of this store would hold its own store's bdev open (its delete would wait for
    // itself): bdev_lvol_snapshot + bdev_lvol_clone do that job.
    for (auto& [lid, l] : st.lvols)
        if (l->bdev == b)
            return errorf(Errc::invalid_argument,
                          fmt::format("bdev {} is an lvol of lvstore {}: use a snapshot of it",
                                      b->name(), st.name));
    return b;
}

Task<Result<void>> do_set_parent(std::string lvol_name, std::string parent_name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(lvol_name);
    if (!l.ok()) co_return l.error();
    auto p = resolve_lvol(parent_name);
    if (!p.ok()) co_return p.error();
    if ((*p)->lvs != (*l)->lvs)
        co_return errorf(Errc::invalid_argument,
                         fmt::format("snapshot {} is in another lvstore than lvol {}",
                                     (*p)->alias(), (*l)->alias()));
    co_return co_await (*l)->lvs->bs->set_parent((*l)->id, (*p)->id);
}

Task<Result<void>> do_set_parent_bdev(std::string lvol_name, std::string esnap) {
    auto lk = co_await lock();
    auto l = resolve_lvol(lvol_name);
    if (!l.ok()) co_return l.error();
    auto b = find_esnap_bdev(*(*l)->lvs, esnap);
    if (!b.ok()) co_return b.error();
    co_return co_await (*l)->lvs->bs->set_external_parent((*l)->id, (*b)->name());
}

// Runs a started shallow copy to its end, holding the operation lock (so the lvol and its
// store stay) and the claimed destination.
Task<void> run_shallow_copy(Lock lk, Lvol* lv, std::unique_ptr<bdev::Desc> dst, uint32_t op) {
    (void)lk;  // held until the copy ends
    auto r = co_await lv->lvs->bs->shallow_copy(lv->id, *dst, [op](uint64_t n) {
        if (auto it = g().copies.find(op); it != g().copies.end()) it->second.copied_clusters = n;
    });
    bdev::release_claim(*dst);
    dst.reset();
    auto it = g().copies.find(op);
    if (it == g().copies.end()) co_return;
    it->second.done = true;
    if (!r.ok()) {
        STRATA_ERRLOG(log_lvol, "shallow copy {} of lvol {}: {}", op, lv->alias(),
                      r.error().message());
        it->second.error = r.error().message();
    }
}

Task<Result<uint32_t>> do_start_shallow_copy(std::string src, std::string dst_name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(src);
    if (!l.ok()) co_return l.error();
    auto d = bdev::open(dst_name, true);
    if (!d.ok()) co_return d.error();
    // SPDK claims the destination for the copy (nothing else writes it meanwhile).
    if (auto c = bdev::claim(**d, kLvolModule); !c.ok()) co_return c.error();
    const uint32_t op = ++g().copy_ids;
    ShallowCopyStatus& s = g().copies[op];
    s.total_clusters = (*l)->blob->num_allocated_clusters();
    runtime::spawn(*g().ctl, run_shallow_copy(std::move(lk), *l, std::move(*d), op), [] {});
    co_return op;
}

Task<Result<std::string>> do_clone_bdev(std::string esnap, LvsRef ref, std::string clone_name) {
    auto lk = co_await lock();
    auto s = resolve_store(ref);
    if (!s.ok()) co_return s.error();
    Store& st = **s;
    if (auto r = check_name("clone", clone_name); !r.ok()) co_return r.error();
    if (lvol_by_name(st, clone_name) != nullptr)
        co_return errorf(Errc::already_exists,
                         fmt::format("lvol {}/{} already exists", st.name, clone_name));
    auto b = find_esnap_bdev(st, esnap);
    if (!b.ok()) co_return b.error();
    std::string uuid = fresh_uuid();
    std::vector<blob::Xattr> xs;
    xs.push_back(xattr("name", clone_name));
    xs.push_back(xattr("uuid", uuid));
    auto id = co_await st.bs->create_esnap_clone((*b)->name(), 0, std::move(xs));
    if (!id.ok()) co_return id.error();
    auto r = co_await adopt_blob(st, *id, clone_name, uuid);
    if (auto it = st.lvols.find(*id); it != st.lvols.end()) apply_clear_method(*it->second);
    co_return r;
}

bool any_degraded() {
    for (auto& s : g().stores)
        for (auto& [id, l] : s->lvols)
            if (l->blob != nullptr && l->blob->is_degraded()) return true;
    return false;
}

// A bdev was registered: degraded lvols whose external snapshot it is get it and their bdev.
// (Each tries its own recorded bdev name: a missing one answers not_found, cheaply.)
Task<void> attach_esnaps(std::string name) {
    if (!any_degraded() && !g().busy) co_return;  // nothing degraded, no load in progress
    auto lk = co_await lock();
    if (!any_degraded()) co_return;
    for (auto& s : g().stores) {
        if (s->removing) continue;
        for (auto& [id, l] : s->lvols) {
            if (!l->blob->is_degraded()) continue;
            auto r = co_await s->bs->attach_external_snapshot(l->blob);
            if (!r.ok()) {
                if (r.code() != Errc::not_found)
                    STRATA_ERRLOG(log_lvol, "lvol {}: external snapshot from {}: {}", l->alias(),
                                  name, r.error().message());
                continue;
            }
            // Attaching one blob of a chain heals its relatives too: register every one healed.
            for (auto& [id2, l2] : s->lvols) {
                if (l2->bdev != nullptr || l2->blob->is_degraded()) continue;
                auto rr = register_lvol_bdev(*l2);
                if (!rr.ok())
                    STRATA_ERRLOG(log_lvol, "lvol {}: bdev not registered: {}", l2->alias(),
                                  rr.error().message());
                else
                    STRATA_NOTICELOG(log_lvol, "lvol {}: external snapshot {} arrived, bdev registered",
                                     l2->alias(), name);
            }
        }
    }
}

Task<Result<void>> do_rename_lvol(std::string old_name, std::string new_name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(old_name);
    if (!l.ok()) co_return l.error();
    Lvol& lv = **l;
    if (auto r = check_name("lvol", new_name); !r.ok()) co_return r.error();
    if (lv.name == new_name) co_return Result<void>{};
    if (lvol_by_name(*lv.lvs, new_name) != nullptr)
        co_return errorf(Errc::already_exists,
                         fmt::format("lvol {}/{} already exists", lv.lvs->name, new_name));
    const std::string old_alias = lv.alias();
    const std::string new_alias = lv.lvs->name + "/" + new_name;
    if (bdev::find(new_alias) != nullptr)
        co_return errorf(Errc::already_exists, fmt::format("bdev name {} is taken", new_alias));
    if (auto r = lv.blob->set_xattr("name", new_name); !r.ok()) co_return r;
    auto r = co_await lv.blob->sync_md();
    if (!r.ok()) {
        (void)lv.blob->set_xattr("name", lv.name);
        co_return r;
    }
    lv.name = new_name;
    if (lv.bdev != nullptr) r = bdev::rename_alias(*lv.bdev, old_alias, new_alias);
    co_return r;
}

Task<Result<void>> do_resize(std::string name, uint64_t size_bytes) {
    auto lk = co_await lock();
    auto l = resolve_lvol(name);
    if (!l.ok()) co_return l.error();
    Lvol& lv = **l;
    if (size_bytes == 0) co_return errorf(Errc::invalid_argument, "lvol size must be positive");
    const uint64_t n = clusters_for(*lv.lvs, size_bytes);
    if (!lv.blob->is_thin() && n > lv.blob->num_clusters() &&
        n - lv.blob->num_clusters() > lv.lvs->bs->info().free_clusters)
        co_return errorf(Errc::no_space, fmt::format("lvstore {}: not enough free clusters to grow "
                                                     "{} to {} clusters",
                                                     lv.lvs->name, lv.name, n));
    auto r = co_await lv.blob->resize(n);
    if (!r.ok()) co_return r;
    if (lv.bdev != nullptr) lv.bdev->notify_resize(lv.blob->num_io_units());
    co_return Result<void>{};
}

Task<Result<void>> do_set_read_only(std::string name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(name);
    if (!l.ok()) co_return l.error();
    (*l)->blob->set_read_only();
    co_return co_await (*l)->blob->sync_md();
}

Task<Result<void>> do_inflate(std::string name, bool only_parent) {
    auto lk = co_await lock();
    auto l = resolve_lvol(name);
    if (!l.ok()) co_return l.error();
    Lvol& lv = **l;
    if (!lv.blob->is_clone())
        co_return errorf(Errc::invalid_argument, fmt::format("lvol {} has no parent", name));
    // (No co_await inside ?: — GCC 12 miscompiles it.)
    Result<void> r;
    if (only_parent) r = co_await lv.lvs->bs->decouple_parent(lv.id);
    else r = co_await lv.lvs->bs->inflate(lv.id);
    co_return r;
}

Task<Result<void>> do_delete_lvol(std::string name) {
    auto lk = co_await lock();
    auto l = resolve_lvol(name);
    if (!l.ok()) co_return l.error();
    Lvol& lv = **l;
    Store& st = *lv.lvs;
    const auto clones = st.bs->clones(lv.id);
    if (clones.size() > 1)
        co_return errorf(Errc::permission_denied, fmt::format("snapshot {} has {} clones: delete or inflate "
                                                 "all but one first",
                                                 lv.alias(), clones.size()));
    auto r = co_await unregister_bdev_wait(lv.bdev);
    if (!r.ok()) co_return r;
    r = co_await st.bs->close_blob(lv.blob);
    // The blobstore clears what the delete frees (not clusters a snapshot hands to its clone).
    if (r.ok()) r = co_await st.bs->delete_blob(lv.id, blob_clear(lv.clear_method));
    if (!r.ok()) {
        // Keep the lvol usable: reopen it and give its bdev back.
        auto b = co_await st.bs->open_blob_degraded(lv.id);
        if (b.ok()) {
            lv.blob = *b;
            lv.blob->set_clear_method(blob_clear(lv.clear_method));
            if (!lv.blob->is_degraded()) (void)register_lvol_bdev(lv);
            co_return r;
        }
        // Its blob is closed and does not open again (e.g. the store stopped after a power
        // loss, with the delete's tombstone on disk after all): the lvol cannot stay listed
        // with a blob it no longer holds. Loading the store again shows what is on disk.
        STRATA_ERRLOG(log_lvol,
                      "lvol {}: delete failed ({}) and its blob does not open again "
                      "({}): no longer listed",
                      lv.alias(), r.error().message(), b.error().message());
        const blob::BlobId gone = lv.id;
        st.lvols.erase(gone);
        co_return r;
    }
    const blob::BlobId id = lv.id;
    st.lvols.erase(id);
    co_return Result<void>{};
}

Task<void> do_wait_examine() {
    while (g().examining.load() != 0) {
        AsyncResult<bool> w;
        g().examine_waiters.push_back(&w);
        co_await w;
    }
}

Task<Result<void>> examine_task(std::string name) {
    auto r = co_await do_load_lvstore(name);
    // not_found: no lvstore on it; permission_denied: another module claimed it first (a delay
    // or passthru bdev on it), so it is not ours to examine. Neither is an error.
    if (!r.ok() && r.code() != Errc::not_found && r.code() != Errc::permission_denied)
        STRATA_ERRLOG(log_lvol, "examine of {}: {}", name, r.error().message());
    co_return r;
}

void examine_done() {
    if (g().examining.fetch_sub(1) != 1) return;
    auto waiters = std::move(g().examine_waiters);
    g().examine_waiters.clear();
    for (auto* w : waiters) w->set(true);
}

void examine(bdev::Bdev& b) {
    // Any bdev (an lvol too) may be the external snapshot a degraded lvol waits for; the store
    // list is the control Thread's, so the check runs there.
    if (g().ctl != nullptr) {
        g().examining.fetch_add(1);
        runtime::spawn(*g().ctl, attach_esnaps(b.name()), [] { examine_done(); });
    }
    if (&b.module() == &kLvolModule || g().ctl == nullptr || *b.claimed_by() != '\0') return;
    g().examining.fetch_add(1);
    runtime::spawn(*g().ctl, examine_task(b.name()), [](Result<void>) { examine_done(); });
}

// Runs an operation on the control Thread and comes back to the caller's.
template <class T>
Task<T> on_ctl(Task<T> t) {
    runtime::Thread* caller = runtime::current_thread();
    STRATA_ASSERT_MSG(g().ctl != nullptr,
                      "lvol: this Host has no control Thread (set_control_thread)");
    co_await runtime::resume_on(*g().ctl);
    T result = co_await t;
    if (caller != nullptr) co_await runtime::resume_on(*caller);
    co_return result;
}

Task<void> on_ctl_void(Task<void> t) {
    runtime::Thread* caller = runtime::current_thread();
    STRATA_ASSERT_MSG(g().ctl != nullptr,
                      "lvol: this Host has no control Thread (set_control_thread)");
    co_await runtime::resume_on(*g().ctl);
    co_await t;
    if (caller != nullptr) co_await runtime::resume_on(*caller);
}

LvolInfo lvol_info(const Lvol& l) {
    const blob::Blob& b = *l.blob;
    LvolInfo i;
    i.alias = l.alias();
    i.uuid = l.uuid;
    i.name = l.name;
    i.lvs_uuid = l.lvs->uuid;
    i.lvs_name = l.lvs->name;
    i.base_bdev = l.lvs->base_bdev;
    i.num_clusters = b.num_clusters();
    i.num_allocated_clusters = b.num_allocated_clusters();
    i.num_blocks = b.num_io_units();
    i.thin_provision = b.is_thin();
    i.read_only = b.is_read_only();
    i.snapshot = b.is_snapshot();
    i.clone = b.is_clone();
    if (i.clone) {
        auto it = l.lvs->lvols.find(b.parent_id());
        if (it != l.lvs->lvols.end()) i.base_snapshot = it->second->name;
    }
    i.external_snapshot_name = std::string(b.external_snapshot());
    i.esnap_clone = !i.external_snapshot_name.empty();
    i.degraded = b.is_degraded();
    i.clear_method = l.clear_method;
    if (i.snapshot)
        for (blob::BlobId c : l.lvs->bs->clones(b.id())) {
            auto it = l.lvs->lvols.find(c);
            if (it != l.lvs->lvols.end()) i.clones.push_back(it->second->name);
        }
    return i;
}

}  // namespace

namespace {
void wait_examine_hook(std::function<void()> done) {
    runtime::Thread* caller = runtime::current_thread();
    if (g().ctl == nullptr || caller == nullptr) {
        done();
        return;
    }
    runtime::spawn(*g().ctl, do_wait_examine(), [caller, done = std::move(done)]() mutable {
        if (caller == g().ctl) done();
        else (void)caller->post(std::move(done));
    });
}
}  // namespace

const bdev::Module kLvolModule{"lvol", &examine, nullptr, nullptr, &wait_examine_hook};

std::string Lvol::alias() const { return lvs->name + "/" + name; }

Result<ClearMethod> parse_clear_method(std::string_view t) {
    if (t == "none") return ClearMethod::none;
    if (t == "unmap") return ClearMethod::unmap;
    if (t == "write_zeroes") return ClearMethod::write_zeroes;
    return errorf(Errc::invalid_argument,
                  fmt::format("clear_method '{}' is not none, unmap or write_zeroes", t));
}

const char* clear_method_name(ClearMethod m) noexcept {
    switch (m) {
    case ClearMethod::none: return "none";
    case ClearMethod::unmap: return "unmap";
    case ClearMethod::write_zeroes: return "write_zeroes";
    }
    return "?";
}

void set_control_thread(runtime::Thread& thread) noexcept {
    thread.host().get<Globals>().ctl = &thread;
}

Task<Result<std::string>> create_lvstore(LvsOptions o) { return on_ctl(do_create_lvstore(std::move(o))); }
Task<Result<void>> delete_lvstore(LvsRef ref) { return on_ctl(do_delete_lvstore(std::move(ref))); }
Task<Result<void>> rename_lvstore(std::string a, std::string b) {
    return on_ctl(do_rename_lvstore(std::move(a), std::move(b)));
}
Task<Result<void>> unload_lvstore(LvsRef ref) { return on_ctl(do_unload_lvstore(std::move(ref))); }
Task<Result<void>> grow_lvstore(LvsRef ref) { return on_ctl(do_grow_lvstore(std::move(ref))); }
Task<void> unload_all() { return on_ctl_void(do_unload_all()); }
Task<Result<void>> load_lvstore(std::string n) { return on_ctl(do_load_lvstore(std::move(n))); }
Task<void> wait_examine() { return on_ctl_void(do_wait_examine()); }

Task<Result<std::string>> create_lvol(LvolOptions o) { return on_ctl(do_create_lvol(std::move(o))); }
Task<Result<std::string>> create_snapshot(std::string a, std::string b) {
    return on_ctl(do_snapshot(std::move(a), std::move(b)));
}
Task<Result<std::string>> create_clone(std::string a, std::string b) {
    return on_ctl(do_clone(std::move(a), std::move(b)));
}
Task<Result<std::string>> create_esnap_clone(std::string esnap, LvsRef lvs, std::string clone_name) {
    return on_ctl(do_clone_bdev(std::move(esnap), std::move(lvs), std::move(clone_name)));
}
Task<Result<void>> rename_lvol(std::string a, std::string b) {
    return on_ctl(do_rename_lvol(std::move(a), std::move(b)));
}
Task<Result<void>> resize_lvol(std::string n, uint64_t size) { return on_ctl(do_resize(std::move(n), size)); }
Task<Result<void>> set_read_only(std::string n) { return on_ctl(do_set_read_only(std::move(n))); }
Task<Result<void>> inflate(std::string n) { return on_ctl(do_inflate(std::move(n), false)); }
Task<Result<void>> decouple_parent(std::string n) { return on_ctl(do_inflate(std::move(n), true)); }
Task<Result<void>> delete_lvol(std::string n) { return on_ctl(do_delete_lvol(std::move(n))); }

Result<std::vector<LvsInfo>> get_lvstores(const LvsRef& filter) {
    std::vector<LvsInfo> out;
    const bool all = filter.uuid.empty() && filter.name.empty();
    if (!all && find_store(filter) == nullptr)
        return errorf(Errc::not_found, fmt::format("lvstore {} not found",
                                                   filter.uuid.empty() ? filter.name : filter.uuid));
    for (auto& s : g().stores) {
        if (s->removing || (!all && s.get() != find_store(filter))) continue;
        const blob::BsInfo bi = s->bs->info();
        LvsInfo i;
        i.uuid = s->uuid;
        i.name = s->name;
        i.base_bdev = s->base_bdev;
        i.free_clusters = bi.free_clusters;
        // Every data cluster in use belongs to exactly one (open) blob.
        uint64_t used = 0;
        for (auto& [id, l] : s->lvols) used += l->blob->num_allocated_clusters();
        i.total_data_clusters = bi.free_clusters + used;
        i.block_size = bi.io_unit_size;
        i.cluster_size = bi.cluster_sz;
        out.push_back(std::move(i));
    }
    return out;
}

Result<std::vector<LvolInfo>> get_lvols(const LvsRef& filter) {
    std::vector<LvolInfo> out;
    const bool all = filter.uuid.empty() && filter.name.empty();
    Store* only = all ? nullptr : find_store(filter);
    if (!all && only == nullptr)
        return errorf(Errc::not_found, fmt::format("lvstore {} not found",
                                                   filter.uuid.empty() ? filter.name : filter.uuid));
    for (auto& s : g().stores) {
        if (s->removing || (only != nullptr && s.get() != only)) continue;
        for (auto& [id, l] : s->lvols) out.push_back(lvol_info(*l));
    }
    return out;
}

Task<Result<void>> set_parent(std::string lvol_name, std::string parent_name) {
    return on_ctl(do_set_parent(std::move(lvol_name), std::move(parent_name)));
}
Task<Result<void>> set_parent_bdev(std::string lvol_name, std::string esnap_name) {
    return on_ctl(do_set_parent_bdev(std::move(lvol_name), std::move(esnap_name)));
}
Task<Result<uint32_t>> start_shallow_copy(std::string src_lvol_name, std::string dst_bdev_name) {
    return on_ctl(do_start_shallow_copy(std::move(src_lvol_name), std::move(dst_bdev_name)));
}

Result<ShallowCopyStatus> check_shallow_copy(uint32_t operation_id) {
    auto it = g().copies.find(operation_id);
    if (it == g().copies.end())
        return errorf(Errc::not_found,
                      fmt::format("shallow copy operation {} not found", operation_id));
    ShallowCopyStatus s = it->second;
    if (s.done) g().copies.erase(it);
    return s;
}

}  // namespace strata::lvol
