// Framework state: the explicit module table, opcode routing, init/fini and the IoDevice whose
// per-Thread channels are accel::Channel.
#include <algorithm>

#include <strata/accel/rpc.h>
#include <strata/runtime/host.h>

#include "internal.h"

namespace strata::accel {

namespace {

constexpr std::string_view kOpcodeNames[kOpcodeCount] = {"copy",   "fill",        "compare",
                                                         "crc32c", "copy_crc32c", "xor"};

class Device final : public runtime::IoDevice {
public:
    explicit Device(Framework& framework) : IoDevice("accel"), framework_(framework) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    Framework& framework_;
};

}  // namespace

// One per runtime::Host: two Apps in one process (two Python Worlds) route, configure and
// count independently. A channel keeps a reference to its Framework, so the data path never
// looks the Host up.
struct Framework {
    std::mutex mu;  // control path only
    FrameworkOptions options;
    std::vector<std::unique_ptr<Module>> owned;
    std::vector<Module*> modules;
    std::array<int, kOpcodeCount> overrides;  // module index or -1
    std::array<std::atomic<uint8_t>, kOpcodeCount> routes{};
    std::array<bool, kMaxModules> started{};
    bool ioat_enabled = false;
    std::unique_ptr<Device> device;
    std::atomic<bool> running{false};
    // Apps sharing one Host (AppOptions::host): the first init starts the framework, the last
    // fini stops it. Under mu.
    int users = 0;
    Stats gone;  // stats of channels already destroyed

    Framework() {
        // The explicit table, in order: software first (index 0, always started).
        owned.push_back(make_software_module());
        owned.push_back(make_ioat_module());
        for (auto& m : owned) modules.push_back(m.get());
        overrides.fill(-1);
        gone.module_ops.assign(modules.size(), 0);
    }
    ~Framework();
};

namespace {

Framework& g() {
    return runtime::current_host().get<Framework>();
}

int find_module(std::string_view name) {
    auto& mods = g().modules;
    for (size_t i = 0; i < mods.size(); ++i)
        if (name == mods[i]->name()) return static_cast<int>(i);
    return -1;
}

// Under G.mu.
void recompute_routes(Framework& G) {
    for (size_t op = 0; op < kOpcodeCount; ++op) {
        const auto opc = static_cast<Opcode>(op);
        int best = 0;
        int best_prio = -1;
        for (size_t i = 0; i < G.modules.size(); ++i) {
            Module* m = G.modules[i];
            if (!G.started[i] || !m->available() || !m->supports(opc)) continue;
            if (m->priority() > best_prio) {
                best = static_cast<int>(i);
                best_prio = m->priority();
            }
        }
        const int o = G.overrides[op];
        if (o >= 0 && G.started[static_cast<size_t>(o)] &&
            G.modules[static_cast<size_t>(o)]->available())
            best = o;
        G.routes[op].store(static_cast<uint8_t>(best), std::memory_order_relaxed);
    }
}

}  // namespace

class ChannelFactory {
public:
    static std::unique_ptr<Channel> make(std::unique_ptr<ChannelImpl> impl) {
        return std::unique_ptr<Channel>(new Channel(std::move(impl)));
    }
};

namespace {
std::unique_ptr<runtime::IoChannel> Device::create_channel(runtime::Thread& thread) {
    auto& G = framework_;
    std::lock_guard lock(G.mu);
    auto impl = std::make_unique<ChannelImpl>(G, thread, G.options);
    for (size_t i = 0; i < G.modules.size(); ++i) {
        if (!G.started[i]) continue;
        auto mc = G.modules[i]->create_channel(thread, *impl);
        if (mc) impl->set_module_channel(i, std::move(mc));
    }
    return std::unique_ptr<runtime::IoChannel>(
        static_cast<runtime::IoChannel*>(ChannelFactory::make(std::move(impl)).release()));
}
}  // namespace

Framework::~Framework() {
    // fini ran (the App's subsystem fini) unless the framework was left running: then a
    // channel may still point at this, so the device is left behind rather than freed.
    if (device != nullptr && device->channel_count() != 0) {
        STRATA_ERRLOG(log_accel, "accel framework destroyed while running: device leaked");
        (void)device.release();
    }
}

// Channel death: fold its stats into the totals (control path, once per channel).
void fold_gone_stats(Framework& framework, const Stats& s) {
    std::lock_guard lock(framework.mu);
    framework.gone += s;
}

const std::vector<Module*>& modules(const Framework& framework) {
    return framework.modules;
}
size_t software_index() noexcept {
    return 0;
}
size_t routed_module(const Framework& framework, Opcode op) noexcept {
    return framework.routes[static_cast<size_t>(op)].load(std::memory_order_relaxed);
}

std::string_view opcode_name(Opcode op) noexcept {
    const auto i = static_cast<size_t>(op);
    return i < kOpcodeCount ? kOpcodeNames[i] : std::string_view("unknown");
}
std::optional<Opcode> opcode_from_name(std::string_view name) noexcept {
    for (size_t i = 0; i < kOpcodeCount; ++i)
        if (kOpcodeNames[i] == name) return static_cast<Opcode>(i);
    return std::nullopt;
}

Result<void> set_options(const FrameworkOptions& options) {
    if (options.task_count == 0 || options.batch_count == 0)
        return Error(Errc::invalid_argument, "task_count and batch_count must be positive");
    // Both pools are allocated per channel up front: bound them so a config typo cannot ask
    // for gigabytes per Thread.
    if (options.task_count > (1u << 20))
        return Error(Errc::invalid_argument, "task_count must be at most 1048576");
    if (options.batch_count > (1u << 16))
        return Error(Errc::invalid_argument, "batch_count must be at most 65536");
    if (g().running.load()) return Error(Errc::already_exists, "accel framework already running");
    std::lock_guard lock(g().mu);
    g().options = options;
    return {};
}
FrameworkOptions options() {
    std::lock_guard lock(g().mu);
    return g().options;
}

namespace {
Result<void> start_module_locked(Framework& G, size_t i) {
    if (G.started[i]) return {};
    auto r = G.modules[i]->start();
    if (!r) return r;
    G.started[i] = true;
    return {};
}
}  // namespace

Result<void> init() {
    auto& G = g();
    {
        std::lock_guard lock(G.mu);
        if (G.running.load()) {
            ++G.users;  // another App of this Host already started it: share
            return {};
        }
        for (size_t i = 0; i < G.modules.size(); ++i) {
            const bool want = i == software_index() ||
                              (G.ioat_enabled && std::string_view(G.modules[i]->name()) == "ioat");
            if (!want) continue;
            auto r = start_module_locked(G, i);
            if (!r) {
                STRATA_ERRLOG(log_accel, "accel module {} failed to start: {}",
                              G.modules[i]->name(), r.error().message());
                if (i == software_index()) return r;
            }
        }
        recompute_routes(G);
        G.device = std::make_unique<Device>(G);
        runtime::register_io_device(*G.device);
        G.users = 1;
        G.running.store(true);
    }
    return {};
}

bool running() noexcept {
    return g().running.load();
}
runtime::IoDevice* io_device() noexcept {
    return g().running.load() ? g().device.get() : nullptr;
}

void fini(runtime::MsgFn done, void* ctx) {
    auto& G = g();
    runtime::Thread* t = runtime::current_thread();
    STRATA_ASSERT_MSG(t != nullptr, "accel::fini must be called on a runtime Thread");
    {
        std::lock_guard lock(G.mu);
        const bool last = G.running.load() && --G.users == 0;
        if (!last) {  // not running, or another App still uses it
            (void)t->send(done, ctx);
            return;
        }
        G.running.store(false);
    }
    struct Fin {
        Framework& framework;
        runtime::MsgFn done;
        void* ctx;
        runtime::Thread* thread = nullptr;
        runtime::Poller* poller = nullptr;
        // Modules still finishing destroyed channels' work (an I/OAT channel whose ring may be
        // freed only after the engine confirmed its reset).
        bool modules_busy() const {
            for (Module* m : framework.modules)
                if (m->busy()) return true;
            return false;
        }
        static runtime::PollStatus wait(void* c) {
            auto* fin = static_cast<Fin*>(c);
            if (fin->modules_busy()) return runtime::PollStatus::idle;
            fin->thread->unregister_poller(fin->poller);
            fin->done(fin->ctx);
            delete fin;
            return runtime::PollStatus::busy;
        }
    };
    auto* f = new Fin{G, done, ctx, t};
    runtime::unregister_io_device(
        *G.device,
        [](void* c) {
            auto* fin = static_cast<Fin*>(c);
            auto& GG = fin->framework;
            {
                std::lock_guard lock(GG.mu);
                for (size_t i = 0; i < GG.modules.size(); ++i) {
                    if (!GG.started[i]) continue;
                    GG.modules[i]->stop();
                    GG.started[i] = false;
                }
                GG.device.reset();
                recompute_routes(GG);
            }
            if (fin->modules_busy()) {
                fin->poller = fin->thread->register_poller(&Fin::wait, fin, "accel_fini", 10'000);
                return;
            }
            fin->done(fin->ctx);
            delete fin;
        },
        f);
}

Channel* get_channel() noexcept {
    runtime::IoDevice* d = io_device();
    if (d == nullptr) return nullptr;
    return runtime::get_channel<Channel>(*d);
}
void put_channel(Channel* channel) noexcept {
    if (channel != nullptr) runtime::put_io_channel(channel);
}

std::vector<std::string> module_names() {
    std::vector<std::string> out;
    for (Module* m : g().modules) out.emplace_back(m->name());
    return out;
}
Result<std::vector<Opcode>> module_opcodes(std::string_view module) {
    const int i = find_module(module);
    if (i < 0)
        return Error(Errc::not_found, "accel module '" + std::string(module) + "' not found");
    std::vector<Opcode> out;
    for (size_t op = 0; op < kOpcodeCount; ++op)
        if (g().modules[static_cast<size_t>(i)]->supports(static_cast<Opcode>(op)))
            out.push_back(static_cast<Opcode>(op));
    return out;
}
bool module_started(std::string_view module) {
    const int i = find_module(module);
    std::lock_guard lock(g().mu);
    return i >= 0 && g().started[static_cast<size_t>(i)];
}

Result<void> enable_ioat_module() {
    auto& G = g();
    std::lock_guard lock(G.mu);
    G.ioat_enabled = true;
    if (!G.running.load()) return {};
    const int i = find_module("ioat");
    auto r = start_module_locked(G, static_cast<size_t>(i));
    recompute_routes(G);
    return r;
}
bool ioat_module_enabled() noexcept {
    std::lock_guard lock(g().mu);
    return g().ioat_enabled;
}

Result<void> assign_opc(Opcode op, std::string_view module) {
    if (static_cast<size_t>(op) >= kOpcodeCount) return Error(Errc::invalid_argument, "bad opcode");
    const int i = find_module(module);
    if (i < 0)
        return Error(Errc::not_found, "accel module '" + std::string(module) + "' not found");
    if (!g().modules[static_cast<size_t>(i)]->supports(op))
        return Error(Errc::not_supported, "accel module '" + std::string(module) +
                                              "' does not support " + std::string(opcode_name(op)));
    auto& G = g();
    std::lock_guard lock(G.mu);
    G.overrides[static_cast<size_t>(op)] = i;
    recompute_routes(G);
    return {};
}
void clear_assignments() {
    auto& G = g();
    std::lock_guard lock(G.mu);
    G.overrides.fill(-1);
    recompute_routes(G);
}
std::vector<std::pair<Opcode, std::string>> assignment_overrides() {
    std::lock_guard lock(g().mu);
    std::vector<std::pair<Opcode, std::string>> out;
    for (size_t op = 0; op < kOpcodeCount; ++op)
        if (g().overrides[op] >= 0)
            out.emplace_back(static_cast<Opcode>(op),
                             g().modules[static_cast<size_t>(g().overrides[op])]->name());
    return out;
}
std::string assigned_module(Opcode op) {
    std::lock_guard lock(g().mu);
    return g().modules[routed_module(g(), op)]->name();
}

void get_stats(std::function<void(const Stats&)> done) {
    struct Acc {
        Stats total;
        std::function<void(const Stats&)> done;
    };
    auto* acc = new Acc;
    {
        std::lock_guard lock(g().mu);
        acc->total = g().gone;
    }
    acc->done = std::move(done);
    runtime::IoDevice* d = io_device();
    if (d == nullptr) {
        acc->done(acc->total);
        delete acc;
        return;
    }
    runtime::for_each_channel(
        *d,
        [](runtime::IoChannel& ch, void* c) {
            static_cast<Acc*>(c)->total += static_cast<Channel&>(ch).stats();
        },
        acc,
        [](void* c) {
            auto* a = static_cast<Acc*>(c);
            a->done(a->total);
            delete a;
        });
}

}  // namespace strata::accel

namespace strata::accel {
void reset_config() {
    auto& G = g();
    if (G.running.load()) return;
    std::lock_guard lock(G.mu);
    G.ioat_enabled = false;
    G.overrides.fill(-1);
    G.options = FrameworkOptions{};
    G.gone = Stats{};
    G.gone.module_ops.assign(G.modules.size(), 0);
    recompute_routes(G);
}
}  // namespace strata::accel
