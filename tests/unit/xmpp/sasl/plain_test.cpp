#include "xmpp/sasl/plain.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace xmpp::sasl;
using namespace std::string_literals;

TEST(Plain, ParsesAuthzidAuthcidAndPassword) {
    const std::string message = "juliet@example.com\0juliet\0r0m30myr0m30"s;
    auto m = parse_plain(message);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->authzid, "juliet@example.com");
    EXPECT_EQ(m->authcid, "juliet");
    EXPECT_EQ(m->password, "r0m30myr0m30");
}

TEST(Plain, AcceptsAnEmptyAuthzid) {
    const std::string message = "\0tim\0tanstaaftanstaaf"s;  // RFC 4616 §4
    auto m = parse_plain(message);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->authzid, "");
    EXPECT_EQ(m->authcid, "tim");
}

struct Bad {
    std::string message;
    PlainError error;
};

TEST(Plain, RejectsMalformedMessages) {
    const std::vector<Bad> rows = {
        {"", PlainError::malformed},
        {"tim", PlainError::malformed},
        {"\0tim"s, PlainError::malformed},
        {"\0tim\0pass\0word"s, PlainError::malformed},
        {"\0\0pass"s, PlainError::empty_authcid},
        {"\0tim\0"s, PlainError::empty_password},
        {"\0t\xc3\0pass"s, PlainError::invalid_utf8},
        {"\0tim\0pa\xff"s, PlainError::invalid_utf8},
    };
    for (const auto& row : rows) {
        auto m = parse_plain(std::string_view(row.message));
        ASSERT_FALSE(m);
        EXPECT_EQ(to_string(m.error()), to_string(row.error));
    }
}

TEST(Plain, AcceptsPartsAtTheLimitAndRejectsOnePast) {
    const PlainLimits limits{.max_authzid = 8, .max_authcid = 4, .max_password = 6};
    auto parse = [&](const std::string& m) { return parse_plain(std::string_view(m), limits); };
    const std::string nul(1, '\0');
    EXPECT_TRUE(parse(nul + "abcd" + nul + "123456"));
    EXPECT_EQ(parse(nul + "abcde" + nul + "123456").error(), PlainError::too_long);
    EXPECT_EQ(parse(nul + "abcd" + nul + "1234567").error(), PlainError::too_long);
    EXPECT_TRUE(parse("12345678" + nul + "abcd" + nul + "123456"));
    EXPECT_EQ(parse("123456789" + nul + "abc" + nul + "12345").error(), PlainError::too_long);
    EXPECT_EQ(parse(std::string(21, 'x')).error(), PlainError::too_long);  // bounded before scanning
}

TEST(Plain, EncodesWhatItParses) {
    auto e = encode_plain("tim", "tanstaaftanstaaf", "admin@example.com");
    ASSERT_TRUE(e);
    EXPECT_EQ(*e, "admin@example.com\0tim\0tanstaaftanstaaf"s);
    auto m = parse_plain(std::string_view(*e));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->authcid, "tim");
    EXPECT_EQ(encode_plain("tim", "tans").value(), "\0tim\0tans"s);
}

TEST(Plain, RefusesToEncodeNulsOrEmptyParts) {
    EXPECT_EQ(encode_plain("t\0m"s, "p").error(), PlainError::malformed);
    EXPECT_EQ(encode_plain("tim", "p\0"s).error(), PlainError::malformed);
    EXPECT_EQ(encode_plain("tim", "p", "a\0"s).error(), PlainError::malformed);
    EXPECT_EQ(encode_plain("", "p").error(), PlainError::empty_authcid);
    EXPECT_EQ(encode_plain("tim", "").error(), PlainError::empty_password);
}

}  // namespace
