#include "broker/src/modules/blocking/blocking_module.hpp"

#include <gtest/gtest.h>

#include "broker/src/modules/blocking/blocklist.hpp"
#include "broker/src/modules/offline/offline_module.hpp"
#include "tests/unit/broker/support/routed_shard.hpp"

namespace {

using namespace starling;
using router::StanzaKind;

struct Fixture {
    modules::BlockingModule* blocking = nullptr;
    modules::OfflineModule* offline = nullptr;
    std::unique_ptr<test_support::OneShard> shard;

    explicit Fixture(const std::vector<std::string>& juliet_blocks) {
        std::vector<std::unique_ptr<modules::Module>> mods;
        auto b = std::make_unique<modules::BlockingModule>();
        auto o = std::make_unique<modules::OfflineModule>();
        blocking = b.get();
        offline = o.get();
        mods.push_back(std::move(b));
        mods.push_back(std::move(o));
        // juliet's list is in the store when the broker starts (the module indexes who has one).
        shard = std::make_unique<test_support::OneShard>(std::move(mods), false, [&](storage::Store& store) {
            modules::blocking::BlockList list;
            for (const auto& j : juliet_blocks) list.add(j);
            EXPECT_TRUE(modules::blocking::BlockStore(store).save("juliet@localhost", list));
        });
        shard->add_account("juliet@localhost");
    }
};

TEST(BlockingModule, InboundFromBlockedJidIsAnsweredOrDroppedPerKind) {
    Fixture f({"romeo@localhost"});
    const std::string m = "<message type='chat'><body>hi</body></message>";
    // A message: service-unavailable, and not stored offline either.
    f.shard->route(StanzaKind::message, "romeo@localhost/orchard", "juliet@localhost", "chat", m);
    EXPECT_EQ(f.blocking->counters().inbound_bounced, 1u);
    EXPECT_EQ(f.offline->counters().stored, 0u);
    // Presence: dropped without an answer.
    f.shard->route(StanzaKind::presence, "romeo@localhost/orchard", "juliet@localhost", "", "<presence/>");
    EXPECT_EQ(f.blocking->counters().inbound_dropped, 1u);
    // IQ get to a full JID: service-unavailable; IQ result: dropped.
    f.shard->route(StanzaKind::iq, "romeo@localhost/orchard", "juliet@localhost/balcony", "get", "<iq type='get'/>");
    EXPECT_EQ(f.blocking->counters().inbound_bounced, 2u);
    f.shard->route(StanzaKind::iq, "romeo@localhost/orchard", "juliet@localhost/balcony", "result", "<iq type='result'/>");
    EXPECT_EQ(f.blocking->counters().inbound_dropped, 2u);
    // An error message from the blocked JID is never answered.
    f.shard->route(StanzaKind::message, "romeo@localhost/orchard", "juliet@localhost", "error", "<message type='error'/>");
    EXPECT_EQ(f.blocking->counters().inbound_bounced, 2u);
    EXPECT_EQ(f.blocking->counters().inbound_dropped, 3u);
}

TEST(BlockingModule, OthersStillReachTheUserAndItsOfflineQueue) {
    Fixture f({"romeo@localhost/orchard", "evil.example"});
    f.shard->route(StanzaKind::message, "romeo@localhost/garden", "juliet@localhost", "chat", "<message><body>1</body></message>");
    f.shard->route(StanzaKind::message, "nurse@localhost/x", "juliet@localhost", "chat", "<message><body>2</body></message>");
    EXPECT_EQ(f.blocking->counters().inbound_bounced, 0u);
    EXPECT_EQ(f.offline->counters().stored, 2u);
    f.shard->route(StanzaKind::message, "evil.example", "juliet@localhost", "chat", "<message><body>3</body></message>");
    EXPECT_EQ(f.blocking->counters().inbound_bounced, 1u);
    EXPECT_EQ(f.offline->counters().stored, 2u);
}

}  // namespace
