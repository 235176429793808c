#include "virtio/virtio.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/virtio/pci.h>
#include <strata/virtio/spec/blk.h>
#include <strata/virtio/spec/scsi.h>
#include <strata/virtio/user.h>

#include <strata/runtime/io_device.h>  // unregister_io_device_then

#include "virtio/channel.h"

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_virtio);

const Module kVirtioBlkModule{"virtio_blk", nullptr};

namespace {

namespace vspec = virtio::spec;
namespace blk = virtio::spec::blk;

constexpr uint32_t kMaxTransferBytes = 128 * 1024;  // larger I/O is split by the layer
constexpr uint16_t kMaxIndirect = 64;
constexpr size_t kSlotHeaderBytes = 64;

// Per request slot, in the queue's shared memory.
struct SlotHeader {
    blk::OutHdr hdr;
    uint8_t status;
};
static_assert(sizeof(SlotHeader) <= kSlotHeaderBytes);

struct IoCtx {
    uint16_t slot;
    bool bounced;
};
static_assert(sizeof(IoCtx) <= kModuleIoContextBytes);

// Per queue: the slot headers, then a bounce buffer per slot (virtio-user).
constexpr virtio_channel::SlotLayout kSlotLayout{kSlotHeaderBytes, 0, kMaxTransferBytes};

class VirtioBlkBdev;

// The controllers of one Host (an App).
struct Ctrlrs {
    std::map<std::string, VirtioBlkBdev*, std::less<>> by_name;
};

// A Thread's channel owns one virtqueue. When every queue is held (by another Thread's channel,
// possibly one only waiting to be destroyed, as after an examine's read), it waits: its I/O
// queues and each poll tries again to take one (channel.h).
class BlkChannel final : public virtio_channel::QueueChannel<BlkChannel, VirtioBlkBdev> {
public:
    BlkChannel(VirtioBlkBdev& b, runtime::Thread& thread);
    void submit(BdevIo& io) noexcept;

private:
    friend class virtio_channel::QueueChannel<BlkChannel, VirtioBlkBdev>;
    bool start(BdevIo& io) noexcept;  // false: no room, leave it queued
    void finish(BdevIo& io, uint32_t len) noexcept;
    static uint16_t slot_of(BdevIo& io) noexcept { return io.module_ctx<IoCtx>()->slot; }
    void no_queue() noexcept;
    void got_queue(int q) noexcept;
    SlotHeader* header(uint16_t slot) noexcept {
        return reinterpret_cast<SlotHeader*>(slot_memory(slot));
    }

    bool wait_logged_ = false;
    uint32_t wait_polls_ = 0;
};

class BlkIoDevice final : public runtime::IoDevice {
public:
    BlkIoDevice(VirtioBlkBdev& b, const std::string& name)
        : IoDevice("bdev_virtio_blk:" + name), bdev_(b) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    VirtioBlkBdev& bdev_;
};

class VirtioBlkBdev final : public Bdev {
public:
    VirtioBlkBdev(Properties p, std::unique_ptr<virtio::Device> dev, VirtioAttachOptions o,
                  Ctrlrs& ctrlrs)
        : Bdev(kVirtioBlkModule, std::move(p)),
          dev_(std::move(dev)),
          opts_(std::move(o)),
          ctrlrs_(ctrlrs),
          queue_taken_(new std::atomic<bool>[dev_->num_queues()]),
          owner_(runtime::current_thread()),
          io_dev_(*this, name()) {
        for (uint16_t i = 0; i < dev_->num_queues(); ++i) queue_taken_[i] = false;
        runtime::register_io_device(io_dev_);
    }

    bool supports(IoType t) const noexcept override {
        if (t == IoType::read) return true;
        if (t == IoType::write) return !dev_->has_feature(blk::kFRo);
        if (t == IoType::flush) return dev_->has_feature(blk::kFFlush);
        return false;
    }
    runtime::IoDevice& module_io_device() noexcept override { return io_dev_; }
    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        static_cast<BlkChannel&>(ch).submit(io);
    }
    void destruct(std::function<void()> done) override {
        ctrlrs_.by_name.erase(name());
        unregister_io_device_then(io_dev_, std::move(done));
    }
    void info_json(nlohmann::json& out) const override {
        out["virtio_blk"] = {{"trtype", dev_->transport_name()},
                             {"traddr", dev_->address()},
                             {"vq_count", dev_->num_queues()},
                             {"vq_size", opts_.vq_size},
                             {"packed_ring", dev_->has_feature(vspec::kFRingPacked)},
                             {"features", fmt::format("{:#x}", dev_->features())},
                             {"state", is_gone() ? "failed" : "ok"}};
    }
    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_virtio_attach_controller"},
               {"params",
                {{"name", name()},
                 {"trtype", opts_.trtype},
                 {"traddr", opts_.traddr},
                 {"dev_type", "blk"},
                 {"vq_count", opts_.vq_count},
                 {"vq_size", opts_.vq_size}}}};
        if (opts_.packed_ring) out["params"]["packed_ring"] = true;
    }

    virtio::Device& device() noexcept { return *dev_; }
    // A queue for a channel, or -1 when every queue has a Thread. Any OS thread.
    int take_queue() noexcept {
        for (uint16_t i = 0; i < dev_->num_queues(); ++i) {
            bool expected = false;
            if (queue_taken_[i].compare_exchange_strong(expected, true, std::memory_order_acquire))
                return i;
        }
        return -1;
    }
    void put_queue(int i) noexcept { queue_taken_[i].store(false, std::memory_order_release); }

    bool is_gone() const noexcept { return gone_.load(std::memory_order_relaxed); }
    // The device went away (any Thread): I/O fails from now on, and the bdev is unregistered on
    // the Thread that attached it (its openers get Event::remove), as a hot removal.
    void device_gone() noexcept {
        if (gone_.exchange(true)) return;
        STRATA_ERRLOG(log_bdev_virtio,
                      "virtio_blk {}: device gone ({} {}); failing its I/O and removing the bdev",
                      name(), dev_->transport_name(), dev_->address());
        if (owner_ == nullptr) return;
        (void)owner_->post([n = name()] {
            unregister_bdev(n, [n](Result<void> r) {
                if (!r && r.code() != Errc::not_found)
                    STRATA_ERRLOG(log_bdev_virtio, "virtio_blk {}: removal failed: {}", n,
                                  r.error().message());
            });
        });
    }

private:
    std::unique_ptr<virtio::Device> dev_;
    VirtioAttachOptions opts_;
    Ctrlrs& ctrlrs_;
    std::unique_ptr<std::atomic<bool>[]> queue_taken_;  // by channels of any Thread
    std::atomic<bool> gone_{false};
    runtime::Thread* owner_;  // where it was attached (removal runs there)
    BlkIoDevice io_dev_;
};

std::unique_ptr<runtime::IoChannel> BlkIoDevice::create_channel(runtime::Thread& thread) {
    return std::make_unique<BlkChannel>(bdev_, thread);
}

BlkChannel::BlkChannel(VirtioBlkBdev& b, runtime::Thread& thread)
    : QueueChannel(b, thread, 0, kSlotLayout, log_bdev_virtio, "virtio_blk", "bdev_virtio_blk",
                   "bdev_virtio_blk_gone") {
    (void)attach_queue();
}

void BlkChannel::no_queue() noexcept {
    // Briefly normal (a channel of an examine read not yet destroyed); worth a warning only
    // when it lasts (about a million polls).
    if (!wait_logged_ && ++wait_polls_ > (1u << 20)) {
        wait_logged_ = true;
        STRATA_WARNLOG(log_bdev_virtio,
                       "virtio_blk {}: every virtqueue is held by another Thread; Thread {} "
                       "waits for one (each Thread doing I/O takes one: attach with "
                       "vq_count at least the number of Threads)",
                       owner_.name(), thr_.name());
    }
}

void BlkChannel::got_queue(int q) noexcept {
    if (wait_logged_)
        STRATA_INFOLOG(log_bdev_virtio, "virtio_blk {}: Thread {} got virtqueue {}", owner_.name(),
                       thr_.name(), q);
}

void BlkChannel::submit(BdevIo& io) noexcept {
    switch (io.type()) {
        case IoType::read:
        case IoType::write:
        case IoType::flush:
            break;
        default:
            io.complete(Errc::not_supported);
            return;
    }
    // Behind queued I/O, to keep order; the poller publishes the batch.
    start_or_queue(io);
}

bool BlkChannel::start(BdevIo& io) noexcept {
    if (vq_->broken() || owner_.is_gone()) {
        io.complete(Errc::io_error);
        return true;
    }
    if (free_slots_.empty()) return false;
    const uint16_t slot = free_slots_.back();
    SlotHeader* h = header(slot);
    virtio::VqBuffer bufs[kMaxIoVecs + 2];
    size_t n = 0;
    const bool is_read = io.type() == IoType::read;
    h->hdr.type = is_read ? blk::kTIn : io.type() == IoType::write ? blk::kTOut : blk::kTFlush;
    h->hdr.ioprio = 0;
    h->hdr.sector = io.offset_blocks() * owner_.block_size() / blk::kSectorSize;
    h->status = 0xff;
    const uint64_t h_dev = slot_device_address(slot);
    bufs[n++] = {h_dev + offsetof(SlotHeader, hdr), sizeof h->hdr, false};
    bool bounced = false;
    if (io.type() != IoType::flush) {
        const auto iovs = io.iovs();
        const uint64_t len = io.length_bytes();
        uint64_t left = len;
        for (const iovec& v : iovs) {
            if (left == 0) break;
            const size_t l = std::min<uint64_t>(v.iov_len, left);
            const uint64_t a = dev_.device_address(v.iov_base, l);
            if (a == virtio::kNoDeviceAddress || n + 1 >= std::size(bufs)) {
                bounced = true;
                break;
            }
            bufs[n++] = {a, static_cast<uint32_t>(l), is_read};
            left -= l;
        }
        if (bounced) {
            // Outside the memory the device shares: through this slot's bounce buffer.
            if (len > kMaxTransferBytes || !can_bounce_) {
                // virtio-pci has no bounce buffers: every buffer must be env DMA memory.
                if (!can_bounce_ && !bounce_logged_) {
                    bounce_logged_ = true;
                    STRATA_ERRLOG(log_bdev_virtio,
                                  "virtio_blk {}: a data buffer is not env DMA memory the device "
                                  "can reach; such I/O fails (invalid_argument)",
                                  owner_.name());
                }
                io.complete(Errc::invalid_argument);
                return true;
            }
            if (!bounce_logged_) {
                bounce_logged_ = true;
                STRATA_INFOLOG(log_bdev_virtio,
                               "virtio_blk {}: data buffers outside the memory shared with the "
                               "device are copied through bounce buffers",
                               owner_.name());
            }
            uint8_t* bb = bounce(slot);
            if (!is_read) {
                size_t off = 0;
                for (const iovec& v : iovs) {
                    const size_t l = std::min<uint64_t>(v.iov_len, len - off);
                    std::memcpy(bb + off, v.iov_base, l);
                    off += l;
                    if (off == len) break;
                }
            }
            n = 1;
            bufs[n++] = {dev_.device_address(bb, len), static_cast<uint32_t>(len), is_read};
        }
    }
    bufs[n++] = {h_dev + offsetof(SlotHeader, status), 1, true};
    const Status s = vq_->enqueue({bufs, n}, &io);
    if (s.code() == Errc::no_space) return false;
    if (!s.ok()) {
        io.complete(Errc::io_error);
        return true;
    }
    free_slots_.pop_back();
    *io.module_ctx<IoCtx>() = IoCtx{slot, bounced};
    return true;
}

void BlkChannel::finish(BdevIo& io, uint32_t) noexcept {
    const IoCtx ctx = *io.module_ctx<IoCtx>();
    const uint8_t status = header(ctx.slot)->status;
    if (status == blk::kSOk && ctx.bounced && io.type() == IoType::read) {
        const uint8_t* bb = bounce(ctx.slot);
        const uint64_t len = io.length_bytes();
        size_t off = 0;
        for (const iovec& v : io.iovs()) {
            const size_t l = std::min<uint64_t>(v.iov_len, len - off);
            std::memcpy(v.iov_base, bb + off, l);
            off += l;
            if (off == len) break;
        }
    }
    free_slots_.push_back(ctx.slot);
    io.complete(status == blk::kSOk       ? Errc::ok
                : status == blk::kSUnsupp ? Errc::not_supported
                                          : Errc::io_error);
}

Result<std::vector<std::string>> attach_blk(const VirtioAttachOptions& o) {
    const uint64_t blk_features = vspec::feature(blk::kFBlkSize) | vspec::feature(blk::kFFlush) |
                                  vspec::feature(blk::kFRo) | vspec::feature(blk::kFSegMax) |
                                  vspec::feature(blk::kFSizeMax) | vspec::feature(blk::kFMq);
    Result<std::unique_ptr<virtio::Device>> dev = Error(Errc::invalid_argument, "trtype");
    if (o.trtype == "pci") {
        auto addr = env::PciAddress::parse(o.traddr);
        if (!addr) return addr.error();
        virtio::PciOptions po;
        po.address = *addr;
        po.device_type = vspec::kDeviceTypeBlock;
        po.num_queues = static_cast<uint16_t>(o.vq_count);
        po.queue_size = static_cast<uint16_t>(o.vq_size);
        po.max_indirect = kMaxIndirect;
        po.device_features = blk_features;
        po.packed_ring = o.packed_ring;
        // Headers and status bytes only: data buffers are env DMA memory, sent as they are.
        po.queue_extra_bytes = kSlotLayout.slot_area(po.queue_size);
        dev = virtio::open_pci(po);
    } else {
        virtio::UserOptions uo;
        uo.socket_path = o.traddr;
        uo.device_type = vspec::kDeviceTypeBlock;
        uo.num_queues = static_cast<uint16_t>(o.vq_count);
        uo.queue_size = static_cast<uint16_t>(o.vq_size);
        uo.max_indirect = kMaxIndirect;
        uo.device_features = blk_features;
        uo.packed_ring = o.packed_ring;
        uo.queue_extra_bytes =
            kSlotLayout.slot_area(uo.queue_size) + size_t{kMaxTransferBytes} * uo.queue_size;
        dev = virtio::open_user(uo);
    }
    if (!dev) return dev.error();
    virtio::Device& d = **dev;

    blk::Config cfg{};
    if (auto r = d.read_config(0, &cfg, offsetof(blk::Config, max_secure_erase_sectors)); !r)
        return r.error();
    uint32_t block_size = blk::kSectorSize;
    if (d.has_feature(blk::kFBlkSize)) block_size = cfg.blk_size;
    if (block_size < blk::kSectorSize || (block_size & (block_size - 1)) != 0)
        return Error(Errc::not_supported,
                     fmt::format("virtio_blk {}: device block size {} is not a power of two of "
                                 "512 or more",
                                 o.name, block_size));
    const uint64_t bytes = cfg.capacity * blk::kSectorSize;
    if (bytes < block_size)
        return Error(Errc::invalid_argument,
                     fmt::format("virtio_blk {}: device capacity is {} bytes", o.name, bytes));
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "VirtioBlk Disk";
    p.block_size = block_size;
    p.num_blocks = bytes / block_size;
    p.write_cache = d.has_feature(blk::kFFlush);
    // virtio-pci has no bounce buffers of its own: the layer bounces non-DMA buffers.
    p.needs_dma_memory = std::string_view(d.transport_name()) == "pci";
    p.max_io_blocks = kMaxTransferBytes / block_size;
    const uint16_t chain = d.queue(0).max_chain();
    uint32_t segs = std::min<uint32_t>(chain > 2 ? chain - 2u : 1u, kMaxIoVecs);
    if (d.has_feature(blk::kFSegMax) && cfg.seg_max != 0) segs = std::min(segs, cfg.seg_max);
    p.max_num_segments = segs;
    auto& ctrlrs = runtime::current_host().get<Ctrlrs>();
    auto b = std::make_unique<VirtioBlkBdev>(std::move(p), std::move(*dev), o, ctrlrs);
    VirtioBlkBdev* raw = b.get();
    auto reg = register_bdev(std::move(b));
    if (!reg) return reg.error();
    ctrlrs.by_name[o.name] = raw;
    return std::vector<std::string>{o.name};
}

}  // namespace

Result<std::vector<std::string>> virtio_attach(const VirtioAttachOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "virtio controller needs a name");
    if (find(o.name) != nullptr ||
        runtime::current_host().get<Ctrlrs>().by_name.count(o.name) != 0 ||
        virtio_scsi_exists(o.name))
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    if (o.dev_type != "blk" && o.dev_type != "scsi")
        return Error(Errc::invalid_argument, fmt::format("dev_type {:?}: blk or scsi", o.dev_type));
    if (o.trtype != "user" && o.trtype != "pci")
        return Error(Errc::invalid_argument, fmt::format("trtype {:?}: user or pci", o.trtype));
    if (o.vq_count == 0 || o.vq_count > 256)
        return Error(Errc::invalid_argument, fmt::format("vq_count {} not in 1..256", o.vq_count));
    if (o.vq_size == 0 || o.vq_size > vspec::kMaxQueueSize || (o.vq_size & (o.vq_size - 1)) != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("vq_size {} is not a power of two in 1..32768", o.vq_size));
    if (o.dev_type == "scsi") {
        if (o.vq_count > 256 - virtio::spec::scsi::kFirstRequestQueue)
            return Error(Errc::invalid_argument,
                         fmt::format("vq_count {}: at most 254 request queues", o.vq_count));
        return virtio_scsi_attach(o);
    }
    return attach_blk(o);
}

void virtio_detach(const std::string& name, std::function<void(Result<void>)> done) {
    auto& ctrlrs = runtime::current_host().get<Ctrlrs>();
    if (ctrlrs.by_name.count(name) == 0) {
        if (virtio_scsi_detach(name, done)) return;
        done(Error(Errc::not_found, fmt::format("virtio controller {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

}  // namespace strata::bdev
