// Parameter-decoding helpers shared by RPC handlers: integer ranges, SPDK parameters accepted
// only at their default (features Strata does not have), case-insensitive enumerations.
//
// The registry's schema (registry.h) already checks names and JSON types; these helpers check
// what a schema cannot: that an integer fits the C type SPDK decodes it into, and that a
// parameter SPDK's decoder table accepts for a feature Strata lacks (DIF, metadata,
// multipath, TLS...) is at its default. SPDK's rpc.py sends every argument that is not None,
// store_true flags as false, so such parameters arrive at their default in ordinary scripts.
#pragma once

#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include <strata/base/status.h>
#include <strata/rpc/registry.h>

namespace strata::rpc {

// A parameter SPDK's handler accepts for a feature Strata does not implement.
struct DefaultOnlyParam {
    std::string name;
    ParamType type;
    Json def;             // SPDK's default; null: "absent" (any non-null value is refused)
    std::string feature;  // named in the error: "DIF", "separate metadata", "multipath"...
};

// Schema entries for them (optional, documented as accepted only at the default).
void append_default_only(std::vector<ParamSpec>& specs,
                         const std::vector<DefaultOnlyParam>& params);

// Equal to def; for arrays, the same elements in any order.
bool at_default(const Json& value, const Json& def);

// Errc::not_supported naming the method, the first parameter present (non-null) and not at
// its default, and the feature: "bdev_malloc_create: 'md_size' = 8 needs separate metadata,
// which Strata does not support (only the default 0 is accepted)".
Result<void> check_default_only(std::string_view method, const Json& params,
                                const std::vector<DefaultOnlyParam>& list);

// params[key] as T if it fits T's range, `fallback` when absent or null; invalid_argument
// ("'key' 70000 is out of range") otherwise. The schema has checked that it is an integer.
template <class T>
Result<T> int_param(const Json& p, const char* key, T fallback) {
    static_assert(std::is_integral_v<T>);
    auto it = p.find(key);
    if (it == p.end() || it->is_null()) return fallback;
    if (!it->is_number_integer())
        return Error(Errc::invalid_argument, fmt::format("'{}' must be an integer", key));
    const bool neg = !it->is_number_unsigned() && it->get<int64_t>() < 0;
    const bool fits =
        neg ? std::is_signed_v<T> &&
                  it->get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min())
            : it->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    if (!fits)
        return Error(Errc::invalid_argument,
                     fmt::format("'{}' {} is out of range", key, it->dump()));
    return it->get<T>();
}

// ASCII case-insensitive equality (SPDK compares raid levels, trtypes, adrfams that way).
bool iequals(std::string_view a, std::string_view b) noexcept;

// RFC 4648 base64 with padding (SPDK's results carry binary blobs so: bdev_get_histogram);
// urlsafe: the URL and file name alphabet ("-_", SPDK's spdk_base64_urlsafe_encode).
std::string base64_encode(const void* data, size_t size, bool urlsafe = false);
// Decodes either alphabet, padding optional; invalid_argument for a bad character or length.
Result<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace strata::rpc
