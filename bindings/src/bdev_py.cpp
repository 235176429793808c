// World::bdev_io: one I/O to a bdev through the bdev layer, driven on the simulator, for the
// typed Python layer (strata.bdev.Bdev).
#include <cstring>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include <strata/bdev/bdev.h>
#include <strata/bdev/module.h>

#include "world.h"

namespace pyb = pybind11;

namespace strata::py {

namespace {

struct IoState {
    std::unique_ptr<bdev::Desc> desc;
    bdev::Channel* ch = nullptr;
    std::vector<uint8_t> buf;
    std::vector<uint8_t> buf2;  // compare_and_write: the data to write
    iovec iov[2]{};
    Status submitted;
    bool started = false, done = false, closed = false;
    bdev::IoStatus status;
    uint32_t block_size = 0;
};

}  // namespace

pyb::object World::bdev_io(const std::string& name, const std::string& op, uint64_t offset_blocks,
                           uint64_t num_blocks, pyb::object data, pyb::object data2,
                           uint64_t timeout_ns) {
    Guard g(*this);
    check_open();
    auto st = std::make_shared<IoState>();
    if (!data.is_none()) {
        std::string d = data.cast<std::string>();
        st->buf.assign(d.begin(), d.end());
    }
    if (!data2.is_none()) {
        std::string d = data2.cast<std::string>();
        st->buf2.assign(d.begin(), d.end());
    }
    const bool writes = op == "write" || op == "write_zeroes" || op == "unmap" || op == "flush" ||
                        op == "compare_and_write";
    {
        pyb::gil_scoped_release nogil;
        (void)app_->thread().post([st, name, op, offset_blocks, num_blocks, writes] {
            st->started = true;
            auto d = bdev::open(name, writes);
            if (!d) {
                st->submitted = Status(d.code(), "open");
                st->done = true;
                return;
            }
            st->desc = std::move(*d);
            st->ch = st->desc->get_channel();
            if (st->ch == nullptr) {
                st->submitted = Status(Errc::shutdown, "no channel");
                st->done = true;
                return;
            }
            st->block_size = st->desc->bdev().block_size();
            const size_t len = num_blocks * st->block_size;
            auto cb = [](void* c, const bdev::IoStatus& s) {
                auto* state = static_cast<IoState*>(c);
                state->status = s;
                state->done = true;
            };
            bdev::Desc& desc = *st->desc;
            bdev::Channel& ch = *st->ch;
            Status s;
            if (op == "read") {
                st->buf.assign(len, 0);
                s = bdev::read(desc, ch, st->buf.data(), offset_blocks, num_blocks, cb, st.get());
            } else if (op == "write" || op == "compare") {
                if (st->buf.size() != len) {
                    s = Status(Errc::invalid_argument, "data length is not num_blocks * block_size");
                } else {
                    st->iov[0] = iovec{st->buf.data(), len};
                    s = op == "write" ? bdev::writev(desc, ch, st->iov, 1, offset_blocks, num_blocks, cb, st.get())
                                      : bdev::comparev(desc, ch, st->iov, 1, offset_blocks, num_blocks, cb, st.get());
                }
            } else if (op == "compare_and_write") {
                if (st->buf.size() != len || st->buf2.size() != len) {
                    s = Status(Errc::invalid_argument, "data length is not num_blocks * block_size");
                } else {
                    st->iov[0] = iovec{st->buf.data(), len};
                    st->iov[1] = iovec{st->buf2.data(), len};
                    s = bdev::compare_and_writev(desc, ch, &st->iov[0], 1, &st->iov[1], 1, offset_blocks,
                                                 num_blocks, cb, st.get());
                }
            } else if (op == "write_zeroes") {
                s = bdev::write_zeroes(desc, ch, offset_blocks, num_blocks, cb, st.get());
            } else if (op == "unmap") {
                s = bdev::unmap(desc, ch, offset_blocks, num_blocks, cb, st.get());
            } else if (op == "flush") {
                s = bdev::flush(desc, ch, offset_blocks, num_blocks, cb, st.get());
            } else if (op == "reset") {
                s = bdev::reset(desc, ch, cb, st.get());
            } else {
                s = Status(Errc::invalid_argument, "unknown operation");
            }
            st->submitted = s;
            if (!s.ok()) st->done = true;
        });
        sched_->run_until([&] { return st->done; }, sched_->now_ns() + timeout_ns);
        // Close on the app Thread whatever happened (an I/O still out keeps the state alive).
        (void)app_->thread().post([st] {
            if (st->done) {
                if (st->ch) bdev::put_channel(st->ch);
                st->ch = nullptr;
                st->desc.reset();
            }
            st->closed = true;
        });
        sched_->run_until([&] { return st->closed; }, sched_->now_ns() + timeout_ns);
    }
    if (!st->done)
        throw std::runtime_error(fmt::format("bdev {}: {} did not complete within {} ns of virtual time",
                                             name, op, timeout_ns));
    if (!st->submitted.ok())
        throw std::runtime_error(fmt::format("bdev {}: {}: {}", name, op, st->submitted.to_string()));
    if (!st->status.ok()) {
        pyb::dict err;
        err["errc"] = std::string(errc_name(st->status.code));
        err["nvme_status"] = st->status.nvme_status;
        return std::move(err);
    }
    if (op == "read") return pyb::bytes(reinterpret_cast<const char*>(st->buf.data()), st->buf.size());
    return pyb::none();
}

}  // namespace strata::py
