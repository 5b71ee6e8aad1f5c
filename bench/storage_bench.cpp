// storage_bench: what the write path (broker/src/storage/write_path.hpp) buys over one synced
// RocksDB write per change, for small records (~200 B, a roster item or an SM state).
//
//   BM_SyncedWriteEach          one DB::Put with sync=true per record, on the calling thread:
//                               what a module store does today (blocking/blocklist.cpp).
//   BM_WritePath/S/M            S shard threads (1 or 2), each with its own io_context and
//                               ShardWriter; every reactor turn stages one record and asks
//                               when_durable(synced) for it, i.e. the worst case for batching
//                               (one stanza per turn). The Committer groups whatever the shards
//                               sealed meanwhile: one fsync per group. M=1 merges the shards'
//                               batches into one WriteBatch per group, M=0 writes each batch
//                               with its own DB::Write and syncs only the last.
//   BM_WritePathTurn16/S/M      the same with 16 records per turn (a busy shard).
//   BM_WritePathAcked/S/1/C     closed loop: C clients per shard, each waiting for its record
//                               to be synced before writing the next (latency-bound, like
//                               devices waiting for their acknowledgement).
//
// Each reports items_per_second (records durable per second) and fsyncs per record.
// The store lives in $STARLING_BENCH_DIR, else the system temp directory: put it on the disk
// you care about (a tmpfs makes fsync free and the comparison meaningless).
//
//   build/h/bench/storage_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/log.hpp"

namespace {

using starling::storage::Column;
using starling::storage::Committer;
using starling::storage::CommitterOptions;
using starling::storage::Durability;
using starling::storage::ShardWriter;
using starling::storage::Store;

constexpr std::size_t k_record_bytes = 200;

class BenchDir {
public:
    BenchDir() {
        const char* base = std::getenv("STARLING_BENCH_DIR");
        std::random_device rd;
        _path = std::filesystem::path(base != nullptr ? base : std::filesystem::temp_directory_path().string()) /
                ("starling-storage-bench-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~BenchDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

std::string record(std::uint64_t i) {
    std::string v(k_record_bytes, 'x');
    const auto n = std::to_string(i);
    v.replace(0, n.size(), n);
    return v;
}

std::string key(unsigned shard, std::uint64_t i) {
    return "user" + std::to_string(shard) + "-" + std::to_string(i % 5000) + "@example.org";
}

void BM_SyncedWriteEach(benchmark::State& state) {
    BenchDir dir;
    auto store = Store::open(dir.str());
    rocksdb::WriteOptions w;
    w.sync = true;
    std::uint64_t i = 0;
    for (auto _ : state) {
        const auto v = record(i);
        const auto st = store->db().Put(w, store->column(Column::rosters), key(0, i), v);
        if (!st.ok()) state.SkipWithError(st.ToString().c_str());
        ++i;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
    state.counters["fsyncs_per_record"] = 1.0;
}
BENCHMARK(BM_SyncedWriteEach)->UseRealTime()->MinTime(2.0);

// One shard: a thread running its io_context. Open loop (window 0): every turn stages
// `per_turn` records, asks for them synced and posts the next turn at once (so this turn's seal
// runs first). Closed loop (window W): W clients each stage one record and wait for it to be
// synced before the next, as a device waits for its XEP-0198 <a/>.
class BenchShard {
public:
    BenchShard(unsigned index, Committer& committer, std::uint64_t records, unsigned per_turn, unsigned window)
        : _index(index), _records(records), _per_turn(per_turn), _window(window),
          _writer(_io, static_cast<std::uint16_t>(index), committer) {}

    void start() {
        if (_window == 0) {
            asio::post(_io, [this] { turn(); });
        } else {
            for (unsigned c = 0; c < _window; ++c) asio::post(_io, [this] { turn(); });
        }
        _thread = std::thread([this] { _io.run(); });
    }
    void join() { _thread.join(); }
    bool failed() const noexcept { return _failed; }
    std::uint64_t done() const noexcept { return _done; }

private:
    void turn() {
        if (_staged >= _records) return;
        std::uint64_t n = 0;
        for (unsigned j = 0; j < _per_turn && _staged < _records; ++j, ++_staged, ++n) {
            if (!_writer.put(Column::rosters, key(_index, _staged), record(_staged))) _failed = true;
        }
        _writer.when_durable(Durability::synced, [this, n](xmpp::Result<void, starling::storage::Errc> r) {
            if (!r) _failed = true;
            _done += n;
            if (_done >= _records) {
                _io.stop();
            } else if (_window != 0) {
                turn();  // this client's next record, once the last one is acknowledged
            }
        });
        if (_window == 0 && _staged < _records) asio::post(_io, [this] { turn(); });
    }

    unsigned _index;
    std::uint64_t _records;
    unsigned _per_turn;
    unsigned _window;
    std::uint64_t _staged = 0;
    std::uint64_t _done = 0;
    bool _failed = false;
    asio::io_context _io{1};
    // Waiting for the committer leaves the reactor with nothing queued: keep run() going.
    asio::executor_work_guard<asio::io_context::executor_type> _guard{_io.get_executor()};
    ShardWriter _writer;
    std::thread _thread;
};

void run_write_path(benchmark::State& state, unsigned per_turn, unsigned window = 0) {
    const auto shards = static_cast<unsigned>(state.range(0));
    CommitterOptions options;
    options.merge_shards = state.range(1) != 0;
    // Enough records that the first, slower fsyncs of a fresh WAL (block allocation) do not
    // dominate: 200 records of a fresh store took ~1.8 ms per fsync here, 2000 took ~0.23 ms.
    const std::uint64_t k_records_per_shard = window == 0 ? 20000 : std::max<std::uint64_t>(4000, 200 * window);
    std::uint64_t records = 0;
    std::uint64_t syncs = 0;
    std::uint64_t groups = 0;
    std::uint64_t batches = 0;
    std::uint64_t latency_us = 0;
    for (auto _ : state) {
        state.PauseTiming();
        BenchDir dir;
        auto store = Store::open(dir.str());
        Committer committer(*store, options);
        committer.start();
        std::vector<std::unique_ptr<BenchShard>> all;
        for (unsigned s = 0; s < shards; ++s) {
            all.push_back(std::make_unique<BenchShard>(s, committer, k_records_per_shard, per_turn, window));
        }
        state.ResumeTiming();
        for (auto& s : all) s->start();
        for (auto& s : all) s->join();
        state.PauseTiming();
        bool ok = true;
        for (auto& s : all) ok = ok && !s->failed() && s->done() == k_records_per_shard;
        if (!ok) {
            std::fprintf(stderr, "failed: %d done %llu\n", all[0]->failed() ? 1 : 0, (unsigned long long)all[0]->done());
            state.SkipWithError("a write failed");
            break;
        }
        records += shards * k_records_per_shard;
        syncs += committer.stats().syncs.load();
        groups += committer.stats().groups.load();
        batches += committer.stats().batches.load();
        latency_us += committer.stats().latency_sum_us.load();
        all.clear();
        committer.stop();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(records));
    state.counters["fsyncs_per_record"] = records ? static_cast<double>(syncs) / static_cast<double>(records) : 0;
    state.counters["seal_to_commit_us"] = batches ? static_cast<double>(latency_us) / static_cast<double>(batches) : 0;
    state.counters["batches_per_group"] = groups ? static_cast<double>(batches) / static_cast<double>(groups) : 0;
}

void BM_WritePath(benchmark::State& state) { run_write_path(state, 1); }
void BM_WritePathTurn16(benchmark::State& state) { run_write_path(state, 16); }

void BM_WritePathAcked(benchmark::State& state) {
    run_write_path(state, 1, static_cast<unsigned>(state.range(2)));
}

BENCHMARK(BM_WritePath)->ArgsProduct({{1, 2}, {0, 1}})->ArgNames({"shards", "merge"})->UseRealTime()->Iterations(3);
BENCHMARK(BM_WritePathTurn16)->ArgsProduct({{1, 2}, {0, 1}})->ArgNames({"shards", "merge"})->UseRealTime()->Iterations(3);
BENCHMARK(BM_WritePathAcked)
    ->ArgsProduct({{1, 2}, {1}, {1, 16, 256}})
    ->ArgNames({"shards", "merge", "clients"})
    ->UseRealTime()
    ->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
    // The store logs nothing at warn in a healthy run; keep the output to the benchmark table.
    starling::util::g_log_level.store(static_cast<int>(starling::util::LogLevel::warn));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
