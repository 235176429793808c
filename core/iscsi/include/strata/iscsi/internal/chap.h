// CHAP for iSCSI login (RFC 1994; RFC 7143 §12.1.3), MD5 only (CHAP_A=5), one-way and mutual.
//
// Response = MD5(CHAP_I as one byte || secret || CHAP_C). Binary values travel as "0x" + hex
// or "0b" + base64 (RFC 7143 §6.1). MD5 comes from OpenSSL's libcrypto.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::iscsi {

using Md5Digest = std::array<uint8_t, 16>;
Md5Digest md5(std::span<const uint8_t> data) noexcept;
Md5Digest chap_md5_response(uint8_t id, std::string_view secret,
                            std::span<const uint8_t> challenge) noexcept;

std::string encode_hex(std::span<const uint8_t> bytes);     // "0x" + lowercase hex
std::string encode_base64(std::span<const uint8_t> bytes);  // "0b" + base64 (with padding)
// A binary value: "0x"/"0X" + hex digits (odd count: a leading zero nibble is implied) or
// "0b"/"0B" + base64. nullopt if malformed or empty.
std::optional<std::vector<uint8_t>> decode_binary(std::string_view value);
// A numerical value (RFC 7143 §6.1): decimal, "0x" hex or "0b" base64, at most 64 bits.
std::optional<uint64_t> decode_number(std::string_view value);

// One auth-group entry (SPDK's iscsi_create_auth_group secrets: user, secret, muser, msecret).
struct ChapSecret {
    std::string user;
    std::string secret;
    std::string muser;    // mutual CHAP: the name the target answers with
    std::string msecret;  // mutual CHAP: the secret the target proves it knows
};

// Secret lookup through auth groups, implemented by the target configuration (planned).
class ChapSecrets {
public:
    virtual ~ChapSecrets() = default;
    // The entry of auth group `group` whose user is `user`; false if none.
    virtual bool lookup(int32_t group, std::string_view user, ChapSecret* out) const = 0;
};

}  // namespace strata::iscsi
