// Blobstore internals shared by store.cpp (metadata, md Thread) and io.cpp (data path).
#pragma once

#include <atomic>
#include <map>
#include <optional>
#include <memory>
#include <utility>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/bdev/bdev.h>
#include <strata/blob/blobstore.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/task.h>

#include "format.h"

namespace strata::blob {

STRATA_LOG_COMPONENT(blob);

class StoreImpl;
class BlobImpl;
struct PendingAlloc;

// One blob I/O, from its channel's fixed pool. Walks the range a cluster at a time.
struct Request : ListHook<> {
    enum class Op : uint8_t { read, write, write_zeroes, unmap, flush };
    Op op = Op::read;
    Channel* ch = nullptr;
    BlobImpl* blob = nullptr;
    const iovec* iov = nullptr;
    int iovcnt = 0;
    iovec single{};
    uint64_t start = 0, end = 0, pos = 0, seg_end = 0;  // io units of the blob
    IoDoneFn done = nullptr;
    void* ctx = nullptr;
    iovec child_iov[kMaxIoVecs];
    bdev::IoWaitEntry wait{};
    // Allocation of cluster alloc_index by the md Thread.
    uint64_t alloc_index = 0;
    Status alloc_status;
    Request* next_waiter = nullptr;
    // Unmap of a thin blob covered whole allocated clusters: after the bdev unmaps, the md
    // Thread releases them (kReleaseWanted -> kReleaseSent).
    enum : uint8_t { kReleaseNone, kReleaseWanted, kReleaseSent } release = kReleaseNone;
};

class Channel final : public runtime::IoChannel {
public:
    static constexpr size_t kPoolSize = 256;
    Channel(StoreImpl& store, bdev::Channel* bch);
    ~Channel() override;
    StoreImpl& store;
    bdev::Channel* bch;
    std::unique_ptr<Request[]> pool;
    IntrusiveList<Request> free;
    IntrusiveList<Request> parked;  // I/O to a frozen blob, resubmitted on unfreeze
    // This Thread's channels of external snapshot bdevs, got on first use (not per I/O) and
    // put when the blob holding the external snapshot closes.
    std::vector<std::pair<bdev::Desc*, bdev::Channel*>> esnap_chs;
    bdev::Channel* esnap_channel(bdev::Desc& d) noexcept;
};

struct PendingAlloc {
    BlobImpl* blob;
    uint64_t index;
    uint32_t cluster = 0;  // set once the cluster is filled and flushed
    Request* waiters = nullptr;
};

class BlobImpl {
public:
    BlobImpl(StoreImpl& s, format::BlobMd m, uint32_t slot_index);

    // Cluster map reads from any Thread: the md Thread stores entries while I/O reads them
    // (allocation); the vector itself changes only while the blob is frozen.
    uint32_t cluster(uint64_t i) const noexcept {
        return std::atomic_ref<const uint32_t>(md.clusters[i]).load(std::memory_order_acquire);
    }
    void publish_cluster(uint64_t i, uint32_t c) noexcept {
        std::atomic_ref<uint32_t>(md.clusters[i]).store(c, std::memory_order_release);
    }
    uint64_t clusters_atomic() const noexcept { return num_clusters_.load(std::memory_order_acquire); }
    void refresh_atomics() noexcept {
        num_clusters_.store(md.clusters.size(), std::memory_order_release);
        read_only_.store(md.flags & format::kFlagReadOnly, std::memory_order_release);
        thin_.store(md.flags & format::kFlagThin, std::memory_order_release);
    }
    // The ancestor whose own cluster backs index i, or nullptr (reads zeroes or the external
    // snapshot).
    const BlobImpl* backing_ancestor(uint64_t i) const noexcept;
    // The top of the parent chain (the blob itself without a parent): where an external
    // snapshot hangs.
    const BlobImpl* chain_top() const noexcept;
    BlobImpl* chain_top() noexcept {
        return const_cast<BlobImpl*>(std::as_const(*this).chain_top());
    }
    // The chain's top if cluster i lies within every ancestor (beyond an ancestor's size the
    // chain reads zeroes), else nullptr.
    const BlobImpl* chain_top_covering(uint64_t i) const noexcept;
    // The chain's top when unallocated cluster i reads from its external snapshot.
    const BlobImpl* esnap_for(uint64_t i) const noexcept;
    // Whether unallocated cluster i reads data other than zeroes.
    bool backed(uint64_t i) const noexcept;
    // Whether unallocated cluster i would read the chain's external snapshot, which is missing
    // (opened degraded).
    bool esnap_missing_for(uint64_t i) const noexcept;
    bool degraded() const noexcept;

    StoreImpl& bs;
    BlobId id;
    uint32_t slot;
    Blob handle{this};
    uint32_t user_refs = 0;
    uint32_t internal_refs = 0;  // open clones, operations in progress
    format::BlobMd md;
    uint32_t cur_slot = 1;  // which root slot holds md.generation (the next write goes to the other)
    std::vector<uint32_t> ext_pages;
    bool dirty = false;
    bool deleted = false;
    BlobImpl* parent = nullptr;  // open while this blob is
    std::unique_ptr<bdev::Desc> esnap;  // the external snapshot, open while this blob is
    bdev::Channel* esnap_md_ch = nullptr;
    uint64_t esnap_units = 0;  // its size in io units
    // Opened degraded: the external snapshot bdev was missing. Cleared (release) only after
    // esnap is set, so a reader that sees false (acquire) may read esnap.
    std::atomic<bool> esnap_missing{false};
    std::atomic<uint64_t> num_clusters_{0};
    std::atomic<bool> read_only_{false};
    std::atomic<bool> thin_{false};  // unmap of whole clusters releases them
    // How clusters released by a shrinking resize are cleared on the bdev (Blob::set_clear_method).
    ClearMethod clear_method = ClearMethod::none;
    std::atomic<uint32_t> frozen{0};
    std::atomic<uint32_t> inflight{0};
    uint64_t persist_wanted = 0, persist_done = 0;
    bool persisting = false;
    std::vector<runtime::AsyncResult<bool>*> persist_waiters;
    std::vector<PendingAlloc*> pending;
};

class StoreImpl final : public runtime::IoDevice {
public:
    StoreImpl();
    ~StoreImpl() override;

    // ---- lifecycle (md Thread) ----
    Task<Result<void>> open_bdev(const std::string& name, std::function<void()> on_remove);
    Task<Result<void>> format(const BsOptions& o);
    Task<Result<void>> load(const LoadOptions& o);
    Task<Result<void>> unload();
    Task<Result<void>> grow();
    void close_bdev() noexcept;

    // ---- operations (md Thread) ----
    Task<Result<BlobId>> create_blob(BlobOptions o);
    // open_blob / close_blob: the caller holds the md lock.
    Task<Result<BlobImpl*>> open_blob(BlobId id, bool user, bool need_esnap = true);
    Task<Result<void>> close_blob(BlobImpl* b, bool user);
    Task<Result<void>> delete_blob(BlobId id, ClearMethod clear = ClearMethod::none);
    Task<Result<BlobId>> create_snapshot(BlobId id, std::vector<Xattr> xattrs);
    Task<Result<BlobId>> create_clone(BlobId snapshot_id, std::vector<Xattr> xattrs);
    Task<Result<void>> inflate(BlobId id, bool only_parent);
    Task<Result<void>> set_parent(BlobId id, BlobId snapshot_id);
    Task<Result<void>> set_external_parent(BlobId id, std::string bdev_name);
    Task<Result<void>> shallow_copy(BlobId id, bdev::Desc& dst,
                                    std::function<void(uint64_t)> progress);
    Task<Result<BlobId>> create_esnap_clone(std::string bdev_name, uint64_t num_clusters,
                                            std::vector<Xattr> xattrs);
    Task<Result<void>> open_esnap(BlobImpl& b);
    Task<Result<void>> attach_esnap(BlobImpl& b);
    Task<void> esnap_removed(std::string bdev_name);  // its remove event: degrade the readers
    Task<void> close_esnap(BlobImpl& b);
    Task<Result<void>> copy_from_esnap(const BlobImpl& root, uint64_t index, uint32_t dst);
    Task<Result<void>> resize(BlobImpl& b, uint64_t num_clusters);
    Task<Result<void>> sync_md(BlobImpl& b);

    // ---- data path hooks ----
    static void alloc_msg(void* req);  // on the md Thread
    void handle_alloc(Request* r);
    static void release_msg(void* req);  // on the md Thread: an unmap's whole clusters
    Task<Result<void>> run_release(Request* r);
    // Unmaps or zeroes clusters about to be freed (md Thread).
    Task<Result<void>> clear_clusters(const std::vector<uint32_t>& clusters, ClearMethod how);

    // ---- state ----
    runtime::Thread* md_thread = nullptr;
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* md_ch = nullptr;
    bool has_flush = true;
    std::atomic<uint64_t> bdev_bytes{0};  // I/O Threads read it for flush; grow() raises it
    format::Geometry g;
    std::string bstype;
    format::Bitmap used_clusters, used_pages, used_ids;
    uint64_t units_per_cluster = 0;
    uint64_t units_per_page = 0;
    bool loaded_dirty = false;
    bool unloading = false;
    // Rule 8: the bdev's write_cache_losses() when the store opened it. Once that changes,
    // writes the store made may be gone although the flushes after them succeeded, and the
    // in-memory state may promise what the disk lost: the store stops. Every later write and
    // flush (metadata or data path) fails with stopped_error() and unload leaves the store
    // dirty, so the next load recovers it as after a crash.
    uint64_t cache_losses_at_open = 0;
    std::atomic<bool> stopped{false};
    // Checks the bdev's count (stops the store when it moved); true when stopped. Any Thread.
    bool check_cache_loss() noexcept;
    Error stopped_error() const;
    std::map<BlobId, std::unique_ptr<BlobImpl>> open_blobs;
    struct Entry {
        BlobId parent = kInvalidBlobId;
    };
    std::map<BlobId, Entry> entries;  // every blob in the store

    // Operations run one at a time (allocations for thin writes do not take the lock).
    struct MdLock {
        StoreImpl* s = nullptr;
        MdLock() = default;
        explicit MdLock(StoreImpl* st) : s(st) {}
        MdLock(MdLock&& o) noexcept : s(std::exchange(o.s, nullptr)) {}
        MdLock& operator=(MdLock&&) = delete;
        ~MdLock() {
            if (s) s->md_unlock();
        }
    };
    Task<MdLock> md_lock();
    void md_unlock();
    bool md_busy = false;
    std::vector<runtime::AsyncResult<bool>*> md_waiters;

    // ---- helpers (md Thread) ----
    Task<Result<void>> bdev_io(bdev::IoType type, void* buf, uint64_t offset_bytes, uint64_t bytes);
    Task<Result<void>> flush();
    Task<Result<void>> write_page(uint64_t md_page, const void* page);
    uint64_t root_page(uint32_t slot, uint32_t which) const noexcept {
        return g.md_start + 2ull * slot + which;
    }
    uint64_t alloc_cluster() noexcept;
    struct SlotState {
        std::optional<format::BlobMd> md;  // nullopt: no blob (never written, or a tombstone)
        uint32_t cur_slot = 1;
        std::vector<uint32_t> ext_pages;
        uint64_t max_generation = 0;
    };
    // Reads a slot pair and follows the newest complete chain. strict: a slot with no complete
    // chain is corrupt unless nothing valid was ever written there (or only a first write, torn).
    Task<Result<SlotState>> read_slot(uint32_t slot, bool strict);
    // A free blob slot for a new blob: `md` carries its id and the generation left in the slot
    // pair (so the new blob outranks what is there), `cur_slot` the root copy holding it. The
    // slot stays reserved until persist_new() or release_slot().
    struct NewBlob {
        uint32_t slot = 0;
        uint32_t cur_slot = 1;
        format::BlobMd md;
    };
    Task<Result<NewBlob>> take_slot();
    // Writes the new blob's metadata (rule: durable before it is reported) and lists it with
    // `parent`; on failure the slot goes back.
    Task<Result<BlobId>> persist_new(NewBlob nb, BlobId parent);
    void release_slot(uint32_t slot);
    Task<Result<void>> write_md(BlobImpl& b);
    Task<Result<void>> persist(BlobImpl& b);
    Task<Result<void>> tombstone(uint32_t slot, uint32_t cur_slot, uint64_t generation);
    Task<Result<void>> fill_cluster(const BlobImpl* src, uint64_t index, uint32_t dst);
    Task<Result<void>> zero_clusters(const std::vector<uint32_t>& clusters);
    Task<void> freeze(BlobImpl& b);
    Task<void> unfreeze(BlobImpl& b);
    Task<Result<void>> run_alloc(PendingAlloc* pa);
    Task<Result<void>> write_masks_and_super(bool clean);
    // The super block for `geometry` (g, or the one a grow is making durable), then a flush.
    Task<Result<void>> write_super(const format::Geometry& geometry, bool clean, uint32_t ccrc,
                                   uint32_t pcrc, uint32_t icrc);
    Result<void> check_xattrs(const std::vector<Xattr>& xs) const;
    void release_parent_chain(BlobImpl* b);

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;
};

void process(Request* r) noexcept;          // io.cpp
void resubmit_parked(Request* r) noexcept;
void alloc_done_msg(void* req) noexcept;    // io.cpp: the md Thread answered an allocation
void release_done_msg(void* req) noexcept;  // io.cpp: the md Thread released an unmap's clusters

}  // namespace strata::blob
