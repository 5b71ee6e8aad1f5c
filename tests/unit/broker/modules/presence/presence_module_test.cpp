// The per-shard cap on probe answers that wait for the disk (`[presence] max_probe_reads`,
// issue 14). A user's initial presence probes every contact it is subscribed to (RFC 6121
// §4.3.1); each probe is answered on the contact's home shard after reading the contact's
// account, its roster item for the prober and its silent flag. Here the contacts' accounts are
// only on a slow disk (an SST whose reads the test file system delays), so every such probe
// needs the store's reader thread: the first `cap` take the shard's places and are answered
// once the disk answers; the others are dropped (counted), never answered with a presence the
// contact does not have; a probe whose data is in memory is still answered at once. One shard
// wired as the broker wires one (support/live_shard.hpp with a WritePath); the asan preset
// checks the lifetimes of the completions that carry a place.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "broker/src/modules/presence/presence_module.hpp"
#include "broker/src/modules/roster/roster_module.hpp"
#include "broker/src/modules/roster/roster_store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "tests/support/faulty_fs.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using namespace starling;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using starling::testing::OneShard;
using starling::testing::TestClient;

constexpr auto k_disk_latency = 600ms;  // per SST read while the disk is slow
constexpr std::uint32_t k_cap = 2;      // presence.max_probe_reads in this test

std::vector<std::unique_ptr<session::Module>> im_modules(modules::PresenceModule*& presence) {
    std::vector<std::unique_ptr<session::Module>> mods;
    mods.push_back(std::make_unique<modules::RosterModule>());
    auto p = std::make_unique<modules::PresenceModule>(std::string(), k_cap);
    presence = p.get();
    mods.push_back(std::move(p));
    return mods;
}

struct ProbeShard {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    modules::PresenceModule* presence = nullptr;
    OneShard t{im_modules(presence), starling::testing::WritePath{fs}};

    ~ProbeShard() { fs->heal(); }

    // `a` and `b` subscribed to each other (both), written directly to the store.
    void befriend(const std::string& a, const std::string& b) {
        modules::roster::RosterStore rs(*t.store);
        for (const auto& [owner, contact] : {std::pair{a, b}, std::pair{b, a}}) {
            modules::roster::RosterItem item;
            item.jid = contact;
            item.sub = modules::roster::Sub::both;
            item.in_roster = true;
            ASSERT_TRUE(rs.save(owner, item, true));
        }
    }

    // The accounts written so far go to an SST whose blocks are in no cache; from now on every
    // read of that file waits the disk's latency.
    void make_accounts_cold() {
        rocksdb::FlushOptions fo;
        fo.wait = true;
        ASSERT_TRUE(t.store->db().Flush(fo, t.store->column(storage::Column::accounts)).ok());
        fs->set_read_latency(k_disk_latency);
    }

    std::uint64_t dropped() {
        return t.on_shard([&] { return presence->counters().probes_dropped; });
    }
    std::uint32_t in_flight() {
        return t.on_shard([&] { return presence->probe_reads_in_flight(); });
    }
};

TEST(PresenceModule, ProbesPastMaxProbeReadsAreDroppedWhileTheDiskStallsAndInlineProbesStillAnswered) {
    ProbeShard s;
    const std::vector<std::string> contacts = {"dave", "erin", "frank", "gina"};
    s.t.add_user("carol@localhost", "pw");
    for (const auto& c : contacts) {
        s.t.add_user(c + "@localhost", "pw");
        s.befriend("carol@localhost", c + "@localhost");
    }
    // Every contact online and available, before carol is.
    std::vector<std::unique_ptr<TestClient>> online;
    for (const auto& c : contacts) {
        online.push_back(std::make_unique<TestClient>(s.t.port));
        ASSERT_NE(online.back()->login(c, "pw", "r").find(c + "@localhost/r"), std::string::npos);
        online.back()->send("<presence/>");
        online.back()->read_until("from='" + c + "@localhost/r'");  // its own presence, back
    }
    TestClient carol(s.t.port);
    ASSERT_NE(carol.login("carol", "pw", "c").find("carol@localhost/c"), std::string::npos);
    s.make_accounts_cold();

    // Alice and bob: accounts written after the flush (in the memtable), so a probe between
    // them is answered inline while the disk stalls.
    s.t.add_user("alice@localhost", "pw");
    s.t.add_user("bob@localhost", "pw");
    s.befriend("alice@localhost", "bob@localhost");
    TestClient alice(s.t.port), bob(s.t.port);
    ASSERT_NE(alice.login("alice", "pw", "a").find("alice@localhost/a"), std::string::npos);
    alice.send("<presence/>");
    alice.read_until("from='alice@localhost/a'");
    ASSERT_NE(bob.login("bob", "pw", "b").find("bob@localhost/b"), std::string::npos);
    EXPECT_EQ(s.dropped(), 0u);
    EXPECT_EQ(s.in_flight(), 0u);

    // Carol's initial presence probes her four contacts, whose accounts are only on the slow
    // disk: two take the shard's places, the other two are dropped.
    carol.send("<presence/>");
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.dropped() < contacts.size() - k_cap) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(s.dropped(), contacts.size() - k_cap);
    EXPECT_EQ(s.in_flight(), k_cap);

    // The cap is reached, the reader stalls: bob's probe of alice needs no disk and is answered
    // at once.
    const auto sent = Clock::now();
    bob.send("<presence/>");
    const auto to_bob = bob.read_until("from='alice@localhost/a'", 5s);
    EXPECT_NE(to_bob.find("from='alice@localhost/a'"), std::string::npos) << to_bob;
    EXPECT_LT(Clock::now() - sent, k_disk_latency / 2) << "an inline probe waited for the disk";
    EXPECT_EQ(to_bob.find("type='unavailable'"), std::string::npos) << to_bob;
    EXPECT_EQ(s.dropped(), contacts.size() - k_cap);

    // Once the disk answers: the probes under the cap get the contacts' available presence;
    // the dropped ones get nothing at all (no 'unavailable': the contacts are online).
    std::string to_carol;
    const auto answered = [&] {
        std::size_t n = 0;
        for (const auto& c : contacts) n += to_carol.find("from='" + c + "@localhost/r'") != std::string::npos;
        return n;
    };
    const auto until = Clock::now() + 10s;
    while (answered() < k_cap && Clock::now() < until) to_carol += carol.read_until("\x01", 50ms);
    to_carol += carol.read_until("\x01", 300ms);  // and nothing more
    EXPECT_EQ(answered(), k_cap) << to_carol;
    EXPECT_EQ(to_carol.find("type='unavailable'"), std::string::npos) << to_carol;
    EXPECT_EQ(s.in_flight(), 0u);
    EXPECT_EQ(s.dropped(), contacts.size() - k_cap);

    // The places are free again, the accounts' block is in the cache: a second resource of
    // carol probes all four and hears from every one.
    TestClient carol2(s.t.port);
    ASSERT_NE(carol2.login("carol", "pw", "c2").find("carol@localhost/c2"), std::string::npos);
    carol2.send("<presence/>");
    std::string to_carol2;
    for (const auto& c : contacts) {
        const auto from = "from='" + c + "@localhost/r'";
        if (to_carol2.find(from) == std::string::npos) to_carol2 += carol2.read_until(from, 5s);
        EXPECT_NE(to_carol2.find(from), std::string::npos) << to_carol2;
    }
    EXPECT_EQ(s.dropped(), contacts.size() - k_cap);
}

// Carol goes away, and the module's shard winds down, while her probes' reads wait on the disk:
// the completions that carry the places touch nothing that is gone (ASan checks); before that,
// the shard's count of places held is exact once the disk answers.
TEST(PresenceModule, ProbePlacesAreFreedWhenTheProberIsGoneBeforeTheDiskAnswers) {
    ProbeShard s;
    s.t.add_user("carol@localhost", "pw");
    s.t.add_user("dave@localhost", "pw");
    s.befriend("carol@localhost", "dave@localhost");
    TestClient dave(s.t.port);
    ASSERT_NE(dave.login("dave", "pw", "r").find("dave@localhost/r"), std::string::npos);
    dave.send("<presence/>");
    dave.read_until("from='dave@localhost/r'");
    {
        TestClient carol(s.t.port);
        ASSERT_NE(carol.login("carol", "pw", "c").find("carol@localhost/c"), std::string::npos);
        s.make_accounts_cold();
        carol.send("<presence/>");
        const auto deadline = Clock::now() + 3s;
        while (Clock::now() < deadline && s.in_flight() != 1) std::this_thread::sleep_for(5ms);
        EXPECT_EQ(s.in_flight(), 1u);
    }  // disconnected while the read waits
    const auto deadline = Clock::now() + k_disk_latency * 5;
    while (Clock::now() < deadline && s.in_flight() != 0) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(s.in_flight(), 0u);
    EXPECT_EQ(s.dropped(), 0u);
}

// The broker stops while a probe's read waits on the disk: the writer answers the read (stopped)
// as the shard winds down, and the completion that carries the place touches nothing that is
// gone (ASan checks).
TEST(PresenceModule, TheShardStopsCleanlyWithAProbeReadInFlight) {
    ProbeShard s;
    s.t.add_user("carol@localhost", "pw");
    s.t.add_user("dave@localhost", "pw");
    s.befriend("carol@localhost", "dave@localhost");
    TestClient carol(s.t.port);
    ASSERT_NE(carol.login("carol", "pw", "c").find("carol@localhost/c"), std::string::npos);
    s.make_accounts_cold();
    carol.send("<presence/>");
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline && s.in_flight() != 1) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(s.in_flight(), 1u);
}  // ~ProbeShard with the read pending

}  // namespace
