// OfflineStore: the "offline" column family (XEP-0160 storage). One record per stored message,
// keyed `bare JID, 0x00, big-endian uint64 sequence`, so a prefix scan yields one user's
// messages oldest first and a user's queue is one key range (DESIGN §6). Values are the
// FlatBuffers table OfflineMessage (schemas/storage/offline.fbs).
//
// Appends and deletes go through the shard's storage::ShardWriter when there is one (DESIGN §6:
// staged into the reactor turn's batch at Durability::synced, committed off the reactor);
// without one (unit fixtures) each is one synchronous RocksDB write with the store's sync
// option. Reads go to RocksDB directly and do not see staged writes: OfflineModule waits for
// a user's staged writes before it reads that user's queue.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
class ShardWriter;
}

namespace starling::modules::offline {

struct OfflineRecord {
    std::uint64_t seq = 0;
    std::string stanza;  // the <message/> as routed (start tag stamped)
    std::int64_t received_unix_ms = 0;
};

// What a user's queue holds now: the number of messages and the next free sequence number.
struct QueueState {
    std::uint64_t count = 0;
    std::uint64_t next_seq = 1;
};

class OfflineStore {
public:
    // `writer` null: every write is synchronous.
    explicit OfflineStore(storage::Store& store, storage::ShardWriter* writer = nullptr) noexcept
        : _store(store), _writer(writer) {}
    storage::ShardWriter* writer() const noexcept { return _writer; }

    // Counts the user's messages and finds the next sequence number (one prefix scan).
    // `memory_only`: from the memtable and block cache only, Errc::not_in_memory when that is
    // not enough (then read again off the reactor: issue 14). Same for oldest().
    xmpp::Result<QueueState, storage::Errc> state(std::string_view bare_jid, bool memory_only = false) const noexcept;
    // Durably appends one message (synced write when the store syncs).
    xmpp::Result<void, storage::Errc> append(std::string_view bare_jid, const OfflineRecord& record) noexcept;
    // The oldest messages, at most `max_count`, stopping after the one that reaches
    // `max_bytes` of stanza text (at least one message when there is any).
    xmpp::Result<std::vector<OfflineRecord>, storage::Errc> oldest(std::string_view bare_jid, std::size_t max_count,
                                                                  std::size_t max_bytes, bool memory_only = false) const noexcept;
    // Durably deletes the messages with these sequence numbers, in one batch.
    xmpp::Result<void, storage::Errc> erase(std::string_view bare_jid, const std::vector<std::uint64_t>& seqs) noexcept;

    // Keys and values, exposed for tests.
    static std::string key(std::string_view bare_jid, std::uint64_t seq);
    static std::string prefix(std::string_view bare_jid);
    static std::string encode(const OfflineRecord& record);
    static xmpp::Result<OfflineRecord, storage::Errc> decode(std::string_view bytes) noexcept;

private:
    storage::Store& _store;
    storage::ShardWriter* _writer;
};

}  // namespace starling::modules::offline
