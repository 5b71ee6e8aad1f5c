#include "broker/src/modules/roster/roster_store.hpp"

#include <charconv>
#include <cstdlib>
#include <map>
#include <memory>
#include <unordered_map>

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

namespace {

// Owners with a read off the reactor on this (shard) thread, and how many roster writes of
// theirs were staged since: a read that overlapped one is made again (load_async). Entries live
// only while a read is pending.
struct Watch {
    std::uint32_t readers = 0;
    std::uint64_t writes = 0;
};
thread_local std::unordered_map<std::string, Watch> t_watched;
thread_local std::uint64_t t_writes = 0;

void note_write(std::string_view owner) {
    ++t_writes;
    if (t_watched.empty()) return;
    if (auto it = t_watched.find(std::string(owner)); it != t_watched.end()) ++it->second.writes;
}

// What RocksDB alone holds of `owner`'s roster, read at `tier`.
struct RawRoster {
    std::map<std::string, std::string, std::less<>> items;  // key -> record
    std::optional<std::string> version;
};

rocksdb::Status read_raw(storage::Store& store, std::string_view owner, rocksdb::ReadTier tier, RawRoster& out) {
    rocksdb::ReadOptions ro;
    ro.read_tier = tier;
    std::string prefix(owner);
    prefix += '\0';
    std::unique_ptr<rocksdb::Iterator> it(store.db().NewIterator(ro, store.column(storage::Column::rosters)));
    for (it->Seek(slice(prefix)); it->Valid() && it->key().starts_with(slice(prefix)); it->Next()) {
        out.items.emplace(it->key().ToString(), it->value().ToString());
    }
    if (!it->status().ok()) return it->status();
    std::string ver;
    const auto st = store.db().Get(ro, store.column(storage::Column::meta), slice(RosterStore::version_key(owner)), &ver);
    if (st.ok()) out.version = std::move(ver);
    else if (!st.IsNotFound()) return st;
    return rocksdb::Status::OK();
}

// `raw` with this shard's staged writes of `owner` laid over it, decoded.
RosterSnapshot merged(storage::ShardWriter& writer, std::string_view owner, RawRoster& raw) {
    std::string prefix(owner);
    prefix += '\0';
    std::map<std::string, std::string, std::less<>> values;
    for (auto& [key, value] : raw.items) {
        if (writer.staged(storage::Column::rosters, key)) continue;  // below
        values.emplace(key, std::move(value));
    }
    for (auto& [key, value] : writer.staged_with_prefix(storage::Column::rosters, prefix)) {
        if (value) values.insert_or_assign(std::move(key), std::move(*value));
    }
    RosterSnapshot out;
    out.items.reserve(values.size());
    for (const auto& [key, value] : values) {
        auto item = decode(value);
        if (!item) {
            STARLING_LOG(warn, "roster: undecodable item under {}", owner);
            continue;
        }
        out.items.push_back(std::move(*item));
    }
    std::optional<std::string> ver = std::move(raw.version);
    if (auto staged = writer.staged(storage::Column::meta, RosterStore::version_key(owner))) ver = std::move(*staged);
    if (ver) std::from_chars(ver->data(), ver->data() + ver->size(), out.version);
    return out;
}

void load_async_attempt(storage::Store& store, storage::ShardWriter& writer, std::string owner, RosterLoaded done,
                        int attempt);

// The scan on the reader thread; `writes_at`: the owner's watched write count at the call.
void load_off_reactor(storage::Store& store, storage::ShardWriter& writer, std::string owner, RosterLoaded done,
                      int attempt, std::uint64_t writes_at) {
    auto raw = std::make_shared<RawRoster>();
    auto status = std::make_shared<rocksdb::Status>();
    writer.run_off_reactor(
        [&store, owner, raw, status] { *status = read_raw(store, owner, rocksdb::kReadAllTier, *raw); },
        [&store, &writer, owner, raw, status, writes_at, attempt, done = std::move(done)]() mutable {
            auto it = t_watched.find(owner);
            const bool written = it != t_watched.end() && it->second.writes != writes_at;
            if (it != t_watched.end() && --it->second.readers == 0) t_watched.erase(it);
            if (written) {
                // The scan may have missed a write staged since the call: read again.
                load_async_attempt(store, writer, std::move(owner), std::move(done), attempt + 1);
                return;
            }
            if (!status->ok()) {
                STARLING_LOG(warn, "roster: reading the roster of {} failed: {}", owner, status->ToString());
                done(xmpp::Unexpected(storage::errc_of(*status)));
                return;
            }
            done(merged(writer, owner, *raw));
        });
}

void load_async_attempt(storage::Store& store, storage::ShardWriter& writer, std::string owner, RosterLoaded done,
                        int attempt) {
    if (attempt >= RosterStore::k_async_attempts) {
        // Written during every attempt: hot, so in the memtable or the block cache.
        RosterStore sync(store, &writer);
        RosterSnapshot snap{sync.load_all(owner), sync.version(owner)};
        done(std::move(snap));
        return;
    }
    {
        RawRoster raw;
        const auto st = read_raw(store, owner, rocksdb::kBlockCacheTier, raw);
        if (st.ok()) {
            done(merged(writer, owner, raw));
            return;
        }
        if (!st.IsIncomplete()) {
            STARLING_LOG(warn, "roster: reading the roster of {} failed: {}", owner, st.ToString());
            done(xmpp::Unexpected(storage::errc_of(st)));
            return;
        }
    }
    // Cold: to the reader thread. It reads RocksDB only, so this shard's writes of `owner` that
    // are staged or in flight are committed first (the overlay could drop them before the scan
    // sees them); a write staged after this call is caught by the watch.
    auto& watch = t_watched[owner];
    ++watch.readers;
    const std::uint64_t writes_at = watch.writes;
    std::string prefix = owner;
    prefix += '\0';
    const bool staged = writer.overlay_size() != 0 &&
                        (!writer.staged_with_prefix(storage::Column::rosters, prefix).empty() ||
                         writer.staged(storage::Column::meta, RosterStore::version_key(owner)));
    if (!staged) {
        load_off_reactor(store, writer, std::move(owner), std::move(done), attempt, writes_at);
        return;
    }
    writer.when_durable(storage::Durability::memory,
                        [&store, &writer, owner = std::move(owner), done = std::move(done), attempt,
                         writes_at](xmpp::Result<void, storage::Errc> r) mutable {
                            if (!r && r.error() == storage::Errc::stopped) {
                                // The writer is going away: nothing may use it.
                                if (auto it = t_watched.find(owner); it != t_watched.end() && --it->second.readers == 0) {
                                    t_watched.erase(it);
                                }
                                done(xmpp::Unexpected(storage::Errc::stopped));
                                return;
                            }
                            // A failed commit dropped its writes from the overlay: RocksDB says.
                            load_off_reactor(store, writer, std::move(owner), std::move(done), attempt, writes_at);
                        });
}

}  // namespace

std::uint64_t RosterStore::writes_on_this_thread() noexcept { return t_writes; }

void RosterStore::load_async(std::string_view owner, RosterLoaded done) const {
    if (_writer == nullptr) {
        RosterSnapshot snap{load_all(owner), version(owner)};
        done(std::move(snap));
        return;
    }
    load_async_attempt(_store, *_writer, std::string(owner), std::move(done), 0);
}


xmpp::Result<std::optional<std::string>, storage::Errc> RosterStore::get_in_memory(storage::Column c,
                                                                                   const std::string& key) const {
    if (_writer != nullptr) return _writer->get_in_memory(c, key);
    std::string value;
    const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(c), slice(key), &value);
    if (st.IsNotFound()) return std::optional<std::string>();
    if (!st.ok()) return xmpp::Unexpected(storage::errc_of(st));
    return std::optional<std::string>(std::move(value));
}

xmpp::Result<ItemRead, storage::Errc> RosterStore::item_in_memory(std::string_view owner,
                                                                  std::string_view contact) const {
    auto item = get_in_memory(storage::Column::rosters, item_key(owner, contact));
    if (!item) return xmpp::Unexpected(item.error());
    auto ver = get_in_memory(storage::Column::meta, version_key(owner));
    if (!ver) return xmpp::Unexpected(ver.error());
    ItemRead out;
    if (*item) {
        out.item = decode(**item);
        if (!out.item) STARLING_LOG(warn, "roster: undecodable item under {}", owner);
    }
    if (*ver) std::from_chars((*ver)->data(), (*ver)->data() + (*ver)->size(), out.version);
    return out;
}

xmpp::Result<std::size_t, storage::Errc> RosterStore::visible_in_memory(std::string_view owner) const {
    std::size_t n = 0;
    if (_writer == nullptr) {
        for (const auto& i : load_all(owner)) n += i.in_roster ? 1 : 0;
        return n;
    }
    RawRoster raw;
    const auto st = read_raw(_store, owner, rocksdb::kBlockCacheTier, raw);
    if (!st.ok()) return xmpp::Unexpected(storage::errc_of(st));  // Incomplete: not_in_memory
    for (const auto& i : merged(*_writer, owner, raw).items) n += i.in_roster ? 1 : 0;
    return n;
}

xmpp::Result<bool, storage::Errc> RosterStore::account_in_memory(std::string_view owner) const {
    if (_writer == nullptr) return storage::AccountStore(_store).exists(owner);
    auto got = _writer->get_in_memory(storage::Column::accounts, owner);
    if (!got) return xmpp::Unexpected(got.error());
    return got->has_value();
}

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
    note_write(owner);
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
    note_write(owner);
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
