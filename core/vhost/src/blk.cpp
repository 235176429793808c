// vhost-blk over a bdev (blk.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/vhost/blk.h>
#include <strata/virtio/spec/blk.h>

#include "iov.h"

namespace strata::vhost {

STRATA_LOG_COMPONENT(vhost_blk);

namespace {

namespace vs = virtio::spec;
namespace vb = virtio::spec::blk;
using internal::gather;
using internal::slice;

constexpr uint32_t kMaxIov = kBlkMaxSegments + 2;  // + header + status

struct BlkQueue;

struct Task {
    Chain chain;
    iovec iov[kMaxIov];
    iovec data[kMaxIov];
    int data_cnt = 0;
    BlkQueue* bq = nullptr;
    uint16_t head = 0;
    bool busy = false;
    uint8_t* status = nullptr;
    uint32_t written = 0;
    bdev::IoWaitEntry wait{};
};

struct BlkQueue {
    Session* session = nullptr;
    Queue* queue = nullptr;
    BlkDevice* dev = nullptr;
    std::vector<Task> tasks;
};

}  // namespace

class BlkDevice final : public Device {
public:
    explicit BlkDevice(const BlkOptions& o) : opts_(o) {}
    ~BlkDevice() override { close_bdev(); }

    Result<void> open() {
        auto d = bdev::open(opts_.bdev_name, !opts_.readonly, [this](bdev::Event ev, bdev::Bdev&) {
            if (ev == bdev::Event::remove) on_remove();
        });
        if (!d.ok()) return d.error();
        desc_ = std::move(*d);
        name_ = desc_->bdev().name();
        block_size_ = desc_->bdev().block_size();
        unmap_ = desc_->bdev().supports(bdev::IoType::unmap);
        write_zeroes_ = desc_->bdev().supports(bdev::IoType::write_zeroes);
        if (block_size_ % vb::kSectorSize != 0)
            return Error(Errc::invalid_argument,
                         fmt::format("bdev '{}' block size {} is not a multiple of 512", name_,
                                     block_size_));
        return {};
    }

    uint64_t features() const noexcept override {
        uint64_t f = vs::feature(vb::kFSegMax) | vs::feature(vb::kFBlkSize) |
                     vs::feature(vb::kFFlush) | vs::feature(vb::kFMq);
        if (opts_.readonly) f |= vs::feature(vb::kFRo);
        if (opts_.packed_ring) f |= vs::feature(vs::kFRingPacked);
        if (unmap_ && !opts_.readonly) f |= vs::feature(vb::kFDiscard);
        if (write_zeroes_ && !opts_.readonly) f |= vs::feature(vb::kFWriteZeroes);
        return f;
    }
    uint16_t max_queues() const noexcept override { return opts_.num_queues; }

    bool read_config(uint32_t offset, uint8_t* out, uint32_t size) noexcept override {
        vb::Config c{};
        const uint64_t blocks = desc_ ? desc_->bdev().num_blocks() : 0;
        c.capacity = blocks * (block_size_ / vb::kSectorSize);
        c.seg_max = kBlkMaxSegments;
        c.blk_size = block_size_;
        c.num_queues = opts_.num_queues;
        const uint32_t max_sectors = 0x3fffff;  // SPDK's SPDK_VHOST_BLK_MAX_DISCARD_SECTORS
        c.max_discard_sectors = max_sectors;
        c.max_discard_seg = 1;
        c.discard_sector_alignment = block_size_ / vb::kSectorSize;
        c.max_write_zeroes_sectors = max_sectors;
        c.max_write_zeroes_seg = 1;
        if (offset > sizeof c || size > sizeof c - offset) return false;
        std::memcpy(out, reinterpret_cast<const uint8_t*>(&c) + offset, size);
        return true;
    }

    Result<void> start_queue(Session& s, Queue& q) override {
        if (desc_ && channel_ == nullptr) channel_ = desc_->get_channel();
        auto* bq = new BlkQueue;
        bq->session = &s;
        bq->queue = &q;
        bq->dev = this;
        bq->tasks.resize(q.num);
        for (uint16_t i = 0; i < q.num; ++i) {
            Task& t = bq->tasks[i];
            t.chain.iov = t.iov;
            t.chain.max_iov = kMaxIov;
            t.bq = bq;
            t.head = i;
        }
        q.device_ctx = bq;
        ++queues_;
        return {};
    }

    void stop_queue(Session&, Queue& q) noexcept override {
        delete static_cast<BlkQueue*>(q.device_ctx);
        q.device_ctx = nullptr;
        if (--queues_ == 0 && channel_ != nullptr) {
            bdev::put_channel(channel_);
            channel_ = nullptr;
        }
    }

    Chain* chain_for(Queue& q, uint16_t head) noexcept override {
        auto* bq = static_cast<BlkQueue*>(q.device_ctx);
        Task& t = bq->tasks[head];
        if (t.busy) return nullptr;
        t.busy = true;
        return &t.chain;
    }

    void submit(Session&, Queue& q, uint16_t head) noexcept override {
        ++outstanding_;
        dispatch(static_cast<BlkQueue*>(q.device_ctx)->tasks[head]);
    }

    const std::string& bdev_name() const noexcept { return name_; }
    bool readonly() const noexcept { return opts_.readonly; }

private:
    void finish(Task& t, uint8_t status) noexcept {
        *t.status = status;
        t.busy = false;
        --outstanding_;
        t.bq->session->complete(*t.bq->queue, t.head, t.written);
        maybe_close_removed();
    }

    static void io_done(void* ctx, const bdev::IoStatus& st) {
        auto* t = static_cast<Task*>(ctx);
        t->bq->dev->finish(*t, st.ok() ? vb::kSOk : vb::kSIoErr);
    }

    void dispatch(Task& t) noexcept {
        const Chain& c = t.chain;
        const int wr_first = c.readable;
        t.written = 0;
        // The status byte: the last byte of the last device-writable buffer.
        if (c.writable == 0) {
            // Nowhere to put a status: the request is returned with nothing written.
            STRATA_WARNLOG(log_vhost_blk, "{}: request {} without a writable status byte", name_,
                           t.head);
            t.busy = false;
            --outstanding_;
            t.bq->session->complete(*t.bq->queue, t.head, 0);
            return;
        }
        const iovec& last = c.iov[c.readable + c.writable - 1];
        t.status = static_cast<uint8_t*>(last.iov_base) + last.iov_len - 1;
        t.written = 1;
        vb::OutHdr hdr;
        if (!gather(c.iov, c.readable, 0, &hdr, sizeof hdr)) return finish(t, vb::kSIoErr);
        if (!desc_ || removed_ || channel_ == nullptr) return finish(t, vb::kSIoErr);
        const uint64_t capacity = desc_->bdev().num_blocks() * block_size_;
        auto range_ok = [&](uint64_t sector, uint64_t bytes) {
            if (sector > capacity / vb::kSectorSize) return false;
            const uint64_t off = sector * vb::kSectorSize;
            return off % block_size_ == 0 && bytes % block_size_ == 0 && bytes <= capacity - off;
        };
        Status s;
        switch (hdr.type) {
            case vb::kTIn: {
                t.data_cnt = slice(c.iov + wr_first, c.writable, 0, 1, t.data);
                const uint64_t bytes = c.writable_bytes - 1;
                if (t.data_cnt < 0 || !range_ok(hdr.sector, bytes)) return finish(t, vb::kSIoErr);
                t.written = uint32_t(bytes) + 1;
                if (bytes == 0) return finish(t, vb::kSOk);
                s = bdev::readv(*desc_, *channel_, t.data, t.data_cnt,
                                hdr.sector * vb::kSectorSize / block_size_, bytes / block_size_,
                                &io_done, &t);
                break;
            }
            case vb::kTOut: {
                if (opts_.readonly) return finish(t, vb::kSIoErr);
                t.data_cnt = slice(c.iov, c.readable, sizeof hdr, 0, t.data);
                const uint64_t bytes = c.readable_bytes - sizeof hdr;
                if (t.data_cnt < 0 || !range_ok(hdr.sector, bytes)) return finish(t, vb::kSIoErr);
                if (bytes == 0) return finish(t, vb::kSOk);
                s = bdev::writev(*desc_, *channel_, t.data, t.data_cnt,
                                 hdr.sector * vb::kSectorSize / block_size_, bytes / block_size_,
                                 &io_done, &t);
                break;
            }
            case vb::kTFlush:
                s = bdev::flush(*desc_, *channel_, 0, desc_->bdev().num_blocks(), &io_done, &t);
                break;
            case vb::kTGetId: {
                t.data_cnt = slice(c.iov + wr_first, c.writable, 0, 1, t.data);
                if (t.data_cnt < 0) return finish(t, vb::kSIoErr);
                char id[vb::kIdBytes] = {};
                std::memcpy(id, name_.data(), std::min(name_.size(), sizeof id));
                size_t done = 0;
                for (int i = 0; i < t.data_cnt && done < sizeof id; ++i) {
                    const size_t k = std::min(t.data[i].iov_len, sizeof id - done);
                    std::memcpy(t.data[i].iov_base, id + done, k);
                    done += k;
                }
                t.written = uint32_t(done) + 1;
                return finish(t, vb::kSOk);
            }
            case vb::kTDiscard:
            case vb::kTWriteZeroes: {
                const bool discard = hdr.type == vb::kTDiscard;
                if (opts_.readonly || (discard ? !unmap_ : !write_zeroes_))
                    return finish(t, vb::kSUnsupp);
                vb::DiscardWriteZeroes d;
                if (c.readable_bytes - sizeof hdr != sizeof d ||
                    !gather(c.iov, c.readable, sizeof hdr, &d, sizeof d))
                    return finish(t, vb::kSUnsupp);  // one segment only (max_*_seg = 1)
                const uint64_t bytes = uint64_t(d.num_sectors) * vb::kSectorSize;
                if (!range_ok(d.sector, bytes)) return finish(t, vb::kSIoErr);
                if (bytes == 0) return finish(t, vb::kSOk);
                const uint64_t off = d.sector * vb::kSectorSize / block_size_;
                s = discard ? bdev::unmap(*desc_, *channel_, off, bytes / block_size_, &io_done, &t)
                            : bdev::write_zeroes(*desc_, *channel_, off, bytes / block_size_,
                                                 &io_done, &t);
                break;
            }
            default:
                return finish(t, vb::kSUnsupp);
        }
        if (s.code() == Errc::busy) {
            t.wait.fn = [](void* ctx) {
                auto* task = static_cast<Task*>(ctx);
                task->bq->dev->dispatch(*task);
            };
            t.wait.ctx = &t;
            bdev::queue_io_wait(*channel_, t.wait);
            return;
        }
        if (!s.ok()) finish(t, vb::kSIoErr);
    }

    void on_remove() {
        STRATA_WARNLOG(log_vhost_blk, "bdev '{}' was removed: requests fail from now on", name_);
        removed_ = true;
        maybe_close_removed();
        if (opts_.on_removed) opts_.on_removed();
    }
    void maybe_close_removed() noexcept {
        if (removed_ && outstanding_ == 0 && desc_) close_bdev();
    }
    void close_bdev() noexcept {
        if (channel_ != nullptr) bdev::put_channel(channel_);
        channel_ = nullptr;
        desc_.reset();
    }

    BlkOptions opts_;
    std::unique_ptr<bdev::Desc> desc_;
    bdev::Channel* channel_ = nullptr;
    std::string name_;
    uint32_t block_size_ = 512;
    bool unmap_ = false;
    bool write_zeroes_ = false;
    bool removed_ = false;
    uint32_t queues_ = 0;
    uint64_t outstanding_ = 0;

    friend std::string blk_bdev_name(Device& d);
};

Result<std::unique_ptr<Device>> create_blk_device(const BlkOptions& options) {
    if (options.num_queues == 0 || options.num_queues > kMaxQueues)
        return Error(Errc::invalid_argument,
                     fmt::format("num_queues {} (1 to {})", options.num_queues, kMaxQueues));
    auto d = std::make_unique<BlkDevice>(options);
    if (auto r = d->open(); !r.ok()) return r.error();
    return std::unique_ptr<Device>(std::move(d));
}

std::string blk_bdev_name(Device& d) {
    auto& b = static_cast<BlkDevice&>(d);
    return b.desc_ ? b.name_ : std::string();
}
bool blk_readonly(Device& d) {
    return static_cast<BlkDevice&>(d).readonly();
}

}  // namespace strata::vhost
