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
#include "broker/src/router/router.hpp"
#include "broker/src/session/counters.hpp"

namespace prometheus {
class Exposer;
}

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

// Serves /metrics on `bind` ("127.0.0.1:9522"). Throws std::runtime_error when it cannot bind.
class MetricsServer {
public:
    MetricsServer(const std::string& bind, BrokerCollector::Snapshot snapshot);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;
    std::uint16_t port() const;
    // Another source of metrics (the store's), scraped with the shards'.
    void add(std::shared_ptr<prometheus::Collectable> collectable);

private:
    std::shared_ptr<BrokerCollector> _collector;
    std::vector<std::shared_ptr<prometheus::Collectable>> _extra;
    std::unique_ptr<prometheus::Exposer> _exposer;
};

// Prometheus text format of a snapshot.
std::string render_text(const std::vector<ShardSnapshot>& shards);

}  // namespace starling::metrics
