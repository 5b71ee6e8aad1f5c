// PubsubService on two shards wired as the broker wires them (store, routers, mailboxes, hook
// tables), without sockets or threads: mailboxes are drained by hand, clients are fake endpoints
// that keep what they are sent.
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include <filesystem>
#include <random>
#include <set>

#include "broker/src/modules/pubsub/pubsub_module.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/util/random.hpp"

namespace {

using namespace starling;
using modules::pubsub::PubsubOptions;
using modules::pubsub::PubsubService;

constexpr std::string_view k_svc = "pubsub.localhost";

class FakeClient final : public router::Endpoint {
public:
    explicit FakeClient(const std::string& jid) : Endpoint(Kind::client_session), _jid(*xmpp::Jid::parse(jid)) {}
    const xmpp::Jid* jid() const noexcept override { return &_jid; }
    bool is_available() const noexcept override { return true; }
    int priority() const noexcept override { return 0; }
    const std::string& last_presence() const noexcept override { return _presence; }
    void deliver(std::string_view s) override { out.emplace_back(s); }
    void close(xmpp::StreamError, std::string_view) override {}

    std::string last() const { return out.empty() ? std::string() : out.back(); }
    std::vector<std::string> out;

private:
    xmpp::Jid _jid;
    std::string _presence;
};

class TwoShards {
public:
    explicit TwoShards(PubsubOptions options = {}, std::size_t mailbox_capacity = 1024) {
        std::random_device rd;
        _dir = std::filesystem::temp_directory_path() / ("starling-pubsub-test-" + std::to_string(rd()));
        store = storage::Store::open(_dir.string());
        accounts = std::make_unique<storage::AccountStore>(*store);
        mailboxes = std::make_unique<router::Mailboxes<router::Envelope>>(2, mailbox_capacity, [](router::ShardId) {});
        for (router::ShardId i = 0; i < 2; ++i) {
            routers[i] = std::make_unique<router::ShardRouter>(i, *mailboxes, [](router::Envelope&&) {});
            ctx[i] = std::make_unique<session::ShardServices>(session::ShardServices{
                .shard = i, .io = io, .server = server, .accounts = *accounts, .router = *routers[i],
                .random = random[i], .hooks = &hosts[i], .store = store.get()});
            auto m = std::make_unique<modules::PubsubModule>(nullptr, options);
            auto* raw = m.get();
            std::vector<std::unique_ptr<session::Module>> mods;
            mods.push_back(std::move(m));
            hosts[i].install(*ctx[i], std::move(mods));
            routers[i]->set_hooks(&hosts[i]);
            service[i] = raw->service();
        }
    }
    ~TwoShards() {
        for (auto& c : clients) routers[routers[0]->home_of(c->jid()->bare_view())]->remove(c.get());
        for (auto& c : ctx) c.reset();
        for (auto& r : routers) r.reset();
        accounts.reset();
        store.reset();
        std::filesystem::remove_all(_dir);
    }

    // A bound client on `shard` (its bare JID's home), named from `prefix`.
    FakeClient& client_on(router::ShardId shard, const std::string& prefix) {
        for (int i = 0;; ++i) {
            const std::string bare = prefix + std::to_string(i) + "@localhost";
            if (routers[0]->home_of(bare) != shard || used.contains(bare)) continue;
            used.insert(bare);
            clients.push_back(std::make_unique<FakeClient>(bare + "/r"));
            routers[shard]->add(clients.back().get());
            return *clients.back();
        }
    }
    // A node name homed on `shard`.
    std::string node_on(router::ShardId shard, const std::string& prefix = "node") {
        for (int i = 0;; ++i) {
            std::string n = prefix + std::to_string(i);
            if (service[0]->home_of(k_svc, n) == shard) return n;
        }
    }

    // An IQ from `from` to the service, routed on its shard as a session routes it; then every
    // mailbox is drained until quiet. Returns what `from` got last.
    std::string iq(FakeClient& from, const std::string& type, const std::string& inner, const std::string& to = "") {
        router::Envelope env;
        env.stanza = router::StanzaKind::iq;
        env.from = from.jid()->full();
        env.to = to.empty() ? std::string(k_svc) : to;
        env.type = type;
        env.id = "q" + std::to_string(++_ids);
        env.bytes = "<iq from='" + env.from + "' to='" + env.to + "' type='" + type + "' id='" + env.id + "'>" + inner +
                    "</iq>";
        const auto shard = routers[0]->home_of(from.jid()->bare_view());
        EXPECT_TRUE(routers[shard]->route(std::move(env)));
        drain();
        return from.last();
    }

    void drain() {
        for (;;) {
            std::size_t n = 0;
            for (router::ShardId s = 0; s < 2; ++s) {
                auto& r = *routers[s];
                n += mailboxes->drain(s, [&r](router::Envelope&& e) { r.on_mail(std::move(e)); });
            }
            if (n == 0) return;
        }
    }

    std::filesystem::path _dir;
    asio::io_context io;
    session::ServerOptions server;
    util::Random random[2];
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::AccountStore> accounts;
    std::unique_ptr<router::Mailboxes<router::Envelope>> mailboxes;
    std::unique_ptr<router::ShardRouter> routers[2];
    session::HookTable hosts[2];
    std::unique_ptr<session::ShardServices> ctx[2];
    PubsubService* service[2]{};
    std::vector<std::unique_ptr<FakeClient>> clients;
    std::set<std::string> used;

private:
    int _ids = 0;
};

std::string create(const std::string& node) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='" + node + "'/></pubsub>";
}
std::string publish(const std::string& node, const std::string& id, const std::string& payload) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'><item id='" + id + "'>" +
           payload + "</item></publish></pubsub>";
}
std::string subscribe(const std::string& node, const std::string& jid) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='" + node + "' jid='" + jid +
           "'/></pubsub>";
}
bool is_result(const std::string& s) { return s.find("type='result'") != std::string::npos; }
bool has(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

TEST(PubsubService, ServiceDomainIsRegisteredOnEveryShard) {
    TwoShards b;
    for (auto& r : b.routers) {
        EXPECT_EQ(r->service_for("pubsub.localhost"), r->service_for("pubsub.localhost/any/thing"));
        EXPECT_NE(r->service_for("pubsub.localhost"), nullptr);
        EXPECT_EQ(r->service_for("user@pubsub.localhost"), nullptr);
        EXPECT_EQ(r->service_for("localhost"), nullptr);
    }
    ASSERT_EQ(b.hosts[0].disco_items().size(), 1u);
    EXPECT_EQ(b.hosts[0].disco_items()[0].jid, "pubsub.localhost");
}

TEST(PubsubService, NodeRequestsRunOnTheNodesHomeShard) {
    TwoShards b;
    auto& alice = b.client_on(0, "alice");
    const std::string node = b.node_on(1);
    EXPECT_TRUE(is_result(b.iq(alice, "set", create(node)))) << alice.last();
    EXPECT_EQ(b.service[0]->counters().forwarded, 1u);
    EXPECT_EQ(b.service[0]->cached_nodes(), 0u);
    EXPECT_EQ(b.service[1]->cached_nodes(), 1u);
    // The reply comes from the service to alice's full JID.
    EXPECT_TRUE(has(alice.last(), "from='pubsub.localhost' to='" + alice.jid()->full() + "'")) << alice.last();
    // A node homed where the request arrives is handled there, no hop.
    const std::string local = b.node_on(0);
    EXPECT_TRUE(is_result(b.iq(alice, "set", create(local))));
    EXPECT_EQ(b.service[0]->counters().forwarded, 1u);
    EXPECT_EQ(b.service[0]->cached_nodes(), 1u);
}

TEST(PubsubService, InstantNodesAreHomedWhereTheyAreCreated) {
    TwoShards b;
    auto& alice = b.client_on(1, "alice");
    const auto reply = b.iq(alice, "set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub>");
    ASSERT_TRUE(is_result(reply)) << reply;
    const auto at = reply.find("node='") + 6;
    const std::string node = reply.substr(at, reply.find('\'', at) - at);
    EXPECT_EQ(b.service[1]->home_of(k_svc, node), 1);
    EXPECT_EQ(b.service[1]->counters().forwarded, 0u);
}

TEST(PubsubService, FanOutSendsOneEnvelopePerDestinationShard) {
    TwoShards b;
    auto& owner = b.client_on(0, "owner");
    const std::string node = b.node_on(0);
    ASSERT_TRUE(is_result(b.iq(owner, "set", create(node))));
    std::vector<FakeClient*> subs;
    for (int i = 0; i < 10; ++i) subs.push_back(&b.client_on(static_cast<router::ShardId>(i % 2), "sub"));
    for (auto* s : subs) ASSERT_TRUE(is_result(b.iq(*s, "set", subscribe(node, std::string(s->jid()->bare_view())))));
    for (auto* s : subs) s->out.clear();
    const auto hops_before = b.routers[0]->counters().fan_outs;
    ASSERT_TRUE(is_result(b.iq(owner, "set", publish(node, "i1", "<t xmlns='urn:x'>21</t>"))));
    // One envelope to shard 1 (and one handled on shard 0 itself), for ten recipients.
    EXPECT_EQ(b.routers[0]->counters().fan_outs - hops_before, 1u);
    EXPECT_EQ(b.service[0]->counters().notifications, 10u);
    for (auto* s : subs) {
        ASSERT_EQ(s->out.size(), 1u) << s->jid()->full();
        const auto& m = s->out[0];
        EXPECT_TRUE(has(m, "<message from='pubsub.localhost' to='" + std::string(s->jid()->bare_view()) +
                               "' type='headline'"))
            << m;
        EXPECT_TRUE(has(m, "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='" + node +
                               "'><item id='i1'><t xmlns=\"urn:x\">21</t></item></items></event></message>"))
            << m;
    }
}

TEST(PubsubService, PayloadLimitAtTheLimitAndOnePast) {
    PubsubOptions o;
    o.max_payload_bytes = 256;
    TwoShards b(o);
    auto& alice = b.client_on(0, "alice");
    const std::string node = b.node_on(0);
    ASSERT_TRUE(is_result(b.iq(alice, "set", create(node))));
    const std::string head = "<t xmlns='urn:x'>";
    const std::string tail = "</t>";
    const std::string fits = head + std::string(256 - head.size() - tail.size(), 'a') + tail;
    ASSERT_EQ(fits.size(), 256u);
    EXPECT_TRUE(is_result(b.iq(alice, "set", publish(node, "a", fits))));
    const auto r = b.iq(alice, "set", publish(node, "b", head + std::string(256 - head.size() - tail.size() + 1, 'a') + tail));
    EXPECT_TRUE(has(r, "<not-acceptable ")) << r;
    EXPECT_TRUE(has(r, "<payload-too-big xmlns='http://jabber.org/protocol/pubsub#errors'/>")) << r;
}

TEST(PubsubService, NodesPerOwnerAtTheLimitAndOnePast) {
    PubsubOptions o;
    o.max_nodes_per_owner = 2;
    TwoShards b(o);
    auto& alice = b.client_on(0, "alice");
    EXPECT_TRUE(is_result(b.iq(alice, "set", create("a"))));
    EXPECT_TRUE(is_result(b.iq(alice, "set", create("b"))));
    const auto r = b.iq(alice, "set", create("c"));
    EXPECT_TRUE(has(r, "<policy-violation ")) << r;
    EXPECT_TRUE(has(r, "max-nodes-exceeded")) << r;
    EXPECT_TRUE(has(b.iq(alice, "set", create("a")), "<conflict ")) << alice.last();
}

TEST(PubsubService, SubscriptionsPerNodeAtTheLimitAndOnePast) {
    PubsubOptions o;
    o.max_subscriptions_per_node = 2;
    TwoShards b(o);
    auto& owner = b.client_on(0, "owner");
    const std::string node = b.node_on(1);
    ASSERT_TRUE(is_result(b.iq(owner, "set", create(node))));
    for (int i = 0; i < 2; ++i) {
        auto& s = b.client_on(static_cast<router::ShardId>(i), "s");
        EXPECT_TRUE(is_result(b.iq(s, "set", subscribe(node, s.jid()->full())))) << s.last();
    }
    auto& third = b.client_on(0, "third");
    const auto r = b.iq(third, "set", subscribe(node, third.jid()->full()));
    EXPECT_TRUE(has(r, "<not-allowed ")) << r;
    EXPECT_TRUE(has(r, "<too-many-subscriptions ")) << r;
}

TEST(PubsubService, WhitelistRefusesStrangersWithClosedNode) {
    TwoShards b;
    auto& owner = b.client_on(0, "owner");
    auto& stranger = b.client_on(1, "stranger");
    const std::string node = b.node_on(1);
    ASSERT_TRUE(is_result(b.iq(owner, "set",
                               "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='" + node +
                                   "'/><configure><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'>"
                                   "<value>whitelist</value></field></x></configure></pubsub>")));
    const auto r = b.iq(stranger, "set", subscribe(node, std::string(stranger.jid()->bare_view())));
    EXPECT_TRUE(has(r, "<error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                       "<closed-node xmlns='http://jabber.org/protocol/pubsub#errors'/></error>"))
        << r;
}

TEST(PubsubService, MalformedRequestsAreAnsweredNeverFatal) {
    TwoShards b;
    auto& alice = b.client_on(0, "alice");
    const std::string node = b.node_on(1);
    ASSERT_TRUE(is_result(b.iq(alice, "set", create(node))));
    const std::vector<std::string> bad{
        "",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'/>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node +
            "'><item><a xmlns='u'/><b xmlns='u'/></item></publish></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node +
            "'><item/><item/></publish></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='" + node + "'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='" + node + "'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='" + node + "' jid='@@'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "' max_items='x'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" + node + "'/></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='" + node +
            "'><affiliation jid='x@localhost' affiliation='emperor'/></affiliations></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='" + node + "'><affiliation jid='" +
            std::string(alice.jid()->bare_view()) + "' affiliation='none'/></affiliations></pubsub>",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='" + std::string(300, 'n') + "'/></pubsub>",
        "<query xmlns='urn:unknown'/>",
    };
    for (const auto& inner : bad) {
        const auto before = alice.out.size();
        const auto r = b.iq(alice, "set", inner);
        ASSERT_EQ(alice.out.size(), before + 1) << inner;
        EXPECT_TRUE(has(r, "type='error'")) << inner << "\n" << r;
    }
    EXPECT_TRUE(is_result(b.iq(alice, "set", publish(node, "ok", "<t xmlns='u'/>"))));
}

TEST(PubsubService, NodeStateIsReloadedFromStorage) {
    std::filesystem::path dir;
    std::string node;
    {
        PubsubOptions o;
        o.max_nodes_cached = 1;  // the second node pushes the first out of the cache
        TwoShards b(o);
        auto& alice = b.client_on(0, "alice");
        node = b.node_on(0, "first");
        ASSERT_TRUE(is_result(b.iq(alice, "set", create(node))));
        ASSERT_TRUE(is_result(b.iq(alice, "set", publish(node, "i", "<t xmlns='u'>1</t>"))));
        ASSERT_TRUE(is_result(b.iq(alice, "set", create(b.node_on(0, "second")))));
        EXPECT_EQ(b.service[0]->cached_nodes(), 1u);
        const auto r = b.iq(alice, "get",
                            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "'/></pubsub>");
        EXPECT_TRUE(has(r, "<item id='i'><t xmlns=\"u\">1</t></item>")) << r;  // as stored: standalone
    }
}

}  // namespace
