// _strata.fuzz_targets(), _strata.FuzzTarget(name) and _strata.fuzz_run(target, data): the
// libFuzzer targets' entry points (every fuzz/<name>.cpp; fuzz/CMakeLists.txt compiles them again
// into _strata) callable from Python, for strata.fuzz (bindings/python/strata/fuzz.py).
//
// A FuzzTarget owns one runtime::Host and, for a target with shared state (fuzz/fuzz_target.h),
// one State built inside that Host on first use and destroyed by close(): what a target sets up
// (an App, a simulator, DMA memory) belongs to the object, so two FuzzTargets, or one and a
// World, never see each other, as two fuzzer processes would not. An input that makes a target
// CHECK-fail aborts the process, as under libFuzzer: strata.fuzz.replay() runs it in a child.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <strata/runtime/host.h>

#include "fuzz_py_table.h"

namespace pyb = pybind11;

namespace strata::py {

namespace {

const fuzz_table::Entry& find_target(const std::string& name) {
    for (const auto& t : fuzz_table::kTargets)
        if (name == t.name) return t;
    std::string known;
    for (const auto& t : fuzz_table::kTargets) known += std::string(" ") + t.name;
    throw pyb::value_error("unknown fuzz target '" + name + "' (linked:" + known + ")");
}

class FuzzTarget {
public:
    explicit FuzzTarget(const std::string& name)
        : entry_(&find_target(name)),
          host_(std::make_unique<runtime::Host>("fuzz:" + name,
                                                runtime::Host::seed_for(1, "fuzz:" + name))) {}
    ~FuzzTarget() {
        try {
            close();
        } catch (...) {
        }
    }
    FuzzTarget(const FuzzTarget&) = delete;
    FuzzTarget& operator=(const FuzzTarget&) = delete;

    std::string name() const { return entry_->name; }
    bool stateful() const { return entry_->create != nullptr; }
    bool closed() const { return host_ == nullptr; }

    int run(const std::string& data) {
        if (!host_) throw std::runtime_error("fuzz target " + name() + " is closed");
        runtime::HostScope scope(*host_);
        const auto* p = reinterpret_cast<const uint8_t*>(data.data());
        if (!entry_->create) return entry_->entry(p, data.size());
        if (!state_) state_ = entry_->create();  // the set-up, once per object
        return entry_->run(state_, p, data.size());
    }

    void close() {
        if (!host_) return;
        if (state_) {
            runtime::HostScope scope(*host_);
            void* s = state_;
            state_ = nullptr;
            entry_->destroy(s);
        }
        host_.reset();
    }

private:
    const fuzz_table::Entry* entry_;
    std::unique_ptr<runtime::Host> host_;
    void* state_ = nullptr;
};

}  // namespace

void register_fuzz(pyb::module_& m) {
    m.def(
        "fuzz_targets",
        [] {
            std::vector<std::string> out;
            for (const auto& t : fuzz_table::kTargets) out.emplace_back(t.name);
            return out;
        },
        "Names of the fuzz targets linked into this module.");
    pyb::class_<FuzzTarget>(m, "FuzzTarget",
                            "One fuzz target with its own Host and state (built on the first "
                            "run, destroyed by close()).")
        .def(pyb::init<const std::string&>(), pyb::arg("name"))
        .def_property_readonly("name", &FuzzTarget::name)
        .def_property_readonly("stateful", &FuzzTarget::stateful,
                               "whether inputs share set-up (fuzz/fuzz_target.h)")
        .def_property_readonly("closed", &FuzzTarget::closed)
        .def(
            "run",
            [](FuzzTarget& t, pyb::bytes data) {
                std::string buf = data;  // owned copy: the target may keep no pointer to it
                return t.run(buf);
            },
            pyb::arg("data"), "Runs one input through the target's entry point; returns 0.")
        .def("close", &FuzzTarget::close, "Destroys the target's state and Host.");
    m.def(
        "fuzz_run",
        [](const std::string& target, pyb::bytes data) {
            FuzzTarget t(target);
            std::string buf = data;
            return t.run(buf);
        },
        pyb::arg("target"), pyb::arg("data"),
        "Runs one input through a fresh FuzzTarget (its state built and destroyed for this "
        "input); returns its result (0).");
}

}  // namespace strata::py
