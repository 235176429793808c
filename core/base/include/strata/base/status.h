// Status codes, Status (data path) and Error / Result<T> (control path).
//
// Status is a trivially copyable code plus an optional static context string: cheap enough to
// return from every submit(). Error adds a formatted message for control paths (config, RPC,
// metadata load), where a clear sentence matters more than a few bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <strata/base/assert.h>

namespace strata {

// Keep in sync with status.cpp's name/message table (a static_assert there checks the count).
enum class Errc : int32_t {
    ok = 0,
    invalid_argument,
    not_found,
    already_exists,
    no_memory,
    no_space,
    busy,  // resource temporarily exhausted (queue full, pool empty): retry later
    timeout,
    aborted,
    io_error,
    not_supported,
    out_of_range,
    permission_denied,
    shutdown,  // the object is stopping or stopped
    protocol_error,
    dma_fault,
    device_removed,
    corrupt,
    internal,
    count_  // not a code
};

std::string_view errc_name(Errc code) noexcept;     // "invalid_argument"
std::string_view errc_message(Errc code) noexcept;  // "invalid argument"
int errc_to_errno(Errc code) noexcept;               // positive errno, for SPDK-style RPC errors
Errc errc_from_errno(int err) noexcept;              // a failed system call's errno as the closest Errc

class [[nodiscard]] Status {
public:
    constexpr Status() noexcept = default;
    constexpr Status(Errc code, const char* context = nullptr) noexcept  // NOLINT: implicit by design
        : code_(code), context_(context) {}

    static constexpr Status success() noexcept { return {}; }

    constexpr bool ok() const noexcept { return code_ == Errc::ok; }
    constexpr explicit operator bool() const noexcept { return ok(); }
    constexpr Errc code() const noexcept { return code_; }
    // Static string naming where or why; never owned, may be null.
    constexpr const char* context() const noexcept { return context_; }

    std::string_view name() const noexcept { return errc_name(code_); }
    std::string to_string() const;  // "io_error: media error (context)"

    friend constexpr bool operator==(Status a, Status b) noexcept { return a.code_ == b.code_; }
    friend constexpr bool operator==(Status a, Errc b) noexcept { return a.code_ == b; }

private:
    Errc code_ = Errc::ok;
    const char* context_ = nullptr;
};
static_assert(std::is_trivially_copyable_v<Status>);

// A control-path error: code plus a human sentence ("bdev 'Malloc0' not found").
class Error {
public:
    Error(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
    // Implicit so a Status can be returned as Result's error. It allocates nothing: the data
    // path returns Result<T> built from a Status (a socket read that would block), and the
    // sentence is formatted from the code and the static context only when message() asks.
    Error(Status status) noexcept  // NOLINT
        : code_(status.code()), context_(status.context()), from_status_(true) {}

    Errc code() const noexcept { return code_; }
    // Formats a Status-built message on first use (not safe to call first from two OS threads
    // at once on one Error; an Error belongs to the code that received it).
    const std::string& message() const {
        if (from_status_) {
            message_ = Status(code_, context_).to_string();
            from_status_ = false;
        }
        return message_;
    }
    std::string to_string() const;

private:
    Errc code_;
    const char* context_ = nullptr;
    mutable bool from_status_ = false;
    mutable std::string message_;
};

// Result<T>: a value or an Error. Small subset of std::expected (C++23), kept here until we move.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
    Result(Status status) : v_(std::in_place_index<1>, Error(status)) {  // NOLINT
        STRATA_ASSERT_MSG(!status.ok(), "Result built from an ok Status without a value");
    }

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { check(); return std::get<0>(v_); }
    const T& value() const& { check(); return std::get<0>(v_); }
    T&& value() && { check(); return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const Error& error() const& {
        STRATA_ASSERT_MSG(!ok(), "error() on a Result holding a value");
        return std::get<1>(v_);
    }
    Errc code() const noexcept { return ok() ? Errc::ok : std::get<1>(v_).code(); }

private:
    void check() const {
        STRATA_ASSERT_MSG(ok(), "value() on a Result holding error: %s",
                          std::get<1>(v_).message().c_str());
    }
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), has_error_(true) {}  // NOLINT
    Result(Status status) : error_(status), has_error_(!status.ok()) {}  // NOLINT

    bool ok() const noexcept { return !has_error_; }
    explicit operator bool() const noexcept { return ok(); }
    const Error& error() const& {
        STRATA_ASSERT_MSG(has_error_, "error() on a successful Result");
        return error_;
    }
    Errc code() const noexcept { return has_error_ ? error_.code() : Errc::ok; }

private:
    Error error_{Errc::ok, {}};
    bool has_error_ = false;
};

}  // namespace strata

// Propagate a failed Status/Result from the enclosing function.
#define STRATA_TRY(expr)                              \
    do {                                              \
        auto strata_try_r_ = (expr);                  \
        if (!strata_try_r_.ok()) return strata_try_r_; \
    } while (0)
