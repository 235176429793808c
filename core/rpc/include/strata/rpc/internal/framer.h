// StreamFramer: splits a byte stream into complete JSON values, as SPDK's JSON-RPC server
// does (no length prefix). It only finds value boundaries (brackets, strings, escapes); the
// value itself is parsed by nlohmann::json. Handles partial reads and several values per read.
//
// Owned by one connection (app Thread). Top-level values must be objects or arrays; anything
// else is reported as garbage and the stream cannot be resynchronized (the caller closes).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace strata::rpc {

class StreamFramer {
public:
    enum class Kind { need_more, value, garbage };

    void feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }
    // Next complete value copied into out (Kind::value). need_more: wait for more bytes.
    // garbage: a top-level byte that cannot start a request; out holds a short excerpt.
    Kind next(std::string& out);
    // Bytes held for an incomplete value (what a max-request-size limit checks).
    size_t pending_bytes() const noexcept { return buf_.size() - start_; }
    void clear() { buf_.clear(); start_ = scan_ = 0; depth_ = 0; in_string_ = escape_ = false; }

private:
    std::string buf_;
    size_t start_ = 0;  // first byte of the value being scanned
    size_t scan_ = 0;   // next byte to scan
    int depth_ = 0;
    bool in_string_ = false;
    bool escape_ = false;
};

}  // namespace strata::rpc
