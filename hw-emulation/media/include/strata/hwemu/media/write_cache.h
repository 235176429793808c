// CachedMedia: a device's volatile write cache over a BlockStore, at sector granularity.
//
// With the cache enabled a write lands in the cache (readable at once) and reaches the store on
// flush(); a FUA write (or any write with the cache disabled) reaches the store before it
// returns, and supersedes cached copies of its sectors. power_cut() models power loss: every
// write not yet flushed is lost; with torn = true each lost write instead keeps a random prefix
// of its sectors (chosen by the caller's seeded Prng), as a drive that was mid-way through it
// would. Only whole sectors are ever torn.
//
// Not thread-safe: used from the owning model's poller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include <strata/base/random.h>
#include <strata/base/status.h>
#include <strata/hwemu/media/block_store.h>

namespace strata::hwemu {

class CachedMedia {
public:
    CachedMedia(std::unique_ptr<BlockStore> store, uint32_t sector_bytes, bool cache_enabled = true,
                size_t max_dirty_bytes = size_t{64} << 20);

    uint64_t size_bytes() const noexcept { return store_->size_bytes(); }
    uint32_t sector_bytes() const noexcept { return sector_; }

    // Offsets and lengths are multiples of the sector size (Errc::invalid_argument otherwise);
    // a range beyond the store is Errc::out_of_range.
    Status read(uint64_t offset, void* dst, size_t len) noexcept;
    Status write(uint64_t offset, const void* src, size_t len, bool fua) noexcept;
    Status flush() noexcept;
    Status deallocate(uint64_t offset, uint64_t len) noexcept;  // durable at once, like a FUA write

    void set_cache_enabled(bool on) noexcept;  // disabling flushes first
    bool cache_enabled() const noexcept { return cache_enabled_; }
    uint64_t dirty_bytes() const noexcept { return dirty_.size() * uint64_t{sector_}; }

    void power_cut(bool torn, Prng& prng) noexcept;

    struct Stats {
        uint64_t reads = 0, writes = 0, flushes = 0, fua_writes = 0;
        uint64_t bytes_read = 0, bytes_written = 0;
        uint64_t lost_writes = 0, torn_writes = 0, lost_sectors = 0;
        uint64_t forced_flushes = 0;  // the dirty cap was reached
    };
    const Stats& stats() const noexcept { return stats_; }
    BlockStore& store() noexcept { return *store_; }

private:
    Status check(uint64_t offset, uint64_t len) const noexcept;

    struct DirtySector {
        std::vector<uint8_t> data;
        uint64_t write_seq;  // which write put it there (for tearing)
    };
    std::unique_ptr<BlockStore> store_;
    uint32_t sector_;
    bool cache_enabled_;
    size_t max_dirty_bytes_;
    std::map<uint64_t, DirtySector> dirty_;  // sector index -> newest unflushed data
    // Unflushed writes in order: first sector, sector count.
    struct PendingWrite {
        uint64_t seq, first_sector, sectors;
    };
    std::vector<PendingWrite> pending_;
    uint64_t next_seq_ = 1;
    Stats stats_{};
};

}  // namespace strata::hwemu
