// The bdev core: registry, descriptors and claims, removal, splitting and bounce buffers against
// a data-checking test bdev, emulated write zeroes / compare / compare-and-write, QoS, timeouts,
// pool exhaustion and statistics.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <optional>
#include <vector>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/env/memory.h>
#include <strata/bdev/io_fixture.h>

#include "malloc/malloc.h"
#include "null/null.h"

namespace strata::bdev {
namespace {

const Module kTestModule{"test", nullptr};

// A bdev that checks every I/O the layer hands it against its declared constraints and keeps
// the data, so tests can see that splitting and bouncing are invisible to the caller.
class CheckingBdev final : public Bdev {
public:
    explicit CheckingBdev(Properties p) : Bdev(kTestModule, std::move(p)), data(num_blocks() * block_size()) {}
    bool supports(IoType t) const noexcept override {
        return t == IoType::read || t == IoType::write || (t == IoType::unmap && with_unmap);
    }
    runtime::IoDevice& module_io_device() noexcept override { return stateless_io_device(); }
    void submit(runtime::IoChannel&, BdevIo& io) noexcept override {
        ++submitted;
        const auto& p = properties();
        if (p.max_io_blocks && io.num_blocks() > p.max_io_blocks) ++violations;
        if (p.optimal_io_boundary &&
            io.offset_blocks() / p.optimal_io_boundary !=
                (io.offset_blocks() + io.num_blocks() - 1) / p.optimal_io_boundary)
            ++violations;
        for (const iovec& v : io.iovs())
            if ((reinterpret_cast<uintptr_t>(v.iov_base) & (p.required_alignment - 1)) != 0)
                ++violations;
        if (hold) {
            held.push_back(&io);
            return;
        }
        execute(io);
    }
    void execute(BdevIo& io) {
        size_t pos = io.offset_blocks() * block_size();
        const size_t end = pos + io.length_bytes();
        if (io.type() == IoType::write)  // what the media saw, in order (range-lock tests)
            log.push_back({io.type(), io.offset_blocks(), io.num_blocks(),
                           static_cast<const uint8_t*>(io.iovs()[0].iov_base)[0]});
        else if (io.type() == IoType::read)
            log.push_back({io.type(), io.offset_blocks(), io.num_blocks(), 0});
        if (io.type() == IoType::unmap) {
            std::memset(data.data() + pos, 0, end - pos);
        } else {
            for (const iovec& v : io.iovs()) {
                const size_t n = std::min(v.iov_len, end - pos);
                if (io.type() == IoType::read) std::memcpy(v.iov_base, data.data() + pos, n);
                else std::memcpy(data.data() + pos, v.iov_base, n);
                pos += n;
            }
        }
        io.complete(Errc::ok);
    }
    struct Logged {
        IoType type;
        uint64_t offset, num;
        uint8_t first;  // a write's first byte
    };
    std::vector<Logged> log;
    std::vector<uint8_t> data;
    uint64_t submitted = 0, violations = 0;
    bool hold = false, with_unmap = false;
    std::vector<BdevIo*> held;
};

using testing::Done;

class BdevTest : public testing::BdevIoFixture {
protected:
    void SetUp() override {
        ASSERT_TRUE(env::init().ok());
        start_sim(3, 2);
        register_module(kTestModule);
    }
    void TearDown() override {
        close_rw();
        run_until_idle();
        for (Bdev* b : list()) {
            bool gone = false;
            on(t0(), [&] { unregister_bdev(b->name(), [&](Result<void>) { gone = true; }); });
            EXPECT_TRUE(poll_until([&] { return gone; }));
        }
        run_until_idle();
        SimFixture::TearDown();
        EXPECT_EQ(env::dma_region_count(), 0u);
        env::fini();
    }
    runtime::Thread* t0() { return threads[0]; }

    CheckingBdev* make_checking(Bdev::Properties p) {
        auto b = std::make_unique<CheckingBdev>(std::move(p));
        CheckingBdev* raw = b.get();
        on(t0(), [&] { ASSERT_TRUE(register_bdev(std::move(b)).ok()); });
        return raw;
    }
    static void pattern(uint8_t* p, size_t n, int seed) {
        for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7 + seed + (i >> 8));
    }
};

TEST_F(BdevTest, MallocRoundTripWithUnalignedBuffers) {
    on(t0(), [&] { ASSERT_TRUE(malloc_create({"Malloc0", 2048, 512, {}, 0}).ok()); });
    open_rw("Malloc0");
    std::vector<uint8_t> w(8192 + 3), r(8192 + 3);
    pattern(w.data() + 3, 8192, 1);
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return write(*desc, *ch, w.data() + 3, 10, 16, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data() + 3, 10, 16, d, c); }).ok());
    EXPECT_EQ(std::memcmp(w.data() + 3, r.data() + 3, 8192), 0);
    iovec iov[3] = {{r.data(), 1000}, {r.data() + 1000, 24}, {r.data() + 2000, 1024}};
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return readv(*desc, *ch, iov, 3, 10, 4, d, c); }).ok());
    EXPECT_EQ(std::memcmp(r.data(), w.data() + 3, 1024), 0);
    EXPECT_EQ(std::memcmp(r.data() + 2000, w.data() + 3 + 1024, 1024), 0);
}

// A module that completes inside submit (null) gets its callbacks one message later, never
// inside the caller's submit, in completion order, and a batch costs one message, not one per I/O.
TEST_F(BdevTest, InlineCompletionsAreDeferredAsOneBatch) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"NullB", 1024, 512, {}}).ok()); });
    open_rw("NullB");
    struct Rec {
        std::vector<int>* order;
        int index;
        static void cb(void* c, const IoStatus& s) {
            auto* r = static_cast<Rec*>(c);
            EXPECT_TRUE(s.ok());
            r->order->push_back(r->index);
        }
    };
    constexpr int kIos = 64;
    std::vector<int> order;
    std::vector<Rec> recs(kIos);
    std::vector<uint8_t> buf(512);
    uint64_t messages_before = 0;
    on(t0(), [&] {
        messages_before = t0()->stats().messages;
        for (int i = 0; i < kIos; ++i) {
            recs[i] = Rec{&order, i};
            ASSERT_TRUE(read(*desc, *ch, buf.data(), i, 1, &Rec::cb, &recs[i]).ok());
        }
        EXPECT_TRUE(order.empty()) << "a callback ran inside its submit";
    });
    run_until_idle();
    ASSERT_EQ(order.size(), size_t{kIos});
    for (int i = 0; i < kIos; ++i) EXPECT_EQ(order[i], i);
    // The submitting message itself, then one message for the whole batch.
    EXPECT_LE(t0()->stats().messages - messages_before, 2u);
}

TEST_F(BdevTest, RangeAndPermissionErrors) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"Null0", 100, 512, {}}).ok()); });
    std::vector<uint8_t> buf(4096);
    on(t0(), [&] {
        auto ro = open("Null0", false);
        ASSERT_TRUE(ro.ok());
        Channel* c = (*ro)->get_channel();
        EXPECT_EQ(write(**ro, *c, buf.data(), 0, 1, &Done::cb, nullptr).code(), Errc::permission_denied);
        EXPECT_EQ(read(**ro, *c, buf.data(), 99, 2, &Done::cb, nullptr).code(), Errc::invalid_argument);
        EXPECT_EQ(read(**ro, *c, buf.data(), 0, 0, &Done::cb, nullptr).code(), Errc::invalid_argument);
        EXPECT_EQ(read(**ro, *c, buf.data(), UINT64_MAX, 2, &Done::cb, nullptr).code(), Errc::invalid_argument);
        put_channel(c);
        EXPECT_EQ(open("NoSuch", false).code(), Errc::not_found);
    });
}

TEST_F(BdevTest, RegistryNamesAliasesAndClaims) {
    Bdev::Properties p;
    p.name = "Check0";
    p.aliases = {"alias0"};
    p.num_blocks = 64;
    make_checking(p);
    on(t0(), [&] {
        Bdev::Properties dup;
        dup.name = "alias0";
        dup.num_blocks = 8;
        EXPECT_EQ(register_bdev(std::make_unique<CheckingBdev>(dup)).code(), Errc::already_exists);
        Bdev::Properties bad;
        bad.name = "Bad";
        bad.num_blocks = 8;
        bad.block_size = 1000;
        EXPECT_EQ(register_bdev(std::make_unique<CheckingBdev>(bad)).code(), Errc::invalid_argument);
        ASSERT_NE(find("alias0"), nullptr);
        EXPECT_EQ(find("alias0")->name(), "Check0");
        EXPECT_EQ(find("Check0")->uuid().size(), 36u);
        auto a = open("Check0", false);
        ASSERT_TRUE(a.ok());
        ASSERT_TRUE(claim(**a, kTestModule).ok());
        EXPECT_STREQ(find("Check0")->claimed_by(), "test");
        EXPECT_EQ(open("Check0", true).code(), Errc::permission_denied);
        EXPECT_TRUE(open("Check0", false).ok());  // readers are fine
        release_claim(**a);
        EXPECT_TRUE(open("Check0", true).ok());
    });
}

TEST_F(BdevTest, RemovalNotifiesOpenersAndWaitsForClose) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"Null1", 100, 512, {}}).ok()); });
    open_rw("Null1");
    bool removed = false;
    on(t0(), [&] { unregister_bdev("Null1", [&](Result<void> r) { removed = r.ok(); }); });
    ASSERT_TRUE(poll_until([&] { return !events.empty(); }));
    EXPECT_EQ(events[0], Event::remove);
    run_until_idle();
    EXPECT_FALSE(removed) << "removed while a desc was open";
    EXPECT_EQ(find("Null1"), nullptr);
    std::vector<uint8_t> buf(512);
    on(t0(), [&] { EXPECT_EQ(read(*desc, *ch, buf.data(), 0, 1, &Done::cb, nullptr).code(), Errc::shutdown); });
    on(t0(), [&] {
        put_channel(ch);
        ch = nullptr;
        desc.reset();
    });
    ASSERT_TRUE(poll_until([&] { return removed; }));
}

TEST_F(BdevTest, SplitsAndBouncesInvisibly) {
    Bdev::Properties p;
    p.name = "Check1";
    p.num_blocks = 4096;
    p.max_io_blocks = 8;
    p.optimal_io_boundary = 16;
    p.required_alignment = 4096;
    CheckingBdev* b = make_checking(p);
    open_rw("Check1");
    std::vector<uint8_t> w(200 * 512 + 1), r(200 * 512 + 7);
    pattern(w.data() + 1, 200 * 512, 3);
    iovec wiov[2] = {{w.data() + 1, 77 * 512 + 100}, {w.data() + 1 + 77 * 512 + 100, 123 * 512 - 100}};
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return writev(*desc, *ch, wiov, 2, 5, 200, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return read(*desc, *ch, r.data() + 7, 5, 200, d, c); }).ok());
    EXPECT_EQ(std::memcmp(w.data() + 1, r.data() + 7, 200 * 512), 0);
    EXPECT_EQ(std::memcmp(b->data.data() + 5 * 512, w.data() + 1, 200 * 512), 0);
    EXPECT_EQ(b->violations, 0u);
    EXPECT_GE(b->submitted, 2u * 200 / 8);
    IoStats s;
    bool got = false;
    on(t0(), [&] { get_iostat(*find("Check1"), [&](const IoStats& st) { s = st; got = true; }); });
    ASSERT_TRUE(poll_until([&] { return got; }));
    EXPECT_EQ(s.num_write_ops, 1u);
    EXPECT_EQ(s.num_read_ops, 1u);
    EXPECT_EQ(s.bytes_read, 200u * 512);
    EXPECT_GE(s.split, 2u);
    EXPECT_GE(s.bounced, 1u);
}

TEST_F(BdevTest, EmulatedWriteZeroesCompareAndCompareAndWrite) {
    Bdev::Properties p;
    p.name = "Check2";
    p.num_blocks = 4096;
    CheckingBdev* b = make_checking(p);
    open_rw("Check2");
    std::fill(b->data.begin(), b->data.end(), 0xAB);
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return write_zeroes(*desc, *ch, 100, 600, d, c); }).ok());
    for (size_t i = 100 * 512; i < 700 * 512; ++i) ASSERT_EQ(b->data[i], 0) << i;
    EXPECT_EQ(b->data[100 * 512 - 1], 0xAB);
    EXPECT_EQ(b->data[700 * 512], 0xAB);
    std::vector<uint8_t> expect(2048, 0), other(2048, 0x55);
    iovec e{expect.data(), 2048}, o{other.data(), 2048};
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return comparev(*desc, *ch, &e, 1, 100, 4, d, c); }).ok());
    EXPECT_EQ(io([&](IoDoneFn d, void* c) { return comparev(*desc, *ch, &o, 1, 100, 4, d, c); }).code,
              Errc::corrupt);
    // compare-and-write: equal -> written; different -> nothing written.
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return compare_and_writev(*desc, *ch, &e, 1, &o, 1, 100, 4, d, c); }).ok());
    EXPECT_EQ(b->data[100 * 512], 0x55);
    EXPECT_EQ(io([&](IoDoneFn d, void* c) { return compare_and_writev(*desc, *ch, &e, 1, &e, 1, 100, 4, d, c); }).code,
              Errc::corrupt);
    EXPECT_EQ(b->data[100 * 512], 0x55);
    // flush and reset on a module without them complete successfully; unmap is refused.
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return flush(*desc, *ch, 0, 10, d, c); }).ok());
    EXPECT_TRUE(io([&](IoDoneFn d, void* c) { return reset(*desc, *ch, d, c); }).ok());
    on(t0(), [&] { EXPECT_EQ(unmap(*desc, *ch, 0, 1, &Done::cb, nullptr).code(), Errc::not_supported); });
}

TEST_F(BdevTest, QosHoldsTheIopsLimit) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"Null2", 1 << 20, 512, {}}).ok()); });
    open_rw("Null2");
    ASSERT_TRUE(set_qos_limits(*find("Null2"), QosLimits{10'000, 0, 0, 0}).ok());
    struct Loop {
        Desc* desc;
        Channel* ch;
        std::vector<uint8_t> buf = std::vector<uint8_t>(4096);
        uint64_t completed = 0;
        bool stop = false;
        static void done(void* p, const IoStatus&) {
            auto* l = static_cast<Loop*>(p);
            ++l->completed;
            if (!l->stop) (void)read(*l->desc, *l->ch, l->buf.data(), 0, 8, &Loop::done, l);
        }
    } loop{desc.get(), ch};
    on(t0(), [&] {
        for (int i = 0; i < 64; ++i) ASSERT_TRUE(read(*desc, *ch, loop.buf.data(), 0, 8, &Loop::done, &loop).ok());
    });
    const uint64_t start = sim->now_ns();
    poll_until([&] { return sim->now_ns() - start >= 10 * runtime::kNsPerSec; }, 11 * runtime::kNsPerSec);
    const uint64_t n = loop.completed;
    loop.stop = true;
    EXPECT_NEAR(static_cast<double>(n), 100'000.0, 5'000.0) << "QoS off by more than 5%";
    ASSERT_TRUE(set_qos_limits(*find("Null2"), QosLimits{}).ok());
    run_until_idle();
}

TEST_F(BdevTest, TimeoutCallbackFiresOnce) {
    Bdev::Properties p;
    p.name = "Check3";
    p.num_blocks = 64;
    CheckingBdev* b = make_checking(p);
    open_rw("Check3");
    b->hold = true;
    int timeouts = 0;
    on(t0(), [&] {
        desc->set_timeout(50'000, [](void* c, IoType, uint64_t) { ++*static_cast<int*>(c); }, &timeouts);
    });
    std::vector<uint8_t> buf(512);
    Done d;
    on(t0(), [&] { ASSERT_TRUE(read(*desc, *ch, buf.data(), 1, 1, &Done::cb, &d).ok()); });
    ASSERT_TRUE(poll_until([&] { return timeouts > 0; }));
    advance(200'000'000);
    EXPECT_EQ(timeouts, 1);
    EXPECT_EQ(d.calls, 0);
    on(t0(), [&] {
        b->hold = false;
        for (BdevIo* io : b->held) b->execute(*io);
        b->held.clear();
    });
    ASSERT_TRUE(poll_until([&] { return d.calls == 1; }));
}

// Features that are off cost nothing: while neither QoS nor a timeout was ever set, no submit
// runs their set-up (the submit path pays one predictable branch for both) and neither has a
// poller; a timeout on the desc, or QoS, turns the path on.
TEST_F(BdevTest, QosAndTimeoutsOffStayOffTheSubmitPath) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"NullF", 1024, 512, {}}).ok()); });
    open_rw("NullF");
    std::vector<uint8_t> buf(512);
    auto has_poller = [&](const char* name) {
        bool found = false;
        on(t0(), [&] {
            for (const auto& p : t0()->pollers()) found = found || p.name == name;
        });
        return found;
    };
    for (uint64_t i = 0; i < 100; ++i)
        ASSERT_TRUE(
            io([&](IoDoneFn d, void* c) { return read(*desc, *ch, buf.data(), i, 1, d, c); }).ok());
    EXPECT_EQ(feature_path_count(*ch), 0u) << "QoS / timeout set-up ran with both off";
    EXPECT_FALSE(has_poller("bdev_qos"));
    EXPECT_FALSE(has_poller("bdev_timeouts"));

    on(t0(), [&] {
        desc->set_timeout(
            1'000'000'000, [](void*, IoType, uint64_t) {}, nullptr);
    });
    ASSERT_TRUE(
        io([&](IoDoneFn d, void* c) { return read(*desc, *ch, buf.data(), 0, 1, d, c); }).ok());
    EXPECT_EQ(feature_path_count(*ch), 1u);
    EXPECT_TRUE(has_poller("bdev_timeouts"));
    on(t0(), [&] { desc->set_timeout(0, nullptr, nullptr); });

    ASSERT_TRUE(set_qos_limits(*find("NullF"), QosLimits{1'000'000, 0, 0, 0}).ok());
    ASSERT_TRUE(
        io([&](IoDoneFn d, void* c) { return read(*desc, *ch, buf.data(), 0, 1, d, c); }).ok());
    EXPECT_EQ(feature_path_count(*ch), 2u);
    EXPECT_TRUE(has_poller("bdev_qos"));
    ASSERT_TRUE(set_qos_limits(*find("NullF"), QosLimits{}).ok());
    run_until_idle();
}

TEST_F(BdevTest, PoolExhaustionAndIoWait) {
    Bdev::Properties p;
    p.name = "Check4";
    p.num_blocks = 64;
    CheckingBdev* b = make_checking(p);
    open_rw("Check4");
    b->hold = true;
    std::vector<uint8_t> buf(512);
    std::vector<Done> dones(1100);
    size_t accepted = 0;
    Status last;
    on(t0(), [&] {
        for (auto& d : dones) {
            last = read(*desc, *ch, buf.data(), 0, 1, &Done::cb, &d);
            if (!last.ok()) break;
            ++accepted;
        }
    });
    EXPECT_EQ(last.code(), Errc::busy);
    EXPECT_GT(accepted, 100u);
    bool woke = false;
    IoWaitEntry entry{[](void* c) { *static_cast<bool*>(c) = true; }, &woke};
    on(t0(), [&] {
        queue_io_wait(*ch, entry);
        b->hold = false;
        b->execute(*b->held.front());
        b->held.erase(b->held.begin());
    });
    ASSERT_TRUE(poll_until([&] { return woke; }));
    on(t0(), [&] {
        for (BdevIo* io : b->held) b->execute(*io);
        b->held.clear();
    });
    ASSERT_TRUE(poll_until([&] {
        size_t n = 0;
        for (auto& d : dones) n += d.calls;
        return n == accepted;
    }));
}

}  // namespace
}  // namespace strata::bdev

namespace strata::bdev {
namespace {

// A second opener of a bdev on another Thread (its own desc and channel).
struct Peer {
    runtime::Thread* thread = nullptr;
    std::unique_ptr<Desc> desc;
    Channel* ch = nullptr;
};

struct LockDone {
    int calls = 0;
    Status status;
    int io_calls = 0;  // I/O submitted with this (the lock's owner ctx) as its ctx
    static void cb(void* ctx, Status s) {
        auto* d = static_cast<LockDone*>(ctx);
        ++d->calls;
        d->status = s;
    }
    static void io_cb(void* ctx, const IoStatus&) { ++static_cast<LockDone*>(ctx)->io_calls; }
};

class RangeLockTest : public BdevTest {
protected:
    Peer open_peer(const std::string& name, runtime::Thread* t) {
        Peer p;
        p.thread = t;
        on(t, [&] {
            auto d = open(name, true, [](Event, Bdev&) {});
            ASSERT_TRUE(d.ok());
            p.desc = std::move(*d);
            p.ch = p.desc->get_channel();
        });
        return p;
    }
    void close_peer(Peer& p) {
        on(p.thread, [&] {
            put_channel(p.ch);
            p.ch = nullptr;
            p.desc.reset();
        });
    }
    void lock(uint64_t off, uint64_t n, LockDone& l) {
        on(t0(), [&] { ASSERT_TRUE(lock_lba_range(*desc, *ch, off, n, &LockDone::cb, &l).ok()); });
    }
};

TEST_F(RangeLockTest, HoldsOtherWritersLetsReadsAndTheOwnerThrough) {
    Bdev::Properties p;
    p.name = "Lock1";
    p.num_blocks = 64;
    CheckingBdev* b = make_checking(p);
    open_rw("Lock1");
    Peer peer = open_peer("Lock1", threads[1]);
    LockDone l;
    lock(8, 8, l);
    ASSERT_TRUE(poll_until([&] { return l.calls == 1; }));
    ASSERT_TRUE(l.status.ok());

    std::vector<uint8_t> w(512, 0x22), w2(512, 0x33), own(512, 0x44), mine(512, 0x55), r(512);
    Done wd, w2d, rd, mined;
    on(peer.thread, [&] {
        ASSERT_TRUE(write(*peer.desc, *peer.ch, w.data(), 10, 1, &Done::cb, &wd).ok());
        ASSERT_TRUE(write(*peer.desc, *peer.ch, w2.data(), 20, 1, &Done::cb, &w2d).ok());
        ASSERT_TRUE(read(*peer.desc, *peer.ch, r.data(), 10, 1, &Done::cb, &rd).ok());
    });
    on(t0(), [&] {
        // The owner (ctx == the lock's ctx) passes; another ctx on the same channel waits.
        ASSERT_TRUE(write(*desc, *ch, own.data(), 9, 1, &LockDone::io_cb, &l).ok());
        ASSERT_TRUE(write(*desc, *ch, mine.data(), 11, 1, &Done::cb, &mined).ok());
    });
    run_until_idle();
    EXPECT_EQ(wd.calls, 0) << "a write from another channel went through the lock";
    EXPECT_EQ(mined.calls, 0) << "a write by a non-owner on the owner's channel went through";
    EXPECT_EQ(w2d.calls, 1) << "a write outside the range waited";
    EXPECT_EQ(rd.calls, 1) << "a read waited";
    EXPECT_EQ(l.io_calls, 1) << "the owner's own write waited";
    EXPECT_EQ(b->data[10 * 512], 0);
    EXPECT_EQ(b->data[9 * 512], 0x44);

    on(t0(), [&] { ASSERT_TRUE(unlock_lba_range(*desc, *ch, 8, 8, &LockDone::cb, &l).ok()); });
    ASSERT_TRUE(poll_until([&] { return wd.calls == 1 && mined.calls == 1 && l.calls == 2; }));
    EXPECT_EQ(l.calls, 2);  // granted, then unlocked
    EXPECT_TRUE(wd.status.ok());
    EXPECT_EQ(b->data[10 * 512], 0x22);  // landed after the unlock
    EXPECT_EQ(b->data[11 * 512], 0x55);
    // Unlocking what is not held: not_found, through the callback.
    LockDone bad;
    on(t0(), [&] { ASSERT_TRUE(unlock_lba_range(*desc, *ch, 8, 8, &LockDone::cb, &bad).ok()); });
    ASSERT_TRUE(poll_until([&] { return bad.calls == 1; }));
    EXPECT_EQ(bad.status.code(), Errc::not_found);
    close_peer(peer);
}

TEST_F(RangeLockTest, OutstandingOverlappingWriteDelaysTheGrant) {
    Bdev::Properties p;
    p.name = "Lock2";
    p.num_blocks = 64;
    CheckingBdev* b = make_checking(p);
    open_rw("Lock2");
    Peer peer = open_peer("Lock2", threads[1]);
    b->hold = true;
    std::vector<uint8_t> w(512, 0x66), r(512);
    Done wd, rd;
    on(peer.thread, [&] {
        ASSERT_TRUE(write(*peer.desc, *peer.ch, w.data(), 5, 1, &Done::cb, &wd).ok());
        ASSERT_TRUE(read(*peer.desc, *peer.ch, r.data(), 6, 1, &Done::cb, &rd).ok());
    });
    run_until_idle();
    ASSERT_EQ(b->held.size(), 2u);
    LockDone l;
    lock(0, 16, l);
    run_until_idle();
    EXPECT_EQ(l.calls, 0) << "granted while an overlapping write was in flight";
    on(peer.thread, [&] { b->execute(*b->held[1]); });  // the read: does not matter
    run_until_idle();
    EXPECT_EQ(l.calls, 0);
    on(peer.thread, [&] { b->execute(*b->held[0]); });
    ASSERT_TRUE(poll_until([&] { return l.calls == 1; }));
    EXPECT_TRUE(l.status.ok());
    b->hold = false;
    b->held.clear();
    on(t0(), [&] { ASSERT_TRUE(unlock_lba_range(*desc, *ch, 0, 16, &LockDone::cb, &l).ok()); });
    ASSERT_TRUE(poll_until([&] { return l.calls == 2; }));
    close_peer(peer);
}

// Emulated compare-and-write on Thread 0 races plain writes of the same blocks on Thread 1.
// Every compare-and-write that wrote must have had no other write reach the media between its
// compare (a read) and its write. Without the range lock this fails (checked by hand).
TEST_F(RangeLockTest, CompareAndWriteIsAtomicAgainstWritesFromAnotherChannel) {
    Bdev::Properties p;
    p.name = "Lock3";
    p.num_blocks = 64;
    CheckingBdev* b = make_checking(p);
    open_rw("Lock3");
    Peer peer = open_peer("Lock3", threads[1]);
    constexpr uint64_t kOff = 8, kN = 8;
    struct Race {
        Desc* desc;
        Channel* ch;
        Peer* peer;
        std::vector<uint8_t> cmp = std::vector<uint8_t>(kN * 512, 0xB0);
        std::vector<uint8_t> wr = std::vector<uint8_t>(kN * 512, 0xA0);
        std::vector<uint8_t> bw = std::vector<uint8_t>(kN * 512, 0xB0);
        iovec c{}, w{};
        int rounds = 0, matched = 0, writes = 0, errors = 0;
        bool stop = false;
        static void cw_next(void* ctx, const IoStatus& s) {
            auto* r = static_cast<Race*>(ctx);
            if (s.ok()) ++r->matched;
            else if (s.code != Errc::corrupt) ++r->errors;
            if (++r->rounds == 300) {
                r->stop = true;
                return;
            }
            r->submit_cw();
        }
        void submit_cw() {
            if (!compare_and_writev(*desc, *ch, &c, 1, &w, 1, kOff, kN, &cw_next, this).ok()) ++errors;
        }
        static void w_next(void* ctx, const IoStatus& s) {
            auto* r = static_cast<Race*>(ctx);
            if (!s.ok()) ++r->errors;
            ++r->writes;
            if (!r->stop) r->submit_w();
        }
        void submit_w() {
            // Alternate whole-range and one-block writes inside the range.
            const uint64_t off = (writes % 2 == 0) ? kOff : kOff + writes % kN;
            const uint64_t n = (writes % 2 == 0) ? kN : 1;
            if (!write(*peer->desc, *peer->ch, bw.data(), off, n, &w_next, this).ok()) ++errors;
        }
    } race{desc.get(), ch, &peer};
    race.c = iovec{race.cmp.data(), race.cmp.size()};
    race.w = iovec{race.wr.data(), race.wr.size()};
    on(peer.thread, [&] { race.submit_w(); });
    on(t0(), [&] { race.submit_cw(); });
    ASSERT_TRUE(poll_until([&] { return race.stop; }, 100 * runtime::kNsPerSec));
    run_until_idle();
    EXPECT_EQ(race.errors, 0);
    EXPECT_GT(race.matched, 10) << "the race never let a compare-and-write match";
    EXPECT_GT(race.writes, 10);
    // On the media: each 0xA0 write follows its compare (the last read before it) with no
    // 0xB0 write to overlapping blocks in between.
    int torn = 0;
    for (size_t i = 0; i < b->log.size(); ++i) {
        const auto& e = b->log[i];
        if (e.type != IoType::write || e.first != 0xA0) continue;
        size_t j = i;
        while (j > 0 && b->log[j - 1].type != IoType::read) --j;
        for (size_t k = j; k < i; ++k)
            if (b->log[k].type == IoType::write && b->log[k].first == 0xB0) ++torn;
    }
    EXPECT_EQ(torn, 0) << "writes from another channel landed between compare and write";
    close_peer(peer);
}

TEST_F(RangeLockTest, RemovalWhileLockedDoesNotHang) {
    on(t0(), [&] { ASSERT_TRUE(null_create({"NullL", 100, 512, {}}).ok()); });
    open_rw("NullL");
    Peer peer = open_peer("NullL", threads[1]);
    LockDone l;
    lock(0, 10, l);
    ASSERT_TRUE(poll_until([&] { return l.calls == 1; }));
    std::vector<uint8_t> w(512, 1), cmp(512, 0);
    iovec ci{cmp.data(), 512}, wi{w.data(), 512};
    Done wd, cwd;
    on(peer.thread, [&] {
        ASSERT_TRUE(write(*peer.desc, *peer.ch, w.data(), 3, 1, &Done::cb, &wd).ok());
        ASSERT_TRUE(compare_and_writev(*peer.desc, *peer.ch, &ci, 1, &wi, 1, 4, 1, &Done::cb, &cwd).ok());
    });
    run_until_idle();
    EXPECT_EQ(wd.calls, 0);
    bool removed = false;
    on(t0(), [&] { unregister_bdev("NullL", [&](Result<void> r) { removed = r.ok(); }); });
    ASSERT_TRUE(poll_until([&] { return !events.empty(); }));
    // A new lock on a bdev going away is refused.
    LockDone late;
    on(peer.thread, [&] {
        EXPECT_EQ(lock_lba_range(*peer.desc, *peer.ch, 50, 1, &LockDone::cb, &late).code(), Errc::shutdown);
    });
    on(t0(), [&] { ASSERT_TRUE(unlock_lba_range(*desc, *ch, 0, 10, &LockDone::cb, &l).ok()); });
    ASSERT_TRUE(poll_until([&] { return l.calls == 2 && wd.calls == 1 && cwd.calls == 1; }));
    close_peer(peer);
    close_rw();
    ASSERT_TRUE(poll_until([&] { return removed; }));
}

}  // namespace
}  // namespace strata::bdev
