// The server's CPU per chat stanza on an established TLS connection (issue 13, "chat over TLS"):
// our record layer on the broker's engine (OpenSslServerSession), in memory, no sockets. Less
// noisy than bench/run-tls-chat-bench.sh on a shared machine, and it isolates what TLS adds to a
// stanza: opening the device's records, sealing the broker's batches.
//
//   tls_record_bench [stanza bytes (250)] [rounds (7)] [tls1.2|tls1.3 (tls1.3)]
//
// read:  the client sent one record per stanza (as devices do); the server takes the ciphertext
//        in reads of up to 16 KiB and decrypts into 17 KiB spans (k_tls_read_chunk) (the c2s session's pattern).
// write: the server seals a batch of B stanzas (B = 1, 4, 16: what one recipient gets in one
//        reactor turn) into a wire buffer that keeps its memory (the session's _wire), through
//        write_plaintext() + drain_ciphertext() (the path before session 9) and seal_into().
// Prints ns of this thread's CPU per stanza, the median of the rounds.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench/tls_bench_support.hpp"

namespace {

double thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t stanza_bytes = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 250;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
    const bool tls12 = argc > 3 && std::string(argv[3]) == "tls1.2";
    starling::bench::TlsBenchContexts contexts(tls12);
    const xmpp::tls::OpenSslServerContext& server_ctx = contexts.server;
    SSL_CTX* client_ctx = contexts.client;
    SSL* ssl = SSL_new(client_ctx);
    BIO* c_in = BIO_new(BIO_s_mem());
    BIO* c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, c_in, c_out);
    SSL_set_connect_state(ssl);
    auto made = xmpp::tls::OpenSslServerSession::make(server_ctx);
    if (!made) return 1;
    auto& server = *made;
    std::vector<char> buf(1 << 16);
    for (int i = 0; i < 10 && !(server.is_handshake_done() && SSL_is_init_finished(ssl)); ++i) {
        SSL_do_handshake(ssl);
        int n;
        while ((n = BIO_read(c_out, buf.data(), static_cast<int>(buf.size()))) > 0) {
            if (!server.receive_ciphertext({buf.data(), static_cast<std::size_t>(n)})) return 2;
        }
        if (!server.handshake()) return 3;
        std::string ct;
        server.drain_ciphertext(ct);
        if (!ct.empty()) BIO_write(c_in, ct.data(), static_cast<int>(ct.size()));
    }
    if (!server.uses_own_record_layer()) return 4;
    std::printf("%s %s, stanza %zu bytes, %d rounds\n", std::string(server.protocol_version()).c_str(),
                std::string(server.cipher_suite()).c_str(), stanza_bytes, rounds);

    std::string stanza = "<message to='user42@localhost/r' type='chat' id='";
    while (stanza.size() + 20 < stanza_bytes) stanza += 'x';
    stanza += "'><body/></message>";

    // read: a round opens 20,000 records.
    constexpr int k_records = 20'000;
    std::vector<double> read_ns;
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < k_records; ++i) {
            std::size_t n = 0;
            SSL_write_ex(ssl, stanza.data(), stanza.size(), &n);
        }
        std::string wire;
        int n;
        while ((n = BIO_read(c_out, buf.data(), static_cast<int>(buf.size()))) > 0) wire.append(buf.data(), n);
        static char span[17 * 1024];
        std::size_t got = 0;
        const double t0 = thread_cpu_ns();
        for (std::size_t off = 0; off < wire.size();) {
            const std::size_t take = std::min<std::size_t>(16384, wire.size() - off);
            if (!server.receive_ciphertext({wire.data() + off, take})) return 5;
            off += take;
            for (;;) {
                auto rd = server.read_plaintext(span);
                if (!rd) return 6;
                if (*rd == 0) break;
                got += *rd;
            }
        }
        read_ns.push_back((thread_cpu_ns() - t0) / k_records);
        if (got != stanza.size() * k_records) return 7;
    }
    std::printf("read  (one record per stanza):        %6.0f ns per stanza\n", median(read_ns));

    for (int batch : {1, 4, 16}) {
        std::string out;
        for (int i = 0; i < batch; ++i) out += stanza;
        const int batches = 40'000 / batch;
        std::vector<double> old_ns, new_ns;
        std::string wire;
        for (int r = 0; r < rounds; ++r) {
            double t0 = thread_cpu_ns();
            for (int i = 0; i < batches; ++i) {
                if (!server.write_plaintext(std::span<const char>(out.data(), out.size()))) return 8;
                server.drain_ciphertext(wire);
                wire.clear();
            }
            old_ns.push_back((thread_cpu_ns() - t0) / (batches * batch));
            t0 = thread_cpu_ns();
            for (int i = 0; i < batches; ++i) {
                if (!server.seal_into(std::span<const char>(out.data(), out.size()), wire)) return 9;
                wire.clear();
            }
            new_ns.push_back((thread_cpu_ns() - t0) / (batches * batch));
        }
        std::printf("write (batch of %2d): write_plaintext+drain %6.0f ns, seal_into %6.0f ns per stanza\n", batch,
                    median(old_ns), median(new_ns));
    }
    SSL_free(ssl);
    return 0;
}
