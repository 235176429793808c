// The blobstore: numbered, resizable blobs of clusters on one bdev, with xattrs, thin
// provisioning, snapshots and clones, that survive an unclean shutdown (SPDK's blobstore).
//
//   Task<Result<void>> example() {                       // on the metadata Thread
//       auto bs = co_await BlobStore::init("Malloc0", {.cluster_sz = 1 << 20});
//       auto id = co_await (*bs)->create_blob({.num_clusters = 4, .thin_provision = true});
//       auto blob = co_await (*bs)->open_blob(*id);
//       Channel* ch = (*bs)->get_channel();              // on each Thread doing I/O
//       blob::write(*ch, **blob, buf, /*offset_io_units=*/0, /*num_io_units=*/8, done, ctx);
//       ...
//       co_await (*bs)->close_blob(*blob);
//       co_await (*bs)->unload();                        // then destroy the BlobStore
//   }
//
// Threads. A BlobStore belongs to its metadata Thread: the Thread that ran init() or load().
// Every method returning a Task, and every Blob accessor marked "md Thread", runs there; the
// Task methods may be awaited (or spawned) from any Thread: they hop to the md Thread and come
// back to the caller's before returning. Metadata operations are serialized on the md Thread
// without locks. I/O goes through a per-Thread Channel from any Thread; a first write to an
// unallocated cluster of a thin blob is sent to the md Thread, which allocates the cluster,
// fills it (zeroes, or the parent's data), makes the metadata durable, and only then lets the
// write proceed.
//
// Durability. A metadata change (create, resize, xattrs, sync_md, snapshot, ...) is reported
// done only after its metadata pages are written and the bdev flushed. Data written through a
// Channel is durable after flush() on that Channel returns (as with a bdev with a volatile write
// cache). The on-disk format and the write-ordering rules are in docs/design/blobstore.md.
//
// Not guaranteed: operations on a Blob while it is being closed or deleted; I/O ranges larger
// than the blob are refused, not truncated.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <strata/base/status.h>
#include <strata/runtime/task.h>
#include <strata/runtime/thread.h>

namespace strata::bdev {
struct Module;
class Desc;
}  // namespace strata::bdev

namespace strata::blob {

using runtime::Task;

// SPDK's shape: the upper 32 bits are 1, the lower 32 the blob's slot in the metadata region.
using BlobId = uint64_t;
inline constexpr BlobId kInvalidBlobId = UINT64_MAX;

inline constexpr uint32_t kMdPageSize = 4096;               // metadata page, bytes
inline constexpr uint32_t kDefaultClusterSize = 1u << 20;   // SPDK's default (1 MiB)
inline constexpr size_t kBsTypeLen = 16;                    // bstype, NUL-padded
inline constexpr size_t kMaxIoVecs = 32;                    // iovecs per readv/writev

struct BsOptions {
    uint32_t cluster_sz = kDefaultClusterSize;  // a multiple of kMdPageSize
    // Metadata pages (two per blob for the root slots plus extension pages); 0: one per
    // cluster, like SPDK's default.
    uint32_t num_md_pages = 0;
    std::string bstype;  // up to 16 bytes; load() with a non-empty bstype must match
    // A blob's maximum number of clusters (bounds resize and the metadata parser).
    uint64_t max_clusters_per_blob = 1ull << 32;
    // Claims the bdev for this module through the store's own descriptor (as SPDK's lvol does
    // with its bs_dev), so nothing else writes under the store; released when the store closes.
    const bdev::Module* claim_module = nullptr;
    // The bdev is being removed (hot removal, bdev deleted): runs on the md Thread. The bdev
    // refuses I/O from then on, so operations (and unload) fail; the owner closes its blobs and
    // destroys the store soon: the removal waits for that.
    std::function<void()> on_bdev_remove;
};

struct LoadOptions {
    std::string bstype;  // empty: accept any
    const bdev::Module* claim_module = nullptr;  // as BsOptions::claim_module
    std::function<void()> on_bdev_remove;        // as BsOptions::on_bdev_remove
};

struct Xattr {
    std::string name;
    std::vector<uint8_t> value;
};

// How clusters a blob gives up (delete, shrinking resize) are cleared on the bdev before they
// are free again (SPDK's blob_clear_method). unmap is skipped on a bdev without unmap.
enum class ClearMethod : uint8_t { none, unmap, write_zeroes };

struct BlobOptions {
    uint64_t num_clusters = 0;
    bool thin_provision = false;  // clusters allocated on first write
    std::vector<Xattr> xattrs;
};

// Figures of a loaded store (md Thread).
struct BsInfo {
    uint32_t cluster_sz = 0;
    uint32_t io_unit_size = 0;  // the bdev's block size: offsets and lengths of I/O are in these
    uint64_t total_clusters = 0;
    uint64_t free_clusters = 0;
    uint32_t num_md_pages = 0;
    uint32_t used_md_pages = 0;
    uint32_t max_blobs = 0;
    std::string bstype;
    bool loaded_dirty = false;  // the last load found the clean flag unset and rebuilt the masks
};

class BlobStore;
class Channel;
class BlobImpl;
class StoreImpl;

// An open blob. Obtained from BlobStore::open_blob; every open is matched by a close_blob.
// Accessors are md Thread only unless marked "any Thread".
class Blob {
public:
    Blob(const Blob&) = delete;
    Blob& operator=(const Blob&) = delete;

    BlobId id() const noexcept;                    // any Thread
    uint64_t num_clusters() const noexcept;        // any Thread (changes only under resize)
    uint64_t num_io_units() const noexcept;        // any Thread
    uint64_t num_allocated_clusters() const noexcept;
    bool is_thin() const noexcept;
    bool is_read_only() const noexcept;            // any Thread
    bool is_snapshot() const noexcept;             // has clones (or was made by create_snapshot)
    bool is_clone() const noexcept;                // has a parent
    BlobId parent_id() const noexcept;             // kInvalidBlobId without a parent blob
    // The external snapshot bdev this blob itself holds (create_esnap_clone; a snapshot of such
    // a blob takes it over, so its clones read it through the chain); empty for none. md Thread.
    std::string_view external_snapshot() const noexcept;
    // Opened by open_blob_degraded while the external snapshot bdev of its chain is missing:
    // reads of clusters it (and its parents) do not own, and first writes to them, fail with
    // Errc::io_error until BlobStore::attach_external_snapshot succeeds. md Thread.
    bool is_degraded() const noexcept;
    // Whether cluster `index` of this blob is backed by a cluster of its own.
    bool is_cluster_allocated(uint64_t index) const noexcept;

    // Xattrs change the in-memory metadata; sync_md() (or close) makes them durable. Allowed on
    // read-only blobs too (read-only covers the data: lvol names snapshots with xattrs).
    // Errc::invalid_argument for an empty name or a name + value too long for one metadata page.
    Result<void> set_xattr(std::string_view name, std::span<const uint8_t> value);
    Result<void> set_xattr(std::string_view name, std::string_view value);
    Result<std::span<const uint8_t>> get_xattr(std::string_view name) const;  // Errc::not_found
    Result<void> remove_xattr(std::string_view name);                         // Errc::not_found
    std::vector<std::string> xattr_names() const;

    // How a shrinking resize clears the clusters it releases (in memory only, like SPDK's blob
    // option; default none).
    void set_clear_method(ClearMethod how) noexcept;

    // Marks the blob's data read-only (writes then fail with Errc::permission_denied); durable
    // after sync_md(). A snapshot is read-only from creation.
    void set_read_only();

    // Grows (new clusters allocated now unless thin) or shrinks (clusters released) the blob;
    // durable when done. Errc::no_space, Errc::permission_denied (read-only),
    // Errc::invalid_argument (beyond max_clusters_per_blob).
    Task<Result<void>> resize(uint64_t num_clusters);
    // Writes the in-memory metadata if it changed and flushes.
    Task<Result<void>> sync_md();

    BlobImpl& impl() noexcept { return *impl_; }
    const BlobImpl& impl() const noexcept { return *impl_; }

private:
    friend class BlobImpl;
    explicit Blob(BlobImpl* impl) noexcept : impl_(impl) {}
    BlobImpl* impl_;
};

class BlobStore {
public:
    // On the md Thread, after unload(). Destroying a loaded store without unload() leaves it
    // dirty on disk (the next load rebuilds the masks), like a crash.
    ~BlobStore();
    BlobStore(const BlobStore&) = delete;
    BlobStore& operator=(const BlobStore&) = delete;

    // Formats the bdev (everything on it is lost) and returns the loaded store, whose md
    // Thread is the calling one. Errc::not_found (no bdev), Errc::invalid_argument (geometry:
    // cluster size, block size not dividing kMdPageSize, bdev too small for the metadata),
    // Errc::permission_denied (claimed by another module).
    static Task<Result<std::unique_ptr<BlobStore>>> init(std::string bdev_name, BsOptions options);
    // Loads a store. A clean store takes its allocation masks from disk; a dirty one (unclean
    // shutdown) rebuilds them by walking every blob's metadata. Errc::not_found (no bdev),
    // Errc::corrupt (bad signature, checksum, version, geometry, metadata loop, out-of-range or
    // doubly owned cluster: the message says which), Errc::invalid_argument (bstype mismatch).
    static Task<Result<std::unique_ptr<BlobStore>>> load(std::string bdev_name,
                                                         LoadOptions options = {});
    // Every blob must be closed and every Channel put back. Writes the masks and the clean
    // super block. The store is then inert: destroy it.
    Task<Result<void>> unload();
    // Takes in the bdev's current size (after it grew: Event::resize) as SPDK's
    // spdk_bs_grow_live: total_clusters becomes size / cluster_sz, and the new clusters are free.
    // Durable when done; a crash meanwhile leaves the old size or the new one. Nothing to do
    // (ok) when the bdev has no whole cluster more, or shrank. Errc::no_space beyond what the
    // cluster mask region, sized at format, can hold (ceil(total_clusters / 32768) md pages of
    // 32768 clusters each: the message gives the limit).
    Task<Result<void>> grow();

    runtime::Thread& md_thread() const noexcept;
    BsInfo info() const;  // md Thread

    // ---- blobs (Task methods: any Thread) ----
    // Errc::no_space (no blob slot, clusters or metadata pages left).
    Task<Result<BlobId>> create_blob(BlobOptions options);
    // The same Blob for repeated opens of one id (reference counted). Errc::not_found,
    // Errc::corrupt (metadata fails its checks).
    Task<Result<Blob*>> open_blob(BlobId id);
    // As open_blob, but a blob whose external snapshot bdev (its own or its chain's) is missing
    // opens degraded (Blob::is_degraded) instead of failing: SPDK's degraded esnap clone.
    Task<Result<Blob*>> open_blob_degraded(BlobId id);
    // Opens the missing external snapshot bdev of a degraded blob's chain (it was registered
    // since): the blob and every open blob of the chain stop being degraded. Ok at once when
    // not degraded; Errc::not_found while the bdev is still missing; the block-size check of
    // create_esnap_clone (Errc::invalid_argument).
    Task<Result<void>> attach_external_snapshot(Blob* blob);
    // Syncs changed metadata, then drops the reference.
    Task<Result<void>> close_blob(Blob* blob);
    // Errc::busy while open; Errc::busy for a snapshot with more than one clone; a snapshot
    // with exactly one clone hands its clusters to the clone, which takes its parent. The
    // clusters freed are cleared with `clear` once the delete is durable, before they can be
    // allocated again (a crash in between leaves them free and uncleared).
    Task<Result<void>> delete_blob(BlobId id, ClearMethod clear = ClearMethod::none);
    // The blob's clusters move to a new read-only, thick snapshot blob; the blob becomes a
    // clone of it (thin, parent = snapshot) holding nothing yet. In-flight I/O to the blob
    // completes first and new I/O waits while it runs. Returns the snapshot's id.
    Task<Result<BlobId>> create_snapshot(BlobId id, std::vector<Xattr> xattrs = {});
    // A thin blob reading through to `snapshot_id` (which must be read-only).
    Task<Result<BlobId>> create_clone(BlobId snapshot_id, std::vector<Xattr> xattrs = {});
    // External snapshot (SPDK's esnap clone): a thin blob whose unallocated clusters read the
    // bdev `bdev_name` (opened read-only while the blob is open; its block size must be the
    // store's io unit); a first write copies the cluster from it. num_clusters 0: the bdev's
    // size, rounded up. Snapshots of it take the external snapshot up the chain; inflate and
    // decouple_parent copy its data and drop it. Opening the blob fails (Errc::not_found) while
    // the bdev is missing; open_blob_degraded opens it anyway. While a blob of its chain is
    // open degraded, operations that need the external snapshot (snapshot, clone, inflate,
    // decouple, a plain open) fail with Errc::not_found; close and delete work.
    Task<Result<BlobId>> create_esnap_clone(std::string bdev_name, uint64_t num_clusters = 0,
                                            std::vector<Xattr> xattrs = {});
    // Allocates every cluster the blob does not own, copying the ancestors' data (or zeroes);
    // the blob then has no parent and is thick.
    Task<Result<void>> inflate(BlobId id);
    // Copies the clusters the immediate parent owns; the blob's parent becomes the parent's
    // parent (or none).
    Task<Result<void>> decouple_parent(BlobId id);
    // SPDK's spdk_bs_blob_set_parent: thin blob `id` becomes a clone of snapshot `snapshot_id`.
    // The clusters it owns stay; the others read the snapshot from then on (an external
    // snapshot or parent it had is dropped). Durable when done. Errc::invalid_argument (the
    // same blob, not thin, the parent not a snapshot or of another number of clusters, or
    // descending from the blob), Errc::already_exists (already its parent), Errc::not_found.
    Task<Result<void>> set_parent(BlobId id, BlobId snapshot_id);
    // SPDK's spdk_bs_blob_set_external_parent: thin blob `id` reads the clusters it does not own
    // from bdev `bdev_name` (as create_esnap_clone; a parent blob it had is dropped). Durable
    // when done. Errc::invalid_argument (not thin, block size, the bdev's size not a multiple of
    // the cluster size), Errc::already_exists (already its external snapshot), Errc::not_found.
    Task<Result<void>> set_external_parent(BlobId id, std::string bdev_name);
    // SPDK's spdk_bs_blob_shallow_copy: writes every cluster the blob itself owns (not what it
    // reads from its parents) to the same offset of `dst` (open for writing, I/O on the md
    // Thread), calling `progress` with the count copied after each. Errc::permission_denied
    // (the blob is not read-only), Errc::invalid_argument (dst smaller than the blob, or its
    // block size does not divide the store's), I/O errors.
    Task<Result<void>> shallow_copy(BlobId id, bdev::Desc& dst,
                                    std::function<void(uint64_t)> progress);

    // ---- queries (md Thread) ----
    // Ids in increasing order: first_blob_id() then next_blob_id(prev) until kInvalidBlobId.
    BlobId first_blob_id() const noexcept;
    BlobId next_blob_id(BlobId prev) const noexcept;
    std::vector<BlobId> clones(BlobId snapshot_id) const;  // loads nothing: from md in memory

    // ---- channels ----
    // The calling Thread's channel (reference counted per Thread); nullptr after unload began.
    Channel* get_channel();

    StoreImpl& impl() noexcept { return *impl_; }

private:
    friend class StoreImpl;
    explicit BlobStore(std::unique_ptr<StoreImpl> impl);
    std::unique_ptr<StoreImpl> impl_;
};

// Gives back a reference from get_channel(), on the same Thread.
void put_channel(Channel* ch) noexcept;

// ---- data path (the channel's Thread) ------------------------------------------------------
// Offsets and lengths in io units (BsInfo::io_unit_size). The callback runs exactly once, on
// the channel's Thread, never inside the submitting call. iovec arrays must stay valid until it
// runs. Immediate refusals: Errc::invalid_argument (range beyond the blob, more than
// kMaxIoVecs iovecs, iovecs shorter than the range), Errc::permission_denied (write to a
// read-only blob), Errc::busy (the channel's request pool is empty: retry after a completion).
// Completion codes: Errc::no_space (a thin blob's cluster could not be allocated),
// Errc::io_error (the bdev failed).
using IoDoneFn = void (*)(void* ctx, Status status);

Status read(Channel& ch, Blob& blob, void* buf, uint64_t offset_io_units, uint64_t num_io_units,
            IoDoneFn done, void* ctx) noexcept;
Status write(Channel& ch, Blob& blob, const void* buf, uint64_t offset_io_units,
             uint64_t num_io_units, IoDoneFn done, void* ctx) noexcept;
Status readv(Channel& ch, Blob& blob, const iovec* iov, int iovcnt, uint64_t offset_io_units,
             uint64_t num_io_units, IoDoneFn done, void* ctx) noexcept;
Status writev(Channel& ch, Blob& blob, const iovec* iov, int iovcnt, uint64_t offset_io_units,
              uint64_t num_io_units, IoDoneFn done, void* ctx) noexcept;
// Reads back zeroes afterwards (allocating clusters of a thin clone whose parent has data).
Status write_zeroes(Channel& ch, Blob& blob, uint64_t offset_io_units, uint64_t num_io_units,
                    IoDoneFn done, void* ctx) noexcept;
// Contents of the range are undefined afterwards (passed to the bdev for allocated clusters).
// On a thin blob, the clusters the range covers whole are also released: the md Thread drops
// them from the cluster map durably before the callback, they count as free again, and reads
// of them see the parent's data (a clone), the external snapshot's, or zeroes.
Status unmap(Channel& ch, Blob& blob, uint64_t offset_io_units, uint64_t num_io_units,
             IoDoneFn done, void* ctx) noexcept;
// Makes completed writes durable (flushes the bdev; metadata of allocations is already durable).
Status flush(Channel& ch, Blob& blob, IoDoneFn done, void* ctx) noexcept;

}  // namespace strata::blob
