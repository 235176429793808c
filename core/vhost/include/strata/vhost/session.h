// The vhost-user back end of one connection (QEMU docs/interop/vhost-user.rst): Session owns
// the front end's memory table, the virtqueues, their kick/call eventfds and the inflight
// region; a Device (vhost-blk, ...) serves requests from the queues.
//
// Split for testing and fuzzing: Session::handle() takes one message (header, payload, fds) and
// produces the reply, with no socket (check_message() is the pure size/fd check it starts
// with); Connection (controller.h) moves bytes and fds between the socket and handle(). A
// message that breaks the protocol (bad size, unknown request, too many fds, overlapping
// regions, an index out of range) makes handle() return an error: the caller logs it and ends
// that connection only.
//
// Data path: poll() walks every started queue's ring (split or packed, per VIRTIO_F_RING_PACKED)
// and hands chains to the Device; the Device completes them with complete() (from its bdev
// callbacks, same Thread). No kick is read: the rings are polled. Interrupts (call eventfd writes)
// are coalesced per queue: with delay_base_us = 0 one write per poll that completed something the
// driver wants to hear of; otherwise, while a queue completes more than iops_threshold requests per
// second, at most one per delay window.
//
// Owning Thread: the controller's; nothing here is thread-safe.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/vhost/guest_memory.h>
#include <strata/vhost/virtqueue.h>
#include <strata/virtio/spec/vhost_user.h>

namespace strata::vhost {

namespace vu = virtio::spec::vhost_user;

inline constexpr uint16_t kMaxQueues = 16;

// Pure check of a message's header against its payload size and fd count: the fixed payload
// size each request needs, the fds it may carry, the version bits. Returns the reason.
Result<void> check_message(const vu::Header& h, size_t nfds);

class Session;

// One virtqueue of a session.
struct Queue {
    uint16_t index = 0;
    uint16_t num = 0;
    uint32_t base = 0;    // SET_VRING_BASE (packed: QEMU's avail | wrap << 15 | used half << 16)
    bool packed = false;  // VIRTIO_F_RING_PACKED negotiated: pring, not ring
    vu::VringAddr addr{};
    bool addr_set = false;
    bool enabled = false;
    bool kicked = false;  // SET_VRING_KICK seen
    bool started = false;
    bool stopping = false;  // GET_VRING_BASE waits for outstanding requests
    bool broken = false;    // the driver broke the ring: nothing more is processed
    int kick_fd = -1;
    int call_fd = -1;
    SplitRing<GuestMemory> ring;
    PackedRing<GuestMemory> pring;
    std::vector<uint16_t> packed_slots;  // ring slots per buffer id (sized at start)
    uint32_t outstanding = 0;
    // Inflight tracking (INFLIGHT_SHMFD): this queue's part of the inflight region, in
    // libvhost-user's split layout or DPDK's packed one (vhost_user.h).
    vu::InflightQueueSplit* inflight = nullptr;
    vu::InflightQueuePacked* inflight_packed = nullptr;
    std::vector<uint16_t> inflight_entry;  // packed: buffer id -> its head entry (sized at start)
    uint64_t inflight_counter = 0;
    // Interrupt coalescing.
    bool irq_pending = false;
    uint64_t irq_due_ns = 0;
    uint64_t window_start_ns = 0;
    uint32_t window_completions = 0;
    bool coalesce = false;  // the current window's rate is above the threshold
    // Counters.
    uint64_t requests = 0;
    uint64_t interrupts = 0;
    void* device_ctx = nullptr;  // the Device's per-queue state
};

// What a Session serves: vhost-blk, vhost-scsi.
class Device {
public:
    virtual ~Device() = default;
    virtual uint64_t features() const noexcept = 0;  // device-type feature bits
    virtual uint16_t max_queues() const noexcept = 0;
    // Copies config space [offset, offset + size) into out; false when out of range.
    virtual bool read_config(uint32_t offset, uint8_t* out, uint32_t size) noexcept = 0;
    // The queue starts (allocate its request pool: control path) / stops (free it; only
    // called with no request outstanding).
    virtual Result<void> start_queue(Session& s, Queue& q) = 0;
    virtual void stop_queue(Session& s, Queue& q) noexcept = 0;
    // One request: the walked chain of `head`. The device completes it later (or at once) with
    // Session::complete(q, head, written_bytes). Data path.
    virtual void submit(Session& s, Queue& q, uint16_t head) noexcept = 0;
    // The chain storage of request slot `head` (the device's preallocated pool, one slot per
    // descriptor head); nullptr when that head is already in flight (a driver bug).
    virtual Chain* chain_for(Queue& q, uint16_t head) noexcept = 0;
    // Whether Session::poll() pops this queue's requests. A queue the device fills itself
    // (virtio-scsi's event queue) returns false and takes buffers with Session::take().
    virtual bool polls_queue(uint16_t index) const noexcept {
        (void)index;
        return true;
    }
    // Called at the start of every Session::poll() (deferred device work); returns the work.
    virtual int poll(Session& s) noexcept {
        (void)s;
        return 0;
    }
};

struct Reply {
    bool send = false;
    vu::Header header{};
    uint8_t payload[sizeof(vu::ConfigSpace)]{};
    int fd = -1;  // passed with the reply (GET_INFLIGHT_FD); the Session keeps ownership
};

struct CoalescingOptions {
    uint32_t delay_base_us = 0;
    uint32_t iops_threshold = 60000;  // SPDK's default
};

class Session {
public:
    Session(Device& device, std::string name);
    ~Session();  // stops the queues, unmaps, closes fds
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Handles one message; fds are owned by the Session from here on (closed on failure).
    // An error ends the connection.
    Result<void> handle(const vu::Header& h, const uint8_t* payload, const int* fds, size_t nfds,
                        Reply& reply);
    // A GET_VRING_BASE waiting for outstanding requests: poll() fills `reply` once drained.
    bool reply_pending() const noexcept { return pending_get_base_ >= 0; }
    bool take_pending_reply(Reply& reply);

    // Data path: processes available requests of every started queue; returns the work done.
    int poll(uint64_t now_ns) noexcept;
    void complete(Queue& q, uint16_t head, uint32_t written) noexcept;
    // Takes one available chain of a started queue the device fills itself (polls_queue()
    // false): walked into the Device's chain_for() slot, counted outstanding until complete().
    // False when none is available or the queue is stopped or broken.
    bool take(Queue& q, uint16_t& head) noexcept;

    void set_coalescing(const CoalescingOptions& o) noexcept { coalescing_ = o; }
    const std::string& name() const noexcept { return name_; }
    const GuestMemory& memory() const noexcept { return memory_; }
    Queue& queue(uint16_t i) noexcept { return queues_[i]; }
    uint64_t negotiated_features() const noexcept { return features_; }
    bool has_feature(unsigned bit) const noexcept {
        return virtio::spec::has_feature(features_, bit);
    }
    // The features offered in GET_FEATURES / GET_PROTOCOL_FEATURES.
    uint64_t offered_features() const noexcept;
    static uint64_t offered_protocol_features() noexcept;
    uint32_t broken_queues() const noexcept;
    uint32_t outstanding() const noexcept;
    // Stop taking new requests (the connection closed); destroy once outstanding() is 0.
    void quiesce() noexcept { quiesced_ = true; }

private:
    Result<void> set_mem_table(const uint8_t* payload, uint32_t size, const int* fds, size_t nfds);
    Result<void> add_mem_reg(const vu::MemoryRegion& r, int fd);
    Result<void> rem_mem_reg(const vu::MemoryRegion& r);
    Result<void> set_inflight(const vu::Inflight& in, int fd);
    Result<void> get_inflight(const vu::Inflight& in, Reply& reply);
    Result<void> maybe_start(Queue& q);
    void stop(Queue& q) noexcept;
    void reset() noexcept;
    Result<void> attach_ring(Queue& q);
    void resubmit_inflight(Queue& q) noexcept;
    void resubmit_packed_inflight(Queue& q);
    // Records the packed chain just walked (ring slots from `start`, buffer `id`) in the
    // inflight region; false when the region has no free entry left (a scribbled region).
    bool record_packed_inflight(Queue& q, uint16_t start, uint16_t id) noexcept;
    // Takes the next available request of q, walked into the device's chain slot and counted
    // outstanding: true with its head (split) or buffer id (packed); false when there is none
    // or the queue broke (marked here).
    bool pop_request(Queue& q, uint16_t& head) noexcept;
    void mark_broken(Queue& q, const char* why) noexcept;
    void signal(Queue& q, uint64_t now_ns) noexcept;
    void unmap_inflight() noexcept;

    Device& device_;
    std::string name_;
    uint64_t features_ = 0;
    uint64_t protocol_features_ = 0;
    bool features_set_ = false;
    bool owner_ = false;
    GuestMemory memory_;
    std::array<Queue, kMaxQueues> queues_{};
    CoalescingOptions coalescing_;
    // Inflight region.
    void* inflight_base_ = nullptr;
    size_t inflight_len_ = 0;
    int inflight_fd_ = -1;
    uint16_t inflight_queues_ = 0;
    uint16_t inflight_queue_size_ = 0;
    int pending_get_base_ = -1;  // queue index
    uint64_t now_ns_ = 0;
    bool quiesced_ = false;
};

}  // namespace strata::vhost
