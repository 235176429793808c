#include <strata/hwemu/pci/pci_bus.h>

#include <unistd.h>

#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include <strata/base/assert.h>
#include <strata/base/log.h>

namespace strata::hwemu {

STRATA_LOG_COMPONENT(hwemu_pci);

namespace {

constexpr uint32_t kCfgCommand = 0x04;
constexpr uint32_t kCfgStatus = 0x06;
constexpr uint32_t kCfgBar0 = 0x10;
constexpr uint32_t kCfgCapPtr = 0x34;
constexpr uint32_t kCfgIntLine = 0x3c;
constexpr uint32_t kCfgIntPin = 0x3d;
constexpr uint16_t kStatusCapList = 1u << 4;

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Names bus instances for their lock files (PciBus::lock_path), nothing more. Process-wide on
// purpose: lock files live in the file system, which every Host of the process shares, and two
// Hosts' buses may have a function at the same address, so their ids must differ; a per-Host
// count would give both Hosts' first bus the same id and one lock file for two functions.
std::atomic<uint32_t> g_bus_serial{0};

}  // namespace

// --- EmulatedFunction ---

EmulatedFunction::EmulatedFunction(PciBus& bus, env::PciAddress address, PciFunctionConfig config,
                                   PciModel* model)
    : bus_(bus), address_(address), config_(std::move(config)), model_(model),
      dma_(*this, bus.iova_map()) {
    name_ = config_.name.empty()
                ? fmt::format("{:04x}:{:04x}", config_.vendor_id, config_.device_id)
                : config_.name;
    uint8_t* c = config_space_.data();
    put16(c + 0x00, config_.vendor_id);
    put16(c + 0x02, config_.device_id);
    c[0x08] = config_.revision_id;
    c[0x09] = config_.class_code & 0xff;
    c[0x0a] = (config_.class_code >> 8) & 0xff;
    c[0x0b] = (config_.class_code >> 16) & 0xff;
    c[0x0e] = 0;  // header type 0
    put16(c + 0x2c, config_.subsystem_vendor_id);
    put16(c + 0x2e, config_.subsystem_device_id);
    c[kCfgIntPin] = config_.interrupt_pin;
    // Writable: command (I/O, memory, bus master, parity, SERR, INTx disable), interrupt line.
    put16(writable_.data() + kCfgCommand, 0x0547);
    writable_[kCfgIntLine] = 0xff;
    for (uint32_t i = 0; i < 6; ++i) {
        const BarConfig& b = config_.bars[i];
        if (b.size_bytes == 0) continue;
        uint32_t flags = (b.is_64bit ? 0x4u : 0u) | (b.prefetchable ? 0x8u : 0u);
        put32(c + kCfgBar0 + 4 * i, flags);
        uint64_t mask = ~(b.size_bytes - 1);
        put32(writable_.data() + kCfgBar0 + 4 * i, static_cast<uint32_t>(mask) & ~0xfu);
        if (b.is_64bit) put32(writable_.data() + kCfgBar0 + 4 * (i + 1), mask >> 32);
    }
    // Capability list from 0x40.
    uint32_t off = 0x40;
    uint8_t* prev_next = c + kCfgCapPtr;
    for (const auto& cap : config_.capabilities) {
        *prev_next = static_cast<uint8_t>(off);
        c[off] = cap.id;
        c[off + 1] = 0;
        std::memcpy(c + off + 2, cap.body.data(), cap.body.size());
        std::memset(writable_.data() + off + 2, 0xff, cap.body.size());
        prev_next = c + off + 1;
        off = (off + 2 + static_cast<uint32_t>(cap.body.size()) + 3) & ~3u;
    }
    if (!config_.capabilities.empty()) put16(c + kCfgStatus, kStatusCapList);
}

void EmulatedFunction::config_read(uint32_t offset, void* buf, uint32_t len) const noexcept {
    if (removed_) {
        std::memset(buf, 0xff, len);
        return;
    }
    std::memcpy(buf, config_space_.data() + offset, len);
}

void EmulatedFunction::config_write(uint32_t offset, const void* buf, uint32_t len) noexcept {
    if (removed_) return;
    const auto* in = static_cast<const uint8_t*>(buf);
    for (uint32_t i = 0; i < len; ++i) {
        uint8_t m = writable_[offset + i];
        config_space_[offset + i] = (config_space_[offset + i] & ~m) | (in[i] & m);
    }
}

uint64_t EmulatedFunction::bar_address(uint32_t index) const noexcept {
    if (index > 5) return 0;
    uint32_t lo;
    std::memcpy(&lo, config_space_.data() + kCfgBar0 + 4 * index, 4);
    uint64_t addr = lo & ~0xfu;
    if (config_.bars[index].is_64bit && index < 5) {
        uint32_t hi;
        std::memcpy(&hi, config_space_.data() + kCfgBar0 + 4 * (index + 1), 4);
        addr |= uint64_t(hi) << 32;
    }
    return addr;
}

uint64_t EmulatedFunction::bar_read(uint32_t bar, uint64_t offset, uint32_t width) noexcept {
    const uint64_t ones = width == 8 ? ~uint64_t{0} : 0xffffffffu;
    if (removed_) return ones;
    if (bar > 5 || offset + width > config_.bars[bar].size_bytes || offset % width != 0) {
        STRATA_ERRLOG(log_hwemu_pci, "{}: bad BAR{} read at {:#x} width {}", name_, bar, offset,
                      width);
        return ones;
    }
    return model_->bar_read(bar, offset, width);
}

void EmulatedFunction::bar_write(uint32_t bar, uint64_t offset, uint32_t width,
                                 uint64_t value) noexcept {
    if (removed_) return;
    if (bar > 5 || offset + width > config_.bars[bar].size_bytes || offset % width != 0) {
        STRATA_ERRLOG(log_hwemu_pci, "{}: bad BAR{} write at {:#x} width {}", name_, bar, offset,
                      width);
        return;
    }
    model_->bar_write(bar, offset, width, value);
}

void EmulatedFunction::remove() {
    removed_.store(true, std::memory_order_release);
    model_->on_surprise_removal();
    deliver_remove();
}

void EmulatedFunction::deliver_remove() {
    if (!removed_ || remove_delivered_ || !remove_thread_ || !remove_fn_) return;
    remove_delivered_ = true;
    Status s = remove_thread_->send(remove_fn_, remove_ctx_);
    if (!s.ok())
        STRATA_ERRLOG(log_hwemu_pci, "{}: hot-remove message to Thread {} failed: {}",
                      address_.to_string(), remove_thread_->name(), s.to_string());
}

// --- the claim (env's PciFunctionImpl) ---

class SimClaim final : public env::backend::PciFunctionImpl {
public:
    SimClaim(std::shared_ptr<EmulatedFunction> fn, int lock_fd, std::string lock_path)
        : fn_(std::move(fn)), lock_fd_(lock_fd), lock_path_(std::move(lock_path)) {}
    ~SimClaim() override {
        if (lock_fd_ >= 0) release();
    }

    bool removed() const noexcept override { return fn_->removed(); }
    Status config_read(uint32_t offset, void* buf, uint32_t len) const noexcept override {
        fn_->config_read(offset, buf, len);
        return Status::success();
    }
    Status config_write(uint32_t offset, const void* buf, uint32_t len) noexcept override {
        fn_->config_write(offset, buf, len);
        return Status::success();
    }
    Result<env::Bar> map_bar(uint32_t index) override {
        const BarConfig& b = fn_->config().bars[index];
        bool upper_half = index > 0 && fn_->config().bars[index - 1].is_64bit;
        if (b.size_bytes == 0 || upper_half)
            return Error(Errc::not_found, fmt::format("{} has no BAR{}",
                                                      fn_->address().to_string(), index));
        return env::Bar(nullptr, fn_.get(), index, b.size_bytes);
    }
    void set_hot_remove_target(runtime::Thread* thread, runtime::MsgFn fn,
                               void* ctx) noexcept override {
        std::lock_guard lock(fn_->bus_.mu_);
        fn_->remove_thread_ = thread;
        fn_->remove_fn_ = fn;
        fn_->remove_ctx_ = ctx;
        fn_->deliver_remove();  // already removed: deliver now
    }
    Result<void> detach() override {
        release();
        return {};
    }

private:
    void release() {
        std::lock_guard lock(fn_->bus_.mu_);
        fn_->claimed_ = false;
        fn_->remove_thread_ = nullptr;
        fn_->remove_fn_ = nullptr;
        env::backend::release_lock_file(lock_fd_, lock_path_, true);
        lock_fd_ = -1;
    }

    std::shared_ptr<EmulatedFunction> fn_;
    int lock_fd_;
    std::string lock_path_;
};

// --- PciBus ---

PciBus::PciBus(runtime::Host& host)
    : host_(host), map_(env::backend::iova_map(host)),
      id_(fmt::format("{}_{}", ::getpid(), g_bus_serial.fetch_add(1))) {
    STRATA_ASSERT_MSG(env::backend::sim_pci_provider(host_) == nullptr,
                      "another emulated PCI bus is attached to Host '%s'", host_.name().c_str());
    env::backend::set_sim_pci_provider(host_, this);
}

PciBus::~PciBus() {
    std::lock_guard lock(mu_);
    for (auto& [addr, fn] : functions_)
        STRATA_ASSERT_MSG(!fn->claimed_, "PciBus destroyed while %s is claimed",
                          addr.to_string().c_str());
    for (auto& fn : removed_)
        STRATA_ASSERT_MSG(!fn->claimed_, "PciBus destroyed while removed %s is still claimed",
                          fn->address().to_string().c_str());
    if (env::backend::sim_pci_provider(host_) == this)
        env::backend::set_sim_pci_provider(host_, nullptr);
}

std::string PciBus::lock_path(const env::PciAddress& address) const {
    return fmt::format("/var/tmp/strata_sim_pci_{}_{}.lock", id_, address.to_string());
}

Result<EmulatedFunction*> PciBus::add_function(const env::PciAddress& address,
                                               const PciFunctionConfig& config, PciModel* model) {
    STRATA_ASSERT(model != nullptr);
    std::string where = address.to_string();
    for (uint32_t i = 0; i < 6; ++i) {
        const BarConfig& b = config.bars[i];
        if (b.size_bytes == 0) continue;
        if (b.size_bytes < 16 || (b.size_bytes & (b.size_bytes - 1)) != 0)
            return Error(Errc::invalid_argument,
                         fmt::format("{}: BAR{} size {:#x} is not a power of two >= 16", where, i,
                                     b.size_bytes));
        if (b.is_64bit && (i == 5 || config.bars[i + 1].size_bytes != 0))
            return Error(Errc::invalid_argument,
                         fmt::format("{}: 64-bit BAR{} needs BAR{} free for its upper half",
                                     where, i, i + 1));
        if (!b.is_64bit && b.size_bytes > (uint64_t{1} << 31))
            return Error(Errc::invalid_argument,
                         fmt::format("{}: 32-bit BAR{} larger than 2 GiB", where, i));
    }
    uint32_t off = 0x40;
    for (const auto& cap : config.capabilities) off = (off + 2 + cap.body.size() + 3) & ~3u;
    if (off > 0x100)
        return Error(Errc::invalid_argument,
                     fmt::format("{}: capabilities need {:#x} bytes, past the 256-byte header",
                                 where, off - 0x40));
    std::lock_guard lock(mu_);
    if (functions_.count(address))
        return Error(Errc::already_exists, fmt::format("{} is already on the emulated bus", where));
    auto fn = std::make_shared<EmulatedFunction>(*this, address, config, model);
    EmulatedFunction* raw = fn.get();
    functions_.emplace(address, std::move(fn));
    return raw;
}

Result<void> PciBus::surprise_remove(const env::PciAddress& address) {
    return take_off(address, false);
}

Result<void> PciBus::remove_function(const env::PciAddress& address) {
    return take_off(address, true);
}

Result<void> PciBus::take_off(const env::PciAddress& address, bool orderly) {
    std::lock_guard lock(mu_);
    auto it = functions_.find(address);
    if (it == functions_.end())
        return Error(Errc::not_found,
                     fmt::format("{} is not on the emulated bus", address.to_string()));
    auto fn = it->second;
    functions_.erase(it);
    removed_.push_back(fn);
    // A function a driver still holds is pulled from under it whatever the caller meant: that is
    // worth a notice; a model going away after its driver let go (teardown) is routine.
    if (orderly && !fn->claimed_)
        STRATA_INFOLOG(log_hwemu_pci, "{} ({}): removed", address.to_string(), fn->name());
    else
        STRATA_NOTICELOG(log_hwemu_pci, "{} ({}): surprise removal{}", address.to_string(),
                         fn->name(), orderly ? " (its model is destroyed while claimed)" : "");
    fn->remove();
    return {};
}

EmulatedFunction* PciBus::find(const env::PciAddress& address) noexcept {
    std::lock_guard lock(mu_);
    auto it = functions_.find(address);
    return it == functions_.end() ? nullptr : it->second.get();
}

uint64_t PciBus::dma_fault_count() const noexcept {
    std::lock_guard lock(mu_);
    uint64_t n = 0;
    for (const auto& [a, fn] : functions_) n += fn->dma_fault_count();
    for (const auto& fn : removed_) n += fn->dma_fault_count();
    return n;
}

Result<std::vector<env::PciDeviceInfo>> PciBus::list() {
    std::lock_guard lock(mu_);
    std::vector<env::PciDeviceInfo> out;
    for (const auto& [addr, fn] : functions_) {
        const auto& c = fn->config();
        out.push_back(env::PciDeviceInfo{addr, c.vendor_id, c.device_id, c.subsystem_vendor_id,
                                         c.subsystem_device_id, c.class_code, -1, true});
    }
    return out;
}

Result<std::unique_ptr<env::backend::PciFunctionImpl>> PciBus::claim(
    const env::PciAddress& address) {
    std::shared_ptr<EmulatedFunction> fn;
    {
        std::lock_guard lock(mu_);
        auto it = functions_.find(address);
        if (it == functions_.end())
            return Error(Errc::not_found,
                         fmt::format("{} is not on the emulated bus", address.to_string()));
        fn = it->second;
        if (fn->claimed_)
            return Error(Errc::busy, fmt::format("{} is already claimed", address.to_string()));
    }
    std::string path = lock_path(address);
    auto fd = env::backend::acquire_lock_file(path);
    if (!fd.ok())
        return Error(fd.code(), fmt::format("cannot claim {}: {}", address.to_string(),
                                            fd.error().message()));
    std::lock_guard lock(mu_);
    fn->claimed_ = true;
    return std::unique_ptr<env::backend::PciFunctionImpl>(
        new SimClaim(std::move(fn), *fd, std::move(path)));
}

}  // namespace strata::hwemu
