#include "broker/src/admin/scram_pair.hpp"

#include <bit>
#include <cstring>
#include <string>

#include "xmpp/sasl/saslprep.hpp"

// The SHA*_Transform block functions are deprecated in OpenSSL 3.0 but exported; they use SHA-NI.
// (xmpp/sasl/scram.cpp uses them the same way for one chain.)
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

namespace starling::admin {
namespace {

using xmpp::sasl::ScramAlgorithm;
using xmpp::sasl::ScramCredentials;
using xmpp::sasl::ScramError;

constexpr std::size_t k_block = 64;

inline std::uint32_t to_be32(std::uint32_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(v);
    return v;
}

void zero(void* p, std::size_t n) noexcept { OPENSSL_cleanse(p, n); }

struct Sha256 {
    using Ctx = SHA256_CTX;
    static constexpr std::size_t digest = 32;
    static void init(Ctx& c) noexcept { SHA256_Init(&c); }
    static void update(Ctx& c, const void* p, std::size_t n) noexcept { SHA256_Update(&c, p, n); }
    static void final(unsigned char* out, Ctx& c) noexcept { SHA256_Final(out, &c); }
    static void transform(Ctx& c, const std::uint32_t* block) noexcept {
        SHA256_Transform(&c, reinterpret_cast<const unsigned char*>(block));
    }
    static void state_be(const Ctx& c, std::uint32_t* out) noexcept {
        for (std::size_t j = 0; j < 8; ++j) out[j] = to_be32(c.h[j]);
    }
    static const EVP_MD* md() noexcept { return EVP_sha256(); }
};

struct Sha1 {
    using Ctx = SHA_CTX;
    static constexpr std::size_t digest = 20;
    static void init(Ctx& c) noexcept { SHA1_Init(&c); }
    static void update(Ctx& c, const void* p, std::size_t n) noexcept { SHA1_Update(&c, p, n); }
    static void final(unsigned char* out, Ctx& c) noexcept { SHA1_Final(out, &c); }
    static void transform(Ctx& c, const std::uint32_t* block) noexcept {
        SHA1_Transform(&c, reinterpret_cast<const unsigned char*>(block));
    }
    static void state_be(const Ctx& c, std::uint32_t* out) noexcept {
        out[0] = to_be32(c.h0);
        out[1] = to_be32(c.h1);
        out[2] = to_be32(c.h2);
        out[3] = to_be32(c.h3);
        out[4] = to_be32(c.h4);
    }
    static const EVP_MD* md() noexcept { return EVP_sha1(); }
};

// One PBKDF2 chain's state (RFC 8018 §5.2 with one output block, HMAC per RFC 2104).
template <class H>
struct Chain {
    typename H::Ctx inner, outer, c;
    std::uint32_t block[k_block / 4] = {};
    std::uint32_t acc[H::digest / 4] = {};

    // Pads, and U1 = HMAC(P, S || INT(1)).
    void start(std::string_view password, std::string_view salt) noexcept {
        unsigned char key[k_block] = {};
        if (password.size() > k_block) {
            EVP_Digest(password.data(), password.size(), key, nullptr, H::md(), nullptr);
        } else {
            std::memcpy(key, password.data(), password.size());
        }
        unsigned char pad[k_block];
        for (std::size_t i = 0; i < k_block; ++i) pad[i] = static_cast<unsigned char>(key[i] ^ 0x36);
        H::init(inner);
        H::update(inner, pad, k_block);
        for (std::size_t i = 0; i < k_block; ++i) pad[i] = static_cast<unsigned char>(key[i] ^ 0x5c);
        H::init(outer);
        H::update(outer, pad, k_block);
        unsigned char u[H::digest];
        c = inner;
        H::update(c, salt.data(), salt.size());
        static constexpr unsigned char k_int1[4] = {0, 0, 0, 1};
        H::update(c, k_int1, sizeof k_int1);
        H::final(u, c);
        c = outer;
        H::update(c, u, H::digest);
        H::final(u, c);
        std::memcpy(acc, u, H::digest);
        std::memcpy(block, u, H::digest);
        // The message of every later HMAC is one digest: one block with fixed padding.
        block[H::digest / 4] = to_be32(0x80000000u);
        block[k_block / 4 - 1] = to_be32(static_cast<std::uint32_t>((k_block + H::digest) * 8));
        zero(key, sizeof key);
        zero(pad, sizeof pad);
        zero(u, sizeof u);
    }
    void inner_step() noexcept {
        c = inner;
        H::transform(c, block);
        H::state_be(c, block);
    }
    void outer_step() noexcept {
        c = outer;
        H::transform(c, block);
        H::state_be(c, block);
        for (std::size_t j = 0; j < H::digest / 4; ++j) acc[j] ^= block[j];
    }
    ~Chain() {
        zero(&inner, sizeof inner);
        zero(&outer, sizeof outer);
        zero(&c, sizeof c);
        zero(block, sizeof block);
        zero(acc, sizeof acc);
    }
};

// ClientKey, StoredKey, ServerKey from SaltedPassword (RFC 5802 §3).
template <class H>
ScramCredentials keys(ScramAlgorithm a, const std::uint32_t* salted_words, std::string_view salt,
                      std::uint32_t iterations) {
    unsigned char salted[H::digest], client_key[H::digest], stored[H::digest], server[H::digest];
    std::memcpy(salted, salted_words, H::digest);
    unsigned int len = 0;
    HMAC(H::md(), salted, static_cast<int>(H::digest), reinterpret_cast<const unsigned char*>("Client Key"), 10,
         client_key, &len);
    EVP_Digest(client_key, H::digest, stored, nullptr, H::md(), nullptr);
    HMAC(H::md(), salted, static_cast<int>(H::digest), reinterpret_cast<const unsigned char*>("Server Key"), 10, server,
         &len);
    ScramCredentials c{a, std::string(salt), iterations,
                       std::string(reinterpret_cast<const char*>(stored), H::digest),
                       std::string(reinterpret_cast<const char*>(server), H::digest)};
    zero(salted, sizeof salted);
    zero(client_key, sizeof client_key);
    return c;
}

template <class H>
CredentialsPair pair(ScramAlgorithm a, std::string_view p1, std::string_view s1, std::string_view p2,
                     std::string_view s2, std::uint32_t iterations) {
    Chain<H> x, y;
    x.start(p1, s1);
    y.start(p2, s2);
    for (std::uint32_t i = 1; i < iterations; ++i) {
        x.inner_step();
        y.inner_step();
        x.outer_step();
        y.outer_step();
    }
    return CredentialsPair{keys<H>(a, x.acc, s1, iterations), keys<H>(a, y.acc, s2, iterations)};
}

void wipe(std::string& s) noexcept {
    zero(s.data(), s.size());
    s.clear();
}

}  // namespace

CredentialsPair derive_credentials_pair(ScramAlgorithm algorithm, std::string_view password1, std::string_view salt1,
                                        std::string_view password2, std::string_view salt2,
                                        std::uint32_t iterations) noexcept {
    using xmpp::sasl::derive_credentials;
    try {
        // The same checks, in the same order, as derive_credentials(); anything unusual goes
        // through it one by one.
        auto p1 = xmpp::sasl::saslprep(password1, xmpp::sasl::SaslprepMode::stored);
        auto p2 = xmpp::sasl::saslprep(password2, xmpp::sasl::SaslprepMode::stored);
        if (!p1 || !p2 || salt1.empty() || salt2.empty() || iterations < xmpp::sasl::k_min_iterations ||
            iterations > xmpp::sasl::k_max_iterations) {
            if (p1) wipe(*p1);
            if (p2) wipe(*p2);
            return CredentialsPair{derive_credentials(algorithm, password1, salt1, iterations),
                                   derive_credentials(algorithm, password2, salt2, iterations)};
        }
        CredentialsPair out = algorithm == ScramAlgorithm::sha_1
                                  ? pair<Sha1>(algorithm, *p1, salt1, *p2, salt2, iterations)
                                  : pair<Sha256>(algorithm, *p1, salt1, *p2, salt2, iterations);
        wipe(*p1);
        wipe(*p2);
        return out;
    } catch (...) {  // std::bad_alloc
        return CredentialsPair{xmpp::Unexpected(ScramError::no_resources), xmpp::Unexpected(ScramError::no_resources)};
    }
}

}  // namespace starling::admin
