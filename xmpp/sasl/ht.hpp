// HT-SHA-256-*, the hashed-token SASL mechanisms of XEP-0484 (FAST) as described by
// draft-schmaus-kitten-sasl-ht: the client proves it holds a token the server issued earlier with
// one HMAC, instead of a PBKDF2 (SCRAM). Server side only. "NONE" has no channel binding (TLS is
// still required around it, and a per-token counter stops replays, see broker/src/c2s); "EXPR"
// and "ENDP" bind the proof to the TLS connection.
//
//   client -> server: authcid NUL HMAC-SHA-256(token, "Initiator" || cb-data)
//   server -> client: HMAC-SHA-256(token, "Responder" || cb-data)   (in SASL2 additional-data)
//
// The server never keeps the token. RFC 2104 §2: an HMAC key longer than the hash's block
// (64 bytes for SHA-256) is replaced by its hash before use, so for tokens of more than 64 bytes
// HMAC(token, m) == HMAC(SHA-256(token), m). The broker issues such tokens and stores only
// ht_key(token). (That key still logs in with this mechanism, as a SCRAM StoredKey would not:
// the store must be protected like the token lifetime says; see broker/src/c2s/README.md.)
//
// Pure functions: no state, no clock, no allocation beyond the returned strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "xmpp/result.hpp"

namespace xmpp::sasl {

inline constexpr std::string_view k_ht_sha_256_none = "HT-SHA-256-NONE";
// With channel binding (draft-schmaus-kitten-sasl-ht §3: the suffix names the binding type, whose
// data is the cb-data above): tls-exporter (RFC 9266) and tls-server-end-point (RFC 5929).
inline constexpr std::string_view k_ht_sha_256_expr = "HT-SHA-256-EXPR";
inline constexpr std::string_view k_ht_sha_256_endp = "HT-SHA-256-ENDP";
inline constexpr std::size_t k_ht_digest_bytes = 32;
// Tokens issued must be longer than SHA-256's block for ht_key() to stand in for them.
inline constexpr std::size_t k_ht_min_token_bytes = 65;
inline constexpr std::size_t k_ht_max_authcid_bytes = 1023;  // RFC 7622 §3.3.1 localpart

enum class HtError : std::uint8_t { malformed, empty_authcid, too_long };
std::string_view to_string(HtError e) noexcept;

// The client's message: views into the caller's buffer.
struct HtInitial {
    std::string_view authcid;
    std::string_view initiator_hash;  // k_ht_digest_bytes raw bytes
};
Result<HtInitial, HtError> parse_ht_initial(std::string_view message) noexcept;

// What the server stores for a token: SHA-256(token), 32 bytes.
std::string ht_key(std::string_view token);
// HMAC-SHA-256(key, "Initiator" || cb_data) and HMAC-SHA-256(key, "Responder" || cb_data).
std::string ht_initiator(std::string_view key, std::string_view cb_data);
std::string ht_responder(std::string_view key, std::string_view cb_data);
// The client message of a token (client side, tests and benchmarks).
std::string ht_client_initial(std::string_view authcid, std::string_view token, std::string_view cb_data);
// Compares `initiator_hash` with the expected HMAC under `key` in constant time.
bool ht_verify(std::string_view key, std::string_view cb_data, std::string_view initiator_hash) noexcept;

}  // namespace xmpp::sasl
