#include <strata/hwemu/media/write_cache.h>

#include <cstring>

namespace strata::hwemu {

CachedMedia::CachedMedia(std::unique_ptr<BlockStore> store, uint32_t sector_bytes,
                         bool cache_enabled, size_t max_dirty_bytes)
    : store_(std::move(store)),
      sector_(sector_bytes == 0 ? 512 : sector_bytes),
      cache_enabled_(cache_enabled),
      max_dirty_bytes_(max_dirty_bytes) {}

Status CachedMedia::check(uint64_t offset, uint64_t len) const noexcept {
    if (offset % sector_ != 0 || len % sector_ != 0)
        return Status(Errc::invalid_argument, "media access not sector aligned");
    if (offset > store_->size_bytes() || len > store_->size_bytes() - offset)
        return Status(Errc::out_of_range, "media access beyond the end");
    return {};
}

Status CachedMedia::read(uint64_t offset, void* dst, size_t len) noexcept {
    if (Status s = check(offset, len); !s.ok()) return s;
    if (Status s = store_->read(offset, dst, len); !s.ok()) return s;
    ++stats_.reads;
    stats_.bytes_read += len;
    if (dirty_.empty() || len == 0) return {};
    const uint64_t first = offset / sector_, last = (offset + len) / sector_;  // [first, last)
    auto* out = static_cast<uint8_t*>(dst);
    for (auto it = dirty_.lower_bound(first); it != dirty_.end() && it->first < last; ++it)
        std::memcpy(out + (it->first - first) * sector_, it->second.data.data(), sector_);
    return {};
}

Status CachedMedia::write(uint64_t offset, const void* src, size_t len, bool fua) noexcept {
    if (Status s = check(offset, len); !s.ok()) return s;
    ++stats_.writes;
    stats_.bytes_written += len;
    if (len == 0) return {};
    const uint64_t first = offset / sector_, count = len / sector_;
    if (fua || !cache_enabled_) {
        if (fua) ++stats_.fua_writes;
        if (Status s = store_->write(offset, src, len); !s.ok()) return s;
        // Durable data supersedes older cached copies of the same sectors.
        dirty_.erase(dirty_.lower_bound(first), dirty_.lower_bound(first + count));
        return {};
    }
    const uint64_t seq = next_seq_++;
    const auto* in = static_cast<const uint8_t*>(src);
    for (uint64_t i = 0; i < count; ++i) {
        DirtySector& d = dirty_[first + i];
        d.data.assign(in + i * sector_, in + (i + 1) * sector_);
        d.write_seq = seq;
    }
    pending_.push_back(PendingWrite{seq, first, count});
    if (dirty_bytes() > max_dirty_bytes_) {
        ++stats_.forced_flushes;
        return flush();
    }
    return {};
}

Status CachedMedia::flush() noexcept {
    ++stats_.flushes;
    // Coalesce runs of consecutive sectors into one store write each.
    std::vector<uint8_t> run;
    uint64_t run_first = 0, prev = 0;
    bool have = false;
    auto emit = [&]() -> Status {
        if (!have) return {};
        Status s = store_->write(run_first * sector_, run.data(), run.size());
        run.clear();
        have = false;
        return s;
    };
    for (auto& [sector, d] : dirty_) {
        if (have && sector != prev + 1) {
            if (Status s = emit(); !s.ok()) return s;
        }
        if (!have) {
            run_first = sector;
            have = true;
        }
        run.insert(run.end(), d.data.begin(), d.data.end());
        prev = sector;
    }
    if (Status s = emit(); !s.ok()) return s;
    dirty_.clear();
    pending_.clear();
    return {};
}

Status CachedMedia::deallocate(uint64_t offset, uint64_t len) noexcept {
    if (Status s = check(offset, len); !s.ok()) return s;
    const uint64_t first = offset / sector_, count = len / sector_;
    dirty_.erase(dirty_.lower_bound(first), dirty_.lower_bound(first + count));
    return store_->deallocate(offset, len);
}

void CachedMedia::set_cache_enabled(bool on) noexcept {
    if (!on && cache_enabled_) (void)flush();
    cache_enabled_ = on;
}

void CachedMedia::power_cut(bool torn, Prng& prng) noexcept {
    for (const PendingWrite& w : pending_) {
        uint64_t keep = 0;
        if (torn) keep = prng.next() % (w.sectors + 1);  // 0..sectors sectors reached the media
        for (uint64_t i = 0; i < keep; ++i) {
            auto it = dirty_.find(w.first_sector + i);
            // A later write to the same sector decides that sector's fate on its own.
            if (it != dirty_.end() && it->second.write_seq == w.seq)
                (void)store_->write(it->first * sector_, it->second.data.data(), sector_);
        }
        if (keep < w.sectors) {
            ++stats_.lost_writes;
            stats_.lost_sectors += w.sectors - keep;
            if (keep > 0) ++stats_.torn_writes;
        }
    }
    dirty_.clear();
    pending_.clear();
}

}  // namespace strata::hwemu
