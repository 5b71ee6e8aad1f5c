// SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), with or without channel binding (the
// -PLUS variants, RFC 5802 §6: tls-exporter RFC 9266, tls-server-end-point RFC 5929): client and
// server as pure state machines. The channel-binding data comes from the caller (the TLS layer). Messages in, messages out: no I/O, no clock, no randomness
// (the caller supplies each side's nonce), no base64 of the XMPP layer (RFC 6120 §6.4.2 wraps
// these messages in base64 once more; that is the session's job).
#pragma once

#include "xmpp/result.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace xmpp::sasl {

enum class ScramAlgorithm : std::uint8_t { sha_1, sha_256 };

// "SCRAM-SHA-1" / "SCRAM-SHA-256".
std::string_view to_string(ScramAlgorithm a) noexcept;
// Bytes of the hash output: 20 or 32.
std::size_t digest_size(ScramAlgorithm a) noexcept;

enum class ScramError : std::uint8_t {
    // RFC 5802 §7 server-error-value: what "e=" says in a server-final-message.
    invalid_encoding,
    extensions_not_supported,
    invalid_proof,
    channel_bindings_dont_match,
    server_does_support_channel_binding,
    channel_binding_not_supported,
    unsupported_channel_binding_type,
    unknown_user,
    invalid_username_encoding,
    no_resources,
    other_error,
    // Local conditions. On the server they are sent as the RFC value server_error_value() gives.
    message_too_long,         // over Options::max_message
    nonce_mismatch,           // r= is not the nonce this exchange agreed on
    bad_nonce,                // empty, or holds ',' or a non-printable byte
    iteration_count_too_low,  // i= below Options::min_iterations (client) or k_min_iterations
    iteration_count_too_high, // i= above Options::max_iterations: a cheap denial of service
    bad_server_signature,     // v= does not prove the server knows the password
    bad_password,             // SASLprep refused it, or it is empty
    bad_credentials,          // stored credentials of the wrong algorithm or size
    out_of_order,             // a step called twice, or after a failure
    crypto_failure,           // mbedTLS failed (allocation)
};

// For logs and metric labels: the RFC spelling for the RFC conditions.
std::string_view to_string(ScramError e) noexcept;
// The RFC 5802 §7 server-error-value to send for `e` ("other-error" for local conditions that
// have no RFC value).
std::string_view server_error_value(ScramError e) noexcept;
// "e=<value>": the server-final-message announcing a failure.
std::string server_final_error(ScramError e);

// Channel-binding types (RFC 5056 §2.1 names, IANA registry). tls-unique is not offered: it is
// undefined for TLS 1.3 (RFC 9266 §2) and weak for 1.2 without extended master secret.
enum class ChannelBindingType : std::uint8_t { tls_exporter, tls_server_end_point };
std::string_view to_string(ChannelBindingType t) noexcept;  // "tls-exporter" / "tls-server-end-point"
std::optional<ChannelBindingType> parse_channel_binding_type(std::string_view name) noexcept;

// The channel-binding data of one TLS connection, per type; empty: that type is not available
// on this connection (e.g. tls-exporter on TLS 1.2, see c2s/README.md).
struct ChannelBindings {
    std::string tls_exporter;          // RFC 9266: 32 bytes of "EXPORTER-Channel-Binding"
    std::string tls_server_end_point;  // RFC 5929 §4.1: hash of the server's certificate
    const std::string& data(ChannelBindingType t) const noexcept {
        return t == ChannelBindingType::tls_exporter ? tls_exporter : tls_server_end_point;
    }
    bool has(ChannelBindingType t) const noexcept { return !data(t).empty(); }
    bool has_any() const noexcept { return !tls_exporter.empty() || !tls_server_end_point.empty(); }
};

constexpr std::uint32_t k_min_iterations = 4096;      // RFC 7677 §4: at least 4096
constexpr std::uint32_t k_max_iterations = 1'000'000; // beyond this a login is a DoS
constexpr std::size_t k_max_message = 4096;

// What the server stores instead of a password (RFC 5802 §3). Byte strings, not base64.
struct ScramCredentials {
    ScramAlgorithm algorithm = ScramAlgorithm::sha_256;
    std::string salt;
    std::uint32_t iterations = 0;
    std::string stored_key;  // H(ClientKey)
    std::string server_key;  // HMAC(SaltedPassword, "Server Key")
};

// At account creation or password change: SASLprep (stored-string rules) then PBKDF2.
// Refuses an empty salt and iterations outside [k_min_iterations, k_max_iterations].
Result<ScramCredentials, ScramError> derive_credentials(ScramAlgorithm algorithm, std::string_view password,
                                                        std::string_view salt,
                                                        std::uint32_t iterations) noexcept;

// derive_credentials(algorithm, password_i, salt_i, iterations) for i = 1, 2, with the two
// PBKDF2 chains interleaved: the same results, ~1.5x the rate on one core (bulk provisioning).
struct CredentialsPair {
    Result<ScramCredentials, ScramError> first = Unexpected(ScramError::other_error);
    Result<ScramCredentials, ScramError> second = Unexpected(ScramError::other_error);
};
CredentialsPair derive_credentials_pair(ScramAlgorithm algorithm, std::string_view password1, std::string_view salt1,
                                        std::string_view password2, std::string_view salt2,
                                        std::uint32_t iterations) noexcept;

// For PLAIN against SCRAM-only storage (DESIGN §6): recomputes StoredKey from a plaintext
// password and compares in constant time. invalid_proof when it does not match.
Result<void, ScramError> verify_password(const ScramCredentials& credentials, std::string_view password) noexcept;

// "=" -> "=3D", "," -> "=2C" (RFC 5802 §5.1 saslname), and back; unescape fails on any other
// '=' sequence.
std::string escape_saslname(std::string_view name);
Result<std::string, ScramError> unescape_saslname(std::string_view name) noexcept;

// Server side of one exchange. Lives on: the shard of the connection that authenticates.
//   receive_client_first -> (caller looks up username()) -> server_first -> receive_client_final
// The first error wins: after a failure every step returns it again.
class ScramServer {
public:
    struct Options {
        std::size_t max_message = k_max_message;
        // Whether the -PLUS variants were offered. A client that says 'y' (it could bind but
        // thinks we cannot) is then the victim of a downgrade (RFC 5802 §6).
        bool channel_binding_offered = false;
        // The client chose the -PLUS mechanism: its gs2 flag must be "p=<type>" with a type
        // present in `bindings`, and c= must carry that type's data after the gs2 header.
        bool plus = false;
        ChannelBindings bindings{};
    };

    explicit ScramServer(ScramAlgorithm algorithm) noexcept : ScramServer(algorithm, Options{}) {}
    ScramServer(ScramAlgorithm algorithm, Options options) noexcept;
    ~ScramServer();
    ScramServer(const ScramServer&) = delete;
    ScramServer& operator=(const ScramServer&) = delete;

    // Parses the client-first-message. On success username() and authzid() are set,
    // unescaped but not otherwise prepared: the caller normalises them as a JID localpart and
    // a JID.
    Result<void, ScramError> receive_client_first(std::string_view message) noexcept;
    std::string_view username() const noexcept { return _username; }
    std::string_view authzid() const noexcept { return _authzid; }
    // With -PLUS, the type the client bound to (after receive_client_first).
    std::optional<ChannelBindingType> channel_binding() const noexcept { return _cb_type; }

    // The server-first-message. `server_nonce`: fresh random printable bytes from the caller
    // (at least 16 recommended, no ','). For an unknown user, pass decoy credentials derived
    // from a server secret and the username, so that the exchange fails only at the proof and
    // does not reveal whether the account exists (RFC 5802 §9).
    Result<std::string, ScramError> server_first(const ScramCredentials& credentials,
                                                 std::string_view server_nonce) noexcept;

    // Verifies the client-final-message; on success returns the server-final-message "v=...".
    // On failure, send server_final_error(error) or the XMPP <failure/> the session prefers.
    Result<std::string, ScramError> receive_client_final(std::string_view message) noexcept;

    bool is_authenticated() const noexcept { return _state == State::done; }

private:
    enum class State : std::uint8_t { initial, have_client_first, sent_server_first, done, failed };
    Unexpected<ScramError> fail(ScramError e) noexcept;

    ScramAlgorithm _algorithm;
    Options _options;
    State _state = State::initial;
    ScramError _error = ScramError::other_error;
    std::string _gs2_header;
    std::optional<ChannelBindingType> _cb_type;
    std::string _client_first_bare;
    std::string _server_first;
    std::string _nonce;  // client nonce, then client + server nonce
    std::string _username;
    std::string _authzid;
    std::string _stored_key;
    std::string _server_key;
};

// Client side of one exchange. Lives on: the connection's thread (agent) or shard.
//   client_first -> receive_server_first (returns client-final) -> receive_server_final
class ScramClient {
public:
    struct Options {
        std::uint32_t min_iterations = k_min_iterations;  // refuse a server that is too cheap
        std::uint32_t max_iterations = k_max_iterations;  // refuse a server that makes us burn CPU
        std::size_t max_message = k_max_message;
        // -PLUS: bind to this type with this data (gs2 flag "p=<type>"). Unset: no binding,
        // flag "y" if `supports_binding` (we could, the server offered no -PLUS), else "n".
        std::optional<ChannelBindingType> channel_binding{};
        std::string channel_binding_data{};
        bool supports_binding = false;
    };

    explicit ScramClient(ScramAlgorithm algorithm) noexcept : ScramClient(algorithm, Options{}) {}
    ScramClient(ScramAlgorithm algorithm, Options options) noexcept;
    ~ScramClient();  // wipes the password and keys
    ScramClient(const ScramClient&) = delete;
    ScramClient& operator=(const ScramClient&) = delete;

    // The client-first-message "n,[a=authzid],n=user,r=nonce". The password is SASLprep'd
    // (query rules) and held until receive_server_first(). `client_nonce`: fresh random
    // printable bytes from the caller, no ','.
    Result<std::string, ScramError> client_first(std::string_view username, std::string_view password,
                                                 std::string_view client_nonce,
                                                 std::string_view authzid = {}) noexcept;
    // Checks the server-first-message (nonce prefix, salt, iteration bounds) and returns the
    // client-final-message with the proof.
    Result<std::string, ScramError> receive_server_first(std::string_view message) noexcept;
    // Checks "v=" in constant time, or reports the server's "e=" as a ScramError.
    Result<void, ScramError> receive_server_final(std::string_view message) noexcept;

    bool is_authenticated() const noexcept { return _state == State::done; }

private:
    enum class State : std::uint8_t { initial, sent_client_first, sent_client_final, done, failed };
    Unexpected<ScramError> fail(ScramError e) noexcept;

    ScramAlgorithm _algorithm;
    Options _options;
    State _state = State::initial;
    ScramError _error = ScramError::other_error;
    std::string _gs2_header;
    std::string _client_first_bare;
    std::string _nonce;
    std::string _password;
    std::string _server_signature;
};

}  // namespace xmpp::sasl
