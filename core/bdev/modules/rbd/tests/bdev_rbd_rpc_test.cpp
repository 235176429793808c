// The rbd module's RPCs on a simulated App: argument checks and the error paths that need no
// cluster (unknown cluster, unreachable monitor, bad options), each with a message that names
// what is wrong. With a cluster from ci/ceph (STRATA_CEPH_DIR set, as ci/test does), also an
// image through a registered cluster: I/O, verify, resize, save_config. The cluster-side
// scenarios (bdevperf, lvol store, OSD restart, rbd CLI resize) are scenarios/test_rbd.py.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <strata/bdev/vbdev_fixture.h>

namespace strata::bdev::testing {
namespace {

std::string ceph_dir() {
    const char* d = std::getenv("STRATA_CEPH_DIR");
    return d != nullptr ? d : "";
}

// A syntactically valid cephx key that no cluster knows.
constexpr const char* kStrangerKey = "AQAvwhZrws9xEBAA3rOPtmP9nXp+lyYgGtRH6w==";

class RbdRpcTest : public VbdevTest {
protected:
    std::string message(const Json& error) { return error.value("message", std::string()); }
};

TEST_F(RbdRpcTest, BadArgumentsAreRefusedWithAReason) {
    Json e = call_error("bdev_rbd_create",
                        {{"pool_name", "rbd"}, {"rbd_name", "img"}, {"block_size", 3000}});
    EXPECT_NE(message(e).find("block_size 3000"), std::string::npos) << e.dump();
    call_error("bdev_rbd_create", {{"rbd_name", "img"}, {"block_size", 512}});  // no pool_name
    e = call_error("bdev_rbd_create", {{"pool_name", "rbd"},
                                       {"rbd_name", "img"},
                                       {"block_size", 512},
                                       {"cluster_name", "c0"},
                                       {"user_id", "admin"}});
    EXPECT_NE(message(e).find("leave user_id and config out"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_create", {{"pool_name", "rbd"},
                                       {"rbd_name", "img"},
                                       {"block_size", 512},
                                       {"cluster_name", "nosuch"}});
    EXPECT_NE(message(e).find("rbd cluster nosuch not found"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_create", {{"pool_name", "rbd"},
                                       {"rbd_name", "img"},
                                       {"block_size", 512},
                                       {"config", {{"rbd_cache", false}}}});
    EXPECT_NE(message(e).find("config.rbd_cache must be a string"), std::string::npos) << e.dump();

    e = call_error("bdev_rbd_register_cluster", {{"name", "c0"}, {"core_mask", "0xzz"}});
    EXPECT_NE(message(e).find("core_mask 0xzz"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_register_cluster", {{"name", "c0"}, {"core_mask", "0x0"}});
    EXPECT_NE(message(e).find("names no CPU"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_register_cluster",
                   {{"name", "c0"}, {"config_file", "/nonexistent/ceph.conf"}});
    EXPECT_NE(message(e).find("/nonexistent/ceph.conf"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_register_cluster", {{"name", "c0"},
                                                 {"config_param", {{"mon_host", "127.0.0.1:9"}}},
                                                 {"key_file", "/nonexistent/keyring"}});
    EXPECT_NE(message(e).find("/nonexistent/keyring"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_register_cluster",
                   {{"name", "c0"}, {"config_param", {{"no_such_ceph_option", "1"}}}});
    EXPECT_NE(message(e).find("no_such_ceph_option"), std::string::npos) << e.dump();

    EXPECT_EQ(call("bdev_rbd_get_clusters_info"), Json::array());
    e = call_error("bdev_rbd_get_clusters_info", {{"name", "c0"}});
    EXPECT_NE(message(e).find("rbd cluster c0 not found"), std::string::npos) << e.dump();
    call_error("bdev_rbd_unregister_cluster", {{"name", "c0"}});
    e = call_error("bdev_rbd_delete", {{"name", "Ceph0"}});
    EXPECT_NE(message(e).find("rbd bdev Ceph0 not found"), std::string::npos) << e.dump();
    call_error("bdev_rbd_resize", {{"name", "Ceph0"}, {"new_size", 64}});
}

// Nothing listens on port 9: the connection gives up after client_mount_timeout (1 s here) with
// a message naming the bdev and the monitor setting, and leaves nothing registered.
TEST_F(RbdRpcTest, UnreachableMonitorFailsWithinTheMountTimeout) {
    Json e = call_error(
        "bdev_rbd_create",
        {{"name", "R0"},
         {"pool_name", "rbd"},
         {"rbd_name", "img"},
         {"block_size", 512},
         {"config",
          {{"mon_host", "127.0.0.1:9"}, {"key", kStrangerKey}, {"client_mount_timeout", "1"}}}});
    EXPECT_NE(message(e).find("rbd bdev R0 (rbd/img)"), std::string::npos) << e.dump();
    EXPECT_FALSE(exists("R0"));
    EXPECT_EQ(call("bdev_get_bdevs").size(), 0u);
}

// With a cluster from ci/ceph: register it, create an image with the rbd CLI, and use it.
class RbdClusterTest : public RbdRpcTest {
protected:
    void SetUp() override {
        dir = ceph_dir();
        if (dir.empty()) {
            if (std::getenv("STRATA_REQUIRE_CEPH") != nullptr &&
                std::string(std::getenv("STRATA_REQUIRE_CEPH")) == "1")
                FAIL() << "STRATA_REQUIRE_CEPH=1 but STRATA_CEPH_DIR is not set (ci/ceph start)";
            GTEST_SKIP() << "no Ceph cluster: run `eval \"$(ci/ceph start)\"` first";
        }
        image = "gtest-" + std::to_string(::getpid());
        ASSERT_EQ(rbd("create --size 16M rbd/" + image), 0);
        RbdRpcTest::SetUp();
    }
    void TearDown() override {
        RbdRpcTest::TearDown();
        if (!image.empty()) (void)rbd("rm --no-progress rbd/" + image);
    }
    int rbd(const std::string& args) {
        const std::string cmd = "rbd -c " + dir + "/ceph.conf --id strata --keyring " + dir +
                                "/client.strata.keyring " + args + " >/dev/null 2>&1";
        return std::system(cmd.c_str());
    }
    Json cluster_params() {
        return {{"name", "c0"},
                {"user_id", "strata"},
                {"config_file", dir + "/ceph.conf"},
                {"key_file", dir + "/client.strata.keyring"}};
    }
    std::string dir;
    std::string image;
};

TEST_F(RbdClusterTest, SharedClusterImageIoResizeAndSaveConfig) {
    EXPECT_EQ(call("bdev_rbd_register_cluster", cluster_params()), "c0");
    Json info = call("bdev_rbd_get_clusters_info", {{"name", "c0"}});
    EXPECT_EQ(info["user_id"], "strata");
    EXPECT_EQ(call("bdev_rbd_create", {{"pool_name", "rbd"},
                                       {"rbd_name", image},
                                       {"block_size", 4096},
                                       {"cluster_name", "c0"}}),
              "Ceph0");
    Json b = call("bdev_get_bdevs", {{"name", "Ceph0"}})[0];
    EXPECT_EQ(b["num_blocks"], (16 << 20) / 4096);
    EXPECT_EQ(b["driver_specific"]["rbd"]["cluster_name"], "c0");
    EXPECT_EQ(b["driver_specific"]["rbd"]["size_bytes"], 16 << 20);
    EXPECT_FALSE(b["driver_specific"]["rbd"]["features"].empty()) << b.dump();

    // In use: the cluster cannot go.
    Json e = call_error("bdev_rbd_unregister_cluster", {{"name", "c0"}});
    EXPECT_NE(message(e).find("used by 1 bdev"), std::string::npos) << e.dump();

    {
        Handle& h = open("Ceph0");
        verify_workload(h, 16, 2);
        close(h);
    }
    call_error("bdev_rbd_resize", {{"name", "Ceph0"}, {"new_size", 8}});  // never shrinks
    EXPECT_EQ(call("bdev_rbd_resize", {{"name", "Ceph0"}, {"new_size", 32}}), true);
    EXPECT_EQ(call("bdev_get_bdevs", {{"name", "Ceph0"}})[0]["num_blocks"], (32 << 20) / 4096);

    Json cfg = bdev_config();
    int clusters = 0, creates = 0;
    for (auto& entry : cfg) {
        if (entry["method"] == "bdev_rbd_register_cluster") ++clusters;
        if (entry["method"] == "bdev_rbd_create") {
            ++creates;
            EXPECT_EQ(entry["params"]["cluster_name"], "c0");
            EXPECT_EQ(entry["params"]["block_size"], 4096);
        }
    }
    EXPECT_EQ(clusters, 1) << cfg.dump();
    EXPECT_EQ(creates, 1) << cfg.dump();

    EXPECT_EQ(call("bdev_rbd_delete", {{"name", "Ceph0"}}), true);
    settle();
    EXPECT_EQ(call("bdev_rbd_unregister_cluster", {{"name", "c0"}}), true);
}

TEST_F(RbdClusterTest, WrongKeyMissingPoolAndMissingImageAreClearErrors) {
    // A key the cluster does not know for client.strata.
    const std::string bad_keyring = dir + "/stranger.keyring";
    {
        std::ofstream f(bad_keyring);
        f << "[client.strata]\n\tkey = " << kStrangerKey << "\n";
    }
    Json p = cluster_params();
    p["key_file"] = bad_keyring;
    Json e = call_error("bdev_rbd_register_cluster", p);
    EXPECT_NE(message(e).find("refused client.strata"), std::string::npos) << e.dump();
    std::remove(bad_keyring.c_str());

    call("bdev_rbd_register_cluster", cluster_params());
    e = call_error("bdev_rbd_create", {{"pool_name", "nosuchpool"},
                                       {"rbd_name", image},
                                       {"block_size", 512},
                                       {"cluster_name", "c0"}});
    EXPECT_NE(message(e).find("pool nosuchpool does not exist"), std::string::npos) << e.dump();
    e = call_error("bdev_rbd_create", {{"pool_name", "rbd"},
                                       {"rbd_name", "nosuchimage"},
                                       {"block_size", 512},
                                       {"cluster_name", "c0"}});
    EXPECT_NE(message(e).find("no image nosuchimage in pool rbd"), std::string::npos) << e.dump();
    EXPECT_EQ(call("bdev_get_bdevs").size(), 0u);
    EXPECT_EQ(call("bdev_rbd_unregister_cluster", {{"name", "c0"}}), true);
}

}  // namespace
}  // namespace strata::bdev::testing
