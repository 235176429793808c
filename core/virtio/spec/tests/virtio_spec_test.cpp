// Checks of the virtio spec helpers whose arithmetic is easy to get subtly wrong.
#include <gtest/gtest.h>

#include <strata/virtio/spec/blk.h>
#include <strata/virtio/spec/pci.h>
#include <strata/virtio/spec/ring.h>
#include <strata/virtio/spec/scsi.h>
#include <strata/virtio/spec/vhost_user.h>

#include <cstring>

namespace spec = strata::virtio::spec;

TEST(VirtioSpec, NeedEventFollowsTheSpecFormula) {
    // The other side asked to hear once index 5 is passed.
    EXPECT_TRUE(spec::need_event(5, 6, 5));   // 5 -> 6 passes 5
    EXPECT_TRUE(spec::need_event(5, 10, 3));  // a batch that crosses it
    EXPECT_FALSE(spec::need_event(5, 5, 3));  // not yet past it
    EXPECT_FALSE(spec::need_event(5, 9, 7));  // already passed before this batch
    // Across the 16-bit wrap.
    EXPECT_TRUE(spec::need_event(0xffff, 2, 0xfffe));
    EXPECT_FALSE(spec::need_event(0xfff0, 2, 0xfffe));
}

TEST(VirtioSpec, PackedDescriptorOwnership) {
    const std::uint16_t avail_wrap1 = spec::kPackedDescFAvail;  // driver made it available, wrap 1
    EXPECT_TRUE(spec::packed_desc_is_avail(avail_wrap1, true));
    EXPECT_FALSE(spec::packed_desc_is_avail(avail_wrap1, false));
    EXPECT_FALSE(spec::packed_desc_is_used(avail_wrap1, true));
    const std::uint16_t used_wrap1 = spec::kPackedDescFAvail | spec::kPackedDescFUsed;
    EXPECT_TRUE(spec::packed_desc_is_used(used_wrap1, true));
    EXPECT_FALSE(spec::packed_desc_is_avail(used_wrap1, true));
    // On the second lap (wrap 0) the driver writes AVAIL=0, USED=1.
    const std::uint16_t avail_wrap0 = spec::kPackedDescFUsed;
    EXPECT_TRUE(spec::packed_desc_is_avail(avail_wrap0, false));
    EXPECT_TRUE(spec::packed_desc_is_used(0, false));
}

TEST(VirtioSpec, SplitRingSizes) {
    EXPECT_EQ(spec::split_desc_bytes(256), 4096u);
    EXPECT_EQ(spec::split_avail_bytes(256), 518u);
    EXPECT_EQ(spec::split_used_bytes(256), 2054u);
    alignas(8) std::uint8_t avail_mem[6 + 2 * 4] = {};
    auto* avail = reinterpret_cast<spec::VringAvail*>(avail_mem);
    EXPECT_EQ(reinterpret_cast<std::uint8_t*>(spec::split_used_event(avail, 4)), avail_mem + 4 + 8);
}

TEST(VirtioSpec, ScsiLunRoundTrip) {
    std::uint8_t field[8];
    spec::scsi::encode_lun(3, 0x123, field);
    EXPECT_EQ(field[0], 1);
    EXPECT_EQ(field[1], 3);
    EXPECT_EQ(field[2], 0x41);
    EXPECT_EQ(field[3], 0x23);
    spec::scsi::LunAddress a{};
    ASSERT_TRUE(spec::scsi::decode_lun(field, a));
    EXPECT_EQ(a.target, 3);
    EXPECT_EQ(a.lun, 0x123);
    field[0] = 0;  // not a single-level LUN: refused
    EXPECT_FALSE(spec::scsi::decode_lun(field, a));
}

TEST(VirtioSpec, VhostUserNamesAndInflightSizes) {
    namespace vu = spec::vhost_user;
    EXPECT_STREQ(vu::request_name(vu::Request::kSetMemTable), "SET_MEM_TABLE");
    EXPECT_STREQ(vu::request_name(vu::Request::kGetInflightFd), "GET_INFLIGHT_FD");
    EXPECT_STREQ(vu::request_name(static_cast<vu::Request>(999)), "UNKNOWN");
    // libvhost-user's figure for a 128-entry queue: 16 * 128 + 2, rounded up to 64.
    EXPECT_EQ(vu::inflight_queue_split_bytes(128), 2112u);
    EXPECT_GE(vu::inflight_queue_split_bytes(128),
              sizeof(vu::InflightQueueSplit) + 128 * sizeof(vu::InflightDescSplit));
}
