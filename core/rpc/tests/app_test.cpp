// App on the simulator: in-process calls, built-ins, subsystem order, config load/save.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include <strata/base/log.h>
#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

namespace strata::rpc {
namespace {

using PT = ParamType;

// A toy subsystem with state that round-trips through its config: a list of named items.
struct Toy {
    std::vector<std::pair<std::string, int64_t>> items;
    bool early_opt = false;
    std::vector<std::string>* events = nullptr;
    runtime::Thread* worker = nullptr;
};

void register_toy(App& app, Toy& toy, std::vector<std::string>& events, const char* name,
                  std::vector<std::string> deps) {
    toy.events = &events;
    std::string n = name;
    ASSERT_TRUE(app.add_subsystem(Subsystem{
                        n, deps,
                        [&events, n](App&, std::function<void(Result<void>)> done) {
                            events.push_back("init " + n);
                            done(Result<void>());
                        },
                        [&events, n](App&, std::function<void()> done) {
                            events.push_back("fini " + n);
                            done();
                        },
                        [&toy, n](App&, Json& cfg) {
                            if (toy.early_opt) {
                                cfg.push_back({{"method", n + "_set_options"},
                                               {"params", {{"early", true}}}});
                            }
                            for (const auto& [k, v] : toy.items) {
                                cfg.push_back({{"method", n + "_create"},
                                               {"params", {{"name", k}, {"size", v}}}});
                            }
                        }})
                    .ok());
    ASSERT_TRUE(app.registry()
                    .add({n + "_set_options", "startup option", {{"early", PT::bool_, true, "",
                                                                   nullptr}},
                          Allowed::startup, n, true,
                          [&toy](const Json& p, Responder r) {
                              toy.early_opt = p["early"].get<bool>();
                              r.result(true);
                          }})
                    .ok());
    ASSERT_TRUE(
        app.registry()
            .add({n + "_create",
                  "create an item; replies from a worker Thread",
                  {{"name", PT::string, true, "", nullptr}, {"size", PT::int_, true, "", nullptr}},
                  Allowed::runtime, n, true,
                  [&toy](const Json& p, Responder r) {
                      std::string k = p["name"].get<std::string>();
                      for (const auto& it : toy.items) {
                          if (it.first == k) {
                              r.error(Error(Errc::already_exists,
                                            "item '" + k + "' already exists"));
                              return;
                          }
                      }
                      toy.items.emplace_back(k, p["size"].get<int64_t>());
                      // Reply later from another Thread, as a real module would.
                      auto rp = std::make_shared<Responder>(std::move(r));
                      ASSERT_TRUE(toy.worker->post([rp] { rp->result(true); }).ok());
                  }})
            .ok());
}

class AppTest : public ::testing::Test {
protected:
    void make(AppOptions opts = {}) {
        sim = std::make_unique<runtime::SimScheduler>(7, 2);
        app = std::make_unique<App>(*sim, std::move(opts));
        // The framework's own methods and the log subsystem only: the module table's
        // subsystems (sim, accel, bdev, lvol, ...) have their own tests.
        register_builtins(*app);
        // The App's own worker: thread_get_stats lists only the Threads of the App's Host.
        toy_b.worker = toy_a.worker = sim->create_thread("worker", 1, &app->host());
        // Registered in reverse of dependency order on purpose.
        register_toy(*app, toy_b, events, "toyb", {"toya"});
        register_toy(*app, toy_a, events, "toya", {"log"});
    }
    Result<void> start() {
        std::optional<Result<void>> res;
        app->start([&](Result<void> r) { res = std::move(r); });
        EXPECT_TRUE(sim->run_until([&] { return res.has_value(); }, sim->now_ns() + 10'000'000'000));
        return res ? *res : Result<void>(Error(Errc::timeout, "start did not finish"));
    }
    Json rpc(const char* m, Json params = nullptr) { return app->call_method(m, params); }
    void TearDown() override {
        app.reset();
        sim.reset();
        log_set_global_level(LogLevel::notice);
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<App> app;
    Toy toy_a, toy_b;
    std::vector<std::string> events;
};

TEST_F(AppTest, InitInDependencyOrderFiniInReverse) {
    make();
    ASSERT_TRUE(start().ok());
    EXPECT_TRUE(app->initialized());
    EXPECT_EQ(events, (std::vector<std::string>{"init toya", "init toyb"}));
    auto subs = rpc("framework_get_subsystems")["result"];
    // log and SPDK's keyring, iobuf, vmd and scheduler (built in), then the toys.
    ASSERT_EQ(subs.size(), 7u);
    EXPECT_EQ(subs[0]["subsystem"], "log");
    EXPECT_EQ(subs[6]["subsystem"], "toyb");
    EXPECT_EQ(subs[6]["depends_on"][0], "toya");
    app->request_stop();
    ASSERT_TRUE(sim->run_until([&] { return app->stopped(); }, sim->now_ns() + 10'000'000'000));
    EXPECT_EQ(events.back(), "fini toya");
    EXPECT_EQ(events[2], "fini toyb");
}

TEST_F(AppTest, DependencyErrors) {
    make();
    ASSERT_TRUE(app->add_subsystem({"bad", {"missing"}, nullptr, nullptr, nullptr}).ok());
    auto r = start();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("depends on unknown subsystem 'missing'"),
              std::string::npos);
    EXPECT_EQ(app->add_subsystem({"log", {}, nullptr, nullptr, nullptr}).code(),
              Errc::already_exists);
}

TEST_F(AppTest, BuiltinsAnswerInSpdkShapes) {
    make();
    ASSERT_TRUE(start().ok());
    auto v = rpc("spdk_get_version")["result"];
    EXPECT_EQ(v["version"].get<std::string>().rfind("Strata v", 0), 0u);
    EXPECT_TRUE(v["fields"].contains("major"));
    auto methods = rpc("rpc_get_methods")["result"];
    EXPECT_NE(std::find(methods.begin(), methods.end(), "save_config"), methods.end());
    EXPECT_EQ(std::find(methods.begin(), methods.end(), "spdk_get_version"), methods.end());
    methods = rpc("rpc_get_methods", {{"include_aliases", true}})["result"];
    EXPECT_NE(std::find(methods.begin(), methods.end(), "spdk_get_version"), methods.end());
    methods = rpc("rpc_get_methods", {{"current", true}})["result"];
    EXPECT_EQ(std::find(methods.begin(), methods.end(), "framework_start_init"), methods.end());

    EXPECT_EQ(rpc("log_set_level", {{"level", "debug"}})["result"], true);
    EXPECT_EQ(rpc("log_get_level")["result"], "DEBUG");
    EXPECT_EQ(rpc("log_set_level", {{"level", "loud"}})["error"]["code"], -32602);
    EXPECT_EQ(rpc("log_set_print_level", {{"level", "WARN"}})["result"], true);
    EXPECT_EQ(rpc("log_get_print_level")["result"], "WARN");
    EXPECT_EQ(rpc("log_set_flag", {{"flag", "app"}})["result"], true);
    EXPECT_EQ(rpc("log_get_flags")["result"]["app"], true);
    EXPECT_EQ(rpc("log_clear_flag", {{"flag", "app"}})["result"], true);
    EXPECT_EQ(rpc("log_get_flags")["result"]["app"], false);
    EXPECT_EQ(rpc("log_set_flag", {{"flag", "nosuch"}})["error"]["code"], -32602);

    auto stats = rpc("thread_get_stats")["result"];
    EXPECT_EQ(stats["tick_rate"], 1'000'000'000u);
    ASSERT_EQ(stats["threads"].size(), 2u);
    EXPECT_EQ(stats["threads"][0]["name"], "app_thread");
    auto pollers = rpc("thread_get_pollers")["result"];
    EXPECT_TRUE(pollers["threads"][0].contains("active_pollers"));
    auto reactors = rpc("framework_get_reactors")["result"];
    ASSERT_EQ(reactors["reactors"].size(), 2u);
    EXPECT_EQ(reactors["reactors"][1]["lw_threads"][0]["name"], "worker");
    EXPECT_EQ(rpc("framework_wait_init")["result"], true);
    EXPECT_EQ(rpc("framework_start_init")["error"]["code"], error_code::invalid_state);
}

// Log levels are process-wide (one sink), but what each App's log RPCs set is the App's: its
// save_config replays what it asked for, whatever the other App set since.
TEST_F(AppTest, TwoAppsSaveTheLogSettingsEachSet) {
    make();
    ASSERT_TRUE(start().ok());
    AppOptions o;
    o.host_name = "other";
    App other(*sim, std::move(o));
    register_builtins(other);
    std::optional<Result<void>> started;
    other.start([&](Result<void> r) { started = std::move(r); });
    ASSERT_TRUE(sim->run_until([&] { return started.has_value(); }, sim->now_ns() + 10'000'000'000));
    auto log_config = [](App& a) {
        const Json saved = a.call_method("save_config");
        for (const Json& s : saved["result"]["subsystems"])
            if (s["subsystem"] == "log") return s["config"];
        return Json();
    };

    EXPECT_EQ(rpc("log_set_level", {{"level", "INFO"}})["result"], true);
    EXPECT_EQ(rpc("log_set_print_level", {{"level", "WARN"}})["result"], true);
    EXPECT_EQ(rpc("log_set_flag", {{"flag", "app"}})["result"], true);
    EXPECT_EQ(other.call_method("log_set_level", {{"level", "ERROR"}})["result"], true);
    EXPECT_EQ(other.call_method("log_set_print_level", {{"level", "DEBUG"}})["result"], true);
    EXPECT_EQ(log_global_level(), LogLevel::error);  // the process's: the last set
    EXPECT_EQ(rpc("log_get_print_level")["result"], "WARN");
    EXPECT_EQ(other.call_method("log_get_print_level")["result"], "DEBUG");
    EXPECT_EQ(log_config(*app),
              Json::parse(R"([{"method":"log_set_level","params":{"level":"INFO"}},
                              {"method":"log_set_print_level","params":{"level":"WARN"}},
                              {"method":"log_set_flag","params":{"flag":"app"}}])"));
    EXPECT_EQ(log_config(other),
              Json::parse(R"([{"method":"log_set_level","params":{"level":"ERROR"}},
                              {"method":"log_set_print_level","params":{"level":"DEBUG"}}])"));
    EXPECT_EQ(rpc("log_clear_flag", {{"flag", "app"}})["result"], true);
    EXPECT_EQ(log_config(*app).size(), 2u);
}

TEST_F(AppTest, HandleRawLikeTheSocket) {
    make();
    ASSERT_TRUE(start().ok());
    auto out = app->handle_raw(R"({"jsonrpc":"2.0","method":"log_get_level","id":1}
                               {"jsonrpc":"2.0","method":"log_get_level"}
                               [{"jsonrpc":"2.0","method":"x","id":2}]{bad})");
    ASSERT_TRUE(out.has_value());
    auto nl1 = out->find('\n');
    auto nl2 = out->find('\n', nl1 + 1);
    EXPECT_EQ(Json::parse(out->substr(0, nl1))["result"], "NOTICE");
    EXPECT_EQ(Json::parse(out->substr(nl1 + 1, nl2 - nl1 - 1))[0]["error"]["code"], -32601);
    EXPECT_EQ(Json::parse(out->substr(nl2 + 1))["error"]["code"], -32700);
    EXPECT_FALSE(app->handle_raw(R"({"jsonrpc":"2.0","method":"log_get_level"})").has_value());
    EXPECT_EQ(Json::parse(*app->handle_raw("{\"a\":"))["error"]["code"], -32700);
    EXPECT_EQ(Json::parse(*app->handle_raw("nonsense"))["error"]["code"], -32700);
}

const char* kConfig = R"({"subsystems":[
  {"subsystem":"toyb","config":[{"method":"toyb_create","params":{"name":"b0","size":5}}]},
  {"subsystem":"toya","config":[{"method":"toya_set_options","params":{"early":true}},
                                {"method":"toya_create","params":{"name":"a0","size":1}},
                                {"method":"toya_create","params":{"name":"a1","size":2}}]},
  {"subsystem":"log","config":[{"method":"log_set_level","params":{"level":"INFO"}}]}]})";

TEST_F(AppTest, ConfigLoadSaveRoundTrip) {
    AppOptions o;
    o.config = Json::parse(kConfig);
    make(o);
    ASSERT_TRUE(start().ok());
    EXPECT_TRUE(toy_a.early_opt);
    ASSERT_EQ(toy_a.items.size(), 2u);
    ASSERT_EQ(toy_b.items.size(), 1u);
    EXPECT_EQ(log_global_level(), LogLevel::info);
    Json saved = rpc("save_config")["result"];
    ASSERT_EQ(saved["subsystems"].size(), 7u);
    EXPECT_EQ(saved["subsystems"][5]["subsystem"], "toya");  // init order
    EXPECT_EQ(saved["subsystems"][5]["config"][0]["method"], "toya_set_options");

    // Load what was saved into a fresh App: saving again gives the same document.
    TearDown();
    events.clear();
    toy_a = Toy{};
    toy_b = Toy{};
    AppOptions o2;
    o2.config = saved;
    make(o2);
    ASSERT_TRUE(start().ok());
    EXPECT_EQ(rpc("save_config")["result"], saved);
    auto one = rpc("save_subsystem_config", {{"name", "toyb"}})["result"];
    EXPECT_EQ(one, saved["subsystems"][6]);
    EXPECT_EQ(rpc("save_subsystem_config", {{"name", "nope"}})["error"]["code"], -32602);
}

TEST_F(AppTest, ConfigWithoutRuntimeEntriesStillInitializes) {
    AppOptions o;
    o.config = Json::parse(R"({"subsystems":[{"subsystem":"log","config":[
        {"method":"log_set_level","params":{"level":"WARN"}}]}]})");
    make(o);
    ASSERT_TRUE(start().ok());
    EXPECT_TRUE(app->initialized());
    EXPECT_EQ(events.size(), 2u);
    EXPECT_EQ(rpc("framework_wait_init")["result"], true);
}

TEST_F(AppTest, WaitForRpcDefersRuntimeEntries) {
    AppOptions o;
    o.config = Json::parse(kConfig);
    o.wait_for_rpc = true;
    make(o);
    ASSERT_TRUE(start().ok());
    EXPECT_FALSE(app->initialized());
    EXPECT_TRUE(toy_a.early_opt);
    EXPECT_TRUE(toy_a.items.empty());
    auto r = rpc("toya_create", {{"name", "z"}, {"size", 1}});
    EXPECT_EQ(r["error"]["code"], -1);
    EXPECT_TRUE(events.empty());
    EXPECT_EQ(rpc("framework_start_init")["result"], true);
    EXPECT_TRUE(app->initialized());
    EXPECT_EQ(toy_a.items.size(), 2u);
    EXPECT_EQ(toy_b.items.size(), 1u);
}

TEST_F(AppTest, LoadConfigRpcAtRuntime) {
    make();
    ASSERT_TRUE(start().ok());
    auto r = rpc("load_config", Json::parse(kConfig));
    EXPECT_EQ(r["result"], true) << r.dump();
    EXPECT_EQ(toy_a.items.size(), 2u);
    EXPECT_FALSE(toy_a.early_opt);  // startup-only entry skipped at runtime
    r = rpc("load_config", Json::parse(kConfig));
    ASSERT_TRUE(r.contains("error"));
    EXPECT_EQ(r["error"]["message"],
              "config: subsystem 'toya' entry 1 (toya_create): item 'a0' already exists "
              "(code -17)");
}

struct BadConfig {
    const char* text;
    const char* message;
};

TEST_F(AppTest, BadConfigMessages) {
    const BadConfig cases[] = {
        {"[]", "config: top level must be a JSON object"},
        {R"({"subsystems":{}})", "config: 'subsystems' must be an array"},
        {R"({"subsystem":[]})", "config: unknown top-level member 'subsystem'"},
        {R"({"subsystems":[{"subsystem":"zzz","config":[]}]})",
         "config: unknown subsystem 'zzz'"},
        {R"({"subsystems":[{"subsystem":"toya","config":[{"method":"toya_create",
            "params":{"name":"a","size":"x"}}]}]})",
         "config: subsystem 'toya' entry 0 (toya_create): Invalid parameters: 'size' must be "
         "an integer (code -32602)"},
        {R"({"subsystems":[{"subsystem":"toya","config":[{"method":"toya_create","params":{"name":"a","size":1}},{"method":"nope"}]}]})",
         "config: subsystem 'toya' entry 1 (nope): Method not found"},
        {R"({"subsystems":[{"subsystem":"toya","config":[{"params":{}}]}]})",
         "config: subsystem 'toya' entry 0: needs a 'method' string"},
        {R"({"subsystems":[{"subsystem":"toya","config":[{"method":"toya_create","p":1}]}]})",
         "config: subsystem 'toya' entry 0 (toya_create): unknown member 'p'"},
    };
    for (const auto& c : cases) {
        AppOptions o;
        o.config = Json::parse(c.text);
        make(o);
        auto r = start();
        ASSERT_FALSE(r.ok()) << c.text;
        EXPECT_EQ(r.error().message(), c.message);
        TearDown();
    }
}

TEST(AppConfigText, SyntaxErrorsCarryLineAndColumn) {
    auto r = App::parse_config_text("{\n  \"subsystems\": [\n    {,\n]}");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("config: JSON syntax error at line 3, column 6"),
              std::string::npos)
        << r.error().message();
    auto big = App::parse_config_text("{\"subsystems\": 1e99999}");
    ASSERT_FALSE(big.ok());  // nlohmann reports this one as out_of_range, not parse_error
    EXPECT_NE(big.error().message().find("config: invalid JSON: number overflow"),
              std::string::npos)
        << big.error().message();
    auto f = App::read_config_file("/nonexistent/strata.json");
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().message(),
              "config: cannot read '/nonexistent/strata.json': No such file or directory");
}

TEST(AppDeterminism, SameSeedSameTrace) {
    auto run = [] {
        runtime::SimScheduler sim(99, 2);
        App app(sim);
        stack::register_all_modules(app);
        bool done = false;
        app.start([&](Result<void>) { done = true; });
        sim.run_until([&] { return done; });
        app.call_method("thread_get_stats");
        app.call_method("framework_get_reactors");
        return sim.trace_hash();
    };
    EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace strata::rpc
