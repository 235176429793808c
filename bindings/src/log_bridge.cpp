#include "log_bridge.h"

#include <string>

#include <strata/base/log.h>

namespace strata::py {

namespace pyb = pybind11;

namespace {
// Leaked on purpose: a static py::object would be destroyed after the interpreter is gone.
pyb::object* g_callback = nullptr;
}  // namespace

void set_log_callback(pyb::object callback) {
    if (callback.is_none()) {
        log_set_sink({});
        if (g_callback != nullptr) {
            delete g_callback;
            g_callback = nullptr;
        }
        return;
    }
    if (!PyCallable_Check(callback.ptr())) throw pyb::type_error("log callback must be callable");
    log_set_sink({});  // no record may use the old callback while it is swapped
    delete g_callback;
    g_callback = new pyb::object(std::move(callback));
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
