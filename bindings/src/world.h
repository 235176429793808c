// World: an App (the daemon's framework and method registry) on a SimScheduler, driven from
// the calling Python thread. A World owns its Host (runtime/host.h): its bdevs, lvol stores,
// emulated PCI bus, DMA memory and IOVA map; every entry point runs in it, so two Worlds in one
// process share nothing.
//
// Cluster: several Worlds (hosts) on one SimScheduler (SimCore): one seed, one virtual clock,
// one trace hash; each host still its own Host and App. Running any of them (run_until,
// advance, an RPC waiting for its reply) runs every host. A standalone World is a cluster of
// one, its host named "world". The SimCore outlives every World on it (shared ownership); a
// host may close while the others run on (its Threads are released, runtime/scheduler.h).
//
// Single-threaded: one Python thread drives a simulation (a World or every World of a Cluster)
// at a time; a second caller (another thread, or a run_until predicate re-entering it) gets a
// RuntimeError. The simulation runs with the GIL released; predicates and log records
// re-acquire it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pybind11/pybind11.h>

#include <strata/rpc/app.h>
#include <strata/runtime/host.h>
#include <strata/runtime/scheduler.h>

namespace strata::sock {
class SimNetwork;
}

namespace strata::hwemu {
class PciBus;
}

namespace strata::py {

struct BdevIo;     // bdev_py.cpp: one asynchronous bdev I/O (strata.bdev.Io)
struct BdevQueue;  // bdev_py.cpp: a descriptor and channel held open (strata.bdev.Queue)
class World;
// Registers _strata.BdevIo, _strata.BdevQueue and World.bdev_submit/bdev_queue (bdev_py.cpp).
void bind_bdev_io(pybind11::module_& m, pybind11::class_<World>& world);
struct IscsiSession;  // iscsi_py.cpp: one iSCSI test initiator (strata.iscsi.Initiator)
struct IscsiIo;       // iscsi_py.cpp: one operation on it
// Registers _strata.IscsiSession, _strata.IscsiIo and World._iscsi_* (iscsi_py.cpp).
void bind_iscsi(pybind11::module_& m, pybind11::class_<World>& world);

// The simulator shared by the hosts of one cluster. Driving it (Sim) needs the GIL-free busy
// flag; host names are checked with the GIL held.
struct SimCore {
    SimCore(uint64_t seed, uint32_t reactors);
    ~SimCore();
    std::unique_ptr<runtime::SimScheduler> sched;
    // A Cluster's network (the hosts' sim sockets; before the scheduler in destruction order is
    // handled by ~SimCore). nullptr for a standalone World: its sockets make a private one.
    std::unique_ptr<sock::SimNetwork> net;
    std::atomic<bool> busy{false};
    std::set<std::string> live_hosts;  // names of the Worlds open on it
    std::map<std::string, std::string> addresses;  // host name -> its address, kept for restarts
    uint32_t next_address = 1;                     // 10.0.0.N for hosts given none
    // The address for host `name`: `wanted`, else the one it had, else the next free 10.0.0.N.
    std::string address_for(const std::string& name, const std::optional<std::string>& wanted);

    // Marks the simulation busy for a call: rejects concurrent or re-entrant driving.
    class Busy {
    public:
        explicit Busy(SimCore& c);
        ~Busy() { c_.busy.store(false); }
        Busy(const Busy&) = delete;
        Busy& operator=(const Busy&) = delete;

    private:
        SimCore& c_;
    };

    // The simulator controls shared by World and Cluster (the caller holds Busy when driving).
    bool run_until(pybind11::object pred, std::optional<uint64_t> timeout_ns,
                   std::optional<uint64_t> max_steps);
    std::string step();
    uint64_t event_count(std::optional<std::string> kind) const;
    pybind11::dict sim_stats() const;
    // Threads of one Host, or of every Host (each entry then names its host).
    pybind11::list threads(const runtime::Host* host) const;
};

// Several hosts (Worlds) on one simulator; Python's strata.Cluster. Hosts are made by the World
// constructor with this Cluster (strata.Cluster.host()).
class Cluster {
public:
    Cluster(uint64_t seed, uint32_t reactors);
    const std::shared_ptr<SimCore>& core() const { return core_; }

    uint64_t seed() const { return core_->sched->seed(); }
    uint32_t reactors() const { return core_->sched->reactor_count(); }
    uint64_t now() const { return core_->sched->now_ns(); }
    uint64_t steps() const { return core_->sched->sim_stats().steps; }
    uint64_t trace_hash() const { return core_->sched->trace_hash(); }
    uint64_t event_hash() const { return core_->sched->event_hash(); }
    uint64_t event_count(std::optional<std::string> kind) const {
        return core_->event_count(std::move(kind));
    }
    void perturb_next_choice() { core_->sched->perturb_next_choice(); }
    std::vector<std::string> host_names() const {
        return {core_->live_hosts.begin(), core_->live_hosts.end()};
    }

    bool run_until(pybind11::object pred, std::optional<uint64_t> timeout_ns,
                   std::optional<uint64_t> max_steps);
    void advance(uint64_t ns);
    std::string step();
    bool run_until_idle(uint64_t max_steps);
    pybind11::dict sim_stats() const { return core_->sim_stats(); }
    pybind11::list threads() const { return core_->threads(nullptr); }

    // The network (sock/sim.h): faults and listings; durations in ns of virtual time.
    pybind11::dict net_info();
    void net_set_link(std::optional<std::string> a, std::optional<std::string> b,
                      std::optional<uint64_t> latency_ns, std::optional<uint64_t> bytes_per_sec,
                      std::optional<uint32_t> max_segment_bytes);
    pybind11::dict net_link(std::optional<std::string> a, std::optional<std::string> b);
    void net_delay(const std::string& a, const std::string& b, uint64_t extra_ns,
                   uint64_t duration_ns);
    void net_stall(const std::string& a, const std::string& b, uint64_t duration_ns);
    void net_partition(const std::string& a, const std::string& b, const std::string& mode);
    void net_heal(const std::string& a, const std::string& b);
    size_t net_reset(const std::string& a, const std::string& b);
    void net_reset_connection(uint64_t id);
    void net_slow_reader(const std::string& address, uint64_t bytes_per_sec);
    pybind11::list net_connections();
    uint64_t net_connect_timeout_ns() const;
    void net_set_connect_timeout_ns(uint64_t ns);

private:
    std::shared_ptr<SimCore> core_;
};

class World {
public:
    // cluster: nullptr makes a World of its own (its own simulator, its host named "world");
    // otherwise the World is host `name` of that cluster (seed and reactors are the cluster's).
    // address: the host's address on the cluster's network (default: its previous one, else the
    // next free 10.0.0.N); ignored without a cluster.
    World(uint64_t seed, uint32_t reactors, bool wait_for_rpc, pybind11::object config,
          Cluster* cluster = nullptr, std::string name = "world",
          std::optional<std::string> address = std::nullopt);
    ~World();
    World(const World&) = delete;
    World& operator=(const World&) = delete;

    uint64_t seed() const { return sched_->seed(); }
    uint32_t reactors() const { return sched_->reactor_count(); }
    uint64_t now() const { return sched_->now_ns(); }
    uint64_t steps() const { return sched_->sim_stats().steps; }
    uint64_t trace_hash() const { return sched_->trace_hash(); }
    uint64_t event_hash() const { return sched_->event_hash(); }
    const std::string& name() const { return name_; }
    const std::string& address() const { return address_; }  // "" outside a cluster
    bool in_cluster() const { return in_cluster_; }
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
    // The same I/O, asynchronous: posted to `thread` (a Thread of this host by name; default
    // the app Thread), where the simulator opens the bdev, submits and completes it as it runs.
    // Through `queue` (then name and thread are the queue's): on its descriptor and channel.
    // The handle says when it is done and how (bdev_py.cpp, strata.bdev.Io).
    std::shared_ptr<BdevIo> bdev_submit(const std::string& name, const std::string& op,
                                        uint64_t offset_blocks, uint64_t num_blocks,
                                        pybind11::object data, pybind11::object data2,
                                        std::optional<std::string> thread,
                                        std::shared_ptr<BdevQueue> queue);
    // Posts the opening of a descriptor and channel of `name` on `thread`, held until
    // bdev_queue_close, the bdev's removal or the World's close (each once its I/O completed).
    std::shared_ptr<BdevQueue> bdev_queue(const std::string& name, bool write,
                                          std::optional<std::string> thread);
    void bdev_queue_close(const std::shared_ptr<BdevQueue>& queue);

    // Socket harness (sock_py.cpp): a netcat on this World's Host over its sockets (the
    // cluster's sim network). Ids name listeners and connections; strata/world.py wraps them.
    uint32_t sock_listen(uint16_t port, bool echo);
    uint32_t sock_connect(const std::string& address, uint16_t port);
    void sock_send(uint32_t id, const std::string& data);
    pybind11::bytes sock_recv(uint32_t id);
    pybind11::dict sock_info(uint32_t id);
    std::vector<uint32_t> sock_accepted(uint32_t listener);
    void sock_close(uint32_t id, bool abort);

    // NVMe (nvme_py.cpp): the controller model (hw-emulation/nvme) on this World's bus and a
    // driver handle (core/nvme) on it; strata/nvme.py wraps these dispatchers.
    void add_nvme(const std::string& address, pybind11::object config);
    pybind11::object nvme_device(const std::string& address, const std::string& op,
                                 pybind11::object arg);
    void nvme_attach(const std::string& address, pybind11::object options);
    pybind11::object nvme_host(const std::string& address, const std::string& op,
                               pybind11::object arg, pybind11::object data, uint64_t timeout_ns);

    // iSCSI test initiator (iscsi_py.cpp, core/iscsi/testing) on this host's "iscsi_initiator"
    // Thread: connect+login, one operation, control (drop, close, corruption); strata/iscsi.py.
    std::shared_ptr<IscsiSession> iscsi_connect(pybind11::dict options);
    std::shared_ptr<IscsiIo> iscsi_submit(std::shared_ptr<IscsiSession> session,
                                          const std::string& op, pybind11::dict args);
    void iscsi_control(std::shared_ptr<IscsiSession> session, const std::string& op,
                       pybind11::dict args);

private:
    // Busy (the whole simulation: every host of a cluster) and the World's Host current.
    class Guard {
    public:
        explicit Guard(World& w) : busy_(*w.core_), scope_(w.open_host()) {}

    private:
        SimCore::Busy busy_;
        runtime::HostScope scope_;
    };
    runtime::Host& open_host() const {
        if (!host_) throw std::runtime_error("World is closed");
        return *host_;
    }
    // A Thread of this World's Host by name (other hosts of a cluster may use the same names).
    runtime::Thread* own_thread(std::string_view name) const;
    // After the App stopped: frees this Host's Threads and its name in the cluster.
    void leave_cluster();
    void close_locked();  // close() with the simulation already marked busy
    struct Devices;
    struct DevicesDeleter {
        void operator()(Devices* d) const;  // defined where Devices is complete
    };
    Devices& devices();
    void close_devices();
    hwemu::PciBus& devices_bus();           // devices.cpp
    runtime::Thread* devices_thread();
    struct Sock;
    struct SockDeleter {
        void operator()(Sock* s) const;
    };
    Sock& sock();
    void close_sock();
    struct Nvme;
    struct NvmeDeleter {
        void operator()(Nvme* n) const;
    };
    Nvme& nvme();
    void close_nvme();
    struct Iscsi;
    struct IscsiDeleter {
        void operator()(Iscsi* p) const;
    };
    Iscsi& iscsi();
    void close_iscsi();
    struct BdevIos;  // bdev_py.cpp: the I/Os posted from Python
    struct BdevIosDeleter {
        void operator()(BdevIos* b) const;
    };
    std::shared_ptr<BdevIo> post_bdev_io(const std::string& name, const std::string& op,
                                         uint64_t offset_blocks, uint64_t num_blocks,
                                         pybind11::object data, pybind11::object data2,
                                         const std::optional<std::string>& thread,
                                         const std::shared_ptr<BdevQueue>& queue);
    BdevIos& bdev_ios();
    runtime::Thread* thread_named(const std::optional<std::string>& name);  // default: app
    void close_bdev_ios();  // after the App stopped: I/Os still out are abandoned
    std::optional<std::string> release_nvme_host(void* host);
    bool run_on(runtime::Thread* t, const std::function<void()>& fn,
                uint64_t timeout_ns = 600'000'000'000ull);
    void check_open() const;

    std::shared_ptr<SimCore> core_;        // first: outlives the Host and the App
    std::unique_ptr<runtime::Host> host_;  // destroyed after everything that uses it
    runtime::SimScheduler* sched_ = nullptr;  // core_->sched
    std::unique_ptr<rpc::App> app_;
    std::string name_;
    std::string address_;
    bool in_cluster_ = false;
    bool left_ = false;    // leave_cluster() done
    bool leaked_ = false;  // the App never stopped: it and the Host are leaked, not destroyed
    struct Mark {
        std::string thread;
        uint32_t seq;
        uint64_t time_ns;
    };
    std::vector<Mark> marks_;
    std::unique_ptr<Devices, DevicesDeleter> devices_;
    std::unique_ptr<Nvme, NvmeDeleter> nvme_;
    std::unique_ptr<Sock, SockDeleter> sock_;
    std::unique_ptr<Iscsi, IscsiDeleter> iscsi_;
    std::unique_ptr<BdevIos, BdevIosDeleter> bdev_ios_;
};

}  // namespace strata::py
