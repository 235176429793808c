// bdev_uring against the real kernel: the shared file-bdev suite (<strata/bdev/file_bdev_suite.h>).
// Every test skips, saying why, where io_uring is disabled (fails under STRATA_REQUIRE_URING=1).
#include "uring/uring.h"

#include <strata/bdev/file_bdev_suite.h>
#include "uring_required.h"

namespace strata::bdev::testing {
namespace {

struct UringTraits {
    static constexpr const char* kName = "uring";
    static constexpr bool kFallocate = false;  // write zeroes emulated by the layer, no unmap
    static constexpr bool kReadonly = false;   // bdev_uring_create has no readonly (as in SPDK)
    static const Module& module() { return kUringModule; }
    static std::string unavailable() { return uring_skip_reason(); }
    static Result<Bdev*> create(const FileBdevParams& p) {
        return uring_create({p.filename, p.name, p.block_size, {}});
    }
    static void remove(const std::string& name, std::function<void(Result<void>)> done) {
        uring_delete(name, std::move(done));
    }
    static Result<void> rescan(const std::string& name) { return uring_rescan(name); }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Uring, FileBdevTest, UringTraits);

}  // namespace
}  // namespace strata::bdev::testing
