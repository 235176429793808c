// Fuzz target: the NVMe/TCP initiator's receive path (core/nvme/src/tcp_qpair.cpp: the header
// check check_c2h_header, tcp_handle_header, and tcp_rx_parse over the receive buffer) over
// arbitrary target-to-host bytes (ICResp, CapsuleResp, C2HData, R2T, C2HTermReq, garbage).
// The initiator reads from its socket into a receive buffer (or, for a payload, straight into
// the command's buffer), so the smallest unit that consumes bytes is a
// TCP QPairImpl with a socket double (ControllerOptions::connect_socket) that serves the
// fuzzer's bytes in chunks and swallows what the host sends.
//
// Setup per input: a TCP qpair connects (ICReq goes out); with flag bit 0 the harness answers
// with a valid ICResp and a successful CapsuleResp for the Fabrics Connect (so the input
// starts on a live connection), then submits four commands so data/R2T lookups are reached:
//   cid 0: Read 8 KiB into 3 iovecs (C2HData target)       cid 2: Write 512 B (in-capsule,
//   cid 1: Write 16 KiB (R2T/H2CData, over in-capsule max)         unless in-capsule is off)
//   cid 3: Flush (no data)
// Without bit 0 the commands are submitted before the ICResp (cids 0..3 wait, the Connect gets
// cid 4) and the input must bring the ICResp and Connect response itself.
// Invariants: no crash; every command (Connect included) completes exactly once, after the
// connection is closed at the latest; C2H data lands only inside the read buffer (guards).
//
// Input: byte 0 = flags: bit 0 valid ICResp+Connect prefix, bit 1 ask for header digests,
// bit 2 data digests, bit 3 in-capsule data off, bits 4..5 CPDA of the prefix's ICResp
// (0, 1, 4, 31), bit 6 end of stream after the input (else it just stops), bit 7 socket
// accepts at most 100 bytes per writev (partial sends); byte 1 = chunk size of the feed (0: all at once;
// the qpair runs after each chunk); the rest is the byte stream.
// Seeds: fuzz/corpus/gen_nvmf_tcp.py (see fuzz/corpus/README.md).
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include <strata/base/crc.h>
#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/nvme/completion.h>
#include <strata/nvme/spec/commands.h>
#include <strata/nvme/spec/tcp.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sock.h>

#include <strata/nvme/testing/qpair_access.h>

#include "fuzz_check.h"
#include "fuzz_target.h"

namespace {

using namespace strata;
namespace spec = nvme::spec;
namespace stcp = nvme::spec::tcp;

// The target's side of the connection, as the qpair sees it.
struct Wire {
    std::deque<uint8_t> rx;  // bytes for the host to read
    std::vector<uint8_t> tx;  // what the host sent
    bool eof = false;
    bool closed = false;
    size_t max_write = SIZE_MAX;
};

class FakeSocket final : public sock::Socket {
public:
    explicit FakeSocket(Wire& w) : w_(w) {}
    Result<size_t> readv(const iovec* iov, int iovcnt) noexcept override {
        CHECK(!w_.closed);
        if (w_.rx.empty()) {
            if (w_.eof) return Error(Errc::shutdown, "end of stream");
            return Error(Errc::busy, "nothing to read");
        }
        size_t n = 0;
        for (int i = 0; i < iovcnt && !w_.rx.empty(); ++i) {
            auto* p = static_cast<uint8_t*>(iov[i].iov_base);
            const size_t k = std::min(iov[i].iov_len, w_.rx.size());
            std::copy_n(w_.rx.begin(), k, p);
            w_.rx.erase(w_.rx.begin(), w_.rx.begin() + static_cast<ptrdiff_t>(k));
            n += k;
        }
        return n;
    }
    Result<size_t> writev(const iovec* iov, int iovcnt) noexcept override {
        CHECK(!w_.closed);
        size_t n = 0;
        for (int i = 0; i < iovcnt && n < w_.max_write; ++i) {
            const size_t k = std::min(iov[i].iov_len, w_.max_write - n);
            const auto* p = static_cast<const uint8_t*>(iov[i].iov_base);
            w_.tx.insert(w_.tx.end(), p, p + k);
            n += k;
        }
        if (n == 0) return Error(Errc::busy, "window full");
        return n;
    }
    void close() noexcept override { w_.closed = true; }
    void abort() noexcept override { w_.closed = true; }
    bool connected() const noexcept override { return !w_.closed; }
    const sock::Endpoint& local() const noexcept override { return local_; }
    const sock::Endpoint& peer() const noexcept override { return peer_; }
    const char* impl_name() const noexcept override { return "fuzz"; }

private:
    Wire& w_;
    sock::Endpoint local_{"10.0.0.2", 50000};
    sock::Endpoint peer_{"10.0.0.1", 4420};
};

struct Counter {
    int calls = 0;
    uint16_t status = 0;
    static void done(void* ctx, const nvme::Completion& cpl) {
        auto* c = static_cast<Counter*>(ctx);
        CHECK(++c->calls == 1);  // completed twice
        c->status = cpl.status.raw;
    }
};

constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0x3C;

template <class T>
void push(Wire& w, const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    w.rx.insert(w.rx.end(), p, p + sizeof(T));
}

void run_input(runtime::Thread& thread, const uint8_t* data, size_t size) {
    const uint8_t flags = data[0];
    const size_t chunk = data[1] == 0 ? SIZE_MAX : size_t{data[1]};
    Wire wire;
    if (flags & 0x80) wire.max_write = 100;

    nvme::ControllerImpl ctrl;
    ctrl.fabrics = true;
    ctrl.name = "fuzz";
    ctrl.admin_thread = &thread;
    ctrl.trid.traddr = "10.0.0.1";
    ctrl.trid.trsvcid = "4420";
    ctrl.trid.subnqn = "nqn.2016-06.io.strata:fuzz";
    ctrl.hostnqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    ctrl.options.connect_timeout_ms = 1'000'000;
    ctrl.options.connect_socket = [&wire](const sock::Endpoint&)
        -> Result<std::unique_ptr<sock::Socket>> { return std::unique_ptr<sock::Socket>(new FakeSocket(wire)); };

    constexpr uint32_t kEntries = 16;
    auto qp = std::make_shared<nvme::QPairImpl>(ctrl, thread, 1, kEntries, kEntries - 1, 0, 0);
    qp->tcp = std::make_unique<nvme::TcpConn>();
    qp->tcp->want_hdgst = flags & 2;
    qp->tcp->want_ddgst = flags & 4;
    qp->tcp->in_capsule_max = (flags & 8) ? 0 : 8192;
    CHECK(qp->allocate().ok());

    int connect_calls = 0;
    bool connect_ok = false;
    qp->tcp_start_connect([&](Status s) {
        ++connect_calls;
        connect_ok = s.ok();
    });
    CHECK(wire.tx.size() == stcp::ic_pdu_size);  // the ICReq

    // The commands and their buffers (guards around the read buffer's iovecs).
    std::vector<uint8_t> rbuf(8192 + 4 * kGuard, kGuardByte);
    iovec riov[3] = {{rbuf.data() + kGuard, 1000},
                     {rbuf.data() + 2 * kGuard + 1000, 4096},
                     {rbuf.data() + 3 * kGuard + 5096, 8192 - 5096}};
    std::vector<uint8_t> wbuf(16384, 0x5A);
    iovec wiov{wbuf.data(), wbuf.size()};
    Counter counters[4];
    bool submitted[4] = {};
    auto submit_all = [&] {
        spec::Sqe rd = spec::make_read(0, 1, 0, 16);
        spec::Sqe wr = spec::make_write(0, 1, 0, 32);
        spec::Sqe wr_small = spec::make_write(0, 1, 64, 1);
        spec::Sqe fl = spec::make_flush(0, 1);
        submitted[0] = qp->submit(rd, riov, 3, 8192, &Counter::done, &counters[0]).ok();
        submitted[1] = qp->submit(wr, &wiov, 1, 16384, &Counter::done, &counters[1]).ok();
        submitted[2] = qp->submit(wr_small, &wiov, 1, 512, &Counter::done, &counters[2]).ok();
        submitted[3] = qp->submit(fl, nullptr, 0, 0, &Counter::done, &counters[3]).ok();
    };

    if (flags & 1) {
        static const uint8_t kCpda[4] = {0, 1, 4, 31};
        stcp::IcResp ic{};
        ic.ch = {static_cast<uint8_t>(stcp::PduType::ic_resp), 0, stcp::ic_pdu_size, 0,
                 stcp::ic_pdu_size};
        ic.pfv = stcp::pfv_1_0;
        ic.cpda = kCpda[(flags >> 4) & 3];
        ic.dgst = static_cast<uint8_t>(((flags & 2) ? stcp::dgst::hdgst_enable : 0) |
                                       ((flags & 4) ? stcp::dgst::ddgst_enable : 0));
        ic.maxh2cdata = 8192;
        push(wire, ic);
        qp->process(0);
        // The Connect capsule follows the ICReq; answer it.
        CHECK(wire.tx.size() >= stcp::ic_pdu_size + sizeof(stcp::CapsuleCmd));
        stcp::CapsuleCmd cc;
        std::memcpy(&cc, wire.tx.data() + stcp::ic_pdu_size, sizeof cc);
        stcp::CapsuleResp cr{};
        const bool hd = flags & 2;
        cr.ch = {static_cast<uint8_t>(stcp::PduType::capsule_resp),
                 static_cast<uint8_t>(hd ? stcp::flags::hdgstf : 0), 24, 0,
                 static_cast<uint32_t>(24 + (hd ? 4 : 0))};
        cr.cqe.cid = cc.sqe.cid;
        cr.cqe.dw0 = 1;  // cntlid
        push(wire, cr);
        if (hd) {
            const uint32_t crc = crc32c(0, &cr, sizeof cr);
            push(wire, crc);
        }
        qp->process(0);
        CHECK(connect_calls == 1 && connect_ok);
        submit_all();
        qp->process(0);
    } else {
        submit_all();
    }

    // The fuzzed stream, chunk by chunk; the qpair runs after each.
    for (size_t off = 2; off < size;) {
        const size_t n = std::min(chunk, size - off);
        wire.rx.insert(wire.rx.end(), data + off, data + off + n);
        off += n;
        for (int i = 0; i < 4 && !wire.rx.empty() && qp->tcp->socket; ++i) qp->process(0);
    }
    if (flags & 0x40) wire.eof = true;
    for (int i = 0; i < 4 && qp->tcp->socket; ++i) qp->process(0);

    // Tear down like a controller reset, then for good.
    qp->tcp_close(nvme::kStatusResetAborted);
    qp->fail(nvme::kStatusControllerGone);
    *ctrl.alive = false;  // messages the connection loss posted find no controller
    CHECK(connect_calls == 1);
    for (int i = 0; i < 4; ++i) CHECK(counters[i].calls == (submitted[i] ? 1 : 0));
    CHECK(qp->outstanding_count() == 0);
    if (std::getenv("STRATA_FUZZ_TRACE"))  // how far a seed got (see fuzz/corpus/README.md)
        std::fprintf(stderr, "connect %s, protocol errors %llu, status %#x %#x %#x %#x\n",
                     connect_ok ? "ok" : "failed",
                     static_cast<unsigned long long>(qp->tcp->protocol_errors), counters[0].status,
                     counters[1].status, counters[2].status, counters[3].status);
    // The read buffer's guards.
    for (size_t g : {size_t{0}, kGuard + 1000, 2 * kGuard + 5096, 3 * kGuard + 8192})
        for (size_t k = 0; k < kGuard; ++k) CHECK(rbuf[g + k] == kGuardByte);
}

// The simulator and the initiator's Thread (one per fuzzer process, one per strata.fuzz.Target:
// fuzz/fuzz_target.h).
struct State {
    State() {
        fuzz::quiet_logs();
        if (!fuzz::env_ready()) std::abort();
        sim = std::make_unique<runtime::SimScheduler>(1, 1);
        thread = sim->create_thread("fuzz");
    }
    std::unique_ptr<runtime::SimScheduler> sim;
    runtime::Thread* thread = nullptr;
};

int run_input(State& state, const uint8_t* data, size_t size) {
    runtime::SimScheduler* sim = state.sim.get();
    runtime::Thread* thread = state.thread;
    if (size < 2) return 0;
    bool done = false;
    CHECK(thread->post([&] {
                    run_input(*thread, data, size);
                    done = true;
                }).ok());
    sim->run_until([&] { return done; });
    CHECK(done);
    sim->run_until_idle();  // the connection-lost messages (they find alive == false)
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(State, run_input)
