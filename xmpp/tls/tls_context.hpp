// TLS configuration shared by many connections: certificates, keys, trust anchors, cipher
// suites. Built once at start-up (or on SIGHUP reload), immutable afterwards.
//
// Lifecycle: construct from a config (throws TlsConfigError on any problem: this is start-up
// code, CONVENTIONS §3); copies are cheap and share one immutable state, which every TlsSession
// made from it keeps alive. Lives on: any shard. The state is read-only after construction except
// the CTR-DRBG, which mbedTLS guards with its own mutex (MBEDTLS_THREADING_C); a shard that wants
// no shared lock at all builds its own context from the same config.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xmpp::tls {

// Any failure while building a context or a certificate: unreadable file, bad PEM, key that
// does not match its certificate, no identity. The message says what and which file.
class TlsConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Where a PEM blob comes from: a file path or the PEM text itself.
struct PemSource {
    enum class Kind : std::uint8_t { none, file, text };
    Kind kind = Kind::none;
    std::string value;  // the path or the PEM text

    static PemSource file(std::string path) { return {Kind::file, std::move(path)}; }
    static PemSource text(std::string pem) { return {Kind::text, std::move(pem)}; }
    bool empty() const noexcept { return kind == Kind::none; }
};

// One certificate chain (leaf first) with its private key, and the server names it answers for.
struct TlsIdentity {
    PemSource cert_chain;
    PemSource private_key;
    std::string key_password;  // empty: unencrypted key
    // Names (SNI) this identity serves, "*.example.com" allowed. Empty: the leaf's dNSName SANs,
    // or its subject CN when it has none.
    std::vector<std::string> names;
};

// Whether the server asks clients for a certificate (device-certificate auth, later SASL
// EXTERNAL, XEP-0178).
enum class ClientAuth : std::uint8_t { none, optional, required };

struct TlsServerConfig {
    // identities[0] is the default: used when the client sends no SNI or an unknown name
    // (RFC 6066 §3 lets the server go on; the XMPP layer then answers <host-unknown/>).
    std::vector<TlsIdentity> identities;
    ClientAuth client_auth = ClientAuth::none;
    PemSource client_ca;  // trust anchors for client certificates; required unless `none`
    // PEM CRLs of those CAs (OpenSSL engine only): a revoked leaf fails the handshake. None: no
    // revocation check. When set, each leaf's issuer must have a CRL in here (OpenSSL's
    // X509_V_FLAG_CRL_CHECK), so a CA without one fails closed.
    PemSource client_crl;
};

inline constexpr std::string_view k_system_ca_file = "/etc/ssl/certs/ca-certificates.crt";

struct TlsClientConfig {
    // Verify the server's chain against `ca`. Off only for tests and explicit operator opt-out.
    bool verify_peer = true;
    // Check the server's certificate names the domain we connect to (RFC 6125 DNS-ID;
    // RFC 6120 §13.7.2.1). Only meaningful with verify_peer.
    bool verify_hostname = true;
    PemSource ca = PemSource::file(std::string(k_system_ca_file));
    std::optional<TlsIdentity> identity;  // client certificate, for device auth
    // Public-key pinning (like curl --pinnedpubkey): the SHA-256 of the server certificate's
    // SubjectPublicKeyInfo (DER). When set it replaces the chain and name checks: the handshake
    // fails (certificate-untrusted) in the verify callback unless the leaf's key matches.
    std::optional<std::array<std::uint8_t, 32>> pinned_spki_sha256;
};

namespace detail {
struct ServerContextImpl;
struct ClientContextImpl;
}  // namespace detail

// The server side: one per set of domains served on a listener.
class TlsServerContext {
public:
    explicit TlsServerContext(const TlsServerConfig& config);  // throws TlsConfigError

    // Every name served, lower-case, in identity order (for logs and checks at start-up).
    std::vector<std::string> names() const;

    const std::shared_ptr<const detail::ServerContextImpl>& impl() const noexcept { return _impl; }

private:
    std::shared_ptr<const detail::ServerContextImpl> _impl;
};

// The client side (agent, s2s outgoing): trust anchors and verification policy.
class TlsClientContext {
public:
    explicit TlsClientContext(const TlsClientConfig& config);  // throws TlsConfigError

    const std::shared_ptr<const detail::ClientContextImpl>& impl() const noexcept { return _impl; }

private:
    std::shared_ptr<const detail::ClientContextImpl> _impl;
};

}  // namespace xmpp::tls
