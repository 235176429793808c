// CRC-32C (Castagnoli, the iSCSI / NVMe-oF digest polynomial 0x1EDC6F41) on ISA-L.
//
// crc32c(seed, data, len) returns the finished CRC (initial inversion and final inversion
// applied), with `seed` the CRC of whatever came before, so calls chain:
//   crc32c(crc32c(0, a, la), b, lb) == crc32c(0, a||b, la + lb)
// and crc32c(0, "123456789", 9) == 0xE3069283. This matches SPDK's accel crc32c seed semantics.
// The ISA-L routine picks the fastest implementation the CPU has (SSE4.2 / PCLMUL / AVX-512).
// Thread-safe, no allocation, no syscall.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace strata {

uint32_t crc32c(uint32_t seed, const void* data, size_t len) noexcept;
// Over the concatenation of the iovecs (zero-length entries and iov_base == nullptr with
// iov_len == 0 are fine).
uint32_t crc32c_iov(uint32_t seed, const struct iovec* iov, size_t iovcnt) noexcept;
inline uint32_t crc32c(uint32_t seed, std::span<const struct iovec> iov) noexcept {
    return crc32c_iov(seed, iov.data(), iov.size());
}

}  // namespace strata
