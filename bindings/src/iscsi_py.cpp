// The iSCSI test initiator (core/iscsi/testing) from Python: World._iscsi_connect makes one
// Initiator on the host's "iscsi_initiator" Thread and logs it in; World._iscsi_submit posts
// one operation (SCSI command, task management, ping, SendTargets, logout) whose handle
// (IscsiIo) the simulator completes as it runs; World._iscsi_control drops, closes or arms
// byte corruption. strata/iscsi.py wraps these. Everything native runs on the initiator's
// Thread; Python reads the handles between steps (one OS thread: no race).
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pybind11/stl.h>

#include <strata/iscsi/testing/initiator.h>
#include <strata/runtime/thread.h>

#include "json_py.h"
#include "world.h"

namespace pyb = pybind11;
namespace it = strata::iscsi::testing;

namespace strata::py {

// One operation submitted from Python.
struct IscsiIo {
    uint64_t id = 0;
    std::string op;
    uint64_t lun = 0, lba = 0, blocks = 0;
    bool started = false;   // the submit message ran
    bool accepted = false;  // the initiator took it: it completes (once)
    std::string refusal;
    uint32_t completions = 0;
    std::string status = "pending";  // good, check_condition, scsi status name, or the errc
    std::string error;               // the initiator's error() when it failed in transport
    int scsi_status = -1;
    int response = -1;  // iSCSI response; TMF response for task management
    uint8_t sense_key = 0, asc = 0, ascq = 0;
    uint32_t residual = 0, data_in = 0, itt = 0;
    std::vector<uint8_t> buf;
    std::vector<iscsi::SendTargetsEntry> targets;
    bool done() const { return completions > 0 || (started && !accepted); }
};

// One initiator (one connection, one session).
struct IscsiSession {
    uint64_t id = 0;
    runtime::Thread* thread = nullptr;
    std::unique_ptr<it::Initiator> ini;
    std::string login = "pending";  // pending, ok, failed
    std::string login_error;
    bool closed = false;
    // Armed corruption (negative tests): flip `xor` into byte `offset` of the next `count`
    // outgoing PDUs of `opcode` (-1: any); flip a received byte `after` bytes from when armed.
    int tx_opcode = -1;
    uint32_t tx_offset = 0, tx_count = 0;
    uint8_t tx_xor = 0;
    uint64_t rx_pos = 0, rx_at = UINT64_MAX;
    uint8_t rx_xor = 0;
    uint64_t corrupted_tx = 0, corrupted_rx = 0;
    std::vector<std::shared_ptr<IscsiIo>> live;  // not yet done
};

struct World::Iscsi {
    runtime::Thread* thread = nullptr;
    std::vector<std::shared_ptr<IscsiSession>> sessions;
    uint64_t next_id = 1;
};

void World::IscsiDeleter::operator()(Iscsi* p) const {
    delete p;
}

namespace {

template <class T>
T opt(const pyb::dict& d, const char* k, T dflt) {
    if (!d.contains(k) || d[k].is_none()) return dflt;
    return d[k].cast<T>();
}

void finish(IscsiIo& io, const it::ScsiResult& r, it::Initiator* ini) {
    if (++io.completions > 1) return;
    io.itt = r.itt;
    io.scsi_status = r.status;
    io.response = r.response;
    io.residual = r.residual;
    io.data_in = r.data_in;
    io.sense_key = r.sense_key();
    io.asc = r.asc();
    io.ascq = r.ascq();
    if (!r.transport.ok()) {
        io.status = std::string(errc_name(r.transport.code()));
        if (ini) io.error = ini->error();
    } else if (r.response != 0) {
        io.status = "target_failure";
    } else if (r.status == 0) {
        io.status = "good";
    } else if (r.status == 2) {
        io.status = "check_condition";
    } else if (r.status == 8) {
        io.status = "busy";
    } else if (r.status == 0x18) {
        io.status = "reservation_conflict";
    } else if (r.status == 0x28) {
        io.status = "task_set_full";
    } else {
        io.status = fmt::format("scsi_status_{:#x}", r.status);
    }
}

// On the session's Thread.
void start_op(IscsiSession& s, const std::shared_ptr<IscsiIo>& io, const pyb::dict* /*unused*/,
              std::vector<uint8_t> cdb, int dir, uint32_t length, uint32_t block_size, bool use16,
              bool fua, uint32_t ref_itt, std::string what) {
    io->started = true;
    it::Initiator* ini = s.ini.get();
    if (!ini) {
        io->refusal = "the initiator is closed";
        return;
    }
    auto scsi_done = [io, ini](const it::ScsiResult& r) { finish(*io, r, ini); };
    Result<uint32_t> r = Error(Errc::invalid_argument, "unknown operation");
    const std::string& op = io->op;
    if (op == "read") {
        io->buf.assign(size_t(io->blocks) * block_size, 0);
        r = ini->read(io->lun, io->lba, uint32_t(io->blocks), block_size, io->buf.data(), scsi_done,
                      use16);
    } else if (op == "write") {
        r = ini->write(io->lun, io->lba, uint32_t(io->blocks), block_size, io->buf.data(),
                       scsi_done, use16, fua);
    } else if (op == "test_unit_ready") {
        r = ini->test_unit_ready(io->lun, scsi_done);
    } else if (op == "inquiry") {
        io->buf.assign(length ? length : 96, 0);
        r = ini->inquiry(io->lun, !cdb.empty(), cdb.empty() ? 0 : cdb[0], io->buf.data(),
                         uint16_t(io->buf.size()), scsi_done);
    } else if (op == "read_capacity16") {
        io->buf.assign(32, 0);
        r = ini->read_capacity16(io->lun, io->buf.data(), scsi_done);
    } else if (op == "report_luns") {
        io->buf.assign(length ? length : 4096, 0);
        r = ini->report_luns(io->buf.data(), uint32_t(io->buf.size()), scsi_done);
    } else if (op == "synchronize_cache") {
        r = ini->synchronize_cache(io->lun, scsi_done);
    } else if (op == "cdb") {
        it::ScsiCommand c;
        c.lun = io->lun;
        std::memcpy(c.cdb.data(), cdb.data(), std::min<size_t>(cdb.size(), 16));
        c.cdb_length = uint8_t(std::min<size_t>(cdb.size(), 16));
        c.dir = dir == 1 ? it::DataDir::read : dir == 2 ? it::DataDir::write : it::DataDir::none;
        if (c.dir == it::DataDir::read) io->buf.assign(length, 0);
        c.buf = io->buf.data();
        c.length = c.dir == it::DataDir::none ? 0 : uint32_t(io->buf.size());
        r = ini->submit(c, scsi_done);
    } else if (op == "abort_task" || op == "lun_reset" || op == "abort_task_set" ||
               op == "target_reset") {
        const uint8_t f = op == "abort_task"       ? it::tmf::abort_task
                          : op == "lun_reset"      ? it::tmf::lun_reset
                          : op == "abort_task_set" ? it::tmf::abort_task_set
                                                   : it::tmf::target_warm_reset;
        r = ini->task_management(f, io->lun, ref_itt, [io, ini](Status st, uint8_t resp) {
            if (++io->completions > 1) return;
            io->response = resp;
            io->status =
                st.ok() ? (resp == 0 ? "good" : "tmf_response") : std::string(errc_name(st.code()));
            if (!st.ok()) io->error = ini->error();
        });
    } else if (op == "ping") {
        r = ini->ping(io->buf, [io, ini](Status st) {
            if (++io->completions > 1) return;
            io->status = st.ok() ? "good" : std::string(errc_name(st.code()));
            if (!st.ok()) io->error = ini->error();
        });
    } else if (op == "send_targets" || op == "logout") {
        auto done = [io, ini](Status st) {
            if (++io->completions > 1) return;
            io->status = st.ok() ? "good" : std::string(errc_name(st.code()));
            if (!st.ok()) io->error = ini->error();
        };
        if (ini->state() != it::Initiator::State::full_feature) {
            io->refusal = std::string("the initiator is ") + ini->state_name();
            return;
        }
        io->accepted = true;
        if (op == "logout") {
            ini->logout(done);
        } else {
            ini->send_targets(
                [io, done](Status st, std::vector<iscsi::SendTargetsEntry> v) {
                    io->targets = std::move(v);
                    done(st);
                },
                what.empty() ? "All" : what);
        }
        return;
    }
    if (!r.ok()) {
        io->refusal = r.error().message();
        return;
    }
    io->itt = *r;
    io->accepted = true;
}

}  // namespace

World::Iscsi& World::iscsi() {
    check_open();
    if (iscsi_) return *iscsi_;
    std::unique_ptr<Iscsi, IscsiDeleter> p(new Iscsi);
    p->thread = own_thread("iscsi_initiator");
    if (p->thread == nullptr) p->thread = sched_->create_thread("iscsi_initiator", -1, host_.get());
    iscsi_ = std::move(p);
    return *iscsi_;
}

void World::close_iscsi() {
    if (!iscsi_) return;
    Iscsi* p = iscsi_.get();
    {
        pyb::gil_scoped_release nogil;
        run_on(p->thread, [p] {
            for (auto& s : p->sessions) {
                s->ini.reset();
                s->closed = true;
            }
            runtime::current_thread()->request_exit();
        });
    }
    iscsi_.reset();
}

std::shared_ptr<IscsiSession> World::iscsi_connect(pyb::dict o) {
    Guard g(*this);
    Iscsi& m = iscsi();
    it::InitiatorOptions io;
    io.portal.address = opt<std::string>(o, "address", "127.0.0.1");
    io.portal.port = opt<uint16_t>(o, "port", 3260);
    io.sock_impl = opt<std::string>(o, "sock_impl", "");
    io.initiator_name = opt<std::string>(o, "initiator_name", io.initiator_name);
    io.initiator_alias = opt<std::string>(o, "initiator_alias", "");
    io.target_name = opt<std::string>(o, "target", "");
    io.seed = opt<uint64_t>(o, "seed", sched_->seed() ^ m.next_id);
    io.cid = opt<uint16_t>(o, "cid", 0);
    if (o.contains("isid") && !o["isid"].is_none()) {
        const uint64_t v = o["isid"].cast<uint64_t>();
        for (int i = 0; i < 6; ++i) io.isid[size_t(i)] = uint8_t(v >> (8 * (5 - i)));
    }
    io.chap_user = opt<std::string>(o, "chap_user", "");
    io.chap_secret = opt<std::string>(o, "chap_secret", "");
    io.chap_muser = opt<std::string>(o, "chap_muser", "");
    io.chap_msecret = opt<std::string>(o, "chap_msecret", "");
    io.header_digest = opt<bool>(o, "header_digest", false);
    io.data_digest = opt<bool>(o, "data_digest", false);
    io.immediate_data = opt<bool>(o, "immediate_data", true);
    io.initial_r2t = opt<bool>(o, "initial_r2t", true);
    io.first_burst_length = opt<uint32_t>(o, "first_burst_length", io.first_burst_length);
    io.max_burst_length = opt<uint32_t>(o, "max_burst_length", io.max_burst_length);
    io.max_recv_data_segment_length =
        opt<uint32_t>(o, "max_recv_data_segment_length", io.max_recv_data_segment_length);
    io.queue_depth = opt<uint32_t>(o, "queue_depth", io.queue_depth);
    io.nop_interval_ms = opt<uint32_t>(o, "nop_interval_ms", 0);
    io.nop_timeout_ms = opt<uint32_t>(o, "nop_timeout_ms", io.nop_timeout_ms);
    auto s = std::make_shared<IscsiSession>();
    s->id = m.next_id++;
    s->thread = m.thread;
    Status st;
    {
        pyb::gil_scoped_release nogil;
        st = m.thread->post([s, io = std::move(io)]() mutable {
            s->ini = std::make_unique<it::Initiator>(std::move(io));
            it::Initiator* ini = s->ini.get();
            IscsiSession* sp = s.get();
            ini->set_tx_hook([sp](std::vector<uint8_t>& pdu) {
                if (sp->tx_count == 0) return;
                if (sp->tx_opcode >= 0 && (pdu[0] & 0x3f) != sp->tx_opcode) return;
                if (sp->tx_offset >= pdu.size()) return;
                pdu[sp->tx_offset] ^= sp->tx_xor;
                --sp->tx_count;
                ++sp->corrupted_tx;
            });
            ini->set_rx_hook([sp](uint8_t* p, size_t n) {
                if (sp->rx_at >= sp->rx_pos && sp->rx_at < sp->rx_pos + n) {
                    p[sp->rx_at - sp->rx_pos] ^= sp->rx_xor;
                    sp->rx_at = UINT64_MAX;
                    ++sp->corrupted_rx;
                }
                sp->rx_pos += n;
            });
            ini->login([sp, ini](Status r) {
                sp->login = r.ok() ? "ok" : "failed";
                if (!r.ok()) sp->login_error = ini->error();
            });
        });
    }
    if (!st.ok())
        throw std::runtime_error("iscsi: cannot post to the initiator Thread: " + st.to_string());
    m.sessions.push_back(s);
    return s;
}

std::shared_ptr<IscsiIo> World::iscsi_submit(std::shared_ptr<IscsiSession> s, const std::string& op,
                                             pyb::dict a) {
    Guard g(*this);
    Iscsi& m = iscsi();
    auto io = std::make_shared<IscsiIo>();
    io->id = m.next_id++;
    io->op = op;
    io->lun = opt<uint64_t>(a, "lun", 0);
    io->lba = opt<uint64_t>(a, "lba", 0);
    const uint32_t bs = opt<uint32_t>(a, "block_size", 512);
    io->blocks = opt<uint64_t>(a, "blocks", 0);
    if (a.contains("data") && !a["data"].is_none()) {
        std::string d = a["data"].cast<std::string>();
        io->buf.assign(d.begin(), d.end());
        if (op == "write") {
            if (bs == 0 || d.empty() || d.size() % bs)
                throw pyb::value_error("write data must be a positive multiple of block_size");
            io->blocks = d.size() / bs;
        }
    }
    std::vector<uint8_t> cdb;
    if (a.contains("cdb") && !a["cdb"].is_none()) {
        std::string c = a["cdb"].cast<std::string>();
        cdb.assign(c.begin(), c.end());
    }
    if (op == "inquiry" && opt<bool>(a, "evpd", false)) cdb = {opt<uint8_t>(a, "page", 0)};
    const std::string dirs = opt<std::string>(a, "dir", "none");
    const int dir = dirs == "read" ? 1 : dirs == "write" ? 2 : 0;
    const uint32_t length = opt<uint32_t>(a, "length", 0);
    const bool use16 = opt<bool>(a, "use16", false), fua = opt<bool>(a, "fua", false);
    const uint32_t ref = opt<uint32_t>(a, "ref_itt", 0xffffffffu);
    const std::string what = opt<std::string>(a, "what", "All");
    std::erase_if(s->live, [](const auto& x) { return x->done(); });
    s->live.push_back(io);
    Status st;
    {
        pyb::gil_scoped_release nogil;
        st = s->thread->post(
            [s, io, cdb = std::move(cdb), dir, length, bs, use16, fua, ref, what]() mutable {
                start_op(*s, io, nullptr, std::move(cdb), dir, length, bs, use16, fua, ref, what);
            });
    }
    if (!st.ok()) throw std::runtime_error("iscsi: cannot post: " + st.to_string());
    return io;
}

void World::iscsi_control(std::shared_ptr<IscsiSession> s, const std::string& op, pyb::dict a) {
    Guard g(*this);
    Iscsi& m = iscsi();
    (void)m;
    const int opcode = opt<int>(a, "opcode", -1);
    const uint32_t offset = opt<uint32_t>(a, "offset", 0);
    const uint8_t x = opt<uint8_t>(a, "xor", 1);
    const uint32_t count = opt<uint32_t>(a, "count", 1);
    const uint64_t after = opt<uint64_t>(a, "after", 0);
    const bool abort = opt<bool>(a, "abort", true);
    if (op != "drop" && op != "close" && op != "corrupt_tx" && op != "corrupt_rx")
        throw pyb::value_error("iscsi control: drop, close, corrupt_tx or corrupt_rx");
    pyb::gil_scoped_release nogil;
    run_on(s->thread, [s, op, opcode, offset, x, count, after, abort] {
        if (op == "close") {
            if (s->ini) s->ini->drop(true);  // outstanding operations fail, not hang
            s->ini.reset();
            s->closed = true;
        } else if (op == "drop") {
            if (s->ini) s->ini->drop(abort);
        } else if (op == "corrupt_tx") {
            s->tx_opcode = opcode;
            s->tx_offset = offset;
            s->tx_xor = x;
            s->tx_count = count;
        } else {
            s->rx_at = s->rx_pos + after;
            s->rx_xor = x;
        }
    });
}

void bind_iscsi(pyb::module_& m, pyb::class_<World>& world) {
    pyb::class_<IscsiSession, std::shared_ptr<IscsiSession>>(
        m, "IscsiSession",
        "One iSCSI initiator connection (World._iscsi_connect); use strata.iscsi.")
        .def_readonly("id", &IscsiSession::id)
        .def_readonly("login", &IscsiSession::login)
        .def_readonly("login_error", &IscsiSession::login_error)
        .def_readonly("closed", &IscsiSession::closed)
        .def_readonly("corrupted_tx", &IscsiSession::corrupted_tx)
        .def_readonly("corrupted_rx", &IscsiSession::corrupted_rx)
        .def_property_readonly("state",
                               [](const IscsiSession& s) -> std::string {
                                   return s.ini ? s.ini->state_name() : "closed";
                               })
        .def_property_readonly(
            "error",
            [](const IscsiSession& s) -> std::string { return s.ini ? s.ini->error() : ""; })
        .def_property_readonly(
            "outstanding",
            [](const IscsiSession& s) -> uint32_t { return s.ini ? s.ini->outstanding() : 0; })
        .def_property_readonly("info",
                               [](const IscsiSession& s) {
                                   pyb::dict d;
                                   if (!s.ini) return d;
                                   const it::SessionInfo& i = s.ini->session();
                                   d["discovery"] = i.discovery;
                                   d["tsih"] = i.tsih;
                                   d["header_digest"] = i.header_digest;
                                   d["data_digest"] = i.data_digest;
                                   d["immediate_data"] = i.immediate_data;
                                   d["initial_r2t"] = i.initial_r2t;
                                   d["first_burst_length"] = i.first_burst_length;
                                   d["max_burst_length"] = i.max_burst_length;
                                   d["max_send_data_segment_length"] =
                                       i.max_send_data_segment_length;
                                   d["target_alias"] = i.target_alias;
                                   d["target_portal_group_tag"] = i.target_portal_group_tag;
                                   d["status_class"] = i.status_class;
                                   d["status_detail"] = i.status_detail;
                                   pyb::list keys;
                                   for (auto& [k, v] : i.keys) keys.append(pyb::make_tuple(k, v));
                                   d["keys"] = keys;
                                   return d;
                               })
        .def_property_readonly("stats", [](const IscsiSession& s) {
            pyb::dict d;
            if (!s.ini) return d;
            const it::InitiatorStats& x = s.ini->stats();
            d["pdus_sent"] = x.pdus_sent;
            d["pdus_received"] = x.pdus_received;
            d["bytes_sent"] = x.bytes_sent;
            d["bytes_received"] = x.bytes_received;
            d["r2ts"] = x.r2ts;
            d["data_out_pdus"] = x.data_out_pdus;
            d["data_in_pdus"] = x.data_in_pdus;
            d["nop_in_answered"] = x.nop_in_answered;
            d["nop_out_pings"] = x.nop_out_pings;
            d["async_messages"] = x.async_messages;
            d["rejects"] = x.rejects;
            d["commands"] = x.commands;
            d["completed"] = x.completed;
            d["failed"] = x.failed;
            return d;
        });
    pyb::class_<IscsiIo, std::shared_ptr<IscsiIo>>(m, "IscsiIo",
                                                   "One iSCSI operation (World._iscsi_submit).")
        .def_readonly("id", &IscsiIo::id)
        .def_readonly("op", &IscsiIo::op)
        .def_readonly("lun", &IscsiIo::lun)
        .def_readonly("lba", &IscsiIo::lba)
        .def_readonly("blocks", &IscsiIo::blocks)
        .def_readonly("started", &IscsiIo::started)
        .def_readonly("accepted", &IscsiIo::accepted)
        .def_readonly("completions", &IscsiIo::completions)
        .def_readonly("error", &IscsiIo::error)
        .def_readonly("scsi_status", &IscsiIo::scsi_status)
        .def_readonly("response", &IscsiIo::response)
        .def_readonly("sense_key", &IscsiIo::sense_key)
        .def_readonly("asc", &IscsiIo::asc)
        .def_readonly("ascq", &IscsiIo::ascq)
        .def_readonly("residual", &IscsiIo::residual)
        .def_readonly("data_in", &IscsiIo::data_in)
        .def_readonly("itt", &IscsiIo::itt)
        .def_property_readonly("done", &IscsiIo::done)
        .def_property_readonly("status",
                               [](const IscsiIo& io) -> std::string {
                                   if (!io.started) return "pending";
                                   if (!io.accepted) return "refused";
                                   return io.status;
                               })
        .def_property_readonly("refusal",
                               [](const IscsiIo& io) -> std::optional<std::string> {
                                   if (!io.started || io.accepted) return std::nullopt;
                                   return io.refusal;
                               })
        .def_property_readonly(
            "data",
            [](const IscsiIo& io) -> pyb::object {
                if (io.completions == 0 || io.status != "good" || io.op == "write")
                    return pyb::none();
                return pyb::bytes(reinterpret_cast<const char*>(io.buf.data()), io.buf.size());
            })
        .def_property_readonly("targets", [](const IscsiIo& io) {
            pyb::list l;
            for (auto& t : io.targets) {
                pyb::dict d;
                d["name"] = t.name;
                d["addresses"] = t.addresses;
                l.append(d);
            }
            return l;
        });
    world.def("_iscsi_connect", &World::iscsi_connect, pyb::arg("options"));
    world.def("_iscsi_submit", &World::iscsi_submit, pyb::arg("session"), pyb::arg("op"),
              pyb::arg("args"));
    world.def("_iscsi_control", &World::iscsi_control, pyb::arg("session"), pyb::arg("op"),
              pyb::arg("args"));
}

}  // namespace strata::py
