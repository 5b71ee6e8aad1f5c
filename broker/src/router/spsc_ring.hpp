// SpscRing<T>: a bounded single-producer single-consumer queue, the wire between two shards.
// One ring per ordered pair of shards (DESIGN §2): the producer is the sending shard's thread,
// the consumer the receiving shard's. Lock-free; push and pop are a few loads and one store.
// When full, try_push() fails and the producer must stop reading sockets rather than wait
// (CONVENTIONS §4). Messages move in by value and out by value.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace starling::router {

// One cache line, so the producer's and the consumer's indices do not share one.
inline constexpr std::size_t k_cache_line = 64;

template <class T>
class SpscRing {
    static_assert(std::is_nothrow_move_constructible_v<T>, "ring slots move without throwing");

public:
    // `capacity` is rounded up to a power of two.
    explicit SpscRing(std::size_t capacity) {
        std::size_t c = 2;
        while (c < capacity) c <<= 1;
        _mask = c - 1;
        _slots = std::unique_ptr<Slot[]>(new Slot[c]);
    }
    ~SpscRing() {
        T* v;
        while ((v = front()) != nullptr) {
            v->~T();
            _head.store(_head.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
    }
    SpscRing(const SpscRing&) = delete;
    SpscRing& operator=(const SpscRing&) = delete;

    std::size_t capacity() const noexcept { return _mask + 1; }

    // Producer side. False when the ring is full; `v` is then left as it was.
    bool try_push(T& v) noexcept {
        const std::size_t tail = _tail.load(std::memory_order_relaxed);
        if (tail - _head_cache >= capacity()) {
            _head_cache = _head.load(std::memory_order_acquire);
            if (tail - _head_cache >= capacity()) return false;
        }
        ::new (static_cast<void*>(_slots[tail & _mask].bytes)) T(std::move(v));
        _tail.store(tail + 1, std::memory_order_release);
        return true;
    }
    bool try_push(T&& v) noexcept { return try_push(v); }

    // Consumer side: calls f(T&&) for up to `max` messages, oldest first; returns how many.
    template <class F>
    std::size_t drain(F&& f, std::size_t max = static_cast<std::size_t>(-1)) {
        std::size_t n = 0;
        T* v;
        while (n < max && (v = front()) != nullptr) {
            T item(std::move(*v));
            v->~T();
            _head.store(_head.load(std::memory_order_relaxed) + 1, std::memory_order_release);
            ++n;
            f(std::move(item));
        }
        return n;
    }

    // Approximate from either side; exact from the consumer when the producer is idle.
    std::size_t size() const noexcept {
        return _tail.load(std::memory_order_acquire) - _head.load(std::memory_order_acquire);
    }
    bool empty() const noexcept { return size() == 0; }

private:
    struct Slot {
        alignas(T) unsigned char bytes[sizeof(T)];
    };

    // Consumer: the oldest message, or nullptr.
    T* front() noexcept {
        const std::size_t head = _head.load(std::memory_order_relaxed);
        if (head == _tail_cache) {
            _tail_cache = _tail.load(std::memory_order_acquire);
            if (head == _tail_cache) return nullptr;
        }
        return std::launder(reinterpret_cast<T*>(_slots[head & _mask].bytes));
    }

    std::unique_ptr<Slot[]> _slots;
    std::size_t _mask = 0;
    alignas(k_cache_line) std::atomic<std::size_t> _head{0};  // written by the consumer
    std::size_t _tail_cache = 0;                               // consumer's copy of _tail
    alignas(k_cache_line) std::atomic<std::size_t> _tail{0};  // written by the producer
    std::size_t _head_cache = 0;                               // producer's copy of _head
};

}  // namespace starling::router
