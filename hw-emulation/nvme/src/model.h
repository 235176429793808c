// Internal: the state of one emulated NVMe controller (see controller.h for the contract).
//
// Threading: everything here is owned by the model's Thread except the members marked
// "any thread" (registers, doorbells, flags and counters touched by bar_read/bar_write or stats()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/random.h>
#include <strata/base/status.h>
#include <strata/hwemu/faults/fault_plan.h>
#include <strata/hwemu/media/write_cache.h>
#include <strata/hwemu/nvme/controller.h>
#include <strata/nvme/spec/spec.h>
#include <strata/runtime/thread.h>

namespace strata::hwemu::nvme {

namespace spec = strata::nvme::spec;

inline constexpr uint32_t kNotInHeap = 0xFFFFFFFFu;
inline constexpr uint32_t kMaxAer = 4;            // AERL + 1
inline constexpr uint32_t kErrorLogEntries = 16;  // ELPE + 1
inline constexpr uint32_t kMaxEvents = 16;
inline constexpr uint32_t kMaxSglDescriptors = 256;  // per segment read; more is refused
inline constexpr uint32_t kMaxMpsShift = 4;          // CAP.MPSMAX: 64 KiB pages
inline constexpr uint32_t kFetchBudget = 256;        // commands fetched per poll at most

// One fetched command, from its submission queue's preallocated pool.
struct Command {
    spec::Sqe sqe{};
    uint16_t sqid = 0;
    uint64_t due_ns = 0;
    uint64_t seq = 0;
    uint32_t heap_index = kNotInHeap;
    Command* next_free = nullptr;
    bool preset_error = false;   // error_status fault: complete with preset_status, do nothing
    uint16_t preset_status = 0;  // StatusField raw (phase 0)
    bool drop = false;           // drop_completion fault
    bool corrupt = false;        // corrupt_read fault
    bool parked_aer = false;
};

struct SubQueue {
    bool valid = false;
    uint16_t id = 0;
    uint64_t base = 0;
    uint32_t size = 0;
    uint32_t head = 0;
    uint32_t tail = 0;
    uint16_t cqid = 0;
    std::vector<Command> pool;
    Command* free_list = nullptr;
    uint32_t in_flight = 0;
};

struct CompQueue {
    bool valid = false;
    uint16_t id = 0;
    uint64_t base = 0;
    uint32_t size = 0;
    uint32_t tail = 0;  // next slot the controller writes
    uint32_t head = 0;  // from the host's head doorbell
    bool phase = true;
    uint32_t sq_refs = 0;
    // Completions waiting for room (CQ full): a ring, grown on the control path when an SQ
    // binds to this CQ, so holding back never allocates.
    std::vector<spec::Cqe> held;
    size_t held_head = 0;
    size_t held_count = 0;
};

struct Namespace {
    NamespaceConfig cfg;
    std::unique_ptr<CachedMedia> media;
    uint64_t blocks = 0;
    uint32_t block_size = 512;
    std::array<uint8_t, 8> eui64{};
    std::array<uint8_t, 16> nguid{};
    std::array<uint8_t, 16> uuid{};
};

struct Segment {
    uint64_t iova;
    uint64_t len;
};

struct AsyncEvent {
    uint32_t dw0;
};

// Smart/health and other counters kept by the model thread.
struct Health {
    uint64_t units_read_512 = 0;
    uint64_t units_written_512 = 0;
    uint64_t host_read_commands = 0;
    uint64_t host_write_commands = 0;
    uint64_t power_cycles = 1;
    uint64_t unsafe_shutdowns = 0;
    uint64_t media_errors = 0;
};

class ControllerImpl {
public:
    ControllerImpl(Controller& owner, PciBus& bus, const env::PciAddress& address,
                   ControllerConfig config, runtime::Thread& thread);
    ~ControllerImpl();

    Result<void> init();  // namespaces, buffers, registers; before add_function
    void start();         // pollers
    void stop();          // pollers off, function off the bus

    // --- registers (any thread) ---
    uint64_t bar_read(uint64_t offset, uint32_t width);
    void bar_write(uint64_t offset, uint32_t width, uint64_t value);
    uint32_t reg_read32(uint64_t offset);
    void reg_write32(uint64_t offset, uint32_t value);
    void doorbell_write(uint64_t offset, uint32_t value);
    void wake();

    // --- control (model thread) ---
    Result<void> add_namespace(NamespaceConfig cfg, bool notify);
    Result<void> remove_namespace(uint32_t nsid);
    void power_cut(bool torn);
    Controller::Stats stats() const;
    void set_zero_latency(bool on) { zero_latency_ = on; }
    void mark_removed() { removed_.store(true, std::memory_order_release); }
    const FaultRule* match_fault(const FaultSubject& subject, bool admin);

    Controller& owner_;
    PciBus& bus_;
    env::PciAddress address_;
    ControllerConfig cfg_;
    runtime::Thread& thread_;
    EmulatedFunction* fn_ = nullptr;
    FaultPlan faults_;
    Prng prng_;

private:
    // Pollers.
    static runtime::PollStatus poll_main(void* ctx);
    static runtime::PollStatus poll_timer(void* ctx);
    static runtime::PollStatus poll_control(void* ctx);
    bool handle_doorbells();
    bool process_queues();

    // Controller state machine.
    void handle_cc();
    void start_enable();
    void start_disable();
    void start_shutdown();
    void finish_control();
    void arm_control(uint64_t delay_ns);
    void reset_queues();
    void reset_registers();
    void set_fatal(const char* why);
    void set_csts_bits(uint32_t set, uint32_t clear);

    // Queues and completions.
    void create_sq(uint16_t qid, uint64_t base, uint32_t size, uint16_t cqid);
    void create_cq(uint16_t qid, uint64_t base, uint32_t size);
    void delete_sq(uint16_t qid);
    void fetch(SubQueue& sq);
    void start_command(Command& c);
    void run_command(Command& c);
    void release(Command& c);
    void complete(Command& c, uint16_t status, uint32_t dw0);
    void post(uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0);
    bool write_cqe(CompQueue& cq, const spec::Cqe& cqe);
    void drain_held(CompQueue& cq);
    void record_error(uint16_t sqid, const spec::Sqe& sqe, uint16_t status);
    uint64_t latency_ns(uint8_t opcode);

    // Timer heap of commands due in the future.
    void heap_push(Command* c);
    Command* heap_pop();
    void heap_remove(Command* c);
    void heap_sift_up(uint32_t i);
    void heap_sift_down(uint32_t i);
    void arm_timer(uint64_t due_ns);

    // Async events.
    void queue_event(spec::AsyncEventType type, uint8_t info, spec::LogPage lid);
    void deliver_events();
    void invalid_doorbell(spec::AsyncErrorInfo info);

    // Admin commands (admin.cpp). Return the status (StatusField raw, phase 0); dw0 via out.
    uint16_t exec_admin(Command& c, uint32_t& dw0, bool& parked);
    uint16_t admin_identify(const spec::Sqe& sqe);
    uint16_t admin_get_log_page(const spec::Sqe& sqe);
    uint16_t admin_features(const spec::Sqe& sqe, bool set, uint32_t& dw0);
    uint16_t admin_create_cq(const spec::Sqe& sqe);
    uint16_t admin_create_sq(const spec::Sqe& sqe);
    uint16_t admin_delete_sq(const spec::Sqe& sqe);
    uint16_t admin_delete_cq(const spec::Sqe& sqe);
    uint16_t admin_abort(const spec::Sqe& sqe, uint32_t& dw0);
    void fill_identify_ctrl(spec::IdentifyController& id) const;
    void fill_identify_ns(const Namespace& ns, spec::IdentifyNamespace& id) const;

    // NVM commands (io.cpp).
    uint16_t exec_io(Command& c);
    uint16_t io_rw(Command& c, Namespace& ns);
    uint16_t io_write_zeroes(const spec::Sqe& sqe, Namespace& ns);
    uint16_t io_dsm(const spec::Sqe& sqe, Namespace& ns);
    uint16_t io_flush(const spec::Sqe& sqe);

    // Data pointers (io.cpp): build segs_ for `len` bytes; 0 on success, else a status.
    uint16_t map_data(const spec::Sqe& sqe, uint64_t len, bool admin);
    uint16_t map_prp(uint64_t prp1, uint64_t prp2, uint64_t len);
    uint16_t map_sgl(const spec::SglDescriptor& d, uint64_t len);
    bool add_segment(uint64_t iova, uint64_t len);
    struct Cursor {
        size_t idx = 0;
        uint64_t off = 0;
    };
    Status copy_to_host(Cursor& cur, const uint8_t* src, size_t n);
    Status copy_from_host(Cursor& cur, uint8_t* dst, size_t n);
    uint16_t send_to_host(const void* data, size_t len);  // admin data (map_data first)

    Namespace* active_ns(uint32_t nsid) noexcept {
        return nsid >= 1 && nsid < namespaces_.size() ? namespaces_[nsid].get() : nullptr;
    }
    uint64_t max_transfer_bytes() const noexcept {
        return cfg_.mdts == 0 ? 0 : (uint64_t{4096} << cfg_.mdts);
    }

    // --- registers and doorbells (any thread) ---
    uint64_t cap_ = 0;
    std::atomic<uint32_t> cc_{0};
    std::atomic<uint32_t> csts_{0};
    std::atomic<uint32_t> aqa_{0};
    std::atomic<uint32_t> intms_{0};
    std::atomic<uint64_t> asq_{0};
    std::atomic<uint64_t> acq_{0};
    std::atomic<bool> cc_dirty_{false};
    std::atomic<bool> removed_{false};
    std::atomic<bool> parked_{false};  // the main poller last reported idle
    uint32_t doorbell_count_ = 0;      // 2 * (max_io_queues + 1)
    std::unique_ptr<std::atomic<uint32_t>[]> doorbells_;
    std::unique_ptr<std::atomic<uint64_t>[]> doorbell_dirty_;  // one bit per doorbell
    uint32_t dirty_words_ = 0;
    std::atomic<bool> any_doorbell_{false};
    std::atomic<uint32_t> stray_doorbells_{0};  // writes past the last queue's doorbells

    // --- counters (read anywhere) ---
    struct Counters {
        std::atomic<uint64_t> commands{0}, admin_commands{0}, completions{0}, doorbell_writes{0},
            dropped_completions{0}, injected_errors{0}, invalid_doorbells{0}, held_completions{0};
    };
    Counters counters_;

    // --- model thread state ---
    enum class State { disabled, enabling, ready, disabling };
    State state_ = State::disabled;
    bool fatal_ = false;
    bool shutdown_ = false;  // shutdown started: no more command processing until reset
    uint32_t cc_applied_ = 0;
    uint64_t page_size_ = 4096;
    enum class ControlOp { none, enable, disable, shutdown };
    ControlOp control_op_ = ControlOp::none;
    runtime::Poller* main_poller_ = nullptr;
    runtime::Poller* timer_poller_ = nullptr;
    uint64_t timer_due_ns_ = 0;
    runtime::Poller* control_poller_ = nullptr;
    bool zero_latency_ = false;
    std::array<const LatencySpec*, 256> latency_by_opcode_{};  // into cfg_.io_latency
    uint64_t seq_ = 0;

    std::vector<SubQueue> sqs_;
    std::vector<CompQueue> cqs_;
    std::vector<uint16_t> active_sqids_;  // sorted; round-robin order
    size_t rr_next_ = 0;
    size_t total_slots_ = 0;  // command slots of every SQ: the timer heap's capacity
    std::vector<Command*> heap_;
    std::vector<std::unique_ptr<Namespace>> namespaces_;  // index nsid

    // Features.
    uint32_t arbitration_ = 0;
    uint32_t power_mgmt_ = 0;
    uint16_t temp_over_k_ = 343;
    uint16_t temp_under_k_ = 0;
    bool vwc_enabled_ = true;
    uint32_t async_config_ = 0;
    uint32_t nsqa_ = 0, ncqa_ = 0;  // allocated I/O queues (1's based)

    // Async events and logs.
    std::array<Command*, kMaxAer> aers_{};
    uint32_t aer_count_ = 0;
    std::array<AsyncEvent, kMaxEvents> events_{};
    uint32_t event_count_ = 0;
    uint8_t masked_types_ = 0;  // bit per AsyncEventType reported and not yet cleared
    std::array<spec::ErrorInfoEntry, kErrorLogEntries> error_log_{};
    uint32_t error_log_next_ = 0;
    uint64_t error_count_ = 0;
    std::vector<uint32_t> changed_ns_;
    bool changed_ns_overflow_ = false;
    Health health_;

    // Scratch, preallocated at init (no allocation per command).
    std::vector<uint8_t> bounce_;
    std::vector<uint8_t> bounce2_;
    std::vector<Segment> segs_;
    size_t nsegs_ = 0;
    std::vector<uint64_t> prp_list_;
    std::vector<spec::SglDescriptor> sgl_list_;
    std::vector<spec::DsmRange> dsm_ranges_;
};

}  // namespace strata::hwemu::nvme
