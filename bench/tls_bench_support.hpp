// Shared by the in-memory TLS benchmarks (tls_handshake_bench, tls_record_bench): the broker's
// server context with a fresh self-signed ECDSA P-256 certificate for "localhost" (what
// starlingd makes on first start), and an OpenSSL client context that trusts anything.
#pragma once

#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "xmpp/tls/openssl_server.hpp"
#include "xmpp/tls/self_signed.hpp"

namespace starling::bench {

struct TlsBenchContexts {
    xmpp::tls::CertificateAndKey cert;  // its key feeds the handshake bench's public-key floor
    xmpp::tls::OpenSslServerContext server;
    SSL_CTX* client;

    explicit TlsBenchContexts(bool tls12)
        : cert(xmpp::tls::generate_self_signed(std::vector<std::string>{"localhost"})),
          server(config_of(cert), {}),
          client(SSL_CTX_new(TLS_client_method())) {
        SSL_CTX_set_verify(client, SSL_VERIFY_NONE, nullptr);
        if (tls12) SSL_CTX_set_max_proto_version(client, TLS1_2_VERSION);
    }
    ~TlsBenchContexts() { SSL_CTX_free(client); }
    TlsBenchContexts(const TlsBenchContexts&) = delete;
    TlsBenchContexts& operator=(const TlsBenchContexts&) = delete;

private:
    static xmpp::tls::TlsServerConfig config_of(const xmpp::tls::CertificateAndKey& ck) {
        xmpp::tls::TlsServerConfig config;
        xmpp::tls::TlsIdentity id;
        id.cert_chain = xmpp::tls::PemSource::text(ck.cert_pem);
        id.private_key = xmpp::tls::PemSource::text(ck.key_pem);
        config.identities.push_back(id);
        return config;
    }
};

}  // namespace starling::bench
