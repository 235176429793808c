#include <strata/bdev/backing_file.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include <strata/base/log.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_file);

namespace {

constexpr uint32_t kMinBlockSize = 512;
constexpr uint32_t kMaxBlockSize = 65536;

bool power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

Error sys_error(int err, const std::string& what) {
    return Error(errc_from_errno(err), fmt::format("{}: {}", what, std::strerror(err)));
}

// Reads one block at offset 0 with the chosen block size and alignment: the only way to know
// that O_DIRECT takes this block size on this file system (st_blksize is a preference, and the
// device's logical block size is not visible for a file).
Result<void> probe_direct(int fd, uint32_t block_size, const std::string& path) {
    std::unique_ptr<void, decltype(&std::free)> buf(std::aligned_alloc(block_size, block_size),
                                                   &std::free);
    if (!buf) return Error(Errc::no_memory, "no memory for the O_DIRECT probe");
    ssize_t n;
    do {
        n = ::pread(fd, buf.get(), block_size, 0);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return {};
    if (errno == EINVAL)
        return Error(Errc::invalid_argument,
                     fmt::format("{}: block_size {} is below what O_DIRECT needs on this device",
                                 path, block_size));
    return sys_error(errno, fmt::format("{}: read", path));
}

}  // namespace


BackingFile::~BackingFile() {
    if (fd_ >= 0) ::close(fd_);
}

BackingFile::BackingFile(BackingFile&& o) noexcept { *this = std::move(o); }

BackingFile& BackingFile::operator=(BackingFile&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
        filename_ = std::move(o.filename_);
        direct_ = o.direct_;
        block_device_ = o.block_device_;
        readonly_ = o.readonly_;
        block_size_given_ = o.block_size_given_;
        block_size_ = o.block_size_;
    }
    return *this;
}

Result<uint64_t> BackingFile::num_blocks() const {
    uint64_t bytes = 0;
    if (block_device_) {
        if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0)
            return sys_error(errno, fmt::format("{}: BLKGETSIZE64", filename_));
    } else {
        struct stat st {};
        if (::fstat(fd_, &st) != 0) return sys_error(errno, fmt::format("{}: fstat", filename_));
        bytes = static_cast<uint64_t>(st.st_size);
    }
    return bytes / block_size_;
}

Result<BackingFile> open_backing_file(const BackingFileOptions& o) {
    if (o.filename.empty()) return Error(Errc::invalid_argument, "filename is empty");
    if (o.filename.find('\0') != std::string::npos)
        return Error(Errc::invalid_argument, "filename contains a NUL byte");
    if (o.block_size != 0 &&
        (!power_of_two(o.block_size) || o.block_size < kMinBlockSize || o.block_size > kMaxBlockSize))
        return Error(Errc::invalid_argument,
                     fmt::format("block_size {} must be a power of two in {}..{}", o.block_size,
                                 kMinBlockSize, kMaxBlockSize));

    // O_NONBLOCK keeps open() from waiting on a FIFO or a tty named by mistake; it is cleared
    // once the type is known (io_uring would otherwise fail reads with EAGAIN).
    const int base = (o.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
    BackingFile f;
    f.filename_ = o.filename;
    f.readonly_ = o.readonly;
    f.direct_ = true;
    f.fd_ = ::open(o.filename.c_str(), base | O_DIRECT);
    if (f.fd_ < 0 && errno == EINVAL) {
        f.direct_ = false;
        f.fd_ = ::open(o.filename.c_str(), base);
    }
    if (f.fd_ < 0) {
        const int err = errno;
        std::string hint;
        if (!o.readonly && (err == EACCES || err == EROFS)) hint = " (try readonly)";
        return Error(errc_from_errno(err),
                     fmt::format("cannot open {}: {}{}", o.filename, std::strerror(err), hint));
    }

    struct stat st {};
    if (::fstat(f.fd_, &st) != 0) return sys_error(errno, fmt::format("{}: fstat", o.filename));
    if (S_ISBLK(st.st_mode)) {
        f.block_device_ = true;
    } else if (!S_ISREG(st.st_mode)) {
        return Error(Errc::invalid_argument,
                     fmt::format("{} is neither a regular file nor a block device", o.filename));
    }
    if (!f.direct_)
        STRATA_WARNLOG(log_bdev_file,
                       "{} bdev on {}: the file system refuses O_DIRECT; using buffered I/O "
                       "(data sits in the page cache until a flush)",
                       o.module, o.filename);
    const int fl = ::fcntl(f.fd_, F_GETFL);
    if (fl < 0 || ::fcntl(f.fd_, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return sys_error(errno, fmt::format("{}: fcntl", o.filename));

    uint32_t detected = 0;
    if (f.block_device_) {
        int lbs = 0;
        if (::ioctl(f.fd_, BLKSSZGET, &lbs) == 0 && lbs > 0) detected = static_cast<uint32_t>(lbs);
    } else if (st.st_blksize > 0) {
        detected = static_cast<uint32_t>(st.st_blksize);
    }
    if (o.block_size == 0) {
        if (!power_of_two(detected) || detected < kMinBlockSize || detected > kMaxBlockSize)
            return Error(Errc::invalid_argument,
                         fmt::format("{}: cannot detect a usable block size (got {}); pass block_size",
                                     o.filename, detected));
        f.block_size_ = detected;
    } else {
        // A block device cannot address less than its logical block; a file can (buffered, or
        // O_DIRECT on a device with smaller sectors: the probe below decides).
        if (f.block_device_ && detected != 0 && o.block_size < detected)
            return Error(Errc::invalid_argument,
                         fmt::format("{}: block_size {} is smaller than the device's logical "
                                     "block size {}",
                                     o.filename, o.block_size, detected));
        f.block_size_ = o.block_size;
        f.block_size_given_ = true;
    }

    auto blocks = f.num_blocks();
    if (!blocks) return blocks.error();
    if (*blocks == 0)
        return Error(Errc::invalid_argument,
                     fmt::format("{} is smaller than one block of {} bytes", o.filename,
                                 f.block_size_));
    if (f.direct_) {
        auto probed = probe_direct(f.fd_, f.block_size_, o.filename);
        if (!probed) return probed.error();
    }
    return f;
}

Result<void> rescan_backing_file(Bdev& bdev, const BackingFile& file) {
    auto blocks = file.num_blocks();
    if (!blocks) return blocks.error();
    if (*blocks == 0)
        return Error(Errc::invalid_argument,
                     fmt::format("bdev {}: {} is now smaller than one block", bdev.name(),
                                 file.filename()));
    if (*blocks != bdev.num_blocks()) {
        STRATA_NOTICELOG(log_bdev_file, "bdev {}: {} resized: {} -> {} blocks", bdev.name(),
                         file.filename(), bdev.num_blocks(), *blocks);
        bdev.notify_resize(*blocks);
    }
    return {};
}


}  // namespace strata::bdev
