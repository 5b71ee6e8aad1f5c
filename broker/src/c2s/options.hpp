// What a client-to-server session needs to know, filled from the configuration at start-up and
// immutable afterwards (shared read-only by every shard). Module options are not here: each
// module declares its own (session/options.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "broker/src/session/shard_services.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace starling::c2s {

struct C2sOptions : session::ServerOptions {
    // RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate unless the operator says otherwise.
    bool require_tls = true;
    bool offer_scram_sha1 = true;
    bool offer_plain = true;  // only ever offered under TLS unless allow_plaintext
    // SCRAM-SHA-*-PLUS under TLS (RFC 5802 §6), advertised with XEP-0440.
    bool channel_binding = true;
    // Refuse "y" while -PLUS is offered (RFC 5802 §6); see [tls] channel_binding_downgrade_check.
    bool channel_binding_downgrade_check = false;
    // SASL EXTERNAL with a verified client certificate (XEP-0178): on when [tls] client_ca_file
    // is set. The JID is the certificate's id-on-xmppAddr, else (if external_jid_from_cn)
    // <subject CN>@<stream domain>.
    bool external_auth = false;
    bool external_jid_from_cn = false;
    xmpp::xml::Limits xml_limits{};
    std::chrono::milliseconds pre_auth_timeout{30'000};
    std::chrono::milliseconds idle_timeout{600'000};  // 0: none
    std::chrono::milliseconds auth_failure_delay{1'000};
    std::uint32_t max_auth_failures = 3;   // RFC 6120 §6.4.5: allow 2 to 5 retries
    std::size_t max_output_bytes = 2u << 20;  // a reader slower than this is disconnected
    std::size_t read_chunk_bytes = 16u << 10;
    std::uint32_t stanzas_per_second = 200;   // per session, with a burst of the same
    std::uint32_t max_resources_per_user = 16;
    // Per address, per shard (the kernel spreads one address's connections over the shards).
    // Fleets sit behind carrier NATs: many devices share one address, so the number open is
    // generous and what stops a flood is the rate of new ones (a token bucket, burst 10 s).
    std::uint32_t max_connections_per_ip = 10'000;
    std::uint32_t connection_rate_per_ip = 200;  // new connections per second; 0: no limit
    std::size_t max_connections = 0;             // per shard, all addresses; 0: no cap
    // XEP-0198 stream management: acks, and resumption of a stream whose connection was lost.
    bool stream_management = true;
    std::chrono::seconds resume_timeout{300};  // how long a lost session waits to be resumed
    std::size_t max_unacked_stanzas = 1000;    // sent, not acknowledged; one more ends the stream
    // XEP-0138 zlib stream compression, offered after authentication. Off by default: compressing
    // attacker-chosen content next to secrets inside TLS leaks through lengths (xmpp/zlib/README).
    bool compression = false;
    int compression_window_bits = 11;  // 9..15; memory, xmpp/zlib/README.md
    int compression_mem_level = 4;     // 1..9
    // XEP-0388 SASL2 with XEP-0386 Bind2, offered beside RFC 6120 SASL.
    bool sasl2 = true;
    // XEP-0484 FAST: reconnect with a token (one HMAC) instead of a password (PBKDF2).
    bool fast = true;
    std::size_t fast_max_tokens_per_account = 8;
    std::chrono::seconds fast_token_lifetime{14 * 24 * 3600};
};

}  // namespace starling::c2s
