// Internal: address resolution and socket setup shared by posix and uring.
#pragma once

#include <sys/socket.h>

#include <memory>

#include <strata/sock/sock.h>

namespace strata::sock {

struct ResolvedAddress {
    sockaddr_storage storage{};
    socklen_t len = 0;
    int family = 0;
};

// Control path (getaddrinfo): Errc::invalid_argument when the address does not resolve.
Result<ResolvedAddress> resolve(const Endpoint& ep, bool passive);
Endpoint endpoint_of(const sockaddr_storage& ss);
Endpoint local_endpoint(int fd);
// TCP_NODELAY, SO_RCVBUF/SO_SNDBUF, SO_PRIORITY, TCP_QUICKACK as asked.
void apply_options(int fd, const SocketOptions& so, const ImplOptions& io);
// A bound, listening, non-blocking descriptor (SO_REUSEADDR).
Result<int> open_listener(const Endpoint& local, const SocketOptions& so, const ImplOptions& io);
// A non-blocking descriptor whose connect is under way; immediate_error: an errno the connect
// failed with at once (ECONNREFUSED on loopback), else 0.
Result<int> open_connect(const Endpoint& remote, const SocketOptions& so, const ImplOptions& io,
                         Endpoint& peer, int& immediate_error);
// A listening descriptor (open_listener), for posix and uring alike: accept() takes a pending
// connection (accept4: non-blocking, close-on-exec, the options applied) and hands the
// descriptor to the implementation's make_socket(). Closes the descriptor when destroyed.
class FdListener : public Listener {
public:
    FdListener(int fd, Endpoint local, SocketOptions so, ImplOptions io)
        : fd_(fd), local_(std::move(local)), so_(std::move(so)), io_(io) {}
    ~FdListener() override;

    Result<std::unique_ptr<Socket>> accept() noexcept final;
    const Endpoint& local() const noexcept final { return local_; }

protected:
    virtual std::unique_ptr<Socket> make_socket(int fd, Endpoint local, Endpoint peer) = 0;
    const ImplOptions& impl_options() const noexcept { return io_; }

private:
    int fd_;
    Endpoint local_;
    SocketOptions so_;
    ImplOptions io_;
};

// The context string for a socket errno ("connection reset", "connection refused", ...).
const char* errno_context(int e) noexcept;

}  // namespace strata::sock
