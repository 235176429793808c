// The network layer's own seam, for its tests: the questions a login asks go through a
// Directory, so a test can stand in for the configuration (src/config.cpp) with a fake that
// returns a scsi::Device it created itself. make_network() (internal/target.h) uses the
// default Directory, which forwards to internal::lookup_target & co. and iscsi::options().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/iscsi/internal/target.h>

namespace strata::iscsi::internal {

class Directory {
public:
    virtual ~Directory() = default;
    // Any Thread (the implementation locks what it shares).
    virtual TargetLookup lookup_target(std::string_view name, std::string_view initiator,
                                       std::string_view initiator_addr, int32_t pg_tag) = 0;
    virtual AuthPolicy discovery_policy() = 0;
    virtual const ChapSecrets& chap_secrets() = 0;
    // `target_addr`: the connection's local address (reported for wildcard portals).
    virtual std::vector<SendTargetsEntry> send_targets(std::string_view initiator,
                                                       std::string_view initiator_addr,
                                                       std::string_view target_addr) = 0;
    // A copy: options change on the app Thread (only while nothing runs).
    virtual TargetOptions options() = 0;
};

// The Directory of the current Host's configuration (internal::lookup_target & co.).
Directory& config_directory();

// A network layer over `dir` (which must outlive it). On the app Thread.
std::unique_ptr<Network> make_network(Directory& dir);

// Counters of one network layer (tests): relaxed, from every Thread.
struct NetworkStats {
    uint64_t connections_accepted = 0;
    uint64_t connections_closed = 0;
    uint64_t connections_freed = 0;
    uint64_t logins = 0;             // reached full feature phase
    uint64_t protocol_errors = 0;    // connections ended by a protocol violation
    uint64_t data_digest_errors = 0;
    uint64_t nop_timeouts = 0;
    uint64_t moved = 0;              // connections moved to their device's Thread
    uint64_t sessions = 0;           // live sessions
    uint64_t data_digests_accel = 0;  // data digests computed through accel (ops submitted)
    // accel ops that completed after their command was released (connection closed, task
    // aborted): the command was held for them, freed only then
    uint64_t digests_after_release = 0;
};
NetworkStats network_stats(Network& net);

// Test hook, the current Host's: the next `fail` data digests computed through accel complete
// as if accel had failed the op, the next `corrupt` ones with a wrong CRC (a faulty engine).
// Set from any Thread; consumed on the poll groups' Threads. (core/nvmf's TcpDigestFaults
// is the same hook for the NVMe/TCP transport.)
struct DigestFaults {
    std::atomic<uint32_t> fail{0};
    std::atomic<uint32_t> corrupt{0};
};
DigestFaults& digest_faults() noexcept;

}  // namespace strata::iscsi::internal
