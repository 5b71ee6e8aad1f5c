#include "broker/src/modules/offline/delay.hpp"

#include <gtest/gtest.h>

namespace {

using starling::modules::offline::format_stamp;
using starling::modules::offline::insert_delay;

TEST(FormatStamp, WritesUtcWithMilliseconds) {
    struct Row {
        std::int64_t ms;
        const char* want;
    };
    const Row rows[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1'032'308'905'000, "2002-09-18T00:28:25.000Z"},
        {1'795'000'000'042, "2026-11-18T11:06:40.042Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
    };
    for (const auto& r : rows) EXPECT_EQ(format_stamp(r.ms), r.want) << r.ms;
}

TEST(InsertDelay, GoesBeforeTheRootsEndTag) {
    const std::string delay =
        "<delay xmlns='urn:xmpp:delay' from='example.com' stamp='1970-01-01T00:00:01.000Z'>Offline Storage</delay>";
    struct Row {
        std::string in;
        std::string want;
    };
    const Row rows[] = {
        {"<message to='a@b'><body>hi</body></message>", "<message to='a@b'><body>hi</body>" + delay + "</message>"},
        {"<message to='a@b'/>", "<message to='a@b'>" + delay + "</message>"},
        {"<message/>", "<message>" + delay + "</message>"},
        {"<cl:message xmlns:cl='jabber:client'><cl:body>x</cl:body></cl:message>",
         "<cl:message xmlns:cl='jabber:client'><cl:body>x</cl:body>" + delay + "</cl:message>"},
        {"<message a='&lt;/x'><body>&lt;/body&gt;</body></message>",
         "<message a='&lt;/x'><body>&lt;/body&gt;</body>" + delay + "</message>"},
    };
    for (const auto& r : rows) {
        std::string s = r.in;
        ASSERT_TRUE(insert_delay(s, "example.com", 1000)) << r.in;
        EXPECT_EQ(s, r.want);
    }
}

TEST(InsertDelay, EscapesTheDomainAndRejectsNonElements) {
    std::string s = "<message/>";
    ASSERT_TRUE(insert_delay(s, "a'b", 0));
    EXPECT_NE(s.find("from='a&apos;b'"), std::string::npos) << s;
    for (std::string bad : {"", "x", "<>", "text"}) {
        std::string copy = bad;
        EXPECT_FALSE(insert_delay(copy, "d", 0)) << bad;
        EXPECT_EQ(copy, bad);
    }
}

}  // namespace
