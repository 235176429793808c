// The socket contract, for every implementation over loopback: posix and uring against the
// kernel (driven from the test's main, real time), sim on a SimNetwork (driven by stepping the
// SimScheduler, virtual time).
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <strata/base/log.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

namespace strata::sock {
namespace {

bool uring_required() {
    const char* v = std::getenv("STRATA_REQUIRE_URING");
    return v != nullptr && v[0] == '1';
}

// Pins the calling thread to one CPU (false when there is no such CPU); unpin() undoes it.
bool pin_to_cpu(int cpu) {
    if (static_cast<int>(std::thread::hardware_concurrency()) <= cpu) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(0, sizeof(set), &set) == 0;
}
void unpin() {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned i = 0; i < std::thread::hardware_concurrency(); ++i) CPU_SET(i, &set);
    (void)::sched_setaffinity(0, sizeof(set), &set);
}

struct Events {
    int count = 0;
    static void fn(void* ctx, Socket&) { static_cast<Events*>(ctx)->count++; }
};

// Records the uring implementation's warning that registered receive buffers are unavailable.
struct FixedFailureWatch {
    std::shared_ptr<std::atomic<int>> seen = std::make_shared<std::atomic<int>>(0);
    FixedFailureWatch() {
        auto n = seen;
        log_set_sink([n](const LogRecord& r) {
            if (r.message.find("registered receive buffers unavailable") != std::string_view::npos)
                ++*n;
            std::fprintf(stderr, "%.*s\n", static_cast<int>(r.message.size()), r.message.data());
        });
    }
    ~FixedFailureWatch() { log_set_sink({}); }
};

// uring_fixed: the uring implementation with enable_registered_recv_buffers, on a Host of its
// own (the option is per Host); a warning that registration failed fails the test, so the
// parameter does not pass vacuously on plain receives.
class SockTest : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        impl_ = GetParam();
        if (impl_ == "uring_fixed") {
            impl_ = "uring";
            watch_ = std::make_unique<FixedFailureWatch>();
            host_ = std::make_unique<runtime::Host>("sock_test_fixed", 9);
            scope_ = std::make_unique<runtime::HostScope>(*host_);
            ImplOptions o = *get_impl_options("uring");
            o.enable_registered_recv_buffers = true;
            ASSERT_TRUE(set_impl_options("uring", o).ok());
        }
        if (impl_ == "uring") {
            bool have = false;
            for (auto& n : impl_names()) have |= n == "uring";
            if (!have)  // built without liburing: no implementation to require
                GTEST_SKIP() << "no uring socket implementation in this build";
            std::string why;
            {
                // Probe: a listener needs a working ring.
                SocketOptions o;
                o.impl = "uring";
                auto l = listen({"127.0.0.1", 0}, o);
                if (!l && l.code() == Errc::not_supported) why = l.error().message();
            }
            if (!why.empty()) {
                if (uring_required()) FAIL() << "STRATA_REQUIRE_URING=1 but " << why;
                GTEST_SKIP() << why;
            }
        }
        if (impl_ == "sim") {
            sim_ = std::make_unique<runtime::SimScheduler>(7);
            host_ = std::make_unique<runtime::Host>("sock_test", 7);
            scope_ = std::make_unique<runtime::HostScope>(*host_);
            net_ = std::make_unique<SimNetwork>(*sim_, 11);
            ASSERT_TRUE(net_->attach(*host_, "10.0.0.1").ok());
        }
        group_ = SocketGroup::create();
    }
    void TearDown() override {
        group_.reset();
        net_.reset();
        scope_.reset();
        host_.reset();
        sim_.reset();
        if (watch_) EXPECT_EQ(*watch_->seen, 0) << "registered receive buffers were not used";
        watch_.reset();
    }

    SocketOptions opts() const {
        SocketOptions o;
        o.impl = impl_;
        return o;
    }
    std::string loopback() const { return "127.0.0.1"; }

    // Polls the group (and steps the simulator) until pred() holds.
    bool pump(const std::function<bool()>& pred, double seconds = 10) {
        auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int>(seconds * 1000));
        const uint64_t vdeadline = sim_ ? sim_->now_ns() + uint64_t(seconds * 1e9) : 0;
        while (!pred()) {
            group_->poll();
            if (sim_) {
                if (sim_->step() == runtime::SimScheduler::StepResult::idle) {
                    group_->poll();
                    if (pred()) return true;
                    return false;
                }
                if (sim_->now_ns() > vdeadline) return false;
            } else if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
        }
        return true;
    }

    std::unique_ptr<Listener> make_listener() {
        auto l = listen({loopback(), 0}, opts());
        EXPECT_TRUE(l.ok()) << (l ? "" : l.error().message());
        return l ? std::move(*l) : nullptr;
    }

    // A connected pair: client (connect) and server (accept).
    bool make_pair(Listener& l, std::unique_ptr<Socket>& client, std::unique_ptr<Socket>& server) {
        auto c = connect({loopback(), l.local().port}, opts());
        if (!c) {
            ADD_FAILURE() << c.error().message();
            return false;
        }
        client = std::move(*c);
        bool ok = pump([&] {
            if (!server) {
                auto a = l.accept();
                if (a) server = std::move(*a);
            }
            return server != nullptr && client->connected();
        });
        EXPECT_TRUE(ok) << "no connection";
        return ok;
    }

    // A listener and a connected pair whose server side is in the group, counting its events.
    bool make_pair_in_group(std::unique_ptr<Listener>& l, std::unique_ptr<Socket>& client,
                            std::unique_ptr<Socket>& server, Events& ev) {
        l = make_listener();
        if (!l || !make_pair(*l, client, server)) return false;
        Status st = group_->add(*server, &Events::fn, &ev);
        EXPECT_TRUE(st.ok()) << st.to_string();
        return st.ok();
    }

    // Writes everything (retrying partial writes), while the peer reads into `out`.
    void transfer(Socket& from, Socket& to, const std::vector<uint8_t>& data,
                  std::vector<uint8_t>& out) {
        size_t sent = 0;
        std::vector<uint8_t> buf(64 * 1024);
        size_t partial = 0;
        ASSERT_TRUE(pump(
            [&] {
                while (sent < data.size()) {
                    auto w = from.write(data.data() + sent, data.size() - sent);
                    if (!w) {
                        EXPECT_EQ(w.code(), Errc::busy) << w.error().message();
                        break;
                    }
                    if (*w < data.size() - sent) ++partial;
                    sent += *w;
                }
                for (;;) {
                    auto r = to.read(buf.data(), buf.size());
                    if (!r) {
                        EXPECT_EQ(r.code(), Errc::busy) << r.error().message();
                        break;
                    }
                    out.insert(out.end(), buf.begin(), buf.begin() + *r);
                }
                return out.size() == data.size();
            },
            60));
        EXPECT_GT(partial, 0u) << "expected at least one partial write";
    }

    std::string impl_;
    std::unique_ptr<runtime::SimScheduler> sim_;
    std::unique_ptr<runtime::Host> host_;
    std::unique_ptr<runtime::HostScope> scope_;
    std::unique_ptr<SimNetwork> net_;
    std::unique_ptr<SocketGroup> group_;
    std::unique_ptr<FixedFailureWatch> watch_;
};

TEST_P(SockTest, ListenPortZeroReportsBoundPort) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    EXPECT_NE(l->local().port, 0);
    EXPECT_STREQ(l->impl_name(), impl_.c_str());
    // The same port again is in use.
    auto again = listen({loopback(), l->local().port}, opts());
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.code(), Errc::already_exists);
}

TEST_P(SockTest, EchoOverLoopback) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    std::unique_ptr<Socket> c, s;
    ASSERT_TRUE(make_pair(*l, c, s));
    EXPECT_EQ(c->peer().port, l->local().port);
    EXPECT_EQ(s->peer().port, c->local().port);
    EXPECT_STREQ(c->impl_name(), impl_.c_str());
    Events ev_s, ev_c;
    ASSERT_TRUE(group_->add(*s, &Events::fn, &ev_s).ok());
    ASSERT_TRUE(group_->add(*c, &Events::fn, &ev_c).ok());
    const char msg[] = "hello, strata";
    ASSERT_TRUE(c->write(msg, sizeof(msg)).ok());
    ASSERT_TRUE(pump([&] { return ev_s.count > 0; }));
    char buf[64] = {};
    size_t got = 0;
    ASSERT_TRUE(pump([&] {
        auto r = s->read(buf + got, sizeof(buf) - got);
        if (r) got += *r;
        return got == sizeof(msg);
    }));
    EXPECT_STREQ(buf, msg);
    // Echo back, as two iovecs.
    iovec iov[2] = {{buf, 5}, {buf + 5, sizeof(msg) - 5}};
    auto w = s->writev(iov, 2);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(*w, sizeof(msg));
    ASSERT_TRUE(pump([&] { return ev_c.count > 0; }));
    char back[64] = {};
    got = 0;
    ASSERT_TRUE(pump([&] {
        auto r = c->read(back + got, sizeof(back) - got);
        if (r) got += *r;
        return got == sizeof(msg);
    }));
    EXPECT_STREQ(back, msg);
    // Nothing more to read: busy.
    EXPECT_EQ(c->read(back, sizeof(back)).code(), Errc::busy);
    group_->remove(*s);
    group_->remove(*c);
}

TEST_P(SockTest, LargeTransferWithPartialWrites) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    std::unique_ptr<Socket> c, s;
    ASSERT_TRUE(make_pair(*l, c, s));
    std::vector<uint8_t> data(32 * 1024 * 1024);
    uint64_t x = 12345;
    for (auto& b : data) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        b = static_cast<uint8_t>(x >> 56);
    }
    std::vector<uint8_t> out;
    out.reserve(data.size());
    // Both in the group: uring sends and receives through its ring.
    auto noop = [](void*, Socket&) {};
    ASSERT_TRUE(group_->add(*c, noop, nullptr).ok());
    ASSERT_TRUE(group_->add(*s, noop, nullptr).ok());
    transfer(*c, *s, data, out);
    group_->remove(*c);
    group_->remove(*s);
    ASSERT_EQ(out.size(), data.size());
    EXPECT_TRUE(out == data);
}

TEST_P(SockTest, EndOfStream) {
    std::unique_ptr<Listener> l;
    std::unique_ptr<Socket> c, s;
    Events ev;
    ASSERT_TRUE(make_pair_in_group(l, c, s, ev));
    ASSERT_TRUE(c->write("abc", 3).ok());
    c->close();
    c->close();  // idempotent
    EXPECT_FALSE(c->connected());
    std::string got;
    Errc last = Errc::ok;
    ASSERT_TRUE(pump([&] {
        char buf[16];
        auto r = s->read(buf, sizeof(buf));
        if (r) got.append(buf, *r);
        last = r.code();
        return last == Errc::shutdown;
    }));
    EXPECT_EQ(got, "abc");
    EXPECT_GT(ev.count, 0);
    group_->remove(*s);
}

// A callback that reads once per report and gets fewer bytes than it asked for stops there: the
// group must report the socket again for the end of stream behind those bytes (level semantics,
// which the NVMe-oF target relies on to skip the read that would return EAGAIN).
TEST_P(SockTest, EndOfStreamReportedAgainAfterAShortRead) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    std::unique_ptr<Socket> c, s;
    ASSERT_TRUE(make_pair(*l, c, s));
    struct OneReadPerReport {
        std::string got;
        bool eof = false;
        static void fn(void* ctx, Socket& sock) {
            auto* self = static_cast<OneReadPerReport*>(ctx);
            char buf[16];
            auto r = sock.read(buf, sizeof(buf));
            if (r)
                self->got.append(buf, *r);
            else if (r.code() == Errc::shutdown)
                self->eof = true;
        }
    } reader;
    ASSERT_TRUE(c->write("abc", 3).ok());
    c->close();
    // Let the bytes and the end of stream both arrive before the socket joins the group.
    if (sim_) {
        while (sim_->step() != runtime::SimScheduler::StepResult::idle) {
        }
    } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(group_->add(*s, &OneReadPerReport::fn, &reader).ok());
    EXPECT_TRUE(pump([&] { return reader.eof; }));
    EXPECT_EQ(reader.got, "abc");
    group_->remove(*s);
}

// close() in a group right after writev: every byte writev accepted still arrives, then end of
// stream (uring: the group finishes sending from the closed socket's ring).
TEST_P(SockTest, CloseSendsWhatWasAccepted) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    std::unique_ptr<Socket> c, s;
    ASSERT_TRUE(make_pair(*l, c, s));
    auto noop = [](void*, Socket&) {};
    ASSERT_TRUE(group_->add(*c, noop, nullptr).ok());
    ASSERT_TRUE(group_->add(*s, noop, nullptr).ok());
    std::vector<uint8_t> data(3 * 1024 * 1024);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + (i >> 12));
    size_t accepted = 0;
    for (;;) {
        auto w = c->write(data.data() + accepted, data.size() - accepted);
        if (!w) break;
        accepted += *w;
        if (accepted == data.size()) break;
    }
    ASSERT_GT(accepted, 0u);
    c->close();
    group_->remove(*c);
    std::vector<uint8_t> got;
    std::vector<uint8_t> buf(65536);
    Errc last = Errc::ok;
    ASSERT_TRUE(pump(
        [&] {
            for (;;) {
                auto r = s->read(buf.data(), buf.size());
                last = r.code();
                if (!r) break;
                got.insert(got.end(), buf.begin(), buf.begin() + *r);
            }
            return last == Errc::shutdown || last == Errc::io_error;
        },
        30));
    EXPECT_EQ(last, Errc::shutdown);
    ASSERT_EQ(got.size(), accepted);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), data.begin()));
    group_->remove(*s);
}

TEST_P(SockTest, AbortGivesPeerReset) {
    std::unique_ptr<Listener> l;
    std::unique_ptr<Socket> c, s;
    Events ev;
    ASSERT_TRUE(make_pair_in_group(l, c, s, ev));
    c->abort();
    Result<size_t> r = Status(Errc::busy);
    ASSERT_TRUE(pump([&] {
        char buf[16];
        r = s->read(buf, sizeof(buf));
        return r.code() != Errc::busy;
    }));
    EXPECT_EQ(r.code(), Errc::io_error);
    EXPECT_NE(r.error().message().find("connection reset"), std::string::npos)
        << r.error().message();
    EXPECT_FALSE(s->connected());
    group_->remove(*s);
}

TEST_P(SockTest, ConnectRefused) {
    uint16_t port;
    {
        auto l = make_listener();
        ASSERT_TRUE(l);
        port = l->local().port;
    }
    auto c = connect({loopback(), port}, opts());
    ASSERT_TRUE(c.ok()) << c.error().message();
    Events ev;
    ASSERT_TRUE(group_->add(**c, &Events::fn, &ev).ok());
    ASSERT_TRUE(pump([&] { return ev.count > 0; }));
    char b;
    auto r = (*c)->read(&b, 1);
    EXPECT_EQ(r.code(), Errc::io_error);
    if (!r) {
        EXPECT_NE(r.error().message().find("connection refused"), std::string::npos);
    }
    EXPECT_FALSE((*c)->connected());
    group_->remove(**c);
}

TEST_P(SockTest, ManySocketsInOneGroup) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    constexpr int kN = 48;
    std::vector<std::unique_ptr<Socket>> cs(kN), ss(kN);
    for (int i = 0; i < kN; ++i) ASSERT_TRUE(make_pair(*l, cs[i], ss[i]));
    struct Ctx {
        Socket* s;
        std::string got;
    };
    std::vector<Ctx> ctx(kN);
    auto fn = [](void* p, Socket& s) {
        auto* c = static_cast<Ctx*>(p);
        char buf[64];
        for (;;) {
            auto r = s.read(buf, sizeof(buf));
            if (!r) break;
            c->got.append(buf, *r);
        }
    };
    for (int i = 0; i < kN; ++i) {
        ctx[i].s = ss[i].get();
        ASSERT_TRUE(group_->add(*ss[i], fn, &ctx[i]).ok());
    }
    // A socket in a group cannot join a second time.
    EXPECT_FALSE(group_->add(*ss[0], fn, &ctx[0]).ok());
    for (int i = 0; i < kN; ++i) {
        std::string m = "message " + std::to_string(i);
        ASSERT_TRUE(cs[i]->write(m.data(), m.size()).ok());
    }
    ASSERT_TRUE(pump([&] {
        for (int i = 0; i < kN; ++i)
            if (ctx[i].got != "message " + std::to_string(i)) return false;
        return true;
    }));
    // Callbacks that remove other sockets of the same batch are safe.
    for (int i = 0; i < kN; ++i) group_->remove(*ss[i]);
}

// Bytes another OS thread sends while the polling thread makes no system call are reported by
// the very next poll. uring: the receive's completion waits for task work on the polling thread
// (COOP_TASKRUN, no interrupt into a busy-polling thread); the group's poll must run it
// (IORING_SQ_TASKRUN -> io_uring_get_events) rather than leave it to the next timer tick
// (4 ms at HZ=250). Statistical: without that, a trial passes only when a tick happens to land
// in its ~50 us window.
TEST_P(SockTest, BytesFromAnotherThreadReportedByTheNextPoll) {
    if (sim_) GTEST_SKIP() << "the simulator runs on one OS thread";
    std::unique_ptr<Listener> l;
    std::unique_ptr<Socket> c, s;
    Events ev;
    ASSERT_TRUE(make_pair_in_group(l, c, s, ev));
    group_->poll();  // uring: posts the receive
    constexpr int kTrials = 20;
    std::atomic<int> go{0}, done{0};
    // The writer on another CPU than this thread, so that running it does not preempt this one
    // (a context switch would run the task work too).
    const bool pinned = pin_to_cpu(0);
    std::thread writer([&] {
        if (pinned) (void)pin_to_cpu(1);
        for (int t = 1; t <= kTrials; ++t) {
            while (go.load() != t) std::this_thread::yield();
            char b = static_cast<char>('a' + t);
            EXPECT_TRUE(c->write(&b, 1).ok());
            done.store(t);
        }
    });
    int hits = 0;
    std::string got;
    for (int t = 1; t <= kTrials; ++t) {
        go.store(t);
        while (done.load() != t) {
        }  // spin: no system call on this thread
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
        while (std::chrono::steady_clock::now() < until) {
        }
        const int before = ev.count;
        group_->poll();
        if (ev.count > before) ++hits;
        ASSERT_TRUE(pump([&] {
            char b;
            auto r = s->read(&b, 1);
            if (r) got.push_back(b);
            return got.size() == static_cast<size_t>(t);
        }));
        group_->poll();  // uring: posts the next receive before the next trial's bytes
    }
    writer.join();
    if (pinned) unpin();
    EXPECT_GE(hits, kTrials / 2) << "polls that saw bytes already sent";
    EXPECT_EQ(got.size(), static_cast<size_t>(kTrials));
    group_->remove(*s);
}

TEST_P(SockTest, BadAddressErrors) {
    auto l = listen({"not an address!", 0}, opts());
    ASSERT_FALSE(l.ok());
    EXPECT_EQ(l.code(), Errc::invalid_argument);
    auto e = listen({"", 0}, opts());
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    auto c = connect({"", 4420}, opts());
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::invalid_argument);
    SocketOptions bad;
    bad.impl = "carrier-pigeon";
    EXPECT_EQ(connect({"127.0.0.1", 1}, bad).code(), Errc::not_supported);
}

// Sockets closed and aborted while their receives are in flight (uring_fixed: fixed reads into
// registered slots), then more sockets than a ring has slots (1024), round after round: a slot
// is released once its state has nothing in flight, and reused.
TEST_P(SockTest, SocketsClosedWithReceivesInFlightThenMore) {
    auto l = make_listener();
    ASSERT_TRUE(l);
    auto noop = [](void*, Socket&) {};
    constexpr int kRounds = 24, kPairs = 48;  // 1152 server sockets over the rounds
    for (int round = 0; round < kRounds; ++round) {
        std::vector<std::unique_ptr<Socket>> cs(kPairs), ss(kPairs);
        for (int i = 0; i < kPairs; ++i) {
            ASSERT_TRUE(make_pair(*l, cs[i], ss[i]));
            ASSERT_TRUE(group_->add(*ss[i], noop, nullptr).ok());
        }
        for (int i = 0; i < 3; ++i) group_->poll();  // receives posted, nothing to receive yet
        // Bytes for half of them, then every server socket goes: closed, aborted, destroyed.
        for (int i = 0; i < kPairs; i += 2) ASSERT_TRUE(cs[i]->write("x", 1).ok());
        for (int i = 0; i < kPairs; ++i) {
            if (i % 3 == 0) ss[i]->close();
            if (i % 3 == 1) ss[i]->abort();
            ss[i].reset();
        }
        // The group finishes them (cancels, completions, frees); the peers see the ends.
        ASSERT_TRUE(pump([&] {
            for (auto& c : cs) {
                if (!c) continue;
                char b[8];
                auto r = c->read(b, sizeof(b));
                if (!r && r.code() != Errc::busy) c.reset();
            }
            for (auto& c : cs)
                if (c) return false;
            return true;
        })) << "round "
            << round;
    }
    // After all that, a socket still receives.
    std::unique_ptr<Socket> c, s;
    ASSERT_TRUE(make_pair(*l, c, s));
    Events ev;
    ASSERT_TRUE(group_->add(*s, &Events::fn, &ev).ok());
    ASSERT_TRUE(c->write("last", 4).ok());
    char buf[8] = {};
    size_t got = 0;
    ASSERT_TRUE(pump([&] {
        auto r = s->read(buf + got, sizeof(buf) - got);
        if (r) got += *r;
        return got == 4;
    }));
    EXPECT_EQ(std::string(buf, 4), "last");
    group_->remove(*s);
}

INSTANTIATE_TEST_SUITE_P(Impl, SockTest, ::testing::Values("posix", "uring", "uring_fixed", "sim"),
                         [](const auto& info) { return info.param; });

// Registration of the receive buffers fails (no CAP_IPC_LOCK, RLIMIT_MEMLOCK 256 KiB, in a child
// process): the group says so once and the socket receives with plain receives.
int fixed_fallback_child() {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (::syscall(SYS_capget, &h, d) != 0) return 10;
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (::syscall(SYS_capset, &h, d) != 0) return 11;
    // Room for the rings (accounted too), not for a 1 MiB receive ring.
    rlimit rl{256 * 1024, 256 * 1024};
    if (::setrlimit(RLIMIT_MEMLOCK, &rl) != 0) return 12;
    FixedFailureWatch watch;
    runtime::Host host("fallback", 3);
    runtime::HostScope scope(host);
    ImplOptions o = *get_impl_options("uring");
    o.enable_registered_recv_buffers = true;
    if (!set_impl_options("uring", o).ok()) return 13;
    SocketOptions so;
    so.impl = "uring";
    auto l = listen({"127.0.0.1", 0}, so);
    if (!l) return 14;
    auto c = connect({"127.0.0.1", (*l)->local().port}, so);
    if (!c) return 15;
    auto group = SocketGroup::create();
    std::unique_ptr<Socket> s;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!s || !(*c)->connected()) {
        if (std::chrono::steady_clock::now() > deadline) return 16;
        if (!s) {
            auto a = (*l)->accept();
            if (a) s = std::move(*a);
        }
    }
    Events ev;
    if (!group->add(*s, &Events::fn, &ev).ok()) return 17;
    std::string msg(100000, 'q');
    size_t sent = 0;
    std::string got;
    char buf[65536];
    while (got.size() < msg.size()) {
        if (std::chrono::steady_clock::now() > deadline) return 18;
        if (sent < msg.size()) {
            auto w = (*c)->write(msg.data() + sent, msg.size() - sent);
            if (w) sent += *w;
        }
        group->poll();
        auto r = s->read(buf, sizeof(buf));
        if (r) got.append(buf, *r);
    }
    if (got != msg) return 19;
    group->remove(*s);
    s.reset();
    group.reset();
    return *watch.seen == 1 ? 0 : 20;  // warned, once
}

TEST(SockTestUring, RegisteredBufferFailureFallsBackToPlainReceives) {
    bool have = false;
    for (auto& n : impl_names()) have |= n == "uring";
    if (!have) GTEST_SKIP() << "no uring socket implementation in this build";
    {
        SocketOptions o;
        o.impl = "uring";
        auto l = listen({"127.0.0.1", 0}, o);
        if (!l && !uring_required()) GTEST_SKIP() << l.error().message();
    }
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) ::_exit(fixed_fallback_child());
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child failed at step " << WEXITSTATUS(status);
}

TEST(SockTestPosix, Ipv6Loopback) {
    SocketOptions o;
    o.impl = "posix";
    auto l = listen({"::1", 0}, o);
    if (!l) GTEST_SKIP() << "no IPv6 loopback: " << l.error().message();
    auto c = connect({"::1", (*l)->local().port}, o);
    ASSERT_TRUE(c.ok());
    std::unique_ptr<Socket> s;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!s && std::chrono::steady_clock::now() < deadline) {
        auto a = (*l)->accept();
        if (a) s = std::move(*a);
    }
    ASSERT_TRUE(s);
    EXPECT_EQ(to_string((*l)->local()), "[::1]:" + std::to_string((*l)->local().port));
}

TEST(SockTestApi, DefaultsAndOptions) {
    runtime::Host host("opts", 1);
    runtime::HostScope scope(host);
    EXPECT_EQ(default_impl(), "posix");  // not on a simulated Thread
    auto o = get_impl_options("posix");
    ASSERT_TRUE(o.ok());
    EXPECT_EQ(o->recv_buf_size, 2u * 1024 * 1024);
    ImplOptions n = *o;
    n.recv_buf_size = 4096;
    n.enable_zerocopy_send_client = true;
    ASSERT_TRUE(set_impl_options("posix", n).ok());
    EXPECT_EQ(get_impl_options("posix")->recv_buf_size, 4096u);
    EXPECT_EQ(get_impl_options("nope").code(), Errc::not_found);
    ASSERT_TRUE(set_default_impl("sim").ok());
    EXPECT_EQ(default_impl(), "sim");
    EXPECT_FALSE(set_default_impl("nope").ok());
    {
        // Another Host keeps its own.
        runtime::Host other("other", 2);
        runtime::HostScope s2(other);
        EXPECT_EQ(default_impl(), "posix");
        EXPECT_EQ(get_impl_options("posix")->recv_buf_size, 2u * 1024 * 1024);
    }
    EXPECT_EQ(to_string(Endpoint{"127.0.0.1", 4420}), "127.0.0.1:4420");
}

}  // namespace
}  // namespace strata::sock
