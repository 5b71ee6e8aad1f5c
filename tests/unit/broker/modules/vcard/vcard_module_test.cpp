// XEP-0054: serialization of the stored card, the store, and the module on a real shard (own and
// other accounts, forbidden writes, the size limit at the limit and one past).
#include "broker/src/modules/vcard/vcard_module.hpp"

#include <gtest/gtest.h>

#include "broker/src/modules/vcard/vcard_store.hpp"
#include "broker/src/util/dom.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using namespace std::chrono_literals;
using starling::modules::serialize_vcard;
using starling::modules::VcardModule;
using starling::modules::VcardOptions;
using starling::modules::VcardStore;
using starling::testing::OneShard;
using starling::testing::TestClient;
using starling::util::StanzaDom;

std::string serialized(const std::string& iq) {
    StanzaDom dom(iq, "jabber:client");
    EXPECT_TRUE(dom.ok());
    return serialize_vcard(StanzaDom::first_element(dom.root()));
}

TEST(SerializeVcard, StandsAloneWhateverPrefixTheClientUsed) {
    struct Row {
        std::string iq;
        std::string want;
    };
    const Row rows[] = {
        {"<iq type='set' id='1'><vCard xmlns='vcard-temp'><FN>Peter</FN></vCard></iq>",
         "<vCard xmlns=\"vcard-temp\"><FN>Peter</FN></vCard>"},
        // A prefix declared on the <iq/>: the element is re-rooted, the declaration carried.
        {"<iq xmlns:v='vcard-temp' type='set' id='1'><v:vCard><v:FN>P</v:FN></v:vCard></iq>",
         "<vCard xmlns=\"vcard-temp\" xmlns:v=\"vcard-temp\"><v:FN>P</v:FN></vCard>"},
        // Text is escaped again on the way out.
        {"<iq><vCard xmlns='vcard-temp'><NICKNAME>a &amp; b &lt;3</NICKNAME></vCard></iq>",
         "<vCard xmlns=\"vcard-temp\"><NICKNAME>a &amp; b &lt;3</NICKNAME></vCard>"},
    };
    for (const auto& r : rows) EXPECT_EQ(serialized(r.iq), r.want) << r.iq;
}

TEST(VcardStore, RoundTripsAndRemoves) {
    starling::testing::TempDir dir;
    auto store = starling::storage::Store::open(dir.str());
    VcardStore v(*store);
    EXPECT_EQ(v.get("a@localhost").error(), starling::storage::Errc::not_found);
    ASSERT_TRUE(v.put("a@localhost", "<vCard xmlns='vcard-temp'/>"));
    EXPECT_EQ(*v.get("a@localhost"), "<vCard xmlns='vcard-temp'/>");
    EXPECT_FALSE(v.get("a@localhost.example"));  // keys are exact bare JIDs
    ASSERT_TRUE(v.remove("a@localhost"));
    EXPECT_FALSE(v.get("a@localhost"));
    EXPECT_TRUE(v.remove("never@localhost"));
}

// The module finds the store through the shard context, as in the broker; the test sets the
// size limit.
struct VcardShard {
    explicit VcardShard(std::size_t max_bytes) : shard(make(max_bytes)) {}
    static std::vector<std::unique_ptr<starling::modules::Module>> make(std::size_t max_bytes) {
        std::vector<std::unique_ptr<starling::modules::Module>> v;
        v.push_back(std::make_unique<VcardModule>(nullptr, VcardOptions{max_bytes}));
        return v;
    }
    OneShard shard;
};

std::string vcard_set(const std::string& id, const std::string& inner, const std::string& to = {}) {
    return "<iq type='set' id='" + id + "'" + (to.empty() ? "" : " to='" + to + "'") +
           "><vCard xmlns='vcard-temp'>" + inner + "</vCard></iq>";
}

TEST(VcardModule, OwnCardIsEmptyThenWhatWasSet) {
    VcardShard t(64 * 1024);
    t.shard.add_user("alice@localhost", "pw");
    TestClient c(t.shard.port);
    c.login("alice", "pw");
    c.send("<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>");
    const auto empty = c.read_until("</iq>");
    EXPECT_NE(empty.find("type='result'"), std::string::npos) << empty;
    EXPECT_NE(empty.find("<vCard xmlns='vcard-temp'/>"), std::string::npos) << empty;
    c.send(vcard_set("s1", "<FN>Alice</FN>"));
    EXPECT_NE(c.read_until("id='s1'").find("type='result'"), std::string::npos);
    c.send("<iq type='get' id='g2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>");
    EXPECT_NE(c.read_until("</iq>").find("<vCard xmlns=\"vcard-temp\"><FN>Alice</FN></vCard>"), std::string::npos);
}

TEST(VcardModule, OthersReadButDoNotWrite) {
    VcardShard t(64 * 1024);
    t.shard.add_user("alice@localhost", "pw");
    t.shard.add_user("bob@localhost", "pw");
    TestClient a(t.shard.port), b(t.shard.port);
    a.login("alice", "pw");
    b.login("bob", "pw");
    a.send(vcard_set("s1", "<FN>Alice</FN>"));
    a.read_until("id='s1'");
    b.send("<iq type='get' id='g' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>");
    const auto got = b.read_until("</iq>");
    EXPECT_NE(got.find("from='alice@localhost'"), std::string::npos) << got;
    EXPECT_NE(got.find("<FN>Alice</FN>"), std::string::npos) << got;
    b.send(vcard_set("w", "<FN>Bob was here</FN>", "alice@localhost"));
    EXPECT_NE(b.read_until("</iq>").find("<forbidden"), std::string::npos);
    b.send(vcard_set("w2", "<FN>Server</FN>", "localhost"));
    EXPECT_NE(b.read_until("</iq>").find("<forbidden"), std::string::npos);
    // No card, or no such account: one answer for both.
    b.send("<iq type='get' id='n1' to='carol@localhost'><vCard xmlns='vcard-temp'/></iq>");
    EXPECT_NE(b.read_until("</iq>").find("<item-not-found"), std::string::npos);
    a.send("<iq type='get' id='n2' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>");
    EXPECT_NE(a.read_until("</iq>").find("<item-not-found"), std::string::npos);
}

TEST(VcardModule, SizeLimitAtTheLimitAndOnePast) {
    const std::string fits_inner = "<FN>" + std::string(100, 'x') + "</FN>";
    const std::string exact = serialized(vcard_set("x", fits_inner));
    VcardShard t(exact.size());
    t.shard.add_user("big@localhost", "pw");
    TestClient c(t.shard.port);
    c.login("big", "pw");
    c.send(vcard_set("at", fits_inner));
    EXPECT_NE(c.read_until("id='at'").find("type='result'"), std::string::npos);
    c.send(vcard_set("past", "<FN>" + std::string(101, 'y') + "</FN>"));
    const auto refused = c.read_until("</iq>");
    EXPECT_NE(refused.find("<not-acceptable"), std::string::npos) << refused;
    c.send("<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>");
    EXPECT_NE(c.read_until("</iq>").find(std::string(100, 'x')), std::string::npos);  // unchanged
}

TEST(VcardModule, EmptySetClearsTheCard) {
    VcardShard t(64 * 1024);
    t.shard.add_user("alice@localhost", "pw");
    TestClient c(t.shard.port);
    c.login("alice", "pw");
    c.send(vcard_set("s1", "<FN>Alice</FN>"));
    c.read_until("id='s1'");
    c.send("<iq type='set' id='s2'><vCard xmlns='vcard-temp'/></iq>");
    EXPECT_NE(c.read_until("id='s2'").find("type='result'"), std::string::npos);
    EXPECT_FALSE(VcardStore(*t.shard.store).get("alice@localhost"));
}

}  // namespace
