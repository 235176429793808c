#include "json_py.h"

#include <cmath>
#include <string>

namespace strata::py {

namespace pyb = pybind11;
using nlohmann::json;

namespace {

constexpr int max_depth = 512;

pyb::object to_python_at(const json& v, int depth) {
    if (depth > max_depth) throw pyb::value_error("JSON value nested deeper than 512 levels");
    switch (v.type()) {
        case json::value_t::null:
        case json::value_t::discarded:
            return pyb::none();
        case json::value_t::boolean:
            return pyb::bool_(v.get<bool>());
        case json::value_t::number_integer:
            return pyb::int_(v.get<int64_t>());
        case json::value_t::number_unsigned:
            return pyb::int_(v.get<uint64_t>());
        case json::value_t::number_float:
            return pyb::float_(v.get<double>());
        case json::value_t::string:
            return pyb::str(v.get_ref<const std::string&>());
        case json::value_t::binary: {
            const auto& b = v.get_binary();
            return pyb::bytes(reinterpret_cast<const char*>(b.data()), b.size());
        }
        case json::value_t::array: {
            pyb::list out(v.size());
            size_t i = 0;
            for (const auto& e : v) out[i++] = to_python_at(e, depth + 1);
            return out;
        }
        case json::value_t::object: {
            pyb::dict out;
            for (auto it = v.begin(); it != v.end(); ++it)
                out[pyb::str(it.key())] = to_python_at(it.value(), depth + 1);
            return out;
        }
    }
    return pyb::none();
}

json from_python_at(pyb::handle o, int depth) {
    if (depth > max_depth)
        throw pyb::value_error("value nested deeper than 512 levels (a cycle?) cannot be JSON");
    if (o.is_none()) return nullptr;
    if (PyBool_Check(o.ptr())) return o.cast<bool>();
    if (PyLong_Check(o.ptr())) {
        int overflow = 0;
        long long s = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
        if (overflow == 0) {
            if (s == -1 && PyErr_Occurred()) throw pyb::error_already_set();
            // As the JSON parser types numbers read from text (the socket server's requests): a
            // non-negative integer is unsigned, so methods see the same JSON from a World.
            if (s >= 0) return static_cast<uint64_t>(s);
            return static_cast<int64_t>(s);
        }
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(o.ptr());
            if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred()))
                return static_cast<uint64_t>(u);
            PyErr_Clear();
        }
        throw pyb::value_error("integer " + pyb::str(o).cast<std::string>() +
                               " does not fit a JSON int64/uint64");
    }
    if (PyFloat_Check(o.ptr())) {
        double d = o.cast<double>();
        if (!std::isfinite(d))
            throw pyb::value_error("JSON cannot carry the float " + pyb::repr(o).cast<std::string>());
        return d;
    }
    if (PyUnicode_Check(o.ptr())) return o.cast<std::string>();
    if (PyDict_Check(o.ptr())) {
        json out = json::object();
        for (auto item : pyb::reinterpret_borrow<pyb::dict>(o)) {
            if (!PyUnicode_Check(item.first.ptr()))
                throw pyb::type_error("JSON object keys must be str, got " +
                                      pyb::repr(item.first).cast<std::string>());
            out[item.first.cast<std::string>()] = from_python_at(item.second, depth + 1);
        }
        return out;
    }
    if (PyList_Check(o.ptr()) || PyTuple_Check(o.ptr())) {
        json out = json::array();
        for (auto e : o) out.push_back(from_python_at(e, depth + 1));
        return out;
    }
    throw pyb::type_error("cannot convert " + std::string(Py_TYPE(o.ptr())->tp_name) +
                          " to JSON (use None, bool, int, float, str, list, tuple or dict)");
}

}  // namespace

pyb::object to_python(const json& value) { return to_python_at(value, 0); }
json from_python(pyb::handle obj) { return from_python_at(obj, 0); }

}  // namespace strata::py
