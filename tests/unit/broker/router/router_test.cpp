// ShardRouter's local services and envelopes for chosen shards (service, fan_out), on two
// routers with hand-drained mailboxes.
#include "broker/src/router/router.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace {

using namespace starling::router;

class Client final : public Endpoint {
public:
    explicit Client(const std::string& jid, bool available = true)
        : Endpoint(Kind::client_session), _jid(*xmpp::Jid::parse(jid)), _available(available) {}
    const xmpp::Jid* jid() const noexcept override { return &_jid; }
    bool is_available() const noexcept override { return _available; }
    int priority() const noexcept override { return 0; }
    const std::string& last_presence() const noexcept override { return _presence; }
    void deliver(std::string_view s) override { out.emplace_back(s); }
    void close(xmpp::StreamError, std::string_view) override {}
    std::vector<std::string> out;

private:
    xmpp::Jid _jid;
    bool _available;
    std::string _presence;
};

class RecordingService final : public Service {
public:
    void receive(Envelope&& env) override { got.push_back(std::move(env)); }
    std::vector<Envelope> got;
};

struct Two {
    explicit Two(std::size_t capacity = 64)
        : mailboxes(2, capacity, [](ShardId) {}),
          r0(0, mailboxes, [](Envelope&&) {}),
          r1(1, mailboxes, [](Envelope&&) {}) {
        r0.add_service("pubsub.localhost", &s0);
        r1.add_service("pubsub.localhost", &s1);
    }
    ShardRouter& on(ShardId s) { return s == 0 ? r0 : r1; }
    // A bare JID homed on `shard`.
    std::string user_on(ShardId shard, const std::string& prefix) {
        for (int i = 0;; ++i) {
            std::string bare = prefix + std::to_string(i) + "@localhost";
            if (r0.home_of(bare) == shard) return bare;
        }
    }
    void drain() {
        while (mailboxes.drain(0, [&](Envelope&& e) { r0.on_mail(std::move(e)); }) +
                   mailboxes.drain(1, [&](Envelope&& e) { r1.on_mail(std::move(e)); }) >
               0) {
        }
    }
    Mailboxes<Envelope> mailboxes;
    ShardRouter r0;
    ShardRouter r1;
    RecordingService s0;
    RecordingService s1;
};

Envelope iq_to(const std::string& to) {
    Envelope e;
    e.stanza = StanzaKind::iq;
    e.to = to;
    e.from = "alice@localhost/r";
    e.type = "get";
    e.id = "1";
    e.bytes = "<iq/>";
    return e;
}

TEST(ShardRouterServices, StanzasForAServiceDomainReachItOnTheRoutingShard) {
    Two t;
    for (const char* to : {"pubsub.localhost", "pubsub.localhost/any/resource"}) {
        ASSERT_TRUE(t.r1.route(iq_to(to)));
        ASSERT_EQ(t.s1.got.size(), 1u) << to;
        EXPECT_EQ(t.s1.got[0].to, to);
        EXPECT_EQ(t.s1.got[0].from, "alice@localhost/r");
        t.s1.got.clear();
    }
    EXPECT_TRUE(t.s0.got.empty());
    EXPECT_EQ(t.r1.counters().hops, 0u);
    EXPECT_EQ(t.r1.service_for("someone@pubsub.localhost"), nullptr);  // an account, not the service
    EXPECT_EQ(t.r1.service_for("other.localhost"), nullptr);
}

TEST(ShardRouterServices, ServiceEnvelopesMoveToTheChosenShard) {
    Two t;
    Envelope e = iq_to("pubsub.localhost");
    e.kind = Envelope::Kind::service;
    ASSERT_TRUE(t.r0.send_to(1, std::move(e)));
    EXPECT_TRUE(t.s1.got.empty());  // not before the drain
    t.drain();
    ASSERT_EQ(t.s1.got.size(), 1u);
    EXPECT_TRUE(t.s0.got.empty());
    // To itself: handled now, no mailbox.
    Envelope here = iq_to("pubsub.localhost");
    here.kind = Envelope::Kind::service;
    ASSERT_TRUE(t.r0.send_to(0, std::move(here)));
    EXPECT_EQ(t.s0.got.size(), 1u);
}

TEST(ShardRouterServices, FanOutWritesOneMessagePerRecipientFromTheSharedPayload) {
    Two t;
    const std::string a = t.user_on(1, "a"), b = t.user_on(1, "b");
    Client a1(a + "/one"), a2(a + "/two"), b1(b + "/one"), away(b + "/away", false);
    for (auto* c : {&a1, &a2, &b1, &away}) t.r1.add(c);
    Envelope e;
    e.kind = Envelope::Kind::fan_out;
    e.stanza = StanzaKind::message;
    e.from = "pubsub.localhost";
    e.type = "headline";
    e.fan_out = std::make_shared<const FanOut>(
        FanOut{{{"n1", std::make_shared<const std::string>("<event xmlns='urn:e'/>")}},
               std::make_shared<const std::vector<std::string>>(std::vector<std::string>{a, b + "/one"}), {}});
    ASSERT_TRUE(t.r0.send_to(1, std::move(e)));
    EXPECT_EQ(t.r0.counters().fan_outs, 1u);
    t.drain();
    // A bare JID: every available resource (headline, RFC 6121 §8.5.2.1.1); a full JID: itself.
    const std::string want_a = "<message from='pubsub.localhost' to='" + a +
                               "' type='headline' id='n1'><event xmlns='urn:e'/></message>";
    ASSERT_EQ(a1.out.size(), 1u);
    EXPECT_EQ(a1.out[0], want_a);
    EXPECT_EQ(a2.out, a1.out);
    ASSERT_EQ(b1.out.size(), 1u);
    EXPECT_EQ(b1.out[0], "<message from='pubsub.localhost' to='" + b +
                             "/one' type='headline' id='n1'><event xmlns='urn:e'/></message>");
    EXPECT_TRUE(away.out.empty());
    for (auto* c : {&a1, &a2, &b1, &away}) t.r1.remove(c);
}

TEST(ShardRouterServices, AFanOutOfSeveralMessagesGivesEachRecipientAllOfThemInOrder) {
    Two t;
    const std::string a = t.user_on(1, "a"), b = t.user_on(1, "b");
    Client a1(a + "/one"), b1(b + "/one");
    for (auto* c : {&a1, &b1}) t.r1.add(c);
    Envelope e;
    e.kind = Envelope::Kind::fan_out;
    e.stanza = StanzaKind::message;
    e.from = "pubsub.localhost";
    e.type = "headline";
    e.fan_out = std::make_shared<const FanOut>(FanOut{
        {{"m1", std::make_shared<const std::string>("<one/>")},
         {"m'2", std::make_shared<const std::string>("<two/>")},
         {"", std::make_shared<const std::string>("<three/>")}},
        std::make_shared<const std::vector<std::string>>(std::vector<std::string>{a + "/one", b + "/one"}), {}});
    ASSERT_TRUE(t.r0.send_to(1, std::move(e)));
    t.drain();
    for (auto* c : {&a1, &b1}) {
        const std::string to = c == &a1 ? a + "/one" : b + "/one";
        const std::string head = "<message from='pubsub.localhost' to='" + to + "' type='headline'";
        ASSERT_EQ(c->out.size(), 3u) << to;
        EXPECT_EQ(c->out[0], head + " id='m1'><one/></message>");
        EXPECT_EQ(c->out[1], head + " id='m&apos;2'><two/></message>");  // each id escaped
        EXPECT_EQ(c->out[2], head + "><three/></message>");             // no id: no attribute
    }
    EXPECT_EQ(t.r1.counters().delivered, 6u);
    for (auto* c : {&a1, &b1}) t.r1.remove(c);
}

TEST(ShardRouterServices, AFullMailboxRefusesAndLeavesTheEnvelopeIntact) {
    Two t(2);
    for (int i = 0; i < 2; ++i) {
        Envelope e = iq_to("pubsub.localhost");
        e.kind = Envelope::Kind::service;
        ASSERT_TRUE(t.r0.send_to(1, std::move(e)));
    }
    Envelope e;
    e.kind = Envelope::Kind::fan_out;
    e.from = "pubsub.localhost";
    e.fan_out = std::make_shared<const FanOut>(FanOut{{{"x1", std::make_shared<const std::string>("<x/>")}},
                                                          std::make_shared<const std::vector<std::string>>(
                                                              std::vector<std::string>{"a@localhost"}),
                                                          {}});
    EXPECT_FALSE(t.r0.send_to(1, std::move(e)));
    ASSERT_TRUE(e.fan_out);  // NOLINT(bugprone-use-after-move): a refused send keeps it
    ASSERT_EQ(e.fan_out->messages.size(), 1u);
    EXPECT_EQ(*e.fan_out->messages[0].payload, "<x/>");
    EXPECT_EQ(t.r0.counters().mailbox_full, 1u);
}

}  // namespace
