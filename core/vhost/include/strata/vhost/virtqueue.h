// The device side of a split virtqueue (virtio 1.2 §2.7: SplitRing) and of a packed one (§2.8:
// PackedRing): reads what the driver made available, walks descriptor chains (direct and
// indirect) into host iovecs, returns used buffers and decides whether the driver wants an
// interrupt (event index, NO_INTERRUPT, or the packed driver event suppression structure).
//
// Every value read from guest memory is read once into a local copy and then validated: head
// and next indices against the table size, chain length (a chain longer than its table loops),
// indirect tables (length a non-zero multiple of 16, not nested, not combined with NEXT), zero
// lengths, a readable descriptor after a writable one, and every buffer address through the
// memory translator. The first violation returns a WalkError and the caller marks the queue
// broken (DEVICE_NEEDS_RESET semantics: nothing more is processed on it); nothing is asserted.
//
// One walker for every device-side user: `Mem` is any guest-memory translator with
//   void* gpa_to_hva(uint64_t gpa, uint64_t len) const noexcept;
//   int gpa_to_iov(uint64_t gpa, uint64_t len, iovec* iov, int max) const noexcept;
//        (count, or < 0: bad address / no room)
// so vhost-user's GuestMemory and an emulated PCI function's DMA space (hw-emulation's future
// virtio-blk model) share it. The ring parts are passed already translated (vhost-user gives
// front-end virtual addresses, a PCI model guest-physical ones).
//
// Owning Thread: the queue's. No allocation, no syscall.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstring>

#include <strata/virtio/spec/ring.h>

namespace strata::vhost {

enum class WalkError : uint8_t {
    none,
    avail_idx_jump,        // the driver made more than `num` entries available
    head_out_of_range,     // an avail ring entry >= num
    next_out_of_range,     // desc.next >= the table's size
    chain_too_long,        // more descriptors than the table holds: a loop
    bad_address,           // a buffer or indirect table outside guest memory
    indirect_in_indirect,  // an indirect descriptor inside an indirect table
    indirect_with_next,    // INDIRECT and NEXT both set
    indirect_bad_length,   // indirect table length 0, not a multiple of 16, or too large
    indirect_not_negotiated,
    zero_length,  // a buffer descriptor of length 0
    readable_after_writable,
    too_many_segments,  // more iovecs than the request can hold
    id_out_of_range,    // packed: a buffer id >= the queue size
    indirect_in_chain,  // packed: an indirect descriptor that is not a chain's only one
};

constexpr const char* walk_error_name(WalkError e) noexcept {
    switch (e) {
        case WalkError::none:
            return "none";
        case WalkError::avail_idx_jump:
            return "avail index moved by more than the queue size";
        case WalkError::head_out_of_range:
            return "avail ring entry out of range";
        case WalkError::next_out_of_range:
            return "descriptor next index out of range";
        case WalkError::chain_too_long:
            return "descriptor chain longer than its table (loop)";
        case WalkError::bad_address:
            return "descriptor address outside guest memory";
        case WalkError::indirect_in_indirect:
            return "indirect descriptor inside an indirect table";
        case WalkError::indirect_with_next:
            return "descriptor with both INDIRECT and NEXT";
        case WalkError::indirect_bad_length:
            return "bad indirect table length";
        case WalkError::indirect_not_negotiated:
            return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
        case WalkError::zero_length:
            return "zero-length descriptor";
        case WalkError::readable_after_writable:
            return "device-readable descriptor after a device-writable one";
        case WalkError::too_many_segments:
            return "too many segments for one request";
        case WalkError::id_out_of_range:
            return "buffer id out of range";
        case WalkError::indirect_in_chain:
            return "indirect descriptor inside a packed chain";
    }
    return "unknown";
}

// A walked chain: iov[0, readable) are device-readable, iov[readable, readable + writable)
// device-writable.
struct Chain {
    iovec* iov = nullptr;
    uint16_t max_iov = 0;
    uint16_t readable = 0;
    uint16_t writable = 0;
    uint16_t head = 0;
    uint16_t descriptors = 0;
    uint64_t readable_bytes = 0;
    uint64_t writable_bytes = 0;
};

// The largest indirect table accepted (Linux uses at most the queue size; QEMU's limit).
inline constexpr uint32_t kMaxIndirectDescriptors = virtio::spec::kMaxQueueSize;

// One buffer descriptor (split or packed: address, length, WRITE flag) translated into the
// chain's iovecs: zero length, a readable buffer after a writable one, too many segments and an
// address outside guest memory are errors.
template <class Mem>
WalkError add_buffer(const Mem& mem, uint64_t addr, uint32_t len, uint16_t flags,
                     Chain& c) noexcept {
    if (len == 0) return WalkError::zero_length;
    const bool writable = (flags & virtio::spec::kDescFWrite) != 0;
    if (!writable && c.writable != 0) return WalkError::readable_after_writable;
    const uint16_t used = c.readable + c.writable;
    const int n = mem.gpa_to_iov(addr, len, c.iov + used, static_cast<int>(c.max_iov - used));
    if (n == -2) return WalkError::too_many_segments;
    if (n < 0) return WalkError::bad_address;
    if (writable) {
        c.writable = static_cast<uint16_t>(c.writable + n);
        c.writable_bytes += len;
    } else {
        c.readable = static_cast<uint16_t>(c.readable + n);
        c.readable_bytes += len;
    }
    ++c.descriptors;
    return WalkError::none;
}

template <class Mem>
class SplitRing {
public:
    using VringDesc = virtio::spec::VringDesc;
    using VringAvail = virtio::spec::VringAvail;
    using VringUsed = virtio::spec::VringUsed;

    // The parts must span split_desc_bytes(num), split_avail_bytes(num), split_used_bytes(num)
    // of translated memory (the caller checked). last_avail/used: where processing resumes.
    void attach(const Mem* mem, VringDesc* desc, VringAvail* avail, VringUsed* used, uint16_t num,
                uint16_t last_avail, bool event_idx, bool indirect) noexcept {
        mem_ = mem;
        desc_ = desc;
        avail_ = avail;
        used_ = used;
        num_ = num;
        last_avail_ = last_avail;
        used_idx_ = load16(&used_->idx);
        signalled_used_ = used_idx_;
        signalled_valid_ = false;
        event_idx_ = event_idx;
        indirect_ = indirect;
        // The device polls: ask the driver not to kick (a hint; kicks are harmless).
        if (!event_idx_) store16(&used_->flags, virtio::spec::kUsedFNoNotify);
    }
    bool attached() const noexcept { return desc_ != nullptr; }
    void detach() noexcept { desc_ = nullptr; }
    uint16_t num() const noexcept { return num_; }
    uint16_t last_avail() const noexcept { return last_avail_; }
    uint16_t used_idx() const noexcept { return used_idx_; }
    uint16_t used_idx_in_ring() const noexcept { return load16(&used_->idx); }

    // Entries the driver has made available and not yet taken; WalkError::avail_idx_jump
    // when the avail index moved more than num past last_avail.
    WalkError available(uint16_t& count) const noexcept {
        const uint16_t idx = __atomic_load_n(&avail_->idx, __ATOMIC_ACQUIRE);
        count = static_cast<uint16_t>(idx - last_avail_);
        return count > num_ ? WalkError::avail_idx_jump : WalkError::none;
    }
    // Takes the next available head (call only after available() > 0).
    WalkError pop(uint16_t& head) noexcept {
        head = load16(&avail_->ring[last_avail_ % num_]);
        ++last_avail_;
        if (event_idx_) store16(virtio::spec::split_avail_event(used_, num_), last_avail_);
        return head >= num_ ? WalkError::head_out_of_range : WalkError::none;
    }

    // Walks the chain at `head` into c.iov (c.max_iov entries).
    WalkError walk(uint16_t head, Chain& c) const noexcept {
        c.readable = c.writable = 0;
        c.readable_bytes = c.writable_bytes = 0;
        c.descriptors = 0;
        c.head = head;
        if (head >= num_) return WalkError::head_out_of_range;
        const VringDesc* table = desc_;
        uint32_t table_n = num_;
        bool in_indirect = false;
        uint32_t i = head;
        uint32_t seen = 0;
        for (;;) {
            VringDesc d;
            std::memcpy(&d, const_cast<const VringDesc*>(&table[i]), sizeof d);
            if (++seen > table_n) return WalkError::chain_too_long;
            if (d.flags & virtio::spec::kDescFIndirect) {
                if (in_indirect) return WalkError::indirect_in_indirect;
                if (!indirect_) return WalkError::indirect_not_negotiated;
                if (d.flags & virtio::spec::kDescFNext) return WalkError::indirect_with_next;
                if (d.len == 0 || d.len % sizeof(VringDesc) != 0 ||
                    d.len / sizeof(VringDesc) > kMaxIndirectDescriptors)
                    return WalkError::indirect_bad_length;
                auto* t = static_cast<const VringDesc*>(mem_->gpa_to_hva(d.addr, d.len));
                if (t == nullptr) return WalkError::bad_address;
                table = t;
                table_n = d.len / sizeof(VringDesc);
                in_indirect = true;
                i = 0;
                seen = 0;
                continue;
            }
            if (auto e = add_buffer(*mem_, d.addr, d.len, d.flags, c); e != WalkError::none)
                return e;
            if (!(d.flags & virtio::spec::kDescFNext)) return WalkError::none;
            if (d.next >= table_n) return WalkError::next_out_of_range;
            i = d.next;
        }
    }

    // Returns `head` to the driver with `len` bytes written; visible at once (release store).
    void push_used(uint16_t head, uint32_t len) noexcept {
        virtio::spec::VringUsedElem e{head, len};
        std::memcpy(&used_->ring[used_idx_ % num_], &e, sizeof e);
        ++used_idx_;
        __atomic_store_n(&used_->idx, used_idx_, __ATOMIC_RELEASE);
    }

    // Whether the driver wants an interrupt for what was pushed since the last call that
    // answered true (event index: used_event crossed; else the avail ring's NO_INTERRUPT flag).
    bool need_interrupt() noexcept {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (used_idx_ == signalled_used_ && signalled_valid_) return false;
        bool need;
        if (event_idx_) {
            const uint16_t ev = load16(virtio::spec::split_used_event(avail_, num_));
            need = !signalled_valid_ || virtio::spec::need_event(ev, used_idx_, signalled_used_);
        } else {
            need = !(load16(&avail_->flags) & virtio::spec::kAvailFNoInterrupt);
        }
        signalled_used_ = used_idx_;
        signalled_valid_ = true;
        return need;
    }

private:
    static uint16_t load16(const uint16_t* p) noexcept {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static void store16(uint16_t* p, uint16_t v) noexcept {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }

    const Mem* mem_ = nullptr;
    VringDesc* desc_ = nullptr;
    VringAvail* avail_ = nullptr;
    VringUsed* used_ = nullptr;
    uint16_t num_ = 0;
    uint16_t last_avail_ = 0;
    uint16_t used_idx_ = 0;
    uint16_t signalled_used_ = 0;
    bool signalled_valid_ = false;
    bool event_idx_ = false;
    bool indirect_ = false;
};

// The device side of a packed virtqueue (virtio 1.2 §2.8). One ring of PackedDesc: the driver
// makes a chain available by writing its descriptors at consecutive slots (wrapping at num) and
// flipping the head's AVAIL/USED bits to its wrap counter last; the chain's last descriptor
// carries the buffer id. The device returns a buffer by writing one descriptor (id, written
// length, AVAIL = USED = its used wrap counter) at its used position and skipping as many slots
// as the chain took. Buffer ids name the request slots (head in Chain and in the Session), so
// an id must be < num and not already in flight (the Session's chain_for() checks that).
//
// Validation as for SplitRing, plus: a chain longer than the ring is a loop, an id >= num
// breaks the queue, an indirect descriptor must be its chain's only one (Linux, QEMU and DPDK
// build them so; the spec forbids INDIRECT with NEXT). Inside an indirect table only WRITE
// counts (the spec makes the other flags reserved) and the entries run to the table's end.
//
// peek() finds the next available chain's id (reading only flags and the id); walk() then
// walks exactly the slots peek() counted, so a driver that rewrites the ring in between gets a
// wrong chain at worst, never a read outside the ring. `slots` (num entries, the caller's)
// remembers per id how many ring slots the chain took, for push_used().
//
// The base (vhost-user SET/GET_VRING_BASE, 32 bits, QEMU's encoding): bits 0-14 last_avail,
// bit 15 the avail wrap counter, bits 16-30 the used index, bit 31 the used wrap counter. A base
// with the upper half 0 (front ends that send only the avail half) puts the used position at
// the avail one (nothing outstanding at GET_VRING_BASE), as DPDK did.
template <class Mem>
class PackedRing {
public:
    using PackedDesc = virtio::spec::PackedDesc;
    using PackedEvent = virtio::spec::PackedEvent;

    // desc spans num * 16 bytes, driver_event and device_event 4 bytes each (checked by the
    // caller). slots: num entries that outlive the attachment.
    void attach(const Mem* mem, PackedDesc* desc, PackedEvent* driver_event,
                PackedEvent* device_event, uint16_t* slots, uint16_t num, uint32_t base,
                bool event_idx, bool indirect) noexcept {
        mem_ = mem;
        desc_ = desc;
        driver_event_ = driver_event;
        device_event_ = device_event;
        slots_ = slots;
        num_ = num;
        last_avail_ = static_cast<uint16_t>(base & 0x7fff);
        avail_wrap_ = (base & 0x8000) != 0;
        if (last_avail_ >= num_) last_avail_ = 0;  // a bad base: start over (checked upstream)
        used_idx_ = last_avail_;
        used_wrap_ = avail_wrap_;
        if ((base >> 16) != 0) {
            used_idx_ = static_cast<uint16_t>((base >> 16) & 0x7fff);
            used_wrap_ = (base & 0x80000000u) != 0;
            if (used_idx_ >= num_) used_idx_ = 0;
        }
        signalled_used_ = used_idx_;
        signalled_valid_ = false;
        pending_ = 0;
        event_idx_ = event_idx;
        indirect_ = indirect;
        // The device polls: ask the driver not to notify (a hint; notifications are harmless).
        __atomic_store_n(&device_event_->flags, virtio::spec::kPackedEventFlagDisable,
                         __ATOMIC_RELAXED);
    }
    bool attached() const noexcept { return desc_ != nullptr; }
    void detach() noexcept { desc_ = nullptr; }
    uint16_t num() const noexcept { return num_; }
    // The vhost-user encoding of where processing resumes (avail half | used half << 16).
    uint32_t base() const noexcept {
        const uint32_t avail = last_avail_ | (avail_wrap_ ? 0x8000u : 0u);
        const uint32_t used = used_idx_ | (used_wrap_ ? 0x8000u : 0u);
        return avail | used << 16;
    }
    uint16_t last_avail() const noexcept { return last_avail_; }
    bool avail_wrap() const noexcept { return avail_wrap_; }
    uint16_t used_idx() const noexcept { return used_idx_; }
    bool used_wrap() const noexcept { return used_wrap_; }

    // Whether the slot at last_avail holds an available chain; if so, its buffer id and the
    // number of ring slots it takes (kept for walk()).
    WalkError peek(bool& ready, uint16_t& id) noexcept {
        ready = false;
        pending_ = 0;
        const uint16_t f = __atomic_load_n(&desc_[last_avail_].flags, __ATOMIC_ACQUIRE);
        if (!virtio::spec::packed_desc_is_avail(f, avail_wrap_)) return WalkError::none;
        uint32_t i = last_avail_;
        uint16_t flags = f;
        uint32_t count = 1;
        while (flags & virtio::spec::kDescFNext) {
            if (++count > num_) return WalkError::chain_too_long;
            if (++i == num_) i = 0;
            flags = __atomic_load_n(&desc_[i].flags, __ATOMIC_RELAXED);
        }
        id = __atomic_load_n(&desc_[i].id, __ATOMIC_RELAXED);
        if (id >= num_) return WalkError::id_out_of_range;
        pending_ = static_cast<uint16_t>(count);
        ready = true;
        return WalkError::none;
    }

    // Walks the chain peek() found into c (c.head = id) and moves past it. On an error the
    // queue is to be marked broken; the position is then meaningless.
    WalkError walk(uint16_t id, Chain& c) noexcept {
        c.readable = c.writable = 0;
        c.readable_bytes = c.writable_bytes = 0;
        c.descriptors = 0;
        c.head = id;
        const uint16_t count = pending_;
        pending_ = 0;
        if (count == 0 || id >= num_) return WalkError::id_out_of_range;
        uint32_t i = last_avail_;
        for (uint16_t k = 0; k < count; ++k) {
            PackedDesc d;
            std::memcpy(&d, const_cast<const PackedDesc*>(&desc_[i]), sizeof d);
            if (auto r = add_desc(d, count, c); r != WalkError::none) return r;
            if (++i == num_) i = 0;
        }
        slots_[id] = count;
        last_avail_ = static_cast<uint16_t>(last_avail_ + count);
        if (last_avail_ >= num_) {
            last_avail_ = static_cast<uint16_t>(last_avail_ - num_);
            avail_wrap_ = !avail_wrap_;
        }
        return WalkError::none;
    }

    // Walks a chain of `count` ring descriptors kept elsewhere (an inflight record's copies)
    // into c as buffer `id`, with walk()'s checks; the ring position does not move.
    WalkError walk_saved(const PackedDesc* descs, uint16_t count, uint16_t id, Chain& c) noexcept {
        c.readable = c.writable = 0;
        c.readable_bytes = c.writable_bytes = 0;
        c.descriptors = 0;
        c.head = id;
        if (count == 0 || count > num_ || id >= num_) return WalkError::id_out_of_range;
        for (uint16_t k = 0; k < count; ++k)
            if (auto r = add_desc(descs[k], count, c); r != WalkError::none) return r;
        slots_[id] = count;
        return WalkError::none;
    }

    // The ring descriptor in slot i (mod num), as the driver wrote it.
    PackedDesc read_slot(uint32_t i) const noexcept {
        PackedDesc d;
        std::memcpy(&d, const_cast<const PackedDesc*>(&desc_[i % num_]), sizeof d);
        return d;
    }

    // Moves the avail and used positions (inflight recovery). Indexes below num.
    void set_position(uint16_t avail, bool avail_wrap, uint16_t used, bool used_wrap) noexcept {
        last_avail_ = avail < num_ ? avail : 0;
        avail_wrap_ = avail_wrap;
        used_idx_ = used < num_ ? used : 0;
        used_wrap_ = used_wrap;
        signalled_used_ = used_idx_;
        signalled_valid_ = false;
        pending_ = 0;
    }

    // Returns buffer `id` with `len` bytes written: one used descriptor, its flags stored last
    // (release), then the used position skips the chain's slots.
    void push_used(uint16_t id, uint32_t len) noexcept {
        PackedDesc* d = &desc_[used_idx_];
        __atomic_store_n(&d->id, id, __ATOMIC_RELAXED);
        __atomic_store_n(&d->len, len, __ATOMIC_RELAXED);
        uint16_t flags =
            used_wrap_ ? (virtio::spec::kPackedDescFAvail | virtio::spec::kPackedDescFUsed) : 0;
        if (len != 0) flags |= virtio::spec::kDescFWrite;
        __atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
        const uint16_t count = id < num_ && slots_[id] != 0 ? slots_[id] : 1;
        used_idx_ = static_cast<uint16_t>(used_idx_ + count);
        if (used_idx_ >= num_) {
            used_idx_ = static_cast<uint16_t>(used_idx_ - num_);
            used_wrap_ = !used_wrap_;
        }
    }

    // Whether the driver wants an interrupt for what was pushed since the last call that
    // answered true: its event suppression structure says ENABLE, or (with EVENT_IDX) DESC
    // with an offset/wrap the used position passed (DPDK's vhost_vring_call_packed).
    bool need_interrupt() noexcept {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (used_idx_ == signalled_used_ && signalled_valid_) return false;
        const uint16_t flags = __atomic_load_n(&driver_event_->flags, __ATOMIC_ACQUIRE);
        bool need;
        if (!event_idx_ || flags != virtio::spec::kPackedEventFlagDesc) {
            need = flags != virtio::spec::kPackedEventFlagDisable;
        } else if (!signalled_valid_) {
            need = true;
        } else {
            const uint16_t off_wrap = __atomic_load_n(&driver_event_->off_wrap, __ATOMIC_ACQUIRE);
            // Positions on one line: the used position in [0, num), the old one and the
            // event offset shifted down by num when they belong to the previous lap.
            int32_t off = off_wrap & 0x7fff;
            const int32_t now = used_idx_;
            int32_t old = signalled_used_;
            if (now <= old) old -= num_;
            if (((off_wrap >> 15) != 0) != used_wrap_) off -= num_;
            need = static_cast<uint16_t>(now - off - 1) < static_cast<uint16_t>(now - old);
        }
        signalled_used_ = used_idx_;
        signalled_valid_ = true;
        return need;
    }

private:
    // One ring descriptor of a chain of `count`: a buffer, or (alone) an indirect table.
    WalkError add_desc(const PackedDesc& d, uint16_t count, Chain& c) noexcept {
        if (d.flags & virtio::spec::kDescFIndirect) {
            if (count != 1) return WalkError::indirect_in_chain;
            if (!indirect_) return WalkError::indirect_not_negotiated;
            if (d.len == 0 || d.len % sizeof(PackedDesc) != 0 ||
                d.len / sizeof(PackedDesc) > kMaxIndirectDescriptors)
                return WalkError::indirect_bad_length;
            auto* t = static_cast<const PackedDesc*>(mem_->gpa_to_hva(d.addr, d.len));
            if (t == nullptr) return WalkError::bad_address;
            const uint32_t n = d.len / sizeof(PackedDesc);
            for (uint32_t j = 0; j < n; ++j) {
                PackedDesc e;
                std::memcpy(&e, &t[j], sizeof e);
                if (auto r = add_buffer(*mem_, e.addr, e.len, e.flags, c); r != WalkError::none)
                    return r;
            }
            return WalkError::none;
        }
        return add_buffer(*mem_, d.addr, d.len, d.flags, c);
    }

    const Mem* mem_ = nullptr;
    PackedDesc* desc_ = nullptr;
    PackedEvent* driver_event_ = nullptr;
    PackedEvent* device_event_ = nullptr;
    uint16_t* slots_ = nullptr;
    uint16_t num_ = 0;
    uint16_t last_avail_ = 0;
    uint16_t used_idx_ = 0;
    uint16_t signalled_used_ = 0;
    uint16_t pending_ = 0;
    bool avail_wrap_ = true;
    bool used_wrap_ = true;
    bool signalled_valid_ = false;
    bool event_idx_ = false;
    bool indirect_ = false;
};

}  // namespace strata::vhost
