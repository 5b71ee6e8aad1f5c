// OpenSslServerContext and TicketKeys: start-up code (throws TlsConfigError), and the OpenSSL
// callbacks every session's handshake runs through (SNI, renegotiation, key log, tickets).
// Our own BIO: two byte queues are the "socket" (no BIO_s_mem: its buffer keeps its capacity
// forever; ours drop it when empty).
#include "xmpp/tls/openssl_server.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "xmpp/tls/openssl_detail.hpp"

namespace xmpp::tls {
namespace detail {

std::string openssl_message(unsigned long code) {
    if (code == 0) return {};
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

// What a certificate says about who it is (RFC 6125 identifiers, RFC 6120 §13.7.1.4 XmppAddr).
void certificate_names(X509* x, std::string& cn, std::vector<std::string>& dns, std::vector<std::string>& xmpp) {
    if (X509_NAME* subject = X509_get_subject_name(x)) {
        const int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (i >= 0) {
            const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
            cn.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<std::size_t>(ASN1_STRING_length(s)));
        }
    }
    auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
    if (sans == nullptr) return;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
        const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            const ASN1_STRING* s = g->d.dNSName;
            dns.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<std::size_t>(ASN1_STRING_length(s)));
        } else if (g->type == GEN_OTHERNAME && OBJ_obj2nid(g->d.otherName->type_id) == NID_XmppAddr &&
                   g->d.otherName->value != nullptr && g->d.otherName->value->type == V_ASN1_UTF8STRING) {
            const ASN1_STRING* s = g->d.otherName->value->value.utf8string;
            xmpp.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                              static_cast<std::size_t>(ASN1_STRING_length(s)));
        }
    }
    GENERAL_NAMES_free(sans);
}

// RFC 5929 §4.1 tls-server-end-point: the certificate's hash with its signature's digest;
// MD5, SHA-1 and "none" (Ed25519) become SHA-256.
std::vector<std::uint8_t> server_end_point_of(X509* x) {
    if (x == nullptr) return {};
    int md_nid = NID_undef;
    OBJ_find_sigid_algs(X509_get_signature_nid(x), &md_nid, nullptr);
    const EVP_MD* md = (md_nid == NID_undef || md_nid == NID_md5 || md_nid == NID_sha1)
                           ? EVP_sha256()
                           : EVP_get_digestbynid(md_nid);
    if (md == nullptr) md = EVP_sha256();
    std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (X509_digest(x, md, out.data(), &len) != 1) return {};
    out.resize(len);
    return out;
}

namespace {


// Cipher policy (README "Cipher policy"). TLS 1.3: all three AEAD suites of RFC 8446 §9.1 that
// matter, AES-128-GCM first, ChaCha20-Poly1305 before AES-256 for devices without AES
// instructions (RFC 7905's reasoning). TLS 1.2: ECDHE + AEAD only (RFC 7525 §4.2), the same
// order; no CBC, no RSA key transport, no static or finite-field DH.
constexpr const char* k_tls13_suites =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
constexpr const char* k_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
// Key exchange: X25519 first (RFC 7748), then the NIST curves device secure elements have.
constexpr const char* k_groups = "X25519:P-256:P-384";
// Handshake signatures: no SHA-1, no MD5 (RFC 9155).
constexpr const char* k_sigalgs =
    "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:"
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"
    "RSA+SHA256:RSA+SHA384:RSA+SHA512";
// Sessions resumed with one of our tickets belong to this application (and to this listener).
constexpr unsigned char k_sid_ctx[] = "starling-c2s";

// The first queued error, for a TlsConfigError message; the queue is cleared.
std::string take_errors() {
    const unsigned long code = ERR_peek_error();
    ERR_clear_error();
    return code != 0 ? openssl_message(code) : std::string("unknown OpenSSL error");
}

void check(int ok, std::string_view what) {
    if (ok != 1) throw TlsConfigError(std::string(what) + ": " + take_errors());
}

std::string describe(const PemSource& src) {
    return src.kind == PemSource::Kind::file ? "file " + src.value : std::string("PEM text");
}

char lower_char(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower_char(c);
    return out;
}

struct BioDeleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// A BIO reading a PemSource: the file, or the text in memory.
BioPtr open_pem(const PemSource& src, std::string_view what) {
    BIO* b = nullptr;
    switch (src.kind) {
    case PemSource::Kind::none:
        throw TlsConfigError(std::string(what) + ": nothing given");
    case PemSource::Kind::file:
        b = BIO_new_file(src.value.c_str(), "r");
        break;
    case PemSource::Kind::text:
        b = BIO_new_mem_buf(src.value.data(), static_cast<int>(src.value.size()));
        break;
    }
    if (b == nullptr) {
        throw TlsConfigError(std::string(what) + ": cannot read " + describe(src) + ": " + take_errors());
    }
    return BioPtr(b);
}

// Every certificate in the source, in order; at least one.
std::vector<X509*> load_certs(const PemSource& src, std::string_view what) {
    BioPtr bio = open_pem(src, what);
    std::vector<X509*> out;
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.push_back(x);
    // The loop ends on "no start line" at the end of the input: expected, not an error.
    const unsigned long last = ERR_peek_last_error();
    const bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
    if (out.empty() || (last != 0 && !clean_end)) {
        for (X509* x : out) X509_free(x);
        throw TlsConfigError(std::string(what) + ": cannot load certificates from " + describe(src) + ": " +
                             (out.empty() ? std::string("no certificate found") : take_errors()));
    }
    ERR_clear_error();
    return out;
}

int password_cb(char* buf, int size, int, void* userdata) {
    const auto* pwd = static_cast<const std::string*>(userdata);
    if (pwd == nullptr || pwd->empty() || static_cast<int>(pwd->size()) > size) return 0;
    std::memcpy(buf, pwd->data(), pwd->size());
    return static_cast<int>(pwd->size());
}

EVP_PKEY* load_key(const PemSource& src, const std::string& password, std::string_view what) {
    BioPtr bio = open_pem(src, what);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, password_cb, const_cast<std::string*>(&password));
    if (key == nullptr) {
        throw TlsConfigError(std::string(what) + ": cannot load private key from " + describe(src) + ": " +
                             take_errors());
    }
    return key;
}

// The BIO: OpenSSL writes records into `out` and reads what receive_ciphertext() queued.
int bio_write(BIO* b, const char* data, int len) {
    BIO_clear_retry_flags(b);
    auto* s = static_cast<OpenSslSessionImpl*>(BIO_get_data(b));
    if (s == nullptr || len < 0) return -1;
    try {
        s->out.insert(s->out.end(), data, data + len);
    } catch (const std::bad_alloc&) {
        return -1;
    }
    return len;
}

int bio_read(BIO* b, char* data, int len) {
    BIO_clear_retry_flags(b);
    auto* s = static_cast<OpenSslSessionImpl*>(BIO_get_data(b));
    if (s == nullptr || len <= 0) return 0;
    const std::size_t n = std::min(static_cast<std::size_t>(len), s->pending_in());
    if (n == 0) {
        BIO_set_retry_read(b);  // "would block": the caller brings more ciphertext later
        return -1;
    }
    std::memcpy(data, s->in.data() + s->in_pos, n);
    s->in_pos += n;
    if (s->in_pos == s->in.size()) {
        s->in.clear();
        s->in_pos = 0;
    }
    return static_cast<int>(n);
}

long bio_ctrl(BIO*, int cmd, long, void*) {
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // nothing buffered inside the BIO itself
}

// SNI (RFC 6066 §3): record the name, switch to the identity that serves it. Unknown or absent
// names keep the default identity; the XMPP layer answers <host-unknown/> if it cares.
int servername_cb(SSL* ssl, int*, void* arg) {
    const auto* ctx = static_cast<const OpenSslContextImpl*>(arg);
    OpenSslSessionImpl* s = session_of(ssl);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (s == nullptr || name == nullptr) return SSL_TLSEXT_ERR_OK;
    const std::size_t len = std::strlen(name);
    if (len == 0 || len > 255) return SSL_TLSEXT_ERR_OK;  // RFC 1035 §2.3.4: at most 255 octets
    s->sni.assign(name, len);
    for (char& c : s->sni) c = lower_char(c);
    const OpenSslContextImpl::Identity* id = ctx->find(s->sni);
    if (id == nullptr) return SSL_TLSEXT_ERR_OK;
    s->sni_known = true;
    if (id != &ctx->identities.front()) SSL_set_SSL_CTX(ssl, id->ctx.get());
    return SSL_TLSEXT_ERR_OK;
}

// Every ClientHello passes here, including one sent after the handshake: that is a
// client-initiated renegotiation (TLS 1.2), refused with a fatal alert (RFC 7525 §3.5: a DoS
// lever XMPP never needs). SSL_OP_NO_RENEGOTIATION would only answer a warning and go on.
int client_hello_cb(SSL* ssl, int* alert, void*) {
    OpenSslSessionImpl* s = session_of(ssl);
    if (s != nullptr && s->handshake_done) {
        s->why = "client-initiated renegotiation refused";
        *alert = SSL_AD_NO_RENEGOTIATION;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

// OpenSSL may also turn a renegotiating ClientHello away itself with a warning alert and go on
// (its record layer does so when renegotiation is off); a peer that tried is closed all the
// same: the alert we write is the sign.
void info_cb(const SSL* ssl, int where, int ret) {
    if ((where & SSL_CB_WRITE_ALERT) == 0 || (ret & 0xff) != SSL_AD_NO_RENEGOTIATION) return;
    if (OpenSslSessionImpl* s = session_of(const_cast<SSL*>(ssl))) s->why = "client-initiated renegotiation refused";
}

// TLS 1.3 traffic secrets for our record layer (the key-log callback is OpenSSL's only way to
// hand them out). Kept in the session only until the handshake ends; never written anywhere.
void keylog_cb(const SSL* ssl, const char* line) {
    OpenSslSessionImpl* s = session_of(const_cast<SSL*>(ssl));
    if (s == nullptr || s->handshake_done) return;
    const std::string_view l(line);
    const bool client = l.starts_with("CLIENT_TRAFFIC_SECRET_0 ");
    const bool server = l.starts_with("SERVER_TRAFFIC_SECRET_0 ");
    if (!client && !server) return;
    const auto space = l.rfind(' ');
    const std::string_view hex = l.substr(space + 1);
    if (hex.size() > 96 || hex.size() % 2 != 0) return;
    if (!s->secrets) {
        s->secrets.reset(new (std::nothrow) OpenSslSessionImpl::Secrets);
        if (!s->secrets) return;
    }
    auto& dst = client ? s->secrets->client : s->secrets->server;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < hex.size() / 2; ++i) {
        const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return;
        dst[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    (client ? s->secrets->client_len : s->secrets->server_len) = hex.size() / 2;
}

// Stateless tickets sealed with our shared, rotated keys (instead of OpenSSL's per-SSL_CTX
// random key, which no other context shares and which never rotates).
int ticket_key_cb(SSL* ssl, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                  EVP_MAC_CTX* mac, int enc) {
    const auto* ctx = static_cast<const OpenSslContextImpl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
    if (ctx == nullptr || !ctx->tickets) return enc ? -1 : 0;
    TicketKeys::Key key;
    int result = 1;
    if (enc) {
        key = ctx->tickets->current();
        std::memcpy(key_name, key.name.data(), key.name.size());
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    } else {
        auto found = ctx->tickets->find(std::span<const std::uint8_t, 16>(key_name, 16));
        if (!found) return 0;  // unknown or retired key: full handshake
        key = found->first;
        // 2: issue a fresh ticket. For a ticket sealed with the previous key, and on every TLS 1.3
        // resumption: RFC 8446 §C.4 tells clients not to use a ticket twice (OpenSSL's client
        // does not), and OpenSSL's server sends none after a resumed 1.3 handshake unless told,
        // so without it every other reconnect of such a device was a full handshake.
        result = (found->second && SSL_version(ssl) != TLS1_3_VERSION) ? 1 : 2;
    }
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(mac, params) != 1) result = -1;
    if (result > 0) {
        const int ok = enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv)
                           : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv);
        if (ok != 1) result = -1;
    }
    OPENSSL_cleanse(&key, sizeof key);
    return result;
}

void configure(SSL_CTX* c, OpenSslContextImpl& impl, const OpenSslServerOptions& opts) {
    check(SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION), "TLS minimum version");
    check(SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION), "TLS maximum version");
    check(SSL_CTX_set_ciphersuites(c, k_tls13_suites), "TLS 1.3 cipher suites");
    check(SSL_CTX_set_cipher_list(c, k_tls12_ciphers), "TLS 1.2 cipher suites");
    check(SSL_CTX_set1_groups_list(c, k_groups), "TLS groups");
    check(SSL_CTX_set1_sigalgs_list(c, k_sigalgs), "TLS signature algorithms");
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                               SSL_OP_SINGLE_ECDH_USE);
    // Record buffers exist only while a record is in flight: a parked session holds none.
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    // No server-side session cache: a million devices would be a million cached sessions.
    // Resumption is by stateless ticket only.
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    check(SSL_CTX_set_session_id_context(c, k_sid_ctx, sizeof k_sid_ctx - 1), "TLS session id context");
    if (opts.session_tickets) {
        SSL_CTX_clear_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 1);  // one per handshake: a device reconnects with one
        SSL_CTX_set_timeout(c, static_cast<long>(opts.ticket_lifetime_s));
        check(SSL_CTX_set_tlsext_ticket_key_evp_cb(c, ticket_key_cb) == 1 ? 1 : 0, "TLS ticket callback");
    } else {
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 0);
    }
    SSL_CTX_set_app_data(c, &impl);
    SSL_CTX_set_tlsext_servername_callback(c, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(c, &impl);
    SSL_CTX_set_client_hello_cb(c, client_hello_cb, nullptr);
    SSL_CTX_set_info_callback(c, info_cb);
    SSL_CTX_set_keylog_callback(c, keylog_cb);
}

void configure_client_auth(SSL_CTX* c, const TlsServerConfig& config) {
    if (config.client_auth == ClientAuth::none) {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
        return;
    }
    std::vector<X509*> cas = load_certs(config.client_ca, "TLS client CA");
    X509_STORE* store = SSL_CTX_get_cert_store(c);
    bool ok = true;
    for (X509* x : cas) {
        ok = ok && X509_STORE_add_cert(store, x) == 1;
        // Named in the CertificateRequest, so a device with several certificates picks ours.
        ok = ok && SSL_CTX_add_client_CA(c, x) == 1;
        X509_free(x);
    }
    if (!ok) throw TlsConfigError("TLS client CA: " + take_errors());
    if (!config.client_crl.empty()) {
        BioPtr bio = open_pem(config.client_crl, "TLS client CRL");
        std::size_t n = 0;
        while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
            ok = ok && X509_STORE_add_crl(store, crl) == 1;
            X509_CRL_free(crl);
            ++n;
        }
        const unsigned long last = ERR_peek_last_error();
        const bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
        if (n == 0 || !ok || (last != 0 && !clean_end)) {
            throw TlsConfigError("TLS client CRL: cannot load CRLs from " + describe(config.client_crl) + ": " +
                                 (n == 0 ? std::string("no CRL found") : take_errors()));
        }
        ERR_clear_error();
        // The leaf only: device CAs are usually one level; an intermediate's own revocation is
        // handled by removing it from client_ca.
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    SSL_CTX_set_verify(c, config.client_auth == ClientAuth::required
                              ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                              : SSL_VERIFY_PEER,
                       nullptr);
}

// Loads one identity into its own SSL_CTX; returns the names it serves.
std::vector<std::string> load_identity(SSL_CTX* c, const TlsIdentity& source, std::string_view what) {
    std::vector<X509*> chain = load_certs(source.cert_chain, what);
    std::vector<std::string> names;
    bool ok = SSL_CTX_use_certificate(c, chain.front()) == 1;
    for (std::size_t i = 1; ok && i < chain.size(); ++i) ok = SSL_CTX_add1_chain_cert(c, chain[i]) == 1;
    if (ok) {
        if (!source.names.empty()) {
            for (const auto& n : source.names) names.push_back(lower(n));
        } else {
            std::string cn;
            std::vector<std::string> dns, xmpp;
            certificate_names(chain.front(), cn, dns, xmpp);
            for (const auto& n : dns) names.push_back(lower(n));
            if (names.empty() && !cn.empty()) names.push_back(lower(cn));
        }
    }
    const std::size_t chain_size = chain.size();
    for (X509* x : chain) X509_free(x);
    if (!ok) throw TlsConfigError(std::string(what) + ": certificate refused: " + take_errors());
    EVP_PKEY* key = load_key(source.private_key, source.key_password, what);
    ok = SSL_CTX_use_PrivateKey(c, key) == 1;
    EVP_PKEY_free(key);
    if (!ok || SSL_CTX_check_private_key(c) != 1) {
        ERR_clear_error();
        throw TlsConfigError(std::string(what) + ": private key (" + describe(source.private_key) +
                             ") does not match the certificate (" + describe(source.cert_chain) + ")");
    }
    // The chain we send, built once here instead of on every handshake. Given a leaf alone,
    // OpenSSL 3.0 completes it from the context's store at each Certificate message (a fresh
    // X509_STORE_CTX and a chain search per handshake); SSL_CTX_build_cert_chain does the same
    // search now (same store: the client CAs are loaded before us), and NO_AUTO_CHAIN keeps
    // the handshake from searching again. A chain given in the file is sent as given, as before.
    if (chain_size == 1 &&
        SSL_CTX_build_cert_chain(c, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR | SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        throw TlsConfigError(std::string(what) + ": cannot build the certificate chain: " + take_errors());
    }
    SSL_CTX_set_mode(c, SSL_MODE_NO_AUTO_CHAIN);
    return names;
}

}  // namespace
}  // namespace detail

using detail::OpenSslContextImpl;

// ---- TicketKeys ------------------------------------------------------------------------------

namespace {
TicketKeys::Key random_key() {
    TicketKeys::Key k;
    if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
        RAND_bytes(k.aes.data(), static_cast<int>(k.aes.size())) != 1 ||
        RAND_bytes(k.hmac.data(), static_cast<int>(k.hmac.size())) != 1) {
        throw TlsConfigError("session ticket keys: the random generator failed: " + detail::take_errors());
    }
    return k;
}
}  // namespace

TicketKeys::TicketKeys() : _current(random_key()) {}

TicketKeys::~TicketKeys() {
    OPENSSL_cleanse(&_current, sizeof _current);
    if (_previous) OPENSSL_cleanse(&*_previous, sizeof *_previous);
}

void TicketKeys::rotate() {
    Key fresh = random_key();
    std::lock_guard lock(_mutex);
    if (_previous) OPENSSL_cleanse(&*_previous, sizeof *_previous);
    _previous = _current;
    _current = fresh;
    OPENSSL_cleanse(&fresh, sizeof fresh);
    ++_rotations;
}

TicketKeys::Key TicketKeys::current() const {
    std::lock_guard lock(_mutex);
    return _current;
}

std::optional<std::pair<TicketKeys::Key, bool>> TicketKeys::find(std::span<const std::uint8_t, 16> name) const {
    std::lock_guard lock(_mutex);
    if (std::equal(name.begin(), name.end(), _current.name.begin())) return std::pair{_current, true};
    if (_previous && std::equal(name.begin(), name.end(), _previous->name.begin())) {
        return std::pair{*_previous, false};
    }
    return std::nullopt;
}

std::uint64_t TicketKeys::rotations() const {
    std::lock_guard lock(_mutex);
    return _rotations;
}

// ---- OpenSslServerContext --------------------------------------------------------------------

OpenSslServerContext::OpenSslServerContext(const TlsServerConfig& config, const OpenSslServerOptions& options) {
    using namespace detail;
    if (config.identities.empty()) throw TlsConfigError("TLS server: no certificate configured");
    auto impl = std::make_shared<OpenSslContextImpl>();
    impl->own_record_layer = options.own_record_layer;
    if (options.session_tickets) {
        impl->tickets = options.ticket_keys ? options.ticket_keys : std::make_shared<TicketKeys>();
    }
    impl->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "starling-queues");
    if (impl->bio_method == nullptr || BIO_meth_set_write(impl->bio_method, bio_write) != 1 ||
        BIO_meth_set_read(impl->bio_method, bio_read) != 1 || BIO_meth_set_ctrl(impl->bio_method, bio_ctrl) != 1) {
        throw TlsConfigError("TLS server: cannot make the BIO method: " + take_errors());
    }
    for (std::size_t i = 0; i < config.identities.size(); ++i) {
        const std::string what = "TLS identity #" + std::to_string(i);
        SslCtxPtr c(SSL_CTX_new(TLS_server_method()));
        if (!c) throw TlsConfigError(what + ": " + take_errors());
        configure(c.get(), *impl, options);
        configure_client_auth(c.get(), config);
        auto names = load_identity(c.get(), config.identities[i], what);
        auto end_point = server_end_point_of(SSL_CTX_get0_certificate(c.get()));
        impl->identities.push_back({std::move(c), std::move(names), std::move(end_point)});
    }
    for (const auto& id : impl->identities) {
        // First identity listed wins a name: the order in the config file is the priority.
        for (const auto& n : id.names) impl->by_name.emplace(n, &id);
    }
    _impl = std::move(impl);
}

std::vector<std::string> OpenSslServerContext::names() const {
    std::vector<std::string> out;
    for (const auto& id : _impl->identities) out.insert(out.end(), id.names.begin(), id.names.end());
    return out;
}

const std::shared_ptr<TicketKeys>& OpenSslServerContext::ticket_keys() const noexcept { return _impl->tickets; }

}  // namespace xmpp::tls
