// Packed virtqueues end to end at the ring level: core/virtio's driver Virtqueue (packed) and
// core/vhost's device-side PackedRing over the same memory in one process (the device address
// of a byte is its host address, as with virtio-user). Round trips of direct and indirect chains
// past many wraps of a small ring with completions in random order, the vring base encoding,
// event suppression both ways, and hostile rings: every walker error on the device side, a used
// id not in flight on the driver side.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include <strata/vhost/virtqueue.h>
#include <strata/virtio/virtqueue.h>

namespace strata::vhost {
namespace {

namespace vs = virtio::spec;
using virtio::VqBuffer;
using virtio::VqCompletion;

// Identity translation over one arena: the device address is the host address.
struct Arena {
    explicit Arena(size_t n) : len(n), p(static_cast<uint8_t*>(std::aligned_alloc(4096, n))) {
        std::memset(p, 0, n);
    }
    ~Arena() { std::free(p); }
    uint64_t addr(size_t off) const { return reinterpret_cast<uint64_t>(p + off); }
    void* gpa_to_hva(uint64_t gpa, uint64_t n) const noexcept {
        const uint64_t b = reinterpret_cast<uint64_t>(p);
        if (gpa < b || gpa - b > len || n > len - (gpa - b)) return nullptr;
        return reinterpret_cast<void*>(gpa);
    }
    int gpa_to_iov(uint64_t gpa, uint64_t n, iovec* iov, int max) const noexcept {
        void* h = gpa_to_hva(gpa, n);
        if (h == nullptr) return -1;
        if (max < 1) return -2;
        iov[0] = {h, n};
        return 1;
    }
    size_t len;
    uint8_t* p;
};

constexpr size_t kData = 1 << 20;  // data buffers from here on

struct PackedFixture : ::testing::Test {
    Arena mem{2 << 20};
    virtio::Virtqueue drv;
    PackedRing<Arena> dev;
    std::vector<uint16_t> slots;
    iovec iov[16];
    Chain c{iov, 16};

    void make(uint16_t size, bool indirect, bool event_idx, uint16_t max_indirect = 8) {
        ASSERT_TRUE(
            drv.init(mem.p, mem.addr(0), size, max_indirect, indirect, event_idx, true).ok());
        ASSERT_TRUE(drv.packed());
        attach(size, drv.initial_base(), indirect, event_idx);
    }
    void attach(uint16_t size, uint32_t base, bool indirect, bool event_idx) {
        slots.assign(size, 0);
        dev.attach(&mem, drv.packed_desc(), drv.driver_event(), drv.device_event(), slots.data(),
                   size, base, event_idx, indirect);
    }
    // The device takes one available chain: its id, or -1 when there is none.
    int take(WalkError want = WalkError::none) {
        bool ready = false;
        uint16_t id = 0;
        WalkError e = dev.peek(ready, id);
        if (e == WalkError::none && !ready) return -1;
        if (e == WalkError::none) e = dev.walk(id, c);
        EXPECT_EQ(e, want) << walk_error_name(e);
        return e == WalkError::none ? id : -2;
    }
};

// n buffers for request `tag`: readable ones then one writable.
std::vector<VqBuffer> request(const Arena& m, uint32_t tag, size_t n) {
    std::vector<VqBuffer> b;
    for (size_t i = 0; i < n; ++i)
        b.push_back({m.addr(kData + (tag % 1024) * 256 + i * 16), static_cast<uint32_t>(8 + i),
                     i + 1 == n});
    return b;
}

void round_trip(PackedFixture& f, uint16_t size, bool indirect, size_t max_bufs) {
    f.make(size, indirect, false);
    std::mt19937 rng(42);
    struct Out {
        uint16_t id;
        uint32_t len;
    };
    std::vector<Out> at_device;  // walked, not yet completed
    uint32_t next_tag = 0, completed = 0;
    std::vector<uint32_t> expect_len(20000);
    while (completed < 20000) {
        // The driver adds what fits.
        while (next_tag < 20000) {
            const size_t n = 1 + rng() % max_bufs;
            auto bufs = request(f.mem, next_tag, n);
            const Status s = f.drv.enqueue(bufs, reinterpret_cast<void*>(uintptr_t(next_tag) + 1));
            if (s.code() == Errc::no_space) break;
            ASSERT_TRUE(s.ok());
            expect_len[next_tag] = static_cast<uint32_t>(bufs.back().len);
            ++next_tag;
            if (rng() % 3 == 0) break;
        }
        (void)f.drv.flush();
        // The device takes everything available and checks each chain against its request.
        for (int id; (id = f.take()) >= 0;) {
            ASSERT_GE(f.c.readable + f.c.writable, 1);
            ASSERT_EQ(f.c.writable, 1);
            // The buffers are the request's, in order.
            const auto off = reinterpret_cast<uint8_t*>(f.c.iov[0].iov_base) - f.mem.p - kData;
            ASSERT_EQ(off % 256, 0);
            for (int i = 1; i < f.c.readable + f.c.writable; ++i)
                ASSERT_EQ(reinterpret_cast<uint8_t*>(f.c.iov[i].iov_base),
                          reinterpret_cast<uint8_t*>(f.c.iov[0].iov_base) + 16 * i);
            at_device.push_back({uint16_t(id), uint32_t(f.c.writable_bytes)});
        }
        ASSERT_FALSE(at_device.empty());
        // Completes a random half in random order.
        std::shuffle(at_device.begin(), at_device.end(), rng);
        const size_t k = 1 + rng() % at_device.size();
        for (size_t i = 0; i < k; ++i) f.dev.push_used(at_device[i].id, at_device[i].len);
        at_device.erase(at_device.begin(), at_device.begin() + long(k));
        VqCompletion cpl[64];
        for (size_t n; (n = f.drv.poll(cpl)) != 0;)
            for (size_t i = 0; i < n; ++i) {
                const uint32_t tag = uint32_t(reinterpret_cast<uintptr_t>(cpl[i].cookie) - 1);
                ASSERT_LT(tag, next_tag);
                EXPECT_EQ(cpl[i].len, expect_len[tag]);
                ++completed;
            }
        ASSERT_FALSE(f.drv.broken());
    }
    EXPECT_EQ(f.drv.in_flight(), 0u);
    EXPECT_EQ(f.drv.num_free(), size);
}

TEST_F(PackedFixture, DirectChainsRoundTripPastManyWraps) {
    round_trip(*this, 8, false, 3);  // chains of up to 3 slots wrap mid-chain
}

TEST_F(PackedFixture, IndirectChainsRoundTripPastManyWraps) {
    round_trip(*this, 4, true, 6);
}

TEST_F(PackedFixture, OddSizedChainsStraddleTheRingEnd) {
    make(8, false, false);
    // 3 + 3 slots, then a 4-slot chain runs from slot 6 over the end to slot 1 with the avail
    // wrap counter flipping inside it.
    for (uint32_t t = 0; t < 2; ++t) ASSERT_TRUE(drv.enqueue(request(mem, t, 3), nullptr).ok());
    EXPECT_EQ(take(), 0);
    EXPECT_EQ(take(), 1);
    dev.push_used(0, 8);
    dev.push_used(1, 8);
    VqCompletion cpl[4];
    EXPECT_EQ(drv.poll(cpl), 2u);
    ASSERT_TRUE(drv.enqueue(request(mem, 2, 4), nullptr).ok());
    const int id = take();
    ASSERT_GE(id, 0);
    EXPECT_EQ(c.readable, 3);
    EXPECT_EQ(dev.last_avail(), 2);
    EXPECT_FALSE(dev.avail_wrap());
    EXPECT_EQ(dev.base() & 0xffff, 2u);  // wrap counter 0 in bit 15
    dev.push_used(uint16_t(id), 11);
    ASSERT_EQ(drv.poll(cpl), 1u);
    EXPECT_EQ(cpl[0].len, 11u);
    EXPECT_EQ(dev.used_idx(), 2);
    EXPECT_FALSE(dev.used_wrap());
}

TEST_F(PackedFixture, BaseCarriesTheWrapCounter) {
    make(8, false, false);
    EXPECT_EQ(drv.initial_base(), 0x80008000u);
    EXPECT_EQ(dev.base(), 0x80008000u);
    // Only the avail half (older front ends): the used position follows it.
    attach(8, 0x0005, false, false);
    EXPECT_EQ(dev.last_avail(), 5);
    EXPECT_FALSE(dev.avail_wrap());
    EXPECT_EQ(dev.used_idx(), 5);
    EXPECT_FALSE(dev.used_wrap());
    // QEMU's full encoding: the used half in bits 16-31.
    attach(8, 0x8003u | 0x0006u << 16, false, false);
    EXPECT_EQ(dev.last_avail(), 3);
    EXPECT_TRUE(dev.avail_wrap());
    EXPECT_EQ(dev.used_idx(), 6);
    EXPECT_FALSE(dev.used_wrap());
    EXPECT_EQ(dev.base(), 0x00068003u);
}

TEST_F(PackedFixture, DriverPollsSoTheDeviceSignalsOnlyWhenAsked) {
    make(8, false, false);
    EXPECT_EQ(drv.driver_event()->flags, vs::kPackedEventFlagDisable);
    ASSERT_TRUE(drv.enqueue(request(mem, 0, 1), nullptr).ok());
    const int id = take();
    dev.push_used(uint16_t(id), 8);
    EXPECT_FALSE(dev.need_interrupt());  // DISABLE
    drv.driver_event()->flags = vs::kPackedEventFlagEnable;
    ASSERT_TRUE(drv.enqueue(request(mem, 1, 1), nullptr).ok());
    dev.push_used(uint16_t(take()), 8);
    EXPECT_TRUE(dev.need_interrupt());
    EXPECT_FALSE(dev.need_interrupt());  // nothing new
}

TEST_F(PackedFixture, EventIndexInterruptsAtTheRequestedDescriptor) {
    make(8, false, true);
    // The driver wants an interrupt once the used position passes slot 2 of wrap 1.
    drv.driver_event()->off_wrap = 2 | vs::kPackedEventWrapBit;
    drv.driver_event()->flags = vs::kPackedEventFlagDesc;
    for (uint32_t t = 0; t < 4; ++t) ASSERT_TRUE(drv.enqueue(request(mem, t, 1), nullptr).ok());
    int ids[4];
    for (int& i : ids) i = take();
    dev.push_used(uint16_t(ids[0]), 8);
    EXPECT_TRUE(dev.need_interrupt());  // the first one always
    dev.push_used(uint16_t(ids[1]), 8);
    EXPECT_FALSE(dev.need_interrupt());  // used position 2: not past slot 2
    dev.push_used(uint16_t(ids[2]), 8);
    EXPECT_TRUE(dev.need_interrupt());  // position 3 passed slot 2
    // An offset in the other wrap is a lap away: not due.
    drv.driver_event()->off_wrap = 3;
    dev.push_used(uint16_t(ids[3]), 8);
    EXPECT_FALSE(dev.need_interrupt());
}

TEST_F(PackedFixture, DeviceEventSuppressionDecidesDriverNotifications) {
    make(8, false, true);
    EXPECT_EQ(drv.device_event()->flags, vs::kPackedEventFlagDisable);  // the device polls
    ASSERT_TRUE(drv.enqueue(request(mem, 0, 1), nullptr).ok());
    EXPECT_FALSE(drv.flush());
    EXPECT_EQ(drv.notifies_suppressed(), 1u);
    drv.device_event()->flags = vs::kPackedEventFlagEnable;
    ASSERT_TRUE(drv.enqueue(request(mem, 1, 1), nullptr).ok());
    EXPECT_TRUE(drv.flush());
    EXPECT_FALSE(drv.flush());  // nothing added
    // DESC: notify when the avail position passes slot 3 (wrap 1).
    drv.device_event()->flags = vs::kPackedEventFlagDesc;
    drv.device_event()->off_wrap = 3 | vs::kPackedEventWrapBit;
    ASSERT_TRUE(drv.enqueue(request(mem, 2, 1), nullptr).ok());  // slot 2
    EXPECT_FALSE(drv.flush());
    ASSERT_TRUE(drv.enqueue(request(mem, 3, 1), nullptr).ok());  // slot 3
    EXPECT_TRUE(drv.flush());
}

TEST_F(PackedFixture, UsedIdNotInFlightBreaksTheDriverQueue) {
    make(8, false, false);
    ASSERT_TRUE(drv.enqueue(request(mem, 0, 1), nullptr).ok());
    ASSERT_EQ(take(), 0);
    dev.push_used(5, 8);  // never made available
    VqCompletion cpl[4];
    EXPECT_EQ(drv.poll(cpl), 0u);
    EXPECT_TRUE(drv.broken());
    EXPECT_EQ(drv.enqueue(request(mem, 1, 1), nullptr).code(), Errc::io_error);
    EXPECT_EQ(drv.take_in_flight(cpl), 1u);
}

// A ring written by hand: the hostile driver.
struct HostileFixture : ::testing::Test {
    static constexpr uint16_t kNum = 8;
    Arena mem{1 << 20};
    vs::PackedDesc* ring = reinterpret_cast<vs::PackedDesc*>(mem.p);
    vs::PackedEvent* drv_ev = reinterpret_cast<vs::PackedEvent*>(mem.p + 0x1000);
    vs::PackedEvent* dev_ev = reinterpret_cast<vs::PackedEvent*>(mem.p + 0x2000);
    uint16_t slots[kNum] = {};
    PackedRing<Arena> dev;
    iovec iov[4];
    Chain c{iov, 4};
    static constexpr uint16_t kAvail = vs::kPackedDescFAvail;  // wrap counter 1
    void SetUp() override {
        dev.attach(&mem, ring, drv_ev, dev_ev, slots, kNum, 0x8000, false, true);
    }
    void put(uint16_t i, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
        ring[i] = {addr, len, id, static_cast<uint16_t>(flags | kAvail)};
    }
    WalkError walk() {
        bool ready = false;
        uint16_t id = 0;
        if (auto e = dev.peek(ready, id); e != WalkError::none) return e;
        EXPECT_TRUE(ready);
        return dev.walk(id, c);
    }
};

TEST_F(HostileFixture, EachViolationIsNamed) {
    const uint64_t buf = mem.addr(0x10000);
    put(0, buf, 16, 8, 0);  // id == num
    EXPECT_EQ(walk(), WalkError::id_out_of_range);
    for (uint16_t i = 0; i < kNum; ++i) put(i, buf, 16, 0, vs::kDescFNext);  // every slot NEXT
    EXPECT_EQ(walk(), WalkError::chain_too_long);
    put(0, mem.addr(mem.len - 8), 16, 0, 0);  // runs past memory
    EXPECT_EQ(walk(), WalkError::bad_address);
    put(0, 0x1000, 16, 0, 0);  // below memory
    EXPECT_EQ(walk(), WalkError::bad_address);
    put(0, buf, 0, 0, 0);
    EXPECT_EQ(walk(), WalkError::zero_length);
    put(0, buf, 16, 0, vs::kDescFWrite | vs::kDescFNext);
    put(1, buf, 16, 0, 0);
    EXPECT_EQ(walk(), WalkError::readable_after_writable);
    put(0, buf, 16, 0, vs::kDescFNext);
    put(1, buf, 32, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::indirect_in_chain);
    put(0, buf, 24, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::indirect_bad_length);
    put(0, buf, 0, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::indirect_bad_length);
    put(0, mem.addr(mem.len - 16), 32, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::bad_address);
    // An indirect table whose entries point outside memory or have length 0.
    auto* t = reinterpret_cast<vs::PackedDesc*>(mem.p + 0x10000);
    t[0] = {buf + 64, 16, 0, 0};
    t[1] = {0x10, 16, 0, vs::kDescFWrite};
    put(0, buf, 32, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::bad_address);
    t[1] = {buf + 64, 0, 0, vs::kDescFWrite};
    EXPECT_EQ(walk(), WalkError::zero_length);
    t[1] = {buf + 64, 16, 0, vs::kDescFWrite};
    EXPECT_EQ(walk(), WalkError::none);
    EXPECT_EQ(c.readable, 1);
    EXPECT_EQ(c.writable, 1);
    // Too many segments for the request.
    auto* big = reinterpret_cast<vs::PackedDesc*>(mem.p + 0x20000);
    for (int i = 0; i < 5; ++i) big[i] = {buf, 16, 0, 0};
    put(1, mem.addr(0x20000), 5 * 16, 1, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::too_many_segments);
}

TEST_F(HostileFixture, IndirectWithoutTheFeature) {
    dev.attach(&mem, ring, drv_ev, dev_ev, slots, kNum, 0x8000, false, false);
    put(0, mem.addr(0x10000), 32, 0, vs::kDescFIndirect);
    EXPECT_EQ(walk(), WalkError::indirect_not_negotiated);
}

TEST_F(HostileFixture, NothingAvailableInTheWrongWrap) {
    put(0, mem.addr(0x10000), 16, 0, 0);
    ring[0].flags = vs::kPackedDescFUsed;  // available for wrap 0: not this lap's
    bool ready = true;
    uint16_t id;
    EXPECT_EQ(dev.peek(ready, id), WalkError::none);
    EXPECT_FALSE(ready);
}

}  // namespace
}  // namespace strata::vhost
