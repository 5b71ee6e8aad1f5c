#include "broker/src/storage/store.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/comparator.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/wal_filter.h>
#include <rocksdb/write_batch.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/util/log.hpp"

namespace starling::storage {

std::string_view to_string(Column c) noexcept {
    switch (c) {
    case Column::accounts: return "accounts";
    case Column::rosters: return "rosters";
    case Column::offline: return "offline";
    case Column::pubsub_nodes: return "pubsub_nodes";
    case Column::pubsub_items: return "pubsub_items";
    case Column::mam: return "mam";
    case Column::sm: return "sm";
    case Column::blocking: return "blocking";
    case Column::vcards: return "vcards";
    case Column::meta: return "meta";
    case Column::mam_bodies: return "mam_bodies";
    case Column::count_: break;
    }
    return "unknown";
}

namespace {

// A column family by id alone, for rebuilding a WAL batch before the families are open (the
// public WriteBatch API takes handles; it asks them only for the id and the comparator).
class IdOnlyHandle final : public rocksdb::ColumnFamilyHandle {
public:
    explicit IdOnlyHandle(std::uint32_t id) : _id(id) {}
    const std::string& GetName() const override { return _name; }
    std::uint32_t GetID() const override { return _id; }
    rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override {
        return rocksdb::Status::NotSupported("a column family by id only");
    }
    const rocksdb::Comparator* GetComparator() const override { return rocksdb::BytewiseComparator(); }

private:
    std::uint32_t _id;
    std::string _name;
};

// Copies a WAL batch, moving the start of every archive range deletion that begins at an owner's
// first possible key ("bare JID, NUL, 8 zero bytes") to the bare JID without its NUL: the same
// records, a start outside the memtable insert hint's domain (OwnerPrefix, below). Anything
// but Put/Delete/DeleteRange fails the copy (the batch is then replayed as it is).
class ArchiveRangeRewriter final : public rocksdb::WriteBatch::Handler {
public:
    ArchiveRangeRewriter(std::uint32_t mam, rocksdb::WriteBatch& out) noexcept : _mam(mam), _out(out) {}
    rocksdb::Status PutCF(std::uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
        IdOnlyHandle h(cf);
        return _out.Put(&h, key, value);
    }
    rocksdb::Status DeleteCF(std::uint32_t cf, const rocksdb::Slice& key) override {
        IdOnlyHandle h(cf);
        return _out.Delete(&h, key);
    }
    rocksdb::Status DeleteRangeCF(std::uint32_t cf, const rocksdb::Slice& begin, const rocksdb::Slice& end) override {
        if (cf == _mam && begin.size() > 9 && begin[begin.size() - 9] == '\0' &&
            std::memchr(begin.data(), '\0', begin.size() - 9) == nullptr &&
            std::all_of(begin.data() + begin.size() - 8, begin.data() + begin.size(), [](char c) { return c == 0; })) {
            changed = true;
            IdOnlyHandle h(cf);
            return _out.DeleteRange(&h, rocksdb::Slice(begin.data(), begin.size() - 9), end);
        }
        IdOnlyHandle h(cf);
        return _out.DeleteRange(&h, begin, end);
    }
    bool changed = false;

private:
    std::uint32_t _mam;
    rocksdb::WriteBatch& _out;
};

// Counts what RocksDB replays from the WALs at open; rewrites only the archive range deletions
// of older versions that the memtable insert hint cannot take (ArchiveRangeRewriter).
class ReplayCounter final : public rocksdb::WalFilter {
public:
    void ColumnFamilyLogNumberMap(const std::map<std::uint32_t, std::uint64_t>& /*cf_lognumber_map*/,
                                  const std::map<std::string, std::uint32_t>& cf_name_id_map) override {
        const auto it = cf_name_id_map.find(std::string(to_string(Column::mam)));
        if (it != cf_name_id_map.end()) _mam = it->second;
    }
    WalProcessingOption LogRecordFound(unsigned long long /*log_number*/, const std::string& /*log_file_name*/,
                                       const rocksdb::WriteBatch& batch, rocksdb::WriteBatch* new_batch,
                                       bool* batch_changed) override {
        *batch_changed = false;
        ++batches;
        ops += batch.Count();
        if (_mam && new_batch != nullptr && batch.HasDeleteRange()) {
            ArchiveRangeRewriter copy(*_mam, *new_batch);
            if (batch.Iterate(&copy).ok() && copy.changed) {
                *batch_changed = true;
                ++rewritten;
            } else {
                new_batch->Clear();
            }
        }
        return WalProcessingOption::kContinueProcessing;
    }
    const char* Name() const override { return "starling.replay_counter"; }

    std::uint64_t batches = 0;
    std::uint64_t ops = 0;
    std::uint64_t rewritten = 0;

private:
    std::optional<std::uint32_t> _mam;
};

// RocksDB's own messages go to Starling's log (stderr, journald) instead of a LOG file in the
// data folder. Besides one place to look, this matters on a full disk: Debian's RocksDB is
// built with assertions, and a write to its LOG file after one failed with ENOSPC aborts the
// process (WritableFileWriter::AssertFalseAndGetStatusForPrevError, reached from the error
// handler that logs the disk-full error). Its chatter (INFO) is at trace level.
class LogForwarder final : public rocksdb::Logger {
public:
    LogForwarder() : rocksdb::Logger(rocksdb::InfoLogLevel::DEBUG_LEVEL) {}
    using rocksdb::Logger::Logv;
    void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
    void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
        util::LogLevel ours = util::LogLevel::trace;
        if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL && level != rocksdb::InfoLogLevel::HEADER_LEVEL) {
            ours = util::LogLevel::error;
        } else if (level == rocksdb::InfoLogLevel::WARN_LEVEL) {
            ours = util::LogLevel::warn;
        }
        if (!util::log_enabled(ours)) return;
        char line[1024];
        const int n = std::vsnprintf(line, sizeof line, format, ap);
        if (n < 0) return;
        util::log(ours, "rocksdb: {}", std::string_view(line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1)));
    }
};

// fsync of a directory, so that a created or removed marker survives a power cut.
void sync_dir(const std::string& dir) noexcept {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
}

// The marker is durable before the first write, so a crash after any write finds it.
bool create_marker(const std::string& path) noexcept {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    const std::string pid = std::to_string(::getpid()) + "\n";
    const bool ok = ::write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size()) && ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

// The owner's part of a key: everything up to and including the first NUL (keys are
// "bare JID, NUL, ..."). Used only as the memtable's insert hint (not stored in any file):
// RocksDB keeps, per prefix, where its last key went in the memtable's skip list, so that the
// next key of the same owner, which sorts right after (archive ids increase), is inserted
// without a search from the top. For the archive this is most of a memtable insert's cost.
class OwnerPrefix final : public rocksdb::SliceTransform {
public:
    const char* Name() const override { return "starling.OwnerPrefix"; }
    rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
        const auto* nul = static_cast<const char*>(std::memchr(key.data(), '\0', key.size()));
        return {key.data(), static_cast<std::size_t>(nul - key.data()) + 1};
    }
    bool InDomain(const rocksdb::Slice& key) const override {
        return std::memchr(key.data(), '\0', key.size()) != nullptr;
    }
};

// The node's part of a PubSub item key: everything up to and including the second NUL (keys
// are "service, NUL, node, NUL, ..."; modules/pubsub/node_store.cpp). The same memtable insert
// hint as OwnerPrefix, per node: a publish writes the node's newest item and deletes its
// oldest beyond pubsub#max_items, both next to the node's previous writes; without the hint
// each was a search of the whole skip list (a fifth of a telemetry publish's CPU).
//
// Outside the domain: a key that is the prefix alone. That is where a node's range deletions
// start (delete, purge: NodeStore erases [prefix, prefix + 1)), and RocksDB 7.8 shares the
// per-prefix hints between a memtable's point and range-deletion skip lists: a range tombstone
// that used a point key's hint would break the list (the archive's range deletions avoid the
// same trap, ArchiveRangeRewriter). No item key is the prefix alone.
class NodePrefix final : public rocksdb::SliceTransform {
public:
    const char* Name() const override { return "starling.NodePrefix"; }
    rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
        return {key.data(), static_cast<std::size_t>(second_nul(key) - key.data()) + 1};  // InDomain: found
    }
    bool InDomain(const rocksdb::Slice& key) const override {
        const char* second = second_nul(key);
        return second != nullptr && second + 1 < key.data() + key.size();  // more than the prefix
    }

private:
    static const char* second_nul(const rocksdb::Slice& key) noexcept {
        const auto* first = static_cast<const char*>(std::memchr(key.data(), '\0', key.size()));
        if (first == nullptr) return nullptr;
        const std::size_t rest = key.size() - static_cast<std::size_t>(first + 1 - key.data());
        return static_cast<const char*>(std::memchr(first + 1, '\0', rest));
    }
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& dir, const StoreOptions& options) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw StoreError("cannot create data directory " + dir + ": " + ec.message());

    // Before RocksDB replays anything: what the WALs hold, and whether the last run closed.
    const std::string marker = (std::filesystem::path(dir) / k_open_marker).string();
    RecoveryInfo recovery;
    recovery.unclean_shutdown = std::filesystem::exists(marker, ec);
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.path().extension() == ".log" && entry.is_regular_file(ec)) {
            ++recovery.wal_files;
            recovery.wal_bytes += entry.file_size(ec);
        }
    }
    // Kept by the Store: RocksDB keeps the pointer in its options.
    auto replay = std::make_unique<ReplayCounter>();

    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    db_options.info_log = std::make_shared<LogForwarder>();
    // The default, said out loud: replay each WAL up to its first torn or corrupt record and
    // drop the rest. A synced write is whole on disk before it is acknowledged, so only
    // unacknowledged writes can be in a dropped tail.
    db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
    db_options.wal_filter = replay.get();
    std::unique_ptr<rocksdb::Env> env;
    if (options.file_system) {
        env = rocksdb::NewCompositeEnv(options.file_system);
        db_options.env = env.get();
    }
    db_options.create_missing_column_families = true;
    db_options.keep_log_file_num = 4;
    db_options.max_log_file_size = 8u << 20;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    // SST block checksums with XXH3 rather than the default CRC32C: Debian's librocksdb is built
    // without the SSE4.2 CRC32C (crc32c::IsFastCrc32Supported() says "Not supported on x86")
    // and its table-driven CRC costs every flush, compaction and read. Each file records its
    // checksum type, so files written before (CRC32C) stay readable.
    table.checksum = rocksdb::kXXH3;
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    db_options.db_write_buffer_size = options.write_buffer_bytes;
    cf_options.write_buffer_size = options.write_buffer_bytes;
    // Levels 0 and 1 uncompressed, the rest as RocksDB's default (Snappy when built in): as the
    // RocksDB tuning guide advises, flushes and the first compactions then only copy. Every
    // archived message adds index bytes (issue 14: Snappy in the flush and compaction threads
    // cost about a tenth of the archive's CPU); the older levels, most of the data, stay
    // compressed.
    cf_options.compression_per_level.assign(static_cast<std::size_t>(cf_options.num_levels), cf_options.compression);
    for (std::size_t level = 0; level < 2 && level < cf_options.compression_per_level.size(); ++level) {
        cf_options.compression_per_level[level] = rocksdb::kNoCompression;
    }

    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
    for (std::size_t i = 0; i < static_cast<std::size_t>(Column::count_); ++i) {
        families.emplace_back(std::string(to_string(static_cast<Column>(i))), cf_options);
    }
    // The archive takes one record per message per party, each after its owner's previous one:
    // the owner's insert hint (above) in the memtable.
    families[static_cast<std::size_t>(Column::mam) + 1].options.memtable_insert_with_hint_prefix_extractor =
        std::make_shared<OwnerPrefix>();
    {
        // The archive's index chunks of 1 KiB or more (a busy user's entries of a tick) in blob
        // files: written once at flush, then compactions move only their keys and references,
        // never rewrite them (issue 14: rewriting them was a tenth of the archive's CPU). Smaller
        // chunks, single records and counts stay in the SSTs. Garbage collection gives back what
        // retention deleted.
        auto& mam = families[static_cast<std::size_t>(Column::mam) + 1].options;
        mam.enable_blob_files = true;
        mam.min_blob_size = 1024;
        mam.enable_blob_garbage_collection = true;
    }
    families[static_cast<std::size_t>(Column::pubsub_items) + 1].options.memtable_insert_with_hint_prefix_extractor =
        std::make_shared<NodePrefix>();
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    const auto st = rocksdb::DB::Open(db_options, dir, families, &handles, &raw);
    if (!st.ok()) {
        std::string msg = "cannot open store in " + dir + ": " + st.ToString();
        if (st.IsIOError() && st.ToString().find("lock") != std::string::npos) {
            msg += " (is starlingd running? stop it, or use its admin socket)";
        }
        throw StoreError(msg);
    }
    std::unique_ptr<Store> store(new Store());
    store->_dir = dir;
    store->_options = options;
    store->_env = std::move(env);
    store->_db.reset(raw);
    recovery.wal_batches_replayed = replay->batches;
    recovery.wal_ops_replayed = replay->ops;
    store->_wal_filter = std::move(replay);
    recovery.last_sequence = raw->GetLatestSequenceNumber();
    store->_recovery = recovery;
    if (recovery.unclean_shutdown) {
        STARLING_LOG(warn,
                     "storage: the last shutdown of {} was unclean; WAL recovery replayed {} batches ({} writes) "
                     "from {} files ({} bytes), now at sequence {}; point-in-time recovery drops a torn WAL "
                     "tail, if any, and only writes not yet synced can be in one",
                     dir, recovery.wal_batches_replayed, recovery.wal_ops_replayed, recovery.wal_files,
                     recovery.wal_bytes, recovery.last_sequence);
    }
    if (!create_marker(marker)) {
        STARLING_LOG(warn, "storage: cannot create {}: the next start cannot tell an unclean shutdown", marker);
    } else {
        sync_dir(dir);
    }
    // handles[0] is the default family; ours follow in Column order. All are ours to destroy.
    store->_default = handles[0];
    for (std::size_t i = 0; i < store->_columns.size(); ++i) store->_columns[i] = handles[i + 1];
    // The archive's logs: each one's tail is checked (and a torn write cut) now, before any
    // shard appends or reads.
    const std::filesystem::path logs = store->segment_log_dir();
    if (std::filesystem::is_directory(logs, ec)) {
        for (const auto& entry : std::filesystem::directory_iterator(logs, ec)) {
            const auto name = entry.path().filename().string();
            if (name.empty() || name.size() > 5 || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                continue;
            }
            const unsigned long n = std::stoul(name);
            if (n > 0xffff) continue;
            (void)store->segment_log(static_cast<std::uint16_t>(n));
        }
    }
    return store;
}

std::string Store::segment_log_dir() const { return (std::filesystem::path(_dir) / "archive-log").string(); }

SegmentLog& Store::segment_log(std::uint16_t id) {
    std::lock_guard lock(_logs_mutex);
    auto& slot = _logs[id];
    if (!slot) {
        try {
            slot = SegmentLog::open(std::filesystem::path(segment_log_dir()) / std::to_string(id), id);
        } catch (const std::exception& e) {
            _logs.erase(id);
            throw StoreError(std::string("archive log: ") + e.what());
        }
    }
    return *slot;
}

SegmentLog* Store::find_segment_log(std::uint16_t id) noexcept {
    std::lock_guard lock(_logs_mutex);
    auto it = _logs.find(id);
    return it == _logs.end() ? nullptr : it->second.get();
}

std::vector<SegmentLog*> Store::segment_logs() const {
    std::lock_guard lock(_logs_mutex);
    std::vector<SegmentLog*> out;
    for (auto& [id, log] : _logs) out.push_back(log.get());
    return out;
}

Store::~Store() {
    if (!_db) return;
    for (auto* h : _columns) {
        if (h) _db->DestroyColumnFamilyHandle(h);
    }
    if (_default) _db->DestroyColumnFamilyHandle(_default);
    // Only a close that succeeded is clean: the marker then goes, durably.
    const auto st = _db->Close();
    _db.reset();
    if (st.ok()) {
        std::error_code ec;
        std::filesystem::remove(std::filesystem::path(_dir) / k_open_marker, ec);
        sync_dir(_dir);
    } else {
        STARLING_LOG(warn, "storage: closing {} failed ({}); the next start will report an unclean shutdown", _dir,
                     st.ToString());
    }
}

}  // namespace starling::storage
