// XEP-0077 registration reads whether the name is taken off the reactor (issue 14): with the
// accounts only on a slow disk (an SST whose reads the test file system delays), a registering
// stream waits on the store's reader thread while bound sessions of the same shard get their
// messages routed at once; its next IQ waits behind the answer. One shard wired as the broker
// wires one (support/live_shard.hpp with a WritePath); run under the asan preset for the stream
// that goes away while its read is pending.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "broker/src/modules/register/register_module.hpp"
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
using starling::testing::k_disk_latency;


std::vector<std::unique_ptr<session::Module>> open_registration() {
    std::vector<std::unique_ptr<session::Module>> mods;
    modules::RegisterOptions o;
    o.open = true;
    mods.push_back(std::make_unique<modules::RegisterModule>(o));
    return mods;
}

std::string set(const std::string& id, const std::string& user, const std::string& password) {
    return "<iq type='set' id='" + id + "'><query xmlns='jabber:iq:register'><username>" + user +
           "</username><password>" + password + "</password></query></iq>";
}

struct ColdShard {
    std::shared_ptr<test::FaultyFileSystem> fs = std::make_shared<test::FaultyFileSystem>();
    OneShard t{open_registration(), starling::testing::WritePath{fs}};
    TestClient alice{t.port}, bob{t.port};

    ColdShard() {
        t.add_user("alice@localhost", "pw-a");
        t.add_user("bob@localhost", "pw-b");
        EXPECT_NE(alice.login("alice", "pw-a", "a").find("alice@localhost/a"), std::string::npos);
        EXPECT_NE(bob.login("bob", "pw-b", "b").find("bob@localhost/b"), std::string::npos);
        // The accounts go to an SST whose blocks are in no cache; its reads wait from now on.
        rocksdb::FlushOptions fo;
        fo.wait = true;
        EXPECT_TRUE(t.store->db().Flush(fo, t.store->column(storage::Column::accounts)).ok());
        fs->set_read_latency(k_disk_latency);
    }
    ~ColdShard() { fs->heal(); }

    void expect_routed_during_the_stall(const std::string& body) {
        starling::testing::expect_routed_during_the_stall(alice, bob, body);
    }

    std::uint64_t reads_offloaded() {
        return t.on_shard([&] { return t.writer->counters().reads_offloaded; });
    }
};

// A taken name is only known from the disk (a free one is usually known from memory: RocksDB's
// filter says no such key): the stream waits, its next registration IQ behind the answer.
TEST(RegisterColdReads, ATakenNameOnTheSlowDiskStallsOnlyTheRegisteringStreamAndHoldsItsNextIq) {
    ColdShard s;
    const auto offloaded_before = s.reads_offloaded();
    TestClient c(s.t.port);
    c.open_stream();
    c.send(set("r1", "alice", "pw-x") + set("r2", "newbie", "pw-n"));
    std::this_thread::sleep_for(50ms);
    s.expect_routed_during_the_stall("during-the-check");
    EXPECT_EQ(c.read_until("\x01", 0ms).find("id='r1'"), std::string::npos) << "answered before the disk did";

    auto got = c.read_until("id='r2'", 10s);
    got += c.read_until("\x01", 200ms);  // the rest of it
    const auto r1 = got.find("id='r1'");
    ASSERT_NE(r1, std::string::npos) << got;
    EXPECT_LT(r1, got.find("id='r2'")) << got;
    EXPECT_NE(got.find("<conflict"), std::string::npos) << got;  // §3.1: the name is taken
    EXPECT_NE(got.find("type='result' id='r2'"), std::string::npos) << got;
    EXPECT_GT(s.reads_offloaded(), offloaded_before);

    s.fs->set_read_latency(0ms);
    TestClient again(s.t.port);
    EXPECT_NE(again.login("newbie", "pw-n").find("<jid>newbie@localhost/r</jid>"), std::string::npos);
    TestClient alice(s.t.port);
    EXPECT_NE(alice.login("alice", "pw-a", "a2").find("<jid>alice@localhost/a2</jid>"), std::string::npos)
        << "the taken name's password changed";
}

// The registering stream goes away while its name is read: the completion touches no freed
// session (ASan), and the shard goes on.
TEST(RegisterColdReads, AStreamGoneDuringItsPendingNameCheckIsNotTouched) {
    ColdShard s;
    {
        TestClient c(s.t.port);
        c.open_stream();
        c.send(set("r1", "alice", "pw-g"));  // taken: read from the slow disk
        std::this_thread::sleep_for(50ms);
    }
    std::this_thread::sleep_for(k_disk_latency * 3);
    s.expect_routed_during_the_stall("after-the-stall");
}

}  // namespace
