// FastTokenStore: XEP-0484 FAST tokens of each account, in the "meta" column family under
// "<bare JID>\0fast" (one small record per account: at most max_tokens_per_account entries).
// A token itself is never stored: only its SHA-256, which is the HMAC key of HT-SHA-256-NONE
// (xmpp/sasl/ht.hpp explains why that suffices).
//
// The token policy (expiry, bound per account, rotation) is in the free functions below, pure
// and clock-free so that unit tests drive them. The members are thread-safe like AccountStore
// (each call is one synchronous RocksDB operation: the admin thread's `starlingctl fast`); a
// shard reads and writes through its ShardWriter instead (the static *_async and stage), never
// touching the disk on its reactor. Read-modify-write of one account's record is not atomic
// across threads: FastRevocations below is what keeps a login's write-back from undoing a
// revocation (broker/src/c2s/README.md).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "broker/src/storage/errc.hpp"
#include "broker/src/storage/move_function.hpp"
#include "xmpp/result.hpp"

namespace starling::storage {

class Store;
class ShardWriter;
enum class Durability : std::uint8_t;  // write_path.hpp

struct FastToken {
    std::string key;         // SHA-256 of the token (32 bytes)
    std::string user_agent;  // the SASL2 <user-agent id='..'/> it was issued to (may be empty)
    std::string mechanism;   // "HT-SHA-256-NONE", "-EXPR" or "-ENDP": the only one it logs in with
    std::int64_t issued_unix_s = 0;
    std::int64_t expiry_unix_s = 0;
    std::uint32_t count = 0;  // the highest <fast count='..'/> accepted (XEP-0484 replay protection)

    friend bool operator==(const FastToken&, const FastToken&) = default;
};

// Drops expired tokens; true when something was dropped.
bool drop_expired(std::vector<FastToken>& tokens, std::int64_t now_unix_s);
// Adds `fresh`. The same user agent keeps one older token besides it (the one it may still hold
// if it never saw the new one: rotation must not lock it out); the oldest tokens of the account
// go first past `max_per_account` (>= 1).
void add_token(std::vector<FastToken>& tokens, FastToken fresh, std::size_t max_per_account);
// A login used `used`: older tokens of the same user agent are dropped (it holds the new one).
void forget_superseded(std::vector<FastToken>& tokens, const FastToken& used);

// Revocations (`starlingctl fast revoke`) against the logins that read an account's tokens and
// write them back (a counter, a new token), on any shard. Shared by every shard and the admin
// thread; lock-free. The protocol, and why it needs no timing assumption:
//   revocation: (1) delete the record; (2) bump(bare); (3) wait until every shard has committed
//               what it staged before (ShardWriter::when_durable on each); (4) delete again.
//   login:      g = generation(bare) before asking for the tokens; after reading them, write
//               back only if generation(bare) == g, checked in the same shard turn as the staging.
// A login that read the tokens before (1) landed took g before (2): either it checks after (2)
// and writes nothing, or it checked and staged before (2), so its write is committed by (3) and
// removed by (4). A login that read after (1) found no tokens to bring back.
// Accounts share 1,024 counters by hash: a revocation may refuse an unrelated login that was in
// flight (temporary-auth-failure; the client retries), never let one through.
class FastRevocations {
public:
    std::uint64_t generation(std::string_view bare_jid) const noexcept;
    void bump(std::string_view bare_jid) noexcept;

private:
    static constexpr std::size_t k_slots = 1024;
    std::array<std::atomic<std::uint64_t>, k_slots> _generations{};
};

using FastTokensLoaded = MoveFunction<void(xmpp::Result<std::vector<FastToken>, Errc>)>;
using FastTokensStored = MoveFunction<void(xmpp::Result<void, Errc>)>;  // a write_path.hpp Completion

class FastTokenStore {
public:
    explicit FastTokenStore(Store& store) noexcept : _store(store) {}

    // The account's tokens (empty when none).
    xmpp::Result<std::vector<FastToken>, Errc> get(std::string_view bare_jid) const noexcept;
    // get() through `writer` (ShardWriter::get_async), on the writer's shard: inline when the
    // record is in the overlay, the memtable or the block cache, else read on the committer's
    // reader thread and posted back. Errc::stopped when the writer went away first.
    static void get_async(ShardWriter& writer, std::string_view bare_jid, FastTokensLoaded done) noexcept;
    // put() through `writer`, on the writer's shard: the record (or its deletion, when `tokens`
    // is empty) is staged into the turn's batch at `level` and committed by the committer,
    // off the reactor; reads through the same writer see it at once (the overlay). Fails only
    // when it cannot be staged (nothing is staged then). For a write nobody waits for.
    static xmpp::Result<void, Errc> stage(ShardWriter& writer, std::string_view bare_jid,
                                          const std::vector<FastToken>& tokens, Durability level) noexcept;
    // stage(), then `done` once the write is durable at `level` (ShardWriter::when_durable:
    // posted to the writer's shard, in staging order), or with the error of its commit. Runs
    // `done` inline, before returning, only when the write cannot be staged.
    // Durability::synced for a token handed out or invalidated, logged for a counter update.
    static void put_async(ShardWriter& writer, std::string_view bare_jid, const std::vector<FastToken>& tokens,
                          Durability level, FastTokensStored done) noexcept;
    // Replaces the account's tokens (none: the record is deleted), synchronously, on the
    // calling thread (the admin thread; not a shard's). `durable`: fsynced (a token handed out
    // must survive a power cut); otherwise the WAL only (counter updates).
    xmpp::Result<void, Errc> put(std::string_view bare_jid, const std::vector<FastToken>& tokens,
                                 bool durable) noexcept;
    // Deletes them all; returns how many there were.
    xmpp::Result<std::size_t, Errc> revoke(std::string_view bare_jid) noexcept;

    static std::string key_of(std::string_view bare_jid);
    static std::string encode(const std::vector<FastToken>& tokens);
    static xmpp::Result<std::vector<FastToken>, Errc> decode(std::string_view bytes) noexcept;

private:
    Store& _store;
};

}  // namespace starling::storage
