// bdev_aio_create / bdev_aio_delete / bdev_aio_rescan (SPDK's names and parameters).
#include "aio/aio.h"
#include <strata/bdev/file_rpc.h>

namespace strata::bdev {

void register_aio_module(rpc::App& app) {
    using PT = rpc::ParamType;
    register_module(kAioModule);
    add_file_bdev_rpcs<AioOptions>(
        app, {"aio",
              "Create a bdev on a file or block device through Linux AIO (O_DIRECT when the file "
              "system allows it). Returns its name.",
              "Delete an aio bdev (the file stays).",
              "Re-read the size of an aio bdev's file or device (after it grew or shrank); "
              "openers get a resize event.",
              {{"readonly", PT::bool_, false, "Open read-only", false},
               {"fallocate", PT::bool_, false,
                "Unmap and write zeroes through fallocate(2) (synchronous)", false}},
              [](const rpc::Json& p, AioOptions& o) {
                  o.readonly = rpc::param_or<bool>(p, "readonly", false);
                  o.fallocate = rpc::param_or<bool>(p, "fallocate", false);
              },
              &aio_create, &aio_delete, &aio_rescan});
}

}  // namespace strata::bdev
