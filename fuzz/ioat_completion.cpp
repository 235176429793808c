// Fuzz target: a hostile I/OAT channel. The driver (strata::ioat::Channel, unmodified) is attached
// to an emulated function whose registers and completion word the input controls: completion
// words with any state and any descriptor address, CHANSTS and CHANERR values, a reset that never
// finishes, surprise removal, time passing. Invariants: no crash or sanitizer report, no hang,
// every operation submitted completes exactly once (by the device's progress or by the driver
// failing it), and the channel always detaches.
//
// Input: byte 0 = ring size (16 << (b & 3)); byte 1 = XFERCAP (4 KiB << (b & 3)); then 9-byte
// records: an action byte and a 64-bit little-endian value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <strata/base/log.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/hwemu/pci/pci_bus.h>
#include <strata/ioat/ioat.h>
#include <strata/ioat/spec/spec.h>
#include <strata/runtime/scheduler.h>

#include "fuzz_target.h"

namespace {

namespace spec = strata::ioat::spec;
constexpr strata::env::PciAddress kAddr{0, 0, 4, 0};

// Registers answer what the input says; the completion word is written on demand.
struct HostileChannel final : strata::hwemu::PciModel {
    uint8_t xfercap = 12;
    uint64_t chansts = 0;
    uint32_t chanerr = 0;
    uint32_t reset_reads = 0;  // CHANCMD reads that still show the reset bit
    uint32_t reset_hold = 0;   // reset_reads to use for the next reset
    uint64_t chancmp = 0;
    uint64_t chainaddr = 0;
    uint16_t dmacount = 0;

    uint64_t bar_read(uint32_t, uint64_t off, uint32_t width) override {
        const uint64_t base = spec::channel_base(0);
        uint64_t v = 0;
        if (off == spec::reg::chancnt)
            v = 1u | uint32_t{xfercap} << 8;
        else if (off == spec::reg::cbver)
            v = spec::ver_3_3;
        else if (off == spec::reg::dmacapability)
            v = spec::dmacap::fill;
        else if (off == base + spec::chan_reg::chancmd) {
            if (reset_reads > 0) {
                --reset_reads;
                v = spec::chancmd::reset;
            }
            v |= uint32_t{dmacount} << 16;
        } else if (off == base + spec::chan_reg::chansts)
            v = chansts;
        else if (off == base + spec::chan_reg::chanerr)
            v = chanerr;
        return width == 4 ? (v & 0xFFFFFFFFu) : v;
    }
    void bar_write(uint32_t, uint64_t off, uint32_t, uint64_t v) override {
        const uint64_t base = spec::channel_base(0);
        if (off == base + spec::chan_reg::chancmd) {
            if (v & spec::chancmd::reset) reset_reads = reset_hold;
            dmacount = static_cast<uint16_t>(v >> 16);
        } else if (off == base + spec::chan_reg::chancmp) {
            chancmp = v;
        } else if (off == base + spec::chan_reg::chainaddr) {
            chainaddr = v;
        } else if (off == base + spec::chan_reg::chanerr) {
            chanerr &= ~static_cast<uint32_t>(v);
        }
    }
};

struct Counter {
    int calls = 0;
    static void done(void* ctx, strata::Status) {
        auto* c = static_cast<Counter*>(ctx);
        if (++c->calls > 1) std::abort();  // completed twice
    }
};

uint64_t le64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// The simulator and the driver's Thread (one per fuzzer process, one per strata.fuzz.Target:
// fuzz/fuzz_target.h).
struct State {
    State() {
        strata::fuzz::quiet_logs();
        if (!strata::fuzz::env_ready()) std::abort();
        sim = std::make_unique<strata::runtime::SimScheduler>(1, 1);
        thread = sim->create_thread("fuzz");
    }
    std::unique_ptr<strata::runtime::SimScheduler> sim;
    strata::runtime::Thread* thread = nullptr;
};

int run_input(State& state, const uint8_t* data, size_t size) {
    using namespace strata;
    runtime::SimScheduler* sim = state.sim.get();
    runtime::Thread* thread = state.thread;
    if (size < 2) return 0;

    auto bus = std::make_unique<hwemu::PciBus>();
    HostileChannel dev;
    dev.xfercap = static_cast<uint8_t>(12 + (data[1] & 3));
    auto config = hwemu::PciFunctionConfig{};
    config.vendor_id = spec::pci_vendor_intel;
    config.device_id = spec::pci_device::skx;
    config.bars[0] = {16 * 1024, true, false};
    auto added = bus->add_function(kAddr, config, &dev);
    if (!added) std::abort();
    hwemu::EmulatedFunction* fn = *added;

    // Runs fn on the driver's Thread, to completion.
    auto on = [&](auto&& body) {
        bool ran = false;
        if (!thread
                 ->post([&] {
                     body();
                     ran = true;
                 })
                 .ok())
            std::abort();
        if (!sim->run_until([&] { return ran; }, sim->now_ns() + 1'000'000'000)) std::abort();
    };

    ioat::ChannelOptions opts;
    opts.ring_size = 16u << (data[0] & 3);
    opts.stall_timeout_us = 100;
    std::unique_ptr<ioat::Channel> ch;
    on([&] {
        auto c = ioat::Channel::attach(kAddr, *thread, opts);
        if (!c) std::abort();  // a well-formed function always attaches
        ch = std::move(*c);
    });

    auto* buf = static_cast<uint8_t*>(env::dma_alloc(1 << 20, 4096, true).value());
    const uint64_t buf_iova = env::iova_of(buf);
    std::vector<std::unique_ptr<Counter>> ops;
    uint64_t ring_iova = 0;  // learned from CHAINADDR: the chain starts inside the ring
    bool removed = false;

    for (size_t pos = 2; pos + 9 <= size; pos += 9) {
        const uint8_t action = data[pos];
        const uint64_t v = le64(data + pos + 1);
        if (dev.chainaddr != 0 && ring_iova == 0) ring_iova = dev.chainaddr;
        switch (action & 7) {
            case 0:
            case 1:
                on([&] {
                    auto c = std::make_unique<Counter>();
                    const uint64_t len = (v & 0x3FFFF) + 1;
                    const uint64_t off = (v >> 20) & 0x3FFFF;
                    const Status s =
                        (action & 7) == 0
                            ? ch->submit_copy(buf_iova + off, buf_iova + 0x80000, len,
                                              &Counter::done, c.get())
                            : ch->submit_fill(buf_iova + off, v, len, &Counter::done, c.get());
                    if (s.ok()) ops.push_back(std::move(c));
                    if (action & 8) ch->flush();
                });
                break;
            case 2:
                on([&] { ch->flush(); });
                break;
            case 3:  // a raw completion word
                if (dev.chancmp != 0) (void)fn->dma().write(dev.chancmp, &v, sizeof(v));
                on([&] { (void)ch->process_completions(); });
                break;
            case 4: {  // a plausible one: some state, a descriptor address inside the ring
                const auto state = static_cast<spec::ChanState>(v & 7);
                const uint64_t addr = ring_iova + ((v >> 3) % opts.ring_size) * 64;
                const uint64_t w = spec::ChanSts::make(state, addr).raw;
                if (dev.chancmp != 0) (void)fn->dma().write(dev.chancmp, &w, sizeof(w));
                on([&] { (void)ch->process_completions(); });
                break;
            }
            case 5:
                dev.chansts = v;
                dev.chanerr = static_cast<uint32_t>(v >> 32) | static_cast<uint32_t>(v);
                dev.reset_hold = static_cast<uint32_t>((v >> 8) & 7);
                break;
            case 6:
                on([&] {
                    (void)ch->reset();
                    (void)ch->process_completions();
                });
                break;
            case 7:
                if ((v & 0xFF) == 0x5A && !removed) {
                    removed = true;
                    on([&] { (void)bus->surprise_remove(kAddr); });  // logs: on a Thread
                }
                sim->advance((v >> 8) & 0xFFFFF);  // up to ~1 ms of virtual time
                break;
        }
    }

    // Tear down: every operation must complete exactly once, and detach must work: the device now
    // finishes a reset at once, so detach confirms it and frees the ring (nothing is leaked).
    dev.reset_hold = 0;
    dev.reset_reads = 0;
    struct Detached {
        int calls = 0;
        ioat::DetachResult result;
        static void done(void* ctx, const ioat::DetachResult& r) {
            auto* d = static_cast<Detached*>(ctx);
            ++d->calls;
            d->result = r;
        }
    } detached;
    on([&] {
        (void)ch->reset();
        (void)ch->process_completions();
        if (ch->outstanding() != 0) std::abort();
        if (!ch->detach(&Detached::done, &detached).ok()) std::abort();
    });
    if (!sim->run_until([&] { return detached.calls > 0; }, sim->now_ns() + 1'000'000'000))
        std::abort();
    if (detached.calls != 1 || !detached.result.status.ok() || detached.result.ring_leaked)
        std::abort();
    on([&] { ch.reset(); });
    for (auto& c : ops)
        if (c->calls != 1) std::abort();
    env::dma_free(buf);
    bus.reset();
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(State, run_input)
