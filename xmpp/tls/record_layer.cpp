// RecordLayer: TLS 1.3 / 1.2 AEAD record protection with OpenSSL's libcrypto primitives.
#include "xmpp/tls/record_layer.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <string_view>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

namespace xmpp::tls::detail {
namespace {

constexpr std::size_t k_tag = 16;
constexpr std::uint8_t k_type_application_data = 23;
// RFC 8446 §5.2: a TLS 1.3 ciphertext is at most 2^14 + 256 bytes.
constexpr std::size_t k_tls13_cipher_max = k_record_plain_max + 256;

// Fetched once per thread (an implicit fetch per record costs microseconds in OpenSSL 3), and
// one cipher context per AEAD per thread, re-keyed when a record comes under another key than
// the last one: a session keeps no cipher context of its own (DESIGN §5), yet no record pays
// for making one. Like OpenSSL's own per-thread error queue, this is per-thread scratch, not
// shared state: what a call leaves in it is only the key schedule of the last key used.
//
// Set up once, a context is re-initialised with no cipher (EVP_CipherInit_ex(ctx, NULL, ...)):
// naming the cipher again makes OpenSSL 3 free (and cleanse) and rebuild its cipher state on
// every record, which cost more than the AES-GCM of a chat message. And when the key is the
// one the context is already scheduled with (a session's records in a row: a read of several
// records, a long write), only the nonce is set: no key expansion, no GHASH key.
struct ThreadCiphers {
    EVP_CIPHER* cipher[3] = {};
    EVP_CIPHER_CTX* ctx[3] = {};
    bool primed[3] = {};               // ctx[i] holds cipher[i]
    bool keyed[3] = {};                // ctx[i] is scheduled with key[i]
    std::uint8_t key[3][32] = {};
    // HKDF-Expand-Label of the TLS 1.3 traffic keys (every handshake): HMAC-SHA-256 and -384
    // contexts with their digest set once; HMAC() would fetch HMAC and the digest each call.
    EVP_MAC* hmac = nullptr;
    EVP_MAC_CTX* hmac_ctx[2] = {};
    ThreadCiphers() {
        cipher[0] = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
        cipher[1] = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
        cipher[2] = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
        for (auto& c : ctx) c = EVP_CIPHER_CTX_new();
        hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        const char* digests[2] = {"SHA256", "SHA384"};
        for (int i = 0; i < 2 && hmac != nullptr; ++i) {
            hmac_ctx[i] = EVP_MAC_CTX_new(hmac);
            const OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digests[i]), 0),
                OSSL_PARAM_construct_end(),
            };
            if (hmac_ctx[i] != nullptr && EVP_MAC_CTX_set_params(hmac_ctx[i], params) != 1) {
                EVP_MAC_CTX_free(hmac_ctx[i]);
                hmac_ctx[i] = nullptr;
            }
        }
    }
    ~ThreadCiphers() {
        OPENSSL_cleanse(key, sizeof key);
        for (auto* c : hmac_ctx) EVP_MAC_CTX_free(c);
        EVP_MAC_free(hmac);
        for (auto* c : ctx) EVP_CIPHER_CTX_free(c);
        for (auto* c : cipher) EVP_CIPHER_free(c);
    }
};

ThreadCiphers& thread_ciphers() noexcept {
    thread_local ThreadCiphers t;
    return t;
}

std::size_t key_length(RecordLayer::Aead a) noexcept { return a == RecordLayer::Aead::aes_128_gcm ? 16 : 32; }

// `in` and `out` may be the same buffer or apart (OpenSSL's AEAD update reads each block before
// it writes it). Sealing a TLS 1.3 record, `trailer` is the inner content type (RFC 8446 §5.2),
// encrypted right after the `n` bytes of `in`, so the caller's plaintext needs no staging copy.
bool aead(bool seal, RecordLayer::Aead a, const std::uint8_t* key, const std::uint8_t nonce[12],
          const std::uint8_t* aad, std::size_t aad_len, const std::uint8_t* in, std::size_t n, std::uint8_t* out,
          std::uint8_t* tag, const std::uint8_t* trailer = nullptr) noexcept {
    ThreadCiphers& t = thread_ciphers();
    const auto i = static_cast<std::size_t>(a);
    EVP_CIPHER_CTX* c = t.ctx[i];
    if (c == nullptr || t.cipher[i] == nullptr) return false;
    const std::size_t key_len = key_length(a);
    const bool same_key = t.keyed[i] && std::memcmp(t.key[i], key, key_len) == 0;
    // Any failure: the next call builds the context from scratch.
    auto fail = [&t, i] {
        t.primed[i] = false;
        t.keyed[i] = false;
        return false;
    };
    int len = 0;
    const int enc = seal ? 1 : 0;
    // The IV length is 12 for all three AEADs by default (RFC 5116 §3.2 nonce size). The
    // direction may change with the key kept: AES-GCM and ChaCha20-Poly1305 schedule one key
    // for both.
    if (EVP_CipherInit_ex(c, t.primed[i] ? nullptr : t.cipher[i], nullptr, same_key ? nullptr : key, nonce, enc) != 1) {
        return fail();
    }
    t.primed[i] = true;
    if (!same_key) {
        std::memcpy(t.key[i], key, key_len);
        t.keyed[i] = true;
    }
    if (EVP_CipherUpdate(c, nullptr, &len, aad, static_cast<int>(aad_len)) != 1) return fail();
    if (n != 0 && EVP_CipherUpdate(c, out, &len, in, static_cast<int>(n)) != 1) return fail();
    if (trailer != nullptr) {
        if (EVP_CipherUpdate(c, out + n, &len, trailer, 1) != 1) return fail();
        ++n;
    }
    if (!seal && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, k_tag, tag) != 1) return fail();
    int fin = 0;
    if (EVP_CipherFinal_ex(c, out + n, &fin) != 1) return fail();  // open: tag mismatch
    if (seal && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, k_tag, tag) != 1) return fail();
    return true;
}

// RFC 8446 §7.1 HKDF-Expand-Label(secret, label, "", length), length at most one hash block.
bool expand_label(bool sha384, std::span<const std::uint8_t> secret, std::string_view label, std::uint8_t* out,
                  std::size_t length) noexcept {
    std::uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
    std::size_t n = 0;
    info[n++] = static_cast<std::uint8_t>(length >> 8);
    info[n++] = static_cast<std::uint8_t>(length);
    info[n++] = static_cast<std::uint8_t>(6 + label.size());
    std::memcpy(info + n, "tls13 ", 6);
    n += 6;
    std::memcpy(info + n, label.data(), label.size());
    n += label.size();
    info[n++] = 0;     // empty context
    info[n++] = 0x01;  // HKDF-Expand's first block counter (RFC 5869 §2.3)
    std::uint8_t block[EVP_MAX_MD_SIZE];
    std::size_t block_len = 0;
    EVP_MAC_CTX* mac = thread_ciphers().hmac_ctx[sha384 ? 1 : 0];
    if (mac == nullptr || EVP_MAC_init(mac, secret.data(), secret.size(), nullptr) != 1 ||
        EVP_MAC_update(mac, info, n) != 1 || EVP_MAC_final(mac, block, &block_len, sizeof block) != 1 ||
        block_len < length) {
        OPENSSL_cleanse(block, sizeof block);
        return false;
    }
    // The context would keep the secret's keyed HMAC state until the next handshake: re-key it.
    static constexpr unsigned char k_nothing[1] = {0};
    (void)EVP_MAC_init(mac, k_nothing, sizeof k_nothing, nullptr);
    std::memcpy(out, block, length);
    OPENSSL_cleanse(block, sizeof block);
    return true;
}

void put_u64(std::uint8_t* p, std::uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<std::uint8_t>(v);
        v >>= 8;
    }
}

// The suites the broker's policy negotiates (IANA TLS Cipher Suites registry).
struct Suite {
    std::uint16_t id;
    RecordLayer::Aead aead;
    bool sha384;
};
constexpr Suite k_suites[] = {
    {0x1301, RecordLayer::Aead::aes_128_gcm, false},        // TLS_AES_128_GCM_SHA256
    {0x1302, RecordLayer::Aead::aes_256_gcm, true},         // TLS_AES_256_GCM_SHA384
    {0x1303, RecordLayer::Aead::chacha20_poly1305, false},  // TLS_CHACHA20_POLY1305_SHA256
    {0xC02B, RecordLayer::Aead::aes_128_gcm, false},        // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    {0xC02F, RecordLayer::Aead::aes_128_gcm, false},        // ECDHE_RSA_WITH_AES_128_GCM_SHA256
    {0xC02C, RecordLayer::Aead::aes_256_gcm, true},         // ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    {0xC030, RecordLayer::Aead::aes_256_gcm, true},         // ECDHE_RSA_WITH_AES_256_GCM_SHA384
    {0xCCA9, RecordLayer::Aead::chacha20_poly1305, false},  // ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    {0xCCA8, RecordLayer::Aead::chacha20_poly1305, false},  // ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
};

const Suite* find_suite(std::uint16_t id) noexcept {
    for (const auto& s : k_suites) {
        if (s.id == id) return &s;
    }
    return nullptr;
}

}  // namespace

RecordLayer::~RecordLayer() {
    OPENSSL_cleanse(&_read, sizeof _read);
    OPENSSL_cleanse(&_write, sizeof _write);
}

bool RecordLayer::derive13(Direction& d) noexcept {
    const std::size_t hash = _sha384 ? 48 : 32;
    return expand_label(_sha384, {d.secret.data(), hash}, "key", d.key.data(), key_length(_aead)) &&
           expand_label(_sha384, {d.secret.data(), hash}, "iv", d.iv.data(), 12);
}

std::unique_ptr<RecordLayer> RecordLayer::tls13(std::uint16_t suite, std::span<const std::uint8_t> client_secret,
                                                std::span<const std::uint8_t> server_secret,
                                                std::uint64_t write_seq) noexcept {
    const Suite* s = find_suite(suite);
    if (s == nullptr || suite > 0x1303) return nullptr;
    const std::size_t hash = s->sha384 ? 48 : 32;
    if (client_secret.size() != hash || server_secret.size() != hash) return nullptr;
    std::unique_ptr<RecordLayer> rl(new (std::nothrow) RecordLayer);
    if (!rl) return nullptr;
    rl->_aead = s->aead;
    rl->_tls13 = true;
    rl->_sha384 = s->sha384;
    std::copy(client_secret.begin(), client_secret.end(), rl->_read.secret.begin());
    std::copy(server_secret.begin(), server_secret.end(), rl->_write.secret.begin());
    rl->_write.seq = write_seq;
    if (!rl->derive13(rl->_read) || !rl->derive13(rl->_write)) return nullptr;
    return rl;
}

std::unique_ptr<RecordLayer> RecordLayer::tls12(std::uint16_t suite, std::span<const std::uint8_t> master,
                                                std::span<const std::uint8_t, 32> client_random,
                                                std::span<const std::uint8_t, 32> server_random) noexcept {
    const Suite* s = find_suite(suite);
    if (s == nullptr || suite <= 0x1303 || master.size() != 48) return nullptr;
    std::unique_ptr<RecordLayer> rl(new (std::nothrow) RecordLayer);
    if (!rl) return nullptr;
    rl->_aead = s->aead;
    rl->_sha384 = s->sha384;
    const std::size_t key = key_length(s->aead);
    const std::size_t iv = s->aead == Aead::chacha20_poly1305 ? 12 : 4;  // RFC 7905 §2 / RFC 5288 §3
    // RFC 5246 §6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random).
    std::uint8_t seed[13 + 64];
    std::memcpy(seed, "key expansion", 13);
    std::memcpy(seed + 13, server_random.data(), 32);
    std::memcpy(seed + 45, client_random.data(), 32);
    std::uint8_t block[2 * 32 + 2 * 12];
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "TLS1-PRF", nullptr);
    EVP_KDF_CTX* kctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
    char digest[] = "SHA256";
    char digest384[] = "SHA384";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, s->sha384 ? digest384 : digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::uint8_t*>(master.data()),
                                          master.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof seed),
        OSSL_PARAM_construct_end(),
    };
    const std::size_t need = 2 * key + 2 * iv;
    const bool ok = kctx != nullptr && EVP_KDF_derive(kctx, block, need, params) == 1;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    if (!ok) return nullptr;
    // client_write_key, server_write_key, client_write_IV, server_write_IV.
    std::memcpy(rl->_read.key.data(), block, key);
    std::memcpy(rl->_write.key.data(), block + key, key);
    std::memcpy(rl->_read.iv.data(), block + 2 * key, iv);
    std::memcpy(rl->_write.iv.data(), block + 2 * key + iv, iv);
    OPENSSL_cleanse(block, sizeof block);
    // Each side's Finished was the first record under these keys.
    rl->_read.seq = 1;
    rl->_write.seq = 1;
    return rl;
}

void RecordLayer::nonce(const Direction& d, std::uint64_t seq, std::uint8_t out[12]) const noexcept {
    if (!_tls13 && _aead != Aead::chacha20_poly1305) {
        // RFC 5288 §3: 4-byte salt, then the 8-byte explicit nonce (ours: the sequence number).
        std::memcpy(out, d.iv.data(), 4);
        put_u64(out + 4, seq);
        return;
    }
    // RFC 8446 §5.3, RFC 7905 §2: the IV XOR the sequence number, left-padded to 12 bytes.
    std::uint8_t s[12] = {};
    put_u64(s + 4, seq);
    for (int i = 0; i < 12; ++i) out[i] = static_cast<std::uint8_t>(d.iv[static_cast<std::size_t>(i)] ^ s[i]);
}

std::size_t RecordLayer::sealed_size(std::size_t plain) const noexcept {
    const bool explicit_nonce = !_tls13 && _aead != Aead::chacha20_poly1305;
    return 5 + (explicit_nonce ? 8 : 0) + plain + (_tls13 ? 1 : 0) + k_tag;
}

bool RecordLayer::seal(std::uint8_t type, std::span<const char> data, std::vector<char>& out) noexcept {
    if (data.size() > k_record_plain_max) return false;
    const std::size_t at = out.size();
    try {
        out.resize(at + sealed_size(data.size()));
    } catch (const std::bad_alloc&) {
        return false;
    }
    if (!seal_to(type, data, reinterpret_cast<std::uint8_t*>(out.data() + at))) {
        out.resize(at);
        return false;
    }
    return true;
}

bool RecordLayer::seal_to(std::uint8_t type, std::span<const char> data, std::uint8_t* rec) noexcept {
    if (data.size() > k_record_plain_max) return false;
    const bool explicit_nonce = !_tls13 && _aead != Aead::chacha20_poly1305;
    const std::size_t inner = data.size() + (_tls13 ? 1 : 0);
    const std::size_t body = sealed_size(data.size()) - 5;
    rec[0] = _tls13 ? k_type_application_data : type;
    rec[1] = 3;
    rec[2] = 3;
    rec[3] = static_cast<std::uint8_t>(body >> 8);
    rec[4] = static_cast<std::uint8_t>(body);
    std::uint8_t n[12];
    nonce(_write, _write.seq, n);
    std::uint8_t* payload = rec + 5;
    if (explicit_nonce) {
        std::memcpy(payload, n + 4, 8);
        payload += 8;
    }
    std::uint8_t aad[13];
    std::size_t aad_len = 5;
    if (_tls13) {
        std::memcpy(aad, rec, 5);
    } else {
        // RFC 5246 §6.2.3.3: seq_num + type + version + length (of the plaintext).
        put_u64(aad, _write.seq);
        aad[8] = type;
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = static_cast<std::uint8_t>(data.size() >> 8);
        aad[12] = static_cast<std::uint8_t>(data.size());
        aad_len = 13;
    }
    // The ciphertext is written straight from the caller's plaintext (no copy first).
    if (!aead(true, _aead, _write.key.data(), n, aad, aad_len, reinterpret_cast<const std::uint8_t*>(data.data()),
              data.size(), payload, payload + inner, _tls13 ? &type : nullptr)) {
        return false;
    }
    ++_write.seq;
    return true;
}

RecordLayer::Opened RecordLayer::open(std::span<const char> in, std::uint8_t* buf) noexcept {
    Opened r;
    if (in.size() < 5) return r;
    const auto* h = reinterpret_cast<const std::uint8_t*>(in.data());
    const std::size_t len = static_cast<std::size_t>(h[3]) << 8 | h[4];
    if (h[1] != 3 || len > (_tls13 ? k_tls13_cipher_max : k_record_cipher_max)) {
        r.status = Status::record_overflow;
        return r;
    }
    if (in.size() < 5 + len) return r;  // need_more
    r.consumed = 5 + len;
    r.status = Status::bad_record;
    const bool explicit_nonce = !_tls13 && _aead != Aead::chacha20_poly1305;
    const std::size_t overhead = (explicit_nonce ? 8 : 0) + k_tag + (_tls13 ? 1 : 0);
    // RFC 8446 §5: after the handshake every 1.3 record says application_data outside.
    if (len < overhead || (_tls13 && h[0] != k_type_application_data)) return r;
    const std::uint8_t* payload = h + 5;
    std::uint8_t n[12];
    nonce(_read, _read.seq, n);
    if (explicit_nonce) {
        std::memcpy(n + 4, payload, 8);
        payload += 8;
    }
    const std::size_t ct = len - (explicit_nonce ? 8 : 0) - k_tag;
    std::uint8_t aad[13];
    std::size_t aad_len = 5;
    if (_tls13) {
        std::memcpy(aad, h, 5);
    } else {
        put_u64(aad, _read.seq);
        aad[8] = h[0];
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = static_cast<std::uint8_t>(ct >> 8);
        aad[12] = static_cast<std::uint8_t>(ct);
        aad_len = 13;
    }
    std::uint8_t tag[k_tag];
    std::memcpy(tag, payload + ct, k_tag);
    if (!aead(false, _aead, _read.key.data(), n, aad, aad_len, payload, ct, buf, tag)) return r;
    ++_read.seq;
    std::size_t plain = ct;
    std::uint8_t type = h[0];
    if (_tls13) {
        // RFC 8446 §5.4: strip the zero padding; the last non-zero byte is the real type.
        while (plain != 0 && buf[plain - 1] == 0) --plain;
        if (plain == 0) return r;
        type = buf[--plain];
    }
    if (plain > k_record_plain_max) {
        r.status = Status::record_overflow;
        return r;
    }
    r.status = Status::ok;
    r.type = type;
    r.length = plain;
    return r;
}

bool RecordLayer::update_read_key() noexcept {
    if (!_tls13) return false;
    const std::size_t hash = _sha384 ? 48 : 32;
    std::array<std::uint8_t, 48> next{};
    if (!expand_label(_sha384, {_read.secret.data(), hash}, "traffic upd", next.data(), hash)) return false;
    _read.secret = next;
    OPENSSL_cleanse(next.data(), next.size());
    _read.seq = 0;
    return derive13(_read);
}

bool RecordLayer::update_write_key() noexcept {
    if (!_tls13) return false;
    const std::size_t hash = _sha384 ? 48 : 32;
    std::array<std::uint8_t, 48> next{};
    if (!expand_label(_sha384, {_write.secret.data(), hash}, "traffic upd", next.data(), hash)) return false;
    _write.secret = next;
    OPENSSL_cleanse(next.data(), next.size());
    _write.seq = 0;
    return derive13(_write);
}

}  // namespace xmpp::tls::detail
