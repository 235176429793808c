#include <strata/hwemu/media/block_store.h>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

namespace strata::hwemu {

namespace {

constexpr uint64_t kChunkBytes = 64 * 1024;

bool in_range(uint64_t size, uint64_t offset, uint64_t len) {
    return offset <= size && len <= size - offset;
}

class RamStore final : public BlockStore {
public:
    explicit RamStore(uint64_t size) : size_(size) {}
    uint64_t size_bytes() const noexcept override { return size_; }

    Status read(uint64_t off, void* dst, size_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "read beyond the store");
        auto* out = static_cast<uint8_t*>(dst);
        while (len > 0) {
            const uint64_t idx = off / kChunkBytes, in = off % kChunkBytes;
            const size_t n = std::min<uint64_t>(len, kChunkBytes - in);
            auto it = chunks_.find(idx);
            if (it == chunks_.end()) std::memset(out, 0, n);
            else std::memcpy(out, it->second.data() + in, n);
            out += n;
            off += n;
            len -= n;
        }
        return {};
    }

    Status write(uint64_t off, const void* src, size_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "write beyond the store");
        const auto* in_p = static_cast<const uint8_t*>(src);
        while (len > 0) {
            const uint64_t idx = off / kChunkBytes, in = off % kChunkBytes;
            const size_t n = std::min<uint64_t>(len, kChunkBytes - in);
            auto& chunk = chunks_[idx];
            if (chunk.empty()) chunk.assign(kChunkBytes, 0);
            std::memcpy(chunk.data() + in, in_p, n);
            in_p += n;
            off += n;
            len -= n;
        }
        return {};
    }

    Status deallocate(uint64_t off, uint64_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "deallocate beyond the store");
        while (len > 0) {
            const uint64_t idx = off / kChunkBytes, in = off % kChunkBytes;
            const uint64_t n = std::min<uint64_t>(len, kChunkBytes - in);
            auto it = chunks_.find(idx);
            if (it != chunks_.end()) {
                if (n == kChunkBytes) chunks_.erase(it);
                else std::memset(it->second.data() + in, 0, n);
            }
            off += n;
            len -= n;
        }
        return {};
    }

    Status sync() noexcept override { return {}; }
    uint64_t allocated_bytes() const noexcept override { return chunks_.size() * kChunkBytes; }

private:
    uint64_t size_;
    std::unordered_map<uint64_t, std::vector<uint8_t>> chunks_;
};

class FileStore final : public BlockStore {
public:
    FileStore(int fd, uint64_t size) : fd_(fd), size_(size) {}
    ~FileStore() override { ::close(fd_); }
    uint64_t size_bytes() const noexcept override { return size_; }

    Status read(uint64_t off, void* dst, size_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "read beyond the store");
        auto* p = static_cast<uint8_t*>(dst);
        while (len > 0) {
            const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return Status(Errc::io_error, "pread failed");
            if (n == 0) {  // past EOF of a sparse file: zeroes
                std::memset(p, 0, len);
                break;
            }
            p += n;
            off += static_cast<uint64_t>(n);
            len -= static_cast<size_t>(n);
        }
        return {};
    }

    Status write(uint64_t off, const void* src, size_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "write beyond the store");
        const auto* p = static_cast<const uint8_t*>(src);
        while (len > 0) {
            const ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return Status(Errc::io_error, "pwrite failed");
            p += n;
            off += static_cast<uint64_t>(n);
            len -= static_cast<size_t>(n);
        }
        return {};
    }

    Status deallocate(uint64_t off, uint64_t len) noexcept override {
        if (!in_range(size_, off, len)) return Status(Errc::out_of_range, "deallocate beyond the store");
        if (len == 0) return {};
        if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                        static_cast<off_t>(len)) == 0)
            return {};
        static const std::vector<uint8_t> zeroes(kChunkBytes, 0);
        while (len > 0) {
            const size_t n = std::min<uint64_t>(len, kChunkBytes);
            if (Status s = write(off, zeroes.data(), n); !s.ok()) return s;
            off += n;
            len -= n;
        }
        return {};
    }

    Status sync() noexcept override {
        return ::fdatasync(fd_) == 0 ? Status{} : Status(Errc::io_error, "fdatasync failed");
    }

    uint64_t allocated_bytes() const noexcept override {
        struct stat st {};
        if (::fstat(fd_, &st) != 0) return 0;
        return static_cast<uint64_t>(st.st_blocks) * 512;
    }

private:
    int fd_;
    uint64_t size_;
};

}  // namespace

std::unique_ptr<BlockStore> make_ram_store(uint64_t size_bytes) {
    return std::make_unique<RamStore>(size_bytes);
}

Result<std::unique_ptr<BlockStore>> open_file_store(const std::string& path, uint64_t size_bytes,
                                                    bool create) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd < 0)
        return Error(Errc::io_error, fmt::format("cannot open backing file {}: {}", path,
                                                 std::strerror(errno)));
    if (::ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
        const int e = errno;
        ::close(fd);
        return Error(Errc::io_error, fmt::format("cannot size backing file {} to {} bytes: {}",
                                                 path, size_bytes, std::strerror(e)));
    }
    return std::unique_ptr<BlockStore>(std::make_unique<FileStore>(fd, size_bytes));
}

}  // namespace strata::hwemu
