// Silent accounts: the localpart prefix (table) and the stored flag (set, read, cleared).
#include "broker/src/modules/presence/silent.hpp"

#include <gtest/gtest.h>

#include "broker/src/storage/store.hpp"
#include "tests/unit/broker/support/live_shard.hpp"

namespace {

using starling::modules::presence::has_silent_prefix;
using starling::modules::presence::set_silent;
using starling::modules::presence::stored_silent;

TEST(SilentPrefix, MatchesTheLocalpartOnly) {
    struct Row {
        const char* bare;
        const char* prefix;
        bool want;
    };
    const Row rows[] = {
        {"dev-42@localhost", "dev-", true},  {"dev-@localhost", "dev-", true},
        {"dev@localhost", "dev-", false},    {"operator@dev-localhost", "dev-", false},
        {"dev-42@localhost", "", false},     {"localhost", "local", false},
        {"Dev-42@localhost", "dev-", false},
    };
    for (const auto& r : rows) EXPECT_EQ(has_silent_prefix(r.bare, r.prefix), r.want) << r.bare << " " << r.prefix;
}

TEST(SilentFlag, IsStoredPerAccountAndCleared) {
    starling::testing::TempDir dir;
    auto store = starling::storage::Store::open(dir.str());
    EXPECT_FALSE(stored_silent(*store, "dev@localhost"));
    ASSERT_TRUE(set_silent(*store, "dev@localhost", true));
    EXPECT_TRUE(stored_silent(*store, "dev@localhost"));
    EXPECT_FALSE(stored_silent(*store, "dev@localhost2"));
    EXPECT_FALSE(stored_silent(*store, "de@localhost"));
    ASSERT_TRUE(set_silent(*store, "dev@localhost", false));
    EXPECT_FALSE(stored_silent(*store, "dev@localhost"));
    ASSERT_TRUE(set_silent(*store, "dev@localhost", false));  // clearing twice is fine
}

}  // namespace
