// Start-up code: builds mbedTLS configurations. Throws TlsConfigError; never on a hot path.
#include "xmpp/tls/tls_context.hpp"

#include <algorithm>
#include <cstring>

#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#include "xmpp/tls/mbedtls_detail.hpp"

#if !defined(MBEDTLS_SSL_PROTO_TLS1_2) || !defined(MBEDTLS_SSL_SERVER_NAME_INDICATION) || \
    !defined(MBEDTLS_GCM_C) || !defined(MBEDTLS_CHACHAPOLY_C) || !defined(MBEDTLS_ECDH_C) ||  \
    !defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
#error "xmpp/tls needs mbedTLS with TLS 1.2, SNI, GCM, ChaCha20-Poly1305, ECDH, kept peer certs"
#endif

namespace xmpp::tls::detail {
namespace {

// TLS 1.2 AEAD suites with forward secrecy only (RFC 7525 §4.2, RFC 8996 retires 1.0/1.1).
// Server preference order (mbedTLS servers pick by their own list): AES-128-GCM first for
// hardware AES, ChaCha20-Poly1305 before AES-256 for small devices without it (RFC 7905).
// mbedTLS skips suites whose authentication does not match the certificate's key, so ECDSA
// and RSA identities can share the list. Static storage: the config keeps the pointer.
constexpr int k_cipher_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

// Key exchange groups: X25519 first (RFC 8422 §5.1.1 / RFC 7748), then the NIST curves that
// device secure elements implement.
constexpr mbedtls_ecp_group_id k_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

// Signature hashes for the handshake (TLS 1.2 signature_algorithms): no SHA-1, no MD5.
constexpr int k_sig_hashes[] = {
    MBEDTLS_MD_SHA256,
    MBEDTLS_MD_SHA384,
    MBEDTLS_MD_SHA512,
    MBEDTLS_MD_NONE,
};

void check(int rc, std::string_view what) {
    if (rc != 0) {
        throw TlsConfigError(std::string(what) + ": " + mbedtls_message(rc));
    }
}

std::string describe(const PemSource& src) {
    return src.kind == PemSource::Kind::file ? "file " + src.value : std::string("PEM text");
}

void load_certs(mbedtls_x509_crt& crt, const PemSource& src, std::string_view what) {
    int rc = 0;
    switch (src.kind) {
    case PemSource::Kind::none:
        throw TlsConfigError(std::string(what) + ": no certificate given");
    case PemSource::Kind::file:
        rc = mbedtls_x509_crt_parse_file(&crt, src.value.c_str());
        break;
    case PemSource::Kind::text:
        // PEM input must include the terminating NUL in its length (mbedTLS API rule).
        rc = mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char*>(src.value.c_str()),
                                    src.value.size() + 1);
        break;
    }
    // A positive rc counts certificates that failed to parse while others succeeded: for a
    // chain we configure, a half-read file is an error too.
    if (rc != 0) {
        throw TlsConfigError(std::string(what) + ": cannot load certificates from " +
                             describe(src) + ": " +
                             (rc > 0 ? std::to_string(rc) + " certificate(s) unparsable"
                                     : mbedtls_message(rc)));
    }
}

void load_key(mbedtls_pk_context& pk, const PemSource& src, const std::string& password,
              std::string_view what) {
    int rc = 0;
    const char* pwd = password.empty() ? nullptr : password.c_str();
    switch (src.kind) {
    case PemSource::Kind::none:
        throw TlsConfigError(std::string(what) + ": no private key given");
    case PemSource::Kind::file:
        rc = mbedtls_pk_parse_keyfile(&pk, src.value.c_str(), pwd);
        break;
    case PemSource::Kind::text:
        rc = mbedtls_pk_parse_key(&pk, reinterpret_cast<const unsigned char*>(src.value.c_str()),
                                  src.value.size() + 1,
                                  reinterpret_cast<const unsigned char*>(pwd),
                                  password.size());
        break;
    }
    if (rc != 0) {
        throw TlsConfigError(std::string(what) + ": cannot load private key from " +
                             describe(src) + ": " + mbedtls_message(rc));
    }
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// TLS 1.2 only, AEAD + ECDHE only, no renegotiation, no compression (mbedTLS 2.28 has none
// compiled by default; CRIME), no session tickets or cache (XEP-0198 resumes at the XMPP layer).
void apply_common(mbedtls_ssl_config& conf, Rng& rng) {
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &rng.drbg);
    // TLS 1.3 is experimental in mbedTLS 2.28 and not compiled in Debian's build: pin 1.2.
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&conf, k_cipher_suites);
    mbedtls_ssl_conf_curves(&conf, k_curves);
    mbedtls_ssl_conf_sig_hashes(&conf, k_sig_hashes);
    // Renegotiation is a DoS lever and a source of bugs (RFC 7525 §3.5); XMPP never needs it.
    mbedtls_ssl_conf_renegotiation(&conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    // RFC 5746 is still required from peers: refuse legacy peers that lack it.
    mbedtls_ssl_conf_legacy_renegotiation(&conf, MBEDTLS_SSL_LEGACY_BREAK_HANDSHAKE);
}

// Client side: the hostname check belongs to mbedtls_ssl_set_hostname(), which also sends SNI.
// When the operator turns the check off but keeps chain verification, keep SNI and drop only
// the name-mismatch flag on the leaf.
int ignore_hostname(void*, mbedtls_x509_crt*, int depth, std::uint32_t* flags) noexcept {
    if (depth == 0) *flags &= ~static_cast<std::uint32_t>(MBEDTLS_X509_BADCERT_CN_MISMATCH);
    return 0;
}

// Public-key pinning: the leaf (depth 0) passes if the SHA-256 of its SubjectPublicKeyInfo is the
// pin, fails (not trusted) otherwise; the rest of the chain is not judged (no trust anchors).
int check_pinned_key(void* ctx, mbedtls_x509_crt* crt, int depth, std::uint32_t* flags) noexcept {
    if (depth != 0) {
        *flags = 0;
        return 0;
    }
    const auto& pin = *static_cast<const ClientContextImpl*>(ctx)->pinned_spki_sha256;
    std::array<std::uint8_t, 32> got{};
    if (mbedtls_sha256_ret(crt->pk_raw.p, crt->pk_raw.len, got.data(), 0) != 0) {
        *flags = MBEDTLS_X509_BADCERT_NOT_TRUSTED;
        return 0;
    }
    std::uint8_t diff = 0;
    for (std::size_t i = 0; i < got.size(); ++i) diff |= static_cast<std::uint8_t>(got[i] ^ pin[i]);
    *flags = diff == 0 ? 0 : MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    return 0;
}

}  // namespace

std::string mbedtls_message(int code) {
    char buf[160];
    mbedtls_strerror(code, buf, sizeof buf);
    return std::string(buf) + " (-0x" + [&] {
        static constexpr char hex[] = "0123456789abcdef";
        std::string h;
        unsigned v = static_cast<unsigned>(code < 0 ? -code : code);
        do { h.insert(h.begin(), hex[v & 15]); v >>= 4; } while (v != 0);
        return h;
    }() + ")";
}

Rng::Rng(std::string_view personalization) {
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    int rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                   reinterpret_cast<const unsigned char*>(personalization.data()),
                                   personalization.size());
    if (rc != 0) {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        throw TlsConfigError("seeding the TLS random generator failed: " + mbedtls_message(rc));
    }
}

Rng::~Rng() {
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
}

Identity::Identity(const TlsIdentity& source, std::string_view what) {
    mbedtls_x509_crt_init(&chain);
    mbedtls_pk_init(&key);
    try {
        load_certs(chain, source.cert_chain, what);
        load_key(key, source.private_key, source.key_password, what);
        if (int rc = mbedtls_pk_check_pair(&chain.pk, &key); rc != 0) {
            throw TlsConfigError(std::string(what) + ": private key (" +
                                 describe(source.private_key) +
                                 ") does not match the certificate (" +
                                 describe(source.cert_chain) + ")");
        }
        if (!source.names.empty()) {
            for (const auto& n : source.names) names.push_back(lower(n));
        } else {
            CertificateNames cn = certificate_names(chain);
            for (const auto& n : cn.dns_names) names.push_back(lower(n));
            if (names.empty() && !cn.subject_cn.empty()) names.push_back(lower(cn.subject_cn));
        }
    } catch (...) {
        mbedtls_pk_free(&key);
        mbedtls_x509_crt_free(&chain);
        throw;
    }
}

Identity::~Identity() {
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&chain);
}

ServerContextImpl::ServerContextImpl() {
    mbedtls_x509_crt_init(&client_ca);
    mbedtls_ssl_config_init(&conf);
}

ServerContextImpl::~ServerContextImpl() {
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&client_ca);
}

const Identity* ServerContextImpl::find(std::string_view name) const noexcept {
    if (auto it = by_name.find(name); it != by_name.end()) return it->second;
    // RFC 6125 §6.4.3: a wildcard stands for exactly one left-most label.
    auto dot = name.find('.');
    if (dot == std::string_view::npos || dot == 0) return nullptr;
    char buf[256];
    std::string_view parent = name.substr(dot);  // ".example.com"
    if (parent.size() + 1 > sizeof buf) return nullptr;
    buf[0] = '*';
    parent.copy(buf + 1, parent.size());
    if (auto it = by_name.find(std::string_view(buf, parent.size() + 1)); it != by_name.end()) {
        return it->second;
    }
    return nullptr;
}

ClientContextImpl::ClientContextImpl() {
    mbedtls_x509_crt_init(&ca);
    mbedtls_ssl_config_init(&conf);
}

ClientContextImpl::~ClientContextImpl() {
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca);
}

CertificateNames certificate_names(const mbedtls_x509_crt& crt) {
    CertificateNames out;
    for (const mbedtls_x509_name* n = &crt.subject; n != nullptr; n = n->next) {
        if (n->oid.p != nullptr && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
            out.subject_cn.assign(reinterpret_cast<const char*>(n->val.p), n->val.len);
        }
    }
    // mbedTLS keeps each SAN entry with its context tag and the bytes after its length.
    static constexpr unsigned char k_xmpp_addr_oid[] = {0x2B, 0x06, 0x01, 0x05,
                                                        0x05, 0x07, 0x08, 0x05};  // 1.3.6.1.5.5.7.8.5
    for (const mbedtls_x509_sequence* s = &crt.subject_alt_names; s != nullptr; s = s->next) {
        if (s->buf.p == nullptr) continue;
        const int tag = s->buf.tag;
        if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) {
            out.dns_names.emplace_back(reinterpret_cast<const char*>(s->buf.p), s->buf.len);
        } else if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED |
                           MBEDTLS_X509_SAN_OTHER_NAME)) {
            // RFC 6120 §13.7.1.4: otherName { id-on-xmppAddr, [0] EXPLICIT UTF8String }.
            unsigned char* p = s->buf.p;
            const unsigned char* end = p + s->buf.len;
            std::size_t len = 0;
            if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_OID) != 0) continue;
            const bool is_xmpp = len == sizeof k_xmpp_addr_oid &&
                                 std::equal(p, p + len, k_xmpp_addr_oid);
            p += len;
            if (!is_xmpp) continue;
            if (mbedtls_asn1_get_tag(&p, end, &len,
                                     MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED) != 0)
                continue;
            if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_UTF8_STRING) != 0) continue;
            out.xmpp_addrs.emplace_back(reinterpret_cast<const char*>(p), len);
        }
    }
    return out;
}

}  // namespace xmpp::tls::detail

namespace xmpp::tls {

TlsServerContext::TlsServerContext(const TlsServerConfig& config) {
    using namespace detail;
    if (config.identities.empty()) {
        throw TlsConfigError("TLS server: no certificate configured");
    }
    auto impl = std::make_shared<ServerContextImpl>();
    for (std::size_t i = 0; i < config.identities.size(); ++i) {
        auto id = std::make_unique<Identity>(config.identities[i],
                                             "TLS identity #" + std::to_string(i));
        for (const auto& n : id->names) {
            // First identity listed wins a name: the order in the config file is the priority.
            impl->by_name.emplace(n, id.get());
        }
        impl->identities.push_back(std::move(id));
    }

    mbedtls_ssl_config& conf = impl->conf;
    check(mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT),
          "TLS server defaults");
    apply_common(conf, impl->rng);
    Identity& def = *impl->identities.front();
    check(mbedtls_ssl_conf_own_cert(&conf, &def.chain, &def.key),
          "TLS server certificate");
    mbedtls_ssl_conf_sni(&conf, server_name_callback, impl.get());

    switch (config.client_auth) {
    case ClientAuth::none:
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
        break;
    case ClientAuth::optional:
    case ClientAuth::required:
        load_certs(impl->client_ca, config.client_ca, "TLS client CA");
        mbedtls_ssl_conf_ca_chain(&conf, &impl->client_ca, nullptr);
        mbedtls_ssl_conf_authmode(&conf, config.client_auth == ClientAuth::required
                                             ? MBEDTLS_SSL_VERIFY_REQUIRED
                                             : MBEDTLS_SSL_VERIFY_OPTIONAL);
        break;
    }
    _impl = std::move(impl);
}

std::vector<std::string> TlsServerContext::names() const {
    std::vector<std::string> out;
    for (const auto& id : _impl->identities) {
        out.insert(out.end(), id->names.begin(), id->names.end());
    }
    return out;
}

TlsClientContext::TlsClientContext(const TlsClientConfig& config) {
    using namespace detail;
    auto impl = std::make_shared<ClientContextImpl>();
    mbedtls_ssl_config& conf = impl->conf;
    check(mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT),
          "TLS client defaults");
    apply_common(conf, impl->rng);
    if (config.pinned_spki_sha256) {
        // No trust anchors: an empty chain satisfies mbedTLS's "CA required"; the callback decides.
        impl->pinned_spki_sha256 = config.pinned_spki_sha256;
        mbedtls_ssl_conf_ca_chain(&conf, &impl->ca, nullptr);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_verify(&conf, check_pinned_key, impl.get());
    } else if (config.verify_peer) {
        load_certs(impl->ca, config.ca, "TLS trust anchors");
        mbedtls_ssl_conf_ca_chain(&conf, &impl->ca, nullptr);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        if (!config.verify_hostname) mbedtls_ssl_conf_verify(&conf, ignore_hostname, nullptr);
    } else {
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    impl->verify_hostname = config.verify_peer && config.verify_hostname && !config.pinned_spki_sha256;
    if (config.identity) {
        impl->identity = std::make_unique<Identity>(*config.identity, "TLS client identity");
        check(mbedtls_ssl_conf_own_cert(&conf, &impl->identity->chain, &impl->identity->key),
              "TLS client certificate");
    }
    _impl = std::move(impl);
}

}  // namespace xmpp::tls
