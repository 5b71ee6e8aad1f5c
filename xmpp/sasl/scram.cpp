#include "xmpp/sasl/scram.hpp"

#include "xmpp/base64.hpp"
#include "xmpp/sasl/saslprep.hpp"

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

// The SHA*_Transform block functions are deprecated in OpenSSL 3.0 (see salted_password()).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace xmpp::sasl {
namespace {

constexpr std::size_t k_max_digest = 32;

const mbedtls_md_info_t* md_info(ScramAlgorithm a) noexcept {
    return mbedtls_md_info_from_type(a == ScramAlgorithm::sha_1 ? MBEDTLS_MD_SHA1 : MBEDTLS_MD_SHA256);
}

void wipe(std::string& s) noexcept {
    mbedtls_platform_zeroize(s.data(), s.size());
    s.clear();
}

const unsigned char* bytes(std::string_view s) noexcept {
    return reinterpret_cast<const unsigned char*>(s.data());
}

// HMAC(key, data) into out (digest_size bytes).
bool hmac(ScramAlgorithm a, std::string_view key, std::string_view data, std::string& out) noexcept {
    unsigned char buf[k_max_digest];
    if (mbedtls_md_hmac(md_info(a), bytes(key), key.size(), bytes(data), data.size(), buf) != 0) return false;
    out.assign(reinterpret_cast<const char*>(buf), digest_size(a));
    mbedtls_platform_zeroize(buf, sizeof buf);
    return true;
}

bool hash(ScramAlgorithm a, std::string_view data, std::string& out) noexcept {
    unsigned char buf[k_max_digest];
    if (mbedtls_md(md_info(a), bytes(data), data.size(), buf) != 0) return false;
    out.assign(reinterpret_cast<const char*>(buf), digest_size(a));
    return true;
}

// Hi() of RFC 5802 §2.2 is PBKDF2 (RFC 8018) with HMAC and one output block.
//
// Why not mbedtls_pkcs5_pbkdf2_hmac: bulk provisioning (`starlingctl user import`, 100,000
// accounts) derives keys for both algorithms per account, and mbedTLS 2.28 costs ~5.0 ms
// (SHA-256) + ~1.6 ms (SHA-1) per account at 4096 iterations: ~11 minutes for 100k on this
// 2-core box. OpenSSL's PKCS5_PBKDF2_HMAC uses SHA-NI but re-initialises HMAC every
// iteration (1.5 + 1.4 ms). Here the HMAC inner and outer pad states are computed once
// (RFC 2104: HMAC(K, m) = H(K^opad || H(K^ipad || m))), and each iteration is then exactly two
// compression-function calls on a pre-padded block, through OpenSSL's SHA-NI block functions:
// 0.55 + 0.45 ms, a 6.6x gain (measured with -O2, AMD EPYC, 2.6 GHz).
// Same results as RFC 8018 (the RFC 5802/7677 vectors in scram_test.cpp check it).
// COMPAT(OpenSSL 3.x): SHA*_Transform are deprecated in 3.0 but still exported; if they go,
// fall back to PKCS5_PBKDF2_HMAC.
// A host word as the big-endian bytes the hash functions read and write.
inline std::uint32_t to_be32(std::uint32_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(v);
    return v;
}

template <class Ctx, std::size_t Digest>
struct ShaOps;

template <>
struct ShaOps<SHA256_CTX, 32> {
    static void init(SHA256_CTX& c) noexcept { SHA256_Init(&c); }
    static void update(SHA256_CTX& c, const void* p, std::size_t n) noexcept { SHA256_Update(&c, p, n); }
    static void final(unsigned char* out, SHA256_CTX& c) noexcept { SHA256_Final(out, &c); }
    static void transform(SHA256_CTX& c, const unsigned char* block) noexcept { SHA256_Transform(&c, block); }
    static void state_be(const SHA256_CTX& c, std::uint32_t* out) noexcept {
        for (std::size_t j = 0; j < 8; ++j) out[j] = to_be32(c.h[j]);
    }
    static void oneshot(const unsigned char* p, std::size_t n, unsigned char* out) noexcept { SHA256(p, n, out); }
};

template <>
struct ShaOps<SHA_CTX, 20> {
    static void init(SHA_CTX& c) noexcept { SHA1_Init(&c); }
    static void update(SHA_CTX& c, const void* p, std::size_t n) noexcept { SHA1_Update(&c, p, n); }
    static void final(unsigned char* out, SHA_CTX& c) noexcept { SHA1_Final(out, &c); }
    static void transform(SHA_CTX& c, const unsigned char* block) noexcept { SHA1_Transform(&c, block); }
    static void state_be(const SHA_CTX& c, std::uint32_t* out) noexcept {
        out[0] = to_be32(c.h0);
        out[1] = to_be32(c.h1);
        out[2] = to_be32(c.h2);
        out[3] = to_be32(c.h3);
        out[4] = to_be32(c.h4);
    }
    static void oneshot(const unsigned char* p, std::size_t n, unsigned char* out) noexcept { SHA1(p, n, out); }
};

// One PBKDF2 chain (RFC 8018 §5.2 with one output block; HMAC per RFC 2104).
template <class Ctx, std::size_t Digest>
struct Pbkdf2Lane {
    using Ops = ShaOps<Ctx, Digest>;
    static constexpr std::size_t k_block = 64;  // SHA-1 and SHA-256 both use 512-bit blocks
    static constexpr std::size_t k_words = Digest / 4;
    Ctx inner, outer, c;
    std::uint32_t block[k_block / 4] = {};
    std::uint32_t acc[k_words] = {};

    // The pads once, and U1 = HMAC(P, S || INT(1)).
    void start(std::string_view password, std::string_view salt) noexcept {
        unsigned char key[k_block] = {};
        if (password.size() > k_block) {
            Ops::oneshot(bytes(password), password.size(), key);  // RFC 2104 §2: long keys are hashed
        } else {
            std::copy(password.begin(), password.end(), key);
        }
        unsigned char pad[k_block];
        for (std::size_t i = 0; i < k_block; ++i) pad[i] = static_cast<unsigned char>(key[i] ^ 0x36);
        Ops::init(inner);
        Ops::update(inner, pad, k_block);
        for (std::size_t i = 0; i < k_block; ++i) pad[i] = static_cast<unsigned char>(key[i] ^ 0x5c);
        Ops::init(outer);
        Ops::update(outer, pad, k_block);
        unsigned char u[Digest];
        c = inner;
        Ops::update(c, salt.data(), salt.size());
        static constexpr unsigned char k_int1[4] = {0, 0, 0, 1};
        Ops::update(c, k_int1, sizeof k_int1);
        Ops::final(u, c);
        c = outer;
        Ops::update(c, u, Digest);
        Ops::final(u, c);
        // Ui = HMAC(P, U(i-1)): the message is one digest, so each hash is one padded block whose
        // padding never changes: 0x80, zeros, and the bit length of (pad block + digest). The
        // steps work on big-endian words (the hash's own representation) so that they call
        // nothing but the block functions, even in a debug build.
        std::memcpy(acc, u, Digest);
        std::memcpy(block, u, Digest);
        block[k_words] = to_be32(0x80000000u);
        block[k_block / 4 - 1] = to_be32(static_cast<std::uint32_t>((k_block + Digest) * 8));
        mbedtls_platform_zeroize(key, sizeof key);
        mbedtls_platform_zeroize(pad, sizeof pad);
        mbedtls_platform_zeroize(u, sizeof u);
    }
    void inner_step() noexcept {
        c = inner;
        Ops::transform(c, reinterpret_cast<const unsigned char*>(block));
        Ops::state_be(c, block);
    }
    void outer_step() noexcept {
        c = outer;
        Ops::transform(c, reinterpret_cast<const unsigned char*>(block));
        Ops::state_be(c, block);
        for (std::size_t j = 0; j < k_words; ++j) acc[j] ^= block[j];
    }
    ~Pbkdf2Lane() {
        mbedtls_platform_zeroize(block, sizeof block);
        mbedtls_platform_zeroize(acc, sizeof acc);
        mbedtls_platform_zeroize(&inner, sizeof inner);
        mbedtls_platform_zeroize(&outer, sizeof outer);
        mbedtls_platform_zeroize(&c, sizeof c);
    }
};

// Lanes independent PBKDF2 chains, interleaved step by step (A inner, B inner, A outer, B
// outer): each chain is a long dependency chain of SHA block computations, and SHA-NI has a long
// latency, so one chain leaves the core mostly idle; two interleaved overlap in the out-of-order
// core (62 ns per block instead of 94-102 ns on the 2-core AMD EPYC dev box, ~1.5x the rate for
// bulk provisioning). One lane is the plain computation.
template <class Ctx, std::size_t Digest, std::size_t Lanes>
void pbkdf2_lanes(const std::string_view (&passwords)[Lanes], const std::string_view (&salts)[Lanes],
                  std::uint32_t iterations, unsigned char (&out)[Lanes][Digest]) noexcept {
    Pbkdf2Lane<Ctx, Digest> lanes[Lanes];
    for (std::size_t l = 0; l < Lanes; ++l) lanes[l].start(passwords[l], salts[l]);
    for (std::uint32_t i = 1; i < iterations; ++i) {
        for (auto& lane : lanes) lane.inner_step();
        for (auto& lane : lanes) lane.outer_step();
    }
    for (std::size_t l = 0; l < Lanes; ++l) std::memcpy(out[l], lanes[l].acc, Digest);
}

// SaltedPassword for Lanes passwords at once (Hi() of RFC 5802 §2.2). False when iterations is 0.
template <std::size_t Lanes>
bool salted_passwords(ScramAlgorithm a, const std::string_view (&passwords)[Lanes],
                      const std::string_view (&salts)[Lanes], std::uint32_t iterations,
                      std::string (&out)[Lanes]) noexcept {
    if (iterations == 0) return false;
    unsigned char buf[Lanes][k_max_digest];
    if (a == ScramAlgorithm::sha_1) {
        unsigned char d[Lanes][20];
        pbkdf2_lanes<SHA_CTX, 20, Lanes>(passwords, salts, iterations, d);
        for (std::size_t l = 0; l < Lanes; ++l) std::memcpy(buf[l], d[l], 20);
        mbedtls_platform_zeroize(d, sizeof d);
    } else {
        unsigned char d[Lanes][32];
        pbkdf2_lanes<SHA256_CTX, 32, Lanes>(passwords, salts, iterations, d);
        for (std::size_t l = 0; l < Lanes; ++l) std::memcpy(buf[l], d[l], 32);
        mbedtls_platform_zeroize(d, sizeof d);
    }
    for (std::size_t l = 0; l < Lanes; ++l) out[l].assign(reinterpret_cast<const char*>(buf[l]), digest_size(a));
    mbedtls_platform_zeroize(buf, sizeof buf);
    return true;
}

bool salted_password(ScramAlgorithm a, std::string_view password, std::string_view salt,
                     std::uint32_t iterations, std::string& out) noexcept {
    const std::string_view passwords[1] = {password};
    const std::string_view salts[1] = {salt};
    std::string result[1];
    if (!salted_passwords<1>(a, passwords, salts, iterations, result)) return false;
    out = std::move(result[0]);
    return true;
}

// ClientKey, StoredKey and ServerKey from the salted password (RFC 5802 §3).
struct Keys {
    std::string client_key, stored_key, server_key;
    ~Keys() { wipe(client_key); wipe(stored_key); wipe(server_key); }
};

bool derive_keys(ScramAlgorithm a, std::string_view salted, Keys& k) noexcept {
    return hmac(a, salted, "Client Key", k.client_key) && hash(a, k.client_key, k.stored_key) &&
           hmac(a, salted, "Server Key", k.server_key);
}

bool equal_ct(std::string_view x, std::string_view y) noexcept {
    // Lengths are public (the digest size); only the contents must not leak through timing.
    // (mbedtls_ct_memcmp would do, but 2.28's constant_time.h lacks extern "C" for C++.)
    if (x.size() != y.size()) return false;
    volatile unsigned char diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        diff = static_cast<unsigned char>(diff | (static_cast<unsigned char>(x[i]) ^ static_cast<unsigned char>(y[i])));
    }
    return diff == 0;
}

// RFC 5802 §7: printable = %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool is_valid_nonce(std::string_view n) noexcept {
    return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) {
        return c >= 0x21 && c <= 0x7e && c != ',';
    });
}

// Splits off the next ','-separated field of `s`.
std::string_view next_field(std::string_view& s) noexcept {
    const std::size_t comma = s.find(',');
    std::string_view f = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    return f;
}

// "x=value" with x == name: the value; false otherwise.
bool attribute(std::string_view field, char name, std::string_view& value) noexcept {
    if (field.size() < 2 || field[0] != name || field[1] != '=') return false;
    value = field.substr(2);
    return true;
}

// RFC 5802 §7 attr-val: an ALPHA, '=', and a value (extensions we ignore).
bool is_attr_val(std::string_view field) noexcept {
    if (field.size() < 2 || field[1] != '=') return false;
    const char c = field[0];
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

Result<std::uint32_t, ScramError> parse_iterations(std::string_view s) noexcept {
    if (s.empty() || s.size() > 10 || s[0] == '0') return Unexpected(ScramError::invalid_encoding);
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return Unexpected(ScramError::invalid_encoding);
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v > 0xffffffffu) return Unexpected(ScramError::iteration_count_too_high);
    return static_cast<std::uint32_t>(v);
}

}  // namespace

std::string_view to_string(ChannelBindingType t) noexcept {
    return t == ChannelBindingType::tls_exporter ? "tls-exporter" : "tls-server-end-point";
}

std::optional<ChannelBindingType> parse_channel_binding_type(std::string_view name) noexcept {
    for (auto t : {ChannelBindingType::tls_exporter, ChannelBindingType::tls_server_end_point}) {
        if (to_string(t) == name) return t;
    }
    return std::nullopt;
}

std::string_view to_string(ScramAlgorithm a) noexcept {
    return a == ScramAlgorithm::sha_1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
}

std::size_t digest_size(ScramAlgorithm a) noexcept { return a == ScramAlgorithm::sha_1 ? 20 : 32; }

std::string_view to_string(ScramError e) noexcept {
    switch (e) {
        case ScramError::invalid_encoding: return "invalid-encoding";
        case ScramError::extensions_not_supported: return "extensions-not-supported";
        case ScramError::invalid_proof: return "invalid-proof";
        case ScramError::channel_bindings_dont_match: return "channel-bindings-dont-match";
        case ScramError::server_does_support_channel_binding: return "server-does-support-channel-binding";
        case ScramError::channel_binding_not_supported: return "channel-binding-not-supported";
        case ScramError::unsupported_channel_binding_type: return "unsupported-channel-binding-type";
        case ScramError::unknown_user: return "unknown-user";
        case ScramError::invalid_username_encoding: return "invalid-username-encoding";
        case ScramError::no_resources: return "no-resources";
        case ScramError::other_error: return "other-error";
        case ScramError::message_too_long: return "message-too-long";
        case ScramError::nonce_mismatch: return "nonce-mismatch";
        case ScramError::bad_nonce: return "bad-nonce";
        case ScramError::iteration_count_too_low: return "iteration-count-too-low";
        case ScramError::iteration_count_too_high: return "iteration-count-too-high";
        case ScramError::bad_server_signature: return "bad-server-signature";
        case ScramError::bad_password: return "bad-password";
        case ScramError::bad_credentials: return "bad-credentials";
        case ScramError::out_of_order: return "out-of-order";
        case ScramError::crypto_failure: return "crypto-failure";
    }
    return "unknown";
}

std::string_view server_error_value(ScramError e) noexcept {
    switch (e) {
        case ScramError::message_too_long:
        case ScramError::bad_nonce: return "invalid-encoding";
        case ScramError::crypto_failure: return "no-resources";
        case ScramError::nonce_mismatch:
        case ScramError::iteration_count_too_low:
        case ScramError::iteration_count_too_high:
        case ScramError::bad_server_signature:
        case ScramError::bad_password:
        case ScramError::bad_credentials:
        case ScramError::out_of_order: return "other-error";
        default: return to_string(e);
    }
}

std::string server_final_error(ScramError e) {
    std::string s = "e=";
    s += server_error_value(e);
    return s;
}

std::string escape_saslname(std::string_view name) {
    std::string out;
    out.reserve(name.size());
    for (char c : name) {
        if (c == '=') out += "=3D";
        else if (c == ',') out += "=2C";
        else out.push_back(c);
    }
    return out;
}

Result<std::string, ScramError> unescape_saslname(std::string_view name) noexcept {
    std::string out;
    out.reserve(name.size());
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        if (c == ',' || c == '\0') return Unexpected(ScramError::invalid_username_encoding);
        if (c != '=') { out.push_back(c); continue; }
        const std::string_view esc = name.substr(i + 1, 2);
        if (esc == "3D") out.push_back('=');
        else if (esc == "2C") out.push_back(',');
        else return Unexpected(ScramError::invalid_username_encoding);
        i += 2;
    }
    if (!is_valid_utf8(out)) return Unexpected(ScramError::invalid_username_encoding);
    return out;
}

Result<ScramCredentials, ScramError> derive_credentials(ScramAlgorithm algorithm, std::string_view password,
                                                        std::string_view salt,
                                                        std::uint32_t iterations) noexcept {
    if (salt.empty()) return Unexpected(ScramError::bad_credentials);
    if (iterations < k_min_iterations) return Unexpected(ScramError::iteration_count_too_low);
    if (iterations > k_max_iterations) return Unexpected(ScramError::iteration_count_too_high);
    auto prepared = saslprep(password, SaslprepMode::stored);
    if (!prepared) return Unexpected(ScramError::bad_password);
    std::string salted;
    const bool ok = salted_password(algorithm, *prepared, salt, iterations, salted);
    wipe(*prepared);
    if (!ok) return Unexpected(ScramError::crypto_failure);
    Keys k;
    const bool keys_ok = derive_keys(algorithm, salted, k);
    wipe(salted);
    if (!keys_ok) return Unexpected(ScramError::crypto_failure);
    return ScramCredentials{algorithm, std::string(salt), iterations, k.stored_key, k.server_key};
}

CredentialsPair derive_credentials_pair(ScramAlgorithm algorithm, std::string_view password1, std::string_view salt1,
                                        std::string_view password2, std::string_view salt2,
                                        std::uint32_t iterations) noexcept {
    try {
        // The same checks, in the same order, as derive_credentials(); anything unusual goes
        // through it one by one.
        auto p1 = saslprep(password1, SaslprepMode::stored);
        auto p2 = saslprep(password2, SaslprepMode::stored);
        if (!p1 || !p2 || salt1.empty() || salt2.empty() || iterations < k_min_iterations ||
            iterations > k_max_iterations) {
            if (p1) wipe(*p1);
            if (p2) wipe(*p2);
            return CredentialsPair{derive_credentials(algorithm, password1, salt1, iterations),
                                   derive_credentials(algorithm, password2, salt2, iterations)};
        }
        const std::string_view passwords[2] = {*p1, *p2};
        const std::string_view salts[2] = {salt1, salt2};
        std::string salted[2];
        const bool ok = salted_passwords<2>(algorithm, passwords, salts, iterations, salted);
        wipe(*p1);
        wipe(*p2);
        CredentialsPair out;
        Result<ScramCredentials, ScramError>* results[2] = {&out.first, &out.second};
        for (std::size_t l = 0; l < 2; ++l) {
            Keys k;
            if (!ok || !derive_keys(algorithm, salted[l], k)) {
                *results[l] = Unexpected(ScramError::crypto_failure);
            } else {
                *results[l] = ScramCredentials{algorithm, std::string(salts[l]), iterations, k.stored_key, k.server_key};
            }
            wipe(salted[l]);
        }
        return out;
    } catch (...) {  // std::bad_alloc
        return CredentialsPair{Unexpected(ScramError::no_resources), Unexpected(ScramError::no_resources)};
    }
}

Result<void, ScramError> verify_password(const ScramCredentials& c, std::string_view password) noexcept {
    if (c.stored_key.size() != digest_size(c.algorithm) || c.salt.empty() || c.iterations == 0 ||
        c.iterations > k_max_iterations) {
        return Unexpected(ScramError::bad_credentials);
    }
    auto prepared = saslprep(password, SaslprepMode::query);
    if (!prepared) return Unexpected(ScramError::invalid_proof);
    std::string salted;
    const bool ok = salted_password(c.algorithm, *prepared, c.salt, c.iterations, salted);
    wipe(*prepared);
    if (!ok) return Unexpected(ScramError::crypto_failure);
    Keys k;
    const bool keys_ok = derive_keys(c.algorithm, salted, k);
    wipe(salted);
    if (!keys_ok) return Unexpected(ScramError::crypto_failure);
    if (!equal_ct(k.stored_key, c.stored_key)) return Unexpected(ScramError::invalid_proof);
    return {};
}

// ---- server ----

ScramServer::ScramServer(ScramAlgorithm algorithm, Options options) noexcept
    : _algorithm(algorithm), _options(options) {}

ScramServer::~ScramServer() {
    wipe(_stored_key);
    wipe(_server_key);
}

Unexpected<ScramError> ScramServer::fail(ScramError e) noexcept {
    if (_state != State::failed) {  // the first error wins
        _state = State::failed;
        _error = e;
    }
    return Unexpected(_error);
}

Result<void, ScramError> ScramServer::receive_client_first(std::string_view m) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::initial) return fail(ScramError::out_of_order);
    if (m.size() > _options.max_message) return fail(ScramError::message_too_long);
    std::string_view rest = m;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","   (RFC 5802 §7)
    const std::string_view flag = next_field(rest);
    if (flag.size() >= 2 && flag[0] == 'p' && flag[1] == '=') {
        if (!_options.plus) {
            // RFC 5802 §6: "p" belongs to the -PLUS mechanism only. Without -PLUS offered, the
            // client wants a binding we do not have; with it, the client picked the wrong name.
            return fail(_options.channel_binding_offered ? ScramError::invalid_encoding
                                                         : ScramError::channel_binding_not_supported);
        }
        const auto type = parse_channel_binding_type(flag.substr(2));
        if (!type || !_options.bindings.has(*type)) return fail(ScramError::unsupported_channel_binding_type);
        _cb_type = type;
    } else if (_options.plus) {
        // RFC 5802 §6: -PLUS means the client binds; "n" or "y" with it is a malformed exchange.
        return fail(ScramError::invalid_encoding);
    } else if (flag == "y") {
        // RFC 5802 §6: the client could bind but believes we cannot. We offered -PLUS, so
        // someone removed it from the feature list on the way: a downgrade.
        if (_options.channel_binding_offered) return fail(ScramError::server_does_support_channel_binding);
    } else if (flag != "n") {
        return fail(ScramError::invalid_encoding);
    }
    if (rest.data() == nullptr || rest.empty()) return fail(ScramError::invalid_encoding);
    const std::string_view authz_field = next_field(rest);
    if (!authz_field.empty()) {
        std::string_view value;
        if (!attribute(authz_field, 'a', value) || value.empty()) return fail(ScramError::invalid_encoding);
        auto authz = unescape_saslname(value);
        if (!authz) return fail(authz.error());
        _authzid = std::move(*authz);
    }
    if (rest.data() == nullptr) return fail(ScramError::invalid_encoding);  // no ',' after authzid
    _gs2_header.assign(m.data(), static_cast<std::size_t>(rest.data() - m.data()));
    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    _client_first_bare.assign(rest);
    std::string_view field = next_field(rest);
    std::string_view value;
    if (attribute(field, 'm', value)) return fail(ScramError::extensions_not_supported);
    if (!attribute(field, 'n', value) || value.empty()) return fail(ScramError::invalid_encoding);
    auto user = unescape_saslname(value);
    if (!user) return fail(user.error());
    _username = std::move(*user);
    if (!attribute(next_field(rest), 'r', value)) return fail(ScramError::invalid_encoding);
    if (!is_valid_nonce(value)) return fail(ScramError::bad_nonce);
    _nonce.assign(value);
    while (!rest.empty()) {
        if (!is_attr_val(next_field(rest))) return fail(ScramError::invalid_encoding);
    }
    if (!_client_first_bare.empty() && _client_first_bare.back() == ',') return fail(ScramError::invalid_encoding);
    _state = State::have_client_first;
    return {};
}

Result<std::string, ScramError> ScramServer::server_first(const ScramCredentials& c,
                                                          std::string_view server_nonce) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::have_client_first) return fail(ScramError::out_of_order);
    if (c.algorithm != _algorithm || c.stored_key.size() != digest_size(_algorithm) ||
        c.server_key.size() != digest_size(_algorithm) || c.salt.empty() || c.iterations == 0) {
        return fail(ScramError::bad_credentials);
    }
    if (!is_valid_nonce(server_nonce)) return fail(ScramError::bad_nonce);
    _nonce.append(server_nonce);
    _stored_key = c.stored_key;
    _server_key = c.server_key;
    _server_first = "r=";
    _server_first += _nonce;
    _server_first += ",s=";
    base64_encode_append(c.salt, _server_first);
    _server_first += ",i=";
    _server_first += std::to_string(c.iterations);
    _state = State::sent_server_first;
    return _server_first;
}

Result<std::string, ScramError> ScramServer::receive_client_final(std::string_view m) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::sent_server_first) return fail(ScramError::out_of_order);
    if (m.size() > _options.max_message) return fail(ScramError::message_too_long);
    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const std::size_t proof_at = m.rfind(",p=");
    if (proof_at == std::string_view::npos) return fail(ScramError::invalid_encoding);
    const std::string_view without_proof = m.substr(0, proof_at);
    std::string_view rest = without_proof;
    std::string_view value;
    if (!attribute(next_field(rest), 'c', value)) return fail(ScramError::invalid_encoding);
    auto cbind = base64_decode(value, _options.max_message);
    if (!cbind) return fail(ScramError::invalid_encoding);
    // c= carries the gs2-header exactly as sent, then with "p" the binding data (RFC 5802 §7
    // cbind-input). A different header means someone rewrote the first message; different data
    // means the client's TLS channel is not ours (a man in the middle terminated it).
    const std::string_view cb_data = _cb_type ? std::string_view(_options.bindings.data(*_cb_type)) : std::string_view();
    if (cbind->size() != _gs2_header.size() + cb_data.size() ||
        std::string_view(*cbind).substr(0, _gs2_header.size()) != _gs2_header ||
        !equal_ct(std::string_view(*cbind).substr(_gs2_header.size()), cb_data)) {
        return fail(ScramError::channel_bindings_dont_match);
    }
    if (!attribute(next_field(rest), 'r', value)) return fail(ScramError::invalid_encoding);
    if (value != _nonce) return fail(ScramError::nonce_mismatch);
    while (!rest.empty()) {
        if (!is_attr_val(next_field(rest))) return fail(ScramError::invalid_encoding);
    }
    auto proof = base64_decode(m.substr(proof_at + 3), _options.max_message);
    if (!proof) return fail(ScramError::invalid_encoding);
    if (proof->size() != digest_size(_algorithm)) return fail(ScramError::invalid_proof);

    std::string auth_message;
    auth_message.reserve(_client_first_bare.size() + _server_first.size() + without_proof.size() + 2);
    auth_message.append(_client_first_bare).append(",").append(_server_first).append(",").append(without_proof);
    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it must hash to StoredKey.
    Keys k;
    std::string signature;
    if (!hmac(_algorithm, _stored_key, auth_message, signature)) return fail(ScramError::crypto_failure);
    k.client_key = *proof;
    for (std::size_t i = 0; i < signature.size(); ++i) k.client_key[i] ^= signature[i];
    if (!hash(_algorithm, k.client_key, k.stored_key)) return fail(ScramError::crypto_failure);
    if (!equal_ct(k.stored_key, _stored_key)) return fail(ScramError::invalid_proof);
    std::string server_signature;
    if (!hmac(_algorithm, _server_key, auth_message, server_signature)) return fail(ScramError::crypto_failure);
    std::string out = "v=";
    base64_encode_append(server_signature, out);
    _state = State::done;
    wipe(_stored_key);
    wipe(_server_key);
    return out;
}

// ---- client ----

ScramClient::ScramClient(ScramAlgorithm algorithm, Options options) noexcept
    : _algorithm(algorithm), _options(options) {}

ScramClient::~ScramClient() {
    wipe(_password);
    wipe(_server_signature);
}

Unexpected<ScramError> ScramClient::fail(ScramError e) noexcept {
    if (_state != State::failed) {
        _state = State::failed;
        _error = e;
        wipe(_password);
    }
    return Unexpected(_error);
}

Result<std::string, ScramError> ScramClient::client_first(std::string_view username, std::string_view password,
                                                          std::string_view client_nonce,
                                                          std::string_view authzid) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::initial) return fail(ScramError::out_of_order);
    if (username.empty() || !is_valid_utf8(username) || username.find('\0') != std::string_view::npos ||
        !is_valid_utf8(authzid) || authzid.find('\0') != std::string_view::npos) {
        return fail(ScramError::invalid_username_encoding);
    }
    if (!is_valid_nonce(client_nonce)) return fail(ScramError::bad_nonce);
    auto prepared = saslprep(password, SaslprepMode::query);
    if (!prepared) return fail(ScramError::bad_password);
    _password = std::move(*prepared);
    // RFC 5802 §6: "p=<type>" when we bind, "y" when we could but the server offers no -PLUS.
    if (_options.channel_binding) {
        if (_options.channel_binding_data.empty()) return fail(ScramError::channel_binding_not_supported);
        _gs2_header = "p=";
        _gs2_header += to_string(*_options.channel_binding);
        _gs2_header += ',';
    } else {
        _gs2_header = _options.supports_binding ? "y," : "n,";
    }
    if (!authzid.empty()) {
        _gs2_header += "a=";
        _gs2_header += escape_saslname(authzid);
    }
    _gs2_header += ',';
    _client_first_bare = "n=";
    _client_first_bare += escape_saslname(username);
    _client_first_bare += ",r=";
    _client_first_bare += client_nonce;
    _nonce.assign(client_nonce);
    if (_gs2_header.size() + _client_first_bare.size() > _options.max_message) {
        return fail(ScramError::message_too_long);
    }
    _state = State::sent_client_first;
    return _gs2_header + _client_first_bare;
}

Result<std::string, ScramError> ScramClient::receive_server_first(std::string_view m) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::sent_client_first) return fail(ScramError::out_of_order);
    if (m.size() > _options.max_message) return fail(ScramError::message_too_long);
    // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
    std::string_view rest = m;
    std::string_view field = next_field(rest);
    std::string_view value;
    if (attribute(field, 'm', value)) return fail(ScramError::extensions_not_supported);
    if (!attribute(field, 'r', value)) return fail(ScramError::invalid_encoding);
    // The server appends to our nonce; it may not change or omit it.
    if (value.size() <= _nonce.size() || value.substr(0, _nonce.size()) != _nonce) {
        return fail(ScramError::nonce_mismatch);
    }
    if (!is_valid_nonce(value)) return fail(ScramError::bad_nonce);
    const std::string_view nonce = value;
    if (!attribute(next_field(rest), 's', value)) return fail(ScramError::invalid_encoding);
    auto salt = base64_decode(value, _options.max_message);
    if (!salt || salt->empty()) return fail(ScramError::invalid_encoding);
    if (!attribute(next_field(rest), 'i', value)) return fail(ScramError::invalid_encoding);
    auto iterations = parse_iterations(value);
    if (!iterations) return fail(iterations.error());
    if (*iterations < _options.min_iterations) return fail(ScramError::iteration_count_too_low);
    if (*iterations > _options.max_iterations) return fail(ScramError::iteration_count_too_high);
    while (!rest.empty()) {
        if (!is_attr_val(next_field(rest))) return fail(ScramError::invalid_encoding);
    }
    if (!m.empty() && m.back() == ',') return fail(ScramError::invalid_encoding);

    std::string salted;
    const bool ok = salted_password(_algorithm, _password, *salt, *iterations, salted);
    wipe(_password);
    if (!ok) return fail(ScramError::crypto_failure);
    Keys k;
    const bool keys_ok = derive_keys(_algorithm, salted, k);
    wipe(salted);
    if (!keys_ok) return fail(ScramError::crypto_failure);

    std::string out = "c=";
    if (_options.channel_binding) {
        base64_encode_append(_gs2_header + _options.channel_binding_data, out);
    } else {
        base64_encode_append(_gs2_header, out);
    }
    out += ",r=";
    out += nonce;
    std::string auth_message;
    auth_message.append(_client_first_bare).append(",").append(m).append(",").append(out);
    std::string client_signature;
    if (!hmac(_algorithm, k.stored_key, auth_message, client_signature) ||
        !hmac(_algorithm, k.server_key, auth_message, _server_signature)) {
        return fail(ScramError::crypto_failure);
    }
    std::string proof = k.client_key;
    for (std::size_t i = 0; i < proof.size(); ++i) proof[i] ^= client_signature[i];
    out += ",p=";
    base64_encode_append(proof, out);
    wipe(proof);
    _state = State::sent_client_final;
    return out;
}

Result<void, ScramError> ScramClient::receive_server_final(std::string_view m) noexcept {
    if (_state == State::failed) return Unexpected(_error);
    if (_state != State::sent_client_final) return fail(ScramError::out_of_order);
    if (m.size() > _options.max_message) return fail(ScramError::message_too_long);
    std::string_view rest = m;
    std::string_view field = next_field(rest);
    std::string_view value;
    if (attribute(field, 'e', value)) {
        // The server's verdict, spelled as one of RFC 5802 §7's values (or an unknown one).
        for (int i = 0; i <= static_cast<int>(ScramError::other_error); ++i) {
            if (to_string(static_cast<ScramError>(i)) == value) return fail(static_cast<ScramError>(i));
        }
        return fail(ScramError::other_error);
    }
    if (!attribute(field, 'v', value)) return fail(ScramError::invalid_encoding);
    auto signature = base64_decode(value, _options.max_message);
    if (!signature) return fail(ScramError::invalid_encoding);
    if (!equal_ct(*signature, _server_signature)) return fail(ScramError::bad_server_signature);
    _state = State::done;
    return {};
}

}  // namespace xmpp::sasl
