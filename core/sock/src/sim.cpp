// sim: sockets over the simulator's in-process network (sim.h has the model).
#include <strata/sock/sim.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>

#include "internal.h"

namespace strata::sock {

STRATA_LOG_COMPONENT(simnet);

namespace {
enum EventKind : uint8_t { kDeliver = 1, kSyn = 2, kEstablished = 3, kRefused = 4, kTimedOut = 5 };
constexpr const char* kReset = "connection reset";
constexpr const char* kRefusedMsg = "connection refused";
constexpr const char* kTimedOutMsg = "connection timed out";

bool is_loopback_name(std::string_view a) {
    return a == "127.0.0.1" || a == "localhost" || a == "::1" || a == "[::1]";
}
bool is_any(std::string_view a) {
    return a == "0.0.0.0" || a == "::" || a == "[::]";
}
}  // namespace

namespace detail {

struct SimNode {
    std::string address;
    runtime::Host* host = nullptr;  // nullptr once the Host is gone
    std::map<uint16_t, SimListener*> listeners;
    uint16_t next_port = 49152;
    uint64_t rx_rate = 0;  // slow reader: bytes/s, 0 unlimited
    uint64_t rx_free_at = 0;
};

struct SimLink {
    LinkParams params;
    bool has_params = false;
    uint64_t extra_ns = 0;
    uint64_t extra_until = 0;
    uint64_t stalled_until = 0;
    bool partitioned = false;
    PartitionMode mode = PartitionMode::timeout;
    uint64_t busy_until[2] = {0, 0};  // serialisation, per direction
};

struct Seg {
    uint64_t end;  // absolute stream offset after this segment
    uint64_t at;   // delivery time
    uint8_t flags;
};
constexpr uint8_t kFin = 1;
constexpr uint8_t kRst = 2;

// One direction of a connection: a ring of bytes [read, delivered) readable, [delivered, write)
// in flight, and the in-flight segments.
struct Pipe {
    std::unique_ptr<uint8_t[]> buf;
    size_t cap = 0;
    uint64_t read = 0, delivered = 0, write = 0;
    std::vector<Seg> segs;
    size_t head = 0;
    uint64_t last_at = 0;
    bool scheduled = false;  // an event for the head segment is in the heap
    bool parked = false;     // held by a partition until heal
    bool fin = false;        // FIN queued
    bool fin_delivered = false;

    void init(size_t capacity) {
        cap = std::max<size_t>(capacity, SimNetwork::kMinWindowBytes);
        buf.reset(new uint8_t[cap]);
        segs.reserve(64);
    }
    bool pending() const noexcept { return head < segs.size(); }
    void push(Seg s) {
        if (head > 256 && head * 2 > segs.size()) {
            segs.erase(segs.begin(), segs.begin() + static_cast<ptrdiff_t>(head));
            head = 0;
        }
        segs.push_back(s);
    }
    void drop_pending() noexcept {
        segs.clear();
        head = 0;
        write = delivered;
    }
};

struct SimConn {
    uint64_t id = 0;
    SimNode* node[2] = {nullptr, nullptr};  // 0: client, 1: server
    Endpoint ep[2];
    SimSocket* sock[2] = {nullptr, nullptr};
    Pipe pipe[2];  // pipe[s]: bytes side s writes
    bool connecting = true;
    bool server_created = false;
    bool closed[2] = {false, false};
    const char* err[2] = {nullptr, nullptr};
    bool error_reported[2] = {false, false};
};

class SimSocket final : public SocketBase {
public:
    SimSocket(SimNetwork* net, SimConn* conn, int side)
        : SocketBase(Kind::sim), net_(net), conn_(conn), side_(side) {
        local_ = conn->ep[side];
        peer_ = conn->ep[1 - side];
    }
    ~SimSocket() override {
        if (group_ != nullptr) group_->remove(*this);
        close();
    }

    Result<size_t> readv(const iovec* iov, int iovcnt) noexcept override {
        if (Status s = usable(); !s.ok()) return s;
        Pipe& p = conn_->pipe[1 - side_];
        uint64_t avail = p.delivered - p.read;
        if (avail == 0) {
            if (p.fin_delivered) {
                end_read_ = true;
                return Status(Errc::shutdown, "end of stream");
            }
            return Status(Errc::busy, "nothing to read");
        }
        size_t done = 0;
        for (int i = 0; i < iovcnt && avail > 0; ++i) {
            size_t n = std::min<uint64_t>(iov[i].iov_len, avail);
            copy_out(p, static_cast<uint8_t*>(iov[i].iov_base), n);
            done += n;
            avail -= n;
        }
        return done;
    }

    Result<size_t> writev(const iovec* iov, int iovcnt) noexcept override {
        if (Status s = usable(); !s.ok()) return s;
        Pipe& p = conn_->pipe[side_];
        if (p.fin) return Status(Errc::io_error, "socket closed");
        size_t space = p.cap - (p.write - p.read);
        size_t total = 0;
        for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
        if (total == 0) return size_t{0};
        if (space == 0) return Status(Errc::busy, "send window full");
        size_t n = std::min(space, total);
        size_t left = n;
        for (int i = 0; i < iovcnt && left > 0; ++i) {
            size_t m = std::min(iov[i].iov_len, left);
            copy_in(p, static_cast<const uint8_t*>(iov[i].iov_base), m);
            left -= m;
        }
        net_->send_bytes(*conn_, side_, n);
        return n;
    }

    void close() noexcept override {
        if (conn_ == nullptr) return;
        SimConn* c = conn_;
        conn_ = nullptr;
        if (net_ != nullptr) net_->side_closed(*c, side_, false);
    }
    void abort() noexcept override {
        if (conn_ == nullptr) return;
        SimConn* c = conn_;
        conn_ = nullptr;
        if (net_ != nullptr) net_->side_closed(*c, side_, true);
    }

    bool connected() const noexcept override {
        return conn_ != nullptr && !conn_->connecting && conn_->err[side_] == nullptr;
    }
    const Endpoint& local() const noexcept override { return local_; }
    const Endpoint& peer() const noexcept override { return peer_; }
    const char* impl_name() const noexcept override { return "sim"; }

    Status group_attach(GroupImpl& g) override {
        if (has_news()) g.mark_ready(*this);
        return Status::success();
    }
    // Level semantics, as epoll's: bytes, or an end of stream or error not read yet.
    bool still_ready() const noexcept override {
        if (conn_ == nullptr) return false;
        const Pipe& p = conn_->pipe[1 - side_];
        return p.delivered > p.read ||
               ((p.fin_delivered || conn_->err[side_] != nullptr) && !end_read_);
    }
    bool has_news() const noexcept {
        if (conn_ == nullptr) return true;
        const Pipe& p = conn_->pipe[1 - side_];
        return p.delivered > p.read || p.fin_delivered || conn_->err[side_] != nullptr;
    }
    void notify() noexcept {
        if (group_ != nullptr) group_->mark_ready(*this);
    }
    void network_gone() noexcept {
        net_ = nullptr;
        conn_ = nullptr;
    }

private:
    Status usable() noexcept {
        if (net_ == nullptr) return Status(Errc::io_error, "simulated network gone");
        if (conn_ == nullptr) return Status(Errc::io_error, "socket closed");
        if (const char* e = conn_->err[side_]) {
            end_read_ = true;
            return Status(Errc::io_error, e);
        }
        if (conn_->connecting) return Status(Errc::busy, "connecting");
        return Status::success();
    }
    static void copy_in(Pipe& p, const uint8_t* src, size_t n) noexcept {
        while (n > 0) {
            size_t at = p.write % p.cap;
            size_t m = std::min(n, p.cap - at);
            std::memcpy(p.buf.get() + at, src, m);
            p.write += m;
            src += m;
            n -= m;
        }
    }
    static void copy_out(Pipe& p, uint8_t* dst, size_t n) noexcept {
        while (n > 0) {
            size_t at = p.read % p.cap;
            size_t m = std::min(n, p.cap - at);
            std::memcpy(dst, p.buf.get() + at, m);
            p.read += m;
            dst += m;
            n -= m;
        }
    }

    SimNetwork* net_;
    SimConn* conn_;
    int side_;
    bool end_read_ = false;  // a read or write has returned the end of stream or the error
    Endpoint local_;
    Endpoint peer_;
};

class SimListener final : public Listener {
public:
    SimListener(SimNetwork* net, SimNode* node, Endpoint local, ImplOptions io)
        : net_(net), node_(node), local_(std::move(local)), io_(io) {
        node_->listeners[local_.port] = this;
    }
    ~SimListener() override {
        if (net_ != nullptr) node_->listeners.erase(local_.port);
        backlog_.clear();
    }
    Result<std::unique_ptr<Socket>> accept() noexcept override {
        if (backlog_.empty()) return Status(Errc::busy, "no connection pending");
        std::unique_ptr<Socket> s = std::move(backlog_.front());
        backlog_.pop_front();
        return s;
    }
    const Endpoint& local() const noexcept override { return local_; }
    const char* impl_name() const noexcept override { return "sim"; }

    void network_gone() noexcept {
        net_ = nullptr;
        for (auto& s : backlog_) static_cast<SimSocket&>(*s).network_gone();
    }
    const ImplOptions& options() const noexcept { return io_; }
    std::deque<std::unique_ptr<Socket>> backlog_;

private:
    SimNetwork* net_;
    SimNode* node_;
    Endpoint local_;
    ImplOptions io_;
};

}  // namespace detail

using detail::Pipe;
using detail::Seg;
using detail::SimConn;
using detail::SimLink;
using detail::SimListener;
using detail::SimNode;
using detail::SimSocket;

// ---- SimNetwork ----

struct SimNetwork::Kicker {
    SimNetwork* net;
    bool pending = false;
};

SimNetwork::SimNetwork(runtime::SimScheduler& scheduler, uint64_t seed)
    : scheduler_(scheduler), seed_(seed), prng_(seed) {
    host_ = std::make_unique<runtime::Host>("simnet",
                                            runtime::Host::seed_for(scheduler.seed(), "simnet"));
    thread_ = scheduler.create_thread("simnet", -1, host_.get());
    kicker_ = new Kicker{this};
    events_.reserve(256);
}

SimNetwork::~SimNetwork() {
    for (auto& [id, c] : conns_)
        for (SimSocket* s : c->sock)
            if (s != nullptr) s->network_gone();
    for (auto& [addr, n] : nodes_) {
        for (auto& [port, l] : n->listeners) l->network_gone();
        if (n->host != nullptr) {
            if (auto* hs = n->host->find<HostState>(); hs != nullptr && hs->network == this)
                hs->network = nullptr;
        }
    }
    if (timer_ != nullptr) thread_->unregister_poller(timer_);
    // A wake-up still queued finds the network gone and frees its context; run it now, with the
    // Thread's exit request, so nothing is left in the ring (no message, no allocation, leaks
    // when the scheduler drops it at shutdown).
    kicker_->net = nullptr;
    if (!kicker_->pending) delete kicker_;
    kicker_ = nullptr;
    (void)thread_->send([](void* t) { static_cast<runtime::Thread*>(t)->request_exit(); },
                        thread_);
    (void)thread_->poll();
}

uint64_t SimNetwork::now() const noexcept {
    return scheduler_.now_ns();
}

Status SimNetwork::attach(runtime::Host& host, std::string address) {
    if (address.empty()) return Status(Errc::invalid_argument, "empty address");
    if (is_loopback_name(address) || is_any(address))
        return Status(Errc::invalid_argument, "a loopback or wildcard address cannot be attached");
    auto it = nodes_.find(address);
    // The address of a Host that is gone may be taken again (a restarted host of a cluster).
    if (it != nodes_.end() && it->second->host != nullptr)
        return Status(Errc::already_exists, "address taken");
    HostState& hs = host_state(host);
    if (hs.network != nullptr && hs.network != hs.private_network.get())
        return Status(Errc::already_exists, "Host already attached to a network");
    if (it != nodes_.end()) {
        it->second->host = &host;
    } else {
        auto node = std::make_unique<SimNode>();
        node->address = address;
        node->host = &host;
        nodes_[address] = std::move(node);
    }
    hs.network = this;
    hs.address = std::move(address);
    return Status::success();
}

SimNetwork* SimNetwork::of(runtime::Host& host) {
    HostState* hs = host.find<HostState>();
    return hs != nullptr ? hs->network : nullptr;
}

std::string SimNetwork::address_of(runtime::Host& host) const {
    for (auto& [a, n] : nodes_)
        if (n->host == &host) return a;
    return {};
}

SimNode* SimNetwork::node_for(runtime::Host& host) {
    for (auto& [a, n] : nodes_)
        if (n->host == &host) return n.get();
    return nullptr;
}

SimNode* SimNetwork::resolve(SimNode& from, std::string_view address) {
    if (is_loopback_name(address) || address == from.address) return &from;
    auto it = nodes_.find(address);
    return it == nodes_.end() ? nullptr : it->second.get();
}

SimLink& SimNetwork::link_state(const SimNode* a, const SimNode* b) {
    auto key = a->address <= b->address ? std::make_pair(a->address, b->address)
                                        : std::make_pair(b->address, a->address);
    auto& l = links_[key];
    if (!l) l = std::make_unique<SimLink>();
    return *l;
}

SimLink* SimNetwork::find_link(std::string_view a, std::string_view b) {
    std::string x(a), y(b);
    if (y < x) std::swap(x, y);
    auto& l = links_[{x, y}];
    if (!l) l = std::make_unique<SimLink>();
    return l.get();
}

void SimNetwork::set_default_link(const LinkParams& params) {
    default_link_ = params;
}

void SimNetwork::set_link(std::string_view a, std::string_view b, const LinkParams& params) {
    SimLink* l = find_link(a, b);
    l->params = params;
    l->has_params = true;
}

LinkParams SimNetwork::link(std::string_view a, std::string_view b) const {
    std::string x(a), y(b);
    if (y < x) std::swap(x, y);
    auto it = links_.find({x, y});
    return it != links_.end() && it->second->has_params ? it->second->params : default_link_;
}

void SimNetwork::schedule(uint64_t at_ns, uint64_t conn, uint8_t kind, uint8_t dir) {
    events_.push_back({at_ns, next_seq_++, conn, kind, dir});
    std::push_heap(events_.begin(), events_.end(), EventLater{});
    if (runtime::current_thread() != thread_ && at_ns < armed_at_) kick();
}

void SimNetwork::kick() noexcept {
    if (kicker_->pending) return;
    kicker_->pending = true;
    Status s = thread_->send(&SimNetwork::kick_fn, kicker_);
    if (!s.ok()) {
        kicker_->pending = false;
        STRATA_ERRLOG(log_simnet, "simnet: cannot wake the network Thread: {}", s.to_string());
    }
}

void SimNetwork::kick_fn(void* ctx) {
    auto* k = static_cast<Kicker*>(ctx);
    k->pending = false;
    if (k->net == nullptr) {
        delete k;
        return;
    }
    k->net->run_due();
    k->net->rearm();
}

runtime::PollStatus SimNetwork::timer_fn(void* ctx) {
    auto* self = static_cast<SimNetwork*>(ctx);
    bool did = self->run_due();
    self->armed_at_ = 0;  // the poller's own next run is not the next event: re-register
    self->rearm();
    return did ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

void SimNetwork::rearm() noexcept {
    const uint64_t target = events_.empty() ? UINT64_MAX : events_.front().at_ns;
    if (target == armed_at_ && timer_ != nullptr) return;
    if (timer_ != nullptr) thread_->unregister_poller(timer_);
    armed_at_ = target;
    if (target == UINT64_MAX) return;
    const uint64_t t = now();
    timer_ = thread_->register_poller(&SimNetwork::timer_fn, this, "simnet",
                                      target > t ? target - t : 1);
}

bool SimNetwork::run_due() noexcept {
    bool did = false;
    const uint64_t t = now();
    while (!events_.empty() && events_.front().at_ns <= t) {
        std::pop_heap(events_.begin(), events_.end(), EventLater{});
        Event e = events_.back();
        events_.pop_back();
        auto it = conns_.find(e.conn);
        if (it == conns_.end()) continue;
        SimConn& c = *it->second;
        did = true;
        switch (e.kind) {
            case kDeliver:
                c.pipe[e.dir].scheduled = false;
                deliver(c, e.dir, t);
                break;
            case kSyn: {
                if (c.closed[0]) {
                    conns_.erase(it);
                    break;
                }
                auto l = c.node[1]->listeners.find(c.ep[1].port);
                const uint64_t lat = link(c.node[0]->address, c.node[1]->address).latency_ns;
                if (l == c.node[1]->listeners.end()) {
                    schedule(t + lat, c.id, kRefused);
                    break;
                }
                SimListener* listener = l->second;
                c.pipe[1].init(listener->options().send_buf_size);
                c.server_created = true;
                auto s = std::make_unique<SimSocket>(this, &c, 1);
                c.sock[1] = s.get();
                listener->backlog_.push_back(std::move(s));
                schedule(t + lat, c.id, kEstablished);
                break;
            }
            case kEstablished:
                c.connecting = false;
                ++stats_.connects;
                runtime::trace_event(runtime::TraceKind::user, kTraceTag | c.id, ~uint64_t{0}, t);
                if (c.sock[0] != nullptr) c.sock[0]->notify();
                // Bytes the server sent before the client knew it was connected.
                if (c.pipe[1].delivered > c.pipe[1].read && c.sock[0] != nullptr)
                    c.sock[0]->notify();
                break;
            case kRefused:
            case kTimedOut:
                c.connecting = false;
                c.err[0] = e.kind == kRefused ? kRefusedMsg : kTimedOutMsg;
                ++stats_.refused;
                runtime::trace_event(runtime::TraceKind::user, kTraceTag | c.id, e.kind, t);
                if (c.sock[0] != nullptr) c.sock[0]->notify();
                maybe_reap(c.id);
                break;
            default:
                break;
        }
    }
    return did;
}

void SimNetwork::reschedule_dir(SimConn& c, uint8_t dir, uint64_t at) noexcept {
    Pipe& p = c.pipe[dir];
    if (p.scheduled || !p.pending()) return;
    p.scheduled = true;
    schedule(at, c.id, kDeliver, dir);
}

void SimNetwork::deliver(SimConn& c, uint8_t dir, uint64_t t) noexcept {
    Pipe& p = c.pipe[dir];
    if (!p.pending()) return;
    SimLink& l = link_state(c.node[dir], c.node[1 - dir]);
    if (l.partitioned) {
        p.parked = true;
        return;
    }
    if (t < l.stalled_until) {
        reschedule_dir(c, dir, l.stalled_until);
        return;
    }
    SimNode& rx = *c.node[1 - dir];
    bool moved = false;
    while (p.pending() && p.segs[p.head].at <= t) {
        if (rx.rx_rate != 0 && rx.rx_free_at > t) break;
        const Seg s = p.segs[p.head++];
        const uint64_t size = s.end - p.delivered;
        p.delivered = s.end;
        moved = true;
        hash_.add(c.id << 1 | dir);
        hash_.add(s.end);
        hash_.add(t);
        runtime::trace_event(runtime::TraceKind::user, kTraceTag | uint64_t{dir} << 40 | c.id,
                             s.end, t);
        if (size != 0) {
            ++stats_.segments;
            stats_.bytes += size;
        }
        if (s.flags & detail::kFin) p.fin_delivered = true;
        if (s.flags & detail::kRst) {
            c.err[1 - dir] = kReset;
            ++stats_.resets;
        }
        if (rx.rx_rate != 0) {
            rx.rx_free_at = t + size * 1'000'000'000ull / rx.rx_rate;
            break;
        }
    }
    if (moved && c.sock[1 - dir] != nullptr) c.sock[1 - dir]->notify();
    if (p.pending()) {
        uint64_t next = p.segs[p.head].at;
        if (rx.rx_rate != 0) next = std::max(next, rx.rx_free_at);
        reschedule_dir(c, dir, std::max(next, t));
    }
    maybe_reap(c.id);
}

void SimNetwork::send_bytes(SimConn& c, int side, size_t n) noexcept {
    Pipe& p = c.pipe[side];
    const uint64_t t = now();
    SimLink& l = link_state(c.node[side], c.node[1 - side]);
    const LinkParams& lp = l.has_params ? l.params : default_link_;
    const int d = c.node[side] == c.node[1 - side]
                      ? side
                      : (c.node[side]->address < c.node[1 - side]->address ? 0 : 1);
    const uint64_t extra = t < l.extra_until ? l.extra_ns : 0;
    uint64_t end = p.write - n;
    const uint32_t max_seg = std::max<uint32_t>(lp.max_segment_bytes, 1);
    while (n > 0) {
        size_t seg = std::min<uint64_t>(n, 1 + prng_.uniform(max_seg));
        uint64_t start = std::max(t, l.busy_until[d]);
        uint64_t tx = lp.bytes_per_sec != 0 ? seg * 1'000'000'000ull / lp.bytes_per_sec : 0;
        l.busy_until[d] = start + tx;
        uint64_t at = std::max(start + tx + lp.latency_ns + extra, p.last_at);
        p.last_at = at;
        end += seg;
        n -= seg;
        p.push({end, at, 0});
    }
    if (!p.parked) reschedule_dir(c, static_cast<uint8_t>(side), p.segs[p.head].at);
}

void SimNetwork::side_closed(SimConn& c, int side, bool abortive) noexcept {
    c.sock[side] = nullptr;
    if (c.closed[side]) return;
    c.closed[side] = true;
    const uint64_t t = now();
    Pipe& p = c.pipe[side];
    const bool live = !c.connecting && c.err[side] == nullptr && c.err[1 - side] == nullptr;
    if (live && p.cap != 0) {
        const LinkParams lp = link(c.node[0]->address, c.node[1]->address);
        if (abortive) p.drop_pending();
        uint64_t at = std::max(t + lp.latency_ns, p.last_at);
        p.last_at = at;
        p.push({p.write, at, abortive ? detail::kRst : detail::kFin});
        p.fin = true;
        if (!p.parked) reschedule_dir(c, static_cast<uint8_t>(side), p.segs[p.head].at);
    }
    if (c.connecting && side == 0) return;  // kSyn reaps it
    maybe_reap(c.id);
}

void SimNetwork::maybe_reap(uint64_t id) noexcept {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    SimConn& c = *it->second;
    if (c.connecting || c.sock[0] != nullptr || c.sock[1] != nullptr) return;
    const bool dead = c.err[0] != nullptr || c.err[1] != nullptr;
    if (!dead && (c.pipe[0].pending() || c.pipe[1].pending())) return;
    conns_.erase(it);
}

void SimNetwork::reset_conn(SimConn& c, bool count) noexcept {
    if (c.err[0] != nullptr && c.err[1] != nullptr) return;
    c.connecting = false;
    for (int s = 0; s < 2; ++s) {
        if (c.err[s] == nullptr) c.err[s] = kReset;
        c.pipe[s].drop_pending();
        if (c.sock[s] != nullptr) c.sock[s]->notify();
    }
    if (count) ++stats_.resets;
    runtime::trace_event(runtime::TraceKind::user, kTraceTag | c.id, kReset[0], now());
}

void SimNetwork::delay(std::string_view a, std::string_view b, uint64_t extra_ns,
                       uint64_t duration_ns) {
    SimLink* l = find_link(a, b);
    l->extra_ns = extra_ns;
    l->extra_until = now() + duration_ns;
}

void SimNetwork::stall(std::string_view a, std::string_view b, uint64_t duration_ns) {
    find_link(a, b)->stalled_until = now() + duration_ns;
}

void SimNetwork::partition(std::string_view a, std::string_view b, PartitionMode mode) {
    SimLink* l = find_link(a, b);
    l->partitioned = true;
    l->mode = mode;
}

void SimNetwork::heal(std::string_view a, std::string_view b) {
    SimLink* l = find_link(a, b);
    l->partitioned = false;
    const uint64_t t = now();
    for (auto& [id, c] : conns_) {
        if (&link_state(c->node[0], c->node[1]) != l) continue;
        for (uint8_t d = 0; d < 2; ++d) {
            Pipe& p = c->pipe[d];
            if (!p.parked) continue;
            p.parked = false;
            if (p.pending()) reschedule_dir(*c, d, std::max(t, p.segs[p.head].at));
        }
    }
}

size_t SimNetwork::reset(std::string_view a, std::string_view b) {
    SimLink* l = find_link(a, b);
    size_t n = 0;
    std::vector<uint64_t> ids;
    for (auto& [id, c] : conns_)
        if (&link_state(c->node[0], c->node[1]) == l) ids.push_back(id);
    for (uint64_t id : ids) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        reset_conn(*it->second, true);
        ++n;
        maybe_reap(id);
    }
    return n;
}

Status SimNetwork::reset(uint64_t connection_id) {
    auto it = conns_.find(connection_id);
    if (it == conns_.end()) return Status(Errc::not_found, "no such connection");
    reset_conn(*it->second, true);
    maybe_reap(connection_id);
    return Status::success();
}

void SimNetwork::slow_reader(std::string_view address, uint64_t bytes_per_sec) {
    auto it = nodes_.find(address);
    if (it == nodes_.end()) return;
    it->second->rx_rate = bytes_per_sec;
    it->second->rx_free_at = now();
}

std::vector<ConnectionInfo> SimNetwork::connections() const {
    std::vector<ConnectionInfo> out;
    for (auto& [id, c] : conns_) {
        ConnectionInfo i;
        i.id = id;
        i.client = c->ep[0];
        i.server = c->ep[1];
        i.bytes_to_server = c->pipe[0].delivered;
        i.bytes_to_client = c->pipe[1].delivered;
        i.queued_to_server = c->pipe[0].write - c->pipe[0].delivered;
        i.queued_to_client = c->pipe[1].write - c->pipe[1].delivered;
        if (c->err[0] == kReset || c->err[1] == kReset)
            i.state = "reset";
        else if (c->err[0] != nullptr)
            i.state = "failed";
        else if (c->connecting)
            i.state = "connecting";
        else if (c->closed[0] && c->closed[1])
            i.state = "closed";
        else if (c->closed[0] || c->closed[1])
            i.state = "closing";
        else
            i.state = "established";
        out.push_back(std::move(i));
    }
    return out;
}

// ---- the implementation ----

Result<SimNetwork*> current_network() {
    HostState& hs = host_state();
    if (hs.network != nullptr) return hs.network;
    runtime::Thread* t = runtime::current_thread();
    if (t == nullptr || !t->scheduler().simulated())
        return Error(Errc::not_supported,
                     "sim sockets need a simulated Thread or a Host attached to a SimNetwork");
    auto& sim = static_cast<runtime::SimScheduler&>(t->scheduler());
    hs.private_network = std::make_unique<SimNetwork>(
        sim, runtime::Host::seed_for(sim.seed(), hs.host.name() + "/simnet"));
    SimNetwork* net = hs.private_network.get();
    net->attach_private(hs.host);
    return net;
}

void SimNetwork::attach_private(runtime::Host& host) {
    auto node = std::make_unique<SimNode>();
    node->address = "127.0.0.1";
    node->host = &host;
    nodes_[node->address] = std::move(node);
    HostState& hs = host_state(host);
    hs.network = this;
    hs.address = "127.0.0.1";
}

void SimNetwork::host_gone(runtime::Host& host) noexcept {
    for (auto& [a, n] : nodes_)
        if (n->host == &host) n->host = nullptr;
}

Result<std::unique_ptr<Listener>> SimNetwork::listen_on(const Endpoint& local,
                                                        const ImplOptions& io) {
    SimNode* node = node_for(runtime::current_host());
    if (node == nullptr) return Error(Errc::not_supported, "Host not on this network");
    if (local.address.empty()) return Error(Errc::invalid_argument, "empty address");
    if (!is_loopback_name(local.address) && !is_any(local.address) &&
        local.address != node->address)
        return Error(Errc::invalid_argument, "'" + local.address +
                                                 "' is not an address of this host on the "
                                                 "simulated network (" +
                                                 node->address + ")");
    uint16_t port = local.port;
    if (port == 0) {
        for (int tries = 0; tries < 16384; ++tries) {
            uint16_t p = node->next_port++;
            if (node->next_port == 0) node->next_port = 49152;
            if (node->listeners.count(p) == 0) {
                port = p;
                break;
            }
        }
        if (port == 0) return Error(Errc::no_space, "no free port");
    } else if (node->listeners.count(port) != 0) {
        return Error(Errc::already_exists, "address " + to_string(local) + " already in use");
    }
    return std::unique_ptr<Listener>(
        std::make_unique<SimListener>(this, node, Endpoint{local.address, port}, io));
}

Result<std::unique_ptr<Socket>> SimNetwork::connect_to(const Endpoint& remote,
                                                       const ImplOptions& io) {
    SimNode* from = node_for(runtime::current_host());
    if (from == nullptr) return Error(Errc::not_supported, "Host not on this network");
    if (remote.address.empty()) return Error(Errc::invalid_argument, "empty address");
    if (remote.port == 0) return Error(Errc::invalid_argument, "connect to port 0");
    SimNode* to = resolve(*from, remote.address);
    if (to == nullptr)
        return Error(Errc::invalid_argument,
                     "no host '" + remote.address + "' on the simulated network");
    auto conn = std::make_unique<SimConn>();
    SimConn& c = *conn;
    c.id = next_conn_++;
    c.node[0] = from;
    c.node[1] = to;
    const bool loop = is_loopback_name(remote.address);
    uint16_t port = from->next_port++;
    if (from->next_port == 0) from->next_port = 49152;
    c.ep[0] = {loop ? remote.address : from->address, port};
    c.ep[1] = remote;
    c.pipe[0].init(io.send_buf_size);
    conns_[c.id] = std::move(conn);
    auto s = std::make_unique<SimSocket>(this, &c, 0);
    c.sock[0] = s.get();
    const uint64_t t = now();
    SimLink& l = link_state(from, to);
    const LinkParams lp = l.has_params ? l.params : default_link_;
    if (l.partitioned) {
        if (l.mode == PartitionMode::refuse)
            schedule(t + lp.latency_ns, c.id, kRefused);
        else
            schedule(t + connect_timeout_ns, c.id, kTimedOut);
    } else {
        schedule(t + lp.latency_ns, c.id, kSyn);
    }
    return std::unique_ptr<Socket>(std::move(s));
}

namespace {

Result<std::unique_ptr<Listener>> sim_listen(const Endpoint& local, const SocketOptions&,
                                             const ImplOptions& io) {
    auto net = current_network();
    if (!net) return net.error();
    return (*net)->listen_on(local, io);
}

Result<std::unique_ptr<Socket>> sim_connect(const Endpoint& remote, const SocketOptions&,
                                            const ImplOptions& io) {
    auto net = current_network();
    if (!net) return net.error();
    return (*net)->connect_to(remote, io);
}

}  // namespace

const ImplOps kSimImpl{"sim", Kind::sim, &sim_listen, &sim_connect};

}  // namespace strata::sock
