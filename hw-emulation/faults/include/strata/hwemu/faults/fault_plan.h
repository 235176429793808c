// The fault-plan vocabulary of the device models (NVMe, IOAT), their sim RPCs and the Python
// bindings: which commands a rule matches and what it does to them. (The sim sockets and the
// error bdev have fault controls of their own.)
//
// A rule matches a command when every field it sets matches (opcode, queue, namespace, an LBA
// range overlapping the command's blocks); then `nth` (only the n-th such command), the
// probability (drawn from the plan's seeded Prng, so a seed replays the same faults) and
// max_hits (the rule retires after that many) decide whether it fires. The first firing rule
// wins. The JSON form (fault_rule_from_json) is what Python and RPC users write:
//   {"name": "bad-read", "action": "error_status", "opcode": 2, "lba_first": 0,
//    "lba_last": 99, "nth": 3, "probability": 0.5, "max_hits": 1, "sct": 2, "sc": 129}
//
// Not thread-safe: a plan belongs to one model and is used from its poller (and configured on
// the model's Thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <strata/base/random.h>
#include <strata/base/status.h>

namespace strata::hwemu {

enum class FaultAction {
    error_status,     // complete with `status`
    delay,            // complete `delay_ns` later
    drop_completion,  // execute, never complete
    corrupt_read,     // execute, flip bytes of the data returned to the host
    fatal_status,     // controller fatal status (NVMe CSTS.CFS / IOAT channel halt)
    surprise_remove,  // the function leaves the bus
    power_cut,        // power loss (un-flushed writes lost; `torn` tears them)
};
std::string_view fault_action_name(FaultAction action) noexcept;
Result<FaultAction> parse_fault_action(std::string_view name);

struct FaultMatch {
    std::optional<uint8_t> opcode;
    std::optional<uint16_t> queue_id;
    std::optional<uint32_t> nsid;
    std::optional<uint64_t> lba_first, lba_last;  // inclusive; overlap with the command matches
    uint64_t nth = 0;           // 0: every match; n: only the n-th matching command (1-based)
    double probability = 1.0;   // 0..1
    uint64_t max_hits = 0;      // 0: unlimited
};

struct FaultRule {
    std::string name;
    FaultMatch match;
    FaultAction action = FaultAction::error_status;
    uint16_t status = 0;    // error_status: (SCT << 8) | SC as NVMe encodes it (IOAT: CHANERR bits)
    uint64_t delay_ns = 0;  // delay
    bool torn = false;      // power_cut
};

// What a model knows about the command it is about to execute.
struct FaultSubject {
    uint8_t opcode = 0;
    uint16_t queue_id = 0;
    uint32_t nsid = 0;
    uint64_t lba = 0;
    uint64_t block_count = 0;  // 0: the command has no LBA range
};

class FaultPlan {
public:
    explicit FaultPlan(uint64_t seed = 1);

    uint32_t add(FaultRule rule);  // returns the rule id (unique within the plan)
    bool remove(uint32_t id);
    void clear();
    // The first rule that fires for `subject` (its hit is counted), or nullptr.
    const FaultRule* match(const FaultSubject& subject);

    struct Entry {
        uint32_t id;
        FaultRule rule;
        uint64_t matched;  // commands that matched the fields (counted for nth)
        uint64_t hits;     // times it fired
    };
    uint64_t hits(uint32_t id) const;
    size_t size() const noexcept { return entries_.size(); }
    const std::vector<Entry>& entries() const noexcept { return entries_; }
    std::vector<FaultRule> rules() const;

private:
    std::vector<Entry> entries_;
    uint32_t next_id_ = 1;
    Prng prng_;
};

// JSON form (see the header comment). Errors name the offending key.
Result<FaultRule> fault_rule_from_json(const nlohmann::json& j);
nlohmann::json to_json(const FaultRule& rule);

}  // namespace strata::hwemu
