// Without liburing: no uring sockets; the group hooks do nothing.
#include "internal.h"

namespace strata::sock {

struct UringGroup {};

std::string uring_unavailable_reason() {
    return "built without liburing";
}
Result<UringGroup*> uring_group_create() {
    return Error(Errc::not_supported, "built without liburing");
}
void uring_group_destroy(UringGroup* g) noexcept {
    delete g;
}
uint32_t uring_group_poll(UringGroup&, GroupImpl&, uint32_t) noexcept {
    return 0;
}

}  // namespace strata::sock
