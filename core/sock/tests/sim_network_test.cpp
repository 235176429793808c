// The simulated network: determinism, link parameters in virtual time, each fault, several
// Hosts on one network, independent networks, the private network of an unattached Host.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/random.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>
#include <strata/sock/sim.h>
#include <strata/sock/sock.h>

namespace strata::sock {
namespace {

constexpr uint64_t kMs = 1'000'000;

template <class T>
T take(Result<T> r) {
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    return std::move(r).value();
}

struct Recorder {
    runtime::SimScheduler* sim = nullptr;
    int events = 0;
    uint64_t first_ns = 0;
    static void fn(void* ctx, Socket&) {
        auto* r = static_cast<Recorder*>(ctx);
        if (r->events++ == 0) r->first_ns = r->sim->now_ns();
    }
};

class SimNetTest : public ::testing::Test {
protected:
    void start(uint64_t sched_seed = 3, uint64_t net_seed = 5) {
        sim = std::make_unique<runtime::SimScheduler>(sched_seed);
        a = std::make_unique<runtime::Host>("a", 1);
        b = std::make_unique<runtime::Host>("b", 2);
        net = std::make_unique<SimNetwork>(*sim, net_seed);
        ASSERT_TRUE(net->attach(*a, "10.0.0.1").ok());
        ASSERT_TRUE(net->attach(*b, "10.0.0.2").ok());
        group = SocketGroup::create();
    }
    void TearDown() override {
        server.reset();
        client.reset();
        listener.reset();
        group.reset();
        net.reset();
        a.reset();
        b.reset();
        sim.reset();
    }

    bool run(const std::function<bool()>& pred, uint64_t timeout_ns = 10'000 * kMs) {
        const uint64_t deadline = sim->now_ns() + timeout_ns;
        for (;;) {
            group->poll();  // callbacks first: they see arrivals before pred() reads them
            if (pred()) return true;
            if (sim->step() == runtime::SimScheduler::StepResult::idle ||
                sim->now_ns() > deadline) {
                group->poll();
                return pred();
            }
        }
    }

    // a listens on 4420; b connects to it.
    void connect_pair() {
        {
            runtime::HostScope s(*a);
            auto l = listen({"10.0.0.1", 4420}, {"sim"});
            ASSERT_TRUE(l.ok()) << l.error().message();
            listener = std::move(*l);
        }
        {
            runtime::HostScope s(*b);
            auto c = connect({"10.0.0.1", 4420}, {"sim"});
            ASSERT_TRUE(c.ok()) << c.error().message();
            client = std::move(*c);
        }
        ASSERT_TRUE(run([&] {
            if (!server) {
                auto s = listener->accept();
                if (s) server = std::move(*s);
            }
            return server && client->connected();
        }));
        EXPECT_EQ(client->local().address, "10.0.0.2");
        EXPECT_EQ(server->peer().address, "10.0.0.2");
        EXPECT_EQ(server->local().address, "10.0.0.1");
    }

    static std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
        std::vector<uint8_t> v(n);
        Prng p(seed);
        for (auto& x : v) x = static_cast<uint8_t>(p.next());
        return v;
    }

    // Writes everything from `from` while reading at `to`; returns what arrived.
    std::vector<uint8_t> send_all(Socket& from, Socket& to, const std::vector<uint8_t>& data,
                                  uint64_t timeout_ns = 10'000 * kMs) {
        std::vector<uint8_t> out;
        size_t sent = 0;
        uint8_t buf[4096];
        run(
            [&] {
                while (sent < data.size()) {
                    auto w = from.write(data.data() + sent, data.size() - sent);
                    if (!w) break;
                    sent += *w;
                }
                for (;;) {
                    auto r = to.read(buf, sizeof(buf));
                    if (!r) break;
                    out.insert(out.end(), buf, buf + *r);
                }
                return out.size() >= data.size();
            },
            timeout_ns);
        return out;
    }

    // Reads what is there now.
    static std::vector<uint8_t> drain(Socket& s) {
        std::vector<uint8_t> out;
        uint8_t buf[4096];
        for (;;) {
            auto r = s.read(buf, sizeof(buf));
            if (!r) break;
            out.insert(out.end(), buf, buf + *r);
        }
        return out;
    }

    std::unique_ptr<runtime::SimScheduler> sim;
    std::unique_ptr<runtime::Host> a, b;
    std::unique_ptr<SimNetwork> net;
    std::unique_ptr<SocketGroup> group;
    std::unique_ptr<Listener> listener;
    std::unique_ptr<Socket> client, server;
};

TEST_F(SimNetTest, TwoHostsTalkBothWays) {
    start();
    connect_pair();
    auto d1 = pattern(300'000, 1), d2 = pattern(200'000, 2);
    EXPECT_EQ(send_all(*client, *server, d1), d1);
    EXPECT_EQ(send_all(*server, *client, d2), d2);
    auto conns = net->connections();
    ASSERT_EQ(conns.size(), 1u);
    EXPECT_EQ(conns[0].client.address, "10.0.0.2");
    EXPECT_EQ(conns[0].server, (Endpoint{"10.0.0.1", 4420}));
    EXPECT_EQ(conns[0].bytes_to_server, d1.size());
    EXPECT_EQ(conns[0].bytes_to_client, d2.size());
    EXPECT_EQ(conns[0].state, "established");
    EXPECT_GT(net->stats().segments, 2u);
    // The network's deliveries are in the scheduler's event trace.
    EXPECT_GT(sim->event_count(runtime::TraceKind::user), net->stats().segments);
    client->close();
    EXPECT_TRUE(run([&] {
        char x;
        return server->read(&x, 1).code() == Errc::shutdown;
    }));
    server->close();
    EXPECT_TRUE(run([&] { return net->connections().empty(); }));
}

TEST_F(SimNetTest, HostReachesItselfByLoopbackAndOwnAddress) {
    start();
    runtime::HostScope s(*a);
    auto l = listen({"0.0.0.0", 0}, {"sim"});
    ASSERT_TRUE(l.ok());
    for (std::string addr : {"127.0.0.1", "localhost", "10.0.0.1"}) {
        auto c = connect({addr, (*l)->local().port}, {"sim"});
        ASSERT_TRUE(c.ok()) << addr;
        std::unique_ptr<Socket> srv;
        ASSERT_TRUE(run([&] {
            if (!srv) {
                auto x = (*l)->accept();
                if (x) srv = std::move(*x);
            }
            return srv && (*c)->connected();
        })) << addr;
        auto d = pattern(1000, 9);
        EXPECT_EQ(send_all(**c, *srv, d), d);
    }
    // Another Host's address is not this Host's to listen on.
    EXPECT_EQ(listen({"10.0.0.2", 1}, {"sim"}).code(), Errc::invalid_argument);
}

// One workload: 4 connections, bytes both ways in seeded sizes. Returns the delivery hash and
// also fills the scheduler's trace hash.
struct RunResult {
    uint64_t delivery_hash;
    uint64_t trace_hash;
    uint64_t segments;
    uint64_t end_ns;
};

RunResult workload(uint64_t sched_seed, uint64_t net_seed) {
    runtime::SimScheduler sim(sched_seed);
    runtime::Host a("a", 1), b("b", 2);
    SimNetwork net(sim, net_seed);
    EXPECT_TRUE(net.attach(a, "10.0.0.1").ok());
    EXPECT_TRUE(net.attach(b, "10.0.0.2").ok());
    std::unique_ptr<Listener> l;
    {
        runtime::HostScope s(a);
        l = take(listen({"10.0.0.1", 4420}, {"sim"}));
    }
    std::vector<std::unique_ptr<Socket>> cs, ss;
    {
        runtime::HostScope s(b);
        for (int i = 0; i < 4; ++i) cs.push_back(take(connect({"10.0.0.1", 4420}, {"sim"})));
    }
    while (ss.size() < 4 && sim.step() != runtime::SimScheduler::StepResult::idle) {
        auto x = l->accept();
        if (x) ss.push_back(std::move(*x));
    }
    EXPECT_EQ(ss.size(), 4u);
    Prng p(77);
    std::vector<uint8_t> buf(100'000, 0x5a);
    uint64_t received = 0, sent = 0;
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 4; ++i) {
            auto w = cs[i]->write(buf.data(), 1 + p.uniform(20'000));
            if (w) sent += *w;
            auto w2 = ss[i]->write(buf.data(), 1 + p.uniform(5'000));
            if (w2) sent += *w2;
        }
        for (int k = 0; k < 20; ++k) (void)sim.step();
        for (int i = 0; i < 4; ++i) {
            for (Socket* s : {cs[i].get(), ss[i].get()}) {
                for (;;) {
                    auto r = s->read(buf.data(), buf.size());
                    if (!r) break;
                    received += *r;
                }
            }
        }
    }
    while (received < sent && sim.step() != runtime::SimScheduler::StepResult::idle) {
        for (int i = 0; i < 4; ++i)
            for (Socket* s : {cs[i].get(), ss[i].get()})
                for (;;) {
                    auto r = s->read(buf.data(), buf.size());
                    if (!r) break;
                    received += *r;
                }
    }
    EXPECT_EQ(received, sent);
    RunResult out{net.delivery_hash(), sim.trace_hash(), net.stats().segments, sim.now_ns()};
    cs.clear();
    ss.clear();
    l.reset();
    return out;
}

TEST(SimNetDeterminism, SameSeedSameDeliveriesOtherSeedDiffers) {
    RunResult r1 = workload(3, 5);
    RunResult r2 = workload(3, 5);
    EXPECT_EQ(r1.delivery_hash, r2.delivery_hash);
    EXPECT_EQ(r1.trace_hash, r2.trace_hash);
    EXPECT_EQ(r1.segments, r2.segments);
    EXPECT_EQ(r1.end_ns, r2.end_ns);
    RunResult r3 = workload(3, 6);  // another network seed: other segment boundaries
    EXPECT_NE(r1.delivery_hash, r3.delivery_hash);
    EXPECT_NE(r1.trace_hash, r3.trace_hash);
}

TEST_F(SimNetTest, LatencyAndBandwidthInVirtualTime) {
    start();
    LinkParams lp;
    lp.latency_ns = 3 * kMs;
    lp.bytes_per_sec = 10'000'000;  // 10 MB/s
    lp.max_segment_bytes = 1500;
    net->set_link("10.0.0.2", "10.0.0.1", lp);
    EXPECT_EQ(net->link("10.0.0.1", "10.0.0.2"), lp);
    connect_pair();
    Recorder rec{sim.get()};
    ASSERT_TRUE(group->add(*server, &Recorder::fn, &rec).ok());
    const uint64_t t0 = sim->now_ns();
    auto d = pattern(1'000'000, 4);  // 100 ms at 10 MB/s
    auto got = send_all(*client, *server, d);
    EXPECT_EQ(got, d);
    const uint64_t took = sim->now_ns() - t0;
    EXPECT_GE(rec.first_ns - t0, 3 * kMs);
    EXPECT_LT(rec.first_ns - t0, 4 * kMs);
    EXPECT_GE(took, 100 * kMs + 3 * kMs);
    EXPECT_LT(took, 110 * kMs);
    group->remove(*server);
}

TEST_F(SimNetTest, PartitionThenHealDeliversEverythingOnceInOrder) {
    start();
    connect_pair();
    net->partition("10.0.0.1", "10.0.0.2");
    auto d = pattern(500'000, 5);
    size_t sent = 0;
    run(
        [&] {
            while (sent < d.size()) {
                auto w = client->write(d.data() + sent, d.size() - sent);
                if (!w) break;
                sent += *w;
            }
            return false;
        },
        50 * kMs);
    EXPECT_TRUE(drain(*server).empty());
    auto c = net->connections();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].bytes_to_server, 0u);
    EXPECT_EQ(c[0].queued_to_server, sent);
    // New connects across the partition time out.
    std::unique_ptr<Socket> late;
    {
        runtime::HostScope s(*b);
        late = take(connect({"10.0.0.1", 4420}, {"sim"}));
    }
    const uint64_t t0 = sim->now_ns();
    Result<size_t> r = Status(Errc::busy);
    ASSERT_TRUE(run(
        [&] {
            char x;
            r = late->read(&x, 1);
            return r.code() != Errc::busy;
        },
        5000 * kMs));
    EXPECT_EQ(r.code(), Errc::io_error);
    EXPECT_NE(r.error().message().find("timed out"), std::string::npos);
    EXPECT_GE(sim->now_ns() - t0, net->connect_timeout_ns);
    EXPECT_EQ(sent, d.size());
    net->heal("10.0.0.2", "10.0.0.1");
    std::vector<uint8_t> got;
    ASSERT_TRUE(run([&] {
        auto x = drain(*server);
        got.insert(got.end(), x.begin(), x.end());
        return got.size() >= d.size();
    }));
    // Nothing more arrives: exactly once.
    run([] { return false; }, 100 * kMs);
    EXPECT_TRUE(drain(*server).empty());
    ASSERT_EQ(got.size(), d.size());
    EXPECT_EQ(got, d);
}

TEST_F(SimNetTest, PartitionRefuseMode) {
    start();
    {
        runtime::HostScope s(*a);
        listener = take(listen({"10.0.0.1", 4420}, {"sim"}));
    }
    net->partition("10.0.0.1", "10.0.0.2", PartitionMode::refuse);
    {
        runtime::HostScope s(*b);
        client = take(connect({"10.0.0.1", 4420}, {"sim"}));
    }
    Result<size_t> r = Status(Errc::busy);
    ASSERT_TRUE(run([&] {
        char x;
        r = client->read(&x, 1);
        return r.code() != Errc::busy;
    }));
    EXPECT_NE(r.error().message().find("connection refused"), std::string::npos);
    EXPECT_LT(sim->now_ns(), 1 * kMs);
}

TEST_F(SimNetTest, ResetBetweenAddressesAndById) {
    start();
    connect_pair();
    ASSERT_TRUE(client->write("xyz", 3).ok());
    EXPECT_EQ(net->reset("10.0.0.1", "10.0.0.2"), 1u);
    char x;
    EXPECT_EQ(client->read(&x, 1).code(), Errc::io_error);
    auto r = server->read(&x, 1);
    EXPECT_EQ(r.code(), Errc::io_error);
    EXPECT_NE(r.error().message().find("connection reset"), std::string::npos);
    EXPECT_EQ(client->write("a", 1).code(), Errc::io_error);
    EXPECT_FALSE(client->connected());
    EXPECT_EQ(net->connections()[0].state, "reset");
    client.reset();
    server.reset();
    listener.reset();
    EXPECT_TRUE(net->connections().empty());
    // By id: only that connection.
    connect_pair();
    auto c = net->connections();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_TRUE(net->reset(c[0].id).ok());
    EXPECT_EQ(server->read(&x, 1).code(), Errc::io_error);
    EXPECT_EQ(net->reset(9999).code(), Errc::not_found);
}

TEST_F(SimNetTest, StallDelaysThenFlows) {
    start();
    connect_pair();
    Recorder rec{sim.get()};
    ASSERT_TRUE(group->add(*server, &Recorder::fn, &rec).ok());
    const uint64_t t0 = sim->now_ns();
    net->stall("10.0.0.1", "10.0.0.2", 20 * kMs);
    auto d = pattern(10'000, 6);
    EXPECT_EQ(send_all(*client, *server, d), d);
    EXPECT_GE(rec.first_ns - t0, 20 * kMs);
    EXPECT_LT(rec.first_ns - t0, 21 * kMs);
    // After the stall: the default latency again.
    const uint64_t t1 = sim->now_ns();
    rec.events = 0;
    EXPECT_EQ(send_all(*client, *server, d), d);
    EXPECT_LT(rec.first_ns - t1, 1 * kMs);
    group->remove(*server);
}

TEST_F(SimNetTest, DelayAddsLatencyForADuration) {
    start();
    connect_pair();
    Recorder rec{sim.get()};
    ASSERT_TRUE(group->add(*server, &Recorder::fn, &rec).ok());
    net->delay("10.0.0.1", "10.0.0.2", 7 * kMs, 100 * kMs);
    const uint64_t t0 = sim->now_ns();
    ASSERT_TRUE(client->write("ping", 4).ok());
    ASSERT_TRUE(run([&] { return rec.events > 0; }));
    EXPECT_GE(rec.first_ns - t0, 7 * kMs + net->default_link().latency_ns);
    group->remove(*server);
}

TEST_F(SimNetTest, SlowReaderLimitsRate) {
    start();
    connect_pair();
    net->slow_reader("10.0.0.1", 1'000'000);  // 1 MB/s into a
    const uint64_t t0 = sim->now_ns();
    auto d = pattern(200'000, 7);
    EXPECT_EQ(send_all(*client, *server, d), d);
    const uint64_t took = sim->now_ns() - t0;
    EXPECT_GE(took, 180 * kMs);  // ~200 ms, less the last segment's share
    EXPECT_LT(took, 260 * kMs);
    // The other direction is not limited.
    const uint64_t t1 = sim->now_ns();
    EXPECT_EQ(send_all(*server, *client, d), d);
    EXPECT_LT(sim->now_ns() - t1, 5 * kMs);
    net->slow_reader("10.0.0.1", 0);
}

TEST_F(SimNetTest, AttachErrors) {
    start();
    runtime::Host c("c", 3);
    EXPECT_EQ(net->attach(c, "10.0.0.1").code(), Errc::already_exists);
    EXPECT_EQ(net->attach(c, "").code(), Errc::invalid_argument);
    EXPECT_EQ(net->attach(c, "127.0.0.1").code(), Errc::invalid_argument);
    EXPECT_EQ(net->attach(*a, "10.0.0.9").code(), Errc::already_exists);
    EXPECT_EQ(SimNetwork::of(*a), net.get());
    EXPECT_EQ(net->address_of(*b), "10.0.0.2");
    runtime::HostScope s(*b);
    EXPECT_EQ(connect({"10.9.9.9", 1}, {"sim"}).code(), Errc::invalid_argument);
}

TEST(SimNetIsolation, TwoNetworksDoNotSeeEachOther) {
    runtime::SimScheduler sim(1);
    runtime::Host a("a", 1), b("b", 2);
    SimNetwork n1(sim, 1), n2(sim, 2);
    ASSERT_TRUE(n1.attach(a, "10.0.0.1").ok());
    ASSERT_TRUE(n2.attach(b, "10.0.0.2").ok());
    std::unique_ptr<Listener> l;
    {
        runtime::HostScope s(a);
        l = take(listen({"10.0.0.1", 4420}, {"sim"}));
    }
    {
        runtime::HostScope s(b);
        auto c = connect({"10.0.0.1", 4420}, {"sim"});
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.code(), Errc::invalid_argument);
        // Its own loopback has no listener on 4420 there.
        auto c2 = connect({"127.0.0.1", 4420}, {"sim"});
        ASSERT_TRUE(c2.ok());
        Result<size_t> r = Status(Errc::busy);
        sim.run_until([&] {
            char x;
            r = (*c2)->read(&x, 1);
            return r.code() != Errc::busy;
        });
        EXPECT_NE(r.error().message().find("refused"), std::string::npos);
    }
    EXPECT_TRUE(n1.connections().empty());
}

TEST(SimNetPrivate, UnattachedHostGetsItsOwnNetworkOnASimulatedThread) {
    runtime::SimScheduler sim(4);
    runtime::Host h("solo", 4);
    runtime::Thread* t = sim.create_thread("t", -1, &h);
    bool done = false;
    std::string got;
    std::unique_ptr<Listener> l;
    std::unique_ptr<Socket> c, s;
    std::unique_ptr<SocketGroup> g;
    ASSERT_TRUE(t->post([&] {
                     EXPECT_EQ(default_impl(), "sim");
                     auto x = listen({"127.0.0.1", 0});
                     ASSERT_TRUE(x.ok()) << x.error().message();
                     l = std::move(*x);
                     auto y = connect({"127.0.0.1", l->local().port});
                     ASSERT_TRUE(y.ok());
                     c = std::move(*y);
                     EXPECT_STREQ(c->impl_name(), "sim");
                     EXPECT_EQ(SimNetwork::of(h), *current_network());
                 }).ok());
    ASSERT_TRUE(sim.run_until([&] {
        if (l && !s) {
            auto a = l->accept();
            if (a) s = std::move(*a);
        }
        return s && c->connected();
    }));
    ASSERT_TRUE(c->write("hi", 2).ok());
    ASSERT_TRUE(sim.run_until([&] {
        char buf[8];
        auto r = s->read(buf, sizeof(buf));
        if (r) got.append(buf, *r);
        return got == "hi";
    }));
    (void)done;
    (void)g;
    c.reset();
    s.reset();
    l.reset();
}

}  // namespace
}  // namespace strata::sock

namespace strata::sock {
namespace {

// The Host (and its private network) goes while the network's wake-up message is still queued
// on its Thread: the message must find the network gone, not touch freed memory.
TEST(SimNetPrivate, HostGoneWithAWakeUpQueued) {
    runtime::SimScheduler sim(5);
    auto h = std::make_unique<runtime::Host>("x", 5);
    runtime::Thread* t = sim.create_thread("t", -1, h.get());
    std::unique_ptr<Listener> l;
    std::unique_ptr<Socket> c;
    ASSERT_TRUE(t->post([&] {
                     l = take(listen({"127.0.0.1", 0}));
                     c = take(connect({"127.0.0.1", l->local().port}));
                 }).ok());
    ASSERT_TRUE(sim.run_until([&] { return c != nullptr; }));
    runtime::Thread* simnet = sim.find_thread("simnet");
    ASSERT_NE(simnet, nullptr);
    EXPECT_GT(simnet->pending_messages(), 0u);  // the wake-up for the SYN
    c.reset();
    l.reset();
    h.reset();
    EXPECT_TRUE(sim.run_until_idle());
}

}  // namespace
}  // namespace strata::sock

namespace strata::sock {
namespace {

// The way the NVMe-oF target and initiator use it: each side's sockets in a SocketGroup polled
// by a poller of a Thread of its own Host, pollers idle when nothing moved, the SimScheduler
// alone drives everything and jumps virtual time across link latency.
struct EchoServer {
    std::unique_ptr<Listener> listener;
    std::unique_ptr<SocketGroup> group;
    std::vector<std::unique_ptr<Socket>> conns;
    runtime::Poller* poller = nullptr;

    static void on_event(void*, Socket& s) {
        char buf[256];
        auto r = s.read(buf, sizeof(buf));
        if (r) EXPECT_EQ(s.write(buf, *r).code(), Errc::ok);  // small: fits the window
    }
    static runtime::PollStatus poll(void* ctx) {
        auto* self = static_cast<EchoServer*>(ctx);
        bool busy = false;
        for (auto a = self->listener->accept(); a; a = self->listener->accept()) {
            EXPECT_TRUE(self->group->add(**a, &on_event, nullptr).ok());
            self->conns.push_back(std::move(*a));
            busy = true;
        }
        busy |= self->group->poll() > 0;
        return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }
};

struct PingClient {
    std::unique_ptr<Socket> sock;
    std::unique_ptr<SocketGroup> group;
    runtime::Poller* poller = nullptr;
    int round_trips = 0;
    bool waiting = false;
    std::string got;

    static void on_event(void* ctx, Socket& s) {
        auto* self = static_cast<PingClient*>(ctx);
        char buf[256];
        for (auto r = s.read(buf, sizeof(buf)); r; r = s.read(buf, sizeof(buf)))
            self->got.append(buf, *r);
        if (self->waiting && self->got == "ping") {
            self->got.clear();
            self->waiting = false;
            ++self->round_trips;
        }
    }
    static runtime::PollStatus poll(void* ctx) {
        auto* self = static_cast<PingClient*>(ctx);
        bool busy = self->group->poll() > 0;
        if (self->sock->connected() && !self->waiting && self->round_trips < 10) {
            EXPECT_EQ(self->sock->write("ping", 4).code(), Errc::ok);
            self->waiting = true;
            busy = true;
        }
        return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }
};

TEST(SimNetThreads, PingPongBetweenPollersOfTwoHosts) {
    runtime::SimScheduler sim(9);
    runtime::Host a("a", 1), b("b", 2);
    SimNetwork net(sim, 9);
    ASSERT_TRUE(net.attach(a, "10.0.0.1").ok());
    ASSERT_TRUE(net.attach(b, "10.0.0.2").ok());
    LinkParams lp;
    lp.latency_ns = kMs;
    net.set_default_link(lp);
    runtime::Thread* ta = sim.create_thread("ta", -1, &a);
    runtime::Thread* tb = sim.create_thread("tb", -1, &b);
    EchoServer srv;
    PingClient cli;
    ASSERT_TRUE(ta->post([&] {
                      srv.listener = take(listen({"10.0.0.1", 4420}));
                      srv.group = SocketGroup::create();
                      srv.poller = ta->register_poller(&EchoServer::poll, &srv, "echo");
                      EXPECT_TRUE(
                          tb->post([&] {
                                cli.sock = take(connect({"10.0.0.1", 4420}));
                                cli.group = SocketGroup::create();
                                EXPECT_TRUE(
                                    cli.group->add(*cli.sock, &PingClient::on_event, &cli).ok());
                                cli.poller = tb->register_poller(&PingClient::poll, &cli, "ping");
                            }).ok());
                  }).ok());
    ASSERT_TRUE(sim.run_until([&] { return cli.round_trips == 10; }, 10'000 * kMs));
    // Connect (2 latencies) and 10 round trips (2 each), all in virtual time.
    EXPECT_GE(sim.now_ns(), 22 * kMs);
    EXPECT_LT(sim.now_ns(), 30 * kMs);
    bool done_a = false, done_b = false;
    ASSERT_TRUE(tb->post([&] {
                      tb->unregister_poller(cli.poller);
                      cli.group->remove(*cli.sock);
                      cli.sock.reset();
                      cli.group.reset();
                      done_b = true;
                  }).ok());
    ASSERT_TRUE(ta->post([&] {
                      ta->unregister_poller(srv.poller);
                      for (auto& c : srv.conns) srv.group->remove(*c);
                      srv.conns.clear();
                      srv.group.reset();
                      srv.listener.reset();
                      done_a = true;
                  }).ok());
    ASSERT_TRUE(sim.run_until([&] { return done_a && done_b; }));
}

}  // namespace
}  // namespace strata::sock
