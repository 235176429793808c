#include <strata/base/log.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace strata {
namespace {

STRATA_LOG_COMPONENT(logtest);

struct Captured {
    LogLevel level;
    std::string component;
    std::string message;
};

class LogTest : public ::testing::Test {
protected:
    void SetUp() override {
        log_set_sink([this](const LogRecord& r) {
            captured.push_back({r.level, r.component->name(), std::string(r.message)});
        });
        log_set_global_level(LogLevel::notice);
        log_logtest.set_level(std::nullopt);
    }
    void TearDown() override {
        log_set_sink({});
        log_set_global_level(LogLevel::notice);
        log_logtest.set_level(std::nullopt);
    }
    std::vector<Captured> captured;
};

struct CountsFormatting {
    int* count;
};

}  // namespace
}  // namespace strata

template <>
struct fmt::formatter<strata::CountsFormatting> : fmt::formatter<int> {
    auto format(const strata::CountsFormatting& c, format_context& ctx) const {
        ++*c.count;
        return fmt::formatter<int>::format(*c.count, ctx);
    }
};

namespace strata {
namespace {

TEST_F(LogTest, FormatsEnabledMessages) {
    STRATA_ERRLOG(log_logtest, "bad value {} in {}", 42, "field");
    ASSERT_EQ(captured.size(), 1u);
    EXPECT_EQ(captured[0].level, LogLevel::error);
    EXPECT_EQ(captured[0].component, "logtest");
    EXPECT_EQ(captured[0].message, "bad value 42 in field");
}

TEST_F(LogTest, DisabledMessagesAreNotFormatted) {
    int formatted = 0;
    STRATA_DEBUGLOG(log_logtest, "value {}", CountsFormatting{&formatted});
    EXPECT_EQ(formatted, 0);
    EXPECT_TRUE(captured.empty());
    log_logtest.set_level(LogLevel::debug);
    STRATA_DEBUGLOG(log_logtest, "value {}", CountsFormatting{&formatted});
    EXPECT_EQ(formatted, 1);
    EXPECT_EQ(captured.size(), 1u);
}

TEST_F(LogTest, ComponentLevelOverridesGlobal) {
    log_set_global_level(LogLevel::error);
    STRATA_WARNLOG(log_logtest, "hidden");
    EXPECT_TRUE(captured.empty());
    log_logtest.set_level(LogLevel::warn);
    STRATA_WARNLOG(log_logtest, "shown");
    EXPECT_EQ(captured.size(), 1u);
    log_set_global_level(LogLevel::debug);  // an explicit component level stays
    STRATA_INFOLOG(log_logtest, "still hidden");
    EXPECT_EQ(captured.size(), 1u);
    EXPECT_EQ(log_logtest.level(), LogLevel::warn);
}

TEST_F(LogTest, RegistryAndLevelNames) {
    EXPECT_EQ(log_find_component("logtest"), &log_logtest);
    EXPECT_EQ(log_find_component("no-such-component"), nullptr);
    EXPECT_EQ(log_level_parse("debug"), LogLevel::debug);
    EXPECT_EQ(log_level_parse("WARNING"), LogLevel::warn);
    EXPECT_EQ(log_level_parse("loud"), std::nullopt);
    EXPECT_EQ(log_level_name(LogLevel::notice), "NOTICE");
}

}  // namespace
}  // namespace strata
