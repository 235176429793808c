// The NVMe-oF target's TCP transport (NVMe/TCP transport specification 1.0).
//
// One TcpTransport per Target (nvmf_create_transport -t TCP). It listens where the core asks
// (Transport::listen, from nvmf_subsystem_add_listener), accepts on the Thread that listens (the
// Target's), and hands every new connection, round-robin and by message, to one of its poll
// groups: one Thread per reactor, created with the first listener. A connection (one qpair)
// lives on its poll group's Thread for its whole life.
//
// Per poll group: a SocketGroup, a buffer pool of num_shared_buffers / groups buffers of
// io_unit_size bytes fixed at creation (env DMA memory), and the connections. Per connection:
// max(max_queue_depth, max_aq_depth) requests with in_capsule_data_size bytes each, built at
// accept. Nothing on the data path allocates.
//
// save_config: the core writes one nvmf_create_transport entry per transport from
// Transport::options_json() (which gives exactly nvmf_create_transport's params), before its
// subsystems.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <strata/base/status.h>
#include <strata/nvmf/transport.h>

namespace strata::rpc {
class App;
}

namespace strata::nvmf {

// nvmf_create_transport's options (SPDK's names; lib/nvmf/tcp.c defaults).
struct TcpOptions {
    uint32_t max_queue_depth = 128;
    uint32_t max_io_qpairs_per_ctrlr = 127;
    uint32_t in_capsule_data_size = 4096;
    uint32_t max_io_size = 131072;
    uint32_t io_unit_size = 131072;
    uint32_t max_aq_depth = 128;
    uint32_t num_shared_buffers = 511;
    uint32_t buf_cache_size = UINT32_MAX;  // SPDK's per-group cache; our pools are per group
    bool dif_insert_or_strip = false;      // accepted; DIF is not supported (planned)
    bool c2h_success = true;               // C2HData SUCCESS flag when SQ flow control is off
    int32_t sock_priority = 0;
    uint32_t abort_timeout_sec = 1;
    uint32_t acceptor_poll_rate = 10000;  // us between accept polls
    bool zcopy = false;                   // accepted, no effect
    uint32_t control_msg_num = 32;        // accepted, no effect
    uint32_t maxh2cdata = 131072;         // MAXH2CDATA announced in ICResp
    uint32_t poll_groups = 0;             // 0: one per reactor (Strata extension, for tests)
    // Strata extension: data digests (when the host negotiated them) of PDUs carrying at least
    // this many data bytes are computed and verified through the accel framework (crc32c on
    // the poll group's accel channel) instead of inline; 0: always inline (the default, see
    // docs/design/nvmf.md "Digests"). Header digests are always inline.
    uint32_t ddgst_accel_threshold = 0;

    // Checks ranges and consistency (io_unit_size * 16 >= max_io_size, ...).
    Status validate() const;
};

// Connection counters of a transport (nvmf_get_stats's transport part).
struct TcpStats {
    uint64_t connections_accepted = 0;
    uint64_t connections_closed = 0;
    uint64_t connections_freed = 0;  // closed and every request back (bdev I/O completed)
    uint64_t protocol_errors = 0;  // C2HTermReq sent
    uint64_t term_reqs_received = 0;
    uint64_t data_digest_errors = 0;
    uint64_t header_digest_errors = 0;
    uint64_t data_digests_accel = 0;  // data digests computed or verified through accel
};

// Test hook, the current Host's: the next `fail` data digests computed through accel complete
// as if accel had failed the op, the next `corrupt` ones with a wrong CRC (a faulty engine).
// Set from any Thread; consumed on the poll groups' Threads.
struct TcpDigestFaults {
    std::atomic<uint32_t> fail{0};
    std::atomic<uint32_t> corrupt{0};
};
TcpDigestFaults& tcp_digest_faults() noexcept;

// Creates the TCP transport and registers it with the current Host's Target (add_transport).
// On the Target's Thread. Errc::already_exists when there is one.
Status create_tcp_transport(const TcpOptions& options);

// The TCP transport of the current Host, or nullptr.
class TcpTransport;
TcpTransport* tcp_transport() noexcept;
TcpStats tcp_stats();
// Stops listening, terminates every connection and stops the poll group Threads once their
// connections' outstanding requests have completed; done() on the calling Thread.
void tcp_transport_shutdown(void (*done)(void* ctx), void* ctx);

// nvmf_create_transport and nvmf_get_transports (subsystem "nvmf"). Idempotent.
void register_tcp_rpc_methods(rpc::App& app);
// The module-table entry (core/rpc/src/modules.cpp): the methods above and an App subsystem
// "nvmf_tcp" (depends on "nvmf") whose fini shuts the transport down.
void register_tcp_rpc_module(rpc::App& app);

}  // namespace strata::nvmf
