// Controller: the vhost-user socket, its one connection and the pollers (controller.h).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/runtime/thread.h>
#include <strata/vhost/controller.h>

namespace strata::vhost {

STRATA_LOG_COMPONENT(vhost_ctrlr);

namespace {
constexpr uint64_t kControlPeriodNs = 100'000;  // 100 us
}

Result<std::unique_ptr<Controller>> Controller::create(std::string name, std::string path,
                                                       std::unique_ptr<Device> device) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path))
        return Error(Errc::invalid_argument,
                     fmt::format("socket path '{}' is empty or longer than {} bytes", path,
                                 sizeof(sa.sun_path) - 1));
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error(Errc::already_exists,
                         fmt::format("'{}' exists and is not a socket", path));
        ::unlink(path.c_str());  // stale socket of a previous run
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(Errc::internal, fmt::format("socket: {}", std::strerror(errno)));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 4) != 0) {
        const int e = errno;
        ::close(fd);
        return Error(Errc::invalid_argument,
                     fmt::format("cannot listen at '{}': {}", path, std::strerror(e)));
    }
    return std::unique_ptr<Controller>(
        new Controller(std::move(name), std::move(path), fd, std::move(device)));
}

Controller::Controller(std::string name, std::string path, int listen_fd,
                       std::unique_ptr<Device> device)
    : name_(std::move(name)),
      path_(std::move(path)),
      listen_fd_(listen_fd),
      device_(std::move(device)) {}

Controller::~Controller() {
    if (thread_ != nullptr) {
        thread_->unregister_poller(control_poller_);
        thread_->unregister_poller(data_poller_);
    }
    if (conn_fd_ >= 0) ::close(conn_fd_);
    for (size_t i = 0; i < nfds_; ++i) ::close(fds_[i]);
    session_.reset();
    closing_.reset();
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        ::unlink(path_.c_str());
    }
}

void Controller::start() {
    thread_ = runtime::current_thread();
    control_poller_ = thread_->register_poller(
        [](void* c) {
            return static_cast<Controller*>(c)->poll_control() > 0 ? runtime::PollStatus::busy
                                                                   : runtime::PollStatus::idle;
        },
        this, "vhost_control", kControlPeriodNs);
    data_poller_ = thread_->register_poller(
        [](void* c) {
            return static_cast<Controller*>(c)->poll_data(runtime::now_ns()) > 0
                       ? runtime::PollStatus::busy
                       : runtime::PollStatus::idle;
        },
        this, "vhost_data");
}

void Controller::set_coalescing(const CoalescingOptions& o) noexcept {
    coalescing_ = o;
    if (session_) session_->set_coalescing(o);
}

void Controller::disconnect(const char* why) {
    STRATA_NOTICELOG(log_vhost_ctrlr, "{}: front end disconnected: {}", name_, why);
    ::close(conn_fd_);
    conn_fd_ = -1;
    for (size_t i = 0; i < nfds_; ++i) ::close(fds_[i]);
    nfds_ = 0;
    rx_len_ = 0;
    too_many_fds_ = false;
    if (session_) {
        session_->quiesce();
        if (session_->outstanding() == 0)
            session_.reset();
        else
            closing_ = std::move(session_);
    }
}

bool Controller::send_reply(const Reply& r) {
    iovec iov[2] = {{const_cast<vu::Header*>(&r.header), sizeof r.header},
                    {const_cast<uint8_t*>(r.payload), r.header.size}};
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = r.header.size ? 2 : 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    if (r.fd >= 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof cbuf;
        cmsghdr* cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cm), &r.fd, sizeof(int));
    }
    const ssize_t want = ssize_t(sizeof r.header + r.header.size);
    const ssize_t n = ::sendmsg(conn_fd_, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == want;
}

int Controller::read_messages() {
    int work = 0;
    for (;;) {
        if (session_ && session_->reply_pending()) return work;  // GET_VRING_BASE draining
        const size_t need =
            rx_len_ < sizeof(vu::Header)
                ? sizeof(vu::Header)
                : sizeof(vu::Header) + reinterpret_cast<const vu::Header*>(rx_)->size;
        if (rx_len_ >= sizeof(vu::Header) &&
            reinterpret_cast<const vu::Header*>(rx_)->size > vu::kMaxPayload) {
            ++protocol_errors_;
            STRATA_ERRLOG(log_vhost_ctrlr, "{}: message payload of {} bytes (at most {})", name_,
                          reinterpret_cast<const vu::Header*>(rx_)->size, vu::kMaxPayload);
            disconnect("protocol error");
            return work;
        }
        if (rx_len_ < need) {
            iovec iov{rx_ + rx_len_, need - rx_len_};
            alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * vu::kMaxFds * 2)];
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf;
            mh.msg_controllen = sizeof cbuf;
            const ssize_t n = ::recvmsg(conn_fd_, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return work;
            if (n <= 0) {
                disconnect(n == 0 ? "connection closed" : std::strerror(errno));
                return work + 1;
            }
            for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
                const size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    if (nfds_ < vu::kMaxFds)
                        fds_[nfds_++] = fd;
                    else {
                        ::close(fd);
                        too_many_fds_ = true;
                    }
                }
            }
            if (mh.msg_flags & MSG_CTRUNC) too_many_fds_ = true;
            rx_len_ += size_t(n);
            ++work;
            continue;
        }
        // A whole message.
        vu::Header h;
        std::memcpy(&h, rx_, sizeof h);
        Reply reply;
        Result<void> r =
            too_many_fds_
                ? Result<void>(Error(Errc::protocol_error,
                                     fmt::format("{}: more than {} fds",
                                                 vu::request_name(h.request), vu::kMaxFds)))
                : session_->handle(h, rx_ + sizeof h, fds_, nfds_, reply);
        if (too_many_fds_)
            for (size_t i = 0; i < nfds_; ++i) ::close(fds_[i]);
        nfds_ = 0;
        rx_len_ = 0;
        too_many_fds_ = false;
        ++work;
        if (!r.ok()) {
            ++protocol_errors_;
            STRATA_ERRLOG(log_vhost_ctrlr, "{}: {}: closing the connection", name_,
                          r.error().message());
            disconnect("protocol error");
            return work;
        }
        if (reply.send && !send_reply(reply)) {
            disconnect("reply could not be sent");
            return work;
        }
    }
}

int Controller::poll_control() {
    int work = 0;
    if (closing_ && closing_->outstanding() == 0) closing_.reset();
    // The connection first: a front end that closed and reconnected is seen closed before
    // its new connection is accepted.
    if (conn_fd_ >= 0) {
        if (session_ && session_->reply_pending()) {
            Reply reply;
            if (session_->take_pending_reply(reply) && !send_reply(reply)) {
                disconnect("reply could not be sent");
                ++work;
            }
        }
        if (conn_fd_ >= 0) work += read_messages();
    }
    if (closing_) return work;  // the old session's requests finish first
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return work;
    if (conn_fd_ >= 0) {
        // One front end per controller: a second connection is refused at once.
        STRATA_WARNLOG(log_vhost_ctrlr, "{}: a front end is already connected: refused", name_);
        ::close(fd);
        return work + 1;
    }
    conn_fd_ = fd;
    ++connections_;
    session_ = std::make_unique<Session>(*device_, name_);
    session_->set_coalescing(coalescing_);
    STRATA_INFOLOG(log_vhost_ctrlr, "{}: front end connected", name_);
    return work + 1 + read_messages();
}

int Controller::poll_data(uint64_t now_ns) {
    int work = 0;
    if (session_) work += session_->poll(now_ns);
    if (closing_) work += closing_->poll(now_ns);
    return work;
}

}  // namespace strata::vhost
