#include "xmpp/xml/writer.hpp"

#include <gtest/gtest.h>

#include "xmpp/xml/tokenizer.hpp"

namespace {

using namespace xmpp::xml;

TEST(Writer, BuildsNestedElementsWithEscaping) {
    std::string out;
    Writer w(out);
    w.open("message").attr("to", "juliet@example.com").attr("id", "a'b")
        .leaf("body", "Romeo & <Juliet>")
        .open("active").attr("xmlns", "http://jabber.org/protocol/chatstates").close()
        .close();
    EXPECT_EQ(out,
              "<message to='juliet@example.com' id='a&apos;b'><body>Romeo &amp; &lt;Juliet&gt;</body>"
              "<active xmlns='http://jabber.org/protocol/chatstates'/></message>");
    EXPECT_EQ(w.depth(), 0u);
}

TEST(Writer, FinishClosesEverything) {
    std::string out;
    Writer w(out);
    w.open("a").open("b").text("x");
    w.finish();
    EXPECT_EQ(out, "<a><b>x</b></a>");
}

TEST(Writer, StreamHeaderAndErrorParseBack) {
    std::string out;
    write_stream_header(out, {.content_ns = "jabber:client", .from = "example.com", .id = "s1"});
    write_stream_error(out, xmpp::StreamError::not_well_formed, "bad <input>");
    Tokenizer tok;
    tok.append(out);
    auto open = tok.next();
    ASSERT_EQ(open.kind(), EventKind::stream_open);
    EXPECT_EQ(open.element().from().raw(), "example.com");
    EXPECT_EQ(open.element().id().raw(), "s1");
    auto err = tok.next();
    ASSERT_EQ(err.kind(), EventKind::stanza);
    EXPECT_EQ(err.element().qualified_name(), "stream:error");
    EXPECT_NE(err.element().bytes().find("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
              std::string_view::npos);
    EXPECT_EQ(tok.next().kind(), EventKind::stream_close);
}

TEST(Writer, StanzaErrorCarriesDefaultType) {
    std::string out;
    write_stanza_error(out, xmpp::StanzaError::service_unavailable);
    EXPECT_EQ(out,
              "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
}

}  // namespace
