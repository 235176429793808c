// _strata: the native half of the `strata` Python package (see bindings/python/strata).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <strata/base/log.h>
#include <strata/rpc/builtins.h>

#include "json_py.h"
#include "log_bridge.h"
#include "world.h"

namespace pyb = pybind11;
#ifdef STRATA_PY_FUZZ
namespace strata::py {
void register_fuzz(pyb::module_& m);  // fuzz/fuzz_py.cpp
}
#endif
using strata::py::Cluster;
using strata::py::World;

PYBIND11_MODULE(_strata, m) {
    m.doc() = "Strata native module: the simulated World and the log bridge. Use the `strata` "
              "package rather than this module directly.";
    m.attr("version") = std::string(strata::rpc::version_string());
#ifdef STRATA_PY_FUZZ
    strata::py::register_fuzz(m);
#endif

    pyb::class_<Cluster>(m, "Cluster",
                         "Several hosts (Worlds) on one deterministic simulator: one seed, one "
                         "clock, one trace hash (single-threaded).")
        .def(pyb::init<uint64_t, uint32_t>(), pyb::arg("seed"), pyb::arg("reactors") = 1)
        .def_property_readonly("seed", &Cluster::seed)
        .def_property_readonly("reactors", &Cluster::reactors)
        .def_property_readonly("steps", &Cluster::steps, "simulation steps taken so far")
        .def("now", &Cluster::now, "virtual time in ns")
        .def("trace_hash", &Cluster::trace_hash,
             "hash of the whole cluster's run (every host's steps and events)")
        .def("event_hash", &Cluster::event_hash, "hash of the recorded events alone")
        .def("event_count", &Cluster::event_count, pyb::arg("kind") = pyb::none())
        .def("perturb_next_choice", &Cluster::perturb_next_choice)
        .def("_host_names", &Cluster::host_names, "names of the open hosts, sorted")
        .def("_run_until", &Cluster::run_until, pyb::arg("predicate"),
             pyb::arg("timeout_ns") = pyb::none(), pyb::arg("max_steps") = pyb::none())
        .def("advance", &Cluster::advance, pyb::arg("ns"),
             "Runs every host for ns of virtual time and leaves the clock there.")
        .def("step", &Cluster::step, "One step: 'ran', 'time_advanced' or 'idle'.")
        .def("run_until_idle", &Cluster::run_until_idle, pyb::arg("max_steps") = 100'000'000ull)
        .def("sim_stats", &Cluster::sim_stats)
        .def("threads", &Cluster::threads, "every open host's Threads (name, id, reactor, host)")
        .def("_net_info", &Cluster::net_info)
        .def("_net_set_link", &Cluster::net_set_link, pyb::arg("a") = pyb::none(),
             pyb::arg("b") = pyb::none(), pyb::arg("latency_ns") = pyb::none(),
             pyb::arg("bytes_per_sec") = pyb::none(), pyb::arg("max_segment_bytes") = pyb::none())
        .def("_net_link", &Cluster::net_link, pyb::arg("a") = pyb::none(),
             pyb::arg("b") = pyb::none())
        .def("_net_delay", &Cluster::net_delay)
        .def("_net_stall", &Cluster::net_stall)
        .def("_net_partition", &Cluster::net_partition)
        .def("_net_heal", &Cluster::net_heal)
        .def("_net_reset", &Cluster::net_reset)
        .def("_net_reset_connection", &Cluster::net_reset_connection)
        .def("_net_slow_reader", &Cluster::net_slow_reader)
        .def("_net_connections", &Cluster::net_connections)
        .def_property("_net_connect_timeout_ns", &Cluster::net_connect_timeout_ns,
                      &Cluster::net_set_connect_timeout_ns);

    pyb::class_<World> world(m, "World", "An App on the deterministic simulator (single-threaded).");
    world.def(pyb::init<uint64_t, uint32_t, bool, pyb::object, Cluster*, std::string,
                       std::optional<std::string>>(),
             pyb::arg("seed"), pyb::arg("reactors") = 1, pyb::arg("wait_for_rpc") = false,
             pyb::arg("config") = pyb::none(), pyb::arg("cluster") = nullptr,
             pyb::arg("name") = "world", pyb::arg("address") = pyb::none())
        .def_property_readonly("seed", &World::seed)
        .def_property_readonly("name", &World::name, "the host's name ('world' when alone)")
        .def_property_readonly("address", &World::address,
                               "the host's address on its cluster's network ('' when alone)")
        .def("_sock_listen", &World::sock_listen, pyb::arg("port"), pyb::arg("echo") = false)
        .def("_sock_connect", &World::sock_connect, pyb::arg("address"), pyb::arg("port"))
        .def("_sock_send", &World::sock_send, pyb::arg("id"), pyb::arg("data"))
        .def("_sock_recv", &World::sock_recv, pyb::arg("id"))
        .def("_sock_info", &World::sock_info, pyb::arg("id"))
        .def("_sock_accepted", &World::sock_accepted, pyb::arg("listener"))
        .def("_sock_close", &World::sock_close, pyb::arg("id"), pyb::arg("abort") = false)
        .def_property_readonly("reactors", &World::reactors)
        .def_property_readonly("steps", &World::steps, "simulation steps taken so far")
        .def_property_readonly("closed", &World::closed)
        .def("now", &World::now, "virtual time in ns")
        .def("trace_hash", &World::trace_hash,
             "hash of the run: every step taken and every event the stack recorded (completed "
             "bdev I/O with a checksum of read data, RPC replies, device commands); equal seeds "
             "and workloads give equal hashes, and it does not start from the seed")
        .def("event_hash", &World::event_hash, "hash of the stack's recorded events alone")
        .def("event_count", &World::event_count, pyb::arg("kind") = pyb::none(),
             "number of events recorded so far, all or of one kind (bdev_io, rpc_reply, "
             "device_cmd, user)")
        .def("trace_user_event", &World::trace_user_event, pyb::arg("value"),
             "folds a harness event into the trace (on the app Thread)")
        .def("perturb_next_choice", &World::perturb_next_choice,
             "the next step with several candidates runs another one than the seed chose")
        .def("call", &World::call, pyb::arg("method"), pyb::arg("params") = pyb::none(),
             pyb::arg("timeout_ns") = 60'000'000'000ull,
             "Calls a method; returns the whole JSON-RPC response as a dict.")
        .def("call_request", &World::call_request, pyb::arg("request"),
             pyb::arg("timeout_ns") = 60'000'000'000ull,
             "Dispatches a request value (dict, or list for a batch); returns the response or "
             "None (notifications).")
        .def("handle_raw", [](World& w, const std::string& text, uint64_t timeout_ns)
                 -> pyb::object {
                 auto r = w.handle_raw(text, timeout_ns);
                 if (!r) return pyb::none();
                 return pyb::str(*r);
             }, pyb::arg("text"), pyb::arg("timeout_ns") = 60'000'000'000ull,
             "Raw request text as the socket server handles it; response text or None.")
        .def("_run_until", &World::run_until, pyb::arg("predicate"),
             pyb::arg("timeout_ns") = pyb::none(), pyb::arg("max_steps") = pyb::none())
        .def("advance", &World::advance, pyb::arg("ns"),
             "Runs everything due in the next ns of virtual time and leaves the clock there.")
        .def("step", &World::step, "One step: 'ran', 'time_advanced' or 'idle'.")
        .def("run_until_idle", &World::run_until_idle, pyb::arg("max_steps") = 100'000'000ull)
        .def("sim_stats", &World::sim_stats)
        .def("threads", &World::threads)
        .def("create_thread", &World::create_thread, pyb::arg("name"), pyb::arg("reactor") = -1,
             "Creates an extra (empty) Thread; reactor -1 places it round-robin. Returns its id.")
        .def("post_marks", &World::post_marks, pyb::arg("threads"), pyb::arg("count") = 1,
             "Posts count messages to each named Thread; each records (thread, seq, now_ns).")
        .def("take_marks", &World::take_marks,
             "The (thread, seq, now_ns) marks recorded so far, in execution order; clears them.")
        .def("close", &World::close, "Stops the framework (subsystem fini); idempotent.")
        .def("add_copy_engine", &World::add_copy_engine, pyb::arg("address"),
             "Adds the CopyEngine DMA test device at a PCI address ('0000:00:04.0') on this "
             "World's emulated bus and claims it through env, as a driver does.")
        .def("pci_functions", &World::pci_functions,
             "Functions on the emulated bus: address, ids, class, dma_faults, removed.")
        .def("dma_fault_count", &World::dma_fault_count, pyb::arg("address") = pyb::none(),
             "DMA faults counted on one function, or on the whole bus.")
        .def("dma_alloc", &World::dma_alloc, pyb::arg("size"),
             "Allocates zeroed DMA memory; returns its IOVA (never equal to a host address).")
        .def("dma_write", &World::dma_write, pyb::arg("iova"), pyb::arg("data"))
        .def("dma_read", &World::dma_read, pyb::arg("iova"), pyb::arg("length"))
        .def("copy_engine_run", &World::copy_engine_run, pyb::arg("address"), pyb::arg("src"),
             pyb::arg("dst"), pyb::arg("length"),
             "Programs a copy through BAR0 and rings the doorbell; returns 'done', 'dma_error' "
             "or 'removed'. Any IOVA may be given: a bad one is a counted DMA fault.")
        .def("bdev_io", &World::bdev_io, pyb::arg("name"), pyb::arg("op"),
             pyb::arg("offset_blocks") = 0, pyb::arg("num_blocks") = 0,
             pyb::arg("data") = pyb::none(), pyb::arg("data2") = pyb::none(),
             pyb::arg("timeout_ns") = 60'000'000'000ull,
             "One I/O through the bdev layer (see strata.bdev.Bdev).")
        .def("_add_nvme", &World::add_nvme, pyb::arg("address"), pyb::arg("config") = pyb::none())
        .def("_nvme_device", &World::nvme_device, pyb::arg("address"), pyb::arg("op"),
             pyb::arg("arg") = pyb::none())
        .def("_nvme_attach", &World::nvme_attach, pyb::arg("address"),
             pyb::arg("options") = pyb::none())
        .def("_nvme_host", &World::nvme_host, pyb::arg("address"), pyb::arg("op"),
             pyb::arg("arg") = pyb::none(), pyb::arg("data") = pyb::none(),
             pyb::arg("timeout_ns") = 60'000'000'000ull)
        .def("surprise_remove", &World::surprise_remove, pyb::arg("address"),
             "Removes the function from the bus as if unplugged: BAR reads return all-ones.");
    strata::py::bind_bdev_io(m, world);  // _strata.BdevIo and World.bdev_submit
    strata::py::bind_iscsi(m, world);    // _strata.IscsiSession/IscsiIo and World._iscsi_*

    m.def("set_log_callback", &strata::py::set_log_callback, pyb::arg("callback"),
          "callback(level, component, thread, time_ns, message, file, line) or None.");
    m.def("log_set_level", [](const std::string& level) {
        auto l = strata::log_level_parse(level);
        if (!l) throw pyb::value_error("unknown log level '" + level + "'");
        strata::log_set_global_level(*l);
    }, pyb::arg("level"));
    m.def("to_json_roundtrip", [](pyb::object o) {
        return strata::py::to_python(strata::py::from_python(o));
    }, "Converts a value to JSON and back (tests the converter).");
    m.def("_json_kinds", [](pyb::object o) {
        // The JSON number kinds a value converts to, as the parser would type them from text.
        std::vector<std::string> out;
        auto walk = [&out](const nlohmann::json& j, auto& self) -> void {
            if (j.is_number_unsigned()) out.push_back("unsigned");
            else if (j.is_number_integer()) out.push_back("integer");
            else if (j.is_number_float()) out.push_back("float");
            else if (j.is_structured())
                for (const auto& e : j) self(e, self);
        };
        walk(strata::py::from_python(o), walk);
        return out;
    }, "The number kinds (unsigned, integer, float) of a value converted to JSON, in order.");
}
