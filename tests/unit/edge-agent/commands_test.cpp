#include "edge-agent/src/commands.hpp"

#include <gtest/gtest.h>

#include <pugixml.hpp>

#include "edge-agent/src/config.hpp"

using starling::agent::CommandArg;
using starling::agent::validate_arg;

namespace {

CommandArg integer(std::int64_t min, std::int64_t max) {
    CommandArg a;
    a.type = CommandArg::Type::integer;
    a.min = min;
    a.max = max;
    return a;
}

std::string answer(starling::agent::Commands& c, const std::string& iq) {
    pugi::xml_document d;
    EXPECT_TRUE(d.load_string(iq.c_str()));
    return c.handle(d.first_child()).value_or("");
}

starling::agent::AgentConfig config() {
    auto c = starling::agent::parse_config(R"(
[xmpp]
jid = "dev@example.com"
password = "x"
operators = ["op@example.com"]
[[command]]
name = "set-interval"
args = [{ name = "ms", type = "integer", min = 100, max = 3600000 }]
[[command]]
name = "ping-device"
)",
                                           "t");
    return c;
}

}  // namespace

TEST(CommandArgs, IntegersAtTheLimitsAndOnePast) {
    const auto a = integer(100, 3600000);
    EXPECT_EQ(validate_arg(a, "100"), "");
    EXPECT_EQ(validate_arg(a, "3600000"), "");
    EXPECT_NE(validate_arg(a, "99"), "");
    EXPECT_NE(validate_arg(a, "3600001"), "");
    EXPECT_NE(validate_arg(a, ""), "");
    EXPECT_NE(validate_arg(a, "1e3"), "");
    EXPECT_NE(validate_arg(a, "500 "), "");
    EXPECT_NE(validate_arg(a, "99999999999999999999999"), "");
}

TEST(CommandArgs, BooleansAndStrings) {
    CommandArg b;
    b.type = CommandArg::Type::boolean;
    for (const char* ok : {"true", "false", "1", "0"}) EXPECT_EQ(validate_arg(b, ok), "") << ok;
    for (const char* bad : {"yes", "", "TRUE", "2"}) EXPECT_NE(validate_arg(b, bad), "") << bad;
    CommandArg s;
    s.type = CommandArg::Type::string;
    s.max_len = 8;
    EXPECT_EQ(validate_arg(s, "eth0.1"), "");
    EXPECT_EQ(validate_arg(s, "12345678"), "");
    EXPECT_NE(validate_arg(s, "123456789"), "");
    for (const char* bad : {"a b", "a;b", "$(x)", "../x/", "a\nb", ""}) EXPECT_NE(validate_arg(s, bad), "") << bad;
    s.pattern_chars = "ab";
    EXPECT_EQ(validate_arg(s, "abba"), "");
    EXPECT_NE(validate_arg(s, "abc"), "");
}

TEST(Commands, StrangersAreForbiddenAndSeeNoCommands) {
    const auto cfg = config();
    starling::agent::Commands c(cfg);
    const auto r = answer(c, "<iq type='set' id='1' from='eve@example.com/x'><command "
                             "xmlns='http://jabber.org/protocol/commands' node='ping-device' action='execute'/></iq>");
    EXPECT_NE(r.find("type='error'"), std::string::npos) << r;
    EXPECT_NE(r.find("<forbidden"), std::string::npos) << r;
    EXPECT_NE(r.find("type='auth'"), std::string::npos) << r;
    const auto items = answer(c, "<iq type='get' id='2' from='eve@example.com/x' to='dev@example.com/agent'><query "
                                 "xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>");
    EXPECT_EQ(items.find("<item"), std::string::npos) << items;
    EXPECT_EQ(c.refused(), 1u);
}

TEST(Commands, OperatorsGetTheFormThenValidation) {
    const auto cfg = config();
    starling::agent::Commands c(cfg);
    std::map<std::string, std::string> sent;
    c.set_shim([&](const starling::agent::CommandDef& d, const std::map<std::string, std::string>& args) {
        sent = args;
        sent["_name"] = d.name;
        return std::string();
    });
    const auto form = answer(c, "<iq type='set' id='1' from='Op@Example.com/x'><command "
                                "xmlns='http://jabber.org/protocol/commands' node='set-interval'/></iq>");
    EXPECT_NE(form.find("status='executing'"), std::string::npos) << form;
    EXPECT_NE(form.find("sessionid='s1'"), std::string::npos) << form;
    EXPECT_NE(form.find("<field var='ms'"), std::string::npos) << form;
    const auto bad = answer(c, "<iq type='set' id='2' from='op@example.com/x'><command xmlns='http://jabber.org/protocol/commands' "
                               "node='set-interval' sessionid='s1'><x xmlns='jabber:x:data' type='submit'><field "
                               "var='ms'><value>99</value></field></x></command></iq>");
    EXPECT_NE(bad.find("<bad-request"), std::string::npos) << bad;
    EXPECT_NE(bad.find("<bad-payload xmlns='http://jabber.org/protocol/commands'/>"), std::string::npos) << bad;
    EXPECT_TRUE(sent.empty());
    const auto ok = answer(c, "<iq type='set' id='3' from='op@example.com/x'><command xmlns='http://jabber.org/protocol/commands' "
                              "node='set-interval' sessionid='s1'><x xmlns='jabber:x:data' type='submit'><field "
                              "var='ms'><value>500</value></field></x></command></iq>");
    EXPECT_NE(ok.find("status='completed'"), std::string::npos) << ok;
    EXPECT_EQ(sent["ms"], "500");
    EXPECT_EQ(sent["_name"], "set-interval");
    const auto stale = answer(c, "<iq type='set' id='4' from='op@example.com/x'><command xmlns='http://jabber.org/protocol/commands' "
                                 "node='set-interval' sessionid='s1' action='cancel'/></iq>");
    EXPECT_NE(stale.find("<bad-sessionid"), std::string::npos) << stale;  // completed sessions are gone
    const auto unknown = answer(c, "<iq type='set' id='5' from='op@example.com/x'><command "
                                   "xmlns='http://jabber.org/protocol/commands' node='reboot'/></iq>");
    EXPECT_NE(unknown.find("<item-not-found"), std::string::npos) << unknown;
}
