// vhost-blk end to end on the simulator: an App with a malloc bdev, controllers made by SPDK's
// RPCs, and the test front end speaking vhost-user over the controller's real Unix socket
// (fds by SCM_RIGHTS): writes and reads back a pattern, GET_ID, FLUSH, DISCARD, WRITE_ZEROES,
// out-of-range and unsupported requests, read-only controllers, config space, reconnect,
// save_config and the controller RPCs.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <optional>

#include <strata/env/env.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/vhost/vhost.h>
#include <strata/virtio/spec/blk.h>
#include <strata/virtio/spec/scsi.h>

#include "test_driver.h"

namespace strata::vhost {
namespace {

using namespace testing;
using rpc::Json;
using vu::Request;
namespace vb = virtio::spec::blk;
namespace vsc = virtio::spec::scsi;

class VhostBlkTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        char tmpl[] = "/tmp/strata-vhost-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        sim = std::make_unique<runtime::SimScheduler>(42, 2);
        app = std::make_unique<rpc::App>(*sim);
        stack::register_all_modules(*app);
        std::optional<Result<void>> started;
        app->start([&](Result<void> r) { started = std::move(r); });
        ASSERT_TRUE(pump([&] { return started.has_value(); }));
        ASSERT_TRUE(started->ok());
        set_socket_dir(app->host(), dir);
        ok("bdev_malloc_create", {{"name", "Malloc0"}, {"num_blocks", 256}, {"block_size", 512}});
    }
    void TearDown() override {
        if (fd >= 0) close(fd);
        if (app) {
            app->request_stop();
            pump([&] { return app->stopped(); });
        }
        app.reset();
        sim.reset();
        env::fini();
        rmdir(dir.c_str());
    }
    bool pump(const std::function<bool()>& pred) {
        for (int i = 0; i < 2'000'000; ++i) {
            if (pred()) return true;
            sim->step();
        }
        return pred();
    }
    Json call(const std::string& m, Json p = Json::object()) { return app->call_method(m, p); }
    void ok(const std::string& m, Json p) {
        auto r = call(m, std::move(p));
        ASSERT_TRUE(r.contains("result")) << m << ": " << r.dump();
    }

    // ---- the front end over the socket ----
    void connect_to(const std::string& name) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        const std::string path = dir + "/" + name;
        std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
        ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << path;
    }
    void send_msg(Request req, const void* payload, uint32_t size, std::vector<int> fds = {}) {
        vu::Header h{req, vu::kVersion, size};
        iovec iov[2] = {{&h, sizeof h}, {const_cast<void*>(payload), size}};
        msghdr mh{};
        mh.msg_iov = iov;
        mh.msg_iovlen = size ? 2 : 1;
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
        if (!fds.empty()) {
            mh.msg_control = cbuf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
            cmsghdr* cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
        }
        ASSERT_EQ(sendmsg(fd, &mh, MSG_NOSIGNAL), ssize_t(sizeof h + size));
        for (int f : fds) close(f);
    }
    bool readable() {
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, 0) > 0;
    }
    // Waits for a reply; returns its payload.
    std::vector<uint8_t> recv_reply() {
        EXPECT_TRUE(pump([&] { return readable(); }));
        vu::Header h{};
        EXPECT_EQ(recv(fd, &h, sizeof h, MSG_WAITALL), ssize_t(sizeof h));
        std::vector<uint8_t> p(h.size);
        if (h.size) EXPECT_EQ(recv(fd, p.data(), h.size, MSG_WAITALL), ssize_t(h.size));
        return p;
    }
    uint64_t get_u64(Request req) {
        send_msg(req, nullptr, 0);
        auto p = recv_reply();
        uint64_t v = 0;
        if (p.size() == 8) std::memcpy(&v, p.data(), 8);
        return v;
    }
    void set_u64(Request req, uint64_t v, std::vector<int> fds = {}) {
        send_msg(req, &v, 8, std::move(fds));
    }
    void set_state(Request req, uint32_t i, uint32_t n) {
        vu::VringState s{i, n};
        send_msg(req, &s, sizeof s);
    }
    // vhost-scsi handshake: features (hot-plug, and param change as QEMU's vhost-user-scsi
    // always sets it), memory, then queues `qs` on `rings`.
    void setup_scsi(std::vector<std::pair<uint16_t, DriverRing*>> qs) {
        const uint64_t f = get_u64(Request::kGetFeatures);
        ASSERT_TRUE(vs::has_feature(f, vsc::kFHotplug));
        ASSERT_TRUE(vs::has_feature(f, vsc::kFChange));
        set_u64(Request::kSetFeatures,
                default_features() | vs::feature(vsc::kFHotplug) | vs::feature(vsc::kFChange));
        set_u64(Request::kSetProtocolFeatures, get_u64(Request::kGetProtocolFeatures));
        send_msg(Request::kSetOwner, nullptr, 0);
        vu::Memory mem{};
        mem.nregions = 1;
        mem.regions[0] = {GuestRam::kGpa, ram.size, GuestRam::kUva, 0};
        send_msg(Request::kSetMemTable, &mem, 8 + 32, {dup(ram.fd)});
        call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        for (auto [q, ring] : qs) {
            set_state(Request::kSetVringNum, q, ring->num);
            set_state(Request::kSetVringBase, q, 0);
            vu::VringAddr a{q,
                            0,
                            ram.uva(ring->desc_off()),
                            ram.uva(ring->used_off()),
                            ram.uva(ring->avail_off()),
                            0};
            send_msg(Request::kSetVringAddr, &a, sizeof a);
            set_u64(Request::kSetVringKick, q, {eventfd(0, EFD_CLOEXEC)});
            set_u64(Request::kSetVringCall, q, {dup(call_fd)});
            set_state(Request::kSetVringEnable, q, 1);
        }
    }
    // One virtio-scsi command on a request queue: ReqCmd (+ data-out) / RespCmd (+ data-in).
    vsc::RespCmd scsi_cmd(DriverRing& ring, uint8_t target, std::vector<uint8_t> cdb,
                          size_t data_off, uint32_t data_len, bool data_in,
                          uint32_t* used_len = nullptr) {
        auto* req = reinterpret_cast<vsc::ReqCmd*>(ram.at(kHdr));
        *req = {};
        vsc::encode_lun(target, 0, req->lun);
        req->id = 77;
        std::memcpy(req->cdb, cdb.data(), cdb.size());
        auto* resp = reinterpret_cast<vsc::RespCmd*>(ram.at(kResp));
        std::memset(resp, 0xee, sizeof *resp);
        uint16_t i = 0;
        ring.set_desc(i, ram.gpa(kHdr), sizeof *req, vs::kDescFNext, 1);
        ++i;
        if (data_len && !data_in) {
            ring.set_desc(i, ram.gpa(data_off), data_len, vs::kDescFNext, uint16_t(i + 1));
            ++i;
        }
        ring.set_desc(i, ram.gpa(kResp), sizeof *resp,
                      vs::kDescFWrite | (data_len && data_in ? vs::kDescFNext : 0),
                      uint16_t(i + 1));
        ++i;
        if (data_len && data_in) ring.set_desc(i, ram.gpa(data_off), data_len, vs::kDescFWrite);
        ring.publish(0);
        uint32_t id = 0, len = 0;
        EXPECT_TRUE(pump([&] { return ring.pop_used(id, len); }));
        if (used_len) *used_len = len;
        return *resp;
    }
    // One task management request on the control queue; returns the response byte.
    uint8_t scsi_tmf(DriverRing& ring, uint8_t target, uint32_t subtype) {
        auto* req = reinterpret_cast<vsc::CtrlTmfReq*>(ram.at(kHdr));
        *req = {vsc::kTTmf, subtype, {}, 0};
        vsc::encode_lun(target, 0, req->lun);
        ram.at(kResp)[0] = 0xee;
        ring.set_desc(0, ram.gpa(kHdr), sizeof *req, vs::kDescFNext, 1);
        ring.set_desc(1, ram.gpa(kResp), 1, vs::kDescFWrite);
        ring.publish(0);
        uint32_t id = 0, len = 0;
        EXPECT_TRUE(pump([&] { return ring.pop_used(id, len); }));
        return ram.at(kResp)[0];
    }

    // Handshake and queue 0 on `ring`.
    void setup(DriverRing& ring) {
        const uint64_t f = get_u64(Request::kGetFeatures);
        ASSERT_TRUE(vs::has_feature(f, vb::kFFlush));
        set_u64(Request::kSetFeatures, default_features() | (f & vs::feature(vb::kFRo)));
        set_u64(Request::kSetProtocolFeatures, get_u64(Request::kGetProtocolFeatures));
        send_msg(Request::kSetOwner, nullptr, 0);
        vu::Memory mem{};
        mem.nregions = 1;
        mem.regions[0] = {GuestRam::kGpa, ram.size, GuestRam::kUva, 0};
        send_msg(Request::kSetMemTable, &mem, 8 + 32, {dup(ram.fd)});
        set_state(Request::kSetVringNum, 0, ring.num);
        set_state(Request::kSetVringBase, 0, 0);
        vu::VringAddr a{
            0, 0, ram.uva(ring.desc_off()), ram.uva(ring.used_off()), ram.uva(ring.avail_off()), 0};
        send_msg(Request::kSetVringAddr, &a, sizeof a);
        set_u64(Request::kSetVringKick, 0, {eventfd(0, EFD_CLOEXEC)});
        call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        set_u64(Request::kSetVringCall, 0, {dup(call_fd)});
        set_state(Request::kSetVringEnable, 0, 1);
    }
    // One request: header + data (readable for OUT, writable for IN) + status. Returns status.
    uint8_t request(DriverRing& ring, uint32_t type, uint64_t sector, size_t data_off,
                    uint32_t data_len, bool data_writable, uint32_t* used_len = nullptr) {
        auto* hdr = reinterpret_cast<vb::OutHdr*>(ram.at(kHdr));
        *hdr = {type, 0, sector};
        ram.at(kStatus)[0] = 0xee;
        uint16_t i = 0;
        ring.set_desc(i, ram.gpa(kHdr), sizeof *hdr, vs::kDescFNext, 1);
        ++i;
        if (data_len) {
            ring.set_desc(i, ram.gpa(data_off), data_len,
                          vs::kDescFNext | (data_writable ? vs::kDescFWrite : 0), uint16_t(i + 1));
            ++i;
        }
        ring.set_desc(i, ram.gpa(kStatus), 1, vs::kDescFWrite);
        ring.publish(0);
        uint32_t id = 0, len = 0;
        EXPECT_TRUE(pump([&] { return ring.pop_used(id, len); }));
        if (used_len) *used_len = len;
        return ram.at(kStatus)[0];
    }

    static constexpr size_t kHdr = 0x10000, kStatus = 0x10100, kResp = 0x10200, kEvent = 0x10400,
                            kData = 0x20000, kData2 = 0x40000;
    std::string dir;
    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<rpc::App> app;
    GuestRam ram;
    int fd = -1;
    int call_fd = -1;
};

TEST_F(VhostBlkTest, WriteReadBackAndCommands) {
    ok("vhost_create_blk_controller", {{"ctrlr", "vhost.0"}, {"dev_name", "Malloc0"}});
    connect_to("vhost.0");
    DriverRing ring(ram, 0, 16);
    setup(ring);
    // Config space from the bdev.
    vu::ConfigSpace cs{0, sizeof(vb::Config), 0, {}};
    send_msg(Request::kGetConfig, &cs, 12 + sizeof(vb::Config));
    auto p = recv_reply();
    ASSERT_EQ(p.size(), 12 + sizeof(vb::Config));
    vb::Config cfg;
    std::memcpy(&cfg, p.data() + 12, sizeof cfg);
    EXPECT_EQ(cfg.capacity, 256u);
    EXPECT_EQ(cfg.blk_size, 512u);
    EXPECT_GT(cfg.seg_max, 0u);
    for (int i = 0; i < 4096; ++i) ram.at(kData)[i] = uint8_t(i * 7 + 3);
    EXPECT_EQ(request(ring, vb::kTOut, 8, kData, 4096, false), vb::kSOk);
    uint32_t len = 0;
    EXPECT_EQ(request(ring, vb::kTIn, 8, kData2, 4096, true, &len), vb::kSOk);
    EXPECT_EQ(len, 4097u);
    EXPECT_EQ(std::memcmp(ram.at(kData), ram.at(kData2), 4096), 0);
    uint64_t v = 0;
    EXPECT_EQ(read(call_fd, &v, 8), 8);  // the guest was interrupted
    EXPECT_EQ(request(ring, vb::kTFlush, 0, 0, 0, false), vb::kSOk);
    EXPECT_EQ(request(ring, vb::kTGetId, 0, kData2, 20, true), vb::kSOk);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(ram.at(kData2))), "Malloc0");
    // Beyond the capacity, misaligned and unknown requests.
    EXPECT_EQ(request(ring, vb::kTIn, 255, kData2, 1024, true), vb::kSIoErr);
    EXPECT_EQ(request(ring, vb::kTIn, 0, kData2, 100, true), vb::kSIoErr);
    EXPECT_EQ(request(ring, 77, 0, kData2, 512, true), vb::kSUnsupp);
    // WRITE_ZEROES then read zeros back.
    auto* dwz = reinterpret_cast<vb::DiscardWriteZeroes*>(ram.at(kData));
    *dwz = {8, 8, 0};
    EXPECT_EQ(request(ring, vb::kTWriteZeroes, 0, kData, sizeof *dwz, false), vb::kSOk);
    EXPECT_EQ(request(ring, vb::kTIn, 8, kData2, 4096, true), vb::kSOk);
    for (int i = 0; i < 4096; ++i) ASSERT_EQ(ram.at(kData2)[i], 0) << i;
    *dwz = {0, 8, 0};
    EXPECT_EQ(request(ring, vb::kTDiscard, 0, kData, sizeof *dwz, false), vb::kSOk);
}

TEST_F(VhostBlkTest, ReadOnlyReconnectAndBrokenQueue) {
    ok("vhost_create_blk_controller",
       {{"ctrlr", "ro"}, {"dev_name", "Malloc0"}, {"readonly", true}});
    connect_to("ro");
    {
        // The guest is told (VIRTIO_BLK_F_RO); a write is failed anyway.
        EXPECT_TRUE(vs::has_feature(get_u64(Request::kGetFeatures), vb::kFRo));
        DriverRing ring(ram, 0, 16);
        setup(ring);
        EXPECT_EQ(request(ring, vb::kTOut, 0, kData, 512, false), vb::kSIoErr);
        EXPECT_EQ(request(ring, vb::kTIn, 0, kData2, 512, true), vb::kSOk);
        // A second front end is refused while one is connected.
        const int first = fd;
        connect_to("ro");
        EXPECT_TRUE(pump([&] {
            char c;
            return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
        }));
        close(fd);
        fd = first;
        // A hostile chain breaks the queue; the connection stays.
        ring.set_desc(0, ram.gpa(kHdr), 16, vs::kDescFNext, 0);
        ring.publish(0);
        for (int i = 0; i < 1000; ++i) sim->step();
        EXPECT_EQ(get_u64(Request::kGetQueueNum), kMaxQueues);
    }
    // Reconnect: a fresh session.
    close(fd);
    close(call_fd);
    connect_to("ro");
    DriverRing ring(ram, 0, 16);
    setup(ring);
    EXPECT_EQ(request(ring, vb::kTIn, 0, kData2, 512, true), vb::kSOk);
    // A malformed message ends the connection.
    uint32_t junk = 1;
    send_msg(Request::kSetFeatures, &junk, 4);
    EXPECT_TRUE(pump([&] {
        char c;
        return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
    }));
    // Busy while the front end is connected... it is gone now: delete works.
    EXPECT_TRUE(pump([&] {
        return call("vhost_delete_controller", {{"ctrlr", "ro"}}).contains("result");
    }));
}

TEST_F(VhostBlkTest, HotRemovedBdevFailsRequests) {
    ok("vhost_create_blk_controller", {{"ctrlr", "hr"}, {"dev_name", "Malloc0"}});
    connect_to("hr");
    DriverRing ring(ram, 0, 16);
    setup(ring);
    EXPECT_EQ(request(ring, vb::kTIn, 0, kData2, 512, true), vb::kSOk);
    ok("bdev_malloc_delete", {{"name", "Malloc0"}});
    EXPECT_EQ(request(ring, vb::kTIn, 0, kData2, 512, true), vb::kSIoErr);
    EXPECT_EQ(request(ring, vb::kTOut, 0, kData, 512, false), vb::kSIoErr);
}

TEST_F(VhostBlkTest, RpcsAndSaveConfig) {
    auto r = call("vhost_create_blk_controller", {{"ctrlr", "a"}, {"dev_name", "Nope"}});
    EXPECT_TRUE(r.contains("error")) << r.dump();
    ok("vhost_create_blk_controller",
       {{"ctrlr", "a"}, {"dev_name", "Malloc0"}, {"cpumask", "0x1"}, {"packed_ring", true}});
    r = call("vhost_create_blk_controller", {{"ctrlr", "a"}, {"dev_name", "Malloc0"}});
    EXPECT_TRUE(r.contains("error"));
    ok("vhost_controller_set_coalescing",
       {{"ctrlr", "a"}, {"delay_base_us", 80}, {"iops_threshold", 1000}});
    r = call("vhost_get_controllers");
    ASSERT_EQ(r["result"].size(), 1u) << r.dump();
    const Json& c = r["result"][0];
    EXPECT_EQ(c["ctrlr"], "a");
    EXPECT_EQ(c["socket"], dir + "/a");
    EXPECT_EQ(c["delay_base_us"], 80);
    EXPECT_EQ(c["backend_specific"]["block"]["bdev"], "Malloc0");
    EXPECT_EQ(c["backend_specific"]["block"]["readonly"], false);
    Json saved = call("save_config")["result"];
    Json vh;
    for (const auto& s : saved["subsystems"])
        if (s["subsystem"] == "vhost_blk") vh = s["config"];
    ASSERT_EQ(vh.size(), 2u) << saved.dump();
    EXPECT_EQ(vh[0]["method"], "vhost_create_blk_controller");
    EXPECT_EQ(vh[0]["params"]["dev_name"], "Malloc0");
    EXPECT_EQ(vh[0]["params"]["packed_ring"], true);
    EXPECT_EQ(vh[1]["method"], "vhost_controller_set_coalescing");
    EXPECT_EQ(vh[1]["params"]["iops_threshold"], 1000);
    ok("vhost_delete_controller", {{"ctrlr", "a"}});
    EXPECT_EQ(call("vhost_get_controllers")["result"].size(), 0u);
    EXPECT_TRUE(call("vhost_delete_controller", {{"ctrlr", "a"}}).contains("error"));
}

}  // namespace
}  // namespace strata::vhost

namespace strata::vhost {
namespace {

TEST_F(VhostBlkTest, ScsiControllerRpcsAndSaveConfig) {
    ok("bdev_malloc_create", {{"name", "Malloc1"}, {"num_blocks", 128}, {"block_size", 512}});
    ok("vhost_create_scsi_controller", {{"ctrlr", "scsi.0"}});
    auto r = call("vhost_scsi_controller_add_target",
                  {{"ctrlr", "scsi.0"}, {"scsi_target_num", 3}, {"bdev_name", "Malloc0"}});
    ASSERT_EQ(r["result"], 3) << r.dump();
    r = call("vhost_scsi_controller_add_target",
             {{"ctrlr", "scsi.0"}, {"scsi_target_num", -1}, {"bdev_name", "Malloc1"}});
    ASSERT_EQ(r["result"], 0) << r.dump();
    // Errors: a taken number, out of range, a missing bdev, a missing controller.
    for (Json p : {Json{{"ctrlr", "scsi.0"}, {"scsi_target_num", 3}, {"bdev_name", "Malloc1"}},
                   Json{{"ctrlr", "scsi.0"}, {"scsi_target_num", 8}, {"bdev_name", "Malloc1"}},
                   Json{{"ctrlr", "scsi.0"}, {"scsi_target_num", 5}, {"bdev_name", "nope"}},
                   Json{{"ctrlr", "nope"}, {"scsi_target_num", 5}, {"bdev_name", "Malloc1"}}})
        EXPECT_TRUE(call("vhost_scsi_controller_add_target", p).contains("error")) << p.dump();
    r = call("vhost_get_controllers", {{"name", "scsi.0"}});
    ASSERT_TRUE(r.contains("result")) << r.dump();
    const Json& scsi = r["result"][0]["backend_specific"]["scsi"];
    ASSERT_EQ(scsi.size(), 2u) << r.dump();
    EXPECT_EQ(scsi[0]["scsi_dev_num"], 0);
    EXPECT_EQ(scsi[0]["target_name"], "Target 0");
    EXPECT_EQ(scsi[0]["luns"][0]["bdev_name"], "Malloc1");
    EXPECT_EQ(scsi[1]["scsi_dev_num"], 3);
    EXPECT_EQ(scsi[1]["luns"][0]["bdev_name"], "Malloc0");
    // save_config: SPDK's order in subsystem vhost_scsi.
    r = call("save_config");
    Json sub;
    for (const auto& s : r["result"]["subsystems"])
        if (s["subsystem"] == "vhost_scsi") sub = s["config"];
    ASSERT_EQ(sub.size(), 4u) << r.dump();
    EXPECT_EQ(sub[0]["method"], "vhost_create_scsi_controller");
    EXPECT_EQ(sub[0]["params"]["delay"], true);
    EXPECT_EQ(sub[1]["method"], "vhost_scsi_controller_add_target");
    EXPECT_EQ(sub[1]["params"]["scsi_target_num"], 0);
    EXPECT_EQ(sub[2]["params"]["scsi_target_num"], 3);
    EXPECT_EQ(sub[2]["params"]["bdev_name"], "Malloc0");
    EXPECT_EQ(sub[3]["method"], "vhost_start_scsi_controller");
    // A controller with targets is not deleted; without, it is.
    EXPECT_TRUE(call("vhost_delete_controller", {{"ctrlr", "scsi.0"}}).contains("error"));
    ok("vhost_scsi_controller_remove_target", {{"ctrlr", "scsi.0"}, {"scsi_target_num", 3}});
    EXPECT_TRUE(
        call("vhost_scsi_controller_remove_target", {{"ctrlr", "scsi.0"}, {"scsi_target_num", 3}})
            .contains("error"));
    ok("vhost_scsi_controller_remove_target", {{"ctrlr", "scsi.0"}, {"scsi_target_num", 0}});
    r = call("vhost_get_controllers", {{"name", "scsi.0"}});
    EXPECT_TRUE(r["result"][0]["backend_specific"]["scsi"].empty()) << r.dump();
    ok("vhost_delete_controller", {{"ctrlr", "scsi.0"}});
}

TEST_F(VhostBlkTest, ScsiCommandsTmfAndHotplugEvents) {
    ok("vhost_create_scsi_controller", {{"ctrlr", "scsi.1"}});
    ok("vhost_scsi_controller_add_target",
       {{"ctrlr", "scsi.1"}, {"scsi_target_num", 1}, {"bdev_name", "Malloc0"}});
    connect_to("scsi.1");
    DriverRing ctrl(ram, 0x100000, 16), event(ram, 0x110000, 16), req(ram, 0x120000, 16);
    setup_scsi({{0, &ctrl}, {1, &event}, {2, &req}});
    // Config space: targets 0-7, the spec's default CDB and sense sizes.
    vu::ConfigSpace cs{0, sizeof(vsc::Config), 0, {}};
    send_msg(Request::kGetConfig, &cs, 12 + sizeof(vsc::Config));
    auto p = recv_reply();
    ASSERT_EQ(p.size(), 12 + sizeof(vsc::Config));
    vsc::Config cfg;
    std::memcpy(&cfg, p.data() + 12, sizeof cfg);
    EXPECT_EQ(cfg.max_target, 7);
    EXPECT_EQ(cfg.cdb_size, vsc::kCdbSize);
    // INQUIRY: data-in into guest memory, the used length counts the response and the data.
    uint32_t len = 0;
    auto resp = scsi_cmd(req, 1, {0x12, 0, 0, 0, 96, 0}, kData, 96, true, &len);
    EXPECT_EQ(resp.response, vsc::kSOk);
    EXPECT_EQ(resp.status, 0);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(ram.at(kData + 8)), 6), "STRATA");
    EXPECT_EQ(len, sizeof(vsc::RespCmd) + 96);
    // The first command after INQUIRY reports the power-on unit attention (SAM).
    resp = scsi_cmd(req, 1, {0x00, 0, 0, 0, 0, 0}, 0, 0, false);
    EXPECT_EQ(resp.status, 0x02);
    EXPECT_EQ(resp.sense[2] & 0xf, 0x6);
    // WRITE(10) 8 blocks at LBA 16, READ(10) them back.
    for (int i = 0; i < 4096; ++i) ram.at(kData)[i] = uint8_t(i * 13 + 5);
    resp = scsi_cmd(req, 1, {0x2a, 0, 0, 0, 0, 16, 0, 0, 8, 0}, kData, 4096, false);
    EXPECT_EQ(resp.response, vsc::kSOk);
    EXPECT_EQ(resp.status, 0);
    std::memset(ram.at(kData2), 0, 4096);
    resp = scsi_cmd(req, 1, {0x28, 0, 0, 0, 0, 16, 0, 0, 8, 0}, kData2, 4096, true, &len);
    EXPECT_EQ(resp.status, 0);
    EXPECT_EQ(len, sizeof(vsc::RespCmd) + 4096);
    EXPECT_EQ(std::memcmp(ram.at(kData), ram.at(kData2), 4096), 0);
    // Out of range: CHECK CONDITION with sense (ILLEGAL REQUEST).
    resp = scsi_cmd(req, 1, {0x28, 0, 0, 0, 1, 0, 0, 0, 8, 0}, kData2, 4096, true);
    EXPECT_EQ(resp.status, 0x02);
    ASSERT_GE(resp.sense_len, 14u);
    EXPECT_EQ(resp.sense[2] & 0xf, 0x5);
    // A target with no device.
    resp = scsi_cmd(req, 4, {0x00, 0, 0, 0, 0, 0}, 0, 0, false);
    EXPECT_EQ(resp.response, vsc::kSBadTarget);
    // Task management on the control queue.
    EXPECT_EQ(scsi_tmf(ctrl, 1, vsc::kTmfLogicalUnitReset), vsc::kSFunctionSucceeded);
    EXPECT_EQ(scsi_tmf(ctrl, 1, vsc::kTmfAbortTaskSet), vsc::kSFunctionSucceeded);
    EXPECT_EQ(scsi_tmf(ctrl, 4, vsc::kTmfLogicalUnitReset), vsc::kSBadTarget);
    EXPECT_EQ(scsi_tmf(ctrl, 1, vsc::kTmfQueryTask), vsc::kSFunctionRejected);
    // After the LUN reset the next command reports the unit attention, then works.
    resp = scsi_cmd(req, 1, {0x00, 0, 0, 0, 0, 0}, 0, 0, false);
    if (resp.status == 0x02) resp = scsi_cmd(req, 1, {0x00, 0, 0, 0, 0, 0}, 0, 0, false);
    EXPECT_EQ(resp.status, 0);
    // Hot-plug: an event buffer, then a target added and one removed.
    auto* ev = reinterpret_cast<vsc::Event*>(ram.at(kEvent));
    std::memset(ev, 0xee, 2 * sizeof *ev);
    event.set_desc(0, ram.gpa(kEvent), sizeof *ev, vs::kDescFWrite);
    event.set_desc(1, ram.gpa(kEvent + sizeof *ev), sizeof *ev, vs::kDescFWrite);
    event.publish(0);
    event.publish(1);
    ok("bdev_malloc_create", {{"name", "Malloc2"}, {"num_blocks", 64}, {"block_size", 512}});
    ok("vhost_scsi_controller_add_target",
       {{"ctrlr", "scsi.1"}, {"scsi_target_num", 5}, {"bdev_name", "Malloc2"}});
    uint32_t id = 0;
    ASSERT_TRUE(pump([&] { return event.pop_used(id, len); }));
    EXPECT_EQ(id, 0u);
    EXPECT_EQ(len, sizeof *ev);
    EXPECT_EQ(ev[0].event, vsc::kTTransportReset);
    EXPECT_EQ(ev[0].reason, vsc::kEvtResetRescan);
    EXPECT_EQ(ev[0].lun[1], 5);
    ok("vhost_scsi_controller_remove_target", {{"ctrlr", "scsi.1"}, {"scsi_target_num", 5}});
    ASSERT_TRUE(pump([&] { return event.pop_used(id, len); }));
    EXPECT_EQ(id, 1u);
    EXPECT_EQ(ev[1].reason, vsc::kEvtResetRemoved);
    EXPECT_EQ(ev[1].lun[1], 5);
    resp = scsi_cmd(req, 5, {0x00, 0, 0, 0, 0, 0}, 0, 0, false);
    EXPECT_EQ(resp.response, vsc::kSBadTarget);
}

}  // namespace
}  // namespace strata::vhost

namespace strata::vhost {
namespace {

// vhost_get_controllers after a hot-removed bdev reports what SPDK does: a vhost-blk
// controller's bdev as null (and save_config leaves that controller out), a vhost-scsi
// target whose bdev went as gone.
TEST_F(VhostBlkTest, GetControllersAfterABdevHotRemove) {
    ok("vhost_create_blk_controller", {{"ctrlr", "hb"}, {"dev_name", "Malloc0"}});
    ok("bdev_malloc_create", {{"name", "Malloc1"}, {"num_blocks", 128}, {"block_size", 512}});
    ok("bdev_malloc_create", {{"name", "Malloc3"}, {"num_blocks", 128}, {"block_size", 512}});
    ok("vhost_create_scsi_controller", {{"ctrlr", "hs"}});
    ok("vhost_scsi_controller_add_target",
       {{"ctrlr", "hs"}, {"scsi_target_num", 2}, {"bdev_name", "Malloc1"}});
    ok("vhost_scsi_controller_add_target",
       {{"ctrlr", "hs"}, {"scsi_target_num", 4}, {"bdev_name", "Malloc3"}});
    ok("bdev_malloc_delete", {{"name", "Malloc0"}});
    ok("bdev_malloc_delete", {{"name", "Malloc1"}});
    Json r;
    EXPECT_TRUE(pump([&] {
        r = call("vhost_get_controllers", {{"name", "hb"}});
        return r["result"][0]["backend_specific"]["block"]["bdev"].is_null();
    })) << r.dump();
    Json scsi;
    EXPECT_TRUE(pump([&] {
        r = call("vhost_get_controllers", {{"name", "hs"}});
        scsi = r["result"][0]["backend_specific"]["scsi"];
        return scsi.size() == 1;
    })) << r.dump();
    ASSERT_EQ(scsi.size(), 1u);
    EXPECT_EQ(scsi[0]["scsi_dev_num"], 4);
    EXPECT_EQ(scsi[0]["luns"][0]["bdev_name"], "Malloc3");
    r = call("save_config");
    for (const auto& s : r["result"]["subsystems"]) {
        if (s["subsystem"] == "vhost_blk") {
            for (const auto& m : s["config"])
                EXPECT_NE(m["params"]["ctrlr"], "hb") << s.dump();
        }
        if (s["subsystem"] == "vhost_scsi") {
            size_t targets = 0;
            for (const auto& m : s["config"])
                if (m["method"] == "vhost_scsi_controller_add_target") {
                    ++targets;
                    EXPECT_EQ(m["params"]["scsi_target_num"], 4);
                }
            EXPECT_EQ(targets, 1u) << s.dump();
        }
    }
    // The controller without its bdev is deleted as usual; the target number is free again.
    ok("vhost_delete_controller", {{"ctrlr", "hb"}});
    ok("bdev_malloc_create", {{"name", "Malloc4"}, {"num_blocks", 128}, {"block_size", 512}});
    ok("vhost_scsi_controller_add_target",
       {{"ctrlr", "hs"}, {"scsi_target_num", 2}, {"bdev_name", "Malloc4"}});
    ok("vhost_scsi_controller_remove_target", {{"ctrlr", "hs"}, {"scsi_target_num", 2}});
    ok("vhost_scsi_controller_remove_target", {{"ctrlr", "hs"}, {"scsi_target_num", 4}});
    ok("vhost_delete_controller", {{"ctrlr", "hs"}});
}

}  // namespace
}  // namespace strata::vhost
