// The admin side of the driver: attach and init state machine, admin commands, namespaces,
// asynchronous events, timeouts' aborts, reset and failure, detach.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/env/memory.h>
#include <strata/runtime/scheduler.h>

#include "internal.h"
#include "tcp.h"

namespace strata::nvme {

namespace {

#define NVME_CO_TRY STRATA_NVME_CO_TRY

constexpr uint64_t kReadyPollNs = 100'000;      // CSTS poll interval while waiting for RDY
constexpr uint64_t kFabricsReadyPollNs = 1'000'000;  // the same over a Property Get
constexpr uint64_t kHealthPollNs = 10'000'000;  // CSTS.CFS / surprise-removal check
constexpr uint16_t kPciCommandOffset = 0x04;
constexpr uint16_t kPciCommandMemory = 1u << 1;
constexpr uint16_t kPciCommandBusMaster = 1u << 2;

Error admin_error(const ControllerImpl& c, const char* what, const Completion& cpl) {
    return Error(cpl.errc(), fmt::format("nvme {}: {} failed: {}", c.label(), what,
                                         cpl.name().view()));
}

}  // namespace

void complete_async(void* ctx, const Completion& cpl) {
    static_cast<runtime::AsyncResult<Completion>*>(ctx)->set(cpl);
}

Errc Completion::errc() const noexcept {
    if (status.ok()) return Errc::ok;
    const unsigned sct = status.sct(), sc = status.sc();
    if (status == kStatusControllerGone) return Errc::device_removed;
    if (sct == 0) {
        switch (sc) {
            case 0x01: case 0x02: case 0x0B: case 0x0D: case 0x0E: case 0x0F: case 0x11:
            case 0x13: case 0x16:
                return Errc::invalid_argument;
            case 0x05: case 0x07: case 0x08: case 0x09: case 0x0A: case 0x1B:
                return Errc::aborted;
            case 0x80: return Errc::out_of_range;  // LBA Out of Range
            case 0x81: return Errc::no_space;      // Capacity Exceeded
            case 0x82: return status.dnr() ? Errc::io_error : Errc::busy;  // Namespace Not Ready
            default: return Errc::io_error;
        }
    }
    if (sct == 1 && (sc == 0x01 || sc == 0x02 || sc == 0x00)) return Errc::invalid_argument;
    if (sct == 2) return (sc >= 0x82 && sc <= 0x85) ? Errc::corrupt : Errc::io_error;
    if (sct == 3 && sc == 0x71) return Errc::timeout;
    return Errc::io_error;
}

const char* state_name(ControllerState s) noexcept {
    switch (s) {
        case ControllerState::initializing: return "initializing";
        case ControllerState::ready: return "ready";
        case ControllerState::resetting: return "resetting";
        case ControllerState::failed: return "failed";
        case ControllerState::removed: return "removed";
        case ControllerState::detached: return "detached";
    }
    return "?";
}

// ---- registers and the enable handshake ----------------------------------------------------

spec::Cc enabling_cc() noexcept {
    spec::Cc cc{};
    cc.set_css(spec::Cc::css_nvm)
        .set_mps(0)
        .set_ams(spec::Cc::ams_round_robin)
        .set_shn(spec::Cc::shn_none)
        .set_iosqes(spec::sqe_size_log2)
        .set_iocqes(spec::cqe_size_log2)
        .set_en(1);
    return cc;
}

runtime::Task<Result<uint32_t>> ControllerImpl::read_csts() {
    if (!fabrics) co_return bar.read32(spec::reg::csts);
    auto r = co_await prop_get(spec::reg::csts, false);
    NVME_CO_TRY(r);
    co_return static_cast<uint32_t>(*r);
}

runtime::Task<Result<void>> ControllerImpl::wait_ready(bool ready) {
    const uint64_t timeout_ns = std::max<uint64_t>(cap.to(), 1) * 500'000'000ull;
    const uint64_t deadline = runtime::now_ns() + timeout_ns;
    for (;;) {
        auto raw = co_await read_csts();
        NVME_CO_TRY(raw);
        const spec::Csts csts{*raw};
        if (csts.all_ones())
            co_return Error(Errc::device_removed,
                            fmt::format("nvme {}: registers read all-ones (device gone)",
                                        label()));
        if (ready && csts.cfs())
            co_return Error(Errc::io_error, fmt::format("nvme {}: controller fatal status while "
                                                        "enabling", label()));
        if ((csts.rdy() != 0) == ready) co_return Result<void>{};
        if (runtime::now_ns() >= deadline) {
            co_return Error(Errc::timeout,
                            fmt::format("nvme {}: CSTS.RDY did not become {} within CAP.TO "
                                        "({} ms)", label(), ready ? 1 : 0,
                                        timeout_ns / 1'000'000));
        }
        co_await runtime::sleep_for(fabrics ? kFabricsReadyPollNs : kReadyPollNs);
    }
}

runtime::Task<Result<void>> ControllerImpl::disable() {
    spec::Cc cc{bar.read32(spec::reg::cc)};
    const spec::Csts csts{bar.read32(spec::reg::csts)};
    if (csts.all_ones()) co_return Error(Errc::device_removed, "nvme: device gone");
    if (cc.en() != 0) {
        // Clearing EN while RDY is still 0 is undefined: let a pending enable finish first.
        if (csts.rdy() == 0) (void)co_await wait_ready(true);
        cc.set_en(0);
        bar.write32(spec::reg::cc, cc.raw);
    }
    co_return co_await wait_ready(false);
}

runtime::Task<Result<void>> ControllerImpl::enable() {
    bar.write32(spec::reg::aqa, spec::Aqa{}
                                    .set_asqs(admin_qp->entries - 1)
                                    .set_acqs(admin_qp->entries - 1)
                                    .raw);
    bar.write64(spec::reg::asq, admin_qp->sq_iova);
    bar.write64(spec::reg::acq, admin_qp->cq_iova);
    bar.write32(spec::reg::cc, enabling_cc().raw);
    co_return co_await wait_ready(true);
}

// ---- admin commands -----------------------------------------------------------------------

runtime::Task<Result<Completion>> ControllerImpl::admin(spec::Sqe sqe, void* buf, size_t len) {
    if (gone())
        co_return Error(Errc::device_removed, fmt::format("nvme {}: controller is {}",
                                                          label(), state_name(state)));
    void* bounce = nullptr;
    const auto dir = spec::opcode_direction(sqe.opc);
    std::vector<uint8_t> heap;  // fabrics: no DMA, the socket copies
    if (len != 0) {
        if (fabrics) {
            heap.assign(len, 0);
            bounce = heap.data();
        } else {
            auto mem = env::dma_alloc(len, kPageBytes, true);
            if (!mem) co_return mem.error();
            bounce = *mem;
        }
        if (buf && dir == spec::DataDirection::host_to_controller) std::memcpy(bounce, buf, len);
    }
    runtime::AsyncResult<Completion> done;
    iovec iov{bounce, len};
    const bool is_aer = sqe.opc == static_cast<uint8_t>(spec::AdminOpcode::async_event_request);
    Status s = admin_qp->submit(sqe, &iov, 1, len, complete_async, &done, is_aer);
    if (!s.ok()) {
        if (!fabrics) env::dma_free(bounce);
        co_return Error(s);
    }
    ++stats.admin_commands;
    Completion cpl = co_await done;
    if (buf && len != 0 && dir == spec::DataDirection::controller_to_host && cpl.ok())
        std::memcpy(buf, bounce, len);
    if (!fabrics) env::dma_free(bounce);
    co_return cpl;
}

runtime::Task<Result<void>> ControllerImpl::identify_controller() {
    auto r = co_await admin(spec::make_identify(0, spec::Cns::ctrlr), &ident, sizeof(ident));
    NVME_CO_TRY(r);
    if (!r->ok()) co_return admin_error(*this, "Identify Controller", *r);
    const uint64_t mdts_bytes =
        ident.mdts == 0 ? kDriverMaxTransferBytes
                        : (ident.mdts >= 20 ? kDriverMaxTransferBytes
                                            : (uint64_t{1} << ident.mdts) * cap.min_page_size_bytes());
    max_transfer = std::min(mdts_bytes, kDriverMaxTransferBytes);
    sgl = options.use_sgl && ident.sgl_supported();
    co_return Result<void>{};
}

runtime::Task<Result<void>> ControllerImpl::set_queue_count() {
    const uint32_t want = std::clamp<uint32_t>(options.io_queues_requested, 1, 65535);
    auto r = co_await admin(spec::make_set_number_of_queues(0, want, want));
    NVME_CO_TRY(r);
    if (!r->ok()) co_return admin_error(*this, "Set Features (Number of Queues)", *r);
    const spec::NumberOfQueuesFeature got{r->dw0};
    const uint32_t granted =
        std::min({static_cast<uint32_t>(got.nsq()) + 1, static_cast<uint32_t>(got.ncq()) + 1, want});
    io_queues_granted = granted;
    if (qid_used.size() < granted + 1) qid_used.resize(granted + 1, false);
    co_return Result<void>{};
}

namespace {

// The Namespace UUID of a CNS 03h descriptor list, or zeros. A malformed list (a length the
// spec does not fix for its type, running off the page) ends the walk.
std::array<uint8_t, 16> uuid_descriptor(const std::vector<uint8_t>& list) {
    size_t at = 0;
    while (at + sizeof(spec::NsIdDescriptorHeader) <= list.size()) {
        spec::NsIdDescriptorHeader h;
        std::memcpy(&h, list.data() + at, sizeof(h));
        if (h.nidt == 0) break;  // end of the list
        const auto type = static_cast<spec::NidType>(h.nidt);
        at += sizeof(h);
        if (h.nidl != spec::nid_length(type) || at + h.nidl > list.size()) break;
        if (type == spec::NidType::uuid) {
            std::array<uint8_t, 16> u;
            std::memcpy(u.data(), list.data() + at, u.size());
            return u;
        }
        at += h.nidl;
    }
    return {};
}

}  // namespace

runtime::Task<Result<void>> ControllerImpl::scan_namespaces() {
    std::vector<uint32_t> ids;
    auto list = std::make_unique<spec::NsList>();
    auto r = co_await admin(spec::make_identify(0, spec::Cns::active_ns_list, 0), list.get(),
                            sizeof(*list));
    NVME_CO_TRY(r);
    if (r->ok()) {
        for (uint32_t id : list->nsid) {
            if (id == 0) break;
            if (!ids.empty() && id <= ids.back()) break;  // must increase: hostile list
            ids.push_back(id);
        }
    } else {
        // Pre-1.1 controllers: every id up to NN.
        for (uint32_t id = 1; id <= std::min<uint32_t>(ident.nn, 1024); ++id) ids.push_back(id);
    }
    for (auto& ns : namespaces) ns->active = false;
    auto data = std::make_unique<spec::IdentifyNamespace>();
    std::vector<uint8_t> desc(spec::identify_data_bytes);
    for (uint32_t id : ids) {
        auto rn = co_await admin(spec::make_identify(0, spec::Cns::ns, id), data.get(), sizeof(*data));
        NVME_CO_TRY(rn);
        if (!rn->ok()) continue;
        spec::LbaFormat fmt{};
        if (data->nsze == 0 || !data->current_lba_format(fmt) || fmt.data_size_bytes() == 0) {
            if (data->nsze != 0)
                STRATA_WARNLOG(log_nvme, "nvme {}: namespace {} has an invalid LBA format; ignored",
                               label(), id);
            continue;
        }
        auto it = std::find_if(namespaces.begin(), namespaces.end(),
                               [&](const auto& ns) { return ns->id == id; });
        Namespace* ns;
        if (it == namespaces.end()) {
            namespaces.push_back(std::make_unique<Namespace>());
            ns = namespaces.back().get();
            ns->id = id;
        } else {
            ns = it->get();
        }
        ns->identify = *data;
        ns->block_size_bytes = fmt.data_size_bytes();
        ns->num_blocks = data->nsze;
        ns->max_io_blocks = static_cast<uint32_t>(
            std::min<uint64_t>(max_transfer / ns->block_size_bytes, 65536));
        ns->active = ns->max_io_blocks != 0;
        ns->uuid = {};
        if (vs >= 0x10300) {  // the descriptor list is mandatory from NVMe 1.3
            auto rd = co_await admin(spec::make_identify(0, spec::Cns::ns_id_desc_list, id),
                                     desc.data(), desc.size());
            NVME_CO_TRY(rd);
            if (rd->ok()) ns->uuid = uuid_descriptor(desc);
        }
    }
    std::sort(namespaces.begin(), namespaces.end(),
              [](const auto& a, const auto& b) { return a->id < b->id; });
    co_return Result<void>{};
}

// ---- asynchronous events ------------------------------------------------------------------

namespace {

struct AerSlot {
    ControllerImpl* ctrl;
};

runtime::Task<void> handle_event(ControllerImpl* c, uint32_t dw0) {
    const spec::AsyncEventCompletion ev{dw0};
    const uint8_t lid = ev.log_page();
    STRATA_NOTICELOG(log_nvme, "nvme {}: async event type {} info {:#x} log page {:#x}",
                     c->label(), static_cast<int>(ev.type()), ev.info(), lid);
    // Reading the log page (RAE=0) re-arms events of this type.
    const size_t len = lid == static_cast<uint8_t>(spec::LogPage::changed_ns_list) ? 4096
                       : lid == static_cast<uint8_t>(spec::LogPage::smart_health) ? 512
                                                                                   : 64;
    if (lid != 0) {
        std::vector<uint8_t> buf(len);
        auto r = co_await c->admin(spec::make_get_log_page(0, static_cast<spec::LogPage>(lid),
                                                           spec::nsid_all, static_cast<uint32_t>(len)),
                                   buf.data(), len);
        if (!r || !r->ok())
            STRATA_WARNLOG(log_nvme, "nvme {}: reading log page {:#x} for an event failed",
                           c->label(), lid);
    }
    if (ev.type() == spec::AsyncEventType::notice &&
        ev.info() == static_cast<uint8_t>(spec::AsyncNoticeInfo::ns_attribute_changed) && !c->gone()) {
        auto r = co_await c->scan_namespaces();
        if (!r) {
            STRATA_ERRLOG(log_nvme, "nvme {}: namespace rescan failed: {}", c->label(),
                          r.error().message());
        } else if (c->ns_change_fn) {
            c->ns_change_fn(*c->self);
        }
    }
    if (!c->gone() && c->state != ControllerState::resetting) c->submit_aers();
}

void aer_done(void* ctx, const Completion& cpl) {
    auto* c = static_cast<ControllerImpl*>(ctx);
    if (c->aers_outstanding > 0) --c->aers_outstanding;
    if (!cpl.ok()) {
        // Aborted by a reset or a failing controller (the reset submits new ones), or the
        // controller refuses more (AER limit exceeded): nothing to re-arm.
        if (cpl.status != kStatusResetAborted && cpl.status != kStatusControllerGone)
            STRATA_WARNLOG(log_nvme, "nvme {}: async event request failed: {}",
                           c->label(), cpl.name().view());
        return;
    }
    ++c->stats.async_events;
    runtime::spawn(*c->admin_thread, handle_event(c, cpl.dw0), [] {});
}

}  // namespace

void ControllerImpl::submit_aers() {
    const uint32_t limit =
        std::min<uint32_t>(options.async_event_requests, uint32_t{ident.aerl} + 1);
    while (aers_outstanding < limit && !gone()) {
        Status s = admin_qp->submit(spec::make_async_event_request(0), nullptr, 0, 0, aer_done,
                                    this, /*no_timeout=*/true);
        if (!s.ok()) break;
        ++aers_outstanding;
    }
}

// ---- init ---------------------------------------------------------------------------------

runtime::Task<Result<void>> ControllerImpl::init() {
    cap = spec::Cap{bar.read64(spec::reg::cap)};
    vs = bar.read32(spec::reg::vs);
    if (cap.raw == ~uint64_t{0})
        co_return Error(Errc::device_removed, fmt::format("nvme {}: CAP reads all-ones",
                                                          label()));
    if ((cap.css() & spec::Cap::css_nvm) == 0)
        co_return Error(Errc::not_supported, fmt::format("nvme {}: NVM command set not supported "
                                                         "(CAP.CSS {:#x})", label(),
                                                         cap.css()));
    if (cap.mpsmin() != 0)
        co_return Error(Errc::not_supported, fmt::format("nvme {}: 4 KiB memory pages not "
                                                         "supported (CAP.MPSMIN {})",
                                                         label(), cap.mpsmin()));
    NVME_CO_TRY(co_await disable());

    const uint32_t admin_entries = std::clamp<uint32_t>(
        options.admin_queue_entries, 2, std::min(spec::max_admin_queue_entries, cap.max_queue_entries()));
    admin_qp = std::make_shared<QPairImpl>(*this, *admin_thread, 0, admin_entries, admin_entries - 1,
                                           0, options.admin_timeout_us);
    NVME_CO_TRY(admin_qp->allocate());
    admin_qp->bar = bar;
    admin_qp->sq_doorbell = doorbell_offset(0, false);
    admin_qp->cq_doorbell = doorbell_offset(0, true);
    admin_qp->start_pollers(true);
    NVME_CO_TRY(co_await enable());
    admin_qp->mark_connected();

    NVME_CO_TRY(co_await identify_controller());
    admin_qp->sgl = false;  // admin commands use PRPs (SGLs are for I/O commands only)
    NVME_CO_TRY(co_await init_queues_and_events());
    health_poller = admin_thread->register_poller(
        [](void* p) { return static_cast<ControllerImpl*>(p)->check_health(); }, this, "nvme_health",
        kHealthPollNs);
    STRATA_INFOLOG(log_nvme, "nvme {}: ready: {} namespace(s), {} I/O queues, max transfer {} KiB{}",
                   label(), namespaces.size(), io_queues_granted, max_transfer / 1024,
                   sgl ? ", SGL" : "");
    co_return Result<void>{};
}

runtime::Task<Result<void>> ControllerImpl::init_queues_and_events() {
    NVME_CO_TRY(co_await set_queue_count());
    NVME_CO_TRY(co_await scan_namespaces());
    auto aen = co_await admin(spec::make_set_features(
        0, spec::FeatureId::async_event_config,
        spec::AsyncEventConfigFeature{}.set_smart(0xFF).set_nan(1).raw));
    if (!aen || !aen->ok())
        STRATA_WARNLOG(log_nvme, "nvme {}: async event configuration refused; namespace changes "
                                 "will not be noticed", label());
    state = ControllerState::ready;
    submit_aers();
    co_return Result<void>{};
}

// ---- health, abort, reset, failure ---------------------------------------------------------

runtime::PollStatus ControllerImpl::check_health() {
    if (state != ControllerState::ready) return runtime::PollStatus::idle;
    const spec::Csts csts{bar.read32(spec::reg::csts)};
    if (csts.all_ones() || function->removed()) {
        on_hot_remove();
        return runtime::PollStatus::busy;
    }
    if (csts.cfs()) {
        request_reset("controller fatal status (CSTS.CFS)");
        return runtime::PollStatus::busy;
    }
    if (csts.rdy() == 0) {  // e.g. power loss: the controller came back in its reset state
        request_reset("controller no longer ready (CSTS.RDY 0)");
        return runtime::PollStatus::busy;
    }
    return runtime::PollStatus::idle;
}

void ControllerImpl::abort_command(uint16_t qid, uint16_t cid) {
    if (state != ControllerState::ready) return;
    ++stats.aborts_sent;
    auto run = [](ControllerImpl* c, uint16_t q, uint16_t id) -> runtime::Task<void> {
        auto r = co_await c->admin(spec::make_abort(0, q, id));
        // DW0 bit 0 set: the command was not aborted.
        if (!r || !r->ok() || (r->dw0 & 1u) != 0) {
            STRATA_WARNLOG(log_nvme, "nvme {}: abort of qpair {} cid {} did not work; resetting",
                           c->label(), q, id);
            c->request_reset("abort failed");
        }
    };
    runtime::spawn(*admin_thread, run(this, qid, cid), [] {});
}

void ControllerImpl::request_reset(const char* why) {
    if (gone() || resetting || state == ControllerState::initializing) return;
    if (fabrics) {
        fabrics_connection_lost(why);
        return;
    }
    STRATA_WARNLOG(log_nvme, "nvme {}: resetting the controller: {}", label(), why);
    runtime::spawn(*admin_thread, do_reset(), [](Result<void>) {});
}

runtime::Task<Result<void>> ControllerImpl::create_io_queues(QPairImpl& qp) {
    // A reset that starts while this runs aborts these admin commands and recreates the queues
    // itself: nothing here may touch the controller after that (a Delete I/O CQ would remove
    // the queue the reset just made).
    const uint64_t epoch = reset_epoch;
    auto cq = co_await admin(spec::make_create_io_cq(0, qp.qid, qp.entries, qp.cq_iova));
    if (reset_epoch != epoch) co_return Error(Errc::aborted, "overtaken by a reset");
    NVME_CO_TRY(cq);
    if (!cq->ok()) co_return admin_error(*this, "Create I/O Completion Queue", *cq);
    auto sq = co_await admin(spec::make_create_io_sq(0, qp.qid, qp.entries, qp.sq_iova, qp.qid));
    if (reset_epoch != epoch) co_return Error(Errc::aborted, "overtaken by a reset");
    NVME_CO_TRY(sq);
    if (!sq->ok()) {
        (void)co_await admin(spec::make_delete_io_cq(0, qp.qid));
        co_return admin_error(*this, "Create I/O Submission Queue", *sq);
    }
    co_return Result<void>{};
}

namespace {

void post_connect(const std::shared_ptr<QPairImpl>& qp, bool ok) {
    std::shared_ptr<QPairImpl> keep = qp;
    (void)qp->owner.post([keep, ok] {
        if (ok) keep->mark_connected();
        else keep->fail(kStatusControllerGone);
    });
}

}  // namespace

runtime::Task<Result<void>> ControllerImpl::do_reset() {
    resetting = true;
    ++reset_epoch;
    state = ControllerState::resetting;
    ++stats.resets;
    // A controller the driver enabled that reads CC.EN 0 was power-cycled (or reset itself):
    // its volatile write cache is gone. Counted before any qpair reconnects, so every
    // completion after this reset (a flush that then succeeds) comes after the count.
    if (!fabrics) {
        const uint32_t cc = bar.read32(spec::reg::cc);
        if (cc != 0xFFFFFFFFu && spec::Cc{cc}.en() == 0) {
            ++stats.power_losses;
            power_losses.fetch_add(1, std::memory_order_release);
            STRATA_WARNLOG(log_nvme,
                           "nvme {}: the controller lost power (CC.EN 0): writes not "
                           "yet flushed may be lost",
                           label());
        }
    }

    // 1. Every qpair fails its outstanding commands on its owner, then acknowledges.
    struct Barrier {
        uint32_t remaining = 1;
        runtime::AsyncResult<int> done;
        void arrive() {
            if (--remaining == 0) done.set(0);
        }
    } barrier;
    for (auto& qp : io_qps) {
        ++barrier.remaining;
        std::shared_ptr<QPairImpl> keep = qp;
        runtime::Thread* admin = admin_thread;
        Barrier* b = &barrier;
        (void)qp->owner.post([keep, admin, b] {
            keep->disconnect(kStatusResetAborted);
            (void)admin->post([b] { b->arrive(); });
        });
    }
    barrier.arrive();
    co_await barrier.done;

    // 2. The admin queue (AERs included) goes the same way.
    aers_outstanding = 0;
    admin_qp->disconnect(kStatusResetAborted);

    Result<void> result = co_await disable();
    if (result) result = co_await enable();
    if (result) {
        admin_qp->mark_connected();
        result = co_await set_queue_count();
    }
    if (result) result = co_await scan_namespaces();
    if (result) {
        // free_io_qpair's message runs at this loop's suspensions and erases from io_qps: walk
        // a copy, and skip a qpair freed meanwhile (its queues are not recreated).
        const std::vector<std::shared_ptr<QPairImpl>> to_recreate = io_qps;
        for (const auto& qp : to_recreate) {
            if (std::find(io_qps.begin(), io_qps.end(), qp) == io_qps.end()) continue;
            if (qp->qid > io_queues_granted) {
                post_connect(qp, false);
                continue;
            }
            auto r = co_await create_io_queues(*qp);
            if (!r) {
                result = r;
                break;
            }
            post_connect(qp, true);
        }
    }
    resetting = false;
    if (!result) {
        ++stats.failed_resets;
        fail_controller(result.error().code(),
                        fmt::format("reset failed: {}", result.error().message()).c_str());
    } else {
        state = ControllerState::ready;
        (void)co_await admin(spec::make_set_features(
            0, spec::FeatureId::async_event_config,
            spec::AsyncEventConfigFeature{}.set_smart(0xFF).set_nan(1).raw));
        submit_aers();
        STRATA_NOTICELOG(log_nvme, "nvme {}: reset complete, {} qpair(s) reconnected",
                         label(), io_qps.size());
        if (ns_change_fn) ns_change_fn(*self);
    }
    auto waiters = std::move(reset_waiters);
    reset_waiters.clear();
    for (auto* w : waiters) w->set(result);
    co_return result;
}

void ControllerImpl::fail_controller(Errc why, const char* what) {
    if (state == ControllerState::failed || state == ControllerState::detached) return;
    if (state != ControllerState::removed) state = ControllerState::failed;
    STRATA_ERRLOG(log_nvme, "nvme {}: controller {}: {}", label(), state_name(state),
                  what);
    for (auto& qp : io_qps) {
        std::shared_ptr<QPairImpl> keep = qp;
        (void)qp->owner.post([keep] { keep->fail(kStatusControllerGone); });
    }
    if (admin_qp) admin_qp->fail(kStatusControllerGone);
    aers_outstanding = 0;
    if (failure_fn) failure_fn(*self, why);
}

void ControllerImpl::on_hot_remove() {
    if (state == ControllerState::removed || state == ControllerState::detached) return;
    state = ControllerState::removed;
    fail_controller(Errc::device_removed, "hot removed");
}

runtime::Task<void> ControllerImpl::delete_io_queues(std::shared_ptr<QPairImpl> qp) {
    if (resetting) {
        // The reset may have recreated this qpair's queues before the free arrived: delete them
        // once it is over, or the qid would be handed out again while the device still has it.
        runtime::AsyncResult<Result<void>> reset_done;
        reset_waiters.push_back(&reset_done);
        (void)co_await reset_done;
    }
    if (!gone() && !fabrics) {  // fabrics: closing the connection deleted the queue
        auto sq = co_await admin(spec::make_delete_io_sq(0, qp->qid));
        if (sq && sq->ok()) (void)co_await admin(spec::make_delete_io_cq(0, qp->qid));
    }
    if (qp->qid < qid_used.size()) qid_used[qp->qid] = false;
}

// ---- Controller ---------------------------------------------------------------------------

Controller::Controller(std::unique_ptr<ControllerImpl> impl) : impl_(std::move(impl)) {}

Controller::~Controller() {
    ControllerImpl& c = *impl_;
    *c.alive = false;
    if (c.state == ControllerState::detached) return;
    if (c.health_poller) c.admin_thread->unregister_poller(c.health_poller);
    if (c.keep_alive_poller) c.admin_thread->unregister_poller(c.keep_alive_poller);
    if (c.admin_qp) {
        c.admin_qp->fail(kStatusControllerGone);
        c.admin_qp->stop_pollers();
    }
    if (c.function) (void)c.function->detach();
    c.state = ControllerState::detached;
}

runtime::Task<Result<std::unique_ptr<Controller>>> Controller::attach(const env::PciAddress& address,
                                                                     ControllerOptions options) {
    runtime::Thread* thread = runtime::current_thread();
    STRATA_ASSERT_MSG(thread != nullptr, "nvme::Controller::attach outside a Thread");
    auto impl = std::make_unique<ControllerImpl>();
    impl->address = address;
    impl->name = address.to_string();
    impl->trid.trtype = TrType::pcie;
    impl->trid.trstring = "PCIE";
    impl->trid.traddr = address.to_string();
    impl->options = options;
    impl->admin_thread = thread;
    auto fn = env::claim(address);
    if (!fn) co_return fn.error();
    impl->function = std::move(*fn);
    auto bar = impl->function->map_bar(0);
    if (!bar) co_return Error(bar.code(), fmt::format("nvme {}: BAR0: {}", address.to_string(),
                                                      bar.error().message()));
    impl->bar = *bar;
    if (impl->bar.size_bytes() < 0x2000)
        co_return Error(Errc::not_supported, fmt::format("nvme {}: BAR0 is {} bytes, too small for "
                                                         "the registers and doorbells",
                                                         address.to_string(), impl->bar.size_bytes()));
    if (auto cmd = impl->function->config_read16(kPciCommandOffset); cmd) {
        (void)impl->function->config_write16(
            kPciCommandOffset, static_cast<uint16_t>(*cmd | kPciCommandMemory | kPciCommandBusMaster));
    }
    std::unique_ptr<Controller> ctrl(new Controller(std::move(impl)));
    ControllerImpl* c = ctrl->impl_.get();
    c->self = ctrl.get();
    c->function->set_hot_remove_target(
        thread, [](void* p) { static_cast<ControllerImpl*>(p)->on_hot_remove(); }, c);
    auto r = co_await c->init();
    if (!r) {
        STRATA_ERRLOG(log_nvme, "nvme {}: attach failed: {}", address.to_string(),
                      r.error().message());
        co_return r.error();  // ~Controller releases the function
    }
    co_return ctrl;
}

const env::PciAddress& Controller::address() const noexcept { return impl_->address; }
const TransportId& Controller::transport_id() const noexcept { return impl_->trid; }
bool Controller::is_fabrics() const noexcept { return impl_->fabrics; }
const std::string& Controller::host_nqn() const noexcept { return impl_->hostnqn; }
uint16_t Controller::cntlid() const noexcept { return impl_->cntlid; }
runtime::Thread& Controller::admin_thread() const noexcept { return *impl_->admin_thread; }
ControllerState Controller::state() const noexcept { return impl_->state; }
const spec::IdentifyController& Controller::identify() const noexcept { return impl_->ident; }
const spec::Cap& Controller::cap() const noexcept { return impl_->cap; }
uint32_t Controller::version() const noexcept { return impl_->vs; }
uint32_t Controller::io_queues_granted() const noexcept { return impl_->io_queues_granted; }
uint64_t Controller::max_transfer_bytes() const noexcept { return impl_->max_transfer; }
bool Controller::sgl_supported() const noexcept { return impl_->sgl; }
const ControllerStats& Controller::stats() const noexcept { return impl_->stats; }
uint64_t Controller::power_losses() const noexcept {
    return impl_->power_losses.load(std::memory_order_acquire);
}

std::vector<const Namespace*> Controller::namespaces() const {
    std::vector<const Namespace*> out;
    for (const auto& ns : impl_->namespaces)
        if (ns->active) out.push_back(ns.get());
    return out;
}

const Namespace* Controller::find_namespace(uint32_t nsid) const noexcept {
    for (const auto& ns : impl_->namespaces)
        if (ns->id == nsid && ns->active) return ns.get();
    return nullptr;
}

void Controller::on_namespace_change(std::function<void(Controller&)> fn) {
    impl_->ns_change_fn = std::move(fn);
}
void Controller::on_failure(std::function<void(Controller&, Errc)> fn) {
    impl_->failure_fn = std::move(fn);
}

void Controller::add_admin_error_injection(const ErrorInjection& e) {
    impl_->admin_qp->add_injection(e);
}
void Controller::remove_admin_error_injection(uint8_t opc) {
    impl_->admin_qp->remove_injection(opc);
}

runtime::Task<Result<Completion>> Controller::admin(spec::Sqe sqe, void* buf, size_t len) {
    if (len > impl_->max_transfer)
        co_return Error(Errc::invalid_argument, "admin data larger than the max transfer");
    co_return co_await impl_->admin(sqe, buf, len);
}

runtime::Task<Result<void>> Controller::get_log_page(spec::LogPage lid, uint32_t nsid, void* buf,
                                                     size_t len, uint64_t offset) {
    if (len == 0 || len % 4 != 0 || len > impl_->max_transfer)
        co_return Error(Errc::invalid_argument, "log page length must be a positive multiple of 4");
    auto r = co_await impl_->admin(
        spec::make_get_log_page(0, lid, nsid, static_cast<uint32_t>(len), offset), buf, len);
    NVME_CO_TRY(r);
    if (!r->ok()) co_return admin_error(*impl_, "Get Log Page", *r);
    co_return Result<void>{};
}

Result<std::unique_ptr<QPair>> Controller::alloc_io_qpair(runtime::Thread& owner,
                                                          const QPairOptions& options) {
    ControllerImpl& c = *impl_;
    if (c.gone()) return Error(Errc::device_removed, fmt::format("nvme {}: controller is {}",
                                                                  c.label(),
                                                                  state_name(c.state)));
    uint16_t qid = 0;
    const uint32_t nq = std::min<uint32_t>(c.io_queues_granted,
                                           static_cast<uint32_t>(c.qid_used.size()) - 1);
    const uint32_t first = c.fabrics && c.next_fabrics_qid <= nq ? c.next_fabrics_qid : 1;
    for (uint32_t k = 0; k < nq; ++k) {
        const uint32_t i = (first - 1 + k) % nq + 1;
        if (!c.qid_used[i]) {
            qid = static_cast<uint16_t>(i);
            break;
        }
    }
    if (c.fabrics && qid != 0) c.next_fabrics_qid = qid % nq + 1;
    if (qid == 0)
        return Error(Errc::no_space, fmt::format("nvme {}: all {} I/O queues are in use",
                                                 c.label(), c.io_queues_granted));
    const uint32_t entries = std::clamp<uint32_t>(options.queue_entries, 2, c.cap.max_queue_entries());
    const uint32_t requests = options.requests != 0 ? std::min<uint32_t>(options.requests, 65535)
                                                    : entries - 1;
    auto qp = std::make_shared<QPairImpl>(c, owner, qid, entries, requests,
                                          options.max_completions_per_poll, c.options.timeout_us);
    if (c.fabrics) {
        qp->tcp = std::make_unique<TcpConn>();
        qp->tcp->want_hdgst = c.options.header_digest;
        qp->tcp->want_ddgst = c.options.data_digest;
        qp->tcp->in_capsule_max = c.ioccsz_bytes;
    }
    if (Status s = qp->allocate(); !s.ok())
        return Error(s.code(), fmt::format("nvme {}: qpair memory: {}", c.label(),
                                           s.to_string()));
    qp->bar = c.bar;
    qp->sq_doorbell = c.doorbell_offset(qid, false);
    qp->cq_doorbell = c.doorbell_offset(qid, true);
    qp->sgl = c.sgl;
    c.qid_used[qid] = true;
    c.io_qps.push_back(qp);
    const bool own = options.own_poller;
    {
        std::shared_ptr<QPairImpl> keep = qp;
        (void)owner.post([keep, own] { keep->start_pollers(own); });
    }
    auto create = [](ControllerImpl* ci, std::shared_ptr<QPairImpl> q) -> runtime::Task<void> {
        if (ci->resetting) co_return;  // the reset creates every queue in its list
        const uint64_t epoch = ci->reset_epoch;
        // (Not a conditional expression: GCC 12 miscompiles co_await inside ?:.)
        Result<void> r;
        if (ci->fabrics) r = co_await ci->fabrics_connect_queue(q);
        else r = co_await ci->create_io_queues(*q);
        if (ci->reset_epoch != epoch) co_return;  // a reset took the qpair over
        if (q->link == Link::freeing) co_return;
        if (!r)
            STRATA_ERRLOG(log_nvme, "nvme {}: qpair {}: {}", ci->label(), q->qid,
                          r.error().message());
        post_connect(q, r.ok());
    };
    runtime::spawn(*c.admin_thread, create(&c, qp), [] {});
    return std::unique_ptr<QPair>(new QPair(qp));
}

void Controller::free_io_qpair(std::unique_ptr<QPair> qpair, runtime::MsgFn done, void* ctx) {
    if (!qpair) return;
    std::shared_ptr<QPairImpl> qp = qpair->impl_;
    STRATA_ASSERT_MSG(runtime::current_thread() == &qp->owner,
                      "free_io_qpair must run on the qpair's owner Thread");
    qp->stop_pollers();
    qp->fail(kStatusResetAborted);
    qp->link = Link::freeing;
    qpair.reset();
    ControllerImpl* c = impl_.get();
    runtime::Thread* owner = &qp->owner;
    (void)c->admin_thread->post([c, qp, owner, done, ctx] {
        std::erase(c->io_qps, qp);
        ++c->qpairs_deleting;
        auto run = [](ControllerImpl* ci, std::shared_ptr<QPairImpl> q, runtime::Thread* o,
                      runtime::MsgFn d, void* x) -> runtime::Task<void> {
            co_await ci->delete_io_queues(q);
            --ci->qpairs_deleting;
            q.reset();
            if (d) (void)o->send(d, x);
        };
        runtime::spawn(*c->admin_thread, run(c, qp, owner, done, ctx), [] {});
    });
}

runtime::Task<Result<void>> Controller::reset() {
    ControllerImpl& c = *impl_;
    if (c.gone())
        co_return Error(Errc::device_removed, fmt::format("nvme {}: controller is {}",
                                                          c.label(), state_name(c.state)));
    if (c.resetting) {
        runtime::AsyncResult<Result<void>> waiter;
        c.reset_waiters.push_back(&waiter);
        co_return co_await waiter;
    }
    if (c.fabrics) co_return co_await c.fabrics_reset("reset requested");
    co_return co_await c.do_reset();
}

runtime::Task<Result<void>> Controller::detach() {
    ControllerImpl& c = *impl_;
    if (c.state == ControllerState::detached) co_return Result<void>{};
    if (!c.io_qps.empty() || c.qpairs_deleting > 0)
        co_return Error(Errc::busy, fmt::format("nvme {}: {} qpair(s) still allocated, {} being deleted",
                                                c.label(), c.io_qps.size(),
                                                c.qpairs_deleting));
    if (c.health_poller) c.admin_thread->unregister_poller(c.health_poller);
    if (c.fabrics) {
        if (c.keep_alive_poller) c.admin_thread->unregister_poller(c.keep_alive_poller);
        if (!c.gone() && c.options.shutdown_on_detach && c.admin_qp &&
            c.admin_qp->link == Link::connected)
            co_await c.fabrics_shutdown();
        if (c.admin_qp) {
            c.admin_qp->fail(kStatusControllerGone);
            c.admin_qp->stop_pollers();
        }
        c.state = ControllerState::detached;
        co_return Result<void>{};
    }
    if (!c.gone() && c.options.shutdown_on_detach) {
        spec::Cc cc{c.bar.read32(spec::reg::cc)};
        cc.set_shn(spec::Cc::shn_normal);
        c.bar.write32(spec::reg::cc, cc.raw);
        const uint64_t deadline =
            runtime::now_ns() + std::max<uint64_t>(c.cap.to(), 1) * 500'000'000ull;
        for (;;) {
            const spec::Csts csts{c.bar.read32(spec::reg::csts)};
            if (csts.all_ones() || csts.shst() == spec::Csts::shst_complete) break;
            if (runtime::now_ns() >= deadline) {
                STRATA_WARNLOG(log_nvme, "nvme {}: shutdown did not complete within CAP.TO",
                               c.label());
                break;
            }
            co_await runtime::sleep_for(kReadyPollNs);
        }
    }
    if (c.admin_qp) {
        c.admin_qp->fail(kStatusControllerGone);
        c.admin_qp->stop_pollers();
    }
    auto r = c.function->detach();
    c.state = ControllerState::detached;
    co_return r;
}

}  // namespace strata::nvme
