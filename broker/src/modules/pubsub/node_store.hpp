// NodeStore: PubSub's records in RocksDB (DESIGN §6), column families "pubsub_nodes" and
// "pubsub_items"; the layout is in schemas/storage/pubsub.fbs. Every key of a node starts with
// `service 0x00 node 0x00`, so a node is one key range in each family, items sort in publish
// order, and deleting or purging a node is one range deletion.
//
// Writes go through the shard's storage::ShardWriter (DESIGN §6): each mutating call stages its
// puts and erases into the reactor turn's batch at Durability::synced and returns; the caller
// answers once ShardWriter::when_durable says they are on disk. Without a writer (unit
// fixtures), each call is one synchronous RocksDB write batch with the store's sync option.
// Reads go to RocksDB directly: they do not see staged writes, which is why PubsubService keeps
// a node with unsynced writes in its cache (see PubsubService::Node::unsynced).
//
// Lives on: used by the node's home shard for writes; reads of the whole service (node list,
// a user's subscriptions) may run on any shard (RocksDB is thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/src/modules/pubsub/node_config.hpp"
#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
class ShardWriter;
}

namespace starling::modules::pubsub {

// XEP-0060 §4.1 affiliations (the order of the schema's enum).
enum class Affiliation : std::uint8_t { none, owner, publisher, member, outcast };
// XEP-0060 §4.2 subscription states that are stored (none is the absence of a record).
enum class SubState : std::uint8_t { none, subscribed, pending };

std::string_view to_string(Affiliation a) noexcept;
std::string_view to_string(SubState s) noexcept;

struct Item {
    std::string id;
    std::string payload;    // standalone XML of the payload element; empty when none
    std::string publisher;  // full JID
    std::int64_t published_unix_ms = 0;
    std::uint64_t seq = 0;  // publication order; the item's key
};

struct Subscription {
    std::string jid;  // bare or full JID, as subscribed
    SubState state = SubState::subscribed;
    std::string subid;
    bool deliver = true;  // §6.3 pubsub#deliver: false holds notifications back
};

struct NodeRecord {
    NodeConfig config;
    std::vector<std::pair<std::string, Affiliation>> affiliations;  // bare JIDs
    std::int64_t created_unix_ms = 0;
};

class NodeStore {
public:
    // `writer` null: every write is synchronous.
    explicit NodeStore(storage::Store& store, storage::ShardWriter* writer = nullptr) noexcept
        : _store(store), _writer(writer) {}

    // True when writes are staged and need ShardWriter::when_durable before they are answered.
    bool staged() const noexcept { return _writer != nullptr; }

    // `memory_only`: from the memtable and block cache only, Errc::not_in_memory when the disk
    // would be needed (then read again off the reactor: issue 14). Same for the two below.
    xmpp::Result<NodeRecord, storage::Errc> load_node(std::string_view service, std::string_view node,
                                                     bool memory_only = false) const noexcept;
    // Items in publish order.
    xmpp::Result<std::vector<Item>, storage::Errc> load_items(std::string_view service, std::string_view node,
                                                             bool memory_only = false) const noexcept;
    xmpp::Result<std::vector<Subscription>, storage::Errc> load_subscriptions(std::string_view service,
                                                                             std::string_view node,
                                                                             bool memory_only = false) const noexcept;

    // A new node and the owner's index entry, in one batch.
    xmpp::Result<void, storage::Errc> create_node(std::string_view service, std::string_view node,
                                                 std::string_view owner, const NodeRecord& record) noexcept;
    xmpp::Result<void, storage::Errc> put_node(std::string_view service, std::string_view node,
                                              const NodeRecord& record) noexcept;
    // The node, its subscriptions and items, and the owners' index entries (`owners`).
    xmpp::Result<void, storage::Errc> erase_node(std::string_view service, std::string_view node,
                                                const std::vector<std::string>& owners) noexcept;

    xmpp::Result<void, storage::Errc> put_subscription(std::string_view service, std::string_view node,
                                                      const Subscription& sub) noexcept;
    xmpp::Result<void, storage::Errc> erase_subscription(std::string_view service, std::string_view node,
                                                        std::string_view jid) noexcept;

    // Stores `item` (at item.seq) and erases the items at `erase_seqs` (the one it replaces,
    // those max_items pushes out), in one batch.
    xmpp::Result<void, storage::Errc> publish(std::string_view service, std::string_view node, const Item& item,
                                             const std::vector<std::uint64_t>& erase_seqs) noexcept;
    xmpp::Result<void, storage::Errc> erase_items(std::string_view service, std::string_view node,
                                                 const std::vector<std::uint64_t>& seqs) noexcept;
    xmpp::Result<void, storage::Errc> purge(std::string_view service, std::string_view node) noexcept;

    // Nodes of `service`, sorted by name.
    xmpp::Result<std::vector<std::string>, storage::Errc> list_nodes(std::string_view service) const noexcept;
    // How many nodes `owner` (bare JID) created, on every service (the owner index).
    xmpp::Result<std::size_t, storage::Errc> count_owned(std::string_view owner) const noexcept;
    // The nodes `owner` created on `service`.
    xmpp::Result<std::vector<std::string>, storage::Errc> owned_nodes(std::string_view owner,
                                                                     std::string_view service) const noexcept;
    // Every subscription of `bare` (its bare JID or any full JID of it) on `service`, by node.
    xmpp::Result<std::vector<std::pair<std::string, Subscription>>, storage::Errc> subscriptions_of(
        std::string_view service, std::string_view bare) const noexcept;

    // Keys and values, exposed for tests.
    static std::string node_prefix(std::string_view service, std::string_view node);
    static std::string encode(const NodeRecord& record);
    static xmpp::Result<NodeRecord, storage::Errc> decode_node(std::string_view bytes) noexcept;
    static std::string encode(const Item& item);
    static xmpp::Result<Item, storage::Errc> decode_item(std::string_view bytes) noexcept;
    static std::string encode(const Subscription& sub);
    static xmpp::Result<Subscription, storage::Errc> decode_subscription(std::string_view bytes) noexcept;

private:
    class Change;
    storage::Store& _store;
    storage::ShardWriter* _writer;
};

}  // namespace starling::modules::pubsub
