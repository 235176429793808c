#include "aio/aio.h"

#include <fcntl.h>
#include <libaio.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/runtime/scheduler.h>

#include <strata/bdev/backing_file.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_aio);

const Module kAioModule{"aio", nullptr};

namespace {

// Events per io_context (SPDK's depth); I/O beyond it waits on the channel's queue.
constexpr uint32_t kQueueDepth = 128;
constexpr size_t kInlineIovs = 7;  // trimmed iovecs that fit beside the iocb in module_ctx

struct IoCtx {
    iocb cb;
    iovec iovs[kInlineIovs];
};
static_assert(sizeof(IoCtx) <= kModuleIoContextBytes);

// The kernel's completion ring, mapped at the io_context_t address (fs/aio.c, struct
// aio_ring). Reading it directly saves the io_getevents system call on every poll.
struct KernelAioRing {
    uint32_t id;
    uint32_t nr;
    uint32_t head;
    uint32_t tail;
    uint32_t magic;
    uint32_t compat_features;
    uint32_t incompat_features;
    uint32_t header_length;
};
constexpr uint32_t kAioRingMagic = 0xa10a10a1;

class AioBdev;

class AioChannel final : public runtime::IoChannel {
public:
    AioChannel(AioBdev& bdev, runtime::Thread& thread, io_context_t ctx);
    ~AioChannel() override;
    void queue(BdevIo& io) noexcept { queued_.push_back(io); }

private:
    static runtime::PollStatus poll(void* self);
    uint32_t reap() noexcept;
    uint32_t submit_queued() noexcept;
    int get_events(io_event* out, uint32_t max) noexcept;
    void finish(BdevIo& io, long res) noexcept;

    AioBdev& bdev_;
    io_context_t ctx_;
    const bool simulated_;
    uint32_t inflight_ = 0;
    IntrusiveList<BdevIo, QueuedTag> queued_;
    runtime::Poller* poller_ = nullptr;
    std::array<iocb*, kQueueDepth> batch_{};
    std::array<io_event, kQueueDepth> events_{};
};

class AioIoDevice final : public runtime::IoDevice {
public:
    AioIoDevice(AioBdev& b, const std::string& name) : IoDevice("bdev_aio:" + name), bdev_(b) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    AioBdev& bdev_;
};

class AioBdev final : public Bdev {
public:
    AioBdev(Properties p, BackingFile file, bool fallocate)
        : Bdev(kAioModule, std::move(p)),
          file_(std::move(file)),
          fallocate_(fallocate),
          dev_(*this, name()) {
        runtime::register_io_device(dev_);
    }

    bool supports(IoType t) const noexcept override {
        switch (t) {
            case IoType::read:
            case IoType::flush: return true;
            case IoType::write: return !file_.readonly();
            case IoType::unmap:
            case IoType::write_zeroes: return fallocate_ && !file_.readonly();
            default: return false;  // reset: nothing to reset; compare: emulated by the layer
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return dev_; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        auto& c = static_cast<AioChannel&>(ch);
        IoCtx& x = *io.module_ctx<IoCtx>();
        const int fd = file_.fd();
        const auto offset = static_cast<long long>(io.offset_blocks() * block_size());
        switch (io.type()) {
            case IoType::read:
            case IoType::write: {
                if (io.type() == IoType::write && file_.readonly()) {
                    io.complete(Errc::permission_denied);
                    return;
                }
                const iovec* iov = nullptr;
                int iovcnt = 0;
                if (!exact_iovs(io.iovs(), io.length_bytes(), x.iovs, iov, iovcnt)) {
                    io.complete(Errc::invalid_argument);  // > kInlineIovs iovecs longer than the I/O
                    return;
                }
                if (io.type() == IoType::read) {
                    if (iovcnt == 1) io_prep_pread(&x.cb, fd, iov->iov_base, iov->iov_len, offset);
                    else io_prep_preadv(&x.cb, fd, iov, iovcnt, offset);
                } else {
                    if (iovcnt == 1) io_prep_pwrite(&x.cb, fd, iov->iov_base, iov->iov_len, offset);
                    else io_prep_pwritev(&x.cb, fd, iov, iovcnt, offset);
                }
                break;
            }
            case IoType::flush:
                if (fdsync_unsupported_.load(std::memory_order_relaxed)) {
                    io.complete(sync_flush());
                    return;
                }
                io_prep_fdsync(&x.cb, fd);
                break;
            case IoType::unmap:
            case IoType::write_zeroes:
                io.complete(punch(io));
                return;
            default:
                io.complete(Errc::not_supported);
                return;
        }
        x.cb.data = &io;
        c.queue(io);
    }

    // IOCB_CMD_FDSYNC was refused: flush synchronously from now on.
    Errc fdsync_refused() noexcept {
        if (!fdsync_unsupported_.exchange(true))
            STRATA_WARNLOG(log_bdev_aio,
                           "aio bdev {}: the kernel or file system refuses IOCB_CMD_FDSYNC; "
                           "flushes run fdatasync synchronously on the reactor",
                           name());
        return sync_flush();
    }

    void destruct(std::function<void()> done) override {
        unregister_io_device_then(dev_, std::move(done));
    }

    void info_json(nlohmann::json& out) const override {
        out["aio"] = {{"filename", file_.filename()},
                      {"block_size_override", file_.block_size_given()},
                      {"readonly", file_.readonly()},
                      {"fallocate", fallocate_},
                      {"direct_io", file_.direct()}};
    }
    void config_json(nlohmann::json& out) const override {
        nlohmann::json params = {{"name", name()},
                                 {"filename", file_.filename()},
                                 {"readonly", file_.readonly()},
                                 {"fallocate", fallocate_},
                                 {"uuid", uuid()}};
        if (file_.block_size_given()) params["block_size"] = block_size();
        out = {{"method", "bdev_aio_create"}, {"params", std::move(params)}};
    }

    const BackingFile& file() const noexcept { return file_; }

private:
    Errc sync_flush() noexcept { return ::fdatasync(file_.fd()) == 0 ? Errc::ok : errc_from_errno(errno); }

    // Unmap punches a hole, write zeroes zeroes the range (a hole where the file system has no
    // ZERO_RANGE, e.g. tmpfs): both read back as zeroes.
    Errc punch(const BdevIo& io) noexcept {
        if (file_.readonly()) return Errc::permission_denied;
        const auto off = static_cast<off_t>(io.offset_blocks() * block_size());
        const auto len = static_cast<off_t>(io.length_bytes());
        if (io.type() == IoType::write_zeroes &&
            ::fallocate(file_.fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
            return Errc::ok;
        if (::fallocate(file_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
            return Errc::ok;
        return errc_from_errno(errno);
    }

    BackingFile file_;
    const bool fallocate_;
    std::atomic<bool> fdsync_unsupported_{false};
    AioIoDevice dev_;
};

std::unique_ptr<runtime::IoChannel> AioIoDevice::create_channel(runtime::Thread& thread) {
    io_context_t ctx = nullptr;
    const int rc = io_setup(static_cast<int>(kQueueDepth), &ctx);
    if (rc < 0) {
        STRATA_ERRLOG(log_bdev_aio, "aio bdev {}: io_setup for Thread {}: {}{}", bdev_.name(),
                      thread.name(), std::strerror(-rc),
                      rc == -EAGAIN ? " (fs.aio-max-nr reached)" : "");
        return nullptr;
    }
    return std::make_unique<AioChannel>(bdev_, thread, ctx);
}

AioChannel::AioChannel(AioBdev& bdev, runtime::Thread& thread, io_context_t ctx)
    : bdev_(bdev), ctx_(ctx), simulated_(thread.scheduler().simulated()) {
    poller_ = thread.register_poller(&AioChannel::poll, this, "bdev_aio");
}

AioChannel::~AioChannel() {
    thread().unregister_poller(poller_);
    // The layer puts its channel only when its I/O is done, so nothing should be left; if
    // something is, the kernel must finish with the buffers before the context goes.
    if (inflight_ != 0 || !queued_.empty())
        STRATA_ERRLOG(log_bdev_aio, "aio bdev {}: channel destroyed with {} I/O in flight, {} queued",
                      bdev_.name(), inflight_, queued_.size());
    while (queued_.pop_front() != nullptr) {
    }
    while (inflight_ != 0) {
        timespec wait{1, 0};
        const int n = io_getevents(ctx_, 1, static_cast<long>(events_.size()), events_.data(), &wait);
        if (n > 0) inflight_ -= static_cast<uint32_t>(n);
        else if (n < 0 && n != -EINTR) break;
    }
    io_destroy(ctx_);
}

runtime::PollStatus AioChannel::poll(void* self) {
    auto* c = static_cast<AioChannel*>(self);
    const uint32_t reaped = c->reap();
    const uint32_t sent = c->queued_.empty() ? 0 : c->submit_queued();
    // Under the simulator, kernel completions arrive in wall-clock time: stay runnable while
    // any are due, or the simulator would take the world for idle.
    const bool waiting = c->simulated_ && c->inflight_ != 0;
    return reaped + sent != 0 || waiting ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

int AioChannel::get_events(io_event* out, uint32_t max) noexcept {
    auto* ring = reinterpret_cast<KernelAioRing*>(ctx_);
    if (ring->magic != kAioRingMagic || ring->incompat_features != 0) {
        timespec zero{0, 0};
        const int n = io_getevents(ctx_, 0, max, out, &zero);
        return n < 0 ? 0 : n;
    }
    const uint32_t nr = ring->nr;
    const uint32_t head = std::atomic_ref<uint32_t>(ring->head).load(std::memory_order_relaxed);
    // Acquire: the events before tail are fully written once tail is seen.
    const uint32_t tail = std::atomic_ref<uint32_t>(ring->tail).load(std::memory_order_acquire);
    if (head == tail || head >= nr || tail >= nr) return 0;
    uint32_t count = tail > head ? tail - head : nr - head + tail;
    if (count > max) count = max;
    const auto* events = reinterpret_cast<const io_event*>(reinterpret_cast<const uint8_t*>(ring) +
                                                           ring->header_length);
    const uint32_t first = std::min(count, nr - head);
    std::memcpy(out, events + head, first * sizeof(io_event));
    if (count > first) std::memcpy(out + first, events, (count - first) * sizeof(io_event));
    // Release: the copies are done before the kernel may reuse the slots.
    std::atomic_ref<uint32_t>(ring->head).store((head + count) % nr, std::memory_order_release);
    return static_cast<int>(count);
}

uint32_t AioChannel::reap() noexcept {
    if (inflight_ == 0) return 0;
    const int n = get_events(events_.data(), static_cast<uint32_t>(events_.size()));
    for (int i = 0; i < n; ++i) {
        auto* io = static_cast<BdevIo*>(events_[i].data);
        --inflight_;
        finish(*io, static_cast<long>(events_[i].res));
    }
    return static_cast<uint32_t>(n);
}

void AioChannel::finish(BdevIo& io, long res) noexcept {
    if (res < 0) {
        if (io.type() == IoType::flush && res == -EINVAL) {
            io.complete(bdev_.fdsync_refused());
            return;
        }
        io.complete(errc_from_errno(static_cast<int>(-res)));
        return;
    }
    // A short transfer means the file ended inside the range (it shrank under the bdev).
    if (io.type() != IoType::flush && static_cast<uint64_t>(res) != io.length_bytes()) {
        io.complete(Errc::io_error);
        return;
    }
    io.complete(Errc::ok);
}

uint32_t AioChannel::submit_queued() noexcept {
    uint32_t sent = 0;
    while (!queued_.empty() && inflight_ < kQueueDepth) {
        uint32_t n = 0;
        for (auto it = queued_.begin(); it != queued_.end() && n < kQueueDepth - inflight_; ++it)
            batch_[n++] = &it->module_ctx<IoCtx>()->cb;
        const int rc = io_submit(ctx_, static_cast<long>(n), batch_.data());
        if (rc > 0) {
            for (int i = 0; i < rc; ++i) queued_.pop_front();
            inflight_ += static_cast<uint32_t>(rc);
            sent += static_cast<uint32_t>(rc);
            continue;  // the rest (if any) is tried again: the next call reports its error
        }
        if (rc == -EAGAIN || rc == 0) break;  // kernel out of resources: retry next poll
        // The first iocb was refused outright.
        BdevIo* io = queued_.pop_front();
        ++sent;
        if (io->type() == IoType::flush && rc == -EINVAL) io->complete(bdev_.fdsync_refused());
        else io->complete(errc_from_errno(-rc));
    }
    return sent;
}

}  // namespace

Result<Bdev*> aio_create(const AioOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "aio bdev needs a name");
    if (find(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    auto f = open_backing_file({o.filename, o.block_size, o.readonly, "aio"});
    if (!f) return f.error();
    if (o.fallocate && o.readonly)
        return Error(Errc::invalid_argument, "fallocate needs a writable file (readonly is set)");
    auto blocks = f->num_blocks();
    if (!blocks) return blocks.error();
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "AIO disk";
    p.uuid = o.uuid;
    p.block_size = f->block_size();
    p.num_blocks = *blocks;
    p.write_cache = true;  // page cache (buffered) or the device's cache: flush matters
    p.required_alignment = f->required_alignment();
    if (f->direct())
        STRATA_INFOLOG(log_bdev_aio, "aio bdev {} on {}: O_DIRECT, block size {}", o.name,
                       o.filename, p.block_size);
    return register_bdev(std::make_unique<AioBdev>(std::move(p), std::move(*f), o.fallocate));
}

void aio_delete(const std::string& name, std::function<void(Result<void>)> done) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kAioModule) {
        done(Error(Errc::not_found, fmt::format("aio bdev {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

Result<void> aio_rescan(const std::string& name) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kAioModule)
        return Error(Errc::not_found, fmt::format("aio bdev {} not found", name));
    return rescan_backing_file(*b, static_cast<AioBdev*>(b)->file());
}

}  // namespace strata::bdev
