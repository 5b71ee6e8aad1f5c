// ShardContext: what every client stream of one shard shares: the shard's services (what modules
// see too) and the client-stream layer's own pieces — its options, the TLS context, counters,
// the table of open sessions, per-address connection counts and a shared read buffer. Handed to
// a session by reference; a session that migrates switches to the context of its new shard.
//
// Lives on: one shard. The references to broker-wide objects are to immutable or thread-safe
// things.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>

#include "broker/src/router/router.hpp"
#include "broker/src/session/shard_services.hpp"
#include "xmpp/stream_error.hpp"

namespace xmpp::tls {
class OpenSslServerContext;
}

namespace starling::storage {
class FastRevocations;
}

namespace starling::c2s {

class C2sSession;
struct C2sOptions;

// Plain per-shard integers, summed over shards at scrape time (CONVENTIONS §4).
struct C2sCounters {
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_closed = 0;
    std::uint64_t tls_handshakes = 0;
    std::uint64_t tls_failures = 0;
    // Completed handshakes by version and whether a ticket resumed them: [1.3 full, 1.3
    // resumed, 1.2 full, 1.2 resumed].
    std::array<std::uint64_t, 4> tls_completed{};
    // Successful SASL logins by mechanism (index: xmpp::sasl::Mechanism).
    std::array<std::uint64_t, 8> auth_by_mechanism{};
    std::uint64_t auth_fast = 0;  // XEP-0484 token logins (HT-SHA-256-NONE), not in the array
    std::uint64_t refused_per_ip = 0;       // too many open from one address
    std::uint64_t refused_rate = 0;         // too many new ones per second from one address
    std::uint64_t refused_capacity = 0;     // the shard's connection cap
    std::uint64_t auth_success = 0;
    std::uint64_t auth_failure = 0;
    std::uint64_t sessions_bound = 0;
    std::uint64_t stanzas_in[3] = {0, 0, 0};  // by router::StanzaKind
    std::uint64_t stanzas_out = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::array<std::uint64_t, 25> stream_errors{};  // by xmpp::StreamError
    // XEP-0198.
    std::uint64_t sm_enabled = 0;
    std::uint64_t sm_resumed = 0;
    std::uint64_t sm_resume_failed = 0;
    std::uint64_t sm_hibernated = 0;  // connection lost, session kept for resumption
    std::uint64_t sm_expired = 0;     // not resumed in time
    std::uint64_t sm_rerouted = 0;    // unacknowledged messages sent on to offline or other resources
    // XEP-0138: bytes before and after zlib, both directions, and streams refused for their input.
    std::uint64_t zlib_sessions = 0;
    std::uint64_t zlib_in_wire = 0, zlib_in_plain = 0;
    std::uint64_t zlib_out_plain = 0, zlib_out_wire = 0;
    std::uint64_t zlib_refused = 0;
};

// A resumable session that is no longer there (expired or closed): kept briefly so that a late
// <resume/> gets <failed h='..'/> (XEP-0198 §5) and the client knows what arrived.
struct SmTombstone {
    std::string bare;
    std::uint32_t handled = 0;
};

// One TLS record (16 KiB of plaintext) and its header, with room for the cipher's expansion.
inline constexpr std::size_t k_tls_read_chunk = 17 * 1024;

struct ShardContext : session::ShardServices {
    ShardContext(session::ShardServices services, const C2sOptions& o,
                 std::shared_ptr<const xmpp::tls::OpenSslServerContext> t)
        : session::ShardServices(services), options(o), tls(std::move(t)) {}

    const C2sOptions& options;
    // Null: no TLS configured. A certificate reload (SIGHUP) replaces it on this shard's thread;
    // sessions keep the context they started with alive until they end.
    std::shared_ptr<const xmpp::tls::OpenSslServerContext> tls;
    // Shared by every shard and the admin thread (`starlingctl fast revoke`): a FAST login writes
    // the tokens it read back only if no revocation of the account came meanwhile. Null: no
    // revocation can happen (tests and tools without the admin socket).
    const storage::FastRevocations* fast_revocations = nullptr;
    C2sCounters counters{};
    // Every session on this shard (bound or not). The table owns them: a session is destroyed
    // when it leaves the table and no handler holds it any more.
    std::unordered_map<C2sSession*, std::shared_ptr<C2sSession>> sessions{};
    // Open connections per remote address on this shard (the limit is per shard: the kernel
    // spreads one address's connections over the shards' listeners).
    std::unordered_map<std::string, std::uint32_t> per_ip{};
    // New-connection token buckets per address (c2s.connection_rate_per_ip). Entries whose bucket
    // has refilled are swept every few thousand accepts, so the table stays as small as the set
    // of addresses that connected recently.
    struct RateBucket {
        double tokens = 0;
        std::chrono::steady_clock::time_point refill_at{};
    };
    std::unordered_map<std::string, RateBucket> per_ip_rate{};
    std::uint32_t accepts_since_sweep = 0;
    // XEP-0198 resumption ids of sessions on this shard (their home), and recent tombstones
    // (bounded, oldest evicted first).
    std::unordered_map<std::string, std::weak_ptr<C2sSession>> resumable{};
    std::unordered_map<std::string, SmTombstone> sm_tombstones{};
    std::vector<std::string> sm_tombstone_order{};
    std::size_t sm_tombstone_next = 0;
    // What TLS sessions read ciphertext into (the engine copies it) and lingering sessions read
    // to drop: one TLS record and its header. Shared by every session of the shard.
    std::vector<char> read_scratch = std::vector<char>(k_tls_read_chunk);
    // XEP-0138: decrypted-but-compressed input, inflated input and deflated output of one
    // session at a time (the session keeps none of it between reads).
    std::vector<char> zlib_scratch = std::vector<char>(k_tls_read_chunk);
    std::string inflate_scratch;
    std::string deflate_scratch;
    // Output buffers (_out, _wire) that sessions gave back when they went idle, for the next
    // session with something to send: a shard wakes and parks many sessions per turn, and
    // allocating and freeing each one's buffers was ~2% of a TLS chat shard's time. At most
    // k_spare_strings, each of a capacity up to k_spare_string_bytes.
    std::vector<std::string> spare_strings{};
};

}  // namespace starling::c2s
