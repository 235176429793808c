// _strata.fuzz_targets() and _strata.fuzz_run(target, data): the libFuzzer targets' entry
// points (FUZZ_PY_TARGETS in fuzz/CMakeLists.txt, renamed per target) callable from Python, for
// strata.fuzz (bindings/python/strata/fuzz.py); added to _strata by fuzz/CMakeLists.txt. An input
// that makes a target CHECK-fail aborts the process, as under libFuzzer: strata.fuzz.replay() runs
// it in a child process.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "fuzz_py_table.h"

namespace pyb = pybind11;

namespace strata::py {

void register_fuzz(pyb::module_& m) {
    m.def(
        "fuzz_targets",
        [] {
            std::vector<std::string> out;
            for (const auto& t : fuzz_table::kTargets) out.emplace_back(t.name);
            return out;
        },
        "Names of the fuzz targets linked into this module.");
    m.def(
        "fuzz_run",
        [](const std::string& target, pyb::bytes data) {
            for (const auto& t : fuzz_table::kTargets) {
                if (target == t.name) {
                    std::string buf = data;  // owned copy: the target may keep no pointer to it
                    return t.run(reinterpret_cast<const uint8_t*>(buf.data()), buf.size());
                }
            }
            std::string known;
            for (const auto& t : fuzz_table::kTargets) known += std::string(" ") + t.name;
            throw pyb::value_error("unknown fuzz target '" + target + "' (linked:" + known + ")");
        },
        pyb::arg("target"), pyb::arg("data"),
        "Runs one input through the target's LLVMFuzzerTestOneInput; returns its result (0).");
}

}  // namespace strata::py
