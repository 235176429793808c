// The blobstore on malloc bdevs under the simulator: format and load, each blob operation, thin
// allocation, snapshots/clones/inflate/decouple, dirty load rebuilding the same masks, corrupt
// metadata refused, several Threads doing I/O at once, and "power cuts" taken by copying the
// bdev's bytes at arbitrary points of a workload and loading the copy dirty.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/blob/blobstore.h>
#include <strata/env/env.h>
#include <strata/runtime/sim_fixture.h>

#include "format.h"
#include "internal.h"
#include "error/error.h"
#include "malloc/malloc.h"
#include "window_bdev.h"

namespace strata::blob {
namespace {

using runtime::Task;

constexpr uint32_t kBlock = 512;
constexpr uint32_t kCluster = 64 * 1024;
constexpr uint64_t kUnitsPerCluster = kCluster / kBlock;
constexpr uint64_t kBdevBlocks = 16 * 1024 * 1024 / kBlock;  // 16 MiB: 256 clusters

struct IoDone {
    int calls = 0;
    Status status;
    static void cb(void* ctx, Status s) {
        auto* d = static_cast<IoDone*>(ctx);
        ++d->calls;
        d->status = s;
    }
};

// Awaitable completion for workloads written as coroutines.
struct IoWaitS {
    runtime::AsyncResult<Status> r;
    static void cb(void* ctx, Status s) { static_cast<IoWaitS*>(ctx)->r.set(s); }
};

// STRATA_SIM_SEED picks the seed of the power-cut tests (as the other sim tests).
uint64_t test_seed() {
    const char* e = std::getenv("STRATA_SIM_SEED");
    return e ? std::strtoull(e, nullptr, 0) : 21;
}

void pattern(std::vector<uint8_t>& v, int seed) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i * 13 + seed * 101 + (i >> 9));
}

class BlobTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        start_sim(test_seed(), 3);
        make_malloc("Malloc0");
    }
    void TearDown() override {
        if (bs) {
            release_channels();
            if (!bs->impl().unloading) (void)run(bs->unload());
            on(t0(), [&] { bs.reset(); });
        }
        // By name: removing a base also removes the bdevs stacked on it (the grow tests' window).
        std::vector<std::string> names;
        for (bdev::Bdev* b : bdev::list()) names.push_back(b->name());
        for (const std::string& name : names) {
            if (bdev::find(name) == nullptr) continue;
            bool gone = false;
            on(t0(), [&] { bdev::unregister_bdev(name, [&](Result<void>) { gone = true; }); });
            EXPECT_TRUE(poll_until([&] { return gone; }));
        }
        run_until_idle();
        SimFixture::TearDown();
        env::fini();
    }
    runtime::Thread* t0() { return threads[0]; }

    void make_malloc(const std::string& name) {
        on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({name, kBdevBlocks, kBlock, {}, 0}).ok()); });
    }

    // Runs a Task on t0 (or `th`) and drives the sim until it finishes.
    template <class T>
    T run(Task<T> task, runtime::Thread* th = nullptr) {
        std::optional<T> out;
        runtime::spawn(*(th ? th : t0()), std::move(task), [&](T v) { out.emplace(std::move(v)); });
        EXPECT_TRUE(poll_until([&] { return out.has_value(); }, 600 * runtime::kNsPerSec)) << "task hung";
        return std::move(*out);
    }

    void init_store(BsOptions o = {.cluster_sz = kCluster}) {
        auto r = run(BlobStore::init("Malloc0", o));
        ASSERT_TRUE(r.ok()) << r.error().message();
        bs = std::move(*r);
    }
    Result<std::unique_ptr<BlobStore>> load_store(const std::string& name = "Malloc0") {
        return run(BlobStore::load(name));
    }
    void reload() {  // clean unload + load
        release_channels();
        auto u = run(bs->unload());
        ASSERT_TRUE(u.ok()) << u.error().message();
        on(t0(), [&] { bs.reset(); });
        auto r = load_store();
        ASSERT_TRUE(r.ok()) << r.error().message();
        bs = std::move(*r);
    }

    Channel* channel(runtime::Thread* th) {
        auto& c = chans[th];
        if (!c) on(th, [&] { c = bs->get_channel(); });
        return c;
    }
    void release_channels() {
        for (auto& [th, c] : chans)
            if (c) on(th, [&, cc = c] { put_channel(cc); });
        chans.clear();
        run_until_idle();
    }

    Blob* open(BlobId id) {
        auto r = run(bs->open_blob(id));
        EXPECT_TRUE(r.ok()) << r.error().message();
        return r.ok() ? *r : nullptr;
    }
    void close(Blob* b) {
        auto r = run(bs->close_blob(b));
        EXPECT_TRUE(r.ok()) << r.error().message();
    }
    BlobId create(uint64_t clusters, bool thin, std::vector<Xattr> xattrs = {}) {
        auto r = run(bs->create_blob({clusters, thin, std::move(xattrs)}));
        EXPECT_TRUE(r.ok()) << r.error().message();
        return r.ok() ? *r : kInvalidBlobId;
    }

    Status io(Blob* b, bool is_write, std::vector<uint8_t>& buf, uint64_t off, runtime::Thread* th = nullptr) {
        th = th ? th : t0();
        Channel* ch = channel(th);
        IoDone d;
        Status s;
        const uint64_t n = buf.size() / kBlock;
        on(th, [&] {
            s = is_write ? write(*ch, *b, buf.data(), off, n, IoDone::cb, &d)
                         : read(*ch, *b, buf.data(), off, n, IoDone::cb, &d);
        });
        if (!s.ok()) return s;
        EXPECT_EQ(d.calls, 0) << "callback inside submit";
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        return d.status;
    }
    std::vector<uint8_t> read_back(Blob* b, uint64_t off, uint64_t units) {
        std::vector<uint8_t> v(units * kBlock, 0xee);
        Status s = io(b, false, v, off);
        EXPECT_TRUE(s.ok()) << s.to_string();
        return v;
    }

    // The whole bdev, read in one I/O (one atomic step of the sim: a consistent "power cut").
    std::vector<uint8_t> image(const std::string& name = "Malloc0") {
        std::vector<uint8_t> img(kBdevBlocks * kBlock);
        bdev_rw(name, false, img.data(), 0, kBdevBlocks);
        return img;
    }
    void bdev_rw(const std::string& name, bool is_write, void* buf, uint64_t lba, uint64_t n) {
        bool done = false;
        bdev::IoStatus st;
        std::unique_ptr<bdev::Desc> d;
        bdev::Channel* ch = nullptr;
        on(t0(), [&] {
            auto r = bdev::open(name, true);
            ASSERT_TRUE(r.ok());
            d = std::move(*r);
            ch = d->get_channel();
            auto cb = [](void* ctx, const bdev::IoStatus& s) {
                auto* p = static_cast<std::pair<bool*, bdev::IoStatus*>*>(ctx);
                *p->second = s;
                *p->first = true;
            };
            static std::pair<bool*, bdev::IoStatus*> ctx;
            ctx = {&done, &st};
            Status s = is_write ? bdev::write(*d, *ch, buf, lba, n, cb, &ctx)
                                : bdev::read(*d, *ch, buf, lba, n, cb, &ctx);
            ASSERT_TRUE(s.ok());
        });
        ASSERT_TRUE(poll_until([&] { return done; }));
        EXPECT_TRUE(st.ok());
        on(t0(), [&] {
            bdev::put_channel(ch);
            d.reset();
        });
    }
    void restore(const std::string& name, std::vector<uint8_t>& img) {
        bdev_rw(name, true, img.data(), 0, kBdevBlocks);
    }

    std::unique_ptr<BlobStore> bs;
    std::map<runtime::Thread*, Channel*> chans;
};

TEST_F(BlobTest, FormatAndCleanLoad) {
    init_store({.cluster_sz = kCluster, .bstype = "lvs"});
    BsInfo i = bs->info();
    EXPECT_EQ(i.cluster_sz, kCluster);
    EXPECT_EQ(i.io_unit_size, kBlock);
    EXPECT_EQ(i.total_clusters, 256u);
    EXPECT_EQ(i.max_blobs, 64u);
    const uint64_t free0 = i.free_clusters;
    EXPECT_EQ(free0, 239u);  // 17 clusters: super block, masks, 256 md pages
    EXPECT_EQ(bs->first_blob_id(), kInvalidBlobId);
    reload();
    EXPECT_FALSE(bs->info().loaded_dirty);
    EXPECT_EQ(bs->info().free_clusters, free0);
    EXPECT_EQ(bs->info().bstype, "lvs");
    // A bstype mismatch is refused.
    release_channels();
    ASSERT_TRUE(run(bs->unload()).ok());
    on(t0(), [&] { bs.reset(); });
    auto bad = run(BlobStore::load("Malloc0", {.bstype = "other"}));
    EXPECT_EQ(bad.code(), Errc::invalid_argument);
    EXPECT_EQ(run(BlobStore::load("nope")).code(), Errc::not_found);
}

TEST_F(BlobTest, InitRefusesBadGeometry) {
    EXPECT_EQ(run(BlobStore::init("Malloc0", {.cluster_sz = 1000})).code(), Errc::invalid_argument);
    EXPECT_EQ(run(BlobStore::init("Malloc0", {.cluster_sz = 32u << 20})).code(), Errc::invalid_argument);
    // Not a blobstore.
    EXPECT_EQ(load_store().code(), Errc::corrupt);
}

TEST_F(BlobTest, ThickBlobWriteReadXattrsReload) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    BlobId id = create(4, false, {{"name", {'a', 'b'}}});
    EXPECT_EQ(bs->info().free_clusters, free0 - 4);
    Blob* b = open(id);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->num_clusters(), 4u);
    EXPECT_EQ(b->num_allocated_clusters(), 4u);
    EXPECT_FALSE(b->is_thin());
    // Thick clusters read zeroes before any write.
    auto z = read_back(b, 0, 8);
    EXPECT_TRUE(std::all_of(z.begin(), z.end(), [](uint8_t c) { return c == 0; }));
    // A write spanning a cluster boundary.
    std::vector<uint8_t> w(kCluster + 4 * kBlock);
    pattern(w, 1);
    ASSERT_TRUE(io(b, true, w, kUnitsPerCluster - 2).ok());
    EXPECT_EQ(read_back(b, kUnitsPerCluster - 2, w.size() / kBlock), w);
    // Out of range.
    std::vector<uint8_t> one(kBlock);
    EXPECT_EQ(io(b, true, one, 4 * kUnitsPerCluster).code(), Errc::invalid_argument);
    // Xattrs.
    on(t0(), [&] {
        EXPECT_TRUE(b->set_xattr("color", std::string_view("blue")).ok());
        EXPECT_TRUE(b->set_xattr("name", std::string_view("vol0")).ok());
        EXPECT_EQ(b->get_xattr("missing").code(), Errc::not_found);
        EXPECT_EQ(b->set_xattr("", std::string_view("x")).code(), Errc::invalid_argument);
        EXPECT_EQ(b->set_xattr("big", std::string(5000, 'x')).code(), Errc::invalid_argument);
    });
    ASSERT_TRUE(run(b->sync_md()).ok());
    close(b);
    reload();
    b = open(id);
    ASSERT_NE(b, nullptr);
    on(t0(), [&] {
        auto v = b->get_xattr("name");
        ASSERT_TRUE(v.ok());
        EXPECT_EQ(std::string(v->begin(), v->end()), "vol0");
        EXPECT_EQ(b->xattr_names().size(), 2u);
        EXPECT_TRUE(b->remove_xattr("color").ok());
        EXPECT_EQ(b->remove_xattr("color").code(), Errc::not_found);
    });
    EXPECT_EQ(read_back(b, kUnitsPerCluster - 2, w.size() / kBlock), w);
    close(b);  // close syncs the removal
    reload();
    b = open(id);
    on(t0(), [&] { EXPECT_EQ(b->xattr_names(), std::vector<std::string>{"name"}); });
    close(b);
}

TEST_F(BlobTest, ThinAllocationCounting) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    BlobId id = create(10, true);
    EXPECT_EQ(bs->info().free_clusters, free0);
    Blob* b = open(id);
    EXPECT_TRUE(b->is_thin());
    EXPECT_EQ(b->num_allocated_clusters(), 0u);
    std::vector<uint8_t> w(2 * kBlock);
    pattern(w, 2);
    ASSERT_TRUE(io(b, true, w, 3 * kUnitsPerCluster + 5).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    EXPECT_TRUE(b->is_cluster_allocated(3));
    EXPECT_EQ(bs->info().free_clusters, free0 - 1);
    // The rest of the new cluster and every other cluster read zeroes.
    auto r = read_back(b, 3 * kUnitsPerCluster, kUnitsPerCluster);
    EXPECT_EQ(std::vector<uint8_t>(r.begin() + 5 * kBlock, r.begin() + 7 * kBlock), w);
    EXPECT_TRUE(std::all_of(r.begin(), r.begin() + 5 * kBlock, [](uint8_t c) { return c == 0; }));
    auto r0 = read_back(b, 0, kUnitsPerCluster);
    EXPECT_TRUE(std::all_of(r0.begin(), r0.end(), [](uint8_t c) { return c == 0; }));
    // A second write to the same cluster allocates nothing.
    ASSERT_TRUE(io(b, true, w, 3 * kUnitsPerCluster + 100).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    // Unmap and write_zeroes of unallocated clusters allocate nothing either.
    IoDone d;
    on(t0(), [&] { ASSERT_TRUE(write_zeroes(*channel(t0()), *b, 0, kUnitsPerCluster, IoDone::cb, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    close(b);
    reload();
    b = open(id);
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 1);
    r = read_back(b, 3 * kUnitsPerCluster + 5, 2);
    EXPECT_EQ(r, w);
    close(b);
}

TEST_F(BlobTest, ThinWritesFillTheStoreThenNoSpace) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    BlobId id = create(free0 + 2, true);
    Blob* b = open(id);
    std::vector<uint8_t> w(kBlock, 0x5a);
    for (uint64_t c = 0; c < free0; ++c) ASSERT_TRUE(io(b, true, w, c * kUnitsPerCluster).ok());
    EXPECT_EQ(bs->info().free_clusters, 0u);
    EXPECT_EQ(io(b, true, w, free0 * kUnitsPerCluster).code(), Errc::no_space);
    close(b);
    ASSERT_TRUE(run(bs->delete_blob(id)).ok());
    EXPECT_EQ(bs->info().free_clusters, free0);
}

TEST_F(BlobTest, ResizeReadOnlyIterationDelete) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    BlobId a = create(2, false), t = create(1, true), c = create(0, false);
    std::vector<BlobId> ids;
    for (BlobId i = bs->first_blob_id(); i != kInvalidBlobId; i = bs->next_blob_id(i)) ids.push_back(i);
    EXPECT_EQ(ids, (std::vector<BlobId>{a, t, c}));
    Blob* b = open(a);
    ASSERT_TRUE(run(b->resize(5)).ok());
    EXPECT_EQ(b->num_clusters(), 5u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 5);
    std::vector<uint8_t> w(kBlock);
    pattern(w, 3);
    ASSERT_TRUE(io(b, true, w, 4 * kUnitsPerCluster).ok());
    ASSERT_TRUE(run(b->resize(1)).ok());
    EXPECT_EQ(bs->info().free_clusters, free0 - 1);
    EXPECT_EQ(io(b, true, w, 4 * kUnitsPerCluster).code(), Errc::invalid_argument);
    EXPECT_EQ(run(b->resize(1u << 20)).code(), Errc::invalid_argument);
    on(t0(), [&] { b->set_read_only(); });
    EXPECT_EQ(io(b, true, w, 0).code(), Errc::permission_denied);
    EXPECT_EQ(run(b->resize(2)).code(), Errc::permission_denied);
    // Deleting an open blob is refused.
    EXPECT_EQ(run(bs->delete_blob(a)).code(), Errc::busy);
    close(b);
    reload();
    b = open(a);
    EXPECT_TRUE(b->is_read_only());
    EXPECT_EQ(b->num_clusters(), 1u);
    close(b);
    ASSERT_TRUE(run(bs->delete_blob(a)).ok());
    ASSERT_TRUE(run(bs->delete_blob(t)).ok());
    EXPECT_EQ(run(bs->delete_blob(a)).code(), Errc::not_found);
    EXPECT_EQ(run(bs->open_blob(a)).code(), Errc::not_found);
    EXPECT_EQ(bs->first_blob_id(), c);
    EXPECT_EQ(bs->info().free_clusters, free0);
    reload();
    EXPECT_EQ(bs->first_blob_id(), c);
    EXPECT_EQ(bs->next_blob_id(c), kInvalidBlobId);
    // The freed id is reused, and the reused slot's old metadata does not come back.
    BlobId again = create(1, false);
    EXPECT_EQ(again, a);
    Blob* nb = open(again);
    EXPECT_FALSE(nb->is_read_only());
    close(nb);
}

TEST_F(BlobTest, ManyXattrsSpanSeveralMetadataPages) {
    init_store();
    std::vector<Xattr> xs;
    for (int i = 0; i < 40; ++i) xs.push_back({"key" + std::to_string(i), std::vector<uint8_t>(300, uint8_t(i))});
    BlobId id = create(3, false, xs);
    reload();
    Blob* b = open(id);
    ASSERT_NE(b, nullptr);
    EXPECT_GT(b->impl().ext_pages.size(), 1u);
    on(t0(), [&] {
        for (int i = 0; i < 40; ++i) {
            auto v = b->get_xattr("key" + std::to_string(i));
            ASSERT_TRUE(v.ok());
            EXPECT_EQ(v->size(), 300u);
            EXPECT_EQ((*v)[7], uint8_t(i));
        }
    });
    close(b);
}

TEST_F(BlobTest, SnapshotCloneInflateDecouple) {
    init_store();
    BlobId id = create(4, false);
    Blob* b = open(id);
    std::vector<uint8_t> orig(4 * kCluster);
    pattern(orig, 4);
    ASSERT_TRUE(io(b, true, orig, 0).ok());
    auto snap = run(bs->create_snapshot(id, {{"snap", {'1'}}}));
    ASSERT_TRUE(snap.ok()) << snap.error().message();
    EXPECT_EQ(b->parent_id(), *snap);
    EXPECT_TRUE(b->is_thin());
    EXPECT_EQ(b->num_allocated_clusters(), 0u);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), orig);
    // Copy on write: the first write to a cluster copies the snapshot's data around it.
    std::vector<uint8_t> w(kBlock, 0x77);
    ASSERT_TRUE(io(b, true, w, kUnitsPerCluster + 3).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    std::vector<uint8_t> expect = orig;
    std::memcpy(expect.data() + kCluster + 3 * kBlock, w.data(), kBlock);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    // The snapshot keeps the old data and refuses writes.
    Blob* s = open(*snap);
    EXPECT_TRUE(s->is_read_only());
    EXPECT_TRUE(s->is_snapshot());
    EXPECT_EQ(read_back(s, 0, 4 * kUnitsPerCluster), orig);
    EXPECT_EQ(io(s, true, w, 0).code(), Errc::permission_denied);
    close(s);
    // A clone of the snapshot.
    auto clone = run(bs->create_clone(*snap));
    ASSERT_TRUE(clone.ok()) << clone.error().message();
    EXPECT_EQ(run(bs->create_clone(id)).code(), Errc::invalid_argument);  // not read-only
    Blob* c = open(*clone);
    EXPECT_EQ(read_back(c, 0, 4 * kUnitsPerCluster), orig);
    EXPECT_EQ(bs->clones(*snap).size(), 2u);
    // Several clones: deleting the snapshot is refused.
    EXPECT_EQ(run(bs->delete_blob(*snap)).code(), Errc::busy);
    // Decouple the clone: it owns copies of the snapshot's clusters and has no parent.
    ASSERT_TRUE(run(bs->decouple_parent(*clone)).ok());
    EXPECT_EQ(c->parent_id(), kInvalidBlobId);
    EXPECT_EQ(c->num_allocated_clusters(), 4u);
    EXPECT_EQ(read_back(c, 0, 4 * kUnitsPerCluster), orig);
    close(c);
    close(b);
    reload();
    b = open(id);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    // One clone left: deleting the snapshot merges it into the blob.
    EXPECT_EQ(bs->clones(*snap), std::vector<BlobId>{id});
    const uint64_t free_before = bs->info().free_clusters;
    ASSERT_TRUE(run(bs->delete_blob(*snap)).ok());
    EXPECT_EQ(b->parent_id(), kInvalidBlobId);
    EXPECT_EQ(b->num_allocated_clusters(), 4u);
    // The clone took 3 of the snapshot's clusters; the 4th was shadowed by its own copy.
    EXPECT_EQ(bs->info().free_clusters, free_before + 1);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    close(b);
    reload();
    b = open(id);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    // Inflate: snapshot again, then inflate the blob; it reads the same and is independent.
    auto snap2 = run(bs->create_snapshot(id));
    ASSERT_TRUE(snap2.ok());
    ASSERT_TRUE(run(bs->inflate(id)).ok());
    EXPECT_EQ(b->parent_id(), kInvalidBlobId);
    EXPECT_FALSE(b->is_thin());
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    close(b);
    ASSERT_TRUE(run(bs->delete_blob(*snap2)).ok());
    b = open(id);
    EXPECT_EQ(read_back(b, 0, 4 * kUnitsPerCluster), expect);
    close(b);
}

TEST_F(BlobTest, SeveralThreadsDoIoAtOnce) {
    init_store();
    constexpr int kBlobs = 3;
    std::vector<Blob*> blobs;
    for (int i = 0; i < kBlobs; ++i) blobs.push_back(open(create(8, i != 0)));
    // Each Thread writes its own stripe of every blob, all submitted before any completes.
    constexpr int kWrites = 24;
    std::vector<std::vector<uint8_t>> bufs(threads.size() * kWrites, std::vector<uint8_t>(4 * kBlock));
    std::vector<IoDone> done(bufs.size());
    for (size_t t = 0; t < threads.size(); ++t) channel(threads[t]);
    for (size_t t = 0; t < threads.size(); ++t) {
        on(threads[t], [&, t] {
            for (int k = 0; k < kWrites; ++k) {
                const size_t i = t * kWrites + k;
                pattern(bufs[i], static_cast<int>(i));
                Blob* b = blobs[k % kBlobs];
                const uint64_t off = (k / kBlobs) * kUnitsPerCluster + t * 4;
                ASSERT_TRUE(write(*chans[threads[t]], *b, bufs[i].data(), off, 4, IoDone::cb, &done[i]).ok());
            }
        });
    }
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (auto& d : done) EXPECT_TRUE(d.status.ok()) << d.status.to_string();
    for (size_t t = 0; t < threads.size(); ++t)
        for (int k = 0; k < kWrites; ++k) {
            const uint64_t off = (k / kBlobs) * kUnitsPerCluster + t * 4;
            EXPECT_EQ(read_back(blobs[k % kBlobs], off, 4), bufs[t * kWrites + k]);
        }
    // Thin blobs: exactly one cluster per distinct cluster written, however many raced.
    EXPECT_EQ(blobs[1]->num_allocated_clusters(), 8u);
    for (Blob* b : blobs) close(b);
}

TEST_F(BlobTest, SnapshotWhileIoInFlight) {
    init_store();
    BlobId id = create(4, true);
    Blob* b = open(id);
    std::vector<std::vector<uint8_t>> bufs(16, std::vector<uint8_t>(kBlock));
    std::vector<IoDone> done(bufs.size());
    Channel* ch = channel(threads[1]);
    bool submitted = false;
    ASSERT_TRUE(threads[1]->post([&] {
        for (size_t i = 0; i < bufs.size(); ++i) {
            pattern(bufs[i], static_cast<int>(i) + 50);
            ASSERT_TRUE(write(*ch, *b, bufs[i].data(), i * 17, 1, IoDone::cb, &done[i]).ok());
        }
        submitted = true;
    }).ok());
    auto snap = run(bs->create_snapshot(id));
    ASSERT_TRUE(snap.ok());
    ASSERT_TRUE(poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return submitted;
    }));
    for (size_t i = 0; i < bufs.size(); ++i) {
        EXPECT_TRUE(done[i].status.ok());
        EXPECT_EQ(read_back(b, i * 17, 1), bufs[i]);
    }
    close(b);
}

TEST_F(BlobTest, VectoredIoWriteZeroesOnACloneAndPoolExhaustion) {
    init_store();
    BlobId id = create(3, false);
    Blob* b = open(id);
    // writev/readv with uneven iovecs across a cluster boundary.
    std::vector<uint8_t> a(kBlock * 3 + 100), c(kBlock - 100 + kCluster);
    pattern(a, 5);
    pattern(c, 6);
    iovec wv[2] = {{a.data(), a.size()}, {c.data(), c.size()}};
    const uint64_t units = (a.size() + c.size()) / kBlock;
    IoDone d;
    Channel* ch = channel(t0());
    on(t0(), [&] { ASSERT_TRUE(writev(*ch, *b, wv, 2, kUnitsPerCluster - 3, units, IoDone::cb, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    ASSERT_TRUE(d.status.ok());
    std::vector<uint8_t> r1(a.size()), r2(c.size());
    iovec rv[2] = {{r1.data(), r1.size()}, {r2.data(), r2.size()}};
    IoDone d2;
    on(t0(), [&] { ASSERT_TRUE(readv(*ch, *b, rv, 2, kUnitsPerCluster - 3, units, IoDone::cb, &d2).ok()); });
    ASSERT_TRUE(poll_until([&] { return d2.calls == 1; }));
    EXPECT_EQ(r1, a);
    EXPECT_EQ(r2, c);
    // Refusals at submit.
    on(t0(), [&] {
        EXPECT_EQ(readv(*ch, *b, rv, 0, 0, 1, IoDone::cb, &d2).code(), Errc::invalid_argument);
        EXPECT_EQ(readv(*ch, *b, rv, 1, 0, units, IoDone::cb, &d2).code(), Errc::invalid_argument);
        EXPECT_EQ(read(*ch, *b, r1.data(), 0, 0, IoDone::cb, &d2).code(), Errc::invalid_argument);
    });
    // write_zeroes on a clone over its parent's data allocates and reads back zeroes there.
    auto snap = run(bs->create_snapshot(id));
    ASSERT_TRUE(snap.ok());
    IoDone d3;
    on(t0(), [&] { ASSERT_TRUE(write_zeroes(*ch, *b, kUnitsPerCluster, 4, IoDone::cb, &d3).ok()); });
    ASSERT_TRUE(poll_until([&] { return d3.calls == 1; }));
    ASSERT_TRUE(d3.status.ok());
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    auto z = read_back(b, kUnitsPerCluster, kUnitsPerCluster);
    EXPECT_TRUE(std::all_of(z.begin(), z.begin() + 4 * kBlock, [](uint8_t v) { return v == 0; }));
    EXPECT_EQ(std::vector<uint8_t>(z.begin() + 4 * kBlock, z.end()),
              std::vector<uint8_t>(c.begin() + 4 * kBlock - 100, c.begin() + kCluster - 100));
    // The channel's request pool runs out: Errc::busy, never a crash; all others complete.
    std::vector<IoDone> many(Channel::kPoolSize + 10);
    std::vector<uint8_t> one(kBlock);
    size_t busy = 0, ok = 0;
    on(t0(), [&] {
        for (auto& m : many) {
            Status st = read(*ch, *b, one.data(), 0, 1, IoDone::cb, &m);
            if (st.code() == Errc::busy) ++busy;
            else if (st.ok()) ++ok;
        }
    });
    EXPECT_EQ(busy, 10u);
    ASSERT_TRUE(poll_until([&] {
        size_t n = 0;
        for (auto& m : many) n += m.calls;
        return n == ok;
    }));
    close(b);
    // inflate of a blob without a parent: thick afterwards; decouple needs a parent.
    BlobId t = create(2, true);
    ASSERT_TRUE(run(bs->inflate(t)).ok());
    Blob* tb = open(t);
    EXPECT_EQ(tb->num_allocated_clusters(), 2u);
    EXPECT_FALSE(tb->is_thin());
    close(tb);
    EXPECT_EQ(run(bs->decouple_parent(t)).code(), Errc::invalid_argument);
    EXPECT_EQ(run(bs->inflate(*snap)).code(), Errc::permission_denied);
    EXPECT_EQ(run(bs->create_snapshot(*snap)).code(), Errc::invalid_argument);
    EXPECT_EQ(run(bs->open_blob(format::make_blob_id(60))).code(), Errc::not_found);
    EXPECT_EQ(run(bs->open_blob(12345)).code(), Errc::not_found);
}

TEST_F(BlobTest, MetadataFromAnyThreadAndNoSpaceForIds) {
    init_store({.cluster_sz = kCluster, .num_md_pages = 16});  // 4 blob ids
    // Task methods awaited from another Thread hop to the md Thread and back.
    std::vector<BlobId> ids;
    for (int i = 0; i < 4; ++i) {
        auto r = run(bs->create_blob({1, true, {}}), threads[1 + i % 2]);
        ASSERT_TRUE(r.ok()) << r.error().message();
        ids.push_back(*r);
    }
    auto full = run(bs->create_blob({1, true, {}}), threads[2]);
    EXPECT_EQ(full.code(), Errc::no_space);
    auto b = run(bs->open_blob(ids[0]), threads[1]);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(run((*b)->resize(3), threads[2]).ok());
    ASSERT_TRUE(run(bs->close_blob(*b), threads[1]).ok());
    ASSERT_TRUE(run(bs->delete_blob(ids[3]), threads[2]).ok());
    EXPECT_TRUE(run(bs->create_blob({1, true, {}})).ok());
}

TEST_F(BlobTest, FourKiBlockBdev) {
    on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({"Malloc4k", 4096, 4096, {}, 0}).ok()); });
    auto r = run(BlobStore::init("Malloc4k", {.cluster_sz = kCluster}));
    ASSERT_TRUE(r.ok()) << r.error().message();
    bs = std::move(*r);
    EXPECT_EQ(bs->info().io_unit_size, 4096u);
    BlobId id = create(3, true);
    Blob* b = open(id);
    EXPECT_EQ(b->num_io_units(), 3u * kCluster / 4096);
    std::vector<uint8_t> w(8192);
    pattern(w, 9);
    Channel* ch = channel(t0());
    IoDone d;
    on(t0(), [&] { ASSERT_TRUE(write(*ch, *b, w.data(), 15, 2, IoDone::cb, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    ASSERT_TRUE(d.status.ok());
    EXPECT_EQ(b->num_allocated_clusters(), 2u);  // unit 15 ends cluster 0, unit 16 starts cluster 1
    std::vector<uint8_t> got(8192);
    IoDone d2;
    on(t0(), [&] { ASSERT_TRUE(read(*ch, *b, got.data(), 15, 2, IoDone::cb, &d2).ok()); });
    ASSERT_TRUE(poll_until([&] { return d2.calls == 1; }));
    EXPECT_EQ(got, w);
    close(b);
    release_channels();
    ASSERT_TRUE(run(bs->unload()).ok());
    on(t0(), [&] { bs.reset(); });
    auto l = load_store("Malloc4k");
    ASSERT_TRUE(l.ok()) << l.error().message();
    bs = std::move(*l);
    b = open(id);
    EXPECT_EQ(b->num_allocated_clusters(), 2u);
    close(b);
}

TEST_F(BlobTest, BdevErrorsFailTheOperationAndLeaveTheStoreConsistent) {
    on(t0(), [&] { ASSERT_TRUE(bdev::error_create("Malloc0", "").ok()); });
    auto r = run(BlobStore::init("EE_Malloc0", {.cluster_sz = kCluster}));
    ASSERT_TRUE(r.ok()) << r.error().message();
    bs = std::move(*r);
    const uint64_t free0 = bs->info().free_clusters;
    const uint32_t pages0 = bs->info().used_md_pages;
    auto inject = [&](bdev::IoType t, uint32_t n = 1) {
        bdev::ErrorInjection e;
        e.io_type = t;
        e.num = n;
        on(t0(), [&] { ASSERT_TRUE(bdev::error_inject("EE_Malloc0", e).ok()); });
    };
    // A failed metadata write fails the create and gives everything back.
    inject(bdev::IoType::write);
    auto c = run(bs->create_blob({2, false, {}}));
    EXPECT_EQ(c.code(), Errc::io_error) << (c.ok() ? "" : c.error().message());
    EXPECT_EQ(bs->info().free_clusters, free0);
    EXPECT_EQ(bs->info().used_md_pages, pages0);
    EXPECT_EQ(bs->first_blob_id(), kInvalidBlobId);
    BlobId id = create(2, true);
    Blob* b = open(id);
    // A failed flush fails sync_md; the change stays pending and a retry writes it.
    on(t0(), [&] { ASSERT_TRUE(b->set_xattr("k", std::string_view("v")).ok()); });
    inject(bdev::IoType::flush);
    EXPECT_EQ(run(b->sync_md()).code(), Errc::io_error);
    EXPECT_TRUE(run(b->sync_md()).ok());
    // A failed fill of a thin cluster fails the write; nothing is allocated; a retry works.
    inject(bdev::IoType::write_zeroes);
    std::vector<uint8_t> w(kBlock, 0x42);
    EXPECT_EQ(io(b, true, w, 0).code(), Errc::io_error);
    EXPECT_EQ(b->num_allocated_clusters(), 0u);
    EXPECT_EQ(bs->info().free_clusters, free0);
    EXPECT_TRUE(io(b, true, w, 0).ok());
    EXPECT_EQ(read_back(b, 0, 1), w);
    // A failed resize leaves the old size.
    inject(bdev::IoType::write);
    EXPECT_EQ(run(b->resize(5)).code(), Errc::io_error);
    EXPECT_EQ(b->num_clusters(), 2u);
    close(b);
    // A failed snapshot leaves the blob as it was.
    inject(bdev::IoType::write);
    EXPECT_FALSE(run(bs->create_snapshot(id)).ok());
    b = open(id);
    EXPECT_EQ(b->parent_id(), kInvalidBlobId);
    EXPECT_EQ(read_back(b, 0, 1), w);
    close(b);
    // The masks in memory still match the metadata: unload and load dirty-compare.
    auto live_clusters = bs->impl().used_clusters;
    auto live_pages = bs->impl().used_pages;
    release_channels();
    ASSERT_TRUE(run(bs->unload()).ok());
    on(t0(), [&] { bs.reset(); });
    auto l = load_store("EE_Malloc0");
    ASSERT_TRUE(l.ok()) << l.error().message();
    bs = std::move(*l);
    EXPECT_EQ(bs->impl().used_clusters, live_clusters);
    EXPECT_EQ(bs->impl().used_pages, live_pages);
}

TEST_F(BlobTest, BdevRemovalIsReportedAndWaitsForUnload) {
    bool removing = false;
    BsOptions o{.cluster_sz = kCluster};
    o.on_bdev_remove = [&] { removing = true; };
    auto r = run(BlobStore::init("Malloc0", o));
    ASSERT_TRUE(r.ok());
    bs = std::move(*r);
    BlobId id = create(1, true);
    bool gone = false;
    on(t0(), [&] { bdev::malloc_delete("Malloc0", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return removing; }));
    run_until_idle();
    EXPECT_FALSE(gone);  // the store still holds the bdev
    // The bdev refuses I/O while it goes: metadata operations fail cleanly, and so does the
    // unload's write of the masks; destroying the store lets the removal finish.
    EXPECT_FALSE(run(bs->open_blob(id)).ok());
    release_channels();
    EXPECT_FALSE(run(bs->unload()).ok());
    on(t0(), [&] { bs.reset(); });
    EXPECT_TRUE(poll_until([&] { return gone; }));
}

TEST_F(BlobTest, ExternalSnapshotClone) {
    init_store();
    // The external bdev: 2.5 clusters of data (it ends inside the blob's third cluster).
    constexpr uint64_t kBaseBlocks = 5 * kUnitsPerCluster / 2;
    on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({"Base", kBaseBlocks, kBlock, {}, 0}).ok()); });
    std::vector<uint8_t> base(kBaseBlocks * kBlock);
    pattern(base, 31);
    bdev_rw("Base", true, base.data(), 0, kBaseBlocks);
    auto id = run(bs->create_esnap_clone("Base"));
    ASSERT_TRUE(id.ok()) << id.error().message();
    EXPECT_EQ(run(bs->create_esnap_clone("Missing")).code(), Errc::not_found);
    Blob* b = open(*id);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->num_clusters(), 3u);
    EXPECT_TRUE(b->is_thin());
    EXPECT_TRUE(b->is_clone());
    on(t0(), [&] { EXPECT_EQ(b->external_snapshot(), "Base"); });
    std::vector<uint8_t> expect(3 * kCluster, 0);
    std::memcpy(expect.data(), base.data(), base.size());
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    // Copy on write from the external bdev; the bdev itself is never written.
    std::vector<uint8_t> w(kBlock, 0xab);
    ASSERT_TRUE(io(b, true, w, kUnitsPerCluster + 1).ok());
    ASSERT_TRUE(io(b, true, w, 2 * kUnitsPerCluster + kUnitsPerCluster - 1).ok());  // beyond the base
    std::memcpy(expect.data() + kCluster + kBlock, w.data(), kBlock);
    std::memcpy(expect.data() + 3 * kCluster - kBlock, w.data(), kBlock);
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    EXPECT_EQ(b->num_allocated_clusters(), 2u);
    std::vector<uint8_t> base_now(base.size());
    bdev_rw("Base", false, base_now.data(), 0, kBaseBlocks);
    EXPECT_EQ(base_now, base);
    // A snapshot takes the external snapshot up the chain; reads are unchanged.
    auto snap = run(bs->create_snapshot(*id));
    ASSERT_TRUE(snap.ok()) << snap.error().message();
    on(t0(), [&] { EXPECT_EQ(b->external_snapshot(), ""); });
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    close(b);
    reload();
    b = open(*id);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    // Deleting the snapshot merges it, external snapshot included, into the blob.
    ASSERT_TRUE(run(bs->delete_blob(*snap)).ok());
    on(t0(), [&] { EXPECT_EQ(b->external_snapshot(), "Base"); });
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    // Decouple copies what the bdev provides and drops it.
    ASSERT_TRUE(run(bs->decouple_parent(*id)).ok());
    on(t0(), [&] { EXPECT_EQ(b->external_snapshot(), ""); });
    EXPECT_EQ(b->num_allocated_clusters(), 3u);
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    close(b);
    // The bdev can go now: nothing holds it.
    bool gone = false;
    on(t0(), [&] { bdev::malloc_delete("Base", [&](Result<void>) { gone = true; }); });
    EXPECT_TRUE(poll_until([&] { return gone; }));
    b = open(*id);
    EXPECT_EQ(read_back(b, 0, 3 * kUnitsPerCluster), expect);
    close(b);
}

TEST_F(BlobTest, ExternalSnapshotMissingBdevAndInflate) {
    init_store();
    on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({"Base", 2 * kUnitsPerCluster, kBlock, {}, 0}).ok()); });
    std::vector<uint8_t> base(2 * kCluster);
    pattern(base, 41);
    bdev_rw("Base", true, base.data(), 0, 2 * kUnitsPerCluster);
    auto id = run(bs->create_esnap_clone("Base", 4));
    ASSERT_TRUE(id.ok());
    Blob* b = open(*id);
    // Several Threads read through the external snapshot at once.
    for (runtime::Thread* th : threads) {
        std::vector<uint8_t> got(kBlock);
        ASSERT_TRUE(io(b, false, got, 7, th).ok());
        EXPECT_EQ(got, std::vector<uint8_t>(base.begin() + 7 * kBlock, base.begin() + 8 * kBlock));
    }
    ASSERT_TRUE(run(bs->inflate(*id)).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 4u);
    auto all = read_back(b, 0, 4 * kUnitsPerCluster);
    EXPECT_EQ(std::vector<uint8_t>(all.begin(), all.begin() + 2 * kCluster), base);
    EXPECT_TRUE(std::all_of(all.begin() + 2 * kCluster, all.end(), [](uint8_t v) { return v == 0; }));
    close(b);
    // An esnap clone whose bdev is missing does not open, and the store still loads.
    auto id2 = run(bs->create_esnap_clone("Base", 2));
    ASSERT_TRUE(id2.ok());
    release_channels();
    bool gone = false;
    on(t0(), [&] { bdev::malloc_delete("Base", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return gone; }));
    reload();
    EXPECT_EQ(run(bs->open_blob(*id2)).code(), Errc::not_found);
    ASSERT_TRUE(run(bs->delete_blob(*id2)).ok());
}

// ---- dirty load, corruption --------------------------------------------------------------------

class BlobLoadTest : public BlobTest {
protected:
    struct Masks {
        format::Bitmap clusters, pages, ids;
        bool operator==(const Masks&) const = default;
    };
    Masks masks() {
        auto& s = bs->impl();
        return {s.used_clusters, s.used_pages, s.used_ids};
    }
    // A workload touching every kind of metadata; returns what should be durable.
    void workload() {
        BlobId a = create(3, false, {{"n", {'a'}}});
        BlobId t = create(6, true);
        Blob* tb = open(t);
        std::vector<uint8_t> w(kBlock, 0x31);
        for (uint64_t c : {0, 2, 5}) ASSERT_TRUE(io(tb, true, w, c * kUnitsPerCluster).ok());
        auto s = run(bs->create_snapshot(t));
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE(io(tb, true, w, 1 * kUnitsPerCluster).ok());
        ASSERT_TRUE(io(tb, true, w, 2 * kUnitsPerCluster + 1).ok());  // shadows a snapshot cluster
        auto cl = run(bs->create_clone(*s));
        ASSERT_TRUE(cl.ok());
        auto s2 = run(bs->create_snapshot(t));  // a chain: t -> s2 -> s
        ASSERT_TRUE(s2.ok());
        ASSERT_TRUE(run(bs->create_clone(*s2)).ok());
        ASSERT_TRUE(run(bs->delete_blob(*cl)).ok());
        ASSERT_TRUE(run(bs->delete_blob(*s)).ok());  // merges into s2, freeing the shadowed one
        close(tb);
        Blob* ab = open(a);
        ASSERT_TRUE(run(ab->resize(7)).ok());
        close(ab);
        BlobId gone = create(2, false);
        ASSERT_TRUE(run(bs->delete_blob(gone)).ok());
    }
};

TEST_F(BlobLoadTest, DirtyLoadRebuildsTheSameMasks) {
    init_store();
    workload();
    const Masks live = masks();
    // Copy the bdev as it is now (never unloaded: the super block says dirty).
    auto img = image();
    make_malloc("Malloc1");
    restore("Malloc1", img);
    auto copy = load_store("Malloc1");
    ASSERT_TRUE(copy.ok()) << copy.error().message();
    EXPECT_TRUE((*copy)->info().loaded_dirty);
    auto& s = (*copy)->impl();
    EXPECT_EQ(s.used_clusters, live.clusters);
    EXPECT_EQ(s.used_pages, live.pages);
    EXPECT_EQ(s.used_ids, live.ids);
    ASSERT_TRUE(run((*copy)->unload()).ok());
    on(t0(), [&] { copy->reset(); });
    // Clean unload of the original gives the same masks again.
    reload();
    EXPECT_FALSE(bs->info().loaded_dirty);
    EXPECT_TRUE(masks() == live);
}

TEST_F(BlobLoadTest, PowerCutAtArbitraryPointsLoadsConsistently) {
    init_store();
    // The workload runs as one Task while the test takes images between sim steps.
    std::vector<std::vector<uint8_t>> images;
    bool finished = false;
    struct W {
        static Task<Result<void>> run(BlobStore& bs) {
            for (int round = 0; round < 3; ++round) {
                BlobOptions o;
                o.num_clusters = 4;
                o.thin_provision = true;
                o.xattrs.push_back(Xattr{"r", std::vector<uint8_t>(1, uint8_t(round))});
                auto id = co_await bs.create_blob(std::move(o));
                if (!id.ok()) co_return id.error();
                auto b = co_await bs.open_blob(*id);
                if (!b.ok()) co_return b.error();
                auto snap = co_await bs.create_snapshot(*id);
                if (!snap.ok()) co_return snap.error();
                auto cl = co_await bs.create_clone(*snap);
                if (!cl.ok()) co_return cl.error();
                auto r = co_await (*b)->resize(6);
                if (!r.ok()) co_return r;
                r = co_await bs.close_blob(*b);
                if (!r.ok()) co_return r;
                r = co_await bs.delete_blob(*cl);
                if (!r.ok()) co_return r;
                r = co_await bs.delete_blob(*snap);  // merges into the blob
                if (!r.ok()) co_return r;
                if (round == 1) {
                    r = co_await bs.inflate(*id);
                    if (!r.ok()) co_return r;
                }
            }
            co_return Result<void>{};
        }
    };
    runtime::spawn(*t0(), W::run(*bs), [&](Result<void> r) {
        EXPECT_TRUE(r.ok()) << r.error().message();
        finished = true;
    });
    std::mt19937 rng(static_cast<uint32_t>(test_seed()));
    while (!finished) {
        for (int n = std::uniform_int_distribution<int>(1, 40)(rng); n > 0 && !finished; --n) sim->step();
        if (finished) break;
        // The image is taken on t0 inside one message: one atomic step.
        std::vector<uint8_t> img(kBdevBlocks * kBlock);
        bool got = false;
        std::unique_ptr<bdev::Desc> d;
        bdev::Channel* ch = nullptr;
        ASSERT_TRUE(t0()->post([&] {
            d = bdev::open("Malloc0", false).value();
            ch = d->get_channel();
            ASSERT_TRUE(bdev::read(*d, *ch, img.data(), 0, kBdevBlocks,
                                   [](void* p, const bdev::IoStatus&) { *static_cast<bool*>(p) = true; },
                                   &got).ok());
        }).ok());
        while (!got) sim->step();
        on(t0(), [&] {
            bdev::put_channel(ch);
            d.reset();
        });
        images.push_back(std::move(img));
    }
    ASSERT_GT(images.size(), 5u);
    make_malloc("Malloc1");
    for (auto& img : images) {
        restore("Malloc1", img);
        auto copy = load_store("Malloc1");
        ASSERT_TRUE(copy.ok()) << copy.error().message();
        // Every blob the loaded store lists opens, and its clusters are its own.
        auto& s = (*copy)->impl();
        for (BlobId id = (*copy)->first_blob_id(); id != kInvalidBlobId; id = (*copy)->next_blob_id(id)) {
            auto b = run((*copy)->open_blob(id));
            ASSERT_TRUE(b.ok()) << b.error().message();
            for (uint64_t i = 0; i < (*b)->num_clusters(); ++i)
                if ((*b)->is_cluster_allocated(i))
                    EXPECT_TRUE(s.used_clusters.test((*b)->impl().md.clusters[i]));
            ASSERT_TRUE(run((*copy)->close_blob(*b)).ok());
        }
        ASSERT_TRUE(run((*copy)->unload()).ok());
        on(t0(), [&] { copy->reset(); });
    }
}

class BlobCorruptTest : public BlobTest {
protected:
    // Formats, creates blobs, unloads cleanly; returns the ids.
    std::vector<BlobId> prepare(std::vector<Xattr> xs = {}) {
        init_store();
        std::vector<BlobId> ids{create(2, false, xs), create(2, false)};
        release_channels();
        EXPECT_TRUE(run(bs->unload()).ok());
        on(t0(), [&] { bs.reset(); });
        return ids;
    }
    format::Geometry geometry() {
        auto img = image();
        return *format::parse_super(img.data(), kBdevBlocks * kBlock, kBlock);
    }
    std::vector<uint8_t> page(uint64_t p) {
        std::vector<uint8_t> v(kMdPageSize);
        bdev_rw("Malloc0", false, v.data(), p * 8, 8);
        return v;
    }
    void put_page(uint64_t p, std::vector<uint8_t>& v) { bdev_rw("Malloc0", true, v.data(), p * 8, 8); }
    // The root page of the current generation of slot `slot`.
    uint64_t current_root(const format::Geometry& g, uint32_t slot) {
        auto a = page(g.md_start + 2 * slot), b = page(g.md_start + 2 * slot + 1);
        format::MdPage ha, hb;
        std::memcpy(&ha, a.data(), sizeof ha);
        std::memcpy(&hb, b.data(), sizeof hb);
        const bool va = format::page_crc(a.data()) == ha.crc, vb = format::page_crc(b.data()) == hb.crc;
        if (va && (!vb || ha.generation > hb.generation)) return g.md_start + 2 * slot;
        return g.md_start + 2 * slot + 1;
    }
    void expect_load_fails(const char* what) {
        auto r = load_store();
        ASSERT_FALSE(r.ok()) << "loaded despite " << what;
        EXPECT_EQ(r.code(), Errc::corrupt) << r.error().message();
        EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
    }
};

TEST_F(BlobCorruptTest, BadSuperBlock) {
    prepare();
    auto sb = page(0);
    sb[40] ^= 1;
    put_page(0, sb);
    expect_load_fails("bad crc");
    sb[40] ^= 1;
    reinterpret_cast<format::SuperBlock*>(sb.data())->version = 99;
    format::seal_page(sb.data());
    put_page(0, sb);
    expect_load_fails("unsupported version");
}

TEST_F(BlobCorruptTest, BadMetadataCrc) {
    auto ids = prepare();
    auto g = geometry();
    for (uint32_t w = 0; w < 2; ++w) {
        auto p = page(g.md_start + 2 + w);
        if (format::page_is_zero(p.data())) continue;
        p[100] ^= 0xff;
        put_page(g.md_start + 2 + w, p);
    }
    expect_load_fails("no valid metadata");
}

TEST_F(BlobCorruptTest, ChainLoop) {
    std::vector<Xattr> xs;
    for (int i = 0; i < 20; ++i) xs.push_back({"k" + std::to_string(i), std::vector<uint8_t>(400, 1)});
    prepare(xs);
    auto g = geometry();
    const uint64_t root = current_root(g, 0);
    auto rp = page(root);
    auto* h = reinterpret_cast<format::MdPage*>(rp.data());
    ASSERT_NE(h->next, format::kNoPage);
    auto ext = page(g.md_start + h->next);
    auto* eh = reinterpret_cast<format::MdPage*>(ext.data());
    eh->next = h->next;  // points at itself
    format::seal_page(ext.data());
    put_page(g.md_start + h->next, ext);
    expect_load_fails("loop");
}

TEST_F(BlobCorruptTest, OutOfRangeAndDuplicateClusters) {
    auto ids = prepare();
    auto g = geometry();
    const uint64_t r0 = current_root(g, 0), r1 = current_root(g, 1);
    auto p0 = page(r0), p1 = page(r1);
    const uint8_t* ptr0[] = {p0.data()};
    auto md0 = format::decode(ptr0, g);
    const uint8_t* ptr1[] = {p1.data()};
    auto md1 = format::decode(ptr1, g);
    ASSERT_TRUE(md0.ok() && md1.ok());
    // Blob 1 claims blob 0's first cluster.
    auto m = *md1;
    m.clusters[0] = md0->clusters[0];
    std::vector<uint8_t> enc(kMdPageSize);
    const uint32_t where = static_cast<uint32_t>(r1 - g.md_start);
    format::encode(m, std::span<const uint32_t>(&where, 1), enc.data());
    put_page(r1, enc);
    expect_load_fails("owned by blobs");
    // A cluster beyond the store.
    m.clusters[0] = static_cast<uint32_t>(g.total_clusters + 5);
    format::encode(m, std::span<const uint32_t>(&where, 1), enc.data());
    put_page(r1, enc);
    expect_load_fails("out of range");
}

TEST(BlobFormat, EncodeDecodeRoundTrip) {
    BsOptions o{.cluster_sz = kCluster, .num_md_pages = 64};
    auto g = format::compute_geometry(1u << 30, 512, o);  // 16384 clusters
    ASSERT_TRUE(g.ok());
    format::BlobMd m;
    m.id = format::make_blob_id(3);
    m.generation = 9;
    m.parent_id = format::make_blob_id(1);
    m.flags = format::kFlagThin;
    for (uint32_t i = 0; i < 3000; ++i) m.clusters.push_back(i % 3 == 0 ? 0 : 300 + (i * 7) % 9000);
    m.xattrs.push_back({"a", {1, 2, 3}});
    const size_t n = format::encoded_pages(m);
    ASSERT_GT(n, 1u);
    std::vector<uint32_t> pages(n);
    for (size_t i = 0; i < n; ++i) pages[i] = static_cast<uint32_t>(100 + i);
    std::vector<uint8_t> buf(n * kMdPageSize);
    format::encode(m, pages, buf.data());
    std::vector<const uint8_t*> ptrs;
    for (size_t i = 0; i < n; ++i) {
        ptrs.push_back(buf.data() + i * kMdPageSize);
        EXPECT_TRUE(format::check_page(ptrs.back(), m.id, 9, static_cast<uint32_t>(i)).ok());
    }
    auto d = format::decode(ptrs, *g);
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(d->clusters, m.clusters);
    EXPECT_EQ(d->parent_id, m.parent_id);
    EXPECT_EQ(d->xattrs.size(), 1u);
}

// ---- power cuts with a volatile write cache ---------------------------------------------------

const bdev::Module kCacheModule{"blob_test_cache", nullptr};

// A RAM bdev with a volatile write cache: a write is visible at once but durable only after a
// flush. crash_image() is what survives a power cut now: the durable bytes plus, for each write
// since the last flush, all of it, none of it, or some of its sectors (torn).
class CacheBdev final : public bdev::Bdev {
public:
    explicit CacheBdev(Properties p)
        : Bdev(kCacheModule, std::move(p)), current(num_blocks() * block_size()), durable(current) {}
    bool supports(bdev::IoType t) const noexcept override {
        return t == bdev::IoType::read || t == bdev::IoType::write || t == bdev::IoType::flush;
    }
    runtime::IoDevice& module_io_device() noexcept override { return bdev::stateless_io_device(); }
    void submit(runtime::IoChannel&, bdev::BdevIo& io) noexcept override {
        const size_t off = io.offset_blocks() * block_size();
        switch (io.type()) {
        case bdev::IoType::read: {
            size_t pos = off;
            for (const iovec& v : io.iovs()) {
                const size_t n = std::min(v.iov_len, off + io.length_bytes() - pos);
                std::memcpy(v.iov_base, current.data() + pos, n);
                pos += n;
            }
            break;
        }
        case bdev::IoType::write: {
            Pending w{off, {}};
            size_t pos = off;
            for (const iovec& v : io.iovs()) {
                const size_t n = std::min(v.iov_len, off + io.length_bytes() - pos);
                std::memcpy(current.data() + pos, v.iov_base, n);
                w.bytes.insert(w.bytes.end(), static_cast<uint8_t*>(v.iov_base),
                               static_cast<uint8_t*>(v.iov_base) + n);
                pos += n;
            }
            pending.push_back(std::move(w));
            ++writes;
            break;
        }
        case bdev::IoType::flush:
            durable = current;
            pending.clear();
            break;
        default:
            break;
        }
        io.complete(Errc::ok);
    }
    std::vector<uint8_t> crash_image(std::mt19937& rng) const {
        std::vector<uint8_t> img = durable;
        for (const Pending& w : pending) {
            const int mode = std::uniform_int_distribution<int>(0, 2)(rng);
            if (mode == 0) continue;  // lost
            for (size_t s = 0; s < w.bytes.size(); s += 512)
                if (mode == 1 || std::uniform_int_distribution<int>(0, 1)(rng))  // whole or torn
                    std::memcpy(img.data() + w.off + s, w.bytes.data() + s, std::min<size_t>(512, w.bytes.size() - s));
        }
        return img;
    }
    struct Pending {
        size_t off;
        std::vector<uint8_t> bytes;
    };
    std::vector<uint8_t> current, durable;
    std::vector<Pending> pending;
    uint64_t writes = 0;
};

// What the workload has been told is durable, updated as acknowledgements arrive.
struct Acked {
    std::set<BlobId> exist, gone;
    std::map<BlobId, std::vector<std::pair<uint64_t, int>>> data;  // (offset, pattern seed)
    bool creating = false;  // a create is in flight: a gone id may legitimately be back
    bool done = false;
    std::string error;
};

Task<void> cache_workload(BlobStore& bs, Acked& ack) {
    IoWaitS w;
    for (int round = 0; round < 4 && ack.error.empty(); ++round) {
        BlobOptions o;
        o.num_clusters = 4;
        o.thin_provision = round % 2 == 0;
        o.xattrs.push_back(Xattr{"round", std::vector<uint8_t>(1, uint8_t(round))});
        ack.creating = true;
        auto id = co_await bs.create_blob(std::move(o));
        ack.creating = false;
        if (!id.ok()) { ack.error = id.error().message(); break; }
        ack.exist.insert(*id);
        ack.gone.erase(*id);  // ids are reused
        auto b = co_await bs.open_blob(*id);
        if (!b.ok()) { ack.error = b.error().message(); break; }
        Channel* ch = bs.get_channel();
        std::vector<uint8_t> buf(2 * kBlock);
        for (int k = 0; k < 3; ++k) {
            const uint64_t off = k * kUnitsPerCluster + 7 + round;
            pattern(buf, round * 10 + k);
            w = {};
            Status s = write(*ch, **b, buf.data(), off, 2, IoWaitS::cb, &w);
            if (!s.ok()) { ack.error = s.to_string(); break; }
            s = co_await w.r;
            if (!s.ok()) { ack.error = s.to_string(); break; }
            if (k == 1) {  // a snapshot between writes: later writes copy on write
                ack.creating = true;
                auto snap = co_await bs.create_snapshot(*id);
                ack.creating = false;
                if (!snap.ok()) { ack.error = snap.error().message(); break; }
                ack.exist.insert(*snap);
                ack.gone.erase(*snap);
            }
            IoWaitS f;
            s = flush(*ch, **b, IoWaitS::cb, &f);
            if (s.ok()) s = co_await f.r;
            if (!s.ok()) { ack.error = s.to_string(); break; }
            ack.data[*id].push_back({off, round * 10 + k});
        }
        put_channel(ch);
        auto r = co_await (*b)->resize(6);
        if (!r.ok()) { ack.error = r.error().message(); break; }
        (void)co_await bs.close_blob(*b);
        // Delete the blob of the previous round (a snapshot's only clone: the merge path runs
        // when the snapshot goes after it).
        if (round >= 1) {
            const BlobId victim = format::make_blob_id(0);
            if (ack.exist.count(victim) && bs.clones(victim).empty()) {
                ack.exist.erase(victim);  // in flight: either outcome is fine
                r = co_await bs.delete_blob(victim);
                if (r.ok()) {
                    ack.exist.erase(victim);
                    ack.gone.insert(victim);
                    ack.data.erase(victim);
                }
            }
        }
        for (BlobId snap_id = bs.first_blob_id(); snap_id != kInvalidBlobId; snap_id = bs.next_blob_id(snap_id)) {
            if (bs.clones(snap_id).size() == 1 && round == 2) {  // merge a snapshot into its clone
                ack.exist.erase(snap_id);
                r = co_await bs.delete_blob(snap_id);
                if (!r.ok()) { ack.error = r.error().message(); break; }
                ack.exist.erase(snap_id);
                ack.gone.insert(snap_id);
                break;
            }
        }
    }
    ack.done = true;
}

TEST_F(BlobLoadTest, PowerCutsWithAVolatileWriteCacheKeepWhatWasAcknowledged) {
    bdev::register_module(kCacheModule);
    auto owned = std::make_unique<CacheBdev>(bdev::Bdev::Properties{.name = "Cache0", .block_size = kBlock,
                                                                     .num_blocks = kBdevBlocks, .write_cache = true});
    CacheBdev* cache = owned.get();
    on(t0(), [&] { ASSERT_TRUE(bdev::register_bdev(std::move(owned)).ok()); });
    auto r = run(BlobStore::init("Cache0", {.cluster_sz = kCluster}));
    ASSERT_TRUE(r.ok()) << r.error().message();
    bs = std::move(*r);
    make_malloc("Malloc1");

    Acked ack;
    runtime::spawn(*t0(), cache_workload(*bs, ack), [] {});
    std::mt19937 rng(static_cast<uint32_t>(test_seed()));
    struct Cut {
        std::vector<uint8_t> img;
        std::set<BlobId> exist, gone;
        std::map<BlobId, std::vector<std::pair<uint64_t, int>>> data;
        bool creating;
    };
    std::vector<Cut> cuts;
    uint64_t seen_writes = 0;
    while (!ack.done) {
        ASSERT_TRUE(sim->run_until([&] { return ack.done || cache->writes != seen_writes; },
                                   sim->now_ns() + 60 * runtime::kNsPerSec));
        seen_writes = cache->writes;
        // Every metadata write point (and every data write) is a cut; two draws of what the
        // cache lost or tore at each.
        for (int v = 0; v < 2; ++v)
            cuts.push_back({cache->crash_image(rng), ack.exist, ack.gone, ack.data, ack.creating});
    }
    ASSERT_TRUE(ack.error.empty()) << ack.error;
    ASSERT_GT(cuts.size(), 30u);
    size_t checked = 0;
    for (size_t i = 0; i < cuts.size(); ++i) {
        Cut& c = cuts[i];
        restore("Malloc1", c.img);
        auto copy = load_store("Malloc1");
        ASSERT_TRUE(copy.ok()) << "cut " << i << ": " << copy.error().message();
        std::set<BlobId> present;
        for (BlobId id = (*copy)->first_blob_id(); id != kInvalidBlobId; id = (*copy)->next_blob_id(id))
            present.insert(id);
        for (BlobId id : c.exist)
            EXPECT_TRUE(present.count(id)) << "cut " << i << ": acknowledged blob " << std::hex << id << " lost";
        for (BlobId id : c.gone)
            EXPECT_TRUE(c.creating || !present.count(id))
                << "cut " << i << ": deleted blob " << std::hex << id << " back";
        for (auto& [id, writes] : c.data) {
            if (!present.count(id)) continue;
            auto b = run((*copy)->open_blob(id));
            ASSERT_TRUE(b.ok()) << "cut " << i << ": " << b.error().message();
            Channel* ch = nullptr;
            on(t0(), [&] { ch = (*copy)->get_channel(); });
            for (auto [off, seed] : writes) {
                std::vector<uint8_t> want(2 * kBlock), got(2 * kBlock);
                pattern(want, seed);
                IoDone d;
                on(t0(), [&] { ASSERT_TRUE(read(*ch, **b, got.data(), off, 2, IoDone::cb, &d).ok()); });
                ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
                EXPECT_EQ(got, want) << "cut " << i << ": flushed data of blob " << id << " at " << off;
                ++checked;
            }
            on(t0(), [&] { put_channel(ch); });
            ASSERT_TRUE(run((*copy)->close_blob(*b)).ok());
        }
        run_until_idle();
        ASSERT_TRUE(run((*copy)->unload()).ok());
        on(t0(), [&] { copy->reset(); });
    }
    EXPECT_GT(checked, 20u);
    std::printf("seed %llu: %zu power cuts, %zu flushed writes checked\n",
                static_cast<unsigned long long>(test_seed()), cuts.size(), checked);
}

// ---- unmap releasing clusters of thin blobs ----------------------------------------------------

class BlobUnmapTest : public BlobLoadTest {
protected:
    Status unmap_range(Blob* b, uint64_t off, uint64_t n, runtime::Thread* th = nullptr) {
        th = th ? th : t0();
        Channel* ch = channel(th);
        IoDone d;
        Status s;
        on(th, [&] { s = unmap(*ch, *b, off, n, IoDone::cb, &d); });
        if (!s.ok()) return s;
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        return d.status;
    }
    static bool zeroes(const std::vector<uint8_t>& v) {
        return std::all_of(v.begin(), v.end(), [](uint8_t c) { return c == 0; });
    }
    // A copy of the bdev as it is now loads dirty with the masks the live store has.
    void expect_dirty_load_matches() {
        const Masks live = masks();
        auto img = image();
        if (bdev::find("Malloc1") == nullptr) make_malloc("Malloc1");
        restore("Malloc1", img);
        auto copy = load_store("Malloc1");
        ASSERT_TRUE(copy.ok()) << copy.error().message();
        EXPECT_TRUE((*copy)->info().loaded_dirty);
        EXPECT_EQ((*copy)->impl().used_clusters, live.clusters);
        ASSERT_TRUE(run((*copy)->unload()).ok());
        on(t0(), [&] { copy->reset(); });
    }
};

TEST_F(BlobUnmapTest, ThinUnmapReleasesWholeClustersOnly) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    BlobId id = create(6, true);
    Blob* b = open(id);
    std::vector<std::vector<uint8_t>> data(6, std::vector<uint8_t>(kCluster));
    for (uint64_t c = 0; c < 5; ++c) {
        pattern(data[c], static_cast<int>(c) + 70);
        ASSERT_TRUE(io(b, true, data[c], c * kUnitsPerCluster).ok());
    }
    EXPECT_EQ(b->num_allocated_clusters(), 5u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 5);
    // From the middle of cluster 0 to the end of cluster 3: 1, 2 and 3 are covered whole.
    ASSERT_TRUE(unmap_range(b, kUnitsPerCluster / 2, 4 * kUnitsPerCluster - kUnitsPerCluster / 2).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 2u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 2);
    EXPECT_TRUE(b->is_cluster_allocated(0));
    EXPECT_TRUE(b->is_cluster_allocated(4));
    for (uint64_t c = 1; c < 4; ++c) {
        EXPECT_FALSE(b->is_cluster_allocated(c));
        EXPECT_TRUE(zeroes(read_back(b, c * kUnitsPerCluster, kUnitsPerCluster))) << c;
    }
    // The partial cluster went to the bdev (malloc zeroes unmapped blocks): its first half stays.
    auto r0 = read_back(b, 0, kUnitsPerCluster / 2);
    EXPECT_TRUE(std::equal(r0.begin(), r0.end(), data[0].begin()));
    EXPECT_EQ(read_back(b, 4 * kUnitsPerCluster, kUnitsPerCluster), data[4]);
    // Durable before completion: a copy taken now loads dirty with the same free clusters.
    expect_dirty_load_matches();
    // A released cluster is allocated again by the next write.
    ASSERT_TRUE(io(b, true, data[2], 2 * kUnitsPerCluster).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 3u);
    close(b);
    reload();
    b = open(id);
    EXPECT_EQ(b->num_allocated_clusters(), 3u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 3);
    EXPECT_EQ(read_back(b, 2 * kUnitsPerCluster, kUnitsPerCluster), data[2]);
    EXPECT_EQ(read_back(b, 4 * kUnitsPerCluster, kUnitsPerCluster), data[4]);
    close(b);
}

TEST_F(BlobUnmapTest, ThickUnmapKeepsItsClusters) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    Blob* b = open(create(3, false));
    ASSERT_TRUE(unmap_range(b, 0, 3 * kUnitsPerCluster).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 3u);
    EXPECT_EQ(bs->info().free_clusters, free0 - 3);
    close(b);
}

TEST_F(BlobUnmapTest, CloneUnmapExposesTheParentWriteZeroesReadsZeroes) {
    init_store();
    BlobId id = create(2, true);
    Blob* b = open(id);
    std::vector<uint8_t> old_data(kCluster), new_data(kCluster);
    pattern(old_data, 80);
    pattern(new_data, 81);
    ASSERT_TRUE(io(b, true, old_data, 0).ok());
    ASSERT_TRUE(io(b, true, old_data, kUnitsPerCluster).ok());
    ASSERT_TRUE(run(bs->create_snapshot(id)).ok());  // b is now a thin clone
    ASSERT_TRUE(io(b, true, new_data, 0).ok());
    ASSERT_TRUE(io(b, true, new_data, kUnitsPerCluster).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 2u);
    const uint64_t free1 = bs->info().free_clusters;
    // Unmap: the clone's cluster goes and the snapshot's data shows ("undefined" allows it).
    ASSERT_TRUE(unmap_range(b, 0, kUnitsPerCluster).ok());
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    EXPECT_EQ(bs->info().free_clusters, free1 + 1);
    EXPECT_EQ(read_back(b, 0, kUnitsPerCluster), old_data);
    // write_zeroes must read zeroes: it keeps (or allocates) the cluster.
    IoDone d;
    on(t0(), [&] {
        ASSERT_TRUE(write_zeroes(*channel(t0()), *b, kUnitsPerCluster, kUnitsPerCluster, IoDone::cb, &d).ok());
    });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    ASSERT_TRUE(d.status.ok());
    EXPECT_TRUE(zeroes(read_back(b, kUnitsPerCluster, kUnitsPerCluster)));
    EXPECT_EQ(b->num_allocated_clusters(), 1u);
    close(b);
}

TEST_F(BlobUnmapTest, UnmapAndWritesOnTwoThreadsAtOnce) {
    init_store();
    const uint64_t free0 = bs->info().free_clusters;
    constexpr uint64_t kClusters = 12;
    BlobId id = create(kClusters, true);
    Blob* b = open(id);
    std::vector<uint8_t> w(kCluster);
    pattern(w, 90);
    for (uint64_t c = 0; c < 6; ++c) ASSERT_TRUE(io(b, true, w, c * kUnitsPerCluster).ok());
    // Thread 1 unmaps clusters 0..5 one at a time while Thread 2 writes (first writes, which
    // allocate) clusters 6..11, and rewrites cluster 0 and 5 (racing their release).
    Channel* c1 = channel(threads[1]);
    Channel* c2 = channel(threads[2]);
    std::vector<IoDone> ud(6), wd(kClusters - 6 + 2);
    std::vector<std::vector<uint8_t>> bufs(wd.size(), std::vector<uint8_t>(4 * kBlock));
    ASSERT_TRUE(threads[1]->post([&] {
        for (uint64_t c = 0; c < 6; ++c)
            ASSERT_TRUE(unmap(*c1, *b, c * kUnitsPerCluster, kUnitsPerCluster, IoDone::cb, &ud[c]).ok());
    }).ok());
    ASSERT_TRUE(threads[2]->post([&] {
        for (size_t i = 0; i < wd.size(); ++i) {
            pattern(bufs[i], static_cast<int>(i) + 91);
            const uint64_t c = i < kClusters - 6 ? 6 + i : (i == kClusters - 6 ? 0 : 5);
            ASSERT_TRUE(write(*c2, *b, bufs[i].data(), c * kUnitsPerCluster + 8, 4, IoDone::cb, &wd[i]).ok());
        }
    }).ok());
    ASSERT_TRUE(poll_until([&] {
        for (auto* v : {&ud, &wd})
            for (auto& d : *v)
                if (d.calls == 0) return false;
        return true;
    }));
    for (auto& d : ud) EXPECT_TRUE(d.status.ok()) << d.status.to_string();
    for (auto& d : wd) EXPECT_TRUE(d.status.ok()) << d.status.to_string();
    for (uint64_t c = 6; c < kClusters; ++c)
        EXPECT_EQ(read_back(b, c * kUnitsPerCluster + 8, 4), bufs[c - 6]);
    for (uint64_t c = 1; c < 5; ++c) EXPECT_FALSE(b->is_cluster_allocated(c));
    // Clusters 0 and 5 hold either the write or nothing, whichever came last; the counts agree
    // with the masks in every case.
    uint64_t allocated = 0;
    for (uint64_t c = 0; c < kClusters; ++c) allocated += b->is_cluster_allocated(c);
    EXPECT_EQ(b->num_allocated_clusters(), allocated);
    EXPECT_EQ(bs->info().free_clusters, free0 - allocated);
    for (uint64_t c : {0, 5}) {
        auto r = read_back(b, c * kUnitsPerCluster + 8, 4);
        if (b->is_cluster_allocated(c)) EXPECT_EQ(r, bufs[c == 0 ? kClusters - 6 : kClusters - 5]);
        else EXPECT_TRUE(zeroes(r));
    }
    expect_dirty_load_matches();
    close(b);
}

TEST_F(BlobUnmapTest, DeleteAndShrinkClearTheirClusters) {
    init_store();
    std::vector<uint8_t> w(kCluster);
    pattern(w, 95);
    auto clusters_of = [&](BlobId id) {
        std::vector<uint32_t> out;
        auto it = bs->impl().open_blobs.find(id);
        for (uint32_t k : it->second->md.clusters)
            if (k != format::kUnallocated) out.push_back(k);
        return out;
    };
    auto base_cluster = [&](uint32_t k) {
        std::vector<uint8_t> v(kCluster);
        bdev_rw("Malloc0", false, v.data(), uint64_t{k} * kUnitsPerCluster, kUnitsPerCluster);
        return v;
    };
    // Delete with write_zeroes: the freed clusters read zeroes on the bdev.
    BlobId a = create(2, false);
    Blob* ab = open(a);
    for (uint64_t c = 0; c < 2; ++c) ASSERT_TRUE(io(ab, true, w, c * kUnitsPerCluster).ok());
    const auto ka = clusters_of(a);
    close(ab);
    ASSERT_EQ(ka.size(), 2u);
    EXPECT_EQ(base_cluster(ka[0]), w);
    ASSERT_TRUE(run(bs->delete_blob(a, ClearMethod::write_zeroes)).ok());
    for (uint32_t k : ka) EXPECT_TRUE(zeroes(base_cluster(k)));
    // Delete with none leaves the data where it was.
    BlobId n = create(1, false);
    Blob* nb = open(n);
    ASSERT_TRUE(io(nb, true, w, 0).ok());
    const auto kn = clusters_of(n);
    close(nb);
    ASSERT_TRUE(run(bs->delete_blob(n, ClearMethod::none)).ok());
    EXPECT_EQ(base_cluster(kn[0]), w);
    // A shrinking resize clears with the blob's clear method.
    BlobId r = create(3, false);
    Blob* rb = open(r);
    for (uint64_t c = 0; c < 3; ++c) ASSERT_TRUE(io(rb, true, w, c * kUnitsPerCluster).ok());
    const auto kr = clusters_of(r);
    rb->set_clear_method(ClearMethod::unmap);  // malloc zeroes what it unmaps
    ASSERT_TRUE(run(rb->resize(1)).ok());
    EXPECT_EQ(base_cluster(kr[0]), w);
    EXPECT_TRUE(zeroes(base_cluster(kr[1])));
    EXPECT_TRUE(zeroes(base_cluster(kr[2])));
    close(rb);
}

// ---- grow (BlobStore::grow, docs/design/blobstore.md "Growing") ---------------------------------

// The store sits on a window over Malloc0 (tests/window_bdev.h) that grows like a resized LUN.
class BlobGrowTest : public BlobTest {
protected:
    static constexpr uint64_t kSmall = 4 * 1024 * 1024 / kBlock;  // 4 MiB: 64 clusters

    void window(uint64_t blocks) {
        on(t0(), [&] { ASSERT_TRUE(testing::window_create("Win0", "Malloc0", blocks).ok()); });
    }
    void resize_window(uint64_t blocks, bool beyond_base = false) {
        on(t0(), [&] { ASSERT_TRUE(testing::window_resize("Win0", blocks, beyond_base).ok()); });
    }
    void init_on_window(BsOptions o = {.cluster_sz = kCluster}) {
        auto r = run(BlobStore::init("Win0", o));
        ASSERT_TRUE(r.ok()) << r.error().message();
        bs = std::move(*r);
    }
    void reload_window() {
        release_channels();
        ASSERT_TRUE(run(bs->unload()).ok());
        on(t0(), [&] { bs.reset(); });
        auto r = load_store("Win0");
        ASSERT_TRUE(r.ok()) << r.error().message();
        bs = std::move(*r);
    }
    // Whatever the durable bytes say now, as after a crash: the store is dropped without unload.
    void crash_and_load() {
        release_channels();
        on(t0(), [&] { bs.reset(); });
        auto r = load_store("Win0");
        ASSERT_TRUE(r.ok()) << r.error().message();
        bs = std::move(*r);
    }
    std::vector<uint8_t> super_page() {  // through the window: Malloc0 is claimed by it
        std::vector<uint8_t> p(kMdPageSize);
        bdev_rw("Win0", false, p.data(), 0, kMdPageSize / kBlock);
        return p;
    }
};

TEST_F(BlobGrowTest, GrowsKeepsDataAndUsesTheNewClusters) {
    window(kSmall);
    init_on_window();
    EXPECT_EQ(bs->info().total_clusters, 64u);
    // Same size: nothing to do.
    ASSERT_TRUE(run(bs->grow()).ok());
    EXPECT_EQ(bs->info().total_clusters, 64u);
    const uint64_t free0 = bs->info().free_clusters;
    // Fill the store; its last cluster carries data.
    const BlobId a = create(free0, false);
    EXPECT_EQ(bs->info().free_clusters, 0u);
    EXPECT_EQ(run(bs->create_blob({1, false, {}})).code(), Errc::no_space);
    Blob* ab = open(a);
    std::vector<uint8_t> wa(kCluster);
    pattern(wa, 7);
    ASSERT_TRUE(io(ab, true, wa, (free0 - 1) * kUnitsPerCluster).ok());

    resize_window(kBdevBlocks);  // 16 MiB
    ASSERT_TRUE(run(bs->grow()).ok());
    EXPECT_EQ(bs->info().total_clusters, 256u);
    EXPECT_EQ(bs->info().free_clusters, 192u);
    EXPECT_EQ(read_back(ab, (free0 - 1) * kUnitsPerCluster, kUnitsPerCluster), wa);
    // The new clusters serve thick creates, thin first writes and a resize past the old size
    // (the default per-blob limit, the store's size, followed it).
    const BlobId b = create(100, false);
    const BlobId t = create(8, true);
    Blob* bb = open(b);
    Blob* tb = open(t);
    ASSERT_TRUE(run(ab->resize(free0 + 80)).ok());
    EXPECT_EQ(bs->info().free_clusters, 12u);  // 192 - 100 - 80
    std::vector<uint8_t> wb(kCluster), wt(kCluster), wz(kCluster);
    pattern(wb, 8);
    pattern(wt, 9);
    pattern(wz, 10);
    ASSERT_TRUE(io(bb, true, wb, 99 * kUnitsPerCluster).ok());
    ASSERT_TRUE(io(tb, true, wt, 5 * kUnitsPerCluster).ok());
    ASSERT_TRUE(io(ab, true, wz, (free0 + 79) * kUnitsPerCluster).ok());
    EXPECT_EQ(bs->info().free_clusters, 11u);
    for (Blob* x : {ab, bb, tb})
        for (uint64_t i = 0; i < x->num_clusters(); ++i)
            if (x->is_cluster_allocated(i)) EXPECT_LT(x->impl().md.clusters[i], 256u);
    close(ab);
    close(bb);
    close(tb);

    auto check = [&](const char* when) {
        SCOPED_TRACE(when);
        EXPECT_EQ(bs->info().total_clusters, 256u);
        EXPECT_EQ(bs->info().free_clusters, 11u);
        Blob* a2 = open(a);
        Blob* b2 = open(b);
        Blob* t2 = open(t);
        ASSERT_TRUE(a2 && b2 && t2);
        EXPECT_EQ(read_back(a2, (free0 - 1) * kUnitsPerCluster, kUnitsPerCluster), wa);
        EXPECT_EQ(read_back(a2, (free0 + 79) * kUnitsPerCluster, kUnitsPerCluster), wz);
        EXPECT_EQ(read_back(b2, 99 * kUnitsPerCluster, kUnitsPerCluster), wb);
        EXPECT_EQ(read_back(t2, 5 * kUnitsPerCluster, kUnitsPerCluster), wt);
        close(a2);
        close(b2);
        close(t2);
    };
    // Dirty: a copy of the bytes as they are (the store on disk is dirty while loaded).
    {
        auto img = image("Win0");  // Malloc0 is claimed by the window
        make_malloc("Malloc1");
        restore("Malloc1", img);
        auto copy = load_store("Malloc1");
        ASSERT_TRUE(copy.ok()) << copy.error().message();
        EXPECT_TRUE((*copy)->info().loaded_dirty);
        EXPECT_EQ((*copy)->info().total_clusters, 256u);
        EXPECT_EQ((*copy)->info().free_clusters, 11u);
        EXPECT_EQ((*copy)->impl().used_clusters, bs->impl().used_clusters);
        ASSERT_TRUE(run((*copy)->unload()).ok());
        on(t0(), [&] { copy->reset(); });
    }
    crash_and_load();
    EXPECT_TRUE(bs->info().loaded_dirty);
    check("dirty load");
    reload_window();
    EXPECT_FALSE(bs->info().loaded_dirty);
    check("clean load");
}

TEST_F(BlobGrowTest, ShrinkIsIgnoredAndABiggerBdevLoadsAtItsOldSize) {
    window(kSmall);
    init_on_window();
    const BlobId a = create(3, false);
    // A store whose bdev grew loads at the size it has (SPDK does not grow on load).
    resize_window(2 * kSmall);
    reload_window();
    EXPECT_EQ(bs->info().total_clusters, 64u);
    // A smaller bdev: nothing to grow, not an error, nothing changes.
    resize_window(kSmall / 2);
    ASSERT_TRUE(run(bs->grow()).ok());
    EXPECT_EQ(bs->info().total_clusters, 64u);
    resize_window(2 * kSmall);
    ASSERT_TRUE(run(bs->grow()).ok());
    EXPECT_EQ(bs->info().total_clusters, 128u);
    reload_window();
    EXPECT_EQ(bs->info().total_clusters, 128u);
    EXPECT_NE(open(a), nullptr);
}

TEST_F(BlobGrowTest, BeyondTheClusterMaskIsRefused) {
    // 4 KiB clusters: the one cluster mask page holds 32768 clusters (128 MiB).
    window(kSmall);
    init_on_window({.cluster_sz = 4096, .num_md_pages = 16});
    EXPECT_EQ(bs->info().total_clusters, 1024u);
    EXPECT_EQ(format::max_total_clusters(bs->impl().g), 32768u);
    // Only the size matters here: the window may claim more than Malloc0 has.
    resize_window((32768ull + 1) * 4096 / kBlock, true);
    auto r = run(bs->grow());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::no_space);
    EXPECT_NE(r.error().message().find("at most 32768 clusters"), std::string::npos)
        << r.error().message();
    EXPECT_EQ(bs->info().total_clusters, 1024u);
    resize_window(kBdevBlocks);
    ASSERT_TRUE(run(bs->grow()).ok());
    EXPECT_EQ(bs->info().total_clusters, 4096u);
}

// The grow's super block write torn by a power cut at sector granularity: whichever version the
// first sector holds is what loads (with head_crc the page crc is the same for every version),
// dirty as the grow wrote it. Other damage is refused.
TEST_F(BlobGrowTest, TornGrowSuperBlockLoadsTheOldOrTheNewSize) {
    window(kSmall);
    init_on_window();
    const BlobId a = create(2, false);
    const auto before = super_page();
    resize_window(kBdevBlocks);
    ASSERT_TRUE(run(bs->grow()).ok());
    const auto after = super_page();
    ASSERT_NE(before, after);
    auto torn = [&](const std::vector<uint8_t>& first, const std::vector<uint8_t>& rest) {
        std::vector<uint8_t> p = rest;
        std::memcpy(p.data(), first.data(), kBlock);
        bdev_rw("Win0", true, p.data(), 0, kMdPageSize / kBlock);
    };
    torn(after, before);  // new first sector, old crc
    crash_and_load();
    EXPECT_TRUE(bs->info().loaded_dirty);
    EXPECT_EQ(bs->info().total_clusters, 256u);
    EXPECT_NE(open(a), nullptr);
    close(&bs->impl().open_blobs.begin()->second->handle);
    torn(before, after);  // old first sector, new crc (a device tearing out of order)
    crash_and_load();
    EXPECT_TRUE(bs->info().loaded_dirty);
    EXPECT_EQ(bs->info().total_clusters, 64u);
    EXPECT_EQ(bs->info().free_clusters, 64u - bs->impl().g.first_data_cluster - 2);
    // A flipped bit in the first sector, or anything but zeroes after it, is damage.
    release_channels();
    ASSERT_TRUE(run(bs->unload()).ok());
    on(t0(), [&] { bs.reset(); });
    for (size_t at : {size_t{40}, size_t{1000}}) {
        auto p = super_page();
        p[at] ^= 1;
        bdev_rw("Win0", true, p.data(), 0, kMdPageSize / kBlock);
        auto bad = load_store("Win0");
        ASSERT_FALSE(bad.ok());
        EXPECT_EQ(bad.error().message(), "super block: bad crc");
        p[at] ^= 1;
        bdev_rw("Win0", true, p.data(), 0, kMdPageSize / kBlock);
    }
    auto ok = load_store("Win0");
    ASSERT_TRUE(ok.ok()) << ok.error().message();
    bs = std::move(*ok);
}

TEST_F(BlobTest, ExternalSnapshotMissingOpensDegradedThenAttaches) {
    init_store();
    on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({"Base", 2 * kUnitsPerCluster, kBlock, {}, 0}).ok()); });
    std::vector<uint8_t> base(2 * kCluster);
    pattern(base, 43);
    bdev_rw("Base", true, base.data(), 0, 2 * kUnitsPerCluster);
    auto id = run(bs->create_esnap_clone("Base", 2));
    ASSERT_TRUE(id.ok());
    Blob* b = open(*id);
    std::vector<uint8_t> own(kBlock, 0x5a);
    ASSERT_TRUE(io(b, true, own, kUnitsPerCluster).ok());  // cluster 1 is its own now
    auto snap = run(bs->create_snapshot(*id));             // the chain: b -> snap -> Base
    ASSERT_TRUE(snap.ok());
    close(b);
    // Keep the bytes, delete the bdev, reload: the blob (and its snapshot) open only degraded.
    release_channels();
    bool gone = false;
    on(t0(), [&] { bdev::malloc_delete("Base", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return gone; }));
    reload();
    EXPECT_EQ(run(bs->open_blob(*id)).code(), Errc::not_found);
    auto dr = run(bs->open_blob_degraded(*id));
    ASSERT_TRUE(dr.ok()) << dr.error().message();
    b = *dr;
    EXPECT_TRUE(b->is_degraded());
    EXPECT_EQ(b->external_snapshot(), "");  // the snapshot holds it now
    // A plain open of the degraded chain and operations needing the bdev are refused.
    EXPECT_EQ(run(bs->open_blob(*snap)).code(), Errc::not_found);
    EXPECT_EQ(run(bs->inflate(*id)).code(), Errc::not_found);
    // Reads of its own cluster work; of the external snapshot's, io_error; so does a first
    // write (it would have to copy from the bdev).
    std::vector<uint8_t> got(kBlock);
    ASSERT_TRUE(io(b, false, got, kUnitsPerCluster).ok());
    EXPECT_EQ(got, own);
    EXPECT_EQ(io(b, false, got, 3).code(), Errc::io_error);
    EXPECT_EQ(io(b, true, own, 3).code(), Errc::io_error);
    EXPECT_EQ(run(bs->attach_external_snapshot(b)).code(), Errc::not_found);
    // The bdev comes back: attach, and reads see its data.
    on(t0(), [&] { ASSERT_TRUE(bdev::malloc_create({"Base", 2 * kUnitsPerCluster, kBlock, {}, 0}).ok()); });
    bdev_rw("Base", true, base.data(), 0, 2 * kUnitsPerCluster);
    auto ar = run(bs->attach_external_snapshot(b));
    ASSERT_TRUE(ar.ok()) << ar.error().message();
    EXPECT_FALSE(b->is_degraded());
    auto r0 = read_back(b, 0, kUnitsPerCluster);
    EXPECT_EQ(r0, std::vector<uint8_t>(base.begin(), base.begin() + kCluster));
    close(b);
    // Deleting works on a degraded chain too.
    release_channels();
    gone = false;
    on(t0(), [&] { bdev::malloc_delete("Base", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return gone; }));
    reload();
    auto d2 = run(bs->open_blob_degraded(*id));
    ASSERT_TRUE(d2.ok());
    // The degraded snapshot merges into its (open, degraded) clone, which stays degraded.
    ASSERT_TRUE(run(bs->delete_blob(*snap)).ok());
    EXPECT_TRUE((*d2)->is_degraded());
    EXPECT_EQ((*d2)->external_snapshot(), "Base");
    EXPECT_EQ(io(*d2, false, got, 3).code(), Errc::io_error);
    ASSERT_TRUE(io(*d2, false, got, kUnitsPerCluster).ok());
    EXPECT_EQ(got, own);
    close(*d2);
    ASSERT_TRUE(run(bs->delete_blob(*id)).ok());
}

TEST_F(BlobUnmapTest, PowerCutsDuringUnmapReleaseLoadConsistently) {
    init_store();
    BlobId id = create(8, true);
    Blob* b = open(id);
    Channel* ch = channel(t0());
    std::vector<std::vector<uint8_t>> data(8, std::vector<uint8_t>(4 * kBlock));
    for (int c = 0; c < 8; ++c) pattern(data[c], 200 + c);
    int written = 0;  // clusters whose write completed (malloc: completed is durable)
    bool finished = false;
    struct W {
        static Task<Result<void>> run(Channel* ch, Blob* b, std::vector<std::vector<uint8_t>>* data,
                                      int* written) {
            for (int c = 0; c < 8; ++c) {
                IoWaitS w;
                Status s = write(*ch, *b, (*data)[c].data(), c * kUnitsPerCluster, 4, IoWaitS::cb, &w);
                if (!s.ok()) co_return Error(s);
                if (Status st = co_await w.r; !st.ok()) co_return Error(st);
                *written = c + 1;
            }
            for (int c = 0; c < 6; c += 2) {  // clusters 6 and 7 stay
                IoWaitS w;
                Status s = unmap(*ch, *b, c * kUnitsPerCluster, 2 * kUnitsPerCluster, IoWaitS::cb, &w);
                if (!s.ok()) co_return Error(s);
                if (Status st = co_await w.r; !st.ok()) co_return Error(st);
            }
            co_return Result<void>{};
        }
    };
    runtime::spawn(*t0(), W::run(ch, b, &data, &written), [&](Result<void> r) {
        EXPECT_TRUE(r.ok()) << r.error().message();
        finished = true;
    });
    std::vector<std::pair<std::vector<uint8_t>, int>> images;
    std::mt19937 rng(static_cast<uint32_t>(test_seed()));
    while (!finished) {
        for (int n = std::uniform_int_distribution<int>(1, 12)(rng); n > 0 && !finished; --n) sim->step();
        if (finished) break;
        std::vector<uint8_t> img(kBdevBlocks * kBlock);
        bool got = false;
        std::unique_ptr<bdev::Desc> d;
        bdev::Channel* bch = nullptr;
        ASSERT_TRUE(t0()->post([&] {  // one atomic step of the sim: a consistent cut
            d = bdev::open("Malloc0", false).value();
            bch = d->get_channel();
            ASSERT_TRUE(bdev::read(*d, *bch, img.data(), 0, kBdevBlocks,
                                   [](void* p, const bdev::IoStatus&) { *static_cast<bool*>(p) = true; },
                                   &got).ok());
        }).ok());
        const int w_at = written;
        while (!got) sim->step();
        on(t0(), [&] {
            bdev::put_channel(bch);
            d.reset();
        });
        images.emplace_back(std::move(img), w_at);
    }
    ASSERT_GT(images.size(), 5u);
    EXPECT_EQ(b->num_allocated_clusters(), 2u);
    close(b);
    make_malloc("Malloc1");
    for (auto& [img, w_at] : images) {
        restore("Malloc1", img);
        auto copy = load_store("Malloc1");
        ASSERT_TRUE(copy.ok()) << copy.error().message();  // no cluster owned twice, none lost
        auto& s = (*copy)->impl();
        auto ob = run((*copy)->open_blob(id));
        ASSERT_TRUE(ob.ok()) << ob.error().message();
        // The mask holds exactly the blob's clusters (plus none leaked by a half-done release).
        EXPECT_EQ((*copy)->info().free_clusters + (*ob)->num_allocated_clusters(),
                  s.g.total_clusters - s.g.first_data_cluster);
        Channel* cch = nullptr;
        on(t0(), [&] { cch = (*copy)->get_channel(); });
        for (int c = 6; c < std::min(w_at, 8); ++c) {
            std::vector<uint8_t> got(4 * kBlock);
            IoDone dd;
            on(t0(), [&] { ASSERT_TRUE(read(*cch, **ob, got.data(), c * kUnitsPerCluster, 4, IoDone::cb, &dd).ok()); });
            ASSERT_TRUE(poll_until([&] { return dd.calls == 1; }));
            EXPECT_EQ(got, data[c]) << "cluster " << c;
        }
        on(t0(), [&] { put_channel(cch); });
        ASSERT_TRUE(run((*copy)->close_blob(*ob)).ok());
        run_until_idle();
        ASSERT_TRUE(run((*copy)->unload()).ok());
        on(t0(), [&] { copy->reset(); });
    }
}

TEST_F(BlobUnmapTest, AFailedReleaseFailsTheUnmapAndKeepsTheClusters) {
    // Its own base: the error module remembers the bases it was asked to wrap process-wide.
    make_malloc("MallocU");
    on(t0(), [&] { ASSERT_TRUE(bdev::error_create("MallocU", "").ok()); });
    auto r = run(BlobStore::init("EE_MallocU", {.cluster_sz = kCluster}));
    ASSERT_TRUE(r.ok()) << r.error().message();
    bs = std::move(*r);
    Blob* b = open(create(2, true));
    std::vector<uint8_t> w(kCluster);
    pattern(w, 97);
    ASSERT_TRUE(io(b, true, w, 0).ok());
    const uint64_t free1 = bs->info().free_clusters;
    // The bdev's unmap succeeds (error bdev over malloc) but the metadata write fails.
    bdev::ErrorInjection e;
    e.io_type = bdev::IoType::write;
    e.num = 1;
    on(t0(), [&] { ASSERT_TRUE(bdev::error_inject("EE_MallocU", e).ok()); });
    EXPECT_EQ(unmap_range(b, 0, kUnitsPerCluster).code(), Errc::io_error);
    EXPECT_TRUE(b->is_cluster_allocated(0));
    EXPECT_EQ(bs->info().free_clusters, free1);
    // A retry releases it.
    ASSERT_TRUE(unmap_range(b, 0, kUnitsPerCluster).ok());
    EXPECT_FALSE(b->is_cluster_allocated(0));
    EXPECT_EQ(bs->info().free_clusters, free1 + 1);
    close(b);
}

}  // namespace
}  // namespace strata::blob
