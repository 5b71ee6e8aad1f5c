// OpenSslServerSession: one connection on the broker's engine. OpenSSL runs the handshake;
// then, as a rule, our own record layer (record_layer.hpp) carries the connection and the SSL
// object is freed (what an idle connection costs, DESIGN §5).
#include "xmpp/tls/openssl_server.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include <openssl/evp.h>

#include "xmpp/tls/openssl_detail.hpp"

namespace xmpp::tls {
namespace detail {

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
    X509* cert = SSL_get_certificate(ssl);
    e->end_point = ctx->end_point_of(cert);
    if (e->end_point == nullptr) {
        try {
            e->own_end_point = server_end_point_of(cert);
        } catch (const std::bad_alloc&) {
            return;
        }
        e->end_point = &e->own_end_point;
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
    std::uint8_t stack_buf[k_record_open_buffer];
    while (total < dst.size() && !peer_closed) {
        const std::span<const char> record(in.data() + in_pos, pending_in());
        // A record that fits in what is left of `dst` is opened right there (a record never
        // decrypts to more than its length); otherwise on the stack, the rest kept for later.
        const std::size_t len = RecordLayer::record_length(record);
        const bool direct = len != 0 && len <= dst.size() - total;
        std::uint8_t* buf = direct ? reinterpret_cast<std::uint8_t*>(dst.data() + total) : stack_buf;
        auto r = est->rl->open(record, buf);
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
        if (r.type == 23 && direct) {
            total += r.length;
        } else if (r.type == 23) {
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
            if (buf[4] == 1 && pending_out() >= limits.max_ciphertext_out) {
                // Each request makes us write; a peer that asks faster than it reads would
                // grow our output without bound.
                fail_own(TlsError::internal, "KeyUpdate requests faster than our output is read");
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
    // `in` keeps its memory while the connection is busy (no allocation per read); the owner
    // gives it back when it parks the connection (release_idle_buffers()).
    if (error != TlsError::none && total == 0) return Unexpected(error);
    return total;
}

}  // namespace detail

using detail::OpenSslSessionImpl;

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

Result<std::size_t, TlsError> OpenSslServerSession::seal_into(std::span<const char> in, std::string& wire) {
    OpenSslSessionImpl& s = *_impl;
    if (!s.est) {  // OpenSSL's record layer: through its queue
        auto took = write_plaintext(in);
        drain_ciphertext(wire);
        return took;
    }
    if (s.error != TlsError::none) return Unexpected(s.error);
    if (s.closed || s.peer_closed) return Unexpected(TlsError::closed);
    drain_ciphertext(wire);  // an alert or KeyUpdate queued earlier goes first
    // The same bound as write_plaintext: at most max_ciphertext_out waiting (one record over).
    const std::size_t start = wire.size();
    std::size_t taken = 0;
    while (taken < in.size() && wire.size() - start < s.limits.max_ciphertext_out) {
        const std::size_t n = std::min(in.size() - taken, detail::k_max_record_payload);
        const std::size_t at = wire.size();
        wire.resize(at + s.est->rl->sealed_size(n));  // may throw: nothing is taken then
        if (!s.est->rl->seal_to(23, in.subspan(taken, n), reinterpret_cast<std::uint8_t*>(wire.data() + at))) {
            wire.resize(at);
            s.fail_own(TlsError::out_of_memory, "cannot seal a record");
            if (taken != 0) return taken;
            return Unexpected(s.error);
        }
        taken += n;
    }
    return taken;
}

void OpenSslServerSession::release_idle_buffers() noexcept {
    OpenSslSessionImpl& s = *_impl;
    if (s.pending_in() == 0) {
        s.in.clear();
        s.in_pos = 0;
        detail::release_if_idle(s.in);
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

void OpenSslServerSession::release_peer_certificate() noexcept {
    if (!_impl->est || _impl->est->peer == nullptr) return;
    X509_free(_impl->est->peer);
    _impl->est->peer = nullptr;
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
    if (_impl->est) return *_impl->est->end_point;
    return detail::server_end_point_of(SSL_get_certificate(_impl->ssl));
}

TlsError OpenSslServerSession::error() const noexcept { return _impl->error; }

unsigned long OpenSslServerSession::openssl_code() const noexcept { return _impl->code; }

std::string OpenSslServerSession::error_detail() const {
    if (!_impl->why.empty()) return std::string(_impl->why);
    return detail::openssl_message(_impl->code);
}

}  // namespace xmpp::tls
