// Devices, LUNs (bdev open/claim/hot-remove), nexuses and unit attentions, task dispatch and
// completion, task management.
#include <algorithm>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/base/log.h>

#include "internal.h"

namespace strata::scsi {

STRATA_LOG_COMPONENT(scsi);

const bdev::Module kScsiModule{"scsi", nullptr};

Registry& registry() { return runtime::current_host().get<Registry>(); }

namespace {

void assert_thread(const Device& dev) {
    STRATA_ASSERT_MSG(runtime::current_thread() == dev.thread,
                      "scsi: device %s used off its Thread", dev.name.c_str());
}

void flush_deferred(void* ctx) noexcept;

void schedule_flush(Device& dev) noexcept {
    if (dev.flush_scheduled) return;
    dev.flush_scheduled = true;
    Status s = dev.thread->send(&flush_deferred, &dev);
    STRATA_ASSERT_MSG(s.ok(), "scsi: cannot schedule a completion message");
}

void finish_mgmt(Device& dev, MgmtTask& m) noexcept;

void mgmt_victim_done(Device& dev, MgmtTask& m) noexcept {
    STRATA_ASSERT(m.pending_ > 0);
    if (--m.pending_ == 0 && !m.in_exec_ && !m.reset_pending_) finish_mgmt(dev, m);
}

void deliver(Task& t) noexcept;
void deliver_after_unlock(void* ctx, Status) { deliver(*static_cast<Task*>(ctx)); }

void deliver(Task& t) noexcept {
    if (t.priv.op == op_cw && t.priv.lun != nullptr && t.priv.lun->cw_range_locked) {
        // The task must outlive the unlock: the lock is known by it, and the writes it parked
        // go before the initiator hears of the COMPARE AND WRITE.
        Lun& lun = *t.priv.lun;
        lun.cw_range_locked = false;
        if (bdev::unlock_lba_range(*lun.desc, *lun.ch, t.priv.lba, t.priv.num_blocks,
                                   &deliver_after_unlock, &t)
                .ok())
            return;
    }
    Device& dev = *t.priv.dev;
    Lun* lun = t.priv.lun;
    MgmtTask* m = static_cast<MgmtTask*>(t.priv.mgmt);
    t.priv.mgmt = nullptr;
    dev.outstanding.remove(t);
    if (t.priv.abort_requested) {
        t.aborted = true;
        t.status = status::task_aborted;
        t.sense_len = 0;
    }
    if (lun != nullptr) {
        STRATA_ASSERT(lun->inflight > 0);
        --lun->inflight;
    }
    const bool cw_running = t.priv.op == op_cw;
    t.priv.dev = nullptr;
    t.priv.lun = nullptr;
    t.done(t, t.done_ctx);
    if (cw_running && lun != nullptr) cw_release(*lun);
    if (m != nullptr) mgmt_victim_done(dev, *m);
    if (lun != nullptr && lun->removing && lun->inflight == 0) {
        // Finish the removal outside the bdev completion that may have brought us here.
        uint64_t id = lun->id;
        Device* d = &dev;
        (void)dev.thread->post([d, id] {
            Lun* l = d->find_lun(id);
            if (l == nullptr || !l->removing || l->inflight != 0) return;
            remove_lun(*d, id, [](Result<void>) {});
        });
    }
}

void flush_deferred(void* ctx) noexcept {
    Device& dev = *static_cast<Device*>(ctx);
    dev.flush_scheduled = false;
    while (Task* t = dev.deferred.pop_front()) {
        dev.outstanding.push_back(*t);
        deliver(*t);
    }
    if (dev.deferred_mgmt.empty()) return;  // the usual case: no allocation below
    auto mgmts = std::move(dev.deferred_mgmt);
    dev.deferred_mgmt = {};
    for (MgmtTask* m : mgmts) m->done(*m, m->done_ctx);
}

void finish_mgmt(Device& dev, MgmtTask& m) noexcept {
    // Never inside manage(): always through the completion message.
    dev.deferred_mgmt.push_back(&m);
    schedule_flush(dev);
}

size_t fill_fixed(uint8_t* s, SenseKey key, uint16_t a, bool info_valid, uint64_t info,
                  const uint8_t* sks) {
    std::memset(s, 0, 18);
    s[0] = 0x70 | (info_valid ? 0x80 : 0);
    s[2] = static_cast<uint8_t>(key);
    if (info_valid) put_be32(s + 3, static_cast<uint32_t>(info));
    s[7] = 10;
    s[12] = uint8_t(a >> 8);
    s[13] = uint8_t(a);
    if (sks != nullptr) std::memcpy(s + 15, sks, 3);
    return 18;
}

size_t fill_descriptor(uint8_t* s, SenseKey key, uint16_t a, bool info_valid, uint64_t info,
                       const uint8_t* sks) {
    std::memset(s, 0, kMaxSenseBytes);
    s[0] = 0x72;
    s[1] = static_cast<uint8_t>(key);
    s[2] = uint8_t(a >> 8);
    s[3] = uint8_t(a);
    size_t n = 8;
    if (info_valid) {  // information descriptor
        s[n] = 0x00;
        s[n + 1] = 0x0A;
        s[n + 2] = 0x80;
        put_be64(s + n + 4, info);
        n += 12;
    }
    if (sks != nullptr) {  // sense key specific descriptor
        s[n] = 0x02;
        s[n + 1] = 0x06;
        std::memcpy(s + n + 4, sks, 3);
        n += 8;
    }
    s[7] = static_cast<uint8_t>(n - 8);
    return n;
}

void fill_sense(Task& t, SenseKey key, uint16_t a, bool info_valid, uint64_t info,
                const uint8_t* sks) {
    t.status = status::check_condition;
    const bool desc = t.priv.lun != nullptr && t.priv.lun->mode.d_sense;
    const size_t n = desc ? fill_descriptor(t.sense, key, a, info_valid, info, sks)
                          : fill_fixed(t.sense, key, a, info_valid && info <= 0xFFFFFFFFu, info, sks);
    t.sense_len = static_cast<uint8_t>(n);
}

void field_pointer(Task& t, bool cdb, uint16_t byte, int bit) {
    uint8_t sks[3];
    sks[0] = 0x80 | (cdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0);
    put_be16(sks + 1, byte);
    fill_sense(t, SenseKey::illegal_request,
               cdb ? asc::invalid_field_in_cdb : asc::invalid_field_in_parameter_list, false, 0,
               sks);
}

bool lun_less(const std::unique_ptr<Lun>& a, const std::unique_ptr<Lun>& b) {
    return a->id < b->id;
}

Result<std::unique_ptr<Lun>> open_lun(Device& dev, const LunOptions& o) {
    if (o.id > kMaxLunId)
        return Error(Errc::invalid_argument, fmt::format("LUN id {} above {}", o.id, kMaxLunId));
    if (dev.find_lun(o.id) != nullptr)
        return Error(Errc::already_exists, fmt::format("LUN {} exists on {}", o.id, dev.name));
    auto lun = std::make_unique<Lun>();
    lun->id = o.id;
    lun->bdev_name = o.bdev_name;
    Device* d = &dev;
    const uint64_t id = o.id;
    auto desc = bdev::open(o.bdev_name, true, [d, id](bdev::Event e, bdev::Bdev& b) {
        Lun* l = d->find_lun(id);
        if (l == nullptr) return;
        if (e == bdev::Event::remove) {
            STRATA_NOTICELOG(log_scsi, "{}: LUN {} hot-removed (bdev {})", d->name, l->id, b.name());
            remove_lun(*d, id, [](Result<void>) {});
        } else {
            l->num_blocks = b.num_blocks();
            for (uint32_t& u : l->ua) u |= ua_capacity_changed;
        }
    });
    if (!desc.ok()) return desc.error();
    auto claimed = bdev::claim(**desc, kScsiModule);
    if (!claimed.ok()) return claimed.error();
    lun->desc = std::move(*desc);
    lun->ch = lun->desc->get_channel();
    if (lun->ch == nullptr) {
        bdev::release_claim(*lun->desc);
        return Error(Errc::shutdown, fmt::format("bdev {} gives no channel", o.bdev_name));
    }
    bdev::Bdev& b = lun->desc->bdev();
    lun->block_size = b.block_size();
    lun->num_blocks = b.num_blocks();
    lun->uuid = b.uuid();
    lun->product = b.properties().product_name;
    lun->unmap_supported = b.supports(bdev::IoType::unmap);
    lun->flush_supported = b.supports(bdev::IoType::flush);
    lun->mode.wce = b.properties().write_cache;
    lun->ua.assign(dev.nexuses.size(), ua_power_on);
    lun->scratch.resize(size_t(lun->block_size) * 256);  // MAXIMUM COMPARE AND WRITE LENGTH
    return lun;
}

void close_lun(Lun& lun) {
    if (lun.ch != nullptr) bdev::put_channel(lun.ch);
    lun.ch = nullptr;
    if (lun.desc) bdev::release_claim(*lun.desc);
    lun.desc.reset();
}

}  // namespace

size_t build_sense(uint8_t* out, bool descriptor, SenseKey key, uint16_t a) noexcept {
    return descriptor ? fill_descriptor(out, key, a, false, 0, nullptr)
                      : fill_fixed(out, key, a, false, 0, nullptr);
}

uint16_t ua_asc(uint32_t bit) noexcept {
    switch (bit) {
        case ua_power_on: return asc::power_on_reset;
        case ua_lun_reset: return asc::bus_device_reset;
        case ua_capacity_changed: return asc::capacity_data_changed;
        case ua_mode_changed: return asc::mode_parameters_changed;
        case ua_reservations_preempted: return asc::reservations_preempted;
        case ua_reservations_released: return asc::reservations_released;
        case ua_registrations_preempted: return asc::registrations_preempted;
        default: return asc::reported_luns_data_changed;
    }
}

void Task::reset() noexcept {
    status = status::good;
    sense_len = 0;
    data_transferred = 0;
    residual = 0;
    residual_overflow = false;
    aborted = false;
    priv = Private{};
}

Lun* Device::find_lun(uint64_t lun_id) const noexcept {
    for (const auto& l : luns)
        if (l->id == lun_id) return l.get();
    return nullptr;
}

uint32_t Device::nexus_index(std::string_view port) {
    for (size_t i = 0; i < nexuses.size(); ++i)
        if (nexuses[i] == port) return static_cast<uint32_t>(i);
    // First command of this I_T nexus: every LUN reports POWER ON, RESET to it once.
    nexuses.emplace_back(port);
    for (auto& l : luns) l->ua.push_back(ua_power_on);
    return static_cast<uint32_t>(nexuses.size() - 1);
}

void complete(Task& t) noexcept {
    Device& dev = *t.priv.dev;
    if (dev.in_submit > 0) {
        dev.outstanding.remove(t);
        dev.deferred.push_back(t);
        schedule_flush(dev);
        return;
    }
    deliver(t);
}

void set_sense(Task& t, SenseKey key, uint16_t a) noexcept { fill_sense(t, key, a, false, 0, nullptr); }
void set_sense_info(Task& t, SenseKey key, uint16_t a, uint64_t info) noexcept {
    fill_sense(t, key, a, true, info, nullptr);
}
void invalid_cdb_field(Task& t, uint16_t byte, int bit) noexcept { field_pointer(t, true, byte, bit); }
void invalid_param_field(Task& t, uint16_t byte, int bit) noexcept {
    field_pointer(t, false, byte, bit);
}

void data_in(Task& t, const void* data, size_t len) noexcept {
    const size_t cap = t.dir == DataDir::from_dev ? std::min<size_t>(t.transfer_length, t.priv.iov_bytes) : 0;
    const size_t n = std::min(len, cap);
    const auto* src = static_cast<const uint8_t*>(data);
    size_t done = 0;
    for (int i = 0; i < t.iovcnt && done < n; ++i) {
        const size_t k = std::min(t.iovs[i].iov_len, n - done);
        std::memcpy(t.iovs[i].iov_base, src + done, k);
        done += k;
    }
    t.data_transferred = static_cast<uint32_t>(done);
    if (len < t.transfer_length) {
        t.residual = static_cast<uint32_t>(t.transfer_length - len);
        t.residual_overflow = false;
    } else if (len > t.transfer_length) {
        t.residual = static_cast<uint32_t>(std::min<size_t>(len - t.transfer_length, UINT32_MAX));
        t.residual_overflow = true;
    }
}

size_t data_out(const Task& t, void* out, size_t len, size_t offset) noexcept {
    if (t.dir != DataDir::to_dev) return 0;
    const size_t cap = std::min<size_t>(t.transfer_length, t.priv.iov_bytes);
    if (offset >= cap) return 0;
    len = std::min(len, cap - offset);
    auto* dst = static_cast<uint8_t*>(out);
    size_t pos = 0, done = 0;
    for (int i = 0; i < t.iovcnt && done < len; ++i) {
        const size_t l = t.iovs[i].iov_len;
        if (pos + l > offset) {
            const size_t skip = offset > pos ? offset - pos : 0;
            const size_t k = std::min(l - skip, len - done);
            std::memcpy(dst + done, static_cast<const uint8_t*>(t.iovs[i].iov_base) + skip, k);
            done += k;
            offset += k;
        }
        pos += l;
    }
    return done;
}

int slice_iovs(const Task& t, size_t offset, size_t len, iovec* iov, int n) noexcept {
    size_t pos = 0;
    int cnt = 0;
    for (int i = 0; i < t.iovcnt && len > 0; ++i) {
        const size_t l = t.iovs[i].iov_len;
        if (pos + l > offset) {
            const size_t skip = offset - pos;
            const size_t k = std::min(l - skip, len);
            if (k > 0) {
                if (cnt == n) return -1;
                iov[cnt++] = {static_cast<uint8_t*>(t.iovs[i].iov_base) + skip, k};
            }
            offset += k;
            len -= k;
        }
        pos += l;
    }
    return len == 0 ? cnt : -1;
}

// ---- devices ----------------------------------------------------------------------------------

Result<Device*> create_device(const DeviceOptions& o) {
    runtime::Thread* th = runtime::current_thread();
    STRATA_ASSERT_MSG(th != nullptr, "scsi::create_device outside a Thread");
    if (o.name.empty()) return Error(Errc::invalid_argument, "device name is empty");
    if (find_device(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("SCSI device {} exists", o.name));
    auto dev = std::make_unique<Device>();
    dev->name = o.name;
    dev->id = o.id;
    dev->thread = th;
    dev->deferred_mgmt.reserve(8);
    for (const LunOptions& lo : o.luns) {
        auto lun = open_lun(*dev, lo);
        if (!lun.ok()) {
            for (auto& l : dev->luns) close_lun(*l);
            return lun.error();
        }
        dev->luns.push_back(std::move(*lun));
    }
    std::sort(dev->luns.begin(), dev->luns.end(), lun_less);
    Registry& reg = registry();
    std::lock_guard lock(reg.mu);
    reg.devices.push_back(dev.get());
    return dev.release();
}

void destroy_device(Device& dev, std::function<void()> done) {
    assert_thread(dev);
    dev.destroying = true;
    {
        Registry& reg = registry();
        std::lock_guard lock(reg.mu);
        std::erase(reg.devices, &dev);
    }
    // Removing every LUN waits for its outstanding tasks.
    auto remaining = std::make_shared<size_t>(dev.luns.size() + 1);
    Device* d = &dev;
    auto step = [d, remaining, done = std::move(done)](Result<void>) mutable {
        if (--*remaining != 0) return;
        // Deferred completions may still reference the device: drain them first.
        (void)d->thread->post([d, done = std::move(done)] {
            STRATA_ASSERT_MSG(d->outstanding.empty() && d->deferred.empty(),
                              "scsi: device destroyed with tasks outstanding");
            delete d;
            done();
        });
    };
    std::vector<uint64_t> ids;
    for (auto& l : dev.luns) ids.push_back(l->id);
    for (uint64_t id : ids) remove_lun(dev, id, step);
    step({});
}

Result<void> add_lun(Device& dev, const LunOptions& o) {
    assert_thread(dev);
    if (dev.destroying) return Error(Errc::shutdown, "device is being destroyed");
    auto lun = open_lun(dev, o);
    if (!lun.ok()) return lun.error();
    for (auto& l : dev.luns)
        for (uint32_t& u : l->ua) u |= ua_luns_changed;
    dev.luns.push_back(std::move(*lun));
    std::sort(dev.luns.begin(), dev.luns.end(), lun_less);
    return {};
}

void remove_lun(Device& dev, uint64_t lun_id, std::function<void(Result<void>)> done) {
    assert_thread(dev);
    Lun* lun = dev.find_lun(lun_id);
    if (lun == nullptr) {
        done(Error(Errc::not_found, fmt::format("no LUN {} on {}", lun_id, dev.name)));
        return;
    }
    if (!lun->removing) {
        lun->removing = true;
        // Queued COMPARE AND WRITEs never started: end them now.
        while (Task* t = lun->cw_queue.pop_front()) {
            set_sense(*t, SenseKey::illegal_request, asc::lun_not_supported);
            complete(*t);
        }
    }
    lun->removal_waiters.push_back(std::move(done));
    if (lun->inflight != 0) return;  // deliver() comes back here when the last one completes
    auto waiters = std::move(lun->removal_waiters);
    close_lun(*lun);
    std::erase_if(dev.luns, [lun](const std::unique_ptr<Lun>& l) { return l.get() == lun; });
    for (auto& l : dev.luns)
        for (uint32_t& u : l->ua) u |= ua_luns_changed;
    for (auto& w : waiters) w({});
}

const std::string& device_name(const Device& dev) noexcept { return dev.name; }
int32_t device_id(const Device& dev) noexcept { return dev.id; }
runtime::Thread& device_thread(const Device& dev) noexcept { return *dev.thread; }
uint32_t outstanding_tasks(const Device& dev) noexcept {
    return static_cast<uint32_t>(const_cast<Device&>(dev).outstanding.size() +
                                 const_cast<Device&>(dev).deferred.size());
}

std::vector<LunInfo> list_luns(const Device& dev) {
    std::vector<LunInfo> out;
    for (const auto& l : dev.luns)
        if (!l->removing) out.push_back({l->id, l->bdev_name});
    return out;
}

Device* find_device(std::string_view name) {
    Registry& reg = registry();
    std::lock_guard lock(reg.mu);
    for (Device* d : reg.devices)
        if (d->name == name) return d;
    return nullptr;
}

std::vector<DeviceInfo> list_devices() {
    Registry& reg = registry();
    std::lock_guard lock(reg.mu);
    std::vector<DeviceInfo> out;
    for (Device* d : reg.devices) out.push_back({d->id, d->name});
    return out;
}

// ---- submission --------------------------------------------------------------------------------

namespace {

constexpr uint8_t kInquiry = 0x12, kReportLuns = 0xA0, kRequestSense = 0x03;

void dispatch(Device& dev, Task& t) noexcept {
    const uint8_t op = t.cdb[0];
    Lun* lun = dev.find_lun(t.lun);
    if (lun != nullptr && lun->removing) lun = nullptr;
    if (dev.destroying) lun = nullptr;
    if (lun == nullptr) {
        if (op == kInquiry) return execute_inquiry_no_lun(t);
        if (op == kReportLuns) return execute_report_luns(t);
        if (op == kRequestSense) return execute_request_sense(t, nullptr);
        set_sense(t, SenseKey::illegal_request, asc::lun_not_supported);
        return complete(t);
    }
    t.priv.lun = lun;
    ++lun->inflight;
    uint32_t& ua = lun->ua[t.priv.nexus];
    if (op == kRequestSense) return execute_request_sense(t, &ua);
    if (op == kReportLuns) {
        for (auto& l : dev.luns) l->ua[t.priv.nexus] &= ~uint32_t(ua_luns_changed);
        return execute_report_luns(t);
    }
    if (ua != 0 && op != kInquiry) {
        const uint32_t bit = ua & (~ua + 1);
        ua &= ~bit;
        set_sense(t, SenseKey::unit_attention, ua_asc(bit));
        return complete(t);
    }
    if (reservation_conflict(*lun, t.priv.nexus, op)) {
        t.status = status::reservation_conflict;
        return complete(t);
    }
    execute(t);
}

}  // namespace

void submit(Device& dev, Task& t) noexcept {
    assert_thread(dev);
    STRATA_ASSERT_MSG(t.done != nullptr, "scsi::submit: task without a callback");
    t.status = status::good;
    t.sense_len = 0;
    t.data_transferred = 0;
    t.residual = 0;
    t.residual_overflow = false;
    t.aborted = false;
    t.priv = Task::Private{};
    t.priv.dev = &dev;
    size_t cap = 0;
    for (int i = 0; i < t.iovcnt; ++i) cap += t.iovs[i].iov_len;
    t.priv.iov_bytes = static_cast<uint32_t>(std::min<size_t>(cap, UINT32_MAX));
    if (t.iovs == nullptr || t.iovcnt < 0) {
        t.iovcnt = 0;
        t.priv.iov_bytes = 0;
    }
    dev.outstanding.push_back(t);
    ++dev.in_submit;
    t.priv.nexus = dev.nexus_index(t.initiator_port);
    dispatch(dev, t);
    --dev.in_submit;
}

// ---- task management ---------------------------------------------------------------------------

namespace {

struct ResetCtx {
    Device* dev;
    MgmtTask* m;
};

}  // namespace

void manage(Device& dev, MgmtTask& m) noexcept {
    assert_thread(dev);
    m.response = TmfResponse::complete;
    m.aborted_count = 0;
    m.pending_ = 0;
    m.in_exec_ = true;
    m.reset_pending_ = false;
    const uint32_t nexus = dev.nexus_index(m.initiator_port);
    Lun* lun = dev.find_lun(m.lun);
    if (lun != nullptr && lun->removing) lun = nullptr;

    auto end = [&](Task& t) {
        if (t.priv.abort_requested) return;
        t.priv.abort_requested = true;
        ++m.aborted_count;
        // A queued COMPARE AND WRITE has not started: complete it at once.
        if (t.priv.lun != nullptr && t.priv.op == op_cw_queued) {
            t.priv.lun->cw_queue.remove(t);
            t.priv.mgmt = &m;
            ++m.pending_;
            complete(t);
            return;
        }
        if (t.priv.mgmt == nullptr) {
            t.priv.mgmt = &m;
            ++m.pending_;
        }
    };

    // Tasks ended here complete through the deferred list (never inside manage()), and the
    // loops below step past a task before ending it.
    ++dev.in_submit;
    switch (m.function) {
        case TmfFunction::abort_task: {
            if (lun == nullptr) {
                m.response = TmfResponse::lun_does_not_exist;
                break;
            }
            Task* victim = nullptr;
            for (Task& t : dev.outstanding)
                if (t.tag == m.victim_tag && t.priv.nexus == nexus && t.lun == m.lun &&
                    !t.priv.abort_requested)
                    victim = &t;
            if (victim == nullptr) m.response = TmfResponse::task_does_not_exist;
            else end(*victim);
            break;
        }
        case TmfFunction::abort_task_set:
            if (lun == nullptr) {
                m.response = TmfResponse::lun_does_not_exist;
                break;
            }
            for (auto it = dev.outstanding.begin(); it != dev.outstanding.end();) {
                Task& t = *it++;
                if (t.priv.nexus == nexus && t.lun == m.lun) end(t);
            }
            break;
        case TmfFunction::lun_reset:
        case TmfFunction::target_reset: {
            const bool target = m.function == TmfFunction::target_reset;
            if (!target && lun == nullptr) {
                m.response = TmfResponse::lun_does_not_exist;
                break;
            }
            for (auto it = dev.outstanding.begin(); it != dev.outstanding.end();) {
                Task& t = *it++;
                if (target || t.lun == m.lun) end(t);
            }
            for (auto& l : dev.luns) {
                if (!target && l.get() != lun) continue;
                if (l->removing) continue;
                // Every I_T nexus, the one that asked too (SAM-5 6.3.3; libiscsi's
                // MultipathIO.Reset looks for it on each path).
                for (uint32_t& u : l->ua) u |= ua_lun_reset;
                // A reset releases SPC-2 style state only; persistent reservations survive.
                l->spc2_reserved = false;
                auto* rc = new ResetCtx{&dev, &m};  // control path (TMF), not per I/O
                m.reset_pending_ = true;
                ++m.pending_;
                Status s = bdev::reset(*l->desc, *l->ch,
                                       [](void* ctx, const bdev::IoStatus&) {
                                           auto* r = static_cast<ResetCtx*>(ctx);
                                           Device& d = *r->dev;
                                           MgmtTask& mm = *r->m;
                                           delete r;
                                           mgmt_victim_done(d, mm);
                                       },
                                       rc);
                if (!s.ok()) {
                    delete rc;
                    --m.pending_;
                }
            }
            m.reset_pending_ = false;
            break;
        }
    }
    --dev.in_submit;
    m.in_exec_ = false;
    if (m.pending_ == 0) finish_mgmt(dev, m);
}

void nexus_lost(Device& dev, std::string_view port) noexcept {
    assert_thread(dev);
    for (size_t i = 0; i < dev.nexuses.size(); ++i) {
        if (dev.nexuses[i] != port) continue;
        for (auto& l : dev.luns)
            if (l->spc2_reserved && l->spc2_holder == i) l->spc2_reserved = false;
        return;
    }
}

// ---- LUN helpers ------------------------------------------------------------------------------

void encode_lun(uint64_t id, uint8_t out[8]) noexcept {
    std::memset(out, 0, 8);
    if (id < 256) {
        out[1] = static_cast<uint8_t>(id);
    } else {
        out[0] = static_cast<uint8_t>(0x40 | ((id >> 8) & 0x3F));
        out[1] = static_cast<uint8_t>(id);
    }
}

uint64_t decode_lun(const uint8_t in[8]) noexcept {
    for (int i = 2; i < 8; ++i)
        if (in[i] != 0) return UINT64_MAX;
    switch (in[0] >> 6) {
        case 0: return in[0] == 0 ? in[1] : UINT64_MAX;  // peripheral, bus 0
        case 1: return uint64_t(in[0] & 0x3F) << 8 | in[1];  // flat space
        default: return UINT64_MAX;
    }
}

}  // namespace strata::scsi
