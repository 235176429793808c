// Private state of the NVMe-oF core: the Target (a Host slot), subsystems, namespaces,
// controllers, and the per-qpair state the I/O path uses.
//
// Threads: Target, Subsystem, Namespace and Controller live on the Target's Thread (the Thread
// that first used the Target: the app Thread). Qpair::CoreState lives on the qpair's Thread;
// the Target's Thread writes it only before the qpair is connected (the Connect completion
// message orders that) and otherwise reaches it by message.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/nvme/spec/spec.h>
#include <strata/nvmf/nvmf.h>
#include <strata/nvmf/transport.h>
#include <strata/runtime/host.h>
#include <strata/runtime/thread.h>

namespace strata::nvmf {

namespace spec = nvme::spec;

struct Subsystem;
class Controller;

struct Namespace {
    uint32_t nsid = 0;
    std::string bdev_name;
    std::unique_ptr<bdev::Desc> desc;
    std::array<uint8_t, 16> uuid{};
    std::array<uint8_t, 16> nguid{};
    std::array<uint8_t, 8> eui64{};
    bool uuid_given = false;
    uint32_t block_size = 0;
    uint64_t num_blocks = 0;
    bool removing = false;
};

struct Subsystem {
    SubsystemOptions opts;
    bool discovery = false;
    std::vector<std::unique_ptr<Namespace>> ns;  // index nsid - 1; size max_namespaces
    std::vector<TransportAddress> listeners;
    std::vector<std::string> hosts;
    std::vector<Controller*> ctrlrs;
    uint16_t next_cntlid = 1;
    bool deleting = false;

    bool host_allowed(std::string_view hostnqn) const;
    Namespace* find_ns(uint32_t nsid) const;
};

// A qpair's view of one namespace (on the qpair's Thread).
struct NsChannel {
    bdev::Desc* desc = nullptr;
    bdev::Channel* ch = nullptr;
    uint32_t block_size = 0;
    uint64_t num_blocks = 0;
    uint32_t inflight = 0;
    bool active = false;
    std::function<void()> on_drained;  // removal waiting for in-flight I/O
};

struct Qpair::CoreState {
    std::vector<NsChannel> ns;            // index nsid - 1 (I/O qpairs)
    Request* fused_first = nullptr;       // a held Compare (FUSE first)
    bool detached = false;                // the Target's Thread dropped it
    IntrusiveList<Request, RequestCoreTag> deferred;  // completions to send (never inside exec)
    bool flush_scheduled = false;
    bool in_exec = false;  // completions inside exec() are deferred
};

struct QpairAccess {
    static void set(Qpair& q, Controller* c, uint16_t qid, uint16_t sqsize) {
        q.ctrlr_ = c;
        q.qid_ = qid;
        q.sqsize_ = sqsize;
    }
    static std::atomic<uint32_t>& outstanding(Qpair& q) { return q.outstanding_; }
    static QpairStats& stats(Qpair& q) { return q.stats_; }
};

class Controller {
public:
    Controller(Subsystem& subsys, uint16_t cntlid, std::string hostnqn,
               std::array<uint8_t, 16> hostid, Qpair& admin, uint32_t kato_ms);
    ~Controller();

    Subsystem* subsys;
    uint16_t cntlid;
    std::string hostnqn;
    std::array<uint8_t, 16> hostid;
    Qpair* admin;
    std::vector<Qpair*> qpairs;  // index qid (admin at 0); nullptr when free
    uint32_t cc = 0;
    uint32_t csts = 0;
    uint32_t kato_ms = 0;
    uint64_t last_keep_alive_ns = 0;
    runtime::Poller* ka_poller = nullptr;
    uint32_t num_io_queues = 0;  // granted (1's based)
    bool num_queues_set = false;
    uint32_t aec = 0;
    bool vwc_enabled = false;
    IntrusiveList<Request, RequestCoreTag> aers;
    std::deque<uint32_t> pending_aens;  // CQE DW0 values
    bool ns_notice_masked = false;      // sent, until the changed ns list is read
    std::vector<uint32_t> changed_ns;
    bool changed_ns_overflow = false;
    bool failed = false;
    bool admin_gone = false;
    uint64_t error_count = 0;

    uint32_t live_qpairs() const;
    void notify_ns_changed(uint32_t nsid);
    void flush_aens();
    void disconnect_all();  // asks every qpair's transport to disconnect
};

class Target {
public:
    explicit Target(runtime::Host& host);
    ~Target();

    runtime::Host* host;
    runtime::Thread* thread = nullptr;
    std::vector<std::unique_ptr<Transport>> transports;
    std::vector<std::unique_ptr<Subsystem>> subsystems;  // [0] the discovery subsystem
    uint64_t genctr = 0;
    TargetStats counters;

    Subsystem* find(std::string_view nqn) const;
    runtime::Thread& home();  // the Target's Thread (set on first use from a Thread)
};

Target& target_impl();

// Helpers shared by the core's files.
void set_status(Request& req, uint8_t sct, uint8_t sc, bool dnr = false) noexcept;
void set_generic(Request& req, spec::GenericStatus sc, bool dnr = true) noexcept;
// Completes on the qpair's Thread: from the qpair's Thread outside exec, or any other Thread.
void finish(Request& req) noexcept;        // from the Target's Thread (message to the qpair)
void finish_local(Request& req) noexcept;  // on the qpair's Thread, not inside exec
void finish_deferred(Request& req) noexcept;  // on the qpair's Thread, possibly inside exec

// Copies between a Request's iovecs and a flat buffer (bounded by both lengths).
size_t copy_to_iov(Request& req, const void* data, size_t len, size_t offset = 0) noexcept;
size_t copy_from_iov(const Request& req, void* data, size_t len, size_t offset = 0) noexcept;
void zero_iov(Request& req) noexcept;

// Admin/Fabrics on the Target's Thread; I/O on the qpair's Thread.
void exec_control(Request& req) noexcept;
void exec_io(Request& req) noexcept;
// Qpair teardown on the I/O side (qpair Thread): put channels, drop the held fused command.
void io_qpair_closed(Qpair& q) noexcept;
// Takes a reference on the qpair (a message in flight to it); drop_ref on its Thread.
void take_ref(Qpair& q) noexcept;
void drop_ref(Qpair& q) noexcept;

std::string uuid_text(const std::array<uint8_t, 16>& u);
bool parse_uuid(std::string_view text, std::array<uint8_t, 16>& out);
std::string hex_text(const uint8_t* p, size_t n);

}  // namespace strata::nvmf
