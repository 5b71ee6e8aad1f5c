#include "broker/src/modules/register/register_limiter.hpp"

namespace starling::modules {

bool RegistrationLimiter::try_acquire(std::string_view address, Clock::time_point now) {
    if (_per_window == 0) return true;
    if (_by_address.size() >= _sweep_at) sweep(now);
    auto [it, fresh] = _by_address.try_emplace(std::string(address), Window{now, 0});
    Window& w = it->second;
    if (!fresh && now - w.start >= _window) w = Window{now, 0};
    if (w.count >= _per_window) return false;
    ++w.count;
    return true;
}

void RegistrationLimiter::sweep(Clock::time_point now) {
    for (auto it = _by_address.begin(); it != _by_address.end();) {
        if (now - it->second.start >= _window) {
            it = _by_address.erase(it);
        } else {
            ++it;
        }
    }
    // Still full of live windows: let it grow, and sweep again at twice the size.
    _sweep_at = _by_address.size() >= _sweep_at / 2 ? _by_address.size() * 2 : 1024;
    if (_sweep_at < 1024) _sweep_at = 1024;
}

}  // namespace starling::modules
