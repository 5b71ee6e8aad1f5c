#include "xmpp/jid.hpp"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>
#include <vector>

namespace {

using xmpp::Jid;
using xmpp::JidError;

struct Valid {
    std::string input;
    std::string full;
    std::string local;
    std::string domain;
    std::string resource;
};

struct Invalid {
    std::string input;
    JidError error;
};

// RFC 7622 §3.5.1 and what clients send every day.
const std::vector<Valid> k_valid = {
    {"juliet@example.com", "juliet@example.com", "juliet", "example.com", ""},
    {"juliet@example.com/foo", "juliet@example.com/foo", "juliet", "example.com", "foo"},
    {"juliet@example.com/foo bar", "juliet@example.com/foo bar", "juliet", "example.com", "foo bar"},
    {"juliet@example.com/foo@bar", "juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar"},
    {"foo\\20bar@example.com", "foo\\20bar@example.com", "foo\\20bar", "example.com", ""},
    {"fussball@example.com", "fussball@example.com", "fussball", "example.com", ""},
    // nodeprep case-folds ß to "ss" (RFC 3454 B.2); PRECIS would keep ß (see jid.cpp).
    {"fu\xc3\x9f" "ball@example.com", "fussball@example.com", "fussball", "example.com", ""},
    {"\xcf\x80@example.com", "\xcf\x80@example.com", "\xcf\x80", "example.com", ""},                  // π
    {"\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo", "\xcf\x83", "example.com", "foo"},        // Σ -> σ
    {"\xcf\x83@example.com/foo", "\xcf\x83@example.com/foo", "\xcf\x83", "example.com", "foo"},       // σ
    {"\xcf\x82@example.com/foo", "\xcf\x83@example.com/foo", "\xcf\x83", "example.com", "foo"},       // ς -> σ (nodeprep)
    {"king@example.com/\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a", "king", "example.com", "\xe2\x99\x9a"},  // ♚
    {"example.com", "example.com", "", "example.com", ""},
    {"example.com/foobar", "example.com/foobar", "", "example.com", "foobar"},
    {"a.example.com/b@example.net", "a.example.com/b@example.net", "", "a.example.com", "b@example.net"},
    // Client cases.
    {"user@example.com/res", "user@example.com/res", "user", "example.com", "res"},
    {"a@b/c/d", "a@b/c/d", "a", "b", "c/d"},
    {"UsEr@ExAmPlE.CoM/Res", "user@example.com/Res", "user", "example.com", "Res"},
    {"\xc4\x88@example.com", "\xc4\x89@example.com", "\xc4\x89", "example.com", ""},                   // Ĉ -> ĉ
    {"user@example.com.", "user@example.com", "user", "example.com", ""},
    {"user@example.com./r", "user@example.com/r", "user", "example.com", "r"},
    {"user@192.168.0.1", "user@192.168.0.1", "user", "192.168.0.1", ""},
    {"user@[::1]/r", "user@[::1]/r", "user", "[::1]", "r"},
    {"user@[2001:DB8::1]", "user@[2001:db8::1]", "user", "[2001:db8::1]", ""},
    {"sensor-42@iot.example.com/\xf0\x9f\x8c\xa1", "sensor-42@iot.example.com/\xf0\x9f\x8c\xa1", "sensor-42",
     "iot.example.com", "\xf0\x9f\x8c\xa1"},  // 🌡: unassigned in Unicode 3.2, allowed in resources
    {"user@xn--bcher-kva.example", "user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", ""},
    {"user@B\xc3\x9c" "CHER.example", "user@b\xc3\xbc" "cher.example", "user", "b\xc3\xbc" "cher.example", ""},
    {"user@b\xc3\xbc" "cher\xe3\x80\x82" "example", "user@b\xc3\xbc" "cher.example", "user", "b\xc3\xbc" "cher.example", ""},
    {"\xef\xbc\xa1" "bc@example.com", "abc@example.com", "abc", "example.com", ""},  // fullwidth Ａ width-mapped
    {"r\xc3\xa9sum\xc3\xa9@example.com/R\xc3\x89SUM\xc3\x89", "r\xc3\xa9sum\xc3\xa9@example.com/R\xc3\x89SUM\xc3\x89",
     "r\xc3\xa9sum\xc3\xa9", "example.com", "R\xc3\x89SUM\xc3\x89"},
};

const std::vector<Invalid> k_invalid = {
    // RFC 7622 §3.5.2.
    {"\"juliet\"@example.com", JidError::bad_localpart},
    {"foo bar@example.com", JidError::bad_localpart},
    {"juliet@example.com/", JidError::bad_resourcepart},
    {"@example.com/", JidError::bad_localpart},
    {"henry\xe2\x85\xa3@example.com", JidError::bad_localpart},  // Ⅳ: compatibility character
    {"\xe2\x99\x9a@example.com", JidError::bad_localpart},       // ♚: symbol
    {"juliet@", JidError::bad_domainpart},
    {"/foobar", JidError::bad_domainpart},
    // Client cases.
    {"", JidError::empty},
    {"@example.com", JidError::bad_localpart},
    {"user@", JidError::bad_domainpart},
    {"user@example.com/", JidError::bad_resourcepart},
    {"a@b@c", JidError::bad_domainpart},
    {"a:b@example.com", JidError::bad_localpart},
    {"a<b@example.com", JidError::bad_localpart},
    {"a&b@example.com", JidError::bad_localpart},
    {"a'b@example.com", JidError::bad_localpart},
    {"a>b@example.com", JidError::bad_localpart},
    {"a\tb@example.com", JidError::bad_localpart},
    {std::string("a\0b@example.com", 15), JidError::bad_localpart},
    {"user@exa mple.com", JidError::bad_domainpart},
    {"user@example..com", JidError::bad_domainpart},
    {"user@.example.com", JidError::bad_domainpart},
    {"user@example.com..", JidError::bad_domainpart},
    {"user@.", JidError::bad_domainpart},
    {"user@-example.com", JidError::bad_domainpart},
    {"user@example-.com", JidError::bad_domainpart},
    {"user@exam_ple.com", JidError::bad_domainpart},
    {"user@[::1", JidError::bad_domainpart},
    {"user@[example.com]", JidError::bad_domainpart},
    {"user@[]", JidError::bad_domainpart},
    {"user@example.com/a\nb", JidError::bad_resourcepart},
    {"user@example.com/a\x7f", JidError::bad_resourcepart},
    {"user@\xe2\x99\x9a.example", JidError::bad_domainpart},
    // Ill-formed UTF-8 in each part.
    {"\xc3@example.com", JidError::invalid_utf8},
    {"\xc0\xaf@example.com", JidError::invalid_utf8},           // overlong '/'
    {"\xed\xa0\x80@example.com", JidError::invalid_utf8},       // surrogate
    {"\xf4\x90\x80\x80@example.com", JidError::invalid_utf8},   // above U+10FFFF
    {"user@\xff.example", JidError::invalid_utf8},
    {"user@example.com/\xe2\x82", JidError::invalid_utf8},
    {"user@example.com/\xe2\x80\x8e\xd7\x90", JidError::bad_resourcepart},  // LRM: bidi-prohibited
};

TEST(Jid, ParsesAndNormalisesEveryValidRow) {
    for (const auto& row : k_valid) {
        SCOPED_TRACE(row.input);
        auto j = Jid::parse(row.input);
        ASSERT_TRUE(j) << xmpp::to_string(j.error());
        EXPECT_EQ(j->full(), row.full);
        EXPECT_EQ(j->localpart(), row.local);
        EXPECT_EQ(j->domainpart(), row.domain);
        EXPECT_EQ(j->resourcepart(), row.resource);
        EXPECT_EQ(j->has_localpart(), !row.local.empty());
        EXPECT_EQ(j->is_bare(), row.resource.empty());
    }
}

TEST(Jid, RejectsEveryInvalidRowWithItsReason) {
    for (const auto& row : k_invalid) {
        SCOPED_TRACE(row.input);
        auto j = Jid::parse(row.input);
        ASSERT_FALSE(j) << j->full();
        EXPECT_EQ(xmpp::to_string(j.error()), xmpp::to_string(row.error));
    }
}

TEST(Jid, NormalisedFormReparsesToTheSameJid) {
    for (const auto& row : k_valid) {
        SCOPED_TRACE(row.input);
        auto j = Jid::parse(row.input);
        ASSERT_TRUE(j);
        auto again = Jid::parse(j->full());
        ASSERT_TRUE(again);
        EXPECT_EQ(*again, *j);
    }
}

TEST(Jid, RejectsEmptyLocalpart) {
    auto j = Jid::parse("@example.com/r");
    ASSERT_FALSE(j);
    EXPECT_EQ(j.error(), JidError::bad_localpart);
}

TEST(Jid, AcceptsPartsOfExactly1023BytesAndRejects1024) {
    const std::string ok(1023, 'a');
    const std::string over(1024, 'a');
    EXPECT_TRUE(Jid::parse(ok + "@example.com"));
    EXPECT_EQ(Jid::parse(over + "@example.com").error(), JidError::too_long);
    EXPECT_TRUE(Jid::parse("example.com/" + ok));
    EXPECT_EQ(Jid::parse("example.com/" + over).error(), JidError::too_long);
    // The domain limit is on the whole part; labels stay within 63 bytes.
    std::string domain;
    while (domain.size() + 64 <= 1023) domain += std::string(63, 'd') + ".";
    domain += std::string(1023 - domain.size(), 'e');
    ASSERT_EQ(domain.size(), 1023u);
    EXPECT_TRUE(Jid::parse("u@" + domain));
    EXPECT_EQ(Jid::parse("u@" + domain + "e").error(), JidError::too_long);
    // A trailing dot is stripped before the limit is applied.
    EXPECT_TRUE(Jid::parse("u@" + domain + "."));
}

TEST(Jid, AppliesTheLimitAfterNormalisationForNonAsciiParts) {
    // "ĉ" is 2 bytes: 511 of them plus "a" = 1023 bytes; one more is 1025.
    std::string local;
    for (int i = 0; i < 511; ++i) local += "\xc4\x88";
    EXPECT_TRUE(Jid::parse(local + "a@example.com"));
    EXPECT_EQ(Jid::parse(local + "\xc4\x88@example.com").error(), JidError::too_long);
    // Soft hyphens map to nothing: a long raw part may normalise under the limit.
    std::string soft;
    for (int i = 0; i < 600; ++i) soft += "\xc2\xad";
    auto j = Jid::parse("example.com/r" + soft);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->resourcepart(), "r");
    // A part made only of characters mapped to nothing is empty, hence invalid.
    EXPECT_EQ(Jid::parse("example.com/" + soft).error(), JidError::bad_resourcepart);
}

TEST(Jid, AcceptsLabelsOf63BytesAndRejects64) {
    EXPECT_TRUE(Jid::parse(std::string(63, 'a') + ".example"));
    EXPECT_EQ(Jid::parse(std::string(64, 'a') + ".example").error(), JidError::bad_domainpart);
}

TEST(Jid, ComparesAndHashesTheNormalisedForm) {
    auto a = Jid::parse("UsEr@ExAmPlE.CoM/Res");
    auto b = Jid::parse("user@example.com./Res");
    auto c = Jid::parse("user@example.com/res");
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(*a, *b);
    EXPECT_NE(*a, *c);  // resources keep their case
    EXPECT_EQ(std::hash<Jid>{}(*a), std::hash<Jid>{}(*b));
    std::unordered_set<Jid> set{*a, *b, *c};
    EXPECT_EQ(set.size(), 2u);
    EXPECT_LT(*a, *c);  // 'R' < 'r'
}

TEST(Jid, GivesItsBareFormWithoutCopyingTheDomain) {
    auto j = Jid::parse("juliet@example.com/balcony");
    ASSERT_TRUE(j);
    EXPECT_EQ(j->bare_view(), "juliet@example.com");
    xmpp::BareJid bare = j->bare();
    EXPECT_EQ(bare.str(), "juliet@example.com");
    EXPECT_EQ(bare.localpart(), "juliet");
    EXPECT_EQ(bare.domainpart(), "example.com");
    Jid back = bare;
    EXPECT_TRUE(back.is_bare());
    EXPECT_EQ(back.full(), "juliet@example.com");
    // The home shard is hash(bare): the same whichever type holds it.
    EXPECT_EQ(std::hash<xmpp::BareJid>{}(bare), std::hash<Jid>{}(back));
}

TEST(Jid, BindsAResourceToABareJid) {
    auto bare = xmpp::BareJid::parse("Juliet@Example.com");
    ASSERT_TRUE(bare);
    auto full = Jid::with_resource(*bare, "Balcony/1");
    ASSERT_TRUE(full);
    EXPECT_EQ(full->full(), "juliet@example.com/Balcony/1");
    EXPECT_EQ(full->bare(), *bare);
    EXPECT_EQ(Jid::with_resource(*bare, "").error(), JidError::bad_resourcepart);
    EXPECT_EQ(Jid::with_resource(*bare, "a\x01").error(), JidError::bad_resourcepart);
}

TEST(BareJid, RejectsAResource) {
    EXPECT_EQ(xmpp::BareJid::parse("a@b/c").error(), JidError::bad_resourcepart);
    auto d = xmpp::BareJid::parse("Example.COM");
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->has_localpart());
    EXPECT_EQ(d->domainpart(), "example.com");
}

TEST(Jid, BuildsFromSeparateParts) {
    auto j = Jid::from_parts("Romeo", "Example.NET", "Orchard");
    ASSERT_TRUE(j);
    EXPECT_EQ(j->full(), "romeo@example.net/Orchard");
    EXPECT_EQ(Jid::from_parts("a@b", "example.net", "").error(), JidError::bad_localpart);
    EXPECT_EQ(Jid::from_parts("", "", "").error(), JidError::bad_domainpart);
}

TEST(JidError, EveryConditionHasAName) {
    for (int i = 0; i <= static_cast<int>(JidError::bad_resourcepart); ++i) {
        EXPECT_NE(xmpp::to_string(static_cast<JidError>(i)), "unknown");
    }
}

// Found by jid_fuzz: a localpart whose prepared form does not prepare to itself must be refused,
// or the same account would have two spellings.
TEST(Jid, RefusesPartsWhoseNormalisationIsNotStable) {
    auto jid = xmpp::Jid::parse("\xEF\xBF\xA8@e");
    ASSERT_FALSE(jid);
    EXPECT_EQ(jid.error(), xmpp::JidError::bad_localpart);
}

}  // namespace

TEST(BareOf, IsAllBeforeTheFirstSlashOfANormalisedJid) {
    static_assert(xmpp::bare_of("juliet@example.com/balcony") == "juliet@example.com");
    EXPECT_EQ(xmpp::bare_of("juliet@example.com/a/b"), "juliet@example.com");  // '/' may recur in a resource
    EXPECT_EQ(xmpp::bare_of("juliet@example.com"), "juliet@example.com");
    EXPECT_EQ(xmpp::bare_of("example.com/node"), "example.com");
    EXPECT_EQ(xmpp::bare_of(""), "");
}
