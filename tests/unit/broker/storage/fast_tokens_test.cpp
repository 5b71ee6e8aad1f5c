#include "broker/src/storage/fast_tokens.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include <asio/io_context.hpp>
#include <rocksdb/db.h>

#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"

namespace {

using starling::storage::Errc;
using starling::storage::FastToken;
using starling::storage::FastTokenStore;
using starling::storage::Store;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-fast-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

FastToken token(char key, std::string ua, std::int64_t issued, std::int64_t expiry = 1'000'000) {
    FastToken t;
    t.key = std::string(32, key);
    t.user_agent = std::move(ua);
    t.mechanism = "HT-SHA-256-NONE";
    t.issued_unix_s = issued;
    t.expiry_unix_s = expiry;
    return t;
}

TEST(FastTokens, ExpiredTokensAreDroppedAtTheirExpiryNotBefore) {
    std::vector<FastToken> v{token('a', "ua", 1, 100), token('b', "ua2", 1, 101)};
    EXPECT_FALSE(starling::storage::drop_expired(v, 99));
    EXPECT_EQ(v.size(), 2u);
    EXPECT_TRUE(starling::storage::drop_expired(v, 100));
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key[0], 'b');
}

TEST(FastTokens, AnAccountKeepsAtMostItsBoundOldestFirstOut) {
    std::vector<FastToken> v;
    for (int i = 0; i < 4; ++i) starling::storage::add_token(v, token(static_cast<char>('a' + i), "ua" + std::to_string(i), i), 3);
    ASSERT_EQ(v.size(), 3u);  // at the limit: the oldest (a) went
    for (const auto& t : v) EXPECT_NE(t.key[0], 'a');
    starling::storage::add_token(v, token('z', "other", 10), 1);  // limit 1: only the fresh one
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key[0], 'z');
}

TEST(FastTokens, RotationKeepsOnePreviousTokenPerClientUntilTheNewOneIsUsed) {
    std::vector<FastToken> v;
    starling::storage::add_token(v, token('a', "ua", 1), 8);
    starling::storage::add_token(v, token('b', "ua", 2), 8);
    EXPECT_EQ(v.size(), 2u);  // a is kept: the client may not have seen b
    starling::storage::add_token(v, token('c', "ua", 3), 8);
    ASSERT_EQ(v.size(), 2u);  // a goes, b and c stay
    EXPECT_EQ(v[0].key[0], 'b');
    EXPECT_EQ(v[1].key[0], 'c');
    starling::storage::forget_superseded(v, v[1]);  // c was used: b is gone
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key[0], 'c');
}

TEST(FastTokens, OtherClientsTokensSurviveRotation) {
    std::vector<FastToken> v;
    starling::storage::add_token(v, token('a', "ua1", 1), 8);
    starling::storage::add_token(v, token('b', "ua2", 2), 8);
    starling::storage::add_token(v, token('c', "ua2", 3), 8);
    starling::storage::forget_superseded(v, v.back());
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].key[0], 'a');
}

TEST(FastTokenStore, RecordsRoundTripAndCorruptionIsReported) {
    std::vector<FastToken> v{token('a', "ua", 5, 50), token('b', "", 6, 60)};
    v[0].count = 7;
    auto back = FastTokenStore::decode(FastTokenStore::encode(v));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, v);
    const std::string bytes = FastTokenStore::encode(v);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        auto r = FastTokenStore::decode(std::string_view(bytes).substr(0, cut));
        ASSERT_FALSE(r) << cut;
        EXPECT_EQ(r.error(), Errc::corrupt);
    }
    EXPECT_FALSE(FastTokenStore::decode(bytes + "x"));
}

TEST(FastTokenStore, StoresPerAccountAndRevokesThemAll) {
    TempDir dir;
    auto store = Store::open(dir.str());
    FastTokenStore s(*store);
    auto none = s.get("a@example.com");
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
    ASSERT_TRUE(s.put("a@example.com", {token('a', "ua", 1), token('b', "ub", 2)}, true));
    ASSERT_TRUE(s.put("b@example.com", {token('c', "ua", 1)}, false));
    auto got = s.get("a@example.com");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size(), 2u);
    auto n = s.revoke("a@example.com");
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 2u);
    EXPECT_TRUE(s.get("a@example.com")->empty());
    EXPECT_EQ(s.get("b@example.com")->size(), 1u);  // another account's are untouched
    EXPECT_EQ(*s.revoke("a@example.com"), 0u);
}

// The login path's read (c2s/session_reads.cpp): what get() says, from memory inline, from an
// SST through the reader thread; no record is no tokens.
TEST(FastTokenStore, GetAsyncReadsLikeGet) {
    TempDir dir;
    starling::storage::StoreOptions so;
    so.block_cache_bytes = 1;
    auto store = Store::open(dir.str(), so);
    FastTokenStore s(*store);
    ASSERT_TRUE(s.put("a@example.com", {token('a', "ua", 1), token('b', "ub", 2)}, true));
    starling::storage::Committer committer(*store);
    committer.start();
    asio::io_context io;
    using Loaded = xmpp::Result<std::vector<FastToken>, Errc>;
    std::optional<Loaded> hot, cold, none;
    {
        starling::storage::ShardWriter writer(io, 0, committer);
        FastTokenStore::get_async(writer, "a@example.com", [&](Loaded r) { hot = std::move(r); });
        ASSERT_TRUE(hot && *hot);
        EXPECT_EQ(**hot, *s.get("a@example.com"));
        rocksdb::FlushOptions fo;
        fo.wait = true;
        ASSERT_TRUE(store->db().Flush(fo, store->column(starling::storage::Column::meta)).ok());
        FastTokenStore::get_async(writer, "a@example.com", [&](Loaded r) { cold = std::move(r); });
        FastTokenStore::get_async(writer, "b@example.com", [&](Loaded r) { none = std::move(r); });
        for (int i = 0; i < 500 && !(cold && none); ++i) {
            // The answer is posted from the reader thread: the io_context may be idle until then.
            io.restart();
            io.poll();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ASSERT_TRUE(cold);
        ASSERT_TRUE(*cold) << starling::storage::to_string(cold->error());
        EXPECT_EQ(**cold, *s.get("a@example.com"));
        ASSERT_TRUE(none && *none);
        EXPECT_TRUE((*none)->empty());
    }
    committer.stop();
}

}  // namespace
