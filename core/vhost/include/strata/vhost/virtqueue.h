// The device side of a split virtqueue (virtio 1.2 §2.7): reads the avail ring, walks
// descriptor chains (direct and indirect) into host iovecs, writes the used ring and decides
// whether the driver wants an interrupt (event index or NO_INTERRUPT).
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
            if (d.len == 0) return WalkError::zero_length;
            const bool writable = (d.flags & virtio::spec::kDescFWrite) != 0;
            if (!writable && c.writable != 0) return WalkError::readable_after_writable;
            const uint16_t used = c.readable + c.writable;
            const int n =
                mem_->gpa_to_iov(d.addr, d.len, c.iov + used, static_cast<int>(c.max_iov - used));
            if (n == -2) return WalkError::too_many_segments;
            if (n < 0) return WalkError::bad_address;
            if (writable) {
                c.writable = static_cast<uint16_t>(c.writable + n);
                c.writable_bytes += d.len;
            } else {
                c.readable = static_cast<uint16_t>(c.readable + n);
                c.readable_bytes += d.len;
            }
            ++c.descriptors;
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

}  // namespace strata::vhost
