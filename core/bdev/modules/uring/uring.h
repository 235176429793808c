// bdev_uring: a bdev on a regular file or block device through io_uring (liburing).
//
// The file is opened with O_DIRECT when its file system allows it (buffered otherwise, with a
// warning); each Thread that does I/O gets its own ring in its channel, with the file
// registered as a fixed file where the kernel allows. submit() only queues; the channel's
// poller fills SQEs for everything queued and enters the kernel once per poll
// (io_uring_submit), and reaps CQEs from the shared ring without a system call. Flush is
// IORING_OP_FSYNC with IORING_FSYNC_DATASYNC; write zeroes is emulated by the layer; unmap is
// not offered (as in SPDK).
//
// io_uring can be disabled (kernel.io_uring_disabled, a seccomp profile, some containers):
// uring_create then fails with Errc::not_supported and says why.
#pragma once

#include <functional>
#include <string>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct UringOptions {
    std::string filename;
    std::string name;
    uint32_t block_size = 0;  // 0: detected
    std::string uuid;         // empty: generated
};

extern const Module kUringModule;

// "" when io_uring works in this process, else the reason (for errors and test skips).
std::string uring_unavailable_reason();

// Control path, on a Thread.
Result<Bdev*> uring_create(const UringOptions& options);
void uring_delete(const std::string& name, std::function<void(Result<void>)> done);
// Re-reads the file's size; openers get Event::resize when the block count changed.
Result<void> uring_rescan(const std::string& name);

}  // namespace strata::bdev
