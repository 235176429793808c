#include <strata/rpc/registry.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>

#include <fmt/format.h>

#include <strata/base/log.h>
#include <strata/base/random.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>

namespace strata::rpc {

STRATA_LOG_COMPONENT(rpc);

int errc_error_code(Errc code) noexcept { return -errc_to_errno(code); }

std::string_view param_type_name(ParamType t) noexcept {
    switch (t) {
        case ParamType::string: return "string";
        case ParamType::int_: return "int";
        case ParamType::uint: return "uint";
        case ParamType::bool_: return "bool";
        case ParamType::number: return "number";
        case ParamType::object: return "object";
        case ParamType::array: return "array";
        case ParamType::any: return "any";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------------
// Responder

struct Responder::State {
    Json id;
    bool notification = false;
    runtime::Thread* reply_thread = nullptr;
    std::function<void(Json)> done;
    std::atomic<bool> replied{false};
};

Responder& Responder::operator=(Responder&& o) noexcept {
    if (this != &o) {
        if (state_ && !state_->replied.load()) {
            finish(Registry::make_error(state_->id, error_code::internal_error,
                                        "handler did not respond"));
        }
        state_ = std::move(o.state_);
    }
    return *this;
}

Responder::~Responder() {
    // During unwinding from a throwing handler, dispatch's catch answers with the reason.
    if (state_ && !state_->replied.load() && std::uncaught_exceptions() == 0) {
        finish(Registry::make_error(state_->id, error_code::internal_error,
                                    "handler did not respond"));
    }
}

bool Responder::notification() const noexcept { return state_ && state_->notification; }

void Responder::result(Json value) {
    if (!state_) return;
    Json r = {{"jsonrpc", "2.0"}, {"id", state_->id}, {"result", std::move(value)}};
    finish(std::move(r));
}

void Responder::error(int code, std::string message, Json data) {
    if (!state_) return;
    finish(Registry::make_error(state_->id, code, std::move(message), std::move(data)));
}

void Responder::error(const Error& e) { error(errc_error_code(e.code()), e.message()); }

void Responder::reply(const Result<void>& res) {
    if (res) result(true);
    else error(res.error());
}

namespace {
// Under the simulator every reply goes into the run's trace (runtime::trace_event), so two runs
// of a seed must agree on what each RPC answered, not only on the order things ran.
void deliver_reply(Responder::State& st, Json response) {
    runtime::Thread* self = runtime::current_thread();
    if (self != nullptr && self->scheduler().event_trace() != nullptr && !response.is_discarded()) {
        TraceHash h;
        for (unsigned char c : response.dump()) h.add(c);
        runtime::trace_event(runtime::TraceKind::rpc_reply, h.value());
    }
    st.done(std::move(response));
}
}  // namespace

void Responder::finish(Json response) {
    auto st = std::move(state_);
    if (!st || st->replied.exchange(true)) return;
    if (st->notification) response = Json(Json::value_t::discarded);
    runtime::Thread* t = st->reply_thread;
    if (t == nullptr || runtime::current_thread() == t) {
        deliver_reply(*st, std::move(response));
        return;
    }
    Status s = t->post([st, r = std::move(response)]() mutable { deliver_reply(*st, std::move(r)); });
    if (!s.ok()) {
        STRATA_WARNLOG(log_rpc, "rpc reply dropped: app thread refused the message ({})",
                       s.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Registry

Result<void> Registry::add(MethodSpec spec) {
    if (spec.name.empty() || !spec.handler) {
        return Error(Errc::invalid_argument, "rpc method needs a name and a handler");
    }
    if (find(spec.name) != nullptr) {
        return Error(Errc::already_exists, fmt::format("rpc method '{}' already registered",
                                                       spec.name));
    }
    for (const auto& p : spec.params) {
        if (p.name.empty()) return Error(Errc::invalid_argument, "parameter without a name");
    }
    methods_.push_back(std::make_unique<MethodSpec>(std::move(spec)));
    return {};
}

Result<void> Registry::add_alias(std::string alias, std::string target) {
    if (find(alias) != nullptr) {
        return Error(Errc::already_exists, fmt::format("rpc method '{}' already registered",
                                                       alias));
    }
    if (find(target) == nullptr) {
        return Error(Errc::not_found, fmt::format("alias target '{}' not registered", target));
    }
    aliases_.emplace_back(std::move(alias), std::move(target));
    return {};
}

const MethodSpec* Registry::find(std::string_view name) const {
    for (const auto& m : methods_) {
        if (m->name == name) return m.get();
    }
    for (const auto& [alias, target] : aliases_) {
        if (alias == name) return find(target);
    }
    return nullptr;
}

std::vector<std::string> Registry::names(bool include_aliases) const {
    std::vector<std::string> out;
    for (const auto& m : methods_) out.push_back(m->name);
    if (include_aliases) {
        for (const auto& a : aliases_) out.push_back(a.first);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<const MethodSpec*> Registry::methods() const {
    std::vector<const MethodSpec*> out;
    for (const auto& m : methods_) out.push_back(m.get());
    std::sort(out.begin(), out.end(),
              [](const MethodSpec* a, const MethodSpec* b) { return a->name < b->name; });
    return out;
}

namespace {

bool type_matches(ParamType t, const Json& v) {
    switch (t) {
        case ParamType::string: return v.is_string();
        case ParamType::int_: return v.is_number_integer();
        case ParamType::uint: return v.is_number_unsigned() ||
                                     (v.is_number_integer() && v.get<int64_t>() >= 0);
        case ParamType::bool_: return v.is_boolean();
        case ParamType::number: return v.is_number();
        case ParamType::object: return v.is_object();
        case ParamType::array: return v.is_array();
        case ParamType::any: return true;
    }
    return false;
}

const char* type_phrase(ParamType t) {
    switch (t) {
        case ParamType::string: return "a string";
        case ParamType::int_: return "an integer";
        case ParamType::uint: return "a non-negative integer";
        case ParamType::bool_: return "a boolean";
        case ParamType::number: return "a number";
        case ParamType::object: return "an object";
        case ParamType::array: return "an array";
        case ParamType::any: return "any value";
    }
    return "?";
}

}  // namespace

std::optional<std::string> Registry::validate(const MethodSpec& spec, const Json& params) {
    if (!params.is_object()) return std::string("params must be an object");
    if (spec.strict) {
        for (auto it = params.begin(); it != params.end(); ++it) {
            bool known = std::any_of(spec.params.begin(), spec.params.end(),
                                     [&](const ParamSpec& p) { return p.name == it.key(); });
            if (!known) return fmt::format("unknown parameter '{}'", it.key());
        }
    }
    for (const auto& p : spec.params) {
        auto it = params.find(p.name);
        if (it == params.end()) {
            if (p.required) return fmt::format("missing parameter '{}'", p.name);
            continue;
        }
        if (!type_matches(p.type, *it)) {
            return fmt::format("'{}' must be {}", p.name, type_phrase(p.type));
        }
    }
    return std::nullopt;
}

Json Registry::make_request(std::string_view method, Json params, Json id) {
    Json r = {{"jsonrpc", "2.0"}, {"method", method}, {"id", std::move(id)}};
    if (!params.is_null()) r["params"] = std::move(params);
    return r;
}

Json Registry::make_error(const Json& id, int code, std::string message, Json data) {
    Json err = {{"code", code}, {"message", std::move(message)}};
    if (!data.is_null()) err["data"] = std::move(data);
    return Json{{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

void Registry::dispatch(const Json& request, std::function<void(Json)> done) {
    if (!request.is_array()) {
        dispatch_one(request, std::move(done));
        return;
    }
    if (request.empty()) {
        done(make_error(nullptr, error_code::invalid_request, "Invalid request: empty batch"));
        return;
    }
    struct Batch {
        std::vector<Json> responses;
        size_t remaining;
        std::function<void(Json)> done;
    };
    auto batch = std::make_shared<Batch>();
    batch->remaining = request.size();
    batch->done = std::move(done);
    // Copy the requests first: a synchronous completion must not outlive `request`'s caller.
    std::vector<Json> items(request.begin(), request.end());
    for (auto& item : items) {
        dispatch_one(item, [batch](Json r) {
            if (!r.is_discarded()) batch->responses.push_back(std::move(r));
            if (--batch->remaining == 0) {
                if (batch->responses.empty()) {
                    batch->done(Json(Json::value_t::discarded));
                } else {
                    batch->done(Json(std::move(batch->responses)));
                }
            }
        });
    }
}

void Registry::dispatch_one(const Json& req, std::function<void(Json)> done) {
    if (!req.is_object()) {
        done(make_error(nullptr, error_code::invalid_request,
                        "Invalid request: not a JSON object"));
        return;
    }
    Json id = nullptr;
    bool notification = true;
    if (auto it = req.find("id"); it != req.end()) {
        if (!it->is_string() && !it->is_number() && !it->is_null()) {
            done(make_error(nullptr, error_code::invalid_request,
                            "Invalid request: 'id' must be a string, number or null"));
            return;
        }
        id = *it;
        notification = false;
    }
    auto fail = [&](int code, std::string msg) {
        if (notification) {
            done(Json(Json::value_t::discarded));
        } else {
            done(make_error(id, code, std::move(msg)));
        }
    };
    auto ver = req.find("jsonrpc");
    if (ver == req.end() || !ver->is_string() || *ver != "2.0") {
        fail(error_code::invalid_request, "Invalid request: 'jsonrpc' must be \"2.0\"");
        return;
    }
    auto method = req.find("method");
    if (method == req.end() || !method->is_string()) {
        fail(error_code::invalid_request, "Invalid request: 'method' must be a string");
        return;
    }
    for (auto it = req.begin(); it != req.end(); ++it) {
        if (it.key() != "jsonrpc" && it.key() != "method" && it.key() != "id" &&
            it.key() != "params") {
            fail(error_code::invalid_request,
                 fmt::format("Invalid request: unknown member '{}'", it.key()));
            return;
        }
    }
    const std::string& name = method->get_ref<const std::string&>();
    const MethodSpec* spec = find(name);
    if (spec == nullptr) {
        fail(error_code::method_not_found, fmt::format("Method not found: '{}'", name));
        return;
    }
    if (!allowed_in(spec->allowed, state_)) {
        if (state_ == State::startup) {
            fail(error_code::invalid_state,
                 "Method may only be called after framework is initialized using "
                 "framework_start_init RPC.");
        } else {
            fail(error_code::invalid_state,
                 "Method may only be called before framework is initialized. Use "
                 "--wait-for-rpc command line parameter and then issue this RPC before the "
                 "framework_start_init RPC.");
        }
        return;
    }
    Json params = Json::object();
    if (auto it = req.find("params"); it != req.end() && !it->is_null()) {
        if (!it->is_object()) {
            fail(error_code::invalid_params,
                 it->is_array() ? "Invalid parameters: params must be an object (by-name), "
                                  "not an array"
                                : "Invalid request: 'params' must be an object");
            return;
        }
        params = *it;
    }
    if (auto msg = validate(*spec, params)) {
        fail(error_code::invalid_params, "Invalid parameters: " + *msg);
        return;
    }
    auto st = std::make_shared<Responder::State>();
    st->id = id;
    st->notification = notification;
    st->reply_thread = reply_thread_;
    st->done = std::move(done);
    Responder responder(st);
    try {
        spec->handler(params, std::move(responder));
    } catch (const std::exception& e) {
        // A handler bug surfaced by input (e.g. a json type error): answer, never crash.
        STRATA_ERRLOG(log_rpc, "rpc method '{}' threw: {}", name, e.what());
        Responder late(st);
        late.error(error_code::internal_error, fmt::format("internal error: {}", e.what()));
    }
}

}  // namespace strata::rpc
