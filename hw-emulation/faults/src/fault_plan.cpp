#include <strata/hwemu/faults/fault_plan.h>

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace strata::hwemu {

namespace {

constexpr std::pair<FaultAction, std::string_view> kActions[] = {
    {FaultAction::error_status, "error_status"},
    {FaultAction::delay, "delay"},
    {FaultAction::drop_completion, "drop_completion"},
    {FaultAction::corrupt_read, "corrupt_read"},
    {FaultAction::fatal_status, "fatal_status"},
    {FaultAction::surprise_remove, "surprise_remove"},
    {FaultAction::power_cut, "power_cut"},
};

bool fields_match(const FaultMatch& m, const FaultSubject& s) {
    if (m.opcode && *m.opcode != s.opcode) return false;
    if (m.queue_id && *m.queue_id != s.queue_id) return false;
    if (m.nsid && *m.nsid != s.nsid) return false;
    if (m.lba_first || m.lba_last) {
        if (s.block_count == 0) return false;
        const uint64_t first = m.lba_first.value_or(0);
        const uint64_t last = m.lba_last.value_or(UINT64_MAX);
        const uint64_t cmd_last = s.lba + s.block_count - 1 < s.lba ? UINT64_MAX : s.lba + s.block_count - 1;
        if (cmd_last < first || s.lba > last) return false;
    }
    return true;
}

}  // namespace

std::string_view fault_action_name(FaultAction action) noexcept {
    for (const auto& [a, n] : kActions)
        if (a == action) return n;
    return "?";
}

Result<FaultAction> parse_fault_action(std::string_view name) {
    for (const auto& [a, n] : kActions)
        if (n == name) return a;
    std::string known;
    for (const auto& [a, n] : kActions) known += fmt::format("{}{}", known.empty() ? "" : ", ", n);
    return Error(Errc::invalid_argument,
                 fmt::format("unknown fault action '{}' (known: {})", name, known));
}

FaultPlan::FaultPlan(uint64_t seed) : prng_(seed) {}

uint32_t FaultPlan::add(FaultRule rule) {
    const uint32_t id = next_id_++;
    entries_.push_back(Entry{id, std::move(rule), 0, 0});
    return id;
}

bool FaultPlan::remove(uint32_t id) {
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.id == id; });
    if (it == entries_.end()) return false;
    entries_.erase(it);
    return true;
}

void FaultPlan::clear() { entries_.clear(); }

const FaultRule* FaultPlan::match(const FaultSubject& subject) {
    for (Entry& e : entries_) {
        const FaultMatch& m = e.rule.match;
        if (m.max_hits != 0 && e.hits >= m.max_hits) continue;
        if (!fields_match(m, subject)) continue;
        ++e.matched;
        if (m.nth != 0 && e.matched != m.nth) continue;
        if (m.probability < 1.0) {
            // 53 random bits -> [0, 1): the same seed gives the same draws.
            const double draw = static_cast<double>(prng_.next() >> 11) * 0x1.0p-53;
            if (draw >= m.probability) continue;
        }
        ++e.hits;
        return &e.rule;
    }
    return nullptr;
}

uint64_t FaultPlan::hits(uint32_t id) const {
    for (const Entry& e : entries_)
        if (e.id == id) return e.hits;
    return 0;
}

std::vector<FaultRule> FaultPlan::rules() const {
    std::vector<FaultRule> out;
    for (const Entry& e : entries_) out.push_back(e.rule);
    return out;
}

Result<FaultRule> fault_rule_from_json(const nlohmann::json& j) {
    if (!j.is_object()) return Error(Errc::invalid_argument, "a fault rule is a JSON object");
    FaultRule r;
    auto bad = [](std::string_view key, std::string_view want) {
        return Error(Errc::invalid_argument, fmt::format("fault rule: '{}' must be {}", key, want));
    };
    auto get_uint = [&](const nlohmann::json& v, std::string_view key, uint64_t max,
                        uint64_t& out) -> Result<void> {
        if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
            return bad(key, "a non-negative integer");
        const uint64_t x = v.get<uint64_t>();
        if (x > max) return bad(key, fmt::format("at most {}", max));
        out = x;
        return {};
    };
    bool have_action = false;
    std::optional<uint64_t> sct, sc;
    for (const auto& [key, v] : j.items()) {
        uint64_t x = 0;
        if (key == "name") {
            if (!v.is_string()) return bad(key, "a string");
            r.name = v.get<std::string>();
        } else if (key == "action") {
            if (!v.is_string()) return bad(key, "a string");
            auto a = parse_fault_action(v.get<std::string>());
            if (!a) return a.error();
            r.action = *a;
            have_action = true;
        } else if (key == "opcode") {
            if (auto e = get_uint(v, key, 0xFF, x); !e) return e.error();
            r.match.opcode = static_cast<uint8_t>(x);
        } else if (key == "queue_id") {
            if (auto e = get_uint(v, key, 0xFFFF, x); !e) return e.error();
            r.match.queue_id = static_cast<uint16_t>(x);
        } else if (key == "nsid") {
            if (auto e = get_uint(v, key, 0xFFFFFFFFu, x); !e) return e.error();
            r.match.nsid = static_cast<uint32_t>(x);
        } else if (key == "lba_first") {
            if (auto e = get_uint(v, key, UINT64_MAX, x); !e) return e.error();
            r.match.lba_first = x;
        } else if (key == "lba_last") {
            if (auto e = get_uint(v, key, UINT64_MAX, x); !e) return e.error();
            r.match.lba_last = x;
        } else if (key == "nth") {
            if (auto e = get_uint(v, key, UINT64_MAX, x); !e) return e.error();
            r.match.nth = x;
        } else if (key == "max_hits") {
            if (auto e = get_uint(v, key, UINT64_MAX, x); !e) return e.error();
            r.match.max_hits = x;
        } else if (key == "probability") {
            if (!v.is_number()) return bad(key, "a number in [0, 1]");
            const double p = v.get<double>();
            if (!(p >= 0.0 && p <= 1.0)) return bad(key, "a number in [0, 1]");
            r.match.probability = p;
        } else if (key == "status") {
            if (auto e = get_uint(v, key, 0xFFFF, x); !e) return e.error();
            r.status = static_cast<uint16_t>(x);
        } else if (key == "sct") {
            if (auto e = get_uint(v, key, 7, x); !e) return e.error();
            sct = x;
        } else if (key == "sc") {
            if (auto e = get_uint(v, key, 0xFF, x); !e) return e.error();
            sc = x;
        } else if (key == "delay_us") {
            if (auto e = get_uint(v, key, UINT64_MAX / 1000, x); !e) return e.error();
            r.delay_ns = x * 1000;
        } else if (key == "delay_ns") {
            if (auto e = get_uint(v, key, UINT64_MAX, x); !e) return e.error();
            r.delay_ns = x;
        } else if (key == "torn") {
            if (!v.is_boolean()) return bad(key, "true or false");
            r.torn = v.get<bool>();
        } else {
            return Error(Errc::invalid_argument, fmt::format("fault rule: unknown key '{}'", key));
        }
    }
    if (!have_action) return Error(Errc::invalid_argument, "fault rule: 'action' is required");
    if (sct || sc) r.status = static_cast<uint16_t>((sct.value_or(0) << 8) | sc.value_or(0));
    if (r.match.lba_first && r.match.lba_last && *r.match.lba_first > *r.match.lba_last)
        return Error(Errc::invalid_argument, "fault rule: 'lba_first' is above 'lba_last'");
    if (r.action == FaultAction::error_status && r.status == 0)
        return Error(Errc::invalid_argument,
                     "fault rule: error_status needs a non-zero 'status' (or 'sct'/'sc')");
    return r;
}

nlohmann::json to_json(const FaultRule& r) {
    nlohmann::json j = {{"name", r.name}, {"action", fault_action_name(r.action)}};
    if (r.match.opcode) j["opcode"] = *r.match.opcode;
    if (r.match.queue_id) j["queue_id"] = *r.match.queue_id;
    if (r.match.nsid) j["nsid"] = *r.match.nsid;
    if (r.match.lba_first) j["lba_first"] = *r.match.lba_first;
    if (r.match.lba_last) j["lba_last"] = *r.match.lba_last;
    if (r.match.nth) j["nth"] = r.match.nth;
    if (r.match.probability < 1.0) j["probability"] = r.match.probability;
    if (r.match.max_hits) j["max_hits"] = r.match.max_hits;
    if (r.status) j["status"] = r.status;
    if (r.delay_ns) j["delay_ns"] = r.delay_ns;
    if (r.torn) j["torn"] = true;
    return j;
}

}  // namespace strata::hwemu
