#include "broker/src/metrics/health.hpp"

namespace starling::metrics {

Heartbeats::Heartbeats(std::size_t shards)
    : _count(shards), _last(std::make_unique<std::atomic<std::int64_t>[]>(shards)) {
    const auto now = HealthClock::now().time_since_epoch().count();
    for (std::size_t i = 0; i < shards; ++i) _last[i].store(now, std::memory_order_relaxed);
}

void Heartbeats::beat(std::size_t shard, HealthClock::time_point now) noexcept {
    if (shard < _count) _last[shard].store(now.time_since_epoch().count(), std::memory_order_relaxed);
}

std::vector<HealthClock::duration> Heartbeats::ages(HealthClock::time_point now) const {
    std::vector<HealthClock::duration> out;
    out.reserve(_count);
    for (std::size_t i = 0; i < _count; ++i) {
        const HealthClock::duration last(_last[i].load(std::memory_order_relaxed));
        const auto age = now.time_since_epoch() - last;
        out.push_back(age < HealthClock::duration::zero() ? HealthClock::duration::zero() : age);
    }
    return out;
}

HealthReport evaluate_health(const std::vector<HealthClock::duration>& ages, HealthClock::duration stall_limit,
                             bool ready, bool store_writable) {
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    HealthReport r;
    std::string detail;
    for (std::size_t i = 0; i < ages.size(); ++i) {
        if (ages[i] <= stall_limit) continue;
        r.ok = false;
        detail += "shard " + std::to_string(i) + ": reactor stalled, last turn " +
                  std::to_string(duration_cast<milliseconds>(ages[i]).count()) + " ms ago (limit " +
                  std::to_string(duration_cast<milliseconds>(stall_limit).count()) + " ms)\n";
    }
    if (ages.empty()) {
        r.ok = false;
        detail += "no shard is running\n";
    }
    if (ready && !store_writable) {
        r.ok = false;
        detail += "store: not writable (the last commit failed; see the log and starling_store_* metrics)\n";
    }
    r.http_status = r.ok ? 200 : 503;
    r.body = r.ok ? "ok: " + std::to_string(ages.size()) + " shard(s) turning" + (ready ? ", store writable\n" : "\n")
                  : "fail\n" + detail;
    return r;
}

}  // namespace starling::metrics
