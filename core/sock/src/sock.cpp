// The socket API's dispatch: implementations by name, the per-Host options and default, and the
// SocketGroup that polls sockets of every implementation.
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <strata/base/assert.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/sock/sim.h>

#include "internal.h"

namespace strata::sock {

namespace {

const ImplOps* const kImpls[] = {
    &kPosixImpl,
#ifdef STRATA_SOCK_HAVE_URING
    &kUringImpl,
#endif
    &kSimImpl,
};

const ImplOps* find_impl(std::string_view name) {
    for (const ImplOps* i : kImpls)
        if (name == i->name) return i;
    return nullptr;
}

bool simulated_here() {
    runtime::Thread* t = runtime::current_thread();
    return t != nullptr && t->scheduler().simulated();
}

Result<const ImplOps*> choose(const SocketOptions& options) {
    std::string name = options.impl.empty() ? default_impl() : options.impl;
    const ImplOps* impl = find_impl(name);
    if (impl == nullptr)
        return Error(Errc::not_supported, "socket implementation '" + name + "' is not available" +
                                              " (have: posix, sim" +
#ifdef STRATA_SOCK_HAVE_URING
                                              ", uring" +
#endif
                                              ")");
#ifdef STRATA_SOCK_HAVE_URING
    if (impl->kind == Kind::uring) {
        std::string why = uring_unavailable_reason();
        if (!why.empty()) return Error(Errc::not_supported, "uring sockets: " + why);
    }
#endif
    return impl;
}

}  // namespace

std::string to_string(const Endpoint& e) {
    if (e.address.find(':') != std::string::npos)
        return "[" + e.address + "]:" + std::to_string(e.port);
    return e.address + ":" + std::to_string(e.port);
}

std::string strip_brackets(std::string_view a) {
    if (a.size() >= 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
    return std::string(a);
}

// ---- per-Host state ----

HostState::HostState(runtime::Host& h) : host(h) {
    for (const ImplOps* i : kImpls) options[i->name] = ImplOptions{};
}

HostState::~HostState() {
    if (network != nullptr && network != private_network.get()) network->host_gone(host);
    network = nullptr;
    if (private_network) {
        private_network->host_gone(host);
        private_network.reset();
    }
}

HostState& host_state() {
    return runtime::current_host().get<HostState>();
}
HostState& host_state(runtime::Host& host) {
    return host.get<HostState>();
}

std::vector<std::string> impl_names() {
    std::vector<std::string> out;
    for (const ImplOps* i : kImpls) out.emplace_back(i->name);
    return out;
}

Result<ImplOptions> get_impl_options(std::string_view impl) {
    HostState& hs = host_state();
    std::lock_guard lock(hs.mu);
    auto it = hs.options.find(impl);
    if (it == hs.options.end())
        return Error(Errc::not_found,
                     "socket implementation '" + std::string(impl) + "' not found");
    return it->second;
}

Status set_impl_options(std::string_view impl, const ImplOptions& options) {
    HostState& hs = host_state();
    std::lock_guard lock(hs.mu);
    auto it = hs.options.find(impl);
    if (it == hs.options.end()) return Status(Errc::not_found, "unknown socket implementation");
    it->second = options;
    hs.options_set[std::string(impl)] = true;
    return Status::success();
}

Status set_default_impl(std::string_view impl) {
    if (find_impl(impl) == nullptr) return Status(Errc::not_found, "unknown socket implementation");
    HostState& hs = host_state();
    std::lock_guard lock(hs.mu);
    hs.default_impl = std::string(impl);
    hs.default_set = true;
    return Status::success();
}

std::string default_impl() {
    HostState& hs = host_state();
    {
        std::lock_guard lock(hs.mu);
        if (!hs.default_impl.empty()) return hs.default_impl;
    }
    return simulated_here() ? "sim" : "posix";
}

Result<std::unique_ptr<Listener>> listen(const Endpoint& local, const SocketOptions& options) {
    auto impl = choose(options);
    if (!impl) return impl.error();
    auto o = get_impl_options((*impl)->name);
    if (!o) return o.error();
    return (*impl)->listen(local, options, *o);
}

Result<std::unique_ptr<Socket>> connect(const Endpoint& remote, const SocketOptions& options) {
    auto impl = choose(options);
    if (!impl) return impl.error();
    auto o = get_impl_options((*impl)->name);
    if (!o) return o.error();
    return (*impl)->connect(remote, options, *o);
}

// ---- SocketBase ----

SocketBase::~SocketBase() {
    if (group_ != nullptr) group_->remove(*this);
}

// ---- SocketGroup ----

std::unique_ptr<SocketGroup> SocketGroup::create() {
    return std::make_unique<GroupImpl>();
}

GroupImpl::GroupImpl() {
    ready_.reserve(64);
    batch_.reserve(64);
}

GroupImpl::~GroupImpl() {
    STRATA_ASSERT_MSG(members_[0] == 0 && members_[1] == 0 && members_[2] == 0,
                      "SocketGroup destroyed with sockets still in it");
    if (uring_ != nullptr) uring_group_destroy(uring_);
    if (epfd_ >= 0) ::close(epfd_);
}

Result<int> GroupImpl::epoll_fd() {
    if (epfd_ < 0) {
        epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) return Error(Errc::io_error, "epoll_create1 failed");
    }
    return epfd_;
}

Result<UringGroup*> GroupImpl::uring_group() {
    if (uring_ == nullptr) {
        auto g = uring_group_create();
        if (!g) return g.error();
        uring_ = *g;
    }
    return uring_;
}

Status GroupImpl::add(Socket& socket, SocketEventFn fn, void* ctx) {
    auto& s = static_cast<SocketBase&>(socket);
    if (s.group_ != nullptr) return Status(Errc::already_exists, "socket already in a group");
    if (fn == nullptr) return Status(Errc::invalid_argument, "no callback");
    s.fn_ = fn;
    s.ctx_ = ctx;
    s.group_ = this;
    Status st = s.group_attach(*this);
    if (!st.ok()) {
        s.group_ = nullptr;
        return st;
    }
    count(s.kind(), +1);
    if (ready_.capacity() < ready_.size() + 1 + static_cast<size_t>(members_[2])) {
        ready_.reserve(2 * (ready_.size() + 1 + members_[2]));
        batch_.reserve(ready_.capacity());
    }
    return Status::success();
}

void GroupImpl::remove(Socket& socket) noexcept {
    auto& s = static_cast<SocketBase&>(socket);
    if (s.group_ != this) return;
    s.group_detach(*this);
    count(s.kind(), -1);
    for (auto& p : ready_)
        if (p == &s) p = nullptr;
    for (auto& p : batch_)
        if (p == &s) p = nullptr;
    for (int i = events_next_; i < events_count_; ++i)
        if (events_[i].data.ptr == &s) events_[i].data.ptr = nullptr;
    s.ready_queued_ = false;
    s.group_ = nullptr;
    s.fn_ = nullptr;
    s.ctx_ = nullptr;
}

void GroupImpl::mark_ready(SocketBase& s) noexcept {
    if (s.ready_queued_ || s.group_ != this) return;
    s.ready_queued_ = true;
    ready_.push_back(&s);
}

uint32_t GroupImpl::poll(uint32_t max_events) noexcept {
    uint32_t n = 0;
    // The ring first: its completions queue sockets on the ready list (and sockets closed with
    // operations in flight finish there even when no member is left).
    if (uring_ != nullptr) (void)uring_group_poll(*uring_, *this, max_events);
    // Sockets the implementations queued (sim deliveries, uring completions, failures found
    // without the kernel), oldest first.
    if (!ready_.empty()) {
        size_t take = std::min<size_t>(ready_.size(), max_events);
        batch_.assign(ready_.begin(), ready_.begin() + static_cast<ptrdiff_t>(take));
        ready_.erase(ready_.begin(), ready_.begin() + static_cast<ptrdiff_t>(take));
        for (size_t i = 0; i < batch_.size(); ++i) {
            SocketBase* s = batch_[i];
            if (s == nullptr) continue;
            s->ready_queued_ = false;
            ++n;
            run(s);
            // Still in this group and still something to report: again next poll.
            if (batch_[i] != nullptr && s->group_ == this && s->still_ready()) mark_ready(*s);
        }
        batch_.clear();
    }
    if (members_[static_cast<int>(Kind::posix)] > 0 && epfd_ >= 0 && n < max_events) {
        const int want = static_cast<int>(max_events - n);
        if (events_.size() < static_cast<size_t>(want)) events_.resize(want);
        int got = ::epoll_wait(epfd_, events_.data(), want, 0);
        if (got > 0) {
            events_count_ = got;
            for (events_next_ = 0; events_next_ < events_count_;) {
                epoll_event& e = events_[events_next_++];
                auto* s = static_cast<SocketBase*>(e.data.ptr);
                if (s == nullptr) continue;
                ++n;
                // posix sockets see their own events first (a finished connect).
                posix_on_event(*s, e.events);
                if (s->group_ == this && s->fn_ != nullptr) run(s);
            }
            events_count_ = events_next_ = 0;
        }
    }
    return n;
}

}  // namespace strata::sock
