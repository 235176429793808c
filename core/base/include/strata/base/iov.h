// A cursor over a list of iovecs: where the next byte of a scattered destination goes. Used by
// the protocol receivers that copy a PDU's data into a caller's buffers as bytes arrive.
// No allocation; the iovecs must outlive the cursor's use.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strata {

class IovCursor {
public:
    void reset(const iovec* iov, uint32_t iovcnt) noexcept {
        iov_ = iov;
        iovcnt_ = iovcnt;
        idx_ = 0;
        off_ = 0;
    }
    // Copies up to n bytes from p to the cursor and advances; returns the bytes copied (fewer
    // than n once the iovecs are full).
    size_t copy_in(const void* p, size_t n) noexcept {
        const auto* src = static_cast<const uint8_t*>(p);
        size_t done = 0;
        while (done < n && idx_ < iovcnt_) {
            const iovec& v = iov_[idx_];
            const size_t k = std::min(v.iov_len - off_, n - done);
            std::memcpy(static_cast<uint8_t*>(v.iov_base) + off_, src + done, k);
            done += k;
            advance_in_place(k);
        }
        return done;
    }
    // Advances over n bytes the caller placed itself (e.g. a readv into remaining()); calls
    // f(ptr, len) on each piece passed. Returns the bytes advanced.
    template <class F>
    size_t advance(size_t n, F&& f) noexcept {
        size_t done = 0;
        while (done < n && idx_ < iovcnt_) {
            const iovec& v = iov_[idx_];
            const size_t k = std::min(v.iov_len - off_, n - done);
            f(static_cast<uint8_t*>(v.iov_base) + off_, k);
            done += k;
            advance_in_place(k);
        }
        return done;
    }
    // The unfilled part, at most `limit` bytes in at most `max` iovecs; returns the count.
    uint32_t remaining(iovec* out, uint32_t max, size_t limit) const noexcept {
        uint32_t k = 0;
        size_t off = off_;
        for (uint32_t i = idx_; i < iovcnt_ && k < max && limit > 0; ++i) {
            const size_t len = std::min(iov_[i].iov_len - off, limit);
            out[k++] = {static_cast<uint8_t*>(iov_[i].iov_base) + off, len};
            limit -= len;
            off = 0;
        }
        return k;
    }

private:
    void advance_in_place(size_t k) noexcept {
        off_ += k;
        if (off_ == iov_[idx_].iov_len) {
            ++idx_;
            off_ = 0;
        }
    }
    const iovec* iov_ = nullptr;
    uint32_t iovcnt_ = 0;
    uint32_t idx_ = 0;
    size_t off_ = 0;
};

}  // namespace strata
