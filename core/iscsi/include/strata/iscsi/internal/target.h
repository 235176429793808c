// The seam between the target's configuration (src/config.cpp: groups, nodes, their SCSI
// devices, the RPCs) and its network layer (src/portal.cpp, src/conn.cpp, src/session.cpp:
// listeners, connections, sessions, the full feature phase).
//
// The configuration answers the questions a login asks (which target, may this initiator reach
// it, which CHAP policy and secret, what SendTargets shows) from any Thread under its own lock:
// logins run on the connection's Thread, the configuration changes on the app Thread.
// The network layer is installed once per Host by the iscsi subsystem's init; without one (unit
// tests of the configuration) portal groups are only recorded.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <strata/iscsi/internal/chap.h>
#include <strata/iscsi/internal/login.h>
#include <strata/iscsi/internal/text.h>
#include <strata/iscsi/target.h>

namespace strata::scsi {
class Device;
}
namespace strata::runtime {
class Thread;
}

namespace strata::iscsi::internal {

// ---- the configuration's answers (any Thread) --------------------------------------------------
struct TargetLookup {
    LoginStatus status = login_status::not_found;  // success, not_found, target_removed,
                                                   // authorization_failure (ACL)
    TargetInfo info;                 // name, alias, CHAP policy
    bool header_digest = false;      // the node requires CRC32C header digests
    bool data_digest = false;        // ... data digests
    int32_t queue_depth = 64;        // commands per session (MaxCmdSN window)
    scsi::Device* device = nullptr;  // valid until Network::end_target_sessions() for the node
};
// `initiator_addr` is the peer's IP address as text ("127.0.0.1", "::1"); `pg_tag` the portal
// group the connection came in on (the node must map it, with an initiator group allowing
// this initiator name and address).
TargetLookup lookup_target(std::string_view name, std::string_view initiator,
                           std::string_view initiator_addr, int32_t pg_tag);
AuthPolicy discovery_policy();
// The current Host's auth groups, for LoginConnection's CHAP (ChapSecrets::lookup).
const ChapSecrets& chap_secrets();
// SendTargets: every node this initiator may reach, each with the non-private portals of the
// portal groups it maps for this initiator ("host:port,tag"). A wildcard portal ("0.0.0.0",
// "[::]") is reported as `target_addr` (the connection's local address) when one is given.
std::vector<SendTargetsEntry> send_targets(std::string_view initiator,
                                           std::string_view initiator_addr,
                                           std::string_view target_addr = {});
// The Threads target nodes run on: one per reactor, created on first use (app Thread), each
// node's SCSI device placed on them round-robin (TargetLookup::device lives on one of them;
// scsi::device_thread() names it). The network layer may run its connections there too.
// They exit at shutdown().
std::vector<runtime::Thread*> node_threads();

// ---- the network layer (installed per Host) --------------------------------------------------
class Network {
public:
    virtual ~Network() = default;
    // Listen on every portal of the group (all or nothing: Errc::already_exists for a port in
    // use, invalid_argument for an address that does not parse).
    virtual Status start_portals(const PortalGroupConfig& pg) = 0;
    // Stop listening and close the connections that came in on this group.
    virtual void stop_portals(int32_t tag) = 0;
    // End every session on this node (their tasks complete first), then done() on the app
    // Thread; after it the node's device may be destroyed.
    virtual void end_target_sessions(const std::string& target_name,
                                     std::function<void()> done) = 0;
    virtual void get_connections(std::function<void(std::vector<ConnectionInfo>)> done) = 0;
    // Close everything (App stop), then done() on the app Thread.
    virtual void shutdown(std::function<void()> done) = 0;
};
// App Thread, before the first portal group. nullptr uninstalls (tests).
void set_network(std::unique_ptr<Network> network);
// The network layer's factory (src/portal.cpp), called by the iscsi subsystem's init.
std::unique_ptr<Network> make_network();

}  // namespace strata::iscsi::internal
