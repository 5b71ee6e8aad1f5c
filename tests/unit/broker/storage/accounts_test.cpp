#include "broker/src/storage/accounts.hpp"

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

using starling::storage::AccountRecord;
using starling::storage::AccountStore;
using starling::storage::Errc;
using starling::storage::Store;
using starling::storage::StoreError;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

AccountRecord sample(std::uint32_t iterations = 4096) {
    AccountRecord r;
    r.sha256 = {iterations, std::string("salt\0salt", 9), std::string(32, '\x01'), std::string(32, '\x02')};
    r.sha1 = {iterations, "s1", std::string(20, '\x03'), std::string(20, '\x04')};
    r.created_unix_ms = 1700000000000;
    return r;
}

TEST(AccountStore, PutGetRemoveRoundTrip) {
    TempDir dir;
    auto store = Store::open(dir.str());
    AccountStore accounts(*store);
    ASSERT_TRUE(accounts.put("juliet@example.com", sample()));
    auto got = accounts.get("juliet@example.com");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->sha256.iterations, 4096u);
    EXPECT_EQ(got->sha256.salt, std::string("salt\0salt", 9));
    EXPECT_EQ(got->sha256.stored_key, std::string(32, '\x01'));
    EXPECT_EQ(got->sha1.server_key, std::string(20, '\x04'));
    EXPECT_EQ(got->created_unix_ms, 1700000000000);
    EXPECT_FALSE(got->disabled);
    auto missing = accounts.get("romeo@example.com");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), Errc::not_found);
    EXPECT_TRUE(*accounts.remove("juliet@example.com"));
    EXPECT_FALSE(*accounts.remove("juliet@example.com"));
    EXPECT_FALSE(*accounts.exists("juliet@example.com"));
}

TEST(AccountStore, PurgeDeletesTheAccountsRecordsAndNoOneElses) {
    using starling::storage::Column;
    TempDir dir;
    auto store = Store::open(dir.str());
    AccountStore accounts(*store);
    auto& db = store->db();
    const auto put = [&](Column c, std::string key) {
        ASSERT_TRUE(db.Put(rocksdb::WriteOptions(), store->column(c), key, "v").ok());
    };
    const std::string nul(1, '\0');
    // Hers: keyed by her bare JID, or her bare JID NUL something; her PEP owner-index entry.
    put(Column::rosters, "al@x" + nul + "bob@x");
    put(Column::mam, "al@x" + nul + "12345678");
    put(Column::vcards, "al@x");
    put(Column::meta, "al@x" + nul + "fast");
    put(Column::pubsub_items, "al@x" + nul + "urn:tune" + nul + "00000001");
    put(Column::pubsub_nodes, "\x01" "al@x" + nul + "al@x" + nul + "urn:tune");
    // Not hers: a longer JID with her name as a prefix, another account's record that names
    // her, and a node of the domain's service she owns (it stays, with its owner index).
    put(Column::vcards, "al@x.org");
    put(Column::rosters, "al@x.org" + nul + "bob@x");
    put(Column::rosters, "bob@x" + nul + "al@x");
    put(Column::pubsub_nodes, "pubsub.x" + nul + "feed" + nul + "n");
    put(Column::pubsub_nodes, "\x01" "al@x" + nul + "pubsub.x" + nul + "feed");
    auto purged = accounts.purge_data("al@x");
    ASSERT_TRUE(purged);
    EXPECT_EQ(*purged, 6u);
    const auto has = [&](Column c, const std::string& key) {
        std::string v;
        return db.Get(rocksdb::ReadOptions(), store->column(c), key, &v).ok();
    };
    EXPECT_FALSE(has(Column::rosters, "al@x" + nul + "bob@x"));
    EXPECT_FALSE(has(Column::vcards, "al@x"));
    EXPECT_FALSE(has(Column::pubsub_nodes, "\x01" "al@x" + nul + "al@x" + nul + "urn:tune"));
    EXPECT_TRUE(has(Column::vcards, "al@x.org"));
    EXPECT_TRUE(has(Column::rosters, "al@x.org" + nul + "bob@x"));
    EXPECT_TRUE(has(Column::rosters, "bob@x" + nul + "al@x"));
    EXPECT_TRUE(has(Column::pubsub_nodes, "pubsub.x" + nul + "feed" + nul + "n"));
    EXPECT_TRUE(has(Column::pubsub_nodes, "\x01" "al@x" + nul + "pubsub.x" + nul + "feed"));
    EXPECT_EQ(*accounts.purge_data("al@x"), 0u);
}

// The login path's read (c2s/session_reads.cpp): decoded like get(), inline from the memtable,
// and through the reader thread (posted back) once the record is only in an SST and no cache.
TEST(AccountStore, GetAsyncReadsLikeGetInlineFromMemoryAndFromDiskOffTheCaller) {
    TempDir dir;
    starling::storage::StoreOptions so;
    so.block_cache_bytes = 1;  // nothing stays cached: the SST read below must go to the file
    auto store = Store::open(dir.str(), so);
    AccountStore accounts(*store);
    ASSERT_TRUE(accounts.put("juliet@example.com", sample()));
    starling::storage::Committer committer(*store);
    committer.start();
    asio::io_context io;
    using Loaded = xmpp::Result<AccountRecord, Errc>;
    std::optional<Loaded> hot, missing, cold;
    {
        starling::storage::ShardWriter writer(io, 0, committer);
        AccountStore::get_async(writer, "juliet@example.com", [&](Loaded r) { hot = std::move(r); });
        ASSERT_TRUE(hot) << "a record in the memtable is answered inline";
        ASSERT_TRUE(*hot);
        EXPECT_EQ((*hot)->sha256.stored_key, std::string(32, '\x01'));
        EXPECT_EQ(writer.counters().reads_inline, 1u);

        rocksdb::FlushOptions fo;
        fo.wait = true;
        ASSERT_TRUE(store->db().Flush(fo, store->column(starling::storage::Column::accounts)).ok());
        AccountStore::get_async(writer, "juliet@example.com", [&](Loaded r) { cold = std::move(r); });
        EXPECT_FALSE(cold) << "a record only on disk is not read on the caller's thread";
        AccountStore::get_async(writer, "romeo@example.com", [&](Loaded r) { missing = std::move(r); });
        for (int i = 0; i < 500 && !(cold && missing); ++i) {
            // The answer is posted from the reader thread: the io_context may be idle until then.
            io.restart();
            io.poll();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ASSERT_TRUE(cold);
        ASSERT_TRUE(*cold);
        EXPECT_EQ((*cold)->sha1.server_key, std::string(20, '\x04'));
        EXPECT_EQ((*cold)->created_unix_ms, 1700000000000);
        ASSERT_TRUE(missing);
        ASSERT_FALSE(*missing);
        EXPECT_EQ(missing->error(), Errc::not_found);
        EXPECT_GE(writer.counters().reads_offloaded, 1u);
    }
    committer.stop();
}

TEST(AccountStore, SurvivesReopen) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        AccountStore accounts(*store);
        ASSERT_TRUE(accounts.put("a@example.com", sample()));
    }
    auto store = Store::open(dir.str());
    AccountStore accounts(*store);
    EXPECT_TRUE(*accounts.exists("a@example.com"));
}

TEST(AccountStore, ListsInKeyOrderWithPaging) {
    TempDir dir;
    auto store = Store::open(dir.str());
    AccountStore accounts(*store);
    std::vector<std::pair<std::string, AccountRecord>> many;
    for (int i = 0; i < 25; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "dev%03d@example.com", i);
        many.emplace_back(name, sample());
    }
    ASSERT_TRUE(accounts.put_many(many));
    auto first = accounts.list("", 10);
    ASSERT_TRUE(first);
    ASSERT_EQ(first->size(), 10u);
    EXPECT_EQ(first->front(), "dev000@example.com");
    auto second = accounts.list(first->back(), 100);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->size(), 15u);
    EXPECT_EQ(second->front(), "dev010@example.com");
}

TEST(AccountStore, RejectsCorruptRecords) {
    auto bad = AccountStore::decode("not a flatbuffer");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), Errc::corrupt);
    auto ok = AccountStore::decode(AccountStore::encode(sample()));
    ASSERT_TRUE(ok);
}

TEST(Store, SecondOpenOfTheSameDirectoryIsAClearError) {
    TempDir dir;
    auto store = Store::open(dir.str());
    try {
        auto again = Store::open(dir.str());
        FAIL() << "a second open must fail while the first holds the lock";
    } catch (const StoreError& e) {
        EXPECT_NE(std::string(e.what()).find("is starlingd running"), std::string::npos) << e.what();
    }
}

}  // namespace
