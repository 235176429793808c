// The vhost-user back end (Session) driven message by message by the test front end, with a
// fake device that records the requests it gets: negotiation, malformed messages, memory-table
// translation, queue start, the polled data path with call-eventfd interrupts, hostile rings
// (the queue is marked broken, nothing crashes), GET_VRING_BASE draining and inflight
// resubmission after a back-end restart.
#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <span>

#include <vector>

#include "test_driver.h"

namespace strata::vhost {
namespace {

using namespace testing;
using vu::Request;

struct FakeDevice : Device {
    struct Slot {
        Chain chain;
        iovec iov[8];
        bool busy = false;
    };
    std::vector<Slot> slots[kMaxQueues];
    std::vector<uint16_t> submitted;
    uint64_t features() const noexcept override { return vs::feature(vs::kFRingPacked); }
    uint16_t max_queues() const noexcept override { return 2; }
    bool read_config(uint32_t off, uint8_t* out, uint32_t size) noexcept override {
        const uint8_t cfg[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        if (off > 8 || size > 8 - off) return false;
        std::memcpy(out, cfg + off, size);
        return true;
    }
    Result<void> start_queue(Session&, Queue& q) override {
        slots[q.index] = std::vector<Slot>(q.num);
        for (auto& s : slots[q.index]) {
            s.chain.iov = s.iov;
            s.chain.max_iov = 8;
        }
        return {};
    }
    void stop_queue(Session&, Queue& q) noexcept override { slots[q.index].clear(); }
    Chain* chain_for(Queue& q, uint16_t head) noexcept override {
        auto& s = slots[q.index][head];
        if (s.busy) return nullptr;
        s.busy = true;
        return &s.chain;
    }
    void submit(Session&, Queue&, uint16_t head) noexcept override { submitted.push_back(head); }
    void finish(Session& s, uint16_t q, uint16_t head, uint32_t len) {
        slots[q][head].busy = false;
        s.complete(s.queue(q), head, len);
    }
};

class SessionTest : public ::testing::Test {
protected:
    void SetUp() override {
        session = std::make_unique<Session>(dev, "test");
        ASSERT_TRUE(set_mem_table(*session, ram).result.ok());
    }
    void start(uint64_t features = default_features()) {
        call = start_queue(*session, ram, ring, 0, features);
        ASSERT_GE(call, 0);
        ASSERT_TRUE(session->queue(0).started);
    }
    // The back end's own mapping of the guest RAM (not the test's).
    uint8_t* hva(size_t off) { return session->memory().region(0).hva + off; }
    void TearDown() override {
        session.reset();
        if (call >= 0) close(call);
    }
    FakeDevice dev;
    GuestRam ram;
    DriverRing ring{ram, 0, 16};
    std::unique_ptr<Session> session;
    int call = -1;
    static constexpr size_t kBuf = 0x20000;  // data buffers live here
};

TEST(CheckMessage, SizesFdsVersionAndUnknownRequests) {
    EXPECT_TRUE(check_message({Request::kGetFeatures, vu::kVersion, 0}, 0).ok());
    EXPECT_FALSE(check_message({Request::kGetFeatures, 0, 0}, 0).ok());  // version 0
    EXPECT_FALSE(check_message({Request::kSetFeatures, vu::kVersion, 4}, 0).ok());
    EXPECT_FALSE(check_message({Request::kSetVringNum, vu::kVersion, 9}, 0).ok());
    EXPECT_FALSE(check_message({Request::kSetVringNum, vu::kVersion, 8}, 1).ok());  // an fd
    EXPECT_TRUE(check_message({Request::kSetVringKick, vu::kVersion, 8}, 1).ok());
    EXPECT_FALSE(check_message({Request::kSetVringKick, vu::kVersion, 8}, 2).ok());
    EXPECT_FALSE(check_message({Request::kSetMemTable, vu::kVersion, 8}, 9).ok());
    EXPECT_FALSE(check_message({Request::kSetLogBase, vu::kVersion, 16}, 0).ok());
    EXPECT_FALSE(check_message({static_cast<Request>(999), vu::kVersion, 0}, 0).ok());
    EXPECT_FALSE(check_message({Request::kGetConfig, vu::kVersion, 4}, 0).ok());
    EXPECT_FALSE(check_message({Request::kSetMemTable, vu::kVersion, 5000}, 1).ok());
}

TEST(GuestMemoryTest, TranslationIsBoundsChecked) {
    std::vector<uint8_t> a(4096), b(4096);
    GuestMemory m;
    ASSERT_TRUE(m.add(0x1000, 4096, 0x9000, a.data()).ok());
    ASSERT_TRUE(m.add(0x2000, 4096, 0x5000, b.data()).ok());
    EXPECT_FALSE(m.add(0x2800, 16, 0x100000, a.data()).ok());  // gpa overlap
    EXPECT_FALSE(m.add(0x100000, 16, 0x9100, a.data()).ok());  // uva overlap
    EXPECT_FALSE(m.add(~0ull - 8, 16, 0, a.data()).ok());      // wraps
    EXPECT_EQ(m.gpa_to_hva(0x1000, 4096), a.data());
    EXPECT_EQ(m.gpa_to_hva(0x1ff0, 16), a.data() + 0xff0);
    EXPECT_EQ(m.gpa_to_hva(0x1ff0, 17), nullptr);  // crosses into the next region
    EXPECT_EQ(m.gpa_to_hva(0xfff, 1), nullptr);
    EXPECT_EQ(m.gpa_to_hva(0x3000, 1), nullptr);
    EXPECT_EQ(m.gpa_to_hva(0x1000, ~0ull), nullptr);
    EXPECT_EQ(m.uva_to_hva(0x9000, 4096), a.data());
    EXPECT_EQ(m.uva_to_hva(0x9001, 4096), nullptr);
    EXPECT_EQ(m.uva_to_hva(0x1000, 1), nullptr);  // a gpa is not a uva
    iovec iov[2];
    EXPECT_EQ(m.gpa_to_iov(0x1ff0, 32, iov, 2), 2);  // split over the two regions
    EXPECT_EQ(iov[0].iov_base, a.data() + 0xff0);
    EXPECT_EQ(iov[0].iov_len, 16u);
    EXPECT_EQ(iov[1].iov_base, b.data());
    EXPECT_EQ(m.gpa_to_iov(0x1ff0, 32, iov, 1), GuestMemory::kNoRoom);
    EXPECT_EQ(m.gpa_to_iov(0x2ff0, 32, iov, 2), GuestMemory::kBadAddress);
}

TEST_F(SessionTest, Negotiation) {
    auto f = send(*session, Request::kGetFeatures, nullptr, 0);
    ASSERT_TRUE(f.result.ok());
    ASSERT_TRUE(f.reply.send);
    EXPECT_TRUE(vs::has_feature(reply_u64(f), vs::kFVhostUserProtocolFeatures));
    EXPECT_TRUE(vs::has_feature(reply_u64(f), vs::kFRingEventIdx));
    auto pf = send(*session, Request::kGetProtocolFeatures, nullptr, 0);
    for (unsigned bit : {vu::kPfMq, vu::kPfReplyAck, vu::kPfConfig, vu::kPfInflightShmfd})
        EXPECT_TRUE(vs::has_feature(reply_u64(pf), bit)) << bit;
    EXPECT_FALSE(send_u64(*session, Request::kSetFeatures, vs::feature(50)).result.ok());
    EXPECT_FALSE(
        send_u64(*session, Request::kSetProtocolFeatures, vs::feature(vu::kPfStatus)).result.ok());
    ASSERT_TRUE(send_u64(*session, Request::kSetProtocolFeatures, vs::feature(vu::kPfReplyAck))
                    .result.ok());
    // REPLY_ACK: a message asking for a reply gets a zero u64.
    uint64_t zero = 0;
    auto own = send(*session, Request::kSetOwner, &zero, 0, {}, vu::kVersion | vu::kFlagNeedReply);
    ASSERT_TRUE(own.result.ok());
    ASSERT_TRUE(own.reply.send);
    EXPECT_EQ(reply_u64(own), 0u);
    auto qn = send(*session, Request::kGetQueueNum, nullptr, 0);
    EXPECT_EQ(reply_u64(qn), 2u);
    // Config space.
    vu::ConfigSpace cs{2, 4, 0, {}};
    auto c = send(*session, Request::kGetConfig, &cs, 12 + 4);
    ASSERT_TRUE(c.result.ok());
    EXPECT_EQ(c.reply.header.size, 16u);
    EXPECT_EQ(c.reply.payload[12], 3);
    cs = {6, 4, 0, {}};
    c = send(*session, Request::kGetConfig, &cs, 12 + 4);
    EXPECT_EQ(c.reply.header.size, 0u);  // out of range: an empty reply
}

TEST_F(SessionTest, MalformedMessagesEndTheConnection) {
    EXPECT_FALSE(send_state(*session, Request::kSetVringNum, 2, 16).result.ok());  // index
    EXPECT_FALSE(send_state(*session, Request::kSetVringNum, 0, 0).result.ok());
    EXPECT_FALSE(send_state(*session, Request::kSetVringNum, 0, 65536).result.ok());
    EXPECT_FALSE(send_u64(*session, Request::kSetVringKick, 0).result.ok());  // no fd, no bit
    EXPECT_FALSE(send_u64(*session, Request::kSetVringCall, 5 | vu::kVringNoFdMask).result.ok());
    // Overlapping regions.
    vu::Memory mem{};
    mem.nregions = 2;
    mem.regions[0] = {GuestRam::kGpa, ram.size, GuestRam::kUva, 0};
    mem.regions[1] = {GuestRam::kGpa + 4096, 4096, GuestRam::kUva + ram.size, 0};
    auto r = send(*session, Request::kSetMemTable, &mem, 8 + 2 * 32, {dup(ram.fd), dup(ram.fd)});
    EXPECT_FALSE(r.result.ok());
    // Regions and fds disagree.
    mem.nregions = 1;
    EXPECT_FALSE(send(*session, Request::kSetMemTable, &mem, 8 + 32, {}).result.ok());
    EXPECT_FALSE(send(*session, Request::kSetLogBase, &mem, 16).result.ok());
}

// A region longer than its fd would map pages beyond the file's end: any access to them
// raises SIGBUS (found by fuzz_vhost_user_msg). Refused at SET_MEM_TABLE.
TEST_F(SessionTest, RegionBeyondItsFdIsRefused) {
    vu::Memory mem{};
    mem.nregions = 1;
    mem.regions[0] = {GuestRam::kGpa, ram.size + 4096, GuestRam::kUva, 0};
    EXPECT_FALSE(send(*session, Request::kSetMemTable, &mem, 8 + 32, {dup(ram.fd)}).result.ok());
    mem.regions[0] = {GuestRam::kGpa, ram.size, GuestRam::kUva, 4096};  // offset pushes it out
    EXPECT_FALSE(send(*session, Request::kSetMemTable, &mem, 8 + 32, {dup(ram.fd)}).result.ok());
    vu::Inflight in{1 << 20, 0, 1, 16};
    const int fd = memfd_create("small", MFD_CLOEXEC);
    ASSERT_EQ(ftruncate(fd, 4096), 0);
    EXPECT_FALSE(send(*session, Request::kSetInflightFd, &in, sizeof in, {fd}).result.ok());
}

TEST_F(SessionTest, RingAddressesOutsideMemoryAreRefused) {
    ASSERT_TRUE(send_u64(*session, Request::kSetFeatures, default_features()).result.ok());
    ASSERT_TRUE(send_state(*session, Request::kSetVringNum, 0, 16).result.ok());
    vu::VringAddr a{0, 0, ram.uva(ram.size - 16), ram.uva(0x8000), ram.uva(0x4000), 0};
    ASSERT_TRUE(send(*session, Request::kSetVringAddr, &a, sizeof a).result.ok());
    const int kick = eventfd(0, EFD_CLOEXEC);
    ASSERT_TRUE(send_u64(*session, Request::kSetVringKick, 0, {kick}).result.ok());
    EXPECT_FALSE(send_state(*session, Request::kSetVringEnable, 0, 1).result.ok());
    EXPECT_FALSE(session->queue(0).started);
}

TEST_F(SessionTest, RequestsAreTakenByPollingAndCompletedWithAnInterrupt) {
    start();
    ring.set_desc(0, ram.gpa(kBuf), 512, vs::kDescFNext, 1);
    ring.set_desc(1, ram.gpa(kBuf + 4096), 1, vs::kDescFWrite);
    ring.publish(0);
    EXPECT_EQ(session->poll(0), 1);
    ASSERT_EQ(dev.submitted.size(), 1u);
    const Chain& c = dev.slots[0][0].chain;
    EXPECT_EQ(c.readable, 1);
    EXPECT_EQ(c.writable, 1);
    EXPECT_EQ(c.iov[0].iov_base, hva(kBuf));
    EXPECT_EQ(c.iov[1].iov_base, hva(kBuf + 4096));
    uint64_t v = 0;
    EXPECT_LT(read(call, &v, 8), 0);  // no interrupt yet
    dev.finish(*session, 0, 0, 1);
    session->poll(0);
    uint32_t id, len;
    ASSERT_TRUE(ring.pop_used(id, len));
    EXPECT_EQ(id, 0u);
    EXPECT_EQ(len, 1u);
    EXPECT_EQ(read(call, &v, 8), 8);
    // The same head again while it is in flight: the queue is broken.
    ring.publish(0);
    ring.publish(0);
    session->poll(0);
    EXPECT_TRUE(session->queue(0).broken);
}

TEST_F(SessionTest, InterruptsAreSuppressedWhenTheDriverAsks) {
    start();
    ring.avail()->flags = vs::kAvailFNoInterrupt;
    ring.set_desc(0, ram.gpa(kBuf), 1, vs::kDescFWrite);
    ring.publish(0);
    session->poll(0);
    dev.finish(*session, 0, 0, 1);
    session->poll(0);
    uint64_t v = 0;
    EXPECT_LT(read(call, &v, 8), 0);
}

TEST_F(SessionTest, CoalescingDelaysInterruptsAboveTheThreshold) {
    start();
    session->set_coalescing({1000, 10});  // 1 ms once above 10 IOPS
    uint64_t now = 0;
    uint64_t irqs = 0;
    for (int i = 0; i < 1000; ++i) {
        ring.set_desc(0, ram.gpa(kBuf), 1, vs::kDescFWrite);
        ring.publish(0);
        session->poll(now);
        dev.finish(*session, 0, 0, 1);
        session->poll(now);
        now += 100'000;  // 10k IOPS
    }
    irqs = session->queue(0).interrupts;
    // The first 10 ms window measures the rate (100 interrupts), then one per 1 ms: ~190;
    // without coalescing 1000.
    EXPECT_LT(irqs, 300u);
    EXPECT_GT(irqs, 100u);
}

struct Hostile {
    const char* what;
    void (*build)(DriverRing& r, GuestRam& ram);
};

TEST_F(SessionTest, HostileRingsBreakTheQueueOnly) {
    const Hostile cases[] = {
        {"loop",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 16, vs::kDescFNext, 1);
             r.set_desc(1, ram.gpa(kBuf), 16, vs::kDescFNext, 0);
             r.publish(0);
         }},
        {"next out of range",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 16, vs::kDescFNext, 16);
             r.publish(0);
         }},
        {"head out of range", [](DriverRing& r, GuestRam&) { r.publish(16); }},
        {"address outside memory",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(ram.size - 8), 16, 0);
             r.publish(0);
         }},
        {"address below memory",
         [](DriverRing& r, GuestRam&) {
             r.set_desc(0, 0x1000, 16, 0);
             r.publish(0);
         }},
        {"zero length",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 0, 0);
             r.publish(0);
         }},
        {"indirect in indirect",
         [](DriverRing& r, GuestRam& ram) {
             auto* t = reinterpret_cast<vs::VringDesc*>(ram.at(kBuf));
             t[0] = {ram.gpa(kBuf), 32, vs::kDescFIndirect, 0};
             r.set_desc(0, ram.gpa(kBuf), 32, vs::kDescFIndirect);
             r.publish(0);
         }},
        {"indirect loop",
         [](DriverRing& r, GuestRam& ram) {
             auto* t = reinterpret_cast<vs::VringDesc*>(ram.at(kBuf));
             t[0] = {ram.gpa(kBuf + 4096), 16, vs::kDescFNext, 1};
             t[1] = {ram.gpa(kBuf + 4096), 16, vs::kDescFNext, 0};
             r.set_desc(0, ram.gpa(kBuf), 32, vs::kDescFIndirect);
             r.publish(0);
         }},
        {"indirect bad length",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 24, vs::kDescFIndirect);
             r.publish(0);
         }},
        {"indirect with next",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 32, vs::kDescFIndirect | vs::kDescFNext, 1);
             r.publish(0);
         }},
        {"readable after writable",
         [](DriverRing& r, GuestRam& ram) {
             r.set_desc(0, ram.gpa(kBuf), 16, vs::kDescFWrite | vs::kDescFNext, 1);
             r.set_desc(1, ram.gpa(kBuf), 16, 0);
             r.publish(0);
         }},
        {"too many segments",
         [](DriverRing& r, GuestRam& ram) {
             for (uint16_t i = 0; i < 9; ++i)
                 r.set_desc(i, ram.gpa(kBuf + 64 * i), 16, vs::kDescFNext, uint16_t(i + 1));
             r.set_desc(9, ram.gpa(kBuf), 16, 0);
             r.publish(0);
         }},
        {"avail index jump",
         [](DriverRing& r, GuestRam&) {
             r.avail_idx = 100;
             __atomic_store_n(&r.avail()->idx, r.avail_idx, __ATOMIC_RELEASE);
         }},
    };
    for (const auto& hc : cases) {
        SCOPED_TRACE(hc.what);
        FakeDevice d;
        Session s(d, "hostile");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        DriverRing r(ram, 0, 16);
        const int cfd = start_queue(s, ram, r, 0, default_features());
        ASSERT_GE(cfd, 0);
        close(cfd);
        hc.build(r, ram);
        s.poll(0);
        EXPECT_TRUE(s.queue(0).broken);
        EXPECT_TRUE(d.submitted.empty());
        // Nothing more is taken from a broken queue.
        r.set_desc(1, ram.gpa(kBuf), 16, vs::kDescFWrite);
        r.publish(1);
        s.poll(0);
        EXPECT_TRUE(d.submitted.empty());
    }
}

TEST_F(SessionTest, LongestLegalChainIsAccepted) {
    start();
    for (uint16_t i = 0; i < 7; ++i)
        ring.set_desc(i, ram.gpa(kBuf + 64 * i), 16, vs::kDescFNext, uint16_t(i + 1));
    ring.set_desc(7, ram.gpa(kBuf), 16, vs::kDescFWrite);
    ring.publish(0);
    session->poll(0);
    EXPECT_FALSE(session->queue(0).broken);
    EXPECT_EQ(dev.slots[0][0].chain.descriptors, 8);
}

TEST_F(SessionTest, IndirectTable) {
    start();
    auto* t = reinterpret_cast<vs::VringDesc*>(ram.at(kBuf));
    t[0] = {ram.gpa(kBuf + 4096), 16, vs::kDescFNext, 1};
    t[1] = {ram.gpa(kBuf + 8192), 512, vs::kDescFWrite, 0};
    ring.set_desc(3, ram.gpa(kBuf), 32, vs::kDescFIndirect);
    ring.publish(3);
    session->poll(0);
    ASSERT_EQ(dev.submitted.size(), 1u);
    const Chain& c = dev.slots[0][3].chain;
    EXPECT_EQ(c.readable, 1);
    EXPECT_EQ(c.writable, 1);
    EXPECT_EQ(c.writable_bytes, 512u);
    EXPECT_EQ(c.iov[1].iov_base, hva(kBuf + 8192));
}

TEST_F(SessionTest, IndirectWithoutTheFeatureBreaksTheQueue) {
    start(vs::feature(vs::kFVersion1) | vs::feature(vs::kFVhostUserProtocolFeatures));
    ring.set_desc(0, ram.gpa(kBuf), 32, vs::kDescFIndirect);
    ring.publish(0);
    session->poll(0);
    EXPECT_TRUE(session->queue(0).broken);
}

TEST_F(SessionTest, GetVringBaseWaitsForOutstandingRequests) {
    start();
    ring.set_desc(0, ram.gpa(kBuf), 1, vs::kDescFWrite);
    ring.publish(0);
    session->poll(0);
    auto m = send_state(*session, Request::kGetVringBase, 0, 0);
    ASSERT_TRUE(m.result.ok());
    EXPECT_FALSE(m.reply.send);
    EXPECT_TRUE(session->reply_pending());
    ring.set_desc(1, ram.gpa(kBuf), 1, vs::kDescFWrite);
    ring.publish(1);
    session->poll(0);
    EXPECT_EQ(dev.submitted.size(), 1u);  // stopping: nothing new taken
    dev.finish(*session, 0, 0, 1);
    Reply r;
    ASSERT_TRUE(session->take_pending_reply(r));
    vu::VringState st;
    std::memcpy(&st, r.payload, sizeof st);
    EXPECT_EQ(st.num, 1u);  // the next avail index to process
    EXPECT_FALSE(session->queue(0).started);
}

TEST_F(SessionTest, InflightRequestsAreResubmittedAfterABackEndRestart) {
    vu::Inflight in{0, 0, 1, 16};
    auto g = send(*session, Request::kGetInflightFd, &in, sizeof in);
    ASSERT_TRUE(g.result.ok());
    ASSERT_GE(g.reply.fd, 0);
    vu::Inflight got;
    std::memcpy(&got, g.reply.payload, sizeof got);
    const int inflight_fd = dup(g.reply.fd);  // what the front end keeps
    ASSERT_TRUE(
        send(*session, Request::kSetInflightFd, &got, sizeof got, {dup(inflight_fd)}).result.ok());
    start();
    for (uint16_t i = 0; i < 3; ++i) {
        ring.set_desc(i, ram.gpa(kBuf + 64 * i), 1, vs::kDescFWrite);
        ring.publish(i);
    }
    session->poll(0);
    ASSERT_EQ(dev.submitted.size(), 3u);
    dev.finish(*session, 0, 1, 1);  // 0 and 2 stay in flight
    // The back end dies (no GET_VRING_BASE). A new one gets the same inflight fd; the front
    // end sets the base to the used index.
    session.reset();
    close(call);
    call = -1;
    FakeDevice dev2;
    Session s2(dev2, "restarted");
    ASSERT_TRUE(set_mem_table(s2, ram).result.ok());
    ASSERT_TRUE(send(s2, Request::kSetInflightFd, &got, sizeof got, {inflight_fd}).result.ok());
    const int c2 = start_queue(s2, ram, ring, 0, default_features(), ring.used()->idx);
    ASSERT_GE(c2, 0);
    close(c2);
    ASSERT_EQ(dev2.submitted.size(), 2u);
    EXPECT_EQ(dev2.submitted[0], 0);  // oldest first
    EXPECT_EQ(dev2.submitted[1], 2);
    ring.set_desc(3, ram.gpa(kBuf), 1, vs::kDescFWrite);
    ring.publish(3);
    s2.poll(0);
    ASSERT_EQ(dev2.submitted.size(), 3u);
    EXPECT_EQ(dev2.submitted[2], 3);  // not 0 or 2 again
    dev2.finish(s2, 0, 0, 1);
    dev2.finish(s2, 0, 2, 1);
    dev2.finish(s2, 0, 3, 1);
    EXPECT_EQ(ring.used()->idx, 4);
}

TEST_F(SessionTest, MemTableReplacementUnmapsAndRestartsQueues) {
    start();
    ASSERT_TRUE(set_mem_table(*session, ram).result.ok());
    EXPECT_TRUE(session->queue(0).started);
    EXPECT_EQ(session->memory().size(), 1u);
}

// ---- CONFIGURE_MEM_SLOTS: GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG ----

Msg mem_reg(Session& s, Request req, uint64_t gpa, uint64_t size, uint64_t uva, uint64_t off,
            std::vector<int> fds) {
    vu::SingleMemoryRegion m{0, {gpa, size, uva, off}};
    return send(s, req, &m, sizeof m, std::move(fds));
}
int memfd_of(size_t bytes) {
    const int fd = memfd_create("slot", MFD_CLOEXEC);
    if (fd >= 0) (void)!ftruncate(fd, off_t(bytes));
    return fd;
}

TEST_F(SessionTest, MemorySlotsAreAddedAndRemovedWithValidation) {
    auto pf = send(*session, Request::kGetProtocolFeatures, nullptr, 0);
    EXPECT_TRUE(vs::has_feature(reply_u64(pf), vu::kPfConfigureMemSlots));
    auto slots = send(*session, Request::kGetMaxMemSlots, nullptr, 0);
    ASSERT_TRUE(slots.result.ok());
    ASSERT_TRUE(slots.reply.send);
    EXPECT_EQ(reply_u64(slots), vu::kMaxMemRegions);
    EXPECT_FALSE(check_message({Request::kAddMemReg, vu::kVersion, 32}, 1).ok());  // size
    EXPECT_FALSE(check_message({Request::kAddMemReg, vu::kVersion, 40}, 2).ok());  // 2 fds
    EXPECT_FALSE(check_message({Request::kGetMaxMemSlots, vu::kVersion, 8}, 0).ok());
    // A region at 1 GiB: mapped, translated; its data is the fd's from the offset.
    const uint64_t gpa = 1ull << 30, uva = 0x7e0000000000;
    const int fd = memfd_of(2 << 20);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "slot", 4, 1 << 20), 4);
    ASSERT_TRUE(mem_reg(*session, Request::kAddMemReg, gpa, 1 << 20, uva, 1 << 20, {dup(fd)})
                    .result.ok());
    EXPECT_EQ(session->memory().size(), 2u);
    auto* p = static_cast<const char*>(session->memory().gpa_to_hva(gpa, 4));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(std::string(p, 4), "slot");
    // Refused, each ending the connection: without an fd, empty, beyond the fd, overlapping.
    struct Bad {
        uint64_t gpa, size, uva, off;
        bool fd;
    };
    const Bad bad[] = {{gpa + (2 << 20), 4096, uva + (2 << 20), 0, false},
                       {gpa + (2 << 20), 0, uva + (2 << 20), 0, true},
                       {gpa + (2 << 20), 4 << 20, uva + (2 << 20), 0, true},
                       {gpa + 4096, 4096, uva + (8 << 20), 0, true},
                       {gpa + (8 << 20), 4096, uva + 4096, 0, true}};
    for (const Bad& c : bad) {
        FakeDevice d;
        Session s(d, "add");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        ASSERT_TRUE(mem_reg(s, Request::kAddMemReg, gpa, 1 << 20, uva, 0, {dup(fd)}).result.ok());
        std::vector<int> fds;
        if (c.fd) fds.push_back(dup(fd));
        EXPECT_FALSE(mem_reg(s, Request::kAddMemReg, c.gpa, c.size, c.uva, c.off, fds).result.ok());
        EXPECT_EQ(s.memory().size(), 2u);
    }
    // Every slot taken: the ninth is refused.
    {
        FakeDevice d;
        Session s(d, "full");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        for (uint64_t i = 1; i < vu::kMaxMemRegions; ++i)
            ASSERT_TRUE(mem_reg(s, Request::kAddMemReg, gpa * (i + 1), 4096, uva + (i << 24), 0,
                                {dup(fd)})
                            .result.ok());
        EXPECT_FALSE(
            mem_reg(s, Request::kAddMemReg, gpa * 20, 4096, uva + (20ull << 24), 0, {dup(fd)})
                .result.ok());
    }
    // REM_MEM_REG: an unknown region is refused; the queue's ring region is refused while it
    // is started, and any region while requests are outstanding.
    start();
    {
        FakeDevice d;
        Session s(d, "rem");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        EXPECT_FALSE(mem_reg(s, Request::kRemMemReg, gpa, 4096, uva, 0, {}).result.ok());
    }
    EXPECT_FALSE(mem_reg(*session, Request::kRemMemReg, GuestRam::kGpa, ram.size, GuestRam::kUva,
                         0, {})
                     .result.ok());
    session = std::make_unique<Session>(dev, "again");
    ASSERT_TRUE(set_mem_table(*session, ram).result.ok());
    ASSERT_TRUE(mem_reg(*session, Request::kAddMemReg, gpa, 1 << 20, uva, 0, {dup(fd)}).result.ok());
    close(call);
    call = -1;
    start();
    ring.set_desc(0, ram.gpa(kBuf), 16, vs::kDescFWrite);
    ring.publish(0);
    session->poll(0);
    ASSERT_EQ(dev.submitted.size(), 1u);
    {
        // Outstanding requests: refused (on a copy of the state: the error ends a connection).
        FakeDevice d;
        Session s(d, "busy");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        ASSERT_TRUE(mem_reg(s, Request::kAddMemReg, gpa, 1 << 20, uva, 0, {dup(fd)}).result.ok());
        DriverRing r2(ram, 0x100000, 16);
        const int c2 = start_queue(s, ram, r2, 0, default_features());
        ASSERT_GE(c2, 0);
        close(c2);
        r2.set_desc(0, ram.gpa(kBuf), 16, vs::kDescFWrite);
        r2.publish(0);
        s.poll(0);
        ASSERT_EQ(s.outstanding(), 1u);
        EXPECT_FALSE(mem_reg(s, Request::kRemMemReg, gpa, 1 << 20, uva, 0, {}).result.ok());
        d.finish(s, 0, 0, 16);
    }
    dev.finish(*session, 0, 0, 16);
    // The added region goes (an fd passed along is closed); its addresses no longer translate.
    ASSERT_TRUE(mem_reg(*session, Request::kRemMemReg, gpa, 1 << 20, uva, 0, {dup(fd)}).result.ok());
    EXPECT_EQ(session->memory().size(), 1u);
    EXPECT_EQ(session->memory().gpa_to_hva(gpa, 4), nullptr);
    EXPECT_FALSE(mem_reg(*session, Request::kRemMemReg, gpa, 1 << 20, uva, 0, {}).result.ok());
    close(fd);
}

// ---- Packed rings through the Session ----

uint64_t packed_features() {
    return default_features() | vs::feature(vs::kFRingPacked);
}

class PackedSessionTest : public SessionTest {
protected:
    void start_packed(uint64_t features = packed_features(), uint32_t base = 0x80008000) {
        call = start_queue(*session, ram, pring, 0, features, base);
        ASSERT_GE(call, 0);
        ASSERT_TRUE(session->queue(0).started);
        ASSERT_TRUE(session->queue(0).packed);
    }
    DriverPackedRing pring{ram, 0, 16};
};

TEST_F(PackedSessionTest, RequestsAreTakenCompletedAndSignalledWhenEnabled) {
    start_packed();
    EXPECT_EQ(pring.device_event()->flags, vs::kPackedEventFlagDisable);  // the device polls
    pring.publish(5, {{ram.gpa(kBuf), 512, 0}, {ram.gpa(kBuf + 4096), 1, vs::kDescFWrite}});
    EXPECT_EQ(session->poll(0), 1);
    ASSERT_EQ(dev.submitted.size(), 1u);
    EXPECT_EQ(dev.submitted[0], 5);  // the buffer id
    const Chain& c = dev.slots[0][5].chain;
    EXPECT_EQ(c.readable, 1);
    EXPECT_EQ(c.writable, 1);
    EXPECT_EQ(c.iov[1].iov_base, hva(kBuf + 4096));
    dev.finish(*session, 0, 5, 1);
    session->poll(0);
    uint32_t id, len;
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_EQ(id, 5u);
    EXPECT_EQ(len, 1u);
    uint64_t v = 0;
    EXPECT_EQ(read(call, &v, 8), 8);  // driver event flags 0: ENABLE
    // DISABLE: no interrupt.
    pring.driver_event()->flags = vs::kPackedEventFlagDisable;
    pring.publish(6, {{ram.gpa(kBuf), 1, vs::kDescFWrite}});
    session->poll(0);
    dev.finish(*session, 0, 6, 1);
    session->poll(0);
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_LT(read(call, &v, 8), 0);
}

TEST_F(PackedSessionTest, ManyMoreRequestsThanTheRingWrapBothCounters) {
    start_packed();
    uint32_t done = 0;
    for (uint32_t i = 0; i < 1000; ++i) {
        const uint16_t id = uint16_t(i % 7);
        if (i % 3 == 0)
            pring.publish(id, {{ram.gpa(kBuf), 16, 0}, {ram.gpa(kBuf + 64), 8, vs::kDescFWrite}});
        else
            pring.publish(id, {{ram.gpa(kBuf + 64), 8, vs::kDescFWrite}});
        session->poll(0);
        ASSERT_EQ(dev.submitted.size(), i + 1);
        dev.finish(*session, 0, id, 8);
        uint32_t got, len;
        while (pring.pop_used(got, len)) {
            EXPECT_EQ(got, id);
            ++done;
        }
    }
    EXPECT_EQ(done, 1000u);
    EXPECT_FALSE(session->queue(0).broken);
}

TEST_F(PackedSessionTest, GetVringBaseAnswersWithTheWrapCounter) {
    start_packed();
    for (uint16_t i = 0; i < 17; ++i) {  // 34 slots of a 16-slot ring: two laps and 2
        const uint16_t id = uint16_t(i % 16);
        pring.publish(id, {{ram.gpa(kBuf), 16, 0}, {ram.gpa(kBuf + 64), 8, vs::kDescFWrite}});
        session->poll(0);
        dev.finish(*session, 0, id, 8);
    }
    auto m = send_state(*session, Request::kGetVringBase, 0, 0);
    ASSERT_TRUE(m.result.ok());
    ASSERT_TRUE(m.reply.send);
    vu::VringState st;
    std::memcpy(&st, m.reply.payload, sizeof st);
    EXPECT_EQ(st.num, 0x80028002u);  // slot 2, wrap counter 1 (bit 15), used half the same
    // Restarted at that base, the queue continues where the driver is.
    close(call);
    call = start_queue(*session, ram, pring, 0, packed_features(), st.num);
    ASSERT_GE(call, 0);
    pring.publish(3, {{ram.gpa(kBuf + 64), 8, vs::kDescFWrite}});
    session->poll(0);
    ASSERT_EQ(dev.submitted.size(), 18u);
    EXPECT_EQ(dev.submitted.back(), 3);
}

TEST_F(PackedSessionTest, BaseBeyondTheRingIsRefused) {
    auto ok = send_u64(*session, Request::kSetFeatures, packed_features());
    ASSERT_TRUE(ok.result.ok());
    EXPECT_LT(start_queue(*session, ram, pring, 0, packed_features(), 0x8000 | 16), 0);
}

TEST_F(PackedSessionTest, HostileRingsBreakTheQueueOnly) {
    struct Case {
        const char* what;
        void (*build)(DriverPackedRing& r, GuestRam& ram);
    };
    const Case cases[] = {
        {"id out of range",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(16, {{ram.gpa(kBuf), 16, 0}});
         }},
        {"id in flight",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(1, {{ram.gpa(kBuf), 16, vs::kDescFWrite}});
             r.publish(1, {{ram.gpa(kBuf), 16, vs::kDescFWrite}});
         }},
        {"loop (every slot NEXT)",
         [](DriverPackedRing& r, GuestRam& ram) {
             for (uint16_t i = 0; i < 16; ++i)
                 r.desc()[i] = {ram.gpa(kBuf), 16, 0,
                                uint16_t(vs::kDescFNext | vs::kPackedDescFAvail)};
         }},
        {"address outside memory",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(0, {{ram.gpa(ram.size - 8), 16, 0}});
         }},
        {"address below memory",
         [](DriverPackedRing& r, GuestRam&) {
             r.publish(0, {{0x1000, 16, 0}});
         }},
        {"zero length",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(0, {{ram.gpa(kBuf), 0, 0}});
         }},
        {"indirect table outside memory",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(0, {{ram.gpa(ram.size - 16), 32, vs::kDescFIndirect}});
         }},
        {"indirect in a chain",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(0, {{ram.gpa(kBuf), 16, 0}, {ram.gpa(kBuf), 32, vs::kDescFIndirect}});
         }},
        {"indirect entry outside memory",
         [](DriverPackedRing& r, GuestRam& ram) {
             auto* t = reinterpret_cast<vs::PackedDesc*>(ram.at(kBuf));
             t[0] = {ram.gpa(kBuf + 4096), 16, 0, 0};
             t[1] = {ram.size + GuestRam::kGpa, 16, 0, vs::kDescFWrite};
             r.publish(0, {{ram.gpa(kBuf), 32, vs::kDescFIndirect}});
         }},
        {"too many segments",
         [](DriverPackedRing& r, GuestRam& ram) {
             r.publish(0, {{ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, 0},
                           {ram.gpa(kBuf), 16, vs::kDescFWrite}});
         }},
    };
    for (const auto& hc : cases) {
        SCOPED_TRACE(hc.what);
        FakeDevice d;
        Session s(d, "hostile");
        ASSERT_TRUE(set_mem_table(s, ram).result.ok());
        DriverPackedRing r(ram, 0, 16);
        const int cfd = start_queue(s, ram, r, 0, packed_features(), 0x8000);
        ASSERT_GE(cfd, 0);
        close(cfd);
        hc.build(r, ram);
        s.poll(0);
        EXPECT_TRUE(s.queue(0).broken);
        EXPECT_LE(d.submitted.size(), 1u);  // "id in flight": the first one only
        const size_t before = d.submitted.size();
        // Nothing more is taken from a broken queue.
        r.publish(2, {{ram.gpa(kBuf), 16, vs::kDescFWrite}});
        s.poll(0);
        EXPECT_EQ(d.submitted.size(), before);
    }
}

// The front end's side of the inflight region: GET_INFLIGHT_FD, then SET_INFLIGHT_FD back; the
// test keeps the fd (as QEMU does across back-end restarts) and maps it to look inside.
struct InflightRegion {
    vu::Inflight info{};
    int fd = -1;
    uint8_t* map = nullptr;
    ~InflightRegion() {
        if (map != nullptr) munmap(map, info.mmap_size);
        if (fd >= 0) close(fd);
    }
    bool get_and_set(Session& s, uint16_t queues, uint16_t size) {
        vu::Inflight in{0, 0, queues, size};
        auto g = send(s, Request::kGetInflightFd, &in, sizeof in);
        if (!g.result.ok() || g.reply.fd < 0) return false;
        std::memcpy(&info, g.reply.payload, sizeof info);
        fd = dup(g.reply.fd);
        void* m = mmap(nullptr, info.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) return false;
        map = static_cast<uint8_t*>(m);
        return set(s);
    }
    bool set(Session& s) {
        return send(s, Request::kSetInflightFd, &info, sizeof info, {dup(fd)}).result.ok();
    }
    vu::InflightQueuePacked* packed(uint16_t q = 0) {
        return reinterpret_cast<vu::InflightQueuePacked*>(
            map + q * vu::inflight_queue_packed_bytes(info.queue_size));
    }
};

TEST(InflightLayout, PackedMatchesDpdk) {
    // rte_vhost_inflight_info_packed: 29 header bytes, then 32-byte descriptors from offset 32.
    EXPECT_EQ(offsetof(vu::InflightQueuePacked, used_wrap_counter), 20u);
    EXPECT_EQ(offsetof(vu::InflightQueuePacked, old_used_wrap_counter), 21u);
    EXPECT_EQ(offsetof(vu::InflightDescPacked, counter), 8u);
    EXPECT_EQ(offsetof(vu::InflightDescPacked, addr), 24u);
    EXPECT_EQ(vu::inflight_queue_packed_bytes(128), 4096u + 64u);  // 32 * 128 + 29, up to 64
    EXPECT_EQ(vu::inflight_queue_packed_bytes(16), 576u);
}

class PackedInflightTest : public PackedSessionTest {
protected:
    // Runs 10 one-descriptor requests through (the ring is 16 slots), then makes five
    // available across the wrap: id 0 (two descriptors), 1, 2 (indirect), 3, 4 (two
    // descriptors), and completes 3 and 0 out of order. 1, 2 and 4 stay in flight.
    void run_until_crash() {
        ASSERT_TRUE(region.get_and_set(*session, 1, 16));
        start_packed();
        for (uint16_t i = 0; i < 10; ++i) {
            pring.publish(7, {{ram.gpa(kBuf), 8, vs::kDescFWrite}});
            session->poll(0);
            dev.finish(*session, 0, 7, 8);
            uint32_t id, len;
            ASSERT_TRUE(pring.pop_used(id, len));
        }
        dev.submitted.clear();
        auto* t = reinterpret_cast<vs::PackedDesc*>(ram.at(kBuf + 0x8000));  // indirect table
        t[0] = {ram.gpa(kBuf + 0x1000), 16, 0, 0};
        t[1] = {ram.gpa(kBuf + 0x2000), 512, 0, vs::kDescFWrite};
        pring.publish(0, {{ram.gpa(kBuf), 16, 0}, {ram.gpa(kBuf + 0x100), 1, vs::kDescFWrite}});
        pring.publish(1, {{ram.gpa(kBuf + 0x200), 8, vs::kDescFWrite}});
        pring.publish(2, {{ram.gpa(kBuf + 0x8000), 32, vs::kDescFIndirect}});
        pring.publish(3, {{ram.gpa(kBuf + 0x300), 8, vs::kDescFWrite}});
        pring.publish(4, {{ram.gpa(kBuf + 0x400), 16, 0}, {ram.gpa(kBuf + 0x500), 1, vs::kDescFWrite}});
        session->poll(0);
        ASSERT_EQ(dev.submitted, (std::vector<uint16_t>{0, 1, 2, 3, 4}));
        dev.finish(*session, 0, 3, 8);
        dev.finish(*session, 0, 0, 1);
        uint32_t id, len;
        ASSERT_TRUE(pring.pop_used(id, len));
        EXPECT_EQ(id, 3u);
        ASSERT_TRUE(pring.pop_used(id, len));
        EXPECT_EQ(id, 0u);
        EXPECT_FALSE(pring.pop_used(id, len));
    }
    // The back end dies (no GET_VRING_BASE); a new one gets the same inflight fd and QEMU's
    // stale base of a packed queue (it cannot know the position after a crash).
    void restart() {
        session.reset();
        close(call);
        call = -1;
        s2 = std::make_unique<Session>(dev2, "restarted");
        ASSERT_TRUE(set_mem_table(*s2, ram).result.ok());
        ASSERT_TRUE(region.set(*s2));
        call = start_queue(*s2, ram, pring, 0, packed_features(), 0x80008000);
        ASSERT_GE(call, 0);
    }
    void TearDown() override {
        s2.reset();
        PackedSessionTest::TearDown();
    }
    InflightRegion region;
    FakeDevice dev2;
    std::unique_ptr<Session> s2;
};

TEST_F(PackedInflightTest, RequestsAreResubmittedAndCompletedExactlyOnceAfterARestart) {
    run_until_crash();
    restart();
    EXPECT_FALSE(s2->queue(0).broken);
    ASSERT_EQ(dev2.submitted, (std::vector<uint16_t>{1, 2, 4}));  // oldest first, once each
    const Chain& c4 = dev2.slots[0][4].chain;  // from the region's copies, not the ring
    ASSERT_EQ(c4.readable, 1);
    ASSERT_EQ(c4.writable, 1);
    EXPECT_EQ(c4.iov[0].iov_base, s2->memory().region(0).hva + kBuf + 0x400);
    EXPECT_EQ(c4.iov[1].iov_base, s2->memory().region(0).hva + kBuf + 0x500);
    const Chain& c2 = dev2.slots[0][2].chain;  // the indirect table
    EXPECT_EQ(c2.readable, 1);
    EXPECT_EQ(c2.writable, 1);
    EXPECT_EQ(c2.writable_bytes, 512u);
    // Polling resumes after the chains taken before the crash: id 3 reused, then 5.
    pring.publish(3, {{ram.gpa(kBuf + 0x300), 8, vs::kDescFWrite}});
    pring.publish(5, {{ram.gpa(kBuf + 0x600), 8, vs::kDescFWrite}});
    s2->poll(0);
    ASSERT_EQ(dev2.submitted, (std::vector<uint16_t>{1, 2, 4, 3, 5}));
    for (uint16_t id : {4, 3, 1, 5, 2}) dev2.finish(*s2, 0, id, 1);
    s2->poll(0);
    std::vector<uint32_t> used;
    uint32_t id, len;
    while (pring.pop_used(id, len)) used.push_back(id);
    EXPECT_EQ(used, (std::vector<uint32_t>{4, 3, 1, 5, 2}));
    EXPECT_FALSE(s2->queue(0).broken);
    EXPECT_EQ(s2->outstanding(), 0u);
    // A second restart with nothing in flight resubmits nothing and keeps the position.
    dev2.submitted.clear();
    FakeDevice dev3;
    s2.reset();
    close(call);
    Session s3(dev3, "third");
    ASSERT_TRUE(set_mem_table(s3, ram).result.ok());
    ASSERT_TRUE(region.set(s3));
    call = start_queue(s3, ram, pring, 0, packed_features(), 0x80008000);
    ASSERT_GE(call, 0);
    EXPECT_TRUE(dev3.submitted.empty());
    pring.publish(6, {{ram.gpa(kBuf), 8, vs::kDescFWrite}});
    s3.poll(0);
    ASSERT_EQ(dev3.submitted, (std::vector<uint16_t>{6}));
    dev3.finish(s3, 0, 6, 8);
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_EQ(id, 6u);
}

TEST_F(PackedInflightTest, ACompletionCaughtHalfWayIsNeitherLostNorRepeated) {
    run_until_crash();
    auto* in = region.packed();
    const uint16_t old_used = in->old_used_idx;
    // Completion of 1 reached the ring, the back end died before committing it: the region
    // says in flight with used_idx moved on and old_used_idx not.
    const uint16_t h1 = [&] {
        for (uint16_t i = 0; i < 16; ++i)
            if (in->desc[i].inflight == 1 && in->desc[in->desc[i].last].id == 1) return i;
        return uint16_t(0xffff);
    }();
    ASSERT_LT(h1, 16);
    session->queue(0).inflight_packed = nullptr;  // this back end stops writing the region
    dev.finish(*session, 0, 1, 8);
    in->desc[h1].inflight = 1;
    in->free_head = h1;
    in->used_idx = static_cast<uint16_t>(old_used + 1);
    restart();
    EXPECT_EQ(dev2.submitted, (std::vector<uint16_t>{2, 4}));
    uint32_t id, len;
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_EQ(id, 1u);
    for (uint16_t i : {2, 4}) dev2.finish(*s2, 0, i, 1);
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_EQ(id, 2u);
    ASSERT_TRUE(pring.pop_used(id, len));
    EXPECT_EQ(id, 4u);
    EXPECT_FALSE(s2->queue(0).broken);
}

TEST_F(PackedInflightTest, ACompletionThatDidNotReachTheRingIsRolledBack) {
    run_until_crash();
    auto* in = region.packed();
    // The back end moved used_idx for 1 and died before writing the used descriptor.
    uint16_t h1 = 0xffff;
    for (uint16_t i = 0; i < 16; ++i)
        if (in->desc[i].inflight == 1 && in->desc[in->desc[i].last].id == 1) h1 = i;
    ASSERT_LT(h1, 16);
    in->free_head = h1;
    in->used_idx = static_cast<uint16_t>(in->old_used_idx + 1);
    restart();
    EXPECT_EQ(dev2.submitted, (std::vector<uint16_t>{1, 2, 4}));
    for (uint16_t i : {1, 2, 4}) dev2.finish(*s2, 0, i, 1);
    uint32_t id, len;
    std::vector<uint32_t> used;
    while (pring.pop_used(id, len)) used.push_back(id);
    EXPECT_EQ(used, (std::vector<uint32_t>{1, 2, 4}));
}

TEST_F(PackedInflightTest, HostileRegionsBreakTheQueueOnly) {
    struct Case {
        const char* what;
        void (*scribble)(vu::InflightQueuePacked* in);
    };
    const Case cases[] = {
        {"version", [](vu::InflightQueuePacked* in) { in->version = 7; }},
        {"desc_num", [](vu::InflightQueuePacked* in) { in->desc_num = 8; }},
        {"used index", [](vu::InflightQueuePacked* in) { in->used_idx = in->old_used_idx = 16; }},
        {"wrap counter", [](vu::InflightQueuePacked* in) { in->used_wrap_counter = 2; }},
        {"inflight value", [](vu::InflightQueuePacked* in) { in->desc[15].inflight = 2; }},
        {"chain of 0",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16))
                 if (d.inflight == 1) d.num = 0;
         }},
        {"chain longer than the ring",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16))
                 if (d.inflight == 1) d.num = 17;
         }},
        {"next out of range",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16))
                 if (d.inflight == 1 && d.num == 2) in->desc[&d - in->desc].next = 999;
         }},
        {"wrong last",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16))
                 if (d.inflight == 1) d.last = static_cast<uint16_t>(d.last + 1);
         }},
        {"every entry in flight with the same buffer id",
         [](vu::InflightQueuePacked* in) {
             for (uint16_t i = 0; i < 16; ++i) {
                 in->desc[i].inflight = 1;
                 in->desc[i].num = 1;
                 in->desc[i].last = i;
                 in->desc[i].id = 1;
             }
         }},
        {"a chain running into another's entries",
         [](vu::InflightQueuePacked* in) {
             uint16_t one = 16, two = 16;  // a head of one descriptor, a head of two
             for (uint16_t i = 0; i < 16; ++i)
                 if (in->desc[i].inflight == 1) (in->desc[i].num == 1 ? one : two) = i;
             in->desc[two].next = one;
             in->desc[two].last = one;
         }},
        {"more descriptors in flight than the ring holds",
         [](vu::InflightQueuePacked* in) {
             for (uint16_t i = 0; i < 16; ++i) {
                 in->desc[i].inflight = 1;
                 in->desc[i].num = 2;
                 in->desc[i].next = static_cast<uint16_t>((i + 1) % 16);
                 in->desc[i].last = static_cast<uint16_t>((i + 1) % 16);
                 in->desc[(i + 1) % 16].id = i;
             }
         }},
        {"buffer id out of range",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16))
                 if (d.inflight == 1) in->desc[d.last].id = 16;
         }},
        {"descriptor outside guest memory",
         [](vu::InflightQueuePacked* in) {
             for (auto& d : std::span(in->desc, 16)) d.addr = ~0ull - 4;
         }},
    };
    for (const auto& hc : cases) {
        SCOPED_TRACE(hc.what);
        dev = FakeDevice{};
        dev2 = FakeDevice{};
        pring.~DriverPackedRing();
        new (&pring) DriverPackedRing(ram, 0, 16);
        region.~InflightRegion();
        new (&region) InflightRegion{};
        session = std::make_unique<Session>(dev, "test");
        ASSERT_TRUE(set_mem_table(*session, ram).result.ok());
        if (call >= 0) close(call);
        call = -1;
        run_until_crash();
        hc.scribble(region.packed());
        restart();
        EXPECT_TRUE(s2->queue(0).broken);
        // Nothing more is taken from the broken queue.
        const size_t before = dev2.submitted.size();
        pring.publish(9, {{ram.gpa(kBuf), 8, vs::kDescFWrite}});
        s2->poll(0);
        EXPECT_EQ(dev2.submitted.size(), before);
        s2.reset();
    }
}

TEST_F(PackedInflightTest, ARegionTooSmallForPackedRecordsBreaksTheQueue) {
    // A front end handing back a region sized for split records only.
    const size_t len = vu::inflight_queue_split_bytes(16);
    const int fd = memfd_create("small-inflight", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(len)), 0);
    vu::Inflight in{len, 0, 1, 16};
    ASSERT_TRUE(send(*session, Request::kSetInflightFd, &in, sizeof in, {fd}).result.ok());
    call = start_queue(*session, ram, pring, 0, packed_features(), 0x80008000);
    ASSERT_GE(call, 0);
    EXPECT_TRUE(session->queue(0).broken);
}

}  // namespace
}  // namespace strata::vhost
