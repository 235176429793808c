// A resizable bdev for the grow tests: the first `num_blocks` of a base bdev (malloc, or the
// emulated NVMe namespace with its volatile write cache and power cuts), forwarding every I/O
// unchanged, that grows up to the base's size with Event::resize to its openers, as a bdev does
// when its LUN or namespace is enlarged. None of the memory bdevs can resize, and the NVMe
// model has no namespace resize; this keeps the base's behaviour (cache, flush, faults) intact.
#pragma once

#include <memory>
#include <string>

#include <fmt/format.h>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>

#include <strata/bdev/vbdev.h>

namespace strata::blob::testing {

inline const bdev::Module kWindowModule{"test_window", nullptr};

class WindowBdev final : public bdev::Bdev {
public:
    WindowBdev(Properties p, std::unique_ptr<bdev::vbdev::BaseDevice> base)
        : Bdev(kWindowModule, std::move(p)), base_(std::move(base)) {
        for (size_t i = 0; i < bdev::kIoTypeCount; ++i)
            supported_[i] = bdev::vbdev::forwards(base_->bdev(), static_cast<bdev::IoType>(i));
    }
    ~WindowBdev() override { bdev::vbdev::BaseDevice::release(std::move(base_)); }

    bool supports(bdev::IoType t) const noexcept override { return supported_[static_cast<size_t>(t)]; }
    runtime::IoDevice& module_io_device() noexcept override { return *base_; }
    void submit(runtime::IoChannel& ch, bdev::BdevIo& io) noexcept override {
        bdev::vbdev::forward(*io.module_ctx<bdev::vbdev::Forward>(), io,
                             static_cast<bdev::vbdev::BaseChannel&>(ch), 0,
                             [](void* p, const bdev::IoStatus& s) { static_cast<bdev::BdevIo*>(p)->complete(s); });
    }
    void destruct(std::function<void()> done) override { base_->close(std::move(done)); }

    uint64_t base_blocks() noexcept { return base_->bdev().num_blocks(); }

private:
    std::unique_ptr<bdev::vbdev::BaseDevice> base_;
    bool supported_[bdev::kIoTypeCount]{};
};

// On a Thread (the one that receives the base's events).
inline Result<bdev::Bdev*> window_create(const std::string& name, const std::string& base_name,
                                         uint64_t num_blocks) {
    auto base = bdev::vbdev::BaseDevice::open(base_name, kWindowModule, [name] {
        if (bdev::find(name) != nullptr) bdev::unregister_bdev(name, {});
    });
    if (!base) return base.error();
    const bdev::Bdev& b = (*base)->bdev();
    if (num_blocks == 0 || num_blocks > b.num_blocks())
        return Error(Errc::invalid_argument, fmt::format("window of {} blocks over {} of {}",
                                                         num_blocks, base_name, b.num_blocks()));
    bdev::Bdev::Properties p;
    p.name = name;
    p.product_name = "test window";
    p.block_size = b.block_size();
    p.num_blocks = num_blocks;
    p.write_cache = b.properties().write_cache;
    return bdev::register_bdev(std::make_unique<WindowBdev>(std::move(p), std::move(*base)));
}

// Control path: the window shows `num_blocks` from now on. Beyond the base only with
// `beyond_base`, for a test that looks at the size alone (I/O past the base fails there).
inline Result<void> window_resize(const std::string& name, uint64_t num_blocks,
                                  bool beyond_base = false) {
    auto* w = dynamic_cast<WindowBdev*>(bdev::find(name));
    if (w == nullptr) return Error(Errc::not_found, fmt::format("no window bdev {}", name));
    if (num_blocks == 0 || (num_blocks > w->base_blocks() && !beyond_base))
        return Error(Errc::invalid_argument, "window beyond its base");
    w->notify_resize(num_blocks);
    return {};
}

}  // namespace strata::blob::testing
