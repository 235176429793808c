#include "delay/delay.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/intrusive_list.h>
#include <strata/base/random.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include <strata/bdev/vbdev.h>

namespace strata::bdev {

namespace {

void examine(Bdev& bdev);
void fini(std::function<void()> done);

// Granularity of the per-channel completion poller: an I/O completes within this much after
// its deadline.
constexpr uint64_t kPollNs = 1'000;

enum Latency : size_t { kAvgRead, kP99Read, kAvgWrite, kP99Write, kLatencyCount };
constexpr const char* kLatencyNames[kLatencyCount] = {"avg_read", "p99_read", "avg_write",
                                                      "p99_write"};

Result<void> attach(const DelayOptions& o);

// What the module was asked to create, per Host (App).
struct Configs : vbdev::ConfigRegistry<DelayOptions> {
    Configs()
        : ConfigRegistry(
              "delay", [](const DelayOptions& o) { return o.name; },
              [](const DelayOptions& o) { return o.base_bdev_name; }, &attach) {}
};

vbdev::ConfigRegistry<DelayOptions>& configs() { return runtime::current_host().get<Configs>(); }

class DelayChannel final : public vbdev::BaseChannel {
public:
    explicit DelayChannel(uint64_t seed);
    ~DelayChannel() override;
    void add(BdevIo& io, uint64_t deadline_ns) noexcept;
    void complete_all() noexcept;  // deadlines cut short (reset)
    static runtime::PollStatus poll(void* p);

    Prng prng;
    IntrusiveList<BdevIo, QueuedTag> waiting;  // done at the base, deadline not reached
    uint64_t next_deadline_ns = UINT64_MAX;
    runtime::Poller* poller = nullptr;
};

struct DelayIo {
    vbdev::Forward fwd;
    DelayChannel* ch;
    uint64_t deadline_ns;  // 0: not delayed
    IoStatus status;
};
static_assert(sizeof(DelayIo) <= kModuleIoContextBytes);

DelayChannel::DelayChannel(uint64_t seed) : prng(seed) {
    poller = runtime::current_thread()->register_poller(&DelayChannel::poll, this, "bdev_delay",
                                                        kPollNs);
    runtime::current_thread()->pause_poller(poller);
}

DelayChannel::~DelayChannel() {
    if (!waiting.empty())
        STRATA_ERRLOG(vbdev::log_vbdev, "delay channel destroyed with {} I/O waiting",
                      waiting.size());
    runtime::current_thread()->unregister_poller(poller);
}

void DelayChannel::add(BdevIo& io, uint64_t deadline_ns) noexcept {
    if (waiting.empty()) thread().resume_poller(poller);
    waiting.push_back(io);
    next_deadline_ns = std::min(next_deadline_ns, deadline_ns);
}

runtime::PollStatus DelayChannel::poll(void* p) {
    auto* ch = static_cast<DelayChannel*>(p);
    const uint64_t now = runtime::now_ns();
    if (now < ch->next_deadline_ns) return runtime::PollStatus::idle;
    // Base completions arrive out of deadline order; the list is scanned only when the
    // earliest deadline has passed.
    uint64_t next = UINT64_MAX;
    for (auto it = ch->waiting.begin(); it != ch->waiting.end();) {
        BdevIo& io = *it;
        ++it;
        auto* ctx = io.module_ctx<DelayIo>();
        if (ctx->deadline_ns <= now) {
            ch->waiting.remove(io);
            io.complete(ctx->status);
        } else {
            next = std::min(next, ctx->deadline_ns);
        }
    }
    ch->next_deadline_ns = next;
    if (ch->waiting.empty()) ch->thread().pause_poller(ch->poller);
    return runtime::PollStatus::busy;
}

void DelayChannel::complete_all() noexcept {
    while (BdevIo* io = waiting.pop_front()) io->complete(io->module_ctx<DelayIo>()->status);
    next_deadline_ns = UINT64_MAX;
    thread().pause_poller(poller);
}

void base_done(void* p, const IoStatus& status) {
    auto& io = *static_cast<BdevIo*>(p);
    auto* ctx = io.module_ctx<DelayIo>();
    if (ctx->deadline_ns == 0 || ctx->deadline_ns <= runtime::now_ns()) {
        io.complete(status);
        return;
    }
    ctx->status = status;
    ctx->ch->add(io, ctx->deadline_ns);
}

uint64_t channel_seed(const std::string& name, uint64_t generation) {
    // Deterministic: the bdev's name, the Thread, and the simulator's seed when there is one,
    // so a scenario's seed also picks which I/O take the p99 latency. The channel's generation
    // (how many channels the bdev had before) keeps a Thread whose channels come and go (one
    // per I/O) from drawing the same first numbers each time.
    uint64_t g = generation;
    uint64_t s = std::hash<std::string>{}(name) ^ Prng::splitmix64(g);
    runtime::Thread* t = runtime::current_thread();
    s ^= uint64_t{t->id()} * 0x9E3779B97F4A7C15ull;
    if (auto* sim = dynamic_cast<runtime::SimScheduler*>(&t->scheduler())) s ^= sim->seed();
    return s;
}

class DelayBdev final : public Bdev {
public:
    DelayBdev(Properties p, std::unique_ptr<vbdev::BaseDevice> base, const DelayOptions& o)
        : Bdev(kDelayModule, std::move(p)), base_(std::move(base)) {
        for (size_t i = 0; i < kIoTypeCount; ++i)
            supported_[i] = vbdev::forwards(base_->bdev(), static_cast<IoType>(i));
        latency_us_[kAvgRead] = o.avg_read_latency_us;
        latency_us_[kP99Read] = o.p99_read_latency_us;
        latency_us_[kAvgWrite] = o.avg_write_latency_us;
        latency_us_[kP99Write] = o.p99_write_latency_us;
        base_->set_context(this);
    }
    ~DelayBdev() override { vbdev::BaseDevice::release(std::move(base_)); }

    bool supports(IoType t) const noexcept override { return supported_[static_cast<size_t>(t)]; }
    runtime::IoDevice& module_io_device() noexcept override { return *base_; }

    void submit(runtime::IoChannel& mch, BdevIo& io) noexcept override {
        auto& ch = static_cast<DelayChannel&>(mch);
        auto* ctx = io.module_ctx<DelayIo>();
        ctx->ch = &ch;
        ctx->deadline_ns = 0;
        if (io.type() == IoType::read || io.type() == IoType::write) {
            const bool p99 = ch.prng.uniform(100) == 0;
            const size_t which = (io.type() == IoType::read ? kAvgRead : kAvgWrite) + (p99 ? 1 : 0);
            ctx->deadline_ns =
                runtime::now_ns() + latency_us_[which].load(std::memory_order_relaxed) * 1000;
        } else if (io.type() == IoType::reset) {
            cut_delays_short(io);
            return;
        }
        vbdev::forward(ctx->fwd, io, ch, 0, &base_done);
    }

    void destruct(std::function<void()> done) override { base_->close(std::move(done)); }

    void info_json(nlohmann::json& out) const override {
        nlohmann::json d = {{"name", name()}, {"base_bdev_name", base_->base_name()}};
        for (size_t i = 0; i < kLatencyCount; ++i)
            d[std::string(kLatencyNames[i]) + "_latency"] = latency_us_[i].load();
        out["delay"] = std::move(d);
    }
    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_delay_create"},
               {"params",
                {{"base_bdev_name", base_->base_name()},
                 {"name", name()},
                 {"uuid", uuid()},
                 {"avg_read_latency", latency_us_[kAvgRead].load()},
                 {"p99_read_latency", latency_us_[kP99Read].load()},
                 {"avg_write_latency", latency_us_[kAvgWrite].load()},
                 {"p99_write_latency", latency_us_[kP99Write].load()}}}};
    }

    uint64_t next_channel_seed() {
        return channel_seed(name(), channels_made_.fetch_add(1, std::memory_order_relaxed));
    }

    void set_latency(size_t which, uint64_t us) noexcept {
        latency_us_[which].store(us, std::memory_order_relaxed);
    }

private:
    // As SPDK's delay bdev, a reset releases every delayed I/O at once (with the status the
    // base gave it), on every channel, before the reset goes to the base.
    void cut_delays_short(BdevIo& io) {
        runtime::for_each_channel(
            *base_,
            [](runtime::IoChannel& c, void*) { static_cast<DelayChannel&>(c).complete_all(); },
            &io,
            [](void* p) {
                auto& reset_io = *static_cast<BdevIo*>(p);
                auto* ctx = reset_io.module_ctx<DelayIo>();
                vbdev::forward(ctx->fwd, reset_io, *ctx->ch, 0, &base_done);
            });
    }

    std::unique_ptr<vbdev::BaseDevice> base_;
    bool supported_[kIoTypeCount]{};
    std::atomic<uint64_t> latency_us_[kLatencyCount];
    std::atomic<uint64_t> channels_made_{0};
};

std::unique_ptr<vbdev::BaseChannel> make_channel(vbdev::BaseDevice& device);

DelayBdev* find_delay(const std::string& name) {
    Bdev* b = find(name);
    return b != nullptr && &b->module() == &kDelayModule ? static_cast<DelayBdev*>(b) : nullptr;
}

void remove_vbdev(const std::string& name) {
    if (find_delay(name) != nullptr) unregister_bdev(name, {});
}

std::unique_ptr<vbdev::BaseChannel> make_channel(vbdev::BaseDevice& device) {
    return std::make_unique<DelayChannel>(
        static_cast<DelayBdev*>(device.context())->next_channel_seed());
}

Result<void> validate(const DelayOptions& o) {
    if (o.name.empty() || o.base_bdev_name.empty())
        return Error(Errc::invalid_argument, "delay bdev needs a name and a base_bdev_name");
    if (o.name == o.base_bdev_name)
        return Error(Errc::invalid_argument, "a delay bdev cannot be its own base");
    if (!o.uuid.empty() && !vbdev::valid_uuid(o.uuid))
        return Error(Errc::invalid_argument, fmt::format("uuid '{}' is not a UUID", o.uuid));
    for (uint64_t v : {o.avg_read_latency_us, o.p99_read_latency_us, o.avg_write_latency_us,
                       o.p99_write_latency_us})
        if (v > kMaxDelayLatencyUs)
            return Error(Errc::invalid_argument,
                         fmt::format("latency {} us is beyond an hour", v));
    return {};
}

Result<void> attach(const DelayOptions& o) {
    auto base = vbdev::BaseDevice::open(o.base_bdev_name, kDelayModule,
                                        [name = o.name] { remove_vbdev(name); }, &make_channel);
    if (!base)
        return Error(base.error().code(), fmt::format("delay {}: base bdev {}: {}", o.name,
                                                      o.base_bdev_name, base.error().message()));
    Bdev::Properties p = vbdev::mirror_properties((*base)->bdev(), o.name, "delay", o.uuid);
    auto r = register_bdev(std::make_unique<DelayBdev>(std::move(p), std::move(*base), o));
    if (!r) return r.error();
    return {};
}

void examine(Bdev& bdev) { configs().examine(bdev); }

void fini(std::function<void()> done) {
    configs().clear();
    done();
}

}  // namespace

const Module kDelayModule{"delay", &examine, nullptr, &fini};

Result<void> delay_create(const DelayOptions& o) {
    if (auto v = validate(o); !v) return v;
    return configs().create(o);
}

void delay_delete(const std::string& name, std::function<void(Result<void>)> done) {
    const bool had_config = configs().erase(name);
    if (find_delay(name) != nullptr) {
        unregister_bdev(name, std::move(done));
        return;
    }
    if (had_config) done(Result<void>{});
    else done(Error(Errc::not_found, fmt::format("delay bdev {} not found", name)));
}

Result<void> delay_update_latency(const std::string& name, const std::string& latency_type,
                                  uint64_t latency_us) {
    size_t which = kLatencyCount;
    for (size_t i = 0; i < kLatencyCount; ++i)
        if (latency_type == kLatencyNames[i]) which = i;
    if (which == kLatencyCount)
        return Error(Errc::invalid_argument,
                     fmt::format("latency_type '{}' is not one of avg_read, p99_read, avg_write, "
                                 "p99_write",
                                 latency_type));
    if (latency_us > kMaxDelayLatencyUs)
        return Error(Errc::invalid_argument,
                     fmt::format("latency {} us is beyond an hour", latency_us));
    DelayBdev* d = find_delay(name);
    if (d == nullptr) return Error(Errc::not_found, fmt::format("delay bdev {} not found", name));
    d->set_latency(which, latency_us);
    // Keep the recorded configuration in step, so a base that comes back gets the new value.
    configs().update(name, [which, latency_us](DelayOptions& c) {
        uint64_t* f[kLatencyCount] = {&c.avg_read_latency_us, &c.p99_read_latency_us,
                                      &c.avg_write_latency_us, &c.p99_write_latency_us};
        *f[which] = latency_us;
    });
    return {};
}

}  // namespace strata::bdev
