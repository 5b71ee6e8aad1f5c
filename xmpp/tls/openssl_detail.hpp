// Internal to xmpp/tls: the OpenSSL objects behind OpenSslServerContext / OpenSslServerSession
// and the helpers openssl_context.cpp and openssl_session.cpp share. Not for use outside
// xmpp/tls (it drags in OpenSSL headers).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "xmpp/tls/openssl_server.hpp"
#include "xmpp/tls/record_layer.hpp"

namespace xmpp::tls::detail {

constexpr std::size_t k_max_record_payload = 16384;  // RFC 8446 §5.1, RFC 5246 §6.2.1: 2^14

// OpenSSL's text for an error code (ERR_error_string_n), for logs.
std::string openssl_message(unsigned long code);
// What a certificate says about who it is (RFC 6125 identifiers, RFC 6120 §13.7.1.4 XmppAddr).
void certificate_names(X509* x, std::string& cn, std::vector<std::string>& dns, std::vector<std::string>& xmpp);
// RFC 5929 §4.1 tls-server-end-point of a certificate; empty for none.
std::vector<std::uint8_t> server_end_point_of(X509* x);

struct SslCtxDeleter {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

struct OpenSslContextImpl {
    struct Identity {
        SslCtxPtr ctx;  // identities[0]'s is the one every session starts on
        std::vector<std::string> names;
        std::vector<std::uint8_t> end_point;  // RFC 5929 tls-server-end-point of its certificate
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

    // The tls-server-end-point of the certificate a handshake sent, hashed once at load; null
    // for a certificate that is none of ours (cannot happen: each SSL_CTX holds one).
    const std::vector<std::uint8_t>* end_point_of(const X509* cert) const noexcept {
        for (const auto& id : identities) {
            if (cert != nullptr && SSL_CTX_get0_certificate(id.ctx.get()) == cert) return &id.end_point;
        }
        return nullptr;
    }
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
        // RFC 5929 tls-server-end-point: the identity's, hashed at load (the context outlives
        // the session), or own_end_point if the certificate was not found there.
        const std::vector<std::uint8_t>* end_point = nullptr;
        std::vector<std::uint8_t> own_end_point;
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

// An idle connection should not pin a burst's worth of buffer (DESIGN §5: a million sessions):
// an empty queue gives its memory back (one allocation per busy turn is the price).
inline void release_if_idle(std::vector<char>& v) noexcept {
    if (v.empty() && v.capacity() != 0) std::vector<char>().swap(v);
}

inline OpenSslSessionImpl* session_of(SSL* ssl) noexcept {
    return static_cast<OpenSslSessionImpl*>(SSL_get_app_data(ssl));
}

}  // namespace xmpp::tls::detail
