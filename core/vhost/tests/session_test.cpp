// The vhost-user back end (Session) driven message by message by the test front end, with a
// fake device that records the requests it gets: negotiation, malformed messages, memory-table
// translation, queue start, the polled data path with call-eventfd interrupts, hostile rings
// (the queue is marked broken, nothing crashes), GET_VRING_BASE draining and inflight
// resubmission after a back-end restart.
#include <gtest/gtest.h>

#include <sys/eventfd.h>

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

TEST_F(PackedSessionTest, InflightRegionIsNotUsedForPackedQueues) {
    vu::Inflight in{0, 0, 1, 16};
    auto g = send(*session, Request::kGetInflightFd, &in, sizeof in);
    ASSERT_TRUE(g.result.ok());
    vu::Inflight got;
    std::memcpy(&got, g.reply.payload, sizeof got);
    ASSERT_TRUE(
        send(*session, Request::kSetInflightFd, &got, sizeof got, {dup(g.reply.fd)}).result.ok());
    start_packed();
    EXPECT_EQ(session->queue(0).inflight, nullptr);
    pring.publish(3, {{ram.gpa(kBuf), 1, vs::kDescFWrite}});
    session->poll(0);
    ASSERT_EQ(dev.submitted.size(), 1u);
    dev.finish(*session, 0, 3, 1);
    uint32_t id, len;
    EXPECT_TRUE(pring.pop_used(id, len));
}

}  // namespace
}  // namespace strata::vhost
