// World: an App (the daemon's framework and method registry) on a SimScheduler, driven from
// the calling Python thread. A World owns its Host (runtime/host.h): its bdevs, lvol stores,
// emulated PCI bus, DMA memory and IOVA map; every entry point runs in it, so two Worlds in one
// process share nothing.
//
// Single-threaded: one Python thread drives a World at a time; a second caller (another
// thread, or a run_until predicate re-entering the World) gets a RuntimeError. The simulation
// runs with the GIL released; predicates and log records re-acquire it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include <strata/rpc/app.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::hwemu {
class PciBus;
}

namespace strata::py {

class World {
public:
    World(uint64_t seed, uint32_t reactors, bool wait_for_rpc, pybind11::object config);
    ~World();
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    uint64_t seed() const { return sched_->seed(); }
    uint32_t reactors() const { return sched_->reactor_count(); }
    uint64_t now() const { return sched_->now_ns(); }
    uint64_t steps() const { return sched_->sim_stats().steps; }
    uint64_t trace_hash() const { return sched_->trace_hash(); }
    uint64_t event_hash() const { return sched_->event_hash(); }
    // All events, or those of one kind ("bdev_io", "rpc_reply", "device_cmd", "user").
    uint64_t event_count(std::optional<std::string> kind) const;
    // Harness probe: folds a user event into the trace (tests perturb a run with it).
    void trace_user_event(uint64_t value);
    void perturb_next_choice() { sched_->perturb_next_choice(); }
    bool closed() const { return app_ == nullptr; }

    // Full JSON-RPC response for one request built from method/params.
    pybind11::object call(const std::string& method, pybind11::object params, uint64_t timeout_ns);
    // Any request value (object or batch list) as the server would dispatch it.
    pybind11::object call_request(pybind11::object request, uint64_t timeout_ns);
    std::optional<std::string> handle_raw(const std::string& text, uint64_t timeout_ns);

    bool run_until(pybind11::object pred, std::optional<uint64_t> timeout_ns,
                   std::optional<uint64_t> max_steps);
    void advance(uint64_t ns);
    std::string step();
    bool run_until_idle(uint64_t max_steps);
    pybind11::dict sim_stats() const;
    pybind11::list threads() const;
    void close();

    // Harness probes: extra Threads and ordered marks, to watch the simulator interleave.
    uint32_t create_thread(const std::string& name, int reactor);
    // Posts `count` messages to each named Thread; each appends (thread, seq, now_ns) to the
    // mark log when it runs.
    void post_marks(const std::vector<std::string>& threads, uint32_t count);
    pybind11::list take_marks();

    // Emulated PCI devices (hw-emulation) on this World's bus, driven as a driver would.
    // Each World has its own bus (its Host's), so devices may share an address across Worlds.
    void add_copy_engine(const std::string& address);
    pybind11::list pci_functions();
    uint64_t dma_fault_count(std::optional<std::string> address);
    uint64_t dma_alloc(uint64_t size_bytes);  // returns the IOVA
    void dma_write(uint64_t iova, const std::string& data);
    pybind11::bytes dma_read(uint64_t iova, uint64_t len);
    std::string copy_engine_run(const std::string& address, uint64_t src_iova, uint64_t dst_iova,
                                uint64_t len);
    void surprise_remove(const std::string& address);
    // One I/O through the bdev layer (bdev_py.cpp): op is read, write, compare,
    // compare_and_write, write_zeroes, unmap, flush or reset. Returns bytes for read, None on
    // success, or a dict {errc, nvme_status} when the I/O completed with an error.
    pybind11::object bdev_io(const std::string& name, const std::string& op, uint64_t offset_blocks,
                             uint64_t num_blocks, pybind11::object data, pybind11::object data2,
                             uint64_t timeout_ns);

    // NVMe (nvme_py.cpp): the controller model (hw-emulation/nvme) on this World's bus and a
    // driver handle (core/nvme) on it; strata/nvme.py wraps these dispatchers.
    void add_nvme(const std::string& address, pybind11::object config);
    pybind11::object nvme_device(const std::string& address, const std::string& op,
                                 pybind11::object arg);
    void nvme_attach(const std::string& address, pybind11::object options);
    pybind11::object nvme_host(const std::string& address, const std::string& op,
                               pybind11::object arg, pybind11::object data, uint64_t timeout_ns);

private:
    class Guard {
    public:
        explicit Guard(World& w) : w_(w), scope_(*w.host_) {
            bool expected = false;
            if (!w_.busy_.compare_exchange_strong(expected, true))
                throw std::runtime_error(
                    "World is single-threaded: it is already being driven (from another Python "
                    "thread, or re-entered from a run_until predicate)");
        }
        ~Guard() { w_.busy_.store(false); }

    private:
        World& w_;
        runtime::HostScope scope_;
    };
    struct Devices;
    struct DevicesDeleter {
        void operator()(Devices* d) const;  // defined where Devices is complete
    };
    Devices& devices();
    void close_devices();
    hwemu::PciBus& devices_bus();           // devices.cpp
    runtime::Thread* devices_thread();
    struct Nvme;
    struct NvmeDeleter {
        void operator()(Nvme* n) const;
    };
    Nvme& nvme();
    void close_nvme();
    std::optional<std::string> release_nvme_host(void* host);
    bool run_on(runtime::Thread* t, const std::function<void()>& fn,
                uint64_t timeout_ns = 600'000'000'000ull);
    void check_open() const;

    std::unique_ptr<runtime::Host> host_;  // first: destroyed after everything that uses it
    std::unique_ptr<runtime::SimScheduler> sched_;
    std::unique_ptr<rpc::App> app_;
    std::atomic<bool> busy_{false};
    struct Mark {
        std::string thread;
        uint32_t seq;
        uint64_t time_ns;
    };
    std::vector<Mark> marks_;
    std::unique_ptr<Devices, DevicesDeleter> devices_;
    std::unique_ptr<Nvme, NvmeDeleter> nvme_;
};

}  // namespace strata::py
