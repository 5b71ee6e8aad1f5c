// Module counters as the metrics scrape sees them (CONVENTIONS §4): a module declares a plain
// per-shard integer with ModuleContext::add_counter; at scrape time each shard copies the values
// into CounterSamples and metrics/ sums them by name and labels.
//
// Lives on: types only; samples are made on a shard and read on the exposer's thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace starling::session {

// {"reason", "urgent"}: tells series of one family apart.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

struct CounterSample {
    std::string name;  // starling_<module>_<what>_total
    std::string help;
    MetricLabels labels;
    std::uint64_t value = 0;
    // A histogram instead (ModuleContext::add_histogram) when `bounds` is not empty: `buckets`
    // holds bounds.size() + 1 non-cumulative counts (the last is +Inf) and `sum` the total.
    std::vector<double> bounds;
    std::vector<std::uint64_t> buckets;
    double sum = 0;
};

}  // namespace starling::session
