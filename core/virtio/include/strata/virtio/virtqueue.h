// The driver side of a virtqueue over memory the driver owns: split (VIRTIO 1.2, 2.7) or, when
// VIRTIO_F_RING_PACKED was negotiated, packed (2.8); one API for both.
//
// The caller hands init() one block of memory (layout().total_bytes long, 16-byte aligned) and
// the address the device knows it by (an IOVA for virtio-pci, the front end's virtual address
// for virtio-user); the queue lays out in it the descriptor table, the available ring, the used
// ring and one indirect table per descriptor (packed: the descriptor ring, the driver and device
// event suppression structures in the avail and used places, one indirect table per buffer id).
// Nothing is allocated, locked or asked of the kernel per request: enqueue() writes descriptors and
// an available-ring entry, flush() publishes every entry enqueued since the last flush with one
// store of avail->idx and says whether the device wants a notification (event index or
// VRING_USED_F_NO_NOTIFY); the transport then notifies once per batch. poll() reaps the used ring.
//
// Packed: enqueue() writes the chain at the next ring slots with the head's AVAIL/USED flags
// stored last (so the request is visible to a polling device at once), the buffer id taken
// from a free list of ids; flush() only decides whether to notify (the device event
// suppression structure: ENABLE, DISABLE, or with EVENT_IDX the DESC offset/wrap); poll() reaps
// used descriptors at the used position with the used wrap counter and skips as many slots as
// the buffer's chain took. The driver's own event suppression structure says DISABLE: it
// polls. A used id out of range or not in flight breaks the queue as in the split format.
//
// Split descriptors: a free list threaded through desc[].next. A request of one buffer takes one
// descriptor; a longer chain takes one descriptor pointing at its head's indirect table when
// VIRTIO_F_RING_INDIRECT_DESC was negotiated, else a chain of direct descriptors.
// Interrupts: the driver polls, so it asks for none (VRING_AVAIL_F_NO_INTERRUPT, or with
// VIRTIO_F_EVENT_IDX a used_event kept half a ring-index space ahead).
//
// Device input is not trusted: a used id that is out of range or not in flight, or a used index
// that runs more than a queue's worth ahead, marks the queue broken (counted, logged once);
// enqueue() then refuses with Errc::io_error and poll() returns nothing more.
//
// Owned by one runtime::Thread (one I/O channel); not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <strata/base/status.h>
#include <strata/virtio/spec/ring.h>

namespace strata::virtio {

struct VqBuffer {
    uint64_t addr = 0;  // device address
    uint32_t len = 0;
    bool device_writes = false;  // VRING_DESC_F_WRITE: the device fills it
};

struct VqCompletion {
    void* cookie = nullptr;
    uint32_t len = 0;  // bytes the device says it wrote
};

struct VirtqueueLayout {
    size_t desc_offset = 0;
    size_t avail_offset = 0;
    size_t used_offset = 0;
    size_t indirect_offset = 0;  // size * max_indirect descriptors
    size_t total_bytes = 0;
};

class Virtqueue {
public:
    // size: a power of two, 1..32768. max_indirect: descriptors per indirect table (0: none).
    // packed: the layout of a packed ring (avail/used offsets: the driver and device event
    // suppression structures).
    static VirtqueueLayout layout(uint16_t size, uint16_t max_indirect,
                                  bool packed = false) noexcept;

    Virtqueue() = default;
    Virtqueue(const Virtqueue&) = delete;
    Virtqueue& operator=(const Virtqueue&) = delete;

    // Control path. mem: layout(size, max_indirect).total_bytes, 16-byte aligned, zeroed here.
    // indirect / event_idx / packed: what was negotiated. Errc::invalid_argument for a bad size
    // or misaligned memory.
    Result<void> init(void* mem, uint64_t mem_device_addr, uint16_t size, uint16_t max_indirect,
                      bool indirect, bool event_idx, bool packed = false);

    // Queues one request (its buffers in order: device-readable first, then device-writable, as
    // virtio requires; not checked here). Errc::no_space when the ring lacks descriptors (retry
    // after poll), Errc::invalid_argument for an empty request or one longer than the queue can
    // ever hold, Errc::io_error when the queue is broken.
    Status enqueue(std::span<const VqBuffer> bufs, void* cookie) noexcept;
    // Publishes what enqueue() queued (packed: already visible); true when the device must be
    // notified.
    bool flush() noexcept;
    // Reaps up to out.size() completions; returns how many.
    size_t poll(std::span<VqCompletion> out) noexcept;
    // Marks the queue broken from outside (the transport found the device gone): enqueue()
    // refuses and take_in_flight() hands back what the device held.
    void stop(const char* why) noexcept { mark_broken(why, 0); }
    // Once broken: hands back up to out.size() requests still in flight (len 0), which the
    // device will never complete, so the caller can fail them. Returns 0 on a working queue.
    size_t take_in_flight(std::span<VqCompletion> out) noexcept;

    uint16_t size() const noexcept { return size_; }
    bool packed() const noexcept { return packed_; }
    // The vhost-user vring base of a fresh queue (packed, QEMU's encoding: avail index 0 with
    // wrap counter 1 in bit 15, the used half the same in bits 16-31).
    uint32_t initial_base() const noexcept { return packed_ ? 0x80008000u : 0u; }
    uint16_t num_free() const noexcept { return num_free_; }
    uint16_t in_flight() const noexcept { return in_flight_; }
    bool broken() const noexcept { return broken_; }
    uint64_t device_errors() const noexcept { return device_errors_; }
    uint64_t notifies_suppressed() const noexcept { return notifies_suppressed_; }
    // The largest request enqueue() accepts (buffers).
    uint16_t max_chain() const noexcept { return indirect_ ? max_indirect_ : size_; }

    // Where the parts are, for the transport (SET_VRING_ADDR, queue_desc/driver/device).
    uint64_t desc_device_addr() const noexcept { return dev_base_ + layout_.desc_offset; }
    uint64_t avail_device_addr() const noexcept { return dev_base_ + layout_.avail_offset; }
    uint64_t used_device_addr() const noexcept { return dev_base_ + layout_.used_offset; }
    spec::VringDesc* desc() const noexcept { return desc_; }
    spec::VringAvail* avail() const noexcept { return avail_; }
    spec::VringUsed* used() const noexcept { return used_; }
    // Packed: the ring and the driver / device event suppression structures.
    spec::PackedDesc* packed_desc() const noexcept {
        return reinterpret_cast<spec::PackedDesc*>(desc_);
    }
    spec::PackedEvent* driver_event() const noexcept {
        return reinterpret_cast<spec::PackedEvent*>(avail_);
    }
    spec::PackedEvent* device_event() const noexcept {
        return reinterpret_cast<spec::PackedEvent*>(used_);
    }

private:
    struct Slot {
        void* cookie = nullptr;
        uint16_t ndesc = 0;  // ring descriptors the request holds (1 when indirect)
        uint16_t last = 0;   // split: last descriptor of its chain; packed: next free id
    };
    void mark_broken(const char* why, uint64_t value) noexcept;
    Status enqueue_packed(std::span<const VqBuffer> bufs, void* cookie) noexcept;
    bool flush_packed() noexcept;
    size_t poll_packed(std::span<VqCompletion> out) noexcept;

    VirtqueueLayout layout_{};
    uint8_t* mem_ = nullptr;
    uint64_t dev_base_ = 0;
    spec::VringDesc* desc_ = nullptr;
    spec::VringAvail* avail_ = nullptr;
    spec::VringUsed* used_ = nullptr;
    spec::VringDesc* indirect_tables_ = nullptr;
    std::vector<Slot> slots_;  // by head descriptor index / packed buffer id (sized at init)
    uint16_t size_ = 0;
    uint16_t max_indirect_ = 0;
    bool indirect_ = false;
    bool event_idx_ = false;
    bool broken_ = false;
    bool packed_ = false;
    // Packed state: next avail slot and its wrap counter, next used slot and its wrap counter,
    // slots added since the last flush, the free buffer-id list (through Slot::last).
    uint16_t next_avail_ = 0;
    bool avail_wrap_ = true;
    uint16_t next_used_ = 0;
    bool used_wrap_ = true;
    uint16_t added_ = 0;
    uint16_t free_id_ = 0;
    uint16_t free_head_ = 0;
    uint16_t num_free_ = 0;
    uint16_t in_flight_ = 0;
    uint16_t avail_shadow_ = 0;     // next avail index (unpublished entries included)
    uint16_t avail_published_ = 0;  // avail->idx as last written (= at the last notify decision)
    uint16_t used_last_ = 0;        // next used entry to reap
    uint64_t device_errors_ = 0;
    uint64_t notifies_suppressed_ = 0;
};

}  // namespace strata::virtio
