// MessageArchive: every user's message archive (XEP-0313), stored once per message.
// Index ("mam" column family), one record per party: key bare JID, NUL, archive id as 8 bytes
// big-endian; the id is the archive time in microseconds since the epoch, made unique and
// increasing per shard (every message of a user is archived on its home shard). Value: a small
// index record (encode_index: direction, 'with', where the stanza is). Records written before
// store-once (a FlatBuffers ArchivedMessage, schemas/storage/mam.fbs, with the stanza inline)
// are read as they are: both formats coexist, nothing is migrated.
// With the shard's writer (the broker), bodies are records of the shard's body log
// (storage/segment_log.hpp) named by position, and index entries wait in memory until they go
// as one chunk record per user (flush_index; README "The body log", "The index per tick");
// what follows is the store's layout without a writer, and for records written before.
// Bodies ("mam_bodies"): key archive id as 8 bytes big-endian, then the bare JID of the party
// whose index record has that id; value: the stanza, and the bare JID of the other party, who
// may hold an index record with the same id (a chat between two accounts of one shard: the
// message is stored once, and both index records name the same body). Keys in id order: the
// body space grows at its end, its SST files do not overlap.
// Bodies go when nobody refers to them: by age (a range deletion below the retention floor,
// expire_bodies), and by a pass over the bodies (find_orphans) for those whose index records
// went by count trimming or account deletion.
// Per user, a record count in the "meta" column family (key: bare JID, NUL, "mam.count";
// value: 8 bytes big-endian), so that retention by count never has to scan an archive to count
// it; written at most once a second per user (persist_counts) and at destruction.
// Without a Store (unit tests; a broker whose ShardContext does not expose one) the records live
// in memory, per shard, in the same key order.
//
// Lives on: one per shard (owned by MamModule); used on that shard's thread only.
// Writes: with a ShardWriter (the broker), appends are staged into the shard's batch of the turn
// and committed by the Committer thread at Durability::logged (WAL appended, no fsync: an
// archived copy has no acknowledgement waiting on it; DESIGN §6, storage/README.md). The shard
// thread never calls DB::Write for them. Records not yet committed are not readable: readers
// go through when_readable(). Without a writer but with a store (tools, older tests), the
// records of one turn go to RocksDB as one WriteBatch at the end of the turn.
// Reads (scan, get) are synchronous on the shard thread: queries and the retention sweep, never
// the message path (TODO: cold reads off the reactor).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/move_function.hpp"
#include "broker/src/util/node_map.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {
enum class Column : std::uint8_t;
class Store;
class ShardWriter;
class SegmentLog;
}

namespace asio {
class io_context;
}
namespace rocksdb {
struct ReadOptions;
}

namespace starling::modules::mam {

struct ArchivedMessage {
    std::uint64_t id = 0;          // archive id (the key suffix), also the result id
    std::int64_t stamp_us = 0;     // when archived
    std::string with;              // the other party's full JID
    // Set when the index names 'with' only by this hash (with_hash): decode() leaves `with`
    // empty, get() reads it from the body's log record.
    std::optional<std::uint32_t> with_hash;
    bool sent = false;             // sent by the owner (else received)
    std::string stanza;            // the <message/> as delivered
    // Index records of the store-once format (decode() leaves `stanza` empty; get() fills it):
    bool stanza_in_body = false;   // the stanza is in the body space
    std::string body_owner;        // whose body it is when not the record's owner's (shared)
    // The stanza is the copy the sender archived: the owner's <stanza-id/> (XEP-0359) is not in
    // it and is added when the record is sent (a query result).
    bool needs_stanza_id = false;
    // The stanza is in the shard's body log (storage/segment_log.hpp) at this position, not in
    // the "mam_bodies" column family.
    bool in_log = false;
    std::uint64_t log_position = 0;
};

// The hash an index entry keeps of 'with' when the body's log record names it (k_chunk_v3):
// of its bare JID, so that a query by a bare or a full JID tests it before reading the record.
std::uint32_t with_hash(std::string_view with) noexcept;

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
    // The same 16 digits, without an allocation.
    void format_into(std::uint64_t id, char (&out)[16]) const noexcept;
    std::optional<std::uint64_t> parse(std::string_view text) const noexcept;

private:
    std::uint64_t _keys[4];
};

std::string archive_key(std::string_view bare, std::uint64_t id);
// The same key into `out` (cleared first): no allocation once `out` has grown.
void archive_key_into(std::string& out, std::string_view bare, std::uint64_t id);
std::string count_key(std::string_view bare);
// Key of a body in "mam_bodies": 8 bytes big-endian id, then the owner's bare JID.
std::string body_key(std::uint64_t id, std::string_view owner);

class MessageArchive {
public:
    // `writer`: the shard's write path (null: direct writes to `store`, or memory without one).
    explicit MessageArchive(storage::Store* store, storage::ShardWriter* writer = nullptr) noexcept;
    ~MessageArchive();
    MessageArchive(const MessageArchive&) = delete;
    MessageArchive& operator=(const MessageArchive&) = delete;

    // Appends are batched per turn of this io_context (the shard's); without it each append is
    // its own write (tests). With a writer, the writer batches them.
    void defer_writes_to(asio::io_context& io) noexcept { _io = &io; }
    // Without a writer: writes what is pending now (end of turn, before a read, at shutdown).
    void flush() const noexcept;

    // A fresh id for a message archived now (`now_us`): strictly above every id this archive
    // handed out before.
    std::uint64_t next_id(std::int64_t now_us) noexcept;

    // Logged (WAL, no fsync) with a writer; otherwise synced when the store syncs writes.
    xmpp::Result<void, storage::Errc> append(std::string_view bare, const ArchivedMessage& m) noexcept;
    // The same from views: the value is built in a reused buffer, no allocation per message.
    // `sender_full`: a sent message's sender's full JID (its bare part is `bare`), which the
    // body's log record then names, so that the recipient's entry can ride on that record
    // (append_shared).
    xmpp::Result<void, storage::Errc> append(std::string_view bare, std::uint64_t id, std::int64_t stamp_us,
                                             std::string_view with, bool sent, std::string_view stanza,
                                             std::string_view sender_full = {}) noexcept;

    // The recipient's index record of a message its sender archived on this shard just before
    // (append with sent = true, `body_id`, owner `sender_bare`, whose full JID is `with`): no
    // second copy of the stanza. The record takes the body's id; false (nothing written) when
    // that id is not above every id `bare` has (then the caller archives a copy of its own).
    xmpp::Result<bool, storage::Errc> append_shared(std::string_view bare, std::uint64_t body_id,
                                                    std::string_view with, std::string_view sender_bare) noexcept;

    // Runs `f` on this shard once every append made before the call is readable (committed):
    // inline when none is waiting. With `ok` false when a commit failed (what was appended may
    // be missing). Reads that must see the latest messages (queries) run inside it.
    void when_readable(storage::MoveFunction<void(bool ok)> f) noexcept;

    // Records of `bare` with lo <= id <= hi, in id order; `f` returns false to stop.
    using Visitor = std::function<bool(std::uint64_t id, std::string_view value)>;
    xmpp::Result<void, storage::Errc> scan(std::string_view bare, std::uint64_t lo, std::uint64_t hi,
                                           const Visitor& f) const noexcept;
    xmpp::Result<ArchivedMessage, storage::Errc> get(std::string_view bare, std::uint64_t id) const noexcept;
    // For a message decode() read from the index with its body in a log: reads the body's log
    // record (not the index again) for 'with' when the index keeps only its hash, and the
    // stanza when `stanza` is set. Reads only: may run on the store's reader thread.
    xmpp::Result<void, storage::Errc> read_log_record(ArchivedMessage& m, bool stanza) const noexcept;
    // An id for a new record of `bare`: next_id(now_us), and above every id `bare` already has.
    // The user's newest stored id is looked up once per user (one reverse seek), not per
    // message: after a restart with the clock gone back, ids must still not collide.
    std::uint64_t fresh_id(std::string_view bare, std::int64_t now_us);
    // The newest id `bare` has in the store (0: none). Reads RocksDB only (one reverse seek),
    // touches no shard state: runs on the store's reader thread when off_reactor_writer() is set.
    xmpp::Result<std::uint64_t, storage::Errc> newest_stored(std::string_view bare) const noexcept;
    // The same from the memtables and the block cache only, on the shard: nullopt when that
    // would need the disk (or failed), and then newest_stored() goes to the reader thread.
    std::optional<std::uint64_t> newest_in_memory(std::string_view bare) const noexcept;
    // Whether the newest id of `bare` is cached (fresh_id and queue_for_retention seek no more).
    bool knows(std::string_view bare) const noexcept { return _users.find(bare) != nullptr; }
    // The same, remembering the entry for the append that follows (one hash lookup for both).
    bool touch(std::string_view bare) noexcept {
        if (_last_user != nullptr && _last_user->first == bare) return true;
        auto* it = _users.find(bare);
        if (it == nullptr) return false;
        _last_user = it;
        prefetch_pending(it->second);
        return true;
    }
    // A hint: `bare` is about to be looked up (fresh_id, touch), a message's routing from now.
    // Its entry is fetched into the cache meanwhile; one user among thousands rarely is.
    void prefetch_user(std::string_view bare) const noexcept { _users.prefetch(bare); }
    // Caches `newest` (from newest_stored, read off the reactor) as the newest id of `bare`,
    // unless an entry was made meanwhile: that one did its own seek and may have moved on.
    void seed_newest(std::string_view bare, std::uint64_t newest);
    // Removes the records of `bare` with lo <= id < hi. Keeps the count exact (counts what it
    // removes): for retention, not for the message path.
    xmpp::Result<void, storage::Errc> remove(std::string_view bare, std::uint64_t lo, std::uint64_t hi) noexcept;

    // Bodies older than `floor` (every index record that could name them is older too): one
    // range deletion, at most once a minute of floor.
    void expire_bodies(std::uint64_t floor) noexcept;
    // Up to `n` bodies from `cursor` on (cleared at the end of the space) whose owners are
    // `mine` and whose ids are at most `watermark` (bodies appended since may have index
    // records not readable yet): the keys of those no index record names any more. Reads only
    // (a snapshot): may run on the store's reader thread. Bodies never gain a reference once
    // written, so an orphan stays one until erase_bodies().
    std::vector<std::string> find_orphans(std::string& cursor, std::size_t n, std::uint64_t watermark,
                                          const std::function<bool(std::string_view owner)>& mine) const;
    void erase_bodies(const std::vector<std::string>& keys) noexcept;
    // The body log this shard appends to (null: bodies go to "mam_bodies": no writer, or the
    // log could not be opened).
    storage::SegmentLog* log() const noexcept { return _log; }
    // With the body log, index entries wait in memory and are written per user as one chunk
    // (the index per tick, README): this stages every user's waiting entries, and the log
    // position up to which they are all written (the restart's replay starts there). The
    // sweep's tick calls it; so does when_readable(), so that a read sees every append.
    void flush_index() noexcept;
    // At start, before any append: rebuilds the index entries of `log`'s records after its
    // marker that RocksDB lacks (a crash or a stop since they were appended). Its own log, and
    // logs of shards that no longer exist. Returns how many entries it rebuilt.
    std::size_t replay(storage::SegmentLog& log);
    // The same pass over a body log: up to `n` records from `offset`, erasing those no index
    // record names (from a snapshot; only ids up to `watermark`, as find_orphans). Returns
    // where to go on from, nullopt at the end. Reads RocksDB and writes only the log: may run
    // on the store's reader thread.
    std::optional<std::uint64_t> sweep_log(storage::SegmentLog& log, std::uint64_t offset, std::size_t n,
                                           std::uint64_t watermark) const;
    // The highest id handed out on this shard (the watermark of find_orphans).
    std::uint64_t last_id() const noexcept { return _last_id; }

    // Retention, off the message path (MamModule's sweep timer). Removes the records of `bare`
    // with ids below `floor` and the oldest beyond `max_count` (0: no limit). Returns how many
    // it removed. Loads the user's count (one point read), counting the records once when no
    // count was stored yet (archives written before counts were kept).
    xmpp::Result<std::uint64_t, storage::Errc> enforce(std::string_view bare, std::uint64_t floor,
                                                       std::uint64_t max_count) noexcept;
    // Users due for enforce(): queued at their first archived message since start, when their
    // count passes max_count by a slack (max_count / 16, at least 1), and by queue_for_retention
    // (at login). At most one seek here (a user's newest id, once); the sweep does the work.
    void set_max_count(std::uint64_t max_count) noexcept { _max_count = max_count; }
    void queue_for_retention(std::string_view bare);
    // Up to `n` bare JIDs that have records, in key order from `cursor` on; `cursor` is moved
    // past them, or cleared when the pass has reached the end. For retention of users nobody
    // queues (idle since the start): one seek per user, off the message path.
    std::vector<std::string> users_from(std::string& cursor, std::size_t n) const;
    // Drops the cached state of `bare` when nothing is pending for it (no count to write, not
    // queued): the retention pass over idle users keeps no memory per user it visited.
    void release(std::string_view bare) noexcept;
    // Up to `n` queued users, oldest first, taken off the queue.
    std::vector<std::string> take_queued(std::size_t n);
    std::size_t queued() const noexcept { return _queue.size(); }
    // Stages the counts changed since the last call (with a writer: into its batch). The sweep
    // calls it every tick: at most one count write per user per tick, not one per message.
    // Without a writer the counts go with the records at the end of each turn.
    void persist_counts() noexcept;
    // The account `bare` was deleted (storage::delete_account removed its records): removes what
    // this shard may still have staged for it (behind its writes on the shard's writer) and
    // forgets its cached count and queue places.
    void forget(std::string_view bare) noexcept;
    // The user's record count, as kept (loaded or counted on first use).
    xmpp::Result<std::uint64_t, storage::Errc> count(std::string_view bare) noexcept;

    bool is_durable() const noexcept { return _store != nullptr; }
    // The shard's writer when every read of this archive is a RocksDB read (records go through
    // the writer, none wait in memory): get() and scan() may then run on the store's reader
    // thread (ShardWriter::run_off_reactor) once when_readable() said so. Null otherwise.
    storage::ShardWriter* off_reactor_writer() const noexcept { return _store != nullptr ? _writer : nullptr; }

    // The format before store-once (FlatBuffers, the stanza inline): still read, no longer
    // written (tests write it to check that old stores stay readable).
    static std::string encode(const ArchivedMessage& m);
    // An index record (either format; `id` comes from the key). For store-once records the
    // stanza is left empty (stanza_in_body): get() reads the body.
    static xmpp::Result<ArchivedMessage, storage::Errc> decode(std::string_view bytes, std::uint64_t id) noexcept;

private:
    xmpp::Result<std::uint64_t, storage::Errc> newest_with(std::string_view bare,
                                                           const rocksdb::ReadOptions& ro) const noexcept;
    struct Pending;
    struct User {
        std::uint64_t last_id = 0;   // the newest id handed out or stored
        std::uint64_t count = 0;     // records stored (valid when count_known)
        bool count_known = false;
        bool count_dirty = false;    // to be written with the next batch
        bool queued = false;         // in _queue
        // Index entries not yet in RocksDB (with the body log): written as one chunk at the
        // sweep's tick, before any read of the archive, or at k_max_chunk_entries.
        std::string pending;
        std::uint32_t pending_n = 0;
        std::uint64_t pending_last = 0;  // id of the last one
        std::uint64_t pending_position = 0;  // log position of the last one that has one
    };
    using Users = util::NodeMap<User>;

    Users::value_type* user(std::string_view bare);
    // Asks the CPU for the end of the user's waiting entries, where the next entry goes: the
    // append that follows (after the body's record and the stanza-id) then finds it in cache.
    // One user's buffer among thousands is rarely cached: this miss was a tenth of the
    // archive's time on the shard (issue 14).
    static void prefetch_pending(const User& u) noexcept {
        const char* end = u.pending.data() + u.pending.size();
        __builtin_prefetch(end, 1);
        __builtin_prefetch(end + 63, 1);
    }
    xmpp::Result<void, storage::Errc> load_count(std::string_view bare, User& u) noexcept;
    void post_end_of_turn() noexcept;
    xmpp::Result<void, storage::Errc> put(storage::Column c, std::string_view key, std::string_view value) noexcept;
    xmpp::Result<void, storage::Errc> erase(storage::Column c, std::string_view key) noexcept;
    // A body's value (the archive's own reads: a snapshot when `ro` has one).
    xmpp::Result<std::string, storage::Errc> read(storage::Column c, std::string_view key,
                                                  const rocksdb::ReadOptions& ro) const noexcept;
    void note_append(Users::value_type* u, std::uint64_t id);
    // `with_in_log`: the log record at `position` names `with` (the entry keeps only its hash).
    void add_entry(Users::value_type* u, char kind, std::uint64_t id, std::int64_t stamp_us, std::string_view with,
                   std::uint64_t position, bool with_in_log);
    // Writes the user's waiting entries as one chunk. `busy`: the chunk is full (the user writes
    // many entries per tick) and the buffer is kept for the next.
    void flush_user(Users::value_type* u, bool busy) noexcept;
    // The index value of `bare`'s record `id` (a single record, or built from its chunk's entry).
    xmpp::Result<std::string, storage::Errc> lookup(std::string_view bare, std::uint64_t id,
                                                    const rocksdb::ReadOptions& ro) const noexcept;
    void stage_counts() noexcept;

    storage::Store* _store;
    storage::ShardWriter* _writer;
    storage::SegmentLog* _log = nullptr;
    // The last body appended to the log: a recipient on this shard may share it (append_shared).
    std::uint64_t _last_body_id = 0;
    std::uint64_t _last_body_position = 0;
    std::string _last_body_owner;  // the owner its record names when it is a sent message's
    std::string _last_body_peer;   // and the recipient's bare JID; else both empty
    asio::io_context* _io = nullptr;
    std::shared_ptr<Pending> _pending;  // a write-behind buffer, written through const reads too
    std::map<std::string, std::string> _memory;  // without a store
    std::map<std::string, std::string> _memory_bodies;
    std::uint64_t _bodies_floor = 0;  // expire_bodies: the last floor deleted below
    std::uint64_t _last_id = 0;
    // Per user that archived or was swept since start, on this shard.
    Users _users;
    Users::value_type* _last_user = nullptr;  // the last one user() found (nodes are stable)
    std::deque<Users::value_type*> _queue;  // due for retention
    std::uint64_t _max_count = 0;
    std::vector<Users::value_type*> _dirty;  // users whose count changed this turn (nodes are stable)
    std::vector<Users::value_type*> _pending_users;  // with index entries in memory
    // Logs whose records up to this end have their index entries written or pending here: the
    // marker staged with the next flush_index() (its own log, and other logs replayed at start).
    std::vector<std::pair<std::uint16_t, std::uint64_t>> _replayed;
    std::uint64_t _indexed_end = ~std::uint64_t{0};  // own log: the marker last staged
    // when_readable: appends made, and those known committed (with a writer).
    std::uint64_t _appended = 0;
    std::uint64_t _readable = 0;
    std::string _key;                                                // reused for every key
    std::string _value;                                              // reused for every value
};

}  // namespace starling::modules::mam
