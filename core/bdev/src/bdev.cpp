// The bdev registry, descriptors, claims, QoS settings and statistics queries (control path).
#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/runtime/host.h>
#include <strata/runtime/task.h>

#include "internal.h"

namespace strata::bdev {

namespace {

class StatelessChannel final : public runtime::IoChannel {};
class StatelessDevice final : public runtime::IoDevice {
public:
    StatelessDevice() : IoDevice("bdev_stateless") {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread&) override {
        return std::make_unique<StatelessChannel>();
    }
};

}  // namespace

// The layer's state in one Host (one App): its bdevs, modules and the layer's own IoDevices.
// Bdevs keep a pointer to it, so the paths that follow a bdev (channels, unregistration) do
// not depend on which Host the calling OS thread is in.
class LayerState {
public:
    LayerState() {
        runtime::register_io_device(*mgmt);
        runtime::register_io_device(*stateless);
    }
    ~LayerState() {
        // An App's bdev fini unregistered every bdev before its Host goes, and with them every
        // channel. Anything left (a test that never deleted a bdev) may still be pointed at by
        // Threads that outlive the Host: it is left allocated, loudly, rather than freed under
        // them. The devices hold no state of their own beyond their channel count.
        if (!bdevs.empty()) {
            STRATA_WARNLOG(log_bdev, "{} bdev(s) still registered when their Host goes: leaked",
                           bdevs.size());
            for (auto& b : bdevs) (void)b.release();
        }
        keep_if_in_use(std::move(mgmt));
        keep_if_in_use(std::move(stateless));
    }
    LayerState(const LayerState&) = delete;
    LayerState& operator=(const LayerState&) = delete;

    std::mutex mu;
    std::map<std::string, Bdev*, std::less<>> by_name;  // names and aliases
    std::vector<std::unique_ptr<Bdev>> bdevs;
    std::vector<const Module*> modules;
    // Never unregistered: no Thread is at hand when the Host goes; channel_count() tells
    // whether a Thread still holds one of their channels.
    std::unique_ptr<MgmtDevice> mgmt = std::make_unique<MgmtDevice>();
    std::unique_ptr<runtime::IoDevice> stateless = std::make_unique<StatelessDevice>();

private:
    template <class D>
    static void keep_if_in_use(std::unique_ptr<D> device) {
        if (device->channel_count() == 0) return;
        STRATA_WARNLOG(log_bdev, "io_device {} still has {} channel(s) when its Host goes: leaked",
                       device->io_device_name(), device->channel_count());
        (void)device.release();
    }
};

namespace {

LayerState& registry() { return runtime::current_host().get<LayerState>(); }

bool valid_block_size(uint32_t bs) { return bs >= 512 && bs <= 65536 && (bs & (bs - 1)) == 0; }

void finish_unregister(Bdev* bdev);

}  // namespace

const char* io_type_name(IoType type) noexcept {
    switch (type) {
        case IoType::read: return "read";
        case IoType::write: return "write";
        case IoType::write_zeroes: return "write_zeroes";
        case IoType::unmap: return "unmap";
        case IoType::flush: return "flush";
        case IoType::reset: return "reset";
        case IoType::compare: return "compare";
        case IoType::compare_and_write: return "compare_and_write";
        case IoType::abort: return "abort";
        case IoType::count_: break;
    }
    return "?";
}

void IoStats::reset(bool maxmin_only) noexcept {
    if (!maxmin_only) {
        *this = IoStats{};
        return;
    }
    max_read_latency_ticks = max_write_latency_ticks = 0;
    min_read_latency_ticks = min_write_latency_ticks = UINT64_MAX;
}

void IoStats::add(const IoStats& o) noexcept {
    bytes_read += o.bytes_read;
    num_read_ops += o.num_read_ops;
    bytes_written += o.bytes_written;
    num_write_ops += o.num_write_ops;
    bytes_unmapped += o.bytes_unmapped;
    num_unmap_ops += o.num_unmap_ops;
    num_write_zeroes_ops += o.num_write_zeroes_ops;
    num_flush_ops += o.num_flush_ops;
    num_reset_ops += o.num_reset_ops;
    num_compare_ops += o.num_compare_ops;
    num_compare_and_write_ops += o.num_compare_and_write_ops;
    num_abort_ops += o.num_abort_ops;
    read_latency_ticks += o.read_latency_ticks;
    write_latency_ticks += o.write_latency_ticks;
    max_read_latency_ticks = std::max(max_read_latency_ticks, o.max_read_latency_ticks);
    min_read_latency_ticks = std::min(min_read_latency_ticks, o.min_read_latency_ticks);
    max_write_latency_ticks = std::max(max_write_latency_ticks, o.max_write_latency_ticks);
    min_write_latency_ticks = std::min(min_write_latency_ticks, o.min_write_latency_ticks);
    io_errors += o.io_errors;
    bounced += o.bounced;
    split += o.split;
    queued_nomem += o.queued_nomem;
    qos_queued += o.qos_queued;
    timed_out += o.timed_out;
    for (size_t i = 0; i < latency_histogram.size(); ++i) latency_histogram[i] += o.latency_histogram[i];
    for (size_t i = 0; i < enabled_histogram.size(); ++i)
        enabled_histogram[i] += o.enabled_histogram[i];
}

// ---- Bdev ---------------------------------------------------------------------------------

Bdev::Bdev(const Module& module, Properties properties)
    : IoDevice("bdev:" + properties.name),
      module_(module),
      props_(std::move(properties)),
      impl_(std::make_unique<BdevImpl>()) {}

Bdev::~Bdev() = default;

const char* Bdev::claimed_by() const noexcept {
    const Module* m = impl_->claimed_by;
    return m != nullptr ? m->name : "";
}

void Bdev::info_json(nlohmann::json&) const {}
void Bdev::config_json(nlohmann::json&) const {}

std::unique_ptr<runtime::IoChannel> Bdev::create_channel(runtime::Thread&) {
    auto* mgmt = runtime::get_channel<MgmtChannel>(*impl_->layer->mgmt);
    if (mgmt == nullptr) return nullptr;
    runtime::IoChannel* module_ch = runtime::get_io_channel(module_io_device());
    if (module_ch == nullptr) {
        runtime::put_io_channel(mgmt);
        return nullptr;
    }
    return std::make_unique<Channel>(*this, mgmt, module_ch);
}

void Bdev::notify_resize(uint64_t num_blocks) {
    props_.num_blocks = num_blocks;
    std::lock_guard lock(impl_->mu);
    for (DescImpl* d : impl_->descs) {
        if (!d->on_event) continue;
        Bdev* self = this;
        (void)d->thread->post([d, self, open = d->open] {
            if (*open && d->on_event) d->on_event(Event::resize, *self);
        });
    }
}

// ---- registry -----------------------------------------------------------------------------

void register_module(const Module& module) {
    LayerState& r = registry();
    std::lock_guard lock(r.mu);
    if (std::find(r.modules.begin(), r.modules.end(), &module) == r.modules.end())
        r.modules.push_back(&module);
}

std::vector<const Module*> modules() {
    LayerState& r = registry();
    std::lock_guard lock(r.mu);
    return r.modules;
}

Result<Bdev*> register_bdev(std::unique_ptr<Bdev> bdev) {
    LayerState& r = registry();
    auto& p = bdev->props_;
    if (p.name.empty()) return Error(Errc::invalid_argument, "bdev name is empty");
    if (!valid_block_size(p.block_size))
        return Error(Errc::invalid_argument,
                     fmt::format("bdev {}: block size {} is not a power of two in 512..65536",
                                 p.name, p.block_size));
    if (p.num_blocks == 0)
        return Error(Errc::invalid_argument, fmt::format("bdev {}: zero blocks", p.name));
    if (p.required_alignment == 0 || (p.required_alignment & (p.required_alignment - 1)) != 0)
        return Error(Errc::invalid_argument,
                     fmt::format("bdev {}: required alignment must be a power of two", p.name));
    Bdev* raw = bdev.get();
    raw->impl().lock_home = runtime::current_thread();  // where LBA range locks are ordered
    std::vector<const Module*> modules;
    {
        std::lock_guard lock(r.mu);
        if (r.by_name.count(p.name) != 0)
            return Error(Errc::already_exists, fmt::format("bdev {} already exists", p.name));
        for (const auto& a : p.aliases)
            if (r.by_name.count(a) != 0 || a == p.name)
                return Error(Errc::already_exists,
                             fmt::format("bdev {}: alias {} is already taken", p.name, a));
        // Random per creation (drawn from the Host's PRNG: a simulator seed replays it).
        if (p.uuid.empty()) p.uuid = runtime::current_host().new_uuid();
        r.by_name.emplace(p.name, raw);
        for (const auto& a : p.aliases) r.by_name.emplace(a, raw);
        r.bdevs.push_back(std::move(bdev));
        raw->impl().layer = &r;
        modules = r.modules;
    }
    runtime::register_io_device(*raw);
    STRATA_INFOLOG(log_bdev, "bdev {} registered ({} blocks of {} bytes, module {})", raw->name(),
                   raw->num_blocks(), raw->block_size(), raw->module().name);
    for (const Module* m : modules)
        if (m->examine && !raw->impl().removing) m->examine(*raw);
    return raw;
}

Result<void> rename_alias(Bdev& bdev, std::string_view old_alias, std::string new_alias) {
    LayerState& r = *bdev.impl().layer;
    std::lock_guard lock(r.mu);
    auto& aliases = bdev.props_.aliases;
    auto a = std::find(aliases.begin(), aliases.end(), old_alias);
    auto it = r.by_name.find(old_alias);
    if (a == aliases.end() || it == r.by_name.end() || it->second != &bdev)
        return Error(Errc::not_found, fmt::format("bdev {} has no alias {}", bdev.name(), old_alias));
    if (new_alias.empty() || r.by_name.count(new_alias) != 0)
        return Error(Errc::already_exists, fmt::format("bdev name {} is already taken", new_alias));
    r.by_name.erase(it);
    r.by_name.emplace(new_alias, &bdev);
    *a = std::move(new_alias);
    return {};
}

Bdev* find(std::string_view name) noexcept {
    LayerState& r = registry();
    std::lock_guard lock(r.mu);
    auto it = r.by_name.find(name);
    if (it == r.by_name.end() || it->second->impl().removing) return nullptr;
    return it->second;
}

std::vector<Bdev*> list() {
    LayerState& r = registry();
    std::lock_guard lock(r.mu);
    std::vector<Bdev*> out;
    for (auto& b : r.bdevs)
        if (!b->impl().removing) out.push_back(b.get());
    std::sort(out.begin(), out.end(), [](Bdev* a, Bdev* b) { return a->name() < b->name(); });
    return out;
}

namespace {

void maybe_finish_unregister(Bdev* bdev) {
    BdevImpl& impl = bdev->impl();
    {
        std::lock_guard lock(impl.mu);
        if (!impl.removing || !impl.descs.empty() || impl.unregister_thread == nullptr) return;
    }
    (void)impl.unregister_thread->post([bdev] {
        runtime::unregister_io_device(*bdev, [](void* p) { finish_unregister(static_cast<Bdev*>(p)); },
                                      bdev);
    });
}

void finish_unregister(Bdev* bdev) {
    bdev->destruct([bdev] {
        LayerState& r = *bdev->impl().layer;
        std::function<void(Result<void>)> done = std::move(bdev->impl().unregister_done);
        std::unique_ptr<Bdev> owned;
        {
            std::lock_guard lock(r.mu);
            for (auto it = r.by_name.begin(); it != r.by_name.end();)
                it = it->second == bdev ? r.by_name.erase(it) : std::next(it);
            auto it = std::find_if(r.bdevs.begin(), r.bdevs.end(),
                                   [&](auto& b) { return b.get() == bdev; });
            if (it != r.bdevs.end()) {
                owned = std::move(*it);
                r.bdevs.erase(it);
            }
        }
        STRATA_INFOLOG(log_bdev, "bdev {} unregistered", bdev->name());
        owned.reset();
        if (done) done(Result<void>{});
    });
}

}  // namespace

void unregister_bdev(std::string_view name, std::function<void(Result<void>)> done) {
    Bdev* bdev = nullptr;
    {
        LayerState& r = registry();
        std::lock_guard lock(r.mu);
        auto it = r.by_name.find(name);
        if (it != r.by_name.end()) bdev = it->second;
    }
    if (bdev == nullptr || bdev->impl().removing) {
        if (done) done(Error(Errc::not_found, fmt::format("bdev {} not found", name)));
        return;
    }
    BdevImpl& impl = bdev->impl();
    std::vector<DescImpl*> descs;
    {
        std::lock_guard lock(impl.mu);
        impl.removing = true;
        impl.unregister_thread = runtime::current_thread();
        STRATA_ASSERT_MSG(impl.unregister_thread != nullptr, "unregister_bdev outside a Thread");
        impl.unregister_done = std::move(done);
        descs = impl.descs;
    }
    for (DescImpl* d : descs) {
        (void)d->thread->post([d, bdev, open = d->open] {
            if (*open && d->on_event) d->on_event(Event::remove, *bdev);
        });
    }
    maybe_finish_unregister(bdev);
}

// ---- descriptors --------------------------------------------------------------------------

Desc::Desc(std::unique_ptr<DescImpl> impl) : impl_(std::move(impl)) {}

Desc::~Desc() {
    *impl_->open = false;
    Bdev* bdev = impl_->bdev;
    {
        std::lock_guard lock(bdev->impl().mu);
        auto& v = bdev->impl().descs;
        v.erase(std::remove(v.begin(), v.end(), impl_.get()), v.end());
        if (impl_->claim != nullptr && bdev->impl().claimed_by == impl_->claim)
            bdev->impl().claimed_by = nullptr;
    }
    maybe_finish_unregister(bdev);
}

Bdev& Desc::bdev() const noexcept { return *impl_->bdev; }
bool Desc::writable() const noexcept { return impl_->write; }
runtime::Thread& Desc::thread() const noexcept { return *impl_->thread; }

Channel* Desc::get_channel() {
    if (impl_->bdev->impl().removing) return nullptr;
    return runtime::get_channel<Channel>(*impl_->bdev);
}

void put_channel(Channel* ch) noexcept {
    if (ch) runtime::put_io_channel(ch);
}

void Desc::set_timeout(uint64_t timeout_us, TimeoutFn fn, void* ctx) {
    impl_->timeout_fn = fn;
    impl_->timeout_ctx = ctx;
    impl_->timeout_ns = fn ? timeout_us * 1000 : 0;
}

Result<std::unique_ptr<Desc>> open(std::string_view name, bool write,
                                   std::function<void(Event, Bdev&)> on_event) {
    runtime::Thread* thread = runtime::current_thread();
    if (thread == nullptr) return Error(Errc::invalid_argument, "bdev::open outside a Thread");
    Bdev* bdev = nullptr;
    {
        LayerState& r = registry();
        std::lock_guard lock(r.mu);
        auto it = r.by_name.find(name);
        if (it != r.by_name.end()) bdev = it->second;
    }
    if (bdev == nullptr) return Error(Errc::not_found, fmt::format("bdev {} not found", name));
    auto impl = std::make_unique<DescImpl>();
    impl->bdev = bdev;
    impl->write = write;
    impl->thread = thread;
    impl->on_event = std::move(on_event);
    {
        std::lock_guard lock(bdev->impl().mu);
        if (bdev->impl().removing)
            return Error(Errc::shutdown, fmt::format("bdev {} is being removed", name));
        if (write && bdev->impl().claimed_by != nullptr)
            return Error(Errc::permission_denied,
                         fmt::format("bdev {} is claimed by module {}", name,
                                     bdev->impl().claimed_by->name));
        bdev->impl().descs.push_back(impl.get());
    }
    return std::unique_ptr<Desc>(new Desc(std::move(impl)));
}

Result<void> claim(Desc& desc, const Module& by) {
    Bdev& bdev = desc.bdev();
    std::lock_guard lock(bdev.impl().mu);
    BdevImpl& impl = bdev.impl();
    if (impl.claimed_by != nullptr)
        return Error(Errc::permission_denied, fmt::format("bdev {} is already claimed by {}",
                                                          bdev.name(), impl.claimed_by->name));
    for (DescImpl* d : impl.descs)
        if (d != &desc.impl() && d->write)
            return Error(Errc::permission_denied,
                         fmt::format("bdev {} is open for writing elsewhere", bdev.name()));
    impl.claimed_by = &by;
    desc.impl().claim = &by;
    desc.impl().write = true;
    return {};
}

void release_claim(Desc& desc) {
    Bdev& bdev = desc.bdev();
    std::lock_guard lock(bdev.impl().mu);
    if (desc.impl().claim != nullptr && bdev.impl().claimed_by == desc.impl().claim)
        bdev.impl().claimed_by = nullptr;
    desc.impl().claim = nullptr;
}

// ---- QoS and statistics -------------------------------------------------------------------

Result<void> set_qos_limits(Bdev& bdev, const QosLimits& limits) {
    BdevImpl& impl = bdev.impl();
    impl.qos_ios.store(limits.rw_ios_per_sec);
    impl.qos_rw_bytes.store(limits.rw_mbytes_per_sec * 1024 * 1024);
    impl.qos_r_bytes.store(limits.r_mbytes_per_sec * 1024 * 1024);
    impl.qos_w_bytes.store(limits.w_mbytes_per_sec * 1024 * 1024);
    impl.qos_generation.fetch_add(1);
    return {};
}

QosLimits qos_limits(const Bdev& bdev) {
    auto& impl = const_cast<Bdev&>(bdev).impl();
    QosLimits l;
    l.rw_ios_per_sec = impl.qos_ios.load();
    l.rw_mbytes_per_sec = impl.qos_rw_bytes.load() / (1024 * 1024);
    l.r_mbytes_per_sec = impl.qos_r_bytes.load() / (1024 * 1024);
    l.w_mbytes_per_sec = impl.qos_w_bytes.load() / (1024 * 1024);
    return l;
}

void get_iostat(Bdev& bdev, std::function<void(const IoStats&)> done) {
    struct Gather {
        IoStats total;
        std::function<void(const IoStats&)> done;
    };
    auto* g = new Gather;
    {
        std::lock_guard lock(bdev.impl().mu);
        g->total = bdev.impl().gone_stats;
    }
    g->done = std::move(done);
    runtime::for_each_channel(
        bdev,
        [](runtime::IoChannel& ch, void* ctx) {
            static_cast<Gather*>(ctx)->total.add(static_cast<Channel&>(ch).stats);
        },
        g,
        [](void* ctx) {
            std::unique_ptr<Gather> gather(static_cast<Gather*>(ctx));
            gather->done(gather->total);
        });
}

void get_channel_iostats(Bdev& bdev, std::function<void(const std::vector<ChannelIoStats>&)> done) {
    struct Gather {
        std::vector<ChannelIoStats> out;
        std::function<void(const std::vector<ChannelIoStats>&)> done;
    };
    auto* g = new Gather{{}, std::move(done)};
    runtime::for_each_channel(
        bdev,
        [](runtime::IoChannel& ch, void* ctx) {
            static_cast<Gather*>(ctx)->out.push_back(
                {runtime::current_thread()->id(), static_cast<Channel&>(ch).stats});
        },
        g,
        [](void* ctx) {
            std::unique_ptr<Gather> gather(static_cast<Gather*>(ctx));
            std::sort(gather->out.begin(), gather->out.end(),
                      [](const ChannelIoStats& a, const ChannelIoStats& b) {
                          return a.thread_id < b.thread_id;
                      });
            gather->done(gather->out);
        });
}

void reset_iostat(Bdev& bdev, bool maxmin_only, std::function<void()> done) {
    struct Reset {
        bool maxmin_only;
        std::function<void()> done;
    };
    {
        std::lock_guard lock(bdev.impl().mu);
        bdev.impl().gone_stats.reset(maxmin_only);
    }
    auto* r = new Reset{maxmin_only, std::move(done)};
    runtime::for_each_channel(
        bdev,
        [](runtime::IoChannel& ch, void* ctx) {
            static_cast<Channel&>(ch).stats.reset(static_cast<Reset*>(ctx)->maxmin_only);
        },
        r,
        [](void* ctx) {
            std::unique_ptr<Reset> reset(static_cast<Reset*>(ctx));
            reset->done();
        });
}

void enable_histogram(Bdev& bdev, bool enable, std::optional<IoType> type,
                      std::function<void()> done) {
    bdev.impl().histogram_type.store(!enable ? BdevImpl::kHistogramOff
                                     : type  ? static_cast<uint8_t>(*type)
                                             : BdevImpl::kHistogramAll,
                                     std::memory_order_relaxed);
    {
        std::lock_guard lock(bdev.impl().mu);
        bdev.impl().gone_stats.enabled_histogram = {};
    }
    auto* d = new std::function<void()>(std::move(done));
    runtime::for_each_channel(
        bdev,
        [](runtime::IoChannel& ch, void*) {
            static_cast<Channel&>(ch).stats.enabled_histogram = {};
        },
        d,
        [](void* ctx) {
            std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(ctx));
            (*fn)();
        });
}

void get_queue_depth(Bdev& bdev, std::function<void(uint64_t)> done) {
    struct Sum {
        uint64_t qd = 0;
        std::function<void(uint64_t)> done;
    };
    auto* s = new Sum{0, std::move(done)};
    runtime::for_each_channel(
        bdev,
        [](runtime::IoChannel& ch, void* ctx) {
            static_cast<Sum*>(ctx)->qd += static_cast<Channel&>(ch).queue_depth();
        },
        s,
        [](void* ctx) {
            std::unique_ptr<Sum> sum(static_cast<Sum*>(ctx));
            sum->done(sum->qd);
        });
}

runtime::IoDevice& stateless_io_device() { return *registry().stateless; }

}  // namespace strata::bdev
