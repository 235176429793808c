// IoDevice / IoChannel: the per-Thread context of a device.
//
// A device (an NVMe controller, a bdev, ...) derives from IoDevice and registers itself.
// The first get_io_channel() on a Thread calls create_channel() there; later gets on that
// Thread take a reference. The last put_io_channel() destroys the channel by message on its
// own Thread (so callers up the stack may still use it). unregister_io_device() refuses new
// channels and completes, by message on the unregistering Thread, once every channel is gone.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <strata/base/status.h>
#include <strata/runtime/thread.h>

namespace strata::runtime {

struct IoChannelAccess;

class IoChannel {
public:
    virtual ~IoChannel() = default;  // runs on the owning Thread
    Thread& thread() const noexcept { return *thread_; }
    IoDevice& device() const noexcept { return *device_; }
    uint32_t ref_count() const noexcept { return refs_; }

private:
    friend IoChannel* get_io_channel(IoDevice& device) noexcept;
    friend void put_io_channel(IoChannel* channel) noexcept;
    friend class Thread;
    friend struct IoChannelAccess;
    Thread* thread_ = nullptr;
    IoDevice* device_ = nullptr;
    uint32_t refs_ = 0;
    bool destroy_pending_ = false;
};

class IoDevice {
public:
    explicit IoDevice(std::string name) : io_device_name_(std::move(name)) {}
    virtual ~IoDevice() = default;
    IoDevice(const IoDevice&) = delete;
    IoDevice& operator=(const IoDevice&) = delete;

    const std::string& io_device_name() const noexcept { return io_device_name_; }
    uint32_t channel_count() const noexcept { return channels_.load(std::memory_order_acquire); }
    bool registered() const noexcept { return state_.load() == State::registered; }

protected:
    // Runs on `thread`; returns the new channel or nullptr to refuse.
    virtual std::unique_ptr<IoChannel> create_channel(Thread& thread) = 0;

private:
    friend void register_io_device(IoDevice& device);
    friend void unregister_io_device(IoDevice& device, MsgFn done, void* ctx);
    friend IoChannel* get_io_channel(IoDevice& device) noexcept;
    friend void put_io_channel(IoChannel* channel) noexcept;
    friend class Thread;
    friend struct IoChannelAccess;
    void channel_gone() noexcept;
    void channel_gone_last() noexcept;

    enum class State { idle, registered, unregistering, unregistered };
    std::string io_device_name_;
    std::atomic<State> state_{State::idle};
    std::atomic<uint32_t> channels_{0};
    Thread* unregister_thread_ = nullptr;
    MsgFn unregister_done_ = nullptr;
    void* unregister_ctx_ = nullptr;
};

// Internal plumbing between Thread and the channel functions.
struct IoChannelAccess {
    static void clear_destroy_pending(IoChannel& ch) noexcept;
    static void detach(Thread& t, IoChannel* ch) noexcept;
    static void channel_gone(IoDevice& device) noexcept;
};

void register_io_device(IoDevice& device);
// Called on a Thread. done(ctx) runs on that Thread once the last channel is destroyed.
void unregister_io_device(IoDevice& device, MsgFn done, void* ctx);
// The same with a callable (for a module's Bdev::destruct and the like): done runs on the
// calling Thread once the last channel is gone.
void unregister_io_device_then(IoDevice& device, std::function<void()> done);

// On the current Thread. nullptr if the device is not registered or refused the channel.
IoChannel* get_io_channel(IoDevice& device) noexcept;
void put_io_channel(IoChannel* channel) noexcept;

template <class Channel>
Channel* get_channel(IoDevice& device) noexcept {
    return static_cast<Channel*>(get_io_channel(device));
}

// Runs fn(channel, ctx) on each Thread that holds a channel of `device` when called, one
// Thread after another, then done(ctx) on the calling Thread. Control path (resets, QoS updates).
void for_each_channel(IoDevice& device, void (*fn)(IoChannel& channel, void* ctx), void* ctx,
                      MsgFn done);

}  // namespace strata::runtime
