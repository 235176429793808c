// Fuzz target: the blobstore loader on damaged metadata. A small store (4 blob slots, 16 md
// pages) is built once on a malloc bdev in the simulator: a thick blob with xattrs, a thin one
// with data, a snapshot and a clone. Each input picks the clean or the dirty image of it and
// patches pages of the super block, the masks and the metadata region:
//   byte 0: bit 0 clean image, bit 1 run a write to every blob after loading
//   then chunks: [page u8][len u16 LE][len bytes at the page's start]; page bit 7 reseals the
//   page's crc32c afterwards (so the parser behind the checksum is reached).
// Invariants: no crash, no hang; load either fails with an Error or yields a store whose every
// listed blob opens (or fails cleanly), reads and writes within range, and unloads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <strata/base/crc.h>
#include <strata/base/log.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/blob/blobstore.h>
#include <strata/env/env.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/task.h>

#include "fuzz_target.h"

#include "malloc/malloc.h"

namespace {

using namespace strata;
using strata::runtime::Task;

constexpr uint32_t kBlock = 512;
constexpr uint64_t kBlocks = 512;  // 256 KiB: 64 clusters of 4 KiB
constexpr uint32_t kPage = 4096;
constexpr size_t kPatchablePages = 24;  // super, masks, md region and a little beyond

struct World {
    std::unique_ptr<runtime::SimScheduler> sim;
    runtime::Thread* t = nullptr;
    std::vector<uint8_t> clean, dirty;

    template <class T>
    T run(Task<T> task) {
        std::optional<T> out;
        runtime::spawn(*t, std::move(task), [&](T v) { out.emplace(std::move(v)); });
        if (!sim->run_until([&] { return out.has_value(); }, sim->now_ns() + 600ull * 1'000'000'000))
            std::abort();  // a hang is a finding
        return std::move(*out);
    }
    template <class F>
    void on(F fn) {
        bool done = false;
        (void)t->post([&] {
            fn();
            done = true;
        });
        sim->run_until([&] { return done; });
    }
    void bdev_rw(bool is_write, uint8_t* buf) {
        bool done = false;
        std::unique_ptr<bdev::Desc> d;
        bdev::Channel* ch = nullptr;
        on([&] {
            d = bdev::open("Fuzz0", true).value();
            ch = d->get_channel();
            auto cb = [](void* p, const bdev::IoStatus&) { *static_cast<bool*>(p) = true; };
            Status s = is_write ? bdev::write(*d, *ch, buf, 0, kBlocks, cb, &done)
                                : bdev::read(*d, *ch, buf, 0, kBlocks, cb, &done);
            if (!s.ok()) std::abort();
        });
        sim->run_until([&] { return done; });
        on([&] {
            bdev::put_channel(ch);
            d.reset();
        });
    }

    static Task<Result<void>> build(blob::BlobStore& bs) {
        blob::BlobOptions a;
        a.num_clusters = 3;
        a.xattrs.push_back({"name", {'v', '0'}});
        auto ida = co_await bs.create_blob(std::move(a));
        blob::BlobOptions b;
        b.num_clusters = 6;
        b.thin_provision = true;
        auto idb = co_await bs.create_blob(std::move(b));
        if (!ida.ok() || !idb.ok()) co_return Error(Errc::internal, "create");
        auto blob = co_await bs.open_blob(*idb);
        if (!blob.ok()) co_return blob.error();
        co_await bs.close_blob(*blob);
        auto snap = co_await bs.create_snapshot(*ida);
        if (!snap.ok()) co_return snap.error();
        auto clone = co_await bs.create_clone(*snap);
        if (!clone.ok()) co_return clone.error();
        co_return Result<void>{};
    }

    // The malloc bdev goes before the simulator (its DMA memory belongs to the owner's Host).
    ~World() {
        bool gone = false;
        on([&] { bdev::unregister_bdev("Fuzz0", [&gone](Result<void>) { gone = true; }); });
        sim->run_until([&] { return gone; });
    }
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    World() {
        strata::fuzz::quiet_logs();
        if (!strata::fuzz::env_ready()) std::abort();
        sim = std::make_unique<runtime::SimScheduler>(1, 1);
        t = sim->create_thread("fuzz");
        on([] {
            if (!bdev::malloc_create({"Fuzz0", kBlocks, kBlock, {}, 0}).ok()) std::abort();
        });
        blob::BsOptions o;
        o.cluster_sz = 4096;
        o.num_md_pages = 16;
        auto bs = run(blob::BlobStore::init("Fuzz0", o));
        if (!bs.ok()) std::abort();
        if (!run(build(**bs)).ok()) std::abort();
        dirty.resize(kBlocks * kBlock);
        bdev_rw(false, dirty.data());
        if (!run((*bs)->unload()).ok()) std::abort();
        on([&] { bs->reset(); });
        clean.resize(kBlocks * kBlock);
        bdev_rw(false, clean.data());
    }
};

struct IoWait {
    runtime::AsyncResult<Status> r;
    static void cb(void* p, Status s) { static_cast<IoWait*>(p)->r.set(s); }
};

Task<Result<void>> exercise(blob::BlobStore& bs, bool writes) {
    blob::Channel* ch = bs.get_channel();
    std::vector<uint8_t> buf(kBlock, 0x5a);
    for (blob::BlobId id = bs.first_blob_id(); id != blob::kInvalidBlobId; id = bs.next_blob_id(id)) {
        auto b = co_await bs.open_blob(id);
        if (!b.ok()) continue;
        const uint64_t n = (*b)->num_io_units();
        for (uint64_t off : {uint64_t{0}, n / 2, n ? n - 1 : 0}) {
            if (n == 0 || ch == nullptr) break;
            IoWait w;
            if (blob::read(*ch, **b, buf.data(), off, 1, IoWait::cb, &w).ok()) (void)co_await w.r;
            if (writes && !(*b)->is_read_only()) {
                IoWait w2;
                if (blob::write(*ch, **b, buf.data(), off, 1, IoWait::cb, &w2).ok()) (void)co_await w2.r;
            }
        }
        (void)co_await bs.close_blob(*b);
    }
    if (ch) blob::put_channel(ch);
    co_await runtime::sleep_for(1000);  // the channel goes by message
    co_return Result<void>{};
}

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size == 0) return 0;
    std::vector<uint8_t> img = (data[0] & 1) ? w->clean : w->dirty;
    const bool writes = data[0] & 2;
    size_t pos = 1;
    while (pos + 3 <= size) {
        const uint8_t sel = data[pos];
        const size_t len = std::min<size_t>(data[pos + 1] | (data[pos + 2] << 8), kPage);
        pos += 3;
        const size_t page = (sel & 0x7f) % kPatchablePages;
        const size_t n = std::min(len, size - pos);
        std::memcpy(img.data() + page * kPage, data + pos, n);
        pos += n;
        if (sel & 0x80) {
            uint8_t* p = img.data() + page * kPage;
            const uint32_t c = crc32c(0, p, kPage - 4);
            std::memcpy(p + kPage - 4, &c, 4);
        }
    }
    w->bdev_rw(true, img.data());
    auto bs = w->run(blob::BlobStore::load("Fuzz0"));
    if (!bs.ok()) return 0;
    (void)w->run(exercise(**bs, writes));
    (void)w->run((*bs)->unload());
    w->on([&] { bs->reset(); });
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
