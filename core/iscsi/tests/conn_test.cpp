// The iSCSI target's network layer on the simulator: a simulated App (malloc bdev, a
// scsi::Device on its own Thread, the network layer over a fake Directory standing in for the
// configuration), and an initiator written here PDU by PDU over sim sockets (virtual time,
// deterministic). Login (no auth, CHAP, digests required), reads and writes of many lengths,
// immediate and unsolicited data, R2T sequences, digests, NOP-In pings and their timeout,
// logout, task management, two sessions, MC/S, reinstatement, and protocol violations that end
// their connection alone.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <strata/base/crc.h>
#include <strata/bdev/bdev.h>
#include <strata/env/env.h>
#include <strata/iscsi/internal/chap.h>
#include <strata/iscsi/internal/network.h>
#include <strata/iscsi/internal/pdu.h>
#include <strata/iscsi/internal/text.h>
#include <strata/iscsi/target.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/scsi/scsi.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

namespace strata::iscsi::internal {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr const char* kTarget = "iqn.2016-06.io.spdk:disk1";
constexpr const char* kInit = "iqn.2016-06.io.spdk:init1";
constexpr uint32_t kBlocks = 16384;  // 8 MiB of 512-byte blocks
constexpr uint64_t kSimStepBudget = 20'000'000;

class FakeDirectory final : public Directory, public ChapSecrets {
public:
    TargetLookup lookup_target(std::string_view name, std::string_view, std::string_view,
                               int32_t) override {
        TargetLookup l;
        if (name != kTarget || !device) return l;
        l.status = login_status::success;
        l.info.name = kTarget;
        l.info.auth = auth;
        l.header_digest = header_digest;
        l.data_digest = data_digest;
        l.queue_depth = queue_depth;
        l.device = device;
        return l;
    }
    AuthPolicy discovery_policy() override { return {}; }
    const ChapSecrets& chap_secrets() override { return *this; }
    std::vector<SendTargetsEntry> send_targets(std::string_view, std::string_view,
                                               std::string_view) override {
        return {{kTarget, {"10.0.0.1:3260,1"}}};
    }
    TargetOptions options() override { return opts; }
    bool lookup(int32_t group, std::string_view user, ChapSecret* out) const override {
        if (group != 1 || user != "user1") return false;
        *out = {"user1", "secret1secret1", "", ""};
        return true;
    }

    scsi::Device* device = nullptr;
    AuthPolicy auth;
    bool header_digest = false;
    bool data_digest = false;
    int32_t queue_depth = 16;
    TargetOptions opts;
};

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

struct Pdu {
    Bytes bhs;
    Bytes data;
    uint8_t op() const { return bhs[0] & 0x3f; }
    template <class T>
    T as() const { return bhs_as<T>(bhs.data()); }
};

struct Client {
    std::unique_ptr<sock::SocketGroup> group;
    std::unique_ptr<sock::Socket> s;
    Bytes rx;
    bool eof = false;
    bool hdgst = false;
    bool ddgst = false;
    uint32_t cmd_sn = 1;
    uint32_t exp_stat_sn = 0;
    uint32_t itt = 1;
    uint32_t max_cmd_sn = 0;
    uint16_t tsih = 0;
    uint32_t mrdsl = 8192;  // the target's
    std::map<std::string, std::string> keys;  // the last login/text response
    bool check_ddgst = true;                  // a wrong data digest from the target fails the test
    uint32_t bad_ddgst = 0;                   // data digests from the target that did not match
};

class IscsiConnTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        sim = std::make_unique<runtime::SimScheduler>(42, 2);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        client_host = std::make_unique<runtime::Host>("client", 44);
        net = std::make_unique<sock::SimNetwork>(*sim, 43);
        ASSERT_TRUE(net->attach(app->host(), "10.0.0.1").ok());
        ASSERT_TRUE(net->attach(*client_host, "10.0.0.2").ok());
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(pump([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok());
        {
            runtime::HostScope scope(app->host());
            ASSERT_TRUE(sock::set_default_impl("sim").ok());
            dev_thread = sim->create_thread("scsi_dev", 1, &app->host());
        }
        auto r = app->call_method("bdev_malloc_create",
                                  {{"name", "Malloc0"}, {"num_blocks", kBlocks}, {"block_size", 512}});
        ASSERT_TRUE(r.contains("result")) << r.dump();
        ASSERT_TRUE(on(*dev_thread, [&] {
            auto d = scsi::create_device({.name = kTarget, .id = 0, .luns = {{0, "Malloc0"}}});
            ASSERT_TRUE(d.ok()) << d.error().message();
            dir.device = *d;
        }));
        dir.opts.nop_in_interval = 0;  // pings only where a test asks
    }

    void start_network() {
        ASSERT_TRUE(on(app->thread(), [&] {
            network = make_network(dir);
            PortalGroupConfig pg;
            pg.tag = 1;
            pg.portals = {{"10.0.0.1", "3260"}};
            Status s = network->start_portals(pg);
            ASSERT_TRUE(s.ok()) << s.to_string();
        }));
    }

    void TearDown() override {
        clients.clear();
        if (network) {
            bool down = false;
            on(app->thread(), [&] { network->shutdown([&] { down = true; }); });
            EXPECT_TRUE(pump([&] { return down; }));
            on(app->thread(), [&] { network.reset(); });
        }
        if (dir.device) {
            bool gone = false;
            on(*dev_thread, [&] { scsi::destroy_device(*dir.device, [&] { gone = true; }); });
            pump([&] { return gone; });
        }
        if (app) {
            app->request_stop();
            pump([&] { return app->stopped(); });
        }
        app.reset();
        net.reset();
        client_host.reset();
        sim.reset();
        env::fini();
    }

    bool pump(const std::function<bool()>& pred, double seconds = 20) {
        const uint64_t vdeadline = sim->now_ns() + uint64_t(seconds * 1e9);
        uint64_t steps = 0;
        while (!pred()) {
            {
                runtime::HostScope scope(*client_host);
                for (auto& c : clients)
                    if (c->group) c->group->poll();
            }
            if (sim->step() == runtime::SimScheduler::StepResult::idle) return pred();
            if (sim->now_ns() > vdeadline || ++steps > kSimStepBudget) return false;
        }
        return true;
    }

    template <class F>
    bool on(runtime::Thread& t, F&& fn) {
        bool done = false;
        if (!t.post([&] {
                 fn();
                 done = true;
             }).ok())
            return false;
        return pump([&] { return done; });
    }

    NetworkStats stats() { return network_stats(*network); }

    // ---- the initiator ----
    Client& connect(uint16_t port = 3260) {
        runtime::HostScope scope(*client_host);
        auto c = std::make_unique<Client>();
        sock::SocketOptions o;
        o.impl = "sim";
        auto s = sock::connect({"10.0.0.1", port}, o);
        EXPECT_TRUE(s.ok());
        c->s = std::move(*s);
        c->group = sock::SocketGroup::create();
        EXPECT_TRUE(c->group->add(*c->s, [](void*, sock::Socket&) {}, nullptr).ok());
        Client* raw = c.get();
        clients.push_back(std::move(c));
        EXPECT_TRUE(pump([&] { return raw->s->connected(); }));
        return *raw;
    }

    void send_raw(Client& c, const Bytes& b) {
        size_t off = 0;
        ASSERT_TRUE(pump([&] {
            runtime::HostScope scope(*client_host);
            while (off < b.size()) {
                auto r = c.s->write(b.data() + off, b.size() - off);
                if (!r) return r.error().code() != Errc::busy;
                off += *r;
            }
            return true;
        }));
    }

    Bytes build(const Client& c, const void* bhs, const Bytes& data, const Bytes& ahs = {}) {
        Bytes out(kBhsSize + ahs.size() + kDigestSize);
        const uint32_t n = build_header(out.data(), bhs, ahs.empty() ? nullptr : ahs.data(),
                                        uint32_t(ahs.size()), uint32_t(data.size()),
                                        {c.hdgst, c.ddgst});
        out.resize(n);
        if (!data.empty()) {
            out.insert(out.end(), data.begin(), data.end());
            out.insert(out.end(), pad4(uint32_t(data.size())), 0);
            if (c.ddgst) {
                const iovec v{const_cast<uint8_t*>(data.data()), data.size()};
                uint8_t d[4];
                put_le32(d, data_digest(&v, 1, uint32_t(data.size())));
                out.insert(out.end(), d, d + 4);
            }
        }
        return out;
    }
    void send(Client& c, const void* bhs, const Bytes& data = {}, const Bytes& ahs = {}) {
        send_raw(c, build(c, bhs, data, ahs));
    }

    // The next whole PDU from the target (nullopt: closed or nothing within the time).
    std::optional<Pdu> recv(Client& c, double seconds = 20) {
        std::optional<Pdu> out;
        pump(
            [&] {
                runtime::HostScope scope(*client_host);
                uint8_t buf[65536];
                while (!c.eof) {
                    auto r = c.s->read(buf, sizeof buf);
                    if (!r) {
                        if (r.error().code() != Errc::busy) c.eof = true;
                        break;
                    }
                    c.rx.insert(c.rx.end(), buf, buf + *r);
                }
                if (c.rx.size() < kBhsSize) return c.eof;
                const uint32_t ahs = c.rx[4] * 4u;
                const uint32_t dl = uint32_t(c.rx[5]) << 16 | c.rx[6] << 8 | c.rx[7];
                const uint32_t hl = kBhsSize + ahs + (c.hdgst ? 4 : 0);
                const uint32_t total = hl + dl + pad4(dl) + (c.ddgst && dl ? 4 : 0);
                if (c.rx.size() < total) return c.eof;
                Pdu p;
                p.bhs.assign(c.rx.begin(), c.rx.begin() + kBhsSize);
                if (c.hdgst)
                    EXPECT_EQ(le32(&c.rx[kBhsSize + ahs]), crc32c(0, c.rx.data(), kBhsSize + ahs))
                        << "header digest";
                p.data.assign(c.rx.begin() + hl, c.rx.begin() + hl + dl);
                if (c.ddgst && dl) {
                    const iovec v{p.data.data(), dl};
                    const bool good = le32(&c.rx[hl + dl + pad4(dl)]) == data_digest(&v, 1, dl);
                    if (!good) ++c.bad_ddgst;
                    if (c.check_ddgst) {
                        EXPECT_TRUE(good) << "data digest";
                    }
                }
                c.rx.erase(c.rx.begin(), c.rx.begin() + total);
                out = std::move(p);
                return true;
            },
            seconds);
        if (out) {
            const auto b = out->as<NopIn>();  // StatSN, ExpCmdSN, MaxCmdSN: same offsets
            const uint8_t op = out->op();
            if (op != uint8_t(Opcode::data_in) || (out->bhs[1] & data_in_flags::status))
                if (op != uint8_t(Opcode::r2t) && !(op == uint8_t(Opcode::nop_in) &&
                                                   b.itt.get() == kReservedTag))
                    c.exp_stat_sn = b.stat_sn.get() + 1;
            if (op != uint8_t(Opcode::login_rsp)) c.max_cmd_sn = b.max_cmd_sn.get();
        }
        return out;
    }

    // True once the target closed the connection.
    bool closed_by_target(Client& c) {
        while (auto p = recv(c)) {
        }
        return c.eof;
    }

    static std::map<std::string, std::string> parse_keys(const Bytes& data) {
        std::vector<KeyValue> kvs;
        std::map<std::string, std::string> m;
        if (parse_text(data, kvs, true) != TextError::none) return m;
        for (auto& kv : kvs) m[std::string(kv.key)] = std::string(kv.value);
        return m;
    }

    // One Login Request; returns the response.
    std::optional<Pdu> login_step(Client& c, const Isid& isid, uint16_t cid, uint8_t csg,
                                  uint8_t nsg, bool transit, const std::string& text) {
        LoginReq r{};
        r.opcode = uint8_t(Opcode::login_req) | kImmediateBit;
        r.flags = uint8_t((transit ? login_flags::transit : 0) | csg << 2 | nsg);
        std::memcpy(r.isid, isid.data(), 6);
        r.tsih.set(c.tsih);
        r.itt.set(c.itt);
        r.cid.set(cid);
        r.cmd_sn.set(c.cmd_sn);
        r.exp_stat_sn.set(c.exp_stat_sn);
        send(c, &r, Bytes(text.begin(), text.end()));
        auto p = recv(c);
        if (p && p->op() == uint8_t(Opcode::login_rsp)) c.keys = parse_keys(p->data);
        return p;
    }

    struct LoginOpts {
        Isid isid{0x80, 0, 0, 0, 0, 1};
        uint16_t cid = 0;
        bool hdgst = false, ddgst = false;
        bool immediate_data = true;
        bool initial_r2t = true;
        uint32_t first_burst = 65536;
        uint32_t max_burst = 262144;
        uint32_t mrdsl = 8192;  // ours (the initiator's)
        bool chap = false;
        std::string chap_secret = "secret1secret1";
        bool discovery = false;
        std::string target = kTarget;
    };
    // A whole login; the final response's status (class << 8 | detail), -1 if none came.
    int login(Client& c) { return login(c, LoginOpts{}); }
    int login(Client& c, const LoginOpts& o) {
        std::string t;
        append_key(t, "InitiatorName", kInit);
        if (o.discovery)
            append_key(t, "SessionType", "Discovery");
        else {
            append_key(t, "SessionType", "Normal");
            append_key(t, "TargetName", o.target);
        }
        if (o.chap) {
            append_key(t, "AuthMethod", "CHAP,None");
            auto p = login_step(c, o.isid, o.cid, 0, 1, false, t);
            if (!p) return -1;
            std::string a;
            append_key(a, "CHAP_A", "5");
            p = login_step(c, o.isid, o.cid, 0, 1, false, a);
            if (!p || !c.keys.count("CHAP_C")) return -1;
            const auto ch = decode_binary(c.keys["CHAP_C"]);
            const auto id = uint8_t(std::stoi(c.keys["CHAP_I"]));
            const auto rsp = chap_md5_response(id, o.chap_secret, *ch);
            std::string r;
            append_key(r, "CHAP_N", "user1");
            append_key(r, "CHAP_R", encode_hex(rsp));
            p = login_step(c, o.isid, o.cid, 0, 1, true, r);
            if (!p) return -1;
            const auto rr = p->as<LoginRsp>();
            if (rr.status_class != 0) return rr.status_class << 8 | rr.status_detail;
            t.clear();
        } else {
            append_key(t, "AuthMethod", "None");
            auto p = login_step(c, o.isid, o.cid, 0, 1, true, t);
            if (!p) return -1;
            const auto rr = p->as<LoginRsp>();
            if (rr.status_class != 0) return rr.status_class << 8 | rr.status_detail;
            t.clear();
        }
        append_key(t, "HeaderDigest", o.hdgst ? "CRC32C" : "None");
        append_key(t, "DataDigest", o.ddgst ? "CRC32C" : "None");
        append_key(t, "MaxRecvDataSegmentLength", std::to_string(o.mrdsl));
        if (!o.discovery) {
            append_key(t, "ImmediateData", o.immediate_data ? "Yes" : "No");
            append_key(t, "InitialR2T", o.initial_r2t ? "Yes" : "No");
            append_key(t, "FirstBurstLength", std::to_string(o.first_burst));
            append_key(t, "MaxBurstLength", std::to_string(o.max_burst));
            append_key(t, "MaxConnections", "2");
            append_key(t, "MaxOutstandingR2T", "8");
            append_key(t, "DefaultTime2Wait", "2");
            append_key(t, "DefaultTime2Retain", "20");
            append_key(t, "ErrorRecoveryLevel", "0");
            append_key(t, "DataPDUInOrder", "Yes");
            append_key(t, "DataSequenceInOrder", "Yes");
        }
        for (int i = 0; i < 4; ++i) {
            auto p = login_step(c, o.isid, o.cid, 1, 3, true, t);
            if (!p) return -1;
            const auto rr = p->as<LoginRsp>();
            if (rr.status_class != 0) return rr.status_class << 8 | rr.status_detail;
            if (c.keys.count("MaxRecvDataSegmentLength"))
                c.mrdsl = uint32_t(std::stoul(c.keys["MaxRecvDataSegmentLength"]));
            if (c.keys.count("MaxOutstandingR2T")) last_max_r2t = c.keys["MaxOutstandingR2T"];
            if (rr.flags & login_flags::transit) {
                c.tsih = rr.tsih.get();
                c.hdgst = o.hdgst;
                c.ddgst = o.ddgst;
                c.max_cmd_sn = rr.max_cmd_sn.get();
                return 0;
            }
            t.clear();
        }
        return -1;
    }

    // ---- SCSI ----
    struct Result_ {
        uint8_t status = 0xff;
        Bytes data;
        Bytes sense;
        uint32_t residual = 0;
        uint8_t flags = 0;
        uint32_t r2ts = 0;
        uint32_t data_ins = 0;
        uint32_t sequences = 0;  // Data-In PDUs with the F bit
        bool ok() const { return status == 0; }
    };

    static Bytes cdb16(uint8_t op, uint64_t lba, uint32_t n) {
        Bytes c(16, 0);
        c[0] = op;
        for (int i = 0; i < 8; ++i) c[2 + i] = uint8_t(lba >> (56 - 8 * i));
        for (int i = 0; i < 4; ++i) c[10 + i] = uint8_t(n >> (24 - 8 * i));
        return c;
    }

    ScsiCmd cmd_header(Client& c, const Bytes& cdb, uint32_t edtl, bool read, bool write,
                       bool final = true) {
        ScsiCmd h{};
        h.opcode = uint8_t(Opcode::scsi_cmd);
        h.flags = uint8_t((final ? scsi_flags::final : 0) | (read ? scsi_flags::read : 0) |
                          (write ? scsi_flags::write : 0) | 1 /* simple */);
        h.itt.set(c.itt++);
        h.expected_data_transfer_length.set(edtl);
        h.cmd_sn.set(c.cmd_sn++);
        h.exp_stat_sn.set(c.exp_stat_sn);
        std::memcpy(h.cdb, cdb.data(), std::min<size_t>(16, cdb.size()));
        return h;
    }

    Bytes data_out(Client& c, uint32_t itt, uint32_t ttt, uint32_t off, const Bytes& d,
                   uint32_t data_sn, bool final) {
        DataOut h{};
        h.opcode = uint8_t(Opcode::data_out);
        h.flags = final ? kFinalBit : 0;
        h.itt.set(itt);
        h.ttt.set(ttt);
        h.exp_stat_sn.set(c.exp_stat_sn);
        h.data_sn.set(data_sn);
        h.buffer_offset.set(off);
        return build(c, &h, d);
    }

    // Runs one command to its end: immediate data up to `imm`, unsolicited Data-Out up to
    // `unsol` bytes in total (InitialR2T=No), the rest on R2Ts.
    Result_ run(Client& c, const Bytes& cdb, uint32_t edtl, bool read, const Bytes& out = {},
                uint32_t imm = 0, uint32_t unsol = 0) {
        Result_ res;
        const bool write = !out.empty();
        const bool no_unsol = unsol <= imm;
        ScsiCmd h = cmd_header(c, cdb, edtl, read, write, no_unsol);
        const uint32_t itt = h.itt.get();
        send(c, &h, Bytes(out.begin(), out.begin() + imm));
        uint32_t sn = 0;
        for (uint32_t off = imm; off < unsol;) {
            const uint32_t n = std::min(unsol - off, c.mrdsl);
            send_raw(c, data_out(c, itt, kReservedTag, off, Bytes(out.begin() + off, out.begin() + off + n),
                                 sn++, off + n == unsol));
            off += n;
        }
        while (auto p = recv(c)) {
            const uint8_t op = p->op();
            if (op == uint8_t(Opcode::r2t)) {
                ++res.r2ts;
                const auto r = p->as<R2t>();
                EXPECT_EQ(r.itt.get(), itt);
                uint32_t off = r.buffer_offset.get();
                const uint32_t end = off + r.desired_data_transfer_length.get();
                uint32_t dsn = 0;
                while (off < end) {
                    const uint32_t n = std::min(end - off, c.mrdsl);
                    send_raw(c, data_out(c, itt, r.ttt.get(), off,
                                         Bytes(out.begin() + off, out.begin() + off + n), dsn++,
                                         off + n == end));
                    off += n;
                }
            } else if (op == uint8_t(Opcode::data_in)) {
                const auto d = p->as<DataIn>();
                EXPECT_EQ(d.itt.get(), itt);
                EXPECT_EQ(d.data_sn.get(), res.data_ins);
                EXPECT_EQ(d.buffer_offset.get(), res.data.size());
                EXPECT_LE(p->data.size(), 8192u);  // our MaxRecvDataSegmentLength
                ++res.data_ins;
                if (d.flags & kFinalBit) ++res.sequences;
                res.data.insert(res.data.end(), p->data.begin(), p->data.end());
                if (d.flags & data_in_flags::status) {
                    res.status = d.status;
                    res.residual = d.residual_count.get();
                    res.flags = d.flags;
                    return res;
                }
            } else if (op == uint8_t(Opcode::scsi_rsp)) {
                const auto r = p->as<ScsiRsp>();
                EXPECT_EQ(r.itt.get(), itt);
                res.status = r.status;
                res.residual = r.residual_count.get();
                res.flags = r.flags;
                if (p->data.size() >= 2)
                    res.sense.assign(p->data.begin() + 2,
                                     p->data.begin() + 2 + (p->data[0] << 8 | p->data[1]));
                return res;
            } else {
                ADD_FAILURE() << "unexpected " << opcode_name(op);
            }
        }
        return res;
    }

    static Bytes pattern(size_t n, int seed) {
        Bytes v(n);
        for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 31 + seed + i / 4096);
        return v;
    }

    // A Text Request "SendTargets=All"; the response.
    std::optional<Pdu> send_targets(Client& c) {
        TextReq t{};
        t.opcode = uint8_t(Opcode::text_req) | kImmediateBit;
        t.flags = kFinalBit;
        t.itt.set(c.itt++);
        t.ttt.set(kReservedTag);
        t.cmd_sn.set(c.cmd_sn);
        std::string kv;
        append_key(kv, "SendTargets", "All");
        send(c, &t, Bytes(kv.begin(), kv.end()));
        return recv(c);
    }

    void nop_ping(Client& c, const Bytes& data = {}) {
        NopOut n{};
        n.opcode = uint8_t(Opcode::nop_out) | kImmediateBit;
        n.flags = kFinalBit;
        n.itt.set(c.itt++);
        n.ttt.set(kReservedTag);
        n.cmd_sn.set(c.cmd_sn);
        n.exp_stat_sn.set(c.exp_stat_sn);
        send(c, &n, data);
        auto p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::nop_in));
        EXPECT_EQ(p->as<NopIn>().itt.get(), n.itt.get());
        EXPECT_EQ(p->data, data);
    }

    // A session with data digests (and header digests if asked), the target computing those
    // of PDUs from 4096 bytes on through accel; the first command's unit attention consumed.
    Client& accel_session(uint32_t target_mrdsl = 65536, bool hdgst = false) {
        dir.opts.data_digest_accel_threshold = 4096;
        dir.opts.max_recv_data_segment_length = target_mrdsl;
        start_network();
        Client& c = connect();
        LoginOpts o;
        o.hdgst = hdgst;
        o.ddgst = true;
        EXPECT_EQ(login(c, o), 0);
        run(c, Bytes(6, 0), 0, false);
        return c;
    }

    // A write on one R2T: the Data-Out PDUs (c.mrdsl bytes each) in one send, byte
    // `corrupt_at` of the data flipped after its digest was computed (a bad wire), `extra`
    // right behind them. The answer is left to the caller.
    void write_on_r2t(Client& c, uint64_t lba, const Bytes& d, size_t corrupt_at = SIZE_MAX,
                      const Bytes& extra = {}) {
        const auto len = uint32_t(d.size());
        ScsiCmd h = cmd_header(c, cdb16(0x8a, lba, len / 512), len, false, true);
        send(c, &h);
        auto p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::r2t));
        ASSERT_EQ(p->as<R2t>().desired_data_transfer_length.get(), len);
        Bytes all;
        uint32_t sn = 0;
        for (uint32_t off = 0; off < len;) {
            const uint32_t n = std::min(len - off, c.mrdsl);
            Bytes pdu = data_out(c, h.itt.get(), p->as<R2t>().ttt.get(), off,
                                 Bytes(d.begin() + off, d.begin() + off + n), sn++, off + n == len);
            if (corrupt_at >= off && corrupt_at < off + n)
                pdu[pdu.size() - n - pad4(n) - (c.ddgst ? 4 : 0) + (corrupt_at - off)] ^= 0xff;
            all.insert(all.end(), pdu.begin(), pdu.end());
            off += n;
        }
        all.insert(all.end(), extra.begin(), extra.end());
        send_raw(c, all);
    }

    FakeDirectory dir;
    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
    std::unique_ptr<runtime::Host> client_host;
    std::unique_ptr<sock::SimNetwork> net;
    runtime::Thread* dev_thread = nullptr;
    std::unique_ptr<Network> network;
    std::vector<std::unique_ptr<Client>> clients;
    std::string last_max_r2t;
};


TEST_F(IscsiConnTest, LoginNoAuthReadWriteMovesToTheDeviceThread) {
    start_network();
    Client& c = connect();
    ASSERT_EQ(login(c), 0);
    EXPECT_NE(c.tsih, 0);
    EXPECT_EQ(last_max_r2t, "1");  // SPDK offers 1; max_r2t_per_connection is a local cap
    EXPECT_EQ(stats().logins, 1u);
    EXPECT_EQ(stats().moved, 1u);
    // Power-on unit attention first.
    auto tur = run(c, Bytes(6, 0), 0, false);
    EXPECT_EQ(tur.status, scsi::status::check_condition);
    ASSERT_EQ(tur.sense.size(), 18u);
    EXPECT_EQ(tur.sense[2] & 0xf, 0x6);
    EXPECT_TRUE(run(c, Bytes(6, 0), 0, false).ok());
    // Write then read back, lengths from one block to past MaxBurstLength.
    int seed = 1;
    for (uint32_t blocks : {1u, 8u, 16u, 17u, 128u, 513u, 1024u}) {
        const uint32_t len = blocks * 512;
        const Bytes d = pattern(len, seed++);
        const uint32_t imm = std::min(len, 8192u);  // ImmediateData=Yes, FirstBurstLength 65536
        auto w = run(c, cdb16(0x8a, 100, blocks), len, false, d, imm);
        ASSERT_TRUE(w.ok()) << blocks;
        EXPECT_EQ(w.r2ts, len > imm ? (len - imm + 262143) / 262144 : 0u) << blocks;
        auto r = run(c, cdb16(0x88, 100, blocks), len, true);
        ASSERT_TRUE(r.ok()) << blocks;
        EXPECT_EQ(r.data, d) << blocks;
        EXPECT_EQ(r.data_ins, (len + 8191) / 8192);
        EXPECT_EQ(r.sequences, (len + 262143) / 262144) << blocks;  // MaxBurstLength each
    }
}

TEST_F(IscsiConnTest, UnsolicitedDataAndResiduals) {
    dir.opts.initial_r2t = false;  // InitialR2T is OR: both sides must say No
    dir.opts.first_burst_length = 65536;
    start_network();
    Client& c = connect();
    LoginOpts o;
    o.initial_r2t = false;
    o.first_burst = 16384;
    ASSERT_EQ(login(c, o), 0);
    run(c, Bytes(6, 0), 0, false);  // unit attention
    const Bytes d = pattern(65536, 7);
    // 4 KiB immediate, unsolicited up to 16 KiB, R2T for the rest.
    auto w = run(c, cdb16(0x8a, 10, 128), 65536, false, d, 4096, 16384);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w.r2ts, 1u);
    auto r = run(c, cdb16(0x88, 10, 128), 65536, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, d);
    // Underflow: the initiator expects more than the command moves.
    auto u = run(c, cdb16(0x88, 10, 1), 4096, true);
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u.data.size(), 512u);
    EXPECT_TRUE(u.flags & rsp_flags::underflow);
    EXPECT_EQ(u.residual, 4096u - 512u);
    // Out of range: CHECK CONDITION with sense in a SCSI Response.
    auto e = run(c, cdb16(0x88, kBlocks, 1), 512, true);
    EXPECT_EQ(e.status, scsi::status::check_condition);
    ASSERT_GE(e.sense.size(), 14u);
    EXPECT_EQ(e.sense[2] & 0xf, 0x5);
    EXPECT_EQ(e.sense[12], 0x21);
}

TEST_F(IscsiConnTest, DigestsRequiredAndUsed) {
    dir.header_digest = dir.data_digest = true;
    start_network();
    Client& refused = connect();
    EXPECT_EQ(login(refused), 0x0200);  // the node requires CRC32C
    Client& c = connect();
    LoginOpts o;
    o.hdgst = o.ddgst = true;
    ASSERT_EQ(login(c, o), 0);
    run(c, Bytes(6, 0), 0, false);
    const Bytes d = pattern(40960, 3);
    ASSERT_TRUE(run(c, cdb16(0x8a, 0, 80), 40960, false, d, 8192).ok());
    auto r = run(c, cdb16(0x88, 0, 80), 40960, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, d);
    nop_ping(c, Bytes{1, 2, 3, 4, 5});
}

TEST_F(IscsiConnTest, DataDigestErrorOnDataOutIsRejectedAndTheCommandFails) {
    start_network();
    Client& c = connect();
    LoginOpts o;
    o.ddgst = true;
    ASSERT_EQ(login(c, o), 0);
    run(c, Bytes(6, 0), 0, false);
    const Bytes d = pattern(8192, 9);
    ScsiCmd h = cmd_header(c, cdb16(0x8a, 0, 16), 8192, false, true);
    send(c, &h);
    auto p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::r2t));
    Bytes pdu = data_out(c, h.itt.get(), p->as<R2t>().ttt.get(), 0, d, 0, true);
    pdu[kBhsSize + 100] ^= 0xff;  // corrupt a data byte: the digest no longer matches
    send_raw(c, pdu);
    p = recv(c);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->op(), uint8_t(Opcode::reject));
    EXPECT_EQ(p->bhs[2], uint8_t(RejectReason::data_digest_error));
    p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::scsi_rsp));
    EXPECT_EQ(p->as<ScsiRsp>().status, scsi::status::check_condition);
    EXPECT_EQ(stats().data_digest_errors, 1u);
    // The connection lives on, and the bad data never reached the disk.
    auto r = run(c, cdb16(0x88, 0, 16), 8192, true);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r.data, d);
}

TEST_F(IscsiConnTest, DataSnOutOfOrderFailsThatCommandAlone) {
    // libiscsi's iSCSIDataSnInvalid: ERL 0 cannot recover a DataSN gap, but it is one
    // command's error: Reject, CHECK CONDITION, and the session goes on.
    start_network();
    Client& c = connect();
    ASSERT_EQ(login(c), 0);
    run(c, Bytes(6, 0), 0, false);
    const Bytes before = run(c, cdb16(0x88, 0, 16), 8192, true).data;
    const Bytes d = pattern(8192, 4);
    ScsiCmd h = cmd_header(c, cdb16(0x8a, 0, 16), 8192, false, true);
    send(c, &h);
    auto p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::r2t));
    const uint32_t ttt = p->as<R2t>().ttt.get();
    const Bytes first(d.begin(), d.begin() + 4096), second(d.begin() + 4096, d.end());
    send_raw(c, data_out(c, h.itt.get(), ttt, 0, first, 0, false));
    send_raw(c, data_out(c, h.itt.get(), ttt, 4096, second, 0, true));  // DataSN 0 again
    p = recv(c);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->op(), uint8_t(Opcode::reject));
    EXPECT_EQ(p->bhs[2], uint8_t(RejectReason::protocol_error));
    p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::scsi_rsp));
    EXPECT_EQ(p->as<ScsiRsp>().status, scsi::status::check_condition);
    EXPECT_FALSE(closed_by_target(c));
    auto r = run(c, cdb16(0x88, 0, 16), 8192, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, before);  // nothing written
    // ABORT TASK of a task that has ended: "task does not exist" (RFC 7143 11.5.1 c).
    TaskMgmtReq m{};
    m.opcode = uint8_t(Opcode::task_mgmt_req) | kImmediateBit;
    m.function = 0x80 | 1;
    m.itt.set(c.itt++);
    m.referenced_task_tag.set(h.itt.get());
    m.cmd_sn.set(c.cmd_sn);
    m.ref_cmd_sn.set(h.cmd_sn.get());
    send(c, &m);
    p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::task_mgmt_rsp));
    EXPECT_EQ(p->as<TaskMgmtRsp>().response, 1);
}

// ---- data digests through accel (data_digest_accel_threshold) ----------------------------

TEST_F(IscsiConnTest, DataDigestsThroughAccelRoundTrip) {
    Client& c = accel_session(65536, /*hdgst=*/true);
    ASSERT_EQ(c.mrdsl, 65536u);
    const uint64_t before = stats().data_digests_accel;
    // One Data-Out of 40960 bytes (on an R2T): one op.
    const Bytes d = pattern(40960, 5);
    ASSERT_TRUE(run(c, cdb16(0x8a, 0, 80), 40960, false, d).ok());
    EXPECT_EQ(stats().data_digests_accel, before + 1);
    // Five Data-In PDUs of 8192 (our MaxRecvDataSegmentLength): two refills, five ops; every
    // digest checked by recv(). The status comes in a SCSI Response of its own.
    auto r = run(c, cdb16(0x88, 0, 80), 40960, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, d);
    EXPECT_EQ(r.data_ins, 5u);
    EXPECT_FALSE(r.flags & data_in_flags::status) << "status in a SCSI Response";
    EXPECT_EQ(stats().data_digests_accel, before + 6);
    // Under the threshold: inline, the status in the last Data-In.
    r = run(c, cdb16(0x88, 0, 4), 2048, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, Bytes(d.begin(), d.begin() + 2048));
    EXPECT_TRUE(r.flags & data_in_flags::status);
    // Immediate data stays inline, whatever its size.
    const Bytes imm = pattern(8192, 6);
    ASSERT_TRUE(run(c, cdb16(0x8a, 200, 16), 8192, false, imm, 8192).ok());
    EXPECT_EQ(stats().data_digests_accel, before + 6);
    EXPECT_EQ(run(c, cdb16(0x88, 200, 16), 8192, true).data, imm);
    EXPECT_EQ(stats().data_digest_errors, 0u);
    EXPECT_EQ(c.bad_ddgst, 0u);
}

// A corrupted Data-Out verified through accel ends as an inline one does: a Reject (data
// digest error), the command CHECK CONDITION, nothing written; the connection goes on. With
// two Data-Outs in one send the second is checked while the first one's op may be in flight.
TEST_F(IscsiConnTest, CorruptedDataOutThroughAccelIsRejected) {
    Client& c = accel_session(8192);
    const Bytes old = run(c, cdb16(0x88, 0, 32), 16384, true).data;
    ASSERT_EQ(old.size(), 16384u);
    const uint64_t accel_before = stats().data_digests_accel;
    uint64_t errors = 0;
    for (size_t at : {size_t(100), size_t(8192 + 4000)}) {  // first or second Data-Out
        const Bytes d = pattern(16384, int(at));
        write_on_r2t(c, 0, d, at);
        auto p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::reject)) << at;
        EXPECT_EQ(p->bhs[2], uint8_t(RejectReason::data_digest_error));
        ASSERT_EQ(p->data.size(), kBhsSize);
        EXPECT_EQ(p->data[0] & 0x3f, uint8_t(Opcode::data_out)) << "the rejected header";
        p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::scsi_rsp)) << at;
        EXPECT_EQ(p->as<ScsiRsp>().status, scsi::status::check_condition);
        ASSERT_GE(p->data.size(), 2u + 14);
        EXPECT_EQ(p->data[2 + 2] & 0xf, 0xB);  // ABORTED COMMAND
        EXPECT_EQ(p->data[2 + 12], 0x47);      // DATA PHASE CRC ERROR
        EXPECT_EQ(stats().data_digest_errors, ++errors);
        EXPECT_EQ(run(c, cdb16(0x88, 0, 32), 16384, true).data, old) << "nothing written";
    }
    EXPECT_GT(stats().data_digests_accel, accel_before);
    // The same write intact goes through on the same connection.
    const Bytes d = pattern(16384, 3);
    write_on_r2t(c, 0, d);
    auto p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::scsi_rsp));
    EXPECT_EQ(p->as<ScsiRsp>().status, 0);
    EXPECT_EQ(run(c, cdb16(0x88, 0, 32), 16384, true).data, d);
    EXPECT_EQ(stats().protocol_errors, 0u);
}

// An accel op that fails or returns a wrong CRC never lets data through unverified or
// unprotected. Data-Out: the command fails (Reject, CHECK CONDITION), nothing is written.
// Data-In: a failed op sends no data, the command ends with CHECK CONDITION (ABORTED COMMAND);
// a wrong CRC goes out as a wrong data digest, which the initiator detects.
TEST_F(IscsiConnTest, AccelDigestFaultsNeverPassWrongData) {
    Client& c = accel_session(8192);
    DigestFaults* faults = nullptr;
    {
        runtime::HostScope scope(app->host());
        faults = &digest_faults();
    }
    const Bytes old = run(c, cdb16(0x88, 300, 16), 8192, true).data;
    const Bytes d = pattern(8192, 8);
    for (int mode = 0; mode < 2; ++mode) {  // accel's CRC wrong, then the op failing
        (mode == 0 ? faults->corrupt : faults->fail) = 1;
        write_on_r2t(c, 300, d);
        auto p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::reject)) << mode;
        p = recv(c);
        ASSERT_TRUE(p);
        ASSERT_EQ(p->op(), uint8_t(Opcode::scsi_rsp)) << mode;
        EXPECT_EQ(p->as<ScsiRsp>().status, scsi::status::check_condition);
        EXPECT_EQ(faults->corrupt.load() + faults->fail.load(), 0u) << "consumed";
        EXPECT_EQ(run(c, cdb16(0x88, 300, 16), 8192, true).data, old) << "nothing written";
    }
    EXPECT_EQ(stats().data_digest_errors, 2u);

    // Data-In, the op failing: no Data-In at all, CHECK CONDITION with the whole residual.
    faults->fail = 1;
    auto r = run(c, cdb16(0x88, 300, 32), 16384, true);
    EXPECT_EQ(r.status, scsi::status::check_condition);
    EXPECT_EQ(r.data_ins, 0u);
    EXPECT_EQ(r.residual, 16384u);
    ASSERT_GE(r.sense.size(), 14u);
    EXPECT_EQ(r.sense[2] & 0xf, 0xB);
    EXPECT_EQ(faults->fail.load(), 0u);
    // Data-In, accel's CRC wrong: the initiator sees a digest that does not match.
    c.check_ddgst = false;
    faults->corrupt = 1;
    r = run(c, cdb16(0x88, 300, 32), 16384, true);
    EXPECT_EQ(c.bad_ddgst, 1u);
    EXPECT_EQ(faults->corrupt.load(), 0u);
    c.check_ddgst = true;
    // The connection goes on: a good write through accel, read back.
    ASSERT_TRUE(run(c, cdb16(0x8a, 300, 16), 8192, false, d).ok());
    EXPECT_EQ(run(c, cdb16(0x88, 300, 16), 8192, true).data, d);
    EXPECT_EQ(stats().protocol_errors, 0u);
}

// The connection ends (a bad PDU right behind the last Data-Out, in the same send, so the
// close comes before accel's completion) while accel still verifies that Data-Out: the
// command is held until the op completes, then freed with the connection; nothing is written
// and the target goes on.
TEST_F(IscsiConnTest, ConnectionClosedWhileAccelVerifiesData) {
    Client& c = accel_session();
    const Bytes old = run(c, cdb16(0x88, 400, 16), 8192, true).data;
    const uint64_t accel_before = stats().data_digests_accel;
    write_on_r2t(c, 400, pattern(8192, 4), SIZE_MAX, Bytes(48, 0xee));
    EXPECT_TRUE(closed_by_target(c));
    ASSERT_TRUE(pump([&] {
        const auto st = stats();
        return st.connections_freed == st.connections_closed;
    }));
    EXPECT_EQ(stats().data_digests_accel, accel_before + 1);
    EXPECT_EQ(stats().digests_after_release, 1u) << "the command was held for its op";
    Client& c2 = connect();
    LoginOpts o2;
    o2.ddgst = true;
    o2.isid[5] = 2;
    ASSERT_EQ(login(c2, o2), 0);
    run(c2, Bytes(6, 0), 0, false);  // its unit attention
    EXPECT_EQ(run(c2, cdb16(0x88, 400, 16), 8192, true).data, old);
}

// ABORT TASK of a command whose last Data-Out accel still verifies (in the same send, so the
// TMF comes before accel's completion): the task ends in the connection, held until the op
// completes; it never executes and gets no SCSI Response.
TEST_F(IscsiConnTest, AbortTaskWhileAccelVerifiesData) {
    Client& c = accel_session();
    const Bytes old = run(c, cdb16(0x88, 500, 16), 8192, true).data;
    // The write's ITT and CmdSN are the next ones; the TMF takes those after.
    TaskMgmtReq m{};
    m.opcode = uint8_t(Opcode::task_mgmt_req) | kImmediateBit;
    m.function = 0x80 | 1;  // ABORT TASK
    m.itt.set(c.itt + 1);
    m.referenced_task_tag.set(c.itt);
    m.cmd_sn.set(c.cmd_sn + 1);
    m.ref_cmd_sn.set(c.cmd_sn);
    const Bytes tmf = build(c, &m, {});
    write_on_r2t(c, 500, pattern(8192, 9), SIZE_MAX, tmf);
    ++c.itt;
    auto p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::task_mgmt_rsp));
    EXPECT_EQ(p->as<TaskMgmtRsp>().response, 0);
    EXPECT_FALSE(recv(c, 1)) << "no SCSI Response for the aborted task";
    EXPECT_EQ(stats().digests_after_release, 1u) << "the command was held for its op";
    EXPECT_EQ(run(c, cdb16(0x88, 500, 16), 8192, true).data, old) << "nothing written";
}

TEST_F(IscsiConnTest, ChapLogin) {
    dir.auth.require_chap = true;
    dir.auth.chap_group = 1;
    start_network();
    Client& bad = connect();
    LoginOpts o;
    o.chap = true;
    o.chap_secret = "wrongwrongwrong";
    EXPECT_EQ(login(bad, o), 0x0201);
    Client& c = connect();
    o.chap_secret = "secret1secret1";
    o.isid[5] = 2;
    ASSERT_EQ(login(c, o), 0);
    EXPECT_TRUE(run(c, Bytes(6, 0), 0, false).status != 0xff);
}

TEST_F(IscsiConnTest, NopInPingAndTimeout) {
    dir.opts.nop_in_interval = 5;
    dir.opts.nop_timeout = 10;
    start_network();
    Client& c = connect();
    ASSERT_EQ(login(c), 0);
    // Idle for the interval: the target pings (ITT 0xffffffff, a TTT to echo).
    auto p = recv(c, 8);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::nop_in));
    EXPECT_EQ(p->as<NopIn>().itt.get(), kReservedTag);
    NopOut a{};
    a.opcode = uint8_t(Opcode::nop_out) | kImmediateBit;
    a.flags = kFinalBit;
    a.itt.set(kReservedTag);
    a.ttt.set(p->as<NopIn>().ttt.get());
    a.cmd_sn.set(c.cmd_sn);
    send(c, &a);
    // Answered: the next ping comes after another interval, and that one goes unanswered.
    p = recv(c, 8);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::nop_in));
    EXPECT_TRUE(closed_by_target(c));
    EXPECT_EQ(stats().nop_timeouts, 1u);
}

TEST_F(IscsiConnTest, LogoutAndTextSendTargets) {
    start_network();
    Client& c = connect();
    ASSERT_EQ(login(c), 0);
    auto p = send_targets(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::text_rsp));
    EXPECT_EQ(parse_keys(p->data)["TargetName"], kTarget);
    LogoutReq l{};
    l.opcode = uint8_t(Opcode::logout_req) | kImmediateBit;
    l.reason_code = 0x80;  // close the session
    l.itt.set(c.itt++);
    l.cmd_sn.set(c.cmd_sn);
    send(c, &l);
    p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::logout_rsp));
    EXPECT_EQ(p->as<LogoutRsp>().response, 0);
    EXPECT_EQ(p->as<LogoutRsp>().time2wait.get(), 2);
    EXPECT_TRUE(closed_by_target(c));
    EXPECT_TRUE(pump([&] { return stats().sessions == 0; }));
}

TEST_F(IscsiConnTest, DiscoverySession) {
    start_network();
    Client& c = connect();
    LoginOpts o;
    o.discovery = true;
    ASSERT_EQ(login(c, o), 0);
    EXPECT_EQ(stats().moved, 0u);
    auto p = send_targets(c);
    ASSERT_TRUE(p);
    auto keys = parse_keys(p->data);
    EXPECT_EQ(keys["TargetName"], kTarget);
    EXPECT_EQ(keys["TargetAddress"], "10.0.0.1:3260,1");
}

TEST_F(IscsiConnTest, AbortTaskWaitingForData) {
    start_network();
    Client& c = connect();
    ASSERT_EQ(login(c), 0);
    run(c, Bytes(6, 0), 0, false);
    ScsiCmd h = cmd_header(c, cdb16(0x8a, 0, 16), 8192, false, true);
    send(c, &h);
    auto p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::r2t));
    const uint32_t ttt = p->as<R2t>().ttt.get();
    TaskMgmtReq m{};
    m.opcode = uint8_t(Opcode::task_mgmt_req) | kImmediateBit;
    m.function = 0x80 | 1;  // ABORT TASK
    m.itt.set(c.itt++);
    m.referenced_task_tag.set(h.itt.get());
    m.cmd_sn.set(c.cmd_sn);
    m.ref_cmd_sn.set(h.cmd_sn.get());
    send(c, &m);
    p = recv(c);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::task_mgmt_rsp));
    EXPECT_EQ(p->as<TaskMgmtRsp>().response, 0);
    // Data-Out for the aborted task is dropped; the connection keeps working.
    send_raw(c, data_out(c, h.itt.get(), ttt, 0, pattern(8192, 1), 0, true));
    EXPECT_TRUE(run(c, Bytes(6, 0), 0, false).ok());
    // LUN RESET goes to core/scsi; an unsupported function is answered 5.
    m.function = 0x80 | 5;
    m.itt.set(c.itt++);
    send(c, &m);
    p = recv(c);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->as<TaskMgmtRsp>().response, 0);
    m.function = 0x80 | 8;  // TASK REASSIGN
    m.itt.set(c.itt++);
    send(c, &m);
    p = recv(c);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->as<TaskMgmtRsp>().response, 5);
}

TEST_F(IscsiConnTest, TwoSessionsMcsAndReinstatement) {
    start_network();
    Client& a = connect();
    ASSERT_EQ(login(a), 0);
    Client& b = connect();
    LoginOpts ob;
    ob.isid[5] = 9;
    ASSERT_EQ(login(b, ob), 0);
    EXPECT_NE(a.tsih, b.tsih);
    EXPECT_EQ(stats().sessions, 2u);
    // A second connection of session a (MC/S).
    Client& a2 = connect();
    a2.tsih = a.tsih;
    a2.cmd_sn = a.cmd_sn;
    LoginOpts o2;
    o2.cid = 1;
    ASSERT_EQ(login(a2, o2), 0);
    EXPECT_EQ(a2.tsih, a.tsih);
    run(a, Bytes(6, 0), 0, false);
    a2.cmd_sn = a.cmd_sn;
    const Bytes d = pattern(4096, 5);
    ASSERT_TRUE(run(a2, cdb16(0x8a, 0, 8), 4096, false, d, 4096).ok());
    a.cmd_sn = a2.cmd_sn;
    auto r = run(a, cdb16(0x88, 0, 8), 4096, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.data, d);
    // A third connection exceeds MaxConnections=2.
    Client& a3 = connect();
    a3.tsih = a.tsih;
    LoginOpts o3;
    o3.cid = 2;
    EXPECT_EQ(login(a3, o3), 0x0206);
    // Reinstatement: session a's nexus logs in anew with TSIH 0; a's connections are closed.
    Client& n = connect();
    ASSERT_EQ(login(n), 0);
    EXPECT_TRUE(closed_by_target(a));
    EXPECT_TRUE(closed_by_target(a2));
    EXPECT_TRUE(pump([&] { return stats().sessions == 2; }));
    EXPECT_FALSE(run(b, Bytes(6, 0), 0, false).status == 0xff);  // b is untouched
}

TEST_F(IscsiConnTest, ViolationsEndThatConnectionAlone) {
    start_network();
    Client& good = connect();
    ASSERT_EQ(login(good), 0);
    run(good, Bytes(6, 0), 0, false);
    // Garbage bytes.
    Client& g = connect();
    send_raw(g, Bytes(48, 0xee));
    EXPECT_TRUE(closed_by_target(g));
    // A bad Data-Out offset.
    Client& b = connect();
    LoginOpts ob;
    ob.isid[5] = 3;
    ASSERT_EQ(login(b, ob), 0);
    ScsiCmd h = cmd_header(b, cdb16(0x8a, 0, 16), 8192, false, true);
    send(b, &h);
    auto p = recv(b);
    ASSERT_TRUE(p);
    ASSERT_EQ(p->op(), uint8_t(Opcode::r2t));
    send_raw(b, data_out(b, h.itt.get(), p->as<R2t>().ttt.get(), 512, pattern(4096, 1), 0, false));
    p = recv(b);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->op(), uint8_t(Opcode::reject));
    EXPECT_TRUE(closed_by_target(b));
    // CmdSN outside the window: dropped, the connection lives.
    Client& w = connect();
    LoginOpts ow;
    ow.isid[5] = 4;
    ASSERT_EQ(login(w, ow), 0);
    ScsiCmd far = cmd_header(w, Bytes(6, 0), 0, false, false);
    far.cmd_sn.set(w.cmd_sn + 1000);
    send(w, &far);
    EXPECT_FALSE(recv(w, 2));  // nothing: dropped
    --w.cmd_sn;
    EXPECT_NE(run(w, Bytes(6, 0), 0, false).status, 0xff);
    // The good connection was never disturbed.
    EXPECT_TRUE(run(good, Bytes(6, 0), 0, false).ok());
    EXPECT_GE(stats().protocol_errors, 2u);
}

// The network layer under the real configuration (src/config.cpp): installed with
// set_network(make_network()), listening when the portal group is created, logins answered by
// lookup_target (ACL, node, device on a node Thread), connections listed, and a node's
// deletion ending its sessions.
TEST_F(IscsiConnTest, WithTheConfiguration) {
    auto r = app->call_method("bdev_malloc_create",
                              {{"name", "Malloc1"}, {"num_blocks", 2048}, {"block_size", 512}});
    ASSERT_TRUE(r.contains("result")) << r.dump();
    std::optional<Result<void>> made;
    ASSERT_TRUE(on(app->thread(), [&] {
        set_network(make_network());
        ASSERT_TRUE(create_portal_group({1, {{"10.0.0.1", "3261"}}}).ok());
        ASSERT_TRUE(create_initiator_group({1, {"ANY"}, {"10.0.0.0/8"}}).ok());
        TargetNodeConfig n;
        n.name = "disk2";
        n.pg_ig_maps = {{1, 1}};
        n.luns = {{"Malloc1", 0}};
        n.queue_depth = 8;
        create_target_node(n, [&](Result<void> x) { made = std::move(x); });
    }));
    ASSERT_TRUE(pump([&] { return made.has_value(); }));
    ASSERT_TRUE(made->ok()) << made->error().message();
    Client& bad = connect(3261);
    LoginOpts o;
    o.target = "iqn.2016-06.io.spdk:nosuch";
    EXPECT_EQ(login(bad, o), 0x0203);
    Client& c = connect(3261);
    o.target = "iqn.2016-06.io.spdk:disk2";
    ASSERT_EQ(login(c, o), 0);
    EXPECT_EQ(c.max_cmd_sn, c.cmd_sn + 7);  // the node's queue depth
    run(c, Bytes(6, 0), 0, false);
    const Bytes d = pattern(300 * 512, 4);
    ASSERT_TRUE(run(c, cdb16(0x8a, 7, 300), 300 * 512, false, d, 8192).ok());
    auto rd = run(c, cdb16(0x88, 7, 300), 300 * 512, true);
    ASSERT_TRUE(rd.ok());
    EXPECT_EQ(rd.data, d);
    std::vector<ConnectionInfo> conns;
    ASSERT_TRUE(on(app->thread(), [&] { get_connections([&](auto v) { conns = std::move(v); }); }));
    ASSERT_EQ(conns.size(), 1u);
    EXPECT_EQ(conns[0].target_node_name, "iqn.2016-06.io.spdk:disk2");
    EXPECT_EQ(conns[0].tsih, c.tsih);
    // Deleting the node ends its session first.
    std::optional<Result<void>> deleted;
    ASSERT_TRUE(on(app->thread(), [&] {
        delete_target_node("iqn.2016-06.io.spdk:disk2", [&](Result<void> x) { deleted = std::move(x); });
    }));
    ASSERT_TRUE(pump([&] { return deleted.has_value(); }));
    EXPECT_TRUE(deleted->ok());
    EXPECT_TRUE(closed_by_target(c));
    bool down = false;
    ASSERT_TRUE(on(app->thread(), [&] { shutdown([&] { down = true; }); }));
    ASSERT_TRUE(pump([&] { return down; }));
    ASSERT_TRUE(on(app->thread(), [&] { set_network(nullptr); }));
}

}  // namespace
}  // namespace strata::iscsi::internal
