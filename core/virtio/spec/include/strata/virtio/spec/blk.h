#pragma once
// virtio-blk (VIRTIO 1.2, section 5.2): feature bits, configuration layout, request format.

#include <cstddef>
#include <cstdint>

namespace strata::virtio::spec::blk {

inline constexpr unsigned kFSizeMax = 1;
inline constexpr unsigned kFSegMax = 2;
inline constexpr unsigned kFGeometry = 4;
inline constexpr unsigned kFRo = 5;
inline constexpr unsigned kFBlkSize = 6;
inline constexpr unsigned kFFlush = 9;
inline constexpr unsigned kFTopology = 10;
inline constexpr unsigned kFConfigWce = 11;
inline constexpr unsigned kFMq = 12;
inline constexpr unsigned kFDiscard = 13;
inline constexpr unsigned kFWriteZeroes = 14;
inline constexpr unsigned kFLifetime = 15;
inline constexpr unsigned kFSecureErase = 16;

inline constexpr std::uint32_t kSectorSize = 512;  // capacity and request sectors are always 512 B

#pragma pack(push, 1)
struct Config {
    std::uint64_t capacity;  // in 512-byte sectors
    std::uint32_t size_max;
    std::uint32_t seg_max;
    struct {
        std::uint16_t cylinders;
        std::uint8_t heads;
        std::uint8_t sectors;
    } geometry;
    std::uint32_t blk_size;
    struct {
        std::uint8_t physical_block_exp;
        std::uint8_t alignment_offset;
        std::uint16_t min_io_size;
        std::uint32_t opt_io_size;
    } topology;
    std::uint8_t writeback;
    std::uint8_t unused0;
    std::uint16_t num_queues;
    std::uint32_t max_discard_sectors;
    std::uint32_t max_discard_seg;
    std::uint32_t discard_sector_alignment;
    std::uint32_t max_write_zeroes_sectors;
    std::uint32_t max_write_zeroes_seg;
    std::uint8_t write_zeroes_may_unmap;
    std::uint8_t unused1[3];
    std::uint32_t max_secure_erase_sectors;
    std::uint32_t max_secure_erase_seg;
    std::uint32_t secure_erase_sector_alignment;
};
#pragma pack(pop)
static_assert(offsetof(Config, blk_size) == 20);
static_assert(offsetof(Config, writeback) == 32);
static_assert(offsetof(Config, num_queues) == 34);
static_assert(offsetof(Config, max_discard_sectors) == 36);
static_assert(offsetof(Config, write_zeroes_may_unmap) == 56);
static_assert(sizeof(Config) == 72);

// Request types.
inline constexpr std::uint32_t kTIn = 0;
inline constexpr std::uint32_t kTOut = 1;
inline constexpr std::uint32_t kTFlush = 4;
inline constexpr std::uint32_t kTGetId = 8;
inline constexpr std::uint32_t kTGetLifetime = 10;
inline constexpr std::uint32_t kTDiscard = 11;
inline constexpr std::uint32_t kTWriteZeroes = 13;
inline constexpr std::uint32_t kTSecureErase = 14;

// Status byte, the last device-writable byte of every request.
inline constexpr std::uint8_t kSOk = 0;
inline constexpr std::uint8_t kSIoErr = 1;
inline constexpr std::uint8_t kSUnsupp = 2;

inline constexpr std::size_t kIdBytes = 20;  // GET_ID answer

// The device-readable header at the start of every request.
struct OutHdr {
    std::uint32_t type;
    std::uint32_t ioprio;
    std::uint64_t sector;
};
static_assert(sizeof(OutHdr) == 16);

// Payload of DISCARD, WRITE_ZEROES and SECURE_ERASE: one or more of these.
inline constexpr std::uint32_t kDiscardWzFlagUnmap = 1;
struct DiscardWriteZeroes {
    std::uint64_t sector;
    std::uint32_t num_sectors;
    std::uint32_t flags;
};
static_assert(sizeof(DiscardWriteZeroes) == 16);

}  // namespace strata::virtio::spec::blk
