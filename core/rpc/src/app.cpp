#include <strata/rpc/app.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/rpc/internal/framer.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

#include "server.h"

namespace strata::rpc {

STRATA_LOG_COMPONENT(app);

namespace {
std::atomic<bool> g_signal_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

constexpr uint64_t kStopPollNs = 10'000'000;     // signal-flag check period (real mode)
constexpr uint64_t kDrainPollNs = 1'000'000;
constexpr uint64_t kDrainTimeoutNs = 5'000'000'000;

// Control-path post; a refusal (ring full, Thread exited) is logged, never silent.
template <class F>
void post_to(runtime::Thread& t, F&& fn) {
    Status s = t.post(std::forward<F>(fn));
    if (!s.ok()) STRATA_ERRLOG(log_app, "message to '{}' refused: {}", t.name(), s.to_string());
}

uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

Json id_of(const Json& req) {
    if (req.is_object()) {
        auto it = req.find("id");
        if (it != req.end() && (it->is_string() || it->is_number())) return *it;
    }
    return nullptr;
}
}  // namespace

namespace {
std::unique_ptr<runtime::Host> make_host(runtime::Scheduler& scheduler, const AppOptions& o) {
    if (o.host != nullptr) return nullptr;
    uint64_t seed =
        scheduler.simulated()
            ? runtime::Host::seed_for(static_cast<runtime::SimScheduler&>(scheduler).seed(),
                                      o.host_name)
            : runtime::Host::entropy_seed();
    return std::make_unique<runtime::Host>(o.host_name, seed);
}
}  // namespace

App::App(runtime::Scheduler& scheduler, AppOptions options)
    : scheduler_(scheduler), options_(std::move(options)),
      own_host_(make_host(scheduler_, options_)),
      host_(options_.host != nullptr ? options_.host : own_host_.get()) {
    thread_ = scheduler_.create_thread("app_thread", options_.app_reactor, host_);
    registry_.set_reply_thread(thread_);
    if (!scheduler_.simulated()) {
        // Real mode: watch the signal flag (set by request_stop_from_signal).
        post_to(*thread_, [this] {
            stop_poller_ = thread_->register_poller(&App::stop_poll, this, "app_stop_watch",
                                                    kStopPollNs);
        });
    }
}

App::~App() {
    runtime::HostScope scope(*host_);
    if (!stopped() && (scheduler_.simulated() ||
                       static_cast<runtime::RealScheduler&>(scheduler_).running())) {
        request_stop();
        if (scheduler_.simulated()) {
            auto& sim = static_cast<runtime::SimScheduler&>(scheduler_);
            sim.run_until([this] { return stopped(); }, add_sat(sim.now_ns(), 60'000'000'000ull),
                          10'000'000);
        } else {
            for (int i = 0; i < 10000 && !stopped(); i++) {
                struct timespec ts{0, 1'000'000};
                nanosleep(&ts, nullptr);
            }
        }
    }
    if (server_) {
        // Poller already gone with the scheduler (real) or unregistered by the stop sequence.
        server_->close();
    }
}

const std::string& App::listen_path() const noexcept {
    return server_ ? server_->path() : empty_;
}

// ---------------------------------------------------------------------------------------------
// Subsystems

Result<void> App::add_subsystem(Subsystem s) {
    if (s.name.empty()) return Error(Errc::invalid_argument, "subsystem without a name");
    if (find_subsystem(s.name) != nullptr) {
        return Error(Errc::already_exists, fmt::format("subsystem '{}' already registered",
                                                       s.name));
    }
    subsystems_.push_back(std::make_unique<Subsystem>(std::move(s)));
    return {};
}

const Subsystem* App::find_subsystem(std::string_view name) const {
    for (const auto& s : subsystems_) {
        if (s->name == name) return s.get();
    }
    return nullptr;
}

Result<std::vector<const Subsystem*>> App::init_order() const {
    std::vector<const Subsystem*> order;
    std::vector<int> mark(subsystems_.size(), 0);  // 0 new, 1 visiting, 2 done
    std::function<Result<void>(size_t)> visit = [&](size_t i) -> Result<void> {
        if (mark[i] == 2) return {};
        if (mark[i] == 1) {
            return Error(Errc::invalid_argument,
                         fmt::format("subsystem dependency cycle through '{}'",
                                     subsystems_[i]->name));
        }
        mark[i] = 1;
        for (const auto& dep : subsystems_[i]->depends_on) {
            size_t j = 0;
            while (j < subsystems_.size() && subsystems_[j]->name != dep) j++;
            if (j == subsystems_.size()) {
                return Error(Errc::invalid_argument,
                             fmt::format("subsystem '{}' depends on unknown subsystem '{}'",
                                         subsystems_[i]->name, dep));
            }
            STRATA_TRY(visit(j));
        }
        mark[i] = 2;
        order.push_back(subsystems_[i].get());
        return {};
    };
    for (size_t i = 0; i < subsystems_.size(); i++) {
        auto r = visit(i);
        if (!r) return r.error();
    }
    return order;
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

void App::start(std::function<void(Result<void>)> done) {
    post_to(*thread_, [this, done = std::move(done)]() mutable {
        if (!options_.rpc_socket.empty()) {
            server_ = std::make_unique<Server>(*this);
            auto r = server_->listen(options_.rpc_socket, options_.rpc_socket_mode,
                                     options_.max_request_bytes);
            if (!r) {
                server_.reset();
                done(r.error());
                return;
            }
        }
        std::optional<Json> config = options_.config;
        if (!config && !options_.config_file.empty()) {
            auto r = read_config_file(options_.config_file);
            if (!r) {
                done(r.error());
                return;
            }
            config = std::move(*r);
        }
        if (config) {
            load_config(*config, !options_.wait_for_rpc, std::move(done));
        } else if (!options_.wait_for_rpc) {
            start_init(std::move(done));
        } else {
            done(Result<void>());
        }
    });
}

void App::start_init(std::function<void(Result<void>)> done) {
    if (registry_.state() == State::runtime) {
        done(Result<void>());
        return;
    }
    if (init_running_) {
        done(Error(Errc::busy, "framework initialization already in progress"));
        return;
    }
    auto order = init_order();
    if (!order) {
        done(order.error());
        return;
    }
    init_order_ = std::move(*order);
    init_running_ = true;
    initialized_count_ = 0;
    init_next(0, std::move(done));
}

void App::init_next(size_t i, std::function<void(Result<void>)> done) {
    if (stopping_.load()) {
        init_running_ = false;
        done(Error(Errc::shutdown, "application is stopping"));
        return;
    }
    if (i == init_order_.size()) {
        init_running_ = false;
        registry_.set_state(State::runtime);
        STRATA_INFOLOG(log_app, "framework initialized ({} subsystems)", init_order_.size());
        auto finish = [this, done = std::move(done)](Result<void> r) mutable {
            auto waiters = std::move(init_waiters_);
            init_waiters_.clear();
            for (auto& w : waiters) w();
            done(std::move(r));
        };
        if (pending_runtime_config_) {
            Json rest = std::move(*pending_runtime_config_);
            pending_runtime_config_.reset();
            Json cfg = {{"__entries", std::move(rest)}};
            load_config(cfg, false, std::move(finish));
        } else {
            finish(Result<void>());
        }
        return;
    }
    const Subsystem* s = init_order_[i];
    if (!s->init) {
        initialized_count_ = i + 1;
        init_next(i + 1, std::move(done));
        return;
    }
    STRATA_DEBUGLOG(log_app, "init subsystem '{}'", s->name);
    // A subsystem may complete synchronously; re-enter through a message to bound the stack.
    s->init(*this, [this, i, s, done = std::move(done)](Result<void> r) mutable {
        if (!r) {
            init_running_ = false;
            done(Error(r.code(), fmt::format("subsystem '{}' failed to initialize: {}", s->name,
                                             r.error().message())));
            return;
        }
        initialized_count_ = i + 1;
        post_to(*thread_, [this, i, done = std::move(done)]() mutable {
            init_next(i + 1, std::move(done));
        });
    });
}

void App::wait_init(std::function<void()> done) {
    if (registry_.state() == State::runtime) {
        done();
    } else {
        init_waiters_.push_back(std::move(done));
    }
}

void App::request_stop() {
    if (stop_requested_.exchange(true)) return;
    Status s = thread_->post([this] {
        stopping_ = true;
        STRATA_INFOLOG(log_app, "stopping: no new RPC connections, draining");
        if (server_) server_->stop_accepting();
        // Drain: wait for replies still owed to socket clients (bounded).
        struct Drain {
            App* app;
            uint64_t deadline_ns;
            runtime::Poller* poller = nullptr;
        };
        auto* d = new Drain{this, add_sat(scheduler_.now_ns(), kDrainTimeoutNs)};
        d->poller = thread_->register_poller(
            [](void* ctx) {
                auto* d = static_cast<Drain*>(ctx);
                App* app = d->app;
                // Replies still owed, or written only partly: the server poller keeps
                // running meanwhile, so both drain unless a client stops reading.
                size_t owed = app->server_ ? app->server_->in_flight() +
                                                 (app->server_->pending_output() > 0 ? 1 : 0)
                                           : 0;
                if (owed > 0 && app->scheduler_.now_ns() < d->deadline_ns) {
                    return runtime::PollStatus::idle;
                }
                if (owed > 0) {
                    STRATA_WARNLOG(log_app, "stop: dropping unanswered or unsent RPC replies");
                }
                app->thread_->unregister_poller(d->poller);
                delete d;
                app->fini_next(app->initialized_count_);
                return runtime::PollStatus::busy;
            },
            d, "app_drain", kDrainPollNs);
    });
    if (!s.ok()) STRATA_ERRLOG(log_app, "stop request refused: {}", s.to_string());
}

void App::request_stop_from_signal() { g_signal_stop.store(true, std::memory_order_relaxed); }

runtime::PollStatus App::stop_poll(void* ctx) {
    auto* app = static_cast<App*>(ctx);
    if (g_signal_stop.load(std::memory_order_relaxed) && !app->stop_requested()) {
        app->request_stop();
        return runtime::PollStatus::busy;
    }
    return runtime::PollStatus::idle;
}

void App::fini_next(size_t n) {
    // Reverse init order, over the subsystems that initialized.
    if (n == 0) {
        finish_stop();
        return;
    }
    const Subsystem* s = init_order_[n - 1];
    if (!s->fini) {
        fini_next(n - 1);
        return;
    }
    STRATA_DEBUGLOG(log_app, "fini subsystem '{}'", s->name);
    s->fini(*this, [this, n] { post_to(*thread_, [this, n] { fini_next(n - 1); }); });
}

void App::finish_stop() {
    if (server_) server_->close();
    if (stop_poller_ != nullptr) thread_->unregister_poller(stop_poller_);
    STRATA_INFOLOG(log_app, "stopped");
    stopped_.store(true, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// In-process RPC

void App::call_async(const Json& request, std::function<void(Json)> done) {
    registry_.dispatch(request, std::move(done));
}

Json App::call(const Json& request, uint64_t timeout_ns) {
    runtime::HostScope scope(*host_);
    struct CallState {
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
        Json resp;
    };
    auto st = std::make_shared<CallState>();
    if (!scheduler_.simulated() && runtime::current_thread() != nullptr) {
        return Registry::make_error(id_of(request), error_code::internal_error,
                                    "App::call from a runtime Thread would deadlock; use "
                                    "call_async");
    }
    Status s = thread_->post([this, st, request] {
        call_async(request, [st](Json r) {
            std::lock_guard<std::mutex> lk(st->m);
            st->resp = std::move(r);
            st->done = true;
            st->cv.notify_all();
        });
    });
    if (!s.ok()) {
        return Registry::make_error(id_of(request), error_code::internal_error,
                                    "application thread is not accepting requests: " +
                                        s.to_string());
    }
    bool ok;
    if (scheduler_.simulated()) {
        auto& sim = static_cast<runtime::SimScheduler&>(scheduler_);
        ok = sim.run_until([&] { return st->done; }, add_sat(sim.now_ns(), timeout_ns));
    } else {
        std::unique_lock<std::mutex> lk(st->m);
        ok = st->cv.wait_for(lk, std::chrono::nanoseconds(timeout_ns), [&] { return st->done; });
    }
    std::lock_guard<std::mutex> lk(st->m);
    if (!ok || !st->done) {
        return Registry::make_error(id_of(request), error_code::internal_error,
                                    "no response: request timed out");
    }
    return std::move(st->resp);
}

Json App::call_method(std::string_view method, Json params, uint64_t timeout_ns) {
    return call(Registry::make_request(method, std::move(params)), timeout_ns);
}

std::optional<std::string> App::handle_raw(std::string_view text, uint64_t timeout_ns) {
    StreamFramer framer;
    framer.feed(text);
    std::string out;
    bool any = false;
    auto emit = [&](const Json& j) {
        if (j.is_discarded()) return;
        if (any) out.push_back('\n');
        out += j.dump(-1, ' ', false, Json::error_handler_t::replace);
        any = true;
    };
    std::string value;
    for (;;) {
        auto kind = framer.next(value);
        if (kind == StreamFramer::Kind::value) {
            Json req = Json::parse(value, nullptr, false);
            if (req.is_discarded()) {
                emit(Registry::make_error(nullptr, error_code::parse_error, "Parse error"));
            } else {
                emit(call(req, timeout_ns));
            }
            continue;
        }
        if (kind == StreamFramer::Kind::garbage) {
            emit(Registry::make_error(nullptr, error_code::parse_error,
                                      "Parse error: a request must be a JSON object or array"));
        } else if (framer.pending_bytes() > 0) {
            emit(Registry::make_error(nullptr, error_code::parse_error,
                                      "Parse error: incomplete JSON value"));
        }
        break;
    }
    if (!any) return std::nullopt;
    return out;
}

// ---------------------------------------------------------------------------------------------
// Config

Result<Json> App::parse_config_text(std::string_view text) {
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const Json::parse_error& e) {
        size_t line = 1, col = 1;
        size_t end = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
        for (size_t i = 0; i < end; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        std::string why = e.what();
        if (auto p = why.find("syntax error"); p != std::string::npos) why = why.substr(p);
        return Error(Errc::invalid_argument,
                     fmt::format("config: JSON syntax error at line {}, column {}: {}", line, col,
                                 why));
    } catch (const Json::exception& e) {
        // e.g. out_of_range 406: a number too large for a double.
        std::string why = e.what();
        if (auto p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);
        return Error(Errc::invalid_argument, fmt::format("config: invalid JSON: {}", why));
    }
}

Result<Json> App::read_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return Error(Errc::not_found,
                     fmt::format("config: cannot read '{}': {}", path, std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto r = parse_config_text(ss.str());
    if (!r) return Error(r.code(), fmt::format("{} (in '{}')", r.error().message(), path));
    return r;
}

Json App::save_config() const {
    Json subs = Json::array();
    auto order = init_order();
    std::vector<const Subsystem*> list;
    if (order) {
        list = *order;
    } else {
        for (const auto& s : subsystems_) list.push_back(s.get());
    }
    for (const Subsystem* s : list) {
        Json cfg = Json::array();
        if (s->write_config) s->write_config(const_cast<App&>(*this), cfg);
        subs.push_back({{"subsystem", s->name}, {"config", std::move(cfg)}});
    }
    return Json{{"subsystems", std::move(subs)}};
}

Result<Json> App::save_subsystem_config(std::string_view name) const {
    const Subsystem* s = find_subsystem(name);
    if (s == nullptr) {
        return Error(Errc::not_found, fmt::format("subsystem '{}' not found", name));
    }
    Json cfg = Json::array();
    if (s->write_config) s->write_config(const_cast<App&>(*this), cfg);
    return Json{{"subsystem", s->name}, {"config", std::move(cfg)}};
}

namespace {

// Flattened config entries: {"subsystem","index","method","params"} in apply order.
Result<Json> flatten_config(const App& app, const Json& config) {
    if (!config.is_object()) {
        return Error(Errc::invalid_argument, "config: top level must be a JSON object");
    }
    for (auto it = config.begin(); it != config.end(); ++it) {
        if (it.key() != "subsystems" && it.key() != "__entries") {
            return Error(Errc::invalid_argument,
                         fmt::format("config: unknown top-level member '{}'", it.key()));
        }
    }
    if (auto e = config.find("__entries"); e != config.end()) return *e;  // internal re-entry
    auto subs = config.find("subsystems");
    if (subs == config.end() || !subs->is_array()) {
        return Error(Errc::invalid_argument, "config: 'subsystems' must be an array");
    }
    auto order = app.init_order();
    if (!order) return order.error();
    struct Item {
        size_t rank;
        size_t pos;
        Json entry;
    };
    std::vector<Item> items;
    for (size_t si = 0; si < subs->size(); si++) {
        const Json& s = (*subs)[si];
        if (!s.is_object()) {
            return Error(Errc::invalid_argument,
                         fmt::format("config: subsystems[{}] must be an object", si));
        }
        auto name = s.find("subsystem");
        if (name == s.end() || !name->is_string()) {
            return Error(Errc::invalid_argument,
                         fmt::format("config: subsystems[{}] needs a 'subsystem' string", si));
        }
        const std::string& sname = name->get_ref<const std::string&>();
        for (auto it = s.begin(); it != s.end(); ++it) {
            if (it.key() != "subsystem" && it.key() != "config") {
                return Error(Errc::invalid_argument,
                             fmt::format("config: subsystem '{}': unknown member '{}'", sname,
                                         it.key()));
            }
        }
        auto rank_it = std::find_if(order->begin(), order->end(),
                                    [&](const Subsystem* x) { return x->name == sname; });
        if (rank_it == order->end()) {
            // SPDK's own subsystems that Strata has no module for: a config saved by spdk_tgt
            // lists them, usually empty. Empty ones are skipped (as SPDK skips subsystems it
            // lacks); entries in them are refused, since nothing could apply them.
            static constexpr std::string_view kSpdkOnly[] = {
                "nbd", "ublk", "vhost_scsi", "vhost_blk", "vfu_tgt", "vfio_user_target", "fsdev"};
            const bool spdk_only =
                std::find(std::begin(kSpdkOnly), std::end(kSpdkOnly), sname) != std::end(kSpdkOnly);
            auto c = s.find("config");
            if (spdk_only && (c == s.end() || c->is_null() || (c->is_array() && c->empty()))) {
                STRATA_NOTICELOG(log_app,
                                 "config: SPDK subsystem '{}' (empty) skipped: Strata "
                                 "does not have it",
                                 sname);
                continue;
            }
            if (spdk_only)
                return Error(Errc::not_supported,
                             fmt::format("config: subsystem '{}' is SPDK's and Strata does not "
                                         "have it; its entries cannot be applied",
                                         sname));
            return Error(Errc::not_found, fmt::format("config: unknown subsystem '{}'", sname));
        }
        auto cfg = s.find("config");
        if (cfg == s.end() || cfg->is_null()) continue;
        if (!cfg->is_array()) {
            return Error(Errc::invalid_argument,
                         fmt::format("config: subsystem '{}': 'config' must be an array", sname));
        }
        for (size_t i = 0; i < cfg->size(); i++) {
            const Json& e = (*cfg)[i];
            std::string where = fmt::format("config: subsystem '{}' entry {}", sname, i);
            if (!e.is_object()) {
                return Error(Errc::invalid_argument, where + ": must be an object");
            }
            auto m = e.find("method");
            if (m == e.end() || !m->is_string()) {
                return Error(Errc::invalid_argument, where + ": needs a 'method' string");
            }
            for (auto it = e.begin(); it != e.end(); ++it) {
                if (it.key() != "method" && it.key() != "params") {
                    return Error(Errc::invalid_argument,
                                 fmt::format("{} ({}): unknown member '{}'", where,
                                             m->get<std::string>(), it.key()));
                }
            }
            Json params = e.contains("params") ? e["params"] : Json(nullptr);
            items.push_back({static_cast<size_t>(rank_it - order->begin()), items.size(),
                             Json{{"subsystem", sname},
                                  {"index", i},
                                  {"method", *m},
                                  {"params", std::move(params)}}});
        }
    }
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.rank < b.rank; });
    Json out = Json::array();
    for (auto& it : items) out.push_back(std::move(it.entry));
    return out;
}

std::string entry_where(const Json& e) {
    return fmt::format("config: subsystem '{}' entry {} ({})", e["subsystem"].get<std::string>(),
                       e["index"].get<size_t>(), e["method"].get<std::string>());
}

struct ConfigRun {
    App* app;
    Json now;    // entries to apply in the current state
    Json later;  // entries for the runtime state
    size_t i = 0;
    bool init_after;
    std::function<void(Result<void>)> done;
};

void config_step(std::shared_ptr<ConfigRun> run);

void config_phase_done(std::shared_ptr<ConfigRun> run) {
    App& app = *run->app;
    bool startup = app.registry().state() == State::startup;
    if (run->later.empty() && !(startup && run->init_after)) {
        run->done(Result<void>());
        return;
    }
    if (!startup) {
        // Startup-only entries met in the runtime state: nothing can apply them any more.
        for (const auto& e : run->later) {
            STRATA_WARNLOG(log_app, "{}: skipped, method only allowed before framework init",
                           entry_where(e));
        }
        run->done(Result<void>());
        return;
    }
    if (!run->init_after) {
        // --wait-for-rpc: the rest runs after framework_start_init.
        app.pending_runtime_config_for_loader(std::move(run->later));
        run->done(Result<void>());
        return;
    }
    Json rest = std::move(run->later);
    run->later = Json::array();
    auto done = std::move(run->done);
    app.start_init([&app, rest = std::move(rest), done = std::move(done)](Result<void> r) mutable {
        if (!r || rest.empty()) {
            done(std::move(r));
            return;
        }
        app.load_config(Json{{"__entries", std::move(rest)}}, false, std::move(done));
    });
}

void config_step(std::shared_ptr<ConfigRun> run) {
    if (run->i == run->now.size()) {
        config_phase_done(std::move(run));
        return;
    }
    const Json& e = run->now[run->i];
    Json req = Registry::make_request(e["method"].get<std::string>(), e["params"],
                                      static_cast<uint64_t>(run->i));
    run->app->call_async(req, [run](Json resp) {
        const Json& e = run->now[run->i];
        if (resp.is_object() && resp.contains("error")) {
            const Json& err = resp["error"];
            std::string msg = err.value("message", std::string("error"));
            run->done(Error(Errc::invalid_argument, fmt::format("{}: {} (code {})",
                                                                entry_where(e), msg,
                                                                err.value("code", 0))));
            return;
        }
        run->i++;
        // Continue from a message: bounded stack, and the sim orders it like everything else.
        post_to(run->app->thread(), [run] { config_step(run); });
    });
}

}  // namespace

void App::pending_runtime_config_for_loader(Json entries) {
    pending_runtime_config_ = std::move(entries);
}

void App::load_config(const Json& config, bool init_after,
                      std::function<void(Result<void>)> done) {
    auto entries = flatten_config(*this, config);
    if (!entries) {
        done(entries.error());
        return;
    }
    auto run = std::make_shared<ConfigRun>();
    run->app = this;
    run->init_after = init_after;
    run->done = std::move(done);
    run->now = Json::array();
    run->later = Json::array();
    for (auto& e : *entries) {
        const MethodSpec* spec = registry_.find(e["method"].get<std::string>());
        if (spec == nullptr) {
            run->done(Error(Errc::not_found,
                            fmt::format("{}: Method not found", entry_where(e))));
            return;
        }
        if (allowed_in(spec->allowed, registry_.state())) {
            run->now.push_back(std::move(e));
        } else {
            run->later.push_back(std::move(e));
        }
    }
    config_step(std::move(run));
}

}  // namespace strata::rpc
