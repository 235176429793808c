// The NVMe-oF target's control API (what the nvmf_* RPCs call): subsystems, namespaces, hosts,
// listeners, controllers. Everything here runs on the Target's Thread (the app Thread) and
// works on the current Host's Target (<strata/nvmf/transport.h> has the transport side).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>
#include <strata/nvmf/transport.h>

namespace strata::nvmf {

struct SubsystemOptions {
    std::string nqn;
    std::string serial_number = "00000000000000000000";  // SPDK's default
    std::string model_number = "Strata bdev Controller";
    uint32_t max_namespaces = 32;  // 0 in the RPC means this default
    bool allow_any_host = false;
    uint16_t min_cntlid = nvme::spec::cntlid_min;
    uint16_t max_cntlid = nvme::spec::cntlid_max;
};

struct NamespaceOptions {
    std::string bdev_name;
    uint32_t nsid = 0;                // 0: the lowest free
    std::array<uint8_t, 16> uuid{};   // all zero: the bdev's UUID
    std::array<uint8_t, 16> nguid{};  // all zero: none
    std::array<uint8_t, 8> eui64{};   // all zero: none
    bool uuid_given = false;
};

// Snapshots for the RPCs.
struct NamespaceInfo {
    uint32_t nsid;
    std::string bdev_name;
    std::string uuid;   // "" when none
    std::string nguid;  // hex, "" when zero
    std::string eui64;  // hex, "" when zero
    std::array<uint8_t, 16> nguid_bytes{};
    std::array<uint8_t, 8> eui64_bytes{};
    bool uuid_given = false;
};
struct ControllerInfo {
    uint16_t cntlid;
    std::string hostnqn;
    std::string hostid;  // UUID text
    uint32_t num_io_qpairs;
};
struct QpairInfo {
    uint16_t cntlid;
    uint16_t qid;
    std::string state;  // "active", "deleting"
    TransportAddress listen_address;
};
struct SubsystemInfo {
    std::string nqn;
    bool discovery = false;
    std::vector<TransportAddress> listeners;
    bool allow_any_host = false;
    std::vector<std::string> hosts;
    std::string serial_number, model_number;
    uint32_t max_namespaces = 0;
    uint16_t min_cntlid = 0, max_cntlid = 0;
    std::vector<NamespaceInfo> namespaces;
};
// One poll group's statistics (nvmf_get_stats; SPDK's spdk_nvmf_poll_group_stat): a poll group
// is a Thread that runs qpairs (the TCP transport's poll group Threads, or any Thread a
// transport's qpair connected on).
struct PollGroupStats {
    std::string name;                          // the Thread's name
    uint64_t admin_qpairs = 0, io_qpairs = 0;  // ever connected there
    uint64_t current_admin_qpairs = 0, current_io_qpairs = 0;
    uint64_t pending_bdev_io = 0;    // as SPDK: times an I/O waited for a bdev_io (cumulative)
    uint64_t completed_nvme_io = 0;  // commands completed on I/O queues
    std::vector<std::string> transports;  // the Target's transports (names)
};

// Errors carry SPDK-like messages; Errc::already_exists, not_found, invalid_argument, busy.
Result<void> create_subsystem(const SubsystemOptions& opts);
// Disconnects every qpair, removes every namespace (closing its bdev) and listener; done on the
// Target's Thread once all of that finished.
void delete_subsystem(std::string_view nqn, std::function<void(Result<void>)> done);
Result<uint32_t> add_namespace(std::string_view nqn, const NamespaceOptions& opts);
void remove_namespace(std::string_view nqn, uint32_t nsid, std::function<void(Result<void>)> done);
Result<void> add_host(std::string_view nqn, std::string_view hostnqn);
Result<void> remove_host(std::string_view nqn, std::string_view hostnqn);
Result<void> set_allow_any_host(std::string_view nqn, bool allow);
// Calls the transport's listen(); Errc::not_found when no transport of that trtype exists.
Result<void> add_listener(std::string_view nqn, const TransportAddress& addr);
Result<void> remove_listener(std::string_view nqn, const TransportAddress& addr);

std::vector<SubsystemInfo> subsystems();  // the discovery subsystem first
Result<SubsystemInfo> subsystem_info(std::string_view nqn);
Result<std::vector<ControllerInfo>> controllers(std::string_view nqn);
Result<std::vector<QpairInfo>> qpairs(std::string_view nqn);
// Gathers every live poll group's counters by messaging its Thread (one after another), then
// done(groups) on the Target's Thread. Control path, on the Target's Thread.
void poll_group_stats(std::function<void(std::vector<PollGroupStats>)> done);

// The discovery log page as the target would serve it to `hostnqn` (all entries), for tests.
std::vector<uint8_t> discovery_log(std::string_view hostnqn);
uint64_t discovery_genctr();

// Testing/teardown: delete every subsystem (the nvmf subsystem's fini).
void shutdown(std::function<void()> done);

// The "nvmf" RPC module (core/rpc/src/modules.cpp).
}  // namespace strata::nvmf

namespace strata::rpc {
class App;
}
namespace strata::nvmf {
void register_rpc_module(rpc::App& app);
}  // namespace strata::nvmf
