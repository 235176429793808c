// Fuzz target: arbitrary CDBs, data-out and task management through core/scsi against a SCSI
// device with one malloc LUN (LUN 0; LUN 1 does not exist), from up to four I_T nexuses, on the
// simulator. The malloc bdev is made once per process; each input gets a fresh device (mode
// pages, reservations and unit attentions start over), destroyed at its end.
// Invariants: no crash; every task completes exactly once, never inside submit(); data-in stays
// inside the task's buffers (guard bytes around every iovec) and data_transferred within
// transfer_length; sense data is 18..32 bytes with a valid response code when the status is
// CHECK CONDITION; every task management function completes once; nothing stays outstanding.
//
// Input: records of
//   flags (1 byte): bits 0..1 nexus, bit 2 LUN 1 (absent), bit 3 data-out (else data-in),
//     bit 4 wait for completion before the next record, bit 5 a task management record
//     instead (the next byte: function in bits 0..1, the LUN in bit 2; ABORT TASK names the
//     previous task's tag), bits 6..7 iovecs - 1
//   cdb length selector (1 byte, % 5: 6, 10, 12, 16, 32) and that many CDB bytes
//   transfer length (2 bytes, big endian, % 8193)
//   data-out: as many bytes as the transfer length (or what is left), zero-padded
// Seeds: fuzz/corpus/gen_scsi_cdb.py. STRATA_FUZZ_TRACE=1 prints each task's outcome.
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <strata/base/log.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/runtime/scheduler.h>
#include <strata/scsi/scsi.h>

#include "fuzz_target.h"
#include "malloc/malloc.h"

namespace {

using namespace strata;

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);   \
            std::abort();                                                                \
        }                                                                                \
    } while (0)

constexpr size_t kGuard = 16;
constexpr uint8_t kGuardByte = 0xA7;
constexpr uint32_t kSlots = 16;
const char* const kPorts[4] = {"iqn.fuzz:a,i,0x1", "iqn.fuzz:b,i,0x2", "iqn.fuzz:c,i,0x3",
                               "iqn.fuzz:d,i,0x4"};

struct Slot {
    scsi::Task task;
    std::vector<uint8_t> arena;
    iovec iov[4] = {};
    uint32_t completions = 0;
    bool in_use = false;
    bool in_submit = false;
};

struct World {
    World() {
        fuzz::quiet_logs();
        if (!fuzz::env_ready()) std::abort();
        sim = std::make_unique<runtime::SimScheduler>(1, 1);
        thread = sim->create_thread("scsi_fuzz");
        CHECK(thread != nullptr);
        on([] { CHECK(bdev::malloc_create({"FuzzMalloc0", 256, 512, {}, 0}).ok()); });
    }
    // The malloc bdev goes before the simulator (its DMA memory belongs to the owner's Host).
    ~World() {
        bool gone = false;
        on([&] { bdev::unregister_bdev("FuzzMalloc0", [&gone](Result<void>) { gone = true; }); });
        sim->run_until([&] { return gone; });
    }
    World(const World&) = delete;
    World& operator=(const World&) = delete;
    template <class F>
    void on(F&& fn) {
        bool done = false;
        CHECK(thread->post([&] {
                        fn();
                        done = true;
                    }).ok());
        sim->run_until([&] { return done; });
        CHECK(done);
    }
    std::unique_ptr<runtime::SimScheduler> sim;
    runtime::Thread* thread = nullptr;
};

const bool kTrace = std::getenv("STRATA_FUZZ_TRACE") != nullptr;

void on_done(scsi::Task& t, void* ctx) {
    auto& s = *static_cast<Slot*>(ctx);
    if (kTrace)
        std::fprintf(stderr, "op %02x lun %lu status %02x sense %02x/%02x%02x xfer %u resid %u%s\n",
                     t.cdb[0], static_cast<unsigned long>(t.lun), t.status,
                     t.sense_len ? ((t.sense[0] & 0x7F) == 0x72 ? t.sense[1] : t.sense[2]) & 0xF : 0,
                     t.sense_len ? ((t.sense[0] & 0x7F) == 0x72 ? t.sense[2] : t.sense[12]) : 0,
                     t.sense_len ? ((t.sense[0] & 0x7F) == 0x72 ? t.sense[3] : t.sense[13]) : 0,
                     t.data_transferred, t.residual, t.aborted ? " aborted" : "");
    CHECK(&s.task == &t);
    CHECK(!s.in_submit);
    CHECK(s.in_use);
    ++s.completions;
    CHECK(s.completions == 1);
    CHECK(t.data_transferred <= t.transfer_length);
    CHECK(t.sense_len <= scsi::kMaxSenseBytes);
    if (t.status == scsi::status::check_condition) {
        CHECK(t.sense_len >= 8);
        CHECK((t.sense[0] & 0x7F) == 0x70 || (t.sense[0] & 0x7F) == 0x72);
    }
}

void check_guards(const Slot& s) {
    for (int i = 0; i < s.task.iovcnt; ++i) {
        const auto* p = static_cast<const uint8_t*>(s.iov[i].iov_base);
        for (size_t k = 1; k <= kGuard; ++k) CHECK(p[-static_cast<ptrdiff_t>(k)] == kGuardByte);
        for (size_t k = 0; k < kGuard; ++k) CHECK(p[s.iov[i].iov_len + k] == kGuardByte);
    }
}

}  // namespace

namespace {

int run_input(World& w, const uint8_t* data, size_t size) {
    scsi::Device* dev = nullptr;
    w.on([&] {
        auto d = scsi::create_device({.name = "iqn.fuzz:dev", .id = 0, .luns = {{0, "FuzzMalloc0"}}});
        CHECK(d.ok());
        dev = *d;
    });
    auto slots = std::make_unique<Slot[]>(kSlots);
    uint32_t next = 0;
    uint64_t tag = 0;
    struct Mgmt {
        scsi::MgmtTask m;
        int calls = 0;
    };
    std::vector<std::unique_ptr<Mgmt>> mgmts;
    size_t pos = 0;
    while (pos < size) {
        const uint8_t flags = data[pos++];
        if (flags & 0x20) {
            if (pos >= size) break;
            const uint8_t f = data[pos++];
            auto m = std::make_unique<Mgmt>();
            m->m.function = static_cast<scsi::TmfFunction>(f & 3);
            m->m.lun = (f & 4) ? 1 : 0;
            m->m.victim_tag = tag;
            m->m.initiator_port = kPorts[flags & 3];
            m->m.done = [](scsi::MgmtTask&, void* ctx) { ++static_cast<Mgmt*>(ctx)->calls; };
            m->m.done_ctx = m.get();
            Mgmt* raw = m.get();
            mgmts.push_back(std::move(m));
            w.on([&] {
                scsi::manage(*dev, raw->m);
                CHECK(raw->calls == 0);
            });
            continue;
        }
        if (pos >= size) break;
        static const size_t kLens[5] = {6, 10, 12, 16, 32};
        const size_t cdb_len = kLens[data[pos++] % 5];
        Slot& s = slots[next];
        next = (next + 1) % kSlots;
        if (s.in_use) {
            w.sim->run_until([&] { return s.completions > 0; }, w.sim->now_ns() + 60'000'000'000ull);
            CHECK(s.completions == 1);
            check_guards(s);
        }
        s = Slot{};
        s.in_use = true;
        const size_t take = std::min(cdb_len, size - pos);
        std::memcpy(s.task.cdb, data + pos, take);
        pos += take;
        s.task.cdb_len = static_cast<uint8_t>(cdb_len);
        uint32_t len = 0;
        if (pos + 2 <= size) {
            len = (uint32_t(data[pos]) << 8 | data[pos + 1]) % 8193;
            pos += 2;
        }
        const int niov = len == 0 ? 0 : 1 + (flags >> 6);
        s.arena.assign(len + kGuard * (niov + 1), kGuardByte);
        size_t off = kGuard;
        uint32_t left = len;
        for (int i = 0; i < niov; ++i) {
            const uint32_t part = i + 1 == niov ? left : left / uint32_t(niov - i);
            s.iov[i] = {s.arena.data() + off, part};
            std::memset(s.arena.data() + off, 0, part);
            off += part + kGuard;
            left -= part;
        }
        s.task.iovs = niov ? s.iov : nullptr;
        s.task.iovcnt = niov;
        s.task.transfer_length = len;
        s.task.dir = len == 0 ? scsi::DataDir::none
                              : (flags & 0x08) ? scsi::DataDir::to_dev : scsi::DataDir::from_dev;
        if (s.task.dir == scsi::DataDir::to_dev) {
            size_t copied = 0;
            for (int i = 0; i < niov && pos < size; ++i) {
                const size_t k = std::min(s.iov[i].iov_len, size - pos);
                std::memcpy(s.iov[i].iov_base, data + pos, k);
                pos += k;
                copied += k;
            }
        }
        s.task.lun = (flags & 0x04) ? 1 : 0;
        s.task.initiator_port = kPorts[flags & 3];
        s.task.tag = ++tag;
        s.task.done = &on_done;
        s.task.done_ctx = &s;
        w.on([&] {
            s.in_submit = true;
            scsi::submit(*dev, s.task);
            s.in_submit = false;
        });
        if (flags & 0x10) {
            w.sim->run_until([&] { return s.completions > 0; }, w.sim->now_ns() + 60'000'000'000ull);
            CHECK(s.completions == 1);
        }
    }
    w.sim->run_until(
        [&] {
            for (uint32_t i = 0; i < kSlots; ++i)
                if (slots[i].in_use && slots[i].completions == 0) return false;
            for (auto& m : mgmts)
                if (m->calls == 0) return false;
            return true;
        },
        w.sim->now_ns() + 600'000'000'000ull);
    for (uint32_t i = 0; i < kSlots; ++i) {
        if (!slots[i].in_use) continue;
        CHECK(slots[i].completions == 1);
        check_guards(slots[i]);
    }
    for (auto& m : mgmts) CHECK(m->calls == 1);
    bool gone = false;
    w.on([&] {
        CHECK(scsi::outstanding_tasks(*dev) == 0);
        scsi::destroy_device(*dev, [&] { gone = true; });
    });
    w.sim->run_until([&] { return gone; });
    CHECK(gone);
    return 0;
}

}  // namespace

STRATA_FUZZ_TARGET(World, run_input)
