// The NVMe driver (PCIe transport, and NVMe/TCP: Controller::connect): a controller attached through env, its namespaces, and the
// I/O queue pairs of its Threads (qpair.h).
//
// Threads. A Controller belongs to the Thread that attached it (its admin Thread): every method
// here runs there, and the admin queue, asynchronous events, timeouts' aborts and resets are
// processed by the controller's pollers on it. A QPair belongs to the Thread that will submit on
// it (its owner) and is driven there alone; admin-side work on a qpair (creating, deleting,
// reconnecting its queues) travels by message, so no lock is taken anywhere.
//
// Lifecycle:
//   auto ctrl = co_await Controller::attach(address, options);   // on the admin Thread
//   auto qp = ctrl->alloc_io_qpair(*io_thread, {});              // admin Thread; connects async
//   ... io_thread: qp->read(ns, buf, lba, blocks, done, ctx) ...  // queued until connected
//   ctrl->free_io_qpair(std::move(qp), done, ctx);                 // owner Thread
//   co_await ctrl->detach();                                       // admin Thread
//
// Failure handling. A command outstanding longer than timeout_us is aborted (Abort command);
// if it is still outstanding one more timeout later, or the abort fails, the controller is
// reset. A reset disconnects every qpair (each fails its outstanding commands exactly once with
// kStatusResetAborted, by message on its owner), re-initialises the controller, re-creates every
// I/O queue and reconnects the qpairs; commands submitted meanwhile wait and then go out. CSTS.CFS
// (controller fatal status) also triggers a reset. A failed reset, or a hot removal, fails the
// controller: every command ends with kStatusControllerGone and new ones are refused with
// Errc::device_removed.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/env/pci.h>
#include <strata/nvme/completion.h>
#include <strata/nvme/spec/identify.h>
#include <strata/nvme/spec/opcodes.h>
#include <strata/nvme/spec/registers.h>
#include <strata/nvme/spec/queue.h>
#include <strata/nvme/transport_id.h>
#include <strata/runtime/task.h>
#include <strata/sock/sock.h>

namespace strata::nvme {

class QPair;
struct QPairOptions;
class ControllerImpl;

struct ControllerOptions {
    uint32_t admin_queue_entries = 32;
    uint32_t io_queues_requested = 64;  // Set Features / Number of Queues
    uint32_t async_event_requests = 4;  // outstanding AERs, at most the controller's AERL + 1
    uint64_t timeout_us = 0;            // I/O and admin command timeout; 0: none
    uint64_t admin_timeout_us = 5'000'000;  // init-time admin commands
    bool use_sgl = true;                // use SGLs when the controller supports them and PRPs cannot
                                        // describe the buffer
    bool shutdown_on_detach = true;     // CC.SHN normal shutdown (flushes the device's cache)

    // ---- NVMe-oF (Controller::connect; ignored by attach). Names and defaults follow SPDK's
    // bdev_nvme_attach_controller where it has them.
    std::string hostnqn;  // empty: this Host's "nqn.2014-08.org.nvmexpress:uuid:<uuid>"
    std::array<uint8_t, 16> hostid{};  // zero: the UUID of the default host NQN (or a new one)
    bool header_digest = false;        // hdgst: ask for CRC-32C header digests
    bool data_digest = false;          // ddgst: ask for CRC-32C data digests
    uint32_t keep_alive_timeout_ms = 10'000;  // KATO in Connect; Keep Alive sent every KATO/2
    // After a connection loss the controller reconnects (admin + every I/O qpair), retrying
    // every reconnect_delay_sec, and fails for good once ctrlr_loss_timeout_sec have passed
    // (-1: never; 0: a single attempt). fast_io_fail_timeout_sec (0: off): after this long,
    // queued I/O fails and new I/O is refused until the reconnect succeeds.
    int32_t ctrlr_loss_timeout_sec = 0;
    uint32_t reconnect_delay_sec = 0;
    uint32_t fast_io_fail_timeout_sec = 0;
    uint32_t connect_timeout_ms = 10'000;  // socket + ICReq + Connect, per queue
    std::string sock_impl;                 // "posix", "uring", "sim"; empty: the Host default
    // Opens a queue's connection; empty: sock::connect. Tests plug a socket double in here.
    std::function<Result<std::unique_ptr<sock::Socket>>(const sock::Endpoint&)> connect_socket;
};

// One record of a discovery log page (log page 70h), decoded.
struct DiscoveryEntry {
    TransportId trid;      // trtype, adrfam, traddr, trsvcid, subnqn
    uint8_t subtype = 0;   // 1 referral, 2 NVMe subsystem, 3 current discovery subsystem
    uint16_t portid = 0;
    uint16_t cntlid = 0;
    uint16_t asqsz = 0;
    uint8_t treq = 0;
};

// A namespace as the driver knows it. Read it on the admin Thread; qpairs take it by const
// reference for the block size and id only.
struct Namespace {
    uint32_t id = 0;
    uint32_t block_size_bytes = 0;
    uint64_t num_blocks = 0;
    uint32_t max_io_blocks = 0;  // per command, from MDTS and the driver's PRP list size
    bool active = false;
    spec::IdentifyNamespace identify{};  // NGUID and EUI-64 are there (zero: not reported)
    // The Namespace UUID from the Namespace Identification Descriptor list (NVMe 1.3+); zero
    // when the controller lists none.
    std::array<uint8_t, 16> uuid{};
    uint64_t size_bytes() const noexcept { return num_blocks * block_size_bytes; }
};

struct ControllerStats {
    uint64_t admin_commands = 0;
    uint64_t async_events = 0;
    uint64_t timeouts = 0;
    uint64_t aborts_sent = 0;
    uint64_t resets = 0;
    uint64_t failed_resets = 0;
    uint64_t bad_completions = 0;  // admin queue: bad command id, SQ head or SQ id (rejected)
    uint64_t power_losses = 0;     // resets that found the controller power-cycled (power_losses())
};

struct AdminResult {
    Completion cpl;
};

enum class ControllerState { initializing, ready, resetting, failed, removed, detached };
const char* state_name(ControllerState s) noexcept;

class Controller {
public:
    // Claims `address` through env and runs the init state machine: disable if enabled, admin
    // queue, enable (CSTS.RDY within CAP.TO), Identify Controller, Number of Queues, namespace
    // discovery, AERs. Runs on (and binds the controller to) the calling Thread. Errors name
    // the step: Errc::timeout (the controller did not become ready in CAP.TO), io_error (fatal
    // status, failed admin command), not_supported (no NVM command set, 4 KiB pages not
    // supported), device_removed.
    static runtime::Task<Result<std::unique_ptr<Controller>>> attach(const env::PciAddress& address,
                                                                    ControllerOptions options = {});
    // NVMe-oF (trtype TCP) or PCIe (trtype PCIe: attach(traddr)). For TCP: connects the admin
    // queue (ICReq/ICResp, Fabrics Connect with KATO), reads CAP and VS and enables the
    // controller through Property Get/Set, then the same init as attach (Identify, Number of
    // Queues, namespaces, AERs). I/O qpairs are connections of their own, connected on their
    // owner Thread. Errors: invalid_argument (bad transport id), not_supported (trtype),
    // io_error / timeout / protocol_error naming the step.
    static runtime::Task<Result<std::unique_ptr<Controller>>> connect(const TransportId& trid,
                                                                     ControllerOptions options = {});
    // Connects to a discovery controller (subnqn empty: the well-known discovery NQN), reads
    // the whole discovery log page and disconnects. Run on a Thread.
    static runtime::Task<Result<std::vector<DiscoveryEntry>>> discover(const TransportId& trid,
                                                                       ControllerOptions options = {});
    ~Controller();  // detaches synchronously if still attached (no shutdown notification)
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    const env::PciAddress& address() const noexcept;  // PCIe; zero for fabrics
    const TransportId& transport_id() const noexcept;
    bool is_fabrics() const noexcept;
    const std::string& host_nqn() const noexcept;  // fabrics: the host NQN used
    uint16_t cntlid() const noexcept;               // fabrics: from Connect
    runtime::Thread& admin_thread() const noexcept;
    ControllerState state() const noexcept;
    const spec::IdentifyController& identify() const noexcept;
    const spec::Cap& cap() const noexcept;
    uint32_t version() const noexcept;             // VS register
    uint32_t io_queues_granted() const noexcept;   // from Number of Queues
    uint64_t max_transfer_bytes() const noexcept;  // per command (MDTS and driver limits)
    bool sgl_supported() const noexcept;
    const ControllerStats& stats() const noexcept;
    // How many times a reset found the controller back in its power-on state (CC.EN 0 although
    // the driver had enabled it): the device lost power, or reset itself, while the host ran
    // on. Its volatile write cache went with it, so writes that completed before and were not
    // flushed may be gone although every later command, flushes included, succeeds. Counted
    // before the reset reconnects any qpair (so a completion after the reset sees it); any
    // Thread.
    uint64_t power_losses() const noexcept;

    // Active namespaces by id (ascending). Updated on namespace-change events.
    std::vector<const Namespace*> namespaces() const;
    const Namespace* find_namespace(uint32_t nsid) const noexcept;
    // Called on the admin Thread after the namespace list changed (an AEN or a reset).
    void on_namespace_change(std::function<void(Controller&)> fn);
    // Called on the admin Thread when the controller is removed or fails for good.
    void on_failure(std::function<void(Controller&, Errc)> fn);

    // An admin command: the driver assigns the command id and the data pointer; `buf` (DMA
    // memory or nullptr, at most 4 KiB... max_transfer_bytes) is the data buffer. Returns the
    // completion; Errc::timeout when no completion came within admin_timeout_us (the controller
    // is then reset).
    runtime::Task<Result<Completion>> admin(spec::Sqe sqe, void* buf = nullptr, size_t len = 0);
    // Error injection on the admin queue (see ErrorInjection); admin Thread.
    void add_admin_error_injection(const ErrorInjection& e);
    void remove_admin_error_injection(uint8_t opc);
    // Identify/log helpers built on admin().
    runtime::Task<Result<void>> get_log_page(spec::LogPage lid, uint32_t nsid, void* buf,
                                             size_t len, uint64_t offset = 0);

    // A new I/O qpair for `owner`. Memory and a queue id are reserved here; the queues are
    // created on the device asynchronously, and I/O submitted before that waits. Errc::no_space
    // when every granted queue id is in use, no_memory, device_removed.
    Result<std::unique_ptr<QPair>> alloc_io_qpair(runtime::Thread& owner, const QPairOptions& options);
    // Deletes the qpair's queues and frees it. Call on the qpair's owner Thread; outstanding
    // commands complete with kStatusResetAborted first. `done` (may be null) runs on the owner.
    void free_io_qpair(std::unique_ptr<QPair> qpair, runtime::MsgFn done = nullptr,
                       void* ctx = nullptr);

    // Resets the controller now (see the header comment). Completes when the qpairs are
    // reconnected, or with the error that failed the controller.
    runtime::Task<Result<void>> reset();
    // Shutdown notification (if configured), then releases the PCI function. Every qpair must
    // have been freed first (Errc::busy otherwise). Idempotent.
    runtime::Task<Result<void>> detach();

    ControllerImpl& impl() noexcept { return *impl_; }

private:
    explicit Controller(std::unique_ptr<ControllerImpl> impl);
    std::unique_ptr<ControllerImpl> impl_;
};

}  // namespace strata::nvme
