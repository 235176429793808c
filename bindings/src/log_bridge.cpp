#include "log_bridge.h"

#include <string>

#include <strata/base/log.h>

namespace strata::py {

namespace pyb = pybind11;

namespace {
// Leaked on purpose: a static py::object would be destroyed after the interpreter is gone.
pyb::object* g_callback = nullptr;
}  // namespace

// The logger calls the sink with its own mutex held, and the sink takes the GIL; so whoever
// swaps the sink must not hold the GIL while the logger's mutex may be contended.
void set_log_callback(pyb::object callback) {
    if (!callback.is_none() && !PyCallable_Check(callback.ptr()))
        throw pyb::type_error("log callback must be callable");
    {
        pyb::gil_scoped_release nogil;
        log_set_sink({});  // from here on no record uses the old callback
    }
    delete g_callback;
    g_callback = nullptr;
    if (callback.is_none()) return;
    g_callback = new pyb::object(std::move(callback));
    pyb::gil_scoped_release nogil;
    log_set_sink([](const LogRecord& r) {
        if (!Py_IsInitialized() || g_callback == nullptr) return;
        pyb::gil_scoped_acquire gil;
        try {
            (*g_callback)(static_cast<int>(r.level), r.component ? r.component->name() : "",
                          std::string(r.thread), r.time_ns, std::string(r.message),
                          r.file ? r.file : "", r.line);
        } catch (pyb::error_already_set& e) {
            e.discard_as_unraisable("strata log callback");
        }
    });
}

}  // namespace strata::py
