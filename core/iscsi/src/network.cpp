// The network layer's factory and the default Directory: the current Host's configuration
// (src/config.cpp: internal::lookup_target & co., iscsi::options()).
#include "net.h"

namespace strata::iscsi::internal {

namespace {
class ConfigDirectory final : public Directory {
public:
    TargetLookup lookup_target(std::string_view name, std::string_view initiator,
                               std::string_view initiator_addr, int32_t pg_tag) override {
        return internal::lookup_target(name, initiator, initiator_addr, pg_tag);
    }
    AuthPolicy discovery_policy() override { return internal::discovery_policy(); }
    const ChapSecrets& chap_secrets() override { return internal::chap_secrets(); }
    std::vector<SendTargetsEntry> send_targets(std::string_view initiator,
                                               std::string_view initiator_addr,
                                               std::string_view target_addr) override {
        return internal::send_targets(initiator, initiator_addr, target_addr);
    }
    TargetOptions options() override { return iscsi::options(); }
};
}  // namespace

Directory& config_directory() {
    // Stateless: every answer comes from the current Host's configuration.
    static ConfigDirectory dir;
    return dir;
}

std::unique_ptr<Network> make_network() { return make_network(config_directory()); }

}  // namespace strata::iscsi::internal
