#include <gtest/gtest.h>

#include <strata/rpc/internal/framer.h>

namespace strata::rpc {
namespace {

std::vector<std::string> drain(StreamFramer& f) {
    std::vector<std::string> out;
    std::string v;
    while (f.next(v) == StreamFramer::Kind::value) out.push_back(v);
    return out;
}

TEST(Framer, SeveralValuesInOneRead) {
    StreamFramer f;
    f.feed(R"({"a":1} [1,2]  {"b":"}"}
{"c":{"d":[]}})");
    auto v = drain(f);
    ASSERT_EQ(v.size(), 4u);
    EXPECT_EQ(v[0], R"({"a":1})");
    EXPECT_EQ(v[1], "[1,2]");
    EXPECT_EQ(v[2], R"({"b":"}"})");
    EXPECT_EQ(v[3], R"({"c":{"d":[]}})");
    EXPECT_EQ(f.pending_bytes(), 0u);
}

TEST(Framer, ByteByByteSplitsAnywhere) {
    const std::string text = R"({"s":"a\"b{[","n":[1,{"x":"\\"}]}{"z":0})";
    StreamFramer f;
    std::vector<std::string> got;
    for (char c : text) {
        f.feed(std::string_view(&c, 1));
        auto v = drain(f);
        got.insert(got.end(), v.begin(), v.end());
    }
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0], R"({"s":"a\"b{[","n":[1,{"x":"\\"}]})");
    EXPECT_EQ(got[1], R"({"z":0})");
}

TEST(Framer, PartialValueIsPending) {
    StreamFramer f;
    f.feed(R"({"method":"x","par)");
    std::string v;
    EXPECT_EQ(f.next(v), StreamFramer::Kind::need_more);
    EXPECT_EQ(f.pending_bytes(), 18u);
    f.feed(R"(ams":{}})");
    EXPECT_EQ(f.next(v), StreamFramer::Kind::value);
    EXPECT_EQ(v, R"({"method":"x","params":{}})");
}

TEST(Framer, GarbageAtTopLevel) {
    StreamFramer f;
    f.feed("  hello {}");
    std::string v;
    EXPECT_EQ(f.next(v), StreamFramer::Kind::garbage);
    EXPECT_EQ(v.substr(0, 5), "hello");
}

TEST(Framer, LargeStreamCompacts) {
    StreamFramer f;
    std::string one = R"({"k":")" + std::string(1000, 'x') + R"("})";
    size_t n = 0;
    for (int i = 0; i < 500; i++) {
        f.feed(one);
        n += drain(f).size();
    }
    EXPECT_EQ(n, 500u);
    EXPECT_EQ(f.pending_bytes(), 0u);
}

}  // namespace
}  // namespace strata::rpc
