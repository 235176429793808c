// Task<T>: a lazy control-path coroutine bound to a Thread (init, RPC handlers, metadata).
//
//   Task<Result<int>> load(Blob& b) {
//       AsyncResult<Status> done;
//       b.read_md(..., [](void* p, Status s) { static_cast<AsyncResult<Status>*>(p)->set(s); }, &done);
//       Status s = co_await done;               // resumed by message on this Thread
//       co_return 42;
//   }
//   spawn(*thread, load(blob), [](Result<int> r) { ... });   // runs on `thread`
//
// A Task starts when awaited or spawned, never on construction. Resumption after an
// asynchronous wait always goes through the Thread's message ring, so the simulator orders it
// like any other step. Not for the data path: each coroutine frame is a heap allocation.
// Exceptions are not used: return Result<T>; an escaping exception terminates.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

#include <strata/base/assert.h>
#include <strata/runtime/thread.h>

namespace strata::runtime {

namespace detail {
inline void resume_handle(void* address) { std::coroutine_handle<>::from_address(address).resume(); }

struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) const noexcept {
        auto next = h.promise().continuation;
        return next ? next : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
};

template <class T>
struct PromiseValue {
    std::optional<T> value;
    void return_value(T v) { value.emplace(std::move(v)); }
    T take() { return std::move(*value); }
};
template <>
struct PromiseValue<void> {
    void return_void() noexcept {}
    void take() noexcept {}
};
}  // namespace detail

template <class T = void>
class [[nodiscard]] Task {
public:
    struct promise_type : detail::PromiseValue<T> {
        std::coroutine_handle<> continuation;
        Task get_return_object() noexcept {
            return Task(std::coroutine_handle<promise_type>::from_promise(*this));
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        detail::FinalAwaiter final_suspend() const noexcept { return {}; }
        void unhandled_exception() noexcept { std::terminate(); }
    };

    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Task& operator=(Task&& other) noexcept {
        if (this != &other) {
            if (handle_) handle_.destroy();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    ~Task() {
        if (handle_) handle_.destroy();
    }

    // Awaiting a Task runs it to completion (symmetric transfer), then resumes the awaiter.
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiter) noexcept {
        handle_.promise().continuation = awaiter;
        return handle_;
    }
    T await_resume() { return handle_.promise().take(); }

private:
    explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    std::coroutine_handle<promise_type> handle_;
};

// One-shot result of an asynchronous callback, awaitable by one coroutine. set() must run on
// the awaiting coroutine's Thread (Strata completions run on the submitter's Thread); the
// coroutine then resumes by message, never inside set().
template <class T>
class AsyncResult {
public:
    void set(T value) {
        STRATA_ASSERT_MSG(!value_.has_value(), "AsyncResult set twice");
        value_.emplace(std::move(value));
        if (waiter_) deliver(*thread_, detail::resume_handle, waiter_.address());
    }
    bool ready() const noexcept { return value_.has_value(); }

    bool await_ready() const noexcept { return value_.has_value(); }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        waiter_ = h;
        thread_ = current_thread();
        STRATA_ASSERT_MSG(thread_ != nullptr, "co_await AsyncResult outside a Thread");
    }
    T await_resume() { return std::move(*value_); }

private:
    std::optional<T> value_;
    std::coroutine_handle<> waiter_;
    Thread* thread_ = nullptr;
};

// co_await resume_on(thread): continue the coroutine on `thread` (by message).
class resume_on {
public:
    explicit resume_on(Thread& thread) noexcept : thread_(&thread) {}
    bool await_ready() const noexcept { return current_thread() == thread_; }
    void await_suspend(std::coroutine_handle<> h) const {
        if (current_thread() != nullptr)
            deliver(*thread_, detail::resume_handle, h.address());
        else
            STRATA_ASSERT(thread_->send(detail::resume_handle, h.address()).ok());
    }
    void await_resume() const noexcept {}

private:
    Thread* thread_;
};

// co_await sleep_for(ns): resumes the coroutine on its Thread once `ns` of the scheduler's clock
// (virtual time under the sim) has passed. A one-shot timed poller, so the simulator can jump
// to it; control path only (init handshakes, retry back-off), never per I/O.
class sleep_for {
public:
    explicit sleep_for(uint64_t ns) noexcept : ns_(ns == 0 ? 1 : ns) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        thread_ = current_thread();
        STRATA_ASSERT_MSG(thread_ != nullptr, "co_await sleep_for outside a Thread");
        handle_ = h;
        poller_ = thread_->register_poller(&sleep_for::fire, this, "sleep_for", ns_);
    }
    void await_resume() const noexcept {}

private:
    static PollStatus fire(void* ctx) {
        auto* self = static_cast<sleep_for*>(ctx);
        self->thread_->unregister_poller(self->poller_);
        deliver(*self->thread_, detail::resume_handle, self->handle_.address());
        return PollStatus::busy;
    }
    uint64_t ns_;
    Thread* thread_ = nullptr;
    Poller* poller_ = nullptr;
    std::coroutine_handle<> handle_;
};

namespace detail {
// Fire-and-forget driver for spawn(): starts eagerly, frees itself at the end.
struct Detached {
    struct promise_type {
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() const noexcept { return {}; }
        std::suspend_never final_suspend() const noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
};

template <class T, class Done>
Detached run_detached(Thread* thread, Task<T> task, Done done) {
    co_await resume_on(*thread);
    if constexpr (std::is_void_v<T>) {
        co_await task;
        done();
    } else {
        done(co_await task);
    }
}
}  // namespace detail

// Runs `task` on `thread` (starting by message) and calls done(result) there when it ends.
template <class T, class Done>
void spawn(Thread& thread, Task<T> task, Done done) {
    detail::run_detached(&thread, std::move(task), std::move(done));
}

}  // namespace strata::runtime
