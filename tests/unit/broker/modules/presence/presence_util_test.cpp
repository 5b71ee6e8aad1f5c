#include "broker/src/modules/presence/presence_util.hpp"

#include <gtest/gtest.h>

namespace starling::modules::presence {
namespace {

struct WithToRow {
    const char* in;
    const char* to;
    const char* want;
};

TEST(PresenceWithTo, ReplacesOrInsertsTheToAttribute) {
    const WithToRow rows[] = {
        {"<presence from='a@x/r'/>", "b@x", "<presence to='b@x' from='a@x/r'/>"},
        {"<presence from='a@x/r'><show>away</show></presence>", "b@x",
         "<presence to='b@x' from='a@x/r'><show>away</show></presence>"},
        {"<presence to='old@x' from='a@x/r'/>", "b@x", "<presence to='b@x' from='a@x/r'/>"},
        {"<presence from='a@x/r' to=\"o'ld@x\" id='1'>x</presence>", "b@x",
         "<presence to='b@x' from='a@x/r' id='1'>x</presence>"},
        {"<presence xmlns:to='urn:x' from='a'/>", "b&c", "<presence to='b&amp;c' xmlns:to='urn:x' from='a'/>"},
        {"<presence>", "b", "<presence to='b'>"},
    };
    for (const auto& r : rows) EXPECT_EQ(with_to(r.in, r.to), r.want) << r.in;
}

TEST(PresenceWithoutAttribute, DropsOnlyThatAttribute) {
    EXPECT_EQ(without_attribute("<presence from='a' id='x1'><status>id='y'</status></presence>", "id"),
              "<presence from='a'><status>id='y'</status></presence>");
    EXPECT_EQ(without_attribute("<presence xml:id='k' id=\"2\"/>", "id"), "<presence xml:id='k'/>");
}

TEST(PresenceMake, EscapesAndOmitsEmptyAttributes) {
    EXPECT_EQ(make_presence("a@x", "b@x", "subscribe", "i'd"),
              "<presence from='a@x' to='b@x' type='subscribe' id='i&apos;d'/>");
    EXPECT_EQ(make_presence("a@x", "", "unavailable"), "<presence from='a@x' type='unavailable'/>");
    EXPECT_EQ(make_presence("a", "b", "", {}, "<status>hi</status>"),
              "<presence from='a' to='b'><status>hi</status></presence>");
}

TEST(PresenceInnerXml, IsTheBytesBetweenTheTags) {
    const std::string s = "<presence type='subscribe'><status>hi</status></presence>";
    EXPECT_EQ(inner_xml(s, s.find('>') + 1), "<status>hi</status>");
    const std::string e = "<presence type='subscribe'/>";
    EXPECT_EQ(inner_xml(e, e.size()), "");
}

}  // namespace
}  // namespace starling::modules::presence
