#pragma once
// Virtqueue layouts and device-independent feature bits (VIRTIO 1.2, sections 2.7 and 2.8, 6).
// Shared by the vhost targets (core/vhost), the virtio driver (core/virtio) and the virtio device
// models (hw-emulation): the ring format is one concept and lives here alone.
//
// Every multi-byte field is little-endian on the wire; Strata builds only for little-endian hosts
// (checked below), so the structs are used as they are.

#include <bit>
#include <cstddef>
#include <cstdint>

namespace strata::virtio::spec {

static_assert(std::endian::native == std::endian::little,
              "virtio 1.x rings are little-endian; a big-endian host needs byte swaps here");

// ---- Feature bits (device-independent) ----
inline constexpr unsigned kFNotifyOnEmpty = 24;
inline constexpr unsigned kFAnyLayout = 27;
inline constexpr unsigned kFRingIndirectDesc = 28;
inline constexpr unsigned kFRingEventIdx = 29;
inline constexpr unsigned kFVhostUserProtocolFeatures = 30;  // vhost-user only, not virtio
inline constexpr unsigned kFVersion1 = 32;
inline constexpr unsigned kFAccessPlatform = 33;
inline constexpr unsigned kFRingPacked = 34;
inline constexpr unsigned kFInOrder = 35;
inline constexpr unsigned kFOrderPlatform = 36;
inline constexpr unsigned kFSrIov = 37;
inline constexpr unsigned kFNotificationData = 38;
inline constexpr unsigned kFRingReset = 40;

constexpr std::uint64_t feature(unsigned bit) {
    return std::uint64_t{1} << bit;
}
constexpr bool has_feature(std::uint64_t features, unsigned bit) {
    return (features & feature(bit)) != 0;
}

// ---- Device status (2.1) ----
inline constexpr std::uint8_t kStatusAcknowledge = 1;
inline constexpr std::uint8_t kStatusDriver = 2;
inline constexpr std::uint8_t kStatusDriverOk = 4;
inline constexpr std::uint8_t kStatusFeaturesOk = 8;
inline constexpr std::uint8_t kStatusDeviceNeedsReset = 64;
inline constexpr std::uint8_t kStatusFailed = 128;

// Device types (5): the modern PCI device id is 0x1040 + type.
inline constexpr std::uint32_t kDeviceTypeNet = 1;
inline constexpr std::uint32_t kDeviceTypeBlock = 2;
inline constexpr std::uint32_t kDeviceTypeScsi = 8;

inline constexpr std::uint16_t kMaxQueueSize = 32768;  // split and packed rings alike

// ---- Split virtqueue (2.7) ----
inline constexpr std::uint16_t kDescFNext = 1;
inline constexpr std::uint16_t kDescFWrite = 2;
inline constexpr std::uint16_t kDescFIndirect = 4;

struct VringDesc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(VringDesc) == 16);

inline constexpr std::uint16_t kAvailFNoInterrupt = 1;
inline constexpr std::uint16_t kUsedFNoNotify = 1;

// Avail ring: flags, idx, ring[num], then used_event (with VIRTIO_F_EVENT_IDX).
struct VringAvail {
    std::uint16_t flags;
    std::uint16_t idx;
    std::uint16_t ring[];
};

struct VringUsedElem {
    std::uint32_t id;
    std::uint32_t len;
};
static_assert(sizeof(VringUsedElem) == 8);

// Used ring: flags, idx, ring[num], then avail_event (with VIRTIO_F_EVENT_IDX).
struct VringUsed {
    std::uint16_t flags;
    std::uint16_t idx;
    VringUsedElem ring[];
};

// Sizes of the three parts for a queue of `num` entries, event-index words included.
constexpr std::size_t split_desc_bytes(std::uint16_t num) {
    return 16u * num;
}
constexpr std::size_t split_avail_bytes(std::uint16_t num) {
    return 6u + 2u * num;
}
constexpr std::size_t split_used_bytes(std::uint16_t num) {
    return 6u + 8u * num;
}
// Alignment each part needs (2.7, table "Virtqueue Part Alignment").
inline constexpr std::size_t kSplitDescAlign = 16;
inline constexpr std::size_t kSplitAvailAlign = 2;
inline constexpr std::size_t kSplitUsedAlign = 4;

// used_event sits after avail->ring[num]; avail_event after used->ring[num].
inline std::uint16_t* split_used_event(VringAvail* avail, std::uint16_t num) {
    return &avail->ring[num];
}
inline std::uint16_t* split_avail_event(VringUsed* used, std::uint16_t num) {
    return reinterpret_cast<std::uint16_t*>(&used->ring[num]);
}

// True when moving an index from `old_idx` to `new_idx` passes `event_idx` (2.7.10): the
// notification the other side asked for is due.
constexpr bool need_event(std::uint16_t event_idx, std::uint16_t new_idx, std::uint16_t old_idx) {
    return static_cast<std::uint16_t>(new_idx - event_idx - 1) <
           static_cast<std::uint16_t>(new_idx - old_idx);
}

// ---- Packed virtqueue (2.8) ----
inline constexpr unsigned kPackedDescFAvailBit = 7;
inline constexpr unsigned kPackedDescFUsedBit = 15;
inline constexpr std::uint16_t kPackedDescFAvail = 1u << kPackedDescFAvailBit;
inline constexpr std::uint16_t kPackedDescFUsed = 1u << kPackedDescFUsedBit;

struct PackedDesc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t id;
    std::uint16_t flags;
};
static_assert(sizeof(PackedDesc) == 16);

// Event suppression structure (2.8.10; the driver area and the device area of a packed ring):
// flags ENABLE / DISABLE / DESC (DESC needs VIRTIO_F_EVENT_IDX: notify when the other side's
// position passes off_wrap's offset in off_wrap's wrap).
inline constexpr std::uint16_t kPackedEventFlagEnable = 0;
inline constexpr std::uint16_t kPackedEventFlagDisable = 1;
inline constexpr std::uint16_t kPackedEventFlagDesc = 2;
struct PackedEvent {
    std::uint16_t off_wrap;  // bits 0-14 descriptor offset, bit 15 wrap counter
    std::uint16_t flags;
};
static_assert(sizeof(PackedEvent) == 4);
static_assert(offsetof(PackedEvent, off_wrap) == 0 && offsetof(PackedEvent, flags) == 2);
static_assert(offsetof(PackedDesc, addr) == 0 && offsetof(PackedDesc, len) == 8 &&
              offsetof(PackedDesc, id) == 12 && offsetof(PackedDesc, flags) == 14);
// Alignment of the parts (2.8.10.1): the ring 16 bytes, each event structure 4.
inline constexpr std::size_t kPackedDescAlign = 16;
inline constexpr std::size_t kPackedEventAlign = 4;
inline constexpr std::uint16_t kPackedEventWrapBit = 0x8000;  // off_wrap, and the vring base

// A descriptor is available when its AVAIL bit equals the driver's wrap counter and its USED bit
// does not; it is used when both bits equal the wrap counter the device wrote it with.
constexpr bool packed_desc_is_avail(std::uint16_t flags, bool wrap_counter) {
    const bool avail = (flags & kPackedDescFAvail) != 0;
    const bool used = (flags & kPackedDescFUsed) != 0;
    return avail == wrap_counter && used != wrap_counter;
}
constexpr bool packed_desc_is_used(std::uint16_t flags, bool wrap_counter) {
    const bool avail = (flags & kPackedDescFAvail) != 0;
    const bool used = (flags & kPackedDescFUsed) != 0;
    return avail == used && used == wrap_counter;
}

}  // namespace strata::virtio::spec
