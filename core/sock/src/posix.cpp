// posix: non-blocking TCP sockets; a SocketGroup learns readiness from its epoll set.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <strata/base/log.h>

#include "internal.h"
#include "posix_util.h"

namespace strata::sock {

STRATA_LOG_COMPONENT(sock);

// ---- helpers shared with uring ----

Result<ResolvedAddress> resolve(const Endpoint& ep, bool passive) {
    std::string addr = strip_brackets(ep.address);
    if (addr.empty()) return Error(Errc::invalid_argument, "empty address");
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo* res = nullptr;
    const std::string port = std::to_string(ep.port);
    int rc = ::getaddrinfo(addr.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr)
        return Error(Errc::invalid_argument,
                     "cannot resolve address '" + ep.address + "': " + ::gai_strerror(rc));
    ResolvedAddress out;
    std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
    out.len = res->ai_addrlen;
    out.family = res->ai_family;
    ::freeaddrinfo(res);
    return out;
}

Endpoint endpoint_of(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = {};
    Endpoint e;
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
        e.port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
        e.port = ntohs(a->sin6_port);
    }
    e.address = buf;
    return e;
}

Endpoint local_endpoint(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    return endpoint_of(ss);
}

void apply_options(int fd, const SocketOptions& so, const ImplOptions& io) {
    int one = 1;
    if (so.no_delay) (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (io.recv_buf_size != 0) {
        int v = static_cast<int>(io.recv_buf_size);
        (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    if (io.send_buf_size != 0) {
        int v = static_cast<int>(io.send_buf_size);
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    }
    if (so.priority != 0) {
        int v = so.priority;
        (void)::setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &v, sizeof(v));
    }
    if (io.enable_quickack) (void)::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

Result<int> open_listener(const Endpoint& local, const SocketOptions& so, const ImplOptions& io) {
    auto ra = resolve(local, true);
    if (!ra) return ra.error();
    int fd = ::socket(ra->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(Errc::io_error, std::string("socket: ") + std::strerror(errno));
    int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    apply_options(fd, so, io);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&ra->storage), ra->len) != 0) {
        int e = errno;
        ::close(fd);
        if (e == EADDRINUSE)
            return Error(Errc::already_exists, "address " + to_string(local) + " already in use");
        return Error(Errc::invalid_argument,
                     "cannot bind " + to_string(local) + ": " + std::strerror(e));
    }
    if (::listen(fd, 512) != 0) {
        int e = errno;
        ::close(fd);
        return Error(Errc::io_error, std::string("listen: ") + std::strerror(e));
    }
    return fd;
}

FdListener::~FdListener() {
    ::close(fd_);
}

Result<std::unique_ptr<Socket>> FdListener::accept() noexcept {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return Status(Errc::busy, "no connection pending");
        return Status(Errc::io_error, errno_context(errno));
    }
    apply_options(fd, so_, io_);
    return make_socket(fd, local_endpoint(fd), endpoint_of(ss));
}

Result<int> open_connect(const Endpoint& remote, const SocketOptions& so, const ImplOptions& io,
                         Endpoint& peer, int& immediate_error) {
    auto ra = resolve(remote, false);
    if (!ra) return ra.error();
    if (remote.port == 0) return Error(Errc::invalid_argument, "connect to port 0");
    int fd = ::socket(ra->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(Errc::io_error, std::string("socket: ") + std::strerror(errno));
    apply_options(fd, so, io);
    peer = endpoint_of(ra->storage);
    immediate_error = 0;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&ra->storage), ra->len) != 0 &&
        errno != EINPROGRESS)
        immediate_error = errno;
    return fd;
}

const char* errno_context(int e) noexcept {
    switch (e) {
        case ECONNRESET:
        case EPIPE:
            return "connection reset";
        case ECONNREFUSED:
            return "connection refused";
        case ETIMEDOUT:
            return "connection timed out";
        case EHOSTUNREACH:
        case ENETUNREACH:
            return "host unreachable";
        default:
            return "socket error";
    }
}

namespace {

class PosixSocket final : public SocketBase {
public:
    PosixSocket(int fd, Endpoint local, Endpoint peer, bool connecting)
        : SocketBase(Kind::posix),
          fd_(fd),
          local_(std::move(local)),
          peer_(std::move(peer)),
          state_(connecting ? State::connecting : State::established) {}
    ~PosixSocket() override {
        if (group_ != nullptr) group_->remove(*this);
        close();
    }

    void fail_now(int e) noexcept {
        state_ = State::failed;
        error_ = e;
    }

    Result<size_t> readv(const iovec* iov, int iovcnt) noexcept override {
        if (Status s = usable(); !s.ok()) return s;
        ssize_t n = ::readv(fd_, iov, iovcnt);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0) {
            // A zero-length request reads nothing without meaning end of stream.
            size_t want = 0;
            for (int i = 0; i < iovcnt; ++i) want += iov[i].iov_len;
            if (want == 0) return size_t{0};
            return Status(Errc::shutdown, "end of stream");
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return Status(Errc::busy, "would block");
        fail_now(errno);
        return Status(Errc::io_error, errno_context(errno));
    }

    Result<size_t> writev(const iovec* iov, int iovcnt) noexcept override {
        if (Status s = usable(); !s.ok()) return s;
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(iovcnt);
        ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0) return size_t{0};
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return Status(Errc::busy, "would block");
        fail_now(errno);
        return Status(Errc::io_error, errno_context(errno));
    }

    void close() noexcept override {
        if (fd_ < 0) return;
        if (group_ != nullptr) group_detach(*group_);
        ::close(fd_);
        fd_ = -1;
        if (state_ != State::failed) state_ = State::closed;
    }

    void abort() noexcept override {
        if (fd_ < 0) return;
        linger l{1, 0};
        (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close();
    }

    bool connected() const noexcept override {
        if (state_ == State::connecting) const_cast<PosixSocket*>(this)->check_connect();
        return state_ == State::established;
    }
    const Endpoint& local() const noexcept override { return local_; }
    const Endpoint& peer() const noexcept override { return peer_; }
    const char* impl_name() const noexcept override { return "posix"; }

    Status group_attach(GroupImpl& g) override {
        if (fd_ < 0 || state_ == State::failed) {
            // Nothing for epoll to watch: report the state once through the ready list.
            g.mark_ready(*this);
            return Status::success();
        }
        auto ep = g.epoll_fd();
        if (!ep) return Status(Errc::io_error, "epoll_create1 failed");
        epoll_event ev{};
        ev.events = wanted_events();
        ev.data.ptr = static_cast<SocketBase*>(this);
        if (::epoll_ctl(*ep, EPOLL_CTL_ADD, fd_, &ev) != 0)
            return Status(Errc::io_error, "epoll_ctl add failed");
        in_epoll_ = true;
        return Status::success();
    }
    void group_detach(GroupImpl& g) noexcept override {
        if (!in_epoll_) return;
        auto ep = g.epoll_fd();
        if (ep && fd_ >= 0) (void)::epoll_ctl(*ep, EPOLL_CTL_DEL, fd_, nullptr);
        in_epoll_ = false;
    }

    void on_event(uint32_t events) noexcept {
        if (state_ != State::connecting) return;
        check_connect();
        if (state_ != State::connecting && in_epoll_ && group_ != nullptr) {
            auto ep = group_->epoll_fd();
            epoll_event ev{};
            ev.events = wanted_events();
            ev.data.ptr = static_cast<SocketBase*>(this);
            if (ep) (void)::epoll_ctl(*ep, EPOLL_CTL_MOD, fd_, &ev);
        }
        (void)events;
    }

private:
    enum class State : uint8_t { connecting, established, failed, closed };

    uint32_t wanted_events() const noexcept {
        return state_ == State::connecting ? (EPOLLIN | EPOLLOUT | EPOLLRDHUP)
                                           : (EPOLLIN | EPOLLRDHUP);
    }

    // A connect that finished, without blocking (a zero-timeout poll and SO_ERROR).
    void check_connect() noexcept {
        if (state_ != State::connecting || fd_ < 0) return;
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, 0) <= 0) return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) {
            fail_now(err);
            return;
        }
        state_ = State::established;
        local_ = local_endpoint(fd_);
    }

    Status usable() noexcept {
        switch (state_) {
            case State::connecting:
                check_connect();
                if (state_ == State::connecting) return Status(Errc::busy, "connecting");
                if (state_ == State::failed) return Status(Errc::io_error, errno_context(error_));
                return Status::success();
            case State::established:
                return Status::success();
            case State::failed:
                return Status(Errc::io_error, errno_context(error_));
            case State::closed:
                break;
        }
        return Status(Errc::io_error, "socket closed");
    }

    int fd_;
    Endpoint local_;
    Endpoint peer_;
    State state_;
    int error_ = 0;
    bool in_epoll_ = false;
};

class PosixListener final : public FdListener {
public:
    using FdListener::FdListener;
    const char* impl_name() const noexcept override { return "posix"; }

private:
    std::unique_ptr<Socket> make_socket(int fd, Endpoint local, Endpoint peer) override {
        return std::make_unique<PosixSocket>(fd, std::move(local), std::move(peer), false);
    }
};

Result<std::unique_ptr<Listener>> posix_listen(const Endpoint& local, const SocketOptions& so,
                                               const ImplOptions& io) {
    auto fd = open_listener(local, so, io);
    if (!fd) return fd.error();
    Endpoint bound = local_endpoint(*fd);
    STRATA_DEBUGLOG(log_sock, "posix: listening on {}", to_string(bound));
    return std::unique_ptr<Listener>(std::make_unique<PosixListener>(*fd, bound, so, io));
}

Result<std::unique_ptr<Socket>> posix_connect(const Endpoint& remote, const SocketOptions& so,
                                              const ImplOptions& io) {
    Endpoint peer;
    int immediate = 0;
    auto fd = open_connect(remote, so, io, peer, immediate);
    if (!fd) return fd.error();
    auto s = std::make_unique<PosixSocket>(*fd, local_endpoint(*fd), peer, true);
    if (immediate != 0) s->fail_now(immediate);
    return std::unique_ptr<Socket>(std::move(s));
}

}  // namespace

void posix_on_event(SocketBase& s, uint32_t events) noexcept {
    if (s.kind() == Kind::posix) static_cast<PosixSocket&>(s).on_event(events);
}

const ImplOps kPosixImpl{"posix", Kind::posix, &posix_listen, &posix_connect};

}  // namespace strata::sock
