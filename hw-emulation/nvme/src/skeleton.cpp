// Skeleton, built only until hw-emulation/faults and hw-emulation/media exist (see CMakeLists).
#include <strata/hwemu/nvme/controller.h>

namespace strata::hwemu::nvme {

class ControllerImpl {};

PciFunctionConfig pci_function_config(const ControllerConfig& config) {
    PciFunctionConfig c;
    c.vendor_id = config.vendor_id;
    c.device_id = config.device_id;
    c.class_code = 0x010802;
    c.bars[0] = {16384, true, false};
    c.name = "nvme";
    return c;
}

Controller::Controller() = default;
Controller::~Controller() = default;

Result<std::unique_ptr<Controller>> Controller::create(PciBus&, const env::PciAddress&,
                                                       ControllerConfig, runtime::Thread&) {
    return Error(Errc::not_supported, "nvme model: not implemented yet");
}
uint64_t Controller::bar_read(uint32_t, uint64_t, uint32_t) { return ~uint64_t{0}; }
void Controller::bar_write(uint32_t, uint64_t, uint32_t, uint64_t) {}
void Controller::on_surprise_removal() {}

}  // namespace strata::hwemu::nvme
