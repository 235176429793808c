// App: the application framework every entry point builds on (strata-tgt, the Python World,
// the fuzzers, strata-rpc-doc).
//
// An App owns one "app" Thread on a given runtime::Scheduler (RealScheduler for strata-tgt,
// SimScheduler for the Python World), the method Registry, the subsystem table, optionally the
// Unix-socket JSON-RPC server, and the JSON config loader/saver.
//
// Lifecycle:
//   1. App app(scheduler, options);           // any OS thread; creates the app Thread
//   2. stack::register_all_modules(app);       // core/stack: subsystems + their RPCs (explicit table)
//      (or app.add_subsystem(...) / app.registry().add(...) by hand)
//   3. app.start(done);                        // any OS thread: on the app Thread, opens the RPC
//      socket (if options.rpc_socket non-empty), then unless wait_for_rpc: loads the config
//      (startup-state entries, framework init, runtime-state entries) and inits subsystems in
//      dependency order. done(Result) runs on the app Thread.
//   4. app.call(request) / app.handle_raw(text)  // in-process RPC (see below)
//   5. app.request_stop() (also from a signal handler via request_stop_from_signal()):
//      stop accepting RPC, drain pending replies, fini subsystems in reverse order, close and
//      unlink the socket; then stopped() becomes true. The scheduler is stopped by the owner.
//
// Owning Thread: everything except the construction, start(), call(), request_stop*(),
// stopped() and the const accessors runs on the app Thread.
//
// Not guaranteed: an App is not restartable after stop; call() from a Thread of the same scheduler deadlocks
// under RealScheduler (use call_async there).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/rpc/registry.h>
#include <strata/runtime/thread.h>

namespace strata::runtime {
class Host;
class Scheduler;
}  // namespace strata::runtime

namespace strata::rpc {

class App;
class Server;

// A subsystem: a module's init/fini and its config dump. Registered in an explicit table
// (core/stack's module table), never by static constructors. init/fini run on the app Thread and finish by
// calling done (possibly later, from a message). write_config appends {"method","params"}
// entries to `config` (a JSON array) such that replaying them rebuilds the subsystem's state.
struct Subsystem {
    std::string name;
    std::vector<std::string> depends_on;
    std::function<void(App& app, std::function<void(Result<void>)> done)> init;  // may be empty
    std::function<void(App& app, std::function<void()> done)> fini;              // may be empty
    std::function<void(App& app, Json& config)> write_config;                    // may be empty
};

struct AppOptions {
    // Unix socket for the JSON-RPC server; empty: no server (in-process calls only).
    std::string rpc_socket;
    uint32_t rpc_socket_mode = 0600;
    size_t max_request_bytes = 64u << 20;  // per connection; larger requests get an error
    // With wait_for_rpc the framework stays in State::startup until framework_start_init.
    bool wait_for_rpc = false;
    // JSON config loaded by start(): either a file path or an already parsed value.
    std::string config_file;
    std::optional<Json> config;
    int app_reactor = 0;  // reactor the app Thread is placed on
    // The Host whose module state this App uses (runtime/host.h). nullptr: the App makes and
    // owns its own, named host_name (under the simulator seeded from the simulator's seed and
    // that name), so two Apps never share a bdev, an lvol store or an emulated bus.
    runtime::Host* host = nullptr;
    std::string host_name = "app";
};

class App {
public:
    App(runtime::Scheduler& scheduler, AppOptions options = {});
    ~App();  // the scheduler must be stopped (real) or idle (sim) first, or the App stopped
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    runtime::Scheduler& scheduler() const noexcept { return scheduler_; }
    runtime::Thread& thread() const noexcept { return *thread_; }
    // Every module's state for this App. Code that reaches modules from outside the App's
    // Threads (a test's main, a binding) does so inside a runtime::HostScope(app.host()).
    runtime::Host& host() const noexcept { return *host_; }
    Registry& registry() noexcept { return registry_; }
    const Registry& registry() const noexcept { return registry_; }
    const AppOptions& options() const noexcept { return options_; }

    // --- subsystems (before start) ---
    // Errc::already_exists for a duplicate name.
    Result<void> add_subsystem(Subsystem s);
    // Init order (dependencies first); invalid_argument on an unknown dependency or a cycle.
    Result<std::vector<const Subsystem*>> init_order() const;
    const Subsystem* find_subsystem(std::string_view name) const;
    bool initialized() const noexcept { return registry_.state() == State::runtime; }

    // --- lifecycle ---
    // Any OS thread. done(Result) runs on the app Thread once the app reached State::runtime,
    // or State::startup with wait_for_rpc, or failed (bad config: the message names the
    // subsystem, entry index and method). The socket server keeps running after a failure;
    // callers usually stop.
    void start(std::function<void(Result<void>)> done);
    // framework_start_init: init subsystems (and the runtime part of a pending config).
    void start_init(std::function<void(Result<void>)> done);  // app Thread
    // Called on the app Thread once initialized (immediately if already).
    void wait_init(std::function<void()> done);

    void request_stop();                   // any OS thread
    static void request_stop_from_signal();  // async-signal-safe: sets a flag every App polls
    bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
    bool stop_requested() const noexcept { return stop_requested_.load(); }

    // --- in-process RPC ---
    // Dispatches one parsed request (object or batch) and returns the response (discarded
    // Json for notifications). From outside any Thread of the scheduler: under SimScheduler it
    // drives the simulation until the response arrives or timeout_ns of VIRTUAL time passed;
    // under RealScheduler (started) it blocks for up to timeout_ns of real time. On timeout it
    // returns an internal_error response ("timed out"); a late reply is then dropped.
    Json call(const Json& request, uint64_t timeout_ns = 60'000'000'000ull);
    // Convenience: call(Registry::make_request(method, params)).
    Json call_method(std::string_view method, Json params = nullptr,
                     uint64_t timeout_ns = 60'000'000'000ull);
    // Raw request text exactly as the socket server would handle it (parse error -32700 for
    // malformed JSON, batch, notification). Returns the response text or nullopt if none.
    // Several concatenated JSON values are handled in order; responses joined by '\n'.
    std::optional<std::string> handle_raw(std::string_view text,
                                          uint64_t timeout_ns = 60'000'000'000ull);
    // On the app Thread: dispatch with a callback.
    void call_async(const Json& request, std::function<void(Json)> done);

    // --- config ---
    // {"subsystems":[{"subsystem":name,"config":[...]}, ...]} in init order. App Thread.
    Json save_config() const;
    Result<Json> save_subsystem_config(std::string_view name) const;
    // Parses config text. Errors carry line and column ("config: JSON syntax error at line 3,
    // column 7: ..."). Any thread.
    static Result<Json> parse_config_text(std::string_view text);
    static Result<Json> read_config_file(const std::string& path);
    // Loads a config on the app Thread: entries of the methods allowed in the current state,
    // subsystems in dependency order; if still in startup and init_after, runs
    // framework_start_init and then the remaining entries. done(Result) with a message like
    // "config: subsystem 'bdev' entry 2 (bdev_malloc_create): <error message>".
    void load_config(const Json& config, bool init_after, std::function<void(Result<void>)> done);

    // Internal (config loader): entries kept for framework_start_init under --wait-for-rpc.
    void pending_runtime_config_for_loader(Json entries);

    // Socket path the server listens on ("" when none), after start().
    const std::string& listen_path() const noexcept;

private:
    friend class Server;
    void init_next(size_t i, std::function<void(Result<void>)> done);
    void fini_next(size_t i);
    void finish_stop();
    static runtime::PollStatus stop_poll(void* ctx);

    runtime::Scheduler& scheduler_;
    AppOptions options_;
    std::unique_ptr<runtime::Host> own_host_;  // destroyed last: module state outlives the rest
    runtime::Host* host_;
    runtime::Thread* thread_;
    Registry registry_;
    std::vector<std::unique_ptr<Subsystem>> subsystems_;
    std::vector<const Subsystem*> init_order_;
    size_t initialized_count_ = 0;
    bool init_running_ = false;
    std::vector<std::function<void()>> init_waiters_;
    std::optional<Json> pending_runtime_config_;
    std::unique_ptr<Server> server_;
    runtime::Poller* stop_poller_ = nullptr;
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> stopping_{false};
    std::atomic<bool> stopped_{false};
    std::string empty_;
};

}  // namespace strata::rpc
