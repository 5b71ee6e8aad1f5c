#include "broker/src/modules/roster/roster_store.hpp"

#include <charconv>
#include <memory>
#include <cstdlib>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/util/log.hpp"

namespace starling::modules::roster {

using storage::errc_of;
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

std::vector<RosterItem> RosterStore::load_all(std::string_view owner) const {
    std::vector<RosterItem> out;
    std::string prefix(owner);
    prefix += '\0';
    std::unique_ptr<rocksdb::Iterator> it(
        _store.db().NewIterator(rocksdb::ReadOptions(), _store.column(storage::Column::rosters)));
    for (it->Seek(slice(prefix)); it->Valid() && it->key().starts_with(slice(prefix)); it->Next()) {
        auto item = decode(std::string_view(it->value().data(), it->value().size()));
        if (!item) {
            STARLING_LOG(warn, "roster: undecodable item under {}", owner);
            continue;
        }
        out.push_back(std::move(*item));
    }
    return out;
}

std::optional<RosterItem> RosterStore::load(std::string_view owner, std::string_view contact) const {
    std::string value;
    const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(storage::Column::rosters),
                                    slice(item_key(owner, contact)), &value);
    if (!st.ok()) {
        if (!st.IsNotFound()) STARLING_LOG(warn, "roster: read {} failed: {}", owner, st.ToString());
        return std::nullopt;
    }
    auto item = decode(value);
    if (!item) STARLING_LOG(warn, "roster: undecodable item under {}", owner);
    return item;
}

std::uint64_t RosterStore::version(std::string_view owner) const {
    std::string value;
    const auto st = _store.db().Get(rocksdb::ReadOptions(), _store.column(storage::Column::meta),
                                    slice(version_key(owner)), &value);
    if (!st.ok()) return 0;
    std::uint64_t v = 0;
    std::from_chars(value.data(), value.data() + value.size(), v);
    return v;
}

std::optional<std::uint64_t> RosterStore::save(std::string_view owner, const RosterItem& item, bool bump) {
    rocksdb::WriteBatch batch;
    const std::string key = item_key(owner, item.jid);
    if (is_empty(item)) {
        batch.Delete(_store.column(storage::Column::rosters), slice(key));
    } else {
        batch.Put(_store.column(storage::Column::rosters), slice(key), slice(encode(item)));
    }
    std::uint64_t ver = version(owner);
    if (bump) {
        ++ver;
        batch.Put(_store.column(storage::Column::meta), slice(version_key(owner)), slice(std::to_string(ver)));
    }
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
