// Host: the state one App keeps — every module's registry and globals (bdevs, lvol stores,
// accel routes, emulated PCI bus, DMA memory and IOVA map, ...). Nothing mutable lives at
// namespace scope: a module keeps its state in a slot of the Host it runs in, so two Apps (two
// Python Worlds, a simulated cluster of initiator and target hosts) in one process never see
// each other.
//
// Which Host: every Thread belongs to one (Scheduler::create_thread gives a new Thread the Host
// of the code creating it, or the one named). current_host() is the Host of the Thread running
// on this OS thread; code outside any Thread (a test's main, a Python call into a World, an
// App's constructor) names its Host with a HostScope. With neither, current_host() is the
// process's fallback Host, which only code that belongs to no App uses (bare unit tests and
// tools); an App never does.
//
// Slots: `host.get<T>()` returns the Host's T, constructed on first use (T(Host&) when T takes
// one, else T()), destroyed with the Host in reverse order of construction. Lookup is lock-free
// (an atomic load from a fixed table, usable on the data path); construction is serialised.
//
// Randomness: each Host has its own PRNG (random_u64, for UUIDs and similar identifiers):
// seeded from the simulator's seed and the Host's name under the simulator, so a seed replays
// the same identifiers whatever else ran in the process; from std::random_device otherwise.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

#include <strata/base/assert.h>
#include <strata/base/random.h>

namespace strata::runtime {

class Host;

namespace detail {
size_t next_host_slot_index() noexcept;
// One index per type, assigned on first use; the same in every Host.
template <class T>
size_t host_slot_index() noexcept {
    static const size_t index = next_host_slot_index();
    return index;
}
}  // namespace detail

class Host {
public:
    static constexpr size_t kMaxSlots = 64;

    // seed: the PRNG's seed (use seed_for() under the simulator); name: for logs.
    explicit Host(std::string name, uint64_t seed);
    ~Host();  // destroys the slots, newest first
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

    const std::string& name() const noexcept { return name_; }

    template <class T>
    T& get() {
        size_t i = detail::host_slot_index<T>();
        STRATA_ASSERT_MSG(i < kMaxSlots, "Host: more than %zu slot types", kMaxSlots);
        if (void* p = slots_[i].load(std::memory_order_acquire)) return *static_cast<T*>(p);
        std::lock_guard lock(mu_);
        if (void* p = slots_[i].load(std::memory_order_acquire)) return *static_cast<T*>(p);
        T* obj;
        if constexpr (std::is_constructible_v<T, Host&>)
            obj = new T(*this);
        else
            obj = new T();
        order_[count_++] = {i, [](void* q) { delete static_cast<T*>(q); }};
        slots_[i].store(obj, std::memory_order_release);
        return *obj;
    }

    // The Host's T if it was already created, else nullptr.
    template <class T>
    T* find() const noexcept {
        size_t i = detail::host_slot_index<T>();
        return i < kMaxSlots ? static_cast<T*>(slots_[i].load(std::memory_order_acquire))
                             : nullptr;
    }

    // Control path, any OS thread.
    uint64_t random_u64();
    // A random (version 4, RFC 4122) UUID from this Host's PRNG, "xxxxxxxx-xxxx-4xxx-...".
    std::string new_uuid();

    // The seed a simulated Host named `name` gets from the simulator's seed: a pure function,
    // so a seed replayed alone gives the same identifiers as inside a larger run.
    static uint64_t seed_for(uint64_t sim_seed, std::string_view name) noexcept;
    // A seed from std::random_device, for Hosts outside the simulator.
    static uint64_t entropy_seed();

private:
    struct Created {
        size_t index;
        void (*destroy)(void*);
    };
    std::string name_;
    std::array<std::atomic<void*>, kMaxSlots> slots_{};
    std::array<Created, kMaxSlots> order_{};
    size_t count_ = 0;
    std::mutex mu_;  // slot creation and the PRNG
    Prng prng_;
};

// The Host of the running Thread, else of the innermost HostScope, else the fallback Host.
Host& current_host() noexcept;
// The process's fallback Host (see above): never used by an App.
Host& fallback_host() noexcept;

// Makes `host` current on this OS thread until the scope ends (code outside any Thread).
class HostScope {
public:
    explicit HostScope(Host& host) noexcept;
    ~HostScope();
    HostScope(const HostScope&) = delete;
    HostScope& operator=(const HostScope&) = delete;

private:
    Host* prev_;
};

namespace detail {
Host* exchange_current_host(Host* host) noexcept;
Host& scoped_host() noexcept;  // the innermost HostScope's Host, else the fallback
}  // namespace detail

}  // namespace strata::runtime
