#include "broker/src/modules/pubsub/node_store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "broker/src/storage/store.hpp"

namespace {

using namespace starling;
using namespace starling::modules::pubsub;

class NodeStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::random_device rd;
        _dir = std::filesystem::temp_directory_path() / ("starling-pubsub-store-" + std::to_string(rd()));
        store = storage::Store::open(_dir.string());
        nodes = std::make_unique<NodeStore>(*store);
    }
    void TearDown() override {
        nodes.reset();
        store.reset();
        std::filesystem::remove_all(_dir);
    }
    static Item item(std::string id, std::uint64_t seq, std::string payload = "<p xmlns='urn:x'/>") {
        Item i;
        i.id = std::move(id);
        i.seq = seq;
        i.payload = std::move(payload);
        i.publisher = "alice@localhost/r";
        i.published_unix_ms = 1'700'000'000'000 + static_cast<std::int64_t>(seq);
        return i;
    }
    std::filesystem::path _dir;
    std::unique_ptr<storage::Store> store;
    std::unique_ptr<NodeStore> nodes;
};

constexpr std::string_view k_svc = "pubsub.localhost";

TEST_F(NodeStoreTest, NodeRecordRoundTrips) {
    NodeRecord r;
    r.config.access_model = AccessModel::whitelist;
    r.config.publish_model = PublishModel::open;
    r.config.max_items = 123;
    r.config.persist_items = false;
    r.config.deliver_payloads = false;
    r.config.notify_retract = false;
    r.config.notify_delete = false;
    r.config.notify_config = true;
    r.config.title = "t";
    r.config.item_expire_s = 90;
    r.config.roster_groups_allowed = {"Family", "Ops"};
    r.affiliations = {{"alice@localhost", Affiliation::owner}, {"bob@localhost", Affiliation::member}};
    r.created_unix_ms = 42;
    ASSERT_TRUE(nodes->create_node(k_svc, "n1", "alice@localhost", r));
    auto got = nodes->load_node(k_svc, "n1");
    ASSERT_TRUE(got);
    EXPECT_EQ(got.value().config, r.config);
    EXPECT_EQ(got.value().affiliations, r.affiliations);
    EXPECT_EQ(got.value().created_unix_ms, 42);
    EXPECT_EQ(nodes->load_node(k_svc, "n2").error(), storage::Errc::not_found);
    // A node name that is a prefix of another is a different node.
    EXPECT_EQ(nodes->load_node(k_svc, "n").error(), storage::Errc::not_found);
}

TEST_F(NodeStoreTest, ItemsComeBackInPublishOrderAndReplaceInOneBatch) {
    ASSERT_TRUE(nodes->create_node(k_svc, "n", "alice@localhost", {}));
    ASSERT_TRUE(nodes->publish(k_svc, "n", item("a", 1), {}));
    ASSERT_TRUE(nodes->publish(k_svc, "n", item("b", 2), {}));
    // "a" again: the old record goes in the same batch as the new one.
    ASSERT_TRUE(nodes->publish(k_svc, "n", item("a", 3, "<p xmlns='urn:x'>new</p>"), {1}));
    auto items = nodes->load_items(k_svc, "n");
    ASSERT_TRUE(items);
    ASSERT_EQ(items.value().size(), 2u);
    EXPECT_EQ(items.value()[0].id, "b");
    EXPECT_EQ(items.value()[1].id, "a");
    EXPECT_EQ(items.value()[1].seq, 3u);
    EXPECT_EQ(items.value()[1].payload, "<p xmlns='urn:x'>new</p>");
    EXPECT_EQ(items.value()[1].publisher, "alice@localhost/r");
    ASSERT_TRUE(nodes->erase_items(k_svc, "n", {2}));
    EXPECT_EQ(nodes->load_items(k_svc, "n").value().size(), 1u);
    ASSERT_TRUE(nodes->purge(k_svc, "n"));
    EXPECT_TRUE(nodes->load_items(k_svc, "n").value().empty());
    EXPECT_TRUE(nodes->load_node(k_svc, "n"));  // purge keeps the node
}

// Items go into the memtable with a per-node insert hint (storage/store.cpp, NodePrefix), and
// purges and deletions are range tombstones starting at the node's prefix, which must stay out
// of the hints: publishes with evictions on two nodes, purged between rounds, read back right
// and again after a reopen (WAL replay).
TEST_F(NodeStoreTest, ItemsStayRightThroughEvictionsAndPurgesInTheMemtableAndAfterAReopen) {
    ASSERT_TRUE(nodes->create_node(k_svc, "t1", "alice@localhost", {}));
    ASSERT_TRUE(nodes->create_node(k_svc, "t2", "alice@localhost", {}));
    std::uint64_t seq = 0;
    for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 50; ++i) {
            ++seq;
            for (const char* n : {"t1", "t2"}) {
                // max_items 3: each publish deletes the item three back.
                std::vector<std::uint64_t> evict;
                if (seq > 3 && (seq - 3) > static_cast<std::uint64_t>(round) * 50) evict.push_back(seq - 3);
                ASSERT_TRUE(nodes->publish(k_svc, n, item("i" + std::to_string(seq), seq), evict));
            }
        }
        ASSERT_TRUE(nodes->purge(k_svc, round % 2 == 0 ? "t1" : "t2"));
        ++seq;
        ASSERT_TRUE(nodes->publish(k_svc, "t1", item("after" + std::to_string(round), seq), {}));
    }
    auto check = [&] {
        auto t1 = nodes->load_items(k_svc, "t1");
        auto t2 = nodes->load_items(k_svc, "t2");
        ASSERT_TRUE(t1 && t2);
        std::vector<std::string> ids1, ids2;
        for (const auto& it : t1.value()) ids1.push_back(it.id);
        for (const auto& it : t2.value()) ids2.push_back(it.id);
        // t1 was purged last in round 2, then got after2 (seq 153); round 3 published
        // i154..i203, each evicting seq - 3 (after2 too), and after3.
        EXPECT_EQ(ids1, (std::vector<std::string>{"i201", "i202", "i203", "after3"}));
        // t2 was purged in round 3, after its last publish.
        EXPECT_TRUE(ids2.empty()) << ids2.size();
    };
    check();
    nodes.reset();
    store.reset();
    store = storage::Store::open(_dir.string());
    nodes = std::make_unique<NodeStore>(*store);
    check();
}

TEST_F(NodeStoreTest, SubscriptionsRoundTripAndAreFoundPerUser) {
    ASSERT_TRUE(nodes->create_node(k_svc, "n1", "alice@localhost", {}));
    ASSERT_TRUE(nodes->create_node(k_svc, "n2", "alice@localhost", {}));
    ASSERT_TRUE(nodes->put_subscription(k_svc, "n1", {"bob@localhost", SubState::subscribed, "s1"}));
    ASSERT_TRUE(nodes->put_subscription(k_svc, "n1", {"carol@localhost/x", SubState::pending, "s2"}));
    ASSERT_TRUE(nodes->put_subscription(k_svc, "n2", {"bob@localhost/phone", SubState::subscribed, "s3"}));
    auto subs = nodes->load_subscriptions(k_svc, "n1");
    ASSERT_TRUE(subs);
    ASSERT_EQ(subs.value().size(), 2u);
    EXPECT_EQ(subs.value()[0].jid, "bob@localhost");
    EXPECT_EQ(subs.value()[1].state, SubState::pending);
    EXPECT_EQ(subs.value()[1].subid, "s2");
    auto bobs = nodes->subscriptions_of(k_svc, "bob@localhost");
    ASSERT_TRUE(bobs);
    ASSERT_EQ(bobs.value().size(), 2u);
    EXPECT_EQ(bobs.value()[0].first, "n1");
    EXPECT_EQ(bobs.value()[1].first, "n2");
    EXPECT_EQ(bobs.value()[1].second.jid, "bob@localhost/phone");
    ASSERT_TRUE(nodes->erase_subscription(k_svc, "n1", "bob@localhost"));
    EXPECT_EQ(nodes->load_subscriptions(k_svc, "n1").value().size(), 1u);
}

TEST_F(NodeStoreTest, DeletingANodeRemovesItsWholeRangeOnly) {
    ASSERT_TRUE(nodes->create_node(k_svc, "n", "alice@localhost", {}));
    ASSERT_TRUE(nodes->create_node(k_svc, "n2", "alice@localhost", {}));
    ASSERT_TRUE(nodes->publish(k_svc, "n", item("a", 1), {}));
    ASSERT_TRUE(nodes->publish(k_svc, "n2", item("a", 1), {}));
    ASSERT_TRUE(nodes->put_subscription(k_svc, "n", {"bob@localhost", SubState::subscribed, "s"}));
    EXPECT_EQ(nodes->count_owned("alice@localhost").value(), 2u);
    ASSERT_TRUE(nodes->erase_node(k_svc, "n", {"alice@localhost"}));
    EXPECT_EQ(nodes->load_node(k_svc, "n").error(), storage::Errc::not_found);
    EXPECT_TRUE(nodes->load_items(k_svc, "n").value().empty());
    EXPECT_TRUE(nodes->load_subscriptions(k_svc, "n").value().empty());
    EXPECT_EQ(nodes->load_items(k_svc, "n2").value().size(), 1u);
    EXPECT_EQ(nodes->count_owned("alice@localhost").value(), 1u);
    EXPECT_EQ(nodes->owned_nodes("alice@localhost", k_svc).value(), std::vector<std::string>{"n2"});
    EXPECT_EQ(nodes->list_nodes(k_svc).value(), std::vector<std::string>{"n2"});
}

TEST_F(NodeStoreTest, ListsNodesOfOneServiceSorted) {
    ASSERT_TRUE(nodes->create_node(k_svc, "b", "alice@localhost", {}));
    ASSERT_TRUE(nodes->create_node(k_svc, "a", "alice@localhost", {}));
    ASSERT_TRUE(nodes->create_node("pubsub.other", "c", "alice@localhost", {}));
    ASSERT_TRUE(nodes->put_subscription(k_svc, "a", {"bob@localhost", SubState::subscribed, "s"}));
    EXPECT_EQ(nodes->list_nodes(k_svc).value(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(nodes->list_nodes("pubsub.other").value(), std::vector<std::string>{"c"});
}

TEST_F(NodeStoreTest, CorruptRecordsAreRefusedNotTrusted) {
    EXPECT_EQ(NodeStore::decode_node("not a flatbuffer").error(), storage::Errc::corrupt);
    EXPECT_EQ(NodeStore::decode_item("").error(), storage::Errc::corrupt);
    EXPECT_EQ(NodeStore::decode_subscription("\x04\x00\x00\x00garbage").error(), storage::Errc::corrupt);
    const std::string good = NodeStore::encode(item("x", 1));
    EXPECT_TRUE(NodeStore::decode_item(good));
    EXPECT_EQ(NodeStore::decode_item(good.substr(0, good.size() / 2)).error(), storage::Errc::corrupt);
}

}  // namespace
