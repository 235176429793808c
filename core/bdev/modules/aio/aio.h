// bdev_aio: a bdev on a regular file or block device through Linux AIO (libaio).
//
// The file is opened with O_DIRECT when its file system allows it (buffered otherwise, with a
// warning); each Thread that does I/O gets its own io_context in its channel. submit() only
// queues; the channel's poller sends everything queued with one io_submit per poll and reaps
// completions from the context's ring in user space (io_getevents when the kernel's ring layout
// is unknown), so an idle poll makes no system call. Flush is IOCB_CMD_FDSYNC (kernel 4.18+);
// where the file system refuses it the flush falls back to a synchronous fdatasync on the
// reactor, logged once. With `fallocate`, unmap punches holes and write zeroes zeroes ranges
// with fallocate(2) — synchronous system calls on the reactor, as in SPDK.
#pragma once

#include <functional>
#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct AioOptions {
    std::string filename;
    std::string name;
    uint32_t block_size = 0;  // 0: detected
    bool readonly = false;
    bool fallocate = false;   // unmap and write zeroes through fallocate(2)
    std::string uuid;         // empty: generated
};

extern const Module kAioModule;

// Control path, on a Thread. Errors name the file and the reason (see open_backing_file).
Result<Bdev*> aio_create(const AioOptions& options);
// Unregisters (openers get Event::remove; in-flight I/O completes first). done on this Thread.
void aio_delete(const std::string& name, std::function<void(Result<void>)> done);
// Re-reads the file's size; openers get Event::resize when the block count changed.
Result<void> aio_rescan(const std::string& name);

}  // namespace strata::bdev
