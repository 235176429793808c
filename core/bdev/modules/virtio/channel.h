// The part of a virtio_blk / virtio_scsi I/O channel that does not depend on the device type:
// one of the controller's request queues per Thread (waiting, I/O queued, while every queue is
// held), the queue's per-slot memory (slot area, bounce buffers) and free slots, the poller
// (reap the used ring, start what waits, one notify per batch, fail what a broken queue held)
// and the periodic check for a device gone. The device type writes and reads its requests.
//
// CRTP (no virtual call per I/O); Derived's constructor ends with attach_queue(). It provides:
//   bool start(BdevIo&) noexcept         false: no room, the I/O stays queued
//   void finish(BdevIo&, uint32_t len) noexcept
//   static uint16_t slot_of(BdevIo&) noexcept   the slot start() gave the I/O
//   void no_queue() noexcept / void got_queue(int q) noexcept   (logging hooks)
// Owner (the bdev or controller) provides: int take_queue() (-1: none free), put_queue(int),
// bool is_gone(), device_gone(), name(), virtio::Device& device().
// Owning Thread: the channel's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <strata/base/assert.h>
#include <strata/base/log.h>
#include <strata/bdev/module.h>
#include <strata/runtime/io_device.h>
#include <strata/runtime/scheduler.h>
#include <strata/runtime/thread.h>
#include <strata/virtio/device.h>

namespace strata::bdev::virtio_channel {

inline constexpr size_t kReapBatch = 64;
// How often each channel asks the transport whether the device is still there (virtio-user: a
// non-blocking peek at the socket): a dead back end's I/O fails within this.
inline constexpr uint64_t kGoneCheckNs = 100'000'000;

// Where a queue's per-slot memory lies in its extra area: slot_bytes per slot (rounded up to
// pages), then bounce_gap bytes, then one bounce buffer of max_transfer bytes per slot.
struct SlotLayout {
    size_t slot_bytes;
    size_t bounce_gap;
    uint32_t max_transfer;
    size_t slot_area(uint16_t slots) const noexcept {
        return (slot_bytes * slots + 4095) / 4096 * 4096;
    }
};

template <class Derived, class Owner>
class QueueChannel : public runtime::IoChannel {
public:
    ~QueueChannel() override {
        thread().unregister_poller(poller_);
        thread().unregister_poller(gone_poller_);
        if (qidx_ < 0) return;
        if (vq_->in_flight() != 0 || !queued_.empty())
            STRATA_ERRLOG(log_, "{} {}: channel destroyed with {} I/O in flight", kind_,
                          owner_.name(), vq_->in_flight());
        while (queued_.pop_front() != nullptr) {
        }
        owner_.put_queue(qidx_);
    }

protected:
    // sizing_queue: a queue of the size every request queue has (free_slots_ is reserved to it).
    QueueChannel(Owner& owner, runtime::Thread& thread, uint16_t sizing_queue, SlotLayout layout,
                 LogComponent& log, const char* kind, const char* poller_name,
                 const char* gone_poller_name)
        : owner_(owner),
          dev_(owner.device()),
          thr_(thread),
          layout_(layout),
          log_(log),
          kind_(kind),
          simulated_(thread.scheduler().simulated()) {
        free_slots_.reserve(dev_.queue(sizing_queue).size());
        poller_ = thread.register_poller(&QueueChannel::poll, this, poller_name);
        gone_poller_ = thread.register_poller(&QueueChannel::check_gone, this, gone_poller_name,
                                              kGoneCheckNs);
    }

    // Queues the I/O behind what waits (keeping order) unless it starts now.
    void start_or_queue(BdevIo& io) noexcept {
        if (qidx_ < 0 || !queued_.empty() || !derived().start(io)) queued_.push_back(io);
    }
    uint8_t* slot_memory(uint16_t slot) noexcept { return extra_ + layout_.slot_bytes * slot; }
    uint64_t slot_device_address(uint16_t slot) const noexcept {
        return extra_dev_ + layout_.slot_bytes * slot;
    }
    uint8_t* bounce(uint16_t slot) noexcept {
        return extra_ + layout_.slot_area(nslots_) + layout_.bounce_gap +
               size_t{layout_.max_transfer} * slot;
    }

    Owner& owner_;
    virtio::Device& dev_;
    runtime::Thread& thr_;  // thread() is set only after the constructor
    int qidx_ = -1;         // the virtio queue index; -1: waiting for a free queue
    virtio::Virtqueue* vq_ = nullptr;
    uint16_t nslots_ = 0;
    std::vector<uint16_t> free_slots_;  // reserved to the queue size: push/pop never allocate
    IntrusiveList<BdevIo, QueuedTag> queued_;
    bool can_bounce_ = false;  // the queue's extra memory holds bounce buffers (virtio-user)
    bool bounce_logged_ = false;

    // Takes a free queue (the derived constructor's last step, then each poll while waiting).
    bool attach_queue() noexcept {
        const int q = owner_.take_queue();
        if (q < 0) {
            derived().no_queue();
            return false;
        }
        qidx_ = q;
        vq_ = &dev_.queue(static_cast<uint16_t>(q));
        extra_ = static_cast<uint8_t*>(dev_.queue_extra(static_cast<uint16_t>(q)));
        nslots_ = vq_->size();
        extra_dev_ = dev_.device_address(extra_, layout_.slot_area(nslots_));
        STRATA_ASSERT(extra_dev_ != virtio::kNoDeviceAddress);
        can_bounce_ = dev_.queue_extra_bytes() >= layout_.slot_area(nslots_) + layout_.bounce_gap +
                                                      size_t{layout_.max_transfer} * nslots_;
        free_slots_.clear();
        for (uint16_t i = nslots_; i > 0; --i) free_slots_.push_back(static_cast<uint16_t>(i - 1));
        derived().got_queue(q);
        return true;
    }

private:
    Derived& derived() noexcept { return static_cast<Derived&>(*this); }

    static runtime::PollStatus poll(void* self) {
        return static_cast<QueueChannel*>(self)->poll_once();
    }

    runtime::PollStatus poll_once() noexcept {
        if (qidx_ < 0 && owner_.is_gone()) {
            // No queue and the device is gone: what waits for one fails.
            size_t failed = 0;
            while (BdevIo* io = queued_.pop_front()) {
                io->complete(Errc::io_error);
                ++failed;
            }
            return failed != 0 ? runtime::PollStatus::busy : runtime::PollStatus::idle;
        }
        if (qidx_ < 0 && (queued_.empty() || !attach_queue())) return runtime::PollStatus::idle;
        size_t done = 0;
        if (vq_->in_flight() != 0) {
            virtio::VqCompletion cpl[kReapBatch];
            const size_t n = vq_->poll(cpl);
            for (size_t i = 0; i < n; ++i)
                derived().finish(*static_cast<BdevIo*>(cpl[i].cookie), cpl[i].len);
            done += n;
        }
        while (!queued_.empty()) {
            BdevIo& io = queued_.front();
            if (!derived().start(io)) break;
            queued_.pop_front();
            ++done;
        }
        if (vq_->flush()) dev_.notify(static_cast<uint16_t>(qidx_));
        if (vq_->broken() && vq_->in_flight() != 0) {
            // The device broke the ring: what it still holds fails here, never comes back.
            virtio::VqCompletion cpl[kReapBatch];
            size_t n;
            while ((n = vq_->take_in_flight(cpl)) != 0) {
                for (size_t i = 0; i < n; ++i) {
                    auto& io = *static_cast<BdevIo*>(cpl[i].cookie);
                    free_slots_.push_back(Derived::slot_of(io));
                    io.complete(Errc::io_error);
                }
                done += n;
            }
        }
        // Under the simulator, the back end answers in wall-clock time: stay runnable while it
        // holds I/O, or the simulator would take the world for idle and jump its clock.
        const bool waiting = simulated_ && vq_->in_flight() != 0;
        return done != 0 || waiting ? runtime::PollStatus::busy : runtime::PollStatus::idle;
    }

    static runtime::PollStatus check_gone(void* self) {
        auto* c = static_cast<QueueChannel*>(self);
        if (!c->owner_.is_gone() && !c->dev_.gone()) return runtime::PollStatus::idle;
        c->owner_.device_gone();
        if (c->qidx_ >= 0 && !c->vq_->broken()) {
            // The poller fails what the queue held (take_in_flight) on its next run.
            c->vq_->stop("device gone");
            return runtime::PollStatus::busy;
        }
        return runtime::PollStatus::idle;
    }

    SlotLayout layout_;
    LogComponent& log_;
    const char* kind_;
    bool simulated_ = false;
    uint8_t* extra_ = nullptr;
    uint64_t extra_dev_ = 0;  // the device address of extra_ (slot memory)
    runtime::Poller* poller_ = nullptr;
    runtime::Poller* gone_poller_ = nullptr;
};

}  // namespace strata::bdev::virtio_channel
