#include "broker/src/modules/roster/roster_store.hpp"

#include <charconv>
#include <cstdlib>
#include <map>
#include <memory>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "broker/src/util/log.hpp"

namespace starling::modules::roster {

using storage::slice;
using storage::write_options;


std::string RosterStore::item_key(std::string_view owner, std::string_view contact) {
    std::string k;
    k.reserve(owner.size() + 1 + contact.size());
    k += owner;
    k += '\0';
    k += contact;
    return k;
}

std::string RosterStore::version_key(std::string_view owner) {
    std::string k(owner);
    k += '\0';
    k += "roster.ver";
    return k;
}

std::optional<std::string> RosterStore::get(storage::Column c, const std::string& key) const {
    if (_writer != nullptr) {
        auto got = _writer->get(c, key);
        if (got) return std::move(*got);
        STARLING_LOG(warn, "roster: read failed: {}", storage::to_string(got.error()));
        return std::nullopt;
    }
    std::string value;
    const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(c), slice(key), &value);
    if (!st.ok()) {
        if (!st.IsNotFound()) STARLING_LOG(warn, "roster: read failed: {}", st.ToString());
        return std::nullopt;
    }
    return value;
}

void RosterStore::forget(std::string_view owner) {
    if (_writer == nullptr) return;
    for (const auto& item : load_all(owner)) {
        (void)_writer->erase(storage::Column::rosters, item_key(owner, item.jid), storage::Durability::logged);
    }
    (void)_writer->erase(storage::Column::meta, version_key(owner), storage::Durability::logged);
}

std::vector<RosterItem> RosterStore::load_all(std::string_view owner) const {
    std::string prefix(owner);
    prefix += '\0';
    // Contact order: RocksDB's, with this shard's staged writes laid over it.
    std::map<std::string, std::string, std::less<>> values;
    std::unique_ptr<rocksdb::Iterator> it(
        _store.db().NewIterator(rocksdb::ReadOptions(), _store.column(storage::Column::rosters)));
    for (it->Seek(slice(prefix)); it->Valid() && it->key().starts_with(slice(prefix)); it->Next()) {
        std::string key = it->key().ToString();
        if (_writer != nullptr && _writer->staged(storage::Column::rosters, key)) continue;  // below
        values.emplace(std::move(key), it->value().ToString());
    }
    if (!it->status().ok()) STARLING_LOG(warn, "roster: reading the roster of {} failed: {}", owner, it->status().ToString());
    if (_writer != nullptr) {
        for (auto& [key, value] : _writer->staged_with_prefix(storage::Column::rosters, prefix)) {
            if (value) values.insert_or_assign(std::move(key), std::move(*value));
        }
    }
    std::vector<RosterItem> out;
    out.reserve(values.size());
    for (const auto& [key, value] : values) {
        auto item = decode(value);
        if (!item) {
            STARLING_LOG(warn, "roster: undecodable item under {}", owner);
            continue;
        }
        out.push_back(std::move(*item));
    }
    return out;
}

bool RosterStore::has_staged(std::string_view owner) const {
    if (_writer == nullptr || _writer->overlay_size() == 0) return false;
    std::string prefix(owner);
    prefix += '\0';
    return !_writer->staged_with_prefix(storage::Column::rosters, prefix).empty();
}

std::optional<RosterItem> RosterStore::load(std::string_view owner, std::string_view contact) const {
    const auto value = get(storage::Column::rosters, item_key(owner, contact));
    if (!value) return std::nullopt;
    auto item = decode(*value);
    if (!item) STARLING_LOG(warn, "roster: undecodable item under {}", owner);
    return item;
}

std::uint64_t RosterStore::version(std::string_view owner) const {
    const auto value = get(storage::Column::meta, version_key(owner));
    if (!value) return 0;
    std::uint64_t v = 0;
    std::from_chars(value->data(), value->data() + value->size(), v);
    return v;
}

std::optional<std::uint64_t> RosterStore::save(std::string_view owner, const RosterItem& item, bool bump) {
    const std::string key = item_key(owner, item.jid);
    std::uint64_t ver = version(owner);
    if (bump) ++ver;
    if (_writer != nullptr) {
        // One turn's batch: the item and its version commit together (a WriteBatch is atomic).
        auto staged = is_empty(item)
                          ? _writer->erase(storage::Column::rosters, key, storage::Durability::synced)
                          : _writer->put(storage::Column::rosters, key, encode(item), storage::Durability::synced);
        if (staged && bump) {
            staged = _writer->put(storage::Column::meta, version_key(owner), std::to_string(ver),
                                  storage::Durability::synced);
        }
        if (!staged) {
            // The item may be staged without its version: a later bump still moves past it.
            STARLING_LOG(error, "roster: staging a write for {} failed: {}", owner, storage::to_string(staged.error()));
            return std::nullopt;
        }
        return ver;
    }
    rocksdb::WriteBatch batch;
    if (is_empty(item)) {
        batch.Delete(_store.column(storage::Column::rosters), slice(key));
    } else {
        batch.Put(_store.column(storage::Column::rosters), slice(key), slice(encode(item)));
    }
    if (bump) batch.Put(_store.column(storage::Column::meta), slice(version_key(owner)), slice(std::to_string(ver)));
    const auto st = _store.db().Write(write_options(_store), &batch);
    if (!st.ok()) {
        STARLING_LOG(error, "roster: write for {} failed: {}", owner, st.ToString());
        return std::nullopt;
    }
    return ver;
}

std::optional<std::uint64_t> RosterStore::erase(std::string_view owner, std::string_view contact) {
    RosterItem gone;
    gone.jid = contact;
    return save(owner, gone, true);
}

storage::Store& store_of(ShardServices& shard) noexcept {
    if (shard.store == nullptr) {
        // A wiring bug (the broker sets it before installing modules): fail loudly.
        STARLING_LOG(error, "roster: ShardContext::store is not set");
        std::abort();
    }
    return *shard.store;
}

}  // namespace starling::modules::roster
