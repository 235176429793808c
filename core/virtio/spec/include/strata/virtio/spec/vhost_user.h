#pragma once
// The vhost-user wire protocol (QEMU docs/interop/vhost-user.rst): message header, request codes,
// protocol features and payloads. Spoken by core/vhost (the back end, Strata's targets) and by
// core/virtio's virtio-user transport (the front end). Every message is a 12-byte header, then
// `size` bytes of payload; file descriptors travel as SCM_RIGHTS ancillary data.

#include <cstddef>
#include <cstdint>

namespace strata::virtio::spec::vhost_user {

enum class Request : std::uint32_t {
    kNone = 0,
    kGetFeatures = 1,
    kSetFeatures = 2,
    kSetOwner = 3,
    kResetOwner = 4,
    kSetMemTable = 5,
    kSetLogBase = 6,
    kSetLogFd = 7,
    kSetVringNum = 8,
    kSetVringAddr = 9,
    kSetVringBase = 10,
    kGetVringBase = 11,
    kSetVringKick = 12,
    kSetVringCall = 13,
    kSetVringErr = 14,
    kGetProtocolFeatures = 15,
    kSetProtocolFeatures = 16,
    kGetQueueNum = 17,
    kSetVringEnable = 18,
    kSendRarp = 19,
    kNetSetMtu = 20,
    kSetBackendReqFd = 21,
    kIotlbMsg = 22,
    kSetVringEndian = 23,
    kGetConfig = 24,
    kSetConfig = 25,
    kCreateCryptoSession = 26,
    kCloseCryptoSession = 27,
    kPostcopyAdvise = 28,
    kPostcopyListen = 29,
    kPostcopyEnd = 30,
    kGetInflightFd = 31,
    kSetInflightFd = 32,
    kGpuSetSocket = 33,
    kResetDevice = 34,
    kVringKick = 35,
    kGetMaxMemSlots = 36,
    kAddMemReg = 37,
    kRemMemReg = 38,
    kSetStatus = 39,
    kGetStatus = 40,
};

// Requests the back end sends to the front end on the backend channel (SET_BACKEND_REQ_FD).
enum class BackendRequest : std::uint32_t {
    kNone = 0,
    kIotlbMsg = 1,
    kConfigChangeMsg = 2,
    kVringHostNotifierMsg = 3,
};

// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
inline constexpr unsigned kPfMq = 0;
inline constexpr unsigned kPfLogShmfd = 1;
inline constexpr unsigned kPfRarp = 2;
inline constexpr unsigned kPfReplyAck = 3;
inline constexpr unsigned kPfMtu = 4;
inline constexpr unsigned kPfBackendReq = 5;
inline constexpr unsigned kPfCrossEndian = 6;
inline constexpr unsigned kPfCryptoSession = 7;
inline constexpr unsigned kPfPagefault = 8;
inline constexpr unsigned kPfConfig = 9;
inline constexpr unsigned kPfBackendSendFd = 10;
inline constexpr unsigned kPfHostNotifier = 11;
inline constexpr unsigned kPfInflightShmfd = 12;
inline constexpr unsigned kPfResetDevice = 13;
inline constexpr unsigned kPfInbandNotifications = 14;
inline constexpr unsigned kPfConfigureMemSlots = 15;
inline constexpr unsigned kPfStatus = 16;

// Header flags.
inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kFlagReply = 0x4;
inline constexpr std::uint32_t kFlagNeedReply = 0x8;

inline constexpr std::size_t kMaxFds = 8;           // SCM_RIGHTS fds accepted per message
inline constexpr std::size_t kMaxMemRegions = 8;    // regions in one SET_MEM_TABLE
inline constexpr std::size_t kMaxConfigSize = 256;  // GET/SET_CONFIG payload bytes
inline constexpr std::size_t kMaxPayload = 4096;    // the largest payload Strata accepts

// The u64 payload of SET_VRING_KICK/CALL/ERR: queue index in bits 0-7, bit 8 set when no fd
// is passed (polling mode for kick).
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFdMask = 0x100;

// SET_CONFIG flags.
inline constexpr std::uint32_t kConfigFlagWritable = 0x0;
inline constexpr std::uint32_t kConfigFlagMigration = 0x1;

// SET_VRING_ADDR flags: log the used ring (dirty logging for migration).
inline constexpr std::uint32_t kVringFLog = 0x1;

struct Header {
    Request request;
    std::uint32_t flags;
    std::uint32_t size;  // payload bytes that follow
};
static_assert(sizeof(Header) == 12);

struct VringState {  // SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE
    std::uint32_t index;
    std::uint32_t num;
};
static_assert(sizeof(VringState) == 8);

struct VringAddr {  // SET_VRING_ADDR: addresses in the front end's virtual address space
    std::uint32_t index;
    std::uint32_t flags;
    std::uint64_t desc_user_addr;
    std::uint64_t used_user_addr;
    std::uint64_t avail_user_addr;
    std::uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

struct MemoryRegion {
    std::uint64_t guest_phys_addr;
    std::uint64_t memory_size;
    std::uint64_t userspace_addr;  // the front end's virtual address of the region
    std::uint64_t mmap_offset;     // offset of the region in the fd passed alongside
};
static_assert(sizeof(MemoryRegion) == 32);

struct Memory {  // SET_MEM_TABLE: one fd per region, in order
    std::uint32_t nregions;
    std::uint32_t padding;
    MemoryRegion regions[kMaxMemRegions];
};
static_assert(sizeof(Memory) == 8 + 32 * kMaxMemRegions);

struct SingleMemoryRegion {  // ADD_MEM_REG, REM_MEM_REG
    std::uint64_t padding;
    MemoryRegion region;
};
static_assert(sizeof(SingleMemoryRegion) == 40);

struct ConfigSpace {  // GET_CONFIG, SET_CONFIG
    std::uint32_t offset;
    std::uint32_t size;
    std::uint32_t flags;
    std::uint8_t payload[kMaxConfigSize];
};
static_assert(sizeof(ConfigSpace) == 12 + kMaxConfigSize);

struct Inflight {  // GET_INFLIGHT_FD (request and reply), SET_INFLIGHT_FD (with the fd)
    std::uint64_t mmap_size;
    std::uint64_t mmap_offset;
    std::uint16_t num_queues;
    std::uint16_t queue_size;
};
static_assert(sizeof(Inflight) == 24);

// Inflight-tracking layout of a split queue, as QEMU's libvhost-user lays it out. The buffer is
// the back end's own (the front end only keeps the fd across a back-end restart), so any layout
// would do; this one lets a region written by libvhost-user back ends be read too.
struct InflightDescSplit {
    std::uint8_t inflight;
    std::uint8_t padding[5];
    std::uint16_t next;
    std::uint64_t counter;
};
static_assert(sizeof(InflightDescSplit) == 16);
struct InflightQueueSplit {
    std::uint64_t features;
    std::uint16_t version;
    std::uint16_t desc_num;
    std::uint16_t last_batch_head;
    std::uint16_t used_idx;
    InflightDescSplit desc[];
};
inline constexpr std::size_t kInflightAlignment = 64;
constexpr std::size_t inflight_queue_split_bytes(std::uint16_t queue_size) {
    const std::size_t raw = sizeof(InflightDescSplit) * queue_size + sizeof(std::uint16_t);
    return (raw + kInflightAlignment - 1) / kInflightAlignment * kInflightAlignment;
}

// Inflight-tracking layout of a packed queue, as DPDK's rte_vhost (SPDK's vhost) lays it out
// (rte_vhost_inflight_info_packed / rte_vhost_inflight_desc_packed; QEMU's vhost-user.rst
// "inflight description" for packed virtqueues). Entries form a free list (next, ending at
// desc_num); a request in flight takes one entry per descriptor of its chain, the first one
// (its head) carrying inflight, num (the chain's descriptors), last (the entry of the last one)
// and counter; each entry keeps a copy of its ring descriptor (addr, len, flags, id), since
// the ring slot is overwritten by used descriptors while the buffer is still in flight. The
// old_* fields are the last committed values of free_head, used_idx and used_wrap_counter.
struct InflightDescPacked {
    std::uint8_t inflight;
    std::uint8_t padding;
    std::uint16_t next;
    std::uint16_t last;
    std::uint16_t num;
    std::uint64_t counter;
    std::uint16_t id;
    std::uint16_t flags;
    std::uint32_t len;
    std::uint64_t addr;
};
static_assert(sizeof(InflightDescPacked) == 32);
struct InflightQueuePacked {
    std::uint64_t features;
    std::uint16_t version;
    std::uint16_t desc_num;
    std::uint16_t free_head;
    std::uint16_t old_free_head;
    std::uint16_t used_idx;
    std::uint16_t old_used_idx;
    std::uint8_t used_wrap_counter;
    std::uint8_t old_used_wrap_counter;
    std::uint8_t padding[7];
    InflightDescPacked desc[];
};
static_assert(offsetof(InflightQueuePacked, desc) == 32);
// DPDK's get_pervq_shm_size_packed: the descriptors and the 29 header bytes, rounded up to 64.
constexpr std::size_t inflight_queue_packed_bytes(std::uint16_t queue_size) {
    const std::size_t raw = sizeof(InflightDescPacked) * queue_size + sizeof(std::uint64_t) +
                            sizeof(std::uint16_t) * 6 + sizeof(std::uint8_t) * 9;
    return (raw + kInflightAlignment - 1) / kInflightAlignment * kInflightAlignment;
}

// The name QEMU's documentation gives a request, for logs and errors ("UNKNOWN" otherwise).
constexpr const char* request_name(Request r) {
    switch (r) {
        case Request::kNone:
            return "NONE";
        case Request::kGetFeatures:
            return "GET_FEATURES";
        case Request::kSetFeatures:
            return "SET_FEATURES";
        case Request::kSetOwner:
            return "SET_OWNER";
        case Request::kResetOwner:
            return "RESET_OWNER";
        case Request::kSetMemTable:
            return "SET_MEM_TABLE";
        case Request::kSetLogBase:
            return "SET_LOG_BASE";
        case Request::kSetLogFd:
            return "SET_LOG_FD";
        case Request::kSetVringNum:
            return "SET_VRING_NUM";
        case Request::kSetVringAddr:
            return "SET_VRING_ADDR";
        case Request::kSetVringBase:
            return "SET_VRING_BASE";
        case Request::kGetVringBase:
            return "GET_VRING_BASE";
        case Request::kSetVringKick:
            return "SET_VRING_KICK";
        case Request::kSetVringCall:
            return "SET_VRING_CALL";
        case Request::kSetVringErr:
            return "SET_VRING_ERR";
        case Request::kGetProtocolFeatures:
            return "GET_PROTOCOL_FEATURES";
        case Request::kSetProtocolFeatures:
            return "SET_PROTOCOL_FEATURES";
        case Request::kGetQueueNum:
            return "GET_QUEUE_NUM";
        case Request::kSetVringEnable:
            return "SET_VRING_ENABLE";
        case Request::kSendRarp:
            return "SEND_RARP";
        case Request::kNetSetMtu:
            return "NET_SET_MTU";
        case Request::kSetBackendReqFd:
            return "SET_BACKEND_REQ_FD";
        case Request::kIotlbMsg:
            return "IOTLB_MSG";
        case Request::kSetVringEndian:
            return "SET_VRING_ENDIAN";
        case Request::kGetConfig:
            return "GET_CONFIG";
        case Request::kSetConfig:
            return "SET_CONFIG";
        case Request::kCreateCryptoSession:
            return "CREATE_CRYPTO_SESSION";
        case Request::kCloseCryptoSession:
            return "CLOSE_CRYPTO_SESSION";
        case Request::kPostcopyAdvise:
            return "POSTCOPY_ADVISE";
        case Request::kPostcopyListen:
            return "POSTCOPY_LISTEN";
        case Request::kPostcopyEnd:
            return "POSTCOPY_END";
        case Request::kGetInflightFd:
            return "GET_INFLIGHT_FD";
        case Request::kSetInflightFd:
            return "SET_INFLIGHT_FD";
        case Request::kGpuSetSocket:
            return "GPU_SET_SOCKET";
        case Request::kResetDevice:
            return "RESET_DEVICE";
        case Request::kVringKick:
            return "VRING_KICK";
        case Request::kGetMaxMemSlots:
            return "GET_MAX_MEM_SLOTS";
        case Request::kAddMemReg:
            return "ADD_MEM_REG";
        case Request::kRemMemReg:
            return "REM_MEM_REG";
        case Request::kSetStatus:
            return "SET_STATUS";
        case Request::kGetStatus:
            return "GET_STATUS";
    }
    return "UNKNOWN";
}

}  // namespace strata::virtio::spec::vhost_user
