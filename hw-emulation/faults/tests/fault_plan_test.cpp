#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <strata/hwemu/faults/fault_plan.h>

namespace strata::hwemu {
namespace {

FaultSubject io(uint8_t opc, uint64_t lba, uint64_t n, uint16_t q = 1, uint32_t nsid = 1) {
    return FaultSubject{opc, q, nsid, lba, n};
}

TEST(FaultPlan, MatchesOnEveryField) {
    FaultPlan plan;
    FaultRule r;
    r.action = FaultAction::error_status;
    r.status = 0x281;
    r.match.opcode = 2;
    r.match.queue_id = 1;
    r.match.nsid = 1;
    r.match.lba_first = 100;
    r.match.lba_last = 199;
    plan.add(r);
    EXPECT_EQ(plan.match(io(1, 150, 1)), nullptr);            // opcode
    EXPECT_EQ(plan.match(io(2, 150, 1, 2)), nullptr);         // queue
    EXPECT_EQ(plan.match(io(2, 150, 1, 1, 2)), nullptr);      // namespace
    EXPECT_EQ(plan.match(io(2, 0, 100)), nullptr);            // ends just before
    EXPECT_EQ(plan.match(io(2, 200, 5)), nullptr);            // starts just after
    EXPECT_NE(plan.match(io(2, 90, 11)), nullptr);            // overlaps the first block
    EXPECT_NE(plan.match(io(2, 199, 8)), nullptr);            // overlaps the last block
    EXPECT_EQ(plan.match(FaultSubject{2, 1, 1, 150, 0}), nullptr);  // no range: no LBA match
}

TEST(FaultPlan, NthAndMaxHits) {
    FaultPlan plan;
    FaultRule r;
    r.action = FaultAction::drop_completion;
    r.match.nth = 3;
    const uint32_t id = plan.add(r);
    EXPECT_EQ(plan.match(io(1, 0, 1)), nullptr);
    EXPECT_EQ(plan.match(io(1, 0, 1)), nullptr);
    EXPECT_NE(plan.match(io(1, 0, 1)), nullptr);
    EXPECT_EQ(plan.match(io(1, 0, 1)), nullptr);
    EXPECT_EQ(plan.hits(id), 1u);
    FaultPlan capped;
    FaultRule c;
    c.action = FaultAction::delay;
    c.match.max_hits = 2;
    capped.add(c);
    EXPECT_NE(capped.match(io(1, 0, 1)), nullptr);
    EXPECT_NE(capped.match(io(1, 0, 1)), nullptr);
    EXPECT_EQ(capped.match(io(1, 0, 1)), nullptr);
}

TEST(FaultPlan, ProbabilityIsSeeded) {
    auto run = [](uint64_t seed) {
        FaultPlan plan(seed);
        FaultRule r;
        r.action = FaultAction::corrupt_read;
        r.match.probability = 0.25;
        plan.add(r);
        std::vector<bool> fired;
        for (int i = 0; i < 2000; ++i) fired.push_back(plan.match(io(2, 0, 1)) != nullptr);
        return fired;
    };
    const auto a = run(42), b = run(42), c = run(43);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    const auto hits = std::count(a.begin(), a.end(), true);
    EXPECT_GT(hits, 400);
    EXPECT_LT(hits, 600);
}

TEST(FaultPlan, FirstFiringRuleWinsAndRemove) {
    FaultPlan plan;
    FaultRule a, b;
    a.name = "a";
    a.action = FaultAction::delay;
    a.match.opcode = 9;
    b.name = "b";
    b.action = FaultAction::fatal_status;
    plan.add(a);
    const uint32_t idb = plan.add(b);
    EXPECT_EQ(plan.match(io(9, 0, 1))->name, "a");
    EXPECT_EQ(plan.match(io(1, 0, 1))->name, "b");
    EXPECT_TRUE(plan.remove(idb));
    EXPECT_FALSE(plan.remove(idb));
    EXPECT_EQ(plan.match(io(1, 0, 1)), nullptr);
    plan.clear();
    EXPECT_EQ(plan.size(), 0u);
}

TEST(FaultPlan, JsonRoundTripAndErrors) {
    auto r = fault_rule_from_json(nlohmann::json::parse(
        R"({"name":"x","action":"error_status","opcode":2,"lba_first":1,"lba_last":9,"nth":2,
            "probability":0.5,"max_hits":3,"sct":2,"sc":129,"queue_id":4,"nsid":1})"));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->status, 0x281);
    EXPECT_EQ(*r->match.queue_id, 4);
    auto back = fault_rule_from_json(to_json(*r));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(to_json(*back), to_json(*r));
    auto delay = fault_rule_from_json(nlohmann::json::parse(R"({"action":"delay","delay_us":250})"));
    ASSERT_TRUE(delay.ok());
    EXPECT_EQ(delay->delay_ns, 250'000u);
    const char* bad[] = {
        R"([1,2])",
        R"({"opcode":2})",
        R"({"action":"explode"})",
        R"({"action":"delay","opcode":300})",
        R"({"action":"delay","probability":1.5})",
        R"({"action":"delay","colour":"red"})",
        R"({"action":"delay","lba_first":9,"lba_last":1})",
        R"({"action":"error_status"})",
        R"({"action":"power_cut","torn":"yes"})",
        R"({"action":"delay","nth":-1})",
    };
    for (const char* text : bad) {
        auto e = fault_rule_from_json(nlohmann::json::parse(text));
        EXPECT_FALSE(e.ok()) << text;
        if (!e.ok()) EXPECT_EQ(e.code(), Errc::invalid_argument);
    }
    auto unknown = fault_rule_from_json(nlohmann::json::parse(R"({"action":"delay","colour":1})"));
    EXPECT_NE(unknown.error().message().find("colour"), std::string::npos);
}

}  // namespace
}  // namespace strata::hwemu
