// virtio-user's handshake against a scripted vhost-user back end on a thread of the test: the
// messages and their order, the memory table's fd (mapped here, the rings must lie in it),
// refusals (no VERSION_1, too few queues, a refused GET_CONFIG), and the kick eventfd.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <strata/virtio/spec/blk.h>
#include <strata/virtio/spec/vhost_user.h>
#include <strata/virtio/user.h>

namespace strata::virtio {
namespace {

namespace vu = spec::vhost_user;

struct Script {
    uint64_t features = spec::feature(spec::kFVersion1) | spec::feature(spec::kFRingIndirectDesc) |
                        spec::feature(spec::kFRingEventIdx) |
                        spec::feature(spec::kFVhostUserProtocolFeatures) |
                        spec::feature(spec::blk::kFBlkSize);
    uint64_t protocol_features =
        spec::feature(vu::kPfMq) | spec::feature(vu::kPfReplyAck) | spec::feature(vu::kPfConfig);
    uint64_t queue_num = 2;
    bool refuse_config = false;
};

// What the back end saw.
struct Seen {
    std::vector<vu::Request> requests;
    uint64_t features = 0;
    uint64_t protocol_features = 0;
    vu::MemoryRegion region{};
    void* mapped = nullptr;
    std::vector<vu::VringAddr> addrs;
    std::vector<int> kick_fds;
    bool rings_inside_region = true;
};

class Backend {
public:
    explicit Backend(Script s) : script_(s) {
        path_ = "/tmp/strata_virtio_user_test_" + std::to_string(::getpid()) + ".sock";
        ::unlink(path_.c_str());
        listen_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strcpy(sa.sun_path, path_.c_str());
        EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
        EXPECT_EQ(::listen(listen_, 1), 0);
        thread_ = std::thread([this] { run(); });
    }
    ~Backend() {
        ::shutdown(listen_, SHUT_RDWR);
        thread_.join();
        ::close(listen_);
        ::unlink(path_.c_str());
        if (seen.mapped) ::munmap(seen.mapped, seen.region.memory_size);
        for (int fd : seen.kick_fds) ::close(fd);
    }
    const std::string& path() const { return path_; }
    Seen seen;

private:
    bool recv_msg(vu::Header& h, uint8_t* payload, std::vector<int>& fds) {
        iovec iov{&h, sizeof h};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        if (::recvmsg(conn_, &msg, MSG_WAITALL) != sizeof h) return false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                fds.push_back(fd);
            }
        }
        if (h.size > 0 &&
            ::recv(conn_, payload, h.size, MSG_WAITALL) != static_cast<ssize_t>(h.size)) {
            return false;
        }
        return true;
    }
    void reply(vu::Request r, const void* p, uint32_t size) {
        vu::Header h{r, vu::kVersion | vu::kFlagReply, size};
        ASSERT_EQ(::send(conn_, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
        if (size != 0) {
            ASSERT_EQ(::send(conn_, p, size, 0), static_cast<ssize_t>(size));
        }
    }
    void reply_u64(vu::Request r, uint64_t v) { reply(r, &v, sizeof v); }

    void run() {
        conn_ = ::accept(listen_, nullptr, nullptr);
        if (conn_ < 0) return;
        std::vector<uint8_t> payload(8192);
        for (;;) {
            vu::Header h{};
            std::vector<int> fds;
            if (!recv_msg(h, payload.data(), fds)) break;
            seen.requests.push_back(h.request);
            uint64_t u64 = 0;
            std::memcpy(&u64, payload.data(), sizeof u64);
            bool acked = false;
            switch (h.request) {
                case vu::Request::kGetFeatures:
                    reply_u64(h.request, script_.features);
                    acked = true;
                    break;
                case vu::Request::kSetFeatures:
                    seen.features = u64;
                    break;
                case vu::Request::kGetProtocolFeatures:
                    reply_u64(h.request, script_.protocol_features);
                    acked = true;
                    break;
                case vu::Request::kSetProtocolFeatures:
                    seen.protocol_features = u64;
                    break;
                case vu::Request::kGetQueueNum:
                    reply_u64(h.request, script_.queue_num);
                    acked = true;
                    break;
                case vu::Request::kSetMemTable: {
                    vu::Memory m;
                    std::memcpy(&m, payload.data(), sizeof m);
                    EXPECT_EQ(m.nregions, 1u);
                    EXPECT_EQ(fds.size(), 1u);
                    seen.region = m.regions[0];
                    seen.mapped = ::mmap(nullptr, m.regions[0].memory_size, PROT_READ | PROT_WRITE,
                                         MAP_SHARED, fds.at(0), 0);
                    EXPECT_NE(seen.mapped, MAP_FAILED);
                    break;
                }
                case vu::Request::kSetVringAddr: {
                    vu::VringAddr a;
                    std::memcpy(&a, payload.data(), sizeof a);
                    seen.addrs.push_back(a);
                    for (uint64_t addr : {a.desc_user_addr, a.avail_user_addr, a.used_user_addr})
                        if (addr < seen.region.userspace_addr ||
                            addr >= seen.region.userspace_addr + seen.region.memory_size)
                            seen.rings_inside_region = false;
                    break;
                }
                case vu::Request::kSetVringKick:
                    seen.kick_fds.push_back(fds.at(0));
                    fds.clear();
                    break;
                case vu::Request::kGetConfig: {
                    vu::ConfigSpace c;
                    std::memcpy(&c, payload.data(), h.size);
                    if (script_.refuse_config) {
                        reply(h.request, nullptr, 0);
                    } else {
                        spec::blk::Config cfg{};
                        cfg.capacity = 2048;
                        cfg.blk_size = 4096;
                        std::memcpy(c.payload, &cfg, std::min<size_t>(c.size, sizeof cfg));
                        reply(h.request, &c, h.size);
                    }
                    acked = true;
                    break;
                }
                case vu::Request::kGetVringBase: {
                    vu::VringState st;
                    std::memcpy(&st, payload.data(), sizeof st);
                    reply(h.request, &st, sizeof st);
                    acked = true;
                    break;
                }
                default:
                    break;
            }
            for (int fd : fds) ::close(fd);
            if (!acked && (h.flags & vu::kFlagNeedReply)) reply_u64(h.request, 0);
        }
        ::close(conn_);
    }

    Script script_;
    std::string path_;
    int listen_ = -1;
    int conn_ = -1;
    std::thread thread_;
};

UserOptions options(const std::string& path, uint16_t queues = 2) {
    UserOptions o;
    o.socket_path = path;
    o.num_queues = queues;
    o.queue_size = 64;
    o.device_features = spec::feature(spec::blk::kFBlkSize);
    o.queue_extra_bytes = 8192;
    return o;
}

TEST(VirtioUser, HandshakeSharesRingsAndExtraMemoryByFd) {
    Backend be{Script{}};
    {
        auto dev = open_user(options(be.path()));
        ASSERT_TRUE(dev.ok()) << dev.error().message();
        Device& d = **dev;
        EXPECT_TRUE(d.has_feature(spec::kFVersion1));
        EXPECT_TRUE(d.has_feature(spec::kFRingIndirectDesc));
        EXPECT_TRUE(d.has_feature(spec::blk::kFBlkSize));
        spec::blk::Config cfg{};
        ASSERT_TRUE(d.read_config(0, &cfg, 60).ok());
        EXPECT_EQ(cfg.capacity, 2048u);
        uint32_t blk_size = 0;
        ASSERT_TRUE(d.read_config(offsetof(spec::blk::Config, blk_size), &blk_size, 4).ok());
        EXPECT_EQ(blk_size, 4096u);

        // Extra memory is reachable; memory elsewhere is not (it must be bounced).
        uint8_t* extra = static_cast<uint8_t*>(d.queue_extra(1));
        EXPECT_EQ(d.device_address(extra, 8192), reinterpret_cast<uint64_t>(extra));
        EXPECT_EQ(d.device_address(extra, 8192 + 1 + (1 << 30)), kNoDeviceAddress);
        std::vector<uint8_t> heap(64);
        EXPECT_EQ(d.device_address(heap.data(), heap.size()), kNoDeviceAddress);

        // What the driver writes there, the back end sees through the fd it was given.
        std::memcpy(extra, "shared", 6);
        auto* mapped = static_cast<uint8_t*>(be.seen.mapped) +
                       (reinterpret_cast<uint64_t>(extra) - be.seen.region.userspace_addr);
        EXPECT_EQ(std::memcmp(mapped, "shared", 6), 0);

        // A kick reaches the back end's eventfd.
        d.notify(1);
        uint64_t v = 0;
        ASSERT_EQ(be.seen.kick_fds.size(), 2u);
        EXPECT_EQ(::read(be.seen.kick_fds[1], &v, sizeof v), 8);
        EXPECT_EQ(v, 1u);
    }
    EXPECT_TRUE(be.seen.rings_inside_region);
    EXPECT_EQ(be.seen.addrs.size(), 2u);
    EXPECT_EQ(be.seen.region.guest_phys_addr, be.seen.region.userspace_addr);
    EXPECT_EQ(be.seen.requests.front(), vu::Request::kSetOwner);
    // Protocol features are learned only once offered and acknowledged.
    EXPECT_NE(be.seen.features & spec::feature(spec::kFVhostUserProtocolFeatures), 0u);
    EXPECT_EQ(be.seen.protocol_features, Script{}.protocol_features);
    // Rings stopped before the memory went: one GET_VRING_BASE per queue at close.
    EXPECT_EQ(
        std::count(be.seen.requests.begin(), be.seen.requests.end(), vu::Request::kGetVringBase),
        2);
}

TEST(VirtioUser, RefusesALegacyBackEnd) {
    Script s;
    s.features &= ~spec::feature(spec::kFVersion1);
    Backend be{s};
    auto dev = open_user(options(be.path()));
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code(), Errc::not_supported);
    EXPECT_NE(dev.error().message().find("VERSION_1"), std::string::npos);
}

TEST(VirtioUser, RefusesMoreQueuesThanTheBackEndHas) {
    Backend be{Script{}};
    auto dev = open_user(options(be.path(), 4));
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code(), Errc::not_supported);
    EXPECT_NE(dev.error().message().find("2 queues"), std::string::npos) << dev.error().message();
}

TEST(VirtioUser, ARefusedConfigReadIsAnError) {
    Script s;
    s.refuse_config = true;
    Backend be{s};
    auto dev = open_user(options(be.path()));
    ASSERT_TRUE(dev.ok()) << dev.error().message();
    spec::blk::Config cfg{};
    EXPECT_EQ((*dev)->read_config(0, &cfg, 60).error().code(), Errc::io_error);
}

TEST(VirtioUser, NoSocketIsNotFound) {
    auto dev = open_user(options("/tmp/strata_virtio_user_no_such.sock"));
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code(), Errc::not_found);
    EXPECT_NE(dev.error().message().find("strata_virtio_user_no_such.sock"), std::string::npos);
}

TEST(VirtioUser, BadQueueSizeIsRefusedBeforeConnecting) {
    auto o = options("/tmp/whatever.sock");
    o.queue_size = 100;
    auto dev = open_user(o);
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace strata::virtio
