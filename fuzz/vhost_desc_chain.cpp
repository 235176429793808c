// Fuzz target: the device-side ring walkers (core/vhost virtqueue.h: SplitRing and PackedRing)
// over hostile guest memory. The input is the guest's RAM: 64 KiB (zero-padded) split into two
// adjacent regions at guest-physical 0x10000 and 0x18000; the descriptor table, avail and used
// rings sit inside it, so every index, flag, length, address and indirect table comes from the
// input. First bytes: queue size selector, the device's last_avail index (2 bytes; packed: the
// vring base, bit 15 the wrap counter), feature bits (1 event idx, 2 indirect, 4 packed ring: the
// packed descriptor ring at 0x1000, the driver event structure at 0x2000, the device's at
// 0x3000).
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
    const bool packed = data[3] & 4;
    GuestMemory mem;
    CHECK(mem.add(0x10000, kRam / 2, 0, ram.data()).ok());
    CHECK(mem.add(0x18000, kRam / 2, kRam / 2, ram.data() + kRam / 2).ok());
    iovec iov[32];
    Chain c{iov, 32};
    // Every walked chain: iovecs inside guest RAM, byte counts matching them.
    auto check_chain = [&] {
        uint64_t r = 0, w = 0;
        CHECK(c.readable + c.writable <= 32);
        for (int i = 0; i < c.readable + c.writable; ++i) {
            auto* b = static_cast<uint8_t*>(iov[i].iov_base);
            CHECK(b >= ram.data() && b + iov[i].iov_len <= ram.data() + kRam);
            (i < c.readable ? r : w) += iov[i].iov_len;
        }
        CHECK(r == c.readable_bytes && w == c.writable_bytes);
        return w;
    };
    if (packed) {
        auto* desc = reinterpret_cast<vs::PackedDesc*>(ram.data() + 0x1000);
        auto* drv_ev = reinterpret_cast<vs::PackedEvent*>(ram.data() + 0x2000);
        auto* dev_ev = reinterpret_cast<vs::PackedEvent*>(ram.data() + 0x3000);
        std::vector<uint16_t> slots(num, 0);
        std::vector<uint8_t> busy(num, 0);
        PackedRing<GuestMemory> ring;
        ring.attach(&mem, desc, drv_ev, dev_ev, slots.data(), num, last_avail, event_idx, indirect);
        // Up to two laps; ids in flight are completed in the order taken, every other one at
        // once, as a device would.
        std::vector<uint16_t> held;
        for (int k = 0; k < 2 * num; ++k) {
            bool ready = false;
            uint16_t id = 0;
            const WalkError pe = ring.peek(ready, id);
            CHECK(walk_error_name(pe) != nullptr);
            if (pe != WalkError::none || !ready) break;
            CHECK(id < num);
            if (busy[id]) break;  // the Session marks the queue broken here
            const WalkError e = ring.walk(id, c);
            CHECK(walk_error_name(e) != nullptr);
            if (e != WalkError::none) break;
            CHECK(ring.last_avail() < num);
            const uint64_t w = check_chain();
            busy[id] = 1;
            held.push_back(id);
            if (k % 2 == 0) {
                for (uint16_t h : held) {
                    ring.push_used(h, uint32_t(w));
                    busy[h] = 0;
                }
                held.clear();
                CHECK(ring.used_idx() < num);
                (void)ring.need_interrupt();
            }
        }
        return 0;
    }
    // Rings: desc at 0x1000 (up to 4 KiB), avail at 0x2000, used at 0x3000.
    auto* desc = reinterpret_cast<vs::VringDesc*>(ram.data() + 0x1000);
    auto* avail = reinterpret_cast<vs::VringAvail*>(ram.data() + 0x2000);
    auto* used = reinterpret_cast<vs::VringUsed*>(ram.data() + 0x3000);
    SplitRing<GuestMemory> ring;
    ring.attach(&mem, desc, avail, used, num, last_avail, event_idx, indirect);
    uint16_t n = 0;
    if (ring.available(n) != WalkError::none) return 0;
    for (uint16_t k = 0; k < n; ++k) {
        uint16_t head;
        if (ring.pop(head) != WalkError::none) return 0;
        const WalkError e = ring.walk(head, c);
        CHECK(walk_error_name(e) != nullptr);
        if (e != WalkError::none) return 0;
        const uint64_t w = check_chain();
        ring.push_used(head, uint32_t(w));
        (void)ring.need_interrupt();
    }
    return 0;
}
