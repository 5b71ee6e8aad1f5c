// Prometheus metrics of the store and its write path: health, group commits, faults, commit
// latency, and whether the last shutdown was unclean. Read from the committer's atomics at
// scrape time (storage::CommitterStats), so nothing on a shard is touched.
//
// Lives on: the exposer's thread; the Store and Committer it reads outlive the exposer.
#pragma once

#include <vector>

#include <prometheus/collectable.h>

namespace starling::storage {
class Committer;
class Store;
}  // namespace starling::storage

namespace starling::metrics {

class StoreCollector final : public prometheus::Collectable {
public:
    StoreCollector(const storage::Store& store, const storage::Committer& committer) noexcept
        : _store(store), _committer(committer) {}
    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    const storage::Store& _store;
    const storage::Committer& _committer;
};

}  // namespace starling::metrics
