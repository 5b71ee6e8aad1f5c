// Reconnect delays: exponential backoff with full jitter (the delay is uniform in
// [0, min(cap, base * 2^attempt)]), so a fleet that lost its broker at the same moment does not
// come back at the same moment. The random source is handed in (tests fix it).
// Lives on: the agent's thread; plain value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace starling::agent {

class Backoff {
public:
    using Ms = std::chrono::milliseconds;
    Backoff(Ms base, Ms cap) noexcept : _base(base), _cap(cap) {}

    // The ceiling of the next delay: min(cap, base * 2^attempts), without overflow.
    Ms ceiling() const noexcept;
    // The next delay, uniform in [0, ceiling()], and counts the attempt.
    template <class Rng>
    Ms next(Rng& rng) {
        const auto c = ceiling();
        if (_attempts < 63) ++_attempts;
        std::uniform_int_distribution<std::int64_t> d(0, c.count());
        return Ms(d(rng));
    }
    // After a link that came up and stayed up: start again from `base`.
    void reset() noexcept { _attempts = 0; }
    std::uint32_t attempts() const noexcept { return _attempts; }

private:
    Ms _base;
    Ms _cap;
    std::uint32_t _attempts = 0;
};

}  // namespace starling::agent
