#include <strata/base/status.h>

#include <array>
#include <cerrno>

namespace strata {
namespace {

struct ErrcInfo {
    std::string_view name;
    std::string_view message;
    int errno_value;
};

constexpr std::array<ErrcInfo, static_cast<size_t>(Errc::count_)> kErrcInfo{{
    {"ok", "success", 0},
    {"invalid_argument", "invalid argument", EINVAL},
    {"not_found", "not found", ENOENT},
    {"already_exists", "already exists", EEXIST},
    {"no_memory", "out of memory", ENOMEM},
    {"no_space", "no space left", ENOSPC},
    {"busy", "resource temporarily unavailable", EAGAIN},
    {"timeout", "timed out", ETIMEDOUT},
    {"aborted", "aborted", ECANCELED},
    {"io_error", "I/O error", EIO},
    {"not_supported", "operation not supported", ENOTSUP},
    {"out_of_range", "out of range", ERANGE},
    {"permission_denied", "permission denied", EPERM},
    {"shutdown", "shutting down", ESHUTDOWN},
    {"protocol_error", "protocol error", EPROTO},
    {"dma_fault", "DMA fault", EFAULT},
    {"device_removed", "device removed", ENODEV},
    {"corrupt", "corrupt data", EUCLEAN},
    {"internal", "internal error", EFAULT},
}};

const ErrcInfo& info(Errc code) noexcept {
    auto idx = static_cast<size_t>(code);
    static constexpr ErrcInfo unknown{"unknown", "unknown error", EIO};
    return idx < kErrcInfo.size() ? kErrcInfo[idx] : unknown;
}

}  // namespace

std::string_view errc_name(Errc code) noexcept { return info(code).name; }
std::string_view errc_message(Errc code) noexcept { return info(code).message; }
int errc_to_errno(Errc code) noexcept { return info(code).errno_value; }

Errc errc_from_errno(int err) noexcept {
    switch (err) {
        case 0: return Errc::ok;
        case ENOENT:
        case ENODEV:
        case ENXIO: return Errc::not_found;
        case EACCES:
        case EPERM:
        case EROFS:
        case EBADF: return Errc::permission_denied;
        case EINVAL:
        case EISDIR:
        case ENOTDIR:
        case ENAMETOOLONG:
        case ELOOP:
        case EFAULT: return Errc::invalid_argument;
        case ENOMEM: return Errc::no_memory;
        case ENOSPC:
        case EDQUOT:
        case EFBIG: return Errc::no_space;
        case EAGAIN:
        case EBUSY:
        case EMFILE:
        case ENFILE: return Errc::busy;
        case ECANCELED:
        case EINTR: return Errc::aborted;
        case ETIMEDOUT: return Errc::timeout;
        case EOPNOTSUPP: return Errc::not_supported;
        case EOVERFLOW: return Errc::out_of_range;
        default: return Errc::io_error;
    }
}

std::string Status::to_string() const {
    std::string s(errc_name(code_));
    s += ": ";
    s += errc_message(code_);
    if (context_ != nullptr && context_[0] != '\0') {
        s += " (";
        s += context_;
        s += ')';
    }
    return s;
}

std::string Error::to_string() const {
    std::string s(errc_name(code_));
    s += ": ";
    const std::string& m = message();
    s += m.empty() ? std::string(errc_message(code_)) : m;
    return s;
}

}  // namespace strata
