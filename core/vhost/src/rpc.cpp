// SPDK's vhost RPCs (names, parameters and result shapes of lib/vhost/vhost_rpc.c and
// python/spdk/rpc/vhost.py) over the App's controllers, and the "vhost_blk" subsystem.
//
// State: a Host slot (VhostTarget) mapping names to controllers. Each controller lives on its
// own Thread (placed on the reactor of the first core of `cpumask`); RPC handlers run on the
// app Thread and reach a controller by message. The slot keeps a snapshot of what the RPCs
// report (socket, cpumask, bdev, coalescing), guarded by a mutex (control path only).
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <strata/base/assert.h>
#include <strata/rpc/app.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/vhost/blk.h>
#include <strata/vhost/controller.h>
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
         std::vector<rpc::ParamSpec> params, rpc::Handler handler) {
    rpc::MethodSpec spec;
    spec.name = std::move(name);
    spec.description = std::move(description);
    spec.params = std::move(params);
    spec.allowed = rpc::Allowed::runtime;
    spec.subsystem = "vhost_blk";
    spec.handler = std::move(handler);
    auto r = app.registry().add(std::move(spec));
    STRATA_ASSERT_MSG(r.ok(), "vhost RPC registration failed: %s", r.error().message().c_str());
}

void invalid(Responder& r, const std::string& msg) {
    r.error(rpc::error_code::invalid_params, msg);
}

Json controller_json(const Entry& e) {
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

void write_config(rpc::App& app, Json& cfg) {
    auto& t = target(app.host());
    std::lock_guard lk(t.mu);
    for (const auto& [name, e] : t.ctrlrs) {
        cfg.push_back({{"method", "vhost_create_blk_controller"},
                       {"params",
                        {{"ctrlr", e->name},
                         {"dev_name", e->bdev},
                         {"cpumask", e->cpumask},
                         {"readonly", e->readonly},
                         {"transport", "vhost_user_blk"}}}});
        if (e->coalescing.delay_base_us != 0)
            cfg.push_back({{"method", "vhost_controller_set_coalescing"},
                           {"params",
                            {{"ctrlr", e->name},
                             {"delay_base_us", e->coalescing.delay_base_us},
                             {"iops_threshold", e->coalescing.iops_threshold}}}});
    }
}

// Destroys a controller on its Thread, ends the Thread, then done() on the app Thread.
void destroy(rpc::App& app, std::shared_ptr<Entry> e, std::function<void()> done) {
    runtime::Thread* th = e->thread;
    auto st = th->post([&app, e, th, done = std::move(done)]() mutable {
        e->ctrlr.reset();
        th->request_exit();
        (void)app.thread().post(std::move(done));
    });
    STRATA_ASSERT_MSG(st.ok(), "vhost: controller thread gone");
}

void fini(rpc::App& app, std::function<void()> done) {
    auto& t = target(app.host());
    std::map<std::string, std::shared_ptr<Entry>> all;
    {
        std::lock_guard lk(t.mu);
        all.swap(t.ctrlrs);
    }
    if (all.empty()) return done();
    auto left = std::make_shared<size_t>(all.size());
    auto fin = std::make_shared<std::function<void()>>(std::move(done));
    for (auto& [name, e] : all)
        destroy(app, e, [left, fin] {
            if (--*left == 0) (*fin)();
        });
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
         {"packed_ring", PT::bool_, false, "Packed ring (planned: only false is accepted)", false},
         {"transport", PT::string, false, "Transport: vhost_user_blk", "vhost_user_blk"}},
        [&app](const Json& p, Responder r) {
            const std::string name = p.at("ctrlr").get<std::string>();
            if (name.empty() || name.find('/') != std::string::npos)
                return invalid(r, fmt::format("invalid controller name '{}'", name));
            if (rpc::param_or<bool>(p, "packed_ring", false))
                return invalid(r, "packed_ring: packed virtqueues are not supported yet");
            const auto transport = rpc::param_or<std::string>(p, "transport", "vhost_user_blk");
            if (transport != "vhost_user_blk")
                return invalid(r, fmt::format("Transport type '{}' unavailable.", transport));
            auto& t = target(app.host());
            auto e = std::make_shared<Entry>();
            e->name = name;
            e->bdev = p.at("dev_name").get<std::string>();
            e->readonly = rpc::param_or<bool>(p, "readonly", false);
            e->cpumask = rpc::param_or<std::string>(p, "cpumask", "");
            auto reactor = reactor_of(app, e->cpumask);
            if (!reactor.ok()) return invalid(r, reactor.error().message());
            if (e->cpumask.empty()) {
                const auto rs = app.scheduler().reactors();
                const int core = rs.at(size_t(*reactor)).core;
                e->cpumask = fmt::format("0x{:x}", 1ull << (core < 0 ? *reactor : core));
            }
            {
                std::lock_guard lk(t.mu);
                if (t.ctrlrs.count(name))
                    return invalid(r, fmt::format("controller '{}' already exists", name));
                e->socket = t.socket_dir.empty() ? name : t.socket_dir + "/" + name;
                t.ctrlrs[name] = e;  // reserved; removed again on failure
            }
            e->thread = app.scheduler().create_thread("vhost." + name, *reactor, &app.host());
            auto st = e->thread->post([&app, e, r = std::move(r)]() mutable {
                BlkOptions o;
                o.bdev_name = e->bdev;
                o.readonly = e->readonly;
                auto dev = create_blk_device(o);
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
                e->ctrlr->start();
                r.result(true);
            });
            STRATA_ASSERT(st.ok());
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
}

}  // namespace strata::vhost
