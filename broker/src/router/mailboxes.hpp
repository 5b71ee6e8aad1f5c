// Mailboxes<Msg>: the only way shards talk (DESIGN §2). One SpscRing per ordered pair of shards,
// drained in batches on the receiving shard's thread, with at most one wake-up per batch.
//
// Producer (shard `from`): send() as many times as it likes during a reactor turn, then flush()
// once, which wakes each destination that got something and is not already scheduled.
// Consumer (shard `to`): when woken, drain() every incoming ring.
//
// Lives on: shared by all shards; each ring has exactly one producer and one consumer thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "broker/src/router/spsc_ring.hpp"

namespace starling::router {

using ShardId = std::uint16_t;

template <class Msg>
class Mailboxes {
public:
    // `wake(to)` must arrange for drain(to, ...) to run on shard `to` soon (e.g. asio::post).
    Mailboxes(std::size_t shards, std::size_t capacity, std::function<void(ShardId)> wake)
        : _n(shards), _wake(std::move(wake)), _targets(shards) {
        _rings.reserve(shards * shards);
        for (std::size_t i = 0; i < shards * shards; ++i) {
            // The diagonal stays empty: a shard calls itself directly (CONVENTIONS §4).
            _rings.push_back(i / shards == i % shards ? nullptr : std::make_unique<SpscRing<Msg>>(capacity));
        }
        _dirty = std::vector<std::vector<std::uint8_t>>(shards, std::vector<std::uint8_t>(shards, 0));
    }

    std::size_t shards() const noexcept { return _n; }

    // From shard `from`'s thread. False when the ring is full: the caller keeps `m` and must
    // apply back-pressure (stop reading the socket that produced it), never wait.
    bool send(ShardId from, ShardId to, Msg& m) noexcept {
        if (!ring(from, to).try_push(m)) return false;
        _dirty[from][to] = 1;
        return true;
    }

    // From shard `from`'s thread, once per reactor turn: wakes destinations that got mail.
    void flush(ShardId from) {
        auto& dirty = _dirty[from];
        for (ShardId to = 0; to < _n; ++to) {
            if (!dirty[to]) continue;
            dirty[to] = 0;
            if (!_targets[to].scheduled.exchange(true, std::memory_order_acq_rel)) _wake(to);
        }
    }

    // On shard `to`'s thread, when woken: f(Msg&&) for each message, oldest first per sender.
    // Returns how many; when `budget` ran out the shard is woken again, so other work can run.
    template <class F>
    std::size_t drain(ShardId to, F&& f, std::size_t budget = 4096) {
        // Clear the flag before draining: a send that lands after this point wakes us again.
        _targets[to].scheduled.store(false, std::memory_order_release);
        std::size_t n = 0;
        for (ShardId from = 0; from < _n; ++from) {
            if (from == to) continue;
            n += ring(from, to).drain(f, budget - n);
            if (n >= budget) {
                if (!_targets[to].scheduled.exchange(true, std::memory_order_acq_rel)) _wake(to);
                break;
            }
        }
        return n;
    }

    // Messages waiting for shard `to` (approximate; for metrics).
    std::size_t depth(ShardId to) const noexcept {
        std::size_t d = 0;
        for (ShardId from = 0; from < _n; ++from) {
            if (from != to) d += _rings[from * _n + to]->size();
        }
        return d;
    }

private:
    struct alignas(k_cache_line) Target {
        std::atomic<bool> scheduled{false};
    };

    SpscRing<Msg>& ring(ShardId from, ShardId to) noexcept { return *_rings[from * _n + to]; }

    std::size_t _n;
    std::function<void(ShardId)> _wake;
    std::vector<std::unique_ptr<SpscRing<Msg>>> _rings;
    std::vector<Target> _targets;
    std::vector<std::vector<std::uint8_t>> _dirty;  // [from][to], touched only by `from`
};

}  // namespace starling::router
