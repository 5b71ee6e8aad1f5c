// RosterStore: rosters and their version counters in RocksDB (DESIGN §6).
//   rosters column: key = owner bare JID + '\0' + contact bare JID, value = roster_item.hpp record
//   meta column:    key = owner bare JID + '\0' + "roster.ver", value = decimal counter (XEP-0237)
// An item and the version it bumps are written together: staged into the shard's batch through
// its storage::ShardWriter at Durability::synced when the shard has one (the broker), so that
// RosterModule answers the IQ, pushes and routes subscription stanzas only once the batch is
// durable (ShardWriter::when_durable); without one (unit fixtures, starlingctl) as one
// synchronous, fsync'd WriteBatch.
//
// Reads see the shard's own staged writes (read-your-writes): point reads through the writer's
// overlay, prefix scans merged with it. load(), load_all() and version() read RocksDB on the
// shard thread (block cache first); load_async() reads a whole roster and its version without
// touching the disk there (issue 14): inline from the memtable and block cache, else on the
// store's reader thread. A change's point reads (the *_in_memory functions) never touch the disk:
// when they would, the caller reads the whole roster with load_async() instead.
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

#include "broker/src/modules/api.hpp"
#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/move_function.hpp"
#include "broker/src/storage/store.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class ShardWriter;
}

namespace starling::modules::roster {

// A whole roster as one read saw it.
struct RosterSnapshot {
    std::vector<RosterItem> items;  // every stored item (visible or not), in contact order
    std::uint64_t version = 0;
};
using RosterLoaded = storage::MoveFunction<void(xmpp::Result<RosterSnapshot, storage::Errc>)>;

// What a change of one item reads first: the item (absent: none stored) and the roster's version.
struct ItemRead {
    std::optional<RosterItem> item;
    std::uint64_t version = 0;
};

class RosterStore {
public:
    // `writer` null: every write is one synchronous RocksDB write, reads go to RocksDB only.
    explicit RosterStore(storage::Store& store, storage::ShardWriter* writer = nullptr) noexcept
        : _store(store), _writer(writer) {}
    storage::ShardWriter* writer() const noexcept { return _writer; }

    // Every stored item of `owner` (visible or not), in contact order.
    std::vector<RosterItem> load_all(std::string_view owner) const;
    std::optional<RosterItem> load(std::string_view owner, std::string_view contact) const;
    std::uint64_t version(std::string_view owner) const;
    // load_all() and version() together, without reading the disk on this thread. MAY RUN
    // `done` INLINE, before it returns: when the roster is in the overlay, the memtable or the
    // block cache. Otherwise (a cold roster) the scan runs on the store's reader thread (after
    // this shard's staged writes of `owner` are committed, which it would not see) and `done`
    // is posted back; if `owner`'s roster was written meanwhile the read is made again (at most
    // k_async_attempts times, then synchronously here: a roster written that often is hot).
    // A failed read gives the error; `done` is dropped, never run, once the writer is gone.
    // Without a writer: synchronous, inline.
    void load_async(std::string_view owner, RosterLoaded done) const;
    static constexpr int k_async_attempts = 3;

    // The point reads of a roster change (set, remove, subscription stanza in or out: issue 14),
    // from the overlay (read-your-writes), the memtable and the block cache only:
    // Errc::not_in_memory when the disk is needed (nothing was read then). Without a writer:
    // synchronous. A failed read gives its error (an undecodable item is logged and read as
    // absent, as load() does).
    xmpp::Result<ItemRead, storage::Errc> item_in_memory(std::string_view owner, std::string_view contact) const;
    // How many of `owner`'s items are in the roster (visible): the 1000-item limit of a set.
    xmpp::Result<std::size_t, storage::Errc> visible_in_memory(std::string_view owner) const;
    // Whether the account `owner` exists (the accounts column; inbound subscription stanzas).
    xmpp::Result<bool, storage::Errc> account_in_memory(std::string_view owner) const;

    // Roster writes (save, erase, forget) staged or made by RosterStore on the calling thread
    // since it started, whoever the owner: a copy of a roster read on a shard is current while
    // this has not moved (the PubSub service's cache of PEP owners' rosters).
    static std::uint64_t writes_on_this_thread() noexcept;
    // Saves `item` (deleting it when roster::is_empty) and, when `bump`, the next version.
    // Returns the roster version after the write, or nullopt when the write failed. With a
    // writer the write is staged, not durable: wait with writer()->when_durable before telling
    // anyone.
    std::optional<std::uint64_t> save(std::string_view owner, const RosterItem& item, bool bump);
    // Removes the item entirely (roster remove, §2.5) and bumps the version.
    std::optional<std::uint64_t> erase(std::string_view owner, std::string_view contact);

    // The account `owner` was deleted (its records are gone from RocksDB): with a writer, what
    // this shard still has staged for it is erased behind those writes.
    void forget(std::string_view owner);
    // Whether this shard has roster writes for `owner` staged or in flight (not yet durable).
    bool has_staged(std::string_view owner) const;

    static std::string item_key(std::string_view owner, std::string_view contact);
    static std::string version_key(std::string_view owner);

private:
    // The value of `key` as this shard sees it (staged writes first); nullopt when absent or
    // unreadable (logged).
    std::optional<std::string> get(storage::Column c, const std::string& key) const;
    // get_in_memory through the writer (synchronous without one); not found: an empty optional.
    xmpp::Result<std::optional<std::string>, storage::Errc> get_in_memory(storage::Column c,
                                                                          const std::string& key) const;

    storage::Store& _store;
    storage::ShardWriter* _writer;
};

// The broker's Store, from the shard context (ShardServices::store; aborts when unset).
storage::Store& store_of(ShardServices& shard) noexcept;

}  // namespace starling::modules::roster
