// Store: the broker's one RocksDB instance (DESIGN §6), with a column family per concern.
// Keys start with the bare JID (or service/node), so one user's data is one key range.
//
// Opened once at start-up (open() throws StoreError with a clear message: it is start-up code)
// and shared by the shards: RocksDB is thread-safe. Each shard batches its own writes.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <vector>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "broker/src/storage/segment_log.hpp"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Env;
class FileSystem;
class WalFilter;
}  // namespace rocksdb

namespace starling::storage {

enum class Column : std::uint8_t {
    accounts,
    rosters,
    offline,
    pubsub_nodes,
    pubsub_items,
    mam,
    sm,
    blocking,  // XEP-0191 block lists
    vcards,    // XEP-0054 vCard-temp
    meta,      // per-account small records (roster version counters, registration...)
    mam_bodies,  // XEP-0313 archived stanzas, stored once per message (modules/mam/README.md)
    count_,
};

std::string_view to_string(Column c) noexcept;

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct StoreOptions {
    // fsync every write batch: what is acknowledged survives a power cut (DESIGN §6).
    bool sync_writes = true;
    std::size_t block_cache_bytes = 32u << 20;
    // Memtables of all column families together (RocksDB's db_write_buffer_size); each column
    // family's own memtable is at most this much too. A flush to an SST file follows when full,
    // and the write-ahead log is preallocated in blocks of about this size.
    std::size_t write_buffer_bytes = 64u << 20;
    // The file system RocksDB writes through; null means the local disk. Tests and benchmarks
    // inject faults and latency here (tests/support/faulty_fs.hpp); the broker leaves it null.
    std::shared_ptr<rocksdb::FileSystem> file_system{};
};

// What open() learnt about the previous run. Filled once at open, read-only afterwards.
struct RecoveryInfo {
    // The previous process did not close the store (crash, kill -9, power cut): the marker
    // file it creates at open was still there.
    bool unclean_shutdown = false;
    // What RocksDB replayed from the write-ahead logs at open (any shutdown replays some).
    std::uint64_t wal_files = 0;
    std::uint64_t wal_bytes = 0;           // on disk before the replay
    std::uint64_t wal_batches_replayed = 0;
    std::uint64_t wal_ops_replayed = 0;
    std::uint64_t last_sequence = 0;       // DB::GetLatestSequenceNumber() after the replay
};

class Store {
public:
    // Opens (creating when missing) the store in `dir`. Throws StoreError, e.g. when another
    // process holds it ("is starlingd running?").
    static std::unique_ptr<Store> open(const std::string& dir, const StoreOptions& options = {});
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    rocksdb::DB& db() noexcept { return *_db; }
    rocksdb::ColumnFamilyHandle* column(Column c) noexcept { return _columns[static_cast<std::size_t>(c)]; }
    const StoreOptions& options() const noexcept { return _options; }
    const std::string& dir() const noexcept { return _dir; }

    // True when the previous process stopped without closing the store. The WAL replay
    // (kPointInTimeRecovery) then kept every write whose WAL record was complete on disk and
    // dropped a torn tail, if any; what a synced write committed is never in such a tail.
    bool recovered_from_unclean_shutdown() const noexcept { return _recovery.unclean_shutdown; }
    const RecoveryInfo& recovery() const noexcept { return _recovery; }
    // Unclean shutdowns found at open (0 or 1 per open): a counter for the metrics exporter.
    std::uint64_t unclean_shutdowns() const noexcept { return _recovery.unclean_shutdown ? 1 : 0; }

    // The message archive's segment logs (segment_log.hpp, modules/mam/README.md), one per
    // shard, in `<dir>/archive-log/<shard>/`. Every log found is opened, and its tail recovered,
    // at open; segment_log() creates a missing one (throws StoreError when it cannot). Any
    // thread; a log lives as long as the store.
    SegmentLog& segment_log(std::uint16_t id);
    SegmentLog* find_segment_log(std::uint16_t id) noexcept;
    std::vector<SegmentLog*> segment_logs() const;
    std::string segment_log_dir() const;

    // The marker a running store keeps in its directory (removed by a clean close).
    static constexpr std::string_view k_open_marker = "STARLING_OPEN";

private:
    Store() = default;
    std::string _dir;
    StoreOptions _options;
    RecoveryInfo _recovery;
    std::unique_ptr<rocksdb::WalFilter> _wal_filter;  // used by the replay at open only
    std::unique_ptr<rocksdb::Env> _env;  // over options.file_system; outlives _db (declared first)
    std::unique_ptr<rocksdb::DB> _db;
    rocksdb::ColumnFamilyHandle* _default = nullptr;
    std::array<rocksdb::ColumnFamilyHandle*, static_cast<std::size_t>(Column::count_)> _columns{};
    mutable std::mutex _logs_mutex;
    std::map<std::uint16_t, std::unique_ptr<SegmentLog>> _logs;
};

}  // namespace starling::storage
