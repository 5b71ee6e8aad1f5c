// Storing a message for an offline user when what the store needs is only on a slow disk (issue
// 14): the queue's state on first use, the account while the queue is empty. The read waits on
// the store's reader thread while the shard goes on routing; the messages are then stored in
// order, none lost or twice; the sender's next stanzas (an XEP-0198 <r/> among them) wait for
// its message to be stored; a message to no account is bounced after the read. One shard wired
// as the broker wires one (support/live_shard.hpp with a WritePath, tests/support/faulty_fs.hpp
// delaying SST reads); the asan preset checks a sender that goes away while its message waits.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "broker/src/modules/offline/offline_module.hpp"
#include "broker/src/modules/offline/offline_store.hpp"
#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
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


struct ColdOffline {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    modules::OfflineModule* offline = nullptr;
    modules::OfflineOptions options;
    OneShard t;

    std::vector<std::unique_ptr<session::Module>> modules() {
        std::vector<std::unique_ptr<session::Module>> mods;
        mods.push_back(std::make_unique<modules::RosterModule>());
        mods.push_back(std::make_unique<modules::PresenceModule>());
        auto o = std::make_unique<modules::OfflineModule>(options);
        offline = o.get();
        mods.push_back(std::move(o));
        return mods;
    }

    explicit ColdOffline(modules::OfflineOptions o = {})
        : options(o), t(modules(), starling::testing::WritePath{fs}) {
        for (const char* u : {"alice", "bob", "carol", "dave"}) {
            t.add_user(std::string(u) + "@localhost", std::string("pw-") + u);
        }
    }
    ~ColdOffline() { fs->heal(); }

    // Messages kept for carol before this broker knew her queue (a restart): written directly.
    void give_carol_stored(int n) {
        modules::offline::OfflineStore db(*t.store);
        for (int i = 1; i <= n; ++i) {
            modules::offline::OfflineRecord rec;
            rec.seq = static_cast<std::uint64_t>(i);
            rec.stanza = "<message from='alice@localhost/a' to='carol@localhost' type='chat'><body>old " +
                         std::to_string(i) + "</body></message>";
            rec.received_unix_ms = 1'700'000'000'000;
            ASSERT_TRUE(db.append("carol@localhost", rec));
        }
    }

    // Everything written so far goes to SSTs whose blocks are in no cache; from now on every
    // read of those files waits k_disk_latency.
    void make_cold(std::initializer_list<storage::Column> columns) { starling::testing::make_cold(t, *fs, columns); }

    std::uint64_t offloaded() {
        return t.on_shard([&] { return t.writer->counters().tasks_offloaded; });
    }
    modules::OfflineCounters counters() {
        return t.on_shard([&] { return offline->counters(); });
    }
    // Waits until this shard's writes are committed.
    void settle() {
        const auto deadline = Clock::now() + 5s;
        while (Clock::now() < deadline &&
               t.on_shard([&] { return t.writer->overlay_size() + t.writer->in_flight(); }) != 0) {
            std::this_thread::sleep_for(10ms);
        }
    }
};

std::string read_for(TestClient& c, std::chrono::milliseconds wait) { return c.read_until("\x01", wait); }

std::size_t count_of(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
    return n;
}

void login(TestClient& c, const std::string& user, const std::string& resource) {
    ASSERT_NE(c.login(user, "pw-" + user, resource).find(user + "@localhost/" + resource), std::string::npos);
}


std::string to_carol(int i) {
    return "<message type='chat' to='carol@localhost' id='n" + std::to_string(i) + "'><body>new " + std::to_string(i) +
           "</body></message>";
}

TEST(ColdOffline, AColdQueueStallsOnlyItsSenderAndTheMessagesAreStoredInOrderOnce) {
    ColdOffline s;
    s.give_carol_stored(2);
    TestClient alice(s.t.port), bob(s.t.port), dave(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(dave, "dave", "d");
    s.make_cold({storage::Column::offline});
    const auto offloaded_before = s.offloaded();

    // Carol's queue state is only on the slow disk: dave's three messages wait for it, and
    // what he sends next (to bob) waits behind them.
    dave.send(to_carol(1) + to_carol(2) + to_carol(3) +
              "<message type='chat' to='bob@localhost/b' id='d-next'><body>after my messages</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-store");
    EXPECT_EQ(read_for(bob, 0ms).find("after my messages"), std::string::npos) << "dave's next stanza overtook his messages";
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my messages</body>"), std::string::npos);
    EXPECT_EQ(read_for(dave, 0ms).find("type='error'"), std::string::npos) << "a stored message was bounced";
    EXPECT_GT(s.offloaded(), offloaded_before);
    const auto c = s.counters();
    EXPECT_EQ(c.stored, 3u);
    EXPECT_GE(c.store_reads_offloaded, 1u);

    // Carol gets the two old messages, then dave's three, oldest first, each once.
    s.settle();
    s.fs->set_read_latency(0ms);
    TestClient carol(s.t.port);
    login(carol, "carol", "c");
    carol.send("<presence/>");
    std::string got = carol.read_until("new 3</body>", 10s);
    got += read_for(carol, 300ms);
    std::size_t last = 0;
    for (const auto* body : {"old 1", "old 2", "new 1", "new 2", "new 3"}) {
        const std::string b = std::string("<body>") + body + "</body>";
        EXPECT_EQ(count_of(got, b), 1u) << body << " in " << got;
        const auto at = got.find(b);
        ASSERT_NE(at, std::string::npos) << got;
        EXPECT_GE(at, last) << body << " out of order: " << got;
        last = at;
    }
    TestClient again(s.t.port);
    login(again, "carol", "c2");
    again.send("<presence/>");
    EXPECT_EQ(read_for(again, 300ms).find("<body>"), std::string::npos) << "delivered twice";
}

TEST(ColdOffline, TheSendersStreamManagementAckWaitsUntilItsMessageIsStored) {
    ColdOffline s;
    s.give_carol_stored(1);
    TestClient dave(s.t.port);
    login(dave, "dave", "d");
    dave.send("<enable xmlns='urn:xmpp:sm:3'/>");
    ASSERT_NE(dave.read_until("/>").find("<enabled"), std::string::npos);
    s.make_cold({storage::Column::offline});

    const auto sent = Clock::now();
    dave.send(to_carol(1) + "<r xmlns='urn:xmpp:sm:3'/>");
    // XEP-0198 §4: <a h='1'/> says the message was handled, so not before it is stored.
    const auto ack = dave.read_until("h='1'/>", 10s);
    EXPECT_NE(ack.find("<a xmlns='urn:xmpp:sm:3' h='1'/>"), std::string::npos) << ack;
    EXPECT_GE(Clock::now() - sent, k_disk_latency / 2) << "acknowledged before the queue was read";
    EXPECT_EQ(s.counters().stored, 1u);
    EXPECT_EQ(s.t.on_shard([&] { return s.t.writer->overlay_size() + s.t.writer->in_flight(); }), 0u)
        << "acknowledged before the write was durable";
}

TEST(ColdOffline, AColdAccountOfAnEmptyQueueIsReadOffTheShardAndAMessageToNobodyIsBouncedAfterIt) {
    ColdOffline s;
    TestClient alice(s.t.port), bob(s.t.port), dave(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(dave, "dave", "d");
    s.make_cold({storage::Column::accounts});

    // Carol's queue is empty (nothing on disk to read), her account is only on the disk; a
    // made-up account is not either.
    dave.send(to_carol(1) +
              "<message type='chat' to='nobody@localhost' id='x1'><body>to nobody</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-account");
    EXPECT_EQ(read_for(dave, 0ms).find("type='error'"), std::string::npos) << "answered before the disk did";
    // RFC 6121 §8.5.2.2.1: no such account, service-unavailable; carol's message is kept.
    const auto bounce = dave.read_until("</message>", 10s);
    EXPECT_NE(bounce.find("id='x1'"), std::string::npos) << bounce;
    EXPECT_NE(bounce.find("service-unavailable"), std::string::npos) << bounce;
    EXPECT_EQ(bounce.find("id='n1'"), std::string::npos) << "carol's message was bounced: " << bounce;
    const auto c = s.counters();
    EXPECT_EQ(c.stored, 1u);
    EXPECT_EQ(c.rejected_no_account, 1u);

    s.settle();
    s.fs->set_read_latency(0ms);
    TestClient carol(s.t.port);
    login(carol, "carol", "c");
    carol.send("<presence/>");
    const auto got = carol.read_until("new 1</body>", 10s);
    EXPECT_NE(got.find("<body>new 1</body>"), std::string::npos) << got;
}

TEST(ColdOffline, ARecipientWhoComesOnlineWhileTheMessageWaitsGetsItOnce) {
    ColdOffline s;
    s.give_carol_stored(1);
    TestClient dave(s.t.port), carol(s.t.port);
    login(dave, "dave", "d");
    login(carol, "carol", "c");  // bound, not available: messages to her bare JID are stored
    s.make_cold({storage::Column::offline});

    dave.send(to_carol(1));
    std::this_thread::sleep_for(50ms);
    carol.send("<presence/>");  // her own delivery read waits on the disk too
    std::string got = carol.read_until("new 1</body>", 10s);
    got += read_for(carol, 300ms);
    EXPECT_EQ(count_of(got, "<body>old 1</body>"), 1u) << got;
    EXPECT_EQ(count_of(got, "<body>new 1</body>"), 1u) << got;
    EXPECT_LT(got.find("<body>old 1</body>"), got.find("<body>new 1</body>")) << got;
}

// [offline] max_waiting: at the limit the messages wait; one past it is refused at once with
// resource-constraint (RFC 6120 §8.3.3.18, type wait), not stored.
TEST(ColdOffline, OnePastMaxWaitingIsRefusedWithResourceConstraintAndTheOthersAreStored) {
    modules::OfflineOptions o;
    o.max_waiting = 2;
    ColdOffline s(o);
    s.give_carol_stored(1);
    TestClient alice(s.t.port), bob(s.t.port), dave(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    login(dave, "dave", "d");
    s.make_cold({storage::Column::offline});

    // Three senders (a sender's own input waits behind its message): two wait, the third not.
    alice.send(to_carol(1));
    bob.send(to_carol(2));
    std::this_thread::sleep_for(50ms);
    const auto sent = Clock::now();
    dave.send(to_carol(3));
    const auto refused = dave.read_until("</message>", 5s);
    EXPECT_LT(Clock::now() - sent, k_disk_latency / 2) << "the refusal waited for the disk";
    EXPECT_NE(refused.find("id='n3'"), std::string::npos) << refused;
    EXPECT_NE(refused.find("type='error'"), std::string::npos) << refused;
    EXPECT_NE(refused.find("resource-constraint"), std::string::npos) << refused;
    EXPECT_NE(refused.find("type='wait'"), std::string::npos) << refused;

    s.settle();
    std::this_thread::sleep_for(k_disk_latency * 2);
    s.settle();
    const auto c = s.counters();
    EXPECT_EQ(c.stored, 2u);
    EXPECT_EQ(c.rejected_busy, 1u);
    EXPECT_EQ(read_for(alice, 0ms).find("type='error'"), std::string::npos);
    EXPECT_EQ(read_for(bob, 0ms).find("type='error'"), std::string::npos);
}

// Dave's connection goes away while his message waits on the disk (his input held): the
// completion stores the message and touches nothing of his (ASan checks the lifetime).
TEST(ColdOffline, ASenderGoneWhileItsMessageWaitsIsNotTouchedAndTheMessageIsStored) {
    ColdOffline s;
    s.give_carol_stored(1);
    TestClient alice(s.t.port), bob(s.t.port);
    login(alice, "alice", "a");
    login(bob, "bob", "b");
    {
        TestClient dave(s.t.port);
        login(dave, "dave", "d");
        s.make_cold({storage::Column::offline});
        dave.send(to_carol(1) + "<presence/>");
        std::this_thread::sleep_for(50ms);
    }  // disconnected
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.t.on_shard([&] { return s.t.ctx->sessions.size(); }) != 2) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(s.t.on_shard([&] { return s.t.ctx->sessions.size(); }), 2u);
    std::this_thread::sleep_for(k_disk_latency * 3);  // the read completes
    expect_routed_during_the_stall(alice, bob, "after-the-stall");
    EXPECT_EQ(s.counters().stored, 1u);
}

}  // namespace
