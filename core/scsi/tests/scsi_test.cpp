// The SCSI layer on the simulator over malloc and error bdevs: every command's good path and
// the sense bytes of its error paths, unit attentions (power on per nexus, LUN add/remove,
// reset, mode change), persistent reservations across two nexuses, task management, medium
// errors and hot-removal under I/O.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/bdev/bdev.h>
#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/sim_fixture.h>
#include <strata/scsi/scsi.h>

#include "error/error.h"
#include "malloc/malloc.h"

namespace strata::scsi {
namespace {

constexpr const char* kI1 = "iqn.2016-06.io.spdk:init1,i,0x000000000001";
constexpr const char* kI2 = "iqn.2016-06.io.spdk:init2,i,0x000000000002";
constexpr uint32_t kBlocks = 1024;

// One command: the Task plus its data buffer and what the callback saw.
struct Cmd {
    Task t;
    std::vector<uint8_t> buf;
    iovec iov{};
    int calls = 0;

    static void done(Task& t, void* ctx) {
        auto* c = static_cast<Cmd*>(ctx);
        EXPECT_EQ(&c->t, &t);
        ++c->calls;
    }
    uint8_t key() const {
        return (t.sense[0] & 0x7F) == 0x72 ? t.sense[1] & 0x0F : t.sense[2] & 0x0F;
    }
    uint16_t asc() const {
        return (t.sense[0] & 0x7F) == 0x72 ? uint16_t(t.sense[2] << 8 | t.sense[3])
                                            : uint16_t(t.sense[12] << 8 | t.sense[13]);
    }
    bool check(uint8_t k, uint16_t a) const {
        return t.status == status::check_condition && key() == k && asc() == a;
    }
};

std::vector<uint8_t> cdb_of(std::initializer_list<int> bytes) {
    std::vector<uint8_t> v;
    for (int b : bytes) v.push_back(uint8_t(b));
    return v;
}

void be(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) p[i] = uint8_t(v >> (8 * (n - 1 - i)));
}

std::vector<uint8_t> rw10(uint8_t op, uint32_t lba, uint16_t n, uint8_t flags = 0) {
    std::vector<uint8_t> c(10, 0);
    c[0] = op;
    c[1] = flags;
    be(&c[2], lba, 4);
    be(&c[7], n, 2);
    return c;
}
std::vector<uint8_t> rw12(uint8_t op, uint32_t lba, uint32_t n, uint8_t flags = 0) {
    std::vector<uint8_t> c(12, 0);
    c[0] = op;
    c[1] = flags;
    be(&c[2], lba, 4);
    be(&c[6], n, 4);
    return c;
}
std::vector<uint8_t> rw16(uint8_t op, uint64_t lba, uint32_t n, uint8_t flags = 0) {
    std::vector<uint8_t> c(16, 0);
    c[0] = op;
    c[1] = flags;
    be(&c[2], lba, 8);
    be(&c[10], n, 4);
    return c;
}

class ScsiTest : public runtime::testing::SimFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        start_sim(7, 2);
        on(t0(), [] {
            ASSERT_TRUE(bdev::malloc_create({"M0", kBlocks, 512, {}, 0}).ok());
            ASSERT_TRUE(bdev::malloc_create({"M1", kBlocks, 512, {}, 0}).ok());
        });
        on(t0(), [&] {
            auto d = create_device({.name = "iqn.2016-06.io.spdk:disk1", .id = 3,
                                    .luns = {{0, "M0"}}});
            ASSERT_TRUE(d.ok()) << d.error().message();
            dev = *d;
        });
    }
    void TearDown() override {
        if (dev != nullptr) {
            bool gone = false;
            on(t0(), [&] { destroy_device(*dev, [&] { gone = true; }); });
            EXPECT_TRUE(poll_until([&] { return gone; }));
        }
        run_until_idle();
        if (bdev::find("EE_M1") != nullptr) {
            // error_delete also forgets the config that would recreate EE_M1 over the next M1.
            bool gone = false;
            on(t0(), [&] { bdev::error_delete("EE_M1", [&](Result<void>) { gone = true; }); });
            poll_until([&] { return gone; });
        }
        for (const char* n : {"M0", "M1"}) {
            bool gone = false;
            on(t0(), [&] { bdev::unregister_bdev(n, [&](Result<void>) { gone = true; }); });
            poll_until([&] { return gone; });
        }
        run_until_idle();
        SimFixture::TearDown();
        env::fini();
    }
    runtime::Thread* t0() { return threads[0]; }

    // Builds a command (data-out from `out`, or a data-in buffer of `in_len` bytes).
    std::unique_ptr<Cmd> make(const std::vector<uint8_t>& cdb, uint32_t in_len = 0,
                              const std::vector<uint8_t>& out = {}, uint64_t lun = 0,
                              const char* port = kI1) {
        auto c = std::make_unique<Cmd>();
        std::memcpy(c->t.cdb, cdb.data(), cdb.size());
        c->t.cdb_len = uint8_t(cdb.size());
        c->t.lun = lun;
        c->t.initiator_port = port;
        if (!out.empty()) {
            c->buf = out;
            c->t.dir = DataDir::to_dev;
        } else if (in_len != 0) {
            c->buf.assign(in_len, 0xEE);
            c->t.dir = DataDir::from_dev;
        }
        c->t.transfer_length = uint32_t(c->buf.size());
        if (!c->buf.empty()) {
            c->iov = {c->buf.data(), c->buf.size()};
            c->t.iovs = &c->iov;
            c->t.iovcnt = 1;
        }
        c->t.done = &Cmd::done;
        c->t.done_ctx = c.get();
        return c;
    }
    void start(Cmd& c) {
        on(t0(), [&] { submit(*dev, c.t); });
    }
    void wait(Cmd& c) {
        EXPECT_TRUE(poll_until([&] { return c.calls > 0; }));
        EXPECT_EQ(c.calls, 1);
    }
    std::unique_ptr<Cmd> run(const std::vector<uint8_t>& cdb, uint32_t in_len = 0,
                             const std::vector<uint8_t>& out = {}, uint64_t lun = 0,
                             const char* port = kI1) {
        auto c = make(cdb, in_len, out, lun, port);
        bool inline_done = false;
        on(t0(), [&] {
            submit(*dev, c->t);
            inline_done = c->calls != 0;
        });
        EXPECT_FALSE(inline_done) << "completed inside submit()";
        wait(*c);
        return c;
    }
    // Clears the power-on unit attention of `port` on `lun`.
    void clear_ua(uint64_t lun = 0, const char* port = kI1) {
        for (int i = 0; i < 8; ++i)
            if (run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, lun, port)->t.status == status::good) return;
        ADD_FAILURE() << "unit attention never cleared";
    }
    void tmf(MgmtTask& m) {
        int calls = 0;
        m.done = [](MgmtTask&, void* ctx) { ++*static_cast<int*>(ctx); };
        m.done_ctx = &calls;
        on(t0(), [&] {
            manage(*dev, m);
            EXPECT_EQ(calls, 0);
        });
        EXPECT_TRUE(poll_until([&] { return calls > 0; }));
        EXPECT_EQ(calls, 1);
    }
    std::vector<uint8_t> pattern(size_t n, int seed) {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 13 + seed);
        return v;
    }
    std::vector<uint8_t> read_blocks(uint64_t lba, uint32_t n, const char* port = kI1) {
        auto c = run(rw16(0x88, lba, n), n * 512, {}, 0, port);
        EXPECT_EQ(c->t.status, status::good);
        return c->buf;
    }

    Device* dev = nullptr;
};

TEST_F(ScsiTest, PowerOnUnitAttentionOncePerNexusInquiryExempt) {
    auto inq = run(cdb_of({0x12, 0, 0, 0, 96, 0}), 96);
    EXPECT_EQ(inq->t.status, status::good);
    auto tur = run(cdb_of({0, 0, 0, 0, 0, 0}));
    EXPECT_TRUE(tur->check(0x6, 0x2900));
    EXPECT_EQ(tur->t.sense[0], 0x70);  // fixed format by default
    EXPECT_EQ(tur->t.sense_len, 18);
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}))->t.status, status::good);
    // The second nexus sees its own.
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->check(0x6, 0x2900));
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->t.status, status::good);
}

TEST_F(ScsiTest, RequestSenseReportsAndClearsUnitAttention) {
    auto rs = run(cdb_of({0x03, 0, 0, 0, 252, 0}), 252);
    EXPECT_EQ(rs->t.status, status::good);
    EXPECT_EQ(rs->t.data_transferred, 18u);
    EXPECT_EQ(rs->buf[0], 0x70);
    EXPECT_EQ(rs->buf[2], 0x06);
    EXPECT_EQ(rs->buf[12], 0x29);
    auto rs2 = run(cdb_of({0x03, 0x01, 0, 0, 252, 0}), 252);  // DESC: descriptor format
    EXPECT_EQ(rs2->buf[0], 0x72);
    EXPECT_EQ(rs2->buf[1], 0x00);  // NO SENSE
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}))->t.status, status::good);
}

TEST_F(ScsiTest, InquiryStandardAndVpdPages) {
    clear_ua();
    auto s = run(cdb_of({0x12, 0, 0, 0, 255, 0}), 255);
    ASSERT_EQ(s->t.status, status::good);
    EXPECT_EQ(s->buf[0], 0x00);
    EXPECT_EQ(s->buf[2], 0x06);
    EXPECT_EQ(s->buf[4], 91);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(&s->buf[8]), 8), "STRATA  ");
    EXPECT_EQ(s->t.data_transferred, 96u);
    EXPECT_EQ(s->t.residual, 255u - 96u);  // underflow
    EXPECT_FALSE(s->t.residual_overflow);

    auto p0 = run(cdb_of({0x12, 1, 0x00, 0, 255, 0}), 255);
    EXPECT_EQ(p0->buf[3], 6);
    EXPECT_EQ(std::vector<uint8_t>(p0->buf.begin() + 4, p0->buf.begin() + 10),
              (std::vector<uint8_t>{0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2}));
    auto p80 = run(cdb_of({0x12, 1, 0x80, 0, 255, 0}), 255);
    EXPECT_EQ(p80->buf[1], 0x80);
    EXPECT_EQ(p80->buf[3], 32);
    auto p83 = run(cdb_of({0x12, 1, 0x83, 0, 255, 0}), 255);
    EXPECT_EQ(p83->buf[4], 0x01);          // binary
    EXPECT_EQ(p83->buf[5], 0x03);          // NAA
    EXPECT_EQ(p83->buf[8] >> 4, 0x3);      // locally assigned
    EXPECT_EQ(p83->buf[16], 0x02);         // ASCII
    EXPECT_EQ(p83->buf[17], 0x01);         // T10 vendor ID
    EXPECT_EQ(std::string(reinterpret_cast<char*>(&p83->buf[20]), 8), "STRATA  ");
    auto b0 = run(cdb_of({0x12, 1, 0xB0, 0, 255, 0}), 255);
    EXPECT_EQ(b0->buf[3], 0x3C);
    EXPECT_EQ(b0->buf[5], 255);  // MAXIMUM COMPARE AND WRITE LENGTH
    auto b2 = run(cdb_of({0x12, 1, 0xB2, 0, 255, 0}), 255);
    EXPECT_EQ(b2->buf[5] & 0x80, 0x80);  // LBPU: malloc unmaps
    EXPECT_EQ(b2->buf[6] & 0x07, 0x02);  // thin provisioned
    auto b1 = run(cdb_of({0x12, 1, 0xB1, 0, 255, 0}), 255);
    EXPECT_EQ(b1->buf[5], 1);  // non-rotating

    // Errors: unknown page, page with EVPD=0, CMDDT; each with its field pointer.
    auto bad = run(cdb_of({0x12, 1, 0x99, 0, 255, 0}), 255);
    EXPECT_TRUE(bad->check(0x5, 0x2400));
    EXPECT_EQ(bad->t.sense[15], 0xC0);  // SKSV, C/D
    EXPECT_EQ(bad->t.sense[17], 2);
    auto bad2 = run(cdb_of({0x12, 0, 0x80, 0, 255, 0}), 255);
    EXPECT_TRUE(bad2->check(0x5, 0x2400));
    auto bad3 = run(cdb_of({0x12, 2, 0, 0, 255, 0}), 255);
    EXPECT_TRUE(bad3->check(0x5, 0x2400));
    EXPECT_EQ(bad3->t.sense[15], 0xC8 | 1);  // bit pointer valid, bit 1
    EXPECT_EQ(bad3->t.sense[17], 1);
}

TEST_F(ScsiTest, InvalidOpcodeAndMissingLun) {
    clear_ua();
    EXPECT_TRUE(run(cdb_of({0xC7, 0, 0, 0, 0, 0}))->check(0x5, 0x2000));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 5)->check(0x5, 0x2500));
    auto inq = run(cdb_of({0x12, 0, 0, 0, 36, 0}), 36, {}, 5);
    EXPECT_EQ(inq->t.status, status::good);
    EXPECT_EQ(inq->buf[0], 0x7F);  // PQ 011b, no device type
}

TEST_F(ScsiTest, ReadCapacityAndLbaStatus) {
    clear_ua();
    auto rc = run(cdb_of({0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}), 8);
    ASSERT_EQ(rc->t.status, status::good);
    EXPECT_EQ(rc->buf[2] << 8 | rc->buf[3], kBlocks - 1);
    EXPECT_EQ(rc->buf[6] << 8 | rc->buf[7], 512);
    EXPECT_TRUE(run(cdb_of({0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0}), 8)->check(0x5, 0x2400));  // LBA, PMI=0
    auto rc16 = run(cdb_of({0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}), 32);
    EXPECT_EQ(rc16->buf[6] << 8 | rc16->buf[7], kBlocks - 1);
    EXPECT_EQ(rc16->buf[14] & 0x80, 0x80);  // LBPME
    auto st = run(cdb_of({0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 24, 0, 0}), 24);
    EXPECT_EQ(st->t.status, status::good);
    EXPECT_EQ(st->buf[3], 20);
    EXPECT_EQ(st->buf[15], 10);
    EXPECT_TRUE(run(cdb_of({0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 24, 0, 0}), 24)
                    ->check(0x5, 0x2100));
    EXPECT_TRUE(run(cdb_of({0x9E, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0}), 24)
                    ->check(0x5, 0x2400));
}

TEST_F(ScsiTest, ReadWriteEveryCdbSize) {
    clear_ua();
    auto w = pattern(4096, 1);
    // WRITE 6/10/12/16 to different places, read back with each READ.
    auto w6 = run(cdb_of({0x0A, 0, 0, 8, 2, 0}), 0, std::vector<uint8_t>(w.begin(), w.begin() + 1024));
    EXPECT_EQ(w6->t.status, status::good);
    auto r6 = run(cdb_of({0x08, 0, 0, 8, 2, 0}), 1024);
    EXPECT_EQ(r6->buf, std::vector<uint8_t>(w.begin(), w.begin() + 1024));
    EXPECT_EQ(run(rw10(0x2A, 100, 8, 0x08), 0, w)->t.status, status::good);  // FUA
    EXPECT_EQ(run(rw10(0x28, 100, 8), 4096)->buf, w);
    std::vector<uint8_t> c12(12, 0);
    c12[0] = 0xAA;
    be(&c12[2], 200, 4);
    be(&c12[6], 8, 4);
    EXPECT_EQ(run(c12, 0, w)->t.status, status::good);
    c12[0] = 0xA8;
    EXPECT_EQ(run(c12, 4096)->buf, w);
    EXPECT_EQ(run(rw16(0x8A, kBlocks - 8, 8), 0, w)->t.status, status::good);
    EXPECT_EQ(read_blocks(kBlocks - 8, 8), w);
    // zero length: nothing moves, GOOD
    EXPECT_EQ(run(rw10(0x28, 0, 0))->t.status, status::good);
}

TEST_F(ScsiTest, ReadWriteErrors) {
    clear_ua();
    auto w = pattern(4096, 2);
    EXPECT_TRUE(run(rw10(0x28, kBlocks - 4, 8), 4096)->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw16(0x8A, kBlocks, 1), 0, std::vector<uint8_t>(512))->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw16(0x88, UINT64_MAX, 1), 512)->check(0x5, 0x2100));
    auto prot = run(rw10(0x28, 0, 1, 0x20), 512);  // RDPROTECT
    EXPECT_TRUE(prot->check(0x5, 0x2400));
    EXPECT_EQ(prot->t.sense[15], 0xCF);  // bit 7 of
    EXPECT_EQ(prot->t.sense[17], 1);     // byte 1
    // Write with less data-out than the CDB asks (iSCSI EDTL < SPDTL): the whole blocks there
    // are get written (FCP-4), with an overflow residual; a part block is INVALID FIELD IN
    // INFORMATION UNIT and writes nothing.
    auto before = read_blocks(0, 8);
    auto shortw = run(rw10(0x2A, 0, 8), 0, std::vector<uint8_t>(1024, 0x5A));
    EXPECT_EQ(shortw->t.status, status::good);
    EXPECT_EQ(shortw->t.data_transferred, 1024u);
    EXPECT_TRUE(shortw->t.residual_overflow);
    EXPECT_EQ(shortw->t.residual, 3072u);
    std::fill(before.begin(), before.begin() + 1024, 0x5A);
    EXPECT_EQ(read_blocks(0, 8), before);
    auto partw = run(rw10(0x2A, 0, 1), 0, std::vector<uint8_t>(200, 0xA5));
    EXPECT_TRUE(partw->check(0x5, 0x0E03));
    EXPECT_TRUE(partw->t.residual_overflow);
    EXPECT_EQ(partw->t.residual, 312u);
    EXPECT_EQ(read_blocks(0, 8), before);
    // Read into a smaller buffer: what fits, and an overflow residual.
    auto over = run(rw10(0x28, 0, 8), 1024);
    EXPECT_EQ(over->t.status, status::good);
    EXPECT_EQ(over->t.data_transferred, 1024u);
    EXPECT_TRUE(over->t.residual_overflow);
    // A transfer length ending inside a block: that block is read whole into the buffer's
    // room and only the asked-for head counts (libiscsi's Read10Residuals, EDTL 200).
    auto part = make(rw10(0x28, 0, 1), 512);
    part->t.transfer_length = 200;
    start(*part);
    wait(*part);
    EXPECT_EQ(part->t.status, status::good);
    EXPECT_EQ(part->t.data_transferred, 200u);
    EXPECT_TRUE(part->t.residual_overflow);
    EXPECT_EQ(part->t.residual, 312u);
    EXPECT_TRUE(std::equal(part->buf.begin(), part->buf.begin() + 200, before.begin()));
    // Without room for the whole block nothing is read.
    auto tight = run(rw10(0x28, 0, 1), 200);
    EXPECT_EQ(tight->t.status, status::good);
    EXPECT_EQ(tight->t.data_transferred, 0u);
    EXPECT_EQ(tight->t.residual, 312u);
    EXPECT_EQ(over->t.residual, 3072u);
    auto under = run(rw10(0x28, 0, 1), 4096);
    EXPECT_EQ(under->t.residual, 3584u);
    EXPECT_FALSE(under->t.residual_overflow);
}

TEST_F(ScsiTest, VerifyComparesDataOut) {
    clear_ua();
    auto w = pattern(2048, 3);
    ASSERT_EQ(run(rw10(0x2A, 10, 4), 0, w)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x2F, 10, 4, 0x02), 0, w)->t.status, status::good);  // BYTCHK=01
    auto bad = w;
    bad[700] ^= 1;
    EXPECT_TRUE(run(rw10(0x2F, 10, 4, 0x02), 0, bad)->check(0xE, 0x1D00));
    EXPECT_EQ(run(rw16(0x8F, 10, 4, 0x02), 0, w)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x2F, 10, 4))->t.status, status::good);  // BYTCHK=0: medium only
    EXPECT_TRUE(run(rw10(0x2F, 10, 4, 0x04), 0, w)->check(0x5, 0x2400));  // BYTCHK=10b
    EXPECT_TRUE(run(rw10(0x2F, kBlocks, 1))->check(0x5, 0x2100));
}

TEST_F(ScsiTest, VerifyTwelveLikeTenAndSixteen) {
    clear_ua();
    auto w = pattern(1024, 5);
    ASSERT_EQ(run(rw10(0x2A, 20, 2), 0, w)->t.status, status::good);
    EXPECT_EQ(run(rw12(0xAF, 20, 2, 0x12), 0, w)->t.status, status::good);  // DPO, BYTCHK=01
    auto bad = w;
    bad[1000] ^= 0x80;
    EXPECT_TRUE(run(rw12(0xAF, 20, 2, 0x02), 0, bad)->check(0xE, 0x1D00));
    EXPECT_EQ(run(rw12(0xAF, 20, 2))->t.status, status::good);
    EXPECT_EQ(run(rw12(0xAF, 0, 0))->t.status, status::good);
    EXPECT_TRUE(run(rw12(0xAF, 20, 2, 0x20), 0, w)->check(0x5, 0x2400));  // VRPROTECT
    EXPECT_TRUE(run(rw12(0xAF, kBlocks - 1, 2))->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw12(0xAF, kBlocks + 1, 0))->check(0x5, 0x2100));
}

TEST_F(ScsiTest, WriteAndVerifyWritesThenCompares) {
    clear_ua();
    auto w = pattern(2048, 7);
    EXPECT_EQ(run(rw10(0x2E, 30, 4, 0x12), 0, w)->t.status, status::good);  // DPO, BYTCHK=01
    EXPECT_EQ(read_blocks(30, 4), w);
    auto w2 = pattern(1024, 9);
    EXPECT_EQ(run(rw12(0xAE, 30, 2), 0, w2)->t.status, status::good);  // BYTCHK=0: still writes
    EXPECT_EQ(read_blocks(30, 2), w2);
    auto w3 = pattern(512, 11);
    auto c16 = run(rw16(0x8E, kBlocks - 1, 1, 0x02), 0, w3);
    EXPECT_EQ(c16->t.status, status::good);
    EXPECT_EQ(c16->t.data_transferred, 512u);
    EXPECT_EQ(read_blocks(kBlocks - 1, 1), w3);
    EXPECT_EQ(run(rw10(0x2E, 0, 0))->t.status, status::good);
    for (uint8_t wrprotect = 1; wrprotect < 8; ++wrprotect)
        EXPECT_TRUE(
            run(rw10(0x2E, 30, 1, uint8_t(wrprotect << 5 | 0x02)), 0, w3)->check(0x5, 0x2400));
    EXPECT_TRUE(run(rw10(0x2E, 30, 1, 0x04), 0, w3)->check(0x5, 0x2400));  // BYTCHK=10b
    EXPECT_TRUE(run(rw16(0x8E, kBlocks, 1, 0x02), 0, w3)->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw12(0xAE, kBlocks + 1, 0))->check(0x5, 0x2100));
    EXPECT_EQ(read_blocks(30, 1), std::vector<uint8_t>(w2.begin(), w2.begin() + 512));
    // Less data-out than the CDB names: the whole blocks there are, an overflow residual.
    auto part = run(rw10(0x2E, 40, 2, 0x02), 0, w3);
    EXPECT_EQ(part->t.status, status::good);
    EXPECT_TRUE(part->t.residual_overflow);
    EXPECT_EQ(part->t.residual, 512u);
}

TEST_F(ScsiTest, PrefetchChecksTheRangeOnly) {
    clear_ua();
    EXPECT_EQ(run(rw10(0x34, 0, 256, 0x02))->t.status, status::good);  // IMMED
    EXPECT_EQ(run(rw10(0x34, kBlocks - 1, 1))->t.status, status::good);
    EXPECT_EQ(run(rw10(0x34, 0, 0))->t.status, status::good);
    EXPECT_EQ(run(rw16(0x90, kBlocks - 256, 256))->t.status, status::good);
    EXPECT_TRUE(run(rw10(0x34, kBlocks - 1, 2))->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw10(0x34, kBlocks + 1, 0))->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw16(0x90, ~0ull, 1))->check(0x5, 0x2100));
}

TEST_F(ScsiTest, ReadDefectDataIsAnEmptyList) {
    clear_ua();
    auto ten = run(cdb_of({0x37, 0, 0x1D, 0, 0, 0, 0, 0, 32, 0}), 32);  // PLIST GLIST, format 5
    EXPECT_EQ(ten->t.status, status::good);
    EXPECT_EQ(ten->t.data_transferred, 4u);
    EXPECT_EQ(ten->buf[1], 0x1D);
    EXPECT_EQ(ten->buf[2] | ten->buf[3], 0);
    auto twelve = run(cdb_of({0xB7, 0x08, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}), 32);
    EXPECT_EQ(twelve->t.status, status::good);
    EXPECT_EQ(twelve->t.data_transferred, 8u);
    EXPECT_EQ(twelve->buf[1], 0x08);
    EXPECT_EQ(twelve->buf[7], 0);
}

TEST_F(ScsiTest, WriteSameSixteenAndTenWithUnmap) {
    clear_ua();
    auto block = pattern(512, 4);
    EXPECT_EQ(run(rw16(0x93, 40, 37), 0, block)->t.status, status::good);
    auto r = read_blocks(40, 37);
    for (int b = 0; b < 37; ++b)
        EXPECT_EQ(std::vector<uint8_t>(r.begin() + b * 512, r.begin() + (b + 1) * 512), block);
    // WRITE SAME (10) with UNMAP and zero data: reads back zero.
    EXPECT_EQ(run(rw10(0x41, 40, 16, 0x08), 0, std::vector<uint8_t>(512))->t.status, status::good);
    auto z = read_blocks(40, 16);
    EXPECT_EQ(z, std::vector<uint8_t>(16 * 512, 0));
    // NDOB (16): zeroes with no data-out.
    EXPECT_EQ(run(rw16(0x93, 56, 21, 0x01))->t.status, status::good);
    EXPECT_EQ(read_blocks(56, 21), std::vector<uint8_t>(21 * 512, 0));
    // Errors
    EXPECT_TRUE(run(rw16(0x93, 0, 0), 0, block)->check(0x5, 0x2400));         // WSNZ
    EXPECT_TRUE(run(rw16(0x93, 0, 1, 0x10), 0, block)->check(0x5, 0x2400));   // ANCHOR
    EXPECT_TRUE(run(rw10(0x41, 0, 1, 0x01), 0, block)->check(0x5, 0x2400));    // reserved in 10
    EXPECT_TRUE(run(rw16(0x93, kBlocks - 1, 2), 0, block)->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw16(0x93, 0, 2))->check(0x5, 0x2400));  // no data-out
}

std::vector<uint8_t> unmap_params(std::vector<std::pair<uint64_t, uint32_t>> d) {
    std::vector<uint8_t> p(8 + 16 * d.size(), 0);
    be(&p[0], p.size() - 2, 2);
    be(&p[2], 16 * d.size(), 2);
    for (size_t i = 0; i < d.size(); ++i) {
        be(&p[8 + 16 * i], d[i].first, 8);
        be(&p[16 + 16 * i], d[i].second, 4);
    }
    return p;
}

TEST_F(ScsiTest, Unmap) {
    clear_ua();
    ASSERT_EQ(run(rw10(0x2A, 300, 8), 0, pattern(4096, 5))->t.status, status::good);
    auto p = unmap_params({{300, 4}, {0, 0}, {304, 4}});
    std::vector<uint8_t> c(10, 0);
    c[0] = 0x42;
    be(&c[7], p.size(), 2);
    EXPECT_EQ(run(c, 0, p)->t.status, status::good);
    EXPECT_EQ(read_blocks(300, 8), std::vector<uint8_t>(4096, 0));
    // A parameter list length beyond the data-out: the descriptors that are there count, and
    // data_transferred stays within the transfer (found by fuzz_scsi_cdb).
    be(&c[7], p.size() + 100, 2);
    auto longer = run(c, 0, p);
    EXPECT_EQ(longer->t.status, status::good);
    EXPECT_EQ(longer->t.data_transferred, p.size());
    auto oor = unmap_params({{kBlocks - 1, 2}});
    be(&c[7], oor.size(), 2);
    EXPECT_TRUE(run(c, 0, oor)->check(0x5, 0x2100));
    be(&c[7], 4, 2);  // shorter than the header
    EXPECT_TRUE(run(c, 0, std::vector<uint8_t>(4))->check(0x5, 0x1A00));
    c[1] = 1;  // ANCHOR
    EXPECT_TRUE(run(c, 0, p)->check(0x5, 0x2400));
}

TEST_F(ScsiTest, CompareAndWrite) {
    clear_ua();
    auto old = pattern(1024, 6), neu = pattern(1024, 7);
    ASSERT_EQ(run(rw10(0x2A, 500, 2), 0, old)->t.status, status::good);
    std::vector<uint8_t> c(16, 0);
    c[0] = 0x89;
    be(&c[2], 500, 8);
    c[13] = 2;
    std::vector<uint8_t> data = old;
    data.insert(data.end(), neu.begin(), neu.end());
    EXPECT_EQ(run(c, 0, data)->t.status, status::good);
    EXPECT_EQ(read_blocks(500, 2), neu);
    // Now the compare half no longer matches: MISCOMPARE, the offset in INFORMATION.
    auto m = run(c, 0, data);
    EXPECT_TRUE(m->check(0xE, 0x1D00));
    EXPECT_EQ(m->t.sense[0], 0xF0);  // VALID
    uint32_t info = uint32_t(m->t.sense[3]) << 24 | m->t.sense[4] << 16 | m->t.sense[5] << 8 | m->t.sense[6];
    size_t first = 0;
    while (old[first] == neu[first]) ++first;
    EXPECT_EQ(info, first);
    EXPECT_EQ(read_blocks(500, 2), neu);  // nothing written
    c[13] = 0;
    EXPECT_EQ(run(c)->t.status, status::good);
    // Zero blocks with data-out (256 blocks put in the one-byte field): invalid field.
    EXPECT_TRUE(run(c, 0, data)->check(0x5, 0x2400));
    EXPECT_EQ(read_blocks(500, 2), neu);
    c[13] = 2;
    be(&c[2], kBlocks - 1, 8);
    EXPECT_TRUE(run(c, 0, data)->check(0x5, 0x2100));
    be(&c[2], 0, 8);
    EXPECT_TRUE(run(c, 0, old)->check(0x5, 0x2400));  // only half the data
}

TEST_F(ScsiTest, CompareAndWriteSerializedPerLun) {
    clear_ua();
    auto a = pattern(512, 8), b = pattern(512, 9);
    ASSERT_EQ(run(rw10(0x2A, 7, 1), 0, a)->t.status, status::good);
    std::vector<uint8_t> c(16, 0);
    c[0] = 0x89;
    be(&c[2], 7, 8);
    c[13] = 1;
    std::vector<uint8_t> ab = a, ba = b;
    ab.insert(ab.end(), b.begin(), b.end());
    ba.insert(ba.end(), a.begin(), a.end());
    // Both in flight at once: the second compares against what the first wrote.
    auto c1 = make(c, 0, ab), c2 = make(c, 0, ba);
    on(t0(), [&] {
        submit(*dev, c1->t);
        submit(*dev, c2->t);
    });
    wait(*c1);
    wait(*c2);
    EXPECT_EQ(c1->t.status, status::good);
    EXPECT_EQ(c2->t.status, status::good);
    EXPECT_EQ(read_blocks(7, 1), a);
}

// COMPARE AND WRITE is atomic against plain writes to its blocks (SBC-3: no other command may
// change them between the compare and the write). A WRITE submitted right behind it either
// lands first (the compare then fails) or waits for it; either way the WRITE's data is what
// stays. Without the LBA range lock the WRITE slipped in between the read and the write of the
// COMPARE AND WRITE and was overwritten by it.
TEST_F(ScsiTest, CompareAndWriteIsAtomicAgainstPlainWrites) {
    clear_ua();
    auto old = pattern(512, 10), neu = pattern(512, 11), plain = pattern(512, 12);
    ASSERT_EQ(run(rw10(0x2A, 9, 1), 0, old)->t.status, status::good);
    std::vector<uint8_t> c(16, 0);
    c[0] = 0x89;
    be(&c[2], 9, 8);
    c[13] = 1;
    std::vector<uint8_t> data = old;
    data.insert(data.end(), neu.begin(), neu.end());
    auto cw = make(c, 0, data), w = make(rw10(0x2A, 9, 1), 0, plain);
    on(t0(), [&] {
        submit(*dev, cw->t);
        submit(*dev, w->t);
    });
    wait(*cw);
    wait(*w);
    EXPECT_EQ(w->t.status, status::good);
    EXPECT_TRUE(cw->t.status == status::good || cw->check(0xE, 0x1D00));
    EXPECT_EQ(read_blocks(9, 1), plain);
}

TEST_F(ScsiTest, OrWriteOrsTheDataIntoTheMedium) {
    clear_ua();
    const uint32_t n = 256;  // the most it takes
    ASSERT_EQ(run(rw16(0x8A, 100, n), 0, std::vector<uint8_t>(n * 512, 0))->t.status, status::good);
    EXPECT_EQ(run(rw16(0x8B, 100, n, 0x18), 0, std::vector<uint8_t>(n * 512, 0xA5))->t.status,
              status::good);  // DPO, FUA
    EXPECT_EQ(read_blocks(100, n), std::vector<uint8_t>(n * 512, 0xA5));
    EXPECT_EQ(run(rw16(0x8B, 100, n), 0, std::vector<uint8_t>(n * 512, 0x5A))->t.status,
              status::good);
    EXPECT_EQ(read_blocks(100, n), std::vector<uint8_t>(n * 512, 0xFF));
    EXPECT_EQ(run(rw16(0x8B, 0, 0))->t.status, status::good);
    for (uint8_t p = 1; p < 8; ++p)
        EXPECT_TRUE(run(rw16(0x8B, 0, 1, uint8_t(p << 5)), 0, std::vector<uint8_t>(512, 1))
                        ->check(0x5, 0x2400));
    EXPECT_TRUE(run(rw16(0x8B, kBlocks + 1, 0))->check(0x5, 0x2100));
    EXPECT_TRUE(run(rw16(0x8B, ~0ull, 1), 0, std::vector<uint8_t>(512, 1))->check(0x5, 0x2100));
    EXPECT_TRUE(
        run(rw16(0x8B, 0, n + 1), 0, std::vector<uint8_t>((n + 1) * 512, 1))->check(0x5, 0x2400));
    EXPECT_TRUE(run(rw16(0x8B, 0, 2), 0, std::vector<uint8_t>(512, 1))->check(0x5, 0x0E03));
    // Queued behind a COMPARE AND WRITE of the same block: it ORs into what that wrote.
    auto a = pattern(512, 8);
    ASSERT_EQ(run(rw10(0x2A, 7, 1), 0, std::vector<uint8_t>(512, 0))->t.status, status::good);
    std::vector<uint8_t> c(16, 0);
    c[0] = 0x89;
    be(&c[2], 7, 8);
    c[13] = 1;
    std::vector<uint8_t> za(512, 0);
    za.insert(za.end(), a.begin(), a.end());
    auto cw = make(c, 0, za), orw = make(rw16(0x8B, 7, 1), 0, std::vector<uint8_t>(512, 0x01));
    on(t0(), [&] {
        submit(*dev, cw->t);
        submit(*dev, orw->t);
    });
    wait(*cw);
    wait(*orw);
    EXPECT_EQ(cw->t.status, status::good);
    EXPECT_EQ(orw->t.status, status::good);
    auto want = a;
    for (auto& b : want) b |= 0x01;
    EXPECT_EQ(read_blocks(7, 1), want);
}

TEST_F(ScsiTest, ModeSenseAndSelect) {
    clear_ua();
    clear_ua(0, kI2);
    auto all = run(cdb_of({0x1A, 0, 0x3F, 0, 255, 0}), 255);
    ASSERT_EQ(all->t.status, status::good);
    EXPECT_EQ(all->buf[0], 4 - 1 + 8 + 20 + 12 + 12);
    EXPECT_EQ(all->buf[3], 8);  // block descriptor
    EXPECT_EQ(all->buf[12], 0x08);
    auto ch = run(cdb_of({0x5A, 0x08, 0x40 | 0x0A, 0, 0, 0, 0, 0, 255, 0}), 255);  // changeable
    EXPECT_EQ(ch->buf[8], 0x0A);
    EXPECT_EQ(ch->buf[10], 0x04);  // D_SENSE
    EXPECT_TRUE(run(cdb_of({0x1A, 0, 0xC8, 0, 255, 0}), 255)->check(0x5, 0x3900));  // saved
    EXPECT_TRUE(run(cdb_of({0x1A, 0, 0x19, 0, 255, 0}), 255)->check(0x5, 0x2400));
    EXPECT_TRUE(run(cdb_of({0x1A, 0, 0x08, 1, 255, 0}), 255)->check(0x5, 0x2400));

    // MODE SELECT(6) turns D_SENSE on: errors switch to descriptor sense.
    auto cur = run(cdb_of({0x1A, 0x08, 0x0A, 0, 255, 0}), 255);
    std::vector<uint8_t> sel(4 + 12, 0);
    std::memcpy(&sel[4], &cur->buf[4], 12);
    sel[4 + 2] |= 0x04;
    EXPECT_EQ(run(cdb_of({0x15, 0x10, 0, 0, uint8_t(sel.size()), 0}), 0, sel)->t.status, status::good);
    auto err = run(cdb_of({0xC7, 0, 0, 0, 0, 0}));
    EXPECT_EQ(err->t.sense[0], 0x72);
    EXPECT_TRUE(err->check(0x5, 0x2000));
    // The other nexus is told the parameters changed.
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->check(0x6, 0x2A01));
    // Changing a bit that is not changeable: invalid field in the parameter list, pointing at it.
    sel[4 + 3] ^= 0x10;
    auto bad = run(cdb_of({0x15, 0x10, 0, 0, uint8_t(sel.size()), 0}), 0, sel);
    EXPECT_TRUE(bad->check(0x5, 0x2600));
    // descriptor format: sense key specific descriptor at 8
    EXPECT_EQ(bad->t.sense[8], 0x02);
    EXPECT_EQ(bad->t.sense[12], 0x80 | 0x08 | 4);  // SKSV, BPV, bit 4 (C/D 0: parameter list)
    EXPECT_EQ(bad->t.sense[14], 7);
    EXPECT_TRUE(run(cdb_of({0x15, 0x11, 0, 0, uint8_t(sel.size()), 0}), 0, sel)->check(0x5, 0x2400));  // SP
    EXPECT_TRUE(run(cdb_of({0x15, 0x10, 0, 0, 40, 0}), 0, sel)->check(0x5, 0x1A00));
}

TEST_F(ScsiTest, ReportLunsAndLunChangeUnitAttention) {
    clear_ua();
    auto rl = run(cdb_of({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    ASSERT_EQ(rl->t.status, status::good);
    EXPECT_EQ(rl->buf[3], 8);
    EXPECT_EQ(rl->t.data_transferred, 16u);
    EXPECT_TRUE(run(cdb_of({0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}), 8)->check(0x5, 0x2400));
    EXPECT_TRUE(run(cdb_of({0xA0, 0, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256)->check(0x5, 0x2400));

    on(t0(), [&] { ASSERT_TRUE(add_lun(*dev, {300, "M1"}).ok()); });
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}))->check(0x6, 0x3F0E));
    // The new LUN reports power on to each nexus first.
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 300)->check(0x6, 0x2900));
    auto rl2 = run(cdb_of({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    EXPECT_EQ(rl2->buf[3], 16);
    EXPECT_EQ(rl2->buf[16], 0x41);  // flat space addressing for 300
    EXPECT_EQ(rl2->buf[17], 300 & 0xFF);

    // REPORT LUNS cleared the LUN-change attention; remove LUN 300.
    bool removed = false;
    on(t0(), [&] { remove_lun(*dev, 300, [&](Result<void> r) { removed = r.ok(); }); });
    EXPECT_TRUE(poll_until([&] { return removed; }));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 300)->check(0x5, 0x2500));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}))->check(0x6, 0x3F0E));
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}))->t.status, status::good);
    EXPECT_EQ(list_luns(*dev).size(), 1u);
}

TEST_F(ScsiTest, SyncCacheStartStopRsoc) {
    clear_ua();
    EXPECT_EQ(run(cdb_of({0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}))->t.status, status::good);
    EXPECT_EQ(run(rw16(0x91, 0, 8))->t.status, status::good);
    EXPECT_TRUE(run(rw16(0x91, kBlocks, 1))->check(0x5, 0x2100));
    EXPECT_EQ(run(cdb_of({0x1B, 0, 0, 0, 1, 0}))->t.status, status::good);
    auto all = run(cdb_of({0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}), 4096);
    ASSERT_EQ(all->t.status, status::good);
    const uint32_t len = uint32_t(all->buf[0]) << 24 | all->buf[1] << 16 | all->buf[2] << 8 | all->buf[3];
    EXPECT_EQ(len % 8, 0u);
    EXPECT_GE(len / 8, 30u);
    auto one = run(cdb_of({0xA3, 0x0C, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    EXPECT_EQ(one->buf[1] & 7, 3);
    EXPECT_EQ(one->buf[3], 10);
    EXPECT_EQ(one->buf[4], 0x28);
    auto none = run(cdb_of({0xA3, 0x0C, 0x01, 0xC7, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    EXPECT_EQ(none->buf[1] & 7, 1);
    EXPECT_TRUE(run(cdb_of({0xA3, 0x0C, 0x01, 0x9E, 0, 0, 0, 0, 1, 0, 0, 0}), 256)->check(0x5, 0x2400));
    auto sa = run(cdb_of({0xA3, 0x0C, 0x82, 0x9E, 0, 0x10, 0, 0, 1, 0, 0, 0}), 256);  // RCTD
    EXPECT_EQ(sa->buf[1], 0x83);
    // Options 2 (with a service action) of an opcode that has none: invalid field.
    EXPECT_TRUE(run(cdb_of({0xA3, 0x0C, 0x02, 0x28, 0, 0, 0, 0, 1, 0, 0, 0}), 256)->check(0x5, 0x2400));
    // VERIFY's usage data allows DPO (MODE SENSE says DPOFUA).
    for (uint8_t op : {0x2F, 0xAF, 0x8F, 0x2E, 0xAE, 0x8E}) {
        auto v = run(cdb_of({0xA3, 0x0C, 0x01, op, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
        EXPECT_EQ(v->buf[1] & 7, 3) << int(op);
        EXPECT_EQ(v->buf[5] & 0x10, 0x10) << int(op);
        EXPECT_EQ(v->buf[5] & 0x08, 0) << int(op);  // no FUA bit in these CDBs
    }
    auto orw = run(cdb_of({0xA3, 0x0C, 0x01, 0x8B, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    EXPECT_EQ(orw->buf[5] & 0x18, 0x18);  // DPO, FUA
    for (uint8_t op : {0x34, 0x90, 0x37, 0xB7, 0x16, 0x17, 0x56, 0x57}) {
        auto v = run(cdb_of({0xA3, 0x0C, 0x01, op, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
        EXPECT_EQ(v->buf[1] & 7, 3) << int(op);
        EXPECT_EQ(v->buf[4], op);
    }
    EXPECT_TRUE(run(cdb_of({0xA3, 0x05, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256)->check(0x5, 0x2400));
}

std::vector<uint8_t> pr_out(uint8_t sa, uint8_t type) {
    std::vector<uint8_t> c(10, 0);
    c[0] = 0x5F;
    c[1] = sa;
    c[2] = type;
    c[8] = 24;
    return c;
}
std::vector<uint8_t> pr_params(uint64_t key, uint64_t sa_key) {
    std::vector<uint8_t> p(24, 0);
    be(&p[0], key, 8);
    be(&p[8], sa_key, 8);
    return p;
}

TEST_F(ScsiTest, PersistentReservationsAcrossTwoNexuses) {
    clear_ua();
    clear_ua(0, kI2);
    const std::vector<uint8_t> block(512, 0x5A);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 0xA1))->t.status, status::good);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 0xB2), 0, kI2)->t.status, status::good);
    // Registering again with the wrong key: conflict.
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0x99, 0xA1))->t.status, status::reservation_conflict);
    auto keys = run(cdb_of({0x5E, 0, 0, 0, 0, 0, 0, 1, 0, 0}), 256);
    EXPECT_EQ(keys->buf[7], 16);
    EXPECT_EQ(keys->buf[15], 0xA1);
    EXPECT_EQ(keys->buf[23], 0xB2);
    // I1 takes a WRITE EXCLUSIVE reservation.
    EXPECT_EQ(run(pr_out(1, 1), 0, pr_params(0xA1, 0))->t.status, status::good);
    auto res = run(cdb_of({0x5E, 1, 0, 0, 0, 0, 0, 1, 0, 0}), 256);
    EXPECT_EQ(res->buf[7], 16);
    EXPECT_EQ(res->buf[15], 0xA1);
    EXPECT_EQ(res->buf[21], 1);
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512, {}, 0, kI2)->t.status, status::good);  // reads allowed
    // I2 cannot reserve or release with a wrong key; an unregistered nexus cannot reserve.
    EXPECT_EQ(run(pr_out(1, 1), 0, pr_params(0xB2, 0), 0, kI2)->t.status,
              status::reservation_conflict);
    clear_ua(0, "other");
    EXPECT_EQ(run(pr_out(1, 1), 0, pr_params(0x77, 0), 0, "other")->t.status,
              status::reservation_conflict);
    // Releasing with another type is an invalid release.
    EXPECT_TRUE(run(pr_out(2, 3), 0, pr_params(0xA1, 0))->check(0x5, 0x2604));
    // I2 preempts I1: I1's registration goes, I2 holds an EXCLUSIVE ACCESS reservation.
    EXPECT_EQ(run(pr_out(4, 3), 0, pr_params(0xB2, 0xA1), 0, kI2)->t.status, status::good);
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}))->check(0x6, 0x2A05));
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512, {}, 0, kI2)->t.status, status::good);
    auto caps = run(cdb_of({0x5E, 2, 0, 0, 0, 0, 0, 0, 8, 0}), 8);
    EXPECT_EQ(caps->buf[1], 8);
    EXPECT_EQ(caps->buf[4], 0xEA);
    // READ FULL STATUS: I2's registration, holder of EXCLUSIVE ACCESS, its iSCSI TransportID.
    auto full = run(cdb_of({0x5E, 3, 0, 0, 0, 0, 0, 1, 0, 0}), 256);
    ASSERT_EQ(full->t.status, status::good);
    const std::string i2 = kI2;
    const uint32_t tid_len = std::max<uint32_t>(20, (4 + uint32_t(i2.size()) + 1 + 3) & ~3u);
    auto be32 = [](const uint8_t* p) { return uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; };
    auto be64 = [&](const uint8_t* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); };
    EXPECT_EQ(be32(full->buf.data() + 4), 24 + tid_len);
    EXPECT_EQ(be64(full->buf.data() + 8), 0xB2u);
    EXPECT_EQ(full->buf[8 + 12], 0x01);  // R_HOLDER
    EXPECT_EQ(full->buf[8 + 13], 3);     // LU_SCOPE, EXCLUSIVE ACCESS
    EXPECT_EQ(be32(full->buf.data() + 8 + 20), tid_len);
    EXPECT_EQ(full->buf[8 + 24], 0x45);  // format 01b, iSCSI
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(full->buf.data() + 8 + 28)), i2);
    EXPECT_TRUE(run(cdb_of({0x5E, 4, 0, 0, 0, 0, 0, 1, 0, 0}), 256)->check(0x5, 0x2400));
    // CLEAR from I2: everything goes.
    EXPECT_EQ(run(pr_out(3, 0), 0, pr_params(0xB2, 0), 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512)->t.status, status::good);
    auto k2 = run(cdb_of({0x5E, 0, 0, 0, 0, 0, 0, 1, 0, 0}), 256);
    EXPECT_EQ(k2->buf[7], 0);
    // Parameter errors.
    auto c = pr_out(0, 0);
    c[8] = 20;
    EXPECT_TRUE(run(c, 0, pr_params(0, 1))->check(0x5, 0x1A00));
    auto aptpl = pr_params(0, 1);
    aptpl[20] = 1;
    EXPECT_TRUE(run(pr_out(0, 0), 0, aptpl)->check(0x5, 0x2600));
    EXPECT_TRUE(run(pr_out(7, 0), 0, pr_params(0, 1))->check(0x5, 0x2400));
}

TEST_F(ScsiTest, Spc2ReserveReleaseAcrossTwoNexuses) {
    clear_ua();
    clear_ua(0, kI2);
    const auto reserve6 = cdb_of({0x16, 0, 0, 0, 0, 0});
    const auto release6 = cdb_of({0x17, 0, 0, 0, 0, 0});
    const auto reserve10 = cdb_of({0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    const auto release10 = cdb_of({0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    const std::vector<uint8_t> block(512, 0x3C);
    EXPECT_EQ(run(reserve6)->t.status, status::good);
    EXPECT_EQ(run(reserve6)->t.status, status::good);  // the holder again
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block)->t.status, status::good);
    // The other nexus: media access, MODE SENSE, TUR, RESERVE conflict; INQUIRY, REPORT LUNS,
    // REQUEST SENSE do not; its RELEASE is GOOD and releases nothing.
    EXPECT_EQ(run(reserve6, 0, {}, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512, {}, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(cdb_of({0x1A, 0, 0x3F, 0, 255, 0}), 255, {}, 0, kI2)->t.status,
              status::reservation_conflict);
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->t.status,
              status::reservation_conflict);
    EXPECT_EQ(run(cdb_of({0x12, 0, 0, 0, 96, 0}), 96, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(cdb_of({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256, {}, 0, kI2)->t.status,
              status::good);
    EXPECT_EQ(run(cdb_of({0x03, 0, 0, 0, 18, 0}), 18, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(release6, 0, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(reserve10, 0, {}, 0, kI2)->t.status, status::reservation_conflict);
    // The holder releases: the other one may reserve (with the 10-byte CDB) and release.
    EXPECT_EQ(run(release6)->t.status, status::good);
    EXPECT_EQ(run(reserve10, 0, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(release10, 0, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512)->t.status, status::good);
    // Obsolete third-party/extent fields are refused.
    EXPECT_TRUE(run(cdb_of({0x16, 0x01, 0, 0, 0, 0}))->check(0x5, 0x2400));
    EXPECT_TRUE(run(cdb_of({0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}))->check(0x5, 0x2400));
    // With a persistent reservation registration RESERVE and RELEASE conflict (CRH 0), and a
    // SPC-2 reservation keeps the other nexus from PERSISTENT RESERVE OUT.
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 0xA1))->t.status, status::good);
    EXPECT_EQ(run(reserve6, 0, {}, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(release6)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0xA1, 0))->t.status, status::good);  // unregister
    EXPECT_EQ(run(reserve6)->t.status, status::good);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 0xB2), 0, kI2)->t.status,
              status::reservation_conflict);
    auto caps = run(cdb_of({0x5E, 0x02, 0, 0, 0, 0, 0, 0, 8, 0}), 8);
    EXPECT_EQ(caps->buf[2] & 0x10, 0);  // CRH
}

TEST_F(ScsiTest, Spc2ReservationEndsWithResetAndNexusLoss) {
    clear_ua();
    clear_ua(0, kI2);
    const auto reserve6 = cdb_of({0x16, 0, 0, 0, 0, 0});
    const auto tur = cdb_of({0, 0, 0, 0, 0, 0});
    EXPECT_EQ(run(reserve6)->t.status, status::good);
    EXPECT_EQ(run(tur, 0, {}, 0, kI2)->t.status, status::reservation_conflict);
    // A LUN reset releases it (and reports the reset to every nexus).
    MgmtTask m;
    m.function = TmfFunction::lun_reset;
    m.initiator_port = kI1;
    tmf(m);
    clear_ua();
    clear_ua(0, kI2);
    EXPECT_EQ(run(reserve6, 0, {}, 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(tur)->t.status, status::reservation_conflict);
    // Another nexus' loss does not release it; the holder's does.
    on(t0(), [&] { nexus_lost(*dev, kI1); });
    EXPECT_EQ(run(tur)->t.status, status::reservation_conflict);
    on(t0(), [&] { nexus_lost(*dev, "iqn.never.seen,i,0x1"); });
    on(t0(), [&] { nexus_lost(*dev, kI2); });
    EXPECT_EQ(run(tur)->t.status, status::good);
    EXPECT_EQ(run(reserve6)->t.status, status::good);
    // A target reset too.
    m = MgmtTask{};
    m.function = TmfFunction::target_reset;
    m.initiator_port = kI2;
    tmf(m);
    clear_ua(0, kI2);
    EXPECT_EQ(run(reserve6, 0, {}, 0, kI2)->t.status, status::good);
}

TEST_F(ScsiTest, RegistrantsOnlyReservationLetsRegistrantsWrite) {
    clear_ua();
    clear_ua(0, kI2);
    const std::vector<uint8_t> block(512, 1);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 1))->t.status, status::good);
    EXPECT_EQ(run(pr_out(1, 5), 0, pr_params(1, 0))->t.status, status::good);
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block, 0, kI2)->t.status, status::reservation_conflict);
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(0, 2), 0, kI2)->t.status, status::good);
    EXPECT_EQ(run(rw10(0x2A, 0, 1), 0, block, 0, kI2)->t.status, status::good);
    // The holder unregisters: the reservation goes, the registrant is told.
    EXPECT_EQ(run(pr_out(0, 0), 0, pr_params(1, 0))->t.status, status::good);
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->check(0x6, 0x2A04));
}

TEST_F(ScsiTest, AbortTaskAndAbortTaskSet) {
    clear_ua();
    auto r1 = make(rw10(0x28, 0, 8), 4096);
    auto r2 = make(rw10(0x28, 8, 8), 4096);
    auto r3 = make(rw10(0x28, 16, 8), 4096, {}, 0, kI2);
    r1->t.tag = 1;
    r2->t.tag = 2;
    r3->t.tag = 3;
    MgmtTask m;
    m.function = TmfFunction::abort_task;
    m.victim_tag = 2;
    m.initiator_port = kI1;
    int mcalls = 0;
    m.done = [](MgmtTask&, void* ctx) { ++*static_cast<int*>(ctx); };
    m.done_ctx = &mcalls;
    on(t0(), [&] {
        submit(*dev, r1->t);
        submit(*dev, r2->t);
        submit(*dev, r3->t);
        manage(*dev, m);
    });
    EXPECT_TRUE(poll_until([&] { return mcalls == 1 && r1->calls && r2->calls && r3->calls; }));
    EXPECT_EQ(m.response, TmfResponse::complete);
    EXPECT_EQ(m.aborted_count, 1u);
    EXPECT_TRUE(r2->t.aborted);
    EXPECT_EQ(r2->t.status, status::task_aborted);
    EXPECT_FALSE(r1->t.aborted);
    EXPECT_EQ(r1->t.status, status::good);
    EXPECT_TRUE(r3->check(0x6, 0x2900));  // I2's first command

    MgmtTask none;
    none.function = TmfFunction::abort_task;
    none.victim_tag = 42;
    none.initiator_port = kI1;
    tmf(none);
    EXPECT_EQ(none.response, TmfResponse::task_does_not_exist);

    // ABORT TASK SET: only this nexus's tasks.
    auto a = make(rw10(0x28, 0, 8), 4096), b = make(rw10(0x28, 0, 8), 4096, {}, 0, kI2);
    MgmtTask set;
    set.function = TmfFunction::abort_task_set;
    set.initiator_port = kI1;
    set.done = [](MgmtTask&, void* ctx) { ++*static_cast<int*>(ctx); };
    int scalls = 0;
    set.done_ctx = &scalls;
    on(t0(), [&] {
        submit(*dev, a->t);
        submit(*dev, b->t);
        manage(*dev, set);
    });
    EXPECT_TRUE(poll_until([&] { return scalls == 1 && a->calls && b->calls; }));
    EXPECT_TRUE(a->t.aborted);
    EXPECT_FALSE(b->t.aborted);
    EXPECT_EQ(b->t.status, status::good);
    MgmtTask nolun;
    nolun.function = TmfFunction::abort_task_set;
    nolun.lun = 9;
    nolun.initiator_port = kI1;
    tmf(nolun);
    EXPECT_EQ(nolun.response, TmfResponse::lun_does_not_exist);
}

class ScsiErrorTest : public ScsiTest {
protected:
    void SetUp() override {
        ScsiTest::SetUp();
        on(t0(), [&] {
            auto r = bdev::error_create("M1", "");
            ASSERT_TRUE(r.ok()) << r.error().message();
            ASSERT_TRUE(add_lun(*dev, {1, "EE_M1"}).ok());
        });
        clear_ua(1);
        clear_ua(0);
    }
    void inject(bdev::IoType type, bdev::ErrorType e, uint32_t n = 1) {
        bdev::ErrorInjection inj;
        inj.io_type = type;
        inj.error_type = e;
        inj.num = n;
        on(t0(), [&] { ASSERT_TRUE(bdev::error_inject("EE_M1", inj).ok()); });
    }
};

TEST_F(ScsiErrorTest, MediumErrorsFromTheBdev) {
    inject(bdev::IoType::read, bdev::ErrorType::failure);
    EXPECT_TRUE(run(rw10(0x28, 0, 1), 512, {}, 1)->check(0x3, 0x1100));
    EXPECT_EQ(run(rw10(0x28, 0, 1), 512, {}, 1)->t.status, status::good);
    inject(bdev::IoType::write, bdev::ErrorType::failure);
    EXPECT_TRUE(run(rw10(0x2A, 0, 1), 0, std::vector<uint8_t>(512), 1)->check(0x3, 0x0C00));
    inject(bdev::IoType::unmap, bdev::ErrorType::failure);
    auto p = unmap_params({{0, 4}});
    std::vector<uint8_t> c(10, 0);
    c[0] = 0x42;
    be(&c[7], p.size(), 2);
    EXPECT_TRUE(run(c, 0, p, 1)->check(0x3, 0x0C00));
}

TEST_F(ScsiErrorTest, LunResetEndsHeldIoAndSetsUnitAttention) {
    clear_ua(1, kI2);
    inject(bdev::IoType::read, bdev::ErrorType::pending, 2);
    auto r1 = make(rw10(0x28, 0, 1), 512, {}, 1), r2 = make(rw10(0x28, 1, 1), 512, {}, 1);
    start(*r1);
    start(*r2);
    run_until_idle();
    EXPECT_EQ(r1->calls + r2->calls, 0);  // held by the error bdev
    EXPECT_EQ(outstanding_tasks(*dev), 2u);
    MgmtTask m;
    m.function = TmfFunction::lun_reset;
    m.lun = 1;
    m.initiator_port = kI1;
    tmf(m);
    EXPECT_EQ(m.response, TmfResponse::complete);
    EXPECT_EQ(m.aborted_count, 2u);
    EXPECT_EQ(r1->calls, 1);
    EXPECT_EQ(r2->calls, 1);
    EXPECT_EQ(r1->t.status, status::task_aborted);
    EXPECT_EQ(outstanding_tasks(*dev), 0u);
    // Every nexus is told, the resetting one too (libiscsi's MultipathIO.Reset); the other LUN
    // is not.
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 1, kI2)->check(0x6, 0x2903));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 1)->check(0x6, 0x2903));
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 1)->t.status, status::good);
    EXPECT_EQ(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0)->t.status, status::good);

    MgmtTask tr;
    tr.function = TmfFunction::target_reset;
    tr.initiator_port = kI2;
    tmf(tr);
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0)->check(0x6, 0x2903));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 1)->check(0x6, 0x2903));
}

TEST_F(ScsiErrorTest, HotRemoveUnderIo) {
    clear_ua(1, kI2);
    clear_ua(0, kI2);
    std::vector<std::unique_ptr<Cmd>> io;
    for (int i = 0; i < 8; ++i) io.push_back(make(rw10(0x2A, uint32_t(i * 8), 8), 0, pattern(4096, i), 1));
    on(t0(), [&] {
        for (auto& c : io) submit(*dev, c->t);
        bdev::error_delete("EE_M1", [](Result<void>) {});
    });
    EXPECT_TRUE(poll_until([&] {
        for (auto& c : io)
            if (c->calls == 0) return false;
        return true;
    }));
    for (auto& c : io) EXPECT_EQ(c->calls, 1);
    EXPECT_TRUE(poll_until([&] { return list_luns(*dev).size() == 1; }));
    EXPECT_TRUE(run(rw10(0x28, 0, 1), 512, {}, 1)->check(0x5, 0x2500));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0)->check(0x6, 0x3F0E));
    EXPECT_TRUE(run(cdb_of({0, 0, 0, 0, 0, 0}), 0, {}, 0, kI2)->check(0x6, 0x3F0E));
    auto rl = run(cdb_of({0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}), 256);
    EXPECT_EQ(rl->buf[3], 8);
}

TEST_F(ScsiTest, DeviceRegistryAndClaims) {
    auto devs = list_devices();
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0].id, 3);
    EXPECT_EQ(devs[0].name, "iqn.2016-06.io.spdk:disk1");
    on(t0(), [&] {
        EXPECT_EQ(create_device({.name = "iqn.2016-06.io.spdk:disk1", .luns = {}}).code(), Errc::already_exists);
        // M0 is claimed by LUN 0.
        EXPECT_EQ(create_device({.name = "d2", .luns = {{0, "M0"}}}).code(), Errc::permission_denied);
        EXPECT_EQ(create_device({.name = "d2", .luns = {{0, "nope"}}}).code(), Errc::not_found);
        EXPECT_EQ(add_lun(*dev, {0, "M1"}).code(), Errc::already_exists);
        EXPECT_EQ(add_lun(*dev, {kMaxLunId + 1, "M1"}).code(), Errc::invalid_argument);
    });
    uint8_t l[8];
    encode_lun(5, l);
    EXPECT_EQ(decode_lun(l), 5u);
    encode_lun(1000, l);
    EXPECT_EQ(l[0], 0x43);
    EXPECT_EQ(decode_lun(l), 1000u);
}

// scsi_get_devices through an App with every module: SPDK's result shape, the (empty) "scsi"
// section of save_config, and App stop destroying the devices left behind.
TEST(ScsiRpcTest, GetDevicesAndStop) {
    using Json = nlohmann::json;
    runtime::SimScheduler sim(5, 1);
    auto app = std::make_unique<rpc::App>(sim);
    stack::register_all_modules(*app);
    bool started = false;
    app->start([&](Result<void> r) { started = r.ok(); });
    ASSERT_TRUE(sim.run_until([&] { return started; }, sim.now_ns() + 10 * runtime::kNsPerSec));
    Json r = app->call_method("bdev_malloc_create",
                              {{"name", "Malloc0"}, {"num_blocks", 64}, {"block_size", 512}});
    ASSERT_TRUE(r.contains("result")) << r.dump();
    EXPECT_EQ(app->call_method("scsi_get_devices", Json::object())["result"], Json::array());
    bool made = false;
    ASSERT_TRUE(app->thread()
                    .post([&] {
                        auto d = create_device({.name = "iqn.2016-06.io.spdk:Target1", .id = 0,
                                                .luns = {{0, "Malloc0"}}});
                        made = d.ok();
                    })
                    .ok());
    ASSERT_TRUE(sim.run_until([&] { return made; }, sim.now_ns() + runtime::kNsPerSec));
    EXPECT_EQ(app->call_method("scsi_get_devices", Json::object())["result"],
              Json::parse(R"([{"id":0,"device_name":"iqn.2016-06.io.spdk:Target1"}])"));
    {
        runtime::HostScope scope(app->host());
        bool found = false;
        const Json cfg = app->save_config();
        for (const auto& s : cfg["subsystems"])
            if (s["subsystem"] == "scsi") {
                found = true;
                EXPECT_EQ(s["config"], Json::array());
            }
        EXPECT_TRUE(found);
    }
    app->request_stop();
    ASSERT_TRUE(sim.run_until([&] { return app->stopped(); }, sim.now_ns() + 10 * runtime::kNsPerSec));
    runtime::HostScope scope(app->host());
    EXPECT_TRUE(list_devices().empty());
}

}  // namespace
}  // namespace strata::scsi
