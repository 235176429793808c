// virtio_scsi through SPDK's RPCs on a simulated App, against Strata's own vhost-scsi target:
// strata-tgt (a separate process: virtio-user's handshake and the scan block on the socket, so
// the target cannot run on the same simulator) serving a vhost-scsi controller with disks on
// targets 0 (512-byte blocks) and 2 (4096-byte blocks). Attach and scan, bdev_get_bdevs and
// bdev_virtio_scsi_get_devices shapes, verified I/O on both disks, flush, unmap, reset (a TMF on
// the control queue), save_config and a fresh App from it reading the data back, detach of every
// target's bdev; and refusals.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include <strata/bdev/vbdev_fixture.h>
#include "virtio/virtio.h"

#ifndef STRATA_TGT_PATH
#error "STRATA_TGT_PATH: the strata-tgt binary"
#endif

namespace strata::bdev::testing {
namespace {

class VirtioScsiTest : public VbdevTest {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/strata_virtio_scsi_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir = tmpl;
        sock = dir + "/scsi.0";
        std::ofstream(dir + "/tgt.json") << R"({"subsystems":[
 {"subsystem":"bdev","config":[
  {"method":"bdev_malloc_create","params":{"name":"M0","num_blocks":16384,"block_size":512}},
  {"method":"bdev_malloc_create","params":{"name":"M2","num_blocks":2048,"block_size":4096}}]},
 {"subsystem":"vhost_scsi","config":[
  {"method":"vhost_create_scsi_controller","params":{"ctrlr":"scsi.0"}},
  {"method":"vhost_scsi_controller_add_target","params":{"ctrlr":"scsi.0","scsi_target_num":0,"bdev_name":"M0"}},
  {"method":"vhost_scsi_controller_add_target","params":{"ctrlr":"scsi.0","scsi_target_num":2,"bdev_name":"M2"}}]}]})";
        start_tgt();
        VbdevTest::SetUp();
    }
    void TearDown() override {
        VbdevTest::TearDown();
        stop_tgt();
        if (!dir.empty()) (void)std::system(("rm -rf " + dir).c_str());
    }
    void start_tgt() {
        ::unlink(sock.c_str());
        tgt = ::fork();
        ASSERT_GE(tgt, 0);
        if (tgt == 0) {
            const std::string cfg = dir + "/tgt.json", rpc = dir + "/rpc.sock",
                              log = dir + "/tgt.log";
            if (FILE* f = std::freopen(log.c_str(), "w", stderr)) (void)f;
            ::execl(STRATA_TGT_PATH, STRATA_TGT_PATH, "-c", cfg.c_str(), "-r", rpc.c_str(), "-S",
                    dir.c_str(), "--log-level", "NOTICE", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        struct stat st {};
        for (int i = 0; i < 400 && ::stat(sock.c_str(), &st) != 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        ASSERT_EQ(::stat(sock.c_str(), &st), 0)
            << "strata-tgt made no socket (" << dir << "/tgt.log)";
    }
    void stop_tgt() {
        if (tgt <= 0) return;
        ::kill(tgt, SIGTERM);
        int status = 0;
        ::waitpid(tgt, &status, 0);
        tgt = -1;
    }
    Json attach_params() {
        return {{"name", "VirtioScsi0"}, {"trtype", "user"}, {"traddr", sock},
                {"dev_type", "scsi"},    {"vq_count", 2},    {"vq_size", 64}};
    }
    IoStatus flush_all(Handle& h) {
        return io([&](IoDoneFn f, void* c) {
            return flush(*h.desc, *h.ch, 0, h.desc->bdev().num_blocks(), f, c);
        });
    }

    std::string dir, sock;
    pid_t tgt = -1;
};

TEST_F(VirtioScsiTest, ScanIoSaveConfigReloadDetach) {
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()),
              Json::array({"VirtioScsi0t0", "VirtioScsi0t2"}));
    settle();
    Json info = call("bdev_get_bdevs", {{"name", "VirtioScsi0t0"}});
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0]["block_size"], 512);
    EXPECT_EQ(info[0]["num_blocks"], 16384);
    EXPECT_EQ(info[0]["product_name"], "Virtio SCSI Disk");
    EXPECT_EQ(info[0]["driver_specific"]["virtio_scsi"]["target"], 0);
    info = call("bdev_get_bdevs", {{"name", "VirtioScsi0t2"}});
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0]["block_size"], 4096);
    EXPECT_EQ(info[0]["num_blocks"], 2048);
    EXPECT_FALSE(exists("VirtioScsi0t1"));
    // SPDK's shape: name, and virtio {vq_count (control and event included), vq_size, type,
    // socket}.
    EXPECT_EQ(call("bdev_virtio_scsi_get_devices"),
              Json::parse(R"([{"name":"VirtioScsi0","virtio":{"vq_count":4,"vq_size":64,)"
                          R"("type":"user","socket":")" +
                          sock + R"("}}])"));
    {
        Handle& h = open("VirtioScsi0t0");
        verify_workload(h, 16);
        verify_workload(h, 4, 256);  // 128 KiB: the largest single transfer
        ASSERT_TRUE(write_blocks(h, 40, pattern(4096, 77)).ok());
        EXPECT_TRUE(flush_all(h).ok());
        // UNMAP (the malloc target reports LBPME): the blocks read back as zeroes.
        ASSERT_TRUE(write_blocks(h, 100, pattern(4096, 3)).ok());
        EXPECT_TRUE(
            io([&](IoDoneFn f, void* c) { return unmap(*h.desc, *h.ch, 100, 8, f, c); }).ok());
        std::vector<uint8_t> z(4096, 0xaa);
        ASSERT_TRUE(read_blocks(h, 100, z).ok());
        EXPECT_EQ(z, std::vector<uint8_t>(4096, 0));
        // Reset: LOGICAL UNIT RESET on the control queue; I/O goes on after it.
        EXPECT_TRUE(io([&](IoDoneFn f, void* c) { return reset(*h.desc, *h.ch, f, c); }).ok());
        verify_workload(h, 4);
        close(h);
        Handle& h2 = open("VirtioScsi0t2");
        verify_workload(h2, 16, 2);
        close(h2);
    }
    Json cfg = bdev_config();
    int entries = 0;
    for (auto& e : cfg)
        if (e["method"] == "bdev_virtio_attach_controller") {
            ++entries;
            EXPECT_EQ(e["params"], attach_params());
        }
    EXPECT_EQ(entries, 1) << cfg.dump();

    // A fresh App from the saved config attaches again and reads what was written.
    Json whole = call("save_config");
    stop_world();
    start_world(2, whole);
    settle();
    ASSERT_TRUE(exists("VirtioScsi0t0"));
    ASSERT_TRUE(exists("VirtioScsi0t2"));
    {
        Handle& h = open("VirtioScsi0t0");
        std::vector<uint8_t> back(4096);
        ASSERT_TRUE(read_blocks(h, 40, back).ok());
        EXPECT_EQ(back, pattern(4096, 77));
        close(h);
    }
    EXPECT_EQ(call("bdev_virtio_detach_controller", {{"name", "VirtioScsi0"}}), true);
    settle();
    EXPECT_FALSE(exists("VirtioScsi0t0"));
    EXPECT_FALSE(exists("VirtioScsi0t2"));
    EXPECT_EQ(call("bdev_virtio_scsi_get_devices"), Json::array());
    call_error("bdev_virtio_detach_controller", {{"name", "VirtioScsi0"}});
    // And again: the target took the first front end's leave.
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()),
              Json::array({"VirtioScsi0t0", "VirtioScsi0t2"}));
    settle();
}

TEST_F(VirtioScsiTest, RefusalsNameTheReason) {
    auto msg = [](const Json& e) { return e.value("message", std::string()); };
    Json p = attach_params();
    p["traddr"] = dir + "/nothing.sock";
    EXPECT_NE(msg(call_error("bdev_virtio_attach_controller", p)).find("nothing.sock"),
              std::string::npos);
    p = attach_params();
    p["vq_size"] = 100;
    EXPECT_NE(msg(call_error("bdev_virtio_attach_controller", p)).find("power of two"),
              std::string::npos);
    EXPECT_EQ(call("bdev_virtio_scsi_get_devices"), Json::array());
    EXPECT_EQ(call("bdev_virtio_attach_controller", attach_params()).size(), 2u);
    settle();
    // The name is taken (the controller's, though no bdev has it).
    EXPECT_NE(msg(call_error("bdev_virtio_attach_controller", attach_params())).find("exists"),
              std::string::npos);
}

}  // namespace
}  // namespace strata::bdev::testing
