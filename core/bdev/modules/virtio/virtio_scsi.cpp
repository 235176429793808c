// virtio_scsi: a virtio-scsi controller's disks as bdevs, as SPDK's bdev_virtio_scsi.c does.
// Attach scans targets 0..max_target on LUN 0 (INQUIRY; direct-access devices only; READ
// CAPACITY(16), READ CAPACITY(10) where 16 is refused) with commands on the first request queue
// (index 2), synchronously on the control path; each disk becomes a bdev "<name>t<target>".
// I/O: READ(16), WRITE(16), SYNCHRONIZE CACHE(10), UNMAP (when READ CAPACITY(16) says LBPME);
// reset: a LOGICAL UNIT RESET on the control queue (index 0), sent from the Thread that attached.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/virtio/pci.h>
#include <strata/virtio/spec/scsi.h>
#include <strata/virtio/user.h>

#include <strata/runtime/io_device.h>  // unregister_io_device_then

#include "virtio/channel.h"
#include "virtio/scsi_reply.h"
#include "virtio/virtio.h"

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_virtio_scsi);

const Module kVirtioScsiModule{"virtio_scsi", nullptr};

namespace {

namespace vspec = virtio::spec;
namespace vsc = virtio::spec::scsi;

constexpr uint32_t kMaxTransferBytes = 128 * 1024;  // larger I/O is split by the layer
constexpr uint16_t kMaxIndirect = 64;
constexpr size_t kSlotBytes = 256;
constexpr size_t kScanBufBytes = 4096;
using virtio_channel::kReapBatch;
constexpr uint32_t kMaxTargets = 64;  // SPDK's BDEV_VIRTIO_MAX_TARGET
constexpr auto kScanTimeout = std::chrono::seconds(5);

// Per request slot, in the queue's shared memory.
#pragma pack(push, 1)
struct SlotHeader {
    vsc::ReqCmd req;
    vsc::RespCmd resp;
    uint8_t unmap[24];  // UNMAP parameter list: header and one block descriptor
};
#pragma pack(pop)
static_assert(sizeof(SlotHeader) <= kSlotBytes);

struct IoCtx {
    uint16_t slot;
    bool bounced;
    uint8_t retries;  // UNIT ATTENTIONs answered by sending the command again
};
constexpr uint8_t kMaxUnitAttentionRetries = 3;
static_assert(sizeof(IoCtx) <= kModuleIoContextBytes);

// Per request queue: the slots, the scan buffer, then a bounce buffer per slot (virtio-user).
constexpr virtio_channel::SlotLayout kSlotLayout{kSlotBytes, kScanBufBytes, kMaxTransferBytes};

size_t slot_area_bytes(uint16_t slots) {
    return kSlotLayout.slot_area(slots);
}

void put_be16(uint8_t* p, uint16_t v) {
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}
void put_be32(uint8_t* p, uint32_t v) {
    put_be16(p, uint16_t(v >> 16));
    put_be16(p + 2, uint16_t(v));
}
void put_be64(uint8_t* p, uint64_t v) {
    put_be32(p, uint32_t(v >> 32));
    put_be32(p + 4, uint32_t(v));
}

class ScsiCtrlr;
class ScsiDisk;

struct Ctrlrs {
    std::map<std::string, std::unique_ptr<ScsiCtrlr>, std::less<>> by_name;
};

// A Thread's channel: one request queue, shared by every disk of the controller (channel.h).
class ScsiChannel final : public virtio_channel::QueueChannel<ScsiChannel, ScsiCtrlr> {
public:
    ScsiChannel(ScsiCtrlr& c, runtime::Thread& thread);
    void submit(ScsiDisk& disk, BdevIo& io) noexcept;

private:
    friend class virtio_channel::QueueChannel<ScsiChannel, ScsiCtrlr>;
    bool start(BdevIo& io) noexcept;  // false: no room, leave it queued
    void finish(BdevIo& io, uint32_t len) noexcept;
    static uint16_t slot_of(BdevIo& io) noexcept { return io.module_ctx<IoCtx>()->slot; }
    void no_queue() noexcept {}
    void got_queue(int) noexcept {}
    SlotHeader* header(uint16_t slot) noexcept {
        return reinterpret_cast<SlotHeader*>(slot_memory(slot));
    }

    bool error_logged_ = false;
};

class ScsiIoDevice final : public runtime::IoDevice {
public:
    ScsiIoDevice(ScsiCtrlr& c, const std::string& name)
        : IoDevice("bdev_virtio_scsi:" + name), ctrl_(c) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override {
        return std::make_unique<ScsiChannel>(ctrl_, thread);
    }

private:
    ScsiCtrlr& ctrl_;
};

struct TargetInfo {
    uint8_t target;
    std::string bdev_name;
    vscsi::Inquiry inquiry;
    vscsi::Capacity capacity;
};

// One controller: the device, its request queues handed to Threads, its disks, and the control
// queue (TMF) used from the Thread that attached it.
class ScsiCtrlr {
public:
    ScsiCtrlr(std::unique_ptr<virtio::Device> dev, VirtioAttachOptions o, Ctrlrs& ctrlrs)
        : dev_(std::move(dev)),
          opts_(std::move(o)),
          ctrlrs_(ctrlrs),
          nreq_(uint16_t(dev_->num_queues() - vsc::kFirstRequestQueue)),
          queue_taken_(new std::atomic<bool>[nreq_]),
          owner_(runtime::current_thread()),
          io_dev_(*this, opts_.name) {
        for (uint16_t i = 0; i < nreq_; ++i) queue_taken_[i] = false;
    }
    ~ScsiCtrlr() {
        if (ctl_poller_ != nullptr && runtime::current_thread() == owner_)
            owner_->unregister_poller(ctl_poller_);
    }

    const std::string& name() const noexcept { return opts_.name; }
    virtio::Device& device() noexcept { return *dev_; }
    const VirtioAttachOptions& options() const noexcept { return opts_; }
    ScsiIoDevice& io_device() noexcept { return io_dev_; }
    std::vector<TargetInfo>& targets() noexcept { return targets_; }
    bool is_gone() const noexcept { return gone_.load(std::memory_order_relaxed); }

    // A request queue (its virtio index) for a channel, or -1. Any OS thread.
    int take_queue() noexcept {
        for (uint16_t i = 0; i < nreq_; ++i) {
            bool expected = false;
            if (queue_taken_[i].compare_exchange_strong(expected, true, std::memory_order_acquire))
                return vsc::kFirstRequestQueue + i;
        }
        return -1;
    }
    void put_queue(int q) noexcept {
        queue_taken_[q - vsc::kFirstRequestQueue].store(false, std::memory_order_release);
    }

    // The scan: LUN 0 of targets 0..max_target, on the first request queue before any channel.
    Result<void> scan();

    // A disk's bdev went (destruct): when it was the last, the controller goes too.
    void disk_gone(const std::string& bdev_name, std::function<void()> done);
    // Detach: every disk's bdev is unregistered; done once the controller is gone.
    void detach(std::function<void(Result<void>)> done);
    void device_gone() noexcept;

    // Reset of one target: LOGICAL UNIT RESET on the control queue; io completes on its Thread.
    void reset(uint8_t target, BdevIo& io) noexcept;

    nlohmann::json virtio_json() const {
        nlohmann::json v = {{"vq_count", dev_->num_queues()}, {"vq_size", dev_->queue(0).size()}};
        if (std::string_view(dev_->transport_name()) == "pci") {
            v["type"] = "pci";
            v["pci_address"] = dev_->address();
        } else {
            v["type"] = "user";
            v["socket"] = dev_->address();
        }
        return v;
    }

    bool io_device_registered = false;

private:
    struct ScanCmd {
        uint8_t cdb[16] = {};
        uint32_t alloc = 0;  // data-in bytes asked for
    };
    Result<vscsi::Reply> run_sync(uint8_t target, const ScanCmd& cmd, const char* what);
    Result<std::optional<TargetInfo>> scan_target(uint8_t target);
    static runtime::PollStatus poll_control(void* self);
    void finish_controller(std::function<void()> done);

    std::unique_ptr<virtio::Device> dev_;
    VirtioAttachOptions opts_;
    Ctrlrs& ctrlrs_;
    uint16_t nreq_;
    std::unique_ptr<std::atomic<bool>[]> queue_taken_;
    std::atomic<bool> gone_{false};
    runtime::Thread* owner_;
    ScsiIoDevice io_dev_;
    std::vector<TargetInfo> targets_;
    std::function<void(Result<void>)> detach_done_;
    // Control queue: TMFs in flight (owner Thread only).
    runtime::Poller* ctl_poller_ = nullptr;
    struct Tmf {
        BdevIo* io = nullptr;
        runtime::Thread* thread = nullptr;
    };
    std::vector<Tmf> tmf_;  // by slot
    std::vector<uint16_t> tmf_free_;
};

class ScsiDisk final : public Bdev {
public:
    ScsiDisk(Properties p, ScsiCtrlr& c, const TargetInfo& t)
        : Bdev(kVirtioScsiModule, std::move(p)),
          ctrl_(c),
          target_(t.target),
          unmap_(t.capacity.lbpme) {}

    uint8_t target() const noexcept { return target_; }
    ScsiCtrlr& ctrl() noexcept { return ctrl_; }
    bool supports(IoType t) const noexcept override {
        switch (t) {
            case IoType::read:
            case IoType::write:
            case IoType::flush:
            case IoType::reset:
                return true;
            case IoType::unmap:
                return unmap_;
            default:
                return false;
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return ctrl_.io_device(); }
    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        static_cast<ScsiChannel&>(ch).submit(*this, io);
    }
    void destruct(std::function<void()> done) override { ctrl_.disk_gone(name(), std::move(done)); }
    void info_json(nlohmann::json& out) const override {
        out["virtio_scsi"] = {{"controller", ctrl_.name()}, {"target", target_}, {"lun", 0}};
        out["virtio"] = ctrl_.virtio_json();
    }
    // SPDK: targets are found by the scan, so the controller's entry (module config) is what
    // is saved; config_json is written once, by the controller's first disk.
    void config_json(nlohmann::json& out) const override;

private:
    ScsiCtrlr& ctrl_;
    uint8_t target_;
    bool unmap_;
};

void ScsiDisk::config_json(nlohmann::json& out) const {
    const auto& t = ctrl_.targets();
    if (t.empty() || t.front().bdev_name != name()) return;
    const VirtioAttachOptions& o = ctrl_.options();
    out = {{"method", "bdev_virtio_attach_controller"},
           {"params",
            {{"name", o.name},
             {"trtype", o.trtype},
             {"traddr", o.traddr},
             {"dev_type", "scsi"},
             {"vq_count", o.vq_count},
             {"vq_size", o.vq_size}}}};
}

Result<vscsi::Reply> ScsiCtrlr::run_sync(uint8_t target, const ScanCmd& cmd, const char* what) {
    const uint16_t q = vsc::kFirstRequestQueue;
    virtio::Virtqueue& vq = dev_->queue(q);
    auto* extra = static_cast<uint8_t*>(dev_->queue_extra(q));
    auto* h = reinterpret_cast<SlotHeader*>(extra);
    uint8_t* buf = extra + slot_area_bytes(vq.size());
    std::memset(h, 0, sizeof *h);
    std::memset(buf, 0, kScanBufBytes);
    vsc::encode_lun(target, 0, h->req.lun);
    h->req.id = 1;
    std::memcpy(h->req.cdb, cmd.cdb, sizeof cmd.cdb);
    const uint64_t base = dev_->device_address(extra, slot_area_bytes(vq.size()) + kScanBufBytes);
    STRATA_ASSERT(base != virtio::kNoDeviceAddress);
    virtio::VqBuffer bufs[3] = {{base + offsetof(SlotHeader, req), sizeof h->req, false},
                                {base + offsetof(SlotHeader, resp), sizeof h->resp, true},
                                {base + slot_area_bytes(vq.size()), cmd.alloc, true}};
    int token = 0;
    auto fail = [&](Errc c, std::string why) {
        return Error(
            c, fmt::format("virtio_scsi {}: target {}: {}: {}", opts_.name, target, what, why));
    };
    if (Status s = vq.enqueue({bufs, size_t(cmd.alloc != 0 ? 3 : 2)}, &token); !s.ok())
        return fail(Errc::io_error, "could not queue the command");
    if (vq.flush()) dev_->notify(q);
    const auto deadline = std::chrono::steady_clock::now() + kScanTimeout;
    virtio::VqCompletion cpl[1];
    for (;;) {
        const size_t n = vq.poll(cpl);
        if (n == 1) break;
        if (vq.broken()) return fail(Errc::protocol_error, "the device broke the request queue");
        if (dev_->gone()) return fail(Errc::io_error, "the device is gone");
        if (std::chrono::steady_clock::now() > deadline) {
            vq.stop("scan command timed out");
            return fail(Errc::timeout, "no reply in 5 s");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (cpl[0].cookie != &token) return fail(Errc::protocol_error, "reply to an unknown request");
    return vscsi::read_reply(h->resp, cpl[0].len, cmd.alloc);
}

Result<std::optional<TargetInfo>> ScsiCtrlr::scan_target(uint8_t target) {
    const uint8_t* data = static_cast<uint8_t*>(dev_->queue_extra(vsc::kFirstRequestQueue)) +
                          slot_area_bytes(dev_->queue(vsc::kFirstRequestQueue).size());
    auto fail = [&](const char* what, const vscsi::Reply& r) {
        return Error(
            r.code == Errc::protocol_error ? Errc::protocol_error : Errc::io_error,
            fmt::format("virtio_scsi {}: target {}: {}: {}", opts_.name, target, what, r.why));
    };
    // Each command is tried again after a UNIT ATTENTION (a fresh device reports one).
    auto run = [&](const ScanCmd& c, const char* what) -> Result<vscsi::Reply> {
        for (int attempt = 0;; ++attempt) {
            auto r = run_sync(target, c, what);
            if (!r) return r;
            if (attempt < 3 && r->code != Errc::ok && r->sense.valid &&
                r->sense.key == vscsi::kSenseUnitAttention)
                continue;
            return r;
        }
    };
    ScanCmd inq;
    inq.cdb[0] = 0x12;
    inq.alloc = 96;
    put_be16(inq.cdb + 3, uint16_t(inq.alloc));
    auto r = run(inq, "INQUIRY");
    if (!r) return r.error();
    // No target there: BAD_TARGET (or INCORRECT_LUN) is the normal answer.
    if (r->code != Errc::ok &&
        (r->response == vsc::kSBadTarget || r->response == vsc::kSIncorrectLun))
        return std::optional<TargetInfo>{};
    if (r->code != Errc::ok) return fail("INQUIRY", *r);
    auto inquiry = vscsi::parse_inquiry(data, r->data_in);
    if (!inquiry)
        return Error(inquiry.code(), fmt::format("virtio_scsi {}: target {}: {}", opts_.name,
                                                 target, inquiry.error().message()));
    if (inquiry->qualifier != 0 || inquiry->device_type != 0) {
        STRATA_INFOLOG(log_bdev_virtio_scsi,
                       "virtio_scsi {}: target {}: peripheral qualifier {} type {:#x}, not a "
                       "connected disk: skipped",
                       opts_.name, target, inquiry->qualifier, inquiry->device_type);
        return std::optional<TargetInfo>{};
    }
    TargetInfo t;
    t.target = target;
    t.inquiry = std::move(*inquiry);
    ScanCmd rc16;
    rc16.cdb[0] = 0x9e;
    rc16.cdb[1] = 0x10;
    rc16.alloc = 32;
    put_be32(rc16.cdb + 10, rc16.alloc);
    r = run(rc16, "READ CAPACITY(16)");
    if (!r) return r.error();
    if (r->code == Errc::ok) {
        auto c = vscsi::parse_read_capacity16(data, r->data_in);
        if (!c)
            return Error(c.code(), fmt::format("virtio_scsi {}: target {}: {}", opts_.name, target,
                                               c.error().message()));
        t.capacity = *c;
        return std::optional<TargetInfo>(std::move(t));
    }
    if (r->code != Errc::not_supported && r->code != Errc::invalid_argument)
        return fail("READ CAPACITY(16)", *r);
    ScanCmd rc10;
    rc10.cdb[0] = 0x25;
    rc10.alloc = 8;
    r = run(rc10, "READ CAPACITY(10)");
    if (!r) return r.error();
    if (r->code != Errc::ok) return fail("READ CAPACITY(10)", *r);
    auto c = vscsi::parse_read_capacity10(data, r->data_in);
    if (!c)
        return Error(c.code(), fmt::format("virtio_scsi {}: target {}: {}", opts_.name, target,
                                           c.error().message()));
    t.capacity = *c;
    return std::optional<TargetInfo>(std::move(t));
}

Result<void> ScsiCtrlr::scan() {
    vsc::Config cfg{};
    uint32_t max_target = 7;
    if (auto r = dev_->read_config(0, &cfg, sizeof cfg); r)
        max_target = std::min<uint32_t>(cfg.max_target, kMaxTargets - 1);
    else
        STRATA_INFOLOG(log_bdev_virtio_scsi,
                       "virtio_scsi {}: no configuration space ({}): scanning targets 0-7",
                       opts_.name, r.error().message());
    for (uint32_t t = 0; t <= max_target; ++t) {
        auto r = scan_target(uint8_t(t));
        if (!r) return r.error();
        if (r->has_value()) targets_.push_back(std::move(**r));
    }
    return {};
}

void ScsiCtrlr::disk_gone(const std::string& bdev_name, std::function<void()> done) {
    std::erase_if(targets_, [&](const TargetInfo& t) { return t.bdev_name == bdev_name; });
    if (!targets_.empty()) {
        done();
        return;
    }
    finish_controller(std::move(done));
}

// The last disk went: the controller leaves the Host's list and is destroyed (device reset)
// once every channel is gone.
void ScsiCtrlr::finish_controller(std::function<void()> done) {
    auto node = ctrlrs_.by_name.extract(opts_.name);
    std::shared_ptr<ScsiCtrlr> self(node.empty() ? nullptr : node.mapped().release());
    auto last = [self, done = std::move(done), thr = owner_]() mutable {
        if (self && self->ctl_poller_ != nullptr && runtime::current_thread() == thr)
            thr->unregister_poller(self->ctl_poller_);
        if (done) done();
        if (self && self->detach_done_) {
            auto d = std::move(self->detach_done_);
            d(Result<void>{});
        }
        // Deleted from the Thread's queue, outside the io device's own callback.
        if (thr != nullptr) (void)thr->post([self] {});
    };
    if (io_device_registered) {
        io_device_registered = false;
        unregister_io_device_then(io_dev_, std::move(last));
    } else {
        last();
    }
}

void ScsiCtrlr::detach(std::function<void(Result<void>)> done) {
    if (targets_.empty()) {
        detach_done_ = std::move(done);
        finish_controller(nullptr);
        return;
    }
    detach_done_ = std::move(done);
    std::vector<std::string> names;
    for (const auto& t : targets_) names.push_back(t.bdev_name);
    for (const auto& n : names)
        unregister_bdev(n, [n, c = opts_.name](Result<void> r) {
            if (!r)
                STRATA_ERRLOG(log_bdev_virtio_scsi, "virtio_scsi {}: removing {} failed: {}", c, n,
                              r.error().message());
        });
}

void ScsiCtrlr::device_gone() noexcept {
    if (gone_.exchange(true)) return;
    STRATA_ERRLOG(log_bdev_virtio_scsi,
                  "virtio_scsi {}: device gone ({} {}); failing its I/O and removing its bdevs",
                  opts_.name, dev_->transport_name(), dev_->address());
    if (owner_ == nullptr) return;
    std::vector<std::string> names;
    for (const auto& t : targets_) names.push_back(t.bdev_name);
    (void)owner_->post([names, c = opts_.name] {
        for (const auto& n : names)
            unregister_bdev(n, [n, c](Result<void> r) {
                if (!r && r.code() != Errc::not_found)
                    STRATA_ERRLOG(log_bdev_virtio_scsi, "virtio_scsi {}: removing {} failed: {}", c,
                                  n, r.error().message());
            });
    });
}

void ScsiCtrlr::reset(uint8_t target, BdevIo& io) noexcept {
    runtime::Thread* from = &io.thread();
    auto complete = [from, &io](Errc code) {
        if (runtime::current_thread() == from)
            io.complete(code);
        else
            (void)from->post([&io, code] { io.complete(code); });
    };
    if (gone_ || owner_ == nullptr) {
        complete(Errc::io_error);
        return;
    }
    const Status s = owner_->post([this, target, &io, from, complete] {
        virtio::Virtqueue& vq = dev_->queue(vsc::kControlQueue);
        if (ctl_poller_ == nullptr) {
            tmf_.assign(vq.size(), Tmf{});
            tmf_free_.clear();
            for (uint16_t i = vq.size(); i > 0; --i) tmf_free_.push_back(uint16_t(i - 1));
            ctl_poller_ =
                owner_->register_poller(&ScsiCtrlr::poll_control, this, "bdev_virtio_scsi_ctrlq");
        }
        if (tmf_free_.empty() || vq.broken() || gone_) {
            complete(vq.broken() || gone_ ? Errc::io_error : Errc::busy);
            return;
        }
        const uint16_t slot = tmf_free_.back();
        auto* extra = static_cast<uint8_t*>(dev_->queue_extra(vsc::kControlQueue));
        auto* req = reinterpret_cast<vsc::CtrlTmfReq*>(extra + kSlotBytes * slot);
        auto* resp = reinterpret_cast<vsc::CtrlTmfResp*>(extra + kSlotBytes * slot + 64);
        std::memset(req, 0, sizeof *req);
        req->type = vsc::kTTmf;
        req->subtype = vsc::kTmfLogicalUnitReset;
        vsc::encode_lun(target, 0, req->lun);
        resp->response = 0xff;
        const uint64_t a = dev_->device_address(extra + kSlotBytes * slot, kSlotBytes);
        virtio::VqBuffer bufs[2] = {{a, sizeof *req, false}, {a + 64, sizeof *resp, true}};
        if (!vq.enqueue(bufs, &tmf_[slot]).ok()) {
            complete(Errc::io_error);
            return;
        }
        tmf_free_.pop_back();
        tmf_[slot] = Tmf{&io, from};
        if (vq.flush()) dev_->notify(vsc::kControlQueue);
    });
    if (!s.ok()) complete(Errc::io_error);
}

runtime::PollStatus ScsiCtrlr::poll_control(void* self) {
    auto* c = static_cast<ScsiCtrlr*>(self);
    virtio::Virtqueue& vq = c->dev_->queue(vsc::kControlQueue);
    if (vq.in_flight() == 0) return runtime::PollStatus::idle;
    auto* extra = static_cast<uint8_t*>(c->dev_->queue_extra(vsc::kControlQueue));
    auto done = [c](Tmf* t, Errc code) {
        const auto slot = uint16_t(t - c->tmf_.data());
        BdevIo* io = t->io;
        runtime::Thread* thr = t->thread;
        *t = Tmf{};
        c->tmf_free_.push_back(slot);
        if (thr == runtime::current_thread())
            io->complete(code);
        else
            (void)thr->post([io, code] { io->complete(code); });
    };
    virtio::VqCompletion cpl[8];
    size_t n = vq.poll(cpl);
    for (size_t i = 0; i < n; ++i) {
        auto* t = static_cast<Tmf*>(cpl[i].cookie);
        const auto slot = size_t(t - c->tmf_.data());
        const uint8_t r =
            reinterpret_cast<vsc::CtrlTmfResp*>(extra + kSlotBytes * slot + 64)->response;
        const bool ok = cpl[i].len >= 1 && (r == vsc::kSOk || r == vsc::kSFunctionSucceeded);
        if (!ok)
            STRATA_ERRLOG(log_bdev_virtio_scsi,
                          "virtio_scsi {}: LOGICAL UNIT RESET: response {} ({} bytes)",
                          c->opts_.name, r, cpl[i].len);
        done(t, ok ? Errc::ok : Errc::io_error);
    }
    if (vq.broken() || c->is_gone()) {
        if (!vq.broken()) vq.stop("device gone");
        while ((n = vq.take_in_flight(cpl)) != 0)
            for (size_t i = 0; i < n; ++i) done(static_cast<Tmf*>(cpl[i].cookie), Errc::io_error);
    }
    const bool waiting = c->owner_->scheduler().simulated() && vq.in_flight() != 0;
    return n != 0 || waiting ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

ScsiChannel::ScsiChannel(ScsiCtrlr& c, runtime::Thread& thread)
    : QueueChannel(c, thread, vsc::kFirstRequestQueue, kSlotLayout, log_bdev_virtio_scsi,
                   "virtio_scsi", "bdev_virtio_scsi", "bdev_virtio_scsi_gone") {
    (void)attach_queue();
}

void ScsiChannel::submit(ScsiDisk& disk, BdevIo& io) noexcept {
    switch (io.type()) {
        case IoType::read:
        case IoType::write:
        case IoType::flush:
        case IoType::unmap:
            break;
        case IoType::reset:
            owner_.reset(disk.target(), io);
            return;
        default:
            io.complete(Errc::not_supported);
            return;
    }
    io.module_ctx<IoCtx>()->retries = 0;
    start_or_queue(io);
}

bool ScsiChannel::start(BdevIo& io) noexcept {
    if (vq_->broken() || owner_.is_gone()) {
        io.complete(Errc::io_error);
        return true;
    }
    if (free_slots_.empty()) return false;
    auto& disk = static_cast<ScsiDisk&>(io.bdev());
    const uint16_t slot = free_slots_.back();
    SlotHeader* h = header(slot);
    std::memset(&h->req, 0, sizeof h->req);
    vsc::encode_lun(disk.target(), 0, h->req.lun);
    h->req.id = reinterpret_cast<uintptr_t>(&io);
    h->resp.response = 0xff;
    h->resp.status = 0xff;
    uint8_t* cdb = h->req.cdb;
    const uint64_t lba = io.offset_blocks();
    const auto blocks = uint32_t(io.num_blocks());
    const uint64_t h_dev = slot_device_address(slot);
    virtio::VqBuffer bufs[kMaxIoVecs + 4];  // request, response, unmap list or data, spare
    size_t n = 0;
    bufs[n++] = {h_dev + offsetof(SlotHeader, req), sizeof h->req, false};
    const bool is_read = io.type() == IoType::read;
    bool bounced = false;
    size_t resp_at = 0;  // where the response goes in the chain (after the data-out)
    switch (io.type()) {
        case IoType::read:
        case IoType::write:
            cdb[0] = is_read ? 0x88 : 0x8a;
            put_be64(cdb + 2, lba);
            put_be32(cdb + 10, blocks);
            break;
        case IoType::flush:
            cdb[0] = 0x35;  // SYNCHRONIZE CACHE(10): the whole medium
            break;
        case IoType::unmap: {
            cdb[0] = 0x42;
            put_be16(cdb + 7, sizeof h->unmap);
            std::memset(h->unmap, 0, sizeof h->unmap);
            put_be16(h->unmap, sizeof h->unmap - 2);
            put_be16(h->unmap + 2, 16);
            put_be64(h->unmap + 8, lba);
            put_be32(h->unmap + 16, blocks);
            bufs[n++] = {h_dev + offsetof(SlotHeader, unmap), sizeof h->unmap, false};
            break;
        }
        default:
            break;
    }
    if (!is_read) resp_at = n;
    if (io.type() == IoType::read || io.type() == IoType::write) {
        const size_t first = n + (is_read ? 1 : 0);  // reads: the response goes first
        n = first;
        const auto iovs = io.iovs();
        const uint64_t len = io.length_bytes();
        uint64_t left = len;
        for (const iovec& v : iovs) {
            if (left == 0) break;
            const size_t l = std::min<uint64_t>(v.iov_len, left);
            const uint64_t a = dev_.device_address(v.iov_base, l);
            if (a == virtio::kNoDeviceAddress || n + 2 >= std::size(bufs)) {
                bounced = true;
                break;
            }
            bufs[n++] = {a, uint32_t(l), is_read};
            left -= l;
        }
        if (bounced) {
            if (len > kMaxTransferBytes || !can_bounce_) {
                if (!can_bounce_ && !bounce_logged_) {
                    bounce_logged_ = true;
                    STRATA_ERRLOG(log_bdev_virtio_scsi,
                                  "virtio_scsi {}: a data buffer is not env DMA memory the "
                                  "device can reach; such I/O fails (invalid_argument)",
                                  owner_.name());
                }
                io.complete(Errc::invalid_argument);
                return true;
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
            n = first;
            bufs[n++] = {dev_.device_address(bb, len), uint32_t(len), is_read};
        }
        if (is_read) resp_at = first - 1;
    }
    const virtio::VqBuffer resp{h_dev + offsetof(SlotHeader, resp), sizeof h->resp, true};
    if (is_read) {
        bufs[resp_at] = resp;
    } else {
        bufs[n++] = resp;
    }
    const Status s = vq_->enqueue({bufs, n}, &io);
    if (s.code() == Errc::no_space) return false;
    if (!s.ok()) {
        io.complete(Errc::io_error);
        return true;
    }
    free_slots_.pop_back();
    io.module_ctx<IoCtx>()->slot = slot;
    io.module_ctx<IoCtx>()->bounced = bounced;
    return true;
}

void ScsiChannel::finish(BdevIo& io, uint32_t len) noexcept {
    const IoCtx ctx = *io.module_ctx<IoCtx>();
    const bool is_read = io.type() == IoType::read;
    const bool has_data = is_read || io.type() == IoType::write;
    const uint32_t data_len = has_data ? uint32_t(io.length_bytes()) : 0;
    // Reads: the used length counts the data-in; writes: only the response.
    vscsi::Reply r = vscsi::read_reply(header(ctx.slot)->resp, len, is_read ? data_len : 0);
    if (r.code == Errc::ok && has_data && header(ctx.slot)->resp.residual != 0) {
        r.code = Errc::io_error;
        r.why = fmt::format("short transfer (residual {} of {} bytes)",
                            header(ctx.slot)->resp.residual, data_len);
    }
    if (r.code != Errc::ok && r.sense.valid && r.sense.key == vscsi::kSenseUnitAttention &&
        ctx.retries < kMaxUnitAttentionRetries) {
        // A UNIT ATTENTION (e.g. after a reset) reports an event, not a failure of this
        // command: send it again, ahead of what waits.
        ++io.module_ctx<IoCtx>()->retries;
        free_slots_.push_back(ctx.slot);
        queued_.push_front(io);
        return;
    }
    if (r.code == Errc::ok && ctx.bounced && is_read) {
        const uint8_t* bb = bounce(ctx.slot);
        size_t off = 0;
        for (const iovec& v : io.iovs()) {
            const size_t l = std::min<uint64_t>(v.iov_len, data_len - off);
            std::memcpy(v.iov_base, bb + off, l);
            off += l;
            if (off == data_len) break;
        }
    }
    if (r.code != Errc::ok && !error_logged_) {
        error_logged_ = true;  // once per channel: a failing device must not flood the log
        STRATA_ERRLOG(log_bdev_virtio_scsi, "virtio_scsi {}: {} of {} blocks at {} failed: {}",
                      io.bdev().name(), io_type_name(io.type()), io.num_blocks(),
                      io.offset_blocks(), r.why);
    }
    free_slots_.push_back(ctx.slot);
    io.complete(r.code);
}

}  // namespace

Result<std::vector<std::string>> virtio_scsi_attach(const VirtioAttachOptions& o) {
    if (o.packed_ring)
        return Error(Errc::not_supported,
                     fmt::format("virtio controller {}: packed_ring is supported for dev_type blk "
                                 "only (virtio_scsi on packed rings is planned)",
                                 o.name));
    const uint16_t nq = uint16_t(vsc::kFirstRequestQueue + o.vq_count);
    Result<std::unique_ptr<virtio::Device>> dev = Error(Errc::invalid_argument, "trtype");
    if (o.trtype == "pci") {
        auto addr = env::PciAddress::parse(o.traddr);
        if (!addr) return addr.error();
        virtio::PciOptions po;
        po.address = *addr;
        po.device_type = vspec::kDeviceTypeScsi;
        po.num_queues = nq;
        po.queue_size = uint16_t(o.vq_size);
        po.max_indirect = kMaxIndirect;
        po.device_features = 0;
        po.queue_extra_bytes = slot_area_bytes(po.queue_size) + kScanBufBytes;
        dev = virtio::open_pci(po);
    } else {
        virtio::UserOptions uo;
        uo.socket_path = o.traddr;
        uo.device_type = vspec::kDeviceTypeScsi;
        uo.num_queues = nq;
        uo.queue_size = uint16_t(o.vq_size);
        uo.max_indirect = kMaxIndirect;
        uo.device_features = 0;
        uo.queue_extra_bytes = slot_area_bytes(uo.queue_size) + kScanBufBytes +
                               size_t{kMaxTransferBytes} * uo.queue_size;
        dev = virtio::open_user(uo);
    }
    if (!dev) return dev.error();
    auto& ctrlrs = runtime::current_host().get<Ctrlrs>();
    auto ctrl = std::make_unique<ScsiCtrlr>(std::move(*dev), o, ctrlrs);
    if (auto r = ctrl->scan(); !r) return r.error();
    ScsiCtrlr& c = *ctrl;
    ctrlrs.by_name[o.name] = std::move(ctrl);
    // Channels reach the queues through the controller's io device, shared by its disks.
    if (!c.targets().empty()) {
        runtime::register_io_device(c.io_device());
        c.io_device_registered = true;
    }
    std::vector<std::string> names;
    const uint16_t chain = c.device().queue(vsc::kFirstRequestQueue).max_chain();
    std::vector<TargetInfo> found = c.targets();
    c.targets().clear();
    for (TargetInfo& t : found) {
        Bdev::Properties p;
        p.name = fmt::format("{}t{}", o.name, t.target);
        p.product_name = "Virtio SCSI Disk";
        p.block_size = t.capacity.block_size;
        p.num_blocks = t.capacity.num_blocks;
        p.write_cache = true;
        p.needs_dma_memory = std::string_view(c.device().transport_name()) == "pci";
        p.max_io_blocks = kMaxTransferBytes / t.capacity.block_size;
        p.max_unmap_blocks = UINT32_MAX;
        p.max_num_segments = std::min<uint32_t>(chain > 3 ? chain - 3u : 1u, kMaxIoVecs);
        t.bdev_name = p.name;
        c.targets().push_back(t);
        auto reg = register_bdev(std::make_unique<ScsiDisk>(std::move(p), c, t));
        if (!reg) {
            STRATA_ERRLOG(log_bdev_virtio_scsi, "virtio_scsi {}: target {}: bdev {}: {}", o.name,
                          t.target, t.bdev_name, reg.error().message());
            c.targets().pop_back();
            continue;
        }
        STRATA_INFOLOG(
            log_bdev_virtio_scsi, "virtio_scsi {}: target {} ({} {}): bdev {}, {} blocks of {}{}",
            o.name, t.target, t.inquiry.vendor, t.inquiry.product, t.bdev_name,
            t.capacity.num_blocks, t.capacity.block_size, t.capacity.lbpme ? ", unmap" : "");
        names.push_back(t.bdev_name);
    }
    if (c.targets().empty() && c.io_device_registered) {
        c.io_device_registered = false;
        unregister_io_device_then(c.io_device(), [] {});
    }
    return names;
}

bool virtio_scsi_exists(const std::string& name) {
    return runtime::current_host().get<Ctrlrs>().by_name.count(name) != 0;
}

bool virtio_scsi_detach(const std::string& name, std::function<void(Result<void>)> done) {
    auto& ctrlrs = runtime::current_host().get<Ctrlrs>();
    auto it = ctrlrs.by_name.find(name);
    if (it == ctrlrs.by_name.end()) return false;
    it->second->detach(std::move(done));
    return true;
}

nlohmann::json virtio_scsi_devices() {
    auto out = nlohmann::json::array();
    for (const auto& [name, c] : runtime::current_host().get<Ctrlrs>().by_name)
        out.push_back({{"name", name}, {"virtio", c->virtio_json()}});
    return out;
}

}  // namespace strata::bdev
