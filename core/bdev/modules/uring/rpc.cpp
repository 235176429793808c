// bdev_uring_create / bdev_uring_delete / bdev_uring_rescan (SPDK's names and parameters).
#include <strata/bdev/file_rpc.h>
#include "uring/uring.h"

namespace strata::bdev {

void register_uring_module(rpc::App& app) {
    register_module(kUringModule);
    add_file_bdev_rpcs<UringOptions>(
        app, {"uring",
              "Create a bdev on a file or block device through io_uring (O_DIRECT when the file "
              "system allows it). Returns its name; fails with a reason where io_uring is "
              "disabled.",
              "Delete a uring bdev (the file stays).",
              "Re-read the size of a uring bdev's file or device; openers get a resize event.",
              {}, nullptr, &uring_create, &uring_delete, &uring_rescan});
}

}  // namespace strata::bdev
