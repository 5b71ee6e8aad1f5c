#include "bench/loadgen/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace starling::loadgen {

void Histogram::merge(const Histogram& other) noexcept {
    for (unsigned i = 0; i < k_buckets; ++i) _counts[i] += other._counts[i];
    _total += other._total;
    _sum += other._sum;
    _max = std::max(_max, other._max);
    _min = std::min(_min, other._min);
}

std::uint64_t Histogram::quantile(double q) const noexcept {
    if (_total == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    // Rank of the wanted value, 1-based: the smallest value with at least q of the samples at
    // or below it.
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(_total)));
    if (rank == 0) rank = 1;
    std::uint64_t seen = 0;
    for (unsigned b = 0; b < k_buckets; ++b) {
        seen += _counts[b];
        if (seen >= rank) return std::min(upper_edge(b), _max);
    }
    return _max;
}

}  // namespace starling::loadgen
