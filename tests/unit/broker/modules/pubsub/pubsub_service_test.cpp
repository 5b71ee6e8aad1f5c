// PubsubService on two shards wired as the broker wires them (store, routers, mailboxes, hook
// tables), without sockets or threads: mailboxes are drained by hand, clients are fake endpoints
// that keep what they are sent.
#include "broker/src/modules/pubsub/pubsub_service.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>
#include <set>

#include "broker/src/modules/pubsub/pubsub_module.hpp"
#include "broker/src/router/mailboxes.hpp"
#include "broker/src/router/router.hpp"
#include "broker/src/session/hooks.hpp"
#include "broker/src/session/shard_services.hpp"
#include "broker/src/storage/accounts.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
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

// How the fixture writes: synchronously (no writer, as unit fixtures without a committer do), or
// through a Committer and one ShardWriter per shard, as the broker does.
enum class Writes { sync, write_path };

class TwoShards {
public:
    explicit TwoShards(PubsubOptions options = {}, std::size_t mailbox_capacity = 1024, Writes writes = Writes::sync,
                       std::filesystem::path dir = {}) {
        std::random_device rd;
        _dir = dir.empty() ? std::filesystem::temp_directory_path() / ("starling-pubsub-test-" + std::to_string(rd()))
                           : dir;
        _keep_dir = !dir.empty();
        store = storage::Store::open(_dir.string());
        if (writes == Writes::write_path) {
            committer = std::make_unique<storage::Committer>(*store);
            committer->start();
            for (router::ShardId i = 0; i < 2; ++i) writers[i] = std::make_unique<storage::ShardWriter>(io, i, *committer);
        }
        accounts = std::make_unique<storage::AccountStore>(*store);
        mailboxes = std::make_unique<router::Mailboxes<router::Envelope>>(2, mailbox_capacity, [](router::ShardId) {});
        for (router::ShardId i = 0; i < 2; ++i) {
            routers[i] = std::make_unique<router::ShardRouter>(i, *mailboxes, [](router::Envelope&&) {});
            ctx[i] = std::make_unique<session::ShardServices>(session::ShardServices{
                .shard = i, .io = turn_io, .server = server, .accounts = *accounts, .router = *routers[i],
                .random = random[i], .hooks = &hosts[i], .store = store.get(), .writer = writers[i].get()});
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
        for (auto& w : writers) w.reset();
        if (committer) committer->stop();
        committer.reset();
        accounts.reset();
        store.reset();
        if (!_keep_dir) std::filesystem::remove_all(_dir);
    }

    // Runs the shards' completions until every staged write is committed and answered (the
    // committer works on its own thread), draining mailboxes as a shard's turn would.
    void settle() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            drain();
            io.restart();
            auto ran = io.poll();
            drain();
            turn_io.restart();
            ran += turn_io.poll();
            drain();
            std::size_t pending = 0;
            for (auto& w : writers) {
                if (w) pending += w->in_flight() + w->overlay_size();
            }
            if (pending == 0 && ran == 0) return;
            if (ran == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ADD_FAILURE() << "writes did not settle";
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
    // mailbox is drained until quiet, and what the turn posted for its end (the service's
    // notifications) runs. Returns what `from` got last.
    std::string iq(FakeClient& from, const std::string& type, const std::string& inner, const std::string& to = "") {
        send_iq(from, type, inner, to);
        end_turn();
        return from.last();
    }
    // The same, without ending the turn: several requests may arrive in one turn.
    void send_iq(FakeClient& from, const std::string& type, const std::string& inner, const std::string& to = "") {
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
    }

    // What the shards posted for the end of their turn (the service's held notifications),
    // apart from the writers' completions (`io`), which settle() runs: a test sees exactly
    // when a commit answers.
    void end_turn() {
        turn_io.restart();
        turn_io.poll();
        drain();
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
    asio::io_context io;       // the writers' completions
    asio::io_context turn_io;  // the shards' own posted handlers (ShardServices::io)
    session::ServerOptions server;
    util::Random random[2];
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<storage::Committer> committer;
    std::unique_ptr<storage::ShardWriter> writers[2];
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
    bool _keep_dir = false;
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

// Publishes to one node that arrive in one turn (a device's pipelined burst) reach each
// subscriber in one fan-out envelope per shard, in publish order; one to another node in the
// middle of the burst keeps its place.
TEST(PubsubService, ABurstOfPublishesInOneTurnTravelsInOneEnvelopePerShardInOrder) {
    TwoShards b({}, 1024, Writes::write_path);  // results wait for the commit, as in the broker
    auto ok = [&b](FakeClient& from, const std::string& inner) {
        b.send_iq(from, "set", inner);
        b.settle();
        return is_result(from.last());
    };
    auto& owner = b.client_on(0, "owner");
    const std::string node = b.node_on(0), other = b.node_on(0, "other");
    ASSERT_TRUE(ok(owner, create(node)));
    ASSERT_TRUE(ok(owner, create(other)));
    std::vector<FakeClient*> subs;
    for (int i = 0; i < 6; ++i) subs.push_back(&b.client_on(static_cast<router::ShardId>(i % 2), "sub"));
    for (auto* s : subs) {
        for (const auto& n : {node, other}) ASSERT_TRUE(ok(*s, subscribe(n, std::string(s->jid()->bare_view()))));
    }
    for (auto* s : subs) s->out.clear();
    const auto hops_before = b.routers[0]->counters().fan_outs;
    for (int i = 1; i <= 5; ++i) {
        b.send_iq(owner, "set", publish(node, "i" + std::to_string(i), "<t xmlns='urn:x'>" + std::to_string(i) + "</t>"));
    }
    for (auto* s : subs) EXPECT_TRUE(s->out.empty()) << "sent before the end of the turn";
    b.send_iq(owner, "set", publish(other, "o1", "<t xmlns='urn:x'>o</t>"));
    b.send_iq(owner, "set", publish(node, "i6", "<t xmlns='urn:x'>6</t>"));
    b.settle();
    // Three runs (i1-i5, o1, i6), each one envelope to shard 1.
    EXPECT_EQ(b.routers[0]->counters().fan_outs - hops_before, 3u);
    EXPECT_EQ(b.service[0]->counters().notifications, 7u * subs.size());
    for (auto* s : subs) {
        std::vector<std::string> items;
        for (const auto& m : s->out) {
            if (!has(m, "<message from='pubsub.localhost'")) continue;
            const auto at = m.find("<item id='");
            ASSERT_NE(at, std::string::npos) << m;
            items.push_back(m.substr(at + 10, m.find('\'', at + 10) - at - 10));
        }
        EXPECT_EQ(items, (std::vector<std::string>{"i1", "i2", "i3", "i4", "i5", "o1", "i6"})) << s->jid()->full();
    }
}

// The node's recipient lists are reused from one publish to the next: a subscriber who left
// gets nothing more, and one who joined gets the next publish, on either shard.
TEST(PubsubService, FanOutFollowsSubscriptionChangesBetweenPublishes) {
    TwoShards b;
    auto& owner = b.client_on(0, "owner");
    const std::string node = b.node_on(0);
    ASSERT_TRUE(is_result(b.iq(owner, "set", create(node))));
    std::vector<FakeClient*> subs;
    for (int i = 0; i < 4; ++i) subs.push_back(&b.client_on(static_cast<router::ShardId>(i % 2), "sub"));
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(is_result(b.iq(*subs[i], "set", subscribe(node, std::string(subs[i]->jid()->bare_view())))));
    }
    ASSERT_TRUE(is_result(b.iq(owner, "set", publish(node, "i1", "<t xmlns='urn:x'>1</t>"))));
    ASSERT_TRUE(is_result(b.iq(owner, "set", publish(node, "i2", "<t xmlns='urn:x'>2</t>"))));
    // subs[1] leaves, subs[3] joins.
    const std::string bare1(subs[1]->jid()->bare_view());
    ASSERT_TRUE(is_result(b.iq(*subs[1], "set",
                               "<pubsub xmlns='http://jabber.org/protocol/pubsub'><unsubscribe node='" + node +
                                   "' jid='" + bare1 + "'/></pubsub>")));
    // The newcomer's result may be followed by the last published item (§6.1.7).
    (void)b.iq(*subs[3], "set", subscribe(node, std::string(subs[3]->jid()->bare_view())));
    ASSERT_TRUE(std::any_of(subs[3]->out.begin(), subs[3]->out.end(), is_result));
    for (auto* s : subs) s->out.clear();
    ASSERT_TRUE(is_result(b.iq(owner, "set", publish(node, "i3", "<t xmlns='urn:x'>3</t>"))));
    auto got_i3 = [](const FakeClient& c) {
        return std::count_if(c.out.begin(), c.out.end(), [](const std::string& m) {
            return has(m, "<message from='pubsub.localhost'") && has(m, "<item id='i3'>");
        });
    };
    EXPECT_EQ(got_i3(*subs[0]), 1);
    EXPECT_EQ(got_i3(*subs[1]), 0);
    EXPECT_EQ(got_i3(*subs[2]), 1);
    EXPECT_EQ(got_i3(*subs[3]), 1);
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

std::string items(const std::string& node) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "'/></pubsub>";
}
std::string remove(const std::string& node) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='" + node + "'/></pubsub>";
}

// DESIGN §6 through the broker's write path: the publisher's result waits until the item is
// durable, and what was acknowledged is in RocksDB for a broker started on the same folder.
TEST(PubsubServiceWritePath, PublishIsAnsweredOnceDurableAndSurvivesARestart) {
    std::random_device rd;
    const auto dir = std::filesystem::temp_directory_path() / ("starling-pubsub-wp-" + std::to_string(rd()));
    std::string node;
    {
        TwoShards b({}, 1024, Writes::write_path, dir);
        auto& alice = b.client_on(0, "alice");
        node = b.node_on(1);  // homed on the other shard: the request and its answer cross
        b.iq(alice, "set", create(node));
        EXPECT_TRUE(alice.out.empty()) << "answered before the node was durable: " << alice.last();
        b.settle();
        ASSERT_TRUE(is_result(alice.last())) << alice.last();
        const auto before = alice.out.size();
        b.iq(alice, "set", publish(node, "r1", "<t xmlns='u'>21.5</t>"));
        EXPECT_EQ(alice.out.size(), before) << "publish answered before the item was durable";
        b.settle();
        ASSERT_EQ(alice.out.size(), before + 1);
        EXPECT_TRUE(is_result(alice.last())) << alice.last();
        EXPECT_TRUE(has(alice.last(), "<item id='r1'/>")) << alice.last();
    }
    {
        TwoShards b({}, 1024, Writes::sync, dir);
        auto& alice = b.client_on(0, "alice");
        const auto r = b.iq(alice, "get", items(node));
        EXPECT_TRUE(has(r, "<item id='r1'><t xmlns=\"u\">21.5</t></item>")) << r;
    }
    std::filesystem::remove_all(dir);
}

// A node with writes not yet durable stays cached even past max_nodes_cached: reloaded from
// RocksDB, it would lose them.
TEST(PubsubServiceWritePath, NodesWithUnsyncedWritesAreNotEvicted) {
    PubsubOptions o;
    o.max_nodes_cached = 16;  // the option's lowest bound
    TwoShards b(o, 1024, Writes::write_path);
    auto& alice = b.client_on(0, "alice");
    std::vector<std::string> nodes;
    for (int i = 0; i < 20; ++i) {
        nodes.push_back(b.node_on(0, "n" + std::to_string(i) + "-"));
        b.iq(alice, "set", create(nodes.back()));
    }
    // None durable yet (no completion has run): all twenty are still cached.
    EXPECT_EQ(b.service[0]->cached_nodes(), 20u);
    b.settle();
    std::size_t results = 0;
    for (const auto& m : alice.out) results += is_result(m) ? 1 : 0;
    EXPECT_EQ(results, 20u);
    // Settled: the next node brings the cache back to its bound, and every node reloads whole.
    b.iq(alice, "set", create(b.node_on(0, "last")));
    b.settle();
    EXPECT_LE(b.service[0]->cached_nodes(), 16u);
    for (const auto& n : nodes) {
        b.iq(alice, "get", items(n));
        EXPECT_TRUE(is_result(alice.last())) << n << ": " << alice.last();
    }
}

// A node deleted a moment ago is gone at once, though RocksDB still holds it until the
// deletion commits; it can be created again at once, and the new one is what survives.
TEST(PubsubServiceWritePath, ADeletedNodeIsNotLoadedBackBeforeTheDeletionIsDurable) {
    PubsubOptions o;
    o.max_nodes_cached = 16;
    TwoShards b(o, 1024, Writes::write_path);
    auto& alice = b.client_on(0, "alice");
    const std::string node = b.node_on(0, "gone");
    b.iq(alice, "set", create(node));
    b.iq(alice, "set", publish(node, "old", "<t xmlns='u'>1</t>"));
    b.settle();
    b.iq(alice, "set", remove(node));
    const auto r = b.iq(alice, "get", items(node));  // before the deletion is durable
    EXPECT_TRUE(has(r, "item-not-found")) << r;
    b.iq(alice, "set", create(node));
    b.settle();
    const auto again = b.iq(alice, "get", items(node));
    EXPECT_TRUE(is_result(again)) << again;
    EXPECT_FALSE(has(again, "id='old'")) << again;
}

std::string publish_with_options(const std::string& node, const std::string& id, const std::string& fields) {
    return "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'><item id='" + id +
           "'><t xmlns='u'>1</t></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
           "</field>" + fields + "</x></publish-options></pubsub>";
}

// XEP-0060 §7.1.5: options that match the node publish; options that would change it fail
// with conflict + precondition-not-met and store nothing; a field the service does not know
// is a bad request naming it.
TEST(PubsubService, PublishOptionsArePreconditions) {
    TwoShards b;
    auto& alice = b.client_on(0, "alice");
    const std::string node = b.node_on(1);
    ASSERT_TRUE(is_result(b.iq(alice, "set", create(node))));
    const auto ok = b.iq(alice, "set", publish_with_options(node, "a",
        "<field var='pubsub#access_model'><value>open</value></field>"
        "<field var='pubsub#persist_items'><value>true</value></field>"));
    EXPECT_TRUE(is_result(ok)) << ok;
    const auto differs = b.iq(alice, "set", publish_with_options(node, "b",
        "<field var='pubsub#access_model'><value>whitelist</value></field>"));
    EXPECT_TRUE(has(differs, "<conflict ") && has(differs, "precondition-not-met")) << differs;
    const auto unknown = b.iq(alice, "set", publish_with_options(node, "c",
        "<field var='pubsub#colour'><value>red</value></field>"));
    EXPECT_TRUE(has(unknown, "<bad-request ") && has(unknown, "pubsub#colour")) << unknown;
    const auto listed = b.iq(alice, "get", items(node));
    EXPECT_TRUE(has(listed, "id='a'")) << listed;
    EXPECT_FALSE(has(listed, "id='b'") || has(listed, "id='c'")) << listed;
}

// max_publishes_per_second: a burst of twice the rate passes, the next publish waits
// (resource-constraint, type wait), counted once even though the node lives on another shard.
TEST(PubsubService, PublishRatePerAccountAtTheBurstAndOnePast) {
    PubsubOptions o;
    o.max_publishes_per_second = 5;
    TwoShards b(o);
    auto& alice = b.client_on(0, "alice");
    auto& bob = b.client_on(0, "bob");
    const std::string node = b.node_on(1);
    ASSERT_TRUE(is_result(b.iq(alice, "set", create(node))));
    for (int i = 0; i < 10; ++i) {
        const auto r = b.iq(alice, "set", publish(node, "i" + std::to_string(i), "<t xmlns='u'>1</t>"));
        ASSERT_TRUE(is_result(r)) << i << ": " << r;
    }
    const auto refused = b.iq(alice, "set", publish(node, "over", "<t xmlns='u'>1</t>"));
    EXPECT_TRUE(has(refused, "type='wait'") && has(refused, "<resource-constraint ")) << refused;
    EXPECT_EQ(b.service[0]->counters().rate_limited + b.service[1]->counters().rate_limited, 1u);
    // Another account has its own bucket (here refused by the node's publish model, not the rate).
    const auto other = b.iq(bob, "set", publish(node, "bob", "<t xmlns='u'>1</t>"));
    EXPECT_TRUE(has(other, "<forbidden ")) << other;
}

}  // namespace
