// The Target (a Host slot), transports, subsystems, namespaces, listeners, hosts and the
// discovery log page; the Qpair base and exec()'s dispatch.
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include <strata/base/log.h>

#include "core.h"

namespace strata::nvmf {

STRATA_LOG_COMPONENT(nvmf);

namespace {
const bdev::Module kNvmfModule{"nvmf_tgt"};

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

Error no_subsystem(std::string_view nqn) {
    return Error(Errc::not_found, fmt::format("subsystem '{}' does not exist", nqn));
}
}  // namespace

// ---- helpers -------------------------------------------------------------------------------

XferDir xfer_direction(const nvme::spec::Sqe& cmd) noexcept {
    const uint8_t bits = cmd.opc == nvme::spec::fabrics_opcode
                             ? static_cast<uint8_t>(nvme::spec::fabrics_type(cmd) & 0x3)
                             : static_cast<uint8_t>(cmd.opc & 0x3);
    if (bits == 3) return XferDir::none;
    // As SPDK's nvmf_req_get_xfer: an SGL of length 0 carries no data. Hosts (Linux nvme-tcp,
    // SPDK, Strata) send data-less commands whose opcode has the host-to-controller bit, such as
    // Set Features (Number of Queues), with a zero-length transport SGL.
    if (cmd.psdt() != nvme::spec::Psdt::prp && cmd.dptr_sgl().length == 0) return XferDir::none;
    return static_cast<XferDir>(bits);
}

bool TransportAddress::operator==(const TransportAddress& o) const noexcept {
    return iequal(trtype, o.trtype) && iequal(adrfam, o.adrfam) && traddr == o.traddr &&
           trsvcid == o.trsvcid;
}

std::string uuid_text(const std::array<uint8_t, 16>& u) {
    std::string s;
    for (size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        s += fmt::format("{:02x}", u[i]);
    }
    return s;
}

bool parse_uuid(std::string_view text, std::array<uint8_t, 16>& out) {
    std::string hex;
    for (char c : text)
        if (c != '-') hex += c;
    if (hex.size() != 32 || text.size() != 36) return false;
    for (size_t i = 0; i < 16; ++i) {
        unsigned v = 0;
        for (size_t k = 0; k < 2; ++k) {
            const char c = hex[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else return false;
        }
        out[i] = static_cast<uint8_t>(v);
    }
    return true;
}

std::string hex_text(const uint8_t* p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += fmt::format("{:02X}", p[i]);
    return s;
}

void set_status(Request& req, uint8_t sct, uint8_t sc, bool dnr) noexcept {
    req.rsp.status = spec::StatusField::make(sct, sc, dnr).raw;
}
void set_generic(Request& req, spec::GenericStatus sc, bool dnr) noexcept {
    set_status(req, 0, static_cast<uint8_t>(sc), dnr && sc != spec::GenericStatus::success);
}

size_t copy_to_iov(Request& req, const void* data, size_t len, size_t offset) noexcept {
    const auto* src = static_cast<const uint8_t*>(data);
    size_t done = 0, pos = 0;
    for (uint32_t i = 0; i < req.iovcnt && i < kMaxRequestIov && done < len; ++i) {
        const size_t n = req.iov[i].iov_len;
        if (pos + n <= offset) {
            pos += n;
            continue;
        }
        const size_t skip = offset > pos ? offset - pos : 0;
        const size_t take = std::min(n - skip, len - done);
        std::memcpy(static_cast<uint8_t*>(req.iov[i].iov_base) + skip, src + done, take);
        done += take;
        pos += n;
    }
    return done;
}

size_t copy_from_iov(const Request& req, void* data, size_t len, size_t offset) noexcept {
    auto* dst = static_cast<uint8_t*>(data);
    size_t done = 0, pos = 0;
    for (uint32_t i = 0; i < req.iovcnt && i < kMaxRequestIov && done < len; ++i) {
        const size_t n = req.iov[i].iov_len;
        if (pos + n <= offset) {
            pos += n;
            continue;
        }
        const size_t skip = offset > pos ? offset - pos : 0;
        const size_t take = std::min(n - skip, len - done);
        std::memcpy(dst + done, static_cast<const uint8_t*>(req.iov[i].iov_base) + skip, take);
        done += take;
        pos += n;
    }
    return done;
}

void zero_iov(Request& req) noexcept {
    for (uint32_t i = 0; i < req.iovcnt && i < kMaxRequestIov; ++i)
        std::memset(req.iov[i].iov_base, 0, req.iov[i].iov_len);
}

// ---- Qpair ---------------------------------------------------------------------------------

Qpair::Qpair(Transport& transport, runtime::Thread& thread) noexcept
    : transport_(&transport), thread_(&thread), core_(std::make_unique<CoreState>()) {}

Qpair::~Qpair() = default;

namespace {
void maybe_released(Qpair& q) noexcept {
    if (q.is_closed() && q.outstanding() == 0) q.released();
}

// ---- the error log: entries from the qpair's Thread reach the controller by message ----------

// On the qpair's Thread: the slot is back (the Target's Thread logged or dropped it).
void error_slot_back(void* ctx) {
    auto& slot = *static_cast<ErrorSlot*>(ctx);
    slot.busy = false;
    drop_ref(*slot.qpair);
}

// On the Target's Thread: log the entry with the qpair's controller (if it is still attached),
// then hand the slot back.
void error_slot_log(void* ctx) {
    auto& slot = *static_cast<ErrorSlot*>(ctx);
    if (Controller* c = slot.qpair->core().ctl.ctrlr) c->log_error(slot.entry, slot.lost);
    runtime::deliver(slot.qpair->thread(), &error_slot_back, &slot);
}

// On the qpair's Thread: an I/O command failed; its entry goes to the controller in a free slot
// (none free: counted, and reported as lost with the next one).
void ship_error(Qpair& q, const Request& req) noexcept {
    auto& core = q.core();
    for (ErrorSlot& slot : core.err_slots) {
        if (slot.busy) continue;
        slot.entry = error_entry(req, q.qid());
        slot.qpair = &q;
        slot.lost = core.err_lost;
        slot.busy = true;
        take_ref(q);
        if (target_impl().home().send(&error_slot_log, &slot).ok()) {
            core.err_lost = 0;
            return;
        }
        slot.busy = false;
        QpairAccess::outstanding(q).fetch_sub(1);  // not drop_ref: the caller holds one
        break;
    }
    ++core.err_lost;
}

// Every completion passes here on the qpair's Thread, just before the transport sees it: the
// qpair's and its poll group's counters, and I/O errors to the error log (Fabrics and admin
// errors are logged on the Target's Thread, which knows the controller).
void account_completion(Qpair& q, const Request& req) noexcept {
    const bool ok = req.rsp.sf().ok();
    if (!ok) ++QpairAccess::stats(q).errors;
    if ((req.core.state & kReqControl) != 0 || q.qid() == 0 || !q.connected()) return;
    if (PollGroup* g = q.core().group) ++g->stats.completed_nvme_io;
    if (!ok && !q.is_closed()) ship_error(q, req);
}

void complete_now(Request& req) noexcept {
    Qpair& q = *req.qpair;
    account_completion(q, req);
    q.complete(req);
    QpairAccess::outstanding(q).fetch_sub(1, std::memory_order_acq_rel);
    maybe_released(q);
}

void flush_deferred(void* ctx) {
    auto& q = *static_cast<Qpair*>(ctx);
    q.core().flush_scheduled = false;
    // Completing may release (delete) the qpair: take the list first and hold a reference.
    IntrusiveList<Request, RequestCoreTag> list;
    list.splice_back(q.core().deferred);
    QpairAccess::outstanding(q).fetch_add(1);
    while (Request* r = list.pop_front()) {
        account_completion(q, *r);
        q.complete(*r);
        QpairAccess::outstanding(q).fetch_sub(1);
    }
    drop_ref(q);
}
}  // namespace

void take_ref(Qpair& q) noexcept { QpairAccess::outstanding(q).fetch_add(1); }

void drop_ref(Qpair& q) noexcept {
    QpairAccess::outstanding(q).fetch_sub(1, std::memory_order_acq_rel);
    maybe_released(q);
}

void finish_local(Request& req) noexcept { complete_now(req); }

void finish_deferred(Request& req) noexcept {
    Qpair& q = *req.qpair;
    q.core().deferred.push_back(req);
    if (!q.core().flush_scheduled) {
        q.core().flush_scheduled = true;
        Status s = q.thread().send(&flush_deferred, &q);
        STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message the qpair's Thread");
    }
}

void finish(Request& req) noexcept {
    Status s = req.qpair->thread().send(
        [](void* ctx) { complete_now(*static_cast<Request*>(ctx)); }, &req);
    STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message the qpair's Thread");
}

void exec(Request& req) noexcept {
    Qpair& q = *req.qpair;
    QpairAccess::outstanding(q).fetch_add(1);
    auto& st = QpairAccess::stats(q);
    ++st.commands;
    req.core = Request::Core{};
    req.rsp = spec::Cqe{};
    req.rsp.cid = req.cmd.cid;
    req.rsp.sqid = q.qid();
    if (q.is_closed()) {
        set_generic(req, spec::GenericStatus::aborted_sq_deletion);
        finish_deferred(req);
        return;
    }
    if (req.cmd.opc == spec::fabrics_opcode || !q.connected() || q.qid() == 0) {
        ++st.admin_commands;
        req.core.state = kReqControl;
        Status s = target_impl().home().send(
            [](void* ctx) { exec_control(*static_cast<Request*>(ctx)); }, &req);
        if (!s.ok()) {
            set_generic(req, spec::GenericStatus::internal_error, false);
            finish_deferred(req);
        }
        return;
    }
    ++st.io_commands;
    exec_io(req);
}

namespace {
// On the qpair's Thread, after the Target's Thread detached it: out of its poll group's current
// count, no longer connected.
void detached_here(void* ctx) {
    auto& q = *static_cast<Qpair*>(ctx);
    auto& core = q.core();
    if (core.counted) {
        core.counted = false;
        if (q.qid() == 0) --core.group->stats.current_admin_qpairs;
        else --core.group->stats.current_io_qpairs;
    }
    QpairAccess::set(q, nullptr, q.qid(), q.sq_size());
    drop_ref(q);
}
}  // namespace

void Qpair::closed() noexcept {
    if (closed_) return;
    closed_ = true;
    take_ref(*this);  // until the Target's Thread has dropped us
    io_qpair_closed(*this);
    // The Target's Thread detaches us from the controller (and completes what it holds). Always
    // by message, even when this Thread saw no Connect complete: a Connect still in flight on
    // the Target's Thread (sent before this message, so it runs first) may attach one, and
    // only the Target's Thread knows (core().ctl). The counters so far go to the controller's
    // SMART totals.
    Qpair* self = this;
    const QpairStats last = stats_;
    Status s = target_impl().home().post([self, last] {
        auto& ctl = self->core().ctl;
        Controller* c = ctl.ctrlr;
        if (c != nullptr) {
            const uint16_t qid = ctl.qid;
            ctl = {};
            if (qid < c->qpairs.size() && c->qpairs[qid] == self) c->qpairs[qid] = nullptr;
            c->retired.bytes_read += last.bytes_read;
            c->retired.bytes_written += last.bytes_written;
            c->retired.read_commands += last.read_commands;
            c->retired.write_commands += last.write_commands;
            if (qid == 0 && !c->admin_gone) {
                c->admin_gone = true;
                c->admin = nullptr;
                while (Request* r = c->aers.pop_front()) {
                    set_generic(*r, spec::GenericStatus::aborted_sq_deletion);
                    finish(*r);
                }
                if (c->ka_poller) target_impl().home().unregister_poller(c->ka_poller);
                // It stays on the subsystem's list (hidden from Connect and the RPCs) until its
                // last I/O queue detaches: namespace changes still reach those queues.
                c->disconnect_all();
            }
            if (c->admin_gone && c->live_qpairs() == 0) delete c;
        }
        runtime::deliver(self->thread(), &detached_here, self);
    });
    STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message the Target's Thread");
}

void finish_connect(Request& req, std::unique_ptr<Attach> a) noexcept {
    Request* r = &req;
    Status s = req.qpair->thread().post([r, a = std::move(a)] {
        Qpair& q = *r->qpair;
        auto& core = q.core();
        QpairAccess::set(q, a->ctrlr, a->qid, a->sqsize);
        core.group = a->group;
        if (a->qid != 0) core.ns = std::move(a->ns);
        if (core.group != nullptr) {
            auto& g = core.group->stats;
            if (a->qid == 0) {
                ++g.admin_qpairs;
                ++g.current_admin_qpairs;
            } else {
                ++g.io_qpairs;
                ++g.current_io_qpairs;
            }
            core.counted = true;
        }
        complete_now(*r);
    });
    STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message the qpair's Thread");
}

// ---- Controller ----------------------------------------------------------------------------

Controller::Controller(Subsystem& s, uint16_t id, std::string host, std::array<uint8_t, 16> hid,
                       Qpair& a, uint32_t kato)
    : subsys(&s), cntlid(id), hostnqn(std::move(host)), hostid(hid), admin(&a), kato_ms(kato) {}

Controller::~Controller() {
    if (ka_poller) target_impl().home().unregister_poller(ka_poller);
    auto& v = subsys->ctrlrs;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
}

uint32_t Controller::live_qpairs() const {
    uint32_t n = 0;
    for (Qpair* q : qpairs) n += q != nullptr;
    return n;
}

void Controller::disconnect_all() {
    for (Qpair* q : qpairs) {
        if (q == nullptr) continue;
        q->core().ctl.disconnecting = true;
        take_ref(*q);
        Status s = q->thread().post([q] {
            if (!q->is_closed()) q->disconnect();
            drop_ref(*q);
        });
        STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message a qpair's Thread");
    }
}

void Controller::log_error(const spec::ErrorInfoEntry& e, uint32_t lost) {
    if (errlog.size() != kErrorLogEntries) errlog.assign(kErrorLogEntries, spec::ErrorInfoEntry{});
    error_count += uint64_t{lost} + 1;
    spec::ErrorInfoEntry& slot = errlog[errlog_stored++ % kErrorLogEntries];
    slot = e;
    slot.error_count = error_count;
}

namespace {
// Byte of the SQE a generic status points at (Parameter Error Location); FFFFh: none.
uint16_t parameter_location(spec::GenericStatus sc) noexcept {
    switch (sc) {
        case spec::GenericStatus::invalid_opcode: return 0;  // CDW0.OPC
        case spec::GenericStatus::aborted_missing_fused:
        case spec::GenericStatus::aborted_failed_fused: return 1;  // CDW0.FUSE (bits 1:0)
        case spec::GenericStatus::invalid_ns_or_format: return 4;  // NSID
        case spec::GenericStatus::data_sgl_length_invalid:
        case spec::GenericStatus::sgl_descriptor_type_invalid:
        case spec::GenericStatus::invalid_sgl_offset: return 24;  // DPTR
        case spec::GenericStatus::lba_out_of_range: return 40;    // CDW10 (SLBA)
        default: return 0xFFFF;
    }
}
}  // namespace

spec::ErrorInfoEntry error_entry(const Request& req, uint16_t sqid) noexcept {
    spec::ErrorInfoEntry e{};
    e.sqid = sqid;
    e.cid = req.cmd.cid;
    e.status = static_cast<uint16_t>(req.rsp.status & ~uint16_t{1});  // phase tag 0
    e.parameter_location =
        req.rsp.sct() == 0 ? parameter_location(static_cast<spec::GenericStatus>(req.rsp.sc()))
                           : uint16_t{0xFFFF};
    e.nsid = req.cmd.nsid;
    if (sqid != 0 && req.cmd.opc != spec::fabrics_opcode) {
        switch (static_cast<spec::NvmOpcode>(req.cmd.opc)) {
            case spec::NvmOpcode::read:
            case spec::NvmOpcode::write:
            case spec::NvmOpcode::compare:
            case spec::NvmOpcode::write_zeroes: e.lba = req.cmd.slba(); break;
            default: break;
        }
    }
    e.trtype = static_cast<uint8_t>(req.qpair != nullptr ? req.qpair->transport().trtype()
                                                          : spec::TransportType::tcp);
    return e;
}

void Controller::notify_ns_changed(uint32_t nsid) {
    if (std::find(changed_ns.begin(), changed_ns.end(), nsid) == changed_ns.end()) {
        if (changed_ns.size() >= 1024) changed_ns_overflow = true;
        else changed_ns.push_back(nsid);
    }
    if (!(aec & (1u << 8)) || ns_notice_masked) return;  // AEC bit 8: NS attribute notices
    // Type 2 (notice), info 0 (namespace attribute changed), log page 04h.
    pending_aens.push_back(0x2u | (0x0u << 8) | (0x04u << 16));
    ns_notice_masked = true;
    flush_aens();
}

void Controller::flush_aens() {
    while (!pending_aens.empty() && !aers.empty()) {
        Request* r = aers.pop_front();
        r->rsp.dw0 = pending_aens.front();
        pending_aens.pop_front();
        finish(*r);
    }
}

// ---- Target --------------------------------------------------------------------------------

Target::Target(runtime::Host& h) : host(&h) {
    thread = runtime::current_thread();
    auto d = std::make_unique<Subsystem>();
    d->opts.nqn = std::string(spec::discovery_nqn);
    d->opts.allow_any_host = true;
    d->opts.max_namespaces = 0;
    d->discovery = true;
    subsystems.push_back(std::move(d));
}

Target::~Target() = default;

runtime::Thread& Target::home() {
    if (thread == nullptr) thread = runtime::current_thread();
    STRATA_ASSERT_MSG(thread != nullptr, "nvmf: the Target is used outside any Thread");
    return *thread;
}

PollGroup& Target::group_for(runtime::Thread& t) {
    for (auto& g : groups)
        if (g->thread_id == t.id()) return *g;
    auto g = std::make_unique<PollGroup>();
    g->thread_id = t.id();
    g->stats.name = t.name();
    groups.push_back(std::move(g));
    return *groups.back();
}

void add_poll_group(runtime::Thread& thread) { target_impl().group_for(thread); }

void poll_group_stats(std::function<void(std::vector<PollGroupStats>)> done) {
    Target& t = target_impl();
    struct Gather {
        std::vector<const PollGroup*> groups;  // fixed at the start: read-only while visiting
        std::vector<std::optional<PollGroupStats>> seen;
        std::vector<std::string> transports;
        std::function<void(std::vector<PollGroupStats>)> done;
    };
    auto* g = new Gather;
    for (const auto& p : t.groups) g->groups.push_back(p.get());
    g->seen.resize(g->groups.size());
    for (Transport* tr : transports()) g->transports.emplace_back(tr->name());
    g->done = std::move(done);
    // Each Thread copies its own groups' counters (only it writes them); exited Threads are
    // skipped, so a stopped poll group drops out of the list.
    runtime::for_each_thread(
        [](void* ctx) {
            auto* g = static_cast<Gather*>(ctx);
            const uint32_t id = runtime::current_thread()->id();
            for (size_t i = 0; i < g->groups.size(); ++i)
                if (g->groups[i]->thread_id == id) g->seen[i] = g->groups[i]->stats;
        },
        g,
        [](void* ctx) {
            std::unique_ptr<Gather> g(static_cast<Gather*>(ctx));
            std::vector<PollGroupStats> out;
            for (auto& s : g->seen) {
                if (!s) continue;
                s->transports = g->transports;
                out.push_back(std::move(*s));
            }
            g->done(std::move(out));
        });
}

Subsystem* Target::find(std::string_view nqn) const {
    for (const auto& s : subsystems)
        if (s->opts.nqn == nqn) return s.get();
    return nullptr;
}

Target& target_impl() { return runtime::current_host().get<Target>(); }

Status add_transport(std::unique_ptr<Transport> transport) {
    Target& t = target_impl();
    if (find_transport(transport->name()) != nullptr)
        return Status(Errc::already_exists);
    t.transports.push_back(std::move(transport));
    return Status();
}

Transport* find_transport(std::string_view name) noexcept {
    for (auto& tr : target_impl().transports)
        if (iequal(tr->name(), name)) return tr.get();
    return nullptr;
}

std::vector<Transport*> transports() {
    std::vector<Transport*> v;
    for (auto& tr : target_impl().transports) v.push_back(tr.get());
    return v;
}

// ---- subsystems ------------------------------------------------------------------------------

bool Subsystem::host_allowed(std::string_view hostnqn) const {
    if (opts.allow_any_host) return true;
    return std::find(hosts.begin(), hosts.end(), hostnqn) != hosts.end();
}

Namespace* Subsystem::find_ns(uint32_t nsid) const {
    if (nsid == 0 || nsid > ns.size()) return nullptr;
    Namespace* n = ns[nsid - 1].get();
    return n != nullptr && !n->removing ? n : nullptr;
}

namespace {
bool printable_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}
}  // namespace

Result<void> create_subsystem(const SubsystemOptions& opts) {
    Target& t = target_impl();
    t.home();
    if (auto e = spec::validate_nqn(opts.nqn); e != spec::NqnError::ok)
        return Error(Errc::invalid_argument, fmt::format("invalid NQN '{}': {}", opts.nqn,
                                                         spec::nqn_error_text(e)));
    if (opts.nqn == spec::discovery_nqn || t.find(opts.nqn))
        return Error(Errc::already_exists,
                     fmt::format("subsystem '{}' already exists", opts.nqn));
    if (opts.serial_number.size() > 20 || !printable_ascii(opts.serial_number))
        return Error(Errc::invalid_argument, fmt::format("Invalid SN {}", opts.serial_number));
    if (opts.model_number.size() > 40 || opts.model_number.empty() ||
        !printable_ascii(opts.model_number))
        return Error(Errc::invalid_argument, fmt::format("Invalid MN {}", opts.model_number));
    if (opts.min_cntlid < spec::cntlid_min || opts.max_cntlid > spec::cntlid_max ||
        opts.min_cntlid > opts.max_cntlid)
        return Error(Errc::invalid_argument, fmt::format("Invalid cntlid range [{}-{}]",
                                                         opts.min_cntlid, opts.max_cntlid));
    if (opts.max_namespaces > 1024)
        return Error(Errc::invalid_argument, "max_namespaces is limited to 1024");
    auto s = std::make_unique<Subsystem>();
    s->opts = opts;
    if (s->opts.max_namespaces == 0) s->opts.max_namespaces = 32;
    s->ns.resize(s->opts.max_namespaces);
    s->next_cntlid = opts.min_cntlid;
    t.subsystems.push_back(std::move(s));
    ++t.genctr;
    return {};
}

namespace {
// Tells every I/O qpair of the subsystem about a namespace change; `done` runs on the
// Target's Thread once all have applied it.
struct FanOut {
    uint32_t pending = 1;
    std::function<void()> done;
    void ack() {
        if (--pending == 0) {
            auto d = std::move(done);
            delete this;
            d();
        }
    }
};

template <class F>
void for_each_io_qpair(Subsystem& s, F&& f) {
    for (Controller* c : s.ctrlrs)
        for (size_t qid = 1; qid < c->qpairs.size(); ++qid)
            if (c->qpairs[qid] != nullptr) f(*c->qpairs[qid]);
}

void ns_channel_put(NsChannel& e) {
    if (e.ch != nullptr) bdev::put_channel(e.ch);
    e.ch = nullptr;
    e.desc = nullptr;
    e.active = false;
}

void broadcast_ns(Subsystem& s, uint32_t nsid, bool remove, std::function<void()> done) {
    Target& t = target_impl();
    auto* fan = new FanOut{1, std::move(done)};
    Namespace* ns = s.ns[nsid - 1].get();
    const NsChannel snapshot{ns ? ns->desc.get() : nullptr, nullptr,
                             ns ? ns->block_size : 0, ns ? ns->num_blocks : 0, 0, !remove, {}};
    for_each_io_qpair(s, [&](Qpair& q) {
        ++fan->pending;
        take_ref(q);
        runtime::Thread* home = &t.home();
        Status st = q.thread().post([&q, nsid, remove, snapshot, fan, home] {
            auto ack = [fan, home] {
                Status s2 = home->post([fan] { fan->ack(); });
                STRATA_ASSERT_MSG(s2.ok(), "nvmf: cannot message the Target's Thread");
            };
            auto& v = q.core().ns;
            if (nsid - 1 < v.size()) {
                NsChannel& e = v[nsid - 1];
                if (remove) {
                    e.active = false;
                    if (e.inflight == 0) {
                        ns_channel_put(e);
                        ack();
                    } else {
                        e.on_drained = ack;
                    }
                } else if (e.desc == snapshot.desc && e.desc != nullptr) {
                    e.num_blocks = snapshot.num_blocks;  // resize
                    ack();
                } else {
                    e = snapshot;
                    ack();
                }
            } else {
                ack();
            }
            drop_ref(q);
        });
        STRATA_ASSERT_MSG(st.ok(), "nvmf: cannot message a qpair's Thread");
    });
    fan->ack();
}

void notify_all_ctrlrs(Subsystem& s, uint32_t nsid) {
    for (Controller* c : s.ctrlrs) c->notify_ns_changed(nsid);
}

void on_bdev_event(std::string nqn, uint32_t nsid, bdev::Event ev, bdev::Bdev& b) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return;
    Namespace* ns = s->find_ns(nsid);
    if (ns == nullptr) return;
    if (ev == bdev::Event::remove) {
        STRATA_NOTICELOG(log_nvmf, "bdev {} removed: removing namespace {} of {}",
                         ns->bdev_name, nsid, nqn);
        remove_namespace(nqn, nsid, [](Result<void>) {});
    } else {
        ns->num_blocks = b.num_blocks();
        broadcast_ns(*s, nsid, false, [] {});
        notify_all_ctrlrs(*s, nsid);
    }
}
}  // namespace

Result<uint32_t> add_namespace(std::string_view nqn, const NamespaceOptions& o) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    if (s->discovery)
        return Error(Errc::invalid_argument, "the discovery subsystem has no namespaces");
    if (s->deleting) return Error(Errc::busy, "the subsystem is being deleted");
    uint32_t nsid = o.nsid;
    if (nsid == 0) {
        for (uint32_t i = 0; i < s->ns.size(); ++i)
            if (!s->ns[i]) {
                nsid = i + 1;
                break;
            }
        if (nsid == 0)
            return Error(Errc::no_space,
                         fmt::format("subsystem {} has no free namespace id (max_namespaces {})",
                                     nqn, s->ns.size()));
    } else if (nsid > s->ns.size() || nsid == spec::nsid_all) {
        return Error(Errc::invalid_argument,
                     fmt::format("Invalid NSID {}: max_namespaces is {}", nsid, s->ns.size()));
    } else if (s->ns[nsid - 1]) {
        return Error(Errc::already_exists, fmt::format("Requested NSID {} already in use", nsid));
    }
    std::string nqn_copy(nqn);
    auto desc = bdev::open(o.bdev_name, true, [nqn_copy, nsid](bdev::Event ev, bdev::Bdev& b) {
        on_bdev_event(nqn_copy, nsid, ev, b);
    });
    if (!desc.ok())
        return Error(desc.error().code(), fmt::format("Unable to add namespace: bdev {}: {}",
                                                      o.bdev_name, desc.error().message()));
    if (auto c = bdev::claim(**desc, kNvmfModule); !c.ok())
        return Error(Errc::permission_denied,
                     fmt::format("bdev {} cannot be opened, error=-1: {}", o.bdev_name,
                                 c.error().message()));
    auto ns = std::make_unique<Namespace>();
    ns->nsid = nsid;
    bdev::Bdev& b = (*desc)->bdev();
    ns->bdev_name = b.name();
    ns->block_size = b.block_size();
    ns->num_blocks = b.num_blocks();
    ns->nguid = o.nguid;
    ns->eui64 = o.eui64;
    ns->uuid_given = o.uuid_given;
    if (o.uuid_given) ns->uuid = o.uuid;
    else parse_uuid(b.uuid(), ns->uuid);
    ns->desc = std::move(*desc);
    s->ns[nsid - 1] = std::move(ns);
    broadcast_ns(*s, nsid, false, [] {});
    notify_all_ctrlrs(*s, nsid);
    return nsid;
}

void remove_namespace(std::string_view nqn, uint32_t nsid, std::function<void(Result<void>)> done) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return done(no_subsystem(nqn));
    Namespace* ns = s->find_ns(nsid);
    if (ns == nullptr)
        return done(Error(Errc::not_found, fmt::format("Invalid parameters: no namespace {}", nsid)));
    ns->removing = true;
    std::string nqn_copy(nqn);
    broadcast_ns(*s, nsid, true, [nqn_copy, nsid, done = std::move(done)] {
        Subsystem* s2 = target_impl().find(nqn_copy);
        if (s2 != nullptr && nsid <= s2->ns.size() && s2->ns[nsid - 1]) {
            auto& n = s2->ns[nsid - 1];
            bdev::release_claim(*n->desc);
            n.reset();
            notify_all_ctrlrs(*s2, nsid);
        }
        done({});
    });
}

Result<void> add_host(std::string_view nqn, std::string_view hostnqn) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    if (auto e = spec::validate_nqn(hostnqn); e != spec::NqnError::ok)
        return Error(Errc::invalid_argument,
                     fmt::format("invalid host NQN '{}': {}", hostnqn, spec::nqn_error_text(e)));
    if (std::find(s->hosts.begin(), s->hosts.end(), hostnqn) != s->hosts.end())
        return Error(Errc::already_exists, fmt::format("host {} already allowed", hostnqn));
    s->hosts.emplace_back(hostnqn);
    ++t.genctr;
    return {};
}

Result<void> remove_host(std::string_view nqn, std::string_view hostnqn) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    auto it = std::find(s->hosts.begin(), s->hosts.end(), hostnqn);
    if (it == s->hosts.end())
        return Error(Errc::not_found, fmt::format("host {} is not allowed", hostnqn));
    s->hosts.erase(it);
    // Disconnect that host's controllers, as SPDK does.
    for (Controller* c : s->ctrlrs)
        if (c->hostnqn == hostnqn) c->disconnect_all();
    ++t.genctr;
    return {};
}

Result<void> set_allow_any_host(std::string_view nqn, bool allow) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    if (s->discovery) return Error(Errc::invalid_argument, "the discovery subsystem allows any host");
    s->opts.allow_any_host = allow;
    ++t.genctr;
    return {};
}

Result<void> add_listener(std::string_view nqn, const TransportAddress& addr) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    Transport* tr = find_transport(addr.trtype);
    if (tr == nullptr)
        return Error(Errc::not_found,
                     fmt::format("Unable to find {} transport. The transport must be created first "
                                 "also make sure it is properly registered",
                                 addr.trtype));
    if (std::find(s->listeners.begin(), s->listeners.end(), addr) != s->listeners.end())
        return Error(Errc::already_exists,
                     fmt::format("listener {}:{} already exists", addr.traddr, addr.trsvcid));
    if (Status st = tr->listen(addr); !st.ok())
        return Error(st.code(), fmt::format("Unable to listen on {}:{}: {}", addr.traddr,
                                            addr.trsvcid, st.to_string()));
    TransportAddress a = addr;
    a.trtype = std::string(tr->name());
    s->listeners.push_back(std::move(a));
    ++t.genctr;
    return {};
}

Result<void> remove_listener(std::string_view nqn, const TransportAddress& addr) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    auto it = std::find(s->listeners.begin(), s->listeners.end(), addr);
    if (it == s->listeners.end())
        return Error(Errc::not_found,
                     fmt::format("listener {}:{} not found", addr.traddr, addr.trsvcid));
    if (Transport* tr = find_transport(it->trtype)) tr->stop_listening(*it);
    s->listeners.erase(it);
    ++t.genctr;
    return {};
}

void delete_subsystem(std::string_view nqn, std::function<void(Result<void>)> done) {
    Target& t = target_impl();
    Subsystem* s = t.find(nqn);
    if (s == nullptr || s->discovery) return done(no_subsystem(nqn));
    if (s->deleting) return done(Error(Errc::busy, "Subsystem currently in another state change try again later."));
    s->deleting = true;
    for (const auto& l : s->listeners)
        if (Transport* tr = find_transport(l.trtype)) tr->stop_listening(l);
    s->listeners.clear();
    ++t.genctr;
    for (Controller* c : s->ctrlrs) c->disconnect_all();
    // Wait (polling on the Target's Thread) for every controller to go, then drop namespaces.
    struct Wait {
        std::string nqn;
        std::function<void(Result<void>)> done;
        runtime::Poller* poller = nullptr;
    };
    auto* w = new Wait{std::string(nqn), std::move(done)};
    w->poller = t.home().register_poller(
        [](void* ctx) -> runtime::PollStatus {
            auto* w = static_cast<Wait*>(ctx);
            Target& t = target_impl();
            Subsystem* s = t.find(w->nqn);
            if (s != nullptr && !s->ctrlrs.empty()) return runtime::PollStatus::idle;
            t.home().unregister_poller(w->poller);
            if (s != nullptr) {
                for (auto& n : s->ns)
                    if (n) {
                        bdev::release_claim(*n->desc);
                        n.reset();
                    }
                auto& v = t.subsystems;
                v.erase(std::remove_if(v.begin(), v.end(),
                                       [s](const auto& p) { return p.get() == s; }),
                        v.end());
            }
            auto d = std::move(w->done);
            delete w;
            d({});
            return runtime::PollStatus::busy;
        },
        w, "nvmf_subsystem_delete", 1'000'000);
}

void shutdown(std::function<void()> done) {
    Target& t = target_impl();
    std::vector<std::string> names;
    for (auto& s : t.subsystems)
        if (!s->discovery && !s->deleting) names.push_back(s->opts.nqn);
    if (names.empty()) {
        // Discovery controllers too.
        for (Controller* c : t.subsystems[0]->ctrlrs) c->disconnect_all();
        return done();
    }
    auto remaining = std::make_shared<size_t>(names.size());
    auto d = std::make_shared<std::function<void()>>(std::move(done));
    for (const auto& n : names)
        delete_subsystem(n, [remaining, d](Result<void>) {
            if (--*remaining == 0) shutdown(std::move(*d));
        });
}

// ---- snapshots -----------------------------------------------------------------------------

namespace {
SubsystemInfo info_of(const Subsystem& s) {
    SubsystemInfo i;
    i.nqn = s.opts.nqn;
    i.discovery = s.discovery;
    i.listeners = s.listeners;
    i.allow_any_host = s.opts.allow_any_host;
    i.hosts = s.hosts;
    i.serial_number = s.opts.serial_number;
    i.model_number = s.opts.model_number;
    i.max_namespaces = s.opts.max_namespaces;
    i.min_cntlid = s.opts.min_cntlid;
    i.max_cntlid = s.opts.max_cntlid;
    for (const auto& n : s.ns) {
        if (!n || n->removing) continue;
        NamespaceInfo ni;
        ni.nsid = n->nsid;
        ni.bdev_name = n->bdev_name;
        ni.uuid = uuid_text(n->uuid);
        ni.uuid_given = n->uuid_given;
        ni.nguid_bytes = n->nguid;
        ni.eui64_bytes = n->eui64;
        if (n->nguid != std::array<uint8_t, 16>{}) ni.nguid = hex_text(n->nguid.data(), 16);
        if (n->eui64 != std::array<uint8_t, 8>{}) ni.eui64 = hex_text(n->eui64.data(), 8);
        i.namespaces.push_back(std::move(ni));
    }
    return i;
}
}  // namespace

std::vector<SubsystemInfo> subsystems() {
    std::vector<SubsystemInfo> v;
    for (const auto& s : target_impl().subsystems)
        if (!s->deleting) v.push_back(info_of(*s));
    return v;
}

Result<SubsystemInfo> subsystem_info(std::string_view nqn) {
    Subsystem* s = target_impl().find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    return info_of(*s);
}

Result<std::vector<ControllerInfo>> controllers(std::string_view nqn) {
    Subsystem* s = target_impl().find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    std::vector<ControllerInfo> v;
    for (Controller* c : s->ctrlrs) {
        if (c->admin_gone) continue;
        uint32_t io = 0;
        for (size_t q = 1; q < c->qpairs.size(); ++q) io += c->qpairs[q] != nullptr;
        v.push_back({c->cntlid, c->hostnqn, uuid_text(c->hostid), io});
    }
    return v;
}

Result<std::vector<QpairInfo>> qpairs(std::string_view nqn) {
    Subsystem* s = target_impl().find(nqn);
    if (s == nullptr) return no_subsystem(nqn);
    std::vector<QpairInfo> v;
    for (Controller* c : s->ctrlrs)
        for (Qpair* q : c->qpairs)
            if (q != nullptr && !c->admin_gone)
                v.push_back({c->cntlid, q->core().ctl.qid,
                             q->core().ctl.disconnecting ? "deleting" : "active",
                             q->listen_address()});
    return v;
}

uint64_t discovery_genctr() { return target_impl().genctr; }

std::vector<uint8_t> discovery_log(std::string_view hostnqn) {
    Target& t = target_impl();
    std::vector<spec::DiscoveryLogEntry> entries;
    for (const auto& s : t.subsystems) {
        if (s->deleting) continue;
        if (!s->discovery && !s->host_allowed(hostnqn)) continue;
        for (const auto& l : s->listeners) {
            spec::DiscoveryLogEntry e{};
            Transport* tr = find_transport(l.trtype);
            e.trtype = static_cast<uint8_t>(tr ? tr->trtype() : spec::TransportType::tcp);
            e.adrfam = static_cast<uint8_t>(iequal(l.adrfam, "IPv6") ? spec::AddressFamily::ipv6
                                                                     : spec::AddressFamily::ipv4);
            e.subtype = static_cast<uint8_t>(s->discovery ? spec::SubsystemType::discovery_current
                                                          : spec::SubsystemType::nvme);
            e.treq = static_cast<uint8_t>(spec::SecureChannel::not_required);
            e.portid = 0;
            e.cntlid = spec::cntlid_dynamic;
            e.asqsz = static_cast<uint16_t>(tr ? tr->limits().max_aq_depth : 128);
            spec::set_padded(e.trsvcid, l.trsvcid);
            spec::set_padded(e.traddr, l.traddr);
            spec::set_padded(e.subnqn, s->opts.nqn, '\0');
            e.tsas[0] = static_cast<uint8_t>(spec::TcpSecurityType::none);
            entries.push_back(e);
        }
    }
    std::vector<uint8_t> page(sizeof(spec::DiscoveryLogHeader) +
                              entries.size() * sizeof(spec::DiscoveryLogEntry));
    spec::DiscoveryLogHeader h{};
    h.genctr = t.genctr;
    h.numrec = entries.size();
    h.recfmt = 0;
    std::memcpy(page.data(), &h, sizeof(h));
    if (!entries.empty())
        std::memcpy(page.data() + sizeof(h), entries.data(),
                    entries.size() * sizeof(spec::DiscoveryLogEntry));
    return page;
}

Target& target() { return target_impl(); }

}  // namespace strata::nvmf
