// The NVMe/TCP initiator against a scripted fake target over an in-test socket double: connect
// (ICReq, Fabrics Connect, properties, Identify), in-capsule and R2T writes, C2HData reads,
// digests, partial segments, hostile PDUs, reconnect with exactly-once completion, controller
// loss timeout, keep-alive and discovery.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <strata/base/crc.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/qpair.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvme/spec/spec.h>
#include <strata/nvme/spec/tcp.h>
#include <strata/runtime/sim_fixture.h>

#include "../src/tcp.h"

namespace strata::nvme::testing {
namespace {

namespace stcp = spec::tcp;

// ---- a socket pair in memory ---------------------------------------------------------------

struct Pipe {
    std::deque<uint8_t> buf[2];  // buf[i]: bytes side i can read
    bool closed[2] = {false, false};
    bool reset = false;
    size_t max_chunk = 0;  // bytes per read at most (0: no limit): splits PDUs anywhere
    uint64_t reads[2] = {0, 0};  // readv calls by side i that returned bytes
};

class PipeSocket final : public sock::Socket {
public:
    PipeSocket(std::shared_ptr<Pipe> p, int side) : p_(std::move(p)), side_(side) {
        local_ = {"10.0.0." + std::to_string(side + 1), 4420};
        peer_ = {"10.0.0." + std::to_string(2 - side), 4420};
    }
    Result<size_t> readv(const iovec* iov, int iovcnt) noexcept override {
        auto& in = p_->buf[side_];
        if (p_->closed[side_]) return Status(Errc::io_error, "closed");
        if (in.empty()) {
            if (p_->reset) return Status(Errc::io_error, "connection reset");
            if (p_->closed[1 - side_]) return Status(Errc::shutdown, "end of stream");
            return Status(Errc::busy);
        }
        size_t budget = p_->max_chunk ? p_->max_chunk : SIZE_MAX;
        size_t got = 0;
        for (int i = 0; i < iovcnt && !in.empty() && budget > 0; ++i) {
            const size_t take = std::min({iov[i].iov_len, in.size(), budget});
            std::copy_n(in.begin(), take, static_cast<uint8_t*>(iov[i].iov_base));
            in.erase(in.begin(), in.begin() + static_cast<long>(take));
            got += take;
            budget -= take;
        }
        ++p_->reads[side_];
        return got;
    }
    Result<size_t> writev(const iovec* iov, int iovcnt) noexcept override {
        if (p_->reset || p_->closed[0] || p_->closed[1]) return Status(Errc::io_error, "closed");
        size_t n = 0;
        for (int i = 0; i < iovcnt; ++i) {
            auto* b = static_cast<const uint8_t*>(iov[i].iov_base);
            p_->buf[1 - side_].insert(p_->buf[1 - side_].end(), b, b + iov[i].iov_len);
            n += iov[i].iov_len;
        }
        return n;
    }
    void close() noexcept override { p_->closed[side_] = true; }
    void abort() noexcept override {
        p_->closed[side_] = true;
        p_->reset = true;
    }
    bool connected() const noexcept override {
        return !p_->reset && !p_->closed[0] && !p_->closed[1];
    }
    const sock::Endpoint& local() const noexcept override { return local_; }
    const sock::Endpoint& peer() const noexcept override { return peer_; }
    const char* impl_name() const noexcept override { return "pipe"; }

private:
    std::shared_ptr<Pipe> p_;
    int side_;
    sock::Endpoint local_, peer_;
};

// ---- the fake target -----------------------------------------------------------------------

constexpr uint32_t kBlock = 512;
constexpr uint64_t kBlocks = 4096;

struct FakeTarget;

struct Conn {
    std::shared_ptr<Pipe> pipe;
    std::unique_ptr<PipeSocket> sock;
    std::vector<uint8_t> rx;
    bool hdgst = false, ddgst = false;
    uint16_t qid = 0xFFFF;
    struct Pending {
        spec::Sqe sqe{};
        std::vector<uint8_t> data;
        size_t got = 0;
    };
    std::map<uint16_t, Pending> writes;  // by cid, waiting for H2CData
    bool dead = false;

    void send(const void* p, size_t n) {
        iovec v{const_cast<void*>(p), n};
        (void)sock->writev(&v, 1);
    }
};

struct FakeTarget {
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<uint8_t> disk = std::vector<uint8_t>(kBlock * kBlocks);
    uint32_t cc = 0;
    uint16_t next_cntlid = 1;
    uint32_t maxh2cdata = 4096;
    uint32_t ioccsz = (64 + 4096) / 16;  // 4 KiB in-capsule
    bool allow_digests = true;
    bool refuse_connect = false;     // the connector fails (target down)
    bool hold_io = false;            // I/O reads are held, never answered
    bool answer_keep_alive = true;
    bool read_with_success = true;   // C2HData SUCCESS instead of a CapsuleResp
    size_t max_chunk = 0;
    uint32_t connects = 0, keep_alives = 0, io_commands = 0;
    std::vector<std::pair<Conn*, spec::Sqe>> held;  // held reads
    // Replaces the answer to the next I/O read: raw bytes written instead.
    std::function<std::vector<uint8_t>(uint16_t cid, const spec::Sqe&)> hostile_read;
    std::vector<spec::DiscoveryLogEntry> discovery;

    Result<std::unique_ptr<sock::Socket>> connect() {
        if (refuse_connect) return Error(Errc::io_error, "connection refused");
        auto pipe = std::make_shared<Pipe>();
        pipe->max_chunk = max_chunk;
        auto c = std::make_unique<Conn>();
        c->pipe = pipe;
        c->sock = std::make_unique<PipeSocket>(pipe, 1);
        conns.push_back(std::move(c));
        return std::unique_ptr<sock::Socket>(std::make_unique<PipeSocket>(pipe, 0));
    }

    void reset_all() {
        for (auto& c : conns) c->sock->abort();
    }

    void put_hdgst(std::vector<uint8_t>& pdu, const Conn& c, size_t hlen) {
        if (!c.hdgst) return;
        const uint32_t crc = crc32c(0, pdu.data(), hlen);
        pdu.resize(hlen + 4);
        std::memcpy(pdu.data() + hlen, &crc, 4);
    }

    void respond(Conn& c, uint16_t cid, spec::StatusField st = {}, uint32_t dw0 = 0,
                 uint32_t dw1 = 0) {
        stcp::CapsuleResp r{};
        r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_resp);
        r.ch.flags = c.hdgst ? stcp::flags::hdgstf : 0;
        r.ch.hlen = 24;
        r.ch.plen = 24 + (c.hdgst ? 4 : 0);
        r.cqe.cid = cid;
        r.cqe.dw0 = dw0;
        r.cqe.dw1 = dw1;
        r.cqe.sqid = c.qid;
        r.cqe.status = st.raw;
        std::vector<uint8_t> pdu(24);
        std::memcpy(pdu.data(), &r, 24);
        put_hdgst(pdu, c, 24);
        c.send(pdu.data(), pdu.size());
    }

    void send_c2h(Conn& c, uint16_t cid, const uint8_t* data, uint32_t len, uint32_t off,
                  bool last, bool success) {
        stcp::DataPdu d{};
        d.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::c2h_data);
        d.ch.flags = static_cast<uint8_t>((c.hdgst ? stcp::flags::hdgstf : 0) |
                                          (c.ddgst ? stcp::flags::ddgstf : 0) |
                                          (last ? stcp::flags::last_pdu : 0) |
                                          (success ? stcp::flags::success : 0));
        d.ch.hlen = 24;
        const uint32_t pdo = 24 + (c.hdgst ? 4 : 0);
        d.ch.pdo = static_cast<uint8_t>(pdo);
        d.ch.plen = pdo + len + (c.ddgst ? 4 : 0);
        d.cccid = cid;
        d.datao = off;
        d.datal = len;
        std::vector<uint8_t> pdu(24);
        std::memcpy(pdu.data(), &d, 24);
        put_hdgst(pdu, c, 24);
        pdu.insert(pdu.end(), data, data + len);
        if (c.ddgst) {
            const uint32_t crc = crc32c(0, data, len);
            const auto* b = reinterpret_cast<const uint8_t*>(&crc);
            pdu.insert(pdu.end(), b, b + 4);
        }
        c.send(pdu.data(), pdu.size());
    }

    void send_data_and_respond(Conn& c, uint16_t cid, const uint8_t* data, uint32_t len) {
        // Two PDUs when there is room, to exercise offsets.
        const uint32_t first = len > kBlock ? len / 2 : len;
        send_c2h(c, cid, data, first, 0, first == len, first == len && read_with_success);
        if (first != len) send_c2h(c, cid, data + first, len - first, first, true, read_with_success);
        if (!read_with_success) respond(c, cid);
    }

    // Answers every held read at once: a burst of PDUs on the wire before the host reads.
    void release_held() {
        for (auto& [c, s] : held) {
            const uint32_t nlb = (s.cdw12 & 0xFFFF) + 1;
            send_data_and_respond(*c, s.cid, disk.data() + s.slba() * kBlock, nlb * kBlock);
        }
        held.clear();
    }

    void admin_command(Conn& c, const spec::Sqe& s, const std::vector<uint8_t>& icd) {
        const auto opc = static_cast<spec::AdminOpcode>(s.opc);
        const uint32_t len = s.dptr_sgl().length;
        if (opc == spec::AdminOpcode::identify) {
            std::vector<uint8_t> out(4096);
            const uint32_t cns = s.cdw10 & 0xFF;
            if (cns == 1) {
                spec::IdentifyController id{};
                id.nn = 1;
                id.ioccsz = ioccsz;
                id.mdts = 5;
                id.aerl = 3;
                id.ver = 0x10300;
                id.cntlid = 1;
                std::memcpy(out.data(), &id, sizeof(id));
            } else if (cns == 0) {
                spec::IdentifyNamespace ns{};
                ns.nsze = ns.ncap = kBlocks;
                ns.lbaf[0].lbads = 9;
                std::memcpy(out.data(), &ns, sizeof(ns));
            } else if (cns == 2) {
                const uint32_t one = 1;
                std::memcpy(out.data(), &one, 4);
            } else if (cns == 3) {
                out[0] = 3;   // NIDT uuid
                out[1] = 16;  // NIDL
                for (int i = 0; i < 16; ++i) out[4 + i] = static_cast<uint8_t>(0xA0 + i);
            }
            send_data_and_respond(c, s.cid, out.data(), std::min<uint32_t>(len, 4096));
        } else if (opc == spec::AdminOpcode::set_features) {
            respond(c, s.cid, {}, (s.cdw10 & 0xFF) == 0x07 ? (3u << 16 | 3u) : 0);
        } else if (opc == spec::AdminOpcode::get_log_page) {
            std::vector<uint8_t> out(len);
            if ((s.cdw10 & 0xFF) == spec::log_page_discovery) {
                std::vector<uint8_t> page(1024 + discovery.size() * 1024);
                spec::DiscoveryLogHeader h{};
                h.numrec = discovery.size();
                h.genctr = 1;
                std::memcpy(page.data(), &h, sizeof(h));
                for (size_t i = 0; i < discovery.size(); ++i)
                    std::memcpy(page.data() + 1024 + i * 1024, &discovery[i], 1024);
                const uint64_t off = uint64_t{s.cdw12} | uint64_t{s.cdw13} << 32;
                for (size_t i = 0; i < len && off + i < page.size(); ++i) out[i] = page[off + i];
            }
            send_data_and_respond(c, s.cid, out.data(), len);
        } else if (opc == spec::AdminOpcode::async_event_request) {
            // held forever
        } else if (opc == spec::AdminOpcode::keep_alive) {
            ++keep_alives;
            if (answer_keep_alive) respond(c, s.cid);
        } else {
            respond(c, s.cid);
        }
        (void)icd;
    }

    void io_command(Conn& c, const spec::Sqe& s, std::vector<uint8_t> icd) {
        ++io_commands;
        const auto opc = static_cast<spec::NvmOpcode>(s.opc);
        const uint64_t lba = s.slba();
        const uint32_t nlb = (s.cdw12 & 0xFFFF) + 1;
        const size_t bytes = size_t{nlb} * kBlock;
        if (opc == spec::NvmOpcode::read) {
            if (hostile_read) {
                auto raw = hostile_read(s.cid, s);
                hostile_read = nullptr;
                c.send(raw.data(), raw.size());
                return;
            }
            if (hold_io) {
                held.emplace_back(&c, s);
                return;
            }
            if ((lba + nlb) > kBlocks) {
                respond(c, s.cid, spec::make_status(spec::GenericStatus::lba_out_of_range));
                return;
            }
            send_data_and_respond(c, s.cid, disk.data() + lba * kBlock, static_cast<uint32_t>(bytes));
        } else if (opc == spec::NvmOpcode::write) {
            if (!icd.empty()) {
                std::memcpy(disk.data() + lba * kBlock, icd.data(), std::min(bytes, icd.size()));
                respond(c, s.cid);
                return;
            }
            Conn::Pending p;
            p.sqe = s;
            p.data.resize(bytes);
            c.writes[s.cid] = std::move(p);
            stcp::R2T r{};
            r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::r2t);
            r.ch.flags = c.hdgst ? stcp::flags::hdgstf : 0;
            r.ch.hlen = 24;
            r.ch.plen = 24 + (c.hdgst ? 4 : 0);
            r.cccid = s.cid;
            r.ttag = static_cast<uint16_t>(s.cid + 100);
            r.r2to = 0;
            r.r2tl = static_cast<uint32_t>(bytes);
            std::vector<uint8_t> pdu(24);
            std::memcpy(pdu.data(), &r, 24);
            put_hdgst(pdu, c, 24);
            c.send(pdu.data(), pdu.size());
        } else {
            respond(c, s.cid);
        }
    }

    void fabrics_command(Conn& c, const spec::Sqe& s, const std::vector<uint8_t>& icd) {
        const uint8_t fctype = static_cast<uint8_t>(s.nsid & 0xFF);
        if (fctype == static_cast<uint8_t>(spec::FabricsCommandType::connect)) {
            ++connects;
            c.qid = static_cast<uint16_t>(s.cdw10 >> 16);
            EXPECT_EQ(icd.size(), 1024u);
            spec::ConnectData d{};
            std::memcpy(&d, icd.data(), std::min<size_t>(icd.size(), sizeof(d)));
            last_hostnqn = std::string(spec::nqn_field(d.hostnqn));
            last_subnqn = std::string(spec::nqn_field(d.subnqn));
            if (c.qid == 0) last_kato = s.cdw12;
            const uint16_t id = c.qid == 0 ? next_cntlid++ : d.cntlid;
            respond(c, s.cid, {}, id);
        } else if (fctype == static_cast<uint8_t>(spec::FabricsCommandType::property_get)) {
            uint64_t v = 0;
            switch (s.cdw11) {
                case spec::reg::cap:
                    v = spec::Cap{}.set_mqes(127).set_to(2).set_css(spec::Cap::css_nvm).raw;
                    break;
                case spec::reg::vs: v = 0x10300; break;
                case spec::reg::cc: v = cc; break;
                case spec::reg::csts: {
                    v = (cc & 1) ? 1 : 0;
                    if (((cc >> 14) & 3) != 0) v |= 2u << 2;  // shutdown complete
                    break;
                }
                default: break;
            }
            respond(c, s.cid, {}, static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32));
        } else if (fctype == static_cast<uint8_t>(spec::FabricsCommandType::property_set)) {
            if (s.cdw11 == spec::reg::cc) cc = s.cdw12;
            respond(c, s.cid);
        } else {
            respond(c, s.cid, spec::make_status(spec::GenericStatus::invalid_opcode));
        }
    }

    // One PDU (its bytes complete in c.rx) from the host.
    void pdu(Conn& c, const uint8_t* b, const stcp::CommonHeader& ch) {
        switch (ch.type()) {
            case stcp::PduType::ic_req: {
                stcp::IcReq rq;
                std::memcpy(&rq, b, sizeof(rq));
                stcp::IcResp rs{};
                rs.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::ic_resp);
                rs.ch.hlen = 128;
                rs.ch.plen = 128;
                rs.maxh2cdata = maxh2cdata;
                rs.dgst = allow_digests ? rq.dgst : 0;
                c.hdgst = rs.dgst & stcp::dgst::hdgst_enable;
                c.ddgst = rs.dgst & stcp::dgst::ddgst_enable;
                c.send(&rs, sizeof(rs));
                break;
            }
            case stcp::PduType::capsule_cmd: {
                spec::Sqe s;
                std::memcpy(&s, b + 8, sizeof(s));
                std::vector<uint8_t> icd;
                const uint32_t hdr_total = 72 + (ch.has_hdgst() ? 4 : 0);
                if (ch.plen > hdr_total) {
                    const uint32_t dl = ch.plen - ch.pdo - (ch.has_ddgst() ? 4 : 0);
                    icd.assign(b + ch.pdo, b + ch.pdo + dl);
                    if (ch.has_ddgst()) {
                        uint32_t got;
                        std::memcpy(&got, b + ch.pdo + dl, 4);
                        EXPECT_EQ(got, crc32c(0, icd.data(), icd.size())) << "capsule data digest";
                    }
                }
                if (ch.has_hdgst()) {
                    uint32_t got;
                    std::memcpy(&got, b + 72, 4);
                    EXPECT_EQ(got, crc32c(0, b, 72)) << "capsule header digest";
                }
                if (s.opc == spec::fabrics_opcode) fabrics_command(c, s, icd);
                else if (c.qid == 0) admin_command(c, s, icd);
                else io_command(c, s, std::move(icd));
                break;
            }
            case stcp::PduType::h2c_data: {
                stcp::DataPdu d;
                std::memcpy(&d, b, sizeof(d));
                auto it = c.writes.find(d.cccid);
                if (it == c.writes.end()) {
                    ADD_FAILURE() << "H2CData for an unknown cid";
                    return;
                }
                EXPECT_EQ(d.ttag, d.cccid + 100);
                EXPECT_LE(d.datal, maxh2cdata);
                auto& p = it->second;
                EXPECT_EQ(d.datao, p.got);
                std::memcpy(p.data.data() + d.datao, b + ch.pdo, d.datal);
                if (ch.has_ddgst()) {
                    uint32_t got;
                    std::memcpy(&got, b + ch.pdo + d.datal, 4);
                    EXPECT_EQ(got, crc32c(0, b + ch.pdo, d.datal)) << "H2C data digest";
                }
                p.got += d.datal;
                if (p.got == p.data.size()) {
                    EXPECT_TRUE(ch.flags & stcp::flags::last_pdu);
                    std::memcpy(disk.data() + p.sqe.slba() * kBlock, p.data.data(), p.data.size());
                    const uint16_t cid = d.cccid;
                    c.writes.erase(it);
                    respond(c, cid);
                }
                break;
            }
            default: ADD_FAILURE() << "unexpected PDU from the host: " << int(ch.pdu_type);
        }
    }

    bool poll() {
        bool busy = false;
        for (auto& c : conns) {
            if (c->dead) continue;
            uint8_t tmp[65536];
            for (;;) {
                auto r = c->sock->read(tmp, sizeof(tmp));
                if (!r) {
                    if (r.code() != Errc::busy) c->dead = true;
                    break;
                }
                c->rx.insert(c->rx.end(), tmp, tmp + *r);
                busy = true;
            }
            while (c->rx.size() >= 8) {
                stcp::CommonHeader ch;
                std::memcpy(&ch, c->rx.data(), 8);
                if (c->rx.size() < ch.plen) break;
                std::vector<uint8_t> one(c->rx.begin(), c->rx.begin() + ch.plen);
                c->rx.erase(c->rx.begin(), c->rx.begin() + ch.plen);
                pdu(*c, one.data(), ch);
                busy = true;
            }
        }
        return busy;
    }

    std::string last_hostnqn, last_subnqn;
    uint32_t last_kato = 0;
};

struct Io {
    int calls = 0;
    Completion cpl;
    static void cb(void* ctx, const Completion& c) {
        auto* io = static_cast<Io*>(ctx);
        ++io->calls;
        io->cpl = c;
    }
};

class NvmeTcpTest : public runtime::testing::SimFixture {
protected:
    void TearDown() override {
        if (qp) on(threads[1], [&] { ctrl->free_io_qpair(std::move(qp)); });
        if (ctrl) {
            run_until_idle_ms(10);
            auto r = run(threads[0], ctrl->detach());
            EXPECT_TRUE(r.ok()) << r.error().message();
            on(threads[0], [&] { ctrl.reset(); });
        }
        if (poller) on(threads[2], [&] { threads[2]->unregister_poller(poller); });
        SimFixture::TearDown();
    }

    void run_until_idle_ms(uint64_t ms) {
        const uint64_t until = sim->now_ns() + ms * 1'000'000;
        (void)poll_until([&] { return sim->now_ns() >= until; }, (ms + 1) * 1'000'000);
    }

    template <class T>
    T run(runtime::Thread* t, runtime::Task<T> task, uint64_t timeout_ns = 120 * runtime::kNsPerSec) {
        std::optional<T> out;
        runtime::spawn(*t, std::move(task), [&](T v) { out.emplace(std::move(v)); });
        EXPECT_TRUE(poll_until([&] { return out.has_value(); }, timeout_ns)) << "task never ended";
        if (!out) std::abort();
        return std::move(*out);
    }

    ControllerOptions options() {
        ControllerOptions o;
        o.connect_socket = [this](const sock::Endpoint& ep) {
            EXPECT_EQ(ep.address, "10.0.0.2");
            EXPECT_EQ(ep.port, 4420);
            return target.connect();
        };
        return o;
    }

    TransportId trid() {
        auto t = parse_transport_id(
            "trtype:TCP adrfam:IPv4 traddr:10.0.0.2 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1");
        EXPECT_TRUE(t.ok());
        return *t;
    }

    void start(ControllerOptions o) {
        start_sim(11, 3);
        on(threads[2], [&] {
            poller = threads[2]->register_poller(
                [](void* p) {
                    return static_cast<FakeTarget*>(p)->poll() ? runtime::PollStatus::busy
                                                               : runtime::PollStatus::idle;
                },
                &target, "fake_target");
        });
        auto r = run(threads[0], Controller::connect(trid(), std::move(o)));
        ASSERT_TRUE(r.ok()) << r.error().message();
        ctrl = std::move(*r);
        on(threads[0], [&] {
            auto q = ctrl->alloc_io_qpair(*threads[1], {});
            ASSERT_TRUE(q.ok()) << q.error().message();
            qp = std::move(*q);
        });
        ASSERT_TRUE(poll_until([&] { return qp->connected(); })) << "I/O qpair never connected";
    }

    // Write then read back `blocks` at `lba` with a pattern; returns the read's completion.
    void write_read(uint64_t lba, uint32_t blocks, uint8_t seed) {
        const Namespace* ns = ctrl->find_namespace(1);
        ASSERT_NE(ns, nullptr);
        std::vector<uint8_t> out(size_t{blocks} * kBlock), in(out.size(), 0);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(seed + i * 7);
        Io w, r;
        on(threads[1], [&] { ASSERT_TRUE(qp->write(*ns, out.data(), lba, blocks, Io::cb, &w).ok()); });
        ASSERT_TRUE(poll_until([&] { return w.calls > 0; }));
        ASSERT_TRUE(w.cpl.ok()) << w.cpl.name().view();
        on(threads[1], [&] { ASSERT_TRUE(qp->read(*ns, in.data(), lba, blocks, Io::cb, &r).ok()); });
        ASSERT_TRUE(poll_until([&] { return r.calls > 0; }));
        ASSERT_TRUE(r.cpl.ok()) << r.cpl.name().view();
        EXPECT_EQ(in, out);
        EXPECT_EQ(w.calls, 1);
        EXPECT_EQ(r.calls, 1);
    }

    FakeTarget target;
    runtime::Poller* poller = nullptr;
    std::unique_ptr<Controller> ctrl;
    std::unique_ptr<QPair> qp;
};

TEST_F(NvmeTcpTest, ConnectsIdentifiesAndMovesData) {
    start(options());
    EXPECT_EQ(ctrl->state(), ControllerState::ready);
    EXPECT_TRUE(ctrl->is_fabrics());
    EXPECT_EQ(ctrl->cntlid(), 1);
    EXPECT_EQ(target.last_subnqn, "nqn.2016-06.io.spdk:cnode1");
    EXPECT_TRUE(target.last_hostnqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:"));
    EXPECT_EQ(target.last_kato, 10'000u);
    EXPECT_EQ(ctrl->version(), 0x10300u);
    ASSERT_EQ(ctrl->namespaces().size(), 1u);
    EXPECT_EQ(ctrl->namespaces()[0]->num_blocks, kBlocks);
    EXPECT_EQ(ctrl->namespaces()[0]->uuid[0], 0xA0);
    EXPECT_EQ(ctrl->io_queues_granted(), 4u);
    write_read(0, 1, 1);      // in-capsule write
    write_read(8, 8, 2);      // 4 KiB: still in-capsule
    write_read(100, 64, 3);   // 32 KiB: R2T, eight H2CData PDUs of MAXH2CDATA
    EXPECT_EQ(qp->stats().bad_completions, 0u);
}

TEST_F(NvmeTcpTest, DigestsAndSplitSegments) {
    target.max_chunk = 7;  // every PDU arrives in 7-byte pieces
    target.read_with_success = false;
    auto o = options();
    o.header_digest = true;
    o.data_digest = true;
    o.hostnqn = "nqn.2024-01.io.example:host1";
    start(std::move(o));
    EXPECT_EQ(target.last_hostnqn, "nqn.2024-01.io.example:host1");
    write_read(0, 1, 9);
    write_read(200, 40, 4);
    EXPECT_EQ(qp->stats().bad_completions, 0u);
}

// 32 reads answered in one burst (two C2HData PDUs each, with SUCCESS or followed by a
// CapsuleResp): the host takes many PDUs per socket read instead of a read or more per PDU.
// Cut into 1000-byte pieces, the same burst splits headers and payloads across reads anywhere
// (a payload then goes straight into the command's buffer) and comes out the same.
struct BurstCase {
    size_t max_chunk;
    bool read_with_success;
};

class NvmeTcpBurstTest : public NvmeTcpTest, public ::testing::WithParamInterface<BurstCase> {};

TEST_P(NvmeTcpBurstTest, ManyPdusPerReadAndPdusSplitAcrossReads) {
    target.max_chunk = GetParam().max_chunk;
    target.read_with_success = GetParam().read_with_success;
    start(options());
    const Namespace* ns = ctrl->find_namespace(1);
    ASSERT_NE(ns, nullptr);
    constexpr int kReads = 32;
    constexpr uint32_t kBlocksPerRead = 2;
    for (size_t i = 0; i < target.disk.size(); ++i)
        target.disk[i] = static_cast<uint8_t>(i * 13 + 5);
    std::vector<std::vector<uint8_t>> bufs(kReads, std::vector<uint8_t>(kBlocksPerRead * kBlock));
    std::vector<Io> ios(kReads);
    target.hold_io = true;
    on(threads[1], [&] {
        for (int i = 0; i < kReads; ++i)
            ASSERT_TRUE(qp->read(*ns, bufs[i].data(), uint64_t(i) * 7, kBlocksPerRead, Io::cb,
                                 &ios[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] { return target.held.size() == kReads; }));
    Pipe& pipe = *target.conns.back()->pipe;
    const uint64_t reads_before = pipe.reads[0];
    on(threads[2], [&] { target.release_held(); });
    ASSERT_TRUE(poll_until([&] {
        return std::all_of(ios.begin(), ios.end(), [](const Io& io) { return io.calls > 0; });
    }));
    const uint64_t reads = pipe.reads[0] - reads_before;
    const size_t per_io =  // two C2HData PDUs, and a CapsuleResp without SUCCESS
        2 * (24 + kBlocksPerRead * kBlock / 2) + (GetParam().read_with_success ? 0 : 24);
    const size_t burst = kReads * per_io;
    if (GetParam().max_chunk == 0)
        EXPECT_LE(reads, 2u) << "one read per PDU or worse";
    else
        EXPECT_LE(reads, burst / GetParam().max_chunk + 2) << "more reads than pieces";
    for (int i = 0; i < kReads; ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(ios[i].calls, 1);
        EXPECT_TRUE(ios[i].cpl.ok()) << ios[i].cpl.name().view();
        const uint8_t* want = target.disk.data() + uint64_t(i) * 7 * kBlock;
        EXPECT_TRUE(std::equal(bufs[i].begin(), bufs[i].end(), want));
    }
    EXPECT_EQ(qp->stats().bad_completions, 0u);
    target.hold_io = false;
    write_read(300, 3, 77);  // and the stream is still in step
}

INSTANTIATE_TEST_SUITE_P(Burst, NvmeTcpBurstTest,
                         ::testing::Values(BurstCase{0, true}, BurstCase{0, false},
                                           BurstCase{1000, true}, BurstCase{1000, false}),
                         [](const ::testing::TestParamInfo<BurstCase>& i) {
                             return std::string(i.param.max_chunk ? "split" : "whole") +
                                    (i.param.read_with_success ? "_success" : "_resp");
                         });

// Hostile PDUs answer a read: the read ends once with kStatusResetAborted, the controller
// reconnects and the next read works.
struct Hostile {
    const char* name;
    std::function<std::vector<uint8_t>(uint16_t cid)> bytes;
};

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    return {b, b + n};
}

std::vector<Hostile> hostile_cases() {
    auto c2h = [](uint16_t cid, uint32_t off, uint32_t len, uint8_t flags) {
        stcp::DataPdu d{};
        d.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::c2h_data);
        d.ch.flags = flags;
        d.ch.hlen = 24;
        d.ch.pdo = 24;
        d.ch.plen = 24 + len;
        d.cccid = cid;
        d.datao = off;
        d.datal = len;
        auto v = bytes_of(&d, 24);
        v.resize(24 + len, 0xEE);
        return v;
    };
    return {
        {"c2h_bad_cid", [=](uint16_t cid) { return c2h(static_cast<uint16_t>(cid + 1000), 0, 512, 0x0C); }},
        {"c2h_beyond_buffer", [=](uint16_t cid) { return c2h(cid, 512, 512, 0x0C); }},
        {"c2h_offset_gap", [=](uint16_t cid) { return c2h(cid, 4, 100, 0); }},
        {"c2h_success_without_last", [=](uint16_t cid) { return c2h(cid, 0, 512, stcp::flags::success); }},
        {"c2h_plen_lies", [=](uint16_t cid) {
             auto v = c2h(cid, 0, 512, 0x0C);
             uint32_t plen = 24 + 100;
             std::memcpy(v.data() + 4, &plen, 4);
             return v;
         }},
        {"r2t_for_read", [](uint16_t cid) {
             stcp::R2T r{};
             r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::r2t);
             r.ch.hlen = 24;
             r.ch.plen = 24;
             r.cccid = cid;
             r.r2tl = 512;
             return bytes_of(&r, 24);
         }},
        {"resp_unknown_cid", [](uint16_t cid) {
             stcp::CapsuleResp r{};
             r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_resp);
             r.ch.hlen = 24;
             r.ch.plen = 24;
             r.cqe.cid = static_cast<uint16_t>(cid ^ 0x4000);
             return bytes_of(&r, 24);
         }},
        {"unknown_type", [](uint16_t) {
             std::vector<uint8_t> v(24, 0);
             v[0] = 0x0F;
             v[2] = 24;
             v[4] = 24;
             return v;
         }},
        {"host_only_type", [](uint16_t) {
             std::vector<uint8_t> v(72, 0);
             v[0] = static_cast<uint8_t>(stcp::PduType::capsule_cmd);
             v[2] = 72;
             v[4] = 72;
             return v;
         }},
        {"bad_hlen", [](uint16_t cid) {
             stcp::CapsuleResp r{};
             r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_resp);
             r.ch.hlen = 200;
             r.ch.plen = 24;
             r.cqe.cid = cid;
             return bytes_of(&r, 24);
         }},
        {"second_icresp", [](uint16_t) {
             stcp::IcResp r{};
             r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::ic_resp);
             r.ch.hlen = 128;
             r.ch.plen = 128;
             r.maxh2cdata = 4096;
             return bytes_of(&r, 128);
         }},
        {"digest_flag_not_negotiated", [](uint16_t cid) {
             stcp::CapsuleResp r{};
             r.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_resp);
             r.ch.flags = stcp::flags::hdgstf;
             r.ch.hlen = 24;
             r.ch.plen = 28;
             r.cqe.cid = cid;
             auto v = bytes_of(&r, 24);
             v.resize(28, 0);
             return v;
         }},
        {"term_req", [](uint16_t) {
             stcp::TermReq t{};
             t.ch.pdu_type = static_cast<uint8_t>(stcp::PduType::c2h_term_req);
             t.ch.hlen = 24;
             t.ch.plen = 24;
             t.fes = 1;
             return bytes_of(&t, 24);
         }},
    };
}

TEST_F(NvmeTcpTest, HostilePdusFailTheConnectionOnceAndItRecovers) {
    auto o = options();
    o.ctrlr_loss_timeout_sec = 10;
    o.reconnect_delay_sec = 1;
    start(std::move(o));
    const Namespace* ns = ctrl->find_namespace(1);
    ASSERT_NE(ns, nullptr);
    uint64_t resets = 0;
    for (const Hostile& h : hostile_cases()) {
        SCOPED_TRACE(h.name);
        auto bytes = h.bytes;
        target.hostile_read = [bytes](uint16_t cid, const spec::Sqe&) { return bytes(cid); };
        std::vector<uint8_t> buf(kBlock);
        Io r;
        on(threads[1], [&] { ASSERT_TRUE(qp->read(*ns, buf.data(), 0, 1, Io::cb, &r).ok()); });
        ASSERT_TRUE(poll_until([&] { return r.calls > 0; }));
        EXPECT_EQ(r.cpl.status, kStatusResetAborted) << r.cpl.name().view();
        ++resets;
        ASSERT_TRUE(poll_until([&] {
            return ctrl->stats().resets == resets && ctrl->state() == ControllerState::ready &&
                   qp->connected();
        }, 30 * runtime::kNsPerSec)) << "no reconnect";
        EXPECT_EQ(r.calls, 1);
        write_read(10, 2, static_cast<uint8_t>(resets));
    }
    EXPECT_GE(ctrl->stats().bad_completions, 10u);
}

TEST_F(NvmeTcpTest, ConnectionLossCompletesEachIoOnceAndNewIoWaitsForTheReconnect) {
    auto o = options();
    o.ctrlr_loss_timeout_sec = -1;
    o.reconnect_delay_sec = 1;
    start(std::move(o));
    const Namespace* ns = ctrl->find_namespace(1);
    target.hold_io = true;
    constexpr int kIos = 16;
    std::vector<Io> ios(kIos);
    std::vector<uint8_t> buf(kIos * kBlock);
    on(threads[1], [&] {
        for (int i = 0; i < kIos; ++i)
            ASSERT_TRUE(qp->read(*ns, buf.data() + i * kBlock, i, 1, Io::cb, &ios[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] { return target.held.size() == kIos; }));
    target.refuse_connect = true;
    target.reset_all();
    ASSERT_TRUE(poll_until([&] {
        return std::all_of(ios.begin(), ios.end(), [](const Io& io) { return io.calls > 0; });
    }));
    for (const Io& io : ios) {
        EXPECT_EQ(io.calls, 1);
        EXPECT_EQ(io.cpl.status, kStatusResetAborted);
    }
    // Submitted while the target is down: waits.
    target.hold_io = false;
    Io late;
    on(threads[1], [&] { ASSERT_TRUE(qp->read(*ns, buf.data(), 0, 1, Io::cb, &late).ok()); });
    run_until_idle_ms(3500);
    EXPECT_EQ(late.calls, 0);
    EXPECT_EQ(ctrl->state(), ControllerState::resetting);
    target.refuse_connect = false;
    ASSERT_TRUE(poll_until([&] { return late.calls > 0; }, 30 * runtime::kNsPerSec));
    EXPECT_TRUE(late.cpl.ok()) << late.cpl.name().view();
    EXPECT_EQ(late.calls, 1);
    ASSERT_TRUE(poll_until([&] { return ctrl->state() == ControllerState::ready; }));
    for (const Io& io : ios) EXPECT_EQ(io.calls, 1);
    write_read(1, 1, 5);
}

TEST_F(NvmeTcpTest, ControllerFailsAfterCtrlrLossTimeout) {
    auto o = options();
    o.ctrlr_loss_timeout_sec = 3;
    o.reconnect_delay_sec = 1;
    o.fast_io_fail_timeout_sec = 2;
    start(std::move(o));
    const Namespace* ns = ctrl->find_namespace(1);
    bool failed = false;
    on(threads[0], [&] { ctrl->on_failure([&](Controller&, Errc) { failed = true; }); });
    target.refuse_connect = true;
    target.reset_all();
    std::vector<uint8_t> buf(kBlock);
    Io waiting;
    run_until_idle_ms(100);
    on(threads[1], [&] {
        EXPECT_FALSE(qp->connected());
        EXPECT_EQ(qp->submit_state(), Errc::ok) << "reconnecting: submissions wait";
        ASSERT_TRUE(qp->read(*ns, buf.data(), 0, 1, Io::cb, &waiting).ok());
    });
    // fast_io_fail_timeout_sec: the waiting read fails before the controller does.
    ASSERT_TRUE(poll_until([&] { return waiting.calls > 0; }, 10 * runtime::kNsPerSec));
    EXPECT_EQ(waiting.cpl.status, kStatusResetAborted);
    EXPECT_FALSE(failed);
    on(threads[1], [&] { EXPECT_EQ(qp->submit_state(), Errc::io_error) << "past fast_io_fail"; });
    ASSERT_TRUE(poll_until([&] { return failed; }, 20 * runtime::kNsPerSec));
    EXPECT_EQ(ctrl->state(), ControllerState::failed);
    Io after;
    on(threads[1], [&] {
        EXPECT_EQ(qp->submit_state(), Errc::device_removed);
        EXPECT_EQ(qp->read(*ns, buf.data(), 0, 1, Io::cb, &after).code(), Errc::device_removed);
    });
    EXPECT_EQ(waiting.calls, 1);
}

TEST_F(NvmeTcpTest, KeepAliveEveryHalfKatoAndItsLossReconnects) {
    auto o = options();
    o.keep_alive_timeout_ms = 2000;
    o.ctrlr_loss_timeout_sec = -1;
    o.reconnect_delay_sec = 1;
    start(std::move(o));
    EXPECT_EQ(target.last_kato, 2000u);
    const uint32_t before = target.keep_alives;
    run_until_idle_ms(5000);
    EXPECT_GE(target.keep_alives - before, 4u);
    target.answer_keep_alive = false;
    ASSERT_TRUE(poll_until([&] { return ctrl->stats().resets > 0; }, 10 * runtime::kNsPerSec));
    target.answer_keep_alive = true;
    ASSERT_TRUE(poll_until([&] { return ctrl->state() == ControllerState::ready && qp->connected(); },
                           10 * runtime::kNsPerSec));
    write_read(3, 1, 6);
}

TEST_F(NvmeTcpTest, DiscoveryReturnsTheLogPageEntries) {
    start_sim(5, 3);
    on(threads[2], [&] {
        poller = threads[2]->register_poller(
            [](void* p) {
                return static_cast<FakeTarget*>(p)->poll() ? runtime::PollStatus::busy
                                                           : runtime::PollStatus::idle;
            },
            &target, "fake_target");
    });
    for (int i = 0; i < 3; ++i) {
        spec::DiscoveryLogEntry e{};
        e.trtype = 3;
        e.adrfam = 1;
        e.subtype = 2;
        e.portid = static_cast<uint16_t>(i);
        e.cntlid = 0xFFFF;
        spec::set_padded(e.trsvcid, "4420", ' ');
        spec::set_padded(e.traddr, "10.0.0.2", ' ');
        spec::set_padded(e.subnqn, "nqn.2016-06.io.spdk:cnode" + std::to_string(i), '\0');
        target.discovery.push_back(e);
    }
    auto t = parse_transport_id("trtype:TCP adrfam:IPv4 traddr:10.0.0.2 trsvcid:4420");
    ASSERT_TRUE(t.ok());
    auto r = run(threads[0], Controller::discover(*t, options()));
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ(target.last_subnqn, "nqn.2014-08.org.nvmexpress.discovery");
    EXPECT_EQ((*r)[2].trid.subnqn, "nqn.2016-06.io.spdk:cnode2");
    EXPECT_EQ((*r)[2].trid.traddr, "10.0.0.2");
    EXPECT_EQ((*r)[2].trid.trsvcid, "4420");
    EXPECT_EQ((*r)[2].trid.trtype, TrType::tcp);
    EXPECT_EQ((*r)[2].trid.adrfam, AdrFam::ipv4);
    EXPECT_EQ((*r)[1].portid, 1);
}

TEST_F(NvmeTcpTest, ConnectErrorsAreReported) {
    start_sim(3, 3);
    auto o = options();
    target.refuse_connect = true;
    auto r = run(threads[0], Controller::connect(trid(), o));
    ASSERT_FALSE(r.ok());
    auto t = trid();
    t.trtype = TrType::rdma;
    auto r2 = run(threads[0], Controller::connect(t, o));
    EXPECT_EQ(r2.code(), Errc::not_supported);
    t = trid();
    t.subnqn.clear();
    EXPECT_EQ(run(threads[0], Controller::connect(t, o)).code(), Errc::invalid_argument);
}

// The receive path's header check alone (the fuzz target's entry point).
TEST(NvmeTcpHeaderTest, ChecksTypeLengthsAndDigestFlags) {
    stcp::CommonHeader ch{};
    ch.pdu_type = static_cast<uint8_t>(stcp::PduType::capsule_resp);
    ch.hlen = 24;
    ch.plen = 24;
    EXPECT_TRUE(check_c2h_header(ch, false, false, true).ok());
    EXPECT_FALSE(check_c2h_header(ch, false, false, false).ok());  // before ICResp
    EXPECT_FALSE(check_c2h_header(ch, true, false, true).ok());    // digest negotiated, absent
    ch.plen = 25;
    EXPECT_FALSE(check_c2h_header(ch, false, false, true).ok());
    ch.plen = 24;
    ch.hlen = 72;
    EXPECT_FALSE(check_c2h_header(ch, false, false, true).ok());
    ch.pdu_type = static_cast<uint8_t>(stcp::PduType::c2h_data);
    ch.hlen = 24;
    ch.pdo = 24;
    ch.plen = 24;  // no data
    EXPECT_FALSE(check_c2h_header(ch, false, false, true).ok());
    ch.plen = 536;
    EXPECT_TRUE(check_c2h_header(ch, false, false, true).ok());
    ch.pdo = 8;
    EXPECT_FALSE(check_c2h_header(ch, false, false, true).ok());
    ch.pdu_type = 0x08;
    EXPECT_EQ(check_c2h_header(ch, false, false, true).code(), Errc::protocol_error);
}

TEST(NvmeTcpHeaderTest, SliceIov) {
    uint8_t a[10], b[20];
    iovec iov[2] = {{a, 10}, {b, 20}};
    iovec out[4];
    ASSERT_EQ(slice_iov(iov, 2, 5, 10, out, 4), 2);
    EXPECT_EQ(out[0].iov_base, a + 5);
    EXPECT_EQ(out[0].iov_len, 5u);
    EXPECT_EQ(out[1].iov_base, b);
    EXPECT_EQ(out[1].iov_len, 5u);
    EXPECT_EQ(slice_iov(iov, 2, 25, 10, out, 4), -1);  // past the end
    EXPECT_EQ(slice_iov(iov, 2, 0, 30, out, 1), -1);   // too many pieces
}

}  // namespace
}  // namespace strata::nvme::testing
