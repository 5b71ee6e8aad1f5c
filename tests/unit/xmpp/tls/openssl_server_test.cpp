#include "xmpp/tls/openssl_server.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "xmpp/tls/self_signed.hpp"
#include "xmpp/tls/tls_context.hpp"
#include "xmpp/tls/tls_session.hpp"

using namespace xmpp::tls;

namespace {

const CertificateAndKey& cert_for(const std::string& name) {
    static std::map<std::string, CertificateAndKey> cache;
    auto it = cache.find(name);
    if (it == cache.end()) {
        const std::string names[] = {name};
        it = cache.emplace(name, generate_self_signed(names)).first;
    }
    return it->second;
}

TlsServerConfig config_for(std::initializer_list<std::string> names) {
    TlsServerConfig config;
    for (const auto& n : names) {
        TlsIdentity id;
        id.cert_chain = PemSource::text(cert_for(n).cert_pem);
        id.private_key = PemSource::text(cert_for(n).key_pem);
        config.identities.push_back(std::move(id));
    }
    return config;
}

// An OpenSSL client over two memory BIOs, as a test peer that speaks TLS 1.3 and resumes.
class Client {
public:
    explicit Client(int max_version = TLS1_3_VERSION, const std::string& sni = "", SSL_SESSION* resume = nullptr,
                    const char* suites = nullptr) {
        _ctx = SSL_CTX_new(TLS_client_method());
        if (suites != nullptr) {
            if (max_version == TLS1_3_VERSION) SSL_CTX_set_ciphersuites(_ctx, suites);
            else SSL_CTX_set_cipher_list(_ctx, suites);
        }
        SSL_CTX_set_max_proto_version(_ctx, max_version);
        SSL_CTX_set_min_proto_version(_ctx, max_version == TLS1_1_VERSION ? TLS1_1_VERSION : TLS1_2_VERSION);
        if (max_version == TLS1_1_VERSION) SSL_CTX_set_security_level(_ctx, 0);
        _ssl = SSL_new(_ctx);
        _in = BIO_new(BIO_s_mem());
        _out = BIO_new(BIO_s_mem());
        SSL_set_bio(_ssl, _in, _out);
        SSL_set_connect_state(_ssl);
        if (!sni.empty()) SSL_set_tlsext_host_name(_ssl, sni.c_str());
        if (resume != nullptr) SSL_set_session(_ssl, resume);
    }
    ~Client() {
        // A client that closes properly (close_notify) keeps its session resumable; OpenSSL
        // forgets a session whose connection was dropped.
        if (SSL_is_init_finished(_ssl)) SSL_shutdown(_ssl);
        SSL_free(_ssl);
        SSL_CTX_free(_ctx);
    }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    SSL* ssl() { return _ssl; }

    // Ciphertext the client produced, into the server.
    void to(OpenSslServerSession& server) {
        char buf[8192];
        int n;
        while ((n = BIO_read(_out, buf, sizeof buf)) > 0) {
            ASSERT_TRUE(server.receive_ciphertext(std::span<const char>(buf, static_cast<std::size_t>(n))));
        }
    }
    void feed(const std::string& ct) {
        if (!ct.empty()) BIO_write(_in, ct.data(), static_cast<int>(ct.size()));
    }
    void from(OpenSslServerSession& server) {
        std::string ct;
        server.drain_ciphertext(ct);
        if (!ct.empty()) BIO_write(_in, ct.data(), static_cast<int>(ct.size()));
    }
    int step() {
        ERR_clear_error();
        const int rc = SSL_do_handshake(_ssl);
        return rc == 1 ? 1 : SSL_get_error(_ssl, rc);
    }
    std::string read_all() {
        std::string got;
        char buf[4096];
        std::size_t n = 0;
        while (SSL_read_ex(_ssl, buf, sizeof buf, &n) == 1) got.append(buf, n);
        ERR_clear_error();
        return got;
    }
    void write(const std::string& s) {
        std::size_t n = 0;
        ASSERT_EQ(SSL_write_ex(_ssl, s.data(), s.size(), &n), 1);
    }

private:
    SSL_CTX* _ctx = nullptr;
    SSL* _ssl = nullptr;
    BIO* _in = nullptr;
    BIO* _out = nullptr;
};

bool handshake(Client& c, OpenSslServerSession& s) {
    for (int i = 0; i < 10; ++i) {
        const int cr = c.step();
        c.to(s);
        auto sr = s.handshake();
        c.from(s);
        if (!sr) return false;
        if (cr == 1 && *sr == HandshakeStatus::done) return true;
        if (cr != 1 && cr != SSL_ERROR_WANT_READ) return false;
    }
    return false;
}

std::string read_server(OpenSslServerSession& s) {
    std::string got;
    char buf[4096];
    for (;;) {
        auto r = s.read_plaintext(buf);
        EXPECT_TRUE(r);
        if (!r || *r == 0) break;
        got.append(buf, *r);
    }
    return got;
}

// Connects, exchanges a line both ways (so the client reads the TLS 1.3 ticket), and returns
// the client's session for resumption.
SSL_SESSION* connect_and_keep_session(const OpenSslServerContext& ctx, bool* resumed,
                                      SSL_SESSION* resume = nullptr, int version = TLS1_3_VERSION) {
    Client c(version, "localhost", resume);
    auto s = OpenSslServerSession::make(ctx);
    EXPECT_TRUE(s);
    EXPECT_TRUE(handshake(c, *s));
    c.write("<ping/>");
    c.to(*s);
    EXPECT_EQ(read_server(*s), "<ping/>");
    EXPECT_TRUE(s->write_plaintext(std::span<const char>("<pong/>", 7)));
    c.from(*s);
    EXPECT_EQ(c.read_all(), "<pong/>");
    *resumed = s->is_resumed();
    EXPECT_EQ(*resumed, SSL_session_reused(c.ssl()) == 1);
    return SSL_get1_session(c.ssl());
}

}  // namespace

TEST(OpenSslServer, NegotiatesTls13AndExchangesDataBothWays) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c;
    auto s = OpenSslServerSession::make(ctx);
    ASSERT_TRUE(s);
    ASSERT_TRUE(handshake(c, *s));
    EXPECT_EQ(s->protocol_version(), "TLSv1.3");
    EXPECT_EQ(s->cipher_suite(), "TLS_AES_128_GCM_SHA256");
    EXPECT_FALSE(s->is_resumed());
    c.write("<stream:stream>");
    c.to(*s);
    EXPECT_EQ(read_server(*s), "<stream:stream>");
    // More than the output cap (64 KiB): taken in steps as the peer drains it.
    const std::string big(100'000, 'x');
    std::size_t off = 0;
    std::string got;
    for (int i = 0; i < 10 && off < big.size(); ++i) {
        auto w = s->write_plaintext(std::span<const char>(big.data() + off, big.size() - off));
        ASSERT_TRUE(w);
        ASSERT_GT(*w, 0u);
        off += *w;
        c.from(*s);
        got += c.read_all();
    }
    EXPECT_EQ(got, big);
}

TEST(OpenSslServer, ServesTls12ToTheMbedTlsClientEngine) {
    OpenSslServerContext sctx(config_for({"localhost"}));
    TlsClientConfig cc;
    cc.ca = PemSource::text(cert_for("localhost").cert_pem);
    TlsClientContext cctx(cc);
    auto c = TlsSession::client(cctx, "localhost");
    auto s = OpenSslServerSession::make(sctx);
    ASSERT_TRUE(c && s);
    bool done = false;
    for (int i = 0; i < 20 && !done; ++i) {
        auto cr = c->handshake();
        ASSERT_TRUE(cr) << c->error_detail();
        std::string ct;
        c->drain_ciphertext(ct);
        ASSERT_TRUE(s->receive_ciphertext(ct));
        auto sr = s->handshake();
        ASSERT_TRUE(sr) << s->error_detail();
        ct.clear();
        s->drain_ciphertext(ct);
        ASSERT_TRUE(c->receive_ciphertext(ct));
        done = *cr == HandshakeStatus::done && *sr == HandshakeStatus::done;
    }
    ASSERT_TRUE(done);
    EXPECT_EQ(s->protocol_version(), "TLSv1.2");
    EXPECT_EQ(s->cipher_suite(), "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    ASSERT_TRUE(c->write_plaintext(std::span<const char>("hello", 5)));
    std::string ct;
    c->drain_ciphertext(ct);
    ASSERT_TRUE(s->receive_ciphertext(ct));
    EXPECT_EQ(read_server(*s), "hello");
}

TEST(OpenSslServer, SniSelectsTheCertificateOfTheRequestedDomain) {
    OpenSslServerContext ctx(config_for({"a.example", "b.example"}));
    for (const std::string name : {"b.example", "B.Example", "unknown.example"}) {
        Client c(TLS1_3_VERSION, name);
        auto s = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(handshake(c, *s));
        X509* leaf = SSL_get0_peer_certificate(c.ssl());
        ASSERT_NE(leaf, nullptr);
        char cn[64] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
        const bool known = name != "unknown.example";
        EXPECT_EQ(std::string(cn), known ? "b.example" : "a.example") << name;
        EXPECT_EQ(s->is_server_name_known(), known);
        EXPECT_EQ(s->server_name(), known ? "b.example" : "unknown.example");
        // tls-server-end-point is the certificate this handshake sent (hashed once per identity
        // at load), not the default identity's.
        std::uint8_t want[32];
        unsigned int len = 0;
        X509_digest(leaf, EVP_sha256(), want, &len);
        EXPECT_EQ(s->server_end_point(), std::vector<std::uint8_t>(want, want + 32)) << name;
    }
}

TEST(OpenSslServer, RefusesTls11) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c(TLS1_1_VERSION);
    auto s = OpenSslServerSession::make(ctx);
    EXPECT_FALSE(handshake(c, *s));
    EXPECT_EQ(s->error(), TlsError::protocol_version) << s->error_detail();
}

TEST(OpenSslServer, GarbageInsteadOfClientHelloIsBadRecord) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    auto s = OpenSslServerSession::make(ctx);
    const std::string junk = "<stream:stream to='localhost' xmlns='jabber:client'>";
    ASSERT_TRUE(s->receive_ciphertext(junk));
    EXPECT_FALSE(s->handshake());
    EXPECT_EQ(s->error(), TlsError::bad_record) << s->error_detail();
    // The error sticks.
    EXPECT_FALSE(s->read_plaintext(std::span<char>()).has_value() && s->error() == TlsError::none);
}

TEST(OpenSslServer, RefusesClientInitiatedRenegotiation) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c(TLS1_2_VERSION);
    auto s = OpenSslServerSession::make(ctx);
    ASSERT_TRUE(handshake(c, *s));
    ASSERT_EQ(s->protocol_version(), "TLSv1.2");
    ASSERT_EQ(SSL_renegotiate(c.ssl()), 1);
    (void)c.step();
    c.to(*s);
    char buf[64];
    auto r = s->read_plaintext(buf);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), TlsError::handshake_failed);
    EXPECT_NE(s->error_detail().find("renegotiation"), std::string::npos) << s->error_detail();
    // The fatal alert is queued for the client.
    EXPECT_FALSE(s->pending_ciphertext().empty());
}

TEST(OpenSslServer, TicketResumesAcrossContextsSharingKeysAndExpiresAfterTwoRotations) {
    auto keys = std::make_shared<TicketKeys>();
    OpenSslServerOptions opts;
    opts.ticket_keys = keys;
    OpenSslServerContext shard_a(config_for({"localhost"}), opts);
    OpenSslServerContext shard_b(config_for({"localhost"}), opts);  // another shard, or a reload
    bool resumed = true;
    SSL_SESSION* first = connect_and_keep_session(shard_a, &resumed);
    EXPECT_FALSE(resumed);
    ASSERT_NE(first, nullptr);
    SSL_SESSION* second = connect_and_keep_session(shard_b, &resumed, first);
    EXPECT_TRUE(resumed);
    keys->rotate();  // the ticket's key is now the previous one: still accepted
    SSL_SESSION* third = connect_and_keep_session(shard_a, &resumed, first);
    EXPECT_TRUE(resumed);
    keys->rotate();
    keys->rotate();  // retired
    SSL_SESSION* fourth = connect_and_keep_session(shard_a, &resumed, first);
    EXPECT_FALSE(resumed);
    EXPECT_EQ(keys->rotations(), 3u);
    for (SSL_SESSION* p : {first, second, third, fourth}) SSL_SESSION_free(p);
}

// A device reconnects with the ticket of its last connection, each time. RFC 8446 §C.4: a client
// should not use a TLS 1.3 ticket twice, so every resumed 1.3 handshake must hand out a fresh
// one (OpenSSL's server sends none after a resumption unless the ticket callback asks).
TEST(OpenSslServer, EveryResumedTls13HandshakeIssuesAFreshTicket) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    bool resumed = true;
    SSL_SESSION* last = connect_and_keep_session(ctx, &resumed);
    EXPECT_FALSE(resumed);
    ASSERT_NE(last, nullptr);
    for (int i = 0; i < 4; ++i) {
        SSL_SESSION* next = connect_and_keep_session(ctx, &resumed, last);
        EXPECT_TRUE(resumed) << "reconnect " << i;
        // A new ticket arrived: the client holds a new session, not the one it offered.
        EXPECT_NE(next, last) << "reconnect " << i << ": no fresh ticket";
        SSL_SESSION_free(last);
        last = next;
    }
    SSL_SESSION_free(last);
}

TEST(OpenSslServer, Tls12TicketResumesAndDataFlowsOnTheOwnRecordLayer) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    bool resumed = true;
    SSL_SESSION* first = connect_and_keep_session(ctx, &resumed, nullptr, TLS1_2_VERSION);
    EXPECT_FALSE(resumed);
    // connect_and_keep_session exchanges a line each way after the abbreviated handshake.
    SSL_SESSION* second = connect_and_keep_session(ctx, &resumed, first, TLS1_2_VERSION);
    EXPECT_TRUE(resumed);
    SSL_SESSION_free(first);
    SSL_SESSION_free(second);
}

TEST(OpenSslServer, ContextWithOtherKeysDoesNotResume) {
    OpenSslServerContext a(config_for({"localhost"}));
    OpenSslServerContext b(config_for({"localhost"}));
    bool resumed = true;
    SSL_SESSION* first = connect_and_keep_session(a, &resumed);
    SSL_SESSION* second = connect_and_keep_session(b, &resumed, first);
    EXPECT_FALSE(resumed);
    SSL_SESSION_free(first);
    SSL_SESSION_free(second);
}

TEST(OpenSslServer, TicketsCanBeTurnedOff) {
    OpenSslServerOptions opts;
    opts.session_tickets = false;
    OpenSslServerContext ctx(config_for({"localhost"}), opts);
    EXPECT_EQ(ctx.ticket_keys(), nullptr);
    bool resumed = true;
    SSL_SESSION* first = connect_and_keep_session(ctx, &resumed);
    SSL_SESSION* second = connect_and_keep_session(ctx, &resumed, first);
    EXPECT_FALSE(resumed);
    SSL_SESSION_free(first);
    SSL_SESSION_free(second);
}

TEST(OpenSslServer, ExporterAndServerEndPointMatchWhatTheClientComputes) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c;
    auto s = OpenSslServerSession::make(ctx);
    std::uint8_t before[32];
    EXPECT_FALSE(s->export_keying_material(before, "EXPORTER-Channel-Binding"));
    EXPECT_TRUE(s->server_end_point().empty());
    ASSERT_TRUE(handshake(c, *s));
    std::uint8_t server_side[32] = {};
    std::uint8_t client_side[32] = {};
    ASSERT_TRUE(s->export_keying_material(server_side, "EXPORTER-Channel-Binding"));
    const char label[] = "EXPORTER-Channel-Binding";
    ASSERT_EQ(SSL_export_keying_material(c.ssl(), client_side, 32, label, sizeof label - 1, nullptr, 0, 1), 1);
    EXPECT_EQ(std::memcmp(server_side, client_side, 32), 0);
    // RFC 5929 §4.1: ECDSA with SHA-256 → the SHA-256 of the certificate's DER.
    std::uint8_t want[32];
    unsigned int len = 0;
    X509_digest(SSL_get0_peer_certificate(c.ssl()), EVP_sha256(), want, &len);
    EXPECT_EQ(s->server_end_point(), std::vector<std::uint8_t>(want, want + 32));
    EXPECT_FALSE(s->peer_certificate());  // no client certificate asked for
}

// The client presents `cert` (PEM certificate and key) in the handshake.
void present(Client& c, const CertificateAndKey& cert) {
    BIO* cb = BIO_new_mem_buf(cert.cert_pem.data(), static_cast<int>(cert.cert_pem.size()));
    BIO* kb = BIO_new_mem_buf(cert.key_pem.data(), static_cast<int>(cert.key_pem.size()));
    X509* x = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    EVP_PKEY* k = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    ASSERT_NE(x, nullptr);
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(SSL_use_certificate(c.ssl(), x), 1);
    EXPECT_EQ(SSL_use_PrivateKey(c.ssl(), k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
}

TlsServerConfig asking_for_client_certificates() {
    TlsServerConfig config = config_for({"localhost"});
    config.client_auth = ClientAuth::optional;
    config.client_ca = PemSource::text(cert_for("device-ca.example").cert_pem);
    return config;
}

TEST(OpenSslServer, OptionalClientCertificateMayBeAbsent) {
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
        OpenSslServerContext ctx(asking_for_client_certificates());
        Client c(version);
        auto s = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(handshake(c, *s)) << version;
        EXPECT_FALSE(s->peer_certificate());
        s->release_peer_certificate();  // nothing to release: harmless
        EXPECT_FALSE(s->peer_certificate());
    }
}

TEST(OpenSslServer, ClientCertificateFromAnotherCaFailsTheHandshake) {
    OpenSslServerContext ctx(asking_for_client_certificates());
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
        Client c(version);
        present(c, cert_for("foreign-device.example"));
        auto s = OpenSslServerSession::make(ctx);
        EXPECT_FALSE(handshake(c, *s)) << version;
        EXPECT_EQ(s->error(), TlsError::certificate_untrusted) << s->error_detail();
        EXPECT_FALSE(s->is_handshake_done());
    }
}

TEST(OpenSslServerConfig, RejectsAClientCrlSourceWithoutCrls) {
    TlsServerConfig config = asking_for_client_certificates();
    config.client_crl = PemSource::text(cert_for("device-ca.example").cert_pem);  // a certificate, not a CRL
    EXPECT_THROW(OpenSslServerContext ctx(config), TlsConfigError);
}

TEST(OpenSslServer, CloseNotifyIsSentAndPeerCloseIsSeen) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c;
    auto s = OpenSslServerSession::make(ctx);
    ASSERT_TRUE(handshake(c, *s));
    ASSERT_TRUE(s->close());
    c.from(*s);
    (void)c.read_all();
    EXPECT_EQ(SSL_get_shutdown(c.ssl()) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
    EXPECT_FALSE(s->write_plaintext(std::span<const char>("x", 1)));
    SSL_shutdown(c.ssl());
    c.to(*s);
    char buf[16];
    auto r = s->read_plaintext(buf);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 0u);
    EXPECT_TRUE(s->is_peer_closed());
}

TEST(OpenSslServer, CiphertextInputIsCappedAtTheLimit) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    TlsLimits limits;
    limits.max_ciphertext_in = 100;
    auto s = OpenSslServerSession::make(ctx, limits);
    const std::string data(101, '\x16');
    EXPECT_EQ(s->ciphertext_space(), 100u);
    auto r = s->receive_ciphertext(data);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), TlsError::input_overflow);
    EXPECT_TRUE(s->receive_ciphertext(std::span<const char>(data.data(), 100)));
    EXPECT_EQ(s->ciphertext_space(), 0u);
}

// Every suite of the policy, on our record layer once the handshake is over: data both ways
// (more than one record), then close_notify both ways.
TEST(OpenSslServer, EverySuiteRunsOnTheOwnRecordLayer) {
    struct Row {
        int version;
        const char* client_suites;
        const char* negotiated;
    };
    const Row rows[] = {
        {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"},
        {TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
        {TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    };
    OpenSslServerContext ctx(config_for({"localhost"}));
    for (const Row& row : rows) {
        SCOPED_TRACE(row.client_suites);
        Client c(row.version, "localhost", nullptr, row.client_suites);
        auto s = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(handshake(c, *s));
        EXPECT_EQ(s->cipher_suite(), row.negotiated);
        EXPECT_TRUE(s->uses_own_record_layer());
        const std::string up(40'000, 'u');
        c.write(up);
        c.to(*s);
        EXPECT_EQ(read_server(*s), up);
        const std::string down = "<message>" + std::string(20'000, 'd') + "</message>";
        ASSERT_TRUE(s->write_plaintext(std::span<const char>(down.data(), down.size())));
        c.from(*s);
        EXPECT_EQ(c.read_all(), down);
        // Our exporter value is the one the client computes (RFC 9266).
        std::uint8_t ours[32], theirs[32];
        ASSERT_TRUE(s->export_keying_material(ours, "EXPORTER-Channel-Binding"));
        const char label[] = "EXPORTER-Channel-Binding";
        ASSERT_EQ(SSL_export_keying_material(c.ssl(), theirs, 32, label, sizeof label - 1, nullptr, 0, 1), 1);
        EXPECT_EQ(std::memcmp(ours, theirs, 32), 0);
        ASSERT_TRUE(s->close());
        c.from(*s);
        (void)c.read_all();
        EXPECT_EQ(SSL_get_shutdown(c.ssl()) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
        SSL_shutdown(c.ssl());
        c.to(*s);
        char buf[16];
        auto r = s->read_plaintext(buf);
        ASSERT_TRUE(r);
        EXPECT_TRUE(s->is_peer_closed());
    }
}

// What the c2s session does on its hot path: records sealed straight into its wire buffer
// (seal_into), and small records opened straight into the reader's span, records that do not
// fit there through the stack, across every suite of our record layer.
TEST(OpenSslServer, SealIntoAWireBufferAndOpenIntoTheCallersSpanKeepEveryByteInOrder) {
    const std::pair<int, const char*> suites[] = {
        {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},       {TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},
        {TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"}, {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384"}, {TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
    };
    OpenSslServerContext ctx(config_for({"localhost"}));
    for (const auto& [version, suite] : suites) {
        SCOPED_TRACE(suite);
        Client c(version, "localhost", nullptr, suite);
        auto s = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(handshake(c, *s));
        ASSERT_TRUE(s->uses_own_record_layer());
        // Many small records (one per stanza, as a device sends them), then one larger than
        // the reader's span: read in 1,000-byte spans, some records open in place, some not.
        std::string up;
        for (int i = 0; i < 50; ++i) {
            const std::string m = "<message id='" + std::to_string(i) + "'><body>" + std::string(i * 7, 'b') + "</body></message>";
            c.write(m);
            up += m;
        }
        const std::string large(5'000, 'L');
        c.write(large);
        up += large;
        c.to(*s);
        std::string got;
        char buf[1000];
        for (;;) {
            auto r = s->read_plaintext(buf);
            ASSERT_TRUE(r);
            if (*r == 0) break;
            got.append(buf, *r);
        }
        EXPECT_EQ(got, up);
        // Down: a wire buffer that already holds bytes keeps them first; a batch over one
        // record's payload is split in records the client reads back whole and in order.
        std::string wire;
        const std::string batch = "<a/>" + std::string(40'000, 'd') + "<z/>";
        auto took = s->seal_into(std::span<const char>(batch.data(), batch.size()), wire);
        ASSERT_TRUE(took);
        EXPECT_EQ(*took, batch.size());
        EXPECT_EQ(s->pending_ciphertext().size(), 0u);
        auto second = s->seal_into(std::span<const char>("<b/>", 4), wire);
        ASSERT_TRUE(second);
        EXPECT_EQ(*second, 4u);
        c.feed(wire);
        EXPECT_EQ(c.read_all(), batch + "<b/>");
        // An alert queued by the engine (close_notify) goes out after what was sealed.
        ASSERT_TRUE(s->close());
        EXPECT_FALSE(s->seal_into(std::span<const char>("<late/>", 7), wire));
        std::string tail;
        s->drain_ciphertext(tail);
        c.feed(tail);
        (void)c.read_all();
        EXPECT_EQ(SSL_get_shutdown(c.ssl()) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
        s->release_idle_buffers();
    }
}

// The record layer's per-thread cipher contexts keep the last key's schedule: records of
// several sessions and suites, both directions, interleaved on one thread (as a shard serves
// them), each open and seal with its own session's keys; a forged record in the middle fails
// alone and the others go on.
TEST(OpenSslServer, RecordsOfManySessionsInterleavedOnOneThreadUseEachTheirOwnKeys) {
    struct Peer {
        std::unique_ptr<Client> client;
        std::unique_ptr<OpenSslServerSession> server;
    };
    const std::pair<int, const char*> suites[] = {
        {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},        {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},
        {TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},        {TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"}, {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
        {TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
    };
    OpenSslServerContext ctx(config_for({"localhost"}));
    std::vector<Peer> peers;
    for (const auto& [version, suite] : suites) {
        auto made = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(made);
        Peer p{std::make_unique<Client>(version, "localhost", nullptr, suite),
               std::make_unique<OpenSslServerSession>(std::move(*made))};
        ASSERT_TRUE(handshake(*p.client, *p.server)) << suite;
        ASSERT_TRUE(p.server->uses_own_record_layer()) << suite;
        peers.push_back(std::move(p));
    }
    for (int round = 0; round < 3; ++round) {
        // Up: each client writes two records; the server opens them peer after peer.
        for (std::size_t k = 0; k < peers.size(); ++k) {
            peers[k].client->write("<up r='" + std::to_string(round) + "' k='" + std::to_string(k) + "'/>");
            peers[k].client->write(std::string(100 + k, 'x'));
        }
        for (std::size_t k = 0; k < peers.size(); ++k) {
            peers[k].client->to(*peers[k].server);
            EXPECT_EQ(read_server(*peers[k].server),
                      "<up r='" + std::to_string(round) + "' k='" + std::to_string(k) + "'/>" + std::string(100 + k, 'x'));
        }
        // Down, alternating with up on the next peer.
        for (std::size_t k = 0; k < peers.size(); ++k) {
            const std::string down = "<down r='" + std::to_string(round) + "' k='" + std::to_string(k) + "'/>";
            ASSERT_TRUE(peers[k].server->write_plaintext(std::span<const char>(down.data(), down.size())));
            peers[k].client->from(*peers[k].server);
            EXPECT_EQ(peers[k].client->read_all(), down);
        }
    }
    // A record sealed by peer 0's client, fed to peer 1's server: authentication fails there
    // only; peer 0 (same suite) and the others still exchange data.
    peers[0].client->write("<stolen/>");
    OpenSslServerSession& victim = *peers[1].server;
    {
        std::string ct;
        // Take peer 0's ciphertext out of its client without giving it to peer 0's server.
        Peer& p0 = peers[0];
        char buf[4096];
        int n;
        while ((n = BIO_read(SSL_get_wbio(p0.client->ssl()), buf, sizeof buf)) > 0) ct.append(buf, static_cast<std::size_t>(n));
        ASSERT_FALSE(ct.empty());
        (void)victim.receive_ciphertext(std::span<const char>(ct.data(), ct.size()));
        char out[64];
        auto r = victim.read_plaintext(out);
        EXPECT_FALSE(r && *r > 0) << "a record under another session's key was accepted";
    }
    for (std::size_t k = 2; k < peers.size(); ++k) {
        peers[k].client->write("<after/>");
        peers[k].client->to(*peers[k].server);
        EXPECT_EQ(read_server(*peers[k].server), "<after/>") << k;
    }
}

TEST(OpenSslServer, KeyUpdateFromTheClientIsAnsweredAndDataFlowsOn) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    Client c;
    auto s = OpenSslServerSession::make(ctx);
    ASSERT_TRUE(handshake(c, *s));
    ASSERT_TRUE(s->uses_own_record_layer());
    for (int round = 0; round < 3; ++round) {
        ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
        c.write("<r" + std::to_string(round) + "/>");
        c.to(*s);
        EXPECT_EQ(read_server(*s), "<r" + std::to_string(round) + "/>");
        ASSERT_TRUE(s->write_plaintext(std::span<const char>("<a/>", 4)));
        c.from(*s);  // our KeyUpdate, then the data under the new key
        EXPECT_EQ(c.read_all(), "<a/>");
    }
}

TEST(OpenSslServer, KeyUpdateRequestsFasterThanOutputIsReadEndTheSession) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    TlsLimits limits;
    limits.max_ciphertext_out = 1000;  // about 45 KeyUpdate answers
    Client c;
    auto s = OpenSslServerSession::make(ctx, limits);
    ASSERT_TRUE(handshake(c, *s));
    for (int i = 0; i < 100; ++i) {
        ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
        c.write("x");
    }
    c.to(*s);  // the server's output is never drained
    char buf[256];
    xmpp::Result<std::size_t, TlsError> r = std::size_t{0};
    for (int i = 0; i < 100 && r && s->error() == TlsError::none; ++i) r = s->read_plaintext(buf);
    EXPECT_EQ(s->error(), TlsError::internal);
    EXPECT_NE(s->error_detail().find("KeyUpdate"), std::string::npos);
    EXPECT_LT(s->pending_ciphertext().size(), 1100u);
}

TEST(OpenSslServer, TamperedRecordAfterHandshakeIsBadRecord) {
    OpenSslServerContext ctx(config_for({"localhost"}));
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
        Client c(version);
        auto s = OpenSslServerSession::make(ctx);
        ASSERT_TRUE(handshake(c, *s));
        c.write("<iq/>");
        char buf[512];
        int n = BIO_read(SSL_get_wbio(c.ssl()), buf, sizeof buf);
        ASSERT_GT(n, 10);
        buf[n - 3] ^= 0x40;
        ASSERT_TRUE(s->receive_ciphertext(std::span<const char>(buf, static_cast<std::size_t>(n))));
        char out[64];
        auto r = s->read_plaintext(out);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), TlsError::bad_record);
        EXPECT_FALSE(s->pending_ciphertext().empty());  // the alert
    }
}

TEST(OpenSslServer, OpenSslRecordLayerCanBeKept) {
    OpenSslServerOptions opts;
    opts.own_record_layer = false;
    OpenSslServerContext ctx(config_for({"localhost"}), opts);
    Client c;
    auto s = OpenSslServerSession::make(ctx);
    ASSERT_TRUE(handshake(c, *s));
    EXPECT_FALSE(s->uses_own_record_layer());
    c.write("<x/>");
    c.to(*s);
    EXPECT_EQ(read_server(*s), "<x/>");
}

TEST(OpenSslServerConfig, RejectsAKeyThatDoesNotMatchItsCertificate) {
    TlsServerConfig config;
    TlsIdentity id;
    id.cert_chain = PemSource::text(cert_for("a.example").cert_pem);
    id.private_key = PemSource::text(cert_for("b.example").key_pem);
    config.identities.push_back(id);
    EXPECT_THROW(OpenSslServerContext{config}, TlsConfigError);
}

TEST(OpenSslServerConfig, NamesTheMissingFile) {
    TlsServerConfig config;
    TlsIdentity id;
    id.cert_chain = PemSource::file("/nonexistent/cert.pem");
    id.private_key = PemSource::file("/nonexistent/key.pem");
    config.identities.push_back(id);
    try {
        OpenSslServerContext ctx(config);
        FAIL() << "no error";
    } catch (const TlsConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos) << e.what();
    }
}
