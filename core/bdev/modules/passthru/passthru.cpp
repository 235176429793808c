#include "passthru/passthru.h"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "passthru/vbdev.h"

namespace strata::bdev {

namespace {

void examine(Bdev& bdev);
void fini(std::function<void()> done);

// Configurations are module-wide and touched by RPC handlers and by examine, which runs on
// whichever Thread registers a bdev: a mutex (control path only). Never held across
// register_bdev, whose examine calls come back here.
struct State {
    std::mutex mu;
    std::vector<PassthruOptions> configs;
};

State& state() {
    static State s;
    return s;
}

class PassthruBdev final : public Bdev {
public:
    PassthruBdev(Properties p, std::unique_ptr<vbdev::BaseDevice> base)
        : Bdev(kPassthruModule, std::move(p)), base_(std::move(base)) {
        for (size_t i = 0; i < kIoTypeCount; ++i)
            supported_[i] = vbdev::forwards(base_->bdev(), static_cast<IoType>(i));
    }
    ~PassthruBdev() override { vbdev::BaseDevice::release(std::move(base_)); }

    bool supports(IoType t) const noexcept override { return supported_[static_cast<size_t>(t)]; }
    runtime::IoDevice& module_io_device() noexcept override { return *base_; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        vbdev::forward(*io.module_ctx<vbdev::Forward>(), io, static_cast<vbdev::BaseChannel&>(ch),
                       0, [](void* p, const IoStatus& s) { static_cast<BdevIo*>(p)->complete(s); });
    }

    void destruct(std::function<void()> done) override { base_->close(std::move(done)); }

    void info_json(nlohmann::json& out) const override {
        out["passthru"] = {{"name", name()}, {"base_bdev_name", base_->base_name()}};
    }
    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_passthru_create"},
               {"params",
                {{"base_bdev_name", base_->base_name()}, {"name", name()}, {"uuid", uuid()}}}};
    }

private:
    std::unique_ptr<vbdev::BaseDevice> base_;
    bool supported_[kIoTypeCount]{};
};

void remove_vbdev(const std::string& name) {
    Bdev* b = find(name);
    if (b != nullptr && &b->module() == &kPassthruModule) unregister_bdev(name, {});
}

Result<void> attach(const PassthruOptions& o) {
    auto base = vbdev::BaseDevice::open(o.base_bdev_name, kPassthruModule,
                                        [name = o.name] { remove_vbdev(name); });
    if (!base)
        return Error(base.error().code(), fmt::format("passthru {}: base bdev {}: {}", o.name,
                                                      o.base_bdev_name, base.error().message()));
    const Bdev& b = (*base)->bdev();
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "passthru";
    p.uuid = o.uuid;
    p.block_size = b.block_size();
    p.num_blocks = b.num_blocks();
    p.write_cache = b.properties().write_cache;
    p.optimal_io_boundary = b.properties().optimal_io_boundary;
    auto r = register_bdev(std::make_unique<PassthruBdev>(std::move(p), std::move(*base)));
    if (!r) return r.error();
    return {};
}

void examine(Bdev& bdev) {
    std::vector<PassthruOptions> todo;
    {
        std::lock_guard lock(state().mu);
        for (const auto& c : state().configs)
            if (vbdev::has_name(bdev, c.base_bdev_name)) todo.push_back(c);
    }
    for (const auto& c : todo) {
        if (find(c.name) != nullptr) continue;
        if (auto r = attach(c); !r)
            STRATA_ERRLOG(vbdev::log_vbdev, "passthru {} not attached: {}", c.name,
                          r.error().message());
    }
}

void fini(std::function<void()> done) {
    {
        std::lock_guard lock(state().mu);
        state().configs.clear();
    }
    done();
}

bool erase_config(const std::string& name) {
    std::lock_guard lock(state().mu);
    auto& v = state().configs;
    auto it = std::find_if(v.begin(), v.end(), [&](auto& c) { return c.name == name; });
    if (it == v.end()) return false;
    v.erase(it);
    return true;
}

}  // namespace

const Module kPassthruModule{"passthru", &examine, nullptr, &fini};

Result<void> passthru_create(const PassthruOptions& o) {
    if (o.name.empty() || o.base_bdev_name.empty())
        return Error(Errc::invalid_argument, "passthru needs a name and a base_bdev_name");
    if (o.name == o.base_bdev_name)
        return Error(Errc::invalid_argument, "a passthru bdev cannot be its own base");
    if (!o.uuid.empty() && !vbdev::valid_uuid(o.uuid))
        return Error(Errc::invalid_argument, fmt::format("uuid '{}' is not a UUID", o.uuid));
    if (find(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    {
        std::lock_guard lock(state().mu);
        for (const auto& c : state().configs)
            if (c.name == o.name)
                return Error(Errc::already_exists,
                             fmt::format("passthru bdev {} already exists", o.name));
        state().configs.push_back(o);
    }
    if (find(o.base_bdev_name) == nullptr) {
        STRATA_INFOLOG(vbdev::log_vbdev, "passthru {}: waiting for base bdev {}", o.name,
                       o.base_bdev_name);
        return {};
    }
    if (auto r = attach(o); !r) {
        erase_config(o.name);
        return r.error();
    }
    return {};
}

void passthru_delete(const std::string& name, std::function<void(Result<void>)> done) {
    const bool had_config = erase_config(name);
    Bdev* b = find(name);
    if (b != nullptr && &b->module() == &kPassthruModule) {
        unregister_bdev(name, std::move(done));
        return;
    }
    if (had_config) done(Result<void>{});
    else done(Error(Errc::not_found, fmt::format("passthru bdev {} not found", name)));
}

std::vector<PassthruOptions> passthru_configs() {
    std::lock_guard lock(state().mu);
    return state().configs;
}

}  // namespace strata::bdev
