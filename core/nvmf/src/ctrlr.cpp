// Fabrics (Connect, Property Get/Set, Disconnect) and admin commands, on the Target's Thread.
#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include <strata/base/log.h>

#include "core.h"

namespace strata::nvmf {

STRATA_LOG_COMPONENT(nvmf_ctrlr);

namespace {

using spec::GenericStatus;

constexpr uint32_t kVersion = 0x00010400;  // NVMe 1.4
constexpr uint32_t kAerLimit = 4;          // AERL + 1
constexpr uint16_t kKasUnits = 10;         // KAS: 1 s granularity, in 100 ms units

void invalid_connect_param(Request& req, spec::ConnectInvalidAttr attr, uint16_t ipo) {
    set_status(req, static_cast<uint8_t>(spec::Sct::command_specific),
               static_cast<uint8_t>(spec::FabricsStatus::invalid_param), true);
    spec::ConnectResponseDw0 dw0{};
    dw0.set_iattr(static_cast<uint8_t>(attr)).set_ipo(ipo);
    req.rsp.dw0 = dw0.raw;
    // The host sees only IATTR/IPO; the operator gets the reason in the target's log.
    STRATA_NOTICELOG(log_nvmf_ctrlr, "fabrics command (fctype {:#x}) refused: invalid parameter in the {} at byte {}",
                     static_cast<unsigned>(reinterpret_cast<const uint8_t*>(&req.cmd)[4]),
                     attr == spec::ConnectInvalidAttr::data ? "data" : "command", ipo);
}

void fabrics_status(Request& req, spec::FabricsStatus sc) {
    set_status(req, static_cast<uint8_t>(spec::Sct::command_specific), static_cast<uint8_t>(sc),
               true);
}

const TransportLimits& limits_of(const Qpair& q) { return q.transport().limits(); }

runtime::PollStatus keep_alive_poll(void* ctx) {
    auto* c = static_cast<Controller*>(ctx);
    const uint64_t now = runtime::now_ns();
    if (c->kato_ms == 0 || c->failed) return runtime::PollStatus::idle;
    if (now - c->last_keep_alive_ns <= uint64_t{c->kato_ms} * 1'000'000) return runtime::PollStatus::idle;
    const uint16_t id = c->cntlid;
    const uint32_t kato = c->kato_ms;
    STRATA_NOTICELOG(log_nvmf_ctrlr, "controller {} of {}: keep-alive timeout ({} ms) expired",
                     id, c->subsys->opts.nqn, kato);
    c->failed = true;
    c->csts |= 1u << 1;  // CSTS.CFS
    c->disconnect_all();
    return runtime::PollStatus::busy;
}

void arm_keep_alive(Controller& c) {
    Target& t = target_impl();
    if (c.ka_poller) t.home().unregister_poller(c.ka_poller);
    c.last_keep_alive_ns = runtime::now_ns();
    if (c.kato_ms == 0) return;
    // Check at half the timeout so expiry is detected within 1.5 x KATO.
    const uint64_t period = std::max<uint64_t>(uint64_t{c.kato_ms} * 1'000'000 / 2, 1'000'000);
    c.ka_poller = t.home().register_poller(&keep_alive_poll, &c, "nvmf_keep_alive", period);
}

// ---- Connect -----------------------------------------------------------------------------------

// On success returns what the qpair's Thread takes over with the completion (finish_connect).
std::unique_ptr<Attach> connect(Request& req) {
    Target& t = target_impl();
    Qpair& q = *req.qpair;
    auto& ctl = q.core().ctl;
    const auto cmd = std::bit_cast<spec::ConnectCommand>(req.cmd);
    if (ctl.ctrlr != nullptr) {
        set_generic(req, GenericStatus::command_sequence_error);
        return {};
    }
    if (cmd.recfmt != spec::connect_recfmt) {
        fabrics_status(req, spec::FabricsStatus::incompatible_format);
        return {};
    }
    if (req.length < spec::connect_data_bytes || req.xfer != XferDir::host_to_controller) {
        set_generic(req, GenericStatus::invalid_field);
        return {};
    }
    spec::ConnectData data{};
    copy_from_iov(req, &data, sizeof(data));
    const std::string_view subnqn = spec::nqn_field(data.subnqn);
    const std::string_view hostnqn = spec::nqn_field(data.hostnqn);
    Subsystem* s = t.find(subnqn);
    if (s == nullptr || !spec::nqn_is_valid(subnqn)) {
        invalid_connect_param(req, spec::ConnectInvalidAttr::data, offsetof(spec::ConnectData, subnqn));
        return {};
    }
    // As SPDK's target: the host NQN must fit its field, but its form is not checked here, and
    // an empty one is a host without a name (SPDK's own perf sends none unless told), allowed
    // where any host is. The allow-list below compares names exactly.
    if (hostnqn.size() > spec::nqn_max_bytes) {
        STRATA_NOTICELOG(log_nvmf_ctrlr, "Connect to {}: host NQN longer than {} bytes", subnqn,
                         spec::nqn_max_bytes);
        invalid_connect_param(req, spec::ConnectInvalidAttr::data, offsetof(spec::ConnectData, hostnqn));
        return {};
    }
    if (!s->host_allowed(hostnqn)) {
        fabrics_status(req, spec::FabricsStatus::invalid_host);
        spec::ConnectResponseDw0 dw0{};
        dw0.set_iattr(1).set_ipo(offsetof(spec::ConnectData, hostnqn));
        req.rsp.dw0 = dw0.raw;
        return {};
    }
    if (s->deleting) {
        fabrics_status(req, spec::FabricsStatus::controller_busy);
        return {};
    }
    const TransportLimits& lim = limits_of(q);
    const uint32_t max_depth = cmd.qid == 0 ? lim.max_aq_depth : lim.max_queue_depth;
    if (cmd.sqsize == 0 || uint32_t{cmd.sqsize} + 1 > max_depth) {
        invalid_connect_param(req, spec::ConnectInvalidAttr::command, offsetof(spec::ConnectCommand, sqsize));
        return {};
    }
    if (cmd.qid == 0) {
        if (data.cntlid != spec::cntlid_dynamic) {
            invalid_connect_param(req, spec::ConnectInvalidAttr::data, offsetof(spec::ConnectData, cntlid));
            return {};
        }
        // A free controller id in [min_cntlid, max_cntlid], round robin.
        const uint16_t lo = s->discovery ? spec::cntlid_min : s->opts.min_cntlid;
        const uint16_t hi = s->discovery ? spec::cntlid_max : s->opts.max_cntlid;
        uint16_t id = 0;
        for (uint32_t tries = 0; tries <= uint32_t(hi - lo); ++tries) {
            uint16_t cand = s->next_cntlid;
            if (cand < lo || cand > hi) cand = lo;
            s->next_cntlid = cand == hi ? lo : static_cast<uint16_t>(cand + 1);
            if (std::none_of(s->ctrlrs.begin(), s->ctrlrs.end(),
                             [cand](Controller* c) { return c->cntlid == cand; })) {
                id = cand;
                break;
            }
        }
        if (id == 0) {
            fabrics_status(req, spec::FabricsStatus::controller_busy);
            return {};
        }
        auto* c = new Controller(*s, id, std::string(hostnqn), data.hostid, q, cmd.kato);
        c->qpairs.assign(std::max<uint32_t>(lim.max_qpairs_per_ctrlr, 1), nullptr);
        c->qpairs[0] = &q;
        c->num_io_queues = std::max<uint32_t>(lim.max_qpairs_per_ctrlr, 1) - 1;
        s->ctrlrs.push_back(c);
        ctl.ctrlr = c;
        ctl.qid = 0;
        arm_keep_alive(*c);
        spec::ConnectResponseDw0 dw0{};
        dw0.set_cntlid(id);
        req.rsp.dw0 = dw0.raw;
        const std::string host(hostnqn);
        STRATA_INFOLOG(log_nvmf_ctrlr, "controller {} of {} for host {}", id, s->opts.nqn, host);
        auto a = std::make_unique<Attach>();
        a->ctrlr = c;
        a->qid = 0;
        a->sqsize = static_cast<uint16_t>(cmd.sqsize + 1);
        a->group = &t.group_for(q.thread());
        return a;
    }
    // I/O queue: join the controller named by CNTLID.
    if (s->discovery) {
        invalid_connect_param(req, spec::ConnectInvalidAttr::command, offsetof(spec::ConnectCommand, qid));
        return {};
    }
    auto it = std::find_if(s->ctrlrs.begin(), s->ctrlrs.end(),
                           [&](Controller* c) { return c->cntlid == data.cntlid; });
    if (it == s->ctrlrs.end() || (*it)->failed || (*it)->admin_gone) {
        invalid_connect_param(req, spec::ConnectInvalidAttr::data, offsetof(spec::ConnectData, cntlid));
        return {};
    }
    Controller* c = *it;
    if (c->hostnqn != hostnqn) {
        STRATA_NOTICELOG(log_nvmf_ctrlr, "I/O queue Connect to controller {} of {}: host NQN '{}' is not the controller's '{}'",
                         c->cntlid, s->opts.nqn, hostnqn, c->hostnqn);
        invalid_connect_param(req, spec::ConnectInvalidAttr::data, offsetof(spec::ConnectData, hostnqn));
        return {};
    }
    if ((c->cc & 1) == 0 || (c->csts & 1) == 0) {
        set_generic(req, GenericStatus::command_sequence_error);
        return {};
    }
    if (cmd.qid > c->num_io_queues || cmd.qid >= c->qpairs.size() || c->qpairs[cmd.qid] != nullptr) {
        invalid_connect_param(req, spec::ConnectInvalidAttr::command, offsetof(spec::ConnectCommand, qid));
        return {};
    }
    c->qpairs[cmd.qid] = &q;
    ctl.ctrlr = c;
    ctl.qid = cmd.qid;
    // The qpair's namespace view, handed to its Thread with the Connect completion; later
    // namespace changes are sent after it (broadcast_ns), so they apply in order.
    auto a = std::make_unique<Attach>();
    a->ctrlr = c;
    a->qid = cmd.qid;
    a->sqsize = static_cast<uint16_t>(cmd.sqsize + 1);
    a->group = &t.group_for(q.thread());
    auto& v = a->ns;
    v.assign(s->ns.size(), NsChannel{});
    for (size_t i = 0; i < s->ns.size(); ++i) {
        Namespace* n = s->ns[i].get();
        if (n == nullptr || n->removing) continue;
        v[i].desc = n->desc.get();
        v[i].block_size = n->block_size;
        v[i].num_blocks = n->num_blocks;
        v[i].active = true;
    }
    spec::ConnectResponseDw0 dw0{};
    dw0.set_cntlid(c->cntlid);
    req.rsp.dw0 = dw0.raw;
    return a;
}

// ---- Property Get/Set ------------------------------------------------------------------------

uint64_t cap_value(const Qpair& q) {
    spec::Cap cap{};
    cap.set_mqes(limits_of(q).max_queue_depth - 1).set_cqr(1).set_to(30).set_css(1);  // 15 s
    return cap.raw;
}

void property_get(Request& req, Controller& c) {
    const auto cmd = std::bit_cast<spec::PropertyGetCommand>(req.cmd);
    const bool eight = cmd.size() == spec::PropertySize::eight_bytes;
    uint64_t value = 0;
    switch (cmd.ofst) {
        case spec::reg::cap:
            if (!eight) return invalid_connect_param(req, spec::ConnectInvalidAttr::command, 40);
            value = cap_value(*req.qpair);
            break;
        case spec::reg::vs: value = kVersion; break;
        case spec::reg::cc: value = c.cc; break;
        case spec::reg::csts: value = c.csts; break;
        case spec::reg::aqa:
        case spec::reg::asq:
        case spec::reg::acq: value = 0; break;
        default:
            return invalid_connect_param(req, spec::ConnectInvalidAttr::command, 44);
    }
    if (eight != (cmd.ofst == spec::reg::cap || cmd.ofst == spec::reg::asq || cmd.ofst == spec::reg::acq))
        return invalid_connect_param(req, spec::ConnectInvalidAttr::command, 40);
    req.rsp.dw0 = static_cast<uint32_t>(value);
    req.rsp.dw1 = static_cast<uint32_t>(value >> 32);
}

void property_set(Request& req, Controller& c) {
    const auto cmd = std::bit_cast<spec::PropertySetCommand>(req.cmd);
    if (cmd.ofst != spec::reg::cc || cmd.size() != spec::PropertySize::four_bytes)
        return invalid_connect_param(req, spec::ConnectInvalidAttr::command, 44);
    const auto v = static_cast<uint32_t>(cmd.value);
    spec::Cc next{v};
    spec::Cc prev{c.cc};
    spec::Csts csts{c.csts};
    if (next.en() && !prev.en()) {
        if (next.iosqes() != spec::sqe_size_log2 || next.iocqes() != spec::cqe_size_log2 ||
            next.mps() != 0) {
            csts.set_cfs(1);  // an invalid setting fails the controller, as hardware does
        } else {
            csts.set_rdy(1);
        }
    } else if (!next.en() && prev.en()) {
        // Controller reset: I/O queues go, features return to defaults.
        csts.set_rdy(0);
        for (size_t i = 1; i < c.qpairs.size(); ++i)
            if (Qpair* q = c.qpairs[i]) {
                q->core().ctl.disconnecting = true;
                take_ref(*q);
                Status s = q->thread().post([q] {
                    if (!q->is_closed()) q->disconnect();
                    drop_ref(*q);
                });
                STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message a qpair's Thread");
            }
        c.num_queues_set = false;
    }
    if (next.shn() != 0) csts.set_shst(2);  // shutdown processing complete
    else if (prev.shn() != 0) csts.set_shst(0);
    c.cc = v;
    c.csts = csts.raw;
}

// ---- Identify ------------------------------------------------------------------------------

void identify_controller(Request& req, Controller& c) {
    const Subsystem& s = *c.subsys;
    const TransportLimits& lim = limits_of(*req.qpair);
    spec::IdentifyController id{};
    spec::set_padded(id.sn, s.opts.serial_number);
    spec::set_padded(id.mn, s.discovery ? std::string_view("Strata discovery") : s.opts.model_number);
    spec::set_padded(id.fr, "1.0");
    id.rab = 6;
    id.cmic = spec::cmic::multi_controller;
    uint8_t mdts = 0;
    while (mdts < 20 && (4096ull << (mdts + 1)) <= lim.max_io_size) ++mdts;
    id.mdts = lim.max_io_size >= 4096 ? mdts : 1;
    id.cntlid = c.cntlid;
    id.ver = kVersion;
    id.oaes = s.discovery ? (1u << 31) : (1u << 8);  // discovery log change / ns attribute notices
    id.ctratt = 0;
    id.cntrltype = s.discovery ? 2 : 1;
    id.acl = 3;
    id.aerl = kAerLimit - 1;
    id.frmw = 1;
    id.lpa = 0x04;  // extended data for Get Log Page
    id.elpe = kErrorLogEntries - 1;
    id.kas = kKasUnits;
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.maxcmd = static_cast<uint16_t>(lim.max_queue_depth);
    id.nn = s.discovery ? 0 : static_cast<uint32_t>(s.ns.size());
    if (!s.discovery) {
        id.oncs = (1u << 0) | (1u << 2) | (1u << 3);  // Compare, Dataset Management, Write Zeroes
        id.fuses = 1;                                  // Compare and Write
        id.vwc = 1;
        id.acwu = 0;
    }
    id.sgls = 0x1 | spec::sgls::address_as_offset | spec::sgls::transport_data_block;
    spec::set_padded(id.subnqn, s.opts.nqn, '\0');
    id.ioccsz = (spec::sqe_size_bytes + lim.in_capsule_data_size) / 16;
    id.iorcsz = spec::cqe_size_bytes / 16;
    id.icdoff = 0;
    id.fcatt = 0;  // dynamic controller model
    id.msdbd = lim.msdbd;
    copy_to_iov(req, &id, sizeof(id));
}

void identify_namespace(Request& req, Controller& c) {
    const uint32_t nsid = req.cmd.nsid;
    Subsystem& s = *c.subsys;
    if (nsid == 0 || nsid > s.ns.size()) return set_generic(req, GenericStatus::invalid_ns_or_format);
    Namespace* n = s.find_ns(nsid);
    if (n == nullptr) return;  // inactive: all zero
    spec::IdentifyNamespace id{};
    id.nsze = id.ncap = id.nuse = n->num_blocks;
    id.nlbaf = 0;
    id.flbas = 0;
    id.nmic = 1;  // may be attached to several controllers
    id.dlfeat = 0;
    uint8_t lbads = 0;
    while ((1u << lbads) < n->block_size) ++lbads;
    id.lbaf[0].lbads = lbads;
    id.nguid = n->nguid;
    id.eui64 = n->eui64;
    copy_to_iov(req, &id, sizeof(id));
}

void identify_active_ns_list(Request& req, Controller& c) {
    const uint32_t start = req.cmd.nsid;
    if (start >= 0xFFFFFFFEu) return set_generic(req, GenericStatus::invalid_ns_or_format);
    spec::NsList list{};
    size_t k = 0;
    for (const auto& n : c.subsys->ns)
        if (n && !n->removing && n->nsid > start && k < list.nsid.size()) list.nsid[k++] = n->nsid;
    copy_to_iov(req, &list, sizeof(list));
}

void identify_ns_descriptors(Request& req, Controller& c) {
    Namespace* n = c.subsys->find_ns(req.cmd.nsid);
    if (n == nullptr) return set_generic(req, GenericStatus::invalid_ns_or_format);
    std::array<uint8_t, 4096> buf{};
    size_t at = 0;
    auto add = [&](spec::NidType type, const uint8_t* p, uint8_t len) {
        buf[at] = static_cast<uint8_t>(type);
        buf[at + 1] = len;
        std::memcpy(&buf[at + 4], p, len);
        at += 4 + len;
    };
    if (n->eui64 != std::array<uint8_t, 8>{}) add(spec::NidType::eui64, n->eui64.data(), 8);
    if (n->nguid != std::array<uint8_t, 16>{}) add(spec::NidType::nguid, n->nguid.data(), 16);
    if (n->uuid != std::array<uint8_t, 16>{}) add(spec::NidType::uuid, n->uuid.data(), 16);
    const uint8_t csi = 0;
    add(spec::NidType::csi, &csi, 1);
    copy_to_iov(req, buf.data(), buf.size());
}

void identify(Request& req, Controller& c) {
    zero_iov(req);
    const auto cns = static_cast<uint8_t>(req.cmd.cdw10 & 0xFF);
    switch (static_cast<spec::Cns>(cns)) {
        case spec::Cns::ctrlr: return identify_controller(req, c);
        case spec::Cns::ns:
            if (c.subsys->discovery) break;
            return identify_namespace(req, c);
        case spec::Cns::active_ns_list:
            if (c.subsys->discovery) break;
            return identify_active_ns_list(req, c);
        case spec::Cns::ns_id_desc_list:
            if (c.subsys->discovery) break;
            return identify_ns_descriptors(req, c);
        default: break;
    }
    set_generic(req, GenericStatus::invalid_field);
}

// ---- Get Log Page ----------------------------------------------------------------------------

// SMART / Health: the controller's own figures now, the qpairs' counters gathered by messaging
// each qpair's Thread (only it writes them); the page is built and the command completed when
// the last answer is back. Nothing of the Controller is used after the start (it may go).
struct SmartGather {
    Request* req = nullptr;
    spec::SmartHealthLog log{};
    QpairStats sum{};
    uint64_t offset = 0, len = 0;
    uint32_t pending = 1;

    void add(const QpairStats& s) {
        sum.bytes_read += s.bytes_read;
        sum.bytes_written += s.bytes_written;
        sum.read_commands += s.read_commands;
        sum.write_commands += s.write_commands;
    }
    void ack() {
        if (--pending != 0) return;
        std::unique_ptr<SmartGather> self(this);
        log.data_units_read.set((sum.bytes_read / 512 + 999) / 1000);
        log.data_units_written.set((sum.bytes_written / 512 + 999) / 1000);
        log.host_read_commands.set(sum.read_commands);
        log.host_write_commands.set(sum.write_commands);
        zero_iov(*req);
        if (offset < sizeof(log))
            copy_to_iov(*req, reinterpret_cast<const uint8_t*>(&log) + offset,
                        std::min<uint64_t>(len, sizeof(log) - offset));
        finish(*req);
    }
};

void smart_log(Request& req, Controller& c, uint64_t offset, uint64_t len) {
    auto* g = new SmartGather;
    g->req = &req;
    g->offset = offset;
    g->len = len;
    g->log.composite_temperature.set(273 + 25);
    g->log.available_spare = 100;
    g->log.available_spare_threshold = 10;
    g->log.num_err_log_entries.set(c.error_count);
    g->add(c.retired);
    runtime::Thread* home = &target_impl().home();
    for (Qpair* q : c.qpairs) {
        if (q == nullptr) continue;
        ++g->pending;
        take_ref(*q);
        Status s = q->thread().post([g, q, home] {
            const QpairStats st = q->stats();
            Status s2 = home->post([g, st] {
                g->add(st);
                g->ack();
            });
            STRATA_ASSERT_MSG(s2.ok(), "nvmf: cannot message the Target's Thread");
            drop_ref(*q);
        });
        STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message a qpair's Thread");
    }
    g->ack();
}

// Returns true when the request is completed later (SMART gathers from the qpairs' Threads).
bool get_log_page(Request& req, Controller& c) {
    const uint8_t lid = req.cmd.cdw10 & 0xFF;
    const bool rae = (req.cmd.cdw10 >> 15) & 1;
    const uint64_t numd = ((uint64_t{req.cmd.cdw11} & 0xFFFF) << 16 | (req.cmd.cdw10 >> 16)) + 1;
    const uint64_t len = numd * 4;
    const uint64_t offset = uint64_t{req.cmd.cdw12} | (uint64_t{req.cmd.cdw13} << 32);
    if (offset & 3) {
        set_generic(req, GenericStatus::invalid_field);
        return false;
    }
    if (len > req.length) {
        set_generic(req, GenericStatus::data_sgl_length_invalid);
        return false;
    }
    std::vector<uint8_t> page;
    if (c.subsys->discovery) {
        if (lid != spec::log_page_discovery) {
            set_generic(req, GenericStatus::invalid_field);
            return false;
        }
        page = discovery_log(c.hostnqn);
    } else {
        switch (static_cast<spec::LogPage>(lid)) {
            case spec::LogPage::error_info: {
                // ELPE + 1 entries, newest first; unused ones zero (error count 0).
                page.assign(kErrorLogEntries * sizeof(spec::ErrorInfoEntry), 0);
                const uint64_t n = std::min<uint64_t>(c.errlog_stored, kErrorLogEntries);
                for (uint64_t i = 0; i < n; ++i)
                    std::memcpy(page.data() + i * sizeof(spec::ErrorInfoEntry),
                                &c.errlog[(c.errlog_stored - 1 - i) % kErrorLogEntries],
                                sizeof(spec::ErrorInfoEntry));
                break;
            }
            case spec::LogPage::smart_health:
                smart_log(req, c, offset, len);
                return true;
            case spec::LogPage::changed_ns_list: {
                page.assign(4096, 0);
                std::vector<uint32_t> ids = c.changed_ns;
                std::sort(ids.begin(), ids.end());
                if (c.changed_ns_overflow) ids.assign(1, spec::nsid_all);
                if (!ids.empty())  // memcpy from an empty vector's null data() is undefined
                    std::memcpy(page.data(), ids.data(), std::min<size_t>(ids.size(), 1024) * 4);
                if (!rae) {
                    c.changed_ns.clear();
                    c.changed_ns_overflow = false;
                    c.ns_notice_masked = false;
                }
                break;
            }
            default:
                set_status(req, static_cast<uint8_t>(spec::Sct::command_specific), 0x09,
                           true);  // Invalid Log Page
                return false;
        }
    }
    zero_iov(req);
    if (offset < page.size())
        copy_to_iov(req, page.data() + offset, std::min<uint64_t>(len, page.size() - offset));
    return false;
}

// ---- Features --------------------------------------------------------------------------------

void get_features(Request& req, Controller& c) {
    const uint8_t fid = req.cmd.cdw10 & 0xFF;
    switch (static_cast<spec::FeatureId>(fid)) {
        case spec::FeatureId::number_of_queues: {
            const uint32_t n = c.num_io_queues - 1;
            req.rsp.dw0 = n | (n << 16);
            return;
        }
        case spec::FeatureId::keep_alive_timer: req.rsp.dw0 = c.kato_ms; return;
        case spec::FeatureId::async_event_config: req.rsp.dw0 = c.aec; return;
        case spec::FeatureId::volatile_write_cache:
            if (c.subsys->discovery) break;
            req.rsp.dw0 = c.vwc_enabled ? 1 : 0;
            return;
        default: break;
    }
    set_generic(req, GenericStatus::invalid_field);
}

void set_features(Request& req, Controller& c) {
    const uint8_t fid = req.cmd.cdw10 & 0xFF;
    const uint32_t v = req.cmd.cdw11;
    switch (static_cast<spec::FeatureId>(fid)) {
        case spec::FeatureId::number_of_queues: {
            if (c.live_qpairs() > 1) return set_generic(req, GenericStatus::command_sequence_error);
            const uint32_t nsqr = v & 0xFFFF, ncqr = v >> 16;
            if (nsqr == 0xFFFF || ncqr == 0xFFFF) return set_generic(req, GenericStatus::invalid_field);
            const uint32_t max = static_cast<uint32_t>(c.qpairs.size()) - 1;  // I/O queues
            const uint32_t granted = std::min(std::min(nsqr, ncqr) + 1, std::max(max, 1u));
            c.num_io_queues = granted;
            c.num_queues_set = true;
            const uint32_t n = std::max(max, 1u) - 1;  // 0's based
            req.rsp.dw0 = n | (n << 16);
            return;
        }
        case spec::FeatureId::keep_alive_timer:
            c.kato_ms = v == 0 ? 0 : std::max<uint32_t>(v, 1000);  // KAS granularity
            arm_keep_alive(c);
            return;
        case spec::FeatureId::async_event_config:
            c.aec = v;
            return;
        case spec::FeatureId::volatile_write_cache:
            if (c.subsys->discovery) break;
            c.vwc_enabled = v & 1;
            return;
        default: break;
    }
    set_generic(req, GenericStatus::invalid_field);
}

// ---- Abort -----------------------------------------------------------------------------------

void abort_cmd(Request& req, Controller& c) {
    const uint16_t sqid = req.cmd.cdw10 & 0xFFFF;
    const uint16_t cid = req.cmd.cdw10 >> 16;
    req.rsp.dw0 = 1;  // not aborted
    if (sqid != 0) return;  // I/O commands run to completion on their own Thread
    for (Request& r : c.aers) {
        if (r.cmd.cid == cid) {
            c.aers.remove(r);
            set_generic(r, GenericStatus::abort_requested);
            finish(r);
            req.rsp.dw0 = 0;
            return;
        }
    }
}

// Returns true when the request was kept (AER) and must not be finished now.
bool admin(Request& req, Controller& c) {
    switch (static_cast<spec::AdminOpcode>(req.cmd.opc)) {
        case spec::AdminOpcode::identify: identify(req, c); break;
        case spec::AdminOpcode::get_log_page:
            if (get_log_page(req, c)) return true;
            break;
        case spec::AdminOpcode::get_features: get_features(req, c); break;
        case spec::AdminOpcode::set_features: set_features(req, c); break;
        case spec::AdminOpcode::keep_alive:
            c.last_keep_alive_ns = runtime::now_ns();
            break;
        case spec::AdminOpcode::abort: abort_cmd(req, c); break;
        case spec::AdminOpcode::async_event_request:
            if (c.aers.size() >= kAerLimit) {
                set_status(req, static_cast<uint8_t>(spec::Sct::command_specific), 0x05, true);
                break;
            }
            c.aers.push_back(req);
            c.flush_aens();
            return true;
        default: set_generic(req, GenericStatus::invalid_opcode); break;
    }
    return false;
}

}  // namespace

void exec_control(Request& req) noexcept {
    Qpair& q = *req.qpair;
    // The Target's Thread's own view of the qpair (never the qpair Thread's fields).
    auto& ctl = q.core().ctl;
    if (req.cmd.opc == spec::fabrics_opcode) {
        const auto type = static_cast<spec::FabricsCommandType>(spec::fabrics_type(req.cmd));
        if (type == spec::FabricsCommandType::connect) {
            if (auto a = connect(req)) {
                finish_connect(req, std::move(a));
                return;
            }
        } else if (ctl.ctrlr == nullptr) {
            set_generic(req, GenericStatus::command_sequence_error);
        } else {
            Controller& c = *ctl.ctrlr;
            switch (type) {
                case spec::FabricsCommandType::property_get:
                    if (ctl.qid != 0) set_generic(req, GenericStatus::invalid_field);
                    else property_get(req, c);
                    break;
                case spec::FabricsCommandType::property_set:
                    if (ctl.qid != 0) set_generic(req, GenericStatus::invalid_field);
                    else property_set(req, c);
                    break;
                case spec::FabricsCommandType::disconnect: {
                    ctl.disconnecting = true;
                    take_ref(q);
                    finish(req);
                    Qpair* qp = &q;
                    Status s = q.thread().post([qp] {
                        if (!qp->is_closed()) qp->disconnect();
                        drop_ref(*qp);
                    });
                    STRATA_ASSERT_MSG(s.ok(), "nvmf: cannot message a qpair's Thread");
                    return;
                }
                default:
                    // Authentication is not supported: Invalid Field (as SPDK without DH-HMAC-CHAP).
                    set_generic(req, GenericStatus::invalid_field);
                    break;
            }
        }
    } else if (ctl.ctrlr == nullptr) {
        set_generic(req, GenericStatus::command_sequence_error);
    } else if (ctl.qid != 0) {
        // A command on an I/O queue before its Connect completed there (the host did not wait
        // for the response): not an admin command, whatever its opcode says.
        set_generic(req, GenericStatus::command_sequence_error);
    } else {
        Controller& c = *ctl.ctrlr;
        if (c.failed || c.admin_gone) {
            set_generic(req, GenericStatus::aborted_sq_deletion);
        } else if ((c.cc & 1) == 0 || (c.csts & 1) == 0) {
            set_generic(req, GenericStatus::command_sequence_error);
        } else if (admin(req, c)) {
            return;
        }
    }
    if (!req.rsp.sf().ok() && ctl.ctrlr != nullptr) ctl.ctrlr->log_error(error_entry(req, ctl.qid));
    finish(req);
}

}  // namespace strata::nvmf
