// bdev_aio against the real kernel: the shared file-bdev suite (file_bdev_suite.h).
#include "aio/aio.h"

#include <strata/bdev/file_bdev_suite.h>

namespace strata::bdev::testing {
namespace {

struct AioTraits {
    static constexpr const char* kName = "aio";
    static constexpr bool kFallocate = true;
    static constexpr bool kReadonly = true;
    static const Module& module() { return kAioModule; }
    static std::string unavailable() { return {}; }
    static Result<Bdev*> create(const FileBdevParams& p) {
        return aio_create({p.filename, p.name, p.block_size, p.readonly, p.fallocate, {}});
    }
    static void remove(const std::string& name, std::function<void(Result<void>)> done) {
        aio_delete(name, std::move(done));
    }
    static Result<void> rescan(const std::string& name) { return aio_rescan(name); }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Aio, FileBdevTest, AioTraits);

}  // namespace
}  // namespace strata::bdev::testing
