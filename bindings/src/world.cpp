#include "world.h"

#include <cctype>
#include <stdexcept>
#include <utility>

#include <strata/stack/modules.h>
#include <strata/sock/sim.h>

#include "json_py.h"

namespace strata::py {

namespace pyb = pybind11;

// ---------------------------------------------------------------------------------------------
// SimCore: the simulator a World (or every World of a Cluster) runs on.

SimCore::SimCore(uint64_t seed, uint32_t reactors) {
    if (reactors == 0 || reactors > 64) throw pyb::value_error("reactors must be in [1, 64]");
    pyb::gil_scoped_release nogil;
    sched = std::make_unique<runtime::SimScheduler>(seed, reactors);
}

SimCore::~SimCore() {
    // The last World or Cluster let go of it; destroying the scheduler may log. The network
    // goes first (its Thread is the scheduler's), after every host (each held this core).
    try {
        pyb::gil_scoped_release nogil;
        if (net) {
            net.reset();
            sched->run_until_idle(100'000);  // the network's Thread takes its exit message
        }
        sched.reset();
    } catch (...) {
    }
}

std::string SimCore::address_for(const std::string& name,
                                 const std::optional<std::string>& wanted) {
    if (wanted) return *wanted;
    if (auto it = addresses.find(name); it != addresses.end()) return it->second;
    for (;;) {
        std::string a = "10.0." + std::to_string(next_address / 250) + "." +
                        std::to_string(next_address % 250 + (next_address / 250 == 0 ? 0 : 1));
        ++next_address;
        bool used = false;
        for (const auto& [n, addr] : addresses) used |= addr == a;
        if (!used) return a;
    }
}

SimCore::Busy::Busy(SimCore& c) : c_(c) {
    bool expected = false;
    if (!c_.busy.compare_exchange_strong(expected, true))
        throw std::runtime_error(
            "the simulation is single-threaded: it is already being driven (from another Python "
            "thread, or re-entered from a run_until predicate; every host of a Cluster shares "
            "one simulator)");
}

bool SimCore::run_until(pyb::object pred, std::optional<uint64_t> timeout_ns,
                        std::optional<uint64_t> max_steps) {
    uint64_t deadline = UINT64_MAX;
    if (timeout_ns) {
        uint64_t now = sched->now_ns();
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
        held = check() || sched->run_until(check, deadline, max_steps.value_or(UINT64_MAX));
    }
    if (py_error) throw std::move(*py_error);
    return held;
}

std::string SimCore::step() {
    runtime::SimScheduler::StepResult r;
    {
        pyb::gil_scoped_release nogil;
        r = sched->step();
    }
    switch (r) {
        case runtime::SimScheduler::StepResult::ran: return "ran";
        case runtime::SimScheduler::StepResult::time_advanced: return "time_advanced";
        case runtime::SimScheduler::StepResult::idle: return "idle";
    }
    return "idle";
}

uint64_t SimCore::event_count(std::optional<std::string> kind) const {
    if (!kind) return sched->event_count();
    static constexpr std::pair<const char*, runtime::TraceKind> kKinds[] = {
        {"bdev_io", runtime::TraceKind::bdev_io},
        {"rpc_reply", runtime::TraceKind::rpc_reply},
        {"device_cmd", runtime::TraceKind::device_cmd},
        {"user", runtime::TraceKind::user}};
    for (const auto& [name, k] : kKinds)
        if (*kind == name) return sched->event_count(k);
    throw pybind11::value_error("unknown event kind '" + *kind +
                                "' (bdev_io, rpc_reply, device_cmd, user)");
}

pyb::dict SimCore::sim_stats() const {
    const auto& s = sched->sim_stats();
    pyb::dict d;
    d["steps"] = s.steps;
    d["messages"] = s.messages;
    d["poller_runs"] = s.poller_runs;
    d["timer_runs"] = s.timer_runs;
    d["time_jumps"] = s.time_jumps;
    return d;
}

pyb::list SimCore::threads(const runtime::Host* host) const {
    pyb::list out;
    for (auto* t : sched->threads()) {
        if (t->exited()) continue;  // a closed host's, or one that finished
        if (host != nullptr && &t->host() != host) continue;
        pyb::dict d;
        d["name"] = t->name();
        d["id"] = t->id();
        d["reactor"] = t->reactor();
        d["host"] = t->host().name();
        out.append(d);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Cluster

Cluster::Cluster(uint64_t seed, uint32_t reactors)
    : core_(std::make_shared<SimCore>(seed, reactors)) {
    pyb::gil_scoped_release nogil;
    core_->net = std::make_unique<sock::SimNetwork>(*core_->sched,
                                                    runtime::Host::seed_for(seed, "simnet"));
}

namespace {
pyb::dict link_dict(const sock::LinkParams& l) {
    pyb::dict d;
    d["latency_ns"] = l.latency_ns;
    d["bytes_per_sec"] = l.bytes_per_sec;
    d["max_segment_bytes"] = l.max_segment_bytes;
    return d;
}
pyb::dict endpoint_dict(const sock::Endpoint& e) {
    pyb::dict d;
    d["address"] = e.address;
    d["port"] = e.port;
    return d;
}
}  // namespace

pyb::dict Cluster::net_info() {
    SimCore::Busy b(*core_);
    const auto& st = core_->net->stats();
    pyb::dict d;
    d["seed"] = core_->net->seed();
    d["default_link"] = link_dict(core_->net->default_link());
    d["segments"] = st.segments;
    d["bytes"] = st.bytes;
    d["connects"] = st.connects;
    d["refused"] = st.refused;
    d["resets"] = st.resets;
    d["delivery_hash"] = core_->net->delivery_hash();
    pyb::dict hosts;
    for (const auto& [n, a] : core_->addresses) hosts[pyb::str(n)] = a;
    d["addresses"] = hosts;
    return d;
}

void Cluster::net_set_link(std::optional<std::string> a, std::optional<std::string> b,
                           std::optional<uint64_t> latency_ns,
                           std::optional<uint64_t> bytes_per_sec,
                           std::optional<uint32_t> max_segment_bytes) {
    SimCore::Busy busy(*core_);
    if (a.has_value() != b.has_value())
        throw pyb::value_error("give both ends of a link, or neither for the default link");
    if (max_segment_bytes && *max_segment_bytes == 0)
        throw pyb::value_error("max_segment_bytes must be at least 1");
    auto& net = *core_->net;
    sock::LinkParams l = a ? net.link(*a, *b) : net.default_link();
    if (latency_ns) l.latency_ns = *latency_ns;
    if (bytes_per_sec) l.bytes_per_sec = *bytes_per_sec;
    if (max_segment_bytes) l.max_segment_bytes = *max_segment_bytes;
    if (a)
        net.set_link(*a, *b, l);
    else
        net.set_default_link(l);
}

pyb::dict Cluster::net_link(std::optional<std::string> a, std::optional<std::string> b) {
    if (a.has_value() != b.has_value())
        throw pyb::value_error("give both ends of a link, or neither for the default link");
    return link_dict(a ? core_->net->link(*a, *b) : core_->net->default_link());
}

void Cluster::net_delay(const std::string& a, const std::string& b, uint64_t extra_ns,
                        uint64_t duration_ns) {
    SimCore::Busy busy(*core_);
    core_->net->delay(a, b, extra_ns, duration_ns);
}

void Cluster::net_stall(const std::string& a, const std::string& b, uint64_t duration_ns) {
    SimCore::Busy busy(*core_);
    core_->net->stall(a, b, duration_ns);
}

void Cluster::net_partition(const std::string& a, const std::string& b, const std::string& mode) {
    if (mode != "timeout" && mode != "refuse")
        throw pyb::value_error("mode must be 'timeout' or 'refuse', got '" + mode + "'");
    SimCore::Busy busy(*core_);
    core_->net->partition(a, b, mode == "refuse" ? sock::PartitionMode::refuse
                                                 : sock::PartitionMode::timeout);
}

void Cluster::net_heal(const std::string& a, const std::string& b) {
    SimCore::Busy busy(*core_);
    core_->net->heal(a, b);
}

size_t Cluster::net_reset(const std::string& a, const std::string& b) {
    SimCore::Busy busy(*core_);
    return core_->net->reset(a, b);
}

void Cluster::net_reset_connection(uint64_t id) {
    SimCore::Busy busy(*core_);
    Status s = core_->net->reset(id);
    if (!s.ok()) throw pyb::value_error("reset connection " + std::to_string(id) + ": " +
                                        s.to_string());
}

void Cluster::net_slow_reader(const std::string& address, uint64_t bytes_per_sec) {
    SimCore::Busy busy(*core_);
    core_->net->slow_reader(address, bytes_per_sec);
}

pyb::list Cluster::net_connections() {
    pyb::list out;
    for (const auto& c : core_->net->connections()) {
        pyb::dict d;
        d["id"] = c.id;
        d["client"] = endpoint_dict(c.client);
        d["server"] = endpoint_dict(c.server);
        d["bytes_to_server"] = c.bytes_to_server;
        d["bytes_to_client"] = c.bytes_to_client;
        d["queued_to_server"] = c.queued_to_server;
        d["queued_to_client"] = c.queued_to_client;
        d["state"] = c.state;
        out.append(d);
    }
    return out;
}

uint64_t Cluster::net_connect_timeout_ns() const { return core_->net->connect_timeout_ns; }
void Cluster::net_set_connect_timeout_ns(uint64_t ns) { core_->net->connect_timeout_ns = ns; }

bool Cluster::run_until(pyb::object pred, std::optional<uint64_t> timeout_ns,
                        std::optional<uint64_t> max_steps) {
    SimCore::Busy b(*core_);
    return core_->run_until(std::move(pred), timeout_ns, max_steps);
}

void Cluster::advance(uint64_t ns) {
    SimCore::Busy b(*core_);
    pyb::gil_scoped_release nogil;
    core_->sched->advance(ns);
}

std::string Cluster::step() {
    SimCore::Busy b(*core_);
    return core_->step();
}

bool Cluster::run_until_idle(uint64_t max_steps) {
    SimCore::Busy b(*core_);
    pyb::gil_scoped_release nogil;
    return core_->sched->run_until_idle(max_steps);
}

// ---------------------------------------------------------------------------------------------
// World

namespace {
bool valid_host_name(const std::string& n) {
    if (n.empty() || n.size() > 64) return false;
    for (char c : n)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
            return false;
    return true;
}
}  // namespace

World::World(uint64_t seed, uint32_t reactors, bool wait_for_rpc, pyb::object config,
             Cluster* cluster, std::string name, std::optional<std::string> address)
    : name_(std::move(name)), in_cluster_(cluster != nullptr) {
    if (!valid_host_name(name_))
        throw pyb::value_error("host name '" + name_ +
                               "' is not valid (1 to 64 letters, digits, '_', '-' or '.')");
    if (cluster != nullptr) {
        core_ = cluster->core();
        if (core_->live_hosts.count(name_) != 0)
            throw pyb::value_error("this cluster already has a host named '" + name_ +
                                   "' (host names give the identifiers: they must be distinct "
                                   "among open hosts; close it first to restart it)");
    } else {
        core_ = std::make_shared<SimCore>(seed, reactors);
    }
    rpc::AppOptions opts;
    opts.wait_for_rpc = wait_for_rpc;
    if (!config.is_none()) {
        if (pyb::isinstance<pyb::str>(config))
            opts.config_file = config.cast<std::string>();
        else
            opts.config = from_python(config);
    }
    sched_ = core_->sched.get();
    SimCore::Busy busy(*core_);
    core_->live_hosts.insert(name_);
    host_ = std::make_unique<runtime::Host>(name_, runtime::Host::seed_for(sched_->seed(), name_));
    runtime::HostScope scope(*host_);
    opts.host = host_.get();
    if (core_->net) {
        // On the cluster's network before the App starts (a config may listen at once).
        std::string a = core_->address_for(name_, address);
        Status s = core_->net->attach(*host_, a);
        if (!s.ok()) {
            core_->live_hosts.erase(name_);
            host_.reset();
            throw pyb::value_error("host '" + name_ + "': address '" + a + "': " + s.to_string());
        }
        address_ = a;
        core_->addresses[name_] = a;
    }
    std::optional<Result<void>> started;
    {
        // Everything that may log runs without the GIL (the log sink takes it; see log_bridge).
        pyb::gil_scoped_release nogil;
        app_ = std::make_unique<rpc::App>(*sched_, std::move(opts));
        stack::register_all_modules(*app_);
        app_->start([&started](Result<void> r) { started = std::move(r); });
        sched_->run_until([&started] { return started.has_value(); },
                          sched_->now_ns() + 600'000'000'000ull);
    }
    if (!started || !started->ok()) {
        std::string msg = started ? started->error().message()
                                  : std::string("the framework did not finish starting");
        try {
            close_locked();
        } catch (...) {
        }
        if (leaked_) (void)host_.release();
        throw std::runtime_error("World failed to start: " + msg);
    }
}

World::~World() {
    if (!host_) return;  // the constructor failed before making it
    // The framework stops first (bdev fini detaches drivers such as bdev_nvme's from the
    // emulated devices), then the devices go, then this Host's Threads; the simulator lives on
    // while another World or the Cluster holds it.
    try {
        runtime::HostScope scope(*host_);
        if (app_) {
            close_iscsi();  // its sockets, like the harness's, before the Host goes
            close_sock();
            {
                pyb::gil_scoped_release nogil;
                app_->request_stop();
                sched_->run_until([this] { return app_->stopped(); },
                                  sched_->now_ns() + 600'000'000'000ull);
            }
            if (app_->stopped()) {
                close_bdev_ios();
                close_devices();
                {
                    pyb::gil_scoped_release nogil;
                    app_.reset();
                }
                leave_cluster();
            } else {
                // See close(): leak the App and its Host (its Threads may still run).
                (void)bdev_ios_.release();  // leaked too: its I/Os may still complete
                (void)app_.release();
                leaked_ = left_ = true;
                core_->live_hosts.erase(name_);
            }
        } else {
            leave_cluster();
        }
        if (leaked_) (void)host_.release();
    } catch (...) {
    }
}

void World::leave_cluster() {
    if (left_) return;
    left_ = true;
    {
        // Its Threads first (nothing may run for a Host that is gone), then the Host with every
        // module's state; its network address is free again (a restart may take it).
        pyb::gil_scoped_release nogil;
        sched_->release_threads_of(*host_);
        host_.reset();
    }
    core_->live_hosts.erase(name_);
}

void World::close() {
    if (!app_) return;
    SimCore::Busy busy(*core_);
    close_locked();
}

void World::close_locked() {
    if (!app_) return;
    runtime::HostScope scope(*host_);
    close_iscsi();  // the initiators' sockets, like the harness's, before the Host goes
    close_sock();  // the harness's sockets before the network sees the Host go
    {
        pyb::gil_scoped_release nogil;
        app_->request_stop();
        sched_->run_until([this] { return app_->stopped(); },
                          sched_->now_ns() + 600'000'000'000ull);
        if (!app_->stopped()) {
            // Leak rather than destroy an App that is still running (its destructor requires a
            // stopped or idle framework); this only happens when a module's fini never finishes.
            (void)app_.release();
            leaked_ = left_ = true;
            core_->live_hosts.erase(name_);
            (void)bdev_ios_.release();  // leaked too: its I/Os may still complete
            throw std::runtime_error("World.close: the framework did not stop within 600 s of "
                                     "virtual time (a subsystem's fini never completed)");
        }
    }
    close_bdev_ios();
    // Devices after the framework: bdev fini detaches drivers (bdev_nvme) from emulated devices.
    close_devices();
    {
        pyb::gil_scoped_release nogil;
        app_.reset();
    }
    leave_cluster();
}

runtime::Thread* World::own_thread(std::string_view name) const {
    if (!host_) return nullptr;
    for (runtime::Thread* t : sched_->threads())
        if (!t->exited() && &t->host() == host_.get() && t->name() == name) return t;
    return nullptr;
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
    return core_->run_until(std::move(pred), timeout_ns, max_steps);
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
    return core_->step();
}

bool World::run_until_idle(uint64_t max_steps) {
    check_open();
    Guard g(*this);
    pyb::gil_scoped_release nogil;
    return sched_->run_until_idle(max_steps);
}

pyb::dict World::sim_stats() const { return core_->sim_stats(); }

pyb::list World::threads() const {
    if (!host_) return pyb::list();
    return core_->threads(host_.get());
}

uint32_t World::create_thread(const std::string& name, int reactor) {
    check_open();
    Guard g(*this);
    if (name.empty()) throw pyb::value_error("thread name must not be empty");
    if (own_thread(name) != nullptr)
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
        runtime::Thread* t = own_thread(n);
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
    return core_->event_count(std::move(kind));
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
    pyb::list out;
    for (const auto& m : marks_) out.append(pyb::make_tuple(m.thread, m.seq, m.time_ns));
    marks_.clear();
    return out;
}

}  // namespace strata::py
