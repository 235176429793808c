// Fuzz target: the vhost-user back end's message handling (core/vhost Session::handle, with
// check_message's size/fd checks first) and the polled data path behind it, against a device
// that completes every request at once. The input is a sequence of messages; each message may
// carry memfd-backed fds (1 MiB of zeroed "guest memory") so SET_MEM_TABLE, SET_INFLIGHT_FD and
// the vring fds can succeed and queues can start. Every request Session takes is reachable:
// among them the CONFIGURE_MEM_SLOTS ones (GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG; seed
// mem_slots) and the inflight region on split and packed queues (seed packed_inflight).
//
// Input: records of
//   fd count (1 byte, % 4)
//   header (12 bytes: request, flags, size; the size is used as given)
//   payload: min(size, what is left) bytes, zero-padded to the size the header claims
//            (at most 4096)
// After each message the Session is polled; a failed message ends the "connection" (a fresh
// Session continues with the next record, as a reconnect would).
// Invariants: no crash, no fd leak (every fd passed is owned and closed by the Session), the
// outstanding count returns to 0.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <strata/base/log.h>
#include <strata/vhost/session.h>

#include "fuzz_check.h"
#include "fuzz_target.h"

using namespace strata;
using namespace strata::vhost;

namespace {

struct InstantDevice : Device {
    struct Slot {
        Chain chain;
        iovec iov[8];
        bool busy = false;
    };
    std::vector<Slot> slots[kMaxQueues];
    // Packed rings offered, so a record can negotiate them (packed inflight tracking).
    uint64_t features() const noexcept override {
        return virtio::spec::feature(virtio::spec::kFRingPacked);
    }
    uint16_t max_queues() const noexcept override { return 2; }
    bool read_config(uint32_t off, uint8_t* out, uint32_t size) noexcept override {
        if (off > 16 || size > 16 - off) return false;
        std::memset(out, 0x5a, size);
        return true;
    }
    Result<void> start_queue(Session&, Queue& q) override {
        slots[q.index] = std::vector<Slot>(q.num);
        for (auto& s : slots[q.index]) s.chain = {s.iov, 8};
        return {};
    }
    void stop_queue(Session&, Queue& q) noexcept override { slots[q.index].clear(); }
    Chain* chain_for(Queue& q, uint16_t head) noexcept override {
        auto& s = slots[q.index][head];
        if (s.busy) return nullptr;
        s.busy = true;
        return &s.chain;
    }
    void submit(Session& s, Queue& q, uint16_t head) noexcept override {
        slots[q.index][head].busy = false;
        s.complete(q, head, 0);
    }
};

int memfd() {
    const int fd = memfd_create("fuzz-guest", MFD_CLOEXEC);
    if (fd >= 0) (void)!ftruncate(fd, 1 << 20);
    return fd;
}

}  // namespace

namespace {

// Nothing is shared between inputs; the State only quietens logging in a fuzzer process (in
// Python the log levels are the user's: fuzz/fuzz_target.h).
struct State {
    State() {
        if constexpr (!strata::fuzz::kInPython) {
            strata::log_set_global_level(strata::LogLevel::error);
            for (auto* c : strata::log_components()) c->set_level(strata::LogLevel::error);
        }
    }
};

int run_input(State&, const uint8_t* data, size_t size) {
    InstantDevice dev;
    auto s = std::make_unique<Session>(dev, "fuzz");
    size_t pos = 0;
    std::vector<uint8_t> payload(virtio::spec::vhost_user::kMaxPayload);
    while (pos + 13 <= size) {
        const size_t nfds = data[pos++] % 4;
        vu::Header h;
        std::memcpy(&h, data + pos, sizeof h);
        pos += sizeof h;
        std::fill(payload.begin(), payload.end(), 0);
        const size_t take = std::min<size_t>({h.size, size - pos, payload.size()});
        std::memcpy(payload.data(), data + pos, take);
        pos += take;
        int fds[4];
        for (size_t i = 0; i < nfds; ++i) fds[i] = memfd();
        Reply reply;
        auto r = s->handle(h, payload.data(), fds, nfds, reply);
        if (r.ok()) {
            s->poll(0);
            CHECK(s->outstanding() == 0);
            if (reply.send) CHECK(reply.header.size <= sizeof reply.payload);
        } else {
            s = std::make_unique<Session>(dev, "fuzz");  // the connection ends
        }
    }
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(State, run_input)
