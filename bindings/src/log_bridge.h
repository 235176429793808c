// Routes strata log records to a Python callable (strata.logs installs one that forwards to
// the `logging` module). Process-wide, like the C++ log sink it replaces.
#pragma once

#include <pybind11/pybind11.h>

namespace strata::py {

// callback(level:int, component:str, thread:str, time_ns:int, message:str, file:str, line:int)
// or None to restore the default stderr sink.
void set_log_callback(pybind11::object callback);

}  // namespace strata::py
