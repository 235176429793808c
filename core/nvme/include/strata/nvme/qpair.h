// An I/O queue pair: one submission and one completion queue, owned and driven by one Thread.
//
// Data path: every call here runs on the owner Thread, takes no lock, makes no syscall and does
// not allocate. A command uses a request from a pool fixed at creation; `done(ctx, cpl)` runs
// exactly once, from process_completions() (the qpair's poller by default), never inside the
// submitting call.
//
// Buffers are DMA memory (env::dma_alloc or registered). They are described by PRPs when they
// can be (the first segment may start anywhere dword aligned, every other boundary must be a
// page boundary), else by an SGL if the controller supports SGLs, else the call fails with
// Errc::invalid_argument. Submissions are batched: the SQ tail doorbell is written once per
// process_completions() (or flush_submissions()), not per command.
//
// When the SQ is full, or the qpair is (re)connecting, a submitted command waits in software
// and goes out as soon as there is room; Errc::busy means the request pool itself is empty.
//
// A hostile or broken device cannot crash the qpair: a completion with an unknown or idle
// command id, a SQ head outside the queue or another queue's SQ id is rejected, counted in
// stats().bad_completions and logged (rate limited).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>

#include <strata/base/status.h>
#include <strata/nvme/completion.h>
#include <strata/nvme/spec/queue.h>
#include <strata/runtime/thread.h>

namespace strata::nvme {

struct Namespace;
class ControllerImpl;
class QPairImpl;

struct QPairOptions {
    uint32_t queue_entries = 256;  // clamped to [2, CAP.MQES + 1]
    uint32_t requests = 0;         // request pool size (1..65535); 0: queue_entries - 1
    bool own_poller = true;        // register a poller on the owner that reaps completions
    uint32_t max_completions_per_poll = 0;  // 0: queue_entries - 1
};

// Flags for reads and writes.
enum IoFlag : uint32_t {
    kIoFua = 1u << 0,         // Force Unit Access (write, read)
    kIoDeallocate = 1u << 1,  // Write Zeroes: deallocate the blocks too
};

struct QPairStats {
    uint64_t submitted = 0;
    uint64_t completed = 0;
    uint64_t errors = 0;           // completions with a non-success status
    uint64_t waited_for_room = 0;  // commands that waited because the SQ was full
    uint64_t doorbells = 0;        // SQ tail doorbell writes
    uint64_t bad_completions = 0;  // rejected device completions
    uint64_t timeouts = 0;
    uint64_t reconnects = 0;
};

class QPair {
public:
    ~QPair();
    QPair(const QPair&) = delete;
    QPair& operator=(const QPair&) = delete;

    uint16_t id() const noexcept;
    runtime::Thread& owner() const noexcept;
    bool connected() const noexcept;
    // What a submission would meet now: Errc::ok when it is accepted (sent, or waiting while
    // the qpair (re)connects), Errc::device_removed when the controller failed or the qpair is
    // being freed, Errc::io_error while an NVMe/TCP reconnect is past fast_io_fail_timeout_sec.
    // Lets a caller holding I/O for a reconnect (bdev_nvme) decide whether it can still wait.
    Errc submit_state() const noexcept;
    uint32_t queue_entries() const noexcept;
    uint32_t outstanding() const noexcept;  // submitted and not yet completed (incl. waiting)
    const QPairStats& stats() const noexcept;

    // `blocks` is 1..ns.max_io_blocks. Errc::invalid_argument for a bad count or buffer,
    // Errc::busy for an empty request pool, Errc::device_removed for a failed controller.
    Status read(const Namespace& ns, void* buf, uint64_t lba, uint32_t blocks, IoDoneFn done,
                void* ctx, uint32_t flags = 0) noexcept;
    Status write(const Namespace& ns, const void* buf, uint64_t lba, uint32_t blocks,
                 IoDoneFn done, void* ctx, uint32_t flags = 0) noexcept;
    Status readv(const Namespace& ns, const iovec* iov, int iovcnt, uint64_t lba, uint32_t blocks,
                 IoDoneFn done, void* ctx, uint32_t flags = 0) noexcept;
    Status writev(const Namespace& ns, const iovec* iov, int iovcnt, uint64_t lba,
                  uint32_t blocks, IoDoneFn done, void* ctx, uint32_t flags = 0) noexcept;
    // Compare: Completion status is Compare Failure (media 85h) when the data differs.
    Status compare(const Namespace& ns, const void* buf, uint64_t lba, uint32_t blocks,
                   IoDoneFn done, void* ctx) noexcept;
    Status flush(const Namespace& ns, IoDoneFn done, void* ctx) noexcept;
    Status write_zeroes(const Namespace& ns, uint64_t lba, uint32_t blocks, IoDoneFn done,
                        void* ctx, uint32_t flags = 0) noexcept;
    // Dataset Management / deallocate of 1..256 ranges (copied; the span may go away).
    Status deallocate(const Namespace& ns, std::span<const spec::DsmRange> ranges, IoDoneFn done,
                      void* ctx) noexcept;
    // Any I/O command: the driver sets the command id and data pointer from (buf, len).
    Status raw(const spec::Sqe& sqe, void* buf, size_t len, IoDoneFn done, void* ctx) noexcept;

    // Arms (or replaces, per opcode) an error injection on this qpair / removes the one of
    // `opc` (commands already held by a do_not_submit injection still complete). Owner Thread;
    // the first one allocates (control path).
    void add_error_injection(const ErrorInjection& e);
    void remove_error_injection(uint8_t opc);

    // Writes the SQ tail doorbell if commands are pending.
    void flush_submissions() noexcept;
    // Reaps completions (at most `max`, 0: the configured limit), runs their callbacks, writes
    // the CQ head doorbell once, then sends waiting commands. Returns how many were reaped.
    uint32_t process_completions(uint32_t max = 0) noexcept;

    QPairImpl& impl() noexcept { return *impl_; }

private:
    friend class Controller;
    explicit QPair(std::shared_ptr<QPairImpl> impl);
    std::shared_ptr<QPairImpl> impl_;  // shared with the admin side's messages (control path)
};

}  // namespace strata::nvme
