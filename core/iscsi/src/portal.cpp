// Portals and poll groups: a listener per portal (core/sock, the Host's default
// implementation: sim under the simulator, posix otherwise) polled on the app Thread; accepted
// sockets go round-robin to one poll group per reactor, where the login runs; a poll group
// exists on every Thread that runs connections (the reactors' and the devices' Threads).
#include <algorithm>
#include <atomic>
#include <cstdlib>

#include <fmt/format.h>

#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "conn.h"
#include "net.h"

namespace strata::iscsi::internal {

namespace {
constexpr uint64_t kTimerPeriodNs = 100'000'000;  // NOP-In and login timeouts
constexpr uint64_t kWaitPeriodNs = 1'000'000;
}  // namespace

// ---- PollGroup ---------------------------------------------------------------------------------

void PollGroup::init() {
    if (inited_) return;
    inited_ = true;
    sockets_ = sock::SocketGroup::create();
    faults_ = &net_.host().get<DigestFaults>();
    // Data digests through accel: without a running accel framework they stay inline.
    if (net_.dir().options().data_digest_accel_threshold != 0) accel_ = accel::get_channel();
    poller_ = thread_->register_poller(&PollGroup::poll_fn, this, "iscsi_poll_group");
    timer_ = thread_->register_poller(&PollGroup::timer_fn, this, "iscsi_conn_timers",
                                      kTimerPeriodNs);
}

PollGroup::~PollGroup() {
    runtime::HostScope scope(net_.host());
    while (Conn* c = conns_.pop_front()) {
        c->close("network layer destroyed");
        delete c;
    }
    sockets_.reset();
    for (void* p : all_) ::operator delete(p, std::align_val_t{4096});
    for (void* p : small_slabs_) ::operator delete(p, std::align_val_t{4096});
}

void PollGroup::stop() {
    if (poller_) thread_->unregister_poller(poller_);
    if (timer_) thread_->unregister_poller(timer_);
    poller_ = timer_ = nullptr;
    // No op is in flight: a connection holding a command for one is not freed before it ends.
    if (accel_) accel::put_channel(accel_);
    accel_ = nullptr;
}

void* PollGroup::get_chunk() noexcept {
    if (free_.empty()) {
        if (all_.size() >= kPoolMaxChunks) return nullptr;
        // The pool grows to its high-water mark once; chunks are never given back.
        void* p = ::operator new(kChunk, std::align_val_t{4096}, std::nothrow);
        if (!p) return nullptr;
        all_.push_back(p);
        free_.reserve(all_.capacity());
        return p;
    }
    void* p = free_.back();
    free_.pop_back();
    return p;
}

void* PollGroup::get_small() noexcept {
    if (free_small_.empty()) {
        // Grows by a slab of 64 adjacent buffers, kept: the steady state allocates nothing.
        constexpr size_t kPerSlab = 64;
        if (small_slabs_.size() * kPerSlab >= kPoolMaxSmall) return nullptr;
        auto* slab = static_cast<uint8_t*>(
            ::operator new(kPerSlab * kSmallChunk, std::align_val_t{4096}, std::nothrow));
        if (!slab) return nullptr;
        small_slabs_.push_back(slab);
        free_small_.reserve(small_slabs_.size() * kPerSlab);
        for (size_t i = kPerSlab; i > 0; --i) free_small_.push_back(slab + (i - 1) * kSmallChunk);
    }
    void* p = free_small_.back();
    free_small_.pop_back();
    return p;
}

void PollGroup::adopt(Conn* c) {
    init();
    conns_.push_back(*c);
    if (!c->attach_group(*this).ok()) c->close("socket group refused it");
    c->process_rx();  // bytes that came with the login's last PDU
}

void PollGroup::release_conn(Conn& c) { conns_.remove(c); }

runtime::PollStatus PollGroup::poll_fn(void* ctx) noexcept {
    return static_cast<PollGroup*>(ctx)->poll();
}

runtime::PollStatus PollGroup::timer_fn(void* ctx) noexcept {
    auto* g = static_cast<PollGroup*>(ctx);
    const uint64_t now = runtime::now_ns();
    bool busy = false;
    for (auto& c : g->conns_) busy |= c.check_timers(now);
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

runtime::PollStatus PollGroup::poll() noexcept {
    bool busy = sockets_->poll() > 0;
    for (auto it = conns_.begin(); it != conns_.end();) {
        Conn& c = *it;
        ++it;
        // Busy only when bytes moved (the simulator advances time when every poller idles).
        if (c.tx_pending() && c.flush()) busy = true;
        if (c.reapable()) {
            conns_.remove(c);
            ++net_.stats().freed;
            delete &c;
            busy = true;
        }
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

// ---- NetworkImpl -------------------------------------------------------------------------------

NetworkImpl::NetworkImpl(Directory& dir) : dir_(dir) {
    app_ = runtime::current_thread();
    host_ = &runtime::current_host();
}

NetworkImpl::~NetworkImpl() {
    runtime::HostScope scope(*host_);
    for (auto& l : listeners_)
        if (l->poller && app_) app_->unregister_poller(l->poller);
    listeners_.clear();
    groups_.clear();
}

PollGroup& NetworkImpl::group_for(runtime::Thread& t) {
    std::lock_guard lk(mu_);
    auto& g = groups_[&t];
    if (!g) g = std::make_unique<PollGroup>(*this, t);
    return *g;
}

runtime::PollStatus NetworkImpl::accept_fn(void* ctx) noexcept {
    auto* l = static_cast<Listener*>(ctx);
    bool busy = false;
    for (int i = 0; i < 16; ++i) {
        auto r = l->l->accept();
        if (!r) break;
        busy = true;
        l->net->accepted(std::move(*r), l->tag);
    }
    return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

void NetworkImpl::accepted(std::unique_ptr<sock::Socket> s, int32_t tag) {
    ++stats_.accepted;
    if (reactors_.empty()) {
        auto& sched = app_->scheduler();
        const uint32_t n = std::max(1u, sched.reactor_count());
        for (uint32_t i = 0; i < n; ++i) {
            runtime::Thread* t = sched.create_thread(fmt::format("iscsi_pg{}", i), int(i), host_);
            if (t) reactors_.push_back(t);
        }
        if (reactors_.empty()) return;
    }
    runtime::Thread* t = reactors_[next_++ % reactors_.size()];
    PollGroup* g = &group_for(*t);
    sock::Socket* raw = s.release();
    Status st = t->post([g, raw, tag] {
        auto* c = new Conn(*g, std::unique_ptr<sock::Socket>(raw), tag);
        g->adopt(c);
    });
    if (!st.ok()) delete raw;
}

Status NetworkImpl::start_portals(const PortalGroupConfig& pg) {
    std::vector<std::unique_ptr<Listener>> added;
    for (const Portal& p : pg.portals) {
        std::string host = p.host;
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        char* end = nullptr;
        const unsigned long port = std::strtoul(p.port.c_str(), &end, 10);
        if (p.port.empty() || *end != '\0' || port > 65535)
            return {Errc::invalid_argument, "portal port is not a number"};
        auto l = sock::listen(sock::Endpoint{host, uint16_t(port)});
        if (!l) return l.error().code();
        auto e = std::make_unique<Listener>();
        e->tag = pg.tag;
        e->l = std::move(*l);
        e->net = this;
        added.push_back(std::move(e));
    }
    for (auto& e : added) {
        e->poller = app_->register_poller(&NetworkImpl::accept_fn, e.get(), "iscsi_accept",
                                          1'000'000);
        STRATA_NOTICELOG(log_iscsi, "iSCSI portal group {} listening on {}", pg.tag,
                         sock::to_string(e->l->local()));
        listeners_.push_back(std::move(e));
    }
    return {};
}

void NetworkImpl::stop_portals(int32_t tag) {
    for (auto it = listeners_.begin(); it != listeners_.end();) {
        if ((*it)->tag == tag) {
            if ((*it)->poller) app_->unregister_poller((*it)->poller);
            it = listeners_.erase(it);
        } else {
            ++it;
        }
    }
    std::lock_guard lk(mu_);
    for (auto& [c, r] : conns_)
        if (r.pg_tag == tag) close_on_thread(c, *r.thread, "portal group deleted");
}

// ---- the connection registry ---------------------------------------------------------------

int32_t NetworkImpl::register_conn(Conn& c, runtime::Thread& t, int32_t pg_tag, std::string peer,
                                   std::string local) {
    std::lock_guard lk(mu_);
    ConnRecord r{&c, &t, {}, pg_tag};
    r.info.id = next_conn_id_++;
    r.info.lcore_id = int32_t(t.reactor());
    r.info.initiator_addr = std::move(peer);
    r.info.target_addr = std::move(local);
    const int32_t id = r.info.id;
    conns_[&c] = std::move(r);
    return id;
}

void NetworkImpl::update_conn(Conn& c, runtime::Thread& t, uint16_t cid, uint16_t tsih,
                              const std::string& target) {
    std::lock_guard lk(mu_);
    auto it = conns_.find(&c);
    if (it == conns_.end()) return;
    it->second.thread = &t;
    it->second.info.cid = cid;
    it->second.info.tsih = tsih;
    it->second.info.lcore_id = int32_t(t.reactor());
    it->second.info.target_node_name = target;
}

void NetworkImpl::unregister_conn(Conn& c) {
    std::lock_guard lk(mu_);
    conns_.erase(&c);
}

// Closes `c` on the Thread that owns it (it may have moved or gone meanwhile: the registry
// says where it is, and whether it is still the same connection).
void NetworkImpl::close_on_thread(Conn* c, runtime::Thread& t, const char* why) {
    int32_t id = -1;
    if (auto it = conns_.find(c); it != conns_.end()) id = it->second.info.id;
    (void)t.post([this, c, id, why] {
        runtime::Thread* where = nullptr;
        {
            std::lock_guard lk(mu_);
            auto it = conns_.find(c);
            if (it == conns_.end() || it->second.info.id != id) return;
            where = it->second.thread;
        }
        if (where != runtime::current_thread()) {
            std::lock_guard lk(mu_);
            close_on_thread(c, *where, why);
            return;
        }
        c->close(why);
    });
}

bool NetworkImpl::any_conn(const std::function<bool(const ConnRecord&)>& pred) {
    std::lock_guard lk(mu_);
    for (auto& [c, r] : conns_)
        if (pred(r)) return true;
    return false;
}

// Runs done() on the app Thread once pred() holds (checked every millisecond).
void NetworkImpl::wait_then(std::function<bool()> pred, std::function<void()> done) {
    struct Wait {
        std::function<bool()> pred;
        std::function<void()> done;
        runtime::Poller* poller = nullptr;
        runtime::Thread* thread = nullptr;
    };
    auto* w = new Wait{std::move(pred), std::move(done)};
    w->thread = app_;
    w->poller = app_->register_poller(
        [](void* ctx) noexcept {
            auto* w = static_cast<Wait*>(ctx);
            if (!w->pred()) return runtime::PollStatus::idle;
            w->thread->unregister_poller(w->poller);
            auto done = std::move(w->done);
            delete w;
            if (done) done();
            return runtime::PollStatus::busy;
        },
        w, "iscsi_wait", kWaitPeriodNs);
}

void NetworkImpl::end_target_sessions(const std::string& target_name, std::function<void()> done) {
    {
        std::lock_guard lk(mu_);
        for (auto it = sessions_.begin(); it != sessions_.end();) {
            Session& s = *it->second;
            if (s.target != target_name) {
                ++it;
                continue;
            }
            s.ended = true;
            for (Conn* c : s.conns)
                if (auto r = conns_.find(c); r != conns_.end())
                    close_on_thread(c, *r->second.thread, "target node deleted");
            it = sessions_.erase(it);
        }
    }
    wait_then(
        [this, target_name] {
            return !any_conn([&](const ConnRecord& r) {
                return r.info.target_node_name == target_name;
            });
        },
        std::move(done));
}

void NetworkImpl::get_connections(std::function<void(std::vector<ConnectionInfo>)> done) {
    std::vector<ConnectionInfo> v;
    {
        std::lock_guard lk(mu_);
        for (auto& [c, r] : conns_) v.push_back(r.info);
    }
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.id < b.id; });
    done(std::move(v));
}

void NetworkImpl::shutdown(std::function<void()> done) {
    for (auto& l : listeners_)
        if (l->poller) app_->unregister_poller(l->poller);
    listeners_.clear();
    {
        std::lock_guard lk(mu_);
        shutting_down_ = true;
        for (auto& [c, r] : conns_) close_on_thread(c, *r.thread, "target shutting down");
    }
    wait_then([this] { return !any_conn([](const ConnRecord&) { return true; }); },
              [this, done = std::move(done)] {
                  // Every connection is gone: each poll group's pollers stop on its Thread.
                  auto left = std::make_shared<size_t>(0);
                  std::vector<PollGroup*> gs;
                  {
                      std::lock_guard lk(mu_);
                      for (auto& [t, g] : groups_) gs.push_back(g.get());
                  }
                  *left = gs.size();
                  auto stopped = std::make_shared<std::atomic<size_t>>(0);
                  for (PollGroup* g : gs)
                      (void)g->thread().post([g, stopped] {
                          g->stop();
                          stopped->fetch_add(1);
                      });
                  wait_then([this, stopped, left] {
                      return stopped->load() == *left;
                  },
                            [this, done] {
                                for (runtime::Thread* t : reactors_)
                                    (void)t->post([t] { t->request_exit(); });
                                reactors_.clear();
                                if (done) done();
                            });
              });
}

}  // namespace strata::iscsi::internal

namespace strata::iscsi::internal {

std::unique_ptr<Network> make_network(Directory& dir) { return std::make_unique<NetworkImpl>(dir); }

DigestFaults& digest_faults() noexcept {
    return runtime::current_host().get<DigestFaults>();
}

NetworkStats network_stats(Network& net) {
    auto& n = static_cast<NetworkImpl&>(net);
    auto& c = n.stats();
    NetworkStats s;
    s.connections_accepted = c.accepted.load(std::memory_order_relaxed);
    s.connections_closed = c.closed.load(std::memory_order_relaxed);
    s.connections_freed = c.freed.load(std::memory_order_relaxed);
    s.logins = c.logins.load(std::memory_order_relaxed);
    s.protocol_errors = c.protocol_errors.load(std::memory_order_relaxed);
    s.data_digest_errors = c.data_digest_errors.load(std::memory_order_relaxed);
    s.nop_timeouts = c.nop_timeouts.load(std::memory_order_relaxed);
    s.moved = c.moved.load(std::memory_order_relaxed);
    s.data_digests_accel = c.data_digests_accel.load(std::memory_order_relaxed);
    s.digests_after_release = c.digests_after_release.load(std::memory_order_relaxed);
    s.sessions = n.session_count();
    return s;
}

}  // namespace strata::iscsi::internal
