// Fuzz target: the device-side split-ring walker (core/vhost virtqueue.h) over hostile guest
// memory. The input is the guest's RAM: 64 KiB (zero-padded) split into two adjacent regions at
// guest-physical 0x10000 and 0x18000; the descriptor table, avail and used rings sit inside it,
// so every index, flag, length, address and indirect table comes from the input.
// First bytes: queue size selector, the device's last_avail index (2 bytes), feature bits
// (event idx, indirect).
// Invariants: no crash; the walker terminates; every iovec it returns lies inside guest RAM;
// byte counts match the iovecs; a walk either succeeds or names one error.
#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include <strata/vhost/guest_memory.h>
#include <strata/vhost/virtqueue.h>

#include "fuzz_check.h"

using namespace strata;
using namespace strata::vhost;
namespace vs = strata::virtio::spec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t kRam = 64 * 1024;
    static constexpr uint16_t kSizes[] = {1, 2, 4, 8, 16, 64, 128, 256};
    if (size < 4) return 0;
    std::vector<uint8_t> ram(kRam, 0);
    std::memcpy(ram.data(), data, size < kRam ? size : kRam);
    const uint16_t num = kSizes[data[0] % 8];
    const uint16_t last_avail = uint16_t(data[1] | data[2] << 8);
    const bool event_idx = data[3] & 1;
    const bool indirect = data[3] & 2;
    GuestMemory mem;
    CHECK(mem.add(0x10000, kRam / 2, 0, ram.data()).ok());
    CHECK(mem.add(0x18000, kRam / 2, kRam / 2, ram.data() + kRam / 2).ok());
    // Rings: desc at 0x1000 (up to 4 KiB), avail at 0x2000, used at 0x3000.
    auto* desc = reinterpret_cast<vs::VringDesc*>(ram.data() + 0x1000);
    auto* avail = reinterpret_cast<vs::VringAvail*>(ram.data() + 0x2000);
    auto* used = reinterpret_cast<vs::VringUsed*>(ram.data() + 0x3000);
    SplitRing<GuestMemory> ring;
    ring.attach(&mem, desc, avail, used, num, last_avail, event_idx, indirect);
    iovec iov[32];
    Chain c{iov, 32};
    uint16_t n = 0;
    if (ring.available(n) != WalkError::none) return 0;
    for (uint16_t k = 0; k < n; ++k) {
        uint16_t head;
        if (ring.pop(head) != WalkError::none) return 0;
        const WalkError e = ring.walk(head, c);
        CHECK(walk_error_name(e) != nullptr);
        if (e != WalkError::none) return 0;
        uint64_t r = 0, w = 0;
        CHECK(c.readable + c.writable <= 32);
        for (int i = 0; i < c.readable + c.writable; ++i) {
            auto* b = static_cast<uint8_t*>(iov[i].iov_base);
            CHECK(b >= ram.data() && b + iov[i].iov_len <= ram.data() + kRam);
            (i < c.readable ? r : w) += iov[i].iov_len;
        }
        CHECK(r == c.readable_bytes && w == c.writable_bytes);
        ring.push_used(head, uint32_t(w));
        (void)ring.need_interrupt();
    }
    return 0;
}
