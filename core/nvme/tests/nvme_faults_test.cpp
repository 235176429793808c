// Each fault the model can inject, and the outcome the driver must give: errors surfaced with
// their status, delays honoured, lost completions recovered by abort then reset, corrupted reads
// visible, fatal status and power loss recovered by reset, surprise removal failing everything
// exactly once.
#include <algorithm>
#include <cstring>

#include <strata/nvme/spec/commands.h>

#include "nvme_test_util.h"

namespace strata::nvme::testing {
namespace {

using hwemu::FaultAction;
using hwemu::FaultRule;
using hwemu::nvme::ControllerConfig;
using hwemu::nvme::NamespaceConfig;

class NvmeFaultTest : public NvmeFixture {
protected:
    void start_default(uint64_t timeout_us = 0) {
        ControllerConfig cfg;
        cfg.namespaces = {NamespaceConfig{1, 1 << 16, 512, {}}};
        ControllerOptions opts;
        opts.timeout_us = timeout_us;
        start(cfg, opts);
    }
    uint32_t add_rule(FaultRule rule) {
        uint32_t id = 0;
        on(model_thread(), [&] { id = model->faults().add(rule); });
        return id;
    }
    static FaultRule rule(FaultAction action, uint8_t opcode) {
        FaultRule r;
        r.name = "test";
        r.action = action;
        r.match.opcode = opcode;
        r.match.max_hits = 1;
        return r;
    }
};

constexpr uint8_t kWrite = 0x01, kRead = 0x02;

TEST_F(NvmeFaultTest, ErrorStatusIsSurfaced) {
    start_default();
    QPair& qp = qpair(admin());
    FaultRule r = rule(FaultAction::error_status, kRead);
    r.status = 0x281;  // SCT 2 (media), SC 81h: Unrecovered Read Error
    add_rule(r);
    DmaBuf b(4096);
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), b.p, 0, 8, d, ctx); });
    EXPECT_EQ(c.status.sct(), 2);
    EXPECT_EQ(c.status.sc(), 0x81);
    EXPECT_EQ(c.errc(), Errc::io_error);
    // max_hits 1: the next read is fine.
    EXPECT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), b.p, 0, 8, d, ctx); }).ok());
}

TEST_F(NvmeFaultTest, DelayIsVirtualTime) {
    start_default();
    QPair& qp = qpair(admin());
    FaultRule r = rule(FaultAction::delay, kWrite);
    r.delay_ns = 3'000'000;
    add_rule(r);
    DmaBuf b(512);
    const uint64_t t0 = sim->now_ns();
    EXPECT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 0, 1, d, ctx); }).ok());
    EXPECT_GE(sim->now_ns() - t0, 3'000'000u);
}

TEST_F(NvmeFaultTest, DroppedCompletionIsAbortedThenReset) {
    start_default(/*timeout_us=*/20'000);
    QPair& qp = qpair(admin());
    add_rule(rule(FaultAction::drop_completion, kWrite));
    DmaBuf b(512);
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 7, 1, d, ctx); },
                30 * runtime::kNsPerSec);
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.status, kStatusTimedOut) << c.name().view();
    EXPECT_EQ(c.errc(), Errc::timeout);
    EXPECT_GE(ctrl->stats().timeouts, 1u);
    EXPECT_GE(ctrl->stats().aborts_sent, 1u);
    EXPECT_GE(ctrl->stats().resets, 1u);
    ASSERT_TRUE(poll_until([&] { return qp.connected(); }));
    EXPECT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 7, 1, d, ctx); }).ok());
}

TEST_F(NvmeFaultTest, CorruptReadIsVisible) {
    start_default();
    QPair& qp = qpair(admin());
    DmaBuf w(4096), r(4096);
    fill_pattern(w.bytes(), 4096, 4);
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), w.p, 0, 8, d, ctx); }).ok());
    add_rule(rule(FaultAction::corrupt_read, kRead));
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), r.p, 0, 8, d, ctx); });
    EXPECT_TRUE(c.ok());  // silent corruption: the status says success
    EXPECT_NE(std::memcmp(w.p, r.p, 4096), 0);
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), r.p, 0, 8, d, ctx); }).ok());
    EXPECT_EQ(std::memcmp(w.p, r.p, 4096), 0);  // the media itself is intact
}

TEST_F(NvmeFaultTest, FatalStatusTriggersReset) {
    start_default(/*timeout_us=*/50'000);
    QPair& qp = qpair(admin());
    add_rule(rule(FaultAction::fatal_status, kWrite));
    DmaBuf b(512);
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 1, 1, d, ctx); },
                30 * runtime::kNsPerSec);
    EXPECT_FALSE(c.ok()) << "the command that hit the fatal status cannot have succeeded";
    ASSERT_TRUE(poll_until([&] { return ctrl->state() == ControllerState::ready && qp.connected(); }));
    EXPECT_GE(ctrl->stats().resets, 1u);
    EXPECT_TRUE(io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 1, 1, d, ctx); }).ok());
}

TEST_F(NvmeFaultTest, SurpriseRemovalFailsEverythingOnce) {
    start_default();
    QPair& qp = qpair(admin());
    Errc failure = Errc::ok;
    on(admin(), [&] { ctrl->on_failure([&](Controller&, Errc e) { failure = e; }); });
    FaultRule r = rule(FaultAction::surprise_remove, kWrite);
    add_rule(r);
    DmaBuf b(512);
    std::vector<Io> ios(8);
    on(admin(), [&] {
        for (int i = 0; i < 8; ++i) ASSERT_TRUE(qp.write(ns(), b.p, i, 1, &Io::cb, &ios[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] { return std::all_of(ios.begin(), ios.end(), [](auto& i) { return i.done; }); }));
    for (auto& i : ios) EXPECT_EQ(i.calls, 1);
    EXPECT_TRUE(std::any_of(ios.begin(), ios.end(), [](auto& i) { return i.cpl.status == kStatusControllerGone; }));
    EXPECT_EQ(ctrl->state(), ControllerState::removed);
    EXPECT_EQ(failure, Errc::device_removed);
    Status s;
    on(admin(), [&] { s = qp.write(ns(), b.p, 0, 1, &Io::cb, nullptr); });
    EXPECT_EQ(s.code(), Errc::device_removed);
}

TEST_F(NvmeFaultTest, PowerCutLosesOnlyUnflushedWrites) {
    start_default();
    QPair& qp = qpair(admin());
    DmaBuf a(4096), b(4096), c(4096), r(4096);
    fill_pattern(a.bytes(), 4096, 1);
    fill_pattern(b.bytes(), 4096, 2);
    fill_pattern(c.bytes(), 4096, 3);
    const Namespace& n = ns();
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.write(n, a.p, 0, 8, d, x); }).ok());
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.flush(n, d, x); }).ok());
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.write(n, b.p, 8, 8, d, x, kIoFua); }).ok());
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.write(n, c.p, 16, 8, d, x); }).ok());
    on(model_thread(), [&] { model->power_cut(false); });
    // The driver notices the controller is no longer ready and resets it.
    ASSERT_TRUE(poll_until([&] { return ctrl->stats().resets >= 1 && ctrl->state() == ControllerState::ready && qp.connected(); }));
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.read(n, r.p, 0, 8, d, x); }).ok());
    EXPECT_EQ(std::memcmp(r.p, a.p, 4096), 0) << "flushed data lost";
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.read(n, r.p, 8, 8, d, x); }).ok());
    EXPECT_EQ(std::memcmp(r.p, b.p, 4096), 0) << "FUA data lost";
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* x) { return qp.read(n, r.p, 16, 8, d, x); }).ok());
    std::vector<uint8_t> zeroes(4096, 0);
    EXPECT_EQ(std::memcmp(r.p, zeroes.data(), 4096), 0) << "unflushed data survived a power cut";
}

// Host-side error injection (SPDK's spdk_nvme_qpair_add_cmd_error_injection).
TEST_F(NvmeFaultTest, InjectedStatusReplacesTheDevicesForCountCommands) {
    start_default();
    QPair& qp = qpair(admin());
    DmaBuf b(4096);
    auto rd = [&] {
        return io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), b.p, 0, 8, d, ctx); });
    };
    on(admin(), [&] { qp.add_error_injection({kRead, false, 0, 2, 2, 0x81}); });
    for (int i = 0; i < 2; ++i) {
        auto c = rd();
        EXPECT_EQ(c.status.sct(), 2);
        EXPECT_EQ(c.status.sc(), 0x81);
    }
    EXPECT_TRUE(rd().ok()) << "err_count 2: the third read is the device's";
    // Writes are not affected by a read injection.
    on(admin(), [&] { qp.add_error_injection({kRead, false, 0, 5, 0, 0x02}); });
    EXPECT_TRUE(
        io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), b.p, 0, 8, d, ctx); }).ok());
    on(admin(), [&] { qp.remove_error_injection(kRead); });
    EXPECT_TRUE(rd().ok()) << "removed";
}

TEST_F(NvmeFaultTest, DoNotSubmitHoldsTheCommandAndNeverSendsIt) {
    start_default();
    QPair& qp = qpair(admin());
    DmaBuf w(512), r(512);
    fill_pattern(w.bytes(), 512, 7);
    on(admin(), [&] { qp.add_error_injection({kWrite, true, 2'000, 1, 0, 0x06}); });
    const uint64_t t0 = sim->now_ns();
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), w.p, 0, 1, d, ctx); });
    EXPECT_EQ(c.status.sct(), 0);
    EXPECT_EQ(c.status.sc(), 0x06);
    EXPECT_GE(sim->now_ns() - t0, 2'000'000u) << "completed before timeout_in_us";
    EXPECT_TRUE(
        io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), r.p, 0, 1, d, ctx); }).ok());
    std::vector<uint8_t> zeroes(512, 0);
    EXPECT_EQ(std::memcmp(r.p, zeroes.data(), 512), 0) << "the held write reached the device";
    // err_count 1: the next write goes out.
    EXPECT_TRUE(
        io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(ns(), w.p, 0, 1, d, ctx); }).ok());
    EXPECT_TRUE(
        io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(ns(), r.p, 0, 1, d, ctx); }).ok());
    EXPECT_EQ(std::memcmp(r.p, w.p, 512), 0);
}

TEST_F(NvmeFaultTest, AdminQueueInjection) {
    start_default();
    const uint8_t kIdentify = static_cast<uint8_t>(spec::AdminOpcode::identify);
    on(admin(), [&] { ctrl->add_admin_error_injection({kIdentify, false, 0, 1, 0, 0x0b}); });
    DmaBuf b(4096);
    auto first = run(admin(), ctrl->admin(spec::make_identify(0, spec::Cns::ctrlr), b.p, 4096));
    ASSERT_TRUE(first.ok());
    EXPECT_EQ(first->status.sc(), 0x0b);
    auto second = run(admin(), ctrl->admin(spec::make_identify(0, spec::Cns::ctrlr), b.p, 4096));
    ASSERT_TRUE(second.ok());
    EXPECT_TRUE(second->ok());
}

}  // namespace
}  // namespace strata::nvme::testing
