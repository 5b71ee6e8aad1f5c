// AccountStore: user accounts in the "accounts" column family. Only SCRAM salted keys are kept
// (DESIGN §6, RFC 5802 §3): a stolen store does not reveal passwords, nor let anyone log in
// with PLAIN without first cracking the PBKDF2 hash.
//
// Thread-safe (RocksDB is); each call is one synchronous RocksDB operation, except get_async,
// which reads through a shard's ShardWriter and never touches the disk on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/move_function.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {

class Store;
class ShardWriter;

// Salted keys for one hash function.
struct ScramKeys {
    std::uint32_t iterations = 0;
    std::string salt;
    std::string stored_key;
    std::string server_key;
    bool empty() const noexcept { return stored_key.empty(); }
};

struct AccountRecord {
    ScramKeys sha1;
    ScramKeys sha256;
    std::int64_t created_unix_ms = 0;
    bool disabled = false;
};

using AccountLoaded = MoveFunction<void(xmpp::Result<AccountRecord, Errc>)>;

class AccountStore {
public:
    explicit AccountStore(Store& store) noexcept : _store(store) {}

    // `bare_jid` must already be normalised (xmpp::Jid).
    xmpp::Result<void, Errc> put(std::string_view bare_jid, const AccountRecord& record) noexcept;
    xmpp::Result<AccountRecord, Errc> get(std::string_view bare_jid) const noexcept;
    // get() through `writer` (ShardWriter::get_async), on the writer's shard: `done` runs inline
    // when the record is in the shard's overlay, the memtable or the block cache, else it is
    // posted back once the committer's reader thread has read it (a slow disk stalls that
    // thread, not the shard). Errc::not_found when there is no such account; Errc::stopped when
    // the writer went away first.
    static void get_async(ShardWriter& writer, std::string_view bare_jid, AccountLoaded done) noexcept;
    xmpp::Result<bool, Errc> exists(std::string_view bare_jid) const noexcept;
    // True when it existed.
    xmpp::Result<bool, Errc> remove(std::string_view bare_jid) noexcept;
    // Deletes what the stores keep for the account `bare_jid` (one synced write per 10,000
    // records): every record keyed `bare_jid` or `bare_jid NUL ...` in the per-account column
    // families (roster, offline, archive, block list, vCard, meta: FAST tokens, counters, flags;
    // PEP nodes and items, whose service is the account) and the account's PEP entries in the
    // PubSub owner index. Point deletes only (no range tombstones: see modules/mam). Returns the
    // number of records deleted. Its subscriptions and affiliations on other nodes stay.
    xmpp::Result<std::size_t, Errc> purge_data(std::string_view bare_jid) noexcept;
    // Bare JIDs in key order, starting after `after` (empty: from the start), at most `limit`.
    xmpp::Result<std::vector<std::string>, Errc> list(std::string_view after, std::size_t limit) const noexcept;

    // Many accounts in one durable write (bulk provisioning).
    xmpp::Result<void, Errc> put_many(const std::vector<std::pair<std::string, AccountRecord>>& records) noexcept;

    // Record <-> bytes, exposed for tests.
    static std::string encode(const AccountRecord& record);
    static xmpp::Result<AccountRecord, Errc> decode(std::string_view bytes) noexcept;

private:
    Store& _store;
};

}  // namespace starling::storage
