// RegistrationLimiter: at most N in-band registration attempts per remote address per window
// (fixed windows), on one shard. The kernel spreads one address's connections over the shards'
// listeners, so the broker-wide limit is at most N x shards (like c2s.max_connections_per_ip).
//
// Lives on: one shard (a member of that shard's RegisterModule); no locking.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace starling::modules {

class RegistrationLimiter {
public:
    using Clock = std::chrono::steady_clock;

    // `per_window` 0: no limit.
    RegistrationLimiter(std::uint32_t per_window, Clock::duration window) noexcept
        : _per_window(per_window), _window(window) {}

    // Counts one attempt from `address` at `now`; false when it is over the limit (and then
    // not counted). Memory is bounded: expired windows are swept when the table grows.
    bool try_acquire(std::string_view address, Clock::time_point now);

    std::size_t tracked() const noexcept { return _by_address.size(); }

private:
    struct Window {
        Clock::time_point start;
        std::uint32_t count = 0;
    };
    void sweep(Clock::time_point now);

    std::uint32_t _per_window;
    Clock::duration _window;
    std::size_t _sweep_at = 1024;
    std::unordered_map<std::string, Window> _by_address;
};

}  // namespace starling::modules
