// Block list reads off the reactor (issue 14), when a list is only on a slow disk (an SST whose
// reads the test file system delays): a stanza to an offline user who blocks someone, and a
// block or blocklist IQ whose list is no longer cached, an IQ to another account (vCard) whose
// list is not cached. The user's operation waits on the
// store's reader thread while another bound session of the same shard gets its messages routed
// at once; then it completes, in order, with what is stored. One shard wired as the broker wires
// one (support/live_shard.hpp with a WritePath); the asan preset checks the lifetimes of a
// session that goes away while its read is pending.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "broker/src/modules/blocking/blocking_module.hpp"
#include "broker/src/modules/offline/offline_module.hpp"
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


std::vector<std::unique_ptr<session::Module>> modules_with_a_tiny_cache() {
    std::vector<std::unique_ptr<session::Module>> mods;
    // One list cached: the next list read drops the others (those of bound users too, once
    // they alone fill the cache), so that a list is read again from the store.
    modules::BlockingOptions o;
    o.max_cached_lists = 1;
    mods.push_back(std::make_unique<modules::BlockingModule>(o));
    mods.push_back(std::make_unique<modules::OfflineModule>());
    mods.push_back(std::make_unique<modules::VcardModule>());  // answers IQs to an account
    return mods;
}

struct ColdShard {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    OneShard t{modules_with_a_tiny_cache(), starling::testing::WritePath{fs}};

    ColdShard() {
        for (const char* u : {"alice", "bob", "carol", "dave", "frank", "mallory"}) {
            t.add_user(std::string(u) + "@localhost", std::string("pw-") + u);
        }
    }
    ~ColdShard() { fs->heal(); }

    // `who` blocks `jid` and the answer is in (synced).
    static void block(TestClient& who, const std::string& jid, const std::string& id) {
        who.send("<iq type='set' id='" + id + "'><block xmlns='urn:xmpp:blocking'><item jid='" + jid +
                 "'/></block></iq>");
        const auto got = who.read_until("id='" + id + "'", 5s);
        ASSERT_NE(got.find("id='" + id + "'"), std::string::npos) << got;
        ASSERT_EQ(got.find("type='error'"), std::string::npos) << got;
    }

    // Dave blocks someone: his list takes the one place in the cache.
    void dave_takes_the_cache() {
        TestClient dave(t.port);
        ASSERT_NE(dave.login("dave", "pw-dave", "d").find("dave@localhost/d"), std::string::npos);
        block(dave, "eve@localhost", "d1");
    }

    void wait_for_sessions(std::size_t n) {
        const auto deadline = Clock::now() + 3s;
        while (Clock::now() < deadline && t.on_shard([&] { return t.ctx->sessions.size(); }) != n) {
            std::this_thread::sleep_for(10ms);
        }
        ASSERT_EQ(t.on_shard([&] { return t.ctx->sessions.size(); }), n);
    }

    // The block lists go to an SST whose blocks are in no cache; its reads wait from now on.
    void make_cold() { starling::testing::make_cold(t, *fs, {storage::Column::blocking}); }

    std::uint64_t reads_offloaded() {
        return t.on_shard([&] { return t.writer->counters().reads_offloaded; });
    }
};

std::string read_for(TestClient& c, std::chrono::milliseconds wait) { return c.read_until("\x01", wait); }


// Carol (offline) blocks mallory; her list is on the slow disk only. Mallory's message to her
// and alice's two after it wait for the read; bob's traffic does not. Then mallory's bounces
// (XEP-0191 §3.3: service-unavailable) and alice's are stored, in order.
TEST(BlockingColdReads, StanzasToAnOfflineUserWithAColdListWaitInOrderWhileTheShardRoutes) {
    ColdShard s;
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw-carol", "c").find("carol@localhost/c"), std::string::npos);
        ColdShard::block(carol, "mallory@localhost", "b1");
    }
    s.wait_for_sessions(0);
    s.dave_takes_the_cache();
    TestClient alice(s.t.port), bob(s.t.port), mallory(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-alice", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-bob", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(mallory.login("mallory", "pw-mallory", "m").find("mallory@localhost/m"), std::string::npos);
    s.make_cold();
    const auto offloaded_before = s.reads_offloaded();

    mallory.send("<message type='chat' to='carol@localhost' id='x1'><body>from mallory</body></message>");
    std::this_thread::sleep_for(20ms);
    alice.send("<message type='chat' to='carol@localhost' id='o1'><body>first</body></message>"
               "<message type='chat' to='carol@localhost' id='o2'><body>second</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-read");
    EXPECT_EQ(read_for(mallory, 0ms).find("id='x1'"), std::string::npos) << "answered before the disk did";

    const auto bounce = mallory.read_until("</message>", 10s);
    EXPECT_NE(bounce.find("id='x1'"), std::string::npos) << bounce;
    EXPECT_NE(bounce.find("type='error'"), std::string::npos) << bounce;
    EXPECT_NE(bounce.find("service-unavailable"), std::string::npos) << bounce;
    EXPECT_GT(s.reads_offloaded(), offloaded_before);

    // Carol comes back: alice's messages were stored, in order; mallory's was not.
    s.fs->set_read_latency(0ms);
    TestClient carol(s.t.port);
    ASSERT_NE(carol.login("carol", "pw-carol", "c2").find("carol@localhost/c2"), std::string::npos);
    carol.send("<presence/>");
    const auto got = carol.read_until("second</body>", 5s);
    const auto first = got.find("<body>first</body>");
    ASSERT_NE(first, std::string::npos) << got;
    EXPECT_LT(first, got.find("<body>second</body>")) << got;
    EXPECT_EQ(got.find("from mallory"), std::string::npos) << got;
}

// Carol is bound and her list was dropped from the cache: her block IQ reads it from the slow
// disk, her input waits behind it (the get after it sees the block), and the answers are right.
TEST(BlockingColdReads, AColdBlockIqStallsOnlyItsUserAndIsHandledBeforeHerNextStanzas) {
    ColdShard s;
    TestClient alice(s.t.port), bob(s.t.port), carol(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-alice", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-bob", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(carol.login("carol", "pw-carol", "c").find("carol@localhost/c"), std::string::npos);
    ColdShard::block(carol, "mallory@localhost", "b1");
    s.dave_takes_the_cache();
    s.make_cold();
    const auto offloaded_before = s.reads_offloaded();

    carol.send("<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='trent@localhost'/></block></iq>"
               "<iq type='get' id='g1'><blocklist xmlns='urn:xmpp:blocking'/></iq>"
               "<message type='chat' to='bob@localhost/b' id='c1'><body>after my block</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(alice, bob, "during-the-block");
    EXPECT_EQ(read_for(carol, 0ms).find("id='b2'"), std::string::npos) << "answered before the disk did";
    EXPECT_EQ(read_for(bob, 0ms).find("after my block"), std::string::npos) << "carol's next stanza overtook her block";

    // The get was handled after the block (it lists trent); the block's result waits for its
    // synced write, so it may come after the get's.
    auto answers = carol.read_until("</blocklist>", 10s);
    if (answers.find("id='b2'") == std::string::npos) answers += carol.read_until("id='b2'", 5s);
    EXPECT_NE(answers.find("id='b2'"), std::string::npos) << answers;
    EXPECT_NE(answers.find("id='g1'"), std::string::npos) << answers;
    EXPECT_EQ(answers.find("type='error'"), std::string::npos) << answers;
    EXPECT_NE(answers.find("jid='mallory@localhost'"), std::string::npos) << answers;
    EXPECT_NE(answers.find("jid='trent@localhost'"), std::string::npos) << answers;
    EXPECT_NE(bob.read_until("</message>", 10s).find("<body>after my block</body>"), std::string::npos);
    EXPECT_GT(s.reads_offloaded(), offloaded_before);
}

// Carol's connection goes away while her block waits for the disk: the completion answers
// nobody and touches no freed session (ASan); the block she asked for is still made.
TEST(BlockingColdReads, ASessionGoneDuringItsPendingBlockIsNotTouchedAndTheBlockIsMade) {
    ColdShard s;
    TestClient alice(s.t.port), bob(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-alice", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-bob", "b").find("bob@localhost/b"), std::string::npos);
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw-carol", "c").find("carol@localhost/c"), std::string::npos);
        ColdShard::block(carol, "mallory@localhost", "b1");
        s.dave_takes_the_cache();
        s.make_cold();
        carol.send("<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='trent@localhost'/></block></iq>"
                   "<iq type='get' id='g1'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
        std::this_thread::sleep_for(50ms);
    }  // disconnected
    s.wait_for_sessions(2);
    std::this_thread::sleep_for(k_disk_latency * 3);  // the read completes into a closed session
    expect_routed_during_the_stall(alice, bob, "after-the-stall");

    s.fs->set_read_latency(0ms);
    TestClient again(s.t.port);
    ASSERT_NE(again.login("carol", "pw-carol", "c2").find("carol@localhost/c2"), std::string::npos);
    again.send("<iq type='get' id='g2'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
    const auto list = again.read_until("</iq>", 5s);
    EXPECT_NE(list.find("jid='mallory@localhost'"), std::string::npos) << list;
    EXPECT_NE(list.find("jid='trent@localhost'"), std::string::npos) << list;
}

// Alice's and mallory's vCard gets to carol, whose list (blocking mallory) is on the slow disk
// only: an IQ to an account is checked on the sender's shard (XEP-0191 §3.3). Both wait for the
// one read, each sender's next stanza behind its IQ, while frank's messages to bob go at once;
// then alice gets the vCard and mallory service-unavailable.
TEST(BlockingColdReads, IqsToAnAccountWithAColdListWaitForItAndAreAnsweredInOrder) {
    ColdShard s;
    ASSERT_TRUE(modules::VcardStore(*s.t.store).put("carol@localhost",
                                                    "<vCard xmlns='vcard-temp'><FN>Carol Cold</FN></vCard>"));
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw-carol", "c").find("carol@localhost/c"), std::string::npos);
        ColdShard::block(carol, "mallory@localhost", "b1");
    }
    s.wait_for_sessions(0);
    s.dave_takes_the_cache();
    TestClient alice(s.t.port), bob(s.t.port), frank(s.t.port), mallory(s.t.port);
    ASSERT_NE(alice.login("alice", "pw-alice", "a").find("alice@localhost/a"), std::string::npos);
    ASSERT_NE(bob.login("bob", "pw-bob", "b").find("bob@localhost/b"), std::string::npos);
    ASSERT_NE(frank.login("frank", "pw-frank", "f").find("frank@localhost/f"), std::string::npos);
    ASSERT_NE(mallory.login("mallory", "pw-mallory", "m").find("mallory@localhost/m"), std::string::npos);
    s.make_cold();
    const auto offloaded_before = s.reads_offloaded();

    alice.send("<iq type='get' to='carol@localhost' id='v1'><vCard xmlns='vcard-temp'/></iq>"
               "<message type='chat' to='bob@localhost/b' id='a1'><body>after alice's get</body></message>");
    mallory.send("<iq type='get' to='carol@localhost' id='v2'><vCard xmlns='vcard-temp'/></iq>"
                 "<message type='chat' to='bob@localhost/b' id='x1'><body>after mallory's get</body></message>");
    std::this_thread::sleep_for(50ms);
    expect_routed_during_the_stall(frank, bob, "during-the-read");
    EXPECT_EQ(read_for(bob, 0ms).find("after"), std::string::npos) << "a stanza overtook its sender's IQ";
    EXPECT_EQ(read_for(alice, 0ms).find("id='v1'"), std::string::npos) << "answered before the disk did";

    const auto card = alice.read_until("</iq>", 10s);
    EXPECT_NE(card.find("id='v1'"), std::string::npos) << card;
    EXPECT_NE(card.find("<FN>Carol Cold</FN>"), std::string::npos) << card;
    const auto refused = mallory.read_until("</iq>", 10s);
    EXPECT_NE(refused.find("id='v2'"), std::string::npos) << refused;
    EXPECT_NE(refused.find("type='error'"), std::string::npos) << refused;
    EXPECT_NE(refused.find("service-unavailable"), std::string::npos) << refused;
    EXPECT_EQ(refused.find("Carol Cold"), std::string::npos) << refused;
    auto after = bob.read_until("after mallory's get", 10s);
    after += bob.read_until("after alice's get", 1s);
    EXPECT_NE(after.find("after alice's get"), std::string::npos) << after;
    EXPECT_NE(after.find("after mallory's get"), std::string::npos) << after;
    EXPECT_GT(s.reads_offloaded(), offloaded_before);
}

}  // namespace
