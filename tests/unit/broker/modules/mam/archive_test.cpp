#include "broker/src/modules/mam/archive.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <rocksdb/db.h>

#include "broker/src/storage/rocks.hpp"
#include "broker/src/storage/store.hpp"
#include "broker/src/storage/write_path.hpp"
#include "tests/support/faulty_fs.hpp"

namespace {

namespace mam = starling::modules::mam;
using starling::storage::Column;
using starling::storage::Committer;
using starling::storage::Errc;
using starling::storage::ShardWriter;
using starling::storage::Store;
using starling::storage::StoreOptions;

class TempDir {
public:
    TempDir() {
        std::random_device rd;
        _path = std::filesystem::temp_directory_path() / ("starling-mam-test-" + std::to_string(rd()));
        std::filesystem::create_directories(_path);
    }
    ~TempDir() { std::filesystem::remove_all(_path); }
    std::string str() const { return _path.string(); }

private:
    std::filesystem::path _path;
};

mam::ArchivedMessage msg(std::uint64_t id, std::string with, std::string body, bool sent = false) {
    mam::ArchivedMessage m;
    m.id = id;
    m.stamp_us = static_cast<std::int64_t>(id);
    m.with = std::move(with);
    m.sent = sent;
    m.stanza = "<message><body>" + body + "</body></message>";
    return m;
}

std::vector<std::uint64_t> ids_of(const mam::MessageArchive& a, std::string_view bare, std::uint64_t lo = 0,
                                  std::uint64_t hi = UINT64_MAX) {
    std::vector<std::uint64_t> out;
    auto r = a.scan(bare, lo, hi, [&](std::uint64_t id, std::string_view) {
        out.push_back(id);
        return true;
    });
    EXPECT_TRUE(r);
    return out;
}

TEST(IdCodec, RoundTripsAndIsOpaque) {
    const mam::IdCodec codec("secret");
    const std::uint64_t samples[] = {0, 1, 2, 0x0123456789abcdefULL, 1'764'000'000'000'000ULL,
                                     1'764'000'000'000'001ULL, UINT64_MAX};
    for (auto id : samples) {
        const auto text = codec.format(id);
        ASSERT_EQ(text.size(), 16u);
        EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), std::string::npos) << text;
        EXPECT_EQ(codec.parse(text), id) << text;
    }
    // Neighbouring ids (one microsecond apart) look unrelated; the same id under another
    // secret is another text; the same secret gives the same text (stable across restarts).
    const auto a = codec.format(1'764'000'000'000'000ULL);
    const auto b = codec.format(1'764'000'000'000'001ULL);
    int same = 0;
    for (std::size_t i = 0; i < 16; ++i) same += a[i] == b[i];
    EXPECT_LT(same, 8) << a << " " << b;
    EXPECT_NE(mam::IdCodec("other").format(1), codec.format(1));
    EXPECT_EQ(mam::IdCodec("secret").format(12345), codec.format(12345));
    for (const char* bad : {"", "123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0"}) {
        EXPECT_FALSE(codec.parse(bad).has_value()) << bad;
    }
}

TEST(ArchiveKey, OneUsersKeysAreOneRangeInIdOrder) {
    // "a@x" must not be a prefix-range neighbour of "a@x.y": the NUL ends the JID.
    EXPECT_LT(mam::archive_key("a@x", UINT64_MAX), mam::archive_key("a@x.y", 0));
    EXPECT_LT(mam::archive_key("a@x", 255), mam::archive_key("a@x", 256));
    EXPECT_EQ(mam::archive_key("a@x", 1).size(), 3u + 9u);
}

TEST(MessageArchive, NextIdIsStrictlyIncreasing) {
    mam::MessageArchive a(nullptr);
    EXPECT_EQ(a.next_id(1000), 1000u);
    EXPECT_EQ(a.next_id(1000), 1001u);  // same microsecond
    EXPECT_EQ(a.next_id(500), 1002u);   // clock went back
    EXPECT_EQ(a.next_id(2000), 2000u);
}

TEST(MessageArchive, EncodeDecodeRoundTrip) {
    const auto m = msg(42, "bob@x/phone", "h\xc3\xa9llo", true);
    auto d = mam::MessageArchive::decode(mam::MessageArchive::encode(m), 42);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->id, 42u);
    EXPECT_EQ(d->stamp_us, 42);
    EXPECT_EQ(d->with, "bob@x/phone");
    EXPECT_TRUE(d->sent);
    EXPECT_EQ(d->stanza, m.stanza);
    auto bad = mam::MessageArchive::decode("garbage that is no flatbuffer", 1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), Errc::corrupt);
}

void exercise(mam::MessageArchive& a) {
    ASSERT_TRUE(a.append("alice@x", msg(10, "bob@x/r", "1")));
    ASSERT_TRUE(a.append("alice@x", msg(20, "carol@x/r", "2", true)));
    ASSERT_TRUE(a.append("alice@x", msg(30, "bob@x/r", "3")));
    ASSERT_TRUE(a.append("alice@x.y", msg(15, "bob@x/r", "other user")));
    ASSERT_TRUE(a.append("alic@x", msg(25, "bob@x/r", "prefix user")));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{10, 20, 30}));
    EXPECT_EQ(ids_of(a, "alice@x", 20, 30), (std::vector<std::uint64_t>{20, 30}));  // inclusive
    EXPECT_EQ(ids_of(a, "alice@x", 11, 29), (std::vector<std::uint64_t>{20}));
    EXPECT_EQ(ids_of(a, "alice@x.y"), (std::vector<std::uint64_t>{15}));
    EXPECT_TRUE(ids_of(a, "nobody@x").empty());
    // stop early
    int seen = 0;
    ASSERT_TRUE(a.scan("alice@x", 0, UINT64_MAX, [&](std::uint64_t, std::string_view) { return ++seen < 2; }));
    EXPECT_EQ(seen, 2);
    auto g = a.get("alice@x", 20);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->with, "carol@x/r");
    EXPECT_EQ(g->stanza, "<message><body>2</body></message>");
    EXPECT_EQ(a.get("alice@x", 21).error(), Errc::not_found);
    // remove [lo, hi)
    ASSERT_TRUE(a.remove("alice@x", 0, 20));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
    EXPECT_EQ(ids_of(a, "alice@x.y"), (std::vector<std::uint64_t>{15}));
    ASSERT_TRUE(a.remove("alice@x", 30, 30));  // empty range
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
}

TEST(MessageArchive, InMemory) {
    mam::MessageArchive a(nullptr);
    EXPECT_FALSE(a.is_durable());
    exercise(a);
}

TEST(MessageArchive, InRocksDbAndAfterReopening) {
    TempDir dir;
    {
        auto store = Store::open(dir.str());
        mam::MessageArchive a(store.get());
        EXPECT_TRUE(a.is_durable());
        exercise(a);
    }
    auto store = Store::open(dir.str());
    mam::MessageArchive a(store.get());
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{20, 30}));
    auto g = a.get("alice@x", 30);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->with, "bob@x/r");
}

// After a restart with the clock behind the newest record, a new id must still be above every id
// the user has (nothing overwritten), while another user's ids do not matter.
TEST(MessageArchive, FreshIdsStayAboveTheUsersNewestRecordAfterARestart) {
    TempDir dir;
    auto store = Store::open(dir.str());
    {
        mam::MessageArchive before(store.get());
        ASSERT_TRUE(before.append("a@x", msg(5'000'000, "b@x/r", "future")));
        ASSERT_TRUE(before.append("a@x.y", msg(9'000'000, "b@x/r", "other user")));
    }
    mam::MessageArchive after(store.get());
    const auto first = after.fresh_id("a@x", 1'000);  // the clock went back
    EXPECT_GT(first, 5'000'000u);
    EXPECT_LT(first, 9'000'000u) << "another user's newest id leaked into a@x's floor";
    EXPECT_GT(after.fresh_id("a@x", 1'000), first);
    EXPECT_EQ(after.fresh_id("new@x", 2'000), 5'000'003u) << "ids stay increasing per shard";
    mam::MessageArchive memory(nullptr);
    ASSERT_TRUE(memory.append("a@x", msg(7'000, "b@x/r", "m")));
    EXPECT_GT(memory.fresh_id("a@x", 10), 7'000u);
}

// The retention pass over idle users: every user with records once, in key order, a page at a
// time, whatever the length of their archives; then the cursor says the pass is over.
TEST(MessageArchive, UsersFromVisitsEachUserWithRecordsOncePerPass) {
    TempDir dir;
    auto store = Store::open(dir.str());
    mam::MessageArchive durable(store.get());
    mam::MessageArchive memory(nullptr);
    for (auto* a : {&durable, &memory}) {
        for (std::uint64_t id = 1; id <= 30; ++id) ASSERT_TRUE(a->append("b@x", msg(id, "c@x/r", "m")));
        ASSERT_TRUE(a->append("a@x", msg(5, "c@x/r", "m")));
        ASSERT_TRUE(a->append("a@x.y", msg(6, "c@x/r", "m")));  // a@x's name is its prefix
        ASSERT_TRUE(a->append("c@x", msg(7, "a@x/r", "m")));
        a->flush();
        std::string cursor;
        EXPECT_EQ(a->users_from(cursor, 2), (std::vector<std::string>{"a@x", "a@x.y"}));
        EXPECT_FALSE(cursor.empty());
        EXPECT_EQ(a->users_from(cursor, 2), (std::vector<std::string>{"b@x", "c@x"}));
        EXPECT_TRUE(cursor.empty()) << "the pass reached the end";
        EXPECT_EQ(a->users_from(cursor, 10), (std::vector<std::string>{"a@x", "a@x.y", "b@x", "c@x"}));
        EXPECT_TRUE(cursor.empty());
        // Released, a user's count is loaded again on its next use, and is still right.
        a->release("b@x");
        EXPECT_EQ(a->count("b@x").value_or(0), 30u);
    }
}

// Retention by count and by age, from the kept count: the oldest beyond the limit go, and
// records below the age floor; other users are untouched.
TEST(MessageArchive, EnforceRemovesTheExpiredAndTheOldestBeyondTheCount) {
    mam::MessageArchive a(nullptr);
    for (std::uint64_t id = 10; id < 110; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
    ASSERT_TRUE(a.append("bob@x", msg(5, "alice@x/r", "bob's")));
    EXPECT_EQ(a.count("alice@x").value_or(0), 100u);
    auto removed = a.enforce("alice@x", 20, 50);  // ids < 20 expired; then keep the newest 50
    ASSERT_TRUE(removed);
    EXPECT_EQ(*removed, 50u);
    const auto left = ids_of(a, "alice@x");
    ASSERT_EQ(left.size(), 50u);
    EXPECT_EQ(left.front(), 60u);
    EXPECT_EQ(left.back(), 109u);
    EXPECT_EQ(a.count("alice@x").value_or(0), 50u);
    EXPECT_EQ(ids_of(a, "bob@x"), (std::vector<std::uint64_t>{5}));
    // Within the limits: nothing goes.
    EXPECT_EQ(a.enforce("alice@x", 20, 50).value_or(99), 0u);
    EXPECT_EQ(ids_of(a, "alice@x").size(), 50u);
}

// The count is stored with the records and read back after a restart (no scan); an archive
// written before counts were kept is counted once.
TEST(MessageArchive, CountsAreStoredAndLegacyArchivesAreCountedOnce) {
    TempDir dir;
    auto store = Store::open(dir.str());
    {
        mam::MessageArchive a(store.get());
        for (std::uint64_t id = 1; id <= 7; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
        ASSERT_TRUE(a.remove("alice@x", 0, 3));  // ids 1, 2
        EXPECT_EQ(a.count("alice@x").value_or(0), 5u);
        for (std::uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(a.append("old@x", msg(id, "bob@x/r", "m")));
    }
    std::string value;
    ASSERT_TRUE(store->db()
                    .Get(rocksdb::ReadOptions(), store->column(Column::meta),
                         starling::storage::slice(mam::count_key("alice@x")), &value)
                    .ok());
    EXPECT_EQ(value, std::string("\0\0\0\0\0\0\0\x05", 8));
    // "old@x" as if written by an older broker: no count stored.
    ASSERT_TRUE(store->db()
                    .Delete(rocksdb::WriteOptions(), store->column(Column::meta),
                            starling::storage::slice(mam::count_key("old@x")))
                    .ok());
    mam::MessageArchive b(store.get());
    EXPECT_EQ(b.count("alice@x").value_or(0), 5u);
    EXPECT_EQ(b.count("old@x").value_or(0), 3u);
    ASSERT_TRUE(b.append("alice@x", msg(b.fresh_id("alice@x", 100), "bob@x/r", "m")));
    EXPECT_EQ(b.count("alice@x").value_or(0), 6u);
}

// Through the shard's write path: appends are committed by the committer thread; what was
// appended is readable inside when_readable, and the count goes with the records.
TEST(MessageArchive, ThroughTheWritePathRecordsAreReadableWhenCommitted) {
    TempDir dir;
    auto store = Store::open(dir.str());
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    Committer committer(*store);
    committer.start();
    {
        ShardWriter writer(io, 0, committer);
        mam::MessageArchive a(store.get(), &writer);
        a.defer_writes_to(io);
        std::vector<std::uint64_t> seen;
        bool answered = false, readable = false;
        asio::post(io, [&] {
            for (std::uint64_t id = 1; id <= 100; ++id) ASSERT_TRUE(a.append("alice@x", msg(id, "bob@x/r", "m")));
            a.when_readable([&](bool ok) {
                readable = ok;
                seen = ids_of(a, "alice@x");
                answered = true;
            });
        });
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
        ASSERT_TRUE(answered);
        EXPECT_TRUE(readable);
        EXPECT_EQ(seen.size(), 100u);
        EXPECT_EQ(writer.counters().staged_ops, 100u) << "no count written per message";
        EXPECT_EQ(writer.overlay_size(), 0u) << "archive records are not copied into the overlay";
        // Nothing pending: answered at once.
        bool inline_answer = false;
        a.when_readable([&](bool ok) { inline_answer = ok; });
        EXPECT_TRUE(inline_answer);
        EXPECT_EQ(a.count("alice@x").value_or(0), 100u) << "a new archive's count is known without a scan";
        answered = false;
        asio::post(io, [&] {
            ASSERT_TRUE(a.append("alice@x", msg(200, "bob@x/r", "m")));
            a.persist_counts();  // the sweep's tick
            a.when_readable([&](bool) { answered = true; });
        });
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(2));
        ASSERT_TRUE(answered);
        EXPECT_EQ(writer.counters().staged_ops, 102u) << "one record and the one count";
    }
    std::string value;
    ASSERT_TRUE(store->db()
                    .Get(rocksdb::ReadOptions(), store->column(Column::meta),
                         starling::storage::slice(mam::count_key("alice@x")), &value)
                    .ok());
    EXPECT_EQ(value, std::string("\0\0\0\0\0\0\0\x65", 8));
    committer.stop();
}

// A WAL of an older broker with an archive range deletion from a user's first key (its
// retention at login) after records of that user: replayed at open, it must not break the
// memtable's per-owner insert hints (RocksDB shares them between point and range tombstone
// lists); the store rewrites the deletion's start during the replay.
TEST(MessageArchive, RangeDeletionsOfOlderVersionsReplayFromTheWal) {
    TempDir dir;
    { auto created = Store::open(dir.str()); }
    {
        rocksdb::Options o;
        o.avoid_flush_during_shutdown = true;
        std::vector<rocksdb::ColumnFamilyDescriptor> families{{rocksdb::kDefaultColumnFamilyName, {}}};
        for (std::size_t i = 0; i < static_cast<std::size_t>(Column::count_); ++i) {
            families.emplace_back(std::string(starling::storage::to_string(static_cast<Column>(i))),
                                  rocksdb::ColumnFamilyOptions());
        }
        std::vector<rocksdb::ColumnFamilyHandle*> handles;
        rocksdb::DB* raw = nullptr;
        ASSERT_TRUE(rocksdb::DB::Open(o, dir.str(), families, &handles, &raw).ok());
        auto* cf = handles[static_cast<std::size_t>(Column::mam) + 1];
        using starling::storage::slice;
        const rocksdb::WriteOptions w;
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 1)), "a").ok());
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 2)), "b").ok());
        ASSERT_TRUE(raw->DeleteRange(w, cf, slice(mam::archive_key("alice@x", 0)), slice(mam::archive_key("alice@x", 2))).ok());
        ASSERT_TRUE(raw->Put(w, cf, slice(mam::archive_key("alice@x", 3)), "c").ok());
        for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
        ASSERT_TRUE(raw->Close().ok());
        delete raw;
    }
    auto store = Store::open(dir.str());
    EXPECT_GE(store->recovery().wal_batches_replayed, 4u) << "the writes must come from the WAL";
    mam::MessageArchive a(store.get());
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{2, 3}));
    ASSERT_TRUE(a.append("alice@x", msg(4, "bob@x/r", "after the replay")));
    ASSERT_TRUE(a.remove("alice@x", 0, 3));
    EXPECT_EQ(ids_of(a, "alice@x"), (std::vector<std::uint64_t>{3, 4}));
}

// A slow disk (every WAL append takes 400 ms) does not slow the reactor: turns archiving
// messages end at once, the commits happen on the committer thread, and a reader waits for them
// through when_readable instead of blocking.
TEST(MessageArchive, ASlowDiskDoesNotStallTheReactor) {
    using namespace std::chrono_literals;
    TempDir dir;
    auto fs = std::make_shared<starling::test::FaultyFileSystem>();
    StoreOptions options;
    options.file_system = fs;
    auto store = Store::open(dir.str(), options);
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    Committer committer(*store);
    committer.start();
    {
        ShardWriter writer(io, 0, committer);
        mam::MessageArchive a(store.get(), &writer);
        a.defer_writes_to(io);
        fs->set_wal_latency(400ms);
        const auto start = std::chrono::steady_clock::now();
        std::chrono::steady_clock::duration slowest{};
        std::uint64_t id = 0;
        for (int turn = 0; turn < 20; ++turn) {
            asio::post(io, [&] {
                for (int i = 0; i < 50; ++i) ASSERT_TRUE(a.append("alice@x", msg(++id, "bob@x/r", "m")));
            });
            const auto t0 = std::chrono::steady_clock::now();
            io.poll();  // the turn, the archive's end of turn and the writer's seal
            slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
        }
        const auto turns_done = std::chrono::steady_clock::now() - start;
        EXPECT_LT(slowest, 200ms) << "a turn waited for the disk";
        EXPECT_LT(turns_done, 400ms) << "20 turns took longer than one WAL append";
        bool answered = false;
        std::size_t seen = 0;
        a.when_readable([&](bool ok) {
            EXPECT_TRUE(ok);
            seen = ids_of(a, "alice@x").size();
            answered = true;
        });
        EXPECT_FALSE(answered) << "nothing can be committed yet";
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!answered && std::chrono::steady_clock::now() < deadline) io.run_for(5ms);
        ASSERT_TRUE(answered);
        EXPECT_EQ(seen, 1000u);
        EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms) << "the reader did not wait for the disk";
        fs->heal();
    }
    committer.stop();
}

}  // namespace
