// SplitRing over a plain translator (not GuestMemory): the walker is generic over the memory
// type, as the future hw-emulation virtio-blk model will use it; event-index interrupts.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <strata/vhost/virtqueue.h>

namespace strata::vhost {
namespace {

namespace vs = virtio::spec;

// Guest memory = one flat vector at guest-physical 0x10000.
struct FlatMem {
    std::vector<uint8_t> bytes = std::vector<uint8_t>(1 << 16);
    static constexpr uint64_t kBase = 0x10000;
    void* gpa_to_hva(uint64_t gpa, uint64_t len) const noexcept {
        if (gpa < kBase || gpa - kBase > bytes.size() || len > bytes.size() - (gpa - kBase))
            return nullptr;
        return const_cast<uint8_t*>(bytes.data()) + (gpa - kBase);
    }
    int gpa_to_iov(uint64_t gpa, uint64_t len, iovec* iov, int max) const noexcept {
        void* p = gpa_to_hva(gpa, len);
        if (p == nullptr) return -1;
        if (max < 1) return -2;
        iov[0] = {p, len};
        return 1;
    }
};

struct RingFixture : ::testing::Test {
    FlatMem mem;
    static constexpr uint16_t kNum = 8;
    vs::VringDesc* desc = reinterpret_cast<vs::VringDesc*>(mem.bytes.data());
    vs::VringAvail* avail = reinterpret_cast<vs::VringAvail*>(mem.bytes.data() + 0x1000);
    vs::VringUsed* used = reinterpret_cast<vs::VringUsed*>(mem.bytes.data() + 0x2000);
    SplitRing<FlatMem> ring;
    iovec iov[4];
    Chain c{iov, 4};
    void publish(uint16_t head) {
        avail->ring[avail->idx % kNum] = head;
        ++avail->idx;
    }
};

TEST_F(RingFixture, EventIndexInterrupts) {
    ring.attach(&mem, desc, avail, used, kNum, 0, true, true);
    desc[0] = {FlatMem::kBase + 0x4000, 8, vs::kDescFWrite, 0};
    for (int i = 0; i < 3; ++i) publish(0);
    uint16_t n = 0;
    ASSERT_EQ(ring.available(n), WalkError::none);
    ASSERT_EQ(n, 3);
    // The driver wants an interrupt only once used->idx passes 2.
    *vs::split_used_event(avail, kNum) = 2;
    for (int i = 0; i < 3; ++i) {
        uint16_t head;
        ASSERT_EQ(ring.pop(head), WalkError::none);
        ASSERT_EQ(ring.walk(head, c), WalkError::none);
    }
    EXPECT_EQ(*vs::split_avail_event(used, kNum), 3);  // the device tells where it is
    ring.push_used(0, 8);
    EXPECT_TRUE(ring.need_interrupt());  // the first one always
    ring.push_used(0, 8);
    EXPECT_FALSE(ring.need_interrupt());  // used idx 2: not past used_event 2
    ring.push_used(0, 8);
    EXPECT_TRUE(ring.need_interrupt());   // used idx 3 passed 2
    EXPECT_FALSE(ring.need_interrupt());  // nothing new
}

TEST_F(RingFixture, WalkerReturnsEachViolation) {
    ring.attach(&mem, desc, avail, used, kNum, 0, false, true);
    desc[0] = {FlatMem::kBase + 0x4000, 16, vs::kDescFNext, 0};  // self loop
    iovec big[64];
    Chain cb{big, 64};
    EXPECT_EQ(ring.walk(0, cb), WalkError::chain_too_long);
    EXPECT_EQ(ring.walk(0, c), WalkError::too_many_segments);  // fewer iovecs than the table
    desc[0] = {FlatMem::kBase + 0xfff0, 32, 0, 0};
    EXPECT_EQ(ring.walk(0, c), WalkError::bad_address);
    desc[0] = {FlatMem::kBase + 0x4000, 16, vs::kDescFNext, 1};
    for (uint16_t i = 1; i < 5; ++i)
        desc[i] = {FlatMem::kBase + 0x4000, 16, vs::kDescFNext, uint16_t(i + 1)};
    desc[5] = {FlatMem::kBase + 0x4000, 16, 0, 0};
    EXPECT_EQ(ring.walk(0, c), WalkError::too_many_segments);
    EXPECT_EQ(ring.walk(kNum, c), WalkError::head_out_of_range);
    desc[0] = {FlatMem::kBase + 0x4000, 16, 0, 0};
    EXPECT_EQ(ring.walk(0, c), WalkError::none);
    EXPECT_EQ(c.readable_bytes, 16u);
}

}  // namespace
}  // namespace strata::vhost
