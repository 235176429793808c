#include "malloc/malloc.h"

#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/env/memory.h>

namespace strata::bdev {

const Module kMallocModule{"malloc", nullptr};

namespace {

class MallocBdev final : public Bdev {
public:
    MallocBdev(Properties p, uint8_t* data) : Bdev(kMallocModule, std::move(p)), data_(data) {}
    ~MallocBdev() override { env::dma_free(data_); }

    bool supports(IoType t) const noexcept override {
        return t != IoType::compare_and_write && t != IoType::abort && t != IoType::compare;
    }
    runtime::IoDevice& module_io_device() noexcept override { return stateless_io_device(); }

    void submit(runtime::IoChannel&, BdevIo& io) noexcept override {
        const uint64_t off = io.offset_blocks() * block_size();
        const uint64_t len = io.length_bytes();
        switch (io.type()) {
            case IoType::read:
            case IoType::write: {
                uint64_t pos = off;
                for (const iovec& v : io.iovs()) {
                    const size_t n = std::min<uint64_t>(v.iov_len, off + len - pos);
                    if (io.type() == IoType::read) std::memcpy(v.iov_base, data_ + pos, n);
                    else std::memcpy(data_ + pos, v.iov_base, n);
                    pos += n;
                    if (pos == off + len) break;
                }
                break;
            }
            case IoType::write_zeroes:
            case IoType::unmap:
                std::memset(data_ + off, 0, len);
                break;
            default:
                break;  // flush, reset: nothing volatile to flush, nothing to reset
        }
        io.complete(Errc::ok);
    }

    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_malloc_create"},
               {"params",
                {{"name", name()},
                 {"num_blocks", num_blocks()},
                 {"block_size", block_size()},
                 {"uuid", uuid()},
                 {"optimal_io_boundary", properties().optimal_io_boundary}}}};
    }

private:
    uint8_t* data_;
};

}  // namespace

Result<Bdev*> malloc_create(const MallocOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "malloc bdev needs a name");
    if (o.num_blocks == 0 || o.block_size == 0)
        return Error(Errc::invalid_argument, "num_blocks and block_size must be positive");
    if (o.num_blocks > (uint64_t{1} << 40) / o.block_size)
        return Error(Errc::invalid_argument, "malloc bdev larger than 1 TiB");
    auto mem = env::dma_alloc(o.num_blocks * o.block_size, 4096, true);
    if (!mem)
        return Error(Errc::no_memory, fmt::format("malloc bdev {}: cannot allocate {} bytes: {}",
                                                  o.name, o.num_blocks * o.block_size,
                                                  mem.error().message()));
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "Malloc disk";
    p.block_size = o.block_size;
    p.num_blocks = o.num_blocks;
    p.uuid = o.uuid;
    p.optimal_io_boundary = o.optimal_io_boundary;
    auto bdev = std::make_unique<MallocBdev>(std::move(p), static_cast<uint8_t*>(*mem));
    return register_bdev(std::move(bdev));  // on failure the bdev (and its memory) is freed
}

void malloc_delete(const std::string& name, std::function<void(Result<void>)> done) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kMallocModule) {
        done(Error(Errc::not_found, fmt::format("malloc bdev {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

}  // namespace strata::bdev
