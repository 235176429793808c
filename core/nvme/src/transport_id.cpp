// SPDK's transport-id string parser (see transport_id.h for the grammar).
#include <strata/nvme/transport_id.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace strata::nvme {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n'; }

constexpr size_t kKeyMax = 31;    // SPDK: char key[32]
constexpr size_t kValueMax = 1023;  // SPDK: char val[1024]

Error bad(std::string msg) {
    return Error(Errc::invalid_argument, fmt::format("transport id: {}", msg));
}

}  // namespace

const char* trtype_name(TrType t) noexcept {
    switch (t) {
        case TrType::pcie: return "PCIe";
        case TrType::tcp: return "TCP";
        case TrType::rdma: return "RDMA";
        case TrType::fc: return "FC";
        case TrType::vfiouser: return "VFIOUSER";
        case TrType::custom: return "CUSTOM";
    }
    return "?";
}

const char* adrfam_name(AdrFam a) noexcept {
    switch (a) {
        case AdrFam::none: return "";
        case AdrFam::ipv4: return "IPv4";
        case AdrFam::ipv6: return "IPv6";
        case AdrFam::ib: return "IB";
        case AdrFam::fc: return "FC";
        case AdrFam::intra_host: return "INTRA_HOST";
    }
    return "?";
}

TrType parse_trtype(std::string_view s) noexcept {
    if (iequals(s, "PCIe")) return TrType::pcie;
    if (iequals(s, "TCP")) return TrType::tcp;
    if (iequals(s, "RDMA")) return TrType::rdma;
    if (iequals(s, "FC")) return TrType::fc;
    if (iequals(s, "VFIOUSER")) return TrType::vfiouser;
    return TrType::custom;
}

Result<AdrFam> parse_adrfam(std::string_view s) {
    if (iequals(s, "IPv4")) return AdrFam::ipv4;
    if (iequals(s, "IPv6")) return AdrFam::ipv6;
    if (iequals(s, "IB")) return AdrFam::ib;
    if (iequals(s, "FC")) return AdrFam::fc;
    if (iequals(s, "INTRA_HOST")) return AdrFam::intra_host;
    return Error(Errc::not_found, fmt::format("unknown adrfam '{}'", s));
}

Result<TransportId> parse_transport_id(std::string_view text) {
    TransportId id;
    size_t at = 0;
    while (at < text.size()) {
        while (at < text.size() && is_space(text[at])) ++at;
        if (at == text.size()) break;  // trailing blanks (SPDK would fail on "key without value")
        const std::string_view rest = text.substr(at);
        const size_t sep = rest.find_first_of(":=");
        if (sep == std::string_view::npos) return bad("key without ':' or '=' separator");
        const std::string_view key = rest.substr(0, sep);
        if (key.size() > kKeyMax)
            return bad(fmt::format("key longer than {} bytes", kKeyMax));
        size_t vlen = 0;
        while (sep + 1 + vlen < rest.size() && !is_space(rest[sep + 1 + vlen])) ++vlen;
        if (vlen == 0) return bad(fmt::format("key '{}' without value", key));
        if (vlen > kValueMax) return bad(fmt::format("value longer than {} bytes", kValueMax));
        const std::string_view val = rest.substr(sep + 1, vlen);
        at += sep + 1 + vlen;

        auto limited = [&](std::string& out, size_t max) -> Result<void> {
            if (val.size() > max)
                return bad(fmt::format("{} longer than {} bytes", key, max));
            out.assign(val);
            return {};
        };
        if (iequals(key, "trtype")) {
            id.trtype = parse_trtype(val);
            id.trstring.assign(val);
            for (char& c : id.trstring) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        } else if (iequals(key, "adrfam")) {
            auto a = parse_adrfam(val);
            if (!a) return bad(fmt::format("unknown adrfam '{}'", val));
            id.adrfam = *a;
        } else if (iequals(key, "traddr")) {
            if (auto r = limited(id.traddr, kTraddrMaxLen); !r) return r.error();
        } else if (iequals(key, "trsvcid")) {
            if (auto r = limited(id.trsvcid, kTrsvcidMaxLen); !r) return r.error();
        } else if (iequals(key, "subnqn")) {
            if (auto r = limited(id.subnqn, kNqnMaxLen); !r) return r.error();
        } else if (iequals(key, "hostnqn")) {
            if (auto r = limited(id.hostnqn, kNqnMaxLen); !r) return r.error();
        } else if (iequals(key, "hostaddr")) {
            if (auto r = limited(id.hostaddr, kTraddrMaxLen); !r) return r.error();
        } else if (iequals(key, "hostsvcid")) {
            if (auto r = limited(id.hostsvcid, kTrsvcidMaxLen); !r) return r.error();
        } else if (iequals(key, "priority")) {
            if (val.size() > kPriorityMaxLen)
                return bad(fmt::format("priority longer than {} bytes", kPriorityMaxLen));
            int32_t p = 0;
            auto [ptr, ec] = std::from_chars(val.data(), val.data() + val.size(), p);
            if (ec != std::errc{} || ptr != val.data() + val.size())
                return bad(fmt::format("priority '{}' is not a number", val));
            id.priority = p;
        } else if (iequals(key, "ns")) {
            uint32_t n = 0;
            auto [ptr, ec] = std::from_chars(val.data(), val.data() + val.size(), n);
            if (ec != std::errc{} || ptr != val.data() + val.size() || n == 0)
                return bad(fmt::format("ns '{}' is not a namespace id", val));
            id.nsid = n;
        } else {
            id.ignored_keys.emplace_back(key);  // SPDK logs and ignores these (alt_traddr, ...)
        }
    }
    if (id.trstring.empty()) id.trstring = "PCIE";
    return id;
}

std::string to_string(const TransportId& id) {
    std::string out = fmt::format("trtype:{}", trtype_name(id.trtype));
    if (id.adrfam != AdrFam::none) out += fmt::format(" adrfam:{}", adrfam_name(id.adrfam));
    if (!id.traddr.empty()) out += fmt::format(" traddr:{}", id.traddr);
    if (!id.trsvcid.empty()) out += fmt::format(" trsvcid:{}", id.trsvcid);
    if (!id.subnqn.empty()) out += fmt::format(" subnqn:{}", id.subnqn);
    if (!id.hostnqn.empty()) out += fmt::format(" hostnqn:{}", id.hostnqn);
    if (!id.hostaddr.empty()) out += fmt::format(" hostaddr:{}", id.hostaddr);
    if (!id.hostsvcid.empty()) out += fmt::format(" hostsvcid:{}", id.hostsvcid);
    if (id.priority != 0) out += fmt::format(" priority:{}", id.priority);
    if (id.nsid != 0) out += fmt::format(" ns:{}", id.nsid);
    return out;
}

}  // namespace strata::nvme
