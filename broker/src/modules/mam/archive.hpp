// MessageArchive: every user's message archive (XEP-0313) in the "mam" column family.
// Key: bare JID, NUL, archive id as 8 bytes big-endian; the id is the archive time in
// microseconds since the epoch, made unique and increasing per shard (every message of a user
// is archived on its home shard). Value: a FlatBuffers ArchivedMessage (schemas/storage/mam.fbs).
// Without a Store (unit tests; a broker whose ShardContext does not expose one) the records live
// in memory, per shard, in the same key order.
//
// Lives on: one per shard (owned by MamModule); used on that shard's thread only. With
// defer_writes_to(io), the records of one reactor turn go to RocksDB as one WriteBatch at the
// end of the turn (DESIGN §3.5, §6): one WAL write and one lock for a turn's messages instead of
// one per message. Reads (scan, get, fresh_id, remove) first write what is pending, so they
// always see it. Reads are still synchronous on the shard thread (TODO: off the stanza path).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <string_view>

#include "broker/src/storage/errc.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
class Store;
}

namespace asio {
class io_context;
}

namespace starling::modules::mam {

struct ArchivedMessage {
    std::uint64_t id = 0;          // archive id (the key suffix), also the result id
    std::int64_t stamp_us = 0;     // when archived
    std::string with;              // the other party's full JID
    bool sent = false;             // sent by the owner (else received)
    std::string stanza;            // the <message/> as delivered
};

// Archive ids on the wire: 16 lowercase hex digits of a keyed permutation of the internal id
// (a 4-round Feistel network on 32-bit halves), so that they are stable but opaque: XEP-0359 §3
// wants them unpredictable and §5 says nothing may be inferred from them (here: the archive
// time). Not a cipher against a determined analyst; the ids are not secrets (XEP-0359 §5).
class IdCodec {
public:
    // `secret`: the broker's persistent server secret (a sub-key is derived from it); the ids
    // change if it does. An empty secret gives a fixed key (unit tests).
    explicit IdCodec(std::string_view secret) noexcept;
    std::string format(std::uint64_t id) const;
    std::optional<std::uint64_t> parse(std::string_view text) const noexcept;

private:
    std::uint64_t _keys[4];
};

std::string archive_key(std::string_view bare, std::uint64_t id);

class MessageArchive {
public:
    explicit MessageArchive(storage::Store* store) noexcept;
    ~MessageArchive();
    MessageArchive(const MessageArchive&) = delete;
    MessageArchive& operator=(const MessageArchive&) = delete;

    // Appends are batched per turn of this io_context (the shard's); without it each append is
    // its own write (tests).
    void defer_writes_to(asio::io_context& io) noexcept { _io = &io; }
    // Writes what is pending now (end of turn, before a read, at shutdown).
    void flush() const noexcept;

    // A fresh id for a message archived now (`now_us`): strictly above every id this archive
    // handed out before.
    std::uint64_t next_id(std::int64_t now_us) noexcept;

    // Durable (synced) when the store syncs writes (DESIGN §6).
    xmpp::Result<void, storage::Errc> append(std::string_view bare, const ArchivedMessage& m) noexcept;
    // Records of `bare` with lo <= id <= hi, in id order; `f` returns false to stop.
    using Visitor = std::function<bool(std::uint64_t id, std::string_view value)>;
    xmpp::Result<void, storage::Errc> scan(std::string_view bare, std::uint64_t lo, std::uint64_t hi,
                                           const Visitor& f) const noexcept;
    xmpp::Result<ArchivedMessage, storage::Errc> get(std::string_view bare, std::uint64_t id) const noexcept;
    // An id for a new record of `bare`: next_id(now_us), and above every id `bare` already has.
    // The user's newest stored id is looked up once per user (one reverse seek), not per
    // message: after a restart with the clock gone back, ids must still not collide.
    std::uint64_t fresh_id(std::string_view bare, std::int64_t now_us);
    // Removes the records of `bare` with lo <= id < hi.
    xmpp::Result<void, storage::Errc> remove(std::string_view bare, std::uint64_t lo, std::uint64_t hi) noexcept;

    bool is_durable() const noexcept { return _store != nullptr; }

    static std::string encode(const ArchivedMessage& m);
    // `id` comes from the key.
    static xmpp::Result<ArchivedMessage, storage::Errc> decode(std::string_view bytes, std::uint64_t id) noexcept;

private:
    struct Pending;
    storage::Store* _store;
    asio::io_context* _io = nullptr;
    std::shared_ptr<Pending> _pending;  // a write-behind buffer, written through const reads too
    std::map<std::string, std::string> _memory;  // without a store
    std::uint64_t _last_id = 0;
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    // Last id handed out per user on this shard (one entry per user that archived since start).
    std::unordered_map<std::string, std::uint64_t, Hash, std::equal_to<>> _user_last;
};

}  // namespace starling::modules::mam
