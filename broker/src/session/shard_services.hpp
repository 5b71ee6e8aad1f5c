// ShardServices: what every session, module and local service of one shard shares — the shard's
// io_context, router, random generator and hook table — plus the broker-wide read-only pieces
// (server options, account store, RocksDB). Modules see this and never the client-stream layer's
// own context (c2s::ShardContext extends it with sockets, TLS and per-connection tables).
//
// Lives on: one shard. The references to broker-wide objects are to immutable or thread-safe
// things.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <asio/io_context.hpp>

#include "broker/src/router/router.hpp"

namespace starling::storage {
class AccountStore;
class ShardWriter;
class Store;
}  // namespace starling::storage
namespace starling::util {
class Random;
}

namespace starling::session {

class HookTable;
class ShardPeers;

// Facts about the server that every layer above the router may read: filled from the
// configuration at start-up, immutable afterwards.
struct ServerOptions {
    std::vector<std::string> domains{"localhost"};
    // Let clients authenticate (even with PLAIN) without TLS: benchmarks on loopback only.
    bool allow_plaintext = false;
    std::uint32_t scram_iterations = 4096;  // for new and changed passwords
    std::string version = "0.1.0";          // answered to XEP-0092 queries
    std::string server_secret;  // derives decoy SCRAM salts and archive ids (RFC 5802 §9)

    bool serves(std::string_view domain) const {
        for (const auto& d : domains) {
            if (d == domain) return true;
        }
        return false;
    }
};

struct ShardServices {
    router::ShardId shard;
    asio::io_context& io;
    const ServerOptions& server;
    storage::AccountStore& accounts;
    router::ShardRouter& router;
    util::Random& random;
    const HookTable* hooks = nullptr;  // null: no modules (unit tests)
    storage::Store* store = nullptr;   // for modules' column families (thread-safe)
    // This shard's front to the store: batched writes committed off the reactor, completions
    // when durable (storage/README.md). Null in unit tests that give no store.
    storage::ShardWriter* writer = nullptr;
    // Control work on other shards (session/shard_peers.hpp). Null in single-shard unit tests.
    ShardPeers* peers = nullptr;
    bool draining = false;             // SIGTERM: no new sessions
};

}  // namespace starling::session
