// Plumbing shared by the virtual bdev modules (passthru, error, delay, split): a base bdev opened
// and claimed on behalf of one or more vbdevs, per-Thread channels that hold the base's channel,
// and forwarding a BdevIo to the base (waiting for a free bdev_io when the pool is empty).
//
// It lives with passthru, the reference virtual bdev; error, delay and split link it from there.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

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

}  // namespace strata::bdev::vbdev
