// vhost-scsi over core/scsi (scsi.h).
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/bdev/bdev.h>
#include <strata/runtime/thread.h>
#include <strata/scsi/scsi.h>
#include <strata/vhost/scsi.h>
#include <strata/virtio/spec/scsi.h>

#include "iov.h"

namespace strata::vhost {

STRATA_LOG_COMPONENT(vhost_scsi);

class ScsiDevice;

namespace {

namespace vs = virtio::spec;
namespace vsc = virtio::spec::scsi;
using internal::gather;
using internal::scatter;
using internal::slice;

constexpr uint32_t kMaxIov = kScsiMaxSegments + 2;  // + request and response headers
constexpr size_t kMaxPendingEvents = 16;

struct ScsiQueue;

struct Req {
    Chain chain;
    iovec iov[kMaxIov];
    iovec data[kMaxIov];
    scsi::Task task;
    scsi::MgmtTask mgmt;
    ScsiQueue* sq = nullptr;
    uint16_t head = 0;
    bool busy = false;
    uint32_t target = 0;
};

struct ScsiQueue {
    Session* session = nullptr;
    Queue* queue = nullptr;
    ScsiDevice* dev = nullptr;
    std::unique_ptr<Req[]> reqs;
};

struct Target {
    scsi::Device* dev = nullptr;
    std::string device_name;
    std::string bdev;
    bool removing = false;
    // A read-only descriptor of LUN 0's bdev, open only to hear of its hot-removal.
    std::unique_ptr<bdev::Desc> watch;
};

}  // namespace

class ScsiDevice final : public Device {
public:
    explicit ScsiDevice(std::string name) : name_(std::move(name)), port_("vhost." + name_) {}
    ~ScsiDevice() override = default;  // targets are removed first (scsi_remove_all)

    // VIRTIO_SCSI_F_CHANGE (parameter change events; none are ever sent) is offered as SPDK
    // does: QEMU's vhost-user-scsi sets it whatever the back end offers (it is not among the
    // bits QEMU asks the back end about), and a refused SET_FEATURES left the device dead.
    uint64_t features() const noexcept override {
        return vs::feature(vsc::kFHotplug) | vs::feature(vsc::kFChange);
    }
    uint16_t max_queues() const noexcept override { return kMaxQueues; }

    bool read_config(uint32_t offset, uint8_t* out, uint32_t size) noexcept override {
        vsc::Config c{};
        c.num_queues = kMaxQueues - vsc::kFirstRequestQueue;
        c.seg_max = kScsiMaxSegments;
        c.max_sectors = 0xffff;
        c.cmd_per_lun = 128;
        c.event_info_size = sizeof(vsc::Event);
        c.sense_size = vsc::kSenseSize;
        c.cdb_size = vsc::kCdbSize;
        c.max_channel = 0;
        c.max_target = kScsiMaxTargets - 1;
        c.max_lun = 0;
        if (offset > sizeof c || size > sizeof c - offset) return false;
        std::memcpy(out, reinterpret_cast<const uint8_t*>(&c) + offset, size);
        return true;
    }

    Result<void> start_queue(Session& s, Queue& q) override {
        auto* sq = new ScsiQueue;
        sq->session = &s;
        sq->queue = &q;
        sq->dev = this;
        sq->reqs = std::make_unique<Req[]>(q.num);
        for (uint16_t i = 0; i < q.num; ++i) {
            Req& r = sq->reqs[i];
            r.chain.iov = r.iov;
            r.chain.max_iov = kMaxIov;
            r.sq = sq;
            r.head = i;
        }
        q.device_ctx = sq;
        return {};
    }

    void stop_queue(Session&, Queue& q) noexcept override {
        delete static_cast<ScsiQueue*>(q.device_ctx);
        q.device_ctx = nullptr;
    }

    Chain* chain_for(Queue& q, uint16_t head) noexcept override {
        Req& r = static_cast<ScsiQueue*>(q.device_ctx)->reqs[head];
        if (r.busy) return nullptr;
        r.busy = true;
        return &r.chain;
    }

    bool polls_queue(uint16_t index) const noexcept override { return index != vsc::kEventQueue; }

    void submit(Session&, Queue& q, uint16_t head) noexcept override {
        Req& r = static_cast<ScsiQueue*>(q.device_ctx)->reqs[head];
        if (q.index == vsc::kControlQueue) return control(r);
        if (q.index == vsc::kEventQueue) return finish(r, 0);  // an inflight event buffer
        command(r);
    }

    int poll(Session& s) noexcept override {
        if (npending_ == 0) return 0;
        if (!s.has_feature(vsc::kFHotplug)) {
            npending_ = 0;
            missed_ = false;
            return 0;
        }
        Queue& q = s.queue(vsc::kEventQueue);
        int work = 0;
        while (npending_ > 0) {
            uint16_t head;
            if (!s.take(q, head)) break;
            Req& r = static_cast<ScsiQueue*>(q.device_ctx)->reqs[head];
            vsc::Event ev = pending_[0];
            if (missed_) ev.event |= vsc::kTEventsMissed;
            const Chain& c = r.chain;
            uint32_t written = 0;
            if (c.writable_bytes >= sizeof ev &&
                scatter(c.iov + c.readable, c.writable, &ev, sizeof ev))
                written = sizeof ev;
            else
                STRATA_WARNLOG(log_vhost_scsi, "{}: event buffer {} too small", name_, head);
            missed_ = false;
            std::memmove(pending_.data(), pending_.data() + 1,
                         sizeof(vsc::Event) * (npending_ - 1));
            --npending_;
            finish(r, written);
            ++work;
        }
        return work;
    }

    // ---- targets (control path, controller Thread) ----
    Result<uint32_t> add_target(int32_t num, const std::string& bdev) {
        if (num < -1 || num >= int32_t(kScsiMaxTargets))
            return Error(Errc::invalid_argument,
                         fmt::format("scsi_target_num {} (0 to {})", num, kScsiMaxTargets - 1));
        if (num == -1) {
            for (uint32_t i = 0; i < kScsiMaxTargets && num < 0; ++i)
                if (targets_[i].dev == nullptr && !targets_[i].removing) num = int32_t(i);
            if (num < 0)
                return Error(Errc::busy,
                             fmt::format("{}: all {} targets are in use", name_, kScsiMaxTargets));
        }
        Target& t = targets_[num];
        if (t.dev != nullptr || t.removing)
            return Error(Errc::already_exists,
                         fmt::format("{}: target {} already exists", name_, num));
        scsi::DeviceOptions o;
        o.name = fmt::format("{}.Target{}", name_, num);
        o.id = num;
        o.luns = {{0, bdev}};
        auto d = scsi::create_device(o);
        if (!d.ok()) return d.error();
        const auto n = uint32_t(num);
        auto w = bdev::open(bdev, false, [this, n, bdev](bdev::Event ev, bdev::Bdev&) {
            if (ev == bdev::Event::remove) hot_removed(n, bdev);
        });
        if (w.ok()) t.watch = std::move(*w);
        t.dev = *d;
        t.device_name = o.name;
        t.bdev = bdev;
        event(uint32_t(num), vsc::kEvtResetRescan);
        return uint32_t(num);
    }

    void remove_target(uint32_t num, std::function<void(Result<void>)> done) {
        if (num >= kScsiMaxTargets || targets_[num].dev == nullptr || targets_[num].removing)
            return done(Error(Errc::not_found, fmt::format("{}: no target {}", name_, num)));
        Target& t = targets_[num];
        t.removing = true;
        scsi::destroy_device(*t.dev, [this, num, done = std::move(done)] {
            targets_[num] = Target{};
            event(num, vsc::kEvtResetRemoved);
            done({});
        });
    }

    void set_on_target_removed(std::function<void()> fn) { on_target_removed_ = std::move(fn); }

    std::vector<ScsiTargetInfo> targets() const {
        std::vector<ScsiTargetInfo> out;
        for (uint32_t i = 0; i < kScsiMaxTargets; ++i)
            if (targets_[i].dev != nullptr) {
                std::string bdev;
                for (const auto& l : scsi::list_luns(*targets_[i].dev))
                    if (l.id == 0) bdev = l.bdev_name;
                out.push_back({i, targets_[i].device_name, bdev});
            }
        return out;
    }

private:
    // LUN 0's bdev is going away: the target goes (the driver gets a removed event), as SPDK's
    // vhost-scsi does. Later, not inside the descriptor's own callback (the target's reset
    // closes it).
    void hot_removed(uint32_t num, const std::string& bdev) {
        STRATA_NOTICELOG(log_vhost_scsi, "{}: bdev '{}' of target {} was removed: removing the "
                         "target", name_, bdev, num);
        auto* th = runtime::current_thread();
        auto go = [this, num, alive = std::weak_ptr<int>(alive_)] {
            if (alive.expired()) return;  // the controller went first
            if (targets_[num].dev == nullptr || targets_[num].removing) return;
            remove_target(num, [this](Result<void>) {
                if (on_target_removed_) on_target_removed_();
            });
        };
        if (th == nullptr || !th->post(go).ok()) go();
    }

    void finish(Req& r, uint32_t written) noexcept {
        r.busy = false;
        r.sq->session->complete(*r.sq->queue, r.head, written);
    }

    void event(uint32_t target, uint32_t reason) noexcept {
        if (npending_ == kMaxPendingEvents) {
            missed_ = true;
            return;
        }
        vsc::Event& ev = pending_[npending_++];
        ev = {};
        ev.event = vsc::kTTransportReset;
        vsc::encode_lun(uint8_t(target), 0, ev.lun);
        ev.reason = reason;
    }

    // The target a LUN field names, nullptr when none (or being removed).
    scsi::Device* target_of(const uint8_t (&lun)[8], uint32_t& num, uint64_t& lun_id) noexcept {
        vsc::LunAddress a;
        if (!vsc::decode_lun(lun, a) || a.target >= kScsiMaxTargets) return nullptr;
        Target& t = targets_[a.target];
        if (t.dev == nullptr || t.removing) return nullptr;
        num = a.target;
        lun_id = a.lun;
        return t.dev;
    }

    void respond(Req& r, const vsc::RespCmd& resp, uint32_t data_in) noexcept {
        const Chain& c = r.chain;
        scatter(c.iov + c.readable, c.writable, &resp, sizeof resp);
        finish(r, uint32_t(sizeof resp) + data_in);
    }
    void respond(Req& r, uint8_t response) noexcept {
        vsc::RespCmd resp{};
        resp.response = response;
        respond(r, resp, 0);
    }

    void command(Req& r) noexcept {
        const Chain& c = r.chain;
        if (c.writable_bytes < sizeof(vsc::RespCmd)) {
            STRATA_WARNLOG(log_vhost_scsi, "{}: request {} without room for a response", name_,
                           r.head);
            return finish(r, 0);
        }
        vsc::ReqCmd cmd;
        if (!gather(c.iov, c.readable, 0, &cmd, sizeof cmd)) return respond(r, vsc::kSFailure);
        uint64_t lun = 0;
        scsi::Device* dev = target_of(cmd.lun, r.target, lun);
        if (dev == nullptr) return respond(r, vsc::kSBadTarget);
        const uint64_t out_bytes = c.readable_bytes - sizeof cmd;
        const uint64_t in_bytes = c.writable_bytes - sizeof(vsc::RespCmd);
        if (out_bytes != 0 && in_bytes != 0) return respond(r, vsc::kSFailure);  // no INOUT
        if (out_bytes > UINT32_MAX || in_bytes > UINT32_MAX) return respond(r, vsc::kSOverrun);
        scsi::Task& t = r.task;
        t.reset();
        t.lun = lun;
        const size_t len = scsi::cdb_length(cmd.cdb[0]);
        t.cdb_len = uint8_t(len == 0 ? vsc::kCdbSize : len);
        std::memset(t.cdb, 0, sizeof t.cdb);
        std::memcpy(t.cdb, cmd.cdb, t.cdb_len);
        if (in_bytes != 0) {
            t.dir = scsi::DataDir::from_dev;
            t.iovcnt = slice(c.iov + c.readable, c.writable, sizeof(vsc::RespCmd), 0, r.data);
            t.transfer_length = uint32_t(in_bytes);
        } else if (out_bytes != 0) {
            t.dir = scsi::DataDir::to_dev;
            t.iovcnt = slice(c.iov, c.readable, sizeof cmd, 0, r.data);
            t.transfer_length = uint32_t(out_bytes);
        } else {
            t.dir = scsi::DataDir::none;
            t.iovcnt = 0;
            t.transfer_length = 0;
        }
        t.iovs = r.data;
        t.initiator_port = port_;
        t.tag = cmd.id;
        t.done = &command_done;
        t.done_ctx = &r;
        scsi::submit(*dev, t);
    }

    static void command_done(scsi::Task& t, void* ctx) {
        auto& r = *static_cast<Req*>(ctx);
        vsc::RespCmd resp{};
        resp.response = t.aborted ? vsc::kSAborted : vsc::kSOk;
        resp.status = t.status;
        resp.residual = t.residual;
        resp.sense_len = std::min<uint32_t>(t.sense_len, sizeof t.sense);
        std::memcpy(resp.sense, t.sense, resp.sense_len);
        const uint32_t in = t.dir == scsi::DataDir::from_dev ? t.data_transferred : 0;
        r.sq->dev->respond(r, resp, in);
    }

    void control(Req& r) noexcept {
        const Chain& c = r.chain;
        uint32_t type;
        if (!gather(c.iov, c.readable, 0, &type, sizeof type)) return finish(r, 0);
        const iovec* out = c.iov + c.readable;
        if (type == vsc::kTTmf) {
            vsc::CtrlTmfReq req;
            if (!gather(c.iov, c.readable, 0, &req, sizeof req) ||
                c.writable_bytes < sizeof(vsc::CtrlTmfResp))
                return finish(r, 0);
            auto answer = [&](uint8_t response) {
                scatter(out, c.writable, &response, 1);
                finish(r, 1);
            };
            scsi::TmfFunction f;
            switch (req.subtype) {
                case vsc::kTmfAbortTask:
                    f = scsi::TmfFunction::abort_task;
                    break;
                case vsc::kTmfAbortTaskSet:
                case vsc::kTmfClearTaskSet:
                    f = scsi::TmfFunction::abort_task_set;
                    break;
                case vsc::kTmfLogicalUnitReset:
                    f = scsi::TmfFunction::lun_reset;
                    break;
                case vsc::kTmfITNexusReset:
                    f = scsi::TmfFunction::target_reset;
                    break;
                default:
                    return answer(vsc::kSFunctionRejected);
            }
            uint64_t lun = 0;
            scsi::Device* dev = target_of(req.lun, r.target, lun);
            if (dev == nullptr) return answer(vsc::kSBadTarget);
            r.mgmt = scsi::MgmtTask{};
            r.mgmt.function = f;
            r.mgmt.lun = lun;
            r.mgmt.victim_tag = req.id;
            r.mgmt.initiator_port = port_;
            r.mgmt.done = &mgmt_done;
            r.mgmt.done_ctx = &r;
            scsi::manage(*dev, r.mgmt);
            return;
        }
        if (type == vsc::kTAnQuery || type == vsc::kTAnSubscribe) {
            vsc::CtrlAnResp resp{};  // no asynchronous notification is supported
            resp.response = vsc::kSOk;
            if (c.writable_bytes < sizeof resp) return finish(r, 0);
            scatter(out, c.writable, &resp, sizeof resp);
            return finish(r, sizeof resp);
        }
        STRATA_WARNLOG(log_vhost_scsi, "{}: unknown control request type {}", name_, type);
        finish(r, 0);
    }

    static void mgmt_done(scsi::MgmtTask& m, void* ctx) {
        auto& r = *static_cast<Req*>(ctx);
        uint8_t response = vsc::kSFunctionSucceeded;
        switch (m.response) {
            case scsi::TmfResponse::complete:
                response = vsc::kSFunctionSucceeded;
                break;
            // ABORT TASK of a task that already ended: nothing left to abort.
            case scsi::TmfResponse::task_does_not_exist:
                response = vsc::kSOk;
                break;
            case scsi::TmfResponse::lun_does_not_exist:
                response = vsc::kSIncorrectLun;
                break;
            case scsi::TmfResponse::function_rejected:
                response = vsc::kSFunctionRejected;
                break;
        }
        const Chain& c = r.chain;
        scatter(c.iov + c.readable, c.writable, &response, 1);
        r.sq->dev->finish(r, 1);
    }

    std::string name_;
    std::string port_;  // the I_T nexus of this controller's driver
    std::array<Target, kScsiMaxTargets> targets_{};
    std::array<vsc::Event, kMaxPendingEvents> pending_{};
    size_t npending_ = 0;
    bool missed_ = false;
    std::function<void()> on_target_removed_;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // for what hot_removed() posts
};

std::unique_ptr<Device> create_scsi_device(std::string name) {
    return std::make_unique<ScsiDevice>(std::move(name));
}
Result<uint32_t> scsi_add_target(Device& d, int32_t num, const std::string& bdev_name) {
    return static_cast<ScsiDevice&>(d).add_target(num, bdev_name);
}
void scsi_remove_target(Device& d, uint32_t num, std::function<void(Result<void>)> done) {
    static_cast<ScsiDevice&>(d).remove_target(num, std::move(done));
}
void scsi_remove_all(Device& d, std::function<void()> done) {
    auto& s = static_cast<ScsiDevice&>(d);
    const auto ts = s.targets();
    if (ts.empty()) return done();
    auto left = std::make_shared<size_t>(ts.size());
    auto fin = std::make_shared<std::function<void()>>(std::move(done));
    for (const auto& t : ts)
        s.remove_target(t.num, [left, fin](Result<void>) {
            if (--*left == 0) (*fin)();
        });
}
std::vector<ScsiTargetInfo> scsi_targets(Device& d) {
    return static_cast<ScsiDevice&>(d).targets();
}

void scsi_on_target_removed(Device& d, std::function<void()> fn) {
    static_cast<ScsiDevice&>(d).set_on_target_removed(std::move(fn));
}

}  // namespace strata::vhost
