// TlsSession over mbedTLS 2.28 with memory BIOs: the "socket" mbedTLS sees is two byte queues.
#include "xmpp/tls/tls_session.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include <mbedtls/sha256.h>

#include "xmpp/tls/mbedtls_detail.hpp"

namespace xmpp::tls {
namespace detail {

// mbedTLS's largest plaintext record (RFC 5246 §6.2.1: 2^14).
constexpr std::size_t k_max_record_payload = 16384;

struct SessionImpl {
    std::shared_ptr<const ServerContextImpl> server;
    std::shared_ptr<const ClientContextImpl> client;
    mbedtls_ssl_context ssl;
    TlsLimits limits;

    std::vector<char> in;  // received ciphertext; [in_pos, end) not yet given to mbedTLS
    std::size_t in_pos = 0;
    std::vector<char> out;  // produced ciphertext; [out_pos, end) not yet sent
    std::size_t out_pos = 0;

    TlsError error = TlsError::none;
    int code = 0;
    bool handshake_done = false;
    bool closed = false;
    bool peer_closed = false;

    char sni[256];
    std::uint8_t sni_len = 0;
    bool sni_known = false;

    explicit SessionImpl(const TlsLimits& l) noexcept : limits(l) { mbedtls_ssl_init(&ssl); }
    ~SessionImpl() { mbedtls_ssl_free(&ssl); }
    SessionImpl(const SessionImpl&) = delete;
    SessionImpl& operator=(const SessionImpl&) = delete;

    std::size_t pending_out() const noexcept { return out.size() - out_pos; }
    std::size_t pending_in() const noexcept { return in.size() - in_pos; }

    // Classifies an mbedTLS failure; the first one sticks (CONVENTIONS §3).
    TlsError fail(int rc) noexcept {
        if (error != TlsError::none) return error;
        code = rc;
        error = classify(rc);
        return error;
    }

    TlsError classify(int rc) const noexcept {
        switch (rc) {
        case MBEDTLS_ERR_SSL_ALLOC_FAILED:
            return TlsError::out_of_memory;
        case MBEDTLS_ERR_SSL_INVALID_RECORD:
        case MBEDTLS_ERR_SSL_INVALID_MAC:
        case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
        case MBEDTLS_ERR_SSL_UNEXPECTED_RECORD:
            return TlsError::bad_record;
        case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        case MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE:
            return TlsError::no_shared_cipher;
        case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
            return TlsError::protocol_version;
        case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
            return TlsError::certificate_required;
        case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
            return TlsError::peer_alert;
        case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: {
            const std::uint32_t flags = mbedtls_ssl_get_verify_result(&ssl);
            if (flags == MBEDTLS_X509_BADCERT_CN_MISMATCH) return TlsError::hostname_mismatch;
            if ((flags & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE)) != 0 &&
                (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) == 0) {
                return TlsError::certificate_expired;
            }
            return TlsError::certificate_untrusted;
        }
        default:
            return handshake_done ? TlsError::internal : TlsError::handshake_failed;
        }
    }

    Result<HandshakeStatus, TlsError> step() noexcept {
        if (error != TlsError::none) return Unexpected(error);
        if (!handshake_done) {
            const int rc = mbedtls_ssl_handshake(&ssl);
            if (rc == 0) {
                handshake_done = true;
            } else if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
                return Unexpected(fail(rc));
            }
        }
        if (handshake_done) return HandshakeStatus::done;
        return pending_out() != 0 ? HandshakeStatus::want_write : HandshakeStatus::want_read;
    }

    // Writes one chunk (at most one record's payload) completely.
    Result<void, TlsError> write_all(const char* p, std::size_t n) noexcept {
        while (n != 0) {
            const int rc = mbedtls_ssl_write(&ssl, reinterpret_cast<const unsigned char*>(p), n);
            if (rc <= 0) {
                // Our send BIO never blocks, so WANT_WRITE cannot happen: treat it as a bug.
                return Unexpected(fail(rc == 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : rc));
            }
            p += rc;
            n -= static_cast<std::size_t>(rc);
        }
        return {};
    }

    std::size_t max_payload() const noexcept {
        const int m = mbedtls_ssl_get_max_out_record_payload(&ssl);
        return m > 0 ? std::min(k_max_record_payload, static_cast<std::size_t>(m))
                     : k_max_record_payload;
    }
};

namespace {

// Send BIO: everything mbedTLS produces is queued; the session's cap is enforced before
// writing plaintext, so the queue exceeds it by at most one record (or one handshake flight).
int bio_send(void* p, const unsigned char* buf, std::size_t len) noexcept {
    auto* s = static_cast<SessionImpl*>(p);
    try {
        s->out.insert(s->out.end(), reinterpret_cast<const char*>(buf),
                      reinterpret_cast<const char*>(buf) + len);
    } catch (const std::bad_alloc&) {
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    }
    return static_cast<int>(len);
}

// Receive BIO: hands out what receive_ciphertext() queued, else "would block".
int bio_recv(void* p, unsigned char* buf, std::size_t len) noexcept {
    auto* s = static_cast<SessionImpl*>(p);
    const std::size_t n = std::min(len, s->pending_in());
    if (n == 0) return MBEDTLS_ERR_SSL_WANT_READ;
    std::memcpy(buf, s->in.data() + s->in_pos, n);
    s->in_pos += n;
    if (s->in_pos == s->in.size()) {
        s->in.clear();
        s->in_pos = 0;
    }
    return static_cast<int>(n);
}

// An idle connection should not pin a burst's worth of buffer (DESIGN §5: a million sessions).
constexpr std::size_t k_keep_capacity = 4096;

void release_if_idle(std::vector<char>& v) noexcept {
    if (v.empty() && v.capacity() > k_keep_capacity) std::vector<char>().swap(v);
}

}  // namespace

int server_name_callback(void* server_impl, mbedtls_ssl_context* ssl, const unsigned char* name,
                         std::size_t len) noexcept {
    const auto* ctx = static_cast<const ServerContextImpl*>(server_impl);
    // mbedTLS 2.28 has no per-connection user pointer; our BIO context is the session.
    auto* s = static_cast<SessionImpl*>(ssl->p_bio);
    // RFC 6066 §3: HostName is a DNS name, at most 255 octets (RFC 1035 §2.3.4). Longer: ignore.
    if (s == nullptr || len == 0 || len > 255) return 0;
    for (std::size_t i = 0; i < len; ++i) s->sni[i] = ascii_lower(static_cast<char>(name[i]));
    s->sni_len = static_cast<std::uint8_t>(len);
    const Identity* id = ctx->find(std::string_view(s->sni, len));
    if (id == nullptr) return 0;  // unknown name: serve the default identity
    s->sni_known = true;
    // mbedTLS takes non-const pointers but only reads them during the handshake.
    return mbedtls_ssl_set_hs_own_cert(ssl, const_cast<mbedtls_x509_crt*>(&id->chain),
                                       const_cast<mbedtls_pk_context*>(&id->key));
}

}  // namespace detail

using detail::SessionImpl;

std::string_view to_string(TlsError e) noexcept {
    switch (e) {
    case TlsError::none: return "none";
    case TlsError::out_of_memory: return "out-of-memory";
    case TlsError::input_overflow: return "input-overflow";
    case TlsError::bad_record: return "bad-record";
    case TlsError::handshake_failed: return "handshake-failed";
    case TlsError::no_shared_cipher: return "no-shared-cipher";
    case TlsError::protocol_version: return "protocol-version";
    case TlsError::certificate_untrusted: return "certificate-untrusted";
    case TlsError::certificate_expired: return "certificate-expired";
    case TlsError::hostname_mismatch: return "hostname-mismatch";
    case TlsError::certificate_required: return "certificate-required";
    case TlsError::peer_alert: return "peer-alert";
    case TlsError::closed: return "closed";
    case TlsError::internal: return "internal";
    }
    return "unknown";
}

TlsSession::TlsSession(std::unique_ptr<SessionImpl> impl) noexcept : _impl(std::move(impl)) {}
TlsSession::TlsSession(TlsSession&&) noexcept = default;
TlsSession& TlsSession::operator=(TlsSession&&) noexcept = default;
TlsSession::~TlsSession() = default;

Result<TlsSession, TlsError> TlsSession::server(const TlsServerContext& ctx,
                                                const TlsLimits& limits) noexcept {
    std::unique_ptr<SessionImpl> impl(new (std::nothrow) SessionImpl(limits));
    if (!impl) return Unexpected(TlsError::out_of_memory);
    impl->server = ctx.impl();
    if (int rc = mbedtls_ssl_setup(&impl->ssl, &impl->server->conf); rc != 0) {
        return Unexpected(impl->fail(rc));
    }
    mbedtls_ssl_set_bio(&impl->ssl, impl.get(), detail::bio_send, detail::bio_recv, nullptr);
    return TlsSession(std::move(impl));
}

Result<TlsSession, TlsError> TlsSession::client(const TlsClientContext& ctx,
                                                std::string_view server_name,
                                                const TlsLimits& limits) noexcept {
    std::unique_ptr<SessionImpl> impl(new (std::nothrow) SessionImpl(limits));
    if (!impl) return Unexpected(TlsError::out_of_memory);
    impl->client = ctx.impl();
    if (int rc = mbedtls_ssl_setup(&impl->ssl, &impl->client->conf); rc != 0) {
        return Unexpected(impl->fail(rc));
    }
    // With hostname verification on, no name would silently skip the check: refuse.
    if (server_name.empty() && impl->client->verify_hostname) {
        return Unexpected(TlsError::hostname_mismatch);
    }
    if (server_name.size() > 255) return Unexpected(TlsError::hostname_mismatch);
    if (!server_name.empty()) {
        char name[256];
        server_name.copy(name, server_name.size());
        name[server_name.size()] = '\0';
        // Sends SNI (RFC 6066 §3) and sets the name the leaf must carry (RFC 6125 DNS-ID).
        if (int rc = mbedtls_ssl_set_hostname(&impl->ssl, name); rc != 0) {
            return Unexpected(impl->fail(rc));
        }
    }
    mbedtls_ssl_set_bio(&impl->ssl, impl.get(), detail::bio_send, detail::bio_recv, nullptr);
    return TlsSession(std::move(impl));
}

Result<HandshakeStatus, TlsError> TlsSession::handshake() noexcept { return _impl->step(); }

bool TlsSession::is_handshake_done() const noexcept { return _impl->handshake_done; }

Result<void, TlsError> TlsSession::receive_ciphertext(std::span<const char> data) noexcept {
    SessionImpl& s = *_impl;
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
        return Unexpected(s.fail(MBEDTLS_ERR_SSL_ALLOC_FAILED));
    }
    return {};
}

std::size_t TlsSession::ciphertext_space() const noexcept {
    const SessionImpl& s = *_impl;
    const std::size_t held = s.pending_in();
    return held >= s.limits.max_ciphertext_in ? 0 : s.limits.max_ciphertext_in - held;
}

Result<std::size_t, TlsError> TlsSession::read_plaintext(std::span<char> out) noexcept {
    SessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (out.empty() || s.peer_closed) return 0;
    if (!s.handshake_done) {
        auto st = s.step();
        if (!st) return Unexpected(st.error());
        if (*st != HandshakeStatus::done) return 0;
    }
    std::size_t total = 0;
    while (total < out.size()) {
        const int rc = mbedtls_ssl_read(&s.ssl, reinterpret_cast<unsigned char*>(out.data() + total),
                                        out.size() - total);
        if (rc > 0) {
            total += static_cast<std::size_t>(rc);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            s.peer_closed = true;
            break;
        }
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) break;
        s.fail(rc);
        // Plaintext already decrypted came from authenticated records: hand it over; the
        // error is reported by the next call.
        if (total != 0) break;
        return Unexpected(s.error);
    }
    detail::release_if_idle(s.in);
    return total;
}

Result<std::size_t, TlsError> TlsSession::write_plaintext(std::span<const char> in) noexcept {
    const std::span<const char> one[1] = {in};
    return write_plaintext(std::span<const std::span<const char>>(one));
}

Result<std::size_t, TlsError> TlsSession::write_plaintext(
    std::span<const std::span<const char>> pieces) noexcept {
    SessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (s.closed || s.peer_closed) return Unexpected(TlsError::closed);  // usage error, not sticky
    if (!s.handshake_done) {
        auto st = s.step();
        if (!st) return Unexpected(st.error());
        if (*st != HandshakeStatus::done) return 0;
    }
    const std::size_t max_payload = s.max_payload();
    // Staging on the stack, not in the session: a batch is packed into full records here and
    // nothing stays buffered between calls.
    char stage[detail::k_max_record_payload];
    std::size_t staged = 0;
    std::size_t taken = 0;
    for (std::span<const char> piece : pieces) {
        std::size_t off = 0;
        while (off < piece.size()) {
            if (staged == 0) {
                // Back-pressure: only start a new record below the output cap.
                if (s.pending_out() >= s.limits.max_ciphertext_out) return taken;
                if (piece.size() - off >= max_payload) {  // a full record: no copy
                    if (auto r = s.write_all(piece.data() + off, max_payload); !r) {
                        return taken != 0 ? Result<std::size_t, TlsError>(taken)
                                          : Unexpected(r.error());
                    }
                    off += max_payload;
                    taken += max_payload;
                    continue;
                }
            }
            const std::size_t n = std::min(piece.size() - off, max_payload - staged);
            std::memcpy(stage + staged, piece.data() + off, n);
            staged += n;
            off += n;
            if (staged == max_payload) {
                if (auto r = s.write_all(stage, staged); !r) {
                    return taken != 0 ? Result<std::size_t, TlsError>(taken)
                                      : Unexpected(r.error());
                }
                taken += staged;
                staged = 0;
            }
        }
    }
    if (staged != 0) {
        if (auto r = s.write_all(stage, staged); !r) {
            return taken != 0 ? Result<std::size_t, TlsError>(taken) : Unexpected(r.error());
        }
        taken += staged;
    }
    return taken;
}

std::span<const char> TlsSession::pending_ciphertext() const noexcept {
    const SessionImpl& s = *_impl;
    return {s.out.data() + s.out_pos, s.pending_out()};
}

void TlsSession::consume_ciphertext(std::size_t n) noexcept {
    SessionImpl& s = *_impl;
    s.out_pos += std::min(n, s.pending_out());
    if (s.out_pos == s.out.size()) {
        s.out.clear();
        s.out_pos = 0;
        detail::release_if_idle(s.out);
    }
}

std::size_t TlsSession::drain_ciphertext(std::string& out) {
    const auto p = pending_ciphertext();
    out.append(p.data(), p.size());
    consume_ciphertext(p.size());
    return p.size();
}

std::size_t TlsSession::drain_ciphertext(std::vector<char>& out) {
    const auto p = pending_ciphertext();
    out.insert(out.end(), p.begin(), p.end());
    consume_ciphertext(p.size());
    return p.size();
}

Result<void, TlsError> TlsSession::close() noexcept {
    SessionImpl& s = *_impl;
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (s.closed) return {};
    s.closed = true;
    // Before the handshake ends mbedTLS sends nothing; the caller just drops the connection.
    if (int rc = mbedtls_ssl_close_notify(&s.ssl); rc != 0 && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
        return Unexpected(s.fail(rc));
    }
    return {};
}

bool TlsSession::is_peer_closed() const noexcept { return _impl->peer_closed; }

std::string_view TlsSession::server_name() const noexcept {
    return {_impl->sni, _impl->sni_len};
}

bool TlsSession::is_server_name_known() const noexcept { return _impl->sni_known; }

std::optional<PeerCertificate> TlsSession::peer_certificate() const {
    const mbedtls_x509_crt* crt = mbedtls_ssl_get_peer_cert(&_impl->ssl);
    if (crt == nullptr) return std::nullopt;
    detail::CertificateNames names = detail::certificate_names(*crt);
    PeerCertificate pc;
    pc.subject_cn = std::move(names.subject_cn);
    pc.dns_names = std::move(names.dns_names);
    pc.xmpp_addrs = std::move(names.xmpp_addrs);
    mbedtls_sha256_ret(crt->raw.p, crt->raw.len, pc.sha256.data(), 0);
    pc.verified = _impl->handshake_done && mbedtls_ssl_get_verify_result(&_impl->ssl) == 0;
    return pc;
}

std::string_view TlsSession::cipher_suite() const noexcept {
    const char* cs = mbedtls_ssl_get_ciphersuite(&_impl->ssl);
    return cs != nullptr ? std::string_view(cs) : std::string_view();
}

std::string_view TlsSession::protocol_version() const noexcept {
    if (!_impl->handshake_done) return {};
    const char* v = mbedtls_ssl_get_version(&_impl->ssl);
    return v != nullptr ? std::string_view(v) : std::string_view();
}

TlsError TlsSession::error() const noexcept { return _impl->error; }

int TlsSession::mbedtls_code() const noexcept { return _impl->code; }

std::string TlsSession::error_detail() const {
    return _impl->code != 0 ? detail::mbedtls_message(_impl->code) : std::string();
}

}  // namespace xmpp::tls
