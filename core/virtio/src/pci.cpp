// virtio-pci, modern interface (see pci.h).
#include <strata/virtio/pci.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/env/memory.h>
#include <strata/virtio/spec/pci.h>

namespace strata::virtio {

STRATA_LOG_COMPONENT(virtio_pci);

namespace {

namespace vpci = spec::pci;
namespace cc = spec::pci::common;

constexpr uint32_t kPciStatus = 0x06;
constexpr uint16_t kPciStatusCapList = 0x10;
constexpr uint32_t kPciCapPointer = 0x34;
constexpr uint32_t kPciCommand = 0x04;
constexpr uint16_t kPciCommandMemory = 0x2;
constexpr uint16_t kPciCommandBusMaster = 0x4;
constexpr size_t kPage = 4096;

size_t align_up(size_t v, size_t a) {
    return (v + a - 1) / a * a;
}

// One configuration window: a range of a BAR.
struct Window {
    env::Bar bar;
    uint64_t offset = 0;
    uint32_t length = 0;
    bool found = false;
};

class PciDevice final : public Device {
public:
    explicit PciDevice(const PciOptions& o) : opts_(o), addr_(o.address.to_string()) {}
    ~PciDevice() override;

    Result<void> open();

    const char* transport_name() const noexcept override { return "pci"; }
    const std::string& address() const noexcept override { return addr_; }
    uint32_t device_type() const noexcept override { return opts_.device_type; }
    uint64_t features() const noexcept override { return features_; }
    Result<void> read_config(uint32_t offset, void* out, uint32_t len) override;
    uint16_t num_queues() const noexcept override { return opts_.num_queues; }
    Virtqueue& queue(uint16_t i) noexcept override { return queues_[i].vq; }
    void notify(uint16_t i) noexcept override { notify_.bar.write16(queues_[i].notify_offset, i); }
    void* queue_extra(uint16_t i) noexcept override {
        return static_cast<uint8_t*>(queues_[i].mem) + queues_[i].extra_offset;
    }
    size_t queue_extra_bytes() const noexcept override { return opts_.queue_extra_bytes; }
    // Removed (all-ones reads) or DEVICE_NEEDS_RESET: nothing in flight will complete.
    bool gone() noexcept override {
        if (gone_) return true;
        const uint8_t s = fn_->removed() ? 0xff : status();
        if (s != 0xff && (s & spec::kStatusDeviceNeedsReset) == 0) return false;
        gone_ = true;
        STRATA_ERRLOG(log_virtio_pci, "virtio-pci {}: device {}", addr_,
                      s == 0xff ? "removed" : "needs reset (DEVICE_NEEDS_RESET)");
        return true;
    }
    uint64_t device_address(const void* p, size_t len) const noexcept override {
        env::IovaSegment seg;
        size_t n = 0;
        if (len == 0 || !env::translate(p, len, {&seg, 1}, &n).ok() || n != 1 || seg.len != len)
            return kNoDeviceAddress;
        return seg.iova;
    }

private:
    struct Queue {
        Virtqueue vq;
        void* mem = nullptr;
        size_t extra_offset = 0;
        uint64_t notify_offset = 0;  // in the notify window's BAR
    };

    Error fail(Errc code, const std::string& what) const {
        return Error(code, fmt::format("virtio-pci {}: {}", addr_, what));
    }
    Result<void> find_capabilities();
    Result<env::Bar> bar(uint32_t index);
    uint8_t status() const { return common_.bar.read8(common_.offset + cc::kDeviceStatus); }
    void set_status(uint8_t s) { common_.bar.write8(common_.offset + cc::kDeviceStatus, s); }
    void write_addr(uint32_t reg, uint64_t v) {
        // 64-bit fields as two 32-bit writes, low half first (VIRTIO 1.2, 4.1.3.1).
        common_.bar.write32(common_.offset + reg, static_cast<uint32_t>(v));
        common_.bar.write32(common_.offset + reg + 4, static_cast<uint32_t>(v >> 32));
    }
    bool reset() noexcept;

    PciOptions opts_;
    std::string addr_;
    std::unique_ptr<env::PciFunction> fn_;
    env::Bar bars_[6];
    Window common_, notify_, isr_, device_;
    uint32_t notify_multiplier_ = 0;
    uint64_t features_ = 0;
    std::unique_ptr<Queue[]> queues_;
    uint16_t queues_made_ = 0;
    bool status_touched_ = false;
    std::atomic<bool> gone_{false};
};

Result<env::Bar> PciDevice::bar(uint32_t index) {
    if (index > 5) return fail(Errc::not_supported, fmt::format("capability names BAR {}", index));
    if (!bars_[index].valid()) {
        auto b = fn_->map_bar(index);
        if (!b) return fail(b.code(), fmt::format("BAR {}: {}", index, b.error().message()));
        bars_[index] = *b;
    }
    return bars_[index];
}

Result<void> PciDevice::find_capabilities() {
    auto st = fn_->config_read16(kPciStatus);
    if (!st) return st.error();
    if ((*st & kPciStatusCapList) == 0)
        return fail(Errc::not_supported, "no capability list (a legacy-only virtio device?)");
    auto p = fn_->config_read8(kPciCapPointer);
    if (!p) return p.error();
    uint32_t pos = *p & 0xfcu;
    for (int guard = 0; pos != 0 && guard < 48; ++guard) {
        auto id = fn_->config_read8(pos);
        auto next = fn_->config_read8(pos + 1);
        if (!id || !next) return fail(Errc::io_error, "capability list unreadable");
        if (*id == vpci::kCapVendor) {
            auto type = fn_->config_read8(pos + 3);
            auto barno = fn_->config_read8(pos + 4);
            auto off = fn_->config_read32(pos + 8);
            auto len = fn_->config_read32(pos + 12);
            if (!type || !barno || !off || !len)
                return fail(Errc::io_error, "capability unreadable");
            Window* w = nullptr;
            switch (*type) {
                case vpci::kCapCommonCfg:
                    w = &common_;
                    break;
                case vpci::kCapNotifyCfg:
                    w = &notify_;
                    break;
                case vpci::kCapIsrCfg:
                    w = &isr_;
                    break;
                case vpci::kCapDeviceCfg:
                    w = &device_;
                    break;
                default:
                    break;  // PCI_CFG and vendor-specific ones: unused
            }
            // The first capability of each type the driver can use wins (VIRTIO 1.2, 4.1.4).
            if (w != nullptr && !w->found && *barno <= 5) {
                auto b = bar(*barno);
                if (!b) return b.error();
                if (uint64_t{*off} + *len > b->size_bytes())
                    return fail(Errc::not_supported,
                                fmt::format("capability type {} [{:#x}, +{:#x}) runs past BAR {} "
                                            "({:#x} bytes)",
                                            *type, *off, *len, *barno, b->size_bytes()));
                if (*type == vpci::kCapNotifyCfg) {
                    auto m = fn_->config_read32(pos + 16);
                    if (!m) return m.error();
                    notify_multiplier_ = *m;
                }
                *w = Window{*b, *off, *len, true};
            }
        }
        pos = *next & 0xfcu;
    }
    if (!common_.found || !notify_.found || !isr_.found)
        return fail(Errc::not_supported,
                    fmt::format("missing modern capabilities (common {}, notify {}, isr {}): a "
                                "legacy-only device?",
                                common_.found, notify_.found, isr_.found));
    if (common_.length < cc::kQueueNotifyData)
        return fail(Errc::not_supported,
                    fmt::format("common configuration window is {} bytes", common_.length));
    return {};
}

bool PciDevice::reset() noexcept {
    set_status(0);
    for (int i = 0; i < 1000; ++i) {
        if (status() == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

Result<void> PciDevice::open() {
    if (opts_.num_queues == 0) return fail(Errc::invalid_argument, "num_queues is 0");
    if (opts_.queue_size == 0 || (opts_.queue_size & (opts_.queue_size - 1)) != 0)
        return fail(Errc::invalid_argument,
                    fmt::format("queue size {} is not a power of two", opts_.queue_size));
    auto fn = env::claim(opts_.address);
    if (!fn) return fail(fn.code(), fn.error().message());
    fn_ = std::move(*fn);
    const auto& info = fn_->info();
    const uint16_t want_modern =
        static_cast<uint16_t>(vpci::kModernDeviceIdBase + opts_.device_type);
    const uint16_t want_transitional =
        opts_.device_type == spec::kDeviceTypeBlock  ? vpci::kTransitionalBlk
        : opts_.device_type == spec::kDeviceTypeScsi ? vpci::kTransitionalScsi
                                                     : 0;
    if (info.vendor_id != vpci::kVendorId ||
        (info.device_id != want_modern && info.device_id != want_transitional))
        return fail(Errc::not_supported,
                    fmt::format("{:04x}:{:04x} is not a virtio device of type {}", info.vendor_id,
                                info.device_id, opts_.device_type));
    if (auto cmd = fn_->config_read16(kPciCommand); cmd)
        (void)fn_->config_write16(
            kPciCommand, static_cast<uint16_t>(*cmd | kPciCommandMemory | kPciCommandBusMaster));
    if (auto r = find_capabilities(); !r) return r.error();

    status_touched_ = true;
    if (!reset()) return fail(Errc::io_error, "device did not reset (status stays non-zero)");
    set_status(spec::kStatusAcknowledge);
    set_status(spec::kStatusAcknowledge | spec::kStatusDriver);

    const uint32_t c = static_cast<uint32_t>(common_.offset);
    auto& b = common_.bar;
    b.write32(c + cc::kDeviceFeatureSelect, 0);
    uint64_t offered = b.read32(c + cc::kDeviceFeature);
    b.write32(c + cc::kDeviceFeatureSelect, 1);
    offered |= uint64_t{b.read32(c + cc::kDeviceFeature)} << 32;
    if (!spec::has_feature(offered, spec::kFVersion1))
        return fail(Errc::not_supported, "device does not offer VIRTIO_F_VERSION_1 (legacy only)");
    // ACCESS_PLATFORM: the device's DMA goes through the platform's IOMMU, which is what IOVAs
    // are for; accepted when offered (a device offering it may refuse a driver that does not).
    const uint64_t wanted =
        spec::feature(spec::kFVersion1) | spec::feature(spec::kFAccessPlatform) |
        spec::feature(spec::kFRingIndirectDesc) | spec::feature(spec::kFRingEventIdx) |
        opts_.device_features | (opts_.packed_ring ? spec::feature(spec::kFRingPacked) : 0);
    features_ = offered & wanted;
    b.write32(c + cc::kDriverFeatureSelect, 0);
    b.write32(c + cc::kDriverFeature, static_cast<uint32_t>(features_));
    b.write32(c + cc::kDriverFeatureSelect, 1);
    b.write32(c + cc::kDriverFeature, static_cast<uint32_t>(features_ >> 32));
    if (!has_feature(spec::kFAccessPlatform))
        STRATA_WARNLOG(log_virtio_pci,
                       "virtio-pci {}: no VIRTIO_F_ACCESS_PLATFORM: the device takes the driver's "
                       "IOVAs for physical addresses (right only without an IOMMU or with env "
                       "IOVA mode pa)",
                       addr_);
    set_status(spec::kStatusAcknowledge | spec::kStatusDriver | spec::kStatusFeaturesOk);
    if ((status() & spec::kStatusFeaturesOk) == 0)
        return fail(Errc::io_error,
                    fmt::format("device refused features {:#x} (FEATURES_OK not kept)", features_));

    const uint16_t nq = b.read16(c + cc::kNumQueues);
    if (nq < opts_.num_queues)
        return fail(Errc::not_supported,
                    fmt::format("device has {} queues, {} asked for", nq, opts_.num_queues));
    const bool indirect = has_feature(spec::kFRingIndirectDesc);
    const bool event_idx = has_feature(spec::kFRingEventIdx);
    const bool packed = has_feature(spec::kFRingPacked);
    const uint16_t max_ind = indirect ? opts_.max_indirect : 0;
    queues_ = std::make_unique<Queue[]>(opts_.num_queues);
    for (uint16_t i = 0; i < opts_.num_queues; ++i) {
        b.write16(c + cc::kQueueSelect, i);
        const uint16_t dev_max = b.read16(c + cc::kQueueSize);
        if (dev_max == 0) return fail(Errc::not_supported, fmt::format("queue {} is absent", i));
        uint16_t size = opts_.queue_size;
        while (size > dev_max) size = static_cast<uint16_t>(size / 2);
        if (size != dev_max) b.write16(c + cc::kQueueSize, size);
        const VirtqueueLayout lay = Virtqueue::layout(size, max_ind, packed);
        Queue& q = queues_[i];
        q.extra_offset = align_up(lay.total_bytes, kPage);
        auto mem =
            env::dma_alloc(q.extra_offset + align_up(opts_.queue_extra_bytes, kPage), kPage, true);
        if (!mem)
            return fail(mem.code(), fmt::format("queue {} memory: {}", i, mem.error().message()));
        q.mem = *mem;
        queues_made_ = static_cast<uint16_t>(i + 1);
        if (auto r =
                q.vq.init(q.mem, env::iova_of(q.mem), size, max_ind, indirect, event_idx, packed);
            !r)
            return r.error();
        b.write16(c + cc::kQueueMsixVector, vpci::kMsixNoVector);
        write_addr(cc::kQueueDesc, q.vq.desc_device_addr());
        write_addr(cc::kQueueDriver, q.vq.avail_device_addr());
        write_addr(cc::kQueueDevice, q.vq.used_device_addr());
        const uint16_t noff = b.read16(c + cc::kQueueNotifyOff);
        q.notify_offset = notify_.offset + uint64_t{noff} * notify_multiplier_;
        if (q.notify_offset + 2 > notify_.offset + notify_.length)
            return fail(Errc::not_supported,
                        fmt::format("queue {}'s notify address is outside the notify window", i));
        b.write16(c + cc::kQueueEnable, 1);
    }
    set_status(spec::kStatusAcknowledge | spec::kStatusDriver | spec::kStatusFeaturesOk |
               spec::kStatusDriverOk);
    if ((status() & spec::kStatusDeviceNeedsReset) != 0)
        return fail(Errc::io_error, "device needs reset right after DRIVER_OK");
    STRATA_INFOLOG(
        log_virtio_pci, "virtio-pci {}: type {}, features {:#x}, {} queue(s) of {} entries", addr_,
        opts_.device_type, features_, opts_.num_queues, queues_made_ ? queues_[0].vq.size() : 0);
    return {};
}

Result<void> PciDevice::read_config(uint32_t offset, void* out, uint32_t len) {
    if (!device_.found)
        return fail(Errc::not_supported, "device has no device-specific configuration window");
    if (uint64_t{offset} + len > device_.length)
        return fail(Errc::out_of_range, fmt::format("config [{}, +{}) is beyond the {}-byte window",
                                                    offset, len, device_.length));
    auto* o = static_cast<uint8_t*>(out);
    const uint32_t gen_reg = static_cast<uint32_t>(common_.offset + cc::kConfigGeneration);
    for (int attempt = 0; attempt < 100; ++attempt) {
        const uint8_t gen = common_.bar.read8(gen_reg);
        uint32_t i = 0;
        while (i < len) {
            const uint64_t at = device_.offset + offset + i;
            if (at % 4 == 0 && len - i >= 4) {
                const uint32_t v = device_.bar.read32(at);
                std::memcpy(o + i, &v, 4);
                i += 4;
            } else {
                o[i] = device_.bar.read8(at);
                i += 1;
            }
        }
        if (common_.bar.read8(gen_reg) == gen) return {};
    }
    return fail(Errc::io_error, "device configuration keeps changing while read");
}

PciDevice::~PciDevice() {
    bool confirmed = true;
    if (status_touched_ && fn_ && fn_->attached() && !fn_->removed())
        confirmed = reset();
    else if (status_touched_)
        confirmed = false;
    if (!confirmed)
        STRATA_ERRLOG(log_virtio_pci,
                      "virtio-pci {}: device did not confirm its reset; its queue memory is "
                      "abandoned, not freed",
                      addr_);
    for (uint16_t i = 0; i < queues_made_; ++i) {
        if (confirmed)
            env::dma_free(queues_[i].mem);
        else
            env::dma_abandon(queues_[i].mem);
    }
    if (fn_) (void)fn_->detach();
}

}  // namespace

Result<std::unique_ptr<Device>> open_pci(const PciOptions& options) {
    auto d = std::make_unique<PciDevice>(options);
    if (auto r = d->open(); !r) return r.error();
    return std::unique_ptr<Device>(std::move(d));
}

}  // namespace strata::virtio
