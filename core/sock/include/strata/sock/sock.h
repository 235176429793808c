// Sockets: non-blocking byte streams (TCP, or the simulator's network) polled from a Thread.
//
// Threads. A Socket, a Listener and a SocketGroup belong to the Thread that created them and are
// used there alone; nothing here blocks, and on the data path (readv, writev, SocketGroup::poll)
// nothing takes a lock or allocates.
//
// Implementations, chosen per socket (SocketOptions::impl) or by the Host's default
// (sock_set_default_impl; "sim" under the simulator, else "posix"):
//   posix  non-blocking TCP, readiness from epoll
//   uring  liburing, one ring per SocketGroup: receives posted ahead into per-socket buffers
//          and submitted once per poll, completions reaped without a system call; sends go
//          straight to the kernel (sendmsg), as posix
//   sim    the simulator's in-process network (sim.h): bytes delivered as a stream, split into
//          segments at seeded boundaries, with latency, bandwidth and injectable faults. Same
//          seed, same bytes in the same order.
//
// Errors. readv/writev/accept return Errc::busy when they would block (nothing to read, no room
// to write, no connection pending): retry on a later poll. readv returns Errc::shutdown once the
// peer closed its side and every byte was read (end of stream). A reset, a refused or timed-out
// connect and every other failure is Errc::io_error with a context naming it ("connection
// reset", "connection refused"); the socket is then dead and only close() is left.
//
// Connecting is asynchronous: connect() returns at once with a socket that is connecting;
// readv/writev return Errc::busy until it is established, and the group reports it as an event
// when it is established or failed.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>

namespace strata::sock {

// An address and port: "127.0.0.1", "::1", a host name, or a simulated host's address.
struct Endpoint {
    std::string address;
    uint16_t port = 0;
    bool operator==(const Endpoint&) const = default;
};
std::string to_string(const Endpoint& e);  // "127.0.0.1:4420", "[::1]:4420"

struct SocketOptions {
    std::string impl;      // "posix", "uring", "sim"; empty: the current Host's default
    bool no_delay = true;  // TCP_NODELAY
    int priority = 0;      // SO_PRIORITY (posix, uring)
};

class Socket {
public:
    virtual ~Socket() = default;  // closes
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    // Bytes read into iov (> 0), or Errc::busy / shutdown / io_error (see the header comment).
    virtual Result<size_t> readv(const iovec* iov, int iovcnt) noexcept = 0;
    // Bytes accepted for sending (> 0, possibly fewer than offered), or Errc::busy / io_error.
    // The caller keeps what was not accepted and offers it again on a later poll.
    virtual Result<size_t> writev(const iovec* iov, int iovcnt) noexcept = 0;
    Result<size_t> read(void* buf, size_t len) noexcept {
        iovec v{buf, len};
        return readv(&v, 1);
    }
    Result<size_t> write(const void* buf, size_t len) noexcept {
        iovec v{const_cast<void*>(buf), len};
        return writev(&v, 1);
    }
    // Closes now (idempotent): bytes already accepted by writev are still sent where the
    // implementation can (posix, uring: the kernel's send buffer; sim: the link), then FIN.
    virtual void close() noexcept = 0;
    // Abortive close: the peer sees a reset.
    virtual void abort() noexcept = 0;

    virtual bool connected() const noexcept = 0;  // established and not failed or closed
    virtual const Endpoint& local() const noexcept = 0;
    virtual const Endpoint& peer() const noexcept = 0;
    virtual const char* impl_name() const noexcept = 0;

protected:
    Socket() = default;
};

class Listener {
public:
    virtual ~Listener() = default;  // stops listening
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // A pending connection, or Errc::busy when there is none.
    virtual Result<std::unique_ptr<Socket>> accept() noexcept = 0;
    virtual const Endpoint& local() const noexcept = 0;  // the bound port when 0 was asked
    virtual const char* impl_name() const noexcept = 0;

protected:
    Listener() = default;
};

// Control path, on the Thread that will own the result; the implementation and its options
// come from the current Host. Errc::invalid_argument for a bad address, already_exists for a
// port in use, not_supported for an unknown or unavailable implementation.
Result<std::unique_ptr<Listener>> listen(const Endpoint& local, const SocketOptions& options = {});
Result<std::unique_ptr<Socket>> connect(const Endpoint& remote, const SocketOptions& options = {});

// Called by SocketGroup::poll for a socket with something to do: bytes to read, end of stream,
// an error, or a connect that finished. The callback may read, write, remove or close the
// socket (and others).
using SocketEventFn = void (*)(void* ctx, Socket& socket);

// The sockets one Thread polls, of any implementation. The owner calls poll() from its own
// poller (a target's poll group, an initiator's qpair poller) and retries its queued writes
// there too; a poller that moved no bytes reports idle, so the simulator can advance time.
class SocketGroup {
public:
    static std::unique_ptr<SocketGroup> create();  // on the owner Thread
    virtual ~SocketGroup() = default;              // every socket must have been removed
    SocketGroup(const SocketGroup&) = delete;
    SocketGroup& operator=(const SocketGroup&) = delete;

    virtual Status add(Socket& socket, SocketEventFn fn, void* ctx) = 0;
    virtual void remove(Socket& socket) noexcept = 0;
    // Runs the callbacks of up to max_events sockets that have events; returns how many ran.
    virtual uint32_t poll(uint32_t max_events = 32) noexcept = 0;

protected:
    SocketGroup() = default;
};

// SPDK's per-implementation options (sock_impl_get_options / sock_impl_set_options), kept by
// the Host. Fields an implementation does not use are accepted and saved.
struct ImplOptions {
    uint32_t recv_buf_size = 2 * 1024 * 1024;
    uint32_t send_buf_size = 2 * 1024 * 1024;
    bool enable_recv_pipe = true;
    bool enable_quickack = false;
    uint32_t enable_placement_id = 0;
    bool enable_zerocopy_send_server = false;
    bool enable_zerocopy_send_client = false;
    uint32_t zerocopy_threshold = 0;
    uint32_t tls_version = 0;
    bool enable_ktls = false;
    // Strata extension (no SPDK name): uring receives into registered buffers (READ_FIXED).
    bool enable_registered_recv_buffers = false;
};

// The implementations this build has ("posix", "sim", and "uring" when liburing is there).
std::vector<std::string> impl_names();
Result<ImplOptions> get_impl_options(std::string_view impl);
Status set_impl_options(std::string_view impl, const ImplOptions& options);
Status set_default_impl(std::string_view impl);
std::string default_impl();

}  // namespace strata::sock
