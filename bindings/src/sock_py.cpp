// World's socket harness: a tiny netcat on the World's Host, to drive the sockets layer (the
// simulated network of a Cluster) from Python without a protocol on top: listen (recording or
// echoing what arrives), connect, send, receive, close or abort. Everything runs on one Thread
// of the Host ("sock_harness"); strata/world.py wraps these as world.sock_*.
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <strata/runtime/thread.h>
#include <strata/sock/sock.h>

#include "world.h"

namespace pyb = pybind11;

namespace strata::py {

struct World::Sock {
    struct Conn {
        uint32_t id = 0;
        std::unique_ptr<sock::Socket> s;
        bool echo = false;
        bool in_group = false;
        std::string out;  // accepted by send(), not yet by writev
        std::string in;   // received, not yet taken by recv()
        uint64_t sent = 0, received = 0;
        std::string state = "connecting";  // established, eof, closed, error
        std::string error;
    };
    struct Listen {
        std::unique_ptr<sock::Listener> l;
        bool echo = false;
        std::vector<uint32_t> accepted;
    };
    runtime::Thread* thread = nullptr;
    runtime::Poller* poller = nullptr;
    std::unique_ptr<sock::SocketGroup> group;
    std::map<uint32_t, std::unique_ptr<Conn>> conns;
    std::map<uint32_t, Listen> listeners;
    uint32_t next_id = 1;

    static void on_event(void* ctx, sock::Socket&) {
        auto* c = static_cast<Conn*>(ctx);
        read_all(*c);
    }
    static bool read_all(Conn& c) {
        bool moved = false;
        if (c.state == "connecting" && c.s->connected()) c.state = "established";
        char buf[16384];
        for (;;) {
            auto r = c.s->read(buf, sizeof buf);
            if (r.ok()) {
                moved = true;
                c.received += *r;
                (c.echo ? c.out : c.in).append(buf, *r);
                continue;
            }
            if (r.error().code() == Errc::busy) break;
            if (r.error().code() == Errc::shutdown) {
                if (c.state == "established" || c.state == "connecting") c.state = "eof";
            } else if (c.state != "closed") {
                c.state = "error";
                c.error = r.error().message();
            }
            break;
        }
        return moved;
    }
    static runtime::PollStatus poll(void* ctx) {
        auto* h = static_cast<Sock*>(ctx);
        bool busy = false;
        for (auto& [lid, ln] : h->listeners) {
            for (;;) {
                auto a = ln.l->accept();
                if (!a.ok()) break;
                busy = true;
                auto c = std::make_unique<Conn>();
                c->id = h->next_id++;
                c->s = std::move(*a);
                c->echo = ln.echo;
                c->state = "established";
                if (h->group->add(*c->s, &on_event, c.get()).ok()) c->in_group = true;
                ln.accepted.push_back(c->id);
                h->conns[c->id] = std::move(c);
            }
        }
        if (h->group->poll() > 0) busy = true;
        for (auto& [id, c] : h->conns) {
            if (c->state == "connecting" && c->s && c->s->connected()) c->state = "established";
            while (!c->out.empty() && (c->state == "established" || c->state == "eof")) {
                auto w = c->s->write(c->out.data(), c->out.size());
                if (!w.ok()) {
                    if (w.error().code() != Errc::busy) {
                        c->state = "error";
                        c->error = w.error().message();
                    }
                    break;
                }
                busy = true;
                c->sent += *w;
                c->out.erase(0, *w);
            }
        }
        return busy ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }
    Conn& conn(uint32_t id) {
        auto it = conns.find(id);
        if (it == conns.end()) throw pyb::key_error("no socket " + std::to_string(id));
        return *it->second;
    }
    void close_conn(Conn& c, bool abort) {
        if (!c.s || c.state == "closed") return;
        if (c.in_group) group->remove(*c.s);
        c.in_group = false;
        if (abort)
            c.s->abort();
        else
            c.s->close();
        c.state = "closed";
    }
};

void World::SockDeleter::operator()(Sock* s) const { delete s; }

World::Sock& World::sock() {
    check_open();
    if (sock_) return *sock_;
    auto h = std::make_unique<Sock>();
    h->thread = own_thread("sock_harness");
    if (h->thread == nullptr) h->thread = sched_->create_thread("sock_harness", -1, host_.get());
    Sock* p = h.get();
    bool ok = false;
    {
        pyb::gil_scoped_release nogil;
        run_on(p->thread, [p, &ok] {
            p->group = sock::SocketGroup::create();
            p->poller = runtime::current_thread()->register_poller(&Sock::poll, p, "sock_harness");
            ok = p->group != nullptr;
        });
    }
    if (!ok) throw std::runtime_error("the socket harness did not start");
    sock_.reset(h.release());
    return *sock_;
}

void World::close_sock() {
    if (!sock_) return;
    Sock* p = sock_.get();
    {
        pyb::gil_scoped_release nogil;
        run_on(p->thread, [p] {
            for (auto& [id, c] : p->conns) {
                p->close_conn(*c, false);
                c->s.reset();
            }
            p->listeners.clear();
            p->group.reset();
            runtime::current_thread()->unregister_poller(p->poller);
            runtime::current_thread()->request_exit();
        });
    }
    sock_.reset();
}

uint32_t World::sock_listen(uint16_t port, bool echo) {
    Guard g(*this);
    Sock& h = sock();
    std::optional<std::string> err;
    uint32_t id = 0;
    {
        pyb::gil_scoped_release nogil;
        run_on(h.thread, [&] {
            auto l = sock::listen(sock::Endpoint{"0.0.0.0", port});
            if (!l.ok()) {
                err = l.error().message();
                return;
            }
            id = h.next_id++;
            h.listeners[id] = Sock::Listen{std::move(*l), echo, {}};
        });
    }
    if (err) throw std::runtime_error("listen on port " + std::to_string(port) + ": " +
                                      *err);
    return id;
}

uint32_t World::sock_connect(const std::string& address, uint16_t port) {
    Guard g(*this);
    Sock& h = sock();
    std::optional<std::string> err;
    uint32_t id = 0;
    {
        pyb::gil_scoped_release nogil;
        run_on(h.thread, [&] {
            auto s = sock::connect(sock::Endpoint{address, port});
            if (!s.ok()) {
                err = s.error().message();
                return;
            }
            auto c = std::make_unique<Sock::Conn>();
            c->id = id = h.next_id++;
            c->s = std::move(*s);
            if (h.group->add(*c->s, &Sock::on_event, c.get()).ok()) c->in_group = true;
            h.conns[id] = std::move(c);
        });
    }
    if (err) throw std::runtime_error("connect to " + address + ":" + std::to_string(port) + ": " +
                                      *err);
    return id;
}

void World::sock_send(uint32_t id, const std::string& data) {
    Guard g(*this);
    Sock& h = sock();
    Sock::Conn& c = h.conn(id);
    pyb::gil_scoped_release nogil;
    run_on(h.thread, [&c, &data] { c.out += data; });
}

pyb::bytes World::sock_recv(uint32_t id) {
    Guard g(*this);
    Sock& h = sock();
    Sock::Conn& c = h.conn(id);
    std::string out;
    {
        pyb::gil_scoped_release nogil;
        run_on(h.thread, [&c, &out] {
            if (c.s && c.state != "closed") Sock::read_all(c);
            out.swap(c.in);
        });
    }
    return pyb::bytes(out);
}

pyb::dict World::sock_info(uint32_t id) {
    Sock& h = sock();
    Sock::Conn& c = h.conn(id);
    pyb::dict d;
    d["id"] = c.id;
    d["state"] = c.state;
    d["error"] = c.error;
    d["sent"] = c.sent;
    d["received"] = c.received;
    d["unsent"] = c.out.size();
    d["unread"] = c.in.size();
    if (c.s) {
        d["local"] = sock::to_string(c.s->local());
        d["peer"] = sock::to_string(c.s->peer());
    }
    return d;
}

std::vector<uint32_t> World::sock_accepted(uint32_t listener) {
    Sock& h = sock();
    auto it = h.listeners.find(listener);
    if (it == h.listeners.end()) throw pyb::key_error("no listener " + std::to_string(listener));
    return it->second.accepted;
}

void World::sock_close(uint32_t id, bool abort) {
    Guard g(*this);
    Sock& h = sock();
    Sock::Conn& c = h.conn(id);
    pyb::gil_scoped_release nogil;
    run_on(h.thread, [&h, &c, abort] { h.close_conn(c, abort); });
}

}  // namespace strata::py
