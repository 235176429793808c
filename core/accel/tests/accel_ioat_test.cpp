// The accel framework with the I/OAT module on the channel model: results identical to the
// software module for every op (copy/fill split at XFERCAP, across lengths, alignments and ring
// wraps), routing (best module per op, accel_assign_opc override, Threads without a channel,
// buffers outside DMA memory), injected faults surfaced with the decoded CHANERR and recovered,
// hot removal, and batches mixing modules.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include <strata/base/crc.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/ioat/spec/spec.h>
#include <strata/runtime/host.h>

#include "accel_fixture.h"

namespace strata::accel::testing {
namespace {

using hwemu::FaultAction;
using hwemu::FaultRule;

size_t module_index(std::string_view name) {
    const auto names = module_names();
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == name) return i;
    return SIZE_MAX;
}

class AccelIoatTest : public AccelFixture {
protected:
    // A 4 KiB XFERCAP so that larger ops split over several descriptors.
    void start_ioat(size_t channels = 1, uint8_t xfercap_log2 = 12) {
        hwemu::ioat::ModelConfig cfg;
        cfg.xfercap_log2 = xfercap_log2;
        model = &add_model(kIoat0, cfg);
        start(true, channels);
    }
    void add_fault(const FaultRule& r) {
        on(threads[2], [&] { model->faults().add(r); });
    }
    uint64_t descriptors() {
        uint64_t n = 0;
        on(threads[2], [&] { n = model->stats().descriptors; });
        return n;
    }

    hwemu::ioat::ChannelModel* model = nullptr;
};

TEST_F(AccelIoatTest, RoutesCopyAndFillToIoatAndTheRestToSoftware) {
    start_ioat();
    EXPECT_TRUE(module_started("ioat"));
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "ioat");
    EXPECT_STREQ(ch[0]->module_for(Opcode::fill), "ioat");
    for (Opcode op : {Opcode::compare, Opcode::crc32c, Opcode::copy_crc32c, Opcode::xor_})
        EXPECT_STREQ(ch[0]->module_for(op), "software");
    EXPECT_EQ(assigned_module(Opcode::copy), "ioat");
    EXPECT_EQ(assigned_module(Opcode::crc32c), "software");
    auto ops = module_opcodes("ioat");
    ASSERT_TRUE(ops.ok());
    EXPECT_EQ(*ops, (std::vector<Opcode>{Opcode::copy, Opcode::fill}));
    EXPECT_EQ(module_opcodes("nope").code(), Errc::not_found);
}

TEST_F(AccelIoatTest, ResultsIdenticalToSoftwareAcrossLengthsAndAlignments) {
    start_ioat();
    constexpr size_t kMax = 3 * 4096 + 512;  // up to four descriptors at a 4 KiB XFERCAP
    auto* src = alloc(kMax + 4096);
    auto* hw = alloc(kMax + 4096);
    auto* sw = alloc(kMax + 4096);
    const uint64_t before = descriptors();
    uint64_t expected_descriptors = 0;
    uint32_t seed = 1;
    for (size_t len : {size_t{1}, size_t{3}, size_t{64}, size_t{4095}, size_t{4096}, size_t{4097},
                       size_t{8192 + 7}, kMax}) {
        for (size_t soff : {size_t{0}, size_t{1}, size_t{4095}}) {
            for (size_t doff : {size_t{0}, size_t{7}}) {
                SCOPED_TRACE(::testing::Message()
                             << "len " << len << " src+" << soff << " dst+" << doff);
                pattern(src, kMax + 4096, seed++);
                std::memset(hw, 0xC3, kMax + 4096);
                std::memset(sw, 0xC3, kMax + 4096);
                for (Opcode opc : {Opcode::copy, Opcode::fill}) {
                    Op op;
                    op.opcode = opc;
                    op.src = src + soff;
                    op.len = len;
                    op.fill_byte = static_cast<uint8_t>(seed);
                    op.dst = hw + doff;
                    ASSERT_TRUE(assign_opc(opc, "ioat").ok());
                    ASSERT_TRUE(run(op).ok());
                    op.dst = sw + doff;
                    ASSERT_TRUE(assign_opc(opc, "software").ok());
                    ASSERT_TRUE(run(op).ok());
                    ASSERT_EQ(std::memcmp(hw, sw, kMax + 4096), 0) << opcode_name(opc);
                    expected_descriptors += (len + 4095) / 4096;
                }
            }
        }
    }
    EXPECT_EQ(descriptors() - before, expected_descriptors);  // ioat really did the work
    const Stats s = stats_now();
    EXPECT_EQ(s.fallbacks, 0u);
    EXPECT_GT(s.module_ops[module_index("ioat")], 0u);
}

TEST_F(AccelIoatTest, EveryOpGivesTheSameResultWithAndWithoutIoat) {
    // With the ioat module started, compare/crc32c/copy_crc32c/xor still run (on software) and
    // agree with a framework that has only software; copy and fill go to the engine.
    start_ioat();
    auto* a = alloc(20'000);
    auto* b = alloc(20'000);
    auto* x1 = alloc(20'000);
    auto* x2 = alloc(20'000);
    pattern(a, 20'000, 5);
    pattern(x1, 20'000, 6);
    pattern(x2, 20'000, 7);
    const void* srcs[3] = {a, x1, x2};
    auto run_all = [&](std::vector<uint8_t>& out) {
        uint32_t crc1 = 0, crc2 = 0;
        uint64_t where = 0;
        std::vector<Op> ops(6);
        ops[0].opcode = Opcode::copy;
        ops[0].dst = b;
        ops[0].src = a;
        ops[0].len = 20'000;
        ops[1].opcode = Opcode::fill;
        ops[1].dst = b + 1000;
        ops[1].len = 999;
        ops[1].fill_byte = 0x3C;
        ops[2].opcode = Opcode::compare;
        ops[2].src = a;
        ops[2].dst = b;
        ops[2].len = 20'000;
        ops[2].miscompare_offset = &where;
        ops[3].opcode = Opcode::crc32c;
        ops[3].src = b;
        ops[3].len = 20'000;
        ops[3].seed = 0x1234;
        ops[3].crc_dst = &crc1;
        ops[4].opcode = Opcode::copy_crc32c;
        ops[4].dst = x1;
        ops[4].src = b;
        ops[4].len = 20'000;
        ops[4].crc_dst = &crc2;
        ops[5].opcode = Opcode::xor_;
        ops[5].dst = x2;
        ops[5].xor_srcs = srcs;
        ops[5].xor_nsrcs = 2;
        ops[5].len = 20'000;
        std::vector<Status> st;
        for (const Op& op : ops) st.push_back(run(op));
        EXPECT_TRUE(st[0].ok());
        EXPECT_TRUE(st[1].ok());
        EXPECT_EQ(st[2], Errc::corrupt);
        EXPECT_EQ(where, 1000u);
        out.assign(b, b + 20'000);
        out.insert(out.end(), x1, x1 + 20'000);
        out.insert(out.end(), x2, x2 + 20'000);
        for (uint32_t v : {crc1, crc2})
            out.insert(out.end(),
                       {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)});
    };
    std::vector<uint8_t> with_ioat, software_only;
    run_all(with_ioat);
    const Stats s = stats_now();
    EXPECT_EQ(s.module_ops[module_index("ioat")], 2u);
    // Same inputs again, everything on software.
    pattern(a, 20'000, 5);
    pattern(x1, 20'000, 6);
    pattern(x2, 20'000, 7);
    std::memset(b, 0, 20'000);
    ASSERT_TRUE(assign_opc(Opcode::copy, "software").ok());
    ASSERT_TRUE(assign_opc(Opcode::fill, "software").ok());
    run_all(software_only);
    EXPECT_EQ(with_ioat, software_only);
    EXPECT_EQ(stats_now().module_ops[module_index("ioat")], 2u);
}

TEST_F(AccelIoatTest, ManyOpsWrapTheRingAndWaitForRoom) {
    // 1500 copies of 3 descriptors each at once: far more than the 512-slot ring, so ops wait
    // inside the module for room and the ring wraps several times.
    ASSERT_TRUE(set_options({2048, 16}).ok());
    start_ioat();
    constexpr size_t kOps = 1500, kLen = 2 * 4096 + 100;
    auto* src = alloc(kOps * kLen);
    auto* dst = alloc(kOps * kLen);
    pattern(src, kOps * kLen, 77);
    std::vector<Done> d(kOps);
    on(threads[0], [&] {
        for (size_t i = 0; i < kOps; ++i)
            ASSERT_TRUE(
                ch[0]->submit_copy(dst + i * kLen, src + i * kLen, kLen, &Done::fn, &d[i]).ok());
    });
    ASSERT_TRUE(poll_until([&] { return ch[0]->outstanding() == 0; }));
    for (size_t i = 0; i < kOps; ++i) {
        ASSERT_EQ(d[i].calls, 1) << i;
        ASSERT_TRUE(d[i].status.ok()) << i;
    }
    EXPECT_EQ(std::memcmp(dst, src, kOps * kLen), 0);
    EXPECT_EQ(descriptors(), kOps * 3);
    EXPECT_EQ(stats_now().fallbacks, 0u);
}

TEST_F(AccelIoatTest, AssignOpcOverridesAndValidates) {
    start_ioat();
    EXPECT_EQ(assign_opc(Opcode::crc32c, "ioat").code(), Errc::not_supported);
    EXPECT_EQ(assign_opc(Opcode::copy, "gpu").code(), Errc::not_found);
    ASSERT_TRUE(assign_opc(Opcode::copy, "software").ok());
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "software");
    EXPECT_STREQ(ch[0]->module_for(Opcode::fill), "ioat");
    auto ov = assignment_overrides();
    ASSERT_EQ(ov.size(), 1u);
    EXPECT_EQ(ov[0].first, Opcode::copy);
    EXPECT_EQ(ov[0].second, "software");
    auto* a = alloc(4096);
    auto* b = alloc(4096);
    const uint64_t before = descriptors();
    Op op;
    op.opcode = Opcode::copy;
    op.dst = b;
    op.src = a;
    op.len = 4096;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(descriptors(), before);  // not on the engine
    clear_assignments();
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "ioat");
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(descriptors(), before + 1);
}

// The framework is per runtime::Host (per App): another Host's accel_assign_opc, ioat module
// and start/stop are its own. This Host (the fixture's) runs with the ioat module; "other"
// runs software only on a Thread of its own.
TEST_F(AccelIoatTest, TwoHostsRouteAndConfigureApart) {
    start_ioat();
    runtime::Host other("other", 5);
    runtime::Thread* t = nullptr;
    {
        runtime::HostScope scope(other);
        EXPECT_FALSE(running());
        EXPECT_FALSE(ioat_module_enabled());
        EXPECT_FALSE(module_started("ioat"));
        EXPECT_EQ(assigned_module(Opcode::copy), "software");
        // Recorded there; no ioat there, so its fills stay on software.
        ASSERT_TRUE(assign_opc(Opcode::fill, "ioat").ok());
        t = sim->create_thread("other_t");
    }
    ASSERT_EQ(&t->host(), &other);
    EXPECT_TRUE(assignment_overrides().empty());
    ASSERT_TRUE(assign_opc(Opcode::copy, "software").ok());
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "software");
    EXPECT_STREQ(ch[0]->module_for(Opcode::fill), "ioat");

    Channel* och = nullptr;
    on(t, [&] {
        ASSERT_TRUE(init().ok());
        och = get_channel();
    });
    ASSERT_NE(och, nullptr);
    EXPECT_STREQ(och->module_for(Opcode::copy), "software");
    EXPECT_STREQ(och->module_for(Opcode::fill), "software");
    {
        runtime::HostScope scope(other);
        auto ov = assignment_overrides();
        ASSERT_EQ(ov.size(), 1u);
        EXPECT_EQ(ov[0].first, Opcode::fill);
        EXPECT_EQ(ov[0].second, "ioat");
    }
    auto ov = assignment_overrides();
    ASSERT_EQ(ov.size(), 1u);
    EXPECT_EQ(ov[0].first, Opcode::copy);

    // A fill on each Host's channel: the engine takes only this Host's.
    auto* buf = alloc(4096);
    Op op;
    op.opcode = Opcode::fill;
    op.dst = buf;
    op.len = 4096;
    op.fill_byte = 0x5a;
    const uint64_t before = descriptors();
    Done d;
    on(t, [&] { ASSERT_TRUE(och->submit(op, &Done::fn, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
    EXPECT_TRUE(d.status.ok());
    EXPECT_EQ(descriptors(), before);
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(descriptors(), before + 1);

    // The other Host's framework stops; this one keeps running.
    bool stopped = false;
    on(t, [&] {
        put_channel(och);
        fini([](void* c) { *static_cast<bool*>(c) = true; }, &stopped);
    });
    ASSERT_TRUE(poll_until([&] { return stopped; }));
    EXPECT_TRUE(running());
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(descriptors(), before + 2);
    on(t, [&] { t->request_exit(); });
}

TEST_F(AccelIoatTest, OpsTheEngineCannotDoFallBackToSoftware) {
    start_ioat();
    auto* a = alloc(8192);
    auto* b = alloc(8192);
    pattern(a, 8192, 3);
    std::vector<uint8_t> heap(8192, 0);  // not DMA memory
    Op op;
    op.opcode = Opcode::copy;
    op.dst = heap.data();
    op.src = a;
    op.len = 8192;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(std::memcmp(heap.data(), a, 8192), 0);
    // An iovec list of several elements.
    struct iovec siov[2] = {{a, 4096}, {a + 4096, 4096}};
    struct iovec diov[2] = {{b, 100}, {b + 100, 8092}};
    op = Op{};
    op.opcode = Opcode::copy;
    op.src_iov = siov;
    op.src_iovcnt = 2;
    op.dst_iov = diov;
    op.dst_iovcnt = 2;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(std::memcmp(b, a, 8192), 0);
    // Zero length.
    op = Op{};
    op.opcode = Opcode::fill;
    op.dst = b;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(descriptors(), 0u);
    EXPECT_EQ(stats_now().fallbacks, 3u);
}

TEST_F(AccelIoatTest, ThreadWithoutAnIoatChannelUsesSoftware) {
    start_ioat(2);  // one model, two Threads: the second has no engine
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "ioat");
    EXPECT_STREQ(ch[1]->module_for(Opcode::copy), "software");
    auto* a = alloc(4096);
    auto* b = alloc(4096);
    pattern(a, 4096, 1);
    Op op;
    op.opcode = Opcode::copy;
    op.dst = b;
    op.src = a;
    op.len = 4096;
    ASSERT_TRUE(run(op, 1).ok());
    EXPECT_EQ(std::memcmp(a, b, 4096), 0);
    EXPECT_EQ(descriptors(), 0u);
    EXPECT_EQ(stats_now().fallbacks, 1u);
}

TEST_F(AccelIoatTest, TwoThreadsTwoEngines) {
    model = &add_model(kIoat0);
    auto& second = add_model(kIoat1);
    start(true, 2);
    auto* a = alloc(65536);
    auto* b = alloc(65536);
    pattern(a, 65536, 4);
    Op op;
    op.opcode = Opcode::copy;
    op.len = 32768;
    op.src = a;
    op.dst = b;
    ASSERT_TRUE(run(op, 0).ok());
    op.src = a + 32768;
    op.dst = b + 32768;
    ASSERT_TRUE(run(op, 1).ok());
    EXPECT_EQ(std::memcmp(a, b, 65536), 0);
    uint64_t d0 = 0, d1 = 0;
    on(threads[2], [&] {
        d0 = model->stats().descriptors;
        d1 = second.stats().descriptors;
    });
    EXPECT_EQ(d0, 1u);
    EXPECT_EQ(d1, 1u);
}

TEST_F(AccelIoatTest, InjectedErrorFailsTheOpWithTheDecodedChanerrAndTheChannelRecovers) {
    start_ioat();
    auto* a = alloc(4096);
    auto* b = alloc(4096);
    pattern(a, 4096, 8);
    FaultRule r;
    r.action = FaultAction::error_status;
    r.status = static_cast<uint16_t>(ioat::spec::chanerr::read_data_err);
    r.match.max_hits = 1;
    add_fault(r);
    Op op;
    op.opcode = Opcode::copy;
    op.dst = b;
    op.src = a;
    op.len = 4096;
    Status s = run(op);
    EXPECT_EQ(s, Errc::dma_fault);
    EXPECT_STREQ(s.context(), "read_data_err");
    // The driver reset the channel: the next op goes through the engine and succeeds.
    const uint64_t before = descriptors();
    s = run(op);
    EXPECT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(std::memcmp(a, b, 4096), 0);
    EXPECT_EQ(descriptors(), before + 1);
    const Stats st = stats_now();
    EXPECT_EQ(st.ops[static_cast<size_t>(Opcode::copy)].failed, 1u);
    EXPECT_EQ(st.ops[static_cast<size_t>(Opcode::copy)].executed, 2u);
}

TEST_F(AccelIoatTest, FaultMidBatchAbortsTheRestThenRecovers) {
    start_ioat();
    auto* a = alloc(16 * 4096);
    auto* b = alloc(16 * 4096);
    pattern(a, 16 * 4096, 2);
    FaultRule r;
    r.action = FaultAction::fatal_status;
    r.match.nth = 3;
    add_fault(r);
    std::array<Op, 8> ops{};
    for (size_t i = 0; i < ops.size(); ++i) {
        ops[i].opcode = Opcode::copy;
        ops[i].dst = b + i * 4096;
        ops[i].src = a + i * 4096;
        ops[i].len = 4096;
    }
    Done d;
    on(threads[0], [&] { ASSERT_TRUE(ch[0]->submit_batch(ops.data(), 8, &Done::fn, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return d.calls > 0; }));
    EXPECT_EQ(d.calls, 1);
    EXPECT_FALSE(d.status.ok());
    size_t failed = 0;
    for (const Op& op : ops) failed += op.status.ok() ? 0 : 1;
    EXPECT_GE(failed, 1u);
    EXPECT_TRUE(ops[0].status.ok());
    EXPECT_TRUE(ops[1].status.ok());
    EXPECT_FALSE(ops[2].status.ok());
    EXPECT_STREQ(ops[2].status.context(), "chipset_uncorrectable_data_integrity_err");
    on(threads[2], [&] { model->faults().clear(); });
    // Retrying the batch succeeds on the recovered channel.
    Done again;
    on(threads[0],
       [&] { ASSERT_TRUE(ch[0]->submit_batch(ops.data(), 8, &Done::fn, &again).ok()); });
    ASSERT_TRUE(poll_until([&] { return again.calls > 0; }));
    EXPECT_TRUE(again.status.ok()) << again.status.to_string();
    EXPECT_EQ(std::memcmp(a, b, 8 * 4096), 0);
}

TEST_F(AccelIoatTest, HotRemovalFailsOutstandingOpsThenSoftwareTakesOver) {
    hwemu::ioat::ModelConfig cfg;
    cfg.per_descriptor_ns = 50'000;  // ops stay outstanding long enough to be caught
    model = &add_model(kIoat0, cfg);
    start(true);
    auto* a = alloc(8 * 4096);
    auto* b = alloc(8 * 4096);
    pattern(a, 8 * 4096, 6);
    std::array<Done, 4> d;
    on(threads[0], [&] {
        for (size_t i = 0; i < d.size(); ++i)
            ASSERT_TRUE(
                ch[0]->submit_copy(b + i * 4096, a + i * 4096, 4096, &Done::fn, &d[i]).ok());
    });
    run_for(10'000);
    on(threads[2], [&] { ASSERT_TRUE(bus->surprise_remove(kIoat0).ok()); });
    ASSERT_TRUE(poll_until([&] { return ch[0]->outstanding() == 0; }));
    size_t removed = 0;
    for (auto& x : d) {
        EXPECT_EQ(x.calls, 1);
        if (x.status == Errc::device_removed) ++removed;
    }
    EXPECT_GE(removed, 1u);
    // Later copies go to software (counted as fallbacks) and succeed.
    Op op;
    op.opcode = Opcode::copy;
    op.dst = b;
    op.src = a;
    op.len = 8 * 4096;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(std::memcmp(a, b, 8 * 4096), 0);
    EXPECT_GE(stats_now().fallbacks, 1u);
}

TEST_F(AccelIoatTest, IoatEnabledWithoutDevicesLeavesSoftware) {
    start(true);  // no model on the bus
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "software");
    EXPECT_EQ(assigned_module(Opcode::copy), "software");
    auto* a = alloc(4096);
    Op op;
    op.opcode = Opcode::fill;
    op.dst = a;
    op.len = 4096;
    op.fill_byte = 9;
    ASSERT_TRUE(run(op).ok());
    EXPECT_EQ(a[4095], 9);
}

TEST_F(AccelIoatTest, EnabledAtRunTimeServesChannelsCreatedAfterwards) {
    model = &add_model(kIoat0);
    start(false);
    EXPECT_FALSE(module_started("ioat"));
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "software");
    on(threads[1], [&] { ASSERT_TRUE(enable_ioat_module().ok()); });
    EXPECT_TRUE(module_started("ioat"));
    EXPECT_EQ(assigned_module(Opcode::copy), "ioat");
    // Thread 0's channel predates the module; a new channel on Thread 1 gets the engine.
    EXPECT_STREQ(ch[0]->module_for(Opcode::copy), "software");
    ch.push_back(nullptr);
    on(threads[1], [&] { ch[1] = get_channel(); });
    ASSERT_NE(ch[1], nullptr);
    run_for(100'000);
    EXPECT_STREQ(ch[1]->module_for(Opcode::copy), "ioat");
    auto* a = alloc(4096);
    auto* b = alloc(4096);
    pattern(a, 4096, 1);
    Op op;
    op.opcode = Opcode::copy;
    op.dst = b;
    op.src = a;
    op.len = 4096;
    ASSERT_TRUE(run(op, 1).ok());
    EXPECT_EQ(std::memcmp(a, b, 4096), 0);
    EXPECT_EQ(descriptors(), 1u);
}

}  // namespace
}  // namespace strata::accel::testing
