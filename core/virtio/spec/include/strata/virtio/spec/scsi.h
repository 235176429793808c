#pragma once
// virtio-scsi (VIRTIO 1.2, section 5.6): feature bits, configuration, request and response
// formats of the control, event and request queues.

#include <cstddef>
#include <cstdint>

namespace strata::virtio::spec::scsi {

inline constexpr unsigned kFInout = 0;
inline constexpr unsigned kFHotplug = 1;
inline constexpr unsigned kFChange = 2;
inline constexpr unsigned kFT10Pi = 3;

// Queue numbering: 0 control, 1 event, 2.. requests.
inline constexpr std::uint16_t kControlQueue = 0;
inline constexpr std::uint16_t kEventQueue = 1;
inline constexpr std::uint16_t kFirstRequestQueue = 2;

inline constexpr std::size_t kCdbSize = 32;    // default cdb_size
inline constexpr std::size_t kSenseSize = 96;  // default sense_size

#pragma pack(push, 1)
struct Config {
    std::uint32_t num_queues;
    std::uint32_t seg_max;
    std::uint32_t max_sectors;
    std::uint32_t cmd_per_lun;
    std::uint32_t event_info_size;
    std::uint32_t sense_size;
    std::uint32_t cdb_size;
    std::uint16_t max_channel;
    std::uint16_t max_target;
    std::uint32_t max_lun;
};

struct ReqCmd {
    std::uint8_t lun[8];
    std::uint64_t id;
    std::uint8_t task_attr;
    std::uint8_t prio;
    std::uint8_t crn;
    std::uint8_t cdb[kCdbSize];
};

struct RespCmd {
    std::uint32_t sense_len;
    std::uint32_t residual;
    std::uint16_t status_qualifier;
    std::uint8_t status;
    std::uint8_t response;
    std::uint8_t sense[kSenseSize];
};

struct CtrlTmfReq {
    std::uint32_t type;
    std::uint32_t subtype;
    std::uint8_t lun[8];
    std::uint64_t id;
};
struct CtrlTmfResp {
    std::uint8_t response;
};

struct CtrlAnReq {
    std::uint32_t type;
    std::uint8_t lun[8];
    std::uint32_t event_requested;
};
struct CtrlAnResp {
    std::uint32_t event_actual;
    std::uint8_t response;
};

struct Event {
    std::uint32_t event;
    std::uint8_t lun[8];
    std::uint32_t reason;
};
#pragma pack(pop)
static_assert(sizeof(Config) == 36);
static_assert(sizeof(ReqCmd) == 19 + kCdbSize);
static_assert(offsetof(RespCmd, sense) == 12);
static_assert(sizeof(CtrlTmfReq) == 24);
static_assert(sizeof(Event) == 16);

// Response codes (RespCmd::response, CtrlTmfResp::response).
inline constexpr std::uint8_t kSOk = 0;
inline constexpr std::uint8_t kSOverrun = 1;
inline constexpr std::uint8_t kSAborted = 2;
inline constexpr std::uint8_t kSBadTarget = 3;
inline constexpr std::uint8_t kSReset = 4;
inline constexpr std::uint8_t kSBusy = 5;
inline constexpr std::uint8_t kSTransportFailure = 6;
inline constexpr std::uint8_t kSTargetFailure = 7;
inline constexpr std::uint8_t kSNexusFailure = 8;
inline constexpr std::uint8_t kSFailure = 9;
inline constexpr std::uint8_t kSFunctionSucceeded = 10;
inline constexpr std::uint8_t kSFunctionRejected = 11;
inline constexpr std::uint8_t kSIncorrectLun = 12;

// Task attributes.
inline constexpr std::uint8_t kTaskAttrSimple = 0;
inline constexpr std::uint8_t kTaskAttrOrdered = 1;
inline constexpr std::uint8_t kTaskAttrHead = 2;
inline constexpr std::uint8_t kTaskAttrAca = 3;

// Control queue request types and task management subtypes.
inline constexpr std::uint32_t kTTmf = 0;
inline constexpr std::uint32_t kTAnQuery = 1;
inline constexpr std::uint32_t kTAnSubscribe = 2;
inline constexpr std::uint32_t kTmfAbortTask = 0;
inline constexpr std::uint32_t kTmfAbortTaskSet = 1;
inline constexpr std::uint32_t kTmfClearAca = 2;
inline constexpr std::uint32_t kTmfClearTaskSet = 3;
inline constexpr std::uint32_t kTmfITNexusReset = 4;
inline constexpr std::uint32_t kTmfLogicalUnitReset = 5;
inline constexpr std::uint32_t kTmfQueryTask = 6;
inline constexpr std::uint32_t kTmfQueryTaskSet = 7;

// Events on the event queue.
inline constexpr std::uint32_t kTNoEvent = 0;
inline constexpr std::uint32_t kTTransportReset = 1;
inline constexpr std::uint32_t kTAsyncNotification = 2;
inline constexpr std::uint32_t kTParamChange = 3;
inline constexpr std::uint32_t kTEventsMissed = 0x80000000u;
inline constexpr std::uint32_t kEvtResetHard = 0;
inline constexpr std::uint32_t kEvtResetRescan = 1;
inline constexpr std::uint32_t kEvtResetRemoved = 2;

// The 8-byte LUN field: byte 0 is 1, byte 1 the target, bytes 2-3 the LUN in SAM flat format.
struct LunAddress {
    std::uint8_t target;
    std::uint16_t lun;
};
inline bool decode_lun(const std::uint8_t (&field)[8], LunAddress& out) {
    if (field[0] != 1) return false;
    out.target = field[1];
    out.lun = static_cast<std::uint16_t>(((field[2] & 0x3f) << 8) | field[3]);
    return true;
}
inline void encode_lun(std::uint8_t target, std::uint16_t lun, std::uint8_t (&field)[8]) {
    field[0] = 1;
    field[1] = target;
    field[2] = static_cast<std::uint8_t>((lun >> 8) | 0x40);
    field[3] = static_cast<std::uint8_t>(lun & 0xff);
    field[4] = field[5] = field[6] = field[7] = 0;
}

}  // namespace strata::virtio::spec::scsi
