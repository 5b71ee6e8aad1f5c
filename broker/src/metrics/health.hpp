// Health of a running broker, as /health and /ready on the metrics port and as the systemd
// watchdog's condition (deploy/README.md).
//
// Liveness: every shard's reactor has turned within the stall limit. Each shard stamps its own
// slot from a timer on its io_context (a timer runs only when the loop turns); the checker
// compares the stamps with the clock. Readiness: live, and the store takes writes (the
// committer is running and not in its failed state, storage/README.md "Faults and recovery").
//
// Lives on: created by the main thread before the shards start; each shard writes only its own
// slot (beat), any thread reads (the metrics server's, the watchdog's). The slots are relaxed
// atomics: a cross-thread liveness flag, not a counter (CONVENTIONS §4 keeps counters plain).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace starling::metrics {

using HealthClock = std::chrono::steady_clock;

class Heartbeats {
public:
    explicit Heartbeats(std::size_t shards);
    std::size_t size() const noexcept { return _count; }
    // On shard `shard`'s thread, from its timer: "my loop turned at `now`".
    void beat(std::size_t shard, HealthClock::time_point now) noexcept;
    // Time since each shard's last beat; a shard that never beat counts from construction.
    std::vector<HealthClock::duration> ages(HealthClock::time_point now) const;

private:
    std::size_t _count;
    std::unique_ptr<std::atomic<std::int64_t>[]> _last;  // steady_clock ticks
};

// What one probe found, ready to send: 200 or 503 and a small text body that names what failed.
struct HealthReport {
    bool ok = true;
    int http_status = 200;
    std::string body;
};

// Pure evaluation (unit-tested): `ages` of each shard's last turn, `stall_limit`, and for
// readiness (`ready`) whether the store takes writes.
HealthReport evaluate_health(const std::vector<HealthClock::duration>& ages, HealthClock::duration stall_limit,
                             bool ready, bool store_writable);

}  // namespace starling::metrics
