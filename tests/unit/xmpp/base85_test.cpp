#include "xmpp/base85.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace {

using xmpp::Base85Error;

TEST(Base85, RoundTripsEveryLengthAndTheExtremes) {
    std::mt19937 rng(85);
    for (std::size_t len = 0; len <= 70; ++len) {
        for (int fill = 0; fill < 3; ++fill) {
            std::string in(len, '\0');
            for (auto& c : in) c = static_cast<char>(fill == 0 ? 0 : fill == 1 ? 0xff : rng() & 0xff);
            const std::string enc = xmpp::base85_encode(in);
            EXPECT_EQ(enc.size(), xmpp::base85_encoded_size(len));
            auto dec = xmpp::base85_decode(enc);
            ASSERT_TRUE(dec) << len;
            EXPECT_EQ(*dec, in) << len;
        }
    }
}

TEST(Base85, IsAQuarterLargerAndNeedsNoXmlEscaping) {
    std::string in(4000, '\0');
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<char>(i * 7919 % 256);
    const std::string enc = xmpp::base85_encode(in);
    EXPECT_EQ(enc.size(), 5000u);  // base64 would take 5336
    for (char c : enc) {
        EXPECT_TRUE(c > ' ' && c < 0x7f && c != '<' && c != '>' && c != '&' && c != '\'' && c != '"') << c;
    }
}

TEST(Base85, KnownValues) {
    EXPECT_EQ(xmpp::base85_encode(std::string("\0\0\0\0", 4)), "00000");
    EXPECT_EQ(xmpp::base85_encode("\xff\xff\xff\xff"), "_NsC0");  // 2^32 - 1
    EXPECT_EQ(*xmpp::base85_decode("_NsC0"), "\xff\xff\xff\xff");
}

TEST(Base85, RefusesBadInput) {
    EXPECT_EQ(xmpp::base85_decode("0000<").error(), Base85Error::bad_character);
    EXPECT_EQ(xmpp::base85_decode("00 00").error(), Base85Error::bad_character);
    EXPECT_EQ(xmpp::base85_decode("000000").error(), Base85Error::bad_length);
    EXPECT_EQ(xmpp::base85_decode("}}}}}").error(), Base85Error::overflow);
    EXPECT_EQ(xmpp::base85_decode(std::string(20, '0'), 10).error(), Base85Error::too_long);
    // Two spellings of one byte: only the encoder's is accepted.
    const std::string one = xmpp::base85_encode("A");
    std::string other = one;
    other[1] = other[1] == '0' ? '1' : '0';
    auto d = xmpp::base85_decode(other);
    EXPECT_TRUE(!d || *d != "A");
}

}  // namespace
