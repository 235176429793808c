// The tests every file-backed bdev module (aio, uring) must pass, as a typed GoogleTest suite:
// real kernel I/O on a temp file in /tmp (unlinked at the end), driven by the simulator (the
// modules' pollers stay runnable while the kernel holds I/O, see aio.cpp).
//
// A module's test instantiates it with a Traits type:
//   struct Traits {
//       static constexpr const char* kName;               // "aio"
//       static constexpr bool kFallocate;                  // unmap / write zeroes supported
//       static constexpr bool kReadonly;                   // create takes readonly
//       static const Module& module();
//       static std::string unavailable();                  // "" or why the module cannot run here
//       static Result<Bdev*> create(const FileBdevParams&);
//       static void remove(const std::string& name, std::function<void(Result<void>)> done);
//       static Result<void> rescan(const std::string& name);
//   };
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <strata/base/random.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/io_fixture.h>  // Done
#include <strata/bdev/module.h>
#include <strata/env/env.h>
#include <strata/runtime/sim_fixture.h>

namespace strata::bdev::testing {

struct FileBdevParams {
    std::string filename;
    std::string name;
    uint32_t block_size = 0;
    bool readonly = false;
    bool fallocate = false;
};

struct AlignedBuf {
    explicit AlignedBuf(size_t n, size_t align = 4096)
        : p(static_cast<uint8_t*>(std::aligned_alloc(align, (n + align - 1) / align * align))),
          size(n) {}
    ~AlignedBuf() { std::free(p); }
    AlignedBuf(const AlignedBuf&) = delete;
    AlignedBuf& operator=(const AlignedBuf&) = delete;
    uint8_t* p;
    size_t size;
};

inline void fill_pattern(uint8_t* p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 9)) & 0xFF);
}

template <class Traits>
class FileBdevTest : public runtime::testing::SimFixture {
protected:
    static constexpr uint64_t kFileBytes = 4 << 20;

    void SetUp() override {
        if (std::string why = Traits::unavailable(); !why.empty()) GTEST_SKIP() << why;
        ASSERT_TRUE(env::init().ok());
        env_up = true;
        start_sim(7, 3);
        register_module(Traits::module());
        char tmpl[] = "/tmp/strata_file_bdev_XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        path = tmpl;
        ASSERT_EQ(::ftruncate(fd, kFileBytes), 0);
        ::close(fd);
    }

    void TearDown() override {
        if (!env_up) return;
        for (auto& w : opened) {
            on(w.thread, [&] {
                if (w.ch) put_channel(w.ch);
                w.ch = nullptr;
                w.desc.reset();
            });
        }
        opened.clear();
        run_until_idle();
        for (Bdev* b : list()) {
            bool gone = false;
            const std::string n = b->name();
            on(t0(), [&] { unregister_bdev(n, [&](Result<void>) { gone = true; }); });
            EXPECT_TRUE(poll_until([&] { return gone; }));
        }
        run_until_idle();
        if (!path.empty()) ::unlink(path.c_str());
        SimFixture::TearDown();
        env::fini();
    }

    runtime::Thread* t0() { return threads[0]; }

    Result<Bdev*> create(FileBdevParams p) {
        std::optional<Result<Bdev*>> r;
        if (p.filename.empty()) p.filename = path;
        on(t0(), [&] { r = Traits::create(p); });
        return std::move(*r);
    }
    Bdev* create_ok(FileBdevParams p) {
        auto r = create(std::move(p));
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
        return r.ok() ? *r : nullptr;
    }

    struct Opened {
        runtime::Thread* thread = nullptr;
        std::unique_ptr<Desc> desc;
        Channel* ch = nullptr;
        std::vector<Event> events;
    };
    // Opens `name` read-write on `thread` and gets that Thread's channel.
    Opened& open_on(runtime::Thread* thread, const std::string& name, bool write = true) {
        opened.emplace_back();
        Opened& o = opened.back();
        o.thread = thread;
        on(thread, [&] {
            auto d = open(name, write, [&o](Event e, Bdev&) { o.events.push_back(e); });
            ASSERT_TRUE(d.ok()) << d.error().message();
            o.desc = std::move(*d);
            o.ch = o.desc->get_channel();
            ASSERT_NE(o.ch, nullptr);
        });
        return o;
    }
    template <class F>
    IoStatus io(Opened& o, F submit) {
        Done d;
        Status s;
        on(o.thread, [&] { s = submit(*o.desc, *o.ch, &Done::cb, &d); });
        EXPECT_TRUE(s.ok()) << s.to_string();
        if (!s.ok()) return IoStatus{s.code(), 0};
        EXPECT_TRUE(poll_until([&] { return d.calls > 0; }));
        EXPECT_EQ(d.calls, 1);
        return d.status;
    }
    IoStatus write_blocks(Opened& o, const void* buf, uint64_t off, uint64_t n) {
        return io(o, [&](Desc& d, Channel& c, IoDoneFn f, void* x) { return write(d, c, buf, off, n, f, x); });
    }
    IoStatus read_blocks(Opened& o, void* buf, uint64_t off, uint64_t n) {
        return io(o, [&](Desc& d, Channel& c, IoDoneFn f, void* x) { return read(d, c, buf, off, n, f, x); });
    }
    std::vector<uint8_t> file_bytes(uint64_t off, size_t n) {
        std::vector<uint8_t> v(n);
        const int fd = ::open(path.c_str(), O_RDONLY);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::pread(fd, v.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
        ::close(fd);
        return v;
    }
    IoStats iostat(Bdev& b) {
        IoStats out;
        bool got = false;
        on(t0(), [&] { get_iostat(b, [&](const IoStats& s) { out = s; got = true; }); });
        EXPECT_TRUE(poll_until([&] { return got; }));
        return out;
    }

    bool env_up = false;
    std::string path;
    std::deque<Opened> opened;
};

TYPED_TEST_SUITE_P(FileBdevTest);

// Data written through the bdev is in the file at the right offset, and reads back.
TYPED_TEST_P(FileBdevTest, WriteReadRoundTripReachesTheFile) {
    Bdev* b = this->create_ok({{}, "F0", 512});
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->block_size(), 512u);
    EXPECT_EQ(b->num_blocks(), this->kFileBytes / 512);
    auto& o = this->open_on(this->t0(), "F0");
    AlignedBuf w(64 * 1024), r(64 * 1024);
    fill_pattern(w.p, w.size, 1);
    ASSERT_TRUE(this->write_blocks(o, w.p, 100, 128).ok());
    ASSERT_TRUE(this->read_blocks(o, r.p, 100, 128).ok());
    EXPECT_EQ(std::memcmp(w.p, r.p, w.size), 0);
    const auto on_disk = this->file_bytes(100 * 512, w.size);
    EXPECT_EQ(std::memcmp(on_disk.data(), w.p, w.size), 0);
    // The last block of the file.
    ASSERT_TRUE(this->write_blocks(o, w.p, b->num_blocks() - 1, 1).ok());
    EXPECT_EQ(std::memcmp(this->file_bytes(this->kFileBytes - 512, 512).data(), w.p, 512), 0);
    Done d;
    Status s;
    this->on(this->t0(), [&] { s = flush(*o.desc, *o.ch, 0, b->num_blocks(), &Done::cb, &d); });
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(this->poll_until([&] { return d.calls == 1; }));
    EXPECT_TRUE(d.status.ok()) << errc_name(d.status.code);
}

// Misaligned buffers (and vectored I/O with odd bases) are bounced by the layer for O_DIRECT;
// an iovec list longer than the I/O reads exactly the I/O's length.
TYPED_TEST_P(FileBdevTest, UnalignedAndVectoredBuffers) {
    Bdev* b = this->create_ok({{}, "F0", 4096});
    ASSERT_NE(b, nullptr);
    auto& o = this->open_on(this->t0(), "F0");
    std::vector<uint8_t> w(3 * 4096 + 5), r(3 * 4096 + 5, 0);
    fill_pattern(w.data() + 5, 3 * 4096, 3);
    ASSERT_TRUE(this->write_blocks(o, w.data() + 5, 7, 3).ok());
    ASSERT_TRUE(this->read_blocks(o, r.data() + 5, 7, 3).ok());
    EXPECT_EQ(std::memcmp(w.data() + 5, r.data() + 5, 3 * 4096), 0);
    EXPECT_EQ(std::memcmp(this->file_bytes(7 * 4096, 3 * 4096).data(), w.data() + 5, 3 * 4096), 0);

    // Two aligned iovecs covering 2 blocks plus a third that must not be touched.
    AlignedBuf a(4096), c(4096), extra(4096);
    std::memset(extra.p, 0xEE, 4096);
    iovec iov[3] = {{a.p, 4096}, {c.p, 4096}, {extra.p, 4096}};
    auto st = this->io(o, [&](Desc& d, Channel& ch, IoDoneFn f, void* x) {
        return readv(d, ch, iov, 3, 8, 2, f, x);
    });
    ASSERT_TRUE(st.ok()) << errc_name(st.code);
    EXPECT_EQ(std::memcmp(a.p, w.data() + 5 + 4096, 4096), 0);
    EXPECT_EQ(std::memcmp(c.p, w.data() + 5 + 8192, 4096), 0);
    for (size_t i = 0; i < 4096; ++i) ASSERT_EQ(extra.p[i], 0xEE) << i;
    // Aligned bases, lengths that end mid-block (O_DIRECT would refuse them): bounced too.
    AlignedBuf s1(4096), s2(4096), back(8192);
    fill_pattern(s1.p, 1000, 13);
    fill_pattern(s2.p, 4096, 14);
    iovec odd[2] = {{s1.p, 1000}, {s2.p, 3096}};
    st = this->io(o, [&](Desc& d, Channel& ch, IoDoneFn f, void* x) {
        return writev(d, ch, odd, 2, 30, 1, f, x);
    });
    ASSERT_TRUE(st.ok()) << errc_name(st.code);
    const auto odd_disk = this->file_bytes(30 * 4096, 4096);
    EXPECT_EQ(std::memcmp(odd_disk.data(), s1.p, 1000), 0);
    EXPECT_EQ(std::memcmp(odd_disk.data() + 1000, s2.p, 3096), 0);
    // Sixteen one-block iovecs for an eight-block read: only the first eight are filled.
    std::vector<std::unique_ptr<AlignedBuf>> many;
    std::vector<iovec> many_iov;
    for (int i = 0; i < 16; ++i) {
        many.push_back(std::make_unique<AlignedBuf>(4096));
        std::memset(many.back()->p, 0xCC, 4096);
        many_iov.push_back({many.back()->p, 4096});
    }
    st = this->io(o, [&](Desc& d, Channel& ch, IoDoneFn f, void* x) {
        return readv(d, ch, many_iov.data(), 16, 7, 8, f, x);
    });
    ASSERT_TRUE(st.ok()) << errc_name(st.code);
    EXPECT_EQ(std::memcmp(many[0]->p, w.data() + 5, 4096), 0);
    for (int i = 8; i < 16; ++i) EXPECT_EQ(many[i]->p[0], 0xCC) << i;
    // A buffer longer than the I/O: the write stops at the I/O's end.
    AlignedBuf big(8192);
    fill_pattern(big.p, 8192, 9);
    iovec one{big.p, 8192};
    st = this->io(o, [&](Desc& d, Channel& ch, IoDoneFn f, void* x) {
        return writev(d, ch, &one, 1, 20, 1, f, x);
    });
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(std::memcmp(this->file_bytes(20 * 4096, 4096).data(), big.p, 4096), 0);
    EXPECT_NE(std::memcmp(this->file_bytes(21 * 4096, 4096).data(), big.p + 4096, 4096), 0);
    if (b->properties().required_alignment > 1) {
        EXPECT_GT(this->iostat(*b).bounced, 0u);
    }
}

// Three Threads, each with its own channel (and kernel context), run a verify workload at
// queue depth 16 on disjoint stripes: every read returns the last write of its blocks.
TYPED_TEST_P(FileBdevTest, VerifyFromSeveralThreads) {
    Bdev* b = this->create_ok({{}, "F0", 4096});
    ASSERT_NE(b, nullptr);
    constexpr uint32_t kQd = 16, kRounds = 40;
    struct Worker;
    struct Slot {
        Worker* w = nullptr;
        uint32_t index = 0;
        uint64_t block = 0;
        uint64_t gen = 0;
        bool reading = false;
        uint32_t rounds = 0;
        std::unique_ptr<AlignedBuf> wbuf, rbuf;
    };
    struct Worker {
        typename FileBdevTest<TypeParam>::Opened* o = nullptr;
        uint32_t id = 0;
        Prng rng{1};
        Slot slots[kQd];
        uint32_t active = 0, errors = 0, miscompares = 0, ios = 0;
        uint64_t stripe_blocks = 0;
        void start(Slot& s) {
            // Slot k of worker id owns blocks b with b % (3*kQd) == id*kQd + k: no overlap.
            const uint64_t lanes = s.w->stripe_blocks;
            s.block = (rng.uniform(lanes)) * (3 * kQd) + id * kQd + s.index;
            s.gen = rng.next();
            s.reading = false;
            fill_pattern(s.wbuf->p, 4096, s.gen);
            Status st = write(*o->desc, *o->ch, s.wbuf->p, s.block, 1, &Worker::cb, &s);
            if (!st.ok()) {
                ++errors;
                --active;
            }
        }
        static void cb(void* ctx, const IoStatus& status) {
            auto& s = *static_cast<Slot*>(ctx);
            Worker& w = *s.w;
            ++w.ios;
            if (!status.ok()) {
                ++w.errors;
                --w.active;
                return;
            }
            if (!s.reading) {
                s.reading = true;
                std::memset(s.rbuf->p, 0, 4096);
                if (!read(*w.o->desc, *w.o->ch, s.rbuf->p, s.block, 1, &Worker::cb, &s).ok()) {
                    ++w.errors;
                    --w.active;
                }
                return;
            }
            if (std::memcmp(s.rbuf->p, s.wbuf->p, 4096) != 0) ++w.miscompares;
            if (++s.rounds == kRounds) {
                --w.active;
                return;
            }
            w.start(s);
        }
    };
    std::vector<std::unique_ptr<Worker>> workers;
    for (uint32_t i = 0; i < 3; ++i) {
        auto w = std::make_unique<Worker>();
        w->o = &this->open_on(this->threads[i], "F0");
        w->id = i;
        w->rng.reseed(100 + i);
        w->stripe_blocks = b->num_blocks() / (3 * kQd);
        for (uint32_t k = 0; k < kQd; ++k) {
            w->slots[k].w = w.get();
            w->slots[k].index = k;
            w->slots[k].wbuf = std::make_unique<AlignedBuf>(4096);
            w->slots[k].rbuf = std::make_unique<AlignedBuf>(4096);
        }
        workers.push_back(std::move(w));
    }
    for (auto& w : workers) {
        Worker* wp = w.get();
        this->on(this->threads[wp->id], [wp] {
            wp->active = kQd;
            for (auto& s : wp->slots) wp->start(s);
        });
    }
    ASSERT_TRUE(this->poll_until([&] {
        for (auto& w : workers)
            if (w->active != 0) return false;
        return true;
    }));
    for (auto& w : workers) {
        EXPECT_EQ(w->errors, 0u) << "worker " << w->id;
        EXPECT_EQ(w->miscompares, 0u) << "worker " << w->id;
        EXPECT_EQ(w->ios, kQd * kRounds * 2) << "worker " << w->id;
    }
}

TYPED_TEST_P(FileBdevTest, BadInputIsAClearError) {
    EXPECT_EQ(this->create({"/nonexistent/strata/file", "F0"}).code(), Errc::not_found);
    EXPECT_EQ(this->create({"/tmp", "F0"}).code(), Errc::invalid_argument);  // a directory
    EXPECT_EQ(this->create({"/dev/null", "F0"}).code(), Errc::invalid_argument);  // a char device
    EXPECT_EQ(this->create({{}, ""}).code(), Errc::invalid_argument);
    EXPECT_EQ(this->create({{}, "F0", 1000}).code(), Errc::invalid_argument);
    EXPECT_EQ(this->create({{}, "F0", 128}).code(), Errc::invalid_argument);
    {
        char tmpl[] = "/tmp/strata_file_bdev_empty_XXXXXX";
        const int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        ::close(fd);
        auto r = this->create({tmpl, "F0", 512});
        ::unlink(tmpl);
        EXPECT_EQ(r.code(), Errc::invalid_argument);  // smaller than one block
        if (!r.ok()) {
            EXPECT_NE(r.error().message().find(tmpl), std::string::npos);
        }
    }
    ASSERT_NE(this->create_ok({{}, "F0", 512}), nullptr);
    EXPECT_EQ(this->create({{}, "F0", 512}).code(), Errc::already_exists);
    bool done = false;
    Result<void> del;
    this->on(this->t0(), [&] {
        TypeParam::remove("nope", [&](Result<void> r) {
            del = std::move(r);
            done = true;
        });
    });
    ASSERT_TRUE(this->poll_until([&] { return done; }));
    EXPECT_EQ(del.code(), Errc::not_found);
    Result<void> rs;
    this->on(this->t0(), [&] { rs = TypeParam::rescan("nope"); });
    EXPECT_EQ(rs.code(), Errc::not_found);
}

// A read-only bdev reads, refuses writes with permission_denied, and saves readonly.
TYPED_TEST_P(FileBdevTest, ReadOnly) {
    if (!TypeParam::kReadonly) GTEST_SKIP() << TypeParam::kName << " has no readonly option";
    {
        const int fd = ::open(this->path.c_str(), O_WRONLY);
        std::vector<uint8_t> v(4096);
        fill_pattern(v.data(), v.size(), 5);
        ASSERT_EQ(::pwrite(fd, v.data(), v.size(), 8192), 4096);
        ::close(fd);
    }
    ASSERT_EQ(::chmod(this->path.c_str(), 0444), 0);
    FileBdevParams p{{}, "F0", 4096};
    p.readonly = true;
    Bdev* b = this->create_ok(p);
    ASSERT_NE(b, nullptr);
    auto& o = this->open_on(this->t0(), "F0");
    AlignedBuf r(4096), w(4096);
    ASSERT_TRUE(this->read_blocks(o, r.p, 2, 1).ok());
    std::vector<uint8_t> expect(4096);
    fill_pattern(expect.data(), 4096, 5);
    EXPECT_EQ(std::memcmp(r.p, expect.data(), 4096), 0);
    EXPECT_EQ(this->write_blocks(o, w.p, 2, 1).code, Errc::permission_denied);
    EXPECT_FALSE(b->supports(IoType::write));
    nlohmann::json cfg;
    b->config_json(cfg);
    EXPECT_EQ(cfg["params"]["readonly"], true);
    EXPECT_EQ(cfg["params"]["filename"], this->path);
}

// The file grows; rescan publishes the new size, openers hear of it, the new blocks work.
TYPED_TEST_P(FileBdevTest, RescanAfterGrowingTheFile) {
    Bdev* b = this->create_ok({{}, "F0", 4096});
    ASSERT_NE(b, nullptr);
    auto& o = this->open_on(this->t0(), "F0");
    const uint64_t before = b->num_blocks();
    ASSERT_EQ(::truncate(this->path.c_str(), 2 * this->kFileBytes), 0);
    EXPECT_EQ(b->num_blocks(), before);  // nothing changes until the rescan
    Result<void> rs;
    this->on(this->t0(), [&] { rs = TypeParam::rescan("F0"); });
    ASSERT_TRUE(rs.ok()) << rs.error().message();
    EXPECT_EQ(b->num_blocks(), 2 * before);
    ASSERT_TRUE(this->poll_until([&] { return !o.events.empty(); }));
    EXPECT_EQ(o.events.back(), Event::resize);
    AlignedBuf w(4096), r(4096);
    fill_pattern(w.p, 4096, 11);
    ASSERT_TRUE(this->write_blocks(o, w.p, 2 * before - 1, 1).ok());
    ASSERT_TRUE(this->read_blocks(o, r.p, 2 * before - 1, 1).ok());
    EXPECT_EQ(std::memcmp(w.p, r.p, 4096), 0);
    // A rescan with no change sends no event.
    const size_t events = o.events.size();
    this->on(this->t0(), [&] { rs = TypeParam::rescan("F0"); });
    ASSERT_TRUE(rs.ok());
    this->run_until_idle();
    EXPECT_EQ(o.events.size(), events);
    // Shrunk: the blocks past the new end are out of range; a file under one block is refused.
    ASSERT_EQ(::truncate(this->path.c_str(), this->kFileBytes / 2), 0);
    this->on(this->t0(), [&] { rs = TypeParam::rescan("F0"); });
    ASSERT_TRUE(rs.ok());
    EXPECT_EQ(b->num_blocks(), before / 2);
    Status s;
    Done d;
    this->on(this->t0(), [&] { s = read(*o.desc, *o.ch, r.p, before / 2, 1, &Done::cb, &d); });
    EXPECT_EQ(s.code(), Errc::invalid_argument);
    ASSERT_EQ(::truncate(this->path.c_str(), 100), 0);
    this->on(this->t0(), [&] { rs = TypeParam::rescan("F0"); });
    EXPECT_EQ(rs.code(), Errc::invalid_argument);
    EXPECT_EQ(b->num_blocks(), before / 2);
}

// Far more I/O at once than the kernel queue holds (aio 128, uring 256): the rest waits on the
// channel and goes out as slots free up; every I/O completes once, with the right data.
TYPED_TEST_P(FileBdevTest, MoreIoThanTheKernelQueue) {
    Bdev* b = this->create_ok({{}, "F0", 4096});
    ASSERT_NE(b, nullptr);
    auto& o = this->open_on(this->t0(), "F0");
    constexpr int kIos = 600;
    AlignedBuf w(kIos * 4096), r(kIos * 4096);
    fill_pattern(w.p, w.size, 31);
    std::vector<Done> done(kIos);
    int refused = 0;
    this->on(this->t0(), [&] {
        for (int i = 0; i < kIos; ++i)
            if (!write(*o.desc, *o.ch, w.p + i * 4096, i % b->num_blocks(), 1, &Done::cb, &done[i]).ok())
                ++refused;
    });
    ASSERT_EQ(refused, 0);
    ASSERT_TRUE(this->poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (int i = 0; i < kIos; ++i) ASSERT_TRUE(done[i].calls == 1 && done[i].status.ok()) << i;
    this->on(this->t0(), [&] {
        for (int i = 0; i < kIos; ++i) {
            done[i] = Done{};
            if (!read(*o.desc, *o.ch, r.p + i * 4096, i, 1, &Done::cb, &done[i]).ok()) ++refused;
        }
    });
    ASSERT_EQ(refused, 0);
    ASSERT_TRUE(this->poll_until([&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    }));
    for (int i = 0; i < kIos; ++i) ASSERT_TRUE(done[i].calls == 1 && done[i].status.ok()) << i;
    EXPECT_EQ(std::memcmp(w.p, r.p, w.size), 0);
}

// Delete with 64 I/O in flight: every I/O completes (successfully) exactly once, the opener
// hears Event::remove, closes, and only then does the delete complete.
TYPED_TEST_P(FileBdevTest, DeleteWhileIoInFlightCompletesEverything) {
    ASSERT_NE(this->create_ok({{}, "F0", 4096}), nullptr);
    auto& o = this->open_on(this->t0(), "F0");
    constexpr int kIos = 64;
    std::vector<std::unique_ptr<AlignedBuf>> bufs;
    for (int i = 0; i < kIos; ++i) bufs.push_back(std::make_unique<AlignedBuf>(4096));
    std::vector<Done> done(kIos);
    bool deleted = false;
    Result<void> del;
    int submitted = 0;
    this->on(this->t0(), [&] {
        for (int i = 0; i < kIos; ++i) {
            fill_pattern(bufs[i]->p, 4096, i);
            Status s = (i % 2) ? write(*o.desc, *o.ch, bufs[i]->p, i, 1, &Done::cb, &done[i])
                               : read(*o.desc, *o.ch, bufs[i]->p, 100 + i, 1, &Done::cb, &done[i]);
            if (s.ok()) ++submitted;
        }
        TypeParam::remove("F0", [&](Result<void> r) {
            del = std::move(r);
            deleted = true;
        });
    });
    EXPECT_EQ(submitted, kIos);
    auto all_done = [&] {
        for (auto& d : done)
            if (d.calls == 0) return false;
        return true;
    };
    ASSERT_TRUE(this->poll_until([&] { return all_done() && !o.events.empty(); }));
    EXPECT_FALSE(deleted);  // the desc is still open
    for (int i = 0; i < kIos; ++i) {
        EXPECT_EQ(done[i].calls, 1) << i;
        EXPECT_TRUE(done[i].status.ok()) << i << ": " << errc_name(done[i].status.code);
    }
    EXPECT_EQ(o.events.front(), Event::remove);
    this->on(this->t0(), [&] {
        put_channel(o.ch);
        o.ch = nullptr;
        o.desc.reset();
    });
    ASSERT_TRUE(this->poll_until([&] { return deleted; }));
    EXPECT_TRUE(del.ok());
    EXPECT_EQ(find("F0"), nullptr);
    for (int i = 1; i < kIos; i += 2)
        EXPECT_EQ(std::memcmp(this->file_bytes(i * 4096, 4096).data(), bufs[i]->p, 4096), 0) << i;
}

// save_config's entry recreates the bdev: the method, the file and the given block size.
TYPED_TEST_P(FileBdevTest, ConfigEntryNamesTheFile) {
    Bdev* b = this->create_ok({{}, "F0", 512});
    ASSERT_NE(b, nullptr);
    nlohmann::json cfg;
    b->config_json(cfg);
    EXPECT_EQ(cfg["method"], std::string("bdev_") + TypeParam::kName + "_create");
    EXPECT_EQ(cfg["params"]["name"], "F0");
    EXPECT_EQ(cfg["params"]["filename"], this->path);
    EXPECT_EQ(cfg["params"]["block_size"], 512);
    nlohmann::json info;
    b->info_json(info);
    EXPECT_EQ(info[TypeParam::kName]["filename"], this->path);
}

// Unmap and write zeroes (fallocate where the module has it, the layer's emulation
// otherwise) read back as zeroes and leave the neighbours alone.
TYPED_TEST_P(FileBdevTest, UnmapAndWriteZeroes) {
    FileBdevParams p{{}, "F0", 4096};
    p.fallocate = TypeParam::kFallocate;
    Bdev* b = this->create_ok(p);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->supports(IoType::unmap), TypeParam::kFallocate);
    auto& o = this->open_on(this->t0(), "F0");
    AlignedBuf w(8 * 4096), r(8 * 4096);
    fill_pattern(w.p, w.size, 21);
    ASSERT_TRUE(this->write_blocks(o, w.p, 0, 8).ok());
    auto st = this->io(o, [&](Desc& d, Channel& c, IoDoneFn f, void* x) {
        return write_zeroes(d, c, 1, 2, f, x);
    });
    ASSERT_TRUE(st.ok()) << errc_name(st.code);
    if (TypeParam::kFallocate) {
        st = this->io(o, [&](Desc& d, Channel& c, IoDoneFn f, void* x) { return unmap(d, c, 5, 2, f, x); });
        ASSERT_TRUE(st.ok()) << errc_name(st.code);
    }
    ASSERT_TRUE(this->read_blocks(o, r.p, 0, 8).ok());
    std::vector<uint8_t> zero(2 * 4096, 0);
    EXPECT_EQ(std::memcmp(r.p, w.p, 4096), 0);
    EXPECT_EQ(std::memcmp(r.p + 4096, zero.data(), 2 * 4096), 0);
    EXPECT_EQ(std::memcmp(r.p + 3 * 4096, w.p + 3 * 4096, 2 * 4096), 0);
    if (TypeParam::kFallocate) {
        EXPECT_EQ(std::memcmp(r.p + 5 * 4096, zero.data(), 2 * 4096), 0);
    }
    EXPECT_EQ(std::memcmp(r.p + 7 * 4096, w.p + 7 * 4096, 4096), 0);
}

REGISTER_TYPED_TEST_SUITE_P(FileBdevTest, WriteReadRoundTripReachesTheFile,
                            UnalignedAndVectoredBuffers, VerifyFromSeveralThreads,
                            BadInputIsAClearError, ReadOnly, RescanAfterGrowingTheFile,
                            DeleteWhileIoInFlightCompletesEverything, ConfigEntryNamesTheFile,
                            UnmapAndWriteZeroes, MoreIoThanTheKernelQueue);

}  // namespace strata::bdev::testing
