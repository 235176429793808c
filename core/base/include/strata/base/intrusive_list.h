// Doubly linked intrusive list: the element owns the hook, so linking never allocates.
// An element derives from ListHook<Tag> once per list it can be on:
//
//   struct Req : ListHook<> {};
//   IntrusiveList<Req> queue;
//   struct Both : ListHook<struct ByAge>, ListHook<struct ByOwner> {};
//   IntrusiveList<Both, ByAge> by_age;
#pragma once

#include <cstddef>
#include <iterator>

#include <strata/base/assert.h>

namespace strata {

template <class Tag = void>
struct ListHook {
    ListHook* prev = nullptr;
    ListHook* next = nullptr;
    bool linked() const noexcept { return next != nullptr; }
};

template <class T, class Tag = void>
class IntrusiveList {
    using Hook = ListHook<Tag>;

public:
    IntrusiveList() noexcept { head_.prev = head_.next = &head_; }
    IntrusiveList(const IntrusiveList&) = delete;
    IntrusiveList& operator=(const IntrusiveList&) = delete;

    bool empty() const noexcept { return head_.next == &head_; }
    size_t size() const noexcept { return size_; }

    void push_back(T& item) noexcept { insert_before(&head_, hook(item)); }
    void push_front(T& item) noexcept { insert_before(head_.next, hook(item)); }

    T& front() noexcept { STRATA_DEBUG_ASSERT(!empty()); return owner(head_.next); }
    T& back() noexcept { STRATA_DEBUG_ASSERT(!empty()); return owner(head_.prev); }

    T* pop_front() noexcept {
        if (empty()) return nullptr;
        T& item = front();
        remove(item);
        return &item;
    }

    void remove(T& item) noexcept {
        Hook* h = hook(item);
        STRATA_ASSERT_MSG(h->linked(), "removing an element that is not on a list");
        h->prev->next = h->next;
        h->next->prev = h->prev;
        h->prev = h->next = nullptr;
        --size_;
    }

    static bool is_linked(const T& item) noexcept {
        return static_cast<const Hook&>(item).linked();
    }

    // Moves every element of `other` to the end of this list.
    void splice_back(IntrusiveList& other) noexcept {
        while (T* item = other.pop_front()) push_back(*item);
    }

    class iterator {
    public:
        using iterator_category = std::bidirectional_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = T*;
        using reference = T&;
        iterator() = default;
        explicit iterator(Hook* h) : h_(h) {}
        T& operator*() const { return owner(h_); }
        T* operator->() const { return &owner(h_); }
        iterator& operator++() { h_ = h_->next; return *this; }
        iterator operator++(int) { auto t = *this; h_ = h_->next; return t; }
        iterator& operator--() { h_ = h_->prev; return *this; }
        bool operator==(const iterator& o) const { return h_ == o.h_; }
    private:
        Hook* h_ = nullptr;
    };
    iterator begin() noexcept { return iterator(head_.next); }
    iterator end() noexcept { return iterator(&head_); }

private:
    static Hook* hook(T& item) noexcept { return static_cast<Hook*>(&item); }
    static T& owner(Hook* h) noexcept { return static_cast<T&>(*h); }
    void insert_before(Hook* pos, Hook* h) noexcept {
        STRATA_ASSERT_MSG(!h->linked(), "element is already on a list");
        h->next = pos;
        h->prev = pos->prev;
        pos->prev->next = h;
        pos->prev = h;
        ++size_;
    }

    Hook head_;
    size_t size_ = 0;
};

}  // namespace strata
