// Placeholder implementation of <strata/nvmf/transport.h> (the interface commit); the real core
// follows.
#include <strings.h>

#include <strata/nvmf/transport.h>
#include <strata/runtime/host.h>

namespace strata::nvmf {

XferDir xfer_direction(const nvme::spec::Sqe& cmd) noexcept {
    const uint8_t bits = cmd.opc == nvme::spec::fabrics_opcode
                             ? static_cast<uint8_t>(nvme::spec::fabrics_type(cmd) & 0x3)
                             : static_cast<uint8_t>(cmd.opc & 0x3);
    return bits == 3 ? XferDir::none : static_cast<XferDir>(bits);
}

}  // namespace strata::nvmf
