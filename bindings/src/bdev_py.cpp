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

// One bdev I/O submitted from Python. Fields below `thread` are written on that Thread by the
// simulator and read by Python between steps (one OS thread: no race).
struct BdevIo : std::enable_shared_from_this<BdevIo> {
    uint64_t id = 0;
    std::string bdev, op;
    uint64_t offset_blocks = 0, num_blocks = 0;
    runtime::Thread* thread = nullptr;
    std::string thread_name;  // thread's (the Thread is gone once its World closed)
    uint64_t posted_ns = 0;

    bool started = false;   // the submit message ran
    bool accepted = false;  // the bdev layer took it: its callback runs (once)
    Status refused;         // why it was not submitted (open, channel or submit refused)
    uint32_t completions = 0;
    bdev::IoStatus status;
    uint64_t submitted_ns = 0, completed_ns = 0;
    bool closed = false;     // desc and channel given back (or abandoned when the World closed)
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

// On io.thread: gives the descriptor and channel back.
void close_io(BdevIo& io) {
    if (io.ch) bdev::put_channel(io.ch);
    io.ch = nullptr;
    io.desc.reset();
    io.closed = true;
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
    auto d = bdev::open(io.bdev, writes(io.op));
    if (!d) return refuse(Status(d.code(), "open"));
    io.desc = std::move(*d);
    io.ch = io.desc->get_channel();
    if (io.ch == nullptr) return refuse(Status(Errc::shutdown, "no channel"));
    const uint32_t block_size = io.desc->bdev().block_size();
    const bool has_data = io.op == "write" || io.op == "compare" || io.op == "compare_and_write";
    if (has_data && io.num_blocks == 0) io.num_blocks = io.buf.size() / block_size;  // "whole data"
    const size_t len = io.num_blocks * block_size;
    bdev::Desc& desc = *io.desc;
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
    uint64_t next_id = 1;
};

void World::BdevIosDeleter::operator()(BdevIos* b) const { delete b; }

std::shared_ptr<BdevIo> World::post_bdev_io(const std::string& name, const std::string& op,
                                            uint64_t offset_blocks, uint64_t num_blocks,
                                            pyb::object data, pyb::object data2,
                                            const std::optional<std::string>& thread) {
    check_open();
    if (!known_op(op))
        throw pyb::value_error(fmt::format(
            "unknown bdev operation '{}' (read, write, compare, compare_and_write, "
            "write_zeroes, unmap, flush, reset)", op));
    runtime::Thread* t = thread ? own_thread(*thread) : &app_->thread();
    if (t == nullptr) throw pyb::value_error(fmt::format("no Thread named '{}' on this host", *thread));
    if (!bdev_ios_) bdev_ios_.reset(new BdevIos);
    BdevIos& r = *bdev_ios_;
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

std::shared_ptr<BdevIo> World::bdev_submit(const std::string& name, const std::string& op,
                                           uint64_t offset_blocks, uint64_t num_blocks,
                                           pyb::object data, pyb::object data2,
                                           std::optional<std::string> thread) {
    Guard g(*this);
    return post_bdev_io(name, op, offset_blocks, num_blocks, std::move(data), std::move(data2),
                        thread);
}

void World::close_bdev_ios() {
    if (!bdev_ios_) return;
    // After the App stopped (its Threads run no more): whatever is still open is abandoned;
    // its descriptor belonged to a layer that is gone, so it is released, not destroyed.
    for (auto& io : bdev_ios_->open) {
        if (io->closed) continue;
        (void)io->desc.release();
        io->ch = nullptr;
        io->closed = io->abandoned = true;
    }
    bdev_ios_.reset();
}

pyb::object World::bdev_io(const std::string& name, const std::string& op, uint64_t offset_blocks,
                           uint64_t num_blocks, pyb::object data, pyb::object data2,
                           uint64_t timeout_ns) {
    Guard g(*this);
    auto io = post_bdev_io(name, op, offset_blocks, num_blocks, std::move(data), std::move(data2),
                           std::nullopt);
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
    world.def("bdev_submit", &World::bdev_submit, pyb::arg("name"), pyb::arg("op"),
              pyb::arg("offset_blocks") = 0, pyb::arg("num_blocks") = 0,
              pyb::arg("data") = pyb::none(), pyb::arg("data2") = pyb::none(),
              pyb::arg("thread") = pyb::none(),
              "Posts one asynchronous I/O through the bdev layer to a Thread of this host (the "
              "app Thread by default); returns a BdevIo the simulator submits and completes as "
              "it runs (see strata.bdev.Io).");
}

}  // namespace strata::py
