// Logical volumes (SPDK's lvol): an lvstore is a blobstore on a base bdev (claimed by the lvol
// module), and every lvol is a blob of it exposed as a bdev named by its UUID with the alias
// "<lvs_name>/<lvol_name>". Names and UUIDs live in blob xattrs ("name", "uuid"; the store's on
// a super blob marked "lvs_super"), so everything comes back when the base bdev is examined
// again after a restart: save_config writes nothing for lvols beyond their base bdevs.
//
//   set_control_thread(app.thread());                          // once, at registration
//   spawn(thread, create_lvstore({.bdev_name = "Malloc0", .lvs_name = "lvs0"}), done);
//
// Threads. Every Task here runs on the control Thread (the App's): it is the metadata Thread
// of every store. Operations are serialized one at a time by an asynchronous lock (no mutex);
// the query functions are control Thread only. Lvol bdev I/O runs on any Thread through a
// per-Thread blob channel, with nothing allocated per I/O.
//
// Not guaranteed: growing a store beyond what its cluster mask, sized at create, can hold
// (grow_lvstore refuses: Errc::no_space); clearing (clear_method) after a crash between a
// delete's metadata and the clear (the clusters are free, not cleared); an external snapshot
// renamed away (it is found by name: its clones turn degraded).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/runtime/task.h>
#include <strata/runtime/thread.h>

namespace strata::bdev {
struct Module;
}

namespace strata::lvol {

using runtime::Task;

inline constexpr const char* kBsType = "LVOLSTORE";  // the blobstore type SPDK uses
inline constexpr size_t kNameMax = 63;               // SPDK_LVS_NAME_MAX / LVOL_NAME_MAX - 1
inline constexpr uint32_t kDefaultClusterSize = 4u << 20;  // SPDK_LVS_OPTS_CLUSTER_SZ

extern const bdev::Module kLvolModule;

enum class ClearMethod { none, unmap, write_zeroes };
// "none", "unmap", "write_zeroes" (SPDK's spellings); Errc::invalid_argument otherwise.
Result<ClearMethod> parse_clear_method(std::string_view text);
const char* clear_method_name(ClearMethod m) noexcept;

// The store a call names: by UUID or by name (exactly one of them set).
struct LvsRef {
    std::string uuid;
    std::string name;
};

struct LvsOptions {
    std::string bdev_name;
    std::string lvs_name;
    uint32_t cluster_sz = kDefaultClusterSize;
    ClearMethod clear_method = ClearMethod::unmap;  // what the base gets before formatting
    uint32_t num_md_pages_per_cluster_ratio = 100;  // metadata pages per 100 clusters
};

struct LvsInfo {
    std::string uuid, name, base_bdev;
    uint64_t total_data_clusters = 0, free_clusters = 0;
    uint32_t block_size = 0, cluster_size = 0;
};

struct LvolOptions {
    std::string lvol_name;
    uint64_t size_bytes = 0;  // rounded up to whole clusters
    bool thin_provision = false;
    LvsRef lvs;
    ClearMethod clear_method = ClearMethod::unmap;
};

struct LvolInfo {
    std::string alias;  // lvs_name/lvol_name
    std::string uuid;   // also the bdev name
    std::string name;
    std::string lvs_uuid, lvs_name, base_bdev;
    uint64_t num_clusters = 0, num_allocated_clusters = 0, num_blocks = 0;
    bool thin_provision = false, read_only = false, snapshot = false, clone = false;
    std::string base_snapshot;        // the parent's lvol name (clones)
    std::vector<std::string> clones;  // the clones' lvol names (snapshots)
    // An external snapshot clone (bdev_lvol_clone_bdev), and the bdev it reads through to;
    // degraded while that bdev (of its chain) is missing: no lvol bdev until it appears.
    bool esnap_clone = false, degraded = false;
    std::string external_snapshot_name;
    ClearMethod clear_method = ClearMethod::unmap;
};

// Where every operation (and every lvstore load found by examine) runs. Set before use. The
// module's state (control Thread, stores) is per runtime::Host: this sets `thread`'s Host's,
// and an operation uses the Host it is called in (current_host()), so two Apps in one process
// each have their own stores.
void set_control_thread(runtime::Thread& thread) noexcept;

// ---- lvstores (control Thread) ----
// Formats the bdev (claimed from then on) and returns the store's UUID. Errc::already_exists
// (the name is taken), Errc::not_found (no bdev), Errc::permission_denied (claimed elsewhere),
// Errc::invalid_argument (name, cluster size, ratio, bdev too small).
Task<Result<std::string>> create_lvstore(LvsOptions options);
// Removes every lvol bdev, deletes the store from the bdev and releases the claim.
Task<Result<void>> delete_lvstore(LvsRef ref);
Task<Result<void>> rename_lvstore(std::string old_name, std::string new_name);
// Takes in the base bdev's current size after it grew (SPDK's bdev_lvol_grow_lvstore): the
// new clusters are free; durable when done. Nothing to do (ok) if the base did not grow.
// Errc::not_found, Errc::no_space (beyond what the store's cluster mask can hold: the message
// gives the limit).
Task<Result<void>> grow_lvstore(LvsRef ref);
// Closes the store cleanly, leaving it on its bdev (examine brings it back). Used at shutdown.
Task<Result<void>> unload_lvstore(LvsRef ref);
Task<void> unload_all();
// Loads the store on `bdev_name` if it holds one (what examine starts). Errc::not_found when
// the bdev holds no lvstore.
Task<Result<void>> load_lvstore(std::string bdev_name);
// Resolves once every load started by examine so far has finished.
Task<void> wait_examine();
Result<std::vector<LvsInfo>> get_lvstores(const LvsRef& filter);  // empty filter: all

// ---- lvols (control Thread). `name` is the bdev name (UUID) or the "lvs/lvol" alias. ----
// Returns the new lvol's UUID (its bdev name).
Task<Result<std::string>> create_lvol(LvolOptions options);
// The lvol becomes a clone of a new read-only snapshot named snapshot_name in the same store.
Task<Result<std::string>> create_snapshot(std::string lvol_name, std::string snapshot_name);
Task<Result<std::string>> create_clone(std::string snapshot_name, std::string clone_name);
// SPDK's bdev_lvol_clone_bdev: a thin lvol of the bdev's size whose unwritten blocks read the
// bdev `esnap_bdev` (name, alias or UUID; opened read-only while the lvol is open, its block
// size must be the store's). The blob records the bdev's name. After a restart without that
// bdev the lvol is degraded: listed, but its bdev registers only once a bdev of that name
// appears (examine). Errc::not_found, Errc::invalid_argument (block size, the store's own base).
Task<Result<std::string>> create_esnap_clone(std::string esnap_bdev, LvsRef lvs,
                                             std::string clone_name);
// new_name is a bare lvol name (the store stays).
Task<Result<void>> rename_lvol(std::string old_name, std::string new_name);
Task<Result<void>> resize_lvol(std::string name, uint64_t size_bytes);
Task<Result<void>> set_read_only(std::string name);
Task<Result<void>> inflate(std::string name);
Task<Result<void>> decouple_parent(std::string name);
// Errc::permission_denied (SPDK's -EPERM) for a snapshot with more than one clone.
Task<Result<void>> delete_lvol(std::string name);
// SPDK's bdev_lvol_set_parent: thin lvol `lvol_name` becomes a clone of snapshot
// `parent_name` (same store, same number of clusters); the clusters it holds stay, the others
// read the snapshot. Errc::not_found, Errc::invalid_argument (not thin, not a snapshot, sizes,
// another store), Errc::already_exists (already its parent).
Task<Result<void>> set_parent(std::string lvol_name, std::string parent_name);
// SPDK's bdev_lvol_set_parent_bdev: thin lvol `lvol_name` reads the clusters it does not hold
// from bdev `esnap_name` (name, alias or UUID), as an lvol made by create_esnap_clone does.
// Errc::not_found, Errc::invalid_argument (not thin, block size, a size not a multiple of the
// cluster size, the store's base or one of its lvols), Errc::already_exists.
Task<Result<void>> set_parent_bdev(std::string lvol_name, std::string esnap_name);

// SPDK's shallow copy: the clusters a read-only lvol holds itself (not its parents') are
// written to the same offsets of a bdev, which is claimed meanwhile. start_shallow_copy
// returns an operation id at once (Errc::not_found for the lvol or bdev,
// Errc::permission_denied when the bdev is claimed); the copy runs under the operation lock
// (other lvol operations wait for it), and a lvol that is not read-only, or a bdev smaller than
// it, ends the copy in error, as SPDK's does.
struct ShallowCopyStatus {
    uint64_t copied_clusters = 0, total_clusters = 0;
    bool done = false;
    std::string error;  // set when it failed
};
Task<Result<uint32_t>> start_shallow_copy(std::string src_lvol_name, std::string dst_bdev_name);
// A finished copy (complete or error) is forgotten once reported (SPDK's behaviour).
// Errc::not_found. Control Thread.
Result<ShallowCopyStatus> check_shallow_copy(uint32_t operation_id);
Result<std::vector<LvolInfo>> get_lvols(const LvsRef& filter);

}  // namespace strata::lvol
