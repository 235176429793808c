// PCI: addresses, filters, the claim bookkeeping and PciFunction over a backend's impl.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include <strata/env/backend.h>
#include <strata/env/pci.h>

#include "env_internal.h"

namespace strata::env {

namespace {

bool parse_hex(std::string_view s, size_t max_digits, uint32_t max_value, uint32_t* out) {
    if (s.empty() || s.size() > max_digits) return false;
    uint32_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return false;
        v = v * 16 + static_cast<uint32_t>(d);
    }
    if (v > max_value) return false;
    *out = v;
    return true;
}

}  // namespace

Result<PciAddress> PciAddress::parse(std::string_view text) {
    auto bad = [&] {
        return Error(Errc::invalid_argument,
                     fmt::format("invalid PCI address '{}' (expected DDDD:BB:DD.F or BB:DD.F, hex)",
                                 text));
    };
    std::string_view rest = text;
    uint32_t domain = 0, bus, dev, fn;
    size_t c1 = rest.find(':');
    if (c1 == std::string_view::npos) return bad();
    size_t c2 = rest.find(':', c1 + 1);
    if (c2 != std::string_view::npos) {
        if (!parse_hex(rest.substr(0, c1), 4, 0xffff, &domain)) return bad();
        rest = rest.substr(c1 + 1);
        c1 = rest.find(':');
    }
    size_t dot = rest.find('.', c1 + 1);
    if (dot == std::string_view::npos) return bad();
    if (!parse_hex(rest.substr(0, c1), 2, 0xff, &bus)) return bad();
    if (!parse_hex(rest.substr(c1 + 1, dot - c1 - 1), 2, 0x1f, &dev)) return bad();
    if (!parse_hex(rest.substr(dot + 1), 1, 7, &fn)) return bad();
    return PciAddress{domain, static_cast<uint8_t>(bus), static_cast<uint8_t>(dev),
                      static_cast<uint8_t>(fn)};
}

std::string PciAddress::to_string() const {
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, device, function);
}

bool PciFilter::matches(const PciDeviceInfo& info) const noexcept {
    if (vendor_id && *vendor_id != info.vendor_id) return false;
    if (device_id && *device_id != info.device_id) return false;
    if (class_code && (*class_code & class_mask) != (info.class_code & class_mask)) return false;
    if (address && *address != info.address) return false;
    return true;
}

Result<std::vector<PciDeviceInfo>> enumerate(const PciFilter& filter) {
    auto all = detail::backend().pci_enumerate();
    if (!all.ok()) return all.error();
    std::vector<PciDeviceInfo> out;
    for (const auto& d : *all)
        if (filter.matches(d)) out.push_back(d);
    std::sort(out.begin(), out.end(),
              [](const PciDeviceInfo& a, const PciDeviceInfo& b) { return a.address < b.address; });
    return out;
}

// Claims are kept per Host (HostEnv::claimed): a function claimed in one Host is independent of
// another Host's, which under the sim backend is a different function on a different bus even at
// the same address. Real functions are one per machine whatever the Host: the dpdk backend's lock
// file refuses a second claim of a BDF from any Host or process.
Result<std::unique_ptr<PciFunction>> claim(const PciAddress& address) {
    backend::Backend& be = detail::backend();
    backend::HostEnv& he = backend::host_env();
    auto list = be.pci_enumerate();
    if (!list.ok()) return list.error();
    auto it = std::find_if(list->begin(), list->end(),
                           [&](const PciDeviceInfo& d) { return d.address == address; });
    if (it == list->end())
        return Error(Errc::not_found, fmt::format("PCI function {} not found (backend '{}')",
                                                  address.to_string(), be.name()));
    {
        std::lock_guard lock(he.claim_mu);
        if (!he.claimed.insert(address).second)
            return Error(Errc::busy, fmt::format("PCI function {} is already claimed by this "
                                                 "process (Host '{}')",
                                                 address.to_string(), he.host.name()));
    }
    auto impl = be.pci_claim(address);
    if (!impl.ok()) {
        std::lock_guard lock(he.claim_mu);
        he.claimed.erase(address);
        return impl.error();
    }
    detail::count_claims(1);
    return std::unique_ptr<PciFunction>(new PciFunction(*it, std::move(*impl), &he));
}

PciFunction::PciFunction(PciDeviceInfo info, std::unique_ptr<backend::PciFunctionImpl> impl,
                         backend::HostEnv* host_env)
    : info_(std::move(info)), impl_(std::move(impl)), host_env_(host_env) {}

PciFunction::~PciFunction() { (void)detach(); }

bool PciFunction::removed() const noexcept { return !impl_ || impl_->removed(); }

Result<void> PciFunction::detach() {
    if (!impl_) return {};
    auto r = impl_->detach();
    impl_.reset();
    {
        // The Host it was claimed in, whichever Host detaches it.
        std::lock_guard lock(host_env_->claim_mu);
        host_env_->claimed.erase(info_.address);
    }
    detail::count_claims(-1);
    return r;
}

Status PciFunction::config_read(uint32_t offset, void* buf, uint32_t len) const {
    if (offset % len != 0) return Status(Errc::invalid_argument, "unaligned config access");
    if (offset + len > 4096) return Status(Errc::out_of_range, "config offset past 4096");
    if (!impl_) return Status(Errc::device_removed, "function detached");
    return impl_->config_read(offset, buf, len);
}

Status PciFunction::config_write(uint32_t offset, const void* buf, uint32_t len) {
    if (offset % len != 0) return Status(Errc::invalid_argument, "unaligned config access");
    if (offset + len > 4096) return Status(Errc::out_of_range, "config offset past 4096");
    if (!impl_) return Status(Errc::device_removed, "function detached");
    return impl_->config_write(offset, buf, len);
}

#define STRATA_ENV_CFG_RW(bits)                                                   \
    Result<uint##bits##_t> PciFunction::config_read##bits(uint32_t offset) const { \
        uint##bits##_t v = 0;                                                     \
        STRATA_TRY(config_read(offset, &v, sizeof v));                            \
        return v;                                                                 \
    }                                                                             \
    Status PciFunction::config_write##bits(uint32_t offset, uint##bits##_t value) { \
        return config_write(offset, &value, sizeof value);                        \
    }
STRATA_ENV_CFG_RW(8)
STRATA_ENV_CFG_RW(16)
STRATA_ENV_CFG_RW(32)
#undef STRATA_ENV_CFG_RW

Result<Bar> PciFunction::map_bar(uint32_t index) {
    if (index > 5) return Error(Errc::invalid_argument, fmt::format("BAR index {} > 5", index));
    if (!impl_) return Error(Errc::device_removed, info_.address.to_string() + " is detached");
    return impl_->map_bar(index);
}

void PciFunction::set_hot_remove_target(runtime::Thread* thread, runtime::MsgFn fn,
                                        void* ctx) noexcept {
    if (impl_) impl_->set_hot_remove_target(thread, fn, ctx);
}

// --- lock files ---

namespace backend {

Result<int> acquire_lock_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return Error(Errc::permission_denied,
                     fmt::format("cannot open lock file {}: {}", path, std::strerror(errno)));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(fd, F_SETLK, &fl) != 0) {
        int err = errno;
        struct flock who {};
        who.l_type = F_WRLCK;
        who.l_whence = SEEK_SET;
        pid_t holder = ::fcntl(fd, F_GETLK, &who) == 0 ? who.l_pid : -1;
        ::close(fd);
        if (err == EACCES || err == EAGAIN)
            return Error(Errc::busy, fmt::format("claimed by another process (pid {}, lock {})",
                                                 holder, path));
        return Error(Errc::io_error, fmt::format("cannot lock {}: {}", path, std::strerror(err)));
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
    return fd;
}

void release_lock_file(int fd, const std::string& path, bool unlink) noexcept {
    if (fd < 0) return;
    if (unlink) ::unlink(path.c_str());
    ::close(fd);
}

std::string pci_lock_path(const PciAddress& address) {
    return "/var/tmp/strata_pci_lock_" + address.to_string();
}

}  // namespace backend

}  // namespace strata::env
