// A tiny in-process vhost-user front end for the tests: memfd-backed "guest memory" (guest
// physical and front-end virtual addresses deliberately differ from host addresses), a split
// ring written from the driver's side, and helpers that feed messages to a Session.
#pragma once

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include <strata/vhost/session.h>

namespace strata::vhost::testing {

namespace vs = virtio::spec;

struct GuestRam {
    static constexpr uint64_t kGpa = 0x100000;
    static constexpr uint64_t kUva = 0x7f0000000000;
    explicit GuestRam(size_t bytes = 4u << 20) : size(bytes) {
        fd = memfd_create("guest", MFD_CLOEXEC);
        (void)!ftruncate(fd, off_t(size));
        p = static_cast<uint8_t*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    }
    ~GuestRam() {
        munmap(p, size);
        close(fd);
    }
    uint64_t gpa(size_t off) const { return kGpa + off; }
    uint64_t uva(size_t off) const { return kUva + off; }
    uint8_t* at(size_t off) { return p + off; }
    int fd = -1;
    uint8_t* p = nullptr;
    size_t size = 0;
};

// The driver side of a split ring placed at `base` in the guest RAM.
struct DriverRing {
    DriverRing(GuestRam& ram, size_t base, uint16_t num) : ram(ram), base(base), num(num) {
        std::memset(ram.at(base), 0, 0x10000);
    }
    size_t desc_off() const { return base; }
    size_t avail_off() const { return base + 0x4000; }
    size_t used_off() const { return base + 0x8000; }
    vs::VringDesc* desc() { return reinterpret_cast<vs::VringDesc*>(ram.at(desc_off())); }
    vs::VringAvail* avail() { return reinterpret_cast<vs::VringAvail*>(ram.at(avail_off())); }
    vs::VringUsed* used() { return reinterpret_cast<vs::VringUsed*>(ram.at(used_off())); }
    void set_desc(uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next = 0) {
        desc()[i] = {gpa, len, flags, next};
    }
    void publish(uint16_t head) {
        avail()->ring[avail_idx % num] = head;
        ++avail_idx;
        __atomic_store_n(&avail()->idx, avail_idx, __ATOMIC_RELEASE);
    }
    bool pop_used(uint32_t& id, uint32_t& len) {
        if (__atomic_load_n(&used()->idx, __ATOMIC_ACQUIRE) == last_used) return false;
        const auto& e = used()->ring[last_used % num];
        id = e.id;
        len = e.len;
        ++last_used;
        return true;
    }
    GuestRam& ram;
    size_t base;
    uint16_t num;
    uint16_t avail_idx = 0;
    uint16_t last_used = 0;
};

// The driver side of a packed ring at `base`: the ring, then the driver event suppression
// structure where the split avail ring would be and the device's where the used ring would be
// (so start_queue() passes them as vhost-user does).
struct DriverPackedRing {
    DriverPackedRing(GuestRam& ram, size_t base, uint16_t num) : ram(ram), base(base), num(num) {
        std::memset(ram.at(base), 0, 0x10000);
        counts.assign(num, 0);
    }
    size_t desc_off() const { return base; }
    size_t avail_off() const { return base + 0x4000; }
    size_t used_off() const { return base + 0x8000; }
    vs::PackedDesc* desc() { return reinterpret_cast<vs::PackedDesc*>(ram.at(desc_off())); }
    vs::PackedEvent* driver_event() {
        return reinterpret_cast<vs::PackedEvent*>(ram.at(avail_off()));
    }
    vs::PackedEvent* device_event() {
        return reinterpret_cast<vs::PackedEvent*>(ram.at(used_off()));
    }
    struct Buf {
        uint64_t gpa;
        uint32_t len;
        uint16_t flags;  // WRITE, INDIRECT
    };
    // Makes a chain of `bufs` available with buffer id `id` (NEXT set on all but the last),
    // the head's flags stored last.
    void publish(uint16_t id, std::initializer_list<Buf> bufs) {
        const uint16_t head = avail_idx;
        uint16_t head_flags = 0;
        size_t k = 0;
        for (const Buf& b : bufs) {
            const uint16_t f =
                static_cast<uint16_t>(b.flags | (k + 1 < bufs.size() ? vs::kDescFNext : 0) |
                                      (avail_wrap ? vs::kPackedDescFAvail : vs::kPackedDescFUsed));
            desc()[avail_idx] = {b.gpa, b.len, id, avail_idx == head ? uint16_t(0) : f};
            if (avail_idx == head) head_flags = f;
            if (++avail_idx == num) {
                avail_idx = 0;
                avail_wrap = !avail_wrap;
            }
            ++k;
        }
        counts[id % num] = static_cast<uint16_t>(bufs.size());
        __atomic_store_n(&desc()[head].flags, head_flags, __ATOMIC_RELEASE);
    }
    bool pop_used(uint32_t& id, uint32_t& len) {
        const uint16_t f = __atomic_load_n(&desc()[used_idx].flags, __ATOMIC_ACQUIRE);
        if (!vs::packed_desc_is_used(f, used_wrap)) return false;
        id = desc()[used_idx].id;
        len = desc()[used_idx].len;
        used_idx = static_cast<uint16_t>(used_idx + (id < num ? counts[id] : 1));
        if (used_idx >= num) {
            used_idx = static_cast<uint16_t>(used_idx - num);
            used_wrap = !used_wrap;
        }
        return true;
    }
    GuestRam& ram;
    size_t base;
    uint16_t num;
    uint16_t avail_idx = 0;
    bool avail_wrap = true;
    uint16_t used_idx = 0;
    bool used_wrap = true;
    std::vector<uint16_t> counts;
};

struct Msg {
    Result<void> result;
    Reply reply;
};

inline Msg send(Session& s, vu::Request req, const void* payload, uint32_t size,
                std::vector<int> fds = {}, uint32_t flags = vu::kVersion) {
    vu::Header h{req, flags, size};
    Msg m;
    m.result = s.handle(h, static_cast<const uint8_t*>(payload), fds.data(), fds.size(), m.reply);
    return m;
}
inline Msg send_u64(Session& s, vu::Request req, uint64_t v, std::vector<int> fds = {}) {
    return send(s, req, &v, 8, std::move(fds));
}
inline Msg send_state(Session& s, vu::Request req, uint32_t index, uint32_t num) {
    vu::VringState st{index, num};
    return send(s, req, &st, sizeof st);
}
inline uint64_t reply_u64(const Msg& m) {
    uint64_t v;
    std::memcpy(&v, m.reply.payload, 8);
    return v;
}

inline Msg set_mem_table(Session& s, GuestRam& ram) {
    vu::Memory mem{};
    mem.nregions = 1;
    mem.regions[0] = {GuestRam::kGpa, ram.size, GuestRam::kUva, 0};
    return send(s, vu::Request::kSetMemTable, &mem, 8 + sizeof(vu::MemoryRegion), {dup(ram.fd)});
}

// Negotiates features and starts queue `q` on `ring` (DriverRing or DriverPackedRing: give a
// packed one VIRTIO_F_RING_PACKED and base 0x8000); returns the call eventfd (the test
// closes it) or -1 on failure.
template <class Ring>
int start_queue(Session& s, GuestRam& ram, Ring& ring, uint16_t q, uint64_t features,
                uint32_t base = 0) {
    if (!send_u64(s, vu::Request::kSetFeatures, features).result.ok()) return -1;
    if (!send_state(s, vu::Request::kSetVringNum, q, ring.num).result.ok()) return -1;
    if (!send_state(s, vu::Request::kSetVringBase, q, base).result.ok()) return -1;
    vu::VringAddr a{
        q, 0, ram.uva(ring.desc_off()), ram.uva(ring.used_off()), ram.uva(ring.avail_off()), 0};
    if (!send(s, vu::Request::kSetVringAddr, &a, sizeof a).result.ok()) return -1;
    const int kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const int call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!send_u64(s, vu::Request::kSetVringKick, q, {kick}).result.ok()) return -1;
    if (!send_u64(s, vu::Request::kSetVringCall, q, {dup(call)}).result.ok()) return -1;
    if (!send_state(s, vu::Request::kSetVringEnable, q, 1).result.ok()) return -1;
    return call;
}

inline uint64_t default_features() {
    return vs::feature(vs::kFVersion1) | vs::feature(vs::kFVhostUserProtocolFeatures) |
           vs::feature(vs::kFRingIndirectDesc);
}

}  // namespace strata::vhost::testing
