// The block-device layer, as modules see it: a Bdev subclass per device, registration, examine,
// claims, and the BdevIo a module executes.
//
// A module (malloc, nvme, passthru, ...) fills Bdev::Properties, implements supports() /
// module_io_device() / submit(), and hands the bdev to register_bdev(). The layer owns it from
// then on; unregister_bdev() tells every opener (Event::remove), waits for their descs to close
// and channels to go, then calls destruct() and deletes it.
//
// submit() runs on the I/O's Thread with that Thread's module channel. The module completes the
// BdevIo exactly once with complete()/complete_nvme(), on the same Thread, inline or later; the
// layer never runs the user's callback inside submit (an inline completion is deferred by one
// message). Virtual bdevs open their base bdevs with bdev::open and submit to them with the
// functions of bdev.h, completing their own BdevIo from the base I/O's callback.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <strata/base/intrusive_list.h>
#include <strata/base/status.h>
#include <strata/bdev/bdev.h>
#include <strata/runtime/io_device.h>

namespace strata::bdev {

class BdevImpl;

// A module's entry in the layer's explicit table (register_rpc_module in core/bdev/src/rpc.cpp).
struct Module {
    const char* name = nullptr;
    // Called for every bdev registered after (and, at startup, before) the module: a virtual
    // bdev module creates its bdevs on top of a base that its config names. Control path, on the
    // registering Thread.
    void (*examine)(Bdev& bdev) = nullptr;
    // save_config entries that are not one bdev's (e.g. bdev_nvme_attach_controller, which
    // creates a bdev per namespace); appended before the per-bdev entries.
    void (*write_config)(nlohmann::json& methods) = nullptr;
    // At subsystem fini, after every bdev is gone: release module-level state (e.g. detach
    // NVMe controllers). Calls done (possibly later) on the calling Thread.
    void (*fini)(std::function<void()> done) = nullptr;
    // For modules whose examine finishes later (lvol loads a store asynchronously): calls done
    // on the calling Thread once every examine started so far has finished.
    // bdev_wait_for_examine waits for it.
    void (*wait_examine)(std::function<void()> done) = nullptr;
};

// The modules registered so far (registration order).
std::vector<const Module*> modules();

inline constexpr size_t kModuleIoContextBytes = 192;  // per-I/O scratch a module may use
// While a module holds a BdevIo (between submit and complete) it may keep it on an
// IntrusiveList<BdevIo, QueuedTag> of its own (e.g. I/O waiting for a queue pair); the layer
// uses that hook only before submit.
inline constexpr int kMaxIoVecs = 32;                 // inline iovecs of a split child / bounce

struct QueuedTag;  // second list hook: QoS / wait queues (the first is the outstanding list)

class BdevIo : public ListHook<>, public ListHook<QueuedTag> {
public:
    IoType type() const noexcept { return type_; }
    uint64_t offset_blocks() const noexcept { return offset_blocks_; }
    uint64_t num_blocks() const noexcept { return num_blocks_; }
    uint64_t length_bytes() const noexcept;
    std::span<const iovec> iovs() const noexcept { return {iovs_, static_cast<size_t>(iovcnt_)}; }
    std::span<const iovec> compare_iovs() const noexcept {  // compare_and_write only
        return {compare_iovs_, static_cast<size_t>(compare_iovcnt_)};
    }
    void* abort_victim_ctx() const noexcept { return victim_ctx_; }
    Bdev& bdev() const noexcept { return *bdev_; }
    runtime::Thread& thread() const noexcept;

    // Per-I/O scratch for the module, kModuleIoContextBytes, max_align_t aligned.
    template <class T>
    T* module_ctx() noexcept {
        static_assert(sizeof(T) <= kModuleIoContextBytes && alignof(T) <= alignof(std::max_align_t));
        return reinterpret_cast<T*>(module_ctx_);
    }

    // Exactly once, on the I/O's Thread.
    void complete(Errc code = Errc::ok) noexcept;
    void complete(const IoStatus& status) noexcept;
    void complete_nvme(uint16_t sct, uint16_t sc) noexcept;  // maps to an Errc as well

private:
    friend class Channel;
    friend class MgmtChannel;
    friend class BdevImpl;
    alignas(std::max_align_t) unsigned char module_ctx_[kModuleIoContextBytes];
    IoType type_ = IoType::read;
    uint8_t state_ = 0;
    bool in_submit_ = false;
    bool user_iovs_ = false;
    int iovcnt_ = 0;
    int compare_iovcnt_ = 0;
    uint64_t offset_blocks_ = 0;
    uint64_t num_blocks_ = 0;
    const iovec* iovs_ = nullptr;
    const iovec* compare_iovs_ = nullptr;
    void* victim_ctx_ = nullptr;
    Bdev* bdev_ = nullptr;
    Channel* ch_ = nullptr;
    DescImpl* desc_ = nullptr;
    IoDoneFn done_ = nullptr;
    void* ctx_ = nullptr;
    uint64_t start_ns_ = 0;
    IoStatus status_{};
    // Split children / emulation.
    BdevIo* parent_ = nullptr;
    uint64_t next_child_offset_ = 0;  // parent: next block to issue
    uint32_t children_outstanding_ = 0;
    void* bounce_ = nullptr;
    const iovec* orig_iovs_ = nullptr;  // the caller's iovecs while a bounce buffer stands in
    int orig_iovcnt_ = 0;
    iovec bounce_iov_{};
    bool timed_out_reported_ = false;
    bool lock_parked_ = false;       // waiting in its channel for an LBA range lock to go
    void* range_lock_ = nullptr;     // emulated compare-and-write: the range lock it holds
    BdevIo* done_next_ = nullptr;    // its channel's list of completions made inside a submit
    iovec inline_iovs_[kMaxIoVecs];
    iovec inline_compare_iovs_[1];
};

// For virtual bdevs passing an I/O down: like queue_io_wait (bdev.h), but served before every
// queue_io_wait entry (in the order queued among themselves). An I/O already inside a stack of
// virtual bdevs gets the next free bdev_io before a new I/O is admitted at the top; with plain
// queue_io_wait, new top-level I/O could take every bdev_io of the Thread and starve the levels
// below for good.
void queue_io_wait_front(Channel& ch, IoWaitEntry& entry) noexcept;

// How many submissions on ch ran the QoS / timeout set-up. While neither was ever on for the
// channel's bdev and desc, a submit pays one predictable branch for them and this stays 0
// (tests of "features that are off cost nothing").
uint64_t feature_path_count(const Channel& ch) noexcept;

class Bdev : public runtime::IoDevice {
public:
    struct Properties {
        std::string name;
        std::string product_name;
        std::vector<std::string> aliases;
        std::string uuid;  // empty: the layer generates one
        uint32_t block_size = 512;
        uint64_t num_blocks = 0;
        bool write_cache = false;
        // Split I/O so no child crosses a multiple of optimal_io_boundary blocks (0: never).
        uint32_t optimal_io_boundary = 0;
        uint32_t max_io_blocks = 0;        // split larger I/O (0: no limit)
        uint32_t required_alignment = 1;   // buffer address alignment in bytes (power of two)
        bool needs_dma_memory = false;     // buffers must be env DMA memory (bounce otherwise)
        uint64_t max_unmap_blocks = 0;     // split larger unmaps (0: no limit)
        // Split reads and writes with more iovecs than this (SPDK's max_num_segments; 0: no
        // limit); each child then carries at most min(this, kMaxIoVecs).
        uint32_t max_num_segments = 0;
    };

    Bdev(const Module& module, Properties properties);
    ~Bdev() override;

    const std::string& name() const noexcept { return props_.name; }
    const Properties& properties() const noexcept { return props_; }
    const Module& module() const noexcept { return module_; }
    uint32_t block_size() const noexcept { return props_.block_size; }
    uint64_t num_blocks() const noexcept { return props_.num_blocks; }
    const std::string& uuid() const noexcept { return props_.uuid; }
    const char* claimed_by() const noexcept;  // the claiming module's name, or ""

    // ---- implemented by the module ----
    virtual bool supports(IoType type) const noexcept = 0;
    virtual runtime::IoDevice& module_io_device() noexcept = 0;
    virtual void submit(runtime::IoChannel& module_channel, BdevIo& io) noexcept = 0;
    // After unregistration, before deletion: release what the bdev holds. May finish later.
    virtual void destruct(std::function<void()> done) { done(); }
    // bdev_get_bdevs "driver_specific" and save_config's entry ({"method","params"}; leave null
    // for bdevs that are not created by an RPC, e.g. nvme namespaces).
    virtual void info_json(nlohmann::json& out) const;
    virtual void config_json(nlohmann::json& out) const;
    // How many times the device lost its volatile write cache while the host ran on (a power
    // loss it came back from): writes that completed before such a loss and were not flushed
    // may be gone, although every later command, flushes included, succeeds. A consumer that
    // relies on flushes compares it before and after (the blobstore stops: docs/design/
    // blobstore.md, rule 8). Monotonic; any Thread; 0 for devices that cannot tell.
    virtual uint64_t write_cache_losses() const noexcept { return 0; }

    // The module changes the size (Event::resize to openers). Control path.
    void notify_resize(uint64_t num_blocks);

    BdevImpl& impl() noexcept { return *impl_; }

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    friend class BdevImpl;
    friend Result<Bdev*> register_bdev(std::unique_ptr<Bdev> bdev);
    friend Result<void> rename_alias(Bdev& bdev, std::string_view old_alias, std::string new_alias);
    const Module& module_;
    Properties props_;
    std::unique_ptr<BdevImpl> impl_;
};

// For modules whose I/O needs no per-Thread state (malloc, null): the current Host's shared
// device whose channels are empty.
runtime::IoDevice& stateless_io_device();

// ---- registry (control path, any Thread) --------------------------------------------------
void register_module(const Module& module);  // from the explicit table; idempotent
// Takes ownership. Errc::already_exists for a name/alias clash, invalid_argument for a bad
// geometry. Runs every module's examine afterwards.
Result<Bdev*> register_bdev(std::unique_ptr<Bdev> bdev);
// Replaces one alias of a registered bdev (an lvol's "lvs/lvol" after a rename). Control path.
// Errc::not_found (no such alias of this bdev), Errc::already_exists (name taken).
Result<void> rename_alias(Bdev& bdev, std::string_view old_alias, std::string new_alias);
// Removal: Event::remove to every opener; when all descs are closed and channels gone,
// destruct() and delete; then done(ok) on the calling Thread. Errc::not_found.
void unregister_bdev(std::string_view name, std::function<void(Result<void>)> done);
Bdev* find(std::string_view name_or_alias) noexcept;
std::vector<Bdev*> list();  // by name

// An exclusive write claim for a virtual bdev module on its base: other write opens fail.
Result<void> claim(Desc& desc, const Module& by);
void release_claim(Desc& desc);

// Statistics of a bdev over every channel (live and gone), delivered on the calling Thread.
void get_iostat(Bdev& bdev, std::function<void(const IoStats&)> done);
// Statistics of each live channel with its Thread's id (bdev_get_iostat per_channel), sorted
// by thread id, delivered on the calling Thread.
struct ChannelIoStats {
    uint64_t thread_id = 0;
    IoStats stats;
};
void get_channel_iostats(Bdev& bdev, std::function<void(const std::vector<ChannelIoStats>&)> done);
// Zeroes the statistics (or only the max/min latencies) on every channel and of gone ones;
// done on the calling Thread.
void reset_iostat(Bdev& bdev, bool maxmin_only, std::function<void()> done);
// bdev_enable_histogram: from now on IoStats::enabled_histogram counts completions of `type`
// (nullopt: every type), starting from zero on every channel; with enable false it stops
// counting. done on the calling Thread.
void enable_histogram(Bdev& bdev, bool enable, std::optional<IoType> type,
                      std::function<void()> done);
// The I/O submitted to the bdev and not completed yet, over every channel (SPDK's
// spdk_bdev_get_current_qd); done on the calling Thread.
void get_queue_depth(Bdev& bdev, std::function<void(uint64_t)> done);
Result<void> set_qos_limits(Bdev& bdev, const QosLimits& limits);
QosLimits qos_limits(const Bdev& bdev);

}  // namespace strata::bdev
