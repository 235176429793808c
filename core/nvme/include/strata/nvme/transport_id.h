// Transport ids: where a controller is (a PCIe function, or an NVMe-oF TCP listener and
// subsystem), and SPDK's text form of them.
//
//   trtype:PCIe traddr:0000:01:00.0
//   trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1
//
// parse_transport_id() follows spdk_nvme_transport_id_parse (lib/nvme/nvme.c): pairs separated
// by spaces, tabs or newlines; each pair is key:value or key=value (the first ':' or '=' ends
// the key, so "traddr:0000:01:00.0" keeps its colons); keys and trtype/adrfam values compare
// case-insensitively; traddr at most 256 bytes, trsvcid 32, subnqn and hostnqn 223, a key 31,
// a value 1023. SPDK ignores keys it does not know (it logs them); so does this parser, and it
// lists them in TransportId::ignored_keys so a caller can warn. hostnqn, hostaddr, hostsvcid
// and ns, which SPDK's tools read from the same string, are kept here too.
//
// Pure function of its input: no allocation beyond the result, no global state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <strata/base/status.h>

namespace strata::nvme {

enum class TrType : uint8_t { pcie, tcp, rdma, fc, vfiouser, custom };
enum class AdrFam : uint8_t { none, ipv4, ipv6, ib, fc, intra_host };

struct TransportId {
    TrType trtype = TrType::pcie;
    std::string trstring;  // the trtype as given, upper-cased (SPDK's trstring): "PCIE", "TCP"
    AdrFam adrfam = AdrFam::none;
    std::string traddr;    // PCI address, IP address or host name
    std::string trsvcid;   // TCP port ("4420")
    std::string subnqn;    // subsystem NQN (fabrics)
    std::string hostnqn;   // optional host NQN (fabrics); empty: the driver's default
    std::string hostaddr;  // optional local address to connect from
    std::string hostsvcid;
    int32_t priority = 0;
    uint32_t nsid = 0;  // "ns:N" (tools' namespace filter); 0: all
    std::vector<std::string> ignored_keys;

    bool is_fabrics() const noexcept { return trtype != TrType::pcie; }
};

// Errc::invalid_argument naming the problem ("key without ':' or '=' separator", "unknown
// trtype 'X'", "traddr longer than 256 bytes", ...). An empty string gives a default id.
Result<TransportId> parse_transport_id(std::string_view text);
// The same fields back in SPDK's form ("trtype:TCP adrfam:IPv4 traddr:... trsvcid:... subnqn:...").
std::string to_string(const TransportId& id);

const char* trtype_name(TrType t) noexcept;  // "PCIe", "TCP", "RDMA", "FC", "VFIOUSER", "CUSTOM"
const char* adrfam_name(AdrFam a) noexcept;  // "IPv4", "IPv6", "IB", "FC", "INTRA_HOST", ""
// Case-insensitive, as SPDK: "tcp" -> TrType::tcp; an unknown name is TrType::custom.
TrType parse_trtype(std::string_view s) noexcept;
// "ipv4" -> AdrFam::ipv4; Errc::not_found for an unknown family.
Result<AdrFam> parse_adrfam(std::string_view s);

// Limits from SPDK's nvmf_spec.h.
inline constexpr size_t kTraddrMaxLen = 256;
inline constexpr size_t kTrsvcidMaxLen = 32;
inline constexpr size_t kNqnMaxLen = 223;
inline constexpr size_t kPriorityMaxLen = 4;

}  // namespace strata::nvme
