// virtio-user: the vhost-user front end (see user.h).
#include <strata/virtio/user.h>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <span>
#include <vector>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/virtio/spec/vhost_user.h>

namespace strata::virtio {

STRATA_LOG_COMPONENT(virtio_user);

namespace {

namespace vu = spec::vhost_user;
using vu::Request;

constexpr size_t kPage = 4096;
size_t align_up(size_t v, size_t a) {
    return (v + a - 1) / a * a;
}

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = o.fd_;
            o.fd_ = -1;
        }
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int get() const { return fd_; }

private:
    int fd_ = -1;
};

class UserDevice final : public Device {
public:
    explicit UserDevice(const UserOptions& o) : opts_(o) {}
    ~UserDevice() override;

    Result<void> open();

    const char* transport_name() const noexcept override { return "user"; }
    const std::string& address() const noexcept override { return opts_.socket_path; }
    uint32_t device_type() const noexcept override { return opts_.device_type; }
    uint64_t features() const noexcept override { return features_; }
    Result<void> read_config(uint32_t offset, void* out, uint32_t len) override;
    uint16_t num_queues() const noexcept override { return opts_.num_queues; }
    Virtqueue& queue(uint16_t i) noexcept override { return queues_[i].vq; }
    void notify(uint16_t i) noexcept override {
        const uint64_t one = 1;
        // EAGAIN: the counter is at its maximum, so the back end has a wake-up pending anyway.
        while (::write(queues_[i].kick.get(), &one, sizeof one) < 0 && errno == EINTR) {
        }
    }
    void* queue_extra(uint16_t i) noexcept override { return arena_ + queues_[i].extra_offset; }
    size_t queue_extra_bytes() const noexcept override { return opts_.queue_extra_bytes; }
    bool gone() noexcept override {
        if (gone_.load(std::memory_order_relaxed)) return true;
        // A back end never writes to the front end's socket unasked: readable means EOF (it
        // closed or died) or an error.
        char b;
        const ssize_t r = ::recv(sock_.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            if (!gone_.exchange(true))
                STRATA_ERRLOG(log_virtio_user, "virtio-user {}: the back end closed the socket",
                              opts_.socket_path);
            return true;
        }
        return false;
    }
    uint64_t device_address(const void* p, size_t len) const noexcept override {
        const auto a = reinterpret_cast<uintptr_t>(p);
        const auto base = reinterpret_cast<uintptr_t>(arena_);
        if (a < base || len > arena_bytes_ || a - base > arena_bytes_ - len)
            return kNoDeviceAddress;
        return a;  // the region's guest-physical addresses are our virtual addresses
    }

private:
    struct Queue {
        Virtqueue vq;
        Fd kick;
        Fd call;
        size_t ring_offset = 0;
        size_t extra_offset = 0;
    };

    Error fail(Errc code, const std::string& what) const {
        return Error(code, fmt::format("virtio-user {}: {}", opts_.socket_path, what));
    }
    Result<void> send(Request req, const void* payload, uint32_t size, std::span<const int> fds,
                      bool need_reply);
    Result<void> recv_reply(Request req, void* payload, uint32_t size, uint32_t* got);
    Result<uint64_t> get_u64(Request req);
    Result<void> set_u64(Request req, uint64_t v);
    Result<void> set_state(Request req, uint32_t index, uint32_t num);
    Result<void> ack(Request req);
    bool reply_ack() const { return spec::has_feature(protocol_features_, vu::kPfReplyAck); }

    UserOptions opts_;
    Fd sock_;
    Fd memfd_;
    uint8_t* arena_ = nullptr;
    size_t arena_bytes_ = 0;
    uint64_t features_ = 0;
    uint64_t protocol_features_ = 0;
    std::unique_ptr<Queue[]> queues_;
    bool rings_started_ = false;
    std::atomic<bool> gone_{false};
};

UserDevice::~UserDevice() {
    if (rings_started_ && sock_.get() >= 0 && !gone_.load()) {
        // GET_VRING_BASE stops each ring in the back end before its memory goes away.
        for (uint16_t i = 0; i < opts_.num_queues; ++i) {
            vu::VringState st{i, 0};
            if (!send(Request::kGetVringBase, &st, sizeof st, {}, false).ok()) break;
            uint32_t got = 0;
            if (!recv_reply(Request::kGetVringBase, &st, sizeof st, &got).ok()) break;
        }
    }
    sock_.reset();
    if (arena_ != nullptr) ::munmap(arena_, arena_bytes_);
}

Result<void> UserDevice::send(Request req, const void* payload, uint32_t size,
                              std::span<const int> fds, bool need_reply) {
    vu::Header h{req, vu::kVersion | (need_reply ? vu::kFlagNeedReply : 0u), size};
    iovec iov[2] = {{&h, sizeof h}, {const_cast<void*>(payload), size}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = size != 0 ? 2 : 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * vu::kMaxFds)];
    if (!fds.empty()) {
        std::memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do {
        n = ::sendmsg(sock_.get(), &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof h + size))
        return fail(Errc::io_error, fmt::format("sending {}: {}", vu::request_name(req),
                                                n < 0 ? std::strerror(errno) : "short write"));
    return {};
}

Result<void> UserDevice::recv_reply(Request req, void* payload, uint32_t size, uint32_t* got) {
    vu::Header h{};
    ssize_t n;
    do {
        n = ::recv(sock_.get(), &h, sizeof h, MSG_WAITALL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof h))
        return fail(Errc::io_error,
                    fmt::format("reading the reply to {}: {}", vu::request_name(req),
                                n < 0 ? std::strerror(errno) : "connection closed"));
    if (h.request != req || (h.flags & vu::kFlagReply) == 0 || h.size > size)
        return fail(Errc::protocol_error,
                    fmt::format("bad reply to {}: request {}, flags {:#x}, size {} (at most {})",
                                vu::request_name(req), static_cast<uint32_t>(h.request), h.flags,
                                h.size, size));
    if (h.size != 0) {
        do {
            n = ::recv(sock_.get(), payload, h.size, MSG_WAITALL);
        } while (n < 0 && errno == EINTR);
        if (n != static_cast<ssize_t>(h.size))
            return fail(Errc::io_error,
                        fmt::format("reading the payload of {}'s reply", vu::request_name(req)));
    }
    *got = h.size;
    return {};
}

Result<uint64_t> UserDevice::get_u64(Request req) {
    if (auto r = send(req, nullptr, 0, {}, false); !r) return r.error();
    uint64_t v = 0;
    uint32_t got = 0;
    if (auto r = recv_reply(req, &v, sizeof v, &got); !r) return r.error();
    if (got != sizeof v)
        return fail(Errc::protocol_error,
                    fmt::format("{} reply of {} bytes, not 8", vu::request_name(req), got));
    return v;
}

// With REPLY_ACK, a request without a reply of its own is confirmed by a u64 (0: success).
Result<void> UserDevice::ack(Request req) {
    if (!reply_ack()) return {};
    uint64_t v = 0;
    uint32_t got = 0;
    STRATA_TRY(recv_reply(req, &v, sizeof v, &got));
    if (got != sizeof v || v != 0)
        return fail(Errc::io_error,
                    fmt::format("the back end refused {} (ack {})", vu::request_name(req), v));
    return {};
}

Result<void> UserDevice::set_u64(Request req, uint64_t v) {
    STRATA_TRY(send(req, &v, sizeof v, {}, reply_ack()));
    return ack(req);
}

Result<void> UserDevice::set_state(Request req, uint32_t index, uint32_t num) {
    vu::VringState st{index, num};
    STRATA_TRY(send(req, &st, sizeof st, {}, reply_ack()));
    return ack(req);
}

Result<void> UserDevice::read_config(uint32_t offset, void* out, uint32_t len) {
    if (!spec::has_feature(protocol_features_, vu::kPfConfig))
        return fail(Errc::not_supported, "the back end does not offer GET_CONFIG");
    if (len == 0 || offset + len > vu::kMaxConfigSize)
        return fail(Errc::invalid_argument, "config read out of range");
    // Read from offset 0 (back ends such as QEMU's answer the first `size` bytes).
    vu::ConfigSpace cfg{};
    cfg.offset = 0;
    cfg.size = offset + len;
    const uint32_t msg_size = 12 + cfg.size;
    STRATA_TRY(send(Request::kGetConfig, &cfg, msg_size, {}, false));
    vu::ConfigSpace reply{};
    uint32_t got = 0;
    STRATA_TRY(recv_reply(Request::kGetConfig, &reply, sizeof reply, &got));
    if (got != msg_size)
        return fail(Errc::io_error,
                    fmt::format("GET_CONFIG of {} bytes answered with {} (the back end refused)",
                                cfg.size, got));
    std::memcpy(out, reply.payload + offset, len);
    return {};
}

Result<void> UserDevice::open() {
    const UserOptions& o = opts_;
    if (o.num_queues == 0) return fail(Errc::invalid_argument, "vq_count must be at least 1");
    if (o.queue_size == 0 || o.queue_size > spec::kMaxQueueSize ||
        (o.queue_size & (o.queue_size - 1)) != 0)
        return fail(Errc::invalid_argument,
                    fmt::format("vq_size {} is not a power of two in 1..32768", o.queue_size));

    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (o.socket_path.empty() || o.socket_path.size() >= sizeof sa.sun_path)
        return fail(Errc::invalid_argument, "socket path empty or too long");
    std::memcpy(sa.sun_path, o.socket_path.c_str(), o.socket_path.size() + 1);
    sock_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (sock_.get() < 0)
        return fail(Errc::io_error, std::string("socket: ") + std::strerror(errno));
    timeval tv{5, 0};
    (void)::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::setsockopt(sock_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(sock_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        const int e = errno;
        return fail(e == ENOENT ? Errc::not_found : Errc::io_error,
                    fmt::format("connect: {}", std::strerror(e)));
    }

    STRATA_TRY(send(Request::kSetOwner, nullptr, 0, {}, false));
    auto offered = get_u64(Request::kGetFeatures);
    if (!offered) return offered.error();
    if (!spec::has_feature(*offered, spec::kFVersion1))
        return fail(Errc::not_supported,
                    "the back end does not offer VIRTIO_F_VERSION_1 "
                    "(legacy devices are not supported)");
    uint64_t want = spec::feature(spec::kFVersion1) | spec::feature(spec::kFRingIndirectDesc) |
                    spec::feature(spec::kFRingEventIdx) |
                    spec::feature(spec::kFVhostUserProtocolFeatures) | o.device_features |
                    (o.packed_ring ? spec::feature(spec::kFRingPacked) : 0);
    features_ = *offered & want;

    if (spec::has_feature(features_, spec::kFVhostUserProtocolFeatures)) {
        auto pf = get_u64(Request::kGetProtocolFeatures);
        if (!pf) return pf.error();
        const uint64_t pf_want = spec::feature(vu::kPfMq) | spec::feature(vu::kPfReplyAck) |
                                 spec::feature(vu::kPfConfig);
        const uint64_t pf_use = *pf & pf_want;
        STRATA_TRY(send(Request::kSetProtocolFeatures, &pf_use, sizeof pf_use, {}, false));
        protocol_features_ = pf_use;
        if (spec::has_feature(protocol_features_, vu::kPfMq)) {
            auto qn = get_u64(Request::kGetQueueNum);
            if (!qn) return qn.error();
            if (*qn < o.num_queues)
                return fail(Errc::not_supported,
                            fmt::format("the back end has {} queues, vq_count asks for {}", *qn,
                                        o.num_queues));
        } else if (o.num_queues > 1) {
            return fail(Errc::not_supported, "the back end does not offer multiple queues");
        }
    } else if (o.num_queues > 1) {
        return fail(Errc::not_supported, "the back end does not offer multiple queues");
    }
    // The back end would not learn VHOST_USER_F_PROTOCOL_FEATURES from SET_FEATURES otherwise.
    STRATA_TRY(set_u64(Request::kSetFeatures, features_));

    // The shared memory: every queue's rings and the caller's extra bytes, one memfd.
    const bool indirect = spec::has_feature(features_, spec::kFRingIndirectDesc);
    const bool event_idx = spec::has_feature(features_, spec::kFRingEventIdx);
    const bool packed = spec::has_feature(features_, spec::kFRingPacked);
    const uint16_t max_indirect = indirect ? o.max_indirect : 0;
    const VirtqueueLayout ql = Virtqueue::layout(o.queue_size, max_indirect, packed);
    queues_ = std::make_unique<Queue[]>(o.num_queues);
    size_t off = 0;
    for (uint16_t i = 0; i < o.num_queues; ++i) {
        queues_[i].ring_offset = off;
        off = align_up(off + ql.total_bytes, kPage);
        queues_[i].extra_offset = off;
        off = align_up(off + o.queue_extra_bytes, kPage);
    }
    arena_bytes_ = off;
    memfd_ = Fd(::memfd_create("strata-virtio-user", MFD_CLOEXEC));
    if (memfd_.get() < 0)
        return fail(Errc::no_memory, std::string("memfd_create: ") + std::strerror(errno));
    if (::ftruncate(memfd_.get(), static_cast<off_t>(arena_bytes_)) != 0)
        return fail(Errc::no_memory, std::string("ftruncate: ") + std::strerror(errno));
    void* m = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
    if (m == MAP_FAILED)
        return fail(Errc::no_memory,
                    fmt::format("mmap of {} bytes: {}", arena_bytes_, std::strerror(errno)));
    arena_ = static_cast<uint8_t*>(m);

    vu::Memory mem{};
    mem.nregions = 1;
    mem.regions[0] = vu::MemoryRegion{reinterpret_cast<uint64_t>(arena_), arena_bytes_,
                                      reinterpret_cast<uint64_t>(arena_), 0};
    const int mfd = memfd_.get();
    STRATA_TRY(
        send(Request::kSetMemTable, &mem, sizeof mem, std::span<const int>(&mfd, 1), reply_ack()));
    STRATA_TRY(ack(Request::kSetMemTable));

    for (uint16_t i = 0; i < o.num_queues; ++i) {
        Queue& q = queues_[i];
        uint8_t* ring = arena_ + q.ring_offset;
        STRATA_TRY(q.vq.init(ring, reinterpret_cast<uint64_t>(ring), o.queue_size, max_indirect,
                             indirect, event_idx, packed));
        q.kick = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        q.call = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (q.kick.get() < 0 || q.call.get() < 0)
            return fail(Errc::io_error, std::string("eventfd: ") + std::strerror(errno));
        STRATA_TRY(set_state(Request::kSetVringNum, i, o.queue_size));
        STRATA_TRY(set_state(Request::kSetVringBase, i, q.vq.initial_base()));
        vu::VringAddr a{};
        a.index = i;
        a.desc_user_addr = q.vq.desc_device_addr();
        a.avail_user_addr = q.vq.avail_device_addr();
        a.used_user_addr = q.vq.used_device_addr();
        STRATA_TRY(send(Request::kSetVringAddr, &a, sizeof a, {}, reply_ack()));
        STRATA_TRY(ack(Request::kSetVringAddr));
        uint64_t idx = i;
        int fd = q.call.get();
        STRATA_TRY(send(Request::kSetVringCall, &idx, sizeof idx, std::span<const int>(&fd, 1),
                        reply_ack()));
        STRATA_TRY(ack(Request::kSetVringCall));
        fd = q.kick.get();
        STRATA_TRY(send(Request::kSetVringKick, &idx, sizeof idx, std::span<const int>(&fd, 1),
                        reply_ack()));
        STRATA_TRY(ack(Request::kSetVringKick));
        rings_started_ = true;
    }
    if (spec::has_feature(features_, spec::kFVhostUserProtocolFeatures))
        for (uint16_t i = 0; i < o.num_queues; ++i)
            STRATA_TRY(set_state(Request::kSetVringEnable, i, 1));
    STRATA_INFOLOG(log_virtio_user,
                   "virtio-user {}: {} queue(s) of {}, features {:#x}, protocol features {:#x}, "
                   "{} KiB shared",
                   o.socket_path, o.num_queues, o.queue_size, features_, protocol_features_,
                   arena_bytes_ / 1024);
    return {};
}

}  // namespace

Result<std::unique_ptr<Device>> open_user(const UserOptions& options) {
    auto d = std::make_unique<UserDevice>(options);
    if (auto r = d->open(); !r) return r.error();
    return std::unique_ptr<Device>(std::move(d));
}

}  // namespace strata::virtio
