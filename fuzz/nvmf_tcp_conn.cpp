// Fuzz target: the NVMe/TCP target's connection state machine with a whole target behind it.
// One App per process on the simulator (malloc bdev Malloc0 in subsystem kNqn, TCP transport
// with one poll group, listener 10.0.0.1:4420 on the sim network); per input a client Host's
// sim socket connects, writes an optional valid prefix and then the fuzzer's bytes (in chunks,
// the simulator running between them), reads and drops whatever the target answers, and runs
// until the target closed the connection or the input's virtual time is up; then it closes.
// Invariants: no crash, no leak (ASan), no hang; the target closes the connection alone: every
// accepted connection is closed and no admin/I/O qpair stays connected afterwards; with flag
// bit 7 a fresh, well-behaved connection (ICReq, Connect, Property Get) still works.
//
// Input: byte 0 = flags: bit 0 send a valid ICReq first (bit 1 header digests, bit 2 data
// digests), bit 3 then a valid admin Connect (in-capsule ConnectData), bit 4 then Property
// Set CC.EN=1 (the fuzzed bytes then reach admin commands), bit 5 an I/O-queue style Connect
// (qid 1) instead of the admin one, bit 6 the client resets the connection at the end instead
// of closing it, bit 7 check a good connection afterwards; byte 1 = write chunk size
// (0: one write); the rest is the byte stream (with digests on, the fuzzer has to get CRCs
// right to go past a header: the prefix's PDUs are digested properly).
// Seeds: fuzz/corpus/gen_nvmf_tcp.py (see fuzz/corpus/README.md).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/crc.h>
#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/nvme/spec/commands.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvme/spec/tcp.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/tcp.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

#include "fuzz_check.h"
#include "fuzz_target.h"
#include "nvmf_fuzz_app.h"

namespace {

using namespace strata;
namespace spec = nvme::spec;
namespace pdu = nvme::spec::tcp;
using Bytes = std::vector<uint8_t>;

constexpr const char* kNqn = "nqn.2016-06.io.strata:fuzz";
constexpr const char* kHostNqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
constexpr const char* kAddr = "10.0.0.1";
constexpr uint16_t kPort = 4420;

// The shared target (nvmf_fuzz_app.h) on a sim network with a client Host, the TCP transport
// and a listener.
struct World : fuzz::NvmfFuzzApp {
    World() : NvmfFuzzApp(42, 1, kNqn) {
        net = std::make_unique<sock::SimNetwork>(*sim, 43);
        CHECK(net->attach(app->host(), kAddr).ok());
        client_host = std::make_unique<runtime::Host>("client", 44);
        CHECK(net->attach(*client_host, "10.0.0.2").ok());
        {
            runtime::HostScope scope(app->host());
            CHECK(sock::set_default_impl("sim").ok());
        }
        on_app([&] {
            nvmf::TcpOptions o;
            o.max_queue_depth = 32;
            o.max_aq_depth = 32;
            o.in_capsule_data_size = 4096;
            o.io_unit_size = 8192;
            o.max_io_size = 65536;
            o.num_shared_buffers = 16;
            o.poll_groups = 1;
            o.acceptor_poll_rate = 100;  // us: connections are accepted quickly
            CHECK(nvmf::create_tcp_transport(o).ok());
            CHECK(nvmf::add_listener(kNqn, {"TCP", "IPv4", kAddr, std::to_string(kPort)}).ok());
        });
    }

    // Steps the simulator until pred() or `ns` of virtual time passed.
    bool pump(const std::function<bool()>& pred, uint64_t ns) {
        const uint64_t deadline = sim->now_ns() + ns;
        while (!pred()) {
            if (group) group->poll();
            if (sim->step() == runtime::SimScheduler::StepResult::idle) return pred();
            if (sim->now_ns() > deadline) return pred();
        }
        return true;
    }
    nvmf::TcpStats stats() {
        runtime::HostScope scope(app->host());
        return nvmf::tcp_stats();
    }
    // Qpairs connected now, summed over the poll groups (gathered on their Threads).
    struct QpairCounts {
        uint64_t admin = 0, io = 0;
    };
    QpairCounts target_qpairs() {
        bool done = false;
        QpairCounts c;
        on_app([&] {
            nvmf::poll_group_stats([&](std::vector<nvmf::PollGroupStats> groups) {
                for (const auto& g : groups) {
                    c.admin += g.current_admin_qpairs;
                    c.io += g.current_io_qpairs;
                }
                done = true;
            });
        });
        CHECK(pump([&] { return done; }, 10'000'000'000ull));
        return c;
    }

    // ---- the client ----
    std::unique_ptr<sock::Socket> open() {
        runtime::HostScope scope(*client_host);
        auto s = sock::connect({kAddr, kPort}, {.impl = "sim"});
        CHECK(s.ok());
        if (!group) group = sock::SocketGroup::create();
        CHECK(group->add(**s, [](void*, sock::Socket&) {}, nullptr).ok());
        sock::Socket* raw = s->get();
        CHECK(pump([&] { return raw->connected(); }, 1'000'000'000ull));
        rx.clear();
        eof = false;
        return std::move(*s);
    }
    void close(std::unique_ptr<sock::Socket>& s, bool reset) {
        runtime::HostScope scope(*client_host);
        group->remove(*s);
        if (reset)
            s->abort();
        else
            s->close();
        s.reset();
    }
    void drain(sock::Socket& s) {
        runtime::HostScope scope(*client_host);
        uint8_t buf[16384];
        while (!eof) {
            auto r = s.read(buf, sizeof buf);
            if (!r) {
                if (r.code() != Errc::busy) eof = true;
                return;
            }
            rx.insert(rx.end(), buf, buf + *r);
        }
    }
    // Writes all of b (the simulator runs while the send window is full); false if the
    // connection failed first.
    bool send(sock::Socket& s, const uint8_t* b, size_t n) {
        size_t off = 0;
        return pump(
            [&] {
                runtime::HostScope scope(*client_host);
                while (off < n) {
                    auto r = s.write(b + off, n - off);
                    if (!r) {
                        if (r.code() != Errc::busy) off = n;  // the target closed: stop
                        return off == n;
                    }
                    off += *r;
                }
                return true;
            },
            1'000'000'000ull);
    }
    // The next whole PDU from the target (empty if the connection ended or time ran out).
    Bytes recv_pdu(sock::Socket& s) {
        Bytes out;
        pump(
            [&] {
                drain(s);
                if (rx.size() >= 8) {
                    uint32_t plen;
                    std::memcpy(&plen, rx.data() + 4, 4);
                    if (rx.size() >= plen) {
                        out.assign(rx.begin(), rx.begin() + plen);
                        rx.erase(rx.begin(), rx.begin() + plen);
                        return true;
                    }
                }
                return eof;
            },
            100'000'000ull);
        return out;
    }

    std::unique_ptr<sock::SimNetwork> net;
    std::unique_ptr<runtime::Host> client_host;
    std::unique_ptr<sock::SocketGroup> group;
    Bytes rx;
    bool eof = false;
};

void le32(Bytes& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

Bytes icreq(bool hd, bool dd) {
    pdu::IcReq r{};
    r.ch = {static_cast<uint8_t>(pdu::PduType::ic_req), 0, 128, 0, 128};
    r.dgst = static_cast<uint8_t>((hd ? pdu::dgst::hdgst_enable : 0) |
                                  (dd ? pdu::dgst::ddgst_enable : 0));
    Bytes b(sizeof r);
    std::memcpy(b.data(), &r, sizeof r);
    return b;
}

// A CapsuleCmd with optional in-capsule data, digests as negotiated.
Bytes capsule(spec::Sqe sqe, const Bytes& icd, bool hd, bool dd) {
    sqe.set_psdt(spec::Psdt::sgl_mptr_contig);
    if (!icd.empty()) sqe.set_dptr_sgl(pdu::make_in_capsule_sgl(static_cast<uint32_t>(icd.size())));
    dd = dd && !icd.empty();
    pdu::CapsuleCmd c{};
    const uint32_t hlen = 72 + (hd ? 4 : 0);
    c.ch = {static_cast<uint8_t>(pdu::PduType::capsule_cmd),
            static_cast<uint8_t>((hd ? pdu::flags::hdgstf : 0) | (dd ? pdu::flags::ddgstf : 0)),
            72, static_cast<uint8_t>(icd.empty() ? 0 : hlen),
            static_cast<uint32_t>(hlen + icd.size() + (dd ? 4 : 0))};
    c.sqe = sqe;
    Bytes b(sizeof c);
    std::memcpy(b.data(), &c, sizeof c);
    if (hd) le32(b, crc32c(0, b.data(), 72));
    b.insert(b.end(), icd.begin(), icd.end());
    if (dd) le32(b, crc32c(0, icd.data(), icd.size()));
    return b;
}

Bytes connect_pdu(uint16_t qid, uint16_t cntlid, bool hd, bool dd) {
    spec::ConnectCommand cc{};
    cc.opcode = spec::fabrics_opcode;
    cc.cid = 1;
    cc.fctype = static_cast<uint8_t>(spec::FabricsCommandType::connect);
    cc.qid = qid;
    cc.sqsize = 31;
    spec::Sqe sqe;
    std::memcpy(&sqe, &cc, sizeof sqe);
    spec::ConnectData cd{};
    cd.hostid[0] = 0x11;
    cd.cntlid = cntlid;
    spec::set_padded(cd.subnqn, kNqn, '\0');
    spec::set_padded(cd.hostnqn, kHostNqn, '\0');
    Bytes icd(sizeof cd);
    std::memcpy(icd.data(), &cd, sizeof cd);
    return capsule(sqe, icd, hd, dd);
}

Bytes property_pdu(bool set, uint32_t ofst, uint64_t value, bool hd) {
    spec::PropertySetCommand p{};
    p.opcode = spec::fabrics_opcode;
    p.cid = 2;
    p.fctype = static_cast<uint8_t>(set ? spec::FabricsCommandType::property_set
                                        : spec::FabricsCommandType::property_get);
    p.ofst = ofst;
    p.value = set ? value : 0;
    spec::Sqe sqe;
    std::memcpy(&sqe, &p, sizeof sqe);
    return capsule(sqe, {}, hd, false);
}

uint16_t status_of(const Bytes& p) {
    if (p.size() < 24 || p[0] != static_cast<uint8_t>(pdu::PduType::capsule_resp)) return 0xFFFF;
    spec::Cqe cqe;
    std::memcpy(&cqe, p.data() + 8, sizeof cqe);
    return static_cast<uint16_t>(cqe.status >> 1);
}

// A well-behaved admin connection: ICReq, Connect, Property Get VS.
void good_connection(World& w) {
    auto s = w.open();
    Bytes b = icreq(false, false);
    CHECK(w.send(*s, b.data(), b.size()));
    Bytes r = w.recv_pdu(*s);
    CHECK(r.size() == 128 && r[0] == static_cast<uint8_t>(pdu::PduType::ic_resp));
    b = connect_pdu(0, spec::cntlid_dynamic, false, false);
    CHECK(w.send(*s, b.data(), b.size()));
    CHECK(status_of(w.recv_pdu(*s)) == 0);
    b = property_pdu(false, 0x08, 0, false);
    CHECK(w.send(*s, b.data(), b.size()));
    CHECK(status_of(w.recv_pdu(*s)) == 0);
    w.close(s, false);
}

// After a connection ended: the target closed every connection it accepted and no qpair is
// left connected (the controller went with its admin queue).
void settle(World& w) {
    bool ok = false;
    World::QpairCounts n;
    for (int i = 0; i < 50 && !ok; ++i) {  // up to 5 s of virtual time
        w.pump(
            [&] {
                const auto t = w.stats();
                return t.connections_closed == t.connections_accepted;
            },
            100'000'000ull);
        const auto t = w.stats();
        n = w.target_qpairs();
        ok = t.connections_closed == t.connections_accepted && n.admin == 0 && n.io == 0;
    }
    if (!ok) {
        const auto t = w.stats();
        std::fprintf(stderr, "accepted %llu closed %llu admin qpairs %llu io qpairs %llu\n",
                     static_cast<unsigned long long>(t.connections_accepted),
                     static_cast<unsigned long long>(t.connections_closed),
                     static_cast<unsigned long long>(n.admin),
                     static_cast<unsigned long long>(n.io));
    }
    CHECK(ok);
}

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size < 2) return 0;
    const uint8_t flags = data[0];
    const size_t chunk = data[1] == 0 ? SIZE_MAX : size_t{data[1]};
    const bool hd = flags & 2, dd = flags & 4;

    Bytes prefix;
    if (flags & 1) {
        Bytes b = icreq(hd, dd);
        prefix.insert(prefix.end(), b.begin(), b.end());
        if (flags & 8) {
            b = (flags & 0x20) ? connect_pdu(1, 1, hd, dd) : connect_pdu(0, spec::cntlid_dynamic, hd, dd);
            prefix.insert(prefix.end(), b.begin(), b.end());
            if (flags & 0x10) {
                b = property_pdu(true, 0x14, 0x00460001, hd);  // CC: EN, IOSQES 6, IOCQES 4
                prefix.insert(prefix.end(), b.begin(), b.end());
            }
        }
    }

    auto s = w->open();
    bool alive = prefix.empty() || w->send(*s, prefix.data(), prefix.size());
    for (size_t off = 2; alive && off < size;) {
        const size_t n = std::min(chunk, size - off);
        alive = w->send(*s, data + off, n);
        off += n;
        // Let the target work on it (and answer) before the next chunk.
        w->pump([&] {
            w->drain(*s);
            return w->eof;
        }, 200'000);
        if (w->eof) break;
    }
    // Until the target ended the connection, or it is clearly waiting for more bytes.
    w->pump([&] {
        w->drain(*s);
        return w->eof;
    }, 20'000'000);
    w->close(s, flags & 0x40);
    settle(*w);
    if (flags & 0x80) {
        good_connection(*w);
        settle(*w);
    }
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
