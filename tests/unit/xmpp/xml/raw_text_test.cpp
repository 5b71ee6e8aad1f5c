#include "xmpp/xml/raw_text.hpp"

#include <gtest/gtest.h>

namespace {

using xmpp::xml::RawText;

struct Row {
    const char* raw;
    const char* text;
};

TEST(RawText, UnescapesReferencesAndNormalisesWhitespace) {
    const Row rows[] = {
        {"plain", "plain"},
        {"a&amp;b", "a&b"},
        {"&lt;&gt;&quot;&apos;", "<>\"'"},
        {"&#65;&#x42;&#X43;", "AB&#X43;"},  // 'X' is not a hex marker: left as written
        {"&#x263A;", "\u263A"},
        {"&#128512;", "\U0001F600"},
        {"a\tb\nc\r\nd\re", "a b c d e"},
        {"&#10;", "\n"},  // a reference survives normalisation
    };
    for (const auto& r : rows) {
        RawText t(r.raw, true);
        EXPECT_EQ(t.unescape(), r.text) << r.raw;
        EXPECT_TRUE(t.equals(r.text)) << r.raw;
    }
}

TEST(RawText, EqualsRejectsPrefixesAndLongerText) {
    RawText t("a&amp;b", true);
    EXPECT_FALSE(t.equals("a&"));
    EXPECT_FALSE(t.equals("a&bc"));
    EXPECT_FALSE(t.equals(""));
    EXPECT_TRUE(RawText::plain("").equals(""));
}

TEST(RawText, PresenceIsDistinctFromEmptiness) {
    RawText absent;
    EXPECT_FALSE(absent.present());
    RawText empty = RawText::plain("");
    EXPECT_TRUE(empty.present());
    EXPECT_TRUE(empty.empty());
}

TEST(Escape, EscapesTextAndAttributes) {
    std::string out;
    xmpp::xml::escape_text_into(out, "a<b>&\"'");
    EXPECT_EQ(out, "a&lt;b&gt;&amp;\"'");
    out.clear();
    xmpp::xml::escape_attribute_into(out, "a<b>&\"'\t\n");
    EXPECT_EQ(out, "a&lt;b&gt;&amp;&quot;&apos;&#9;&#10;");
}

TEST(Escape, AttributeRoundTripsThroughUnescape) {
    const std::string original = "x & y < z \"quoted\" 'single'\ttab\nline\r\n\u00e9";
    std::string escaped;
    xmpp::xml::escape_attribute_into(escaped, original);
    EXPECT_EQ(RawText(escaped, true).unescape(), original);
}

}  // namespace
