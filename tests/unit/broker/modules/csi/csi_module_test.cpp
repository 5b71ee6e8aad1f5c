// XEP-0352 on a real shard: the feature, <inactive/> holding presence (latest per full JID),
// a message with a body flushing the queue in order, <active/> flushing before what follows it
// (§5.1), and nonzas nobody handles still ending the stream.
#include "broker/src/modules/csi/csi_module.hpp"

#include <gtest/gtest.h>

#include "tests/unit/broker/support/live_shard.hpp"
#include "xmpp/base64.hpp"

namespace {

using namespace std::chrono_literals;
using starling::modules::CsiModule;
using starling::testing::OneShard;
using starling::testing::TestClient;

std::vector<std::unique_ptr<starling::modules::Module>> csi_only(CsiModule** out = nullptr) {
    std::vector<std::unique_ptr<starling::modules::Module>> v;
    auto m = std::make_unique<CsiModule>();
    if (out) *out = m.get();
    v.push_back(std::move(m));
    return v;
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
    return n;
}

struct Pair {
    CsiModule* module = nullptr;
    OneShard shard{csi_only(&module)};
    TestClient a{shard.port};
    TestClient b{shard.port};
    Pair() {
        shard.add_user("a@localhost", "secret");
        shard.add_user("b@localhost", "secret");
        a.login("a", "secret");
        b.login("b", "secret");
    }
};

TEST(CsiModule, AdvertisesCsiAfterAuthenticationOnly) {
    OneShard shard(csi_only());
    shard.add_user("a@localhost", "secret");
    TestClient c(shard.port);
    c.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    // The <csi/> feature; SASL2's Bind2 names the namespace pre-auth too (<feature var=../>), as
    // XEP-0386 requires, which is not the feature.
    EXPECT_EQ(c.read_until("</stream:features>").find("<csi xmlns='urn:xmpp:csi:0'/>"), std::string::npos);
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
           xmpp::base64_encode(std::string("\0a\0secret", 9)) + "</auth>");
    c.read_until("<success");
    c.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
           "version='1.0'>");
    EXPECT_NE(c.read_until("</stream:features>").find("<csi xmlns='urn:xmpp:csi:0'/>"), std::string::npos);
}

TEST(CsiModule, HoldsLatestPresenceUntilAMessageWithABody) {
    Pair p;
    // The ping's answer says <inactive/> was handled (§5.1: in order) before b starts.
    p.a.send("<inactive xmlns='urn:xmpp:csi:0'/><iq type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>");
    p.a.read_until("id='p0'");
    for (int i = 1; i <= 5; ++i) {
        p.b.send("<presence to='a@localhost/r'><status>s" + std::to_string(i) + "</status></presence>");
    }
    // Nothing yet: presence waits while a is inactive.
    EXPECT_EQ(p.a.read_until("<presence", 300ms).find("<presence"), std::string::npos);
    p.b.send("<message to='a@localhost/r' type='chat' id='m1'><body>hello</body></message>");
    const auto got = p.a.read_until("</message>");
    EXPECT_EQ(count(got, "<presence"), 1u) << got;
    const auto s5 = got.find("<status>s5</status>");
    ASSERT_NE(s5, std::string::npos) << got;
    EXPECT_LT(s5, got.find("<body>hello</body>"));
    // Still inactive: the next presence waits again, a chat state too.
    p.b.send("<presence to='a@localhost/r'><status>s6</status></presence>");
    p.b.send("<message to='a@localhost/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    EXPECT_EQ(p.a.read_until("<presence", 300ms).find("<presence"), std::string::npos);
    // §5.1: <active/> flushes before the ping that follows it is answered.
    p.a.send("<active xmlns='urn:xmpp:csi:0'/><iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    const auto after = p.a.read_until("id='p1'");
    EXPECT_NE(after.find("<status>s6</status>"), std::string::npos) << after;
    EXPECT_NE(after.find("<composing"), std::string::npos) << after;
    EXPECT_LT(after.find("<composing"), after.find("id='p1'"));
    // Active again: presence goes straight through.
    p.b.send("<presence to='a@localhost/r'><status>s7</status></presence>");
    EXPECT_NE(p.a.read_until("</presence>", 2s).find("s7"), std::string::npos);

    const auto c = p.shard.on_shard([&] { return p.module->counters(); });
    EXPECT_EQ(c.inactive, 1u);
    EXPECT_EQ(c.held, 7u);
    EXPECT_EQ(c.coalesced, 4u);
    EXPECT_GT(c.coalesced_bytes, 4 * std::string("<presence/>").size());
    EXPECT_EQ(c.flush_urgent, 1u);
    EXPECT_EQ(c.flush_active, 1u);
    EXPECT_EQ(c.flush_overflow, 0u);
    EXPECT_EQ(c.flushed, 3u);
}

TEST(CsiModule, UnknownNonzaStillEndsTheStream) {
    Pair p;
    p.a.send("<whatever xmlns='urn:example:nonza'/>");
    const auto rest = p.a.read_until_closed(2s);
    EXPECT_NE(rest.find("<unsupported-stanza-type"), std::string::npos) << rest;
}

}  // namespace
