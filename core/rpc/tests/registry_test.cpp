#include <gtest/gtest.h>

#include <strata/rpc/registry.h>

namespace strata::rpc {
namespace {

using PT = ParamType;

class RegistryTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(reg.add({"create",
                             "make a thing",
                             {{"name", PT::string, true, "name", nullptr},
                              {"size", PT::int_, false, "size", 0},
                              {"count", PT::uint, false, "count", 1},
                              {"flag", PT::bool_, false, "", nullptr},
                              {"ratio", PT::number, false, "", nullptr},
                              {"opts", PT::object, false, "", nullptr},
                              {"list", PT::array, false, "", nullptr}},
                             Allowed::runtime, "test", true,
                             [](const Json& p, Responder r) { r.result(p); }})
                        .ok());
        ASSERT_TRUE(reg.add({"early", "startup only", {}, Allowed::startup, "", true,
                             [](const Json&, Responder r) { r.result(true); }})
                        .ok());
        ASSERT_TRUE(reg.add({"later", "held responder", {}, Allowed::both, "", true,
                             [this](const Json&, Responder r) { held = std::move(r); }})
                        .ok());
        ASSERT_TRUE(reg.add({"dropper", "drops responder", {}, Allowed::both, "", true,
                             [](const Json&, Responder) {}})
                        .ok());
        ASSERT_TRUE(reg.add({"thrower", "throws", {}, Allowed::both, "", true,
                             [](const Json&, Responder) { throw std::runtime_error("boom"); }})
                        .ok());
        reg.set_state(State::runtime);
    }

    Json run(const Json& req) {
        Json out;
        bool called = false;
        reg.dispatch(req, [&](Json r) {
            out = std::move(r);
            called = true;
        });
        EXPECT_TRUE(called);
        return out;
    }
    Json run_text(const char* text) { return run(Json::parse(text)); }
    static int code(const Json& r) { return r["error"]["code"].get<int>(); }
    static std::string msg(const Json& r) { return r["error"]["message"].get<std::string>(); }

    Registry reg;
    Responder held;
};

TEST_F(RegistryTest, ValidCallEchoesParams) {
    auto r = run(Registry::make_request("create", {{"name", "a"}, {"size", -3}}, 7));
    EXPECT_EQ(r["id"], 7);
    EXPECT_EQ(r["result"]["name"], "a");
    EXPECT_EQ(r["result"]["size"], -3);
}

TEST_F(RegistryTest, SchemaErrorsNameTheField) {
    auto r = run(Registry::make_request("create", {{"name", "a"}, {"foo", 1}}));
    EXPECT_EQ(code(r), error_code::invalid_params);
    EXPECT_NE(msg(r).find("unknown parameter 'foo'"), std::string::npos) << msg(r);

    r = run(Registry::make_request("create", {{"name", "a"}, {"size", "big"}}));
    EXPECT_EQ(code(r), -32602);
    EXPECT_NE(msg(r).find("'size' must be an integer"), std::string::npos) << msg(r);

    r = run(Registry::make_request("create", {{"size", 1}}));
    EXPECT_NE(msg(r).find("missing parameter 'name'"), std::string::npos) << msg(r);

    r = run(Registry::make_request("create", {{"name", "a"}, {"count", -1}}));
    EXPECT_NE(msg(r).find("'count' must be a non-negative integer"), std::string::npos);
    r = run(Registry::make_request("create", {{"name", "a"}, {"flag", 1}}));
    EXPECT_NE(msg(r).find("'flag' must be a boolean"), std::string::npos);
    r = run(Registry::make_request("create", {{"name", "a"}, {"ratio", "x"}}));
    EXPECT_NE(msg(r).find("'ratio' must be a number"), std::string::npos);
    r = run(Registry::make_request("create", {{"name", "a"}, {"opts", 1}}));
    EXPECT_NE(msg(r).find("'opts' must be an object"), std::string::npos);
    r = run(Registry::make_request("create", {{"name", "a"}, {"list", 1}}));
    EXPECT_NE(msg(r).find("'list' must be an array"), std::string::npos);
    r = run(Registry::make_request("create", Json::array({1, 2})));
    EXPECT_EQ(code(r), -32602);
    EXPECT_TRUE(run(Registry::make_request("create", {{"name", "a"}, {"ratio", 1}}))
                    .contains("result"));
}

TEST_F(RegistryTest, InvalidRequests) {
    EXPECT_EQ(code(run_text(R"({"method":"create","id":1})")), error_code::invalid_request);
    EXPECT_EQ(code(run_text(R"({"jsonrpc":"1.0","method":"create","id":1})")), -32600);
    EXPECT_EQ(code(run_text(R"({"jsonrpc":"2.0","method":5,"id":1})")), -32600);
    EXPECT_EQ(code(run_text(R"({"jsonrpc":"2.0","method":"x","id":{}})")), -32600);
    EXPECT_EQ(code(run_text(R"({"jsonrpc":"2.0","method":"x","id":1,"extra":1})")), -32600);
    EXPECT_EQ(code(run_text(R"(5)")), -32600);
    EXPECT_EQ(code(run_text(R"([])")), -32600);
    auto r = run_text(R"({"jsonrpc":"2.0","method":"nope","id":"abc"})");
    EXPECT_EQ(code(r), error_code::method_not_found);
    EXPECT_EQ(r["id"], "abc");
}

TEST_F(RegistryTest, NotificationsGetNoResponse) {
    EXPECT_TRUE(run_text(R"({"jsonrpc":"2.0","method":"create","params":{"name":"a"}})")
                    .is_discarded());
    EXPECT_TRUE(run_text(R"({"jsonrpc":"2.0","method":"nope"})").is_discarded());
    // A batch of only notifications: nothing at all.
    EXPECT_TRUE(run_text(R"([{"jsonrpc":"2.0","method":"nope"},
                             {"jsonrpc":"2.0","method":"early"}])")
                    .is_discarded());
}

TEST_F(RegistryTest, BatchMixesResultsErrorsAndNotifications) {
    auto r = run_text(R"([{"jsonrpc":"2.0","method":"create","params":{"name":"x"},"id":1},
                          {"jsonrpc":"2.0","method":"create","params":{"name":"n"}},
                          {"jsonrpc":"2.0","method":"nope","id":2},
                          7])");
    ASSERT_TRUE(r.is_array());
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0]["result"]["name"], "x");
    EXPECT_EQ(r[1]["error"]["code"], -32601);
    EXPECT_EQ(r[2]["error"]["code"], -32600);
}

TEST_F(RegistryTest, StateGatingMatchesSpdk) {
    auto r = run(Registry::make_request("early"));
    EXPECT_EQ(code(r), error_code::invalid_state);
    EXPECT_NE(msg(r).find("before framework is initialized"), std::string::npos);
    reg.set_state(State::startup);
    r = run(Registry::make_request("create", {{"name", "a"}}));
    EXPECT_EQ(code(r), -1);
    EXPECT_EQ(msg(r), "Method may only be called after framework is initialized using "
                      "framework_start_init RPC.");
    EXPECT_TRUE(run(Registry::make_request("early")).contains("result"));
}

TEST_F(RegistryTest, AsyncAndDroppedResponders) {
    Json out;
    bool called = false;
    reg.dispatch(Registry::make_request("later", nullptr, 9), [&](Json r) {
        out = r;
        called = true;
    });
    EXPECT_FALSE(called);
    held.result(42);
    EXPECT_TRUE(called);
    EXPECT_EQ(out["result"], 42);
    held.result(43);  // second reply ignored (responder now empty)

    auto r = run(Registry::make_request("dropper"));
    EXPECT_EQ(code(r), error_code::internal_error);
    EXPECT_NE(msg(r).find("did not respond"), std::string::npos);
    r = run(Registry::make_request("thrower"));
    EXPECT_EQ(code(r), error_code::internal_error);
    EXPECT_NE(msg(r).find("boom"), std::string::npos);
}

TEST_F(RegistryTest, AliasesAndDuplicates) {
    EXPECT_EQ(reg.add({"create", "", {}, Allowed::both, "", true,
                       [](const Json&, Responder r) { r.result(1); }})
                  .code(),
              Errc::already_exists);
    ASSERT_TRUE(reg.add_alias("make", "create").ok());
    EXPECT_EQ(reg.add_alias("x", "missing").code(), Errc::not_found);
    EXPECT_EQ(reg.find("make"), reg.find("create"));
    auto names = reg.names(true);
    EXPECT_NE(std::find(names.begin(), names.end(), "make"), names.end());
    EXPECT_TRUE(run(Registry::make_request("make", {{"name", "a"}})).contains("result"));
}

TEST_F(RegistryTest, MarkdownListsMethodsAndParams) {
    std::string md = render_markdown(reg);
    EXPECT_NE(md.find("## create"), std::string::npos);
    EXPECT_NE(md.find("| `size` | int | no | `0` |"), std::string::npos) << md;
}

}  // namespace
}  // namespace strata::rpc
