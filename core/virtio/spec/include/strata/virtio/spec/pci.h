#pragma once
// virtio over PCI, modern interface (VIRTIO 1.2, section 4.1): ids, capabilities and the common
// configuration structure.

#include <cstddef>
#include <cstdint>

namespace strata::virtio::spec::pci {

inline constexpr std::uint16_t kVendorId = 0x1af4;
inline constexpr std::uint16_t kModernDeviceIdBase = 0x1040;  // + device type
inline constexpr std::uint16_t kTransitionalBlk = 0x1001;
inline constexpr std::uint16_t kTransitionalScsi = 0x1004;

inline constexpr std::uint8_t kCapVendor = 0x09;  // PCI capability id of the virtio capabilities
inline constexpr std::uint8_t kCapCommonCfg = 1;
inline constexpr std::uint8_t kCapNotifyCfg = 2;
inline constexpr std::uint8_t kCapIsrCfg = 3;
inline constexpr std::uint8_t kCapDeviceCfg = 4;
inline constexpr std::uint8_t kCapPciCfg = 5;

#pragma pack(push, 1)
struct Cap {
    std::uint8_t cap_vndr;
    std::uint8_t cap_next;
    std::uint8_t cap_len;
    std::uint8_t cfg_type;
    std::uint8_t bar;
    std::uint8_t id;
    std::uint8_t padding[2];
    std::uint32_t offset;
    std::uint32_t length;
};
struct NotifyCap {
    Cap cap;
    std::uint32_t notify_off_multiplier;
};
#pragma pack(pop)
static_assert(sizeof(Cap) == 16);
static_assert(sizeof(NotifyCap) == 20);

// Common configuration structure: register offsets inside the COMMON_CFG window.
namespace common {
inline constexpr std::uint32_t kDeviceFeatureSelect = 0;  // 32
inline constexpr std::uint32_t kDeviceFeature = 4;        // 32
inline constexpr std::uint32_t kDriverFeatureSelect = 8;  // 32
inline constexpr std::uint32_t kDriverFeature = 12;       // 32
inline constexpr std::uint32_t kMsixConfig = 16;          // 16
inline constexpr std::uint32_t kNumQueues = 18;           // 16
inline constexpr std::uint32_t kDeviceStatus = 20;        // 8
inline constexpr std::uint32_t kConfigGeneration = 21;    // 8
inline constexpr std::uint32_t kQueueSelect = 22;         // 16
inline constexpr std::uint32_t kQueueSize = 24;           // 16
inline constexpr std::uint32_t kQueueMsixVector = 26;     // 16
inline constexpr std::uint32_t kQueueEnable = 28;         // 16
inline constexpr std::uint32_t kQueueNotifyOff = 30;      // 16
inline constexpr std::uint32_t kQueueDesc = 32;           // 64
inline constexpr std::uint32_t kQueueDriver = 40;         // 64 (avail ring / driver area)
inline constexpr std::uint32_t kQueueDevice = 48;         // 64 (used ring / device area)
inline constexpr std::uint32_t kQueueNotifyData = 56;     // 16
inline constexpr std::uint32_t kQueueReset = 58;          // 16
inline constexpr std::uint32_t kSize = 60;
}  // namespace common

inline constexpr std::uint16_t kMsixNoVector = 0xffff;
inline constexpr std::uint8_t kIsrQueue = 0x1;
inline constexpr std::uint8_t kIsrConfig = 0x2;

}  // namespace strata::virtio::spec::pci
