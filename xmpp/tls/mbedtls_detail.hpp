// Internal to xmpp/tls: the mbedTLS objects behind TlsServerContext / TlsClientContext, and the
// helpers the .cpp files share. Not for use outside xmpp/tls (it drags in mbedTLS headers).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "xmpp/tls/tls_context.hpp"

namespace xmpp::tls::detail {

// Entropy + CTR-DRBG, owned by one context. Not movable: mbedTLS keeps pointers into it.
struct Rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;

    explicit Rng(std::string_view personalization);  // throws TlsConfigError
    ~Rng();
    Rng(const Rng&) = delete;
    Rng& operator=(const Rng&) = delete;
};

// A parsed certificate chain and its key. Not movable: the ssl config points into it.
struct Identity {
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    std::vector<std::string> names;  // lower-case

    Identity(const TlsIdentity& source, std::string_view what);  // throws TlsConfigError
    ~Identity();
    Identity(const Identity&) = delete;
    Identity& operator=(const Identity&) = delete;
};

struct ServerContextImpl {
    // The DRBG is the one piece mutated after set-up (through the f_rng pointer): mutable.
    mutable Rng rng{"starling tls server"};
    std::vector<std::unique_ptr<Identity>> identities;
    std::map<std::string, const Identity*, std::less<>> by_name;  // exact and "*.x" keys
    mbedtls_x509_crt client_ca;
    mbedtls_ssl_config conf;

    ServerContextImpl();
    ~ServerContextImpl();
    ServerContextImpl(const ServerContextImpl&) = delete;
    ServerContextImpl& operator=(const ServerContextImpl&) = delete;

    // SNI lookup: exact name, then the wildcard of its parent ("*.example.com"). `name` must be
    // lower-case. nullptr when unknown.
    const Identity* find(std::string_view name) const noexcept;
};

struct ClientContextImpl {
    mutable Rng rng{"starling tls client"};
    std::unique_ptr<Identity> identity;
    mbedtls_x509_crt ca;
    mbedtls_ssl_config conf;
    bool verify_hostname = true;
    std::optional<std::array<std::uint8_t, 32>> pinned_spki_sha256;

    ClientContextImpl();
    ~ClientContextImpl();
    ClientContextImpl(const ClientContextImpl&) = delete;
    ClientContextImpl& operator=(const ClientContextImpl&) = delete;
};

// What a certificate says about who it is (RFC 6125 identifiers, RFC 6120 §13.7.1.4 XmppAddr).
struct CertificateNames {
    std::string subject_cn;
    std::vector<std::string> dns_names;
    std::vector<std::string> xmpp_addrs;
};
CertificateNames certificate_names(const mbedtls_x509_crt& crt);

// mbedTLS's text for an error code, for TlsConfigError messages and logs.
std::string mbedtls_message(int code);

// Defined in tls_session.cpp: records the client's SNI in the session and picks the identity.
int server_name_callback(void* server_impl, mbedtls_ssl_context* ssl, const unsigned char* name,
                         std::size_t len) noexcept;

// ASCII lower-case, the only case-folding DNS names need (RFC 4343).
inline char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace xmpp::tls::detail
