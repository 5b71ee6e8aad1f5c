// Result<T, E>: a value or an error, shaped like C++23 std::expected so that one day this
// header becomes `template <class T, class E> using Result = std::expected<T, E>;`.
// Used on every hot path instead of exceptions (CONVENTIONS §3).
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

namespace xmpp {

template <class E>
class Unexpected {
public:
    constexpr explicit Unexpected(E e) noexcept(std::is_nothrow_move_constructible_v<E>)
        : _error(std::move(e)) {}
    constexpr const E& error() const& noexcept { return _error; }
    constexpr E& error() & noexcept { return _error; }
    constexpr E&& error() && noexcept { return std::move(_error); }

private:
    E _error;
};

template <class E>
Unexpected(E) -> Unexpected<E>;

template <class T, class E>
class [[nodiscard]] Result {
public:
    using value_type = T;
    using error_type = E;

    constexpr Result() requires std::is_default_constructible_v<T> : _v(std::in_place_index<0>) {}
    template <class U = T>
        requires std::is_constructible_v<T, U&&> &&
                 (!std::is_same_v<std::remove_cvref_t<U>, Result>) &&
                 (!std::is_same_v<std::remove_cvref_t<U>, Unexpected<E>>)
    constexpr Result(U&& v) : _v(std::in_place_index<0>, std::forward<U>(v)) {}
    template <class G>
    constexpr Result(Unexpected<G> u) : _v(std::in_place_index<1>, std::move(u).error()) {}

    constexpr bool has_value() const noexcept { return _v.index() == 0; }
    constexpr explicit operator bool() const noexcept { return has_value(); }

    constexpr T& value() & noexcept { assert(has_value()); return *std::get_if<0>(&_v); }
    constexpr const T& value() const& noexcept { assert(has_value()); return *std::get_if<0>(&_v); }
    constexpr T&& value() && noexcept { assert(has_value()); return std::move(*std::get_if<0>(&_v)); }
    constexpr T& operator*() & noexcept { return value(); }
    constexpr const T& operator*() const& noexcept { return value(); }
    constexpr T* operator->() noexcept { return &value(); }
    constexpr const T* operator->() const noexcept { return &value(); }

    constexpr const E& error() const& noexcept { assert(!has_value()); return *std::get_if<1>(&_v); }
    constexpr E& error() & noexcept { assert(!has_value()); return *std::get_if<1>(&_v); }

    template <class U>
    constexpr T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

private:
    std::variant<T, E> _v;
};

// Result<void, E>: success carries nothing.
template <class E>
class [[nodiscard]] Result<void, E> {
public:
    constexpr Result() noexcept = default;
    template <class G>
    constexpr Result(Unexpected<G> u) : _error(std::move(u).error()), _ok(false) {}

    constexpr bool has_value() const noexcept { return _ok; }
    constexpr explicit operator bool() const noexcept { return _ok; }
    constexpr const E& error() const noexcept { assert(!_ok); return _error; }

private:
    E _error{};
    bool _ok = true;
};

}  // namespace xmpp
