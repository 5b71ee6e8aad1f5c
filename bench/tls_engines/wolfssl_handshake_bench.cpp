// Server CPU per TLS 1.3 handshake on wolfSSL (Debian 12's libwolfssl 5.5.4), in memory, the
// counterpart of tls_handshake_bench (OpenSSL, our engine): is another TLS library from Debian a
// way to the login goals of issue 13? Both ends are wolfSSL, over two in-memory queues; only the
// server's calls are timed (this thread's CPU clock around wolfSSL_new, each wolfSSL_accept,
// the first write and wolfSSL_free). Full handshakes, then resumed ones (the client offers the
// ticket of its previous connection: psk_dhe_ke, as every client we know does).
//
//   wolfssl_handshake_bench CERT.pem KEY.pem [handshakes per batch (300)] [x25519|p256]
//
// Built only when libwolfssl-dev is installed (not a dependency of Starling): see
// bench/run-tls-engine-compare.sh.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

double cpu_us() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

struct End {  // one side's view of the two queues
    std::string* in;
    std::string* out;
};

int receive(WOLFSSL*, char* buf, int size, void* ctx) {
    auto* e = static_cast<End*>(ctx);
    if (e->in->empty()) return WOLFSSL_CBIO_ERR_WANT_READ;
    const int n = std::min<int>(size, static_cast<int>(e->in->size()));
    std::memcpy(buf, e->in->data(), static_cast<std::size_t>(n));
    e->in->erase(0, static_cast<std::size_t>(n));
    return n;
}

int send(WOLFSSL*, char* buf, int size, void* ctx) {
    static_cast<End*>(ctx)->out->append(buf, static_cast<std::size_t>(size));
    return size;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s CERT.pem KEY.pem [handshakes per batch] [x25519|p256]\n", argv[0]);
        return 2;
    }
    const int per_batch = argc > 3 ? std::atoi(argv[3]) : 300;
    const bool p256 = argc > 4 && std::strcmp(argv[4], "p256") == 0;
    const int group = p256 ? WOLFSSL_ECC_SECP256R1 : WOLFSSL_ECC_X25519;
    wolfSSL_Init();
    WOLFSSL_CTX* server_ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
    if (wolfSSL_CTX_use_certificate_file(server_ctx, argv[1], WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_file(server_ctx, argv[2], WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        std::fprintf(stderr, "cannot load %s / %s\n", argv[1], argv[2]);
        return 2;
    }
    WOLFSSL_CTX* client_ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    wolfSSL_CTX_set_verify(client_ctx, WOLFSSL_VERIFY_NONE, nullptr);
    for (WOLFSSL_CTX* c : {server_ctx, client_ctx}) {
        wolfSSL_CTX_SetIORecv(c, receive);
        wolfSSL_CTX_SetIOSend(c, send);
    }
    for (const bool resume : {false, true}) {
        std::vector<double> batches;
        WOLFSSL_SESSION* ticket = nullptr;
        for (int b = 0; b < 5; ++b) {
            double server_us = 0;
            for (int i = 0; i < per_batch; ++i) {
                std::string to_server, to_client;
                End server_end{&to_server, &to_client}, client_end{&to_client, &to_server};
                WOLFSSL* client = wolfSSL_new(client_ctx);
                wolfSSL_SetIOReadCtx(client, &client_end);
                wolfSSL_SetIOWriteCtx(client, &client_end);
                int groups[1] = {group};
                wolfSSL_set_groups(client, groups, 1);
                wolfSSL_UseKeyShare(client, static_cast<word16>(group));
                if (resume && ticket != nullptr) wolfSSL_set_session(client, ticket);
                double t0 = cpu_us();
                WOLFSSL* server = wolfSSL_new(server_ctx);
                wolfSSL_SetIOReadCtx(server, &server_end);
                wolfSSL_SetIOWriteCtx(server, &server_end);
                server_us += cpu_us() - t0;
                bool client_done = false, server_done = false;
                for (int round = 0; round < 10 && !(client_done && server_done); ++round) {
                    if (!client_done) client_done = wolfSSL_connect(client) == WOLFSSL_SUCCESS;
                    if (!server_done) {
                        t0 = cpu_us();
                        server_done = wolfSSL_accept(server) == WOLFSSL_SUCCESS;
                        server_us += cpu_us() - t0;
                    }
                }
                if (!client_done || !server_done) {
                    std::fprintf(stderr, "handshake failed\n");
                    return 1;
                }
                t0 = cpu_us();
                wolfSSL_write(server, "x", 1);  // the client reads the ticket with it
                server_us += cpu_us() - t0;
                char buf[64];
                wolfSSL_read(client, buf, sizeof buf);
                if (b == 0 && i == 1) {
                    std::printf("negotiated: %s, %s, resumed %d\n", wolfSSL_get_version(server),
                                wolfSSL_get_cipher(server), wolfSSL_session_reused(server));
                }
                if (resume) {
                    if (ticket != nullptr) wolfSSL_SESSION_free(ticket);
                    ticket = wolfSSL_get1_session(client);
                }
                t0 = cpu_us();
                wolfSSL_free(server);
                server_us += cpu_us() - t0;
                wolfSSL_free(client);
            }
            batches.push_back(server_us / per_batch);
        }
        if (ticket != nullptr) wolfSSL_SESSION_free(ticket);
        std::sort(batches.begin(), batches.end());
        std::printf("median: %.1f us per %s TLS 1.3 handshake (server side, %s), 5 x %d\n", batches[2],
                    resume ? "resumed" : "full", p256 ? "P-256" : "X25519", per_batch);
    }
    wolfSSL_CTX_free(client_ctx);
    wolfSSL_CTX_free(server_ctx);
    wolfSSL_Cleanup();
    return 0;
}
