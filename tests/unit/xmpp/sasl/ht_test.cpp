#include "xmpp/sasl/ht.hpp"

#include <gtest/gtest.h>

#include <mbedtls/md.h>

#include <string>

namespace xmpp::sasl {
namespace {

std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : b) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

std::string hmac_sha256(std::string_view key, std::string_view msg) {
    unsigned char out[32];
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), reinterpret_cast<const unsigned char*>(key.data()),
                    key.size(), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out);
    return std::string(reinterpret_cast<const char*>(out), 32);
}

const std::string k_token(80, 'T');

TEST(HtMechanism, Rfc4231LongKeyVectorHoldsForTheStoredKey) {
    // RFC 4231 §4.7 (test case 6): a 131-byte key is hashed first. ht_key() stands in for it.
    const std::string key(131, '\xaa');
    const std::string data = "Test Using Larger Than Block-Size Key - Hash Key First";
    EXPECT_EQ(hex(hmac_sha256(key, data)), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    EXPECT_EQ(hex(hmac_sha256(ht_key(key), data)), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HtMechanism, InitiatorAndResponderAreLabelledHmacsOfTheToken) {
    EXPECT_EQ(ht_initiator(ht_key(k_token), ""), hmac_sha256(k_token, "Initiator"));
    EXPECT_EQ(ht_responder(ht_key(k_token), ""), hmac_sha256(k_token, "Responder"));
    EXPECT_EQ(ht_initiator(ht_key(k_token), "cb"), hmac_sha256(k_token, "Initiatorcb"));
    EXPECT_NE(ht_initiator(ht_key(k_token), ""), ht_responder(ht_key(k_token), ""));
}

TEST(HtMechanism, VerifiesTheClientMessageAgainstTheStoredKeyOnly) {
    const std::string msg = ht_client_initial("sensor-1", k_token, "");
    auto m = parse_ht_initial(msg);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->authcid, "sensor-1");
    EXPECT_TRUE(ht_verify(ht_key(k_token), "", m->initiator_hash));
}

TEST(HtMechanism, RefusesAnotherTokenAnotherBindingOrATruncatedHash) {
    const std::string msg = ht_client_initial("sensor-1", k_token, "");
    auto m = parse_ht_initial(msg);
    ASSERT_TRUE(m);
    std::string other = k_token;
    other.back() = 'U';
    EXPECT_FALSE(ht_verify(ht_key(other), "", m->initiator_hash));
    EXPECT_FALSE(ht_verify(ht_key(k_token), "x", m->initiator_hash));
    EXPECT_FALSE(ht_verify(ht_key(k_token), "", m->initiator_hash.substr(0, 31)));
    std::string flipped(m->initiator_hash);
    flipped[31] = static_cast<char>(flipped[31] ^ 1);
    EXPECT_FALSE(ht_verify(ht_key(k_token), "", flipped));
}

TEST(HtMechanism, ParsesOnlyAnAuthcidAndA32ByteHash) {
    const std::string h32(32, 'h');
    struct Row {
        std::string input;
        bool ok;
        HtError error;
    };
    const Row rows[] = {
        {"user" + std::string(1, '\0') + h32, true, HtError::malformed},
        {"user" + h32, false, HtError::malformed},                                    // no NUL
        {std::string(1, '\0') + h32, false, HtError::empty_authcid},                  // no authcid
        {"user" + std::string(1, '\0') + h32.substr(0, 31), false, HtError::malformed},  // short
        {"user" + std::string(1, '\0') + h32 + "x", false, HtError::malformed},       // long
        {"", false, HtError::malformed},
        {std::string(k_ht_max_authcid_bytes, 'a') + std::string(1, '\0') + h32, true, HtError::malformed},
        {std::string(k_ht_max_authcid_bytes + 1, 'a') + std::string(1, '\0') + h32, false, HtError::too_long},
    };
    for (const auto& r : rows) {
        auto m = parse_ht_initial(r.input);
        EXPECT_EQ(static_cast<bool>(m), r.ok) << hex(r.input.substr(0, 8));
        if (!r.ok && !m) {
            EXPECT_EQ(m.error(), r.error);
        }
    }
}

}  // namespace
}  // namespace xmpp::sasl
