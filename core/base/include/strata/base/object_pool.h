// Fixed-capacity object pool: all objects are built up front, get()/put() never allocate.
// Used for per-channel request pools on the data path. Not thread-safe: a pool belongs to one
// Thread, like the channel that owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <strata/base/assert.h>

namespace strata {

template <class T>
class ObjectPool {
public:
    explicit ObjectPool(size_t capacity)
        : objects_(std::make_unique<T[]>(capacity)), in_use_(capacity, 0), capacity_(capacity) {
        free_.reserve(capacity);
        for (size_t i = capacity; i > 0; --i) free_.push_back(static_cast<uint32_t>(i - 1));
    }
    ObjectPool(const ObjectPool&) = delete;
    ObjectPool& operator=(const ObjectPool&) = delete;

    // nullptr when exhausted: the caller queues or reports Errc::busy.
    T* get() noexcept {
        if (free_.empty()) return nullptr;
        uint32_t idx = free_.back();
        free_.pop_back();
        in_use_[idx] = 1;
        return &objects_[idx];
    }

    void put(T* obj) noexcept {
        size_t idx = index_of(obj);
        STRATA_ASSERT_MSG(in_use_[idx], "object returned to its pool twice");
        in_use_[idx] = 0;
        free_.push_back(static_cast<uint32_t>(idx));
    }

    bool owns(const T* obj) const noexcept {
        return obj >= objects_.get() && obj < objects_.get() + capacity_;
    }
    size_t index_of(const T* obj) const noexcept {
        STRATA_ASSERT_MSG(owns(obj), "object does not belong to this pool");
        return static_cast<size_t>(obj - objects_.get());
    }
    T& at(size_t idx) noexcept { STRATA_ASSERT(idx < capacity_); return objects_[idx]; }
    bool in_use(size_t idx) const noexcept { return idx < capacity_ && in_use_[idx]; }

    size_t capacity() const noexcept { return capacity_; }
    size_t available() const noexcept { return free_.size(); }
    size_t outstanding() const noexcept { return capacity_ - free_.size(); }

private:
    std::unique_ptr<T[]> objects_;
    std::vector<uint8_t> in_use_;
    std::vector<uint32_t> free_;
    size_t capacity_;
};

}  // namespace strata
