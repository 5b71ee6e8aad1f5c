// Reads a login and an initial presence wait for, off the reactor (issue 14): a user's roster
// (the broadcast and probes of initial presence, a roster get, the point reads of a roster set,
// a remove and subscription stanzas in and out) and offline messages, when only
// on a slow disk (an SST whose reads the test file system delays). One user's read waits on the
// store's reader thread while another bound session of the same shard gets its messages routed
// at once; the stalled operation then completes, in order, with what is stored. One shard wired
// as the broker wires one (support/live_shard.hpp with a WritePath); the asan preset checks the
// lifetimes of a session that goes away while its read is pending.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "broker/src/modules/offline/offline_module.hpp"
#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/modules/vcard/vcard_module.hpp"
#include "broker/src/modules/vcard/vcard_store.hpp"
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


std::vector<std::unique_ptr<session::Module>> im_modules() {
    std::vector<std::unique_ptr<session::Module>> mods;
    mods.push_back(std::make_unique<modules::RosterModule>());
    mods.push_back(std::make_unique<modules::PresenceModule>());
    mods.push_back(std::make_unique<modules::OfflineModule>());
    mods.push_back(std::make_unique<modules::VcardModule>());
    return mods;
}

struct ColdShard {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    OneShard t{im_modules(), starling::testing::WritePath{fs}};

    ColdShard() {
        t.add_user("alice@localhost", "pw-a");
        t.add_user("bob@localhost", "pw-b");
        t.add_user("carol@localhost", "pw-c");
    }
    ~ColdShard() { fs->heal(); }

    // Carol's roster: alice (both ways) and `extra` contacts of another domain, written directly.
    void give_carol_a_roster(int extra) {
        modules::roster::RosterStore rs(*t.store);
        modules::roster::RosterItem a;
        a.jid = "alice@localhost";
        a.sub = modules::roster::Sub::both;
        a.in_roster = true;
        a.name = "Alice";
        ASSERT_TRUE(rs.save("carol@localhost", a, true));
        for (int i = 0; i < extra; ++i) {
            modules::roster::RosterItem d;
            d.jid = "device-" + std::to_string(i) + "@fleet.example";
            d.sub = modules::roster::Sub::from;
            d.in_roster = true;
            d.name = "a device with a name long enough to fill some blocks " + std::to_string(i);
            ASSERT_TRUE(rs.save("carol@localhost", d, true));
        }
    }

    // Everything written so far goes to SSTs whose blocks are in no cache; from now on every
    // read of those files waits `latency`.
    void make_cold(std::initializer_list<storage::Column> columns) { starling::testing::make_cold(t, *fs, columns); }

    std::uint64_t offloaded() {
        return t.on_shard([&] { return t.writer->counters().tasks_offloaded; });
    }
};

// What arrives within `wait`.
std::string read_for(TestClient& c, std::chrono::milliseconds wait) { return c.read_until("\x01", wait); }


TEST(ColdReads, AColdRosterAtInitialPresenceStallsOnlyThatUserAndHoldsHerNextStanzas) {
    ColdShard s;
    s.give_carol_a_roster(20);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    alice.send("<presence/>");  // available: carol's broadcast reaches her
    alice.read_until("</presence>");
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    s.make_cold({storage::Column::rosters});
    const auto offloaded_before = s.offloaded();

    // Carol's initial presence needs her roster, only on the slow disk; what she sends next
    // waits behind it.
    carol.send("<presence/><message type='chat' to='bob@localhost/b' id='c1'><body>after my presence</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-stall");
    EXPECT_EQ(read_for(bob, 0ms).find("after my presence"), std::string::npos) << "carol's next stanza overtook her presence";

    // Once the disk answers: her contact has her presence, then her message goes out.
    const auto to_alice = alice.read_until("from='carol@localhost/c'", 10s);
    EXPECT_NE(to_alice.find("from='carol@localhost/c'"), std::string::npos) << to_alice;
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my presence</body>"), std::string::npos);
    EXPECT_GT(s.offloaded(), offloaded_before);

    // Her roster is in the block cache now: a roster get is answered inline, whole.
    const auto offloaded = s.offloaded();
    carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>");
    const auto result = carol.read_until("</iq>", 5s);
    EXPECT_NE(result.find("type='result'"), std::string::npos) << result;
    EXPECT_NE(result.find("jid='alice@localhost'"), std::string::npos) << result;
    EXPECT_NE(result.find("jid='device-19@fleet.example'"), std::string::npos) << result;
    EXPECT_NE(result.find("ver='21'"), std::string::npos) << result;
    EXPECT_EQ(s.offloaded(), offloaded);
}

TEST(ColdReads, AColdRosterGetStallsOnlyItsUserAndAnswersTheWholeRosterAfterwards) {
    ColdShard s;
    s.give_carol_a_roster(20);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    s.make_cold({storage::Column::rosters, storage::Column::meta});

    carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver='1'/></iq>"
               "<iq type='get' id='r2'><query xmlns='jabber:iq:roster' ver='21'/></iq>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-get");
    EXPECT_EQ(read_for(carol, 0ms).find("id='r1'"), std::string::npos) << "answered before the disk did";

    // A stale version gets the whole roster; the next get (current version) an empty result,
    // in the order asked.
    const auto first = carol.read_until("</iq>", 10s);
    EXPECT_NE(first.find("id='r1'"), std::string::npos) << first;
    EXPECT_NE(first.find("ver='21'"), std::string::npos) << first;
    EXPECT_NE(first.find("jid='alice@localhost'"), std::string::npos) << first;
    EXPECT_NE(first.find("jid='device-0@fleet.example'"), std::string::npos) << first;
    EXPECT_NE(first.find("jid='device-19@fleet.example'"), std::string::npos) << first;
    const auto second = carol.read_until("id='r2'", 5s);
    EXPECT_NE(second.find("id='r2'"), std::string::npos) << second;
    EXPECT_EQ(second.find("<query"), std::string::npos) << second;
}

TEST(ColdReads, ColdOfflineMessagesStallOnlyTheirDeliveryAndArriveInOrderAfterwards) {
    ColdShard s;
    TestClient alice(s.t.port), bob(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    for (int i = 1; i <= 3; ++i) {
        alice.send("<message type='chat' to='carol@localhost' id='o" + std::to_string(i) + "'><body>offline " +
                   std::to_string(i) + "</body></message>");
    }
    // Alice's input is handled in order: once her roster get is answered, the messages before
    // it were stored (staged); then committed (synced) before they go to an SST.
    alice.send("<iq type='get' id='sync'><query xmlns='jabber:iq:roster'/></iq>");
    ASSERT_NE(alice.read_until("</iq>").find("id='sync'"), std::string::npos);
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline &&
           s.t.on_shard([&] { return s.t.writer->overlay_size() + s.t.writer->in_flight(); }) != 0) {
        std::this_thread::sleep_for(10ms);
    }
    s.make_cold({storage::Column::offline});

    TestClient carol(s.t.port);
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    const auto offloaded_before = s.offloaded();
    carol.send("<presence/>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-delivery");
    EXPECT_EQ(read_for(carol, 0ms).find("offline 1"), std::string::npos) << "delivered before the disk answered";

    const auto got = carol.read_until("offline 3</body>", 10s);
    const auto first = got.find("<body>offline 1</body>");
    const auto second = got.find("<body>offline 2</body>");
    const auto third = got.find("<body>offline 3</body>");
    ASSERT_NE(first, std::string::npos) << got;
    ASSERT_NE(second, std::string::npos) << got;
    ASSERT_NE(third, std::string::npos) << got;
    EXPECT_LT(first, second);
    EXPECT_LT(second, third);
    EXPECT_NE(got.find("urn:xmpp:delay"), std::string::npos) << got;
    EXPECT_GT(s.offloaded(), offloaded_before);

    // Delivered once: deleted, and a new session gets none of them again.
    s.fs->set_read_latency(0ms);
    TestClient again(s.t.port);
    ASSERT_NE(again.login("carol", "pw-c", "c2").find("carol@localhost/c2"), std::string::npos);
    again.send("<presence/>");
    EXPECT_EQ(read_for(again, 300ms).find("offline"), std::string::npos);
}

TEST(ColdReads, AColdVcardGetStallsOnlyItsUserAndIsAnsweredBeforeHerNextStanza) {
    ColdShard s;
    ASSERT_TRUE(modules::VcardStore(*s.t.store).put("carol@localhost",
                                                    "<vCard xmlns='vcard-temp'><FN>Carol Cold</FN></vCard>"));
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    s.make_cold({storage::Column::vcards});
    const auto offloaded_before = s.t.on_shard([&] { return s.t.writer->counters().reads_offloaded; });

    carol.send("<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>"
               "<message type='chat' to='bob@localhost/b' id='c1'><body>after my vcard</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-vcard");
    EXPECT_EQ(read_for(bob, 0ms).find("after my vcard"), std::string::npos) << "carol's next stanza overtook her get";
    const auto got = carol.read_until("</iq>", 10s);
    EXPECT_NE(got.find("<FN>Carol Cold</FN>"), std::string::npos) << got;
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my vcard</body>"), std::string::npos);
    EXPECT_GT(s.t.on_shard([&] { return s.t.writer->counters().reads_offloaded; }), offloaded_before);
}

// Carol's connection goes away while her roster get waits on the disk: the completion finds
// the session gone (or closed) and touches nothing (ASan checks the lifetime); the shard goes on.
TEST(ColdReads, ASessionGoneDuringItsPendingRosterReadIsNotTouchedByTheCompletion) {
    ColdShard s;
    s.give_carol_a_roster(10);
    TestClient bob(s.t.port), alice(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
        s.make_cold({storage::Column::rosters, storage::Column::meta});
        carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq><presence/>");
        std::this_thread::sleep_for(50ms);
    }  // disconnected
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.t.on_shard([&] { return s.t.ctx->sessions.size(); }) != 2) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(s.t.on_shard([&] { return s.t.ctx->sessions.size(); }), 2u);
    std::this_thread::sleep_for(k_disk_latency * 3);  // the reads complete into nothing
    expect_routed_during_the_stall(alice, bob, "after-the-stall");
}

// A set (a new item: the roster's size is read too) and a remove on a cold roster: carol's next
// stanzas wait for both answers, in order; the shard goes on meanwhile; what is stored is right.
TEST(ColdReads, AColdRosterSetAndRemoveStallOnlyTheirUserAndAreAnsweredBeforeHerNextStanza) {
    ColdShard s;
    s.give_carol_a_roster(20);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    s.make_cold({storage::Column::rosters, storage::Column::meta});
    const auto offloaded_before = s.offloaded();

    carol.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='dave@localhost' name='Dave'/>"
               "</query></iq>"
               "<iq type='set' id='s2'><query xmlns='jabber:iq:roster'>"
               "<item jid='device-3@fleet.example' subscription='remove'/></query></iq>"
               "<message type='chat' to='bob@localhost/b' id='c1'><body>after my changes</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-set");
    EXPECT_EQ(read_for(carol, 0ms).find("id='s1'"), std::string::npos) << "answered before the disk did";
    EXPECT_EQ(read_for(bob, 0ms).find("after my changes"), std::string::npos) << "carol's next stanza overtook her set";

    const auto answers = carol.read_until("id='s2'", 10s);
    const auto first = answers.find("id='s1'");
    ASSERT_NE(first, std::string::npos) << answers;
    EXPECT_LT(first, answers.find("id='s2'")) << answers;
    EXPECT_EQ(answers.find("type='error'"), std::string::npos) << answers;
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my changes</body>"), std::string::npos);
    EXPECT_GT(s.offloaded(), offloaded_before);

    // Stored: dave added, device-3 gone, the version bumped twice (21 + 2).
    carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>");
    const auto roster = carol.read_until("</iq>", 10s);
    EXPECT_NE(roster.find("id='r1'"), std::string::npos) << roster;
    EXPECT_NE(roster.find("jid='dave@localhost'"), std::string::npos) << roster;
    EXPECT_EQ(roster.find("jid='device-3@fleet.example'"), std::string::npos) << roster;
    EXPECT_NE(roster.find("jid='device-4@fleet.example'"), std::string::npos) << roster;
    EXPECT_NE(roster.find("ver='23'"), std::string::npos) << roster;
}

// A subscription request out of a cold roster and into another cold roster (the contact's
// account is cold too): the sender's next stanza waits for her change, the shard does not, and
// the contact gets the request once both are read.
TEST(ColdReads, ColdSubscriptionStanzasStallOnlyTheirUsersAndReachTheContactAfterwards) {
    ColdShard s;
    s.t.add_user("dave@localhost", "pw-d");
    s.give_carol_a_roster(5);
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port), dave(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
    ASSERT_NE(dave.login("dave", "pw-d", "d").find("dave@localhost/d"), std::string::npos);
    dave.send("<presence/>");  // available: a subscription request is delivered to him
    s.make_cold({storage::Column::rosters, storage::Column::meta, storage::Column::accounts});
    const auto offloaded_before = s.offloaded();

    carol.send("<presence to='dave@localhost' type='subscribe' id='sub1'/>"
               "<message type='chat' to='bob@localhost/b' id='c1'><body>after my subscribe</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-subscribe");
    EXPECT_EQ(read_for(bob, 0ms).find("after my subscribe"), std::string::npos) << "overtook her subscribe";

    const auto request = dave.read_until("type='subscribe'", 10s);
    EXPECT_NE(request.find("from='carol@localhost'"), std::string::npos) << request;
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my subscribe</body>"), std::string::npos);
    EXPECT_GT(s.offloaded(), offloaded_before);

    // Dave approves (his item is in memory now): carol's item becomes 'to'.
    dave.send("<presence to='carol@localhost' type='subscribed'/>");
    std::string item;
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline && item.find("subscription='to'") == std::string::npos) {
        carol.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
        const auto got = carol.read_until("</iq>", 5s);
        const auto at = got.find("jid='dave@localhost'");
        item = at == std::string::npos ? std::string() : got.substr(at, 80);
        if (item.find("subscription='to'") == std::string::npos) std::this_thread::sleep_for(20ms);
    }
    EXPECT_NE(item.find("subscription='to'"), std::string::npos) << item;
}

// Carol's connection goes away while her roster set waits for the disk: the completion answers
// nobody and touches no freed session (ASan), and the change she asked for is still made.
TEST(ColdReads, ASessionGoneDuringItsPendingRosterSetIsNotTouchedAndTheChangeIsMade) {
    ColdShard s;
    s.give_carol_a_roster(10);
    TestClient alice(s.t.port), bob(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw-c", "c").find("carol@localhost/c"), std::string::npos);
        s.make_cold({storage::Column::rosters, storage::Column::meta});
        carol.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='dave@localhost'/></query></iq>"
                   "<presence/>");
        std::this_thread::sleep_for(50ms);
    }  // disconnected
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.t.on_shard([&] { return s.t.ctx->sessions.size(); }) != 2) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(s.t.on_shard([&] { return s.t.ctx->sessions.size(); }), 2u);
    std::this_thread::sleep_for(k_disk_latency * 3);  // the reads complete; the set is staged
    expect_routed_during_the_stall(alice, bob, "after-the-stall");

    s.fs->set_read_latency(0ms);
    TestClient again(s.t.port);
    ASSERT_NE(again.login("carol", "pw-c", "c2").find("carol@localhost/c2"), std::string::npos);
    again.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    EXPECT_NE(again.read_until("</iq>", 5s).find("jid='dave@localhost'"), std::string::npos);
}

}  // namespace
