// bdev_error: SPDK's error-injection virtual bdev, the fault API of scenarios. "EE_<base>" passes
// I/O to its base until bdev_error_inject_error arms an error for an I/O type: the next `num`
// I/O of that type fail, are held until a reset (pending), get one byte XORed on their way to or
// from the base (corrupt_data), or are refused for lack of resources and retried (nomem).
// Injection is deterministic: it depends only on the order of I/O, which the simulator fixes.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

extern const Module kErrorModule;

enum class ErrorType : uint32_t { none = 0, failure, pending, corrupt_data, nomem };
const char* error_type_name(ErrorType type) noexcept;  // SPDK's names: "failure", ...

struct ErrorInjection {
    // io_type: one type, or every data/range type for "all" (read, write, write_zeroes, unmap,
    // flush, compare, compare_and_write; reset and abort are never injected by "all").
    bool all = false;
    bool clear = false;  // "clear": disarm every type
    IoType io_type = IoType::read;
    ErrorType error_type = ErrorType::failure;
    uint32_t num = 1;             // how many I/O get the error
    uint64_t queue_depth = 0;     // inject only while this many I/O are at the base (0: always)
    uint64_t corrupt_offset = 0;  // corrupt_data: byte offset within the I/O's data
    uint8_t corrupt_value = 0;    // corrupt_data: XORed into that byte (non-zero)
};

// Control path, on a Thread. Creates "EE_<base_name>" now, or when the base appears.
Result<void> error_create(const std::string& base_name, const std::string& uuid);
void error_delete(const std::string& name, std::function<void(Result<void>)> done);
Result<void> error_inject(const std::string& name, const ErrorInjection& injection);
// Parses SPDK's io_type / error_type strings into `out`; invalid_argument names the value.
Result<void> error_parse_types(const std::string& io_type, const std::string& error_type,
                               ErrorInjection& out);

struct ErrorCounts {
    std::array<uint64_t, kIoTypeCount> injected{};   // errors injected so far, per I/O type
    std::array<uint32_t, kIoTypeCount> remaining{};  // still armed
};
Result<ErrorCounts> error_counts(const std::string& name);

}  // namespace strata::bdev
