// Bdev I/O from Python through the bdev layer, on the simulator: World::bdev_submit posts one
// asynchronous I/O (strata.bdev.Io: the simulator submits and completes it on its Thread, the
// harness steps the simulation and reads the handle), World::bdev_io is the synchronous form
// (submit, run until it completed, return the result) used by strata.bdev.Bdev.read/write/...
//
// Each I/O opens its own descriptor and channel on its Thread when the submit message runs and
// closes them (by message, never inside the completion) once it completed; one that never
// completes keeps them open, which keeps its bdev from unregistering. The World keeps every I/O
// until it closed and the latest closed ones beyond that (kRetained), so a second completion
// of an I/O lands in a live object and is counted (BdevIo::completions), not a use after free.
#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pybind11/stl.h>

#include <strata/base/log.h>
#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>
#include <strata/runtime/thread.h>

#include "world.h"

namespace pyb = pybind11;

namespace strata::py {

// A descriptor and channel of one bdev held open on one Thread (strata.bdev.Queue): the I/O
// submitted through it shares one channel (for an NVMe bdev one qpair, over TCP one connection)
// from burst to burst, as an application's would. It closes when asked, when its bdev is being
// removed (Event::remove) or when its World stops, in each case once its I/O has completed.
struct BdevQueue : std::enable_shared_from_this<BdevQueue> {
    uint64_t id = 0;
    std::string bdev;
    bool write = true;
    runtime::Thread* thread = nullptr;
    std::string thread_name;

    std::string state = "opening";  // open, closing, closed, failed (on `thread`)
    Status error;                   // failed: why it did not open
    bool removed = false;           // its bdev is being removed
    uint32_t outstanding = 0;
    uint64_t submitted = 0, completed = 0;
    std::weak_ptr<int> owner;  // its World's BdevIos::token
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
};

// One bdev I/O submitted from Python. Fields below `thread` are written on that Thread by the
// simulator and read by Python between steps (one OS thread: no race).
struct BdevIo : std::enable_shared_from_this<BdevIo> {
    uint64_t id = 0;
    std::string bdev, op;
    uint64_t offset_blocks = 0, num_blocks = 0;
    runtime::Thread* thread = nullptr;
    std::string thread_name;  // thread's (the Thread is gone once its World closed)
    std::shared_ptr<BdevQueue> queue;  // submitted through it, or null: a descriptor of its own
    uint64_t posted_ns = 0;

    bool started = false;   // the submit message ran
    bool accepted = false;  // the bdev layer took it: its callback runs (once)
    Status refused;         // why it was not submitted (open, channel or submit refused)
    uint32_t completions = 0;
    bdev::IoStatus status;
    uint64_t submitted_ns = 0, completed_ns = 0;
    bool closed = false;     // its own desc and channel given back (or abandoned), or done
    bool abandoned = false;  // the World closed while it was still outstanding

    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
    std::vector<uint8_t> buf;   // read: the data; write, compare: the data given
    std::vector<uint8_t> buf2;  // compare_and_write: the data to write
    iovec iov[2]{};

    bool done() const { return completions > 0 || (started && !accepted); }
    std::string status_name() const {
        if (!started) return "pending";
        if (!accepted) return "refused";
        if (completions == 0) return abandoned ? "abandoned" : "pending";
        return status.ok() ? "success" : std::string(errc_name(status.code));
    }
};

namespace {

STRATA_LOG_COMPONENT(py_bdev);

constexpr size_t kRetained = 1024;  // closed I/Os the World still holds (see the file comment)

bool writes(const std::string& op) {
    return op == "write" || op == "write_zeroes" || op == "unmap" || op == "flush" ||
           op == "compare_and_write";
}

bool known_op(const std::string& op) {
    return op == "read" || op == "compare" || op == "reset" || writes(op);
}

// On the queue's Thread: closes it once it is closing and idle.
void maybe_close_queue(BdevQueue& q) {
    if (q.state != "closing" || q.outstanding != 0) return;
    if (q.ch) bdev::put_channel(q.ch);
    q.ch = nullptr;
    q.desc.reset();
    q.state = "closed";
}

// On the queue's Thread.
void open_queue(BdevQueue& q) {
    if (q.state != "opening") return;  // closed before it opened
    std::weak_ptr<BdevQueue> weak = q.shared_from_this();
    auto d = bdev::open(q.bdev, q.write, [weak](bdev::Event e, bdev::Bdev&) {
        auto qp = weak.lock();
        if (!qp || e != bdev::Event::remove) return;
        qp->removed = true;
        if (qp->state == "open") qp->state = "closing";
        maybe_close_queue(*qp);
    });
    if (!d) {
        q.error = Status(d.code(), "open");
        q.state = "failed";
        return;
    }
    q.desc = std::move(*d);
    q.ch = q.desc->get_channel();
    if (q.ch == nullptr) {
        q.desc.reset();
        q.error = Status(Errc::shutdown, "no channel");
        q.state = "failed";
        return;
    }
    q.state = "open";
}

// On io.thread: gives the descriptor and channel back (a queue's stay with the queue).
void close_io(BdevIo& io) {
    if (io.ch && !io.queue) bdev::put_channel(io.ch);
    io.ch = nullptr;
    io.desc.reset();
    io.closed = true;
    if (io.queue) maybe_close_queue(*io.queue);  // the last I/O of a closing queue
    io.queue.reset();  // the queue's state is not kept alive by finished I/O
}

void io_done(void* ctx, const bdev::IoStatus& s) {
    auto* io = static_cast<BdevIo*>(ctx);
    if (++io->completions > 1) {
        STRATA_ERRLOG(log_py_bdev, "bdev {}: {} #{} at block {} completed {} times", io->bdev,
                      io->op, io->id, io->offset_blocks, io->completions);
        return;
    }
    io->status = s;
    io->completed_ns = runtime::now_ns();
    if (io->queue) {
        --io->queue->outstanding;
        ++io->queue->completed;
    }
    // Not from inside the completion: the layer still holds the channel until it returns.
    (void)io->thread->post([keep = io->shared_from_this()] { close_io(*keep); });
}

// On io.thread: opens the bdev and submits.
void start_io(BdevIo& io) {
    io.started = true;
    auto refuse = [&io](Status s) {
        io.refused = s;
        close_io(io);
    };
    if (io.queue) {
        BdevQueue& q = *io.queue;
        if (q.state == "failed") return refuse(q.error);
        if (q.state != "open")
            return refuse(Status(Errc::shutdown, q.removed ? "the bdev is being removed"
                                                            : "the queue is closed"));
        if (writes(io.op) && !q.write)
            return refuse(Status(Errc::permission_denied, "a read-only queue"));
        io.ch = q.ch;
    } else {
        auto d = bdev::open(io.bdev, writes(io.op));
        if (!d) return refuse(Status(d.code(), "open"));
        io.desc = std::move(*d);
        io.ch = io.desc->get_channel();
        if (io.ch == nullptr) return refuse(Status(Errc::shutdown, "no channel"));
    }
    bdev::Desc& desc = io.queue ? *io.queue->desc : *io.desc;
    const uint32_t block_size = desc.bdev().block_size();
    const bool has_data = io.op == "write" || io.op == "compare" || io.op == "compare_and_write";
    if (has_data && io.num_blocks == 0) io.num_blocks = io.buf.size() / block_size;  // "whole data"
    const size_t len = io.num_blocks * block_size;
    bdev::Channel& ch = *io.ch;
    const uint64_t lba = io.offset_blocks, n = io.num_blocks;
    Status s;
    if (io.op == "read") {
        io.buf.assign(len, 0);
        s = bdev::read(desc, ch, io.buf.data(), lba, n, io_done, &io);
    } else if (io.op == "write" || io.op == "compare") {
        if (io.buf.size() != len) {
            s = Status(Errc::invalid_argument, "data length is not num_blocks * block_size");
        } else if (len == 0) {
            s = Status(Errc::invalid_argument, "no data");
        } else {
            io.iov[0] = iovec{io.buf.data(), len};
            s = io.op == "write" ? bdev::writev(desc, ch, io.iov, 1, lba, n, io_done, &io)
                                 : bdev::comparev(desc, ch, io.iov, 1, lba, n, io_done, &io);
        }
    } else if (io.op == "compare_and_write") {
        if (io.buf.size() != len || io.buf2.size() != len) {
            s = Status(Errc::invalid_argument, "data length is not num_blocks * block_size");
        } else {
            io.iov[0] = iovec{io.buf.data(), len};
            io.iov[1] = iovec{io.buf2.data(), len};
            s = bdev::compare_and_writev(desc, ch, &io.iov[0], 1, &io.iov[1], 1, lba, n, io_done,
                                         &io);
        }
    } else if (io.op == "write_zeroes") {
        s = bdev::write_zeroes(desc, ch, lba, n, io_done, &io);
    } else if (io.op == "unmap") {
        s = bdev::unmap(desc, ch, lba, n, io_done, &io);
    } else if (io.op == "flush") {
        s = bdev::flush(desc, ch, lba, n, io_done, &io);
    } else {  // reset (known_op() checked the name)
        s = bdev::reset(desc, ch, io_done, &io);
    }
    if (!s.ok()) return refuse(s);
    io.accepted = true;
    io.submitted_ns = runtime::now_ns();
    if (io.queue) {
        ++io.queue->outstanding;
        ++io.queue->submitted;
    }
}

std::vector<uint8_t> bytes_of(const pyb::object& data) {
    if (data.is_none()) return {};
    std::string d = data.cast<std::string>();
    return {d.begin(), d.end()};
}

}  // namespace

struct World::BdevIos {
    std::vector<std::shared_ptr<BdevIo>> open;  // not yet closed
    std::deque<std::shared_ptr<BdevIo>> retired;
    std::vector<std::shared_ptr<BdevQueue>> queues;  // not yet closed
    uint64_t next_id = 1;
    // Identifies this World's registry to its queues (BdevQueue::owner): a queue of another
    // World, or of this one before it closed, is told apart without comparing raw pointers.
    std::shared_ptr<int> token = std::make_shared<int>(0);
};

void World::BdevIosDeleter::operator()(BdevIos* b) const { delete b; }

std::shared_ptr<BdevIo> World::post_bdev_io(const std::string& name, const std::string& op,
                                            uint64_t offset_blocks, uint64_t num_blocks,
                                            pyb::object data, pyb::object data2,
                                            const std::optional<std::string>& thread,
                                            const std::shared_ptr<BdevQueue>& queue) {
    check_open();
    if (!known_op(op))
        throw pyb::value_error(fmt::format(
            "unknown bdev operation '{}' (read, write, compare, compare_and_write, "
            "write_zeroes, unmap, flush, reset)", op));
    BdevIos& r = bdev_ios();
    if (queue && queue->owner.lock() != r.token)
        throw pyb::value_error("that queue belongs to another host, or to this one before it closed");
    runtime::Thread* t = queue ? queue->thread : thread_named(thread);
    for (auto it = r.open.begin(); it != r.open.end();) {
        if ((*it)->closed) {
            r.retired.push_back(std::move(*it));
            it = r.open.erase(it);
        } else {
            ++it;
        }
    }
    while (r.retired.size() > kRetained) r.retired.pop_front();
    auto io = std::make_shared<BdevIo>();
    io->id = r.next_id++;
    io->bdev = name;
    io->op = op;
    io->offset_blocks = offset_blocks;
    io->num_blocks = num_blocks;
    io->thread = t;
    io->thread_name = t->name();
    io->queue = queue;
    if (queue) io->bdev = queue->bdev;
    io->posted_ns = sched_->now_ns();
    io->buf = bytes_of(data);
    io->buf2 = bytes_of(data2);
    Status s;
    {
        pyb::gil_scoped_release nogil;
        s = t->post([io] { start_io(*io); });
    }
    if (!s.ok())
        throw std::runtime_error(fmt::format("bdev {}: {}: cannot post to Thread {}: {}", name, op,
                                             t->name(), s.to_string()));
    r.open.push_back(io);
    return io;
}

World::BdevIos& World::bdev_ios() {
    if (!bdev_ios_) bdev_ios_.reset(new BdevIos);
    return *bdev_ios_;
}

runtime::Thread* World::thread_named(const std::optional<std::string>& name) {
    runtime::Thread* t = name ? own_thread(*name) : &app_->thread();
    if (t == nullptr) throw pyb::value_error(fmt::format("no Thread named '{}' on this host", *name));
    return t;
}

std::shared_ptr<BdevIo> World::bdev_submit(const std::string& name, const std::string& op,
                                           uint64_t offset_blocks, uint64_t num_blocks,
                                           pyb::object data, pyb::object data2,
                                           std::optional<std::string> thread,
                                           std::shared_ptr<BdevQueue> queue) {
    Guard g(*this);
    return post_bdev_io(name, op, offset_blocks, num_blocks, std::move(data), std::move(data2),
                        thread, queue);
}

std::shared_ptr<BdevQueue> World::bdev_queue(const std::string& name, bool write,
                                             std::optional<std::string> thread) {
    Guard g(*this);
    check_open();
    runtime::Thread* t = thread_named(thread);
    BdevIos& r = bdev_ios();
    std::erase_if(r.queues, [](const auto& q) { return q->state == "closed" || q->state == "failed"; });
    auto q = std::make_shared<BdevQueue>();
    q->id = r.next_id++;
    q->bdev = name;
    q->write = write;
    q->thread = t;
    q->thread_name = t->name();
    q->owner = r.token;
    Status s;
    {
        pyb::gil_scoped_release nogil;
        s = t->post([q] { open_queue(*q); });
    }
    if (!s.ok())
        throw std::runtime_error(fmt::format("bdev {}: cannot post to Thread {}: {}", name,
                                             t->name(), s.to_string()));
    r.queues.push_back(q);
    return q;
}

void World::bdev_queue_close(const std::shared_ptr<BdevQueue>& q) {
    Guard g(*this);
    check_open();
    if (q->state == "closed" || q->state == "failed") return;
    if (q->owner.lock() != bdev_ios().token) throw pyb::value_error("that queue belongs to another host");
    pyb::gil_scoped_release nogil;
    (void)q->thread->post([q] {
        if (q->state == "open" || q->state == "opening") q->state = "closing";
        if (q->state == "closing" && !q->desc) q->state = "closed";  // never opened
        maybe_close_queue(*q);
    });
}

void World::close_bdev_ios() {
    if (!bdev_ios_) return;
    // After the App stopped (its Threads run no more): whatever is still open is abandoned;
    // its descriptor belonged to a layer that is gone, so it is released, not destroyed.
    for (auto& io : bdev_ios_->open) {
        if (io->closed) continue;
        (void)io->desc.release();
        io->ch = nullptr;
        io->queue.reset();
        io->closed = io->abandoned = true;
    }
    for (auto& q : bdev_ios_->queues) {
        if (q->state == "closed" || q->state == "failed") continue;
        (void)q->desc.release();
        q->ch = nullptr;
        q->state = "closed";
    }
    bdev_ios_.reset();
}

pyb::object World::bdev_io(const std::string& name, const std::string& op, uint64_t offset_blocks,
                           uint64_t num_blocks, pyb::object data, pyb::object data2,
                           uint64_t timeout_ns) {
    Guard g(*this);
    auto io = post_bdev_io(name, op, offset_blocks, num_blocks, std::move(data), std::move(data2),
                           std::nullopt, nullptr);
    {
        pyb::gil_scoped_release nogil;
        // Until its descriptor is closed too (a few steps after the completion).
        sched_->run_until([&] { return io->closed; }, sched_->now_ns() + timeout_ns);
    }
    if (!io->done())
        throw std::runtime_error(fmt::format("bdev {}: {} did not complete within {} ns of virtual time",
                                             name, op, timeout_ns));
    if (!io->accepted)
        throw std::runtime_error(fmt::format("bdev {}: {}: {}", name, op, io->refused.to_string()));
    if (!io->status.ok()) {
        pyb::dict err;
        err["errc"] = std::string(errc_name(io->status.code));
        err["nvme_status"] = io->status.nvme_status;
        return std::move(err);
    }
    if (op == "read") return pyb::bytes(reinterpret_cast<const char*>(io->buf.data()), io->buf.size());
    return pyb::none();
}

void bind_bdev_io(pyb::module_& m, pyb::class_<World>& world) {
    pyb::class_<BdevIo, std::shared_ptr<BdevIo>>(
        m, "BdevIo",
        "One asynchronous bdev I/O (World.bdev_submit); use strata.bdev.Io. Read-only: the "
        "simulator submits and completes it on its Thread.")
        .def_readonly("id", &BdevIo::id)
        .def_readonly("bdev", &BdevIo::bdev)
        .def_readonly("op", &BdevIo::op)
        .def_readonly("offset_blocks", &BdevIo::offset_blocks)
        .def_readonly("num_blocks", &BdevIo::num_blocks)
        .def_readonly("posted_ns", &BdevIo::posted_ns)
        .def_readonly("submitted_ns", &BdevIo::submitted_ns)
        .def_readonly("completed_ns", &BdevIo::completed_ns)
        .def_readonly("started", &BdevIo::started)
        .def_readonly("accepted", &BdevIo::accepted)
        .def_readonly("completions", &BdevIo::completions)
        .def_readonly("closed", &BdevIo::closed)
        .def_property_readonly("done", &BdevIo::done)
        .def_property_readonly("status", &BdevIo::status_name)
        .def_property_readonly("nvme_status", [](const BdevIo& io) { return io.status.nvme_status; })
        .def_readonly("thread", &BdevIo::thread_name)
        .def_property_readonly("refusal", [](const BdevIo& io) -> std::optional<std::string> {
            if (!io.started || io.accepted) return std::nullopt;
            return io.refused.to_string();
        })
        .def_property_readonly("data", [](const BdevIo& io) -> pyb::object {
            if (io.op != "read" || io.completions == 0 || !io.status.ok()) return pyb::none();
            return pyb::bytes(reinterpret_cast<const char*>(io.buf.data()), io.buf.size());
        });
    pyb::class_<BdevQueue, std::shared_ptr<BdevQueue>>(
        m, "BdevQueue",
        "A bdev descriptor and channel held open on one Thread (World.bdev_queue); use "
        "strata.bdev.Queue.")
        .def_readonly("id", &BdevQueue::id)
        .def_readonly("bdev", &BdevQueue::bdev)
        .def_readonly("write", &BdevQueue::write)
        .def_readonly("thread", &BdevQueue::thread_name)
        .def_readonly("state", &BdevQueue::state)
        .def_readonly("removed", &BdevQueue::removed)
        .def_readonly("outstanding", &BdevQueue::outstanding)
        .def_readonly("submitted", &BdevQueue::submitted)
        .def_readonly("completed", &BdevQueue::completed)
        .def_property_readonly("error", [](const BdevQueue& q) -> std::optional<std::string> {
            if (q.state != "failed") return std::nullopt;
            return q.error.to_string();
        });
    world.def("bdev_queue", &World::bdev_queue, pyb::arg("name"), pyb::arg("write") = true,
              pyb::arg("thread") = pyb::none(),
              "Posts the opening of a BdevQueue on a Thread of this host (the app Thread by "
              "default); I/O submitted through it shares its channel.");
    world.def("bdev_queue_close", &World::bdev_queue_close, pyb::arg("queue"),
              "Posts its closing: it closes once its I/O has completed.");
    world.def("bdev_submit", &World::bdev_submit, pyb::arg("name"), pyb::arg("op"),
              pyb::arg("offset_blocks") = 0, pyb::arg("num_blocks") = 0,
              pyb::arg("data") = pyb::none(), pyb::arg("data2") = pyb::none(),
              pyb::arg("thread") = pyb::none(), pyb::arg("queue") = nullptr,
              "Posts one asynchronous I/O through the bdev layer to a Thread of this host (the "
              "app Thread by default); returns a BdevIo the simulator submits and completes as "
              "it runs (see strata.bdev.Io).");
}

}  // namespace strata::py
