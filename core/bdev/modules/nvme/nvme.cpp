#include "nvme/nvme.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/env/memory.h>
#include <strata/nvme/qpair.h>
#include <strata/nvme/spec/log_pages.h>
#include <strata/runtime/host.h>
#include <strata/runtime/task.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_nvme);

namespace {
void write_config(nlohmann::json& methods);
void fini(std::function<void()> done);
}  // namespace

const Module kNvmeModule{"nvme", nullptr, &write_config, &fini};

namespace {

class NvmeCtrlr;

struct QpairState;

// What a BdevIo carries through the driver (module_ctx).
struct IoCtx {
    const nvme::Namespace* ns;
    QpairState* st;           // the channel's state, for a retry from the completion
    uint16_t last_status;     // the NVMe status (SCT<<8 | SC) of the last failed attempt
    int32_t retries;          // retries counted against bdev_retry_count
    nvme::spec::DsmRange range;
};

// Per-Thread state of one controller: the qpair (allocated on the admin Thread, arriving by
// message) and the I/O that waits for it or for a free driver request.
struct QpairState {
    std::unique_ptr<nvme::QPair> qp;
    nvme::Controller* ctrl = nullptr;
    bool failed = false;
    Errc failure = Errc::ok;
    int32_t retry_count = kDefaultBdevRetryCount;  // bdev_retry_count when the channel was made
    IntrusiveList<BdevIo, QueuedTag> waiting;
    // I/O to resubmit once the qpair is connected again: ended by a reset or connection loss
    // (or another retryable status), or submitted while the qpair was not connected. Fails
    // with its last status when the qpair fails for good or fast_io_fail_timeout_sec passes.
    IntrusiveList<BdevIo, QueuedTag> retry;
};

class NvmeChannel final : public runtime::IoChannel {
public:
    NvmeChannel(NvmeCtrlr& c, runtime::Thread& t);
    ~NvmeChannel() override;
    std::shared_ptr<QpairState> state = std::make_shared<QpairState>();
    runtime::Poller* retry_poller = nullptr;  // resubmits I/O that found the driver's pool empty
};

class NvmeCtrlr final : public runtime::IoDevice {
public:
    NvmeCtrlr(std::string n, std::unique_ptr<nvme::Controller> c, uint32_t entries)
        : IoDevice("bdev_nvme:" + n), name(std::move(n)), ctrl(std::move(c)), queue_entries(entries) {}

    std::string name;
    std::unique_ptr<nvme::Controller> ctrl;
    uint32_t queue_entries;
    std::vector<std::string> bdevs;  // registered namespace bdevs
    bool detaching = false;
    // bdev_nvme_disable_controller: no I/O qpairs (channels hold their I/O until enabled);
    // switching while a disable or enable is under way.
    bool disabled = false;
    bool switching = false;
    // The same for the channels' Threads: a qpair arriving while disabled is freed at once.
    std::shared_ptr<std::atomic<bool>> held = std::make_shared<std::atomic<bool>>(false);
    int32_t retry_count = kDefaultBdevRetryCount;  // bdev_retry_count at attach
    uint32_t io_queue_requests = 0;                // io_queue_requests at attach
    NvmeAttachOptions attach;                      // as given, for save_config

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& t) override {
        return std::make_unique<NvmeChannel>(*this, t);
    }
};

// The attached controllers of one Host (App), touched on its app (admin) Thread only.
struct Ctrlrs {
    std::map<std::string, std::unique_ptr<NvmeCtrlr>> by_name;
};
std::map<std::string, std::unique_ptr<NvmeCtrlr>>& ctrlrs() {
    return runtime::current_host().get<Ctrlrs>().by_name;
}

void submit_io(QpairState& st, BdevIo& io) noexcept;

uint16_t raw_status(nvme::spec::StatusField s) noexcept {
    return static_cast<uint16_t>((s.sct() << 8) | s.sc());
}

// SPDK's bdev_nvme_io_complete_nvme_status: a failed command is retried unless it says Do Not
// Retry, was aborted on request (an abort or a timeout's abort) or used up bdev_retry_count
// (-1: no limit; 0: no retries at all). A path status or "aborted: SQ deletion" (what a reset
// or connection loss ends outstanding commands with) waits for the reconnect and does not
// count as a retry; any other status counts.
bool should_retry(IoCtx& c, const nvme::Completion& cpl) noexcept {
    const nvme::spec::StatusField s = cpl.status;
    if (s.dnr() != 0 || s == nvme::spec::make_status(nvme::spec::GenericStatus::abort_requested))
        return false;
    if (c.st->retry_count != -1 && c.retries >= c.st->retry_count) return false;
    // The driver's own timeout status is a path status but counts: a target that never answers
    // must not have the command resent forever.
    const bool path = (s.sct() == 3 && s != nvme::kStatusTimedOut) ||
                      (s.sct() == 0 && s.sc() == uint8_t(nvme::spec::GenericStatus::aborted_sq_deletion));
    if (!path) ++c.retries;
    return true;
}

void io_done(void* ctx, const nvme::Completion& cpl) {
    auto* io = static_cast<BdevIo*>(ctx);
    const uint16_t raw = raw_status(cpl.status);
    IoCtx& c = *io->module_ctx<IoCtx>();
    if (!cpl.ok() && should_retry(c, cpl)) {
        c.last_status = raw;
        c.st->retry.push_back(*io);  // the channel's poller resubmits it (never from here)
        return;
    }
    io->complete(IoStatus{cpl.errc(), raw});
}

// The waiting-for-reconnect list: resubmitted when the qpair is connected, failed with each
// I/O's last status when it can no longer wait (controller failed, fast_io_fail), else kept.
// Returns whether anything left the list.
bool drain_retry(QpairState& st) noexcept {
    if (st.retry.empty() || !st.qp) return false;
    const Errc e = st.qp->submit_state();
    IntrusiveList<BdevIo, QueuedTag> again;
    if (e != Errc::ok) {
        again.splice_back(st.retry);
        while (BdevIo* io = again.pop_front()) {
            const uint16_t raw = io->module_ctx<IoCtx>()->last_status;
            io->complete(IoStatus{e, raw});
        }
        return true;
    }
    if (!st.qp->connected()) return false;
    again.splice_back(st.retry);
    while (BdevIo* io = again.pop_front()) submit_io(st, *io);
    return true;
}

void retry_waiting(QpairState& st) noexcept {
    if (st.waiting.empty() || !st.qp) return;
    IntrusiveList<BdevIo, QueuedTag> again;
    again.splice_back(st.waiting);
    while (BdevIo* io = again.pop_front()) submit_io(st, *io);
}

void submit_io(QpairState& st, BdevIo& io) noexcept {
    if (st.failed) {
        io.complete(st.failure);
        return;
    }
    if (!st.qp || !st.waiting.empty()) {
        st.waiting.push_back(io);
        return;
    }
    IoCtx& c = *io.module_ctx<IoCtx>();
    if (!st.qp->connected() && st.retry_count != 0 && st.qp->submit_state() == Errc::ok) {
        // Reconnecting: wait in the channel, go out after the reconnect (or fail with it).
        c.last_status = raw_status(nvme::kStatusResetAborted);
        st.retry.push_back(io);
        return;
    }
    const nvme::Namespace& ns = *c.ns;
    nvme::QPair& qp = *st.qp;
    const auto iov = io.iovs();
    const auto blocks = static_cast<uint32_t>(io.num_blocks());
    Status s;
    switch (io.type()) {
        case IoType::read:
            s = qp.readv(ns, iov.data(), static_cast<int>(iov.size()), io.offset_blocks(), blocks, io_done, &io);
            break;
        case IoType::write:
            s = qp.writev(ns, iov.data(), static_cast<int>(iov.size()), io.offset_blocks(), blocks, io_done, &io);
            break;
        case IoType::compare:
            if (iov.size() != 1) {
                s = Status(Errc::not_supported, "vectored compare");
                break;
            }
            s = qp.compare(ns, iov[0].iov_base, io.offset_blocks(), blocks, io_done, &io);
            break;
        case IoType::flush:
            s = qp.flush(ns, io_done, &io);
            break;
        case IoType::write_zeroes:
            s = qp.write_zeroes(ns, io.offset_blocks(), blocks, io_done, &io);
            break;
        case IoType::unmap:
            c.range = nvme::spec::DsmRange{0, blocks, io.offset_blocks()};
            s = qp.deallocate(ns, std::span<const nvme::spec::DsmRange>(&c.range, 1), io_done, &io);
            break;
        default:
            s = Status(Errc::not_supported, "I/O type");
            break;
    }
    if (s.ok()) return;
    if (s.code() == Errc::busy) {  // the driver's request pool is empty: retry on a completion
        st.waiting.push_back(io);
        return;
    }
    io.complete(s.code());
}

runtime::PollStatus retry_poll(void* p) {
    auto* st = static_cast<QpairState*>(p);
    const bool moved = drain_retry(*st);
    if (st->waiting.empty() || !st->qp) return moved ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    const size_t before = st->waiting.size();
    retry_waiting(*st);
    return moved || st->waiting.size() < before ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

// Asks the admin Thread for an I/O qpair for the channel of `owner`; it arrives by message and
// the I/O waiting for it goes out.
void request_qpair(const NvmeCtrlr& c, std::weak_ptr<QpairState> weak, runtime::Thread* owner) {
    nvme::Controller* ctrl = c.ctrl.get();
    const uint32_t entries = c.queue_entries;
    const uint32_t requests = c.io_queue_requests;
    std::shared_ptr<std::atomic<bool>> held = c.held;
    // qpairs are allocated on the admin Thread; the result comes back by message.
    (void)ctrl->admin_thread().post([ctrl, owner, weak, entries, requests, held] {
        nvme::QPairOptions o;
        o.queue_entries = entries;
        o.requests = requests;
        auto r = ctrl->alloc_io_qpair(*owner, o);
        if (!r) {
            STRATA_ERRLOG(log_bdev_nvme, "nvme {}: no qpair for Thread {}: {}",
                          ctrl->address().to_string(), owner->name(), r.error().message());
        }
        const Errc code = r.code();
        std::unique_ptr<nvme::QPair> qp = r ? std::move(*r) : nullptr;
        (void)owner->post([weak, ctrl, code, held, qp = std::move(qp)]() mutable {
            auto st = weak.lock();
            // The channel went away meanwhile, the controller was disabled meanwhile (enable
            // asks again), or an older request's qpair arrived after a newer one's.
            if (!st || (qp && (held->load() || st->qp))) {
                if (qp) ctrl->free_io_qpair(std::move(qp));
                return;
            }
            if (!qp) {
                st->failed = true;
                st->failure = code;
                while (BdevIo* io = st->waiting.pop_front()) io->complete(code);
                return;
            }
            st->qp = std::move(qp);
            retry_waiting(*st);
        });
    });
}

NvmeChannel::NvmeChannel(NvmeCtrlr& c, runtime::Thread& t) {
    state->ctrl = c.ctrl.get();
    state->retry_count = c.retry_count;
    retry_poller = t.register_poller(&retry_poll, state.get(), "bdev_nvme_retry");
    // A disabled controller's channels get their qpair when it is enabled.
    if (!c.disabled) request_qpair(c, state, &t);
}

NvmeChannel::~NvmeChannel() {
    thread().unregister_poller(retry_poller);
    while (BdevIo* io = state->waiting.pop_front()) io->complete(Errc::aborted);
    while (BdevIo* io = state->retry.pop_front()) io->complete(Errc::aborted);
    if (state->qp) state->ctrl->free_io_qpair(std::move(state->qp));
}

std::string trim(const char* p, size_t n) {
    std::string s(p, n);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
}

class NvmeBdev final : public Bdev {
public:
    NvmeBdev(Properties p, NvmeCtrlr& c, const nvme::Namespace& ns)
        : Bdev(kNvmeModule, std::move(p)), ctrlr_(c), ns_(ns) {}

    bool supports(IoType t) const noexcept override {
        const uint16_t oncs = ctrlr_.ctrl->identify().oncs;
        switch (t) {
            case IoType::read:
            case IoType::write:
            case IoType::flush:
            case IoType::reset:
                return true;
            case IoType::compare: return (oncs & 0x1) != 0;
            case IoType::unmap: return (oncs & 0x4) != 0;         // Dataset Management
            case IoType::write_zeroes: return (oncs & 0x8) != 0;  // Write Zeroes
            default: return false;
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return ctrlr_; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        auto& st = *static_cast<NvmeChannel&>(ch).state;
        if (io.type() == IoType::reset) {
            nvme::Controller* ctrl = ctrlr_.ctrl.get();
            runtime::Thread* owner = &io.thread();
            BdevIo* p = &io;
            (void)ctrl->admin_thread().post([ctrl, owner, p] {
                runtime::spawn(ctrl->admin_thread(), ctrl->reset(), [owner, p](Result<void> r) {
                    const Errc code = r.code();
                    (void)owner->post([p, code] { p->complete(code); });
                });
            });
            return;
        }
        IoCtx& c = *io.module_ctx<IoCtx>();
        c.ns = &ns_;
        c.st = &st;
        c.retries = 0;
        c.last_status = 0;
        submit_io(st, io);
    }

    void info_json(nlohmann::json& out) const override {
        const auto& id = ctrlr_.ctrl->identify();
        out["nvme"] = {{"ctrlr_name", ctrlr_.name},
                       {"pci_address", ctrlr_.ctrl->address().to_string()},
                       {"nsid", ns_.id},
                       {"model_number", trim(id.mn.data(), id.mn.size())},
                       {"serial_number", trim(id.sn.data(), id.sn.size())},
                       {"firmware_revision", trim(id.fr.data(), id.fr.size())},
                       {"vs", {{"nvme_version", fmt::format("{}.{}", ctrlr_.ctrl->version() >> 16,
                                                            (ctrlr_.ctrl->version() >> 8) & 0xFF)}}},
                       {"state", nvme::state_name(ctrlr_.ctrl->state())}};
    }
    void config_json(nlohmann::json&) const override {}  // the controller's entry covers it
    uint64_t write_cache_losses() const noexcept override {
        return ctrlr_.ctrl ? ctrlr_.ctrl->power_losses() : 0;
    }

private:
    NvmeCtrlr& ctrlr_;
    const nvme::Namespace& ns_;
};

std::string uuid_text(const uint8_t* b) {
    return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
                       "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                       b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                       b[12], b[13], b[14], b[15]);
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& a) {
    return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

// The namespace's own identity, as SPDK's bdev_nvme takes it, so a bdev keeps its UUID across
// restarts and hosts: the Namespace UUID (descriptor list), else the NGUID, else the EUI-64 in
// the first 8 bytes; "" when the device reports none (the layer then draws a random one).
std::string namespace_uuid(const nvme::Namespace& ns) {
    if (!all_zero(ns.uuid)) return uuid_text(ns.uuid.data());
    if (!all_zero(ns.identify.nguid)) return uuid_text(ns.identify.nguid.data());
    if (!all_zero(ns.identify.eui64)) {
        std::array<uint8_t, 16> b{};
        std::copy(ns.identify.eui64.begin(), ns.identify.eui64.end(), b.begin());
        return uuid_text(b.data());
    }
    return {};
}

Result<void> add_namespace_bdev(NvmeCtrlr& c, const nvme::Namespace& ns) {
    Bdev::Properties p;
    p.uuid = namespace_uuid(ns);
    p.name = fmt::format("{}n{}", c.name, ns.id);
    p.product_name = "NVMe disk";
    p.block_size = ns.block_size_bytes;
    p.num_blocks = ns.num_blocks;
    p.max_io_blocks = ns.max_io_blocks;
    p.required_alignment = 4;  // PRP entries are dword aligned
    p.needs_dma_memory = true;
    p.write_cache = c.ctrl->identify().vwc_present();
    p.max_unmap_blocks = 0xFFFFFFFFu;
    auto r = register_bdev(std::make_unique<NvmeBdev>(std::move(p), c, ns));
    if (!r) return r.error();
    c.bdevs.push_back((*r)->name());
    return {};
}

void sync_namespaces(NvmeCtrlr& c) {
    // New namespaces get a bdev; vanished ones are unregistered.
    for (const nvme::Namespace* ns : c.ctrl->namespaces()) {
        const std::string n = fmt::format("{}n{}", c.name, ns->id);
        if (std::find(c.bdevs.begin(), c.bdevs.end(), n) != c.bdevs.end()) continue;
        if (auto r = add_namespace_bdev(c, *ns); !r)
            STRATA_ERRLOG(log_bdev_nvme, "nvme {}: namespace {}: {}", c.name, ns->id, r.error().message());
    }
    for (auto it = c.bdevs.begin(); it != c.bdevs.end();) {
        const uint32_t nsid = static_cast<uint32_t>(std::stoul(it->substr(c.name.size() + 1)));
        if (c.ctrl->find_namespace(nsid) == nullptr) {
            unregister_bdev(*it, [](Result<void>) {});
            it = c.bdevs.erase(it);
        } else {
            ++it;
        }
    }
}

// bdev_nvme_set_hotplug: a timed poller on the Thread that enabled it (the app Thread) scans
// the PCI bus for NVMe functions (class 01:08:02): a function no controller uses is attached as
// HotInNvme<n> (SPDK's naming), a PCIe controller whose function left the bus is detached.
struct Hotplug {
    bool enabled = false;
    uint64_t period_us = 100'000;  // SPDK's default
    runtime::Poller* poller = nullptr;
    runtime::Thread* thread = nullptr;
    std::vector<env::PciAddress> attaching;
    uint32_t next_index = 0;
    bool scanning = false;
};
Hotplug& hotplug() {
    return runtime::current_host().get<Hotplug>();
}

void stop_hotplug_poller() {
    Hotplug& h = hotplug();
    if (h.poller == nullptr) return;
    STRATA_ASSERT_MSG(runtime::current_thread() == h.thread,
                      "hotplug poller stopped off its Thread");
    h.thread->unregister_poller(h.poller);
    h.poller = nullptr;
    h.thread = nullptr;
}

runtime::PollStatus hotplug_poll(void*) {
    Hotplug& h = hotplug();
    if (h.scanning) return runtime::PollStatus::idle;
    env::PciFilter nvme_class;
    nvme_class.class_code = 0x010802;
    auto found = env::enumerate(nvme_class);
    if (!found) return runtime::PollStatus::idle;
    bool busy = false;
    // Removed: PCIe controllers whose function is gone.
    std::vector<std::string> gone;
    for (auto& [name, c] : ctrlrs()) {
        if (c->detaching || c->ctrl->is_fabrics()) continue;
        // A copy, not the structured binding: clang 14 (the fuzz build) cannot capture those.
        const auto address = c->ctrl->address();
        const bool present = std::any_of(found->begin(), found->end(),
                                         [&](const auto& f) { return f.address == address; });
        if (!present) gone.push_back(name);
    }
    for (const auto& name : gone) {
        STRATA_NOTICELOG(log_bdev_nvme, "hotplug: {} left the bus, detaching", name);
        nvme_detach(name, [name](Result<void> r) {
            if (!r)
                STRATA_ERRLOG(log_bdev_nvme, "hotplug: detach {}: {}", name, r.error().message());
        });
        busy = true;
    }
    // Inserted: functions no controller uses.
    for (const auto& f : *found) {
        if (!f.claimable) continue;
        const bool used = std::any_of(ctrlrs().begin(), ctrlrs().end(), [&](const auto& kv) {
            return !kv.second->ctrl->is_fabrics() && kv.second->ctrl->address() == f.address;
        });
        const bool pending =
            std::find(h.attaching.begin(), h.attaching.end(), f.address) != h.attaching.end();
        if (used || pending) continue;
        NvmeAttachOptions o = nvme_default_attach_options();
        do {
            o.name = fmt::format("HotInNvme{}", h.next_index++);
        } while (ctrlrs().count(o.name) != 0);
        o.address = f.address;
        h.attaching.push_back(f.address);
        STRATA_NOTICELOG(log_bdev_nvme, "hotplug: {} appeared, attaching as {}",
                         f.address.to_string(), o.name);
        const env::PciAddress addr = f.address;
        nvme_attach(o, [addr, name = o.name](Result<std::vector<std::string>> r) {
            Hotplug& h = hotplug();
            h.attaching.erase(std::remove(h.attaching.begin(), h.attaching.end(), addr),
                              h.attaching.end());
            if (!r)
                STRATA_ERRLOG(log_bdev_nvme, "hotplug: attach {} at {}: {}", name, addr.to_string(),
                              r.error().message());
        });
        busy = true;
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

const char* timeout_action_name(NvmeTimeoutAction a) {
    return a == NvmeTimeoutAction::abort ? "abort" : "none";
}

void write_config(nlohmann::json& methods) {
    // First in the bdev section, as SPDK writes it (the options Strata implements only), so
    // that load_config sets them before any controller is attached.
    const NvmeModuleOptions& m = nvme_options();
    nlohmann::json entry = {{"method", "bdev_nvme_set_options"},
                            {"params",
                             {{"action_on_timeout", timeout_action_name(m.action_on_timeout)},
                              {"timeout_us", m.timeout_us},
                              {"timeout_admin_us", m.timeout_admin_us},
                              {"keep_alive_timeout_ms", m.keep_alive_timeout_ms},
                              {"io_queue_requests", m.io_queue_requests},
                              {"bdev_retry_count", m.bdev_retry_count},
                              {"ctrlr_loss_timeout_sec", m.ctrlr_loss_timeout_sec},
                              {"reconnect_delay_sec", m.reconnect_delay_sec},
                              {"fast_io_fail_timeout_sec", m.fast_io_fail_timeout_sec}}}};
    methods.insert(methods.begin(), std::move(entry));  // one element (not the list overload)
    for (auto& [name, c] : ctrlrs()) {
        if (c->detaching) continue;
        if (c->ctrl->is_fabrics()) {
            // SPDK's names and spelling (save_config of bdev_nvme_attach_controller).
            const nvme::TransportId& t = c->attach.trid;
            const nvme::ControllerOptions& o = c->attach.controller;
            nlohmann::json p = {{"name", name},
                                {"trtype", "TCP"},
                                {"adrfam", nvme::adrfam_name(c->ctrl->transport_id().adrfam)},
                                {"traddr", t.traddr},
                                {"trsvcid", c->ctrl->transport_id().trsvcid},
                                {"subnqn", t.subnqn},
                                {"hostnqn", c->ctrl->host_nqn()},
                                {"hdgst", o.header_digest},
                                {"ddgst", o.data_digest},
                                {"ctrlr_loss_timeout_sec", o.ctrlr_loss_timeout_sec},
                                {"reconnect_delay_sec", o.reconnect_delay_sec},
                                {"fast_io_fail_timeout_sec", o.fast_io_fail_timeout_sec}};
            // Strata's own parameters only when they differ from the default, so that SPDK's
            // decoder (which refuses unknown parameters) reads the usual config.
            if (o.keep_alive_timeout_ms != nvme_options().keep_alive_timeout_ms)
                p["keep_alive_timeout_ms"] = o.keep_alive_timeout_ms;
            if (c->queue_entries != 256) p["io_queue_size"] = c->queue_entries;
            if (o.timeout_us != 0) p["timeout_us"] = o.timeout_us;
            methods.push_back({{"method", "bdev_nvme_attach_controller"}, {"params", p}});
            continue;
        }
        methods.push_back({{"method", "bdev_nvme_attach_controller"},
                           {"params",
                            {{"name", name},
                             {"trtype", "PCIe"},
                             {"traddr", c->ctrl->address().to_string()}}}});
    }
    methods.push_back(
        {{"method", "bdev_nvme_set_hotplug"},
         {"params", {{"period_us", hotplug().period_us}, {"enable", hotplug().enabled}}}});
}

void fini(std::function<void()> done) {
    stop_hotplug_poller();
    // Detach every controller, one after the other (their bdevs are gone by now).
    std::vector<std::string> names;
    for (auto& [n, c] : ctrlrs())
        if (!c->detaching) names.push_back(n);
    if (names.empty()) {
        done();
        return;
    }
    auto remaining = std::make_shared<size_t>(names.size());
    for (const auto& n : names)
        nvme_detach(n, [remaining, done](Result<void>) {
            if (--*remaining == 0) done();
        });
}

}  // namespace

NvmeModuleOptions& nvme_options() {
    return runtime::current_host().get<NvmeModuleOptions>();
}

Result<void> nvme_check_reconnect_limits(int32_t loss, uint32_t delay, uint32_t fast) {
    auto bad = [](const char* why) { return Error(Errc::invalid_argument, why); };
    if (loss < -1) return bad("ctrlr_loss_timeout_sec can't be less than -1");
    if (loss == 0) {
        if (delay != 0 || fast != 0)
            return bad(
                "Both reconnect_delay_sec and fast_io_fail_timeout_sec must be 0 if "
                "ctrlr_loss_timeout_sec is 0");
        return {};
    }
    if (delay == 0) return bad("reconnect_delay_sec can't be 0 if ctrlr_loss_timeout_sec is not 0");
    if (loss > 0 && delay > static_cast<uint32_t>(loss))
        return bad("reconnect_delay_sec can't be more than ctrlr_loss_timeout_sec");
    if (fast != 0 && fast < delay)
        return bad("reconnect_delay_sec can't be more than fast_io_fail_timeout_sec");
    if (loss > 0 && fast > static_cast<uint32_t>(loss))
        return bad("fast_io_fail_timeout_sec can't be more than ctrlr_loss_timeout_sec");
    return {};
}

Result<void> nvme_set_options(const NvmeModuleOptions& o) {
    // SPDK's bdev_nvme_validate_opts, then what Strata's driver cannot do.
    if (o.timeout_us == 0 && o.timeout_admin_us != 0)
        return Error(Errc::invalid_argument,
                     "Can't have (timeout_us == 0) with (timeout_admin_us > 0)");
    if (o.bdev_retry_count < -1)
        return Error(Errc::invalid_argument, "bdev_retry_count can't be less than -1");
    if (auto r = nvme_check_reconnect_limits(o.ctrlr_loss_timeout_sec, o.reconnect_delay_sec,
                                             o.fast_io_fail_timeout_sec);
        !r)
        return r;
    if (o.timeout_us != 0 && o.action_on_timeout != NvmeTimeoutAction::abort)
        return Error(Errc::not_supported,
                     "action_on_timeout none is not supported with timeout_us > 0: Strata's driver "
                     "aborts a timed-out command, then resets the controller (use abort)");
    if (!ctrlrs().empty())
        return Error(Errc::permission_denied,
                     "RPC not permitted with nvme controllers already attached");
    nvme_options() = o;
    return {};
}

NvmeAttachOptions nvme_default_attach_options() {
    const NvmeModuleOptions& m = nvme_options();
    NvmeAttachOptions a;
    nvme::ControllerOptions& c = a.controller;
    c.keep_alive_timeout_ms = m.keep_alive_timeout_ms;
    c.ctrlr_loss_timeout_sec = m.ctrlr_loss_timeout_sec;
    c.reconnect_delay_sec = m.reconnect_delay_sec;
    c.fast_io_fail_timeout_sec = m.fast_io_fail_timeout_sec;
    c.timeout_us = m.timeout_us;
    if (m.timeout_us != 0)
        c.admin_timeout_us = m.timeout_admin_us != 0 ? m.timeout_admin_us : m.timeout_us;
    return a;
}

void nvme_attach(const NvmeAttachOptions& o,
                 std::function<void(Result<std::vector<std::string>>)> done) {
    if (o.name.empty()) {
        done(Error(Errc::invalid_argument, "controller name is empty"));
        return;
    }
    if (ctrlrs().count(o.name) != 0) {
        done(Error(Errc::already_exists, fmt::format("NVMe controller {} already exists", o.name)));
        return;
    }
    runtime::Thread* thread = runtime::current_thread();
    auto run = [](NvmeAttachOptions opts) -> runtime::Task<Result<std::vector<std::string>>> {
        Result<std::unique_ptr<nvme::Controller>> r = Error(Errc::internal, "unset");
        if (opts.trid.trtype == nvme::TrType::tcp)
            r = co_await nvme::Controller::connect(opts.trid, opts.controller);
        else
            r = co_await nvme::Controller::attach(opts.address, opts.controller);
        if (!r) co_return r.error();
        if (ctrlrs().count(opts.name) != 0) {  // raced with another attach of the same name
            (void)co_await (*r)->detach();
            co_return Error(Errc::already_exists,
                            fmt::format("NVMe controller {} already exists", opts.name));
        }
        auto c = std::make_unique<NvmeCtrlr>(opts.name, std::move(*r), opts.io_queue_entries);
        NvmeCtrlr* raw = c.get();
        raw->retry_count = nvme_options().bdev_retry_count;
        raw->io_queue_requests = nvme_options().io_queue_requests;
        raw->attach = opts;
        raw->attach.controller.connect_socket = nullptr;
        ctrlrs().emplace(opts.name, std::move(c));
        runtime::register_io_device(*raw);
        raw->ctrl->on_namespace_change([raw](nvme::Controller&) {
            if (!raw->detaching) sync_namespaces(*raw);
        });
        raw->ctrl->on_failure([raw](nvme::Controller&, Errc why) {
            STRATA_ERRLOG(log_bdev_nvme, "nvme {}: controller {}; removing its bdevs", raw->name,
                          errc_name(why));
            for (const auto& b : raw->bdevs) unregister_bdev(b, [](Result<void>) {});
            raw->bdevs.clear();
        });
        for (const nvme::Namespace* ns : raw->ctrl->namespaces()) {
            if (auto a = add_namespace_bdev(*raw, *ns); !a)
                STRATA_ERRLOG(log_bdev_nvme, "nvme {}: namespace {}: {}", opts.name, ns->id,
                              a.error().message());
        }
        co_return raw->bdevs;
    };
    runtime::spawn(*thread, run(o), std::move(done));
}

namespace {

struct SwitchCtx {
    NvmeCtrlr* c;
    runtime::AsyncResult<int> done;
};

// Every channel's qpair goes (its outstanding commands end "aborted: SQ deletion" and wait in
// the channel, as after a reset) or (enable) is asked for again.
runtime::Task<void> switch_channels(NvmeCtrlr* c, bool enable) {
    SwitchCtx ctx{c, {}};
    runtime::for_each_channel(
        *c,
        enable ? +[](runtime::IoChannel& ioch, void* p) {
            auto& ch = static_cast<NvmeChannel&>(ioch);
            if (!ch.state->qp && !ch.state->failed)
                request_qpair(*static_cast<SwitchCtx*>(p)->c, ch.state, &ch.thread());
        }
               : +[](runtime::IoChannel& ioch, void*) {
                     auto& st = *static_cast<NvmeChannel&>(ioch).state;
                     if (st.qp) st.ctrl->free_io_qpair(std::move(st.qp));
                 },
        &ctx, [](void* p) { static_cast<SwitchCtx*>(p)->done.set(0); });
    (void)co_await ctx.done;
}

// Detaching a disabled controller: the I/O its channels hold fails (SPDK fails it once the
// controller is being destructed), and so does I/O submitted from then on.
runtime::Task<void> fail_held_io(NvmeCtrlr* c) {
    SwitchCtx ctx{c, {}};
    runtime::for_each_channel(
        *c,
        [](runtime::IoChannel& ioch, void*) {
            auto& st = *static_cast<NvmeChannel&>(ioch).state;
            st.failed = true;
            st.failure = Errc::aborted;
            while (BdevIo* io = st.waiting.pop_front()) io->complete(Errc::aborted);
            while (BdevIo* io = st.retry.pop_front()) io->complete(Errc::aborted);
        },
        &ctx, [](void* p) { static_cast<SwitchCtx*>(p)->done.set(0); });
    (void)co_await ctx.done;
}

}  // namespace

void nvme_detach(const std::string& name, std::function<void(Result<void>)> done) {
    auto it = ctrlrs().find(name);
    if (it == ctrlrs().end()) {
        done(Error(Errc::not_found, fmt::format("NVMe controller {} not found", name)));
        return;
    }
    NvmeCtrlr* c = it->second.get();
    if (c->detaching) {
        done(Error(Errc::busy, fmt::format("NVMe controller {} is already detaching", name)));
        return;
    }
    c->detaching = true;
    auto run = [](NvmeCtrlr* c) -> runtime::Task<Result<void>> {
        if (c->disabled) co_await fail_held_io(c);
        for (const auto& b : c->bdevs) {
            runtime::AsyncResult<Result<void>> gone;
            unregister_bdev(b, [&gone](Result<void> r) { gone.set(std::move(r)); });
            (void)co_await gone;
        }
        c->bdevs.clear();
        // Every channel (and so every qpair) must be gone before the controller detaches.
        runtime::AsyncResult<int> unregistered;
        runtime::unregister_io_device(
            *c, [](void* p) { static_cast<runtime::AsyncResult<int>*>(p)->set(0); }, &unregistered);
        (void)co_await unregistered;
        // Freed qpairs delete their queues by message; let those run.
        for (int i = 0; i < 100 && c->ctrl->state() != nvme::ControllerState::detached; ++i) {
            auto r = co_await c->ctrl->detach();
            if (r || r.code() != Errc::busy) break;
            co_await runtime::sleep_for(1'000'000);
        }
        const std::string name = c->name;
        ctrlrs().erase(name);
        co_return Result<void>{};
    };
    runtime::spawn(*runtime::current_thread(), run(c), std::move(done));
}

void nvme_reset(const std::string& name, std::function<void(Result<void>)> done) {
    auto it = ctrlrs().find(name);
    if (it == ctrlrs().end()) {
        done(Error(Errc::not_found, fmt::format("NVMe controller {} not found", name)));
        return;
    }
    if (it->second->disabled || it->second->switching) {
        done(Error(Errc::busy, fmt::format("NVMe controller {} is disabled (or being disabled or "
                                           "enabled): bdev_nvme_enable_controller first",
                                           name)));
        return;
    }
    nvme::Controller* ctrl = it->second->ctrl.get();
    runtime::spawn(ctrl->admin_thread(), ctrl->reset(), std::move(done));
}

namespace {

// The controller a disable/enable names: cntlid 0 is any (SPDK: every controller of the name;
// Strata has one per name, no multipath).
Result<NvmeCtrlr*> ctrlr_for_switch(const std::string& name, uint16_t cntlid, bool enable) {
    auto it = ctrlrs().find(name);
    if (it == ctrlrs().end())
        return Error(Errc::not_found, fmt::format("NVMe controller {} not found", name));
    NvmeCtrlr* c = it->second.get();
    const uint16_t id = c->ctrl->is_fabrics() ? c->ctrl->cntlid() : c->ctrl->identify().cntlid;
    if (cntlid != 0 && cntlid != id)
        return Error(Errc::not_found,
                     fmt::format("NVMe controller {} has no controller with cntlid {} (it has {})",
                                 name, cntlid, id));
    if (c->detaching)
        return Error(Errc::shutdown, fmt::format("NVMe controller {} is detaching", name));
    if (c->switching)
        return Error(Errc::busy,
                     fmt::format("NVMe controller {} is being disabled or enabled", name));
    if (c->ctrl->state() == nvme::ControllerState::resetting)
        return Error(Errc::busy, fmt::format("NVMe controller {} is resetting", name));
    if (c->disabled != enable)
        return Error(Errc::already_exists, fmt::format("NVMe controller {} is already {}", name,
                                                       enable ? "enabled" : "disabled"));
    return c;
}

}  // namespace

void nvme_disable(const std::string& name, uint16_t cntlid,
                  std::function<void(Result<void>)> done) {
    auto c = ctrlr_for_switch(name, cntlid, false);
    if (!c) {
        done(c.error());
        return;
    }
    (*c)->switching = true;
    auto run = [](NvmeCtrlr* c) -> runtime::Task<Result<void>> {
        c->disabled = true;  // channels made from now on wait for enable
        c->held->store(true);
        co_await switch_channels(c, false);
        c->switching = false;
        STRATA_NOTICELOG(log_bdev_nvme, "nvme {}: disabled (no I/O qpairs until enabled)", c->name);
        co_return Result<void>{};
    };
    runtime::spawn(*runtime::current_thread(), run(*c), std::move(done));
}

void nvme_enable(const std::string& name, uint16_t cntlid, std::function<void(Result<void>)> done) {
    auto c = ctrlr_for_switch(name, cntlid, true);
    if (!c) {
        done(c.error());
        return;
    }
    (*c)->switching = true;
    auto run = [](NvmeCtrlr* c) -> runtime::Task<Result<void>> {
        // SPDK reconnects the controller: here a reset (re-initialised, no I/O queues yet),
        // then every channel's qpair again.
        runtime::Thread* caller = runtime::current_thread();
        co_await runtime::resume_on(c->ctrl->admin_thread());
        auto r = co_await c->ctrl->reset();
        co_await runtime::resume_on(*caller);
        c->switching = false;
        if (!r) co_return r;  // failed: still disabled
        c->disabled = false;
        c->held->store(false);
        co_await switch_channels(c, true);
        STRATA_NOTICELOG(log_bdev_nvme, "nvme {}: enabled", c->name);
        co_return Result<void>{};
    };
    runtime::spawn(*runtime::current_thread(), run(*c), std::move(done));
}

Result<void> nvme_set_hotplug(bool enable, uint64_t period_us) {
    Hotplug& h = hotplug();
    if (period_us != 0) h.period_us = period_us;
    h.enabled = enable;
    stop_hotplug_poller();
    if (enable) {
        h.thread = runtime::current_thread();
        h.poller = h.thread->register_poller(&hotplug_poll, nullptr, "bdev_nvme_hotplug",
                                             h.period_us * 1000);
    }
    return {};
}

void nvme_health_info(const std::string& name, std::function<void(Result<nlohmann::json>)> done) {
    NvmeCtrlr* c = nullptr;
    if (name.empty()) {
        if (!ctrlrs().empty()) c = ctrlrs().begin()->second.get();
    } else if (auto it = ctrlrs().find(name); it != ctrlrs().end()) {
        c = it->second.get();
    }
    if (c == nullptr || c->detaching) {
        done(Error(Errc::not_found, fmt::format("NVMe controller {} not found", name)));
        return;
    }
    auto run = [](NvmeCtrlr* c) -> runtime::Task<Result<nlohmann::json>> {
        auto buf = env::dma_alloc(sizeof(nvme::spec::SmartHealthLog), 4096, true);
        if (!buf) co_return buf.error();
        auto r = co_await c->ctrl->get_log_page(nvme::spec::LogPage::smart_health, 0xffffffffu,
                                                *buf, sizeof(nvme::spec::SmartHealthLog));
        if (!r) {
            env::dma_free(*buf);
            co_return r.error();
        }
        const auto& h = *static_cast<const nvme::spec::SmartHealthLog*>(*buf);
        const auto& id = c->ctrl->identify();
        auto kelvin = [](uint64_t k) { return k >= 273 ? k - 273 : 0; };
        nlohmann::json out = {
            {"model_number", trim(id.mn.data(), id.mn.size())},
            {"serial_number", trim(id.sn.data(), id.sn.size())},
            {"firmware_revision", trim(id.fr.data(), id.fr.size())},
            {"traddr", c->ctrl->is_fabrics() ? c->ctrl->transport_id().traddr
                                             : c->ctrl->address().to_string()},
            {"critical_warning", h.critical_warning},
            {"temperature_celsius", kelvin(h.composite_temperature.get())},
            {"available_spare_percentage", h.available_spare},
            {"available_spare_threshold_percentage", h.available_spare_threshold},
            {"percentage_used", h.percentage_used},
            {"data_units_read", h.data_units_read.saturated()},
            {"data_units_written", h.data_units_written.saturated()},
            {"host_read_commands", h.host_read_commands.saturated()},
            {"host_write_commands", h.host_write_commands.saturated()},
            {"controller_busy_time", h.controller_busy_time.saturated()},
            {"power_cycles", h.power_cycles.saturated()},
            {"power_on_hours", h.power_on_hours.saturated()},
            {"unsafe_shutdowns", h.unsafe_shutdowns.saturated()},
            {"media_errors", h.media_errors.saturated()},
            {"num_err_log_entries", h.num_err_log_entries.saturated()},
            {"warning_temperature_time_minutes", h.warning_temp_time},
            {"critical_composite_temperature_time_minutes", h.critical_temp_time}};
        for (uint16_t t : h.temperature_sensor)
            if (t != 0) out["temperature_sensor_celsius"] = kelvin(t);  // SPDK writes each
        env::dma_free(*buf);
        co_return out;
    };
    runtime::spawn(c->ctrl->admin_thread(), run(c), std::move(done));
}

namespace {

void change_error_injection(const std::string& name, bool admin, bool add,
                            const nvme::ErrorInjection& e, std::function<void(Result<void>)> done) {
    auto it = ctrlrs().find(name);
    if (it == ctrlrs().end() || it->second->detaching) {
        done(Error(Errc::not_found, fmt::format("NVMe controller {} not found", name)));
        return;
    }
    NvmeCtrlr& c = *it->second;
    if (admin) {
        if (add)
            c.ctrl->add_admin_error_injection(e);
        else
            c.ctrl->remove_admin_error_injection(e.opc);
        done(Result<void>{});
        return;
    }
    struct Ctx {
        nvme::ErrorInjection e;
        bool add;
        std::function<void(Result<void>)> done;
    };
    runtime::for_each_channel(
        c,
        [](runtime::IoChannel& ch, void* p) {
            const auto& x = *static_cast<Ctx*>(p);
            QpairState& st = *static_cast<NvmeChannel&>(ch).state;
            if (!st.qp) return;  // not connected yet: SPDK skips such a channel too
            if (x.add)
                st.qp->add_error_injection(x.e);
            else
                st.qp->remove_error_injection(x.e.opc);
        },
        new Ctx{e, add, std::move(done)},
        [](void* p) {
            std::unique_ptr<Ctx> x(static_cast<Ctx*>(p));
            x->done(Result<void>{});
        });
}

}  // namespace

void nvme_add_error_injection(const std::string& name, bool admin, const nvme::ErrorInjection& e,
                              std::function<void(Result<void>)> done) {
    change_error_injection(name, admin, true, e, std::move(done));
}

void nvme_remove_error_injection(const std::string& name, bool admin, uint8_t opc,
                                 std::function<void(Result<void>)> done) {
    nvme::ErrorInjection e;
    e.opc = opc;
    change_error_injection(name, admin, false, e, std::move(done));
}

void nvme_send_cmd(NvmeRawCommand cmd, std::function<void(Result<NvmeRawResult>)> done) {
    auto it = ctrlrs().find(cmd.name);
    if (it == ctrlrs().end() || it->second->detaching) {
        done(Error(Errc::not_found, fmt::format("NVMe controller {} not found", cmd.name)));
        return;
    }
    NvmeCtrlr* c = it->second.get();
    // The data pointer is the driver's to set: a caller's PRP would let the device DMA anywhere.
    cmd.sqe.prp1 = cmd.sqe.prp2 = 0;
    cmd.sqe.set_psdt(nvme::spec::Psdt::prp);
    if (cmd.data.size() > c->ctrl->max_transfer_bytes()) {
        done(Error(Errc::invalid_argument,
                   fmt::format("data_len {} exceeds the controller's transfer limit {}",
                               cmd.data.size(), c->ctrl->max_transfer_bytes())));
        return;
    }
    if (cmd.admin) {
        auto run = [](NvmeCtrlr* c, NvmeRawCommand cmd) -> runtime::Task<Result<NvmeRawResult>> {
            auto r = co_await c->ctrl->admin(cmd.sqe, cmd.data.empty() ? nullptr : cmd.data.data(),
                                             cmd.data.size());
            if (!r) co_return r.error();
            NvmeRawResult out{*r, {}};
            if (cmd.controller_to_host) out.data = std::move(cmd.data);
            co_return out;
        };
        runtime::spawn(c->ctrl->admin_thread(), run(c, std::move(cmd)), std::move(done));
        return;
    }
    // I/O: this Thread's channel of the controller; its qpair arrives by message.
    auto run = [](NvmeCtrlr* c, NvmeRawCommand cmd) -> runtime::Task<Result<NvmeRawResult>> {
        auto* ch = runtime::get_channel<NvmeChannel>(*c);
        if (ch == nullptr) co_return Error(Errc::no_memory, "bdev_nvme: no I/O channel");
        std::shared_ptr<QpairState> st = ch->state;
        for (int i = 0; i < 5000 && !st->qp && !st->failed; ++i)
            co_await runtime::sleep_for(1'000'000);
        Result<NvmeRawResult> out = Error(Errc::device_removed, "bdev_nvme: no I/O qpair");
        if (st->qp) {
            void* buf = nullptr;
            bool ok = true;
            if (!cmd.data.empty()) {
                auto mem = env::dma_alloc(cmd.data.size(), 4096, true);
                if (!mem) {
                    out = mem.error();
                    ok = false;
                } else {
                    buf = *mem;
                    if (!cmd.controller_to_host) std::memcpy(buf, cmd.data.data(), cmd.data.size());
                }
            }
            if (ok) {
                runtime::AsyncResult<nvme::Completion> waiter;
                Status s = st->qp->raw(
                    cmd.sqe, buf, cmd.data.size(),
                    [](void* ctx, const nvme::Completion& cpl) {
                        static_cast<runtime::AsyncResult<nvme::Completion>*>(ctx)->set(cpl);
                    },
                    &waiter);
                if (!s.ok()) {
                    out = Error(s);
                } else {
                    const nvme::Completion cpl = co_await waiter;
                    NvmeRawResult r{cpl, {}};
                    if (cmd.controller_to_host && !cmd.data.empty()) {
                        std::memcpy(cmd.data.data(), buf, cmd.data.size());
                        r.data = std::move(cmd.data);
                    }
                    out = std::move(r);
                }
                if (buf != nullptr) env::dma_free(buf);
            }
        }
        runtime::put_io_channel(ch);
        co_return out;
    };
    runtime::spawn(*runtime::current_thread(), run(c, std::move(cmd)), std::move(done));
}

nlohmann::json nvme_io_paths(const std::string& bdev_name) {
    // One io path per namespace bdev (Strata has no multipath); one poll group, the caller's.
    nlohmann::json paths = nlohmann::json::array();
    for (auto& [name, c] : ctrlrs()) {
        if (c->detaching) continue;
        const bool ready = c->ctrl->state() == nvme::ControllerState::ready;
        const auto& t = c->ctrl->transport_id();
        nlohmann::json transport;
        if (c->ctrl->is_fabrics())
            transport = {{"trtype", "TCP"},
                         {"traddr", t.traddr},
                         {"trsvcid", t.trsvcid},
                         {"adrfam", nvme::adrfam_name(t.adrfam)}};
        else
            transport = {{"trtype", "PCIe"}, {"traddr", c->ctrl->address().to_string()}};
        for (const auto& b : c->bdevs) {
            if (!bdev_name.empty() && b != bdev_name) continue;
            paths.push_back({{"bdev_name", b},
                             {"cntlid", c->ctrl->identify().cntlid},
                             {"current", ready},
                             {"connected", ready},
                             {"accessible", ready},
                             {"transport", transport}});
        }
    }
    const runtime::Thread* t = runtime::current_thread();
    return {{"poll_groups", nlohmann::json::array(
                                {{{"thread", t != nullptr ? t->name() : std::string("app_thread")},
                                  {"io_paths", std::move(paths)}}})}};
}

std::vector<NvmeControllerInfo> nvme_controllers() {
    std::vector<NvmeControllerInfo> out;
    for (auto& [name, c] : ctrlrs())
        out.push_back({name, c->ctrl->transport_id(),
                       c->ctrl->is_fabrics() ? c->ctrl->transport_id().traddr
                                             : c->ctrl->address().to_string(),
                       c->disabled ? "disabled" : nvme::state_name(c->ctrl->state()), c->bdevs,
                       c->attach.controller, c->retry_count, c->io_queue_requests});
    return out;
}

}  // namespace strata::bdev
