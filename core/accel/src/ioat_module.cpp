// The I/OAT module: copy and fill on one ioat::Channel per Thread (one PCI function each).
//
// Buffers are translated to IOVAs with env::translate; a buffer spread over several DMA
// regions is split into pieces (each piece one ioat op, the task completes when all have).
// What the engine cannot do is handed to software and counted as a fallback: buffers not in
// DMA memory, iovec lists (more than one element), more than kMaxPieces pieces, zero length,
// fill without block-fill support, and a hot-removed channel. When the ring has no room the
// task waits in a FIFO inside the module and is retried from poll() (no refusal).
#include <algorithm>
#include <span>

#include <strata/env/memory.h>
#include <strata/ioat/ioat.h>

#include "internal.h"

namespace strata::accel {

namespace {

constexpr size_t kMaxSegments = 8;
constexpr size_t kMaxPieces = 16;

class IoatModule;

class IoatChannel final : public ModuleChannel {
public:
    IoatChannel(IoatModule& module, env::PciAddress address, std::unique_ptr<ioat::Channel> ch)
        : module_(module), address_(address), ch_(std::move(ch)) {}
    ~IoatChannel() override;

    Status submit(Task& task) noexcept override {
        if (!waiting_.empty()) {
            waiting_.push_back(task);
            return {};
        }
        return try_submit(task, /*from_wait=*/false);
    }

    int poll() noexcept override {
        int work = ch_->process_completions();
        while (!waiting_.empty()) {
            Task* t = waiting_.pop_front();
            const size_t before = waiting_.size();
            (void)try_submit(*t, /*from_wait=*/true);
            if (waiting_.size() > before) break;  // back at the front: the ring is still full
            ++work;
        }
        if (dirty_) {
            ch_->flush();
            dirty_ = false;
        }
        return work;
    }

    uint32_t outstanding() const noexcept override {
        return ch_->outstanding() + static_cast<uint32_t>(waiting_.size());
    }

private:
    struct Piece {
        uint64_t dst, src, len;
    };

    static void piece_done(void* ctx, Status s) noexcept {
        auto* t = static_cast<Task*>(ctx);
        if (!s && t->status.ok()) t->status = s;
        if (--t->pending == 0) complete_task(*t, t->status);
    }

    // Ok unless falling back failed (never in practice). Waits (front of the FIFO) when the
    // ring is short of slots.
    Status try_submit(Task& t, bool from_wait) noexcept {
        const Opcode op = t.op.opcode;
        const bool fill = op == Opcode::fill;
        if ((op != Opcode::copy && !fill) || t.dst_len == 0 || t.dst_cnt != 1 ||
            (!fill && t.src_cnt != 1) || ch_->removed() || (fill && !ch_->info().fill_supported))
            return fallback_to_software(t);
        env::IovaSegment dseg[kMaxSegments], sseg[kMaxSegments];
        size_t dn = 0, sn = 0;
        if (!env::translate(t.dst[0].iov_base, t.dst[0].iov_len, std::span(dseg), &dn))
            return fallback_to_software(t);
        if (!fill && !env::translate(t.src[0].iov_base, t.src[0].iov_len, std::span(sseg), &sn))
            return fallback_to_software(t);
        Piece pieces[kMaxPieces];
        size_t np = 0;
        if (fill) {
            for (size_t i = 0; i < dn; ++i) pieces[np++] = {dseg[i].iova, 0, dseg[i].len};
        } else {
            size_t di = 0, si = 0, doff = 0, soff = 0;
            while (di < dn && si < sn) {
                if (np == kMaxPieces) return fallback_to_software(t);
                const size_t n = std::min(dseg[di].len - doff, sseg[si].len - soff);
                pieces[np++] = {dseg[di].iova + doff, sseg[si].iova + soff, n};
                doff += n;
                soff += n;
                if (doff == dseg[di].len) {
                    ++di;
                    doff = 0;
                }
                if (soff == sseg[si].len) {
                    ++si;
                    soff = 0;
                }
            }
        }
        // Ring slots needed (each op splits at XFERCAP).
        const uint64_t xfer = std::max<uint64_t>(ch_->info().max_transfer_bytes, 1);
        uint64_t slots = 0;
        for (size_t i = 0; i < np; ++i) slots += (pieces[i].len + xfer - 1) / xfer;
        if (slots > ch_->info().ring_size) return fallback_to_software(t);
        if (slots > ch_->ring_free()) {
            if (from_wait)
                waiting_.push_front(t);
            else
                waiting_.push_back(t);
            return {};
        }
        t.status = Status{};
        t.pending = static_cast<uint32_t>(np) + 1;  // +1 held until every piece is queued
        const uint64_t pattern = 0x0101010101010101ull * t.op.fill_byte;
        size_t queued = 0;
        for (size_t i = 0; i < np; ++i) {
            Status s = fill ? ch_->submit_fill(pieces[i].dst, pattern, pieces[i].len,
                                               &IoatChannel::piece_done, &t)
                            : ch_->submit_copy(pieces[i].dst, pieces[i].src, pieces[i].len,
                                               &IoatChannel::piece_done, &t);
            if (!s) {
                t.pending -= static_cast<uint32_t>(np - i);  // the pieces never queued
                if (t.status.ok()) t.status = s;
                break;
            }
            ++queued;
        }
        dirty_ = true;
        if (queued == 0) {
            // Nothing reached the ring (e.g. removed meanwhile): software does the whole op.
            t.pending = 0;
            t.status = Status{};
            return fallback_to_software(t);
        }
        // Release the submit hold; the last piece callback completes the task (never here:
        // piece callbacks only run from process_completions, so pending stays > 0 now).
        --t.pending;
        return {};
    }

    IoatModule& module_;
    env::PciAddress address_;
    std::unique_ptr<ioat::Channel> ch_;
    IntrusiveList<Task> waiting_;
    bool dirty_ = false;
};

class IoatModule final : public Module {
public:
    const char* name() const noexcept override { return "ioat"; }
    bool supports(Opcode op) const noexcept override {
        return op == Opcode::copy || op == Opcode::fill;
    }
    int priority() const noexcept override { return 10; }

    Result<void> start() override {
        std::lock_guard lock(mu_);
        auto found = ioat::probe();
        if (!found) return found.error();
        free_ = *found;
        total_ = free_.size();
        started_ = true;
        STRATA_NOTICELOG(log_accel, "ioat accel module: {} channel(s) found", total_.load());
        return {};
    }
    void stop() override {
        std::lock_guard lock(mu_);
        started_ = false;
        free_.clear();
        total_ = 0;
    }
    bool available() const noexcept override { return started_.load() && total_.load() > 0; }

    // Framework holds its mutex around create_channel.
    std::unique_ptr<ModuleChannel> create_channel(runtime::Thread& thread, ChannelImpl&) override {
        std::lock_guard lock(mu_);
        while (!free_.empty()) {
            const env::PciAddress addr = free_.front();
            free_.erase(free_.begin());
            auto ch = ioat::Channel::attach(addr, thread);
            if (ch) return std::make_unique<IoatChannel>(*this, addr, std::move(*ch));
            STRATA_WARNLOG(log_accel, "ioat accel module: attach failed: {}", ch.error().message());
        }
        return nullptr;  // no function left: this Thread's copies/fills go to software
    }

    // A channel's ioat::Channel detaches in the background (the engine must confirm its reset
    // before the ring is freed); the framework's fini waits for these.
    bool busy() const noexcept override { return closing_.load() > 0; }

    // From a channel destructor, on its Thread.
    void close(std::unique_ptr<ioat::Channel> ch, const env::PciAddress& addr) {
        ++closing_;
        ioat::Channel::close(std::move(ch), &IoatModule::on_closed, new Closing{this, addr});
    }

private:
    struct Closing {
        IoatModule* module;
        env::PciAddress addr;
    };
    // On the channel's Thread once the detach finished: the function can serve the next Thread,
    // unless its ring had to be kept (the channel never confirmed its reset: do not reuse it).
    static void on_closed(void* ctx, const ioat::DetachResult& r) {
        std::unique_ptr<Closing> c(static_cast<Closing*>(ctx));
        IoatModule& m = *c->module;
        if (r.ring_leaked) {
            STRATA_ERRLOG(log_accel, "ioat accel module: {} did not confirm its reset, not reused",
                          c->addr.to_string());
        } else {
            std::lock_guard lock(m.mu_);
            if (m.started_) m.free_.push_back(c->addr);
        }
        --m.closing_;
    }

    std::mutex mu_;
    std::vector<env::PciAddress> free_;
    std::atomic<size_t> total_{0};
    std::atomic<bool> started_{false};
    std::atomic<int> closing_{0};
};

IoatChannel::~IoatChannel() {
    // Outstanding ops are dropped (the framework warns): close() drops their callbacks, resets
    // the channel and frees its ring once the engine confirmed; the function returns to the pool
    // then.
    module_.close(std::move(ch_), address_);
}

}  // namespace

std::unique_ptr<Module> make_ioat_module() {
    return std::make_unique<IoatModule>();
}

}  // namespace strata::accel
