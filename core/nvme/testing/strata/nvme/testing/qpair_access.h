// The driver's queue-pair and controller internals (QPairImpl, ControllerImpl, Request, the
// NVMe/TCP connection state TcpConn), published for the tests and fuzz targets that drive a
// queue pair directly: write its completion queue or feed its PDU stream the bytes a hostile
// device or target would send, and check that every request completes exactly once.
//
// Not an API: no library includes it (ctest `layering` checks), and what it shows changes with
// the driver. CMake target strata_nvme_testing.
#pragma once

#include "../../../../src/internal.h"  // IWYU pragma: export
#include "../../../../src/tcp.h"       // IWYU pragma: export
