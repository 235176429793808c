// uring: TCP sockets whose I/O goes through one io_uring per SocketGroup (liburing).
//
// A socket in a group has a receive ring and a send ring of its own. Each poll the group posts,
// for every member, one receive into the free part of its receive ring (posted ahead: bytes land
// before anyone asks) and one send of what writev queued, submits them all with one
// io_uring_submit, and reaps completions without a system call. readv copies out of the receive
// ring; writev copies into the send ring. A socket outside any group uses plain syscalls.
//
// Buffers the kernel may still write belong to a state object (UState) that the ring keeps
// until its last operation completed: a socket closed or destroyed with operations in flight
// leaves its state to the group, which cancels them, finishes sending what close() should still
// send, then closes the descriptor.
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "internal.h"
#include "posix_util.h"

namespace strata::sock {

namespace {

constexpr uint64_t kTagRecv = 1, kTagSend = 2, kTagPoll = 3;
constexpr size_t kMinRing = 64 * 1024, kMaxRing = 1024 * 1024;

size_t ring_size(uint32_t asked) {
    return std::clamp<size_t>(asked, kMinRing, kMaxRing);
}

}  // namespace

struct alignas(8) UState {
    int fd = -1;
    SocketBase* sock = nullptr;  // nullptr once the socket let go (closed or destroyed)
    UringGroup* ug = nullptr;    // the ring that has (or had) operations for it
    bool member = false;         // in ug's group: the group posts for it
    std::unique_ptr<uint8_t[]> rbuf;
    size_t rcap = 0;
    uint64_t rd = 0, wr = 0;
    std::unique_ptr<uint8_t[]> sbuf;
    size_t scap = 0;
    uint64_t sent = 0, queued = 0;
    bool recv_posted = false, send_posted = false, poll_posted = false, cancel_posted = false;
    uint32_t inflight = 0;
    bool connecting = false, eof = false, closing = false, aborting = false;
    bool end_read = false;  // a read has returned the end of stream or the error
    int err = 0;

    ~UState() {
        if (fd >= 0) ::close(fd);
    }
};

struct UringGroup {
    io_uring ring{};
    std::vector<UState*> states;
    uint32_t inflight = 0;  // every SQE submitted and not completed (cancels included)
};

std::string uring_unavailable_reason() {
    io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) return std::string("io_uring_queue_init: ") + std::strerror(-rc);
    io_uring_queue_exit(&ring);
    return {};
}

Result<UringGroup*> uring_group_create() {
    auto* g = new UringGroup;
    int rc = io_uring_queue_init(256, &g->ring, 0);
    if (rc < 0) {
        delete g;
        return Error(Errc::not_supported,
                     std::string("io_uring_queue_init: ") + std::strerror(-rc));
    }
    return g;
}

namespace {

void check_connect(UState& st) noexcept {
    if (!st.connecting || st.fd < 0) return;
    pollfd p{st.fd, POLLOUT, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(st.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    st.connecting = false;
    st.err = err;
}

void handle_cqe(UringGroup& ug, GroupImpl& group, io_uring_cqe* cqe) noexcept {
    --ug.inflight;
    const uint64_t ud = cqe->user_data;
    if (ud == 0) return;  // a cancel's own completion
    auto* st = reinterpret_cast<UState*>(ud & ~uint64_t{7});
    const uint64_t tag = ud & 7;
    const int res = cqe->res;
    --st->inflight;
    bool news = false;
    if (tag == kTagRecv) {
        st->recv_posted = false;
        if (res > 0) {
            st->wr += static_cast<uint64_t>(res);
            news = true;
        } else if (res == 0) {
            st->eof = true;
            news = true;
        } else if (res != -ECANCELED && res != -EAGAIN && res != -EINTR) {
            st->err = -res;
            news = true;
        }
    } else if (tag == kTagSend) {
        st->send_posted = false;
        if (res > 0)
            st->sent += static_cast<uint64_t>(res);
        else if (res != -ECANCELED && res != -EAGAIN && res != -EINTR && res != 0) {
            st->err = -res;
            news = true;
        }
    } else if (tag == kTagPoll) {
        st->poll_posted = false;
        if (st->connecting && res != -ECANCELED) {
            check_connect(*st);
            news = !st->connecting;
        }
    }
    if (news && st->sock != nullptr && st->member) group.mark_ready(*st->sock);
}

bool post(UringGroup& ug, UState& st, uint64_t tag) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ug.ring);
    if (sqe == nullptr) return false;
    if (tag == kTagRecv) {
        const size_t free = st.rcap - (st.wr - st.rd);
        const size_t at = st.wr % st.rcap;
        io_uring_prep_recv(sqe, st.fd, st.rbuf.get() + at, std::min(free, st.rcap - at), 0);
        st.recv_posted = true;
    } else if (tag == kTagSend) {
        const size_t at = st.sent % st.scap;
        const size_t len = std::min<uint64_t>(st.queued - st.sent, st.scap - at);
        io_uring_prep_send(sqe, st.fd, st.sbuf.get() + at, len, MSG_NOSIGNAL);
        st.send_posted = true;
    } else {
        io_uring_prep_poll_add(sqe, st.fd, POLLOUT);
        st.poll_posted = true;
    }
    io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(&st) | tag);
    ++st.inflight;
    ++ug.inflight;
    return true;
}

bool post_cancel(UringGroup& ug, UState& st, uint64_t tag) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ug.ring);
    if (sqe == nullptr) return false;
    io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(&st) | tag, 0);
    io_uring_sqe_set_data64(sqe, 0);
    ++ug.inflight;
    return true;
}

// A state whose socket let go is finished when nothing is in flight and nothing is left to send.
bool finished(const UState& st) noexcept {
    return st.sock == nullptr && st.inflight == 0 &&
           (st.aborting || st.err != 0 || st.queued == st.sent);
}

}  // namespace

uint32_t uring_group_poll(UringGroup& ug, GroupImpl& group, uint32_t) noexcept {
    bool posted = false;
    for (UState* st : ug.states) {
        if (st->fd < 0) continue;
        const bool live = st->member || st->sock == nullptr;
        if (!live || st->err != 0) continue;
        if (st->connecting) {
            if (!st->poll_posted && st->member) posted |= post(ug, *st, kTagPoll);
            continue;
        }
        if (st->member && !st->recv_posted && !st->eof && st->wr - st->rd < st->rcap)
            posted |= post(ug, *st, kTagRecv);
        if (!st->send_posted && !st->aborting && st->queued > st->sent)
            posted |= post(ug, *st, kTagSend);
        if (st->sock == nullptr && !st->cancel_posted && (st->aborting || st->queued == st->sent)) {
            if (st->recv_posted) posted |= post_cancel(ug, *st, kTagRecv);
            if (st->poll_posted) posted |= post_cancel(ug, *st, kTagPoll);
            st->cancel_posted = true;
        }
    }
    if (posted) (void)io_uring_submit(&ug.ring);
    uint32_t n = 0;
    if (ug.inflight > 0) {
        unsigned head;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ug.ring, head, cqe) {
            handle_cqe(ug, group, cqe);
            ++n;
        }
        io_uring_cq_advance(&ug.ring, n);
    }
    // States given up by their sockets and done: close (FIN, or RST after abort) and free.
    auto it = std::remove_if(ug.states.begin(), ug.states.end(), [](UState* st) {
        if (!finished(*st)) return false;
        delete st;
        return true;
    });
    ug.states.erase(it, ug.states.end());
    return n;
}

void uring_group_destroy(UringGroup* g) noexcept {
    if (g == nullptr) return;
    // Cancel everything still in flight and wait for it: the kernel must be done with every
    // buffer before the ring goes.
    for (UState* st : g->states) {
        if (st->recv_posted) (void)post_cancel(*g, *st, kTagRecv);
        if (st->send_posted) (void)post_cancel(*g, *st, kTagSend);
        if (st->poll_posted) (void)post_cancel(*g, *st, kTagPoll);
    }
    (void)io_uring_submit(&g->ring);
    while (g->inflight > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&g->ring, &cqe) != 0 || cqe == nullptr) break;
        --g->inflight;
        const uint64_t ud = cqe->user_data;
        if (ud != 0) {
            auto* st = reinterpret_cast<UState*>(ud & ~uint64_t{7});
            --st->inflight;
            const uint64_t tag = ud & 7;
            if (tag == kTagRecv) {
                st->recv_posted = false;
                if (cqe->res > 0) st->wr += static_cast<uint64_t>(cqe->res);
            } else if (tag == kTagSend) {
                st->send_posted = false;
                if (cqe->res > 0) st->sent += static_cast<uint64_t>(cqe->res);
            } else {
                st->poll_posted = false;
            }
        }
        io_uring_cqe_seen(&g->ring, cqe);
    }
    for (UState* st : g->states) {
        if (st->sock == nullptr) {
            delete st;  // given up: close now (bytes not yet sent are lost)
        } else {
            st->ug = nullptr;
            st->member = false;
        }
    }
    io_uring_queue_exit(&g->ring);
    delete g;
}

namespace {

class UringSocket final : public SocketBase {
public:
    UringSocket(int fd, Endpoint local, Endpoint peer, bool connecting, const ImplOptions& io)
        : SocketBase(Kind::uring), local_(std::move(local)), peer_(std::move(peer)) {
        st_ = new UState;
        st_->fd = fd;
        st_->sock = this;
        st_->connecting = connecting;
        st_->rcap = ring_size(io.recv_buf_size);
        st_->scap = ring_size(io.send_buf_size);
        st_->rbuf.reset(new uint8_t[st_->rcap]);
        st_->sbuf.reset(new uint8_t[st_->scap]);
    }
    ~UringSocket() override {
        if (group_ != nullptr) group_->remove(*this);
        close();
    }
    void fail_now(int e) noexcept {
        st_->connecting = false;
        st_->err = e;
    }

    Result<size_t> readv(const iovec* iov, int iovcnt) noexcept override {
        if (st_ == nullptr) return Status(Errc::io_error, "socket closed");
        UState& st = *st_;
        if (st.connecting) {
            if (!st.member) check_connect(st);
            if (st.connecting) return Status(Errc::busy, "connecting");
        }
        uint64_t avail = st.wr - st.rd;
        if (avail > 0) {
            size_t done = 0;
            for (int i = 0; i < iovcnt && avail > 0; ++i) {
                size_t n = std::min<uint64_t>(iov[i].iov_len, avail);
                auto* dst = static_cast<uint8_t*>(iov[i].iov_base);
                size_t left = n;
                while (left > 0) {
                    size_t at = st.rd % st.rcap;
                    size_t m = std::min(left, st.rcap - at);
                    std::memcpy(dst, st.rbuf.get() + at, m);
                    st.rd += m;
                    dst += m;
                    left -= m;
                }
                done += n;
                avail -= n;
            }
            return done;
        }
        if (st.err != 0) {
            st.end_read = true;
            return Status(Errc::io_error, errno_context(st.err));
        }
        if (st.eof) {
            st.end_read = true;
            return Status(Errc::shutdown, "end of stream");
        }
        if (st.member || st.recv_posted) return Status(Errc::busy, "nothing to read");
        ssize_t n = ::readv(st.fd, iov, iovcnt);
        if (n > 0) return static_cast<size_t>(n);
        if (n == 0) {
            st.eof = true;
            return Status(Errc::shutdown, "end of stream");
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return Status(Errc::busy, "would block");
        st.err = errno;
        return Status(Errc::io_error, errno_context(errno));
    }

    Result<size_t> writev(const iovec* iov, int iovcnt) noexcept override {
        if (st_ == nullptr) return Status(Errc::io_error, "socket closed");
        UState& st = *st_;
        if (st.connecting) {
            if (!st.member) check_connect(st);
            if (st.connecting) return Status(Errc::busy, "connecting");
        }
        if (st.err != 0) return Status(Errc::io_error, errno_context(st.err));
        if (!st.member && st.queued == st.sent) {
            msghdr msg{};
            msg.msg_iov = const_cast<iovec*>(iov);
            msg.msg_iovlen = static_cast<size_t>(iovcnt);
            ssize_t n = ::sendmsg(st.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) return static_cast<size_t>(n);
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return Status(Errc::busy, "would block");
            st.err = errno;
            return Status(Errc::io_error, errno_context(errno));
        }
        size_t space = st.scap - (st.queued - st.sent);
        if (space == 0) return Status(Errc::busy, "send ring full");
        size_t done = 0;
        for (int i = 0; i < iovcnt && space > 0; ++i) {
            const auto* src = static_cast<const uint8_t*>(iov[i].iov_base);
            size_t left = std::min(iov[i].iov_len, space);
            done += left;
            space -= left;
            while (left > 0) {
                size_t at = st.queued % st.scap;
                size_t m = std::min(left, st.scap - at);
                std::memcpy(st.sbuf.get() + at, src, m);
                st.queued += m;
                src += m;
                left -= m;
            }
        }
        return done;
    }

    void close() noexcept override { let_go(false); }
    void abort() noexcept override { let_go(true); }

    bool connected() const noexcept override {
        if (st_ == nullptr) return false;
        if (st_->connecting && !st_->member) check_connect(*st_);
        return !st_->connecting && st_->err == 0;
    }
    const Endpoint& local() const noexcept override { return local_; }
    const Endpoint& peer() const noexcept override { return peer_; }
    const char* impl_name() const noexcept override { return "uring"; }

    Status group_attach(GroupImpl& g) override {
        if (st_ == nullptr) {
            g.mark_ready(*this);
            return Status::success();
        }
        auto ug = g.uring_group();
        if (!ug) return Status(Errc::not_supported, "io_uring unavailable");
        if (st_->ug != nullptr && st_->ug != *ug)
            return Status(Errc::busy, "socket still has operations on another group's ring");
        if (st_->ug == nullptr) (*ug)->states.push_back(st_);
        st_->ug = *ug;
        st_->member = true;
        if (st_->wr > st_->rd || st_->eof || st_->err != 0) g.mark_ready(*this);
        return Status::success();
    }
    void group_detach(GroupImpl&) noexcept override {
        if (st_ == nullptr || st_->ug == nullptr) return;
        st_->member = false;
        if (st_->inflight == 0 && st_->queued == st_->sent) {
            auto& v = st_->ug->states;
            v.erase(std::remove(v.begin(), v.end(), st_), v.end());
            st_->ug = nullptr;
        }
        // Otherwise the ring keeps it (its receive completes into its buffer, queued bytes are
        // still sent); the socket reads what arrived from the buffer.
    }
    // Level semantics, as epoll's: bytes, or an end of stream or error not read yet.
    bool still_ready() const noexcept override {
        return st_ != nullptr &&
               (st_->wr > st_->rd || ((st_->eof || st_->err != 0) && !st_->end_read));
    }

private:
    void let_go(bool abortive) noexcept {
        if (st_ == nullptr) return;
        UState* st = st_;
        st_ = nullptr;
        if (abortive) {
            linger l{1, 0};
            (void)::setsockopt(st->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            st->aborting = true;
        }
        st->sock = nullptr;
        st->member = false;
        st->closing = true;
        if (st->ug == nullptr) {
            delete st;  // no ring: nothing in flight, nothing queued
            return;
        }
        // The group finishes it: sends what is queued (close), cancels the receive, closes.
        if (st->recv_posted || st->poll_posted) (void)::shutdown(st->fd, SHUT_RD);
    }

    UState* st_;
    Endpoint local_;
    Endpoint peer_;
};

class UringListener final : public Listener {
public:
    UringListener(int fd, Endpoint local, SocketOptions so, ImplOptions io)
        : fd_(fd), local_(std::move(local)), so_(std::move(so)), io_(io) {}
    ~UringListener() override { ::close(fd_); }

    Result<std::unique_ptr<Socket>> accept() noexcept override {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        int fd =
            ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return Status(Errc::busy, "no connection pending");
            return Status(Errc::io_error, errno_context(errno));
        }
        apply_options(fd, so_, io_);
        return std::unique_ptr<Socket>(
            std::make_unique<UringSocket>(fd, local_endpoint(fd), endpoint_of(ss), false, io_));
    }
    const Endpoint& local() const noexcept override { return local_; }
    const char* impl_name() const noexcept override { return "uring"; }

private:
    int fd_;
    Endpoint local_;
    SocketOptions so_;
    ImplOptions io_;
};

Result<std::unique_ptr<Listener>> uring_listen(const Endpoint& local, const SocketOptions& so,
                                               const ImplOptions& io) {
    auto fd = open_listener(local, so, io);
    if (!fd) return fd.error();
    return std::unique_ptr<Listener>(
        std::make_unique<UringListener>(*fd, local_endpoint(*fd), so, io));
}

Result<std::unique_ptr<Socket>> uring_connect(const Endpoint& remote, const SocketOptions& so,
                                              const ImplOptions& io) {
    Endpoint peer;
    int immediate = 0;
    auto fd = open_connect(remote, so, io, peer, immediate);
    if (!fd) return fd.error();
    auto s = std::make_unique<UringSocket>(*fd, local_endpoint(*fd), peer, true, io);
    if (immediate != 0) s->fail_now(immediate);
    return std::unique_ptr<Socket>(std::move(s));
}

}  // namespace

const ImplOps kUringImpl{"uring", Kind::uring, &uring_listen, &uring_connect};

}  // namespace strata::sock
