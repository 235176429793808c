// The test initiator (core/iscsi/testing) against a scripted target on the simulated network:
// the target's login is the protocol core's LoginConnection (so the initiator's login is checked
// by the real negotiation rules), its full feature phase a small in-memory disk that answers
// SCSI commands with Data-In, R2T and SCSI Responses, with knobs for the paths under test
// (CmdSN window, held commands, pings, dropping the connection, Rejects on digest errors).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <strata/base/random.h>
#include <strata/iscsi/internal/login.h>
#include <strata/iscsi/internal/pdu.h>
#include <strata/iscsi/testing/initiator.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

#include "initiator_harness.h"

namespace strata::iscsi::testing {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint32_t kBs = 512;
constexpr uint64_t kBlocks = 4096;  // 2 MiB
const char* kTarget = "iqn.2016-06.io.spdk:disk1";

class FakeHost : public LoginHost {
public:
    std::map<std::string, ChapSecret> secrets;
    AuthPolicy policy;
    LoginStatus find_target(std::string_view name, std::string_view, TargetInfo* out) override {
        if (name != kTarget) return login_status::not_found;
        out->name = kTarget;
        out->alias = "Disk1";
        out->auth = policy;
        return login_status::success;
    }
    AuthPolicy discovery_auth() override { return {}; }
    LoginStatus join_session(const Isid&, uint16_t, std::string_view, std::string_view,
                             SessionParams*) override {
        return login_status::session_does_not_exist;
    }
    uint16_t new_session(const Isid&, std::string_view, std::string_view, SessionType) override {
        return 7;
    }
    std::vector<SendTargetsEntry> send_targets(std::string_view) override {
        return {{kTarget, {"10.0.0.1:3260,1"}}};
    }
    bool lookup(int32_t, std::string_view user, ChapSecret* out) const override {
        auto it = secrets.find(std::string(user));
        if (it == secrets.end()) return false;
        *out = it->second;
        return true;
    }
};

uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
uint64_t be64(const uint8_t* p) {
    return uint64_t(be32(p)) << 32 | be32(p + 4);
}

// The scripted target: one listener, any number of connections, one disk (LUN 0).
struct FakeTarget {
    struct Write {
        uint64_t lba = 0;
        uint32_t len = 0, got = 0;
        uint32_t r2t_end = 0;  // end of the R2T outstanding (0: none)
        uint32_t ttt = 0, r2t_sn = 0;
        std::vector<uint8_t> buf;
        uint32_t cmd_itt = 0;
        uint64_t lun = 0;
    };
    struct Conn {
        std::unique_ptr<sock::Socket> s;
        PduReceiver rx;
        std::unique_ptr<LoginConnection> login;
        std::unique_ptr<TextNegotiator> text;
        Negotiated neg;
        bool ffp = false;
        bool closing = false;
        std::vector<uint8_t> out;
        size_t off = 0;
        std::vector<uint8_t> data;
        iovec iov{};
        std::map<uint32_t, Write> writes;                 // by ITT
        std::vector<std::pair<uint32_t, uint64_t>> held;  // ITTs held without an answer (+lun)
        uint32_t next_ttt = 1;
    };

    FakeHost host;
    TargetOptions options;
    Prng rng{99};
    std::unique_ptr<sock::Listener> listener;
    std::unique_ptr<sock::SocketGroup> group;
    runtime::Poller* poller = nullptr;
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<uint8_t> disk = std::vector<uint8_t>(kBlocks * kBs);

    // knobs
    uint32_t window = 16;            // MaxCmdSN - ExpCmdSN + 1
    uint32_t r2t_len = 16384;        // Desired Data Transfer Length of each R2T
    uint32_t data_in_len = 8192;     // Data-In segment size (<= the initiator's MRDSL)
    bool hold_commands = false;      // SCSI commands get no answer (for task management)
    bool ping_after_login = false;   // a NOP-In ping right after login
    bool abort_on_data_out = false;  // reset the connection on the first Data-Out
    bool status_in_data_in = true;   // reads end with a Data-In carrying status

    // counters
    uint64_t commands = 0, immediate_bytes = 0, unsolicited_bytes = 0, solicited_bytes = 0;
    uint64_t r2ts = 0, rejects = 0, tmfs = 0, nop_answers = 0, logouts = 0;
    uint32_t max_pending = 0;
    uint32_t pending = 0;  // commands accepted, not answered

    void start() {
        auto l = sock::listen({"10.0.0.1", 3260}, {"sim"});
        ASSERT_TRUE(l.ok()) << l.error().message();
        listener = std::move(*l);
        group = sock::SocketGroup::create();
        poller = runtime::current_thread()->register_poller(&FakeTarget::poll_fn, this, "fake_tgt");
    }
    void stop() {
        for (auto& c : conns)
            if (c->s) group->remove(*c->s);
        conns.clear();
        group.reset();
        listener.reset();
        runtime::current_thread()->unregister_poller(poller);
    }

    static runtime::PollStatus poll_fn(void* ctx) {
        return static_cast<FakeTarget*>(ctx)->poll() ? runtime::PollStatus::busy
                                                     : runtime::PollStatus::idle;
    }
    bool poll() {
        bool busy = false;
        for (;;) {
            auto a = listener->accept();
            if (!a.ok()) break;
            auto c = std::make_unique<Conn>();
            c->s = std::move(*a);
            c->rx = PduReceiver({.max_recv_data_segment_length = 8192});
            c->login = std::make_unique<LoginConnection>(LoginConfig{&options, &host, &rng, 1});
            EXPECT_TRUE(group->add(*c->s, &FakeTarget::on_event, this).ok());
            conns.push_back(std::move(c));
            busy = true;
        }
        if (group->poll() > 0) busy = true;
        for (auto& c : conns) {
            if (!c->s) continue;
            while (c->off < c->out.size()) {
                auto w = c->s->write(c->out.data() + c->off, c->out.size() - c->off);
                if (!w.ok()) break;
                c->off += *w;
                busy = true;
            }
            if (c->off == c->out.size()) {
                c->out.clear();
                c->off = 0;
                if (c->closing) close(*c, false);
            }
        }
        return busy;
    }
    Conn* conn_of(sock::Socket& s) {
        for (auto& c : conns)
            if (c->s.get() == &s) return c.get();
        return nullptr;
    }
    void close(Conn& c, bool abort) {
        if (!c.s) return;
        group->remove(*c.s);
        if (abort)
            c.s->abort();
        else
            c.s->close();
        c.s.reset();
        pending = 0;
    }
    static void on_event(void* ctx, sock::Socket& s) {
        auto* t = static_cast<FakeTarget*>(ctx);
        Conn* c = t->conn_of(s);
        if (c == nullptr) return;
        uint8_t buf[16384];
        while (c->s) {
            auto r = c->s->read(buf, sizeof buf);
            if (!r.ok()) {
                if (r.code() != Errc::busy) t->close(*c, false);
                return;
            }
            size_t used = 0;
            while (c->s && used < *r) {
                RecvEvent ev;
                used += c->rx.feed(buf + used, *r - used, &ev);
                if (ev == RecvEvent::error) {
                    t->close(*c, true);
                    return;
                }
                if (ev == RecvEvent::header) {
                    c->data.resize(c->rx.data_length());
                    c->iov = {c->data.data(), c->data.size()};
                    c->rx.set_data_destination(&c->iov, 1);
                } else if (ev == RecvEvent::pdu) {
                    if (c->rx.data_length() == 0) c->data.clear();
                    t->on_pdu(*c);
                }
            }
        }
    }

    PduDigests dg(const Conn& c) const { return {c.neg.header_digest, c.neg.data_digest}; }
    void advance_window(Conn& c) { c.neg.sn.max_cmd_sn = c.neg.sn.exp_cmd_sn + window - 1; }

    void on_pdu(Conn& c) {
        const uint8_t* h = c.rx.header();
        if (!c.ffp) {
            auto o = c.login->on_pdu(h, c.data, c.out);
            if (o == LoginConnection::Outcome::failed) c.closing = true;
            if (o == LoginConnection::Outcome::full_feature) {
                c.ffp = true;
                c.neg = c.login->negotiated();
                c.rx.config() = {c.neg.header_digest, c.neg.data_digest, c.neg.target_mrdsl};
                c.text = std::make_unique<TextNegotiator>(&host, &c.neg);
                advance_window(c);
                if (ping_after_login) {
                    NopIn n{};
                    n.opcode = uint8_t(Opcode::nop_in);
                    n.flags = kFinalBit;
                    n.itt.set(kReservedTag);
                    n.ttt.set(0x1234);
                    n.stat_sn.set(c.neg.sn.stat_sn);
                    n.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
                    n.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
                    const uint8_t ping[5] = {'h', 'e', 'l', 'l', 'o'};
                    append_pdu(c.out, &n, ping, dg(c));
                }
            }
            return;
        }
        const Bhs& b = c.rx.bhs();
        if (!c.rx.data_digest_ok()) {
            ++rejects;
            append_reject(c.out, RejectReason::data_digest_error, h, c.neg.sn, dg(c));
            return;
        }
        if (!b.immediate() && (b.op() == Opcode::scsi_cmd || b.op() == Opcode::text_req)) {
            ++c.neg.sn.exp_cmd_sn;
            advance_window(c);
        }
        switch (b.op()) {
            case Opcode::text_req:
                c.text->on_pdu(h, c.data, c.out, dg(c));
                break;
            case Opcode::scsi_cmd:
                scsi(c, bhs_as<ScsiCmd>(h));
                break;
            case Opcode::data_out:
                data_out(c, bhs_as<DataOut>(h));
                break;
            case Opcode::nop_out: {
                const auto o = bhs_as<NopOut>(h);
                if (o.itt.get() == kReservedTag) {
                    EXPECT_EQ(o.ttt.get(), 0x1234u);
                    EXPECT_EQ(std::string(c.data.begin(), c.data.end()), "hello");
                    ++nop_answers;
                    break;
                }
                NopIn n{};
                n.opcode = uint8_t(Opcode::nop_in);
                n.flags = kFinalBit;
                n.itt = o.itt;
                n.ttt.set(kReservedTag);
                n.stat_sn.set(c.neg.sn.stat_sn++);
                n.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
                n.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
                append_pdu(c.out, &n, c.data, dg(c));
                break;
            }
            case Opcode::task_mgmt_req: {
                const auto m = bhs_as<TaskMgmtReq>(h);
                ++tmfs;
                const uint8_t f = m.function & 0x7f;
                uint8_t resp = 0;
                if (f == 1) {
                    auto it = std::find_if(c.held.begin(), c.held.end(), [&](auto& x) {
                        return x.first == m.referenced_task_tag.get();
                    });
                    if (it == c.held.end()) {
                        resp = 1;  // task does not exist
                    } else {
                        c.held.erase(it);
                        --pending;
                    }
                } else if (f == 5) {
                    std::erase_if(c.held, [&](auto& x) {
                        if (x.second != m.lun.get()) return false;
                        --pending;
                        return true;
                    });
                } else {
                    resp = 5;  // not supported
                }
                TaskMgmtRsp r{};
                r.opcode = uint8_t(Opcode::task_mgmt_rsp);
                r.flags = kFinalBit;
                r.response = resp;
                r.itt = m.itt;
                r.stat_sn.set(c.neg.sn.stat_sn++);
                r.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
                r.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
                append_pdu(c.out, &r, {}, dg(c));
                break;
            }
            case Opcode::logout_req: {
                const auto l = bhs_as<LogoutReq>(h);
                ++logouts;
                LogoutRsp r{};
                r.opcode = uint8_t(Opcode::logout_rsp);
                r.flags = kFinalBit;
                r.itt = l.itt;
                r.stat_sn.set(c.neg.sn.stat_sn++);
                r.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
                r.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
                append_pdu(c.out, &r, {}, dg(c));
                c.closing = true;
                break;
            }
            default:
                append_reject(c.out, RejectReason::command_not_supported, h, c.neg.sn, dg(c));
                break;
        }
    }

    void respond(Conn& c, uint32_t itt, uint8_t status, const std::vector<uint8_t>& sense = {},
                 uint32_t residual = 0, uint8_t flags = 0) {
        ScsiRsp r{};
        r.opcode = uint8_t(Opcode::scsi_rsp);
        r.flags = uint8_t(kFinalBit | flags);
        r.status = status;
        r.itt.set(itt);
        r.stat_sn.set(c.neg.sn.stat_sn++);
        r.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
        r.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
        r.residual_count.set(residual);
        std::vector<uint8_t> data;
        if (!sense.empty()) {
            data = {uint8_t(sense.size() >> 8), uint8_t(sense.size())};
            data.insert(data.end(), sense.begin(), sense.end());
        }
        append_pdu(c.out, &r, data, dg(c));
        --pending;
    }
    void check_condition(Conn& c, uint32_t itt, uint8_t key, uint8_t asc, uint8_t ascq) {
        std::vector<uint8_t> s(18, 0);
        s[0] = 0x70, s[2] = key, s[7] = 10, s[12] = asc, s[13] = ascq;
        respond(c, itt, 2, s);
    }
    void data_in(Conn& c, uint32_t itt, const uint8_t* p, uint32_t len, uint32_t edtl) {
        uint32_t sn = 0;
        const uint32_t n_send = std::min(len, edtl);
        const uint32_t seg = std::min(data_in_len, c.neg.initiator_mrdsl);
        for (uint32_t off = 0; off < n_send || (off == 0 && n_send == 0);) {
            const uint32_t n = std::min(seg, n_send - off);
            const bool last = off + n == n_send;
            DataIn d{};
            d.opcode = uint8_t(Opcode::data_in);
            d.flags = last ? kFinalBit : 0;
            d.itt.set(itt);
            d.ttt.set(kReservedTag);
            d.data_sn.set(sn++);
            d.buffer_offset.set(off);
            d.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
            d.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
            if (last && status_in_data_in) {
                d.flags |= data_in_flags::status;
                if (edtl > n_send) {
                    d.flags |= data_in_flags::underflow;
                    d.residual_count.set(edtl - n_send);
                }
                d.stat_sn.set(c.neg.sn.stat_sn++);
                --pending;
            } else {
                d.stat_sn.set(c.neg.sn.stat_sn);
            }
            append_pdu(c.out, &d, std::span<const uint8_t>(p + off, n), dg(c));
            off += n;
            if (n == 0) break;
        }
        if (!status_in_data_in) respond(c, itt, 0, {}, edtl - n_send, edtl > n_send ? 2 : 0);
    }

    void scsi(Conn& c, const ScsiCmd& cmd) {
        ++commands;
        ++pending;
        max_pending = std::max(max_pending, pending);
        const uint32_t itt = cmd.itt.get();
        const uint32_t edtl = cmd.expected_data_transfer_length.get();
        if (hold_commands) {
            c.held.emplace_back(itt, cmd.lun.get());
            return;
        }
        const uint8_t* cdb = cmd.cdb;
        if (cmd.lun.get() != 0) return check_condition(c, itt, 5, 0x25, 0);  // LU not supported
        switch (cdb[0]) {
            case 0x00:
            case 0x35:
                return respond(c, itt, 0);
            case 0x12: {
                std::vector<uint8_t> inq(36, ' ');
                inq[0] = 0, inq[1] = 0, inq[2] = 6, inq[3] = 2, inq[4] = 31, inq[5] = 0, inq[6] = 0,
                inq[7] = 2;
                std::memcpy(&inq[8], "STRATA  FAKE DISK", 17);
                return data_in(c, itt, inq.data(), uint32_t(inq.size()), edtl);
            }
            case 0x9e: {
                std::vector<uint8_t> cap(32, 0);
                Be64 last;
                last.set(kBlocks - 1);
                std::memcpy(&cap[0], last.b, 8);
                Be32 bs;
                bs.set(kBs);
                std::memcpy(&cap[8], bs.b, 4);
                return data_in(c, itt, cap.data(), 32, edtl);
            }
            case 0xa0: {
                std::vector<uint8_t> rl(16, 0);
                rl[3] = 8;
                return data_in(c, itt, rl.data(), 16, edtl);
            }
            case 0x28:
            case 0x88:
            case 0x2a:
            case 0x8a:
                break;
            default:
                return check_condition(c, itt, 5, 0x20, 0);
        }
        const bool is16 = cdb[0] == 0x88 || cdb[0] == 0x8a;
        const uint64_t lba = is16 ? be64(cdb + 2) : be32(cdb + 2);
        const uint32_t n = is16 ? be32(cdb + 10) : uint32_t(cdb[7]) << 8 | cdb[8];
        if (lba + n > kBlocks) return check_condition(c, itt, 5, 0x21, 0);
        if (edtl != n * kBs) return check_condition(c, itt, 5, 0x24, 0);
        if (cdb[0] == 0x28 || cdb[0] == 0x88)
            return data_in(c, itt, disk.data() + lba * kBs, n * kBs, edtl);
        Write w;
        w.lba = lba;
        w.len = edtl;
        w.buf.resize(edtl);
        w.cmd_itt = itt;
        w.lun = cmd.lun.get();
        const uint32_t imm = uint32_t(c.data.size());
        std::memcpy(w.buf.data(), c.data.data(), std::min(imm, edtl));
        w.got = imm;
        immediate_bytes += imm;
        auto& ref = c.writes[itt] = std::move(w);
        if (cmd.flags & scsi_flags::final) progress(c, ref);
    }
    void progress(Conn& c, Write& w) {
        if (w.got >= w.len) {
            std::memcpy(disk.data() + w.lba * kBs, w.buf.data(), w.len);
            const uint32_t itt = w.cmd_itt;
            c.writes.erase(itt);
            return respond(c, itt, 0);
        }
        if (w.r2t_end != 0) return;  // one R2T at a time
        R2t r{};
        r.opcode = uint8_t(Opcode::r2t);
        r.flags = kFinalBit;
        r.itt.set(w.cmd_itt);
        w.ttt = c.next_ttt++;
        r.ttt.set(w.ttt);
        r.stat_sn.set(c.neg.sn.stat_sn);
        r.exp_cmd_sn.set(c.neg.sn.exp_cmd_sn);
        r.max_cmd_sn.set(c.neg.sn.max_cmd_sn);
        r.r2t_sn.set(w.r2t_sn++);
        const uint32_t want = std::min({w.len - w.got, r2t_len, c.neg.session.max_burst_length});
        r.buffer_offset.set(w.got);
        r.desired_data_transfer_length.set(want);
        w.r2t_end = w.got + want;
        ++r2ts;
        append_pdu(c.out, &r, {}, dg(c));
    }
    void data_out(Conn& c, const DataOut& d) {
        if (abort_on_data_out) {
            close(c, true);
            return;
        }
        auto it = c.writes.find(d.itt.get());
        ASSERT_NE(it, c.writes.end()) << "Data-Out for no write";
        Write& w = it->second;
        const uint32_t off = d.buffer_offset.get();
        ASSERT_EQ(off, w.got) << "Data-Out out of order";
        ASSERT_LE(off + c.data.size(), w.len);
        std::memcpy(w.buf.data() + off, c.data.data(), c.data.size());
        w.got += uint32_t(c.data.size());
        if (d.ttt.get() == kReservedTag) {
            unsolicited_bytes += c.data.size();
            if (d.flags & kFinalBit) progress(c, w);
        } else {
            EXPECT_EQ(d.ttt.get(), w.ttt);
            solicited_bytes += c.data.size();
            if (d.flags & kFinalBit) {
                EXPECT_EQ(w.got, w.r2t_end);
                w.r2t_end = 0;
                progress(c, w);
            }
        }
    }
};

class InitiatorTest : public ::testing::Test, protected InitiatorHarness {
protected:
    void SetUp() override {
        sim = std::make_unique<runtime::SimScheduler>(11, 1);
        tgt_host = std::make_unique<runtime::Host>("tgt", 1);
        ini_host = std::make_unique<runtime::Host>("ini", 2);
        net = std::make_unique<sock::SimNetwork>(*sim, 5);
        ASSERT_TRUE(net->attach(*tgt_host, "10.0.0.1").ok());
        ASSERT_TRUE(net->attach(*ini_host, "10.0.0.2").ok());
        {
            runtime::HostScope s(*tgt_host);
            ASSERT_TRUE(sock::set_default_impl("sim").ok());
        }
        {
            runtime::HostScope s(*ini_host);
            ASSERT_TRUE(sock::set_default_impl("sim").ok());
        }
        tt = sim->create_thread("tgt", -1, tgt_host.get());
        it = ini_thread = sim->create_thread("ini", -1, ini_host.get());
        target = std::make_unique<FakeTarget>();
        on(tt, [&] { target->start(); });
    }
    void TearDown() override {
        if (ini) on(it, [&] { ini.reset(); });
        on(tt, [&] { target->stop(); });
        target.reset();
        net.reset();
        sim.reset();
        ini_host.reset();
        tgt_host.reset();
    }
    InitiatorOptions opts(bool discovery = false) {
        InitiatorOptions o;
        o.portal = {"10.0.0.1", 3260};
        o.target_name = discovery ? "" : kTarget;
        o.seed = 3;
        return o;
    }
    void write_read_verify(uint64_t lba, uint32_t blocks, uint64_t seed, bool use16 = false) {
        auto data = pattern(size_t(blocks) * kBs, seed);
        auto w = run_cmd([&](ScsiDone d) {
            return ini->write(0, lba, blocks, kBs, data.data(), std::move(d), use16);
        });
        ASSERT_TRUE(w.ok()) << w.transport.to_string() << " status " << int(w.status);
        EXPECT_EQ(0, std::memcmp(target->disk.data() + lba * kBs, data.data(), data.size()));
        std::vector<uint8_t> back(data.size());
        auto r = run_cmd([&](ScsiDone d) {
            return ini->read(0, lba, blocks, kBs, back.data(), std::move(d), use16);
        });
        ASSERT_TRUE(r.ok()) << r.transport.to_string();
        EXPECT_EQ(r.data_in, data.size());
        EXPECT_EQ(back, data);
    }

    std::unique_ptr<runtime::Host> tgt_host, ini_host;
    std::unique_ptr<sock::SimNetwork> net;
    runtime::Thread* tt = nullptr;
    runtime::Thread* it = nullptr;
    std::unique_ptr<FakeTarget> target;
};

TEST_F(InitiatorTest, DiscoveryAndSendTargets) {
    ASSERT_TRUE(login(opts(true)).ok()) << ini->error();
    EXPECT_TRUE(ini->session().discovery);
    std::optional<std::vector<SendTargetsEntry>> got;
    on(it, [&] {
        ini->send_targets([&](Status s, std::vector<SendTargetsEntry> v) {
            EXPECT_TRUE(s.ok());
            got = std::move(v);
        });
    });
    ASSERT_TRUE(run([&] { return got.has_value(); }));
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].name, kTarget);
    ASSERT_EQ((*got)[0].addresses.size(), 1u);
    EXPECT_EQ((*got)[0].addresses[0], "10.0.0.1:3260,1");
    // SCSI has no place in a discovery session.
    auto r = run_cmd([&](ScsiDone d) { return ini->test_unit_ready(0, std::move(d)); });
    EXPECT_EQ(r.transport.code(), Errc::not_supported);
}

TEST_F(InitiatorTest, LoginThenBasicCommands) {
    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    EXPECT_EQ(ini->state(), Initiator::State::full_feature);
    EXPECT_EQ(ini->session().tsih, 7);
    EXPECT_EQ(ini->session().target_alias, "Disk1");
    // The target's options: FirstBurstLength 8192 (min), its MRDSL 65536.
    EXPECT_EQ(ini->session().first_burst_length, 8192u);
    EXPECT_EQ(ini->session().max_send_data_segment_length, 65536u);
    EXPECT_TRUE(ini->session().immediate_data);
    EXPECT_TRUE(ini->session().initial_r2t);

    EXPECT_TRUE(run_cmd([&](ScsiDone d) { return ini->test_unit_ready(0, std::move(d)); }).ok());
    std::vector<uint8_t> inq(36);
    auto r = run_cmd(
        [&](ScsiDone d) { return ini->inquiry(0, false, 0, inq.data(), 36, std::move(d)); });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(0, std::memcmp(&inq[8], "STRATA  ", 8));
    std::vector<uint8_t> cap(32);
    ASSERT_TRUE(run_cmd([&](ScsiDone d) {
                    return ini->read_capacity16(0, cap.data(), std::move(d));
                }).ok());
    EXPECT_EQ(be64(cap.data()), kBlocks - 1);
    EXPECT_EQ(be32(cap.data() + 8), kBs);
    std::vector<uint8_t> luns(64);
    r = run_cmd([&](ScsiDone d) { return ini->report_luns(luns.data(), 64, std::move(d)); });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(be32(luns.data()), 8u);
    EXPECT_EQ(r.flags & rsp_flags::underflow, rsp_flags::underflow);
    EXPECT_EQ(r.residual, 48u);
    EXPECT_TRUE(run_cmd([&](ScsiDone d) { return ini->synchronize_cache(0, std::move(d)); }).ok());
    // Errors carry sense: an unknown opcode, an LBA out of range, a LUN that is not there.
    r = run_cmd([&](ScsiDone d) {
        ScsiCommand c;
        c.cdb[0] = 0xd9;
        c.cdb_length = 10;
        return ini->submit(c, std::move(d));
    });
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.sense_key(), 5);
    EXPECT_EQ(r.asc(), 0x20);
    std::vector<uint8_t> buf(kBs);
    r = run_cmd(
        [&](ScsiDone d) { return ini->read(0, kBlocks, 1, kBs, buf.data(), std::move(d)); });
    EXPECT_EQ(r.asc(), 0x21);
    r = run_cmd([&](ScsiDone d) { return ini->test_unit_ready(encode_lun(3), std::move(d)); });
    EXPECT_EQ(r.asc(), 0x25);
    write_read_verify(10, 1, 1);
    write_read_verify(100, 64, 2, true);
    // Logout closes cleanly.
    std::optional<Status> lo;
    on(it, [&] { ini->logout([&](Status s) { lo = s; }); });
    ASSERT_TRUE(run([&] { return lo.has_value(); }));
    EXPECT_TRUE(lo->ok());
    EXPECT_EQ(ini->state(), Initiator::State::closed);
    EXPECT_EQ(target->logouts, 1u);
}

// Each way write data can travel: immediate + R2T, unsolicited Data-Out, R2T only.
TEST_F(InitiatorTest, WriteDataPaths) {
    struct Case {
        bool immediate, initial_r2t;
        uint64_t imm, unsol, solicited;
    };
    // A 64 KiB write; FirstBurstLength 8192 (the target's), R2Ts of 16 KiB.
    const Case cases[] = {
        {true, true, 8192, 0, 65536 - 8192},
        {false, false, 0, 8192, 65536 - 8192},
        {false, true, 0, 0, 65536},
        {true, false, 8192, 0, 65536 - 8192},  // immediate fills the first burst
    };
    for (const Case& k : cases) {
        SCOPED_TRACE(::testing::Message()
                     << "ImmediateData " << k.immediate << " InitialR2T " << k.initial_r2t);
        target->options.initial_r2t = false;  // let the initiator choose
        target->options.immediate_data = true;
        auto o = opts();
        o.immediate_data = k.immediate;
        o.initial_r2t = k.initial_r2t;
        ASSERT_TRUE(login(o).ok()) << ini->error();
        target->immediate_bytes = target->unsolicited_bytes = target->solicited_bytes = 0;
        write_read_verify(200, 128, 7 + k.immediate * 2 + k.initial_r2t);
        EXPECT_EQ(target->immediate_bytes, k.imm);
        EXPECT_EQ(target->unsolicited_bytes, k.unsol);
        EXPECT_EQ(target->solicited_bytes, k.solicited);
        on(it, [&] { ini.reset(); });
    }
}

TEST_F(InitiatorTest, QueueDepthAndCmdSnWindow) {
    target->window = 4;
    target->data_in_len = 4096;
    auto o = opts();
    o.queue_depth = 32;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    constexpr int kN = 32;
    std::vector<std::vector<uint8_t>> data(kN);
    std::vector<std::optional<ScsiResult>> res(kN);
    on(it, [&] {
        for (int i = 0; i < kN; ++i) {
            data[i] = pattern(8 * kBs, 100 + i);
            auto r = ini->write(0, uint64_t(i) * 8, 8, kBs, data[i].data(),
                                [&res, i](const ScsiResult& x) { res[i] = x; });
            ASSERT_TRUE(r.ok());
        }
        // Beyond the queue depth: refused at once.
        auto r = ini->test_unit_ready(0, [](const ScsiResult&) { FAIL(); });
        EXPECT_EQ(r.code(), Errc::busy);
    });
    ASSERT_TRUE(run([&] {
        for (auto& r : res)
            if (!r) return false;
        return true;
    }));
    for (auto& r : res) EXPECT_TRUE(r->ok());
    EXPECT_LE(target->max_pending, 4u);  // the initiator kept to MaxCmdSN
    EXPECT_EQ(target->commands, uint64_t(kN));
    // Read everything back, all outstanding at once.
    std::vector<std::vector<uint8_t>> back(kN, std::vector<uint8_t>(8 * kBs));
    res.assign(kN, std::nullopt);
    on(it, [&] {
        for (int i = 0; i < kN; ++i)
            ASSERT_TRUE(ini->read(
                               0, uint64_t(i) * 8, 8, kBs, back[i].data(),
                               [&res, i](const ScsiResult& x) { res[i] = x; }, i % 2)
                            .ok());
    });
    ASSERT_TRUE(run([&] {
        for (auto& r : res)
            if (!r) return false;
        return true;
    }));
    for (int i = 0; i < kN; ++i) {
        EXPECT_TRUE(res[i]->ok());
        EXPECT_EQ(back[i], data[i]) << i;
    }
}

TEST_F(InitiatorTest, ChapOneWayMutualAndWrongSecret) {
    target->host.policy.require_chap = true;
    target->host.policy.chap_group = 1;
    target->host.secrets["alice"] = {"alice", "alice-secret-12", "tgt", "target-secret-12"};
    auto o = opts();
    o.chap_user = "alice";
    o.chap_secret = "alice-secret-12";
    ASSERT_TRUE(login(o).ok()) << ini->error();
    write_read_verify(1, 2, 3);
    on(it, [&] { ini.reset(); });

    o.chap_muser = "tgt";
    o.chap_msecret = "target-secret-12";
    ASSERT_TRUE(login(o).ok()) << ini->error();
    write_read_verify(1, 2, 4);
    on(it, [&] { ini.reset(); });

    // The target proves a secret the initiator does not expect: the initiator refuses.
    o.chap_msecret = "some-other-secret";
    EXPECT_FALSE(login(o).ok());
    EXPECT_NE(ini->error().find("mutual CHAP"), std::string::npos) << ini->error();
    on(it, [&] { ini.reset(); });

    // A wrong secret: 02/01.
    o.chap_muser.clear();
    o.chap_secret = "wrong-secret-1234";
    Status s = login(o);
    EXPECT_EQ(s.code(), Errc::permission_denied);
    EXPECT_EQ(ini->session().status_class, 2);
    EXPECT_EQ(ini->session().status_detail, 1);
    on(it, [&] { ini.reset(); });

    // No CHAP where the target requires it: 02/01 as well.
    o.chap_user.clear();
    EXPECT_EQ(login(o).code(), Errc::permission_denied);
    on(it, [&] { ini.reset(); });

    // An unknown target: 02/03.
    o = opts();
    o.target_name = "iqn.2016-06.io.spdk:nope";
    EXPECT_EQ(login(o).code(), Errc::not_found);
}

TEST_F(InitiatorTest, DigestsBothWays) {
    auto o = opts();
    o.header_digest = o.data_digest = true;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    EXPECT_TRUE(ini->session().header_digest);
    EXPECT_TRUE(ini->session().data_digest);
    write_read_verify(300, 100, 9);
}

// A Data-Out byte corrupted after its digest was computed: the target Rejects it (data digest
// error), the initiator drops the connection and fails the write; the disk never holds it.
TEST_F(InitiatorTest, CorruptDataOutIsRejectedAndTheWriteFails) {
    auto o = opts();
    o.header_digest = o.data_digest = true;
    o.immediate_data = false;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    on(it, [&] {
        ini->set_tx_hook([](std::vector<uint8_t>& pdu) {
            if ((pdu[0] & kOpcodeMask) == uint8_t(Opcode::data_out)) pdu[kBhsSize + 4 + 10] ^= 1;
        });
    });
    auto data = pattern(16 * kBs, 5);
    auto r =
        run_cmd([&](ScsiDone d) { return ini->write(0, 0, 16, kBs, data.data(), std::move(d)); });
    EXPECT_EQ(r.transport.code(), Errc::io_error);
    EXPECT_EQ(target->rejects, 1u);
    EXPECT_EQ(ini->state(), Initiator::State::failed);
    EXPECT_NE(ini->error().find("rejected"), std::string::npos) << ini->error();
    EXPECT_NE(0, std::memcmp(target->disk.data(), data.data(), data.size()));
}

// A Data-In byte corrupted on the way in: the data digest catches it, the read fails; the
// corrupt bytes are never reported as a good read.
TEST_F(InitiatorTest, CorruptDataInFailsTheRead) {
    auto o = opts();
    o.data_digest = true;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    write_read_verify(0, 8, 6);
    uint64_t seen = 0;
    on(it, [&] {
        ini->set_rx_hook([&seen](uint8_t* p, size_t n) {
            // Past the Data-In header of the first PDU of the next read: a payload byte.
            if (seen == 0 && n > 100) p[100] ^= 0x40;
            seen += n;
        });
    });
    std::vector<uint8_t> back(8 * kBs);
    auto r =
        run_cmd([&](ScsiDone d) { return ini->read(0, 0, 8, kBs, back.data(), std::move(d)); });
    EXPECT_EQ(r.transport.code(), Errc::io_error);
    EXPECT_NE(ini->error().find("data digest"), std::string::npos) << ini->error();
}

TEST_F(InitiatorTest, NopBothWays) {
    target->ping_after_login = true;
    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    ASSERT_TRUE(run([&] { return target->nop_answers == 1; }));
    EXPECT_EQ(ini->stats().nop_in_answered, 1u);
    std::optional<Status> pong;
    on(it, [&] { ASSERT_TRUE(ini->ping({1, 2, 3, 4, 5, 6}, [&](Status s) { pong = s; }).ok()); });
    ASSERT_TRUE(run([&] { return pong.has_value(); }));
    EXPECT_TRUE(pong->ok());
}

TEST_F(InitiatorTest, AbortTaskAndLunReset) {
    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    target->hold_commands = true;
    std::optional<ScsiResult> a, b, c;
    uint32_t itt_a = 0;
    on(it, [&] {
        itt_a = *ini->test_unit_ready(0, [&](const ScsiResult& r) { a = r; });
        ASSERT_TRUE(ini->test_unit_ready(0, [&](const ScsiResult& r) { b = r; }).ok());
        ASSERT_TRUE(ini->synchronize_cache(0, [&](const ScsiResult& r) { c = r; }).ok());
    });
    ASSERT_TRUE(run([&] { return target->commands == 3; }));
    std::optional<uint8_t> resp;
    on(it, [&] {
        ASSERT_TRUE(ini->task_management(tmf::abort_task, 0, itt_a,
                                         [&](Status s, uint8_t r) {
                                             EXPECT_TRUE(s.ok());
                                             resp = r;
                                         })
                        .ok());
    });
    ASSERT_TRUE(run([&] { return resp.has_value(); }));
    EXPECT_EQ(*resp, 0);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->transport.code(), Errc::aborted);
    EXPECT_FALSE(b.has_value());
    // Aborting it again: the task does not exist.
    resp.reset();
    on(it, [&] {
        ASSERT_TRUE(
            ini->task_management(tmf::abort_task, 0, itt_a, [&](Status, uint8_t r) { resp = r; })
                .ok());
    });
    ASSERT_TRUE(run([&] { return resp.has_value(); }));
    EXPECT_EQ(*resp, 1);
    resp.reset();
    on(it, [&] {
        ASSERT_TRUE(ini->task_management(tmf::lun_reset, 0, kReservedTag,
                                         [&](Status, uint8_t r) { resp = r; })
                        .ok());
    });
    ASSERT_TRUE(run([&] { return resp.has_value(); }));
    EXPECT_EQ(*resp, 0);
    ASSERT_TRUE(b && c);
    EXPECT_EQ(b->transport.code(), Errc::aborted);
    EXPECT_EQ(c->transport.code(), Errc::aborted);
    EXPECT_EQ(ini->outstanding(), 0u);
    target->hold_commands = false;
    write_read_verify(5, 1, 5);
}

// The connection is reset mid-write: every outstanding command completes once, with an error.
TEST_F(InitiatorTest, ConnectionResetFailsOutstandingOnce) {
    auto o = opts();
    o.immediate_data = false;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    target->abort_on_data_out = true;
    std::vector<int> calls(8);
    std::vector<Status> st(8);
    std::vector<std::vector<uint8_t>> data(8);
    on(it, [&] {
        for (int i = 0; i < 8; ++i) {
            data[i] = pattern(32 * kBs, i);
            ASSERT_TRUE(ini->write(0, uint64_t(i) * 32, 32, kBs, data[i].data(),
                                   [&, i](const ScsiResult& r) {
                                       ++calls[i];
                                       st[i] = r.transport;
                                   })
                            .ok());
        }
    });
    ASSERT_TRUE(run([&] { return ini->state() == Initiator::State::failed; }));
    sim->advance(100 * kMs);
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(calls[i], 1) << i;
        EXPECT_EQ(st[i].code(), Errc::io_error) << i;
    }
    EXPECT_NE(ini->error().find("reset"), std::string::npos) << ini->error();
    // A new initiator logs in again (same ISID) and works.
    target->abort_on_data_out = false;
    on(it, [&] { ini.reset(); });
    ASSERT_TRUE(login(o).ok());
    write_read_verify(0, 32, 1);
}

// A partition with the keep-alive on: the ping goes unanswered, the connection is declared
// lost and the command fails instead of hanging.
TEST_F(InitiatorTest, NopTimeoutOnPartition) {
    auto o = opts();
    o.nop_interval_ms = 1000;
    o.nop_timeout_ms = 3000;
    ASSERT_TRUE(login(o).ok()) << ini->error();
    target->hold_commands = true;  // the command stays outstanding
    std::optional<ScsiResult> r;
    on(it, [&] { ASSERT_TRUE(ini->test_unit_ready(0, [&](const ScsiResult& x) { r = x; }).ok()); });
    ASSERT_TRUE(run([&] { return target->commands == 1; }));
    net->partition("10.0.0.1", "10.0.0.2");
    ASSERT_TRUE(run([&] { return r.has_value(); }, 20'000 * kMs));
    EXPECT_EQ(r->transport.code(), Errc::io_error);
    EXPECT_NE(ini->error().find("NOP"), std::string::npos) << ini->error();
    net->heal("10.0.0.1", "10.0.0.2");
}

// A raw PDU the target does not support: it Rejects it, the session lives on.
TEST_F(InitiatorTest, RawPduIsRejected) {
    ASSERT_TRUE(login(opts()).ok()) << ini->error();
    on(it, [&] {
        Snack s{};
        s.opcode = uint8_t(Opcode::snack);
        s.flags = kFinalBit;
        s.itt.set(0x12345678);
        std::vector<uint8_t> bytes;
        append_pdu(bytes, &s, {}, {});
        ini->send_raw(std::move(bytes));
    });
    ASSERT_TRUE(run([&] { return ini->stats().rejects == 1; }));
    EXPECT_EQ(ini->state(), Initiator::State::full_feature);
    write_read_verify(0, 1, 1);
}

}  // namespace
}  // namespace strata::iscsi::testing
