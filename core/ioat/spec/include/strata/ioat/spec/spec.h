// All I/OAT spec headers: registers, descriptors and channel errors.
#pragma once

#include <strata/ioat/spec/bits.h>
#include <strata/ioat/spec/descriptors.h>
#include <strata/ioat/spec/errors.h>
#include <strata/ioat/spec/registers.h>
