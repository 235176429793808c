// Copying to and from a request's guest iovecs (vhost-blk, vhost-scsi): control path sized
// headers only; data stays in guest memory.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strata::vhost::internal {

// Copies n bytes starting at byte `off` of the iovecs into out; false when they are shorter.
inline bool gather(const iovec* iov, int cnt, size_t off, void* out, size_t n) {
    auto* dst = static_cast<uint8_t*>(out);
    for (int i = 0; i < cnt && n > 0; ++i) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        const size_t k = std::min(iov[i].iov_len - off, n);
        std::memcpy(dst, static_cast<uint8_t*>(iov[i].iov_base) + off, k);
        dst += k;
        n -= k;
        off = 0;
    }
    return n == 0;
}

// Copies n bytes of in to the iovecs from their start; false when they are shorter.
inline bool scatter(const iovec* iov, int cnt, const void* in, size_t n) {
    auto* src = static_cast<const uint8_t*>(in);
    for (int i = 0; i < cnt && n > 0; ++i) {
        const size_t k = std::min(iov[i].iov_len, n);
        std::memcpy(iov[i].iov_base, src, k);
        src += k;
        n -= k;
    }
    return n == 0;
}

// out = the bytes of iov in [skip, total - trim_tail); returns the count, -1 when too short.
inline int slice(const iovec* iov, int cnt, size_t skip, size_t trim_tail, iovec* out) {
    size_t total = 0;
    for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
    if (skip + trim_tail > total) return -1;
    size_t keep = total - skip - trim_tail;
    int n = 0;
    for (int i = 0; i < cnt && keep > 0; ++i) {
        size_t len = iov[i].iov_len;
        auto* base = static_cast<uint8_t*>(iov[i].iov_base);
        if (skip >= len) {
            skip -= len;
            continue;
        }
        base += skip;
        len -= skip;
        skip = 0;
        const size_t k = std::min(len, keep);
        out[n++] = {base, k};
        keep -= k;
    }
    return n;
}

}  // namespace strata::vhost::internal
