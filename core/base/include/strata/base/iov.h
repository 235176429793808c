// A cursor over a list of iovecs: where the next byte of a scattered destination goes; and
// DataDestination, the data-segment half of the protocol receivers (iSCSI's and NVMe/TCP's
// PduReceiver) that copy a PDU's data into a caller's buffers as bytes arrive, computing its
// crc32c data digest on the way. No allocation; the iovecs must outlive the cursor's use.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <strata/base/crc.h>

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

// Where the data segment of the PDU being received goes: the caller's iovecs, or nowhere
// (discarded), with the data digest (crc32c, base's seed convention) computed over every byte
// that passes when asked to. The receiver calls start() once the header is in; the caller then
// chooses set() or discard() (chosen() says whether it has); the receiver passes the bytes
// through copy_in() (from its receive buffer), placed() (bytes the caller read straight into
// remaining()) or digest_only() (bytes digested, never stored: iSCSI's padding).
class DataDestination {
public:
    // A new PDU's data: nothing chosen yet, digest restarted (computed only if `digest`).
    void start(bool digest) noexcept {
        clear();
        digest_ = digest;
        crc_ = 0;
    }
    // Back to "nothing chosen" (between PDUs).
    void clear() noexcept {
        cursor_.reset(nullptr, 0);
        chosen_ = false;
        discard_ = false;
    }
    void set(const iovec* iov, uint32_t iovcnt) noexcept {
        cursor_.reset(iov, iovcnt);
        chosen_ = true;
        discard_ = false;
    }
    void discard() noexcept {
        cursor_.reset(nullptr, 0);
        chosen_ = true;
        discard_ = true;
    }
    bool chosen() const noexcept { return chosen_; }
    bool placing() const noexcept { return chosen_ && !discard_; }  // set(), not discard()

    // n bytes of data from the receive buffer: digested, and copied unless discarding. A
    // destination shorter than the data is the caller's bug (never the peer's): the rest is
    // dropped.
    void copy_in(const uint8_t* p, size_t n) noexcept {
        digest_only(p, n);
        if (!discard_) cursor_.copy_in(p, n);
    }
    void digest_only(const uint8_t* p, size_t n) noexcept {
        if (digest_) crc_ = crc32c(crc_, p, n);
    }
    // n bytes the caller read into remaining() itself: advanced over and digested in place.
    void placed(size_t n) noexcept {
        cursor_.advance(n, [this](const uint8_t* p, size_t k) { digest_only(p, k); });
    }
    // The unfilled part of the destination (IovCursor::remaining).
    uint32_t remaining(iovec* out, uint32_t max, size_t limit) const noexcept {
        return cursor_.remaining(out, max, limit);
    }
    uint32_t crc() const noexcept { return crc_; }  // the digest of the bytes so far

private:
    IovCursor cursor_;
    bool chosen_ = false;
    bool discard_ = false;
    bool digest_ = false;
    uint32_t crc_ = 0;
};

}  // namespace strata
