// bdev_raid: levels 0 (striping), 1 (mirroring) and concat over base bdevs, as SPDK's raid module.
//
// A raid is a module-level object that exists from bdev_raid_create until bdev_raid_delete. It
// is "configuring" while some configured member does not exist yet (examine attaches members as
// they are registered, so config entries work in any order), "online" once its bdev is
// registered, and "offline" after it lost what it needs (a raid0/concat member, every raid1
// mirror) or its bdev was unregistered from outside; an offline raid only waits to be deleted.
//
// Owning Thread: every control operation of a raid runs on the Thread that created it (the RPC
// app Thread); examine and base removal events hop there by message. The data path runs on
// whichever Thread submits, with a per-Thread channel holding a base channel per member.
//
// raid1: writes go to every operational member and are acknowledged when all have answered; a
// member that fails a write is failed (removed from the set) and the write succeeds if an
// in-sync member has it. Reads go to the in-sync member with the fewest outstanding I/O and are
// retried on the other mirrors. bdev_raid_add_base_bdev fills an empty slot of a degraded raid1
// and starts a rebuild: the new member receives every write at once and a background copy
// fills it chunk by chunk; writes to the chunk being copied wait for it, so the copy never
// overwrites newer data. Until the rebuild ends the new member serves no reads.
//
// Not supported: the on-disk superblock (superblock=true is refused), raid5f, and automatic
// re-assembly of an offline raid.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

enum class RaidLevel : uint8_t { raid0, raid1, concat };

inline constexpr uint32_t kRaidMaxBaseBdevs = 32;
// The raid1 rebuild copies this much per step unless bdev_raid_set_options changes it (SPDK's
// default is 1024; Strata keeps the smaller window it was tested with).
inline constexpr uint32_t kRaidDefaultProcessWindowKb = 256;

// bdev_raid_set_options' process_window_size_kb (1 KiB..64 MiB), for rebuilds started later.
Result<void> raid_set_options(uint32_t process_window_size_kb);
uint32_t raid_process_window_size_kb();

// "0"/"raid0", "1"/"raid1", "concat" (SPDK's spellings).
Result<RaidLevel> parse_raid_level(std::string_view text);
const char* raid_level_name(RaidLevel level) noexcept;

struct RaidCreateOptions {
    std::string name;
    RaidLevel level = RaidLevel::raid0;
    std::vector<std::string> base_bdevs;
    uint32_t strip_size_kb = 0;  // raid0/concat: required, a power of two; raid1: 0
    std::string uuid;            // empty: generated when the bdev is registered
    bool superblock = false;     // refused: not supported
};

extern const Module kRaidModule;

// On the calling Thread (which becomes the raid's control Thread). Members that exist are
// opened and claimed now (an error for a member that cannot be); the others are attached when
// they appear. The raid's bdev is registered once every member is there.
Result<void> raid_create(const RaidCreateOptions& options);
// Unregisters the raid bdev (waiting for its openers), stops a rebuild, releases the members.
void raid_delete(const std::string& name, std::function<void(Result<void>)> done);
// Puts `base` into an empty slot: of a configuring raid (any level), or of an online degraded
// raid1, which starts a rebuild onto it.
Result<void> raid_add_base_bdev(const std::string& raid, const std::string& base);
// Takes the member `base` out of its raid: a raid1 keeps running degraded (offline if it was the
// last in-sync member); a raid0/concat goes offline.
void raid_remove_base_bdev(const std::string& base, std::function<void(Result<void>)> done);
// bdev_raid_get_bdevs: category all|online|configuring|offline (invalid_argument otherwise).
Result<nlohmann::json> raid_get_bdevs(std::string_view category);

// raid0 geometry: the part of the raid range [offset, offset + n) that lands on `member`, as a
// contiguous range of that member's blocks (num_blocks 0 when none does).
struct MemberRange {
    uint64_t offset_blocks = 0;
    uint64_t num_blocks = 0;
};
MemberRange raid0_member_range(uint64_t offset, uint64_t n, uint64_t strip_blocks,
                               uint32_t members, uint32_t member) noexcept;

}  // namespace strata::bdev
