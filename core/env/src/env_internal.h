// Private to core/env/src: the running backend.
#pragma once

#include <strata/env/internal/backend.h>

namespace strata::env::detail {

// The running backend; starts the default ("sim") on first use. Never null.
internal::Backend& backend();

}  // namespace strata::env::detail
