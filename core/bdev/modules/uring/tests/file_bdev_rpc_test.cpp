// The aio and uring modules through their RPCs on a simulated App with every module registered
// (the passthru tests' fixture): create with SPDK's params, bdev_get_bdevs, bad params, I/O,
// rescan, and the save_config round trip into a fresh App that finds the data again.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <strata/bdev/vbdev_fixture.h>
#include "uring/uring.h"
#include "uring_required.h"

namespace strata::bdev::testing {
namespace {

class FileBdevRpcTest : public VbdevTest, public ::testing::WithParamInterface<std::string> {
protected:
    void SetUp() override {
        if (module() == "uring") {
            if (std::string why = uring_skip_reason(); !why.empty()) GTEST_SKIP() << why;
        }
        char tmpl[] = "/tmp/strata_file_rpc_XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        path = tmpl;
        ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
        ::close(fd);
        VbdevTest::SetUp();
    }
    void TearDown() override {
        VbdevTest::TearDown();
        if (!path.empty()) ::unlink(path.c_str());
    }
    const std::string& module() const { return GetParam(); }
    std::string method(const char* verb) const { return "bdev_" + module() + "_" + verb; }

    std::string path;
};

TEST_P(FileBdevRpcTest, CreateQueryIoRescanSaveAndReload) {
    Json params = {{"name", "File0"}, {"filename", path}, {"block_size", 512}};
    if (module() == "aio") params["fallocate"] = true;
    EXPECT_EQ(call(method("create"), params), "File0");
    Json info = call("bdev_get_bdevs", {{"name", "File0"}});
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0]["block_size"], 512);
    EXPECT_EQ(info[0]["num_blocks"], (1 << 20) / 512);
    EXPECT_EQ(info[0]["driver_specific"][module()]["filename"], path);
    const std::string uuid = info[0]["uuid"];

    {
        Handle& h = open("File0");
        verify_workload(h, 8);
        ASSERT_TRUE(write_blocks(h, 40, pattern(4096, 77)).ok());
        close(h);
    }

    ASSERT_EQ(::truncate(path.c_str(), 2 << 20), 0);
    EXPECT_EQ(call(method("rescan"), {{"name", "File0"}}), true);
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "File0"}})[0]["num_blocks"], (2 << 20) / 512);

    Json cfg = bdev_config();
    Json entry;
    for (auto& e : cfg)
        if (e["method"] == method("create")) entry = e;
    ASSERT_FALSE(entry.is_null()) << cfg.dump();
    EXPECT_EQ(entry["params"]["filename"], path);
    EXPECT_EQ(entry["params"]["block_size"], 512);
    EXPECT_EQ(entry["params"]["uuid"], uuid);
    if (module() == "aio") EXPECT_EQ(entry["params"]["fallocate"], true);

    // A fresh world from the saved config has the bdev, its uuid and its data.
    Json whole = call("save_config");
    stop_world();
    start_world(2, whole);
    info = call("bdev_get_bdevs", {{"name", "File0"}});
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0]["uuid"], uuid);
    EXPECT_EQ(info[0]["num_blocks"], (2 << 20) / 512);
    Handle& h = open("File0");
    std::vector<uint8_t> back(4096);
    ASSERT_TRUE(read_blocks(h, 40, back).ok());
    EXPECT_EQ(back, pattern(4096, 77));
    close(h);

    EXPECT_EQ(call(method("delete"), {{"name", "File0"}}), true);
    EXPECT_FALSE(exists("File0"));
    call_error(method("delete"), {{"name", "File0"}});
}

TEST_P(FileBdevRpcTest, BadParamsAreRefusedWithAReason) {
    Json e = call_error(method("create"), {{"name", "F"}, {"filename", "/nonexistent/file"}});
    EXPECT_NE(e.dump().find("/nonexistent/file"), std::string::npos) << e.dump();
    call_error(method("create"), {{"name", "F"}});                       // no filename
    call_error(method("create"), {{"name", "F"}, {"filename", 3}});      // wrong type
    call_error(method("create"), {{"name", "F"}, {"filename", path}, {"bogus", 1}});
    e = call_error(method("create"),
                   {{"name", "F"}, {"filename", path}, {"block_size", 4294967808ull}});
    EXPECT_NE(e.dump().find("block_size"), std::string::npos) << e.dump();
    call_error(method("create"), {{"name", "F"}, {"filename", path}, {"block_size", 3000}});
    call_error(method("rescan"), {{"name", "F"}});
    EXPECT_FALSE(exists("F"));
    // A name taken by another module's bdev.
    malloc("Taken");
    call_error(method("create"), {{"name", "Taken"}, {"filename", path}});
    call_error(method("delete"), {{"name", "Taken"}});  // not this module's bdev
    EXPECT_TRUE(exists("Taken"));
}

INSTANTIATE_TEST_SUITE_P(Modules, FileBdevRpcTest, ::testing::Values("aio", "uring"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::bdev::testing
