// OpenSslServerContext / OpenSslServerSession: the broker's TLS engine over OpenSSL 3's libssl,
// with a BIO of our own whose two byte queues are the "socket" (no BIO_s_mem: its buffer keeps
// its capacity forever; ours drop it when empty).
#include "xmpp/tls/openssl_server.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <new>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "xmpp/tls/record_layer.hpp"

namespace xmpp::tls {
namespace detail {
namespace {

constexpr std::size_t k_max_record_payload = 16384;  // RFC 8446 §5.1, RFC 5246 §6.2.1: 2^14

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

std::string openssl_message(unsigned long code) {
    if (code == 0) return {};
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

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

// What a certificate says about who it is (RFC 6125 identifiers, RFC 6120 §13.7.1.4 XmppAddr).
void certificate_names(X509* x, std::string& cn, std::vector<std::string>& dns,
                       std::vector<std::string>& xmpp) {
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

}  // namespace

struct SslCtxDeleter {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

struct OpenSslContextImpl {
    struct Identity {
        SslCtxPtr ctx;  // identities[0]'s is the one every session starts on
        std::vector<std::string> names;
    };
    std::vector<Identity> identities;
    std::map<std::string, const Identity*, std::less<>> by_name;  // exact and "*.x" keys
    std::shared_ptr<TicketKeys> tickets;
    BIO_METHOD* bio_method = nullptr;
    bool own_record_layer = true;

    OpenSslContextImpl() = default;
    ~OpenSslContextImpl() {
        identities.clear();
        if (bio_method != nullptr) BIO_meth_free(bio_method);
    }
    OpenSslContextImpl(const OpenSslContextImpl&) = delete;
    OpenSslContextImpl& operator=(const OpenSslContextImpl&) = delete;

    // SNI lookup: exact name, then the wildcard of its parent (RFC 6125 §6.4.3: one label).
    const Identity* find(std::string_view name) const noexcept {
        if (auto it = by_name.find(name); it != by_name.end()) return it->second;
        const auto dot = name.find('.');
        if (dot == std::string_view::npos || dot == 0) return nullptr;
        char buf[256];
        const std::string_view parent = name.substr(dot);
        if (parent.size() + 1 > sizeof buf) return nullptr;
        buf[0] = '*';
        parent.copy(buf + 1, parent.size());
        if (auto it = by_name.find(std::string_view(buf, parent.size() + 1)); it != by_name.end()) {
            return it->second;
        }
        return nullptr;
    }
};

struct OpenSslSessionImpl {
    std::shared_ptr<const OpenSslContextImpl> ctx;
    SSL* ssl = nullptr;
    TlsLimits limits;

    std::vector<char> in;  // received ciphertext; [in_pos, end) not yet read by OpenSSL
    std::size_t in_pos = 0;
    std::vector<char> out;  // produced ciphertext; [out_pos, end) not yet sent
    std::size_t out_pos = 0;

    TlsError error = TlsError::none;
    unsigned long code = 0;
    std::string_view why;  // our own reason when OpenSSL has none (static text)
    bool handshake_done = false;
    bool closed = false;
    bool peer_closed = false;
    bool sni_known = false;
    std::string sni;  // lower-case; short names stay inside the string (no allocation)

    // TLS 1.3 traffic secrets, from the key-log callback during the handshake only.
    struct Secrets {
        std::array<std::uint8_t, 48> client{}, server{};
        std::size_t client_len = 0, server_len = 0;
        ~Secrets() { OPENSSL_cleanse(this, sizeof *this); }
    };
    std::unique_ptr<Secrets> secrets;

    // After the handshake, when our own record layer took over and the SSL object is gone:
    // what the accessors still need, taken from the SSL object before it went.
    struct Established {
        std::unique_ptr<RecordLayer> rl;
        const char* cipher = nullptr;   // static strings of libssl
        const char* version = nullptr;
        bool resumed = false;
        bool has_exporter = false;
        std::array<std::uint8_t, 32> exporter{};  // RFC 9266 tls-exporter
        std::vector<std::uint8_t> end_point;      // RFC 5929 tls-server-end-point
        X509* peer = nullptr;                     // the client's certificate, if any
        long verify = X509_V_OK;
        ~Established() {
            X509_free(peer);
            OPENSSL_cleanse(exporter.data(), exporter.size());
        }
    };
    std::unique_ptr<Established> est;
    std::string plain_left;  // decrypted by our record layer, not yet taken by the caller

    explicit OpenSslSessionImpl(const TlsLimits& l) noexcept : limits(l) {}
    ~OpenSslSessionImpl() { SSL_free(ssl); }  // frees the BIO too
    OpenSslSessionImpl(const OpenSslSessionImpl&) = delete;
    OpenSslSessionImpl& operator=(const OpenSslSessionImpl&) = delete;

    std::size_t pending_out() const noexcept { return out.size() - out_pos; }
    std::size_t pending_in() const noexcept { return in.size() - in_pos; }

    // Records the first failure (CONVENTIONS §3) and empties this thread's error queue, so
    // the next connection on the shard does not inherit it.
    TlsError fail(TlsError fallback) noexcept {
        if (error == TlsError::none) {
            code = ERR_peek_error();
            if (!why.empty()) error = TlsError::handshake_failed;  // refused by our own callback
            else error = code != 0 ? classify(code, fallback) : fallback;
        }
        ERR_clear_error();
        return error;
    }

    TlsError classify(unsigned long c, TlsError fallback) const noexcept {
        if (ERR_GET_LIB(c) != ERR_LIB_SSL) {
            return ERR_GET_REASON(c) == ERR_R_MALLOC_FAILURE ? TlsError::out_of_memory : fallback;
        }
        const int reason = ERR_GET_REASON(c);
        if (reason >= SSL_AD_REASON_OFFSET) return TlsError::peer_alert;  // the peer's fatal alert
        switch (reason) {
        case ERR_R_MALLOC_FAILURE:
            return TlsError::out_of_memory;
        case SSL_R_NO_SHARED_CIPHER:
        case SSL_R_NO_SHARED_GROUPS:
        case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
            return TlsError::no_shared_cipher;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_VERSION_TOO_HIGH:
            return TlsError::protocol_version;
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
        case SSL_R_PACKET_LENGTH_TOO_LONG:
        case SSL_R_RECORD_LENGTH_MISMATCH:
        case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
        case SSL_R_UNEXPECTED_MESSAGE:
        case SSL_R_UNEXPECTED_RECORD:
        case SSL_R_LENGTH_MISMATCH:
        case SSL_R_BAD_PACKET_LENGTH:
        case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
        case SSL_R_UNKNOWN_PROTOCOL:
            return TlsError::bad_record;
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return TlsError::certificate_required;
        case SSL_R_CERTIFICATE_VERIFY_FAILED: {
            const long v = SSL_get_verify_result(ssl);
            return (v == X509_V_ERR_CERT_HAS_EXPIRED || v == X509_V_ERR_CERT_NOT_YET_VALID)
                       ? TlsError::certificate_expired
                       : TlsError::certificate_untrusted;
        }
        default:
            return fallback;
        }
    }

    Result<HandshakeStatus, TlsError> step() noexcept {
        if (error != TlsError::none) return Unexpected(error);
        if (!handshake_done) {
            ERR_clear_error();
            const std::size_t out_before = out.size();
            const int rc = SSL_do_handshake(ssl);
            if (rc == 1) {
                handshake_done = true;
                detach(out_before);
            } else {
                const int e = SSL_get_error(ssl, rc);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    return Unexpected(fail(TlsError::handshake_failed));
                }
            }
        }
        if (handshake_done) return HandshakeStatus::done;
        return pending_out() != 0 ? HandshakeStatus::want_write : HandshakeStatus::want_read;
    }

    // Our own failure (no OpenSSL error behind it); the first one sticks.
    TlsError fail_own(TlsError e, std::string_view text) noexcept {
        if (error == TlsError::none) {
            error = e;
            why = text;
        }
        return error;
    }

    void detach(std::size_t out_before) noexcept;
    Result<std::size_t, TlsError> read_own(std::span<char> out) noexcept;

    Result<void, TlsError> write_all(const char* p, std::size_t n) noexcept {
        if (est) {
            if (!est->rl->seal(23, std::span<const char>(p, n), out)) {
                return Unexpected(fail_own(TlsError::out_of_memory, "cannot seal a record"));
            }
            return {};
        }
        ERR_clear_error();
        std::size_t written = 0;
        // Our BIO never blocks: SSL_write_ex takes everything or fails.
        if (SSL_write_ex(ssl, p, n, &written) != 1 || written != n) {
            return Unexpected(fail(TlsError::internal));
        }
        return {};
    }
};

namespace {

// An idle connection should not pin a burst's worth of buffer (DESIGN §5: a million sessions):
// an empty queue gives its memory back (one allocation per busy turn is the price).
constexpr std::size_t k_keep_capacity = 0;

void release_if_idle(std::vector<char>& v) noexcept {
    if (v.empty() && v.capacity() > k_keep_capacity) std::vector<char>().swap(v);
}

OpenSslSessionImpl* session_of(SSL* ssl) noexcept { return static_cast<OpenSslSessionImpl*>(SSL_get_app_data(ssl)); }

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
        result = found->second ? 1 : 2;  // 2: sealed with the previous key, issue a fresh ticket
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
        X509_free(x);
    }
    if (!ok) throw TlsConfigError("TLS client CA: " + take_errors());
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
    return names;
}

}  // namespace

// The handshake is over: move the connection onto our own record layer and free the SSL
// object (what an idle connection costs, DESIGN §5). Whatever we cannot take over (a suite
// outside our policy, bytes OpenSSL already buffered) stays on OpenSSL.
void OpenSslSessionImpl::detach(std::size_t out_before) noexcept {
    std::unique_ptr<Secrets> s = std::move(secrets);
    if (SSL_has_pending(ssl) || !ctx->own_record_layer) return;
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
    if (cipher == nullptr) return;
    const auto suite = static_cast<std::uint16_t>(SSL_CIPHER_get_protocol_id(cipher));
    std::unique_ptr<RecordLayer> rl;
    if (SSL_version(ssl) == TLS1_3_VERSION) {
        if (!s || s->client_len == 0 || s->server_len == 0) return;
        // Records we sent in the step that ended the handshake went out under the server's
        // application secret (the session tickets, RFC 8446 §4.6.1): count them.
        std::uint64_t sent = 0;
        for (std::size_t at = out_before; at + 5 <= out.size();) {
            const auto* h = reinterpret_cast<const std::uint8_t*>(out.data() + at);
            if (h[0] != 23) return;  // not what we expect: leave it to OpenSSL
            at += 5 + (static_cast<std::size_t>(h[3]) << 8 | h[4]);
            ++sent;
        }
        rl = RecordLayer::tls13(suite, {s->client.data(), s->client_len}, {s->server.data(), s->server_len}, sent);
    } else if (SSL_version(ssl) == TLS1_2_VERSION) {
        std::uint8_t master[48];
        std::array<std::uint8_t, 32> cr{}, sr{};
        const std::size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof master);
        if (SSL_get_client_random(ssl, cr.data(), cr.size()) != 32 ||
            SSL_get_server_random(ssl, sr.data(), sr.size()) != 32) {
            return;
        }
        rl = RecordLayer::tls12(suite, {master, mlen}, cr, sr);
        OPENSSL_cleanse(master, sizeof master);
    }
    if (!rl) return;
    std::unique_ptr<Established> e(new (std::nothrow) Established);
    if (!e) return;
    e->rl = std::move(rl);
    e->cipher = SSL_CIPHER_standard_name(cipher);
    e->version = SSL_get_version(ssl);
    e->resumed = SSL_session_reused(ssl) == 1;
    static constexpr char k_label[] = "EXPORTER-Channel-Binding";
    e->has_exporter = SSL_export_keying_material(ssl, e->exporter.data(), e->exporter.size(), k_label,
                                                 sizeof k_label - 1, nullptr, 0, 1) == 1;
    try {
        e->end_point = server_end_point_of(SSL_get_certificate(ssl));
    } catch (const std::bad_alloc&) {
        return;
    }
    e->peer = SSL_get1_peer_certificate(ssl);
    e->verify = SSL_get_verify_result(ssl);
    ERR_clear_error();
    est = std::move(e);
    SSL_free(ssl);  // and the BIO: from here the queues are ours alone
    ssl = nullptr;
}

// Decrypts records from `in` with our record layer into `out`.
Result<std::size_t, TlsError> OpenSslSessionImpl::read_own(std::span<char> dst) noexcept {
    std::size_t total = 0;
    auto take_left = [&] {
        const std::size_t n = std::min(plain_left.size(), dst.size() - total);
        std::memcpy(dst.data() + total, plain_left.data(), n);
        plain_left.erase(0, n);
        if (plain_left.empty()) std::string().swap(plain_left);
        total += n;
    };
    if (!plain_left.empty()) take_left();
    std::uint8_t buf[k_record_open_buffer];
    while (total < dst.size() && !peer_closed) {
        auto r = est->rl->open(std::span<const char>(in.data() + in_pos, pending_in()), buf);
        if (r.status == RecordLayer::Status::need_more) break;
        if (r.status != RecordLayer::Status::ok) {
            // RFC 8446 §6.2: bad_record_mac (20) or record_overflow (22), then we are done.
            const char alert[2] = {2, static_cast<char>(r.status == RecordLayer::Status::bad_record ? 20 : 22)};
            (void)est->rl->seal(21, alert, out);
            fail_own(TlsError::bad_record, "bad record (our record layer)");
            break;
        }
        in_pos += r.consumed;
        if (in_pos == in.size()) {
            in.clear();
            in_pos = 0;
        }
        if (r.type == 23) {
            const std::size_t n = std::min(r.length, dst.size() - total);
            std::memcpy(dst.data() + total, buf, n);
            total += n;
            if (n < r.length) {
                try {
                    plain_left.assign(reinterpret_cast<const char*>(buf) + n, r.length - n);
                } catch (const std::bad_alloc&) {
                    fail_own(TlsError::out_of_memory, "cannot hold decrypted data");
                    break;
                }
            }
        } else if (r.type == 21) {
            if (r.length >= 2 && buf[1] == 0) {
                peer_closed = true;  // close_notify
            } else {
                fail_own(TlsError::peer_alert, "the peer sent a fatal alert");
            }
        } else if (r.type == 22 && est->rl->is_tls13()) {
            // Post-handshake messages (RFC 8446 §4.6): only KeyUpdate is acceptable from a
            // client we did not ask for a certificate. One message per record is all a
            // KeyUpdate needs; anything else ends the session.
            if (r.length != 5 || buf[0] != 24 || buf[1] != 0 || buf[2] != 0 || buf[3] != 1 || buf[4] > 1) {
                const char alert[2] = {2, 10};  // unexpected_message
                (void)est->rl->seal(21, alert, out);
                fail_own(TlsError::bad_record, "unexpected post-handshake message");
                break;
            }
            if (!est->rl->update_read_key()) {
                fail_own(TlsError::internal, "key update failed");
                break;
            }
            if (buf[4] == 1) {  // update_requested: answer with ours, then switch (§4.6.3)
                const char ku[5] = {24, 0, 0, 1, 0};
                if (!est->rl->seal(22, ku, out) || !est->rl->update_write_key()) {
                    fail_own(TlsError::internal, "key update failed");
                    break;
                }
            }
        } else if (r.type == 22) {
            // TLS 1.2: a handshake message after the handshake is a renegotiation attempt.
            const char alert[2] = {2, 100};  // no_renegotiation, fatal
            (void)est->rl->seal(21, alert, out);
            fail_own(TlsError::handshake_failed, "client-initiated renegotiation refused");
            break;
        } else {
            const char alert[2] = {2, 10};
            (void)est->rl->seal(21, alert, out);
            fail_own(TlsError::bad_record, "unexpected record type");
            break;
        }
    }
    release_if_idle(in);
    if (error != TlsError::none && total == 0) return Unexpected(error);
    return total;
}

}  // namespace detail

using detail::OpenSslContextImpl;
using detail::OpenSslSessionImpl;

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
        impl->identities.push_back({std::move(c), std::move(names)});
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

// ---- OpenSslServerSession --------------------------------------------------------------------

OpenSslServerSession::OpenSslServerSession(std::unique_ptr<OpenSslSessionImpl> impl) noexcept
    : _impl(std::move(impl)) {}
OpenSslServerSession::OpenSslServerSession(OpenSslServerSession&&) noexcept = default;
OpenSslServerSession& OpenSslServerSession::operator=(OpenSslServerSession&&) noexcept = default;
OpenSslServerSession::~OpenSslServerSession() = default;

Result<OpenSslServerSession, TlsError> OpenSslServerSession::make(const OpenSslServerContext& ctx,
                                                                  const TlsLimits& limits) noexcept {
    std::unique_ptr<OpenSslSessionImpl> impl(new (std::nothrow) OpenSslSessionImpl(limits));
    if (!impl) return Unexpected(TlsError::out_of_memory);
    impl->ctx = ctx.impl();
    ERR_clear_error();
    impl->ssl = SSL_new(impl->ctx->identities.front().ctx.get());
    if (impl->ssl == nullptr) return Unexpected(impl->fail(TlsError::out_of_memory));
    BIO* bio = BIO_new(impl->ctx->bio_method);
    if (bio == nullptr) return Unexpected(impl->fail(TlsError::out_of_memory));
    BIO_set_data(bio, impl.get());
    BIO_set_init(bio, 1);
    SSL_set_bio(impl->ssl, bio, bio);  // one reference, owned by the SSL from here
    SSL_set_app_data(impl->ssl, impl.get());
    SSL_set_accept_state(impl->ssl);
    return OpenSslServerSession(std::move(impl));
}

Result<HandshakeStatus, TlsError> OpenSslServerSession::handshake() noexcept { return _impl->step(); }

bool OpenSslServerSession::is_handshake_done() const noexcept { return _impl->handshake_done; }

Result<void, TlsError> OpenSslServerSession::receive_ciphertext(std::span<const char> data) noexcept {
    OpenSslSessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (data.size() > ciphertext_space()) return Unexpected(TlsError::input_overflow);
    if (data.empty()) return {};
    try {
        if (s.in_pos != 0) {  // compact: at most the cap is moved
            s.in.erase(s.in.begin(), s.in.begin() + static_cast<std::ptrdiff_t>(s.in_pos));
            s.in_pos = 0;
        }
        s.in.insert(s.in.end(), data.begin(), data.end());
    } catch (const std::bad_alloc&) {
        if (s.error == TlsError::none) s.error = TlsError::out_of_memory;
        return Unexpected(s.error);
    }
    return {};
}

std::size_t OpenSslServerSession::ciphertext_space() const noexcept {
    const OpenSslSessionImpl& s = *_impl;
    const std::size_t held = s.pending_in();
    return held >= s.limits.max_ciphertext_in ? 0 : s.limits.max_ciphertext_in - held;
}

Result<std::size_t, TlsError> OpenSslServerSession::read_plaintext(std::span<char> out) noexcept {
    OpenSslSessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (out.empty() || s.peer_closed) return 0;
    if (!s.handshake_done) {
        auto st = s.step();
        if (!st) return Unexpected(st.error());
        if (*st != HandshakeStatus::done) return 0;
    }
    if (s.est) return s.read_own(out);
    std::size_t total = 0;
    while (total < out.size()) {
        ERR_clear_error();
        std::size_t got = 0;
        const int rc = SSL_read_ex(s.ssl, out.data() + total, out.size() - total, &got);
        if (!s.why.empty()) return Unexpected(s.fail(TlsError::handshake_failed));  // renegotiation
        if (rc == 1) {
            total += got;
            continue;
        }
        const int e = SSL_get_error(s.ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            s.peer_closed = true;
            break;
        }
        s.fail(TlsError::internal);
        // Plaintext already decrypted came from authenticated records: hand it over; the
        // error is reported by the next call.
        if (total != 0) break;
        return Unexpected(s.error);
    }
    detail::release_if_idle(s.in);
    return total;
}

Result<std::size_t, TlsError> OpenSslServerSession::write_plaintext(std::span<const char> in) noexcept {
    const std::span<const char> one[1] = {in};
    return write_plaintext(std::span<const std::span<const char>>(one));
}

Result<std::size_t, TlsError> OpenSslServerSession::write_plaintext(
    std::span<const std::span<const char>> pieces) noexcept {
    OpenSslSessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (s.closed || s.peer_closed) return Unexpected(TlsError::closed);  // usage error, not sticky
    if (!s.handshake_done) {
        auto st = s.step();
        if (!st) return Unexpected(st.error());
        if (*st != HandshakeStatus::done) return 0;
    }
    constexpr std::size_t max_payload = detail::k_max_record_payload;
    // Staging on the stack: a batch is packed into full records (DESIGN §3.5), nothing stays
    // buffered between calls.
    char stage[max_payload];
    std::size_t staged = 0;
    std::size_t taken = 0;
    auto emit = [&](const char* p, std::size_t n) -> bool {
        if (auto r = s.write_all(p, n); !r) return false;
        taken += n;
        return true;
    };
    auto result = [&]() -> Result<std::size_t, TlsError> {
        if (taken != 0) return taken;
        return Unexpected(s.error);
    };
    for (std::span<const char> piece : pieces) {
        std::size_t off = 0;
        while (off < piece.size()) {
            if (staged == 0) {
                if (s.pending_out() >= s.limits.max_ciphertext_out) return taken;  // back-pressure
                if (piece.size() - off >= max_payload) {  // a full record: no copy
                    if (!emit(piece.data() + off, max_payload)) return result();
                    off += max_payload;
                    continue;
                }
            }
            const std::size_t n = std::min(piece.size() - off, max_payload - staged);
            std::memcpy(stage + staged, piece.data() + off, n);
            staged += n;
            off += n;
            if (staged == max_payload) {
                if (!emit(stage, staged)) return result();
                staged = 0;
            }
        }
    }
    if (staged != 0 && !emit(stage, staged)) return result();
    return taken;
}

std::span<const char> OpenSslServerSession::pending_ciphertext() const noexcept {
    const OpenSslSessionImpl& s = *_impl;
    return {s.out.data() + s.out_pos, s.pending_out()};
}

void OpenSslServerSession::consume_ciphertext(std::size_t n) noexcept {
    OpenSslSessionImpl& s = *_impl;
    s.out_pos += std::min(n, s.pending_out());
    if (s.out_pos == s.out.size()) {
        s.out.clear();
        s.out_pos = 0;
        detail::release_if_idle(s.out);
    }
}

std::size_t OpenSslServerSession::drain_ciphertext(std::string& out) {
    const auto p = pending_ciphertext();
    out.append(p.data(), p.size());
    consume_ciphertext(p.size());
    return p.size();
}

std::size_t OpenSslServerSession::drain_ciphertext(std::vector<char>& out) {
    const auto p = pending_ciphertext();
    out.insert(out.end(), p.begin(), p.end());
    consume_ciphertext(p.size());
    return p.size();
}

Result<void, TlsError> OpenSslServerSession::close() noexcept {
    OpenSslSessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (s.closed) return {};
    s.closed = true;
    // Before the handshake ends there is nothing to close: the caller drops the connection.
    if (!s.handshake_done) return {};
    if (s.est) {
        const char close_notify[2] = {1, 0};  // RFC 8446 §6.1
        if (!s.est->rl->seal(21, close_notify, s.out)) {
            return Unexpected(s.fail_own(TlsError::out_of_memory, "cannot seal close_notify"));
        }
        return {};
    }
    ERR_clear_error();
    // 0: our close_notify is queued and the peer's not yet seen, which is all we wait for
    // (RFC 8446 §6.1 lets us close without reading the peer's).
    if (SSL_shutdown(s.ssl) < 0) return Unexpected(s.fail(TlsError::internal));
    return {};
}

bool OpenSslServerSession::is_peer_closed() const noexcept { return _impl->peer_closed; }

std::string_view OpenSslServerSession::server_name() const noexcept { return _impl->sni; }

bool OpenSslServerSession::is_server_name_known() const noexcept { return _impl->sni_known; }

std::string_view OpenSslServerSession::cipher_suite() const noexcept {
    if (!_impl->handshake_done) return {};
    if (_impl->est) return _impl->est->cipher != nullptr ? std::string_view(_impl->est->cipher) : std::string_view();
    const char* n = SSL_CIPHER_standard_name(SSL_get_current_cipher(_impl->ssl));
    return n != nullptr ? std::string_view(n) : std::string_view();
}

std::string_view OpenSslServerSession::protocol_version() const noexcept {
    if (!_impl->handshake_done) return {};
    if (_impl->est) return _impl->est->version;
    return SSL_get_version(_impl->ssl);
}

bool OpenSslServerSession::uses_own_record_layer() const noexcept { return _impl->est != nullptr; }

bool OpenSslServerSession::is_resumed() const noexcept {
    if (_impl->est) return _impl->est->resumed;
    return _impl->handshake_done && SSL_session_reused(_impl->ssl) == 1;
}

std::optional<PeerCertificate> OpenSslServerSession::peer_certificate() const {
    X509* x = _impl->est ? _impl->est->peer : SSL_get0_peer_certificate(_impl->ssl);
    if (x == nullptr) return std::nullopt;
    PeerCertificate pc;
    detail::certificate_names(x, pc.subject_cn, pc.dns_names, pc.xmpp_addrs);
    unsigned int len = 0;
    X509_digest(x, EVP_sha256(), pc.sha256.data(), &len);
    pc.verified = _impl->handshake_done &&
                  (_impl->est ? _impl->est->verify : SSL_get_verify_result(_impl->ssl)) == X509_V_OK;
    return pc;
}

Result<void, TlsError> OpenSslServerSession::export_keying_material(std::span<std::uint8_t> out,
                                                                    std::string_view label,
                                                                    std::span<const std::uint8_t> context) const noexcept {
    if (!_impl->handshake_done || _impl->error != TlsError::none) return Unexpected(TlsError::internal);
    if (_impl->est) {
        // Once our record layer has taken over, only what RFC 9266 needs was kept.
        if (!_impl->est->has_exporter || label != "EXPORTER-Channel-Binding" || !context.empty() ||
            out.size() != _impl->est->exporter.size()) {
            return Unexpected(TlsError::internal);
        }
        std::memcpy(out.data(), _impl->est->exporter.data(), out.size());
        return {};
    }
    ERR_clear_error();
    const int ok = SSL_export_keying_material(_impl->ssl, out.data(), out.size(), label.data(), label.size(),
                                              context.data(), context.size(), 1);
    ERR_clear_error();
    if (ok != 1) return Unexpected(TlsError::internal);
    return {};
}

std::vector<std::uint8_t> OpenSslServerSession::server_end_point() const {
    if (!_impl->handshake_done) return {};
    if (_impl->est) return _impl->est->end_point;
    return detail::server_end_point_of(SSL_get_certificate(_impl->ssl));
}

TlsError OpenSslServerSession::error() const noexcept { return _impl->error; }

unsigned long OpenSslServerSession::openssl_code() const noexcept { return _impl->code; }

std::string OpenSslServerSession::error_detail() const {
    if (!_impl->why.empty()) return std::string(_impl->why);
    return detail::openssl_message(_impl->code);
}

}  // namespace xmpp::tls
