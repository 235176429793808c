// The layer's stacking support (as SPDK's part.c): a base bdev opened
// and claimed on behalf of one or more vbdevs, per-Thread channels that hold the base's channel,
// forwarding a BdevIo to the base (waiting for a free bdev_io when the pool is empty), and the
// module-wide configurations that examine attaches when their base appears. Used by the virtual
// bdev modules (passthru, the reference one, error, delay, split) and by tests' window bdevs.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/base/status.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/runtime/io_device.h>

namespace strata::bdev::vbdev {

STRATA_LOG_COMPONENT(vbdev);

class BaseDevice;

// One Thread's channel of a BaseDevice: the base bdev's channel on that Thread. Modules derive
// from it to keep per-Thread state (delay queues, held error I/O). Destroyed on its Thread.
class BaseChannel : public runtime::IoChannel {
public:
    ~BaseChannel() override;
    Channel* base = nullptr;
    BaseDevice* device = nullptr;
};

// The base bdev of one or more vbdevs, opened for writing and claimed by a module, and the
// IoDevice the vbdevs return from module_io_device().
//
// Lifecycle (control path): open() on a Thread, which then receives the base's events;
// close() from the vbdevs' Bdev::destruct, once the layer has dropped every channel. A
// BaseDevice destroyed without close() (a vbdev whose registration failed) closes itself
// asynchronously, deleting itself afterwards.
class BaseDevice : public runtime::IoDevice {
public:
    using ChannelFactory = std::unique_ptr<BaseChannel> (*)(BaseDevice& device);

    // Errc::not_found without the base; permission_denied when another module claimed it or a
    // writer has it open. on_remove runs on the calling Thread when the base is being removed
    // (hot removal, or its own delete): the vbdevs should unregister themselves.
    static Result<std::unique_ptr<BaseDevice>> open(std::string_view base_name, const Module& by,
                                                     std::function<void()> on_remove,
                                                     ChannelFactory make_channel = nullptr);
    ~BaseDevice() override;

    Desc& desc() noexcept { return *desc_; }
    Bdev& bdev() noexcept { return desc_->bdev(); }
    const std::string& base_name() const noexcept { return base_name_; }
    // The owning module's object (e.g. its vbdev), for its channel factory.
    void set_context(void* context) noexcept { context_ = context; }
    void* context() const noexcept { return context_; }

    // Unregisters the IoDevice (waiting for every channel to go) and closes the base desc on
    // the Thread that opened it; then done() on the calling Thread.
    void close(std::function<void()> done);

    // Deletes a BaseDevice that may still be open: closes it first if needed.
    static void release(std::unique_ptr<BaseDevice> device);

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) final;

private:
    BaseDevice() : IoDevice("vbdev_base") {}
    std::unique_ptr<Desc> desc_;
    std::string base_name_;
    ChannelFactory make_channel_ = nullptr;
    void* context_ = nullptr;
    bool closed_ = false;
};

// Per-I/O state of a forwarded I/O; a module keeps it in its BdevIo::module_ctx (possibly as
// a member of a larger context). Valid until done runs.
struct Forward {
    IoWaitEntry wait;
    BdevIo* io = nullptr;
    BaseChannel* ch = nullptr;
    uint64_t offset_blocks = 0;  // added to the I/O's offset on the base
    IoDoneFn done = nullptr;     // done(io, status) when the base I/O completes
};

// Sends io to the base: same type, buffers and length, at io.offset_blocks() + offset_blocks.
// done(&io, status) runs exactly once on the I/O's Thread, possibly inside this call (refusals:
// the module then completes its BdevIo, which the layer defers). When the base's bdev_io pool
// is empty the I/O waits for a free one instead of failing.
void forward(Forward& f, BdevIo& io, BaseChannel& ch, uint64_t offset_blocks,
             IoDoneFn done) noexcept;

// The base I/O types a vbdev can pass on (abort is the layer's own on the vbdev).
bool forwards(const Bdev& base, IoType type) noexcept;

// An RFC 4122 textual UUID (8-4-4-4-12 hex digits): what the vbdev RPCs accept for `uuid`.
bool valid_uuid(std::string_view text) noexcept;

// True when `bdev` is called `name` or has it as an alias (examine matching).
bool has_name(const Bdev& bdev, std::string_view name) noexcept;

// The properties of a vbdev stacked 1:1 on `base`: the base's geometry (block size and count,
// write cache, optimal I/O boundary) under the vbdev's own name, product name and uuid.
Bdev::Properties mirror_properties(const Bdev& base, std::string name, std::string product_name,
                                   std::string uuid);

// The configurations of a virtual bdev module whose vbdevs each sit on one base (passthru, delay,
// error): what RPCs or a config file asked for, kept while the base is absent so that examine
// attaches the vbdev when the base appears, and dropped by the module's delete and fini.
//
// Touched by RPC handlers and by examine, which runs on whichever Thread registers a bdev: a
// mutex (control path only), never held across attach (register_bdev's examine comes back here).
template <class C>
class ConfigRegistry {
public:
    using NameFn = std::string (*)(const C& config);
    using AttachFn = Result<void> (*)(const C& config);

    // module: "delay" (in messages); name_of: the vbdev a config makes; base_of: its base.
    ConfigRegistry(const char* module, NameFn name_of, NameFn base_of, AttachFn attach)
        : module_(module), name_of_(name_of), base_of_(base_of), attach_(attach) {}

    // Records c (already_exists when its vbdev, or a config for it, exists) and attaches it now
    // if the base is there; a failed attach forgets c and is the result.
    Result<void> create(const C& c) {
        const std::string name = name_of_(c);
        if (find(name) != nullptr)
            return Error(Errc::already_exists, fmt::format("bdev {} already exists", name));
        {
            std::lock_guard lock(mu_);
            for (const auto& o : configs_)
                if (name_of_(o) == name)
                    return Error(Errc::already_exists,
                                 fmt::format("{} bdev {} already exists", module_, name));
            configs_.push_back(c);
        }
        if (find(base_of_(c)) == nullptr) {
            STRATA_INFOLOG(log_vbdev, "{} {}: waiting for base bdev {}", module_, name,
                           base_of_(c));
            return {};
        }
        if (auto r = attach_(c); !r) {
            erase(name);
            return r.error();
        }
        return {};
    }

    // For Module::examine: attaches every config waiting for `bdev` whose vbdev does not exist.
    void examine(Bdev& bdev) {
        std::vector<C> todo;
        {
            std::lock_guard lock(mu_);
            for (const auto& c : configs_)
                if (has_name(bdev, base_of_(c))) todo.push_back(c);
        }
        for (const auto& c : todo) {
            if (find(name_of_(c)) != nullptr) continue;
            if (auto r = attach_(c); !r)
                STRATA_ERRLOG(log_vbdev, "{} {} not attached: {}", module_, name_of_(c),
                              r.error().message());
        }
    }

    // False when no config makes vbdev `name`.
    bool erase(const std::string& name) {
        std::lock_guard lock(mu_);
        auto it = std::find_if(configs_.begin(), configs_.end(),
                               [&](const C& c) { return name_of_(c) == name; });
        if (it == configs_.end()) return false;
        configs_.erase(it);
        return true;
    }

    // fn(config) for the config of vbdev `name`, if any, under the lock.
    template <class Fn>
    void update(const std::string& name, Fn fn) {
        std::lock_guard lock(mu_);
        for (auto& c : configs_)
            if (name_of_(c) == name) fn(c);
    }

    std::vector<C> all() const {
        std::lock_guard lock(mu_);
        return configs_;
    }

    void clear() {
        std::lock_guard lock(mu_);
        configs_.clear();
    }

private:
    const char* module_;
    NameFn name_of_;
    NameFn base_of_;
    AttachFn attach_;
    mutable std::mutex mu_;
    std::vector<C> configs_;
};

}  // namespace strata::bdev::vbdev
