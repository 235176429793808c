// Backing stores of emulated devices: RAM (sparse) or a sparse file. Byte-addressed; the
// volatile write cache above (write_cache.h) gives them sector semantics.
//
// Bad input (a range beyond the store) is Errc::out_of_range, never a crash. Not thread-safe:
// a store belongs to one model and is used from its poller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <strata/base/status.h>

namespace strata::hwemu {

class BlockStore {
public:
    virtual ~BlockStore() = default;
    virtual uint64_t size_bytes() const noexcept = 0;
    virtual Status read(uint64_t offset, void* dst, size_t len) noexcept = 0;
    virtual Status write(uint64_t offset, const void* src, size_t len) noexcept = 0;
    // The range reads back as zeroes afterwards (and stops taking space where it can).
    virtual Status deallocate(uint64_t offset, uint64_t len) noexcept = 0;
    virtual Status sync() noexcept = 0;
    // Bytes of real storage held (RAM chunks or file blocks); for tests and stats.
    virtual uint64_t allocated_bytes() const noexcept = 0;
};

// RAM, allocated in 64 KiB chunks on first write; never-written ranges read as zeroes.
std::unique_ptr<BlockStore> make_ram_store(uint64_t size_bytes);
// A sparse file of exactly size_bytes (created if `create`, else it must exist), pread/pwrite,
// deallocate by hole punching (zero writes where the file system cannot punch).
Result<std::unique_ptr<BlockStore>> open_file_store(const std::string& path, uint64_t size_bytes,
                                                    bool create);

}  // namespace strata::hwemu
