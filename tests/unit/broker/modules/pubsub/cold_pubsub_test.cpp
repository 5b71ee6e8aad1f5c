// PubSub requests about a node that is only on a slow disk (issue 14): the node's configuration,
// affiliations, subscriptions and items are read on the store's reader thread while the shard
// goes on routing; the requests about that node wait, in order, and are then answered as the
// synchronous code answers them; the requester's next stanzas wait behind its request. One
// shard wired as the broker wires one (support/live_shard.hpp with a WritePath,
// tests/support/faulty_fs.hpp delaying SST reads); the asan preset checks a requester that goes
// away while its request waits.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/modules/pubsub/node_store.hpp"
#include "broker/src/modules/pubsub/pubsub_module.hpp"
#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "tests/support/faulty_fs.hpp"
#include "tests/unit/broker/support/cold_disk.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using namespace starling;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using starling::testing::OneShard;
using starling::testing::TestClient;
using starling::testing::expect_routed_during_the_stall;
using starling::testing::k_disk_latency;
namespace ps = modules::pubsub;

constexpr std::string_view k_service = "pubsub.localhost";

struct ColdPubsub {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    modules::PubsubModule* pubsub = nullptr;
    ps::PubsubOptions options;
    OneShard t;

    std::vector<std::unique_ptr<session::Module>> modules() {
        std::vector<std::unique_ptr<session::Module>> mods;
        mods.push_back(std::make_unique<modules::RosterModule>());
        mods.push_back(std::make_unique<modules::PresenceModule>());
        auto p = std::make_unique<modules::PubsubModule>(nullptr, options);
        pubsub = p.get();
        mods.push_back(std::move(p));
        return mods;
    }

    explicit ColdPubsub(ps::PubsubOptions o = {}) : options(std::move(o)), t(modules(), starling::testing::WritePath{fs}) {
        for (const char* u : {"alice", "bob", "carol", "dave"}) t.add_user(std::string(u) + "@localhost", std::string("pw-") + u);
    }
    ~ColdPubsub() { fs->heal(); }

    // A node of alice's with `items` items, written before this broker loaded it (a restart).
    void give_alice_a_node(const std::string& node, int items) {
        ps::NodeStore db(*t.store);
        ps::NodeRecord rec;
        rec.affiliations.emplace_back("alice@localhost", ps::Affiliation::owner);
        rec.created_unix_ms = 1'700'000'000'000;
        ASSERT_TRUE(db.create_node(k_service, node, "alice@localhost", rec));
        for (int i = 1; i <= items; ++i) {
            ps::Item item;
            item.id = "i" + std::to_string(i);
            item.payload = "<entry xmlns='urn:example:sensor'>reading " + std::to_string(i) + "</entry>";
            item.publisher = "alice@localhost/a";
            item.published_unix_ms = now_ms();
            item.seq = static_cast<std::uint64_t>(i);
            ASSERT_TRUE(db.publish(k_service, node, item, {}));
        }
    }
    static std::int64_t now_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    // Alice's PEP node (XEP-0163: presence access) with one item, and her roster: carol may see
    // her presence, dave may not.
    void give_alice_a_pep_node() {
        ps::NodeStore db(*t.store);
        ps::NodeRecord rec;
        rec.config.access_model = ps::AccessModel::presence;
        rec.affiliations.emplace_back("alice@localhost", ps::Affiliation::owner);
        ASSERT_TRUE(db.create_node("alice@localhost", "urn:example:sensor", "alice@localhost", rec));
        ps::Item item;
        item.id = "current";
        item.payload = "<entry xmlns='urn:example:sensor'>21.5</entry>";
        item.publisher = "alice@localhost/a";
        item.published_unix_ms = now_ms();
        item.seq = 1;
        ASSERT_TRUE(db.publish("alice@localhost", "urn:example:sensor", item, {}));
        modules::roster::RosterStore rs(*t.store);
        modules::roster::RosterItem c;
        c.jid = "carol@localhost";
        c.sub = modules::roster::Sub::both;
        c.in_roster = true;
        ASSERT_TRUE(rs.save("alice@localhost", c, true));
        for (int i = 0; i < 20; ++i) {
            modules::roster::RosterItem d;
            d.jid = "device-" + std::to_string(i) + "@fleet.example";
            d.sub = modules::roster::Sub::to;
            d.in_roster = true;
            ASSERT_TRUE(rs.save("alice@localhost", d, true));
        }
    }

    void make_cold(std::initializer_list<storage::Column> columns = {storage::Column::pubsub_nodes,
                                                                      storage::Column::pubsub_items}) {
        starling::testing::make_cold(t, *fs, columns);
    }

    std::uint64_t loads_offloaded() {
        return t.on_shard([&] { return pubsub->service()->counters().node_loads_offloaded; });
    }
};

std::string read_for(TestClient& c, std::chrono::milliseconds wait) { return c.read_until("\x01", wait); }

void login(TestClient& c, const std::string& user, const std::string& resource) {
    ASSERT_NE(c.login(user, "pw-" + user, resource).find(user + "@localhost/" + resource), std::string::npos);
}


std::string items_get(const std::string& id, const std::string& node) {
    return "<iq type='get' to='pubsub.localhost' id='" + id +
           "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "'/></pubsub></iq>";
}

std::string publish(const std::string& id, const std::string& node, const std::string& item) {
    return "<iq type='set' to='pubsub.localhost' id='" + id +
           "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'><item id='" + item +
           "'><entry xmlns='urn:example:sensor'>" + item + "</entry></item></publish></pubsub></iq>";
}

std::size_t count_of(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
    return n;
}

// The next `n` IQ replies, by id. A result that waits for its writes to be durable (a publish,
// a create: DESIGN §6) may come after the answer to a later read-only request.
std::map<std::string, std::string> replies(TestClient& c, int n) {
    std::map<std::string, std::string> out;
    for (int i = 0; i < n; ++i) {
        const auto iq = c.read_until("</iq>", 10s);
        const auto at = iq.find(" id='");
        if (at == std::string::npos) break;
        const auto end = iq.find('\'', at + 5);
        out[iq.substr(at + 5, end - at - 5)] = iq;
    }
    return out;
}

TEST(ColdPubsub, AColdNodeStallsOnlyItsRequesterAndItsItemsComeBeforeHerNextStanza) {
    ColdPubsub s;
    s.give_alice_a_node("sensors", 3);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(carol, "carol", "c");
    s.make_cold();
    const auto before = s.loads_offloaded();

    carol.send(items_get("g1", "sensors") +
               "<message type='chat' to='bob@localhost/b' id='c1'><body>after my items</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-load");
    EXPECT_EQ(read_for(carol, 0ms).find("id='g1'"), std::string::npos) << "answered before the disk did";
    EXPECT_EQ(read_for(bob, 0ms).find("after my items"), std::string::npos) << "carol's next stanza overtook her get";

    // XEP-0060 §6.5: every item, oldest first.
    const auto got = carol.read_until("</iq>", 10s);
    EXPECT_NE(got.find("type='result'"), std::string::npos) << got;
    const auto i1 = got.find("id='i1'");
    const auto i2 = got.find("id='i2'");
    const auto i3 = got.find("id='i3'");
    ASSERT_NE(i1, std::string::npos) << got;
    ASSERT_NE(i2, std::string::npos) << got;
    ASSERT_NE(i3, std::string::npos) << got;
    EXPECT_LT(i1, i2);
    EXPECT_LT(i2, i3);
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my items</body>"), std::string::npos);
    EXPECT_EQ(s.loads_offloaded(), before + 1);

    // Cached now: the next request is answered at once.
    const auto sent = Clock::now();
    carol.send(items_get("g2", "sensors"));
    EXPECT_NE(carol.read_until("</iq>", 5s).find("id='i3'"), std::string::npos);
    EXPECT_LT(Clock::now() - sent, k_disk_latency / 2);
    EXPECT_EQ(s.loads_offloaded(), before + 1);
}

TEST(ColdPubsub, PipelinedRequestsToAColdNodeAreAnsweredInOrderWithThePublishStoredOnce) {
    ColdPubsub s;
    s.give_alice_a_node("sensors", 2);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port), dave(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(carol, "carol", "c");
    login(dave, "dave", "d");
    s.make_cold();

    // Alice publishes to her cold node and asks for its items; carol asks too, meanwhile. Both
    // wait for the node; they are handled in arrival order once it is read.
    alice.send(publish("p1", "sensors", "i3") + items_get("g1", "sensors"));
    std::this_thread::sleep_for(50ms);
    carol.send(items_get("g2", "sensors"));
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(dave, bob, "during-the-publish");
    EXPECT_EQ(read_for(alice, 0ms).find("</iq>"), std::string::npos) << "answered before the disk did";

    auto got = replies(alice, 2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_NE(got["p1"].find("type='result'"), std::string::npos) << got["p1"];
    // The items request came after the publish: it sees the new item, once.
    EXPECT_NE(got["g1"].find("type='result'"), std::string::npos) << got["g1"];
    EXPECT_EQ(count_of(got["g1"], "<item id='i3'"), 1u) << got["g1"];
    EXPECT_LT(got["g1"].find("<item id='i1'"), got["g1"].find("<item id='i3'")) << got["g1"];
    const auto carols = carol.read_until("</iq>", 5s);
    EXPECT_NE(carols.find("id='g2'"), std::string::npos) << carols;
    EXPECT_EQ(count_of(carols, "<item id='i3'"), 1u) << carols;
    EXPECT_EQ(count_of(carols, "<item id='i1'"), 1u) << carols;

    // Stored: what RocksDB has after the write is durable.
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline &&
           s.t.on_shard([&] { return s.t.writer->overlay_size() + s.t.writer->in_flight(); }) != 0) {
        std::this_thread::sleep_for(10ms);
    }
    s.fs->set_read_latency(0ms);
    auto stored = ps::NodeStore(*s.t.store).load_items(k_service, "sensors");
    ASSERT_TRUE(stored);
    ASSERT_EQ(stored->size(), 3u);
    EXPECT_EQ(stored->back().id, "i3");
}

TEST(ColdPubsub, ANodeThatIsNotThereIsCreatedAfterTheReadSaysSo) {
    ColdPubsub s;
    s.give_alice_a_node("sensors", 1);
    s.give_alice_a_node("sensors-b", 1);
    TestClient alice(s.t.port);
    login(alice, "alice", "a");
    s.make_cold();

    // Between two nodes on the disk: its absence is known only from the disk.
    const auto before = s.loads_offloaded();
    alice.send(items_get("g0", "sensors-a") +
               "<iq type='set' to='pubsub.localhost' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
               "<create node='sensors-a'/></pubsub></iq>" +
               publish("p1", "sensors-a", "x1") + items_get("g1", "sensors-a"));
    auto got = replies(alice, 4);
    ASSERT_EQ(got.size(), 4u);
    EXPECT_NE(got["g0"].find("item-not-found"), std::string::npos) << got["g0"];
    EXPECT_NE(got["c1"].find("type='result'"), std::string::npos) << got["c1"];
    EXPECT_NE(got["p1"].find("type='result'"), std::string::npos) << got["p1"];
    EXPECT_NE(got["g1"].find("type='result'"), std::string::npos) << got["g1"];
    EXPECT_EQ(count_of(got["g1"], "<item id='x1'"), 1u) << got["g1"];
    EXPECT_EQ(s.loads_offloaded(), before + 1) << "one read for the four requests";
}

TEST(ColdPubsub, APepOwnersColdRosterIsReadOffTheShardBeforeAccessIsDecided) {
    ColdPubsub s;
    s.give_alice_a_pep_node();
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port), dave(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(carol, "carol", "c");
    login(dave, "dave", "d");
    s.make_cold({storage::Column::rosters, storage::Column::meta});  // the node is in memory, her roster is not
    const auto rosters_before = s.t.on_shard([&] { return s.pubsub->service()->counters().roster_loads_offloaded; });

    const std::string get = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:sensor'/></pubsub></iq>";
    carol.send("<iq type='get' to='alice@localhost' id='pc'>" + get);
    dave.send("<iq type='get' to='alice@localhost' id='pd'>" + get);
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-pep-read");
    EXPECT_EQ(read_for(carol, 0ms).find("id='pc'"), std::string::npos) << "answered before the disk did";

    // XEP-0060 §6.5.9 with XEP-0163's presence access: carol (subscription both) gets the item,
    // dave (not in alice's roster) presence-subscription-required.
    const auto to_carol = carol.read_until("</iq>", 10s);
    EXPECT_NE(to_carol.find("type='result'"), std::string::npos) << to_carol;
    EXPECT_NE(to_carol.find("<item id='current'"), std::string::npos) << to_carol;
    const auto to_dave = dave.read_until("</iq>", 10s);
    EXPECT_NE(to_dave.find("type='error'"), std::string::npos) << to_dave;
    EXPECT_NE(to_dave.find("presence-subscription-required"), std::string::npos) << to_dave;
    EXPECT_EQ(s.t.on_shard([&] { return s.pubsub->service()->counters().roster_loads_offloaded; }), rosters_before + 1);
}

// XEP-0163 §4.3.4: a resource that becomes available wanting a contact's notifications gets
// the last item of that contact's node; a node (and roster) only on the disk is read off the
// shard first, and the item is delivered once.
TEST(ColdPubsub, TheLastPepItemOfAColdNodeIsSentAfterTheReadWithoutStallingTheShard) {
    ColdPubsub s;
    s.give_alice_a_pep_node();
    TestClient bob(s.t.port), carol(s.t.port), dave(s.t.port);
    login(bob, "bob", "b");
    login(carol, "carol", "c");
    login(dave, "dave", "d");
    s.make_cold({storage::Column::pubsub_nodes, storage::Column::pubsub_items, storage::Column::rosters,
                 storage::Column::meta});

    // What the caps module asks when carol says she wants urn:example:sensor+notify.
    // Posted, not waited for: were the read made on the shard, the message below would wait.
    asio::post(s.t.shards[0].io(), [&s] {
        s.pubsub->service()->send_last_items("alice@localhost", "carol@localhost/c", {"urn:example:sensor"});
    });
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(dave, bob, "during-the-last-item");
    std::string got = carol.read_until("</message>", 10s);
    EXPECT_NE(got.find("from='alice@localhost'"), std::string::npos) << got;
    EXPECT_NE(got.find("<item id='current'"), std::string::npos) << got;
    got += read_for(carol, 300ms);
    EXPECT_EQ(count_of(got, "<item id='current'"), 1u) << got;
}

// [pubsub] max_waiting_requests: at the limit a request waits for its node; one past it is
// answered resource-constraint at once (type wait), and the waiting one is answered in full.
TEST(ColdPubsub, OnePastMaxWaitingRequestsIsRefusedWithResourceConstraint) {
    ps::PubsubOptions o;
    o.max_waiting_requests = 1;
    ColdPubsub s(o);
    s.give_alice_a_node("sensors", 2);
    TestClient carol(s.t.port), dave(s.t.port);
    login(carol, "carol", "c");
    login(dave, "dave", "d");
    s.make_cold();

    carol.send(items_get("g1", "sensors"));
    std::this_thread::sleep_for(50ms);
    const auto sent = Clock::now();
    dave.send(items_get("g2", "sensors"));
    const auto refused = dave.read_until("</iq>", 5s);
    EXPECT_LT(Clock::now() - sent, k_disk_latency / 2) << "the refusal waited for the disk";
    EXPECT_NE(refused.find("id='g2'"), std::string::npos) << refused;
    EXPECT_NE(refused.find("resource-constraint"), std::string::npos) << refused;
    EXPECT_NE(refused.find("type='wait'"), std::string::npos) << refused;
    const auto got = carol.read_until("</iq>", 10s);
    EXPECT_NE(got.find("type='result'"), std::string::npos) << got;
    EXPECT_NE(got.find("<item id='i2'"), std::string::npos) << got;
    EXPECT_EQ(s.t.on_shard([&] { return s.pubsub->service()->counters().waiting_refused; }), 1u);
}

// Carol's connection goes away while her request waits on the disk (her input held): the
// completion answers into nothing and touches nothing of hers (ASan checks the lifetime).
TEST(ColdPubsub, ARequesterGoneWhileItsRequestWaitsIsNotTouched) {
    ColdPubsub s;
    s.give_alice_a_node("sensors", 2);
    TestClient alice(s.t.port), bob(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    {
        TestClient carol(s.t.port);
        login(carol, "carol", "c");
        s.make_cold();
        carol.send(items_get("g1", "sensors") + "<presence/>");
        std::this_thread::sleep_for(50ms);
    }  // disconnected
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.t.on_shard([&] { return s.t.ctx->sessions.size(); }) != 2) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(s.t.on_shard([&] { return s.t.ctx->sessions.size(); }), 2u);
    std::this_thread::sleep_for(k_disk_latency * 3);  // the load completes
    expect_routed_during_the_stall(alice, bob, "after-the-stall");
    bob.send(items_get("g2", "sensors"));
    EXPECT_NE(bob.read_until("</iq>", 5s).find("id='i2'"), std::string::npos);
}

}  // namespace
