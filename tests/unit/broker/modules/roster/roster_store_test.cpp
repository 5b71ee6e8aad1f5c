#include "broker/src/modules/roster/roster_store.hpp"

#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "broker/src/storage/store.hpp"

namespace starling::modules::roster {
namespace {

class RosterStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        _dir = std::filesystem::temp_directory_path() / ("roster-store-" + std::to_string(std::random_device{}()));
        _store = storage::Store::open(_dir.string(), {.sync_writes = false});
    }
    void TearDown() override {
        _store.reset();
        std::filesystem::remove_all(_dir);
    }
    std::filesystem::path _dir;
    std::unique_ptr<storage::Store> _store;
};

RosterItem item(std::string jid, Sub sub = Sub::none) {
    RosterItem i;
    i.jid = std::move(jid);
    i.sub = sub;
    i.in_roster = true;
    return i;
}

TEST_F(RosterStoreTest, SavesLoadsAndBumpsTheVersionOnlyWhenAsked) {
    RosterStore rs(*_store);
    EXPECT_EQ(rs.version("a@x"), 0u);
    EXPECT_EQ(rs.save("a@x", item("b@x", Sub::both), true), 1u);
    EXPECT_EQ(rs.save("a@x", item("c@x"), false), 1u);
    EXPECT_EQ(rs.save("a@x", item("d@x"), true), 2u);
    EXPECT_EQ(rs.version("a@x"), 2u);
    auto b = rs.load("a@x", "b@x");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->sub, Sub::both);
    EXPECT_FALSE(rs.load("a@x", "zz@x"));
    EXPECT_EQ(rs.load_all("a@x").size(), 3u);
}

TEST_F(RosterStoreTest, OwnersAreSeparateRangesEvenWhenOneJidPrefixesAnother) {
    RosterStore rs(*_store);
    rs.save("a@x", item("b@x"), true);
    rs.save("a@x.y", item("c@x"), true);
    rs.save("a@xy", item("d@x"), true);
    const auto all = rs.load_all("a@x");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].jid, "b@x");
    EXPECT_EQ(rs.version("a@x"), 1u);
}

TEST_F(RosterStoreTest, EraseAndEmptyItemsDeleteTheRecord) {
    RosterStore rs(*_store);
    rs.save("a@x", item("b@x"), true);
    EXPECT_EQ(rs.erase("a@x", "b@x"), 2u);
    EXPECT_TRUE(rs.load_all("a@x").empty());
    RosterItem hidden;
    hidden.jid = "c@x";
    hidden.pending_in = true;  // a lone Pending In is stored, not visible
    rs.save("a@x", hidden, false);
    EXPECT_EQ(rs.load_all("a@x").size(), 1u);
    hidden.pending_in = false;
    rs.save("a@x", hidden, false);
    EXPECT_TRUE(rs.load_all("a@x").empty());
}

}  // namespace
}  // namespace starling::modules::roster
