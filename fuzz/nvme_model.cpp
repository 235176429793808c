// Fuzz target: arbitrary bytes drive the NVMe controller model (hw-emulation/nvme) as a hostile
// or buggy driver would: admin and I/O submission entries, register writes (CC, AQA, doorbells,
// anything in BAR0), fault rules and the passage of virtual time. Invariants: no crash, no hang
// (every step of the simulator is bounded), no sanitizer report; the model answers nonsense with
// status codes, counters and CSTS.CFS.
//
// Input: byte 0 configures the controller (bit 0: SGLs; bit 1: 4 KiB pages only matter for
// the driver side, ignored), then records, each starting with one op byte ((op & 0x7f) % 6):
//   0 admin SQE: 64 bytes follow        1 I/O SQE: 1 byte qid (1..2) then 64 bytes
//   2 register write: 2 bytes offset (dword aligned inside BAR0), 4 bytes value
//   3 time: 1 byte, advance (byte * 10 us) of virtual time
//   4 fault rule: 1 byte action, 1 byte opcode, 2 bytes status
//   5 reset: CC.EN 0 then re-enable with the standard admin queue
// In SQEs, when bit 7 of the op byte is set, PRP1/PRP2 (and the SQ/CQ base of queue creation)
// are turned into IOVAs inside the fuzzer's data buffer (offset from the SQE's own value), so
// valid data paths are explored as well as DMA faults.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/nvme/spec/spec.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_target.h"

namespace {

using namespace strata;
namespace spec = strata::nvme::spec;

constexpr env::PciAddress kAddr{0, 0x09, 0x00, 0};
constexpr uint32_t kAdminEntries = 16;
constexpr uint32_t kIoEntries = 8;
constexpr size_t kDataBytes = 256 * 1024;

// One per fuzzer process, one per strata.fuzz.Target (fuzz/fuzz_target.h): the simulator, the
// model's Thread and the driver-side memory, in the owner's Host.
struct World {
    World() {
        fuzz::quiet_logs();
        if (!fuzz::env_ready()) std::abort();
        owned_sim = std::make_unique<runtime::SimScheduler>(1, 1);
        sim = owned_sim.get();
        thread = sim->create_thread("model");
        auto m = env::dma_alloc(kDataBytes + 64 * 1024, 4096, true);
        if (!m.ok()) std::abort();
        mem = static_cast<uint8_t*>(*m);
        mem_iova = env::iova_of(mem);
    }
    ~World() { env::dma_free(mem); }
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    std::unique_ptr<runtime::SimScheduler> owned_sim;
    runtime::SimScheduler* sim = nullptr;
    runtime::Thread* thread = nullptr;
    uint8_t* mem = nullptr;  // admin SQ/CQ, two I/O queue pairs, data
    uint64_t mem_iova = 0;
};

// Layout inside World::mem.
constexpr size_t kAsq = 0, kAcq = 4096, kIoSq = 8192, kIoCq = 8192 + 2 * 4096;
constexpr size_t kData = 64 * 1024;

struct Session {
    World& w;
    env::Bar bar;
    uint32_t admin_tail = 0;
    uint32_t io_tail[3] = {0, 0, 0};
    uint16_t cid = 0;

    void steps(uint64_t advance_ns = 0) {
        const uint64_t deadline = w.sim->now_ns() + advance_ns;
        (void)w.sim->run_until(nullptr, deadline, 4000);
    }
    void reg(uint64_t off, uint32_t v) { bar.write32(off, v); }
    void enable() {
        reg(spec::reg::cc, 0);
        steps(1000);
        std::memset(w.mem, 0, kData);
        admin_tail = 0;
        io_tail[1] = io_tail[2] = 0;
        for (int q = 0; q < 3; ++q) {
            cq_head[q] = 0;
            phase[q] = true;
        }
        reg(spec::reg::aqa,
            spec::Aqa{}.set_asqs(kAdminEntries - 1).set_acqs(kAdminEntries - 1).raw);
        bar.write64(spec::reg::asq, w.mem_iova + kAsq);
        bar.write64(spec::reg::acq, w.mem_iova + kAcq);
        reg(spec::reg::cc, spec::Cc{}.set_en(1).set_iosqes(6).set_iocqes(4).raw);
        steps(1000);
        for (uint16_t q = 1; q <= 2; ++q) {
            admin(spec::make_create_io_cq(0, q, kIoEntries, w.mem_iova + kIoCq + (q - 1) * 4096));
            admin(
                spec::make_create_io_sq(0, q, kIoEntries, w.mem_iova + kIoSq + (q - 1) * 4096, q));
        }
        steps();
    }
    void admin(spec::Sqe sqe) {
        sqe.cid = cid++;
        std::memcpy(w.mem + kAsq + admin_tail * 64, &sqe, 64);
        admin_tail = (admin_tail + 1) % kAdminEntries;
        reg(spec::sq_tail_doorbell(0, 0), admin_tail);
        steps();
    }
    void io(uint16_t q, const spec::Sqe& sqe) {
        std::memcpy(w.mem + kIoSq + (q - 1) * 4096 + io_tail[q] * 64, &sqe, 64);
        io_tail[q] = (io_tail[q] + 1) % kIoEntries;
        reg(spec::sq_tail_doorbell(q, 0), io_tail[q]);
        steps();
    }
    uint64_t in_data(uint64_t v) const { return w.mem_iova + kData + (v % (kDataBytes - 4096)); }
    // Consume every completion so the CQs do not stay full (phase tags tracked per queue).
    uint32_t cq_head[3] = {0, 0, 0};
    bool phase[3] = {true, true, true};
    void drain() {
        for (uint16_t q = 0; q <= 2; ++q) {
            const size_t base = q == 0 ? kAcq : kIoCq + (q - 1) * 4096;
            const uint32_t entries = q == 0 ? kAdminEntries : kIoEntries;
            bool moved = false;
            for (uint32_t n = 0; n < entries; ++n) {
                spec::Cqe c;
                std::memcpy(&c, w.mem + base + cq_head[q] * 16, 16);
                if ((c.status & 1) != (phase[q] ? 1 : 0)) break;
                cq_head[q] = (cq_head[q] + 1) % entries;
                if (cq_head[q] == 0) phase[q] = !phase[q];
                moved = true;
            }
            if (moved) reg(spec::cq_head_doorbell(q, 0), cq_head[q]);
        }
    }
};

}  // namespace

namespace {

int run_input(World& w, const uint8_t* data, size_t size) {
    auto bus = std::make_unique<hwemu::PciBus>();
    hwemu::nvme::ControllerConfig cfg;
    cfg.max_queue_entries = 64;
    cfg.max_io_queues = 4;
    cfg.sgl = size > 0 && (data[0] & 1) != 0;
    cfg.mdts = 4;
    cfg.namespaces = {{1, 512, 512, ""}, {2, 64, 4096, ""}};
    cfg.io_latency[2] = {hwemu::nvme::LatencySpec::Kind::uniform, 0, 20'000};
    auto created = hwemu::nvme::Controller::create(*bus, kAddr, cfg, *w.thread);
    if (!created.ok()) std::abort();
    std::unique_ptr<hwemu::nvme::Controller> ctrl = std::move(*created);
    auto claimed = env::claim(kAddr);
    if (!claimed.ok()) std::abort();
    std::unique_ptr<env::PciFunction> fn = std::move(*claimed);
    auto bar = fn->map_bar(0);
    if (!bar.ok()) std::abort();
    Session s{w, *bar};
    s.enable();

    size_t at = 1;
    auto take = [&](void* out, size_t n) {
        if (size - at < n) return false;
        std::memcpy(out, data + at, n);
        at += n;
        return true;
    };
    uint32_t ops = 0;
    while (at < size && ops++ < 256) {
        const uint8_t op = data[at++];
        const bool fix_pointers = (op & 0x80) != 0;
        const int kind = (op & 0x7F) % 6;
        switch (kind) {
            case 0:
            case 1: {
                uint8_t qid = 0;
                if (kind == 1 && !take(&qid, 1)) break;
                spec::Sqe sqe{};
                if (!take(&sqe, sizeof(sqe))) break;
                if (fix_pointers) {
                    sqe.prp1 = s.in_data(sqe.prp1);
                    if ((sqe.flags >> 6) == 0) sqe.prp2 = s.in_data(sqe.prp2);  // PRPs, not SGL
                    if (sqe.opc == 0x01 || sqe.opc == 0x05) sqe.prp1 &= ~uint64_t{4095};
                }
                if (kind == 0) {
                    s.admin(sqe);
                } else {
                    s.io(static_cast<uint16_t>(1 + qid % 2), sqe);
                }
                break;
            }
            case 2: {
                uint16_t off = 0;
                uint32_t v = 0;
                if (!take(&off, 2) || !take(&v, 4)) break;
                s.reg((off % s.bar.size_bytes()) & ~uint64_t{3}, v);
                s.steps();
                break;
            }
            case 3: {
                uint8_t t = 0;
                if (!take(&t, 1)) break;
                s.steps(uint64_t{t} * 10'000);
                break;
            }
            case 4: {
                uint8_t b[4];
                if (!take(b, 4)) break;
                hwemu::FaultRule r;
                r.name = "fuzz";
                r.action = static_cast<hwemu::FaultAction>(b[0] % 7);
                r.match.opcode = b[1];
                r.match.nth = b[0] >> 4;
                r.status = static_cast<uint16_t>(b[2] | (b[3] << 8));
                r.delay_ns = uint64_t{b[2]} * 1000;
                r.torn = (b[3] & 1) != 0;
                ctrl->faults().add(r);
                break;
            }
            case 5:
                s.enable();
                break;
        }
        s.drain();
    }
    s.steps(1'000'000);
    (void)fn->detach();
    fn.reset();
    ctrl.reset();
    bus.reset();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
