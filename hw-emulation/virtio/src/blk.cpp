// The virtio-blk PCI model (see blk.h).
#include <strata/hwemu/virtio/blk.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/virtio/spec/blk.h>
#include <strata/virtio/spec/pci.h>
#include <strata/virtio/spec/ring.h>

namespace strata::hwemu::virtio {

STRATA_LOG_COMPONENT(hwemu_virtio);

namespace {

namespace vs = strata::virtio::spec;
namespace vpci = strata::virtio::spec::pci;
namespace cc = strata::virtio::spec::pci::common;
namespace blk = strata::virtio::spec::blk;

constexpr uint64_t kCommon = 0x0000, kIsr = 0x1000, kDevice = 0x2000, kNotify = 0x3000;
constexpr uint32_t kNotifyMultiplier = 4;
constexpr uint32_t kBarBytes = 0x4000;
constexpr size_t kMaxSegs = 256;

struct Queue {
    uint16_t size = 0;
    uint16_t max = 0;
    bool enabled = false;
    uint64_t desc = 0, driver = 0, device = 0;
    uint16_t last_avail = 0;
    uint16_t used_idx = 0;
};

struct Seg {
    uint64_t addr;
    uint32_t len;
    bool write;
};

class Model final : public BlkModel, public PciModel {
public:
    Model(const BlkConfig& c, runtime::Thread& t)
        : cfg_(c), thread_(t), data_(c.capacity_bytes), queues_(c.num_queues) {
        for (Queue& q : queues_) q.max = q.size = c.queue_size_max;
        poller_ = t.register_poller(&Model::poll, this, "hwemu_virtio_blk");
    }
    ~Model() override {
        if (bus_ != nullptr) (void)bus_->remove_function(addr_);
        thread_.unregister_poller(poller_);
    }

    std::vector<uint8_t>& storage() noexcept override { return data_; }
    uint8_t device_status() const noexcept override { return status_; }
    uint64_t requests_done() const noexcept override { return done_; }
    uint64_t resets() const noexcept override { return resets_; }
    EmulatedFunction& function() noexcept override { return *fn_; }

    uint64_t bar_read(uint32_t, uint64_t off, uint32_t width) override {
        if (off >= kCommon && off < kCommon + cc::kSize) return common_read(off - kCommon, width);
        if (off == kIsr) return 0;
        if (off >= kDevice && off < kDevice + 0x100) return config_read(off - kDevice, width);
        return 0;
    }
    void bar_write(uint32_t, uint64_t off, uint32_t width, uint64_t v) override {
        if (off >= kCommon && off < kCommon + cc::kSize)
            return common_write(off - kCommon, width, v);
        if (off >= kNotify && off < kNotify + kNotifyMultiplier * queues_.size()) {
            ++notifies_;
            return;
        }
    }

    uint64_t offered() const {
        return vs::feature(vs::kFVersion1) | vs::feature(vs::kFRingIndirectDesc) |
               vs::feature(blk::kFBlkSize) | vs::feature(blk::kFFlush) | vs::feature(blk::kFSegMax);
    }

    uint64_t common_read(uint64_t r, uint32_t) {
        Queue* q = sel_ < queues_.size() ? &queues_[sel_] : nullptr;
        switch (r) {
            case cc::kDeviceFeatureSelect:
                return dfsel_;
            case cc::kDeviceFeature:
                return dfsel_ == 0   ? uint32_t(offered())
                       : dfsel_ == 1 ? uint32_t(offered() >> 32)
                                     : 0;
            case cc::kDriverFeatureSelect:
                return gfsel_;
            case cc::kDriverFeature:
                return gfsel_ < 2 ? uint32_t(driver_features_ >> (32 * gfsel_)) : 0;
            case cc::kMsixConfig:
                return vpci::kMsixNoVector;
            case cc::kNumQueues:
                return queues_.size();
            case cc::kDeviceStatus:
                return status_;
            case cc::kConfigGeneration:
                return 0;
            case cc::kQueueSelect:
                return sel_;
            case cc::kQueueSize:
                return q ? q->size : 0;
            case cc::kQueueMsixVector:
                return vpci::kMsixNoVector;
            case cc::kQueueEnable:
                return q ? q->enabled : 0;
            case cc::kQueueNotifyOff:
                return sel_;
            case cc::kQueueDesc:
                return q ? uint32_t(q->desc) : 0;
            case cc::kQueueDesc + 4:
                return q ? uint32_t(q->desc >> 32) : 0;
            case cc::kQueueDriver:
                return q ? uint32_t(q->driver) : 0;
            case cc::kQueueDriver + 4:
                return q ? uint32_t(q->driver >> 32) : 0;
            case cc::kQueueDevice:
                return q ? uint32_t(q->device) : 0;
            case cc::kQueueDevice + 4:
                return q ? uint32_t(q->device >> 32) : 0;
            default:
                return 0;
        }
    }
    static void set_half(uint64_t& reg, bool high, uint64_t v) {
        reg = high ? (reg & 0xffffffffu) | (v << 32) : (reg & ~uint64_t{0xffffffffu}) | uint32_t(v);
    }
    void common_write(uint64_t r, uint32_t, uint64_t v) {
        Queue* q = sel_ < queues_.size() ? &queues_[sel_] : nullptr;
        switch (r) {
            case cc::kDeviceFeatureSelect:
                dfsel_ = uint32_t(v);
                break;
            case cc::kDriverFeatureSelect:
                gfsel_ = uint32_t(v);
                break;
            case cc::kDriverFeature:
                if (gfsel_ < 2) set_half(driver_features_, gfsel_ == 1, v);
                break;
            case cc::kDeviceStatus:
                if (v == 0) {
                    reset();
                    break;
                }
                // FEATURES_OK only for a subset of what was offered, with VERSION_1.
                if ((v & vs::kStatusFeaturesOk) != 0 &&
                    ((driver_features_ & ~offered()) != 0 ||
                     !vs::has_feature(driver_features_, vs::kFVersion1)))
                    v &= ~uint64_t{vs::kStatusFeaturesOk};
                status_ = uint8_t(v) | (status_ & vs::kStatusDeviceNeedsReset);
                break;
            case cc::kQueueSelect:
                sel_ = uint16_t(v);
                break;
            case cc::kQueueSize:
                if (q && v != 0 && v <= q->max && (v & (v - 1)) == 0) q->size = uint16_t(v);
                break;
            case cc::kQueueEnable:
                if (q && v == 1) q->enabled = true;
                break;
            case cc::kQueueDesc:
            case cc::kQueueDesc + 4:
                if (q) set_half(q->desc, r != cc::kQueueDesc, v);
                break;
            case cc::kQueueDriver:
            case cc::kQueueDriver + 4:
                if (q) set_half(q->driver, r != cc::kQueueDriver, v);
                break;
            case cc::kQueueDevice:
            case cc::kQueueDevice + 4:
                if (q) set_half(q->device, r != cc::kQueueDevice, v);
                break;
            default:
                break;
        }
    }
    uint64_t config_read(uint64_t off, uint32_t width) {
        blk::Config c{};
        c.capacity = cfg_.capacity_bytes / blk::kSectorSize;
        c.seg_max = cfg_.seg_max;
        c.blk_size = cfg_.block_size;
        c.num_queues = uint16_t(queues_.size());
        uint64_t v = 0;
        if (off + width <= sizeof c) std::memcpy(&v, reinterpret_cast<uint8_t*>(&c) + off, width);
        return v;
    }
    void reset() {
        ++resets_;
        status_ = 0;
        driver_features_ = 0;
        dfsel_ = gfsel_ = 0;
        sel_ = 0;
        for (Queue& q : queues_) q = Queue{0, cfg_.queue_size_max};
        for (Queue& q : queues_) q.size = q.max;
    }
    void needs_reset(const char* why, uint64_t value) {
        if ((status_ & vs::kStatusDeviceNeedsReset) == 0)
            STRATA_ERRLOG(log_hwemu_virtio, "{}: {} ({}): device needs reset", fn_->name(), why,
                          value);
        status_ |= vs::kStatusDeviceNeedsReset;
    }

    static runtime::PollStatus poll(void* self) {
        auto* m = static_cast<Model*>(self);
        if ((m->status_ & vs::kStatusDriverOk) == 0 || (m->status_ & vs::kStatusDeviceNeedsReset) ||
            m->hold_requests || m->fn_ == nullptr || m->fn_->removed())
            return runtime::PollStatus::idle;
        size_t n = 0;
        for (Queue& q : m->queues_)
            if (q.enabled) n += m->process(q);
        return n != 0 ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }

    // Gathers one chain into segs; false: the device needs reset (already flagged).
    bool walk(const Queue& q, uint16_t head, Seg* segs, size_t* nsegs) {
        DmaPort& dma = fn_->dma();
        uint64_t table = q.desc;
        uint32_t table_size = q.size;
        uint16_t i = head;
        bool indirect_seen = false;
        *nsegs = 0;
        for (uint32_t visited = 0;;) {
            if (i >= table_size) return needs_reset("descriptor index out of range", i), false;
            if (visited++ >= table_size) return needs_reset("descriptor chain loops", head), false;
            vs::VringDesc d;
            if (!dma.read(table + 16ull * i, &d, sizeof d).ok())
                return needs_reset("descriptor unreadable", table), false;
            if (d.flags & vs::kDescFIndirect) {
                if (indirect_seen || (d.flags & vs::kDescFNext) || d.len == 0 || d.len % 16 != 0)
                    return needs_reset("bad indirect descriptor", d.len), false;
                indirect_seen = true;
                table = d.addr;
                table_size = d.len / 16;
                i = 0;
                visited = 0;
                continue;
            }
            if (*nsegs == kMaxSegs) return needs_reset("chain too long", head), false;
            segs[(*nsegs)++] = {d.addr, d.len, (d.flags & vs::kDescFWrite) != 0};
            if ((d.flags & vs::kDescFNext) == 0) return true;
            i = d.next;
        }
    }

    size_t process(Queue& q) {
        DmaPort& dma = fn_->dma();
        uint16_t avail_idx;
        if (!dma.read(q.driver + 2, &avail_idx, 2).ok()) return needs_reset("avail ring", 0), 0;
        if (uint16_t(avail_idx - q.last_avail) > q.size)
            return needs_reset("avail index jumped", avail_idx), 0;
        size_t n = 0;
        Seg segs[kMaxSegs];
        while (q.last_avail != avail_idx && (status_ & vs::kStatusDeviceNeedsReset) == 0) {
            uint16_t head;
            if (!dma.read(q.driver + 4 + 2ull * (q.last_avail % q.size), &head, 2).ok())
                return needs_reset("avail ring", 0), n;
            ++q.last_avail;
            size_t ns = 0;
            if (!walk(q, head, segs, &ns)) return n;
            uint32_t written = 0;
            const uint8_t st = execute(segs, ns, &written);
            if ((status_ & vs::kStatusDeviceNeedsReset) != 0) return n;
            if (ns >= 1 && segs[ns - 1].write && segs[ns - 1].len >= 1)
                (void)dma.write(segs[ns - 1].addr, &st, 1);
            vs::VringUsedElem e{head, written + 1};
            if (corrupt_used_id) {
                corrupt_used_id = false;
                e.id = uint32_t(q.size) + 7;
            }
            (void)dma.write(q.device + 4 + 8ull * (q.used_idx % q.size), &e, sizeof e);
            ++q.used_idx;
            // flags (0) and idx in one release store: the entry is visible before the index.
            (void)dma.store32_release(q.device, uint32_t(q.used_idx) << 16);
            ++done_;
            ++n;
        }
        return n;
    }

    uint8_t execute(const Seg* segs, size_t ns, uint32_t* written) {
        DmaPort& dma = fn_->dma();
        if (ns < 2 || segs[0].write || segs[0].len < sizeof(blk::OutHdr) || !segs[ns - 1].write)
            return needs_reset("malformed virtio-blk request", ns), blk::kSIoErr;
        blk::OutHdr h;
        if (!dma.read(segs[0].addr, &h, sizeof h).ok()) return blk::kSIoErr;
        uint64_t pos = h.sector * blk::kSectorSize;
        if (h.type == blk::kTFlush) return blk::kSOk;
        if (h.type != blk::kTIn && h.type != blk::kTOut) return blk::kSUnsupp;
        for (size_t i = 1; i + 1 < ns; ++i) {
            const Seg& s = segs[i];
            if (pos + s.len > data_.size()) return blk::kSIoErr;
            if (h.type == blk::kTIn) {
                if (!s.write || !dma.write(s.addr, data_.data() + pos, s.len).ok())
                    return blk::kSIoErr;
                *written += s.len;
            } else if (s.write || !dma.read(s.addr, data_.data() + pos, s.len).ok()) {
                return blk::kSIoErr;
            }
            pos += s.len;
        }
        return blk::kSOk;
    }

    BlkConfig cfg_;
    runtime::Thread& thread_;
    runtime::Poller* poller_ = nullptr;
    std::vector<uint8_t> data_;
    std::vector<Queue> queues_;
    PciBus* bus_ = nullptr;
    env::PciAddress addr_;
    EmulatedFunction* fn_ = nullptr;
    uint8_t status_ = 0;
    uint32_t dfsel_ = 0, gfsel_ = 0;
    uint64_t driver_features_ = 0;
    uint16_t sel_ = 0;
    uint64_t done_ = 0, resets_ = 0, notifies_ = 0;
};

std::vector<uint8_t> cap_body(uint8_t type, uint64_t offset, uint32_t length, bool notify) {
    // After the id/next header: cap_len, cfg_type, bar, id, padding[2], offset, length.
    std::vector<uint8_t> b = {uint8_t(notify ? 20 : 16), type, 0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(offset >> (8 * i)));
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(length >> (8 * i)));
    if (notify)
        for (int i = 0; i < 4; ++i) b.push_back(uint8_t(kNotifyMultiplier >> (8 * i)));
    return b;
}

}  // namespace

Result<std::unique_ptr<BlkModel>> BlkModel::create(PciBus& bus, const env::PciAddress& address,
                                                   const BlkConfig& config,
                                                   runtime::Thread& thread) {
    if (config.block_size < 512 || config.capacity_bytes % config.block_size != 0 ||
        config.num_queues == 0 || config.queue_size_max == 0 ||
        (config.queue_size_max & (config.queue_size_max - 1)) != 0)
        return Error(Errc::invalid_argument, "virtio-blk model: bad geometry or queue settings");
    auto m = std::make_unique<Model>(config, thread);
    PciFunctionConfig c;
    c.vendor_id = vpci::kVendorId;
    c.device_id = uint16_t(vpci::kModernDeviceIdBase + vs::kDeviceTypeBlock);
    c.subsystem_vendor_id = vpci::kVendorId;
    c.subsystem_device_id = 0x1100;
    c.class_code = 0x010000;  // mass storage, SCSI (as QEMU's virtio-blk-pci)
    c.revision_id = 1;
    c.bars[0] = {kBarBytes, false, false};
    c.capabilities = {
        {vpci::kCapVendor, cap_body(vpci::kCapCommonCfg, kCommon, 0x1000, false)},
        {vpci::kCapVendor, cap_body(vpci::kCapIsrCfg, kIsr, 4, false)},
        {vpci::kCapVendor, cap_body(vpci::kCapDeviceCfg, kDevice, 0x100, false)},
        {vpci::kCapVendor,
         cap_body(vpci::kCapNotifyCfg, kNotify, kNotifyMultiplier * config.num_queues, true)},
    };
    c.name = "virtio-blk";
    auto fn = bus.add_function(address, c, m.get());
    if (!fn) return fn.error();
    m->fn_ = *fn;
    m->bus_ = &bus;
    m->addr_ = address;
    return std::unique_ptr<BlkModel>(std::move(m));
}

}  // namespace strata::hwemu::virtio
