// Internal: what the implementations share (the socket base with its group membership, the
// group, the per-Host state and the implementation table).
#pragma once

#include <sys/epoll.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <strata/sock/sock.h>

namespace strata::runtime {
class Host;
}

namespace strata::sock {

class SimNetwork;
class GroupImpl;

enum class Kind : uint8_t { posix = 0, uring = 1, sim = 2 };

// Every Socket of this library. Group membership lives here so one SocketGroup takes sockets of
// any implementation.
class SocketBase : public Socket {
public:
    explicit SocketBase(Kind kind) noexcept : kind_(kind) {}
    ~SocketBase() override;

    Kind kind() const noexcept { return kind_; }

    // Joining and leaving a group (posix: the group's epoll set; uring: the group's ring; sim:
    // nothing, the network queues the socket on the group's ready list).
    virtual Status group_attach(GroupImpl&) { return Status::success(); }
    virtual void group_detach(GroupImpl&) noexcept {}
    // After its callback ran: whether the socket still has something to report (level
    // semantics, like epoll's). Only sockets the ready list carries are asked.
    virtual bool still_ready() const noexcept { return false; }

    GroupImpl* group_ = nullptr;
    SocketEventFn fn_ = nullptr;
    void* ctx_ = nullptr;
    bool ready_queued_ = false;  // on group_->ready_

private:
    Kind kind_;
};

struct UringGroup;  // uring.cpp: one ring per group

class GroupImpl final : public SocketGroup {
public:
    GroupImpl();
    ~GroupImpl() override;

    Status add(Socket& socket, SocketEventFn fn, void* ctx) override;
    void remove(Socket& socket) noexcept override;
    uint32_t poll(uint32_t max_events) noexcept override;

    // Queues `s` for a callback on the next poll (no-op when queued already).
    void mark_ready(SocketBase& s) noexcept;
    // The group's epoll descriptor, created on first use (posix sockets).
    Result<int> epoll_fd();
    // The group's ring (uring sockets), created on first use.
    UringGroup* uring() noexcept { return uring_; }
    Result<UringGroup*> uring_group();
    void count(Kind kind, int delta) noexcept { members_[static_cast<int>(kind)] += delta; }

private:
    static void run(SocketBase* s) noexcept { s->fn_(s->ctx_, *s); }

    int epfd_ = -1;
    std::vector<SocketBase*> ready_;
    std::vector<SocketBase*> batch_;  // the ready entries being run
    std::vector<epoll_event> events_;
    int events_count_ = 0;
    int events_next_ = 0;
    int members_[3] = {0, 0, 0};
    UringGroup* uring_ = nullptr;
};

// posix.cpp: an epoll event for a posix socket of a group, before its callback runs.
void posix_on_event(SocketBase& s, uint32_t events) noexcept;

// uring.cpp (stubs without liburing).
Result<UringGroup*> uring_group_create();
void uring_group_destroy(UringGroup* g) noexcept;
uint32_t uring_group_poll(UringGroup& g, GroupImpl& group, uint32_t max_events) noexcept;

// One implementation: what listen() and connect() dispatch to.
struct ImplOps {
    const char* name;
    Kind kind;
    Result<std::unique_ptr<Listener>> (*listen)(const Endpoint&, const SocketOptions&,
                                                const ImplOptions&);
    Result<std::unique_ptr<Socket>> (*connect)(const Endpoint&, const SocketOptions&,
                                               const ImplOptions&);
};

extern const ImplOps kPosixImpl;
extern const ImplOps kSimImpl;
#ifdef STRATA_SOCK_HAVE_URING
extern const ImplOps kUringImpl;
#endif

// "" when io_uring works for sockets here, else why.
std::string uring_unavailable_reason();

// Per Host: the default implementation, the options of each and the sim network attachment.
struct HostState {
    explicit HostState(runtime::Host& host);
    ~HostState();

    runtime::Host& host;
    std::mutex mu;             // control path: RPC Thread vs. the Threads that listen and connect
    std::string default_impl;  // empty: "sim" under the simulator, else "posix"
    std::map<std::string, ImplOptions, std::less<>> options;
    bool default_set = false;
    std::map<std::string, bool, std::less<>> options_set;  // changed by set_impl_options

    // The network this Host's sim sockets use and its address there (sim.cpp).
    SimNetwork* network = nullptr;
    std::string address;
    std::unique_ptr<SimNetwork> private_network;
};

HostState& host_state();
HostState& host_state(runtime::Host& host);

// Parses an address for the posix implementations: brackets stripped.
std::string strip_brackets(std::string_view address);

}  // namespace strata::sock
