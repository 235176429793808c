#include <strata/runtime/io_device.h>

#include <algorithm>
#include <functional>
#include <memory>

#include <strata/base/log.h>

namespace strata::runtime {

STRATA_LOG_COMPONENT(io_device);

void register_io_device(IoDevice& device) {
    auto expected = IoDevice::State::idle;
    STRATA_ASSERT_MSG(device.state_.compare_exchange_strong(expected, IoDevice::State::registered),
                      "io_device '%s' registered twice", device.io_device_name().c_str());
}

void unregister_io_device(IoDevice& device, MsgFn done, void* ctx) {
    Thread* self = current_thread();
    STRATA_ASSERT_MSG(self != nullptr, "unregister_io_device must run on a Thread");
    device.unregister_thread_ = self;
    device.unregister_done_ = done;
    device.unregister_ctx_ = ctx;
    auto expected = IoDevice::State::registered;
    STRATA_ASSERT_MSG(
        device.state_.compare_exchange_strong(expected, IoDevice::State::unregistering),
        "io_device '%s' is not registered", device.io_device_name().c_str());
    if (device.channels_.load() == 0) device.channel_gone_last();
}

void IoDevice::channel_gone_last() noexcept {
    // Whoever moves unregistering -> unregistered (the unregistering call or the last
    // channel's destruction, possibly on two OS threads at once) delivers the completion.
    auto expected = State::unregistering;
    if (!state_.compare_exchange_strong(expected, State::unregistered)) return;
    STRATA_DEBUGLOG(log_io_device, "io_device '{}' unregistered", io_device_name_);
    if (unregister_done_ != nullptr) deliver(*unregister_thread_, unregister_done_, unregister_ctx_);
}

void IoDevice::channel_gone() noexcept {
    if (channels_.fetch_sub(1) == 1 && state_.load() == State::unregistering) channel_gone_last();
}

IoChannel* get_io_channel(IoDevice& device) noexcept {
    Thread* self = current_thread();
    STRATA_ASSERT_MSG(self != nullptr, "get_io_channel must run on a Thread");
    for (auto& [dev, ch] : self->channels_) {
        if (dev == &device) {
            ++ch->refs_;
            return ch;
        }
    }
    if (device.state_.load() != IoDevice::State::registered) return nullptr;
    std::unique_ptr<IoChannel> ch = device.create_channel(*self);
    if (!ch) return nullptr;
    ch->thread_ = self;
    ch->device_ = &device;
    ch->refs_ = 1;
    device.channels_.fetch_add(1);
    self->channels_.emplace_back(&device, ch.get());
    return ch.release();
}

namespace {

void destroy_if_unused(void* arg) {
    auto* ch = static_cast<IoChannel*>(arg);
    if (ch->ref_count() != 0) {
        IoChannelAccess::clear_destroy_pending(*ch);  // taken again since the last put
        return;
    }
    Thread& t = ch->thread();
    IoDevice& device = ch->device();
    IoChannelAccess::detach(t, ch);
    delete ch;
    IoChannelAccess::channel_gone(device);
}

}  // namespace

void put_io_channel(IoChannel* channel) noexcept {
    STRATA_ASSERT_MSG(current_thread() == channel->thread_,
                      "put_io_channel on a Thread that does not own the channel");
    STRATA_ASSERT_MSG(channel->refs_ > 0, "put_io_channel: channel already released");
    if (--channel->refs_ != 0 || channel->destroy_pending_) return;
    channel->destroy_pending_ = true;
    channel->thread_->defer(destroy_if_unused, channel);
}

void IoChannelAccess::clear_destroy_pending(IoChannel& ch) noexcept { ch.destroy_pending_ = false; }

void IoChannelAccess::detach(Thread& t, IoChannel* ch) noexcept {
    auto& v = t.channels_;
    v.erase(std::find_if(v.begin(), v.end(), [ch](auto& e) { return e.second == ch; }));
}

void IoChannelAccess::channel_gone(IoDevice& device) noexcept { device.channel_gone(); }

namespace {

struct ForEachChannel {
    IoDevice* device;
    void (*fn)(IoChannel&, void*);
    void* ctx;
    MsgFn done;
};

void visit_channel(void* arg) {
    auto* st = static_cast<ForEachChannel*>(arg);
    for (auto& [dev, ch] : current_thread()->channels_ref())
        if (dev == st->device) st->fn(*ch, st->ctx);
}

void finish_for_each_channel(void* arg) {
    std::unique_ptr<ForEachChannel> st(static_cast<ForEachChannel*>(arg));
    st->done(st->ctx);
}

}  // namespace

void for_each_channel(IoDevice& device, void (*fn)(IoChannel&, void*), void* ctx, MsgFn done) {
    for_each_thread(visit_channel, new ForEachChannel{&device, fn, ctx, done},
                    finish_for_each_channel);
}

void unregister_io_device_then(IoDevice& device, std::function<void()> done) {
    auto* d = new std::function<void()>(std::move(done));
    unregister_io_device(
        device,
        [](void* p) {
            std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(p));
            (*f)();
        },
        d);
}

}  // namespace strata::runtime
