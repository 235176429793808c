// Controller: one vhost-user socket (a listening Unix socket at a path), at most one front end
// connected at a time, a Device behind it. The connection is non-blocking and polled: a timed
// control poller accepts and reads vhost-user messages (fds by SCM_RIGHTS) into
// Session::handle(); a busy data poller runs Session::poll(). A protocol violation logs the
// reason and closes that connection; the listener stays, so the front end can reconnect (a new
// Session; QEMU passes the inflight fd back so requests in flight are resubmitted).
//
// A closed connection's Session stops taking requests and is destroyed once its outstanding
// requests completed (they point into its memory mappings).
//
// Owning Thread: the one start() ran on; create/destroy on it too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <strata/base/status.h>
#include <strata/vhost/session.h>

namespace strata::runtime {
class Poller;
class Thread;
}  // namespace strata::runtime

namespace strata::vhost {

class Controller {
public:
    // Listens at `socket_path` (a stale socket file there is replaced).
    static Result<std::unique_ptr<Controller>> create(std::string name, std::string socket_path,
                                                      std::unique_ptr<Device> device);
    ~Controller();  // unregisters the pollers, closes the connection and the listener, unlinks
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    // Registers the pollers on the calling Thread.
    void start();

    // Pollers' bodies (tests call them directly): return the work done.
    int poll_control();
    int poll_data(uint64_t now_ns);

    const std::string& name() const noexcept { return name_; }
    const std::string& socket_path() const noexcept { return path_; }
    Device& device() noexcept { return *device_; }
    Session* session() noexcept { return session_.get(); }
    bool connected() const noexcept { return conn_fd_ >= 0; }
    bool draining() const noexcept { return closing_ != nullptr; }
    uint64_t connections() const noexcept { return connections_; }
    uint64_t protocol_errors() const noexcept { return protocol_errors_; }

    void set_coalescing(const CoalescingOptions& o) noexcept;
    const CoalescingOptions& coalescing() const noexcept { return coalescing_; }

private:
    Controller(std::string name, std::string path, int listen_fd, std::unique_ptr<Device> device);
    void disconnect(const char* why);
    bool send_reply(const Reply& r);
    int read_messages();

    std::string name_;
    std::string path_;
    int listen_fd_ = -1;
    int conn_fd_ = -1;
    std::unique_ptr<Device> device_;
    std::unique_ptr<Session> session_;
    std::unique_ptr<Session> closing_;  // disconnected, waiting for its requests
    CoalescingOptions coalescing_;
    // Receive state: a message being assembled, with the fds that came with it.
    uint8_t rx_[sizeof(vu::Header) + vu::kMaxPayload];
    size_t rx_len_ = 0;
    int fds_[vu::kMaxFds];
    size_t nfds_ = 0;
    bool too_many_fds_ = false;
    uint64_t connections_ = 0;
    uint64_t protocol_errors_ = 0;
    runtime::Poller* control_poller_ = nullptr;
    runtime::Poller* data_poller_ = nullptr;
    runtime::Thread* thread_ = nullptr;
};

}  // namespace strata::vhost
