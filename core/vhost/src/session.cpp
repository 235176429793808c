// The vhost-user back end of one connection: message handling, queue start/stop, inflight
// tracking, the polled data path and interrupt coalescing (session.h).
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/vhost/session.h>

namespace strata::vhost {

STRATA_LOG_COMPONENT(vhost);

namespace {

namespace vs = virtio::spec;
using vu::Request;

Error protocol(std::string msg) {
    return Error(Errc::protocol_error, std::move(msg));
}

void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

uint64_t u64_of(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

void reply_u64(Reply& r, const vu::Header& h, uint64_t v) {
    r.send = true;
    r.header = {h.request, vu::kVersion | vu::kFlagReply, 8};
    std::memcpy(r.payload, &v, 8);
}

constexpr uint64_t kWindowNs = 10'000'000;  // coalescing: the rate is measured over 10 ms
constexpr uint16_t kNoEntry = 0xffff;        // packed inflight: buffer id not recorded

}  // namespace

Result<void> check_message(const vu::Header& h, size_t nfds) {
    const auto name = vu::request_name(h.request);
    if ((h.flags & vu::kVersionMask) != vu::kVersion)
        return protocol(fmt::format("{}: bad version in flags {:#x}", name, h.flags));
    if (h.size > vu::kMaxPayload)
        return protocol(
            fmt::format("{}: payload of {} bytes (at most {})", name, h.size, vu::kMaxPayload));
    if (nfds > vu::kMaxFds) return protocol(fmt::format("{}: {} fds", name, nfds));
    size_t want = 0;          // exact payload size, or
    size_t min = 0, max = 0;  // a range when want == SIZE_MAX
    size_t max_fds = 0;
    constexpr size_t kRange = SIZE_MAX;
    switch (h.request) {
        case Request::kGetFeatures:
        case Request::kGetProtocolFeatures:
        case Request::kSetOwner:
        case Request::kResetOwner:
        case Request::kResetDevice:
        case Request::kGetQueueNum:
            want = 0;
            break;
        case Request::kSetFeatures:
        case Request::kSetProtocolFeatures:
            want = 8;
            break;
        case Request::kSetMemTable:
            want = kRange;
            min = 8;
            max = sizeof(vu::Memory);
            max_fds = vu::kMaxMemRegions;
            break;
        case Request::kSetVringNum:
        case Request::kSetVringBase:
        case Request::kGetVringBase:
        case Request::kSetVringEnable:
            want = sizeof(vu::VringState);
            break;
        case Request::kSetVringAddr:
            want = sizeof(vu::VringAddr);
            break;
        case Request::kSetVringKick:
        case Request::kSetVringCall:
        case Request::kSetVringErr:
            want = 8;
            max_fds = 1;
            break;
        case Request::kGetConfig:
        case Request::kSetConfig:
            want = kRange;
            min = 12;
            max = sizeof(vu::ConfigSpace);
            break;
        case Request::kGetInflightFd:
            want = sizeof(vu::Inflight);
            break;
        case Request::kGetMaxMemSlots:
            want = 0;
            break;
        case Request::kAddMemReg:
        case Request::kRemMemReg:  // REM: an fd is allowed (QEMU sends one) and closed
            want = sizeof(vu::SingleMemoryRegion);
            max_fds = 1;
            break;
        case Request::kSetInflightFd:
            want = sizeof(vu::Inflight);
            max_fds = 1;
            break;
        default:
            return protocol(
                fmt::format("unsupported request {} ({})", static_cast<uint32_t>(h.request), name));
    }
    if (want == kRange) {
        if (h.size < min || h.size > max)
            return protocol(
                fmt::format("{}: payload of {} bytes (expected {} to {})", name, h.size, min, max));
    } else if (h.size != want) {
        return protocol(fmt::format("{}: payload of {} bytes (expected {})", name, h.size, want));
    }
    if (nfds > max_fds)
        return protocol(fmt::format("{}: {} fds (at most {})", name, nfds, max_fds));
    return {};
}

Session::Session(Device& device, std::string name) : device_(device), name_(std::move(name)) {
    for (uint16_t i = 0; i < kMaxQueues; ++i) queues_[i].index = i;
}

Session::~Session() {
    reset();
    for (auto& q : queues_) {
        close_fd(q.kick_fd);
        close_fd(q.call_fd);
    }
    memory_.clear();
    unmap_inflight();
}

uint64_t Session::offered_features() const noexcept {
    return device_.features() | vs::feature(vs::kFVersion1) |
           vs::feature(vs::kFVhostUserProtocolFeatures) | vs::feature(vs::kFRingIndirectDesc) |
           vs::feature(vs::kFRingEventIdx);
}

uint64_t Session::offered_protocol_features() noexcept {
    return vs::feature(vu::kPfMq) | vs::feature(vu::kPfReplyAck) | vs::feature(vu::kPfConfig) |
           vs::feature(vu::kPfInflightShmfd) | vs::feature(vu::kPfResetDevice) |
           vs::feature(vu::kPfConfigureMemSlots);
}

uint32_t Session::broken_queues() const noexcept {
    uint32_t n = 0;
    for (const auto& q : queues_) n += q.broken ? 1 : 0;
    return n;
}

uint32_t Session::outstanding() const noexcept {
    uint32_t n = 0;
    for (const auto& q : queues_) n += q.outstanding;
    return n;
}

void Session::unmap_inflight() noexcept {
    if (inflight_base_ != nullptr) munmap(inflight_base_, inflight_len_);
    inflight_base_ = nullptr;
    inflight_len_ = 0;
    close_fd(inflight_fd_);
    for (auto& q : queues_) {
        q.inflight = nullptr;
        q.inflight_packed = nullptr;
    }
}

Result<void> Session::handle(const vu::Header& h, const uint8_t* payload, const int* fds_in,
                             size_t nfds, Reply& reply) {
    int fds[vu::kMaxFds];
    const size_t owned = std::min(nfds, vu::kMaxFds);
    for (size_t i = 0; i < owned; ++i) fds[i] = fds_in[i];
    for (size_t i = owned; i < nfds; ++i) ::close(fds_in[i]);
    auto close_all = [&] {
        for (size_t i = 0; i < owned; ++i) close_fd(fds[i]);
    };
    reply.send = false;
    reply.fd = -1;
    if (auto r = check_message(h, nfds); !r.ok()) {
        close_all();
        return r;
    }
    const auto name = vu::request_name(h.request);
    auto vring_state = [&]() {
        vu::VringState s;
        std::memcpy(&s, payload, sizeof s);
        return s;
    };
    auto queue_at = [&](uint64_t index) -> Result<Queue*> {
        if (index >= device_.max_queues() || index >= kMaxQueues)
            return protocol(fmt::format("{}: queue index {} out of range (max {})", name, index,
                                        device_.max_queues()));
        return &queues_[index];
    };
    bool replied = false;
    switch (h.request) {
        case Request::kGetFeatures:
            reply_u64(reply, h, offered_features());
            replied = true;
            break;
        case Request::kSetFeatures: {
            const uint64_t f = u64_of(payload);
            if (f & ~offered_features())
                return protocol(fmt::format("SET_FEATURES: {:#x} not offered (offered {:#x})", f,
                                            offered_features()));
            features_ = f;
            features_set_ = true;
            break;
        }
        case Request::kGetProtocolFeatures:
            reply_u64(reply, h, offered_protocol_features());
            replied = true;
            break;
        case Request::kSetProtocolFeatures: {
            const uint64_t f = u64_of(payload);
            if (f & ~offered_protocol_features())
                return protocol(fmt::format("SET_PROTOCOL_FEATURES: {:#x} not offered", f));
            protocol_features_ = f;
            break;
        }
        case Request::kSetOwner:
            owner_ = true;
            break;
        case Request::kResetOwner:
        case Request::kResetDevice:
            reset();
            break;
        case Request::kSetMemTable: {
            auto r = set_mem_table(payload, h.size, fds, owned);
            if (!r.ok()) return r;
            break;
        }
        case Request::kSetVringNum: {
            const auto s = vring_state();
            auto q = queue_at(s.index);
            if (!q.ok()) return q.error();
            if (s.num == 0 || s.num > vs::kMaxQueueSize)
                return protocol(fmt::format("SET_VRING_NUM: queue {} size {} (1 to {})", s.index,
                                            s.num, vs::kMaxQueueSize));
            if ((*q)->started) return protocol("SET_VRING_NUM on a started queue");
            (*q)->num = static_cast<uint16_t>(s.num);
            break;
        }
        case Request::kSetVringAddr: {
            vu::VringAddr a;
            std::memcpy(&a, payload, sizeof a);
            auto q = queue_at(a.index);
            if (!q.ok()) return q.error();
            if ((*q)->started) return protocol("SET_VRING_ADDR on a started queue");
            (*q)->addr = a;
            (*q)->addr_set = true;
            if (auto r = maybe_start(**q); !r.ok()) return r;
            break;
        }
        case Request::kSetVringBase: {
            const auto s = vring_state();
            auto q = queue_at(s.index);
            if (!q.ok()) return q.error();
            if ((*q)->started) return protocol("SET_VRING_BASE on a started queue");
            // Packed rings: the upper half carries the used index and wrap counter (QEMU).
            if (s.num > 0xffff && !has_feature(vs::kFRingPacked))
                return protocol(fmt::format("SET_VRING_BASE: base {:#x} out of range", s.num));
            (*q)->base = s.num;
            break;
        }
        case Request::kGetVringBase: {
            const auto s = vring_state();
            auto q = queue_at(s.index);
            if (!q.ok()) return q.error();
            Queue& qq = **q;
            qq.stopping = true;
            close_fd(qq.kick_fd);
            qq.kicked = false;
            pending_get_base_ = static_cast<int>(qq.index);
            take_pending_reply(reply);
            replied = true;
            break;
        }
        case Request::kSetVringKick:
        case Request::kSetVringCall:
        case Request::kSetVringErr: {
            const uint64_t v = u64_of(payload);
            const bool no_fd = (v & vu::kVringNoFdMask) != 0;
            if ((v & ~(vu::kVringIndexMask | vu::kVringNoFdMask)) != 0)
                return protocol(fmt::format("{}: bad payload {:#x}", name, v));
            if (no_fd != (owned == 0)) {
                close_all();
                return protocol(fmt::format("{}: {} fds with the no-fd bit {}", name, owned,
                                            no_fd ? "set" : "clear"));
            }
            auto q = queue_at(v & vu::kVringIndexMask);
            if (!q.ok()) {
                close_all();
                return q.error();
            }
            int fd = owned ? fds[0] : -1;
            if (h.request == Request::kSetVringErr) {
                close_fd(fd);
            } else if (h.request == Request::kSetVringCall) {
                close_fd((*q)->call_fd);
                (*q)->call_fd = fd;
            } else {
                close_fd((*q)->kick_fd);
                (*q)->kick_fd = fd;  // kept open, never read: the ring is polled
                (*q)->kicked = true;
                if (auto r = maybe_start(**q); !r.ok()) return r;
            }
            break;
        }
        case Request::kSetVringEnable: {
            const auto s = vring_state();
            auto q = queue_at(s.index);
            if (!q.ok()) return q.error();
            if (s.num > 1) return protocol(fmt::format("SET_VRING_ENABLE: value {}", s.num));
            (*q)->enabled = s.num == 1;
            if (auto r = maybe_start(**q); !r.ok()) return r;
            break;
        }
        case Request::kGetQueueNum:
            reply_u64(reply, h, device_.max_queues());
            replied = true;
            break;
        case Request::kGetConfig: {
            vu::ConfigSpace cs{};
            std::memcpy(&cs, payload, h.size);
            reply.send = true;
            replied = true;
            if (12ull + cs.size > h.size || cs.size > vu::kMaxConfigSize ||
                !device_.read_config(cs.offset, cs.payload, cs.size)) {
                STRATA_WARNLOG(log_vhost, "{}: GET_CONFIG offset {} size {} refused", name_,
                               cs.offset, cs.size);
                reply.header = {h.request, vu::kVersion | vu::kFlagReply, 0};
                break;
            }
            reply.header = {h.request, vu::kVersion | vu::kFlagReply, 12u + cs.size};
            std::memcpy(reply.payload, &cs, 12u + cs.size);
            break;
        }
        case Request::kSetConfig: {
            vu::ConfigSpace cs{};
            std::memcpy(&cs, payload, h.size);
            if (12ull + cs.size > h.size)
                return protocol(fmt::format("SET_CONFIG: size {} beyond the payload", cs.size));
            // Writable fields (virtio-blk's writeback) are not changeable: accepted, ignored.
            break;
        }
        case Request::kGetInflightFd: {
            vu::Inflight in;
            std::memcpy(&in, payload, sizeof in);
            auto r = get_inflight(in, reply);
            if (!r.ok()) return r;
            replied = true;
            break;
        }
        case Request::kGetMaxMemSlots:
            reply_u64(reply, h, vu::kMaxMemRegions);
            replied = true;
            break;
        case Request::kAddMemReg: {
            vu::SingleMemoryRegion m;
            std::memcpy(&m, payload, sizeof m);
            if (owned != 1) return protocol("ADD_MEM_REG without an fd");
            auto r = add_mem_reg(m.region, fds[0]);
            if (!r.ok()) return r;
            break;
        }
        case Request::kRemMemReg: {
            vu::SingleMemoryRegion m;
            std::memcpy(&m, payload, sizeof m);
            close_all();
            auto r = rem_mem_reg(m.region);
            if (!r.ok()) return r;
            break;
        }
        case Request::kSetInflightFd: {
            vu::Inflight in;
            std::memcpy(&in, payload, sizeof in);
            if (owned != 1) return protocol("SET_INFLIGHT_FD without an fd");
            auto r = set_inflight(in, fds[0]);
            if (!r.ok()) return r;
            break;
        }
        default:
            close_all();
            return protocol(fmt::format("unsupported request {}", name));
    }
    if (!replied && (h.flags & vu::kFlagNeedReply) &&
        vs::has_feature(protocol_features_, vu::kPfReplyAck))
        reply_u64(reply, h, 0);
    return {};
}

Result<void> Session::set_mem_table(const uint8_t* payload, uint32_t size, const int* fds,
                                    size_t nfds) {
    vu::Memory m{};
    std::memcpy(&m, payload, size);
    auto close_from = [&](size_t i) {
        for (; i < nfds; ++i) ::close(fds[i]);
    };
    if (m.nregions == 0 || m.nregions > vu::kMaxMemRegions ||
        size < 8 + m.nregions * sizeof(vu::MemoryRegion)) {
        close_from(0);
        return protocol(fmt::format("SET_MEM_TABLE: {} regions in {} bytes", m.nregions, size));
    }
    if (nfds != m.nregions) {
        close_from(0);
        return protocol(fmt::format("SET_MEM_TABLE: {} regions but {} fds", m.nregions, nfds));
    }
    // Queues using the old table stop; they restart on the new one below.
    for (auto& q : queues_)
        if (q.started && q.outstanding != 0) {
            close_from(0);
            return protocol("SET_MEM_TABLE while requests are outstanding");
        }
    bool restart[kMaxQueues] = {};
    for (auto& q : queues_)
        if (q.started) {
            restart[q.index] = true;
            stop(q);
        }
    memory_.clear();
    for (size_t i = 0; i < m.nregions; ++i) {
        const vu::MemoryRegion& r = m.regions[i];
        const uint64_t len = r.mmap_offset + r.memory_size;
        if (r.memory_size == 0 || len < r.mmap_offset) {
            close_from(i);
            memory_.clear();
            return protocol(fmt::format("SET_MEM_TABLE: region {} size {:#x} offset {:#x}", i,
                                        r.memory_size, r.mmap_offset));
        }
        // A mapping longer than its file faults (SIGBUS) on access beyond the end: refused.
        struct stat st {};
        if (fstat(fds[i], &st) != 0 || uint64_t(st.st_size) < len) {
            close_from(i);
            memory_.clear();
            return protocol(
                fmt::format("SET_MEM_TABLE: region {} ends at {:#x} beyond its fd's "
                            "size {:#x}",
                            i, len, uint64_t(st.st_size)));
        }
        void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
        ::close(fds[i]);
        if (base == MAP_FAILED) {
            const int e = errno;
            close_from(i + 1);
            memory_.clear();
            return protocol(fmt::format("SET_MEM_TABLE: mmap of region {} ({:#x} bytes): {}", i,
                                        len, std::strerror(e)));
        }
        auto added = memory_.add(r.guest_phys_addr, r.memory_size, r.userspace_addr,
                                 static_cast<uint8_t*>(base) + r.mmap_offset, base, len);
        if (!added.ok()) {
            munmap(base, len);
            close_from(i + 1);
            memory_.clear();
            return protocol(
                fmt::format("SET_MEM_TABLE: region {}: {}", i, added.error().message()));
        }
    }
    for (auto& q : queues_)
        if (restart[q.index])
            if (auto r = maybe_start(q); !r.ok()) return r;
    return {};
}

// ADD_MEM_REG (CONFIGURE_MEM_SLOTS): one region more, checked and mapped as SET_MEM_TABLE's;
// queues waiting for memory may start.
Result<void> Session::add_mem_reg(const vu::MemoryRegion& r, int fd) {
    const uint64_t len = r.mmap_offset + r.memory_size;
    if (r.memory_size == 0 || len < r.mmap_offset) {
        ::close(fd);
        return protocol(fmt::format("ADD_MEM_REG: size {:#x} offset {:#x}", r.memory_size,
                                    r.mmap_offset));
    }
    if (memory_.size() == GuestMemory::kMaxRegions) {
        ::close(fd);
        return protocol(fmt::format("ADD_MEM_REG: all {} memory slots are in use",
                                    GuestMemory::kMaxRegions));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || uint64_t(st.st_size) < len) {
        ::close(fd);
        return protocol(fmt::format("ADD_MEM_REG: the region ends at {:#x} beyond its fd's size "
                                    "{:#x}",
                                    len, uint64_t(st.st_size)));
    }
    void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) {
        const int e = errno;
        return protocol(
            fmt::format("ADD_MEM_REG: mmap of {:#x} bytes: {}", len, std::strerror(e)));
    }
    auto added = memory_.add(r.guest_phys_addr, r.memory_size, r.userspace_addr,
                             static_cast<uint8_t*>(base) + r.mmap_offset, base, len);
    if (!added.ok()) {
        munmap(base, len);
        return protocol(fmt::format("ADD_MEM_REG: {}", added.error().message()));
    }
    for (auto& q : queues_)
        if (auto s = maybe_start(q); !s.ok()) return s;
    return {};
}

// REM_MEM_REG: the region with exactly this address, size and front-end address goes. Refused
// while requests are outstanding (their buffers may lie in it) or while a started queue's ring
// lies in it.
Result<void> Session::rem_mem_reg(const vu::MemoryRegion& r) {
    if (outstanding() != 0)
        return protocol(
            fmt::format("REM_MEM_REG while {} requests are outstanding", outstanding()));
    auto inside = [&](uint64_t uva) {
        return uva >= r.userspace_addr && uva - r.userspace_addr < r.memory_size;
    };
    for (const auto& q : queues_)
        if (q.started && (inside(q.addr.desc_user_addr) || inside(q.addr.avail_user_addr) ||
                          inside(q.addr.used_user_addr)))
            return protocol(fmt::format(
                "REM_MEM_REG: the region at {:#x} holds started queue {}'s ring",
                r.guest_phys_addr, q.index));
    if (auto rm = memory_.remove(r.guest_phys_addr, r.memory_size, r.userspace_addr); !rm.ok())
        return protocol(fmt::format("REM_MEM_REG: no region at {:#x} of {:#x} bytes (uva {:#x})",
                                    r.guest_phys_addr, r.memory_size, r.userspace_addr));
    return {};
}

// The inflight region: per queue, libvhost-user's InflightQueueSplit (split rings) or DPDK's
// InflightQueuePacked (packed rings) with its descriptors, rounded up to 64 bytes. Queue i's
// record starts at i times that size. The region is allocated with the packed size (the
// larger), so it serves either format whether or not the features are set yet.
Result<void> Session::get_inflight(const vu::Inflight& in, Reply& reply) {
    if (in.num_queues == 0 || in.num_queues > kMaxQueues || in.queue_size == 0 ||
        in.queue_size > vs::kMaxQueueSize)
        return protocol(
            fmt::format("GET_INFLIGHT_FD: {} queues of {}", in.num_queues, in.queue_size));
    unmap_inflight();
    const size_t per_queue = std::max(vu::inflight_queue_split_bytes(in.queue_size),
                                      vu::inflight_queue_packed_bytes(in.queue_size));
    const size_t len = per_queue * in.num_queues;
    const int fd = memfd_create("strata-vhost-inflight", MFD_CLOEXEC);
    if (fd < 0) return Error(Errc::internal, "memfd_create failed");
    if (ftruncate(fd, static_cast<off_t>(len)) != 0) {
        ::close(fd);
        return Error(Errc::internal, "ftruncate of the inflight region failed");
    }
    void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        ::close(fd);
        return Error(Errc::internal, "mmap of the inflight region failed");
    }
    std::memset(base, 0, len);
    inflight_base_ = base;
    inflight_len_ = len;
    inflight_fd_ = fd;
    inflight_queues_ = in.num_queues;
    inflight_queue_size_ = in.queue_size;
    vu::Inflight out{len, 0, in.num_queues, in.queue_size};
    reply.send = true;
    reply.header = {vu::Request::kGetInflightFd, vu::kVersion | vu::kFlagReply, sizeof out};
    std::memcpy(reply.payload, &out, sizeof out);
    reply.fd = fd;
    return {};
}

Result<void> Session::set_inflight(const vu::Inflight& in, int fd) {
    const size_t per_queue = vu::inflight_queue_split_bytes(in.queue_size);
    if (in.num_queues == 0 || in.num_queues > kMaxQueues || in.queue_size == 0 ||
        in.queue_size > vs::kMaxQueueSize || in.mmap_size < per_queue * in.num_queues) {
        ::close(fd);
        return protocol(fmt::format("SET_INFLIGHT_FD: {} queues of {} in {} bytes", in.num_queues,
                                    in.queue_size, in.mmap_size));
    }
    for (auto& q : queues_)
        if (q.started) {
            ::close(fd);
            return protocol("SET_INFLIGHT_FD with a started queue");
        }
    struct stat st {};
    if (fstat(fd, &st) != 0 || in.mmap_offset + in.mmap_size < in.mmap_offset ||
        uint64_t(st.st_size) < in.mmap_offset + in.mmap_size) {
        ::close(fd);
        return protocol("SET_INFLIGHT_FD: the region lies beyond the fd's size");
    }
    void* base = mmap(nullptr, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                      static_cast<off_t>(in.mmap_offset));
    if (base == MAP_FAILED) {
        ::close(fd);
        return protocol("SET_INFLIGHT_FD: mmap failed");
    }
    unmap_inflight();
    inflight_base_ = base;
    inflight_len_ = in.mmap_size;
    inflight_fd_ = fd;
    inflight_queues_ = in.num_queues;
    inflight_queue_size_ = in.queue_size;
    return {};
}

Result<void> Session::attach_ring(Queue& q) {
    const auto& a = q.addr;
    if (q.packed) {
        // Packed: desc_user_addr is the ring, avail_user_addr the driver event suppression
        // structure, used_user_addr the device's (as QEMU and DPDK map them).
        auto* desc = static_cast<vs::PackedDesc*>(
            memory_.uva_to_hva(a.desc_user_addr, sizeof(vs::PackedDesc) * q.num));
        auto* driver_event = static_cast<vs::PackedEvent*>(
            memory_.uva_to_hva(a.avail_user_addr, sizeof(vs::PackedEvent)));
        auto* device_event = static_cast<vs::PackedEvent*>(
            memory_.uva_to_hva(a.used_user_addr, sizeof(vs::PackedEvent)));
        if (desc == nullptr || driver_event == nullptr || device_event == nullptr)
            return protocol(
                fmt::format("queue {}: packed ring addresses outside guest memory "
                            "(desc {:#x} driver event {:#x} device event {:#x}, size {})",
                            q.index, a.desc_user_addr, a.avail_user_addr, a.used_user_addr, q.num));
        if (a.desc_user_addr % vs::kPackedDescAlign || a.avail_user_addr % vs::kPackedEventAlign ||
            a.used_user_addr % vs::kPackedEventAlign)
            return protocol(fmt::format("queue {}: misaligned packed ring addresses", q.index));
        if ((q.base & 0x7fff) >= q.num || ((q.base >> 16) & 0x7fff) >= q.num)
            return protocol(fmt::format("queue {}: packed base {:#x} beyond the ring size {}",
                                        q.index, q.base, q.num));
        q.packed_slots.assign(q.num, 0);
        q.pring.attach(&memory_, desc, driver_event, device_event, q.packed_slots.data(), q.num,
                       q.base, has_feature(vs::kFRingEventIdx),
                       has_feature(vs::kFRingIndirectDesc));
        return {};
    }
    auto* desc = static_cast<vs::VringDesc*>(
        memory_.uva_to_hva(a.desc_user_addr, vs::split_desc_bytes(q.num)));
    auto* avail = static_cast<vs::VringAvail*>(
        memory_.uva_to_hva(a.avail_user_addr, vs::split_avail_bytes(q.num)));
    auto* used = static_cast<vs::VringUsed*>(
        memory_.uva_to_hva(a.used_user_addr, vs::split_used_bytes(q.num)));
    if (desc == nullptr || avail == nullptr || used == nullptr)
        return protocol(
            fmt::format("queue {}: ring addresses outside guest memory "
                        "(desc {:#x} avail {:#x} used {:#x}, size {})",
                        q.index, a.desc_user_addr, a.avail_user_addr, a.used_user_addr, q.num));
    if (a.desc_user_addr % vs::kSplitDescAlign || a.avail_user_addr % vs::kSplitAvailAlign ||
        a.used_user_addr % vs::kSplitUsedAlign)
        return protocol(fmt::format("queue {}: misaligned ring addresses", q.index));
    q.ring.attach(&memory_, desc, avail, used, q.num, static_cast<uint16_t>(q.base),
                  has_feature(vs::kFRingEventIdx), has_feature(vs::kFRingIndirectDesc));
    return {};
}

Result<void> Session::maybe_start(Queue& q) {
    const bool enabled = q.enabled || !has_feature(vs::kFVhostUserProtocolFeatures);
    if (q.started || q.broken || !q.addr_set || !q.kicked || q.num == 0 || memory_.size() == 0 ||
        !enabled)
        return {};
    q.packed = has_feature(vs::kFRingPacked);
    if (auto r = attach_ring(q); !r.ok()) return r;
    if (auto r = device_.start_queue(*this, q); !r.ok()) {
        q.ring.detach();
        q.pring.detach();
        return r;
    }
    q.started = true;
    q.stopping = false;
    q.outstanding = 0;
    q.inflight = nullptr;
    q.inflight_packed = nullptr;
    if (inflight_base_ != nullptr && !q.packed && q.index < inflight_queues_ &&
        q.num <= inflight_queue_size_) {
        const size_t per_queue = vu::inflight_queue_split_bytes(inflight_queue_size_);
        q.inflight = reinterpret_cast<vu::InflightQueueSplit*>(
            static_cast<uint8_t*>(inflight_base_) + per_queue * q.index);
        resubmit_inflight(q);
    } else if (inflight_base_ != nullptr && q.packed && q.index < inflight_queues_ &&
               q.num <= inflight_queue_size_) {
        const size_t per_queue = vu::inflight_queue_packed_bytes(inflight_queue_size_);
        if (per_queue * (q.index + 1u) > inflight_len_) {
            mark_broken(q, fmt::format("the inflight region ({} bytes) is too small for packed "
                                       "queue records of {} bytes",
                                       inflight_len_, per_queue)
                               .c_str());
        } else {
            q.inflight_packed = reinterpret_cast<vu::InflightQueuePacked*>(
                static_cast<uint8_t*>(inflight_base_) + per_queue * q.index);
            q.inflight_entry.assign(q.num, kNoEntry);
            resubmit_packed_inflight(q);
        }
    }
    STRATA_INFOLOG(log_vhost, "{}: queue {} started ({} ring, size {}, base {:#x})", name_, q.index,
                   q.packed ? "packed" : "split", q.num,
                   q.packed ? q.pring.base() : q.ring.last_avail());
    return {};
}

// libvhost-user's recovery (vu_check_queue_inflights): a region never used is initialised; in
// one left by a previous back end, the last batch head is cleared when its used entry did
// reach the ring, and the heads still marked inflight are resubmitted oldest first. Processing
// of the avail ring resumes after them.
void Session::resubmit_inflight(Queue& q) noexcept {
    auto* in = q.inflight;
    const uint16_t used_idx = q.ring.used_idx_in_ring();
    if (in->version == 0 || in->desc_num != q.num) {
        std::memset(in->desc, 0, sizeof(vu::InflightDescSplit) * q.num);
        in->version = 1;
        in->desc_num = q.num;
        in->used_idx = used_idx;
        in->last_batch_head = 0;
        q.inflight_counter = 1;
        return;
    }
    if (in->used_idx != used_idx) {
        if (in->last_batch_head < q.num) in->desc[in->last_batch_head].inflight = 0;
        in->used_idx = used_idx;
    }
    uint16_t heads[vs::kMaxQueueSize];
    uint16_t n = 0;
    uint64_t max_counter = 0;
    for (uint16_t i = 0; i < q.num; ++i)
        if (in->desc[i].inflight == 1) {
            heads[n++] = i;
            max_counter = std::max(max_counter, in->desc[i].counter);
        }
    std::sort(heads, heads + n,
              [in](uint16_t a, uint16_t b) { return in->desc[a].counter < in->desc[b].counter; });
    q.inflight_counter = max_counter + 1;
    // The front end set the base to the used index: requests after the inflight ones follow.
    if (n != 0) {
        q.base = static_cast<uint16_t>(used_idx + n);
        (void)attach_ring(q);
        STRATA_NOTICELOG(log_vhost, "{}: queue {}: resubmitting {} inflight requests", name_,
                         q.index, n);
    }
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t head = heads[k];
        Chain* c = device_.chain_for(q, head);
        if (c == nullptr) return mark_broken(q, "inflight head reused");
        if (auto e = q.ring.walk(head, *c); e != WalkError::none)
            return mark_broken(q, walk_error_name(e));
        ++q.outstanding;
        ++q.requests;
        device_.submit(*this, q, head);
    }
}

// Packed rings (DPDK's rte_vhost_set_inflight_desc_packed / set_last_inflight_io_packed /
// clr_inflight_desc_packed and vhost_check_queue_inflights_packed, with the recovery made
// exact). A request taken from the ring gets entries from the free list, one per ring
// descriptor, holding copies of them; its head entry is marked inflight last. A completion
// returns the entries to the free list and moves used_idx past the chain before the used
// descriptor is written, then clears inflight and commits the old_* fields.
//
// Recovery: the region is the back end's own, but shared with the front end: every field is
// read once and validated; a bad one breaks the queue (the guest must reset the device). A
// completion caught between its two steps (used_idx differs from old_used_idx) happened iff
// the used descriptor it wrote is in the ring at old_used_idx; otherwise it is rolled back.
// QEMU cannot report a packed queue's position after a back-end crash (its SET_VRING_BASE is
// stale), so the positions come from the region: used from used_idx, avail that many slots
// further as the in-flight chains hold (every slot taken and not yet returned in a used
// descriptor belongs to exactly one of them). The free list is rebuilt from the entries the
// in-flight chains do not use, and those chains are resubmitted oldest first from their copies.
void Session::resubmit_packed_inflight(Queue& q) {
    auto* in = q.inflight_packed;
    const uint16_t n = q.num;
    if (in->version == 0) {  // a new region
        std::memset(in->desc, 0, sizeof(vu::InflightDescPacked) * n);
        for (uint16_t j = 0; j < n; ++j) in->desc[j].next = static_cast<uint16_t>(j + 1);
        in->desc_num = n;
        in->free_head = in->old_free_head = 0;
        in->used_idx = in->old_used_idx = q.pring.used_idx();
        in->used_wrap_counter = in->old_used_wrap_counter = q.pring.used_wrap() ? 1 : 0;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        in->version = 1;
        q.inflight_counter = 1;
        return;
    }
    const uint16_t version = in->version;
    const uint16_t desc_num = in->desc_num;
    const uint16_t free_head = in->free_head;
    const uint16_t used_idx = in->used_idx;
    const uint16_t old_used_idx = in->old_used_idx;
    const uint8_t used_wrap = in->used_wrap_counter;
    const uint8_t old_used_wrap = in->old_used_wrap_counter;
    auto fail = [&](const std::string& why) {
        q.inflight_packed = nullptr;
        mark_broken(q, fmt::format("packed inflight region: {}", why).c_str());
    };
    if (version != 1) return fail(fmt::format("version {}", version));
    if (desc_num != n) return fail(fmt::format("{} descriptors for a ring of {}", desc_num, n));
    if (used_idx >= n || old_used_idx >= n || used_wrap > 1 || old_used_wrap > 1)
        return fail(fmt::format("used index {}/{} wrap {}/{} for a ring of {}", used_idx,
                                old_used_idx, used_wrap, old_used_wrap, n));
    std::vector<vu::InflightDescPacked> d(in->desc, in->desc + n);
    for (uint16_t i = 0; i < n; ++i)
        if (d[i].inflight > 1) return fail(fmt::format("entry {} inflight {}", i, d[i].inflight));
    uint32_t used = old_used_idx;
    bool used_w = old_used_wrap != 0;
    if (used_idx != old_used_idx || used_wrap != old_used_wrap) {
        // A completion was under way: free_head is its head entry.
        const uint16_t h = free_head;
        bool reached = false;
        if (h < n && d[h].inflight == 1 && d[h].last < n && d[h].num != 0 && d[h].num <= n) {
            const auto slot = q.pring.read_slot(old_used_idx);
            const bool a = (slot.flags & vs::kPackedDescFAvail) != 0;
            const bool u = (slot.flags & vs::kPackedDescFUsed) != 0;
            reached = a == u && u == used_w && slot.id == d[d[h].last].id;
        }
        if (reached) {
            d[h].inflight = 0;
            used += d[h].num;
            if (used >= n) {
                used -= n;
                used_w = !used_w;
            }
        }
    }
    std::vector<uint8_t> taken(n, 0);
    std::vector<bool> id_seen(n, false);
    std::vector<uint16_t> heads;
    uint32_t total = 0;
    for (uint16_t i = 0; i < n; ++i) {
        if (d[i].inflight != 1) continue;
        const uint16_t num = d[i].num;
        if (num == 0 || num > n) return fail(fmt::format("entry {}: chain of {}", i, num));
        uint32_t e = i;
        for (uint16_t k = 0; k < num; ++k) {
            if (e >= n || taken[e])
                return fail(fmt::format("entry {}: chain entry {} out of range or shared", i, e));
            taken[e] = 1;
            if (k + 1 < num) e = d[e].next;
        }
        if (d[i].last != e)
            return fail(fmt::format("entry {}: last {} but the chain ends at {}", i, d[i].last, e));
        const uint16_t id = d[e].id;
        if (id >= n || id_seen[id])
            return fail(fmt::format("entry {}: buffer id {} out of range or twice", i, id));
        id_seen[id] = true;
        total += num;
        if (total > n) return fail(fmt::format("{} descriptors in flight in a ring of {}", total, n));
        heads.push_back(i);
    }
    // The free list: every entry no in-flight chain holds, in order.
    uint16_t fh = n;
    for (uint32_t j = n; j-- > 0;)
        if (!taken[j]) {
            d[j].next = fh;
            fh = static_cast<uint16_t>(j);
        }
    uint32_t avail = used + total;
    bool avail_w = used_w;
    if (avail >= n) {
        avail -= n;
        avail_w = !avail_w;
    }
    std::memcpy(in->desc, d.data(), sizeof(vu::InflightDescPacked) * n);
    in->free_head = in->old_free_head = fh;
    in->used_idx = in->old_used_idx = static_cast<uint16_t>(used);
    in->used_wrap_counter = in->old_used_wrap_counter = used_w ? 1 : 0;
    q.pring.set_position(static_cast<uint16_t>(avail), avail_w, static_cast<uint16_t>(used),
                         used_w);
    std::sort(heads.begin(), heads.end(),
              [&d](uint16_t a, uint16_t b) { return d[a].counter < d[b].counter; });
    uint64_t max_counter = 0;
    for (uint16_t h : heads) max_counter = std::max(max_counter, d[h].counter);
    q.inflight_counter = max_counter + 1;
    if (!heads.empty())
        STRATA_NOTICELOG(log_vhost,
                         "{}: queue {}: resubmitting {} inflight requests (packed ring resumes at "
                         "avail {} wrap {}, used {} wrap {})",
                         name_, q.index, heads.size(), avail, avail_w, used, used_w);
    std::vector<vs::PackedDesc> chain(n);
    for (uint16_t h : heads) {
        const uint16_t num = d[h].num;
        uint16_t e = h;
        for (uint16_t k = 0; k < num; ++k) {
            chain[k] = {d[e].addr, d[e].len, d[e].id, d[e].flags};
            e = d[e].next;
        }
        const uint16_t id = d[d[h].last].id;
        Chain* c = device_.chain_for(q, id);
        if (c == nullptr) return mark_broken(q, "inflight buffer id reused");
        if (auto err = q.pring.walk_saved(chain.data(), num, id, *c); err != WalkError::none)
            return mark_broken(q, walk_error_name(err));
        q.inflight_entry[id] = h;
        ++q.outstanding;
        ++q.requests;
        device_.submit(*this, q, id);
    }
}

bool Session::record_packed_inflight(Queue& q, uint16_t start, uint16_t id) noexcept {
    auto* in = q.inflight_packed;
    const uint16_t n = q.num;
    const uint16_t count = q.packed_slots[id];
    const uint16_t h = in->old_free_head;
    uint16_t e = h;
    uint16_t last = h;
    for (uint16_t k = 0; k < count; ++k) {
        if (e >= n) return false;
        const vs::PackedDesc sd = q.pring.read_slot(uint32_t(start) + k);
        auto& de = in->desc[e];
        de.addr = sd.addr;
        de.len = sd.len;
        de.flags = sd.flags;
        de.id = sd.id;
        last = e;
        e = de.next;
    }
    auto& hd = in->desc[h];
    hd.num = count;
    hd.last = last;
    hd.counter = q.inflight_counter++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    hd.inflight = 1;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    in->free_head = e;
    in->old_free_head = e;
    q.inflight_entry[id] = h;
    return true;
}

void Session::stop(Queue& q) noexcept {
    if (!q.started) return;
    device_.stop_queue(*this, q);
    q.ring.detach();
    q.pring.detach();
    q.started = false;
    q.stopping = false;
}

void Session::reset() noexcept {
    for (auto& q : queues_) {
        if (q.outstanding == 0) stop(q);
        q.addr_set = false;
        q.enabled = false;
        q.kicked = false;
        q.broken = false;
        close_fd(q.kick_fd);
    }
    features_ = 0;
    features_set_ = false;
}

bool Session::take_pending_reply(Reply& reply) {
    if (pending_get_base_ < 0) return false;
    Queue& q = queues_[pending_get_base_];
    if (q.outstanding != 0) return false;
    const uint32_t base = !q.started ? q.base : q.packed ? q.pring.base() : q.ring.last_avail();
    stop(q);
    q.base = base;
    q.addr_set = false;
    vu::VringState s{q.index, base};
    reply.send = true;
    reply.header = {vu::Request::kGetVringBase, vu::kVersion | vu::kFlagReply, sizeof s};
    std::memcpy(reply.payload, &s, sizeof s);
    pending_get_base_ = -1;
    return true;
}

void Session::mark_broken(Queue& q, const char* why) noexcept {
    if (!q.broken)
        STRATA_ERRLOG(log_vhost,
                      "{}: queue {}: {}: the queue is broken (needs reset), no more requests are "
                      "processed on it",
                      name_, q.index, why);
    q.broken = true;
}

int Session::poll(uint64_t now_ns) noexcept {
    now_ns_ = now_ns;
    int work = quiesced_ ? 0 : device_.poll(*this);
    for (auto& q : queues_) {
        if (!q.started) continue;
        const bool enabled = q.enabled || !has_feature(vs::kFVhostUserProtocolFeatures);
        if (!q.broken && !q.stopping && !quiesced_ && enabled && device_.polls_queue(q.index)) {
            // At most one ring's worth per poll (the split ring's count is taken once).
            for (uint32_t k = 0; k < q.num; ++k) {
                uint16_t head;
                if (!pop_request(q, head)) break;
                ++work;
                device_.submit(*this, q, head);
            }
        }
        if (q.irq_pending) signal(q, now_ns);
    }
    return work;
}

bool Session::take(Queue& q, uint16_t& head) noexcept {
    const bool enabled = q.enabled || !has_feature(vs::kFVhostUserProtocolFeatures);
    if (!q.started || q.broken || q.stopping || quiesced_ || !enabled) return false;
    return pop_request(q, head);
}

bool Session::pop_request(Queue& q, uint16_t& head) noexcept {
    if (q.packed) {
        bool ready = false;
        if (auto e = q.pring.peek(ready, head); e != WalkError::none) {
            mark_broken(q, walk_error_name(e));
            return false;
        }
        if (!ready) return false;
        Chain* c = device_.chain_for(q, head);
        if (c == nullptr) {
            mark_broken(q, "buffer id already in flight");
            return false;
        }
        const uint16_t start = q.pring.last_avail();
        if (auto e = q.pring.walk(head, *c); e != WalkError::none) {
            mark_broken(q, walk_error_name(e));
            return false;
        }
        if (q.inflight_packed != nullptr && !record_packed_inflight(q, start, head)) {
            mark_broken(q, "packed inflight region: no free entry (scribbled free list)");
            return false;
        }
        ++q.outstanding;
        ++q.requests;
        return true;
    }
    uint16_t n = 0;
    if (auto e = q.ring.available(n); e != WalkError::none) {
        mark_broken(q, walk_error_name(e));
        return false;
    }
    if (n == 0) return false;
    if (auto e = q.ring.pop(head); e != WalkError::none) {
        mark_broken(q, walk_error_name(e));
        return false;
    }
    Chain* c = device_.chain_for(q, head);
    if (c == nullptr) {
        mark_broken(q, "descriptor head already in flight");
        return false;
    }
    if (auto e = q.ring.walk(head, *c); e != WalkError::none) {
        mark_broken(q, walk_error_name(e));
        return false;
    }
    if (q.inflight != nullptr) {
        q.inflight->desc[head].counter = q.inflight_counter++;
        q.inflight->desc[head].inflight = 1;
    }
    ++q.outstanding;
    ++q.requests;
    return true;
}

void Session::complete(Queue& q, uint16_t head, uint32_t written) noexcept {
    if (q.inflight != nullptr) q.inflight->last_batch_head = head;
    auto* pin = q.inflight_packed;
    uint16_t h = kNoEntry;
    if (pin != nullptr && head < q.num) {
        h = q.inflight_entry[head];
        q.inflight_entry[head] = kNoEntry;
    }
    const bool track = h < q.num;
    if (!q.broken) {
        if (q.packed) {
            if (track) {  // DPDK's set_last_inflight_io_packed: entries freed, used_idx moved
                const uint16_t last = pin->desc[h].last;
                if (last < q.num) pin->desc[last].next = pin->free_head;
                pin->free_head = h;
                const uint16_t slots = q.packed_slots[head] != 0 ? q.packed_slots[head] : 1;
                uint32_t used = q.pring.used_idx() + uint32_t(slots);
                bool wrap = q.pring.used_wrap();
                if (used >= q.num) {
                    used -= q.num;
                    wrap = !wrap;
                }
                pin->used_idx = static_cast<uint16_t>(used);
                pin->used_wrap_counter = wrap ? 1 : 0;
                __atomic_thread_fence(__ATOMIC_RELEASE);
            }
            q.pring.push_used(head, written);
        } else {
            q.ring.push_used(head, written);
        }
    }
    if (q.inflight != nullptr) {
        q.inflight->desc[head].inflight = 0;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        q.inflight->used_idx = q.ring.used_idx();
    }
    if (track) {  // clr_inflight_desc_packed: the completion is committed
        __atomic_thread_fence(__ATOMIC_RELEASE);
        pin->desc[h].inflight = 0;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        pin->old_free_head = pin->free_head;
        pin->old_used_idx = pin->used_idx;
        pin->old_used_wrap_counter = pin->used_wrap_counter;
    }
    --q.outstanding;
    ++q.window_completions;
    q.irq_pending = true;
}

void Session::signal(Queue& q, uint64_t now_ns) noexcept {
    if (coalescing_.delay_base_us != 0) {
        if (now_ns - q.window_start_ns >= kWindowNs) {
            const uint64_t elapsed = now_ns - q.window_start_ns;
            const uint64_t iops =
                elapsed ? uint64_t(q.window_completions) * 1'000'000'000ull / elapsed : 0;
            q.coalesce = iops > coalescing_.iops_threshold;
            q.window_start_ns = now_ns;
            q.window_completions = 0;
        }
        if (q.coalesce && now_ns < q.irq_due_ns) return;
    }
    q.irq_pending = false;
    if (q.broken || !q.started) return;
    if (!(q.packed ? q.pring.need_interrupt() : q.ring.need_interrupt())) return;
    q.irq_due_ns = now_ns + uint64_t(coalescing_.delay_base_us) * 1000;
    ++q.interrupts;
    if (q.call_fd >= 0) {
        const uint64_t one = 1;
        (void)!::write(q.call_fd, &one, sizeof one);
    }
}

}  // namespace strata::vhost
