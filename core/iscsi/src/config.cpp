// The iSCSI target's configuration: target.h's control API (options, portal groups, initiator
// groups, auth groups, target nodes with their SCSI devices) and internal/target.h's answers to
// logins (target lookup with the initiator-group ACL, discovery CHAP policy, CHAP secrets,
// SendTargets). Validation follows SPDK's lib/iscsi (portal_grp.c, init_grp.c, tgt_node.c,
// iscsi_subsystem.c) plus RFC 3720 §3.2.6 name rules, with messages naming the bad value.
//
// State: one Config per Host (a Host slot). Control calls run on the app Thread; logins read
// the configuration from connection Threads, so every field is guarded by Config::mu (control
// path only, never the data path). The network layer (internal::Network) is called without the
// lock held.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <strata/bdev/module.h>
#include <strata/iscsi/internal/target.h>
#include <strata/iscsi/target.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/scsi/scsi.h>

namespace strata::iscsi {

namespace {

// SPDK's limits (lib/iscsi/iscsi.h, tgt_node.h, iscsi_rpc.c); names: kMaxNameLength (text.h).
constexpr size_t kMaxPortals = 1024;         // MAX_PORTAL
constexpr size_t kMaxPortalHost = 256;       // MAX_PORTAL_ADDR
constexpr size_t kMaxPortalPort = 32;        // MAX_PORTAL_PORT
constexpr size_t kMaxInitiators = 256;       // MAX_INITIATOR
constexpr size_t kMaxNetmasks = 256;         // MAX_NETMASK
constexpr size_t kMaxTargetMaps = 256;       // MAX_TARGET_MAP
constexpr size_t kMaxChapField = 255;        // MAX_CHAP_NAME_LEN / MAX_CHAP_SECRET_LEN
constexpr uint32_t kMaxQueueDepth = 256;     // iscsi_opts_verify
constexpr uint32_t kMaxNopInInterval = 60;   // MAX_NOPININTERVAL
constexpr uint32_t kMinBurst = 512;          // SPDK_ISCSI_MIN_FIRST_BURST_LENGTH
constexpr uint32_t kMaxBurst = 16777215;     // RFC 7143: 512 to 2^24-1
constexpr uint32_t kMaxDataOutPerConnection = 16;

Error invalid(std::string message) { return Error(Errc::invalid_argument, std::move(message)); }

bool iequal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}
bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequal(s.substr(0, prefix.size()), prefix);
}
bool all_hex(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(uint8_t(c)) != 0; });
}
bool all_digits(std::string_view s) noexcept {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// RFC 3720 §3.2.6 (and SPDK's check_iscsi_name): at most 223 bytes of letters, digits, '-',
// '.', ':' (and UTF-8 bytes); "iqn.yyyy-mm.<naming authority>[:<unique>]", "eui." + 16 hex
// digits or "naa." + 16 or 32 hex digits.
Result<void> check_iscsi_name(std::string_view name) {
    auto bad = [&](std::string_view why) {
        return invalid(fmt::format("'{}' is not a valid iSCSI name: {}", name, why));
    };
    if (name.empty()) return bad("empty");
    if (name.size() > kMaxNameLength) return bad("longer than 223 bytes");
    for (unsigned char c : name) {
        const bool ok = c >= 0x80 || std::isalnum(c) || c == '-' || c == '.' || c == ':';
        if (!ok) return bad(fmt::format("character {:#04x} is not allowed", c));
    }
    if (istarts_with(name, "iqn.")) {
        // iqn.YYYY-MM.reversed.domain.name
        const auto d = [&](size_t i) { return i < name.size() && std::isdigit(uint8_t(name[i])); };
        if (!d(4) || !d(5) || !d(6) || !d(7) || name.size() < 13 || name[8] != '-' || !d(9) ||
            !d(10) || name[11] != '.')
            return bad("expected \"iqn.yyyy-mm.reversed.domain.name\"");
        return {};
    }
    if (istarts_with(name, "eui.")) {
        if (name.size() != 4 + 16 || !all_hex(name.substr(4)))
            return bad("expected \"eui.\" and 16 hex digits");
        return {};
    }
    if (istarts_with(name, "naa.")) {
        const size_t n = name.size() - 4;
        if ((n != 16 && n != 32) || !all_hex(name.substr(4)))
            return bad("expected \"naa.\" and 16 or 32 hex digits");
        return {};
    }
    return bad("must start with \"iqn.\", \"eui.\" or \"naa.\"");
}

// SPDK's iscsi_check_chap_params: Auto (none set), None (disable), CHAP (require), mutual CHAP
// (require + mutual); a negative group is invalid.
Result<void> check_chap(bool disable, bool require, bool mutual, int32_t group) {
    if (group < 0) return invalid(fmt::format("invalid auth group {} (must be >= 0)", group));
    if (disable && (require || mutual))
        return invalid("invalid combination of CHAP params: disable_chap with require_chap or "
                       "mutual_chap");
    if (mutual && !require)
        return invalid("invalid combination of CHAP params: mutual_chap requires require_chap");
    return {};
}

// ---- addresses and netmasks --------------------------------------------------------------------

struct IpAddr {
    int family = 0;  // AF_INET, AF_INET6
    std::array<uint8_t, 16> bytes{};
};

// "1.2.3.4", "::1", "[::1]"; an IPv4-mapped IPv6 address ("::ffff:1.2.3.4") is taken as IPv4 so
// a dual-stack socket's peer matches IPv4 netmasks.
std::optional<IpAddr> parse_ip(std::string_view text) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
        text = text.substr(1, text.size() - 2);
    if (text.empty() || text.size() > 63) return std::nullopt;
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddr a;
    if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
        a.family = AF_INET;
        return a;
    }
    if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
        static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
            std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
            a.family = AF_INET;
            return a;
        }
        a.family = AF_INET6;
        return a;
    }
    return std::nullopt;
}

struct Netmask {
    IpAddr net;
    int bits = 0;
};

// SPDK's netmask syntax: "192.168.1.0/24", "192.168.1.1" (/32), "[2001:db8::]/32", "[::1]" (/128);
// the prefix is 1..32 or 1..128. A bare IPv6 address ("::1/128") is accepted too.
std::optional<Netmask> parse_netmask(std::string_view text) {
    std::string_view addr = text;
    std::string_view bits;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        addr = text.substr(1, close - 1);
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != '/') return std::nullopt;
            bits = rest.substr(1);
            if (bits.empty()) return std::nullopt;
        }
    } else if (const size_t slash = text.find('/'); slash != std::string_view::npos) {
        addr = text.substr(0, slash);
        bits = text.substr(slash + 1);
        if (bits.empty()) return std::nullopt;
    }
    if (!addr.empty() && addr.front() == '[') return std::nullopt;
    auto ip = parse_ip(addr);
    if (!ip) return std::nullopt;
    // "::ffff:a.b.c.d" parses as IPv4: its prefix counts IPv6 bits then; keep it simple and
    // refuse a prefix on such a mask.
    const bool mapped = ip->family == AF_INET && addr.find(':') != std::string_view::npos;
    const int max = ip->family == AF_INET ? 32 : 128;
    Netmask m{*ip, max};
    if (!bits.empty()) {
        if (mapped || !all_digits(bits) || bits.size() > 3) return std::nullopt;
        m.bits = std::stoi(std::string(bits));
        if (m.bits < 1 || m.bits > max) return std::nullopt;
    }
    return m;
}

bool netmask_allows(std::string_view mask, std::string_view addr) {
    if (iequal(mask, "ANY")) return true;
    auto m = parse_netmask(mask);
    auto a = parse_ip(addr);
    if (!m || !a || m->net.family != a->family) return false;
    const int full = m->bits / 8;
    if (std::memcmp(m->net.bytes.data(), a->bytes.data(), size_t(full)) != 0) return false;
    if (const int rest = m->bits % 8; rest != 0) {
        const uint8_t bmask = uint8_t(0xff << (8 - rest));
        if ((m->net.bytes[size_t(full)] & bmask) != (a->bytes[size_t(full)] & bmask)) return false;
    }
    return true;
}

// A portal: SPDK's "*" and "[*]" wildcards become "0.0.0.0" and "[::]"; the host is a numeric
// IPv4/IPv6 address (IPv6 with or without brackets) or a host name; the port 1..65535.
Result<Portal> normalize_portal(Portal p) {
    if (p.host == "*") p.host = "0.0.0.0";
    if (p.host == "[*]") p.host = "[::]";
    if (p.host.empty()) return invalid("portal host is empty");
    if (p.host.size() > kMaxPortalHost)
        return invalid(fmt::format("portal host '{}' is longer than {} bytes", p.host,
                                   kMaxPortalHost));
    const bool bracketed = p.host.front() == '[';
    if (bracketed || p.host.find(':') != std::string::npos) {
        auto ip = parse_ip(p.host);
        if (!ip || (bracketed && p.host.back() != ']'))
            return invalid(fmt::format("portal host '{}' is not a valid IPv6 address", p.host));
    } else if (!parse_ip(p.host)) {
        const bool name_ok =
            std::all_of(p.host.begin(), p.host.end(),
                        [](char c) { return std::isalnum(uint8_t(c)) || c == '-' || c == '.'; }) &&
            p.host.front() != '-' && p.host.front() != '.';
        if (!name_ok)
            return invalid(fmt::format("portal host '{}' is not an IP address or a host name",
                                       p.host));
    }
    if (p.port.size() > kMaxPortalPort || !all_digits(p.port) || p.port.size() > 5 ||
        std::stoul(p.port) == 0 || std::stoul(p.port) > 65535)
        return invalid(fmt::format("portal port '{}' is not a port number (1-65535)", p.port));
    return p;
}

bool is_wildcard(std::string_view host) {
    return host == "0.0.0.0" || host == "[::]" || host == "::";
}

// "host:port,tag" with an IPv6 address in brackets.
std::string target_address(std::string_view host, const std::string& port, int32_t tag) {
    if (host.find(':') != std::string_view::npos && host.front() != '[')
        return fmt::format("[{}]:{},{}", host, port, tag);
    return fmt::format("{}:{},{}", host, port, tag);
}

// An initiator-group entry: "ANY", "!ANY", a name or "!name" (SPDK turns "ALL" into "ANY").
Result<std::string> normalize_initiator(std::string e) {
    if (e.size() > kMaxNameLength)
        return invalid(fmt::format("initiator name '{}' is longer than {} bytes", e,
                                   kMaxNameLength));
    const bool deny = !e.empty() && e.front() == '!';
    std::string_view name = std::string_view(e).substr(deny ? 1 : 0);
    if (iequal(name, "ALL") || iequal(name, "ANY")) return std::string(deny ? "!ANY" : "ANY");
    if (auto r = check_iscsi_name(name); !r.ok())
        return invalid(fmt::format("initiator '{}': {}", e, r.error().message()));
    return e;
}

Result<std::string> normalize_netmask(std::string m) {
    if (iequal(m, "ALL") || iequal(m, "ANY")) return std::string("ANY");
    if (!parse_netmask(m))
        return invalid(fmt::format("netmask '{}' is not \"ANY\", an IPv4 address with an optional "
                                   "/1-32 prefix, or an IPv6 address in brackets with an optional "
                                   "/1-128 prefix",
                                   m));
    return m;
}

// ---- the Host's configuration --------------------------------------------------------------------

struct Node {
    TargetNodeConfig cfg;  // name in full; luns as added
    scsi::Device* dev = nullptr;
    bool deleting = false;
};

struct PortalGroup {
    PortalGroupConfig cfg;
    bool started = false;  // listening (or, without a network, would be)
};

class Config final : public ChapSecrets {
public:
    Config() { fill_pool_sizes(opts); }

    // SPDK's computed pool sizes (iscsi_subsystem.c) where a size is 0.
    static void fill_pool_sizes(TargetOptions& o) {
        const uint32_t pdus_per_conn =
            2 * (o.max_queue_depth + o.max_large_datain_per_connection +
                 2 * o.max_r2t_per_connection + 8);
        if (o.pdu_pool_size == 0) o.pdu_pool_size = o.max_sessions * pdus_per_conn;
        if (o.immediate_data_pool_size == 0) o.immediate_data_pool_size = o.max_sessions * 128;
        if (o.data_out_pool_size == 0)
            o.data_out_pool_size = o.max_sessions * kMaxDataOutPerConnection;
    }

    bool lookup(int32_t group, std::string_view user, ChapSecret* out) const override {
        std::lock_guard lock(mu);
        const AuthGroupConfig* ag = find_ag(group);
        if (ag == nullptr) return false;
        for (const auto& s : ag->secrets) {
            if (s.user != user) continue;
            if (out != nullptr) *out = {s.user, s.secret, s.muser, s.msecret};
            return true;
        }
        return false;
    }

    // ---- lookups (mu held) ----
    PortalGroup* find_pg(int32_t tag) {
        for (auto& p : pgs)
            if (p.cfg.tag == tag) return &p;
        return nullptr;
    }
    InitiatorGroupConfig* find_ig(int32_t tag) {
        for (auto& g : igs)
            if (g.tag == tag) return &g;
        return nullptr;
    }
    const InitiatorGroupConfig* find_ig(int32_t tag) const {
        return const_cast<Config*>(this)->find_ig(tag);
    }
    AuthGroupConfig* find_ag_mut(int32_t tag) {
        for (auto& g : ags)
            if (g.tag == tag) return &g;
        return nullptr;
    }
    const AuthGroupConfig* find_ag(int32_t tag) const {
        return const_cast<Config*>(this)->find_ag_mut(tag);
    }
    // A full name, or a short one that create_target_node prefixed with node_base.
    std::string full_name(std::string_view name) const {
        if (istarts_with(name, "iqn.") || istarts_with(name, "eui.") || istarts_with(name, "naa."))
            return std::string(name);
        return opts.node_base + ":" + std::string(name);
    }
    Node* find_node(std::string_view name) const {
        const std::string full = full_name(name);
        for (const auto& n : nodes)
            if (iequal(n->cfg.name, full)) return n.get();
        return nullptr;
    }
    bool name_taken(std::string_view name) const {
        if (find_node(name) != nullptr) return true;
        return std::any_of(creating.begin(), creating.end(),
                           [&](const auto& c) { return iequal(c.first, name); });
    }

    // SPDK's iscsi_init_grp_allow_iscsi_name: the first entry naming this initiator (or ANY)
    // decides; nullopt when none does.
    static std::optional<bool> name_verdict(const InitiatorGroupConfig& ig,
                                            std::string_view initiator) {
        for (const auto& e : ig.initiators) {
            if (!e.empty() && e.front() == '!') {
                std::string_view n = std::string_view(e).substr(1);
                if (iequal(n, "ANY") || iequal(n, initiator)) return false;
            } else if (iequal(e, "ANY") || iequal(e, initiator)) {
                return true;
            }
        }
        return std::nullopt;
    }
    // SPDK's iscsi_tgt_node_access for one portal group: the node's initiator groups mapped to
    // it, in order; a group whose names deny the initiator ends the search, one whose names
    // allow it admits it if a netmask matches the address, else the next group is asked.
    bool access(const Node& n, int32_t pg_tag, std::string_view initiator,
                std::string_view addr) const {
        for (const auto& m : n.cfg.pg_ig_maps) {
            if (m.pg_tag != pg_tag) continue;
            const InitiatorGroupConfig* ig = find_ig(m.ig_tag);
            if (ig == nullptr) continue;
            auto v = name_verdict(*ig, initiator);
            if (!v) continue;
            if (!*v) return false;
            for (const auto& mask : ig->netmasks)
                if (netmask_allows(mask, addr)) return true;
        }
        return false;
    }
    bool auth_group_used(int32_t tag) const {
        if (opts.chap_group == tag) return true;
        return std::any_of(nodes.begin(), nodes.end(),
                           [&](const auto& n) { return n->cfg.chap_group == tag; });
    }

    mutable std::mutex mu;
    TargetOptions opts;
    std::vector<PortalGroup> pgs;
    std::vector<InitiatorGroupConfig> igs;
    std::vector<AuthGroupConfig> ags;
    std::vector<std::unique_ptr<Node>> nodes;
    // Nodes whose device is being created: name and SCSI device id.
    std::vector<std::pair<std::string, int32_t>> creating;

    // App Thread only (not read by lookups).
    std::unique_ptr<internal::Network> net;
    std::vector<runtime::Thread*> threads;
    size_t next_thread = 0;
};

Config& config() { return runtime::current_host().get<Config>(); }

// The Thread for the next node: the node Threads round-robin (created on first use).
runtime::Thread* next_node_thread(Config& c) {
    if (c.threads.empty()) (void)internal::node_threads();
    if (c.threads.empty()) return nullptr;
    return c.threads[c.next_thread++ % c.threads.size()];
}

// The lowest SCSI device id no node (or node being created) has.
int32_t free_device_id(const Config& c) {
    for (int32_t id = 0;; ++id) {
        const bool used =
            std::any_of(c.nodes.begin(), c.nodes.end(),
                        [&](const auto& n) { return scsi::device_id(*n->dev) == id; }) ||
            std::any_of(c.creating.begin(), c.creating.end(),
                        [&](const auto& p) { return p.second == id; });
        if (!used) return id;
    }
}

Result<void> check_maps(const Config& c, const std::vector<PgIgMap>& maps) {
    if (maps.size() > kMaxTargetMaps)
        return invalid(fmt::format("more than {} pg_ig_maps", kMaxTargetMaps));
    for (const auto& m : maps) {
        if (const_cast<Config&>(c).find_pg(m.pg_tag) == nullptr)
            return Error(Errc::not_found, fmt::format("portal group {} not found", m.pg_tag));
        if (c.find_ig(m.ig_tag) == nullptr)
            return Error(Errc::not_found, fmt::format("initiator group {} not found", m.ig_tag));
    }
    return {};
}

bool has_map(const std::vector<PgIgMap>& maps, const PgIgMap& m) {
    return std::any_of(maps.begin(), maps.end(), [&](const PgIgMap& x) {
        return x.pg_tag == m.pg_tag && x.ig_tag == m.ig_tag;
    });
}

// Posts fn to `t`; false when the Thread is gone.
template <class F>
bool post_to(runtime::Thread* t, F&& fn) {
    return t != nullptr && t->post(std::forward<F>(fn)).ok();
}

}  // namespace

// ---- options --------------------------------------------------------------------------------------

Result<void> set_options(const TargetOptions& in) {
    Config& c = config();
    TargetOptions o = in;
    if (o.node_base.empty()) o.node_base = TargetOptions{}.node_base;
    auto range = [](const char* name, uint64_t v, uint64_t lo, uint64_t hi) -> Result<void> {
        if (v < lo || v > hi)
            return invalid(fmt::format("{} {} is out of range ({}-{})", name, v, lo, hi));
        return {};
    };
    STRATA_TRY(range("max_sessions", o.max_sessions, 1, 65535));
    STRATA_TRY(range("max_connections_per_session", o.max_connections_per_session, 1, 65535));
    STRATA_TRY(range("max_queue_depth", o.max_queue_depth, 1, kMaxQueueDepth));
    STRATA_TRY(range("default_time2wait", o.default_time2wait, 0, 3600));
    STRATA_TRY(range("default_time2retain", o.default_time2retain, 0, 3600));
    STRATA_TRY(range("max_recv_data_segment_length", o.max_recv_data_segment_length, kMinBurst,
                     kMaxBurst));
    STRATA_TRY(range("max_burst_length", o.max_burst_length, kMinBurst, kMaxBurst));
    STRATA_TRY(range("first_burst_length", o.first_burst_length, kMinBurst, o.max_burst_length));
    STRATA_TRY(range("error_recovery_level", o.error_recovery_level, 0, 2));
    STRATA_TRY(range("nop_in_interval", o.nop_in_interval, 0, kMaxNopInInterval));
    STRATA_TRY(range("nop_timeout", o.nop_timeout, 0, INT32_MAX));
    STRATA_TRY(range("max_large_datain_per_connection", o.max_large_datain_per_connection, 1,
                     UINT32_MAX));
    STRATA_TRY(range("max_r2t_per_connection", o.max_r2t_per_connection, 1, 65535));
    STRATA_TRY(range("chap_challenge_length", o.chap_challenge_length, 1, 1024));
    STRATA_TRY(range("data_digest_accel_threshold", o.data_digest_accel_threshold, 0, kMaxBurst));
    STRATA_TRY(check_chap(o.disable_chap, o.require_chap, o.mutual_chap, o.chap_group));
    if (o.node_base.size() > kMaxNameLength - 2)
        return invalid(fmt::format("node_base '{}' is too long", o.node_base));
    Config::fill_pool_sizes(o);
    std::lock_guard lock(c.mu);
    if (!c.pgs.empty() || !c.nodes.empty() || !c.creating.empty())
        return Error(Errc::busy, "iSCSI options can only be set while no portal group and no "
                                 "target node exist");
    c.opts = std::move(o);
    return {};
}

const TargetOptions& options() {
    // The app Thread is the only writer; it reads without the lock.
    return config().opts;
}

// ---- portal groups --------------------------------------------------------------------------------

Result<void> create_portal_group(const PortalGroupConfig& in) {
    Config& c = config();
    if (in.tag < 1) return invalid(fmt::format("portal group tag {} is invalid (must be >= 1)", in.tag));
    if (in.portals.empty()) return invalid(fmt::format("portal group {} has no portals", in.tag));
    if (in.portals.size() > kMaxPortals)
        return invalid(fmt::format("portal group {} has more than {} portals", in.tag, kMaxPortals));
    PortalGroup pg{in, false};
    for (auto& p : pg.cfg.portals) {
        auto n = normalize_portal(p);
        if (!n.ok()) return n.error();
        p = std::move(*n);
    }
    {
        std::lock_guard lock(c.mu);
        if (c.find_pg(in.tag) != nullptr)
            return Error(Errc::already_exists, fmt::format("portal group {} already exists", in.tag));
        for (size_t i = 0; i < pg.cfg.portals.size(); ++i) {
            const Portal& p = pg.cfg.portals[i];
            for (size_t j = 0; j < i; ++j)
                if (pg.cfg.portals[j].host == p.host && pg.cfg.portals[j].port == p.port)
                    return Error(Errc::already_exists,
                                 fmt::format("portal ({}, {}) is listed twice", p.host, p.port));
            for (const auto& other : c.pgs)
                for (const auto& q : other.cfg.portals)
                    if (q.host == p.host && q.port == p.port)
                        return Error(Errc::already_exists,
                                     fmt::format("portal ({}, {}) already exists in portal group {}",
                                                 p.host, p.port, other.cfg.tag));
        }
    }
    if (!pg.cfg.wait) {
        if (c.net) {
            Status s = c.net->start_portals(pg.cfg);
            if (!s.ok())
                return Error(s.code(), fmt::format("portal group {}: cannot listen: {}", in.tag,
                                                   s.to_string()));
        }
        pg.started = true;
    }
    std::lock_guard lock(c.mu);
    c.pgs.push_back(std::move(pg));
    return {};
}

Result<void> start_portal_group(int32_t tag) {
    Config& c = config();
    PortalGroupConfig copy;
    {
        std::lock_guard lock(c.mu);
        PortalGroup* pg = c.find_pg(tag);
        if (pg == nullptr)
            return Error(Errc::not_found, fmt::format("portal group {} not found", tag));
        if (pg->started) return {};
        copy = pg->cfg;
    }
    if (c.net) {
        Status s = c.net->start_portals(copy);
        if (!s.ok())
            return Error(s.code(),
                         fmt::format("portal group {}: cannot listen: {}", tag, s.to_string()));
    }
    std::lock_guard lock(c.mu);
    if (PortalGroup* pg = c.find_pg(tag)) pg->started = true;
    return {};
}

Result<void> delete_portal_group(int32_t tag) {
    Config& c = config();
    bool started = false;
    {
        std::lock_guard lock(c.mu);
        PortalGroup* pg = c.find_pg(tag);
        if (pg == nullptr)
            return Error(Errc::not_found, fmt::format("portal group {} not found", tag));
        for (const auto& n : c.nodes)
            for (const auto& m : n->cfg.pg_ig_maps)
                if (m.pg_tag == tag)
                    return Error(Errc::busy, fmt::format("portal group {} is mapped by target "
                                                         "node {}",
                                                         tag, n->cfg.name));
        started = pg->started;
        c.pgs.erase(c.pgs.begin() + (pg - c.pgs.data()));
    }
    if (started && c.net) c.net->stop_portals(tag);
    return {};
}

std::vector<PortalGroupConfig> portal_groups() {
    Config& c = config();
    std::lock_guard lock(c.mu);
    std::vector<PortalGroupConfig> out;
    for (const auto& p : c.pgs) out.push_back(p.cfg);
    return out;
}

// ---- initiator groups -----------------------------------------------------------------------------

namespace {

// Normalized copies of `in`'s initiators and netmasks, or the first bad one's error.
Result<InitiatorGroupConfig> normalize_ig(const InitiatorGroupConfig& in) {
    InitiatorGroupConfig out;
    out.tag = in.tag;
    if (in.initiators.size() > kMaxInitiators)
        return invalid(fmt::format("more than {} initiators", kMaxInitiators));
    if (in.netmasks.size() > kMaxNetmasks)
        return invalid(fmt::format("more than {} netmasks", kMaxNetmasks));
    for (const auto& i : in.initiators) {
        auto n = normalize_initiator(i);
        if (!n.ok()) return n.error();
        if (std::find(out.initiators.begin(), out.initiators.end(), *n) != out.initiators.end())
            return Error(Errc::already_exists, fmt::format("initiator '{}' is listed twice", *n));
        out.initiators.push_back(std::move(*n));
    }
    for (const auto& m : in.netmasks) {
        auto n = normalize_netmask(m);
        if (!n.ok()) return n.error();
        if (std::find(out.netmasks.begin(), out.netmasks.end(), *n) != out.netmasks.end())
            return Error(Errc::already_exists, fmt::format("netmask '{}' is listed twice", *n));
        out.netmasks.push_back(std::move(*n));
    }
    return out;
}

}  // namespace

Result<void> create_initiator_group(const InitiatorGroupConfig& in) {
    Config& c = config();
    if (in.tag < 1)
        return invalid(fmt::format("initiator group tag {} is invalid (must be >= 1)", in.tag));
    if (in.initiators.empty() || in.netmasks.empty())
        return invalid(fmt::format("initiator group {} needs at least one initiator and one "
                                   "netmask",
                                   in.tag));
    auto ig = normalize_ig(in);
    if (!ig.ok()) return ig.error();
    std::lock_guard lock(c.mu);
    if (c.find_ig(in.tag) != nullptr)
        return Error(Errc::already_exists, fmt::format("initiator group {} already exists", in.tag));
    c.igs.push_back(std::move(*ig));
    return {};
}

Result<void> initiator_group_add_initiators(const InitiatorGroupConfig& add) {
    Config& c = config();
    auto n = normalize_ig(add);
    if (!n.ok()) return n.error();
    std::lock_guard lock(c.mu);
    InitiatorGroupConfig* ig = c.find_ig(add.tag);
    if (ig == nullptr)
        return Error(Errc::not_found, fmt::format("initiator group {} not found", add.tag));
    for (const auto& i : n->initiators)
        if (std::find(ig->initiators.begin(), ig->initiators.end(), i) != ig->initiators.end())
            return Error(Errc::already_exists,
                         fmt::format("initiator group {} already has initiator '{}'", add.tag, i));
    for (const auto& m : n->netmasks)
        if (std::find(ig->netmasks.begin(), ig->netmasks.end(), m) != ig->netmasks.end())
            return Error(Errc::already_exists,
                         fmt::format("initiator group {} already has netmask '{}'", add.tag, m));
    if (ig->initiators.size() + n->initiators.size() > kMaxInitiators)
        return invalid(fmt::format("initiator group {} would have more than {} initiators",
                                   add.tag, kMaxInitiators));
    if (ig->netmasks.size() + n->netmasks.size() > kMaxNetmasks)
        return invalid(fmt::format("initiator group {} would have more than {} netmasks", add.tag,
                                   kMaxNetmasks));
    ig->initiators.insert(ig->initiators.end(), n->initiators.begin(), n->initiators.end());
    ig->netmasks.insert(ig->netmasks.end(), n->netmasks.begin(), n->netmasks.end());
    return {};
}

Result<void> initiator_group_remove_initiators(const InitiatorGroupConfig& rm) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    InitiatorGroupConfig* ig = c.find_ig(rm.tag);
    if (ig == nullptr)
        return Error(Errc::not_found, fmt::format("initiator group {} not found", rm.tag));
    InitiatorGroupConfig next = *ig;
    for (const auto& i : rm.initiators) {
        auto it = std::find(next.initiators.begin(), next.initiators.end(), i);
        if (it == next.initiators.end())
            return Error(Errc::not_found,
                         fmt::format("initiator group {} has no initiator '{}'", rm.tag, i));
        next.initiators.erase(it);
    }
    for (const auto& m : rm.netmasks) {
        auto it = std::find(next.netmasks.begin(), next.netmasks.end(), m);
        if (it == next.netmasks.end())
            return Error(Errc::not_found,
                         fmt::format("initiator group {} has no netmask '{}'", rm.tag, m));
        next.netmasks.erase(it);
    }
    *ig = std::move(next);
    return {};
}

Result<void> delete_initiator_group(int32_t tag) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    InitiatorGroupConfig* ig = c.find_ig(tag);
    if (ig == nullptr) return Error(Errc::not_found, fmt::format("initiator group {} not found", tag));
    for (const auto& n : c.nodes)
        for (const auto& m : n->cfg.pg_ig_maps)
            if (m.ig_tag == tag)
                return Error(Errc::busy, fmt::format("initiator group {} is mapped by target node {}",
                                                     tag, n->cfg.name));
    c.igs.erase(c.igs.begin() + (ig - c.igs.data()));
    return {};
}

std::vector<InitiatorGroupConfig> initiator_groups() {
    Config& c = config();
    std::lock_guard lock(c.mu);
    return c.igs;
}

// ---- auth groups ----------------------------------------------------------------------------------

namespace {

Result<void> check_secret(int32_t tag, const ChapSecretConfig& s) {
    if (s.user.empty() || s.secret.empty())
        return invalid(fmt::format("auth group {}: user and secret must be specified", tag));
    if (s.muser.empty() != s.msecret.empty())
        return invalid(fmt::format("auth group {}: muser and msecret go together (user '{}')", tag,
                                   s.user));
    for (const auto* f : {&s.user, &s.secret, &s.muser, &s.msecret})
        if (f->size() > kMaxChapField)
            return invalid(fmt::format("auth group {}: a CHAP name or secret of user '{}' is "
                                       "longer than {} characters",
                                       tag, s.user, kMaxChapField));
    return {};
}

bool has_user(const AuthGroupConfig& ag, const std::string& user) {
    return std::any_of(ag.secrets.begin(), ag.secrets.end(),
                       [&](const ChapSecretConfig& s) { return s.user == user; });
}

}  // namespace

Result<void> create_auth_group(const AuthGroupConfig& in) {
    Config& c = config();
    if (in.tag < 1) return invalid(fmt::format("auth group tag {} is invalid (must be >= 1)", in.tag));
    AuthGroupConfig ag{in.tag, {}};
    for (const auto& s : in.secrets) {
        STRATA_TRY(check_secret(in.tag, s));
        if (has_user(ag, s.user))
            return Error(Errc::already_exists,
                         fmt::format("auth group {}: user '{}' is listed twice", in.tag, s.user));
        ag.secrets.push_back(s);
    }
    std::lock_guard lock(c.mu);
    if (c.find_ag(in.tag) != nullptr)
        return Error(Errc::already_exists, fmt::format("auth group {} already exists", in.tag));
    c.ags.push_back(std::move(ag));
    return {};
}

Result<void> auth_group_add_secret(int32_t tag, const ChapSecretConfig& secret) {
    Config& c = config();
    STRATA_TRY(check_secret(tag, secret));
    std::lock_guard lock(c.mu);
    AuthGroupConfig* ag = c.find_ag_mut(tag);
    if (ag == nullptr) return Error(Errc::not_found, fmt::format("auth group {} not found", tag));
    if (has_user(*ag, secret.user))
        return Error(Errc::already_exists,
                     fmt::format("auth group {} already has user '{}'", tag, secret.user));
    ag->secrets.push_back(secret);
    return {};
}

Result<void> auth_group_remove_secret(int32_t tag, const std::string& user) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    AuthGroupConfig* ag = c.find_ag_mut(tag);
    if (ag == nullptr) return Error(Errc::not_found, fmt::format("auth group {} not found", tag));
    auto it = std::find_if(ag->secrets.begin(), ag->secrets.end(),
                           [&](const ChapSecretConfig& s) { return s.user == user; });
    if (it == ag->secrets.end())
        return Error(Errc::not_found, fmt::format("auth group {} has no user '{}'", tag, user));
    ag->secrets.erase(it);
    return {};
}

Result<void> delete_auth_group(int32_t tag) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    AuthGroupConfig* ag = c.find_ag_mut(tag);
    if (ag == nullptr) return Error(Errc::not_found, fmt::format("auth group {} not found", tag));
    if (c.opts.chap_group == tag)
        return Error(Errc::busy, fmt::format("auth group {} is used by discovery sessions", tag));
    for (const auto& n : c.nodes)
        if (n->cfg.chap_group == tag)
            return Error(Errc::busy,
                         fmt::format("auth group {} is used by target node {}", tag, n->cfg.name));
    c.ags.erase(c.ags.begin() + (ag - c.ags.data()));
    return {};
}

std::vector<AuthGroupConfig> auth_groups() {
    Config& c = config();
    std::lock_guard lock(c.mu);
    return c.ags;
}

Result<void> set_discovery_auth(const DiscoveryAuth& a) {
    Config& c = config();
    STRATA_TRY(check_chap(a.disable_chap, a.require_chap, a.mutual_chap, a.chap_group));
    std::lock_guard lock(c.mu);
    c.opts.disable_chap = a.disable_chap;
    c.opts.require_chap = a.require_chap;
    c.opts.mutual_chap = a.mutual_chap;
    c.opts.chap_group = a.chap_group;
    return {};
}

DiscoveryAuth discovery_auth() {
    Config& c = config();
    std::lock_guard lock(c.mu);
    return {c.opts.disable_chap, c.opts.require_chap, c.opts.mutual_chap, c.opts.chap_group};
}

// ---- target nodes ---------------------------------------------------------------------------------

void create_target_node(const TargetNodeConfig& in, std::function<void(Result<void>)> done) {
    Config& c = config();
    runtime::Thread* home = runtime::current_thread();
    TargetNodeConfig node = in;
    auto fail = [&](Error e) { done(std::move(e)); };
    // SPDK: a name without an iqn./eui./naa. prefix is "<node_base>:<name>".
    if (node.name.empty()) return fail(invalid("target node name is empty"));
    node.name = c.full_name(node.name);
    if (auto r = check_iscsi_name(node.name); !r.ok()) return fail(r.error());
    if (node.alias_name.size() > kMaxNameLength)
        return fail(invalid(fmt::format("alias_name of {} is longer than {} bytes", node.name,
                                        kMaxNameLength)));
    if (auto r = check_chap(node.disable_chap, node.require_chap, node.mutual_chap,
                            node.chap_group);
        !r.ok())
        return fail(r.error());
    if (node.queue_depth < 1 || uint32_t(node.queue_depth) > c.opts.max_queue_depth)
        return fail(invalid(fmt::format("queue_depth {} is out of range (1-{}, max_queue_depth)",
                                        node.queue_depth, c.opts.max_queue_depth)));
    if (node.luns.empty()) return fail(invalid(fmt::format("target node {} has no LUNs", node.name)));
    for (size_t i = 0; i < node.luns.size(); ++i) {
        const TargetLun& l = node.luns[i];
        if (l.lun_id < 0 || uint64_t(l.lun_id) > scsi::kMaxLunId)
            return fail(invalid(fmt::format("LUN id {} is out of range (0-{})", l.lun_id,
                                            scsi::kMaxLunId)));
        if (l.bdev_name.empty()) return fail(invalid("a LUN's bdev_name is empty"));
        for (size_t j = 0; j < i; ++j)
            if (node.luns[j].lun_id == l.lun_id)
                return fail(invalid(fmt::format("LUN id {} is listed twice", l.lun_id)));
    }
    if (node.pg_ig_maps.empty())
        return fail(invalid(fmt::format("target node {} has no pg_ig_maps", node.name)));
    for (size_t i = 0; i < node.pg_ig_maps.size(); ++i)
        if (has_map({node.pg_ig_maps.begin(), node.pg_ig_maps.begin() + long(i)},
                    node.pg_ig_maps[i]))
            return fail(Error(Errc::already_exists,
                              fmt::format("pg_ig_map ({}, {}) is listed twice",
                                          node.pg_ig_maps[i].pg_tag, node.pg_ig_maps[i].ig_tag)));
    scsi::DeviceOptions dev_opts;
    {
        std::lock_guard lock(c.mu);
        if (auto r = check_maps(c, node.pg_ig_maps); !r.ok()) return fail(r.error());
        if (c.name_taken(node.name))
            return fail(Error(Errc::already_exists,
                              fmt::format("target node {} already exists", node.name)));
        dev_opts.id = free_device_id(c);
        c.creating.emplace_back(node.name, dev_opts.id);
    }
    dev_opts.name = node.name;
    for (const auto& l : node.luns) dev_opts.luns.push_back({uint64_t(l.lun_id), l.bdev_name});

    auto finish = [node, done = std::move(done)](Result<scsi::Device*> r) mutable {
        // On the app Thread.
        Config& c = config();
        {
            std::lock_guard lock(c.mu);
            auto it = std::find_if(c.creating.begin(), c.creating.end(),
                                   [&](const auto& p) { return p.first == node.name; });
            if (it != c.creating.end()) c.creating.erase(it);
            if (r.ok()) {
                auto n = std::make_unique<Node>();
                n->cfg = node;
                n->dev = *r;
                c.nodes.push_back(std::move(n));
            }
        }
        if (!r.ok())
            return done(Error(r.error().code(),
                              fmt::format("target node {}: {}", node.name, r.error().message())));
        done({});
    };
    runtime::Thread* t = next_node_thread(c);
    auto shared = std::make_shared<decltype(finish)>(std::move(finish));
    const bool posted = post_to(t, [home, dev_opts, shared] {
        Result<scsi::Device*> r = scsi::create_device(dev_opts);
        if (!post_to(home, [shared, r]() mutable { (*shared)(std::move(r)); })) {
            // The app Thread is gone (App stopping): undo.
            if (r.ok()) scsi::destroy_device(**r, [] {});
        }
    });
    if (!posted) (*shared)(Error(Errc::shutdown, "no Thread to run the target node on"));
}

void delete_target_node(const std::string& name, std::function<void(Result<void>)> done) {
    Config& c = config();
    runtime::Thread* home = runtime::current_thread();
    std::string full;
    scsi::Device* dev = nullptr;
    {
        std::lock_guard lock(c.mu);
        Node* n = c.find_node(name);
        if (n == nullptr || n->deleting)
            return done(Error(Errc::not_found, fmt::format("target node {} not found", name)));
        n->deleting = true;
        full = n->cfg.name;
        dev = n->dev;
    }
    auto destroy = [home, full, dev, done = std::move(done)]() mutable {
        auto erase_and_reply = [full, done = std::move(done)]() mutable {
            Config& c = config();
            {
                std::lock_guard lock(c.mu);
                auto it = std::find_if(c.nodes.begin(), c.nodes.end(),
                                       [&](const auto& n) { return n->cfg.name == full; });
                if (it != c.nodes.end()) c.nodes.erase(it);
            }
            done({});
        };
        auto shared = std::make_shared<decltype(erase_and_reply)>(std::move(erase_and_reply));
        runtime::Thread* t = &scsi::device_thread(*dev);
        const bool posted = post_to(t, [dev, home, shared] {
            scsi::destroy_device(*dev, [home, shared] {
                (void)post_to(home, [shared] { (*shared)(); });
            });
        });
        if (!posted) (*shared)();
    };
    if (c.net)
        c.net->end_target_sessions(full, std::move(destroy));
    else
        destroy();
}

void target_node_add_lun(const std::string& name, const TargetLun& lun,
                         std::function<void(Result<void>)> done) {
    Config& c = config();
    runtime::Thread* home = runtime::current_thread();
    scsi::Device* dev = nullptr;
    std::string full;
    TargetLun l = lun;
    {
        std::lock_guard lock(c.mu);
        Node* n = c.find_node(name);
        if (n == nullptr || n->deleting)
            return done(Error(Errc::not_found, fmt::format("target node {} not found", name)));
        full = n->cfg.name;
        dev = n->dev;
        if (l.lun_id == -1) {  // SPDK: the lowest free LUN id
            l.lun_id = 0;
            while (std::any_of(n->cfg.luns.begin(), n->cfg.luns.end(),
                               [&](const TargetLun& x) { return x.lun_id == l.lun_id; }))
                ++l.lun_id;
        }
    }
    if (l.lun_id < 0 || uint64_t(l.lun_id) > scsi::kMaxLunId)
        return done(invalid(fmt::format("LUN id {} is out of range (0-{}, or -1 for the lowest "
                                        "free id)",
                                        lun.lun_id, scsi::kMaxLunId)));
    if (l.bdev_name.empty()) return done(invalid("bdev_name is empty"));
    auto finish = [full, l, done = std::move(done)](Result<void> r) mutable {
        if (!r.ok())
            return done(Error(r.error().code(),
                              fmt::format("target node {}: {}", full, r.error().message())));
        Config& c = config();
        {
            std::lock_guard lock(c.mu);
            if (Node* n = c.find_node(full)) n->cfg.luns.push_back(l);
        }
        done({});
    };
    auto shared = std::make_shared<decltype(finish)>(std::move(finish));
    const bool posted = post_to(&scsi::device_thread(*dev), [dev, home, l, shared] {
        Result<void> r = scsi::add_lun(*dev, {uint64_t(l.lun_id), l.bdev_name});
        (void)post_to(home, [shared, r]() mutable { (*shared)(std::move(r)); });
    });
    if (!posted) (*shared)(Error(Errc::shutdown, "the target node's Thread is gone"));
}

Result<void> target_node_add_pg_ig_maps(const std::string& name, const std::vector<PgIgMap>& maps) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    Node* n = c.find_node(name);
    if (n == nullptr || n->deleting)
        return Error(Errc::not_found, fmt::format("target node {} not found", name));
    STRATA_TRY(check_maps(c, maps));
    std::vector<PgIgMap> next = n->cfg.pg_ig_maps;
    for (const auto& m : maps) {
        if (has_map(next, m))
            return Error(Errc::already_exists,
                         fmt::format("target node {} already maps portal group {} to initiator "
                                     "group {}",
                                     n->cfg.name, m.pg_tag, m.ig_tag));
        next.push_back(m);
    }
    if (next.size() > kMaxTargetMaps)
        return invalid(fmt::format("target node {} would have more than {} pg_ig_maps",
                                   n->cfg.name, kMaxTargetMaps));
    n->cfg.pg_ig_maps = std::move(next);
    return {};
}

Result<void> target_node_remove_pg_ig_maps(const std::string& name,
                                           const std::vector<PgIgMap>& maps) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    Node* n = c.find_node(name);
    if (n == nullptr || n->deleting)
        return Error(Errc::not_found, fmt::format("target node {} not found", name));
    std::vector<PgIgMap> next = n->cfg.pg_ig_maps;
    for (const auto& m : maps) {
        auto it = std::find_if(next.begin(), next.end(), [&](const PgIgMap& x) {
            return x.pg_tag == m.pg_tag && x.ig_tag == m.ig_tag;
        });
        if (it == next.end())
            return Error(Errc::not_found,
                         fmt::format("target node {} does not map portal group {} to initiator "
                                     "group {}",
                                     n->cfg.name, m.pg_tag, m.ig_tag));
        next.erase(it);
    }
    n->cfg.pg_ig_maps = std::move(next);
    return {};
}

Result<void> target_node_set_auth(const std::string& name, const DiscoveryAuth& a) {
    Config& c = config();
    STRATA_TRY(check_chap(a.disable_chap, a.require_chap, a.mutual_chap, a.chap_group));
    std::lock_guard lock(c.mu);
    Node* n = c.find_node(name);
    if (n == nullptr || n->deleting)
        return Error(Errc::not_found, fmt::format("target node {} not found", name));
    n->cfg.disable_chap = a.disable_chap;
    n->cfg.require_chap = a.require_chap;
    n->cfg.mutual_chap = a.mutual_chap;
    n->cfg.chap_group = a.chap_group;
    return {};
}

std::vector<TargetNodeConfig> target_nodes() {
    Config& c = config();
    std::lock_guard lock(c.mu);
    std::vector<TargetNodeConfig> out;
    for (const auto& n : c.nodes) {
        if (n->deleting) continue;
        // A LUN whose bdev is gone was hot-removed (core/scsi removed it from the device when
        // the bdev went): forget it, so listings and save_config show what the device has.
        std::erase_if(n->cfg.luns,
                      [](const TargetLun& l) { return bdev::find(l.bdev_name) == nullptr; });
        out.push_back(n->cfg);
    }
    return out;
}

// ---- connections, shutdown ------------------------------------------------------------------------

void get_connections(std::function<void(std::vector<ConnectionInfo>)> done) {
    Config& c = config();
    if (c.net)
        c.net->get_connections(std::move(done));
    else
        done({});
}

void shutdown(std::function<void()> done) {
    Config& c = config();
    runtime::Thread* home = runtime::current_thread();
    auto destroy_nodes = [home, done = std::move(done)]() mutable {
        Config& c = config();
        std::vector<scsi::Device*> devs;
        {
            std::lock_guard lock(c.mu);
            for (auto& n : c.nodes) {
                n->deleting = true;
                devs.push_back(n->dev);
            }
        }
        // Counted completion: every device destroyed on its Thread, then the rest on `home`.
        auto left = std::make_shared<std::atomic<size_t>>(devs.size() + 1);
        auto finish = std::make_shared<std::function<void()>>([done = std::move(done)]() mutable {
            Config& c = config();
            {
                std::lock_guard lock(c.mu);
                c.nodes.clear();
                c.pgs.clear();
                c.igs.clear();
                c.ags.clear();
            }
            for (runtime::Thread* t : c.threads) (void)post_to(t, [t] { t->request_exit(); });
            c.threads.clear();
            c.net.reset();
            done();
        });
        auto one = [left, home, finish] {
            if (--*left == 0 && !post_to(home, [finish] { (*finish)(); })) (*finish)();
        };
        for (scsi::Device* d : devs) {
            if (!post_to(&scsi::device_thread(*d), [d, one] { scsi::destroy_device(*d, one); }))
                one();
        }
        one();
    };
    if (c.net) {
        {
            std::lock_guard lock(c.mu);
            for (auto& pg : c.pgs) pg.started = false;
        }
        c.net->shutdown(std::move(destroy_nodes));
    } else {
        destroy_nodes();
    }
}

// ---- the network layer's side ---------------------------------------------------------------------

namespace internal {

TargetLookup lookup_target(std::string_view name, std::string_view initiator,
                           std::string_view initiator_addr, int32_t pg_tag) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    TargetLookup r;
    const Node* n = c.find_node(name);
    if (n == nullptr) {
        r.status = login_status::not_found;
        return r;
    }
    r.info.name = n->cfg.name;
    r.info.alias = n->cfg.alias_name;
    r.info.auth = {n->cfg.disable_chap, n->cfg.require_chap, n->cfg.mutual_chap,
                   n->cfg.chap_group};
    r.header_digest = n->cfg.header_digest;
    r.data_digest = n->cfg.data_digest;
    r.queue_depth = n->cfg.queue_depth;
    if (n->deleting) {
        r.status = login_status::target_removed;
    } else if (!c.access(*n, pg_tag, initiator, initiator_addr)) {
        r.status = login_status::authorization_failure;
    } else {
        r.status = login_status::success;
        r.device = n->dev;
    }
    return r;
}

AuthPolicy discovery_policy() {
    const DiscoveryAuth a = discovery_auth();
    return {a.disable_chap, a.require_chap, a.mutual_chap, a.chap_group};
}

const ChapSecrets& chap_secrets() { return config(); }

std::vector<SendTargetsEntry> send_targets(std::string_view initiator,
                                           std::string_view initiator_addr,
                                           std::string_view target_addr) {
    Config& c = config();
    std::lock_guard lock(c.mu);
    std::vector<SendTargetsEntry> out;
    for (const auto& n : c.nodes) {
        if (n->deleting) continue;
        SendTargetsEntry e{n->cfg.name, {}};
        bool reachable = false;
        std::vector<int32_t> seen;
        for (const auto& m : n->cfg.pg_ig_maps) {
            if (std::find(seen.begin(), seen.end(), m.pg_tag) != seen.end()) continue;
            seen.push_back(m.pg_tag);
            if (!c.access(*n, m.pg_tag, initiator, initiator_addr)) continue;
            reachable = true;
            const PortalGroup* pg = c.find_pg(m.pg_tag);
            if (pg == nullptr || pg->cfg.is_private) continue;
            for (const auto& p : pg->cfg.portals) {
                std::string_view host = p.host;
                if (is_wildcard(host) && !target_addr.empty()) host = target_addr;
                e.addresses.push_back(target_address(host, p.port, pg->cfg.tag));
            }
        }
        if (reachable) out.push_back(std::move(e));
    }
    return out;
}

std::vector<runtime::Thread*> node_threads() {
    Config& c = config();
    if (c.threads.empty()) {
        runtime::Thread* self = runtime::current_thread();
        if (self == nullptr) return {};
        runtime::Scheduler& sched = self->scheduler();
        const uint32_t n = std::max(1u, sched.reactor_count());
        for (uint32_t i = 0; i < n; ++i) {
            runtime::Thread* t = sched.create_thread(fmt::format("iscsi_node{}", i), int(i));
            if (t != nullptr) c.threads.push_back(t);
        }
    }
    return c.threads;
}

void set_network(std::unique_ptr<Network> network) { config().net = std::move(network); }

}  // namespace internal

}  // namespace strata::iscsi
