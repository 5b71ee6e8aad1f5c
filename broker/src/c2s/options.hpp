// What a client-to-server session needs to know, filled from the configuration at start-up and
// immutable afterwards (shared read-only by every shard).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "xmpp/xml/tokenizer.hpp"

namespace starling::c2s {

struct C2sOptions {
    std::vector<std::string> domains{"localhost"};
    // RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate unless the operator says otherwise.
    bool require_tls = true;
    // Let clients authenticate (even with PLAIN) without TLS: benchmarks on loopback only.
    bool allow_plaintext = false;
    bool offer_scram_sha1 = true;
    bool offer_plain = true;  // only ever offered under TLS unless allow_plaintext
    xmpp::xml::Limits xml_limits{};
    std::chrono::milliseconds pre_auth_timeout{30'000};
    std::chrono::milliseconds idle_timeout{600'000};  // 0: none
    std::chrono::milliseconds auth_failure_delay{1'000};
    std::uint32_t max_auth_failures = 3;   // RFC 6120 §6.4.5: allow 2 to 5 retries
    std::uint32_t scram_iterations = 4096;
    std::size_t max_output_bytes = 1u << 20;  // a reader slower than this is disconnected
    std::size_t read_chunk_bytes = 16u << 10;
    std::uint32_t stanzas_per_second = 200;   // per session, with a burst of the same
    std::uint32_t max_resources_per_user = 16;
    std::uint32_t max_connections_per_ip = 64;  // per shard
    // Modules (issue 4): register/, vcard/, ping/.
    bool registration_open = false;                     // XEP-0077 before authentication
    std::uint32_t registrations_per_ip_per_minute = 5;  // per shard; 0: no limit
    bool inband_password_change = true;                 // XEP-0077 §3.3
    bool inband_cancel = true;                          // XEP-0077 §3.2
    std::size_t vcard_max_bytes = 64 * 1024;            // XEP-0054, serialized
    std::uint32_t offline_max_messages = 1000;          // XEP-0160, per user
    std::uint32_t blocklist_max_items = 1000;           // XEP-0191, per user
    std::uint32_t mam_retention_days = 365;             // XEP-0313; 0: forever
    std::uint32_t mam_max_messages_per_user = 10'000;   // XEP-0313; 0: unbounded
    // Optional modules installed on every shard ([modules] in the configuration).
    struct Enabled {
        bool offline = true, blocking = true, carbons = true, mam = true, vcard = true, version = true;
    } enabled;
    std::chrono::milliseconds server_ping_idle{60'000};    // XEP-0199 §4.1; 0: no server pings
    std::chrono::milliseconds server_ping_timeout{30'000};
    std::string version = "0.1.0";  // answered to XEP-0092 queries
    std::string server_secret;  // derives decoy SCRAM salts for unknown users (RFC 5802 §9)

    bool serves(std::string_view domain) const {
        for (const auto& d : domains) {
            if (d == domain) return true;
        }
        return false;
    }
};

}  // namespace starling::c2s
