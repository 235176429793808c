#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/rpc/app.h>

namespace strata::rpc {

STRATA_LOG_COMPONENT(rpc_server);

namespace {

// --- small posix socket helper (moves to core/sock later) ---

Result<sockaddr_un> make_addr(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
        return Error(Errc::invalid_argument,
                     fmt::format("rpc socket path '{}' is empty or longer than {} bytes", path,
                                 sizeof(addr.sun_path) - 1));
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

bool someone_listens(const sockaddr_un& addr) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
}

std::string errno_text(int e) { return fmt::format("{} (errno {})", std::strerror(e), e); }

// The name listen() binds before renaming to `path`: same directory (rename() stays in one
// file system), hidden, unique per final path and process.
std::string temp_path_for(const std::string& path) {
    const auto cut = path.rfind('/') + 1;  // 0 without a slash
    return fmt::format("{}.{}.{}.tmp", path.substr(0, cut), path.substr(cut), ::getpid());
}

}  // namespace

struct Server::Conn {
    int fd = -1;
    StreamFramer framer;
    std::string out;
    size_t out_off = 0;
    size_t pending = 0;   // requests dispatched, reply not yet queued
    bool closing = false; // close once `out` is flushed
    bool dead = false;
};

Server::~Server() { close(); }

Result<void> Server::listen(const std::string& path, uint32_t mode, size_t max_request_bytes) {
    auto addr = make_addr(path);
    if (!addr) return addr.error();
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return Error(Errc::already_exists,
                         fmt::format("rpc socket path '{}' exists and is not a socket", path));
        }
        if (someone_listens(*addr)) {
            return Error(Errc::already_exists,
                         fmt::format("rpc socket '{}' is in use by another process", path));
        }
        ::unlink(path.c_str());  // stale socket from a dead process
    }
    // Bind to a temporary name in the same directory, listen(), then rename() to the final
    // path: the path appears only once connects to it are accepted (bound but not listening,
    // a connect would be refused). A temporary name too long for sun_path: bind the final path
    // directly (the short window comes back only for such paths).
    const std::string tmp = temp_path_for(path);
    auto tmp_addr = make_addr(tmp);
    const bool via_tmp = static_cast<bool>(tmp_addr);
    const std::string& bound = via_tmp ? tmp : path;
    if (via_tmp) ::unlink(tmp.c_str());  // left by a process of ours that died here
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error(Errc::io_error, "socket(): " + errno_text(errno));
    // Create with the final mode: no window where the socket is more open than asked.
    mode_t old = ::umask(0777 & ~mode);
    const sockaddr_un& baddr = via_tmp ? *tmp_addr : *addr;
    int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&baddr), sizeof(baddr));
    int bind_errno = errno;
    ::umask(old);
    if (rc != 0) {
        ::close(fd);
        return Error(Errc::io_error,
                     fmt::format("cannot bind rpc socket '{}': {}", bound, errno_text(bind_errno)));
    }
    ::chmod(bound.c_str(), mode);
    if (::listen(fd, 128) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(bound.c_str());
        return Error(Errc::io_error, fmt::format("listen on '{}': {}", bound, errno_text(e)));
    }
    if (via_tmp && ::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        return Error(Errc::io_error,
                     fmt::format("rename rpc socket to '{}': {}", path, errno_text(e)));
    }
    listen_fd_ = fd;
    path_ = path;
    max_request_bytes_ = max_request_bytes;
    poller_ = app_.thread().register_poller(&Server::poll, this, "rpc_server", 1'000'000);
    return {};
}

void Server::stop_accepting() {
    // The path goes first: it never names a socket that refuses connects (and a process that
    // takes the path over once ours is closed keeps its socket file).
    if (listen_fd_ >= 0) {
        ::unlink(path_.c_str());
        ::close(listen_fd_);
        listen_fd_ = -1;
    }
}

size_t Server::pending_output() const noexcept {
    size_t n = 0;
    for (const auto& c : conns_) {
        if (!c->dead) n += c->out.size() - c->out_off;
    }
    return n;
}

void Server::close() {
    stop_accepting();
    for (auto& c : conns_) {
        if (c->fd >= 0) ::close(c->fd);
        c->fd = -1;
        c->dead = true;
    }
    conns_.clear();
    if (poller_ != nullptr && runtime::current_thread() == &app_.thread()) {
        app_.thread().unregister_poller(poller_);
    }
    poller_ = nullptr;
}

runtime::PollStatus Server::poll(void* ctx) {
    auto* self = static_cast<Server*>(ctx);
    bool busy = self->accept_some();
    // Copy: service() may drop a connection.
    auto conns = self->conns_;
    for (auto& c : conns) busy |= self->service(c);
    std::erase_if(self->conns_, [](const std::shared_ptr<Conn>& c) { return c->dead; });
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

bool Server::accept_some() {
    if (listen_fd_ < 0) return false;
    bool busy = false;
    for (int i = 0; i < 16; i++) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                STRATA_WARNLOG(log_rpc_server, "accept on '{}': {}", path_, errno_text(errno));
            }
            break;
        }
        auto c = std::make_shared<Conn>();
        c->fd = fd;
        conns_.push_back(std::move(c));
        busy = true;
    }
    return busy;
}

void Server::queue_reply(const std::shared_ptr<Conn>& c, const std::string& text) {
    if (c->dead) return;
    c->out.append(text);
    c->out.push_back('\n');
}

void Server::handle_value(const std::shared_ptr<Conn>& c, std::string text) {
    Json req = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) {
        queue_reply(c, Registry::make_error(nullptr, error_code::parse_error, "Parse error")
                           .dump());
        return;
    }
    c->pending++;
    ++*in_flight_;
    app_.call_async(req, [in_flight = in_flight_, c](Json resp) {
        c->pending--;
        --*in_flight;
        if (!resp.is_discarded()) {
            // A client that went away mid-request: the reply is dropped here.
            if (!c->dead) {
                c->out.append(resp.dump(-1, ' ', false, Json::error_handler_t::replace));
                c->out.push_back('\n');
            }
        }
    });
}

bool Server::service(const std::shared_ptr<Conn>& c) {
    if (c->dead) return false;
    bool busy = false;
    // Read what is there; a client that does not read its replies is not read either
    // (back-pressure instead of an unbounded output queue).
    constexpr size_t kMaxQueuedReplyBytes = 64u << 20;
    if (!c->closing && c->out.size() - c->out_off < kMaxQueuedReplyBytes) {
        char buf[65536];
        for (int i = 0; i < 64; i++) {
            ssize_t n = ::recv(c->fd, buf, sizeof(buf), 0);
            if (n > 0) {
                busy = true;
                c->framer.feed(std::string_view(buf, static_cast<size_t>(n)));
                if (c->framer.pending_bytes() > max_request_bytes_) break;
                continue;
            }
            if (n == 0) {
                c->closing = true;  // peer closed its side: flush what we owe, then close
                break;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            c->dead = true;
            break;
        }
        std::string value;
        for (;;) {
            auto kind = c->framer.next(value);
            if (kind == StreamFramer::Kind::value) {
                handle_value(c, std::move(value));
                busy = true;
                continue;
            }
            if (kind == StreamFramer::Kind::garbage) {
                queue_reply(c, Registry::make_error(nullptr, error_code::parse_error,
                                                    "Parse error: a request must be a JSON "
                                                    "object or array")
                                   .dump(-1, ' ', false, Json::error_handler_t::replace));
                c->closing = true;
                break;
            }
            if (c->framer.pending_bytes() > max_request_bytes_) {
                // SPDK reports an over-long request as a parse error (-32700).
                queue_reply(c, Registry::make_error(
                                   nullptr, error_code::parse_error,
                                   fmt::format("Parse error: request larger than the "
                                               "{} byte limit",
                                               max_request_bytes_))
                                   .dump());
                c->framer.clear();
                c->closing = true;
            }
            break;
        }
    }
    // Write what is queued.
    while (!c->dead && c->out_off < c->out.size()) {
        ssize_t n = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += static_cast<size_t>(n);
            busy = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        c->dead = true;  // EPIPE / ECONNRESET: the client is gone
    }
    if (c->out_off == c->out.size()) {
        c->out.clear();
        c->out_off = 0;
    } else if (c->out_off > (1u << 20)) {
        c->out.erase(0, c->out_off);
        c->out_off = 0;
    }
    if (c->closing && c->pending == 0 && c->out.empty()) c->dead = true;
    if (c->dead && c->fd >= 0) {
        ::close(c->fd);
        c->fd = -1;
    }
    return busy;
}

}  // namespace strata::rpc
