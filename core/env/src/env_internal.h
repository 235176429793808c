// Private to core/env/src: the running backend.
#pragma once

#include <cstddef>

#include <strata/env/internal/backend.h>

namespace strata::env::detail {

// The running backend; starts the default ("sim") on first use. Never null.
internal::Backend& backend();

// PCI functions claimed in this process (pci.cpp).
size_t claimed_count() noexcept;

}  // namespace strata::env::detail
