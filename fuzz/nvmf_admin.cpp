// Fuzz target: Fabrics Connect (with arbitrary ConnectData), Property Get/Set and admin commands
// (arbitrary SQEs and data buffers) through the NVMe-oF core's exec(), from a fake transport's
// qpairs, against a subsystem with a malloc namespace. The App runs on the simulator and is set
// up once per process; each input gets a fresh admin qpair (and an I/O qpair) on their own
// Thread, closed at the end.
// Invariants: no crash; every exec() completes exactly once, never inside exec(), with the
// command's CID; controller-to-host data stays inside the request's buffer (guard bytes around
// every iovec); after the qpairs close, the core releases them (released()) and the subsystem
// has no controller left.
//
// Input: byte 0 = flags: bit 0 send a valid admin Connect first (else the records below start
// from an unconnected qpair: a raw Connect with fuzzed ConnectData is the first record of
// most seeds), bit 1 enable the controller first (Property Set CC.EN=1), bit 2 connect the I/O
// qpair to the same controller first, bit 3 valid Connect with KATO (keep-alive armed), bit 4
// the transport closes the admin qpair right after handing it the valid Connect (the peer went
// away while the Connect was in flight; bits 1, 2 are then moot).
// Then records: 1 control byte (bits 0..2 data length: 0, 8, 64, 512, 1024, 4096, 8192, 1024
// + the next byte * 4; bits 3..4 iovecs - 1; bit 5 the I/O qpair; bit 6 data from the input
// (host-to-controller) else zeros; bit 7 wait for the completion before the next record),
// 64 bytes of SQE, then the data bytes if bit 6 (as many as the length, or what is left).
// Seeds: fuzz/corpus/gen_nvmf_tcp.py (see fuzz/corpus/README.md).
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/transport.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_check.h"
#include "fuzz_target.h"
#include "nvmf_fuzz_app.h"

namespace {

using namespace strata;
namespace spec = nvme::spec;

constexpr const char* kNqn = "nqn.2016-06.io.strata:fuzz";
constexpr const char* kHostNqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
constexpr uint64_t kStepNs = 50'000'000;  // virtual time a command may take

class FakeTransport final : public nvmf::Transport {
public:
    std::string_view name() const noexcept override { return "FUZZ"; }
    spec::TransportType trtype() const noexcept override { return spec::TransportType::tcp; }
    const nvmf::TransportLimits& limits() const noexcept override { return limits_; }
    Status listen(const nvmf::TransportAddress&) override { return {}; }
    void stop_listening(const nvmf::TransportAddress&) override {}
    std::string options_json() const override { return R"({"trtype":"FUZZ"})"; }

private:
    nvmf::TransportLimits limits_{.max_queue_depth = 32, .max_qpairs_per_ctrlr = 4,
                                  .in_capsule_data_size = 8192, .max_io_size = 131072,
                                  .io_unit_size = 131072, .max_aq_depth = 32, .msdbd = 1};
};

constexpr size_t kGuard = 32;
constexpr uint8_t kGuardByte = 0xC5;
constexpr uint32_t kSlots = 32;

struct Slot : nvmf::Request {
    std::vector<uint8_t> arena;
    uint32_t completions = 0;
    bool in_use = false;
    uint16_t cid = 0;
};

class FakeQpair final : public nvmf::Qpair {
public:
    FakeQpair(nvmf::Transport& t, runtime::Thread& th) : Qpair(t, th) {}
    void complete(nvmf::Request& req) noexcept override {
        auto& s = static_cast<Slot&>(req);
        CHECK(!in_exec);  // never inside exec()
        CHECK(s.in_use);
        CHECK(req.rsp.cid == s.cid);
        ++s.completions;
        CHECK(s.completions == 1);
        ++completed;
    }
    void disconnect() noexcept override {
        ++disconnects;
        if (!is_closed()) closed();
    }
    void released() noexcept override { was_released = true; }

    bool in_exec = false;
    uint64_t completed = 0;
    uint32_t disconnects = 0;
    bool was_released = false;
    Slot slots[kSlots];
    uint32_t next = 0;
};

// The shared target (nvmf_fuzz_app.h) with a fake transport and a Thread for the qpairs.
struct World : fuzz::NvmfFuzzApp {
    World() : NvmfFuzzApp(1, 2, kNqn) {
        on_app([&] {
            CHECK(nvmf::add_transport(std::make_unique<FakeTransport>()).ok());
            transport = nvmf::find_transport("FUZZ");
        });
        qthread = sim->create_thread("nvmf_fuzz_qpairs", -1, &app->host());
        CHECK(qthread != nullptr);
    }
    template <class F>
    void on_q(F&& fn) {
        on(*qthread, std::forward<F>(fn));
    }
    nvmf::Transport* transport = nullptr;
    runtime::Thread* qthread = nullptr;
};

// Fills a slot's buffer: `len` bytes in `niov` iovecs with guards, from `src` (or zeros).
void fill(Slot& s, uint32_t len, uint32_t niov, const uint8_t* src, size_t src_len) {
    s.arena.assign(len + kGuard * (niov + 1), kGuardByte);
    uint32_t left = len;
    size_t off = kGuard;
    s.iovcnt = len ? niov : 0;
    for (uint32_t i = 0; len && i < niov; ++i) {
        const uint32_t take = i + 1 == niov ? left : left / (niov - i);
        s.iov[i] = {s.arena.data() + off, take};
        std::memset(s.arena.data() + off, 0, take);
        off += take + kGuard;
        left -= take;
    }
    s.length = len;
    // The data, in iovec order.
    size_t copied = 0;
    for (uint32_t i = 0; i < s.iovcnt && copied < src_len; ++i) {
        const size_t k = std::min(s.iov[i].iov_len, src_len - copied);
        std::memcpy(s.iov[i].iov_base, src + copied, k);
        copied += k;
    }
}

void check_guards(const Slot& s) {
    size_t off = 0;
    const uint32_t n = s.iovcnt;
    for (uint32_t i = 0; i <= n; ++i) {
        for (size_t k = 0; k < kGuard; ++k) CHECK(s.arena[off + k] == kGuardByte);
        if (i < n) off += kGuard + s.iov[i].iov_len;
    }
}

// Submits one command on q (from its Thread) and optionally waits for its completion.
Slot* submit(World& w, FakeQpair& q, const spec::Sqe& sqe, uint32_t len, uint32_t niov,
             const uint8_t* src, size_t src_len, bool wait) {
    if (q.next == kSlots) return nullptr;
    Slot& s = q.slots[q.next++];
    s.in_use = true;
    s.completions = 0;
    s.cmd = sqe;
    s.cid = sqe.cid;
    s.qpair = &q;
    s.xfer = len ? nvmf::xfer_direction(sqe) : nvmf::XferDir::none;
    fill(s, s.xfer == nvmf::XferDir::none ? 0 : len, std::max<uint32_t>(niov, 1), src, src_len);
    w.on_q([&] {
        q.in_exec = true;
        nvmf::exec(s);
        q.in_exec = false;
    });
    if (wait) w.sim->run_until([&] { return s.completions > 0; }, w.sim->now_ns() + kStepNs);
    return &s;
}

spec::Sqe connect_sqe(uint16_t qid, uint32_t kato) {
    spec::ConnectCommand c{};
    c.opcode = spec::fabrics_opcode;
    c.cid = 0x100 + qid;
    c.fctype = static_cast<uint8_t>(spec::FabricsCommandType::connect);
    c.sgl1 = {};
    c.qid = qid;
    c.sqsize = 15;
    c.kato = kato;
    spec::Sqe s;
    std::memcpy(&s, &c, sizeof s);
    return s;
}

spec::ConnectData connect_data(uint16_t cntlid) {
    spec::ConnectData d{};
    d.cntlid = cntlid;
    d.hostid[0] = 0x11;
    spec::set_padded(d.subnqn, kNqn, '\0');
    spec::set_padded(d.hostnqn, kHostNqn, '\0');
    return d;
}

}  // namespace

namespace {

int run_input(World& world, const uint8_t* data, size_t size) {
    World* w = &world;
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    auto admin = std::make_unique<FakeQpair>(*w->transport, *w->qthread);
    auto io = std::make_unique<FakeQpair>(*w->transport, *w->qthread);

    if ((flags & 0x11) == 0x11) {
        // The connection ends while its Connect is on the Target's Thread: the controller the
        // Connect creates must go with the closed qpair.
        const auto cd = connect_data(spec::cntlid_dynamic);
        Slot& s = admin->slots[admin->next++];
        s.in_use = true;
        s.cmd = connect_sqe(0, 0);
        s.cid = s.cmd.cid;
        s.qpair = admin.get();
        s.xfer = nvmf::XferDir::host_to_controller;
        fill(s, sizeof cd, 1, reinterpret_cast<const uint8_t*>(&cd), sizeof cd);
        w->on_q([&] {
            admin->in_exec = true;
            nvmf::exec(s);
            admin->in_exec = false;
            admin->closed();
        });
    } else if (flags & 1) {
        const auto cd = connect_data(spec::cntlid_dynamic);
        Slot* s = submit(*w, *admin, connect_sqe(0, (flags & 8) ? 10'000 : 0), sizeof cd, 1,
                         reinterpret_cast<const uint8_t*>(&cd), sizeof cd, true);
        CHECK(s && s->completions == 1);
        if (flags & 2) {
            spec::PropertySetCommand p{};
            p.opcode = spec::fabrics_opcode;
            p.cid = 0x200;
            p.fctype = static_cast<uint8_t>(spec::FabricsCommandType::property_set);
            p.ofst = 0x14;  // CC
            p.value = 0x00460001;  // EN, IOSQES 6, IOCQES 4
            spec::Sqe sqe;
            std::memcpy(&sqe, &p, sizeof sqe);
            submit(*w, *admin, sqe, 0, 1, nullptr, 0, true);
            w->sim->run_until([] { return false; }, w->sim->now_ns() + 1'000'000);  // CSTS.RDY
        }
        if ((flags & 4) && admin->connected()) {
            const auto iocd = connect_data(spec::ConnectResponseDw0{s->rsp.dw0}.cntlid());
            submit(*w, *io, connect_sqe(1, 0), sizeof iocd, 1,
                   reinterpret_cast<const uint8_t*>(&iocd), sizeof iocd, true);
        }
    }

    static const uint32_t kLens[7] = {0, 8, 64, 512, 1024, 4096, 8192};
    size_t off = 1;
    while (off + 1 + 64 <= size) {
        const uint8_t ctl = data[off++];
        uint32_t len;
        if ((ctl & 7) == 7) {
            len = 1024 + uint32_t{data[off++]} * 4;
            if (off + 64 > size) break;
        } else {
            len = kLens[ctl & 7];
        }
        spec::Sqe sqe;
        std::memcpy(&sqe, data + off, sizeof sqe);
        off += 64;
        const uint8_t* src = nullptr;
        size_t src_len = 0;
        if (ctl & 0x40) {
            src = data + off;
            src_len = std::min<size_t>(len, size - off);
            off += src_len;
        }
        FakeQpair& q = (ctl & 0x20) ? *io : *admin;
        if (!submit(*w, q, sqe, len, ((ctl >> 3) & 3) + 1, src, src_len, ctl & 0x80)) break;
    }

    // Let everything settle (bounded virtual time), then close both qpairs like a transport.
    w->sim->run_until([&] { return false; }, w->sim->now_ns() + kStepNs);
    for (FakeQpair* q : {io.get(), admin.get()})
        w->on_q([&] {
            if (!q->is_closed()) q->closed();
        });
    w->sim->run_until([&] { return admin->was_released && io->was_released; },
                      w->sim->now_ns() + 10 * kStepNs);
    CHECK(admin->was_released && io->was_released);
    if (std::getenv("STRATA_FUZZ_TRACE")) {  // how far a seed got (see fuzz/corpus/README.md)
        for (FakeQpair* q : {admin.get(), io.get()})
            for (uint32_t i = 0; i < q->next; ++i)
                std::fprintf(stderr, "%s opc %#04x cid %u: status %#06x dw0 %#x\n",
                             q == io.get() ? "io   " : "admin", q->slots[i].cmd.opc,
                             q->slots[i].cmd.cid, q->slots[i].rsp.status, q->slots[i].rsp.dw0);
    }
    for (FakeQpair* q : {io.get(), admin.get()}) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < q->next; ++i) {
            const Slot& s = q->slots[i];
            CHECK(s.completions == 1);  // every command completed, exactly once
            check_guards(s);
            ++sum;
        }
        CHECK(q->completed == sum);
        CHECK(q->outstanding() == 0);
    }
    w->on_app([&] {
        auto c = nvmf::controllers(kNqn);
        CHECK(c.ok() && c->empty());
    });
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
