// The broker's TLS engine: OpenSSL 3 (libssl), server side only, TLS 1.3 and 1.2. Same shape
// as TlsServerContext / TlsSession (memory in, memory out, no I/O, Result<T, TlsError> on the
// hot path), so the c2s session drives either the same way. The mbedTLS engine
// (tls_session.hpp) stays the engine of clients: the edge agent, the load generator.
//
// Why a second engine (README "Engines"): Debian's mbedTLS 2.28 has no TLS 1.3 server and
// pins two ~16.7 KiB record buffers per connection for its whole life. OpenSSL runs the
// handshake; then our own record layer (record_layer.hpp) carries the connection, because
// OpenSSL 3.0 keeps ~16 KB per connection even with its buffers released.
//
// Lifecycle: OpenSslServerContext is built at start-up or on reload (throws TlsConfigError);
// copies share one immutable state that each session keeps alive, so a reload swaps the
// context for new connections while established ones finish on the old one. Lives on: any
// shard (SSL_CTX is safe to share between threads once configured). Session-ticket keys
// (TicketKeys) are shared by every shard and survive reloads; they take a mutex on each
// handshake that issues or reads a ticket, never per record.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/result.hpp"
#include "xmpp/tls/tls_context.hpp"
#include "xmpp/tls/tls_session.hpp"

namespace xmpp::tls {

// Keys for stateless session tickets (TLS 1.3 RFC 8446 §4.6.1, TLS 1.2 RFC 5077): the current
// key encrypts new tickets, the previous one still decrypts (a ticket sealed with it is
// accepted and replaced by a fresh one). rotate() drops the previous key, so a ticket lives
// at most two rotation periods. The owner calls rotate() on its schedule (the broker: a timer,
// tls.ticket_key_rotation_s). Thread-safe: shared by every shard's handshakes.
class TicketKeys {
public:
    struct Key {
        std::array<std::uint8_t, 16> name{};  // sent in the clear: picks the key on return
        std::array<std::uint8_t, 32> aes{};   // AES-256-CBC, the cipher OpenSSL's ticket format uses
        std::array<std::uint8_t, 32> hmac{};  // HMAC-SHA256 over the sealed ticket
    };

    TicketKeys();  // one fresh random key; throws TlsConfigError if the RNG fails
    ~TicketKeys();
    TicketKeys(const TicketKeys&) = delete;
    TicketKeys& operator=(const TicketKeys&) = delete;

    void rotate();  // throws TlsConfigError if the RNG fails (keeps the keys it had)

    Key current() const;
    // The key with this name, and whether it is the current one.
    std::optional<std::pair<Key, bool>> find(std::span<const std::uint8_t, 16> name) const;
    std::uint64_t rotations() const;

private:
    mutable std::mutex _mutex;
    Key _current;
    std::optional<Key> _previous;
    std::uint64_t _rotations = 0;
};

struct OpenSslServerOptions {
    // Stateless session tickets (no server-side cache). Off: every reconnect is a full handshake.
    bool session_tickets = true;
    // Shared with every context made for the same listener (and across reloads); null: the
    // context makes its own.
    std::shared_ptr<TicketKeys> ticket_keys;
    // Ticket lifetime hint and the age past which OpenSSL refuses to resume (seconds).
    // Should match the rotation period: a key decrypts for two periods at most anyway.
    std::uint32_t ticket_lifetime_s = 3600;
    // Once the handshake is over, protect records ourselves (record_layer.hpp) and free
    // OpenSSL's SSL object: an idle session then holds keys and counters, not ~15 KB of
    // OpenSSL state. Off: OpenSSL's record layer for the whole connection (for comparison).
    bool own_record_layer = true;
};

namespace detail {
struct OpenSslContextImpl;
struct OpenSslSessionImpl;
}  // namespace detail

class OpenSslServerContext {
public:
    explicit OpenSslServerContext(const TlsServerConfig& config,
                                  const OpenSslServerOptions& options = {});  // throws TlsConfigError

    // Every name served, lower-case, in identity order.
    std::vector<std::string> names() const;
    // The ticket keys this context seals with (null when tickets are off).
    const std::shared_ptr<TicketKeys>& ticket_keys() const noexcept;

    const std::shared_ptr<const detail::OpenSslContextImpl>& impl() const noexcept { return _impl; }

private:
    std::shared_ptr<const detail::OpenSslContextImpl> _impl;
};

// One server-side connection. The same calls, contracts and bounds as TlsSession (see
// tls_session.hpp): after every call that can produce output, send pending_ciphertext() and
// consume_ciphertext(). Movable; not thread-safe. Lives on: the shard that owns the connection
// (it moves with the socket on home-shard migration).
//
// Memory: during the handshake OpenSSL allocates its record buffers per read and write and
// frees them when empty (SSL_MODE_RELEASE_BUFFERS). Once the handshake is over (with
// own_record_layer, the default) our record layer takes the connection and the SSL object is
// freed: a parked session holds keys, IVs, sequence numbers and what channel binding will need
// (~1.1 KB in all). Our queues give their memory back when empty.
class OpenSslServerSession {
public:
    static Result<OpenSslServerSession, TlsError> make(const OpenSslServerContext& ctx,
                                                       const TlsLimits& limits = {}) noexcept;

    OpenSslServerSession(OpenSslServerSession&&) noexcept;
    OpenSslServerSession& operator=(OpenSslServerSession&&) noexcept;
    ~OpenSslServerSession();

    Result<HandshakeStatus, TlsError> handshake() noexcept;
    bool is_handshake_done() const noexcept;

    Result<void, TlsError> receive_ciphertext(std::span<const char> data) noexcept;
    std::size_t ciphertext_space() const noexcept;

    Result<std::size_t, TlsError> read_plaintext(std::span<char> out) noexcept;
    Result<std::size_t, TlsError> write_plaintext(std::span<const char> in) noexcept;
    Result<std::size_t, TlsError> write_plaintext(std::span<const std::span<const char>> pieces) noexcept;

    std::span<const char> pending_ciphertext() const noexcept;
    void consume_ciphertext(std::size_t n) noexcept;
    std::size_t drain_ciphertext(std::string& out);
    std::size_t drain_ciphertext(std::vector<char>& out);
    // write_plaintext() and drain_ciphertext(wire) in one: the records are sealed straight into
    // `wire` (after whatever ciphertext was pending), with no copy of the plaintext or of the
    // ciphertext on the way. The same bound and results as write_plaintext(). Throws only
    // std::bad_alloc from growing `wire` (then nothing of that record is taken).
    Result<std::size_t, TlsError> seal_into(std::span<const char> in, std::string& wire);
    // Gives back the receive queue's memory if nothing is waiting in it. A busy connection keeps
    // it between reads (no allocation per read); call when parking the connection.
    void release_idle_buffers() noexcept;

    Result<void, TlsError> close() noexcept;
    bool is_peer_closed() const noexcept;

    std::string_view server_name() const noexcept;
    bool is_server_name_known() const noexcept;

    // After the handshake: e.g. "TLS_AES_128_GCM_SHA256" and "TLSv1.3".
    std::string_view cipher_suite() const noexcept;
    std::string_view protocol_version() const noexcept;
    // Whether this handshake resumed a session from a ticket (no certificate, no key exchange
    // signature).
    bool is_resumed() const noexcept;
    // Whether our own record layer carries the connection (OpenSSL's SSL object freed).
    bool uses_own_record_layer() const noexcept;

    // For channel binding and certificate auth later (SCRAM-PLUS, SASL EXTERNAL):
    // the client's leaf certificate, if it sent one (allocates: once per connection);
    std::optional<PeerCertificate> peer_certificate() const;
    // Frees the client certificate kept past the handshake (once authentication no longer needs
    // it: a parsed X509 is a few KB per idle device). peer_certificate() is then empty. Only
    // with our own record layer; otherwise OpenSSL's SSL object owns it and this does nothing.
    void release_peer_certificate() noexcept;
    // RFC 5705 / RFC 8446 §7.5 exporter; `tls-exporter` (RFC 9266) is label
    // "EXPORTER-Channel-Binding", empty context, 32 bytes. Fails before the handshake ends.
    // With own_record_layer only that one value is kept past the handshake (other labels fail).
    Result<void, TlsError> export_keying_material(std::span<std::uint8_t> out, std::string_view label,
                                                  std::span<const std::uint8_t> context = {}) const noexcept;
    // RFC 5929 §4.1 `tls-server-end-point`: the hash of the certificate this session served,
    // with its signature's hash (SHA-256 for MD5, SHA-1 or none). Empty before the handshake.
    std::vector<std::uint8_t> server_end_point() const;

    TlsError error() const noexcept;
    unsigned long openssl_code() const noexcept;  // ERR_get_error() value behind error(), 0 if none
    std::string error_detail() const;             // its text, for logs

private:
    explicit OpenSslServerSession(std::unique_ptr<detail::OpenSslSessionImpl> impl) noexcept;
    std::unique_ptr<detail::OpenSslSessionImpl> _impl;
};

}  // namespace xmpp::tls
