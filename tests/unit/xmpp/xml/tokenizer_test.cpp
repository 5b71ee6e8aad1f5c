#include "xmpp/xml/tokenizer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using xmpp::StreamError;
using xmpp::xml::EventKind;
using xmpp::xml::Limits;
using xmpp::xml::Tokenizer;

constexpr std::string_view k_header =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

struct Outcome {
    std::vector<std::string> stanzas;
    bool opened = false;
    bool closed = false;
    bool failed = false;
    StreamError error = StreamError::undefined_condition;
};

Outcome run(std::string_view input, Limits limits = {}) {
    Tokenizer tok(limits);
    tok.append(input);
    Outcome out;
    for (;;) {
        auto ev = tok.next();
        if (ev.kind() == EventKind::need_more) break;
        if (ev.kind() == EventKind::stream_open) out.opened = true;
        if (ev.kind() == EventKind::stanza) out.stanzas.emplace_back(ev.element().bytes());
        if (ev.kind() == EventKind::stream_close) out.closed = true;
        if (ev.kind() == EventKind::error) {
            out.failed = true;
            out.error = ev.error().condition;
            break;
        }
    }
    return out;
}

std::string stream(std::string_view body) { return std::string(k_header) + std::string(body); }

TEST(Tokenizer, YieldsStreamHeaderWithAttributes) {
    Tokenizer tok;
    tok.append(k_header);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::stream_open);
    const auto& e = ev.element();
    EXPECT_EQ(e.qualified_name(), "stream:stream");
    EXPECT_EQ(e.local_name(), "stream");
    EXPECT_EQ(e.prefix(), "stream");
    EXPECT_TRUE(e.ns().equals("http://etherx.jabber.org/streams"));
    EXPECT_EQ(e.to().raw(), "example.com");
    EXPECT_EQ(e.attribute("version").raw(), "1.0");
    EXPECT_EQ(e.attribute("xmlns").raw(), "jabber:client");
    EXPECT_FALSE(e.from().present());
    EXPECT_EQ(tok.depth(), 1u);
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
}

TEST(Tokenizer, YieldsStanzaAsExactBytesWithTopLevelAttributes) {
    const std::string msg =
        "<message to='juliet@example.com' from=\"romeo@example.net/orchard\" type='chat' id='a1' "
        "xml:lang='en'><body>Art thou not Romeo, and a Montague?</body></message>";
    Tokenizer tok;
    tok.append(stream(msg));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::stanza);
    const auto& e = ev.element();
    EXPECT_EQ(e.bytes(), msg);
    EXPECT_EQ(e.local_name(), "message");
    EXPECT_TRUE(e.ns().equals("jabber:client"));
    EXPECT_EQ(e.to().raw(), "juliet@example.com");
    EXPECT_EQ(e.from().raw(), "romeo@example.net/orchard");
    EXPECT_EQ(e.type().raw(), "chat");
    EXPECT_EQ(e.id().raw(), "a1");
    EXPECT_EQ(e.lang().raw(), "en");
    EXPECT_EQ(e.attributes().size(), 5u);
    EXPECT_EQ(e.start_tag(), msg.substr(0, msg.find('>') + 1));
    EXPECT_FALSE(e.depends_on_outer_prefixes());
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
}

TEST(Tokenizer, KeepsAttributeValuesEscapedUntilAsked) {
    Tokenizer tok;
    tok.append(stream("<iq id='a&amp;b&#x263A;&#65;' type='get'/>"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::stanza);
    auto id = ev.element().id();
    EXPECT_EQ(id.raw(), "a&amp;b&#x263A;&#65;");
    EXPECT_TRUE(id.has_refs());
    EXPECT_EQ(id.unescape(), "a&b\u263A" "A");
    EXPECT_TRUE(id.equals("a&b\u263A" "A"));
    EXPECT_FALSE(id.equals("a&b"));
    EXPECT_TRUE(ev.element().is_empty_element());
}

TEST(Tokenizer, ResolvesStanzaNamespaceFromOwnDeclaration) {
    Tokenizer tok;
    tok.append(stream("<a xmlns='urn:x'><b/></a><p:q xmlns:p='urn:p'/>"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto a = tok.next();
    ASSERT_EQ(a.kind(), EventKind::stanza);
    EXPECT_TRUE(a.element().ns().equals("urn:x"));
    auto q = tok.next();
    ASSERT_EQ(q.kind(), EventKind::stanza);
    EXPECT_TRUE(q.element().ns().equals("urn:p"));
    EXPECT_EQ(q.element().local_name(), "q");
    EXPECT_EQ(q.element().prefix(), "p");
}

TEST(Tokenizer, FlagsStanzasThatUseStreamLevelPrefixes) {
    Tokenizer tok;
    tok.append("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
               "xmlns:db='jabber:server:dialback'><db:result to='a'/><message><db:x/></message>"
               "<message/>");
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto r = tok.next();
    ASSERT_EQ(r.kind(), EventKind::stanza);
    EXPECT_TRUE(r.element().depends_on_outer_prefixes());
    EXPECT_TRUE(r.element().ns().equals("jabber:server:dialback"));
    auto m1 = tok.next();
    ASSERT_EQ(m1.kind(), EventKind::stanza);
    EXPECT_TRUE(m1.element().depends_on_outer_prefixes());
    auto m2 = tok.next();
    ASSERT_EQ(m2.kind(), EventKind::stanza);
    EXPECT_FALSE(m2.element().depends_on_outer_prefixes());
}

TEST(Tokenizer, AcceptsWhitespaceKeepalivesBetweenStanzas) {
    auto out = run(stream(" \n<presence/>\t \r\n <presence/>  "));
    EXPECT_FALSE(out.failed);
    ASSERT_EQ(out.stanzas.size(), 2u);
    EXPECT_EQ(out.stanzas[0], "<presence/>");
}

TEST(Tokenizer, ReportsStreamClose) {
    auto out = run(stream("<presence/></stream:stream>"));
    EXPECT_TRUE(out.opened);
    EXPECT_TRUE(out.closed);
    EXPECT_FALSE(out.failed);
    EXPECT_EQ(out.stanzas.size(), 1u);
}

TEST(Tokenizer, ReportsOpenThenCloseForSelfClosedStreamHeader) {
    auto out = run("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>");
    EXPECT_TRUE(out.opened);
    EXPECT_TRUE(out.closed);
}

TEST(Tokenizer, AcceptsCdataAndNonAsciiText) {
    auto out = run(stream("<message><body><![CDATA[<not a tag> & ]] ]>]]>\u00e9\u4e2d\U0001F600</body></message>"));
    EXPECT_FALSE(out.failed);
    EXPECT_EQ(out.stanzas.size(), 1u);
}

TEST(Tokenizer, AcceptsNonAsciiNames) {
    auto out = run(stream("<\u00e9l\u00e9ment xmlns='urn:x' \u00e4ttr='1'><\u4e2d/></\u00e9l\u00e9ment>"));
    EXPECT_FALSE(out.failed);
    EXPECT_EQ(out.stanzas.size(), 1u);
}

TEST(Tokenizer, AcceptsByteOrderMarkAndNoDeclaration) {
    auto out = run("\xEF\xBB\xBF<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a/>");
    EXPECT_FALSE(out.failed);
    EXPECT_EQ(out.stanzas.size(), 1u);
}

TEST(Tokenizer, RestartExpectsANewHeaderAndKeepsPipelinedBytes) {
    Tokenizer tok;
    tok.append(stream("<auth/>") + std::string(k_header) + "<iq/>");
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    ASSERT_EQ(tok.next().kind(), EventKind::stanza);
    tok.restart();
    EXPECT_EQ(tok.depth(), 0u);
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto iq = tok.next();
    ASSERT_EQ(iq.kind(), EventKind::stanza);
    EXPECT_EQ(iq.element().bytes(), "<iq/>");
}

TEST(Tokenizer, DiscardUnscannedDropsBytesAfterStarttls) {
    Tokenizer tok;
    tok.append(stream("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x01garbage"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    ASSERT_EQ(tok.next().kind(), EventKind::stanza);
    EXPECT_EQ(tok.discard_unscanned(), 10u);
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
}

TEST(Tokenizer, FirstErrorWinsAndStays) {
    Tokenizer tok;
    tok.append(stream("<a><!-- c --></a>"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::error);
    EXPECT_EQ(ev.error().condition, StreamError::restricted_xml);
    EXPECT_EQ(ev.error().offset, k_header.size() + 3);  // the '<' of the comment
    tok.append("<b/>");
    auto again = tok.next();
    ASSERT_EQ(again.kind(), EventKind::error);
    EXPECT_EQ(again.error().condition, StreamError::restricted_xml);
    EXPECT_TRUE(tok.failed());
    tok.reset();
    EXPECT_FALSE(tok.failed());
}

// Each malformed input names the stream error it must produce (RFC 6120 §4.9.3, §11).
struct BadCase {
    const char* name;
    std::string input;
    StreamError expected;
};

// gtest prints a parameter's bytes unless told better.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class TokenizerRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(TokenizerRejects, WithTheRightStreamError) {
    const auto& c = GetParam();
    auto out = run(c.input);
    ASSERT_TRUE(out.failed) << c.name;
    EXPECT_EQ(xmpp::to_string(out.error), xmpp::to_string(c.expected)) << c.name;
}

const BadCase k_bad_cases[] = {
    // Restricted XML, RFC 6120 §11.1.
    {"comment", stream("<!-- hi -->"), StreamError::restricted_xml},
    {"comment_in_stanza", stream("<message><!--x--></message>"), StreamError::restricted_xml},
    {"processing_instruction", stream("<?foo bar?>"), StreamError::restricted_xml},
    {"pi_in_stanza", stream("<message><?php x ?></message>"), StreamError::restricted_xml},
    {"second_xml_declaration", stream("<?xml version='1.0'?>"), StreamError::restricted_xml},
    {"doctype", "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>", StreamError::restricted_xml},
    {"entity_declaration_in_stanza", stream("<a><!ENTITY x 'y'></a>"), StreamError::restricted_xml},
    {"undefined_entity_in_text", stream("<message><body>&lol;</body></message>"), StreamError::restricted_xml},
    {"undefined_entity_in_attribute", stream("<message to='&xxe;'/>"), StreamError::restricted_xml},
    {"billion_laughs", "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]>"
                       "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol2;",
     StreamError::restricted_xml},
    // Not well-formed.
    {"mismatched_end_tag", stream("<message></presence>"), StreamError::not_well_formed},
    {"end_tag_before_header", "</stream:stream>", StreamError::not_well_formed},
    {"text_before_header", "hello", StreamError::not_well_formed},
    {"lt_in_attribute", stream("<a b='<'/>"), StreamError::not_well_formed},
    {"unquoted_attribute", stream("<a b=c/>"), StreamError::not_well_formed},
    {"missing_equals", stream("<a b 'c'/>"), StreamError::not_well_formed},
    {"no_space_between_attributes", stream("<a b='1'c='2'/>"), StreamError::not_well_formed},
    {"duplicate_attribute", stream("<a b='1' b='2'/>"), StreamError::not_well_formed},
    {"duplicate_expanded_attribute", stream("<a xmlns:p='urn:x' xmlns:q='urn:x' p:b='1' q:b='2'/>"),
     StreamError::not_well_formed},
    {"unbound_prefix", stream("<message><x:y/></message>"), StreamError::not_well_formed},
    {"unbound_attribute_prefix", stream("<message x:y='1'/>"), StreamError::not_well_formed},
    {"two_colons", stream("<a:b:c/>"), StreamError::not_well_formed},
    {"leading_colon", stream("<:a/>"), StreamError::not_well_formed},
    {"xmlns_prefix_declared", stream("<a xmlns:xmlns='urn:x'/>"), StreamError::not_well_formed},
    {"xml_prefix_rebound", stream("<a xmlns:xml='urn:x'/>"), StreamError::not_well_formed},
    {"empty_prefixed_namespace", stream("<a xmlns:p=''/>"), StreamError::not_well_formed},
    {"bare_ampersand", stream("<message><body>a & b</body></message>"), StreamError::not_well_formed},
    {"unterminated_reference", stream("<message><body>&amp b</body></message>"), StreamError::not_well_formed},
    {"char_ref_to_nul", stream("<message><body>&#0;</body></message>"), StreamError::not_well_formed},
    {"char_ref_to_surrogate", stream("<message><body>&#xD800;</body></message>"), StreamError::not_well_formed},
    {"char_ref_too_large", stream("<message><body>&#x110000;</body></message>"), StreamError::not_well_formed},
    {"control_character", stream("<message><body>a\x01</body></message>"), StreamError::not_well_formed},
    {"nul_in_attribute", stream(std::string("<a b='x\0'/>", 11)), StreamError::not_well_formed},
    {"cdata_end_in_text", stream("<message><body>]]></body></message>"), StreamError::not_well_formed},
    {"cdata_outside_stanza", stream("<![CDATA[x]]>"), StreamError::not_well_formed},
    {"digit_starts_name", stream("<1a/>"), StreamError::not_well_formed},
    {"space_after_lt", stream("< a/>"), StreamError::not_well_formed},
    {"slash_without_gt", stream("<a/ >"), StreamError::not_well_formed},
    {"bad_xml_declaration", "<?xml encoding='UTF-8'?>", StreamError::not_well_formed},
    // End tags: the "</name>" fast path compares the bytes of the open name; near misses of
    // every length class must still be caught.
    {"end_tag_prefix_of_open_name", stream("<message></messag>"), StreamError::not_well_formed},
    {"end_tag_longer_than_open_name", stream("<message></messages>"), StreamError::not_well_formed},
    {"end_tag_differs_in_last_byte_short", stream("<abc></abd>"), StreamError::not_well_formed},
    {"end_tag_differs_in_last_byte_4_to_8", stream("<abcdef></abcdeg>"), StreamError::not_well_formed},
    {"end_tag_differs_in_first_byte_8_to_16", stream("<abcdefghij></xbcdefghij>"), StreamError::not_well_formed},
    {"end_tag_differs_in_middle_long", stream("<abcdefghijklmnopqrstuvwxyz></abcdefghijkXmnopqrstuvwxyz>"),
     StreamError::not_well_formed},
    {"end_tag_differs_in_last_byte_long", stream("<abcdefghijklmnopqrstuvwxyz></abcdefghijklmnopqrstuvwxyZ>"),
     StreamError::not_well_formed},
    {"end_tag_of_outer_element", stream("<a><b></a></b>"), StreamError::not_well_formed},
    {"end_tag_with_equivalent_prefix", stream("<p:a xmlns:p='urn:p' xmlns:q='urn:p'></q:a>"),
     StreamError::not_well_formed},
    {"end_tag_followed_by_junk", stream("<message></message x>"), StreamError::not_well_formed},
    {"end_tag_empty_name", stream("<message></>"), StreamError::not_well_formed},
    // Duplicate detection and namespace checks across many attributes.
    {"duplicate_attribute_first_and_last",
     stream("<a a1='' a2='' a3='' a4='' a5='' a6='' a7='' a8='' a9='' a1=''/>"), StreamError::not_well_formed},
    {"duplicate_long_attribute", stream("<a abcdefghijklmnopqrstu='1' abcdefghijklmnopqrstu='2'/>"),
     StreamError::not_well_formed},
    {"duplicate_attribute_in_nested_element", stream("<message><x y='1' z='2' y='3'/></message>"),
     StreamError::not_well_formed},
    {"prefix_that_looks_like_xmlns", stream("<message xmlnx:a='1'/>"), StreamError::not_well_formed},
    {"unbound_prefix_deep_under_default_namespace", stream("<message xmlns='urn:x'><a><p:b/></a></message>"),
     StreamError::not_well_formed},
    {"unbound_attribute_prefix_deep", stream("<message><a><b p:c='1'/></a></message>"),
     StreamError::not_well_formed},
    {"xml_namespace_bound_to_other_prefix", stream("<a xmlns:foo='http://www.w3.org/XML/1998/namespace'/>"),
     StreamError::not_well_formed},
    {"xmlns_namespace_declared", stream("<a xmlns:p='http://www.w3.org/2000/xmlns/'/>"),
     StreamError::not_well_formed},
    {"xmlns_namespace_declared_with_reference", stream("<a xmlns:p='http://www.w3.org/2000/xmlns&#x2F;'/>"),
     StreamError::not_well_formed},
    {"xmlns_namespace_as_default", stream("<a xmlns='http://www.w3.org/2000/xmlns/'/>"),
     StreamError::not_well_formed},
    // Invalid UTF-8 and characters outside XML's Char production.
    {"invalid_utf8_continuation", stream("<message><body>\x80</body></message>"), StreamError::not_well_formed},
    {"overlong_utf8", stream("<message><body>\xC0\xAF</body></message>"), StreamError::not_well_formed},
    {"overlong_utf8_3", stream("<message><body>\xE0\x80\xAF</body></message>"), StreamError::not_well_formed},
    {"utf8_surrogate", stream("<message><body>\xED\xA0\x80</body></message>"), StreamError::not_well_formed},
    {"utf8_above_max", stream("<message><body>\xF4\x90\x80\x80</body></message>"), StreamError::not_well_formed},
    {"utf8_fffe", stream("<message><body>\xEF\xBF\xBE</body></message>"), StreamError::not_well_formed},
    {"invalid_utf8_in_attribute", stream("<message to='\xFF'/>"), StreamError::not_well_formed},
    {"invalid_utf8_in_name", stream("<a\xC3\x28/>"), StreamError::not_well_formed},
    {"non_name_char_in_name", stream("<a\xC3\x97/>"), StreamError::not_well_formed},  // U+00D7
    // Not something XMPP can process.
    {"text_between_stanzas", stream("hello<message/>"), StreamError::bad_format},
    // Stream header rules, RFC 6120 §4.8.
    {"wrong_stream_namespace", "<stream:stream xmlns:stream='urn:wrong'>", StreamError::invalid_namespace},
    {"unprefixed_stream_in_content_namespace", "<stream xmlns='jabber:client'>", StreamError::invalid_namespace},
    {"wrong_root_name", "<stream:flow xmlns:stream='http://etherx.jabber.org/streams'>",
     StreamError::invalid_namespace},
    {"unbound_stream_prefix", "<stream:stream xmlns='jabber:client'>", StreamError::bad_namespace_prefix},
    {"utf16_stream", std::string("\xFE\xFF\0<", 4), StreamError::unsupported_encoding},
    {"latin1_declaration", "<?xml version='1.0' encoding='ISO-8859-1'?>", StreamError::unsupported_encoding},
};

INSTANTIATE_TEST_SUITE_P(Corpus, TokenizerRejects, ::testing::ValuesIn(k_bad_cases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// Limits are tested at the limit and one past it (CONVENTIONS §7).
TEST(TokenizerLimits, StanzaSizeAtLimitPassesAndOneByteMoreFails) {
    Limits limits;
    limits.max_stanza_bytes = 64;
    const std::string at_limit = "<message><body>" + std::string(64 - 32, 'x') + "</body></message>";
    ASSERT_EQ(at_limit.size(), 64u);
    auto ok = run(stream(at_limit), limits);
    EXPECT_FALSE(ok.failed);
    EXPECT_EQ(ok.stanzas.size(), 1u);
    const std::string past = "<message><body>" + std::string(64 - 31, 'x') + "</body></message>";
    auto bad = run(stream(past), limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
}

TEST(TokenizerLimits, IncompleteHugeStanzaFailsBeforeItEnds) {
    Limits limits;
    limits.max_stanza_bytes = 1024;
    Tokenizer tok(limits);
    tok.append(stream("<message><body>"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
    tok.append(std::string(2000, 'a'));
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::error);
    EXPECT_EQ(ev.error().condition, StreamError::policy_violation);
    EXPECT_LE(tok.buffered(), 4096u);
}

TEST(TokenizerLimits, DepthAtLimitPassesAndOneMoreFails) {
    Limits limits;
    limits.max_depth = 4;
    auto ok = run(stream("<a><b><c><d/></c></b></a>"), limits);
    EXPECT_FALSE(ok.failed);
    auto bad = run(stream("<a><b><c><d><e/></d></c></b></a>"), limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
}

TEST(TokenizerLimits, AttributeCountAtLimitPassesAndOneMoreFails) {
    Limits limits;
    limits.max_attributes = 4;  // the test's stream header has 4
    auto ok = run(stream("<a x='1' y='2' z='3' v='4'/>"), limits);
    EXPECT_FALSE(ok.failed);
    auto bad = run(stream("<a x='1' y='2' z='3' v='4' w='5'/>"), limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
}

TEST(TokenizerLimits, NameLengthAtLimitPassesAndOneMoreFails) {
    Limits limits;
    limits.max_name_bytes = 16;
    auto ok = run(stream("<abcdefghijklmnop abcdefghijklmnop='1'/>"), limits);
    EXPECT_FALSE(ok.failed);
    auto bad = run(stream("<abcdefghijklmnopq/>"), limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
    auto bad_attr = run(stream("<a abcdefghijklmnopq='1'/>"), limits);
    ASSERT_TRUE(bad_attr.failed);
    EXPECT_EQ(bad_attr.error, StreamError::policy_violation);
}

TEST(TokenizerLimits, StreamHeaderIsBoundedToo) {
    Limits limits;
    limits.max_stanza_bytes = 128;
    auto bad = run("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='" +
                       std::string(200, 'a'),
                   limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
}

TEST(Tokenizer, BufferDoesNotGrowAcrossManyStanzas) {
    Tokenizer tok;
    tok.append(k_header);
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    const std::string msg = "<message to='a@b'><body>hello</body></message>";
    for (int i = 0; i < 10000; ++i) {
        auto space = tok.prepare(msg.size());
        std::copy(msg.begin(), msg.end(), space.begin());
        tok.commit(msg.size());
        ASSERT_EQ(tok.next().kind(), EventKind::stanza);
        ASSERT_EQ(tok.next().kind(), EventKind::need_more);
    }
    EXPECT_LE(tok.buffered(), 4096u);
    EXPECT_EQ(tok.stream_offset(), k_header.size() + 10000 * msg.size());
}

TEST(Tokenizer, ReleasesItsBufferBetweenStanzasOnly) {
    // A parked stream gives its receive buffer back; a stanza still arriving keeps it, and the
    // stream goes on across a release as if nothing happened (namespaces, offsets, depth).
    Tokenizer tok;
    tok.append(k_header);
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
    EXPECT_TRUE(tok.release_buffer());
    EXPECT_EQ(tok.capacity(), 0u);
    EXPECT_FALSE(tok.release_buffer());  // nothing left to free

    const std::string first = "<message to='a@b' xmlns:x='urn:x'><body>half";
    const std::string second = "</body><x:y/></message> ";
    const std::string third = "<iq type='get' id='1'/></stream:stream>";
    tok.append(first);
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
    EXPECT_FALSE(tok.release_buffer());  // the stanza's first half is still needed
    EXPECT_GT(tok.capacity(), 0u);
    tok.append(second);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::stanza);
    EXPECT_EQ(ev.element().bytes(), "<message to='a@b' xmlns:x='urn:x'><body>half</body><x:y/></message>");
    EXPECT_EQ(ev.element().ns().raw(), "jabber:client");
    EXPECT_EQ(tok.next().kind(), EventKind::need_more);
    EXPECT_TRUE(tok.release_buffer());

    tok.append(third);
    auto iq = tok.next();
    ASSERT_EQ(iq.kind(), EventKind::stanza);
    EXPECT_EQ(iq.element().attribute("id").raw(), "1");
    EXPECT_EQ(tok.next().kind(), EventKind::stream_close);
    EXPECT_EQ(tok.stream_offset(), k_header.size() + first.size() + second.size() + third.size());
}

TEST(Tokenizer, StreamsThatParkAndWakeShareStorageAndKeepTheirOwnLimits) {
    // Parked streams give their buffer and scan lists to the thread's spares, and waking ones
    // take them: each stream still reads exactly its own bytes, and a stream with a small
    // attribute limit keeps it even on lists that grew larger in another stream.
    Limits wide;
    wide.max_attributes = 40;
    Limits narrow;
    narrow.max_attributes = 5;  // the stream header has 4
    Tokenizer a(wide), b(narrow);
    a.append(k_header);
    b.append(k_header);
    ASSERT_EQ(a.next().kind(), EventKind::stream_open);
    ASSERT_EQ(b.next().kind(), EventKind::stream_open);
    std::string attrs;
    for (int i = 0; i < 30; ++i) attrs += " a" + std::to_string(i) + "='" + std::to_string(i) + "'";
    for (int round = 0; round < 3; ++round) {
        const std::string big = "<iq" + attrs + " id='big" + std::to_string(round) + "'/>";
        a.append(big);
        auto ev = a.next();
        ASSERT_EQ(ev.kind(), EventKind::stanza);
        EXPECT_EQ(ev.element().bytes(), big);
        EXPECT_EQ(ev.element().attribute("a29").raw(), "29");
        EXPECT_EQ(ev.element().attribute("id").raw(), "big" + std::to_string(round));
        ASSERT_EQ(a.next().kind(), EventKind::need_more);
        EXPECT_TRUE(a.release_buffer());

        const std::string small = "<message to='x@y' id='m" + std::to_string(round) + "'><body>hi</body></message>";
        b.append(small);
        auto m = b.next();
        ASSERT_EQ(m.kind(), EventKind::stanza);
        EXPECT_EQ(m.element().bytes(), small);
        EXPECT_EQ(m.element().attribute("id").raw(), "m" + std::to_string(round));
        ASSERT_EQ(b.next().kind(), EventKind::need_more);
        EXPECT_TRUE(b.release_buffer());
    }
    b.append("<a x='1' y='2' z='3' v='4' w='5' u='6'/>");
    auto over = b.next();
    ASSERT_EQ(over.kind(), EventKind::error);
    EXPECT_EQ(over.error().condition, StreamError::policy_violation);
}

TEST(Tokenizer, ManyAttributesGrowTheListsUpToTheLimit) {
    // The attribute lists start small and grow; at the limit the stanza passes with every
    // attribute intact, one more is a policy violation.
    Limits limits;
    limits.max_attributes = 40;
    std::string attrs;
    for (int i = 0; i < 40; ++i) attrs += " a" + std::to_string(i) + "='" + std::to_string(i) + "'";
    Tokenizer tok(limits);
    tok.append(stream("<iq" + attrs + "/>"));
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto ev = tok.next();
    ASSERT_EQ(ev.kind(), EventKind::stanza);
    ASSERT_EQ(ev.element().attributes().size(), 40u);
    EXPECT_EQ(ev.element().attribute("a0").raw(), "0");
    EXPECT_EQ(ev.element().attribute("a39").raw(), "39");
    EXPECT_TRUE(run(stream("<iq" + attrs + " b='x'/>"), limits).failed);
}

}  // namespace

namespace {

// Feeds `input` one byte at a time and returns every stanza's bytes and attributes, to check
// that what a stanza reports survives chunk boundaries and the elements nested in it.
std::vector<std::string> stanza_attrs_bytewise(std::string_view input) {
    Tokenizer tok;
    std::vector<std::string> out;
    for (char c : input) {
        tok.append(std::string_view(&c, 1));
        for (;;) {
            auto ev = tok.next();
            if (ev.kind() == EventKind::need_more) break;
            if (ev.kind() == EventKind::error) {
                out.push_back("error");
                return out;
            }
            if (ev.kind() != EventKind::stanza) continue;
            std::string s(ev.element().qualified_name());
            for (const auto& a : ev.element().attributes()) {
                s += " " + std::string(a.name) + "=" + a.value.unescape();
            }
            s += " ns=" + ev.element().ns().unescape();
            out.push_back(s);
        }
    }
    return out;
}

}  // namespace

TEST(Tokenizer, AcceptsEndTagsWithSpaceAndNamesOfEveryLength) {
    auto out = run(stream("<abcdefghijklmnopq><abcdefghijklmnopr></abcdefghijklmnopr ></abcdefghijklmnopq\n>"
                          "<a><ab><abc><abcd><abcdefgh><abcdefghi/></abcdefgh></abcd></abc></ab></a>"
                          "<p:x xmlns:p='urn:p'><p:y></p:y></p:x></stream:stream>"));
    EXPECT_FALSE(out.failed);
    EXPECT_EQ(out.stanzas.size(), 3u);
    EXPECT_TRUE(out.closed);
}

TEST(Tokenizer, StanzaAttributesSurviveNestedElementsWithAttributes) {
    const std::string in = stream(
        "<message to='a@b' from='c@d/e'><x xmlns='urn:x' y='1' z='2'><w q='3' r='4' s='5'/></x>"
        "<body>hi &amp; bye</body></message><iq id='7' type='get'><ping xmlns='urn:xmpp:ping' a='b'/></iq>"
        "<presence/>");
    const std::vector<std::string> want = {
        "message to=a@b from=c@d/e ns=jabber:client",
        "iq id=7 type=get ns=jabber:client",
        "presence ns=jabber:client",
    };
    EXPECT_EQ(stanza_attrs_bytewise(in), want);
    // And whole, through the views handed out with each event.
    Tokenizer tok;
    tok.append(in);
    ASSERT_EQ(tok.next().kind(), EventKind::stream_open);
    auto m = tok.next();
    ASSERT_EQ(m.kind(), EventKind::stanza);
    ASSERT_EQ(m.element().attributes().size(), 2u);
    EXPECT_EQ(m.element().to().raw(), "a@b");
    EXPECT_EQ(m.element().from().raw(), "c@d/e");
    EXPECT_FALSE(m.element().attribute("y").present());
    auto iq = tok.next();
    ASSERT_EQ(iq.kind(), EventKind::stanza);
    EXPECT_EQ(iq.element().id().raw(), "7");
    EXPECT_FALSE(iq.element().attribute("a").present());
}

TEST(Tokenizer, NestedDefaultNamespacesDoNotChangeTheStanzaNamespace) {
    const std::string in = stream(
        "<message><x xmlns='urn:x'><y/></x></message>"
        "<message xmlns='urn:m'><x xmlns='urn:x'/><z/></message>"
        "<p:q xmlns:p='urn:p' xmlns='urn:d'><r/></p:q>");
    const std::vector<std::string> want = {
        "message ns=jabber:client",
        "message xmlns=urn:m ns=urn:m",
        "p:q xmlns:p=urn:p xmlns=urn:d ns=urn:p",
    };
    EXPECT_EQ(stanza_attrs_bytewise(in), want);
}

TEST(TokenizerLimits, FullOpenStackAndAttributeListAreReusedAcrossStanzas) {
    Limits limits;
    limits.max_depth = 4;
    limits.max_attributes = 4;
    // The deepest element is not self-closed, so the open-element stack fills up.
    const std::string deep = "<a><b w='1' x='2' y='3' z='4'><c><d w='1' x='2' y='3' z='4'></d></c></b></a>";
    auto ok = run(stream(deep + deep + deep), limits);
    EXPECT_FALSE(ok.failed);
    EXPECT_EQ(ok.stanzas.size(), 3u);
    auto bad = run(stream(deep + "<a><b><c><d><e></e></d></c></b></a>"), limits);
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);
    EXPECT_EQ(bad.stanzas.size(), 1u);
}

TEST(TokenizerLimits, DefaultDepthAndAttributeLimitsHold) {
    std::string open, close;
    for (int i = 0; i < 32; ++i) {
        open += "<e" + std::to_string(i) + ">";
        close = "</e" + std::to_string(i) + ">" + close;
    }
    auto ok = run(stream(open + close));
    EXPECT_FALSE(ok.failed);
    EXPECT_EQ(ok.stanzas.size(), 1u);
    auto bad = run(stream(open + "<x></x>" + close));
    ASSERT_TRUE(bad.failed);
    EXPECT_EQ(bad.error, StreamError::policy_violation);

    std::string attrs;
    for (int i = 0; i < 64; ++i) attrs += " a" + std::to_string(i) + "='" + std::to_string(i) + "'";
    auto ok_attrs = run(stream("<m" + attrs + "><n" + attrs + "/></m>"));
    EXPECT_FALSE(ok_attrs.failed);
    auto bad_attrs = run(stream("<m" + attrs + " z='1'/>"));
    ASSERT_TRUE(bad_attrs.failed);
    EXPECT_EQ(bad_attrs.error, StreamError::policy_violation);
}
