// The server's CPU per full TLS handshake on the broker's engine (OpenSslServerSession), without
// sockets or XMPP: an OpenSSL client and our server shuttle bytes in memory, and only the
// server's calls are timed (this thread's CPU clock around make(), each handshake() step,
// draining the output, the channel-binding data and the destructor). Less noisy than
// bench/run-tls-login-ab.sh on a shared machine: no kernel, no scheduler between the two.
//
//   tls_handshake_bench [handshakes per batch (500)] [batches (7)] [tls1.2|tls1.3 (tls1.3)] [full|resumed]
//
// Prints us per server handshake for every batch and the median, what was negotiated, and the
// floor no handshake goes under: the server's public-key operations timed alone through the same
// OpenSSL (X25519 key generation and derivation, one ECDSA P-256 signature). Certificate: ECDSA
// P-256, self-signed (what the broker makes on first start); the client offers OpenSSL's
// defaults (X25519 key share first) and no ticket, so every handshake is a full one; with
// "resumed", it offers the ticket of its previous connection (psk_dhe_ke: OpenSSL's client, like
// every client we know, offers no other mode), and the median is of resumed handshakes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "bench/tls_bench_support.hpp"

namespace {

double thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

struct Client {
    SSL* ssl = nullptr;
    BIO* net = nullptr;  // our end of the BIO pair
    explicit Client(SSL_CTX* ctx, SSL_SESSION* resume = nullptr) {
        ssl = SSL_new(ctx);
        if (resume != nullptr) SSL_set_session(ssl, resume);
        BIO* inner = nullptr;
        BIO_new_bio_pair(&inner, 1 << 16, &net, 1 << 16);
        SSL_set_bio(ssl, inner, inner);
        SSL_set_connect_state(ssl);
        SSL_set_tlsext_host_name(ssl, "localhost");
    }
    ~Client() {
        // A connection freed without a shutdown makes OpenSSL mark its session not resumable.
        SSL_set_quiet_shutdown(ssl, 1);
        SSL_shutdown(ssl);
        SSL_free(ssl);
        BIO_free(net);
    }
};

// Mean us of `op` over n calls, this thread's CPU.
template <class F>
double per_call_us(int n, F op) {
    const double t0 = thread_cpu_us();
    for (int i = 0; i < n; ++i) op();
    return (thread_cpu_us() - t0) / n;
}

void print_floor(const std::string& key_pem, int n) {
    EVP_PKEY* peer = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
    const double keygen = per_call_us(n, [] { EVP_PKEY_free(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519")); });
    EVP_PKEY* mine = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
    const double derive = per_call_us(n, [&] {
        EVP_PKEY_CTX* c = EVP_PKEY_CTX_new_from_pkey(nullptr, mine, nullptr);
        unsigned char secret[32];
        std::size_t len = sizeof secret;
        EVP_PKEY_derive_init(c);
        EVP_PKEY_derive_set_peer(c, peer);
        EVP_PKEY_derive(c, secret, &len);
        EVP_PKEY_CTX_free(c);
    });
    BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
    EVP_PKEY* ec = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    const unsigned char tbs[130] = {};  // TLS 1.3 CertificateVerify input: 64 spaces, label, hash
    const double sign = per_call_us(n, [&] {
        EVP_MD_CTX* m = EVP_MD_CTX_new();
        unsigned char sig[80];
        std::size_t len = sizeof sig;
        EVP_DigestSignInit_ex(m, nullptr, "SHA256", nullptr, nullptr, ec, nullptr);
        EVP_DigestSign(m, sig, &len, tbs, sizeof tbs);
        EVP_MD_CTX_free(m);
    });
    std::printf("floor: X25519 keygen %.1f us + X25519 derive %.1f us + ECDSA P-256 sign %.1f us = %.1f us\n", keygen,
                derive, sign, keygen + derive + sign);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
}

}  // namespace

int main(int argc, char** argv) {
    const int per_batch = argc > 1 ? std::atoi(argv[1]) : 500;
    const int batches = argc > 2 ? std::atoi(argv[2]) : 7;
    const bool tls12 = argc > 3 && std::string(argv[3]) == "tls1.2";
    const bool resumed = argc > 4 && std::string(argv[4]) == "resumed";
    starling::bench::TlsBenchContexts contexts(tls12);
    const xmpp::tls::OpenSslServerContext& server_ctx = contexts.server;
    SSL_CTX* client_ctx = contexts.client;
    if (!resumed) SSL_CTX_set_options(client_ctx, SSL_OP_NO_TICKET);
    SSL_SESSION* ticket = nullptr;
    int resumed_count = 0;

    std::vector<double> results;
    std::vector<char> buf(1 << 16);
    std::uint8_t ekm[32];
    for (int b = 0; b < batches; ++b) {
        double server_us = 0;
        for (int i = 0; i < per_batch; ++i) {
            Client client(client_ctx, ticket);
            double t0 = thread_cpu_us();
            auto made = xmpp::tls::OpenSslServerSession::make(server_ctx);
            server_us += thread_cpu_us() - t0;
            if (!made) return 1;
            auto server = std::move(*made);
            bool done = false;
            for (int round = 0; round < 10 && !done; ++round) {
                SSL_do_handshake(client.ssl);
                const int n = BIO_read(client.net, buf.data(), static_cast<int>(buf.size()));
                t0 = thread_cpu_us();
                if (n > 0 && !server.receive_ciphertext({buf.data(), static_cast<std::size_t>(n)})) return 2;
                auto st = server.handshake();
                if (!st) {
                    std::fprintf(stderr, "handshake failed: %s\n", server.error_detail().c_str());
                    return 3;
                }
                const auto out = server.pending_ciphertext();
                std::vector<char> copy(out.begin(), out.end());
                server.consume_ciphertext(out.size());
                done = *st == xmpp::tls::HandshakeStatus::done;
                if (done) {  // what a login asks for next: the channel-binding data (SCRAM-PLUS offer)
                    (void)server.server_end_point();
                    (void)server.export_keying_material(ekm, "EXPORTER-Channel-Binding");
                }
                server_us += thread_cpu_us() - t0;
                if (!copy.empty()) BIO_write(client.net, copy.data(), static_cast<int>(copy.size()));
            }
            SSL_do_handshake(client.ssl);
            if (!done || SSL_is_init_finished(client.ssl) != 1) {
                std::fprintf(stderr, "handshake did not finish\n");
                return 4;
            }
            if (resumed) {  // the TLS 1.3 ticket came after the handshake: read it, keep it
                char sink[256];
                (void)SSL_read(client.ssl, sink, sizeof sink);
                ERR_clear_error();
                resumed_count += SSL_session_reused(client.ssl);
                if (ticket != nullptr) SSL_SESSION_free(ticket);
                ticket = SSL_get1_session(client.ssl);
            }
            if (b == 0 && i == 0) {
                int type = NID_undef, md = NID_undef;
                SSL_get_peer_signature_type_nid(client.ssl, &type);
                SSL_get_peer_signature_nid(client.ssl, &md);
                std::printf("negotiated: %s, %s, key exchange %s, signature %s with %s\n", SSL_get_version(client.ssl),
                            SSL_get_cipher_name(client.ssl),
                            OBJ_nid2sn(static_cast<int>(SSL_get_negotiated_group(client.ssl))),
                            type == EVP_PKEY_EC ? "ECDSA" : OBJ_nid2sn(type), OBJ_nid2sn(md));
            }
            t0 = thread_cpu_us();
            { auto gone = std::move(server); }
            server_us += thread_cpu_us() - t0;
        }
        results.push_back(server_us / per_batch);
        std::printf("batch %d: %.1f us server CPU per handshake\n", b + 1, results.back());
    }
    std::sort(results.begin(), results.end());
    std::printf("median: %.1f us per %s %s handshake (server side), %d x %d\n", results[results.size() / 2],
                resumed ? "resumed" : "full", tls12 ? "TLS 1.2" : "TLS 1.3", batches, per_batch);
    if (resumed) std::printf("resumed: %d of %d handshakes\n", resumed_count, batches * per_batch);
    if (ticket != nullptr) SSL_SESSION_free(ticket);
    print_floor(contexts.cert.key_pem, per_batch);
    return 0;
}
