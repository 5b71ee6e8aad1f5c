// Command line of starling-loadgen. Parsing throws UsageError (start-up only); main prints it
// and exits 2.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace starling::loadgen {

// `registration` is the `register` scenario (a C++ keyword).
enum class Scenario : std::uint8_t { connect, chat, registration, pubsub, presence, reconnect };
// reconnect: every login a full TLS handshake, every login resumed (after one full login per
// device), or a storm (all bound, links cut, all come back).
enum class ReconnectMode : std::uint8_t { full, resume, storm };
// reconnect: RFC 6120 SASL + restart + bind, or XEP-0388 SASL2 + Bind2 (+ XEP-0484 FAST when
// offered) where the server offers SASL2 (else the RFC 6120 way).
enum class ReconnectAuth : std::uint8_t { legacy, sasl2 };
// Transport under XMPP: plain TCP, STARTTLS (RFC 6120 §5), or TLS from the first byte
// (XEP-0368).
enum class TlsMode : std::uint8_t { none, starttls, direct };
// SASL mechanism to use. `automatic` picks PLAIN when offered (cheapest for the generator),
// then SCRAM-SHA-256, then SCRAM-SHA-1.
enum class Mechanism : std::uint8_t { automatic, plain, scram_sha_1, scram_sha_256 };

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Options {
    Scenario scenario = Scenario::connect;
    std::string host = "127.0.0.1";
    std::uint16_t port = 5222;
    std::string domain = "localhost";
    std::uint32_t users = 100;
    std::uint32_t first_user = 1;     // accounts first_user .. first_user + users - 1
    std::string prefix = "user";
    std::string password = "pass";
    std::string resource = "lg";
    Mechanism mechanism = Mechanism::automatic;
    unsigned threads = 1;
    double rate = 0;                  // connect: sessions/s; chat: messages/s; 0 = unpaced
    double connect_rate = 0;          // chat: sessions/s while logging in; 0 = unpaced
    std::uint32_t connect_window = 64;  // logins in flight per thread when unpaced
    double duration_s = 10;           // chat: how long to send
    double hold_s = 5;                // connect: how long to hold the sessions idle
    double drain_s = 5;               // chat: wait this long at most for messages in flight
    std::uint32_t window = 8;         // chat: outstanding messages per session (0 = unbounded)
    std::uint32_t body_bytes = 0;     // chat: pad bodies to at least this many bytes
    bool spread_sources = true;       // bind to 127.0.0.1-254 when the host is on 127/8
    long server_pid = 0;
    std::string json_file;
    double timeout_s = 300;           // the whole run, hard bound
    std::uint64_t max_loss = 0;       // lost + duplicated + errors tolerated before exit 1
    bool progress = true;
    // XEP-0198: enable stream management (with resumption) after binding, and answer the
    // server's <r/> (its memory per session with SM on is what this measures).
    bool sm = false;
    // TLS.
    TlsMode tls = TlsMode::none;
    bool tls_verify = false;          // off: benchmark servers have self-signed certificates
    std::string tls_ca;               // trust anchors with --tls-verify (default: the system's)
    // pubsub.
    std::string pubsub_service;       // default pubsub.DOMAIN
    std::uint32_t nodes = 10;
    std::uint32_t subscribers_per_node = 10;
    std::uint32_t publishers = 0;     // 0: one per node
    std::string node_prefix = "lg";
    // presence.
    std::uint32_t neighbours = 4;     // K: user i is subscribed both ways with i+1..i+K mod N
    bool skip_subscribe = false;      // rosters provisioned out of band
    // reconnect.
    ReconnectMode reconnect_mode = ReconnectMode::resume;
    ReconnectAuth reconnect_auth = ReconnectAuth::legacy;
    std::string tls_version = "any";  // "1.2", "1.3" or "any" (the OpenSSL client's range)
    bool tls_psk_only = false;        // TLS 1.3 resumption: also offer psk_ke (beside psk_dhe_ke)
    bool storm_cut_server = false;    // storm: wait for the server to drop the links
    std::string ready_file;           // storm: written when all devices are bound
    std::uint32_t storm_retry_ms = 100;  // storm: pause after a failed reconnect attempt
};

// Throws UsageError. Returns false when --help was asked (usage already printed).
bool parse_options(int argc, char** argv, Options& out);
const char* usage_text() noexcept;
const char* to_string(Scenario s) noexcept;
const char* to_string(Mechanism m) noexcept;
const char* to_string(TlsMode m) noexcept;

}  // namespace starling::loadgen
