// Chunk boundaries must not change anything: every split point of a stream, and one byte at a
// time, gives the same events as the whole stream at once.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "xmpp/xml/tokenizer.hpp"

namespace {

using xmpp::xml::EventKind;
using xmpp::xml::Tokenizer;

struct Trace {
    std::vector<std::string> events;  // "open:...", "stanza:<bytes>|to=..|ns=..", "close", "error:cond@offset"
    bool operator==(const Trace&) const = default;
};

void drain(Tokenizer& tok, Trace& t) {
    for (;;) {
        auto ev = tok.next();
        switch (ev.kind()) {
        case EventKind::need_more: return;
        case EventKind::stream_open:
            t.events.push_back("open:" + std::string(ev.element().bytes()));
            break;
        case EventKind::stanza: {
            const auto& e = ev.element();
            std::string s = "stanza:" + std::string(e.bytes()) + "|ns=" + e.ns().unescape() + "|to=" +
                            e.to().unescape() + "|attrs=" + std::to_string(e.attributes().size()) +
                            "|outer=" + (e.depends_on_outer_prefixes() ? "1" : "0");
            t.events.push_back(s);
            break;
        }
        case EventKind::stream_close: t.events.push_back("close"); break;
        case EventKind::error:
            t.events.push_back("error:" + std::string(xmpp::to_string(ev.error().condition)) + "@" +
                               std::to_string(ev.error().offset));
            return;
        }
        if (t.events.back().rfind("error:", 0) == 0) return;
    }
}

Trace whole(std::string_view input) {
    Tokenizer tok;
    Trace t;
    tok.append(input);
    drain(tok, t);
    return t;
}

Trace split(std::string_view input, std::size_t at) {
    Tokenizer tok;
    Trace t;
    tok.append(input.substr(0, at));
    drain(tok, t);
    if (tok.failed()) return t;
    tok.append(input.substr(at));
    drain(tok, t);
    return t;
}

Trace bytewise(std::string_view input) {
    Tokenizer tok;
    Trace t;
    for (char c : input) {
        auto space = tok.prepare(1);
        space[0] = c;
        tok.commit(1);
        drain(tok, t);
        if (tok.failed()) break;
    }
    return t;
}

const std::string k_header =
    "<?xml version='1.0' encoding='UTF-8'?>\n<stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

const std::vector<std::string> k_corpus = {
    k_header +
        "<message to='juliet@example.com/balcony' from='romeo@example.net/orchard' type='chat' "
        "id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>  "
        "<presence><show>away</show><status>caf\u00e9 \u2615 &amp; &lt;cake&gt;</status><priority>5</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' "
        "ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>\n"
        "<iq type='set' id='pub1' to='pubsub.example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        "<publish node='sensors/kitchen'><item id='42'><reading xmlns='urn:starling:telemetry' "
        "sensor=\"t1\" unit='&#xB0;C' value='21.5'/></item></publish></pubsub></iq>"
        "<iq type='set' id='push1'><query xmlns='jabber:iq:roster' ver='ver14'><item jid='nurse@example.com' "
        "name='Nurse' subscription='both'><group>Friends</group><group>\U0001F600</group></item></query></iq>"
        "<message><body><![CDATA[if (a < b && c > d) { ]] }]]>\u4e2d\u6587</body></message>"
        "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>",
    "\xEF\xBB\xBF<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
        "xmlns='jabber:server'><db:result from='a.example' to='b.example'>abc</db:result>"
        "<message xmlns:x='urn:x' x:attr=\"v&#10;w\"><x:e/></message><stream:features/>",
    // Errors must be found at the same offset whatever the chunking.
    k_header + "<message><body>ok</body></message><message><!-- sneaky --></message>",
    k_header + "<message><body>\xE2\x82</body></message>",
    k_header + "<message to='&#x1F600;&#65;' type='&bogus;'/>",
    k_header + "<message><body>" + std::string(300, 'x') + "</body></mess age>",
    k_header + "<iq><query xmlns='jabber:iq:roster'><item jid='a' jid='b'/></query></iq>",
    k_header + "<a><b><c>&#x10FFFF;</c></b></a><d xmlns='urn:d'>]]&gt;</d>",
    // End tags of every name length, with and without white space, nested attributes that must
    // not leak into the stanza's, then an end tag that misses by its last byte.
    k_header + "<abcdefghijklmnopqrstu a='1'><abcdefgh b='2' c='3'></abcdefgh ><abcd/></abcdefghijklmnopqrstu>"
        "<p:q xmlns:p='urn:p' to='x'><p:r s='t'></p:r\n></p:q><ab><abcdefghijk></abcdefghijl></ab>",
    k_header + "<message to='a'><x y='1' y='2'/></message>",
};

TEST(TokenizerChunking, EverySplitPointGivesTheSameEvents) {
    for (std::size_t n = 0; n < k_corpus.size(); ++n) {
        const auto& input = k_corpus[n];
        const Trace expected = whole(input);
        ASSERT_FALSE(expected.events.empty());
        for (std::size_t at = 0; at <= input.size(); ++at) {
            ASSERT_EQ(split(input, at), expected) << "corpus " << n << " split at " << at;
        }
    }
}

TEST(TokenizerChunking, OneByteAtATimeGivesTheSameEvents) {
    for (std::size_t n = 0; n < k_corpus.size(); ++n) {
        EXPECT_EQ(bytewise(k_corpus[n]), whole(k_corpus[n])) << "corpus " << n;
    }
}

TEST(TokenizerChunking, CorpusProducesTheExpectedOutcome) {
    // A sanity check that the corpus exercises both success and every error kind.
    EXPECT_EQ(whole(k_corpus[0]).events.size(), 1u + 6u + 1u);
    EXPECT_EQ(whole(k_corpus[1]).events.size(), 1u + 3u);
    EXPECT_EQ(whole(k_corpus[2]).events.back().substr(0, 20), "error:restricted-xml");
    EXPECT_EQ(whole(k_corpus[3]).events.back().substr(0, 21), "error:not-well-formed");
    EXPECT_EQ(whole(k_corpus[4]).events.back().substr(0, 20), "error:restricted-xml");
    EXPECT_EQ(whole(k_corpus[5]).events.back().substr(0, 21), "error:not-well-formed");
    EXPECT_EQ(whole(k_corpus[6]).events.back().substr(0, 21), "error:not-well-formed");
    EXPECT_EQ(whole(k_corpus[7]).events.size(), 3u);
    EXPECT_EQ(whole(k_corpus[8]).events.size(), 1u + 2u + 1u);
    EXPECT_EQ(whole(k_corpus[8]).events.back().substr(0, 21), "error:not-well-formed");
    EXPECT_EQ(whole(k_corpus[9]).events.back().substr(0, 21), "error:not-well-formed");
}

}  // namespace
