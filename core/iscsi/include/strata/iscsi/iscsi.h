// core/iscsi: the iSCSI target (RFC 7143). What exists so far is the protocol core, pure
// functions of bytes in and state/bytes out (see internal/pdu.h, internal/text.h,
// internal/login.h, internal/chap.h); the connection/session layer, portal/initiator groups,
// target nodes and the RPCs are planned (docs/design/iscsi.md).
//
// This header holds the target-wide options, named and defaulted after SPDK's
// `iscsi_set_options` RPC parameters so SPDK's scripts/rpc.py can drive them later.
#pragma once

#include <cstdint>
#include <string>

namespace strata::iscsi {

struct TargetOptions {
    // ---- SPDK iscsi_set_options parameters (same names, same defaults) ----
    std::string auth_file;                       // unused (SPDK's legacy CHAP secret file)
    std::string node_base = "iqn.2016-06.io.spdk";  // prefix of target node names
    uint32_t nop_timeout = 60;                   // seconds without a NOP-Out answer
    uint32_t nop_in_interval = 30;               // seconds between NOP-Ins
    // Discovery-session CHAP (iscsi_set_options and iscsi_set_discovery_auth).
    bool disable_chap = false;
    bool require_chap = false;
    bool mutual_chap = false;
    int32_t chap_group = 0;                      // auth group tag; 0: none
    uint32_t max_sessions = 128;
    uint32_t max_queue_depth = 64;
    uint32_t max_connections_per_session = 2;    // offered MaxConnections
    uint32_t default_time2wait = 2;              // offered DefaultTime2Wait
    uint32_t default_time2retain = 20;           // offered DefaultTime2Retain
    uint32_t first_burst_length = 8192;          // offered FirstBurstLength
    bool immediate_data = true;                  // offered ImmediateData
    uint32_t error_recovery_level = 0;           // offered ErrorRecoveryLevel (only 0 works)
    bool allow_duplicated_isid = false;
    uint32_t max_large_datain_per_connection = 64;
    uint32_t max_r2t_per_connection = 4;         // offered MaxOutstandingR2T
    uint32_t pdu_pool_size = 0;                  // 0: computed (pools are planned)
    uint32_t immediate_data_pool_size = 0;
    uint32_t data_out_pool_size = 0;

    // ---- Strata extensions (SPDK fixes these at compile time) ----
    uint32_t max_recv_data_segment_length = 65536;  // declared MaxRecvDataSegmentLength
    uint32_t max_burst_length = 1048576;             // offered MaxBurstLength
    bool initial_r2t = true;                         // offered InitialR2T
    uint32_t chap_challenge_length = 32;             // bytes in CHAP_C we send
    // Data digests (Data-Out, immediate data and Data-In) of PDUs carrying at least this many
    // bytes are computed through the accel framework; 0: every digest inline (SPDK always
    // uses accel). docs/design/iscsi.md "Digests".
    uint32_t data_digest_accel_threshold = 0;
};

}  // namespace strata::iscsi
