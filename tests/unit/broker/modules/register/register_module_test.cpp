// XEP-0077 on a real shard: the pre-authentication path with registration open, and the field
// parser.
#include "broker/src/modules/register/register_module.hpp"

#include <gtest/gtest.h>

#include "broker/src/util/dom.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using namespace std::chrono_literals;
using starling::modules::parse_register_fields;
using starling::modules::RegisterModule;
using starling::modules::RegisterOptions;
using starling::testing::OneShard;
using starling::testing::TestClient;

starling::modules::RegisterFields fields(const std::string& iq) {
    starling::util::StanzaDom dom(iq, "jabber:client");
    EXPECT_TRUE(dom.ok());
    return parse_register_fields(dom, starling::util::StanzaDom::first_element(dom.root()));
}

TEST(ParseRegisterFields, ReadsPlainFieldsFormsAndRemove) {
    auto f = fields("<iq><query xmlns='jabber:iq:register'><username>bill</username><password>Calliope</password></query></iq>");
    EXPECT_EQ(f.username, "bill");
    EXPECT_EQ(f.password, "Calliope");
    EXPECT_FALSE(f.remove);

    f = fields("<iq><query xmlns='jabber:iq:register'><username>bill</username><password/></query></iq>");
    ASSERT_TRUE(f.password);
    EXPECT_TRUE(f.password->empty());

    f = fields("<iq><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
               "<field var='FORM_TYPE' type='hidden'><value>jabber:iq:register</value></field>"
               "<field var='username'><value>juliet</value></field>"
               "<field var='password'><value>R0m30</value></field></x></query></iq>");
    EXPECT_EQ(f.username, "juliet");
    EXPECT_EQ(f.password, "R0m30");

    f = fields("<iq><query xmlns='jabber:iq:register'><remove/></query></iq>");
    EXPECT_TRUE(f.remove);
    EXPECT_FALSE(f.has_other_children);

    f = fields("<iq><query xmlns='jabber:iq:register'><remove/><username>bill</username></query></iq>");
    EXPECT_TRUE(f.remove);
    EXPECT_TRUE(f.has_other_children);

    // Another namespace's <username/> is not ours.
    f = fields("<iq><query xmlns='jabber:iq:register'><username xmlns='urn:other'>x</username></query></iq>");
    EXPECT_FALSE(f.username);
}

std::vector<std::unique_ptr<starling::modules::Module>> with(RegisterOptions o) {
    std::vector<std::unique_ptr<starling::modules::Module>> v;
    v.push_back(std::make_unique<RegisterModule>(o));
    return v;
}

std::string set(const std::string& id, const std::string& user, const std::string& password) {
    return "<iq type='set' id='" + id + "'><query xmlns='jabber:iq:register'><username>" + user +
           "</username><password>" + password + "</password></query></iq>";
}

TEST(RegisterModule, OpenRegistrationCreatesAnAccountThatLogsIn) {
    RegisterOptions o;
    o.open = true;
    OneShard shard(with(o));
    {
        TestClient c(shard.port);
        c.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        const auto features = c.read_until("</stream:features>");
        EXPECT_NE(features.find("<register xmlns='http://jabber.org/features/iq-register'/>"), std::string::npos)
            << features;
        c.send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>");
        const auto form = c.read_until("</iq>");
        EXPECT_NE(form.find("<username/><password/>"), std::string::npos) << form;
        c.send(set("s", "Device7", "pw"));
        EXPECT_NE(c.read_until("id='s'").find("type='result'"), std::string::npos);
    }
    // Localparts are case-folded (RFC 7622): the account is device7.
    EXPECT_TRUE(*shard.accounts.exists("device7@localhost"));
    TestClient again(shard.port);
    EXPECT_NE(again.login("device7", "pw").find("<jid>device7@localhost/r</jid>"), std::string::npos);
}

TEST(RegisterModule, ClosedRegistrationOffersNothingAndAnswersServiceUnavailable) {
    OneShard shard(with(RegisterOptions{}));
    TestClient c(shard.port);
    c.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    EXPECT_EQ(c.read_until("</stream:features>").find("iq-register"), std::string::npos);
    c.send(set("s", "dev", "pw"));
    EXPECT_NE(c.read_until("</iq>").find("<service-unavailable"), std::string::npos);
    EXPECT_FALSE(*shard.accounts.exists("dev@localhost"));
}

TEST(RegisterModule, RateLimitIsPerAddressAtTheLimitAndOnePast) {
    RegisterOptions o;
    o.open = true;
    o.per_ip_per_window = 2;
    OneShard shard(with(o));
    for (int i = 0; i < 3; ++i) {
        TestClient c(shard.port);
        c.open_stream();
        c.send(set("s", "dev" + std::to_string(i), "pw"));
        auto reply = c.read_until("id='s'");
        reply += c.read_until(i < 2 ? "/>" : "</iq>");
        if (i < 2) {
            EXPECT_NE(reply.find("type='result'"), std::string::npos) << i << reply;
        } else {
            EXPECT_NE(reply.find("<not-acceptable"), std::string::npos) << reply;
        }
    }
    EXPECT_FALSE(*shard.accounts.exists("dev2@localhost"));
}

TEST(RegisterModule, ConflictAndBadUsernames) {
    RegisterOptions o;
    o.open = true;
    OneShard shard(with(o));
    shard.add_user("taken@localhost", "old");
    TestClient c(shard.port);
    c.open_stream();
    c.send(set("a", "taken", "new"));
    EXPECT_NE(c.read_until("</iq>").find("<conflict"), std::string::npos);
    c.send(set("b", "x@evil.example", "pw"));
    EXPECT_NE(c.read_until("</iq>").find("<jid-malformed"), std::string::npos);
    c.send(set("c", "a/b", "pw"));
    EXPECT_NE(c.read_until("</iq>").find("<jid-malformed"), std::string::npos);
    c.send("<iq type='set' id='d'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<unexpected-request"), std::string::npos);
}

TEST(RegisterModule, CancelRemovesTheAccountAndClosesItsStreams) {
    OneShard shard(with(RegisterOptions{}));  // registration closed; cancellation allowed
    shard.add_user("gone@localhost", "pw");
    TestClient a(shard.port), b(shard.port);
    a.login("gone", "pw", "a");
    b.login("gone", "pw", "b");
    a.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    const auto out = a.read_until_closed(2s);
    EXPECT_NE(out.find("id='bye'"), std::string::npos) << out;
    EXPECT_LT(out.find("id='bye'"), out.find("<not-authorized"));  // result first, then the error
    EXPECT_NE(b.read_until_closed(2s).find("<not-authorized"), std::string::npos);
    EXPECT_FALSE(*shard.accounts.exists("gone@localhost"));
}

TEST(RegisterModule, PasswordChangeCanBeSwitchedOff) {
    RegisterOptions o;
    o.allow_password_change = false;
    o.allow_cancel = false;
    OneShard shard(with(o));
    shard.add_user("dev@localhost", "pw");
    TestClient c(shard.port);
    c.login("dev", "pw");
    c.send("<iq type='set' id='p'><query xmlns='jabber:iq:register'><username>dev</username>"
           "<password>new</password></query></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<not-allowed"), std::string::npos);
    c.send("<iq type='set' id='r'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<not-allowed"), std::string::npos);
    c.send("<iq type='set' id='e'><query xmlns='jabber:iq:register'><username>dev</username><password/></query></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<not-allowed"), std::string::npos);
    EXPECT_TRUE(*shard.accounts.exists("dev@localhost"));
}

TEST(RegisterModule, EmptyNewPasswordKeepsTheOldOne) {
    OneShard shard(with(RegisterOptions{}));
    shard.add_user("dev@localhost", "pw");
    TestClient c(shard.port);
    c.login("dev", "pw");
    c.send("<iq type='set' id='e'><query xmlns='jabber:iq:register'><username>dev</username><password/></query></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<bad-request"), std::string::npos);
    TestClient again(shard.port);
    EXPECT_NE(again.login("dev", "pw", "r2").find("<jid>"), std::string::npos);
}

}  // namespace
