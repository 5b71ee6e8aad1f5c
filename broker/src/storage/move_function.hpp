// MoveFunction<R(Args...)>: a move-only callable, like C++23 std::move_only_function (which
// this header becomes a `using` of one day). Why not std::function: completions capture
// move-only things (a buffer, a promise, another MoveFunction) and std::function must copy.
// Callables up to k_inline_bytes that move without throwing live inside the object, so the
// usual completion (a weak pointer and an id or two) costs no allocation.
//
// Not thread-safe (a value type); moving one between threads is the owner's business.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace starling::storage {

template <class Signature>
class MoveFunction;

template <class R, class... Args>
class MoveFunction<R(Args...)> {
public:
    static constexpr std::size_t k_inline_bytes = 48;

    MoveFunction() noexcept = default;
    MoveFunction(std::nullptr_t) noexcept {}

    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, MoveFunction>) && std::is_invocable_r_v<R, std::decay_t<F>&, Args...>
    MoveFunction(F&& f) {  // NOLINT: implicit, as std::function
        using D = std::decay_t<F>;
        if constexpr (fits_inline<D>()) {
            ::new (static_cast<void*>(_storage)) D(std::forward<F>(f));
            _ops = &k_inline_ops<D>;
        } else {
            ::new (static_cast<void*>(_storage)) D*(new D(std::forward<F>(f)));
            _ops = &k_heap_ops<D>;
        }
    }

    MoveFunction(MoveFunction&& other) noexcept : _ops(other._ops) {
        if (_ops != nullptr) _ops->relocate(other._storage, _storage);
        other._ops = nullptr;
    }
    MoveFunction& operator=(MoveFunction&& other) noexcept {
        if (this != &other) {
            reset();
            _ops = other._ops;
            if (_ops != nullptr) _ops->relocate(other._storage, _storage);
            other._ops = nullptr;
        }
        return *this;
    }
    MoveFunction(const MoveFunction&) = delete;
    MoveFunction& operator=(const MoveFunction&) = delete;
    ~MoveFunction() { reset(); }

    explicit operator bool() const noexcept { return _ops != nullptr; }

    // Calling an empty MoveFunction is a bug (as with std::function, minus the throw).
    R operator()(Args... args) { return _ops->call(_storage, std::forward<Args>(args)...); }

private:
    struct Ops {
        R (*call)(void* self, Args&&... args);
        void (*relocate)(void* from, void* to) noexcept;  // move-construct into `to`, destroy `from`
        void (*destroy)(void* self) noexcept;
    };

    template <class D>
    static constexpr bool fits_inline() noexcept {
        return sizeof(D) <= k_inline_bytes && alignof(D) <= alignof(std::max_align_t) &&
               std::is_nothrow_move_constructible_v<D>;
    }

    template <class D>
    static constexpr Ops k_inline_ops{
        [](void* self, Args&&... args) -> R { return (*static_cast<D*>(self))(std::forward<Args>(args)...); },
        [](void* from, void* to) noexcept {
            ::new (to) D(std::move(*static_cast<D*>(from)));
            static_cast<D*>(from)->~D();
        },
        [](void* self) noexcept { static_cast<D*>(self)->~D(); },
    };

    template <class D>
    static constexpr Ops k_heap_ops{
        [](void* self, Args&&... args) -> R { return (**static_cast<D**>(self))(std::forward<Args>(args)...); },
        [](void* from, void* to) noexcept { ::new (to) D*(*static_cast<D**>(from)); },
        [](void* self) noexcept { delete *static_cast<D**>(self); },
    };

    void reset() noexcept {
        if (_ops != nullptr) _ops->destroy(_storage);
        _ops = nullptr;
    }

    alignas(std::max_align_t) unsigned char _storage[k_inline_bytes];
    const Ops* _ops = nullptr;
};

}  // namespace starling::storage
