#include "rbd/rbd.h"

#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <strata/base/log.h>
#include <strata/base/mpsc_ring.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>

#include <strata/bdev/backing_file.h>

namespace strata::bdev {

STRATA_LOG_COMPONENT(bdev_rbd);

namespace {
void write_clusters_config(nlohmann::json& methods);
void fini_clusters(std::function<void()> done);
}  // namespace

const Module kRbdModule{"rbd", nullptr, &write_clusters_config, &fini_clusters};

namespace {

// I/O in flight per channel; more waits on the channel's queue. Also the completion ring's size,
// so a librbd thread's push never finds it full.
constexpr uint32_t kChannelDepth = 1024;
constexpr size_t kInlineIovs = 8;
// How often the creating Thread looks for a size change the image watch reported.
constexpr uint64_t kResizePollNs = 100'000'000;
// Bounds rados_connect, pool and image opens against an unreachable or refusing cluster
// (librados' default is 300 s); a config's own client_mount_timeout wins.
constexpr const char* kDefaultMountTimeout = "30";

std::string reason(int rc) {
    return std::strerror(rc < 0 ? -rc : rc);
}

Error rados_error(int rc, std::string what) {
    const int e = rc < 0 ? -rc : rc;
    return Error(errc_from_errno(e), fmt::format("{}: {}", what, reason(rc)));
}

// ---- connections ----------------------------------------------------------------------------

struct Rados {
    rados_t handle = nullptr;
    Rados() = default;
    Rados(const Rados&) = delete;
    Rados& operator=(const Rados&) = delete;
    ~Rados() {
        if (handle != nullptr) rados_shutdown(handle);
    }
};

struct RbdCluster {
    RbdClusterOptions options;
    Rados rados;
};

struct RbdRegistry {
    // shared: a bdev keeps its cluster alive; unregister refuses while one does.
    std::map<std::string, std::shared_ptr<RbdCluster>> clusters;
    uint32_t created = 0;  // for SPDK's default names, Ceph0, Ceph1, ...
};

RbdRegistry& registry() {
    return runtime::current_host().get<RbdRegistry>();
}

// librbd's threads inherit the CPU affinity of the thread that starts them (rados_connect).
class AffinityScope {
public:
    explicit AffinityScope(const cpu_set_t* cpus) {
        if (cpus == nullptr) return;
        if (pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) != 0) return;
        active_ = pthread_setaffinity_np(pthread_self(), sizeof(*cpus), cpus) == 0;
    }
    ~AffinityScope() {
        if (active_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
    }
    AffinityScope(const AffinityScope&) = delete;
    AffinityScope& operator=(const AffinityScope&) = delete;

private:
    cpu_set_t saved_{};
    bool active_ = false;
};

Result<cpu_set_t> parse_core_mask(const std::string& mask) {
    std::string hex = mask;
    if (hex.rfind("0x", 0) == 0 || hex.rfind("0X", 0) == 0) hex = hex.substr(2);
    if (hex.empty() || hex.size() > 16 ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        return Error(Errc::invalid_argument,
                     fmt::format("core_mask {} is not a hexadecimal CPU mask such as 0x3", mask));
    const uint64_t bits = std::stoull(hex, nullptr, 16);
    cpu_set_t set;
    CPU_ZERO(&set);
    const long cpus = sysconf(_SC_NPROCESSORS_CONF);
    for (int i = 0; i < 64; ++i) {
        if ((bits >> i) & 1) {
            if (i >= cpus)
                return Error(
                    Errc::invalid_argument,
                    fmt::format("core_mask {} names CPU {}; this machine has {}", mask, i, cpus));
            CPU_SET(i, &set);
        }
    }
    if (CPU_COUNT(&set) == 0)
        return Error(Errc::invalid_argument, fmt::format("core_mask {} names no CPU", mask));
    return set;
}

struct ConnectOptions {
    std::string what;  // "cluster X" or "bdev Y": for messages
    std::string user_id;
    std::string config_file;
    bool read_config_file = true;
    const RbdConfig* params = nullptr;
    std::string key_file;
    const cpu_set_t* cpus = nullptr;
};

Result<void> connect(const ConnectOptions& o, Rados& out) {
    int rc = rados_create(&out.handle, o.user_id.empty() ? nullptr : o.user_id.c_str());
    if (rc < 0) {
        out.handle = nullptr;
        return rados_error(rc, fmt::format("{}: rados_create for user {}", o.what,
                                           o.user_id.empty() ? "admin" : o.user_id));
    }
    rc = rados_conf_set(out.handle, "client_mount_timeout", kDefaultMountTimeout);
    if (rc < 0) return rados_error(rc, o.what + ": setting client_mount_timeout");
    if (o.read_config_file) {
        rc = rados_conf_read_file(out.handle,
                                  o.config_file.empty() ? nullptr : o.config_file.c_str());
        if (rc < 0)
            return rados_error(rc,
                               fmt::format("{}: reading the Ceph config {}", o.what,
                                           o.config_file.empty()
                                               ? std::string("(CEPH_CONF or /etc/ceph/ceph.conf)")
                                               : o.config_file));
    }
    if (o.params != nullptr) {
        for (const auto& [key, value] : *o.params) {
            rc = rados_conf_set(out.handle, key.c_str(), value.c_str());
            if (rc < 0)
                return rados_error(rc, fmt::format("{}: Ceph option {} = {}", o.what, key, value));
        }
    }
    if (!o.key_file.empty()) {
        if (::access(o.key_file.c_str(), R_OK) != 0)
            return rados_error(errno, fmt::format("{}: key_file {}", o.what, o.key_file));
        rc = rados_conf_set(out.handle, "keyring", o.key_file.c_str());
        if (rc < 0) return rados_error(rc, fmt::format("{}: keyring {}", o.what, o.key_file));
    }
    AffinityScope affinity(o.cpus);
    rc = rados_connect(out.handle);
    if (rc < 0) {
        const std::string user = o.user_id.empty() ? "client.admin" : "client." + o.user_id;
        if (rc == -EACCES || rc == -EPERM)
            return rados_error(rc, fmt::format("{}: the cluster refused {} (wrong key or "
                                               "keyring?)",
                                               o.what, user));
        if (rc == -ETIMEDOUT)
            return rados_error(rc, fmt::format("{}: no monitor answered {} within "
                                               "client_mount_timeout (mon_host?)",
                                               o.what, user));
        if (rc == -ENOENT)
            return rados_error(rc, fmt::format("{}: connecting as {}: no keyring or monitor "
                                               "address found (config_file, key_file?)",
                                               o.what, user));
        return rados_error(rc, fmt::format("{}: connecting as {}", o.what, user));
    }
    return {};
}

const char* feature_name(uint64_t bit) {
    switch (bit) {
        case RBD_FEATURE_LAYERING:
            return "layering";
        case RBD_FEATURE_STRIPINGV2:
            return "striping";
        case RBD_FEATURE_EXCLUSIVE_LOCK:
            return "exclusive-lock";
        case RBD_FEATURE_OBJECT_MAP:
            return "object-map";
        case RBD_FEATURE_FAST_DIFF:
            return "fast-diff";
        case RBD_FEATURE_DEEP_FLATTEN:
            return "deep-flatten";
        case RBD_FEATURE_JOURNALING:
            return "journaling";
        case RBD_FEATURE_DATA_POOL:
            return "data-pool";
        case RBD_FEATURE_OPERATIONS:
            return "operations";
        case RBD_FEATURE_MIGRATING:
            return "migrating";
        case RBD_FEATURE_NON_PRIMARY:
            return "non-primary";
        default:
            return nullptr;
    }
}

nlohmann::json config_object(const RbdConfig& c) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& [k, v] : c) o[k] = v;
    return o;
}

nlohmann::json cluster_entry(const RbdCluster& c) {
    nlohmann::json e = {{"cluster_name", c.options.name}};
    if (!c.options.user_id.empty()) e["user_id"] = c.options.user_id;
    if (!c.options.config_param.empty()) e["config_param"] = config_object(c.options.config_param);
    if (!c.options.config_file.empty()) e["config_file"] = c.options.config_file;
    if (!c.options.key_file.empty()) e["key_file"] = c.options.key_file;
    if (!c.options.core_mask.empty()) e["core_mask"] = c.options.core_mask;
    return e;
}

// ---- the bdev -------------------------------------------------------------------------------

class RbdChannel;

struct IoCtx {
    rbd_completion_t completion;
    RbdChannel* channel;
    iovec iovs[kInlineIovs];
};
static_assert(sizeof(IoCtx) <= kModuleIoContextBytes);

class RbdBdev;

class RbdIoDevice final : public runtime::IoDevice {
public:
    RbdIoDevice(RbdBdev& b, const std::string& name) : IoDevice("bdev_rbd:" + name), bdev_(b) {}

protected:
    std::unique_ptr<runtime::IoChannel> create_channel(runtime::Thread& thread) override;

private:
    RbdBdev& bdev_;
};

class RbdChannel final : public runtime::IoChannel {
public:
    RbdChannel(RbdBdev& bdev, runtime::Thread& thread);
    ~RbdChannel() override;

    void submit(BdevIo& io) noexcept;

    // On a librbd thread: hands the finished I/O to the channel's Thread.
    static void on_complete(rbd_completion_t completion, void* arg);

private:
    static runtime::PollStatus poll(void* self);
    void start(BdevIo& io) noexcept;
    void finish(BdevIo& io) noexcept;

    RbdBdev& bdev_;
    const bool simulated_;
    uint32_t inflight_ = 0;
    MpscRing<BdevIo*> done_{kChannelDepth};
    IntrusiveList<BdevIo, QueuedTag> queued_;
    runtime::Poller* poller_ = nullptr;
};

class RbdBdev final : public Bdev {
public:
    struct Handles {
        std::shared_ptr<RbdCluster> cluster;  // a registered cluster, or null
        std::unique_ptr<Rados> own;           // a private connection, or null
        rados_ioctx_t ioctx = nullptr;
        rbd_image_t image = nullptr;
    };

    RbdBdev(Properties p, RbdOptions o, Handles h, runtime::Thread& owner)
        : Bdev(kRbdModule, std::move(p)),
          options_(std::move(o)),
          h_(std::move(h)),
          owner_(owner),
          dev_(*this, name()) {
        runtime::register_io_device(dev_);
    }

    // After register_bdev succeeded: the image watch and the resize poller refer to this bdev.
    void start_watch() {
        const int rc = rbd_update_watch(h_.image, &watch_, &RbdBdev::on_update, this);
        if (rc < 0)
            STRATA_WARNLOG(log_bdev_rbd,
                           "rbd bdev {}: no update watch on {}/{} ({}): resizes made elsewhere "
                           "are not seen",
                           options_.name, options_.pool_name, options_.rbd_name, reason(rc));
        else
            watching_ = true;
        resize_poller_ =
            owner_.register_poller(&RbdBdev::poll_resize, this, "bdev_rbd_resize", kResizePollNs);
    }

    ~RbdBdev() override {
        if (watching_) rbd_update_unwatch(h_.image, watch_);
        if (resize_poller_ != nullptr) owner_.unregister_poller(resize_poller_);
        if (h_.image != nullptr) rbd_close(h_.image);
        if (h_.ioctx != nullptr) rados_ioctx_destroy(h_.ioctx);
    }

    bool supports(IoType t) const noexcept override {
        switch (t) {
            case IoType::read:
            case IoType::flush:
                return true;
            case IoType::write:
            case IoType::unmap:
            case IoType::write_zeroes:
                return !options_.read_only;
            default:
                return false;  // compare and compare-and-write: emulated by the layer
        }
    }
    runtime::IoDevice& module_io_device() noexcept override { return dev_; }

    void submit(runtime::IoChannel& ch, BdevIo& io) noexcept override {
        static_cast<RbdChannel&>(ch).submit(io);
    }

    void destruct(std::function<void()> done) override {
        // No watch callback runs once rbd_update_unwatch returns.
        if (watching_) rbd_update_unwatch(h_.image, watch_);
        watching_ = false;
        if (resize_poller_ != nullptr) owner_.unregister_poller(resize_poller_);
        unregister_io_device_then(dev_, std::move(done));
    }

    void info_json(nlohmann::json& out) const override {
        nlohmann::json r = {{"pool_name", options_.pool_name}, {"rbd_name", options_.rbd_name}};
        if (h_.cluster != nullptr) {
            const nlohmann::json cluster = cluster_entry(*h_.cluster);  // outlives the loop
            for (const auto& [k, v] : cluster.items()) r[k] = v;
        } else {
            if (!options_.user_id.empty()) r["user_id"] = options_.user_id;
            if (options_.has_config) r["config"] = config_object(options_.config);
        }
        uint64_t size = 0;
        if (rbd_get_size(h_.image, &size) == 0) r["size_bytes"] = size;
        uint64_t features = 0;
        nlohmann::json names = nlohmann::json::array();
        if (rbd_get_features(h_.image, &features) == 0) {
            for (uint64_t bit = 1; bit != 0; bit <<= 1)
                if ((features & bit) != 0) {
                    const char* n = feature_name(bit);
                    names.push_back(n != nullptr ? std::string(n) : fmt::format("0x{:x}", bit));
                }
        }
        r["features"] = std::move(names);
        r["read_only"] = options_.read_only;
        out["rbd"] = std::move(r);
    }

    void config_json(nlohmann::json& out) const override {
        nlohmann::json params = {{"name", name()},
                                 {"pool_name", options_.pool_name},
                                 {"rbd_name", options_.rbd_name},
                                 {"block_size", block_size()}};
        if (!options_.user_id.empty()) params["user_id"] = options_.user_id;
        if (options_.has_config) params["config"] = config_object(options_.config);
        if (!options_.cluster_name.empty()) params["cluster_name"] = options_.cluster_name;
        if (options_.read_only) params["read_only"] = true;
        params["uuid"] = uuid();
        out = {{"method", "bdev_rbd_create"}, {"params", std::move(params)}};
    }

    rbd_image_t image() const noexcept { return h_.image; }
    const RbdOptions& options() const noexcept { return options_; }

    // Re-reads the image's size and publishes a change. Control path, on the owner Thread.
    Result<void> refresh_size() {
        uint64_t size = 0;
        const int rc = rbd_get_size(h_.image, &size);
        if (rc < 0)
            return rados_error(rc, fmt::format("rbd bdev {}: reading the image size", name()));
        const uint64_t blocks = size / block_size();
        if (blocks != num_blocks()) {
            STRATA_NOTICELOG(log_bdev_rbd, "rbd bdev {}: {}/{} resized: {} -> {} blocks", name(),
                             options_.pool_name, options_.rbd_name, num_blocks(), blocks);
            notify_resize(blocks);
        }
        return {};
    }

private:
    // On a librbd thread.
    static void on_update(void* arg) {
        static_cast<RbdBdev*>(arg)->resize_seen_.store(true, std::memory_order_release);
    }
    static runtime::PollStatus poll_resize(void* self) {
        auto* b = static_cast<RbdBdev*>(self);
        if (!b->resize_seen_.exchange(false, std::memory_order_acq_rel))
            return runtime::PollStatus::idle;
        if (auto r = b->refresh_size(); !r) STRATA_WARNLOG(log_bdev_rbd, "{}", r.error().message());
        return runtime::PollStatus::busy;
    }

    RbdOptions options_;
    Handles h_;
    runtime::Thread& owner_;
    RbdIoDevice dev_;
    uint64_t watch_ = 0;
    bool watching_ = false;
    std::atomic<bool> resize_seen_{false};
    runtime::Poller* resize_poller_ = nullptr;
};

std::unique_ptr<runtime::IoChannel> RbdIoDevice::create_channel(runtime::Thread& thread) {
    return std::make_unique<RbdChannel>(bdev_, thread);
}

RbdChannel::RbdChannel(RbdBdev& bdev, runtime::Thread& thread)
    : bdev_(bdev), simulated_(thread.scheduler().simulated()) {
    poller_ = thread.register_poller(&RbdChannel::poll, this, "bdev_rbd");
}

RbdChannel::~RbdChannel() {
    thread().unregister_poller(poller_);
    // The layer puts its channel only when its I/O is done; if some is not, librbd still owns
    // the buffers and will call back into this channel: wait for it.
    if (inflight_ != 0 || !queued_.empty())
        STRATA_ERRLOG(log_bdev_rbd,
                      "rbd bdev {}: channel destroyed with {} I/O in flight, {} queued",
                      bdev_.name(), inflight_, queued_.size());
    while (queued_.pop_front() != nullptr) {
    }
    BdevIo* io = nullptr;
    while (inflight_ != 0) {
        if (done_.pop(io)) {
            rbd_aio_release(io->module_ctx<IoCtx>()->completion);
            --inflight_;
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
}

void RbdChannel::on_complete(rbd_completion_t, void* arg) {
    auto* io = static_cast<BdevIo*>(arg);
    // Never full: at most kChannelDepth I/O are in flight per channel.
    const bool pushed = io->module_ctx<IoCtx>()->channel->done_.push(io);
    STRATA_ASSERT_MSG(pushed, "rbd completion ring full");
}

void RbdChannel::submit(BdevIo& io) noexcept {
    if (inflight_ >= kChannelDepth || !queued_.empty()) {
        queued_.push_back(io);
        return;
    }
    start(io);
}

void RbdChannel::start(BdevIo& io) noexcept {
    IoCtx& x = *io.module_ctx<IoCtx>();
    x.channel = this;
    const rbd_image_t image = bdev_.image();
    const uint64_t offset = io.offset_blocks() * bdev_.block_size();
    const uint64_t len = io.length_bytes();
    const iovec* iov = nullptr;
    int iovcnt = 0;
    if ((io.type() == IoType::read || io.type() == IoType::write) &&
        !exact_iovs(io.iovs(), len, x.iovs, iov, iovcnt)) {
        io.complete(Errc::invalid_argument);  // > kInlineIovs iovecs longer than the I/O
        return;
    }
    if (io.type() != IoType::read && io.type() != IoType::flush && bdev_.options().read_only) {
        io.complete(Errc::permission_denied);
        return;
    }
    int rc = rbd_aio_create_completion(&io, &RbdChannel::on_complete, &x.completion);
    if (rc < 0) {
        io.complete(errc_from_errno(-rc));
        return;
    }
    ++inflight_;
    switch (io.type()) {
        case IoType::read:
            rc = iovcnt == 1 ? rbd_aio_read(image, offset, iov->iov_len,
                                            static_cast<char*>(iov->iov_base), x.completion)
                             : rbd_aio_readv(image, iov, iovcnt, offset, x.completion);
            break;
        case IoType::write:
            rc = iovcnt == 1 ? rbd_aio_write(image, offset, iov->iov_len,
                                             static_cast<const char*>(iov->iov_base), x.completion)
                             : rbd_aio_writev(image, iov, iovcnt, offset, x.completion);
            break;
        case IoType::flush:
            rc = rbd_aio_flush(image, x.completion);
            break;
        case IoType::unmap:
            rc = rbd_aio_discard(image, offset, len, x.completion);
            break;
        case IoType::write_zeroes:
            rc = rbd_aio_write_zeroes(image, offset, len, x.completion, 0, 0);
            break;
        default:
            rc = -ENOTSUP;
            break;
    }
    if (rc < 0) {  // not queued: no callback will come
        --inflight_;
        rbd_aio_release(x.completion);
        io.complete(rc == -ENOTSUP ? Errc::not_supported : errc_from_errno(-rc));
    }
}

void RbdChannel::finish(BdevIo& io) noexcept {
    IoCtx& x = *io.module_ctx<IoCtx>();
    const ssize_t ret = rbd_aio_get_return_value(x.completion);
    rbd_aio_release(x.completion);
    --inflight_;
    if (ret < 0) {
        io.complete(errc_from_errno(static_cast<int>(-ret)));
        return;
    }
    // A read returns the bytes read; short means the image ended inside the range (it shrank).
    if (io.type() == IoType::read && static_cast<uint64_t>(ret) != io.length_bytes()) {
        io.complete(Errc::io_error);
        return;
    }
    io.complete(Errc::ok);
}

runtime::PollStatus RbdChannel::poll(void* self) {
    auto* c = static_cast<RbdChannel*>(self);
    uint32_t work = 0;
    BdevIo* io = nullptr;
    while (c->done_.pop(io)) {
        c->finish(*io);
        ++work;
    }
    while (c->inflight_ < kChannelDepth) {
        BdevIo* next = c->queued_.pop_front();
        if (next == nullptr) break;
        c->start(*next);
        ++work;
    }
    // Under the simulator librbd completes in wall-clock time: stay runnable while any is due,
    // or the simulator would take the world for idle.
    const bool waiting = c->simulated_ && c->inflight_ != 0;
    return work != 0 || waiting ? runtime::PollStatus::busy : runtime::PollStatus::idle;
}

RbdBdev* find_rbd(const std::string& name) {
    Bdev* b = find(name);
    if (b == nullptr || &b->module() != &kRbdModule) return nullptr;
    return static_cast<RbdBdev*>(b);
}

void write_clusters_config(nlohmann::json& methods) {
    auto* reg = runtime::current_host().find<RbdRegistry>();
    if (reg == nullptr) return;
    for (const auto& [name, c] : reg->clusters) {
        nlohmann::json params = cluster_entry(*c);
        params["name"] = params["cluster_name"];
        params.erase("cluster_name");
        methods.push_back({{"method", "bdev_rbd_register_cluster"}, {"params", std::move(params)}});
    }
}

void fini_clusters(std::function<void()> done) {
    if (auto* reg = runtime::current_host().find<RbdRegistry>()) reg->clusters.clear();
    done();
}

}  // namespace

Result<void> rbd_register_cluster(const RbdClusterOptions& o) {
    if (o.name.empty()) return Error(Errc::invalid_argument, "an rbd cluster needs a name");
    auto& reg = registry();
    if (reg.clusters.count(o.name) != 0)
        return Error(Errc::already_exists, fmt::format("rbd cluster {} already exists", o.name));
    cpu_set_t cpus;
    if (!o.core_mask.empty()) {
        auto set = parse_core_mask(o.core_mask);
        if (!set) return set.error();
        cpus = *set;
    }
    auto c = std::make_shared<RbdCluster>();
    c->options = o;
    // SPDK: the config file (given, or librados' search when no config_param either) is read
    // first, then config_param and key_file override it.
    ConnectOptions co{fmt::format("rbd cluster {}", o.name),
                      o.user_id,
                      o.config_file,
                      !o.config_file.empty() || o.config_param.empty(),
                      &o.config_param,
                      o.key_file,
                      o.core_mask.empty() ? nullptr : &cpus};
    if (auto r = connect(co, c->rados); !r) return r.error();
    STRATA_NOTICELOG(log_bdev_rbd, "rbd cluster {} connected as client.{}", o.name,
                     o.user_id.empty() ? "admin" : o.user_id);
    reg.clusters.emplace(o.name, std::move(c));
    return {};
}

Result<void> rbd_unregister_cluster(const std::string& name) {
    auto& reg = registry();
    auto it = reg.clusters.find(name);
    if (it == reg.clusters.end())
        return Error(Errc::not_found, fmt::format("rbd cluster {} not found", name));
    if (it->second.use_count() > 1)
        return Error(Errc::busy,
                     fmt::format("rbd cluster {} is used by {} bdev(s); delete them first", name,
                                 it->second.use_count() - 1));
    reg.clusters.erase(it);
    return {};
}

Result<nlohmann::json> rbd_clusters_info(const std::string& name) {
    auto& reg = registry();
    if (!name.empty()) {
        auto it = reg.clusters.find(name);
        if (it == reg.clusters.end())
            return Error(Errc::not_found, fmt::format("rbd cluster {} not found", name));
        return cluster_entry(*it->second);
    }
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [n, c] : reg.clusters) all.push_back(cluster_entry(*c));
    return all;
}

Result<Bdev*> rbd_create(const RbdOptions& in) {
    RbdOptions o = in;
    auto& reg = registry();
    if (o.pool_name.empty() || o.rbd_name.empty())
        return Error(Errc::invalid_argument, "an rbd bdev needs pool_name and rbd_name");
    if (o.block_size < 512 || o.block_size > 65536 || (o.block_size & (o.block_size - 1)) != 0)
        return Error(
            Errc::invalid_argument,
            fmt::format("block_size {} is not a power of two in 512..65536", o.block_size));
    if (o.name.empty()) o.name = fmt::format("Ceph{}", reg.created);
    if (find(o.name) != nullptr)
        return Error(Errc::already_exists, fmt::format("bdev {} already exists", o.name));
    const std::string what = fmt::format("rbd bdev {} ({}/{})", o.name, o.pool_name, o.rbd_name);

    RbdBdev::Handles h;
    rados_t rados = nullptr;
    if (!o.cluster_name.empty()) {
        auto it = reg.clusters.find(o.cluster_name);
        if (it == reg.clusters.end())
            return Error(Errc::not_found,
                         fmt::format("{}: rbd cluster {} not found (bdev_rbd_register_cluster "
                                     "first)",
                                     what, o.cluster_name));
        h.cluster = it->second;
        rados = h.cluster->rados.handle;
    } else {
        // A private connection: SPDK reads the default config file only without a config map.
        h.own = std::make_unique<Rados>();
        ConnectOptions co{what, o.user_id, "", !o.has_config, &o.config, "", nullptr};
        if (auto r = connect(co, *h.own); !r) return r.error();
        rados = h.own->handle;
    }
    int rc = rados_ioctx_create(rados, o.pool_name.c_str(), &h.ioctx);
    if (rc < 0) {
        h.ioctx = nullptr;
        if (rc == -ENOENT)
            return rados_error(rc, fmt::format("{}: pool {} does not exist", what, o.pool_name));
        return rados_error(rc, fmt::format("{}: opening pool {}", what, o.pool_name));
    }
    rc = o.read_only ? rbd_open_read_only(h.ioctx, o.rbd_name.c_str(), &h.image, nullptr)
                     : rbd_open(h.ioctx, o.rbd_name.c_str(), &h.image, nullptr);
    auto close_handles = [&] {
        if (h.image != nullptr) rbd_close(h.image);
        rados_ioctx_destroy(h.ioctx);
    };
    if (rc < 0) {
        h.image = nullptr;
        close_handles();
        if (rc == -ENOENT)
            return rados_error(
                rc, fmt::format("{}: no image {} in pool {}", what, o.rbd_name, o.pool_name));
        if (rc == -EPERM || rc == -EACCES)
            return rados_error(
                rc, fmt::format("{}: the user may not open image {} (caps?)", what, o.rbd_name));
        return rados_error(rc, fmt::format("{}: opening image {}", what, o.rbd_name));
    }
    uint64_t size = 0;
    rc = rbd_get_size(h.image, &size);
    if (rc < 0) {
        close_handles();
        return rados_error(rc, what + ": reading the image size");
    }
    if (size < o.block_size) {
        close_handles();
        return Error(Errc::invalid_argument,
                     fmt::format("{}: the image has {} bytes, less than one {}-byte block", what,
                                 size, o.block_size));
    }
    Bdev::Properties p;
    p.name = o.name;
    p.product_name = "Ceph Rbd Disk";
    p.uuid = o.uuid;
    p.block_size = o.block_size;
    p.num_blocks = size / o.block_size;
    // librbd's cache is write-back until the first flush (rbd_cache_writethrough_until_flush):
    // the layer must pass flushes down.
    p.write_cache = true;
    runtime::Thread* owner = runtime::current_thread();
    if (owner == nullptr) {
        close_handles();
        return Error(Errc::internal, what + ": rbd_create must run on a Thread");
    }
    auto bdev = register_bdev(std::make_unique<RbdBdev>(std::move(p), o, std::move(h), *owner));
    if (!bdev) return bdev.error();  // the RbdBdev's destructor closed the image
    static_cast<RbdBdev*>(*bdev)->start_watch();
    ++reg.created;
    STRATA_NOTICELOG(log_bdev_rbd, "{}: {} blocks of {} bytes{}", what, (*bdev)->num_blocks(),
                     o.block_size, o.read_only ? ", read-only" : "");
    return bdev;
}

void rbd_delete(const std::string& name, std::function<void(Result<void>)> done) {
    if (find_rbd(name) == nullptr) {
        done(Error(Errc::not_found, fmt::format("rbd bdev {} not found", name)));
        return;
    }
    unregister_bdev(name, std::move(done));
}

Result<void> rbd_resize(const std::string& name, uint64_t new_size_mib) {
    RbdBdev* b = find_rbd(name);
    if (b == nullptr) return Error(Errc::not_found, fmt::format("rbd bdev {} not found", name));
    if (b->options().read_only)
        return Error(Errc::permission_denied, fmt::format("rbd bdev {} is read-only", name));
    uint64_t size = 0;
    int rc = rbd_get_size(b->image(), &size);
    if (rc < 0) return rados_error(rc, fmt::format("rbd bdev {}: reading the image size", name));
    if (new_size_mib > (UINT64_MAX >> 20))
        return Error(Errc::invalid_argument,
                     fmt::format("new_size {} MiB is out of range", new_size_mib));
    const uint64_t bytes = new_size_mib << 20;
    if (bytes < size)
        return Error(Errc::invalid_argument,
                     fmt::format("rbd bdev {}: new_size {} MiB is smaller than the image ({} "
                                 "bytes); images only grow",
                                 name, new_size_mib, size));
    if (bytes != size) {
        rc = ::rbd_resize(b->image(), bytes);
        if (rc < 0) return rados_error(rc, fmt::format("rbd bdev {}: rbd_resize", name));
    }
    return b->refresh_size();
}

}  // namespace strata::bdev
