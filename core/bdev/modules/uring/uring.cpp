#include "uring/uring.h"

#include <liburing.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/runtime/scheduler.h>

#include <strata/bdev/backing_file.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_uring);

const Module kUringModule{"uring", nullptr};

namespace {

// SQ entries per ring (the CQ gets twice as many); I/O beyond it waits on the channel's queue.
constexpr uint32_t kQueueDepth = 256;
constexpr uint32_t kReapBatch = 64;
constexpr size_t kInlineIovs = 8;  // trimmed iovecs kept in module_ctx

struct IoCtx {
    iovec iovs[kInlineIovs];
};
static_assert(sizeof(IoCtx) <= kModuleIoContextBytes);

class UringBdev;

class UringChannel final : public runtime::IoChannel {
public:
    UringChannel(UringBdev& bdev, runtime::Thread& thread, const io_uring& ring, bool fixed_file);
    ~UringChannel() override;
    void queue(BdevIo& io) noexcept { queued_.push_back(io); }

private:
    static runtime::PollStatus poll(void* self);
    uint32_t reap() noexcept;
    uint32_t fill() noexcept;
    void prep(io_uring_sqe& sqe, BdevIo& io, const iovec* iov, int iovcnt) noexcept;

    UringBdev& bdev_;
    io_uring ring_;
    const bool fixed_file_;
    const bool simulated_;
    uint32_t inflight_ = 0;  // prepared, in the SQ or in the kernel
    bool submit_error_logged_ = false;
    IntrusiveList<BdevIo, QueuedTag> queued_;
    runtime::Poller* poller_ = nullptr;
    std::array<io_uring_cqe*, kReapBatch> cqes_{};
};

class UringIoDevice final : public runtime::IoDevice {
public:
    UringIoDevice(UringBdev& b, const std::string& name) : IoDevice("bdev_uring:" + name), bdev_(b) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    UringBdev& bdev_;
};

class UringBdev final : public Bdev {
public:
    UringBdev(Properties p, BackingFile file)
        : Bdev(kUringModule, std::move(p)), file_(std::move(file)), dev_(*this, name()) {
        runtime::register_io_device(dev_);
    }

    bool supports(IoType t) const noexcept override {
        return t == IoType::read || t == IoType::write || t == IoType::flush;
    }
    runtime::IoDevice& module_io_device() noexcept override { return dev_; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        switch (io.type()) {
            case IoType::read:
            case IoType::write:
            case IoType::flush:
                static_cast<UringChannel&>(ch).queue(io);
                return;
            default:
                io.complete(Errc::not_supported);
                return;
        }
    }

    void destruct(std::function<void()> done) override {
        unregister_io_device_then(dev_, std::move(done));
    }

    void info_json(nlohmann::json& out) const override {
        out["uring"] = {{"filename", file_.filename()},
                        {"block_size_override", file_.block_size_given()},
                        {"direct_io", file_.direct()}};
    }
    void config_json(nlohmann::json& out) const override {
        nlohmann::json params = {{"name", name()}, {"filename", file_.filename()}, {"uuid", uuid()}};
        if (file_.block_size_given()) params["block_size"] = block_size();
        out = {{"method", "bdev_uring_create"}, {"params", std::move(params)}};
    }

    const BackingFile& file() const noexcept { return file_; }

private:
    BackingFile file_;
    UringIoDevice dev_;
};

std::unique_ptr<runtime::IoChannel> UringIoDevice::create_channel(runtime::Thread& thread) {
    io_uring ring{};
    const int rc = io_uring_queue_init(kQueueDepth, &ring, 0);
    if (rc < 0) {
        STRATA_ERRLOG(log_bdev_uring, "uring bdev {}: io_uring_queue_init for Thread {}: {}",
                      bdev_.name(), thread.name(), std::strerror(-rc));
        return nullptr;
    }
    // A fixed file saves the kernel a file-table lookup and reference per I/O.
    const int fd = bdev_.file().fd();
    const bool fixed = io_uring_register_files(&ring, &fd, 1) == 0;
    return std::make_unique<UringChannel>(bdev_, thread, ring, fixed);
}

UringChannel::UringChannel(UringBdev& bdev, runtime::Thread& thread, const io_uring& ring,
                           bool fixed_file)
    : bdev_(bdev), ring_(ring), fixed_file_(fixed_file), simulated_(thread.scheduler().simulated()) {
    poller_ = thread.register_poller(&UringChannel::poll, this, "bdev_uring");
}

UringChannel::~UringChannel() {
    thread().unregister_poller(poller_);
    // The layer puts its channel only when its I/O is done; if anything is left, the kernel
    // must be done with the buffers before the ring goes.
    if (inflight_ != 0 || !queued_.empty())
        STRATA_ERRLOG(log_bdev_uring, "uring bdev {}: channel destroyed with {} I/O in flight, {} queued",
                      bdev_.name(), inflight_, queued_.size());
    while (queued_.pop_front() != nullptr) {
    }
    if (io_uring_sq_ready(&ring_) > 0) (void)io_uring_submit(&ring_);
    while (inflight_ != 0) {
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec wait{1, 0};
        const int rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &wait);
        if (rc == 0 && cqe != nullptr) {
            io_uring_cqe_seen(&ring_, cqe);
            --inflight_;
        } else if (rc != -EINTR && rc != -ETIME) {
            break;
        }
    }
    io_uring_queue_exit(&ring_);
}

runtime::PollStatus UringChannel::poll(void* self) {
    auto* c = static_cast<UringChannel*>(self);
    const uint32_t reaped = c->inflight_ != 0 ? c->reap() : 0;
    uint32_t sent = 0;
    if (!c->queued_.empty()) sent = c->fill();
    if (io_uring_sq_ready(&c->ring_) > 0) {
        const int rc = io_uring_submit(&c->ring_);
        // EAGAIN/EBUSY: the kernel is short of resources or the CQ is full; the SQEs stay in
        // the ring and go with the next poll.
        if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR && !c->submit_error_logged_) {
            c->submit_error_logged_ = true;
            STRATA_ERRLOG(log_bdev_uring, "uring bdev {}: io_uring_submit: {}", c->bdev_.name(),
                          std::strerror(-rc));
        }
    }
    // Under the simulator, kernel completions arrive in wall-clock time: stay runnable while
    // any are due, or the simulator would take the world for idle.
    const bool waiting = c->simulated_ && c->inflight_ != 0;
    return reaped + sent != 0 || waiting ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

uint32_t UringChannel::reap() noexcept {
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes_.data(), kReapBatch);
    for (unsigned i = 0; i < n; ++i) {
        auto* io = static_cast<BdevIo*>(io_uring_cqe_get_data(cqes_[i]));
        const int res = cqes_[i]->res;
        if (io == nullptr) continue;  // not ours (nothing else posts today)
        --inflight_;
        if (res < 0) {
            io->complete(errc_from_errno(-res));
        } else if (io->type() != IoType::flush && static_cast<uint64_t>(res) != io->length_bytes()) {
            io->complete(Errc::io_error);  // the file ended inside the range (it shrank)
        } else {
            io->complete(Errc::ok);
        }
    }
    // One release store hands every slot back; io and its callback may have gone already.
    if (n != 0) io_uring_cq_advance(&ring_, n);
    return n;
}

void UringChannel::prep(io_uring_sqe& sqe, BdevIo& io, const iovec* iov, int iovcnt) noexcept {
    const int fd = fixed_file_ ? 0 : bdev_.file().fd();
    const uint64_t offset = io.offset_blocks() * bdev_.block_size();
    if (io.type() == IoType::flush) {
        io_uring_prep_fsync(&sqe, fd, IORING_FSYNC_DATASYNC);
    } else if (io.type() == IoType::read) {
        if (iovcnt == 1) io_uring_prep_read(&sqe, fd, iov->iov_base, static_cast<unsigned>(iov->iov_len), offset);
        else io_uring_prep_readv(&sqe, fd, iov, static_cast<unsigned>(iovcnt), offset);
    } else {
        if (iovcnt == 1) io_uring_prep_write(&sqe, fd, iov->iov_base, static_cast<unsigned>(iov->iov_len), offset);
        else io_uring_prep_writev(&sqe, fd, iov, static_cast<unsigned>(iovcnt), offset);
    }
    if (fixed_file_) sqe.flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(&sqe, &io);
}

uint32_t UringChannel::fill() noexcept {
    uint32_t n = 0;
    while (!queued_.empty() && inflight_ < kQueueDepth) {
        BdevIo& io = queued_.front();
        const iovec* iov = nullptr;
        int iovcnt = 0;
        if (io.type() != IoType::flush &&
            !exact_iovs(io.iovs(), io.length_bytes(), io.module_ctx<IoCtx>()->iovs, iov, iovcnt)) {
            queued_.pop_front();  // more than kInlineIovs iovecs that run past the I/O
            io.complete(Errc::invalid_argument);
            ++n;
            continue;
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) break;
        queued_.pop_front();
        prep(*sqe, io, iov, iovcnt);
        ++inflight_;
        ++n;
    }
    return n;
}

Result<void> probe_ring() {
    io_uring ring{};
    const int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0)
        return Error(Errc::not_supported,
                     fmt::format("io_uring is unavailable: {} (kernel.io_uring_disabled, a seccomp "
                                 "profile or a container policy can refuse it)",
                                 std::strerror(-rc)));
    io_uring_queue_exit(&ring);
    return {};
}

}  // namespace

std::string uring_unavailable_reason() {
    auto r = probe_ring();
    return r ? std::string() : r.error().message();
}

Result<Bdev*> uring_create(const UringOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "uring bdev needs a name");
    if (find(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    if (auto probe = probe_ring(); !probe) return probe.error();
    auto f = open_backing_file({o.filename, o.block_size, false, "uring"});
    if (!f) return f.error();
    auto blocks = f->num_blocks();
    if (!blocks) return blocks.error();
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "URING disk";
    p.uuid = o.uuid;
    p.block_size = f->block_size();
    p.num_blocks = *blocks;
    p.write_cache = true;
    p.required_alignment = f->required_alignment();
    return register_bdev(std::make_unique<UringBdev>(std::move(p), std::move(*f)));
}

void uring_delete(const std::string& name, std::function<void(Result<void>)> done) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kUringModule) {
        done(Error(Errc::not_found, fmt::format("uring bdev {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

Result<void> uring_rescan(const std::string& name) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kUringModule)
        return Error(Errc::not_found, fmt::format("uring bdev {} not found", name));
    return rescan_backing_file(*b, static_cast<UringBdev*>(b)->file());
}

}  // namespace strata::bdev
