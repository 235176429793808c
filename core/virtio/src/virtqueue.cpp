#include <strata/virtio/virtqueue.h>

#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>

namespace strata::virtio {

STRATA_LOG_COMPONENT(virtio);

namespace {

size_t align_up(size_t v, size_t a) {
    return (v + a - 1) / a * a;
}

// The index words the other side writes or reads concurrently.
uint16_t load_acquire(const uint16_t& v) noexcept {
    return std::atomic_ref<const uint16_t>(v).load(std::memory_order_acquire);
}
void store_release(uint16_t& v, uint16_t x) noexcept {
    std::atomic_ref<uint16_t>(v).store(x, std::memory_order_release);
}

}  // namespace

VirtqueueLayout Virtqueue::layout(uint16_t size, uint16_t max_indirect, bool packed) noexcept {
    VirtqueueLayout l;
    l.desc_offset = 0;
    if (packed) {
        // The ring, then the driver and the device event suppression structures (4 KiB apart:
        // the device writes the ring, the driver its event structure).
        l.avail_offset = align_up(sizeof(spec::PackedDesc) * size, 4096);
        l.used_offset = l.avail_offset + 4096;
        l.indirect_offset = l.used_offset + 4096;
        l.total_bytes = l.indirect_offset + sizeof(spec::PackedDesc) * size * max_indirect;
        return l;
    }
    l.avail_offset = spec::split_desc_bytes(size);
    // 4 KiB between the parts keeps the device's used-ring writes off the driver's cache lines.
    l.used_offset = align_up(l.avail_offset + spec::split_avail_bytes(size), 4096);
    l.indirect_offset = align_up(l.used_offset + spec::split_used_bytes(size), 4096);
    l.total_bytes = l.indirect_offset + sizeof(spec::VringDesc) * size * max_indirect;
    return l;
}

Result<void> Virtqueue::init(void* mem, uint64_t mem_device_addr, uint16_t size,
                             uint16_t max_indirect, bool indirect, bool event_idx, bool packed) {
    if (size == 0 || size > spec::kMaxQueueSize || (size & (size - 1)) != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("virtqueue size {} is not a power of two in 1..32768", size));
    if (mem == nullptr || reinterpret_cast<uintptr_t>(mem) % 16 != 0 || mem_device_addr % 16 != 0)
        return Error(Errc::invalid_argument, "virtqueue memory must be 16-byte aligned");
    if (indirect && max_indirect < 2)
        return Error(Errc::invalid_argument, "indirect descriptors need tables of 2 or more");
    layout_ = layout(size, indirect ? max_indirect : 0, packed);
    mem_ = static_cast<uint8_t*>(mem);
    dev_base_ = mem_device_addr;
    std::memset(mem_, 0, layout_.total_bytes);
    desc_ = reinterpret_cast<spec::VringDesc*>(mem_ + layout_.desc_offset);
    avail_ = reinterpret_cast<spec::VringAvail*>(mem_ + layout_.avail_offset);
    used_ = reinterpret_cast<spec::VringUsed*>(mem_ + layout_.used_offset);
    indirect_tables_ = reinterpret_cast<spec::VringDesc*>(mem_ + layout_.indirect_offset);
    size_ = size;
    max_indirect_ = indirect ? max_indirect : 0;
    indirect_ = indirect;
    event_idx_ = event_idx;
    broken_ = false;
    slots_.assign(size, Slot{});
    packed_ = packed;
    if (packed) {
        for (uint16_t i = 0; i < size; ++i) slots_[i].last = static_cast<uint16_t>(i + 1);
        free_id_ = 0;
        num_free_ = size;
        in_flight_ = 0;
        next_avail_ = next_used_ = added_ = 0;
        avail_wrap_ = used_wrap_ = true;
        device_errors_ = notifies_suppressed_ = 0;
        // The driver polls: no interrupts wanted (its event suppression structure).
        driver_event()->flags = spec::kPackedEventFlagDisable;
        return {};
    }
    for (uint16_t i = 0; i + 1 < size; ++i) desc_[i].next = static_cast<uint16_t>(i + 1);
    free_head_ = 0;
    num_free_ = size;
    in_flight_ = 0;
    avail_shadow_ = avail_published_ = used_last_ = 0;
    device_errors_ = notifies_suppressed_ = 0;
    // The driver polls the used ring: no interrupts wanted.
    if (event_idx_)
        *spec::split_used_event(avail_, size_) = 0x8000;
    else
        avail_->flags = spec::kAvailFNoInterrupt;
    return {};
}

Status Virtqueue::enqueue(std::span<const VqBuffer> bufs, void* cookie) noexcept {
    if (packed_) return enqueue_packed(bufs, cookie);
    if (broken_) return Status(Errc::io_error);
    const size_t n = bufs.size();
    if (n == 0 || n > max_chain()) return Status(Errc::invalid_argument);
    const bool use_indirect = indirect_ && n > 1;
    const uint16_t need = use_indirect ? 1 : static_cast<uint16_t>(n);
    if (num_free_ < need) return Status(Errc::no_space);

    const uint16_t head = free_head_;
    uint16_t last = head;
    if (use_indirect) {
        spec::VringDesc* table = indirect_tables_ + static_cast<size_t>(head) * max_indirect_;
        for (size_t i = 0; i < n; ++i) {
            table[i].addr = bufs[i].addr;
            table[i].len = bufs[i].len;
            table[i].flags = static_cast<uint16_t>((bufs[i].device_writes ? spec::kDescFWrite : 0) |
                                                   (i + 1 < n ? spec::kDescFNext : 0));
            table[i].next = static_cast<uint16_t>(i + 1);
        }
        spec::VringDesc& d = desc_[head];
        free_head_ = d.next;
        d.addr = dev_base_ + layout_.indirect_offset +
                 sizeof(spec::VringDesc) * static_cast<size_t>(head) * max_indirect_;
        d.len = static_cast<uint32_t>(sizeof(spec::VringDesc) * n);
        d.flags = spec::kDescFIndirect;
    } else {
        uint16_t idx = head;
        for (size_t i = 0; i < n; ++i) {
            spec::VringDesc& d = desc_[idx];
            d.addr = bufs[i].addr;
            d.len = bufs[i].len;
            d.flags = static_cast<uint16_t>((bufs[i].device_writes ? spec::kDescFWrite : 0) |
                                            (i + 1 < n ? spec::kDescFNext : 0));
            last = idx;
            idx = d.next;  // the free list's next is the chain's next
        }
        free_head_ = idx;
    }
    num_free_ = static_cast<uint16_t>(num_free_ - need);
    slots_[head] = Slot{cookie, need, last};
    ++in_flight_;
    avail_->ring[avail_shadow_ & (size_ - 1)] = head;
    ++avail_shadow_;
    return Status();
}

bool Virtqueue::flush() noexcept {
    if (packed_) return flush_packed();
    if (avail_shadow_ == avail_published_) return false;
    const uint16_t old = avail_published_;
    // Descriptors and ring entries before the index (release), and the index before reading
    // what the device asked for (full fence: store-load order).
    store_release(avail_->idx, avail_shadow_);
    avail_published_ = avail_shadow_;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool notify;
    if (event_idx_) {
        notify = spec::need_event(load_acquire(*spec::split_avail_event(used_, size_)),
                                  avail_shadow_, old);
    } else {
        notify = (load_acquire(used_->flags) & spec::kUsedFNoNotify) == 0;
    }
    if (!notify) ++notifies_suppressed_;
    return notify;
}

void Virtqueue::mark_broken(const char* why, uint64_t value) noexcept {
    ++device_errors_;
    if (!broken_)
        STRATA_ERRLOG(log_virtio, "virtqueue (size {}): device error: {} ({}); queue stopped",
                      size_, why, value);
    broken_ = true;
}

size_t Virtqueue::poll(std::span<VqCompletion> out) noexcept {
    if (packed_) return poll_packed(out);
    if (broken_ || in_flight_ == 0) return 0;
    const uint16_t used_idx = load_acquire(used_->idx);
    const uint16_t ready = static_cast<uint16_t>(used_idx - used_last_);
    if (ready == 0) return 0;
    if (ready > in_flight_) {
        mark_broken("used index ran past the requests in flight", ready);
        return 0;
    }
    size_t n = 0;
    while (n < out.size() && used_last_ != used_idx) {
        const spec::VringUsedElem e = used_->ring[used_last_ & (size_ - 1)];
        if (e.id >= size_ || slots_[e.id].ndesc == 0) {
            mark_broken("used id not in flight", e.id);
            break;
        }
        Slot& s = slots_[e.id];
        out[n++] = VqCompletion{s.cookie, e.len};
        desc_[s.last].next = free_head_;
        free_head_ = static_cast<uint16_t>(e.id);
        num_free_ = static_cast<uint16_t>(num_free_ + s.ndesc);
        s = Slot{};
        --in_flight_;
        ++used_last_;
    }
    // Keep the interrupt threshold far ahead: the driver polls.
    if (event_idx_ && n != 0)
        store_release(*spec::split_used_event(avail_, size_),
                      static_cast<uint16_t>(used_last_ + 0x8000));
    return n;
}

// The flags of a descriptor the driver makes available with wrap counter `wrap`.
static uint16_t avail_flags(bool wrap) noexcept {
    return wrap ? spec::kPackedDescFAvail : spec::kPackedDescFUsed;
}

Status Virtqueue::enqueue_packed(std::span<const VqBuffer> bufs, void* cookie) noexcept {
    if (broken_) return Status(Errc::io_error);
    const size_t n = bufs.size();
    if (n == 0 || n > max_chain()) return Status(Errc::invalid_argument);
    const bool use_indirect = indirect_ && n > 1;
    const uint16_t need = use_indirect ? 1 : static_cast<uint16_t>(n);
    if (num_free_ < need || free_id_ >= size_) return Status(Errc::no_space);
    const uint16_t id = free_id_;
    spec::PackedDesc* ring = packed_desc();
    const uint16_t head = next_avail_;
    const bool head_wrap = avail_wrap_;
    uint16_t head_flags = 0;
    auto advance = [&] {
        if (++next_avail_ == size_) {
            next_avail_ = 0;
            avail_wrap_ = !avail_wrap_;
        }
    };
    if (use_indirect) {
        auto* table = reinterpret_cast<spec::PackedDesc*>(mem_ + layout_.indirect_offset) +
                      static_cast<size_t>(id) * max_indirect_;
        for (size_t i = 0; i < n; ++i)
            table[i] = spec::PackedDesc{bufs[i].addr, bufs[i].len, 0,
                                        bufs[i].device_writes ? spec::kDescFWrite : uint16_t{0}};
        spec::PackedDesc& d = ring[head];
        d.addr = dev_base_ + layout_.indirect_offset +
                 sizeof(spec::PackedDesc) * static_cast<size_t>(id) * max_indirect_;
        d.len = static_cast<uint32_t>(sizeof(spec::PackedDesc) * n);
        d.id = id;
        head_flags = static_cast<uint16_t>(spec::kDescFIndirect | avail_flags(head_wrap));
        advance();
    } else {
        for (size_t i = 0; i < n; ++i) {
            spec::PackedDesc& d = ring[next_avail_];
            const uint16_t f = static_cast<uint16_t>(
                (bufs[i].device_writes ? spec::kDescFWrite : 0) |
                (i + 1 < n ? spec::kDescFNext : 0) | avail_flags(avail_wrap_));
            d.addr = bufs[i].addr;
            d.len = bufs[i].len;
            d.id = id;  // the last one's counts; the others' are ignored
            if (i == 0)
                head_flags = f;
            else
                d.flags = f;
            advance();
        }
    }
    free_id_ = slots_[id].last;
    slots_[id] = Slot{cookie, need, 0};
    num_free_ = static_cast<uint16_t>(num_free_ - need);
    ++in_flight_;
    added_ = static_cast<uint16_t>(added_ + need);
    // The head's flags last: the whole chain becomes available at once.
    store_release(ring[head].flags, head_flags);
    return Status();
}

bool Virtqueue::flush_packed() noexcept {
    if (added_ == 0) return false;
    const uint16_t new_idx = next_avail_;
    const uint16_t old_idx = static_cast<uint16_t>(new_idx - added_);
    added_ = 0;
    // The flags stores before reading what the device asked for (store-load order).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t flags = load_acquire(device_event()->flags);
    bool notify;
    if (!event_idx_ || flags != spec::kPackedEventFlagDesc) {
        notify = flags != spec::kPackedEventFlagDisable;
    } else {
        // Linux's virtqueue_kick_prepare_packed: the offset moved back a lap when its wrap
        // counter is not the current one.
        const uint16_t off_wrap = load_acquire(device_event()->off_wrap);
        uint16_t event = off_wrap & 0x7fff;
        if (((off_wrap & spec::kPackedEventWrapBit) != 0) != avail_wrap_)
            event = static_cast<uint16_t>(event - size_);
        notify = spec::need_event(event, new_idx, old_idx);
    }
    if (!notify) ++notifies_suppressed_;
    return notify;
}

size_t Virtqueue::poll_packed(std::span<VqCompletion> out) noexcept {
    if (broken_ || in_flight_ == 0) return 0;
    spec::PackedDesc* ring = packed_desc();
    size_t n = 0;
    while (n < out.size() && in_flight_ != 0) {
        const uint16_t flags = load_acquire(ring[next_used_].flags);
        if (!spec::packed_desc_is_used(flags, used_wrap_)) break;
        const uint16_t id =
            std::atomic_ref<const uint16_t>(ring[next_used_].id).load(std::memory_order_relaxed);
        const uint32_t len =
            std::atomic_ref<const uint32_t>(ring[next_used_].len).load(std::memory_order_relaxed);
        if (id >= size_ || slots_[id].ndesc == 0) {
            mark_broken("used id not in flight", id);
            break;
        }
        Slot& s = slots_[id];
        out[n++] = VqCompletion{s.cookie, len};
        next_used_ = static_cast<uint16_t>(next_used_ + s.ndesc);
        if (next_used_ >= size_) {
            next_used_ = static_cast<uint16_t>(next_used_ - size_);
            used_wrap_ = !used_wrap_;
        }
        num_free_ = static_cast<uint16_t>(num_free_ + s.ndesc);
        s = Slot{nullptr, 0, free_id_};
        free_id_ = id;
        --in_flight_;
    }
    return n;
}

size_t Virtqueue::take_in_flight(std::span<VqCompletion> out) noexcept {
    if (!broken_) return 0;
    size_t n = 0;
    for (uint16_t i = 0; i < size_ && n < out.size(); ++i) {
        Slot& s = slots_[i];
        if (s.ndesc == 0) continue;
        out[n++] = VqCompletion{s.cookie, 0};
        s = Slot{};
        --in_flight_;
    }
    return n;
}

}  // namespace strata::virtio
