// Store: the broker's one RocksDB instance (DESIGN §6), with a column family per concern.
// Keys start with the bare JID (or service/node), so one user's data is one key range.
//
// Opened once at start-up (open() throws StoreError with a clear message: it is start-up code)
// and shared by the shards: RocksDB is thread-safe. Each shard batches its own writes.
#pragma once

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
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

private:
    Store() = default;
    std::string _dir;
    StoreOptions _options;
    std::unique_ptr<rocksdb::DB> _db;
    rocksdb::ColumnFamilyHandle* _default = nullptr;
    std::array<rocksdb::ColumnFamilyHandle*, static_cast<std::size_t>(Column::count_)> _columns{};
};

}  // namespace starling::storage
