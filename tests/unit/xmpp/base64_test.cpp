#include "xmpp/base64.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using xmpp::Base64Error;

struct Vector {
    std::string plain;
    std::string encoded;
};

// RFC 4648 §10.
const std::vector<Vector> k_vectors = {
    {"", ""},           {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    {std::string("\0\xff\xfe", 3), "AP/+"},
};

TEST(Base64, EncodesTheRfc4648Vectors) {
    for (const auto& v : k_vectors) EXPECT_EQ(xmpp::base64_encode(v.plain), v.encoded) << v.plain;
}

TEST(Base64, DecodesTheRfc4648Vectors) {
    for (const auto& v : k_vectors) {
        auto d = xmpp::base64_decode(v.encoded);
        ASSERT_TRUE(d) << v.encoded;
        EXPECT_EQ(*d, v.plain);
    }
}

TEST(Base64, RoundTripsEveryByteValueAndLength) {
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
    for (std::size_t n = 0; n <= all.size(); ++n) {
        const std::string in = all.substr(0, n);
        const std::string enc = xmpp::base64_encode(in);
        EXPECT_EQ(enc.size(), xmpp::base64_encoded_size(n));
        auto dec = xmpp::base64_decode(enc);
        ASSERT_TRUE(dec);
        EXPECT_EQ(*dec, in);
    }
}

TEST(Base64, AppendsToWhatIsAlreadyThere) {
    std::string out = "v=";
    xmpp::base64_encode_append("foo", out);
    EXPECT_EQ(out, "v=Zm9v");
}

struct Bad {
    std::string input;
    Base64Error error;
};

TEST(Base64, RejectsAnythingButTheCanonicalSpelling) {
    const std::vector<Bad> rows = {
        {"Zg=", Base64Error::bad_length},
        {"Zm9vY", Base64Error::bad_length},
        {"Zm9v\n", Base64Error::bad_length},
        {"Zm 9v", Base64Error::bad_length},
        {"Zm9 ", Base64Error::bad_character},   // RFC 6120 §6.4.2: no whitespace
        {"Zm9\n", Base64Error::bad_character},
        {"Zm9-", Base64Error::bad_character},   // base64url is another alphabet
        {"Zm9_", Base64Error::bad_character},
        {"Zm\xc3\xa9", Base64Error::bad_character},
        {"====", Base64Error::bad_padding},
        {"Z===", Base64Error::bad_padding},
        {"Zg=a", Base64Error::bad_padding},
        {"Zg==Zm9v", Base64Error::bad_padding},  // padding in the middle
        {"Zm8=Zm9v", Base64Error::bad_padding},
        {"Zh==", Base64Error::bad_padding},      // non-zero bits under the padding (RFC 4648 §3.5)
        {"Zm9=", Base64Error::bad_padding},
    };
    for (const auto& row : rows) {
        auto d = xmpp::base64_decode(row.input);
        ASSERT_FALSE(d) << row.input;
        EXPECT_EQ(d.error(), row.error) << row.input << ": " << xmpp::to_string(d.error());
    }
}

TEST(Base64, RefusesInputOverTheLimitAndAcceptsItAtTheLimit) {
    EXPECT_TRUE(xmpp::base64_decode("Zm9vYmFy", 8));
    EXPECT_EQ(xmpp::base64_decode("Zm9vYmFy", 7).error(), Base64Error::too_long);
}

}  // namespace
