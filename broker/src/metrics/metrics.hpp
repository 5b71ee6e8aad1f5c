// Prometheus metrics (DESIGN §9). Shards keep plain integers (CONVENTIONS §4); at scrape time
// the exposer's thread asks every shard for a snapshot through its io_context and sums them
// here, so the stanza path never touches an atomic or a lock for metrics.
//
// Lives on: the exposer's own thread (prometheus-cpp's civetweb); snapshots are taken on each
// shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>

#include "broker/src/c2s/shard_context.hpp"
#include "broker/src/metrics/health.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/counters.hpp"

struct mg_context;

namespace starling::metrics {

struct ShardSnapshot {
    std::uint16_t shard = 0;
    c2s::C2sCounters c2s{};
    router::RouterCounters router{};
    std::size_t connections = 0;
    std::size_t bound = 0;
    std::size_t mailbox_depth = 0;
    std::size_t sm_unacked = 0;   // XEP-0198: stanzas sent and not yet acknowledged, all sessions
    std::size_t sm_hibernating = 0;  // sessions waiting to be resumed
    // Counters the modules declared (ModuleContext::add_counter), in declaration order.
    std::vector<session::CounterSample> modules;
};

class BrokerCollector final : public prometheus::Collectable {
public:
    using Snapshot = std::function<std::vector<ShardSnapshot>()>;
    explicit BrokerCollector(Snapshot snapshot) : _snapshot(std::move(snapshot)) {}
    std::vector<prometheus::MetricFamily> Collect() const override;

    // The text exposition of one snapshot (for `starlingctl stats` and tests).
    static std::vector<prometheus::MetricFamily> families(const std::vector<ShardSnapshot>& shards);

private:
    Snapshot _snapshot;
};

// Serves, on `bind` ("127.0.0.1:9522", "[::1]:9522"), over civetweb (prometheus-cpp's own HTTP
// server library, used directly so that one port carries the probes too):
//   /metrics  the Prometheus text format of the shards' snapshot and every added collectable
//   /health   liveness: 200 when every shard's reactor turns, else 503 naming the stalled shard
//   /ready    readiness: /health and the store takes writes
// `health(ready)` answers the probes; without it they say 404. Throws std::runtime_error when
// it cannot bind. Handlers run on civetweb's threads (at most k_http_threads at once).
class MetricsServer {
public:
    using HealthProbe = std::function<HealthReport(bool ready)>;
    static constexpr int k_http_threads = 2;

    MetricsServer(const std::string& bind, BrokerCollector::Snapshot snapshot, HealthProbe health = {});
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;
    std::uint16_t port() const;
    // Another source of metrics (the store's), scraped with the shards'. Call before traffic:
    // the list is read by the HTTP threads without a lock.
    void add(std::shared_ptr<prometheus::Collectable> collectable);

    // The text /metrics serves (tests).
    std::string scrape() const;
    const HealthProbe& health() const noexcept { return _health; }

private:
    std::shared_ptr<BrokerCollector> _collector;
    std::vector<std::shared_ptr<prometheus::Collectable>> _extra;
    HealthProbe _health;
    mg_context* _http = nullptr;
};

// Prometheus text format of a snapshot.
std::string render_text(const std::vector<ShardSnapshot>& shards);

}  // namespace starling::metrics
