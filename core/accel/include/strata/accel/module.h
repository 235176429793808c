// Module-author API of the accel framework: what a module (software, ioat) implements.
//
// A Module is a process-wide object in the explicit table (src/framework.cpp, no static
// constructors). start()/stop() run on the control path. For each Thread's accel channel the
// framework asks every started module for a ModuleChannel (create_channel on that Thread;
// nullptr: this Thread has none, ops routed there go to software and count as fallbacks).
//
// Data path: ModuleChannel::submit(task) takes a normalized Task (buffers as iovecs) and
// returns ok, after which the module owns the task until it calls complete_task() -- from its
// poll() (or another callback on the owner Thread), never inside submit. It may instead hand
// the task to software with fallback_to_software() (also counted). Any other Status refuses
// the op: submit() returns it to the caller, and inside an already accepted batch the op
// completes with it from the software queue (never re-submitted).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>

#include <strata/accel/accel.h>
#include <strata/base/intrusive_list.h>
#include <strata/base/status.h>
#include <strata/runtime/thread.h>

namespace strata::accel {

inline constexpr size_t kMaxModules = 4;

// One op inside the framework, from the channel's preallocated pool.
struct Task : ListHook<> {
    Op op;                              // the caller's descriptor (copied)
    const struct iovec* src = nullptr;  // normalized source (op.src_iov or &src_one)
    uint32_t src_cnt = 0;
    const struct iovec* dst = nullptr;  // normalized destination
    uint32_t dst_cnt = 0;
    uint64_t src_len = 0;  // total bytes (copy/compare/crc/xor: len of each source)
    uint64_t dst_len = 0;
    struct iovec src_one {};
    struct iovec dst_one {};
    DoneFn done = nullptr;
    void* ctx = nullptr;
    Batch* batch = nullptr;
    uint32_t batch_index = 0;
    uint8_t module_index = 0;
    ChannelImpl* channel = nullptr;
    // Module scratch.
    uint32_t pending = 0;
    Status status;
    // Set by the framework: complete with `status` without executing (a batched op a module
    // refused after the batch was accepted).
    bool fail_only = false;
};

class ModuleChannel {
public:
    virtual ~ModuleChannel() = default;
    virtual Status submit(Task& task) noexcept = 0;
    // Makes progress; returns how much work was done (0: idle).
    virtual int poll() noexcept = 0;
    virtual uint32_t outstanding() const noexcept = 0;
};

class Module {
public:
    virtual ~Module() = default;
    virtual const char* name() const noexcept = 0;
    virtual bool supports(Opcode op) const noexcept = 0;
    // Higher wins when several started modules support an opcode (software: 0).
    virtual int priority() const noexcept = 0;
    virtual Result<void> start() = 0;  // control path
    virtual void stop() = 0;
    // Started and able to serve (the ioat module: at least one function found).
    virtual bool available() const noexcept = 0;
    // On `thread`; nullptr: no channel for this Thread.
    virtual std::unique_ptr<ModuleChannel> create_channel(runtime::Thread& thread,
                                                          ChannelImpl& owner) = 0;
    // Extra fields for accel_get_module_info (may stay empty).
    virtual void describe(std::string& out) const { (void)out; }
    // Work its destroyed channels still finish in the background (the ioat module: a device
    // confirming its reset before the ring is freed). fini completes only once no module is busy.
    virtual bool busy() const noexcept { return false; }
};

// Completes a task accepted by a module (owner Thread, never inside submit).
void complete_task(Task& task, Status status) noexcept;
// Hands a task the module cannot do to this channel's software module (counted as fallback).
Status fallback_to_software(Task& task) noexcept;

}  // namespace strata::accel
