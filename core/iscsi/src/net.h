// The iSCSI target's network layer (private): poll groups (one per Thread that runs
// connections), connections (login, then the full feature phase on core/scsi), sessions.
//
// Threads. Listeners live on the app Thread; an accepted socket goes to a poll group (one per
// reactor, round-robin) where the login runs; a normal session's connection then moves to
// the poll group of its target node's scsi::Device Thread, so a command needs no message
// between Threads. The session table and the connection registry (iscsi_get_connections,
// ending a node's sessions) are shared under NetworkImpl's lock: control path only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <strata/accel/accel.h>
#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/iscsi/internal/network.h>
#include <strata/runtime/thread.h>
#include <strata/sock/sock.h>

namespace strata::iscsi::internal {

STRATA_LOG_COMPONENT(iscsi);

class NetworkImpl;
class PollGroup;
class Conn;
struct ConnTag;

// Data buffers: chunks of kChunk bytes from the poll group's pool; a command moves at most
// kMaxChunks of them (32 MiB, core/scsi's MAXIMUM TRANSFER LENGTH).
inline constexpr uint32_t kChunk = 128 * 1024;
inline constexpr uint32_t kMaxChunks = 256;
inline constexpr uint32_t kMaxTransfer = kChunk * kMaxChunks;
// A poll group's pool grows on demand up to this many chunks (then a command gets BUSY);
// chunks are kept, so the steady state allocates nothing.
inline constexpr uint32_t kPoolMaxChunks = 4096;
// Transfers up to kSmallChunk bytes take one small buffer instead (as core/nvmf's TCP transport
// and SPDK's iobuf do): 4 KiB commands' data 128 KiB apart would all sit in the same cache sets.
inline constexpr uint32_t kSmallChunk = 8192;
inline constexpr uint32_t kPoolMaxSmall = 8192;

struct Session {
    uint16_t tsih = 0;
    Isid isid{};
    std::string initiator;
    std::string target;
    SessionType type = SessionType::normal;
    SessionParams params;
    std::string initiator_port;  // "<name>,i,0x<isid>": the SCSI I_T nexus
    scsi::Device* device = nullptr;
    std::string device_name;            // finds it again from another Thread
    runtime::Thread* thread = nullptr;  // the device's (normal sessions)
    uint32_t queue_depth = 64;
    // Under NetworkImpl's lock:
    std::vector<Conn*> conns;
    bool ended = false;  // reinstated or logged out: no connection may join
    // Full feature phase, on the device's Thread (every connection of a normal session is
    // there; a discovery session has one connection):
    uint32_t exp_cmd_sn = 0;
    uint32_t outstanding = 0;  // non-immediate commands not yet answered
    uint32_t max_cmd_sn() const noexcept { return exp_cmd_sn + queue_depth - 1 - outstanding; }
};

class PollGroup {
public:
    PollGroup(NetworkImpl& net, runtime::Thread& thread) : net_(net), thread_(&thread) {}
    ~PollGroup();

    // On its Thread.
    void adopt(Conn* c);               // a connection arriving (accepted or moved)
    void release_conn(Conn& c);        // leaves the group (moving away)
    void* get_chunk() noexcept;
    void put_chunk(void* p) noexcept { free_.push_back(p); }
    void* get_small() noexcept;
    void put_small(void* p) noexcept { free_small_.push_back(p); }
    sock::SocketGroup& sockets() noexcept { return *sockets_; }
    runtime::Thread& thread() const noexcept { return *thread_; }
    NetworkImpl& net() noexcept { return net_; }
    // The accel channel for data digests (data_digest_accel_threshold), nullptr when unused
    // (threshold 0, or no accel framework running).
    accel::Channel* accel() const noexcept { return accel_; }
    DigestFaults& digest_faults() const noexcept { return *faults_; }
    void stop();  // on its Thread: pollers off, accel channel put (every connection gone)

private:
    void init();
    static runtime::PollStatus poll_fn(void* ctx) noexcept;
    static runtime::PollStatus timer_fn(void* ctx) noexcept;
    runtime::PollStatus poll() noexcept;

    NetworkImpl& net_;
    runtime::Thread* thread_;
    bool inited_ = false;
    runtime::Poller* poller_ = nullptr;
    runtime::Poller* timer_ = nullptr;
    accel::Channel* accel_ = nullptr;
    DigestFaults* faults_ = nullptr;
    std::unique_ptr<sock::SocketGroup> sockets_;
    IntrusiveList<Conn, ConnTag> conns_;
    std::vector<void*> free_;
    std::vector<void*> all_;
    std::vector<void*> free_small_;
    std::vector<void*> small_slabs_;  // 64 small buffers each, 4 KiB aligned
};

struct ConnRecord {
    Conn* conn;
    runtime::Thread* thread;
    ConnectionInfo info;
    int32_t pg_tag;
};

class NetworkImpl final : public Network {
public:
    NetworkImpl(Directory& dir);
    ~NetworkImpl() override;

    Status start_portals(const PortalGroupConfig& pg) override;
    void stop_portals(int32_t tag) override;
    void end_target_sessions(const std::string& target_name, std::function<void()> done) override;
    void get_connections(std::function<void(std::vector<ConnectionInfo>)> done) override;
    void shutdown(std::function<void()> done) override;

    Directory& dir() noexcept { return dir_; }
    runtime::Host& host() noexcept { return *host_; }
    // The poll group of `t` (created on first use; any Thread).
    PollGroup& group_for(runtime::Thread& t);

    // ---- sessions (session.cpp; any Thread, under the lock) ----
    LoginStatus join_session(Conn& c, const Isid& isid, uint16_t tsih, std::string_view initiator,
                             std::string_view target, SessionParams* params);
    uint16_t new_session(Conn& c, const Isid& isid, std::string_view initiator,
                         std::string_view target, SessionType type);
    // The connection's session at full feature phase: registered in it.
    std::shared_ptr<Session> attach(Conn& c, uint16_t tsih);
    // True when `c` was the session's last connection: the session (its I_T nexus) is over.
    bool detach(Conn& c, const std::shared_ptr<Session>& s);
    void end_session(const std::shared_ptr<Session>& s, Conn* except);  // close its connections
    // Logout of another connection of the session (reason 1): closes it; false: no such CID.
    bool close_session_conn(const std::shared_ptr<Session>& s, uint16_t cid);

    // ---- connection registry ----
    int32_t register_conn(Conn& c, runtime::Thread& t, int32_t pg_tag, std::string peer,
                          std::string local);
    void update_conn(Conn& c, runtime::Thread& t, uint16_t cid, uint16_t tsih,
                     const std::string& target);
    void unregister_conn(Conn& c);
    void close_on_thread(Conn* c, runtime::Thread& t, const char* why);

    struct Counters {
        std::atomic<uint64_t> accepted{0}, closed{0}, freed{0}, logins{0}, protocol_errors{0},
            data_digest_errors{0}, nop_timeouts{0}, moved{0}, data_digests_accel{0},
            digests_after_release{0};
    };
    Counters& stats() noexcept { return stats_; }
    size_t session_count();

private:
    struct Listener {
        int32_t tag;
        std::unique_ptr<sock::Listener> l;
        runtime::Poller* poller = nullptr;
        NetworkImpl* net;
    };
    static runtime::PollStatus accept_fn(void* ctx) noexcept;
    void accepted(std::unique_ptr<sock::Socket> s, int32_t tag);
    bool any_conn(const std::function<bool(const ConnRecord&)>& pred);
    void wait_then(std::function<bool()> pred, std::function<void()> done);

    Directory& dir_;
    runtime::Thread* app_ = nullptr;
    runtime::Host* host_ = nullptr;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::vector<runtime::Thread*> reactors_;  // round-robin targets for accepted sockets
    uint32_t next_ = 0;
    Counters stats_;

    std::mutex mu_;  // everything below
    std::unordered_map<runtime::Thread*, std::unique_ptr<PollGroup>> groups_;
    std::unordered_map<uint16_t, std::shared_ptr<Session>> sessions_;
    uint16_t next_tsih_ = 1;
    std::unordered_map<Conn*, ConnRecord> conns_;
    int32_t next_conn_id_ = 0;
    bool shutting_down_ = false;
};

}  // namespace strata::iscsi::internal
