// RosterStore: rosters and their version counters in RocksDB (DESIGN §6).
//   rosters column: key = owner bare JID + '\0' + contact bare JID, value = roster_item.hpp record
//   meta column:    key = owner bare JID + '\0' + "roster.ver", value = decimal counter (XEP-0237)
// An item and the version it bumps are one synchronous (fsync'd) write batch, done before the
// IQ is answered or a push or subscription stanza leaves (DESIGN §6).
//
// RocksDB calls are synchronous on the shard thread for now (allowed by the design for this
// stage; a per-shard write batcher is the follow-up). No cache: RocksDB's block cache serves
// the repeated reads of one login.
//
// Lives on: one per shard (every shard's module instance has one); RocksDB is thread-safe, and
// a given owner's keys are only ever touched from that owner's home shard.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/modules/roster/roster_item.hpp"

namespace starling::storage {
class Store;
}
#include "broker/src/modules/api.hpp"

namespace starling::modules::roster {

class RosterStore {
public:
    explicit RosterStore(storage::Store& store) noexcept : _store(store) {}

    // Every stored item of `owner` (visible or not), in contact order.
    std::vector<RosterItem> load_all(std::string_view owner) const;
    std::optional<RosterItem> load(std::string_view owner, std::string_view contact) const;
    std::uint64_t version(std::string_view owner) const;
    // Saves `item` (deleting it when roster::is_empty) and, when `bump`, the next version.
    // Returns the roster version after the write, or nullopt when the write failed.
    std::optional<std::uint64_t> save(std::string_view owner, const RosterItem& item, bool bump);
    // Removes the item entirely (roster remove, §2.5) and bumps the version.
    std::optional<std::uint64_t> erase(std::string_view owner, std::string_view contact);

    static std::string item_key(std::string_view owner, std::string_view contact);
    static std::string version_key(std::string_view owner);

private:
    storage::Store& _store;
};

// The broker's Store, from the shard context (ShardServices::store; aborts when unset).
storage::Store& store_of(ShardServices& shard) noexcept;

}  // namespace starling::modules::roster
