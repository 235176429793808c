// Driver internals shared by the controller (admin side) and the queue pairs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/intrusive_list.h>
#include <strata/base/log.h>
#include <strata/env/translation_cache.h>
#include <strata/env/pci.h>
#include <strata/nvme/controller.h>
#include <strata/nvme/qpair.h>
#include <strata/nvme/spec/spec.h>
#include <strata/nvme/transport_id.h>

namespace strata::nvme {

STRATA_LOG_COMPONENT(nvme);

// co_return the error of a failed Result/Status from a control-path coroutine.
inline Error error_of(const Status& s) { return Error(s); }
template <class T>
Error error_of(const Result<T>& r) { return r.error(); }

#define STRATA_NVME_CO_TRY(expr)                               \
    do {                                                       \
        auto nvme_try_ = (expr);                               \
        if (!nvme_try_.ok()) co_return error_of(nvme_try_);    \
    } while (0)

// The CC value that enables a controller, PCIe or fabrics alike: NVM command set, 4 KiB
// pages, round robin, 64-byte SQ and 16-byte CQ entries.
spec::Cc enabling_cc() noexcept;

// Every request owns one page-aligned 4 KiB slot of DMA memory for its PRP list, SGL segment or
// DSM ranges, so no list ever crosses a page and none needs chaining.
inline constexpr uint32_t kListSlotBytes = 4096;
inline constexpr uint32_t kPageBytes = 4096;  // CC.MPS = 0
inline constexpr uint32_t kMaxPrpEntries = kListSlotBytes / 8;
inline constexpr uint32_t kMaxSglDescriptors = kListSlotBytes / 16;
inline constexpr uint32_t kMaxIovaSegments = 64;
// The driver's own per-command limit: one list page of PRP entries after PRP1.
inline constexpr uint64_t kDriverMaxTransferBytes = uint64_t{kMaxPrpEntries} * kPageBytes;

struct Request : ListHook<> {
    enum class State : uint8_t { free, waiting, outstanding, zombie };
    spec::Sqe sqe{};
    IoDoneFn done = nullptr;
    void* ctx = nullptr;
    uint64_t submit_ns = 0;
    uint64_t* list = nullptr;  // this request's slot
    uint64_t list_iova = 0;
    uint16_t cid = 0;
    State state = State::free;
    bool abort_sent = false;
    bool timed_out = false;
    bool no_timeout = false;  // AERs wait for events, not for the device
    spec::StatusField held_status{};  // a do_not_submit injection's status (submit_ns: due)
};

// The error injections armed on a qpair and the commands a do_not_submit one holds. Allocated
// when the first injection is armed; the data path only tests the pointer.
struct Injections {
    std::vector<ErrorInjection> list;
    IntrusiveList<Request> held;
};

enum class Link : uint8_t { connecting, connected, disconnected, failed, freeing };

struct TcpReq;
struct TcpConn;  // the NVMe/TCP transport state of a queue pair (tcp.h)

class QPairImpl {
public:
    QPairImpl(ControllerImpl& ctrl, runtime::Thread& owner, uint16_t qid, uint32_t entries,
              uint32_t requests, uint32_t max_completions, uint64_t timeout_us);
    ~QPairImpl();
    QPairImpl(const QPairImpl&) = delete;
    QPairImpl& operator=(const QPairImpl&) = delete;

    // Control path (owner Thread, or the admin Thread for the admin queue).
    Status allocate();  // queue and slot memory; Errc::no_memory
    void start_pollers(bool own_poller);
    void stop_pollers();
    // The device queues are gone: fail outstanding commands (exactly once), reset the rings.
    void disconnect(spec::StatusField status);
    void mark_connected();  // queues exist on the device again: send what waited
    void fail(spec::StatusField status);  // the controller is gone for good

    // Data path.
    Status submit(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len, IoDoneFn done,
                  void* ctx, bool no_timeout = false) noexcept;
    Status submit_with_list(const spec::Sqe& sqe, const void* list, size_t list_bytes,
                            IoDoneFn done, void* ctx) noexcept;
    void ring_sq_doorbell() noexcept;
    uint32_t reap(uint32_t max) noexcept;
    uint32_t ring_distance(uint32_t to, uint32_t from) const noexcept;
    uint32_t process(uint32_t max) noexcept;  // doorbell, reap, send what waited
    uint32_t outstanding_count() const noexcept { return static_cast<uint32_t>(outstanding_.size()); }
    void add_injection(const ErrorInjection& e);
    void remove_injection(uint8_t opc);

    // ---- NVMe/TCP transport (tcp_qpair.cpp). A qpair is TCP when `tcp` is set; the PCIe data
    // path tests that pointer once per submitted command (submit, submit_with_list) and once
    // per poll (process, ring_sq_doorbell, send_waiting): one predictable branch, no virtual
    // call. Requests, their lists, timeouts and the exactly-once failure paths are shared.
    Status tcp_allocate();
    // Owner Thread: opens the connection and runs ICReq/ICResp and Fabrics Connect; `done`
    // runs once on the owner with the outcome (the qpair is then connected, or closed).
    void tcp_start_connect(std::function<void(Status)> done);
    // Owner Thread: closes the connection; outstanding commands complete with `status` once,
    // waiting ones stay queued for the next connection.
    void tcp_close(spec::StatusField status);
    // Fails waiting commands (fast_io_fail_timeout_sec) and refuses new ones until connected.
    void tcp_fast_fail(bool on);
    Status tcp_submit(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len,
                      IoDoneFn done, void* ctx, bool no_timeout) noexcept;
    uint32_t tcp_process(uint32_t max) noexcept;
    void tcp_flush() noexcept;
    void tcp_send_waiting() noexcept;
    std::unique_ptr<TcpConn> tcp;

    ControllerImpl& ctrl;
    runtime::Thread& owner;
    const uint16_t qid;
    const uint32_t entries;
    uint32_t max_completions;
    uint64_t timeout_ns;
    env::Bar bar;
    uint64_t sq_doorbell = 0, cq_doorbell = 0;
    spec::Sqe* sq = nullptr;
    spec::Cqe* cq = nullptr;
    uint64_t sq_iova = 0, cq_iova = 0;
    uint8_t* slots = nullptr;
    Link link = Link::connecting;
    bool sgl = false;
    bool reset_requested = false;  // by this qpair's timeout handling, once per connection
    QPairStats stats{};

private:
    friend struct TcpPeer;
    Request* take_request() noexcept;
    bool tcp_try_send(Request& r) noexcept;
    void tcp_lost(const char* why) noexcept;
    uint32_t tcp_recv(uint32_t max) noexcept;
    // Parses the buffered bytes until they are used up or `until_completed` is reached; false
    // once the connection is gone.
    bool tcp_rx_parse(uint64_t until_completed) noexcept;
    bool tcp_rx_placed(size_t n) noexcept;
    bool tcp_rx_c2h_done() noexcept;
    TcpReq* tcp_rx_target() noexcept;
    bool tcp_handle_header() noexcept;
    void tcp_pdu_sent(void* pdu) noexcept;
    void tcp_send_connect() noexcept;
    void tcp_protocol_error(const char* what) noexcept;
    static void tcp_connect_done(void* ctx, const Completion& cpl);
    Status build_data(Request& r, const iovec* iov, int iovcnt, size_t len) noexcept;
    void enqueue(Request& r) noexcept;
    bool try_send(Request& r) noexcept;
    void send_waiting() noexcept;
    void complete(Request& r, const Completion& cpl) noexcept;
    void finish(Request& r, const Completion& cpl) noexcept;
    // Error injection (slow path, only while inject_ is set).
    Status submit_plain(const spec::Sqe& sqe, const iovec* iov, int iovcnt, size_t len,
                        IoDoneFn done, void* ctx, bool no_timeout) noexcept;
    ErrorInjection* find_injection(uint8_t opc, bool do_not_submit) noexcept;
    bool hold_injected(const spec::Sqe& sqe, IoDoneFn done, void* ctx, Status& out) noexcept;
    uint32_t release_held(bool all, spec::StatusField status) noexcept;
    void drop_injections_if_idle() noexcept;
    void fail_list(IntrusiveList<Request>& list, spec::StatusField status) noexcept;
    void check_timeouts() noexcept;
    static runtime::PollStatus poll(void* ctx);
    static runtime::PollStatus poll_timeouts(void* ctx);

    uint32_t sq_tail_ = 0;
    uint32_t sq_head_ = 0;  // as last reported by the device
    uint32_t cq_head_ = 0;
    uint16_t phase_ = 1;
    uint32_t unrung_ = 0;  // commands written to the SQ since the last doorbell
    std::vector<Request> requests_;
    env::TranslationCache xlate_;  // the last DMA region build_data translated (owner Thread)
    IntrusiveList<Request> free_;
    IntrusiveList<Request> waiting_;
    IntrusiveList<Request> outstanding_;  // in submission order: the front is the oldest
    runtime::Poller* poller_ = nullptr;
    runtime::Poller* timeout_poller_ = nullptr;
    uint64_t bad_logged_ = 0;
    std::unique_ptr<Injections> inject_;  // null: no error injection armed
};

class ControllerImpl {
public:
    env::PciAddress address;
    // NVMe-oF: set by Controller::connect (fabrics.cpp). Registers are properties (Property
    // Get/Set on the admin queue), queues are connections.
    bool fabrics = false;
    TransportId trid;
    std::string hostnqn;
    std::array<uint8_t, 16> hostid{};
    uint16_t cntlid = 0;
    uint32_t ioccsz_bytes = 0;  // in-capsule data the I/O queues take (IOCCSZ * 16 - 64)
    std::string name;           // for logs: the PCI address or "traddr:trsvcid nqn"
    const char* label() const noexcept { return name.c_str(); }
    runtime::Poller* keep_alive_poller = nullptr;
    bool keep_alive_outstanding = false;
    uint64_t keep_alive_sent_ns = 0;
    uint64_t loss_started_ns = 0;
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // cleared by ~Controller
    ControllerOptions options;
    runtime::Thread* admin_thread = nullptr;
    std::unique_ptr<env::PciFunction> function;
    env::Bar bar;
    spec::Cap cap{};
    uint32_t vs = 0;
    spec::IdentifyController ident{};
    ControllerState state = ControllerState::initializing;
    uint32_t io_queues_granted = 0;
    uint64_t max_transfer = 0;
    bool sgl = false;
    ControllerStats stats{};
    std::atomic<uint64_t> power_losses{0};  // Controller::power_losses(); stats.power_losses too
    std::shared_ptr<QPairImpl> admin_qp;
    std::vector<std::shared_ptr<QPairImpl>> io_qps;
    // Freed qpairs whose queues are still being deleted: detach waits for them (the deleting
    // coroutine touches this controller when its admin commands complete).
    uint32_t qpairs_deleting = 0;
    std::vector<bool> qid_used;
    // Fabrics: where the next I/O queue id search starts. A target tears a queue down
    // asynchronously after its connection closes (Linux nvmet answers a Connect for a qid it
    // still holds with Command Sequence Error), so a just-freed qid is the last one reused.
    uint32_t next_fabrics_qid = 1;
    std::vector<std::unique_ptr<Namespace>> namespaces;  // sorted by id; inactive ones kept
    std::function<void(Controller&)> ns_change_fn;
    std::function<void(Controller&, Errc)> failure_fn;
    Controller* self = nullptr;
    runtime::Poller* health_poller = nullptr;
    bool resetting = false;
    // Counts resets started: an admin sequence that a reset overtook (it aborts the admin
    // queue) sees it change and leaves the queues to the reset.
    uint64_t reset_epoch = 0;
    std::vector<runtime::AsyncResult<Result<void>>*> reset_waiters;
    uint32_t aers_outstanding = 0;

    uint64_t doorbell_offset(uint16_t qid, bool cq) const noexcept {
        return cq ? spec::cq_head_doorbell(qid, static_cast<uint32_t>(cap.dstrd()))
                  : spec::sq_tail_doorbell(qid, static_cast<uint32_t>(cap.dstrd()));
    }
    bool gone() const noexcept {
        return state == ControllerState::failed || state == ControllerState::removed ||
               state == ControllerState::detached;
    }

    runtime::Task<Result<void>> init();
    runtime::Task<Result<void>> enable();
    runtime::Task<Result<void>> disable();
    // CSTS: a register read (PCIe) or a Property Get (fabrics).
    runtime::Task<Result<uint32_t>> read_csts();
    // Polls CSTS until RDY is `ready`, CFS (while enabling) or CAP.TO. PCIe and fabrics.
    runtime::Task<Result<void>> wait_ready(bool ready);
    // The steps after Identify Controller that PCIe and fabrics share: number of queues,
    // namespaces, async event configuration; then ready, with the AERs posted.
    runtime::Task<Result<void>> init_queues_and_events();
    runtime::Task<Result<Completion>> admin(spec::Sqe sqe, void* buf = nullptr, size_t len = 0);
    runtime::Task<Result<void>> identify_controller();
    runtime::Task<Result<void>> set_queue_count();
    runtime::Task<Result<void>> scan_namespaces();
    runtime::Task<Result<void>> create_io_queues(QPairImpl& qp);
    runtime::Task<Result<void>> do_reset();
    runtime::Task<void> delete_io_queues(std::shared_ptr<QPairImpl> qp);
    void submit_aers();
    void request_reset(const char* why);
    void fail_controller(Errc why, const char* what);
    void on_hot_remove();
    void abort_command(uint16_t qid, uint16_t cid);
    runtime::PollStatus check_health();

    // ---- NVMe-oF (fabrics.cpp)
    runtime::Task<Result<uint64_t>> prop_get(uint32_t ofst, bool eight_bytes);
    runtime::Task<Result<void>> prop_set(uint32_t ofst, uint64_t value, bool eight_bytes);
    runtime::Task<Result<void>> fabrics_connect_queue(std::shared_ptr<QPairImpl> qp);
    runtime::Task<Result<void>> fabrics_enable();
    runtime::Task<Result<void>> fabrics_init(bool discovery);
    runtime::Task<Result<void>> fabrics_reconnect_once();
    runtime::Task<Result<void>> fabrics_reset(const char* why);
    runtime::Task<void> fabrics_shutdown();
    void fabrics_connection_lost(const char* why);
    void start_keep_alive();
    runtime::PollStatus keep_alive_tick();
};

// Control-path adapters: complete an AsyncResult from a command callback.
void complete_async(void* ctx, const Completion& cpl);

}  // namespace strata::nvme
