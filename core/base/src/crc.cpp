// CRC-32C on ISA-L's crc32_iscsi (a raw update: no initial or final inversion).
#include <strata/base/crc.h>

#include <climits>

#include <isa-l/crc.h>

namespace strata {

namespace {
uint32_t raw_update(uint32_t crc, const void* data, size_t len) noexcept {
    auto* p = static_cast<unsigned char*>(const_cast<void*>(data));  // ISA-L takes non-const
    while (len > 0) {
        // crc32_iscsi takes an int length.
        const size_t chunk = len > (size_t{1} << 30) ? (size_t{1} << 30) : len;
        crc = crc32_iscsi(p, static_cast<int>(chunk), crc);
        p += chunk;
        len -= chunk;
    }
    return crc;
}
}  // namespace

uint32_t crc32c(uint32_t seed, const void* data, size_t len) noexcept {
    if (len == 0) return seed;
    return ~raw_update(~seed, data, len);
}

uint32_t crc32c_iov(uint32_t seed, const struct iovec* iov, size_t iovcnt) noexcept {
    uint32_t crc = ~seed;
    for (size_t i = 0; i < iovcnt; ++i)
        if (iov[i].iov_len != 0) crc = raw_update(crc, iov[i].iov_base, iov[i].iov_len);
    return ~crc;
}

}  // namespace strata
