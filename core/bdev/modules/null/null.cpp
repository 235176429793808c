#include "null/null.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace strata::bdev {

const Module kNullModule{"null", nullptr};

namespace {

class NullBdev final : public Bdev {
public:
    explicit NullBdev(Properties p) : Bdev(kNullModule, std::move(p)) {}
    bool supports(IoType t) const noexcept override {
        return t == IoType::read || t == IoType::write || t == IoType::write_zeroes ||
               t == IoType::unmap || t == IoType::flush || t == IoType::reset;
    }
    runtime::IoDevice& module_io_device() noexcept override { return stateless_io_device(); }
    void submit(runtime::IoChannel&, BdevIo& io) noexcept override { io.complete(Errc::ok); }
    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_null_create"},
               {"params",
                {{"name", name()}, {"num_blocks", num_blocks()}, {"block_size", block_size()},
                 {"uuid", uuid()}}}};
    }
};

}  // namespace

Result<Bdev*> null_create(const NullOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "null bdev needs a name");
    if (o.num_blocks == 0) return Error(Errc::invalid_argument, "num_blocks must be positive");
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "Null disk";
    p.block_size = o.block_size;
    p.num_blocks = o.num_blocks;
    p.uuid = o.uuid;
    return register_bdev(std::make_unique<NullBdev>(std::move(p)));
}

Result<void> null_resize(const std::string& name, uint64_t new_size_mib) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kNullModule)
        return Error(Errc::not_found, fmt::format("null bdev {} not found", name));
    // SPDK's rule: sizes in MiB, truncated; never smaller than the current size.
    const uint64_t cur_mib = b->num_blocks() * b->block_size() / (1024 * 1024);
    if (new_size_mib < cur_mib)
        return Error(Errc::invalid_argument,
                     fmt::format("new size {} MiB is smaller than the current {} MiB", new_size_mib,
                                 cur_mib));
    if (new_size_mib > UINT64_MAX / (1024 * 1024))
        return Error(Errc::invalid_argument, "new_size is out of range");
    b->notify_resize(new_size_mib * 1024 * 1024 / b->block_size());
    return {};
}

void null_delete(const std::string& name, std::function<void(Result<void>)> done) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kNullModule) {
        done(Error(Errc::not_found, fmt::format("null bdev {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

}  // namespace strata::bdev
