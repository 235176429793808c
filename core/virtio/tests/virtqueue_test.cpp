// Virtqueue against a device played by the test: it reads the available ring and walks the
// descriptor chains (direct or indirect) in the same memory, through device addresses that
// differ from the pointers, and writes the used ring as a device would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <strata/virtio/virtqueue.h>

namespace strata::virtio {
namespace {

namespace spec = strata::virtio::spec;

constexpr uint64_t kDevBase = 0x7000'0000'0000ULL;  // device address of the queue memory

struct Chain {
    uint16_t head = 0;
    std::vector<VqBuffer> bufs;
    bool indirect = false;
};

class FakeDevice {
public:
    FakeDevice(Virtqueue& q, uint8_t* mem) : q_(q), mem_(mem) {}

    // Takes every newly available chain.
    std::vector<Chain> pop() {
        std::vector<Chain> out;
        const uint16_t idx = q_.avail()->idx;
        while (last_avail_ != idx) {
            const uint16_t head = q_.avail()->ring[last_avail_ % q_.size()];
            ++last_avail_;
            Chain c;
            c.head = head;
            const spec::VringDesc* table = q_.desc();
            uint16_t i = head;
            size_t limit = q_.size();
            if (table[head].flags & spec::kDescFIndirect) {
                c.indirect = true;
                EXPECT_EQ(table[head].len % sizeof(spec::VringDesc), 0u);
                table = reinterpret_cast<const spec::VringDesc*>(to_ptr(table[head].addr));
                limit = q_.desc()[head].len / sizeof(spec::VringDesc);
                i = 0;
            }
            for (size_t n = 0;; ++n) {
                EXPECT_LT(n, limit) << "descriptor chain loops";
                if (n >= limit) break;
                const spec::VringDesc& d = table[i];
                EXPECT_EQ(d.flags & spec::kDescFIndirect, 0) << "nested indirect";
                c.bufs.push_back({d.addr, d.len, (d.flags & spec::kDescFWrite) != 0});
                if (!(d.flags & spec::kDescFNext)) break;
                i = d.next;
            }
            out.push_back(c);
        }
        if (event_idx_) *spec::split_avail_event(q_.used(), q_.size()) = last_avail_;
        return out;
    }

    void complete(uint16_t head, uint32_t len) {
        q_.used()->ring[used_idx_ % q_.size()] = {head, len};
        ++used_idx_;
        q_.used()->idx = used_idx_;
    }

    void* to_ptr(uint64_t dev_addr) const { return mem_ + (dev_addr - kDevBase); }
    void set_event_idx(bool v) { event_idx_ = v; }
    uint16_t last_avail() const { return last_avail_; }

private:
    Virtqueue& q_;
    uint8_t* mem_;
    uint16_t last_avail_ = 0;
    uint16_t used_idx_ = 0;
    bool event_idx_ = false;
};

class VirtqueueTest : public ::testing::Test {
protected:
    void make(uint16_t size, uint16_t max_indirect, bool indirect, bool event_idx) {
        const VirtqueueLayout l = Virtqueue::layout(size, indirect ? max_indirect : 0);
        mem_.reset(
            static_cast<uint8_t*>(std::aligned_alloc(4096, (l.total_bytes + 4095) / 4096 * 4096)));
        ASSERT_TRUE(q_.init(mem_.get(), kDevBase, size, max_indirect, indirect, event_idx).ok());
        dev_ = std::make_unique<FakeDevice>(q_, mem_.get());
        dev_->set_event_idx(event_idx);
    }
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> mem_;
    Virtqueue q_;
    std::unique_ptr<FakeDevice> dev_;
};

std::vector<VqBuffer> request(uint64_t tag, size_t n) {
    std::vector<VqBuffer> b;
    for (size_t i = 0; i < n; ++i)
        b.push_back({0x1000 * (tag + 1) + i, static_cast<uint32_t>(16 + i), i + 1 == n});
    return b;
}

TEST_F(VirtqueueTest, InitRejectsBadSizesAndAlignment) {
    alignas(16) static uint8_t buf[1 << 16];
    Virtqueue q;
    EXPECT_EQ(q.init(buf, 0, 0, 0, false, false).error().code(), Errc::invalid_argument);
    EXPECT_EQ(q.init(buf, 0, 24, 0, false, false).error().code(), Errc::invalid_argument);
    EXPECT_EQ(q.init(buf + 8, 0, 16, 0, false, false).error().code(), Errc::invalid_argument);
    EXPECT_EQ(q.init(buf, 0, 16, 1, true, false).error().code(), Errc::invalid_argument);
    EXPECT_TRUE(q.init(buf, 0, 16, 0, false, false).ok());
}

TEST_F(VirtqueueTest, LayoutKeepsPartsAlignedAndApart) {
    const VirtqueueLayout l = Virtqueue::layout(256, 32);
    EXPECT_EQ(l.desc_offset, 0u);
    EXPECT_EQ(l.avail_offset, 256u * 16);
    EXPECT_EQ(l.used_offset % 4096, 0u);
    EXPECT_GE(l.used_offset, l.avail_offset + spec::split_avail_bytes(256));
    EXPECT_GE(l.indirect_offset, l.used_offset + spec::split_used_bytes(256));
    EXPECT_EQ(l.total_bytes, l.indirect_offset + 256u * 32 * 16);
}

TEST_F(VirtqueueTest, PackedLayoutAndInit) {
    const VirtqueueLayout l = Virtqueue::layout(256, 32, true);
    EXPECT_EQ(l.desc_offset, 0u);
    EXPECT_EQ(l.avail_offset, 4096u);  // the driver event structure after the 4 KiB ring
    EXPECT_EQ(l.used_offset, l.avail_offset + 4096);
    EXPECT_EQ(l.total_bytes, l.indirect_offset + 256u * 32 * 16);
    alignas(4096) static uint8_t buf[1 << 16];
    Virtqueue q;
    ASSERT_TRUE(q.init(buf, 0x10000, 16, 4, true, false, true).ok());
    EXPECT_TRUE(q.packed());
    EXPECT_EQ(q.initial_base(), 0x80008000u);
    EXPECT_EQ(q.driver_event()->flags, spec::kPackedEventFlagDisable);  // the driver polls
    EXPECT_EQ(q.avail_device_addr(), 0x10000u + 4096);
    // A 3-buffer request goes indirect: one slot, id 0, the head's flags AVAIL (wrap 1).
    const VqBuffer bufs[3] = {{0x1000, 16, false}, {0x2000, 512, true}, {0x3000, 1, true}};
    ASSERT_TRUE(q.enqueue(bufs, nullptr).ok());
    EXPECT_EQ(q.packed_desc()[0].flags, spec::kPackedDescFAvail | spec::kDescFIndirect);
    EXPECT_EQ(q.packed_desc()[0].len, 48u);
    EXPECT_EQ(q.num_free(), 15);
    ASSERT_TRUE(q.init(buf, 0x10000, 16, 4, false, false, false).ok());
    EXPECT_EQ(q.initial_base(), 0u);
}

TEST_F(VirtqueueTest, DirectChainsRoundTripInOrderAndBatchPublishes) {
    make(8, 0, false, false);
    EXPECT_EQ(q_.avail()->flags, spec::kAvailFNoInterrupt);  // the driver polls
    int cookies[3];
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(q_.enqueue(request(i, 2), &cookies[i]).ok());
    EXPECT_EQ(q_.num_free(), 2);
    EXPECT_EQ(q_.avail()->idx, 0) << "nothing published before flush";
    EXPECT_TRUE(dev_->pop().empty());
    EXPECT_TRUE(q_.flush());
    EXPECT_FALSE(q_.flush()) << "an empty batch needs no notify";
    auto chains = dev_->pop();
    ASSERT_EQ(chains.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_FALSE(chains[i].indirect);
        auto want = request(i, 2);
        ASSERT_EQ(chains[i].bufs.size(), 2u);
        for (size_t j = 0; j < 2; ++j) {
            EXPECT_EQ(chains[i].bufs[j].addr, want[j].addr);
            EXPECT_EQ(chains[i].bufs[j].len, want[j].len);
            EXPECT_EQ(chains[i].bufs[j].device_writes, want[j].device_writes);
        }
    }
    // One request does not fit in the 2 descriptors left.
    EXPECT_EQ(q_.enqueue(request(9, 3), nullptr).code(), Errc::no_space);
    dev_->complete(chains[1].head, 7);
    VqCompletion c[4];
    ASSERT_EQ(q_.poll(c), 1u);
    EXPECT_EQ(c[0].cookie, &cookies[1]);
    EXPECT_EQ(c[0].len, 7u);
    EXPECT_EQ(q_.num_free(), 4);
    dev_->complete(chains[0].head, 0);
    dev_->complete(chains[2].head, 0);
    ASSERT_EQ(q_.poll(c), 2u);
    EXPECT_EQ(c[0].cookie, &cookies[0]);
    EXPECT_EQ(c[1].cookie, &cookies[2]);
    EXPECT_EQ(q_.num_free(), 8);
    EXPECT_EQ(q_.in_flight(), 0);
}

TEST_F(VirtqueueTest, LongChainsGoIndirectAndTakeOneDescriptor) {
    make(4, 16, true, false);
    EXPECT_EQ(q_.max_chain(), 16);
    int cookie = 0;
    ASSERT_TRUE(q_.enqueue(request(1, 16), &cookie).ok());
    ASSERT_TRUE(q_.enqueue(request(2, 1), nullptr).ok());  // one buffer: direct
    EXPECT_EQ(q_.num_free(), 2);
    EXPECT_EQ(q_.enqueue(request(3, 17), nullptr).code(), Errc::invalid_argument);
    ASSERT_TRUE(q_.flush());
    auto chains = dev_->pop();
    ASSERT_EQ(chains.size(), 2u);
    EXPECT_TRUE(chains[0].indirect);
    EXPECT_FALSE(chains[1].indirect);
    ASSERT_EQ(chains[0].bufs.size(), 16u);
    auto want = request(1, 16);
    for (size_t j = 0; j < 16; ++j) EXPECT_EQ(chains[0].bufs[j].addr, want[j].addr);
    EXPECT_TRUE(chains[0].bufs[15].device_writes);
    // The indirect table lies in the queue's memory, named by its device address.
    const spec::VringDesc& d = q_.desc()[chains[0].head];
    EXPECT_GE(d.addr, kDevBase + Virtqueue::layout(4, 16).indirect_offset);
    EXPECT_EQ(d.len, 16u * 16);
    dev_->complete(chains[0].head, 0);
    VqCompletion c[2];
    ASSERT_EQ(q_.poll(c), 1u);
    EXPECT_EQ(c[0].cookie, &cookie);
    EXPECT_EQ(q_.num_free(), 3);
}

// Many rounds of random request lengths completed in random order: the free list never loses or
// duplicates a descriptor, and every cookie comes back exactly once.
TEST_F(VirtqueueTest, FreeListSurvivesRandomOrderCompletion) {
    for (bool indirect : {false, true}) {
        make(32, 8, indirect, false);
        std::mt19937 rng(42);
        std::vector<Chain> outstanding;
        std::vector<int> seen(100000, 0);
        uint64_t next = 0;
        for (int round = 0; round < 2000; ++round) {
            for (;;) {
                const size_t n = 1 + rng() % 8;
                if (!q_.enqueue(request(next, n), reinterpret_cast<void*>(next + 1)).ok()) break;
                ++next;
            }
            q_.flush();
            for (auto& c : dev_->pop()) outstanding.push_back(c);
            std::shuffle(outstanding.begin(), outstanding.end(), rng);
            const size_t k = rng() % (outstanding.size() + 1);
            for (size_t i = 0; i < k; ++i) dev_->complete(outstanding[i].head, 0);
            outstanding.erase(outstanding.begin(), outstanding.begin() + static_cast<long>(k));
            VqCompletion c[64];
            size_t got;
            while ((got = q_.poll(c)) != 0)
                for (size_t i = 0; i < got; ++i)
                    ++seen[reinterpret_cast<uintptr_t>(c[i].cookie) - 1];
            ASSERT_EQ(q_.in_flight(), outstanding.size());
        }
        for (auto& c : outstanding) dev_->complete(c.head, 0);
        VqCompletion c[64];
        size_t got;
        while ((got = q_.poll(c)) != 0)
            for (size_t i = 0; i < got; ++i) ++seen[reinterpret_cast<uintptr_t>(c[i].cookie) - 1];
        EXPECT_EQ(q_.num_free(), 32);
        for (uint64_t i = 0; i < next; ++i) ASSERT_EQ(seen[i], 1) << "request " << i;
        EXPECT_FALSE(q_.broken());
    }
}

TEST_F(VirtqueueTest, EventIdxNotifiesOnlyWhenTheDeviceAsked) {
    make(16, 0, false, true);
    // No interrupts wanted: used_event far ahead of the device.
    EXPECT_EQ(*spec::split_used_event(q_.avail(), 16), 0x8000);
    ASSERT_TRUE(q_.enqueue(request(0, 1), nullptr).ok());
    EXPECT_TRUE(q_.flush()) << "avail_event 0: the first entry is wanted";
    dev_->pop();  // the device now asks to hear when entry 1 is made available
    ASSERT_TRUE(q_.enqueue(request(1, 1), nullptr).ok());
    ASSERT_TRUE(q_.enqueue(request(2, 1), nullptr).ok());
    EXPECT_TRUE(q_.flush());
    // The device has not looked since: avail_event is still 1, which the next batch does not
    // cross.
    ASSERT_TRUE(q_.enqueue(request(3, 1), nullptr).ok());
    EXPECT_FALSE(q_.flush());
    EXPECT_EQ(q_.notifies_suppressed(), 1u);
    dev_->pop();  // avail_event 4
    ASSERT_TRUE(q_.enqueue(request(4, 1), nullptr).ok());
    EXPECT_TRUE(q_.flush());
}

TEST_F(VirtqueueTest, NoNotifyFlagSuppressesWithoutEventIdx) {
    make(16, 0, false, false);
    q_.used()->flags = spec::kUsedFNoNotify;
    ASSERT_TRUE(q_.enqueue(request(0, 1), nullptr).ok());
    EXPECT_FALSE(q_.flush());
    q_.used()->flags = 0;
    ASSERT_TRUE(q_.enqueue(request(1, 1), nullptr).ok());
    EXPECT_TRUE(q_.flush());
}

TEST_F(VirtqueueTest, UsedIdNotInFlightBreaksTheQueue) {
    make(8, 0, false, false);
    ASSERT_TRUE(q_.enqueue(request(0, 1), nullptr).ok());
    q_.flush();
    auto chains = dev_->pop();
    dev_->complete(static_cast<uint16_t>(chains[0].head + 1), 0);  // never made available
    VqCompletion c[4];
    EXPECT_EQ(q_.poll(c), 0u);
    EXPECT_TRUE(q_.broken());
    EXPECT_EQ(q_.device_errors(), 1u);
    EXPECT_EQ(q_.enqueue(request(1, 1), nullptr).code(), Errc::io_error);
}

TEST_F(VirtqueueTest, UsedIdOutOfRangeAndRunawayIndexBreakTheQueue) {
    make(8, 0, false, false);
    ASSERT_TRUE(q_.enqueue(request(0, 1), nullptr).ok());
    q_.flush();
    dev_->pop();
    dev_->complete(1000, 0);
    VqCompletion c[4];
    EXPECT_EQ(q_.poll(c), 0u);
    EXPECT_TRUE(q_.broken());

    make(8, 0, false, false);
    ASSERT_TRUE(q_.enqueue(request(0, 1), nullptr).ok());
    q_.flush();
    q_.used()->idx = 5;  // five used entries for one request in flight
    EXPECT_EQ(q_.poll(c), 0u);
    EXPECT_TRUE(q_.broken());
}

TEST_F(VirtqueueTest, IndexWrapsPast16Bits) {
    make(4, 0, false, true);
    VqCompletion c[4];
    for (int i = 0; i < 70000; ++i) {
        ASSERT_TRUE(q_.enqueue(request(0, 1), reinterpret_cast<void*>(uintptr_t(i + 1))).ok());
        q_.flush();
        auto ch = dev_->pop();
        ASSERT_EQ(ch.size(), 1u);
        dev_->complete(ch[0].head, 0);
        ASSERT_EQ(q_.poll(c), 1u);
        ASSERT_EQ(c[0].cookie, reinterpret_cast<void*>(uintptr_t(i + 1)));
    }
    EXPECT_FALSE(q_.broken());
}

}  // namespace
}  // namespace strata::virtio
