// bdev_split through its RPCs on a simulated App: geometry (even and split_size_mb), each part's
// I/O landing in its own range of the base, examine, hot removal of the base, delete, RPC
// errors and the config round trip.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "split/split.h"
#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

class SplitTest : public VbdevTest {};

TEST_F(SplitTest, EvenSplitAndDataInTheRightPlace) {
    malloc("M0", 4099);  // the remainder (3 blocks) is unused
    EXPECT_EQ(call("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 4}}),
              Json({"M0p0", "M0p1", "M0p2", "M0p3"}));
    for (int i = 0; i < 4; ++i) {
        Json info = call("bdev_get_bdevs", {{"name", fmt::format("M0p{}", i)}})[0];
        EXPECT_EQ(info["num_blocks"], 1024);
        EXPECT_EQ(info["product_name"], "Split Disk");
        EXPECT_EQ(info["driver_specific"]["split"]["offset_blocks"], i * 1024);
    }
    EXPECT_STREQ(find("M0")->claimed_by(), "split");
    Handle& p2 = open("M0p2");
    verify_workload(p2, 16);
    auto w = pattern(4096, 5);
    ASSERT_TRUE(write_blocks(p2, 10, w).ok());
    Handle& base = open("M0", false);
    std::vector<uint8_t> r(4096);
    ASSERT_TRUE(read_blocks(base, 2 * 1024 + 10, r).ok());
    EXPECT_EQ(r, w);
    // A part's range ends at its own end.
    on(worker, [&] {
        EXPECT_EQ(read(*p2.desc, *p2.ch, r.data(), 1020, 8, &Done::cb, nullptr).code(), Errc::invalid_argument);
    });
    EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return unmap(*p2.desc, *p2.ch, 10, 8, f, c); }).ok());
    ASSERT_TRUE(read_blocks(base, 2 * 1024 + 10, r).ok());
    EXPECT_EQ(r, std::vector<uint8_t>(4096, 0));
}

TEST_F(SplitTest, SizeInMibLowersTheCount) {
    malloc("M0", 5 * 2048 + 100);  // 5 MiB and a bit
    EXPECT_EQ(call("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 8}, {"split_size_mb", 2}}),
              Json({"M0p0", "M0p1"}));
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "M0p1"}})[0]["num_blocks"], 4096);
    EXPECT_FALSE(exists("M0p2"));
}

TEST_F(SplitTest, ExamineHotRemovalAndDelete) {
    EXPECT_EQ(call("bdev_split_create", {{"base_bdev", "Later"}, {"split_count", 2}}), Json::array());
    EXPECT_FALSE(exists("Laterp0"));
    malloc("Later");
    ASSERT_TRUE(exists("Laterp0"));
    ASSERT_TRUE(exists("Laterp1"));
    Handle& h = open("Laterp1");
    bool gone = false;
    on(&app->thread(), [&] { unregister_bdev("Later", [&](Result<void>) { gone = true; }); });
    ASSERT_TRUE(poll_until([&] { return !h.events.empty(); }));
    EXPECT_FALSE(exists("Laterp0"));
    close(h);
    ASSERT_TRUE(poll_until([&] { return gone; }));
    EXPECT_TRUE(list().empty());
    malloc("Later");  // the configuration brings the parts back
    EXPECT_TRUE(exists("Laterp1"));
    EXPECT_EQ(call("bdev_split_delete", {{"base_bdev", "Later"}}), true);
    EXPECT_FALSE(exists("Laterp0"));
    EXPECT_FALSE(exists("Laterp1"));
    EXPECT_STREQ(find("Later")->claimed_by(), "");
    // A split of a part: names do not collide with the parent's.
    call("bdev_split_create", {{"base_bdev", "Later"}, {"split_count", 2}});
    EXPECT_EQ(call("bdev_split_create", {{"base_bdev", "Laterp0"}, {"split_count", 2}}),
              Json({"Laterp0p0", "Laterp0p1"}));
    EXPECT_EQ(call("bdev_split_delete", {{"base_bdev", "Laterp0"}}), true);
    EXPECT_TRUE(exists("Laterp0"));
    EXPECT_TRUE(exists("Laterp1"));
}

TEST_F(SplitTest, RpcErrors) {
    malloc("M0", 16);
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}})["code"], -32602);
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 0}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 100000}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 17}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_split_create",
                         {{"base_bdev", "M0"}, {"split_count", 1}, {"split_size_mb", 1}})["code"], -EINVAL);
    EXPECT_EQ(call_error("bdev_split_create",
                         {{"base_bdev", "M0"}, {"split_count", 1}, {"split_size_mb", uint64_t{1} << 60}})["code"],
              -EINVAL);
    // A part's name taken by another bdev: nothing is created, nothing kept.
    malloc("M0p1", 8);
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 2}})["code"], -EEXIST);
    EXPECT_FALSE(exists("M0p0"));
    EXPECT_STREQ(find("M0")->claimed_by(), "");
    EXPECT_EQ(call("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 1}}), Json({"M0p0"}));
    EXPECT_EQ(call_error("bdev_split_create", {{"base_bdev", "M0"}, {"split_count", 1}})["code"], -EEXIST);
    EXPECT_EQ(call_error("bdev_split_delete", {{"base_bdev", "Nope"}})["code"], -ENOENT);
    // The base is claimed: another vbdev cannot take it.
    EXPECT_EQ(call_error("bdev_passthru_create", {{"base_bdev_name", "M0"}, {"name", "PT"}})["code"], -EPERM);
}

TEST_F(SplitTest, ConfigRoundTripWithStackedVbdevs) {
    // A split of a passthru of a malloc: replayed in any order, examine rebuilds the stack.
    malloc("M0", 4096);
    call("bdev_passthru_create", {{"base_bdev_name", "M0"}, {"name", "PT0"}});
    call("bdev_split_create", {{"base_bdev", "PT0"}, {"split_count", 3}});
    call("bdev_split_create", {{"base_bdev", "Ghost"}, {"split_count", 2}});  // deferred
    Json cfg = bdev_config();
    Json reversed = Json::array();
    for (auto it = cfg.rbegin(); it != cfg.rend(); ++it) reversed.push_back(*it);
    stop_world();
    start_world(1, Json{{"subsystems", {{{"subsystem", "bdev"}, {"config", reversed}}}}});
    for (const char* n : {"PT0p0", "PT0p1", "PT0p2"}) EXPECT_TRUE(exists(n)) << n;
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "PT0p2"}})[0]["num_blocks"], 1365);
    malloc("Ghost", 64);
    EXPECT_TRUE(exists("Ghostp1"));
}

}  // namespace
}  // namespace strata::bdev::testing
