#include "world.h"

#include <stdexcept>
#include <utility>

#include <strata/rpc/modules.h>

#include "json_py.h"

namespace strata::py {

namespace pyb = pybind11;

// Marks the World busy for the duration of a call: rejects concurrent or re-entrant driving.

World::World(uint64_t seed, uint32_t reactors, bool wait_for_rpc, pyb::object config) {
    if (reactors == 0 || reactors > 64)
        throw pyb::value_error("reactors must be in [1, 64]");
    host_ = std::make_unique<runtime::Host>("world", runtime::Host::seed_for(seed, "world"));
    runtime::HostScope scope(*host_);
    rpc::AppOptions opts;
    opts.wait_for_rpc = wait_for_rpc;
    opts.host = host_.get();
    if (!config.is_none()) {
        if (pyb::isinstance<pyb::str>(config))
            opts.config_file = config.cast<std::string>();
        else
            opts.config = from_python(config);
    }
    std::optional<Result<void>> started;
    {
        // Everything that may log runs without the GIL (the log sink takes it; see log_bridge).
        pyb::gil_scoped_release nogil;
        sched_ = std::make_unique<runtime::SimScheduler>(seed, reactors);
        app_ = std::make_unique<rpc::App>(*sched_, std::move(opts));
        rpc::register_all_modules(*app_);
        app_->start([&started](Result<void> r) { started = std::move(r); });
        sched_->run_until([&started] { return started.has_value(); },
                          sched_->now_ns() + 600'000'000'000ull);
    }
    if (!started || !started->ok()) {
        std::string msg = started ? started->error().message()
                                  : std::string("the framework did not finish starting");
        close();
        throw std::runtime_error("World failed to start: " + msg);
    }
}

World::~World() {
    // The framework stops first (bdev fini detaches drivers such as bdev_nvme's from the
    // emulated devices), then the devices go.
    pyb::gil_scoped_release nogil;
    runtime::HostScope scope(*host_);
    try {
        if (app_) {
            app_->request_stop();
            sched_->run_until([this] { return app_->stopped(); },
                              sched_->now_ns() + 600'000'000'000ull);
            if (app_->stopped()) {
                app_.reset();
            } else {
                (void)app_.release();  // see close()
                (void)sched_.release();
            }
        }
        if (sched_) {
            pyb::gil_scoped_acquire gil;
            close_devices();
        }
        sched_.reset();
    } catch (...) {
    }
}

void World::close() {
    if (!app_) return;
    runtime::HostScope scope(*host_);
    {
        pyb::gil_scoped_release nogil;
        app_->request_stop();
        sched_->run_until([this] { return app_->stopped(); },
                          sched_->now_ns() + 600'000'000'000ull);
        if (!app_->stopped()) {
            // Leak rather than destroy an App that is still running (its destructor requires a
            // stopped or idle framework); this only happens when a module's fini never finishes.
            (void)app_.release();
            throw std::runtime_error("World.close: the framework did not stop within 600 s of "
                                     "virtual time (a subsystem's fini never completed)");
        }
    }
    // Devices after the framework: bdev fini detaches drivers (bdev_nvme) from emulated devices.
    close_devices();
    app_.reset();
}

void World::check_open() const {
    if (!app_) throw std::runtime_error("World is closed");
}

pyb::object World::call(const std::string& method, pyb::object params, uint64_t timeout_ns) {
    check_open();
    rpc::Json p = params.is_none() ? rpc::Json(nullptr) : from_python(params);
    if (!p.is_null() && !p.is_object() && !p.is_array())
        throw pyb::type_error("params must be a dict, a list or None");
    Guard g(*this);
    rpc::Json resp;
    {
        pyb::gil_scoped_release nogil;
        resp = app_->call_method(method, std::move(p), timeout_ns);
    }
    return to_python(resp);
}

pyb::object World::call_request(pyb::object request, uint64_t timeout_ns) {
    check_open();
    rpc::Json req = from_python(request);
    Guard g(*this);
    rpc::Json resp;
    {
        pyb::gil_scoped_release nogil;
        resp = app_->call(req, timeout_ns);
    }
    if (resp.is_discarded()) return pyb::none();
    return to_python(resp);
}

std::optional<std::string> World::handle_raw(const std::string& text, uint64_t timeout_ns) {
    check_open();
    Guard g(*this);
    pyb::gil_scoped_release nogil;
    return app_->handle_raw(text, timeout_ns);
}

bool World::run_until(pyb::object pred, std::optional<uint64_t> timeout_ns,
                      std::optional<uint64_t> max_steps) {
    check_open();
    Guard g(*this);
    uint64_t deadline = UINT64_MAX;
    if (timeout_ns) {
        uint64_t now = sched_->now_ns();
        deadline = *timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + *timeout_ns;
    }
    std::optional<pyb::error_already_set> py_error;
    bool held;
    {
        pyb::gil_scoped_release nogil;
        auto check = [&]() -> bool {
            pyb::gil_scoped_acquire gil;
            try {
                if (PyErr_CheckSignals() != 0) throw pyb::error_already_set();  // Ctrl-C
                return pyb::bool_(pred()).cast<bool>();
            } catch (pyb::error_already_set& e) {
                py_error.emplace(std::move(e));
                return true;  // stop at once; re-raised below
            }
        };
        // The predicate may already hold: no step needed.
        held = check() || sched_->run_until(check, deadline, max_steps.value_or(UINT64_MAX));
    }
    if (py_error) throw std::move(*py_error);
    return held;
}

void World::advance(uint64_t ns) {
    check_open();
    Guard g(*this);
    pyb::gil_scoped_release nogil;
    sched_->advance(ns);
}

std::string World::step() {
    check_open();
    Guard g(*this);
    runtime::SimScheduler::StepResult r;
    {
        pyb::gil_scoped_release nogil;
        r = sched_->step();
    }
    switch (r) {
        case runtime::SimScheduler::StepResult::ran: return "ran";
        case runtime::SimScheduler::StepResult::time_advanced: return "time_advanced";
        case runtime::SimScheduler::StepResult::idle: return "idle";
    }
    return "idle";
}

bool World::run_until_idle(uint64_t max_steps) {
    check_open();
    Guard g(*this);
    pyb::gil_scoped_release nogil;
    return sched_->run_until_idle(max_steps);
}

pyb::dict World::sim_stats() const {
    const auto& s = sched_->sim_stats();
    pyb::dict d;
    d["steps"] = s.steps;
    d["messages"] = s.messages;
    d["poller_runs"] = s.poller_runs;
    d["timer_runs"] = s.timer_runs;
    d["time_jumps"] = s.time_jumps;
    return d;
}

pyb::list World::threads() const {
    pyb::list out;
    for (auto* t : sched_->threads()) {
        pyb::dict d;
        d["name"] = t->name();
        d["id"] = t->id();
        d["reactor"] = t->reactor();
        out.append(d);
    }
    return out;
}

uint32_t World::create_thread(const std::string& name, int reactor) {
    check_open();
    Guard g(*this);
    if (name.empty()) throw pyb::value_error("thread name must not be empty");
    if (sched_->find_thread(name) != nullptr)
        throw pyb::value_error("a thread named '" + name + "' already exists");
    if (reactor >= static_cast<int>(sched_->reactor_count()))
        throw pyb::value_error("reactor " + std::to_string(reactor) + " out of range (world has " +
                               std::to_string(sched_->reactor_count()) + ")");
    pyb::gil_scoped_release nogil;
    return sched_->create_thread(name, reactor < 0 ? -1 : reactor)->id();
}

void World::post_marks(const std::vector<std::string>& threads, uint32_t count) {
    check_open();
    Guard g(*this);
    std::vector<runtime::Thread*> ts;
    for (const auto& n : threads) {
        runtime::Thread* t = sched_->find_thread(n);
        if (t == nullptr) throw pyb::value_error("no thread named '" + n + "'");
        ts.push_back(t);
    }
    std::string failed;
    {
        pyb::gil_scoped_release nogil;
        for (uint32_t i = 0; i < count && failed.empty(); i++) {
            for (auto* t : ts) {
                Status s = t->post([this, t, i] {
                    marks_.push_back({t->name(), i, sched_->now_ns()});
                });
                if (!s.ok()) {
                    failed = "posting to thread '" + t->name() + "' failed: " + s.to_string();
                    break;
                }
            }
        }
    }
    if (!failed.empty()) throw std::runtime_error(failed);
}

uint64_t World::event_count(std::optional<std::string> kind) const {
    if (!kind) return sched_->event_count();
    static constexpr std::pair<const char*, runtime::TraceKind> kKinds[] = {
        {"bdev_io", runtime::TraceKind::bdev_io},
        {"rpc_reply", runtime::TraceKind::rpc_reply},
        {"device_cmd", runtime::TraceKind::device_cmd},
        {"user", runtime::TraceKind::user}};
    for (const auto& [name, k] : kKinds)
        if (*kind == name) return sched_->event_count(k);
    throw pybind11::value_error("unknown event kind '" + *kind +
                                "' (bdev_io, rpc_reply, device_cmd, user)");
}

void World::trace_user_event(uint64_t value) {
    check_open();
    Guard g(*this);
    runtime::Thread* t = app_ ? &app_->thread() : nullptr;
    pyb::gil_scoped_release nogil;
    bool done = false;
    Status s = t->post([value, &done] {
        runtime::trace_event(runtime::TraceKind::user, value);
        done = true;
    });
    if (!s.ok()) throw std::runtime_error("trace_user_event: " + s.to_string());
    sched_->run_until([&] { return done; });
}

pyb::list World::take_marks() {
    Guard g(*this);
    pyb::list out;
    for (const auto& m : marks_) out.append(pyb::make_tuple(m.thread, m.seq, m.time_ns));
    marks_.clear();
    return out;
}

}  // namespace strata::py
