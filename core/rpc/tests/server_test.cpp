// The Unix-socket JSON-RPC server end to end, on a RealScheduler (reactor OS threads).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <strata/rpc/app.h>
#include <strata/stack/modules.h>
#include <strata/runtime/scheduler.h>

namespace strata::rpc {
namespace {

using PT = ParamType;

class Client {
public:
    explicit Client(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
        ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    }
    ~Client() { close(); }
    bool ok() const { return ok_; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    void send(std::string_view s) {
        while (!s.empty()) {
            ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
            if (n <= 0) return;
            s.remove_prefix(static_cast<size_t>(n));
        }
    }
    // Reads until `count` newline-terminated responses arrived (or EOF / 20 s).
    std::vector<Json> recv(size_t count) {
        std::vector<Json> out;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
            size_t nl;
            while (out.size() < count && (nl = buf_.find('\n')) != std::string::npos) {
                out.push_back(Json::parse(buf_.substr(0, nl)));
                buf_.erase(0, nl + 1);
            }
            if (out.size() == count) break;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char tmp[65536];
            ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
            if (n <= 0) break;
            buf_.append(tmp, static_cast<size_t>(n));
        }
        return out;
    }
    bool eof(int timeout_ms = 5000) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char c;
        return ::recv(fd_, &c, 1, 0) == 0;
    }

private:
    int fd_ = -1;
    bool ok_ = false;
    std::string buf_;
};

std::string req(const char* method, Json params = nullptr, int id = 1) {
    return Registry::make_request(method, std::move(params), id).dump();
}

class ServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        path = "/tmp/strata-rpc-test-" + std::to_string(::getpid()) + ".sock";
        ::unlink(path.c_str());
    }
    void start(size_t max_request = 64u << 20) {
        runtime::RealSchedulerOptions so;
        so.cores = {0};
        so.pin = false;
        sched = std::make_unique<runtime::RealScheduler>(so);
        AppOptions o;
        o.rpc_socket = path;
        o.max_request_bytes = max_request;
        app = std::make_unique<App>(*sched, o);
        stack::register_all_modules(*app);
        ASSERT_TRUE(app->registry()
                        .add({"test_big", "large response", {{"bytes", PT::uint, true, "", nullptr}},
                              Allowed::both, "", true,
                              [](const Json& p, Responder r) {
                                  r.result(std::string(p["bytes"].get<size_t>(), 'x'));
                              }})
                        .ok());
        ASSERT_TRUE(app->registry()
                        .add({"test_hold", "reply when released", {}, Allowed::both, "", true,
                              [this](const Json&, Responder r) {
                                  held = std::make_shared<Responder>(std::move(r));
                                  holding = true;
                              }})
                        .ok());
        sched->start();
        std::atomic<bool> done{false};
        std::atomic<bool> ok{false};
        app->start([&](Result<void> r) {
            ok = r.ok();
            done = true;
        });
        while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ASSERT_TRUE(ok);
    }
    void TearDown() override {
        if (app) {
            app->request_stop();
            for (int i = 0; i < 5000 && !app->stopped(); i++) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            EXPECT_TRUE(app->stopped());
        }
        if (sched) sched->stop();
        app.reset();
        sched.reset();
        struct stat st;
        EXPECT_NE(::lstat(path.c_str(), &st), 0) << "socket file left behind";
    }

    std::string path;
    std::unique_ptr<runtime::RealScheduler> sched;
    std::unique_ptr<App> app;
    std::shared_ptr<Responder> held;
    std::atomic<bool> holding{false};
};

TEST_F(ServerTest, SocketIs0600AndAnswers) {
    start();
    struct stat st;
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    Client c(path);
    ASSERT_TRUE(c.ok());
    c.send(req("strata_get_version"));
    auto r = c.recv(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0]["result"].contains("version"));
}

TEST_F(ServerTest, SplitWritesAndSeveralRequestsPerWrite) {
    start();
    Client c(path);
    std::string two = req("log_get_level", nullptr, 1) + req("rpc_get_methods", nullptr, 2);
    c.send(two.substr(0, 7));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c.send(two.substr(7, 30));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c.send(two.substr(37));
    // Batch and notification on the same connection: the notification gets no reply.
    c.send(R"({"jsonrpc":"2.0","method":"log_get_level"})");
    c.send(R"([{"jsonrpc":"2.0","method":"log_get_level","id":3},{"jsonrpc":"2.0","method":"x","id":4}])");
    auto r = c.recv(3);
    ASSERT_EQ(r.size(), 3u);
    int seen = 0;
    for (const auto& x : r) {
        if (x.is_array()) {
            EXPECT_EQ(x.size(), 2u);
            seen |= 4;
        } else if (x["id"] == 1) {
            EXPECT_EQ(x["result"], "NOTICE");
            seen |= 1;
        } else if (x["id"] == 2) {
            seen |= 2;
        }
    }
    EXPECT_EQ(seen, 7);
}

TEST_F(ServerTest, ParseErrorsAndGarbage) {
    start();
    Client c(path);
    c.send("{\"jsonrpc\":\"2.0\",,}");
    auto r = c.recv(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0]["error"]["code"], -32700);
    c.send(req("log_get_level"));  // still usable after a parse error
    EXPECT_EQ(c.recv(1).at(0)["result"], "NOTICE");
    c.send("hello");  // cannot be framed: error, then the server closes the connection
    r = c.recv(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0]["error"]["code"], -32700);
    EXPECT_TRUE(c.eof());
}

TEST_F(ServerTest, LargeResponse) {
    start();
    Client c(path);
    const size_t n = 24u << 20;
    c.send(req("test_big", {{"bytes", n}}));
    auto r = c.recv(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0]["result"].get_ref<const std::string&>().size(), n);
}

TEST_F(ServerTest, RequestLargerThanLimitGetsClearError) {
    start(4096);
    Client c(path);
    c.send(R"({"jsonrpc":"2.0","method":"log_get_level","id":1,"params":{"x":")" +
           std::string(10000, 'a'));
    auto r = c.recv(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0]["error"]["code"], -32700);
    EXPECT_NE(r[0]["error"]["message"].get<std::string>().find("4096 byte limit"),
              std::string::npos);
    EXPECT_TRUE(c.eof());
}

TEST_F(ServerTest, ClientDisconnectsMidRequest) {
    start();
    {
        Client c(path);
        c.send(req("test_hold"));
        for (int i = 0; i < 5000 && !holding; i++) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ASSERT_TRUE(holding);
    }  // client gone
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto h = held;
    ASSERT_TRUE(app->thread().post([h] { h->result(true); }).ok());  // reply is dropped
    Client c2(path);
    c2.send(req("log_get_level"));
    EXPECT_EQ(c2.recv(1).at(0)["result"], "NOTICE");
}

TEST_F(ServerTest, ManyClients) {
    start();
    constexpr int kClients = 24;
    std::vector<std::unique_ptr<Client>> cs;
    for (int i = 0; i < kClients; i++) {
        cs.push_back(std::make_unique<Client>(path));
        ASSERT_TRUE(cs.back()->ok());
    }
    for (int i = 0; i < kClients; i++) cs[i]->send(req("strata_get_version", nullptr, i));
    for (int i = 0; i < kClients; i++) {
        auto r = cs[i]->recv(1);
        ASSERT_EQ(r.size(), 1u);
        EXPECT_EQ(r[0]["id"], i);
    }
}

TEST_F(ServerTest, StaleSocketReplacedLiveOneRefused) {
    // A stale socket file (nobody listening) is replaced.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ::close(fd);
    start();
    // A second App on the same path is refused while the first listens.
    runtime::RealSchedulerOptions so;
    so.pin = false;
    runtime::RealScheduler sched2(so);
    AppOptions o;
    o.rpc_socket = path;
    std::optional<Result<void>> res;
    {
        App app2(sched2, o);
        sched2.start();
        std::atomic<bool> done{false};
        app2.start([&](Result<void> r) {
            res = r;
            done = true;
        });
        while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        app2.request_stop();
        while (!app2.stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        sched2.stop();
    }
    ASSERT_TRUE(res.has_value());
    ASSERT_FALSE(res->ok());
    EXPECT_NE(res->error().message().find("in use by another process"), std::string::npos);
    Client c(path);  // the first server still owns its socket
    c.send(req("log_get_level"));
    EXPECT_EQ(c.recv(1).at(0)["result"], "NOTICE");
}

// The socket path exists only while the server accepts on it: a client that finds the path is
// never refused, neither at start (bind, then listen: the path used to appear at bind) nor at
// stop. A prober connects in a loop while Apps start and stop; ENOENT is fine, ECONNREFUSED
// is the bug.
TEST_F(ServerTest, PathExistsOnlyWhileAccepting) {
    std::atomic<bool> quit{false};
    std::atomic<int> refused{0};
    std::atomic<int> accepted{0};
    std::thread prober([&] {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
        while (!quit) {
            int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0) continue;
            if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0)
                ++accepted;
            else if (errno == ECONNREFUSED)
                ++refused;
            ::close(fd);
        }
    });
    for (int i = 0; i < 40 && refused == 0; i++) {
        start();
        TearDown();
    }
    quit = true;
    prober.join();
    EXPECT_EQ(refused, 0) << "a connect found the path but was refused";
    EXPECT_GT(accepted, 0) << "the prober never reached a server: the test proves nothing";
}

}  // namespace
}  // namespace strata::rpc

namespace strata::rpc {
namespace {

TEST_F(ServerTest, InProcessCallOnRealScheduler) {
    start();
    auto r = app->call_method("log_get_level");
    EXPECT_EQ(r["result"], "NOTICE");
    auto raw = app->handle_raw(R"([{"jsonrpc":"2.0","method":"log_get_level","id":1}])");
    ASSERT_TRUE(raw.has_value());
    EXPECT_EQ(Json::parse(*raw)[0]["result"], "NOTICE");
    // A request that never gets its reply times out with an error instead of hanging.
    r = app->call_method("test_hold", nullptr, 50'000'000);
    EXPECT_EQ(r["error"]["code"], error_code::internal_error);
    EXPECT_NE(r["error"]["message"].get<std::string>().find("timed out"), std::string::npos);
    for (int i = 0; i < 5000 && !holding; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(holding);
    auto h = held;
    ASSERT_TRUE(app->thread().post([h] { h->result(true); }).ok());  // late reply dropped
    EXPECT_EQ(app->call_method("log_get_level")["result"], "NOTICE");
}

}  // namespace
}  // namespace strata::rpc
