#include "broker/src/session/stamp.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "xmpp/xml/tokenizer.hpp"

namespace {

using starling::session::outer_namespace_declarations;
using starling::session::stamp_into;
using xmpp::xml::EventKind;
using xmpp::xml::Tokenizer;

constexpr std::string_view k_header =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "xmlns:x='urn:example:x' to='localhost' version='1.0'>";

// Feeds the header and one stanza; returns the stamped stanza.
std::string stamp(std::string_view stanza, std::string_view from) {
    Tokenizer tok;
    tok.append(k_header);
    auto ev = tok.next();
    EXPECT_EQ(ev.kind(), EventKind::stream_open);
    const std::string decls = outer_namespace_declarations(ev.element());
    tok.append(stanza);
    ev = tok.next();
    EXPECT_EQ(ev.kind(), EventKind::stanza) << stanza;
    std::string out;
    stamp_into(out, ev.element(), from, decls);
    return out;
}

struct Row {
    std::string_view in;
    std::string_view from;
    std::string_view want;
};

TEST(Stamp, PutsTheServersFromFirstAndDropsTheClients) {
    const std::vector<Row> rows = {
        {"<message to='b@localhost'><body>hi</body></message>", "a@localhost/r",
         "<message from='a@localhost/r' to='b@localhost'><body>hi</body></message>"},
        {"<message from='forged@evil' to='b@localhost'/>", "a@localhost/r",
         "<message from='a@localhost/r' to='b@localhost'/>"},
        {"<message to='b@localhost'\n   from=\"x\" type='chat'/>", "a@localhost/r",
         "<message from='a@localhost/r' to='b@localhost' type='chat'/>"},
        {"<presence/>", "a@localhost/r", "<presence from='a@localhost/r'/>"},
        {"<iq type='get' id='1' from='x'><ping xmlns='urn:xmpp:ping'/></iq>", "a@localhost/r",
         "<iq from='a@localhost/r' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"},
        // A resource with characters that need escaping in an attribute.
        {"<message to='b@localhost'/>", "a@localhost/it's <me> & \"you\"",
         "<message from='a@localhost/it&apos;s &lt;me&gt; &amp; &quot;you&quot;' to='b@localhost'/>"},
        // A prefixed 'from' is another attribute: it stays (and its prefix is redeclared).
        {"<message x:from='1' to='b@localhost'/>", "a@localhost/r",
         "<message from='a@localhost/r' xmlns:stream='http://etherx.jabber.org/streams' "
         "xmlns:x='urn:example:x' x:from='1' to='b@localhost'/>"},
    };
    for (const auto& row : rows) EXPECT_EQ(stamp(row.in, row.from), row.want) << row.in;
}

TEST(Stamp, RedeclaresStreamPrefixesOnlyWhenTheStanzaUsesThem) {
    EXPECT_EQ(stamp("<message to='b@localhost'><x:y/></message>", "a@localhost/r"),
              "<message from='a@localhost/r' xmlns:stream='http://etherx.jabber.org/streams' "
              "xmlns:x='urn:example:x' to='b@localhost'><x:y/></message>");
    EXPECT_EQ(stamp("<message to='b@localhost'><y xmlns='urn:example:y'/></message>", "a@localhost/r"),
              "<message from='a@localhost/r' to='b@localhost'><y xmlns='urn:example:y'/></message>");
}

TEST(Stamp, KeepsTheBodyBytesUntouched) {
    const std::string_view in = "<message to='b@localhost'><body>&lt;&amp;&#x263A; caf\xC3\xA9</body></message>";
    EXPECT_EQ(stamp(in, "a@localhost/r"),
              "<message from='a@localhost/r' to='b@localhost'><body>&lt;&amp;&#x263A; caf\xC3\xA9</body></message>");
}

}  // namespace
