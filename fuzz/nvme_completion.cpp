// Fuzz target: arbitrary bytes become the completion queue of an NVMe I/O qpair, as a hostile or
// broken device would write it. Invariants: no crash, no hang, every command submitted completes
// exactly once (the device's completion, or the driver's own when the queue is torn down), and
// rejected entries are counted, never trusted.
//
// Input: byte 0 = commands to submit first (0..31); then 17-byte records: one control byte
// (bit 0: submit one more command before this entry; bits 1..3: which CQ slot to write) and 16
// bytes of CQE.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/runtime/scheduler.h>

#include <strata/nvme/testing/qpair_access.h>

#include "fuzz_target.h"

namespace {

struct NullBar final : strata::env::BarHandler {
    uint64_t bar_read(uint32_t, uint64_t, uint32_t) noexcept override { return 0; }
    void bar_write(uint32_t, uint64_t, uint32_t, uint64_t) noexcept override {}
};

struct Counter {
    int calls = 0;
    static void done(void* ctx, const strata::nvme::Completion&) {
        auto* c = static_cast<Counter*>(ctx);
        if (++c->calls > 1) std::abort();  // completed twice
    }
};

}  // namespace

namespace {

// The simulator and the Thread the qpairs run on (one per fuzzer process, one per
// strata.fuzz.Target: fuzz/fuzz_target.h).
struct State {
    State() {
        strata::fuzz::quiet_logs();
        if (!strata::fuzz::env_ready()) std::abort();
        sim = std::make_unique<strata::runtime::SimScheduler>(1, 1);
        thread = sim->create_thread("fuzz");
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    strata::runtime::Thread* thread = nullptr;
    NullBar null_bar;
};

int run_input(State& state, const uint8_t* data, size_t size) {
    using namespace strata;
    runtime::Thread* thread = state.thread;
    NullBar& null_bar = state.null_bar;
    if (size == 0) return 0;

    constexpr uint32_t kEntries = 8;
    constexpr uint32_t kRequests = 32;
    nvme::ControllerImpl ctrl;
    nvme::QPairImpl qp(ctrl, *thread, 1, kEntries, kRequests, 0, 0);
    if (!qp.allocate().ok()) std::abort();
    qp.bar = env::Bar(nullptr, &null_bar, 0, 0x2000);
    qp.sq_doorbell = 0x1008;
    qp.cq_doorbell = 0x100c;
    qp.mark_connected();

    Counter counters[64];
    size_t submitted = 0;
    auto submit = [&] {
        if (submitted == 64) return;
        const nvme::spec::Sqe sqe = nvme::spec::make_flush(0, 1);
        if (qp.submit(sqe, nullptr, 0, 0, &Counter::done, &counters[submitted]).ok()) ++submitted;
    };
    for (uint8_t i = 0; i < (data[0] & 31); ++i) submit();
    qp.ring_sq_doorbell();
    for (size_t off = 1; off + 17 <= size; off += 17) {
        const uint8_t ctl = data[off];
        if (ctl & 1) submit();
        std::memcpy(&qp.cq[(ctl >> 1) & (kEntries - 1)], data + off + 1, 16);
        qp.process(0);
    }
    qp.disconnect(nvme::kStatusResetAborted);  // what a reset does: in-flight commands end now
    qp.fail(nvme::kStatusControllerGone);      // and commands still waiting for SQ room too
    for (size_t i = 0; i < submitted; ++i)
        if (counters[i].calls != 1) std::abort();  // lost or never completed
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(State, run_input)
