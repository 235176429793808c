#include "error/error.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/intrusive_list.h>
#include <strata/runtime/host.h>

#include <strata/bdev/vbdev.h>

namespace strata::bdev {

namespace {

void examine(Bdev& bdev);
void fini(std::function<void()> done);

constexpr uint64_t kNomemRetryNs = 100'000;  // a refused I/O is sent again after this long

std::string vbdev_name(const std::string& base) { return "EE_" + base; }

struct Config {
    std::string base_name;
    std::string uuid;
};

Result<void> attach(const Config& c);

// What the module was asked to create, per Host (App).
struct Configs : vbdev::ConfigRegistry<Config> {
    Configs()
        : ConfigRegistry(
              "error", [](const Config& c) { return vbdev_name(c.base_name); },
              [](const Config& c) { return c.base_name; }, &attach) {}
};

vbdev::ConfigRegistry<Config>& configs() { return runtime::current_host().get<Configs>(); }

// One I/O type's armed error. Written by the RPC handler, read by every channel's Thread:
// relaxed atomics, with `num` published last (release) so a reader that sees a count sees
// the parameters that came with it.
struct Armed {
    std::atomic<uint32_t> error_type{0};
    std::atomic<uint32_t> num{0};
    std::atomic<uint64_t> queue_depth{0};
    std::atomic<uint64_t> corrupt_offset{0};
    std::atomic<uint32_t> corrupt_value{0};
    std::atomic<uint64_t> injected{0};

    // Takes one error if any is left (several channels may race for the last one).
    bool take() noexcept {
        uint32_t n = num.load(std::memory_order_acquire);
        while (n != 0)
            if (num.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) return true;
        return false;
    }
};

class ErrorChannel final : public vbdev::BaseChannel {
public:
    ErrorChannel();
    ~ErrorChannel() override;
    IntrusiveList<BdevIo, QueuedTag> pending;  // held until a reset (error_type pending)
    IntrusiveList<BdevIo, QueuedTag> refused;  // nomem: sent again by the retry poller
    uint64_t at_base = 0;                      // I/O of this channel at the base now
    runtime::Poller* retry_poller = nullptr;
};

struct ErrorIo {
    vbdev::Forward fwd;
    ErrorChannel* ch;
    uint64_t corrupt_offset;
    uint8_t corrupt_value;  // 0: no corruption
};
static_assert(sizeof(ErrorIo) <= kModuleIoContextBytes);

// XORs value into byte `offset` of the I/O's data (nothing when the I/O is shorter): applied
// twice it restores the byte, which is how a corrupted write leaves the caller's buffer intact.
void corrupt(const BdevIo& io, uint64_t offset, uint8_t value) noexcept {
    if (offset >= io.length_bytes()) return;
    for (const iovec& v : io.iovs()) {
        if (offset < v.iov_len) {
            static_cast<uint8_t*>(v.iov_base)[offset] ^= value;
            return;
        }
        offset -= v.iov_len;
    }
}

void base_done(void* p, const IoStatus& status) {
    auto& io = *static_cast<BdevIo*>(p);
    auto* ctx = io.module_ctx<ErrorIo>();
    --ctx->ch->at_base;
    if (ctx->corrupt_value != 0) {
        // A write goes out corrupted and the caller's buffer comes back as it was; a read
        // returns corrupted data.
        if (io.type() == IoType::write || (io.type() == IoType::read && status.ok()))
            corrupt(io, ctx->corrupt_offset, ctx->corrupt_value);
    }
    io.complete(status);
}

void send(BdevIo& io, ErrorChannel& ch) noexcept {
    auto* ctx = io.module_ctx<ErrorIo>();
    ++ch.at_base;
    vbdev::forward(ctx->fwd, io, ch, 0, &base_done);
}

runtime::PollStatus retry_poll(void* p) {
    auto* ch = static_cast<ErrorChannel*>(p);
    bool did = false;
    while (BdevIo* io = ch->refused.pop_front()) {
        send(*io, *ch);
        did = true;
    }
    ch->thread().pause_poller(ch->retry_poller);
    return did ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

ErrorChannel::ErrorChannel() {
    retry_poller = runtime::current_thread()->register_poller(&retry_poll, this, "bdev_error_nomem",
                                                               kNomemRetryNs);
    runtime::current_thread()->pause_poller(retry_poller);
}

ErrorChannel::~ErrorChannel() {
    if (!pending.empty() || !refused.empty())
        STRATA_ERRLOG(vbdev::log_vbdev, "error bdev channel destroyed holding {} I/O",
                      pending.size() + refused.size());
    runtime::current_thread()->unregister_poller(retry_poller);
}

class ErrorBdev final : public Bdev {
public:
    ErrorBdev(Properties p, std::unique_ptr<vbdev::BaseDevice> base)
        : Bdev(kErrorModule, std::move(p)), base_(std::move(base)) {
        for (size_t i = 0; i < kIoTypeCount; ++i)
            supported_[i] = vbdev::forwards(base_->bdev(), static_cast<IoType>(i));
    }
    ~ErrorBdev() override { vbdev::BaseDevice::release(std::move(base_)); }

    bool supports(IoType t) const noexcept override { return supported_[static_cast<size_t>(t)]; }
    runtime::IoDevice& module_io_device() noexcept override { return *base_; }

    void submit(runtime::IoChannel& mch, BdevIo& io) noexcept override {
        auto& ch = static_cast<ErrorChannel&>(mch);
        auto* ctx = io.module_ctx<ErrorIo>();
        ctx->ch = &ch;
        ctx->corrupt_value = 0;
        ctx->corrupt_offset = 0;
        if (io.type() == IoType::reset) {
            reset(io);
            return;
        }
        Armed& a = armed_[static_cast<size_t>(io.type())];
        const auto type = static_cast<ErrorType>(a.error_type.load(std::memory_order_relaxed));
        const uint64_t qd = a.queue_depth.load(std::memory_order_relaxed);
        if (type == ErrorType::none || (qd != 0 && ch.at_base < qd) || !a.take()) {
            send(io, ch);
            return;
        }
        a.injected.fetch_add(1, std::memory_order_relaxed);
        switch (type) {
            case ErrorType::failure:
                io.complete(Errc::io_error);
                return;
            case ErrorType::pending:
                ch.pending.push_back(io);
                return;
            case ErrorType::nomem:
                ch.refused.push_back(io);
                ch.thread().resume_poller(ch.retry_poller);
                return;
            case ErrorType::corrupt_data:
                if (io.type() == IoType::read || io.type() == IoType::write) {
                    ctx->corrupt_offset = a.corrupt_offset.load(std::memory_order_relaxed);
                    ctx->corrupt_value =
                        static_cast<uint8_t>(a.corrupt_value.load(std::memory_order_relaxed));
                    if (io.type() == IoType::write)
                        corrupt(io, ctx->corrupt_offset, ctx->corrupt_value);
                }
                send(io, ch);
                return;
            case ErrorType::none:
                break;
        }
        send(io, ch);
    }

    void destruct(std::function<void()> done) override { base_->close(std::move(done)); }

    void info_json(nlohmann::json& out) const override {
        nlohmann::json armed = nlohmann::json::object();
        for (size_t i = 0; i < kIoTypeCount; ++i) {
            const Armed& a = armed_[i];
            const auto t = static_cast<ErrorType>(a.error_type.load());
            if (t == ErrorType::none && a.injected.load() == 0) continue;
            armed[io_type_name(static_cast<IoType>(i))] = {
                {"error_type", error_type_name(t)},
                {"remaining", a.num.load()},
                {"injected", a.injected.load()},
                {"queue_depth", a.queue_depth.load()}};
        }
        out["error_disk"] = {{"base_bdev", base_->base_name()}, {"injections", armed}};
    }
    void config_json(nlohmann::json& out) const override {
        out = {{"method", "bdev_error_create"},
               {"params", {{"base_name", base_->base_name()}, {"uuid", uuid()}}}};
    }

    void inject(const ErrorInjection& inj) noexcept {
        for (size_t i = 0; i < kIoTypeCount; ++i) {
            const auto t = static_cast<IoType>(i);
            if (inj.clear) {
                armed_[i].num.store(0, std::memory_order_release);
                armed_[i].error_type.store(0, std::memory_order_relaxed);
                continue;
            }
            const bool hit = inj.all ? (t != IoType::reset && t != IoType::abort) : t == inj.io_type;
            if (!hit) continue;
            Armed& a = armed_[i];
            a.num.store(0, std::memory_order_release);
            a.error_type.store(static_cast<uint32_t>(inj.error_type), std::memory_order_relaxed);
            a.queue_depth.store(inj.queue_depth, std::memory_order_relaxed);
            a.corrupt_offset.store(inj.corrupt_offset, std::memory_order_relaxed);
            a.corrupt_value.store(inj.corrupt_value, std::memory_order_relaxed);
            a.num.store(inj.num, std::memory_order_release);
        }
    }
    ErrorCounts counts() const noexcept {
        ErrorCounts c;
        for (size_t i = 0; i < kIoTypeCount; ++i) {
            c.injected[i] = armed_[i].injected.load();
            c.remaining[i] = armed_[i].num.load();
        }
        return c;
    }

    // Completes every held I/O (pending and refused) on every channel with `code`; then done
    // on the calling Thread. Control path (resets are rare; SPDK fails held I/O the same way).
    void fail_held(Errc code, std::function<void()> done) {
        struct Ctx {
            Errc code;
            std::function<void()> done;
        };
        runtime::for_each_channel(
            *base_,
            [](runtime::IoChannel& c, void* p) {
                auto& ch = static_cast<ErrorChannel&>(c);
                const Errc code = static_cast<Ctx*>(p)->code;
                while (BdevIo* io = ch.pending.pop_front()) io->complete(code);
                while (BdevIo* io = ch.refused.pop_front()) io->complete(code);
            },
            new Ctx{code, std::move(done)},
            [](void* p) {
                std::unique_ptr<Ctx> c(static_cast<Ctx*>(p));
                if (c->done) c->done();
            });
    }

private:
    // SPDK's error bdev fails what it holds on a reset, then the reset goes to the base.
    void reset(BdevIo& io) {
        fail_held(Errc::io_error, [this, &io] {
            auto* ctx = io.module_ctx<ErrorIo>();
            send(io, *ctx->ch);
        });
    }

    std::unique_ptr<vbdev::BaseDevice> base_;
    bool supported_[kIoTypeCount]{};
    Armed armed_[kIoTypeCount];
};

std::unique_ptr<vbdev::BaseChannel> make_channel(vbdev::BaseDevice&) {
    return std::make_unique<ErrorChannel>();
}

ErrorBdev* find_error(const std::string& name) {
    Bdev* b = find(name);
    return b != nullptr && &b->module() == &kErrorModule ? static_cast<ErrorBdev*>(b) : nullptr;
}

void on_base_removed(const std::string& name) {
    ErrorBdev* e = find_error(name);
    if (e == nullptr) return;
    // Nothing held may outlive the bdev: fail it, then unregister.
    e->fail_held(Errc::aborted, [name] {
        if (find_error(name) != nullptr) unregister_bdev(name, {});
    });
}

Result<void> attach(const Config& c) {
    const std::string name = vbdev_name(c.base_name);
    auto base = vbdev::BaseDevice::open(c.base_name, kErrorModule,
                                        [name] { on_base_removed(name); }, &make_channel);
    if (!base)
        return Error(base.error().code(), fmt::format("error bdev {}: base bdev {}: {}", name,
                                                      c.base_name, base.error().message()));
    Bdev::Properties p =
        vbdev::mirror_properties((*base)->bdev(), name, "Error Injection Disk", c.uuid);
    auto r = register_bdev(std::make_unique<ErrorBdev>(std::move(p), std::move(*base)));
    if (!r) return r.error();
    return {};
}

void examine(Bdev& bdev) { configs().examine(bdev); }

void fini(std::function<void()> done) {
    configs().clear();
    done();
}

}  // namespace

const Module kErrorModule{"error", &examine, nullptr, &fini};

const char* error_type_name(ErrorType type) noexcept {
    switch (type) {
        case ErrorType::none: return "none";
        case ErrorType::failure: return "failure";
        case ErrorType::pending: return "pending";
        case ErrorType::corrupt_data: return "corrupt_data";
        case ErrorType::nomem: return "nomem";
    }
    return "?";
}

Result<void> error_parse_types(const std::string& io_type, const std::string& error_type,
                               ErrorInjection& out) {
    out.all = io_type == "all";
    out.clear = io_type == "clear";
    if (!out.all && !out.clear) {
        bool found = false;
        for (size_t i = 0; i < kIoTypeCount && !found; ++i) {
            const auto t = static_cast<IoType>(i);
            if (t != IoType::abort && io_type == io_type_name(t)) {
                out.io_type = t;
                found = true;
            }
        }
        if (!found)
            return Error(Errc::invalid_argument,
                         fmt::format("io_type '{}' is not one of read, write, write_zeroes, unmap, "
                                     "flush, reset, compare, compare_and_write, all, clear",
                                     io_type));
    }
    const ErrorType types[] = {ErrorType::failure, ErrorType::pending, ErrorType::corrupt_data,
                               ErrorType::nomem};
    for (ErrorType t : types)
        if (error_type == error_type_name(t)) {
            out.error_type = t;
            return {};
        }
    return Error(Errc::invalid_argument,
                 fmt::format("error_type '{}' is not one of failure, pending, corrupt_data, nomem",
                             error_type));
}

Result<void> error_create(const std::string& base_name, const std::string& uuid) {
    if (base_name.empty()) return Error(Errc::invalid_argument, "base_name is empty");
    if (!uuid.empty() && !vbdev::valid_uuid(uuid))
        return Error(Errc::invalid_argument, fmt::format("uuid '{}' is not a UUID", uuid));
    return configs().create({base_name, uuid});
}

void error_delete(const std::string& name, std::function<void(Result<void>)> done) {
    const bool had_config = configs().erase(name);
    ErrorBdev* e = find_error(name);
    if (e == nullptr) {
        if (had_config) done(Result<void>{});
        else done(Error(Errc::not_found, fmt::format("error bdev {} not found", name)));
        return;
    }
    e->fail_held(Errc::aborted, [name, done = std::move(done)]() mutable {
        if (find_error(name) == nullptr) {
            done(Result<void>{});  // removed meanwhile (its base went)
            return;
        }
        unregister_bdev(name, std::move(done));
    });
}

Result<void> error_inject(const std::string& name, const ErrorInjection& inj) {
    ErrorBdev* e = find_error(name);
    if (e == nullptr) return Error(Errc::not_found, fmt::format("error bdev {} not found", name));
    if (!inj.clear && inj.error_type == ErrorType::corrupt_data && inj.corrupt_value == 0)
        return Error(Errc::invalid_argument, "corrupt_data needs a non-zero corrupt_value");
    if (!inj.clear && inj.error_type == ErrorType::pending && !inj.all &&
        inj.io_type == IoType::reset)
        return Error(Errc::invalid_argument, "a reset cannot be held pending (a reset releases them)");
    e->inject(inj);
    return {};
}

Result<ErrorCounts> error_counts(const std::string& name) {
    ErrorBdev* e = find_error(name);
    if (e == nullptr) return Error(Errc::not_found, fmt::format("error bdev {} not found", name));
    return e->counts();
}

}  // namespace strata::bdev
