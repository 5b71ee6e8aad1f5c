#include "broker/src/modules/carbons/forward.hpp"

#include <gtest/gtest.h>

#include <string>

#include "broker/src/util/dom.hpp"
#include "tests/support/dom_facts.hpp"
#include "xmpp/ns.hpp"
#include "xmpp/xml/tokenizer.hpp"

namespace {

namespace fwd = starling::modules::fwd;
using starling::util::StanzaDom;

fwd::MessageFacts facts(const std::string& xml) { return fwd::read_facts(xml); }

std::string describe(const fwd::MessageFacts& f) {
    std::string s = f.parsed ? "parsed" : "unparsed";
    if (f.has_body) s += " body";
    if (f.is_private) s += " private";
    if (f.is_carbon) s += " carbon";
    if (f.no_copy) s += " no-copy";
    if (f.no_store) s += " no-store";
    if (f.store) s += " store";
    if (f.is_muc_user) s += " muc-user";
    if (f.is_mam_result) s += " mam-result";
    if (f.has_stanza_id) s += " stanza-id";
    return s;
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
        EXPECT_EQ(describe(f), describe(starling::test::dom_facts(row.xml))) << row.xml;
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

struct FactsRow {
    const char* xml;
    const char* facts;  // describe() of what read_facts must see
};

// Namespaces as util::StanzaDom::ns_of resolves them; only children of the message count.
const FactsRow k_fact_rows[] = {
    {"<message/>", "parsed"},
    {"<message><body>x</body></message>", "parsed body"},
    // prefixes: declared on the child, on the message, nowhere, on a sibling
    {"<message><h:store xmlns:h='urn:xmpp:hints'/></message>", "parsed store"},
    {"<message xmlns:h='urn:xmpp:hints'><h:no-store/><body>x</body></message>", "parsed body no-store"},
    {"<message><h:no-store/><body>x</body></message>", "parsed body"},
    {"<message><h:x xmlns:h='urn:xmpp:hints'/><h:store/></message>", "parsed"},
    {"<message xmlns:h='urn:other'><h:store xmlns:h='urn:xmpp:hints'/></message>", "parsed store"},
    {"<message xmlns:h='urn:xmpp:hints'><h:store xmlns:h='urn:other'/></message>", "parsed"},
    {"<message xmlns:c='jabber:client'><c:body>x</c:body></message>", "parsed body"},
    {"<cl:message xmlns:cl='jabber:client'><cl:body>x</cl:body></cl:message>", "parsed body"},
    {"<cl:message xmlns:cl='urn:other'><body>x</body></cl:message>", "parsed body"},
    {"<message><xml:body>x</xml:body></message>", "parsed"},
    {"<message><store:x xmlns:store='urn:xmpp:hints'/></message>", "parsed"},
    // the default namespace: redeclared on the message, on the child, emptied
    {"<message xmlns='urn:other'><body>x</body></message>", "parsed"},
    {"<message xmlns='jabber:client'><body>x</body></message>", "parsed body"},
    {"<message xmlns='urn:other'><body xmlns='jabber:client'>x</body></message>", "parsed body"},
    {"<message><body xmlns=''>x</body></message>", "parsed"},
    {"<message xmlns='urn:xmpp:hints'><store/><body/></message>", "parsed store"},
    // character references in a namespace name are the same name; white space is not
    {"<message><store xmlns='urn:xmpp:hint&#x73;'/></message>", "parsed store"},
    {"<message><store xmlns='urn&#58;xmpp&#x3A;hints'/></message>", "parsed store"},
    {"<message><store xmlns='urn:xmpp:hints '/></message>", "parsed"},
    {"<message><store xmlns='urn:xmpp:&amp;hints'/></message>", "parsed"},
    // self-closing children, white space inside tags, both quotes
    {"<message><no-copy xmlns='urn:xmpp:hints'/><private xmlns='urn:xmpp:carbons:2'/></message>",
     "parsed private no-copy"},
    {"<message ><body\n>x</body ><store xmlns = \"urn:xmpp:hints\" /></message >", "parsed body store"},
    {"<message\tto='a@b'\r\n/>", "parsed"},
    // '>', '/>' and quotes inside attribute values; something like a declaration in a value
    {"<message id='a>b' x=\"it's\"><body y='/>'>x</body></message>", "parsed body"},
    {"<message><h:store a=' xmlns:h=&apos;urn:xmpp:hints&apos;' b=\"xmlns='urn:xmpp:hints'\"/></message>", "parsed"},
    {"<message a='&lt;body/&gt;'><store b=' xmlns=\"urn:xmpp:hints\"'/></message>", "parsed"},
    // only children count: not grandchildren, text, nor CDATA
    {"<message><x xmlns='urn:other'><body>x</body></x></message>", "parsed"},
    {"<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message "
     "xmlns='jabber:client'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message></forwarded></sent></message>",
     "parsed carbon"},
    {"<message><x xmlns='urn:a'><x><body/></x><x/></x><body/></message>", "parsed body"},
    {"<message><x xmlns='urn:o'><![CDATA[<body>x</body>]]></x>text &lt;body/&gt; ></message>", "parsed"},
    {"<message><![CDATA[<body></body>]]><store xmlns='urn:xmpp:hints'/></message>", "parsed store"},
    {"<message>a<body>b</body>c<store xmlns='urn:xmpp:hints'>d</store>e</message>", "parsed body store"},
    // the other facts
    {"<message><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'/></result></message>",
     "parsed mam-result"},
    {"<message><query xmlns='urn:xmpp:mam:2'/></message>", "parsed"},
    {"<message><anything xmlns='http://jabber.org/protocol/muc#user'/></message>", "parsed muc-user"},
    {"<message><received xmlns='urn:xmpp:carbons:2'/><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
     "parsed carbon no-store"},
    {"<message><sent:x xmlns:sent='urn:xmpp:carbons:2'/><body:body xmlns:body='urn:xmpp:carbons:2'/></message>",
     "parsed"},
};

TEST(MessageFacts, ReadsOnlyTheMessagesChildrenByNamespace) {
    for (const auto& row : k_fact_rows) {
        EXPECT_EQ(describe(fwd::read_facts(row.xml)), row.facts) << row.xml;
        // The DOM reading the hooks used before (issue 14) sees the same.
        EXPECT_EQ(describe(starling::test::dom_facts(row.xml)), row.facts) << row.xml;
    }
}

TEST(MessageFacts, FromTheTokenizersViewAreTheSame) {
    // The hooks read the facts of the stanza the tokenizer handed over, from its view (its
    // start tag is not read again): the same facts as from the bytes.
    std::size_t tokenized = 0;
    for (const auto& row : k_fact_rows) {
        xmpp::xml::Tokenizer tok{xmpp::xml::Limits{}};
        tok.append("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'>");
        tok.append(row.xml);
        ASSERT_EQ(tok.next().kind(), xmpp::xml::EventKind::stream_open);
        const auto ev = tok.next();
        if (ev.kind() != xmpp::xml::EventKind::stanza) continue;  // not XML the tokenizer takes
        ++tokenized;
        EXPECT_EQ(describe(fwd::read_facts(ev.element())), row.facts) << row.xml;
    }
    EXPECT_GE(tokenized + 4, std::size(k_fact_rows)) << "most rows are well-formed XML";
}

TEST(MessageFacts, BytesThatAreNotOneElementAreNotParsed) {
    const char* const rows[] = {
        "",
        "<",
        "<>",
        "not xml",
        "<message>",
        "<message",
        "<message/",
        "<message><body>x</body>",
        "<message><body>x</message>",
        "<message><body></message></body>",
        "<message></messagex>",
        "<message a='1></message>",
        "<message a=1></message>",
        "<message a></message>",
        "<message a='<'></message>",
        "<message/><message/>",
        "<message/>text",
        "<message><body a='x/></message>",
        "<message><![CDATA[x</message>",
        "<message><!-- x </message>",
        "<message><!DOCTYPE x></message>",
        "</message>",
        "<message><body>x</body></message><body/>",
    };
    for (const char* xml : rows) {
        const auto f = fwd::read_facts(xml);
        EXPECT_EQ(describe(f), "unparsed") << xml;
        EXPECT_FALSE(fwd::archive_eligible("chat", f)) << xml;
    }
    // Truncated at every byte: never read past the end (ASan), never parsed.
    const std::string whole = "<message id='a>b'><body>x</body><h:store xmlns:h='urn:xmpp:hints'/></message>";
    for (std::size_t n = 0; n < whole.size(); ++n) EXPECT_FALSE(fwd::read_facts(whole.substr(0, n)).parsed) << n;
    EXPECT_EQ(describe(fwd::read_facts(whole)), "parsed body store");
}

TEST(MessageFacts, ReadsAndRemovesForgedStanzaIdsInOneWalk) {
    struct Row {
        const char* in;
        const char* out;  // the stanza afterwards
        bool removed;
        const char* facts;
    };
    // XEP-0359 §4: only <stanza-id/> children by this archive (by='a@x').
    const Row rows[] = {
        {"<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='1'/><body>x</body><stanza-id "
         "xmlns='urn:xmpp:sid:0' by='room@m' id='2'/><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='3'/></message>",
         "<message><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='room@m' id='2'/></message>", true,
         "parsed body stanza-id"},  // the room's is left
        // escaped, prefixed, not self-closing: the same element
        {"<message to='a@x'><stanza-id xmlns='urn:xmpp:sid:0' by='a&#64;x' id='1'/><s:stanza-id "
         "xmlns:s='urn:xmpp:sid:0' by=\"a@x\" id='2'>\n<x/></s:stanza-id><stanza-id xmlns='urn:xmpp:si&#x64;:0' "
         "by='a@x'/><body>x</body></message>",
         "<message to='a@x'><body>x</body></message>", true, "parsed body"},
        // another namespace, another name, no 'by', a grandchild: kept
        {"<message><stanza-id xmlns='urn:other' by='a@x'/><origin-id xmlns='urn:xmpp:sid:0' by='a@x'/><stanza-id "
         "xmlns='urn:xmpp:sid:0'/><x xmlns='urn:o'><stanza-id xmlns='urn:xmpp:sid:0' by='a@x'/></x></message>",
         "<message><stanza-id xmlns='urn:other' by='a@x'/><origin-id xmlns='urn:xmpp:sid:0' by='a@x'/><stanza-id "
         "xmlns='urn:xmpp:sid:0'/><x xmlns='urn:o'><stanza-id xmlns='urn:xmpp:sid:0' by='a@x'/></x></message>",
         false, "parsed stanza-id"},  // the one without 'by'
        // not one element: untouched, not parsed
        {"<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@x'/>", "<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@x'/>",
         false, "unparsed"},
    };
    for (const auto& r : rows) {
        std::string s = r.in;
        bool removed = !r.removed;
        const auto f = fwd::read_facts_removing(s, "stanza-id", fwd::k_ns_sid, "a@x", removed);
        EXPECT_EQ(s, r.out) << r.in;
        EXPECT_EQ(removed, r.removed) << r.in;
        EXPECT_EQ(describe(f), r.facts) << r.in;
        // remove_children does the same cut.
        s = r.in;
        EXPECT_EQ(fwd::remove_children(s, "stanza-id", fwd::k_ns_sid, "a@x"), r.removed) << r.in;
        EXPECT_EQ(s, r.out) << r.in;
    }
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
    s = "<message to='a'>x</message >";
    ASSERT_TRUE(fwd::insert_child(s, "<c/>"));
    EXPECT_EQ(s, "<message to='a'>x<c/></message >");
    s = "<message to='a/>'/>";  // '/>' inside a value does not end the start tag
    ASSERT_TRUE(fwd::insert_child(s, "<c/>"));
    EXPECT_EQ(s, "<message to='a/>'><c/></message>");
    // Not one element, or not ending with its own end tag: untouched.
    for (const std::string bad : {"not xml", "<message>x</body>", "<message>x</message>y", "<message a='</message>'>",
                                  "<message a='x/>", "<>x</>", "</message>", "<message/"}) {
        s = bad;
        EXPECT_FALSE(fwd::insert_child(s, "<c/>")) << bad;
        EXPECT_EQ(s, bad);
    }
}

TEST(RemoveChildren, RemovesOnlyMatchingChildren) {
    std::string s =
        "<message from='b@x/r' to='a@x'><body>hi &amp; &lt;bye&gt;</body><private xmlns='urn:xmpp:carbons:2'/>"
        "<private xmlns='urn:other'/></message>";
    ASSERT_TRUE(fwd::remove_children(s, "private", fwd::k_ns_carbons));
    // Cut out: every other byte as it was.
    EXPECT_EQ(s, "<message from='b@x/r' to='a@x'><body>hi &amp; &lt;bye&gt;</body><private xmlns='urn:other'/></message>");
    EXPECT_FALSE(fwd::remove_children(s, "private", fwd::k_ns_carbons));  // nothing left: untouched
    s = "<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='1'/><stanza-id xmlns='urn:xmpp:sid:0' by='room@m' "
        "id='2'/><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='3'/></message>";
    ASSERT_TRUE(fwd::remove_children(s, "stanza-id", fwd::k_ns_sid, "a@x"));
    EXPECT_EQ(s, "<message><stanza-id xmlns='urn:xmpp:sid:0' by='room@m' id='2'/></message>");
    // The namespace mentioned only in text: walked, nothing removed, bytes unchanged.
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
