#include "broker/src/modules/offline/offline_module.hpp"

#include <gtest/gtest.h>

#include "broker/src/modules/offline/offline_store.hpp"
#include "tests/unit/broker/support/routed_shard.hpp"

namespace {

using namespace starling;
using router::StanzaKind;

constexpr const char* k_bob = "bob@localhost";
constexpr const char* k_alice = "alice@localhost/phone";

std::string msg(const std::string& type, const std::string& body) {
    return "<message from='" + std::string(k_alice) + "' to='" + k_bob + "' type='" + type + "'><body>" + body +
           "</body></message>";
}

struct Fixture {
    modules::OfflineModule* offline = nullptr;
    std::unique_ptr<test_support::OneShard> shard;

    explicit Fixture(std::uint32_t max_messages, bool write_path = false) {
        std::vector<std::unique_ptr<modules::Module>> mods;
        auto m = std::make_unique<modules::OfflineModule>(modules::OfflineOptions{.max_messages = max_messages});
        offline = m.get();
        mods.push_back(std::move(m));
        shard = std::make_unique<test_support::OneShard>(std::move(mods), write_path);
        shard->add_account(k_bob);
    }
    std::uint64_t stored_in_db() {
        modules::offline::OfflineStore db(*shard->store);
        return db.state(k_bob).value().count;
    }
};

TEST(OfflineModule, StoresUpToTheLimitAndBouncesOnePast) {
    Fixture f(3);
    for (int i = 0; i < 3; ++i) f.shard->route(StanzaKind::message, k_alice, k_bob, "chat", msg("chat", "m"));
    EXPECT_EQ(f.offline->counters().stored, 3u);
    EXPECT_EQ(f.shard->router->counters().bounced, 0u);
    EXPECT_EQ(f.stored_in_db(), 3u);
    f.shard->route(StanzaKind::message, k_alice, k_bob, "", msg("normal", "one past"));
    EXPECT_EQ(f.offline->counters().stored, 3u);
    EXPECT_EQ(f.offline->counters().rejected_full, 1u);
    EXPECT_EQ(f.shard->router->counters().bounced, 1u);  // service-unavailable to alice
    EXPECT_EQ(f.stored_in_db(), 3u);
}

TEST(OfflineModule, LimitCountsWhatIsAlreadyOnDisk) {
    Fixture f(2);
    {
        modules::offline::OfflineStore db(*f.shard->store);
        ASSERT_TRUE(db.append(k_bob, {.seq = 7, .stanza = "<message/>", .received_unix_ms = 1}));
    }
    f.shard->route(StanzaKind::message, k_alice, k_bob, "chat", msg("chat", "fits"));
    f.shard->route(StanzaKind::message, k_alice, k_bob, "chat", msg("chat", "does not"));
    EXPECT_EQ(f.offline->counters().stored, 1u);
    EXPECT_EQ(f.offline->counters().rejected_full, 1u);
    modules::offline::OfflineStore db(*f.shard->store);
    auto all = db.oldest(k_bob, 10, 1u << 20).value();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1].seq, 8u);  // after the highest stored number
}

TEST(OfflineModule, KeepsOnlyChatAndNormal) {
    Fixture f(10);
    f.shard->route(StanzaKind::message, k_alice, k_bob, "headline", msg("headline", "h"));
    f.shard->route(StanzaKind::message, k_alice, k_bob, "groupchat", msg("groupchat", "g"));
    f.shard->route(StanzaKind::message, k_alice, k_bob, "error", msg("error", "e"));
    f.shard->route(StanzaKind::message, k_alice, k_bob, "chat",
                   "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    f.shard->route(StanzaKind::message, k_alice, k_bob, "chat",
                   "<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>");
    EXPECT_EQ(f.offline->counters().stored, 0u);
    EXPECT_EQ(f.offline->counters().dropped_chat_state, 1u);
    EXPECT_EQ(f.offline->counters().rejected_no_store, 1u);
    EXPECT_EQ(f.stored_in_db(), 0u);
    f.shard->route(StanzaKind::message, k_alice, k_bob, "chat",
                   "<message type='chat'><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
    EXPECT_EQ(f.offline->counters().stored, 1u);
}

TEST(OfflineModule, RefusesMessagesForAccountsThatDoNotExist) {
    Fixture f(10);
    f.shard->route(StanzaKind::message, k_alice, "nobody@localhost", "chat", msg("chat", "hello?"));
    EXPECT_EQ(f.offline->counters().stored, 0u);
    EXPECT_EQ(f.offline->counters().rejected_no_account, 1u);
    EXPECT_EQ(f.shard->router->counters().bounced, 1u);
}

// Through the broker's write path: messages are staged and committed off the reactor; the
// per-user limit counts the staged ones (RocksDB has none of them yet), and once committed
// they are all in the store, numbered in order.
TEST(OfflineModule, WritePathStagesMessagesAndTheLimitCountsThem) {
    Fixture f(3, true);
    for (int i = 0; i < 4; ++i) f.shard->route(StanzaKind::message, k_alice, k_bob, "chat", msg("chat", std::to_string(i)));
    EXPECT_EQ(f.offline->counters().stored, 3u);
    EXPECT_EQ(f.offline->counters().rejected_full, 1u);
    EXPECT_EQ(f.stored_in_db(), 0u);  // staged, not committed: the turn has not ended
    f.shard->settle();
    EXPECT_EQ(f.stored_in_db(), 3u);
    modules::offline::OfflineStore db(*f.shard->store);
    auto all = db.oldest(k_bob, 10, 1u << 20).value();
    ASSERT_EQ(all.size(), 3u);
    for (std::size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(all[i].seq, i + 1);
        EXPECT_NE(all[i].stanza.find("<body>" + std::to_string(i) + "</body>"), std::string::npos);
    }
}

}  // namespace
