// CHAP helpers (see <strata/iscsi/internal/chap.h>).
#include <openssl/evp.h>

#include <strata/base/assert.h>
#include <strata/iscsi/internal/chap.h>

namespace strata::iscsi {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int hex_nibble(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
int b64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}
}  // namespace

Md5Digest md5(std::span<const uint8_t> data) noexcept {
    Md5Digest d{};
    unsigned int len = 0;
    const int ok = EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_md5(), nullptr);
    STRATA_ASSERT(ok == 1 && len == d.size());
    return d;
}

Md5Digest chap_md5_response(uint8_t id, std::string_view secret,
                            std::span<const uint8_t> challenge) noexcept {
    Md5Digest d{};
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    STRATA_ASSERT(ctx != nullptr);
    int ok = EVP_DigestInit_ex(ctx, EVP_md5(), nullptr);
    ok &= EVP_DigestUpdate(ctx, &id, 1);
    ok &= EVP_DigestUpdate(ctx, secret.data(), secret.size());
    ok &= EVP_DigestUpdate(ctx, challenge.data(), challenge.size());
    ok &= EVP_DigestFinal_ex(ctx, d.data(), &len);
    EVP_MD_CTX_free(ctx);
    STRATA_ASSERT(ok == 1 && len == d.size());
    return d;
}

std::string encode_hex(std::span<const uint8_t> bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s = "0x";
    s.reserve(2 + bytes.size() * 2);
    for (uint8_t b : bytes) {
        s += kHex[b >> 4];
        s += kHex[b & 15];
    }
    return s;
}

std::string encode_base64(std::span<const uint8_t> bytes) {
    std::string s = "0b";
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const uint32_t v = uint32_t(bytes[i]) << 16 | uint32_t(bytes[i + 1]) << 8 | bytes[i + 2];
        s += kB64[v >> 18];
        s += kB64[(v >> 12) & 63];
        s += kB64[(v >> 6) & 63];
        s += kB64[v & 63];
    }
    const size_t rest = bytes.size() - i;
    if (rest > 0) {
        uint32_t v = uint32_t(bytes[i]) << 16;
        if (rest == 2) v |= uint32_t(bytes[i + 1]) << 8;
        s += kB64[v >> 18];
        s += kB64[(v >> 12) & 63];
        s += rest == 2 ? kB64[(v >> 6) & 63] : '=';
        s += '=';
    }
    return s;
}

std::optional<std::vector<uint8_t>> decode_binary(std::string_view v) {
    if (v.size() < 3 || v[0] != '0') return std::nullopt;
    std::vector<uint8_t> out;
    const std::string_view body = v.substr(2);
    if (v[1] == 'x' || v[1] == 'X') {
        size_t i = 0;
        if (body.size() % 2 == 1) {
            const int n = hex_nibble(body[0]);
            if (n < 0) return std::nullopt;
            out.push_back(uint8_t(n));
            i = 1;
        }
        for (; i < body.size(); i += 2) {
            const int hi = hex_nibble(body[i]), lo = hex_nibble(body[i + 1]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(uint8_t(hi << 4 | lo));
        }
        return out;
    }
    if (v[1] == 'b' || v[1] == 'B') {
        if (body.size() % 4 != 0) return std::nullopt;
        for (size_t i = 0; i < body.size(); i += 4) {
            int q[4];
            int pads = 0;
            for (int k = 0; k < 4; ++k) {
                const char c = body[i + k];
                if (c == '=') {
                    if (i + 4 != body.size() || k < 2) return std::nullopt;
                    q[k] = 0;
                    ++pads;
                } else {
                    if (pads) return std::nullopt;
                    q[k] = b64_value(c);
                    if (q[k] < 0) return std::nullopt;
                }
            }
            const uint32_t w = uint32_t(q[0]) << 18 | uint32_t(q[1]) << 12 | uint32_t(q[2]) << 6 | q[3];
            out.push_back(uint8_t(w >> 16));
            if (pads < 2) out.push_back(uint8_t(w >> 8));
            if (pads < 1) out.push_back(uint8_t(w));
        }
        return out;
    }
    return std::nullopt;
}

std::optional<uint64_t> decode_number(std::string_view v) {
    if (v.empty()) return std::nullopt;
    if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X' || v[1] == 'b' || v[1] == 'B')) {
        auto bytes = decode_binary(v);
        if (!bytes || bytes->empty()) return std::nullopt;
        size_t i = 0;
        while (i + 1 < bytes->size() && (*bytes)[i] == 0) ++i;  // leading zero bytes
        if (bytes->size() - i > 8) return std::nullopt;
        uint64_t n = 0;
        for (; i < bytes->size(); ++i) n = n << 8 | (*bytes)[i];
        return n;
    }
    uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return std::nullopt;
        const uint64_t d = uint64_t(c - '0');
        if (n > (UINT64_MAX - d) / 10) return std::nullopt;
        n = n * 10 + d;
    }
    return n;
}

}  // namespace strata::iscsi
