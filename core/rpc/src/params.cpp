#include <algorithm>
#include <cstdint>

#include <strata/rpc/params.h>

namespace strata::rpc {

void append_default_only(std::vector<ParamSpec>& specs,
                         const std::vector<DefaultOnlyParam>& params) {
    for (const auto& d : params) {
        std::string doc =
            d.def.is_null()
                ? fmt::format("{}: not supported, refused when given (SPDK compatibility)",
                              d.feature)
                : fmt::format("{}: not supported, accepted only at SPDK's default {}", d.feature,
                              d.def.dump());
        specs.push_back({d.name, d.type, false, std::move(doc), d.def});
    }
}

bool at_default(const Json& v, const Json& def) {
    if (v == def) return true;
    if (!v.is_array() || !def.is_array() || v.size() != def.size()) return false;
    for (const auto& e : def)
        if (std::find(v.begin(), v.end(), e) == v.end()) return false;
    return true;
}

Result<void> check_default_only(std::string_view method, const Json& params,
                                const std::vector<DefaultOnlyParam>& list) {
    for (const auto& d : list) {
        auto it = params.find(d.name);
        if (it == params.end() || it->is_null() || at_default(*it, d.def)) continue;
        if (d.def.is_null())
            return Error(Errc::not_supported,
                         fmt::format("{}: '{}' needs {}, which Strata does not support", method,
                                     d.name, d.feature));
        return Error(Errc::not_supported,
                     fmt::format("{}: '{}' = {} needs {}, which Strata does not support (only "
                                 "the default {} is accepted)",
                                 method, d.name, it->dump(), d.feature, d.def.dump()));
    }
    return {};
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        auto lo = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
        if (lo(a[i]) != lo(b[i])) return false;
    }
    return true;
}

std::string base64_encode(const void* data, size_t size, bool urlsafe) {
    const char* kAlphabet =
        urlsafe ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto* p = static_cast<const uint8_t*>(data);
    std::string out;
    out.reserve((size + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= size; i += 3) {
        const uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    if (size - i == 1) {
        const uint32_t v = uint32_t(p[i]) << 16;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += "==";
    } else if (size - i == 2) {
        const uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

Result<std::vector<uint8_t>> base64_decode(std::string_view text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+' || c == '-') return 62;
        if (c == '/' || c == '_') return 63;
        return -1;
    };
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 1) return Error(Errc::invalid_argument, "base64: bad length");
    std::vector<uint8_t> out;
    out.reserve(text.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        const int v = value(c);
        if (v < 0)
            return Error(Errc::invalid_argument, fmt::format("base64: bad character '{}'", c));
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<uint8_t>(acc >> bits));
        }
    }
    return out;
}

}  // namespace strata::rpc
