#include "broker/src/modules/blocking/blocklist.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "broker/src/storage/store.hpp"

namespace {

using starling::modules::blocking::BlockList;
using starling::modules::blocking::BlockStore;
using starling::storage::Store;

TEST(BlockList, MatchesJidFormsAsXep0191Section6) {
    struct Row {
        const char* item;
        const char* jid;
        bool blocked;
    };
    const Row rows[] = {
        // 1. user@domain/resource: only that resource.
        {"romeo@montague.lit/orchard", "romeo@montague.lit/orchard", true},
        {"romeo@montague.lit/orchard", "romeo@montague.lit/balcony", false},
        {"romeo@montague.lit/orchard", "romeo@montague.lit", false},
        // 2. user@domain: any resource, and the bare JID.
        {"romeo@montague.lit", "romeo@montague.lit/orchard", true},
        {"romeo@montague.lit", "romeo@montague.lit", true},
        {"romeo@montague.lit", "mercutio@montague.lit/x", false},
        {"romeo@montague.lit", "romeo@montague.litx/x", false},
        {"romeo@montague.lit", "montague.lit", false},
        // 3. domain/resource: only that resource.
        {"montague.lit/bot", "montague.lit/bot", true},
        {"montague.lit/bot", "montague.lit/other", false},
        {"montague.lit/bot", "montague.lit", false},
        {"montague.lit/bot", "romeo@montague.lit/bot", true},
        // 4. domain: the domain, its users, its resources, its subdomains.
        {"montague.lit", "montague.lit", true},
        {"montague.lit", "montague.lit/x", true},
        {"montague.lit", "romeo@montague.lit", true},
        {"montague.lit", "romeo@montague.lit/orchard", true},
        {"montague.lit", "muc.montague.lit", true},
        {"montague.lit", "room@muc.montague.lit/nick", true},
        {"montague.lit", "capulet.lit", false},
        {"montague.lit", "xmontague.lit", false},
        {"montague.lit", "montague.lit.evil", false},
    };
    for (const auto& r : rows) {
        BlockList l;
        l.add(r.item);
        EXPECT_EQ(l.blocks(r.jid), r.blocked) << r.item << " vs " << r.jid;
    }
    EXPECT_FALSE(BlockList{}.blocks("romeo@montague.lit"));
}

TEST(BlockList, AddRemoveAreSetOperations) {
    BlockList l;
    EXPECT_TRUE(l.add("a@b"));
    EXPECT_FALSE(l.add("a@b"));
    EXPECT_TRUE(l.add("c"));
    EXPECT_EQ(l.size(), 2u);
    EXPECT_TRUE(l.remove("a@b"));
    EXPECT_FALSE(l.remove("a@b"));
    EXPECT_EQ(l.size(), 1u);
    l.clear();
    EXPECT_TRUE(l.empty());
}

TEST(BlockList, RecordRoundTripsAndGarbageIsCorrupt) {
    BlockList l;
    l.add("iago@shakespeare.lit");
    l.add("romeo@montague.lit/orchard");
    l.add("montague.lit");
    auto back = BlockList::decode(BlockList::encode(l));
    ASSERT_TRUE(back);
    EXPECT_EQ(back.value().items(), l.items());
    EXPECT_FALSE(BlockList::decode("xx"));
}

TEST(BlockStore, SavesLoadsAndDeletesWhenEmpty) {
    std::random_device rd;
    const auto dir = std::filesystem::temp_directory_path() / ("starling-blocking-test-" + std::to_string(rd()));
    std::filesystem::create_directories(dir);
    {
        auto store = Store::open(dir.string());
        BlockStore db(*store);
        auto none = db.load("juliet@capulet.lit");
        ASSERT_TRUE(none);
        EXPECT_TRUE(none.value().empty());
        BlockList l;
        l.add("romeo@montague.lit");
        ASSERT_TRUE(db.save("juliet@capulet.lit", l));
    }
    {
        auto store = Store::open(dir.string());
        BlockStore db(*store);
        auto got = db.load("juliet@capulet.lit");
        ASSERT_TRUE(got);
        EXPECT_TRUE(got.value().contains("romeo@montague.lit"));
        ASSERT_TRUE(db.save("juliet@capulet.lit", BlockList{}));
        auto gone = db.load("juliet@capulet.lit");
        ASSERT_TRUE(gone);
        EXPECT_TRUE(gone.value().empty());
    }
    std::filesystem::remove_all(dir);
}

}  // namespace
