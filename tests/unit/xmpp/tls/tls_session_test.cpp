#include "xmpp/tls/tls_session.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "xmpp/tls/self_signed.hpp"
#include "xmpp/tls/tls_context.hpp"

using namespace xmpp::tls;

namespace {

std::span<const char> bytes(const std::string& s) { return {s.data(), s.size()}; }

// Certificates are slow-ish to make: one per name for the whole test binary.
const CertificateAndKey& cert_for(const std::string& name) {
    static std::map<std::string, CertificateAndKey> cache;  // node-based: references stay valid
    auto it = cache.find(name);
    if (it == cache.end()) {
        const std::string names[] = {name};
        it = cache.emplace(name, generate_self_signed(names)).first;
    }
    return it->second;
}

TlsIdentity identity_for(const std::string& name) {
    TlsIdentity id;
    id.cert_chain = PemSource::text(cert_for(name).cert_pem);
    id.private_key = PemSource::text(cert_for(name).key_pem);
    return id;
}

TlsServerContext server_for(std::initializer_list<std::string> names) {
    TlsServerConfig config;
    for (const auto& n : names) config.identities.push_back(identity_for(n));
    return TlsServerContext(config);
}

TlsClientContext client_trusting(const std::string& name, bool verify_hostname = true) {
    TlsClientConfig config;
    config.ca = PemSource::text(cert_for(name).cert_pem);
    config.verify_hostname = verify_hostname;
    return TlsClientContext(config);
}

TlsClientContext client_unverified() {
    TlsClientConfig config;
    config.verify_peer = false;
    return TlsClientContext(config);
}

// Moves what `from` has to send into `to`, as far as `to` accepts.
void shuttle(TlsSession& from, TlsSession& to) {
    auto pending = from.pending_ciphertext();
    const std::size_t n = std::min(pending.size(), to.ciphertext_space());
    if (n == 0) return;
    ASSERT_TRUE(to.receive_ciphertext(pending.first(n)));
    from.consume_ciphertext(n);
}

// Runs both handshakes to the end or to the first error. True when both are done.
bool handshake(TlsSession& client, TlsSession& server) {
    for (int i = 0; i < 20; ++i) {
        auto c = client.handshake();
        shuttle(client, server);
        auto s = server.handshake();
        shuttle(server, client);
        if (!c || !s) {
            // Deliver the fatal alert too, so the other side sees the failure.
            (void)client.handshake();
            (void)server.handshake();
            return false;
        }
        if (*c == HandshakeStatus::done && *s == HandshakeStatus::done) return true;
    }
    return false;
}

struct Pair {
    TlsSession client;
    TlsSession server;
};

Pair connected(const TlsClientContext& cctx, const TlsServerContext& sctx, const std::string& name,
               const TlsLimits& limits = {}) {
    auto c = TlsSession::client(cctx, name, limits);
    auto s = TlsSession::server(sctx, limits);
    EXPECT_TRUE(c && s);
    Pair p{std::move(*c), std::move(*s)};
    EXPECT_TRUE(handshake(p.client, p.server));
    return p;
}

// Sends `data` from `a` to `b` in writes of the sizes `piece` gives, reading everything.
std::string transfer(TlsSession& a, TlsSession& b, const std::string& data,
                     const std::function<std::size_t()>& piece) {
    std::string got;
    std::vector<char> buf(7000);
    std::size_t off = 0;
    int idle = 0;
    while ((off < data.size() || !a.pending_ciphertext().empty() || got.size() < data.size()) &&
           idle < 1000) {
        if (off < data.size()) {
            const std::size_t n = std::min(piece(), data.size() - off);
            auto w = a.write_plaintext(std::span<const char>(data.data() + off, n));
            EXPECT_TRUE(w);
            if (!w) break;
            off += *w;
        }
        shuttle(a, b);
        for (;;) {
            auto r = b.read_plaintext(buf);
            EXPECT_TRUE(r);
            if (!r || *r == 0) break;
            got.append(buf.data(), *r);
        }
        ++idle;
    }
    return got;
}

// Counts TLS records (RFC 5246 §6.2) in a ciphertext stream.
std::size_t count_records(std::span<const char> ct) {
    std::size_t n = 0;
    std::size_t off = 0;
    while (off + 5 <= ct.size()) {
        const auto len = static_cast<std::size_t>(static_cast<std::uint8_t>(ct[off + 3])) << 8 |
                         static_cast<std::uint8_t>(ct[off + 4]);
        off += 5 + len;
        ++n;
    }
    EXPECT_EQ(off, ct.size());
    return n;
}

}  // namespace

TEST(TlsSession, CompletesHandshakeAndExchangesDataBothWays) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_trusting("a.example");
    auto p = connected(cctx, sctx, "a.example");
    ASSERT_TRUE(p.client.is_handshake_done());
    ASSERT_TRUE(p.server.is_handshake_done());
    EXPECT_EQ(p.client.protocol_version(), "TLSv1.2");
    EXPECT_NE(p.client.cipher_suite().find("ECDHE-ECDSA"), std::string_view::npos);
    EXPECT_EQ(p.server.server_name(), "a.example");

    const std::string hello = "<stream:stream to='a.example'>";
    ASSERT_EQ(*p.client.write_plaintext(bytes(hello)), hello.size());
    shuttle(p.client, p.server);
    char buf[256];
    auto r = p.server.read_plaintext(buf);
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(buf, *r), hello);

    const std::string answer = "<stream:features/>";
    ASSERT_EQ(*p.server.write_plaintext(bytes(answer)), answer.size());
    std::string wire;
    p.server.drain_ciphertext(wire);
    EXPECT_TRUE(p.server.pending_ciphertext().empty());
    ASSERT_TRUE(p.client.receive_ciphertext(bytes(wire)));
    r = p.client.read_plaintext(buf);
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(buf, *r), answer);

    auto cert = p.client.peer_certificate();
    ASSERT_TRUE(cert);
    EXPECT_TRUE(cert->verified);
    EXPECT_EQ(cert->subject_cn, "a.example");
    EXPECT_EQ(cert->dns_names, std::vector<std::string>{"a.example"});
    EXPECT_FALSE(p.server.peer_certificate());  // no client certificate asked for
}

TEST(TlsSession, TransfersOneMegabyteInUnevenPieces) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    std::string data(1 << 20, '\0');
    std::mt19937 rng(42);
    for (char& c : data) c = static_cast<char>(rng());
    std::uniform_int_distribution<std::size_t> size(1, 40000);
    EXPECT_EQ(transfer(p.client, p.server, data, [&] { return size(rng); }), data);
    EXPECT_EQ(transfer(p.server, p.client, data, [&] { return size(rng); }), data);
}

TEST(TlsSession, TransfersOneBytePieces) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    const std::string data = "<message to='x@a.example'><body>hi</body></message>";
    EXPECT_EQ(transfer(p.client, p.server, data, [] { return std::size_t{1}; }), data);
}

TEST(TlsSession, FeedsCiphertextOneByteAtATime) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto c = TlsSession::client(cctx, "a.example");
    auto s = TlsSession::server(sctx);
    ASSERT_TRUE(c && s);
    for (int i = 0; i < 100000 && !(c->is_handshake_done() && s->is_handshake_done()); ++i) {
        ASSERT_TRUE(c->handshake());
        ASSERT_TRUE(s->handshake());
        for (auto [from, to] : {std::pair{&*c, &*s}, std::pair{&*s, &*c}}) {
            auto pend = from->pending_ciphertext();
            if (!pend.empty()) {
                ASSERT_TRUE(to->receive_ciphertext(pend.first(1)));
                from->consume_ciphertext(1);
            }
        }
    }
    EXPECT_TRUE(c->is_handshake_done() && s->is_handshake_done());
}

TEST(TlsSession, BatchOfSmallPiecesBecomesOneRecord) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    std::vector<std::string> stanzas;
    for (int i = 0; i < 100; ++i) stanzas.push_back("<presence id='" + std::to_string(i) + "'/>");
    std::vector<std::span<const char>> pieces;
    std::size_t total = 0;
    for (const auto& st : stanzas) {
        pieces.push_back(bytes(st));
        total += st.size();
    }
    auto w = p.server.write_plaintext(std::span<const std::span<const char>>(pieces));
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, total);
    EXPECT_EQ(count_records(p.server.pending_ciphertext()), 1u);

    shuttle(p.server, p.client);
    std::string got(total + 10, '\0');
    auto r = p.client.read_plaintext(got);
    ASSERT_TRUE(r);
    got.resize(*r);
    std::string expected;
    for (const auto& st : stanzas) expected += st;
    EXPECT_EQ(got, expected);
}

TEST(TlsSession, LargeWriteUsesFullSixteenKibRecords) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    const std::string data(40000, 'x');  // 16384 + 16384 + 7232
    const std::string small(100, 'y');
    const std::span<const char> pieces[] = {bytes(small), bytes(data)};
    auto w = p.client.write_plaintext(std::span<const std::span<const char>>(pieces));
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, 40100u);
    EXPECT_EQ(count_records(p.client.pending_ciphertext()), 3u);
}

TEST(TlsSession, SniSelectsTheCertificateOfTheRequestedDomain) {
    auto sctx = server_for({"a.example", "b.example"});
    EXPECT_EQ(sctx.names(), (std::vector<std::string>{"a.example", "b.example"}));
    for (const std::string name : {"a.example", "b.example"}) {
        auto cctx = client_trusting(name);
        auto p = connected(cctx, sctx, name);
        ASSERT_TRUE(p.client.is_handshake_done()) << name;
        EXPECT_EQ(p.server.server_name(), name);
        EXPECT_TRUE(p.server.is_server_name_known());
        EXPECT_EQ(p.client.peer_certificate()->dns_names, std::vector<std::string>{name});
    }
}

TEST(TlsSession, UnknownSniGetsTheDefaultCertificate) {
    auto sctx = server_for({"a.example", "b.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "Other.Example");
    EXPECT_EQ(p.server.server_name(), "other.example");  // lower-cased
    EXPECT_FALSE(p.server.is_server_name_known());
    EXPECT_EQ(p.client.peer_certificate()->subject_cn, "a.example");
}

TEST(TlsSession, WildcardIdentityAnswersForOneLabel) {
    auto sctx = server_for({"a.example", "*.b.example"});
    auto cctx = client_trusting("*.b.example");
    auto p = connected(cctx, sctx, "pubsub.b.example");
    EXPECT_TRUE(p.client.is_handshake_done());
    EXPECT_TRUE(p.server.is_server_name_known());
}

TEST(TlsSession, VerifyingClientRejectsUnknownSelfSignedCertificate) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_trusting("b.example");  // trusts another certificate only
    auto c = TlsSession::client(cctx, "a.example");
    auto s = TlsSession::server(sctx);
    ASSERT_TRUE(c && s);
    EXPECT_FALSE(handshake(*c, *s));
    EXPECT_EQ(c->error(), TlsError::certificate_untrusted) << c->error_detail();
    EXPECT_NE(c->mbedtls_code(), 0);
    EXPECT_FALSE(c->error_detail().empty());
    // The server learns it from the client's alert.
    EXPECT_NE(s->error(), TlsError::none);
}

TEST(TlsSession, VerifyingClientWithSystemStoreRejectsSelfSigned) {
    if (!std::filesystem::exists(k_system_ca_file)) GTEST_SKIP() << "no system CA store";
    auto sctx = server_for({"a.example"});
    TlsClientContext cctx{TlsClientConfig{}};
    auto c = TlsSession::client(cctx, "a.example");
    auto s = TlsSession::server(sctx);
    ASSERT_TRUE(c && s);
    EXPECT_FALSE(handshake(*c, *s));
    EXPECT_EQ(c->error(), TlsError::certificate_untrusted);
}

TEST(TlsSession, HostnameMismatchIsRejectedUnlessTheCheckIsOff) {
    auto sctx = server_for({"a.example"});
    {
        auto cctx = client_trusting("a.example");
        auto c = TlsSession::client(cctx, "c.example");
        auto s = TlsSession::server(sctx);
        ASSERT_TRUE(c && s);
        EXPECT_FALSE(handshake(*c, *s));
        EXPECT_EQ(c->error(), TlsError::hostname_mismatch);
        EXPECT_EQ(to_string(c->error()), "hostname-mismatch");
    }
    {
        auto cctx = client_trusting("a.example", /*verify_hostname=*/false);
        auto p = connected(cctx, sctx, "c.example");
        EXPECT_TRUE(p.client.is_handshake_done());
        EXPECT_EQ(p.server.server_name(), "c.example");  // SNI still sent
    }
}

// SHA-256 of a certificate's SubjectPublicKeyInfo (what a public-key pin names).
std::array<std::uint8_t, 32> spki_sha256(const std::string& cert_pem) {
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    std::array<std::uint8_t, 32> out{};
    EXPECT_EQ(mbedtls_x509_crt_parse(&crt, reinterpret_cast<const unsigned char*>(cert_pem.c_str()),
                                     cert_pem.size() + 1),
              0);
    EXPECT_EQ(mbedtls_sha256_ret(crt.pk_raw.p, crt.pk_raw.len, out.data(), 0), 0);
    mbedtls_x509_crt_free(&crt);
    return out;
}

TEST(TlsSession, PinnedPublicKeyReplacesTheChainAndNameChecks) {
    auto sctx = server_for({"a.example"});
    const auto pin = spki_sha256(cert_for("a.example").cert_pem);
    {
        // No trust anchor for the self-signed certificate and another name: the pin alone decides.
        TlsClientConfig config;
        config.pinned_spki_sha256 = pin;
        TlsClientContext cctx(config);
        auto p = connected(cctx, sctx, "c.example");
        EXPECT_TRUE(p.client.is_handshake_done());
    }
    {
        auto wrong = pin;
        wrong[31] ^= 1;
        TlsClientConfig config;
        config.pinned_spki_sha256 = wrong;
        TlsClientContext cctx(config);
        auto c = TlsSession::client(cctx, "a.example");
        auto s = TlsSession::server(sctx);
        ASSERT_TRUE(c && s);
        EXPECT_FALSE(handshake(*c, *s));
        EXPECT_EQ(c->error(), TlsError::certificate_untrusted) << c->error_detail();
    }
    {
        // Another server's key (b.example) with a.example's pin.
        auto other = server_for({"b.example"});
        TlsClientConfig config;
        config.pinned_spki_sha256 = pin;
        TlsClientContext cctx(config);
        auto c = TlsSession::client(cctx, "b.example");
        auto s = TlsSession::server(other);
        ASSERT_TRUE(c && s);
        EXPECT_FALSE(handshake(*c, *s));
        EXPECT_EQ(c->error(), TlsError::certificate_untrusted);
    }
}

TEST(TlsSession, VerifyingClientNeedsAServerName) {
    auto cctx = client_trusting("a.example");
    auto c = TlsSession::client(cctx, "");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), TlsError::hostname_mismatch);
}

TEST(TlsSession, GarbageBeforeHandshakeIsAnError) {
    auto sctx = server_for({"a.example"});
    auto s = TlsSession::server(sctx);
    ASSERT_TRUE(s);
    // A client that speaks plain XMPP to a direct-TLS port (XEP-0368).
    const std::string junk = "<?xml version='1.0'?><stream:stream to='a.example' xmlns='jabber:client'>";
    ASSERT_TRUE(s->receive_ciphertext(bytes(junk)));
    auto h = s->handshake();
    ASSERT_FALSE(h);
    EXPECT_NE(s->error(), TlsError::none);
    // Sticky: the first error stays.
    const TlsError first = s->error();
    EXPECT_FALSE(s->receive_ciphertext(bytes(junk)));
    char buf[16];
    EXPECT_FALSE(s->read_plaintext(buf));
    EXPECT_EQ(s->error(), first);
}

TEST(TlsSession, RandomGarbageNeverCrashesEitherSide) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
        std::string junk(10 + rng() % 3000, '\0');
        for (char& c : junk) c = static_cast<char>(rng());
        const bool looks_like_tls = round % 2 == 0;
        if (looks_like_tls) {  // a whole handshake record with a random body
            const std::size_t len = junk.size() - 5;
            junk[0] = 0x16, junk[1] = 0x03, junk[2] = 0x03;
            junk[3] = static_cast<char>(len >> 8), junk[4] = static_cast<char>(len & 0xff);
        }
        auto s = TlsSession::server(sctx);
        auto c = TlsSession::client(cctx, "a.example");
        ASSERT_TRUE(s && c);
        (void)c->handshake();
        for (TlsSession* t : {&*s, &*c}) {
            (void)t->receive_ciphertext(bytes(junk));
            (void)t->handshake();
            char buf[64];
            (void)t->read_plaintext(buf);
        }
        if (looks_like_tls) {
            EXPECT_NE(s->error(), TlsError::none) << round;
        } else if (s->error() == TlsError::none) {
            // A random header can announce a record longer than what came: still waiting.
            auto h = s->handshake();
            ASSERT_TRUE(h);
            EXPECT_EQ(*h, HandshakeStatus::want_read);
        }
    }
}

TEST(TlsSession, CorruptedRecordAfterHandshakeIsBadRecord) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    ASSERT_TRUE(p.client.write_plaintext(bytes(std::string("<presence/>"))));
    std::string wire;
    p.client.drain_ciphertext(wire);
    wire[wire.size() - 3] ^= 0x40;  // flip a bit in the tag
    ASSERT_TRUE(p.server.receive_ciphertext(bytes(wire)));
    char buf[64];
    auto r = p.server.read_plaintext(buf);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), TlsError::bad_record);
}

TEST(TlsSession, CloseNotifyReachesThePeer) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto p = connected(cctx, sctx, "a.example");
    ASSERT_TRUE(p.client.write_plaintext(bytes(std::string("</stream:stream>"))));
    ASSERT_TRUE(p.client.close());
    ASSERT_TRUE(p.client.close());  // idempotent
    auto w = p.client.write_plaintext(bytes(std::string("late")));
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error(), TlsError::closed);
    shuttle(p.client, p.server);
    char buf[64];
    auto r = p.server.read_plaintext(buf);
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(buf, *r), "</stream:stream>");
    EXPECT_TRUE(p.server.is_peer_closed());
    EXPECT_EQ(*p.server.read_plaintext(buf), 0u);
    EXPECT_FALSE(p.server.write_plaintext(bytes(std::string("x"))));
    EXPECT_EQ(p.server.error(), TlsError::none);  // a clean close is not an error
}

TEST(TlsSession, CiphertextInputIsCappedAtTheLimit) {
    auto sctx = server_for({"a.example"});
    auto s = TlsSession::server(sctx, TlsLimits{.max_ciphertext_in = 100, .max_ciphertext_out = 1000});
    ASSERT_TRUE(s);
    EXPECT_EQ(s->ciphertext_space(), 100u);
    const std::string hundred(100, '\x16');
    ASSERT_TRUE(s->receive_ciphertext(bytes(hundred)));
    EXPECT_EQ(s->ciphertext_space(), 0u);
    auto r = s->receive_ciphertext(bytes(std::string(1, '\x16')));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), TlsError::input_overflow);
    EXPECT_EQ(s->error(), TlsError::none);  // not sticky: the caller just read too much
}

TEST(TlsSession, PlaintextIsRefusedOnceOutputReachesTheCap) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    const TlsLimits limits{.max_ciphertext_in = 64 * 1024, .max_ciphertext_out = 20000};
    auto p = connected(cctx, sctx, "a.example", limits);
    const std::string data(100000, 'z');
    auto w = p.server.write_plaintext(bytes(data));
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, 2u * 16384u);  // second record started below the cap, third not
    EXPECT_GE(p.server.pending_ciphertext().size(), 20000u);
    EXPECT_EQ(*p.server.write_plaintext(bytes(data)), 0u);
    p.server.consume_ciphertext(p.server.pending_ciphertext().size());
    EXPECT_GT(*p.server.write_plaintext(bytes(data)), 0u);
}

TEST(TlsSession, WritesBeforeHandshakeTakeNothing) {
    auto sctx = server_for({"a.example"});
    auto cctx = client_unverified();
    auto c = TlsSession::client(cctx, "a.example");
    ASSERT_TRUE(c);
    auto w = c->write_plaintext(bytes(std::string("early")));
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, 0u);
    EXPECT_FALSE(c->pending_ciphertext().empty());  // the ClientHello went out instead
}

TEST(TlsSession, ServerCanRequireAndReadADeviceCertificate) {
    TlsServerConfig config;
    config.identities.push_back(identity_for("a.example"));
    config.client_auth = ClientAuth::required;
    config.client_ca = PemSource::text(cert_for("sensor-1.devices.example").cert_pem);
    TlsServerContext sctx(config);
    {
        TlsClientConfig cc;
        cc.verify_peer = false;
        cc.identity = identity_for("sensor-1.devices.example");
        TlsClientContext cctx(cc);
        auto p = connected(cctx, sctx, "a.example");
        auto cert = p.server.peer_certificate();
        ASSERT_TRUE(cert);
        EXPECT_TRUE(cert->verified);
        EXPECT_EQ(cert->subject_cn, "sensor-1.devices.example");
    }
    {
        auto cctx = client_unverified();  // no certificate
        auto c = TlsSession::client(cctx, "a.example");
        auto s = TlsSession::server(sctx);
        ASSERT_TRUE(c && s);
        EXPECT_FALSE(handshake(*c, *s));
        EXPECT_EQ(s->error(), TlsError::certificate_required);
    }
}

TEST(TlsSession, SessionsOutliveTheirContextObject) {
    std::optional<TlsServerContext> sctx(server_for({"a.example"}));
    auto cctx = client_unverified();
    auto s = TlsSession::server(*sctx);
    ASSERT_TRUE(s);
    sctx.reset();  // the session keeps the shared state alive
    auto c = TlsSession::client(cctx, "a.example");
    ASSERT_TRUE(c);
    EXPECT_TRUE(handshake(*c, *s));
}

TEST(TlsError, NamesAreStable) {
    EXPECT_EQ(to_string(TlsError::none), "none");
    EXPECT_EQ(to_string(TlsError::bad_record), "bad-record");
    EXPECT_EQ(to_string(TlsError::certificate_untrusted), "certificate-untrusted");
    EXPECT_EQ(to_string(TlsError::input_overflow), "input-overflow");
}

TEST(TlsConfig, RejectsAKeyThatDoesNotMatchItsCertificate) {
    TlsServerConfig config;
    TlsIdentity id = identity_for("a.example");
    id.private_key = PemSource::text(cert_for("b.example").key_pem);
    config.identities.push_back(id);
    try {
        TlsServerContext ctx(config);
        FAIL() << "expected TlsConfigError";
    } catch (const TlsConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
    }
}

TEST(TlsConfig, NamesTheMissingFile) {
    TlsServerConfig config;
    config.identities.push_back(TlsIdentity{PemSource::file("/nonexistent/cert.pem"),
                                            PemSource::file("/nonexistent/key.pem"), {}, {}});
    try {
        TlsServerContext ctx(config);
        FAIL() << "expected TlsConfigError";
    } catch (const TlsConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos);
    }
    EXPECT_THROW(TlsServerContext{TlsServerConfig{}}, TlsConfigError);
    TlsClientConfig cc;
    cc.ca = PemSource::text("not a pem");
    EXPECT_THROW(TlsClientContext{cc}, TlsConfigError);
}
