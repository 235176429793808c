// SPDK's vhost RPCs (names, parameters and result shapes of lib/vhost/vhost_rpc.c and
// python/spdk/rpc/vhost.py) over the App's controllers, and the "vhost_blk" subsystem.
//
// State: a Host slot (VhostTarget) mapping names to controllers. Each controller lives on its
// own Thread (placed on the reactor of the first core of `cpumask`); RPC handlers run on the
// app Thread and reach a controller by message. The slot keeps a snapshot of what the RPCs
// report (socket, cpumask, bdev, coalescing), guarded by a mutex (control path only).
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/rpc/app.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/vhost/blk.h>
#include <strata/vhost/controller.h>
#include <strata/vhost/scsi.h>
#include <strata/vhost/vhost.h>

namespace strata::vhost {

namespace {

using rpc::Json;
using rpc::Responder;
using PT = rpc::ParamType;

struct Entry {
    std::string name;
    std::string socket;
    std::string cpumask;
    std::string bdev;
    bool readonly = false;
    bool packed_ring = false;
    bool scsi = false;
    bool started =
        false;  // pollers registered (vhost-scsi: delay until vhost_start_scsi_controller)
    std::vector<ScsiTargetInfo> targets;  // vhost-scsi: the snapshot reported
    CoalescingOptions coalescing;
    runtime::Thread* thread = nullptr;
    std::unique_ptr<Controller> ctrlr;  // touched on `thread` only
};

struct VhostTarget {
    std::mutex mu;
    std::string socket_dir;
    std::map<std::string, std::shared_ptr<Entry>> ctrlrs;  // app Thread
};

VhostTarget& target(runtime::Host& h) {
    return h.get<VhostTarget>();
}

void add(rpc::App& app, std::string name, std::string description,
         std::vector<rpc::ParamSpec> params, rpc::Handler handler,
         const char* subsystem = "vhost_blk") {
    rpc::MethodSpec spec;
    spec.name = std::move(name);
    spec.description = std::move(description);
    spec.params = std::move(params);
    spec.allowed = rpc::Allowed::runtime;
    spec.subsystem = subsystem;
    spec.handler = std::move(handler);
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "vhost RPC registration failed: %s", r.error().message().c_str());
}

void invalid(Responder& r, const std::string& msg) {
    r.error(rpc::error_code::invalid_params, msg);
}

Json controller_json(const Entry& e) {
    if (e.scsi) {
        Json targets = Json::array();
        for (const auto& t : e.targets)
            targets.push_back({{"scsi_dev_num", t.num},
                               {"id", t.num},
                               {"target_name", fmt::format("Target {}", t.num)},
                               {"luns", Json::array({{{"id", 0}, {"bdev_name", t.bdev_name}}})}});
        return {{"ctrlr", e.name},
                {"cpumask", e.cpumask},
                {"delay_base_us", e.coalescing.delay_base_us},
                {"iops_threshold", e.coalescing.iops_threshold},
                {"socket", e.socket},
                {"sessions", Json::array()},
                {"backend_specific", {{"scsi", std::move(targets)}}}};
    }
    return {{"ctrlr", e.name},
            {"cpumask", e.cpumask},
            {"delay_base_us", e.coalescing.delay_base_us},
            {"iops_threshold", e.coalescing.iops_threshold},
            {"socket", e.socket},
            {"sessions", Json::array()},
            {"backend_specific",
             {{"block",
               {{"readonly", e.readonly},
                {"bdev", e.bdev.empty() ? Json(nullptr) : Json(e.bdev)},
                {"transport", "vhost_user_blk"}}}}}};
}

void write_coalescing(const Entry& e, Json& cfg) {
    if (e.coalescing.delay_base_us != 0)
        cfg.push_back({{"method", "vhost_controller_set_coalescing"},
                       {"params",
                        {{"ctrlr", e.name},
                         {"delay_base_us", e.coalescing.delay_base_us},
                         {"iops_threshold", e.coalescing.iops_threshold}}}});
}

// SPDK's vhost_scsi_write_config_json order: create (delayed), each target, start, coalescing.
void write_scsi_config(rpc::App& app, Json& cfg) {
    auto& t = target(app.host());
    std::lock_guard lk(t.mu);
    for (const auto& [name, e] : t.ctrlrs) {
        if (!e->scsi) continue;
        cfg.push_back({{"method", "vhost_create_scsi_controller"},
                       {"params", {{"ctrlr", e->name}, {"cpumask", e->cpumask}, {"delay", true}}}});
        for (const auto& tg : e->targets)
            cfg.push_back(
                {{"method", "vhost_scsi_controller_add_target"},
                 {"params",
                  {{"ctrlr", e->name}, {"scsi_target_num", tg.num}, {"bdev_name", tg.bdev_name}}}});
        cfg.push_back(
            {{"method", "vhost_start_scsi_controller"}, {"params", {{"ctrlr", e->name}}}});
        write_coalescing(*e, cfg);
    }
}

void write_config(rpc::App& app, Json& cfg) {
    auto& t = target(app.host());
    std::lock_guard lk(t.mu);
    for (const auto& [name, e] : t.ctrlrs) {
        if (e->scsi || e->bdev.empty()) continue;  // SPDK too leaves out a blk without its bdev
        Json params = {{"ctrlr", e->name},
                       {"dev_name", e->bdev},
                       {"cpumask", e->cpumask},
                       {"readonly", e->readonly},
                       {"transport", "vhost_user_blk"}};
        // SPDK's save_config drops packed_ring; written when set so the config restores it.
        if (e->packed_ring) params["packed_ring"] = true;
        cfg.push_back({{"method", "vhost_create_blk_controller"}, {"params", params}});
        write_coalescing(*e, cfg);
    }
}

// Destroys a controller on its Thread, ends the Thread, then done() on the app Thread.
void destroy(rpc::App& app, std::shared_ptr<Entry> e, std::function<void()> done) {
    runtime::Thread* th = e->thread;
    auto st = th->post([&app, e, th, done = std::move(done)]() mutable {
        auto end = [&app, e, th, done = std::move(done)]() mutable {
            e->ctrlr.reset();
            th->request_exit();
            (void)app.thread().post(std::move(done));
        };
        if (e->scsi && e->ctrlr) return scsi_remove_all(e->ctrlr->device(), std::move(end));
        end();
    });
    STRATA_ASSERT_MSG(st.ok(), "vhost: controller thread gone");
}

// Destroys the controllers of one kind (each subsystem its own: vhost_scsi's go before scsi).
void fini_kind(rpc::App& app, bool scsi, std::function<void()> done) {
    auto& t = target(app.host());
    std::vector<std::shared_ptr<Entry>> all;
    {
        std::lock_guard lk(t.mu);
        for (auto it = t.ctrlrs.begin(); it != t.ctrlrs.end();) {
            if (it->second->scsi == scsi) {
                all.push_back(it->second);
                it = t.ctrlrs.erase(it);
            } else {
                ++it;
            }
        }
    }
    if (all.empty()) return done();
    auto left = std::make_shared<size_t>(all.size());
    auto fin = std::make_shared<std::function<void()>>(std::move(done));
    for (auto& e : all)
        destroy(app, e, [left, fin] {
            if (--*left == 0) (*fin)();
        });
}
void fini(rpc::App& app, std::function<void()> done) {
    fini_kind(app, false, std::move(done));
}
void fini_scsi(rpc::App& app, std::function<void()> done) {
    fini_kind(app, true, std::move(done));
}

Result<int> reactor_of(rpc::App& app, const std::string& cpumask) {
    if (cpumask.empty()) return app.thread().reactor();
    auto cores = runtime::parse_core_mask(cpumask);
    if (!cores.ok()) return cores.error();
    const auto rs = app.scheduler().reactors();
    for (int c : *cores)
        for (const auto& ri : rs)
            if (ri.core == c || (ri.core < 0 && uint32_t(c) == ri.index)) return int(ri.index);
    return Error(Errc::invalid_argument,
                 fmt::format("cpumask '{}' selects no core of a reactor", cpumask));
}

// Reserves the name, creates the controller's Thread and, on it, the Device (make()) and the
// Controller (listening; polled once started); answers r.
void create(rpc::App& app, std::shared_ptr<Entry> e, Responder r, bool start,
            std::function<Result<std::unique_ptr<Device>>()> make) {
    auto& t = target(app.host());
    auto reactor = reactor_of(app, e->cpumask);
    if (!reactor.ok()) return invalid(r, reactor.error().message());
    if (e->cpumask.empty()) {
        const auto rs = app.scheduler().reactors();
        const int core = rs.at(size_t(*reactor)).core;
        e->cpumask = fmt::format("0x{:x}", 1ull << (core < 0 ? *reactor : core));
    }
    {
        std::lock_guard lk(t.mu);
        if (t.ctrlrs.count(e->name))
            return invalid(r, fmt::format("controller '{}' already exists", e->name));
        e->socket = t.socket_dir.empty() ? e->name : t.socket_dir + "/" + e->name;
        t.ctrlrs[e->name] = e;  // reserved; removed again on failure
    }
    e->thread = app.scheduler().create_thread("vhost." + e->name, *reactor, &app.host());
    auto st = e->thread->post([&app, e, start, make = std::move(make), r = std::move(r)]() mutable {
        auto dev = make();
        Result<std::unique_ptr<Controller>> c =
            dev.ok() ? Controller::create(e->name, e->socket, std::move(*dev))
                     : Result<std::unique_ptr<Controller>>(dev.error());
        if (!c.ok()) {
            const std::string msg = c.error().message();
            e->thread->request_exit();
            (void)app.thread().post([&app, e, msg, r = std::move(r)]() mutable {
                auto& t = target(app.host());
                {
                    std::lock_guard lk(t.mu);
                    t.ctrlrs.erase(e->name);
                }
                invalid(r, msg);
            });
            return;
        }
        e->ctrlr = std::move(*c);
        if (start) {
            e->ctrlr->start();
            e->started = true;
        }
        r.result(true);
    });
    STRATA_ASSERT(st.ok());
}

// Runs fn(controller) on the controller's Thread; "does not exist" when there is none.
void on_ctrlr(rpc::App& app, const std::string& name, Responder r,
              std::function<void(Entry&, Responder)> fn) {
    auto& t = target(app.host());
    std::shared_ptr<Entry> e;
    {
        std::lock_guard lk(t.mu);
        auto it = t.ctrlrs.find(name);
        if (it == t.ctrlrs.end())
            return invalid(r, fmt::format("controller '{}' does not exist", name));
        e = it->second;
    }
    auto st = e->thread->post([e, fn = std::move(fn), r = std::move(r)]() mutable {
        if (!e->ctrlr) return invalid(r, fmt::format("controller '{}' is not ready", e->name));
        fn(*e, std::move(r));
    });
    STRATA_ASSERT(st.ok());
}

// Refreshes a vhost-scsi entry's target snapshot (on its Thread).
void snapshot_targets(rpc::App& app, Entry& e) {
    auto ts = scsi_targets(e.ctrlr->device());
    std::lock_guard lk(target(app.host()).mu);
    e.targets = std::move(ts);
}

}  // namespace

void set_socket_dir(runtime::Host& host, std::string dir) {
    auto& t = target(host);
    std::lock_guard lk(t.mu);
    t.socket_dir = std::move(dir);
}
std::string socket_dir(runtime::Host& host) {
    auto& t = target(host);
    std::lock_guard lk(t.mu);
    return t.socket_dir;
}

void register_rpc_module(rpc::App& app) {
    (void)app.add_subsystem(rpc::Subsystem{"vhost_blk", {"bdev"}, {}, &fini, &write_config});

    add(app, "vhost_create_blk_controller",
        "Create a vhost-user block controller: a socket <socket dir>/<ctrlr> serving a bdev.",
        {{"ctrlr", PT::string, true, "Controller name (the socket's file name)", nullptr},
         {"dev_name", PT::string, true, "Name of the bdev to serve", nullptr},
         {"cpumask", PT::string, false, "Core mask: the controller runs on its first core",
          nullptr},
         {"readonly", PT::bool_, false, "Read-only device (VIRTIO_BLK_F_RO)", false},
         {"packed_ring", PT::bool_, false,
          "Offer packed virtqueues (VIRTIO_F_RING_PACKED); the driver chooses", false},
         {"transport", PT::string, false, "Transport: vhost_user_blk", "vhost_user_blk"}},
        [&app](const Json& p, Responder r) {
            const std::string name = p.at("ctrlr").get<std::string>();
            if (name.empty() || name.find('/') != std::string::npos)
                return invalid(r, fmt::format("invalid controller name '{}'", name));
            const auto transport = rpc::param_or<std::string>(p, "transport", "vhost_user_blk");
            if (transport != "vhost_user_blk")
                return invalid(r, fmt::format("Transport type '{}' unavailable.", transport));
            auto e = std::make_shared<Entry>();
            e->name = name;
            e->bdev = p.at("dev_name").get<std::string>();
            e->readonly = rpc::param_or<bool>(p, "readonly", false);
            e->packed_ring = rpc::param_or<bool>(p, "packed_ring", false);
            e->cpumask = rpc::param_or<std::string>(p, "cpumask", "");
            create(app, e, std::move(r), true, [&app, e] {
                BlkOptions o;
                o.bdev_name = e->bdev;
                o.readonly = e->readonly;
                o.packed_ring = e->packed_ring;
                // The bdev was hot-removed: reported as null (as SPDK), left out of save_config.
                o.on_removed = [&app, ep = e.get()] {
                    auto& tg = target(app.host());
                    std::lock_guard lk(tg.mu);
                    ep->bdev.clear();
                };
                return create_blk_device(o);
            });
        });

    add(app, "vhost_get_controllers", "List the vhost controllers (or the one named).",
        {{"name", PT::string, false, "Controller name", nullptr}},
        [&app](const Json& p, Responder r) {
            auto& t = target(app.host());
            std::lock_guard lk(t.mu);
            Json out = Json::array();
            if (p.contains("name")) {
                auto it = t.ctrlrs.find(p["name"].get<std::string>());
                if (it == t.ctrlrs.end())
                    return invalid(r, fmt::format("controller '{}' does not exist",
                                                  p["name"].get<std::string>()));
                out.push_back(controller_json(*it->second));
            } else {
                for (const auto& [n, e] : t.ctrlrs) out.push_back(controller_json(*e));
            }
            r.result(std::move(out));
        });

    add(app, "vhost_delete_controller",
        "Delete a vhost controller (its socket is removed); refused while a front end is "
        "connected.",
        {{"ctrlr", PT::string, true, "Controller name", nullptr}},
        [&app](const Json& p, Responder r) {
            auto& t = target(app.host());
            const std::string name = p.at("ctrlr").get<std::string>();
            std::shared_ptr<Entry> e;
            {
                std::lock_guard lk(t.mu);
                auto it = t.ctrlrs.find(name);
                if (it == t.ctrlrs.end())
                    return invalid(r, fmt::format("controller '{}' does not exist", name));
                e = it->second;
            }
            auto st = e->thread->post([&app, e, r = std::move(r)]() mutable {
                if (!e->ctrlr || e->ctrlr->connected() || e->ctrlr->draining())
                    return r.error(rpc::error_code::invalid_params,
                                   fmt::format("controller '{}' has an active session", e->name));
                if (e->scsi && !scsi_targets(e->ctrlr->device()).empty())
                    return r.error(
                        rpc::error_code::invalid_params,
                        fmt::format("Trying to remove non-empty controller: {}.", e->name));
                e->ctrlr.reset();
                e->thread->request_exit();
                (void)app.thread().post([&app, e, r = std::move(r)]() mutable {
                    auto& t = target(app.host());
                    {
                        std::lock_guard lk(t.mu);
                        t.ctrlrs.erase(e->name);
                    }
                    r.result(true);
                });
            });
            STRATA_ASSERT(st.ok());
        });

    add(app, "vhost_controller_set_coalescing",
        "Set a controller's interrupt coalescing: while a queue completes more than "
        "iops_threshold requests per second, interrupts are delayed by up to delay_base_us "
        "(0: no coalescing).",
        {{"ctrlr", PT::string, true, "Controller name", nullptr},
         {"delay_base_us", PT::uint, true, "Interrupt delay in microseconds (0 disables)", nullptr},
         {"iops_threshold", PT::uint, true, "IOPS above which interrupts are coalesced", nullptr}},
        [&app](const Json& p, Responder r) {
            auto& t = target(app.host());
            const std::string name = p.at("ctrlr").get<std::string>();
            CoalescingOptions o;
            const uint64_t delay = p.at("delay_base_us").get<uint64_t>();
            const uint64_t iops = p.at("iops_threshold").get<uint64_t>();
            if (delay > UINT32_MAX || iops > UINT32_MAX)
                return invalid(r, "delay_base_us and iops_threshold are 32-bit values");
            o.delay_base_us = uint32_t(delay);
            o.iops_threshold = uint32_t(iops);
            std::shared_ptr<Entry> e;
            {
                std::lock_guard lk(t.mu);
                auto it = t.ctrlrs.find(name);
                if (it == t.ctrlrs.end())
                    return invalid(r, fmt::format("controller '{}' does not exist", name));
                e = it->second;
                e->coalescing = o;
            }
            auto st = e->thread->post([e, o, r = std::move(r)]() mutable {
                if (e->ctrlr) e->ctrlr->set_coalescing(o);
                r.result(true);
            });
            STRATA_ASSERT(st.ok());
        });
    (void)app.add_subsystem(
        rpc::Subsystem{"vhost_scsi", {"scsi"}, {}, &fini_scsi, &write_scsi_config});

    add(
        app, "vhost_create_scsi_controller",
        "Create a vhost-user SCSI controller: a socket <socket dir>/<ctrlr> with targets 0-7 "
        "(vhost_scsi_controller_add_target).",
        {{"ctrlr", PT::string, true, "Controller name (the socket's file name)", nullptr},
         {"cpumask", PT::string, false, "Core mask: the controller runs on its first core",
          nullptr},
         {"delay", PT::bool_, false, "Do not start polling until vhost_start_scsi_controller",
          false}},
        [&app](const Json& p, Responder r) {
            const std::string name = p.at("ctrlr").get<std::string>();
            if (name.empty() || name.find('/') != std::string::npos)
                return invalid(r, fmt::format("invalid controller name '{}'", name));
            auto e = std::make_shared<Entry>();
            e->name = name;
            e->scsi = true;
            e->cpumask = rpc::param_or<std::string>(p, "cpumask", "");
            create(
                app, e, std::move(r), !rpc::param_or<bool>(p, "delay", false),
                [&app, name, ep = e.get()]() -> Result<std::unique_ptr<Device>> {
                    auto d = create_scsi_device(name);
                    // A target whose bdev was hot-removed is gone: report it so.
                    scsi_on_target_removed(*d, [&app, ep] {
                        if (ep->ctrlr) snapshot_targets(app, *ep);
                    });
                    return d;
                });
        },
        "vhost_scsi");

    add(
        app, "vhost_start_scsi_controller",
        "Start a vhost-user SCSI controller created with delay=true.",
        {{"ctrlr", PT::string, true, "Controller name", nullptr}},
        [&app](const Json& p, Responder r) {
            on_ctrlr(app, p.at("ctrlr").get<std::string>(), std::move(r),
                     [](Entry& e, Responder r) {
                         if (!e.scsi) return invalid(r, "not a SCSI controller");
                         if (!e.started) {
                             e.ctrlr->start();
                             e.started = true;
                         }
                         r.result(true);
                     });
        },
        "vhost_scsi");

    add(
        app, "vhost_scsi_controller_add_target",
        "Add SCSI target scsi_target_num (0-7; -1: the first free one) with LUN 0 over a bdev; "
        "returns the target number.",
        {{"ctrlr", PT::string, true, "Controller name", nullptr},
         {"scsi_target_num", PT::int_, true, "Target number (0-7, -1: first free)", nullptr},
         {"bdev_name", PT::string, true, "Name of the bdev for LUN 0", nullptr}},
        [&app](const Json& p, Responder r) {
            const int64_t num = p.at("scsi_target_num").get<int64_t>();
            if (num < -1 || num >= int64_t(kScsiMaxTargets))
                return invalid(r, fmt::format("scsi_target_num {} (0 to {}, or -1)", num,
                                              kScsiMaxTargets - 1));
            const std::string bdev = p.at("bdev_name").get<std::string>();
            on_ctrlr(app, p.at("ctrlr").get<std::string>(), std::move(r),
                     [&app, num, bdev](Entry& e, Responder r) {
                         if (!e.scsi) return invalid(r, "not a SCSI controller");
                         auto n = scsi_add_target(e.ctrlr->device(), int32_t(num), bdev);
                         if (!n.ok()) return invalid(r, n.error().message());
                         snapshot_targets(app, e);
                         r.result(*n);
                     });
        },
        "vhost_scsi");

    add(
        app, "vhost_scsi_controller_remove_target",
        "Remove a SCSI target (hot-remove: the driver is told; outstanding commands finish).",
        {{"ctrlr", PT::string, true, "Controller name", nullptr},
         {"scsi_target_num", PT::uint, true, "Target number", nullptr}},
        [&app](const Json& p, Responder r) {
            const uint64_t num = p.at("scsi_target_num").get<uint64_t>();
            if (num >= kScsiMaxTargets)
                return invalid(
                    r, fmt::format("scsi_target_num {} (0 to {})", num, kScsiMaxTargets - 1));
            on_ctrlr(app, p.at("ctrlr").get<std::string>(), std::move(r),
                     [&app, num](Entry& e, Responder r) {
                         if (!e.scsi) return invalid(r, "not a SCSI controller");
                         auto shared = std::make_shared<Responder>(std::move(r));
                         Entry* ep = &e;
                         scsi_remove_target(e.ctrlr->device(), uint32_t(num),
                                            [&app, ep, shared](Result<void> res) {
                                                if (!res.ok())
                                                    return invalid(*shared, res.error().message());
                                                snapshot_targets(app, *ep);
                                                shared->result(true);
                                            });
                     });
        },
        "vhost_scsi");
}

}  // namespace strata::vhost
