// uring: TCP sockets whose I/O goes through one io_uring per SocketGroup (liburing).
//
// A socket in a group has a receive ring of its own. Each poll the group posts, for every member,
// one receive into the free part of its receive ring (posted ahead: bytes land before anyone
// asks), submits them all with one io_uring_submit, and reaps completions without a system call;
// readv copies out of the receive ring. A poll with nothing to submit makes no system call unless
// the kernel flagged completions waiting on this thread (COOP_TASKRUN, see uring_group_create).
//
// writev hands the bytes straight to the kernel (sendmsg, MSG_DONTWAIT), as SPDK's uring sock
// does for its synchronous writev: the kernel copies them into its send buffer once. Staging them
// in a per-socket send ring for one batched IORING_OP_SEND per poll (this file before
// 2026-12-07) cost a user-space copy of every byte sent: memmove was 2.8-6.9% of the NVMe-oF
// target's samples at 4 KiB reads. Measured: level with posix at QD 32, but the staged build
// was still ahead at QD 128 (docs/performance.md, "Socket implementations"; open). Registered
// buffers would not remove that copy: the bytes are in the caller's buffers, which writev must
// let go of when it returns.
//
// Registered receive buffers (option enable_registered_recv_buffers, a Strata extension; off by
// default, see docs/design/sock.md "uring"): each group's ring has a sparse table of registered
// buffers; a socket that joins the group registers its receive ring in a slot of its own (one
// io_uring_register call when it joins, one when its state goes) and its receives are
// IORING_OP_READ_FIXED into that slot, so the kernel does not look up and pin the ring's pages on
// every receive. (IORING_OP_RECV with IORING_RECVSEND_FIXED_BUF is EINVAL for receives on Linux
// 6.18.) Registration can fail (RLIMIT_MEMLOCK without CAP_IPC_LOCK, an old kernel, a full table):
// the socket then uses plain receives and the group logs it once. A slot is released only when
// its state has nothing in flight, before the receive ring is freed.
//
// A socket outside any group uses plain syscalls. The receive ring belongs to a state object
// (UState) that the ring keeps until its last operation completed: a socket closed or destroyed
// with a receive in flight leaves its state to the group, which cancels it, then closes the
// descriptor.
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <strata/base/log.h>

#include "internal.h"
#include "posix_util.h"

namespace strata::sock {

STRATA_LOG_COMPONENT(sock);

namespace {

constexpr uint64_t kTagRecv = 1, kTagPoll = 3;
constexpr size_t kMinRing = 64 * 1024, kMaxRing = 1024 * 1024;
constexpr unsigned kFixedSlots = 1024;  // registered receive buffers per group ring

size_t ring_size(uint32_t asked) {
    return std::clamp<size_t>(asked, kMinRing, kMaxRing);
}

}  // namespace

struct alignas(8) UState {
    int fd = -1;
    SocketBase* sock = nullptr;  // nullptr once the socket let go (closed or destroyed)
    UringGroup* ug = nullptr;    // the ring that has (or had) operations for it
    bool member = false;         // in ug's group: the group posts for it
    bool want_fixed = false;     // enable_registered_recv_buffers when the socket was made
    int buf_index = -1;          // its receive ring's slot in ug's registered buffers, or -1
    std::unique_ptr<uint8_t[]> rbuf;
    size_t rcap = 0;
    uint64_t rd = 0, wr = 0;
    bool recv_posted = false, poll_posted = false, cancel_posted = false;
    uint32_t inflight = 0;
    bool connecting = false, eof = false;
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
    // Registered receive buffers: the sparse table is registered on first use.
    bool fixed_tried = false, fixed_table = false, fixed_failure_logged = false;
    std::vector<int> free_slots;
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
    // Completions that need the polling thread (a receive woken by arriving bytes) run as task
    // work on its next entry into the kernel, flagged in the SQ ring (IORING_SQ_TASKRUN), instead
    // of an inter-processor interrupt into a thread that busy-polls in user space
    // (COOP_TASKRUN + TASKRUN_FLAG, Linux 5.19). Older kernels: a plain ring.
    io_uring_params p{};
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int rc = io_uring_queue_init_params(256, &g->ring, &p);
    if (rc == -EINVAL) rc = io_uring_queue_init(256, &g->ring, 0);
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
    } else if (tag == kTagPoll) {
        st->poll_posted = false;
        if (st->connecting && res != -ECANCELED) {
            check_connect(*st);
            news = !st->connecting;
        }
    }
    if (news && st->sock != nullptr && st->member) group.mark_ready(*st->sock);
}

// Once per ring: the sockets that found no registered buffer use plain receives.
void log_fixed_failure(UringGroup& ug, const char* what, const char* why) noexcept {
    if (ug.fixed_failure_logged) return;
    ug.fixed_failure_logged = true;
    STRATA_WARNLOG(log_sock,
                   "uring: registered receive buffers unavailable ({}: {}): "
                   "sockets on this ring without one use plain receives",
                   what, why);
}

// Gives st's receive ring a slot in ug's registered buffers; on failure st keeps plain
// receives. One io_uring_register call (two the first time on a ring), when a socket joins.
void acquire_slot(UringGroup& ug, UState& st) noexcept {
    if (!st.want_fixed || st.buf_index >= 0) return;
    if (!ug.fixed_tried) {
        ug.fixed_tried = true;
        int rc = io_uring_register_buffers_sparse(&ug.ring, kFixedSlots);
        if (rc < 0) {
            log_fixed_failure(ug, "io_uring_register_buffers_sparse", std::strerror(-rc));
            return;
        }
        ug.fixed_table = true;
        ug.free_slots.reserve(kFixedSlots);
        for (int i = static_cast<int>(kFixedSlots) - 1; i >= 0; --i) ug.free_slots.push_back(i);
    }
    if (!ug.fixed_table) return;
    if (ug.free_slots.empty()) {
        log_fixed_failure(ug, "io_uring_register_buffers_update_tag", "all 1024 slots in use");
        return;
    }
    const int slot = ug.free_slots.back();
    iovec iov{st.rbuf.get(), st.rcap};
    int rc = io_uring_register_buffers_update_tag(&ug.ring, static_cast<unsigned>(slot), &iov,
                                                  nullptr, 1);
    if (rc < 0) {
        log_fixed_failure(ug, "io_uring_register_buffers_update_tag",
                          rc == -ENOMEM ? "ENOMEM: RLIMIT_MEMLOCK too small for the receive ring"
                                        : std::strerror(-rc));
        return;
    }
    ug.free_slots.pop_back();
    st.buf_index = slot;
}

// Empties st's slot. Only with nothing in flight for st, before its receive ring is freed.
void release_slot(UringGroup& ug, UState& st) noexcept {
    if (st.buf_index < 0) return;
    iovec iov{nullptr, 0};
    (void)io_uring_register_buffers_update_tag(&ug.ring, static_cast<unsigned>(st.buf_index), &iov,
                                               nullptr, 1);
    ug.free_slots.push_back(st.buf_index);
    st.buf_index = -1;
}

bool post(UringGroup& ug, UState& st, uint64_t tag) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ug.ring);
    if (sqe == nullptr) return false;
    if (tag == kTagRecv) {
        const size_t free = st.rcap - (st.wr - st.rd);
        const size_t at = st.wr % st.rcap;
        const size_t len = std::min(free, st.rcap - at);
        if (st.buf_index >= 0)  // a read at offset 0: sockets take no other
            io_uring_prep_read_fixed(sqe, st.fd, st.rbuf.get() + at, static_cast<unsigned>(len), 0,
                                     st.buf_index);
        else
            io_uring_prep_recv(sqe, st.fd, st.rbuf.get() + at, len, 0);
        st.recv_posted = true;
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

// A state whose socket let go is finished when nothing is in flight (the kernel has every byte
// writev accepted).
bool finished(const UState& st) noexcept {
    return st.sock == nullptr && st.inflight == 0;
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
        if (st->sock == nullptr && !st->cancel_posted) {
            if (st->recv_posted) posted |= post_cancel(ug, *st, kTagRecv);
            if (st->poll_posted) posted |= post_cancel(ug, *st, kTagPoll);
            st->cancel_posted = true;
        }
    }
    if (posted)
        (void)io_uring_submit(&ug.ring);
    else if (ug.inflight > 0 && (IO_URING_READ_ONCE(*ug.ring.sq.kflags) & IORING_SQ_TASKRUN))
        (void)io_uring_get_events(&ug.ring);  // completions waiting on this thread's task work
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
    auto it = std::remove_if(ug.states.begin(), ug.states.end(), [&ug](UState* st) {
        if (!finished(*st)) return false;
        release_slot(ug, *st);
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
            } else {
                st->poll_posted = false;
            }
        }
        io_uring_cqe_seen(&g->ring, cqe);
    }
    for (UState* st : g->states) {
        st->buf_index = -1;  // the table goes with the ring, after every operation completed
        if (st->sock == nullptr) {
            delete st;  // given up: close now
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
        st_->rbuf.reset(new uint8_t[st_->rcap]);
        st_->want_fixed = io.enable_registered_recv_buffers;
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
        // In a group or not: straight into the kernel's send buffer (see the top of the file).
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
        acquire_slot(**ug, *st_);
        if (st_->wr > st_->rd || st_->eof || st_->err != 0) g.mark_ready(*this);
        return Status::success();
    }
    void group_detach(GroupImpl&) noexcept override {
        if (st_ == nullptr || st_->ug == nullptr) return;
        st_->member = false;
        if (st_->inflight == 0) {
            auto& v = st_->ug->states;
            v.erase(std::remove(v.begin(), v.end(), st_), v.end());
            release_slot(*st_->ug, *st_);
            st_->ug = nullptr;
        }
        // Otherwise the ring keeps it (its receive completes into its buffer); the socket reads
        // what arrived from the buffer.
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
        }
        st->sock = nullptr;
        st->member = false;
        if (st->ug == nullptr) {
            delete st;  // no ring: nothing in flight
            return;
        }
        // The group finishes it: cancels the receive, then closes.
        if (st->recv_posted || st->poll_posted) (void)::shutdown(st->fd, SHUT_RD);
    }

    UState* st_;
    Endpoint local_;
    Endpoint peer_;
};

class UringListener final : public FdListener {
public:
    using FdListener::FdListener;
    const char* impl_name() const noexcept override { return "uring"; }

private:
    std::unique_ptr<Socket> make_socket(int fd, Endpoint local, Endpoint peer) override {
        return std::make_unique<UringSocket>(fd, std::move(local), std::move(peer), false,
                                             impl_options());
    }
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
