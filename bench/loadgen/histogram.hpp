// Log-bucketed latency histogram (HdrHistogram's layout, simplified): values up to 2^k_sub_bits
// are exact, above that each power of two is split into 2^k_sub_bits linear buckets, so every
// recorded value is known within 1/2^k_sub_bits (about 1.6%). Fixed size, no allocation per
// record, mergeable: one per worker thread, summed at the end.
// Lives on: one worker thread while recording; the main thread merges after the workers stop.
#pragma once

#include <array>
#include <cstdint>

namespace starling::loadgen {

class Histogram {
public:
    static constexpr unsigned k_sub_bits = 6;                   // 64 buckets per power of two
    static constexpr unsigned k_sub = 1u << k_sub_bits;
    static constexpr unsigned k_buckets = (64 - k_sub_bits + 1) * k_sub;

    void record(std::uint64_t value) noexcept {
        ++_counts[bucket_of(value)];
        ++_total;
        if (value > _max) _max = value;
        if (value < _min) _min = value;
        _sum += value;
    }
    void merge(const Histogram& other) noexcept;

    std::uint64_t count() const noexcept { return _total; }
    std::uint64_t max() const noexcept { return _total ? _max : 0; }
    std::uint64_t min() const noexcept { return _total ? _min : 0; }
    double mean() const noexcept { return _total ? static_cast<double>(_sum) / static_cast<double>(_total) : 0.0; }
    // The value at quantile q in [0, 1]: the upper edge of the bucket holding it (capped at max).
    std::uint64_t quantile(double q) const noexcept;

    static unsigned bucket_of(std::uint64_t v) noexcept {
        if (v < k_sub) return static_cast<unsigned>(v);
        const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));  // >= k_sub_bits
        const unsigned shift = msb - k_sub_bits;
        const unsigned sub = static_cast<unsigned>(v >> shift) & (k_sub - 1);
        return (shift + 1) * k_sub + sub;
    }
    // Largest value that falls in bucket b.
    static std::uint64_t upper_edge(unsigned b) noexcept {
        if (b < k_sub) return b;
        const unsigned shift = b / k_sub - 1;
        const std::uint64_t base = (std::uint64_t{k_sub} | (b % k_sub)) << shift;
        return base + ((std::uint64_t{1} << shift) - 1);
    }

private:
    std::array<std::uint64_t, k_buckets> _counts{};
    std::uint64_t _total = 0;
    std::uint64_t _sum = 0;
    std::uint64_t _max = 0;
    std::uint64_t _min = UINT64_MAX;
};

}  // namespace starling::loadgen
