// The iSCSI target's control API (what the iscsi_* RPCs call): options, portal groups, initiator
// groups, auth groups, target nodes, connections. Names and shapes follow SPDK's RPCs so SPDK's
// scripts/rpc.py drives them. Everything works on the current Host's target and runs on the
// app Thread (the RPC Thread); the target's lookups used by logins on other Threads take the
// target's own lock (control path only).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/iscsi/iscsi.h>

namespace strata::iscsi {

// ---- configuration objects (SPDK's JSON shapes) ----------------------------------------------
struct Portal {
    std::string host;  // "127.0.0.1", "[::1]" or "::1", "0.0.0.0"
    std::string port;  // "3260" (SPDK keeps it as a string)
};
struct PortalGroupConfig {
    int32_t tag = 0;  // >= 1
    std::vector<Portal> portals;
    bool is_private = false;  // SPDK "private": not reported by SendTargets
    bool wait = false;        // SPDK "wait": listen only after iscsi_start_portal_group
};
struct InitiatorGroupConfig {
    int32_t tag = 0;  // >= 1
    std::vector<std::string> initiators;  // names, "ANY", or "!name" to deny
    std::vector<std::string> netmasks;    // "ANY", "192.168.1.0/24", "[::1]/128", or an address
};
struct ChapSecretConfig {
    std::string user, secret;    // one-way CHAP: the initiator proves it knows `secret`
    std::string muser, msecret;  // mutual CHAP: we answer with these (both or neither)
};
struct AuthGroupConfig {
    int32_t tag = 0;  // >= 1
    std::vector<ChapSecretConfig> secrets;
};
struct PgIgMap {
    int32_t pg_tag = 0;
    int32_t ig_tag = 0;
};
struct TargetLun {
    std::string bdev_name;
    int32_t lun_id = 0;
};
struct TargetNodeConfig {
    std::string name;        // full IQN/EUI/NAA, or a short name prefixed with options().node_base + ":"
    std::string alias_name;
    std::vector<PgIgMap> pg_ig_maps;
    std::vector<TargetLun> luns;
    int32_t queue_depth = 64;  // per session; <= options().max_queue_depth
    bool disable_chap = false;
    bool require_chap = false;
    bool mutual_chap = false;
    int32_t chap_group = 0;
    bool header_digest = false;  // required (offered "CRC32C" only) when true
    bool data_digest = false;
};
struct DiscoveryAuth {
    bool disable_chap = false;
    bool require_chap = false;
    bool mutual_chap = false;
    int32_t chap_group = 0;
};

// iscsi_get_connections: SPDK's fields.
struct ConnectionInfo {
    int32_t id;              // connection id, unique per target
    uint16_t cid;
    uint16_t tsih;
    int32_t lcore_id;        // the reactor (Thread index) that owns it
    std::string initiator_addr;
    std::string target_addr;
    std::string target_node_name;  // "" in a discovery session
};

// ---- control path, app Thread ----------------------------------------------------------------
// Failures are Results whose message names the offending value ("initiator group 3 not found",
// "'iqn.x' is not a valid iSCSI name: ..."), so the RPCs pass them on as they are.
// Options change only while no portal group and no target node exist (SPDK: before the iscsi
// subsystem starts); Errc::busy otherwise, invalid_argument for a value out of its range.
Result<void> set_options(const TargetOptions& options);
const TargetOptions& options();

// Errc::already_exists (tag), invalid_argument (tag < 1, no portals, bad host or port).
// Listening starts at once unless `wait`; a port in use fails the call (nothing kept).
Result<void> create_portal_group(const PortalGroupConfig& pg);
Result<void> start_portal_group(int32_t tag);  // iscsi_start_portal_group, for `wait` groups
// Errc::not_found; busy while a target node maps it. Stops listening; connections that came
// in on it are closed.
Result<void> delete_portal_group(int32_t tag);
std::vector<PortalGroupConfig> portal_groups();

Result<void> create_initiator_group(const InitiatorGroupConfig& ig);
Result<void> initiator_group_add_initiators(const InitiatorGroupConfig& add);     // same tag
Result<void> initiator_group_remove_initiators(const InitiatorGroupConfig& rm);   // same tag
Result<void> delete_initiator_group(int32_t tag);  // busy while mapped
std::vector<InitiatorGroupConfig> initiator_groups();

Result<void> create_auth_group(const AuthGroupConfig& ag);
Result<void> auth_group_add_secret(int32_t tag, const ChapSecretConfig& secret);
Result<void> auth_group_remove_secret(int32_t tag, const std::string& user);
Result<void> delete_auth_group(int32_t tag);  // busy while a target node or discovery uses it
std::vector<AuthGroupConfig> auth_groups();

Result<void> set_discovery_auth(const DiscoveryAuth& auth);
DiscoveryAuth discovery_auth();

// Creates the node's SCSI device (core/scsi) with its LUNs, claiming their bdevs. Asynchronous
// because the device is created on the Thread it will run on; done() on the app Thread.
void create_target_node(const TargetNodeConfig& node, std::function<void(Result<void>)> done);
// Ends the node's sessions, destroys its device (releasing the bdevs), then done().
void delete_target_node(const std::string& name, std::function<void(Result<void>)> done);
void target_node_add_lun(const std::string& name, const TargetLun& lun,
                         std::function<void(Result<void>)> done);
Result<void> target_node_add_pg_ig_maps(const std::string& name, const std::vector<PgIgMap>& maps);
Result<void> target_node_remove_pg_ig_maps(const std::string& name, const std::vector<PgIgMap>& maps);
Result<void> target_node_set_auth(const std::string& name, const DiscoveryAuth& auth);
std::vector<TargetNodeConfig> target_nodes();

// Snapshot of every connection (gathered from the Threads that own them); done on app Thread.
void get_connections(std::function<void(std::vector<ConnectionInfo>)> done);

// App stop: closes every connection, stops every portal, destroys every target node.
void shutdown(std::function<void()> done);

}  // namespace strata::iscsi
