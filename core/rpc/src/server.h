// Server: the JSON-RPC 2.0 Unix-socket server of an App (private to core/rpc).
//
// Lifecycle: created and polled on the app Thread; listen() binds the socket (0600 by default;
// a stale socket file is replaced only if nobody accepts on it) under a temporary name, listens
// and renames it to the path, so the path exists only while connects to it are accepted; a
// timed poller accepts, reads, frames and writes; stop_accepting() unlinks the path, then
// closes the listening socket; close() also closes every connection.
// Non-blocking syscalls only; a client that disconnects mid-request has its reply dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/rpc/internal/framer.h>
#include <strata/runtime/thread.h>

namespace strata::rpc {

class App;

class Server {
public:
    explicit Server(App& app) : app_(app) {}
    ~Server();

    Result<void> listen(const std::string& path, uint32_t mode, size_t max_request_bytes);
    void stop_accepting();
    // Replies still owed to live connections.
    size_t in_flight() const noexcept { return *in_flight_; }
    // Reply bytes queued but not yet written to live connections.
    size_t pending_output() const noexcept;
    void close();
    const std::string& path() const noexcept { return path_; }
    size_t connection_count() const noexcept { return conns_.size(); }

private:
    struct Conn;
    static runtime::PollStatus poll(void* ctx);
    bool accept_some();
    bool service(const std::shared_ptr<Conn>& c);
    void handle_value(const std::shared_ptr<Conn>& c, std::string text);
    void queue_reply(const std::shared_ptr<Conn>& c, const std::string& text);

    App& app_;
    int listen_fd_ = -1;
    std::string path_;
    size_t max_request_bytes_ = 0;
    runtime::Poller* poller_ = nullptr;
    std::vector<std::shared_ptr<Conn>> conns_;
    std::shared_ptr<size_t> in_flight_ = std::make_shared<size_t>(0);  // outlives the Server
};

}  // namespace strata::rpc
