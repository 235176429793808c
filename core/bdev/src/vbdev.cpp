#include <strata/bdev/vbdev.h>

#include <algorithm>
#include <cctype>

#include <strata/base/assert.h>

namespace strata::bdev::vbdev {

namespace {

// Runs fn on `thread` (now, if that is the calling Thread). Control path.
void run_on(runtime::Thread& thread, std::function<void()> fn) {
    if (runtime::current_thread() == &thread) {
        fn();
        return;
    }
    auto* boxed = new std::function<void()>(std::move(fn));
    runtime::deliver(
        thread,
        [](void* p) {
            std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(p));
            (*f)();
        },
        boxed);
}

Status submit_once(Forward& f) noexcept;

void base_done(void* p, const IoStatus& status) {
    auto* f = static_cast<Forward*>(p);
    f->done(f->io, status);
}

void start(Forward& f) noexcept {
    const Status s = submit_once(f);
    if (s.ok()) return;
    if (s.code() == Errc::busy) {
        // This Thread's bdev_io pool is empty: take the next free one, ahead of new I/O
        // waiting to enter at the top of the stack.
        f.wait.fn = [](void* p) { start(*static_cast<Forward*>(p)); };
        f.wait.ctx = &f;
        queue_io_wait_front(*f.ch->base, f.wait);
        return;
    }
    f.done(f.io, IoStatus{s.code(), 0});
}

Status submit_once(Forward& f) noexcept {
    BdevIo& io = *f.io;
    Desc& d = f.ch->device->desc();
    Channel& ch = *f.ch->base;
    const uint64_t off = io.offset_blocks() + f.offset_blocks;
    const uint64_t n = io.num_blocks();
    const auto iov = io.iovs();
    const int cnt = static_cast<int>(iov.size());
    switch (io.type()) {
        case IoType::read: return readv(d, ch, iov.data(), cnt, off, n, &base_done, &f);
        case IoType::write: return writev(d, ch, iov.data(), cnt, off, n, &base_done, &f);
        case IoType::write_zeroes: return write_zeroes(d, ch, off, n, &base_done, &f);
        case IoType::unmap: return unmap(d, ch, off, n, &base_done, &f);
        case IoType::flush: return flush(d, ch, off, n, &base_done, &f);
        case IoType::reset: return reset(d, ch, &base_done, &f);
        case IoType::compare: return comparev(d, ch, iov.data(), cnt, off, n, &base_done, &f);
        case IoType::compare_and_write: {
            const auto cmp = io.compare_iovs();
            return compare_and_writev(d, ch, cmp.data(), static_cast<int>(cmp.size()), iov.data(),
                                      cnt, off, n, &base_done, &f);
        }
        case IoType::abort:
        case IoType::count_: break;
    }
    return Status(Errc::not_supported, "I/O type not forwarded by a virtual bdev");
}

}  // namespace

BaseChannel::~BaseChannel() { put_channel(base); }

Result<std::unique_ptr<BaseDevice>> BaseDevice::open(std::string_view base_name, const Module& by,
                                                     std::function<void()> on_remove,
                                                     ChannelFactory make_channel) {
    std::unique_ptr<BaseDevice> dev(new BaseDevice());
    dev->base_name_ = std::string(base_name);
    dev->make_channel_ = make_channel;
    auto desc = bdev::open(base_name, false, [cb = std::move(on_remove)](Event e, Bdev&) {
        if (e == Event::remove && cb) cb();
    });
    if (!desc) return desc.error();
    if (auto c = claim(**desc, by); !c) return c.error();  // the desc closes on return
    dev->desc_ = std::move(*desc);
    runtime::register_io_device(*dev);
    return dev;
}

BaseDevice::~BaseDevice() {
    STRATA_ASSERT_MSG(closed_ || desc_ == nullptr, "BaseDevice deleted while open: use release()");
}

std::unique_ptr<runtime::IoChannel> BaseDevice::create_channel(runtime::Thread&) {
    if (desc_ == nullptr) return nullptr;
    Channel* base = desc_->get_channel();
    if (base == nullptr) return nullptr;
    std::unique_ptr<BaseChannel> ch =
        make_channel_ != nullptr ? make_channel_(*this) : std::make_unique<BaseChannel>();
    if (ch == nullptr) {
        put_channel(base);
        return nullptr;
    }
    ch->base = base;
    ch->device = this;
    return ch;
}

void BaseDevice::close(std::function<void()> done) {
    STRATA_ASSERT_MSG(!closed_, "BaseDevice closed twice");
    closed_ = true;
    runtime::Thread* caller = runtime::current_thread();
    STRATA_ASSERT_MSG(caller != nullptr, "BaseDevice::close outside a Thread");
    struct Ctx {
        BaseDevice* dev;
        runtime::Thread* caller;
        std::function<void()> done;
    };
    auto* ctx = new Ctx{this, caller, std::move(done)};
    runtime::unregister_io_device(
        *this,
        [](void* p) {
            // Every channel (and so every base channel) is gone: close the desc where it was
            // opened, then report back to the closer.
            Ctx* c = static_cast<Ctx*>(p);
            runtime::Thread& owner = c->dev->desc_->thread();
            run_on(owner, [c] {
                c->dev->desc_.reset();
                run_on(*c->caller, [c] {
                    std::unique_ptr<Ctx> owned(c);
                    if (owned->done) owned->done();
                });
            });
        },
        ctx);
}

void BaseDevice::release(std::unique_ptr<BaseDevice> device) {
    if (device == nullptr || device->closed_) return;
    BaseDevice* raw = device.release();
    raw->close([raw] { delete raw; });
}

void forward(Forward& f, BdevIo& io, BaseChannel& ch, uint64_t offset_blocks,
             IoDoneFn done) noexcept {
    f.io = &io;
    f.ch = &ch;
    f.offset_blocks = offset_blocks;
    f.done = done;
    f.wait = IoWaitEntry{};
    start(f);
}

bool forwards(const Bdev& base, IoType type) noexcept {
    // The base's layer emulates write zeroes, compare and compare-and-write and completes flush
    // and reset itself where its module lacks them; only unmap needs the base's own support.
    if (type == IoType::abort || type == IoType::count_) return false;
    if (type == IoType::unmap) return base.supports(IoType::unmap);
    return true;
}

bool valid_uuid(std::string_view s) noexcept {
    if (s.size() != 36) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-') return false;
        } else if (!std::isxdigit(static_cast<unsigned char>(ch))) {
            return false;
        }
    }
    return true;
}

bool has_name(const Bdev& bdev, std::string_view name) noexcept {
    if (bdev.name() == name) return true;
    const auto& a = bdev.properties().aliases;
    return std::find(a.begin(), a.end(), name) != a.end();
}

Bdev::Properties mirror_properties(const Bdev& base, std::string name, std::string product_name,
                                   std::string uuid) {
    Bdev::Properties p;
    p.name = std::move(name);
    p.product_name = std::move(product_name);
    p.uuid = std::move(uuid);
    p.block_size = base.block_size();
    p.num_blocks = base.num_blocks();
    p.write_cache = base.properties().write_cache;
    p.optimal_io_boundary = base.properties().optimal_io_boundary;
    return p;
}

}  // namespace strata::bdev::vbdev
