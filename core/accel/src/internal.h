// Framework internals shared by the accel sources (not installed API).
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include <strata/accel/accel.h>
#include <strata/accel/module.h>
#include <strata/base/log.h>
#include <strata/base/object_pool.h>

namespace strata::accel {

STRATA_LOG_COMPONENT(accel);

struct Batch {
    Op* ops = nullptr;
    uint32_t remaining = 0;
    uint32_t first_failed = UINT32_MAX;
    DoneFn done = nullptr;
    void* ctx = nullptr;
};

// The framework's state in one runtime::Host (framework.cpp): modules, routes, options, stats.
struct Framework;

class ChannelImpl {
public:
    // `framework`: the Host's whose device made this channel; it outlives the channel (the
    // device is unregistered, every channel gone, before the Host drops it).
    ChannelImpl(Framework& framework, runtime::Thread& thread, const FrameworkOptions& options);
    ~ChannelImpl();

    Status submit(const Op& op, DoneFn done, void* ctx) noexcept;
    Status submit_batch(Op* ops, uint32_t count, DoneFn done, void* ctx) noexcept;
    void finish(Task& task, Status status) noexcept;
    Status to_software(Task& task) noexcept;

    const char* module_for(Opcode op) const noexcept;
    uint32_t tasks_available() const noexcept { return static_cast<uint32_t>(tasks_.available()); }
    uint32_t outstanding() const noexcept { return outstanding_; }
    Stats& stats() noexcept { return stats_; }
    runtime::Thread& thread() const noexcept { return thread_; }
    Framework& framework() const noexcept { return framework_; }

    void set_module_channel(size_t index, std::unique_ptr<ModuleChannel> mc) {
        module_channels_[index] = std::move(mc);
    }

private:
    static runtime::PollStatus poll(void* ctx) noexcept;
    // The module that serves `wanted` (a routed_module() index) on this Thread: it, or
    // software when this Thread has no channel of it.
    size_t serving_module(size_t wanted) const noexcept;
    Status dispatch(Task& task) noexcept;

    Framework& framework_;  // routes read per op without a Host lookup
    runtime::Thread& thread_;
    ObjectPool<Task> tasks_;
    ObjectPool<Batch> batches_;
    std::array<std::unique_ptr<ModuleChannel>, kMaxModules> module_channels_{};
    runtime::Poller* poller_ = nullptr;
    uint32_t outstanding_ = 0;
    Stats stats_;
};

void fold_gone_stats(Framework& framework, const Stats& s);  // framework.cpp

// Validates `op` and fills the task's normalized buffers. invalid_argument with a context.
Status normalize(const Op& op, Task& task) noexcept;

// Module table and routing (framework.cpp).
const std::vector<Module*>& modules(const Framework& framework);
size_t software_index() noexcept;  // 0
// Effective module index per opcode (relaxed atomic reads on the data path).
size_t routed_module(const Framework& framework, Opcode op) noexcept;

// Module factories: the explicit table.
std::unique_ptr<Module> make_software_module();
std::unique_ptr<Module> make_ioat_module();

// Executes one task in software, synchronously (software.cpp); returns its status.
Status execute_software(Task& task) noexcept;

}  // namespace strata::accel
