#include "broker/src/modules/carbons/forward.hpp"

#include <gtest/gtest.h>

#include <string>

#include "broker/src/util/dom.hpp"
#include "xmpp/ns.hpp"

namespace {

namespace fwd = starling::modules::fwd;
using starling::util::StanzaDom;

fwd::MessageFacts facts(const std::string& xml) {
    StanzaDom dom(xml, xmpp::ns::client);
    return fwd::read_facts(dom);
}

struct EligibilityRow {
    const char* type;
    const char* xml;
    bool carbons;
    bool archive;
};

// XEP-0280 §6 and XEP-0313 §7 / XEP-0334, one row per rule.
const EligibilityRow k_rows[] = {
    {"chat", "<message type='chat'><body>hi</body></message>", true, true},
    {"chat", "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", true, false},
    {"normal", "<message type='normal'><body>hi</body></message>", true, true},
    {"", "<message><body>hi</body></message>", true, true},
    {"normal", "<message type='normal'><x xmlns='jabber:x:data'/></message>", false, false},
    {"headline", "<message type='headline'><body>news</body></message>", false, false},
    {"groupchat", "<message type='groupchat'><body>all</body></message>", false, false},
    {"error", "<message type='error'><body>x</body></message>", false, false},
    {"chat", "<message type='chat'><body>pm</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>", false,
     true},
    {"chat",
     "<message type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'/></sent></message>",
     false, false},
    {"chat", "<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", true, false},
    {"chat", "<message type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", true, false},
    {"chat", "<message type='chat'><store xmlns='urn:xmpp:hints'/></message>", true, true},
    {"", "<message><result xmlns='urn:xmpp:mam:2'/><body>x</body></message>", false, false},
    {"chat", "<message type='chat'><body xmlns='urn:other'>x</body></message>", true, false},
};

TEST(MessageFacts, EligibilityFollowsTheXeps) {
    for (const auto& row : k_rows) {
        const auto f = facts(row.xml);
        EXPECT_EQ(fwd::carbons_eligible(row.type, f), row.carbons) << row.xml;
        EXPECT_EQ(fwd::archive_eligible(row.type, f), row.archive) << row.xml;
    }
}

TEST(MessageFacts, SeesPrivateAndNoCopy) {
    auto f = facts("<message type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>");
    EXPECT_TRUE(f.is_private);
    EXPECT_FALSE(f.no_copy);
    f = facts("<message type='chat'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>");
    EXPECT_TRUE(f.no_copy);
    EXPECT_FALSE(f.is_private);
    f = facts("<message type='chat'><body>x</body><private xmlns='urn:other'/></message>");
    EXPECT_FALSE(f.is_private);
}

TEST(MessageFacts, UnparsableIsNeverEligible) {
    fwd::MessageFacts f;  // parsed = false
    EXPECT_FALSE(fwd::carbons_eligible("chat", f));
    EXPECT_FALSE(fwd::archive_eligible("chat", f));
}

TEST(StartTagEnd, RespectsQuotes) {
    EXPECT_EQ(fwd::start_tag_end("<message to='a>b' id=\"x>y\">"), 26u);
    EXPECT_EQ(fwd::start_tag_end("<m/>"), 3u);
    EXPECT_EQ(fwd::start_tag_end("<m a='unterminated>"), std::string_view::npos);
}

TEST(AppendAsClientNs, AddsTheNamespaceOnlyWhenMissing) {
    struct Row {
        const char* in;
        const char* out;
    };
    const Row rows[] = {
        {"<message from='a@b/c'><body>x</body></message>",
         "<message xmlns='jabber:client' from='a@b/c'><body>x</body></message>"},
        {"<message/>", "<message xmlns='jabber:client'/>"},
        {"<message xmlns='jabber:client' to='x'/>", "<message xmlns='jabber:client' to='x'/>"},
        {"<message xmlns = \"jabber:client\"/>", "<message xmlns = \"jabber:client\"/>"},
        {"<cl:message xmlns:cl='jabber:client'/>", "<cl:message xmlns:cl='jabber:client'/>"},
        // an xmlns:p declaration is not a default namespace
        {"<message xmlns:p='urn:p'><p:x/></message>", "<message xmlns='jabber:client' xmlns:p='urn:p'><p:x/></message>"},
        // 'xmlns' inside a value is not an attribute
        {"<message id=' xmlns=x'/>", "<message xmlns='jabber:client' id=' xmlns=x'/>"},
    };
    for (const auto& r : rows) {
        std::string out;
        fwd::append_as_client_ns(out, r.in);
        EXPECT_EQ(out, r.out) << r.in;
    }
}

TEST(InsertChild, BeforeTheClosingTagOrIntoASelfClosingElement) {
    std::string s = "<message to='a'><body>x</body></message>";
    ASSERT_TRUE(fwd::insert_child(s, "<c/>"));
    EXPECT_EQ(s, "<message to='a'><body>x</body><c/></message>");
    s = "<message to='a/b'/>";
    ASSERT_TRUE(fwd::insert_child(s, "<c/>"));
    EXPECT_EQ(s, "<message to='a/b'><c/></message>");
    s = "<cl:message xmlns:cl='jabber:client'><cl:body>x</cl:body></cl:message>";
    ASSERT_TRUE(fwd::insert_child(s, "<c/>"));
    EXPECT_EQ(s, "<cl:message xmlns:cl='jabber:client'><cl:body>x</cl:body><c/></cl:message>");
    s = "not xml";
    EXPECT_FALSE(fwd::insert_child(s, "<c/>"));
}

TEST(RemoveChildren, RemovesOnlyMatchingChildren) {
    std::string s =
        "<message from='b@x/r' to='a@x'><body>hi &amp; &lt;bye&gt;</body><private xmlns='urn:xmpp:carbons:2'/>"
        "<private xmlns='urn:other'/></message>";
    ASSERT_TRUE(fwd::remove_children(s, "private", fwd::k_ns_carbons));
    // Re-serialized by pugixml: double quotes.
    EXPECT_EQ(s, "<message from=\"b@x/r\" to=\"a@x\"><body>hi &amp; &lt;bye&gt;</body><private xmlns=\"urn:other\"/></message>");
    EXPECT_FALSE(fwd::remove_children(s, "private", fwd::k_ns_carbons));  // nothing left: untouched
    s = "<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='1'/><stanza-id xmlns='urn:xmpp:sid:0' by='room@m' "
        "id='2'/><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='3'/></message>";
    ASSERT_TRUE(fwd::remove_children(s, "stanza-id", fwd::k_ns_sid, "a@x"));
    EXPECT_EQ(s, "<message><stanza-id xmlns=\"urn:xmpp:sid:0\" by=\"room@m\" id=\"2\"/></message>");
    // The namespace mentioned only in text: parsed, nothing removed, bytes unchanged.
    s = "<message><body>urn:xmpp:sid:0</body></message>";
    const std::string before = s;
    EXPECT_FALSE(fwd::remove_children(s, "stanza-id", fwd::k_ns_sid, "a@x"));
    EXPECT_EQ(s, before);
}

TEST(Carbon, WrapsTheOriginalAsXep0280Says) {
    const std::string c = fwd::carbon("sent", "romeo@montague.example", "romeo@montague.example/garden", "chat",
                                      "<message from='romeo@montague.example/home' to='juliet@capulet.example'>"
                                      "<body>Neither, fair saint</body></message>");
    EXPECT_EQ(c,
              "<message from='romeo@montague.example' to='romeo@montague.example/garden' type='chat'>"
              "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
              "<message xmlns='jabber:client' from='romeo@montague.example/home' to='juliet@capulet.example'>"
              "<body>Neither, fair saint</body></message></forwarded></sent></message>");
    // It parses, and the forwarded message is in jabber:client.
    StanzaDom dom(c, xmpp::ns::client);
    ASSERT_TRUE(dom.ok());
    auto sent = dom.child(dom.root(), "sent", fwd::k_ns_carbons);
    auto forwarded = dom.child(sent, "forwarded", fwd::k_ns_forward);
    EXPECT_TRUE(dom.child(forwarded, "message", xmpp::ns::client));
}

TEST(Carbon, EscapesAttributesAndOmitsAnEmptyType) {
    const std::string c = fwd::carbon("received", "a'b@x", "a'b@x/r", "", "<message/>");
    EXPECT_EQ(c.rfind("<message from='a&apos;b@x' to='a&apos;b@x/r'><received ", 0), 0u) << c;
}

}  // namespace
