// The NVMe driver against the controller model: init, identify, data integrity across sizes and
// alignments, SGLs, queue full, several qpairs on several Threads, reset, namespace events,
// hostile completions.
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "nvme_test_util.h"

#include <strata/nvme/spec/spec.h>

#include "../src/internal.h"

namespace strata::nvme::testing {
namespace {

using hwemu::nvme::ControllerConfig;
using hwemu::nvme::NamespaceConfig;

class NvmeDriverTest : public NvmeFixture {};

ControllerConfig two_formats() {
    ControllerConfig cfg;
    cfg.namespaces = {NamespaceConfig{1, 1 << 16, 512, {}}, NamespaceConfig{2, 1 << 14, 4096, {}}};
    return cfg;
}

TEST_F(NvmeDriverTest, AttachReadsIdentityAndNamespaces) {
    ControllerConfig cfg = two_formats();
    cfg.serial = "SN-TEST-42";
    cfg.mdts = 5;
    cfg.enable_delay_ns = 2'000'000;
    start(cfg);
    EXPECT_EQ(ctrl->state(), ControllerState::ready);
    EXPECT_EQ(std::string(ctrl->identify().sn.data(), 10), "SN-TEST-42");
    EXPECT_GE(ctrl->version(), 0x00010400u);
    EXPECT_EQ(ctrl->max_transfer_bytes(), 128u * 1024);
    EXPECT_GE(ctrl->io_queues_granted(), 1u);
    auto list = ctrl->namespaces();
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0]->id, 1u);
    EXPECT_EQ(list[0]->block_size_bytes, 512u);
    EXPECT_EQ(list[0]->num_blocks, 1u << 16);
    EXPECT_EQ(list[0]->max_io_blocks, 256u);
    EXPECT_EQ(list[1]->block_size_bytes, 4096u);
    EXPECT_EQ(list[1]->max_io_blocks, 32u);
    EXPECT_EQ(ctrl->find_namespace(3), nullptr);
    EXPECT_GE(sim->now_ns(), 2'000'000u);  // waited for CSTS.RDY in virtual time
}

TEST_F(NvmeDriverTest, AttachFailsCleanlyWithoutDevice) {
    start_sim(1, 1);
    auto r = run(threads[0], Controller::attach(kAddr));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::not_found);
}

TEST_F(NvmeDriverTest, DataIntegrityAcrossSizesAndAlignments) {
    start(two_formats());
    QPair& qp = qpair(admin());
    DmaBuf wbuf(1 << 20), rbuf(1 << 20);
    uint64_t lba = 0;
    uint32_t round = 0;
    for (uint32_t nsid : {1u, 2u}) {
        const Namespace& n = ns(nsid);
        const uint32_t bs = n.block_size_bytes;
        for (uint32_t blocks : {1u, 2u, 7u, 8u, 9u, 31u, 32u, n.max_io_blocks}) {
            if (blocks > n.max_io_blocks) continue;
            // Offsets inside the first page: aligned, sector-shifted, and near the page end so
            // the transfer crosses pages (PRP2, then a PRP list).
            for (size_t offset : {size_t{0}, size_t{512}, size_t{4096 - 512}, size_t{8}}) {
                const size_t len = size_t{blocks} * bs;
                uint8_t* w = wbuf.bytes() + offset;
                uint8_t* r = rbuf.bytes() + offset;
                fill_pattern(w, len, ++round);
                std::memset(r, 0, len);
                auto wc = io(admin(), [&](IoDoneFn d, void* c) {
                    return qp.write(n, w, lba, blocks, d, c);
                });
                ASSERT_TRUE(wc.ok()) << wc.name().view() << " blocks " << blocks << " off " << offset;
                auto rc = io(admin(), [&](IoDoneFn d, void* c) {
                    return qp.read(n, r, lba, blocks, d, c);
                });
                ASSERT_TRUE(rc.ok()) << rc.name().view();
                ASSERT_EQ(std::memcmp(w, r, len), 0) << "ns " << nsid << " blocks " << blocks
                                                     << " offset " << offset;
                lba += blocks;
            }
        }
    }
}

TEST_F(NvmeDriverTest, VectoredIoOnPageBoundaries) {
    start(two_formats());
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    DmaBuf a(8192), b(4096), c(8192), r(20480);
    fill_pattern(a.bytes() + 512, 8192 - 512, 1);
    fill_pattern(b.bytes(), 4096, 2);
    fill_pattern(c.bytes(), 4096, 3);
    // First segment starts mid-page and ends on a page boundary; the rest are whole pages.
    iovec iov[3] = {{a.bytes() + 512, 8192 - 512}, {b.p, 4096}, {c.p, 4096}};
    const uint32_t blocks = (8192 - 512 + 4096 + 4096) / 512;
    auto wc = io(admin(), [&](IoDoneFn d, void* ctx) {
        return qp.writev(n, iov, 3, 100, blocks, d, ctx);
    });
    ASSERT_TRUE(wc.ok()) << wc.name().view();
    auto rc = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(n, r.p, 100, blocks, d, ctx); });
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(std::memcmp(r.bytes(), a.bytes() + 512, 8192 - 512), 0);
    EXPECT_EQ(std::memcmp(r.bytes() + 8192 - 512, b.p, 4096), 0);
    EXPECT_EQ(std::memcmp(r.bytes() + 8192 - 512 + 4096, c.p, 4096), 0);
}

TEST_F(NvmeDriverTest, BuffersPrpCannotDescribeNeedSgl) {
    start(two_formats());
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    DmaBuf a(4096), b(4096);
    // Two 512-byte pieces: the first ends mid-page, which PRPs cannot express.
    iovec iov[2] = {{a.p, 512}, {b.bytes() + 1024, 512}};
    Status s;
    on(admin(), [&] { s = qp.writev(n, iov, 2, 0, 2, &Io::cb, nullptr); });
    EXPECT_EQ(s.code(), Errc::invalid_argument);
    // Not DMA memory at all.
    std::vector<uint8_t> heap(512);
    on(admin(), [&] { s = qp.write(n, heap.data(), 0, 1, &Io::cb, nullptr); });
    EXPECT_EQ(s.code(), Errc::invalid_argument);
    // Bad block counts.
    on(admin(), [&] { s = qp.write(n, a.p, 0, 0, &Io::cb, nullptr); });
    EXPECT_EQ(s.code(), Errc::invalid_argument);
    on(admin(), [&] { s = qp.write(n, a.p, 0, n.max_io_blocks + 1, &Io::cb, nullptr); });
    EXPECT_EQ(s.code(), Errc::invalid_argument);
}

TEST_F(NvmeDriverTest, SglDescribesScatteredBuffers) {
    ControllerConfig cfg = two_formats();
    cfg.sgl = true;
    start(cfg);
    ASSERT_TRUE(ctrl->sgl_supported());
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    DmaBuf a(4096), b(4096), r(4096);
    fill_pattern(a.bytes(), 512, 5);
    fill_pattern(b.bytes() + 1024, 1024, 6);
    iovec iov[2] = {{a.p, 512}, {b.bytes() + 1024, 1024}};
    auto wc = io(admin(), [&](IoDoneFn d, void* c) { return qp.writev(n, iov, 2, 9, 3, d, c); });
    ASSERT_TRUE(wc.ok()) << wc.name().view();
    auto rc = io(admin(), [&](IoDoneFn d, void* c) { return qp.read(n, r.p, 9, 3, d, c); });
    ASSERT_TRUE(rc.ok());
    EXPECT_EQ(std::memcmp(r.bytes(), a.p, 512), 0);
    EXPECT_EQ(std::memcmp(r.bytes() + 512, b.bytes() + 1024, 1024), 0);
}

TEST_F(NvmeDriverTest, FlushWriteZeroesDeallocateCompare) {
    start(two_formats());
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    DmaBuf w(8192), r(8192);
    fill_pattern(w.bytes(), 8192, 9);
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) { return qp.write(n, w.p, 0, 16, d, c, kIoFua); }).ok());
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) { return qp.flush(n, d, c); }).ok());
    auto same = io(admin(), [&](IoDoneFn d, void* c) { return qp.compare(n, w.p, 0, 16, d, c); });
    EXPECT_TRUE(same.ok()) << same.name().view();
    w.bytes()[700] ^= 0xFF;
    auto diff = io(admin(), [&](IoDoneFn d, void* c) { return qp.compare(n, w.p, 0, 16, d, c); });
    EXPECT_EQ(diff.status.sct(), 2);
    EXPECT_EQ(diff.status.sc(), 0x85);  // Compare Failure
    EXPECT_EQ(diff.errc(), Errc::corrupt);
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) { return qp.write_zeroes(n, 0, 4, d, c); }).ok());
    const spec::DsmRange range{0, 4, 4};
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) {
                    return qp.deallocate(n, std::span<const spec::DsmRange>(&range, 1), d, c);
                }).ok());
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) { return qp.read(n, r.p, 0, 16, d, c); }).ok());
    std::vector<uint8_t> zeroes(4096, 0);
    EXPECT_EQ(std::memcmp(r.p, zeroes.data(), 4096), 0);  // blocks 0..7 zeroed / deallocated
    EXPECT_EQ(std::memcmp(r.bytes() + 4096, w.bytes() + 4096, 4096), 0);
}

TEST_F(NvmeDriverTest, DeviceErrorsArriveDecoded) {
    start(two_formats());
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    DmaBuf b(4096);
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.read(n, b.p, n.num_blocks - 1, 2, d, ctx); });
    EXPECT_EQ(c.status.sct(), 0);
    EXPECT_EQ(c.status.sc(), 0x80);
    EXPECT_EQ(c.errc(), Errc::out_of_range);
    EXPECT_NE(std::string(c.name().view()).find("LBA"), std::string::npos) << c.name().view();
    spec::Sqe bogus{};
    bogus.opc = 0x7E;  // not an NVM opcode
    bogus.nsid = 1;
    auto u = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.raw(bogus, nullptr, 0, d, ctx); });
    EXPECT_EQ(u.status.sc(), 0x01);  // Invalid Command Opcode
    EXPECT_EQ(u.errc(), Errc::invalid_argument);
    EXPECT_EQ(qp.stats().errors, 2u);
}

TEST_F(NvmeDriverTest, QueueFullWaitsAndResubmits) {
    start(two_formats());
    QPairOptions o;
    o.queue_entries = 4;  // 3 slots in flight
    o.requests = 64;
    QPair& qp = qpair(admin(), o);
    const Namespace& n = ns(1);
    DmaBuf b(64 * 512);
    fill_pattern(b.bytes(), 64 * 512, 3);
    std::vector<Io> ios(64);
    on(admin(), [&] {
        for (uint32_t i = 0; i < 64; ++i)
            ASSERT_TRUE(qp.write(n, b.bytes() + i * 512, i, 1, &Io::cb, &ios[i]).ok());
        Status s = qp.write(n, b.p, 0, 1, &Io::cb, nullptr);
        EXPECT_EQ(s.code(), Errc::busy);  // the pool itself is empty
    });
    ASSERT_TRUE(poll_until([&] { return std::all_of(ios.begin(), ios.end(), [](auto& i) { return i.done; }); }));
    for (auto& i : ios) {
        EXPECT_TRUE(i.cpl.ok());
        EXPECT_EQ(i.calls, 1);
    }
    EXPECT_GT(qp.stats().waited_for_room, 0u);
    EXPECT_EQ(qp.outstanding(), 0u);
    DmaBuf r(64 * 512);
    ASSERT_TRUE(io(admin(), [&](IoDoneFn d, void* c) { return qp.read(n, r.p, 0, 64, d, c); }).ok());
    EXPECT_EQ(std::memcmp(r.p, b.p, 64 * 512), 0);
}

TEST_F(NvmeDriverTest, QpairsOnSeveralThreads) {
    start(two_formats(), {}, 3);
    const Namespace& n = ns(1);
    std::vector<QPair*> qps;
    for (int t = 0; t < 3; ++t) qps.push_back(&qpair(threads[t]));
    EXPECT_NE(qps[0]->id(), qps[1]->id());
    constexpr int kPerThread = 50;
    std::vector<std::unique_ptr<DmaBuf>> bufs;
    std::vector<Io> ios(3 * kPerThread);
    for (int t = 0; t < 3; ++t) bufs.push_back(std::make_unique<DmaBuf>(kPerThread * 4096));
    for (int t = 0; t < 3; ++t) {
        fill_pattern(bufs[t]->bytes(), kPerThread * 4096, 100 + t);
        on(threads[t], [&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                const uint64_t lba = uint64_t(t) * 10000 + uint64_t(i) * 8;
                ASSERT_TRUE(qps[t]->write(n, bufs[t]->bytes() + i * 4096, lba, 8, &Io::cb,
                                          &ios[t * kPerThread + i]).ok());
            }
        });
    }
    ASSERT_TRUE(poll_until([&] { return std::all_of(ios.begin(), ios.end(), [](auto& i) { return i.done; }); }));
    for (auto& i : ios) EXPECT_TRUE(i.cpl.ok());
    for (int t = 0; t < 3; ++t) {
        DmaBuf r(kPerThread * 4096);
        ASSERT_TRUE(io(threads[(t + 1) % 3], [&](IoDoneFn d, void* c) {
                        // Read back through another Thread's qpair, 256 blocks at a time.
                        return qps[(t + 1) % 3]->read(n, r.p, uint64_t(t) * 10000, 256, d, c);
                    }).ok());
        EXPECT_EQ(std::memcmp(r.p, bufs[t]->p, 256 * 512), 0) << "thread " << t;
    }
}

TEST_F(NvmeDriverTest, ResetUnderLoadCompletesEveryCommandOnce) {
    start(two_formats(), {}, 2);
    QPair& qp = qpair(threads[1]);
    const Namespace& n = ns(1);
    DmaBuf b(128 * 4096);
    std::vector<Io> ios(128);
    on(threads[1], [&] {
        for (int i = 0; i < 128; ++i)
            ASSERT_TRUE(qp.write(n, b.bytes() + i * 4096, uint64_t(i) * 8, 8, &Io::cb, &ios[i]).ok());
    });
    auto r = run(admin(), ctrl->reset());
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_TRUE(poll_until([&] { return std::all_of(ios.begin(), ios.end(), [](auto& i) { return i.done; }); }));
    for (auto& i : ios) {
        EXPECT_EQ(i.calls, 1);
        EXPECT_TRUE(i.cpl.ok() || i.cpl.status == kStatusResetAborted) << i.cpl.name().view();
    }
    EXPECT_EQ(ctrl->stats().resets, 1u);
    ASSERT_TRUE(poll_until([&] { return qp.connected(); }));
    EXPECT_EQ(qp.stats().reconnects, 1u);
    // The qpair works again after the reset.
    fill_pattern(b.bytes(), 4096, 77);
    ASSERT_TRUE(io(threads[1], [&](IoDoneFn d, void* c) { return qp.write(n, b.p, 5, 8, d, c); }).ok());
    DmaBuf rb(4096);
    ASSERT_TRUE(io(threads[1], [&](IoDoneFn d, void* c) { return qp.read(n, rb.p, 5, 8, d, c); }).ok());
    EXPECT_EQ(std::memcmp(rb.p, b.p, 4096), 0);
}

// A power loss the host survives: the controller comes back in its power-on state (CC.EN 0),
// its volatile write cache gone. The reset that follows counts it (power_losses(), which
// bdev_nvme reports as the bdev's write_cache_losses() and the blobstore stops on), before the
// qpair reconnects; a reset the host asks for does not count.
TEST_F(NvmeDriverTest, ResetAfterAPowerLossCountsIt) {
    start(two_formats(), {}, 2);
    QPair& qp = qpair(threads[1]);
    auto r = run(admin(), ctrl->reset());
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(ctrl->power_losses(), 0u) << "a reset the host asked for";
    on(model_thread(), [&] { model->power_cut(false); });
    ASSERT_TRUE(poll_until([&] { return ctrl->stats().resets == 2 && qp.connected(); }));
    EXPECT_EQ(ctrl->power_losses(), 1u);
    EXPECT_EQ(ctrl->stats().power_losses, 1u);
}

// Found by the blobstore power-cut sweep: a qpair allocated just before a reset (its Create
// I/O CQ/SQ aborted by it) and another freed while the reset runs. The reset used to walk its
// qpair list while the free erased from it, the overtaken create went on (deleting the queue
// the reset had just made), and the freed qpair's queues stayed on the device, so its qid
// could not be created again.
TEST_F(NvmeDriverTest, QPairsAllocatedAndFreedAcrossAResetStayConsistent) {
    ControllerConfig cfg = two_formats();
    cfg.enable_delay_ns = 5'000'000;  // a long reset: the free lands inside it
    start(cfg, {}, 2);
    std::unique_ptr<QPair> freed_during, created_before;
    on(admin(), [&] {
        auto r = ctrl->alloc_io_qpair(*threads[1], {});
        ASSERT_TRUE(r.ok()) << r.error().message();
        freed_during = std::move(*r);
    });
    ASSERT_TRUE(poll_until([&] { return freed_during->connected(); }));
    const uint16_t freed_qid = freed_during->id();

    std::optional<Result<void>> reset;
    on(admin(), [&] {
        auto r = ctrl->alloc_io_qpair(*threads[1], {});  // its Create I/O CQ is in flight...
        ASSERT_TRUE(r.ok()) << r.error().message();
        created_before = std::move(*r);
        runtime::spawn(*admin(), ctrl->reset(),  // ...when the reset aborts the admin queue
                       [&](Result<void> v) { reset.emplace(std::move(v)); });
    });
    bool freed = false;
    on(threads[1], [&] {
        ctrl->free_io_qpair(std::move(freed_during), [](void* p) { *static_cast<bool*>(p) = true; },
                            &freed);
    });
    ASSERT_TRUE(poll_until([&] { return reset.has_value() && freed; }));
    ASSERT_TRUE(reset->ok()) << reset->error().message();
    ASSERT_TRUE(poll_until([&] { return created_before->connected(); }));
    EXPECT_EQ(ctrl->state(), ControllerState::ready);
    qpairs.emplace_back(threads[1], std::move(created_before));
    QPair& b = *qpairs.back().second;

    // The freed qpair's qid is created again: the device must have deleted its queues.
    QPair& c = qpair(threads[1]);
    EXPECT_TRUE(c.connected());
    EXPECT_EQ(c.id(), freed_qid);
    const Namespace& n = ns(1);
    DmaBuf w(4096), r(4096);
    for (QPair* qp : {&b, &c}) {
        fill_pattern(w.bytes(), 4096, qp->id());
        ASSERT_TRUE(io(threads[1], [&](IoDoneFn d, void* x) { return qp->write(n, w.p, 64, 8, d, x); }).ok());
        ASSERT_TRUE(io(threads[1], [&](IoDoneFn d, void* x) { return qp->read(n, r.p, 64, 8, d, x); }).ok());
        EXPECT_EQ(std::memcmp(r.p, w.p, 4096), 0) << "qpair " << qp->id();
    }
}

TEST_F(NvmeDriverTest, NamespaceAddedRaisesEvent) {
    start(two_formats());
    int changes = 0;
    on(admin(), [&] { ctrl->on_namespace_change([&](Controller&) { ++changes; }); });
    on(model_thread(), [&] { ASSERT_TRUE(model->add_namespace({3, 4096, 512, {}}).ok()); });
    ASSERT_TRUE(poll_until([&] { return changes > 0; }));
    const Namespace* n3 = ctrl->find_namespace(3);
    ASSERT_NE(n3, nullptr);
    EXPECT_EQ(n3->num_blocks, 4096u);
    EXPECT_GE(ctrl->stats().async_events, 1u);
    on(model_thread(), [&] { ASSERT_TRUE(model->remove_namespace(3).ok()); });
    ASSERT_TRUE(poll_until([&] { return changes > 1; }));
    EXPECT_EQ(ctrl->find_namespace(3), nullptr);
}

TEST_F(NvmeDriverTest, HostileCompletionsAreRejectedAndRecovered) {
    ControllerOptions opts;
    opts.timeout_us = 50'000;
    start(two_formats(), opts);
    QPair& qp = qpair(admin());
    const Namespace& n = ns(1);
    // Forge entries in the CQ as a broken device would: unknown cid, wrong SQ id, wrong SQ head.
    auto& impl = qp.impl();
    spec::Cqe forged[3]{};
    forged[0].cid = 999;
    forged[1].sqid = 77;
    forged[2].sqhd = 500;
    for (int i = 0; i < 3; ++i) {
        forged[i].status = 1;  // phase 1: looks new
        if (i != 1) forged[i].sqid = qp.id();
        std::memcpy(&impl.cq[i], &forged[i], sizeof(spec::Cqe));
    }
    on(admin(), [&] { qp.process_completions(); });
    EXPECT_EQ(qp.stats().bad_completions, 3u);
    // The CQ head now disagrees with the device; the next command's completion is lost, times
    // out, is aborted, then the controller is reset and the command fails exactly once.
    DmaBuf b(512);
    auto c = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(n, b.p, 0, 1, d, ctx); },
                20 * runtime::kNsPerSec);
    EXPECT_FALSE(c.ok());
    ASSERT_TRUE(poll_until([&] { return qp.connected() && ctrl->state() == ControllerState::ready; }));
    EXPECT_GE(ctrl->stats().resets, 1u);
    auto after = io(admin(), [&](IoDoneFn d, void* ctx) { return qp.write(n, b.p, 0, 1, d, ctx); });
    EXPECT_TRUE(after.ok()) << after.name().view();
}

TEST_F(NvmeDriverTest, DetachRefusesWhileQpairsLive) {
    start(two_formats());
    QPair& qp = qpair(admin());
    (void)qp;
    auto r = run(admin(), ctrl->detach());
    EXPECT_EQ(r.code(), Errc::busy);
    // TearDown frees the qpair and detaches cleanly.
}

TEST_F(NvmeDriverTest, AdminPassthroughAndLogPages) {
    start(two_formats());
    auto smart = std::make_unique<spec::SmartHealthLog>();
    auto r = run(admin(), ctrl->get_log_page(spec::LogPage::smart_health, spec::nsid_all, smart.get(),
                                              sizeof(*smart)));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    auto bad = run(admin(), ctrl->get_log_page(spec::LogPage::smart_health, spec::nsid_all,
                                                smart.get(), 6));
    EXPECT_EQ(bad.code(), Errc::invalid_argument);
    auto f = run(admin(), ctrl->admin(spec::make_get_features(0, spec::FeatureId::number_of_queues)));
    ASSERT_TRUE(f.ok());
    EXPECT_TRUE(f->ok());
}

}  // namespace
}  // namespace strata::nvme::testing
