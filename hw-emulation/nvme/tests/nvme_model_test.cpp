// The NVMe controller model, driven only through its PCI surface: env::claim, BAR0 registers and
// doorbells, and queues and data buffers in dma_alloc'd memory, on the sim backend.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/env/pci.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/nvme/spec/spec.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::hwemu::nvme {
namespace {

namespace spec = strata::nvme::spec;
using env::PciAddress;

constexpr PciAddress kAddr{0, 0x05, 0x00, 0};
constexpr uint64_t kMs = 1'000'000;

uint16_t status_of(spec::GenericStatus s) {
    return spec::make_status(s).raw >> 1 & 0x7FF;
}
uint16_t status_of(spec::CommandSpecificStatus s) {
    return spec::make_status(s).raw >> 1 & 0x7FF;
}
uint16_t status_of(spec::MediaStatus s) {
    return spec::make_status(s).raw >> 1 & 0x7FF;
}
// SCT and SC of a completion, as (sct << 8 | sc).
uint16_t code(const spec::Cqe& c) {
    return static_cast<uint16_t>(c.sct() << 8 | c.sc());
}

struct Queue {
    uint16_t qid = 0;
    uint32_t size = 0;
    spec::Sqe* sq = nullptr;
    spec::Cqe* cq = nullptr;
    uint32_t sq_tail = 0;
    uint32_t cq_head = 0;
    bool phase = true;
};

class NvmeModelTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        bus.reset();
        bus = std::make_unique<PciBus>();
        next_cid = 1;
        // STRATA_SIM_SEED replays another interleaving of the model and "driver" Threads.
        const char* seed = std::getenv("STRATA_SIM_SEED");
        start_sim(seed != nullptr ? std::strtoull(seed, nullptr, 0) : 7, 2);
    }
    void TearDown() override {
        if (fn) (void)fn->detach();
        fn.reset();
        if (ctrl) on(threads[1], [&] { ctrl.reset(); });
        for (void* p : allocations) env::dma_free(p);
        allocations.clear();
        SimFixture::TearDown();
        bus.reset();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }

    void make(ControllerConfig cfg = {}) {
        on(threads[1], [&] {
            auto c = Controller::create(*bus, kAddr, cfg, *threads[1]);
            ASSERT_TRUE(c.ok()) << c.error().message();
            ctrl = std::move(*c);
        });
        auto c = env::claim(kAddr);
        ASSERT_TRUE(c.ok()) << c.error().message();
        fn = std::move(*c);
        auto b = fn->map_bar(0);
        ASSERT_TRUE(b.ok());
        bar = *b;
    }

    void* alloc(size_t bytes, size_t align = 4096) {
        auto p = env::dma_alloc(bytes, align, true);
        EXPECT_TRUE(p.ok());
        allocations.push_back(*p);
        return *p;
    }
    uint64_t iova(const void* p) { return env::iova_of(p); }

    // BAR writes are made from a Thread, as a driver makes them: the simulator only re-polls an
    // idle model after a step that did work (a write from the bare test body would go unseen).
    void w32(uint64_t off, uint32_t v) {
        on(threads[0], [&] { bar.write32(off, v); });
    }
    void w64(uint64_t off, uint64_t v) {
        on(threads[0], [&] { bar.write64(off, v); });
    }

    uint32_t csts() { return bar.read32(spec::reg::csts); }
    spec::Cap cap() { return spec::Cap{bar.read64(spec::reg::cap)}; }
    uint32_t cc_value(uint32_t mps = 0, uint32_t iosqes = 6, uint32_t iocqes = 4) {
        return spec::Cc{}.set_en(1).set_mps(mps).set_iosqes(iosqes).set_iocqes(iocqes).raw;
    }

    // Programs the admin queue and enables; waits for CSTS.RDY (or CFS).
    void enable(uint32_t entries = 32, uint32_t cc = 0) {
        admin = Queue{};
        admin.size = entries;
        admin.sq = static_cast<spec::Sqe*>(alloc(entries * 64));
        admin.cq = static_cast<spec::Cqe*>(alloc(entries * 16));
        w32(spec::reg::aqa, spec::Aqa{}.set_asqs(entries - 1).set_acqs(entries - 1).raw);
        w64(spec::reg::asq, iova(admin.sq));
        w64(spec::reg::acq, iova(admin.cq));
        w32(spec::reg::cc, cc != 0 ? cc : cc_value());
        ASSERT_TRUE(poll_until([&] { return (csts() & 3) != 0; })) << "never ready";
        ASSERT_EQ(csts() & 3, 1u) << "CSTS.CFS";
    }

    uint64_t sq_doorbell(uint16_t qid) {
        return spec::sq_tail_doorbell(qid, static_cast<uint32_t>(cap().dstrd()));
    }
    uint64_t cq_doorbell(uint16_t qid) {
        return spec::cq_head_doorbell(qid, static_cast<uint32_t>(cap().dstrd()));
    }

    void submit(Queue& q, spec::Sqe sqe, bool ring = true) {
        if (sqe.cid == 0) sqe.cid = next_cid++;
        q.sq[q.sq_tail] = sqe;
        q.sq_tail = (q.sq_tail + 1) % q.size;
        if (ring) w32(sq_doorbell(q.qid), q.sq_tail);
    }
    bool has_completion(const Queue& q) {
        return (q.cq[q.cq_head].status & 1) == (q.phase ? 1 : 0);
    }
    // Waits for the next completion, consumes it and rings the CQ head doorbell.
    spec::Cqe wait(Queue& q, uint64_t timeout_ns = 10'000 * kMs) {
        spec::Cqe out{};
        if (!poll_until([&] { return has_completion(q); }, timeout_ns)) {
            ADD_FAILURE() << "no completion on queue " << q.qid;
            return out;
        }
        out = q.cq[q.cq_head];
        q.cq_head = (q.cq_head + 1) % q.size;
        if (q.cq_head == 0) q.phase = !q.phase;
        w32(cq_doorbell(q.qid), q.cq_head);
        return out;
    }
    spec::Cqe run(spec::Sqe sqe) { return run(admin, sqe); }
    spec::Cqe run(Queue& q, spec::Sqe sqe) {
        submit(q, sqe);
        return wait(q);
    }

    Queue create_io_queue(uint16_t qid, uint32_t entries, uint32_t cq_entries = 0) {
        if (cq_entries == 0) cq_entries = entries;
        Queue q;
        q.qid = qid;
        q.size = entries;
        q.sq = static_cast<spec::Sqe*>(alloc(entries * 64));
        q.cq = static_cast<spec::Cqe*>(alloc(cq_entries * 16));
        auto c = run(spec::make_create_io_cq(0, qid, cq_entries, iova(q.cq)));
        EXPECT_TRUE(c.ok()) << spec::status_name(c).view();
        c = run(spec::make_create_io_sq(0, qid, entries, iova(q.sq), qid));
        EXPECT_TRUE(c.ok()) << spec::status_name(c).view();
        return q;
    }

    // Read/write with the data pointer filled by PRPs for a contiguous dma buffer.
    spec::Sqe rw(spec::NvmOpcode op, uint32_t nsid, uint64_t slba, uint32_t blocks, void* buf,
                 size_t bytes, bool fua = false) {
        spec::Sqe s = spec::make_rw(op, 0, nsid, slba, blocks, fua);
        fill_prp(s, buf, bytes);
        return s;
    }
    // PRPs for a buffer that is contiguous in IOVA space; lists in a fresh page.
    void fill_prp(spec::Sqe& s, void* buf, size_t bytes) {
        const uint64_t a = iova(buf);
        s.prp1 = a;
        const uint64_t first = std::min<uint64_t>(bytes, 4096 - (a & 4095));
        const uint64_t rem = bytes - first;
        if (rem == 0) return;
        if (rem <= 4096) {
            s.prp2 = a + first;
            return;
        }
        const size_t n = (rem + 4095) / 4096;
        auto* list = static_cast<uint64_t*>(alloc(((n + 511) / 512 + 1) * 4096));
        for (size_t i = 0; i < n; ++i) list[i] = a + first + i * 4096;
        s.prp2 = iova(list);
    }

    std::unique_ptr<PciBus> bus;
    std::unique_ptr<Controller> ctrl;
    std::unique_ptr<env::PciFunction> fn;
    env::Bar bar;
    Queue admin;
    uint16_t next_cid = 1;
    std::vector<void*> allocations;
};

// ---- registers and handshakes --------------------------------------------------------------

TEST_F(NvmeModelTest, CapabilitiesAndVersion) {
    ControllerConfig cfg;
    cfg.max_queue_entries = 256;
    cfg.doorbell_stride = 1;
    cfg.timeout_500ms = 7;
    make(cfg);
    const spec::Cap c = cap();
    EXPECT_EQ(c.mqes(), 255u);
    EXPECT_EQ(c.cqr(), 1u);
    EXPECT_EQ(c.dstrd(), 1u);
    EXPECT_EQ(c.to(), 7u);
    EXPECT_EQ(c.css() & spec::Cap::css_nvm, spec::Cap::css_nvm);
    EXPECT_EQ(c.mpsmin(), 0u);
    EXPECT_GE(c.mpsmax(), 0u);
    EXPECT_EQ(bar.read32(spec::reg::vs), spec::vs_1_4.raw);
    // 32-bit halves of CAP agree with the 64-bit read.
    EXPECT_EQ(uint64_t{bar.read32(0)} | uint64_t{bar.read32(4)} << 32, c.raw);
    w32(spec::reg::intms, 0x5);
    EXPECT_EQ(bar.read32(spec::reg::intms), 0x5u);
    w32(spec::reg::intmc, 0x1);
    EXPECT_EQ(bar.read32(spec::reg::intmc), 0x4u);
    EXPECT_EQ(csts(), 0u);
    auto info = env::enumerate();
    ASSERT_TRUE(info.ok());
    EXPECT_EQ((*info)[0].class_code, 0x010802u);
    EXPECT_EQ((*info)[0].vendor_id, 0x1b36);
    // With DSTRD 1 the doorbells are 8 bytes apart: the admin queue works with them.
    enable();
    EXPECT_TRUE(run(spec::make_keep_alive(0)).ok());
}

TEST_F(NvmeModelTest, EnableDisableShutdownHandshakesTakeVirtualTime) {
    ControllerConfig cfg;
    cfg.enable_delay_ns = 5 * kMs;
    make(cfg);
    const uint64_t t0 = sim->now_ns();
    enable();
    EXPECT_GE(sim->now_ns() - t0, 5 * kMs);
    EXPECT_EQ(csts() & 1, 1u);
    // Shutdown: SHST 01 (occurring) then 10 (complete) after the delay.
    w32(spec::reg::cc, spec::Cc{cc_value()}.set_shn(spec::Cc::shn_normal).raw);
    ASSERT_TRUE(poll_until([&] { return spec::Csts{csts()}.shst() != 0; }));
    EXPECT_EQ(spec::Csts{csts()}.shst(), spec::Csts::shst_occurring);
    const uint64_t t1 = sim->now_ns();
    ASSERT_TRUE(poll_until([&] { return spec::Csts{csts()}.shst() == spec::Csts::shst_complete; }));
    EXPECT_GE(sim->now_ns() - t1, 4 * kMs);
    // Disable: RDY drops after the delay.
    w32(spec::reg::cc, 0);
    const uint64_t t2 = sim->now_ns();
    ASSERT_TRUE(poll_until([&] { return (csts() & 1) == 0; }));
    EXPECT_GE(sim->now_ns() - t2, 4 * kMs);
    // SHN cleared: SHST back to 00; the controller enables again and works.
    EXPECT_EQ(spec::Csts{csts()}.shst(), 0u);
    enable();
    EXPECT_TRUE(run(spec::make_keep_alive(0)).ok());
}

TEST_F(NvmeModelTest, InvalidCcVariants) {
    make();
    struct Case {
        const char* what;
        uint32_t cc;
        uint32_t aqa;
    };
    const uint32_t good_aqa = spec::Aqa{}.set_asqs(7).set_acqs(7).raw;
    const Case cases[] = {
        {"iosqes", cc_value(0, 5, 4), good_aqa},
        {"iocqes", cc_value(0, 6, 3), good_aqa},
        {"mps", cc_value(9, 6, 4), good_aqa},
        {"css", spec::Cc{cc_value()}.set_css(1).raw, good_aqa},
        {"aqa zero", cc_value(), 0},
    };
    void* sq = alloc(4096);
    void* cq = alloc(4096);
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        w32(spec::reg::aqa, c.aqa);
        w64(spec::reg::asq, iova(sq));
        w64(spec::reg::acq, iova(cq));
        w32(spec::reg::cc, c.cc);
        ASSERT_TRUE(poll_until([&] { return (csts() & 3) != 0; }));
        EXPECT_EQ(csts() & 3, 2u) << "CFS, not RDY";
        w32(spec::reg::cc, 0);  // reset clears CFS
        ASSERT_TRUE(poll_until([&] { return (csts() & 3) == 0; }));
    }
    enable();
    EXPECT_TRUE(run(spec::make_keep_alive(0)).ok());
}

// ---- admin ---------------------------------------------------------------------------------

TEST_F(NvmeModelTest, IdentifyControllerNamespaceListsAndDescriptors) {
    ControllerConfig cfg;
    cfg.serial = "SN123";
    cfg.namespaces = {{1, 2048, 512, ""}, {3, 1000, 4096, ""}};
    make(cfg);
    enable();
    auto* buf = static_cast<uint8_t*>(alloc(4096));
    auto identify = [&](spec::Cns cns, uint32_t nsid) {
        std::memset(buf, 0xAA, 4096);
        spec::Sqe s = spec::make_identify(0, cns, nsid);
        s.prp1 = iova(buf);
        return run(s);
    };
    ASSERT_TRUE(identify(spec::Cns::ctrlr, 0).ok());
    spec::IdentifyController ic;
    std::memcpy(&ic, buf, sizeof(ic));
    EXPECT_EQ(spec::trimmed(ic.sn), "SN123");
    EXPECT_EQ(spec::trimmed(ic.mn), "Strata Emulated NVMe Controller");
    EXPECT_EQ(ic.vid, 0x1b36);
    EXPECT_EQ(ic.mdts, 5);
    EXPECT_EQ(ic.ver, spec::vs_1_4.raw);
    EXPECT_EQ(ic.sqes, 0x66);
    EXPECT_EQ(ic.cqes, 0x44);
    EXPECT_EQ(ic.nn, 256u);
    EXPECT_TRUE(ic.vwc_present());
    EXPECT_EQ(ic.oncs & spec::oncs::compare, spec::oncs::compare);
    EXPECT_EQ(ic.oncs & spec::oncs::write_zeroes, spec::oncs::write_zeroes);
    EXPECT_EQ(ic.aerl, 3);
    EXPECT_EQ(ic.elpe, 15);
    EXPECT_EQ(ic.oaes & spec::oaes::ns_attribute_notices, spec::oaes::ns_attribute_notices);
    EXPECT_FALSE(ic.sgl_supported());

    ASSERT_TRUE(identify(spec::Cns::ns, 3).ok());
    spec::IdentifyNamespace ns;
    std::memcpy(&ns, buf, sizeof(ns));
    EXPECT_EQ(ns.nsze, 1000u);
    spec::LbaFormat f;
    ASSERT_TRUE(ns.current_lba_format(f));
    EXPECT_EQ(f.data_size_bytes(), 4096u);
    ASSERT_TRUE(identify(spec::Cns::ns, 1).ok());
    std::memcpy(&ns, buf, sizeof(ns));
    EXPECT_EQ(ns.nsze, 2048u);
    ASSERT_TRUE(ns.current_lba_format(f));
    EXPECT_EQ(f.data_size_bytes(), 512u);
    // Inactive NSID: zeroes. Beyond NN: invalid namespace.
    ASSERT_TRUE(identify(spec::Cns::ns, 2).ok());
    EXPECT_EQ(buf[0], 0);
    EXPECT_EQ(code(identify(spec::Cns::ns, 1000)),
              status_of(spec::GenericStatus::invalid_ns_or_format));

    ASSERT_TRUE(identify(spec::Cns::active_ns_list, 0).ok());
    uint32_t ids[3];
    std::memcpy(ids, buf, sizeof(ids));
    EXPECT_EQ(ids[0], 1u);
    EXPECT_EQ(ids[1], 3u);
    EXPECT_EQ(ids[2], 0u);
    ASSERT_TRUE(identify(spec::Cns::active_ns_list, 1).ok());
    std::memcpy(ids, buf, sizeof(ids));
    EXPECT_EQ(ids[0], 3u);

    ASSERT_TRUE(identify(spec::Cns::ns_id_desc_list, 1).ok());
    EXPECT_EQ(buf[0], static_cast<uint8_t>(spec::NidType::eui64));
    EXPECT_EQ(buf[1], 8);
    EXPECT_EQ(buf[12], static_cast<uint8_t>(spec::NidType::nguid));
    EXPECT_EQ(buf[13], 16);
    EXPECT_EQ(buf[32], static_cast<uint8_t>(spec::NidType::uuid));
    EXPECT_EQ(std::memcmp(buf + 4, ns.eui64.data(), 8), 0);
    EXPECT_EQ(code(identify(spec::Cns::ns_id_desc_list, 2)),
              status_of(spec::GenericStatus::invalid_ns_or_format));
    EXPECT_EQ(code(identify(static_cast<spec::Cns>(0x42), 0)),
              status_of(spec::GenericStatus::invalid_field));
    // An unknown admin opcode.
    spec::Sqe bogus{};
    bogus.opc = 0x7E;
    EXPECT_EQ(code(run(bogus)), status_of(spec::GenericStatus::invalid_opcode));
    // A bad data pointer: data transfer error, counted DMA fault.
    spec::Sqe s = spec::make_identify(0, spec::Cns::ctrlr);
    s.prp1 = 0x1000;
    EXPECT_EQ(code(run(s)), status_of(spec::GenericStatus::data_transfer_error));
    EXPECT_GE(ctrl->stats().dma_faults, 1u);
}

TEST_F(NvmeModelTest, CreateAndDeleteQueueErrors) {
    ControllerConfig cfg;
    cfg.max_queue_entries = 64;
    cfg.max_io_queues = 4;
    make(cfg);
    enable();
    void* mem = alloc(8192);
    const uint64_t a = iova(mem);
    using CS = spec::CommandSpecificStatus;
    using GS = spec::GenericStatus;
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 0, 16, a))), status_of(CS::invalid_queue_id));
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 5, 16, a))), status_of(CS::invalid_queue_id));
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 1, 1, a))), status_of(CS::invalid_queue_size));
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 1, 65, a))), status_of(CS::invalid_queue_size));
    spec::Sqe nc = spec::make_create_io_cq(0, 1, 16, a);
    nc.cdw11 = spec::CreateIoCqCdw11{nc.cdw11}.set_pc(0).raw;
    EXPECT_EQ(code(run(nc)), status_of(GS::invalid_field));
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 1, 16, a + 8))),
              status_of(GS::invalid_prp_offset));
    EXPECT_TRUE(run(spec::make_create_io_cq(0, 1, 16, a)).ok());
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 1, 16, a))), status_of(CS::invalid_queue_id));
    // SQs.
    EXPECT_EQ(code(run(spec::make_create_io_sq(0, 1, 16, a + 4096, 2))),
              status_of(CS::completion_queue_invalid));
    EXPECT_EQ(code(run(spec::make_create_io_sq(0, 1, 16, a + 4096, 0))),
              status_of(CS::completion_queue_invalid));
    EXPECT_EQ(code(run(spec::make_create_io_sq(0, 0, 16, a + 4096, 1))),
              status_of(CS::invalid_queue_id));
    EXPECT_EQ(code(run(spec::make_create_io_sq(0, 1, 100, a + 4096, 1))),
              status_of(CS::invalid_queue_size));
    spec::Sqe ns = spec::make_create_io_sq(0, 1, 16, a + 4096, 1);
    ns.cdw11 = spec::CreateIoSqCdw11{ns.cdw11}.set_pc(0).raw;
    EXPECT_EQ(code(run(ns)), status_of(GS::invalid_field));
    EXPECT_TRUE(run(spec::make_create_io_sq(0, 1, 16, a + 4096, 1)).ok());
    EXPECT_EQ(code(run(spec::make_create_io_sq(0, 1, 16, a + 4096, 1))),
              status_of(CS::invalid_queue_id));
    // Deletion.
    EXPECT_EQ(code(run(spec::make_delete_io_cq(0, 1))), status_of(CS::invalid_queue_deletion));
    EXPECT_EQ(code(run(spec::make_delete_io_sq(0, 2))), status_of(CS::invalid_queue_id));
    EXPECT_EQ(code(run(spec::make_delete_io_sq(0, 0))), status_of(CS::invalid_queue_id));
    EXPECT_EQ(code(run(spec::make_delete_io_cq(0, 0))), status_of(CS::invalid_queue_id));
    EXPECT_TRUE(run(spec::make_delete_io_sq(0, 1)).ok());
    EXPECT_TRUE(run(spec::make_delete_io_cq(0, 1)).ok());
    EXPECT_EQ(code(run(spec::make_delete_io_cq(0, 1))), status_of(CS::invalid_queue_id));
}

TEST_F(NvmeModelTest, FeaturesGetSetAndErrors) {
    ControllerConfig cfg;
    cfg.max_io_queues = 8;
    make(cfg);
    enable();
    using GS = spec::GenericStatus;
    auto c = run(spec::make_set_number_of_queues(0, 4, 16));
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(spec::NumberOfQueuesFeature{c.dw0}.nsq(), 3u);
    EXPECT_EQ(spec::NumberOfQueuesFeature{c.dw0}.ncq(), 7u);
    c = run(spec::make_get_features(0, spec::FeatureId::number_of_queues));
    EXPECT_EQ(spec::NumberOfQueuesFeature{c.dw0}.nsq(), 3u);
    EXPECT_EQ(code(run(spec::make_set_features(0, spec::FeatureId::number_of_queues, 0xFFFF))),
              status_of(GS::invalid_field));
    // Queue ids above the allocation are refused.
    void* mem = alloc(4096);
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 6, 16, iova(mem)))) != 0, false);
    EXPECT_EQ(code(run(spec::make_create_io_cq(0, 9, 16, iova(mem)))),
              status_of(spec::CommandSpecificStatus::invalid_queue_id));

    c = run(spec::make_get_features(0, spec::FeatureId::volatile_write_cache));
    EXPECT_EQ(c.dw0, 1u);
    EXPECT_TRUE(run(spec::make_set_features(0, spec::FeatureId::volatile_write_cache, 0)).ok());
    EXPECT_EQ(run(spec::make_get_features(0, spec::FeatureId::volatile_write_cache)).dw0, 0u);
    EXPECT_TRUE(run(spec::make_set_features(0, spec::FeatureId::arbitration, 0x3)).ok());
    EXPECT_EQ(run(spec::make_get_features(0, spec::FeatureId::arbitration)).dw0, 0x3u);
    EXPECT_EQ(run(spec::make_get_features(0, spec::FeatureId::arbitration, 0,
                                          spec::FeatureSelect::default_value))
                  .dw0,
              0u);
    EXPECT_TRUE(run(spec::make_set_features(0, spec::FeatureId::temperature_threshold, 350)).ok());
    EXPECT_EQ(run(spec::make_get_features(0, spec::FeatureId::temperature_threshold)).dw0 & 0xFFFF,
              350u);
    EXPECT_EQ(code(run(spec::make_set_features(0, spec::FeatureId::power_management, 3))),
              status_of(GS::invalid_field));
    EXPECT_TRUE(run(spec::make_set_features(0, spec::FeatureId::async_event_config, 0x100)).ok());
    EXPECT_EQ(run(spec::make_get_features(0, spec::FeatureId::async_event_config)).dw0, 0x100u);
    EXPECT_EQ(code(run(spec::make_set_features(0, spec::FeatureId::host_memory_buffer, 1))),
              status_of(GS::invalid_field));
    EXPECT_EQ(code(run(spec::make_set_features(0, spec::FeatureId::arbitration, 0, 0, true))),
              status_of(spec::CommandSpecificStatus::feature_not_saveable));
}

// ---- I/O -----------------------------------------------------------------------------------

TEST_F(NvmeModelTest, ReadWriteCompareThroughPrpListsCrossingPages) {
    for (uint32_t bs : {512u, 4096u}) {
        SCOPED_TRACE(bs);
        ControllerConfig cfg;
        cfg.namespaces = {{1, 4096, bs, ""}};
        make(cfg);
        enable();
        Queue q = create_io_queue(1, 32);
        const size_t bytes = 64 * 1024;
        // Unaligned start (PRP1 offset 0x200): crosses 17 pages, so PRP2 points to a list.
        auto* raw = static_cast<uint8_t*>(alloc(bytes + 8192));
        uint8_t* wbuf = raw + 0x200;
        for (size_t i = 0; i < bytes; ++i) wbuf[i] = static_cast<uint8_t>(i * 7 + 3);
        const uint32_t blocks = static_cast<uint32_t>(bytes / bs);
        auto c = run(q, rw(spec::NvmOpcode::write, 1, 8, blocks, wbuf, bytes));
        ASSERT_TRUE(c.ok()) << spec::status_name(c).view();
        EXPECT_EQ(c.sqid, 1);
        auto* rraw = static_cast<uint8_t*>(alloc(bytes + 8192));
        uint8_t* rbuf = rraw + 0x804;
        c = run(q, rw(spec::NvmOpcode::read, 1, 8, blocks, rbuf, bytes));
        ASSERT_TRUE(c.ok()) << spec::status_name(c).view();
        EXPECT_EQ(std::memcmp(wbuf, rbuf, bytes), 0);
        // Compare: equal, then a mismatch.
        EXPECT_TRUE(run(q, rw(spec::NvmOpcode::compare, 1, 8, blocks, wbuf, bytes)).ok());
        wbuf[bytes - 1] ^= 1;
        EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::compare, 1, 8, blocks, wbuf, bytes))),
                  status_of(spec::MediaStatus::compare_failure));
        // Write Zeroes (plain and deallocating), then DSM deallocate.
        EXPECT_TRUE(run(q, spec::make_write_zeroes(0, 1, 8, 1)).ok());
        EXPECT_TRUE(run(q, spec::make_write_zeroes(0, 1, 9, 1, true)).ok());
        auto* ranges = static_cast<spec::DsmRange*>(alloc(4096));
        ranges[0] = spec::DsmRange{0, 2, 10};
        spec::Sqe dsm = spec::make_dsm(0, 1, 1);
        dsm.prp1 = iova(ranges);
        EXPECT_TRUE(run(q, dsm).ok());
        std::memset(rbuf, 0xEE, bytes);
        ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 8, blocks, rbuf, bytes)).ok());
        for (size_t i = 0; i < 4 * size_t{bs}; ++i) ASSERT_EQ(rbuf[i], 0) << i;
        EXPECT_EQ(std::memcmp(rbuf + 4 * bs, wbuf + 4 * bs, bytes - 4 * bs - 1), 0);
        EXPECT_TRUE(run(q, spec::make_flush(0, 1)).ok());
        EXPECT_TRUE(run(q, spec::make_flush(0, spec::nsid_all)).ok());
        TearDown();
        SetUp();
    }
}

TEST_F(NvmeModelTest, ChainedPrpListPages) {
    make();
    enable();
    Queue q = create_io_queue(1, 8);
    // 5 pages: PRP1 + 4 list entries. The list starts 16 bytes before the end of its page, so
    // it holds one entry and then chains to the next list page.
    const size_t bytes = 5 * 4096;
    auto* data = static_cast<uint8_t*>(alloc(bytes));
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i ^ (i >> 9));
    auto* lists = static_cast<uint64_t*>(alloc(2 * 4096));
    const uint64_t a = iova(data);
    uint64_t* first = lists + 510;  // offset 4080: slots 510 and 511
    first[0] = a + 4096;
    first[1] = iova(lists + 512);  // chain to the second page
    lists[512] = a + 2 * 4096;
    lists[513] = a + 3 * 4096;
    lists[514] = a + 4 * 4096;
    spec::Sqe w = spec::make_write(0, 1, 100, static_cast<uint32_t>(bytes / 512));
    w.prp1 = a;
    w.prp2 = iova(first);
    ASSERT_TRUE(run(q, w).ok());
    auto* back = static_cast<uint8_t*>(alloc(bytes));
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 100, bytes / 512, back, bytes)).ok());
    EXPECT_EQ(std::memcmp(back, data, bytes), 0);
    // A list entry with an offset: Invalid PRP Offset.
    lists[513] = a + 3 * 4096 + 8;
    EXPECT_EQ(code(run(q, w)), status_of(spec::GenericStatus::invalid_prp_offset));
    // PRP2 used as a data pointer with an offset.
    spec::Sqe two = spec::make_read(0, 1, 0, 16);
    two.prp1 = a;
    two.prp2 = a + 4096 + 512;
    EXPECT_EQ(code(run(q, two)), status_of(spec::GenericStatus::invalid_prp_offset));
    // PRP1 not dword aligned.
    two.prp1 = a + 2;
    EXPECT_EQ(code(run(q, two)), status_of(spec::GenericStatus::invalid_prp_offset));
}

TEST_F(NvmeModelTest, MdtsLbaRangeNamespaceAndOpcodeChecks) {
    ControllerConfig cfg;
    cfg.mdts = 2;  // 16 KiB
    cfg.namespaces = {{1, 1024, 512, ""}};
    make(cfg);
    enable();
    Queue q = create_io_queue(1, 8);
    auto* buf = static_cast<uint8_t*>(alloc(64 * 1024));
    using GS = spec::GenericStatus;
    EXPECT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 0, 32, buf, 16384)).ok());
    EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::read, 1, 0, 33, buf, 33 * 512))),
              status_of(GS::invalid_field));
    EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::write, 1, 1020, 8, buf, 4096))),
              status_of(GS::lba_out_of_range));
    EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::read, 1, ~uint64_t{0} - 2, 8, buf, 4096))),
              status_of(GS::lba_out_of_range));
    EXPECT_EQ(code(run(q, spec::make_write_zeroes(0, 1, 1000, 100))),
              status_of(GS::lba_out_of_range));
    EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::read, 2, 0, 8, buf, 4096))),
              status_of(GS::invalid_ns_or_format));
    EXPECT_EQ(code(run(q, rw(spec::NvmOpcode::read, 0, 0, 8, buf, 4096))),
              status_of(GS::invalid_ns_or_format));
    spec::Sqe bogus = spec::make_flush(0, 1);
    bogus.opc = 0x7F;
    EXPECT_EQ(code(run(q, bogus)), status_of(GS::invalid_opcode));
    // SGL requested from a controller that does not advertise SGLs.
    spec::Sqe sgl = rw(spec::NvmOpcode::read, 1, 0, 8, buf, 4096);
    sgl.set_psdt(spec::Psdt::sgl_mptr_contig);
    EXPECT_EQ(code(run(q, sgl)), status_of(GS::invalid_field));
    // DSM range beyond the namespace.
    auto* ranges = static_cast<spec::DsmRange*>(alloc(4096));
    ranges[0] = spec::DsmRange{0, 10, 1020};
    spec::Sqe dsm = spec::make_dsm(0, 1, 1);
    dsm.prp1 = iova(ranges);
    EXPECT_EQ(code(run(q, dsm)), status_of(GS::lba_out_of_range));
    // Completions carry the SQ head and id.
    auto c = run(q, spec::make_flush(0, 1));
    EXPECT_EQ(c.sqid, 1);
    EXPECT_EQ(c.sqhd, q.sq_tail);
}

TEST_F(NvmeModelTest, SglDataBlocksAndSegments) {
    ControllerConfig cfg;
    cfg.sgl = true;
    make(cfg);
    enable();
    Queue q = create_io_queue(1, 8);
    auto* a = static_cast<uint8_t*>(alloc(4096));
    auto* b = static_cast<uint8_t*>(alloc(4096));
    auto* c = static_cast<uint8_t*>(alloc(4096));
    for (int i = 0; i < 4096; ++i) {
        a[i] = static_cast<uint8_t>(i);
        b[i] = static_cast<uint8_t>(i * 3);
        c[i] = static_cast<uint8_t>(i * 5);
    }
    // Write 8 KiB from one data block descriptor... then three pieces through two segments.
    auto* seg = static_cast<spec::SglDescriptor*>(alloc(4096));
    seg[0] = spec::SglDescriptor::data_block(iova(a), 1000);
    seg[1] = spec::SglDescriptor::segment(iova(seg + 8), 32, true);
    seg[8] = spec::SglDescriptor::data_block(iova(b), 3096);
    seg[9] = spec::SglDescriptor::data_block(iova(c), 4096);
    spec::Sqe w = spec::make_write(0, 1, 0, 16);
    w.set_psdt(spec::Psdt::sgl_mptr_contig);
    w.set_dptr_sgl(spec::SglDescriptor::segment(iova(seg), 32, false));
    auto r = run(q, w);
    ASSERT_TRUE(r.ok()) << spec::status_name(r).view();
    auto* back = static_cast<uint8_t*>(alloc(8192));
    spec::Sqe rd = spec::make_read(0, 1, 0, 16);
    rd.set_psdt(spec::Psdt::sgl_mptr_contig);
    rd.set_dptr_sgl(spec::SglDescriptor::data_block(iova(back), 8192));
    ASSERT_TRUE(run(q, rd).ok());
    EXPECT_EQ(std::memcmp(back, a, 1000), 0);
    EXPECT_EQ(std::memcmp(back + 1000, b, 3096), 0);
    EXPECT_EQ(std::memcmp(back + 4096, c, 4096), 0);
    using GS = spec::GenericStatus;
    rd.set_dptr_sgl(spec::SglDescriptor::data_block(iova(back), 4096));
    EXPECT_EQ(code(run(q, rd)), status_of(GS::data_sgl_length_invalid));
    rd.set_dptr_sgl(spec::SglDescriptor::bit_bucket(8192));
    EXPECT_EQ(code(run(q, rd)), status_of(GS::sgl_descriptor_type_invalid));
    rd.set_dptr_sgl(spec::SglDescriptor::segment(iova(seg), 20, true));
    EXPECT_EQ(code(run(q, rd)), status_of(GS::invalid_sgl_segment_descriptor));
    // A segment descriptor inside the last segment.
    seg[20] = spec::SglDescriptor::segment(iova(seg), 16, false);
    rd.set_dptr_sgl(spec::SglDescriptor::segment(iova(seg + 20), 16, true));
    EXPECT_EQ(code(run(q, rd)), status_of(GS::invalid_sgl_segment_descriptor));
    // A segment that points at itself forever ends with a clear status.
    seg[30] = spec::SglDescriptor::segment(iova(seg + 30), 16, false);
    rd.set_dptr_sgl(spec::SglDescriptor::segment(iova(seg + 30), 16, false));
    EXPECT_FALSE(run(q, rd).ok());
}

TEST_F(NvmeModelTest, CompletionQueueFullHoldsCompletionsBack) {
    make();
    enable();
    Queue q = create_io_queue(1, 16, 4);  // CQ of 4 entries: 3 usable
    for (int i = 0; i < 8; ++i) submit(q, spec::make_flush(0, 1), i == 7);
    run_until_idle();
    // Exactly three entries posted; the fourth slot was never written.
    EXPECT_EQ(q.cq[0].status & 1, 1);
    EXPECT_EQ(q.cq[2].status & 1, 1);
    EXPECT_EQ(q.cq[3].status, 0);
    EXPECT_GE(ctrl->stats().held_completions, 5u);
    std::vector<uint16_t> cids;
    // The queue size for wait(): completions wrap at 4.
    Queue view = q;
    view.size = 4;
    for (int i = 0; i < 8; ++i) {
        auto c = wait(view);
        EXPECT_TRUE(c.ok());
        cids.push_back(c.cid);
    }
    for (size_t i = 1; i < cids.size(); ++i) EXPECT_EQ(cids[i], cids[i - 1] + 1);
}

TEST_F(NvmeModelTest, InvalidDoorbellsAreCountedAndReported) {
    make();
    enable();
    submit(admin, spec::make_async_event_request(0));
    run_until_idle();
    EXPECT_FALSE(has_completion(admin));
    w32(sq_doorbell(5), 1);  // no such queue
    auto c = wait(admin);
    ASSERT_TRUE(c.ok());
    spec::AsyncEventCompletion ev{c.dw0};
    EXPECT_EQ(ev.type(), spec::AsyncEventType::error);
    EXPECT_EQ(ev.info(), static_cast<uint8_t>(spec::AsyncErrorInfo::write_to_invalid_doorbell));
    EXPECT_EQ(ev.log_page(), static_cast<uint8_t>(spec::LogPage::error_info));
    EXPECT_EQ(ctrl->stats().invalid_doorbells, 1u);
    // Value beyond the queue size; the AEN is masked until the error log is read.
    submit(admin, spec::make_async_event_request(0));
    w32(sq_doorbell(0), 1000);
    run_until_idle();
    EXPECT_EQ(ctrl->stats().invalid_doorbells, 2u);
    EXPECT_FALSE(has_completion(admin));
    auto* log = alloc(4096);
    spec::Sqe glp = spec::make_get_log_page(0, spec::LogPage::error_info, 0, 1024);
    glp.prp1 = iova(log);
    submit(admin, glp);
    c = wait(admin);
    spec::Cqe other = wait(admin);
    // One of the two is the AER (invalid value), the other the log page.
    const spec::Cqe& aer = c.cid == glp.cid ? other : c;
    EXPECT_EQ(spec::AsyncEventCompletion{aer.dw0}.info(),
              static_cast<uint8_t>(spec::AsyncErrorInfo::invalid_doorbell_write_value));
    // A far-away doorbell offset inside the BAR and a bad CQ head are counted too.
    w32(bar.size_bytes() - 4, 3);
    w32(cq_doorbell(0), 30);
    run_until_idle();
    EXPECT_EQ(ctrl->stats().invalid_doorbells, 4u);
    EXPECT_TRUE(run(spec::make_keep_alive(0)).ok());
}

TEST_F(NvmeModelTest, AsyncEventOnNamespaceAddAndChangedList) {
    make();
    enable();
    submit(admin, spec::make_async_event_request(0));
    run_until_idle();
    on(threads[1], [&] { ASSERT_TRUE(ctrl->add_namespace({2, 100, 4096, ""}).ok()); });
    auto c = wait(admin);
    ASSERT_TRUE(c.ok());
    spec::AsyncEventCompletion ev{c.dw0};
    EXPECT_EQ(ev.type(), spec::AsyncEventType::notice);
    EXPECT_EQ(ev.info(), static_cast<uint8_t>(spec::AsyncNoticeInfo::ns_attribute_changed));
    EXPECT_EQ(ev.log_page(), static_cast<uint8_t>(spec::LogPage::changed_ns_list));
    auto* log = static_cast<uint32_t*>(alloc(4096));
    spec::Sqe glp = spec::make_get_log_page(0, spec::LogPage::changed_ns_list, 0, 4096);
    glp.prp1 = iova(log);
    ASSERT_TRUE(run(glp).ok());
    EXPECT_EQ(log[0], 2u);
    EXPECT_EQ(log[1], 0u);
    // Read again: cleared.
    ASSERT_TRUE(run(glp).ok());
    EXPECT_EQ(log[0], 0u);
    // Too many AERs: limit exceeded.
    for (int i = 0; i < 4; ++i) submit(admin, spec::make_async_event_request(0));
    c = run(spec::make_async_event_request(0));
    EXPECT_EQ(code(c), status_of(spec::CommandSpecificStatus::async_event_limit_exceeded));
    on(threads[1], [&] { ASSERT_TRUE(ctrl->remove_namespace(2).ok()); });
    c = wait(admin);
    EXPECT_EQ(spec::AsyncEventCompletion{c.dw0}.type(), spec::AsyncEventType::notice);
    on(threads[1], [&] {
        EXPECT_EQ(ctrl->remove_namespace(2).code(), Errc::not_found);
        EXPECT_EQ(ctrl->add_namespace({1, 100, 512, ""}).code(), Errc::already_exists);
        EXPECT_EQ(ctrl->add_namespace({9, 100, 1000, ""}).code(), Errc::invalid_argument);
    });
    // Unknown log page.
    glp = spec::make_get_log_page(0, static_cast<spec::LogPage>(0x33), 0, 512);
    glp.prp1 = iova(log);
    EXPECT_EQ(code(run(glp)), status_of(spec::CommandSpecificStatus::invalid_log_page));
}

TEST_F(NvmeModelTest, SmartLogCountsHostCommandsAndData) {
    make();
    enable();
    Queue q = create_io_queue(1, 8);
    auto* buf = alloc(8192);
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 0, 16, buf, 8192)).ok());
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 0, 16, buf, 8192)).ok());
    auto* log = alloc(4096);
    spec::Sqe glp = spec::make_get_log_page(0, spec::LogPage::smart_health, spec::nsid_all, 512);
    glp.prp1 = iova(log);
    ASSERT_TRUE(run(glp).ok());
    spec::SmartHealthLog smart;
    std::memcpy(&smart, log, sizeof(smart));
    EXPECT_EQ(smart.host_write_commands.lo(), 3u);
    EXPECT_EQ(smart.host_read_commands.lo(), 1u);
    EXPECT_EQ(smart.data_units_written.lo(), 1u);  // 48 units of 512 bytes, rounded up
    EXPECT_GT(smart.composite_temperature.get(), 273);
    // Offset not dword aligned.
    glp.cdw12 = 2;
    EXPECT_EQ(code(run(glp)), status_of(spec::GenericStatus::invalid_field));
}

TEST_F(NvmeModelTest, LatencyIsVirtualTimeAndAbortCatchesQueuedCommands) {
    ControllerConfig cfg;
    cfg.io_latency[static_cast<uint8_t>(spec::NvmOpcode::read)] = {LatencySpec::Kind::fixed,
                                                                   200'000, 0};
    make(cfg);
    enable();
    Queue q = create_io_queue(1, 8);
    auto* buf = alloc(4096);
    const uint64_t t0 = sim->now_ns();
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 0, 8, buf, 4096)).ok());
    EXPECT_GE(sim->now_ns() - t0, 200'000u);
    // Abort a read still waiting for its latency.
    spec::Sqe r = rw(spec::NvmOpcode::read, 1, 0, 8, buf, 4096);
    r.cid = 77;
    const uint64_t before = ctrl->stats().commands;
    submit(q, r);
    poll_until([&] { return ctrl->stats().commands >= before + 1; });
    auto a = run(spec::make_abort(0, 1, 77));
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.dw0 & 1, 0u);
    auto c = wait(q);
    EXPECT_EQ(c.cid, 77);
    EXPECT_EQ(code(c), status_of(spec::GenericStatus::abort_requested));
    // Nothing to abort: "not aborted".
    a = run(spec::make_abort(0, 1, 77));
    EXPECT_EQ(a.dw0 & 1, 1u);
    // Zero-latency mode.
    on(threads[1], [&] { ctrl->set_zero_latency(true); });
    const uint64_t t1 = sim->now_ns();
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 0, 8, buf, 4096)).ok());
    EXPECT_LT(sim->now_ns() - t1, 200'000u);
}

// ---- faults --------------------------------------------------------------------------------

class NvmeModelFaultTest : public NvmeModelTest {
protected:
    void SetUp() override {
        NvmeModelTest::SetUp();
        make();
        enable();
        q = create_io_queue(1, 8);
        buf = static_cast<uint8_t*>(alloc(4096));
        std::memset(buf, 0x5A, 4096);
        ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 0, 8, buf, 4096)).ok());
    }
    uint32_t add_rule(FaultAction action, uint8_t opcode, uint16_t status = 0,
                      uint64_t delay_ns = 0, bool torn = false) {
        FaultRule r;
        r.name = "test";
        r.match.opcode = opcode;
        r.action = action;
        r.status = status;
        r.delay_ns = delay_ns;
        r.torn = torn;
        uint32_t id = 0;
        on(threads[1], [&] { id = ctrl->faults().add(r); });
        return id;
    }
    spec::Sqe read_cmd() { return rw(spec::NvmOpcode::read, 1, 0, 8, buf, 4096); }
    Queue q;
    uint8_t* buf = nullptr;
};

constexpr uint8_t kRead = static_cast<uint8_t>(spec::NvmOpcode::read);
constexpr uint8_t kWrite = static_cast<uint8_t>(spec::NvmOpcode::write);

TEST_F(NvmeModelFaultTest, ErrorStatus) {
    add_rule(FaultAction::error_status, kRead, 0x0281);  // media: unrecovered read error
    auto c = run(q, read_cmd());
    EXPECT_EQ(c.sct(), 2);
    EXPECT_EQ(c.sc(), 0x81);
    EXPECT_EQ(ctrl->stats().injected_errors, 1u);
    // Writes are not matched.
    EXPECT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 0, 8, buf, 4096)).ok());
}

TEST_F(NvmeModelFaultTest, DelayDropAndCorrupt) {
    add_rule(FaultAction::delay, kRead, 0, 3 * kMs);
    const uint64_t t0 = sim->now_ns();
    ASSERT_TRUE(run(q, read_cmd()).ok());
    EXPECT_GE(sim->now_ns() - t0, 3 * kMs);
    on(threads[1], [&] { ctrl->faults().clear(); });
    add_rule(FaultAction::drop_completion, kRead);
    submit(q, read_cmd());
    EXPECT_FALSE(poll_until([&] { return has_completion(q); }, 50 * kMs));
    EXPECT_EQ(ctrl->stats().dropped_completions, 1u);
    on(threads[1], [&] { ctrl->faults().clear(); });
    add_rule(FaultAction::corrupt_read, kRead);
    std::memset(buf, 0, 4096);
    ASSERT_TRUE(run(q, read_cmd()).ok());
    EXPECT_EQ(buf[0], 0xA5);  // 0x5A flipped
    EXPECT_EQ(buf[1], 0x5A);
    EXPECT_EQ(buf[512], 0xA5);
}

TEST_F(NvmeModelFaultTest, FatalStatusStopsProcessingUntilReset) {
    add_rule(FaultAction::fatal_status, kRead);
    submit(q, read_cmd());
    ASSERT_TRUE(poll_until([&] { return (csts() & 2) != 0; }));
    EXPECT_FALSE(has_completion(q));
    on(threads[1], [&] { ctrl->faults().clear(); });
    w32(spec::reg::cc, 0);
    ASSERT_TRUE(poll_until([&] { return csts() == 0; }));
    enable();
    EXPECT_TRUE(run(spec::make_keep_alive(0)).ok());
}

TEST_F(NvmeModelFaultTest, SurpriseRemove) {
    add_rule(FaultAction::surprise_remove, kRead);
    submit(q, read_cmd());
    ASSERT_TRUE(poll_until([&] { return fn->removed() || csts() == 0xFFFFFFFFu; }));
    EXPECT_EQ(csts(), 0xFFFFFFFFu);
    EXPECT_TRUE(ctrl->function().removed());
}

TEST_F(NvmeModelFaultTest, PowerCutFaultLosesUnflushedWrites) {
    std::memset(buf, 0x11, 4096);
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 64, 8, buf, 4096)).ok());  // cached
    add_rule(FaultAction::power_cut, kWrite);
    submit(q, rw(spec::NvmOpcode::write, 1, 128, 8, buf, 4096));
    ASSERT_TRUE(poll_until([&] { return csts() == 0; }));
    on(threads[1], [&] { ctrl->faults().clear(); });
    enable();
    q = create_io_queue(1, 8);
    std::memset(buf, 0xFF, 4096);
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 64, 8, buf, 4096)).ok());
    EXPECT_EQ(buf[0], 0);  // lost
    EXPECT_EQ(buf[4095], 0);
}

TEST_F(NvmeModelTest, PowerCutKeepsFlushedFuaAndUncachedWrites) {
    make();
    enable();
    Queue q = create_io_queue(1, 8);
    auto* buf = static_cast<uint8_t*>(alloc(4096));
    auto write = [&](uint64_t lba, uint8_t v, bool fua) {
        std::memset(buf, v, 4096);
        ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, lba, 8, buf, 4096, fua)).ok());
    };
    write(0, 0x01, false);
    ASSERT_TRUE(run(q, spec::make_flush(0, 1)).ok());
    write(8, 0x02, true);
    write(16, 0x03, false);  // flushed when the cache is switched off
    ASSERT_TRUE(run(spec::make_set_features(0, spec::FeatureId::volatile_write_cache, 0)).ok());
    write(24, 0x04, false);  // cache off: durable
    ASSERT_TRUE(run(spec::make_set_features(0, spec::FeatureId::volatile_write_cache, 1)).ok());
    write(32, 0x05, false);  // lost
    on(threads[1], [&] { ctrl->power_cut(false); });
    EXPECT_EQ(csts(), 0u);
    EXPECT_EQ(bar.read32(spec::reg::cc), 0u);
    enable();
    q = create_io_queue(1, 8);
    auto read = [&](uint64_t lba) {
        std::memset(buf, 0xEE, 4096);
        EXPECT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, lba, 8, buf, 4096)).ok());
        return buf[100];
    };
    EXPECT_EQ(read(0), 0x01);
    EXPECT_EQ(read(8), 0x02);
    EXPECT_EQ(read(16), 0x03);
    EXPECT_EQ(read(24), 0x04);
    EXPECT_EQ(read(32), 0x00);
    // Torn: a multi-sector write may keep a prefix of its sectors, never a non-prefix.
    std::vector<uint8_t> big(16 * 4096, 0x77);
    auto* wb = static_cast<uint8_t*>(alloc(big.size()));
    std::memcpy(wb, big.data(), big.size());
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 1000, 128, wb, big.size())).ok());
    on(threads[1], [&] { ctrl->power_cut(true); });
    enable();
    q = create_io_queue(1, 8);
    std::memset(wb, 0xEE, big.size());
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 1000, 128, wb, big.size())).ok());
    bool zero_seen = false;
    for (size_t s = 0; s < 128; ++s) {
        const uint8_t v = wb[s * 512];
        ASSERT_TRUE(v == 0x77 || v == 0) << s;
        if (v == 0) zero_seen = true;
        if (zero_seen) {
            ASSERT_EQ(v, 0) << "sector " << s << " survived after a lost one";
        }
    }
    // SMART counts the unsafe shutdowns.
    auto* log = alloc(4096);
    spec::Sqe glp = spec::make_get_log_page(0, spec::LogPage::smart_health, 0, 512);
    glp.prp1 = iova(log);
    ASSERT_TRUE(run(glp).ok());
    spec::SmartHealthLog smart;
    std::memcpy(&smart, log, sizeof(smart));
    EXPECT_EQ(smart.unsafe_shutdowns.lo(), 2u);
}

TEST_F(NvmeModelTest, SeveralQueuesRoundRobinAndSqDeletionAborts) {
    ControllerConfig cfg;
    cfg.io_latency[static_cast<uint8_t>(spec::NvmOpcode::flush)] = {LatencySpec::Kind::uniform,
                                                                    10'000, 50'000};
    make(cfg);
    enable();
    Queue a = create_io_queue(1, 16);
    Queue b = create_io_queue(2, 16);
    for (int i = 0; i < 10; ++i) {
        submit(a, spec::make_flush(0, 1));
        submit(b, spec::make_flush(0, 1));
    }
    for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(wait(a).ok());
        EXPECT_TRUE(wait(b).ok());
    }
    // Delete an SQ with commands still held: they complete as aborted by SQ deletion.
    const uint64_t before = ctrl->stats().commands;
    for (int i = 0; i < 3; ++i) submit(a, spec::make_flush(0, 1));
    poll_until([&] { return ctrl->stats().commands >= before + 3; });
    ASSERT_TRUE(run(spec::make_delete_io_sq(0, 1)).ok());
    for (int i = 0; i < 3; ++i) {
        auto c = wait(a);
        EXPECT_EQ(code(c), status_of(spec::GenericStatus::aborted_sq_deletion));
    }
}

TEST_F(NvmeModelTest, RoundRobinArbitrationAlternatesQueues) {
    make();
    enable();
    // Two SQs bound to one CQ: the CQ shows the order the controller picked commands in.
    auto* cq = static_cast<spec::Cqe*>(alloc(4096));
    ASSERT_TRUE(run(spec::make_create_io_cq(0, 1, 64, iova(cq))).ok());
    Queue a, b;
    for (Queue* q : {&a, &b}) {
        q->qid = q == &a ? 1 : 2;
        q->size = 16;
        q->sq = static_cast<spec::Sqe*>(alloc(4096));
        q->cq = cq;
        ASSERT_TRUE(run(spec::make_create_io_sq(0, q->qid, 16, iova(q->sq), 1)).ok());
    }
    for (int i = 0; i < 6; ++i) {
        submit(a, spec::make_flush(0, 1), false);
        submit(b, spec::make_flush(0, 1), false);
    }
    on(threads[0], [&] {  // both doorbells in one step
        bar.write32(sq_doorbell(1), a.sq_tail);
        bar.write32(sq_doorbell(2), b.sq_tail);
    });
    Queue view{1, 64, nullptr, cq};
    std::vector<uint16_t> order;
    for (int i = 0; i < 12; ++i) order.push_back(wait(view).sqid);
    // Arbitration burst 1 (AB = 0): the queues alternate.
    for (size_t i = 1; i < order.size(); ++i) EXPECT_NE(order[i], order[i - 1]) << i;
    // AB = 2 (bursts of 4).
    ASSERT_TRUE(run(spec::make_set_features(0, spec::FeatureId::arbitration, 2)).ok());
    for (int i = 0; i < 8; ++i) {
        submit(a, spec::make_flush(0, 1), false);
        submit(b, spec::make_flush(0, 1), false);
    }
    on(threads[0], [&] {
        bar.write32(sq_doorbell(1), a.sq_tail);
        bar.write32(sq_doorbell(2), b.sq_tail);
    });
    order.clear();
    for (int i = 0; i < 16; ++i) order.push_back(wait(view).sqid);
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], order[i - i % 4]) << i;
}

// Exhaustive power-cut loop: a fixed workload of writes (some FUA) and flushes; for every step
// i, a fresh controller runs steps 0..i, loses power (torn on odd i) and comes back. What was
// flushed or written with FUA must read back; a write that was not may be lost (or, torn, keep
// a prefix of its sectors) but never corrupts anything else.
TEST_F(NvmeModelTest, PowerCutAfterEveryStepKeepsDurableWrites) {
    struct Step {
        enum Kind { write, flush } kind;
        uint64_t lba;
        uint8_t value;
        bool fua;
    };
    const std::vector<Step> steps = {
        {Step::write, 0, 1, false},   {Step::write, 16, 2, true},  {Step::flush, 0, 0, false},
        {Step::write, 0, 3, false},   {Step::write, 32, 4, false}, {Step::write, 16, 5, false},
        {Step::flush, 0, 0, false},   {Step::write, 48, 6, true},  {Step::write, 0, 7, false},
        {Step::write, 32, 8, true},   {Step::write, 64, 9, false}, {Step::flush, 0, 0, false},
        {Step::write, 64, 10, false},
    };
    for (size_t cut = 0; cut < steps.size(); ++cut) {
        SCOPED_TRACE(cut);
        const bool torn = cut % 2 == 1;
        make();
        enable();
        Queue q = create_io_queue(1, 8);
        auto* buf = static_cast<uint8_t*>(alloc(8192));
        // Per LBA range: the durable value and the values written since (lost or torn).
        std::map<uint64_t, uint8_t> durable;
        std::map<uint64_t, std::vector<uint8_t>> since;
        for (size_t i = 0; i <= cut; ++i) {
            const Step& st = steps[i];
            if (st.kind == Step::flush) {
                ASSERT_TRUE(run(q, spec::make_flush(0, 1)).ok());
                for (auto& [lba, vals] : since) {
                    if (!vals.empty()) durable[lba] = vals.back();
                    vals.clear();
                }
                continue;
            }
            std::memset(buf, st.value, 8192);
            ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, st.lba, 16, buf, 8192, st.fua)).ok());
            if (st.fua) {
                durable[st.lba] = st.value;
                since[st.lba].clear();
            } else {
                since[st.lba].push_back(st.value);
            }
        }
        on(threads[1], [&] { ctrl->power_cut(torn); });
        enable();
        q = create_io_queue(1, 8);
        for (uint64_t lba = 0; lba <= 64; lba += 16) {
            std::memset(buf, 0xEE, 8192);
            ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, lba, 16, buf, 8192)).ok());
            const uint8_t base = durable.count(lba) ? durable[lba] : 0;
            const auto& lost = since[lba];
            for (size_t sector = 0; sector < 16; ++sector) {
                const uint8_t v = buf[sector * 512];
                const bool ok =
                    v == base || (torn && std::find(lost.begin(), lost.end(), v) != lost.end());
                ASSERT_TRUE(ok) << "lba " << lba << " sector " << sector << " value " << int(v);
                ASSERT_EQ(buf[sector * 512 + 511], v) << "sector not whole";
            }
        }
        if (fn) (void)fn->detach();
        fn.reset();
        on(threads[1], [&] { ctrl.reset(); });
        bus.reset();
        bus = std::make_unique<PciBus>();
    }
}

TEST_F(NvmeModelTest, FileBackedNamespaceSurvivesTheController) {
    char path[] = "/tmp/strata_nvme_model_XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    unlink(path);
    ControllerConfig cfg;
    cfg.namespaces = {{1, 4096, 4096, path}};
    make(cfg);
    enable();
    Queue q = create_io_queue(1, 8);
    auto* buf = static_cast<uint8_t*>(alloc(8192));
    for (int i = 0; i < 8192; ++i) buf[i] = static_cast<uint8_t>(i * 13);
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::write, 1, 100, 2, buf, 8192)).ok());
    ASSERT_TRUE(run(q, spec::make_flush(0, 1)).ok());
    (void)fn->detach();
    fn.reset();
    on(threads[1], [&] { ctrl.reset(); });
    bus.reset();
    bus = std::make_unique<PciBus>();
    make(cfg);
    enable();
    q = create_io_queue(1, 8);
    auto* back = static_cast<uint8_t*>(alloc(8192));
    ASSERT_TRUE(run(q, rw(spec::NvmOpcode::read, 1, 100, 2, back, 8192)).ok());
    EXPECT_EQ(std::memcmp(back, buf, 8192), 0);
    unlink(path);
}

// DmaPort::store32_release (the CQE dword 3 store): lands, and an unaligned or unmapped IOVA is a
// counted fault, never a crash.
TEST_F(NvmeModelTest, DmaStore32Release) {
    make();
    auto* mem = static_cast<uint32_t*>(alloc(4096));
    DmaPort& dma = ctrl->function().dma();
    const uint64_t faults = dma.fault_count();
    const uint64_t at = iova(mem) + 8;
    // On the model's Thread, as its poller would: a fault's log line reads the simulated clock.
    on(threads[1], [&] {
        EXPECT_TRUE(dma.store32_release(at, 0xA5A5F00Du).ok());
        EXPECT_EQ(mem[2], 0xA5A5F00Du);
        EXPECT_EQ(dma.store32_release(at - 6, 1).code(), Errc::invalid_argument);
        EXPECT_EQ(dma.store32_release(0x1000, 1).code(), Errc::dma_fault);
    });
    EXPECT_EQ(dma.fault_count(), faults + 2);
}

// Same seeds, same run: the model's latency draws, fault probabilities and completion order are
// all seeded, so the simulator's trace hash repeats; another model seed changes it.
TEST_F(NvmeModelTest, SeededRunsAreDeterministic) {
    auto workload = [&](uint64_t model_seed) {
        ControllerConfig cfg;
        cfg.seed = model_seed;
        cfg.io_latency[static_cast<uint8_t>(spec::NvmOpcode::write)] = {
            LatencySpec::Kind::exponential, 30'000, 0};
        cfg.io_latency[static_cast<uint8_t>(spec::NvmOpcode::read)] = {LatencySpec::Kind::uniform,
                                                                       5'000, 90'000};
        make(cfg);
        FaultRule r;
        r.name = "sometimes";
        r.match.opcode = static_cast<uint8_t>(spec::NvmOpcode::read);
        r.match.probability = 0.3;
        r.action = FaultAction::delay;
        r.delay_ns = 250'000;
        on(threads[1], [&] { ctrl->faults().add(r); });
        enable();
        Queue a = create_io_queue(1, 16);
        Queue b = create_io_queue(2, 16);
        auto* buf = alloc(16 * 4096);
        for (int round = 0; round < 8; ++round) {
            for (int i = 0; i < 6; ++i) {
                auto* p = static_cast<uint8_t*>(buf) + i * 4096;
                Queue& q = i % 2 ? a : b;
                const auto op =
                    (round + i) % 3 == 0 ? spec::NvmOpcode::write : spec::NvmOpcode::read;
                submit(q, rw(op, 1, uint64_t(i) * 8, 8, p, 4096));
            }
            for (int i = 0; i < 3; ++i) {
                EXPECT_TRUE(wait(a).ok());
                EXPECT_TRUE(wait(b).ok());
            }
        }
        const uint64_t h = sim->trace_hash() ^ sim->now_ns();
        TearDown();
        SetUp();
        return h;
    };
    const uint64_t first = workload(42);
    EXPECT_EQ(workload(42), first);
    EXPECT_NE(workload(43), first);
}

TEST_F(NvmeModelTest, BadConfigIsRefused) {
    on(threads[1], [&] {
        ControllerConfig cfg;
        cfg.max_queue_entries = 1;
        auto c = Controller::create(*bus, kAddr, cfg, *threads[1]);
        ASSERT_FALSE(c.ok());
        EXPECT_NE(c.error().message().find("max_queue_entries"), std::string::npos);
        cfg = {};
        cfg.namespaces = {{1, 10, 520, ""}};
        EXPECT_EQ(Controller::create(*bus, kAddr, cfg, *threads[1]).code(), Errc::invalid_argument);
        cfg = {};
        cfg.namespaces = {{1, 10, 512, ""}, {1, 10, 512, ""}};
        EXPECT_EQ(Controller::create(*bus, kAddr, cfg, *threads[1]).code(), Errc::already_exists);
    });
}

}  // namespace
}  // namespace strata::hwemu::nvme
