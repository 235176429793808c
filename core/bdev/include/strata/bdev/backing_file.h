// What the aio and uring bdev modules share about the file or block device under a bdev:
// opening it (O_DIRECT when the file system allows it), choosing and checking the block size,
// measuring its size, and turning an errno into an Errc. Control path only.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct BackingFileOptions {
    std::string filename;
    uint32_t block_size = 0;  // 0: detected (BLKSSZGET for a block device, st_blksize for a file)
    bool readonly = false;
    const char* module = "";  // for log lines: "aio", "uring"
};

// An open backing file. Move-only; closes the descriptor.
class BackingFile {
public:
    BackingFile() = default;
    ~BackingFile();
    BackingFile(BackingFile&& other) noexcept;
    BackingFile& operator=(BackingFile&& other) noexcept;
    BackingFile(const BackingFile&) = delete;
    BackingFile& operator=(const BackingFile&) = delete;

    int fd() const noexcept { return fd_; }
    const std::string& filename() const noexcept { return filename_; }
    bool direct() const noexcept { return direct_; }  // opened with O_DIRECT
    bool block_device() const noexcept { return block_device_; }
    bool readonly() const noexcept { return readonly_; }
    uint32_t block_size() const noexcept { return block_size_; }
    bool block_size_given() const noexcept { return block_size_given_; }
    // Buffer alignment the kernel needs (O_DIRECT: the block size, as SPDK does; else 1).
    uint32_t required_alignment() const noexcept { return direct_ ? block_size_ : 1; }

    // The current size in whole blocks (a trailing partial block is not exposed).
    Result<uint64_t> num_blocks() const;

private:
    friend Result<BackingFile> open_backing_file(const BackingFileOptions& options);
    int fd_ = -1;
    std::string filename_;
    bool direct_ = false;
    bool block_device_ = false;
    bool readonly_ = false;
    bool block_size_given_ = false;
    uint32_t block_size_ = 0;
};

// Opens a regular file or block device (never creates one). O_DIRECT is tried first; a file
// system that refuses it (EINVAL) gets buffered I/O and a warning in the log. Errors:
// not_found, permission_denied, invalid_argument (not a file or block device, bad or too small
// block size, empty file), io_error for anything else, each with the path in the message.
Result<BackingFile> open_backing_file(const BackingFileOptions& options);

// Re-reads the file's size and, when the block count changed, publishes it (Event::resize to
// the openers). invalid_argument when the file no longer holds one block.
Result<void> rescan_backing_file(Bdev& bdev, const BackingFile& file);

// The iovecs to hand the kernel for exactly `len` bytes of `iovs` (whose total may be longer:
// the layer only asks for at least the I/O's length, and a vectored read must not land past
// it). Uses a prefix of `iovs` itself when an entry ends exactly at len, else copies the
// needed prefix into scratch with the last entry trimmed. False when that copy needs more
// than N entries.
template <size_t N>
bool exact_iovs(std::span<const iovec> iovs, uint64_t len, iovec (&scratch)[N],
                const iovec*& out, int& out_count) noexcept {
    uint64_t total = 0;
    size_t n = 0;
    while (n < iovs.size() && total < len) total += iovs[n++].iov_len;
    if (total == len) {
        out = iovs.data();
        out_count = static_cast<int>(n);
        return true;
    }
    if (n > N || total < len) return false;
    for (size_t i = 0; i < n; ++i) scratch[i] = iovs[i];
    scratch[n - 1].iov_len -= static_cast<size_t>(total - len);
    out = scratch;
    out_count = static_cast<int>(n);
    return true;
}

}  // namespace strata::bdev
