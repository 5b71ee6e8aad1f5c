// RosterModule's inbound subscription handling on one shard, without sessions: what is stored
// for the contact (RFC 6121 §3.1.3, §3.4, Appendix A.3).
#include "broker/src/modules/roster/roster_module.hpp"

#include <gtest/gtest.h>

#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "tests/unit/broker/support/routed_shard.hpp"

namespace {

using namespace starling;
using modules::roster::RosterItem;
using modules::roster::RosterStore;
using modules::roster::Sub;
using router::StanzaKind;

constexpr const char* k_alice = "alice@localhost";
constexpr const char* k_bob = "bob@localhost";

struct Fixture {
    std::unique_ptr<test_support::OneShard> shard;
    // `write_path`: the broker's wiring, writes staged and committed off the shard thread.
    modules::RosterModule* roster = nullptr;
    explicit Fixture(bool write_path = false, modules::RosterOptions options = {}) {
        std::vector<std::unique_ptr<modules::Module>> mods;
        auto r = std::make_unique<modules::RosterModule>(options);
        roster = r.get();
        mods.push_back(std::move(r));
        mods.push_back(std::make_unique<modules::PresenceModule>());
        shard = std::make_unique<test_support::OneShard>(std::move(mods), write_path);
        shard->add_account(k_alice);
        shard->add_account(k_bob);
    }
    RosterStore db() { return RosterStore(*shard->store); }  // RocksDB only
    RosterStore seen() { return RosterStore(*shard->store, shard->writer.get()); }  // as the shard sees it
    void from_alice_to_bob(const std::string& type) {
        shard->route(StanzaKind::presence, k_alice, k_bob, type,
                     "<presence from='alice@localhost' to='bob@localhost' type='" + type + "'/>");
    }
};

TEST(RosterModule, StoresAnInboundRequestAsHiddenPendingInWithItsStanza) {
    Fixture f;
    f.from_alice_to_bob("subscribe");
    auto item = f.db().load(k_bob, k_alice);
    ASSERT_TRUE(item);
    EXPECT_TRUE(item->pending_in);
    EXPECT_FALSE(item->in_roster);  // §3.1.3: not a roster item (no push, no version bump)
    EXPECT_NE(item->pending_stanza.find("type='subscribe'"), std::string::npos);
    EXPECT_EQ(f.db().version(k_bob), 0u);
    f.from_alice_to_bob("subscribe");  // a repeat keeps one item
    EXPECT_EQ(f.db().load_all(k_bob).size(), 1u);
}

TEST(RosterModule, IgnoresSubscribedWithoutAnOutstandingRequest) {
    Fixture f;
    f.from_alice_to_bob("subscribed");
    EXPECT_FALSE(f.db().load(k_bob, k_alice));
    f.from_alice_to_bob("unsubscribed");
    f.from_alice_to_bob("unsubscribe");
    EXPECT_TRUE(f.db().load_all(k_bob).empty());
}

TEST(RosterModule, GrantsAPreApprovedRequestAtOnce) {
    Fixture f;
    RosterItem pre;
    pre.jid = k_alice;
    pre.approved = true;
    pre.in_roster = true;
    ASSERT_TRUE(f.db().save(k_bob, pre, true));
    f.from_alice_to_bob("subscribe");
    auto item = f.db().load(k_bob, k_alice);
    ASSERT_TRUE(item);
    EXPECT_EQ(item->sub, Sub::from);
    EXPECT_FALSE(item->approved);
    EXPECT_FALSE(item->pending_in);
    EXPECT_EQ(f.db().version(k_bob), 2u);  // the visible item changed: one bump
}

TEST(RosterModule, InboundSubscribedAndUnsubscribeFollowTheStateTable) {
    Fixture f;
    RosterItem asked;
    asked.jid = k_alice;
    asked.ask_out = true;
    asked.sub = Sub::from;
    asked.in_roster = true;
    ASSERT_TRUE(f.db().save(k_bob, asked, true));
    f.from_alice_to_bob("subscribed");
    EXPECT_EQ(f.db().load(k_bob, k_alice)->sub, Sub::both);
    f.from_alice_to_bob("unsubscribe");  // alice stops seeing bob
    EXPECT_EQ(f.db().load(k_bob, k_alice)->sub, Sub::to);
    f.from_alice_to_bob("unsubscribed");  // and cancels bob's subscription to her
    auto item = f.db().load(k_bob, k_alice);
    ASSERT_TRUE(item);  // still in the roster, with nothing left
    EXPECT_EQ(item->sub, Sub::none);
    EXPECT_TRUE(item->in_roster);
}

TEST(RosterModule, StoresNothingForAnAccountThatDoesNotExist) {
    Fixture f;
    f.shard->route(StanzaKind::presence, k_alice, "ghost@localhost", "subscribe",
                   "<presence from='alice@localhost' to='ghost@localhost' type='subscribe'/>");
    EXPECT_TRUE(f.db().load_all("ghost@localhost").empty());
    // alice's item for the ghost is untouched by the 'unsubscribed' answer (she asked nothing).
    EXPECT_TRUE(f.db().load_all(k_alice).empty());
}

// On the write path a subscription change is staged, not written on the shard thread: the
// shard reads its own staged item (a repeat does not start over), RocksDB has it once the
// batch is committed.
TEST(RosterModuleOnTheWritePath, ReadsItsStagedChangesAndStoresThemOnceCommitted) {
    Fixture f(true);
    f.from_alice_to_bob("subscribe");
    auto staged = f.seen().load(k_bob, k_alice);
    ASSERT_TRUE(staged);
    EXPECT_TRUE(staged->pending_in);
    EXPECT_FALSE(f.db().load(k_bob, k_alice)) << "written on the shard thread, not staged";
    f.from_alice_to_bob("subscribe");
    EXPECT_EQ(f.seen().load_all(k_bob).size(), 1u);
    f.shard->settle();
    auto item = f.db().load(k_bob, k_alice);
    ASSERT_TRUE(item);
    EXPECT_TRUE(item->pending_in);
    EXPECT_EQ(f.db().load_all(k_bob).size(), 1u);
}

// Versions count staged bumps: two visible changes in one turn are two versions, and the
// roster read in that turn is the staged one (RosterStore merges RocksDB and the overlay).
TEST(RosterModuleOnTheWritePath, BumpsTheVersionOverStagedChangesAndListsStagedItems) {
    Fixture f(true);
    RosterItem asked;
    asked.jid = k_alice;
    asked.ask_out = true;
    asked.in_roster = true;
    ASSERT_TRUE(f.db().save(k_bob, asked, true));  // committed: version 1
    RosterItem carol;
    carol.jid = "carol@localhost";
    carol.in_roster = true;
    ASSERT_TRUE(f.db().save(k_bob, carol, true));  // version 2
    f.from_alice_to_bob("subscribed");              // bob's item: to (version 3)
    auto dave = carol;
    dave.jid = "dave@localhost";
    ASSERT_TRUE(f.seen().save(k_bob, dave, true));   // staged: version 4
    ASSERT_TRUE(f.seen().erase(k_bob, "carol@localhost"));  // staged: version 5
    EXPECT_EQ(f.seen().version(k_bob), 5u);
    EXPECT_EQ(f.db().version(k_bob), 2u);
    auto listed = f.seen().load_all(k_bob);
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].jid, k_alice);
    EXPECT_EQ(listed[0].sub, Sub::to);
    EXPECT_EQ(listed[1].jid, "dave@localhost");
    f.shard->settle();
    EXPECT_EQ(f.db().version(k_bob), 5u);
    auto stored = f.db().load_all(k_bob);
    ASSERT_EQ(stored.size(), 2u);
    EXPECT_EQ(stored[0].sub, Sub::to);
    EXPECT_EQ(stored[1].jid, "dave@localhost");
}

// roster.max_pending_changes: past it a change is refused (counted), not queued without bound;
// once the disk caught up, changes are made again.
TEST(RosterModuleOnTheWritePath, RefusesChangesPastTheLimitOfChangesWaitingForTheDisk) {
    Fixture f(true, modules::RosterOptions{.max_pending_changes = 1});
    f.shard->add_account("carol@localhost");
    f.from_alice_to_bob("subscribe");  // at the limit: staged
    f.shard->route(StanzaKind::presence, "carol@localhost", k_bob, "subscribe",
                   "<presence from='carol@localhost' to='bob@localhost' type='subscribe'/>");  // one past it
    EXPECT_TRUE(f.seen().load(k_bob, k_alice));
    EXPECT_FALSE(f.seen().load(k_bob, "carol@localhost"));
    EXPECT_EQ(f.roster->counters().refused_pending, 1u);
    f.shard->settle();
    f.shard->route(StanzaKind::presence, "carol@localhost", k_bob, "subscribe",
                   "<presence from='carol@localhost' to='bob@localhost' type='subscribe'/>");
    f.shard->settle();
    EXPECT_TRUE(f.db().load(k_bob, "carol@localhost"));
    EXPECT_EQ(f.roster->counters().refused_pending, 1u);
    EXPECT_EQ(f.roster->counters().storage_errors, 0u);
}

}  // namespace
