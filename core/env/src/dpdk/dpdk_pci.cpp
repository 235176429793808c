// PCI functions through DPDK's PCI bus (see dpdk_pci.h).
#include "dpdk_pci.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_memory.h>
#include <rte_vfio.h>

#include <fmt/format.h>

#include <strata/base/log.h>

#include "dpdk_abi.h"
#include "eal.h"

namespace strata::env::dpdk {

STRATA_LOG_COMPONENT(dpdk_pci);

namespace {

constexpr const char* kLockDir = "/var/tmp";
constexpr uint32_t kConfigSpaceBytes = 4096;

rte_pci_device* to_pci(rte_device* dev) {
    return reinterpret_cast<rte_pci_device*>(reinterpret_cast<char*>(dev) -
                                             offsetof(rte_pci_device, device));
}

std::string sysfs_driver(const std::string& bdf) {
    std::string link = "/sys/bus/pci/devices/" + bdf + "/driver";
    char buf[PATH_MAX];
    ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
    if (n <= 0) return {};
    buf[n] = '\0';
    const char* slash = strrchr(buf, '/');
    return slash != nullptr ? slash + 1 : buf;
}

bool sysfs_exists(const std::string& bdf) {
    struct stat st {};
    return stat(("/sys/bus/pci/devices/" + bdf).c_str(), &st) == 0;
}

PciFunctionDesc describe(const rte_pci_device* p) {
    PciFunctionDesc d;
    d.bdf = p->name;
    d.vendor_id = p->id.vendor_id;
    d.device_id = p->id.device_id;
    d.subsystem_vendor_id = p->id.subsystem_vendor_id;
    d.subsystem_device_id = p->id.subsystem_device_id;
    d.class_code = p->id.class_id;
    d.numa_node = p->device.numa_node;
    d.kernel_driver = sysfs_driver(d.bdf);
    d.vfio = p->kdrv == RTE_PCI_KDRV_VFIO;
    return d;
}

// Layout sanity check against DPDK's own accessors: a device's embedded rte_device name and the
// name/address fields at our offsets must agree. Fails loudly rather than poke a wrong offset.
bool layout_ok(rte_device* dev) {
    rte_pci_device* p = to_pci(dev);
    const char* name = rte_dev_name(dev);
    if (name == nullptr || strncmp(name, p->name, sizeof(p->name)) != 0) return false;
    rte_pci_addr parsed{};
    if (rte_pci_addr_parse(p->name, &parsed) != 0) return false;
    return rte_pci_addr_cmp(&parsed, &p->addr) == 0;
}

Result<void> require_pci_bus() {
    if (!eal_initialized()) {
        return Error(Errc::not_supported, "dpdk: PCI access needs the dpdk env to be initialised");
    }
    if (rte_eal_has_pci() == 0) {
        return Error(Errc::not_supported,
                     "dpdk: the env runs with no_pci (EAL --no-pci): PCI functions are not "
                     "available; drop no_pci from the env options");
    }
    return {};
}

// ---- the strata rte_pci_driver ------------------------------------------------------------

struct DriverState {
    std::mutex mu;  // serialises claim / detach / list (control path)
    bool registered = false;
    rte_pci_driver driver{};
    // Set while rte_dev_probe runs for a claim; the probe callback runs on the same OS thread.
    const char* pending_bdf = nullptr;
    rte_pci_device* probed = nullptr;
    std::map<std::string, DpdkPciDevice*> claimed;
    // User memory registered for DMA, by start address. Mapped into DPDK's default vfio
    // container (shared by every vfio function) once a function is attached; DPDK keeps such
    // "user mem maps" and re-maps them itself when a group joins an empty container later.
    struct Region {
        uint64_t iova;
        size_t len;
        bool mapped;
    };
    std::map<uintptr_t, Region> regions;
};

DriverState& drv_state() {
    static DriverState s;
    return s;
}

const rte_pci_id kAnyId[] = {
    {RTE_CLASS_ANY_ID, RTE_PCI_ANY_ID, RTE_PCI_ANY_ID, RTE_PCI_ANY_ID, RTE_PCI_ANY_ID},
    {0, 0, 0, 0, 0},
};

int strata_probe(rte_pci_driver*, rte_pci_device* dev) {
    DriverState& s = drv_state();
    if (s.pending_bdf == nullptr || strcmp(s.pending_bdf, dev->name) != 0) {
        return 1;  // not ours to take: DPDK unmaps it again and leaves it unprobed
    }
    s.probed = dev;
    return 0;
}

int strata_remove(rte_pci_device*) {
    return 0;
}

void ensure_driver_registered(DriverState& s) {
    if (s.registered) return;
    s.driver.driver.name = "strata";
    s.driver.probe = strata_probe;
    s.driver.remove = strata_remove;
    s.driver.id_table = kAnyId;
    s.driver.drv_flags = STRATA_RTE_PCI_DRV_NEED_MAPPING;
    rte_pci_register(&s.driver);
    s.registered = true;
}

// s.mu held. Maps one region into the default container; ENODEV-type failures (no vfio group in
// the container yet) leave it for the next attach.
Result<void> map_region(uintptr_t va, DriverState::Region& r) {
    if (rte_vfio_container_dma_map(RTE_VFIO_DEFAULT_CONTAINER_FD, va, r.iova, r.len) != 0) {
        return Error(Errc::io_error,
                     fmt::format("dpdk: vfio DMA map of [{:#x}, +{}) at IOVA {:#x} failed: {}", va,
                                 r.len, r.iova, rte_strerror(rte_errno)));
    }
    r.mapped = true;
    return {};
}

bool any_vfio_attached(const DriverState& s) {
    return !s.claimed.empty();
}

// s.mu held: called right after a successful attach.
void map_pending_regions(DriverState& s) {
    for (auto& [va, r] : s.regions) {
        if (r.mapped) continue;
        if (auto m = map_region(va, r); !m) STRATA_ERRLOG(log_dpdk_pci, "{}", m.error().message());
    }
}

}  // namespace

// ---- per-function lock file ------------------------------------------------------------

Result<int> lock_pci_function(const std::string& bdf, const char* dir) {
    std::string path = fmt::format("{}/strata_pci_lock_{}", dir, bdf);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return Error(Errc::permission_denied,
                     fmt::format("dpdk: cannot create lock file {}: {}", path, strerror(errno)));
    }
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int err = errno;
        struct flock probe {};
        probe.l_type = F_WRLCK;
        probe.l_whence = SEEK_SET;
        pid_t holder = 0;
        if (fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) holder = probe.l_pid;
        close(fd);
        if (err == EACCES || err == EAGAIN) {
            return Error(Errc::busy,
                         fmt::format("dpdk: PCI function {} is claimed by another process (pid {}, "
                                     "lock {})",
                                     bdf, holder, path));
        }
        return Error(Errc::io_error, fmt::format("dpdk: cannot lock {}: {}", path, strerror(err)));
    }
    if (ftruncate(fd, 0) == 0) {
        std::string pid = fmt::format("{}\n", getpid());
        [[maybe_unused]] ssize_t n = pwrite(fd, pid.data(), pid.size(), 0);
    }
    return fd;
}

struct DpdkPciDevice::Impl {
    int lock_fd = -1;
    std::atomic<bool> removed{false};
    std::mutex handler_mu;
    RemoveHandler handler = nullptr;
    void* handler_ctx = nullptr;
    runtime::Thread* owner = nullptr;
    runtime::MsgFn owner_fn = nullptr;
    void* owner_ctx = nullptr;
    bool callback_registered = false;
    std::string bdf;

    static void on_event(const char* name, rte_dev_event_type event, void* arg) {
        auto* impl = static_cast<Impl*>(arg);
        if (event != RTE_DEV_EVENT_REMOVE) return;
        if (impl->removed.exchange(true)) return;  // deliver once
        STRATA_WARNLOG(log_dpdk_pci, "PCI function {} is being removed", name);
        RemoveHandler fn;
        void* ctx;
        runtime::Thread* owner;
        runtime::MsgFn owner_fn;
        void* owner_ctx;
        {
            std::lock_guard lock(impl->handler_mu);
            fn = impl->handler;
            ctx = impl->handler_ctx;
            owner = impl->owner;
            owner_fn = impl->owner_fn;
            owner_ctx = impl->owner_ctx;
        }
        if (owner != nullptr && owner_fn != nullptr) {
            // The owner's ring may be momentarily full: retry (this is DPDK's interrupt thread,
            // not a reactor); give up only if the Thread has exited.
            for (;;) {
                Status st = owner->send(owner_fn, owner_ctx);
                if (st.ok()) break;
                if (st.code() == Errc::shutdown) {
                    STRATA_ERRLOG(log_dpdk_pci,
                                  "{}: removal not delivered: owning Thread '{}' has exited", name,
                                  owner->name());
                    break;
                }
                sched_yield();
            }
        }
        if (fn != nullptr) fn(ctx);
    }
};

Result<std::string> canonical_bdf(std::string_view bdf) {
    std::string s(bdf);
    rte_pci_addr addr{};
    if (s.empty() || s.size() > 32 || rte_pci_addr_parse(s.c_str(), &addr) != 0 ||
        addr.devid > 31 || addr.function > 7) {
        return Error(Errc::invalid_argument,
                     fmt::format("'{}' is not a PCI address (expected DDDD:BB:DD.F, e.g. "
                                 "0000:01:00.0)",
                                 bdf));
    }
    char out[PCI_PRI_STR_SIZE];
    rte_pci_device_name(&addr, out, sizeof(out));
    return std::string(out);
}

Result<std::vector<PciFunctionDesc>> pci_list(bool vfio_only) {
    if (auto r = require_pci_bus(); !r) return r.error();
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);
    rte_bus* bus = rte_bus_find_by_name("pci");
    if (bus == nullptr) {
        return Error(Errc::not_supported, "dpdk: DPDK has no PCI bus (librte_bus_pci not linked)");
    }
    // Pick up functions bound or hot-added since start-up.
    if (rte_bus_scan() != 0) {
        STRATA_WARNLOG(log_dpdk_pci, "PCI bus rescan reported an error; listing what is known");
    }
    std::vector<PciFunctionDesc> out;
    rte_dev_iterator it{};
    rte_device* dev = nullptr;
    RTE_DEV_FOREACH(dev, "bus=pci", &it) {
        if (!layout_ok(dev)) {
            return Error(Errc::internal,
                         "dpdk: struct rte_pci_device layout does not match this DPDK build "
                         "(Strata is built for DPDK 22.11 / ABI 23)");
        }
        PciFunctionDesc d = describe(to_pci(dev));
        if (vfio_only && !d.vfio) continue;
        out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(),
              [](const PciFunctionDesc& a, const PciFunctionDesc& b) { return a.bdf < b.bdf; });
    return out;
}

Error attach_error(const std::string& bdf, int rc, std::string_view eal_errors) {
    // The PCI bus's map step fails with a bare -1, which is not -EPERM: the reason is only in
    // DPDK's log. Real codes (-ENODEV, -EEXIST, ...) from the generic probe path are kept.
    const int e = rc == -1 ? 0 : -rc;
    const Errc code = e == ENODEV ? Errc::not_found : e == EEXIST ? Errc::busy : Errc::io_error;
    std::string reason = e == 0 ? std::string("DPDK gives no error code") : rte_strerror(e);
    if (!eal_errors.empty()) reason = fmt::format("{}; DPDK said: '{}'", reason, eal_errors);
    std::string hint = "vfio needs the function's whole IOMMU group bound to vfio-pci";
    if (eal_errors.find("IOMMU type") != std::string_view::npos) {
        // vfio_iommu_type1 refuses an IOMMU without interrupt remapping (EPERM at
        // VFIO_SET_IOMMU), which DPDK reports as not finding an IOMMU type.
        hint =
            "the kernel's vfio_iommu_type1 refused the IOMMU: it needs interrupt remapping "
            "(a VM: -device intel-iommu,intremap=on) or the module parameter "
            "allow_unsafe_interrupts=1; see docs/user/hardware.md";
    }
    return Error(code,
                 fmt::format("dpdk: attaching PCI function {} failed: {} ({})", bdf, reason, hint));
}

DpdkPciDevice::DpdkPciDevice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<DpdkPciDevice>> DpdkPciDevice::claim(std::string_view bdf_in) {
    auto bdf_r = canonical_bdf(bdf_in);
    if (!bdf_r) return Error(Errc::invalid_argument, "dpdk: claim: " + bdf_r.error().message());
    const std::string bdf = *bdf_r;
    if (auto r = require_pci_bus(); !r) return r.error();

    const EalInfo* info = eal_info();
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);

    if (s.claimed.count(bdf) != 0) {
        return Error(Errc::busy,
                     fmt::format("dpdk: PCI function {} is already claimed by this process", bdf));
    }
    // The allow-list is the user's statement of which functions Strata may touch.
    if (info != nullptr) {
        bool restricted = false, allowed = false;
        for (const std::string& a : info->args) {
            if (a.rfind("-a", 0) == 0) {
                restricted = true;
                if (a.substr(2) == bdf) allowed = true;
            }
        }
        if (restricted && !allowed) {
            return Error(
                Errc::permission_denied,
                fmt::format("dpdk: PCI function {} is not in the env's allowed_pci list", bdf));
        }
    }
    if (!sysfs_exists(bdf)) {
        return Error(Errc::not_found,
                     fmt::format("dpdk: PCI function {} does not exist on this host (`lspci -D` "
                                 "lists the functions)",
                                 bdf));
    }
    std::string kdrv = sysfs_driver(bdf);
    if (kdrv != "vfio-pci") {
        return Error(
            Errc::not_supported,
            fmt::format("dpdk: PCI function {} is bound to {}, not vfio-pci; bind it first "
                        "(as root: modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci "
                        "{}; see docs/user/hardware.md)",
                        bdf, kdrv.empty() ? "no driver" : "'" + kdrv + "'", bdf));
    }
    if (access("/dev/vfio/vfio", R_OK | W_OK) != 0) {
        return Error(Errc::not_supported,
                     fmt::format("dpdk: /dev/vfio/vfio is not accessible ({}); is the vfio-pci "
                                 "module loaded and is this process root?",
                                 strerror(errno)));
    }

    auto fd = lock_pci_function(bdf, kLockDir);
    if (!fd) return fd.error();

    auto impl = std::make_unique<Impl>();
    impl->lock_fd = *fd;
    impl->bdf = bdf;

    ensure_driver_registered(s);
    s.pending_bdf = bdf.c_str();
    s.probed = nullptr;
    eal_take_error_lines();  // only a line logged by this probe may explain its failure
    int rc = rte_dev_probe(bdf.c_str());
    rte_pci_device* dev = s.probed;
    s.pending_bdf = nullptr;
    s.probed = nullptr;
    if (rc < 0 || dev == nullptr) {
        close(impl->lock_fd);
        return attach_error(bdf, rc < 0 ? rc : -EINVAL, eal_take_error_lines());
    }
    if (!layout_ok(&dev->device)) {
        rte_dev_remove(&dev->device);
        close(impl->lock_fd);
        return Error(Errc::internal,
                     "dpdk: struct rte_pci_device layout does not match this DPDK build");
    }

    if (rte_dev_event_callback_register(bdf.c_str(), &Impl::on_event, impl.get()) == 0) {
        impl->callback_registered = true;
    } else {
        STRATA_WARNLOG(log_dpdk_pci, "{}: cannot register the hot-remove callback: {}", bdf,
                       rte_strerror(rte_errno));
    }

    std::unique_ptr<DpdkPciDevice> out(new DpdkPciDevice(std::move(impl)));
    out->dev_ = dev;
    out->desc_ = describe(dev);
    s.claimed[bdf] = out.get();
    map_pending_regions(s);
    STRATA_NOTICELOG(log_dpdk_pci, "claimed PCI function {} ({:04x}:{:04x}, class {:06x})", bdf,
                     out->desc_.vendor_id, out->desc_.device_id, out->desc_.class_code);
    return out;
}

DpdkPciDevice::~DpdkPciDevice() {
    if (attached()) {
        if (auto r = detach(); !r) {
            STRATA_ERRLOG(log_dpdk_pci, "{}", r.error().message());
        }
    }
    if (impl_->callback_registered) {
        while (rte_dev_event_callback_unregister(impl_->bdf.c_str(), &Impl::on_event,
                                                 impl_.get()) == -EAGAIN) {
            sched_yield();
        }
        impl_->callback_registered = false;
    }
}

bool DpdkPciDevice::removed() const noexcept {
    return impl_->removed.load();
}

Result<DpdkPciDevice::BarInfo> DpdkPciDevice::bar(uint32_t index) const {
    if (dev_ == nullptr) {
        return Error(Errc::device_removed, fmt::format("dpdk: {} is detached", desc_.bdf));
    }
    if (index >= PCI_MAX_RESOURCE) {
        return Error(Errc::invalid_argument,
                     fmt::format("dpdk: BAR index {} out of range (0..5)", index));
    }
    const rte_mem_resource& r = dev_->mem_resource[index];
    BarInfo b;
    b.addr = static_cast<volatile uint8_t*>(r.addr);
    b.size_bytes = r.len;
    b.phys_addr = r.phys_addr;
    return b;
}

Status DpdkPciDevice::read_config(void* buf, size_t len, uint32_t offset) const noexcept {
    if (dev_ == nullptr) return Status(Errc::device_removed, "pci function detached");
    if (len == 0 || offset >= kConfigSpaceBytes || len > kConfigSpaceBytes - offset) {
        return Status(Errc::out_of_range, "config space access beyond 4 KiB");
    }
    int n = rte_pci_read_config(dev_, buf, len, offset);
    if (n < 0 || static_cast<size_t>(n) != len) return Status(Errc::io_error, "config read");
    return {};
}

Status DpdkPciDevice::write_config(const void* buf, size_t len, uint32_t offset) noexcept {
    if (dev_ == nullptr) return Status(Errc::device_removed, "pci function detached");
    if (len == 0 || offset >= kConfigSpaceBytes || len > kConfigSpaceBytes - offset) {
        return Status(Errc::out_of_range, "config space access beyond 4 KiB");
    }
    int n = rte_pci_write_config(dev_, buf, len, offset);
    if (n < 0 || static_cast<size_t>(n) != len) return Status(Errc::io_error, "config write");
    return {};
}

void DpdkPciDevice::set_remove_target(runtime::Thread* owner, runtime::MsgFn fn,
                                      void* ctx) noexcept {
    std::lock_guard lock(impl_->handler_mu);
    impl_->owner = owner;
    impl_->owner_fn = fn;
    impl_->owner_ctx = ctx;
}

std::unique_ptr<DpdkPciDevice> DpdkPciDevice::unattached_for_testing(const std::string& name) {
    auto impl = std::make_unique<Impl>();
    impl->bdf = name;
    if (rte_dev_event_callback_register(name.c_str(), &Impl::on_event, impl.get()) == 0) {
        impl->callback_registered = true;
    }
    std::unique_ptr<DpdkPciDevice> out(new DpdkPciDevice(std::move(impl)));
    out->desc_.bdf = name;
    return out;
}

void DpdkPciDevice::raise_remove_for_testing(const std::string& name) {
    rte_dev_event_callback_process(name.c_str(), RTE_DEV_EVENT_REMOVE);
}

void DpdkPciDevice::set_remove_handler(RemoveHandler fn, void* ctx) noexcept {
    std::lock_guard lock(impl_->handler_mu);
    impl_->handler = fn;
    impl_->handler_ctx = ctx;
}

Result<void> DpdkPciDevice::detach() {
    if (dev_ == nullptr) return {};
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);
    if (impl_->callback_registered) {
        // -EAGAIN while the callback runs on the interrupt thread: wait for it to finish.
        for (;;) {
            int rc =
                rte_dev_event_callback_unregister(impl_->bdf.c_str(), &Impl::on_event, impl_.get());
            if (rc != -EAGAIN) break;
            sched_yield();
        }
        impl_->callback_registered = false;
    }
    int rc = rte_dev_remove(&dev_->device);
    dev_ = nullptr;
    s.claimed.erase(impl_->bdf);
    if (impl_->lock_fd >= 0) {
        close(impl_->lock_fd);
        impl_->lock_fd = -1;
    }
    if (rc < 0) {
        return Error(Errc::io_error, fmt::format("dpdk: detaching PCI function {}: {}", impl_->bdf,
                                                 rte_strerror(-rc)));
    }
    STRATA_NOTICELOG(log_dpdk_pci, "detached PCI function {}", impl_->bdf);
    return {};
}

Result<void> vfio_register_region(void* vaddr, uint64_t iova, size_t len) {
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);
    auto va = reinterpret_cast<uintptr_t>(vaddr);
    auto [it, inserted] = s.regions.emplace(va, DriverState::Region{iova, len, false});
    if (!inserted) {
        return Error(Errc::already_exists,
                     fmt::format("dpdk: region at {} is already registered for DMA", vaddr));
    }
    if (any_vfio_attached(s)) {
        if (auto m = map_region(va, it->second); !m) {
            s.regions.erase(it);
            return m;
        }
    }
    return {};
}

Result<void> vfio_unregister_region(void* vaddr) {
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);
    auto it = s.regions.find(reinterpret_cast<uintptr_t>(vaddr));
    if (it == s.regions.end()) return {};
    DriverState::Region r = it->second;
    s.regions.erase(it);
    if (r.mapped &&
        rte_vfio_container_dma_unmap(RTE_VFIO_DEFAULT_CONTAINER_FD,
                                     reinterpret_cast<uintptr_t>(vaddr), r.iova, r.len) != 0) {
        return Error(Errc::io_error, fmt::format("dpdk: vfio DMA unmap of [{}, +{}) failed: {}",
                                                 vaddr, r.len, rte_strerror(rte_errno)));
    }
    return {};
}

size_t claimed_count() {
    DriverState& s = drv_state();
    std::lock_guard lock(s.mu);
    return s.claimed.size();
}

}  // namespace strata::env::dpdk
