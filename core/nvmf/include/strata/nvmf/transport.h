// The NVMe-oF target's transport-facing interface: what a transport (TCP today) gives the
// transport-independent core and what the core gives back.
//
//   transport                                   core (strata_nvmf)
//   ---------                                   ------------------
//   registers a Transport with the Target  -->  Target::add_transport
//   nvmf_subsystem_add_listener RPC        <--  Transport::listen / stop_listening
//   accepts a connection, creates a Qpair
//     (a class deriving from nvmf::Qpair,
//      owned by the transport, on one Thread)
//   per capsule: fills a Request (SQE,     -->  nvmf::exec(Request&)
//     data iovecs, length, direction);
//     for host-to-controller data the data
//     is already in the iovecs
//                                          <--  Qpair::complete(Request&): CQE filled (and for
//                                               controller-to-host data, the iovecs); exactly
//                                               once per exec, on the qpair's Thread, never
//                                               inside exec()
//   send the response (and C2H data)
//                                          <--  Qpair::disconnect(): the core wants the qpair
//                                               gone (keep-alive expiry, Disconnect command,
//                                               subsystem deleted, controller destroyed)
//   connection gone (peer closed, protocol -->  Qpair::closed(): from now on the core hands no
//     error, or after disconnect())              new work to it and completes what it holds
//   frees the Qpair in Qpair::released()  <--  after closed(), once nothing is outstanding (in-
//                                               flight bdev I/O still uses the Request's buffers
//                                               until its complete() call)
//
// Threads: a Qpair belongs to one Thread (its connection's poll group) for its whole life:
// exec(), complete(), disconnect() and closed() all run there. Subsystems, controllers and the
// Target live on the Target's Thread (the app Thread that created it, where RPCs run); the core
// crosses between the two by message. Nothing here allocates per I/O.
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/status.h>
#include <strata/bdev/bdev.h>
#include <strata/nvme/spec/fabrics.h>
#include <strata/nvme/spec/queue.h>
#include <strata/runtime/thread.h>

namespace strata::nvmf {

class Controller;
class Qpair;
class Target;
class Transport;

// Data transfer direction of a command (the opcode's bits 1:0; Fabrics commands use the
// Fabrics command type's bits 1:0 instead: Connect and Property Set carry host-to-controller
// data, Property Get none).
enum class XferDir : uint8_t { none = 0, host_to_controller = 1, controller_to_host = 2 };
XferDir xfer_direction(const nvme::spec::Sqe& cmd) noexcept;

inline constexpr uint32_t kMaxRequestIov = 16;

// One command capsule in flight. Owned by the transport (from a per-qpair pool); the core
// keeps its private state in it, so nothing is allocated per command.
struct RequestCoreTag;
struct Request : ListHook<RequestCoreTag> {  // the hook is the core's (held/pending lists)
    // ---- filled by the transport before exec() ----
    nvme::spec::Sqe cmd{};
    Qpair* qpair = nullptr;
    // The data buffer (transport memory, never copied by the core for I/O): `length` bytes
    // described by iov[0..iovcnt). host_to_controller: holds the host's data at exec();
    // controller_to_host: the core fills it before complete() and the transport sends
    // `length` bytes (admin commands zero what they do not use).
    std::array<iovec, kMaxRequestIov> iov{};
    uint32_t iovcnt = 0;
    uint32_t length = 0;
    XferDir xfer = XferDir::none;

    // ---- filled by the core before Qpair::complete() ----
    // The transport sets SQHD (flow control) itself; the core sets CID, status, DW0/DW1.
    nvme::spec::Cqe rsp{};

    // ---- core private ----
    struct Core {
        Request* fused_next = nullptr;
        uint64_t slba = 0;
        uint32_t nlb = 0;
        uint32_t nsid = 0;
        uint32_t state = 0;
        void* aux = nullptr;
        bdev::IoWaitEntry wait{};  // retry when the bdev_io pool was empty
    } core;

    // Resets the core-private part and the response (a transport reusing a Request calls this
    // before filling it again; exec() does not require it).
    void reset_core() noexcept {
        core = Core{};
        rsp = nvme::spec::Cqe{};
    }
};

// Runs one command (any: Fabrics, admin, I/O) on its qpair. Called by the transport on the
// qpair's Thread. Exactly one Qpair::complete(req) follows, later (never inside exec), with
// rsp set. The Request, its qpair and its buffers must stay valid until then.
void exec(Request& req) noexcept;

// Statistics kept per qpair by the core (nvmf_get_stats, nvmf_subsystem_get_qpairs).
struct QpairStats {
    uint64_t commands = 0;
    uint64_t admin_commands = 0;
    uint64_t io_commands = 0;
    uint64_t errors = 0;
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    uint64_t read_commands = 0;   // Read, Compare completed successfully (SMART)
    uint64_t write_commands = 0;  // Write, Write Zeroes completed successfully (SMART)
};

// A transport address (SPDK's listen_address / transport id).
struct TransportAddress {
    std::string trtype;   // "TCP" (as given, compared case-insensitively)
    std::string adrfam;   // "IPv4", "IPv6"
    std::string traddr;   // "127.0.0.1"
    std::string trsvcid;  // "4420"
    bool operator==(const TransportAddress& o) const noexcept;
};

// The core's half of a queue pair. A transport connection derives from it (or owns one).
class Qpair {
public:
    Qpair(Transport& transport, runtime::Thread& thread) noexcept;
    virtual ~Qpair();
    Qpair(const Qpair&) = delete;
    Qpair& operator=(const Qpair&) = delete;

    // ---- the transport implements ----
    // Send req's response (and controller-to-host data). On the qpair's Thread.
    virtual void complete(Request& req) noexcept = 0;
    // The core wants this qpair gone: close the connection (if not already closing), then
    // call closed(). Idempotent. On the qpair's Thread.
    virtual void disconnect() noexcept = 0;
    // After closed(): the core holds nothing of this qpair any more (outstanding() == 0); the
    // transport may delete it now, from inside this call. Called once, on the qpair's Thread
    // (possibly from inside closed() when nothing was outstanding).
    virtual void released() noexcept {}
    // Addresses for nvmf_subsystem_get_qpairs ("listen_address", "peer_address").
    virtual TransportAddress listen_address() const { return {}; }
    virtual TransportAddress peer_address() const { return {}; }

    // ---- the transport calls ----
    // The connection is gone (peer closed, protocol error, or after disconnect()): the core
    // completes what it holds (AERs, a fused first half) and hands out nothing new; bdev I/O in
    // flight completes through complete() as usual. Call once, on the qpair's Thread.
    void closed() noexcept;
    // Requests exec()'d and not yet completed, plus the core's own references (messages in
    // flight to this qpair): free the Qpair only once this is 0 after closed() (released()).
    uint32_t outstanding() const noexcept { return outstanding_.load(std::memory_order_acquire); }

    // ---- state (the qpair's Thread) ----
    // Set when the Connect completion reaches the qpair's Thread, before complete(); the
    // Target's Thread keeps its own view and never reads or writes these.
    uint16_t qid() const noexcept { return qid_; }
    uint16_t sq_size() const noexcept { return sqsize_; }  // entries (1's based); 0 before Connect
    bool connected() const noexcept { return ctrlr_ != nullptr; }
    Controller* controller() const noexcept { return ctrlr_; }  // nullptr until Connect
    runtime::Thread& thread() const noexcept { return *thread_; }
    Transport& transport() const noexcept { return *transport_; }
    const QpairStats& stats() const noexcept { return stats_; }  // written on the qpair's Thread
    bool is_closed() const noexcept { return closed_; }

    struct CoreState;  // core private (namespace channels, held requests ...)
    CoreState& core() noexcept { return *core_; }

private:
    friend struct QpairAccess;
    Transport* transport_;
    runtime::Thread* thread_;
    Controller* ctrlr_ = nullptr;
    uint16_t qid_ = 0;
    uint16_t sqsize_ = 0;
    bool closed_ = false;
    std::atomic<uint32_t> outstanding_{0};
    QpairStats stats_{};
    std::unique_ptr<CoreState> core_;
};

// Transport parameters the core needs to know (Identify Controller fabrics fields, CAP.MQES
// ...), filled by the transport from nvmf_create_transport's options.
struct TransportLimits {
    uint32_t max_queue_depth = 128;       // CAP.MQES + 1, and the largest sqsize + 1 accepted
    uint32_t max_qpairs_per_ctrlr = 128;  // admin included
    uint32_t in_capsule_data_size = 4096;  // IOCCSZ = (64 + this) / 16
    uint32_t max_io_size = 131072;         // MDTS (with 4 KiB pages)
    uint32_t io_unit_size = 131072;
    uint32_t max_aq_depth = 128;            // admin queue
    uint8_t msdbd = 1;                      // SGL data block descriptors per command
};

// A transport (TCP). Registered with the Target; the Target calls it to listen.
class Transport {
public:
    virtual ~Transport() = default;
    virtual std::string_view name() const noexcept = 0;  // "TCP", matched case-insensitively
    virtual nvme::spec::TransportType trtype() const noexcept = 0;
    virtual const TransportLimits& limits() const noexcept = 0;
    // Start / stop accepting on an address. Control path, on the Target's Thread; may be
    // called for an address already listened on (another subsystem): count references.
    virtual Status listen(const TransportAddress& addr) = 0;
    virtual void stop_listening(const TransportAddress& addr) = 0;
    // nvmf_get_transports: the transport's options as a JSON object text ({"trtype":"TCP",...}).
    virtual std::string options_json() const = 0;
};

// The Target: every subsystem, the registered transports; one per Host
// (runtime::current_host().get<nvmf::Target>()). Control path, on its Thread.
Target& target();  // the current Host's Target

// Registering a transport (the TCP half calls this from nvmf_create_transport; Errc::exists if
// one with that name is there). The Target keeps the Transport until the Host goes.
Status add_transport(std::unique_ptr<Transport> transport);
Transport* find_transport(std::string_view name) noexcept;  // case-insensitive
std::vector<Transport*> transports();
// A transport's poll group Thread: nvmf_get_stats lists it from now on (a Thread where a qpair
// connects is listed from its first Connect anyway). On the Target's Thread.
void add_poll_group(runtime::Thread& thread);

}  // namespace strata::nvmf
