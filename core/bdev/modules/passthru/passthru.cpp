#include "passthru/passthru.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/runtime/host.h>

#include <strata/bdev/vbdev.h>

namespace strata::bdev {

namespace {

void examine(Bdev& bdev);
void fini(std::function<void()> done);
Result<void> attach(const PassthruOptions& o);

// What the module was asked to create, per Host (App).
struct Configs : vbdev::ConfigRegistry<PassthruOptions> {
    Configs()
        : ConfigRegistry(
              "passthru", [](const PassthruOptions& o) { return o.name; },
              [](const PassthruOptions& o) { return o.base_bdev_name; }, &attach) {}
};

vbdev::ConfigRegistry<PassthruOptions>& configs() { return runtime::current_host().get<Configs>(); }

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
    Bdev::Properties p = vbdev::mirror_properties((*base)->bdev(), o.name, "passthru", o.uuid);
    auto r = register_bdev(std::make_unique<PassthruBdev>(std::move(p), std::move(*base)));
    if (!r) return r.error();
    return {};
}

void examine(Bdev& bdev) { configs().examine(bdev); }

void fini(std::function<void()> done) {
    configs().clear();
    done();
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
    return configs().create(o);
}

void passthru_delete(const std::string& name, std::function<void(Result<void>)> done) {
    const bool had_config = configs().erase(name);
    Bdev* b = find(name);
    if (b != nullptr && &b->module() == &kPassthruModule) {
        unregister_bdev(name, std::move(done));
        return;
    }
    if (had_config) done(Result<void>{});
    else done(Error(Errc::not_found, fmt::format("passthru bdev {} not found", name)));
}

std::vector<PassthruOptions> passthru_configs() { return configs().all(); }

}  // namespace strata::bdev
