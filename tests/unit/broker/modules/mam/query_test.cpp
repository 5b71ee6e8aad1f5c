#include "broker/src/modules/mam/query.hpp"

#include <gtest/gtest.h>

#include <string>

#include "broker/src/util/dom.hpp"
#include "xmpp/ns.hpp"

namespace {

namespace mam = starling::modules::mam;
using starling::util::StanzaDom;
using xmpp::StanzaError;

TEST(Datetime, ParsesXep0082Forms) {
    struct Row {
        const char* text;
        std::int64_t us;
    };
    const Row rows[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2010-07-10T23:08:25Z", 1278803305LL * 1'000'000},
        {"2010-07-10T23:08:25.123Z", 1278803305LL * 1'000'000 + 123'000},
        {"2010-07-10T23:08:25.123456Z", 1278803305LL * 1'000'000 + 123'456},
        {"2010-07-10T23:08:25.1234567Z", 1278803305LL * 1'000'000 + 123'456},
        {"2010-07-11T01:08:25+02:00", 1278803305LL * 1'000'000},
        {"2010-07-10T22:08:25-01:00", 1278803305LL * 1'000'000},
        {"2000-02-29T00:00:00Z", 951782400LL * 1'000'000},
    };
    for (const auto& r : rows) {
        auto v = mam::parse_datetime(r.text);
        ASSERT_TRUE(v.has_value()) << r.text;
        EXPECT_EQ(*v, r.us) << r.text;
    }
}

TEST(Datetime, RejectsMalformed) {
    for (const char* bad : {"", "2010-07-10", "2010-07-10T23:08:25", "2010-07-10 23:08:25Z", "2010-13-10T23:08:25Z",
                            "2010-07-10T24:08:25Z", "2010-07-10T23:08:25.Z", "2010-07-10T23:08:25Zjunk",
                            "2010-07-10T23:08:25+0200", "abcd-07-10T23:08:25Z"}) {
        EXPECT_FALSE(mam::parse_datetime(bad).has_value()) << bad;
    }
}

TEST(Datetime, FormatsWithMicrosecondsAndRoundTrips) {
    EXPECT_EQ(mam::format_datetime(0), "1970-01-01T00:00:00.000000Z");
    EXPECT_EQ(mam::format_datetime(1278803305LL * 1'000'000 + 42), "2010-07-10T23:08:25.000042Z");
    for (std::int64_t us : {std::int64_t{1}, std::int64_t{1'764'000'000'123'456}, std::int64_t{951782400'000'000}}) {
        EXPECT_EQ(mam::parse_datetime(mam::format_datetime(us)), us);
    }
}

xmpp::Result<mam::Query, StanzaError> parse(const std::string& query_xml, mam::QueryLimits limits = {}) {
    static std::string keep;
    keep = "<iq type='set' id='q'>" + query_xml + "</iq>";
    static std::unique_ptr<StanzaDom> dom;
    dom = std::make_unique<StanzaDom>(keep, xmpp::ns::client);
    return mam::parse_query(*dom, StanzaDom::first_element(dom->root()), limits);
}

constexpr const char* k_form_open =
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>";

TEST(ParseQuery, ReadsFormAndRsm) {
    auto q = parse(std::string("<query xmlns='urn:xmpp:mam:2' queryid='f27'>") + k_form_open +
                   "<field var='with'><value>Juliet@Capulet.lit</value></field>"
                   "<field var='start'><value>2010-06-07T00:00:00Z</value></field>"
                   "<field var='end'><value>2010-07-07T13:23:54Z</value></field></x>"
                   "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>abc</after></set></query>");
    ASSERT_TRUE(q) << xmpp::to_string(q.error());
    EXPECT_EQ(q->queryid, "f27");
    EXPECT_EQ(q->with, "juliet@capulet.lit");  // normalised
    EXPECT_TRUE(q->with_is_bare);
    EXPECT_EQ(q->start_us, mam::parse_datetime("2010-06-07T00:00:00Z"));
    EXPECT_EQ(q->end_us, mam::parse_datetime("2010-07-07T13:23:54Z"));
    EXPECT_EQ(q->max, 10u);
    EXPECT_EQ(q->after, "abc");
    EXPECT_FALSE(q->before.has_value());
}

TEST(ParseQuery, DefaultsAndLimits) {
    mam::QueryLimits limits{.default_max = 7, .max_max = 20};
    auto q = parse("<query xmlns='urn:xmpp:mam:2'/>", limits);
    ASSERT_TRUE(q);
    EXPECT_EQ(q->max, 7u);
    EXPECT_TRUE(q->with.empty());
    q = parse("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>20</max></set></query>",
              limits);
    EXPECT_EQ(q->max, 20u);  // at the limit
    q = parse("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>21</max></set></query>",
              limits);
    EXPECT_EQ(q->max, 20u);  // one past it: lowered
    q = parse("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><before/></set></query>");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->before, "");
}

TEST(ParseQuery, ReadsExtendedFields) {
    auto q = parse(std::string("<query xmlns='urn:xmpp:mam:2'>") + k_form_open +
                   "<field var='after-id'><value>a1</value></field>"
                   "<field var='before-id'><value>b2</value></field>"
                   "<field var='ids'><value>i1</value><value>i2</value></field></x><flip-page/></query>");
    ASSERT_TRUE(q) << xmpp::to_string(q.error());
    EXPECT_EQ(q->after_id, "a1");
    EXPECT_EQ(q->before_id, "b2");
    EXPECT_EQ(q->ids, (std::vector<std::string>{"i1", "i2"}));
    EXPECT_TRUE(q->flip_page);
}

TEST(ParseQuery, IdsAtTheLimitAndOnePast) {
    auto with_ids = [](std::size_t n) {
        std::string xml = std::string("<query xmlns='urn:xmpp:mam:2'>") + k_form_open + "<field var='ids'>";
        for (std::size_t i = 0; i < n; ++i) xml += "<value>" + std::to_string(i) + "</value>";
        return xml + "</field></x></query>";
    };
    auto q = parse(with_ids(mam::k_max_query_ids));
    ASSERT_TRUE(q);
    EXPECT_EQ(q->ids.size(), mam::k_max_query_ids);
    q = parse(with_ids(mam::k_max_query_ids + 1));
    ASSERT_FALSE(q);
    EXPECT_EQ(q.error(), StanzaError::policy_violation);
}

TEST(ParseQuery, Errors) {
    struct Row {
        std::string xml;
        StanzaError error;
    };
    const std::string open = std::string("<query xmlns='urn:xmpp:mam:2'>") + k_form_open;
    const Row rows[] = {
        {open + "<field var='start'><value>yesterday</value></field></x></query>", StanzaError::bad_request},
        {open + "<field var='with'><value>@bad</value></field></x></query>", StanzaError::jid_malformed},
        {open + "<field var='after-id'/></x></query>", StanzaError::bad_request},
        {open + "<field var='urn:example:xmpp:free-text-search'><value>x</value></field></x></query>",
         StanzaError::feature_not_implemented},
        {"<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
         "urn:xmpp:mam:1</value></field></x></query>",
         StanzaError::bad_request},
        {"<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set></query>",
         StanzaError::bad_request},
        {"<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>",
         StanzaError::bad_request},
        {"<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after/></set></query>",
         StanzaError::bad_request},
        {"<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>",
         StanzaError::feature_not_implemented},
    };
    for (const auto& r : rows) {
        auto q = parse(r.xml);
        ASSERT_FALSE(q) << r.xml;
        EXPECT_EQ(q.error(), r.error) << r.xml;
    }
}

TEST(WithMatches, BareMatchesEveryResourceFullMatchesOne) {
    mam::Query q;
    EXPECT_TRUE(mam::with_matches(q, "anyone@x/y"));
    q.with = "bob@x";
    q.with_is_bare = true;
    EXPECT_TRUE(mam::with_matches(q, "bob@x/phone"));
    EXPECT_TRUE(mam::with_matches(q, "bob@x"));
    EXPECT_FALSE(mam::with_matches(q, "bob@xy/phone"));
    q.with = "bob@x/phone";
    q.with_is_bare = false;
    EXPECT_TRUE(mam::with_matches(q, "bob@x/phone"));
    EXPECT_FALSE(mam::with_matches(q, "bob@x/laptop"));
    EXPECT_FALSE(mam::with_matches(q, "bob@x"));
}

TEST(SelectPage, ForwardsBackwardsAndCompleteness) {
    const std::vector<std::uint64_t> ids = {10, 20, 30, 40, 50, 60, 70};
    auto p = mam::select_page(ids, std::nullopt, std::nullopt, false, 3);
    EXPECT_EQ(p.begin, 0u);
    EXPECT_EQ(p.end, 3u);
    EXPECT_FALSE(p.complete);
    p = mam::select_page(ids, 30, std::nullopt, false, 3);
    EXPECT_EQ(p.begin, 3u);
    EXPECT_EQ(p.end, 6u);
    EXPECT_FALSE(p.complete);
    p = mam::select_page(ids, 60, std::nullopt, false, 3);
    EXPECT_EQ(p.begin, 6u);
    EXPECT_EQ(p.end, 7u);
    EXPECT_TRUE(p.complete);
    p = mam::select_page(ids, 70, std::nullopt, false, 3);  // after the last: empty, complete
    EXPECT_EQ(p.begin, p.end);
    EXPECT_TRUE(p.complete);
    // An 'after' id that is not among the matches (filtered out) still bounds the page.
    p = mam::select_page(ids, 35, std::nullopt, false, 2);
    EXPECT_EQ(p.begin, 3u);
    EXPECT_EQ(p.end, 5u);
    // Backwards: the last page, then before its first.
    p = mam::select_page(ids, std::nullopt, std::nullopt, true, 3);
    EXPECT_EQ(p.begin, 4u);
    EXPECT_EQ(p.end, 7u);
    EXPECT_FALSE(p.complete);
    p = mam::select_page(ids, std::nullopt, 50, false, 3);
    EXPECT_EQ(p.begin, 1u);
    EXPECT_EQ(p.end, 4u);
    EXPECT_FALSE(p.complete);
    p = mam::select_page(ids, std::nullopt, 20, false, 3);
    EXPECT_EQ(p.begin, 0u);
    EXPECT_EQ(p.end, 1u);
    EXPECT_TRUE(p.complete);
    // Exactly one page: complete.
    p = mam::select_page(ids, std::nullopt, std::nullopt, false, 7);
    EXPECT_EQ(p.end, 7u);
    EXPECT_TRUE(p.complete);
    p = mam::select_page(ids, std::nullopt, std::nullopt, false, 6);
    EXPECT_FALSE(p.complete);
    // max = 0: no items (count only).
    p = mam::select_page(ids, std::nullopt, std::nullopt, false, 0);
    EXPECT_EQ(p.begin, p.end);
    // Nothing matches.
    p = mam::select_page({}, std::nullopt, std::nullopt, false, 5);
    EXPECT_EQ(p.begin, 0u);
    EXPECT_EQ(p.end, 0u);
    EXPECT_TRUE(p.complete);
}

}  // namespace
