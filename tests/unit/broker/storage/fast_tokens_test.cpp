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
#include "tests/support/faulty_fs.hpp"

namespace {

using starling::storage::Errc;
using starling::storage::FastToken;
using starling::storage::FastTokenStore;
using starling::storage::Store;
using namespace std::chrono_literals;

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

// A shard's write of an account's tokens (c2s/session_sasl2.cpp): through the write path, on a
// store whose WAL can be made slow or failing (tests/support/faulty_fs.hpp).
struct FastWriteShard {
    TempDir dir;
    std::shared_ptr<starling::test::FaultyFileSystem> fs = std::make_shared<starling::test::FaultyFileSystem>();
    std::unique_ptr<Store> store;
    std::unique_ptr<starling::storage::Committer> committer;
    asio::io_context io;
    std::unique_ptr<starling::storage::ShardWriter> writer;

    FastWriteShard() {
        starling::storage::StoreOptions so;
        so.file_system = fs;
        store = Store::open(dir.str(), so);
        committer = std::make_unique<starling::storage::Committer>(*store);
        committer->start();
        writer = std::make_unique<starling::storage::ShardWriter>(io, 0, *committer);
    }
    ~FastWriteShard() {
        fs->heal();
        writer.reset();
        committer->stop();
    }
    // Runs the shard's handlers until `done` says so or `limit` passed; true when done.
    template <class Done>
    bool run_until(Done done, std::chrono::milliseconds limit = 5s) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < until) {
            io.restart();
            io.run_for(5ms);
        }
        return done();
    }
};

// What the login waits for before it hands out a token: the record fsynced, not only staged.
TEST(FastTokenStore, PutAsyncCompletesOnceTheRecordIsSyncedNotBefore) {
    FastWriteShard t;
    using Done = xmpp::Result<void, Errc>;
    constexpr auto latency = 300ms;  // per WAL append and per WAL sync
    t.fs->set_wal_latency(latency);
    const auto syncs_before = t.fs->wal_syncs();
    std::optional<Done> stored;
    const auto asked = std::chrono::steady_clock::now();
    FastTokenStore::put_async(*t.writer, "a@example.com", {token('a', "ua", 1)},
                              starling::storage::Durability::synced, [&](Done r) { stored = r; });
    const auto staging = std::chrono::steady_clock::now() - asked;
    EXPECT_FALSE(stored) << "ran inline, before the write was committed";
    EXPECT_LT(staging, latency / 3) << "the caller waited for the disk";
    // The shard reads its own write at once (the overlay); RocksDB does not have it yet.
    auto staged = t.writer->get(starling::storage::Column::meta, FastTokenStore::key_of("a@example.com"));
    ASSERT_TRUE(staged);
    EXPECT_TRUE(staged->has_value());
    EXPECT_TRUE(FastTokenStore(*t.store).get("a@example.com")->empty());

    ASSERT_TRUE(t.run_until([&] { return stored.has_value(); }));
    EXPECT_TRUE(*stored) << starling::storage::to_string(stored->error());
    EXPECT_GE(std::chrono::steady_clock::now() - asked, latency) << "completed before the WAL was written";
    EXPECT_GT(t.fs->wal_syncs(), syncs_before);
    auto got = FastTokenStore(*t.store).get("a@example.com");
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, (std::vector<FastToken>{token('a', "ua", 1)}));

    // No tokens left: the record is deleted, through the same path.
    t.fs->set_wal_latency(0ms);
    stored.reset();
    FastTokenStore::put_async(*t.writer, "a@example.com", {}, starling::storage::Durability::logged,
                              [&](Done r) { stored = r; });
    ASSERT_TRUE(t.run_until([&] { return stored.has_value(); }));
    EXPECT_TRUE(*stored);
    EXPECT_TRUE(FastTokenStore(*t.store).get("a@example.com")->empty());
}

TEST(FastTokenStore, PutAsyncReportsAFailedCommitAndStoresNothing) {
    FastWriteShard t;
    using Done = xmpp::Result<void, Errc>;
    t.fs->fail_writes(starling::test::Fault::io_error, starling::test::Files::wal);
    std::optional<Done> stored;
    FastTokenStore::put_async(*t.writer, "a@example.com", {token('a', "ua", 1)},
                              starling::storage::Durability::logged, [&](Done r) { stored = r; });
    ASSERT_TRUE(t.run_until([&] { return stored.has_value(); }));
    EXPECT_FALSE(*stored) << "a write that failed was reported stored";
    // The failed write left the overlay: the shard reads what RocksDB has, nothing.
    auto seen = t.writer->get(starling::storage::Column::meta, FastTokenStore::key_of("a@example.com"));
    ASSERT_TRUE(seen);
    EXPECT_FALSE(seen->has_value());
}

// The cleanup of expired tokens after a failed login: staged, nobody waits, committed anyway.
TEST(FastTokenStore, StageWritesWithoutWaitingAndIsCommittedWithTheTurn) {
    FastWriteShard t;
    FastTokenStore s(*t.store);
    ASSERT_TRUE(s.put("a@example.com", {token('a', "ua", 1, 10), token('b', "ub", 1)}, true));
    ASSERT_TRUE(FastTokenStore::stage(*t.writer, "a@example.com", {token('b', "ub", 1)},
                                      starling::storage::Durability::logged));
    ASSERT_TRUE(t.run_until([&] { return s.get("a@example.com")->size() == 1; }));
    EXPECT_EQ(*s.get("a@example.com"), (std::vector<FastToken>{token('b', "ub", 1)}));
}

}  // namespace
