// bdev_passthru: the reference virtual bdev. It claims a base bdev and passes every I/O through
// unchanged; a passthru configured before its base exists attaches when the base registers
// (examine), and goes away when the base does (the configuration stays, so a returning base
// brings it back, as in SPDK).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <strata/base/status.h>
#include <strata/bdev/module.h>

namespace strata::bdev {

struct PassthruOptions {
    std::string base_bdev_name;
    std::string name;
    std::string uuid;  // empty: generated
};

extern const Module kPassthruModule;

// Control path, on a Thread. Records the configuration and creates the bdev now if the base
// exists, else when it appears. Errc::already_exists for a name in use, invalid_argument for
// bad options; errors opening or claiming a present base are returned (nothing is kept).
Result<void> passthru_create(const PassthruOptions& options);
// Forgets the configuration and unregisters the bdev; done on the calling Thread.
// Errc::not_found when neither exists.
void passthru_delete(const std::string& name, std::function<void(Result<void>)> done);
// The configurations (attached or waiting for their base), in creation order.
std::vector<PassthruOptions> passthru_configs();

}  // namespace strata::bdev
