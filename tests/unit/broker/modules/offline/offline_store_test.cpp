#include "broker/src/modules/offline/offline_store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "broker/src/storage/store.hpp"

namespace {

using starling::modules::offline::OfflineRecord;
using starling::modules::offline::OfflineStore;
using starling::storage::Errc;
using starling::storage::Store;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-offline-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

OfflineRecord rec(std::uint64_t seq, std::string stanza, std::int64_t ms = 1000) {
    OfflineRecord r;
    r.seq = seq;
    r.stanza = std::move(stanza);
    r.received_unix_ms = ms;
    return r;
}

TEST(OfflineStore, KeysSortOldestFirstAndPrefixesDoNotOverlap) {
    EXPECT_LT(OfflineStore::key("a@x", 1), OfflineStore::key("a@x", 2));
    EXPECT_LT(OfflineStore::key("a@x", 255), OfflineStore::key("a@x", 256));
    EXPECT_LT(OfflineStore::key("a@x", 0xffffffffffffffffULL), OfflineStore::key("a@xy", 0));
    EXPECT_EQ(OfflineStore::key("a@x", 1).size(), 3u + 1u + 8u);
    EXPECT_EQ(OfflineStore::key("a@x", 1).rfind(OfflineStore::prefix("a@x"), 0), 0u);
}

TEST(OfflineStore, RecordRoundTripsAndGarbageIsCorrupt) {
    const auto r = rec(7, "<message><body>h\xc3\xa9</body></message>", 1'700'000'000'123);
    auto back = OfflineStore::decode(OfflineStore::encode(r));
    ASSERT_TRUE(back);
    EXPECT_EQ(back.value().stanza, r.stanza);
    EXPECT_EQ(back.value().received_unix_ms, r.received_unix_ms);
    auto bad = OfflineStore::decode("not a flatbuffer");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), Errc::corrupt);
}

TEST(OfflineStore, AppendsReadsOldestFirstAndErases) {
    TempDir dir;
    auto store = Store::open(dir.str());
    OfflineStore db(*store);
    auto empty = db.state("juliet@capulet.lit");
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty.value().count, 0u);
    EXPECT_EQ(empty.value().next_seq, 1u);

    for (std::uint64_t i = 1; i <= 300; ++i) ASSERT_TRUE(db.append("juliet@capulet.lit", rec(i, "m" + std::to_string(i))));
    ASSERT_TRUE(db.append("juliet@capulet.litx", rec(1, "other user")));  // a longer JID, same prefix bytes
    ASSERT_TRUE(db.append("juliet@capulet.li", rec(1, "another")));

    auto st = db.state("juliet@capulet.lit");
    ASSERT_TRUE(st);
    EXPECT_EQ(st.value().count, 300u);
    EXPECT_EQ(st.value().next_seq, 301u);

    auto first = db.oldest("juliet@capulet.lit", 1000, 1u << 20);
    ASSERT_TRUE(first);
    ASSERT_EQ(first.value().size(), 300u);
    for (std::size_t i = 0; i < 300; ++i) {
        EXPECT_EQ(first.value()[i].seq, i + 1);
        EXPECT_EQ(first.value()[i].stanza, "m" + std::to_string(i + 1));
    }
    // Bounded by count, and by bytes (stopping after the message that reaches the budget).
    auto few = db.oldest("juliet@capulet.lit", 3, 1u << 20);
    ASSERT_TRUE(few);
    EXPECT_EQ(few.value().size(), 3u);
    auto small = db.oldest("juliet@capulet.lit", 1000, 5);
    ASSERT_TRUE(small);
    EXPECT_EQ(small.value().size(), 3u);  // "m1" + "m2" = 4 bytes < 5, "m3" reaches 6

    ASSERT_TRUE(db.erase("juliet@capulet.lit", {1, 2, 3}));
    auto after = db.state("juliet@capulet.lit");
    ASSERT_TRUE(after);
    EXPECT_EQ(after.value().count, 297u);
    EXPECT_EQ(after.value().next_seq, 301u);
    auto next = db.oldest("juliet@capulet.lit", 1, 1u << 20);
    ASSERT_TRUE(next);
    ASSERT_EQ(next.value().size(), 1u);
    EXPECT_EQ(next.value()[0].seq, 4u);

    auto other = db.oldest("juliet@capulet.litx", 10, 1u << 20);
    ASSERT_TRUE(other);
    ASSERT_EQ(other.value().size(), 1u);
    EXPECT_EQ(other.value()[0].stanza, "other user");
}

TEST(OfflineStore, SurvivesReopen) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        OfflineStore db(*store);
        ASSERT_TRUE(db.append("romeo@montague.lit", rec(41, "<message/>", 5)));
        ASSERT_TRUE(db.append("romeo@montague.lit", rec(42, "<message><body>2</body></message>", 6)));
    }
    auto store = Store::open(dir.str());
    OfflineStore db(*store);
    auto st = db.state("romeo@montague.lit");
    ASSERT_TRUE(st);
    EXPECT_EQ(st.value().count, 2u);
    EXPECT_EQ(st.value().next_seq, 43u);
    auto all = db.oldest("romeo@montague.lit", 10, 1u << 20);
    ASSERT_TRUE(all);
    ASSERT_EQ(all.value().size(), 2u);
    EXPECT_EQ(all.value()[0].received_unix_ms, 5);
    EXPECT_EQ(all.value()[1].stanza, "<message><body>2</body></message>");
}

}  // namespace
