// The simulator's network: what "sim" sockets travel over.
//
// A SimNetwork lives under one runtime::SimScheduler and is shared by the Hosts (Apps, Python
// Worlds) attached to it, each under an address: a simulated cluster of initiator and target
// hosts in one process. A Host's sim sockets listen and connect with its address; "127.0.0.1",
// "localhost", "::1" and the Host's own address reach the Host itself. A Host that uses sim
// sockets without being attached gets a private network of its own, created on first use
// (address "127.0.0.1"), so a single World needs no setup.
//
// Model. Each connection carries one byte stream per direction. writev accepts bytes up to the
// writer's send window (sim ImplOptions::send_buf_size, at least 64 KiB, counting bytes in
// flight and bytes delivered but unread) and cuts them into segments of 1..max_segment_bytes
// bytes, the boundaries drawn from the network's PRNG (seeded). A segment is delivered at
//     max(previous delivery on that direction, link free + latency [+ extra delay])
// where the link is busy size / bytes_per_sec per segment (serialisation), so bytes arrive in
// order and exactly once. Connect takes one link latency to reach the listener and one to come
// back; close sends FIN behind the data; abort sends RST (the peer's readv fails with
// "connection reset" when it arrives).
//
// The network runs on its own Thread ("simnet", of its own Host "simnet") with a timed poller
// re-armed for the next delivery time, so virtual time jumps straight to it when everything
// else is idle. A delivery queues the receiving socket on its SocketGroup's ready list.
//
// Determinism. The segment boundaries come from the network's seed and the order of writev
// calls, which the SimScheduler's seed fixes: same seeds, same bytes, same boundaries, same
// times. Every delivery is recorded with runtime::trace_event(TraceKind::user, kTraceTag | ...)
// so SimScheduler::trace_hash covers the network, and in delivery_hash().
//
// Faults (network-wide; a and b are attached addresses, either order):
//   delay        extra one-way latency on a↔b for segments sent within the next duration
//   stall        nothing delivered on a↔b until now + duration, then everything flows in order
//   partition    nothing delivered on a↔b until heal; connects between them time out after
//                connect_timeout_ns ("connection timed out") or are refused at once
//   heal         lifts a partition: queued bytes flow again, in order, exactly once
//   reset        every connection between a and b, or one connection by id: both ends see
//                "connection reset"; bytes in flight are dropped
//   slow_reader  bytes reach `address` at most at rate bytes_per_sec (0 lifts it)
//
// Threads. The control calls (attach, faults, listing) run on the scheduler's OS thread: from
// a test's main between steps, or from any Thread of the scheduler (an RPC). Nothing here is
// for a real scheduler.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/random.h>
#include <strata/base/status.h>
#include <strata/runtime/thread.h>
#include <strata/sock/sock.h>

namespace strata::runtime {
class Host;
class Poller;
class SimScheduler;
class Thread;
}  // namespace strata::runtime

namespace strata::sock {

struct LinkParams {
    uint64_t latency_ns = 20'000;        // one way
    uint64_t bytes_per_sec = 0;          // 0: unlimited
    uint32_t max_segment_bytes = 16384;  // segments are 1..max bytes, boundaries seeded
    bool operator==(const LinkParams&) const = default;
};

enum class PartitionMode : uint8_t {
    timeout,  // connects time out after connect_timeout_ns
    refuse,   // connects are refused after one latency
};

struct ConnectionInfo {
    uint64_t id = 0;
    Endpoint client;  // the side that connected
    Endpoint server;
    uint64_t bytes_to_server = 0;  // delivered
    uint64_t bytes_to_client = 0;
    uint64_t queued_to_server = 0;  // accepted by writev, not yet delivered
    uint64_t queued_to_client = 0;
    // "connecting", "established", "closing" (one side closed), "closed", "reset", "failed"
    std::string state;
};

struct SimNetworkStats {
    uint64_t segments = 0;  // segments delivered
    uint64_t bytes = 0;     // bytes delivered
    uint64_t connects = 0;  // connections established
    uint64_t refused = 0;   // connects refused or timed out
    uint64_t resets = 0;    // connections reset (abort or fault)
};

struct HostState;
namespace detail {
struct SimNode;
struct SimConn;
struct SimLink;
class SimSocket;
class SimListener;
}  // namespace detail

class SimNetwork {
public:
    // Word a of the network's trace events: kTraceTag | direction << 40 | connection id.
    static constexpr uint64_t kTraceTag = uint64_t{0x4E45} << 48;  // "NE"
    static constexpr uint64_t kMinWindowBytes = 64 * 1024;

    // Any OS thread outside the scheduler's steps (usually a test's or harness's main).
    SimNetwork(runtime::SimScheduler& scheduler, uint64_t seed);
    // Before the scheduler goes. Sockets and listeners of the network must be gone.
    ~SimNetwork();
    SimNetwork(const SimNetwork&) = delete;
    SimNetwork& operator=(const SimNetwork&) = delete;

    // Gives `host` its address on this network (Errc::already_exists when the address or the
    // Host is taken, invalid_argument for an empty one or a loopback name).
    Status attach(runtime::Host& host, std::string address);
    // The network `host` uses: the attached one, else its private one if it made one.
    static SimNetwork* of(runtime::Host& host);
    // The address `host` has on this network, "" when not attached.
    std::string address_of(runtime::Host& host) const;

    // Link parameters: the default for every pair, and per pair of addresses (both ways).
    void set_default_link(const LinkParams& params);
    const LinkParams& default_link() const noexcept { return default_link_; }
    void set_link(std::string_view a, std::string_view b, const LinkParams& params);
    LinkParams link(std::string_view a, std::string_view b) const;

    // Faults (see the header comment). Durations in virtual nanoseconds from now.
    void delay(std::string_view a, std::string_view b, uint64_t extra_ns, uint64_t duration_ns);
    void stall(std::string_view a, std::string_view b, uint64_t duration_ns);
    void partition(std::string_view a, std::string_view b,
                   PartitionMode mode = PartitionMode::timeout);
    void heal(std::string_view a, std::string_view b);
    size_t reset(std::string_view a, std::string_view b);  // how many connections were reset
    Status reset(uint64_t connection_id);
    void slow_reader(std::string_view address, uint64_t bytes_per_sec);
    uint64_t connect_timeout_ns = 1'000'000'000;

    std::vector<ConnectionInfo> connections() const;
    const SimNetworkStats& stats() const noexcept { return stats_; }
    // Hash of every delivery (connection, direction, segment end offset, virtual time).
    uint64_t delivery_hash() const noexcept { return hash_.value(); }
    uint64_t seed() const noexcept { return seed_; }
    runtime::Thread& thread() const noexcept { return *thread_; }
    runtime::SimScheduler& scheduler() const noexcept { return scheduler_; }

    // What sim::listen / sim::connect do for the current Host (attached to this network).
    Result<std::unique_ptr<Listener>> listen_on(const Endpoint& local, const ImplOptions& io);
    Result<std::unique_ptr<Socket>> connect_to(const Endpoint& remote, const ImplOptions& io);

private:
    friend class detail::SimSocket;
    friend class detail::SimListener;
    friend struct HostState;
    friend struct SimAccess;
    friend Result<SimNetwork*> current_network();

    struct Event {
        uint64_t at_ns;
        uint64_t seq;
        uint64_t conn;
        uint8_t kind;  // EventKind in sim.cpp
        uint8_t dir;
    };
    struct EventLater {
        bool operator()(const Event& a, const Event& b) const noexcept {
            return a.at_ns != b.at_ns ? a.at_ns > b.at_ns : a.seq > b.seq;
        }
    };

    void attach_private(runtime::Host& host);
    void host_gone(runtime::Host& host) noexcept;
    void send_bytes(detail::SimConn& c, int side, size_t n) noexcept;
    void side_closed(detail::SimConn& c, int side, bool abortive) noexcept;
    detail::SimNode* node_for(runtime::Host& host);
    detail::SimNode* resolve(detail::SimNode& from, std::string_view address);
    detail::SimLink& link_state(const detail::SimNode* a, const detail::SimNode* b);
    detail::SimLink* find_link(std::string_view a, std::string_view b);
    uint64_t now() const noexcept;
    void schedule(uint64_t at_ns, uint64_t conn, uint8_t kind, uint8_t dir = 0);
    void kick() noexcept;  // from any Thread: the network's Thread re-arms its timer
    bool run_due() noexcept;
    void rearm() noexcept;
    void reset_conn(detail::SimConn& c, bool count) noexcept;
    void deliver(detail::SimConn& c, uint8_t dir, uint64_t now) noexcept;
    void reschedule_dir(detail::SimConn& c, uint8_t dir, uint64_t at) noexcept;
    void maybe_reap(uint64_t conn) noexcept;
    static runtime::PollStatus timer_fn(void* ctx);
    static void kick_fn(void* ctx);

    runtime::SimScheduler& scheduler_;
    uint64_t seed_;
    Prng prng_;
    TraceHash hash_;
    SimNetworkStats stats_;
    std::unique_ptr<runtime::Host> host_;
    runtime::Thread* thread_ = nullptr;
    runtime::Poller* timer_ = nullptr;
    uint64_t armed_at_ = UINT64_MAX;
    struct Kicker;  // the wake-up message's context: outlives the network if still queued
    Kicker* kicker_ = nullptr;
    uint64_t next_seq_ = 0;
    uint64_t next_conn_ = 1;
    LinkParams default_link_;
    std::vector<Event> events_;  // min-heap on (at_ns, seq)
    std::map<std::string, std::unique_ptr<detail::SimNode>, std::less<>> nodes_;
    std::map<std::pair<std::string, std::string>, std::unique_ptr<detail::SimLink>> links_;
    std::map<uint64_t, std::unique_ptr<detail::SimConn>> conns_;
};

// The network the current Host's sim sockets use (attached, else its private one, created now
// on the current Thread's scheduler). Errc::not_supported when not on a simulated Thread.
Result<SimNetwork*> current_network();

}  // namespace strata::sock
