// The software module: ISA-L for crc32c and xor, memcpy/memset/memcmp otherwise. Ops are
// queued by submit and executed from the channel's poller, so callers see the same
// asynchronous behaviour as with a hardware module.
#include <cstring>

#include <isa-l/raid.h>

#include <strata/base/crc.h>

#include "internal.h"

namespace strata::accel {

namespace {

// Walks two iovec lists of equal total length in lockstep: fn(dst, src, n) per common chunk;
// fn returns false to stop. Returns the offset where it stopped (total when it did not).
template <class F>
uint64_t walk2(const struct iovec* d, uint32_t dcnt, const struct iovec* s, uint32_t scnt,
               F&& fn) noexcept {
    uint32_t di = 0, si = 0;
    size_t doff = 0, soff = 0;
    uint64_t done = 0;
    while (di < dcnt && si < scnt) {
        const size_t dleft = d[di].iov_len - doff;
        const size_t sleft = s[si].iov_len - soff;
        if (dleft == 0) {
            ++di;
            doff = 0;
            continue;
        }
        if (sleft == 0) {
            ++si;
            soff = 0;
            continue;
        }
        const size_t n = dleft < sleft ? dleft : sleft;
        auto* dp = static_cast<uint8_t*>(d[di].iov_base) + doff;
        auto* sp = static_cast<const uint8_t*>(s[si].iov_base) + soff;
        if (!fn(dp, sp, n, done)) return done;
        done += n;
        doff += n;
        soff += n;
    }
    return done;
}

void xor_bytes(uint8_t* dst, const void* const* srcs, uint32_t n, size_t from, size_t to) noexcept {
    size_t i = from;
    for (; i + 8 <= to; i += 8) {
        uint64_t acc, v;
        std::memcpy(&acc, static_cast<const uint8_t*>(srcs[0]) + i, 8);
        for (uint32_t k = 1; k < n; ++k) {
            std::memcpy(&v, static_cast<const uint8_t*>(srcs[k]) + i, 8);
            acc ^= v;
        }
        std::memcpy(dst + i, &acc, 8);
    }
    for (; i < to; ++i) {
        uint8_t acc = static_cast<const uint8_t*>(srcs[0])[i];
        for (uint32_t k = 1; k < n; ++k) acc ^= static_cast<const uint8_t*>(srcs[k])[i];
        dst[i] = acc;
    }
}

void do_xor(void* dst, const void* const* srcs, uint32_t n, uint64_t len) noexcept {
    if (len == 0) return;
    if (n == 1) {
        if (dst != srcs[0]) std::memmove(dst, srcs[0], len);
        return;
    }
    // ISA-L's xor_gen wants 32-byte aligned pointers; use it for the largest 64-byte multiple
    // when every pointer is aligned (the usual case for DMA buffers), bytes otherwise.
    bool aligned = (reinterpret_cast<uintptr_t>(dst) & 31) == 0;
    for (uint32_t k = 0; k < n && aligned; ++k)
        aligned = (reinterpret_cast<uintptr_t>(srcs[k]) & 31) == 0;
    size_t head = 0;
    if (aligned) {
        void* vec[kMaxXorSources + 1];
        for (uint32_t k = 0; k < n; ++k) vec[k] = const_cast<void*>(srcs[k]);
        vec[n] = dst;
        uint64_t left = len & ~uint64_t{63};
        uint64_t off = 0;
        while (left > 0) {
            const uint64_t chunk = left > (uint64_t{1} << 30) ? (uint64_t{1} << 30) : left;
            void* part[kMaxXorSources + 1];
            for (uint32_t k = 0; k <= n; ++k) part[k] = static_cast<uint8_t*>(vec[k]) + off;
            if (xor_gen(static_cast<int>(n + 1), static_cast<int>(chunk), part) != 0) break;
            off += chunk;
            left -= chunk;
        }
        head = off;
    }
    xor_bytes(static_cast<uint8_t*>(dst), srcs, n, head, len);
}

}  // namespace

Status execute_software(Task& t) noexcept {
    const Op& op = t.op;
    switch (op.opcode) {
        case Opcode::copy:
            walk2(t.dst, t.dst_cnt, t.src, t.src_cnt,
                  [](uint8_t* d, const uint8_t* s, size_t n, uint64_t) {
                      std::memcpy(d, s, n);
                      return true;
                  });
            return {};
        case Opcode::fill:
            for (uint32_t i = 0; i < t.dst_cnt; ++i)
                if (t.dst[i].iov_len != 0)
                    std::memset(t.dst[i].iov_base, op.fill_byte, t.dst[i].iov_len);
            return {};
        case Opcode::compare: {
            uint64_t diff = UINT64_MAX;
            walk2(t.dst, t.dst_cnt, t.src, t.src_cnt,
                  [&diff](uint8_t* d, const uint8_t* s, size_t n, uint64_t at) {
                      if (std::memcmp(d, s, n) == 0) return true;
                      size_t i = 0;
                      while (d[i] == s[i]) ++i;
                      diff = at + i;
                      return false;
                  });
            if (diff == UINT64_MAX) return {};
            if (op.miscompare_offset != nullptr) *op.miscompare_offset = diff;
            return Status(Errc::corrupt, "miscompare");
        }
        case Opcode::crc32c:
            *op.crc_dst = crc32c_iov(op.seed, t.src, t.src_cnt);
            return {};
        case Opcode::copy_crc32c:
            walk2(t.dst, t.dst_cnt, t.src, t.src_cnt,
                  [](uint8_t* d, const uint8_t* s, size_t n, uint64_t) {
                      std::memcpy(d, s, n);
                      return true;
                  });
            *op.crc_dst = crc32c_iov(op.seed, t.src, t.src_cnt);
            return {};
        case Opcode::xor_:
            do_xor(op.dst, op.xor_srcs, op.xor_nsrcs, op.len);
            return {};
        case Opcode::count_:
            break;
    }
    return Status(Errc::invalid_argument, "unknown opcode");
}

namespace {

class SoftwareChannel final : public ModuleChannel {
public:
    Status submit(Task& task) noexcept override {
        queue_.push_back(task);
        return {};
    }
    int poll() noexcept override {
        // Only what was queued before this poll: callbacks may submit more.
        size_t n = queue_.size();
        int done = 0;
        while (n-- > 0) {
            Task* t = queue_.pop_front();
            Status s = t->fail_only ? t->status : execute_software(*t);
            complete_task(*t, s);
            ++done;
        }
        return done;
    }
    uint32_t outstanding() const noexcept override { return static_cast<uint32_t>(queue_.size()); }

private:
    IntrusiveList<Task> queue_;
};

class SoftwareModule final : public Module {
public:
    const char* name() const noexcept override { return "software"; }
    bool supports(Opcode op) const noexcept override { return op != Opcode::count_; }
    int priority() const noexcept override { return 0; }
    Result<void> start() override { return {}; }
    void stop() override {}
    bool available() const noexcept override { return true; }
    std::unique_ptr<ModuleChannel> create_channel(runtime::Thread&, ChannelImpl&) override {
        return std::make_unique<SoftwareChannel>();
    }
};

}  // namespace

std::unique_ptr<Module> make_software_module() {
    return std::make_unique<SoftwareModule>();
}

}  // namespace strata::accel
