// One TLS connection as a memory-to-memory engine: ciphertext in, plaintext out, plaintext
// in, ciphertext out. No sockets, no I/O, no clock: the caller (the c2s session over Asio, the
// agent, a test) moves the bytes. Used for STARTTLS (RFC 6120 §5) and direct TLS (XEP-0368).
//
// Lifecycle: made from a TlsServerContext or TlsClientContext (whose state it keeps alive),
// driven by handshake() until done, then read_plaintext()/write_plaintext(), ended by close().
// Movable (a moved-from session may only be destroyed or assigned to); not thread-safe. Lives on: the shard that owns the connection (it moves with the
// socket on home-shard migration, as a whole, between two calls).
//
// Caller's loop, after every call that can produce output (handshake, read, write, close),
// and even after an error (the fatal alert is in there): send pending_ciphertext(), then
// consume_ciphertext(sent).
//
// Memory: mbedTLS holds one input and one output record buffer (~16.7 KiB each). On top of
// that the session buffers at most `max_ciphertext_in` of received ciphertext (the caller
// reads at most ciphertext_space() from its socket: that is the back-pressure) and stops
// accepting plaintext once `max_ciphertext_out` is waiting to be sent (overshoot: one record).
// Decrypted plaintext is never buffered here: read_plaintext() decrypts into the caller's span,
// so at most the one record mbedTLS is holding waits beyond what the caller pulled.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/result.hpp"
#include "xmpp/tls/tls_context.hpp"

namespace xmpp::tls {

// Why a session failed. One per session: the first error wins and sticks.
enum class TlsError : std::uint8_t {
    none,
    out_of_memory,          // mbedTLS could not allocate its record buffers
    input_overflow,         // receive_ciphertext() past max_ciphertext_in (not sticky)
    bad_record,             // not TLS, corrupt record, MAC failure: garbage or tampering
    handshake_failed,       // any other handshake protocol failure
    no_shared_cipher,       // peer offers none of our ECDHE+AEAD suites or groups
    protocol_version,       // peer cannot do TLS 1.2
    certificate_untrusted,  // chain does not end at a trust anchor (or is malformed)
    certificate_expired,    // outside its validity period
    hostname_mismatch,      // RFC 6125: no DNS-ID matches the name we asked for
    certificate_required,   // server demanded a client certificate and got none
    peer_alert,             // peer sent a fatal alert
    closed,                 // write after close() or after the peer's close_notify
    internal,               // anything else from mbedTLS; mbedtls_code() has the detail
};

// Stable kebab-case name, for logs and metric labels.
std::string_view to_string(TlsError e) noexcept;

enum class HandshakeStatus : std::uint8_t {
    want_read,   // needs more ciphertext from the peer
    want_write,  // ciphertext is pending: send it, then call handshake() again
    done,
};

struct TlsLimits {
    std::size_t max_ciphertext_in = 64 * 1024;
    std::size_t max_ciphertext_out = 64 * 1024;
};

// The peer's leaf certificate, as far as identity goes (for device-certificate auth).
struct PeerCertificate {
    std::string subject_cn;
    std::vector<std::string> dns_names;   // subjectAltName dNSName
    std::vector<std::string> xmpp_addrs;  // subjectAltName otherName id-on-xmppAddr (RFC 6120 §13.7.1.4)
    std::array<std::uint8_t, 32> sha256{};  // of the DER, for pinning
    bool verified = false;                  // chain (and name, client side) verified
};

namespace detail {
struct SessionImpl;
}

class TlsSession {
public:
    static Result<TlsSession, TlsError> server(const TlsServerContext& ctx,
                                               const TlsLimits& limits = {}) noexcept;
    // `server_name` is sent as SNI and, if the context verifies hostnames, checked against the
    // certificate. For XMPP it is the domain part of the JID (RFC 6120 §13.7.2.1).
    static Result<TlsSession, TlsError> client(const TlsClientContext& ctx,
                                               std::string_view server_name,
                                               const TlsLimits& limits = {}) noexcept;

    TlsSession(TlsSession&&) noexcept;
    TlsSession& operator=(TlsSession&&) noexcept;
    ~TlsSession();

    // One step of the handshake; call after new ciphertext arrived. read/write also drive it.
    Result<HandshakeStatus, TlsError> handshake() noexcept;
    bool is_handshake_done() const noexcept;

    // Ciphertext from the socket. Fails with input_overflow (and takes nothing) past the cap.
    Result<void, TlsError> receive_ciphertext(std::span<const char> data) noexcept;
    // How much receive_ciphertext() accepts now: read at most this much from the socket.
    std::size_t ciphertext_space() const noexcept;

    // Decrypts into `out` (e.g. straight into the XML tokenizer's prepare() span). Returns the
    // bytes written, 0 when nothing is available (more ciphertext needed, handshake still
    // running, or the peer closed: see is_peer_closed()).
    Result<std::size_t, TlsError> read_plaintext(std::span<char> out) noexcept;

    // Encrypts as much of `in` as the output cap allows, in records of up to 16 KiB, and
    // returns how much it took (0 before the handshake is done); the caller keeps the rest.
    // An error after some bytes were taken returns the count; the next call reports it.
    Result<std::size_t, TlsError> write_plaintext(std::span<const char> in) noexcept;
    // Output batching (DESIGN §3.5): the pieces are packed into as few records as possible
    // (one record per 16 KiB), not one per piece. Returns total bytes taken, counted across
    // the pieces in order.
    Result<std::size_t, TlsError> write_plaintext(std::span<const std::span<const char>> pieces) noexcept;

    // Ciphertext waiting to be sent; valid until the next non-const call.
    std::span<const char> pending_ciphertext() const noexcept;
    void consume_ciphertext(std::size_t n) noexcept;
    // Appends everything pending to `out` and consumes it. Returns bytes moved.
    std::size_t drain_ciphertext(std::string& out);
    std::size_t drain_ciphertext(std::vector<char>& out);

    // Queues close_notify (RFC 5246 §7.2.1). Further writes fail with `closed`.
    Result<void, TlsError> close() noexcept;
    bool is_peer_closed() const noexcept;

    // Server side: the name the client asked for with SNI, lower-case; empty if none.
    std::string_view server_name() const noexcept;
    // Server side: whether that name matched a configured identity (else the default served).
    bool is_server_name_known() const noexcept;

    // After the handshake: the peer's leaf certificate, if it sent one. Allocates (strings):
    // call once per connection, not per stanza.
    std::optional<PeerCertificate> peer_certificate() const;
    // After the handshake: e.g. "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256" and "TLSv1.2".
    std::string_view cipher_suite() const noexcept;
    std::string_view protocol_version() const noexcept;

    TlsError error() const noexcept;
    int mbedtls_code() const noexcept;  // the raw mbedTLS error behind error(), 0 if none
    std::string error_detail() const;   // mbedTLS's text for it, for logs

private:
    explicit TlsSession(std::unique_ptr<detail::SessionImpl> impl) noexcept;
    std::unique_ptr<detail::SessionImpl> _impl;
};

}  // namespace xmpp::tls
