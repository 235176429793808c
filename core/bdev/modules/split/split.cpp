#include "split/split.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/runtime/host.h>

#include <strata/bdev/vbdev.h>

namespace strata::bdev {

namespace {

void examine(Bdev& bdev);
void write_config(nlohmann::json& methods);
void fini(std::function<void()> done);

struct SplitBase;

struct Config {
    std::string base;
    uint64_t split_count = 0;
    uint64_t split_size_mb = 0;
    SplitBase* active = nullptr;  // the parts, while they exist
};

struct State {
    std::mutex mu;  // control path only; never held across register_bdev
    std::vector<Config> configs;
};

State& state() { return runtime::current_host().get<State>(); }  // per Host (App)

Config* config_of(const std::string& base) {  // under state().mu
    for (auto& c : state().configs)
        if (c.base == base) return &c;
    return nullptr;
}

std::string part_name(const std::string& base, uint64_t i) { return fmt::format("{}p{}", base, i); }

// The claimed base shared by the parts of one split; the last part to go closes it.
struct SplitBase {
    std::unique_ptr<vbdev::BaseDevice> device;
    std::string base;
    std::vector<std::string> parts;  // registered
    std::atomic<uint64_t> alive{0};

    void remove_parts() {
        for (const auto& n : parts) {
            Bdev* b = find(n);
            if (b != nullptr && &b->module() == &kSplitModule) unregister_bdev(n, {});
        }
    }
    void part_gone(std::function<void()> done) {
        if (--alive != 0) {
            done();
            return;
        }
        {
            std::lock_guard lock(state().mu);
            if (Config* c = config_of(base); c != nullptr && c->active == this) c->active = nullptr;
        }
        device->close([this, done = std::move(done)] {
            delete this;
            done();
        });
    }
};

class SplitPart final : public Bdev {
public:
    SplitPart(Properties p, SplitBase& owner, uint64_t offset_blocks)
        : Bdev(kSplitModule, std::move(p)), owner_(owner), offset_blocks_(offset_blocks) {
        for (size_t i = 0; i < kIoTypeCount; ++i)
            supported_[i] = vbdev::forwards(owner.device->bdev(), static_cast<IoType>(i));
    }

    bool supports(IoType t) const noexcept override { return supported_[static_cast<size_t>(t)]; }
    runtime::IoDevice& module_io_device() noexcept override { return *owner_.device; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        vbdev::forward(*io.module_ctx<vbdev::Forward>(), io, static_cast<vbdev::BaseChannel&>(ch),
                       offset_blocks_,
                       [](void* p, const IoStatus& s) { static_cast<BdevIo*>(p)->complete(s); });
    }

    void destruct(std::function<void()> done) override { owner_.part_gone(std::move(done)); }

    void info_json(nlohmann::json& out) const override {
        out["split"] = {{"base_bdev", owner_.base}, {"offset_blocks", offset_blocks_}};
    }
    // The parts are saved together by the module's write_config (one bdev_split_create).

private:
    SplitBase& owner_;
    uint64_t offset_blocks_;
    bool supported_[kIoTypeCount]{};
};

void on_base_removed(SplitBase* owner) { owner->remove_parts(); }

Result<std::vector<std::string>> attach(const Config& c) {
    Bdev* base_bdev = find(c.base);
    if (base_bdev == nullptr)
        return Error(Errc::not_found, fmt::format("split base bdev {} not found", c.base));
    const uint32_t bs = base_bdev->block_size();
    uint64_t count = c.split_count;
    uint64_t blocks = 0;
    if (c.split_size_mb != 0) {
        const uint64_t bytes = c.split_size_mb * 1024 * 1024;
        if (c.split_size_mb > (UINT64_MAX >> 20) || bytes % bs != 0)
            return Error(Errc::invalid_argument,
                         fmt::format("split_size_mb {} is not a multiple of the block size {}",
                                     c.split_size_mb, bs));
        blocks = bytes / bs;
        const uint64_t fit = base_bdev->num_blocks() / blocks;
        if (fit == 0)
            return Error(Errc::invalid_argument,
                         fmt::format("split_size_mb {} is larger than base bdev {}",
                                     c.split_size_mb, c.base));
        if (count > fit) {
            STRATA_WARNLOG(vbdev::log_vbdev, "split {}: {} parts of {} MiB do not fit, making {}",
                           c.base, count, c.split_size_mb, fit);
            count = fit;
        }
    } else {
        blocks = base_bdev->num_blocks() / count;
        if (blocks == 0)
            return Error(Errc::invalid_argument,
                         fmt::format("base bdev {} has fewer blocks than split_count {}", c.base,
                                     count));
    }
    for (uint64_t i = 0; i < count; ++i)
        if (find(part_name(c.base, i)) != nullptr)
            return Error(Errc::already_exists,
                         fmt::format("bdev {} already exists", part_name(c.base, i)));

    auto* owner = new SplitBase;
    owner->base = c.base;
    auto dev = vbdev::BaseDevice::open(c.base, kSplitModule, [owner] { on_base_removed(owner); });
    if (!dev) {
        delete owner;
        return Error(dev.error().code(),
                     fmt::format("split of {}: {}", c.base, dev.error().message()));
    }
    owner->device = std::move(*dev);
    {
        std::lock_guard lock(state().mu);
        if (Config* cfg = config_of(c.base)) cfg->active = owner;
    }
    const Bdev& b = owner->device->bdev();
    std::optional<Error> failed;
    for (uint64_t i = 0; i < count && !failed; ++i) {
        Bdev::Properties p;
        p.name = part_name(c.base, i);
        p.product_name = "Split Disk";
        p.block_size = bs;
        p.num_blocks = blocks;
        p.write_cache = b.properties().write_cache;
        p.optimal_io_boundary = b.properties().optimal_io_boundary;
        auto r = register_bdev(std::make_unique<SplitPart>(std::move(p), *owner, i * blocks));
        if (!r) {
            failed = r.error();
            break;
        }
        owner->parts.push_back(part_name(c.base, i));
        ++owner->alive;
    }
    if (failed) {
        // All or nothing, as SPDK: the parts made so far go, and the last closes the base.
        if (owner->alive == 0) {
            {
                std::lock_guard lock(state().mu);
                if (Config* cfg = config_of(c.base); cfg != nullptr && cfg->active == owner)
                    cfg->active = nullptr;
            }
            vbdev::BaseDevice::release(std::move(owner->device));
            delete owner;
        } else {
            owner->remove_parts();
        }
        return *failed;
    }
    return owner->parts;
}

void examine(Bdev& bdev) {
    std::vector<Config> todo;
    {
        std::lock_guard lock(state().mu);
        for (const auto& c : state().configs)
            if (c.active == nullptr && vbdev::has_name(bdev, c.base)) todo.push_back(c);
    }
    for (auto& c : todo) {
        c.base = bdev.name();  // matched by alias possibly; parts are named after the base
        if (auto r = attach(c); !r)
            STRATA_ERRLOG(vbdev::log_vbdev, "split of {} not created: {}", c.base,
                          r.error().message());
    }
}

void write_config(nlohmann::json& methods) {
    std::lock_guard lock(state().mu);
    for (const auto& c : state().configs)
        methods.push_back({{"method", "bdev_split_create"},
                           {"params",
                            {{"base_bdev", c.base},
                             {"split_count", c.split_count},
                             {"split_size_mb", c.split_size_mb}}}});
}

void fini(std::function<void()> done) {
    {
        std::lock_guard lock(state().mu);
        state().configs.clear();
    }
    done();
}

}  // namespace

const Module kSplitModule{"split", &examine, &write_config, &fini};

Result<std::vector<std::string>> split_create(const std::string& base, uint64_t split_count,
                                              uint64_t split_size_mb) {
    if (base.empty()) return Error(Errc::invalid_argument, "base_bdev is empty");
    if (split_count == 0 || split_count > kMaxSplitCount)
        return Error(Errc::invalid_argument,
                     fmt::format("split_count must be 1..{}", kMaxSplitCount));
    if (split_size_mb > (UINT64_MAX >> 20))
        return Error(Errc::invalid_argument, "split_size_mb is too large");
    {
        std::lock_guard lock(state().mu);
        if (config_of(base) != nullptr)
            return Error(Errc::already_exists,
                         fmt::format("split of base bdev {} already exists", base));
        state().configs.push_back({base, split_count, split_size_mb, nullptr});
    }
    if (find(base) == nullptr) {
        STRATA_INFOLOG(vbdev::log_vbdev, "split of {}: waiting for the base bdev", base);
        return std::vector<std::string>{};
    }
    auto r = attach({base, split_count, split_size_mb, nullptr});
    if (!r) {
        std::lock_guard lock(state().mu);
        auto& v = state().configs;
        v.erase(std::remove_if(v.begin(), v.end(), [&](auto& c) { return c.base == base; }), v.end());
    }
    return r;
}

void split_delete(const std::string& base, std::function<void(Result<void>)> done) {
    std::vector<std::string> parts;
    {
        std::lock_guard lock(state().mu);
        auto& v = state().configs;
        auto it = std::find_if(v.begin(), v.end(), [&](auto& c) { return c.base == base; });
        if (it == v.end()) {
            done(Error(Errc::not_found, fmt::format("no split of base bdev {}", base)));
            return;
        }
        if (it->active != nullptr) parts = it->active->parts;
        v.erase(it);
    }
    parts.erase(std::remove_if(parts.begin(), parts.end(), [](const std::string& n) {
                    Bdev* b = find(n);
                    return b == nullptr || &b->module() != &kSplitModule;
                }),
                parts.end());
    if (parts.empty()) {
        done(Result<void>{});
        return;
    }
    auto pending = std::make_shared<size_t>(parts.size());
    auto result = std::make_shared<Result<void>>();
    auto shared_done = std::make_shared<std::function<void(Result<void>)>>(std::move(done));
    for (const auto& n : parts)
        unregister_bdev(n, [pending, result, shared_done](Result<void> r) {
            if (!r && result->ok()) *result = r;
            if (--*pending == 0) (*shared_done)(*result);
        });
}

}  // namespace strata::bdev
