// Internal: address resolution and socket setup shared by posix and uring.
#pragma once

#include <sys/socket.h>

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
// The context string for a socket errno ("connection reset", "connection refused", ...).
const char* errno_context(int e) noexcept;

}  // namespace strata::sock
