// Private state of the NVMe-oF core: the Target (a Host slot), subsystems, namespaces,
// controllers, and the per-qpair state the I/O path uses.
//
// Threads: Target, Subsystem, Namespace and Controller live on the Target's Thread (the Thread
// that first used the Target: the app Thread). Qpair::CoreState lives on the qpair's Thread,
// except its `ctl` part, which is the Target's Thread's view of the qpair (its controller and
// queue id). Neither Thread writes what the other reads: a successful Connect sets `ctl` on the
// Target's Thread and hands the qpair's own state (queue id, namespace view, poll group) over in
// the Connect completion message (attach_qpair). A PollGroup is written and read only on its
// Thread; the Target's Thread gathers poll group and qpair counters by messaging their Threads.
#pragma once

#include <array>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/nvme/spec/log_pages.h>
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

// The core's statistics of one Thread that runs qpairs (SPDK's spdk_nvmf_poll_group stat):
// created on the Target's Thread (a transport announcing its poll group Thread, or the first
// Connect of a qpair on a Thread), owned by the Target, its counters written and read only on
// its own Thread (thread_id and stats.name are fixed at creation).
struct PollGroup {
    uint32_t thread_id = 0;
    PollGroupStats stats;  // `transports` unused here
};

// Request::Core.state bit: the command went to the Target's Thread (Fabrics/admin), where its
// error (if any) is logged; I/O commands are logged from the qpair's Thread.
inline constexpr uint32_t kReqControl = 0x8000'0000u;

// An error log entry on its way from a qpair's Thread to the controller (Target's Thread) and
// back: a fixed slot of the qpair, so an I/O error allocates nothing.
struct ErrorSlot {
    spec::ErrorInfoEntry entry{};
    Qpair* qpair = nullptr;
    uint32_t lost = 0;  // errors before this one that found every slot busy (not logged)
    bool busy = false;  // the qpair's Thread only
};
inline constexpr uint32_t kErrorSlots = 4;
inline constexpr uint32_t kErrorLogEntries = 128;  // Identify ELPE + 1, per controller

struct Qpair::CoreState {
    // ---- the qpair's Thread ----
    std::vector<NsChannel> ns;            // index nsid - 1 (I/O qpairs)
    Request* fused_first = nullptr;       // a held Compare (FUSE first)
    IntrusiveList<Request, RequestCoreTag> deferred;  // completions to send (never inside exec)
    bool flush_scheduled = false;
    bool in_exec = false;  // completions inside exec() are deferred
    PollGroup* group = nullptr;  // from the Connect completion
    bool counted = false;        // in group's current_*_qpairs
    std::array<ErrorSlot, kErrorSlots> err_slots{};
    uint32_t err_lost = 0;

    // ---- the Target's Thread only ----
    struct Control {
        Controller* ctrlr = nullptr;  // set by a successful Connect, cleared when detached
        uint16_t qid = 0;
        bool disconnecting = false;  // the core asked the transport to drop it
    } ctl;
};

// What a successful Connect hands to the qpair's Thread with its completion.
struct Attach {
    Controller* ctrlr = nullptr;  // opaque on the qpair's Thread (Qpair::connected())
    uint16_t qid = 0;
    uint16_t sqsize = 0;
    PollGroup* group = nullptr;
    std::vector<NsChannel> ns;  // I/O queues: the subsystem's namespaces at Connect
};

struct QpairAccess {
    // The qpair's Thread only.
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
    uint64_t error_count = 0;             // errors over the controller's life (SMART)
    std::vector<spec::ErrorInfoEntry> errlog;  // ring of kErrorLogEntries
    uint64_t errlog_stored = 0;           // entries ever written to the ring
    QpairStats retired{};                 // counters of its qpairs that are gone (SMART)

    uint32_t live_qpairs() const;
    void notify_ns_changed(uint32_t nsid);
    void flush_aens();
    void disconnect_all();  // asks every qpair's transport to disconnect
    // Logs an error (the Error Information log, newest first); `lost` errors before it were
    // counted but not logged.
    void log_error(const spec::ErrorInfoEntry& e, uint32_t lost = 0);
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
    std::vector<std::unique_ptr<PollGroup>> groups;  // by Thread id, in creation order

    Subsystem* find(std::string_view nqn) const;
    runtime::Thread& home();  // the Target's Thread (set on first use from a Thread)
    PollGroup& group_for(runtime::Thread& thread);
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
// On the Target's Thread, after a successful Connect: the qpair's Thread applies `a` (queue id,
// namespace view, poll group), then the Connect completes.
void finish_connect(Request& req, std::unique_ptr<Attach> a) noexcept;
// The Error Information log entry of a command completed with an error (pure).
spec::ErrorInfoEntry error_entry(const Request& req, uint16_t sqid) noexcept;
// Takes a reference on the qpair (a message in flight to it); drop_ref on its Thread.
void take_ref(Qpair& q) noexcept;
void drop_ref(Qpair& q) noexcept;

std::string uuid_text(const std::array<uint8_t, 16>& u);
bool parse_uuid(std::string_view text, std::array<uint8_t, 16>& out);
std::string hex_text(const uint8_t* p, size_t n);

}  // namespace strata::nvmf
