// JSON-RPC 2.0 method registry: names, parameter schemas, state gating and dispatch.
//
// Every RPC method of the stack (built-ins and each module's `<name>_rpc.cpp`) is registered
// here with a parameter schema. The schema validates requests (unknown or mistyped params are
// rejected with -32602 naming the field), and feeds rpc_get_methods and the generated
// docs/user/rpc.md, so documentation cannot drift from the code.
//
// The same registry serves the Unix-socket server (strata-tgt) and in-process callers
// (App::call, Python's world.rpc()): dispatch() takes one parsed JSON value and produces the
// JSON response; no socket is involved.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/status.h>

namespace strata::runtime {
class Thread;
}

namespace strata::rpc {

using Json = nlohmann::json;

// JSON-RPC error codes. The first five are JSON-RPC 2.0's; invalid_state is SPDK's
// SPDK_JSONRPC_ERROR_INVALID_STATE (-1), returned for a method called in a state it does not
// allow. Handlers report operation failures as -errno (SPDK convention), see errc_error_code.
namespace error_code {
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
inline constexpr int invalid_state = -1;
}  // namespace error_code

// -errno for a Strata error code (e.g. not_found -> -ENOENT), as SPDK handlers report them.
int errc_error_code(Errc code) noexcept;

// Framework states. A method is allowed in a set of them.
enum class State : uint32_t {
    startup = 1,  // before framework_start_init (only reachable with --wait-for-rpc)
    runtime = 2,  // subsystems initialized
};
enum class Allowed : uint32_t { startup = 1, runtime = 2, both = 3 };
inline bool allowed_in(Allowed a, State s) noexcept {
    return (static_cast<uint32_t>(a) & static_cast<uint32_t>(s)) != 0;
}

enum class ParamType { string, int_, uint, bool_, number, object, array, any };
std::string_view param_type_name(ParamType t) noexcept;  // "string", "int", "uint", ...

struct ParamSpec {
    std::string name;
    ParamType type = ParamType::any;
    bool required = false;
    std::string description;
    Json default_value;  // null: no default (documented as such)
};

// A response sink for one request. Move-only; call result() or error() exactly once, from
// any Thread (the reply is forwarded to the app Thread). Dropping a Responder without
// replying answers the caller with internal_error ("handler did not respond"), so a request
// can never hang because of a lost handle. Calling twice is ignored (second reply dropped).
class Responder {
public:
    Responder() = default;
    Responder(Responder&&) noexcept = default;
    Responder& operator=(Responder&&) noexcept;
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;
    ~Responder();

    void result(Json value);
    void result_bool(bool v) { result(Json(v)); }
    void error(int code, std::string message, Json data = nullptr);
    void error(const Error& e);  // code errc_error_code(e.code()), message e.message()
    // SPDK's reply for a method with nothing to return: true on success, else the error.
    void reply(const Result<void>& res);
    // Was this request a notification (no reply will be sent)? Handlers still must reply.
    bool notification() const noexcept;
    bool valid() const noexcept { return state_ != nullptr; }

    struct State;  // implementation detail
    explicit Responder(std::shared_ptr<State> s) : state_(std::move(s)) {}

private:
    void finish(Json response);
    std::shared_ptr<State> state_;
};

// Handler: runs on the app Thread with params already validated against the schema (an
// object, possibly empty; defaults are NOT filled in, read them with param_or()). It replies
// through the Responder now or later (e.g. from another Thread's completion message).
// `params` is valid only during the call: copy what a later reply needs.
using Handler = std::function<void(const Json& params, Responder responder)>;

struct MethodSpec {
    std::string name;
    std::string description;
    std::vector<ParamSpec> params;
    Allowed allowed = Allowed::runtime;
    // Subsystem that owns the method (docs grouping); "" for the framework itself.
    std::string subsystem;
    // Params that are not an object (e.g. load_config takes the whole config object and also
    // accepts any members): false skips the unknown-member check.
    bool strict = true;
    Handler handler;
};

// Helper for handlers: params[name] or the default.
template <class T>
T param_or(const Json& params, const char* name, T fallback) {
    auto it = params.find(name);
    if (it == params.end() || it->is_null()) return fallback;
    return it->get<T>();
}

// Registry: owned by the App; registration happens on any OS thread before the App starts
// (or on the app Thread later); lookups and dispatch on the app Thread only. Not thread-safe.
class Registry {
public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Errc::already_exists for a duplicate name, invalid_argument for an empty name/handler.
    Result<void> add(MethodSpec spec);
    // Another name for an existing method (e.g. spdk_get_version -> strata_get_version).
    Result<void> add_alias(std::string alias, std::string target);

    const MethodSpec* find(std::string_view name) const;  // resolves aliases
    // Method names sorted; with include_aliases the alias names too.
    std::vector<std::string> names(bool include_aliases = false) const;
    const std::vector<std::pair<std::string, std::string>>& aliases() const { return aliases_; }
    std::vector<const MethodSpec*> methods() const;  // sorted by name

    State state() const noexcept { return state_; }
    void set_state(State s) noexcept { state_ = s; }

    // Validates params against a spec. On failure: the -32602 message naming the field
    // ("unknown parameter 'foo'", "'size' must be an integer", "missing parameter 'name'").
    static std::optional<std::string> validate(const MethodSpec& spec, const Json& params);

    // Dispatches one parsed request: an object, or a batch array. On the app Thread. done()
    // receives the response (object, array for a batch) or a discarded Json (is_discarded())
    // when nothing is to be sent (notifications, batch of notifications). done() may be called
    // before dispatch() returns (synchronous handlers) or later.
    void dispatch(const Json& request, std::function<void(Json response)> done);

    // Convenience: a request object {"jsonrpc":"2.0","method":m,"id":id[,"params":p]}.
    static Json make_request(std::string_view method, Json params = nullptr, Json id = 1);
    static Json make_error(const Json& id, int code, std::string message, Json data = nullptr);

    // Where Responders hand their reply back (set by App to its Thread; null: reply inline).
    void set_reply_thread(runtime::Thread* t) noexcept { reply_thread_ = t; }

private:
    void dispatch_one(const Json& req, std::function<void(Json)> done);
    std::vector<std::unique_ptr<MethodSpec>> methods_;
    std::vector<std::pair<std::string, std::string>> aliases_;  // alias -> target
    State state_ = State::startup;
    runtime::Thread* reply_thread_ = nullptr;
};

// Renders every method of a registry as Markdown (docs/user/rpc.md).
std::string render_markdown(const Registry& registry);

}  // namespace strata::rpc
