#include "broker/src/metrics/store_metrics.hpp"

#include <limits>

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include "broker/src/storage/segment_log.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"

namespace starling::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily one(const char* name, const char* help, MetricType type, double value) {
    MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    ClientMetric m;
    if (type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    f.metric.push_back(std::move(m));
    return f;
}

double load(const std::atomic<std::uint64_t>& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); }

}  // namespace

std::vector<MetricFamily> StoreCollector::Collect() const {
    const auto& st = _committer.stats();
    std::vector<MetricFamily> out;
    out.push_back(one("starling_store_healthy", "1 when the store takes writes; 0 after a failed write until it recovers",
                      MetricType::Gauge, st.healthy.load(std::memory_order_relaxed) ? 1 : 0));
    out.push_back(one("starling_store_group_commits_total", "Group commits (one fsync each when synced)",
                      MetricType::Counter, load(st.groups)));
    out.push_back(one("starling_store_batches_total", "Shard batches committed (one per shard per reactor turn with writes)",
                      MetricType::Counter, load(st.batches)));
    out.push_back(one("starling_store_writes_total", "Puts and erases committed", MetricType::Counter, load(st.ops)));
    out.push_back(one("starling_store_bytes_total", "Bytes of committed write batches", MetricType::Counter,
                      load(st.bytes)));
    out.push_back(one("starling_store_syncs_total", "fsyncs of the write-ahead log", MetricType::Counter, load(st.syncs)));
    out.push_back(one("starling_store_faults_total", "Failed writes or syncs (disk full, I/O errors)",
                      MetricType::Counter, load(st.faults)));
    out.push_back(one("starling_store_failed_batches_total", "Batches whose waiters got an error instead of an acknowledgement",
                      MetricType::Counter, load(st.failed_batches)));
    out.push_back(one("starling_store_recoveries_total", "Times the store became writable again after a fault",
                      MetricType::Counter, load(st.recoveries)));
    out.push_back(one("starling_store_pending_batches", "Sealed batches waiting for the committer", MetricType::Gauge,
                      load(st.pending)));
    out.push_back(one("starling_store_unclean_shutdowns_total",
                      "1 when this start recovered from an unclean shutdown (kill -9, power cut)", MetricType::Counter,
                      static_cast<double>(_store.unclean_shutdowns())));
    // The message archive's body logs (storage/segment_log.hpp), all shards together.
    std::uint64_t log_bytes = 0, written = 0, failures = 0, erased = 0, punched = 0, dropped = 0;
    for (const auto* log : _store.segment_logs()) {
        for (const auto& [path, bytes] : log->files()) log_bytes += bytes;
        const auto& ls = log->stats();
        written += ls.bytes_written.load(std::memory_order_relaxed);
        failures += ls.write_failures.load(std::memory_order_relaxed);
        erased += ls.erased.load(std::memory_order_relaxed);
        punched += ls.bytes_punched.load(std::memory_order_relaxed);
        dropped += ls.segments_dropped.load(std::memory_order_relaxed);
    }
    out.push_back(one("starling_archive_log_bytes", "Size of the archive's body logs (segments, holes included)",
                      MetricType::Gauge, static_cast<double>(log_bytes)));
    out.push_back(one("starling_archive_log_written_bytes_total", "Bytes appended to the archive's body logs",
                      MetricType::Counter, static_cast<double>(written)));
    out.push_back(one("starling_archive_log_write_failures_total",
                      "Failed appends to the archive's body logs (their batches failed)", MetricType::Counter,
                      static_cast<double>(failures)));
    out.push_back(one("starling_archive_log_erased_total",
                      "Archived stanzas erased from the body logs (nobody's archive named them any more)",
                      MetricType::Counter, static_cast<double>(erased)));
    out.push_back(one("starling_archive_log_punched_bytes_total",
                      "Bytes of erased stanzas given back to the file system (punched holes)", MetricType::Counter,
                      static_cast<double>(punched)));
    out.push_back(one("starling_archive_log_segments_dropped_total",
                      "Body log segments deleted whole by the retention by age", MetricType::Counter,
                      static_cast<double>(dropped)));
    MetricFamily f;
    f.name = "starling_store_commit_latency_seconds";
    f.help = "From a batch sealed to committed (and synced when asked)";
    f.type = MetricType::Histogram;
    ClientMetric m;
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < storage::k_commit_latency_buckets; ++b) {
        cumulative += st.latency[b].load(std::memory_order_relaxed);
        ClientMetric::Bucket bucket;
        bucket.cumulative_count = cumulative;
        bucket.upper_bound = b < std::size(storage::k_commit_latency_bounds_us)
                                 ? static_cast<double>(storage::k_commit_latency_bounds_us[b]) / 1e6
                                 : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(bucket);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = load(st.latency_sum_us) / 1e6;
    f.metric.push_back(std::move(m));
    out.push_back(std::move(f));
    return out;
}

}  // namespace starling::metrics
