#include "broker/src/storage/store.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include <filesystem>
#include <vector>

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
    case Column::count_: break;
    }
    return "unknown";
}

std::unique_ptr<Store> Store::open(const std::string& dir, const StoreOptions& options) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw StoreError("cannot create data directory " + dir + ": " + ec.message());

    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.keep_log_file_num = 4;
    db_options.max_log_file_size = 8u << 20;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    families.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
    for (std::size_t i = 0; i < static_cast<std::size_t>(Column::count_); ++i) {
        families.emplace_back(std::string(to_string(static_cast<Column>(i))), cf_options);
    }
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
    store->_db.reset(raw);
    // handles[0] is the default family; ours follow in Column order. All are ours to destroy.
    store->_default = handles[0];
    for (std::size_t i = 0; i < store->_columns.size(); ++i) store->_columns[i] = handles[i + 1];
    return store;
}

Store::~Store() {
    if (!_db) return;
    for (auto* h : _columns) {
        if (h) _db->DestroyColumnFamilyHandle(h);
    }
    if (_default) _db->DestroyColumnFamilyHandle(_default);
    _db->Close();
}

}  // namespace starling::storage
